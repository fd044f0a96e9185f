//! `countersign demo`: a guided tour of countersign in a throwaway sandbox.
//!
//! It is the first thing a new user runs. It builds everything a real
//! deployment has, in a fresh directory under the system's temporary
//! directory, and then pushes good and bad changes so that the user sees what
//! the hook accepts, what it rejects, and what it says when it rejects:
//!
//! * fresh keys: SSH ed25519 keys for alice, bob, carol and mallory, and an
//!   OpenPGP key for dave in a private `GNUPGHOME` (skipped without `gpg`);
//! * a policy (`policy.toml`) that maps those keys to people and roles, and
//!   protects `main`, `release/*` and `v*` tags;
//! * a bare "server" repository with the pre-receive shim from
//!   `hooks/pre-receive` pointing at this very binary (installed without
//!   `install.sh`, which would build and copy a release binary);
//! * a clone, from which each step pushes one change, with the expected
//!   verdict written next to the real one.
//!
//! Every external command runs with `HOME` set to the sandbox,
//! `GIT_CONFIG_NOSYSTEM=1`, no inherited `GIT_*` variables and an explicit
//! identity, so the user's own git, ssh and gpg set-up neither changes the
//! outcome nor gets changed. The sandbox is kept afterwards so the user can
//! look around; the gpg-agent started for dave's key is stopped on the way out.
//!
//! The demo exits with an error when any step's verdict differs from the
//! expected one, which makes it a cheap end-to-end smoke test as well.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

/// The pre-receive shim, as `install.sh` installs it.
const HOOK_SHIM: &str = include_str!("../../hooks/pre-receive");
/// The post-receive shim: it writes the signed ref-state log.
const POST_SHIM: &str = include_str!("../../hooks/post-receive");
/// Where the shim expects the absolute path of the countersign binary.
const BIN_PLACEHOLDER: &str = "@COUNTERSIGN_BIN@";
/// The oldest git that signs with SSH keys (`gpg.format=ssh`).
const MIN_GIT: (u32, u32) = (2, 34);
/// The repository id written into the demo policy.
const REPO_ID: &str = "demo/payments";
/// Indentation of everything below a heading.
const IN: &str = "   ";

