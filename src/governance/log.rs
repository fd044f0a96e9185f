//! `policy log`: every change of the policy ref from the trust root, who
//! signed it, who approved it, whether its parent's policy authorized it,
//! and what it changed (people, keys, roles, rules).

use std::collections::BTreeSet;
use std::time::Instant;

use git2::{Oid, Repository};
use serde::Serialize;

use crate::engine::short;
use crate::governance::{chain, chain_message, judge_step, load_at, When, POLICY_REF};
use crate::policy::Policy;
use crate::time::Timestamp;

/// One change of the policy.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The policy commit.
    pub commit: String,
    /// Its committer time (a claim; for reading).
    pub time: i64,
    /// Its subject line.
    pub subject: String,
    /// Person who signed it (verified against the parent's policy).
    pub signer: Option<String>,
    /// People whose approvals counted.
    pub approvers: Vec<String>,
    /// Authorized by its parent's policy (re-checked now).
    pub authorized: bool,
    /// Why not, if not.
    pub problems: Vec<String>,
    /// What changed, one line each.
    pub diff: Vec<String>,
}

/// The policy history from `root` (or the ref's first commit when `None`)
/// to the tip of the policy ref, oldest first.
///
/// # Errors
///
/// A message when the ref is missing or its history is not a chain back to
/// the root.
pub fn history(
    repo: &Repository,
    root: Option<Oid>,
    now: Timestamp,
) -> Result<(Oid, Vec<Change>), String> {
    let tip = repo
        .refname_to_id(POLICY_REF)
        .map_err(|e| format!("cannot read `{POLICY_REF}`: {}", e.message()))?;
    let stop = |c: Oid| -> bool {
        match root {
            Some(r) => c == r,
            None => repo.find_commit(c).is_ok_and(|c| c.parent_count() == 0),
        }
    };
    let (start, steps) = chain(repo, tip, &stop, super::MAX_CHAIN)
        .map_err(|e| chain_message(&e, "the trust root"))?;
    let mut out = Vec::new();
    let mut policy = load_at(repo, start).map_err(|f| f.message)?;
    out.push(Change {
        commit: start.to_string(),
        time: commit_time(repo, start),
        subject: subject(repo, start),
        signer: None,
        approvers: Vec::new(),
        authorized: true,
        problems: Vec::new(),
        diff: vec![match repo.find_commit(start).map(|c| c.parent_count()) {
            Ok(0) => "trust root: the policy everything after it is judged by".into(),
            _ => "trust root RE-PINNED (break glass): the history before it is not part of the chain of trust".into(),
        }],
    });
    let mut parent = start;
    for c in steps {
        let before = summary(&policy);
        let step = judge_step(repo, policy, parent, c, When::History(now), Instant::now());
        let (signer, approvers) = step.outcome.as_ref().map_or((None, Vec::new()), |o| {
            let m = o.merges.first();
            (
                m.and_then(|m| m.merger.clone()),
                m.map(|m| {
                    m.approvals
                        .iter()
                        .filter(|a| a.counted_as.is_some())
                        .filter_map(|a| a.person.clone())
                        .collect()
                })
                .unwrap_or_default(),
            )
        });
        let problems: Vec<String> = step
            .findings
            .iter()
            .map(|f| format!("{}: {}", f.code.as_str(), f.message))
            .collect();
        let next = match step.next {
            Some(p) => p,
            None => match load_at(repo, c) {
                Ok(p) => p,
                Err(f) => {
                    out.push(Change {
                        commit: c.to_string(),
                        time: commit_time(repo, c),
                        subject: subject(repo, c),
                        signer,
                        approvers,
                        authorized: false,
                        problems: vec![f.message],
                        diff: Vec::new(),
                    });
                    return Ok((tip, out));
                }
            },
        };
        out.push(Change {
            commit: c.to_string(),
            time: commit_time(repo, c),
            subject: subject(repo, c),
            signer,
            approvers,
            authorized: problems.is_empty(),
            problems,
            diff: diff(&before, &summary(&next)),
        });
        policy = next;
        parent = c;
    }
    Ok((tip, out))
}

