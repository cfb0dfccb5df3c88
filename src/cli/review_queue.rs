//! `sombrero review --pending`: the sessions waiting for a required review.

use std::process::ExitCode;

use crate::backend::Config;
use crate::review_queue::PendingReview;

use super::connection::{self, print_json, say};

/// Prints the review queue, soonest due first; overdue rows say so.
pub fn pending(g: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let rows = connection::wait(connection::backend(g)?.pending_reviews())?;
    if json {
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no session is waiting for a review");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<13} {:<28} {:<12} {:<20} {:<20} {:<22} SIGN-OFFS",
        "REQUEST", "RECORDING", "REQUESTER", "TARGET", "ENDED", "DUE"
    );
    for r in &rows {
        say(&row(r));
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of the queue.
fn row(r: &PendingReview) -> String {
    let left =
        humantime::format_duration(std::time::Duration::from_secs(r.due_in_secs.unsigned_abs()));
    let due = if r.overdue {
        format!("OVERDUE by {left}")
    } else {
        format!("in {left}")
    };
    let signed = if r.sign_offs.is_empty() {
        "-".to_string()
    } else {
        r.sign_offs.join(", ")
    };
    let flag = if r.emergency { " EMERGENCY" } else { "" };
    format!(
        "{:<13} {:<28} {:<12} {:<20} {:<20} {:<22} {}/{} {}{flag}",
        r.request_id,
        r.recording.as_deref().unwrap_or("(none)"),
        r.requester,
        r.target,
        r.ended_at.format("%Y-%m-%d %H:%M"),
        due,
        r.sign_offs.len(),
        r.needed,
        signed
    )
}