/// Run the demo, writing a transcript to `out`.
pub fn run(out: &mut dyn Write) -> Result<()> {
    let have_gpg = check_tools()?;
    let exe = std::env::current_exe()
        .context("cannot find the path of the running countersign binary")?;
    let sandbox = Sandbox::create()?;
    // Stops the gpg-agent that signing as dave starts, however we leave.
    let _agent = have_gpg.then(|| AgentGuard(sandbox.clone()));

    writeln!(out, "countersign demo")?;
    writeln!(out, "================")?;
    writeln!(
        out,
        "A throwaway Git server whose pre-receive hook is countersign receives good and"
    )?;
    writeln!(
        out,
        "bad pushes, so you can see what it accepts, what it rejects, and why."
    )?;
    writeln!(
        out,
        "Nothing outside the sandbox is touched; your own git, ssh and gpg settings are ignored."
    )?;

    heading(
        out,
        &format!("Setting up the sandbox {}", sandbox.root.display()),
    )?;
    let people = make_keys(&sandbox, have_gpg)?;
    writeln!(out, "{IN}keys:    fresh SSH ed25519 keys for alice, bob, carol, erin, mallory (keys/<name>, keys/<name>.pub)")?;
    if have_gpg {
        writeln!(out, "{IN}         a fresh OpenPGP key for dave (certificate keys/dave.asc, secret key in gnupg/)")?;
    } else {
        writeln!(
            out,
            "{IN}note:    `gpg` is not on PATH (package gnupg): the OpenPGP part (dave) is skipped"
        )?;
    }
    let policy = sandbox.root.join("policy.toml");
    write_policy(&policy, &people)?;
    writeln!(out, "{IN}policy:  policy.toml")?;
    let server = sandbox.root.join("server.git");
    setup_server(&sandbox, &server, &policy, &exe)?;
    writeln!(
        out,
        "{IN}server:  server.git, pre-receive hook runs {}",
        exe.display()
    )?;
    let work = sandbox.root.join("work");
    let url = clone_work(&sandbox, &server, &work, &policy)?;
    writeln!(out, "{IN}clone:   work (git clone {url})")?;

    heading(out, "Who is who (policy.toml)")?;
    for p in &people.all {
        let roles = if p.roles.is_empty() {
            "(not in the policy)".to_string()
        } else {
            p.roles.join(", ")
        };
        writeln!(out, "{IN}{:<8} {:<38} {}", p.id, roles, p.key.kind())?;
    }
    writeln!(
        out,
        "{IN}Rules: refs/heads/main and refs/heads/release/* take only commits signed by a"
    )?;
    writeln!(
        out,
        "{IN}       developer or maintainer, and may be neither force-pushed nor deleted;"
    )?;
    writeln!(
        out,
        "{IN}       refs/tags/v* must be annotated tags signed by a release-manager."
    )?;
    writeln!(
        out,
        "{IN}Anything else (for example refs/heads/experiment) is unprotected."
    )?;

    let mut scenario = Scenario {
        out,
        sb: &sandbox,
        exe: exe.clone(),
        policy: policy.clone(),
        work: work.clone(),
        step: 0,
        total: 0,
        failed: Vec::new(),
    };
    scenario.play(&people)?;
    let Scenario {
        out, total, failed, ..
    } = scenario;

    heading(out, "Summary")?;
    writeln!(
        out,
        "{IN}{} of {total} steps behaved as expected.",
        total - failed.len()
    )?;
    for f in &failed {
        writeln!(out, "{IN}  not as expected: {f}")?;
    }
    if !failed.is_empty() {
        writeln!(out, "{IN}(If every push is rejected, check the policy and the hook with the first command below.)")?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{IN}The sandbox is kept for you to explore: {}",
        sandbox.root.display()
    )?;
    writeln!(
        out,
        "{IN}  policy.toml   the policy      server.git   the server, hook in server.git/hooks/"
    )?;
    writeln!(
        out,
        "{IN}  keys/         the demo keys   work/        the clone the pushes came from"
    )?;
    writeln!(out, "{IN}Try (countersign is {}):", exe.display())?;
    writeln!(
        out,
        "{IN}  countersign policy check --policy {}",
        policy.display()
    )?;
    writeln!(
        out,
        "{IN}  cd {} && countersign verify main --ref refs/heads/main",
        work.display()
    )?;
    writeln!(
        out,
        "{IN}  cd {} && countersign audit verify && countersign audit show    # every decision, hash-chained",
        server.display()
    )?;
    writeln!(
        out,
        "{IN}  cd {} && countersign policy log    # every access change: who signed, who approved, what changed",
        work.display()
    )?;
    writeln!(out, "{IN}Remove it with: rm -rf {}", sandbox.root.display())?;

    if !failed.is_empty() {
        bail!(
            "{} of {total} demo steps did not behave as expected (see above); the sandbox is kept at {}",
            failed.len(),
            sandbox.root.display()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Tools, sandbox and command helpers

/// Check the external programs; returns whether `gpg` is available.
fn check_tools() -> Result<bool> {
    for (program, package) in [("git", "git"), ("ssh-keygen", "openssh-client")] {
        if find_on_path(program).is_none() {
            bail!(
                "the demo needs `{program}`, which is not on PATH: install the `{package}` package"
            );
        }
    }
    let version = capture(Command::new("git").arg("--version"))?;
    if let Some((major, minor)) = parse_git_version(&version.stdout) {
        if (major, minor) < MIN_GIT {
            bail!(
                "the demo needs git {}.{} or newer (for SSH-signed commits), found {}",
                MIN_GIT.0,
                MIN_GIT.1,
                version.stdout.trim()
            );
        }
    }
    Ok(find_on_path("gpg").is_some())
}

/// `git version 2.47.3` (also `2.39.3 (Apple Git-146)`, `2.45.1.windows.1`).
fn parse_git_version(text: &str) -> Option<(u32, u32)> {
    let number = text.split_whitespace().nth(2)?;
    let mut parts = number.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the permissions of {}", path.display()))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<()> {
    bail!("the demo needs a Unix system (the pre-receive hook is a shell script)")
}

/// The demo's directory, and the environment every command runs in.
#[derive(Clone)]
struct Sandbox {
    root: PathBuf,
    keys: PathBuf,
    gnupghome: PathBuf,
}

impl Sandbox {
    fn create() -> Result<Self> {
        // Sub-second nanoseconds keep the name (and gpg-agent's socket paths,
        // limited to about 100 bytes) short; the pid keeps it unique.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let root =
            std::env::temp_dir().join(format!("countersign-demo-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&root)
            .with_context(|| format!("cannot create the sandbox {}", root.display()))?;
        // Absolute and free of symlinks: it ends up in a file:// URL and in git config.
        let root = std::fs::canonicalize(&root)
            .with_context(|| format!("cannot resolve {}", root.display()))?;
        let keys = root.join("keys");
        std::fs::create_dir(&keys).with_context(|| format!("cannot create {}", keys.display()))?;
        Ok(Sandbox {
            keys,
            gnupghome: root.join("gnupg"),
            root,
        })
    }

    /// `program` with the sandbox's environment: no inherited `GIT_*`
    /// variables, no system or user git config, no ssh or gpg agent of the
    /// user's, C locale (so git's messages are the ones we look for).
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("GIT_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", &self.root)
            .env("GNUPGHOME", &self.gnupghome)
            .env("LC_ALL", "C")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("GPG_AGENT_INFO")
            .current_dir(&self.root)
            .stdin(Stdio::null());
        cmd
    }

    /// `git` in `dir` as `who`, set up to sign with `who`'s key when asked (`-S`, `-s`).
    fn git(&self, dir: &Path, who: &Person) -> Command {
        let mut cmd = self.command("git");
        cmd.current_dir(dir);
        cmd.arg("-c").arg(format!("user.name={}", who.name));
        cmd.arg("-c")
            .arg(format!("user.email={}@example.com", who.id));
        for setting in [
            "commit.gpgsign=false",
            "tag.gpgsign=false",
            "init.defaultBranch=main",
            "advice.detachedHead=false",
        ] {
            cmd.arg("-c").arg(setting);
        }
        match &who.key {
            Key::Ssh { private, .. } => {
                let mut key = OsString::from("user.signingkey=");
                key.push(private);
                cmd.args(["-c", "gpg.format=ssh", "-c"]).arg(key);
            }
            Key::OpenPgp { fingerprint, .. } => {
                cmd.args(["-c", "gpg.format=openpgp", "-c"])
                    .arg(format!("user.signingkey={fingerprint}"));
            }
        }
        cmd
    }
}

/// Stops the gpg-agent of the sandbox's `GNUPGHOME` when dropped.
struct AgentGuard(Sandbox);

impl Drop for AgentGuard {
    fn drop(&mut self) {
        for args in [&["--kill", "all"][..], &["--remove-socketdir"][..]] {
            let _ = self
                .0
                .command("gpgconf")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// What a finished command left behind.
struct Captured {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// The command line, for messages.
fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Run `cmd` to completion, capturing its output; fails only if it cannot start.
fn capture(cmd: &mut Command) -> Result<Captured> {
    let output = cmd
        .output()
        .with_context(|| format!("cannot run `{}`", describe(cmd)))?;
    Ok(Captured {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Like [`capture`], but a non-zero exit is an error showing what the command said.
fn run_ok(cmd: &mut Command) -> Result<Captured> {
    let captured = capture(cmd)?;
    if !captured.status.success() {
        let said: String = captured
            .stderr
            .lines()
            .chain(captured.stdout.lines())
            .map(|l| format!("\n  {l}"))
            .collect();
        bail!("`{}` failed ({}){said}", describe(cmd), captured.status);
    }
    Ok(captured)
}

fn heading(out: &mut dyn Write, title: &str) -> Result<()> {
    writeln!(out)?;
    writeln!(out, "── {title}")?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Keys, policy, server

enum Key {
    Ssh { private: PathBuf, public: String },
    OpenPgp { fingerprint: String, cert: String },
}

impl Key {
    fn kind(&self) -> &'static str {
        match self {
            Key::Ssh { .. } => "SSH key",
            Key::OpenPgp { .. } => "OpenPGP key",
        }
    }
}

struct Person {
    id: &'static str,
    name: &'static str,
    /// Empty: not in the policy at all.
    roles: Vec<&'static str>,
    key: Key,
}

struct People {
    all: Vec<Person>,
}

impl People {
    fn get(&self, id: &str) -> Result<&Person> {
        self.all
            .iter()
            .find(|p| p.id == id)
            .with_context(|| format!("internal: no demo person `{id}`"))
    }
}

fn make_keys(sb: &Sandbox, have_gpg: bool) -> Result<People> {
    let mut all = Vec::new();
    let cast: [(&'static str, &'static str, &[&'static str]); 5] = [
        ("alice", "Alice Example", &["developer", "admin"]),
        (
            "bob",
            "Bob Example",
            &["developer", "maintainer", "release-manager"],
        ),
        ("carol", "Carol Example", &["reviewer", "admin"]),
        ("erin", "Erin Example", &["reviewer", "admin"]),
        ("mallory", "Mallory Example", &[]),
    ];
    for (id, name, roles) in cast {
        let private = sb.keys.join(id);
        run_ok(
            sb.command("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C"])
                .arg(format!("{id}@demo"))
                .arg("-f")
                .arg(&private),
        )?;
        let public_path = sb.keys.join(format!("{id}.pub"));
        let public = std::fs::read_to_string(&public_path)
            .with_context(|| format!("cannot read {}", public_path.display()))?;
        all.push(Person {
            id,
            name,
            roles: roles.to_vec(),
            key: Key::Ssh {
                private,
                public: public.trim().to_string(),
            },
        });
    }
    if have_gpg {
        let (fingerprint, cert) = make_openpgp_key(sb)?;
        all.push(Person {
            id: "dave",
            name: "Dave Example",
            roles: vec!["developer"],
            key: Key::OpenPgp { fingerprint, cert },
        });
    }
    all.sort_by_key(|p| p.id);
    Ok(People { all })
}

/// Dave's key in the sandbox's `GNUPGHOME`; returns its fingerprint and the
/// certificate's path relative to the policy.
fn make_openpgp_key(sb: &Sandbox) -> Result<(String, String)> {
    std::fs::create_dir(&sb.gnupghome)
        .with_context(|| format!("cannot create {}", sb.gnupghome.display()))?;
    set_mode(&sb.gnupghome, 0o700)?;
    let gpg =
        |args: &[&str]| -> Result<Captured> { run_ok(sb.command("gpg").arg("--batch").args(args)) };
    gpg(&[
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--quick-gen-key",
        "Dave <dave@example.com>",
        "ed25519",
        "sign",
        "1y",
    ])?;
    let listing = gpg(&["--with-colons", "--list-secret-keys"])?;
    let fingerprint = listing
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("sec:"))
        .find(|l| l.starts_with("fpr:"))
        .and_then(|l| l.split(':').nth(9))
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .context("gpg made a key for dave but did not list its fingerprint")?;
    let export = gpg(&["--armor", "--export", &fingerprint])?;
    if !export.stdout.contains("BEGIN PGP PUBLIC KEY BLOCK") {
        bail!("`gpg --armor --export {fingerprint}` printed no certificate");
    }
    let cert = sb.keys.join("dave.asc");
    std::fs::write(&cert, &export.stdout)
        .with_context(|| format!("cannot write {}", cert.display()))?;
    Ok((fingerprint, "keys/dave.asc".to_string()))
}

fn toml_string(s: &str) -> String {
    let mut quoted = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn toml_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| toml_string(s)).collect();
    format!("[{}]", quoted.join(", "))
}

fn write_policy(path: &Path, people: &People) -> Result<()> {
    let mut toml = String::new();
    toml.push_str("# countersign policy written by `countersign demo`. See `countersign policy init --help`\n");
    toml.push_str("# in the countersign sources for every field.\n\n");
    toml.push_str(&format!("[repository]\nid = {}\n\n", toml_string(REPO_ID)));
    toml.push_str("[roles]\n");
    toml.push_str("developer = \"writes code: may sign commits on protected branches\"\n");
    toml.push_str("reviewer = \"reviews changes; may not sign commits on protected branches\"\n");
    toml.push_str("maintainer = \"merges and ships\"\n");
    toml.push_str("release-manager = \"signs release tags\"\n");
    toml.push_str("admin = \"changes the policy, with two other admins' approvals\"\n");
    for p in &people.all {
        if p.roles.is_empty() {
            toml.push_str(&format!(
                "\n# {} is deliberately absent: a signature by an unknown key proves nothing.\n",
                p.id
            ));
            continue;
        }
        toml.push_str(&format!(
            "\n[people.{}]\nname = {}\nroles = {}\n",
            p.id,
            toml_string(p.name),
            toml_list(&p.roles)
        ));
        match &p.key {
            Key::Ssh { public, .. } => toml.push_str(&format!("ssh = {}\n", toml_list(&[public]))),
            Key::OpenPgp { cert, .. } => {
                toml.push_str(&format!("openpgp = {}\n", toml_list(&[cert])))
            }
        }
    }
    toml.push_str(concat!(
        "\n# Used once the policy lives on refs/meta/countersign (part three).\n",
        "[policy-changes]\n",
        "signers = [\"admin\"]\n",
        "approvals = [{ role = \"admin\", count = 2 }]\n",
        "\n[[rule]]\n",
        "name = \"protected branches\"\n",
        "refs = [\"refs/heads/main\", \"refs/heads/release/*\"]\n",
        "commit-signers = [\"developer\", \"maintainer\"]\n",
        "force-push = false\n",
        "delete = false\n",
        "\n[[rule]]\n",
        "name = \"release tags\"\n",
        "refs = [\"refs/tags/v*\"]\n",
        "tag-signers = [\"release-manager\"]\n",
    ));
    std::fs::write(path, toml).with_context(|| format!("cannot write {}", path.display()))
}

/// `git init --bare`, the hook shim pointing at `exe`, and `countersign.policy`.
fn setup_server(sb: &Sandbox, server: &Path, policy: &Path, exe: &Path) -> Result<()> {
    run_ok(
        sb.command("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(server),
    )?;
    install_hook(server, exe)?;
    let config = |key: &str, value: &OsStr| {
        run_ok(
            sb.command("git")
                .arg("--git-dir")
                .arg(server)
                .args(["config", key])
                .arg(value),
        )
    };
    config("countersign.policy", policy.as_os_str())?;
    // git itself refuses to delete the branch HEAD names, even in a bare
    // repository; let countersign be the one that decides.
    config("receive.denyDeleteCurrent", OsStr::new("ignore"))?;
    // The server's log key and the first entry of the signed ref-state log.
    let exe_text = exe.display().to_string();
    run_ok(
        sb.command(&exe_text)
            .current_dir(server)
            .env("GIT_DIR", server)
            .args(["log", "init"]),
    )?;
    Ok(())
}

fn install_hook(server: &Path, exe: &Path) -> Result<()> {
    let exe_text = exe
        .to_str()
        .with_context(|| format!("the path of this program is not UTF-8: {}", exe.display()))?;
    if exe_text.contains('\'') || exe_text.contains('\n') {
        bail!(
            "the path of this program ({}) contains a quote or a line break, which the hook script cannot hold; \
             copy or build countersign somewhere else",
            exe.display()
        );
    }
    if !HOOK_SHIM.contains(BIN_PLACEHOLDER) {
        bail!("internal: hooks/pre-receive has no {BIN_PLACEHOLDER} placeholder");
    }
    let hooks = server.join("hooks");
    std::fs::create_dir_all(&hooks)
        .with_context(|| format!("cannot create {}", hooks.display()))?;
    let hook = hooks.join("pre-receive");
    std::fs::write(&hook, HOOK_SHIM.replace(BIN_PLACEHOLDER, exe_text))
        .with_context(|| format!("cannot write {}", hook.display()))?;
    set_mode(&hook, 0o755)?;
    let post = hooks.join("post-receive");
    std::fs::write(&post, POST_SHIM.replace(BIN_PLACEHOLDER, exe_text))
        .with_context(|| format!("cannot write {}", post.display()))?;
    set_mode(&post, 0o755)
}

/// Clone the (empty) server into `work`; returns the URL.
fn clone_work(sb: &Sandbox, server: &Path, work: &Path, policy: &Path) -> Result<String> {
    let url = format!("file://{}", server.display());
    run_ok(sb.command("git").args(["clone", "-q", &url]).arg(work))?;
    let git = |args: &[&str]| run_ok(sb.command("git").current_dir(work).args(args));
    // An empty clone may not know the remote's default branch yet.
    git(&["symbolic-ref", "HEAD", "refs/heads/main"])?;
    // So that `countersign verify` run in the clone finds the same policy.
    run_ok(
        sb.command("git")
            .current_dir(work)
            .args(["config", "countersign.policy"])
            .arg(policy),
    )?;
    Ok(url)
}

// ---------------------------------------------------------------------------
// The scenario

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Verdict {
    Accepted,
    Rejected,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Accepted => "ACCEPTED",
            Verdict::Rejected => "REJECTED",
        }
    }
}

struct Scenario<'a> {
    out: &'a mut dyn Write,
    sb: &'a Sandbox,
    /// This countersign binary.
    exe: PathBuf,
    /// The policy file (part two adds a rule to it).
    policy: PathBuf,
    work: PathBuf,
    step: usize,
    total: usize,
    /// "<n>. <title>" of each step that did not behave as expected.
    failed: Vec<String>,
}

impl Scenario<'_> {
    fn play(&mut self, people: &People) -> Result<()> {
        let alice = people.get("alice")?;
        let bob = people.get("bob")?;
        let carol = people.get("carol")?;
        let mallory = people.get("mallory")?;
        let dave = people.get("dave").ok();

        self.begin("alice (developer) pushes an SSH-signed commit to main")?;
        self.say("alice makes the first commit of the repository and signs it with her SSH key.")?;
        self.commit(
            alice,
            true,
            "README.md",
            "# payments\n\nMoves money between accounts.\n",
            "Add README",
        )?;
        let got = self.push(alice, &["origin", "main"])?;
        self.verdict(
            got,
            Verdict::Accepted,
            "alice is a developer, and developers may sign commits on main.",
        )?;
        self.reset()?;

        match dave {
            Some(dave) => {
                self.begin("dave (developer) pushes an OpenPGP-signed commit to main")?;
                self.say("dave signs with OpenPGP instead; the policy knows his certificate (keys/dave.asc).")?;
                self.commit(
                    dave,
                    true,
                    "CHANGELOG.md",
                    "# Changelog\n\n- Start the payments service.\n",
                    "Start a changelog",
                )?;
                let got = self.push(dave, &["origin", "main"])?;
                self.verdict(
                    got,
                    Verdict::Accepted,
                    "dave is a developer; OpenPGP and SSH signatures count the same.",
                )?;
            }
            None => {
                self.begin("bob (maintainer) pushes an SSH-signed commit to main")?;
                self.say("(gpg is not installed, so dave and his OpenPGP key sit this one out; bob steps in.)")?;
                self.commit(
                    bob,
                    true,
                    "CHANGELOG.md",
                    "# Changelog\n\n- Start the payments service.\n",
                    "Start a changelog",
                )?;
                let got = self.push(bob, &["origin", "main"])?;
                self.verdict(
                    got,
                    Verdict::Accepted,
                    "bob is a developer and a maintainer: both may sign commits on main.",
                )?;
            }
        }
        self.reset()?;

        self.begin("an unsigned commit to main, with alice's name on it")?;
        self.say(
            "Someone commits as \"Alice Example\" without signing. The name is only a claim.",
        )?;
        self.commit(
            alice,
            false,
            "payments.conf",
            "transfer_fee = 0\n",
            "Set the transfer fee to zero",
        )?;
        let got = self.push(alice, &["origin", "main"])?;
        self.verdict(got, Verdict::Rejected, "every commit newly reachable from main must be signed; names and e-mails prove nothing.")?;
        self.reset()?;

        self.begin("mallory (not in the policy) pushes a signed commit to main")?;
        self.say("mallory signs properly, with her own SSH key.")?;
        self.commit(
            mallory,
            true,
            "payments.conf",
            "refund_account = mallory\n",
            "Route refunds through the settlement account",
        )?;
        let got = self.push(mallory, &["origin", "main"])?;
        self.verdict(
            got,
            Verdict::Rejected,
            "the signature is valid, but the key belongs to no one in the policy.",
        )?;
        self.reset()?;

        self.begin("carol (reviewer only) pushes a signed commit to main")?;
        self.say("carol is in the policy, with her SSH key, but only as a reviewer.")?;
        self.commit(
            carol,
            true,
            "README.md",
            "\nReview checklist: see CONTRIBUTING.md.\n",
            "Mention the review checklist",
        )?;
        let got = self.push(carol, &["origin", "main"])?;
        self.verdict(
            got,
            Verdict::Rejected,
            "main takes commits signed by a developer or maintainer; reviewer is neither.",
        )?;
        self.reset()?;

        self.begin("alice pushes an unsigned commit to the unprotected branch experiment")?;
        self.say("No rule matches refs/heads/experiment.")?;
        self.git(alice, &["checkout", "-q", "-b", "experiment"])?;
        self.commit(
            alice,
            false,
            "rounding.txt",
            "round half to even\n",
            "Experiment: round half to even",
        )?;
        let got = self.push(alice, &["origin", "experiment"])?;
        self.verdict(
            got,
            Verdict::Accepted,
            "unprotected refs are not checked at all.",
        )?;
        // No reset: the next step pushes this very commit.

        self.begin("the unsigned experiment is pushed to main")?;
        self.say("The commit is already on the server (on experiment); now it would become part of main.")?;
        let got = self.push(alice, &["origin", "experiment:main"])?;
        self.verdict(got, Verdict::Rejected, "what matters is what becomes newly reachable from main, wherever it was before; it is unsigned.")?;
        self.reset()?;

        self.begin("alice force-pushes a rewritten main")?;
        if self.rev("refs/remotes/origin/main~1")?.is_none() {
            self.skip(
                "main on the server needs two commits, and an earlier step did not put them there",
            )?;
        } else {
            self.say("alice drops the last commit of main and signs a replacement.")?;
            self.show_git(alice, &["reset", "-q", "--hard", "HEAD~1"])?;
            self.commit(
                alice,
                true,
                "CHANGELOG.md",
                "# Changelog\n\n- Payments service, rewritten history.\n",
                "Rewrite the changelog",
            )?;
            let got = self.push(alice, &["--force", "origin", "main"])?;
            self.verdict(
                got,
                Verdict::Rejected,
                "the commit is signed, but force-push = false: main may only move forward.",
            )?;
        }
        self.reset()?;

        self.begin("bob (maintainer) tries to delete main")?;
        if self.rev("refs/remotes/origin/main")?.is_none() {
            self.skip("main does not exist on the server, because an earlier step was rejected")?;
        } else {
            let got = self.push(bob, &["origin", "--delete", "main"])?;
            self.verdict(
                got,
                Verdict::Rejected,
                "delete = false: not even a maintainer may delete main.",
            )?;
        }
        self.reset()?;

        self.begin("bob (release-manager) pushes a signed tag v1.0")?;
        if self.rev("refs/remotes/origin/main")?.is_none() {
            self.skip("there is no main to tag, because an earlier step was rejected")?;
        } else {
            self.say("bob tags the tip of main with an annotated tag signed by his SSH key; its last paragraph names the repository, so the tag cannot be replayed into another one.")?;
            let bound = format!("Countersign-Repository: {REPO_ID}");
            self.show_git(
                bob,
                &["tag", "-s", "v1.0", "-m", "payments 1.0", "-m", &bound],
            )?;
            let got = self.push(bob, &["origin", "v1.0"])?;
            self.verdict(
                got,
                Verdict::Accepted,
                "v* tags must be signed by a release-manager, and bob is one.",
            )?;
        }
        self.reset()?;
        self.separation(people)?;
        self.quorum(people)?;
        self.bypass(people)?;
        Ok(())
    }

    /// Part four: a ref moved behind the hook's back is caught by the
    /// signed ref-state log, by any clone and by the next push, until the
    /// admins acknowledge it.
    fn bypass(&mut self, people: &People) -> Result<()> {
        let alice = people.get("alice")?;
        let carol = people.get("carol")?;
        let erin = people.get("erin")?;
        heading(self.out, "Part four: a ref moved behind the hook's back")?;
        self.say("After every accepted push the post-receive hook appends an entry to refs/countersign/log,")?;
        self.say(
            "signed by the server's own key: which refs moved, who pushed, under which policy.",
        )?;
        let server = self.sb.root.join("server.git");
        let exe = self.exe.display().to_string();
        let on_server = |sb: &Sandbox, args: &[&str]| -> Result<Captured> {
            let mut cmd = sb.command(&exe);
            cmd.current_dir(&server).env("GIT_DIR", &server).args(args);
            capture(&mut cmd)
        };
        writeln!(
            self.out,
            "{IN}$ cd server.git && countersign log show --max 3"
        )?;
        let got = on_server(self.sb, &["log", "show", "--max", "3"])?;
        for line in got.stdout.lines().chain(got.stderr.lines()) {
            writeln!(self.out, "{IN}  {line}")?;
        }
        self.say("The first look from alice's clone remembers what it saw:")?;
        self.countersign(alice, &["audit", "verify", "--remote", "origin"])?;

        self.begin("someone with shell access rolls main back with git update-ref; alice pushes")?;
        let Some(main) = self.rev("refs/remotes/origin/main")? else {
            self.skip("there is no main, because an earlier step was rejected")?;
            return Ok(());
        };
        writeln!(
            self.out,
            "{IN}$ cd server.git && git update-ref refs/heads/main main~1    # on the server, around the hook"
        )?;
        run_ok(self.sb.command("git").arg("--git-dir").arg(&server).args([
            "update-ref",
            "refs/heads/main",
            &format!("{main}~1"),
        ]))?;
        self.say("Any clone that fetched the log sees it:")?;
        self.countersign(alice, &["audit", "verify", "--remote", "origin"])?;
        self.show_git(alice, &["fetch", "-q", "origin"])?;
        self.show_git(alice, &["reset", "-q", "--hard", "origin/main"])?;
        self.commit(
            alice,
            true,
            "README.md",
            "\nAfter the rollback.\n",
            "Note the rollback",
        )?;
        let got = self.push(alice, &["origin", "main"])?;
        self.verdict(
            got,
            Verdict::Rejected,
            "main moved without an accepted push: every push waits until the admins acknowledge it.",
        )?;

        self.begin("three admins sign the acknowledgement; alice pushes again")?;
        let entry = on_server(self.sb, &["log", "show", "--max", "1", "--format", "json"])?;
        let n = serde_json::from_str::<serde_json::Value>(&entry.stdout)
            .ok()
            .and_then(|v| v[0]["unacknowledged"][0]["entry"].as_u64())
            .map(|n| n.to_string())
            .unwrap_or_default();
        writeln!(
            self.out,
            "{IN}$ cd server.git && countersign log statement --entry {n} > ack.txt"
        )?;
        let statement = on_server(self.sb, &["log", "statement", "--entry", &n])?;
        let text_path = self.sb.root.join("ack.txt");
        std::fs::write(&text_path, &statement.stdout)
            .with_context(|| format!("cannot write {}", text_path.display()))?;
        let mut args: Vec<String> = vec!["log".into(), "ack".into(), "--entry".into(), n.clone()];
        for who in [alice, carol, erin] {
            let Key::Ssh { private, .. } = &who.key else {
                continue;
            };
            writeln!(
                self.out,
                "{IN}$ ssh-keygen -Y sign -n countersign-ack -f keys/{} ack.txt    # as {}",
                who.id, who.id
            )?;
            let sig = self.sb.root.join(format!("ack-{}.sig", who.id));
            let _ = std::fs::remove_file(&sig);
            run_ok(
                self.sb
                    .command("ssh-keygen")
                    .args(["-q", "-Y", "sign", "-n", "countersign-ack", "-f"])
                    .arg(private)
                    .arg(&text_path),
            )?;
            std::fs::rename(self.sb.root.join("ack.txt.sig"), &sig)
                .with_context(|| format!("cannot write {}", sig.display()))?;
            args.push("--signature".into());
            args.push(sig.display().to_string());
        }
        args.push("--reason".into());
        args.push("rollback of a bad release, ticket OPS-7".into());
        writeln!(
            self.out,
            "{IN}$ cd server.git && countersign log ack --entry {n} --signature ack-alice.sig --signature ack-carol.sig --signature ack-erin.sig --reason '...'"
        )?;
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let got = on_server(self.sb, &arg_refs)?;
        for line in got.stdout.lines().chain(got.stderr.lines()) {
            writeln!(self.out, "{IN}  {line}")?;
        }
        let got = self.push(alice, &["origin", "main"])?;
        self.verdict(
            got,
            Verdict::Accepted,
            "the out-of-band move is acknowledged by the same quorum a policy change needs, and recorded.",
        )?;
        Ok(())
    }

    /// Part three: the policy moves into the repository; an admin who
    /// grants herself a role needs two other admins' approvals.
    fn quorum(&mut self, people: &People) -> Result<()> {
        let alice = people.get("alice")?;
        let carol = people.get("carol")?;
        let erin = people.get("erin")?;
        heading(self.out, "Part three: the policy itself under quorum")?;
        self.say(
            "The host operator moves the policy into the repository, on refs/meta/countersign,",
        )?;
        self.say("and pins its first commit as the trust root. From now on every change of the")?;
        self.say("policy is judged by the policy before it: signed by an admin, approved by two")?;
        self.say("other admins (its [policy-changes] table). alice, carol and erin are admins.")?;
        let server = self.sb.root.join("server.git");
        writeln!(
            self.out,
            "{IN}$ cd server.git && countersign policy migrate    # as the host operator"
        )?;
        let mut cmd = self.sb.command(&self.exe.display().to_string());
        cmd.current_dir(&server).args(["policy", "migrate"]);
        let got = capture(&mut cmd)?;
        for line in got.stdout.lines().chain(got.stderr.lines()) {
            writeln!(self.out, "{IN}  {line}")?;
        }
        let root = run_ok(self.sb.command("git").arg("--git-dir").arg(&server).args([
            "rev-parse",
            "-q",
            "--verify",
            "refs/meta/countersign",
        ]));
        let Ok(root) = root else {
            self.begin("the policy moves into the repository")?;
            self.skip("`countersign policy migrate` failed (see above)")?;
            return Ok(());
        };
        let root = root.stdout.trim().to_string();
        self.show_git(
            alice,
            &[
                "fetch",
                "-q",
                "origin",
                "+refs/meta/countersign:refs/meta/countersign",
            ],
        )?;
        self.countersign(alice, &["policy", "pin", &root])?;

        self.begin("alice grants herself maintainer; only carol approves")?;
        self.say(
            "Admin commands edit the policy ref as a signed proposal for other admins to approve:",
        )?;
        self.countersign(
            alice,
            &[
                "roles",
                "grant",
                "alice",
                "maintainer",
                "--propose",
                "alice-maintainer",
                "--push",
                "origin",
            ],
        )?;
        let proposal = "refs/countersign/proposals/alice-maintainer";
        self.countersign(
            carol,
            &[
                "approve",
                proposal,
                "--ref",
                "refs/meta/countersign",
                "--result",
            ],
        )?;
        self.say(
            "countersign refuses to apply it; alice pushes the proposal to the policy ref anyway:",
        )?;
        self.countersign(alice, &["policy", "apply", "alice-maintainer"])?;
        let got = self.push(
            alice,
            &["origin", &format!("{proposal}:refs/meta/countersign")],
        )?;
        self.verdict(
            got,
            Verdict::Rejected,
            "a policy change needs two admins' approvals besides its signer's; she has one.",
        )?;

        self.begin("erin approves too; alice applies the change and pushes it")?;
        self.countersign(
            erin,
            &[
                "approve",
                proposal,
                "--ref",
                "refs/meta/countersign",
                "--result",
            ],
        )?;
        self.countersign(alice, &["policy", "apply", "alice-maintainer"])?;
        let got = self.push(alice, &["origin", "refs/meta/countersign"])?;
        self.verdict(
            got,
            Verdict::Accepted,
            "signed by an admin, approved by two other admins, judged by the policy before it.",
        )?;
        self.countersign(alice, &["policy", "log"])?;
        Ok(())
    }

    /// Part two: changes reach `production` only as signed merges carrying
    /// signed approvals by two reviewers who did not write them.
    fn separation(&mut self, people: &People) -> Result<()> {
        let alice = people.get("alice")?;
        let bob = people.get("bob")?;
        let carol = people.get("carol")?;
        let erin = people.get("erin")?;
        let Some(base) = self.rev("refs/remotes/origin/main")? else {
            self.begin("separation of duties on production")?;
            self.skip("main does not exist on the server, because an earlier step was rejected")?;
            return Ok(());
        };

        heading(
            self.out,
            "Part two: separation of duties on refs/heads/production",
        )?;
        self.say("The admin adds a rule: changes reach production only as merges signed by a")?;
        self.say("maintainer, approved by 2 reviewers who wrote none of the change; the merge")?;
        self.say("may not carry anything the reviewers did not approve. History up to main's")?;
        self.say("current tip is grandfathered (baseline).")?;
        let rule = format!(
            concat!(
                "\n[[rule]]\n",
                "name = \"production\"\n",
                "refs = [\"refs/heads/production\"]\n",
                "commit-signers = [\"developer\", \"maintainer\"]\n",
                "baseline = \"{base}\"\n",
                "[rule.merge]\n",
                "signers = [\"maintainer\"]\n",
                "approvals = [{{ role = \"reviewer\", count = 2 }}]\n",
                "approvers-distinct-from-authors = true\n",
                "merger-distinct-from-approvers = true\n",
            ),
            base = base
        );
        for line in rule.lines().skip(1) {
            writeln!(self.out, "{IN}  | {line}")?;
        }
        let mut policy = std::fs::read_to_string(&self.policy)
            .with_context(|| format!("cannot read {}", self.policy.display()))?;
        policy.push_str(&rule);
        std::fs::write(&self.policy, policy)
            .with_context(|| format!("cannot write {}", self.policy.display()))?;

        self.begin("bob creates production from main")?;
        let got = self.push(bob, &["origin", "main:production"])?;
        self.verdict(
            got,
            Verdict::Accepted,
            "everything on it is below the baseline.",
        )?;
        self.git(bob, &["fetch", "-q", "origin"])?;

        self.begin("alice pushes a signed topic branch")?;
        self.git(
            alice,
            &[
                "checkout",
                "-q",
                "-b",
                "topic/rounding",
                "refs/remotes/origin/production",
            ],
        )?;
        self.commit(
            alice,
            true,
            "rounding.txt",
            "round half to even\n",
            "Round amounts half to even",
        )?;
        let got = self.push(alice, &["origin", "topic/rounding"])?;
        self.verdict(
            got,
            Verdict::Accepted,
            "topic branches are unprotected; the topic is where review happens.",
        )?;

        self.begin("alice pushes her topic straight to production")?;
        let got = self.push(alice, &["origin", "topic/rounding:production"])?;
        self.verdict(
            got,
            Verdict::Rejected,
            "it is signed by a developer, but production takes approved merges only.",
        )?;

        self.begin("carol approves the topic; bob merges with that one approval")?;
        self.countersign(carol, &["approve", "topic/rounding", "--ref", "production"])?;
        self.say("bob asks countersign to merge; it runs the hook's checks first and refuses:")?;
        self.git(
            bob,
            &[
                "checkout",
                "-q",
                "-B",
                "production",
                "refs/remotes/origin/production",
            ],
        )?;
        self.countersign(bob, &["merge", "topic/rounding"])?;
        self.say("bob merges by hand anyway, with carol's trailer, and pushes:")?;
        let trailers = self.notes("topic/rounding")?;
        self.merge_by_hand(bob, "topic/rounding", &trailers, None)?;
        let got = self.push(bob, &["origin", "production"])?;
        self.verdict(
            got,
            Verdict::Rejected,
            "two reviewers must approve; one approval is one person.",
        )?;
        self.git(
            bob,
            &["reset", "-q", "--hard", "refs/remotes/origin/production"],
        )?;

        self.begin("erin approves too, then alice changes the topic; bob merges the new tip")?;
        self.countersign(erin, &["approve", "topic/rounding", "--ref", "production"])?;
        let approved = self.notes("topic/rounding")?;
        self.git(alice, &["checkout", "-q", "topic/rounding"])?;
        self.commit(
            alice,
            true,
            "rounding.txt",
            "except for fees: round up\n",
            "Round fees up",
        )?;
        self.git(bob, &["checkout", "-q", "production"])?;
        self.merge_by_hand(bob, "topic/rounding", &approved, None)?;
        let got = self.push(bob, &["origin", "production"])?;
        self.verdict(
            got,
            Verdict::Rejected,
            "the approvals are of the earlier tip: what lands must be exactly what was approved.",
        )?;
        self.git(
            bob,
            &["reset", "-q", "--hard", "refs/remotes/origin/production"],
        )?;

        self.begin("carol and erin approve the new tip; bob slips an extra change into the merge")?;
        self.countersign(carol, &["approve", "topic/rounding", "--ref", "production"])?;
        self.countersign(erin, &["approve", "topic/rounding", "--ref", "production"])?;
        let current = self.notes("topic/rounding")?;
        self.merge_by_hand(
            bob,
            "topic/rounding",
            &current,
            Some(("payments.conf", "transfer_fee = 0\n")),
        )?;
        let got = self.push(bob, &["origin", "production"])?;
        self.verdict(
            got,
            Verdict::Rejected,
            "an evil merge: its tree is not the clean merge of what was approved.",
        )?;
        self.git(
            bob,
            &["reset", "-q", "--hard", "refs/remotes/origin/production"],
        )?;

        self.begin("bob checks the status and merges with countersign")?;
        self.countersign(bob, &["status", "topic/rounding", "--ref", "production"])?;
        self.countersign(bob, &["merge", "topic/rounding"])?;
        let got = self.push(bob, &["origin", "production"])?;
        self.verdict(got, Verdict::Accepted, "a maintainer's signed merge, two reviewers' approvals of exactly this topic, none of them its author.")?;
        Ok(())
    }

    /// The approval trailers in the notes of `rev`'s commits.
    fn notes(&self, rev: &str) -> Result<Vec<String>> {
        let mut cmd = self.sb.command("git");
        cmd.current_dir(&self.work)
            .args(["notes", "--ref", "refs/notes/countersign", "show", rev]);
        let got = capture(&mut cmd)?;
        Ok(got
            .stdout
            .lines()
            .filter(|l| l.starts_with("Countersign-Approval:"))
            .map(str::to_string)
            .collect())
    }

    /// `git merge --no-ff -S` of `topic` with `trailers`, as `who`; with
    /// `extra`, also writes that file into the merge (an evil merge).
    fn merge_by_hand(
        &mut self,
        who: &Person,
        topic: &str,
        trailers: &[String],
        extra: Option<(&str, &str)>,
    ) -> Result<()> {
        let msg = self.sb.root.join("MERGE_MSG.txt");
        let mut text = format!("Merge {topic} into production\n\n");
        for t in trailers {
            text.push_str(t);
            text.push('\n');
        }
        std::fs::write(&msg, text).with_context(|| format!("cannot write {}", msg.display()))?;
        let msg_arg = msg.display().to_string();
        let short: Vec<String> = trailers
            .iter()
            .map(|t| format!("{}...", &t[..t.len().min(60)]))
            .collect();
        match extra {
            None => {
                writeln!(
                    self.out,
                    "{IN}$ git merge --no-ff -S -F msg {topic}    # trailers: {}",
                    short.len()
                )?;
                self.git(
                    who,
                    &["merge", "-q", "--no-ff", "-S", "-F", &msg_arg, topic],
                )?;
            }
            Some((file, content)) => {
                writeln!(self.out, "{IN}$ git merge --no-ff --no-commit {topic}; echo ... >> {file}; git commit -S -F msg    # trailers: {}", short.len())?;
                self.git(who, &["merge", "-q", "--no-ff", "--no-commit", topic])?;
                let path = self.work.join(file);
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                f.write_all(content.as_bytes())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                drop(f);
                self.git(who, &["add", "--", file])?;
                self.git(who, &["commit", "-q", "-S", "-F", &msg_arg])?;
            }
        }
        Ok(())
    }

    /// Run `countersign <args>` in the clone as `who` (their signing key is
    /// written into the clone's config, which is what countersign reads),
    /// and show what it printed.
    fn countersign(&mut self, who: &Person, args: &[&str]) -> Result<Captured> {
        let set = |k: &str, v: &OsStr| {
            run_ok(
                self.sb
                    .command("git")
                    .current_dir(&self.work)
                    .args(["config", k])
                    .arg(v),
            )
        };
        set("user.name", OsStr::new(who.name))?;
        set("user.email", OsStr::new(&format!("{}@example.com", who.id)))?;
        match &who.key {
            Key::Ssh { private, .. } => {
                set("gpg.format", OsStr::new("ssh"))?;
                set("user.signingkey", private.as_os_str())?;
            }
            Key::OpenPgp { fingerprint, .. } => {
                set("gpg.format", OsStr::new("openpgp"))?;
                set("user.signingkey", OsStr::new(fingerprint))?;
            }
        }
        let mut full: Vec<&str> = args.to_vec();
        if args.first() == Some(&"approve") {
            full.push("--push");
            full.push("origin");
        }
        writeln!(
            self.out,
            "{IN}$ countersign {}    # as {}",
            shell_words(&full),
            who.id
        )?;
        let mut cmd = self.sb.command(&self.exe.display().to_string());
        cmd.current_dir(&self.work).args(&full);
        let got = capture(&mut cmd)?;
        for line in got.stderr.lines().chain(got.stdout.lines()) {
            let line = if line.starts_with("Countersign-Approval:") && line.len() > 100 {
                format!("{}...", &line[..100])
            } else {
                line.to_string()
            };
            writeln!(self.out, "{IN}  {line}")?;
        }
        Ok(got)
    }

    fn begin(&mut self, title: &str) -> Result<()> {
        self.step += 1;
        self.total += 1;
        let numbered = format!("{}. {title}", self.step);
        heading(self.out, &numbered)?;
        // Recorded now, removed again by `verdict` when the step goes as expected.
        self.failed.push(numbered);
        Ok(())
    }

    fn say(&mut self, text: &str) -> Result<()> {
        writeln!(self.out, "{IN}{text}")?;
        Ok(())
    }

    fn skip(&mut self, why: &str) -> Result<()> {
        writeln!(self.out, "{IN}=> SKIPPED: {why}")?;
        Ok(())
    }

    fn git(&self, who: &Person, args: &[&str]) -> Result<Captured> {
        run_ok(self.sb.git(&self.work, who).args(args))
    }

    /// Run a git command and show it as the user would type it.
    fn show_git(&mut self, who: &Person, args: &[&str]) -> Result<Captured> {
        writeln!(self.out, "{IN}$ git {}", shell_words(args))?;
        self.git(who, args)
    }

    /// The commit `spec` names in the clone, if any.
    fn rev(&self, spec: &str) -> Result<Option<String>> {
        let mut cmd = self.sb.command("git");
        cmd.current_dir(&self.work)
            .args(["rev-parse", "-q", "--verify"])
            .arg(format!("{spec}^{{commit}}"));
        let got = capture(&mut cmd)?;
        Ok(got.status.success().then(|| got.stdout.trim().to_string()))
    }

    /// Append `text` to `file`, then commit it as `who`, signed or not.
    fn commit(
        &mut self,
        who: &Person,
        sign: bool,
        file: &str,
        text: &str,
        message: &str,
    ) -> Result<()> {
        let path = self.work.join(file);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        drop(f);
        writeln!(self.out, "{IN}$ git add {file}")?;
        self.git(who, &["add", "--", file])?;
        let how = match (&who.key, sign) {
            (_, false) => "unsigned".to_string(),
            (key, true) => format!("signed with {}'s {}", who.id, key.kind()),
        };
        let flag = if sign { "-S" } else { "--no-gpg-sign" };
        writeln!(
            self.out,
            "{IN}$ git commit {flag} -m {}    # {how}",
            shell_words(&[message])
        )?;
        self.git(who, &["commit", "-q", flag, "-m", message])?;
        Ok(())
    }

    /// `git push <args>` as `who`; shows what the server and git said.
    fn push(&mut self, who: &Person, args: &[&str]) -> Result<Verdict> {
        writeln!(self.out, "{IN}$ git push {}", shell_words(args))?;
        let mut cmd = self.sb.git(&self.work, who);
        cmd.arg("push").args(args);
        let got = capture(&mut cmd)?;
        let said: Vec<&str> = got
            .stderr
            .lines()
            .chain(got.stdout.lines())
            .map(|l| l.trim_end())
            .collect();
        let mut shown: Vec<&str> = said.iter().copied().filter(|l| is_server_line(l)).collect();
        if shown.is_empty() && !got.status.success() {
            // Not the server's doing: show everything git said.
            shown = said;
        }
        for line in shown {
            writeln!(self.out, "{IN}{line}")?;
        }
        Ok(if got.status.success() {
            Verdict::Accepted
        } else {
            Verdict::Rejected
        })
    }

    fn verdict(&mut self, got: Verdict, expected: Verdict, why: &str) -> Result<()> {
        if got == expected {
            writeln!(self.out, "{IN}=> {} (as expected)", got.word())?;
            writeln!(self.out, "{IN}   {why}")?;
            self.failed.pop();
        } else {
            writeln!(
                self.out,
                "{IN}=> {} (NOT AS EXPECTED: the demo expected {})",
                got.word(),
                expected.word()
            )?;
            writeln!(
                self.out,
                "{IN}   It should be {} because {why}",
                expected.word().to_lowercase()
            )?;
        }
        Ok(())
    }

    /// Bring the clone back to the server's main, so each step starts from
    /// what the server holds. Shown only when it changes something.
    fn reset(&mut self) -> Result<()> {
        let git = |args: &[&str]| run_ok(self.sb.command("git").current_dir(&self.work).args(args));
        git(&["fetch", "-q", "--prune", "origin"])?;
        let branch = git(&["symbolic-ref", "-q", "HEAD"])?
            .stdout
            .trim()
            .to_string();
        let head = self.rev("HEAD")?;
        let server = self.rev("refs/remotes/origin/main")?;
        if branch == "refs/heads/main" && head == server {
            return Ok(());
        }
        if branch != "refs/heads/main" {
            writeln!(self.out, "{IN}$ git checkout -q main")?;
        }
        git(&["symbolic-ref", "HEAD", "refs/heads/main"])?;
        if server.is_some() {
            writeln!(
                self.out,
                "{IN}$ git reset -q --hard origin/main    # back to what the server holds"
            )?;
            git(&["reset", "-q", "--hard", "refs/remotes/origin/main"])?;
        } else {
            writeln!(
                self.out,
                "{IN}(the server has no main: the clone starts over from nothing)"
            )?;
            if self.rev("refs/heads/main")?.is_some() {
                git(&["update-ref", "-d", "refs/heads/main"])?;
            }
            git(&["read-tree", "--empty"])?;
        }
        git(&["clean", "-q", "-f", "-d"])?;
        Ok(())
    }
}

/// `args` as a shell would need them typed, for showing commands.
fn shell_words(args: &[&str]) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:=@+,%^~".contains(c);
    let words: Vec<String> = args
        .iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(safe) {
                a.to_string()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect();
    words.join(" ")
}

/// Lines of `git push` output that tell what the server decided: the
/// server's own messages, and git's per-ref status lines
/// (` * [new branch] main -> main`, ` ! [remote rejected] main -> main (...)`).
fn is_server_line(line: &str) -> bool {
    if line.starts_with("remote:") {
        return true;
    }
    let mut chars = line.chars();
    chars.next() == Some(' ')
        && matches!(chars.next(), Some(' ' | '+' | '-' | '*' | '!' | '='))
        && chars.next() == Some(' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_versions() {
        assert_eq!(parse_git_version("git version 2.47.3\n"), Some((2, 47)));
        assert_eq!(
            parse_git_version("git version 2.39.3 (Apple Git-146)"),
            Some((2, 39))
        );
        assert_eq!(
            parse_git_version("git version 2.45.1.windows.1"),
            Some((2, 45))
        );
        assert_eq!(parse_git_version("nonsense"), None);
    }

    #[test]
    fn server_lines() {
        assert!(is_server_line("remote: countersign: rejected"));
        assert!(is_server_line(" * [new branch]      main -> main"));
        assert!(is_server_line(
            " ! [remote rejected] main (pre-receive hook declined)"
        ));
        assert!(is_server_line("   1a2b3c4..5d6e7f8  main -> main"));
        assert!(!is_server_line("To file:///tmp/x/server.git"));
        assert!(!is_server_line(
            "error: failed to push some refs to 'file:///tmp/x'"
        ));
        assert!(!is_server_line("hint: Updates were rejected"));
    }

    #[test]
    fn shell_words_quote_what_needs_it() {
        assert_eq!(
            shell_words(&["push", "origin", "experiment:main"]),
            "push origin experiment:main"
        );
        assert_eq!(shell_words(&["-m", "payments 1.0"]), "-m 'payments 1.0'");
        assert_eq!(shell_words(&["it's"]), "'it'\\''s'");
    }

    #[test]
    fn hook_shim_has_placeholder() {
        assert!(HOOK_SHIM.contains(BIN_PLACEHOLDER));
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(toml_list(&["x", "y"]), "[\"x\", \"y\"]");
    }
}
