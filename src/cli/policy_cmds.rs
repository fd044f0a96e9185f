//! `countersign policy migrate|pin|edit|propose|apply|log`: the policy
//! under quorum (see `countersign::governance`).

use std::path::{Path, PathBuf};

use git2::{Oid, Repository};

use countersign::governance::{
    self, store, InForce, POLICY_REF, PROPOSALS_PREFIX, ROOT_CONFIG_KEY,
};
use countersign::policy::{self, Policy};
use countersign::{audit, engine, hook, report, time, workflow};

use crate::cli::{print_error, Exit};

fn fail(msg: &str, help: &str) -> Exit {
    print_error(msg, Some(help));
    Exit::Error
}

fn open() -> Result<Repository, Exit> {
    hook::open_repo().map_err(|f| {
        fail(
            &f.admin_message(),
            "run inside the repository (or set GIT_DIR)",
        )
    })
}

fn resolve(repo: &Repository, rev: &str) -> Result<Oid, Exit> {
    workflow::resolve_commit(repo, rev)
        .map_err(|e| fail(&e.to_string(), "name a commit this repository holds"))
}

/// The default directory `policy edit` writes to and `policy propose` reads.
fn default_dir(repo: &Repository) -> PathBuf {
    repo.path().join("countersign/policy-edit")
}

/// Check a policy is fit to be the policy ref's content: valid, with a
/// `[policy-changes]` quorum that can be met.
fn fit(policy: &Policy) -> Result<(), Exit> {
    match governance::quorum_problem(policy, time::now()) {
        None => Ok(()),
        Some(why) => Err(fail(
            &format!("the policy cannot live on the policy ref: {why}"),
            "add a [policy-changes] table (`countersign policy init --help`) and enough people with usable keys in its roles",
        )),
    }
}

fn record(repo: &Repository, kind: &str, fields: serde_json::Value) -> Result<(), Exit> {
    let sharing = audit::Sharing::of(repo);
    audit::append_shared(&audit::path_for(repo), kind, fields, time::now(), sharing)
        .map(|_| ())
        .map_err(|e| {
            fail(
                &format!("the change could not be recorded: {e}"),
                "make the audit log writable and run again",
            )
        })
}

