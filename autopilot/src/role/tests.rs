//! Unit tests for single transitions of [`decide`], table-style where it helps.

use super::*;

fn p() -> RoleParams {
    let mut p = super::sim::params(0);
    p.pre_promote = true;
    p
}

fn pos(offset: u64) -> Position {
    Position { epoch: 1, offset }
}

fn node(id: &str, offset: u64, priority: u32, eligible: bool) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        address: format!("{id}:1"),
        role: Role::Replica,
        position: pos(offset),
        priority,
        eligible,
        caught_up_term: Some(0), // final for the round `view()` describes
        database_killed: false,
    }
}

fn pk(id: &str) -> PrimaryKey {
    PrimaryKey {
        node: id.into(),
        address: format!("{id}:1"),
    }
}

fn view() -> ClusterView {
    ClusterView {
        linearizable: true,
        initialized: true,
        revision: 1,
        ..ClusterView::default()
    }
}

fn st(phase: Phase) -> RoleState {
    let mut s = RoleState::new();
    (s.phase, s.has_data, s.lease_alive, s.position) = (phase, true, true, pos(10));
    s.caught_up_term = Some(0); // caught up for the round `view()` describes
    s
}

fn run(s: RoleState, e: Event) -> (RoleState, Vec<Action>) {
    decide(&p(), s, e)
}

fn cluster(now: Millis, view: ClusterView) -> Event {
    Event::Cluster { now, view }
}

#[test]
fn role_discover_table() {
    // (initialized, primary, has_data, first action, phase)
    let cases = [
        (
            false,
            None,
            false,
            Action::AcquireLock,
            Phase::Bootstrap(BootStep::Locking),
        ),
        (
            true,
            Some("n1"),
            false,
            Action::CloneFrom { primary: pk("n1") },
            Phase::Cloning {
                source: Some(pk("n1")),
            },
        ),
        (
            true,
            Some("n1"),
            true,
            Action::Follow { primary: pk("n1") },
            Phase::Rejoining { target: pk("n1") },
        ),
    ];
    for (init, primary, data, action, phase) in cases {
        let mut s = st(Phase::Discovering);
        s.has_data = data;
        let v = ClusterView {
            initialized: init,
            primary: primary.map(pk),
            ..view()
        };
        let (s, a) = run(s, cluster(5, v));
        assert_eq!(a.first(), Some(&action), "{init} {primary:?} {data}");
        assert_eq!(s.phase, phase);
    }
}

#[test]
fn role_initialised_cluster_without_data_never_initialises() {
    let mut s = st(Phase::Discovering);
    s.has_data = false;
    let (s, a) = run(s, cluster(5, view()));
    assert_eq!(s.phase, Phase::WaitingForData);
    assert!(
        !a.iter()
            .any(|a| matches!(a, Action::Initialize | Action::AcquireLock))
    );
}

#[test]
fn role_bootstrap_rechecks_under_lock() {
    let s = st(Phase::Bootstrap(BootStep::Locking));
    let (s, a) = run(
        s,
        Event::LockResult {
            now: 1,
            acquired: true,
        },
    );
    assert_eq!(a, vec![Action::ReadCluster]);
    // Someone initialised meanwhile: release the lock, no Initialize.
    let (s2, a2) = run(s.clone(), cluster(2, view()));
    assert!(a2.contains(&Action::ReleaseLock) && !a2.contains(&Action::Initialize));
    assert_ne!(s2.phase, Phase::Bootstrap(BootStep::Initializing));
    let (s, a) = run(
        s,
        cluster(
            2,
            ClusterView {
                initialized: false,
                ..view()
            },
        ),
    );
    assert_eq!(a, vec![Action::Initialize]);
    let (s, a) = run(
        s,
        Event::Engine {
            now: 3,
            result: EngineResult::Initialized { position: pos(0) },
        },
    );
    assert!(matches!(
        a[0],
        Action::ClaimPrimary {
            write_initialized: true,
            ..
        }
    ));
    let (s, a) = run(s, Event::ClaimResult { now: 4, won: true });
    assert_eq!(
        a,
        vec![
            Action::ReleaseLock,
            Action::WriteMarker { term: 1 },
            Action::Promote
        ]
    );
    let (s, _) = run(
        s,
        Event::Engine {
            now: 5,
            result: EngineResult::Promoted { position: pos(0) },
        },
    );
    assert_eq!((s.phase, s.role), (Phase::Primary, Role::Primary));
}

#[test]
fn role_primary_gone_skips_when_ineligible() {
    let mut nofail = p();
    nofail.nofailover = true;
    let replica = || {
        st(Phase::Replica {
            following: Some("n1".into()),
        })
    };
    let mut unhealthy = replica();
    unhealthy.healthy = false;
    let mut lagging = replica();
    lagging.last_primary_position = Some(pos(10 + 2_000_000));
    let cases: [(&str, RoleParams, RoleState, bool); 4] = [
        ("nofailover", nofail, replica(), false),
        ("unhealthy", p(), unhealthy, false),
        ("lagging", p(), lagging, false),
        ("eligible", p(), replica(), true),
    ];
    for (name, params, s, elects) in cases {
        let (s, a) = decide(&params, s, cluster(5, view()));
        assert_eq!(matches!(s.phase, Phase::Electing { .. }), elects, "{name}");
        assert_eq!(
            a.iter().any(|a| matches!(a, Action::CatchUp { .. })),
            elects,
            "{name}"
        );
    }
    let (s, a) = run(
        replica(),
        cluster(
            5,
            ClusterView {
                maintenance: true,
                ..view()
            },
        ),
    );
    assert!(
        !matches!(s.phase, Phase::Electing { .. })
            && !a.iter().any(|a| matches!(a, Action::CatchUp { .. })),
        "maintenance"
    );
}

#[test]
fn role_election_yields_to_better_peer() {
    // (peers, do we claim?)
    let cases = [
        (vec![node("n1", 9, 100, true)], true),
        (vec![node("n1", 11, 100, true)], false), // more advanced
        (vec![node("n1", 11, 100, false)], true), // not eligible: ignored
        (vec![node("n1", 10, 200, true)], false), // tie, higher priority
        (vec![node("n1", 10, 100, true)], true),  // tie, same priority: lowest id n0
    ];
    for (peers, claims) in cases {
        let s = st(Phase::Electing { since: 0, term: 0 });
        let v = ClusterView {
            nodes: peers.clone(),
            ..view()
        };
        let (_, a) = run(s, cluster(2000, v));
        assert_eq!(
            a.iter().any(|a| matches!(a, Action::ClaimPrimary { .. })),
            claims,
            "{peers:?}"
        );
    }
}

#[test]
fn role_election_waits_for_settle_fresh_read_and_cooldown() {
    let s = st(Phase::Electing {
        since: 1000,
        term: 0,
    });
    let (_, a) = run(s.clone(), cluster(1500, view()));
    assert!(a.is_empty(), "inside the settle window");
    let (_, a) = run(
        s.clone(),
        cluster(
            2500,
            ClusterView {
                linearizable: false,
                ..view()
            },
        ),
    );
    assert_eq!(
        a,
        vec![Action::ReadCluster],
        "watch cache only: decide on a fresh read, asked for now"
    );
    let (_, a) = run(
        s.clone(),
        cluster(
            2500,
            ClusterView {
                last_failover_at: Some(0),
                ..view()
            },
        ),
    );
    assert_eq!(a[0], Action::WakeAt { at: 8000 }, "cooldown");
    assert_eq!(
        a[1],
        Action::Waiting {
            started: Some(Wait::Cooldown {
                last: 0,
                until: 8000
            }),
            ended: None
        },
        "the wait is said once"
    );
    assert!(
        matches!(
            &a[2],
            Action::PublishNode {
                waiting: Some((Wait::Cooldown { .. }, 2500)),
                ..
            }
        ),
        "and published: {a:?}"
    );
    let mut s = st(Phase::Electing {
        since: 1000,
        term: 7,
    });
    s.caught_up_term = Some(7);
    let (s, a) = run(
        s,
        cluster(
            9000,
            ClusterView {
                last_failover_at: Some(0),
                history_rev: 7,
                ..view()
            },
        ),
    );
    assert!(matches!(
        a[0],
        Action::ClaimPrimary {
            history_rev: Some(7),
            reason: ClaimReason::Failover,
            ..
        }
    ));
    assert!(matches!(s.phase, Phase::Claiming { .. }));
}

#[test]
fn role_election_waits_for_every_eligible_peers_final_position() {
    let s = st(Phase::Electing {
        since: 1000,
        term: 0,
    });
    let claims = |a: &[Action]| a.iter().any(|a| matches!(a, Action::ClaimPrimary { .. }));
    // A peer still replaying advertises its old, lower position: not final for this round.
    let mut replaying = node("n1", 5, 100, true);
    replaying.caught_up_term = None;
    let v = ClusterView {
        nodes: vec![replaying.clone()],
        ..view()
    };
    let (_, a) = run(s.clone(), cluster(2500, v.clone()));
    assert!(!claims(&a), "waits for the peer's final position");
    // Its final position for this round is higher: yield.
    let mut done = node("n1", 12, 100, true);
    done.caught_up_term = Some(0);
    let (_, a) = run(
        s.clone(),
        cluster(
            2600,
            ClusterView {
                nodes: vec![done],
                ..view()
            },
        ),
    );
    assert!(!claims(&a), "yields to the more advanced peer");
    // A peer final for an older round counts as not final.
    let mut old_round = node("n1", 5, 100, true);
    old_round.caught_up_term = Some(0);
    let (_, a) = run(
        st(Phase::Electing {
            since: 1000,
            term: 3,
        }),
        cluster(
            2500,
            ClusterView {
                nodes: vec![old_round],
                history_rev: 3,
                ..view()
            },
        ),
    );
    assert!(!claims(&a), "a final position of another round");
    // Our own catch-up has not answered yet: wait too.
    let mut me_pending = s.clone();
    me_pending.caught_up_term = None;
    let (_, a) = run(me_pending, cluster(2500, view()));
    assert!(!claims(&a), "our own final position is not known yet");
    // Bounded: after settle + ttl a hung peer no longer blocks the election.
    let (_, a) = run(s.clone(), cluster(1000 + 1000 + 3000, v));
    assert!(claims(&a), "decides after settle + ttl");
    // A new round (history moved on) starts over: catch up again for it.
    let (s2, a) = run(
        s,
        cluster(
            2500,
            ClusterView {
                history_rev: 9,
                ..view()
            },
        ),
    );
    assert!(a.iter().any(|a| matches!(a, Action::CatchUp { .. })));
    assert!(matches!(s2.phase, Phase::Electing { term: 9, .. }));
}

