//! The stop order: preStop → hand over leadership → stop main → postStop → exit, the path
//! taken when the main process ended on its own, and escalation on a second stop request.

use std::time::Duration;

use handlers::HandlerMsg;
use ractor::ActorRef;
use ractor::rpc::CallResult;
use tracing::{info, warn};

use super::{
    HealthMsg, Lifecycle, Phase, ProcessMsg, REPLY_SLACK, RoleMsg, SupervisorMsg, SupervisorState,
    handler_limit, run_handler,
};

/// preStop → stop main → postStop → exit.
pub(super) fn begin_stop(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState) {
    let Some(periodic) = enter_stopping(state) else {
        return;
    };
    let handler = state.handlers.pre_stop.clone();
    let limit = handler_limit(state.config.handlers.pre_stop.as_ref());
    let env = state.env.with_event("preStop").vars();
    let role = state.role.clone();
    let me = myself.clone();
    tokio::spawn(async move {
        // No health check or job may still be running when preStop starts.
        for actor in periodic {
            actor.stop_and_wait(None, Some(limit)).await.ok();
        }
        if let Some(handler) = handler {
            run_handler(&handler, env, limit).await;
        }
        hand_over(role).await;
        let _ = me.cast(SupervisorMsg::PreStopDone);
    });
}

/// The main process ended for good on its own: hand over leadership → postStop → exit.
pub(super) fn begin_stop_after_exit(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState) {
    if let Some(periodic) = enter_stopping(state) {
        for actor in periodic {
            actor.stop(None);
        }
        let role = state.role.clone();
        let me = myself.clone();
        tokio::spawn(async move {
            hand_over(role).await;
            // The process actor answers at once: there is nothing left to stop.
            let _ = me.cast(SupervisorMsg::PreStopDone);
        });
    }
}

/// How long a primary may take to fence itself and revoke its lease when stopping.
const HANDOVER_LIMIT: Duration = Duration::from_secs(30);

/// Ask the role actor to hand over leadership (fence, revoke the lease) and wait for it.
pub(super) async fn hand_over(role: Option<ActorRef<RoleMsg>>) {
    if let Some(role) = role
        && !matches!(
            role.call(RoleMsg::Stop, Some(HANDOVER_LIMIT)).await,
            Ok(CallResult::Success(()))
        )
    {
        warn!("leadership hand-over did not finish; peers take over when the lease expires");
    }
}

/// Move to `Stopping` and hand back the periodic handler actors (health, jobs) for the
/// caller to stop; `None` when already stopping.
pub(super) fn enter_stopping(state: &mut SupervisorState) -> Option<Vec<ActorRef<HandlerMsg>>> {
    if state.phase == Phase::Stopping {
        return None;
    }
    state.phase = Phase::Stopping;
    let _ = state.health.cast(HealthMsg::Lifecycle(Lifecycle::Stopping));
    let mut periodic: Vec<_> = state.handlers.jobs.drain(..).collect();
    periodic.extend(state.handlers.health.take());
    Some(periodic)
}

pub(super) fn stop_main(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState) {
    let Some(process) = state.process.clone() else {
        let _ = myself.cast(SupervisorMsg::MainStopped(None));
        return;
    };
    let limit = state.config.process.stop_timeout + REPLY_SLACK;
    let me = myself.clone();
    tokio::spawn(async move {
        let status = match process.call(ProcessMsg::Stop, Some(limit)).await {
            Ok(CallResult::Success(status)) => status,
            _ => None,
        };
        let _ = me.cast(SupervisorMsg::MainStopped(status));
    });
}

pub(super) fn post_stop(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState) {
    let handler = state.handlers.post_stop.clone();
    match handler {
        Some(handler) if !state.escalated => {
            let limit = handler_limit(state.config.handlers.post_stop.as_ref());
            let env = state.env.with_event("postStop").vars();
            let me = myself.clone();
            tokio::spawn(async move {
                run_handler(&handler, env, limit).await;
                let _ = me.cast(SupervisorMsg::PostStopDone);
            });
        }
        _ => {
            let _ = myself.cast(SupervisorMsg::PostStopDone);
        }
    }
}

/// A second stop request: kill running handlers and the main process group now.
pub(super) fn escalate(state: &mut SupervisorState) {
    state.escalated = true;
    if let Some(role) = &state.role {
        role.stop(None);
    }
    stop_actor(&state.handlers.pre_stop);
    stop_actor(&state.handlers.post_stop);
    if let Some(p) = &state.process {
        let _ = p.cast(ProcessMsg::Escalate);
    }
}

pub(super) fn finish(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState, code: i32) {
    state.exit_code = Some(code);
    info!(exit_code = code, "agent exiting");
    myself.stop(None);
}

pub(super) fn stop_actor(actor: &Option<ActorRef<HandlerMsg>>) {
    if let Some(a) = actor {
        a.stop(None);
    }
}
