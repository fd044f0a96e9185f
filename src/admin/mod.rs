//! Admin edits of the policy: people, their keys and their roles.
//!
//! Every function here works on the policy *text* (plus the directory that
//! relative certificate paths are resolved from) and returns the new text
//! with a one-line summary, or says why the change is refused. Edits go
//! through `toml_edit::DocumentMut`, so comments and layout survive.
//!
//! What this module must never do: return a policy that does not validate
//! (every result is checked with [`policy::parse`] first), edit a policy
//! that is already invalid, give one key to two people, or write, move or
//! delete any file itself (the binary does that, atomically, and records
//! every change in the audit log). Names and e-mails are only ever used to
//! *propose* a person id on import; identity still comes from keys alone.

pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sequoia_openpgp as openpgp;
use toml_edit::{Array, Datetime, DocumentMut, InlineTable, Item, Table, TableLike, Value};

use crate::policy::keys::{self, Material};
use crate::policy::{self, Policy, Problem};
use crate::time::{self, Timestamp};

/// A successful edit: the new policy text and what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The whole new policy text (validated).
    pub text: String,
    /// One line for humans and the audit log, e.g. "granted role `x` to `alice`".
    pub summary: String,
    /// Further lines to show (import mappings, notes); not needed for the record.
    pub report: Vec<String>,
}

/// Why a change was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// The change conflicts with the policy or its input is not usable.
    Refused {
        /// What is wrong.
        message: String,
        /// How to fix it.
        help: String,
    },
    /// The policy as it is now does not validate: fix it by hand first.
    InvalidBefore(Vec<Problem>),
    /// The edited policy would not validate (nothing is written).
    InvalidAfter(Vec<Problem>),
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::Refused { message, .. } => f.write_str(message),
            AdminError::InvalidBefore(p) => {
                write!(f, "the policy already has {} problem(s)", p.len())
            }
            AdminError::InvalidAfter(p) => write!(
                f,
                "the change would leave the policy with {} problem(s)",
                p.len()
            ),
        }
    }
}

impl std::error::Error for AdminError {}

fn refused(message: impl Into<String>, help: impl Into<String>) -> AdminError {
    AdminError::Refused {
        message: message.into(),
        help: help.into(),
    }
}

/// Which list a key entry lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `ssh = [...]`, entries `"ssh-ed25519 AAAA..."` or `{ key = ... }`.
    Ssh,
    /// `openpgp = [...]`, entries `"keys/x.asc"` or `{ cert = ... }`.
    OpenPgp,
}

impl KeyKind {
    fn list(self) -> &'static str {
        match self {
            KeyKind::Ssh => "ssh",
            KeyKind::OpenPgp => "openpgp",
        }
    }
    fn field(self) -> &'static str {
        match self {
            KeyKind::Ssh => "key",
            KeyKind::OpenPgp => "cert",
        }
    }
}

/// A person, for `people list`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PersonInfo {
    /// Person id.
    pub id: String,
    /// Display name ("" if none).
    pub name: String,
    /// Roles held.
    pub roles: Vec<String>,
    /// Number of keys (SSH keys and OpenPGP certificates).
    pub keys: usize,
    /// `expires` of the person, as `YYYY-MM-DDTHH:MM:SSZ`.
    pub expires: Option<String>,
    /// `revoked` of the person.
    pub revoked: Option<String>,
}

/// A key, for `keys list`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    /// Person id.
    pub person: String,
    /// `ssh` or `openpgp`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `SHA256:...` or the certificate fingerprint.
    pub fingerprint: String,
    /// Per-key dates.
    pub expires: Option<String>,
    /// Per-key dates.
    pub revoked: Option<String>,
    /// Per-key dates.
    pub retired: Option<String>,
    /// `inline` or the certificate path as written in the policy.
    pub source: String,
}

// ---------------------------------------------------------------------------
// Loading and finishing
// ---------------------------------------------------------------------------

fn load(text: &str, base: &Path) -> Result<(Policy, DocumentMut), AdminError> {
    let policy = policy::parse(text, base).map_err(AdminError::InvalidBefore)?;
    let doc = text.parse::<DocumentMut>().map_err(|e| {
        refused(
            format!("cannot edit the policy: {}", e.message().trim()),
            "check it with `countersign policy check`",
        )
    })?;
    Ok((policy, doc))
}

fn finish(doc: &DocumentMut, base: &Path, summary: String) -> Result<Change, AdminError> {
    let text = doc.to_string();
    policy::parse(&text, base).map_err(AdminError::InvalidAfter)?;
    Ok(Change {
        text,
        summary,
        report: Vec::new(),
    })
}

/// Is `s` usable as a person id or role name (as the policy requires)?
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn check_name(what: &str, s: &str) -> Result<(), AdminError> {
    if valid_name(s) {
        Ok(())
    } else {
        Err(refused(
            format!("`{}` is not a valid {what}", crate::sanitize::escape(s)),
            format!("a {what} uses only a-z, A-Z, 0-9, `-` and `_`"),
        ))
    }
}

fn require_person(policy: &Policy, id: &str) -> Result<(), AdminError> {
    if policy.people.contains_key(id) {
        Ok(())
    } else {
        Err(refused(
            format!("unknown person `{}`", crate::sanitize::escape(id)),
            format!(
                "add them first with `countersign people add {}`, or see `countersign people list`",
                crate::sanitize::escape(id)
            ),
        ))
    }
}

fn require_role(policy: &Policy, role: &str) -> Result<(), AdminError> {
    if policy.roles.contains_key(role) {
        Ok(())
    } else {
        let declared: Vec<&str> = policy.roles.keys().map(String::as_str).collect();
        Err(refused(
            format!(
                "role `{}` is not declared in [roles] (declared: {})",
                crate::sanitize::escape(role),
                if declared.is_empty() {
                    "none".to_string()
                } else {
                    declared.join(", ")
                }
            ),
            format!(
                "declare it first: `countersign roles add {} --description \"...\"`",
                crate::sanitize::escape(role)
            ),
        ))
    }
}

fn person_table<'a>(
    doc: &'a mut DocumentMut,
    id: &str,
) -> Result<&'a mut dyn TableLike, AdminError> {
    doc.get_mut("people")
        .and_then(Item::as_table_like_mut)
        .and_then(|t| t.get_mut(id))
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| {
            refused(
                format!("cannot find the table of person `{id}` to edit"),
                "edit the policy by hand",
            )
        })
}

/// The array under `key` in `t`, created empty if absent.
fn array_mut<'a>(t: &'a mut dyn TableLike, key: &str) -> Result<&'a mut Array, AdminError> {
    if t.get(key).is_none() {
        t.insert(key, Item::Value(Value::Array(Array::new())));
    }
    t.get_mut(key)
        .and_then(Item::as_array_mut)
        .ok_or_else(|| refused(format!("`{key}` is not a list"), "edit the policy by hand"))
}

/// Push `v` onto `arr`, keeping the array's layout (one entry per line, or
/// all on one line).
fn push_styled(arr: &mut Array, v: impl Into<Value>) {
    let mut v: Value = v.into();
    if let Some(last) = arr.iter().last() {
        let prefix = last
            .decor()
            .prefix()
            .and_then(|p| p.as_str())
            .map(str::to_string);
        if let Some(p) = prefix {
            if p.contains('\n') {
                v.decor_mut().set_prefix(p);
            } else {
                v.decor_mut().set_prefix(" ");
            }
        } else {
            v.decor_mut().set_prefix(" ");
        }
        v.decor_mut().set_suffix("");
        arr.push_formatted(v);
    } else {
        arr.push(v);
    }
}

/// A date that cannot be used (the text is escaped for the terminal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    /// Not a TOML date or date-time.
    #[error("`{0}` is not a date such as 2027-06-30 or 2027-06-30T12:00:00Z")]
    NotADate(String),
    /// A date outside what countersign can represent.
    #[error("`{0}`: {1}")]
    OutOfRange(String, String),
    /// The clock's date could not be formed.
    #[error("cannot compute the date of `{0}`")]
    Clock(String),
}

/// The UTC date of `now`, as a TOML date.
///
/// # Errors
///
/// [`DateError::Clock`] if the time cannot be written as a date.
pub fn today(now: Timestamp) -> Result<Datetime, DateError> {
    let s = time::format(now);
    s.get(..10)
        .and_then(|d| d.parse::<Datetime>().ok())
        .ok_or(DateError::Clock(s))
}

