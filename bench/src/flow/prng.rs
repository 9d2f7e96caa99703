//! The flow's own pseudo-random number generator: xoshiro256** seeded through splitmix64.
//!
//! Written here rather than taken from a crate so that a flow generated from a seed never
//! changes with a dependency's version: the pinned ops hash in `tests/flow_generator.rs`
//! depends on every bit this produces.
//!
//! **Invariants**: the same seed yields the same sequence on every platform (integer
//! arithmetic only, no floating point).
//!
//! **Performance**: a few ns per draw, no allocation.
//!
//! **Known limitations**: [`Prng::below`] uses a 128-bit multiply-shift, which has a bias of
//! at most `n / 2^64`; irrelevant for workload shaping.

/// xoshiro256** (Blackman and Vigna), state filled by splitmix64 from a 64-bit seed.
#[derive(Debug, Clone)]
pub struct Prng {
    state: [u64; 4],
}

impl Prng {
    /// A generator whose whole sequence is decided by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut splitmix_state = seed;
        let mut next = || {
            splitmix_state = splitmix_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = splitmix_state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let state = [next(), next(), next(), next()];
        debug_assert!(
            state.iter().any(|word| *word != 0),
            "xoshiro state must not be all zero"
        );
        Self { state }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A value in `0..n`; `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let wide = u128::from(self.next_u64()) * u128::from(n);
        // The high half of a 64x64 product is below `n`, so it fits in u64.
        (wide >> 64) as u64
    }

    /// A value in `low..=high`; requires `low <= high`, both non-negative.
    pub fn between(&mut self, low: i64, high: i64) -> i64 {
        debug_assert!(0 <= low && low <= high);
        let span = (high - low) as u64 + 1;
        low + self.below(span) as i64
    }

    /// True with probability `pct` percent.
    pub fn chance_pct(&mut self, pct: u32) -> bool {
        self.below(100) < u64::from(pct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_sequence() {
        let mut a = Prng::new(7);
        let mut b = Prng::new(7);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn below_stays_in_range() {
        let mut prng = Prng::new(1);
        for n in 1..200 {
            assert!(prng.below(n) < n);
        }
        for _ in 0..1000 {
            let v = prng.between(3, 5);
            assert!((3..=5).contains(&v));
        }
    }
}
