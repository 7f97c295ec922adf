//! The formulas of chia's consensus a harvester applies to a signage point, with chia's
//! constants: the v1 plot filter (prefix bits by height, pass or fail), the proof-of-space
//! challenge, the required iterations of a quality and the signage-point interval they are
//! compared with, and the phase-out of v1 proofs after the second hard fork.
//!
//! Everything here matches chia-blockchain 2.7.5 (with chia_rs 0.48), definition by definition:
//! `chia/types/blockchain_format/proof_of_space.py`, `chia/consensus/pot_iterations.py`,
//! `chia/consensus/pos_quality.py`, `chia/consensus/default_constants.py` and
//! `chia/consensus/constants.py`. Where chia raises (an assertion, a division by zero, a
//! `uint64` that does not fit) these functions return a [`ConsensusError`]; none of them panics.
//!
//! A harvester's use, for a v1 plot and one signage point:
//!
//! ```text
//! prefix_bits = calculate_prefix_bits(c, peak_height, k)
//! passes_plot_filter(prefix_bits, plot_id, challenge_hash, sp_hash)?   else skip the plot
//! challenge   = calculate_pos_challenge(plot_id, challenge_hash, sp_hash)
//! for each quality the plot has for `challenge`:
//!     required = calculate_iterations_quality(c.difficulty_constant_factor, quality, k,
//!                                             difficulty, sp_hash)
//!     is_eligible(required, calculate_sp_interval_iters(c, sub_slot_iters))?  -> full proof
//! ```

use sha2::{Digest, Sha256};
use thiserror::Error;

/// Why a consensus formula has no answer (where chia raises).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConsensusError {
    /// A constant override that does not fit the constant's type (chia's `OverflowError`
    /// when it builds its `ConsensusConstants`).
    #[error("constant {name} = {value} is out of range (at most {max})")]
    OverrideOutOfRange {
        /// The constant, in chia's spelling.
        name: &'static str,
        /// The value given.
        value: u128,
        /// The largest value the constant's type holds.
        max: u128,
    },
    /// `sub_slot_iters` is not a multiple of `NUM_SPS_SUB_SLOT` (chia's `AssertionError` in
    /// `calculate_sp_interval_iters`).
    #[error("sub slot iters {sub_slot_iters} is not a multiple of NUM_SPS_SUB_SLOT = {num_sps_sub_slot}")]
    SubSlotItersNotDivisible {
        /// The sub-slot iterations given.
        sub_slot_iters: u64,
        /// The signage points per sub-slot.
        num_sps_sub_slot: u8,
    },
    /// `NUM_SPS_SUB_SLOT` is 0 (chia's `ZeroDivisionError`).
    #[error("NUM_SPS_SUB_SLOT is 0")]
    NoSignagePoints,
    /// No expected plot size for this k: k = 0 makes it 0 (chia then divides by zero) and
    /// k > 58 does not fit a `uint64` (chia's `ValueError`).
    #[error("no expected plot size for k = {k}")]
    PlotSizeOutOfRange {
        /// The plot's k.
        k: u8,
    },
    /// The required iterations do not fit a `uint64` (chia's `ValueError`): a difficulty
    /// (times the constant factor) far beyond any real one.
    #[error("required iterations do not fit in 64 bits")]
    IterationsOverflow,
    /// `PLOT_V1_PHASE_OUT_EPOCH_BITS` above 8 (chia asserts the mask fits in a byte).
    #[error("PLOT_V1_PHASE_OUT_EPOCH_BITS = {bits} is above 8")]
    PhaseOutEpochBits {
        /// The constant's value.
        bits: u8,
    },
    /// `EPOCH_BLOCKS` is 0 (chia's `ZeroDivisionError` in the v1 phase-out).
    #[error("EPOCH_BLOCKS is 0")]
    NoEpochBlocks,
}