#[test]
fn role_winner_fences_old_primary_catches_up_then_promotes() {
    let s = st(Phase::Claiming {
        reason: ClaimReason::Failover,
        old: Some(pk("n1")),
    });
    let (s, a) = run(s, Event::ClaimResult { now: 1, won: true });
    assert_eq!(
        a,
        vec![Action::FenceRemote {
            node: "n1".into(),
            address: "n1:1".into()
        }]
    );
    let fenced = EngineResult::RemoteFenced {
        final_position: Some(pos(15)),
    };
    let (s, a) = run(
        s,
        Event::Engine {
            now: 2,
            result: fenced,
        },
    );
    assert_eq!(
        a,
        vec![Action::CatchUpTo {
            target: pos(15),
            from: "n1:1".into()
        }]
    );
    let (s, a) = run(
        s,
        Event::Engine {
            now: 3,
            result: EngineResult::CaughtUp { position: pos(15) },
        },
    );
    assert_eq!(a, vec![Action::RunPrePromote]);
    let (failed, a) = run(s.clone(), Event::PrePromoteDone { now: 4, ok: false });
    assert!(
        a.contains(&Action::ReleasePrimary) && failed.phase == Phase::Replica { following: None }
    );
    let (s, a) = run(s, Event::PrePromoteDone { now: 4, ok: true });
    assert_eq!(a, vec![Action::Promote]);
    let (s, a) = run(
        s,
        Event::Engine {
            now: 5,
            result: EngineResult::Promoted { position: pos(15) },
        },
    );
    assert_eq!(s.phase, Phase::Primary);
    assert!(a.iter().any(|a| matches!(
        a,
        Action::OnChange {
            role: Role::Primary,
            ..
        }
    )));
}

#[test]
fn role_winner_that_cannot_fence_the_old_primary_does_not_promote() {
    let s = st(Phase::Claiming {
        reason: ClaimReason::Failover,
        old: Some(pk("n1")),
    });
    let (s, _) = run(s, Event::ClaimResult { now: 1, won: true });
    let (s, a) = run(
        s,
        Event::Engine {
            now: 2,
            result: EngineResult::Failed,
        },
    );
    assert!(!a.contains(&Action::Promote), "{a:?}");
    assert!(a.contains(&Action::ReleasePrimary), "{a:?}");
    assert_eq!(s.phase, Phase::Replica { following: None });

    // Unreachable is different: nothing can take writes there, so the promotion goes on.
    let s = st(Phase::Claiming {
        reason: ClaimReason::Failover,
        old: Some(pk("n1")),
    });
    let (s, _) = run(s, Event::ClaimResult { now: 1, won: true });
    let (_, a) = run(
        s,
        Event::Engine {
            now: 2,
            result: EngineResult::RemoteFenced {
                final_position: None,
            },
        },
    );
    assert_eq!(a, vec![Action::RunPrePromote]);
}

#[test]
fn role_primary_fences_before_lease_can_expire_and_unfences_only_with_proof() {
    let mut s = st(Phase::Primary);
    (s.role, s.lease_ok_sent_at) = (Role::Primary, 1000);
    let (s1, a) = run(s.clone(), Event::Tick { now: 2500 }); // exactly ttl/2: not yet
    assert!(!a.contains(&Action::Fence) && s1.phase == Phase::Primary);
    let (s, a) = run(s, Event::KeepAliveFailed { now: 2501 });
    assert_eq!(a[0], Action::Fence);
    assert_eq!(s.phase, Phase::SelfFenced { fenced_at: 2501 });
    let mine = ClusterView {
        primary: Some(pk("n0")),
        ..view()
    };
    // A keep-alive sent before the fence proves nothing.
    let (s, a) = run(
        s,
        Event::KeepAliveOk {
            now: 2600,
            sent_at: 2400,
        },
    );
    assert!(
        !a.iter()
            .any(|a| matches!(a, Action::ReadCluster | Action::Unfence)),
        "{a:?}"
    );
    let (s2, a) = run(s.clone(), cluster(2650, mine.clone()));
    assert!(!a.contains(&Action::Unfence) && matches!(s2.phase, Phase::SelfFenced { .. }));
    let (s, a) = run(
        s,
        Event::KeepAliveOk {
            now: 2700,
            sent_at: 2600,
        },
    );
    assert!(a.contains(&Action::ReadCluster), "{a:?}");
    // Not while the fence has not answered...
    let (s2, a) = run(s.clone(), cluster(2710, mine.clone()));
    assert!(!a.contains(&Action::Unfence) && matches!(s2.phase, Phase::SelfFenced { .. }));
    // ...but once it has.
    let (s, _) = run(
        s,
        Event::Engine {
            now: 2705,
            result: EngineResult::Fenced { position: pos(10) },
        },
    );
    let (s, a) = run(s, cluster(2710, mine));
    assert_eq!(a[0], Action::Unfence);
    assert_eq!(s.phase, Phase::Primary);
    // Learning someone else is primary: follow.
    let fenced = st(Phase::SelfFenced { fenced_at: 1 });
    let (s, a) = run(
        fenced,
        cluster(
            3000,
            ClusterView {
                primary: Some(pk("n1")),
                ..view()
            },
        ),
    );
    assert_eq!(a[0], Action::Follow { primary: pk("n1") });
    let (s, _) = run(
        s,
        Event::Engine {
            now: 3001,
            result: EngineResult::NeedsRebuild,
        },
    );
    assert_eq!(s.phase, Phase::NeedsRebuild);
}

#[test]
fn role_a_hung_self_fence_kills_the_database_before_the_lease_can_expire() {
    let params = p();
    let mut s = st(Phase::Primary);
    (s.role, s.lease_ok_sent_at) = (Role::Primary, 1000);
    let (s, a) = run(s, Event::KeepAliveFailed { now: 2501 });
    assert_eq!(a[0], Action::Fence);
    // The lease expires no earlier than 1000 + TTL: the kill comes then.
    let deadline = 1000 + params.ttl;
    assert!(a.contains(&Action::WakeAt { at: deadline }), "{a:?}");
    let (s2, a) = run(s.clone(), Event::Tick { now: deadline - 1 });
    assert!(!a.contains(&Action::KillDatabase), "{a:?}");
    // The fence does not answer (read_only behind semi-sync waits): killed at the deadline.
    let (s2, a) = run(s2, Event::Tick { now: deadline });
    assert!(a.contains(&Action::KillDatabase), "{a:?}");
    assert!(s2.database_killed && s2.fence_deadline.is_none());
    // Once, whatever comes next.
    let (_, a) = run(s2, Event::Tick { now: deadline + 1 });
    assert!(!a.contains(&Action::KillDatabase), "{a:?}");
    // A keep-alive that succeeds meanwhile renews the lease: the deadline moves with it.
    let (s3, _) = run(
        s.clone(),
        Event::KeepAliveOk {
            now: 2700,
            sent_at: 2600,
        },
    );
    assert_eq!(s3.fence_deadline, Some(2600 + params.ttl));
    let (_, a) = run(s3, Event::Tick { now: deadline });
    assert!(!a.contains(&Action::KillDatabase), "{a:?}");
    // A fence that answers in time is not followed by a kill.
    let (s, _) = run(
        s,
        Event::Engine {
            now: 2600,
            result: EngineResult::Fenced { position: pos(10) },
        },
    );
    let (_, a) = run(s, Event::Tick { now: deadline });
    assert!(!a.contains(&Action::KillDatabase), "{a:?}");
    // A lease already lost: the fence still gets a tenth of the TTL.
    let mut s = st(Phase::Primary);
    (s.role, s.lease_ok_sent_at) = (Role::Primary, 1000);
    let late = 1000 + params.ttl + 500;
    let (s, a) = run(s, Event::LeaseLost { now: late });
    assert!(a.contains(&Action::Fence), "{a:?}");
    assert_eq!(s.fence_deadline, Some(late + params.ttl / 10));
}

#[test]
fn role_graceful_stop_fences_then_revokes() {
    let mut s = st(Phase::Primary);
    s.role = Role::Primary;
    let (s, a) = run(s, Event::StopRequested { now: 1 });
    assert_eq!(a, vec![Action::Fence]);
    let (s, a) = run(
        s,
        Event::Engine {
            now: 2,
            result: EngineResult::Fenced { position: pos(10) },
        },
    );
    // Not primary any more before the lease goes: `/primary` turns 503 before a successor
    // can answer 200, and the node key does not advertise a stopping node as a candidate.
    assert_eq!(
        a[0],
        Action::OnChange {
            role: Role::Fenced,
            previous: Role::Primary,
            primary_address: None
        }
    );
    assert!(matches!(
        a[1],
        Action::PublishNode {
            role: Role::Fenced,
            eligible: false,
            ..
        }
    ));
    assert_eq!(a[2..], [Action::RevokeLease, Action::Exit]);
    assert_eq!(s.phase, Phase::Stopped);
}

