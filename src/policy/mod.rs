//! The policy: who holds which keys and roles, and how protected refs move.
//!
//! Loading has two phases. The TOML is parsed keeping positions; then every
//! field is checked and *every* problem is collected with `file:line:col`
//! and the offending text underlined, so an admin fixes the file in one
//! round. Unknown fields are errors: a typo must never weaken a rule. The
//! policy never trusts names or e-mails; only keys identify people.

pub mod glob;
pub mod keys;
pub mod limits;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml_edit::{ImDocument, Item, TableLike, Value};

use self::glob::RefPattern;
use self::keys::{KeyDates, KeySource, Keyring};
use self::limits::Limits;
use crate::time::{self, Timestamp};

/// Where `expires`/`revoked` dates apply: a person or a single key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dates {
    /// Not accepted from this instant on.
    pub expires: Option<Timestamp>,
    /// Withdrawn at this instant: rejected from then on.
    pub revoked: Option<Timestamp>,
}

/// A person: the unit that separation-of-duties rules count.
#[derive(Debug, Clone)]
pub struct Person {
    /// The table key, e.g. `alice`.
    pub id: String,
    /// Display name (a claim for humans).
    pub name: String,
    /// Roles held.
    pub roles: BTreeSet<String>,
    /// Dates for the whole person.
    pub dates: Dates,
}

/// One `[[rule]]`.
#[derive(Debug, Clone)]
pub struct Rule {
    /// 1-based position in the file.
    pub number: usize,
    /// Optional name.
    pub name: Option<String>,
    /// Ref patterns this rule protects.
    pub refs: Vec<RefPattern>,
    /// Roles allowed to sign commits newly reachable from the ref.
    pub commit_signers: Option<Vec<String>>,
    /// Roles allowed to sign annotated tags created at the ref.
    pub tag_signers: Option<Vec<String>>,
    /// Non-fast-forward updates allowed.
    pub force_push: bool,
    /// Deletion allowed.
    pub delete: bool,
    /// History reachable from this commit is not checked.
    pub baseline: Option<String>,
    /// Separation-of-duties rules for changes landing on the ref.
    pub merge: Option<MergeRule>,
}

/// `[rule.merge]`: how changes land on a protected ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeRule {
    /// Every first-parent commit newly on the ref must be an approved merge.
    pub required: bool,
    /// Roles that may sign the merge commit.
    pub signers: Vec<String>,
    /// Every entry must be met, each by distinct people.
    pub approvals: Vec<ApprovalRequirement>,
    /// No approver signed any commit in the merged range.
    pub approvers_distinct_from_authors: bool,
    /// The merger did not approve.
    pub merger_distinct_from_approvers: bool,
    /// The merger signed no commit in the merged range.
    pub merger_distinct_from_authors: bool,
}

/// `{ role = "reviewer", count = 2 }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequirement {
    /// Role the approvers must hold.
    pub role: String,
    /// How many distinct people.
    pub count: usize,
}

impl fmt::Display for ApprovalRequirement {
    /// `2 x reviewer`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} x {}", self.count, self.role)
    }
}

impl Rule {
    /// Does this rule protect `refname`?
    pub fn matches(&self, refname: &str) -> bool {
        self.refs.iter().any(|p| p.matches(refname))
    }

    /// As [`Rule::matches`], optionally ignoring ASCII case.
    pub fn matches_with(&self, refname: &str, ignore_case: bool) -> bool {
        self.refs
            .iter()
            .any(|p| p.matches_with(refname, ignore_case))
    }

    /// How the rule is named in messages: `rule #1 "protected branches"`
    /// (a built-in rule, number 0, by its name alone).
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) if self.number == 0 => n.clone(),
            Some(n) => format!("rule #{} \"{}\"", self.number, n),
            None => {
                let pats: Vec<&str> = self.refs.iter().map(|p| p.as_str()).collect();
                format!("rule #{} ({})", self.number, pats.join(", "))
            }
        }
    }
}

/// A loaded and validated policy.
#[derive(Debug)]
pub struct Policy {
    /// The file it came from.
    pub path: PathBuf,
    /// `repository.id`.
    pub repository_id: String,
    /// Declared roles and their descriptions.
    pub roles: BTreeMap<String, String>,
    /// People by id.
    pub people: BTreeMap<String, Person>,
    /// Rules in file order.
    pub rules: Vec<Rule>,
    /// Every key, mapped to its person.
    pub keyring: Keyring,
    /// Budgets for one run (`[limits]`, else defaults).
    pub limits: Limits,
    /// `[policy-changes]`: who may change the policy when it lives on the
    /// policy ref (see `governance`).
    pub policy_changes: Option<PolicyChanges>,
    /// `[log] server-key`: the public key the server signs its ref-state
    /// log with (see `ledger`), published so that every clone can check
    /// the log. Only ed25519 keys are accepted.
    pub log_key: Option<ssh_key::PublicKey>,
}

/// `[policy-changes]`: who signs a change of the policy ref, and whose
/// approvals it needs. Judged with the same engine as a merge: the signer
/// of a change never counts as its approver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyChanges {
    /// Roles that may sign a policy commit.
    pub signers: Vec<String>,
    /// Approvals needed, from distinct people other than the signer.
    pub approvals: Vec<ApprovalRequirement>,
}

