//! Command-line interface: clap definitions, then one function per command.
//!
//! Arguments are parsed here and turned into library calls; decisions come
//! back as values and are rendered by `countersign::report`. Exit codes are
//! a contract: 0 accepted/valid, 1 rejected/invalid, 2 usage or internal
//! error.

pub mod admin_cmds;
pub mod demo;
pub mod install_cmd;
pub mod log_cmds;
pub mod policy_cmds;
pub mod report_cmd;

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use countersign::engine::{Decision, RefUpdate, Verifier};
use countersign::finding::{Code, Finding};
use countersign::hook;
use countersign::report;
use countersign::sanitize;
use countersign::time;

/// Exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Accepted, valid, done.
    Ok = 0,
    /// Rejected by policy, or the policy is invalid.
    Rejected = 1,
    /// Usage, configuration or internal error.
    Error = 2,
}

impl From<Exit> for i32 {
    fn from(e: Exit) -> i32 {
        e as i32
    }
}

/// Enforce separation of duties on self-hosted Git: protected refs move only
/// to history signed by people whose roles allow it.
#[derive(Debug, Parser)]
#[command(name = "countersign", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install the hook into a bare repository, or every one below a
    /// directory, in the layout its hosting software runs hooks from.
    ///
    /// Checks first, as the user the hook will run as (--hook-user, default
    /// the repository's owner), that git will reach the hook (core.hooksPath
    /// at every config level that user sees), that the policy is valid and
    /// readable and the audit log writable by that user; never replaces a
    /// foreign hook (--chain keeps it running after countersign); then
    /// copies the binary, writes the shims, records the policy and starts
    /// the signed ref-state log as that user. Re-run to upgrade.
    Install(crate::cli::install_cmd::InstallArgs),
    /// Run as a git hook (installed by `countersign install`; reads git's hook input).
    Hook {
        #[command(subcommand)]
        hook: HookKind,
    },
    /// Check or create a policy; move it into the repository and change it
    /// under quorum (migrate, pin, edit, propose, apply, log).
    Policy {
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// Verify existing history with the same rules the hook applies.
    ///
    /// Checks the commits in RANGE as if they were pushed to REF: `A..B`
    /// checks what B adds to A (and that B descends from A unless the rule
    /// allows force-push); a single revision `B` checks all history
    /// reachable from B except the rule's baseline. Run inside a clone.
    Verify {
        /// `<old>..<new>` or `<new>`.
        range: String,
        /// The ref whose rules apply, e.g. refs/heads/main.
        #[arg(long = "ref", value_name = "REF")]
        refname: String,
        /// Policy file (default: git config `countersign.policy`, else
        /// `$GIT_DIR/countersign.toml`).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Verify the policy ref's history from this commit (the server's
        /// countersign.policyRoot) and use its verified tip as the policy,
        /// instead of a pinned root or a file.
        #[arg(long, value_name = "COMMIT", conflicts_with = "policy")]
        trust_root: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Show at most N problems of each code in text output, then the
        /// count of every code (0: show all; JSON always lists all).
        #[arg(long, value_name = "N", default_value_t = 10)]
        max_findings: usize,
        /// Neither read nor fill the verification cache
        /// ($GIT_DIR/countersign/cache): verify every signature afresh.
        #[arg(long)]
        no_cache: bool,
    },
    /// Sign an approval of a topic tip (or, with --result, of an exact
    /// merge result) for a target ref, with your git signing key.
    ///
    /// Prints the `Countersign-Approval:` trailer and stores it as a git
    /// note on the commit under refs/notes/countersign (share it with
    /// `--push origin`, or `git push origin refs/notes/countersign`).
    Approve {
        /// The commit to approve (default HEAD): the topic tip, or with
        /// --result the merge commit whose exact result you approve.
        #[arg(default_value = "HEAD")]
        rev: String,
        /// Target ref the change will land on, e.g. main or refs/heads/main.
        #[arg(long = "ref", value_name = "REF")]
        refname: String,
        /// Approve the exact result (parents and tree) of REV: for conflict
        /// resolutions and squash merges.
        #[arg(long)]
        result: bool,
        /// Repository id to bind (default: git config countersign.repository,
        /// else the policy's repository.id).
        #[arg(long, value_name = "ID")]
        repository: Option<String>,
        /// Policy file, used for the repository id and to check your key.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Share the approval: fetch and merge the remote's approval notes,
        /// add yours, push them.
        #[arg(long, value_name = "REMOTE")]
        push: Option<String>,
        /// Do not store the approval as a git note.
        #[arg(long)]
        no_note: bool,
    },
    /// Merge a topic into the current branch with a signed merge commit
    /// carrying every collected valid approval; refuses, with the hook's
    /// reasons, when the approvals do not meet the policy.
    Merge {
        /// The topic to merge (branch or commit).
        topic: String,
        /// The branch to merge into; must be the current branch (default).
        #[arg(long, value_name = "BRANCH")]
        into: Option<String>,
        /// Policy file (default: git config countersign.policy).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Extra approval trailers, besides those in the topic tip's notes.
        #[arg(long = "approval", value_name = "TRAILER")]
        approvals: Vec<String>,
        /// Subject line of the merge commit.
        #[arg(short = 'm', long = "message", value_name = "SUBJECT")]
        message: Option<String>,
        /// Land the topic as one squashed commit (one parent) naming the
        /// topic in a `Countersign-Squash:` trailer, instead of a merge.
        #[arg(long)]
        squash: bool,
    },
    /// Show what the policy needs to merge a topic into a ref, and which
    /// approvals are there: whose, which role each fills, stale or not.
    Status {
        /// The topic (branch or commit).
        topic: String,
        /// Target ref, e.g. main or refs/heads/main.
        #[arg(long = "ref", value_name = "REF")]
        refname: String,
        /// Policy file (default: git config countersign.policy).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Output format. JSON: the topic, the rules that apply, the
        /// judged merge (authors, each approval and its status) and the
        /// decision, as `verify --format json` gives it.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// The signed ref-state log (refs/countersign/log): start it, show
    /// it, verify it, acknowledge refs moved around the hook.
    Log {
        #[command(subcommand)]
        action: crate::cli::log_cmds::LogAction,
    },
    /// Verify or read the audit log.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Add, remove and list people (every change is validated, then
    /// recorded in the audit log).
    People {
        #[command(subcommand)]
        action: crate::cli::admin_cmds::PeopleAction,
    },
    /// Add, retire, remove, list and import people's keys.
    Keys {
        #[command(subcommand)]
        action: crate::cli::admin_cmds::KeysAction,
    },
    /// Declare roles; grant and revoke them.
    Roles {
        #[command(subcommand)]
        action: crate::cli::admin_cmds::RolesAction,
    },
    Report(crate::cli::report_cmd::ReportArgs),
    /// Make a sandbox server repository and show accepted and rejected pushes.
    Demo,
    /// Check everything that makes the hook silently not run or always
    /// fail, each with a fix; exit 1 if anything is a problem.
    ///
    /// Run it as the user the hook runs as (the user pushes arrive as,
    /// e.g. `sudo -u git countersign doctor --repo /srv/git/x.git`): it
    /// sees that user's git config and permissions. Checks: the
    /// repository's owner; core.hooksPath at every config level; the
    /// pre-receive shim (countersign's, executable, naming an existing
    /// binary that runs) and a chained hook; who besides the owner can
    /// write the repository's config, hooks, objects and countersign/
    /// (they are operators: they can switch the hook off); merge
    /// attributes in info/attributes (every merge is rejected); the policy in
    /// force (file or policy ref) and the protected refs; the audit log
    /// (writable, intact, shared as the repository is); the ref-state log
    /// and its key; signed-push settings. Paths the pusher is never shown
    /// are shown here.
    Doctor {
        /// The repository (default: GIT_DIR, else the current directory).
        #[arg(long, value_name = "DIR")]
        repo: Option<PathBuf>,
        /// Output format. JSON: `{"repository", "user", "checks":
        /// [{"check", "status": "ok|warning|problem", "message", "fix"}]}`.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print a shell completion script for SHELL on stdout.
    ///
    /// bash: `countersign completions bash > /etc/bash_completion.d/countersign`;
    /// zsh: into a directory on `$fpath` as `_countersign`;
    /// fish: `> ~/.config/fish/completions/countersign.fish`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write one man page per command and subcommand into DIR.
    ///
    /// Pages are named `countersign.1`, `countersign-policy-check.1`, ...;
    /// install them with e.g. `countersign man --out /usr/local/share/man/man1`,
    /// or read one with `man -l DIR/countersign.1`.
    Man {
        /// Directory to write the pages into (made if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuditAction {
    /// Check the whole hash chain; name the first broken, missing,
    /// reordered or torn record, and records cut off since the hook's last
    /// checkpoint (`<log>.checkpoint`). Prints the head hash to keep
    /// elsewhere.
    Verify {
        /// Log file (default: git config countersign.auditLog, else
        /// $GIT_DIR/countersign/audit.log).
        #[arg(long, value_name = "FILE")]
        log: Option<PathBuf>,
        /// Fail unless the chain's head is this hash (from an earlier
        /// `audit verify`), which also catches records cut off the end.
        #[arg(long, value_name = "HASH")]
        expect_head: Option<String>,
        /// Witness a server: fetch its signed ref-state log
        /// (refs/countersign/log), check every new entry is signed by the
        /// server key, that the log only grew since this clone last looked,
        /// and that the server's refs are where the log says. With `--log`,
        /// also check that copy of the audit log against the log's signed
        /// checkpoints (cut or edited records).
        #[arg(long, value_name = "REMOTE")]
        remote: Option<String>,
        /// With `--remote`: the server's public key (OpenSSH line or
        /// file); default: the policy's `[log] server-key`, else the key
        /// this clone saw before, else the key that signed the log (trust
        /// on first use, said so).
        #[arg(long, value_name = "KEY", requires = "remote")]
        server_key: Option<String>,
        /// Once the whole chain verifies, record its head as the checkpoint
        /// the hook's appends verify from (replacing the one there): after
        /// repairing a damaged log, or for a log of more than 64 MiB that
        /// has none. Run as the user the hook runs as.
        #[arg(long)]
        checkpoint: bool,
    },
    /// Show recorded decisions and changes.
    Show {
        /// Log file (default as for `audit verify`).
        #[arg(long, value_name = "FILE")]
        log: Option<PathBuf>,
        /// Only records touching this ref.
        #[arg(long = "ref", value_name = "REF")]
        refname: Option<String>,
        /// Only records at or after this time: a date (2026-11-29), a
        /// date-time (2026-11-29T10:00:00Z) or Unix seconds.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
enum HookKind {
    /// The pre-receive hook: reads `<old> <new> <ref>` lines on stdin.
    PreReceive,
    /// The post-receive hook: records the accepted push in the ref-state
    /// log (refs/countersign/log). Never fails the push (it has landed).
    PostReceive,
}

#[derive(Debug, Subcommand)]
enum PolicyAction {
    /// Validate a policy and report every problem with file:line:col.
    Check {
        /// Policy file (default: as for `verify`).
        #[arg(long, value_name = "FILE", conflicts_with = "commit")]
        policy: Option<PathBuf>,
        /// Check the policy in this commit's tree instead (a policy-ref
        /// commit or a proposal).
        #[arg(long, value_name = "REV")]
        commit: Option<String>,
        /// Output format. JSON: `{"valid": true, "repository", "roles",
        /// "people", "keys", "rules", "policy_changes"}`, or
        /// `{"valid": false, "problems": [{"line", "col", "message"}]}`.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Move the policy file into refs/meta/countersign and pin its root.
    ///
    /// Writes the policy (and the certificate files it names) as the first
    /// commit of refs/meta/countersign and pins that commit as the trust
    /// root (git config countersign.policyRoot). Run in the server
    /// repository. From then on every policy change needs the approvals its
    /// [policy-changes] names.
    Migrate {
        /// Policy file (default: as for `verify`).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Break glass after a lost quorum: write the file's policy as a new
        /// root on top of the policy ref and pin it (recorded in the audit
        /// log; `policy log` starts from it).
        #[arg(long)]
        repin: bool,
    },
    /// Pin COMMIT as the trust root, after verifying the chain from it.
    ///
    /// In a clone, to check the fetched policy ref; on the server, to
    /// re-verify the history after a restore lost the trust file. The
    /// policy ref must lead back to COMMIT through authorized changes.
    /// Recorded in the audit log.
    Pin {
        /// The policy ref's root commit (the server's countersign.policyRoot).
        commit: String,
    },
    /// Write the policy ref's files into a directory to edit them.
    ///
    /// Default directory: $GIT_DIR/countersign/policy-edit. Only
    /// countersign.toml and the certificate files it names are written.
    Edit {
        /// Directory to write (must not exist or be empty).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Propose an edited policy directory as a signed change.
    ///
    /// Commits the directory on top of the policy ref, signed with your git
    /// signing key, as refs/countersign/proposals/NAME.
    Propose {
        /// Proposal name (letters, digits, `-`, `_`, `.`).
        name: String,
        /// Directory holding countersign.toml (default as for `edit`).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Why: the subject of the policy commit.
        #[arg(short = 'm', long = "message", value_name = "MESSAGE")]
        message: String,
        /// Share the proposal with this remote.
        #[arg(long, value_name = "REMOTE")]
        push: Option<String>,
    },
    /// Land an approved proposal.
    ///
    /// Makes a commit signed by you carrying the approvals from the
    /// proposal's notes that bind it, checks it as the hook would, and
    /// updates (with --push, pushes) refs/meta/countersign.
    Apply {
        /// Proposal name, or a full ref.
        name: String,
        /// Fetch approval notes from, and push the policy ref to, this remote.
        #[arg(long, value_name = "REMOTE")]
        push: Option<String>,
    },
    /// Every change of the policy since the trust root.
    ///
    /// Who signed it, who approved it, whether its parent's policy allowed
    /// it, and what it changed. Exits 1 if any change was not authorized.
    Log {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print a starter policy (roles declared, no people, main protected).
    ///
    /// Write it where the hook looks (`countersign policy init --id ID >
    /// $GIT_DIR/countersign.toml`, or a path set as git config
    /// countersign.policy); every push to main is rejected until people
    /// with keys are added. It explains each section in comments:
    ///
    /// [repository] id: a stable name approvals are bound to.
    ///
    /// [roles] NAME = "description": every role a person or rule names.
    ///
    /// [people.ID] name, roles, ssh (OpenSSH public keys), openpgp (paths
    /// of certificate files, relative to the policy), expires, revoked; a
    /// key may be a table { key = "...", expires, revoked, retired }.
    ///
    /// [[rule]] name, refs (patterns under refs/), commit-signers,
    /// tag-signers, force-push, delete, baseline. Refs no rule matches are
    /// unprotected.
    ///
    /// [rule.merge] required, signers, approvals = [{ role, count }],
    /// approvers-distinct-from-authors, merger-distinct-from-approvers,
    /// merger-distinct-from-authors.
    ///
    /// [policy-changes] signers, approvals: who changes the policy once it
    /// lives on refs/meta/countersign. [limits]: budgets for one push.
    ///
    /// Check it with `countersign policy check`; change people, keys and
    /// roles with `countersign people|keys|roles`.
    Init {
        /// The repository id to bind approvals to, e.g. acme/payments.
        #[arg(long)]
        id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

/// Parse arguments and run; returns the exit code.
pub fn run() -> Exit {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Error
            } else {
                Exit::Ok
            };
        }
    };
    match cli.command {
        Command::Hook {
            hook: HookKind::PreReceive,
        } => pre_receive(),
        Command::Hook {
            hook: HookKind::PostReceive,
        } => post_receive(),
        Command::Install(args) => crate::cli::install_cmd::run(args),
        Command::Log { action } => crate::cli::log_cmds::run(action),
        Command::Policy {
            action:
                PolicyAction::Check {
                    policy,
                    commit,
                    format,
                },
        } => policy_check(policy, commit, format),
        Command::Policy {
            action: PolicyAction::Migrate { policy, repin },
        } => policy_cmds::migrate(policy, repin),
        Command::Policy {
            action: PolicyAction::Pin { commit },
        } => policy_cmds::pin(&commit),
        Command::Policy {
            action: PolicyAction::Edit { dir },
        } => policy_cmds::edit(dir),
        Command::Policy {
            action:
                PolicyAction::Propose {
                    name,
                    dir,
                    message,
                    push,
                },
        } => policy_cmds::propose(&name, dir, &message, push.as_deref()),
        Command::Policy {
            action: PolicyAction::Apply { name, push },
        } => policy_cmds::apply(&name, push.as_deref()),
        Command::Policy {
            action: PolicyAction::Log { format },
        } => policy_cmds::log(format == Format::Json),
        Command::Policy {
            action: PolicyAction::Init { id },
        } => {
            print!("{}", countersign::policy::starter(&id));
            Exit::Ok
        }
        Command::Verify {
            range,
            refname,
            policy,
            trust_root,
            format,
            max_findings,
            no_cache,
        } => verify(
            &range,
            &refname,
            policy,
            trust_root.as_deref(),
            (format, max_findings),
            !no_cache,
        ),
        Command::Approve {
            rev,
            refname,
            result,
            repository,
            policy,
            push,
            no_note,
        } => approve(&rev, &refname, result, repository, policy, push, no_note),
        Command::Merge {
            topic,
            into,
            policy,
            approvals,
            message,
            squash,
        } => merge(&topic, into, policy, approvals, message, squash),
        Command::Status {
            topic,
            refname,
            policy,
            format,
        } => status(&topic, &refname, policy, format),
        Command::Audit { action } => audit(action),
        Command::Report(args) => crate::cli::report_cmd::run(args),
        Command::People { action } => crate::cli::admin_cmds::people(action),
        Command::Keys { action } => crate::cli::admin_cmds::keys(action),
        Command::Roles { action } => crate::cli::admin_cmds::roles(action),
        Command::Demo => match crate::cli::demo::run(&mut std::io::stdout()) {
            Ok(()) => Exit::Ok,
            Err(e) => {
                error(&format!("{e:#}"));
                Exit::Error
            }
        },
        Command::Doctor { repo, format } => doctor(repo.as_deref(), format),
        Command::Completions { shell } => completions(shell),
        Command::Man { out } => man_pages(&out),
    }
}

/// `countersign doctor`: every check, ok / warning / problem, with fixes.
fn doctor(dir: Option<&std::path::Path>, format: Format) -> Exit {
    use countersign::doctor::{self, Status};
    let report = match doctor::run(dir, time::now()) {
        Ok(r) => r,
        Err(e) => {
            print_error(&e, Some("pass `--repo DIR` (the server's bare repository)"));
            return Exit::Error;
        }
    };
    let problems = report.count(Status::Problem);
    let warnings = report.count(Status::Warning);
    match format {
        Format::Json => match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                error(&format!("cannot write the report: {e}"));
                return Exit::Error;
            }
        },
        Format::Text => {
            println!(
                "{}: doctor: {} (checked as {})",
                report::PREFIX,
                sanitize::escape(&report.repository),
                sanitize::escape(&report.user)
            );
            for c in &report.checks {
                let status = match c.status {
                    Status::Ok => "ok",
                    Status::Warning => "warning",
                    Status::Problem => "problem",
                };
                let mut lines = c.message.lines();
                println!(
                    "  {status:<8} {}: {}",
                    c.check,
                    sanitize::escape(lines.next().unwrap_or(""))
                );
                for l in lines {
                    println!("  {:<8}   {}", "", sanitize::escape(l));
                }
                if let Some(fix) = &c.fix {
                    println!("  {:<8} fix: {}", "", sanitize::escape(fix));
                }
            }
            println!(
                "{}: doctor: {problems} problem(s), {warnings} warning(s)",
                report::PREFIX
            );
        }
    }
    if problems > 0 {
        Exit::Rejected
    } else {
        Exit::Ok
    }
}

/// `countersign completions SHELL`: the script clap_complete makes from
/// the same definitions that parse the arguments.
fn completions(shell: clap_complete::Shell) -> Exit {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "countersign", &mut out);
    match std::io::stdout().lock().write_all(&out) {
        Ok(()) => Exit::Ok,
        // `countersign completions bash | head` is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Exit::Ok,
        Err(e) => {
            error(&format!("cannot write the completion script: {e}"));
            Exit::Error
        }
    }
}

/// `countersign man --out DIR`: one roff page per command and subcommand
/// (clap_mangen), each named by its path, e.g. `countersign-policy-check.1`.
fn man_pages(out: &std::path::Path) -> Exit {
    fn write_all(
        cmd: clap::Command,
        out: &std::path::Path,
        written: &mut Vec<PathBuf>,
    ) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            write_all(sub.clone(), out, written)?;
        }
        let page = clap_mangen::Man::new(cmd)
            .source(format!("countersign {}", env!("CARGO_PKG_VERSION")))
            .manual("countersign manual");
        written.push(page.generate_to(out)?);
        Ok(())
    }
    if let Err(e) = std::fs::create_dir_all(out) {
        error(&format!("cannot create `{}`: {e}", out.display()));
        return Exit::Error;
    }
    let mut cmd = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    // Names subcommands by their full path (countersign-policy-check).
    cmd.build();
    let mut written = Vec::new();
    if let Err(e) = write_all(cmd, out, &mut written) {
        error(&format!(
            "cannot write man pages into `{}`: {e}",
            out.display()
        ));
        return Exit::Error;
    }
    written.sort();
    println!(
        "{}: wrote {} man page(s) into {}; read one with `man -l {}`",
        report::PREFIX,
        written.len(),
        out.display(),
        out.join("countersign.1").display()
    );
    Exit::Ok
}

/// The one error printer of the binary: `countersign: error: <what>`,
/// then `  help: <what to do>` when there is a help line. Every command
/// reports its errors through it.
pub(crate) fn print_error(msg: &str, help: Option<&str>) {
    match help {
        Some(h) => eprintln!("{}: error: {msg}\n  help: {h}", report::PREFIX),
        None => eprintln!("{}: error: {msg}", report::PREFIX),
    }
}

fn error(msg: &str) {
    print_error(msg, None);
}

fn post_receive() -> Exit {
    // git passes the updated refs on stdin; the log reads the refs
    // themselves, so the input is drained and not trusted.
    let _ = std::io::copy(
        &mut std::io::stdin().take(hook::MAX_INPUT_BYTES as u64),
        &mut std::io::sink(),
    );
    match hook::post_receive(time::now()) {
        Ok(Some(s)) => {
            if let Some(f) = countersign::ledger::unacknowledged_finding(&s.unacknowledged) {
                eprintln!(
                    "{}: warning: {}\n  help: {}",
                    report::PREFIX,
                    countersign::sanitize::escape(&f.message),
                    f.help
                );
            }
        }
        Ok(None) => {}
        Err(f) => {
            // The pusher sees the code, not server paths; the admin finds
            // the message in the audit log (best effort: it may be the
            // thing that failed) and in `countersign log verify`.
            if let Ok(repo) = hook::open_repo() {
                let _ = countersign::audit::append(
                    &countersign::audit::path_for(&repo),
                    "ref-log-not-updated",
                    serde_json::json!({ "finding": f }),
                    time::now(),
                );
            }
            eprintln!(
                "{}: warning: the push landed, but the ref-state log was not brought up to date ({})\n  help: the next push fills it in; an admin finds the reason in the audit log on the server",
                report::PREFIX,
                f.code
            );
        }
    }
    Exit::Ok
}

fn pre_receive() -> Exit {
    let started = std::time::Instant::now();
    let mut input = Vec::new();
    // Read at most one byte more than the hook accepts, so a flood of
    // input is refused without being held.
    let limit = u64::try_from(hook::MAX_INPUT_BYTES).unwrap_or(u64::MAX) + 1;
    let outcome = match std::io::stdin().take(limit).read_to_end(&mut input) {
        Ok(_) => hook::pre_receive(&input, time::now(), started),
        Err(e) => hook::reject_unread(
            Finding::new(
                Code::BadInput,
                format!("cannot read the hook's input: {e}"),
                "run only as a git hook",
            ),
            time::now(),
        ),
    };
    let decision = &outcome.decision;
    let text = report::text(decision, report::Mode::Push, outcome.limits.findings);
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(report::cap(text, outcome.limits.stderr_bytes).as_bytes());
    if decision.accepted() {
        Exit::Ok
    } else {
        Exit::Rejected
    }
}

fn resolve_policy(policy: Option<PathBuf>) -> Result<(Option<git2::Repository>, PathBuf), Finding> {
    let repo = match &policy {
        Some(_) => hook::find_repo()?,
        None => Some(hook::open_repo()?),
    };
    let located = hook::locate_policy(policy.as_deref(), repo.as_ref())
        .map_err(|e| Finding::new(Code::PolicyInvalid, e.to_string(), e.help()))?;
    Ok((repo, located.path))
}

fn policy_check(policy: Option<PathBuf>, commit: Option<String>, format: Format) -> Exit {
    if let Some(rev) = commit {
        return match policy_cmds::check_commit(&rev) {
            Ok((p, path)) => describe_policy(&p, &path, format),
            Err(policy_cmds::CheckFailed::Usage(code)) => code,
            Err(policy_cmds::CheckFailed::Invalid { label, message }) => {
                if format == Format::Json {
                    let problem = serde_json::json!({ "line": 0, "col": 0, "message": message });
                    println!("{}", invalid_json(&label, vec![problem]));
                } else {
                    eprintln!("{message}");
                }
                Exit::Rejected
            }
        };
    }
    let path = match resolve_policy(policy) {
        Ok((_, p)) => p,
        Err(f) => {
            error(&format!("{}\n  help: {}", f.admin_message(), f.help));
            return Exit::Error;
        }
    };
    match countersign::policy::load(&path) {
        Ok(p) => describe_policy(&p, &path, format),
        Err(countersign::policy::PolicyError::Invalid { path, problems })
            if format == Format::Json =>
        {
            let problems = problems
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "line": p.line,
                        "col": p.col,
                        "message": p.message,
                        "source": p.excerpt.as_ref().map(|(src, _)| src),
                    })
                })
                .collect();
            println!("{}", invalid_json(&path.display().to_string(), problems));
            Exit::Rejected
        }
        Err(e) if format == Format::Json => {
            let problem = serde_json::json!({ "line": 0, "col": 0, "message": e.to_string() });
            println!(
                "{}",
                invalid_json(&path.display().to_string(), vec![problem])
            );
            Exit::Rejected
        }
        Err(e @ countersign::policy::PolicyError::Invalid { .. }) => {
            eprint!("{}", e.details());
            error(&e.to_string());
            Exit::Rejected
        }
        Err(e) => {
            error(&e.to_string());
            Exit::Rejected
        }
    }
}

