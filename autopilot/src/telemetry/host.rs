//! Host metrics from sysinfo, sampled on the telemetry actor's tick.

use std::path::{Path, PathBuf};

use metrics::gauge;
use sysinfo::{Disks, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// Sampling state kept between ticks (CPU use is a difference between two samples).
pub struct HostSampler {
    /// sysinfo's handle; refreshed selectively to stay cheap.
    system: System,
    /// Filesystems, refreshed each tick.
    disks: Disks,
    /// The directory whose filesystem is reported (the agent's working directory).
    dir: PathBuf,
    /// Our own PID, for the agent's RSS.
    pid: Pid,
}

impl HostSampler {
    /// A sampler reporting the filesystem that holds `dir`.
    pub fn new(dir: PathBuf) -> Option<Self> {
        let system = System::new().ok()?;
        Some(Self {
            system,
            disks: Disks::new_with_refreshed_list().ok()?,
            dir,
            pid: Pid::from_u32(std::process::id()),
        })
    }

    /// Refresh and publish the gauges.
    pub fn sample(&mut self) {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        let cpu = f64::from(self.system.global_cpu_usage()) / 100.0;
        gauge!("autopilot_host_cpu_usage_ratio").set(cpu);
        gauge!("autopilot_host_memory_total_bytes").set(self.system.total_memory() as f64);
        gauge!("autopilot_host_memory_used_bytes").set(self.system.used_memory() as f64);

        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            false,
            ProcessRefreshKind::nothing().with_memory(),
        );
        if let Some(me) = self.system.process(self.pid) {
            gauge!("autopilot_agent_resident_memory_bytes").set(me.memory() as f64);
        }

        self.disks.refresh(true);
        if let Some(disk) = containing_disk(&self.disks, &self.dir) {
            let mount = disk.mount_point().display().to_string();
            gauge!("autopilot_host_disk_total_bytes", "mount" => mount.clone())
                .set(disk.total_space() as f64);
            gauge!("autopilot_host_disk_available_bytes", "mount" => mount)
                .set(disk.available_space() as f64);
        }
    }
}

/// The disk whose mount point is the longest prefix of `dir`.
fn containing_disk<'a>(disks: &'a Disks, dir: &Path) -> Option<&'a sysinfo::Disk> {
    disks
        .iter()
        .filter(|d| dir.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
}
