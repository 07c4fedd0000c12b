//! What `autopilotctl list`, `show`, `history` and `events` print: the cluster list with
//! each primary and its healthy replicas, one cluster as a header and a member table in the
//! engine's own notation (PostgreSQL timeline and LSN, MariaDB GTID), history with positions
//! in that notation, and one line per event starting with its time. Pure functions of the
//! API's JSON, snapshot-tested.

use cluster::wire::{Position, Timestamp};
use serde_json::Value;

use super::output::{list, s, table};

/// `GET /v1/clusters`: one line per cluster naming its primary, healthy replicas of all,
/// stopped members and maintenance.
pub fn clusters(v: &Value) -> String {
    let rows: Vec<Vec<String>> = list(&v["clusters"])
        .iter()
        .map(|c| {
            let primary = match &c["primary"] {
                Value::String(p) => s(&Value::String(p.clone())),
                _ if c["has_primary"] == Value::Bool(true) => "yes".into(),
                _ => "-".into(),
            };
            let replicas = if c["replicas"].is_null() {
                s(&c["nodes"])
            } else {
                format!("{}/{}", s(&c["healthy_replicas"]), s(&c["replicas"]))
            };
            let stopped = c["stopped"].as_u64().unwrap_or(0);
            vec![
                s(&c["namespace"]),
                s(&c["project"]),
                s(&c["cluster"]),
                primary,
                replicas,
                if stopped > 0 {
                    stopped.to_string()
                } else {
                    "-".into()
                },
                if c["maintenance"] == Value::Bool(true) {
                    "ON".into()
                } else {
                    "off".into()
                },
            ]
        })
        .collect();
    table(
        &[
            "NAMESPACE",
            "PROJECT",
            "CLUSTER",
            "PRIMARY",
            "REPLICAS",
            "STOPPED",
            "MAINTENANCE",
        ],
        &rows,
    )
}

/// Bytes for people: `512 B`, `4.0 KiB`, `12.3 MiB`, `1.2 GiB`.
pub fn human_bytes(b: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = b as f64;
    if b < 1024 {
        format!("{b} B")
    } else if f < KIB * KIB {
        format!("{:.1} KiB", f / KIB)
    } else if f < KIB * KIB * KIB {
        format!("{:.1} MiB", f / (KIB * KIB))
    } else {
        format!("{:.1} GiB", f / (KIB * KIB * KIB))
    }
}

/// The lag of a member: bytes (PostgreSQL), transactions (MariaDB), else `-`.
fn lag(m: &Value) -> String {
    if let Some(b) = m["lag_bytes"].as_u64() {
        human_bytes(b)
    } else if let Some(t) = m["lag_transactions"].as_u64() {
        format!("{t} tx")
    } else {
        "-".into()
    }
}

/// Seconds with one decimal, `-` when unknown.
fn seconds(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".into(), |x| format!("{x:.1}"))
}

/// `yes`, or `no: <reason>`.
fn eligible(m: &Value) -> String {
    if m["eligible"] == Value::Bool(true) {
        return "yes".into();
    }
    match m["ineligible"]["reason"].as_str() {
        Some(r) if !r.is_empty() => format!("no: {}", s(&Value::String(r.into()))),
        _ => "no".into(),
    }
}

/// The position cells of a member row.
type PositionCells = fn(&Value) -> Vec<String>;

