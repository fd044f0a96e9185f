//! The commits a tip brings, read once each.
//!
//! libgit2's revision walk reads every commit to learn its parents and
//! time, and the engine then read it again for its signature: at 100k
//! commits, a fifth of the CPU, and libgit2's object cache (which made the
//! second read cheap) held every commit, most of the memory. This walk
//! reads each commit once and hands its bytes on. Its reads go through a
//! repository of its own, opened again every [`CHUNK`] commits, so
//! libgit2's cache holds a chunk of them at most, while the engine's
//! repository keeps its cache for what reads commits again (merges).
//!
//! It gives the commits in exactly the order of libgit2's walk with no
//! sorting and nothing hidden (the engine's findings come out in walk
//! order, and must not change with the walk): a queue ordered by
//! committer time, newest first, where commits of equal time leave in the
//! order they came in (libgit2 inserts into a list by date, after every
//! commit of the same time); the tip first; a commit's parents, in their
//! order, enter the queue when the commit leaves it, each at most once.
//!
//! It only takes commits of the plain shape libgit2 parses the same way
//! (see `committer_time` in the engine): on anything else (a commit that
//! cannot be read, is over the size limit, is not a commit, or has another
//! shape) it gives up ([`Step::GiveUp`]) and the engine walks with libgit2
//! from the start, which gives the answer it always gave. Nor is it used
//! where libgit2 changes parents (grafts, a shallow repository) or hides
//! commits: the engine decides that before.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

use git2::{ObjectType, Oid, Repository};

use super::oidmap::{self, Key};
use crate::signing::object::HashFormat;

/// Bytes of commits kept read ahead of their turn; past it a commit waits
/// in the queue without its bytes and is read again on its turn.
const HELD_MAX: usize = 32 << 20;

/// Commits read through one opening of the walk's own repository.
const CHUNK: usize = 4096;

/// What the walk gives next.
pub(crate) enum Step {
    /// A commit, with its bytes when they were kept.
    Commit(Oid, Option<Read>),
    /// The walk is over.
    End,
    /// This walk cannot answer like libgit2's: walk with libgit2.
    GiveUp,
}

/// A commit's bytes as the walk read them, and its committer time (what
/// the engine's `committer_time` gives for them).
pub(crate) struct Read {
    pub(crate) raw: Box<[u8]>,
    pub(crate) time: i64,
}

struct Queued {
    time: i64,
    seq: u64,
    id: Oid,
    parents: Vec<Oid>,
    raw: Option<Box<[u8]>>,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    /// The greatest leaves first: the newest, then the first in.
    fn cmp(&self, other: &Self) -> Ordering {
        self.time
            .cmp(&other.time)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// A commit read: its parents, committer time and (when kept) bytes.
type Parsed = (Vec<Oid>, i64, Option<Box<[u8]>>);

/// The commits met so far, by their whole id: 20 bytes a SHA-1 id (a
/// million commits: a table of 44 MB, not 67 MB of 32-byte keys).
enum Seen {
    Sha1(HashSet<[u8; 20], oidmap::Keyed>),
    Other(HashSet<Key, oidmap::Keyed>),
}

impl Seen {
    fn new(format: git2::ObjectFormat) -> Self {
        match format {
            git2::ObjectFormat::Sha1 => Seen::Sha1(HashSet::with_hasher(oidmap::keyed())),
            _ => Seen::Other(HashSet::with_hasher(oidmap::keyed())),
        }
    }

    /// Whether `id` was not met before.
    fn insert(&mut self, id: &Oid) -> bool {
        match self {
            Seen::Sha1(set) => match <[u8; 20]>::try_from(id.as_bytes()) {
                Ok(b) => set.insert(b),
                // Not a SHA-1 id after all: kept whole.
                Err(_) => {
                    let mut other = HashSet::with_hasher(oidmap::keyed());
                    other.extend(set.iter().map(|b| Key::of_bytes(b)));
                    let new = other.insert(Key::of(id));
                    *self = Seen::Other(other);
                    new
                }
            },
            Seen::Other(set) => set.insert(Key::of(id)),
        }
    }
}

/// A walk from one tip over every ancestor (nothing hidden).
pub(crate) struct Walk<'r> {
    main: &'r Repository,
    own: Option<Repository>,
    reads: usize,
    format: git2::ObjectFormat,
    object_bytes: usize,
    seen: Seen,
    queue: BinaryHeap<Queued>,
    seq: u64,
    held: usize,
    failed: bool,
}

impl<'r> Walk<'r> {
    /// A walk from `tip` in `main`; `object_bytes` is the size over which
    /// a commit is not read (the engine's `object-bytes` limit).
    pub(crate) fn new(main: &'r Repository, object_bytes: usize, tip: Oid) -> Self {
        let mut w = Walk {
            main,
            own: None,
            reads: 0,
            format: main.object_format(),
            object_bytes,
            seen: Seen::new(main.object_format()),
            queue: BinaryHeap::new(),
            seq: 0,
            held: 0,
            failed: false,
        };
        w.seen.insert(&tip);
        if !w.enqueue(tip) {
            w.failed = true;
        }
        w
    }

