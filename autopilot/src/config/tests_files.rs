//! Every agent config under `examples/` and every YAML block in `docs/configuration.md`
//! parses.

use std::path::{Path, PathBuf};

use super::load;
use super::tests::{FILE, P, ok, parse_at, problems};
use super::tests_roles::HOOKS;

/// Every `examples/**/agent*.yaml` parses. Secrets they name must exist next to them.
#[test]
fn every_example_agent_config_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let examples = root.join("examples");
    assert!(examples.is_dir(), "{} is missing", examples.display());
    let mut files = Vec::new();
    collect_agent_yaml(&examples, &mut files);
    let mut failures = Vec::new();
    for file in &files {
        if let Err(e) = load(file) {
            failures.push(e.to_string());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn collect_agent_yaml(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_agent_yaml(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml")
            && path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("agent"))
        {
            out.push(path);
        }
    }
}

/// The `tls` section of the docs' TLS snippet; its files do not exist here, so it is dropped
/// (`https://` endpoints alone are valid) and tested in `tests_tls.rs`.
const DOCS_TLS: &str = "    tls:\n      ca_file: /etc/autopilot/etcd-ca.pem\n      cert_file: /etc/autopilot/etcd-client.pem\n      key_file: /etc/autopilot/etcd-client-key.pem\n";

/// The YAML blocks in `docs/configuration.md` stay true to the code.
#[test]
fn docs_examples_match_the_code() {
    let docs_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let docs = std::fs::read_to_string(&docs_path).expect("docs/configuration.md exists");
    let blocks: Vec<&str> = docs
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(yaml, _)| yaml))
        .collect();
    assert!(blocks.len() >= 5, "yaml blocks in the docs");

    // The effective YAML shown for the minimal config is what the code prints.
    let effective = ok(P).to_effective_yaml();
    assert!(
        blocks.contains(&effective.as_str()),
        "docs show a stale effective config:\n{effective}"
    );

    // The complete example is valid except for secrets that do not exist on this machine.
    let complete = blocks.last().expect("complete example");
    let found = problems(complete);
    for p in &found {
        assert!(
            p.message.contains("secret"),
            "unexpected problem in the docs example: {p:?}"
        );
    }
    assert_eq!(found.len(), 3, "{found:#?}");

    // Every section snippet is valid on top of a minimal process section.
    for block in &blocks[..blocks.len() - 1] {
        // The mariadb snippet needs its secret files; tests_mariadb.rs checks the same shape.
        // So does the migrate_from snippet (a database engine and a password file):
        // tests_backup.rs checks its shape.
        if block.starts_with("env:")
            || block.starts_with("node:\n  name: test-host")
            || block.contains("kind: mariadb")
            || block.contains("migrate_from:")
        {
            continue;
        }
        // The listener's TLS files do not exist here either (and are parsed at load time):
        // the snippet's `tls` section is dropped and tested in `tests_listener_tls.rs`.
        let block = match block.split_once("  tls:\n    cert: /etc/autopilot/agent.pem") {
            Some((before, _)) if block.starts_with("telemetry:") => before,
            _ => *block,
        };
        let needs_process = !block.contains("process:");
        let doc = if needs_process {
            format!("{block}{P}")
        } else {
            (*block).to_owned()
        };
        let doc = if doc.contains("store:") {
            let engine = if doc.contains("engine:") {
                String::new()
            } else {
                format!("engine:\n  port: 6379\n{HOOKS}")
            };
            format!("{doc}cluster: {{namespace: a, project: b, name: c}}\nnode: {{address: h}}\n{engine}")
                .replace("    password_file: /etc/autopilot/etcd.pass\n", "")
                .replace(DOCS_TLS, "")
        } else {
            doc
        };
        if let Err(e) = parse_at(Path::new(FILE), &doc) {
            panic!("docs snippet does not parse:\n{e}\n---\n{doc}");
        }
    }
}
