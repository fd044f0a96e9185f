//! `countersign doctor`: everything that makes the hook silently not run
//! or always fail, checked as the user who runs it (run it as the user the
//! hook runs as), each with a fix.
//!
//! The hook itself can tell a pusher only that something is wrong on the
//! server (it never shows server paths); this is where the admin sees
//! which file and why. Nothing here writes to the repository, except a
//! probe file created and removed again to learn whether the audit log's
//! directory is writable.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use git2::Repository;
use serde::Serialize;

use crate::audit;
use crate::governance::PolicyId;
use crate::hook;
use crate::time::Timestamp;

/// The line that marks countersign's shim (hooks/pre-receive).
pub const SHIM_MARKER: &str = "countersign pre-receive shim";

/// Where the shim names the binary it runs.
const SHIM_BIN: &str = "COUNTERSIGN_BIN=";

/// Bytes of a hook script read to look for the marker.
const MAX_SCRIPT_BYTES: u64 = 64 << 10;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Ok,
    /// Worth knowing; pushes are still enforced.
    Warning,
    /// The hook does not run, or rejects every push.
    Problem,
}

/// One check: what was looked at, what was found, what fixes it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Short name: `repository`, `core.hooksPath`, `shim`, `policy`, ...
    pub check: &'static str,
    /// How it came out.
    pub status: Status,
    /// What was found (server paths included: this is for the admin).
    pub message: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(check: &'static str, message: impl Into<String>) -> Self {
        Check {
            check,
            status: Status::Ok,
            message: message.into(),
            fix: None,
        }
    }

    fn warning(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            check,
            status: Status::Warning,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    fn problem(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            check,
            status: Status::Problem,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Everything doctor found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The repository (its git directory).
    pub repository: String,
    /// Who the checks ran as.
    pub user: String,
    /// Every check, in the order run.
    pub checks: Vec<Check>,
}

impl Report {
    /// How many checks came out `status`.
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }
}

/// The current user's uid (the owner of `/proc/self`), where it can be known.
fn current_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// A user's name from /etc/passwd.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id = f.nth(1)?.parse::<u32>().ok()?;
        (id == uid).then(|| name.to_string())
    })
}

fn describe_user(uid: Option<u32>) -> String {
    match uid {
        Some(u) => match user_name(u) {
            Some(n) => format!("{n} (uid {u})"),
            None => format!("uid {u}"),
        },
        None => "the current user".into(),
    }
}

/// Run every check on the repository at `dir` (else the one found from
/// GIT_DIR or the current directory).
///
/// # Errors
///
/// A message when there is no repository at all to check.
pub fn run(dir: Option<&Path>, now: Timestamp) -> Result<Report, String> {
    let uid = current_uid();
    let user = describe_user(uid);
    let opened = match dir {
        Some(d) => Repository::open(d),
        None => Repository::open_from_env(),
    };
    let mut checks = Vec::new();
    let repo = match opened {
        Ok(r) => Some(r),
        Err(e) if e.code() == git2::ErrorCode::Owner => {
            checks.push(Check::problem(
                "repository",
                format!(
                    "git's safe.directory check refuses the repository for {user}: {}",
                    e.message()
                ),
                format!(
                    "run doctor (and the admin commands) as the repository's owner, or trust it for this user: `git config --global --add safe.directory {}`",
                    dir.and_then(|d| std::fs::canonicalize(d).ok())
                        .map_or_else(|| "<repository path>".into(), |d| d.display().to_string())
                ),
            ));
            None
        }
        Err(e) => {
            return Err(match dir {
                Some(d) => format!(
                    "cannot open `{}` as a repository: {}",
                    d.display(),
                    e.message()
                ),
                None => format!("no repository here: {}; pass `--repo DIR`", e.message()),
            })
        }
    };
    let git_dir = match (&repo, dir) {
        (Some(r), _) => r.path().to_path_buf(),
        (None, Some(d)) => d.to_path_buf(),
        (None, None) => PathBuf::from("."),
    };
    let git_dir = std::fs::canonicalize(&git_dir).unwrap_or(git_dir);
    if let Some(r) = &repo {
        checks.push(Check::ok(
            "repository",
            format!(
                "{} repository ({})",
                if r.is_bare() { "bare" } else { "non-bare" },
                if r.object_format() == git2::ObjectFormat::Sha256 {
                    "sha256"
                } else {
                    "sha1"
                }
            ),
        ));
    }
    checks.push(ownership(&git_dir, uid, &user));
    let default_hooks = git_dir.join("hooks");
    let hooks = if repo.is_some() {
        hooks_path(&git_dir, repo.as_ref(), &mut checks)
    } else {
        // git refuses the repository for this user, so it reads none of
        // its config either: what core.hooksPath is cannot be known here.
        checks.push(Check::warning(
            "core.hooksPath",
            "not checked: git refuses the repository for this user (see above)",
            "run doctor as the repository's owner",
        ));
        default_hooks.clone()
    };
    let redirected =
        std::fs::canonicalize(&hooks).ok() != std::fs::canonicalize(&default_hooks).ok();
    shim(
        &hooks,
        redirected.then_some(default_hooks.as_path()),
        &mut checks,
    );
    if let Some(repo) = &repo {
        policy(repo, now, &mut checks);
        audit_log(repo, &mut checks);
        push_certificates(repo, &mut checks);
    }
    Ok(Report {
        repository: git_dir.display().to_string(),
        user,
        checks,
    })
}

