//! The ed25519 verification limit of this machine: how many signatures
//! `ed25519-dalek` (the verifier countersign uses for SSH ed25519) checks
//! per second on one core and on every core, over messages the size of a
//! signed commit's SshSig data. The reference for `bench/perf/run.py`'s
//! "share of the ed25519 limit".
//!
//!     cargo run --release --example ed25519_rate [-- SECONDS]

use ed25519_dalek::{Signer, SigningKey, Verifier};

#[path = "shared/rate.rs"]
mod shared;

/// ed25519 verifications per second on `threads` threads.
fn rate(threads: usize, secs: f64) -> f64 {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let vk = key.verifying_key();
    // Distinct messages, so nothing is cached anywhere.
    let signed: Vec<(Vec<u8>, ed25519_dalek::Signature)> = (0..256u32)
        .map(|i| {
            let mut m = vec![b'x'; 140];
            m.extend_from_slice(&i.to_le_bytes());
            let sig = key.sign(&m);
            (m, sig)
        })
        .collect();
    shared::rate(&signed, threads, secs, |(m, sig)| vk.verify(m, sig).is_ok())
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
