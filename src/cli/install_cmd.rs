//! `countersign install`: put the hook into one bare repository (`--repo`)
//! or every bare repository below a directory (`--root`), in the layout the
//! hosting software runs hooks from, after checking — as the user the hook
//! will run as — everything that would make it silently not run.
//!
//! What it writes, per layout:
//!
//! * plain, gitolite: `hooks/pre-receive` and `hooks/post-receive` shims;
//!   a foreign hook there is refused, or with `--chain` renamed to
//!   `*.chained`, which the shim runs after countersign;
//! * gitea, forgejo: `hooks/pre-receive.d/countersign` and
//!   `hooks/post-receive.d/countersign` (Gitea's own `hooks/pre-receive`
//!   dispatcher runs every file there; it is never touched, Gitea rewrites
//!   it when it resynchronises hooks);
//! * gitlab: `custom_hooks/pre-receive.d/countersign` and
//!   `custom_hooks/post-receive.d/countersign` (Gitaly passes
//!   core.hooksPath on git's command line, so only server hooks run).
//!
//! The binary is copied next to the shims (`hooks/countersign`,
//! `custom_hooks/countersign`), and each shim names that copy by its
//! absolute path: the decision program is fixed at install time, a
//! repository keeps working when the binary it was installed from is moved
//! or rebuilt, and an upgrade (re-running install) replaces it atomically.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::{Args, ValueEnum};

use crate::cli::{print_error, Exit};
use countersign::report::PREFIX;

/// The pre-receive shim (`@COUNTERSIGN_BIN@` is replaced by the binary).
const PRE_SHIM: &str = include_str!("../../hooks/pre-receive");
/// The post-receive shim.
const POST_SHIM: &str = include_str!("../../hooks/post-receive");
const BIN_PLACEHOLDER: &str = "@COUNTERSIGN_BIN@";
const KINDS: [&str; 2] = ["pre-receive", "post-receive"];
/// The name of the shims in `*.d/` directories and of the binary copy.
const NAME: &str = "countersign";
/// The repository gitolite is administered through: a hook that rejects
/// its pushes locks the administrator out.
const GITOLITE_ADMIN: &str = "gitolite-admin";
/// PATH for commands run as another user (their login PATH is not known).
const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `countersign install`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  countersign install --repo /srv/git/payments.git --policy /etc/countersign/payments.toml
  countersign install --root /srv/git --policy '/etc/countersign/{repo}.toml' \\
      --default-policy /etc/countersign/default.toml --hook-user git
  countersign install --root /var/lib/gitea/repositories --layout gitea
  countersign install --repo /srv/git/payments.git --uninstall

Re-running install upgrades: countersign's shims and binary copy are
replaced, nothing else changes. The audit log, the policy and the signed
ref-state log are never removed, not even by --uninstall.")]
pub struct InstallArgs {
    /// The bare repository to install into.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present_any = ["root", "template"],
        conflicts_with_all = ["root", "template"]
    )]
    repo: Option<PathBuf>,
    /// Make DIR a git template directory (`git config --system
    /// init.templateDir DIR`, or `git init --template DIR`) whose hooks
    /// are countersign's shims naming --binary (default: this program) by
    /// its absolute path, which must stay where it is: every repository
    /// created from it refuses every push (`policy-missing`) until
    /// `countersign install --repo` gives it a policy and its log.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["root", "uninstall", "policy", "chain"])]
    template: Option<PathBuf>,
    /// Install into every bare repository below DIR (at most --max-depth
    /// levels down; directories that are not bare repositories are
    /// skipped, and gitolite-admin always is). Repositories created later
    /// are covered by running the same command again.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// How many directory levels below --root to look for repositories.
    #[arg(long, value_name = "N", default_value_t = 4)]
    max_depth: usize,
    /// The policy: checked (an invalid one stops the install) and recorded
    /// as git config `countersign.policy` (absolute path). With --root,
    /// `{repo}` in FILE is replaced by each repository's path below the
    /// root without `.git` (e.g. /etc/countersign/{repo}.toml). Without
    /// it, a starter policy is written to <repo>/countersign.toml unless
    /// the repository already has a policy.
    #[arg(long, value_name = "FILE")]
    policy: Option<String>,
    /// The policy for repositories whose `{repo}` policy file does not
    /// exist (without it, they get the starter policy).
    #[arg(long, value_name = "FILE", requires = "policy")]
    default_policy: Option<PathBuf>,
    /// The countersign binary to copy into the repositories (default: this
    /// program).
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// Keep an existing, foreign pre-receive (post-receive) hook in the
    /// plain and gitolite layouts: it is renamed to pre-receive.chained
    /// and runs after countersign accepts. Without it, install refuses to
    /// replace a hook that is not countersign's.
    #[arg(long)]
    chain: bool,
    /// Where the hosting software runs hooks from (auto: detected per
    /// repository).
    #[arg(long, value_enum, default_value_t = LayoutArg::Auto)]
    layout: LayoutArg,
    /// The user pushes arrive as, who runs the hook (default: the owner of
    /// each repository). The checks and `countersign log init` run as this
    /// user (through runuser or setpriv when install runs as root).
    #[arg(long, value_name = "USER")]
    hook_user: Option<String>,
    /// Remove countersign's shims and binary copy and restore `*.chained`
    /// hooks; the audit log, the policy and the ref-state log stay
    /// (--binary is ignored).
    #[arg(long, conflicts_with_all = ["policy", "default_policy", "chain"])]
    uninstall: bool,
}

