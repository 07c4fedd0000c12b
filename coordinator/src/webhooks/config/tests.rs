//! The webhooks file: what is accepted, and that every refusal names the place and the fix
//! without showing the secret.

use super::*;

const SECRET: &str = "s3cr3t-value-0123456789abcdef";

fn env(k: &str) -> Option<String> {
    (k == "HOOK_SECRET").then(|| SECRET.to_owned())
}

fn parse_text(text: &str) -> Result<Vec<Webhook>, ConfigError> {
    parse(
        "--webhooks-file=/etc/autopilot/webhooks.yaml",
        Path::new("/etc/autopilot/webhooks.yaml"),
        text,
        &env,
    )
}

fn err(text: &str) -> String {
    let e = parse_text(text).expect_err("an error").to_string();
    assert!(!e.contains(SECRET), "the secret leaked: {e}");
    assert!(
        e.starts_with("--webhooks-file=/etc/autopilot/webhooks.yaml: "),
        "names the flag and file: {e}"
    );
    e
}

#[test]
fn a_full_entry_and_the_defaults() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("hook.secret"), format!("{SECRET}\n")).expect("write");
    let path = dir.path().join("webhooks.yaml");
    std::fs::write(
        &path,
        r#"
webhooks:
  - name: ops
    url: https://hooks.example.com/autopilot?token=abc
    secret_file: hook.secret
    events: [failover, switchover, fenced]
    clusters: ["production/*/*", staging/bluebird/billing]
    timeout: 3s
    retry: { max_attempts: 7, initial_backoff: 250ms, max_backoff: 20s }
    queue: 50
  - name: all
    url: http://127.0.0.1:9000/
    secret_env: HOOK_SECRET
"#,
    )
    .expect("write");
    let hooks = load("--webhooks-file", &path, &env).expect("valid");
    assert_eq!(hooks.len(), 2);
    let ops = &hooks[0];
    assert_eq!(ops.name, "ops");
    assert_eq!(
        ops.secret.expose(),
        SECRET,
        "first line, relative to the file"
    );
    assert_eq!(ops.timeout, Duration::from_secs(3));
    assert_eq!(
        ops.backoff,
        Backoff {
            max_attempts: 7,
            initial: Duration::from_millis(250),
            max: Duration::from_secs(20)
        }
    );
    assert_eq!(ops.queue, 50);
    assert!(ops.filter.accepts("failover", "production", "x", "y"));
    assert!(!ops.filter.accepts("joined", "production", "x", "y"));
    assert!(!ops.filter.accepts("failover", "dev", "x", "y"));
    assert_eq!(ops.origin(), "https://hooks.example.com");
    let all = &hooks[1];
    assert_eq!(all.secret.expose(), SECRET);
    assert_eq!(all.timeout, Duration::from_secs(10));
    assert_eq!(
        all.backoff,
        Backoff {
            max_attempts: 5,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60)
        }
    );
    assert_eq!(all.queue, 1000);
    assert!(all.filter.accepts("anything", "a", "b", "c"));
    let debug = format!("{hooks:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(
        !debug.contains("token=abc"),
        "no query string in Debug: {debug}"
    );
}

