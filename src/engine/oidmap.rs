//! Maps keyed by object id, for the per-object answers of a run over a
//! whole history (a lookup or two per commit, a million commits).
//!
//! git2's `Oid` compares through a call into libgit2 and hashes with std's
//! SipHash: at 100k commits that was a third of a warm `verify`. Here the
//! key is the id's bytes (compared inline) and the hash a keyed
//! folded-multiply over all of them, with keys drawn at random per
//! process: ids are digests an attacker can steer only by brute force, and
//! without the keys they cannot aim at buckets (each 64-bit product is
//! folded, so every bit of the id reaches the bucket index).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use git2::Oid;

/// An object id's bytes (SHA-1 ids zero-padded).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub(crate) struct Key([u8; 32]);

impl Key {
    pub(crate) fn of(id: &Oid) -> Key {
        Key::of_bytes(id.as_bytes())
    }

    /// The key of an id given as its bytes.
    pub(crate) fn of_bytes(b: &[u8]) -> Key {
        let mut k = [0u8; 32];
        let n = b.len().min(32);
        k[..n].copy_from_slice(&b[..n]);
        Key(k)
    }
}

/// A map from object id.
pub(crate) type OidMap<V> = HashMap<Key, V, Keyed>;

/// A new, empty [`OidMap`].
pub(crate) fn map<V>() -> OidMap<V> {
    HashMap::with_hasher(Keyed::new())
}

/// A hasher state for other sets of a run (same keys).
pub(crate) fn keyed() -> Keyed {
    Keyed::new()
}

/// The hasher's per-process random keys.
#[derive(Clone, Copy)]
pub(crate) struct Keyed {
    k0: u64,
    k1: u64,
}

impl Keyed {
    fn new() -> Self {
        static KEYS: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
        let (k0, k1) = *KEYS.get_or_init(|| {
            // std's RandomState is seeded from the OS per process.
            let r = std::collections::hash_map::RandomState::new();
            let mut a = r.build_hasher();
            a.write_u64(0x243f_6a88_85a3_08d3);
            let mut b = r.build_hasher();
            b.write_u64(0x1319_8a2e_0370_7344);
            (a.finish(), b.finish() | 1)
        });
        Keyed { k0, k1 }
    }
}

impl BuildHasher for Keyed {
    type Hasher = Fold;
    fn build_hasher(&self) -> Fold {
        Fold {
            h: self.k0,
            k: self.k1,
        }
    }
}

fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The hasher of [`Keyed`].
pub(crate) struct Fold {
    h: u64,
    k: u64,
}

impl Hasher for Fold {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.h = fold(
                self.h ^ u64::from_le_bytes(w),
                self.k ^ 0x9e37_79b9_7f4a_7c15,
            );
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.write(&(n as u64).to_le_bytes());
    }

    fn finish(&self) -> u64 {
        fold(self.h, self.k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_share_their_low_bytes_spread() {
        // Ids equal but for their first byte (an attacker's cheapest
        // collisions) must not share buckets.
        let mut buckets = std::collections::HashSet::new();
        let s = Keyed::new();
        for i in 0..=255u8 {
            let mut b = [7u8; 20];
            b[0] = i;
            let id = Oid::from_bytes(&b).unwrap_or(Oid::ZERO_SHA1);
            buckets.insert(s.hash_one(Key::of(&id)) & 0xffff);
        }
        assert!(buckets.len() > 240, "{} buckets", buckets.len());
        let mut m = map();
        let id = Oid::from_bytes(&[1u8; 20]).unwrap_or(Oid::ZERO_SHA1);
        m.insert(Key::of(&id), 5);
        assert_eq!(m.get(&Key::of(&id)), Some(&5));
    }
}