impl PolicyChanges {
    /// The rule a policy-ref update is judged by: signed by `signers`,
    /// fast-forward only, never deleted, every commit approved (exact
    /// result) by other people, as `approvals` demands.
    pub fn rule(&self, refname: &str) -> Rule {
        Rule {
            number: 0,
            name: Some(
                "[policy-changes] of the policy in force (built-in rule of the policy ref)".into(),
            ),
            refs: RefPattern::new(refname).into_iter().collect(),
            commit_signers: Some(self.signers.clone()),
            tag_signers: None,
            force_push: false,
            delete: false,
            baseline: None,
            merge: Some(MergeRule {
                required: true,
                signers: self.signers.clone(),
                approvals: self.approvals.clone(),
                approvers_distinct_from_authors: true,
                merger_distinct_from_approvers: true,
                merger_distinct_from_authors: false,
            }),
        }
    }
}

/// Where the files a policy names (OpenPGP certificates) are read from: a
/// directory beside a policy file, or the tree of a policy commit.
pub trait KeyFiles {
    /// The bytes of the file the policy names as `rel`.
    ///
    /// # Errors
    ///
    /// [`keys::KeyError`] when there is no such file or it cannot be read.
    fn read(&self, rel: &str) -> Result<Vec<u8>, keys::KeyError>;
    /// How to name `rel` in a message.
    fn describe(&self, rel: &str) -> String;
}

/// Key files relative to a directory (the policy file's).
pub struct DirFiles<'a>(pub &'a Path);

impl KeyFiles for DirFiles<'_> {
    fn read(&self, rel: &str) -> Result<Vec<u8>, keys::KeyError> {
        std::fs::read(self.0.join(rel)).map_err(|e| keys::KeyError::Unreadable(e.to_string()))
    }
    fn describe(&self, rel: &str) -> String {
        self.0.join(rel).display().to_string()
    }
}

/// One problem found in a policy file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, 0 if unknown.
    pub line: usize,
    /// 1-based column (in characters), 0 if unknown.
    pub col: usize,
    /// What is wrong.
    pub message: String,
    /// The source line, and the underline under the offending text.
    pub excerpt: Option<(String, String)>,
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file does not exist.
    #[error("no policy file at `{}`", .0.display())]
    Missing(PathBuf),
    /// The file exists but cannot be read.
    #[error("cannot read the policy file `{}`: {}", .0.display(), .1)]
    Unreadable(PathBuf, std::io::Error),
    /// The file was read but has problems.
    #[error("the policy file `{}` has {} problem(s)", .path.display(), .problems.len())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

impl PolicyError {
    /// Every problem, rendered one per block as `file:line:col: message`
    /// with the offending text underlined.
    pub fn details(&self) -> String {
        match self {
            PolicyError::Invalid { path, problems } => {
                let mut out = String::new();
                for p in problems {
                    out.push_str(&p.render(path));
                }
                out
            }
            other => format!("{other}\n"),
        }
    }
}

impl Problem {
    /// `file:line:col: message`, then the excerpt.
    pub fn render(&self, path: &Path) -> String {
        let mut out = format!(
            "{}:{}:{}: {}\n",
            path.display(),
            self.line,
            self.col,
            self.message
        );
        if let Some((src, marks)) = &self.excerpt {
            out.push_str(&format!("    | {src}\n    | {marks}\n"));
        }
        out
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)
    }
}

/// Load the policy at `path`. Key files named by the policy are read
/// relative to the policy's directory.
///
/// # Errors
///
/// [`PolicyError`]: the file is missing or unreadable, or does not validate (every problem, with positions).
pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    load_with_bytes(path).map(|(p, _)| p)
}

/// [`load`], also returning the file's bytes (whose digest identifies the
/// policy a decision was made under).
///
/// # Errors
///
/// As for [`load`].
pub fn load_with_bytes(path: &Path) -> Result<(Policy, Vec<u8>), PolicyError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PolicyError::Missing(path.to_path_buf()))
        }
        Err(e) => return Err(PolicyError::Unreadable(path.to_path_buf(), e)),
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let offset = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let ctx = Ctx::new(&text);
            let p = ctx.problem(
                Some(offset..offset + 1),
                "the policy is not valid UTF-8".into(),
            );
            return Err(PolicyError::Invalid {
                path: path.to_path_buf(),
                problems: vec![p],
            });
        }
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&text, &base)
        .map(|mut p| {
            p.path = path.to_path_buf();
            (p, text.into_bytes())
        })
        .map_err(|problems| PolicyError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
}

/// Parse and validate policy text; `base` resolves relative key paths.
///
/// # Errors
///
/// Every [`Problem`] found, each with its position in `text`.
pub fn parse(text: &str, base: &Path) -> Result<Policy, Vec<Problem>> {
    parse_with(text, &DirFiles(base))
}

