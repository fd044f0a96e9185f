//! Which policy each change landed under: read from the audit log's
//! accepted push records (each names the policy it was decided under), so
//! `report` judges a change by the policy in force when it landed, not by
//! today's.

use std::collections::HashMap;

use git2::{Oid, Repository};
use serde_json::Value;

use crate::audit;
use crate::engine;
use crate::governance::PolicyId;

/// Most commits mapped from one log (the walks are bounded by it).
pub const MAX_MAPPED: usize = 1_000_000;

/// The policy each first-parent commit of `refname` landed under, per the
/// accepted push records of the audit log `bytes`. A commit no record
/// covers (pushed before the log, or a record cut to fit) is absent.
///
/// # Errors
///
/// A message when the log's hash chain does not verify: a log that may have
/// been edited is not evidence of anything.
pub fn from_audit(
    repo: &Repository,
    bytes: &[u8],
    refname: &str,
) -> Result<HashMap<Oid, PolicyId>, String> {
    let check = audit::verify(bytes);
    if let Some(b) = check.first_break {
        return Err(format!(
            "the audit log does not verify (line {}: {})",
            b.line, b.message
        ));
    }
    let format = repo.object_format();
    let mut map: HashMap<Oid, PolicyId> = HashMap::new();
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        if v.get("kind").and_then(Value::as_str) != Some("push")
            || v.get("verdict").and_then(Value::as_str) != Some("accepted")
        {
            continue;
        }
        let Some(policy) = v
            .get("policy")
            .and_then(|p| serde_json::from_value::<PolicyIdIn>(p.clone()).ok())
            .map(PolicyId::from)
        else {
            continue;
        };
        let updates = v.get("updates").and_then(Value::as_array);
        for u in updates.into_iter().flatten() {
            if u.get("ref").and_then(Value::as_str) != Some(refname) {
                continue;
            }
            let id = |k: &str| {
                u.get(k)
                    .and_then(Value::as_str)
                    .and_then(|h| engine::parse_oid(h, format))
            };
            let (Some(old), Some(new)) = (id("old"), id("new")) else {
                continue;
            };
            let mut current = new;
            while !current.is_zero() && current != old && map.len() < MAX_MAPPED {
                if map.contains_key(&current) {
                    break;
                }
                map.insert(current, policy.clone());
                current = match repo.find_commit(current) {
                    Ok(c) => c.parent_id(0).unwrap_or(Oid::ZERO_SHA1),
                    Err(_) => break,
                };
            }
        }
    }
    Ok(map)
}

/// [`PolicyId`] as recorded (either shape).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum PolicyIdIn {
    File { file: String, sha256: String },
    Ref { commit: String, root: String },
}

impl From<PolicyIdIn> for PolicyId {
    fn from(p: PolicyIdIn) -> PolicyId {
        match p {
            PolicyIdIn::File { file, sha256 } => PolicyId::File { file, sha256 },
            PolicyIdIn::Ref { commit, root } => PolicyId::Ref { commit, root },
        }
    }
}
