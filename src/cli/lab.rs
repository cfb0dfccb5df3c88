//! `sombrero lab`: serve the local SSM-compatible lab fleet.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::backend::Config;
use crate::cli::ExitError;
use crate::lab::{self, Lab, LabConfig};

/// `sombrero lab`.
#[derive(Debug, Args)]
pub struct LabArgs {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Write the endpoint URL to this file once listening.
    #[arg(long, value_name = "FILE")]
    pub endpoint_file: Option<PathBuf>,
}

/// What to tell the person once the lab listens: the URL and the environment that points
/// the AWS SDK and CLI (and `sombrero`) at it.
pub fn banner(lab: &Lab) -> String {
    let url = lab.endpoint_url();
    let mut s = format!("lab listening: {url}\n\nnodes:\n");
    for n in lab.nodes() {
        s.push_str(&format!("  {}  home {}\n", n.id, n.home.display()));
    }
    s.push_str(&format!(
        "\nto use it from another terminal:\n\
         \x20 export AWS_ENDPOINT_URL_SSM={url}\n\
         \x20 export AWS_ENDPOINT_URL_RESOURCE_GROUPS_TAGGING_API={url}\n\
         \x20 export AWS_ACCESS_KEY_ID=lab AWS_SECRET_ACCESS_KEY=lab AWS_REGION=us-east-1\n\
         \x20 sombrero fleet          # or: sombrero --endpoint-url {url} fleet\n\n\
         Ctrl-C (or SIGTERM, SIGHUP) stops the lab and deletes its nodes.\n"
    ));
    s
}

/// Writes the URL (and a newline) atomically: readers polling the file never see half a URL.
fn write_endpoint_file(path: &Path, url: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{url}\n"))
        .and_then(|_| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write the endpoint file {}", path.display()))
}

/// Runs `sombrero lab`.
pub fn run(g: &Config, a: LabArgs) -> anyhow::Result<ExitCode> {
    let listen: SocketAddr = a.listen.parse().map_err(|_| {
        ExitError::usage(format!(
            "--listen {:?} is not an address like 127.0.0.1:0",
            a.listen
        ))
    })?;
    if !listen.ip().is_loopback() {
        return Err(ExitError::refused(format!(
            "the lab listens on loopback only (it checks no signatures); use 127.0.0.1:PORT, not {listen}"
        ))
        .into());
    }
    crate::cli::init_logging(g.paths().map_err(super::connection::fail)?)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let lab = lab::start(LabConfig {
            listen,
            nodes: a.nodes,
            ..LabConfig::default()
        })
        .await?;
        if let Some(f) = &a.endpoint_file {
            write_endpoint_file(f, &lab.endpoint_url())?;
        }
        let mut out = std::io::stdout().lock();
        out.write_all(banner(&lab).as_bytes())?;
        out.flush()?;
        drop(out);
        let signal = stop_signal().await?;
        tracing::info!(signal, "stopping the lab");
        lab.shutdown().await;
        if let Some(f) = &a.endpoint_file {
            let _ = std::fs::remove_file(f);
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Waits for SIGINT, SIGTERM or SIGHUP: a service manager, `kill` or a closed terminal stop
/// the lab as Ctrl-C does, so the nodes' scratch homes never outlive it.
async fn stop_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    Ok(tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    })
}
