//! The process-wide Prometheus recorder and the descriptions of every metric the agent emits.

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets for `*_seconds` histograms: handler runs take milliseconds to minutes.
const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Install the global recorder and describe the agent's metrics. Call once per process.
pub fn install_recorder() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .install_recorder()?;
    describe();
    gauge!("autopilot_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    // Counters the alert rules take `increase()` of are exported from the start at 0:
    // Prometheus sees no increase in a series whose first sample is already 1, so the
    // first failover, kill or restart of an agent's life would not alert.
    for name in [
        "autopilot_failovers_total",
        "autopilot_database_kills_total",
        "autopilot_main_process_restarts_total",
        "autopilot_lease_keepalive_failures_total",
    ] {
        counter!(name).absolute(0);
    }
    Ok(handle)
}

fn describe() {
    describe_gauge!(
        "autopilot_build_info",
        "Always 1; the label carries the agent version."
    );
    describe_counter!(
        "autopilot_handler_runs_total",
        "Handler runs by handler and outcome (success, failure, timeout, spawn_error)."
    );
    describe_histogram!(
        "autopilot_handler_duration_seconds",
        Unit::Seconds,
        "How long handler runs took, by handler."
    );
    describe_counter!(
        "autopilot_handler_skipped_total",
        "Periodic handler runs skipped because the previous run had not finished."
    );
    describe_gauge!(
        "autopilot_main_process_up",
        "1 while the main process runs, else 0."
    );
    describe_counter!(
        "autopilot_main_process_restarts_total",
        "Restarts of the main process by the restart policy."
    );
    describe_gauge!("autopilot_health", "1 when the node is healthy, else 0.");
    describe_gauge!(
        "autopilot_package_update_available",
        "1 when a watched package (packages.watch) is installed and its candidate is another version, by package."
    );
    describe_gauge!(
        "autopilot_package_security_update_available",
        "1 when that candidate comes from a security archive, by package."
    );
    describe_gauge!(
        "autopilot_package_update_pending_since_timestamp_seconds",
        "When this node first saw the pending candidate (kept across restarts); 0 without an update, by package."
    );
    describe_gauge!(
        "autopilot_package_last_check_timestamp_seconds",
        "When the package watch last read the versions; 0 until its first check."
    );
    describe_counter!(
        "autopilot_package_check_failures_total",
        "Package checks whose index refresh or version queries failed."
    );
    describe_gauge!(
        "autopilot_lifecycle",
        "Agent lifecycle: 0 starting, 1 running, 2 stopping."
    );
    describe_counter!(
        "autopilot_orphans_reaped_total",
        "Exited processes the agent reaped without owning them (orphaned descendants)."
    );
    describe_gauge!(
        "autopilot_host_cpu_usage_ratio",
        "Host CPU use over all cores, 0 to 1."
    );
    describe_gauge!(
        "autopilot_host_memory_total_bytes",
        Unit::Bytes,
        "Host memory in total."
    );
    describe_gauge!(
        "autopilot_host_memory_used_bytes",
        Unit::Bytes,
        "Host memory in use."
    );
    describe_gauge!(
        "autopilot_host_disk_total_bytes",
        Unit::Bytes,
        "Size of the filesystem holding the agent's working directory."
    );
    describe_gauge!(
        "autopilot_host_disk_available_bytes",
        Unit::Bytes,
        "Free space on the filesystem holding the agent's working directory."
    );
    describe_counter!(
        "autopilot_log_records_dropped_total",
        "Log records the syslog or journal output dropped (queue full or receiver down), by output."
    );
    describe_gauge!(
        "autopilot_agent_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory of the agent process itself."
    );
}