/// The member table, its position columns in the engine's notation.
pub fn members(engine: Option<&str>, members: &[Value]) -> String {
    let (pos_headers, pos): (Vec<&str>, PositionCells) = match engine {
        Some("postgres") => (vec!["TL", "LSN"], |m| vec![s(&m["timeline"]), s(&m["lsn"])]),
        Some("mariadb") => (vec!["GTID"], |m| vec![s(&m["gtid"])]),
        _ => (vec!["POSITION"], |m| vec![s(&m["position"])]),
    };
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            let role = match m["role"].as_str() {
                Some("unknown") | None => "-".to_owned(),
                Some(r) => s(&Value::String(r.into())),
            };
            let state = s(&m["state"]).replace('_', " ");
            let mut row = vec![
                s(&m["id"]),
                s(&m["host"]),
                role,
                state,
                s(&m["sync"]),
                lag(m),
                seconds(&m["lag_seconds"]),
            ];
            row.extend(pos(m));
            row.push(eligible(m));
            row
        })
        .collect();
    let mut headers = vec!["NODE", "HOST", "ROLE", "STATE", "SYNC", "LAG", "LAG_S"];
    headers.extend(pos_headers);
    headers.push("ELIGIBLE");
    table(&headers, &rows)
}

/// What the nodes wait for, as header lines: a failover held by the cooldown or maintenance
/// once per kind, other waits per node.
fn waits(members: &[Value]) -> String {
    let mut out = String::new();
    let mut held = Vec::new();
    for m in members {
        let w = &m["waiting"];
        if w.is_null() {
            continue;
        }
        let kind = w["kind"].as_str().unwrap_or("unknown");
        let until = if w["until"].is_null() {
            String::new()
        } else {
            format!(" until {}", s(&w["until"]))
        };
        match kind {
            "cooldown" | "maintenance" => {
                if held.contains(&kind) {
                    continue;
                }
                held.push(kind);
                out += &format!(
                    "failover:    held by {kind}{until} ({}: {})\n",
                    s(&m["id"]),
                    s(&w["detail"])
                );
            }
            other => {
                out += &format!(
                    "waiting:     {} waits for {} since {}{until}: {}\n",
                    s(&m["id"]),
                    other.replace('_', " "),
                    s(&w["since"]),
                    s(&w["detail"])
                );
            }
        }
    }
    out
}

/// `GET …/{cluster}`: the header, then every member.
pub fn cluster(v: &Value) -> String {
    let mut out = format!(
        "cluster:     {}/{}/{}\n",
        s(&v["namespace"]),
        s(&v["project"]),
        s(&v["cluster"])
    );
    let engine = v["engine"].as_str();
    out += &format!("engine:      {}\n", s(&v["engine"]));
    let p = &v["primary"];
    out += &format!(
        "primary:     {}\n",
        if p.is_null() {
            "NONE".into()
        } else {
            format!(
                "{} ({}:{}, {})",
                s(&p["id"]),
                s(&p["ip_address"]),
                s(&p["port"]),
                s(&p["status"]),
            )
        }
    );
    if let Some(src) = v["initialized"]["standby_of"].as_str() {
        out += &format!(
            "migrating:   from {} (the primary is its standby leader, read-only; \
             `autopilotctl migrate cutover` ends it)\n",
            crate::ctl::output::terminal_safe(src)
        );
    }
    let m = &v["maintenance"];
    out += &format!(
        "maintenance: {}\n",
        if m["enabled"] == Value::Bool(true) {
            format!(
                "ON (by {} at {}: {})",
                s(&m["by"]),
                s(&m["time"]),
                s(&m["reason"])
            )
        } else {
            "off".into()
        }
    );
    let sw = &v["switchover"];
    if !sw.is_null() {
        let what = if sw["failover"] == Value::Bool(true) {
            "forced failover"
        } else {
            "switchover"
        };
        out += &format!(
            "switchover:  {what} pending to {} (by {} at {})\n",
            match &sw["candidate"] {
                Value::Null => "the best replica".into(),
                c => s(c),
            },
            s(&sw["requested_by"]),
            s(&sw["time"])
        );
    }
    let all = list(&v["members"]);
    out += &waits(&all);
    for r in list(&v["requests"]) {
        let to = match &r["restore_to"] {
            Value::Null => String::new(),
            p => format!(" to {}", restore_point(p)),
        };
        out += &format!(
            "request:     {} {} pending{to} (by {} at {})\n",
            s(&r["action"]),
            s(&r["node"]),
            s(&r["requested_by"]),
            s(&r["time"])
        );
    }
    let unreadable = list(&v["unreadable"]);
    if !unreadable.is_empty() {
        out += &format!(
            "unreadable:  {}\n",
            unreadable.iter().map(s).collect::<Vec<_>>().join(", ")
        );
    }
    out += &format!("revision:    {}\n\n", s(&v["revision"]));
    if v.get("members").is_none() {
        // An older coordinator: its live nodes only.
        return out + &super::output::nodes(&v["nodes"]);
    }
    if all.is_empty() {
        return out + "no member\n";
    }
    out + &members(engine, &all)
}