/// Parse a date given on the command line: a TOML date (`2027-06-30`, 00:00
/// UTC) or date-time (`2027-06-30T12:00:00Z`).
///
/// # Errors
///
/// [`DateError`] when it is not such a date.
pub fn parse_date(s: &str) -> Result<Datetime, DateError> {
    let dt = s
        .trim()
        .parse::<Datetime>()
        .map_err(|_| DateError::NotADate(crate::sanitize::escape(s)))?;
    time::from_toml(&dt)
        .map_err(|e| DateError::OutOfRange(crate::sanitize::escape(s), e.to_string()))?;
    Ok(dt)
}

/// `2027-06-30T00:00:00Z`.
pub fn iso(t: Timestamp) -> String {
    let s = time::format(t);
    match (s.get(..10), s.get(11..19)) {
        (Some(d), Some(hms)) => format!("{d}T{hms}Z"),
        _ => s,
    }
}

// ---------------------------------------------------------------------------
// Key matching
// ---------------------------------------------------------------------------

fn normalize_pgp(s: &str) -> String {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let s = s.to_ascii_uppercase();
    s.strip_prefix("0X").map(str::to_string).unwrap_or(s)
}

fn normalize_ssh(s: &str) -> String {
    let s = s.trim();
    if s.starts_with("SHA256:") {
        s.to_string()
    } else {
        format!("SHA256:{s}")
    }
}

fn cert_matches(cert: &openpgp::Cert, query: &str) -> bool {
    let q = normalize_pgp(query);
    cert.keys().any(|ka| {
        let k = ka.key();
        k.fingerprint().to_hex() == q || k.keyid().to_hex() == q
    })
}

