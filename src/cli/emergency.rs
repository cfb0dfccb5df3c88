//! `sombrero request --emergency`: the same request through the emergency door.

use crate::remote::RemoteBroker;
use crate::request::{NewRequest, Request};

use crate::config::GlobalOpts;

use super::connection::{fail, open, remote_endpoint};

/// Creates the emergency request on the broker (the daemon with --broker, else embedded).
pub(crate) fn create(g: &GlobalOpts, new: NewRequest, code: &str) -> anyhow::Result<Request> {
    let r = match remote_endpoint(g)? {
        Some(e) => RemoteBroker::connect_with(&e, g)
            .map_err(fail)?
            .create_emergency(new, code),
        None => open(g)?.create_emergency(new, code),
    };
    let r = r.map_err(fail)?;
    if let Some(e) = &r.emergency {
        eprintln!(
            "sombrero: EMERGENCY {} announced; any approver may deny it until {}; then open it with `sombrero open {}`",
            r.id,
            e.veto_ends_at.format("%H:%M:%S UTC"),
            r.id
        );
    }
    Ok(r)
}
