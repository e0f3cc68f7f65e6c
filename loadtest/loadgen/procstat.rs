//! CPU time and memory of a process, from `/proc/PID/stat` (utime + stime of all its
//! threads, in clock ticks of `USER_HZ` = 100 per second on Linux's user ABI) and
//! `/proc/PID/status` (`VmRSS`, `VmHWM`). Sampled at the start and the end of the
//! measured window by the main thread (never by a load thread); the difference divided
//! by completed requests is the CPU time per request, the steadiest number on a shared
//! 2-core box.

/// Linux reports `utime`/`stime` in `USER_HZ` ticks, fixed at 100/s for user space.
const TICKS_PER_SEC: f64 = 100.0;

/// One sample of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// utime + stime, ticks.
    pub cpu_ticks: u64,
    pub rss_kb: u64,
    /// Peak RSS so far.
    pub hwm_kb: u64,
}

/// A watched process over the window.
#[derive(Debug, Clone)]
pub struct ProcWindow {
    pub name: String,
    pub pid: u32,
    pub start: Sample,
    pub end: Sample,
}

impl ProcWindow {
    pub fn cpu_ms(&self) -> f64 {
        self.end.cpu_ticks.saturating_sub(self.start.cpu_ticks) as f64 * 1000.0 / TICKS_PER_SEC
    }
}

/// Reads a sample of `pid` ("self" when `None`).
pub fn sample(pid: Option<u32>) -> Result<Sample, String> {
    let dir = pid.map_or_else(|| "/proc/self".to_string(), |p| format!("/proc/{p}"));
    let stat = std::fs::read_to_string(format!("{dir}/stat")).map_err(|e| format!("{dir}/stat: {e}"))?;
    let cpu_ticks = parse_stat(&stat).ok_or_else(|| format!("{dir}/stat: unexpected format"))?;
    let status = std::fs::read_to_string(format!("{dir}/status")).map_err(|e| format!("{dir}/status: {e}"))?;
    Ok(Sample { cpu_ticks, rss_kb: status_kb(&status, "VmRSS:"), hwm_kb: status_kb(&status, "VmHWM:") })
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command name
/// (field 2) may contain spaces and parentheses, so fields are counted after the last ')'.
fn parse_stat(stat: &str) -> Option<u64> {
    let after = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after.split_ascii_whitespace();
    // After ')' comes field 3 (state); utime is field 14, i.e. the 12th from here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn status_kb(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_ascii_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 100 1000 50";
        assert_eq!(parse_stat(line), Some(325));
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(None).unwrap();
        assert!(s.rss_kb > 0 && s.hwm_kb >= s.rss_kb);
    }
}