    /// The repository to read through: the walk's own, opened as the
    /// engine's was (from the environment, which carries a push's
    /// quarantine), again every [`CHUNK`] reads; the engine's when that
    /// open does not give the same repository.
    fn source(&mut self) -> &Repository {
        if self.reads.is_multiple_of(CHUNK) {
            self.own = crate::repository::open_from_env()
                .ok()
                .filter(|r| r.path() == self.main.path());
        }
        self.reads += 1;
        self.own.as_ref().unwrap_or(self.main)
    }

    /// Read and parse `id` and queue it; false when this walk must give up.
    fn enqueue(&mut self, id: Oid) -> bool {
        let (object_bytes, format) = (self.object_bytes, self.format);
        let room = HELD_MAX.saturating_sub(self.held);
        let mut read = || -> Option<Parsed> {
            let odb = self.source().odb().ok()?;
            match odb.read_header(id).ok()? {
                (size, ObjectType::Commit) if size <= object_bytes => {}
                _ => return None,
            }
            let obj = odb.read(id).ok()?;
            if obj.kind() != ObjectType::Commit {
                return None;
            }
            let (parents, time) = parse(obj.data(), format)?;
            let raw = (obj.len() <= room).then(|| Box::from(obj.data()));
            Some((parents, time, raw))
        };
        let Some((parents, time, raw)) = read() else {
            return false;
        };
        if let Some(r) = &raw {
            self.held += r.len();
        }
        self.seq += 1;
        self.queue.push(Queued {
            time,
            seq: self.seq,
            id,
            parents,
            raw,
        });
        true
    }

    /// The next commit.
    pub(crate) fn step(&mut self) -> Step {
        if self.failed {
            return Step::GiveUp;
        }
        let Some(q) = self.queue.pop() else {
            return Step::End;
        };
        if let Some(r) = &q.raw {
            self.held -= r.len();
        }
        for p in &q.parents {
            if self.seen.insert(p) && !self.enqueue(*p) {
                self.failed = true;
                return Step::GiveUp;
            }
        }
        let time = q.time;
        Step::Commit(q.id, q.raw.map(|raw| Read { raw, time }))
    }
}

/// The parents and committer time of a raw commit of the plain shape
/// (`tree`, `parent`s, one `author`, `committer`, each as git writes
/// them), where libgit2's parse gives the same; `None` for anything else.
/// libgit2 refuses to walk a commit of more than `u16::MAX` parents, and
/// takes times from a commit-graph file (when it reads one) in 34 bits: a
/// commit beyond either is left to libgit2.
fn parse(raw: &[u8], format: git2::ObjectFormat) -> Option<(Vec<Oid>, i64)> {
    let hash = match format {
        git2::ObjectFormat::Sha1 => HashFormat::Sha1,
        git2::ObjectFormat::Sha256 => HashFormat::Sha256,
    };
    let time = super::committer_time(raw, hash).filter(|t| (0..1 << 34).contains(t))?;
    let mut parents = Vec::new();
    for line in raw.split(|&b| b == b'\n').skip(1) {
        let Some(hex) = line.strip_prefix(b"parent ") else {
            break;
        };
        parents.push(super::parse_oid(std::str::from_utf8(hex).ok()?, format)?);
        if parents.len() > usize::from(u16::MAX) {
            return None;
        }
    }
    Some((parents, time))
}

#[cfg(test)]
mod tests {
    use super::*;
    use git2::{Repository, Signature, Sort, Time};

