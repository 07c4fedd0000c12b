//! The telemetry actor: owns the HTTP listener task (HTTPS only when `telemetry.tls.cert` is
//! set) and the periodic recorder upkeep and host sampling.

use axum::Router;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::host::HostSampler;
use super::http::{HttpState, router};
use super::status::NodeStatus;
use cluster::secret::TlsIdentity;
use listen::{Limits, tls};

/// How often histograms are compacted and host metrics sampled.
const SAMPLE_PERIOD: Duration = Duration::from_secs(5);

/// Serves `/metrics` and `/health`; holds no state itself.
pub struct TelemetryActor;

/// What the telemetry actor needs.
pub struct TelemetryArgs {
    /// Where to listen; `None` serves nothing but still samples host metrics.
    pub listen: Option<SocketAddr>,
    /// The certificate and key to serve HTTPS with (`telemetry.tls`); `None` serves HTTP.
    pub tls: Option<TlsIdentity>,
    /// The installed recorder.
    pub metrics: PrometheusHandle,
    /// The node status to serve on `/health`.
    pub status: watch::Receiver<NodeStatus>,
    /// The node's role for `/primary` and `/replica`; `None` for a standalone agent.
    pub role: Option<watch::Receiver<super::PublishedRole>>,
    /// Directory whose filesystem is reported in the disk gauges.
    pub dir: PathBuf,
    /// The node's own routes beside `/health` (the MariaDB clone stream); empty otherwise.
    pub routes: Router,
}

/// Messages of the telemetry actor.
#[derive(Debug)]
pub enum TelemetryMsg {
    /// Run recorder upkeep and sample host metrics.
    Sample,
}

/// State owned by the running actor.
pub struct TelemetryState {
    /// Cancels the HTTP server on stop.
    shutdown: CancellationToken,
    /// The recorder, for upkeep.
    metrics: PrometheusHandle,
    /// Host metrics; `None` when sysinfo cannot read this system.
    host: Option<HostSampler>,
}

impl Actor for TelemetryActor {
    type Msg = TelemetryMsg;
    type State = TelemetryState;
    type Arguments = TelemetryArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: TelemetryArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let shutdown = CancellationToken::new();
        if let Some(addr) = args.listen {
            let listener = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|e| {
                    format!(
                        "listen on {addr} for telemetry: {e}; set telemetry.listen to a free address, or `off`"
                    )
                })?;
            let bound = listener.local_addr().unwrap_or(addr);
            let limits = Limits::agent();
            // Validation built the same configuration, so this fails only if the files were
            // replaced by something unusable between load and start (they are read at load).
            let acceptor = match &args.tls {
                Some(id) => Some(tls::acceptor(
                    tls::server_config(&id.cert.pem, id.key.expose()).map_err(|e| {
                        format!(
                            "serve HTTPS with telemetry.tls.cert {} and key {}: {e}",
                            id.cert.path.display(),
                            id.key.path.display()
                        )
                    })?,
                    &limits,
                )),
                None => None,
            };
            info!(
                address = %bound,
                tls = acceptor.is_some(),
                max_connections = limits.max_connections,
                max_per_client = limits.max_per_client,
                "telemetry listening"
            );
            let app = router(
                HttpState {
                    metrics: args.metrics.clone(),
                    status: args.status,
                    role: args.role,
                },
                args.routes,
            );
            let server = listen::server(listener, limits, "telemetry")
                .map_err(|e| format!("serve telemetry on {addr}: {e}"))?;
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            let token = shutdown.clone();
            tokio::spawn(async move {
                token.cancelled().await;
                h.graceful_shutdown(Some(Duration::from_secs(1)));
            });
            tokio::spawn(async move {
                let app = app.into_make_service_with_connect_info::<SocketAddr>();
                let server = server.handle(handle);
                let served = match acceptor {
                    Some(acceptor) => server.acceptor(acceptor).serve(app).await,
                    None => server.serve(app).await,
                };
                if let Err(e) = served {
                    error!(cause = %e, "telemetry listener failed");
                }
            });
        }
        myself.send_interval(SAMPLE_PERIOD, || TelemetryMsg::Sample);
        let mut host = HostSampler::new(args.dir);
        if let Some(h) = host.as_mut() {
            h.sample();
        }
        Ok(TelemetryState {
            shutdown,
            metrics: args.metrics,
            host,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TelemetryMsg::Sample => {
                state.metrics.run_upkeep();
                if let Some(h) = state.host.as_mut() {
                    h.sample();
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.shutdown.cancel();
        Ok(())
    }
}