#[test]
fn bad_values_name_the_field_line_and_fix() {
    let cases: &[(&str, &[&str])] = &[
        (
            "webhooks:\n  - name: a\n    url: ftp://x/\n    secret_env: HOOK_SECRET\n",
            &["webhooks[0].url", "line 3", "use http:// or https://"],
        ),
        (
            "webhooks:\n  - name: a\n    url: not a url\n    secret_env: HOOK_SECRET\n",
            &["webhooks[0].url", "line 3", "http://host:port/path"],
        ),
        (
            "webhooks:\n  - name: a\n    url: https://user:pw@x/\n    secret_env: HOOK_SECRET\n",
            &["webhooks[0].url", "user info"],
        ),
        (
            "webhooks:\n  - name: a\n    url: http://x/\n    secret_env: HOOK_SECRET\n    events: [failover, failovr]\n",
            &[
                "webhooks[0].events",
                "line 5",
                "\"failovr\" is not an event kind",
                "docs/etcd-keys.md",
            ],
        ),
        (
            "webhooks:\n  - name: a\n    url: http://x/\n    secret_env: HOOK_SECRET\n    events: [unknown]\n",
            &["\"unknown\" is not an event kind"],
        ),
        (
            "webhooks:\n  - name: a\n    url: http://x/\n    secret_env: HOOK_SECRET\n    events: []\n",
            &["webhooks[0].events", "leave `events` out"],
        ),
        (
            "webhooks:\n  - name: a\n    url: http://x/\n    secret_env: HOOK_SECRET\n    clusters: [prod]\n",
            &["webhooks[0].clusters", "namespace/project/cluster"],
        ),
        (
            "webhooks:\n  - name: a\n    url: http://x/\n    secret_env: HOOK_SECRET\n    timeout: soon\n",
            &["webhooks[0].timeout", "line 5", "500ms, 10s"],
        ),
        (
            "webhooks:\n  - name: a\n    url: http://x/\n    secret_env: HOOK_SECRET\n    timeout: 0s\n",
            &["webhooks[0].timeout", "longer than 0s"],
        ),
        (
            "webhooks:\n  - name: a\n    url: http://x/\n    secret_env: HOOK_SECRET\n    retry: {max_attempts: 0}\n",
            &["webhooks[0].retry.max_attempts", "1 (no retry) to 100"],
        ),
        (
            "webhooks:\n  - name: a\n    url: http://x/\n    secret_env: HOOK_SECRET\n    retry: {initial_backoff: 1m, max_backoff: 10s}\n",
            &["webhooks[0] (\"a\").retry", "raise max_backoff"],
        ),
        (
            "webhooks:\n  - name: a\n    url: http://x/\n    secret_env: HOOK_SECRET\n    queue: 0\n",
            &["webhooks[0].queue", "1 to 100000"],
        ),
        (
            "webhooks:\n  - name: a\n    url: http://x/\n    secret_env: HOOK_SECRET\n    retries: 3\n",
            &["unknown field `retries`", "line 5"],
        ),
        (
            "webhooks:\n  - name: a b\n    url: http://x/\n    secret_env: HOOK_SECRET\n",
            &["webhooks[0].name", "letters, digits"],
        ),
        (
            "webhooks:\n  - name: a\n    url: http://x/\n    secret_env: HOOK_SECRET\n  - name: a\n    url: http://y/\n    secret_env: HOOK_SECRET\n",
            &["webhooks[1] (\"a\").name", "unique"],
        ),
        (
            "webhooks:\n  - name: a\n    url: http://x/\n",
            &[
                "webhooks[0] (\"a\")",
                "secret_file",
                "secret_env",
                "openssl rand -hex 32",
            ],
        ),
        (
            "webhooks:\n  - name: a\n    url: http://x/\n    secret_env: HOOK_SECRET\n    secret_file: /x\n",
            &["not both"],
        ),
        (
            "webhooks:\n  - name: a\n    url: http://x/\n    secret_env: NOT_SET\n",
            &["webhooks[0] (\"a\").secret_env", "NOT_SET is not set"],
        ),
        (
            "webhooks:\n  - name: a\n    url: http://x/\n    secret_file: /does/not/exist\n",
            &[
                "webhooks[0] (\"a\").secret_file",
                "cannot read /does/not/exist",
            ],
        ),
        ("webhooks: []\n", &["the list is empty"]),
        ("hooks: []\n", &["unknown field `hooks`"]),
    ];
    for (text, wants) in cases {
        let e = err(text);
        for w in *wants {
            assert!(e.contains(w), "{text}\n→ {e}\nmissing {w:?}");
        }
    }
}

#[test]
fn a_short_secret_is_refused_by_origin_only() {
    let short = |k: &str| (k == "SHORT").then(|| "tooshort".to_owned());
    let e = parse(
        "--webhooks-file=w.yaml",
        Path::new("w.yaml"),
        "webhooks:\n  - name: a\n    url: http://x/\n    secret_env: SHORT\n",
        &short,
    )
    .expect_err("too short")
    .to_string();
    assert!(e.contains("environment variable SHORT"), "{e}");
    assert!(e.contains("shorter than 16"), "{e}");
    assert!(!e.contains("tooshort"), "the secret leaked: {e}");
}

#[test]
fn a_url_with_a_token_is_not_repeated_in_errors() {
    let e = err(
        "webhooks:\n  - name: a\n    url: gopher://x/?token=hush\n    secret_env: HOOK_SECRET\n",
    );
    assert!(!e.contains("hush"), "{e}");
}

#[test]
fn the_serve_flag_reads_the_file() {
    use clap::Parser;
    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: crate::config::ServeArgs,
    }
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("w.yaml");
    std::fs::write(
        &path,
        "webhooks:\n  - name: a\n    url: http://x/\n    secret_env: HOOK_SECRET\n",
    )
    .expect("write");
    let p = path.to_string_lossy().into_owned();
    let args = T::try_parse_from([
        "t",
        "--etcd-endpoints",
        "http://127.0.0.1:2379",
        "--webhooks-file",
        &p,
    ])
    .expect("flags")
    .a;
    let cfg = args.validate(&env).expect("valid");
    assert_eq!(cfg.webhooks.len(), 1);
    assert!(!format!("{cfg:?}").contains(SECRET));
    let missing = T::try_parse_from([
        "t",
        "--etcd-endpoints",
        "http://127.0.0.1:2379",
        "--webhooks-file",
        "/no/such/webhooks.yaml",
    ])
    .expect("flags")
    .a
    .validate(&env)
    .expect_err("missing file")
    .to_string();
    assert!(
        missing.starts_with("--webhooks-file=/no/such/webhooks.yaml: cannot read the file"),
        "{missing}"
    );
}
