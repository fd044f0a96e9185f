//! The admin commands: `people`, `keys` and `roles`.
//!
//! Each command reads the policy under an exclusive lock, lets
//! `countersign::admin` compute the new text (which it has validated),
//! writes it atomically (temp file in the same directory, fsync, rename)
//! and appends a `policy-change` record to the audit log. This module must
//! never write a policy that does not validate, never change the policy
//! without recording the change (no audit log: no change; a record that
//! cannot be written undoes the change), and never copy secret key
//! material next to the policy.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use sequoia_openpgp::serialize::SerializeInto;

use countersign::admin::store::{self, Fail, StoreError};
use countersign::admin::{self, AdminError, CertSource, Change};
use countersign::policy::keys;
use countersign::{audit, hook, report, sanitize, time};

use crate::cli::Exit;

/// Options every admin command takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Policy file (default: git config `countersign.policy` of the
    /// repository found from GIT_DIR or the current directory, else
    /// `$GIT_DIR/countersign.toml`).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Who makes the change, for the audit log (default: the OS user).
    #[arg(long, value_name = "NAME")]
    pub actor: Option<String>,
    /// Audit log that records the change (default: the repository's,
    /// git config `countersign.auditLog`, else `$GIT_DIR/countersign/audit.log`).
    #[arg(long = "audit-log", value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Where the policy lives on refs/meta/countersign (a trust root is
    /// pinned): make the change a signed proposal
    /// refs/countersign/proposals/NAME on top of the policy ref, for other
    /// admins to approve (`countersign policy apply NAME` lands it).
    #[arg(long, value_name = "NAME", conflicts_with = "policy")]
    pub propose: Option<String>,
    /// With --propose: share the proposal with this remote.
    #[arg(long, value_name = "REMOTE", requires = "propose")]
    pub push: Option<String>,
}

/// The policy ref's files written out for one command (policy ref mode),
/// removed again when dropped.
struct Checkout {
    dir: PathBuf,
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Checkout {
    fn file(&self) -> PathBuf {
        self.dir.join(countersign::governance::POLICY_FILE)
    }
}

/// In policy ref mode (a trust root pinned, no `--policy`), the policy
/// ref's files in a fresh directory under `$GIT_DIR/countersign/`.
fn ref_checkout(
    common: &Common,
    repo: Option<&git2::Repository>,
) -> Result<Option<Checkout>, Exit> {
    use countersign::governance::{self, store as gstore, POLICY_REF};
    let Some(repo) = repo.filter(|_| common.policy.is_none()) else {
        return Ok(None);
    };
    match governance::pinned_root(repo) {
        Ok(Some(root)) => {
            governance::in_force(
                repo,
                root,
                countersign::time::now(),
                std::time::Instant::now(),
            )
            .map_err(|f| usage(&f.admin_message(), &f.help))?;
        }
        Ok(None) => return Ok(None),
        Err(f) => return Err(usage(&f.admin_message(), &f.help)),
    }
    let tip = repo.refname_to_id(POLICY_REF).map_err(|_| {
        usage(
            &format!("a trust root is pinned but there is no `{POLICY_REF}` here"),
            &format!("fetch it: `git fetch origin {POLICY_REF}:{POLICY_REF}`"),
        )
    })?;
    let dir = repo
        .path()
        .join(format!("countersign/checkout-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let checkout = Checkout { dir };
    gstore::materialize(repo, tip, &checkout.dir)
        .map_err(|e| usage(&e.to_string(), "check that the repository is writable"))?;
    Ok(Some(checkout))
}

/// Output format of the list commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// One line per entry.
    Text,
    /// A JSON array.
    Json,
}

/// `countersign people ...`
#[derive(Debug, Subcommand)]
pub enum PeopleAction {
    /// Add a person (with no keys yet).
    Add {
        /// Person id: a-z, A-Z, 0-9, `-`, `_`.
        id: String,
        /// Display name (for humans only).
        #[arg(long)]
        name: Option<String>,
        /// A role to grant (repeatable); it must be declared in [roles].
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Remove a person; refused while they hold keys, unless --with-keys.
    Remove {
        /// Person id.
        id: String,
        /// Remove their keys too.
        #[arg(long)]
        with_keys: bool,
        #[command(flatten)]
        common: Common,
    },
    /// List people, their roles and how many keys they hold.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
        #[command(flatten)]
        common: Common,
    },
}

/// `countersign keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Give a person a key: an SSH public key line, or an OpenPGP
    /// certificate file (copied to `keys/` next to the policy unless it is
    /// already under the policy's directory).
    Add {
        /// Person id.
        person: String,
        /// The OpenSSH public key line, e.g. "$(cat ~/.ssh/id_ed25519.pub)".
        #[arg(
            long,
            value_name = "PUBLIC KEY",
            required_unless_present = "openpgp",
            conflicts_with = "openpgp"
        )]
        ssh: Option<String>,
        /// A public OpenPGP certificate file (`gpg --armor --export ...`).
        #[arg(long, value_name = "FILE")]
        openpgp: Option<PathBuf>,
        /// The key is not accepted from this date on (2027-06-30, 00:00 UTC).
        #[arg(long, value_name = "DATE")]
        expires: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Retire a key: new pushes signed with it are rejected from DATE on;
    /// `verify` still accepts what it signed before.
    Retire {
        /// Person id.
        person: String,
        /// `SHA256:...` (SSH) or the certificate fingerprint or key id (OpenPGP).
        fingerprint: String,
        /// Retirement date (default: today, UTC).
        #[arg(long, value_name = "DATE")]
        at: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Remove a key from a person (a certificate file is left in place).
    Remove {
        /// Person id.
        person: String,
        /// `SHA256:...` (SSH) or the certificate fingerprint or key id (OpenPGP).
        fingerprint: String,
        #[command(flatten)]
        common: Common,
    },
    /// List every key: person, type, fingerprint, dates, source.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
        #[command(flatten)]
        common: Common,
    },
    /// Import keys from git's allowed-signers file or from OpenPGP
    /// certificates, mapping each principal (or User ID e-mail) to a person:
    /// --map, else the existing person named like the local part, else a new
    /// person with no roles.
    Import {
        /// A `gpg.ssh.allowedSignersFile`.
        #[arg(
            long = "allowed-signers",
            value_name = "FILE",
            required_unless_present = "openpgp",
            conflicts_with = "openpgp"
        )]
        allowed_signers: Option<PathBuf>,
        /// A certificate file, or a directory: every .asc, .gpg and .pgp file in it.
        #[arg(long, value_name = "FILE-OR-DIR")]
        openpgp: Option<PathBuf>,
        /// Map a principal (or e-mail, or OpenPGP fingerprint) to a person (repeatable).
        #[arg(long = "map", value_name = "PRINCIPAL=PERSON")]
        map: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
}