/// `policy check --format json` of a policy that does not load.
fn invalid_json(policy: &str, problems: Vec<serde_json::Value>) -> String {
    serde_json::json!({ "valid": false, "policy": policy, "problems": problems }).to_string()
}

/// One rule as data (`policy check` and `status` JSON).
fn rule_json(r: &countersign::policy::Rule) -> serde_json::Value {
    use serde_json::json;
    json!({
        "number": r.number,
        "name": r.name,
        "label": r.label(),
        "refs": r.refs.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
        "commit_signers": r.commit_signers,
        "tag_signers": r.tag_signers,
        "merge": r.merge.as_ref().map(|m| json!({
            "required": m.required,
            "signers": m.signers,
            "approvals": approvals_json(&m.approvals),
            "approvers_distinct_from_authors": m.approvers_distinct_from_authors,
            "merger_distinct_from_approvers": m.merger_distinct_from_approvers,
            "merger_distinct_from_authors": m.merger_distinct_from_authors,
        })),
        "force_push": r.force_push,
        "delete": r.delete,
        "baseline": r.baseline,
    })
}

fn approvals_json(a: &[countersign::policy::ApprovalRequirement]) -> Vec<serde_json::Value> {
    a.iter()
        .map(|r| serde_json::json!({ "role": r.role, "count": r.count }))
        .collect()
}