/// `--layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayoutArg {
    /// Detect per repository: Gitea/Forgejo's hook dispatcher or
    /// `hooks/pre-receive.d/`, GitLab's `custom_hooks/` or `gitlab.*`
    /// config, gitolite's `gl-conf` / hooks / `~/.gitolite`; else plain.
    Auto,
    /// `hooks/pre-receive` and `hooks/post-receive` (git over ssh, smart HTTP).
    Plain,
    /// `hooks/pre-receive.d/countersign`, `hooks/post-receive.d/countersign`.
    Gitea,
    /// As gitea.
    Forgejo,
    /// `custom_hooks/pre-receive.d/countersign`, `custom_hooks/post-receive.d/countersign`.
    Gitlab,
    /// As plain; gitolite-admin is never covered.
    Gitolite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Plain,
    Gitea,
    Gitlab,
    Gitolite,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::Plain => "plain",
            Layout::Gitea => "gitea",
            Layout::Gitlab => "gitlab",
            Layout::Gitolite => "gitolite",
        }
    }

    /// The directory the shims (or their `*.d/` directories) go in.
    fn hook_dir(self, repo: &Path) -> PathBuf {
        match self {
            Layout::Gitlab => repo.join("custom_hooks"),
            _ => repo.join("hooks"),
        }
    }

    /// Where the shim for `kind` goes.
    fn shim_path(self, repo: &Path, kind: &str) -> PathBuf {
        match self {
            Layout::Plain | Layout::Gitolite => self.hook_dir(repo).join(kind),
            Layout::Gitea | Layout::Gitlab => {
                self.hook_dir(repo).join(format!("{kind}.d")).join(NAME)
            }
        }
    }
}

/// Why one repository was not installed into: what, and what to do.
struct Failure {
    what: String,
    help: String,
}

fn fail<T>(what: impl Into<String>, help: impl Into<String>) -> Result<T, Failure> {
    Err(Failure {
        what: what.into(),
        help: help.into(),
    })
}

/// Run `countersign install`.
pub fn run(args: InstallArgs) -> Exit {
    if let Some(dir) = &args.template {
        return match template(dir, args.binary.as_deref()) {
            Ok(text) => {
                eprint!("{text}");
                Exit::Ok
            }
            Err(f) => {
                print_error(&f.what, Some(&f.help));
                Exit::Error
            }
        };
    }
    let targets = match targets(&args) {
        Ok(t) => t,
        Err(f) => {
            print_error(&f.what, Some(&f.help));
            return Exit::Error;
        }
    };
    if args.uninstall {
        let mut failed = 0;
        for (repo, _) in &targets {
            match uninstall(repo) {
                Ok(text) => eprint!("{text}"),
                Err(f) => {
                    failed += 1;
                    print_error(&format!("{}: {}", repo.display(), f.what), Some(&f.help));
                }
            }
        }
        return if failed == 0 { Exit::Ok } else { Exit::Error };
    }
    let binary = match binary(args.binary.as_deref()) {
        Ok(b) => b,
        Err(f) => {
            print_error(&f.what, Some(&f.help));
            return Exit::Error;
        }
    };
    let (mut done, mut failed) = (0, 0);
    for (repo, name) in &targets {
        match install_one(&args, &binary, repo, name) {
            Ok(text) => {
                done += 1;
                eprint!("{text}");
            }
            Err(f) => {
                failed += 1;
                print_error(
                    &format!("not installed in {}: {}", repo.display(), f.what),
                    Some(&f.help),
                );
            }
        }
    }
    if args.root.is_some() {
        eprintln!("{PREFIX}: install: {done} installed, {failed} failed");
    }
    if failed == 0 && done > 0 {
        Exit::Ok
    } else {
        Exit::Error
    }
}

/// `--template DIR`: countersign's shims in `DIR/hooks`, naming the binary
/// where it is; a foreign hook there is refused.
fn template(dir: &Path, given: Option<&Path>) -> Result<String, Failure> {
    let binary = binary(given)?;
    let hooks = dir.join("hooks");
    std::fs::create_dir_all(&hooks).or_else(|e| io_fail("create", &hooks, e))?;
    for kind in ["pre-receive", "post-receive"] {
        let target = hooks.join(kind);
        if target.exists() && !is_ours(&target, kind) {
            return fail(
                format!("`{}` exists and is not countersign's", target.display()),
                "move it away, or use another template directory",
            );
        }
    }
    for (kind, shim) in [("pre-receive", PRE_SHIM), ("post-receive", POST_SHIM)] {
        let text = shim.replace(BIN_PLACEHOLDER, &binary.to_string_lossy());
        write_atomic(&hooks.join(kind), text.as_bytes(), 0o755)?;
    }
    Ok(format!(
        "{PREFIX}: template {}: hooks/pre-receive and hooks/post-receive run {} (keep it there)\n  next: `git config --system init.templateDir {}`; repositories created from it refuse every push until `countersign install --repo <repo> --policy FILE`\n",
        dir.display(),
        binary.display(),
        dir.display()
    ))
}

/// The repositories to work on, each with its name (below the root, or
/// its directory name) without `.git`.
fn targets(args: &InstallArgs) -> Result<Vec<(PathBuf, String)>, Failure> {
    if let Some(repo) = &args.repo {
        let repo = absolute_dir(repo)?;
        if !is_bare_repo(&repo) {
            return fail(
                format!("`{}` is not a bare git repository", repo.display()),
                format!("create one with: git init --bare {}", repo.display()),
            );
        }
        let name = repo_name(repo.file_name().map(Path::new).unwrap_or(&repo));
        return Ok(vec![(repo, name)]);
    }
    let Some(root) = &args.root else {
        return fail("no repository given", "pass --repo DIR or --root DIR");
    };
    let root = absolute_dir(root)?;
    let mut found = Vec::new();
    scan(&root, &root, args.max_depth, &mut found);
    let mut out = Vec::new();
    for (dir, rel) in found {
        let name = repo_name(&rel);
        if name == GITOLITE_ADMIN || name.ends_with(&format!("/{GITOLITE_ADMIN}")) {
            eprintln!(
                "{PREFIX}: skipped {}: gitolite's admin repository is never covered (a hook that rejects its pushes locks the administrator out)",
                dir.display()
            );
            continue;
        }
        out.push((dir, name));
    }
    if out.is_empty() {
        return fail(
            format!(
                "no bare repository found below {} (looked {} level(s) down)",
                root.display(),
                args.max_depth
            ),
            "check the directory, or raise --max-depth",
        );
    }
    eprintln!(
        "{PREFIX}: found {} bare repositor{} below {}",
        out.len(),
        if out.len() == 1 { "y" } else { "ies" },
        root.display()
    );
    Ok(out)
}

