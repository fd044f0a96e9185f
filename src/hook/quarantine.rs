//! The objects a push brings, sized before anything walks them.
//!
//! libgit2 inflates a whole commit to walk past it, and a pack of a few
//! kilobytes can hold a commit of gigabytes; so every commit and tag in
//! git's quarantine directory is checked against `limits.object-bytes`
//! first. Asking libgit2 for object headers is not enough: it resolves each
//! delta's type by walking its whole base chain, so a pack that is one deep
//! chain costs quadratic time (58,000 objects of 17 bytes took 254 s). This
//! module reads the pack index and each entry's header itself, resolving
//! delta types with a memo, in time linear in the number of objects: only
//! a few bytes of each entry are read (a delta's result size is in the
//! first bytes of its inflated data). Loose objects (git unpacks small
//! pushes) are few and read through libgit2's header read.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

/// Why the quarantine could not be sized, or what is too big.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A commit or tag larger than the limit.
    #[error(
        "the push brings a {kind} of {size} bytes; the limit is {limit} (limit `object-bytes`)"
    )]
    TooBig {
        /// `commit` or `tag`.
        kind: &'static str,
        /// Its inflated size.
        size: u64,
        /// The limit.
        limit: u64,
        /// Its id, when known.
        id: Option<String>,
    },
    /// All commits and tags together are larger than the limit (libgit2
    /// rebuilds each from its delta chain to walk it: megabyte commits
    /// stored as 65-byte deltas cost tens of milliseconds each).
    #[error("the push brings more than {limit} bytes of commits and tags (limit `commit-bytes`)")]
    TooMuch {
        /// The limit.
        limit: u64,
    },
    /// The time budget ran out.
    #[error("sizing the {0}+ objects this push brings took longer than the hook's budget (limit `seconds`)")]
    TimedOut(usize),
    /// A pack or index that is not what git writes.
    #[error("the pushed pack `{0}` cannot be read: {1}")]
    Malformed(String, String),
    /// File system error.
    #[error("cannot read the quarantine: {0}")]
    Io(#[from] std::io::Error),
}

/// The two size limits the scan applies.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Bytes of one commit or tag (`object-bytes`).
    pub object: u64,
    /// Bytes of all commits and tags together (`commit-bytes`).
    pub total: u64,
}

/// Inflated bytes of commits and tags seen so far.
struct Total {
    bytes: u64,
    limit: u64,
}

impl Total {
    fn add(&mut self, size: u64) -> Result<(), ScanError> {
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > self.limit {
            return Err(ScanError::TooMuch { limit: self.limit });
        }
        Ok(())
    }
}

const OBJ_COMMIT: u8 = 1;
const OBJ_TAG: u8 = 4;
const OBJ_OFS_DELTA: u8 = 6;
const OBJ_REF_DELTA: u8 = 7;