/// The consensus constants the harvester's formulas read, named after chia's
/// `ConsensusConstants` fields (snake case here, UPPER_CASE in chia and in `config.yaml`), each
/// with chia's type. [`Default`] is mainnet ([`ConsensusConstants::MAINNET`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConsensusConstants {
    /// `MIN_PLOT_SIZE_V1` (`uint8`): the smallest k a v1 proof may have.
    pub min_plot_size_v1: u8,
    /// `MAX_PLOT_SIZE_V1` (`uint8`): the largest k a v1 proof may have.
    pub max_plot_size_v1: u8,
    /// `NUMBER_ZERO_BITS_PLOT_FILTER_V1` (`uint8`): leading zero bits the v1 plot filter asks
    /// for before the height-scheduled reductions.
    pub number_zero_bits_plot_filter_v1: u8,
    /// `NUMBER_ZERO_BITS_PLOT_FILTER_V2` (`uint8`): the v2 filter's base bits (v2 plots are not
    /// active on mainnet in 2.7.5; kept for completeness).
    pub number_zero_bits_plot_filter_v2: u8,
    /// `HARD_FORK_HEIGHT` (`uint32`): from here the v1 filter asks for one bit less.
    pub hard_fork_height: u32,
    /// `PLOT_FILTER_128_HEIGHT` (`uint32`): from here two bits less.
    pub plot_filter_128_height: u32,
    /// `PLOT_FILTER_64_HEIGHT` (`uint32`): from here three bits less.
    pub plot_filter_64_height: u32,
    /// `PLOT_FILTER_32_HEIGHT` (`uint32`): from here four bits less.
    pub plot_filter_32_height: u32,
    /// `HARD_FORK2_HEIGHT` (`uint32`): v2 plots activate and the phase-out of v1 proofs starts.
    pub hard_fork2_height: u32,
    /// `PLOT_V1_PHASE_OUT_EPOCH_BITS` (`uint8`): v1 proofs stop entirely `2^bits - 1` epochs
    /// after `HARD_FORK2_HEIGHT`.
    pub plot_v1_phase_out_epoch_bits: u8,
    /// `EPOCH_BLOCKS` (`uint32`): blocks per epoch.
    pub epoch_blocks: u32,
    /// `DIFFICULTY_CONSTANT_FACTOR` (`uint128`): scales a difficulty into iterations.
    pub difficulty_constant_factor: u128,
    /// `NUM_SPS_SUB_SLOT` (`uint8`): signage points per sub-slot.
    pub num_sps_sub_slot: u8,
}

impl ConsensusConstants {
    /// Mainnet, as `DEFAULT_CONSTANTS` in chia-blockchain 2.7.5's `default_constants.py`.
    pub const MAINNET: ConsensusConstants = ConsensusConstants {
        min_plot_size_v1: 32,
        max_plot_size_v1: 50,
        number_zero_bits_plot_filter_v1: 9,
        number_zero_bits_plot_filter_v2: 9,
        hard_fork_height: 5_496_000,
        plot_filter_128_height: 10_542_000,
        plot_filter_64_height: 15_592_000,
        plot_filter_32_height: 20_643_000,
        hard_fork2_height: 0xFFFF_FFFA,
        plot_v1_phase_out_epoch_bits: 8,
        epoch_blocks: 4608,
        difficulty_constant_factor: 1 << 67,
        num_sps_sub_slot: 64,
    };

    /// chia's names of the constants kept here, in chia's spelling.
    pub const NAMES: [&'static str; 13] = [
        "MIN_PLOT_SIZE_V1",
        "MAX_PLOT_SIZE_V1",
        "NUMBER_ZERO_BITS_PLOT_FILTER_V1",
        "NUMBER_ZERO_BITS_PLOT_FILTER_V2",
        "HARD_FORK_HEIGHT",
        "PLOT_FILTER_128_HEIGHT",
        "PLOT_FILTER_64_HEIGHT",
        "PLOT_FILTER_32_HEIGHT",
        "HARD_FORK2_HEIGHT",
        "PLOT_V1_PHASE_OUT_EPOCH_BITS",
        "EPOCH_BLOCKS",
        "DIFFICULTY_CONSTANT_FACTOR",
        "NUM_SPS_SUB_SLOT",
    ];

    /// The value of the constant chia calls `name` (UPPER_CASE), if it is one kept here.
    pub fn get(&self, name: &str) -> Option<u128> {
        Some(match name {
            "MIN_PLOT_SIZE_V1" => self.min_plot_size_v1.into(),
            "MAX_PLOT_SIZE_V1" => self.max_plot_size_v1.into(),
            "NUMBER_ZERO_BITS_PLOT_FILTER_V1" => self.number_zero_bits_plot_filter_v1.into(),
            "NUMBER_ZERO_BITS_PLOT_FILTER_V2" => self.number_zero_bits_plot_filter_v2.into(),
            "HARD_FORK_HEIGHT" => self.hard_fork_height.into(),
            "PLOT_FILTER_128_HEIGHT" => self.plot_filter_128_height.into(),
            "PLOT_FILTER_64_HEIGHT" => self.plot_filter_64_height.into(),
            "PLOT_FILTER_32_HEIGHT" => self.plot_filter_32_height.into(),
            "HARD_FORK2_HEIGHT" => self.hard_fork2_height.into(),
            "PLOT_V1_PHASE_OUT_EPOCH_BITS" => self.plot_v1_phase_out_epoch_bits.into(),
            "EPOCH_BLOCKS" => self.epoch_blocks.into(),
            "DIFFICULTY_CONSTANT_FACTOR" => self.difficulty_constant_factor,
            "NUM_SPS_SUB_SLOT" => self.num_sps_sub_slot.into(),
            _ => return None,
        })
    }

