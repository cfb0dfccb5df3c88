//! What `approve` and `deny` show before the code is read, and what they say after: the same
//! context the TUI's forms show ([`decision_context`]), so nobody approves a request blind
//! and a partial approval never reads as final.

use std::io::IsTerminal;
use std::time::Duration;

use crate::api::BrokerApi;
use crate::cli::{ExitError, connection};
use crate::config::GlobalOpts;
use crate::fleet::Fleet;
use crate::fleet::aws::AwsFleet;
use crate::remote::RemoteBroker;
use crate::request::{Request, State};
use crate::text::{Field, validate_field};
use crate::tui::broker_view::request_row;
use crate::tui::form::decision_context;
use crate::tui::update::approved_status;

/// How long the embedded CLI waits for the fleet to name a node before prompting without it.
const NODE_NAME_WAIT: Duration = Duration::from_secs(3);

/// Prints, on stderr, what `verb` (approve or deny) is about to decide; best effort: a request
/// that cannot be read is left to the decision itself to report.
pub fn show_context(g: &GlobalOpts, b: &dyn BrokerApi, id: &str, verb: &str) {
    let Ok(r) = b.get(id) else { return };
    let Ok(policy) = b.policy() else { return };
    let row = request_row(&r, policy.approvals_required);
    let node = node_name(g, &r.target);
    eprintln!("You are about to {verb} {}:", r.id);
    for (label, value) in decision_context(&row, node.as_deref(), chrono::Utc::now()) {
        // Values are escaped already; the label is ours.
        eprintln!("  {label:<10} {value}");
    }
}

/// The target's node name: from the daemon's fleet when there is one, else this host's
/// fleet credentials when a person is at the prompt (bounded wait); `None` when unknown.
fn node_name(g: &GlobalOpts, target: &str) -> Option<String> {
    let find = |rows: Vec<(String, Option<String>)>| {
        rows.into_iter()
            .find(|(id, _)| id == target)
            .and_then(|(_, name)| name)
    };
    if let Ok(Some(endpoint)) = connection::remote_endpoint(g) {
        let remote = RemoteBroker::connect_with(&endpoint, g).ok()?;
        let rows = remote.fleet().ok()?;
        return find(rows.into_iter().map(|r| (r.node.id, r.node.name)).collect());
    }
    if !std::io::stdin().is_terminal() {
        return None;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let nodes = rt.block_on(async {
        tokio::time::timeout(NODE_NAME_WAIT, async {
            AwsFleet::from_opts(g).await.ok()?.list_nodes().await.ok()
        })
        .await
        .ok()
        .flatten()
    })?;
    find(nodes.into_iter().map(|n| (n.id, n.name)).collect())
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
