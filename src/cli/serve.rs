//! `sombrero serve`: runs the broker as a daemon for thin clients.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use tokio::sync::watch;

use crate::api::Endpoint;
use crate::cli::ExitError;
use crate::config::GlobalOpts;
use crate::serve::hub::Hub;
use crate::serve::unix::UnixSocket;
use crate::serve::{AppState, router};

use super::access::{fail, open_local};

/// `sombrero serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen: `unix:PATH` (the peer's OS user is the identity; the socket is mode
    /// 0660, so its group is who may talk to the broker) or `tcp://ADDR` (TLS and an IAM
    /// identity proof). Repeat for several.
    #[arg(long = "listen", value_name = "ADDR", required = true)]
    pub listen: Vec<Endpoint>,
}

/// Runs `sombrero serve` until SIGINT or SIGTERM.
pub fn serve(g: &GlobalOpts, a: ServeArgs) -> anyhow::Result<ExitCode> {
    if let Some(Endpoint::Tcp(addr)) = a.listen.iter().find(|e| matches!(e, Endpoint::Tcp(_))) {
        return Err(ExitError::usage(format!(
            "--listen tcp://{addr}: TCP needs TLS and IAM identity: not wired yet; use --listen unix:PATH"
        ))
        .into());
    }
    // The daemon owns the data dir whatever --broker or the config file say.
    let broker = Arc::new(open_local(g)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (stop, stopping) = watch::channel(false);
        // Sessions are opened with the daemon's own fleet credentials, recordings directory
        // and recorder key; without a usable fleet the rest of the API still serves.
        let sessions = match super::session::session_deps(g, broker.clone()).await {
            Ok(deps) => Ok(Hub::new(deps)),
            Err(e) => {
                tracing::warn!(error = %e, "no fleet: this broker will not open sessions");
                eprintln!(
                    "sombrero: no fleet ({e:#}); sessions cannot be opened through this broker"
                );
                Err(format!("{e:#}"))
            }
        };
        let state = AppState::new(broker, stopping.clone())
            .map_err(fail)?
            .with_sessions(sessions);
        let app = router(state.clone());
        let mut sockets = Vec::new();
        for e in &a.listen {
            if let Endpoint::Unix(path) = e {
                let s = UnixSocket::bind(path)
                    .await
                    .map_err(|e| ExitError::usage(e.to_string()))?;
                sockets.push(s);
            }
        }
        let upkeep = tokio::spawn(state.clone().upkeep());
        let servers: Vec<_> = sockets
            .into_iter()
            .map(|s| tokio::spawn(s.serve(app.clone(), stopping.clone())))
            .collect();
        let listening: Vec<String> = a.listen.iter().map(ToString::to_string).collect();
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
        Ok(ExitCode::SUCCESS)
    })
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