/// `countersign roles ...`
#[derive(Debug, Subcommand)]
pub enum RolesAction {
    /// Grant a declared role to a person.
    Grant {
        /// Person id.
        person: String,
        /// Role (declared in [roles]).
        role: String,
        #[command(flatten)]
        common: Common,
    },
    /// Take a role from a person.
    Revoke {
        /// Person id.
        person: String,
        /// Role.
        role: String,
        #[command(flatten)]
        common: Common,
    },
    /// Declare a new role in [roles].
    Add {
        /// Role name: a-z, A-Z, 0-9, `-`, `_`.
        role: String,
        /// What the role is for.
        #[arg(long, value_name = "TEXT")]
        description: String,
        #[command(flatten)]
        common: Common,
    },
    /// List roles, their descriptions and who holds them.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
        #[command(flatten)]
        common: Common,
    },
}

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

/// Run a `people` command.
pub fn people(action: PeopleAction) -> Exit {
    match action {
        PeopleAction::Add {
            id,
            name,
            roles,
            common,
        } => apply(&common, "people add", |text, dir, _| {
            Ok(admin::add_person(text, dir, &id, name.as_deref(), &roles)?)
        }),
        PeopleAction::Remove {
            id,
            with_keys,
            common,
        } => apply(&common, "people remove", |text, dir, _| {
            Ok(admin::remove_person(text, dir, &id, with_keys)?)
        }),
        PeopleAction::List { format, common } => list(&common, |text, dir| {
            let people = admin::people(text, dir)?;
            Ok(match format {
                ListFormat::Json => json(&people),
                ListFormat::Text => people
                    .iter()
                    .map(|p| {
                        let mut fields = vec![
                            p.id.clone(),
                            if p.name.is_empty() {
                                "-".to_string()
                            } else {
                                p.name.clone()
                            },
                            format!(
                                "roles: {}",
                                if p.roles.is_empty() {
                                    "none".to_string()
                                } else {
                                    p.roles.join(", ")
                                }
                            ),
                            format!("keys: {}", p.keys),
                        ];
                        if let Some(d) = &p.expires {
                            fields.push(format!("expires {d}"));
                        }
                        if let Some(d) = &p.revoked {
                            fields.push(format!("revoked {d}"));
                        }
                        tabbed(&fields)
                    })
                    .collect(),
            })
        }),
    }
}

