//! `autopilot check-config`: every problem a configuration file has, each with its line,
//! column and what was expected, or a one-line summary of what the file configures.
//!
//! Validation collects every problem in one pass, but the YAML and type stage (serde) stops
//! at its first error. To report more than that one, a key the parser rejects (an unknown
//! field, a value of the wrong type) is blanked out of a copy of the text, lines kept, and
//! the copy is parsed again. Problems that the blanking itself could have caused (about the
//! blanked key, its parents or children) are not reported; when one appears the search stops.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::{self, Config, ConfigError, EngineConfig, Problem};

/// How many rejected keys are blanked out before giving up on finding more.
const MAX_ROUNDS: usize = 100;

/// What checking one file found.
#[derive(Debug)]
pub struct Report {
    /// The file as named on the command line.
    pub file: PathBuf,
    /// What it configures, or every problem found (never empty).
    pub result: Result<Summary, Vec<Problem>>,
}

/// What a valid file configures, for the one-line summary.
#[derive(Debug)]
pub struct Summary {
    /// `process`, `mariadb` or `postgres`.
    pub engine: &'static str,
    /// The node's name.
    pub node: String,
    /// `namespace/project/name`, or `None` for a standalone agent.
    pub cluster: Option<String>,
    /// The validated configuration (for `--effective`).
    pub config: Box<Config>,
}

impl Report {
    /// Whether the file is a valid configuration.
    pub fn ok(&self) -> bool {
        self.result.is_ok()
    }

    /// The text form: `FILE: OK (…)` or one `FILE:LINE:COL: FIELD: MESSAGE` line per problem
    /// and a count.
    pub fn text(&self) -> String {
        let file = self.file.display();
        match &self.result {
            Ok(s) => format!(
                "{file}: OK (engine {}, node {}, {})\n",
                s.engine,
                s.node,
                s.cluster
                    .as_deref()
                    .map_or_else(|| "standalone".to_owned(), |c| format!("cluster {c}"))
            ),
            Err(problems) => {
                let mut out = String::new();
                for p in problems {
                    let sep = if p.line.is_some() { ":" } else { ": " };
                    let _ = writeln!(out, "{file}{sep}{p}");
                }
                let n = problems.len();
                let _ = writeln!(out, "{file}: {n} error{}", if n == 1 { "" } else { "s" });
                out
            }
        }
    }

    /// The JSON form: `{"file", "ok", "errors": [{"line", "column", "field", "message"}]}`,
    /// plus `engine`, `node` and `cluster` when valid.
    pub fn json(&self) -> serde_json::Value {
        let mut doc = serde_json::json!({
            "file": self.file.display().to_string(),
            "ok": self.ok(),
            "errors": [],
        });
        match &self.result {
            Ok(s) => {
                doc["engine"] = s.engine.into();
                doc["node"] = s.node.clone().into();
                doc["cluster"] = s.cluster.clone().into();
            }
            Err(problems) => {
                doc["errors"] = problems
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "line": p.line,
                            "column": p.column,
                            "field": p.field,
                            "message": if p.field.is_empty() {
                                p.message.clone()
                            } else {
                                format!("{}: {}", p.field, p.message)
                            },
                        })
                    })
                    .collect();
            }
        }
        doc
    }
}

/// Check the file at `path`.
pub fn check(path: &Path) -> Report {
    let result = match std::fs::read_to_string(path) {
        Ok(text) => check_text(path, &text),
        Err(e) => Err(vec![Problem {
            line: None,
            column: None,
            field: String::new(),
            message: format!("cannot read the file: {e}"),
        }]),
    };
    Report {
        file: path.to_path_buf(),
        result,
    }
}

/// Check `text` as read from `path`.
fn check_text(path: &Path, text: &str) -> Result<Summary, Vec<Problem>> {
    let mut text = text.to_owned();
    let mut found: Vec<Problem> = Vec::new();
    // Dotted paths of the keys blanked out so far.
    let mut blanked: Vec<String> = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let problems = match config::parse(path, &text) {
            Ok(config) if found.is_empty() => return Ok(summary(config)),
            Ok(_) => break,
            Err(ConfigError::Invalid { problems, .. }) => problems,
            Err(e) => {
                found.push(Problem {
                    line: None,
                    column: None,
                    field: String::new(),
                    message: handlers::error_chain(&e),
                });
                break;
            }
        };
        let (ours, theirs): (Vec<Problem>, Vec<Problem>) = problems
            .into_iter()
            .partition(|p| blanked.iter().any(|b| related(&problem_path(p), b)));
        let stage_one = theirs.len() == 1 && ours.is_empty();
        found.extend(theirs.iter().cloned());
        if !ours.is_empty() || !stage_one {
            break;
        }
        // One problem: the parser's first (or validation's only one). Blank its key and
        // look again.
        let p = &theirs[0];
        match blank_key(&text, p).or_else(|| blank_flow_entry(&text, p)) {
            Some(next) => {
                text = next;
                blanked.push(problem_path(p));
            }
            None => break,
        }
    }
    found.sort_by_key(|p| (p.line.unwrap_or(usize::MAX), p.column.unwrap_or(0)));
    found.dedup();
    Err(found)
}