/// The text of a key entry (string, or the `field` of an inline table).
fn entry_text(v: &Value, field: &str) -> Option<String> {
    match v {
        Value::String(s) => Some(s.value().clone()),
        Value::InlineTable(t) => t.get(field).and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// Find the entry of `person` holding the key `fingerprint`: (kind, index,
/// canonical fingerprint).
fn find_entry(
    doc: &mut DocumentMut,
    base: &Path,
    person: &str,
    fingerprint: &str,
) -> Result<Option<(KeyKind, usize, String)>, AdminError> {
    let t = person_table(doc, person)?;
    for kind in [KeyKind::Ssh, KeyKind::OpenPgp] {
        let Some(arr) = t.get(kind.list()).and_then(Item::as_array) else {
            continue;
        };
        for (i, v) in arr.iter().enumerate() {
            let Some(text) = entry_text(v, kind.field()) else {
                continue;
            };
            match kind {
                KeyKind::Ssh => {
                    if let Ok(k) = keys::parse_ssh(&text) {
                        let fpr = keys::ssh_fingerprint(k.key_data());
                        if fpr == normalize_ssh(fingerprint) {
                            return Ok(Some((kind, i, fpr)));
                        }
                    }
                }
                KeyKind::OpenPgp => {
                    if let Ok(certs) = keys::read_certs(&base.join(&text)) {
                        if let Some(c) = certs.iter().find(|c| cert_matches(c, fingerprint)) {
                            return Ok(Some((kind, i, c.fingerprint().to_hex())));
                        }
                    }
                }
            }
        }
    }
    Ok(None)
}

/// Who holds `fingerprint` (SSH `SHA256:` or OpenPGP hex), if anyone.
fn holder_of(policy: &Policy, fingerprint: &str) -> Option<String> {
    let ssh = normalize_ssh(fingerprint);
    policy
        .keyring
        .keys()
        .iter()
        .find_map(|k| match &k.material {
            Material::Ssh(_) if k.fingerprint == ssh => Some(k.person.clone()),
            Material::OpenPgp(c) if cert_matches(c, fingerprint) => Some(k.person.clone()),
            _ => None,
        })
}

fn key_not_found(policy: &Policy, person: &str, fingerprint: &str) -> AdminError {
    let fp = crate::sanitize::escape(fingerprint);
    match holder_of(policy, fingerprint) {
        Some(other) if other != person => refused(
            format!("key {fp} is held by `{other}`, not `{person}`"),
            "check the person: `countersign keys list`",
        ),
        _ => refused(
            format!("person `{person}` holds no key {fp}"),
            "see the fingerprints with `countersign keys list` (SSH: SHA256:..., OpenPGP: the certificate fingerprint or key id)",
        ),
    }
}

fn ssh_conflict(policy: &Policy, person: &str, key: &ssh_key::PublicKey) -> Result<(), AdminError> {
    if let Some((_, k)) = policy.keyring.find_ssh(key.key_data()) {
        return Err(held_error(&k.person, person, &k.fingerprint));
    }
    Ok(())
}

fn held_error(holder: &str, person: &str, fpr: &str) -> AdminError {
    if holder == person {
        refused(
            format!("person `{person}` already holds key {fpr}"),
            "nothing to add; see `countersign keys list`",
        )
    } else {
        refused(
            format!("key {fpr} is already held by `{holder}`"),
            format!(
                "one key belongs to one person; if it changed hands, remove it first: `countersign keys remove {holder} {fpr}`"
            ),
        )
    }
}

fn cert_conflict(policy: &Policy, person: &str, cert: &openpgp::Cert) -> Result<(), AdminError> {
    for ka in cert.keys() {
        let handle = openpgp::KeyHandle::from(ka.key().fingerprint());
        if let Some((_, k)) = policy.keyring.find_openpgp(&handle) {
            return Err(held_error(&k.person, person, &cert.fingerprint().to_hex()));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// People
// ---------------------------------------------------------------------------

fn insert_person(
    doc: &mut DocumentMut,
    id: &str,
    name: Option<&str>,
    roles: &[String],
) -> Result<(), AdminError> {
    let roles_pos = doc
        .get("roles")
        .and_then(Item::as_table)
        .and_then(Table::position);
    if doc.get("people").is_none() {
        let mut people = Table::new();
        people.set_implicit(true);
        doc.insert("people", Item::Table(people));
    }
    let people = doc
        .get_mut("people")
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| refused("`people` is not a table", "edit the policy by hand"))?;
    if people.contains_key(id) {
        return Err(refused(
            format!("person `{id}` already exists"),
            "pick another id, or change the existing person",
        ));
    }
    // The new table goes right after the last person (or, for the first
    // person, right after [roles]); a table without a position would land
    // at the end of the file.
    let last_person_pos = people
        .iter()
        .filter_map(|(_, v)| v.as_table().and_then(Table::position))
        .max();
    let after = last_person_pos.or(roles_pos);
    let mut t = Table::new();
    if let Some(n) = name {
        t.insert("name", toml_edit::value(n));
    }
    let mut arr = Array::new();
    for r in roles {
        arr.push(r.as_str());
    }
    t.insert("roles", Item::Value(Value::Array(arr)));
    t.decor_mut().set_prefix("\n");
    if let Some(p) = after {
        t.set_position(p);
    }
    people.insert(id, Item::Table(t));
    if let Some(p) = after {
        // Comment lines right under the previous table (before a blank
        // line) belong to it: keep them there, above the new table.
        if let Some(attached) = detach_trailing_comments(doc.as_table_mut(), p) {
            if let Some(t) = doc
                .get_mut("people")
                .and_then(Item::as_table_like_mut)
                .and_then(|pt| pt.get_mut(id))
                .and_then(Item::as_table_mut)
            {
                t.decor_mut().set_prefix(format!("{attached}\n"));
            }
        }
    }
    Ok(())
}

/// Every table under `t` (standard and array-of-tables entries).
fn for_each_table(t: &mut Table, f: &mut dyn FnMut(&mut Table)) {
    for (_, item) in t.iter_mut() {
        match item {
            Item::Table(sub) => {
                f(sub);
                for_each_table(sub, f);
            }
            Item::ArrayOfTables(arr) => {
                for sub in arr.iter_mut() {
                    f(sub);
                    for_each_table(sub, f);
                }
            }
            _ => {}
        }
    }
}

/// The table following position `after` starts with comment lines, then a
/// blank line: cut those lines from its prefix and return them.
fn detach_trailing_comments(root: &mut Table, after: usize) -> Option<String> {
    let mut next = None;
    for_each_table(root, &mut |t| {
        if let Some(p) = t.position() {
            if p > after && next.is_none_or(|n| p < n) {
                next = Some(p);
            }
        }
    });
    let next = next?;
    let mut attached = None;
    for_each_table(root, &mut |t| {
        if t.position() != Some(next) || attached.is_some() {
            return;
        }
        let Some(prefix) = t
            .decor()
            .prefix()
            .and_then(|p| p.as_str())
            .map(str::to_string)
        else {
            return;
        };
        if prefix.starts_with('\n') {
            return;
        }
        if let Some(i) = prefix.find("\n\n") {
            let (head, rest) = prefix.split_at(i + 1);
            if head.lines().all(|l| l.trim_start().starts_with('#')) {
                t.decor_mut().set_prefix(rest.to_string());
                attached = Some(head.to_string());
            }
        }
    });
    attached
}

/// Add a person `id` with an optional display name and roles.
///
/// # Errors
///
/// [`AdminError`]: refused when the change conflicts with the policy (with what to do), or when the policy does not validate now or would not after the change.
pub fn add_person(
    text: &str,
    base: &Path,
    id: &str,
    name: Option<&str>,
    roles: &[String],
) -> Result<Change, AdminError> {
    check_name("person id", id)?;
    let (policy, mut doc) = load(text, base)?;
    if policy.people.contains_key(id) {
        return Err(refused(
            format!("person `{id}` already exists"),
            "pick another id; change roles with `countersign roles grant`/`revoke`",
        ));
    }
    let mut seen = BTreeSet::new();
    for r in roles {
        require_role(&policy, r)?;
        if !seen.insert(r) {
            return Err(refused(
                format!("role `{r}` is given twice"),
                "name each role once",
            ));
        }
    }
    insert_person(&mut doc, id, name, roles)?;
    let summary = if roles.is_empty() {
        format!("added person `{id}` with no roles")
    } else {
        format!("added person `{id}` with roles {}", roles.join(", "))
    };
    finish(&doc, base, summary)
}

/// Remove person `id`. Refused while they hold keys, unless `with_keys`.
///
/// # Errors
///
/// [`AdminError`]: refused when the change conflicts with the policy (with what to do), or when the policy does not validate now or would not after the change.
pub fn remove_person(
    text: &str,
    base: &Path,
    id: &str,
    with_keys: bool,
) -> Result<Change, AdminError> {
    let (policy, mut doc) = load(text, base)?;
    require_person(&policy, id)?;
    let held: Vec<String> = policy
        .keyring
        .keys()
        .iter()
        .filter(|k| k.person == id)
        .map(|k| k.fingerprint.clone())
        .collect();
    if !held.is_empty() && !with_keys {
        return Err(refused(
            format!("person `{id}` holds {} key(s): {}", held.len(), held.join(", ")),
            "remove or retire the keys first, or pass `--with-keys` to remove the person with their keys",
        ));
    }
    let people = doc
        .get_mut("people")
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| refused("`people` is not a table", "edit the policy by hand"))?;
    people.remove(id);
    let summary = if held.is_empty() {
        format!("removed person `{id}`")
    } else {
        format!("removed person `{id}` and their key(s) {}", held.join(", "))
    };
    finish(&doc, base, summary)
}

/// Every person, for `people list`.
///
/// # Errors
///
/// [`AdminError::InvalidBefore`] when the policy does not validate.
pub fn people(text: &str, base: &Path) -> Result<Vec<PersonInfo>, AdminError> {
    let policy = policy::parse(text, base).map_err(AdminError::InvalidBefore)?;
    Ok(policy
        .people
        .values()
        .map(|p| PersonInfo {
            id: p.id.clone(),
            name: p.name.clone(),
            roles: p.roles.iter().cloned().collect(),
            keys: policy
                .keyring
                .keys()
                .iter()
                .filter(|k| k.person == p.id)
                .count(),
            expires: p.dates.expires.map(iso),
            revoked: p.dates.revoked.map(iso),
        })
        .collect())
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

fn key_value(kind: KeyKind, text: &str, expires: Option<Datetime>) -> Value {
    match expires {
        None => Value::from(text),
        Some(d) => {
            let mut t = InlineTable::new();
            t.insert(kind.field(), Value::from(text));
            t.insert("expires", Value::from(d));
            Value::InlineTable(t)
        }
    }
}

/// Add the SSH public key `line` (`ssh-ed25519 AAAA... comment`) to `person`.
///
/// # Errors
///
/// [`AdminError`]: refused when the change conflicts with the policy (with what to do), or when the policy does not validate now or would not after the change.
pub fn add_ssh_key(
    text: &str,
    base: &Path,
    person: &str,
    line: &str,
    expires: Option<Datetime>,
) -> Result<Change, AdminError> {
    let (policy, mut doc) = load(text, base)?;
    require_person(&policy, person)?;
    let line = line.trim();
    let key = keys::parse_ssh(line).map_err(|e| {
        refused(
            format!("not a usable SSH public key: {e}"),
            "pass one line of a `.pub` file: `--ssh \"$(cat ~/.ssh/id_ed25519.pub)\"` (no options in front)",
        )
    })?;
    ssh_conflict(&policy, person, &key)?;
    let fpr = keys::ssh_fingerprint(key.key_data());
    let t = person_table(&mut doc, person)?;
    push_styled(array_mut(t, "ssh")?, key_value(KeyKind::Ssh, line, expires));
    let mut summary = format!("added ssh key {fpr} to `{person}`");
    if let Some(d) = expires {
        summary.push_str(&format!(", expires {d}"));
    }
    finish(&doc, base, summary)
}

/// Add the OpenPGP certificate file `rel_path` (relative to `base`; the file
/// must already be there, holding `certs`) to `person`.
///
/// # Errors
///
/// [`AdminError`]: refused when the change conflicts with the policy (with what to do), or when the policy does not validate now or would not after the change.
pub fn add_openpgp_cert(
    text: &str,
    base: &Path,
    person: &str,
    rel_path: &str,
    certs: &[openpgp::Cert],
    expires: Option<Datetime>,
) -> Result<Change, AdminError> {
    let (policy, mut doc) = load(text, base)?;
    require_person(&policy, person)?;
    for c in certs {
        cert_conflict(&policy, person, c)?;
    }
    let t = person_table(&mut doc, person)?;
    push_styled(
        array_mut(t, "openpgp")?,
        key_value(KeyKind::OpenPgp, rel_path, expires),
    );
    let fprs: Vec<String> = certs.iter().map(|c| c.fingerprint().to_hex()).collect();
    let mut summary = format!(
        "added openpgp cert {} ({rel_path}) to `{person}`",
        fprs.join(", ")
    );
    if let Some(d) = expires {
        summary.push_str(&format!(", expires {d}"));
    }
    finish(&doc, base, summary)
}

/// Set `retired = at` on `person`'s key `fingerprint`, turning a plain
/// string entry into an inline table.
///
/// # Errors
///
/// [`AdminError`]: refused when the change conflicts with the policy (with what to do), or when the policy does not validate now or would not after the change.
pub fn retire_key(
    text: &str,
    base: &Path,
    person: &str,
    fingerprint: &str,
    at: Datetime,
) -> Result<Change, AdminError> {
    let (policy, mut doc) = load(text, base)?;
    require_person(&policy, person)?;
    let Some((kind, i, fpr)) = find_entry(&mut doc, base, person, fingerprint)? else {
        return Err(key_not_found(&policy, person, fingerprint));
    };
    let t = person_table(&mut doc, person)?;
    let arr = array_mut(t, kind.list())?;
    let Some(v) = arr.get_mut(i) else {
        return Err(key_not_found(&policy, person, fingerprint));
    };
    let mut previous = None;
    match v {
        Value::InlineTable(t) => {
            previous = t.get("retired").map(|p| p.to_string().trim().to_string());
            t.insert("retired", Value::from(at));
            // Re-space the entry so the new key reads `{ ..., retired = D }`.
            t.fmt();
        }
        Value::String(s) => {
            let decor = s.decor().clone();
            let mut t = InlineTable::new();
            t.insert(kind.field(), Value::from(s.value().as_str()));
            t.insert("retired", Value::from(at));
            let mut nv = Value::InlineTable(t);
            *nv.decor_mut() = decor;
            *v = nv;
        }
        _ => return Err(key_not_found(&policy, person, fingerprint)),
    }
    let summary = match previous {
        Some(p) => format!(
            "retired {} key {fpr} of `{person}` at {at} (was {p})",
            kind.list()
        ),
        None => format!("retired {} key {fpr} of `{person}` at {at}", kind.list()),
    };
    finish(&doc, base, summary)
}

/// Remove `person`'s key `fingerprint` from the policy (a certificate file
/// stays where it is).
///
/// # Errors
///
/// [`AdminError`]: refused when the change conflicts with the policy (with what to do), or when the policy does not validate now or would not after the change.
pub fn remove_key(
    text: &str,
    base: &Path,
    person: &str,
    fingerprint: &str,
) -> Result<Change, AdminError> {
    let (policy, mut doc) = load(text, base)?;
    require_person(&policy, person)?;
    let Some((kind, i, fpr)) = find_entry(&mut doc, base, person, fingerprint)? else {
        return Err(key_not_found(&policy, person, fingerprint));
    };
    let t = person_table(&mut doc, person)?;
    let arr = array_mut(t, kind.list())?;
    let removed = arr.remove(i);
    let summary = match (kind, entry_text(&removed, kind.field())) {
        (KeyKind::OpenPgp, Some(path)) => format!(
            "removed openpgp cert {fpr} ({path}) from `{person}`; the file is left in place"
        ),
        _ => format!("removed {} key {fpr} from `{person}`", kind.list()),
    };
    finish(&doc, base, summary)
}

/// Every key, for `keys list`.
///
/// # Errors
///
/// [`AdminError::InvalidBefore`] when the policy does not validate.
pub fn list_keys(text: &str, base: &Path) -> Result<Vec<KeyInfo>, AdminError> {
    let policy = policy::parse(text, base).map_err(AdminError::InvalidBefore)?;
    Ok(policy
        .keyring
        .keys()
        .iter()
        .map(|k| KeyInfo {
            person: k.person.clone(),
            kind: match k.material {
                Material::Ssh(_) => "ssh".into(),
                Material::OpenPgp(_) => "openpgp".into(),
            },
            fingerprint: k.fingerprint.clone(),
            expires: k.dates.expires.map(iso),
            revoked: k.dates.revoked.map(iso),
            retired: k.dates.retired.map(iso),
            source: match &k.source {
                keys::KeySource::Inline => "inline".into(),
                keys::KeySource::File(p) => p.clone(),
            },
        })
        .collect())
}

// ---------------------------------------------------------------------------
// Roles
// ---------------------------------------------------------------------------

/// Give `person` the declared role `role`.
///
/// # Errors
///
/// [`AdminError`]: refused when the change conflicts with the policy (with what to do), or when the policy does not validate now or would not after the change.
pub fn grant_role(text: &str, base: &Path, person: &str, role: &str) -> Result<Change, AdminError> {
    let (policy, mut doc) = load(text, base)?;
    require_person(&policy, person)?;
    require_role(&policy, role)?;
    if policy
        .people
        .get(person)
        .is_some_and(|p| p.roles.contains(role))
    {
        return Err(refused(
            format!("person `{person}` already holds role `{role}`"),
            "nothing to change",
        ));
    }
    let t = person_table(&mut doc, person)?;
    push_styled(array_mut(t, "roles")?, role);
    finish(&doc, base, format!("granted role `{role}` to `{person}`"))
}

/// Take the role `role` from `person`.
///
/// # Errors
///
/// [`AdminError`]: refused when the change conflicts with the policy (with what to do), or when the policy does not validate now or would not after the change.
pub fn revoke_role(
    text: &str,
    base: &Path,
    person: &str,
    role: &str,
) -> Result<Change, AdminError> {
    let (policy, mut doc) = load(text, base)?;
    require_person(&policy, person)?;
    if !policy
        .people
        .get(person)
        .is_some_and(|p| p.roles.contains(role))
    {
        return Err(refused(
            format!(
                "person `{person}` does not hold role `{}`",
                crate::sanitize::escape(role)
            ),
            "see who holds what with `countersign people list`",
        ));
    }
    let t = person_table(&mut doc, person)?;
    let arr = array_mut(t, "roles")?;
    arr.retain(|v| v.as_str() != Some(role));
    // Keep `roles = ["a", "b"]` tidy after removing the first entry.
    if let Some(first) = arr.get_mut(0) {
        if first.decor().prefix().and_then(|p| p.as_str()) == Some(" ") {
            first.decor_mut().set_prefix("");
        }
    }
    finish(&doc, base, format!("revoked role `{role}` from `{person}`"))
}

/// Declare a new role in [roles].
///
/// # Errors
///
/// [`AdminError`]: refused when the change conflicts with the policy (with what to do), or when the policy does not validate now or would not after the change.
pub fn add_role(
    text: &str,
    base: &Path,
    role: &str,
    description: &str,
) -> Result<Change, AdminError> {
    check_name("role name", role)?;
    let (policy, mut doc) = load(text, base)?;
    if policy.roles.contains_key(role) {
        return Err(refused(
            format!("role `{role}` is already declared"),
            "nothing to change",
        ));
    }
    let roles = doc
        .get_mut("roles")
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| refused("the policy has no [roles] table", "edit the policy by hand"))?;
    roles.insert(role, toml_edit::value(description));
    finish(&doc, base, format!("declared role `{role}`"))
}

/// Every declared role with its description and holders.
///
/// # Errors
///
/// [`AdminError::InvalidBefore`] when the policy does not validate.
pub fn list_roles(
    text: &str,
    base: &Path,
) -> Result<Vec<(String, String, Vec<String>)>, AdminError> {
    let policy = policy::parse(text, base).map_err(AdminError::InvalidBefore)?;
    Ok(policy
        .roles
        .iter()
        .map(|(r, d)| {
            let holders = policy
                .people
                .values()
                .filter(|p| p.roles.contains(r))
                .map(|p| p.id.clone())
                .collect();
            (r.clone(), d.clone(), holders)
        })
        .collect())
}

// ---------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------

/// The person id proposed for a principal or e-mail: the local part (before
/// `@`), lower-cased, every character other than `a-z 0-9 _ -` replaced by
/// `-`. `None` if nothing usable is left.
pub fn person_id_from(principal: &str) -> Option<String> {
    let local = principal.split('@').next().unwrap_or(principal);
    let id: String = local
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if id.chars().all(|c| c == '-') {
        None
    } else {
        Some(id)
    }
}

/// How a principal was mapped to a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The person.
    pub person: String,
    /// The person is new (created with no roles).
    pub create: bool,
    /// `--map`, `existing person`, or `new person`.
    pub how: &'static str,
}

/// Map principals (or e-mails) to one person: an explicit `map` entry, else
/// an existing person whose id is the principal's local part, else a new
/// person named after the first principal.
///
/// # Errors
///
/// A message when the principals map to different people, or to a name
/// that is not a valid person id.
pub fn map_principals(
    principals: &[String],
    map: &BTreeMap<String, String>,
    people: &BTreeSet<String>,
) -> Result<Mapping, String> {
    let mut resolved: BTreeMap<String, &'static str> = BTreeMap::new();
    for p in principals {
        let explicit = map
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(p))
            .map(|(_, v)| v.clone());
        if let Some(person) = explicit {
            resolved.insert(person, "--map");
        } else if let Some(id) = person_id_from(p) {
            if people.contains(&id) {
                resolved.entry(id).or_insert("existing person");
            }
        }
    }
    if resolved.len() > 1 {
        let who: Vec<&str> = resolved.keys().map(String::as_str).collect();
        return Err(format!(
            "the principals {} map to different people ({}); one key belongs to one person: choose with `--map PRINCIPAL=PERSON`",
            principals.join(","),
            who.join(", ")
        ));
    }
    if let Some((person, how)) = resolved.into_iter().next() {
        if !valid_name(&person) {
            return Err(format!("`{person}` is not a valid person id"));
        }
        let create = !people.contains(&person);
        return Ok(Mapping {
            person,
            create,
            how: if create { "--map, new person" } else { how },
        });
    }
    for p in principals {
        if p.contains(['*', '?', '!']) {
            return Err(format!(
                "principal `{}` is a pattern, not a person: map it with `--map '{}=PERSON'`",
                crate::sanitize::escape(p),
                crate::sanitize::escape(p)
            ));
        }
    }
    let first = principals.first().ok_or("no principal")?;
    let person = person_id_from(first).ok_or_else(|| {
        format!(
            "no person id can be made from `{}`: map it with `--map`",
            crate::sanitize::escape(first)
        )
    })?;
    Ok(Mapping {
        person,
        create: true,
        how: "new person",
    })
}

/// One line of an allowed-signers file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerLine {
    /// 1-based line number.
    pub line: usize,
    /// Comma-separated principals, split.
    pub principals: Vec<String>,
    /// Options (`namespaces="git"`, ...), as name and unquoted value.
    pub options: Vec<(String, Option<String>)>,
    /// `keytype base64 [comment]`.
    pub key: String,
}