#[test]
fn role_switchover_old_primary_fences_then_releases() {
    let mut s = st(Phase::Primary);
    (s.role, s.lease_ok_sent_at) = (Role::Primary, 0);
    s.replicas_sent = Some(vec![("n1".into(), "n1:1".into())]);
    let sw = Switchover {
        forced: false,
        from: "n0".into(),
        to: Some("n1".into()),
    };
    let v = ClusterView {
        primary: Some(pk("n0")),
        switchover: Some(sw),
        nodes: vec![node("n1", 9, 100, true)],
        ..view()
    };
    let (in_maint, a) = run(
        s.clone(),
        cluster(
            1,
            ClusterView {
                maintenance: true,
                ..v.clone()
            },
        ),
    );
    assert!(
        a.is_empty() && in_maint.phase == Phase::Primary,
        "maintenance blocks switchover"
    );
    let (s, a) = run(s, cluster(1, v));
    assert_eq!(a[0], Action::FenceToHandOver);
    let (s, a) = run(
        s,
        Event::Engine {
            now: 2,
            result: EngineResult::Fenced { position: pos(12) },
        },
    );
    assert!(a.contains(&Action::ReleasePrimary));
    assert!(a.contains(&Action::PublishNode {
        role: Role::Replica,
        position: pos(12),
        eligible: false,
        ineligible: Some(Ineligible::Backoff {
            until: 2 + 2 * p().ttl
        }),
        waiting: None,
        needs_rebuild: false,
        caught_up_term: Some(0),
        database_killed: false,
        database_exit: None,
        source: None,
        refused: None,
    }));
    assert_eq!(s.phase, Phase::Replica { following: None });
}

fn set_replicas(a: &[Action]) -> Vec<&Action> {
    a.iter()
        .filter(|a| matches!(a, Action::SetReplicas { .. }))
        .collect()
}

#[test]
fn role_primary_tells_the_engine_its_members_when_they_change() {
    let mut s = st(Phase::Promoting {
        step: PromoteStep::Promoting,
        reason: ClaimReason::Failover,
        from: Some("n1".into()),
    });
    s.role = Role::Replica;
    let v = ClusterView {
        primary: Some(pk("n0")),
        nodes: vec![node("n2", 9, 100, true), node("n0", 10, 100, true)],
        ..view()
    };
    s.view = Some(v.clone());
    let (s, a) = run(
        s,
        Event::Engine {
            now: 1,
            result: EngineResult::Promoted { position: pos(10) },
        },
    );
    assert_eq!(s.phase, Phase::Primary);
    let expected = Action::SetReplicas {
        members: vec![("n2".into(), "n2:1".into())],
    };
    assert_eq!(set_replicas(&a), [&expected], "after promotion: {a:?}");
    let (s, a) = run(s, cluster(2, v.clone()));
    assert!(set_replicas(&a).is_empty(), "unchanged members: {a:?}");
    let mut grown = v;
    grown.nodes.push(node("n1", 8, 100, false));
    grown.revision = 2;
    let (_, a) = run(s, cluster(3, grown));
    let expected = Action::SetReplicas {
        members: vec![("n1".into(), "n1:1".into()), ("n2".into(), "n2:1".into())],
    };
    assert_eq!(set_replicas(&a), [&expected], "a new member: {a:?}");
}

#[test]
fn role_diverged_node_waits_for_an_operator_unless_auto_rebuild() {
    let rejoining = || {
        let mut s = st(Phase::Rejoining { target: pk("n1") });
        s.view = Some(ClusterView {
            primary: Some(pk("n1")),
            ..view()
        });
        s
    };
    let needs = Event::Engine {
        now: 5,
        result: EngineResult::NeedsRebuild,
    };
    // Default: flagged, kept, never cloned over.
    let (s, a) = run(rejoining(), needs.clone());
    assert_eq!(s.phase, Phase::NeedsRebuild);
    assert!(
        !a.iter()
            .any(|a| matches!(a, Action::CloneFrom { .. } | Action::ClearMarker))
    );
    assert!(a.iter().any(|a| matches!(
        a,
        Action::PublishNode {
            needs_rebuild: true,
            eligible: false,
            ..
        }
    )));
    assert!(a.iter().any(|a| matches!(
        a,
        Action::PublishEvent {
            kind: Notice::NeedsRebuild,
            ..
        }
    )));

    // auto_rebuild: the marker goes first, then the clone; no data until it is done.
    let mut params = p();
    params.auto_rebuild = true;
    let (s, a) = decide(&params, rejoining(), needs.clone());
    let clear = a.iter().position(|a| *a == Action::ClearMarker);
    let clone = a
        .iter()
        .position(|a| *a == Action::CloneFrom { primary: pk("n1") });
    assert!(
        matches!((clear, clone), (Some(c), Some(k)) if c < k),
        "{a:?}"
    );
    assert_eq!(
        s.phase,
        Phase::Cloning {
            source: Some(pk("n1"))
        }
    );
    assert!(!s.has_data && !s.eligible(&params, 6));
    // A clone that still does not match stops there instead of looping.
    let (s, a) = decide(&params, s, needs);
    assert_eq!(s.phase, Phase::NeedsRebuild);
    assert!(!a.iter().any(|a| matches!(a, Action::CloneFrom { .. })));
}

/// A clone from n1 finishes while the view names `primary`.
fn clone_from_n1_finished_with(primary: &str) -> (RoleState, Vec<Action>) {
    let mut s = st(Phase::Cloning {
        source: Some(pk("n1")),
    });
    s.has_data = false;
    let (s, _) = run(
        s,
        cluster(
            1,
            ClusterView {
                primary: Some(pk(primary)),
                ..view()
            },
        ),
    );
    run(
        s,
        Event::Engine {
            now: 2,
            result: EngineResult::Cloned { position: pos(10) },
        },
    )
}

#[test]
fn role_clone_finished_replicates_from_its_source_without_following_again() {
    // Every engine's clone ends replicating from its source: asking the engine to follow
    // the same primary again is a redundant operation during which views wait.
    let (s, a) = clone_from_n1_finished_with("n1");
    assert!(
        !a.iter()
            .any(|a| matches!(a, Action::Follow { .. } | Action::CloneFrom { .. })),
        "{a:?}"
    );
    assert_eq!(
        s.phase,
        Phase::Replica {
            following: Some("n1".into())
        }
    );
    assert!(s.has_data && a.contains(&Action::WriteMarker { term: 1 }));
}

#[test]
fn role_clone_finished_after_a_failover_follows_the_new_primary() {
    // Cloning from n1; meanwhile n1 failed and n3 became primary.
    let (s, a) = clone_from_n1_finished_with("n3");
    assert!(
        a.contains(&Action::Follow { primary: pk("n3") }),
        "the clone's source may be gone: {a:?}"
    );
    assert_eq!(s.phase, Phase::Rejoining { target: pk("n3") });
    assert!(s.has_data);
}

#[test]
fn role_late_catch_up_answers_move_nothing_on() {
    let late = |term| Event::Engine {
        now: 3000,
        result: EngineResult::ElectionCaughtUp {
            term,
            position: pos(11),
        },
    };
    // An answer for an earlier round does not make our position final for this one.
    let mut s = st(Phase::Electing {
        since: 1000,
        term: 9,
    });
    s.caught_up_term = None;
    let (s, _) = run(s, late(4));
    assert_eq!(s.caught_up_term, None);
    assert_eq!(s.position, pos(11), "still a lower bound of our data");
    // The answer for this round does.
    let (s, a) = run(s, late(9));
    assert_eq!(s.caught_up_term, Some(9));
    assert!(a.iter().any(|a| matches!(
        a,
        Action::PublishNode {
            caught_up_term: Some(9),
            ..
        }
    )));
    assert!(
        a.contains(&Action::ReadCluster),
        "past the settle window: decide on a fresh read now, not at the next poll"
    );
    // While catching up to the fenced old primary, only `CatchUpTo`'s answer promotes.
    let catching = st(Phase::Promoting {
        step: PromoteStep::CatchingUp,
        reason: ClaimReason::Failover,
        from: None,
    });
    let (s, a) = run(catching, late(9));
    assert!(matches!(
        s.phase,
        Phase::Promoting {
            step: PromoteStep::CatchingUp,
            ..
        }
    ));
    assert!(a.is_empty(), "{a:?}");
    // A primary handing over releases the key only after its own fence answered.
    let (s, a) = run(st(Phase::HandingOver), late(9));
    assert_eq!(s.phase, Phase::HandingOver);
    assert!(!a.contains(&Action::ReleasePrimary));
}

#[test]
fn role_a_rejoined_replica_acts_on_the_view_it_missed_while_joining() {
    let following = |now| Event::Engine {
        now,
        result: EngineResult::Following { position: pos(10) },
    };
    // The primary it joined vanished while the engine worked: it competes at once.
    let mut s = st(Phase::Rejoining { target: pk("n1") });
    s.view = Some(view());
    let (s, a) = run(s, following(100));
    assert!(matches!(s.phase, Phase::Electing { .. }), "{:?}", s.phase);
    assert!(a.iter().any(|a| matches!(a, Action::CatchUp { .. })));
    // Still the same primary: nothing more to do.
    let mut s = st(Phase::Rejoining { target: pk("n1") });
    s.view = Some(ClusterView {
        primary: Some(pk("n1")),
        ..view()
    });
    let (s, a) = run(s, following(100));
    assert_eq!(
        s.phase,
        Phase::Replica {
            following: Some("n1".into())
        }
    );
    assert!(!a.iter().any(|a| matches!(a, Action::Follow { .. })));
}

