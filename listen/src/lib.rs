//! Hardened HTTP listeners, shared by the agent's telemetry listener and the coordinator.
//!
//! Every connection passes [`CappedListener`] before a byte is parsed: at most
//! [`Limits::max_connections`] at once and [`Limits::max_per_client`] per client address
//! (a connection over either cap is closed at once, so a flood costs one descriptor for
//! microseconds). Accepted connections are HTTP/1.1 only, must send their request head within
//! [`Limits::header_read_timeout`] and are closed after [`Limits::idle_timeout`] without a
//! byte moving in either direction ([`idle::Idle`]). Accept errors, `EMFILE` above all, are
//! logged as what they are, at most once per ten seconds ([`Throttle`]).
//!
//! [`nofile`] raises the process's own open-file limit at start so the caps, not the kernel,
//! are what a flood meets first.
//!
//! [`tls`] adds HTTPS (`server(..).acceptor(tls::acceptor(..))`): the handshake runs on an
//! admitted connection, under the same caps and idle timer, bounded by the header-read
//! timeout.

pub mod idle;
mod listener;
pub mod nofile;
mod throttle;
pub mod tls;

use std::time::Duration;

pub use listener::{CappedListener, Guarded, Peer};
pub use throttle::Throttle;

/// Raise the open-file soft limit to the hard limit (as `LimitNOFILE=` would): the
/// listener's connection cap, a quarter of it, then leaves the process's own descriptors (database
/// connections, etcd, handlers) untouched by any flood.
pub fn raise_open_file_limit() {
    match nofile::raise() {
        Ok((old, new)) if old != new => {
            tracing::info!(
                from = old,
                to = new,
                "raised the open-file limit to its hard limit"
            )
        }
        Ok((_, limit)) => tracing::debug!(limit, "open-file limit already at its hard limit"),
        Err(e) => {
            tracing::warn!(cause = %e, "cannot raise the open-file limit; set LimitNOFILE (systemd) or ulimit -n")
        }
    }
}

/// How much one listener admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
    /// Connections one client address may hold at once.
    pub max_per_client: usize,
    /// Time a connection has to send a complete request head (also between requests).
    pub header_read_timeout: Duration,
    /// A connection on which nothing was read or written for this long is closed.
    pub idle_timeout: Duration,
}

impl Limits {
    /// The agent's listener: Prometheus, load balancers, a cloning replica — a handful of
    /// clients; capped at a quarter of the open-file limit so a flood can never starve the
    /// agent's own descriptors (database connections, etcd, handlers).
    pub fn agent() -> Self {
        Self {
            max_connections: 256,
            max_per_client: 32,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
        .capped()
    }

    /// These limits, with at most a quarter of this process's open-file limit in connections
    /// and one client never more than a quarter of that, so other clients keep room.
    pub fn capped(mut self) -> Self {
        self.max_connections = cap_for_open_files(self.max_connections);
        self.max_per_client = self.max_per_client.min((self.max_connections / 4).max(1));
        self
    }
}

/// `want`, at most a quarter of the soft open-file limit (at least 8).
pub fn cap_for_open_files(want: usize) -> usize {
    let quarter = nofile::current()
        .map(|(soft, _)| usize::try_from(soft / 4).unwrap_or(usize::MAX))
        .unwrap_or(want);
    want.min(quarter).max(8)
}

/// An `axum_server` server on `listener` with `limits` applied: the caps in the accept loop,
/// HTTP/1.1 only, the header-read timeout, the head-size bound, and accept errors logged
/// (throttled) as what they are. `what` names the listener in log lines ("telemetry",
/// "coordinator"). Call inside the runtime.
pub fn server(
    listener: std::net::TcpListener,
    limits: Limits,
    what: &'static str,
) -> std::io::Result<axum_server::Server<Peer>> {
    let listener = CappedListener::new(listener, limits, what)?;
    let mut server = axum_server::Server::from_listener(listener).http1_only();
    server
        .http_builder()
        .http1()
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let throttle = Throttle::new(Duration::from_secs(10));
    let handshakes = Throttle::new(Duration::from_secs(10));
    Ok(
        server.accept_error_handler(move |peer: Option<&Peer>, e: &std::io::Error| {
            listener::accept_failed(what, peer, e, &throttle, &handshakes);
        }),
    )
}

/// The largest request head (request line and headers) read; a bigger one is refused (431).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_tls;
