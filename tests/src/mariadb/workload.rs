//! The MariaDB side of the e2e workload: a bounded SQL client ([`Sql`]) and
//! [`MariaWorkload`], the `workload::Workload` that the shared writer and checker drive:
//! numbered rows inserted into `e2e.seq`, writability probed with a rolled-back insert.
//!
//! The writer and the probes log in as the application account `app`, which has no
//! `READ ONLY ADMIN`/`SUPER`: `read_only` stops it, as it stops a real application.
//! Every statement runs on a fresh connection under a hard time limit, so a hung or
//! frozen server never stalls a thread; an insert counts as acknowledged only when the
//! (autocommit) INSERT returned OK.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

use crate::harness::workload::Workload;

/// The application account the workload uses.
pub const APP_USER: &str = "app";
/// Its password (not a secret of the system under test).
pub const APP_PASSWORD: &str = "app-pass";

/// A bounded SQL client for one server.
#[derive(Clone, Debug)]
pub struct Sql {
    /// The server's address (127.0.0.1 unless on a test LAN).
    pub host: String,
    /// Its TCP port.
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
            .ip_or_hostname(self.host.clone())
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

/// Whether the server on 127.0.0.1:`port` accepts a write from the application account
/// right now: an INSERT inside a transaction that is rolled back (it spends no GTID and
/// waits for no replica), within 300 ms.
pub fn writable(port: u16) -> bool {
    writable_at(app(port))
}

/// Like [`writable`] through `app`.
pub fn writable_at(app: Sql) -> bool {
    app.run(
        &[
            "START TRANSACTION",
            "INSERT INTO e2e.probe VALUES (1)",
            "ROLLBACK",
        ],
        Duration::from_millis(300),
    )
    .is_ok()
}

/// The application account's client for 127.0.0.1:`port`.
pub fn app(port: u16) -> Sql {
    app_at("127.0.0.1", port)
}

/// The application account's client for `host`:`port`.
pub fn app_at(host: &str, port: u16) -> Sql {
    Sql {
        host: host.to_owned(),
        port,
        user: APP_USER.into(),
        password: APP_PASSWORD.into(),
    }
}

/// Every number in `e2e.seq` on the server at 127.0.0.1:`port` (as the application account).
pub fn written(port: u16) -> anyhow::Result<Vec<u64>> {
    written_at(app(port))
}

fn written_at(app: Sql) -> anyhow::Result<Vec<u64>> {
    let rows = app.run(
        &["SELECT n FROM e2e.seq ORDER BY n"],
        Duration::from_secs(10),
    )?;
    Ok(rows
        .iter()
        .filter_map(|r| r.first().and_then(|v| v.parse().ok()))
        .collect())
}

/// The workload of [`crate::harness::workload`] on MariaDB nodes (by index, their ports).
#[derive(Clone, Debug)]
pub struct MariaWorkload {
    /// Each node's MariaDB address and port.
    pub nodes: Vec<(String, u16)>,
}

impl MariaWorkload {
    fn app(&self, node: usize) -> Sql {
        let (host, port) = &self.nodes[node];
        app_at(host, *port)
    }
}

impl Workload for MariaWorkload {
    fn nodes(&self) -> usize {
        self.nodes.len()
    }

    fn write(&self, node: usize, seq: u64) -> bool {
        let sql = format!("INSERT INTO e2e.seq (n) VALUES ({seq})");
        self.app(node).run(&[&sql], Duration::from_secs(1)).is_ok()
    }

    fn writable(&self, node: usize) -> bool {
        writable_at(self.app(node))
    }

    fn written(&self, node: usize) -> Vec<u64> {
        written_at(self.app(node))
            .unwrap_or_else(|e| panic!("read the written rows on node {node}: {e:#}"))
    }
}
