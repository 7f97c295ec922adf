//! A small seeded PRNG: xoshiro256** seeded through splitmix64. Not cryptographic; the point is
//! that a seed reproduces a run exactly, on every platform.

use std::time::Duration;

/// splitmix64 step: advances `state` and returns the next output.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256**: a fast generator with 256 bits of state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut state = seed;
        let s = [
            splitmix64(&mut state),
            splitmix64(&mut state),
            splitmix64(&mut state),
            splitmix64(&mut state),
        ];
        // splitmix64 is a bijection of its counter, so four consecutive outputs are never all
        // zero (the one state xoshiro cannot leave).
        assert!(s != [0; 4]);
        Rng { s }
    }

    /// The generator of stream `stream` under `seed`: independent streams from one seed (the
    /// simulated disk gives every read its own, so one read's draws never shift another's).
    pub fn stream(seed: u64, stream: u64) -> Rng {
        let mut state = stream;
        Rng::new(seed ^ splitmix64(&mut state))
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..count` (`count > 0`), by multiply-shift (bias below 2^-64 * count).
    pub fn below(&mut self, count: u64) -> u64 {
        assert!(count > 0, "below(0)");
        let value = ((u128::from(self.next_u64()) * u128::from(count)) >> 64) as u64;
        assert!(value < count);
        value
    }

    /// Uniform in `min..=max`.
    pub fn between(&mut self, min: u64, max: u64) -> u64 {
        assert!(min <= max, "between({min}, {max})");
        match (max - min).checked_add(1) {
            Some(count) => min + self.below(count),
            None => self.next_u64(), // the whole u64 range
        }
    }

    /// Uniform in `[0, 1)`, 53 bits.
    pub fn unit(&mut self) -> f64 {
        const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
        (self.next_u64() >> 11) as f64 * SCALE
    }

    /// True with probability `probability` (0 never, 1 always). Always draws one number, so
    /// the stream advances the same whatever the probability.
    pub fn chance(&mut self, probability: f64) -> bool {
        assert!((0.0..=1.0).contains(&probability), "probability {probability}");
        self.unit() < probability
    }

    /// Uniform in `min..=max`, to the nanosecond (durations beyond 584 years are clamped).
    pub fn duration_between(&mut self, min: Duration, max: Duration) -> Duration {
        assert!(min <= max, "duration_between({min:?}, {max:?})");
        Duration::from_nanos(self.between(nanos(min), nanos(max)))
    }
}

/// `duration` in nanoseconds, clamped to `u64::MAX` (584 years).
pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_different_seed_different_stream() {
        let a: Vec<u64> = (0..8).scan(Rng::new(7), |r, _| Some(r.next_u64())).collect();
        let b: Vec<u64> = (0..8).scan(Rng::new(7), |r, _| Some(r.next_u64())).collect();
        let c: Vec<u64> = (0..8).scan(Rng::new(8), |r, _| Some(r.next_u64())).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(Rng::stream(7, 0), Rng::stream(7, 1));
        assert_eq!(Rng::stream(7, 3), Rng::stream(7, 3));
    }

    #[test]
    fn known_answer_of_zero_seed() {
        // splitmix64(0) first output, the published reference value.
        let mut state = 0;
        assert_eq!(splitmix64(&mut state), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn below_and_between_stay_in_range_and_cover_it() {
        let mut rng = Rng::new(1);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[rng.below(10) as usize] += 1;
            let v = rng.between(5, 7);
            assert!((5..=7).contains(&v));
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        assert_eq!(rng.between(3, 3), 3);
        let _ = rng.between(0, u64::MAX);
    }

    #[test]
    fn chance_matches_probability() {
        let mut rng = Rng::new(2);
        assert!(!(0..1000).any(|_| rng.chance(0.0)));
        assert!((0..1000).all(|_| rng.chance(1.0)));
        let hits = (0..100_000).filter(|_| rng.chance(0.25)).count();
        assert!((24_000..26_000).contains(&hits), "{hits}");
    }
}
