//! Demo mode: every demo user's current and next TOTP code, for the DEMO panel.

use std::sync::Arc;

use chrono::Utc;

use crate::mfa;

use super::driver::DemoCodesFn;
use super::model::DemoCode;

/// TOTP time step in seconds (RFC 6238 default, as `mfa` uses).
const STEP_SECS: i64 = 30;

/// A demo user whose code the panel shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoUser {
    /// Name.
    pub name: String,
    /// Role shown under the name.
    pub role: String,
    /// Their TOTP secret (base32). Demo data dirs only: this is why the panel says DEMO.
    pub secret_base32: String,
}

/// A user's code at a moment (`??????` if their secret cannot make one).
fn code_at(u: &DemoUser, at: chrono::DateTime<Utc>) -> String {
    mfa::code_at(&u.name, &u.secret_base32, at).unwrap_or_else(|_| "??????".to_string())
}

/// A [`DemoCodesFn`] computing each user's code now.
pub fn demo_codes_fn(users: Vec<DemoUser>) -> DemoCodesFn {
    Arc::new(move || {
        let now = Utc::now();
        let seconds_left =
            u64::try_from(STEP_SECS - now.timestamp().rem_euclid(STEP_SECS)).unwrap_or(0);
        users
            .iter()
            .map(|u| DemoCode {
                user: u.name.clone(),
                role: u.role.clone(),
                code: code_at(u, now),
                next: code_at(u, now + chrono::Duration::seconds(STEP_SECS)),
                seconds_left,
            })
            .collect()
    })
}
