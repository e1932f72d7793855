//! Helpers shared by the unit tests.

/// `n` bytes that do not compress (xorshift from `seed`, which must not be
/// 0: that gives zeros).
pub(crate) fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
