//! The audit log: an append-only, hash-chained JSON-lines file.
//!
//! Every record is one line holding `seq` (1, 2, ...), `prev` (the SHA-256
//! of the previous line's bytes, 64 zeros for the first) and `time`, plus
//! the record's own fields. Editing, deleting or reordering any record
//! breaks the chain at the next one; a torn last line (a killed writer)
//! has no newline and is reported, never taken as valid. Appends hold an
//! exclusive lock on the file, so concurrent pushes serialize. A chain
//! proves order and integrity *relative to its last record*: cutting
//! records off the end is only detectable against a head recorded
//! elsewhere (`audit verify` prints it; `--expect-head` checks it).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::time::{self, Timestamp};

/// Git config key naming the audit log.
pub const CONFIG_KEY: &str = "countersign.auditLog";
/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Why the log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// File system error.
    #[error("audit log `{}`: {}", .0.display(), .1)]
    Io(PathBuf, std::io::Error),
    /// The existing log is damaged, so appending would extend a broken chain.
    #[error("audit log `{}` is damaged: {}", .0.display(), .1)]
    Damaged(PathBuf, String),
}

/// A problem found by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// The result of verifying a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Records that verified, in order.
    pub records: usize,
    /// SHA-256 of the last good line (the head), or [`GENESIS`].
    pub head: String,
    /// The first break, if any.
    pub first_break: Option<Break>,
}

/// The log path for a repository: git config `countersign.auditLog`
/// (relative to `$GIT_DIR`), else `$GIT_DIR/countersign/audit.log`.
pub fn path_for(repo: &git2::Repository) -> PathBuf {
    let git_dir = repo.path().to_path_buf();
    match repo.config().and_then(|c| c.get_path(CONFIG_KEY)) {
        Ok(p) if p.is_absolute() => p,
        Ok(p) => git_dir.join(p),
        Err(_) => git_dir.join("countersign").join("audit.log"),
    }
}

fn hash_line(line: &[u8]) -> String {
    let digest = Sha256::digest(line);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a file's bytes, hex (for policy digests).
pub fn digest(bytes: &[u8]) -> String {
    hash_line(bytes)
}

/// Append one record of `kind` with `fields` (an object). Takes an
/// exclusive lock, checks the tail of the existing log, and writes the
/// record as one line. Returns the record as written.
pub fn append(path: &Path, kind: &str, fields: Value, now: Timestamp) -> Result<Value, AuditError> {
    let io = |e| AuditError::Io(path.to_path_buf(), e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io)?;
    file.lock().map_err(io)?;
    let result = append_locked(path, &mut file, kind, fields, now);
    let _ = file.unlock();
    result
}

fn append_locked(
    path: &Path,
    file: &mut File,
    kind: &str,
    fields: Value,
    now: Timestamp,
) -> Result<Value, AuditError> {
    let io = |e| AuditError::Io(path.to_path_buf(), e);
    let last = last_line(file).map_err(io)?;
    let (seq, prev) = match last {
        Tail::Empty => (1, GENESIS.to_string()),
        Tail::Torn => {
            return Err(AuditError::Damaged(
                path.to_path_buf(),
                "the last record is torn (no final newline); run `countersign audit verify`".into(),
            ))
        }
        Tail::Line(last) => {
            let seq = serde_json::from_slice::<Value>(&last)
                .ok()
                .and_then(|v| v.get("seq").and_then(Value::as_u64))
                .ok_or_else(|| {
                    AuditError::Damaged(
                        path.to_path_buf(),
                        "the last record has no sequence number".into(),
                    )
                })?;
            (seq + 1, hash_line(&last))
        }
    };
    let mut record = Map::new();
    record.insert("seq".into(), Value::from(seq));
    record.insert("prev".into(), Value::from(prev));
    record.insert("time".into(), Value::from(now));
    record.insert("time_utc".into(), Value::from(time::format(now)));
    record.insert("kind".into(), Value::from(kind));
    if let Value::Object(map) = fields {
        for (k, v) in map {
            if !record.contains_key(&k) {
                record.insert(k, v);
            }
        }
    }
    let record = Value::Object(record);
    let mut line = serde_json::to_vec(&record)
        .map_err(|e| AuditError::Damaged(path.to_path_buf(), e.to_string()))?;
    line.push(b'\n');
    file.write_all(&line).map_err(io)?;
    file.sync_data().map_err(io)?;
    Ok(record)
}

enum Tail {
    Empty,
    Torn,
    Line(Vec<u8>),
}

/// The last complete line of the file, read backwards from the end in
/// chunks (appends must not cost a read of the whole log).
fn last_line(file: &mut File) -> std::io::Result<Tail> {
    const CHUNK: u64 = 64 * 1024;
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(Tail::Empty);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] != b'\n' {
        return Ok(Tail::Torn);
    }
    // Search backwards for the newline before the last line.
    let end = len - 1;
    let mut pos = end;
    let mut tail: Vec<u8> = Vec::new();
    while pos > 0 {
        let start = pos.saturating_sub(CHUNK);
        let mut buf = vec![0u8; (pos - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
            let mut line = buf[i + 1..].to_vec();
            line.extend_from_slice(&tail);
            return Ok(Tail::Line(line));
        }
        buf.extend_from_slice(&tail);
        tail = buf;
        pos = start;
    }
    Ok(Tail::Line(tail))
}

/// Verify the whole chain: every line parses, `seq` counts up from 1, and
/// `prev` is the hash of the previous line. Stops at the first break.
pub fn verify(bytes: &[u8]) -> Verification {
    let mut records = 0;
    let mut head = GENESIS.to_string();
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let last_index = lines.len() - 1; // the part after the final newline
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        if i == last_index {
            if !line.is_empty() {
                return Verification {
                    records,
                    head,
                    first_break: Some(Break {
                        line: n,
                        message: "torn record: the last line has no newline (a writer was interrupted, or the file was cut)".into(),
                    }),
                };
            }
            break;
        }
        let fail = |message: String| Verification {
            records,
            head: head.clone(),
            first_break: Some(Break { line: n, message }),
        };
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            return fail("not a JSON record".into());
        };
        let expected_seq = records as u64 + 1;
        match v.get("seq").and_then(Value::as_u64) {
            Some(s) if s == expected_seq => {}
            Some(s) if s > expected_seq => {
                return fail(format!("record {expected_seq} is missing (found seq {s})"))
            }
            Some(s) => {
                return fail(format!(
                    "out of order: seq {s} where {expected_seq} was expected"
                ))
            }
            None => return fail("record has no `seq`".into()),
        }
        match v.get("prev").and_then(Value::as_str) {
            Some(p) if p == head => {}
            Some(_) => {
                return fail(format!(
                    "record {expected_seq} does not follow the previous record: its `prev` is not the hash of line {} (that record was edited, removed or reordered)",
                    n.saturating_sub(1)
                ))
            }
            None => return fail("record has no `prev`".into()),
        }
        records += 1;
        head = hash_line(line);
    }
    Verification {
        records,
        head,
        first_break: None,
    }
}

