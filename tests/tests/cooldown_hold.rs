//! The failover cooldown says what it holds (issue 16): after a failover, a second primary
//! loss within `failover.cooldown` leaves the cluster without a primary until the cooldown
//! ends — and the waiting node says so once when the hold starts and once when it ends (log
//! lines), publishes it in its node key (`waiting: {kind: cooldown, until}`), and promotes
//! when it ends. The two lost nodes then come back (as a service manager restarts them) and
//! replicate from the new primary: the cluster ends at full redundancy.

use std::time::{Duration, Instant};

use e2e::harness::util::eventually;
use e2e::redis::cluster::{RedisCluster, RedisOpts};
use e2e::redis::scenario::settled;

const COOLDOWN: Duration = Duration::from_secs(8);

#[test]
fn a_second_loss_within_the_cooldown_is_held_and_says_so() {
    let mut c = RedisCluster::start(
        3,
        RedisOpts {
            cooldown: COOLDOWN,
            ..RedisOpts::default()
        },
    )
    .expect("start the Redis cluster");
    let p1 = settled(&c);
    c.kill_agent(p1);
    let (p2, _) = c.wait_new_primary(p1, Duration::from_secs(30));
    let failed_over = Instant::now();
    let last = (0..3)
        .find(|&i| i != p1 && i != p2)
        .expect("the third node");
    c.wait_replicating(last, p2, Duration::from_secs(30));

    // The second loss, within the cooldown: the last node waits and says so.
    c.kill_agent(p2);
    let doc = eventually(Duration::from_secs(15), Duration::from_millis(100), || {
        c.doc(&format!("nodes/{}", c.name(last)))
            .filter(|d| d["waiting"]["kind"] == "cooldown")
    })
    .unwrap_or_else(|| {
        panic!(
            "{} never published a cooldown wait\n{}",
            c.name(last),
            c.logs()
        )
    });
    assert!(doc["waiting"]["until"].is_string(), "{doc:#}");
    assert!(
        doc["waiting"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("failover held by the cooldown until")),
        "{doc:#}"
    );
    assert_eq!(c.primary(), None, "a primary during the cooldown");

    // It promotes once the cooldown ends, not before.
    let (p3, _) = c.wait_new_primary(p2, COOLDOWN + Duration::from_secs(30));
    assert_eq!(p3, last);
    assert!(
        failed_over.elapsed() + Duration::from_millis(500) >= COOLDOWN,
        "promoted {:?} after the first failover, within the {COOLDOWN:?} cooldown",
        failed_over.elapsed()
    );
    let cleared = eventually(Duration::from_secs(10), Duration::from_millis(100), || {
        c.doc(&format!("nodes/{}", c.name(last)))
            .filter(|d| d.get("waiting").is_none_or(serde_json::Value::is_null))
    });
    assert!(cleared.is_some(), "the wait stayed in the node key");
    let log = c.agent_log(last);
    let held = |l: &&str| l.contains("failover held by the cooldown until");
    let started = log
        .lines()
        .filter(held)
        .filter(|l| !l.contains("wait over after"))
        .count();
    let ended = log
        .lines()
        .filter(held)
        .filter(|l| l.contains("wait over after"))
        .count();
    assert_eq!(
        (started, ended),
        (1, 1),
        "the hold is said once when it starts and once when it ends:\n{log}"
    );

    // The lost nodes come back and replicate: full redundancy.
    for i in [p1, p2] {
        c.start_agent(i);
    }
    for i in [p1, p2] {
        c.wait_replicating(i, p3, Duration::from_secs(60));
    }
}
