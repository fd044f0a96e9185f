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
//! are bounded ([`MAX_RECORD_BYTES`]). A chain proves order and integrity
//! *relative to its last record*: cutting records off the end, or
//! rewriting the whole chain consistently, is only detectable against a
//! head recorded elsewhere (`audit verify` prints it; `--expect-head`
//! checks it; the signed checkpoints of the ref-state log keep it in the
//! repository).
//!
//! # The checkpoint: what every append verifies
//!
//! Beside the log lies its checkpoint, `<log>.checkpoint` (one JSON line:
//! `seq`, `offset`, `head`, and the log file's identity and change time
//! after that append). It says "records 1..`seq`, the first `offset` bytes,
//! were verified, and the last of them hashes to `head`". Each append,
//! under the log's lock:
//!
//! 1. reads the checkpoint. A log shorter than `offset` had records cut off
//!    (or was replaced): **damaged**. The line ending at `offset` must
//!    still be record `seq` and hash to `head`, so an edit of the last
//!    verified record is caught: else **damaged**.
//! 2. if the file's identity (device, inode, size, modification and
//!    change time) is still what the checkpoint recorded, nothing has
//!    written to the file since the last append: the new record follows
//!    `head` without reading more (the cost is one record).
//! 3. otherwise something other than an append wrote the file (an edit, a
//!    copy, a crash between the record and its checkpoint, a `chmod`):
//!    the whole log is verified from line 1 when it is at most
//!    [`MAX_VERIFY_BYTES`], which names the first broken line of an edit
//!    anywhere; a longer log is verified from the checkpoint to its end
//!    (at most [`MAX_VERIFY_BYTES`] past it, else **damaged**).
//! 4. writes the record, then the new checkpoint (atomically: a temporary
//!    file, created before the record is written so an unwritable
//!    directory refuses the append instead of losing checkpoints, then
//!    renamed).
//!
//! A log without a checkpoint (written before checkpoints existed, or
//! whose checkpoint was removed) is verified whole once, then gets one; if
//! it is larger than [`MAX_VERIFY_BYTES`], appends are refused until an
//! admin runs `countersign audit verify --checkpoint` (which verifies the
//! whole log, however long, and writes the checkpoint). A missing
//! checkpoint is never a bypass: the log is then verified from line 1.
//! A damaged log refuses every append (the push is rejected) until an admin
//! repairs it and runs `countersign audit verify --checkpoint`.
//!
//! What this cannot detect alone: whoever can write both the log and its
//! checkpoint can cut or rewrite the log and the checkpoint together (and
//! whoever can also reset the clock or write the disk directly can edit a
//! record before the last one without changing the file's change time).
//! Those are caught by the full `countersign audit verify` against a head
//! kept elsewhere, and by the signed checkpoints of the log's head that the
//! ref-state log keeps in the repository, which every clone can check.
//! Step 2 trusts the file system's change time, which user-level tools
//! cannot set back; on a file system whose timestamps are coarse, an edit
//! of the same size within the same timestamp tick as the last append is
//! seen only by a full verify.
//!
//! # Sharing
//!
//! The files an append creates (directories, the log, the checkpoint)
//! follow git's `core.sharedRepository` ([`Sharing`]), so that in a
//! repository shared by a group, every member's push can append.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::time::{self, Timestamp};

mod sharing;
pub use sharing::{adopt_parent_owner, create_dirs, share, Sharing};

/// Git config key naming the audit log.
pub const CONFIG_KEY: &str = "countersign.auditLog";
/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The longest line [`append`] writes, its newline included. A longer
/// record is refused and nothing is written: callers shrink their records
/// below this (it is the absolute safety net, not a policy).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// The longest line read back from the log's end (the record at the
/// checkpoint, which each append re-hashes; [`last_record`]), its newline
/// included. Larger than [`MAX_RECORD_BYTES`] so that logs written before
/// records were bounded still take appends; a longer line is reported as
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
    path_in(repo.path(), repo.config().ok().as_ref())
}