/// Check every commit and tag in the quarantine directory `dir` against
/// `limit` bytes, within `budget` from `started`.
///
/// # Errors
///
/// [`ScanError`]: an object too big, the time budget, or a pack that
/// cannot be read.
pub fn scan(
    dir: &Path,
    repo: &git2::Repository,
    limits: Sizes,
    started: Instant,
    budget: Duration,
) -> Result<(), ScanError> {
    let hash = match repo.object_format() {
        git2::ObjectFormat::Sha1 => 20,
        git2::ObjectFormat::Sha256 => 32,
    };
    let mut total = Total {
        bytes: 0,
        limit: limits.total,
    };
    let limit = limits.object;
    let pack_dir = dir.join("pack");
    if let Ok(entries) = std::fs::read_dir(&pack_dir) {
        for e in entries {
            let path = e?.path();
            if path.extension().is_some_and(|x| x == "idx") {
                scan_pack(
                    &path.with_extension("pack"),
                    &path,
                    hash,
                    limit,
                    &mut total,
                    started,
                    budget,
                )?;
            }
        }
    }
    // Loose objects: objects/xx/<rest of the hex id>.
    let odb = repo
        .odb()
        .map_err(|e| ScanError::Malformed("odb".into(), e.message().to_string()))?;
    let mut seen = 0usize;
    for d in std::fs::read_dir(dir)? {
        let d = d?;
        let name = d.file_name().to_string_lossy().into_owned();
        if name.len() != 2 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        for f in std::fs::read_dir(d.path())? {
            seen += 1;
            if seen.is_multiple_of(256) && started.elapsed() >= budget {
                return Err(ScanError::TimedOut(seen));
            }
            let hex = format!("{name}{}", f?.file_name().to_string_lossy());
            let Some(id) = crate::engine::parse_oid(&hex, repo.object_format()) else {
                continue;
            };
            if let Ok((size, kind)) = odb.read_header(id) {
                let kind = match kind {
                    git2::ObjectType::Commit => "commit",
                    git2::ObjectType::Tag => "tag",
                    _ => continue,
                };
                if size as u64 > limit {
                    return Err(ScanError::TooBig {
                        kind,
                        size: size as u64,
                        limit,
                        id: Some(hex),
                    });
                }
                total.add(size as u64)?;
            }
        }
    }
    Ok(())
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// One pack: its version-2 index gives every entry's offset; each entry's
/// header gives its type and size, a delta's first inflated bytes its
/// result size, and a memo resolves a delta's type from its base's.
#[allow(clippy::too_many_arguments)]
fn scan_pack(
    pack: &Path,
    idx: &Path,
    hash: usize,
    limit: u64,
    total: &mut Total,
    started: Instant,
    budget: Duration,
) -> Result<(), ScanError> {
    // The pack's file name only: the pusher sees this, not the server's paths.
    let name = pack
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let bad = |m: &str| ScanError::Malformed(name.clone(), m.to_string());
    let index = std::fs::read(idx)?;
    if index.get(..8) != Some(&[0xff, b't', b'O', b'c', 0, 0, 0, 2][..]) {
        return Err(bad("not a version 2 pack index"));
    }
    let n = be32(&index, 8 + 255 * 4).ok_or_else(|| bad("short index"))? as usize;
    // 8 + 1024 + n * (hash + 4 + 4) + large offsets + 2 * hash
    let body = index
        .len()
        .checked_sub(8 + 1024)
        .ok_or_else(|| bad("short index"))?;
    // The hash size is the repository's, never guessed from the length.
    if n.checked_mul(hash + 8)
        .and_then(|x| x.checked_add(2 * hash))
        .is_none_or(|x| x > body)
    {
        return Err(bad("index size does not match its object count"));
    }
    let names_at = 8 + 1024;
    let offs_at = names_at + n * hash + n * 4;
    let large_at = offs_at + n * 4;
    let mut offsets: Vec<(u64, usize)> = Vec::with_capacity(n);
    let mut by_name: HashMap<&[u8], u64> = HashMap::with_capacity(n);
    for i in 0..n {
        let raw = be32(&index, offs_at + 4 * i).ok_or_else(|| bad("short index"))?;
        let off = if raw & 0x8000_0000 == 0 {
            u64::from(raw)
        } else {
            let j = (raw & 0x7fff_ffff) as usize;
            let hi = be32(&index, large_at + 8 * j).ok_or_else(|| bad("short index"))?;
            let lo = be32(&index, large_at + 8 * j + 4).ok_or_else(|| bad("short index"))?;
            (u64::from(hi) << 32) | u64::from(lo)
        };
        let name = index
            .get(names_at + i * hash..names_at + (i + 1) * hash)
            .ok_or_else(|| bad("short index"))?;
        by_name.insert(name, off);
        offsets.push((off, i));
    }
    offsets.sort_unstable();
    let mut file = File::open(pack)?;
    let pack_len = file.metadata()?.len();
    // offset -> (type or delta marker, base offset, size)
    let mut entries: HashMap<u64, (u8, Option<u64>, u64)> = HashMap::with_capacity(n);
    let mut buf = vec![0u8; 1024];
    for (k, &(off, _)) in offsets.iter().enumerate() {
        if k.is_multiple_of(256) && started.elapsed() >= budget {
            return Err(ScanError::TimedOut(k));
        }
        let end = offsets
            .get(k + 1)
            .map_or(pack_len.saturating_sub(hash as u64), |x| x.0);
        let want = usize::try_from(end.saturating_sub(off))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        file.seek(SeekFrom::Start(off))?;
        let got = read_up_to(&mut file, &mut buf[..want])?;
        let b = &buf[..got];
        let mut p = 0;
        let first = *b.first().ok_or_else(|| bad("entry past the end"))?;
        let ty = (first >> 4) & 7;
        let mut size = u64::from(first & 0x0f);
        let mut shift = 4;
        let mut c = first;
        while c & 0x80 != 0 {
            p += 1;
            c = *b.get(p).ok_or_else(|| bad("truncated entry header"))?;
            if shift > 60 {
                return Err(bad("entry size too large"));
            }
            size |= u64::from(c & 0x7f) << shift;
            shift += 7;
        }
        p += 1;
        let base = match ty {
            OBJ_OFS_DELTA => {
                let mut c = *b.get(p).ok_or_else(|| bad("truncated delta offset"))?;
                let mut rel = u64::from(c & 0x7f);
                while c & 0x80 != 0 {
                    p += 1;
                    c = *b.get(p).ok_or_else(|| bad("truncated delta offset"))?;
                    rel = rel
                        .checked_add(1)
                        .and_then(|r| r.checked_mul(128))
                        .ok_or_else(|| bad("delta offset too large"))?
                        | u64::from(c & 0x7f);
                }
                p += 1;
                Some(
                    off.checked_sub(rel)
                        .ok_or_else(|| bad("delta base before the pack"))?,
                )
            }
            OBJ_REF_DELTA => {
                let name = b
                    .get(p..p + hash)
                    .ok_or_else(|| bad("truncated delta base"))?;
                p += hash;
                // A base outside this pack is already in the repository,
                // where it was sized when it came: treat it as not a
                // commit or tag only if we cannot find it here.
                by_name.get(name).copied()
            }
            1..=4 => None,
            _ => return Err(bad("unknown entry type")),
        };
        if ty == OBJ_OFS_DELTA || ty == OBJ_REF_DELTA {
            // The delta's result size is the second varint of its data;
            // a few hundred compressed bytes hold it, rarely more.
            size = match delta_result_size(b.get(p..).unwrap_or(&[])) {
                Some(s) => s,
                None => {
                    let more = usize::try_from(end.saturating_sub(off))
                        .unwrap_or(usize::MAX)
                        .min(64 << 10);
                    let mut big = vec![0u8; more];
                    file.seek(SeekFrom::Start(off))?;
                    let got = read_up_to(&mut file, &mut big)?;
                    delta_result_size(big.get(p..got).unwrap_or(&[]))
                        .ok_or_else(|| bad("unreadable delta header"))?
                }
            };
        }
        entries.insert(off, (ty, base, size));
    }
    // Resolve each delta's type from its base, memoized: linear overall.
    let mut resolved: HashMap<u64, u8> = HashMap::with_capacity(n);
    for &(off, i) in &offsets {
        let mut chain = Vec::new();
        let mut cur = off;
        let ty = loop {
            if let Some(&t) = resolved.get(&cur) {
                break t;
            }
            let Some(&(t, base, _)) = entries.get(&cur) else {
                break 0; // a base outside the pack: already in the repository
            };
            chain.push(cur);
            if chain.len() > n {
                return Err(bad("a delta chain loops"));
            }
            match (t, base) {
                (OBJ_OFS_DELTA | OBJ_REF_DELTA, Some(b)) => cur = b,
                (OBJ_OFS_DELTA | OBJ_REF_DELTA, None) => break 0,
                (t, _) => break t,
            }
        };
        for c in chain {
            resolved.insert(c, ty);
        }
        let size = entries.get(&off).map_or(0, |e| e.2);
        if (ty == OBJ_COMMIT || ty == OBJ_TAG) && size > limit {
            let name = index
                .get(names_at + i * hash..names_at + (i + 1) * hash)
                .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>());
            return Err(ScanError::TooBig {
                kind: if ty == OBJ_TAG { "tag" } else { "commit" },
                size,
                limit,
                id: name,
            });
        }
        if ty == OBJ_COMMIT || ty == OBJ_TAG {
            total.add(size)?;
        }
    }
    Ok(())
}

/// The result size of a delta whose zlib stream starts `data`: the second
/// of the two varints at the start of the inflated delta.
fn delta_result_size(data: &[u8]) -> Option<u64> {
    let mut z = flate2::Decompress::new(true);
    let mut out = [0u8; 32];
    let _ = z.decompress(data, &mut out, flate2::FlushDecompress::None);
    let produced = usize::try_from(z.total_out()).unwrap_or(0).min(out.len());
    let mut q = 0;
    let mut varint = || -> Option<u64> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let c = *out[..produced].get(q)?;
            q += 1;
            if shift > 63 {
                return None;
            }
            v |= u64::from(c & 0x7f) << shift;
            shift += 7;
            if c & 0x80 == 0 {
                return Some(v);
            }
        }
    };
    let _base = varint()?;
    varint()
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}