/// `policy migrate`: move the file policy into the policy ref and pin its
/// first commit.
pub fn migrate(given: Option<PathBuf>, repin: bool) -> Exit {
    let repo = match open() {
        Ok(r) => r,
        Err(e) => return e,
    };
    let pinned = match governance::pinned_root(&repo) {
        Ok(p) => p,
        Err(f) => return fail(&f.admin_message(), &f.help),
    };
    if pinned.is_some() && !repin {
        return fail(
            "this repository's policy already lives on the policy ref (a trust root is pinned)",
            "change it with `countersign policy propose`; `--repin` is the break-glass path for a lost quorum",
        );
    }
    let current = repo.refname_to_id(POLICY_REF).ok();
    if current.is_some() && !repin {
        return fail(
            &format!("`{POLICY_REF}` already exists, but no trust root is pinned"),
            "review it with `countersign policy log`, then pin its first commit with `countersign policy pin <commit>`, or re-pin with `--repin`",
        );
    }
    let path = match hook::locate_policy(given.as_deref(), Some(&repo)) {
        Ok(l) => l.path,
        Err(e) => return fail(&e.to_string(), e.help()),
    };
    let loaded = match policy::load(&path) {
        Ok(p) => p,
        Err(e) => {
            return fail(
                &format!("{e}\n{}", e.details().trim_end()),
                "fix the policy file first (`countersign policy check`)",
            )
        }
    };
    if let Err(e) = fit(&loaded) {
        return e;
    }
    let tree = match store::tree_from_file(&repo, &loaded, &path) {
        Ok(t) => t,
        Err(e) => {
            return fail(
                &e.to_string(),
                "keep the certificate files the policy names below its directory",
            )
        }
    };
    let message = if repin {
        format!(
            "countersign: trust root re-pinned (break glass)\n\nThe host operator re-pinned the trust root with the policy from {}.\nThe policy ref's history before this commit is no longer the chain of trust.\n",
            path.display()
        )
    } else {
        format!(
            "countersign: policy root\n\nMigrated from {} by `countersign policy migrate`.\n",
            path.display()
        )
    };
    let root = match commit(&repo, tree, current, &message) {
        Ok(id) => id,
        Err(e) => return e,
    };
    if let Err(e) = repo.reference(POLICY_REF, root, repin, "countersign policy migrate") {
        return fail(
            &format!("cannot set `{POLICY_REF}`: {}", e.message()),
            "check the repository is writable",
        );
    }
    if let Err(e) = pin_config(&repo, root) {
        return e;
    }
    if let Err(e) = record(
        &repo,
        if repin {
            "trust-root-repinned"
        } else {
            "policy-migrated"
        },
        serde_json::json!({
            "pusher": audit::pusher(),
            "policy_ref": POLICY_REF,
            "root": root.to_string(),
            "previous_root": pinned.map(|p| p.to_string()),
            "previous_tip": current.map(|p| p.to_string()),
            "from_file": path.display().to_string(),
        }),
    ) {
        return e;
    }
    if repin {
        // The re-pin moved the policy ref around the hook: the ref-state
        // log records it and the operator's break glass acknowledges it.
        let acked = hook::policy_in_force(&repo, time::now(), std::time::Instant::now())
            .map_err(|f| f.message)
            .and_then(|f| {
                let id = serde_json::to_value(&f.id).ok();
                countersign::ledger::acknowledge_break_glass(
                    &repo,
                    &f.policy,
                    id.as_ref(),
                    "trust root re-pinned (break glass): `countersign policy migrate --repin`",
                    time::now(),
                )
            });
        match acked {
            Ok(list) if !list.is_empty() => {
                eprintln!(
                "{}: the ref-state log records the re-pin; acknowledged as break glass: entr{} {}",
                report::PREFIX,
                if list.len() == 1 { "y" } else { "ies" },
                list.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
            )
            }
            Ok(_) => {}
            Err(e) => return fail(
                &format!(
                    "the trust root is re-pinned, but the ref-state log could not record it: {e}"
                ),
                "run `countersign log show` and acknowledge the move with `countersign log ack`",
            ),
        }
    }
    println!(
        "{}: the policy now lives on {POLICY_REF}; trust root {} pinned ({ROOT_CONFIG_KEY}).\n  Every change now needs the approvals its [policy-changes] names; the file {} is no longer read.\n  Admins: `git fetch origin {POLICY_REF}:{POLICY_REF}` and `countersign policy pin {root}` in their clones.",
        report::PREFIX,
        engine::short(root),
        path.display()
    );
    Exit::Ok
}

fn commit(repo: &Repository, tree: Oid, parent: Option<Oid>, message: &str) -> Result<Oid, Exit> {
    let sig = repo
        .signature()
        .or_else(|_| git2::Signature::now("countersign", "countersign@localhost"))
        .map_err(|e| fail(e.message(), "set user.name and user.email"))?;
    let tree = repo
        .find_tree(tree)
        .map_err(|e| fail(e.message(), "check the repository"))?;
    let parents: Vec<git2::Commit<'_>> = match parent {
        Some(p) => vec![repo
            .find_commit(p)
            .map_err(|e| fail(e.message(), "check the repository"))?],
        None => Vec::new(),
    };
    let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
    repo.commit(None, &sig, &sig, message, &tree, &refs)
        .map_err(|e| {
            fail(
                &format!("cannot write the policy commit: {}", e.message()),
                "check the repository is writable",
            )
        })
}

