//! Test harness for the end-to-end tests: a sandbox with a bare "server"
//! repository that has countersign installed as its pre-receive hook, a work
//! clone to push from, and helpers to make SSH and OpenPGP keys and signed
//! commits and tags with git's own signing.
//!
//! Only std is used. Every external command runs with a private HOME and
//! without the system git config, so the developer's own configuration
//! (signing keys, hooks, aliases) never leaks into a test.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The countersign binary under test (debug build made by cargo).
pub const BIN: &str = env!("CARGO_BIN_EXE_countersign");

/// The source tree (where install.sh lives).
pub fn source_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------
// Temporary directory (made by hand, removed on drop)
// ---------------------------------------------------------------------------

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop. The name is
/// short on purpose: gpg-agent's socket lives inside GNUPGHOME and a Unix
/// socket path may not exceed 108 bytes.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        let base = std::env::temp_dir();
        loop {
            let n = COUNTER.fetch_add(1, Ordering::SeqCst);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let path = base.join(format!(
                "cs-{}-{}-{}",
                std::process::id(),
                n,
                nanos % 100_000
            ));
            match fs::create_dir(&path) {
                Ok(()) => return TempDir { path },
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("cannot create temp dir {}: {e}", path.display()),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("CS_KEEP_TMP").is_some() {
            eprintln!("keeping {}", self.path.display());
            return;
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------

/// What a command did: exit status and its output as text.
#[derive(Debug, Clone)]
pub struct Out {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    fn from(o: Output) -> Out {
        Out {
            success: o.status.success(),
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// stdout and stderr together, for searching messages whatever the stream.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Out {
    let desc = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).unwrap();
    }
    Out::from(child.wait_with_output().unwrap())
}

#[track_caller]
pub fn run_ok(cmd: Command, stdin: Option<&[u8]>) -> Out {
    let desc = format!("{cmd:?}");
    let out = run(cmd, stdin);
    assert!(out.success, "command failed: {desc}\n{out}");
    out
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

/// A signing identity made for a test.
#[derive(Debug, Clone)]
pub enum Key {
    Ssh {
        /// The public key in `authorized_keys` form.
        public: String,
        /// Path of the private key file.
        private: PathBuf,
    },
    OpenPgp {
        /// The GNUPGHOME holding the secret key.
        home: PathBuf,
        fingerprint: String,
        /// Policy-relative path of the exported certificate (`keys/<name>.asc`).
        cert: String,
    },
}

impl Key {
    /// The key as a plain policy entry (`"ssh-ed25519 AAAA..."` or `"keys/x.asc"`).
    pub fn entry(&self) -> String {
        match self {
            Key::Ssh { public, .. } => toml_str(public),
            Key::OpenPgp { cert, .. } => toml_str(cert),
        }
    }

    /// The key as a table entry with extra fields, e.g. `expires = 2020-01-01`.
    pub fn entry_with(&self, extra: &str) -> String {
        match self {
            Key::Ssh { public, .. } => format!("{{ key = {}, {extra} }}", toml_str(public)),
            Key::OpenPgp { cert, .. } => format!("{{ cert = {}, {extra} }}", toml_str(cert)),
        }
    }

    /// The policy field holding this kind of key.
    pub fn field(&self) -> &'static str {
        match self {
            Key::Ssh { .. } => "ssh",
            Key::OpenPgp { .. } => "openpgp",
        }
    }

    /// `git -c` arguments that make git sign with this key.
    pub fn sign_config(&self) -> Vec<String> {
        match self {
            Key::Ssh { private, .. } => vec![
                "-c".into(),
                "gpg.format=ssh".into(),
                "-c".into(),
                format!("user.signingkey={}", private.display()),
            ],
            Key::OpenPgp { fingerprint, .. } => vec![
                "-c".into(),
                "gpg.format=openpgp".into(),
                "-c".into(),
                format!("user.signingkey={fingerprint}"),
            ],
        }
    }
}

fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

// ---------------------------------------------------------------------------
// Policy text
// ---------------------------------------------------------------------------

/// A `[people.<id>]` table with one key. `key_entry` is the TOML value of
/// the key (from `Key::entry` or `Key::entry_with`); `extra` is appended
/// as-is (e.g. `expires = 2020-01-01`).
pub fn person(id: &str, roles: &[&str], key: &Key, key_entry: &str, extra: &str) -> String {
    let roles: Vec<String> = roles.iter().map(|r| toml_str(r)).collect();
    format!(
        "[people.{id}]\nname = {name}\nroles = [{roles}]\n{field} = [{key_entry}]\n{extra}\n",
        name = toml_str(&format!("{id} Example")),
        roles = roles.join(", "),
        field = key.field(),
    )
}

/// A person with one plain key entry.
pub fn simple_person(id: &str, roles: &[&str], key: &Key) -> String {
    person(id, roles, key, &key.entry(), "")
}

/// The standard test policy: four roles; `main` and `release/*` need
/// developer-signed commits, no force-push, no deletion; `v*` tags need a
/// release-manager signature.
pub fn standard_policy(people: &[String]) -> String {
    format!(
        r#"[repository]
id = "test/e2e"

[roles]
developer = "writes code"
maintainer = "merges and ships"
reviewer = "reviews changes"
release-manager = "signs release tags"

{people}
[[rule]]
name = "protected branches"
refs = ["refs/heads/main", "refs/heads/release/*"]
commit-signers = ["developer"]
force-push = false
delete = false

[[rule]]
name = "release tags"
refs = ["refs/tags/v*"]
tag-signers = ["release-manager"]
"#,
        people = people.join("\n")
    )
}

// ---------------------------------------------------------------------------
// The sandbox
// ---------------------------------------------------------------------------

/// A bare server repository with countersign installed, and a work clone.
pub struct Sandbox {
    // Declared first so gpg-agents are killed before the directory goes.
    gpg_homes: Vec<PathBuf>,
    pub server: PathBuf,
    pub work: PathBuf,
    /// Directory of the policy file (keys live in `keys/` under it).
    pub policy_dir: PathBuf,
    pub policy: PathBuf,
    seq: usize,
    tmp: TempDir,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for home in &self.gpg_homes {
            let mut c = Command::new("gpgconf");
            c.arg("--kill").arg("all").env("GNUPGHOME", home);
            c.stdout(Stdio::null())
                .stderr(Stdio::null())
                .stdin(Stdio::null());
            let _ = c.status();
        }
    }
}

impl Sandbox {
    /// Make the server (`git init --bare -b main`), the policy directory and
    /// the work clone. countersign is not installed yet: call `install` or
    /// `install_starter` once the keys are made.
    pub fn new() -> Sandbox {
        Sandbox::new_with_init(&[])
    }

    /// As `new`, with extra `git init` arguments for the server (e.g.
    /// `--object-format=sha256`). The work clone takes the server's format.
    pub fn new_with_init(init_args: &[&str]) -> Sandbox {
        let tmp = TempDir::new();
        let root = tmp.path().to_path_buf();
        let server = root.join("server.git");
        let work = root.join("work");
        let policy_dir = root.join("p");
        fs::create_dir_all(policy_dir.join("keys")).unwrap();
        let sb = Sandbox {
            gpg_homes: Vec::new(),
            server: server.clone(),
            work: work.clone(),
            policy: policy_dir.join("countersign.toml"),
            policy_dir,
            seq: 0,
            tmp,
        };
        let mut init: Vec<&str> = vec!["init", "--bare", "-q", "-b", "main"];
        init.extend_from_slice(init_args);
        init.push("server.git");
        run_ok(sb.git_in(&root, init), None);
        // Without countersign, git would let main be deleted: the deletion
        // test then depends on countersign alone.
        run_ok(
            sb.git_in(&server, ["config", "receive.denyDeleteCurrent", "ignore"]),
            None,
        );
        let url = format!("file://{}", server.display());
        run_ok(
            sb.git_in(&root, ["clone", "-q", url.as_str(), "work"]),
            None,
        );
        sb.git_ok(["symbolic-ref", "HEAD", "refs/heads/main"]);
        sb.git_ok(["config", "user.name", "Test User"]);
        sb.git_ok(["config", "user.email", "test@example.com"]);
        sb
    }

    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// A command with the sandbox environment: private HOME, no system or
    /// global git config, no GIT_* variables from the caller.
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(program);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("GIT_") || k == "GNUPGHOME" || k == "SSH_AUTH_SOCK" {
                c.env_remove(k);
            }
        }
        let root = self.root();
        c.env("HOME", root)
            .env("XDG_CONFIG_HOME", root.join(".config"))
            .env("GNUPGHOME", root.join(".gnupg"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", root.join(".gitconfig"))
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .current_dir(root);
        c
    }

    /// `git` run in `dir`, with defaults that keep the user's settings out.
    pub fn git_in<I, S>(&self, dir: &Path, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.cmd("git");
        c.current_dir(dir).args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
            "-c",
            "tag.forceSignAnnotated=false",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
            "-c",
            "advice.detachedHead=false",
        ]);
        c.args(args);
        c
    }

    /// `git` in the work clone.
    pub fn git<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.git_in(&self.work, args)
    }

    /// Run git in the work clone; panic on failure; return stdout trimmed.
    #[track_caller]
    pub fn git_ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_ok(self.git(args), None).stdout.trim().to_string()
    }

    /// Run git in the work clone with stdin; panic on failure.
    #[track_caller]
    pub fn git_stdin<I, S>(&self, args: I, input: &[u8]) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_ok(self.git(args), Some(input))
            .stdout
            .trim()
            .to_string()
    }

    // -- keys ---------------------------------------------------------------

    /// A fresh ed25519 SSH key (`ssh-keygen -t ed25519 -N '' -C name`).
    pub fn ssh_key(&mut self, name: &str) -> Key {
        self.ssh_key_typed(name, &["-t", "ed25519"])
    }

    /// A fresh SSH key of the type `type_args` asks ssh-keygen for, e.g.
    /// `["-t", "ecdsa", "-b", "256"]` or `["-t", "rsa", "-b", "3072"]`.
    pub fn ssh_key_typed(&mut self, name: &str, type_args: &[&str]) -> Key {
        let dir = self.root().join("ssh");
        fs::create_dir_all(&dir).unwrap();
        let private = dir.join(name);
        let mut c = self.cmd("ssh-keygen");
        c.arg("-q")
            .args(type_args)
            .args(["-N", "", "-C", name, "-f"])
            .arg(&private);
        run_ok(c, None);
        let public = fs::read_to_string(private.with_extension("pub"))
            .unwrap()
            .trim()
            .to_string();
        Key::Ssh { public, private }
    }

    /// A fresh OpenPGP key (ed25519, sign-only, 1 year) in its own
    /// GNUPGHOME; its certificate is exported to `keys/<name>.asc` next to
    /// the policy.
    pub fn gpg_key(&mut self, name: &str) -> Key {
        let home = self.root().join(format!("g-{name}"));
        fs::create_dir(&home).unwrap();
        set_mode_700(&home);
        self.gpg_homes.push(home.clone());
        let uid = format!("{name} <{name}@example.com>");
        let mut c = self.gpg(&home);
        c.args([
            "--passphrase",
            "",
            "--quick-gen-key",
            uid.as_str(),
            "ed25519",
            "sign",
            "1y",
        ]);
        run_ok(c, None);
        let mut c = self.gpg(&home);
        c.args(["--with-colons", "--list-secret-keys"]);
        let listing = run_ok(c, None).stdout;
        let fingerprint = listing
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .unwrap_or_else(|| panic!("no fingerprint in:\n{listing}"))
            .to_string();
        let key = Key::OpenPgp {
            home,
            fingerprint,
            cert: format!("keys/{name}.asc"),
        };
        self.export_cert(&key);
        key
    }

    fn gpg(&self, home: &Path) -> Command {
        let mut c = self.cmd("gpg");
        c.env("GNUPGHOME", home)
            .args(["--batch", "--pinentry-mode", "loopback"]);
        c
    }

    /// (Re-)export an OpenPGP certificate to its file next to the policy.
    pub fn export_cert(&self, key: &Key) {
        let Key::OpenPgp {
            home,
            fingerprint,
            cert,
            ..
        } = key
        else {
            panic!("not an OpenPGP key")
        };
        let mut c = self.gpg(home);
        c.args(["--armor", "--export", fingerprint.as_str()]);
        let out = run_ok(c, None);
        assert!(
            out.stdout.contains("BEGIN PGP PUBLIC KEY BLOCK"),
            "empty export:\n{out}"
        );
        fs::write(self.policy_dir.join(cert), out.stdout).unwrap();
    }

    /// Revoke an OpenPGP key in its certificate: import the revocation
    /// certificate gpg wrote at key generation, then re-export the cert.
    pub fn revoke_cert(&self, key: &Key) {
        let Key::OpenPgp {
            home, fingerprint, ..
        } = key
        else {
            panic!("not an OpenPGP key")
        };
        let rev = home
            .join("openpgp-revocs.d")
            .join(format!("{fingerprint}.rev"));
        let text = fs::read_to_string(&rev)
            .unwrap_or_else(|e| panic!("no revocation certificate at {}: {e}", rev.display()));
        // gpg guards the certificate against accidental import with a ':'.
        let text = text.replace(
            ":-----BEGIN PGP PUBLIC KEY BLOCK-----",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----",
        );
        let mut c = self.gpg(home);
        c.arg("--import");
        run_ok(c, Some(text.as_bytes()));
        let mut c = self.gpg(home);
        c.args(["--with-colons", "--list-keys", fingerprint.as_str()]);
        let listing = run_ok(c, None).stdout;
        assert!(
            listing.lines().any(|l| l.starts_with("pub:r:")),
            "the key is not revoked after importing the revocation:\n{listing}"
        );
        self.export_cert(key);
    }

    // -- install --------------------------------------------------------------

    /// Write `text` as the policy file.
    pub fn write_policy(&self, text: &str) {
        fs::write(&self.policy, text).unwrap();
    }

    /// Write the policy and install countersign with it.
    #[track_caller]
    pub fn install(&self, policy_text: &str) {
        self.write_policy(policy_text);
        let out = self.run_install(true);
        assert!(
            out.success,
            "install.sh failed\npolicy:\n{policy_text}\n{out}"
        );
    }

    /// Install without --policy (install.sh writes a starter policy).
    #[track_caller]
    pub fn install_starter(&self) {
        let out = self.run_install(false);
        assert!(out.success, "install.sh failed\n{out}");
    }

    fn run_install(&self, with_policy: bool) -> Out {
        self.run_install_with(with_policy, &[])
    }

    /// Run install.sh on the server (with `--binary`, and `--policy` if
    /// `with_policy`) plus `extra` arguments (e.g. `--chain`); the caller
    /// judges the outcome.
    pub fn run_install_with(&self, with_policy: bool, extra: &[&str]) -> Out {
        let mut c = self.cmd("bash");
        c.arg(source_dir().join("install.sh")).arg(&self.server);
        if with_policy {
            c.arg("--policy").arg(&self.policy);
        }
        c.arg("--binary").arg(BIN);
        c.args(extra);
        run(c, None)
    }

    /// Run the countersign binary with the sandbox environment in `dir`.
    pub fn countersign<I, S>(&self, dir: &Path, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.cmd(BIN);
        c.current_dir(dir).args(args);
        run(c, None)
    }

    /// `countersign policy check --policy <file>`.
    pub fn policy_check(&self, file: &Path) -> Out {
        let mut c = self.cmd(BIN);
        c.args(["policy", "check", "--policy"]).arg(file);
        run(c, None)
    }

    // -- commits and tags ---------------------------------------------------

    /// Change a file and commit it, signed by `signer` (git's own signing)
    /// or unsigned. Returns the new commit id.
    #[track_caller]
    pub fn commit_as(&mut self, signer: Option<&Key>, msg: &str) -> String {
        self.commit_impl(signer, &[], &["-m".to_string(), msg.to_string()], msg)
    }

    /// Like `commit_as`, but the message is raw bytes (any encoding), given
    /// to git with `-F <file>`; `config` are extra `git -c` settings, e.g.
    /// `["i18n.commitEncoding=latin1"]`.
    #[track_caller]
    pub fn commit_message_bytes(
        &mut self,
        signer: Option<&Key>,
        message: &[u8],
        config: &[&str],
    ) -> String {
        let file = self.root().join(format!("msg-{}", self.seq + 1));
        fs::write(&file, message).unwrap();
        let config: Vec<String> = config
            .iter()
            .flat_map(|c| ["-c".to_string(), c.to_string()])
            .collect();
        let args = ["-F".to_string(), file.display().to_string()];
        self.commit_impl(signer, &config, &args, "raw message")
    }

    #[track_caller]
    fn commit_impl(
        &mut self,
        signer: Option<&Key>,
        config: &[String],
        msg_args: &[String],
        msg: &str,
    ) -> String {
        self.seq += 1;
        let file = self.work.join("file.txt");
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .unwrap();
        writeln!(f, "{} {msg}", self.seq).unwrap();
        drop(f);
        self.git_ok(["add", "file.txt"]);
        let mut args: Vec<String> = config.to_vec();
        match signer {
            Some(key) => {
                args.extend(key.sign_config());
                args.extend(["commit".into(), "-q".into(), "-S".into()]);
            }
            None => args.extend(["commit".into(), "-q".into(), "--no-gpg-sign".into()]),
        }
        args.extend(msg_args.iter().cloned());
        let mut c = self.git(&args);
        if let Some(Key::OpenPgp { home, .. }) = signer {
            c.env("GNUPGHOME", home);
        }
        run_ok(c, None);
        let id = self.rev("HEAD");
        if signer.is_some() {
            let raw = self.cat_commit(&id);
            // SHA-256 repositories sign into `gpgsig-sha256`.
            assert!(
                raw.contains("\ngpgsig ") || raw.contains("\ngpgsig-sha256 "),
                "git did not sign the commit:\n{raw}"
            );
        }
        id
    }

    /// Make an annotated tag, signed by `signer` or not, on HEAD.
    /// `force` replaces an existing local tag. Returns the tag object id.
    #[track_caller]
    pub fn tag_as(&mut self, signer: Option<&Key>, name: &str, msg: &str, force: bool) -> String {
        let mut args: Vec<String> = Vec::new();
        if let Some(key) = signer {
            args.extend(key.sign_config());
        }
        args.push("tag".into());
        if force {
            args.push("-f".into());
        }
        args.push(if signer.is_some() {
            "-s".into()
        } else {
            "-a".into()
        });
        args.extend(["-m".into(), msg.into(), name.into()]);
        let mut c = self.git(&args);
        if let Some(Key::OpenPgp { home, .. }) = signer {
            c.env("GNUPGHOME", home);
        }
        run_ok(c, None);
        self.rev(&format!("refs/tags/{name}"))
    }

    /// The id of `rev` in the work clone.
    #[track_caller]
    pub fn rev(&self, rev: &str) -> String {
        self.git_ok(["rev-parse", "--verify", rev])
    }

    /// The raw commit object.
    #[track_caller]
    pub fn cat_commit(&self, id: &str) -> String {
        run_ok(self.git(["cat-file", "commit", id]), None).stdout
    }

    /// Write a raw commit object; returns its id.
    #[track_caller]
    pub fn write_commit(&self, raw: &str) -> String {
        self.git_stdin(
            ["hash-object", "-t", "commit", "-w", "--stdin"],
            raw.as_bytes(),
        )
    }

    /// Point the current branch (and the work tree) at `id`.
    #[track_caller]
    pub fn reset_hard(&self, id: &str) {
        self.git_ok(["reset", "-q", "--hard", id]);
    }

    /// Sign `payload` with `ssh-keygen -Y sign -n <namespace>`; returns the
    /// armored signature.
    #[track_caller]
    pub fn ssh_sign(&self, key: &Key, namespace: &str, payload: &[u8]) -> String {
        let Key::Ssh { private, .. } = key else {
            panic!("not an SSH key")
        };
        let mut c = self.cmd("ssh-keygen");
        c.args(["-q", "-Y", "sign", "-n", namespace, "-f"])
            .arg(private);
        let out = run_ok(c, Some(payload));
        assert!(
            out.stdout.contains("BEGIN SSH SIGNATURE"),
            "no signature:\n{out}"
        );
        out.stdout
    }

    // -- pushing and the server -------------------------------------------

    /// `git push origin <args...>` from the work clone.
    pub fn push(&self, args: &[&str]) -> Out {
        let mut all = vec!["push", "origin"];
        all.extend_from_slice(args);
        run(self.git(all), None)
    }

    /// Run git in the server repository; panic on failure; stdout trimmed.
    #[track_caller]
    pub fn server_git_ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_ok(self.git_in(&self.server, args), None)
            .stdout
            .trim()
            .to_string()
    }

    /// The server's value of `refname`, or None if it does not exist.
    pub fn server_ref(&self, refname: &str) -> Option<String> {
        let out = run(
            self.git_in(&self.server, ["rev-parse", "--verify", "-q", refname]),
            None,
        );
        if out.success {
            Some(out.stdout.trim().to_string())
        } else {
            None
        }
    }

    /// Assert that the server's `refname` is `expected` (None: absent).
    #[track_caller]
    pub fn assert_server_ref(&self, refname: &str, expected: Option<&str>) {
        let actual = self.server_ref(refname);
        assert_eq!(
            actual.as_deref(),
            expected,
            "server ref {refname}: expected {expected:?}, found {actual:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Commit object surgery
// ---------------------------------------------------------------------------

/// Split a raw commit into (payload without the `gpgsig` header, signature).
pub fn split_gpgsig(raw: &str) -> (String, Option<String>) {
    let (headers, body) = raw.split_once("\n\n").unwrap_or((raw, ""));
    let mut kept = Vec::new();
    let mut sig: Option<String> = None;
    let mut in_sig = false;
    for line in headers.lines() {
        if let Some(rest) = line.strip_prefix("gpgsig ") {
            sig = Some(format!("{rest}\n"));
            in_sig = true;
        } else if in_sig && line.starts_with(' ') {
            let s = sig.as_mut().unwrap();
            s.push_str(&line[1..]);
            s.push('\n');
        } else {
            in_sig = false;
            kept.push(line);
        }
    }
    (format!("{}\n\n{body}", kept.join("\n")), sig)
}

/// Insert `sig` as a `gpgsig` header at the end of the headers of `payload`
/// (a commit without a signature), as git does.
pub fn insert_gpgsig(payload: &str, sig: &str) -> String {
    let (headers, body) = payload
        .split_once("\n\n")
        .expect("commit without a blank line");
    let mut header = String::from("gpgsig");
    for (i, line) in sig.trim_end_matches('\n').split('\n').enumerate() {
        if i > 0 {
            header.push('\n');
        }
        header.push(' ');
        header.push_str(line);
    }
    format!("{headers}\n{header}\n\n{body}")
}

/// A signed commit with its `gpgsig` header written twice (both copies at
/// the end of the headers, one after the other).
pub fn duplicate_gpgsig(raw: &str) -> String {
    let (payload, sig) = split_gpgsig(raw);
    let sig = sig.expect("the commit is not signed");
    insert_gpgsig(&insert_gpgsig(&payload, &sig), &sig)
}

// ---------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------

/// The push succeeded and countersign said it accepted it.
#[track_caller]
pub fn assert_accepted(out: &Out) {
    assert!(out.success, "expected the push to be accepted\n{out}");
    assert!(
        out.stderr.contains("countersign: accepted"),
        "push succeeded but countersign did not report `countersign: accepted` (did the hook run?)\n{out}"
    );
    assert!(
        !out.stderr.contains("error["),
        "accepted push reported an error\n{out}"
    );
}

/// The push was rejected by countersign with an `error[<code>]` line.
#[track_caller]
pub fn assert_rejected_with(out: &Out, code: &str) {
    assert!(
        !out.success,
        "expected the push to be rejected with error[{code}]\n{out}"
    );
    let needle = format!("error[{code}]");
    assert!(
        out.stderr.contains(&needle),
        "the push was rejected, but without `{needle}`\n{out}"
    );
    assert!(
        out.stderr.contains("countersign: push rejected"),
        "the rejection does not say `countersign: push rejected`\n{out}"
    );
}

#[cfg(unix)]
fn set_mode_700(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(0o700)).unwrap();
}

#[cfg(not(unix))]
fn set_mode_700(_p: &Path) {}

/// Remove all whitespace (for matching JSON without a JSON parser; the
/// values compared contain none).
pub fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

// ---------------------------------------------------------------------------
// Approvals and merges: per-person clones, signing config, trailers
// ---------------------------------------------------------------------------

impl Key {
    /// The git config settings (`gpg.format`, `user.signingkey`) that make
    /// git, and `countersign approve`, sign with this key. countersign reads
    /// them through libgit2, which does not see `git -c`: write them with
    /// `git config` (see `Sandbox::set_signer`).
    pub fn signing_settings(&self) -> Vec<(String, String)> {
        match self {
            Key::Ssh { private, .. } => vec![
                ("gpg.format".into(), "ssh".into()),
                ("user.signingkey".into(), private.display().to_string()),
            ],
            Key::OpenPgp { fingerprint, .. } => vec![
                ("gpg.format".into(), "openpgp".into()),
                ("user.signingkey".into(), fingerprint.clone()),
            ],
        }
    }

    /// The GNUPGHOME holding the secret key (OpenPGP keys only).
    pub fn gnupghome(&self) -> Option<&Path> {
        match self {
            Key::OpenPgp { home, .. } => Some(home),
            Key::Ssh { .. } => None,
        }
    }

    /// `git -c` arguments that make git sign with this key.
    pub fn sign_args(&self) -> Vec<String> {
        self.sign_config()
    }
}

impl Sandbox {
    /// Run git in `dir` (sandbox environment, `GNUPGHOME` of `key` if it is
    /// an OpenPGP key); the caller judges the outcome.
    pub fn git_out_in<I, S>(&self, dir: &Path, key: Option<&Key>, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.git_in(dir, args);
        if let Some(home) = key.and_then(Key::gnupghome) {
            c.env("GNUPGHOME", home);
        }
        run(c, None)
    }

    /// Run git in `dir`; panic on failure; stdout trimmed.
    #[track_caller]
    pub fn git_ok_in<I, S>(&self, dir: &Path, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_ok(self.git_in(dir, args), None)
            .stdout
            .trim()
            .to_string()
    }

    /// Run git in `dir` with `input` on stdin; panic on failure; stdout trimmed.
    #[track_caller]
    pub fn git_stdin_in(&self, dir: &Path, args: &[&str], input: &[u8]) -> String {
        run_ok(self.git_in(dir, args), Some(input))
            .stdout
            .trim()
            .to_string()
    }

    /// Write `key`'s signing settings into the git config of the clone at
    /// `dir` (`.git/config`), so that both git and countersign use it.
    #[track_caller]
    pub fn set_signer(&self, dir: &Path, key: &Key) {
        for (k, v) in key.signing_settings() {
            self.git_ok_in(dir, ["config", k.as_str(), v.as_str()]);
        }
    }

    /// A clone of the server at `<root>/c-<name>`, for one person: user
    /// name and e-mail, `key` as its signing key, and `countersign.policy`
    /// pointing at the sandbox policy. Returns its path.
    #[track_caller]
    pub fn clone_for(&self, name: &str, email: &str, key: &Key) -> PathBuf {
        let dir = self.root().join(format!("c-{name}"));
        let url = format!("file://{}", self.server.display());
        run_ok(
            self.git_in(
                self.root(),
                ["clone", "-q", url.as_str(), dir.to_str().unwrap()],
            ),
            None,
        );
        self.git_ok_in(&dir, ["config", "user.name", name]);
        self.git_ok_in(&dir, ["config", "user.email", email]);
        self.git_ok_in(
            &dir,
            [
                "config",
                "countersign.policy",
                self.policy.to_str().unwrap(),
            ],
        );
        self.set_signer(&dir, key);
        dir
    }

    /// Append a line to `file` in the clone at `dir`, and commit it, signed
    /// by `key` (given to git with `-c`) or unsigned. Returns the commit id.
    #[track_caller]
    pub fn commit_in(&self, dir: &Path, key: Option<&Key>, file: &str, msg: &str) -> String {
        let path = dir.join(file);
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        writeln!(f, "{msg}").unwrap();
        drop(f);
        self.git_ok_in(dir, ["add", file]);
        let mut args: Vec<String> = Vec::new();
        match key {
            Some(k) => {
                args.extend(k.sign_config());
                args.extend(["commit".into(), "-q".into(), "-S".into()]);
            }
            None => args.extend(["commit".into(), "-q".into(), "--no-gpg-sign".into()]),
        }
        args.extend(["-m".into(), msg.into()]);
        let out = self.git_out_in(dir, key, &args);
        assert!(out.success, "commit failed in {}\n{out}", dir.display());
        self.git_ok_in(dir, ["rev-parse", "HEAD"])
    }

    /// Run countersign in `dir` with the sandbox environment, and
    /// `GNUPGHOME` of `key` when it is an OpenPGP key (countersign runs gpg,
    /// and git, as children).
    pub fn countersign_as<I, S>(&self, dir: &Path, key: &Key, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.cmd(BIN);
        c.current_dir(dir).args(args);
        if let Some(home) = key.gnupghome() {
            c.env("GNUPGHOME", home);
        }
        run(c, None)
    }

    /// In the clone at `dir`, on the current branch, make a merge commit of
    /// `revs` with `git merge --no-ff -S -F <file>` signed by `key`, with
    /// `message` as the whole message. Returns the merge id.
    #[track_caller]
    pub fn merge_in(&self, dir: &Path, key: &Key, revs: &[&str], message: &str) -> String {
        let file = self.write_message(message);
        let mut args = key.sign_config();
        args.extend(["merge", "-q", "--no-ff", "-S", "-F"].map(String::from));
        args.push(file.display().to_string());
        args.extend(revs.iter().map(|r| r.to_string()));
        let out = self.git_out_in(dir, Some(key), &args);
        assert!(out.success, "git merge failed in {}\n{out}", dir.display());
        self.git_ok_in(dir, ["rev-parse", "HEAD"])
    }

    /// Commit what is staged in `dir` (e.g. a merge in progress) signed by
    /// `key`, with `message`; `extra` are more `git commit` arguments (e.g.
    /// `--amend`). Returns HEAD.
    #[track_caller]
    pub fn commit_staged_in(&self, dir: &Path, key: &Key, message: &str, extra: &[&str]) -> String {
        let file = self.write_message(message);
        let mut args = key.sign_config();
        args.extend(["commit", "-q", "-S"].map(String::from));
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["-F".to_string(), file.display().to_string()]);
        let out = self.git_out_in(dir, Some(key), &args);
        assert!(out.success, "git commit failed in {}\n{out}", dir.display());
        self.git_ok_in(dir, ["rev-parse", "HEAD"])
    }

    /// Write a message file under the sandbox root; returns its path.
    pub fn write_message(&self, message: &str) -> PathBuf {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let file = self.root().join(format!("merge-msg-{n}"));
        fs::write(&file, message).unwrap();
        file
    }
}