/// `policy check --format json` of a valid policy: what the text output
/// says, as data.
fn policy_json(p: &countersign::policy::Policy, path: &std::path::Path) -> serde_json::Value {
    use serde_json::json;
    let rules: Vec<serde_json::Value> = p.rules.iter().map(rule_json).collect();
    json!({
        "valid": true,
        "policy": path.display().to_string(),
        "repository": p.repository_id,
        "roles": p.roles.keys().collect::<Vec<_>>(),
        "people": p.people.keys().collect::<Vec<_>>(),
        "keys": p.keyring.keys().len(),
        "rules": rules,
        "policy_changes": p.policy_changes.as_ref().map(|c| json!({
            "signers": c.signers,
            "approvals": approvals_json(&c.approvals),
        })),
    })
}

fn describe_policy(
    p: &countersign::policy::Policy,
    path: &std::path::Path,
    format: Format,
) -> Exit {
    if format == Format::Json {
        println!("{}", policy_json(p, path));
        return Exit::Ok;
    }
    let keys = p.keyring.keys().len();
    println!(
        "{}: policy `{}` is valid: repository `{}`, {} role(s), {} people, {} key(s), {} rule(s)",
        report::PREFIX,
        path.display(),
        p.repository_id,
        p.roles.len(),
        p.people.len(),
        keys,
        p.rules.len()
    );
    for r in &p.rules {
        let mut what = Vec::new();
        if let Some(s) = &r.commit_signers {
            what.push(format!("commits signed by [{}]", s.join(", ")));
        }
        if let Some(s) = &r.tag_signers {
            what.push(format!(
                "signed annotated tags by [{}], never moved",
                s.join(", ")
            ));
        }
        if let Some(m) = &r.merge {
            let needs: Vec<String> = m.approvals.iter().map(ToString::to_string).collect();
            what.push(format!(
                "changes land as merges signed by [{}] with approvals [{}]{}",
                m.signers.join(", "),
                needs.join(", "),
                if m.required {
                    ""
                } else {
                    " (direct commits also allowed)"
                }
            ));
        }
        what.push(format!(
            "force-push {}",
            if r.force_push { "allowed" } else { "refused" }
        ));
        what.push(format!(
            "delete {}",
            if r.delete { "allowed" } else { "refused" }
        ));
        println!("  {}: {}", r.label(), what.join("; "));
    }
    if let Some(c) = &p.policy_changes {
        let needs: Vec<String> = c.approvals.iter().map(ToString::to_string).collect();
        println!(
                    "  [policy-changes] (policy ref mode): changes signed by [{}] with approvals [{}] from other people",
                    c.signers.join(", "),
                    needs.join(", ")
                );
    }
    println!(
        "  refs that no rule matches are unprotected: pushes to them are accepted without checks"
    );
    Exit::Ok
}