/// Split off one whitespace-delimited field, honouring double quotes.
fn take_field(s: &str) -> (String, &str) {
    let s = s.trim_start();
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return (s[..i].to_string(), &s[i..]),
            _ => {}
        }
    }
    (s.to_string(), "")
}

/// Split on commas outside double quotes.
fn split_commas(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn unquote(s: &str) -> String {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
        .to_string()
}

fn is_key_type(s: &str) -> bool {
    s.starts_with("ssh-") || s.starts_with("ecdsa-") || s.starts_with("sk-")
}

/// Parse git's `gpg.ssh.allowedSignersFile` format:
/// `principals [options] keytype base64 [comment]`. Blank lines and `#`
/// comments are skipped. Every bad line is reported.
///
/// # Errors
///
/// Every line that is not `principals [options] key`, each as a message.
pub fn parse_allowed_signers(text: &str) -> Result<Vec<SignerLine>, Vec<String>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (principals, rest) = take_field(line);
        let principals: Vec<String> = split_commas(&unquote(&principals))
            .into_iter()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        let (next, after) = take_field(rest);
        let (options, key) = if is_key_type(&next) {
            (Vec::new(), rest.trim().to_string())
        } else {
            let opts = split_commas(&next)
                .into_iter()
                .map(|o| match o.split_once('=') {
                    Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(unquote(v.trim()))),
                    None => (o.trim().to_ascii_lowercase(), None),
                })
                .collect();
            (opts, after.trim().to_string())
        };
        if principals.is_empty() || key.is_empty() {
            errors.push(format!(
                "line {}: expected `principals [options] keytype base64 [comment]`",
                n + 1
            ));
            continue;
        }
        out.push(SignerLine {
            line: n + 1,
            principals,
            options,
            key,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// `YYYYMMDD[HHMM[SS]][Z]` (ssh-keygen's validity format) as a TOML date.
fn ssh_validity_date(s: &str) -> Option<Datetime> {
    let s = s.trim().trim_end_matches(['Z', 'z']);
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let text = match s.len() {
        8 => format!("{}-{}-{}", &s[..4], &s[4..6], &s[6..8]),
        12 => format!(
            "{}-{}-{}T{}:{}:00Z",
            &s[..4],
            &s[4..6],
            &s[6..8],
            &s[8..10],
            &s[10..12]
        ),
        14 => format!(
            "{}-{}-{}T{}:{}:{}Z",
            &s[..4],
            &s[4..6],
            &s[6..8],
            &s[8..10],
            &s[10..12],
            &s[12..14]
        ),
        _ => return None,
    };
    parse_date(&text).ok()
}

fn unused_maps(map: &BTreeMap<String, String>, used: &BTreeSet<String>, report: &mut Vec<String>) {
    for (k, v) in map {
        if !used.contains(&k.to_ascii_lowercase()) {
            report.push(format!("note: --map {k}={v} matched nothing in the import"));
        }
    }
}

/// Import every key of an allowed-signers file, mapping principals to
/// people (see [`map_principals`]); new people get no roles. Keys a person
/// already holds are skipped; a key held by someone else refuses the whole
/// import.
///
/// # Errors
///
/// [`AdminError`]: refused when the change conflicts with the policy (with what to do), or when the policy does not validate now or would not after the change.
pub fn import_allowed_signers(
    text: &str,
    base: &Path,
    signers: &str,
    map: &BTreeMap<String, String>,
) -> Result<Change, AdminError> {
    let (policy, mut doc) = load(text, base)?;
    let lines = parse_allowed_signers(signers).map_err(|errs| {
        refused(
            format!(
                "the allowed-signers file cannot be read:\n  {}",
                errs.join("\n  ")
            ),
            "fix those lines (format: `principals [options] keytype base64 [comment]`)",
        )
    })?;
    let mut people: BTreeSet<String> = policy.people.keys().cloned().collect();
    let mut report = Vec::new();
    let mut errors = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut used = BTreeSet::new();
    let (mut added, mut created) = (0, 0);
    for l in &lines {
        let n = l.line;
        let mut expires = None;
        let mut skip = None;
        for (name, value) in &l.options {
            match (name.as_str(), value) {
                ("namespaces", Some(v)) => {
                    if !v.split(',').any(|ns| ns.trim() == "git") {
                        skip = Some(format!("namespaces=\"{v}\" does not include git"));
                    }
                }
                ("valid-before", Some(v)) => match ssh_validity_date(v) {
                    Some(d) => expires = Some(d),
                    None => errors.push(format!("line {n}: cannot read valid-before=\"{v}\"")),
                },
                ("valid-after", Some(v)) => report.push(format!(
                    "line {n}: note: valid-after=\"{v}\" is not carried over (the policy has no start date)"
                )),
                ("cert-authority", _) => errors.push(format!(
                    "line {n}: cert-authority keys are not supported: countersign accepts plain public keys only"
                )),
                (other, _) => errors.push(format!("line {n}: unsupported option `{}`", crate::sanitize::escape(other))),
            }
        }
        let key = match keys::parse_ssh(&l.key) {
            Ok(k) => k,
            Err(e) => {
                errors.push(format!("line {n}: not a usable SSH public key: {e}"));
                continue;
            }
        };
        let fpr = keys::ssh_fingerprint(key.key_data());
        if let Some(reason) = skip {
            report.push(format!("line {n}: skipped {fpr}: {reason}"));
            continue;
        }
        for p in &l.principals {
            used.insert(p.to_ascii_lowercase());
        }
        let m = match map_principals(&l.principals, map, &people) {
            Ok(m) => m,
            Err(e) => {
                errors.push(format!("line {n}: {e}"));
                continue;
            }
        };
        let holder = policy
            .keyring
            .find_ssh(key.key_data())
            .map(|(_, k)| k.person.clone())
            .or_else(|| seen.get(&fpr).cloned());
        match holder {
            Some(h) if h == m.person => {
                report.push(format!(
                    "line {n}: {} -> {} ({}): key {fpr} already held, unchanged",
                    l.principals.join(","),
                    m.person,
                    m.how
                ));
                continue;
            }
            Some(h) => {
                errors.push(format!(
                    "line {n}: key {fpr} is already held by `{h}` (the principals map to `{}`)",
                    m.person
                ));
                continue;
            }
            None => {}
        }
        if m.create {
            insert_person(&mut doc, &m.person, None, &[])?;
            people.insert(m.person.clone());
            created += 1;
        }
        let t = person_table(&mut doc, &m.person)?;
        let line_text = key.to_openssh().unwrap_or_else(|_| l.key.clone());
        push_styled(
            array_mut(t, "ssh")?,
            key_value(KeyKind::Ssh, &line_text, expires),
        );
        seen.insert(fpr.clone(), m.person.clone());
        added += 1;
        report.push(format!(
            "line {n}: {} -> {} ({}): added key {fpr}{}",
            l.principals.join(","),
            m.person,
            m.how,
            expires
                .map(|d| format!(", expires {d}"))
                .unwrap_or_default()
        ));
    }
    if !errors.is_empty() {
        return Err(refused(
            format!("nothing was imported:\n  {}", errors.join("\n  ")),
            "fix the file, or choose people with `--map PRINCIPAL=PERSON`",
        ));
    }
    unused_maps(map, &used, &mut report);
    let summary = format!(
        "imported {added} ssh key(s) from an allowed-signers file ({created} new person(s))"
    );
    let mut change = finish(&doc, base, summary)?;
    if added == 0 {
        change.text = text.to_string();
    }
    change.report = report;
    Ok(change)
}

/// One certificate to import, and where it came from (for messages).
#[derive(Debug, Clone)]
pub struct CertSource {
    /// File name shown in the report.
    pub source: String,
    /// The certificate (public).
    pub cert: openpgp::Cert,
}

/// The first User ID's e-mail and name, if any.
fn cert_identity(cert: &openpgp::Cert) -> (Option<String>, Option<String>) {
    for ua in cert.userids() {
        let uid = ua.userid();
        let email = uid.email().ok().flatten().map(str::to_string);
        let name = uid.name().ok().flatten().map(str::to_string);
        if email.is_some() || name.is_some() {
            return (email, name);
        }
    }
    (None, None)
}

/// Import OpenPGP certificates: the person comes from the first User ID's
/// e-mail (see [`map_principals`]; `--map` may also name the fingerprint).
/// `store(person, cert)` puts the certificate next to the policy and
/// returns its relative path; it is called only for certificates that will
/// be added, before the result is validated.
///
/// # Errors
///
/// [`AdminError`]: refused when the change conflicts with the policy (with what to do), or when the policy does not validate now or would not after the change.
pub fn import_openpgp(
    text: &str,
    base: &Path,
    certs: &[CertSource],
    map: &BTreeMap<String, String>,
    store: &mut dyn FnMut(&str, &openpgp::Cert) -> Result<String, String>,
) -> Result<Change, AdminError> {
    let (policy, mut doc) = load(text, base)?;
    let mut people: BTreeSet<String> = policy.people.keys().cloned().collect();
    let mut report = Vec::new();
    let mut errors = Vec::new();
    let mut used = BTreeSet::new();
    let mut planned: Vec<(usize, Mapping, String)> = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (i, c) in certs.iter().enumerate() {
        let fpr = c.cert.fingerprint().to_hex();
        let (email, _) = cert_identity(&c.cert);
        let mut principals = Vec::new();
        if let Some(e) = &email {
            principals.push(e.clone());
        }
        // --map may name the certificate by fingerprint or key id.
        let by_fpr = map
            .iter()
            .find(|(k, _)| cert_matches(&c.cert, k) && !k.contains('@'));
        let m = if let Some((k, person)) = by_fpr {
            used.insert(k.to_ascii_lowercase());
            let create = !people.contains(person);
            if !valid_name(person) {
                errors.push(format!("{}: `{person}` is not a valid person id", c.source));
                continue;
            }
            Ok(Mapping {
                person: person.clone(),
                create,
                how: if create { "--map, new person" } else { "--map" },
            })
        } else if principals.is_empty() {
            Err(format!(
                "certificate {fpr} has no User ID with an e-mail: map it with `--map {fpr}=PERSON`"
            ))
        } else {
            for p in &principals {
                used.insert(p.to_ascii_lowercase());
            }
            map_principals(&principals, map, &people)
        };
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                errors.push(format!("{}: {e}", c.source));
                continue;
            }
        };
        let mut holder = None;
        for ka in c.cert.keys() {
            let h = openpgp::KeyHandle::from(ka.key().fingerprint());
            if let Some((_, k)) = policy.keyring.find_openpgp(&h) {
                holder = Some(k.person.clone());
                break;
            }
        }
        let holder = holder.or_else(|| seen.get(&fpr).cloned());
        let who = email.clone().unwrap_or_else(|| fpr.clone());
        match holder {
            Some(h) if h == m.person => {
                report.push(format!(
                    "{}: {who} -> {} ({}): cert {fpr} already held, unchanged",
                    c.source, m.person, m.how
                ));
                continue;
            }
            Some(h) => {
                errors.push(format!(
                    "{}: cert {fpr} is already held by `{h}` (its User ID maps to `{}`)",
                    c.source, m.person
                ));
                continue;
            }
            None => {}
        }
        seen.insert(fpr.clone(), m.person.clone());
        if m.create {
            people.insert(m.person.clone());
        }
        report.push(format!(
            "{}: {who} -> {} ({}): added cert {fpr}",
            c.source, m.person, m.how
        ));
        planned.push((i, m, fpr));
    }
    if !errors.is_empty() {
        return Err(refused(
            format!("nothing was imported:\n  {}", errors.join("\n  ")),
            "fix the certificates, or choose people with `--map EMAIL=PERSON` (or `--map FINGERPRINT=PERSON`)",
        ));
    }
    let mut created_people = 0;
    let mut made = BTreeSet::new();
    for (i, m, _) in &planned {
        let Some(c) = certs.get(*i) else { continue };
        if m.create && made.insert(m.person.clone()) {
            let (_, name) = cert_identity(&c.cert);
            insert_person(&mut doc, &m.person, name.as_deref(), &[])?;
            created_people += 1;
        }
        let rel = store(&m.person, &c.cert).map_err(|e| {
            refused(
                format!("cannot store the certificate from {}: {e}", c.source),
                "check that the policy directory is writable",
            )
        })?;
        let t = person_table(&mut doc, &m.person)?;
        push_styled(array_mut(t, "openpgp")?, rel.as_str());
    }
    unused_maps(map, &used, &mut report);
    let summary = format!(
        "imported {} openpgp cert(s) ({created_people} new person(s))",
        planned.len()
    );
    let mut change = finish(&doc, base, summary)?;
    if planned.is_empty() {
        change.text = text.to_string();
    }
    change.report = report;
    Ok(change)
}

