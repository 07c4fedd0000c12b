//! A log sink that can never block or crash the agent: records go into a bounded queue
//! (`try_send`), and one named thread per sink does the I/O — a Unix datagram socket
//! (`/dev/log`, the journal), UDP, or TCP with octet-counting framing (RFC 6587). A record
//! that finds the queue full, or that the receiver does not take, is dropped and counted in
//! `autopilot_log_records_dropped_total{output}`. The thread never logs through tracing (that
//! would feed itself); it says on stderr when the receiver goes away and comes back.

use std::io::{self, Write as _};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

/// Records waiting for the I/O thread; beyond this they are dropped.
pub const QUEUE: usize = 1024;
/// Bound on connecting to and writing to a TCP receiver.
const TCP_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed connect or send, records are dropped without trying for this long at
/// first, doubling up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where a sink sends.
#[derive(Clone, Debug)]
pub enum Target {
    /// One datagram per record to a Unix socket.
    Unix(PathBuf),
    /// One datagram per record to `host:port`.
    Udp(String),
    /// Octet-counted frames (`LEN SP MSG`) on a TCP stream to `host:port`.
    Tcp(String),
}

/// The sending end; cheap to use from any thread.
#[derive(Debug)]
pub struct Sink {
    /// Into the I/O thread.
    tx: SyncSender<Vec<u8>>,
    /// `output` label of the drop counter: `syslog` or `journal`.
    output: &'static str,
}

impl Sink {
    /// Starts the I/O thread for `target`.
    pub fn spawn(output: &'static str, target: Target) -> io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name(format!("log-{output}"))
            .spawn(move || Worker::new(output, target).run(rx))?;
        Ok(Self { tx, output })
    }

    /// Queues one record; drops (and counts) it when the queue is full.
    pub fn send(&self, record: Vec<u8>) {
        match self.tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => dropped(self.output),
        }
    }
}

/// Counts one dropped record.
pub fn dropped(output: &'static str) {
    metrics::counter!("autopilot_log_records_dropped_total", "output" => output).increment(1);
}

/// An open connection or socket.
enum Conn {
    Unix(UnixDatagram),
    Udp(UdpSocket),
    Tcp(TcpStream),
}

/// The I/O thread's state.
struct Worker {
    output: &'static str,
    target: Target,
    conn: Option<Conn>,
    /// No attempt before this after a failure.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// Whether the last attempt failed (to report each outage once on stderr).
    failing: bool,
}

impl Worker {
    fn new(output: &'static str, target: Target) -> Self {
        Self {
            output,
            target,
            conn: None,
            retry_at: None,
            backoff: MIN_BACKOFF,
            failing: false,
        }
    }

    fn run(mut self, rx: Receiver<Vec<u8>>) {
        while let Ok(record) = rx.recv() {
            if self.retry_at.is_some_and(|t| Instant::now() < t) {
                dropped(self.output);
                continue;
            }
            match self.deliver(&record) {
                Ok(()) => {
                    if self.failing {
                        eprintln!("autopilot: log output {} is back", self.output);
                    }
                    self.failing = false;
                    self.retry_at = None;
                    self.backoff = MIN_BACKOFF;
                }
                Err(e) => {
                    dropped(self.output);
                    if !self.failing {
                        eprintln!(
                            "autopilot: log output {} to {:?} failed, dropping records until it is back: {e}",
                            self.output, self.target
                        );
                    }
                    self.failing = true;
                    self.conn = None;
                    self.retry_at = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn deliver(&mut self, record: &[u8]) -> io::Result<()> {
        if self.conn.is_none() {
            self.conn = Some(connect(&self.target)?);
        }
        match self.conn.as_mut().expect("connected just above") {
            Conn::Unix(s) => s.send(record).map(drop),
            Conn::Udp(s) => s.send(record).map(drop),
            Conn::Tcp(s) => {
                let mut frame = format!("{} ", record.len()).into_bytes();
                frame.extend_from_slice(record);
                s.write_all(&frame)
            }
        }
    }
}

fn connect(target: &Target) -> io::Result<Conn> {
    match target {
        Target::Unix(path) => {
            let s = UnixDatagram::unbound()?;
            s.connect(path)?;
            s.set_write_timeout(Some(TCP_TIMEOUT))?;
            Ok(Conn::Unix(s))
        }
        Target::Udp(addr) => {
            let to = resolve(addr)?;
            let local = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let s = UdpSocket::bind(local)?;
            s.connect(to)?;
            Ok(Conn::Udp(s))
        }
        Target::Tcp(addr) => {
            let s = TcpStream::connect_timeout(&resolve(addr)?, TCP_TIMEOUT)?;
            s.set_write_timeout(Some(TCP_TIMEOUT))?;
            s.set_nodelay(true)?;
            Ok(Conn::Tcp(s))
        }
    }
}

fn resolve(addr: &str) -> io::Result<std::net::SocketAddr> {
    addr.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{addr} resolves to no address"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    #[test]
    fn udp_datagrams_arrive() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let addr = rx.local_addr().expect("addr").to_string();
        let sink = Sink::spawn("syslog", Target::Udp(addr)).expect("spawn");
        sink.send(b"hello".to_vec());
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).expect("a datagram");
        assert_eq!(&buf[..n], b"hello");
    }

    #[test]
    fn tcp_frames_are_octet_counted() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let sink = Sink::spawn("syslog", Target::Tcp(addr)).expect("spawn");
        sink.send(b"one".to_vec());
        sink.send(b"two two".to_vec());
        let (mut conn, _) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut got = vec![0u8; "3 one7 two two".len()];
        conn.read_exact(&mut got).expect("both frames");
        assert_eq!(got, b"3 one7 two two");
    }

    #[test]
    fn a_full_queue_or_dead_receiver_never_blocks() {
        // Nothing listens on the socket path: every record is dropped, none blocks.
        let dir = tempfile::tempdir().expect("temp dir");
        let sink = Sink::spawn("journal", Target::Unix(dir.path().join("none"))).expect("spawn");
        let start = Instant::now();
        for _ in 0..(QUEUE * 4) {
            sink.send(vec![b'x'; 100]);
        }
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
