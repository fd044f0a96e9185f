//! The verification cache: which key's signature verified over which
//! object, remembered between runs in `$GIT_DIR/countersign/cache/`.
//!
//! What is kept is only what does not depend on the time of the check or
//! on the rule: "object X (a commit or tag) carries a signature that
//! verifies with keyring entry K" (for OpenPGP also the signature's
//! creation and expiry times and the signing subkey). Everything that can
//! change with time — key and person dates, roles, OpenPGP certificate
//! validity and revocation *now*, signature expiry — is judged again on
//! every run from the policy in force, so a cached answer gives exactly
//! the finding a fresh verification would. Failures are never kept: a bad
//! signature is verified again (and reported again) every time.
//!
//! **Keyed by the verification context.** One file per context: a digest
//! of this program's version, the object format, the per-object limits and
//! every key of the keyring in order (its person, fingerprint and public
//! material, certificates in full). Any change of the keys or limits is a
//! new context and starts empty; an answer is never used across policy
//! versions that differ in anything verification depends on. Old context
//! files are removed, keeping the few most recently used.
//!
//! **Authenticated.** Each appended chunk carries an HMAC-SHA256 under a
//! random key in `cache/key`, readable by its owner only. Anyone who can
//! write the cache files but not read that key (a group member of a
//! shared repository) cannot forge an entry: a chunk that does not verify
//! ends the file there and the rest is ignored (and rewritten). A user who
//! cannot read the key runs without the cache.
//!
//! **Bounded.** A file is read only up to [`MAX_FILE_BYTES`]; a larger or
//! damaged file is ignored and replaced. Nothing here ever changes a
//! decision: a cache that cannot be read or written only costs time.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid};
use sha2::{Digest, Sha256};

use super::hex;
use super::oidmap::{self, Key};
use crate::owner::adopt_parent_owner;
use crate::policy::keys::Material;
use crate::policy::Policy;
use crate::time::Timestamp;

/// The cache directory, relative to the git directory.
pub const DIR: &str = "countersign/cache";
/// Largest cache file read (and written: a larger one starts again).
pub const MAX_FILE_BYTES: u64 = 256 << 20;
/// Largest cache file the hook reads (about a million signatures).
pub const HOOK_MAX_LOAD: u64 = 32 << 20;
/// Context files kept (most recently used first).
const KEEP_FILES: usize = 4;
/// Entries in one appended chunk at most (a reader refuses more).
const MAX_CHUNK: usize = 1 << 20;
/// New entries remembered by one run at most (beyond, not remembered).
const MAX_FRESH: usize = 4 << 20;
/// Longest OpenPGP signing-key fingerprint kept (hex).
const MAX_FPR: usize = 128;
const MAGIC: &[u8] = b"countersign verification cache 1\n";
const FILE_PREFIX: &str = "v1-";

/// One remembered verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Commit or tag.
    pub(crate) tag: bool,
    /// The keyring index that verified.
    pub(crate) key: u32,
    /// OpenPGP signature creation time.
    pub(crate) created: Option<Timestamp>,
    /// OpenPGP signature expiry time.
    pub(crate) expires: Option<Timestamp>,
    /// Committer or tagger time, where it was read.
    pub(crate) object_time: Option<Timestamp>,
    /// The OpenPGP (sub)key that signed (hex fingerprint).
    pub(crate) signing_key: Option<Box<str>>,
    /// A commit's count of parents (at most 255), where it was read.
    pub(crate) parents: Option<u8>,
}

impl Entry {
    /// Whether it describes an object of `kind`.
    pub(crate) fn is(&self, kind: ObjectType) -> bool {
        self.tag == (kind == ObjectType::Tag)
    }
}

/// The cache of one verification context, loaded; new entries are added
/// in memory and written by [`SigCache::persist`].
pub(crate) struct SigCache {
    dir: PathBuf,
    file: PathBuf,
    context: [u8; 32],
    mac_key: [u8; 32],
    oid_len: usize,
    /// The file as read, up to its first damaged chunk.
    bytes: Vec<u8>,
    /// Where each record of `bytes` starts, in file order. Entries are
    /// decoded when asked for: a warm run over 100k commits built a map
    /// of 100k decoded entries (a third of its time) to look each up once.
    starts: Vec<u32>,
    /// An open-addressing table of indexes into `starts` (plus one; 0: an
    /// empty slot), a power of two long, at most half full, probed
    /// linearly from the id's keyed hash; it holds the first record of an
    /// id (any record of an id answers: records of one id in one context
    /// state the same verification). Made when first needed (see `next`).
    slots: std::cell::OnceCell<Vec<u32>>,
    /// The index in `starts` after the last record found: a run asks in
    /// the order of its walk, which is the order it wrote (see
    /// [`Self::put`]), so the next record is tried before the table
    /// (random reads over megabytes were a quarter of a warm run).
    next: std::cell::Cell<usize>,
    hasher: oidmap::Keyed,
    /// Records learnt by this run, encoded (a million commits' entries as
    /// structs were 120 MB), and where each starts, its length and when
    /// it was read.
    fresh: Vec<u8>,
    fresh_at: Vec<(u64, u32, u8)>,
    /// The file was read (see [`Self::load`]).
    loaded: bool,
    /// The file on disk is missing or damaged: write it whole.
    rewrite: bool,
    /// Bytes of the file as read.
    size: u64,
}

