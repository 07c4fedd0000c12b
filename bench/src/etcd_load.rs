//! etcd load of an idle cluster: 3 agents driving Redis, settled, against one etcd; the
//! gRPC counters of etcd's `/metrics` are read at the start and end of a window.
//!
//! Two counters per gRPC method: `grpc_server_msg_received_total` (requests: one per unary
//! call, one per message on a stream, so every lease keep-alive on a `LeaseKeepAlive`
//! stream counts) and `grpc_server_handled_total` (completed calls: a stream counts once,
//! when it ends). The Patroni figures of the recipes used `grpc_server_handled_total`;
//! Patroni's etcd3 client makes one unary call per request, so for it both counters agree.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use e2e::redis::cluster::{RedisCluster, RedisOpts};

/// The lease TTL of the measured cluster.
const TTL: Duration = Duration::from_secs(10);
/// Nodes in the cluster.
const NODES: usize = 3;
/// Bootstrap of the cluster: a primary with both replicas attached.
const BOOTSTRAP: Duration = Duration::from_secs(45);
/// Quiet time after settling, before the window opens.
const QUIET: Duration = Duration::from_secs(5);

/// Per method (`service/method`): (messages received, calls handled).
type Counters = BTreeMap<String, (f64, f64)>;

/// Runs the cluster idle for `seconds`; returns the Markdown section.
pub fn run(seconds: u64) -> Result<String> {
    let opts = RedisOpts {
        ttl: TTL,
        settle: Duration::from_millis(500),
        cooldown: Duration::from_secs(60),
    };
    let c = RedisCluster::start(NODES, opts).context("start the Redis cluster")?;
    eprintln!("etcd-load: waiting for the cluster to settle");
    let deadline = Instant::now() + BOOTSTRAP;
    let primary = loop {
        if let Some(p) = c.primary()
            && (0..c.len())
                .filter(|&i| i != p)
                .all(|i| c.replicates_from(i, p))
        {
            break p;
        }
        if Instant::now() >= deadline {
            bail!(
                "the cluster does not settle within {BOOTSTRAP:?}; roles {:?}",
                c.roles()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(QUIET);
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let url = format!("{}/metrics", c.etcd().endpoint());
    let scrape = || -> Result<Counters> {
        let body = http
            .get(&url)
            .send()
            .and_then(reqwest::blocking::Response::text)
            .with_context(|| format!("GET {url}"))?;
        Ok(parse(&body))
    };
    eprintln!("etcd-load: measuring for {seconds} s");
    let start = scrape()?;
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let end = scrape()?;
    let wall = began.elapsed().as_secs_f64();
    let still = c.primary() == Some(primary);

    let mut rows: Vec<(String, f64, f64)> = end
        .iter()
        .map(|(m, &(recv, handled))| {
            let (r0, h0) = start.get(m).copied().unwrap_or((0.0, 0.0));
            (m.clone(), (recv - r0) / wall, (handled - h0) / wall)
        })
        .filter(|(_, r, h)| *r > 0.0 || *h > 0.0)
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (total_recv, total_handled) = rows
        .iter()
        .fold((0.0, 0.0), |(r, h), row| (r + row.1, h + row.2));
    let per = NODES as f64;

    let mut t = String::new();
    writeln!(
        t,
        "### etcd load of an idle 3-node cluster (lease TTL {} s, {seconds} s window)\n",
        TTL.as_secs()
    )?;
    writeln!(
        t,
        "| gRPC method | requests/s (all agents) | requests/s per agent | completed calls/s (all agents) |"
    )?;
    writeln!(t, "|---|---|---|---|")?;
    for (m, r, h) in &rows {
        writeln!(t, "| {m} | {r:.3} | {:.3} | {h:.3} |", r / per)?;
    }
    writeln!(
        t,
        "| **total** | **{total_recv:.3}** | **{:.3}** | {total_handled:.3} |",
        total_recv / per
    )?;
    writeln!(
        t,
        "\nSettled cluster (one primary, two replicas attached{}), `store.ttl` {} s, `failover.settle` 500 ms, `cooldown` 60 s; \
         the window opens {} s after settling. Requests = `grpc_server_msg_received_total` deltas (one per unary call, one per \
         message on a stream); completed calls = `grpc_server_handled_total` deltas (a stream counts once, when it closes). \
         Baseline from the recipes (Patroni 4.1.5, 3 nodes, `grpc_server_handled_total`, one unary call per request): \
         0.50 req/s at defaults (ttl 30, loop_wait 10), 1.50–3.07 req/s at loop_wait 2–1.",
        if still {
            ", same primary throughout"
        } else {
            "; **the primary changed during the window**"
        },
        TTL.as_secs(),
        QUIET.as_secs()
    )?;
    Ok(t)
}

/// Sums `grpc_server_msg_received_total` and `grpc_server_handled_total` by method.
fn parse(body: &str) -> Counters {
    let mut out = Counters::new();
    for line in body.lines() {
        let (slot, rest) = if let Some(r) = line.strip_prefix("grpc_server_msg_received_total{") {
            (0, r)
        } else if let Some(r) = line.strip_prefix("grpc_server_handled_total{") {
            (1, r)
        } else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let label = |k: &str| {
            labels.split(',').find_map(|kv| {
                kv.strip_prefix(k)
                    .and_then(|v| v.strip_prefix("=\""))
                    .and_then(|v| v.strip_suffix('"'))
            })
        };
        let (Some(service), Some(method)) = (label("grpc_service"), label("grpc_method")) else {
            continue;
        };
        let service = service.rsplit('.').next().unwrap_or(service);
        let e = out
            .entry(format!("{service}/{method}"))
            .or_insert((0.0, 0.0));
        if slot == 0 {
            e.0 += value;
        } else {
            e.1 += value;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_sums_codes_by_method() {
        let body = "# HELP x\n\
            grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 7\n\
            grpc_server_handled_total{grpc_code=\"NotFound\",grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 3\n\
            grpc_server_msg_received_total{grpc_method=\"LeaseKeepAlive\",grpc_service=\"etcdserverpb.Lease\",grpc_type=\"bidi_stream\"} 42\n";
        let c = parse(body);
        assert_eq!(c["KV/Range"], (0.0, 10.0));
        assert_eq!(c["Lease/LeaseKeepAlive"], (42.0, 0.0));
    }
}
