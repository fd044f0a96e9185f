//! Command-line interface: clap definitions, then one function per command.
//!
//! Arguments are parsed here and turned into library calls; decisions come
//! back as values and are rendered by `countersign::report`. Exit codes are
//! a contract: 0 accepted/valid, 1 rejected/invalid, 2 usage or internal
//! error.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use countersign::finding::{Code, Finding};
use countersign::hook;
use countersign::report;
use countersign::time;
use countersign::verify::{Decision, RefUpdate, Verifier};

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
    /// Run as a git hook (installed by install.sh; reads git's hook input).
    Hook {
        #[command(subcommand)]
        hook: HookKind,
    },
    /// Check or create a policy file.
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
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Make a sandbox server repository and show accepted and rejected pushes.
    Demo,
}

#[derive(Debug, Subcommand)]
enum HookKind {
    /// The pre-receive hook: reads `<old> <new> <ref>` lines on stdin.
    PreReceive,
}

#[derive(Debug, Subcommand)]
enum PolicyAction {
    /// Validate a policy and report every problem with file:line:col.
    Check {
        /// Policy file (default: as for `verify`).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
    /// Print a starter policy (roles declared, no people, main protected).
    Init {
        /// The repository id to bind approvals to, e.g. acme/payments.
        #[arg(long)]
        id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
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
        Command::Policy {
            action: PolicyAction::Check { policy },
        } => policy_check(policy),
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
            format,
        } => verify(&range, &refname, policy, format),
        Command::Demo => match crate::demo::run(&mut std::io::stdout()) {
            Ok(()) => Exit::Ok,
            Err(e) => {
                error(&format!("{e:#}"));
                Exit::Error
            }
        },
    }
}

fn error(msg: &str) {
    eprintln!("{}: error: {msg}", report::PREFIX);
}

fn pre_receive() -> Exit {
    let mut input = Vec::new();
    let decision = match std::io::stdin().read_to_end(&mut input) {
        Ok(_) => hook::pre_receive(&input, time::now()),
        Err(e) => Decision::reject_all(
            &[],
            Finding::new(
                Code::BadInput,
                format!("cannot read the hook's input: {e}"),
                "run only as a git hook",
            ),
        ),
    };
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(report::text(&decision, report::Mode::Push, 100).as_bytes());
    if decision.accepted() {
        Exit::Ok
    } else {
        Exit::Rejected
    }
}

fn resolve_policy(policy: Option<PathBuf>) -> Result<(Option<git2::Repository>, PathBuf), Finding> {
    match policy {
        Some(p) => Ok((hook::open_repo().ok(), p)),
        None => {
            let repo = hook::open_repo()?;
            let path = hook::policy_path(&repo).map_err(|e| {
                Finding::new(
                    Code::PolicyInvalid,
                    format!("cannot read `{}`: {}", hook::POLICY_CONFIG_KEY, e.message()),
                    "fix the repository's git config",
                )
            })?;
            Ok((Some(repo), path))
        }
    }
}

fn policy_check(policy: Option<PathBuf>) -> Exit {
    let path = match resolve_policy(policy) {
        Ok((_, p)) => p,
        Err(f) => {
            error(&format!("{}\n  help: {}", f.message, f.help));
            return Exit::Error;
        }
    };
    match countersign::policy::load(&path) {
        Ok(p) => {
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
            println!("  refs that no rule matches are unprotected: pushes to them are accepted without checks");
            Exit::Ok
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

fn verify(range: &str, refname: &str, policy: Option<PathBuf>, format: Format) -> Exit {
    let (repo, path) = match resolve_policy(policy) {
        Ok(x) => x,
        Err(f) => return render(&Decision::reject_all(&[], f), format),
    };
    let repo = match repo.map(Ok).unwrap_or_else(hook::open_repo) {
        Ok(r) => r,
        Err(f) => return render(&Decision::reject_all(&[], f), format),
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
        None => resolve(range).map(|n| (git2::Oid::zero(), n)),
    };
    let (old, new) = match update {
        Ok(x) => x,
        Err(f) => return render(&Decision::reject_all(&[], f), format),
    };
    let updates = [RefUpdate {
        old,
        new,
        refname: refname.to_string(),
    }];
    let policy = match hook::load_policy(&path) {
        Ok(p) => p,
        Err(f) => return render(&Decision::reject_all(&updates, f), format),
    };
    let decision = Verifier::new(&repo, &policy, time::now()).decide(&updates);
    render(&decision, format)
}

fn render(decision: &Decision, format: Format) -> Exit {
    match format {
        Format::Json => println!("{}", report::json(decision)),
        Format::Text => {
            if decision.accepted() {
                print!(
                    "{}",
                    report::text(decision, report::Mode::Verify, usize::MAX)
                );
            } else {
                eprint!(
                    "{}",
                    report::text(decision, report::Mode::Verify, usize::MAX)
                );
            }
        }
    }
    if decision.accepted() {
        Exit::Ok
    } else {
        Exit::Rejected
    }
}