/// A merge message whose last paragraph holds the trailers (git reads only
/// that paragraph as trailers).
pub fn merge_message(subject: &str, trailers: &[String]) -> String {
    let mut m = format!("{subject}\n");
    if !trailers.is_empty() {
        m.push('\n');
        for t in trailers {
            m.push_str(t);
            m.push('\n');
        }
    }
    m
}

/// The `Countersign-Approval:` line `countersign approve` printed.
#[track_caller]
pub fn trailer_of(out: &Out) -> String {
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("Countersign-Approval: "))
        .collect();
    assert_eq!(lines.len(), 1, "expected one trailer line on stdout\n{out}");
    lines[0].to_string()
}

/// The value of `field` (e.g. `sig`) in an approval trailer.
#[track_caller]
pub fn trailer_field(trailer: &str, field: &str) -> String {
    let prefix = format!("{field}=");
    trailer
        .split_ascii_whitespace()
        .find_map(|f| f.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no `{field}=` in {trailer}"))
        .to_string()
}

/// The trailer with `field`'s value replaced.
#[track_caller]
pub fn with_trailer_field(trailer: &str, field: &str, value: &str) -> String {
    let old = format!("{field}={}", trailer_field(trailer, field));
    assert_eq!(trailer.matches(old.as_str()).count(), 1, "{trailer}");
    trailer.replace(old.as_str(), &format!("{field}={value}"))
}

/// The base64 body of an ASCII-armored SSH signature, on one line.
pub fn armor_body(armored: &str) -> String {
    armored
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect()
}

/// Armor base64 as an SSH signature, 70 columns, as ssh-keygen writes it.
pub fn ssh_armor(b64: &str) -> String {
    let mut out = String::from("-----BEGIN SSH SIGNATURE-----\n");
    for chunk in b64.as_bytes().chunks(70) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str("-----END SSH SIGNATURE-----\n");
    out
}

/// Every `error[<code>]` code in `text`, in order.
pub fn error_codes(text: &str) -> Vec<String> {
    text.match_indices("error[")
        .filter_map(|(i, _)| {
            let rest = &text[i + "error[".len()..];
            rest.find(']').map(|end| rest[..end].to_string())
        })
        .collect()
}

/// The command exited with `code` and reported `error[<finding>]`.
#[track_caller]
pub fn assert_refused_with(out: &Out, code: i32, finding: &str) {
    assert_eq!(out.code, Some(code), "expected exit {code}\n{out}");
    let needle = format!("error[{finding}]");
    assert!(
        out.all().contains(&needle),
        "expected `{needle}` in the output\n{out}"
    );
}

/// A policy whose `main` takes approved merges: roles developer, reviewer,
/// security and maintainer; `people` (policy text), commit signers developer
/// or maintainer, history up to `base` grandfathered, merges signed by a
/// maintainer, and `merge` (more `[rule.merge]` lines, e.g. `approvals`).
pub fn merge_rule_policy(id: &str, people: &str, base: &str, merge: &str) -> String {
    format!(
        r#"[repository]
id = "{id}"

[roles]
developer = "writes code"
reviewer = "reviews changes"
security = "reviews security"
maintainer = "merges and ships"

{people}
[[rule]]
name = "main"
refs = ["refs/heads/main"]
commit-signers = ["developer", "maintainer"]
baseline = "{base}"

[rule.merge]
signers = ["maintainer"]
{merge}
"#
    )
}
