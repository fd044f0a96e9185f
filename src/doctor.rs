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
use crate::ledger;
use crate::policy::Policy;
use crate::time::Timestamp;

/// The line that marks countersign's shim (hooks/pre-receive).
pub const SHIM_MARKER: &str = "countersign pre-receive shim";

/// The line that marks countersign's post-receive shim (hooks/post-receive).
pub const POST_SHIM_MARKER: &str = "countersign post-receive shim";

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
    name_in("/etc/passwd", uid)
}

/// The name of the entry with `id` in a passwd- or group-style file
/// (`name:password:id:...`).
fn name_in(file: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let this = f.nth(1)?.parse::<u32>().ok()?;
        (this == id).then(|| name.to_string())
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
        Some(d) => crate::repository::open(d),
        None => crate::repository::open_from_env(),
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
    checks.push(file_writers(&git_dir, &hooks));
    if let Some(repo) = &repo {
        if let Err(e) = crate::engine::merge::attributes_check(repo) {
            checks.push(Check::problem(
                "merge attributes",
                format!(
                    "every merge that needs git's clean merge is rejected (internal-error): {e}"
                ),
                format!(
                    "edit `{}`: drop every `merge` attribute (and the word from comments)",
                    repo.path().join("info").join("attributes").display()
                ),
            ));
        }
        let in_force = policy(repo, now, &mut checks);
        audit_log(repo, &mut checks);
        ref_log(repo, &hooks, in_force.as_ref(), &mut checks);
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

/// Who besides the owner can write what decides whether countersign runs
/// and what it believes: the git directory (a file in it can be replaced),
/// `config` (`core.hooksPath`, the trust root), the hooks directory and its
/// shims, the object directory and `countersign/` (the audit log, the
/// policy trust file). Such a person is an operator: no check on the
/// server holds them (README, "Who can write the server's files").
fn file_writers(git_dir: &Path, hooks: &Path) -> Check {
    use std::os::unix::fs::MetadataExt;
    let mut paths = vec![
        git_dir.to_path_buf(),
        git_dir.join("config"),
        git_dir.join("objects"),
        git_dir.join("countersign"),
        hooks.to_path_buf(),
    ];
    for name in ["pre-receive", "post-receive"] {
        paths.push(hooks.join(name));
    }
    let mut world = Vec::new();
    let mut group = Vec::new();
    for p in &paths {
        let Ok(m) = std::fs::metadata(p) else {
            continue;
        };
        let shown = format!("{} ({:o})", p.display(), m.mode() & 0o7777);
        if m.mode() & 0o002 != 0 {
            world.push(shown);
        } else if m.mode() & 0o020 != 0 {
            group.push((shown, m.gid()));
        }
    }
    if !world.is_empty() {
        return Check::problem(
            "file writers",
            format!(
                "writable by every user of this host: {}; anyone with a shell here can switch countersign off (core.hooksPath, the shims) or change what it believes",
                world.join(", ")
            ),
            "`chmod o-w` each of them",
        );
    }
    if group.is_empty() {
        return Check::ok(
            "file writers",
            "only the owner (and root) can write the repository's config, hooks, objects and countersign/",
        );
    }
    let mut gids: Vec<u32> = group.iter().map(|(_, g)| *g).collect();
    gids.sort_unstable();
    gids.dedup();
    let names: Vec<String> = gids.iter().map(|g| describe_group(*g)).collect();
    Check::warning(
        "file writers",
        format!(
            "writable by the group ({}): {}; every member with a shell on this host is an operator: they can switch countersign off, and make the server accept what clones' `countersign verify` then rejects",
            names.join(", "),
            group.into_iter().map(|(p, _)| p).collect::<Vec<_>>().join(", ")
        ),
        "give pushers `git-shell` as their login shell (they can push, not write files), or push through one account (sshd with one user and keys, gitolite, a forge); where only the owner pushes, `chmod g-w` them",
    )
}

/// A group's name from /etc/group.
fn describe_group(gid: u32) -> String {
    let name = name_in("/etc/group", gid);
    match name {
        Some(n) => format!("{n}, gid {gid}"),
        None => format!("gid {gid}"),
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
    match shim_binary(&text) {
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
/// Returns the policy, when it loads.
fn policy(repo: &Repository, now: Timestamp, checks: &mut Vec<Check>) -> Option<Policy> {
    let in_force = match hook::policy_in_force(repo, now, Instant::now()) {
        Ok(p) => p,
        Err(f) => {
            let detail = f.detail.map(|d| format!("\n{d}")).unwrap_or_default();
            checks.push(Check::problem(
                "policy",
                format!("[{}] {}{detail}", f.code, f.message),
                f.help,
            ));
            return None;
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
    Some(in_force.policy)
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

/// Where a hook script of `kind` (`post-receive`) that carries `marker`
/// is: `<hooks>/<kind>`, else the first in a forge's `<kind>.d/`.
/// `Err` holds what `<hooks>/<kind>` is instead (foreign, or unreadable).
fn find_script(hooks: &Path, kind: &str, marker: &str) -> Result<(PathBuf, String), String> {
    let main = hooks.join(kind);
    let found = match read_script(&main) {
        Ok(text) if text.contains(marker) => return Ok((main, text)),
        Ok(_) => format!(
            "{} is not countersign's (no `{marker}` line)",
            main.display()
        ),
        Err(e) => format!(
            "there is no readable {kind} hook at {} ({e})",
            main.display()
        ),
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(hooks.join(format!("{kind}.d")))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if let Ok(text) = read_script(&p) {
            if text.contains(marker) {
                return Ok((p, text));
            }
        }
    }
    Err(found)
}

/// The binary a shim names (`COUNTERSIGN_BIN='...'`).
fn shim_binary(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix(SHIM_BIN)
            .map(|v| v.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
    })
}

/// The post-receive shim, which writes the ref-state log after every
/// accepted push. `in_use`: the log is set up (a missing shim is then a
/// problem; otherwise the shim has nothing to do).
fn post_receive_shim(hooks: &Path, in_use: bool, checks: &mut Vec<Check>) {
    const CHECK: &str = "post-receive shim";
    let reinstall = "re-run install.sh on the repository (`--chain` keeps an existing post-receive hook running after countersign's)";
    let flag = |message: String, fix: String| {
        if in_use {
            Check::problem(CHECK, message, fix)
        } else {
            Check::warning(CHECK, message, fix)
        }
    };
    let consequence = "accepted pushes are not recorded in the ref-state log when they land: the next push's pre-receive fills them in, so the last push stays unrecorded and clones checking the log (`countersign audit verify --remote`) find refs ahead of it";
    let (path, text) = match find_script(hooks, "post-receive", POST_SHIM_MARKER) {
        Ok(found) => found,
        Err(what) => {
            checks.push(flag(format!("{what}: {consequence}"), reinstall.into()));
            return;
        }
    };
    if !executable(&path) {
        checks.push(flag(
            format!(
                "{} is countersign's post-receive shim but not executable, so git does not run it: {consequence}",
                path.display()
            ),
            format!("chmod +x {}", path.display()),
        ));
        return;
    }
    match shim_binary(&text) {
        None => checks.push(flag(
            format!(
                "the post-receive shim {} names no binary ({SHIM_BIN}...): {consequence}",
                path.display()
            ),
            reinstall.into(),
        )),
        Some(b) if !executable(Path::new(&b)) => checks.push(flag(
            format!(
                "the post-receive shim {} runs `{b}`, which does not exist or is not an executable file: {consequence}",
                path.display()
            ),
            reinstall.into(),
        )),
        Some(b) => checks.push(Check::ok(
            CHECK,
            format!(
                "{} is countersign's post-receive shim, running `{b}`",
                path.display()
            ),
        )),
    }
    let chained = path.with_file_name("post-receive.chained");
    if chained.exists() && !executable(&chained) {
        checks.push(Check::warning(
            CHECK,
            format!(
                "{} is not executable: it fails after every push countersign records",
                chained.display()
            ),
            format!("chmod +x {}", chained.display()),
        ));
    }
}

/// The signed ref-state log (see [`crate::ledger`]): the post-receive
/// shim that writes it, the server key that signs it, its last entry, the
/// out-of-band moves waiting for an acknowledgement, and the key the
/// policy publishes. Everything the hook checks before each push (a
/// failure there refuses every push, `ref-log-broken`).
fn ref_log(repo: &Repository, hooks: &Path, policy: Option<&Policy>, checks: &mut Vec<Check>) {
    use std::os::unix::fs::PermissionsExt;
    let git_dir = repo.path();
    let key_path = ledger::dir(git_dir).join(ledger::KEY_FILE);
    let head_path = ledger::dir(git_dir).join(ledger::HEAD_FILE);
    let tip = repo.refname_to_id(ledger::LOG_REF).ok();
    let key_exists = std::fs::symlink_metadata(&key_path).is_ok();
    let in_use = key_exists || tip.is_some();
    post_receive_shim(hooks, in_use, checks);
    let init = format!(
        "as the user the hook runs as: `GIT_DIR={} countersign log init` (install.sh does it), then publish the key it prints in the policy as [log] server-key",
        git_dir.display()
    );
    if !in_use {
        checks.push(Check::warning(
            "ref-state log",
            format!(
                "not in use (no server key {}, no {}): refs moved around the hook are not detected, and clones have no signed log to check",
                key_path.display(),
                ledger::LOG_REF
            ),
            init,
        ));
        return;
    }

    // The server key.
    let shared = git2::Config::open(&git_dir.join("config"))
        .map_or(audit::Sharing::Umask, |c| audit::Sharing::from_config(&c))
        != audit::Sharing::Umask;
    let chmod = if shared {
        format!(
            "`chmod 640 {0}` (group: the repository's; core.sharedRepository is set), owned by the user the hook runs as",
            key_path.display()
        )
    } else {
        format!(
            "`chmod 600 {0}`, owned by the user the hook runs as",
            key_path.display()
        )
    };
    let key = match ledger::load_key(git_dir) {
        Ok(Some(k)) => {
            let mode = std::fs::metadata(&key_path).map_or(0, |m| m.permissions().mode() & 0o777);
            checks.push(Check::ok(
                "server key",
                format!(
                    "{} ({}), mode {mode:o}: readable by its owner{}",
                    key_path.display(),
                    crate::policy::keys::ssh_fingerprint(k.public_key().key_data()),
                    if mode & 0o040 != 0 {
                        " and the repository's group (core.sharedRepository)"
                    } else {
                        " only"
                    }
                ),
            ));
            Some(k.public_key().clone())
        }
        Ok(None) => {
            checks.push(Check::problem(
                "server key",
                format!(
                    "{} exists but the server key that signs it ({}) is missing: every push is refused (ref-log-broken)",
                    ledger::LOG_REF,
                    key_path.display()
                ),
                format!("restore {} from backup; a new key (`countersign log init`) makes clones see a log signed by another key", key_path.display()),
            ));
            None
        }
        Err(m) => {
            checks.push(Check::problem(
                "server key",
                format!(
                    "{}: {m}: every push is refused (ref-log-broken)",
                    key_path.display()
                ),
                format!("{chmod}; if it was readable by others, whoever could read it can sign log entries: consider a new key"),
            ));
            None
        }
    };

    // The log itself: present, its tip verifies and follows what this
    // server last wrote.
    if let Some(public) = &key {
        let head = std::fs::read_to_string(&head_path)
            .ok()
            .and_then(|s| git2::Oid::from_str(s.trim()).ok());
        match tip {
            None => checks.push(match head {
                Some(h) => Check::problem(
                    "ref-state log",
                    format!(
                        "{} was deleted (this server last wrote entry {h}): every push is refused (ref-log-broken)",
                        ledger::LOG_REF
                    ),
                    "restore the ref from a clone that fetched it, then acknowledge what moved (`countersign log ack`)",
                ),
                None => Check::problem(
                    "ref-state log",
                    format!(
                        "a server key exists but {} was never started: every push is refused (ref-log-broken)",
                        ledger::LOG_REF
                    ),
                    init.clone(),
                ),
            }),
            Some(t) => match ledger::entries(repo, public, 1) {
                Err(m) => checks.push(Check::problem(
                    "ref-state log",
                    format!("the last entry of {} does not verify: {m}; every push is refused (ref-log-broken)", ledger::LOG_REF),
                    "restore refs/countersign/log from a clone that fetched it (`countersign log verify` says more)",
                )),
                Ok(list) => {
                    let Some(last) = list.first() else { return };
                    let follows = head.is_none_or(|h| {
                        h == t || repo.graph_descendant_of(t, h).unwrap_or(false)
                    });
                    if follows {
                        checks.push(Check::ok(
                            "ref-state log",
                            format!(
                                "{}: the last entry ({}, {} at {}) verifies with the server key",
                                ledger::LOG_REF,
                                last.entry.seq,
                                last.entry.kind.as_str(),
                                last.entry.time_utc
                            ),
                        ));
                    } else {
                        checks.push(Check::problem(
                            "ref-state log",
                            format!(
                                "{} is at {t}, which does not follow the last entry this server wrote ({}): the log was moved back or rewritten on the server; every push is refused (ref-log-broken)",
                                ledger::LOG_REF,
                                head.map(|h| h.to_string()).unwrap_or_default()
                            ),
                            "find out who changed it; restore the ref to the last entry (clones that fetched it have it) and acknowledge what moved",
                        ));
                    }
                    acknowledgements(repo, last, policy, checks);
                }
            },
        }
    }

    // The key the policy publishes, which clones check the log against.
    if let Some(p) = policy {
        let line = key
            .as_ref()
            .and_then(|k| k.to_openssh().ok())
            .unwrap_or_else(|| "ssh-ed25519 AAAA...".into());
        match (&p.log_key, &key) {
            (None, _) => checks.push(Check::warning(
                "log key in policy",
                "the policy publishes no [log] server-key: clones that check the log (`countersign audit verify --remote`) trust the key that signed it on first use",
                format!("add to the policy: [log] server-key = \"{line}\""),
            )),
            (Some(published), Some(k)) if published.key_data() == k.key_data() => {
                checks.push(Check::ok(
                    "log key in policy",
                    "[log] server-key is the server's key",
                ));
            }
            (Some(published), Some(k)) => checks.push(Check::problem(
                "log key in policy",
                format!(
                    "the policy publishes [log] server-key {}, but the server's key is {}: every push is refused (ref-log-broken)",
                    crate::policy::keys::ssh_fingerprint(published.key_data()),
                    crate::policy::keys::ssh_fingerprint(k.key_data())
                ),
                format!("publish the server's key: [log] server-key = \"{line}\"; or restore the server key the policy names"),
            )),
            (Some(_), None) => {}
        }
    }
}

/// Out-of-band moves the last entry says still wait for an
/// acknowledgement (every push is refused until then), and tracked refs
/// that are no longer where the last entry says (the next push decides).
fn acknowledgements(
    repo: &Repository,
    last: &ledger::Loaded,
    policy: Option<&Policy>,
    checks: &mut Vec<Check>,
) {
    if let Some(f) = ledger::unacknowledged_finding(&last.state.unacknowledged) {
        checks.push(Check::problem(
            "acknowledgement",
            format!("[{}] {}", f.code, crate::sanitize::escape(&f.message)),
            f.help,
        ));
    }
    let Some(policy) = policy else { return };
    let mut moved = Vec::new();
    for (name, recorded) in &last.state.refs {
        if !ledger::is_tracked(policy, name) {
            continue;
        }
        let now = repo.refname_to_id(name).ok();
        if now.map(|o| o.to_string()).as_deref() != Some(recorded.as_str()) {
            moved.push(format!(
                "`{}` is {}, the log says {}",
                crate::sanitize::escape(name),
                now.map_or_else(|| "absent".into(), |o| o.to_string()),
                recorded
            ));
        }
    }
    if !moved.is_empty() {
        let more = moved.len().saturating_sub(5);
        moved.truncate(5);
        checks.push(Check::warning(
            "tracked refs",
            format!(
                "{}{}: a push whose post-receive did not finish (the next push records it), or a move around the hook (the next push is refused until an admin acknowledges it)",
                moved.join("; "),
                if more > 0 { format!(" and {more} more") } else { String::new() }
            ),
            format!(
                "to decide now, as the user the hook runs as: `GIT_DIR={} countersign hook post-receive </dev/null`; then run doctor again",
                repo.path().display()
            ),
        ));
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
            "signed pushes are off (receive.certNonceSeed not set): the pusher recorded is the forge's user, the person whose key sshd authenticated (ExposeAuthInfo), REMOTE_USER, or the OS user",
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
