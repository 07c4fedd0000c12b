//! [`CappedListener`]: admits a connection only under the listener's total and per-client
//! caps, and wraps it in [`Guarded`], which holds its place until the connection closes.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum_server::{AddrListener, Address};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tracing::warn;

use super::idle::Idle;
use super::{Limits, Throttle, nofile};

/// The connections a listener holds, in total and per client address.
#[derive(Debug, Default)]
struct Counts {
    /// All open connections.
    total: usize,
    /// Open connections per client address.
    per_client: HashMap<IpAddr, usize>,
}

/// The remote address of an admitted connection: the `axum_server` address type of a
/// [`CappedListener`] (`ConnectInfo<SocketAddr>` extracts it as a plain `SocketAddr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer(pub SocketAddr);

impl Address for Peer {
    type Stream = Guarded<TcpStream>;
    type Listener = CappedListener;
}

impl axum::extract::connect_info::Connected<Peer> for SocketAddr {
    fn connect_info(peer: Peer) -> Self {
        peer.0
    }
}

/// A TCP listener that admits connections under [`Limits`] in its accept loop: a connection
/// over a cap is closed before the next one is accepted, so refused connections never pile
/// up as descriptors waiting for a task to run.
#[derive(Debug)]
pub struct CappedListener {
    /// The socket.
    inner: TcpListener,
    /// The caps and timeouts.
    limits: Limits,
    /// The connections held now; shared with their [`Slot`]s only.
    counts: Arc<Mutex<Counts>>,
    /// Refusals are logged at most once per period, with the count held back.
    refusals: Throttle,
    /// The listener's name in log lines and metrics.
    what: &'static str,
}

impl CappedListener {
    /// Serve `inner` (non-blocking, inside a runtime) under `limits`.
    pub fn new(
        inner: std::net::TcpListener,
        limits: Limits,
        what: &'static str,
    ) -> io::Result<Self> {
        inner.set_nonblocking(true)?;
        Ok(Self {
            inner: TcpListener::from_std(inner)?,
            limits,
            counts: Arc::default(),
            refusals: Throttle::new(std::time::Duration::from_secs(10)),
            what,
        })
    }

    /// Take a place for a connection from `ip`, or say which cap is full.
    fn admit(&self, ip: IpAddr) -> Result<Slot, &'static str> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= self.limits.max_connections {
            return Err("connection cap");
        }
        let mine = c.per_client.entry(ip).or_insert(0);
        if *mine >= self.limits.max_per_client {
            return Err("per-client connection cap");
        }
        *mine += 1;
        c.total += 1;
        metrics::gauge!("autopilot_http_connections", "listener" => self.what).increment(1.0);
        Ok(Slot {
            ip,
            counts: self.counts.clone(),
            what: self.what,
        })
    }

    fn refused(&self, peer: SocketAddr, cap: &'static str) {
        metrics::counter!("autopilot_http_connections_refused_total", "listener" => self.what, "reason" => cap)
            .increment(1);
        if let Some(held) = self.refusals.pass() {
            warn!(
                listener = self.what,
                client = %peer.ip(),
                cap,
                max_connections = self.limits.max_connections,
                max_per_client = self.limits.max_per_client,
                refused_since_last_line = held,
                "refused a connection: the listener is at its cap"
            );
        }
    }
}

impl AddrListener<Guarded<TcpStream>, Peer> for CappedListener {
    async fn bind_to(addr: Peer) -> io::Result<Self> {
        let inner = std::net::TcpListener::bind(addr.0)?;
        Self::new(inner, super::Limits::agent(), "http")
    }

    async fn accept_stream(&self) -> io::Result<(Guarded<TcpStream>, Peer)> {
        loop {
            let (stream, peer) = self.inner.accept().await?;
            match self.admit(peer.ip()) {
                Ok(slot) => {
                    let inner = Idle::new(stream, self.limits.idle_timeout);
                    return Ok((Guarded { inner, _slot: slot }, Peer(peer)));
                }
                // Dropping the stream closes it now, before the next accept.
                Err(cap) => self.refused(peer, cap),
            }
        }
    }

    fn get_local_addr(&self) -> io::Result<Peer> {
        self.inner.local_addr().map(Peer)
    }
}

/// A connection's place under the caps; given back when the connection closes.
#[derive(Debug)]
struct Slot {
    ip: IpAddr,
    counts: Arc<Mutex<Counts>>,
    what: &'static str,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_client.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_client.remove(&self.ip);
            }
        }
        metrics::gauge!("autopilot_http_connections", "listener" => self.what).decrement(1.0);
    }
}

/// An admitted connection: closed after the idle timeout, and counted until dropped.
pub struct Guarded<S> {
    /// The connection under its idle timer.
    inner: Idle<S>,
    /// Its place under the caps.
    _slot: Slot,
}

impl<S> Guarded<S> {
    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Log a failed `accept` (throttled): running out of descriptors is named as such. An error
/// with a `peer` comes after the accept, from the connection's acceptor: on a TLS listener
/// (the only acceptor that can fail) a handshake that failed or timed out; it is counted and
/// logged under its own throttle, so a client sending plain HTTP to an HTTPS port cannot hide
/// an `EMFILE`.
pub(super) fn accept_failed(
    what: &'static str,
    peer: Option<&Peer>,
    e: &io::Error,
    throttle: &Throttle,
    handshakes: &Throttle,
) {
    if let Some(peer) = peer {
        metrics::counter!(
            "autopilot_http_accept_errors_total",
            "listener" => what,
            "reason" => "tls_handshake"
        )
        .increment(1);
        if let Some(held) = handshakes.pass() {
            warn!(
                listener = what,
                client = %peer.0.ip(),
                cause = %e,
                failed_since_last_line = held,
                "TLS handshake failed or timed out (a client without the CA, or speaking plain HTTP to this HTTPS listener)"
            );
        }
        return;
    }
    let exhausted = nofile::is_exhausted(e);
    metrics::counter!(
        "autopilot_http_accept_errors_total",
        "listener" => what,
        "reason" => if exhausted { "out_of_file_descriptors" } else { "other" }
    )
    .increment(1);
    let Some(held) = throttle.pass() else { return };
    let limit = nofile::current().map(|(soft, _)| soft);
    if exhausted {
        warn!(
            listener = what,
            cause = %e,
            open_file_limit = ?limit,
            errors_since_last_line = held,
            "accept failed: this process is out of file descriptors (raise LimitNOFILE / ulimit -n); the database is not affected"
        );
    } else {
        warn!(listener = what, client = ?peer.map(|p| p.0.ip()), cause = %e, errors_since_last_line = held, "accept failed");
    }
}