#[test]
fn role_nobody_follows_a_primary_before_it_is_online() {
    let starting = ClusterView {
        primary: Some(pk("n1")),
        primary_starting: true,
        ..view()
    };
    let follows = |a: &[Action]| {
        a.iter()
            .any(|a| matches!(a, Action::Follow { .. } | Action::CloneFrom { .. }))
    };
    // The winner may still be catching up to the old primary: a replica that is ahead of it
    // for now must not compare histories with it yet.
    for phase in [
        Phase::Replica { following: None },
        Phase::Electing { since: 0, term: 0 },
        Phase::Discovering,
    ] {
        let (s, a) = run(st(phase.clone()), cluster(5000, starting.clone()));
        assert!(!follows(&a), "{phase:?}: {a:?}");
        assert!(!matches!(s.phase, Phase::Electing { .. }), "{phase:?}");
    }
    // Online: follow.
    let (s, a) = run(
        st(Phase::Replica { following: None }),
        cluster(5000, view_with_primary("n1")),
    );
    assert!(follows(&a));
    assert_eq!(s.phase, Phase::Rejoining { target: pk("n1") });
}

fn view_with_primary(id: &str) -> ClusterView {
    ClusterView {
        primary: Some(pk(id)),
        ..view()
    }
}

fn health(now: Millis, healthy: bool, answering: bool, receiving: Option<bool>) -> Event {
    Event::Health {
        now,
        healthy,
        answering,
        receiving,
        position: pos(10),
    }
}

/// A primary whose database does not answer kills it before it lets the key go (a fence
/// would wait as long as the server hangs, and releasing first could let a successor
/// promote while the old server wakes up writable); a fence that fails kills it too.
#[test]
fn role_a_hung_primary_is_killed_before_the_key_is_released() {
    let mut s = st(Phase::Primary);
    s.role = Role::Primary;
    let (s, a) = run(s, health(1, false, false, None));
    assert!(a.contains(&Action::KillDatabase), "{a:?}");
    assert!(!a.contains(&Action::ReleasePrimary), "{a:?}");
    assert!(s.database_killed);
    let (s, a) = run(
        s,
        Event::Engine {
            now: 2,
            result: EngineResult::Killed,
        },
    );
    assert!(a.contains(&Action::ReleasePrimary), "{a:?}");
    assert!(
        a.iter().any(|x| matches!(
            x,
            Action::PublishNode {
                database_killed: true,
                ..
            }
        )),
        "the proof is published: {a:?}"
    );
    assert_eq!(s.phase, Phase::Replica { following: None });

    // Answering but unhealthy: fence first; only a failed fence kills.
    let mut s = st(Phase::Primary);
    s.role = Role::Primary;
    let (s, a) = run(s, health(1, false, true, None));
    assert!(
        a.contains(&Action::FenceToHandOver) && !a.contains(&Action::KillDatabase),
        "{a:?}"
    );
    let (_, a) = run(
        s,
        Event::Engine {
            now: 2,
            result: EngineResult::Failed,
        },
    );
    assert!(a.contains(&Action::KillDatabase), "{a:?}");
    assert!(!a.contains(&Action::ReleasePrimary), "{a:?}");
}

/// A winner whose former primary's agent killed its database does not try to reach it.
#[test]
fn role_a_killed_former_primary_needs_no_remote_fence() {
    let mut s = st(Phase::Claiming {
        reason: ClaimReason::Failover,
        old: Some(pk("n1")),
    });
    let mut old = node("n1", 10, 100, false);
    old.database_killed = true;
    s.view = Some(ClusterView {
        nodes: vec![old],
        ..view()
    });
    let (_, a) = run(s, Event::ClaimResult { now: 1, won: true });
    assert!(
        !a.iter().any(|x| matches!(x, Action::FenceRemote { .. })),
        "{a:?}"
    );
    assert_eq!(a, vec![Action::RunPrePromote]);
}

/// A replica that follows an online primary but does not receive from it stops being a
/// candidate after `stall_after`, says so, and is one again once it receives; the clock
/// does not run while it follows nobody (an election judges how it replicated before).
#[test]
fn role_a_replica_that_does_not_receive_is_no_candidate() {
    let mut s = st(Phase::Replica {
        following: Some("n1".into()),
    });
    s.view = Some(view_with_primary("n1"));
    let limit = p().stall_after();
    let (s, a) = run(s, health(1000, true, true, Some(false)));
    assert!(s.eligible(&p(), 1000), "not yet: {a:?}");
    let (s, a) = run(s, health(1000 + limit, true, true, Some(false)));
    assert!(!s.eligible(&p(), 1000 + limit));
    assert!(
        a.iter().any(
            |x| matches!(x, Action::PublishEvent { kind, .. } if *kind == Notice::ReplicationStalled)
        ),
        "{a:?}"
    );
    assert!(
        a.iter().any(|x| matches!(
            x,
            Action::PublishNode {
                eligible: false,
                ..
            }
        )),
        "{a:?}"
    );
    let (s, _) = run(s, health(2000 + limit, true, true, Some(true)));
    assert!(s.eligible(&p(), 2000 + limit));

    // Following nobody (the primary is gone): the clock stands still.
    let mut s = st(Phase::Replica { following: None });
    s.view = Some(view());
    let (s, _) = run(s, health(1000, true, true, Some(false)));
    let (s, _) = run(s, health(1000 + 10 * limit, true, true, Some(false)));
    assert!(s.eligible(&p(), 1000 + 10 * limit));
}

/// A database that exited says why (event and node key) until it runs healthy again; a
/// primary hands over at once.
#[test]
fn role_a_database_exit_is_reported_until_it_runs_healthy() {
    let mut s = st(Phase::Primary);
    s.role = Role::Primary;
    let (s, a) = run(
        s,
        Event::DatabaseExited {
            now: 1,
            detail: "exit code 1: FATAL: bad".to_owned(),
        },
    );
    assert!(
        a.iter().any(|x| matches!(x, Action::PublishEvent { kind, detail, .. } if *kind == Notice::DatabaseExited && detail.contains("FATAL"))),
        "{a:?}"
    );
    assert!(
        a.contains(&Action::ReleasePrimary),
        "a primary hands over at once: {a:?}"
    );
    assert_eq!(s.database_exit.as_deref(), Some("exit code 1: FATAL: bad"));
    let (s, _) = run(s, health(2, false, true, None));
    assert!(s.database_exit.is_some());
    let (s, a) = run(s, health(3, true, true, None));
    assert_eq!(s.database_exit, None);
    assert!(
        a.iter().any(|x| matches!(
            x,
            Action::PublishNode {
                database_exit: None,
                ..
            }
        )),
        "{a:?}"
    );
}

/// A primary that was healthy while primary gets `health_grace` before one bad probe makes it
/// hand over; a hung database, a replica and a primary never seen healthy as primary get none.
#[test]
fn role_health_grace_holds_only_for_a_primary_that_was_healthy() {
    let grace = p().health_grace;
    assert!(grace > 0, "the unit tests run with a grace");
    let mut s = st(Phase::Primary);
    s.role = Role::Primary;
    let (s, _) = run(s, health(1_000, true, true, None));
    assert!(s.healthy_as_primary);
    // Unhealthy but answering: inside the grace it still counts as healthy, no hand-over.
    let (s, a) = run(s, health(2_000, false, true, None));
    assert!(s.healthy && s.phase == Phase::Primary, "{a:?}");
    assert!(!a.contains(&Action::FenceToHandOver), "{a:?}");
    let (s, a) = run(s, health(2_000 + grace - 1, false, true, None));
    assert!(!a.contains(&Action::FenceToHandOver), "{a:?}");
    // The grace runs out: hand over.
    let (after, a) = run(s.clone(), health(2_000 + grace, false, true, None));
    assert!(a.contains(&Action::FenceToHandOver), "{a:?}");
    assert!(!after.healthy);
    // A healthy probe inside the grace ends it: the next bad run gets a fresh grace.
    let (s2, _) = run(s.clone(), health(2_500, true, true, None));
    let (_, a) = run(s2, health(2_000 + grace, false, true, None));
    assert!(!a.contains(&Action::FenceToHandOver), "{a:?}");
    // A database that does not answer gets no grace: kill it now.
    let (_, a) = run(s, health(2_100, false, false, None));
    assert!(a.contains(&Action::KillDatabase), "{a:?}");

    // A primary whose last healthy probe came before it was primary gets no grace.
    let mut s = st(Phase::Primary);
    s.role = Role::Primary;
    s.healthy_as_primary = false;
    let (_, a) = run(s, health(1_000, false, true, None));
    assert!(a.contains(&Action::FenceToHandOver), "{a:?}");

    // A replica gets no grace: unhealthy at once, so it is not eligible.
    let mut s = st(Phase::Replica {
        following: Some("n1".into()),
    });
    s.role = Role::Replica;
    let (s, _) = run(s, health(1_000, true, true, Some(true)));
    let (s, _) = run(s, health(1_100, false, true, Some(true)));
    assert!(!s.healthy && !s.eligible(&p(), 1_100));
}

/// The cooldown runs from the last *failover* in `history`, read by the machine's own view
/// rules: a later switchover or bootstrap does not restart it.
#[test]
fn role_cooldown_counts_failovers_only() {
    use cluster::wire::{HistoryEntry, HistoryReason, Timestamp};
    let entry = |at: u64, to: &str, reason: HistoryReason| HistoryEntry {
        time: Timestamp::from_unix_millis(at),
        from: None,
        to: to.into(),
        to_address: Some(format!("{to}:1")),
        reason,
        position: Position::default(),
    };
    let entries = [
        entry(100, "n0", HistoryReason::Bootstrap),
        entry(1_000, "n1", HistoryReason::Failover),
        entry(5_000, "n2", HistoryReason::Switchover),
        entry(6_000, "n3", HistoryReason::Other("failover by hand".into())),
    ];
    let (last_failover_at, history_last) = history_facts(&entries);
    assert_eq!(last_failover_at, Some(1_000));
    assert_eq!(history_last.map(|h| h.node), Some("n3".to_owned()));
    let cooldown = p().failover_cooldown;
    let mut s = st(Phase::Electing {
        since: 1_000,
        term: 7,
    });
    s.caught_up_term = Some(7);
    let v = ClusterView {
        last_failover_at,
        history_rev: 7,
        ..view()
    };
    let (_, a) = run(s.clone(), cluster(1_000 + cooldown - 1, v.clone()));
    let a: Vec<_> = a
        .into_iter()
        .filter(|a| !matches!(a, Action::Waiting { .. } | Action::PublishNode { .. }))
        .collect();
    assert_eq!(
        a,
        vec![Action::WakeAt {
            at: 1_000 + cooldown
        }],
        "inside the cooldown of the failover at 1000"
    );
    let (_, a) = run(s, cluster(1_000 + cooldown, v));
    assert!(
        matches!(
            a.first(),
            Some(Action::ClaimPrimary {
                reason: ClaimReason::Failover,
                ..
            })
        ),
        "{a:?}"
    );
}

