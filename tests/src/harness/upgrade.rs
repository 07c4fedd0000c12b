//! Rolling upgrades under test (issue 19). The machine has one MariaDB and one PostgreSQL
//! version, so each node runs its server program through a symlink its hooks switch: the
//! upgrade hook points it at the *candidate* (a wrapper that runs the real server as a newer
//! build would: MariaDB reports `--version=…-upgraded`, and both carry
//! `AUTOPILOT_TEST_BUILD=upgraded` in their environment), the rollback hook back at the real
//! program. A bad candidate does not start; a `hang` file makes the upgrade hook hang.
//! [`rollout`] runs one rollout through `autopilotctl` under a writer and checker and
//! measures it, for the e2e tests and `bench upgrade`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::cluster::Agents;
use crate::harness::coordinator::{ADMIN_TOKEN, ctl};
use crate::harness::util::eventually;
use crate::harness::workload::{Checker, CheckerReport, Workload, Writer, WriterReport};

/// The marker in the environment of an upgraded server.
pub const UPGRADED: &str = "AUTOPILOT_TEST_BUILD=upgraded";

/// Which server the programs stand in for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// `/usr/sbin/mariadbd`, run through `server-<k>`.
    Mariadb,
    /// PostgreSQL's `postgres`, run through `bin-<k>/postgres` (the node's `bin_dir`).
    Postgres,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The programs, links and hooks, in a directory every user may read (the servers run as
/// `mysql` and `postgres`).
pub struct Programs {
    dir: tempfile::TempDir,
    server: Server,
}

impl Programs {
    /// Programs for three nodes.
    pub fn new(server: Server) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let p = Self { dir, server };
        let real = p.real();
        let new = match server {
            Server::Mariadb => format!(
                "export {UPGRADED}\nexec {} \"$@\" --version=10.11.99-MariaDB-upgraded",
                real.display()
            ),
            Server::Postgres => format!("export {UPGRADED}\nexec {} \"$@\"", real.display()),
        };
        p.script("server-new", &new);
        p.script(
            "server-bad",
            "echo 'server-bad: this build does not start' >&2; exit 1",
        );
        let d = p.dir.path().display();
        p.script(
            "upgrade-hook",
            &format!(
                "if [ -e {d}/hang ]; then sleep 600; fi\nln -sfn \"$(readlink {d}/candidate)\" \"$1\""
            ),
        );
        for k in 1..=3 {
            if server == Server::Postgres {
                let bin = p.path(&format!("bin-{k}"));
                std::fs::create_dir(&bin).expect("mkdir");
                std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
                for e in std::fs::read_dir(PG_BIN).expect("the PostgreSQL programs") {
                    let e = e.expect("an entry");
                    std::os::unix::fs::symlink(e.path(), bin.join(e.file_name())).expect("symlink");
                }
                std::fs::remove_file(bin.join("postgres")).expect("rm");
            }
            std::os::unix::fs::symlink(&real, p.link(k)).expect("symlink");
        }
        p.candidate("server-new");
        p
    }

    fn script(&self, name: &str, body: &str) {
        let p = self.path(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write a script");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// The real server program.
    pub fn real(&self) -> PathBuf {
        match self.server {
            Server::Mariadb => PathBuf::from("/usr/sbin/mariadbd"),
            Server::Postgres => Path::new(PG_BIN).join("postgres"),
        }
    }

    /// A file in the programs' directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Node `k`'s (1-based) server link.
    pub fn link(&self, k: usize) -> PathBuf {
        match self.server {
            Server::Mariadb => self.path(&format!("server-{k}")),
            Server::Postgres => self.path(&format!("bin-{k}/postgres")),
        }
    }

    /// What the next upgrade hook installs: `server-new` or `server-bad`.
    pub fn candidate(&self, program: &str) {
        let link = self.path("candidate");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(self.path(program), link).expect("symlink");
    }

    /// Make the upgrade hook hang (or not).
    pub fn hang(&self, hang: bool) {
        if hang {
            std::fs::write(self.path("hang"), b"").expect("hang");
        } else {
            let _ = std::fs::remove_file(self.path("hang"));
        }
    }

    /// The `upgrade` and `rollback` handlers, as lines under `handlers:` (`{k}`: the node's
    /// number).
    pub fn handlers_yaml(&self) -> String {
        let d = self.dir.path().display();
        let link = match self.server {
            Server::Mariadb => format!("{d}/server-{{k}}"),
            Server::Postgres => format!("{d}/bin-{{k}}/postgres"),
        };
        format!(
            "  upgrade:\n    exec: [{d}/upgrade-hook, '{link}']\n    timeout: 10s\n  rollback:\n    exec: [ln, -sfn, {real}, '{link}']\n    timeout: 10s\n",
            real = self.real().display()
        )
    }

    /// The server directory or program the nodes run (`{k}`: the node's number).
    pub fn server_yaml(&self) -> String {
        let d = self.dir.path().display();
        match self.server {
            Server::Mariadb => format!("{d}/server-{{k}}"),
            Server::Postgres => format!("{d}/bin-{{k}}"),
        }
    }
}

/// Whether node `i`'s database runs the upgraded program (its main process's environment).
pub fn runs_upgraded(a: &Agents, i: usize) -> bool {
    a.main_pid(i)
        .and_then(|pid| std::fs::read(format!("/proc/{pid}/environ")).ok())
        .is_some_and(|env| env.split(|b| *b == 0).any(|v| v == UPGRADED.as_bytes()))
}

/// The rollout document, as `autopilotctl upgrade status -o json` prints it.
pub fn status(env: &[(&str, &str)], cluster: &str) -> serde_json::Value {
    let (code, out, err) = ctl(
        &["-o", "json", "upgrade", "status", cluster],
        env,
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "{out}{err}");
    serde_json::from_str(&out).expect("JSON")
}

/// Waits up to `within` for the rollout document to satisfy `ok`.
pub fn wait(
    a: &Agents,
    env: &[(&str, &str)],
    cluster: &str,
    what: &str,
    within: Duration,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    eventually(within, Duration::from_millis(200), || {
        last = status(env, cluster);
        ok(&last).then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("{what}: not within {within:?}: {last:#}\n{}", a.logs()))
}

/// What one rollout measured.
pub struct Rollout {
    /// From the request to the rollout's end.
    pub took: Duration,
    /// The rollout document at its end.
    pub doc: serde_json::Value,
    /// The longest time between two acknowledged writes during the rollout.
    pub outage: Duration,
    /// The same outside the switchover step.
    pub outside_switchover: Duration,
    /// The writer's and checker's reports.
    pub writer: WriterReport,
    /// The checker's.
    pub checker: CheckerReport,
}

/// Runs a rollout of `cluster` with `autopilotctl upgrade start` (through the coordinator at
/// `url`) under a writer and a checker on `workload`, until it ends (at most 10 minutes).
pub fn rollout(a: &Agents, url: &str, cluster: &str, workload: Arc<dyn Workload>) -> Rollout {
    let env = [("AUTOPILOT_URL", url), ("AUTOPILOT_TOKEN", ADMIN_TOKEN)];
    let writer = Writer::start(workload.clone(), Duration::from_secs(600));
    let checker = Checker::start(workload, Duration::from_secs(600));
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let (code, out, err) = ctl(
        &["upgrade", "start", cluster, "--deadline", "60"],
        &env,
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "{out}{err}");
    let doc = wait(
        a,
        &env,
        cluster,
        "the rollout's end",
        Duration::from_secs(600),
        |v| v["state"] != "running",
    );
    let took = t0.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let writer = writer.stop();
    let checker = checker.stop();
    Rollout {
        took,
        outage: writer.longest_gap_since(t0),
        outside_switchover: outside_switchover(&doc, &writer, t0),
        doc,
        writer,
        checker,
    }
}

/// The longest time between two acknowledged writes after `t0` that does not overlap the
/// switchover step of the rollout `doc`: the write outage the upgrades of the replicas caused.
pub fn outside_switchover(doc: &serde_json::Value, writer: &WriterReport, t0: Instant) -> Duration {
    let (from, to) = doc["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["kind"] == "switchover"))
        .map(|s| (instant(&s["started"]), instant(&s["ended"])))
        .unwrap_or((t0, t0));
    let mut outside = Duration::ZERO;
    for pair in writer.acked_at.windows(2) {
        let (x, y) = (pair[0], pair[1]);
        if x >= t0 && (y < from || x > to) {
            outside = outside.max(y - x);
        }
    }
    outside
}

/// The steps of the rollout `doc` with how long each took (`upgrade node-2 3.1 s, …`).
pub fn steps_summary(doc: &serde_json::Value) -> String {
    let steps: Vec<String> = doc["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let took = instant(&s["ended"]).saturating_duration_since(instant(&s["started"]));
            format!(
                "{} {} {:.1} s",
                s["kind"].as_str().unwrap_or("?"),
                s["node"].as_str().unwrap_or("?"),
                took.as_secs_f64()
            )
        })
        .collect();
    steps.join(", ")
}

/// The `Instant` of an RFC 3339 time in the recent past.
fn instant(v: &serde_json::Value) -> Instant {
    humantime::parse_rfc3339_weak(v.as_str().unwrap_or_default())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or_else(Instant::now, |ago| Instant::now() - ago)
}
