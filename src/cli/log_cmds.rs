//! `countersign log init|show|verify|statement|ack` and
//! `countersign audit verify --remote`: the signed ref-state log (see
//! `countersign::ledger`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use clap::Subcommand;
use git2::{Oid, Repository};
use ssh_key::PublicKey;

use countersign::ledger::{self, witness};
use countersign::{hook, report, sanitize, time};

use crate::cli::{print_error, Exit};

/// The `log` subcommands.
#[derive(Debug, Subcommand)]
pub enum LogAction {
    /// Make the server's log key (if there is none) and start the log
    /// with the protected refs as they are. Run in the server repository,
    /// as the user the hook runs as (`countersign install` runs it). Prints the public
    /// key to publish in the policy as `[log] server-key`.
    Init,
    /// List the log's entries, newest first.
    Show {
        /// At most this many entries.
        #[arg(long, default_value_t = 20)]
        max: usize,
        /// The server's public key (OpenSSH line or a file holding one);
        /// default: the policy's `[log] server-key`, else the server key
        /// file when run on the server.
        #[arg(long, value_name = "KEY")]
        server_key: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = crate::cli::Format::Text)]
        format: crate::cli::Format,
    },
    /// Verify the log in this repository (the server, or a mirror that
    /// fetched refs/countersign/*) against this repository's refs, and
    /// remember it: the next run checks the log only grew.
    Verify {
        /// The server's public key (as for `log show`).
        #[arg(long, value_name = "KEY")]
        server_key: Option<String>,
    },
    /// Print the statement admins sign to acknowledge an out-of-band move
    /// (`ssh-keygen -Y sign -n countersign-ack -f KEY FILE`, or
    /// `gpg --detach-sign --armor FILE`).
    Statement {
        /// The `observed-out-of-band` entry.
        #[arg(long)]
        entry: u64,
    },
    /// Record an acknowledgement of an out-of-band move, so pushes are
    /// accepted again. With `[policy-changes]` in the policy the
    /// signatures must make the same quorum a policy change needs.
    Ack {
        /// The `observed-out-of-band` entry.
        #[arg(long)]
        entry: u64,
        /// A signature over `log statement --entry N` (repeat per person).
        #[arg(long = "signature", value_name = "FILE")]
        signatures: Vec<PathBuf>,
        /// Why the move is acceptable (recorded in the log).
        #[arg(long)]
        reason: String,
    },
}

fn fail(msg: &str, help: &str) -> Exit {
    print_error(msg, Some(help));
    Exit::Error
}

fn open() -> Result<Repository, Exit> {
    hook::open_repo().map_err(|f| fail(&f.message, "run inside the repository (or set GIT_DIR)"))
}

/// Run a `log` subcommand.
pub fn run(action: LogAction) -> Exit {
    match action {
        LogAction::Init => init(),
        LogAction::Show {
            max,
            server_key,
            format,
        } => show(
            max,
            server_key.as_deref(),
            format == crate::cli::Format::Json,
        ),
        LogAction::Verify { server_key } => verify_here(server_key.as_deref()),
        LogAction::Statement { entry } => statement(entry),
        LogAction::Ack {
            entry,
            signatures,
            reason,
        } => ack(entry, &signatures, &reason),
    }
}

fn init() -> Exit {
    let repo = match open() {
        Ok(r) => r,
        Err(e) => return e,
    };
    let now = time::now();
    let in_force = match hook::policy_in_force(&repo, now, std::time::Instant::now()) {
        Ok(p) => p,
        Err(f) => return fail(
            &format!("no valid policy: {}", f.message),
            "install a policy first (`countersign install` does), then run `countersign log init`",
        ),
    };
    let id = serde_json::to_value(&in_force.id).ok();
    match ledger::init(&repo, &in_force.policy, id.as_ref(), now) {
        Ok(init) => {
            if init.key_created {
                eprintln!(
                    "{}: made the server's log key {} (readable only by this user: the hook must run as this user)",
                    report::PREFIX,
                    init.key_path.display()
                );
            }
            match init.started {
                Some(id) => eprintln!(
                    "{}: started the ref-state log {} at entry 1 ({})",
                    report::PREFIX,
                    ledger::LOG_REF,
                    countersign::engine::short(id)
                ),
                None => eprintln!(
                    "{}: the ref-state log {} already exists; left as it is",
                    report::PREFIX,
                    ledger::LOG_REF
                ),
            }
            let published = in_force
                .policy
                .log_key
                .as_ref()
                .and_then(|k| k.to_openssh().ok());
            let ours = init
                .public_key
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            match published {
                Some(p) if p.split_whitespace().take(2).collect::<Vec<_>>().join(" ") == ours => {
                    eprintln!("{}: the policy publishes this key", report::PREFIX);
                }
                Some(_) => eprintln!(
                    "{}: warning: the policy's [log] server-key is another key: every push is refused until it names this one",
                    report::PREFIX
                ),
                None => eprintln!(
                    "{}: publish the key so clones can check the log: add to the policy\n\n[log]\nserver-key = \"{}\"\n",
                    report::PREFIX,
                    init.public_key
                ),
            }
            println!("{}", init.public_key);
            Exit::Ok
        }
        Err(e) => fail(
            &format!("cannot start the ref-state log: {e}"),
            "run as the user the hook runs as, with write access to the repository",
        ),
    }
}

