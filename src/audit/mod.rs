//! The audit log: an append-only, hash-chained JSON-lines file.
//!
//! Every record is one line holding `seq` (1, 2, ...), `prev` (the SHA-256
//! of the previous line's bytes, 64 zeros for the first) and `time`, plus
//! the record's own fields. Editing, deleting or reordering any record
//! breaks the chain at the next one; a torn last line (a killed writer)
//! has no newline and is reported, never taken as valid. Appends hold an
//! exclusive lock on the file, so concurrent pushes serialize. An append
//! either adds one whole line (and syncs it) or leaves the file exactly as
//! it was: a failed write or sync (a full disk) is cut back off, so it
//! cannot leave a torn line that would block every later append. Records
//! are bounded ([`MAX_RECORD_BYTES`]), and reading the last record costs
//! its size, never the size of the log. A chain
//! proves order and integrity *relative to its last record*: cutting
//! records off the end is only detectable against a head recorded
//! elsewhere (`audit verify` prints it; `--expect-head` checks it).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::time::{self, Timestamp};

/// Git config key naming the audit log.
pub const CONFIG_KEY: &str = "countersign.auditLog";
/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The longest line [`append`] writes, its newline included. A longer
/// record is refused and nothing is written: callers shrink their records
/// below this (it is the absolute safety net, not a policy).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// The longest last line [`append`] reads back, its newline included.
/// Larger than [`MAX_RECORD_BYTES`] so that logs written before records
/// were bounded still take appends; a longer last line is reported as
/// damage instead of being read without limit under the lock.
pub const MAX_LEGACY_RECORD_BYTES: usize = 256 * 1024 * 1024;

/// Keys `append` sets itself; the caller's fields cannot replace them.
const RESERVED: [&str; 5] = ["seq", "prev", "time", "time_utc", "kind"];

/// Why the log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// File system error.
    #[error("audit log `{}`: {}", .0.display(), .1)]
    Io(PathBuf, std::io::Error),
    /// The existing log is damaged, so appending would extend a broken chain.
    #[error("audit log `{}` is damaged: {}", .0.display(), .1)]
    Damaged(PathBuf, String),
    /// The record would be longer than the limit; nothing was written.
    #[error("the audit record would be {bytes} bytes, more than the limit of {limit} bytes; nothing was written")]
    RecordTooLarge {
        /// Length of the line, newline included (or a lower bound of it).
        bytes: usize,
        /// The limit ([`MAX_RECORD_BYTES`]).
        limit: usize,
    },
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
/// record as one line, then syncs it. Returns the record as written.
///
/// A record longer than [`MAX_RECORD_BYTES`] is refused
/// ([`AuditError::RecordTooLarge`]) without writing anything. If the write
/// or the sync fails, the file is cut back to its length before the
/// append, so the log is left as it was (and the next append, once the
/// cause is gone, succeeds).
///
/// # Errors
///
/// [`AuditError`] when the log cannot be locked, read or written (nothing is left half-written), is damaged, or the record is too large.
pub fn append(path: &Path, kind: &str, fields: Value, now: Timestamp) -> Result<Value, AuditError> {
    append_with(path, kind, fields, now, Limits::DEFAULT)
}

/// How long a record may be: written, and read back from the log's end.
#[derive(Debug, Clone, Copy)]
struct Limits {
    record: usize,
    tail: usize,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        record: MAX_RECORD_BYTES,
        tail: MAX_LEGACY_RECORD_BYTES,
    };
}

fn append_with(
    path: &Path,
    kind: &str,
    fields: Value,
    now: Timestamp,
    limits: Limits,
) -> Result<Value, AuditError> {
    let io = |e| AuditError::Io(path.to_path_buf(), e);
    let body = record_body(kind, fields, now);
    // The body is part of the final line, so its length is a lower bound:
    // refuse a clearly oversized record before touching the file system.
    let least = json_len(&body).map_err(|e| AuditError::Damaged(path.to_path_buf(), e))?;
    if least >= limits.record {
        return Err(AuditError::RecordTooLarge {
            bytes: least + 1,
            limit: limits.record,
        });
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // Not opened in append mode: the write goes to the length observed
    // under the lock, and a failed write is cut back with `set_len`, which
    // an append-only handle may not be allowed to do (Windows).
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    file.lock().map_err(io)?;
    let result = append_locked(path, &mut file, body, limits);
    let _ = file.unlock();
    result
}

/// Everything of a record but `seq` and `prev` (which need the log).
fn record_body(kind: &str, fields: Value, now: Timestamp) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("time".into(), Value::from(now));
    body.insert("time_utc".into(), Value::from(time::format(now)));
    body.insert("kind".into(), Value::from(kind));
    if let Value::Object(map) = fields {
        for (k, v) in map {
            if !RESERVED.contains(&k.as_str()) {
                body.insert(k, v);
            }
        }
    }
    body
}

