//! `countersign report`: the compliance evidence report, for auditors.
//!
//! Opens the repository (any clone: no server needed), loads the policy,
//! builds [`countersign::report::evidence::Evidence`] by re-verifying every change
//! on the ref's first-parent chain, and renders it. Producing a report that
//! lists exceptions is a success (exit 0) unless `--fail-on-exceptions` is
//! given (exit 1); a ref, `--since` or policy that cannot be used is an
//! error (exit 2).

use std::path::PathBuf;

use clap::ValueEnum;

use countersign::hook;
use countersign::report::evidence;
use countersign::report::PREFIX;
use countersign::time;

use crate::cli::Exit;

/// Output format of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Readable Markdown.
    Md,
    /// JSON, field names documented in `countersign::report::evidence`.
    Json,
    /// One self-contained HTML file (inline CSS, no scripts).
    Html,
}

/// Write compliance evidence for a ref: every change that reached it, who
/// wrote, approved and merged it, and whether each rule was met.
///
/// Every change on the ref's first-parent chain (from the tip back to
/// --since, or to the root) is re-verified from the history with the hook's
/// own checks. Where the policy lives on refs/meta/countersign and an audit
/// log says which policy commit (on the verified chain) was in force when
/// a change landed, that policy judges it; otherwise the current policy
/// does. The audit log never supplies a verdict.
/// Changes at or below a rule's baseline are listed as grandfathered.
///
/// Exit status: 0 when the report was written, even if it lists exceptions
/// (unless --fail-on-exceptions); 1 with --fail-on-exceptions when any
/// change has exceptions; 2 when the ref, --since or the policy cannot be
/// used, or the output cannot be written.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The ref to report on, e.g. main or refs/heads/main; read from the
    /// local branch, else from refs/remotes/origin/<name>.
    #[arg(long = "ref", value_name = "REF")]
    pub refname: String,
    /// Start after this revision (exclusive), or at this date: a date
    /// (2026-11-29) or date-time (2026-11-29T10:00:00Z) keeps the changes
    /// whose committer time is at or after it. Default: the whole history.
    #[arg(long, value_name = "REV|DATE")]
    pub since: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
    pub format: ReportFormat,
    /// Policy file (default: git config `countersign.policy`, else
    /// `$GIT_DIR/countersign.toml`).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Verify the policy ref's history from this commit (the server's
    /// countersign.policyRoot) and use its verified tip as the policy; the
    /// report then lists every access change since it.
    #[arg(long, value_name = "COMMIT", conflicts_with = "policy")]
    pub trust_root: Option<String>,
    /// Audit log whose accepted push records say which policy each change
    /// landed under (default: the repository's log, when there is one, as
    /// on the server). Each change mapped there is judged by the policy in
    /// force when it landed (policy ref mode); the log must verify.
    #[arg(long = "audit-log", value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Write the report to FILE instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Exit 1 when any change in the report has exceptions.
    #[arg(long)]
    pub fail_on_exceptions: bool,
    /// Neither read nor fill the verification cache
    /// ($GIT_DIR/countersign/cache): verify every signature afresh.
    #[arg(long)]
    pub no_cache: bool,
}

fn error(msg: &str, help: &str) -> Exit {
    crate::cli::print_error(msg, Some(help));
    Exit::Error
}

/// Run `countersign report`.
pub fn run(args: ReportArgs) -> Exit {
    let repo = match hook::open_repo() {
        Ok(r) => r,
        Err(f) => return error(&f.admin_message(), "run inside a clone of the repository"),
    };
    let root = match args
        .trust_root
        .as_deref()
        .map(|r| {
            repo.revparse_single(r)
                .and_then(|o| o.peel_to_commit())
                .map(|c| c.id())
        })
        .transpose()
    {
        Ok(r) => r,
        Err(e) => {
            return error(
                &format!("cannot resolve --trust-root: {}", e.message()),
                "name the policy ref's root commit",
            )
        }
    };
    let policy = match hook::command_policy_from(&repo, args.policy.as_deref(), root) {
        Ok(p) => p,
        Err(f) => {
            return error(
                &f.admin_message(),
                "pass `--policy FILE` (the policy the server uses), or set `git config countersign.policy <path>`",
            )
        }
    };
    // Ref mode: the access changes, and the chain they verify (the only
    // policy commits an audit log may name as in force).
    let mut access = Vec::new();
    let mut chain = None;
    if args.policy.is_none() {
        let pinned = countersign::governance::pinned_root(&repo).ok().flatten();
        if let Some(root) = root.or(pinned) {
            match countersign::governance::log::history(&repo, Some(root), time::now()) {
                Ok((_, changes)) => {
                    let ids = changes
                        .iter()
                        .filter(|c| c.authorized)
                        .map(|c| c.commit.clone())
                        .collect();
                    chain = Some((root, ids));
                    access = changes;
                }
                Err(e) => {
                    return error(
                        &countersign::sanitize::escape(&e),
                        "fetch refs/meta/countersign and check `countersign policy log`",
                    )
                }
            }
        }
    }
    let landed = match landed_under(&repo, &args, chain) {
        Ok(l) => l,
        Err(exit) => return exit,
    };
    let mut ev = match evidence::build(
        &repo,
        &policy,
        &args.refname,
        args.since.as_deref(),
        time::now(),
        landed.as_ref(),
        !args.no_cache,
    ) {
        Ok(e) => e,
        Err(e) => return error(&countersign::sanitize::escape(&e.to_string()), e.help()),
    };
    ev.access_changes = access;
    ev.ref_log = ref_log_line(&repo, &policy, &ev.refname, &ev.tip);
    let text = match args.format {
        ReportFormat::Md => evidence::markdown(&ev),
        ReportFormat::Json => evidence::json(&ev) + "\n",
        ReportFormat::Html => evidence::html(&ev),
    };
    match &args.output {
        Some(file) => {
            if let Err(e) = std::fs::write(file, text.as_bytes()) {
                return error(
                    &format!("cannot write `{}`: {e}", file.display()),
                    "choose a writable --output path",
                );
            }
            eprintln!(
                "{PREFIX}: report written to {}: {} change(s), {} fully compliant",
                file.display(),
                ev.summary.changes,
                ev.summary.share
            );
        }
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                return error(&format!("cannot write the report: {e}"), "check stdout");
            }
        }
    }
    if args.fail_on_exceptions && ev.summary.with_exceptions > 0 {
        eprintln!(
            "{PREFIX}: {} change(s) with exceptions (--fail-on-exceptions)",
            ev.summary.with_exceptions
        );
        return Exit::Rejected;
    }
    Exit::Ok
}

