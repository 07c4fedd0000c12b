//! `autopilotctl` commands about single members — `reinit`, `restart`, `reload`, `remove`,
//! `show-config` — and `show --watch`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use cluster::wire::Timestamp;
use reqwest::Method;
use serde_json::Value;

use super::client::{Client, CtlError, exit};
use super::output::{self, s};
use super::{ClusterArg, Printer, encode, show};

/// Writes a node request (`reinit`, `restart`, `reload`) for `node`, or for every live node
/// (`reload` without a node), and prints what was asked and how to follow it.
pub fn request(
    client: &Client,
    c: &ClusterArg,
    node: Option<&str>,
    action: &str,
    print: Printer<'_>,
) -> Result<(), CtlError> {
    let path = match node {
        Some(n) => format!("{}/nodes/{}/{action}", c.path()?, encode(n)),
        None => format!("{}/{action}", c.path()?),
    };
    let v = client.call(Method::POST, &path, None)?;
    let cluster = c.cluster.clone();
    print(&v, &move |v| requested(v, &cluster));
    Ok(())
}

/// The answer to a node request.
pub fn requested(v: &Value, cluster: &str) -> String {
    let nodes: Vec<String> = output::list(&v["nodes"]).iter().map(s).collect();
    let mut out = format!(
        "{} requested for {}; its agent carries it out: follow with `autopilotctl events {} \
         --since {}`\n",
        s(&v["action"]),
        nodes.join(", "),
        s(&Value::String(cluster.into())),
        s(&v["revision"])
    );
    for w in output::list(&v["warnings"]) {
        out += &format!("warning: {}\n", s(&w));
    }
    out
}

/// The answer to `remove`.
pub fn removed(v: &Value, cluster: &str) -> String {
    let m = &v["member"];
    format!(
        "{} forgotten: no longer a member of {} (it was at {}:{})\n",
        s(&v["node"]),
        s(&Value::String(cluster.into())),
        s(&m["ip_address"]),
        s(&m["port"])
    )
}

/// The answer to `show-config`: a title line, then the configuration as YAML.
pub fn config(v: &Value) -> String {
    let yaml = yaml_serde::to_string(&v["config"])
        .unwrap_or_else(|_| serde_json::to_string_pretty(&v["config"]).unwrap_or_default());
    format!(
        "# {}: effective configuration from its agent at {} (secrets redacted)\n{}{}",
        s(&v["node"]),
        s(&v["agent_url"]),
        yaml,
        if yaml.ends_with('\n') { "" } else { "\n" }
    )
}

/// `show --watch`: reads and prints the cluster every `every` until interrupted. On a
/// terminal the screen is cleared before each drawing; every drawing starts with a time
/// line. With `-o json` each read is one JSON line. An unavailable coordinator or etcd is
/// reported and retried; any other error ends the command.
pub fn watch(
    client: &Client,
    c: &ClusterArg,
    every: Duration,
    json_out: bool,
) -> Result<(), CtlError> {
    let path = c.path()?;
    let tty = std::io::stdout().is_terminal();
    loop {
        let got = client.get(&path);
        let mut out = std::io::stdout().lock();
        match got {
            Ok(v) if json_out => {
                let _ = writeln!(out, "{v}");
            }
            Ok(v) => {
                if tty {
                    // Home and clear; never into a pipe.
                    let _ = write!(out, "\x1b[H\x1b[2J");
                }
                let _ = write!(
                    out,
                    "{}",
                    output::terminal_safe(&format!(
                        "{}  autopilotctl show {} (every {}s, Ctrl-C to stop)\n{}",
                        Timestamp::now(),
                        c.cluster,
                        every.as_secs(),
                        show::cluster(&v)
                    ))
                );
            }
            Err(e) if e.code == exit::UNAVAILABLE => {
                let _ = writeln!(
                    out,
                    "{}  autopilotctl: {}; retrying",
                    Timestamp::now(),
                    output::terminal_safe(&e.message)
                );
            }
            Err(e) => return Err(e),
        }
        let _ = out.flush();
        drop(out);
        std::thread::sleep(every);
    }
}
