//! The original farmer's decision formula: the all-integer version chia-blockchain's farmer used
//! from February to June 2020 (`src/consensus/pos_quality.py`, `pot_iterations.py`).
//!
//! For a quality string `q` (a big-endian 256-bit integer) of a plot of size `k`:
//!
//! ```text
//! t = 2^256,  xt = q - t,  num = xt^2 + 6·xt·t,  den = 6t + 4·xt
//! E(k) = 780 · k · 2^(k-10)                      (expected plot size)
//! Q(q, k) = -(t · E(k) · den) // num             (≈ E(k) / -ln(q / t), Padé form)
//! iters = min_iters + (difficulty << 32) // Q(q, k)
//! estimate_secs = iters / ips
//! ```
//!
//! Since `0 <= q < t`, `-num = (t - q)(q + 5t) > 0` and `den = 2t + 4q > 0`, so Python's floor
//! division of two negatives is the plain quotient `t · E(k) · (2t + 4q) / ((t - q)(q + 5t))`,
//! computed here with unsigned big integers only.
//!
//! Pure: no IO, no clock.

use num_bigint::BigUint;

/// The parameters of the decision (`--difficulty`, `--ips`, `--min-iters`, the thresholds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FormulaParams {
    /// Difficulty in units of 2^32 iterations (`DIFFICULTY_STARTING` was 500).
    pub difficulty: u64,
    /// The farmer's estimate of the timelord's iterations per second; must be > 0.
    pub ips: u64,
    /// Iterations added to every estimate (ORIG1's `min_iterations`).
    pub min_iters: u64,
    /// A proof whose estimate is below this many seconds earns a pool partial.
    pub pool_share_threshold_secs: f64,
    /// A proof whose estimate is below this many seconds is worth a block (header signature).
    pub propagate_threshold_secs: f64,
}

impl Default for FormulaParams {
    /// The CLI defaults: difficulty 1, 3000 ips, no minimum, thresholds 1500 s and 1000 s.
    fn default() -> Self {
        FormulaParams {
            difficulty: 1,
            ips: 3000,
            min_iters: 0,
            pool_share_threshold_secs: 1500.0,
            propagate_threshold_secs: 1000.0,
        }
    }
}

/// What the farmer does with one quality.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// The iterations estimate (saturated at `u64::MAX`).
    pub iters: u64,
    /// `iters / ips`.
    pub estimate_secs: f64,
    /// Ask for the proof: the estimate is below either threshold.
    pub proof: bool,
    /// Once the proof is valid, ask for a partial (farmer target) signature.
    pub partial: bool,
    /// Once the proof is valid, ask for a header signature.
    pub header: bool,
}

/// `E(k) = 780 · k · 2^(k-10)`, rounded down for k < 10 (no real plot is that small).
pub fn expected_plot_size(k: u8) -> BigUint {
    (BigUint::from(780u32 * u32::from(k)) << usize::from(k)) >> 10usize
}

/// `Q(q, k)`, the quality's "plot size over -ln(q / 2^256)" (see the module docs). Zero only
/// when `E(k)` is (k = 0).
pub fn quality_weight(quality: &[u8; 32], k: u8) -> BigUint {
    let t = BigUint::from(1u8) << 256usize;
    let q = BigUint::from_bytes_be(quality);
    let den = (&t << 1usize) + (&q << 2usize);
    let neg_num = (&t - &q) * (&q + &t * 5u8);
    (t * expected_plot_size(k) * den) / neg_num
}

/// `min_iters + (difficulty << 32) // Q(q, k)`, saturated at `u64::MAX` (also when Q is 0).
pub fn iterations(quality: &[u8; 32], k: u8, difficulty: u64, min_iters: u64) -> u64 {
    let weight = quality_weight(quality, k);
    if weight == BigUint::ZERO {
        return u64::MAX;
    }
    let iters = (BigUint::from(difficulty) << 32usize) / weight;
    u64::try_from(iters).map_or(u64::MAX, |i| i.saturating_add(min_iters))
}

