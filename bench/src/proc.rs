//! Reading a process's resource use from `/proc`.

use anyhow::{Context, Result};

/// Clock ticks per second for `/proc/<pid>/stat` times (USER_HZ; 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// Resident set size of `pid` in bytes (`VmRSS`).
pub fn rss_bytes(pid: i32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("parse VmRSS")?;
    Ok(kib * 1024)
}

/// CPU seconds used by `pid` itself (user + system), and by its waited-for children.
pub fn cpu_seconds(pid: i32) -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 2..])
        .context("parse /proc/pid/stat")?;
    // Fields after the command: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
    let f: Vec<&str> = rest.split(' ').collect();
    let num = |i: usize| -> Result<f64> {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("field {i} of /proc/{pid}/stat"))
    };
    let own = (num(14)? + num(15)?) / TICKS_PER_SECOND;
    let children = (num(16)? + num(17)?) / TICKS_PER_SECOND;
    Ok((own, children))
}

/// The median of `values` (which must not be empty).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}