/// The summary of a valid configuration.
fn summary(config: Config) -> Summary {
    let engine = match config.engine {
        EngineConfig::Process { .. } => "process",
        EngineConfig::Mariadb { .. } => "mariadb",
        EngineConfig::Postgres { .. } => "postgres",
    };
    Summary {
        engine,
        node: config.node.name.clone(),
        cluster: config
            .cluster
            .as_ref()
            .map(|c| format!("{}/{}/{}", c.namespace, c.project, c.name)),
        config: Box::new(config),
    }
}

/// The dotted path a problem is about, its missing field included (`a.b` + "missing field
/// `c`" is `a.b.c`).
fn problem_path(p: &Problem) -> String {
    let missing = p
        .message
        .strip_prefix("missing field `")
        .and_then(|m| m.split_once('`'))
        .map(|(name, _)| name);
    match missing {
        Some(name) if p.field.is_empty() => name.to_owned(),
        Some(name) => format!("{}.{name}", p.field),
        None => p.field.clone(),
    }
}

/// Whether one path is the other or lies inside it (`a.b` and `a.b.c`, `a` and `a[0]`; the
/// root, `""`, is related to everything).
fn related(a: &str, b: &str) -> bool {
    let inside = |inner: &str, outer: &str| {
        outer.is_empty()
            || inner == outer
            || inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    };
    inside(a, b) || inside(b, a)
}

/// `text` with the block-style key `p` is about blanked out (its line and the lines of its
/// value, newlines kept so later lines keep their numbers); `None` when the key cannot be
/// found as a block-style `name:` line at or above the problem's line.
fn blank_key(text: &str, p: &Problem) -> Option<String> {
    let line = p.line?;
    let name = p.field.rsplit('.').next()?;
    let name = name.split('[').next()?;
    if name.is_empty() {
        return None;
    }
    let lines: Vec<&str> = text.split('\n').collect();
    let at = line.checked_sub(1)?;
    if at >= lines.len() {
        return None;
    }
    // The key's own line: the problem's line, or (for a value on the lines below its key)
    // the line of the mapping or sequence that holds it.
    let key = if is_key_line(lines[at], name) {
        Some(at)
    } else {
        let indent = indentation(lines[at]);
        let item = lines[at].trim_start().starts_with("- ");
        (0..at)
            .rev()
            .find(|&i| {
                let l = lines[i];
                let (ind, blank) = (indentation(l), l.trim().is_empty());
                !blank
                    && !l.trim_start().starts_with('#')
                    && (ind < indent
                        || (ind == indent && item && !l.trim_start().starts_with("- ")))
            })
            .filter(|&i| is_key_line(lines[i], name))
    };
    let key = key?;
    let indent = indentation(lines[key]);
    let mut end = key + 1;
    while end < lines.len() {
        let l = lines[end];
        let blank = l.trim().is_empty() || l.trim_start().starts_with('#');
        let inner = indentation(l) > indent
            || (indentation(l) == indent && l.trim_start().starts_with("- "));
        if !(blank || inner) {
            break;
        }
        end += 1;
    }
    let mut out: Vec<&str> = lines.clone();
    for l in &mut out[key..end] {
        *l = "";
    }
    Some(out.join("\n"))
}