/// `--server-key`: an OpenSSH line, or a file holding one.
fn parse_key(given: &str) -> Result<PublicKey, String> {
    let text = if given.trim_start().starts_with("ssh-") {
        given.to_string()
    } else {
        std::fs::read_to_string(given).map_err(|e| format!("cannot read `{given}`: {e}"))?
    };
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    PublicKey::from_openssh(line.trim())
        .map_err(|e| format!("`--server-key` is not an OpenSSH public key: {e}"))
}

/// The key to check the log with, and where it came from: `--server-key`,
/// else the policy's `[log] server-key`, else the server key file (on the
/// server), else what this clone remembered of `source`.
fn key_for(
    repo: &Repository,
    given: Option<&str>,
    source: &str,
) -> Result<(Option<PublicKey>, String), Exit> {
    if let Some(g) = given {
        return parse_key(g)
            .map(|k| (Some(k), "--server-key".to_string()))
            .map_err(|e| {
                fail(
                    &e,
                    "give the key `countersign log init` printed on the server",
                )
            });
    }
    if let Ok(policy) = hook::command_policy(repo, None) {
        if let Some(k) = policy.log_key {
            return Ok((Some(k), "the policy's [log] server-key".into()));
        }
    }
    if let Ok(k) = ledger::server_public_key(repo.path()) {
        return Ok((Some(k), "this server's key file".into()));
    }
    if let Some(m) = witness::recall(repo.path(), source) {
        if let Ok(k) = PublicKey::from_openssh(&m.key) {
            return Ok((Some(k), "the key this clone saw before".into()));
        }
    }
    Ok((None, String::new()))
}

fn show(max: usize, given: Option<&str>, json: bool) -> Exit {
    let repo = match open() {
        Ok(r) => r,
        Err(e) => return e,
    };
    let key = match key_for(&repo, given, "local") {
        Ok((Some(k), _)) => k,
        Ok((None, _)) => {
            return fail(
                "no server key known to check the log with",
                "give --server-key (the key `countersign log init` printed), or publish it in the policy as [log] server-key",
            )
        }
        Err(e) => return e,
    };
    match ledger::entries(&repo, &key, max) {
        Ok(list) => {
            if json {
                let v: Vec<serde_json::Value> = list
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "id": r.id.to_string(),
                            "entry": r.entry,
                            "unacknowledged": r.state.unacknowledged,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                for r in &list {
                    println!(
                        "{:>6}  {}  {}  {}",
                        r.entry.seq,
                        countersign::engine::short(r.id),
                        r.entry.time_utc,
                        ledger::summary(&r.entry)
                    );
                }
            }
            Exit::Ok
        }
        Err(e) => {
            print_error(&format!("the ref-state log does not verify: {e}"), None);
            Exit::Rejected
        }
    }
}

fn statement(entry: u64) -> Exit {
    let repo = match open() {
        Ok(r) => r,
        Err(e) => return e,
    };
    let policy = match hook::command_policy(&repo, None) {
        Ok(p) => p,
        Err(f) => return fail(&f.message, &f.help),
    };
    match ledger::statement_for(&repo, &policy, entry) {
        Ok((text, _)) => {
            print!("{text}");
            Exit::Ok
        }
        Err(e) => fail(&e, "`countersign log show` lists the entries"),
    }
}

