//! The MariaDB side of the e2e workload: a bounded SQL client ([`Sql`]) and the [`Writer`]
//! and [`Checker`] threads that insert numbered rows, record every acknowledged insert,
//! and probe every node's writability at once.
//!
//! The writer and the probes log in as the application account `app`, which has no
//! `READ ONLY ADMIN`/`SUPER`: `read_only` stops it, as it stops a real application.
//! Every statement runs on a fresh connection under a hard time limit, so a hung or
//! frozen server never stalls a thread; an insert counts as acknowledged only when the
//! (autocommit) INSERT returned OK.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

/// The application account the workload uses.
pub const APP_USER: &str = "app";
/// Its password (not a secret of the system under test).
pub const APP_PASSWORD: &str = "app-pass";

/// A bounded SQL client for one server.
#[derive(Clone, Debug)]
pub struct Sql {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// User.
    pub user: String,
    /// Password.
    pub password: String,
}

impl Sql {
    /// Run `statements` on one fresh connection within `limit`; the rows of the last one as text.
    pub fn run(&self, statements: &[&str], limit: Duration) -> anyhow::Result<Vec<Vec<String>>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let opts = OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(Some(self.password.clone()))
            .prefer_socket(false);
        let statements: Vec<String> = statements.iter().map(|s| (*s).to_owned()).collect();
        rt.block_on(async move {
            let work = async move {
                let mut c = Conn::new(opts).await?;
                let mut last = Vec::new();
                for s in statements {
                    let rows: Vec<mysql_async::Row> = c.query(s).await?;
                    last = rows
                        .into_iter()
                        .map(|r| {
                            r.unwrap()
                                .into_iter()
                                .map(|v| match v {
                                    mysql_async::Value::NULL => "NULL".to_owned(),
                                    mysql_async::Value::Bytes(b) => {
                                        String::from_utf8_lossy(&b).into_owned()
                                    }
                                    other => other.as_sql(true),
                                })
                                .collect()
                        })
                        .collect();
                }
                let _ = c.disconnect().await;
                Ok::<_, mysql_async::Error>(last)
            };
            match tokio::time::timeout(limit, work).await {
                Ok(r) => r.map_err(anyhow::Error::from),
                Err(_) => anyhow::bail!("no answer within {limit:?}"),
            }
        })
    }

    /// The first column of the first row of `sql`.
    pub fn value(&self, sql: &str) -> anyhow::Result<String> {
        let rows = self.run(&[sql], Duration::from_secs(5))?;
        rows.first()
            .and_then(|r| r.first())
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("{sql} returned no rows"))
    }
}

/// Whether the server on `port` accepts a write from the application account right now: an
/// INSERT inside a transaction that is rolled back (it spends no GTID and waits for no
/// replica), within 300 ms.
pub fn writable(port: u16) -> bool {
    app(port)
        .run(
            &[
                "START TRANSACTION",
                "INSERT INTO e2e.probe VALUES (1)",
                "ROLLBACK",
            ],
            Duration::from_millis(300),
        )
        .is_ok()
}

/// The application account's client for `port`.
pub fn app(port: u16) -> Sql {
    Sql {
        port,
        user: APP_USER.into(),
        password: APP_PASSWORD.into(),
    }
}

/// Every number in `e2e.seq` on the server at `port` (as the application account).
pub fn written(port: u16) -> anyhow::Result<Vec<u64>> {
    let rows = app(port).run(
        &["SELECT n FROM e2e.seq ORDER BY n"],
        Duration::from_secs(10),
    )?;
    Ok(rows
        .iter()
        .filter_map(|r| r.first().and_then(|v| v.parse().ok()))
        .collect())
}

/// What a [`Writer`] did.
#[derive(Debug, Default)]
pub struct WriterReport {
    /// Numbers whose INSERT was acknowledged, in order.
    pub acked: Vec<u64>,
    /// Inserts attempted.
    pub attempts: u64,
    /// Acknowledgements per node index.
    pub acked_by_node: Vec<u64>,
}

impl WriterReport {
    /// Acknowledged numbers missing from `rows`.
    pub fn lost(&self, rows: &[u64]) -> Vec<u64> {
        let have: std::collections::HashSet<u64> = rows.iter().copied().collect();
        self.acked
            .iter()
            .copied()
            .filter(|n| !have.contains(n))
            .collect()
    }
}

/// A thread inserting 1, 2, 3, ... into `e2e.seq` on whichever node accepts it.
pub struct Writer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<WriterReport>>,
}

impl Writer {
    /// Starts writing to the servers on `ports` (by node index) for at most `max_run`.
    pub fn start(ports: Vec<u16>, max_run: Duration) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + max_run;
            let mut report = WriterReport {
                acked_by_node: vec![0; ports.len()],
                ..WriterReport::default()
            };
            let mut target = 0usize;
            let mut seq = 0u64;
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                seq += 1;
                report.attempts += 1;
                let sql = format!("INSERT INTO e2e.seq (n) VALUES ({seq})");
                let ok = app(ports[target])
                    .run(&[&sql], Duration::from_secs(1))
                    .is_ok();
                if ok {
                    report.acked.push(seq);
                    report.acked_by_node[target] += 1;
                    std::thread::sleep(Duration::from_millis(2));
                } else {
                    target = (target + 1) % ports.len();
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            report
        });
        Writer {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the thread; what it did.
    pub fn stop(mut self) -> WriterReport {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .expect("joined once")
            .join()
            .expect("writer thread")
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// What a [`Checker`] saw.
#[derive(Debug, Default)]
pub struct CheckerReport {
    /// Rounds run.
    pub rounds: u64,
    /// (time since start, nodes) of every round with two or more writable nodes.
    pub split_brain: Vec<(Duration, Vec<usize>)>,
    /// Changes of the writable set.
    pub timeline: Vec<(Duration, Vec<usize>)>,
}

/// A thread probing every node's writability at the same moment every ~50 ms.
pub struct Checker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<CheckerReport>>,
}

impl Checker {
    /// Starts probing the servers on `ports` for at most `max_run`.
    pub fn start(ports: Vec<u16>, max_run: Duration) -> Checker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let t0 = Instant::now();
            let deadline = t0 + max_run;
            let mut report = CheckerReport::default();
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                let at = t0.elapsed();
                let up: Vec<usize> = std::thread::scope(|s| {
                    let probes: Vec<_> = ports
                        .iter()
                        .map(|&p| s.spawn(move || writable(p)))
                        .collect();
                    probes
                        .into_iter()
                        .enumerate()
                        .filter_map(|(i, h)| h.join().unwrap_or(false).then_some(i))
                        .collect()
                });
                report.rounds += 1;
                if report.timeline.last().is_none_or(|(_, w)| *w != up) {
                    report.timeline.push((at, up.clone()));
                }
                if up.len() > 1 {
                    report.split_brain.push((at, up));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            report
        });
        Checker {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the thread; what it saw.
    pub fn stop(mut self) -> CheckerReport {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .expect("joined once")
            .join()
            .expect("checker thread")
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