/// The log path for the repository at `git_dir` whose config is `config`
/// (`None`: unreadable, so the default path).
pub fn path_in(git_dir: &Path, config: Option<&git2::Config>) -> PathBuf {
    match config.map(|c| c.get_path(CONFIG_KEY)) {
        Some(Ok(p)) if p.is_absolute() => p,
        Some(Ok(p)) => git_dir.join(p),
        _ => git_dir.join("countersign").join("audit.log"),
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

/// The head of a log: its last record's `seq` and the SHA-256 of that
/// record's line (without its newline), which the next record's `prev`
/// names. An empty log's head is `seq` 0 and [`GENESIS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The last record's `seq` (0: no record).
    pub seq: u64,
    /// SHA-256 of the last record's line, hex (or [`GENESIS`]).
    pub hash: String,
}

impl Head {
    fn genesis() -> Head {
        Head {
            seq: 0,
            hash: GENESIS.to_string(),
        }
    }
}

/// What [`append_shared`] wrote.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The record as written.
    pub record: Value,
    /// The record's `seq`.
    pub seq: u64,
    /// SHA-256 of the record's line (without its newline), hex: the log's
    /// new head, and the next record's `prev`.
    pub hash: String,
    /// Set when the record was written but its checkpoint could not be
    /// replaced (a rename that failed after the record was synced). The
    /// record stands; the next append verifies from the older checkpoint.
    pub checkpoint_error: Option<String>,
}

/// Append one record of `kind` with `fields` (an object), creating files
/// with the process's umask; see [`append_shared`]. Returns the record as
/// written.
///
/// # Errors
///
/// As for [`append_shared`].
pub fn append(path: &Path, kind: &str, fields: Value, now: Timestamp) -> Result<Value, AuditError> {
    append_shared(path, kind, fields, now, Sharing::Umask).map(|a| a.record)
}

/// Append one record of `kind` with `fields` (an object). Takes an
/// exclusive lock, verifies the log from its checkpoint (see the module
/// documentation), writes the record as one line and syncs it, then
/// replaces the checkpoint. Directories, the log and the checkpoint it
/// creates get the modes `sharing` asks for.
///
/// A record longer than [`MAX_RECORD_BYTES`] is refused
/// ([`AuditError::RecordTooLarge`]) without writing anything. If the write
/// or the sync fails, the file is cut back to its length before the
/// append, so the log is left as it was (and the next append, once the
/// cause is gone, succeeds).
///
/// # Errors
///
/// [`AuditError`] when the log or its checkpoint cannot be locked, read or
/// written (nothing is left half-written), the log is damaged (it does not
/// verify from its checkpoint, or is shorter than it), or the record is too
/// large.
pub fn append_shared(
    path: &Path,
    kind: &str,
    fields: Value,
    now: Timestamp,
    sharing: Sharing,
) -> Result<Appended, AuditError> {
    append_with(path, kind, fields, now, Limits::DEFAULT, sharing)
}

/// How long a record may be: written, and read back from the log's end;
/// and how much of the log an append verifies.
#[derive(Debug, Clone, Copy)]
struct Limits {
    record: usize,
    tail: usize,
    verify: u64,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        record: MAX_RECORD_BYTES,
        tail: MAX_LEGACY_RECORD_BYTES,
        verify: MAX_VERIFY_BYTES,
    };
}

fn append_with(
    path: &Path,
    kind: &str,
    fields: Value,
    now: Timestamp,
    limits: Limits,
    sharing: Sharing,
) -> Result<Appended, AuditError> {
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
        create_dirs(dir, sharing).map_err(io)?;
    }
    let mut file = open_log(path, sharing)?;
    file.lock().map_err(io)?;
    let result = append_locked(path, &mut file, body, limits, sharing);
    let _ = file.unlock();
    result
}

