//! How much one coordinator admits: connections (total, per client address, header-read and
//! idle timeouts), event streams (total and per token), the budget of failed or
//! unauthenticated requests per client address, and the etcd quota `/healthz` measures
//! against. Flags of `coordinator serve`, validated into [`Limits`].

use std::time::Duration;

use clap::Args;

use crate::config::ConfigError;

/// The limit flags of `coordinator serve`.
#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Connections served at once (never more than a quarter of the open-file limit); more
    /// are closed as they are accepted.
    #[arg(
        long,
        env = "AUTOPILOT_COORDINATOR_MAX_CONNECTIONS",
        default_value_t = 1024
    )]
    pub max_connections: usize,
    /// Connections one client address may hold at once.
    #[arg(
        long,
        env = "AUTOPILOT_COORDINATOR_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 64
    )]
    pub max_connections_per_client: usize,
    /// Time a client has to send a complete request head (request line and headers).
    #[arg(long, env = "AUTOPILOT_COORDINATOR_HEADER_READ_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    pub header_read_timeout: Duration,
    /// A connection on which nothing moved for this long is closed (at least 20s: event
    /// streams send a keep-alive every 15s).
    #[arg(long, env = "AUTOPILOT_COORDINATOR_IDLE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "60s")]
    pub idle_timeout: Duration,
    /// Event streams served at once by this coordinator.
    #[arg(
        long,
        env = "AUTOPILOT_COORDINATOR_MAX_EVENT_STREAMS",
        default_value_t = 256
    )]
    pub max_event_streams: usize,
    /// Event streams one token may hold at once.
    #[arg(
        long,
        env = "AUTOPILOT_COORDINATOR_MAX_EVENT_STREAMS_PER_TOKEN",
        default_value_t = 4
    )]
    pub max_event_streams_per_token: usize,
    /// Failed or unauthenticated requests per second one client address may make on
    /// average before it gets 429 with nothing written (0: no limit).
    #[arg(
        long,
        env = "AUTOPILOT_COORDINATOR_CLIENT_FAILURE_RATE",
        default_value_t = 1.0
    )]
    pub client_failure_rate: f64,
    /// Failed or unauthenticated requests one client address may make in one burst.
    #[arg(
        long,
        env = "AUTOPILOT_COORDINATOR_CLIENT_FAILURE_BURST",
        default_value_t = 20
    )]
    pub client_failure_burst: u32,
    /// Repeated refusals (same client address, action and problem code) within this window
    /// are written to the audit log as one record; 0s writes every refusal.
    #[arg(long, env = "AUTOPILOT_COORDINATOR_AUDIT_DENIAL_WINDOW", value_parser = humantime::parse_duration, default_value = "60s")]
    pub audit_denial_window: Duration,
    /// etcd's `--quota-backend-bytes` (used when etcd does not report it): `/healthz` answers
    /// 503 from 90% of it on.
    #[arg(long, env = "AUTOPILOT_COORDINATOR_ETCD_QUOTA_BYTES", default_value_t = 2 * 1024 * 1024 * 1024)]
    pub etcd_quota_bytes: u64,
}

/// The validated limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// The listener's caps and timeouts.
    pub listener: listen::Limits,
    /// Event streams at once.
    pub streams: usize,
    /// Event streams per token.
    pub streams_per_token: usize,
    /// Failures per second per client address (0: unlimited).
    pub failure_rate: f64,
    /// Failure burst per client address.
    pub failure_burst: u32,
    /// The etcd quota assumed when etcd does not report one.
    pub etcd_quota_bytes: u64,
    /// Window over which repeated refusals are aggregated.
    pub audit_denial_window: Duration,
}

fn positive(flag: &str, v: usize) -> Result<(), ConfigError> {
    if v == 0 {
        return Err(ConfigError {
            what: format!("--{flag}=0"),
            why: "must be at least 1".into(),
        });
    }
    Ok(())
}

impl LimitArgs {
    /// Checks the flags.
    pub fn validate(&self) -> Result<Limits, ConfigError> {
        positive("max-connections", self.max_connections)?;
        positive(
            "max-connections-per-client",
            self.max_connections_per_client,
        )?;
        positive("max-event-streams", self.max_event_streams)?;
        positive(
            "max-event-streams-per-token",
            self.max_event_streams_per_token,
        )?;
        if self.header_read_timeout < Duration::from_secs(1) {
            return Err(ConfigError {
                what: format!("--header-read-timeout={:?}", self.header_read_timeout),
                why: "must be at least 1s".into(),
            });
        }
        if self.idle_timeout < Duration::from_secs(20) {
            return Err(ConfigError {
                what: format!("--idle-timeout={:?}", self.idle_timeout),
                why: "must be at least 20s (event streams send a keep-alive every 15s)".into(),
            });
        }
        if !(self.client_failure_rate >= 0.0 && self.client_failure_rate.is_finite()) {
            return Err(ConfigError {
                what: format!("--client-failure-rate={}", self.client_failure_rate),
                why: "must be a number >= 0".into(),
            });
        }
        if self.etcd_quota_bytes == 0 {
            return Err(ConfigError {
                what: "--etcd-quota-bytes=0".into(),
                why: "give etcd's --quota-backend-bytes (2147483648 by default)".into(),
            });
        }
        Ok(Limits {
            listener: listen::Limits {
                max_connections: self.max_connections,
                max_per_client: self.max_connections_per_client,
                header_read_timeout: self.header_read_timeout,
                idle_timeout: self.idle_timeout,
            },
            streams: self.max_event_streams,
            streams_per_token: self.max_event_streams_per_token,
            failure_rate: self.client_failure_rate,
            failure_burst: self.client_failure_burst,
            etcd_quota_bytes: self.etcd_quota_bytes,
            audit_denial_window: self.audit_denial_window,
        })
    }
}
