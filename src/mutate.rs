//! Test support: deterministic mutations of valid inputs, a cheap stand-in
//! for a fuzzer that runs in every `cargo test` (compiled for tests only).

/// `n` mutants of `seed`: each applies 1–4 byte flips, truncations or
/// insertions of bytes that matter to our parsers (newline, space, `=`,
/// `:`, `-`, 0xff), chosen by a fixed xorshift sequence.
pub(crate) fn mutants(seed: &[u8], n: usize) -> Vec<Vec<u8>> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15 ^ seed.len() as u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const INSERT: &[u8] = b"\n =:-\xff";
    (0..n)
        .map(|_| {
            let mut v = seed.to_vec();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % (v.len() + 1);
                match next() % 3 {
                    0 if at < v.len() => v[at] = (next() % 256) as u8,
                    1 => v.truncate(at),
                    _ => v.insert(at, INSERT[(next() as usize) % INSERT.len()]),
                }
            }
            v
        })
        .collect()
}