/// Who is pushing: the first identity the server or forge established
/// (`GL_USERNAME`, `GL_USER` (Gitolite), `GITEA_PUSHER_NAME`,
/// `REMOTE_USER`, a push certificate's signer only when git reports a good
/// signature and a valid nonce), else the OS user. Every candidate is kept
/// under `candidates` with its source, so an auditor sees them all.
pub fn pusher() -> Value {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut candidates = Vec::new();
    for k in ["GL_USERNAME", "GL_USER", "GITEA_PUSHER_NAME", "REMOTE_USER"] {
        if let Some(v) = var(k) {
            candidates.push(serde_json::json!({ "name": v, "source": k }));
        }
    }
    if let Some(signer) = var("GIT_PUSH_CERT_SIGNER") {
        let good = var("GIT_PUSH_CERT_STATUS").as_deref() == Some("G")
            && var("GIT_PUSH_CERT_NONCE_STATUS").as_deref() == Some("OK");
        let source = if good {
            "GIT_PUSH_CERT_SIGNER"
        } else {
            "GIT_PUSH_CERT_SIGNER (not verified)"
        };
        candidates.push(serde_json::json!({ "name": signer, "source": source }));
    }
    let os = serde_json::json!({ "name": os_user(), "source": "os-user" });
    let chosen = candidates
        .iter()
        .find(|c| {
            c.get("source")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.contains("not verified"))
        })
        .cloned()
        .unwrap_or_else(|| os.clone());
    candidates.push(os);
    let mut out = chosen;
    if let Value::Object(map) = &mut out {
        map.insert("candidates".into(), Value::Array(candidates));
    }
    out
}

/// The OS user name: `USER`, else `LOGNAME`, else the name of this
/// process's uid in /etc/passwd, else `uid:<n>`, else `unknown`.
pub fn os_user() -> String {
    if let Some(u) = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
    {
        return u;
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_string))
        });
    let Some(uid) = uid else {
        return "unknown".into();
    };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| format!("uid:{uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_log(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("cs-audit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p.join("audit.log")
    }

    fn write_three(path: &Path) -> Vec<u8> {
        for i in 0..3 {
            append(path, "test", serde_json::json!({ "n": i }), 1000 + i).unwrap();
        }
        std::fs::read(path).unwrap()
    }

    #[test]
    fn chain_verifies_and_detects_tampering() {
        let path = temp_log("tamper");
        let bytes = write_three(&path);
        let v = verify(&bytes);
        assert_eq!(v.records, 3);
        assert!(v.first_break.is_none());
        let text = String::from_utf8(bytes.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();

        let edited = text.replace("\"n\":1", "\"n\":7");
        assert_eq!(verify(edited.as_bytes()).first_break.unwrap().line, 3);

        let deleted = format!("{}\n{}\n", lines[0], lines[2]);
        let b = verify(deleted.as_bytes()).first_break.unwrap();
        assert_eq!(b.line, 2);
        assert!(b.message.contains("missing"), "{}", b.message);

        let reordered = format!("{}\n{}\n{}\n", lines[0], lines[2], lines[1]);
        assert!(verify(reordered.as_bytes()).first_break.is_some());

        let torn = &bytes[..bytes.len() - 5];
        let b = verify(torn).first_break.unwrap();
        assert_eq!(b.line, 3);
        assert!(b.message.contains("torn"));
        std::fs::write(&path, torn).unwrap();
        assert!(matches!(
            append(&path, "x", serde_json::json!({}), 1),
            Err(AuditError::Damaged(..))
        ));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn long_records_chain_across_read_chunks() {
        let path = temp_log("long");
        let big = "x".repeat(200_000);
        append(&path, "t", serde_json::json!({ "big": big }), 1).unwrap();
        append(&path, "t", serde_json::json!({ "big": big }), 2).unwrap();
        append(&path, "t", serde_json::json!({}), 3).unwrap();
        let v = verify(&std::fs::read(&path).unwrap());
        assert_eq!(v.records, 3);
        assert!(v.first_break.is_none(), "{:?}", v.first_break);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn concurrent_appends_keep_the_chain() {
        let path = temp_log("concurrent");
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let p = path.clone();
                std::thread::spawn(move || {
                    for j in 0..10 {
                        append(&p, "t", serde_json::json!({ "i": i, "j": j }), 1).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let v = verify(&std::fs::read(&path).unwrap());
        assert_eq!(v.records, 80);
        assert!(v.first_break.is_none());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