/// Open (creating) the log for reading and writing, with `sharing`'s mode.
fn open_log(path: &Path, sharing: Sharing) -> Result<File, AuditError> {
    let io = |e| AuditError::Io(path.to_path_buf(), e);
    // Not opened in append mode: the write goes to the length observed
    // under the lock, and a failed write is cut back with `set_len`, which
    // an append-only handle may not be allowed to do (Windows).
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    share(&file, sharing, false).map_err(io)?;
    adopt_parent_owner(path);
    Ok(file)
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
    sharing: Sharing,
) -> Result<Appended, AuditError> {
    let io = |e| AuditError::Io(path.to_path_buf(), e);
    let damaged = |m: String| AuditError::Damaged(path.to_path_buf(), m);
    // The length under the lock: where the record goes, and what a failed
    // write is cut back to.
    let meta = file.metadata().map_err(io)?;
    let len = meta.len();
    let head = verified_head(path, file, len, Stamp::of(&meta), limits)?;
    let seq = head.seq + 1;
    let mut record = Map::new();
    record.insert("seq".into(), Value::from(seq));
    record.insert("prev".into(), Value::from(head.hash));
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
    // The checkpoint's temporary file first: a directory where it cannot
    // be made refuses the append, rather than every later append running
    // without a checkpoint.
    let cp_path = checkpoint_path(path);
    let pending = PendingCheckpoint::create(&cp_path, sharing)
        .map_err(|e| AuditError::Io(cp_path.clone(), e))?;
    if let Err(e) = write_record(file, len, &line) {
        pending.abandon();
        return Err(io(e));
    }
    let hash = hash_line(&line[..line.len() - 1]);
    let end = len + line.len() as u64;
    let checkpoint = Checkpoint {
        version: CHECKPOINT_VERSION,
        seq,
        offset: end,
        head: hash.clone(),
        stamp: file.metadata().ok().and_then(|m| Stamp::of(&m)),
    };
    let checkpoint_error = pending
        .commit(&checkpoint)
        .err()
        .map(|e| format!("checkpoint `{}`: {e}", cp_path.display()));
    Ok(Appended {
        record,
        seq,
        hash,
        checkpoint_error,
    })
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

const TORN: &str =
    "torn record: the last line has no newline (a writer was interrupted, or the file was cut)";

/// The chain as it is checked, one line at a time.
struct Chain {
    head: Head,
}

impl Chain {
    /// Check `line` (without its newline) as the record after the head.
    fn push(&mut self, line: &[u8]) -> Result<(), Break> {
        let expected_seq = self.head.seq + 1;
        let fail = |message: String| Break {
            line: usize::try_from(expected_seq).unwrap_or(usize::MAX),
            message,
        };
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            return Err(fail("not a JSON record".into()));
        };
        match v.get("seq").and_then(Value::as_u64) {
            Some(s) if s == expected_seq => {}
            Some(s) if s > expected_seq => {
                return Err(fail(format!(
                    "record {expected_seq} is missing (found seq {s})"
                )))
            }
            Some(s) => {
                return Err(fail(format!(
                    "out of order: seq {s} where {expected_seq} was expected"
                )))
            }
            None => return Err(fail("record has no `seq`".into())),
        }
        match v.get("prev").and_then(Value::as_str) {
            Some(p) if p == self.head.hash => {}
            Some(_) => {
                return Err(fail(format!(
                    "record {expected_seq} does not follow the previous record: its `prev` is not the hash of line {} (that record was edited, removed or reordered)",
                    self.head.seq
                )))
            }
            None => return Err(fail("record has no `prev`".into())),
        }
        self.head = Head {
            seq: expected_seq,
            hash: hash_line(line),
        };
        Ok(())
    }

    fn torn(&self) -> Break {
        Break {
            line: usize::try_from(self.head.seq + 1).unwrap_or(usize::MAX),
            message: TORN.into(),
        }
    }
}

/// Verify the whole chain: every line parses, `seq` counts up from 1, and
/// `prev` is the hash of the previous line. Stops at the first break.
pub fn verify(bytes: &[u8]) -> Verification {
    let mut chain = Chain {
        head: Head::genesis(),
    };
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let last_index = lines.len() - 1; // the part after the final newline
    let mut first_break = None;
    for (i, line) in lines.iter().enumerate() {
        if i == last_index {
            if !line.is_empty() {
                first_break = Some(chain.torn());
            }
            break;
        }
        if let Err(b) = chain.push(line) {
            first_break = Some(b);
            break;
        }
    }
    Verification {
        records: usize::try_from(chain.head.seq).unwrap_or(usize::MAX),
        head: chain.head.hash,
        first_break,
    }
}

/// Verify bytes `from..to` of `file` as the records after `start`, reading
/// one line at a time (memory: the longest line, at most `to - from`).
fn verify_span<R: Read + Seek>(
    file: &mut R,
    from: u64,
    to: u64,
    start: Head,
) -> io::Result<Result<Head, Break>> {
    file.seek(SeekFrom::Start(from))?;
    let mut reader = io::BufReader::new(file.take(to.saturating_sub(from)));
    let mut chain = Chain { head: start };
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(Ok(chain.head));
        }
        if line.last() != Some(&b'\n') {
            return Ok(Err(chain.torn()));
        }
        line.pop();
        if let Err(b) = chain.push(&line) {
            return Ok(Err(b));
        }
    }
}

impl Break {
    /// `line N: what is wrong`.
    pub fn describe(&self) -> String {
        format!("line {}: {}", self.line, self.message)
    }
}

// ---------------------------------------------------------------------------
// The checkpoint
// ---------------------------------------------------------------------------

/// The most bytes of the log an append verifies: the whole log when it is
/// at most this long and was written by something else since the last
/// append (or has no checkpoint), else the part past the checkpoint.
pub const MAX_VERIFY_BYTES: u64 = 64 * 1024 * 1024;

const CHECKPOINT_VERSION: u32 = 1;
/// The longest checkpoint file read.
const MAX_CHECKPOINT_BYTES: u64 = 4096;

/// The checkpoint beside `log`: `<log>.checkpoint`.
pub fn checkpoint_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_os_string();
    name.push(".checkpoint");
    PathBuf::from(name)
}

