//! `sombrero serve`: runs the broker as a daemon for thin clients.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use tokio::sync::watch;

use crate::backend::Config;
use crate::cli::ExitError;
use crate::recording::RecorderKey;
use crate::serve::gate::{Gate, raise_nofile};
use crate::serve::hub::Hub;
use crate::serve::recordings::Archive;
use crate::serve::sts::{ServerId, Verifier};
use crate::serve::tcp::TlsSocket;
use crate::serve::tls::ServerTls;
use crate::serve::unix::UnixSocket;
use crate::serve::{AppState, router};
use crate::wire::Endpoint;
use crate::wire::proof::StsEndpoint;

use super::connection::fail;
use crate::backend::embedded::Embedded;

/// `sombrero serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen: `unix:PATH` (the peer's OS user is the identity; the socket is mode
    /// 0660, so its group is who may talk to the broker) or `tcp://ADDR` (TLS and an IAM
    /// identity proof). Repeat for several.
    #[arg(long = "listen", value_name = "ADDR", required = true)]
    pub listen: Vec<Endpoint>,
    /// TLS certificate chain (PEM, leaf first) for `tcp://` listeners; there is no plaintext TCP.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// STS endpoint that checks clients' identity proofs (https; http only on loopback, for
    /// an emulator). Default: the regional endpoint (https://sts.REGION.amazonaws.com) of
    /// --region or the AWS default chain.
    #[arg(long, value_name = "URL")]
    pub sts_endpoint: Option<String>,
    /// The exact name clients' identity proofs must be bound to. Default: any DNS name or
    /// address the TLS certificate is valid for; required when the certificate has a wildcard.
    #[arg(long, value_name = "NAME")]
    pub server_id: Option<String>,
    /// Seconds a session's client may answer nothing (not even a ping) before the daemon treats
    /// it as gone; the session then ends as a lost connection unless it reconnects in time.
    #[arg(long, value_name = "SECS", default_value_t = 45)]
    pub client_silence_secs: u64,
}

/// What `tcp://` listeners need: the TLS config and the proof verifier.
struct TcpSetup {
    tls: ServerTls,
    verifier: Verifier,
}

/// Loads the certificate and sets up proof checking, when a `tcp://` listener is asked for.
async fn tcp_setup(g: &Config, a: &ServeArgs) -> anyhow::Result<Option<TcpSetup>> {
    if !a.listen.iter().any(|e| matches!(e, Endpoint::Tcp(_))) {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&a.tls_cert, &a.tls_key) else {
        return Err(ExitError::usage(
            "--listen tcp://... needs --tls-cert and --tls-key: the broker serves TCP only over TLS",
        )
        .into());
    };
    let tls = ServerTls::from_pem_files(cert, key).map_err(|e| ExitError::usage(e.to_string()))?;
    let endpoint = match &a.sts_endpoint {
        Some(url) => StsEndpoint::parse(url),
        None => {
            let sdk = g.aws.aws_config().await;
            let region = sdk.region().ok_or_else(|| {
                ExitError::usage(
                    "no AWS region for the STS endpoint: set --region or --sts-endpoint",
                )
            })?;
            StsEndpoint::regional(region.as_ref())
        }
    }
    .map_err(|e| ExitError::usage(e.to_string()))?;
    let server_id = ServerId::for_tls(a.server_id.as_deref(), &tls)
        .map_err(|e| ExitError::usage(e.to_string()))?;
    let verifier =
        Verifier::new(endpoint, server_id).map_err(|e| ExitError::usage(e.to_string()))?;
    Ok(Some(TcpSetup { tls, verifier }))
}