/// The repository's owner against the user running doctor: the hook runs
/// as the user pushes arrive as, and sees that user's global config.
fn ownership(git_dir: &Path, uid: Option<u32>, user: &str) -> Check {
    use std::os::unix::fs::MetadataExt;
    let owner = match std::fs::metadata(git_dir) {
        Ok(m) => m.uid(),
        Err(e) => {
            return Check::problem(
                "ownership",
                format!("cannot read `{}`: {e}", git_dir.display()),
                "run doctor as a user who can read the repository",
            )
        }
    };
    match uid {
        Some(u) if u == owner => Check::ok(
            "ownership",
            format!("the repository is owned by {user}, who runs these checks"),
        ),
        _ => {
            let owner_name = describe_user(Some(owner));
            let sudo = user_name(owner).unwrap_or_else(|| format!("#{owner}"));
            Check::warning(
                "ownership",
                format!(
                    "the repository is owned by {owner_name}, but these checks ran as {user}: the hook runs as the user pushes arrive as, with that user's global git config and file permissions"
                ),
                format!(
                    "run doctor as the hook's user: `sudo -u {sudo} countersign doctor --repo {}`",
                    git_dir.display()
                ),
            )
        }
    }
}

/// `core.hooksPath` at every level git reads for this user; the directory
/// git runs hooks from.
fn hooks_path(git_dir: &Path, repo: Option<&Repository>, checks: &mut Vec<Check>) -> PathBuf {
    let default = git_dir.join("hooks");
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args([
            "config",
            "--show-scope",
            "--show-origin",
            "--get-all",
            "core.hooksPath",
        ])
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            checks.push(Check::problem(
                "core.hooksPath",
                format!("cannot run git to read core.hooksPath: {e}"),
                "install git, or put it on PATH",
            ));
            return default;
        }
    };
    // `git config --get-all` exits 1 when the key is not set anywhere.
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.code() == Some(1) && err.trim().is_empty() {
            checks.push(Check::ok(
                "core.hooksPath",
                format!(
                    "not set at any level (system, global, local): git runs hooks from {}",
                    default.display()
                ),
            ));
        } else {
            checks.push(Check::problem(
                "core.hooksPath",
                format!(
                    "git cannot read the configuration: {}",
                    err.lines().next().unwrap_or("(no message)")
                ),
                "fix what git reports (e.g. safe.directory), then run doctor again",
            ));
        }
        return default;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut settings = Vec::new();
    for line in text.lines() {
        let mut f = line.splitn(3, '\t');
        if let (Some(scope), Some(origin), Some(value)) = (f.next(), f.next(), f.next()) {
            settings.push((scope.to_string(), origin.to_string(), value.to_string()));
        }
    }
    let Some((scope, origin, value)) = settings.last().cloned() else {
        return default;
    };
    // Relative: from where hooks run, the git directory of a bare
    // repository, else the top of the work tree.
    let base = match repo.and_then(Repository::workdir) {
        Some(w) => w.to_path_buf(),
        None => git_dir.to_path_buf(),
    };
    let dir = expand_home(&value).unwrap_or_else(|| base.join(&value));
    let all: Vec<String> = settings
        .iter()
        .map(|(s, o, v)| format!("{s} ({o}): {v}"))
        .collect();
    let same = std::fs::canonicalize(&dir).ok() == std::fs::canonicalize(&default).ok();
    if same {
        checks.push(Check::ok(
            "core.hooksPath",
            format!(
                "set, to the repository's own hooks directory: {}",
                all.join("; ")
            ),
        ));
    } else {
        let unset = match scope.as_str() {
            "local" | "worktree" => format!(
                "git --git-dir {} config --unset-all core.hooksPath",
                git_dir.display()
            ),
            "global" => {
                "git config --global --unset-all core.hooksPath (as the hook's user)".into()
            }
            "system" => "git config --system --unset-all core.hooksPath".into(),
            other => format!("remove it from the {other} configuration ({origin})"),
        };
        // Not a problem in itself when countersign's shim is there too:
        // the shim check below looks in the directory git really uses.
        checks.push(Check::warning(
            "core.hooksPath",
            format!(
                "core.hooksPath is set ({}): git runs hooks from {}, not from {}",
                all.join("; "),
                dir.display(),
                default.display()
            ),
            format!(
                "to use the repository's hooks: `{unset}`; or install countersign's shim into {}",
                dir.display()
            ),
        ));
    }
    dir
}

