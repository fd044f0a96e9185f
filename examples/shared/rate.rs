//! The timing loop the `*_rate` examples share.

use std::time::{Duration, Instant};

/// Calls of `check` per second over `secs` seconds on `threads` threads,
/// each thread going round `items`; 0 if any check fails.
pub fn rate<T: Sync>(
    items: &[T],
    threads: usize,
    secs: f64,
    check: impl Fn(&T) -> bool + Sync,
) -> f64 {
    let deadline = Duration::from_secs_f64(secs);
    let counts: Vec<u64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let t0 = Instant::now();
                    let mut n = 0u64;
                    while t0.elapsed() < deadline {
                        for item in items {
                            if !check(item) {
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
