//! What the benchmarks read from the operating system: a process's resident memory and CPU
//! time from `/proc`, the open-file limit, and a description of the machine.

use std::fmt;
use std::fs;
use std::io;
use std::time::Duration;

use anyhow::Context;
use rlimit::Resource;

/// Clock ticks per second of the times in `/proc/<pid>/stat`. Linux reports them in `USER_HZ`,
/// which is 100 on every architecture it exposes to user space.
const USER_HZ: u64 = 100;

/// Resident set size of a process (`VmRSS` of `/proc/<pid>/status`), in bytes.
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS line"))
}

/// Peak resident set size of a process (`VmHWM` of `/proc/<pid>/status`), in bytes.
pub fn peak_rss_bytes(pid: u32) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmHWM line"))
}

/// User plus system CPU time a process has used so far, all threads included (10 ms
/// resolution).
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces; everything after its closing parenthesis
    // is space separated, starting with field 3 (state). utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed stat"))
    };
    let ticks = tick(11)? + tick(12)?;
    Ok(Duration::from_millis(ticks * 1000 / USER_HZ))
}

/// CPU time all CPUs of the machine have spent busy (user, nice, system, irq, softirq,
/// steal) since boot, from `/proc/stat`.
pub fn machine_busy() -> io::Result<Duration> {
    let stat = fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no cpu line"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| v.get(i))
        .sum();
    Ok(Duration::from_millis(busy * 1000 / USER_HZ))
}

/// CPU time of this process and of its children that have been waited for.
pub fn own_cpu_with_children() -> io::Result<Duration> {
    let stat = fs::read_to_string("/proc/self/stat")?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed stat"))?;
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime, stime, cutime, cstime: fields 14 to 17, at 11 to 14 after the state field.
    let ticks: u64 = (11..=14).filter_map(|i| fields.get(i)).sum();
    Ok(Duration::from_millis(ticks * 1000 / USER_HZ))
}

/// Raises this process's open-file limit so that at least `want` descriptors can be open:
/// the soft limit up to the hard one, and past the hard one when the process may (root).
/// Returns the soft limit in force afterwards, which may be below `want`.
pub fn raise_nofile(want: u64) -> anyhow::Result<u64> {
    let (soft, hard) = rlimit::getrlimit(Resource::NOFILE).context("reading RLIMIT_NOFILE")?;
    if soft >= want {
        return Ok(soft);
    }
    if want > hard && rlimit::setrlimit(Resource::NOFILE, want, want).is_ok() {
        return Ok(want);
    }
    let target = want.min(hard);
    rlimit::setrlimit(Resource::NOFILE, target, hard).context("raising RLIMIT_NOFILE")?;
    Ok(target)
}

/// Raises the soft open-file limit to the hard one; returns it.
pub fn raise_nofile_to_hard() -> anyhow::Result<u64> {
    let (_, hard) = rlimit::getrlimit(Resource::NOFILE).context("reading RLIMIT_NOFILE")?;
    raise_nofile(hard)
}

/// Sets this process's soft open-file limit to exactly `limit` (raising the hard limit when it
/// is lower and the process may).
pub fn set_nofile(limit: u64) -> anyhow::Result<()> {
    let (_, hard) = rlimit::getrlimit(Resource::NOFILE).context("reading RLIMIT_NOFILE")?;
    let hard = hard.max(limit);
    rlimit::setrlimit(Resource::NOFILE, limit, hard)
        .with_context(|| format!("setting RLIMIT_NOFILE to {limit}"))
}

/// Restricts the calling thread (and threads it creates later) to one CPU.
pub fn pin_current_thread(cpu: usize) -> anyhow::Result<()> {
    if core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        Ok(())
    } else {
        anyhow::bail!("cannot pin a thread to CPU {cpu}")
    }
}

/// The machine a report was measured on.
#[derive(Clone, Debug)]
pub struct Machine {
    /// CPUs this process may run on.
    pub cpus: usize,
    /// CPU model name from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// Total memory in bytes.
    pub memory: u64,
    /// Open-file limit (soft, hard) of the benchmark process when it started.
    pub nofile: (u64, u64),
}

impl Machine {
    /// Reads the description of this machine.
    pub fn detect() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        let memory = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kb| kb * 1024);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel,
            memory,
            nofile: rlimit::getrlimit(Resource::NOFILE).unwrap_or((0, 0)),
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} CPUs ({}), {:.1} GiB, Linux {}, open-file limit {}/{}",
            self.cpus,
            self.cpu_model,
            self.memory as f64 / (1u64 << 30) as f64,
            self.kernel,
            self.nofile.0,
            self.nofile.1
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).unwrap() > 0);
        // Burn a little CPU so the reading is not trivially zero on a fast machine.
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        assert!(cpu_time(pid).unwrap() > Duration::ZERO);
    }
}
