//! Every clone a witness: check a fetched ref-state log against what this
//! clone saw before, as a Go checksum-database client checks a tree head.
//!
//! A clone remembers the last entry it verified (a local ref,
//! `refs/countersign/witness/<source>`, which also keeps the entries'
//! objects, and `$GIT_DIR/countersign/witness/<source>.json` with the key).
//! The next check verifies only the entries added since, and reports:
//! a log that went back (a restored backup, a cut), a log that no longer
//! contains the remembered entry (rewritten), an entry signed by another
//! key or altered, and refs whose value on the server is not the one the
//! log last recorded (moved around the hook).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use git2::{Oid, Repository};
use serde::{Deserialize, Serialize};
use ssh_key::PublicKey;

use super::{read_entry, Entry, Kind, State};

/// The most entries walked in one check.
pub const MAX_WALK: usize = 10_000_000;

/// What a clone remembers of a log it verified.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Memory {
    /// The last entry verified.
    pub tip: String,
    /// Its sequence number.
    pub seq: u64,
    /// The server key that signed it (OpenSSH line).
    pub key: String,
}

/// The ref under which a clone keeps the last entry it verified.
pub fn witness_ref(source: &str) -> String {
    format!("refs/countersign/witness/{}", safe(source))
}

/// `$GIT_DIR/countersign/witness/<source>.json`.
pub fn memory_path(git_dir: &Path, source: &str) -> PathBuf {
    super::dir(git_dir)
        .join("witness")
        .join(format!("{}.json", safe(source)))
}

