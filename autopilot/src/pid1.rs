//! PID-1 duties: adopt orphans, and turn Unix signals into supervisor messages.
//!
//! Reaping itself belongs to `handlers::reaper`, the only code that calls `wait`: it reaps
//! every exited child, owned or orphaned. Here we make sure orphans are ours to reap (as
//! PID 1 the kernel re-parents them to us; otherwise we become a child subreaper) and that
//! every signal an operator or container runtime sends reaches the supervisor.

use nix::sys::signal::Signal;
use nix::unistd::getpid;
use ractor::ActorRef;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{debug, warn};

use crate::node::SupervisorMsg;

/// The signals the agent handles: TERM and INT start the stop order; the others are
/// forwarded to the main process.
pub const HANDLED_SIGNALS: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Become the reaper of orphaned descendants when not running as PID 1.
pub fn adopt_orphans() {
    if getpid().as_raw() == 1 {
        debug!("running as PID 1");
        return;
    }
    if let Err(e) = handlers::reaper::set_child_subreaper() {
        warn!(cause = %e, "failed to become child subreaper; orphaned descendants will be reaped by init instead");
    }
}

/// The agent's signal handlers, installed before anything is started so that no signal
/// sent to the agent is lost (as PID 1, an unhandled signal would be silently ignored).
pub struct SignalStreams(Vec<(Signal, tokio::signal::unix::Signal)>);

impl SignalStreams {
    /// Install handlers for [`HANDLED_SIGNALS`]. Must be called inside the runtime.
    pub fn install() -> std::io::Result<Self> {
        HANDLED_SIGNALS
            .iter()
            .map(|&sig| Ok((sig, signal(SignalKind::from_raw(sig as i32))?)))
            .collect::<std::io::Result<_>>()
            .map(Self)
    }

    /// Cast every signal received from now on to the supervisor, until it stops.
    pub fn forward_to(self, supervisor: ActorRef<SupervisorMsg>) {
        for (sig, mut stream) in self.0 {
            let supervisor = supervisor.clone();
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    debug!(signal = %sig, "signal received");
                    if supervisor.cast(SupervisorMsg::Signal(sig)).is_err() {
                        break;
                    }
                }
            });
        }
    }
}