fn verify(
    range: &str,
    refname: &str,
    given: Option<PathBuf>,
    trust_root: Option<&str>,
    (format, max_findings): (Format, usize),
    cache: bool,
) -> Exit {
    let repo = match hook::open_repo() {
        Ok(r) => r,
        Err(f) => return render(&Decision::reject_all(&[], f), format, max_findings),
    };
    let resolve = |rev: &str| -> Result<git2::Oid, Finding> {
        repo.revparse_single(rev).map(|o| o.id()).map_err(|e| {
            Finding::new(
                Code::ObjectMissing,
                format!("cannot resolve `{rev}`: {}", e.message()),
                "name a revision this repository holds",
            )
        })
    };
    let update = match range.split_once("..") {
        Some((old, new)) => resolve(old).and_then(|o| resolve(new).map(|n| (o, n))),
        None => resolve(range).map(|n| (git2::Oid::ZERO_SHA1, n)),
    };
    let (old, new) = match update {
        Ok(x) => x,
        Err(f) => return render(&Decision::reject_all(&[], f), format, max_findings),
    };
    let updates = [RefUpdate {
        old,
        new,
        refname: refname.to_string(),
    }];
    let root = match trust_root.map(resolve).transpose() {
        Ok(r) => r,
        Err(f) => return render(&Decision::reject_all(&updates, f), format, max_findings),
    };
    let policy = match hook::command_policy_from(&repo, given.as_deref(), root) {
        Ok(p) => p,
        Err(f) => return render(&Decision::reject_all(&updates, f), format, max_findings),
    };
    let mut verifier = Verifier::new(&repo, &policy, time::now())
        .for_history()
        .judging_once();
    if cache {
        verifier = verifier.with_cache().with_walk_memo();
    }
    let decision = verifier.decide(&updates);
    // Only later runs' time depends on it.
    let written = verifier.persist_cache();
    if std::env::var_os("COUNTERSIGN_CACHE_STATS").is_some() {
        let (hits, verified) = verifier.cache_stats();
        eprintln!(
            "verification cache: {hits} from the cache, {verified} verified, {} held{}",
            verifier.cached_verifications(),
            written
                .err()
                .map(|e| format!(" (not written: {e})"))
                .unwrap_or_default()
        );
    }
    render(&decision, format, max_findings)
}