/// Write economy: a position that merely moved is republished every `POSITION_REFRESH`
/// outside an election; health, eligibility and positions during an election are published at once.
#[test]
fn role_a_moving_position_is_published_slowly_outside_elections() {
    let publishes = |a: &[Action]| {
        a.iter()
            .filter(|a| matches!(a, Action::PublishNode { .. }))
            .count()
    };
    let moved = |now: Millis, offset: u64| Event::Health {
        now,
        healthy: true,
        answering: true,
        receiving: Some(true),
        position: pos(offset),
    };
    let ttl = super::machine::POSITION_REFRESH;
    let mut s = st(Phase::Replica {
        following: Some("n1".into()),
    });
    s.role = Role::Replica;
    // The first verdict is always published.
    let (s, a) = run(s, moved(1_000, 11));
    assert_eq!(publishes(&a), 1, "{a:?}");
    // Positions moving within it: nothing written.
    let (s, a) = run(s, moved(2_000, 12));
    assert_eq!(publishes(&a), 0, "{a:?}");
    let (s, a) = run(s, moved(1_000 + ttl - 1, 13));
    assert_eq!(publishes(&a), 0, "{a:?}");
    // `POSITION_REFRESH` after the last publication: the position goes out.
    let (s, a) = run(s, moved(1_000 + ttl, 14));
    assert!(
        a.contains(&Action::PublishNode {
            role: Role::Replica,
            position: pos(14),
            eligible: true,
            ineligible: None,
            waiting: None,
            needs_rebuild: false,
            caught_up_term: Some(0),
            database_killed: false,
            database_exit: None,
            source: None,
            refused: None,
        }),
        "{a:?}"
    );
    // Health changes go out at once.
    let (s, a) = run(s, health(1_000 + ttl + 10, false, true, Some(true)));
    assert_eq!(publishes(&a), 1, "{a:?}");
    let (_, a) = run(s, moved(1_000 + ttl + 20, 14));
    assert_eq!(publishes(&a), 1, "{a:?}");

    // During an election every move is published.
    let mut s = st(Phase::Electing { since: 0, term: 0 });
    s.published = Some((1_000, true));
    let (_, a) = run(s, moved(1_100, 15));
    assert_eq!(publishes(&a), 1, "{a:?}");
}

/// A node whose data has another identity than the cluster's refuses to join and never
/// touches its data: no follow, no clone, no election, whatever the view says; a node with
/// the cluster's identity, without data, or with data of unknown identity joins as before.
#[test]
fn role_a_node_with_foreign_data_refuses_to_join_and_leaves_it_alone() {
    let v = ClusterView {
        identity: Some("7301".into()),
        primary: Some(pk("n1")),
        ..view()
    };
    let mut s = st(Phase::Discovering);
    s.identity = Some("9999".into());
    let (s, a) = run(s, cluster(5, v.clone()));
    assert!(
        matches!(&s.phase, Phase::Foreign { ours, cluster } if ours == "9999" && cluster == "7301"),
        "{:?}",
        s.phase
    );
    assert!(
        a.iter().any(|a| matches!(
            a,
            Action::PublishEvent {
                kind: Notice::ForeignData,
                ..
            }
        )),
        "{a:?}"
    );
    assert!(
        a.iter().any(|a| matches!(
            a,
            Action::PublishNode {
                eligible: false,
                refused: Some(r),
                ..
            } if r.contains("9999") && r.contains("7301")
        )),
        "{a:?}"
    );
    let touches = |a: &[Action]| {
        a.iter().any(|a| {
            matches!(
                a,
                Action::Follow { .. }
                    | Action::CloneFrom { .. }
                    | Action::ClaimPrimary { .. }
                    | Action::Promote
                    | Action::Initialize
                    | Action::AcquireLock
            )
        })
    };
    assert!(!touches(&a), "{a:?}");
    // Later views, with or without a primary, change nothing.
    let (s, a) = run(
        s,
        cluster(
            6,
            ClusterView {
                primary: None,
                ..v.clone()
            },
        ),
    );
    assert!(
        matches!(s.phase, Phase::Foreign { .. }) && !touches(&a),
        "{a:?}"
    );
    let (s, a) = run(s, Event::Tick { now: 100_000 });
    assert!(
        matches!(s.phase, Phase::Foreign { .. }) && !touches(&a),
        "{a:?}"
    );
    assert!(!s.eligible(&p(), 100_000));

    // The same identity, no data, or no identity known: it joins.
    for (ours, has_data) in [(Some("7301"), true), (Some("9999"), false), (None, true)] {
        let mut s = st(Phase::Discovering);
        s.identity = ours.map(str::to_owned);
        s.has_data = has_data;
        let (s, a) = run(s, cluster(5, v.clone()));
        assert!(
            !matches!(s.phase, Phase::Foreign { .. }),
            "{ours:?} {has_data}"
        );
        assert!(touches(&a), "{ours:?} {has_data}: {a:?}");
    }
}

/// A node that does not take part in failovers says why, in the order an operator fixes
/// things: nofailover, no data, unhealthy, stalled, backing off, lagging.
#[test]
fn role_ineligible_nodes_say_why() {
    let mut params = p();
    let s = st(Phase::Replica { following: None });
    assert_eq!(s.ineligible(&params, 0), None);
    let mut lagging = s.clone();
    lagging.last_primary_position = Some(pos(10 + params.max_lag_on_failover + 5));
    assert_eq!(
        lagging.ineligible(&params, 0),
        Some(Ineligible::Lagging {
            behind: params.max_lag_on_failover + 5,
            max: params.max_lag_on_failover
        })
    );
    let mut backoff = lagging.clone();
    backoff.ineligible_until = 500;
    assert_eq!(
        backoff.ineligible(&params, 100),
        Some(Ineligible::Backoff { until: 500 })
    );
    let mut unhealthy = backoff.clone();
    unhealthy.healthy = false;
    assert_eq!(
        unhealthy.ineligible(&params, 100),
        Some(Ineligible::Unhealthy)
    );
    params.nofailover = true;
    assert_eq!(
        unhealthy.ineligible(&params, 100),
        Some(Ineligible::NoFailover)
    );
    let text = Ineligible::Lagging { behind: 7, max: 5 }.to_string();
    assert!(text.contains("failover.max_lag 5"), "{text}");
}

/// Waits are said once when they start and once when they end, and the node key carries
/// them: a replica with no primary in maintenance, then a new primary not online yet.
#[test]
fn role_waits_are_said_once_at_start_and_end() {
    let waits = |a: &[Action]| {
        a.iter()
            .filter(|a| matches!(a, Action::Waiting { .. }))
            .cloned()
            .collect::<Vec<_>>()
    };
    let s = st(Phase::Replica { following: None });
    let maint = ClusterView {
        maintenance: true,
        ..view()
    };
    let (s, a) = run(s, cluster(1_000, maint.clone()));
    assert_eq!(
        waits(&a),
        vec![Action::Waiting {
            started: Some(Wait::Maintenance),
            ended: None
        }]
    );
    assert!(a.iter().any(|a| matches!(
        a,
        Action::PublishNode {
            waiting: Some((Wait::Maintenance, 1_000)),
            ..
        }
    )));
    let (s, a) = run(s, cluster(2_000, maint));
    assert!(waits(&a).is_empty(), "said once: {a:?}");
    let starting = ClusterView {
        primary: Some(pk("n2")),
        primary_starting: true,
        ..view()
    };
    let (s, a) = run(s, cluster(3_000, starting));
    assert_eq!(
        waits(&a),
        vec![Action::Waiting {
            started: Some(Wait::PrimaryOnline {
                primary: "n2".into()
            }),
            ended: Some((Wait::Maintenance, 2_000)),
        }]
    );
    let online = ClusterView {
        primary: Some(pk("n2")),
        ..view()
    };
    let (s, a) = run(s, cluster(3_500, online));
    assert_eq!(
        waits(&a),
        vec![Action::Waiting {
            started: None,
            ended: Some((
                Wait::PrimaryOnline {
                    primary: "n2".into()
                },
                500
            )),
        }]
    );
    assert_eq!(s.waiting, None);
}

/// An operator's forced failover (a `switchover` request with `forced`) is recorded as
/// `manual_failover`, not as a switchover, and ignores the cooldown like a switchover.
#[test]
fn role_forced_failover_is_recorded_as_manual_failover() {
    let mut s = st(Phase::Electing {
        since: 1_000,
        term: 7,
    });
    s.caught_up_term = Some(7);
    let v = ClusterView {
        history_rev: 7,
        last_failover_at: Some(1_000),
        history_last: Some(pk("n0")),
        switchover: Some(Switchover {
            forced: true,
            from: "n0".into(),
            to: Some("n1".into()),
        }),
        ..view()
    };
    let (_, a) = run(s, cluster(1_000 + p().settle, v));
    assert!(
        a.iter().any(|a| matches!(
            a,
            Action::ClaimPrimary {
                reason: ClaimReason::ManualFailover,
                ..
            }
        )),
        "{a:?}"
    );
}