fn pin_config(repo: &Repository, root: Oid) -> Result<(), Exit> {
    repo.config()
        .and_then(|mut c| c.set_str(ROOT_CONFIG_KEY, &root.to_string()))
        .map_err(|e| {
            fail(
                &format!("cannot set `{ROOT_CONFIG_KEY}`: {}", e.message()),
                "check the repository config is writable",
            )
        })
}

/// `policy pin`: pin `rev` as the trust root, after checking the policy
/// ref's history leads back to it through authorized changes.
pub fn pin(rev: &str) -> Exit {
    let repo = match open() {
        Ok(r) => r,
        Err(e) => return e,
    };
    let root = match resolve(&repo, rev) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if let Err(f) = governance::load_at(&repo, root) {
        return fail(&f.admin_message(), &f.help);
    }
    let previous = governance::pinned_root(&repo).ok().flatten();
    if repo.refname_to_id(POLICY_REF).is_err() {
        if let Err(e) = repo.reference(POLICY_REF, root, false, "countersign policy pin") {
            return fail(
                &format!("cannot set `{POLICY_REF}`: {}", e.message()),
                "check the repository is writable",
            );
        }
    }
    // The chain from this root, verified afresh: pinning is the operator's
    // explicit "re-verify the history", so what an earlier trust file says
    // (e.g. a mark a restored, older ref no longer reaches) is dropped.
    let _ = std::fs::remove_file(repo.path().join(governance::TRUST_FILE));
    let in_force = match governance::in_force(&repo, root, time::now(), std::time::Instant::now()) {
        Ok(i) => i,
        Err(f) => return fail(
            &f.admin_message(),
            "pin the commit the policy ref's history starts from (see `countersign policy log`)",
        ),
    };
    if let Some(why) = governance::quorum_problem(&in_force.policy, time::now()) {
        print_error(
            &format!("warning: the policy in force cannot be changed any more: {why}"),
            Some("only break glass (`countersign policy migrate --repin`) can change it"),
        );
    }
    if let Err(e) = pin_config(&repo, root) {
        return e;
    }
    if let Err(e) = record(
        &repo,
        "trust-root-pinned",
        serde_json::json!({
            "pusher": audit::pusher(),
            "policy_ref": POLICY_REF,
            "root": root.to_string(),
            "previous_root": previous.map(|p| p.to_string()),
        }),
    ) {
        return e;
    }
    println!(
        "{}: trust root {} pinned; the policy in force is {POLICY_REF} at its verified tip",
        report::PREFIX,
        engine::short(root)
    );
    Exit::Ok
}

