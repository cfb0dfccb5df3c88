//! Between the fleet and the UI: nodes as rows, and a listing function over any `Fleet`.

use std::sync::Arc;

use futures_util::FutureExt;

use crate::fleet::{Fleet, Node};

use super::driver::FleetFn;
use super::model::{Badge, FleetRow};

/// The row for one node.
pub fn fleet_row(node: &Node) -> FleetRow {
    let mut badges = Vec::new();
    if node.tainted() {
        badges.push(Badge::Tainted);
    }
    if node.replacing() {
        badges.push(Badge::Replacing);
    }
    FleetRow {
        id: node.id.clone(),
        name: node.name.clone().unwrap_or_default(),
        ping: node.ping.clone(),
        platform: node.platform.clone(),
        registered_at: node.registered,
        badges,
    }
}

/// A [`FleetFn`] listing `fleet`'s nodes.
pub fn fleet_fn<F: Fleet + Send + Sync + 'static>(fleet: Arc<F>) -> FleetFn {
    Arc::new(move || {
        let fleet = Arc::clone(&fleet);
        async move {
            fleet
                .list_nodes()
                .await
                .map(|nodes| nodes.iter().map(fleet_row).collect())
                .map_err(|e| e.to_string())
        }
        .boxed()
    })
}