/// A position object as cells in the engine's notation: PostgreSQL timeline and LSN, else
/// one cell (`seq N` for MariaDB, `epoch/offset` for others).
fn position(v: &Value, engine: Option<&str>) -> Vec<String> {
    match (v["epoch"].as_u64(), v["offset"].as_u64(), engine) {
        (Some(epoch), Some(offset), Some("postgres")) => {
            vec![epoch.to_string(), Position { epoch, offset }.lsn()]
        }
        (Some(epoch), Some(offset), Some(e)) => vec![Position { epoch, offset }.notation(e)],
        (Some(epoch), Some(offset), None) => vec![Position { epoch, offset }.to_string()],
        _ if engine == Some("postgres") => vec!["-".into(), "-".into()],
        _ => vec!["-".into()],
    }
}

/// `GET …/history`: time, from, to, reason, position.
pub fn history(v: &Value) -> String {
    let engine = v["engine"].as_str();
    let rows: Vec<Vec<String>> = list(&v["entries"])
        .iter()
        .map(|e| {
            let mut row = vec![s(&e["time"]), s(&e["from"]), s(&e["to"]), s(&e["reason"])];
            row.extend(position(&e["position"], engine));
            row
        })
        .collect();
    let mut headers = vec!["TIME", "FROM", "TO", "REASON"];
    if engine == Some("postgres") {
        headers.extend(["TL", "LSN"]);
    } else {
        headers.push("POSITION");
    }
    table(&headers, &rows)
}

/// A time field, or `now` when the document has none.
fn time_or(v: &Value, now: &str) -> String {
    match v {
        Value::String(_) => s(v),
        _ => now.to_owned(),
    }
}

/// The node id in `nodes/<id>`.
fn key_id(key: &Value) -> String {
    let k = s(key);
    k.rsplit('/').next().unwrap_or("-").to_owned()
}

/// One SSE event as a line: time (the document's own, else when it was received), kind,
/// node, detail, and the revision to resume after (`--since`).
pub fn event(id: &str, kind: &str, data: &str) -> String {
    event_at(id, kind, data, &Timestamp::now().to_string())
}

/// A `restore_to` point (`"latest"` or `{"time": …}`) for people.
pub fn restore_point(p: &Value) -> String {
    match p {
        Value::String(l) if l == "latest" => "the end of the archive".into(),
        Value::Object(o) if o.contains_key("time") => s(&o["time"]),
        other => s(other),
    }
}

