//! Schemathesis against the running coordinator (issue 13): every answer it provokes must be
//! declared in `/v1/openapi.json` (status codes, `application/problem+json` bodies, schemas,
//! headers), no request may cause a 5xx, and authentication must answer 401. Bounded: a fixed
//! seed, 20 examples per operation and a 3 s request timeout (event streams never end), about
//! half a minute.
//!
//! The per-address failure budget and the per-token rate limit are off here (they would
//! answer 429 where the contract check expects 401); they have their own tests in
//! `coordinator_abuse.rs`. `positive_data_acceptance` is left out: the document does not spell
//! out every input rule (name characters, lengths), so schema-valid inputs can get 400.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use e2e::harness::coordinator::ADMIN_TOKEN;

/// Where `scripts/install-deps` installs Schemathesis.
const ST: &str = "/opt/schemathesis/bin/st";

#[test]
fn schemathesis_finds_no_undeclared_answer_and_no_server_error() {
    assert!(
        Path::new(ST).exists(),
        "{ST} is missing: run scripts/install-deps (Schemathesis 4.32.5 in /opt/schemathesis)"
    );
    let w = world(&["--client-failure-rate", "0", "--rate-limit", "0"]);
    // Schemathesis keeps a cache in its working directory: not in the source tree.
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let out = Command::new(ST)
        .current_dir(scratch.path())
        .args(["run", &format!("{}/v1/openapi.json", w.coord.url())])
        .args(["-H", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
        .args(["--max-examples", "20", "--seed", "1", "--workers", "1"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--request-timeout", "3"])
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{text}\ncoordinator log:\n{}",
        w.coord.log()
    );
}