fn absolute_dir(dir: &Path) -> Result<PathBuf, Failure> {
    match std::fs::canonicalize(dir) {
        Ok(p) if p.is_dir() => Ok(p),
        Ok(_) => fail(
            format!("`{}` is not a directory", dir.display()),
            "pass a bare repository (--repo) or a directory holding them (--root)",
        ),
        Err(e) => fail(
            format!("cannot open `{}`: {e}", dir.display()),
            "check the path and that this user can read it",
        ),
    }
}

/// `team/payments.git` → `team/payments`.
fn repo_name(rel: &Path) -> String {
    let s = rel.to_string_lossy();
    s.strip_suffix(".git").unwrap_or(&s).to_string()
}

/// Does git take `dir` for a bare repository? (An explicit --git-dir is not
/// subject to git's safe.directory check, so this works as root.)
fn is_bare_repo(dir: &Path) -> bool {
    Command::new("git")
        .arg("--git-dir")
        .arg(dir)
        .args(["rev-parse", "--is-bare-repository"])
        .stderr(Stdio::null())
        .output()
        .map(|o| o.status.success() && o.stdout.trim_ascii() == b"true")
        .unwrap_or(false)
}

/// Bare repositories below `dir` (not following symlinks, not descending
/// into repositories), sorted; says what it skipped that looked like one.
fn scan(root: &Path, dir: &Path, depth: usize, found: &mut Vec<(PathBuf, PathBuf)>) {
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        eprintln!("{PREFIX}: skipped {}: cannot read it", dir.display());
        return;
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for d in dirs {
        let looks_like_repo = d.join("HEAD").is_file() && d.join("objects").is_dir();
        if looks_like_repo {
            if is_bare_repo(&d) {
                let rel = d.strip_prefix(root).unwrap_or(&d).to_path_buf();
                found.push((d, rel));
            } else {
                eprintln!("{PREFIX}: skipped {}: not a bare repository", d.display());
            }
            continue;
        }
        scan(root, &d, depth - 1, found);
    }
}

/// The binary to copy: checked to be an executable countersign.
fn binary(given: Option<&Path>) -> Result<PathBuf, Failure> {
    let path = match given {
        Some(p) => match std::fs::canonicalize(p) {
            Ok(p) => p,
            Err(e) => {
                return fail(
                    format!("cannot open the binary `{}`: {e}", p.display()),
                    "pass the countersign binary with --binary PATH",
                )
            }
        },
        None => match std::env::current_exe() {
            Ok(p) => p,
            Err(e) => {
                return fail(
                    format!("cannot find the path of this countersign binary: {e}"),
                    "pass it with --binary PATH",
                )
            }
        },
    };
    let executable = std::fs::metadata(&path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false);
    if !executable {
        return fail(
            format!("`{}` is not an executable file", path.display()),
            "pass the countersign binary with --binary PATH",
        );
    }
    Ok(path)
}

// ---------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct User {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

/// A passwd entry by name or uid (`getent`, so NSS users count; else
/// /etc/passwd).
fn lookup_user(key: &str) -> Option<User> {
    let line = Command::new("getent")
        .args(["passwd", key])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .or_else(|| {
            let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
            passwd
                .lines()
                .find(|l| {
                    let mut f = l.split(':');
                    let name = f.next();
                    let uid = f.nth(1);
                    name == Some(key) || uid == Some(key)
                })
                .map(str::to_string)
        })?;
    parse_passwd(&line)
}

fn parse_passwd(line: &str) -> Option<User> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 7 {
        return None;
    }
    Some(User {
        name: f[0].to_string(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        home: PathBuf::from(f[5]),
    })
}

/// The uid this process runs as (the owner of /proc/self).
fn current_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Find `program` on PATH.
fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| SAFE_PATH.into());
    std::env::split_paths(&path)
        .chain(std::env::split_paths(SAFE_PATH))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Runs commands as the hook user: directly when that is this process's
/// user (with this environment), else through runuser (or setpriv) with a
/// clean login-like environment: that user's HOME, no GIT_* variables of
/// the installer, so git reads the global config the hook will read.
struct AsUser {
    user: User,
    switch: Option<Switch>,
}

enum Switch {
    Runuser(PathBuf),
    Setpriv(PathBuf),
}

impl AsUser {
    fn new(user: User) -> Result<AsUser, Failure> {
        let me = current_uid();
        if me == Some(user.uid) {
            return Ok(AsUser { user, switch: None });
        }
        if me != Some(0) {
            return fail(
                format!(
                    "the hook runs as {} but install runs as {}: the checks must run as the hook's user",
                    user.name,
                    me.map(|u| format!("uid {u}")).unwrap_or_else(|| "another user".into())
                ),
                format!(
                    "run install as {0} (sudo -u {0} countersign install ...), or as root",
                    user.name
                ),
            );
        }
        let switch = if let Some(p) = on_path("runuser") {
            Switch::Runuser(p)
        } else if let Some(p) = on_path("setpriv") {
            Switch::Setpriv(p)
        } else {
            return fail(
                format!(
                    "cannot run the checks as {}: neither runuser nor setpriv is installed",
                    user.name
                ),
                format!(
                    "install util-linux, or run install as {0} (sudo -u {0} countersign install ...)",
                    user.name
                ),
            );
        };
        Ok(AsUser {
            user,
            switch: Some(switch),
        })
    }