/// Operators' requests: a replica rebuilds from the online primary or restarts its database
/// (and follows again), once per request; the primary refuses both with the reason.
#[test]
fn role_operator_requests_are_carried_out_once_or_refused() {
    let req = |action| ClusterView {
        primary: Some(pk("n2")),
        requests: vec![("n0".into(), action, 40)],
        ..view()
    };
    let me = p().node_id;
    assert_eq!(me, "n0");
    // reinit on a replica: clone from the primary, say so, delete the request.
    let s = st(Phase::Replica {
        following: Some("n2".into()),
    });
    let (s2, a) = run(s.clone(), cluster(1_000, req(NodeAction::Reinit)));
    assert!(a.contains(&Action::ClearRequest), "{a:?}");
    assert!(
        a.contains(&Action::CloneFrom { primary: pk("n2") }),
        "{a:?}"
    );
    assert!(a.iter().any(|a| matches!(
        a,
        Action::PublishEvent {
            kind: Notice::RequestDone,
            ..
        }
    )));
    assert!(!s2.has_data);
    // The same request seen again (its delete still travelling): nothing more.
    let (_, a) = run(
        RoleState {
            phase: Phase::Replica {
                following: Some("n2".into()),
            },
            ..s2
        },
        cluster(1_100, req(NodeAction::Reinit)),
    );
    assert!(!a.contains(&Action::ClearRequest), "{a:?}");
    // restart on a replica: restart, then follow the primary again.
    let (s3, a) = run(s.clone(), cluster(1_000, req(NodeAction::Restart)));
    assert!(a.contains(&Action::RestartDatabase), "{a:?}");
    assert_eq!(s3.phase, Phase::Restarting);
    assert!(!s3.eligible(&p(), 1_000));
    let (s3, a) = run(
        s3,
        Event::Engine {
            now: 2_000,
            result: EngineResult::Restarted(Ok(())),
        },
    );
    assert!(a.contains(&Action::Follow { primary: pk("n2") }), "{a:?}");
    assert!(
        matches!(s3.phase, Phase::Rejoining { .. }),
        "{:?}",
        s3.phase
    );
    // The primary refuses a restart and a reinit: switch over first.
    let mut prim = st(Phase::Primary);
    prim.role = Role::Primary;
    let own = ClusterView {
        primary: Some(pk("n0")),
        requests: vec![("n0".into(), NodeAction::Restart, 41)],
        ..view()
    };
    let (_, a) = run(prim, cluster(1_000, own));
    assert!(!a.contains(&Action::RestartDatabase), "{a:?}");
    assert!(a.iter().any(|a| matches!(
        a,
        Action::PublishEvent { kind: Notice::RequestFailed, detail, .. } if detail.contains("switch over first")
    )), "{a:?}");
}

/// An in-place restore (issue 18): only the primary carries it out, only in maintenance; it
/// keeps serving while the restore runs (and fences on a lost lease like any primary), then
/// makes the restored data writable and begins the next term of the cluster's identity.
#[test]
fn role_restore_in_place_runs_on_the_primary_in_maintenance_and_begins_a_term() {
    use crate::role::RestoreFailure;
    use cluster::wire::{RestorePoint, Timestamp};
    let point = RestorePoint::Time(Timestamp::from_unix_millis(1_700_000_000_000));
    let req = |maintenance: bool| ClusterView {
        primary: Some(pk("n0")),
        maintenance,
        term: 1,
        requests: vec![("n0".into(), NodeAction::Restore, 40)],
        restore_points: vec![("n0".into(), point.clone())],
        ..view()
    };
    let mut prim = st(Phase::Primary);
    prim.role = Role::Primary;
    prim.data_term = 1;
    let failed = |a: &[Action]| {
        a.iter().any(|a| {
            matches!(
                a,
                Action::PublishEvent {
                    kind: Notice::RequestFailed,
                    ..
                }
            )
        })
    };
    // Without maintenance: refused, nothing restored.
    let (s, a) = run(prim.clone(), cluster(1_000, req(false)));
    assert!(failed(&a) && a.contains(&Action::ClearRequest), "{a:?}");
    assert_eq!(s.phase, Phase::Primary);
    // A replica refuses it: it goes to the primary.
    let (_, a) = run(
        st(Phase::Replica {
            following: Some("n2".into()),
        }),
        cluster(1_000, req(true)),
    );
    assert!(failed(&a), "{a:?}");
    assert!(!a.iter().any(|a| matches!(a, Action::RestoreInPlace { .. })));
    // In maintenance: restore beside the data, still the primary meanwhile.
    let (s, a) = run(prim.clone(), cluster(1_000, req(true)));
    assert!(
        a.contains(&Action::RestoreInPlace {
            point: point.clone()
        }),
        "{a:?}"
    );
    assert_eq!(s.phase, Phase::Restoring);
    assert!(!s.eligible(&p(), 1_000));
    // Once only.
    let (_, again) = run(s.clone(), cluster(1_100, req(true)));
    assert!(
        !again
            .iter()
            .any(|a| matches!(a, Action::RestoreInPlace { .. })),
        "{again:?}"
    );
    // A lost lease while restoring fences like a primary.
    let (lost, a) = run(s.clone(), Event::LeaseLost { now: 1_200 });
    assert!(a.contains(&Action::Fence), "{a:?}");
    assert!(matches!(lost.phase, Phase::SelfFenced { .. }));
    // A failure before the swap: the primary serves as before, the cluster stays in
    // maintenance (no new term).
    let (f, a) = run(
        s.clone(),
        Event::Engine {
            now: 2_000,
            result: EngineResult::RestoredInPlace(Err(RestoreFailure {
                reason: "no backup before the time".into(),
                swapped: false,
            })),
        },
    );
    assert!(failed(&a) && f.phase == Phase::Primary, "{a:?}");
    assert!(!a.iter().any(|a| matches!(a, Action::BeginTerm { .. })));
    // Restored: promote it, then term 2 is recorded locally and in the store.
    let (s, a) = run(
        s,
        Event::Engine {
            now: 3_000,
            result: EngineResult::RestoredInPlace(Ok(pos(5))),
        },
    );
    assert!(a.contains(&Action::Promote), "{a:?}");
    assert_eq!(s.phase, Phase::Restoring);
    let (s, a) = run(
        s,
        Event::Engine {
            now: 3_500,
            result: EngineResult::Promoted { position: pos(6) },
        },
    );
    assert!(a.contains(&Action::WriteMarker { term: 2 }), "{a:?}");
    assert!(
        a.iter()
            .any(|a| matches!(a, Action::BeginTerm { term: 2, .. })),
        "{a:?}"
    );
    assert_eq!((s.phase.clone(), s.data_term), (Phase::Primary, 2));
    // Done is said once the term is recorded, not before.
    let done = |a: &[Action]| {
        a.iter().any(|a| {
            matches!(
                a,
                Action::PublishEvent {
                    kind: Notice::RequestDone,
                    ..
                }
            )
        })
    };
    assert!(!done(&a), "{a:?}");
    let (_, a) = run(
        s.clone(),
        Event::Engine {
            now: 3_600,
            result: EngineResult::TermBegun {
                term: 2,
                result: Ok(()),
            },
        },
    );
    assert!(done(&a), "{a:?}");
    let (_, a) = run(
        s,
        Event::Engine {
            now: 3_600,
            result: EngineResult::TermBegun {
                term: 2,
                result: Err("the primary key is no longer ours".into()),
            },
        },
    );
    assert!(failed(&a) && !done(&a), "{a:?}");
}

/// Data of another term than the cluster's is never promoted and is rebuilt from the new
/// term's primary once it serves; without one it waits, out of every election.
#[test]
fn role_data_of_an_older_term_is_rebuilt_and_never_elected() {
    let mut s = st(Phase::Replica {
        following: Some("n2".into()),
    });
    s.data_term = 1;
    // The new term's primary does not serve yet: wait, ineligible.
    let no_primary = ClusterView { term: 2, ..view() };
    let (w, a) = run(s.clone(), cluster(1_000, no_primary));
    assert!(!a.iter().any(|a| matches!(a, Action::CloneFrom { .. })));
    assert!(
        matches!(
            w.ineligible(&p(), 1_000),
            Some(crate::role::Ineligible::OldTerm {
                ours: 1,
                cluster: 2
            })
        ),
        "{:?}",
        w.ineligible(&p(), 1_000)
    );
    assert!(!a.iter().any(|a| matches!(a, Action::ClaimPrimary { .. })));
    // It serves: rebuild from it.
    let online = ClusterView {
        term: 2,
        primary: Some(pk("n2")),
        ..view()
    };
    let (r, a) = run(s.clone(), cluster(1_000, online.clone()));
    assert!(a.contains(&Action::ClearMarker), "{a:?}");
    assert!(
        a.contains(&Action::CloneFrom { primary: pk("n2") }),
        "{a:?}"
    );
    assert!(!r.has_data);
    // The clone is of term 2.
    let (c, a) = run(
        RoleState {
            view: Some(online),
            ..r
        },
        Event::Engine {
            now: 2_000,
            result: EngineResult::Cloned { position: pos(7) },
        },
    );
    assert!(a.contains(&Action::WriteMarker { term: 2 }), "{a:?}");
    assert_eq!(c.data_term, 2);
    assert!(
        c.ineligible(&p(), 2_000).is_none(),
        "{:?}",
        c.ineligible(&p(), 2_000)
    );
    // Same term: nothing happens.
    let mut same = st(Phase::Replica {
        following: Some("n2".into()),
    });
    same.data_term = 2;
    let (_, a) = run(
        same,
        cluster(
            1_000,
            ClusterView {
                term: 2,
                primary: Some(pk("n2")),
                ..view()
            },
        ),
    );
    assert!(!a.contains(&Action::ClearMarker), "{a:?}");
}