/// Parse and validate policy text; `files` reads the key files it names.
///
/// # Errors
///
/// Every [`Problem`] found, each with its position in `text`.
pub fn parse_with(text: &str, files: &dyn KeyFiles) -> Result<Policy, Vec<Problem>> {
    let mut ctx = Ctx::new(text);
    let doc = match ImDocument::parse(text) {
        Ok(d) => d,
        Err(e) => {
            let msg = e.message().trim().to_string();
            return Err(vec![ctx.problem(e.span(), format!("not valid TOML: {msg}"))]);
        }
    };
    let root = doc.as_table();
    ctx.unknown_keys(
        root,
        &[
            "repository",
            "roles",
            "people",
            "rule",
            "limits",
            "policy-changes",
            "log",
        ],
        "top level",
    );

    // [repository]
    let mut repository_id = String::new();
    match root.get("repository").and_then(Item::as_table_like) {
        Some(repo) => {
            ctx.unknown_keys(repo, &["id"], "[repository]");
            match ctx.string(repo, "id", "[repository]") {
                Some((id, span)) if id.trim().is_empty() => {
                    ctx.push(span, "`repository.id` must not be empty".into())
                }
                Some((id, span)) if id.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',') => ctx.push(
                    span,
                    "`repository.id` must not contain spaces, commas or control characters (it is written into approval trailers)".into(),
                ),
                Some((id, _)) => repository_id = id,
                None if repo.get("id").is_none() => ctx.push(
                    root.key("repository").and_then(|k| k.span()),
                    "`[repository]` needs `id = \"...\"`, a name that approvals are bound to"
                        .into(),
                ),
                None => {}
            }
        }
        None => {
            let span = root.key("repository").and_then(|k| k.span());
            ctx.push(
                span,
                "missing `[repository]` table with `id = \"...\"`".into(),
            );
        }
    }

    // [roles]
    let mut roles = BTreeMap::new();
    match root.get("roles") {
        Some(item) => match item.as_table_like() {
            Some(t) => {
                for (name, value) in t.iter() {
                    let span = t.key(name).and_then(|k| k.span());
                    if !valid_name(name) {
                        ctx.push(
                            span.clone(),
                            format!("role name `{name}` must use only a-z, 0-9, `-` and `_`"),
                        );
                    }
                    match value.as_str() {
                        Some(desc) => {
                            roles.insert(name.to_string(), desc.to_string());
                        }
                        None => ctx.push(
                            value.span().or(span),
                            format!("role `{name}` must be a string describing it, e.g. {name} = \"writes code\""),
                        ),
                    }
                }
            }
            None => ctx.push(
                item.span(),
                "`roles` must be a table of role = \"description\"".into(),
            ),
        },
        None => ctx.push(
            None,
            "missing `[roles]` table declaring the roles people and rules use".into(),
        ),
    }

    // [people.*]
    let mut people = BTreeMap::new();
    let mut keyring = Keyring::default();
    if let Some(item) = root.get("people") {
        match item.as_table_like() {
            Some(t) => {
                for (id, value) in t.iter() {
                    let key_span = t.key(id).and_then(|k| k.span());
                    if !valid_name(id) {
                        ctx.push(
                            key_span.clone(),
                            format!("person id `{id}` must use only a-z, A-Z, 0-9, `-` and `_`"),
                        );
                    }
                    if let Some(p) =
                        parse_person(&mut ctx, id, value, key_span, &roles, files, &mut keyring)
                    {
                        people.insert(id.to_string(), p);
                    }
                }
            }
            None => ctx.push(
                item.span(),
                "`people` must be a table: [people.alice]".into(),
            ),
        }
    }

    // [[rule]]
    let mut rules = Vec::new();
    match root.get("rule") {
        Some(Item::ArrayOfTables(arr)) => {
            for (i, t) in arr.iter().enumerate() {
                if let Some(r) = parse_rule(&mut ctx, i + 1, t, &roles) {
                    rules.push(r);
                }
            }
        }
        Some(Item::Value(Value::Array(arr))) => {
            for (i, v) in arr.iter().enumerate() {
                match v.as_inline_table() {
                    Some(t) => {
                        if let Some(r) = parse_rule(&mut ctx, i + 1, t, &roles) {
                            rules.push(r);
                        }
                    }
                    None => ctx.push(v.span(), "each rule must be a table".into()),
                }
            }
        }
        Some(other) => ctx.push(
            other.span(),
            "`rule` must be written as [[rule]] tables".into(),
        ),
        None => {}
    }

    let policy_changes = root
        .get("policy-changes")
        .and_then(|item| parse_policy_changes(&mut ctx, item, &roles));
    let limits = parse_limits(&mut ctx, root.get("limits"));
    let log_key = root.get("log").and_then(|item| parse_log(&mut ctx, item));

    if ctx.problems.is_empty() {
        Ok(Policy {
            path: PathBuf::new(),
            repository_id,
            roles,
            people,
            rules,
            keyring,
            limits,
            policy_changes,
            log_key,
        })
    } else {
        Err(ctx.problems)
    }
}

