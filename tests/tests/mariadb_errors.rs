//! Bad input to the MariaDB engine gets a clear error, no crash loop and no touched data:
//! a port in use, a data directory owned by the wrong user, admin credentials that do not
//! match the data directory. No password appears in any output.

use std::time::Duration;

use e2e::harness::util::eventually;
use e2e::mariadb::cluster::{ADMIN_PASSWORD, MariaCluster, MariaOpts, REPL_PASSWORD};
use e2e::mariadb::scenario::BOOTSTRAP;

fn no_secret(log: &str) {
    assert!(
        !log.contains(ADMIN_PASSWORD) && !log.contains(REPL_PASSWORD),
        "a password is in the agent's output:\n{log}"
    );
}

#[test]
fn a_port_in_use_is_named_and_the_agent_exits() {
    let mut c = MariaCluster::create(1, MariaOpts::default()).expect("create the cluster");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = taken.local_addr().expect("local addr").port();
    c.set_port(0, port).expect("rewrite the config");
    c.start_agent(0);
    let status = c
        .agent_mut(0)
        .and_then(|a| a.wait_exit(Duration::from_secs(30)))
        .expect("the agent exits instead of looping");
    assert!(!status.success(), "exit status {status}");
    let log = c.agent_log(0);
    assert!(
        log.contains(&format!("127.0.0.1:{port} is not free")),
        "no clear message:\n{log}"
    );
    no_secret(&log);
}

#[test]
fn a_data_directory_of_the_wrong_owner_is_refused_untouched() {
    let mut c = MariaCluster::create(1, MariaOpts::default()).expect("create the cluster");
    let data = c.dir().join("data-1");
    std::fs::create_dir_all(data.join("mysql")).expect("make a data dir");
    std::fs::write(data.join("keep.me"), "precious").expect("write a file");
    c.start_agent(0);
    let status = c
        .agent_mut(0)
        .and_then(|a| a.wait_exit(Duration::from_secs(30)))
        .expect("the agent exits instead of looping");
    assert!(!status.success(), "exit status {status}");
    let log = c.agent_log(0);
    assert!(
        log.contains("is owned by uid 0, not by mysql") && log.contains("chown -R mysql:"),
        "no clear message:\n{log}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("keep.me")).expect("file kept"),
        "precious"
    );
    no_secret(&log);
}

#[test]
fn admin_credentials_that_do_not_match_are_reported() {
    let mut c = MariaCluster::start(1, MariaOpts::default()).expect("start the cluster");
    c.wait_primary(BOOTSTRAP);
    c.stop_all();
    std::fs::write(c.dir().join("admin.pass"), "another-MARKER-pass\n")
        .expect("change the password");
    c.start_agent(0);
    let seen = eventually(Duration::from_secs(30), Duration::from_millis(100), || {
        c.agent_log(0)
            .contains("the configured admin credentials do not match")
            .then_some(())
    });
    let log = c.agent_log(0);
    assert!(seen.is_some(), "no clear message:\n{log}");
    assert!(
        !log.contains("another-MARKER-pass"),
        "the password is in the log"
    );
    no_secret(&log);
    assert_eq!(
        c.primary(),
        None,
        "a node whose database cannot be managed became primary"
    );
}