/// Runs `sombrero serve` until SIGINT or SIGTERM.
pub fn serve(g: &Config, a: ServeArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Bad TLS or STS options are refused before the data dir is touched.
    let tcp = rt.block_on(tcp_setup(g, &a))?;
    // The daemon owns the data dir whatever --broker or the config file say.
    let embedded = Embedded::new(g.clone());
    let broker = embedded.broker().map_err(fail)?;
    let archive = archive(g)?;
    let outcome = rt.block_on(async move {
        let (stop, stopping) = watch::channel(false);
        // Sessions are opened with the daemon's own fleet credentials, recordings directory
        // and recorder key; without a usable fleet the rest of the API still serves.
        // The same fleet lists the nodes and runs the rogue scan for thin clients.
        let (sessions, fleet) = match embedded.session_deps().await.map_err(fail) {
            Ok(deps) => {
                let fleet = Ok(Arc::clone(&deps.fleet));
                (Ok(Hub::new(deps)), fleet)
            }
            Err(e) => {
                tracing::warn!(error = %e, "no fleet: this broker will not open sessions");
                eprintln!(
                    "sombrero: no fleet ({e:#}); sessions cannot be opened through this broker"
                );
                (Err(format!("{e:#}")), Err(format!("{e:#}")))
            }
        };
        let state = AppState::new(broker, stopping.clone())
            .map_err(fail)?
            .with_sessions(sessions)
            .with_fleet(fleet)
            .with_recordings(archive)
            .with_client_silence(std::time::Duration::from_secs(a.client_silence_secs.max(1)));
        let app = router(state.clone());
        // One cap for all listeners, sized by the descriptor limit (raised to the hard one).
        let gate = Gate::for_limit(raise_nofile());
        tracing::info!(
            global = gate.global(),
            per_peer = crate::serve::gate::PER_PEER,
            per_address = crate::serve::gate::PER_ADDRESS,
            reserve = crate::serve::gate::RESERVE,
            "connection caps"
        );
        let mut servers = Vec::new();
        let mut listening = Vec::new();
        for e in &a.listen {
            match e {
                Endpoint::Unix(path) => {
                    let s = UnixSocket::bind(path)
                        .await
                        .map_err(|e| ExitError::usage(e.to_string()))?;
                    servers.push(tokio::spawn(s.serve(
                        app.clone(),
                        Arc::clone(&gate),
                        stopping.clone(),
                    )));
                    listening.push(e.to_string());
                }
                Endpoint::Tcp(addr) => {
                    let tcp = tcp
                        .as_ref()
                        .ok_or_else(|| anyhow::anyhow!("no TLS set up for {e}"))?;
                    let s = TlsSocket::bind(addr, &tcp.tls, tcp.verifier.clone())
                        .await
                        .map_err(|e| ExitError::usage(e.to_string()))?;
                    // The bound port, when 0 was asked for.
                    listening.push(format!("tcp://{}", s.local_addr()?));
                    servers.push(tokio::spawn(s.serve(
                        app.clone(),
                        Arc::clone(&gate),
                        stopping.clone(),
                    )));
                }
            }
        }
        let upkeep = tokio::spawn(state.clone().upkeep());
        // Notifications, escalations: delivered off the request path, never slowing it.
        let notifier = tokio::spawn(crate::notify::worker::run(
            Arc::clone(&state.broker),
            stopping.clone(),
        ));
        tracing::info!(listen = ?listening, "serving");
        eprintln!("sombrero: listening on {}", listening.join(", "));
        let why = shutdown_signal().await?;
        tracing::info!(signal = why, "shutting down");
        let _ = stop.send(true);
        if let Ok(hub) = state.sessions() {
            // Live sessions end as the broker's stop: closed, sealed and replaced before exit.
            hub.shutdown().await;
        }
        for s in servers {
            let _ = s.await;
        }
        let _ = upkeep.await;
        let _ = notifier.await;
        // Refusals over the audit budget this last minute still get their summary event.
        if let Err(e) = state.write(|b| b.record_suppressed(true)).await {
            tracing::warn!(error = %e.message, "recording suppressed refusals failed");
        }
        Ok(ExitCode::SUCCESS)
    });
    // A blocking call still running (a slow listing) must not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    outcome
}

/// The daemon's recordings: the directory its sessions record into and its recorder key
/// (created now if missing, so clients can always fetch the public half).
fn archive(g: &Config) -> anyhow::Result<Arc<Archive>> {
    let paths = g.paths().map_err(fail)?;
    let dir = g.recordings_dir().map_err(fail)?.to_path_buf();
    let key = RecorderKey::load_or_create(&paths.keys())
        .map(|k| k.verifying_key())
        .map_err(|e| {
            tracing::warn!(error = %e, "recordings cannot be verified or reviewed");
            e.to_string()
        });
    Ok(Archive::new(dir, key))
}

/// Waits for SIGINT or SIGTERM; returns which.
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