fn ack(entry: u64, files: &[PathBuf], reason: &str) -> Exit {
    let repo = match open() {
        Ok(r) => r,
        Err(e) => return e,
    };
    if reason.trim().is_empty() || reason.len() > 4096 {
        return fail(
            "`--reason` must say why (at most 4096 bytes)",
            "e.g. --reason \"restored main from backup after disk failure, ticket OPS-123\"",
        );
    }
    let now = time::now();
    let in_force = match hook::policy_in_force(&repo, now, std::time::Instant::now()) {
        Ok(p) => p,
        Err(f) => return fail(&f.message, &f.help),
    };
    let mut sigs = Vec::new();
    for f in files {
        match std::fs::metadata(f) {
            Ok(m) if m.len() <= 64 << 10 => {}
            Ok(_) => {
                return fail(
                    &format!("`{}` is larger than a signature", f.display()),
                    "give the .sig file",
                )
            }
            Err(e) => {
                return fail(
                    &format!("cannot read `{}`: {e}", f.display()),
                    "give the .sig file",
                )
            }
        }
        match std::fs::read(f) {
            Ok(b) => sigs.push(b),
            Err(e) => {
                return fail(
                    &format!("cannot read `{}`: {e}", f.display()),
                    "give the .sig file",
                )
            }
        }
    }
    let id = serde_json::to_value(&in_force.id).ok();
    match ledger::acknowledge(
        &repo,
        &in_force.policy,
        id.as_ref(),
        entry,
        &sigs,
        reason,
        now,
    ) {
        Ok(seq) => {
            println!(
                "{}: entry {entry} acknowledged in log entry {seq}; pushes are accepted again",
                report::PREFIX
            );
            Exit::Ok
        }
        Err(e) => {
            print_error(
                &format!("not acknowledged: {e}"),
                Some("each admin signs the text of `countersign log statement --entry N` (ssh-keygen -Y sign -n countersign-ack -f KEY FILE)"),
            );
            Exit::Rejected
        }
    }
}

/// Every ref of this repository (direct refs).
fn local_refs(repo: &Repository) -> BTreeMap<String, Oid> {
    let mut out = BTreeMap::new();
    if let Ok(refs) = repo.references() {
        for r in refs.flatten() {
            if let Some(t) = r.target() {
                out.insert(String::from_utf8_lossy(r.name_bytes()).into_owned(), t);
            }
        }
    }
    out
}

fn verify_here(given: Option<&str>) -> Exit {
    let repo = match open() {
        Ok(r) => r,
        Err(e) => return e,
    };
    let Ok(tip) = repo.refname_to_id(ledger::LOG_REF) else {
        return fail(
            &format!("no {} here", ledger::LOG_REF),
            "fetch it: git fetch origin refs/countersign/log:refs/countersign/log (or use `countersign audit verify --remote origin`)",
        );
    };
    let refs = local_refs(&repo);
    witness_run(&repo, "local", tip, &refs, given, None)
}

