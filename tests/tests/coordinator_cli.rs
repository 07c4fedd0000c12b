//! `autopilotctl` against a real coordinator and etcd: output formats, token handling, config
//! file, and the documented exit codes.

use std::time::Duration;

use e2e::harness::coordinator::{ADMIN_TOKEN, Coordinator, TOKEN_CACHE, ctl, seed_node};
use e2e::harness::etcd::EtcdServer;
use e2e::harness::util::poll_until;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

#[test]
fn autopilotctl_commands_outputs_and_exit_codes() {
    let etcd = EtcdServer::start().expect("etcd");
    seed_node(&etcd, "a/p/c1", "n1", true, 10);
    seed_node(&etcd, "a/p/c1", "n2", false, 10);
    seed_node(&etcd, "a/p/c1", "n3", false, 4);
    let coord = Coordinator::start(&etcd.endpoint(), &["--rate-limit", "0"]).expect("start");
    let url = coord.url().to_owned();
    let admin = [
        ("AUTOPILOT_URL", url.as_str()),
        ("AUTOPILOT_TOKEN", ADMIN_TOKEN),
    ];

    let (code, out, err) = ctl(&["list"], &admin, T);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("NAMESPACE") && out.contains("a ") && out.contains("c1"),
        "{out}"
    );
    let (code, out, _) = ctl(&["-o", "json", "show", "a/p/c1"], &admin, T);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("json output");
    assert_eq!(v["primary"]["id"], "n1");
    let (code, out, _) = ctl(&["nodes", "a/p/c1"], &admin, T);
    assert_eq!(code, 0);
    assert!(out.contains("n3") && out.contains("1/4"), "{out}");
    assert_eq!(ctl(&["history", "a/p/c1"], &admin, T).0, 0);

    // Tokens: create (printed once), use it from a token file via the config file, revoke.
    let (code, out, err) = ctl(
        &[
            "-o",
            "json",
            "token",
            "create",
            "--name",
            "ops",
            "--role",
            "operator",
            "--namespace",
            "a",
            "--expires-in",
            "1h",
        ],
        &admin,
        T,
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    let tok = v["token"].as_str().expect("token").to_owned();
    let id = v["info"]["id"].as_str().expect("id").to_owned();
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("token"), format!("{tok}\n")).expect("write");
    std::fs::write(
        dir.path().join("ctl.yaml"),
        format!(
            "url: {url}\ntoken_file: {}\n",
            dir.path().join("token").display()
        ),
    )
    .expect("write");
    let cfg = dir.path().join("ctl.yaml").to_string_lossy().into_owned();
    let (code, out, err) = ctl(
        &["--config", &cfg, "pause", "a/p/c1", "--reason", "upgrade"],
        &[],
        T,
    );
    assert_eq!(code, 0, "{out}{err}");
    let (_, out, _) = ctl(&["show", "a/p/c1"], &admin, T);
    assert!(out.contains("maintenance: ON"), "{out}");
    let (code, _, err) = ctl(&["--config", &cfg, "switchover", "a/p/c1"], &[], T);
    assert_eq!(code, 5, "maintenance refuses a switchover: {err}");
    assert!(
        err.contains("maintenance_enabled") && err.contains("resume"),
        "{err}"
    );
    assert_eq!(ctl(&["--config", &cfg, "resume", "a/p/c1"], &[], T).0, 0);
    let (code, _, err) = ctl(
        &["--config", &cfg, "failover", "a/p/c1", "--candidate", "n2"],
        &[],
        T,
    );
    assert_eq!(code, 3, "an operator may not force a failover: {err}");
    let (code, _, err) = ctl(&["failover", "a/p/c1", "--candidate", "n3"], &admin, T);
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("candidate_behind") && err.contains("--force"),
        "{err}"
    );
    let (code, out, err) = ctl(&["switchover", "a/p/c1", "--candidate", "n2"], &admin, T);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("switchover requested"), "{out}");
    let (code, out, _) = ctl(&["token", "list"], &admin, T);
    assert_eq!(code, 0);
    assert!(out.contains(&id) && out.contains("operator"), "{out}");
    let (code, out, _) = ctl(&["audit", "--limit", "5"], &admin, T);
    assert_eq!(code, 0);
    assert!(out.contains("cluster.switchover"), "{out}");
    let (code, out, _) = ctl(&["token", "revoke", &id], &admin, T);
    assert_eq!(code, 0);
    assert!(out.contains("revoked"), "{out}");
    // Refused once the coordinator's token cache let go of it.
    let (code, _, err) = poll_until(
        TOKEN_CACHE + Duration::from_millis(200),
        Duration::from_millis(100),
        || ctl(&["--config", &cfg, "list"], &[], T),
        |(code, _, _)| *code != 0,
    );
    assert_eq!(code, 3, "revoked: {err}");
    assert!(err.contains("token_revoked"), "{err}");

    // Events without --follow replay since a revision and stop when idle.
    let (code, out, err) = ctl(&["events", "a/p/c1", "--since", "1"], &admin, T);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("maintenance on") && out.contains("switchover requested"),
        "{out}"
    );

    // Exit codes.
    assert_eq!(ctl(&["list"], &[], T).0, 2, "no URL");
    assert_eq!(ctl(&["show", "a/p"], &admin, T).0, 2, "not a cluster name");
    assert_eq!(ctl(&["show", "a/p/nope"], &admin, T).0, 4);
    assert_eq!(
        ctl(&["list"], &[("AUTOPILOT_URL", url.as_str())], T).0,
        3,
        "no token"
    );
    let (code, _, err) = ctl(
        &["--url", "http://127.0.0.1:1", "list"],
        &[("AUTOPILOT_TOKEN", ADMIN_TOKEN)],
        T,
    );
    assert_eq!(code, 7, "unreachable: {err}");
    assert!(err.contains("cannot reach the coordinator"), "{err}");
    assert_eq!(
        ctl(
            &[
                "token",
                "create",
                "--name",
                "x",
                "--role",
                "nope",
                "--namespace",
                "a"
            ],
            &admin,
            T
        )
        .0,
        6
    );
    assert!(
        !coord.log().contains(&tok),
        "a token in the coordinator log"
    );
}
