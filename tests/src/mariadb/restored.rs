//! A `mariadbd` started by a test on a data directory a restore produced, to read what it
//! holds.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cluster::ADMIN_PASSWORD;
use crate::harness::util::{eventually, free_port, system_bin};

/// A `mariadbd` on a restored data directory (as the `mysql` user, loopback, its own port).
pub struct Restored {
    child: std::process::Child,
    port: u16,
}

impl Restored {
    pub fn start(datadir: &Path, run: &Path) -> Restored {
        std::fs::create_dir_all(run).expect("run dir");
        let _ = Command::new("chown").arg("mysql:mysql").arg(run).status();
        let port = free_port();
        let child = Command::new(system_bin("/usr/sbin/mariadbd", "mariadb-server"))
            .arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--socket={}", run.join("m.sock").display()))
            .arg(format!("--pid-file={}", run.join("m.pid").display()))
            .args([
                "--bind-address=127.0.0.1",
                "--user=mysql",
                "--skip-slave-start",
            ])
            .arg(format!("--port={port}"))
            .arg("--innodb-buffer-pool-size=32M")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(run.join("error.log")).expect("log"))
            .spawn()
            .expect("start mariadbd on the restored data");
        let r = Restored { child, port };
        eventually(Duration::from_secs(60), Duration::from_millis(300), || {
            r.sql("SELECT 1").ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "the restored server did not start: {}",
                std::fs::read_to_string(run.join("error.log")).unwrap_or_default()
            )
        });
        r
    }

    pub fn sql(&self, q: &str) -> anyhow::Result<String> {
        let out = Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-u", "autopilot", "-N", "-B"])
            .arg(format!("-P{}", self.port))
            .arg(format!("-p{ADMIN_PASSWORD}"))
            .args(["-e", q])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
