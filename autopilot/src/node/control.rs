//! The agent's control socket, `<state_dir>/control.sock` (mode 0600, so only the agent's
//! user and root reach it): how `autopilot upgrade-self` on the same host talks to the
//! running agent. One JSON request per connection, one JSON answer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tracing::{debug, warn};

/// The socket's name in the state directory.
pub const SOCKET: &str = "control.sock";

/// The most a request may be.
const MAX_REQUEST: u64 = 64 * 1024;

/// How long a client may take to send its request, and the agent to answer.
const IO_LIMIT: Duration = Duration::from_secs(30);

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Which agent runs: version, PID, since when, what it adopted.
    Status,
    /// Re-execute in place from `binary` (see `handover.rs`).
    UpgradeSelf {
        /// The new binary, an absolute path.
        binary: PathBuf,
    },
}

/// The agent's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The request was carried out (or, for `upgrade_self`, the re-execution begins).
    pub ok: bool,
    /// What happened, or why not.
    pub message: String,
    /// The agent, for `status`.
    pub status: Option<AgentStatus>,
}

/// Which agent runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// `autopilot --version`'s number.
    pub version: String,
    /// The agent's PID (unchanged by a re-execution).
    pub pid: u32,
    /// When this image started (Unix ms): a re-execution changes it.
    pub started_at_ms: u64,
    /// The database's PID, while it runs.
    pub main_pid: Option<u32>,
    /// The version of the previous image when this one took over from it in place.
    pub upgraded_from: Option<String>,
    /// The role the node has (`primary`, `replica`, …) for clustered agents.
    pub role: Option<String>,
    /// Why the last in-place upgrade this image attempted failed (its `execve`).
    pub upgrade_failed: Option<String>,
    /// The binary this image runs.
    pub binary: String,
    /// This image is the previous binary again: the new one it was to be could not start.
    #[serde(default)]
    pub fell_back: bool,
}

/// A request for the supervisor, with where its answer goes. For an accepted
/// `upgrade_self` the supervisor passes a sender along: it learns through it that the
/// answer was written before it re-executes.
pub type Call = (
    Request,
    oneshot::Sender<(Answer, Option<oneshot::Sender<()>>)>,
);

/// Listen on `<state_dir>/control.sock` and hand each request to `handle`; runs until the
/// agent exits. A socket left by an earlier run is replaced.
pub fn serve(state_dir: &Path, handle: impl Fn(Call) -> bool + Send + Sync + 'static) {
    let path = state_dir.join(SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener = match bind(&path) {
        Ok(l) => l,
        Err(e) => {
            warn!(socket = %path.display(), cause = %e, "no control socket: `autopilot upgrade-self` cannot reach this agent");
            return;
        }
    };
    let handle = std::sync::Arc::new(handle);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_one(stream, &*handle).await {
                    debug!(cause = %e, "control connection ended");
                }
            });
        }
    });
}

fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    // The state directory as the engines make it (they give their servers' users parts of
    // it); the socket itself is the owner's only.
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

async fn serve_one(
    stream: UnixStream,
    handle: &(impl Fn(Call) -> bool + Send + Sync),
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    tokio::time::timeout(
        IO_LIMIT,
        BufReader::new(read.take(MAX_REQUEST)).read_line(&mut line),
    )
    .await
    .map_err(|_| std::io::Error::other("no request in time"))??;
    let (answer, written) = match serde_json::from_str::<Request>(line.trim()) {
        Err(e) => (
            Answer {
                message: format!(
                    "not a control request ({e}); expected {{\"status\":null}} or {{\"upgrade_self\":{{\"binary\":\"/path\"}}}}"
                ),
                ..Answer::default()
            },
            None,
        ),
        Ok(request) => {
            let (tx, rx) = oneshot::channel();
            if !handle((request, tx)) {
                (
                    Answer {
                        message: "the agent is stopping".into(),
                        ..Answer::default()
                    },
                    None,
                )
            } else {
                match tokio::time::timeout(IO_LIMIT, rx).await {
                    Ok(Ok(answer)) => answer,
                    _ => (
                        Answer {
                            message: "the agent did not answer in time".into(),
                            ..Answer::default()
                        },
                        None,
                    ),
                }
            }
        }
    };
    let mut bytes = serde_json::to_vec(&answer).unwrap_or_default();
    bytes.push(b'\n');
    let sent = write.write_all(&bytes).await.and(write.flush().await);
    if let Some(written) = written {
        let _ = written.send(());
    }
    sent
}

/// Ask the agent whose state directory is `state_dir`; its answer.
pub async fn ask(state_dir: &Path, request: &Request) -> Result<Answer, String> {
    let path = state_dir.join(SOCKET);
    let mut stream = UnixStream::connect(&path).await.map_err(|e| {
        format!(
            "cannot reach the agent at {}: {e} (is it running with this configuration's node.state_dir?)",
            path.display()
        )
    })?;
    let mut bytes = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    stream
        .write_all(&bytes)
        .await
        .map_err(|e| format!("send to {}: {e}", path.display()))?;
    let mut line = String::new();
    tokio::time::timeout(
        IO_LIMIT,
        BufReader::new(stream.take(MAX_REQUEST)).read_line(&mut line),
    )
    .await
    .map_err(|_| format!("{}: no answer within {IO_LIMIT:?}", path.display()))?
    .map_err(|e| format!("read from {}: {e}", path.display()))?;
    if line.trim().is_empty() {
        return Err(format!(
            "{}: the agent closed the connection",
            path.display()
        ));
    }
    serde_json::from_str(line.trim())
        .map_err(|e| format!("{}: not an answer ({e})", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_documented() {
        let r: Request =
            serde_json::from_str(r#"{"upgrade_self":{"binary":"/usr/bin/autopilot"}}"#)
                .expect("upgrade_self");
        assert_eq!(
            r,
            Request::UpgradeSelf {
                binary: "/usr/bin/autopilot".into()
            }
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#""status""#).expect("status"),
            Request::Status
        );
        assert!(serde_json::from_str::<Request>(r#"{"upgrade_self":{"binary":1}}"#).is_err());
    }

    #[tokio::test]
    async fn a_request_gets_its_answer_and_garbage_an_error_naming_the_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        serve(dir.path(), |(request, reply)| {
            let answer = Answer {
                ok: true,
                message: format!("{request:?}"),
                status: None,
            };
            reply.send((answer, None)).is_ok()
        });
        let answer = ask(dir.path(), &Request::Status).await.expect("answer");
        assert!(answer.ok && answer.message == "Status", "{answer:?}");
        let mut raw = UnixStream::connect(dir.path().join(SOCKET))
            .await
            .expect("connect");
        raw.write_all(b"{\"reboot\":true}\n").await.expect("send");
        let mut line = String::new();
        BufReader::new(raw)
            .read_line(&mut line)
            .await
            .expect("read");
        let answer: Answer = serde_json::from_str(&line).expect("answer");
        assert!(!answer.ok);
        assert!(
            answer.message.contains("not a control request"),
            "{}",
            answer.message
        );
        let mode = std::fs::metadata(dir.path().join(SOCKET))
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .expect("stat");
        assert_eq!(mode, 0o600);
    }
}