/// `~/...` as git expands it in core.hooksPath.
fn expand_home(value: &str) -> Option<PathBuf> {
    let rest = value.strip_prefix("~/")?;
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(rest))
}

/// Read at most [`MAX_SCRIPT_BYTES`] of a hook script.
fn read_script(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_SCRIPT_BYTES)
        .read_to_end(&mut text)?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The shim in the hooks directory git uses (or, for a forge's dispatcher
/// such as Gitea's, in `pre-receive.d/`), the binary it names, and a
/// chained foreign hook.
///
/// `instead_of`: the repository's own hooks directory, when core.hooksPath
/// sends git elsewhere.
fn shim(hooks: &Path, instead_of: Option<&Path>, checks: &mut Vec<Check>) {
    let main = hooks.join("pre-receive");
    let reinstall = "re-run install.sh on the repository";
    if let Some(own) = instead_of {
        let own_shim = own.join("pre-receive");
        if read_script(&own_shim).is_ok_and(|t| t.contains(SHIM_MARKER))
            && !read_script(&main).is_ok_and(|t| t.contains(SHIM_MARKER))
        {
            checks.push(Check::problem(
                "shim",
                format!(
                    "countersign's shim {} is never run: core.hooksPath makes git run hooks from {}, where there is no countersign shim; pushes are not checked",
                    own_shim.display(),
                    hooks.display()
                ),
                "unset core.hooksPath (see above), or install the shim into that directory",
            ));
            return;
        }
    }
    let mut found = None;
    match read_script(&main) {
        Ok(text) if text.contains(SHIM_MARKER) => found = Some((main.clone(), text)),
        Ok(_) => {
            // A forge's dispatcher runs every hook in pre-receive.d/.
            let mut entries: Vec<PathBuf> = std::fs::read_dir(hooks.join("pre-receive.d"))
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            for p in entries {
                if let Ok(text) = read_script(&p) {
                    if text.contains(SHIM_MARKER) {
                        found = Some((p, text));
                        break;
                    }
                }
            }
            if found.is_none() {
                checks.push(Check::problem(
                    "shim",
                    format!(
                        "{} is not countersign's shim (no `{SHIM_MARKER}` line): countersign does not run",
                        main.display()
                    ),
                    "install with `install.sh --chain` to keep the existing hook running after countersign",
                ));
                return;
            }
        }
        Err(e) => {
            checks.push(Check::problem(
                "shim",
                format!("no readable pre-receive hook at {}: {e}; countersign does not run, every push is accepted", main.display()),
                reinstall,
            ));
            return;
        }
    }
    let Some((path, text)) = found else { return };
    if !executable(&path) {
        checks.push(Check::problem(
            "shim",
            format!("{} is countersign's shim but not executable: git ignores it and every push is accepted", path.display()),
            format!("chmod +x {}", path.display()),
        ));
        return;
    }
    checks.push(Check::ok(
        "shim",
        format!("{} is countersign's shim", path.display()),
    ));
    let bin = text.lines().find_map(|l| {
        l.trim()
            .strip_prefix(SHIM_BIN)
            .map(|v| v.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
    });
    match bin {
        None => checks.push(Check::problem(
            "binary",
            format!("the shim {} names no binary ({SHIM_BIN}...)", path.display()),
            reinstall,
        )),
        Some(b) if !executable(Path::new(&b)) => checks.push(Check::problem(
            "binary",
            format!("the shim runs `{b}`, which does not exist or is not an executable file: every push is rejected"),
            reinstall,
        )),
        Some(b) => match Command::new(&b).arg("--version").output() {
            Ok(o) if o.status.success() => {
                let version = String::from_utf8_lossy(&o.stdout).trim().to_string();
                let mine = format!("countersign {}", env!("CARGO_PKG_VERSION"));
                if version == mine {
                    checks.push(Check::ok("binary", format!("the shim runs `{b}` ({version})")));
                } else {
                    checks.push(Check::warning(
                        "binary",
                        format!("the shim runs `{b}` ({version}), not this doctor's {mine}"),
                        "re-run install.sh to install the same version",
                    ));
                }
            }
            Ok(o) => checks.push(Check::problem(
                "binary",
                format!(
                    "the shim runs `{b}`, which fails: `--version` exited {:?}: {}",
                    o.status.code(),
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                reinstall,
            )),
            Err(e) => checks.push(Check::problem(
                "binary",
                format!("the shim runs `{b}`, which cannot be started: {e}"),
                reinstall,
            )),
        },
    }
    let chained = path.with_file_name("pre-receive.chained");
    if chained.exists() {
        if executable(&chained) {
            checks.push(Check::ok(
                "chained hook",
                format!("{} runs after countersign accepts", chained.display()),
            ));
        } else {
            checks.push(Check::problem(
                "chained hook",
                format!(
                    "{} is not executable: every push countersign accepts then fails",
                    chained.display()
                ),
                format!("chmod +x {}", chained.display()),
            ));
        }
    }
}

/// The policy the hook would judge a push by, and the refs it protects.
fn policy(repo: &Repository, now: Timestamp, checks: &mut Vec<Check>) {
    let in_force = match hook::policy_in_force(repo, now, Instant::now()) {
        Ok(p) => p,
        Err(f) => {
            let detail = f.detail.map(|d| format!("\n{d}")).unwrap_or_default();
            checks.push(Check::problem(
                "policy",
                format!("[{}] {}{detail}", f.code, f.message),
                f.help,
            ));
            return;
        }
    };
    let p = &in_force.policy;
    let mode = match &in_force.id {
        PolicyId::File { file, .. } => format!("file {file}"),
        PolicyId::Ref { .. } => in_force.id.describe(),
    };
    checks.push(Check::ok(
        "policy",
        format!(
            "{mode} is valid: repository `{}`, {} people, {} rule(s)",
            p.repository_id,
            p.people.len(),
            p.rules.len()
        ),
    ));
    if p.people.is_empty() && !p.rules.is_empty() {
        checks.push(Check::warning(
            "policy",
            "the policy holds no people: every push to a protected ref is rejected",
            "add people and their keys: `countersign people add ID --role ROLE`, `countersign keys add ID --ssh \"...\"`",
        ));
    }
    for r in &p.rules {
        if let Some(b) = &r.baseline {
            let there = git2::Oid::from_str(b)
                .ok()
                .is_some_and(|id| repo.find_commit(id).is_ok());
            if !there {
                checks.push(Check::problem(
                    "protected refs",
                    format!("{}: baseline {b} is not a commit in the repository: every push to its refs is rejected", r.label()),
                    "fix the rule's baseline (a commit id this repository holds)",
                ));
            }
        }
        for pat in &r.refs {
            let name = pat.as_str();
            if !name.contains('*') && repo.refname_to_id(name).is_err() {
                checks.push(Check::warning(
                    "protected refs",
                    format!("{} protects {name}, which does not exist (yet)", r.label()),
                    "if the branch has another name (master?), fix the rule's refs; else its first push creates it, checked",
                ));
            }
        }
    }
    if let Ok(head) = repo.find_reference("HEAD") {
        if let Ok(Some(target)) = head.symbolic_target() {
            if repo.refname_to_id(target).is_ok() && !p.rules.iter().any(|r| r.matches(target)) {
                checks.push(Check::warning(
                    "protected refs",
                    format!("the default branch {target} is unprotected: no rule matches it, so every push to it is accepted unchecked"),
                    "add it to a rule's refs",
                ));
            }
        }
    }
}

/// The audit log: writable, intact, and shared as the repository is.
fn audit_log(repo: &Repository, checks: &mut Vec<Check>) {
    use std::os::unix::fs::PermissionsExt;
    let path = audit::path_for(repo);
    let fix_write = format!(
        "make {} writable by the user the hook runs as (every pushing user, in a shared repository)",
        path.display()
    );
    match std::fs::metadata(&path) {
        Ok(m) if !m.is_file() => {
            checks.push(Check::problem(
                "audit log",
                format!("{} is not a file: every push is rejected", path.display()),
                fix_write,
            ));
        }
        Ok(m) => {
            if let Err(e) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
            {
                checks.push(Check::problem(
                    "audit log",
                    format!(
                        "{} cannot be written: {e}; every push is rejected",
                        path.display()
                    ),
                    fix_write,
                ));
                return;
            }
            let shared = repo
                .config()
                .and_then(|c| c.get_string("core.sharedRepository"))
                .map(|v| v.to_ascii_lowercase())
                .ok();
            let group = matches!(
                shared.as_deref(),
                Some("group" | "true" | "1" | "all" | "world" | "everybody" | "2")
            );
            if group && m.permissions().mode() & 0o020 == 0 {
                checks.push(Check::problem(
                    "audit log",
                    format!(
                        "{} is not group-writable, but the repository is shared (core.sharedRepository): other pushers' pushes are rejected",
                        path.display()
                    ),
                    format!("chgrp <the repository's group> {0} && chmod g+w {0}", path.display()),
                ));
                return;
            }
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let v = audit::verify(&bytes);
                    match v.first_break {
                        Some(b) => checks.push(Check::problem(
                            "audit log",
                            format!("{} is broken at line {}: {}", path.display(), b.line, b.message),
                            "run `countersign audit verify`; the hook refuses to extend a log whose last record is damaged",
                        )),
                        None => checks.push(Check::ok(
                            "audit log",
                            format!("{} is writable and verifies ({} record(s))", path.display(), v.records),
                        )),
                    }
                }
                Err(e) => checks.push(Check::problem(
                    "audit log",
                    format!("{} cannot be read: {e}", path.display()),
                    fix_write,
                )),
            }
        }
        Err(_) => {
            // Not there yet: the first push creates it (and its directory).
            let mut dir = path.parent().map(Path::to_path_buf);
            while let Some(d) = &dir {
                if d.exists() {
                    break;
                }
                dir = d.parent().map(Path::to_path_buf);
            }
            let Some(dir) = dir else {
                checks.push(Check::problem(
                    "audit log",
                    format!("{} has no existing parent directory", path.display()),
                    fix_write,
                ));
                return;
            };
            let probe = dir.join(format!(".countersign-doctor-{}", std::process::id()));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
            {
                Ok(_) => {
                    let _ = std::fs::remove_file(&probe);
                    checks.push(Check::ok(
                        "audit log",
                        format!(
                            "{} does not exist yet; the first push creates it",
                            path.display()
                        ),
                    ));
                }
                Err(e) => checks.push(Check::problem(
                    "audit log",
                    format!(
                        "{} does not exist and cannot be created ({}: {e}): every push is rejected",
                        path.display(),
                        dir.display()
                    ),
                    fix_write,
                )),
            }
        }
    }
}

/// Signed pushes (`git push --signed`): git offers them only with
/// receive.certNonceSeed; over smart HTTP, certificates also need
/// receive.certNonceSlop.
fn push_certificates(repo: &Repository, checks: &mut Vec<Check>) {
    let config = match repo.config() {
        Ok(c) => c,
        Err(e) => {
            checks.push(Check::problem(
                "push certificates",
                format!("cannot read the repository's config: {}", e.message()),
                "fix the repository's git config",
            ));
            return;
        }
    };
    let seed = config.get_string("receive.certNonceSeed").is_ok();
    let slop = config.get_i64("receive.certNonceSlop").is_ok();
    match (seed, slop) {
        (false, _) => checks.push(Check::ok(
            "push certificates",
            "signed pushes are off (receive.certNonceSeed not set): the pusher recorded is the server's user (REMOTE_USER, the forge's variable, or the OS user)",
        )),
        (true, true) => checks.push(Check::ok(
            "push certificates",
            "signed pushes are on (receive.certNonceSeed, receive.certNonceSlop)",
        )),
        (true, false) => checks.push(Check::warning(
            "push certificates",
            "signed pushes are on (receive.certNonceSeed) without receive.certNonceSlop: over smart HTTP every certificate is reported \"not verified\", so its signer is not recorded",
            "git config receive.certNonceSlop 30 (in the server repository)",
        )),
    }
}