/// [`event`] with the time used when the document carries none.
pub fn event_at(id: &str, kind: &str, data: &str, now: &str) -> String {
    let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
    let doc = &v["doc"];
    let (time, what, node, detail): (String, String, String, String) = match kind {
        "event" => {
            let mut d = s(&doc["detail"]);
            if d.is_empty() || d == "-" {
                d = match (&doc["from"], &doc["to"]) {
                    (Value::Null, Value::Null) => "-".into(),
                    (f, t) => format!("{} -> {}", s(f), s(t)),
                };
            }
            (
                time_or(&doc["time"], now),
                s(&doc["kind"]),
                s(&doc["node"]),
                d,
            )
        }
        "primary" if doc.is_null() => (
            now.to_owned(),
            kind.into(),
            "-".into(),
            "primary key gone (no primary)".into(),
        ),
        "primary" => (
            time_or(&doc["last_updated"], now),
            kind.into(),
            s(&doc["id"]),
            "is the primary".into(),
        ),
        "node" if doc.is_null() => (
            now.to_owned(),
            kind.into(),
            key_id(&v["key"]),
            "left (its agent stopped or lost its lease)".into(),
        ),
        "node" => (
            time_or(&doc["last_updated"], now),
            kind.into(),
            s(&doc["id"]),
            format!(
                "{} {} {}{}{}",
                s(&doc["role"]),
                s(&doc["status"]),
                s(&doc["health"]),
                if doc["fenced"] == Value::Bool(true) {
                    " fenced"
                } else {
                    ""
                },
                if doc["eligible"] == Value::Bool(false) {
                    match doc["ineligible"]["reason"].as_str() {
                        Some(r) => format!(", not eligible: {}", s(&Value::String(r.into()))),
                        None => ", not eligible".into(),
                    }
                } else {
                    String::new()
                }
            ),
        ),
        "maintenance" if doc.is_null() => (
            now.to_owned(),
            kind.into(),
            "-".into(),
            "maintenance off (key deleted)".into(),
        ),
        "maintenance" => (
            time_or(&doc["time"], now),
            kind.into(),
            "-".into(),
            if doc["enabled"] == Value::Bool(true) {
                format!("maintenance on by {}: {}", s(&doc["by"]), s(&doc["reason"]))
            } else {
                format!("maintenance off by {}", s(&doc["by"]))
            },
        ),
        "switchover" if doc.is_null() => (
            now.to_owned(),
            kind.into(),
            "-".into(),
            "switchover request consumed".into(),
        ),
        "switchover" => (
            time_or(&doc["time"], now),
            kind.into(),
            s(&doc["candidate"]),
            format!(
                "{} requested to {} by {}",
                if doc["failover"] == Value::Bool(true) {
                    "failover"
                } else {
                    "switchover"
                },
                match &doc["candidate"] {
                    Value::Null => "the best replica".into(),
                    c => s(c),
                },
                s(&doc["requested_by"])
            ),
        ),
        "request" if doc.is_null() => (
            now.to_owned(),
            kind.into(),
            key_id(&v["key"]),
            "no longer pending (carried out, or its member removed)".into(),
        ),
        "request" => (
            time_or(&doc["time"], now),
            kind.into(),
            key_id(&v["key"]),
            format!(
                "{} requested by {}",
                s(&doc["action"]),
                s(&doc["requested_by"])
            ),
        ),
        "member" if doc.is_null() => (
            now.to_owned(),
            kind.into(),
            key_id(&v["key"]),
            "removed from the members".into(),
        ),
        "member" => (
            time_or(&doc["started"], now),
            kind.into(),
            key_id(&v["key"]),
            format!(
                "agent started at {}:{}",
                s(&doc["ip_address"]),
                s(&doc["port"])
            ),
        ),
        "history" => (
            time_or(&doc["time"], now),
            kind.into(),
            s(&doc["to"]),
            format!(
                "history: {} -> {} ({})",
                s(&doc["from"]),
                s(&doc["to"]),
                s(&doc["reason"])
            ),
        ),
        "error" => (
            now.to_owned(),
            kind.into(),
            "-".into(),
            format!("error: {} [{}]", s(&v["detail"]), s(&v["code"])),
        ),
        other => (
            now.to_owned(),
            super::output::escape(other, false),
            "-".into(),
            super::output::escape(data, false),
        ),
    };
    let rev = if id.is_empty() {
        String::new()
    } else {
        format!("  (rev {})", super::output::escape(id, false))
    };
    format!("{time}  {what:<19}  {node:<8}  {detail}{rev}\n")
}

#[cfg(test)]
mod tests;