/// `[limits]`: each key a whole number within the limit's range.
fn parse_limits(ctx: &mut Ctx, item: Option<&Item>) -> Limits {
    let mut limits = Limits::default();
    let Some(item) = item else {
        return limits;
    };
    let Some(t) = item.as_table_like() else {
        ctx.push(item.span(), "`limits` must be a table: [limits]".into());
        return limits;
    };
    let keys: Vec<&str> = crate::policy::limits::SPECS.iter().map(|s| s.key).collect();
    ctx.unknown_keys(t, &keys, "[limits]");
    for spec in crate::policy::limits::SPECS {
        let Some(v) = t.get(spec.key) else { continue };
        match v.as_integer().and_then(|n| u64::try_from(n).ok()) {
            Some(n) if (spec.min..=spec.max).contains(&n) => {
                limits.set(spec.key, n);
            }
            _ => ctx.push(
                v.span(),
                format!(
                    "`{}` in [limits] must be a whole number from {} to {} (default {}): {}",
                    spec.key, spec.min, spec.max, spec.default, spec.what
                ),
            ),
        }
    }
    limits
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn parse_person(
    ctx: &mut Ctx,
    id: &str,
    item: &Item,
    key_span: Option<Range<usize>>,
    roles: &BTreeMap<String, String>,
    files: &dyn KeyFiles,
    keyring: &mut Keyring,
) -> Option<Person> {
    let where_ = format!("[people.{id}]");
    let Some(t) = item.as_table_like() else {
        ctx.push(
            item.span().or(key_span),
            format!("`{where_}` must be a table"),
        );
        return None;
    };
    ctx.unknown_keys(
        t,
        &["name", "roles", "ssh", "openpgp", "expires", "revoked"],
        &where_,
    );
    let name = ctx
        .string(t, "name", &where_)
        .map(|(s, _)| s)
        .unwrap_or_default();
    let mut person_roles = BTreeSet::new();
    for (role, span) in ctx.string_list(t, "roles", &where_) {
        if !roles.contains_key(&role) {
            ctx.push(
                span,
                format!("role `{role}` of person `{id}` is not declared in [roles]"),
            );
        } else if !person_roles.insert(role.clone()) {
            ctx.push(
                span,
                format!("role `{role}` is listed twice for person `{id}`"),
            );
        }
    }
    let dates = ctx.dates(t, &where_);
    let mut key_count = 0;
    if let Some(item) = t.get("ssh") {
        for (entry, span) in ctx.key_entries(item, "key", &where_, "ssh") {
            key_count += 1;
            match keys::parse_ssh(&entry.text) {
                Ok(key) => {
                    if let Err(e) = keyring.add_ssh(id, key, entry.dates) {
                        ctx.push(
                            span,
                            format!("this SSH key is {e}: one key belongs to one person"),
                        );
                    }
                }
                Err(e) => ctx.push(span, format!("not a valid SSH public key: {e}")),
            }
        }
    }
    if let Some(item) = t.get("openpgp") {
        for (entry, span) in ctx.key_entries(item, "cert", &where_, "openpgp") {
            key_count += 1;
            match files
                .read(&entry.text)
                .and_then(|bytes| keys::parse_certs(&bytes))
            {
                Ok(certs) => {
                    for cert in certs {
                        let source = KeySource::File(entry.text.clone());
                        if let Err(e) = keyring.add_openpgp(id, cert, entry.dates, source) {
                            ctx.push(span.clone(), format!("a key in this certificate is {e}: one key belongs to one person"));
                        }
                    }
                }
                Err(e) => ctx.push(
                    span,
                    format!(
                        "cannot use OpenPGP certificate `{}`: {e}",
                        files.describe(&entry.text)
                    ),
                ),
            }
        }
    }
    if key_count == 0 && t.get("ssh").is_none() && t.get("openpgp").is_none() {
        // A person without keys can never sign; allowed (e.g. pending
        // onboarding) but pointless, so say nothing.
    }
    Some(Person {
        id: id.to_string(),
        name,
        roles: person_roles,
        dates,
    })
}

fn parse_rule(
    ctx: &mut Ctx,
    number: usize,
    t: &dyn TableLike,
    roles: &BTreeMap<String, String>,
) -> Option<Rule> {
    let where_ = format!("rule #{number}");
    ctx.unknown_keys(
        t,
        &[
            "name",
            "refs",
            "commit-signers",
            "tag-signers",
            "force-push",
            "delete",
            "baseline",
            "merge",
        ],
        &where_,
    );
    let name = ctx.string(t, "name", &where_).map(|(s, _)| s);
    let mut refs = Vec::new();
    for (pat, span) in ctx.string_list(t, "refs", &where_) {
        match RefPattern::new(&pat) {
            Ok(p) => refs.push(p),
            Err(e) => ctx.push(span, format!("bad ref pattern `{pat}`: {e}")),
        }
    }
    if refs.is_empty() && t.get("refs").is_some() {
        if ctx
            .problems
            .iter()
            .all(|p| !p.message.starts_with("bad ref pattern"))
        {
            ctx.push(
                t.get("refs").and_then(Item::span),
                format!("{where_} has an empty `refs` list: it would protect nothing"),
            );
        }
    } else if t.get("refs").is_none() {
        ctx.push(
            None,
            format!("{where_} needs `refs = [\"refs/heads/main\"]`"),
        );
    }
    let commit_signers = role_list(ctx, t, "commit-signers", &where_, roles);
    let tag_signers = role_list(ctx, t, "tag-signers", &where_, roles);
    let merge = t
        .get("merge")
        .and_then(|item| parse_merge(ctx, item, &where_, roles));
    let force_push = ctx.boolean(t, "force-push", &where_).unwrap_or(false);
    let delete = ctx.boolean(t, "delete", &where_).unwrap_or(false);
    let baseline = match ctx.string(t, "baseline", &where_) {
        Some((b, span)) => {
            if (b.len() == 40 || b.len() == 64) && b.bytes().all(|c| c.is_ascii_hexdigit()) {
                Some(b.to_ascii_lowercase())
            } else {
                ctx.push(
                    span,
                    "`baseline` must be a full commit id (40 hex digits, or 64 in a SHA-256 repository)".into(),
                );
                None
            }
        }
        None => None,
    };
    Some(Rule {
        number,
        name,
        refs,
        commit_signers,
        tag_signers,
        force_push,
        delete,
        baseline,
        merge,
    })
}

/// A list of declared roles under `key`; `None` when the key is absent.
fn role_list(
    ctx: &mut Ctx,
    t: &dyn TableLike,
    key: &str,
    where_: &str,
    roles: &BTreeMap<String, String>,
) -> Option<Vec<String>> {
    t.get(key)?;
    let mut out = Vec::new();
    let entries = ctx.string_list(t, key, where_);
    if entries.is_empty() {
        ctx.push(
            t.get(key).and_then(Item::span),
            format!(
                "`{key}` in {where_} is empty: no one could ever sign; remove it or name a role"
            ),
        );
    }
    for (role, span) in entries {
        if roles.contains_key(&role) {
            out.push(role);
        } else {
            ctx.push(
                span,
                format!("role `{role}` in {where_} is not declared in [roles]"),
            );
        }
    }
    Some(out)
}

fn parse_merge(
    ctx: &mut Ctx,
    item: &Item,
    rule_where: &str,
    roles: &BTreeMap<String, String>,
) -> Option<MergeRule> {
    let where_ = format!("{rule_where} [rule.merge]");
    let Some(t) = item.as_table_like() else {
        ctx.push(
            item.span(),
            format!("`merge` in {rule_where} must be a table: [rule.merge]"),
        );
        return None;
    };
    ctx.unknown_keys(
        t,
        &[
            "required",
            "signers",
            "approvals",
            "approvers-distinct-from-authors",
            "merger-distinct-from-approvers",
            "merger-distinct-from-authors",
        ],
        &where_,
    );
    let required = ctx.boolean(t, "required", &where_).unwrap_or(true);
    let signers = role_list(ctx, t, "signers", &where_, roles);
    if signers.is_none() {
        ctx.push(
            item.span(),
            format!("{where_} needs `signers = [\"maintainer\"]`: the roles that may sign the merge commit"),
        );
    }
    let approvals = parse_approvals(ctx, t, &where_, roles);
    let flag =
        |ctx: &mut Ctx, key: &str, default: bool| ctx.boolean(t, key, &where_).unwrap_or(default);
    Some(MergeRule {
        required,
        signers: signers.unwrap_or_default(),
        approvals,
        approvers_distinct_from_authors: flag(ctx, "approvers-distinct-from-authors", true),
        merger_distinct_from_approvers: flag(ctx, "merger-distinct-from-approvers", true),
        merger_distinct_from_authors: flag(ctx, "merger-distinct-from-authors", false),
    })
}

/// `approvals = [{ role = "reviewer", count = 2 }, ...]` in `t`.
fn parse_approvals(
    ctx: &mut Ctx,
    t: &dyn TableLike,
    where_: &str,
    roles: &BTreeMap<String, String>,
) -> Vec<ApprovalRequirement> {
    let mut approvals = Vec::new();
    if let Some(a) = t.get("approvals") {
        match a.as_array() {
            Some(arr) => {
                for v in arr.iter() {
                    let Some(entry) = v.as_inline_table() else {
                        ctx.push(v.span(), format!("entries of `approvals` in {where_} must be {{ role = \"reviewer\", count = 2 }}"));
                        continue;
                    };
                    ctx.unknown_keys(entry, &["role", "count"], where_);
                    let role = ctx.string(entry, "role", where_);
                    let count = entry.get("count").map(|c| (c.as_integer(), c.span()));
                    match (role, count) {
                        (Some((role, span)), Some((Some(n), cspan))) => {
                            if !roles.contains_key(&role) {
                                ctx.push(
                                    span,
                                    format!("role `{role}` in {where_} is not declared in [roles]"),
                                );
                            } else if !(1..=100).contains(&n) {
                                ctx.push(
                                    cspan,
                                    format!("`count` in {where_} must be between 1 and 100"),
                                );
                            } else {
                                approvals.push(ApprovalRequirement {
                                    role,
                                    count: n as usize,
                                });
                            }
                        }
                        (_, Some((None, cspan))) => {
                            ctx.push(cspan, format!("`count` in {where_} must be a whole number"))
                        }
                        _ => ctx.push(
                            v.span(),
                            format!(
                                "each entry of `approvals` in {where_} needs `role` and `count`"
                            ),
                        ),
                    }
                }
            }
            None => ctx.push(a.span(), format!("`approvals` in {where_} must be a list")),
        }
    }
    approvals
}

/// `[log]`: `server-key`, the server's ed25519 public key (one OpenSSH line).
fn parse_log(ctx: &mut Ctx, item: &Item) -> Option<ssh_key::PublicKey> {
    let where_ = "[log]";
    let Some(t) = item.as_table_like() else {
        ctx.push(item.span(), "`log` must be a table: [log]".into());
        return None;
    };
    ctx.unknown_keys(t, &["server-key"], where_);
    if t.get("server-key").is_none() {
        ctx.push(
            item.span(),
            format!("{where_} needs `server-key = \"ssh-ed25519 AAAA...\"` (`countersign log init` prints it)"),
        );
        return None;
    }
    let (text, span) = ctx.string(t, "server-key", where_)?;
    match keys::parse_ssh(&text) {
        Ok(k) if matches!(k.key_data(), ssh_key::public::KeyData::Ed25519(_)) => Some(k),
        Ok(k) => {
            ctx.push(
                span,
                format!(
                    "`server-key` in {where_} is a {} key; the server signs its log with ed25519 (`countersign log init` prints the key to paste here)",
                    k.algorithm()
                ),
            );
            None
        }
        Err(e) => {
            ctx.push(
                span,
                format!("`server-key` in {where_} is not an OpenSSH public key: {e} (`countersign log init` prints the key to paste here)"),
            );
            None
        }
    }
}

/// `[policy-changes]`: `signers` and a non-empty `approvals`.
fn parse_policy_changes(
    ctx: &mut Ctx,
    item: &Item,
    roles: &BTreeMap<String, String>,
) -> Option<PolicyChanges> {
    let where_ = "[policy-changes]";
    let Some(t) = item.as_table_like() else {
        ctx.push(
            item.span(),
            "`policy-changes` must be a table: [policy-changes]".into(),
        );
        return None;
    };
    ctx.unknown_keys(t, &["signers", "approvals"], where_);
    let signers = role_list(ctx, t, "signers", where_, roles);
    if signers.is_none() {
        ctx.push(
            item.span(),
            format!(
                "{where_} needs `signers = [\"admin\"]`: the roles that may sign a policy change"
            ),
        );
    }
    let approvals = parse_approvals(ctx, t, where_, roles);
    if approvals.is_empty() && t.get("approvals").is_none() {
        ctx.push(
            item.span(),
            format!("{where_} needs `approvals = [{{ role = \"admin\", count = 2 }}]`: a policy change always needs approvals from people other than its signer"),
        );
    } else if approvals.is_empty() {
        ctx.push(
            t.get("approvals").and_then(Item::span),
            format!("`approvals` in {where_} is empty: a policy change always needs approvals from people other than its signer"),
        );
    }
    Some(PolicyChanges {
        signers: signers.unwrap_or_default(),
        approvals,
    })
}

/// A key entry: the key text (or cert path) and its dates.
struct KeyEntry {
    text: String,
    dates: KeyDates,
}

/// Validation context: the source text and the problems found so far.
struct Ctx {
    line_starts: Vec<usize>,
    text: String,
    problems: Vec<Problem>,
}

impl Ctx {
    fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Ctx {
            line_starts,
            text: text.to_string(),
            problems: Vec::new(),
        }
    }

    fn problem(&self, span: Option<Range<usize>>, message: String) -> Problem {
        let Some(span) = span else {
            return Problem {
                line: 0,
                col: 0,
                message,
                excerpt: None,
            };
        };
        let start = span.start.min(self.text.len());
        let line_idx = match self.line_starts.binary_search(&start) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let line_start = self.line_starts[line_idx];
        let line_end = self.text[line_start..]
            .find('\n')
            .map_or(self.text.len(), |i| line_start + i);
        let line_text = self.text.get(line_start..line_end).unwrap_or("");
        let before = self.text.get(line_start..start).unwrap_or("");
        let col = before.chars().count() + 1;
        let end = span.end.clamp(start, line_end);
        let width = self
            .text
            .get(start..end)
            .map_or(1, |s| s.chars().count())
            .max(1);
        let src = crate::sanitize::escape(line_text);
        let pad: String = crate::sanitize::escape(before)
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        Problem {
            line: line_idx + 1,
            col,
            message,
            excerpt: Some((src, format!("{pad}{}", "^".repeat(width)))),
        }
    }

    fn push(&mut self, span: Option<Range<usize>>, message: String) {
        let p = self.problem(span, message);
        self.problems.push(p);
    }

    fn unknown_keys(&mut self, t: &dyn TableLike, allowed: &[&str], where_: &str) {
        for (k, _) in t.iter() {
            if !allowed.contains(&k) {
                let span = t.key(k).and_then(|k| k.span());
                self.push(
                    span,
                    format!(
                        "unknown field `{k}` in {where_}; expected one of: {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    fn string(
        &mut self,
        t: &dyn TableLike,
        key: &str,
        where_: &str,
    ) -> Option<(String, Option<Range<usize>>)> {
        let item = t.get(key)?;
        match item.as_str() {
            Some(s) => Some((s.to_string(), item.span())),
            None => {
                self.push(item.span(), format!("`{key}` in {where_} must be a string"));
                None
            }
        }
    }

    fn boolean(&mut self, t: &dyn TableLike, key: &str, where_: &str) -> Option<bool> {
        let item = t.get(key)?;
        match item.as_bool() {
            Some(b) => Some(b),
            None => {
                self.push(
                    item.span(),
                    format!("`{key}` in {where_} must be true or false"),
                );
                None
            }
        }
    }

    fn string_list(
        &mut self,
        t: &dyn TableLike,
        key: &str,
        where_: &str,
    ) -> Vec<(String, Option<Range<usize>>)> {
        let Some(item) = t.get(key) else {
            return Vec::new();
        };
        let Some(arr) = item.as_array() else {
            self.push(
                item.span(),
                format!("`{key}` in {where_} must be a list of strings, e.g. {key} = [\"...\"]"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for v in arr.iter() {
            match v.as_str() {
                Some(s) => out.push((s.to_string(), v.span())),
                None => self.push(
                    v.span(),
                    format!("entries of `{key}` in {where_} must be strings"),
                ),
            }
        }
        out
    }

    fn date(&mut self, item: &Item, key: &str, where_: &str) -> Option<Timestamp> {
        let parsed = item.as_datetime().map(time::from_toml);
        match parsed {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                self.push(item.span(), format!("`{key}` in {where_}: {e}"));
                None
            }
            None => {
                self.push(
                    item.span(),
                    format!("`{key}` in {where_} must be a date such as 2027-06-30 (no quotes)"),
                );
                None
            }
        }
    }

    fn dates(&mut self, t: &dyn TableLike, where_: &str) -> Dates {
        Dates {
            expires: t
                .get("expires")
                .and_then(|i| self.date(i, "expires", where_)),
            revoked: t
                .get("revoked")
                .and_then(|i| self.date(i, "revoked", where_)),
        }
    }

    /// Entries of `ssh`/`openpgp`: strings, or inline tables with the text
    /// under `field` plus optional dates.
    fn key_entries(
        &mut self,
        item: &Item,
        field: &str,
        where_: &str,
        list: &str,
    ) -> Vec<(KeyEntry, Option<Range<usize>>)> {
        let Some(arr) = item.as_array() else {
            self.push(item.span(), format!("`{list}` in {where_} must be a list"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for v in arr.iter() {
            match v {
                Value::String(s) => out.push((
                    KeyEntry {
                        text: s.value().clone(),
                        dates: KeyDates::default(),
                    },
                    v.span(),
                )),
                Value::InlineTable(t) => {
                    let w = format!("an entry of `{list}` in {where_}");
                    self.unknown_keys(t, &[field, "expires", "revoked", "retired"], &w);
                    let retired = TableLike::get(t, "retired").and_then(|i| self.date(i, "retired", &w));
                    let d = self.dates(t, &w);
                    match self.string(t, field, &w) {
                        Some((text, span)) => out.push((
                            KeyEntry {
                                text,
                                dates: KeyDates {
                                    expires: d.expires,
                                    revoked: d.revoked,
                                    retired,
                                },
                            },
                            span,
                        )),
                        None if t.get(field).is_none() => {
                            self.push(v.span(), format!("{w} needs `{field} = \"...\"`"))
                        }
                        None => {}
                    }
                }
                _ => self.push(v.span(), format!("entries of `{list}` in {where_} must be strings or {{ {field} = \"...\", expires = ... }} tables")),
            }
        }
        out
    }
}

/// The policy `install.sh` writes when given none: roles declared, no
/// people, `main` protected. Every push to `main` is rejected until people
/// and keys are added, which is the safe starting point.
///
/// It explains itself in comments and names only commands that exist
/// wherever the binary is (never a file of the source tree, which the
/// server does not have).
pub fn starter(repository_id: &str) -> String {
    let id = repository_id.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        r#"# countersign starter policy: who may move which refs, proven by signatures.
#
# Until you add people with keys, every push to a protected ref is rejected.
# Every field is explained below; `countersign policy init --help` (or
# `man countersign-policy-init`) says the same. Check your edits with
#
#     countersign policy check --policy <this file>
#
# or change people, keys and roles with commands that validate and record
# each change in the audit log (run them in the bare repository):
#
#     countersign people add alice --name "Alice Example" --role developer
#     countersign keys add alice --ssh "ssh-ed25519 AAAA... alice@laptop"
#
# Identity comes only from keys: names and e-mails in commits are never
# trusted. Unknown fields are errors, so a typo never weakens a rule.

# Required. A stable name for this repository; signed approvals are bound
# to it, so two repositories must never share an id.
[repository]
id = "{id}"

# Every role a person or a rule names must be declared here, with a short
# description (an undeclared role is an error: it catches typos).
[roles]
developer = "writes code: may sign commits on protected branches"
maintainer = "merges and ships"
release-manager = "signs release tags"

# One table per person; the key (`alice`) is the person's id, which rules
# about distinct people count.
#   name    = for humans only, never used to decide
#   roles   = roles held, declared in [roles]
#   ssh     = OpenSSH public keys, as in authorized_keys (comment ignored)
#   openpgp = paths of public certificate files, relative to this file
#   expires / revoked = a date (2027-06-30) or date-time, on the person or
#             on one key written as {{ key = "ssh-...", expires = 2027-06-30 }};
#             from then on its signatures are rejected
#
# [people.alice]
# name = "Alice Example"
# roles = ["developer"]
# ssh = ["ssh-ed25519 AAAA... alice@laptop"]

# A rule says how the refs it names may move. A ref that no rule matches is
# unprotected: every update of it is accepted without checks. A ref several
# rules match must satisfy all of them. In patterns `*` matches within one
# path component, `**` across them; each must start with `refs/`.
[[rule]]
name = "main branch"                 # optional, shown in messages
refs = ["refs/heads/main"]
# Every commit newly reachable from the ref must be signed by a key of a
# person holding one of these roles.
commit-signers = ["developer", "maintainer"]
# Allow updates whose new value does not descend from the old one?
force-push = false
# Allow deleting the ref?
delete = false
# To adopt countersign on existing unsigned history, grandfather it:
# baseline = "<commit id of the current main>"

# Separation of duties (optional): changes land on the rule's refs only as
# merges signed by `signers`, carrying signed approvals (`countersign
# approve`) from distinct people in the roles named, other than the authors.
# Declare the roles first.
# [rule.merge]
# signers = ["maintainer"]
# approvals = [{{ role = "reviewer", count = 2 }}]

# Only annotated tags signed by a key of these roles may be created here,
# naming this repository in their message's last paragraph
# ("Countersign-Repository: <the id above>"); they are never moved.
[[rule]]
name = "release tags"
refs = ["refs/tags/v*"]
tag-signers = ["release-manager"]

# Once you keep the policy in the repository (`countersign policy migrate`),
# changing it needs the approvals named here:
# [policy-changes]
# signers = ["admin"]
# approvals = [{{ role = "admin", count = 2 }}]
#
# Budgets for one push have safe defaults; override any in [limits]
# (updates, commits, merges, object-bytes, seconds, findings, ...).
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINrxVK0xWzdtCu46sps/W0dmjonAc/wVysocqd8NgVjI alice@laptop";

    fn policy(body: &str) -> Result<Policy, Vec<Problem>> {
        parse(body, Path::new("."))
    }

    fn ok_text() -> String {
        format!(
            r#"
[repository]
id = "acme/x"
[roles]
developer = "d"
[people.alice]
name = "A"
roles = ["developer"]
ssh = ["{KEY}"]
[[rule]]
refs = ["refs/heads/main"]
commit-signers = ["developer"]
"#
        )
    }

    #[test]
    fn valid_policy_loads() {
        let p = policy(&ok_text()).unwrap();
        assert_eq!(p.repository_id, "acme/x");
        assert_eq!(p.rules.len(), 1);
        assert!(!p.rules[0].force_push);
        assert!(p.rules[0].matches("refs/heads/main"));
        assert!(!p.rules[0].matches("refs/heads/x"));
    }

    /// Mutated policies are reported, never a panic.
    #[test]
    fn mutations_never_panic() {
        for v in crate::mutate::mutants(ok_text().as_bytes(), 2000) {
            let _ = policy(&String::from_utf8_lossy(&v));
        }
    }

    #[test]
    fn starter_is_valid() {
        policy(&starter("a/b\"c")).unwrap();
        // It names no file of the source tree: the server has none.
        assert!(!starter("x").contains("config.example"));
    }

    #[test]
    fn collects_every_problem_with_positions() {
        let text = ok_text()
            .replace("name = \"A\"", "name = \"A\"\nemail = \"a@x\"")
            .replace(
                "commit-signers = [\"developer\"]",
                "commit-signers = [\"devloper\"]\nforce-push = \"yes\"",
            )
            .replace("refs/heads/main", "heads/main");
        let problems = policy(&text).unwrap_err();
        let msgs: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 4, "{msgs:#?}");
        assert!(
            msgs[0].starts_with("8:1: unknown field `email`"),
            "{msgs:#?}"
        );
        assert!(msgs
            .iter()
            .any(|m| m.contains("bad ref pattern `heads/main`")));
        assert!(msgs.iter().any(|m| m.contains("role `devloper`")));
        assert!(msgs
            .iter()
            .any(|m| m.contains("`force-push` in rule #1 must be true or false")));
        let (src, marks) = problems[0].excerpt.clone().unwrap();
        assert_eq!(src, "email = \"a@x\"");
        assert_eq!(marks, "^^^^^");
    }

    #[test]
    fn duplicate_person_and_shared_key_refused() {
        let dup = format!("{}\n[people.alice]\nname = \"again\"\n", ok_text());
        let problems = policy(&dup).unwrap_err();
        assert!(
            problems[0].message.contains("not valid TOML"),
            "{problems:?}"
        );
        let shared = format!(
            "{}\n[people.bob]\nroles = []\nssh = [\"{KEY}\"]\n",
            ok_text()
        );
        let problems = policy(&shared).unwrap_err();
        assert!(
            problems[0]
                .message
                .contains("already held by person `alice`"),
            "{problems:?}"
        );
    }

    #[test]
    fn bad_keys_and_dates_refused() {
        let text = ok_text()
            .replace(KEY, "ssh-ed25519 AAAAnotbase64 x")
            .replace("name = \"A\"", "name = \"A\"\nexpires = \"2027\"");
        let problems = policy(&text).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        let text = ok_text().replace(
            &format!("ssh = [\"{KEY}\"]"),
            &format!("ssh = [{{ key = \"{KEY}\", expires = \"soon\" }}]"),
        );
        let problems = policy(&text).unwrap_err();
        assert!(
            problems[0].message.contains("must be a date"),
            "{problems:?}"
        );
    }

    #[test]
    fn missing_sections_reported() {
        let problems = policy("").unwrap_err();
        assert_eq!(problems.len(), 2);
        let problems =
            policy("[repository]\nid = \"\"\n[roles]\n[[rule]]\nrefs = []\n").unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn missing_cert_file_reported() {
        let text = ok_text().replace(&format!("ssh = [\"{KEY}\"]"), "openpgp = [\"nope.asc\"]");
        let problems = policy(&text).unwrap_err();
        assert!(
            problems[0]
                .message
                .contains("cannot use OpenPGP certificate"),
            "{problems:?}"
        );
    }
}