/// Length of `map` as JSON, without keeping the text.
fn json_len(map: &Map<String, Value>) -> Result<usize, String> {
    struct Count(usize);
    impl Write for Count {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, map).map_err(|e| e.to_string())?;
    Ok(count.0)
}

fn append_locked(
    path: &Path,
    file: &mut File,
    body: Map<String, Value>,
    limits: Limits,
) -> Result<Value, AuditError> {
    let io = |e| AuditError::Io(path.to_path_buf(), e);
    // The length under the lock: where the record goes, and what a failed
    // write is cut back to.
    let len = file.metadata().map_err(io)?.len();
    let damaged = |m: String| AuditError::Damaged(path.to_path_buf(), m);
    let (seq, prev) = match last_line(file, len, limits.tail).map_err(io)? {
        Tail::Empty => (1, GENESIS.to_string()),
        Tail::Torn => {
            return Err(damaged(
                "the last record is torn (no final newline); run `countersign audit verify`".into(),
            ))
        }
        Tail::TooLong => {
            return Err(damaged(format!(
                "the last record is longer than {} bytes, more than a record may be; run `countersign audit verify`",
                limits.tail
            )))
        }
        Tail::Line(last) => {
            let seq = serde_json::from_slice::<Value>(&last)
                .ok()
                .and_then(|v| v.get("seq").and_then(Value::as_u64))
                .ok_or_else(|| damaged("the last record has no sequence number".into()))?;
            (seq + 1, hash_line(&last))
        }
    };
    let mut record = Map::new();
    record.insert("seq".into(), Value::from(seq));
    record.insert("prev".into(), Value::from(prev));
    record.extend(body);
    let record = Value::Object(record);
    let mut line = serde_json::to_vec(&record).map_err(|e| damaged(e.to_string()))?;
    line.push(b'\n');
    if line.len() > limits.record {
        return Err(AuditError::RecordTooLarge {
            bytes: line.len(),
            limit: limits.record,
        });
    }
    write_record(file, len, &line).map_err(io)?;
    Ok(record)
}

/// What [`write_record`] writes to: a file, or a stand-in in tests.
trait Sink: Write + Seek {
    /// Make what was written durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Cut the file to `len` bytes.
    fn cut(&mut self, len: u64) -> io::Result<()>;
}

impl Sink for File {
    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
    fn cut(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
}

/// Write `line` at `at` (the file's length, taken under the lock) and sync
/// it. If writing or syncing fails, cut the file back to `at` and sync
/// again, so a failed append leaves the file as it was: a partial line
/// (a full disk) would otherwise tear the log for good.
fn write_record<S: Sink>(sink: &mut S, at: u64, line: &[u8]) -> io::Result<()> {
    let written = sink
        .seek(SeekFrom::Start(at))
        .and_then(|_| sink.write_all(line))
        .and_then(|()| sink.sync());
    let Err(e) = written else {
        return Ok(());
    };
    match sink.cut(at).and_then(|()| sink.sync()) {
        Ok(()) => Err(io::Error::new(
            e.kind(),
            format!("{e} (nothing was recorded; the log is as it was)"),
        )),
        Err(undo) => Err(io::Error::new(
            e.kind(),
            format!(
                "{e}; removing the partial record also failed ({undo}): the log may now end in a torn record"
            ),
        )),
    }
}

enum Tail {
    Empty,
    Torn,
    /// The last line, without its newline.
    Line(Vec<u8>),
    /// The last line is longer than the limit.
    TooLong,
}

/// The last complete line of the first `len` bytes of `file`, read
/// backwards from the end in chunks: the cost is the size of that line,
/// never of the log (appends must not read the whole log), and at most
/// `limit` bytes (the line with its newline) are searched.
fn last_line<R: Read + Seek>(file: &mut R, len: u64, limit: usize) -> io::Result<Tail> {
    const CHUNK: u64 = 64 * 1024;
    if len == 0 {
        return Ok(Tail::Empty);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] != b'\n' {
        return Ok(Tail::Torn);
    }
    // The line is [start, end); the newline before it, if any, must lie in
    // [low, end) for the line to be at most `max` bytes long.
    let end = len - 1;
    let max = u64::try_from(limit).unwrap_or(u64::MAX).saturating_sub(1);
    let low = end.saturating_sub(max.saturating_add(1));
    // Chunks from the end backwards, joined once at the end.
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut pos = end;
    while pos > low {
        let from = pos.saturating_sub(CHUNK).max(low);
        let mut buf = vec![0u8; (pos - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut buf)?;
        if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
            buf.drain(..=i);
            chunks.push(buf);
            return Ok(Tail::Line(join_reversed(chunks)));
        }
        chunks.push(buf);
        pos = from;
    }
    if end > max {
        return Ok(Tail::TooLong);
    }
    Ok(Tail::Line(join_reversed(chunks)))
}

/// Concatenate chunks collected back to front.
fn join_reversed(chunks: Vec<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunks.iter().map(Vec::len).sum());
    for chunk in chunks.into_iter().rev() {
        out.extend_from_slice(&chunk);
    }
    out
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