fn commit_time(repo: &Repository, id: Oid) -> i64 {
    repo.find_commit(id).map_or(0, |c| c.time().seconds())
}

fn subject(repo: &Repository, id: Oid) -> String {
    repo.find_commit(id)
        .ok()
        .map(|c| {
            let text = String::from_utf8_lossy(c.message_bytes()).into_owned();
            crate::policy::limits::truncate(text.lines().next().unwrap_or(""), 200)
        })
        .unwrap_or_default()
}

/// A policy as comparable lines: `person alice role reviewer`, `key alice
/// ssh key SHA256:...`, `rule #1 (...) {...}`...
fn summary(p: &Policy) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    out.insert(format!("repository id {}", p.repository_id));
    for (role, desc) in &p.roles {
        out.insert(format!("role `{role}` declared ({desc})"));
    }
    for person in p.people.values() {
        out.insert(format!("person `{}` ({})", person.id, person.name));
        for r in &person.roles {
            out.insert(format!("`{}` holds role `{r}`", person.id));
        }
        for (what, d) in [
            ("expires", person.dates.expires),
            ("revoked", person.dates.revoked),
        ] {
            if let Some(t) = d {
                out.insert(format!("`{}` {what} {}", person.id, crate::time::format(t)));
            }
        }
    }
    for k in p.keyring.keys() {
        let mut dates = Vec::new();
        for (what, d) in [
            ("expires", k.dates.expires),
            ("revoked", k.dates.revoked),
            ("retired", k.dates.retired),
        ] {
            if let Some(t) = d {
                dates.push(format!("{what} {}", crate::time::format(t)));
            }
        }
        let dates = if dates.is_empty() {
            String::new()
        } else {
            format!(" ({})", dates.join(", "))
        };
        out.insert(format!("`{}` has {}{dates}", k.person, k.describe()));
    }
    for r in &p.rules {
        out.insert(format!(
            "rule {}: signers {:?}, tag signers {:?}, force-push {}, delete {}, baseline {:?}, merge {:?}",
            r.label(),
            r.commit_signers,
            r.tag_signers,
            r.force_push,
            r.delete,
            r.baseline,
            r.merge
        ));
    }
    if let Some(c) = &p.policy_changes {
        let a: Vec<String> = c.approvals.iter().map(ToString::to_string).collect();
        out.insert(format!(
            "[policy-changes] signed by [{}], approved by {}",
            c.signers.join(", "),
            a.join(" + ")
        ));
    }
    out.insert(format!("limits {:?}", p.limits));
    out
}

/// `+ line` for what `after` adds, `- line` for what it drops.
fn diff(before: &BTreeSet<String>, after: &BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<String> = before.difference(after).map(|l| format!("- {l}")).collect();
    out.extend(after.difference(before).map(|l| format!("+ {l}")));
    out
}

/// The history as text, one block per change.
pub fn render(tip: Oid, changes: &[Change]) -> String {
    let mut out = format!(
        "{POLICY_REF} at {}: {} change(s) after the trust root\n",
        short(tip),
        changes.len().saturating_sub(1)
    );
    for c in changes {
        out.push_str(&format!(
            "\n{} {} {}\n",
            short(Oid::from_str(&c.commit).unwrap_or(Oid::ZERO_SHA1)),
            crate::time::format(c.time),
            crate::sanitize::escape(&c.subject)
        ));
        if let Some(s) = &c.signer {
            out.push_str(&format!("  signed by {s}\n"));
        }
        if !c.approvers.is_empty() {
            out.push_str(&format!("  approved by {}\n", c.approvers.join(", ")));
        }
        if !c.authorized {
            out.push_str("  NOT AUTHORIZED by its parent's policy:\n");
            for p in &c.problems {
                out.push_str(&format!("    {}\n", crate::sanitize::escape(p)));
            }
        }
        for d in &c.diff {
            out.push_str(&format!("  {}\n", crate::sanitize::escape(d)));
        }
    }
    out
}