    /// Sets the constant chia calls `name` (UPPER_CASE, as under
    /// `network_overrides.constants.<network>` in chia's `config.yaml`) to `value`.
    ///
    /// `Ok(true)` when the constant is one kept here, `Ok(false)` (nothing changed) for any
    /// other name: chia's other constants and names chia does not know, which chia ignores
    /// with a warning. chia's legacy names `MIN_PLOT_SIZE` and `MAX_PLOT_SIZE` set the `_V1`
    /// constants (for chia's precedence when both spellings are given, use
    /// [`ConsensusConstants::for_network`]). A value that does not fit the constant's type is
    /// an error and changes nothing, as chia refuses to start with it.
    pub fn set_override(&mut self, name: &str, value: u128) -> Result<bool, ConsensusError> {
        fn fit<T: TryFrom<u128>>(
            field: &mut T,
            name: &'static str,
            value: u128,
            max: u128,
        ) -> Result<bool, ConsensusError> {
            *field = T::try_from(value).map_err(|_| ConsensusError::OverrideOutOfRange {
                name,
                value,
                max,
            })?;
            Ok(true)
        }
        let u8_max = u128::from(u8::MAX);
        let u32_max = u128::from(u32::MAX);
        match name {
            "MIN_PLOT_SIZE_V1" | "MIN_PLOT_SIZE" => {
                fit(&mut self.min_plot_size_v1, "MIN_PLOT_SIZE_V1", value, u8_max)
            }
            "MAX_PLOT_SIZE_V1" | "MAX_PLOT_SIZE" => {
                fit(&mut self.max_plot_size_v1, "MAX_PLOT_SIZE_V1", value, u8_max)
            }
            "NUMBER_ZERO_BITS_PLOT_FILTER_V1" => fit(
                &mut self.number_zero_bits_plot_filter_v1,
                "NUMBER_ZERO_BITS_PLOT_FILTER_V1",
                value,
                u8_max,
            ),
            "NUMBER_ZERO_BITS_PLOT_FILTER_V2" => fit(
                &mut self.number_zero_bits_plot_filter_v2,
                "NUMBER_ZERO_BITS_PLOT_FILTER_V2",
                value,
                u8_max,
            ),
            "HARD_FORK_HEIGHT" => {
                fit(&mut self.hard_fork_height, "HARD_FORK_HEIGHT", value, u32_max)
            }
            "PLOT_FILTER_128_HEIGHT" => {
                fit(&mut self.plot_filter_128_height, "PLOT_FILTER_128_HEIGHT", value, u32_max)
            }
            "PLOT_FILTER_64_HEIGHT" => {
                fit(&mut self.plot_filter_64_height, "PLOT_FILTER_64_HEIGHT", value, u32_max)
            }
            "PLOT_FILTER_32_HEIGHT" => {
                fit(&mut self.plot_filter_32_height, "PLOT_FILTER_32_HEIGHT", value, u32_max)
            }
            "HARD_FORK2_HEIGHT" => {
                fit(&mut self.hard_fork2_height, "HARD_FORK2_HEIGHT", value, u32_max)
            }
            "PLOT_V1_PHASE_OUT_EPOCH_BITS" => fit(
                &mut self.plot_v1_phase_out_epoch_bits,
                "PLOT_V1_PHASE_OUT_EPOCH_BITS",
                value,
                u8_max,
            ),
            "EPOCH_BLOCKS" => fit(&mut self.epoch_blocks, "EPOCH_BLOCKS", value, u32_max),
            "DIFFICULTY_CONSTANT_FACTOR" => {
                self.difficulty_constant_factor = value;
                Ok(true)
            }
            "NUM_SPS_SUB_SLOT" => {
                fit(&mut self.num_sps_sub_slot, "NUM_SPS_SUB_SLOT", value, u8_max)
            }
            _ => Ok(false),
        }
    }

    /// The constants chia's harvester runs with on `network_id` given the integer entries of
    /// `network_overrides.constants.<network_id>` from `config.yaml` (entries that are not
    /// integers are not constants kept here; leave them out): mainnet's, then chia's
    /// built-in testnet defaults (`update_testnet_overrides`: on `testneta`,
    /// `HARD_FORK_HEIGHT` 3693395 and `MIN_PLOT_SIZE_V1` 18 unless the overrides name them),
    /// then the legacy renames of `replace_str_to_bytes` (`MIN_PLOT_SIZE` / `MAX_PLOT_SIZE`
    /// count only when the `_V1` name is absent), then every override with
    /// [`set_override`](Self::set_override). A name given twice keeps its last value, as in a
    /// YAML mapping. An out-of-range value is an error, as chia refuses to start with it.
    pub fn for_network<'a>(
        network_id: &str,
        overrides: impl IntoIterator<Item = (&'a str, u128)>,
    ) -> Result<Self, ConsensusError> {
        let mut changes: Vec<(&str, u128)> = Vec::new();
        for (name, value) in overrides {
            match changes.iter_mut().find(|(n, _)| *n == name) {
                Some(entry) => entry.1 = value,
                None => changes.push((name, value)),
            }
        }
        let has = |changes: &[(&str, u128)], name: &str| changes.iter().any(|(n, _)| *n == name);
        if network_id == "testneta" {
            if !has(&changes, "HARD_FORK_HEIGHT") {
                changes.push(("HARD_FORK_HEIGHT", 3_693_395));
            }
            if !has(&changes, "MIN_PLOT_SIZE_V1") {
                changes.push(("MIN_PLOT_SIZE_V1", 18));
            }
        }
        for (old, new) in
            [("MIN_PLOT_SIZE", "MIN_PLOT_SIZE_V1"), ("MAX_PLOT_SIZE", "MAX_PLOT_SIZE_V1")]
        {
            if has(&changes, old) && has(&changes, new) {
                changes.retain(|(n, _)| *n != old);
            }
        }
        let mut constants = Self::MAINNET;
        for (name, value) in changes {
            constants.set_override(name, value)?;
        }
        Ok(constants)
    }
}