    /// A log whose only line is `record` with `seq` 1, written by hand (as
    /// a version without the record limit could have written it).
    fn legacy_log(name: &str, big: usize) -> (PathBuf, Vec<u8>) {
        let path = temp_log(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let rec =
            serde_json::json!({ "seq": 1, "prev": GENESIS, "time": 1, "big": "x".repeat(big) });
        let mut line = serde_json::to_vec(&rec).unwrap();
        line.push(b'\n');
        std::fs::write(&path, &line).unwrap();
        (path, line)
    }

    /// The length of a fresh log's first line with `{"big": ""}`.
    fn empty_big_len(name: &str) -> usize {
        let path = temp_log(name);
        append(&path, "t", serde_json::json!({ "big": "" }), 5).unwrap();
        let n = std::fs::read(&path).unwrap().len();
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
        n
    }

    #[test]
    fn record_over_the_limit_is_refused_and_nothing_is_written() {
        let path = temp_log("oversized");
        let before = write_three(&path);
        for big in [
            MAX_RECORD_BYTES,
            MAX_RECORD_BYTES - 100,
            3 * MAX_RECORD_BYTES,
        ] {
            let err =
                append(&path, "t", serde_json::json!({ "big": "x".repeat(big) }), 5).unwrap_err();
            match err {
                AuditError::RecordTooLarge { bytes, limit } => {
                    assert_eq!(limit, MAX_RECORD_BYTES);
                    assert!(bytes > limit, "{bytes} > {limit}");
                }
                other => panic!("expected RecordTooLarge, got {other}"),
            }
            assert_eq!(std::fs::read(&path).unwrap(), before, "big = {big}");
        }
        // The log still takes records.
        append(&path, "t", serde_json::json!({}), 6).unwrap();
        let v = verify(&std::fs::read(&path).unwrap());
        assert_eq!((v.records, v.first_break), (4, None));
        // A refused record does not even create a missing log.
        let fresh = temp_log("oversized-fresh");
        let big = "x".repeat(MAX_RECORD_BYTES);
        assert!(matches!(
            append(&fresh, "t", serde_json::json!({ "big": big }), 1),
            Err(AuditError::RecordTooLarge { .. })
        ));
        assert!(!fresh.parent().unwrap().exists());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn record_of_exactly_the_limit_is_written_one_more_byte_is_not() {
        let base = empty_big_len("exact-base");
        let fill = MAX_RECORD_BYTES - base;
        let path = temp_log("exact-fits");
        append(
            &path,
            "t",
            serde_json::json!({ "big": "x".repeat(fill) }),
            5,
        )
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), MAX_RECORD_BYTES);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());