/// The digest naming the verification context of `policy`.
pub(crate) fn context_of(policy: &Policy, format: git2::ObjectFormat) -> [u8; 32] {
    use sequoia_openpgp::serialize::MarshalInto;
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(MAGIC);
    field(env!("CARGO_PKG_VERSION").as_bytes());
    field(format!("{format:?}").as_bytes());
    field(super::GIT_NAMESPACE.as_bytes());
    let l = &policy.limits;
    field(format!("{} {}", l.object_bytes, l.signature_bytes).as_bytes());
    let mut i = 0;
    while let Some(k) = policy.keyring.get(i) {
        field(k.person.as_bytes());
        field(k.fingerprint.as_bytes());
        match &k.material {
            Material::Ssh(p) => {
                field(b"ssh");
                field(&p.to_bytes().unwrap_or_default());
            }
            Material::OpenPgp(c) => {
                field(b"openpgp");
                field(&c.to_vec().unwrap_or_default());
            }
        }
        i += 1;
    }
    h.finalize().into()
}

/// HMAC-SHA256 (RFC 2104).
fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let mut inner = Sha256::new();
    inner.update(ipad);
    for p in parts {
        inner.update(p);
    }
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(opad);
    outer.update(inner);
    outer.finalize().into()
}

/// The owner-only MAC key, made when missing.
fn mac_key(dir: &Path) -> Option<[u8; 32]> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let path = dir.join("key");
    let read = |path: &Path| -> Option<[u8; 32]> {
        let mut f = open_regular(path)?;
        let meta = f.metadata().ok()?;
        // Only a key nobody else can read or have written counts. root
        // may use the key of the repository's owner (the owner of the git
        // directory), never one another user planted.
        let uid = current_uid(dir)?;
        let owner_ok = if uid == 0 {
            meta.uid() == 0 || repo_owner(dir) == Some(meta.uid())
        } else {
            meta.uid() == uid
        };
        if !meta.is_file()
            || meta.permissions().mode() & 0o077 != 0
            || !owner_ok
            || meta.len() != 32
        {
            return None;
        }
        let mut k = [0u8; 32];
        f.read_exact(&mut k).ok()?;
        Some(k)
    };
    if let Some(k) = read(&path) {
        return Some(k);
    }
    if path.symlink_metadata().is_ok() {
        return None;
    }
    let mut k = [0u8; 32];
    File::open("/dev/urandom").ok()?.read_exact(&mut k).ok()?;
    let tmp = dir.join(format!("key.{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .ok()?;
    let _ = f.set_permissions(fs::Permissions::from_mode(0o600));
    if f.write_all(&k).and_then(|()| f.sync_all()).is_err() {
        let _ = fs::remove_file(&tmp);
        return None;
    }
    // Another run may have made one meanwhile: theirs wins.
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            adopt_parent_owner(&path);
            Some(k)
        }
        Err(_) => read(&path),
    }
}

/// The uid this process runs as: the owner of `/proc/self`, else of a
/// file it just made.
fn current_uid(dir: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    static UID: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *UID.get_or_init(|| {
        // Linux says it without a file being written (once per hook run).
        if let Ok(m) = fs::metadata("/proc/self") {
            return Some(m.uid());
        }
        let probe = dir.join(format!(".uid.{}", std::process::id()));
        let f = create_fresh(&probe).ok()?;
        let uid = f.metadata().ok().map(|m| m.uid());
        let _ = fs::remove_file(&probe);
        uid
    })
}

impl SigCache {
    /// The cache of `policy`'s context in `git_dir`, loaded; `None` when
    /// the directory cannot be made or its key cannot be had (no cache).
    pub(crate) fn open(
        git_dir: &Path,
        policy: &Policy,
        format: git2::ObjectFormat,
    ) -> Option<Self> {
        let dir = git_dir.join(DIR);
        if fs::create_dir_all(&dir).is_err() {
            return None;
        }
        // Not through a link another user planted: every file below is
        // made or written by this run.
        let real_dir = |d: &Path| fs::symlink_metadata(d).is_ok_and(|m| m.is_dir());
        if !real_dir(&dir) || !dir.parent().is_some_and(real_dir) {
            return None;
        }
        if let Some(parent) = dir.parent() {
            adopt_parent_owner(parent);
        }
        adopt_parent_owner(&dir);
        let mac_key = mac_key(&dir)?;
        let context = context_of(policy, format);
        let file = dir.join(format!("{FILE_PREFIX}{}", hex(&context[..16])));
        let oid_len = match format {
            git2::ObjectFormat::Sha1 => 20,
            git2::ObjectFormat::Sha256 => 32,
        };
        let cache = SigCache {
            dir,
            file,
            context,
            mac_key,
            oid_len,
            bytes: Vec::new(),
            starts: Vec::new(),
            slots: std::cell::OnceCell::new(),
            next: std::cell::Cell::new(0),
            hasher: oidmap::keyed(),
            fresh: Vec::new(),
            fresh_at: Vec::new(),
            loaded: false,
            rewrite: true,
            size: 0,
        };
        if fs::symlink_metadata(&cache.file).is_ok_and(|m| !m.is_file()) {
            return None;
        }
        Some(cache)
    }

