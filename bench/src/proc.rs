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

/// `pid` and every process below it (children, grandchildren, …), from one scan of `/proc`.
pub fn tree(pid: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            // Field 4 of /proc/<pid>/stat, after the command in parentheses.
            let ppid = std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 2..];
                    rest.split(' ').nth(1)?.parse::<i32>().ok()
                });
            if let Some(ppid) = ppid {
                parent_of.push((p, ppid));
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found
}

/// Samples the summed RSS of a process tree until dropped; [`TreeSampler::stop`] returns the
/// highest sum seen. A sample every [`TreeSampler::EVERY`], so peaks shorter than that can
/// be missed: for a process's own exact peak, read its `VmHWM`.
pub struct TreeSampler {
    /// Tells the sampling thread to stop.
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The sampling thread; its result is the peak in bytes.
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl TreeSampler {
    /// How often the tree is sampled.
    pub const EVERY: std::time::Duration = std::time::Duration::from_millis(100);

    /// Starts sampling the tree under `pid`.
    pub fn start(pid: i32) -> TreeSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                let mut peak = 0;
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    let sum: u64 = tree(pid)
                        .into_iter()
                        .filter_map(|p| rss_bytes(p).ok())
                        .sum();
                    peak = peak.max(sum);
                    std::thread::sleep(Self::EVERY);
                }
                peak
            })
            .expect("spawn the RSS sampling thread");
        TreeSampler {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the highest summed RSS seen, in bytes.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}

impl Drop for TreeSampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