/// The original farmer's decision for one quality: estimate the seconds (`iters / ips`); ask for
/// the proof when the estimate is below either threshold; once the proof is valid, ask for a
/// partial below the pool share threshold and a header signature below the propagate one.
///
/// # Panics
/// If `params.ips` is 0 (the CLI refuses it).
pub fn decide(params: &FormulaParams, quality: &[u8; 32], k: u8) -> Decision {
    assert!(params.ips > 0, "ips must be positive");
    let iters = iterations(quality, k, params.difficulty, params.min_iters);
    // f64 as in the original (`number_iters / proof_of_time_estimate_ips`).
    let estimate_secs = iters as f64 / params.ips as f64;
    let partial = estimate_secs < params.pool_share_threshold_secs;
    let header = estimate_secs < params.propagate_threshold_secs;
    Decision { iters, estimate_secs, proof: partial || header, partial, header }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    fn quality_vector() -> [u8; 32] {
        Sha256::digest(b"quality").into()
    }

    #[test]
    fn section_6_vector() {
        let q = quality_vector();
        assert_eq!(hex::encode(q)[..8], *"acef2c15");
        assert_eq!(quality_weight(&q, 32), BigUint::from(267_305_696_107u64));
        assert_eq!(iterations(&q, 32, 500, 0), 8);
        assert_eq!(iterations(&q, 32, 500, 100), 108);
    }

    #[test]
    fn expected_plot_size_matches_the_definition() {
        assert_eq!(expected_plot_size(32), BigUint::from(780u64 * 32 * (1 << 22)));
        assert_eq!(expected_plot_size(18), BigUint::from(780u64 * 18 * 256));
        assert_eq!(expected_plot_size(10), BigUint::from(7800u32));
        assert_eq!(expected_plot_size(0), BigUint::ZERO);
    }

    #[test]
    fn extremes_do_not_overflow_or_divide_by_zero() {
        // q = 0: -ln(q/t) is infinite, the Padé form gives Q = 2E/5.
        let zero = [0u8; 32];
        assert_eq!(quality_weight(&zero, 32), expected_plot_size(32) * 2u8 / 5u8);
        // q = t - 1: Q is huge, iters is min_iters.
        let top = [0xff; 32];
        assert_eq!(iterations(&top, 32, 500, 7), 7);
        // k = 0: Q = 0, iterations saturate.
        assert_eq!(iterations(&zero, 0, 1, 0), u64::MAX);
        assert_eq!(iterations(&zero, 18, u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn better_qualities_need_fewer_iterations() {
        let mut low = [0u8; 32];
        low[0] = 0x10;
        let mut high = [0u8; 32];
        high[0] = 0xf0;
        // A larger q is closer to t: -ln(q/t) is smaller, Q larger, fewer iterations.
        assert!(iterations(&high, 32, 1 << 20, 0) < iterations(&low, 32, 1 << 20, 0));
    }

    #[test]
    fn decision_follows_the_thresholds() {
        let q = quality_vector();
        // 8 iterations at 1 ips: 8 s.
        let params = FormulaParams {
            difficulty: 500,
            ips: 1,
            min_iters: 0,
            pool_share_threshold_secs: 10.0,
            propagate_threshold_secs: 5.0,
        };
        let d = decide(&params, &q, 32);
        assert_eq!((d.iters, d.estimate_secs), (8, 8.0));
        assert!(d.proof && d.partial && !d.header);
        let d = decide(&FormulaParams { propagate_threshold_secs: 9.0, ..params }, &q, 32);
        assert!(d.proof && d.partial && d.header);
        let d = decide(
            &FormulaParams {
                pool_share_threshold_secs: 8.0,
                propagate_threshold_secs: 1.0,
                ..params
            },
            &q,
            32,
        );
        assert!(!d.proof && !d.partial && !d.header);
    }
}