fn render(decision: &Decision, format: Format, per_code: usize) -> Exit {
    match format {
        Format::Json => println!("{}", report::json(decision)),
        Format::Text => {
            let text = report::verify_text(decision, per_code);
            if decision.accepted() {
                print!("{text}");
            } else {
                eprint!("{text}");
            }
        }
    }
    if decision.accepted() {
        Exit::Ok
    } else {
        Exit::Rejected
    }
}

/// Open the repository and load the policy for the developer commands.
fn repo_and_policy(
    policy: Option<PathBuf>,
) -> Result<(git2::Repository, countersign::policy::Policy), Exit> {
    let fail = |f: Finding| {
        error(&format!("{}\n  help: {}", f.admin_message(), f.help));
        Exit::Error
    };
    let repo = hook::open_repo().map_err(fail)?;
    let policy = hook::command_policy(&repo, policy.as_deref()).map_err(fail)?;
    Ok((repo, policy))
}

fn approve(
    rev: &str,
    refname: &str,
    result: bool,
    repository: Option<String>,
    policy: Option<PathBuf>,
    push: Option<String>,
    no_note: bool,
) -> Exit {
    use countersign::workflow;
    if !result && countersign::workflow::full_ref(refname) == countersign::governance::POLICY_REF {
        error("a policy change is approved as an exact result: add `--result`\n  help: approvals of a topic do not bind the policy a change lands on, so the policy ref takes none");
        return Exit::Error;
    }
    let repo = match hook::open_repo() {
        Ok(r) => r,
        Err(f) => {
            error(&f.admin_message());
            return Exit::Error;
        }
    };
    // The policy is optional here (only to warn about an approval that
    // would not count): the default file may be absent.
    let pinned = matches!(countersign::governance::pinned_root(&repo), Ok(Some(_)));
    let configured_policy = match hook::locate_policy(policy.as_deref(), Some(&repo)) {
        Ok(_) if pinned && policy.is_none() => Some(PathBuf::new()),
        Ok(l) if l.source == hook::PolicySource::Default && !l.path.exists() => None,
        Ok(l) => Some(l.path),
        Err(e) => {
            error(&format!("{e}\n  help: {}", e.help()));
            return Exit::Error;
        }
    };
    let loaded = match configured_policy {
        Some(p) => {
            match hook::command_policy(&repo, (!pinned || policy.is_some()).then_some(p.as_path()))
            {
                Ok(p) => Some(p),
                Err(f) => {
                    error(&format!("{}\n  help: {}", f.admin_message(), f.help));
                    return Exit::Error;
                }
            }
        }
        None => None,
    };
    let id = repository
        .or_else(|| {
            repo.config()
                .and_then(|c| c.get_string("countersign.repository"))
                .ok()
        })
        .or_else(|| loaded.as_ref().map(|p| p.repository_id.clone()));
    let Some(id) = id else {
        error("unknown repository id\n  help: pass `--repository ID` (the policy's repository.id), `--policy FILE`, or set `git config countersign.repository ID`");
        return Exit::Error;
    };
    let target = workflow::full_ref(refname);
    let run = || -> Result<String, workflow::WorkflowError> {
        let commit = workflow::resolve_commit(&repo, rev)?;
        let statement = workflow::statement_for(&repo, &id, &target, commit, result, time::now())?;
        let approval = workflow::sign(&repo, statement)?;
        if let Some(p) = &loaded {
            let st = approval.statement.canonical();
            if let Err(e) = countersign::signing::signature::verify_approval(
                &p.keyring,
                &approval.signature,
                &st,
                time::now(),
            ) {
                eprintln!(
                    "{}: warning: this approval will not count under the policy: {e}",
                    report::PREFIX
                );
            }
        }
        let trailer = approval.trailer();
        if !no_note {
            workflow::share(&repo, commit, &trailer, push.as_deref())?;
        }
        Ok(trailer)
    };
    match run() {
        Ok(trailer) => {
            println!("{trailer}");
            if !no_note && push.is_none() {
                eprintln!(
                    "{}: stored as a note on {rev}; share it with `git push origin {}`",
                    report::PREFIX,
                    countersign::workflow::NOTES_REF
                );
            }
            Exit::Ok
        }
        Err(e) => {
            error(&e.to_string());
            Exit::Error
        }
    }
}

