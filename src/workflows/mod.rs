//! What the broker does with the fleet, above both: the fleet listing marked with what the
//! audit log knows and the rogue scan ([`scan`]), and the reaper ([`reaper`]) that ends
//! overdue sessions and replaces tainted nodes. Run by the CLI and by the daemon alike.

pub mod reaper;
pub mod scan;
