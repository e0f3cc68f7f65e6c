//! CPU time and memory of a process, from `/proc/PID/stat` (utime + stime of all its
//! threads, in clock ticks of `USER_HZ` = 100 per second on Linux's user ABI) and
//! `/proc/PID/status` (`VmRSS`, `VmHWM`). A watched process counts together with its
//! live descendants (`/proc/PID/task/*/children`): nginx's master plus its workers.
//! Sampled at the start and the end of the measured window by the main thread (never
//! by a load thread); the difference divided by completed requests is the CPU time per
//! request, the steadiest number on a shared 2-core box. RSS of a tree is the sum of
//! its processes' RSS (shared pages counted once per process).

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

/// CPU time of the whole machine, from the `cpu` line of `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostSample {
    /// user + nice + system + irq + softirq (time some task or interrupt ran).
    pub busy: u64,
    /// Time the hypervisor ran someone else while we wanted to run.
    pub steal: u64,
}

/// Reads the machine's CPU counters.
pub fn host_sample() -> Result<HostSample, String> {
    let stat = std::fs::read_to_string("/proc/stat").map_err(|e| format!("/proc/stat: {e}"))?;
    parse_host(&stat).ok_or_else(|| "/proc/stat: unexpected format".to_string())
}

fn parse_host(stat: &str) -> Option<HostSample> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_ascii_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    Some(HostSample { busy: get(0) + get(1) + get(2) + get(5) + get(6), steal: get(7) })
}

/// Cores used on average between two samples `secs` apart.
pub fn cores(ticks: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    ticks as f64 / TICKS_PER_SEC / secs
}

/// Samples `pid` and its live descendants, summed. The root must exist; a child that
/// exits between listing and reading is skipped.
pub fn sample_tree(pid: u32) -> Result<Sample, String> {
    let mut total = sample(Some(pid))?;
    let mut queue = children(pid);
    let mut seen = 0;
    while let Some(child) = queue.pop() {
        seen += 1;
        if seen > 4096 {
            break; // a fork bomb is not what we measure
        }
        if let Ok(s) = sample(Some(child)) {
            total.cpu_ticks += s.cpu_ticks;
            total.rss_kb += s.rss_kb;
            total.hwm_kb += s.hwm_kb;
            queue.extend(children(child));
        }
    }
    Ok(total)
}

/// Direct children of `pid`, from every thread's `children` file.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(text.split_ascii_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out
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
    fn the_host_line_sums_busy_columns() {
        let stat = "cpu  100 5 20 900 7 3 2 4 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        let h = parse_host(stat).unwrap();
        assert_eq!((h.busy, h.steal), (130, 4));
        assert!((cores(200, 2.0) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(None).unwrap();
        assert!(s.rss_kb > 0 && s.hwm_kb >= s.rss_kb);
    }

    #[test]
    fn a_tree_includes_its_children() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let me = std::process::id();
        assert!(children(me).contains(&child.id()));
        // Compared with the child's own sample, not with this process's (whose RSS may
        // move between two samples as the allocator gives memory back).
        let child_alone = sample(Some(child.id())).unwrap();
        assert!(child_alone.rss_kb > 0);
        let tree = sample_tree(me).unwrap();
        assert!(tree.rss_kb > child_alone.rss_kb, "{} vs {}", tree.rss_kb, child_alone.rss_kb);
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