fn merge(
    topic: &str,
    into: Option<String>,
    policy: Option<PathBuf>,
    extra: Vec<String>,
    message: Option<String>,
    squash: bool,
) -> Exit {
    use countersign::workflow::{self, Landed};
    let (repo, policy) = match repo_and_policy(policy) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let req = workflow::LandRequest {
        topic: topic.to_string(),
        into,
        extra,
        message,
        shape: if squash {
            workflow::Shape::Squash
        } else {
            workflow::Shape::Merge
        },
    };
    let landed = match workflow::land(&repo, &policy, &req, time::now()) {
        Ok(l) => l,
        Err(e) => {
            error(&e.to_string());
            return Exit::Error;
        }
    };
    let left_out = match &landed {
        Landed::Made { left_out, .. }
        | Landed::Refused { left_out, .. }
        | Landed::Undone { left_out, .. } => left_out,
    };
    for a in left_out {
        eprintln!(
            "{}: leaving out approval #{} (by={}): {}",
            report::PREFIX,
            a.index,
            sanitize::escape(&a.claimed_by),
            sanitize::escape(&a.status)
        );
    }
    match &landed {
        Landed::Refused { decision, .. } => {
            eprint!(
                "{}",
                report::text(decision, report::Mode::Verify, usize::MAX)
            );
            eprintln!(
                "{}: not merged: the hook would reject this merge",
                report::PREFIX
            );
            Exit::Rejected
        }
        Landed::Undone { decision, .. } => {
            eprint!(
                "{}",
                report::text(decision, report::Mode::Verify, usize::MAX)
            );
            eprintln!("{}: merge undone: the hook would reject it", report::PREFIX);
            Exit::Rejected
        }
        Landed::Made {
            commit,
            into,
            approvals,
            ..
        } => {
            println!(
                "{}: merged {} into {into} as {} with {approvals} approval(s); push it with `git push origin {into}`",
                report::PREFIX,
                sanitize::escape(topic),
                &commit.to_string()[..12],
            );
            Exit::Ok
        }
    }
}