        let path = temp_log("exact-over");
        let err = append(
            &path,
            "t",
            serde_json::json!({ "big": "x".repeat(fill + 1) }),
            5,
        )
        .unwrap_err();
        assert!(
            matches!(err, AuditError::RecordTooLarge { bytes, .. } if bytes == MAX_RECORD_BYTES + 1),
            "{err}"
        );
        // Refused under the lock: the log may exist, but holds nothing.
        assert_eq!(std::fs::read(&path).map(|b| b.len()).unwrap_or(0), 0);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn append_follows_a_legacy_record_of_several_megabytes() {
        let (path, line) = legacy_log("legacy", 5 * 1024 * 1024 + 12_345);
        let mut file = File::open(&path).unwrap();
        let len = line.len() as u64;
        match last_line(&mut file, len, MAX_LEGACY_RECORD_BYTES).unwrap() {
            Tail::Line(l) => assert!(l == line[..line.len() - 1], "wrong last line"),
            _ => panic!("the last line was not found"),
        }
        let rec = append(&path, "t", serde_json::json!({}), 2).unwrap();
        assert_eq!(rec["seq"], 2);
        assert_eq!(rec["prev"], hash_line(&line[..line.len() - 1]));
        let v = verify(&std::fs::read(&path).unwrap());
        assert_eq!((v.records, v.first_break), (2, None));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn last_line_is_exact_across_chunk_boundaries() {
        // Lines whose lengths straddle the 64 KiB read chunk.
        for n in [0, 1, 65_534, 65_535, 65_536, 65_537, 131_072, 200_001] {
            let prefix = b"first line\n".to_vec();
            let line: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            for with_prefix in [false, true] {
                let mut data = if with_prefix {
                    prefix.clone()
                } else {
                    Vec::new()
                };
                data.extend_from_slice(&line);
                data.push(b'\n');
                let len = data.len() as u64;
                let mut cur = io::Cursor::new(data);
                match last_line(&mut cur, len, MAX_LEGACY_RECORD_BYTES).unwrap() {
                    Tail::Line(l) => assert!(l == line, "n = {n}"),
                    _ => panic!("n = {n}: no line"),
                }
            }
        }
    }

    #[test]
    fn last_line_stops_at_its_bound() {
        for n in [999, 1000, 1001, 199_999, 200_000, 200_001] {
            for with_prefix in [false, true] {
                let mut data = if with_prefix {
                    b"{\"seq\":1}\n".to_vec()
                } else {
                    Vec::new()
                };
                data.extend(std::iter::repeat_n(b'y', n));
                data.push(b'\n');
                let len = data.len() as u64;
                let mut cur = io::Cursor::new(data);
                // The limit counts the newline: n + 1 fits, n does not.
                let fits = last_line(&mut cur, len, n + 1).unwrap();
                assert!(matches!(fits, Tail::Line(ref l) if l.len() == n), "n = {n}");
                let over = last_line(&mut cur, len, n).unwrap();
                assert!(matches!(over, Tail::TooLong), "n = {n}");
                let far_over = last_line(&mut cur, len, n / 2).unwrap();
                assert!(matches!(far_over, Tail::TooLong), "n = {n}");
            }
        }
    }

    #[test]
    fn append_refuses_a_last_record_beyond_the_read_bound() {
        let (path, line) = legacy_log("tail-bound", 3000);
        let limits = Limits {
            record: MAX_RECORD_BYTES,
            tail: 1000,
        };
        let err = append_with(&path, "t", serde_json::json!({}), 2, limits).unwrap_err();
        assert!(
            matches!(err, AuditError::Damaged(_, ref m) if m.contains("longer than 1000 bytes")),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), line);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    /// A file in memory that fails like a full disk: writes stop after
    /// `room` bytes (a short write first, as the kernel does), and the
    /// sync and the cut can be made to fail.
    struct Flaky {
        file: io::Cursor<Vec<u8>>,
        room: usize,
        fail_sync: bool,
        fail_cut: bool,
    }

    impl Flaky {
        fn new(content: &[u8], room: usize) -> Flaky {
            Flaky {
                file: io::Cursor::new(content.to_vec()),
                room,
                fail_sync: false,
                fail_cut: false,
            }
        }
    }

    impl Write for Flaky {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "no space"));
            }
            let n = b.len().min(self.room);
            self.room -= n;
            self.file.write(&b[..n])
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Seek for Flaky {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            self.file.seek(to)
        }
    }

    impl Sink for Flaky {
        fn sync(&mut self) -> io::Result<()> {
            if self.fail_sync {
                return Err(io::Error::other("I/O error on sync"));
            }
            Ok(())
        }
        fn cut(&mut self, len: u64) -> io::Result<()> {
            if self.fail_cut {
                return Err(io::Error::other("cannot truncate"));
            }
            self.file.get_mut().truncate(len as usize);
            Ok(())
        }
    }

    #[test]
    fn failed_write_is_rolled_back() {
        let old = b"{\"seq\":1}\n";
        let line = b"{\"seq\":2,\"pad\":\"0123456789\"}\n";
        // Full disk part way through the line, or before it.
        for room in [0, 1, 7, line.len() - 1] {
            let mut f = Flaky::new(old, room);
            let err = write_record(&mut f, old.len() as u64, line).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::StorageFull);
            assert!(err.to_string().contains("the log is as it was"), "{err}");
            assert_eq!(f.file.get_ref(), old, "room = {room}");
        }
        // The whole line written, but the sync fails: also undone.
        let mut f = Flaky::new(old, usize::MAX);
        f.fail_sync = true;
        assert!(write_record(&mut f, old.len() as u64, line).is_err());
        assert_eq!(f.file.get_ref(), old);
        // When even the rollback fails, the error says the log may be torn.
        let mut f = Flaky::new(old, 5);
        f.fail_cut = true;
        let err = write_record(&mut f, old.len() as u64, line).unwrap_err();
        assert!(err.to_string().contains("torn"), "{err}");
        // With room, the line is written at the given length.
        let mut f = Flaky::new(old, usize::MAX);
        write_record(&mut f, old.len() as u64, line).unwrap();
        assert_eq!(f.file.get_ref(), &[&old[..], &line[..]].concat());
    }

    #[test]
    #[ignore = "timing measurement; run with --ignored --nocapture"]
    fn time_append_after_a_50_mb_record() {
        let (path, line) = legacy_log("timing", 50 * 1024 * 1024);
        let t = std::time::Instant::now();
        append(&path, "t", serde_json::json!({}), 2).unwrap();
        eprintln!(
            "append after a {} byte record: {:?}",
            line.len(),
            t.elapsed()
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
