//! `sombrero request --emergency`: the same request through the emergency door.

use crate::backend::Backend;
use crate::request::{NewRequest, Request};

use super::connection::wait;

/// Creates the emergency request on the broker (the daemon with --broker, else embedded).
pub(crate) fn create(b: &dyn Backend, new: NewRequest, code: String) -> anyhow::Result<Request> {
    let r = wait(b.create_emergency(new, code))?;
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