    /// `program args` as the hook user, with `envs` set.
    fn command(&self, program: &OsStr, envs: &[(&str, &OsStr)]) -> Command {
        let Some(switch) = &self.switch else {
            let mut c = Command::new(program);
            for (k, v) in envs {
                c.env(k, v);
            }
            return c;
        };
        let mut c = match switch {
            Switch::Runuser(p) => {
                let mut c = Command::new(p);
                c.arg("-u").arg(&self.user.name).arg("--");
                c
            }
            Switch::Setpriv(p) => {
                let mut c = Command::new(p);
                c.arg(format!("--reuid={}", self.user.uid))
                    .arg(format!("--regid={}", self.user.gid))
                    .arg("--init-groups")
                    .arg("--");
                c
            }
        };
        c.arg("env").arg("-i");
        let mut home = OsString::from("HOME=");
        home.push(&self.user.home);
        c.arg(home)
            .arg(format!("USER={}", self.user.name))
            .arg(format!("LOGNAME={}", self.user.name))
            .arg(format!("PATH={SAFE_PATH}"))
            .arg("LC_ALL=C");
        for (k, v) in envs {
            let mut kv = OsString::from(format!("{k}="));
            kv.push(v);
            c.arg(kv);
        }
        c.arg(program);
        c.current_dir("/");
        c
    }

    /// `test -<flag> path` as the hook user.
    fn test(&self, flag: &str, path: &Path) -> bool {
        let mut c = self.command(OsStr::new("test"), &[]);
        c.arg(flag).arg(path);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.status().map(|s| s.success()).unwrap_or(false)
    }
}

// ---------------------------------------------------------------------------
// Layout detection
// ---------------------------------------------------------------------------

fn detect_layout(arg: LayoutArg, repo: &Path, user: &User) -> (Layout, String) {
    match arg {
        LayoutArg::Plain => return (Layout::Plain, "given".into()),
        LayoutArg::Gitea | LayoutArg::Forgejo => return (Layout::Gitea, "given".into()),
        LayoutArg::Gitlab => return (Layout::Gitlab, "given".into()),
        LayoutArg::Gitolite => return (Layout::Gitolite, "given".into()),
        LayoutArg::Auto => {}
    }
    let hooks = repo.join("hooks");
    let pre = std::fs::read_to_string(hooks.join("pre-receive"))
        .unwrap_or_default()
        .to_ascii_lowercase();
    if pre.contains("gitea") || pre.contains("forgejo") {
        return (
            Layout::Gitea,
            "detected: hooks/pre-receive is Gitea's/Forgejo's".into(),
        );
    }
    if hooks.join("pre-receive.d").is_dir() {
        return (
            Layout::Gitea,
            "detected: hooks/pre-receive.d/ exists".into(),
        );
    }
    if repo.join("custom_hooks").is_dir() {
        return (Layout::Gitlab, "detected: custom_hooks/ exists".into());
    }
    let link_mentions = |p: &Path, what: &str| {
        std::fs::read_link(p)
            .map(|t| t.to_string_lossy().to_ascii_lowercase().contains(what))
            .unwrap_or(false)
    };
    let config = std::fs::read_to_string(repo.join("config")).unwrap_or_default();
    if link_mentions(&hooks, "gitlab")
        || config.contains("[gitlab]")
        || repo.components().any(|c| c.as_os_str() == "@hashed")
    {
        return (
            Layout::Gitlab,
            "detected: GitLab's hooks, config or @hashed storage".into(),
        );
    }
    if repo.join("gl-conf").is_file()
        || ["update", "post-update"]
            .iter()
            .any(|h| link_mentions(&hooks.join(h), "gitolite"))
        || user.home.join(".gitolite").is_dir()
    {
        return (
            Layout::Gitolite,
            "detected: gitolite's gl-conf, hooks or ~/.gitolite".into(),
        );
    }
    (Layout::Plain, "detected: no forge found".into())
}

// ---------------------------------------------------------------------------
// Installing into one repository
// ---------------------------------------------------------------------------

fn is_ours(path: &Path, kind: &str) -> bool {
    std::fs::read_to_string(path)
        .map(|t| t.contains(&format!("countersign {kind} shim")))
        .unwrap_or(false)
}

fn io_fail<T>(what: &str, path: &Path, e: std::io::Error) -> Result<T, Failure> {
    fail(
        format!("cannot {what} {}: {e}", path.display()),
        "check the permissions, or run install as root or as the repository's owner",
    )
}

