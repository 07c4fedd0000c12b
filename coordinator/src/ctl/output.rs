//! Human output of `autopilotctl`: aligned tables from the API's JSON. `-o json` bypasses
//! this and prints the API's answer as it is.

use serde_json::Value;

/// Prints rows under headers, columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// A field as text: strings bare, null as `-`, others as JSON; control characters (a
/// newline too: one field never spans lines) escaped, so no value can drive the terminal.
pub fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => escape(s, false),
        other => escape(&other.to_string(), false),
    }
}

/// Whether `c` must not reach a terminal as it is: control characters (escape sequences,
/// carriage returns, bells) and the bidirectional overrides that reorder what is shown.
fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every unsafe character written as `\u{…}`; newlines kept when `lines`.
pub fn escape(text: &str, lines: bool) -> String {
    if !text.chars().any(unsafe_char) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if unsafe_char(c) && !(lines && c == '\n') {
                format!("\\u{{{:x}}}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Rendered output made safe for a terminal: only newlines pass as control characters.
pub fn terminal_safe(text: &str) -> String {
    escape(text, true)
}

/// `epoch/offset` of a position object.
pub fn pos(v: &Value) -> String {
    format!("{}/{}", s(&v["epoch"]), s(&v["offset"]))
}

/// A JSON array's elements (none when it is not an array).
pub fn list(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// Node documents.
pub fn nodes(v: &Value) -> String {
    let rows: Vec<Vec<String>> = list(v)
        .iter()
        .map(|n| {
            let mut role = s(&n["role"]);
            if n["fenced"] == Value::Bool(true) {
                role.push_str(" (fenced)");
            }
            vec![
                s(&n["id"]),
                role,
                s(&n["status"]),
                s(&n["health"]),
                format!("{}:{}", s(&n["ip_address"]), s(&n["port"])),
                pos(&n["replication"]["position"]),
                s(&n["replication"]["lag_seconds"]),
                match (&n["eligible"], n["ineligible"]["reason"].as_str()) {
                    (Value::Bool(true), _) => "yes".into(),
                    (_, Some(r)) => format!("no: {}", s(&Value::String(r.into()))),
                    _ => "no".into(),
                },
            ]
        })
        .collect();
    table(
        &[
            "NODE", "ROLE", "STATUS", "HEALTH", "ADDRESS", "POSITION", "LAG_S", "ELIGIBLE",
        ],
        &rows,
    )
}

/// Tokens (`GET /v1/tokens`).
pub fn tokens(v: &Value) -> String {
    let rows: Vec<Vec<String>> = list(&v["tokens"]).iter().map(token_row).collect();
    table(&["ID", "NAME", "ROLE", "SCOPE", "STATUS", "EXPIRES"], &rows)
}

fn token_row(t: &Value) -> Vec<String> {
    let scope = if t["cluster"].is_null() {
        list(&t["namespaces"])
            .iter()
            .map(s)
            .collect::<Vec<_>>()
            .join(",")
    } else {
        format!(
            "{}/{}/{}",
            s(&t["cluster"]["namespace"]),
            s(&t["cluster"]["project"]),
            s(&t["cluster"]["cluster"])
        )
    };
    vec![
        s(&t["id"]),
        s(&t["name"]),
        s(&t["role"]),
        scope,
        s(&t["status"]),
        s(&t["expires_at"]),
    ]
}

/// A single token.
pub fn token(t: &Value) -> String {
    table(
        &["ID", "NAME", "ROLE", "SCOPE", "STATUS", "EXPIRES"],
        &[token_row(t)],
    )
}

/// `GET /v1/audit`.
pub fn audit(v: &Value) -> String {
    let rows: Vec<Vec<String>> = list(&v["records"])
        .iter()
        .map(|r| {
            vec![
                s(&r["time"]),
                s(&r["token_id"]),
                s(&r["role"]),
                s(&r["action"]),
                s(&r["target"]),
                format!("{} {}", s(&r["outcome"]), s(&r["status"])),
                s(&r["code"]),
                s(&r["client"]),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "TIME", "TOKEN", "ROLE", "ACTION", "TARGET", "OUTCOME", "CODE", "CLIENT",
        ],
        &rows,
    );
    if !v["next_before"].is_null() {
        out += &format!("(more: --before {})\n", s(&v["next_before"]));
    }
    out
}

/// `GET /v1/packages`: a table, security updates marked, the nodes whose check failed said
/// below it.
pub fn packages(v: &Value) -> String {
    let all = list(&v["packages"]);
    if all.is_empty() {
        return "no node reports a package update\n".to_owned();
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|r| {
            let update = match (r["update_available"].as_bool(), r["security"].as_bool()) {
                (Some(true), Some(true)) => "security",
                (Some(true), _) => "yes",
                _ => "no",
            };
            vec![
                s(&r["cluster"]),
                s(&r["node"]),
                s(&r["package"]),
                r["installed"].as_str().unwrap_or("(none)").to_owned(),
                r["candidate"].as_str().unwrap_or("(none)").to_owned(),
                update.to_owned(),
                s(&r["since"]),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "CLUSTER",
            "NODE",
            "PACKAGE",
            "INSTALLED",
            "CANDIDATE",
            "UPDATE",
            "SINCE",
        ],
        &rows,
    );
    let mut failed: Vec<String> = all
        .iter()
        .filter(|r| r["error"].is_string())
        .map(|r| format!("{} {}: {}", s(&r["cluster"]), s(&r["node"]), s(&r["error"])))
        .collect();
    failed.dedup();
    for f in failed {
        out += &format!("check failed on {f}\n");
    }
    out
}

/// Columns a query gets without a known terminal width (`COLUMNS`).
pub const QUERY_CHARS: usize = 80;

/// Fewest columns a query gets on a narrow terminal.
const MIN_QUERY_CHARS: usize = 20;

/// `GET …/statements`, fitted to the terminal's `COLUMNS` when set.
pub fn top(v: &Value) -> String {
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&w| w > 0);
    top_fit(v, width)
}

/// `text` on one line (every run of whitespace one space), cut to `max` characters with `…`.
pub fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A number of seconds with `decimals`, `-` when absent.
fn num(v: &Value, scale: f64, decimals: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |x| format!("{:.decimals$}", x * scale))
}

/// [`top`] for a terminal `width` columns wide (`None`: queries cut to [`QUERY_CHARS`]):
/// per node a title line, then its statements or its error.
pub fn top_fit(v: &Value, width: Option<usize>) -> String {
    const HEADERS: [&str; 7] = [
        "RANK", "CALLS", "TOTAL_S", "MEAN_MS", "ROWS", "DATABASE", "QUERY",
    ];
    let mut out = String::new();
    let nodes = list(&v["nodes"]);
    if nodes.is_empty() {
        return "no live node in this cluster\n".into();
    }
    for (i, n) in nodes.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out += &format!(
            "{} ({})  {}",
            s(&n["node"]),
            s(&n["role"]),
            s(&n["agent_url"])
        );
        if !n["time"].is_null() {
            out += &format!("  at {}", s(&n["time"]));
        }
        out.push('\n');
        if !n["error"].is_null() {
            out += &format!(
                "  error: {} [{}]\n",
                s(&n["error"]["message"]),
                s(&n["error"]["code"])
            );
            continue;
        }
        let stmts = list(&n["statements"]);
        if stmts.is_empty() {
            out += "  (no statements recorded yet)\n";
            continue;
        }
        let mut rows: Vec<Vec<String>> = stmts
            .iter()
            .map(|st| {
                vec![
                    s(&st["rank"]),
                    s(&st["calls"]),
                    num(&st["total_seconds"], 1.0, 3),
                    num(&st["mean_seconds"], 1000.0, 2),
                    s(&st["rows"]),
                    s(&st["database"]),
                    st["query"].as_str().unwrap_or("").to_owned(),
                ]
            })
            .collect();
        // Every column but the query, padded as `table` pads them (two spaces between).
        let before: usize = (0..HEADERS.len() - 1)
            .map(|c| {
                rows.iter()
                    .map(|r| r[c].chars().count())
                    .chain([HEADERS[c].len()])
                    .max()
                    .unwrap_or(0)
                    + 2
            })
            .sum();
        let room = width.map_or(QUERY_CHARS, |w| {
            w.saturating_sub(before).max(MIN_QUERY_CHARS)
        });
        for r in &mut rows {
            let flat = r[6].split_whitespace().collect::<Vec<_>>().join(" ");
            r[6] = one_line(&escape(&flat, false), room);
        }
        out += &table(&HEADERS, &rows);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let reason = Value::String("ok\u{1b}]0;pwned\u{7}\u{1b}[2J\r\nnext\u{202e}".into());
        let shown = s(&reason);
        assert!(!shown.chars().any(unsafe_char), "{shown:?}");
        assert!(
            shown.contains("\\u{1b}") && shown.contains("\\u{a}"),
            "{shown}"
        );
        assert_eq!(terminal_safe("a\nb\u{1b}"), "a\nb\\u{1b}");
        assert_eq!(s(&Value::String("plain".into())), "plain");
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }

    fn statements() -> Value {
        serde_json::json!({
            "namespace": "e2e", "project": "pg", "cluster": "main", "limit": 5,
            "nodes": [
                {"node": "node-1", "role": "primary", "agent_url": "http://127.0.0.1:9187",
                 "time": "2026-01-01T00:00:00.000Z", "error": null,
                 "statements": [
                    {"rank": 1, "id": "7", "query": "SELECT pg_sleep($1),\n       $2",
                     "database": "postgres", "calls": 50, "total_seconds": 0.6123,
                     "mean_seconds": 0.012246, "rows": 50},
                    {"rank": 2, "id": "8", "query": format!("SELECT {}", "x, ".repeat(60)),
                     "database": null, "calls": 1, "total_seconds": 0.001,
                     "mean_seconds": 0.001, "rows": 0}]},
                {"node": "node-2", "role": "replica", "agent_url": "http://127.0.0.1:9188",
                 "time": null, "statements": null,
                 "error": {"code": "agent_timeout", "message": "the agent at http://127.0.0.1:9188 did not answer within 3s"}},
                {"node": "node-3", "role": "replica", "agent_url": null, "time": null,
                 "statements": null, "error": {"code": "no_agent_url", "message": "no \u{1b}[2J url"}}
            ]
        })
    }

    #[test]
    fn top_shows_each_node_its_statements_or_why_not() {
        let out = top_fit(&statements(), None);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "node-1 (primary)  http://127.0.0.1:9187  at 2026-01-01T00:00:00.000Z"
        );
        assert!(lines[1].starts_with("RANK  CALLS  TOTAL_S  MEAN_MS  ROWS  DATABASE  QUERY"));
        assert_eq!(
            lines[2],
            "1     50     0.612    12.25    50    postgres  SELECT pg_sleep($1), $2"
        );
        let at = lines[1].find("QUERY").expect("the query column");
        let long = &lines[3][at..];
        assert!(
            long.ends_with('…') && long.chars().count() == QUERY_CHARS,
            "{long}"
        );
        assert!(
            lines[3].contains(" -  "),
            "no database shows as -: {}",
            lines[3]
        );
        assert!(
            out.contains(
                "node-2 (replica)  http://127.0.0.1:9188\n  error: the agent at \
             http://127.0.0.1:9188 did not answer within 3s [agent_timeout]\n"
            ),
            "{out}"
        );
        assert!(out.contains("node-3 (replica)  -\n"), "{out}");
        assert!(!out.contains('\u{1b}'), "{out}");
    }

    #[test]
    fn top_fits_queries_to_the_terminal() {
        let out = top_fit(&statements(), Some(100));
        assert!(out.lines().all(|l| l.chars().count() <= 100), "{out}");
        let narrow = top_fit(&statements(), Some(10));
        let at = narrow
            .lines()
            .nth(1)
            .and_then(|h| h.find("QUERY"))
            .expect("header");
        let q = &narrow.lines().nth(3).expect("row")[at..];
        assert_eq!(q.chars().count(), MIN_QUERY_CHARS, "{narrow}");
        assert_eq!(
            top_fit(&serde_json::json!({"nodes": []}), None),
            "no live node in this cluster\n"
        );
        assert_eq!(one_line(" a\n\t b ", 10), "a b");
        assert_eq!(one_line("abcdef", 4), "abc…");
    }
}
