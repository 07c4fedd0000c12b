//! [`MainControl`]: how an engine stops and restarts the main process (the database) for
//! operations that need it down — cloning, rewinding, demoting — without owning the child.
//!
//! The agent's process actor owns the child; the agent serves the other end of the channel
//! and turns each [`MainRequest`] into a stop or a start of the main process that is neither
//! restarted by policy nor reported as the main process ending.

use tokio::sync::{mpsc, oneshot};

use crate::engine::{EngineError, StopMode};

/// A request from an engine to the agent about the main process.
#[derive(Debug)]
pub enum MainRequest {
    /// Stop it (stop signal for `mode`, `stop_timeout`, SIGKILL) and keep it down.
    Stop {
        /// How urgently.
        mode: StopMode,
        /// `Ok` once it has exited (or was not running); `Err` with the reason otherwise.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Start it again after a [`MainRequest::Stop`].
    Start {
        /// `Ok` once it is spawned; `Err` with the reason otherwise.
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// A cloneable handle to the agent's control of the main process.
#[derive(Clone, Debug)]
pub struct MainControl {
    tx: mpsc::Sender<MainRequest>,
}

impl MainControl {
    /// A handle and the receiver the agent (or a test) serves.
    pub fn channel() -> (MainControl, mpsc::Receiver<MainRequest>) {
        let (tx, rx) = mpsc::channel(4);
        (MainControl { tx }, rx)
    }

    /// Stop the main process and keep it down; returns once it has exited.
    pub async fn stop(&self, mode: StopMode) -> Result<(), EngineError> {
        self.ask("stop the main process", |reply| MainRequest::Stop {
            mode,
            reply,
        })
        .await
    }

    /// Start the main process again; returns once it is spawned (not necessarily ready).
    pub async fn start(&self) -> Result<(), EngineError> {
        self.ask("start the main process", |reply| MainRequest::Start {
            reply,
        })
        .await
    }

    async fn ask(
        &self,
        operation: &'static str,
        request: impl FnOnce(oneshot::Sender<Result<(), String>>) -> MainRequest,
    ) -> Result<(), EngineError> {
        let (reply, answer) = oneshot::channel();
        let gone = || EngineError::Failed {
            operation,
            reason: "the agent no longer controls the main process (it is stopping)".to_owned(),
        };
        self.tx.send(request(reply)).await.map_err(|_| gone())?;
        answer
            .await
            .map_err(|_| gone())?
            .map_err(|reason| EngineError::Failed { operation, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_reach_the_server_and_answers_come_back() {
        let (ctl, mut rx) = MainControl::channel();
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(req) = rx.recv().await {
                match req {
                    MainRequest::Stop { mode, reply } => {
                        seen.push(format!("stop {mode:?}"));
                        let _ = reply.send(Ok(()));
                    }
                    MainRequest::Start { reply } => {
                        seen.push("start".to_owned());
                        let _ = reply.send(Err("port in use".to_owned()));
                    }
                }
            }
            seen
        });
        ctl.stop(StopMode::Fast).await.expect("stop answered Ok");
        let err = ctl.start().await.expect_err("start answered Err");
        assert!(err.to_string().contains("port in use"), "{err}");
        drop(ctl);
        assert_eq!(server.await.expect("server"), ["stop Fast", "start"]);
    }

    #[tokio::test]
    async fn a_gone_agent_is_an_error_not_a_hang() {
        let (ctl, rx) = MainControl::channel();
        drop(rx);
        let err = ctl.stop(StopMode::Graceful).await.expect_err("no server");
        assert!(err.to_string().contains("no longer controls"), "{err}");
    }
}