fn status(topic: &str, refname: &str, policy: Option<PathBuf>, format: Format) -> Exit {
    use countersign::workflow;
    let (repo, policy) = match repo_and_policy(policy) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let target = workflow::full_ref(refname);
    let short = target
        .strip_prefix("refs/heads/")
        .unwrap_or(&target)
        .to_string();
    let run = || -> Result<Exit, workflow::WorkflowError> {
        let base = workflow::resolve_commit(&repo, &target).or_else(|_| {
            workflow::resolve_commit(&repo, &format!("refs/remotes/origin/{short}"))
        })?;
        let topic_id = workflow::resolve_commit(&repo, topic)?;
        let trailers = workflow::notes_in_range(&repo, base, topic_id)?;
        // The same rule matching as the hook (symrefs, core.ignorecase).
        let rules = Verifier::new(&repo, &policy, time::now()).rules_for(&target);
        if format == Format::Json {
            let plan = workflow::plan(
                &repo,
                &policy,
                &target,
                base,
                topic_id,
                workflow::Shape::Merge,
                &trailers,
                time::now(),
            )?;
            let decision: serde_json::Value =
                serde_json::from_str(&report::json(&plan.decision)).unwrap_or_default();
            let doc = serde_json::json!({
                "topic": topic,
                "topic_commit": topic_id.to_string(),
                "ref": target,
                "base": base.to_string(),
                "rules": rules.iter().map(|r| rule_json(r)).collect::<Vec<_>>(),
                "ready": plan.decision.accepted(),
                "merge": plan.judged,
                "decision": decision,
            });
            println!("{doc}");
            return Ok(if plan.decision.accepted() {
                Exit::Ok
            } else {
                Exit::Rejected
            });
        }
        println!(
            "{}: {} ({}) into {}",
            report::PREFIX,
            sanitize::escape(topic),
            &topic_id.to_string()[..12],
            target
        );
        if rules.iter().all(|r| r.merge.is_none()) {
            println!("  no merge rule applies to {target}: approvals are not required");
        }
        for r in &rules {
            if let Some(m) = &r.merge {
                let needs: Vec<String> = m.approvals.iter().map(ToString::to_string).collect();
                println!(
                    "  {} needs: approvals [{}]; merge signed by [{}]",
                    r.label(),
                    needs.join(", "),
                    m.signers.join(", ")
                );
                let mut distinct = Vec::new();
                if m.approvers_distinct_from_authors {
                    distinct.push("approvers are not authors");
                }
                if m.merger_distinct_from_approvers {
                    distinct.push("the merger is not an approver");
                }
                if m.merger_distinct_from_authors {
                    distinct.push("the merger is not an author");
                }
                if !distinct.is_empty() {
                    println!("  distinct people: {}", distinct.join("; "));
                }
            }
        }
        let plan = workflow::plan(
            &repo,
            &policy,
            &target,
            base,
            topic_id,
            workflow::Shape::Merge,
            &trailers,
            time::now(),
        )?;
        let (decision, record) = (plan.decision, plan.judged);
        match &record {
            Some(rec) => {
                println!(
                    "  authors (signed commits in the topic): {}",
                    if rec.authors.is_empty() {
                        "none verified".to_string()
                    } else {
                        rec.authors.join(", ")
                    }
                );
                if rec.approvals.is_empty() {
                    println!("  approvals: none in the notes of the topic's commits (refs/notes/countersign; fetch them with `git fetch origin refs/notes/countersign:refs/notes/countersign`)");
                }
                for a in &rec.approvals {
                    println!(
                        "  approval #{} by={} key={}: {}",
                        a.index,
                        sanitize::escape(&a.claimed_by),
                        a.person.as_deref().unwrap_or("unverified"),
                        sanitize::escape(&a.status)
                    );
                }
            }
            None => println!("  (no merge rule evaluated)"),
        }
        if decision.accepted() {
            println!("{}: ready: merging now would be accepted (with a merge signed by an allowed signer)", report::PREFIX);
            Ok(Exit::Ok)
        } else {
            print!(
                "{}",
                report::text(&decision, report::Mode::Verify, usize::MAX)
            );
            Ok(Exit::Rejected)
        }
    };
    match run() {
        Ok(code) => code,
        Err(e) => {
            error(&e.to_string());
            Exit::Error
        }
    }
}

fn audit_log_path(log: Option<PathBuf>) -> Result<PathBuf, Exit> {
    if let Some(l) = log {
        return Ok(l);
    }
    match hook::find_repo() {
        Ok(Some(repo)) => Ok(countersign::audit::path_for(&repo)),
        Err(f) => {
            print_error(&f.admin_message(), Some(&f.help));
            Err(Exit::Error)
        }
        Ok(None) => {
            error("no audit log given and no repository here\n  help: pass `--log FILE`, or run inside the server repository");
            Err(Exit::Error)
        }
    }
}

fn read_log(path: &std::path::Path) -> Result<Vec<u8>, Exit> {
    std::fs::read(path).map_err(|e| {
        error(&format!(
            "cannot read the audit log `{}`: {e}",
            path.display()
        ));
        Exit::Error
    })
}

/// Parse `--since`: Unix seconds, a TOML date or date-time.
fn parse_since(s: &str) -> Option<time::Timestamp> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    s.parse::<toml_edit::Datetime>()
        .ok()
        .and_then(|d| time::from_toml(&d).ok())
}