    /// Whether the file has been read.
    pub(crate) fn is_loaded(&self) -> bool {
        self.loaded
    }

    fn header(&self) -> Vec<u8> {
        let mut h = MAGIC.to_vec();
        h.extend_from_slice(&self.context);
        h.push(self.oid_len as u8);
        h
    }

    /// Read the file: a run that checks a handful of objects (most
    /// pushes) never pays for reading a large cache; it only appends.
    pub(crate) fn load(&mut self) {
        self.load_up_to(MAX_FILE_BYTES);
    }

    /// [`Self::load`], unless the file is larger than `most` bytes (then
    /// the run goes without it: the hook's bound, so anyone able to grow
    /// the cache cannot make every push pay for reading a large file).
    pub(crate) fn load_up_to(&mut self, most: u64) {
        if self.loaded {
            return;
        }
        self.loaded = true;
        // Nothing found before the file is read stands.
        self.slots = std::cell::OnceCell::new();
        self.next.set(0);
        if let Ok(m) = fs::symlink_metadata(&self.file) {
            if m.len() > most {
                // Not read, but not damaged either: appended to, as it is.
                self.rewrite = false;
                self.size = m.len();
                return;
            }
        }
        let Some(f) = open_regular(&self.file) else {
            return;
        };
        let mut bytes = Vec::new();
        if f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).is_err()
            || bytes.len() as u64 > MAX_FILE_BYTES
        {
            return;
        }
        let header = self.header();
        if !bytes.starts_with(&header) {
            return;
        }
        let mut at = header.len();
        let mut damaged = false;
        let mut starts = Vec::new();
        while at < bytes.len() {
            starts.clear();
            match self.chunk(&bytes[at..], &mut starts) {
                Some(used) => {
                    self.starts.extend(
                        starts
                            .iter()
                            .filter_map(|&start| u32::try_from(at + start).ok()),
                    );
                    at += used;
                }
                None => {
                    damaged = true;
                    break;
                }
            }
        }
        self.size = bytes.len() as u64;
        bytes.truncate(at);
        self.bytes = bytes;
        self.rewrite = damaged;
    }

    /// The id of the record `i` of `starts`.
    fn id_at(&self, i: usize) -> Option<&[u8]> {
        let start = *self.starts.get(i)? as usize;
        self.bytes.get(start..start + self.oid_len)
    }

    /// The table (made on first use): see `slots`.
    fn table(&self) -> &[u32] {
        self.slots.get_or_init(|| {
            let mut slots = vec![0u32; (2 * self.starts.len()).max(1).next_power_of_two()];
            let mask = slots.len() - 1;
            for i in 0..self.starts.len() {
                let (Some(id), Ok(v)) = (self.id_at(i), u32::try_from(i + 1)) else {
                    continue;
                };
                let mut at = self.hash(id) & mask;
                // At most half full: an empty slot comes.
                loop {
                    match slots[at] {
                        0 => {
                            slots[at] = v;
                            break;
                        }
                        j if self.id_at(j as usize - 1) == Some(id) => break,
                        _ => at = (at + 1) & mask,
                    }
                }
            }
            slots
        })
    }

    fn hash(&self, id: &[u8]) -> usize {
        use std::hash::BuildHasher as _;
        self.hasher.hash_one(Key::of_bytes(id)) as usize
    }

    /// The index in `starts` of the (first) record of `id`.
    fn find(&self, id: &[u8]) -> Option<usize> {
        // The record after the last one found, or the first (a second
        // pass over the same walk).
        for guess in [self.next.get(), 0] {
            if self.id_at(guess) == Some(id) {
                self.next.set(guess + 1);
                return Some(guess);
            }
        }
        if self.starts.is_empty() {
            return None;
        }
        let slots = self.table();
        let mask = slots.len() - 1;
        let mut at = self.hash(id) & mask;
        loop {
            match *slots.get(at)? {
                0 => return None,
                j if self.id_at(j as usize - 1) == Some(id) => {
                    self.next.set(j as usize);
                    return Some(j as usize - 1);
                }
                _ => at = (at + 1) & mask,
            }
        }
    }

    /// One chunk: `count u32`, `length u32`, records, HMAC of the context
    /// and everything before it in the chunk; its length, and in `starts`
    /// where each record starts in `bytes`. `None` if damaged.
    fn chunk(&self, bytes: &[u8], starts: &mut Vec<usize>) -> Option<usize> {
        let count = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
        let len = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?) as usize;
        if count > MAX_CHUNK {
            return None;
        }
        let body_end = 8usize.checked_add(len)?;
        let body = bytes.get(8..body_end)?;
        let mac = bytes.get(body_end..body_end.checked_add(32)?)?;
        let want = hmac(&self.mac_key, &[&self.context, bytes.get(..body_end)?]);
        if !constant_eq(mac, &want) {
            return None;
        }
        let mut r = Reader(body);
        for _ in 0..count {
            starts.push(8 + body.len() - r.0.len());
            let (_, rest) = self.record(r.0)?;
            r.0 = rest;
        }
        if !r.0.is_empty() {
            return None;
        }
        Some(body_end + 32)
    }

    /// The record at the start of `bytes`, and what follows it.
    fn record<'b>(&self, bytes: &'b [u8]) -> Option<((Oid, Entry), &'b [u8])> {
        let mut r = Reader(bytes);
        {
            let id = Oid::from_bytes(r.take(self.oid_len)?).ok()?;
            let flags = r.take(1)?[0];
            let key = u32::from_le_bytes(r.take(4)?.try_into().ok()?);
            let mut time = |bit: u8| -> Option<Option<Timestamp>> {
                if flags & bit == 0 {
                    return Some(None);
                }
                Some(Some(i64::from_le_bytes(r.take(8)?.try_into().ok()?)))
            };
            let created = time(2)?;
            let expires = time(4)?;
            let object_time = time(8)?;
            let signing_key = if flags & 16 != 0 {
                let n = r.take(1)?[0] as usize;
                let s = std::str::from_utf8(r.take(n)?).ok()?;
                Some(s.into())
            } else {
                None
            };
            let parents = if flags & 32 != 0 {
                Some(r.take(1)?[0])
            } else {
                None
            };
            let entry = Entry {
                tag: flags & 1 != 0,
                key,
                created,
                expires,
                object_time,
                signing_key,
                parents,
            };
            Some(((id, entry), r.0))
        }
    }

    fn encode_chunk(&self, entries: &[(Oid, Entry)]) -> Vec<u8> {
        let mut body = Vec::with_capacity(entries.len() * (self.oid_len + 16));
        for (id, e) in entries {
            Self::encode_record(id, e, &mut body);
        }
        self.seal_chunk(entries.len(), body)
    }

    /// A chunk of `count` records encoded in `body`: counted, sized, MACed.
    fn seal_chunk(&self, count: usize, body: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + 40);
        out.extend_from_slice(&(count as u32).to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        let mac = hmac(&self.mac_key, &[&self.context, &out]);
        out.extend_from_slice(&mac);
        out
    }

    /// One record: id, flags, key, the times present, fingerprint, parents.
    fn encode_record(id: &Oid, e: &Entry, body: &mut Vec<u8>) {
        {
            let mut flags = u8::from(e.tag);
            let fpr = e.signing_key.as_deref().filter(|s| s.len() <= MAX_FPR);
            for (bit, present) in [
                (2, e.created.is_some()),
                (4, e.expires.is_some()),
                (8, e.object_time.is_some()),
                (16, fpr.is_some()),
                (32, e.parents.is_some()),
            ] {
                if present {
                    flags |= bit;
                }
            }
            body.extend_from_slice(id.as_bytes());
            body.push(flags);
            body.extend_from_slice(&e.key.to_le_bytes());
            for t in [e.created, e.expires, e.object_time].into_iter().flatten() {
                body.extend_from_slice(&t.to_le_bytes());
            }
            if let Some(s) = fpr {
                body.push(s.len() as u8);
                body.extend_from_slice(s.as_bytes());
            }
            if let Some(p) = e.parents {
                body.push(p);
            }
        }
    }

    /// What is remembered of `id`.
    pub(crate) fn get(&self, id: &Oid) -> Option<Entry> {
        let start = *self.starts.get(self.find(id.as_bytes())?)? as usize;
        let ((_, e), _) = self.record(self.bytes.get(start..)?)?;
        Some(e)
    }

    /// Whether `id` has an entry.
    fn contains(&self, id: &Oid) -> bool {
        self.find(id.as_bytes()).is_some()
    }

    /// Remember a verification (written by [`Self::persist`]).
    /// `seq`: when it was read; entries are written in that order (the
    /// order of the walk), which a later run's walk asks them in.
    pub(crate) fn put(&mut self, seq: u64, id: Oid, entry: Entry) {
        if self.fresh_at.len() >= MAX_FRESH {
            return;
        }
        if self.contains(&id) {
            return;
        }
        // Not looked up in this run: the run keeps its own answers (the
        // engine verifies each object once), so they are kept once, here.
        let start = self.fresh.len();
        Self::encode_record(&id, &entry, &mut self.fresh);
        match (u32::try_from(start), u8::try_from(self.fresh.len() - start)) {
            (Ok(at), Ok(len)) => self.fresh_at.push((seq, at, len)),
            _ => self.fresh.truncate(start),
        }
    }

    /// Entries remembered in all.
    pub(crate) fn len(&self) -> usize {
        self.table().iter().filter(|&&v| v != 0).count() + self.fresh_at.len()
    }

    /// Write what was learnt: appended as one chunk (under a lock), or
    /// the whole file written anew when it was missing or damaged.
    pub(crate) fn persist(&mut self) -> Result<(), String> {
        if self.fresh_at.is_empty() && !self.rewrite {
            return Ok(());
        }
        let lock = open_lock(&self.dir.join("lock")).map_err(|e| e.to_string())?;
        adopt_parent_owner(&self.dir.join("lock"));
        lock.lock().map_err(|e| e.to_string())?;
        let fresh = std::mem::take(&mut self.fresh);
        let mut at = std::mem::take(&mut self.fresh_at);
        at.sort_by_key(|(seq, _, _)| *seq);
        let mut chunks = Vec::new();
        for part in at.chunks(MAX_CHUNK) {
            let mut body = Vec::new();
            for &(_, start, len) in part {
                let start = start as usize;
                body.extend_from_slice(fresh.get(start..start + usize::from(len)).unwrap_or(&[]));
            }
            chunks.extend(self.seal_chunk(part.len(), body));
        }
        let current = fs::symlink_metadata(&self.file)
            .ok()
            .filter(fs::Metadata::is_file)
            .map(|m| m.len());
        // Appending is right onto the very file that was read (its size
        // unchanged or grown by other runs' appends, still valid), or onto
        // one not read at all (a damaged one is rewritten by the next run
        // that reads it); each chunk stands on its own.
        let append = current.is_some_and(|n| !self.loaded || (!self.rewrite && n >= self.size))
            && current.unwrap_or(0) + chunks.len() as u64 <= MAX_FILE_BYTES;
        let result = if append {
            open_append(&self.file)
                .and_then(|mut f| f.write_all(&chunks))
                .map_err(|e| e.to_string())
        } else {
            self.write_whole(&chunks)
        };
        if result.is_ok() {
            adopt_parent_owner(&self.file);
            self.rewrite = false;
            self.size = fs::symlink_metadata(&self.file)
                .map(|m| m.len())
                .unwrap_or(0);
            self.prune();
        }
        drop(lock);
        result
    }

    /// The file anew: header, every entry known (when it fits), `fresh`.
    fn write_whole(&self, fresh: &[u8]) -> Result<(), String> {
        let mut out = self.header();
        // Each id once (the first record of it), in file order.
        let table = self.table();
        let mut first: Vec<usize> = table
            .iter()
            .filter(|&&v| v != 0)
            .map(|&v| v as usize - 1)
            .collect();
        first.sort_unstable();
        let known: Vec<(Oid, Entry)> = first
            .into_iter()
            .filter_map(|i| {
                let start = *self.starts.get(i)? as usize;
                let ((id, e), _) = self.record(self.bytes.get(start..)?)?;
                Some((id, e))
            })
            .collect();
        let mut all = Vec::new();
        for part in known.chunks(MAX_CHUNK) {
            all.extend(self.encode_chunk(part));
        }
        if (out.len() + all.len() + fresh.len()) as u64 <= MAX_FILE_BYTES {
            out.extend(all);
        }
        if (out.len() + fresh.len()) as u64 <= MAX_FILE_BYTES {
            out.extend_from_slice(fresh);
        }
        let tmp = self.dir.join(format!(".tmp.{}", std::process::id()));
        let written = create_fresh(&tmp)
            // Not synced: after a crash a cut or empty file fails its
            // header or a chunk's MAC, and is only written anew (the sync
            // was most of the hook's cost of writing the cache).
            .and_then(|mut f| f.write_all(&out))
            .and_then(|()| fs::rename(&tmp, &self.file));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.map_err(|e| e.to_string())
    }

    /// Remove all but the [`KEEP_FILES`] most recently written contexts.
    fn prune(&self) {
        prune_prefix(&self.dir, FILE_PREFIX, &self.file);
    }
}