/// The policies changes landed under, from the audit log (`--audit-log`,
/// else the repository's own when it exists). A record counts only when
/// its policy commit is on `chain` (verified from the root in use) and it
/// names that root: the log is not signed, so it may only say *which* of
/// the verified policies was in force, never supply one. A change decided
/// under a policy file is judged by the current policy (an old file's text
/// is not kept). `None` when nothing is mapped.
fn landed_under(
    repo: &git2::Repository,
    args: &ReportArgs,
    chain: Option<(git2::Oid, std::collections::HashSet<String>)>,
) -> Result<Option<evidence::LandedUnder>, Exit> {
    use countersign::governance::{self, PolicyId};
    use std::collections::HashMap;
    let Some((root, chain)) = chain else {
        return Ok(None);
    };
    let path = match &args.audit_log {
        Some(p) => p.clone(),
        None => {
            let p = countersign::audit::path_for(repo);
            if !p.exists() {
                return Ok(None);
            }
            p
        }
    };
    let bytes = std::fs::read(&path).map_err(|e| {
        error(
            &format!("cannot read the audit log `{}`: {e}", path.display()),
            "pass a readable `--audit-log FILE`",
        )
    })?;
    let target = countersign::workflow::full_ref(&args.refname);
    let map = governance::landed::from_audit(repo, &bytes, &target).map_err(|e| {
        error(
            &format!("{e}: `{}`", path.display()),
            "run `countersign audit verify`; a log that does not verify cannot say which policy was in force",
        )
    })?;
    let mut out = evidence::LandedUnder {
        source: format!("the audit log {}", path.display()),
        ..Default::default()
    };
    let root_hex = root.to_string();
    let mut index: HashMap<PolicyId, Option<usize>> = HashMap::new();
    for (commit, id) in map {
        let slot = index.entry(id.clone()).or_insert_with(|| match &id {
            PolicyId::Ref {
                commit: pc,
                root: r,
            } if *r == root_hex && chain.contains(pc) => {
                countersign::engine::parse_oid(pc, repo.object_format())
                    .and_then(|pc| governance::load_at(repo, pc).ok())
                    .map(|p| {
                        out.policies.push((p, id.describe()));
                        out.policies.len() - 1
                    })
            }
            _ => None,
        });
        if let Some(i) = slot {
            out.by_commit.insert(commit, *i);
        }
    }
    if out.by_commit.is_empty() {
        return Ok(None);
    }
    Ok(Some(out))
}

/// The ref-state log the report was computed against: its last entry,
/// checked with the policy's `[log] server-key` (else the key this clone
/// saw before), and whether the ref's tip is the value it recorded.
fn ref_log_line(
    repo: &git2::Repository,
    policy: &countersign::Policy,
    refname: &str,
    tip: &str,
) -> Option<String> {
    use countersign::ledger::{self, witness};
    let log_tip = repo.refname_to_id(ledger::LOG_REF).ok()?;
    let key = policy.log_key.clone().or_else(|| {
        ["origin", "local"].iter().find_map(|s| {
            witness::recall(repo.path(), s)
                .and_then(|m| ssh_key::PublicKey::from_openssh(&m.key).ok())
        })
    });
    let Some(key) = key else {
        return Some(format!(
            "{} at {}, NOT VERIFIED: no server key known (publish it in the policy as [log] server-key)",
            ledger::LOG_REF,
            countersign::engine::short(log_tip)
        ));
    };
    Some(match ledger::read_entry(repo, log_tip, &key) {
        Ok(r) => {
            let agrees = match r.state.refs.get(refname) {
                Some(v) if v == tip => "the ref's tip is the value it recorded".to_string(),
                Some(v) => format!(
                    "the ref's tip is NOT the value it recorded ({})",
                    countersign::engine::short_hex(v)
                ),
                None => "it does not track this ref".to_string(),
            };
            format!(
                "entry {} ({}) of {}, signed by the server key {}; {agrees}; {} out-of-band move(s) waiting for acknowledgement",
                r.entry.seq,
                countersign::engine::short(r.id),
                r.entry.time_utc,
                countersign::policy::keys::ssh_fingerprint(key.key_data()),
                r.state.unacknowledged.len()
            )
        }
        Err(e) => format!("{} DOES NOT VERIFY: {e}", ledger::LOG_REF),
    })
}
