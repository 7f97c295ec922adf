//! What the simulated disk is like: limits, latency and faults.

use std::time::Duration;

use crate::rng::Rng;

/// Largest `reads_in_flight_max` accepted (the real backends' limit).
pub const READS_IN_FLIGHT_LIMIT: usize = 8192;
/// Default largest read: 4 MiB, as the real backends.
pub const READ_BYTES_MAX_DEFAULT: u32 = 4 << 20;
/// Short reads of one read at most: every short read moves at least one byte, so a read ends
/// anyway, but a read of megabytes at probability 1 should not cost a million rounds.
pub const SHORT_READS_PER_READ_MAX: u32 = 64;
/// Default latency of a read: a fast SSD.
pub const LATENCY_DEFAULT: Duration = Duration::from_micros(100);

/// How long the device takes to serve one read (one round: a short read costs another).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    Fixed(Duration),
    /// Uniform in `min..=max`.
    Uniform {
        min: Duration,
        max: Duration,
    },
    /// Uniform in `min..=max`, except that with probability `slow_probability` the read is
    /// slow: uniform in `slow_min..=slow_max` (a long tail: HDD seeks, SSD garbage collection).
    LongTail {
        min: Duration,
        max: Duration,
        slow_probability: f64,
        slow_min: Duration,
        slow_max: Duration,
    },
}

impl Latency {
    /// One latency. Always draws two numbers, whatever the variant.
    pub fn sample(&self, rng: &mut Rng) -> Duration {
        let (slow, draw) = (rng.unit(), rng.next_u64());
        let mut rng = Rng::new(draw);
        match *self {
            Latency::Fixed(latency) => latency,
            Latency::Uniform { min, max } => rng.duration_between(min, max),
            Latency::LongTail { min, max, slow_probability, slow_min, slow_max } => {
                if slow < slow_probability {
                    rng.duration_between(slow_min, slow_max)
                } else {
                    rng.duration_between(min, max)
                }
            }
        }
    }

    /// Panics on a range upside down or a probability outside `[0, 1]`.
    pub fn validate(&self) {
        match *self {
            Latency::Fixed(_) => {}
            Latency::Uniform { min, max } => assert!(min <= max, "latency {min:?} > {max:?}"),
            Latency::LongTail { min, max, slow_probability, slow_min, slow_max } => {
                assert!(min <= max, "latency {min:?} > {max:?}");
                assert!(slow_min <= slow_max, "slow latency {slow_min:?} > {slow_max:?}");
                assert_probability("slow_probability", slow_probability);
            }
        }
    }
}

/// Faults of a disk, or of one file on it. Every probability is per read, in `[0, 1]`, drawn
/// from the read's own seeded stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    pub latency: Latency,
    /// The read fails with `IoError::Os(EIO)` (after its latency).
    pub eio_probability: f64,
    /// Each round of the read returns fewer bytes than asked (at least one), and the backend
    /// reads the rest in another round: the caller still gets every byte, later.
    pub short_read_probability: f64,
    /// The read never completes (until `unhang`, `vanish`).
    pub hang_probability: f64,
    /// One byte of the returned data is flipped (never on an empty result).
    pub corrupt_probability: f64,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults::none()
    }
}

impl Faults {
    /// No faults; every read takes [`LATENCY_DEFAULT`].
    pub const fn none() -> Faults {
        Faults {
            latency: Latency::Fixed(LATENCY_DEFAULT),
            eio_probability: 0.0,
            short_read_probability: 0.0,
            hang_probability: 0.0,
            corrupt_probability: 0.0,
        }
    }

    /// No faults, this latency.
    pub const fn with_latency(latency: Latency) -> Faults {
        Faults { latency, ..Faults::none() }
    }

    /// Panics on a probability outside `[0, 1]` or a latency range upside down.
    pub fn validate(&self) {
        self.latency.validate();
        assert_probability("eio_probability", self.eio_probability);
        assert_probability("short_read_probability", self.short_read_probability);
        assert_probability("hang_probability", self.hang_probability);
        assert_probability("corrupt_probability", self.corrupt_probability);
    }
}

fn assert_probability(name: &str, probability: f64) {
    assert!((0.0..=1.0).contains(&probability), "{name} {probability} outside [0, 1]");
}

/// A simulated disk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// Seeds every random decision: the same seed and the same calls give the same run.
    pub seed: u64,
    /// Reads pushed and not yet drained (clamped to `1..=READS_IN_FLIGHT_LIMIT`).
    pub reads_in_flight_max: usize,
    /// Longer reads complete at once with `IoError::Os(EINVAL)`, as on the real backends.
    pub read_bytes_max: u32,
    /// `Some(alignment)`: files opened with `DirectIo::Prefer` report O_DIRECT at this
    /// alignment (reads need not be aligned: the real backends widen them themselves).
    /// `None`: every file reports buffered reads (alignment 1).
    pub direct_alignment: Option<u32>,
    /// Reads the device serves at once; the others wait their turn, first come first served,
    /// so latency grows with queue depth (an HDD is 1). `None`: no limit.
    pub device_reads_max: Option<usize>,
    /// Faults of every file without faults of its own.
    pub faults: Faults,
}

impl SimConfig {
    pub fn new(seed: u64, reads_in_flight_max: usize) -> SimConfig {
        SimConfig {
            seed,
            reads_in_flight_max,
            read_bytes_max: READ_BYTES_MAX_DEFAULT,
            direct_alignment: None,
            device_reads_max: None,
            faults: Faults::none(),
        }
    }

    /// Panics on a setting that cannot work.
    pub fn validate(&self) {
        self.faults.validate();
        if let Some(alignment) = self.direct_alignment {
            assert!(alignment.is_power_of_two(), "direct alignment {alignment}");
        }
        if let Some(reads) = self.device_reads_max {
            assert!(reads > 0, "device_reads_max 0: no read would ever be served");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_variants_stay_in_their_ranges() {
        let ms = Duration::from_millis;
        let mut rng = Rng::new(3);
        assert_eq!(Latency::Fixed(ms(2)).sample(&mut rng), ms(2));
        let tail = Latency::LongTail {
            min: ms(1),
            max: ms(2),
            slow_probability: 0.1,
            slow_min: ms(50),
            slow_max: ms(60),
        };
        let mut slow = 0;
        for _ in 0..10_000 {
            let u = Latency::Uniform { min: ms(1), max: ms(3) }.sample(&mut rng);
            assert!((ms(1)..=ms(3)).contains(&u));
            let t = tail.sample(&mut rng);
            assert!((ms(1)..=ms(2)).contains(&t) || (ms(50)..=ms(60)).contains(&t), "{t:?}");
            slow += usize::from(t >= ms(50));
        }
        assert!((900..1100).contains(&slow), "{slow}");
    }

    #[test]
    #[should_panic(expected = "eio_probability 1.5 outside [0, 1]")]
    fn probabilities_are_checked() {
        Faults { eio_probability: 1.5, ..Faults::none() }.validate();
    }

    #[test]
    #[should_panic(expected = "latency")]
    fn ranges_are_checked() {
        let ms = Duration::from_millis;
        Faults::with_latency(Latency::Uniform { min: ms(2), max: ms(1) }).validate();
    }
}