/// `policy edit`: write the policy ref's files to a directory.
pub fn edit(dir: Option<PathBuf>) -> Exit {
    let repo = match open() {
        Ok(r) => r,
        Err(e) => return e,
    };
    let tip = match repo.refname_to_id(POLICY_REF) {
        Ok(t) => t,
        Err(_) => {
            return fail(
                &format!("no `{POLICY_REF}` here"),
                &format!("fetch it: `git fetch origin {POLICY_REF}:{POLICY_REF}`"),
            )
        }
    };
    match governance::pinned_root(&repo) {
        Ok(Some(root)) => {
            if let Err(f) =
                governance::in_force(&repo, root, time::now(), std::time::Instant::now())
            {
                return fail(&f.admin_message(), &f.help);
            }
        }
        Ok(None) => print_error(
            "warning: no trust root is pinned here: the policy ref is not verified",
            Some("pin the server's root: `countersign policy pin <commit>`"),
        ),
        Err(f) => return fail(&f.admin_message(), &f.help),
    }
    let dir = dir.unwrap_or_else(|| default_dir(&repo));
    if let Err(e) = store::materialize(&repo, tip, &dir) {
        return fail(&e.to_string(), "name an empty directory with --dir");
    }
    let file = dir.join(governance::POLICY_FILE);
    println!(
        "{}: the policy at {} is in {}\n  edit it (or use `countersign people|keys|roles ... --policy {}`), then `countersign policy propose <name> -m <why>`",
        report::PREFIX,
        engine::short(tip),
        dir.display(),
        file.display()
    );
    Exit::Ok
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn git_ok(repo: &Repository, args: &[&str]) -> Result<String, Exit> {
    workflow::git_ok(repo, args).map_err(|e| {
        fail(
            &e.to_string(),
            "check git's signing setup (user.signingkey, gpg.format) and the remote",
        )
    })
}

/// `policy propose`: commit `dir` on top of the policy ref as a signed
/// proposal `refs/countersign/proposals/NAME`.
pub fn propose(name: &str, dir: Option<PathBuf>, message: &str, push: Option<&str>) -> Exit {
    let repo = match open() {
        Ok(r) => r,
        Err(e) => return e,
    };
    if !valid_name(name) {
        return fail(
            &format!(
                "`{}` is not a proposal name",
                countersign::sanitize::escape(name)
            ),
            "use letters, digits, `-`, `_` and `.`",
        );
    }
    let base = match repo.refname_to_id(POLICY_REF) {
        Ok(t) => t,
        Err(_) => {
            return fail(
                &format!("no `{POLICY_REF}` here"),
                &format!("fetch it: `git fetch origin {POLICY_REF}:{POLICY_REF}`"),
            )
        }
    };
    let is_default = dir.is_none();
    let dir = dir.unwrap_or_else(|| default_dir(&repo));
    let tree = match store::tree_from_dir(&repo, &dir) {
        Ok(t) => t,
        Err(e) => {
            return fail(
                &e.to_string(),
                "run `countersign policy edit` first, or pass --dir",
            )
        }
    };
    let base_tree = repo.find_commit(base).map(|c| c.tree_id()).ok();
    if base_tree == Some(tree) {
        return fail(
            "the edited policy is the same as the policy in force",
            "change something first",
        );
    }
    let probe = match commit(&repo, tree, Some(base), message) {
        Ok(id) => id,
        Err(e) => return e,
    };
    match governance::load_at(&repo, probe) {
        Ok(p) => {
            if let Err(e) = fit(&p) {
                return e;
            }
        }
        Err(f) => {
            return fail(
                &f.admin_message(),
                "fix the policy in the directory and propose again",
            )
        }
    }
    let (tree_hex, base_hex) = (tree.to_string(), base.to_string());
    let id = match git_ok(
        &repo,
        &[
            "commit-tree",
            &tree_hex,
            "-p",
            &base_hex,
            "-S",
            "-m",
            message,
        ],
    ) {
        Ok(out) => out.trim().to_string(),
        Err(e) => return e,
    };
    let refname = format!("{PROPOSALS_PREFIX}{name}");
    if let Err(e) = git_ok(&repo, &["update-ref", &refname, &id]) {
        return e;
    }
    if let Some(remote) = push {
        if let Err(e) = git_ok(
            &repo,
            &["push", "--quiet", remote, &format!("+{refname}:{refname}")],
        ) {
            return e;
        }
    }
    if is_default {
        // The next `policy edit` starts from the policy ref again.
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!(
        "{}: proposal {refname} = {} (on {POLICY_REF} at {})\n  approvers: `git fetch origin {refname}:{refname}`, review with `git diff {} {refname}`, then\n  `countersign approve {refname} --ref {POLICY_REF} --result --push origin`\n  then: `countersign policy apply {name} --push origin`",
        report::PREFIX,
        &id[..id.len().min(12)],
        engine::short(base),
        engine::short(base),
    );
    Exit::Ok
}

/// `policy apply`: land an approved proposal.
pub fn apply(name: &str, push: Option<&str>) -> Exit {
    let repo = match open() {
        Ok(r) => r,
        Err(e) => return e,
    };
    let refname = if name.starts_with("refs/") {
        name.to_string()
    } else {
        format!("{PROPOSALS_PREFIX}{name}")
    };
    let proposal = match resolve(&repo, &refname) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let Ok(p) = repo.find_commit(proposal) else {
        return fail("cannot read the proposal", "fetch it again");
    };
    let base = match repo.refname_to_id(POLICY_REF) {
        Ok(t) => t,
        Err(_) => {
            return fail(
                &format!("no `{POLICY_REF}` here"),
                &format!("fetch it: `git fetch origin {POLICY_REF}:{POLICY_REF}`"),
            )
        }
    };
    if p.parent_count() != 1 || p.parent_id(0).ok() != Some(base) {
        return fail(
            &format!("the proposal is not built on {POLICY_REF} at {}", engine::short(base)),
            "fetch the policy ref; if it moved, propose again on its tip (approvals bind the exact parent)",
        );
    }
    if let Some(remote) = push {
        if let Err(e) = workflow::fetch_notes(&repo, remote) {
            return fail(&e.to_string(), "check the remote");
        }
    }
    let trailers = match workflow::notes_for(&repo, proposal) {
        Ok(t) => t,
        Err(e) => return fail(&e.to_string(), "check the approval notes"),
    };
    if trailers.is_empty() {
        return fail("the proposal carries no approvals yet", &format!("approvers run `countersign approve {refname} --ref {POLICY_REF} --result --push origin`"));
    }
    let body = String::from_utf8_lossy(p.message_bytes())
        .trim_end()
        .to_string();
    let root = match governance::pinned_root(&repo) {
        Ok(r) => r.unwrap_or(base),
        Err(f) => return fail(&f.admin_message(), &f.help),
    };
    let in_force: InForce =
        match governance::in_force(&repo, root, time::now(), std::time::Instant::now()) {
            Ok(i) => i,
            Err(f) => return fail(&f.admin_message(), &f.help),
        };
    // Only lines that parse and bind this exact result (repository, the
    // policy ref, this parent and tree), once each: junk in the shared
    // notes must not block the change.
    let tree_id = p.tree_id();
    let mut trailers: Vec<String> = trailers
        .into_iter()
        .filter(|line| {
            line.split_once(':')
                .and_then(|(_, v)| countersign::signing::approval::Approval::parse(v.trim()).ok())
                .is_some_and(|a| {
                    a.statement.repository == in_force.policy.repository_id
                        && a.statement.refname == POLICY_REF
                        && a.statement.binding
                            == countersign::signing::approval::Binding::Result {
                                parents: vec![base],
                                tree: tree_id,
                            }
                })
        })
        .collect();
    let mut unique = std::collections::HashSet::new();
    trailers.retain(|l| unique.insert(l.clone()));
    if trailers.is_empty() {
        return fail(
            "no approval in the proposal's notes binds this exact change",
            &format!("approvers run `countersign approve {refname} --ref {POLICY_REF} --result --push origin`"),
        );
    }
    let (tree_hex, base_hex) = (tree_id.to_string(), base.to_string());
    let land = |lines: &[String]| -> Result<(String, engine::Decision), Exit> {
        let mut message = format!("{body}\n\n");
        for t in lines {
            message.push_str(t);
            message.push('\n');
        }
        let args = [
            "commit-tree",
            &tree_hex,
            "-p",
            &base_hex,
            "-S",
            "-m",
            &message,
        ];
        let landing = git_ok(&repo, &args)?.trim().to_string();
        let Some(id) = engine::parse_oid(&landing, repo.object_format()) else {
            return Err(fail("git printed no commit id", "check git"));
        };
        Ok((
            landing,
            governance::check_change(&repo, &in_force, id, time::now()),
        ))
    };
    // Every note line first; then only those that verify and count: a
    // stale or foreign line must not block the change.
    let (mut landing, mut decision) = match land(&trailers) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let eligible: Vec<String> = decision
        .updates
        .iter()
        .flat_map(|u| u.merges.iter())
        .flat_map(|m| m.approvals.iter())
        .filter(|a| a.eligible)
        .filter_map(|a| {
            a.index
                .checked_sub(1)
                .and_then(|i| trailers.get(i))
                .cloned()
        })
        .collect();
    if !decision.accepted() && !eligible.is_empty() && eligible.len() < trailers.len() {
        match land(&eligible) {
            Ok((l, d)) => {
                landing = l;
                decision = d;
                trailers = eligible;
            }
            Err(e) => return e,
        }
    }
    if !decision.accepted() {
        eprint!(
            "{}",
            report::text(&decision, report::Mode::Verify, usize::MAX)
        );
        return fail(
            "the hook would refuse this policy change; nothing was changed",
            "collect the missing approvals (see above) and apply again",
        );
    }
    // Push first: the local ref moves only once the server took the change
    // (if another change landed first, nothing here is left diverged).
    if let Some(remote) = push {
        let spec = format!("{landing}:{POLICY_REF}");
        if let Err(e) = workflow::git_ok(&repo, &["push", "--quiet", remote, &spec]) {
            return fail(
                &format!("the server refused the change: {e}"),
                "if another policy change landed first, fetch refs/meta/countersign and propose again on its tip; the approvals bind the old parent",
            );
        }
    }
    if let Err(e) = git_ok(&repo, &["update-ref", POLICY_REF, &landing, &base_hex]) {
        return e;
    }
    // The proposal has landed: remove it (best effort).
    let _ = workflow::git(&repo, &["update-ref", "-d", &refname]);
    if let Some(remote) = push {
        let _ = workflow::git(&repo, &["push", "--quiet", remote, &format!(":{refname}")]);
    }
    println!(
        "{}: {POLICY_REF} is now {} ({} approval(s)){}",
        report::PREFIX,
        &landing[..landing.len().min(12)],
        trailers.len(),
        if push.is_some() {
            ", pushed"
        } else {
            "; push it with `git push origin refs/meta/countersign`"
        }
    );
    Exit::Ok
}

/// `policy log`.
pub fn log(json: bool) -> Exit {
    let repo = match open() {
        Ok(r) => r,
        Err(e) => return e,
    };
    let root = match governance::pinned_root(&repo) {
        Ok(r) => r,
        Err(f) => return fail(&f.admin_message(), &f.help),
    };
    if root.is_none() {
        print_error(
            "warning: no trust root is pinned here: this history is checked step by step, but not against a root you chose",
            Some("pin the server's root: `countersign policy pin <commit>` (the server's countersign.policyRoot)"),
        );
    }
    match governance::log::history(&repo, root, time::now()) {
        Ok((tip, changes)) => {
            if json {
                let v = serde_json::json!({
                    "policy_ref": POLICY_REF,
                    "tip": tip.to_string(),
                    "root": root.map(|r| r.to_string()),
                    "changes": changes,
                });
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", governance::log::render(tip, &changes));
            }
            if changes.iter().all(|c| c.authorized) {
                Exit::Ok
            } else {
                Exit::Rejected
            }
        }
        Err(e) => fail(&e, &format!("fetch the policy ref (`git fetch origin {POLICY_REF}:{POLICY_REF}`) and pin its root (`countersign policy pin`)")),
    }
}

/// Why `policy check --commit` found no valid policy.
pub enum CheckFailed {
    /// No repository, or REV does not resolve: reported already.
    Usage(Exit),
    /// The commit's policy does not load: what is wrong, for the caller
    /// to render (text or JSON).
    Invalid { label: String, message: String },
}

/// `policy check --commit REV`: the policy in a policy commit.
pub fn check_commit(rev: &str) -> Result<(Policy, PathBuf), CheckFailed> {
    let repo = open().map_err(CheckFailed::Usage)?;
    let id = resolve(&repo, rev).map_err(CheckFailed::Usage)?;
    match governance::load_at(&repo, id) {
        Ok(p) => {
            let path = Path::new(&governance::label(id)).to_path_buf();
            Ok((p, path))
        }
        Err(f) => Err(CheckFailed::Invalid {
            label: governance::label(id),
            message: f.admin_message(),
        }),
    }
}
