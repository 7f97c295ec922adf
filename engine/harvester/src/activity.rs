//! chia-style activity lines: one per challenge (or chia signage point), in the form chia's
//! harvester writes to its `debug.log`, so that log monitors written for chia (which match
//! `harvester chia.harvester.harvester: INFO  N plots were eligible for farming ...`) keep
//! working (`[log] chia_activity_file`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The file the lines are appended to.
#[derive(Debug)]
pub struct ActivityLog {
    file: Mutex<File>,
}

impl ActivityLog {
    /// Opens (creates) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<ActivityLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(ActivityLog { file: Mutex::new(file) })
    }

    /// Appends one line; a write error is logged once per call, never fatal.
    pub fn record(
        &self,
        eligible: u64,
        challenge: &[u8; 32],
        proofs: u64,
        took: Duration,
        total: u64,
    ) {
        let line = line(SystemTime::now(), eligible, challenge, proofs, took, total);
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        // One write per line: lines of concurrent writers (chia's services share the file)
        // do not interleave within a line.
        if let Err(e) = file.write_all(line.as_bytes()) {
            tracing::warn!("chia activity log: {e}");
        }
    }
}

/// The line chia's harvester logs, with the time in UTC as `YYYY-MM-DDTHH:MM:SS.mmm`.
pub fn line(
    at: SystemTime,
    eligible: u64,
    challenge: &[u8; 32],
    proofs: u64,
    took: Duration,
    total: u64,
) -> String {
    let hex: String = challenge[..5].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{} harvester chia.harvester.harvester: INFO     {eligible} plots were eligible for \
         farming {hex}... Found {proofs} proofs. Time: {:.5} s. Total {total} plots\n",
        timestamp(at),
        took.as_secs_f64(),
    )
}

fn timestamp(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_reads_like_chias() {
        // 2025-12-04T02:59:27 UTC, as `date -u -d @1764817167` prints it.
        let at = UNIX_EPOCH + Duration::from_millis(1_764_817_167_123);
        let l = line(at, 3, &[0xab; 32], 1, Duration::from_micros(412_340), 1200);
        assert_eq!(
            l,
            "2025-12-04T02:59:27.123 harvester chia.harvester.harvester: INFO     3 plots were \
             eligible for farming ababababab... Found 1 proofs. Time: 0.41234 s. Total 1200 \
             plots\n"
        );
        assert_eq!(&timestamp(UNIX_EPOCH)[..10], "1970-01-01");
        assert_eq!(&timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400))[..10], "2000-02-29");
    }
}