/// The 16-hex-digit key id of a certificate, for file names.
pub fn fpr16(cert: &openpgp::Cert) -> String {
    cert.keyid().to_hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8, comment: &str) -> String {
        let data = ssh_key::public::KeyData::Ed25519(ssh_key::public::Ed25519PublicKey([n; 32]));
        ssh_key::PublicKey::new(data, comment).to_openssh().unwrap()
    }

    fn fpr(n: u8) -> String {
        let k = keys::parse_ssh(&key(n, "x")).unwrap();
        keys::ssh_fingerprint(k.key_data())
    }

    fn policy_text() -> String {
        format!(
            r#"# Top comment: keep me.
[repository]
id = "acme/x"   # trailing id comment

# Roles comment.
[roles]
developer = "writes code"
reviewer = "reviews"

# Alice comment.
[people.alice]
name = "Alice"
roles = ["developer"]
# SSH keys of alice.
ssh = [
    "{}",
]

[people.bob]
name = "Bob"
roles = ["developer", "reviewer"] # bob's roles
ssh = ["{}"]

# Rules comment.
[[rule]]
refs = ["refs/heads/main"]
commit-signers = ["developer"]
"#,
            key(1, "alice@laptop"),
            key(2, "bob@desk")
        )
    }

    fn base() -> &'static Path {
        Path::new(".")
    }

    #[track_caller]
    fn assert_comments(text: &str) {
        for c in [
            "# Top comment: keep me.",
            "id = \"acme/x\"   # trailing id comment",
            "# Roles comment.",
            "# Alice comment.",
            "# SSH keys of alice.",
            "roles = [\"developer\", \"reviewer\"] # bob's roles",
            "# Rules comment.",
        ] {
            assert!(text.contains(c), "lost `{c}` in:\n{text}");
        }
        policy::parse(text, base()).unwrap();
    }

    #[track_caller]
    fn refused_with(r: Result<Change, AdminError>, needle: &str) {
        match r {
            Err(AdminError::Refused { message, .. }) => {
                assert!(message.contains(needle), "{message}")
            }
            other => panic!("expected refusal with `{needle}`, got {other:?}"),
        }
    }

    #[test]
    fn add_person_keeps_comments_and_order() {
        let c = add_person(
            &policy_text(),
            base(),
            "carol",
            Some("Carol"),
            &["reviewer".into()],
        )
        .unwrap();
        assert_comments(&c.text);
        let carol = c.text.find("[people.carol]").unwrap();
        assert!(carol > c.text.find("[people.bob]").unwrap());
        assert!(
            carol < c.text.find("# Rules comment.").unwrap(),
            "{}",
            c.text
        );
        assert!(c
            .text
            .contains("[people.carol]\nname = \"Carol\"\nroles = [\"reviewer\"]\n"));
        let p = policy::parse(&c.text, base()).unwrap();
        assert!(p.people["carol"].roles.contains("reviewer"));
        assert_eq!(c.summary, "added person `carol` with roles reviewer");
    }

    #[test]
    fn add_person_refusals() {
        refused_with(
            add_person(&policy_text(), base(), "alice", None, &[]),
            "already exists",
        );
        refused_with(
            add_person(&policy_text(), base(), "a b", None, &[]),
            "not a valid person id",
        );
        refused_with(
            add_person(&policy_text(), base(), "carol", None, &["ops".into()]),
            "role `ops` is not declared",
        );
    }

    #[test]
    fn comments_under_the_last_person_stay_with_it() {
        let text = policy_text().replacen(
            "\n# Rules comment.",
            "# revoked = 2026-11-01\n\n# Rules comment.",
            1,
        );
        let c = add_person(&text, base(), "carol", None, &[]).unwrap();
        let expected = format!(
            "ssh = [\"{}\"]\n# revoked = 2026-11-01\n\n[people.carol]\nroles = []\n\n# Rules comment.\n[[rule]]",
            key(2, "bob@desk")
        );
        assert!(c.text.contains(&expected), "{}", c.text);
        policy::parse(&c.text, base()).unwrap();
    }

    #[test]
    fn first_person_goes_after_roles() {
        let text = policy_text();
        let start = text.find("# Alice comment.").unwrap();
        let end = text.find("# Rules comment.").unwrap();
        let empty = format!("{}{}", &text[..start], &text[end..]);
        let c = add_person(&empty, base(), "carol", None, &[]).unwrap();
        let carol = c.text.find("[people.carol]").unwrap();
        assert!(carol > c.text.find("[roles]").unwrap());
        assert!(carol < c.text.find("[[rule]]").unwrap(), "{}", c.text);
        policy::parse(&c.text, base()).unwrap();
    }

    #[test]
    fn remove_person_needs_with_keys() {
        refused_with(
            remove_person(&policy_text(), base(), "bob", false),
            "holds 1 key(s)",
        );
        let c = remove_person(&policy_text(), base(), "bob", true).unwrap();
        assert!(!c.text.contains("[people.bob]"));
        assert!(c.text.contains("# Rules comment."));
        assert!(c.text.contains("# Alice comment."));
        let c = add_person(&policy_text(), base(), "carol", None, &[]).unwrap();
        let c = remove_person(&c.text, base(), "carol", false).unwrap();
        assert_eq!(c.text, policy_text());
        refused_with(
            remove_person(&policy_text(), base(), "zed", false),
            "unknown person `zed`",
        );
    }

    #[test]
    fn add_ssh_key_keeps_layout_and_refuses_conflicts() {
        let c = add_ssh_key(&policy_text(), base(), "alice", &key(3, "alice@new"), None).unwrap();
        assert_comments(&c.text);
        let expected = format!(
            "ssh = [\n    \"{}\",\n    \"{}\",\n]",
            key(1, "alice@laptop"),
            key(3, "alice@new")
        );
        assert!(c.text.contains(&expected), "{}", c.text);
        let c = add_ssh_key(
            &c.text,
            base(),
            "bob",
            &key(4, "bob@2"),
            parse_date("2027-06-30").ok(),
        )
        .unwrap();
        let expected = format!(
            "ssh = [\"{}\", {{ key = \"{}\", expires = 2027-06-30 }}]",
            key(2, "bob@desk"),
            key(4, "bob@2")
        );
        assert!(c.text.contains(&expected), "{}", c.text);
        // a key held by someone else
        let r = add_ssh_key(&policy_text(), base(), "alice", &key(2, "stolen"), None);
        match r {
            Err(AdminError::Refused { message, help }) => {
                assert_eq!(message, format!("key {} is already held by `bob`", fpr(2)));
                assert!(help.contains("keys remove bob"), "{help}");
            }
            other => panic!("{other:?}"),
        }
        refused_with(
            add_ssh_key(&policy_text(), base(), "alice", &key(1, "again"), None),
            "person `alice` already holds key",
        );
        refused_with(
            add_ssh_key(&policy_text(), base(), "zed", &key(5, "z"), None),
            "unknown person",
        );
        refused_with(
            add_ssh_key(
                &policy_text(),
                base(),
                "alice",
                &format!("namespaces=\"git\" {}", key(5, "z")),
                None,
            ),
            "not a usable SSH public key",
        );
    }

    #[test]
    fn person_without_key_list_gets_one() {
        let c = add_person(&policy_text(), base(), "carol", None, &[]).unwrap();
        let c = add_ssh_key(&c.text, base(), "carol", &key(7, "c"), None).unwrap();
        assert!(
            c.text.contains(&format!(
                "[people.carol]\nroles = []\nssh = [\"{}\"]\n",
                key(7, "c")
            )),
            "{}",
            c.text
        );
        policy::parse(&c.text, base()).unwrap();
    }

    #[test]
    fn retire_converts_string_entries_and_updates_tables() {
        let at = parse_date("2026-11-29").unwrap();
        let c = retire_key(&policy_text(), base(), "alice", &fpr(1), at).unwrap();
        assert_comments(&c.text);
        let expected = format!(
            "ssh = [\n    {{ key = \"{}\", retired = 2026-11-29 }},\n]",
            key(1, "alice@laptop")
        );
        assert!(c.text.contains(&expected), "{}", c.text);
        let p = policy::parse(&c.text, base()).unwrap();
        let k = p
            .keyring
            .keys()
            .iter()
            .find(|k| k.person == "alice")
            .unwrap();
        assert_eq!(
            k.dates.retired,
            Some(time::days_from_civil(2026, 11, 29) * 86400)
        );
        // again, on the inline table: the date changes, the summary says so
        let at2 = parse_date("2026-12-01").unwrap();
        let fp_without_prefix = fpr(1).trim_start_matches("SHA256:").to_string();
        let c2 = retire_key(&c.text, base(), "alice", &fp_without_prefix, at2).unwrap();
        assert!(c2.text.contains("retired = 2026-12-01 }"), "{}", c2.text);
        assert!(c2.summary.contains("(was 2026-11-29)"), "{}", c2.summary);
        // bob's one-line list
        let c3 = retire_key(&policy_text(), base(), "bob", &fpr(2), at).unwrap();
        assert!(
            c3.text.contains(&format!(
                "ssh = [{{ key = \"{}\", retired = 2026-11-29 }}]",
                key(2, "bob@desk")
            )),
            "{}",
            c3.text
        );
        refused_with(
            retire_key(&policy_text(), base(), "alice", &fpr(2), at),
            "is held by `bob`, not `alice`",
        );
        refused_with(
            retire_key(&policy_text(), base(), "alice", &fpr(9), at),
            "holds no key",
        );
    }

    #[test]
    fn remove_key_and_roles() {
        let c = remove_key(&policy_text(), base(), "alice", &fpr(1)).unwrap();
        assert!(!c.text.contains(&key(1, "alice@laptop")));
        assert!(c.text.contains("# SSH keys of alice."));
        policy::parse(&c.text, base()).unwrap();

        let c = grant_role(&policy_text(), base(), "alice", "reviewer").unwrap();
        assert_comments(&c.text);
        assert!(
            c.text
                .contains("roles = [\"developer\", \"reviewer\"]\n# SSH keys"),
            "{}",
            c.text
        );
        refused_with(
            grant_role(&c.text, base(), "alice", "reviewer"),
            "already holds role",
        );
        refused_with(
            grant_role(&policy_text(), base(), "alice", "ops"),
            "not declared in [roles]",
        );
        match grant_role(&policy_text(), base(), "alice", "ops") {
            Err(AdminError::Refused { help, .. }) => {
                assert!(help.contains("countersign roles add ops"))
            }
            other => panic!("{other:?}"),
        }
        let c = revoke_role(&policy_text(), base(), "bob", "developer").unwrap();
        assert!(
            c.text.contains("roles = [\"reviewer\"] # bob's roles"),
            "{}",
            c.text
        );
        refused_with(
            revoke_role(&policy_text(), base(), "alice", "reviewer"),
            "does not hold role",
        );

        let c = add_role(&policy_text(), base(), "ops", "runs things").unwrap();
        assert_comments(&c.text);
        assert!(
            c.text
                .contains("reviewer = \"reviews\"\nops = \"runs things\"\n"),
            "{}",
            c.text
        );
        let c = grant_role(&c.text, base(), "alice", "ops").unwrap();
        policy::parse(&c.text, base()).unwrap();
        refused_with(
            add_role(&policy_text(), base(), "developer", "x"),
            "already declared",
        );
    }

    #[test]
    fn invalid_policy_is_not_edited() {
        let bad = policy_text().replace(
            "commit-signers = [\"developer\"]",
            "commit-signers = [\"dev\"]",
        );
        assert!(matches!(
            add_person(&bad, base(), "carol", None, &[]),
            Err(AdminError::InvalidBefore(_))
        ));
    }

    #[test]
    fn edits_that_fail_validation_are_refused() {
        // A change that validation refuses comes back as InvalidAfter.
        let text = policy_text();
        let (_, mut doc) = load(&text, base()).unwrap();
        let t = person_table(&mut doc, "alice").unwrap();
        push_styled(array_mut(t, "roles").unwrap(), "nope");
        assert!(matches!(
            finish(&doc, base(), String::new()),
            Err(AdminError::InvalidAfter(_))
        ));
    }

    #[test]
    fn person_ids_from_principals() {
        assert_eq!(
            person_id_from("Alice.Smith@example.com").as_deref(),
            Some("alice-smith")
        );
        assert_eq!(person_id_from("bob").as_deref(), Some("bob"));
        assert_eq!(person_id_from("@x"), None);
        let people: BTreeSet<String> = ["alice".to_string()].into();
        let mut map = BTreeMap::new();
        let m =
            map_principals(&["alice@corp.com".into(), "al@home".into()], &map, &people).unwrap();
        assert_eq!(
            (m.person.as_str(), m.create, m.how),
            ("alice", false, "existing person")
        );
        map.insert("al@home".to_string(), "bob".to_string());
        assert!(
            map_principals(&["alice@corp.com".into(), "al@home".into()], &map, &people)
                .unwrap_err()
                .contains("different people")
        );
        assert!(map_principals(&["*@corp.com".into()], &BTreeMap::new(), &people).is_err());
    }

    #[test]
    fn allowed_signers_import() {
        let signers = format!(
            "# team keys\n\nalice@corp.com,al@home namespaces=\"git\",valid-before=\"20271231\" {}\n\"Carol.D@corp.com\" {}\ndave@corp.com namespaces=\"file\" {}\nbob@corp.com {}\n",
            key(3, "a2"),
            key(4, "c"),
            key(5, "d"),
            key(2, "bob again")
        );
        let c = import_allowed_signers(&policy_text(), base(), &signers, &BTreeMap::new()).unwrap();
        assert_comments(&c.text);
        let p = policy::parse(&c.text, base()).unwrap();
        assert!(p.people["carol-d"].roles.is_empty());
        assert!(!p.people.contains_key("dave"));
        let k = p
            .keyring
            .keys()
            .iter()
            .find(|k| k.fingerprint == fpr(3))
            .unwrap();
        assert_eq!(k.person, "alice");
        assert_eq!(
            k.dates.expires,
            Some(time::days_from_civil(2027, 12, 31) * 86400)
        );
        let report = c.report.join("\n");
        assert!(
            report.contains("line 3: alice@corp.com,al@home -> alice (existing person): added key"),
            "{report}"
        );
        assert!(report.contains("-> carol-d (new person)"), "{report}");
        assert!(report.contains("line 5: skipped"), "{report}");
        assert!(report.contains("already held, unchanged"), "{report}");
        assert_eq!(
            c.summary,
            "imported 2 ssh key(s) from an allowed-signers file (1 new person(s))"
        );

        // a key held by someone else refuses everything
        let stolen = format!("carol@corp.com {}\n", key(1, "alice's"));
        refused_with(
            import_allowed_signers(&policy_text(), base(), &stolen, &BTreeMap::new()),
            "already held by `alice`",
        );
        let map: BTreeMap<String, String> =
            [("carol@corp.com".to_string(), "alice".to_string())].into();
        let c = import_allowed_signers(&policy_text(), base(), &stolen, &map).unwrap();
        assert_eq!(c.text, policy_text());
        refused_with(
            import_allowed_signers(
                &policy_text(),
                base(),
                &format!("x cert-authority {}\n", key(6, "ca")),
                &BTreeMap::new(),
            ),
            "cert-authority",
        );
        refused_with(
            import_allowed_signers(&policy_text(), base(), "justonefield\n", &BTreeMap::new()),
            "line 1",
        );
    }

    #[test]
    fn openpgp_import_and_retire() {
        use openpgp::cert::CertBuilder;
        use openpgp::serialize::SerializeInto;
        let dir = std::env::temp_dir().join(format!("cs-admin-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("keys")).unwrap();
        let (cert, _) = CertBuilder::general_purpose(Some("Erin Example <Erin@example.com>"))
            .generate()
            .unwrap();
        let cert = cert.strip_secret_key_material();
        let certs = vec![CertSource {
            source: "erin.asc".into(),
            cert: cert.clone(),
        }];
        let mut store = |person: &str, c: &openpgp::Cert| -> Result<String, String> {
            let rel = format!("keys/{person}-{}.asc", fpr16(c));
            std::fs::write(
                dir.join(&rel),
                c.armored().to_vec().map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?;
            Ok(rel)
        };
        let c = import_openpgp(&policy_text(), &dir, &certs, &BTreeMap::new(), &mut store).unwrap();
        assert_comments_at(&c.text, &dir);
        let rel = format!("keys/erin-{}.asc", fpr16(&cert));
        assert!(
            c.text.contains(&format!(
                "[people.erin]\nname = \"Erin Example\"\nroles = []\nopenpgp = [\"{rel}\"]\n"
            )),
            "{}",
            c.text
        );
        // importing again changes nothing
        let again = import_openpgp(&c.text, &dir, &certs, &BTreeMap::new(), &mut store).unwrap();
        assert_eq!(again.text, c.text);
        // the same cert for another person is refused
        let r = add_openpgp_cert(
            &c.text,
            &dir,
            "alice",
            &rel,
            std::slice::from_ref(&cert),
            None,
        );
        match r {
            Err(AdminError::Refused { message, .. }) => assert_eq!(
                message,
                format!(
                    "key {} is already held by `erin`",
                    cert.fingerprint().to_hex()
                )
            ),
            other => panic!("{other:?}"),
        }
        // retire by key id converts the entry
        let at = parse_date("2026-11-29").unwrap();
        let r = retire_key(
            &c.text,
            &dir,
            "erin",
            &cert.keyid().to_hex().to_lowercase(),
            at,
        )
        .unwrap();
        assert!(
            r.text.contains(&format!(
                "openpgp = [{{ cert = \"{rel}\", retired = 2026-11-29 }}]"
            )),
            "{}",
            r.text
        );
        let listed = list_keys(&r.text, &dir).unwrap();
        let k = listed.iter().find(|k| k.person == "erin").unwrap();
        assert_eq!(k.kind, "openpgp");
        assert_eq!(k.retired.as_deref(), Some("2026-11-29T00:00:00Z"));
        assert_eq!(k.source, rel);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[track_caller]
    fn assert_comments_at(text: &str, dir: &Path) {
        assert!(text.contains("# Alice comment.") && text.contains("# Rules comment."));
        policy::parse(text, dir).unwrap();
    }

    #[test]
    fn listing() {
        let people = people(&policy_text(), base()).unwrap();
        assert_eq!(people.len(), 2);
        assert_eq!(people[1].roles, vec!["developer", "reviewer"]);
        assert_eq!(people[1].keys, 1);
        let keys = list_keys(&policy_text(), base()).unwrap();
        assert_eq!(keys[0].fingerprint, fpr(1));
        assert_eq!(keys[0].source, "inline");
        let roles = list_roles(&policy_text(), base()).unwrap();
        assert_eq!(roles[0].2, vec!["alice", "bob"]);
    }

    #[test]
    fn ssh_validity_dates() {
        assert_eq!(
            ssh_validity_date("20271231").unwrap().to_string(),
            "2027-12-31"
        );
        assert_eq!(
            ssh_validity_date("202712311530Z").unwrap().to_string(),
            "2027-12-31T15:30:00Z"
        );
        assert!(ssh_validity_date("2027").is_none());
    }
}
