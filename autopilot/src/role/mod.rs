//! The role state machine (design §3 "Role", §4): decides, for one node, when to bootstrap,
//! follow, elect, promote, fence and hand over — as a **pure function**
//! [`decide`]`(params, state, event) -> (state, actions)`.
//!
//! # Shape
//!
//! - [`Event`]s come from the executor (the Role actor): lease and keep-alive results from the
//!   Store, cluster views (a fresh read or the watch cache), engine results, health, timers,
//!   handler results, stop requests. Each carries `now` in milliseconds; the machine never reads
//!   a clock, so tests control time.
//! - [`Action`]s go back to the executor, which carries them out in order and feeds answers back
//!   as events. It makes no decisions: store actions are single etcd operations or transactions,
//!   engine actions single database operations.
//! - [`RoleState`] holds a [`Phase`] (what we wait for) and the facts learned so far.
//!
//! # Safety, and where each invariant is enforced
//!
//! - **I1 (one writer).** A primary fences itself once no keep-alive *sent* in the last
//!   `fence_after = ttl * fence_after_permille / 1000` succeeded (`machine::check_fence`); the
//!   lease cannot expire before `ttl` after that send, so the fence lands first. A winner fences
//!   the previous primary (named by `history`) over its database connection before promoting,
//!   covering a frozen agent whose database still runs. A fenced node unfences only when a
//!   keep-alive sent *after* the fence succeeded and the key is still its own.
//! - **I3 (never re-initialise).** `Initialize` is only emitted under the `lock`, after a read
//!   under the lock showed neither `initialized` nor `primary`; the claim that writes
//!   `initialized` is the same transaction that creates `primary`. A node without data is never
//!   eligible.
//! - **I4 (maintenance).** No claim, promotion or key release while the view shows maintenance.
//! - **I5 (cooldown).** Failover claims check `history`'s last failover time and are conditional
//!   on `history`'s revision, so stale reads cannot pass the check twice.
//! - **I6 (graceful stop).** Fence, revoke the lease, exit.
//!
//! `sim.rs` runs three nodes against a simulated etcd with faults and checks these properties
//! after every step (see `proptests.rs`); `tests.rs` holds the unit tests of single transitions.

mod bootstrap;
mod failover;
mod handover;
mod machine;
mod primary;
mod requests;
mod state;
mod types;
mod upgrade;
mod view;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

pub use handover::{HandoverRole, ready as handover_ready};
pub use machine::{POSITION_REFRESH, decide};
pub use state::{BootStep, Ineligible, Phase, PromoteStep, RoleState, Wait};
pub use types::{
    Action, ClaimReason, ClusterView, EngineResult, Event, Facts, Millis, NodeAction, NodeId,
    NodeInfo, Notice, Position, PrimaryKey, RestoreFailure, Role, RoleParams, Switchover,
};
pub use view::{UNREADABLE, address, history_facts};