impl Default for ConsensusConstants {
    /// Mainnet: [`ConsensusConstants::MAINNET`].
    fn default() -> Self {
        Self::MAINNET
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// The number of leading zero bits the v1 plot filter asks of a plot at `peak_height`, as
/// chia's `calculate_prefix_bits` for a v1 plot: `NUMBER_ZERO_BITS_PLOT_FILTER_V1`, less 1 from
/// `HARD_FORK_HEIGHT`, 2 from `PLOT_FILTER_128_HEIGHT`, 3 from `PLOT_FILTER_64_HEIGHT`, 4 from
/// `PLOT_FILTER_32_HEIGHT` (each height inclusive, the highest reached wins), never below 0.
/// On mainnet: 9, then 8 (June 2024), 7, 6, 5.
///
/// chia's harvester passes the `peak_height` of the signage point message. `k` does not enter
/// the schedule (chia takes the plot's parameter only to assert it is a v1 plot); it is here
/// so that call sites read like chia's.
pub fn calculate_prefix_bits(c: &ConsensusConstants, peak_height: u32, k: u8) -> u8 {
    let _ = k;
    let reduction = if peak_height >= c.plot_filter_32_height {
        4
    } else if peak_height >= c.plot_filter_64_height {
        3
    } else if peak_height >= c.plot_filter_128_height {
        2
    } else if peak_height >= c.hard_fork_height {
        1
    } else {
        0
    };
    c.number_zero_bits_plot_filter_v1.saturating_sub(reduction)
}

/// The hash the v1 plot filter looks at: `sha256(plot_id || challenge_hash || sp_hash)`, as
/// chia's `calculate_plot_filter_input`.
pub fn plot_filter_input(
    plot_id: &[u8; 32],
    challenge_hash: &[u8; 32],
    sp_hash: &[u8; 32],
) -> [u8; 32] {
    sha256(&[plot_id, challenge_hash, sp_hash])
}

/// Whether a v1 plot passes the plot filter for a signage point: the first `prefix_bits` bits
/// of [`plot_filter_input`] are all zero (always true for 0 bits), as chia's
/// `passes_plot_filter`.
pub fn passes_plot_filter(
    prefix_bits: u8,
    plot_id: &[u8; 32],
    challenge_hash: &[u8; 32],
    sp_hash: &[u8; 32],
) -> bool {
    let input = plot_filter_input(plot_id, challenge_hash, sp_hash);
    let bits = usize::from(prefix_bits);
    let full = bits / 8;
    if input[..full].iter().any(|&b| b != 0) {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || input[full] >> (8 - rest) == 0
}

/// The challenge a v1 plot is looked up with for a signage point:
/// `sha256(plot_filter_input(plot_id, challenge_hash, sp_hash))`, as chia's
/// `calculate_pos_challenge`.
pub fn calculate_pos_challenge(
    plot_id: &[u8; 32],
    challenge_hash: &[u8; 32],
    sp_hash: &[u8; 32],
) -> [u8; 32] {
    sha256(&[&plot_filter_input(plot_id, challenge_hash, sp_hash)])
}

/// The expected size of a v1 plot of size `k` (in units that make the iterations formula
/// scale-agnostic): `(2k + 1) * 2^(k - 1)`, as chia's `_expected_plot_size` for a v1 plot.
///
/// An error for k = 0 (chia's formula gives 0 there and its caller divides by it) and for
/// k > 58 (the size does not fit chia's `uint64`).
pub fn expected_plot_size(k: u8) -> Result<u64, ConsensusError> {
    if k == 0 || k > 64 {
        return Err(ConsensusError::PlotSizeOutOfRange { k });
    }
    // Below 2^8 * 2^63: fits a u128.
    let size = (2 * u128::from(k) + 1) << (k - 1);
    u64::try_from(size).map_err(|_| ConsensusError::PlotSizeOutOfRange { k })
}

/// The iterations a quality needs at a signage point (the "required iterations"), as chia's
/// `calculate_iterations_quality` for a v1 plot of size `k`:
///
/// ```text
/// max(1, floor(difficulty * difficulty_constant_factor * int(sha256(quality || sp_hash))
///              / (2^256 * expected_plot_size(k))))
/// ```
///
/// with `int(...)` the hash read big-endian, computed exactly (the product reaches 2^448).
/// `sp_hash` is the challenge chain's signage point hash. A result that does not fit 64 bits
/// is [`ConsensusError::IterationsOverflow`] (chia raises; its harvester then drops the plot's
/// answers for the signage point); a k without an expected size is
/// [`ConsensusError::PlotSizeOutOfRange`].
pub fn calculate_iterations_quality(
    difficulty_constant_factor: u128,
    quality_string: &[u8; 32],
    k: u8,
    difficulty: u64,
    sp_hash: &[u8; 32],
) -> Result<u64, ConsensusError> {
    let expected_size = expected_plot_size(k)?;
    let sp_quality = sha256(&[quality_string, sp_hash]);
    // Little-endian 64-bit limbs.
    let mut q = [0u64; 4];
    for (i, limb) in q.iter_mut().enumerate() {
        let at = 32 - 8 * (i + 1);
        let mut be = [0u8; 8];
        be.copy_from_slice(&sp_quality[at..at + 8]);
        *limb = u64::from_be_bytes(be);
    }
    let scale = mul_u64_u128(difficulty, difficulty_constant_factor);
    let product = mul_3_4(&scale, &q);
    // floor(x / (2^256 * e)) = floor(floor(x / 2^256) / e): drop the low four limbs.
    let [q0, q1, q2] = div_3_1(&[product[4], product[5], product[6]], expected_size);
    if q1 != 0 || q2 != 0 {
        return Err(ConsensusError::IterationsOverflow);
    }
    Ok(q0.max(1))
}

/// `a * b` as three little-endian limbs.
fn mul_u64_u128(a: u64, b: u128) -> [u64; 3] {
    let lo = u128::from(a) * u128::from(b as u64);
    let hi = u128::from(a) * (b >> 64);
    // hi <= (2^64 - 1)^2 and (lo >> 64) < 2^64: the sum fits.
    let mid = hi + (lo >> 64);
    [lo as u64, mid as u64, (mid >> 64) as u64]
}

/// `a * b` (little-endian limbs), schoolbook.
fn mul_3_4(a: &[u64; 3], b: &[u64; 4]) -> [u64; 7] {
    let mut r = [0u64; 7];
    for (i, &ai) in a.iter().enumerate() {
        let mut carry = 0u128;
        for (j, &bj) in b.iter().enumerate() {
            // (2^64 - 1) + (2^64 - 1)^2 + (2^64 - 1) = 2^128 - 1: no overflow.
            let t = u128::from(r[i + j]) + u128::from(ai) * u128::from(bj) + carry;
            r[i + j] = t as u64;
            carry = t >> 64;
        }
        r[i + 4] = carry as u64;
    }
    r
}

/// `floor(a / d)` (little-endian limbs), `d > 0`.
fn div_3_1(a: &[u64; 3], d: u64) -> [u64; 3] {
    let d = u128::from(d);
    let mut quotient = [0u64; 3];
    let mut rem = 0u128;
    for i in (0..3).rev() {
        let cur = (rem << 64) | u128::from(a[i]);
        // rem < d <= 2^64 - 1, so cur / d < 2^64.
        quotient[i] = (cur / d) as u64;
        rem = cur % d;
    }
    quotient
}

/// The iterations between two signage points: `sub_slot_iters / NUM_SPS_SUB_SLOT`, as chia's
/// `calculate_sp_interval_iters`, which asserts the division is exact: a `sub_slot_iters` that
/// is not a multiple is [`ConsensusError::SubSlotItersNotDivisible`] (and a
/// `NUM_SPS_SUB_SLOT` of 0 is [`ConsensusError::NoSignagePoints`]).
pub fn calculate_sp_interval_iters(
    c: &ConsensusConstants,
    sub_slot_iters: u64,
) -> Result<u64, ConsensusError> {
    let n = u64::from(c.num_sps_sub_slot);
    if n == 0 {
        return Err(ConsensusError::NoSignagePoints);
    }
    if sub_slot_iters % n != 0 {
        return Err(ConsensusError::SubSlotItersNotDivisible {
            sub_slot_iters,
            num_sps_sub_slot: c.num_sps_sub_slot,
        });
    }
    Ok(sub_slot_iters / n)
}

/// Whether a quality is good enough for a block (or a pool partial, with the pool's
/// difficulty and sub-slot iterations): its required iterations
/// ([`calculate_iterations_quality`]) are below the signage-point interval
/// ([`calculate_sp_interval_iters`]), the test chia's harvester makes before it fetches the
/// full proof.
pub fn is_eligible(required_iters: u64, sp_interval_iters: u64) -> bool {
    required_iters < sp_interval_iters
}

/// Whether a v1 proof has been phased out, as chia's `is_v1_phased_out`, which chia's
/// harvester applies to every full proof before sending it (with the signage point's
/// `last_tx_height`): never below `HARD_FORK2_HEIGHT` (on mainnet in 2.7.5 that height is
/// 0xFFFFFFFA, so never); from there on, with `mask = 2^PLOT_V1_PHASE_OUT_EPOCH_BITS - 1`,
/// `cut_off = HARD_FORK2_HEIGHT + mask * EPOCH_BLOCKS` and
/// `epochs_left = floor((cut_off - prev_transaction_block_height) / EPOCH_BLOCKS)`, phased
/// out when `epochs_left < 0` or `sha256(proof || b"chia proof-of-space v1 phase-out")[0] &
/// mask >= epochs_left`.
///
/// Errors where chia raises past `HARD_FORK2_HEIGHT`: `PLOT_V1_PHASE_OUT_EPOCH_BITS` above 8,
/// `EPOCH_BLOCKS` of 0.
pub fn is_v1_phased_out(
    c: &ConsensusConstants,
    proof: &[u8],
    prev_transaction_block_height: u32,
) -> Result<bool, ConsensusError> {
    if prev_transaction_block_height < c.hard_fork2_height {
        return Ok(false);
    }
    let bits = c.plot_v1_phase_out_epoch_bits;
    if bits > 8 {
        return Err(ConsensusError::PhaseOutEpochBits { bits });
    }
    if c.epoch_blocks == 0 {
        return Err(ConsensusError::NoEpochBlocks);
    }
    let mask: u8 = ((1u16 << bits) - 1) as u8;
    let epoch_blocks = i64::from(c.epoch_blocks);
    let cut_off = i64::from(c.hard_fork2_height) + i64::from(mask) * epoch_blocks;
    // Python's // floors; div_euclid by a positive divisor does the same.
    let epochs_left = (cut_off - i64::from(prev_transaction_block_height)).div_euclid(epoch_blocks);
    if epochs_left < 0 {
        return Ok(true);
    }
    let value = sha256(&[proof, b"chia proof-of-space v1 phase-out"])[0] & mask;
    Ok(i64::from(value) >= epochs_left)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAINNET: ConsensusConstants = ConsensusConstants::MAINNET;

    fn hash(tag: &str, i: u64) -> [u8; 32] {
        sha256(&[tag.as_bytes(), &i.to_be_bytes()])
    }

    #[test]
    fn default_is_mainnet() {
        let c = ConsensusConstants::default();
        assert_eq!(c, MAINNET);
        assert_eq!(c.difficulty_constant_factor, 1u128 << 67);
        assert_eq!(c.num_sps_sub_slot, 64);
        for name in ConsensusConstants::NAMES {
            assert!(c.get(name).is_some(), "{name}");
        }
    }

    #[test]
    fn prefix_bits_mainnet_schedule() {
        let c = &MAINNET;
        let at = |h| calculate_prefix_bits(c, h, 32);
        assert_eq!(at(0), 9);
        assert_eq!(at(c.hard_fork_height - 1), 9);
        assert_eq!(at(c.hard_fork_height), 8);
        assert_eq!(at(c.plot_filter_128_height - 1), 8);
        assert_eq!(at(c.plot_filter_128_height), 7);
        assert_eq!(at(c.plot_filter_64_height), 6);
        assert_eq!(at(c.plot_filter_32_height - 1), 6);
        assert_eq!(at(c.plot_filter_32_height), 5);
        assert_eq!(at(u32::MAX), 5);
        // Non-increasing in height.
        let mut last = u8::MAX;
        for h in (0..=u32::MAX).step_by(1 << 20) {
            let bits = at(h);
            assert!(bits <= last);
            last = bits;
        }
    }

    #[test]
    fn prefix_bits_never_below_zero() {
        let mut c = MAINNET;
        c.number_zero_bits_plot_filter_v1 = 2;
        assert_eq!(calculate_prefix_bits(&c, c.plot_filter_128_height, 32), 0);
        assert_eq!(calculate_prefix_bits(&c, u32::MAX, 32), 0);
        assert_eq!(calculate_prefix_bits(&c, c.hard_fork_height, 32), 1);
    }

    #[test]
    fn plot_filter_counts_leading_zero_bits() {
        let (challenge, sp) = (hash("c", 0), hash("s", 0));
        let mut seen_pass = [false; 12];
        for i in 0..4000 {
            let id = hash("id", i);
            let input = plot_filter_input(&id, &challenge, &sp);
            let zeros = input
                .iter()
                .position(|&b| b != 0)
                .map_or(256, |p| p * 8 + input[p].leading_zeros() as usize);
            for bits in 0..12u8 {
                let passes = passes_plot_filter(bits, &id, &challenge, &sp);
                assert_eq!(passes, zeros >= usize::from(bits), "id {i} bits {bits}");
                seen_pass[usize::from(bits)] |= passes;
            }
            assert!(passes_plot_filter(0, &id, &challenge, &sp));
            assert_eq!(calculate_pos_challenge(&id, &challenge, &sp), sha256(&[&input]));
        }
        assert!(seen_pass[..8].iter().all(|&p| p));
    }

    #[test]
    fn expected_plot_size_range() {
        assert_eq!(expected_plot_size(0), Err(ConsensusError::PlotSizeOutOfRange { k: 0 }));
        assert_eq!(expected_plot_size(1), Ok(3));
        assert_eq!(expected_plot_size(32), Ok(65 << 31));
        assert_eq!(expected_plot_size(58), Ok(117 << 57));
        assert_eq!(expected_plot_size(59), Err(ConsensusError::PlotSizeOutOfRange { k: 59 }));
        assert_eq!(expected_plot_size(255), Err(ConsensusError::PlotSizeOutOfRange { k: 255 }));
        let mut last = 0;
        for k in 1..=58 {
            let size = expected_plot_size(k).unwrap();
            assert!(size > last);
            last = size;
        }
    }

    #[test]
    fn wide_arithmetic_matches_u128_where_it_fits() {
        for i in 0..2000u64 {
            let h = hash("w", i);
            let a = u64::from_be_bytes(h[..8].try_into().unwrap()) >> (i % 64);
            let b = u128::from_be_bytes(h[8..24].try_into().unwrap()) >> (i % 128);
            let p = mul_u64_u128(a, b);
            // Check against the two u128 halves of the product.
            let lo = u128::from(a) * (b & u128::from(u64::MAX));
            let hi = u128::from(a) * (b >> 64);
            let total_lo = lo.wrapping_add(hi << 64);
            assert_eq!(u128::from(p[0]) | u128::from(p[1]) << 64, total_lo);
            let d = (u64::from_be_bytes(h[24..].try_into().unwrap()) >> (i % 64)).max(1);
            let n = u128::from(a) << 64 | u128::from(a);
            let q = div_3_1(&[n as u64, (n >> 64) as u64, 0], d);
            assert_eq!(u128::from(q[0]) | u128::from(q[1]) << 64, n / u128::from(d));
            assert_eq!(q[2], 0);
            let m = mul_3_4(&[a, 0, 0], &[b as u64, 0, 0, 0]);
            assert_eq!(
                u128::from(m[0]) | u128::from(m[1]) << 64,
                u128::from(a) * u128::from(b as u64)
            );
            assert!(m[2..].iter().all(|&l| l == 0));
        }
        // The largest product, (2^64 - 1)(2^128 - 1)(2^256 - 1), limb by limb.
        let m = mul_3_4(&mul_u64_u128(u64::MAX, u128::MAX), &[u64::MAX; 4]);
        assert_eq!(m, [u64::MAX, 0, 1, u64::MAX, 0, u64::MAX, u64::MAX - 1]);
    }

    #[test]
    fn iterations_quality_properties() {
        let factor = MAINNET.difficulty_constant_factor;
        for i in 0..200 {
            let (quality, sp) = (hash("q", i), hash("sp", i));
            // Difficulty 0 gives the floor of 1.
            assert_eq!(calculate_iterations_quality(factor, &quality, 32, 0, &sp), Ok(1));
            // Non-decreasing in the difficulty.
            let mut last = 0;
            for d in [1u64, 2, 10, 100, 1000, 4000] {
                let iters = calculate_iterations_quality(factor, &quality, 32, d, &sp).unwrap();
                assert!(iters >= last);
                last = iters;
            }
            // Non-increasing in k.
            let mut last = u64::MAX;
            for k in 18..=50 {
                let iters = calculate_iterations_quality(factor, &quality, k, 1000, &sp).unwrap();
                assert!(iters <= last);
                last = iters;
            }
        }
        let (quality, sp) = (hash("q", 7), hash("sp", 7));
        assert_eq!(
            calculate_iterations_quality(factor, &quality, 18, u64::MAX, &sp),
            Err(ConsensusError::IterationsOverflow)
        );
        assert_eq!(
            calculate_iterations_quality(factor, &quality, 0, 1, &sp),
            Err(ConsensusError::PlotSizeOutOfRange { k: 0 })
        );
        assert_eq!(
            calculate_iterations_quality(factor, &quality, 59, 1, &sp),
            Err(ConsensusError::PlotSizeOutOfRange { k: 59 })
        );
    }

    #[test]
    fn iterations_quality_exact_power_of_two_case() {
        // difficulty 2^40 and factor 2^67 make the numerator int(h) * 2^107; with k = 40
        // (size 81 * 2^39) the result is floor((int(h) >> 188) / 81): the top 68 bits.
        for i in 0..500 {
            let (quality, sp) = (hash("q", i), hash("sp", i));
            let h = sha256(&[&quality, &sp]);
            let top = u128::from_be_bytes(h[..16].try_into().unwrap()) >> 60;
            let expected = u64::try_from(top / 81).unwrap().max(1);
            assert_eq!(
                calculate_iterations_quality(1 << 67, &quality, 40, 1 << 40, &sp),
                Ok(expected)
            );
        }
    }

    #[test]
    fn sp_interval_iters_divisibility() {
        let c = MAINNET;
        assert_eq!(calculate_sp_interval_iters(&c, 1 << 27), Ok(1 << 21));
        assert_eq!(calculate_sp_interval_iters(&c, 0), Ok(0));
        assert_eq!(
            calculate_sp_interval_iters(&c, (1 << 27) + 1),
            Err(ConsensusError::SubSlotItersNotDivisible {
                sub_slot_iters: (1 << 27) + 1,
                num_sps_sub_slot: 64
            })
        );
        let mut zero = c;
        zero.num_sps_sub_slot = 0;
        assert_eq!(calculate_sp_interval_iters(&zero, 64), Err(ConsensusError::NoSignagePoints));
        assert!(is_eligible(1, 2));
        assert!(!is_eligible(2, 2));
        assert!(!is_eligible(0, 0));
    }

    #[test]
    fn set_override_by_chia_name() {
        let mut c = MAINNET;
        assert_eq!(c.set_override("NUM_SPS_SUB_SLOT", 32), Ok(true));
        assert_eq!(c.num_sps_sub_slot, 32);
        assert_eq!(c.set_override("MIN_PLOT_SIZE", 18), Ok(true));
        assert_eq!(c.min_plot_size_v1, 18);
        assert_eq!(c.set_override("DIFFICULTY_CONSTANT_FACTOR", u128::MAX), Ok(true));
        assert_eq!(c.difficulty_constant_factor, u128::MAX);
        assert_eq!(c.set_override("GENESIS_CHALLENGE", 1), Ok(false));
        assert_eq!(c.set_override("num_sps_sub_slot", 1), Ok(false));
        let before = c;
        assert_eq!(
            c.set_override("NUM_SPS_SUB_SLOT", 256),
            Err(ConsensusError::OverrideOutOfRange {
                name: "NUM_SPS_SUB_SLOT",
                value: 256,
                max: 255
            })
        );
        assert!(matches!(
            c.set_override("HARD_FORK_HEIGHT", 1 << 32),
            Err(ConsensusError::OverrideOutOfRange { name: "HARD_FORK_HEIGHT", .. })
        ));
        assert_eq!(c, before);
        for name in ConsensusConstants::NAMES {
            let mut c = MAINNET;
            assert_eq!(c.set_override(name, 7), Ok(true), "{name}");
            assert_eq!(c.get(name), Some(7), "{name}");
        }
    }

    #[test]
    fn for_network_precedence() {
        let c = ConsensusConstants::for_network("mainnet", []).unwrap();
        assert_eq!(c, MAINNET);
        let c = ConsensusConstants::for_network("testneta", []).unwrap();
        assert_eq!((c.hard_fork_height, c.min_plot_size_v1), (3_693_395, 18));
        // The legacy name loses to the _V1 name, whatever the order.
        let c = ConsensusConstants::for_network(
            "mainnet",
            [("MIN_PLOT_SIZE_V1", 20), ("MIN_PLOT_SIZE", 25)],
        )
        .unwrap();
        assert_eq!(c.min_plot_size_v1, 20);
        // On testneta the built-in MIN_PLOT_SIZE_V1 counts as given, so the legacy name loses.
        let c = ConsensusConstants::for_network("testneta", [("MIN_PLOT_SIZE", 25)]).unwrap();
        assert_eq!(c.min_plot_size_v1, 18);
        let c = ConsensusConstants::for_network("testnet11", [("MAX_PLOT_SIZE", 40)]).unwrap();
        assert_eq!(c.max_plot_size_v1, 40);
        // Last value wins.
        let c = ConsensusConstants::for_network(
            "mainnet",
            [("NUM_SPS_SUB_SLOT", 300), ("NUM_SPS_SUB_SLOT", 16)],
        )
        .unwrap();
        assert_eq!(c.num_sps_sub_slot, 16);
        assert!(ConsensusConstants::for_network("mainnet", [("EPOCH_BLOCKS", 1 << 40)]).is_err());
    }

    #[test]
    fn phase_out() {
        let c = MAINNET;
        assert_eq!(is_v1_phased_out(&c, b"proof", 0), Ok(false));
        assert_eq!(is_v1_phased_out(&c, b"proof", 0xFFFF_FFF9), Ok(false));
        let mut c = MAINNET;
        c.hard_fork2_height = 1000;
        // Past the cut-off: out for every proof.
        let cut_off = 1000 + 255 * 4608;
        assert_eq!(is_v1_phased_out(&c, b"proof", cut_off + 4608), Ok(true));
        // At the fork: 255 epochs left, and a masked byte is at most 255.
        let mut out = 0;
        for i in 0..1000u64 {
            let proof = hash("p", i);
            out += usize::from(is_v1_phased_out(&c, &proof, 1000).unwrap());
            assert_eq!(is_v1_phased_out(&c, &proof, cut_off), Ok(true));
        }
        assert!(out < 20, "{out}");
        c.plot_v1_phase_out_epoch_bits = 9;
        assert_eq!(
            is_v1_phased_out(&c, b"proof", 1000),
            Err(ConsensusError::PhaseOutEpochBits { bits: 9 })
        );
        c.plot_v1_phase_out_epoch_bits = 8;
        c.epoch_blocks = 0;
        assert_eq!(is_v1_phased_out(&c, b"proof", 1000), Err(ConsensusError::NoEpochBlocks));
    }
}