/// A remembered revision walk: the commits `tip` brings beyond a set of
/// hidden commits, in the order libgit2's walk gave them.
pub(crate) struct Walk {
    /// Where the walk started.
    pub(crate) tip: Oid,
    /// Every commit walked had at most one parent: the order is forced
    /// (child before parent), so a walk from a linear extension of `tip`
    /// is that extension followed by `ids`.
    pub(crate) linear: bool,
    /// The commits, in walk order.
    pub(crate) ids: Vec<Oid>,
}

/// Most commits of a remembered walk.
const MAX_WALK: usize = 20_000_000;
const WALK_MAGIC: &[u8] = b"countersign walk 1\n";

impl SigCache {
    /// The file of walks hiding `hides` in this repository state: the
    /// commits hidden and the files that change what a walk sees
    /// (`shallow`, `info/grafts`) name it, so a deepened clone walks anew.
    ///
    /// Returns the path and the digest naming it; the digest is part of
    /// the walk's MAC, so a walk cannot be copied to another name (another
    /// set of hidden commits, another `shallow`).
    fn walk_file(&self, git_dir: &Path, hides: &[Oid]) -> (PathBuf, [u8; 32]) {
        let mut sorted: Vec<&Oid> = hides.iter().collect();
        sorted.sort();
        let mut h = Sha256::new();
        h.update(WALK_MAGIC);
        for id in sorted {
            h.update(id.as_bytes());
        }
        for f in ["shallow", "info/grafts"] {
            let bytes = fs::File::open(git_dir.join(f))
                .and_then(|f| {
                    let mut b = Vec::new();
                    f.take(MAX_FILE_BYTES).read_to_end(&mut b).map(|_| b)
                })
                .unwrap_or_default();
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
        let d: [u8; 32] = h.finalize().into();
        (self.dir.join(format!("walk-{}", hex(&d[..16]))), d)
    }

    /// The walk remembered for `hides`, if any (and authentic).
    pub(crate) fn walk(&self, git_dir: &Path, hides: &[Oid]) -> Option<Walk> {
        let (path, digest) = self.walk_file(git_dir, hides);
        let f = open_regular(&path)?;
        let mut bytes = Vec::new();
        f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).ok()?;
        if bytes.len() < 32 || bytes.len() as u64 > MAX_FILE_BYTES {
            return None;
        }
        let (body, mac) = bytes.split_at(bytes.len() - 32);
        if !constant_eq(mac, &hmac(&self.mac_key, &[WALK_MAGIC, &digest, body])) {
            return None;
        }
        let mut r = Reader(body.strip_prefix(WALK_MAGIC)?);
        if usize::from(r.take(1)?[0]) != self.oid_len {
            return None;
        }
        let tip = Oid::from_bytes(r.take(self.oid_len)?).ok()?;
        let linear = r.take(1)?[0] == 1;
        let count = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let count = usize::try_from(count).ok().filter(|n| *n <= MAX_WALK)?;
        if r.0.len() != count.checked_mul(self.oid_len)? {
            return None;
        }
        let ids =
            r.0.chunks_exact(self.oid_len)
                .map(Oid::from_bytes)
                .collect::<Result<Vec<_>, _>>()
                .ok()?;
        Some(Walk { tip, linear, ids })
    }