/// A clone that began before an in-place restore began the next term is of the old term, even
/// when it ends after: it is rebuilt again from the new term's primary.
#[test]
fn role_a_clone_begun_before_a_new_term_is_of_the_old_term() {
    let old = ClusterView {
        term: 1,
        primary: Some(pk("n2")),
        ..view()
    };
    let mut s = st(Phase::Discovering);
    s.has_data = false;
    let (s, a) = run(s, cluster(1_000, old));
    assert!(
        a.contains(&Action::CloneFrom { primary: pk("n2") }),
        "{a:?}"
    );
    let new = ClusterView {
        term: 2,
        primary: Some(pk("n2")),
        revision: 2,
        ..view()
    };
    let (s, _) = run(s, cluster(1_500, new.clone()));
    let (s, a) = run(
        s,
        Event::Engine {
            now: 2_000,
            result: EngineResult::Cloned { position: pos(7) },
        },
    );
    assert!(a.contains(&Action::WriteMarker { term: 1 }), "{a:?}");
    assert!(s.old_term());
    let (_, a) = run(
        RoleState {
            phase: Phase::Replica {
                following: Some("n2".into()),
            },
            ..s
        },
        cluster(2_100, ClusterView { revision: 3, ..new }),
    );
    assert!(
        a.contains(&Action::CloneFrom { primary: pk("n2") }),
        "{a:?}"
    );
}

/// A live migration (issue 18): the node that bootstraps from a source leads the cluster as
/// its standby (`LeadStandby`, never `Promote`), and so does the winner of an election while
/// the cluster migrates; a node that names no source takes no part.
#[test]
fn role_a_migrating_cluster_is_led_by_a_standby_of_the_source() {
    let mut mp = p();
    mp.migrate_from = Some("10.0.0.9:5432".into());
    // The bootstrap claim won: lead as a standby, write the marker.
    let s = st(Phase::Bootstrap(BootStep::Claiming));
    let (s, a) = decide(&mp, s, Event::ClaimResult { now: 1, won: true });
    assert!(a.contains(&Action::LeadStandby), "{a:?}");
    assert!(!a.contains(&Action::Promote), "{a:?}");
    let (s, _) = decide(
        &mp,
        s,
        Event::Engine {
            now: 2,
            result: EngineResult::Promoted { position: pos(20) },
        },
    );
    assert_eq!(s.phase, Phase::Primary);
    assert_eq!(s.role, Role::Primary);
    // Without a source in the configuration the same claim promotes plainly.
    let (_, a) = run(
        st(Phase::Bootstrap(BootStep::Claiming)),
        Event::ClaimResult { now: 1, won: true },
    );
    assert!(
        a.contains(&Action::Promote) && !a.contains(&Action::LeadStandby),
        "{a:?}"
    );
    // An election won while the cluster migrates: the winner leads the source's standby.
    let migrating = ClusterView {
        standby_of: Some("10.0.0.9:5432".into()),
        ..view()
    };
    let mut won = st(Phase::Promoting {
        step: PromoteStep::PrePromote,
        reason: ClaimReason::Failover,
        from: Some("n1".into()),
    });
    won.view = Some(migrating.clone());
    let (_, a) = decide(&mp, won.clone(), Event::PrePromoteDone { now: 3, ok: true });
    assert!(
        a.contains(&Action::LeadStandby) && !a.contains(&Action::Promote),
        "{a:?}"
    );
    // A node whose configuration names no source is not eligible while it migrates.
    let mut r = st(Phase::Replica {
        following: Some("n1".into()),
    });
    r.view = Some(migrating);
    assert_eq!(r.ineligible(&p(), 10), Some(Ineligible::NoSource));
    assert_eq!(r.ineligible(&mp, 10), None);
}

/// The cutover runs on the standby leader only, for a migrating cluster only: stop the
/// source, end the migration in the store, then promote; the write outage is said.
#[test]
fn role_cutover_stops_the_source_ends_the_migration_then_promotes() {
    let mut mp = p();
    mp.migrate_from = Some("10.0.0.9:5432".into());
    let req = |standby_of: Option<&str>| ClusterView {
        primary: Some(pk("n0")),
        standby_of: standby_of.map(str::to_owned),
        term: 1,
        requests: vec![("n0".into(), NodeAction::Cutover, 40)],
        ..view()
    };
    let said = |a: &[Action], kind: Notice| {
        a.iter().find_map(|a| match a {
            Action::PublishEvent {
                kind: k, detail, ..
            } if *k == kind => Some(detail.clone()),
            _ => None,
        })
    };
    let mut lead = st(Phase::Primary);
    lead.role = Role::Primary;
    lead.data_term = 1;
    // Not migrating: refused, nothing stopped.
    let (s, a) = decide(&mp, lead.clone(), cluster(1_000, req(None)));
    assert!(
        said(&a, Notice::RequestFailed).is_some_and(|d| d.contains("nothing to cut over")),
        "{a:?}"
    );
    assert!(!a.contains(&Action::StopSource) && s.phase == Phase::Primary);
    // A replica refuses it: it goes to the standby leader.
    let (_, a) = decide(
        &mp,
        st(Phase::Replica {
            following: Some("n0".into()),
        }),
        cluster(1_000, req(Some("10.0.0.9:5432"))),
    );
    assert!(said(&a, Notice::RequestFailed).is_some(), "{a:?}");
    assert!(!a.contains(&Action::StopSource));
    // The standby leader: the source is stopped first.
    let (s, a) = decide(
        &mp,
        lead.clone(),
        cluster(1_000, req(Some("10.0.0.9:5432"))),
    );
    assert!(
        a.contains(&Action::StopSource) && a.contains(&Action::ClearRequest),
        "{a:?}"
    );
    assert!(said(&a, Notice::Cutover).is_some(), "{a:?}");
    assert_eq!(s.phase, Phase::CuttingOver { since: 1_000 });
    // Once only.
    let (_, again) = decide(&mp, s.clone(), cluster(1_100, req(Some("10.0.0.9:5432"))));
    assert!(!again.contains(&Action::StopSource), "{again:?}");
    // A lost lease while cutting over fences like a primary.
    let (lost, a) = decide(&mp, s.clone(), Event::LeaseLost { now: 1_200 });
    assert!(a.contains(&Action::Fence), "{a:?}");
    assert!(matches!(lost.phase, Phase::SelfFenced { .. }));
    // The source could not be stopped: still the standby leader, said why.
    let (f, a) = decide(
        &mp,
        s.clone(),
        Event::Engine {
            now: 1_300,
            result: EngineResult::SourceStopped(Err("permission denied".into())),
        },
    );
    assert!(
        said(&a, Notice::RequestFailed).is_some_and(|d| d.contains("permission denied")),
        "{a:?}"
    );
    assert!(!a.contains(&Action::EndMigration) && f.phase == Phase::Primary);
    // Stopped: end the migration, then promote, then done with the outage.
    let (s, a) = decide(
        &mp,
        s,
        Event::Engine {
            now: 1_400,
            result: EngineResult::SourceStopped(Ok(pos(30))),
        },
    );
    assert_eq!(a, vec![Action::EndMigration]);
    let (s, a) = decide(
        &mp,
        s,
        Event::Engine {
            now: 1_500,
            result: EngineResult::MigrationEnded(Ok(())),
        },
    );
    assert_eq!(a, vec![Action::Promote]);
    let (s, a) = decide(
        &mp,
        s,
        Event::Engine {
            now: 1_750,
            result: EngineResult::Promoted { position: pos(31) },
        },
    );
    assert_eq!(s.phase, Phase::Primary);
    let done = said(&a, Notice::RequestDone).expect("request_done");
    assert!(done.contains("0.750 s"), "{done}");
}