    fn repo(name: &str) -> (std::path::PathBuf, Repository) {
        let dir = std::env::temp_dir().join(format!("cs-walk-unit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let r = Repository::init_bare(&dir).unwrap();
        (dir, r)
    }

    fn commit(r: &Repository, parents: &[Oid], time: i64, msg: &str) -> Oid {
        let tree = r.treebuilder(None).unwrap().write().unwrap();
        let tree = r.find_tree(tree).unwrap();
        let sig = Signature::new("A", "a@x", &Time::new(time, 0)).unwrap();
        let ps: Vec<_> = parents.iter().map(|p| r.find_commit(*p).unwrap()).collect();
        let refs: Vec<_> = ps.iter().collect();
        r.commit(None, &sig, &sig, msg, &tree, &refs).unwrap()
    }

    fn ours(r: &Repository, tip: Oid) -> Option<Vec<Oid>> {
        let mut w = Walk::new(r, 1 << 20, tip);
        let mut out = Vec::new();
        loop {
            match w.step() {
                Step::Commit(id, read) => {
                    // The time handed on is the one the engine would parse
                    // from the bytes (and libgit2 reads).
                    if let Some(read) = read {
                        let time = crate::engine::committer_time(&read.raw, HashFormat::Sha1);
                        assert_eq!(Some(read.time), time);
                        let libgit2 = r.find_commit(id).unwrap().committer().when().seconds();
                        assert_eq!(read.time, libgit2);
                    }
                    out.push(id);
                }
                Step::End => return Some(out),
                Step::GiveUp => return None,
            }
        }
    }

    fn libgit2s(r: &Repository, tip: Oid) -> Vec<Oid> {
        let mut w = r.revwalk().unwrap();
        w.set_sorting(Sort::NONE).unwrap();
        w.push(tip).unwrap();
        w.map(|x| x.unwrap()).collect()
    }

    /// The order is libgit2's on histories with merges, clock skew and
    /// equal times (a small deterministic generator of many shapes).
    #[test]
    fn the_order_is_libgit2s() {
        let (dir, r) = repo("order");
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..12 {
            let mut all: Vec<Oid> = Vec::new();
            for i in 0..60 {
                let np = if all.is_empty() {
                    0
                } else {
                    rand(4).min(all.len() as u64)
                };
                let mut ps = Vec::new();
                for _ in 0..np {
                    // Mostly recent parents, some old, some repeated.
                    let back = if rand(3) == 0 {
                        rand(all.len() as u64)
                    } else {
                        rand(4).min(all.len() as u64 - 1)
                    };
                    ps.push(all[all.len() - 1 - back as usize]);
                }
                // Times repeat and go backwards.
                let t = 1_000 + rand(if round % 2 == 0 { 5 } else { 50 }) as i64;
                all.push(commit(&r, &ps, t, &format!("r{round} c{i}")));
            }
            for tip in all.iter().rev().take(5) {
                assert_eq!(ours(&r, *tip).unwrap(), libgit2s(&r, *tip), "round {round}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A commit of another shape, a missing parent or one over the size
    /// limit makes the walk give up instead of guessing.
    #[test]
    fn it_gives_up_on_what_it_does_not_parse_like_libgit2() {
        let (dir, r) = repo("giveup");
        let odb = r.odb().unwrap();
        let base = commit(&r, &[], 5, "base");
        let tree = r.find_commit(base).unwrap().tree_id();
        let odd = odb
            .write(
                ObjectType::Commit,
                format!("tree {tree}\nparent {base}\nauthor A <a@x> 1 +0000\nauthor B <b@x> 1 +0000\ncommitter C <c@x> 7 +0000\n\nm\n").as_bytes(),
            )
            .unwrap();
        let child = odb
            .write(
                ObjectType::Commit,
                format!("tree {tree}\nparent {odd}\nauthor A <a@x> 1 +0000\ncommitter C <c@x> 8 +0000\n\nm\n").as_bytes(),
            )
            .unwrap();
        assert!(ours(&r, child).is_none());
        let gone = Oid::from_str("1234567890123456789012345678901234567890").unwrap();
        let orphan = odb
            .write(
                ObjectType::Commit,
                format!("tree {tree}\nparent {gone}\nauthor A <a@x> 1 +0000\ncommitter C <c@x> 8 +0000\n\nm\n").as_bytes(),
            )
            .unwrap();
        assert!(ours(&r, orphan).is_none());
        let mut w = Walk::new(&r, 10, base);
        assert!(matches!(w.step(), Step::GiveUp));
        assert_eq!(ours(&r, base).unwrap(), vec![base]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
