//! A webhook receiver for tests: a plain HTTP/1.1 server on `127.0.0.1` (std `TcpListener`
//! on a free port, one thread per connection, `Connection: close`) that records every
//! request and answers each with the status a script picks for it. Stopped on `Drop`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One request as received.
#[derive(Clone, Debug)]
pub struct Request {
    /// The request line's method.
    pub method: String,
    /// The request target (path and query).
    pub target: String,
    /// Headers, names in lower case, in order.
    pub headers: Vec<(String, String)>,
    /// The body bytes exactly as sent.
    pub body: Vec<u8>,
    /// When the body had arrived.
    pub at: Instant,
}

impl Request {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Picks the status for the `n`-th request (0-based).
pub type Script = Box<dyn Fn(usize) -> u16 + Send + Sync>;

/// A running receiver.
pub struct Receiver {
    /// `http://127.0.0.1:<port>`.
    url: String,
    /// Everything received so far.
    seen: Arc<Mutex<Vec<Request>>>,
    /// Set on drop; the accept loop ends at the next connection.
    stop: Arc<AtomicBool>,
    /// The accept loop.
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// A receiver answering 200 to everything.
    pub fn ok() -> anyhow::Result<Self> {
        Self::start(Box::new(|_| 200))
    }

    /// A receiver answering by `script`.
    pub fn start(script: Script) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script = Arc::new(script);
        let count = Arc::new(Mutex::new(0usize));
        let (s, st) = (seen.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("webhook-receiver".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let (s, script, count) = (s.clone(), script.clone(), count.clone());
                    std::thread::spawn(move || {
                        let _ = serve(conn, &s, &script, &count);
                    });
                }
            })?;
        Ok(Self {
            url,
            seen,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Request> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Reads one request from `conn`, records it, answers it and closes.
fn serve(
    conn: TcpStream,
    seen: &Mutex<Vec<Request>>,
    script: &Script,
    count: &Mutex<usize>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            return Ok(());
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let n = {
        let mut c = count.lock().unwrap_or_else(|e| e.into_inner());
        *c += 1;
        *c - 1
    };
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Request {
            method,
            target,
            headers,
            body,
            at: Instant::now(),
        });
    let status = script(n);
    let mut w = conn;
    write!(
        w,
        "HTTP/1.1 {status} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    w.flush()
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        if let Some(addr) = self.url.strip_prefix("http://") {
            let _ = TcpStream::connect(addr);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