/// What an append verified: records 1..`seq`, the first `offset` bytes,
/// the last of them hashing to `head`; and the log file as that append
/// left it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Checkpoint {
    version: u32,
    seq: u64,
    offset: u64,
    head: String,
    #[serde(default)]
    stamp: Option<Stamp>,
}

/// A file's identity and times: any write by anyone changes the change
/// time (which user-level tools cannot set), a replacement the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_ns: i64,
    ctime: i64,
    ctime_ns: i64,
}

impl Stamp {
    #[cfg(unix)]
    fn of(m: &std::fs::Metadata) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        Some(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_ns: m.mtime_nsec(),
            ctime: m.ctime(),
            ctime_ns: m.ctime_nsec(),
        })
    }

    /// Without a change time, every append takes the slower path.
    #[cfg(not(unix))]
    fn of(_: &std::fs::Metadata) -> Option<Stamp> {
        None
    }
}

/// The checkpoint of the log at `log`; `None` when there is none.
fn read_checkpoint(log: &Path) -> Result<Option<Checkpoint>, AuditError> {
    let cp_path = checkpoint_path(log);
    let mut text = Vec::new();
    match File::open(&cp_path) {
        Ok(f) => f
            .take(MAX_CHECKPOINT_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| AuditError::Io(cp_path.clone(), e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AuditError::Io(cp_path, e)),
    };
    let bad = |why: &str| {
        AuditError::Damaged(
            log.to_path_buf(),
            format!(
                "its checkpoint `{}` {why}; check the log with `countersign audit verify`, then record its head with `countersign audit verify --checkpoint`",
                cp_path.display()
            ),
        )
    };
    let cp: Checkpoint = serde_json::from_slice(&text)
        .map_err(|_| bad("is not a checkpoint countersign wrote (edited, or cut)"))?;
    if cp.version != CHECKPOINT_VERSION {
        return Err(bad(&format!(
            "has version {}, which this countersign does not know",
            cp.version
        )));
    }
    let hex = cp.head.len() == 64 && cp.head.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex || (cp.offset == 0) != (cp.seq == 0) {
        return Err(bad("is inconsistent"));
    }
    Ok(Some(cp))
}

/// What is wrong with the first `len` bytes of `file` against `cp`: a log
/// shorter than the checkpoint, or a line ending at the checkpoint's offset
/// that is not the record that was verified. `None`: the checkpoint holds.
fn checkpoint_problem<R: Read + Seek>(
    file: &mut R,
    len: u64,
    cp: &Checkpoint,
    tail: usize,
) -> io::Result<Option<String>> {
    if cp.offset > len {
        return Ok(Some(format!(
            "it is {len} bytes long, shorter than the {} bytes (records 1..{}) an earlier append verified: records were cut off its end, or the file was replaced",
            cp.offset, cp.seq
        )));
    }
    if cp.offset == 0 {
        return Ok((cp.head != GENESIS).then(|| "its checkpoint is inconsistent".to_string()));
    }
    let holds = match last_line(file, cp.offset, tail)? {
        Tail::Line(l) => {
            let seq = serde_json::from_slice::<Value>(&l)
                .ok()
                .and_then(|v| v.get("seq").and_then(Value::as_u64));
            seq == Some(cp.seq) && hash_line(&l) == cp.head
        }
        Tail::TooLong => {
            return Ok(Some(format!(
                "line {}: the record at its checkpoint is longer than {tail} bytes, more than a record may be",
                cp.seq
            )))
        }
        Tail::Empty | Tail::Torn => false,
    };
    Ok((!holds).then(|| {
        format!(
            "line {0}: record {0}, the last one an earlier append verified, is no longer what was verified (it was edited, or lines before it changed length)",
            cp.seq
        )
    }))
}

/// The head the next record follows: the log checked against its
/// checkpoint as the module documentation describes. `stamp` is the log
/// file's, taken under the lock.
fn verified_head(
    path: &Path,
    file: &mut File,
    len: u64,
    stamp: Option<Stamp>,
    limits: Limits,
) -> Result<Head, AuditError> {
    let io = |e| AuditError::Io(path.to_path_buf(), e);
    let damaged = |m: String| AuditError::Damaged(path.to_path_buf(), m);
    let verified = |r: Result<Head, Break>| {
        r.map_err(|b| {
            damaged(format!(
                "{}; run `countersign audit verify` (the hook refuses to extend a damaged log)",
                b.describe()
            ))
        })
    };
    let cp_path = checkpoint_path(path);
    let Some(cp) = read_checkpoint(path)? else {
        if len == 0 {
            return Ok(Head::genesis());
        }
        if len > limits.verify {
            return Err(damaged(format!(
                "it has no checkpoint (`{}`) and is {len} bytes long, more than the {} bytes an append verifies; check it and record its head with `countersign audit verify --checkpoint`",
                cp_path.display(),
                limits.verify
            )));
        }
        return verified(verify_span(file, 0, len, Head::genesis()).map_err(io)?);
    };
    if let Some(problem) = checkpoint_problem(file, len, &cp, limits.tail).map_err(io)? {
        // Name the first broken line too, when the whole log is small
        // enough to verify.
        let first = if len <= limits.verify {
            match verify_span(file, 0, len, Head::genesis()).map_err(io)? {
                Err(b) => format!("; the chain first breaks at {}", b.describe()),
                Ok(_) => String::new(),
            }
        } else {
            String::new()
        };
        return Err(damaged(format!(
            "{problem}{first} (checkpoint `{}`); run `countersign audit verify`",
            cp_path.display()
        )));
    }
    let head = Head {
        seq: cp.seq,
        hash: cp.head.clone(),
    };
    if stamp.is_some() && stamp == cp.stamp && len == cp.offset {
        return Ok(head);
    }
    // Written by something else since the last append.
    if len <= limits.verify {
        return verified(verify_span(file, 0, len, Head::genesis()).map_err(io)?);
    }
    let past = len - cp.offset;
    if past > limits.verify {
        return Err(damaged(format!(
            "{past} bytes follow its checkpoint (`{}`), more than the {} bytes an append verifies; check it and record its head with `countersign audit verify --checkpoint`",
            cp_path.display(),
            limits.verify
        )));
    }
    verified(verify_span(file, cp.offset, len, head).map_err(io)?)
}

/// The checkpoint's replacement: a temporary file beside it, renamed over
/// it once written. Made before the record is written.
struct PendingCheckpoint {
    tmp: PathBuf,
    dest: PathBuf,
    file: File,
}

impl PendingCheckpoint {
    fn create(dest: &Path, sharing: Sharing) -> io::Result<PendingCheckpoint> {
        let mut name = dest.as_os_str().to_os_string();
        name.push(".tmp");
        let tmp = PathBuf::from(name);
        // Only one writer holds the log's lock: a leftover is a crashed
        // writer's (possibly another user's), so it is replaced.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        adopt_parent_owner(&tmp);
        if let Err(e) = share(&file, sharing, false) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(PendingCheckpoint {
            tmp,
            dest: dest.to_path_buf(),
            file,
        })
    }

    fn commit(self, cp: &Checkpoint) -> io::Result<()> {
        let PendingCheckpoint {
            tmp,
            dest,
            mut file,
        } = self;
        let result = (|| {
            let mut text = serde_json::to_vec(cp).map_err(io::Error::other)?;
            text.push(b'\n');
            file.write_all(&text)?;
            file.sync_all()?;
            drop(file);
            std::fs::rename(&tmp, &dest)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
            return result;
        }
        if let Some(dir) = dest.parent().and_then(|d| File::open(d).ok()) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    fn abandon(self) {
        drop(self.file);
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// The log's last record, read under a shared lock (so never a record
/// being written): its `seq` and the SHA-256 of its line. `None` when the
/// log does not exist or is empty. Costs the size of that record; it does
/// not verify the chain (appends do, from the checkpoint).
///
/// # Errors
///
/// [`AuditError::Io`] when the log cannot be opened, locked or read;
/// [`AuditError::Damaged`] when its last line is torn, longer than
/// [`MAX_LEGACY_RECORD_BYTES`] or has no `seq`.
pub fn last_record(path: &Path) -> Result<Option<Head>, AuditError> {
    let io = |e| AuditError::Io(path.to_path_buf(), e);
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    file.lock_shared().map_err(io)?;
    let result = (|| {
        let len = file.metadata().map_err(io)?.len();
        tail_head(path, &mut file, len, MAX_LEGACY_RECORD_BYTES)
    })();
    let _ = file.unlock();
    result
}

/// The head named by the last line of the first `len` bytes.
fn tail_head<R: Read + Seek>(
    path: &Path,
    file: &mut R,
    len: u64,
    limit: usize,
) -> Result<Option<Head>, AuditError> {
    let damaged = |m: String| AuditError::Damaged(path.to_path_buf(), m);
    match last_line(file, len, limit).map_err(|e| AuditError::Io(path.to_path_buf(), e))? {
        Tail::Empty => Ok(None),
        Tail::Torn => Err(damaged(
            "the last record is torn (no final newline); run `countersign audit verify`".into(),
        )),
        Tail::TooLong => Err(damaged(format!(
            "the last record is longer than {limit} bytes, more than a record may be; run `countersign audit verify`"
        ))),
        Tail::Line(last) => {
            let seq = serde_json::from_slice::<Value>(&last)
                .ok()
                .and_then(|v| v.get("seq").and_then(Value::as_u64))
                .ok_or_else(|| damaged("the last record has no sequence number".into()))?;
            Ok(Some(Head {
                seq,
                hash: hash_line(&last),
            }))
        }
    }
}

/// Verify the whole log, however long, under its lock, and record its
/// head as the checkpoint appends verify from (`audit verify
/// --checkpoint`): after an upgrade from a log of more than
/// [`MAX_VERIFY_BYTES`] without one, or after an admin repaired the log.
///
/// # Errors
///
/// [`AuditError::Damaged`] naming the first broken line (nothing is
/// written); [`AuditError::Io`] when the log cannot be opened, locked or
/// read, or the checkpoint cannot be written.
pub fn write_checkpoint(path: &Path, sharing: Sharing) -> Result<Head, AuditError> {
    let io = |e| AuditError::Io(path.to_path_buf(), e);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    file.lock().map_err(io)?;
    let result = (|| {
        let meta = file.metadata().map_err(io)?;
        let head = verify_span(&mut file, 0, meta.len(), Head::genesis())
            .map_err(io)?
            .map_err(|b| AuditError::Damaged(path.to_path_buf(), b.describe()))?;
        let cp_path = checkpoint_path(path);
        let cp_err = |e| AuditError::Io(cp_path.clone(), e);
        let pending = PendingCheckpoint::create(&cp_path, sharing).map_err(cp_err)?;
        pending
            .commit(&Checkpoint {
                version: CHECKPOINT_VERSION,
                seq: head.seq,
                offset: meta.len(),
                head: head.hash.clone(),
                stamp: Stamp::of(&meta),
            })
            .map_err(cp_err)?;
        Ok(head)
    })();
    let _ = file.unlock();
    result
}

/// What `audit verify` adds to the chain check: whether the log `bytes`
/// (read from `path`) still holds the checkpoint beside it. `None` when it
/// does, or there is no checkpoint.
///
/// # Errors
///
/// As reading the checkpoint fails: [`AuditError::Io`], or
/// [`AuditError::Damaged`] for a checkpoint that does not parse.
pub fn check_against_checkpoint(path: &Path, bytes: &[u8]) -> Result<Option<String>, AuditError> {
    let Some(cp) = read_checkpoint(path)? else {
        return Ok(None);
    };
    let mut cur = io::Cursor::new(bytes);
    checkpoint_problem(&mut cur, bytes.len() as u64, &cp, MAX_LEGACY_RECORD_BYTES)
        .map_err(|e| AuditError::Io(path.to_path_buf(), e))
        .map(|p| p.map(|p| format!("{p} (checkpoint `{}`)", checkpoint_path(path).display())))
}

/// Who is pushing, by this precedence (the one place it is decided):
///
/// 1. `GL_USERNAME` (GitLab), `GL_USER` (Gitolite), `GITEA_PUSHER_NAME`
///    (Gitea, Forgejo): the forge authenticated the pusher;
/// 2. `SSH_USER_AUTH`: the key sshd authenticated (`ExposeAuthInfo yes`),
///    mapped to the person holding it in the policy (`ssh_person`, found by
///    the caller, who has the policy); a key nobody holds is kept as a
///    candidate, never chosen;
/// 3. a push certificate (`git push --signed`) whose signature verifies
///    with a key of the policy (the person holding it; found by the
///    caller) and whose nonce git verified (`receive.certNonceSeed`);
/// 4. `REMOTE_USER`: set by a web server's authentication, or by sshd from
///    `environment="REMOTE_USER=..."` in `authorized_keys`;
/// 5. a push certificate's signer as git reports it, only when git reports
///    a good signature and a valid nonce (git's own gpg keyring);
/// 6. the OS user.
///
/// Every candidate is kept under `candidates` with its source, so an
/// auditor sees them all. These variables are trusted as the transport
/// sets them: on a host where pushers also have a shell, they can set
/// them too.
pub fn pusher() -> Value {
    pusher_with(Vec::new())
}

/// [`pusher`], with the candidates the caller found with the policy (the
/// person sshd's authenticated key maps to, then the push certificate's).
pub fn pusher_with(found: Vec<Value>) -> Value {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut candidates = Vec::new();
    for k in ["GL_USERNAME", "GL_USER", "GITEA_PUSHER_NAME"] {
        if let Some(v) = var(k) {
            candidates.push(serde_json::json!({ "name": v, "source": k }));
        }
    }
    candidates.extend(found);
    if let Some(v) = var("REMOTE_USER") {
        candidates.push(serde_json::json!({ "name": v, "source": "REMOTE_USER" }));
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
        // The record at the checkpoint is re-read on every append.
        write_checkpoint(&path, Sharing::Umask).unwrap();
        let limits = Limits {
            tail: 1000,
            ..Limits::DEFAULT
        };
        let err =
            append_with(&path, "t", serde_json::json!({}), 2, limits, Sharing::Umask).unwrap_err();
        assert!(
            matches!(err, AuditError::Damaged(_, ref m) if m.contains("longer than 1000 bytes")),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), line);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    fn read_cp(path: &Path) -> Checkpoint {
        read_checkpoint(path).unwrap().expect("a checkpoint")
    }

    fn damage_of(r: Result<Value, AuditError>) -> String {
        match r {
            Err(AuditError::Damaged(_, m)) => m,
            other => panic!("expected Damaged, got {other:?}"),
        }
    }

    /// Replace the first `from` in the log by `to` (same length), in place.
    fn edit_in_place(path: &Path, from: &str, to: &str) {
        assert_eq!(from.len(), to.len());
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains(from), "{from} not in the log");
        let mut f = OpenOptions::new().write(true).open(path).unwrap();
        f.write_all(text.replacen(from, to, 1).as_bytes()).unwrap();
    }

    #[test]
    fn each_append_writes_a_checkpoint_of_its_record() {
        let path = temp_log("cp-written");
        let a = append_shared(&path, "t", serde_json::json!({}), 1, Sharing::Umask).unwrap();
        assert_eq!((a.seq, a.checkpoint_error.as_deref()), (1, None));
        let b = append_shared(&path, "t", serde_json::json!({}), 2, Sharing::Umask).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let v = verify(&bytes);
        assert_eq!((b.seq, b.hash.as_str()), (2, v.head.as_str()));
        assert_eq!(b.record["prev"], a.hash);
        let cp = read_cp(&path);
        assert_eq!(
            (cp.seq, cp.offset, cp.head.as_str()),
            (2, bytes.len() as u64, v.head.as_str())
        );
        assert!(!PathBuf::from(format!("{}.tmp", checkpoint_path(&path).display())).exists());
        assert_eq!(
            last_record(&path).unwrap(),
            Some(Head {
                seq: 2,
                hash: v.head
            })
        );
        assert_eq!(last_record(&path.with_file_name("none")).unwrap(), None);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn an_edit_before_the_last_record_stops_the_next_append() {
        let path = temp_log("cp-middle");
        write_three(&path);
        let before = std::fs::read(&path).unwrap();
        // Same length, so every offset stays put and the last line is
        // intact: only the change of the file gives it away.
        edit_in_place(&path, "\"n\":1", "\"n\":7");
        let m = damage_of(append(&path, "x", serde_json::json!({}), 9));
        assert!(
            m.contains("line 3:") && m.contains("does not follow"),
            "{m}"
        );
        assert_eq!(std::fs::read(&path).unwrap().len(), before.len());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn an_edit_of_the_last_record_stops_the_next_append() {
        let path = temp_log("cp-last");
        write_three(&path);
        edit_in_place(&path, "\"n\":2", "\"n\":8");
        let m = damage_of(append(&path, "x", serde_json::json!({}), 9));
        assert!(
            m.contains("line 3: record 3, the last one an earlier append verified"),
            "{m}"
        );
        // Without the checkpoint the edit is invisible in the file alone.
        std::fs::remove_file(checkpoint_path(&path)).unwrap();
        append(&path, "x", serde_json::json!({}), 9).unwrap();
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn records_cut_off_the_end_stop_the_next_append() {
        let path = temp_log("cp-cut");
        let bytes = write_three(&path);
        let text = String::from_utf8(bytes).unwrap();
        let two: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, &two).unwrap();
        assert_eq!(verify(two.as_bytes()).first_break, None);
        let m = damage_of(append(&path, "x", serde_json::json!({}), 9));
        assert!(m.contains("shorter than") && m.contains("cut off"), "{m}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), two);
        let problem = check_against_checkpoint(&path, two.as_bytes()).unwrap();
        assert!(problem.is_some_and(|p| p.contains("cut off")));
        // Emptied: the same.
        std::fs::write(&path, "").unwrap();
        let m = damage_of(append(&path, "x", serde_json::json!({}), 9));
        assert!(m.contains("shorter than"), "{m}");
        // An admin who means it records the new head.
        std::fs::write(&path, &two).unwrap();
        assert_eq!(write_checkpoint(&path, Sharing::Umask).unwrap().seq, 2);
        assert_eq!(
            check_against_checkpoint(&path, two.as_bytes()).unwrap(),
            None
        );
        let r = append(&path, "x", serde_json::json!({}), 9).unwrap();
        assert_eq!(r["seq"], 3);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_log_without_checkpoint_is_verified_whole_once() {
        // An old log: no checkpoint; appended to, it gets one.
        let path = temp_log("cp-legacy");
        write_three(&path);
        std::fs::remove_file(checkpoint_path(&path)).unwrap();
        append(&path, "x", serde_json::json!({}), 9).unwrap();
        assert_eq!(read_cp(&path).seq, 4);
        // An old log with an edited middle record is refused.
        std::fs::remove_file(checkpoint_path(&path)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("\"n\":1", "\"n\":77")).unwrap();
        let m = damage_of(append(&path, "x", serde_json::json!({}), 9));
        assert!(m.contains("line 3:"), "{m}");
        assert!(!checkpoint_path(&path).exists());
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn verification_is_bounded_and_fails_closed_beyond_the_bound() {
        let path = temp_log("cp-bound");
        let bytes = write_three(&path);
        std::fs::remove_file(checkpoint_path(&path)).unwrap();
        let small = Limits {
            verify: bytes.len() as u64 - 1,
            ..Limits::DEFAULT
        };
        let add = |limits| {
            append_with(&path, "x", serde_json::json!({}), 9, limits, Sharing::Umask)
                .map(|a| a.record)
        };
        // No checkpoint and too long to verify whole: refused, not trusted.
        let m = damage_of(add(small));
        assert!(
            m.contains("has no checkpoint") && m.contains("--checkpoint"),
            "{m}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        write_checkpoint(&path, Sharing::Umask).unwrap();
        add(small).unwrap();
        // Written by something else since: too long to verify whole, so
        // verified from the checkpoint (an earlier edit is not seen here;
        // the full `audit verify` sees it).
        edit_in_place(&path, "\"n\":1", "\"n\":7");
        add(small).unwrap();
        // More than the bound past the checkpoint is refused: a checkpoint
        // of record 1, as if the later appends had not written theirs.
        let first = bytes.iter().position(|&b| b == b'\n').unwrap();
        let cp = Checkpoint {
            version: CHECKPOINT_VERSION,
            seq: 1,
            offset: first as u64 + 1,
            head: hash_line(&bytes[..first]),
            stamp: None,
        };
        std::fs::write(checkpoint_path(&path), serde_json::to_vec(&cp).unwrap()).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        let tiny = Limits {
            verify: len - cp.offset - 1,
            ..small
        };
        let m = damage_of(add(tiny));
        assert!(m.contains("follow its checkpoint"), "{m}");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn an_untouched_log_is_not_read_past_its_last_record() {
        let path = temp_log("cp-fast");
        write_three(&path);
        // Break line 2 while keeping the checkpoint's stamp current, as if
        // the file had not changed: the append trusts the checkpoint and
        // reads only the last record.
        edit_in_place(&path, "\"n\":0", "\"n\":5");
        let mut cp = read_cp(&path);
        cp.stamp = Stamp::of(&std::fs::metadata(&path).unwrap());
        std::fs::write(checkpoint_path(&path), serde_json::to_vec(&cp).unwrap()).unwrap();
        append(&path, "x", serde_json::json!({}), 9).unwrap();
        // The full verify still sees it.
        assert_eq!(
            verify(&std::fs::read(&path).unwrap())
                .first_break
                .map(|b| b.line),
            Some(2)
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_checkpoint_that_does_not_parse_is_damage() {
        let path = temp_log("cp-garbage");
        write_three(&path);
        std::fs::write(checkpoint_path(&path), b"{\"seq\":").unwrap();
        let m = damage_of(append(&path, "x", serde_json::json!({}), 9));
        assert!(
            m.contains("checkpoint") && m.contains("is not a checkpoint"),
            "{m}"
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[cfg(unix)]
    #[test]
    fn shared_logs_are_created_with_the_shared_mode() {
        use std::os::unix::fs::PermissionsExt;
        let path = temp_log("cp-shared").join("sub").join("audit.log");
        append_shared(&path, "t", serde_json::json!({}), 1, Sharing::Group).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&path) & 0o060, 0o060, "{:o}", mode(&path));
        assert_eq!(mode(&checkpoint_path(&path)) & 0o060, 0o060);
        for dir in [
            path.parent().unwrap(),
            path.parent().unwrap().parent().unwrap(),
        ] {
            assert_eq!(
                mode(dir) & 0o2070,
                0o2070,
                "{}: {:o}",
                dir.display(),
                mode(dir)
            );
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
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