fn install_one(
    args: &InstallArgs,
    binary: &Path,
    repo: &Path,
    name: &str,
) -> Result<String, Failure> {
    let text = repo.to_string_lossy();
    if text.contains(['\'', '\n']) {
        return fail(
            format!(
                "the repository path `{}` contains a quote or newline",
                text.escape_debug()
            ),
            "move the repository to a plainer path",
        );
    }
    let owner_meta = std::fs::metadata(repo).or_else(|e| io_fail("read", repo, e))?;
    let owner = lookup_user(&owner_meta.uid().to_string());
    let hook_user = match &args.hook_user {
        Some(u) => lookup_user(u).ok_or_else(|| Failure {
            what: format!("no user `{u}`"),
            help: "pass --hook-user with the user pushes arrive as".into(),
        })?,
        None => owner.clone().ok_or_else(|| Failure {
            what: format!(
                "the repository's owner (uid {}) has no passwd entry",
                owner_meta.uid()
            ),
            help: "pass --hook-user with the user pushes arrive as".into(),
        })?,
    };
    let user_why = if args.hook_user.is_some() {
        "given with --hook-user"
    } else {
        "the repository's owner"
    };
    let (layout, layout_why) = detect_layout(args.layout, repo, &hook_user);
    if name == GITOLITE_ADMIN || name.ends_with(&format!("/{GITOLITE_ADMIN}")) {
        return fail(
            "this is gitolite's admin repository: a hook that rejects its pushes locks the administrator out",
            "install into the other repositories only (--root skips gitolite-admin)",
        );
    }
    let as_user = AsUser::new(hook_user.clone())?;
    let mut report = String::new();
    let _ = writeln!(
        report,
        "{PREFIX}: installed in {} (layout {}, {layout_why})",
        repo.display(),
        layout.name()
    );

    // 1. Hooks are reached: core.hooksPath as the hook user sees it.
    let _ = writeln!(report, "  hook user:  {} ({user_why})", hook_user.name);
    match layout {
        Layout::Gitlab => {
            let _ = writeln!(
                report,
                "  hooks:      GitLab's Gitaly passes core.hooksPath on git's command line and runs server hooks from custom_hooks/; repository config is not consulted"
            );
        }
        _ => {
            let found = hooks_path(&as_user, repo)?;
            if let Some((listing, dir)) = found {
                let same = std::fs::canonicalize(&dir).ok()
                    == std::fs::canonicalize(repo.join("hooks")).ok();
                if !same {
                    return fail(
                        format!(
                            "core.hooksPath is set for {} ({listing}): git runs hooks from {}, so a hook installed in {} would never run and every push would be accepted",
                            hook_user.name,
                            dir.display(),
                            repo.join("hooks").display()
                        ),
                        format!(
                            "unset it where it is set, as {}: `git --git-dir {} config --unset-all core.hooksPath`, `git config --global --unset-all core.hooksPath` or `git config --system --unset-all core.hooksPath`; or install the shim into that directory yourself (see `countersign doctor`)",
                            hook_user.name,
                            repo.display()
                        ),
                    );
                }
            }
            let _ = writeln!(
                report,
                "  hooks:      core.hooksPath is not set elsewhere at any level {} sees (system, global, local)",
                hook_user.name
            );
        }
    }
    if layout == Layout::Gitea {
        let dispatcher =
            std::fs::read_to_string(repo.join("hooks/pre-receive")).unwrap_or_default();
        if !dispatcher.contains("pre-receive.d") && !dispatcher.contains(".d/") {
            return fail(
                format!(
                    "{} does not run hooks/pre-receive.d/: Gitea's (Forgejo's) hook dispatcher is missing, so a hook there would never run",
                    repo.join("hooks/pre-receive").display()
                ),
                "let Gitea write its hooks (Site Administration → Dashboard → Resynchronize git hooks, or `gitea admin regenerate hooks`), then run install again; or use --layout plain",
            );
        }
    }

    // 2. Nothing foreign is replaced.
    let mut chain_now = Vec::new();
    for kind in KINDS {
        let target = layout.shim_path(repo, kind);
        if target.symlink_metadata().is_ok() && !is_ours(&target, kind) {
            let chainable = matches!(layout, Layout::Plain | Layout::Gitolite);
            if !chainable {
                return fail(
                    format!("`{}` already exists and is not countersign's", target.display()),
                    "move it away (hooks in the .d directory run side by side, so nothing needs chaining), then run install again",
                );
            }
            if !args.chain {
                return fail(
                    format!("`{}` already exists and is not countersign's", target.display()),
                    "re-run with --chain to keep it running after countersign, or move it away yourself",
                );
            }
            let chained = chained_path(&target);
            if chained.symlink_metadata().is_ok() {
                return fail(
                    format!("`{}` already exists", chained.display()),
                    "remove or merge it by hand, then run install again",
                );
            }
            chain_now.push((target, chained));
        }
    }

    // 3. The policy: which file, valid, readable by the hook user.
    let policy = choose_policy(args, repo, name)?;
    match &policy {
        PolicyChoice::File(p, why) => {
            if let Err(e) = countersign::policy::load(p) {
                if let countersign::policy::PolicyError::Invalid { .. } = e {
                    eprint!("{}", e.details());
                }
                return fail(
                    format!("the policy `{}` ({why}) is not valid: {e}", p.display()),
                    "fix the problems listed above and run install again",
                );
            }
            if !as_user.test("-r", p) {
                return fail(
                    format!("{} cannot read the policy `{}`", hook_user.name, p.display()),
                    format!(
                        "make it (and its directories) readable by {}, e.g. chgrp {} FILE; chmod g+r FILE",
                        hook_user.name, hook_user.name
                    ),
                );
            }
        }
        PolicyChoice::Existing(_) | PolicyChoice::Starter => {}
    }

    // 4. The audit log's directory is writable by the hook user.
    let audit = audit_log_path(&as_user, repo);
    let writable_dir = audit
        .ancestors()
        .skip(1)
        .find(|d| d.exists())
        .unwrap_or(repo)
        .to_path_buf();
    let audit_ok = if audit.exists() {
        as_user.test("-w", &audit)
    } else {
        as_user.test("-w", &writable_dir)
    };
    if !audit_ok {
        return fail(
            format!(
                "{} cannot write the audit log {} (every push would be rejected with audit-log-unwritable)",
                hook_user.name,
                audit.display()
            ),
            format!(
                "give {} write access: chown -R {} {}",
                hook_user.name,
                hook_user.name,
                writable_dir.display()
            ),
        );
    }

    // 5. Write: the binary copy, the shims.
    let dir = layout.hook_dir(repo);
    let bin_dest = dir.join(NAME);
    make_dirs(&dir, repo)?;
    copy_atomic(binary, &bin_dest)?;
    for (target, chained) in &chain_now {
        std::fs::rename(target, chained).or_else(|e| io_fail("rename", target, e))?;
        let _ = writeln!(
            report,
            "  kept:       the existing hook as {} (runs after countersign)",
            chained.display()
        );
    }
    let mut shims = Vec::new();
    for (kind, template) in [("pre-receive", PRE_SHIM), ("post-receive", POST_SHIM)] {
        let target = layout.shim_path(repo, kind);
        if let Some(parent) = target.parent() {
            make_dirs(parent, repo)?;
        }
        let text = template.replace(BIN_PLACEHOLDER, &bin_dest.to_string_lossy());
        write_atomic(&target, text.as_bytes(), 0o755)?;
        shims.push(target.display().to_string());
    }
    let _ = writeln!(
        report,
        "  shims:      {} -> {} (a copy of {})",
        shims.join(", "),
        bin_dest.display(),
        binary.display()
    );

    // 6. The policy is recorded or written.
    let policy_line = match &policy {
        PolicyChoice::File(p, why) => {
            set_config(repo, "countersign.policy", &p.to_string_lossy())?;
            format!("{} ({why}; git config countersign.policy)", p.display())
        }
        PolicyChoice::Existing(what) => what.clone(),
        PolicyChoice::Starter => {
            let path = repo.join("countersign.toml");
            write_atomic(&path, countersign::policy::starter(name).as_bytes(), 0o644)?;
            chown_like(&path, repo);
            format!(
                "{}: a starter policy: protected refs reject every push until you add people (its comments explain each section; see also `countersign policy init --help`)",
                path.display()
            )
        }
    };
    let _ = writeln!(report, "  policy:     {policy_line}");
    let _ = writeln!(
        report,
        "  audit log:  {} (written by {})",
        audit.display(),
        hook_user.name
    );

    // 7. The signed ref-state log and the server key, as the hook user.
    let mut c = as_user.command(bin_dest.as_os_str(), &[("GIT_DIR", repo.as_os_str())]);
    c.args(["log", "init"]);
    c.stdin(Stdio::null());
    let out = c.output().or_else(|e| io_fail("run", &bin_dest, e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return fail(
            format!(
                "countersign log init, run as {}, failed: {}",
                hook_user.name,
                err.trim()
            ),
            format!(
                "run it as {}: GIT_DIR={} {} log init",
                hook_user.name,
                repo.display(),
                bin_dest.display()
            ),
        );
    }
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let _ = writeln!(
        report,
        "  server key: {key}\n              publish it in the policy as [log] server-key = \"{key}\" (clones check the log with it)"
    );
    if layout == Layout::Gitolite {
        let _ = writeln!(
            report,
            "  gitolite:   never install into gitolite-admin (a hook that rejects its pushes locks the administrator out; --root skips it)"
        );
    }
    let _ = writeln!(
        report,
        "  try next:   push an unsigned commit to a protected branch as a developer would, e.g. `git commit --allow-empty --no-gpg-sign -m test && git push <url> HEAD:main`: it must be rejected with error[unsigned-commit] (or unknown-signer); then `countersign doctor --repo {}` as {}",
        repo.display(),
        hook_user.name
    );
    Ok(report)
}

fn chained_path(target: &Path) -> PathBuf {
    let mut s = target.as_os_str().to_os_string();
    s.push(".chained");
    PathBuf::from(s)
}

/// core.hooksPath at every level the hook user sees: (the settings as
/// "scope (origin): value", the directory the last one points at).
fn hooks_path(as_user: &AsUser, repo: &Path) -> Result<Option<(String, PathBuf)>, Failure> {
    let mut c = as_user.command(OsStr::new("git"), &[]);
    c.arg("--git-dir")
        .arg(repo)
        .args([
            "config",
            "--show-scope",
            "--show-origin",
            "--get-all",
            "core.hooksPath",
        ])
        .stdin(Stdio::null());
    let out = match c.output() {
        Ok(o) => o,
        Err(e) => {
            return fail(
                format!("cannot run git as {}: {e}", as_user.user.name),
                "install git, and util-linux's runuser when installing as root",
            )
        }
    };
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if out.status.code() == Some(1) && err.trim().is_empty() {
            return Ok(None);
        }
        return fail(
            format!(
                "git, run as {}, cannot read the configuration of {}: {}",
                as_user.user.name,
                repo.display(),
                err.trim()
            ),
            "fix what git reports, then run install again",
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut listing = Vec::new();
    let mut last = None;
    for line in text.lines() {
        let mut f = line.splitn(3, '\t');
        if let (Some(scope), Some(origin), Some(value)) = (f.next(), f.next(), f.next()) {
            listing.push(format!("{scope} {origin}: {value}"));
            last = Some(value.to_string());
        }
    }
    let Some(value) = last else {
        return Ok(None);
    };
    let dir = if let Some(rest) = value.strip_prefix("~/") {
        as_user.user.home.join(rest)
    } else {
        repo.join(&value)
    };
    Ok(Some((listing.join("; "), dir)))
}

/// The audit log path as the hook will compute it (git config
/// countersign.auditLog, else countersign/audit.log in the repository).
fn audit_log_path(as_user: &AsUser, repo: &Path) -> PathBuf {
    let mut c = as_user.command(OsStr::new("git"), &[]);
    c.arg("--git-dir")
        .arg(repo)
        .args(["config", "--path", "--get", "countersign.auditLog"])
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    let set = c
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty());
    match set {
        Some(p) => repo.join(p),
        None => repo.join("countersign").join("audit.log"),
    }
}

/// `git config --get KEY` in the repository, as this user.
fn config_value(repo: &Path, key: &str) -> Option<String> {
    Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["config", "--get", key])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

enum PolicyChoice {
    /// A file to check and record, and why this one.
    File(PathBuf, String),
    /// The repository already has a policy (described).
    Existing(String),
    /// Write the starter policy.
    Starter,
}

fn choose_policy(args: &InstallArgs, repo: &Path, name: &str) -> Result<PolicyChoice, Failure> {
    let absolute = |p: &Path| -> Result<PathBuf, Failure> {
        std::path::absolute(p).or_else(|e| io_fail("resolve", p, e))
    };
    if let Some(pattern) = &args.policy {
        if pattern.contains("{repo}") {
            let path = absolute(Path::new(&pattern.replace("{repo}", name)))?;
            if path.is_file() {
                return Ok(PolicyChoice::File(path, format!("`{pattern}` for {name}")));
            }
            if let Some(d) = &args.default_policy {
                let d = absolute(d)?;
                if !d.is_file() {
                    return fail(
                        format!("the default policy `{}` does not exist", d.display()),
                        "pass an existing file with --default-policy",
                    );
                }
                return Ok(PolicyChoice::File(
                    d,
                    format!("--default-policy: there is no {}", path.display()),
                ));
            }
        } else {
            let path = absolute(Path::new(pattern))?;
            if !path.is_file() {
                return fail(
                    format!("policy `{}` does not exist", path.display()),
                    "pass an existing policy file with --policy (`countersign policy init --id ID` prints a starter)",
                );
            }
            return Ok(PolicyChoice::File(path, "--policy".into()));
        }
    }
    let configured = config_value(repo, "countersign.policy");
    if let Some(p) = configured {
        return Ok(PolicyChoice::Existing(format!(
            "{p} (git config countersign.policy, kept)"
        )));
    }
    let file = repo.join("countersign.toml");
    if file.exists() {
        return Ok(PolicyChoice::Existing(format!("{} (kept)", file.display())));
    }
    Ok(PolicyChoice::Starter)
}

/// Give `path` the owner and group of `like` (when root writes into a
/// repository another user owns, the files stay that user's).
fn chown_like(path: &Path, like: &Path) {
    if current_uid() != Some(0) {
        return;
    }
    if let Ok(m) = std::fs::metadata(like) {
        let _ = std::os::unix::fs::chown(path, Some(m.uid()), Some(m.gid()));
    }
}

/// `git config KEY VALUE` in the repository, keeping the config file's owner.
fn set_config(repo: &Path, key: &str, value: &str) -> Result<(), Failure> {
    let config = repo.join("config");
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["config", key, value])
        .output()
        .or_else(|e| io_fail("run git config in", repo, e))?;
    if !out.status.success() {
        return fail(
            format!(
                "git config {key} failed in {}: {}",
                repo.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            format!(
                "set it yourself: git --git-dir {} config {key} {value}",
                repo.display()
            ),
        );
    }
    chown_like(&config, repo);
    Ok(())
}

/// mkdir -p, new directories owned as the repository is.
fn make_dirs(dir: &Path, repo: &Path) -> Result<(), Failure> {
    let mut missing = Vec::new();
    for d in dir.ancestors() {
        if d.exists() || d == repo {
            break;
        }
        missing.push(d.to_path_buf());
    }
    std::fs::create_dir_all(dir).or_else(|e| io_fail("create", dir, e))?;
    for d in missing {
        chown_like(&d, repo);
    }
    Ok(())
}

/// Write `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Failure> {
    let tmp = temp_name(path);
    let result = std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return io_fail("write", path, e);
    }
    Ok(())
}