fn audit(action: AuditAction) -> Exit {
    use countersign::audit as log;
    match action {
        AuditAction::Verify {
            log: path,
            expect_head,
            remote: Some(remote),
            server_key,
            checkpoint,
        } => {
            if checkpoint {
                error("--checkpoint records a log file's head; it does not go with --remote");
                return Exit::Error;
            }
            let copy = match path {
                Some(p) => match read_log(&p) {
                    Ok(b) => Some(b),
                    Err(code) => return code,
                },
                None => None,
            };
            if expect_head.is_some() {
                error("--expect-head checks a log file; with --remote the signed log's checkpoints check it");
                return Exit::Error;
            }
            crate::cli::log_cmds::verify_remote(&remote, server_key.as_deref(), copy.as_deref())
        }
        AuditAction::Verify {
            log: path,
            expect_head,
            remote: None,
            checkpoint,
            ..
        } => {
            let path = match audit_log_path(path) {
                Ok(p) => p,
                Err(code) => return code,
            };
            let bytes = match read_log(&path) {
                Ok(b) => b,
                Err(code) => return code,
            };
            let v = log::verify(&bytes);
            if let Some(b) = &v.first_break {
                error(&format!(
                    "audit log `{}` is broken at line {}: {}\n  help: records 1..{} verify; everything from line {} on cannot be trusted",
                    path.display(),
                    b.line,
                    b.message,
                    v.records,
                    b.line
                ));
                return Exit::Rejected;
            }
            if let Some(h) = expect_head {
                if !h.eq_ignore_ascii_case(&v.head) {
                    error(&format!(
                        "audit log `{}` verifies, but its head is {} and {} was expected\n  help: records were added or cut off the end since that head was taken",
                        path.display(),
                        v.head,
                        h
                    ));
                    return Exit::Rejected;
                }
            }
            if checkpoint {
                // Verified again under the log's lock, then recorded.
                let sharing =
                    hook::open_repo().map_or(log::Sharing::Umask, |r| log::Sharing::of(&r));
                match log::write_checkpoint(&path, sharing) {
                    Ok(head) => println!(
                        "{}: checkpoint `{}` recorded: record {}, head {}",
                        report::PREFIX,
                        log::checkpoint_path(&path).display(),
                        head.seq,
                        head.hash
                    ),
                    Err(e) => {
                        error(&e.to_string());
                        return Exit::Rejected;
                    }
                }
            } else {
                match log::check_against_checkpoint(&path, &bytes) {
                    Ok(None) => {}
                    Ok(Some(problem)) => {
                        error(&format!(
                            "audit log `{}`: {problem}\n  help: the chain verifies, but it no longer holds what the hook verified before; if an admin repaired it on purpose, record its new head with `countersign audit verify --checkpoint`",
                            path.display()
                        ));
                        return Exit::Rejected;
                    }
                    Err(e) => {
                        error(&e.to_string());
                        return Exit::Rejected;
                    }
                }
            }
            println!(
                "{}: audit log `{}` verifies: {} record(s), head {}",
                report::PREFIX,
                path.display(),
                v.records,
                v.head
            );
            Exit::Ok
        }
        AuditAction::Show {
            log: path,
            refname,
            since,
            format,
        } => {
            let path = match audit_log_path(path) {
                Ok(p) => p,
                Err(code) => return code,
            };
            let since = match since.as_deref().map(|s| (s, parse_since(s))) {
                Some((s, None)) => {
                    error(&format!("cannot read `--since {s}`\n  help: give a date (2026-11-29), a date-time (2026-11-29T10:00:00Z) or Unix seconds"));
                    return Exit::Error;
                }
                Some((_, t)) => t,
                None => None,
            };
            let bytes = match read_log(&path) {
                Ok(b) => b,
                Err(code) => return code,
            };
            let v = log::verify(&bytes);
            let mut shown = Vec::new();
            for line in bytes.split(|&b| b == b'\n').take(v.records) {
                let Ok(rec) = serde_json::from_slice::<serde_json::Value>(line) else {
                    continue;
                };
                if let Some(t) = since {
                    if rec
                        .get("time")
                        .and_then(|x| x.as_i64())
                        .is_none_or(|x| x < t)
                    {
                        continue;
                    }
                }
                if let Some(r) = &refname {
                    let r = countersign::workflow::full_ref(r);
                    let touches = rec
                        .get("updates")
                        .and_then(|u| u.as_array())
                        .is_some_and(|u| {
                            u.iter()
                                .any(|x| x.get("ref").and_then(|y| y.as_str()) == Some(r.as_str()))
                        });
                    if !touches {
                        continue;
                    }
                }
                shown.push(rec);
            }
            match format {
                Format::Json => println!("{}", serde_json::Value::Array(shown)),
                Format::Text => {
                    for rec in &shown {
                        println!("{}", audit_line(rec));
                    }
                }
            }
            if let Some(b) = &v.first_break {
                error(&format!(
                    "the log is broken at line {}: {}; records from there on are not shown",
                    b.line, b.message
                ));
                return Exit::Rejected;
            }
            Exit::Ok
        }
    }
}

fn audit_line(rec: &serde_json::Value) -> String {
    let get = |k: &str| rec.get(k).and_then(|v| v.as_str()).unwrap_or("");
    let seq = rec.get("seq").and_then(|v| v.as_u64()).unwrap_or(0);
    let head = format!("#{seq} {} {}", get("time_utc"), get("kind"));
    let text = match get("kind") {
        "push" => {
            let who = rec
                .pointer("/pusher/name")
                .and_then(|v| v.as_str())
                .unwrap_or("?");
            let mut parts = Vec::new();
            for u in rec
                .get("updates")
                .and_then(|u| u.as_array())
                .into_iter()
                .flatten()
            {
                let s = |k: &str| u.get(k).and_then(|v| v.as_str()).unwrap_or("");
                parts.push(format!(
                    "{} {}..{}",
                    s("ref"),
                    &s("old")[..s("old").len().min(12)],
                    &s("new")[..s("new").len().min(12)]
                ));
            }
            let codes: Vec<&str> = rec
                .get("findings")
                .and_then(|f| f.as_array())
                .into_iter()
                .flatten()
                .filter_map(|f| f.get("code").and_then(|c| c.as_str()))
                .collect();
            format!(
                "{head}: {} by {who}: {}{}",
                get("verdict"),
                parts.join(", "),
                if codes.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", codes.join(", "))
                }
            )
        }
        _ => format!(
            "{head}: {} by {}: {}",
            get("command"),
            get("actor"),
            get("change")
        ),
    };
    sanitize::escape(&text)
}
