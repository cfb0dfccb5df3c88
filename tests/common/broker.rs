//! An in-process broker on a data dir under a test clock, with its users enrolled.

use std::collections::BTreeSet;
use std::sync::Arc;

use pink_sombrero::broker::{Broker, BrokerOptions, Clock, TestClock};
use pink_sombrero::config::Paths;
use pink_sombrero::mfa;
use pink_sombrero::policy::Role;

/// A broker on `paths` under `clock` with `users` enrolled and confirmed (with the previous
/// step's code, so the current one stays free); returns it and each user's TOTP secret, in
/// the order of `users`.
pub fn with_users(
    paths: &Paths,
    clock: &Arc<TestClock>,
    users: &[(&str, Role)],
) -> (Broker, Vec<String>) {
    let opts = BrokerOptions {
        policy_path: None,
        clock: Some(clock.clone()),
    };
    let broker = Broker::open(paths, opts).unwrap();
    let secrets = users
        .iter()
        .map(|(name, role)| {
            let e = broker.enrol_user(name, BTreeSet::from([*role])).unwrap();
            let earlier = clock.now() - chrono::Duration::seconds(30);
            let first = mfa::code_at(name, &e.secret_base32, earlier).unwrap();
            broker.confirm_enrolment(name, &first).unwrap();
            e.secret_base32
        })
        .collect();
    (broker, secrets)
}