/// `text` with the flow-mapping entry `p` is about (`{ …, name: value, … }` on the problem's
/// line) replaced by spaces, its comma included, so every other column stays where it was;
/// `None` when there is no such entry on that line or it does not end there.
fn blank_flow_entry(text: &str, p: &Problem) -> Option<String> {
    let (line, column) = (p.line?, p.column?);
    let name = p.field.rsplit('.').next()?.split('[').next()?;
    if name.is_empty() {
        return None;
    }
    let lines: Vec<&str> = text.split('\n').collect();
    let chars: Vec<char> = lines.get(line.checked_sub(1)?)?.chars().collect();
    // The entry's key: the last `name:` starting at or before the problem's column, after
    // a `{` or `,`.
    let key = (0..chars.len().min(column)).rev().find(|&i| {
        let after = chars[i..].iter().collect::<String>();
        let before = chars[..i].iter().rev().find(|c| !c.is_whitespace());
        after.starts_with(name)
            && after[name.len()..].trim_start().starts_with(':')
            && matches!(before, Some('{' | ','))
    })?;
    // Its end: the `,` or `}` that closes it at depth 0, outside quotes.
    let (mut depth, mut quote, mut end) = (0usize, None::<char>, None);
    for (i, &c) in chars.iter().enumerate().skip(key) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') if depth > 0 => depth -= 1,
            (None, '}') => {
                end = Some((i, false));
                break;
            }
            (None, ',') if depth == 0 => {
                end = Some((i + 1, true));
                break;
            }
            _ => {}
        }
    }
    let (end, took_comma) = end?;
    let mut start = key;
    if !took_comma {
        // The last entry: its comma is the one before it, if any.
        if let Some(i) = (0..key).rev().find(|&i| !chars[i].is_whitespace())
            && chars[i] == ','
        {
            start = i;
        }
    }
    let mut blanked = chars;
    for c in &mut blanked[start..end] {
        *c = ' ';
    }
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    out[line - 1] = blanked.into_iter().collect();
    Some(out.join("\n"))
}

/// Leading spaces of a line.
fn indentation(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Whether `line` is `name:` as a block mapping key (not inside a flow collection, not a
/// sequence item's first key).
fn is_key_line(line: &str, name: &str) -> bool {
    let rest = line.trim_start_matches(' ');
    let rest = rest
        .strip_prefix(name)
        .or_else(|| {
            rest.strip_prefix('"')
                .and_then(|r| r.strip_prefix(name))
                .and_then(|r| r.strip_prefix('"'))
        })
        .or_else(|| {
            rest.strip_prefix('\'')
                .and_then(|r| r.strip_prefix(name))
                .and_then(|r| r.strip_prefix('\''))
        });
    rest.is_some_and(|r| {
        let r = r.trim_start_matches(' ');
        r.starts_with(':') && (r.len() == 1 || r[1..].starts_with([' ', '\t', '\r']))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(line: usize, field: &str) -> Problem {
        Problem {
            line: Some(line),
            column: Some(1),
            field: field.into(),
            message: "x".into(),
        }
    }

    #[test]
    fn blanking_keeps_line_numbers_and_removes_the_value_block() {
        let text = "a:\n  b: 1\n  bad:\n    - x\n    - y\n  c: 2\nd: 3\n";
        let out = blank_key(text, &problem(3, "a.bad")).expect("blanked");
        assert_eq!(out, "a:\n  b: 1\n\n\n\n  c: 2\nd: 3\n");
        // The value's line names the problem: the key above it is blanked.
        let out = blank_key(text, &problem(4, "a.bad")).expect("blanked");
        assert_eq!(out, "a:\n  b: 1\n\n\n\n  c: 2\nd: 3\n");
    }

    #[test]
    fn flow_style_and_sequence_items_are_left_alone() {
        let text = "h: { exec: [x], bad: 1 }\n";
        assert_eq!(blank_key(text, &problem(1, "h.bad")), None);
        let text = "jobs:\n  - bad: 1\n    name: x\n";
        assert_eq!(blank_key(text, &problem(2, "jobs[0].bad")), None);
    }

    #[test]
    fn flow_entries_are_blanked_in_place() {
        let text = "h: { exec: [x, \"a,b\"], bad: { y: 1 }, t: 2 }\nx: 1\n";
        let p = Problem {
            line: Some(1),
            column: Some(24),
            field: "h.bad".into(),
            message: "x".into(),
        };
        assert_eq!(
            blank_flow_entry(text, &p).expect("blanked"),
            "h: { exec: [x, \"a,b\"],                t: 2 }\nx: 1\n"
        );
        // The last entry takes the comma before it; the value's column finds its key.
        let p = Problem {
            column: Some(42),
            field: "h.t".into(),
            ..p
        };
        assert_eq!(
            blank_flow_entry(text, &p).expect("blanked"),
            "h: { exec: [x, \"a,b\"], bad: { y: 1 }       }\nx: 1\n"
        );
    }

    #[test]
    fn related_paths() {
        assert!(related("a.b", "a.b"));
        assert!(related("a.b.c", "a.b"));
        assert!(related("a", "a[0].x"));
        assert!(related("", "a"));
        assert!(!related("a.bc", "a.b"));
        assert!(!related("x.b", "a.b"));
    }
}