fn safe(source: &str) -> String {
    let s: String = source
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

/// Read what this clone remembers of `source`.
pub fn recall(git_dir: &Path, source: &str) -> Option<Memory> {
    let text = fs::read_to_string(memory_path(git_dir, source)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Remember `tip` as verified.
///
/// # Errors
///
/// A message when the memory cannot be written.
pub fn remember(repo: &Repository, source: &str, m: &Memory) -> Result<(), String> {
    let path = memory_path(repo.path(), source);
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let tip = Oid::from_str(&m.tip).map_err(|e| e.message().to_string())?;
    repo.reference(&witness_ref(source), tip, true, "countersign witness")
        .map_err(|e| e.message().to_string())?;
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string_pretty(m).map_err(|e| e.to_string())?;
    fs::write(&tmp, text)
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The outcome of a check.
#[derive(Debug)]
pub struct Report {
    /// The log's tip.
    pub tip: Oid,
    /// Its entry.
    pub entry: Entry,
    /// The state it records.
    pub state: State,
    /// Entries verified now.
    pub verified: usize,
    /// Whether the chain itself verified (entries, signatures, order, and
    /// it extends what was seen before): only then is it remembered.
    pub chain_ok: bool,
    /// What is wrong.
    pub problems: Vec<String>,
    /// What an auditor should know (out-of-band moves acknowledged).
    pub notes: Vec<String>,
}

/// Check the log at `tip` with `key`, against `before` (what this clone
/// saw last) and the refs the server advertises (`refs`).
///
/// # Errors
///
/// A message when the tip itself cannot be read or verified (nothing
/// more can be said then).
pub fn check(
    repo: &Repository,
    tip: Oid,
    key: &PublicKey,
    before: Option<&Memory>,
    refs: &BTreeMap<String, Oid>,
) -> Result<Report, String> {
    let head = read_entry(repo, tip, key)?;
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut chain_ok = true;
    let prior = before.and_then(|m| Oid::from_str(&m.tip).ok());
    if let (Some(m), Some(p)) = (before, prior) {
        if p != tip && repo.graph_descendant_of(p, tip).unwrap_or(false) {
            problems.push(format!(
                "the log went back: the server's log ends at entry {} ({}), but this clone saw it at entry {} ({}) — a restore from an older backup, or entries cut off",
                head.entry.seq,
                crate::engine::short(tip),
                m.seq,
                crate::engine::short(p)
            ));
            return Ok(Report {
                tip,
                entry: head.entry,
                state: head.state,
                verified: 0,
                chain_ok: false,
                problems,
                notes,
            });
        }
    }
    // Walk back to the remembered entry (or the first entry).
    let mut verified = 0usize;
    let mut current = head.clone();
    let mut found_prior = prior.is_none() || prior == Some(tip);
    if !found_prior || prior.is_none() {
        loop {
            verified += 1;
            note(&current.entry, &mut notes);
            let Some(parent) = current.parent else {
                if current.entry.seq != 1 || current.entry.kind != Kind::Start {
                    problems.push(format!(
                        "the first entry of the log ({}) is entry {} of kind {}, not entry 1 (start): entries before it were cut off",
                        crate::engine::short(current.id),
                        current.entry.seq,
                        current.entry.kind.as_str()
                    ));
                    chain_ok = false;
                }
                break;
            };
            if Some(parent) == prior {
                found_prior = true;
                // The remembered entry was verified before; its number must fit.
                if let Some(m) = before {
                    if m.seq + 1 != current.entry.seq {
                        problems.push(format!(
                            "entry {} follows the remembered entry {} but is numbered {}",
                            crate::engine::short(current.id),
                            m.seq,
                            current.entry.seq
                        ));
                        chain_ok = false;
                    }
                }
                break;
            }
            if verified >= MAX_WALK {
                problems.push(format!(
                    "the log is longer than {MAX_WALK} entries; only that many were checked"
                ));
                chain_ok = false;
                break;
            }
            let next = match read_entry(repo, parent, key) {
                Ok(r) => r,
                Err(e) => {
                    problems.push(format!(
                        "entry {} (before entry {}) does not verify: {e}",
                        crate::engine::short(parent),
                        current.entry.seq
                    ));
                    chain_ok = false;
                    break;
                }
            };
            if next.entry.seq + 1 != current.entry.seq {
                problems.push(format!(
                    "entries are out of order: entry {} follows entry {}",
                    current.entry.seq, next.entry.seq
                ));
                chain_ok = false;
                break;
            }
            current = next;
        }
    }
    if chain_ok && !found_prior {
        if let Some(m) = before {
            problems.push(format!(
                "the log was rewritten: it no longer contains entry {} ({}) that this clone saw before; the server's log now ends at entry {} ({})",
                m.seq,
                crate::engine::short_hex(&m.tip),
                head.entry.seq,
                crate::engine::short(tip)
            ));
            chain_ok = false;
        }
    }
    // The refs as the server has them against the log's last state.
    for (name, value) in &head.state.refs {
        let Ok(expected) = Oid::from_str(value) else {
            continue;
        };
        match refs.get(name) {
            Some(v) if *v == expected => {}
            Some(v) => problems.push(format!(
                "`{}` is at {} on the server, but the log last recorded {}: it was moved around the hook (or a push landed meanwhile: check again)",
                crate::sanitize::escape(name),
                crate::engine::short(*v),
                crate::engine::short(expected)
            )),
            None => problems.push(format!(
                "`{}` does not exist on the server, but the log last recorded it at {}: it was deleted around the hook",
                crate::sanitize::escape(name),
                crate::engine::short(expected)
            )),
        }
    }
    for o in &head.state.unacknowledged {
        problems.push(format!(
            "the server saw `{}` moved out of band ({} -> {}, log entry {}) and no admin has acknowledged it",
            crate::sanitize::escape(&o.refname),
            crate::engine::short_hex(&o.recorded),
            crate::engine::short_hex(&o.observed),
            o.entry
        ));
    }
    Ok(Report {
        tip,
        entry: head.entry,
        state: head.state,
        verified,
        chain_ok,
        problems,
        notes,
    })
}

fn note(entry: &Entry, notes: &mut Vec<String>) {
    if notes.len() >= 100 {
        return;
    }
    match entry.kind {
        Kind::ObservedOutOfBand => notes.push(format!(
            "entry {} ({}): refs moved out of band: {}",
            entry.seq,
            entry.time_utc,
            entry
                .updates
                .iter()
                .map(|c| format!(
                    "{} {} -> {}",
                    crate::sanitize::escape(&c.refname),
                    crate::engine::short_hex(&c.old),
                    crate::engine::short_hex(&c.new)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Kind::Acknowledged => notes.push(format!(
            "entry {} ({}): entry {} acknowledged by {}: {}",
            entry.seq,
            entry.time_utc,
            entry.acknowledges.unwrap_or_default(),
            if entry.signed_by.is_empty() {
                entry.recorded_by.clone()
            } else {
                entry
                    .signed_by
                    .iter()
                    .filter_map(|v| v.get("person").and_then(|p| p.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            crate::sanitize::escape(entry.reason.as_deref().unwrap_or(""))
        )),
        _ => {}
    }
}

/// Every audit-record checkpoint in the log (from the tip back), for
/// checking a copy of the JSON audit log against it.
///
/// # Errors
///
/// A message when an entry does not verify.
pub fn checkpoints(
    repo: &Repository,
    tip: Oid,
    key: &PublicKey,
) -> Result<BTreeMap<u64, String>, String> {
    let mut out = BTreeMap::new();
    let mut next = Some(tip);
    let mut n = 0usize;
    while let Some(id) = next {
        n += 1;
        if n > MAX_WALK {
            return Err(format!("the log is longer than {MAX_WALK} entries"));
        }
        let r = read_entry(repo, id, key)?;
        if let Some(m) = &r.entry.audit {
            out.insert(m.seq, m.hash.clone());
        }
        next = r.parent;
    }
    Ok(out)
}

/// Check a JSON audit log's bytes against the log's checkpoints: every
/// checkpointed record must be there with the same hash.
pub fn check_audit_copy(bytes: &[u8], marks: &BTreeMap<u64, String>) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let mut problems = Vec::new();
    let mut hashes: BTreeMap<u64, String> = BTreeMap::new();
    for line in bytes.split(|&b| b == b'\n') {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(seq) = v.get("seq").and_then(serde_json::Value::as_u64) {
            hashes.insert(seq, super::hex(&Sha256::digest(line)));
        }
    }
    let last = hashes.keys().next_back().copied().unwrap_or(0);
    for (seq, hash) in marks {
        match hashes.get(seq) {
            Some(h) if h == hash => {}
            Some(_) => problems.push(format!(
                "audit record {seq} is not the record the signed log checkpointed: it was edited"
            )),
            None if *seq > last => {
                problems.push(format!(
                    "the audit log ends at record {last}, but the signed log checkpointed record {seq}: records were cut off the end"
                ));
                break;
            }
            None => problems.push(format!(
                "audit record {seq}, which the signed log checkpointed, is missing"
            )),
        }
        if problems.len() >= 20 {
            break;
        }
    }
    problems
}
