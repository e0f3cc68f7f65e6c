//! Wall-clock helpers: unix seconds and RFC 3339 UTC timestamps for envelopes and
//! sessions. Formatting is done by hand (civil-from-days) to avoid a date crate; it
//! costs a few dozen nanoseconds and one small `String`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds, if the kernel serves it: the kernel's
/// last tick (1-4 ms resolution), which the vDSO returns without reading the TSC
/// (~8 ns here against ~35 ns for `Instant::now()`). For ages and expiries measured
/// in seconds, not for timeouts.
pub fn coarse_ns() -> Option<u64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec that outlives the call, which only
    // writes it; the clock id is a constant the kernel knows or rejects with -1.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    Some(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// Monotonic milliseconds at coarse resolution (`coarse_ns`), or from `Instant` where
/// the kernel lacks the coarse clock. Only differences between two reads mean anything.
pub fn coarse_ms() -> u64 {
    match coarse_ns() {
        Some(ns) => ns / 1_000_000,
        None => {
            static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            let origin = ORIGIN.get_or_init(std::time::Instant::now);
            u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX)
        }
    }
}

/// Milliseconds since the unix epoch.
pub fn now_unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Now as `2026-03-10T08:30:00Z`.
pub fn now_rfc3339() -> String {
    now_stamp().as_str().to_string()
}

/// A `YYYY-MM-DDTHH:MM:SSZ` timestamp held inline (no allocation); serialises as a
/// JSON string.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Stamp([u8; 20]);

impl Stamp {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("1970-01-01T00:00:00Z")
    }

    fn at(secs: u64) -> Stamp {
        let mut out = [0u8; 20];
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        let y = y.clamp(0, 9999) as u64;
        let fields =
            [(y, 4usize), (m as u64, 2), (d as u64, 2), (rem / 3600, 2), ((rem % 3600) / 60, 2), (rem % 60, 2)];
        let mut at = 0;
        for (i, (mut v, width)) in fields.into_iter().enumerate() {
            for k in (0..width).rev() {
                out[at + k] = b'0' + (v % 10) as u8;
                v /= 10;
            }
            at += width;
            if at < 20 {
                out[at] = b"--T::Z"[i];
                at += 1;
            }
        }
        Stamp(out)
    }
}

impl std::fmt::Debug for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Stamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

thread_local! {
    /// The last second formatted on this thread: envelopes within one second share it.
    static LAST: std::cell::Cell<(u64, Stamp)> = const { std::cell::Cell::new((0, Stamp([b'0'; 20]))) };
}

/// Now as a `Stamp`, formatted at most once per second per thread.
pub fn now_stamp() -> Stamp {
    let secs = now_unix();
    LAST.with(|last| {
        let (at, stamp) = last.get();
        if at == secs && secs != 0 {
            return stamp;
        }
        let stamp = Stamp::at(secs);
        last.set((secs, stamp));
        stamp
    })
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_773_131_400), "2026-03-10T08:30:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        for secs in [0, 1_773_131_400, 951_782_400, 4_102_444_799, 1_234_567_890] {
            assert_eq!(Stamp::at(secs).as_str(), rfc3339(secs));
        }
        assert_eq!(now_stamp().as_str(), now_rfc3339());
    }
}