    /// Remember `walk` for `hides` (replacing the one before).
    pub(crate) fn remember_walk(&self, git_dir: &Path, hides: &[Oid], walk: &Walk) {
        if walk.ids.len() > MAX_WALK
            || (walk.ids.len() * self.oid_len) as u64 + 128 > MAX_FILE_BYTES
        {
            return;
        }
        let mut out = WALK_MAGIC.to_vec();
        out.push(self.oid_len as u8);
        out.extend_from_slice(walk.tip.as_bytes());
        out.push(u8::from(walk.linear));
        out.extend_from_slice(&(walk.ids.len() as u64).to_le_bytes());
        for id in &walk.ids {
            out.extend_from_slice(id.as_bytes());
        }
        let (path, digest) = self.walk_file(git_dir, hides);
        let mac = hmac(&self.mac_key, &[WALK_MAGIC, &digest, &out]);
        out.extend_from_slice(&mac);
        let tmp = self.dir.join(format!(".walk.{}", std::process::id()));
        let written = create_fresh(&tmp)
            .and_then(|mut f| f.write_all(&out))
            .and_then(|()| fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        adopt_parent_owner(&path);
        self.prune_walks(&path);
    }

    /// Keep the [`KEEP_FILES`] walks used last.
    fn prune_walks(&self, written: &Path) {
        prune_prefix(&self.dir, "walk-", written);
    }
}

/// Remove the files of `dir` named `prefix*` but the [`KEEP_FILES`] most
/// recently written ones and `keep` (the one this run wrote).
fn prune_prefix(dir: &Path, prefix: &str, keep: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    for (_, path) in files.into_iter().skip(KEEP_FILES) {
        if path != keep {
            let _ = fs::remove_file(path);
        }
    }
}

/// The owner of the git directory of the cache directory `dir`.
fn repo_owner(dir: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let git_dir = dir.parent()?.parent()?;
    fs::metadata(git_dir).ok().map(|m| m.uid())
}

/// Whether `f` is the very file `path` names (not a link swapped in).
fn same_file(f: &File, path_meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    f.metadata()
        .is_ok_and(|m| m.dev() == path_meta.dev() && m.ino() == path_meta.ino())
}

/// `path` opened for reading if it is a regular file, not a link (which
/// another user of the directory may have planted), nor a FIFO.
fn open_regular(path: &Path) -> Option<File> {
    let meta = fs::symlink_metadata(path)
        .ok()
        .filter(fs::Metadata::is_file)?;
    let f = File::open(path).ok()?;
    same_file(&f, &meta).then_some(f)
}

/// `path` opened for appending if it is a regular file (never through a
/// link: the write would land in the link's target).
fn open_append(path: &Path) -> std::io::Result<File> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let f = OpenOptions::new().append(true).open(path)?;
    if !same_file(&f, &meta) {
        return Err(std::io::Error::other("the file changed while opened"));
    }
    Ok(f)
}

