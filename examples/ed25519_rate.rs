//! The ed25519 verification limit of this machine: how many signatures
//! `ed25519-dalek` (the verifier countersign uses for SSH ed25519) checks
//! per second on one core and on every core, over messages the size of a
//! signed commit's SshSig data. The reference for `bench/perf/run.py`'s
//! "share of the ed25519 limit".
//!
//!     cargo run --release --example ed25519_rate [-- SECONDS]

use ed25519_dalek::{Signer, SigningKey, Verifier};
use std::time::{Duration, Instant};

fn rate(threads: usize, secs: f64) -> f64 {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let vk = key.verifying_key();
    // Distinct messages, so nothing is cached anywhere.
    let msgs: Vec<Vec<u8>> = (0..256u32)
        .map(|i| {
            let mut m = vec![b'x'; 140];
            m.extend_from_slice(&i.to_le_bytes());
            m
        })
        .collect();
    let sigs: Vec<_> = msgs.iter().map(|m| key.sign(m)).collect();
    let deadline = Duration::from_secs_f64(secs);
    let counts: Vec<u64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let t0 = Instant::now();
                    let mut n = 0u64;
                    while t0.elapsed() < deadline {
                        for (m, sig) in msgs.iter().zip(&sigs) {
                            if vk.verify(m, sig).is_err() {
                                return 0;
                            }
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    counts.iter().sum::<u64>() as f64 / secs
}

fn main() {
    let secs = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let one = rate(1, secs);
    let all = rate(cores, secs);
    println!(
        "ed25519 verify, 1 core: {one:.0}/s ({:.1} us each)",
        1e6 / one
    );
    println!(
        "ed25519 verify, {cores} cores: {all:.0}/s: 100,000 signatures take at least {:.2} s, 1,000,000 at least {:.1} s",
        100_000.0 / all,
        1_000_000.0 / all
    );
}