/// An upgrade request on a replica (issue 19): out of the candidates from the request until
/// it has proven itself (a healthy probe after the start, receiving, caught up with the
/// primary's position at the start); the rollback runs when it does not within the deadline,
/// and a rollback that does not bring it back is given up; the primary refuses.
#[test]
fn role_an_upgrade_is_checked_after_the_start_and_rolled_back_past_its_deadline() {
    use cluster::wire::UpgradeOrder;
    let order = UpgradeOrder {
        version: Some("2.0".into()),
        deadline_seconds: 30,
    };
    let v = ClusterView {
        primary: Some(pk("n2")),
        nodes: vec![node("n2", 20, 100, true)],
        requests: vec![("n0".into(), NodeAction::Upgrade, 40)],
        upgrade_orders: vec![("n0".into(), order.clone())],
        ..view()
    };
    let told = |a: &[Action], want: Notice| {
        a.iter().find_map(|a| match a {
            Action::PublishEvent { kind, detail, .. } if *kind == want => Some(detail.clone()),
            _ => None,
        })
    };
    let start = |s: RoleState| {
        let (s, a) = run(s, cluster(1_000, v.clone()));
        assert!(
            a.contains(&Action::UpgradeDatabase {
                version: Some("2.0".into())
            }),
            "{a:?}"
        );
        assert!(a.contains(&Action::ClearRequest), "{a:?}");
        assert!(told(&a, Notice::Upgrading).is_some(), "{a:?}");
        assert_eq!(s.phase, Phase::Upgrading);
        assert!(!s.eligible(&p(), 1_000));
        s
    };
    // Started again: it follows the primary, still no candidate.
    let following = |s: RoleState, now, result| {
        let (s, a) = run(s, Event::Engine { now, result });
        assert!(a.contains(&Action::Follow { primary: pk("n2") }), "{a:?}");
        let (s, _) = run(
            s,
            Event::Engine {
                now: now + 100,
                result: EngineResult::Following { position: pos(15) },
            },
        );
        assert!(
            matches!(s.phase, Phase::Replica { following: Some(_) }),
            "{:?}",
            s.phase
        );
        assert_eq!(s.ineligible(&p(), now + 100), Some(Ineligible::Upgrading));
        s
    };
    let replica = st(Phase::Replica {
        following: Some("n2".into()),
    });

    // The good case: healthy after the start and caught up with the primary's 20.
    let s = following(
        start(replica.clone()),
        2_000,
        EngineResult::Upgraded(Ok(())),
    );
    // A healthy verdict at 15 is not enough: behind the primary's position at the start.
    let (s, a) = run(s, health(3_000, true, true, Some(true)));
    assert!(told(&a, Notice::Upgraded).is_none(), "{a:?}");
    let mut s = s;
    s.position = pos(20);
    let (s, a) = run(s, health(4_000, true, true, Some(true)));
    let done = told(&a, Notice::Upgraded).expect("upgraded");
    assert!(done.contains("3.000 s after the request"), "{done}");
    assert!(s.upgrade.is_none());
    assert!(s.eligible(&p(), 4_000));

    // The bad case: never healthy after the start; past the deadline the rollback runs, then
    // the node proves itself on the old program.
    let s = following(
        start(replica.clone()),
        2_000,
        EngineResult::Upgraded(Ok(())),
    );
    let (s, a) = run(s, health(3_000, false, true, Some(false)));
    assert!(!a.contains(&Action::RollbackDatabase), "{a:?}");
    let (s, a) = run(
        s,
        Event::Tick {
            now: 2_100 + 30_000,
        },
    );
    assert!(a.contains(&Action::RollbackDatabase), "{a:?}");
    assert_eq!(s.phase, Phase::Upgrading);
    let mut s = following(s, 33_000, EngineResult::RolledBack(Ok(())));
    s.position = pos(20);
    let (s, a) = run(s, health(34_000, true, true, Some(true)));
    let back = told(&a, Notice::UpgradeRolledBack).expect("rolled back");
    assert!(back.contains("was not healthy within 30 s"), "{back}");
    assert!(s.upgrade.is_none() && s.eligible(&p(), 34_000));

    // A hook that fails rolls back at once; a rollback that fails too is given up.
    let s = start(replica.clone());
    let (s, a) = run(
        s,
        Event::Engine {
            now: 2_000,
            result: EngineResult::Upgraded(Err("run the upgrade hook: it exited with 100".into())),
        },
    );
    assert!(a.contains(&Action::RollbackDatabase), "{a:?}");
    let (s, a) = run(
        s,
        Event::Engine {
            now: 3_000,
            result: EngineResult::RolledBack(Err("run the rollback hook: timed out".into())),
        },
    );
    let failed = told(&a, Notice::UpgradeFailed).expect("given up");
    assert!(
        failed.contains("exited with 100") && failed.contains("timed out"),
        "{failed}"
    );
    assert!(s.upgrade.is_none());
    assert!(a.contains(&Action::Follow { primary: pk("n2") }), "{a:?}");

    // Without a rollback hook a failure is given up at once.
    let mut no_rollback = p();
    no_rollback.rollback_hook = false;
    let (s, _) = decide(&no_rollback, replica.clone(), cluster(1_000, v.clone()));
    let (_, a) = decide(
        &no_rollback,
        s,
        Event::Engine {
            now: 2_000,
            result: EngineResult::Upgraded(Err("it exited with 1".into())),
        },
    );
    assert!(!a.contains(&Action::RollbackDatabase), "{a:?}");
    assert!(
        told(&a, Notice::UpgradeFailed).is_some_and(|d| d.contains("no rollback hook")),
        "{a:?}"
    );

    // The primary refuses, and so does a node without an upgrade hook.
    let mut prim = st(Phase::Primary);
    prim.role = Role::Primary;
    let own = ClusterView {
        primary: Some(pk("n0")),
        requests: vec![("n0".into(), NodeAction::Upgrade, 41)],
        upgrade_orders: vec![("n0".into(), order)],
        ..view()
    };
    let (_, a) = run(prim, cluster(1_000, own));
    assert!(
        !a.iter()
            .any(|a| matches!(a, Action::UpgradeDatabase { .. })),
        "{a:?}"
    );
    assert!(
        told(&a, Notice::RequestFailed).is_some_and(|d| d.contains("primary")),
        "{a:?}"
    );
    let mut no_hook = p();
    no_hook.upgrade_hook = false;
    let (_, a) = decide(&no_hook, replica, cluster(1_000, v));
    assert!(
        told(&a, Notice::RequestFailed).is_some_and(|d| d.contains("handlers.upgrade")),
        "{a:?}"
    );
}

/// The start of an image; `adopted`: it took over a running primary whose lease was last
/// renewed (sent) at `now`.
fn started(now: Millis, adopted: bool) -> Event {
    Event::Started {
        now,
        has_data: true,
        position: pos(10),
        identity: None,
        term: 1,
        adopted: adopted.then_some(now),
    }
}

/// The view an image that re-executed in place reads: its own primary key, one replica.
fn view_with_own_key() -> ClusterView {
    ClusterView {
        primary: Some(PrimaryKey {
            node: "n0".into(),
            address: "10.0.0.0:5432".into(),
        }),
        nodes: vec![node("n1", 10, 0, true)],
        ..view()
    }
}

#[test]
fn role_an_adopted_primary_resumes_its_role_without_an_election() {
    let (s, a) = run(RoleState::new(), started(1, true));
    assert_eq!(s.phase, Phase::Primary, "the primary from the start: {a:?}");
    assert_eq!(s.role, Role::Primary);
    assert_eq!(s.lease_ok_sent_at, 1, "the previous image's fencing clock");
    let (s, _) = run(s, Event::LeaseGranted { now: 2 });
    let (s, a) = run(s, cluster(3, view_with_own_key()));
    assert_eq!(s.phase, Phase::Primary);
    assert!(
        a.contains(&Action::SetReplicas {
            members: vec![("n1".into(), "n1:1".into())]
        }),
        "{a:?}"
    );
    assert!(
        !a.iter().any(|a| matches!(
            a,
            Action::ClaimPrimary { .. }
                | Action::Promote
                | Action::Fence
                | Action::FenceToHandOver
                | Action::Follow { .. }
        )),
        "no claim, promotion, fence or follow: {a:?}"
    );
}

#[test]
fn role_an_adopted_primary_fences_itself_like_any_primary() {
    let fence_after = p().fence_after();
    // Its lease is not renewed in time (a partition during the hand-over).
    let (s, _) = run(RoleState::new(), started(1, true));
    let (s, a) = run(
        s,
        Event::Tick {
            now: 2 + fence_after,
        },
    );
    assert!(matches!(s.phase, Phase::SelfFenced { .. }), "{:?}", s.phase);
    assert!(a.contains(&Action::Fence), "{a:?}");
    // Its lease is lost.
    let (s, _) = run(RoleState::new(), started(1, true));
    let (s, a) = run(s, Event::LeaseLost { now: 2 });
    assert!(matches!(s.phase, Phase::SelfFenced { .. }), "{:?}", s.phase);
    assert!(a.contains(&Action::Fence), "{a:?}");
    // The key is not its own.
    let (s, _) = run(RoleState::new(), started(1, true));
    let (s, _) = run(s, Event::LeaseGranted { now: 2 });
    let v = ClusterView {
        primary: Some(pk("n1")),
        ..view()
    };
    let (s, a) = run(s, cluster(3, v));
    assert!(matches!(s.phase, Phase::SelfFenced { .. }), "{:?}", s.phase);
    assert!(a.contains(&Action::Fence), "{a:?}");
}

#[test]
fn role_an_adopted_primary_whose_database_restarted_meanwhile_hands_over() {
    // The database crashed and was restarted while the agent re-executed: it did not run
    // on as the primary, so the primary hands over as after any restart.
    let (s, _) = run(RoleState::new(), started(1, true));
    let (s, a) = run(s, Event::DatabaseRestarted { now: 2 });
    assert_eq!(s.phase, Phase::HandingOver, "{a:?}");
    assert!(a.contains(&Action::FenceToHandOver), "{a:?}");
}

#[test]
fn role_a_replica_that_re_executed_starts_like_any_restarted_agent() {
    let (s, _) = run(RoleState::new(), started(1, false));
    assert_eq!(s.phase, Phase::Joining);
    let (s, _) = run(s, Event::LeaseGranted { now: 2 });
    let v = ClusterView {
        primary: Some(pk("n1")),
        ..view()
    };
    let (s, a) = run(s, cluster(3, v));
    assert_eq!(s.phase, Phase::Rejoining { target: pk("n1") });
    assert_eq!(a.first(), Some(&Action::Follow { primary: pk("n1") }));
}

#[test]
fn role_a_hand_over_to_the_next_image_waits_for_a_steady_role() {
    let mut primary = st(Phase::Primary);
    primary.role = Role::Primary;
    assert_eq!(handover_ready(&primary), Ok(HandoverRole::Primary));
    let replica = st(Phase::Replica {
        following: Some("n1".into()),
    });
    assert_eq!(handover_ready(&replica), Ok(HandoverRole::Replica));
    let refused = |s: &RoleState| handover_ready(s).expect_err("refused");
    assert!(refused(&st(Phase::Electing { since: 1, term: 1 })).contains("steady role"));
    assert!(refused(&st(Phase::HandingOver)).contains("steady role"));
    let mut s = primary.clone();
    s.stop_requested = true;
    assert!(refused(&s).contains("stopping"));
    let mut s = primary.clone();
    s.lease_alive = false;
    assert!(refused(&s).contains("lease"));
    let mut s = primary.clone();
    s.fence_deadline = Some(5);
    assert!(refused(&s).contains("lease"));
    let mut s = replica;
    s.upgrade = Some(crate::role::state::UpgradeCheck {
        since: 1,
        deadline: 1000,
        until: None,
        target: None,
        failed: None,
        seen_healthy: false,
    });
    assert!(refused(&s).contains("upgrading"));
}