/// Run a `roles` command.
pub fn roles(action: RolesAction) -> Exit {
    match action {
        RolesAction::Grant {
            person,
            role,
            common,
        } => apply(&common, "roles grant", |text, dir, _| {
            Ok(admin::grant_role(text, dir, &person, &role)?)
        }),
        RolesAction::Revoke {
            person,
            role,
            common,
        } => apply(&common, "roles revoke", |text, dir, _| {
            Ok(admin::revoke_role(text, dir, &person, &role)?)
        }),
        RolesAction::Add {
            role,
            description,
            common,
        } => apply(&common, "roles add", |text, dir, _| {
            Ok(admin::add_role(text, dir, &role, &description)?)
        }),
        RolesAction::List { format, common } => list(&common, |text, dir| {
            let roles = admin::list_roles(text, dir)?;
            Ok(match format {
                ListFormat::Json => {
                    let v: Vec<serde_json::Value> = roles
                        .iter()
                        .map(|(r, d, h)| serde_json::json!({ "role": r, "description": d, "people": h }))
                        .collect();
                    json(&v)
                }
                ListFormat::Text => roles
                    .iter()
                    .map(|(r, d, h)| {
                        sanitize::escape(&format!(
                            "{r}: {d} (held by: {})",
                            if h.is_empty() {
                                "nobody".to_string()
                            } else {
                                h.join(", ")
                            }
                        ))
                    })
                    .collect(),
            })
        }),
    }
}