/// A new file at `path`, made by this call: `O_EXCL` never follows a
/// link, and whatever was there (a link planted by another user, a file
/// left by a run that died) is removed first.
fn create_fresh(path: &Path) -> std::io::Result<File> {
    let create = || OpenOptions::new().write(true).create_new(true).open(path);
    match create() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            fs::remove_file(path)?;
            create()
        }
        other => other,
    }
}

/// The lock file, opened without truncating it and never through a link:
/// made if missing, replaced if it is not a regular file.
fn open_lock(path: &Path) -> std::io::Result<File> {
    match OpenOptions::new().write(true).create_new(true).open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        other => return other,
    }
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_file() {
        return create_fresh(path);
    }
    let f = OpenOptions::new().read(true).open(path)?;
    if !same_file(&f, &meta) {
        return Err(std::io::Error::other("the lock changed while opened"));
    }
    Ok(f)
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path) -> SigCache {
        let mut c = SigCache {
            dir: dir.to_path_buf(),
            file: dir.join("v1-test"),
            context: [7; 32],
            mac_key: mac_key(dir).unwrap_or([1; 32]),
            oid_len: 20,
            bytes: Vec::new(),
            starts: Vec::new(),
            slots: std::cell::OnceCell::new(),
            next: std::cell::Cell::new(0),
            hasher: oidmap::keyed(),
            fresh: Vec::new(),
            fresh_at: Vec::new(),
            loaded: false,
            rewrite: true,
            size: 0,
        };
        c.load();
        c
    }

    fn entry(i: u8) -> (Oid, Entry) {
        let id = Oid::from_bytes(&[i; 20]).unwrap_or(Oid::ZERO_SHA1);
        (
            id,
            Entry {
                tag: i.is_multiple_of(2),
                key: u32::from(i),
                created: i.is_multiple_of(3).then_some(1_700_000_000 + i64::from(i)),
                expires: i.is_multiple_of(5).then_some(1_800_000_000),
                object_time: Some(-5),
                signing_key: i.is_multiple_of(3).then(|| "ABCDEF0123".into()),
                parents: i.is_multiple_of(4).then_some(i),
            },
        )
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "countersign-sigcache-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap_or_default();
        d
    }

    /// Thousands of entries in several chunks, ids sharing their first
    /// bytes, the same id in two chunks (asked in order, the first is
    /// found): every one is
    /// found with its own entry, and no other id is.
    #[test]
    fn the_table_finds_every_entry_and_nothing_else() {
        let d = tmpdir("table");
        let id = |i: u32, salt: u8| {
            let mut b = [salt; 20];
            b[16..].copy_from_slice(&i.to_le_bytes());
            Oid::from_bytes(&b).unwrap_or(Oid::ZERO_SHA1)
        };
        let e = |i: u32| Entry {
            tag: false,
            key: i,
            created: None,
            expires: None,
            object_time: Some(i64::from(i)),
            signing_key: None,
            parents: Some(1),
        };
        for round in 0..3u32 {
            let mut c = cache(&d);
            for i in round * 2000..(round + 1) * 2000 {
                c.put(0, id(i, 9), e(i));
            }
            assert!(c.persist().is_ok());
        }
        // Two runs that read the file before either wrote: both append.
        let (mut a, mut b) = (cache(&d), cache(&d));
        for i in 6000..6010 {
            a.put(0, id(i, 9), e(i));
            b.put(0, id(i, 9), e(i + 1));
        }
        assert!(a.persist().is_ok() && b.persist().is_ok());
        let c = cache(&d);
        assert_eq!(c.len(), 6010);
        for i in 0..6010 {
            assert_eq!(c.get(&id(i, 9)), Some(e(i)), "{i}");
            assert!(c.get(&id(i, 8)).is_none());
        }
        let _ = fs::remove_dir_all(&d);
    }

    /// Entries are written in the order they were read, whatever order
    /// they were verified in; a run asking in that order finds each as the
    /// record after the last one, without making the table.
    #[test]
    fn entries_are_written_in_reading_order_and_found_in_it() {
        let d = tmpdir("order");
        let mut c = cache(&d);
        for i in [5u8, 1, 4, 2, 3] {
            let (id, e) = entry(i);
            c.put(u64::from(i), id, e);
        }
        assert!(c.persist().is_ok());
        let c = cache(&d);
        for i in 1..=5u8 {
            let (id, e) = entry(i);
            assert_eq!(c.get(&id), Some(e));
        }
        assert!(c.slots.get().is_none(), "the table was made");
        // Out of order: through the table.
        let (id, e) = entry(2);
        assert_eq!(c.get(&id), Some(e));
        assert!(c.slots.get().is_some());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn entries_survive_a_round_trip_and_appends() {
        let d = tmpdir("round");
        let mut c = cache(&d);
        for i in 1..10 {
            let (id, e) = entry(i);
            c.put(0, id, e);
        }
        assert!(c.persist().is_ok());
        let mut c2 = cache(&d);
        assert_eq!(c2.len(), 9);
        for i in 1..10 {
            let (id, e) = entry(i);
            assert_eq!(c2.get(&id).as_ref(), Some(&e));
        }
        // A second run appends.
        let (id, e) = entry(42);
        c2.put(0, id, e.clone());
        assert!(c2.persist().is_ok());
        let c3 = cache(&d);
        assert_eq!(c3.len(), 10);
        assert_eq!(c3.get(&id).as_ref(), Some(&e));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_forged_or_damaged_chunk_ends_the_file() {
        let d = tmpdir("forged");
        let mut c = cache(&d);
        let (id1, e1) = entry(1);
        c.put(0, id1, e1);
        assert!(c.persist().is_ok());
        // Someone who can write the file but not read the key appends an
        // entry with a MAC under another key: it is not believed.
        let mut forger = cache(&d);
        forger.mac_key = [9; 32];
        let (id2, e2) = entry(2);
        let chunk = forger.encode_chunk(&[(id2, e2)]);
        let mut f = OpenOptions::new().append(true).open(d.join("v1-test")).ok();
        if let Some(f) = f.as_mut() {
            let _ = f.write_all(&chunk);
        }
        let c2 = cache(&d);
        assert!(c2.get(&id1).is_some());
        assert!(c2.get(&id2).is_none(), "a forged entry was believed");
        assert!(c2.rewrite);
        // A flipped byte inside the genuine chunk: nothing is believed.
        let mut bytes = fs::read(d.join("v1-test")).unwrap_or_default();
        let at = MAGIC.len() + 33 + 8;
        bytes[at] ^= 1;
        let _ = fs::write(d.join("v1-test"), &bytes);
        let c3 = cache(&d);
        assert_eq!(c3.len(), 0);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn the_key_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tmpdir("key");
        let k = mac_key(&d);
        assert!(k.is_some());
        assert_eq!(mac_key(&d), k, "the key is kept");
        let _ = fs::set_permissions(d.join("key"), fs::Permissions::from_mode(0o644));
        assert_eq!(mac_key(&d), None, "a key others can read is not used");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn planted_links_are_never_written_through() {
        let d = tmpdir("links");
        let victim = d.join("victim");
        let _ = fs::write(&victim, b"precious");
        let link = |name: &str| {
            let p = d.join(name);
            let _ = fs::remove_file(&p);
            let _ = std::os::unix::fs::symlink(&victim, &p);
        };
        // The whole file written anew, through its temporary name.
        link(&format!(".tmp.{}", std::process::id()));
        link("lock");
        let mut c = cache(&d);
        let (id, e) = entry(1);
        c.put(0, id, e);
        assert!(c.persist().is_ok());
        assert_eq!(fs::read(&victim).ok().as_deref(), Some(&b"precious"[..]));
        assert!(d.join("lock").symlink_metadata().is_ok_and(|m| m.is_file()));
        // The cache file swapped for a link after it was read: no append.
        let mut c = cache(&d);
        link("v1-test");
        let (id, e) = entry(2);
        c.put(0, id, e);
        let _ = c.persist();
        assert_eq!(fs::read(&victim).ok().as_deref(), Some(&b"precious"[..]));
        // A walk, through its temporary name.
        link(&format!(".walk.{}", std::process::id()));
        let ids: Vec<Oid> = (1..=3).map(|i| entry(i).0).collect();
        let walk = Walk {
            tip: ids[0],
            linear: true,
            ids: ids.clone(),
        };
        c.remember_walk(&d, &[], &walk);
        assert_eq!(fs::read(&victim).ok().as_deref(), Some(&b"precious"[..]));
        // A key that is a link is not read.
        let _ = fs::remove_file(d.join("key"));
        let _ = fs::write(d.join("other"), [5u8; 32]);
        let _ = std::os::unix::fs::symlink(d.join("other"), d.join("key"));
        assert_eq!(mac_key(&d), None);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_walk_is_bound_to_the_hidden_commits() {
        let d = tmpdir("walkbind");
        let c = cache(&d);
        let ids: Vec<Oid> = (1..=3).map(|i| entry(i).0).collect();
        let walk = Walk {
            tip: ids[0],
            linear: true,
            ids: ids.clone(),
        };
        let hide = [entry(9).0];
        c.remember_walk(&d, &hide, &walk);
        assert_eq!(c.walk(&d, &hide).map(|w| w.ids), Some(ids));
        // Copied to the name of a walk hiding nothing: not believed.
        let (from, _) = c.walk_file(&d, &hide);
        let (to, _) = c.walk_file(&d, &[]);
        let _ = fs::copy(from, to);
        assert!(
            c.walk(&d, &[]).is_none(),
            "a walk was moved to another range"
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2 uses a short key; ours is always 32 bytes,
        // so check against the construction with the key zero-padded:
        // HMAC pads keys shorter than the block size with zeros.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = hmac(&key, &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