/// `audit verify --remote NAME`: fetch the remote's log and check it.
pub fn verify_remote(remote: &str, given: Option<&str>, audit_copy: Option<&[u8]>) -> Exit {
    let repo = match open() {
        Ok(r) => r,
        Err(e) => return e,
    };
    if remote.starts_with('-') || remote.is_empty() {
        return fail(
            "the remote must be a remote name or URL",
            "e.g. --remote origin",
        );
    }
    let git = |args: &[&str]| -> Result<String, String> {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(repo.path())
            .args(args)
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        if out.status.success() {
            String::from_utf8(out.stdout).map_err(|_| "git printed non-UTF-8".to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    };
    // One advertisement: the refs and the log as the server had them at once.
    let listed = match git(&["ls-remote", "--", remote]) {
        Ok(s) => s,
        Err(e) => {
            return fail(
                &format!("cannot list the refs of `{remote}`: {e}"),
                "check the remote",
            )
        }
    };
    let mut refs = BTreeMap::new();
    for line in listed.lines() {
        let mut parts = line.split('\t');
        let (Some(id), Some(name)) = (parts.next(), parts.next()) else {
            continue;
        };
        if name.ends_with("^{}") {
            continue;
        }
        if let Some(oid) = countersign::engine::parse_oid(id, repo.object_format()) {
            refs.insert(name.to_string(), oid);
        }
    }
    let Some(tip) = refs.get(ledger::LOG_REF).copied() else {
        return fail(
            &format!("`{remote}` has no {}", ledger::LOG_REF),
            "the server has no ref-state log: run `countersign log init` there (`countersign install` does)",
        );
    };
    if let Err(e) = git(&[
        "fetch",
        "--quiet",
        "--no-tags",
        "--",
        remote,
        ledger::LOG_REF,
    ]) {
        return fail(
            &format!("cannot fetch {} from `{remote}`: {e}", ledger::LOG_REF),
            "check the remote",
        );
    }
    if repo.find_commit(tip).is_err() {
        return fail(
            "the log moved back while it was being fetched",
            "run the check again; if it repeats, the server's log is being rewritten",
        );
    }
    witness_run(&repo, remote, tip, &refs, given, audit_copy)
}

fn witness_run(
    repo: &Repository,
    source: &str,
    tip: Oid,
    refs: &BTreeMap<String, Oid>,
    given: Option<&str>,
    audit_copy: Option<&[u8]>,
) -> Exit {
    let before = witness::recall(repo.path(), source);
    let (key, from) = match key_for(repo, given, source) {
        Ok(k) => k,
        Err(e) => return e,
    };
    // Trust on first use, said out loud: the key that signed the tip.
    let (key, from) = match key {
        Some(k) => (k, from),
        None => match first_key(repo, tip) {
            Some(k) => (k, "the key that signed the log, trusted on first use (pin it with --server-key or publish it in the policy)".to_string()),
            None => return fail("the log's last entry carries no usable SSH signature", "the log is damaged"),
        },
    };
    let mut problems = Vec::new();
    if let Some(m) = &before {
        if let Ok(old) = PublicKey::from_openssh(&m.key) {
            if old.key_data() != key.key_data() {
                problems.push(format!(
                    "the log is now checked with key {} but this clone saw it signed by {}: the server key was replaced",
                    countersign::policy::keys::ssh_fingerprint(key.key_data()),
                    countersign::policy::keys::ssh_fingerprint(old.key_data())
                ));
            }
        }
    }
    let rep = match witness::check(repo, tip, &key, before.as_ref(), refs) {
        Ok(r) => r,
        Err(e) => {
            print_error(
                &format!("the ref-state log of `{}` does not verify: {e}", sanitize::escape(source)),
                Some("its last entry is not signed by the server key: a log re-signed with another key, or altered"),
            );
            return Exit::Rejected;
        }
    };
    problems.extend(rep.problems.iter().cloned());
    if let Some(bytes) = audit_copy {
        match witness::checkpoints(repo, tip, &key) {
            Ok(marks) => problems.extend(witness::check_audit_copy(bytes, &marks)),
            Err(e) => problems.push(format!("the checkpoints cannot be read: {e}")),
        }
    }
    println!(
        "{}: ref-state log of `{}`: entry {} ({}) of {}, checked with {}; {} entr{} verified now",
        report::PREFIX,
        sanitize::escape(source),
        rep.entry.seq,
        countersign::engine::short(rep.tip),
        rep.entry.time_utc,
        from,
        rep.verified,
        if rep.verified == 1 { "y" } else { "ies" }
    );
    for n in &rep.notes {
        println!("  note: {n}");
    }
    if rep.chain_ok
        && problems
            .iter()
            .all(|p| !p.contains("server key was replaced"))
    {
        let m = witness::Memory {
            tip: rep.tip.to_string(),
            seq: rep.entry.seq,
            key: key.to_openssh().unwrap_or_default(),
        };
        if let Err(e) = witness::remember(repo, source, &m) {
            problems.push(format!("cannot remember what was verified: {e}"));
        }
    }
    if problems.is_empty() {
        println!(
            "{}: the log only grew since this clone last looked, every entry is signed by the server key, and {} tracked ref(s) are where it says",
            report::PREFIX,
            rep.state.refs.len()
        );
        Exit::Ok
    } else {
        for p in &problems {
            eprintln!("{}: problem: {p}", report::PREFIX);
        }
        Exit::Rejected
    }
}

/// The SSH key that signed `tip` (for trust on first use).
fn first_key(repo: &Repository, tip: Oid) -> Option<PublicKey> {
    let odb = repo.odb().ok()?;
    let raw = odb.read(tip).ok()?;
    let format = match repo.object_format() {
        git2::ObjectFormat::Sha256 => countersign::signing::object::HashFormat::Sha256,
        _ => countersign::signing::object::HashFormat::Sha1,
    };
    let split = countersign::signing::object::split_commit_in(raw.data(), format).ok()?;
    let sig = split.signature?;
    let sig = ssh_key::SshSig::from_pem(std::str::from_utf8(&sig).ok()?.trim()).ok()?;
    Some(PublicKey::from(sig.public_key().clone()))
}
