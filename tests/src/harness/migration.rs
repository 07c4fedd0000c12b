//! The writer of the live-migration scenarios (issue 18), engine-neutral: it inserts numbered
//! rows into the source until the source refuses, then into the cluster's primary once its
//! port is known (as an application moved over by its connection string would), and records
//! every acknowledgement and when the source last and the cluster first acknowledged one:
//! the write outage as a client sees it.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the writer saw.
#[derive(Debug, Default)]
pub struct Log {
    /// Every row acknowledged, by the source or the cluster.
    pub acked: Vec<u64>,
    /// How many of them the cluster acknowledged.
    pub on_target: usize,
    /// When the source last acknowledged a row.
    pub last_source: Option<Instant>,
    /// When the cluster first acknowledged one.
    pub first_target: Option<Instant>,
}

impl Log {
    /// From the source's last acknowledgement to the cluster's first.
    pub fn outage(&self) -> Option<Duration> {
        self.first_target
            .zip(self.last_source)
            .map(|(f, l)| f.saturating_duration_since(l))
    }
}

/// The writer thread; [`Writer::finish`] stops it.
pub struct Writer {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Log>>,
    /// The cluster primary's port (0: not known yet).
    target: Arc<AtomicU16>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts writing to `source` with `insert(port, n)` (whether the row was
    /// acknowledged), every 5 ms; each attempt uses a new number, from `first`.
    pub fn start(
        source: u16,
        first: u64,
        insert: impl Fn(u16, u64) -> bool + Send + 'static,
    ) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Log::default()));
        let target = Arc::new(AtomicU16::new(0));
        let (s, l, t) = (stop.clone(), log.clone(), target.clone());
        let handle = std::thread::spawn(move || {
            let mut n = first;
            let mut on_target = false;
            while !s.load(Ordering::SeqCst) {
                n += 1;
                if !on_target && insert(source, n) {
                    let mut g = l.lock().expect("the writer's log");
                    g.acked.push(n);
                    g.last_source = Some(Instant::now());
                } else {
                    let port = t.load(Ordering::SeqCst);
                    if port != 0 && insert(port, n) {
                        on_target = true;
                        let mut g = l.lock().expect("the writer's log");
                        g.acked.push(n);
                        g.on_target += 1;
                        g.first_target.get_or_insert_with(Instant::now);
                    } else {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Writer {
            stop,
            log,
            target,
            handle: Some(handle),
        }
    }

    /// From now on, writes the source refuses go to the cluster's primary at `port`.
    pub fn target(&self, port: u16) {
        self.target.store(port, Ordering::SeqCst);
    }

    /// (rows acknowledged, of which by the cluster).
    pub fn count(&self) -> (usize, usize) {
        let g = self.log.lock().expect("the writer's log");
        (g.acked.len(), g.on_target)
    }

    /// Stops the writer; what it saw.
    pub fn finish(mut self) -> Log {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        std::mem::take(&mut *self.log.lock().expect("the writer's log"))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The outage the standby leader's `request_done` names (`… refused writes for 0.412 s …`),
/// from the cluster's events.
pub fn outage_said(events: &[serde_json::Value]) -> Option<Duration> {
    let detail = events.iter().find_map(|e| {
        (e["kind"] == "request_done")
            .then(|| e["detail"].as_str())
            .flatten()
            .filter(|d| d.starts_with("cutover"))
    })?;
    let (_, rest) = detail.split_once("refused writes for ")?;
    let secs: f64 = rest.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_secs_f64(secs))
}