/// Run a `keys` command.
pub fn keys(action: KeysAction) -> Exit {
    match action {
        KeysAction::Add {
            person,
            ssh,
            openpgp,
            expires,
            common,
        } => {
            let expires = match expires.map(|d| admin::parse_date(&d)).transpose() {
                Ok(d) => d,
                Err(e) => {
                    return usage(
                        &e.to_string(),
                        "give --expires as 2027-06-30 or 2027-06-30T12:00:00Z",
                    )
                }
            };
            match (ssh, openpgp) {
                (Some(line), None) => apply(&common, "keys add", |text, dir, _| {
                    Ok(admin::add_ssh_key(text, dir, &person, &line, expires)?)
                }),
                (None, Some(file)) => add_openpgp(&common, &person, &file, expires),
                _ => usage(
                    "give exactly one of --ssh and --openpgp",
                    "`countersign keys add PERSON --ssh \"ssh-ed25519 AAAA...\"` or `--openpgp FILE`",
                ),
            }
        }
        KeysAction::Retire {
            person,
            fingerprint,
            at,
            common,
        } => {
            let at = match at {
                Some(d) => admin::parse_date(&d),
                None => admin::today(time::now()),
            };
            let at = match at {
                Ok(d) => d,
                Err(e) => {
                    return usage(
                        &e.to_string(),
                        "give --at as 2027-06-30 or 2027-06-30T12:00:00Z",
                    )
                }
            };
            apply(&common, "keys retire", |text, dir, _| {
                Ok(admin::retire_key(text, dir, &person, &fingerprint, at)?)
            })
        }
        KeysAction::Remove {
            person,
            fingerprint,
            common,
        } => apply(&common, "keys remove", |text, dir, _| {
            Ok(admin::remove_key(text, dir, &person, &fingerprint)?)
        }),
        KeysAction::List { format, common } => list(&common, |text, dir| {
            let keys = admin::list_keys(text, dir)?;
            Ok(match format {
                ListFormat::Json => json(&keys),
                ListFormat::Text => keys
                    .iter()
                    .map(|k| {
                        let mut fields =
                            vec![k.person.clone(), k.kind.clone(), k.fingerprint.clone()];
                        for (what, d) in [
                            ("expires", &k.expires),
                            ("revoked", &k.revoked),
                            ("retired", &k.retired),
                        ] {
                            if let Some(d) = d {
                                fields.push(format!("{what} {d}"));
                            }
                        }
                        fields.push(k.source.clone());
                        tabbed(&fields)
                    })
                    .collect(),
            })
        }),
        KeysAction::Import {
            allowed_signers,
            openpgp,
            map,
            common,
        } => {
            let mut mapping = BTreeMap::new();
            for m in &map {
                match m.split_once('=') {
                    Some((p, person)) if !p.trim().is_empty() && admin::valid_name(person.trim()) => {
                        mapping.insert(p.trim().to_string(), person.trim().to_string());
                    }
                    _ => {
                        return usage(
                            &format!("`--map {}` is not PRINCIPAL=PERSON", sanitize::escape(m)),
                            "e.g. `--map alice@example.com=alice`; a person id uses only a-z, A-Z, 0-9, `-` and `_`",
                        )
                    }
                }
            }
            match (allowed_signers, openpgp) {
                (Some(file), None) => {
                    let signers =
                        match fs::read_to_string(&file) {
                            Ok(s) => s,
                            Err(e) => return usage(
                                &format!("cannot read `{}`: {e}", file.display()),
                                "pass the file named by `git config gpg.ssh.allowedSignersFile`",
                            ),
                        };
                    apply(&common, "keys import", |text, dir, _| {
                        Ok(admin::import_allowed_signers(
                            text, dir, &signers, &mapping,
                        )?)
                    })
                }
                (None, Some(path)) => import_openpgp(&common, &path, &mapping),
                _ => usage(
                    "give exactly one of --allowed-signers and --openpgp",
                    "`countersign keys import --allowed-signers FILE` or `--openpgp FILE-OR-DIR`",
                ),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// OpenPGP files
// ---------------------------------------------------------------------------

fn add_openpgp(
    common: &Common,
    person: &str,
    file: &Path,
    expires: Option<toml_edit::Datetime>,
) -> Exit {
    if !admin::valid_name(person) {
        return refuse(
            &format!("`{}` is not a valid person id", sanitize::escape(person)),
            "see `countersign people list`",
        );
    }
    let certs = match keys::read_certs(file) {
        Ok(c) => c,
        Err(e) => {
            return refuse(
                &format!("cannot use `{}`: {e}", file.display()),
                "export the public certificate with `gpg --armor --export KEYID > FILE`",
            )
        }
    };
    apply(common, "keys add", |text, dir, created| {
        let rel = match relative_under(file, dir) {
            Some(rel) => rel,
            None => {
                let [cert] = certs.as_slice() else {
                    return Err(Fail::Refused(AdminError::Refused {
                        message: format!(
                            "`{}` holds {} certificates",
                            file.display(),
                            certs.len()
                        ),
                        help: "add them one at a time, or use `countersign keys import --openpgp FILE`".into(),
                    }));
                };
                let rel = format!("keys/{person}-{}.asc", admin::fpr16(cert));
                store_cert(dir, &rel, cert, created).map_err(|e| {
                    Fail::Error(e, "check that the policy directory is writable".into())
                })?;
                rel
            }
        };
        Ok(admin::add_openpgp_cert(
            text, dir, person, &rel, &certs, expires,
        )?)
    })
}

/// `file` relative to `dir` (as `a/b.asc`), if it lies under it.
fn relative_under(file: &Path, dir: &Path) -> Option<String> {
    let file = fs::canonicalize(file).ok()?;
    let dir = fs::canonicalize(dir).ok()?;
    let rel = file.strip_prefix(&dir).ok()?;
    let parts: Option<Vec<&str>> = rel
        .components()
        .map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    let parts = parts?;
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

/// Write `cert` (armored, public parts only) to `dir/rel` unless the same
/// bytes are already there; remember files it created.
fn store_cert(
    dir: &Path,
    rel: &str,
    cert: &sequoia_openpgp::Cert,
    created: &mut Vec<PathBuf>,
) -> Result<(), String> {
    if cert.is_tsk() {
        return Err("the certificate holds secret key material".into());
    }
    let bytes = cert
        .armored()
        .to_vec()
        .map_err(|e| format!("cannot serialize the certificate: {e}"))?;
    let path = dir.join(rel);
    match fs::read(&path) {
        Ok(existing) if existing == bytes => return Ok(()),
        Ok(_) => {
            return Err(format!(
            "`{}` already exists with other content; move it away first, or add that file itself",
            path.display()
        ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read `{}`: {e}", path.display())),
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
    }
    store::write_atomic(&path, &bytes, None)
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    created.push(path);
    Ok(())
}

fn import_openpgp(common: &Common, path: &Path, map: &BTreeMap<String, String>) -> Exit {
    let files: Vec<PathBuf> = if path.is_dir() {
        let entries = match fs::read_dir(path) {
            Ok(e) => e,
            Err(e) => {
                return usage(
                    &format!("cannot read `{}`: {e}", path.display()),
                    "pass a readable directory",
                )
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        ["asc", "gpg", "pgp"].contains(&e.to_ascii_lowercase().as_str())
                    })
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return refuse(
                &format!("`{}` holds no .asc, .gpg or .pgp file", path.display()),
                "export certificates with `gpg --armor --export KEYID > NAME.asc`",
            );
        }
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut certs = Vec::new();
    let mut errors = Vec::new();
    for f in &files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| f.display().to_string());
        match keys::read_certs(f) {
            Ok(cs) => certs.extend(cs.into_iter().map(|cert| CertSource {
                source: name.clone(),
                cert,
            })),
            Err(e) => errors.push(format!("{}: {e}", f.display())),
        }
    }
    if !errors.is_empty() {
        return refuse(
            &format!("nothing was imported:\n  {}", errors.join("\n  ")),
            "export public certificates with `gpg --armor --export KEYID`",
        );
    }
    apply(common, "keys import", |text, dir, created| {
        let mut store = |person: &str, cert: &sequoia_openpgp::Cert| -> Result<String, String> {
            let rel = format!("keys/{person}-{}.asc", admin::fpr16(cert));
            store_cert(dir, &rel, cert, created)?;
            Ok(rel)
        };
        Ok(admin::import_openpgp(text, dir, &certs, map, &mut store)?)
    })
}

// ---------------------------------------------------------------------------
// The transaction: lock, edit, write, record
// ---------------------------------------------------------------------------

fn error(msg: &str, help: &str) {
    crate::cli::print_error(msg, Some(help));
}

fn usage(msg: &str, help: &str) -> Exit {
    error(msg, help);
    Exit::Error
}

fn refuse(msg: &str, help: &str) -> Exit {
    error(msg, help);
    Exit::Rejected
}

/// Fields escaped for the terminal, joined by tabs.
fn tabbed(fields: &[String]) -> String {
    let escaped: Vec<String> = fields.iter().map(|f| sanitize::escape(f)).collect();
    escaped.join("\t")
}

fn json<T: serde::Serialize>(v: &T) -> Vec<String> {
    match serde_json::to_string_pretty(v) {
        Ok(s) => vec![s],
        Err(e) => vec![format!("{{\"error\": \"{e}\"}}")],
    }
}

fn report_admin_error(e: &AdminError, policy: &Path) -> Exit {
    match e {
        AdminError::Refused { message, help } => refuse(message, help),
        AdminError::InvalidBefore(problems) => {
            for p in problems {
                eprint!("{}", p.render(policy));
            }
            refuse(
                &format!(
                    "the policy `{}` already has {} problem(s); nothing was changed",
                    policy.display(),
                    problems.len()
                ),
                &format!(
                    "fix them by hand first: `countersign policy check --policy {}`",
                    policy.display()
                ),
            )
        }
        AdminError::InvalidAfter(problems) => {
            let edited = PathBuf::from(format!("{} (edited)", policy.display()));
            for p in problems {
                eprint!("{}", p.render(&edited));
            }
            refuse(
                &format!(
                    "the change would make the policy invalid ({} problem(s) above); nothing was written",
                    problems.len()
                ),
                "resolve the conflict first (see the problems), then try again",
            )
        }
    }
}

/// The repository found from GIT_DIR or the current directory, if any;
/// one that exists but cannot be opened (safe.directory) is an error.
fn find_repo() -> Result<Option<git2::Repository>, Exit> {
    hook::find_repo().map_err(|f| usage(&f.admin_message(), &f.help))
}

fn policy_path(given: &Option<PathBuf>, repo: Option<&git2::Repository>) -> Result<PathBuf, Exit> {
    hook::locate_policy(given.as_deref(), repo)
        .map(|l| l.path)
        .map_err(|e| usage(&e.to_string(), e.help()))
}

fn read_policy_text(path: &Path, bytes: Vec<u8>) -> Result<String, Exit> {
    String::from_utf8(bytes).map_err(|_| {
        refuse(
            &format!("the policy `{}` is not valid UTF-8", path.display()),
            &format!(
                "check it with `countersign policy check --policy {}`",
                path.display()
            ),
        )
    })
}

fn list(
    common: &Common,
    show: impl FnOnce(&str, &Path) -> Result<Vec<String>, AdminError>,
) -> Exit {
    let repo = if common.policy.is_none() {
        match find_repo() {
            Ok(r) => r,
            Err(code) => return code,
        }
    } else {
        None
    };
    let checkout = match ref_checkout(common, repo.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let path = match &checkout {
        Some(c) => c.file(),
        None => match policy_path(&common.policy, repo.as_ref()) {
            Ok(p) => p,
            Err(code) => return code,
        },
    };
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            return usage(
                &format!("cannot read the policy `{}`: {e}", path.display()),
                "pass `--policy FILE`",
            )
        }
    };
    let text = match read_policy_text(&path, bytes) {
        Ok(t) => t,
        Err(code) => return code,
    };
    match show(&text, &store::policy_dir(&path)) {
        Ok(lines) => {
            let mut out = std::io::stdout().lock();
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
            Exit::Ok
        }
        Err(e) => report_admin_error(&e, &path),
    }
}

/// Lock the policy, compute the change with `edit`, write it atomically and
/// record it (the library's [`store::apply`]); print what happened.
fn apply(
    common: &Common,
    command: &str,
    edit: impl FnOnce(&str, &Path, &mut Vec<PathBuf>) -> Result<Change, Fail>,
) -> Exit {
    let repo = match find_repo() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let checkout = match ref_checkout(common, repo.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let path = match (&checkout, &common.propose) {
        (Some(_), Some(name)) if !crate::cli::policy_cmds::valid_name(name) => {
            return usage(
                &format!("`{}` is not a proposal name; nothing was changed", sanitize::escape(name)),
                "use letters, digits, `-`, `_` and `.`",
            )
        }
        (Some(c), Some(_)) => c.file(),
        (Some(_), None) => return usage(
            "this repository's policy lives on refs/meta/countersign: a change of it is a proposal that other admins approve",
            "add `--propose NAME` (and `--push origin`), or edit a copy with `countersign policy edit`",
        ),
        (None, Some(_)) => return usage(
            "`--propose` needs a repository whose policy lives on refs/meta/countersign (a pinned trust root)",
            "pin it first: `countersign policy pin <root>` (the server's countersign.policyRoot)",
        ),
        (None, None) => match policy_path(&common.policy, repo.as_ref()) {
            Ok(p) => p,
            Err(code) => return code,
        },
    };
    let log = match (&common.audit_log, &repo) {
        (Some(l), _) => l.clone(),
        (None, Some(r)) => audit::path_for(r),
        (None, None) => {
            return usage(
                "no audit log to record the change in; nothing was changed",
                "every change must be recorded: pass `--audit-log FILE`, or run inside the server repository (or set GIT_DIR)",
            )
        }
    };
    let actor = common.actor.clone().unwrap_or_else(audit::os_user);
    let mut out = std::io::stdout().lock();
    let sharing = repo
        .as_ref()
        .map_or(audit::Sharing::Umask, audit::Sharing::of);
    match store::apply(&path, &log, sharing, &actor, command, edit) {
        Ok(applied) => {
            for line in &applied.report {
                let _ = writeln!(out, "  {}", sanitize::escape(line));
            }
            match applied.recorded {
                None => {
                    let _ = writeln!(
                        out,
                        "{}: nothing to change in `{}`",
                        report::PREFIX,
                        path.display()
                    );
                }
                Some(seq) => {
                    let _ = writeln!(
                        out,
                        "{}: {}",
                        report::PREFIX,
                        sanitize::escape(&applied.summary)
                    );
                    if let (Some(c), Some(name)) = (&checkout, &common.propose) {
                        let _ = writeln!(out, "  recorded as record {seq} of `{}`", log.display());
                        drop(out);
                        return crate::cli::policy_cmds::propose(
                            name,
                            Some(c.dir.clone()),
                            &applied.summary,
                            common.push.as_deref(),
                        );
                    }
                    let _ = writeln!(
                        out,
                        "  policy `{}` updated; recorded as record {seq} of `{}`",
                        path.display(),
                        log.display()
                    );
                }
            }
            Exit::Ok
        }
        Err(StoreError::Edit(Fail::Refused(e))) => report_admin_error(&e, &path),
        Err(StoreError::Edit(Fail::Error(m, h))) => usage(&m, &h),
        Err(StoreError::NotUtf8(p)) => refuse(
            &format!("the policy `{}` is not valid UTF-8", p.display()),
            &format!(
                "check it with `countersign policy check --policy {}`",
                p.display()
            ),
        ),
        Err(e) => usage(&e.to_string(), e.help()),
    }
}