fn copy_atomic(from: &Path, to: &Path) -> Result<(), Failure> {
    if std::fs::canonicalize(from).ok() == std::fs::canonicalize(to).ok() {
        return Ok(()); // installing the copy over itself
    }
    let tmp = temp_name(to);
    let result = std::fs::copy(from, &tmp)
        .and_then(|_| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)))
        .and_then(|()| std::fs::rename(&tmp, to));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return io_fail("copy the binary to", to, e);
    }
    Ok(())
}

fn temp_name(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".new.{}", std::process::id()));
    PathBuf::from(s)
}

// ---------------------------------------------------------------------------
// Uninstall
// ---------------------------------------------------------------------------

/// The binary a shim names (its `COUNTERSIGN_BIN='...'` line).
fn shim_binary(path: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix("COUNTERSIGN_BIN='")
            .and_then(|r| r.strip_suffix('\''))
            .map(PathBuf::from)
    })
}

fn uninstall(repo: &Path) -> Result<String, Failure> {
    let mut report = format!("{PREFIX}: uninstalled from {}\n", repo.display());
    let mut removed_any = false;
    let mut binaries = Vec::new();
    for kind in KINDS {
        let candidates = [
            Layout::Plain.shim_path(repo, kind),
            Layout::Gitea.shim_path(repo, kind),
            Layout::Gitlab.shim_path(repo, kind),
        ];
        for path in candidates {
            if !is_ours(&path, kind) {
                continue;
            }
            if let Some(b) = shim_binary(&path) {
                binaries.push(b);
            }
            std::fs::remove_file(&path).or_else(|e| io_fail("remove", &path, e))?;
            removed_any = true;
            let _ = writeln!(report, "  removed:    {}", path.display());
            let chained = chained_path(&path);
            if chained.symlink_metadata().is_ok() {
                std::fs::rename(&chained, &path).or_else(|e| io_fail("restore", &chained, e))?;
                let _ = writeln!(
                    report,
                    "  restored:   {} (was kept as {})",
                    path.display(),
                    chained.display()
                );
            }
        }
    }
    binaries.sort();
    binaries.dedup();
    for b in binaries {
        // Only the copy install made, next to the shims, is removed.
        let ours = [
            repo.join("hooks").join(NAME),
            repo.join("custom_hooks").join(NAME),
        ];
        if ours.contains(&b) && b.is_file() {
            std::fs::remove_file(&b).or_else(|e| io_fail("remove", &b, e))?;
            let _ = writeln!(report, "  removed:    {}", b.display());
        }
    }
    if !removed_any {
        return fail(
            "countersign's shims are not installed here (nothing removed)",
            "nothing to do; `countersign doctor` shows which hooks git runs",
        );
    }
    let audit = match config_value(repo, "countersign.auditLog") {
        Some(p) => repo.join(p),
        None => repo.join("countersign").join("audit.log"),
    };
    let policy = match config_value(repo, "countersign.policy") {
        Some(p) => format!("{p} (git config countersign.policy)"),
        None => repo.join("countersign.toml").display().to_string(),
    };
    let _ = writeln!(
        report,
        "  left:       the audit log {}, the policy {policy}, the signed ref-state log refs/countersign/log and the server key {}: remove them yourself if you mean to\n  pushes to this repository are no longer checked",
        audit.display(),
        repo.join("countersign").join("server-key").display()
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shims_have_the_placeholder_and_markers() {
        assert!(PRE_SHIM.contains(BIN_PLACEHOLDER));
        assert!(POST_SHIM.contains(BIN_PLACEHOLDER));
        assert!(PRE_SHIM.contains("countersign pre-receive shim"));
        assert!(POST_SHIM.contains("countersign post-receive shim"));
    }

    #[test]
    fn repo_names_lose_dot_git() {
        assert_eq!(repo_name(Path::new("team/payments.git")), "team/payments");
        assert_eq!(repo_name(Path::new("plain")), "plain");
    }

    #[test]
    fn passwd_lines_parse() {
        let u = parse_passwd("git:x:998:997:git:/srv/git:/usr/bin/git-shell").unwrap();
        assert_eq!((u.name.as_str(), u.uid, u.gid), ("git", 998, 997));
        assert_eq!(u.home, PathBuf::from("/srv/git"));
        assert!(parse_passwd("broken:x:nope").is_none());
    }

    /// A fresh directory under the temp dir, removed at the end.
    struct Tmp(PathBuf);
    impl Tmp {
        fn new(tag: &str) -> Tmp {
            let p = std::env::temp_dir().join(format!("cs-layout-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(p.join("r.git/hooks")).unwrap();
            Tmp(p)
        }
        fn repo(&self) -> PathBuf {
            self.0.join("r.git")
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn nobody(home: &Path) -> User {
        User {
            name: "git".into(),
            uid: 1,
            gid: 1,
            home: home.to_path_buf(),
        }
    }

    #[test]
    fn layouts_are_detected() {
        let detect = |t: &Tmp| detect_layout(LayoutArg::Auto, &t.repo(), &nobody(&t.0)).0;
        let t = Tmp::new("plain");
        assert_eq!(detect(&t), Layout::Plain);
        std::fs::write(t.repo().join("hooks/pre-receive"), "#!/bin/sh\nexit 0\n").unwrap();
        assert_eq!(detect(&t), Layout::Plain, "a foreign hook is not a forge");

        let t = Tmp::new("gitea");
        std::fs::write(
            t.repo().join("hooks/pre-receive"),
            "#!/usr/bin/env bash\n# AUTO GENERATED BY GITEA, DO NOT MODIFY\n",
        )
        .unwrap();
        assert_eq!(detect(&t), Layout::Gitea);
        let t = Tmp::new("forgejo");
        std::fs::write(t.repo().join("hooks/pre-receive"), "# forgejo\n").unwrap();
        assert_eq!(detect(&t), Layout::Gitea);
        let t = Tmp::new("dotd");
        std::fs::create_dir(t.repo().join("hooks/pre-receive.d")).unwrap();
        assert_eq!(detect(&t), Layout::Gitea);

        let t = Tmp::new("gitlab-dir");
        std::fs::create_dir(t.repo().join("custom_hooks")).unwrap();
        assert_eq!(detect(&t), Layout::Gitlab);
        let t = Tmp::new("gitlab-config");
        std::fs::write(
            t.repo().join("config"),
            "[core]\n\tbare = true\n[gitlab]\n\tfullpath = group/project\n",
        )
        .unwrap();
        assert_eq!(detect(&t), Layout::Gitlab);
        let t = Tmp::new("gitlab-link");
        std::fs::remove_dir(t.repo().join("hooks")).unwrap();
        std::os::unix::fs::symlink(
            "/opt/gitlab/embedded/service/gitlab-shell/hooks",
            t.repo().join("hooks"),
        )
        .unwrap();
        assert_eq!(detect(&t), Layout::Gitlab);

        let t = Tmp::new("gl-conf");
        std::fs::write(t.repo().join("gl-conf"), "%one_repo = ();\n").unwrap();
        assert_eq!(detect(&t), Layout::Gitolite);
        let t = Tmp::new("gitolite-hook");
        std::os::unix::fs::symlink(
            "/home/git/.gitolite/hooks/common/update",
            t.repo().join("hooks/update"),
        )
        .unwrap();
        assert_eq!(detect(&t), Layout::Gitolite);
        let t = Tmp::new("gitolite-home");
        std::fs::create_dir(t.0.join(".gitolite")).unwrap();
        assert_eq!(detect(&t), Layout::Gitolite);

        // Given layouts win.
        let t = Tmp::new("given");
        std::fs::create_dir(t.repo().join("custom_hooks")).unwrap();
        assert_eq!(
            detect_layout(LayoutArg::Plain, &t.repo(), &nobody(&t.0)).0,
            Layout::Plain
        );
        assert_eq!(
            detect_layout(LayoutArg::Forgejo, &t.repo(), &nobody(&t.0)).0,
            Layout::Gitea
        );
    }

    #[test]
    fn layout_paths() {
        let r = Path::new("/r.git");
        assert_eq!(
            Layout::Plain.shim_path(r, "pre-receive"),
            Path::new("/r.git/hooks/pre-receive")
        );
        assert_eq!(
            Layout::Gitea.shim_path(r, "post-receive"),
            Path::new("/r.git/hooks/post-receive.d/countersign")
        );
        assert_eq!(
            Layout::Gitlab.shim_path(r, "pre-receive"),
            Path::new("/r.git/custom_hooks/pre-receive.d/countersign")
        );
    }
}
