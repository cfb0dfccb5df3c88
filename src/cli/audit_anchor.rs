//! `sombrero audit checkpoint`: the newest signed chain head, to copy somewhere the broker
//! host cannot rewrite (a ticket, a chat message, an S3 Object Lock bucket).

use std::process::ExitCode;

use super::ExitError;
use super::connection;
use crate::backend::Config;

/// Prints the newest signed checkpoint of this host's broker (the keys dir is local only).
pub(super) fn print_checkpoint(g: &Config, json: bool) -> anyhow::Result<ExitCode> {
    if connection::remote_endpoint(g)?.is_some() {
        return Err(ExitError::usage(
            "audit checkpoint reads the broker's keys dir: run it on the broker host, without --broker",
        )
        .into());
    }
    let broker = connection::open(g)?;
    let c = broker
        .newest_checkpoint()
        .map_err(|e| ExitError::refused(e.to_string()))?;
    if json {
        println!("{}", crate::text::to_json_pretty(&c)?);
    } else {
        println!(
            "audit checkpoint seq {} hash {} at {} key {} sig {}",
            c.seq, c.hash, c.at, c.key, c.sig
        );
    }
    Ok(ExitCode::SUCCESS)
}
