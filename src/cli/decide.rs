//! What `approve` and `deny` show before the code is read, and what they say after: the same
//! context the TUI's forms show ([`decision_context`]), so nobody approves a request blind
//! and a partial approval never reads as final.

use std::io::IsTerminal;
use std::time::Duration;

use crate::backend::{Backend, BackendError};
use crate::cli::{ExitError, connection};
use crate::request::{Request, State};
use crate::text::{Field, validate_field};
use crate::tui::broker_view::request_row;
use crate::tui::form::decision_context;
use crate::tui::update::approved_status;

/// How long the embedded CLI waits for the fleet to name a node before prompting without it.
const NODE_NAME_WAIT: Duration = Duration::from_secs(3);

/// Prints, on stderr, what `verb` (approve or deny) is about to decide; best effort: a request
/// that cannot be read is left to the decision itself to report.
pub fn show_context(backend: &dyn Backend, id: &str, verb: &str) {
    let Ok(r) = connection::wait(backend.get(id.to_string())) else {
        return;
    };
    let Ok(policy) = connection::wait(backend.policy()) else {
        return;
    };
    let row = request_row(&r, policy.approvals_required);
    // A daemon lists with its own fleet; here, this host's credentials are tried only when a
    // person waits at the prompt.
    let local = matches!(connection::wait(backend.identity()), Ok(None));
    let node = node_name(backend, local, &r.target);
    eprintln!("You are about to {verb} {}:", r.id);
    for (label, value) in decision_context(&row, node.as_deref(), chrono::Utc::now()) {
        // Values are escaped already; the label is ours.
        eprintln!("  {label:<10} {value}");
    }
}

/// The target's node name from the backend's fleet (a daemon's, else this host's fleet
/// credentials when a person is at the prompt, with a bounded wait); `None` when unknown.
fn node_name(backend: &dyn Backend, local: bool, target: &str) -> Option<String> {
    if local && !std::io::stdin().is_terminal() {
        return None;
    }
    let rows = connection::wait(async {
        if !local {
            return backend.fleet().await;
        }
        tokio::time::timeout(NODE_NAME_WAIT, backend.fleet())
            .await
            .unwrap_or_else(|_| Err(BackendError::Failed("no answer in time".into())))
    })
    .ok()?;
    rows.into_iter()
        .find(|r| r.node.id == target)
        .and_then(|r| r.node.name)
}

/// The input rule ([`validate_field`]) on fields typed on the command line, before any code is
/// asked for (the broker checks again, for every path).
pub fn check_fields(fields: &[(Field, Option<&str>)]) -> anyhow::Result<()> {
    for (field, value) in fields {
        if let Some(value) = value {
            validate_field(*field, value).map_err(|e| ExitError::usage(e.to_string()))?;
        }
    }
    Ok(())
}

/// The line `approve` prints after an approval: partial ("recorded: 1 of 2, still pending")
/// or final ("APPROVED ... may open it now").
pub fn outcome_line(r: &Request, required: u32) -> String {
    approved_status(
        &r.id,
        r.approvals.len(),
        required,
        r.state != State::Pending,
        &r.requester,
    )
}
