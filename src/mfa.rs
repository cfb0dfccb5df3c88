//! TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of skew): enrolment and verification.
//!
//! Verification is pure: it takes the user's [`MfaState`] and the time and returns the new state
//! and a [`Verdict`]; the broker stores both and audits every attempt. A time step is accepted at
//! most once per user; consecutive failures (wrong or replayed codes) lock the user out.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use totp_rs::{Algorithm, Secret, Totp};

use crate::request::after;

/// Issuer shown in authenticator apps.
pub const ISSUER: &str = "pink-sombrero";

/// Problems with a TOTP secret.
#[derive(Debug, Error)]
pub enum MfaError {
    /// The stored secret is not valid base32 or too short.
    #[error("the TOTP secret of {user} is unusable ({why}); enrol the user again")]
    BadSecret {
        /// The user.
        user: String,
        /// What is wrong.
        why: String,
    },
    /// The QR code could not be drawn.
    #[error("cannot draw the QR code: {0}; type the secret into the authenticator instead")]
    Qr(String),
}

/// A new enrolment: what the person types or scans into an authenticator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolment {
    /// The user.
    pub name: String,
    /// The shared secret, base32 without padding.
    pub secret_base32: String,
    /// `otpauth://totp/pink-sombrero:NAME?secret=...&issuer=pink-sombrero`.
    pub otpauth_uri: String,
}

fn totp(user: &str, secret_base32: &str) -> Result<Totp, MfaError> {
    let bad = |why: String| MfaError::BadSecret {
        user: user.to_string(),
        why,
    };
    let secret = Secret::try_from_base32(secret_base32).map_err(|e| bad(e.to_string()))?;
    totp_rs::Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .with_issuer(Some(ISSUER))
        .with_account_name(user)
        .build()
        .map_err(|e| bad(e.to_string()))
}

/// Generates a fresh secret for `name` (160 random bits).
pub fn enrol(name: &str) -> Result<Enrolment, MfaError> {
    let secret = Secret::generate().to_base32();
    let t = totp(name, &secret)?;
    let otpauth_uri = t.to_url().map_err(|e| MfaError::BadSecret {
        user: name.to_string(),
        why: e.to_string(),
    })?;
    Ok(Enrolment {
        name: name.to_string(),
        secret_base32: secret,
        otpauth_uri,
    })
}

/// The otpauth URI as a QR code of unicode half blocks, for the terminal.
pub fn qr_terminal(uri: &str) -> Result<String, MfaError> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(uri.as_bytes()).map_err(|e| MfaError::Qr(e.to_string()))?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .build())
}

/// A user's verification state, stored beside the secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaState {
    /// The last accepted time step (never accepted again).
    pub last_step: Option<u64>,
    /// Consecutive failures since the last success or lockout.
    pub failures: u32,
    /// Locked until this time, if locked.
    pub locked_until: Option<DateTime<Utc>>,
}

/// Lockout limits (from the policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Consecutive failures before lockout.
    pub max_failures: u32,
    /// Lockout length.
    pub lockout: Duration,
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The code is good and its step was not used before.
    Accepted {
        /// The accepted step.
        step: u64,
    },
    /// Wrong code (or not six digits).
    Wrong {
        /// Consecutive failures now.
        failures: u32,
    },
    /// A good code for a step already used.
    Replayed {
        /// Consecutive failures now.
        failures: u32,
    },
    /// The user is locked; the code was not checked.
    Locked {
        /// Until when.
        until: DateTime<Utc>,
    },
    /// This failure reached the limit: the user is now locked.
    LockedOut {
        /// Until when.
        until: DateTime<Utc>,
    },
}

/// Why a code was not accepted; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum MfaRefusal {
    /// Wrong code.
    #[error(
        "wrong TOTP code for {user} ({left} tries left before a lockout): check the authenticator's clock and entry for pink-sombrero:{user}"
    )]
    Wrong {
        /// The user.
        user: String,
        /// Tries left.
        left: u32,
    },
    /// Code already used.
    #[error(
        "that TOTP code for {user} was already used; wait for the next code ({left} tries left before a lockout)"
    )]
    Replayed {
        /// The user.
        user: String,
        /// Tries left.
        left: u32,
    },
    /// Locked out.
    #[error(
        "{user} is locked out after too many failed TOTP codes until {until}; wait, or ask the platform owner to check the audit log",
        until = until.to_rfc3339()
    )]
    Locked {
        /// The user.
        user: String,
        /// Until when.
        until: DateTime<Utc>,
    },
}

impl Verdict {
    /// `Ok(step)` when accepted, else the refusal to show `user`.
    pub fn into_result(self, user: &str, limits: Limits) -> Result<u64, MfaRefusal> {
        let left = |f: u32| limits.max_failures.saturating_sub(f);
        match self {
            Verdict::Accepted { step } => Ok(step),
            Verdict::Wrong { failures } => Err(MfaRefusal::Wrong {
                user: user.to_string(),
                left: left(failures),
            }),
            Verdict::Replayed { failures } => Err(MfaRefusal::Replayed {
                user: user.to_string(),
                left: left(failures),
            }),
            Verdict::Locked { until } | Verdict::LockedOut { until } => Err(MfaRefusal::Locked {
                user: user.to_string(),
                until,
            }),
        }
    }
}

/// The code for `secret_base32` at `now` (for enrolment screens and tests).
pub fn code_at(user: &str, secret_base32: &str, now: DateTime<Utc>) -> Result<String, MfaError> {
    Ok(totp(user, secret_base32)?
        .generate(now.timestamp().max(0) as u64)
        .to_string())
}

/// Checks `code` for `user` at `now`. Pure: the caller stores the returned state.
pub fn verify(
    user: &str,
    secret_base32: &str,
    state: &MfaState,
    code: &str,
    now: DateTime<Utc>,
    limits: Limits,
) -> Result<(MfaState, Verdict), MfaError> {
    if let Some(until) = state.locked_until.filter(|u| now < *u) {
        return Ok((state.clone(), Verdict::Locked { until }));
    }
    let t = totp(user, secret_base32)?;
    let code = code.trim();
    let well_formed = code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit());
    let step = if well_formed {
        t.check(code, now.timestamp().max(0) as u64)
    } else {
        None
    };
    let mut next = MfaState {
        locked_until: None,
        ..state.clone()
    };
    let fail = |mut next: MfaState, replay: bool| {
        next.failures += 1;
        if next.failures >= limits.max_failures {
            let until = after(now, limits.lockout);
            next.failures = 0;
            next.locked_until = Some(until);
            (next, Verdict::LockedOut { until })
        } else if replay {
            let failures = next.failures;
            (next, Verdict::Replayed { failures })
        } else {
            let failures = next.failures;
            (next, Verdict::Wrong { failures })
        }
    };
    Ok(match step {
        Some(s) if state.last_step.is_some_and(|last| s <= last) => fail(next, true),
        Some(s) => {
            next.failures = 0;
            next.last_step = Some(s);
            (next, Verdict::Accepted { step: s })
        }
        None => fail(next, false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    // RFC 6238 appendix B secret ("12345678901234567890") in base32.
    const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    const LIMITS: Limits = Limits {
        max_failures: 5,
        lockout: Duration::from_secs(300),
    };

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    #[test]
    fn rfc6238_sha1_vectors() {
        // Appendix B, truncated to 6 digits.
        for (t, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code_at("u", RFC_SECRET, at(t)).unwrap(), code, "t={t}");
        }
    }

    #[test]
    fn enrolment_uri_and_qr() {
        let e = enrol("ann").unwrap();
        assert_eq!(e.secret_base32.len(), 32);
        assert!(
            e.otpauth_uri
                .starts_with("otpauth://totp/pink-sombrero:ann?secret="),
            "{}",
            e.otpauth_uri
        );
        assert!(e.otpauth_uri.contains("issuer=pink-sombrero"));
        let qr = qr_terminal(&e.otpauth_uri).unwrap();
        assert!(qr.lines().count() > 10);
        assert!(qr.contains('▀') || qr.contains('▄') || qr.contains('█'));
    }

    #[test]
    fn accepts_current_and_one_step_skew_once() {
        let now = at(1_800_000_015);
        let st = MfaState::default();
        let prev = code_at("u", RFC_SECRET, at(1_800_000_015 - 30)).unwrap();
        let (st, v) = verify("u", RFC_SECRET, &st, &prev, now, LIMITS).unwrap();
        assert_eq!(
            v,
            Verdict::Accepted {
                step: 60_000_000 - 1
            }
        );
        let cur = code_at("u", RFC_SECRET, now).unwrap();
        let (st, v) = verify("u", RFC_SECRET, &st, &cur, now, LIMITS).unwrap();
        assert_eq!(v, Verdict::Accepted { step: 60_000_000 });
        // The same step again is a replay; an older step too.
        let (st, v) = verify("u", RFC_SECRET, &st, &cur, now, LIMITS).unwrap();
        assert_eq!(v, Verdict::Replayed { failures: 1 });
        let (st, v) = verify("u", RFC_SECRET, &st, &prev, now, LIMITS).unwrap();
        assert_eq!(v, Verdict::Replayed { failures: 2 });
        // Two steps away is outside the skew.
        let far = code_at("u", RFC_SECRET, at(1_800_000_015 + 60)).unwrap();
        let (_, v) = verify("u", RFC_SECRET, &st, &far, now, LIMITS).unwrap();
        assert_eq!(v, Verdict::Wrong { failures: 3 });
    }

    #[test]
    fn five_failures_lock_for_the_configured_time() {
        let now = at(1_800_000_000);
        let mut st = MfaState::default();
        for i in 1..=4 {
            let (s, v) = verify("u", RFC_SECRET, &st, "12345", now, LIMITS).unwrap();
            assert_eq!(v, Verdict::Wrong { failures: i });
            st = s;
        }
        let (st, v) = verify("u", RFC_SECRET, &st, "abcdef", now, LIMITS).unwrap();
        assert_eq!(
            v,
            Verdict::LockedOut {
                until: at(1_800_000_300)
            }
        );
        // Even a good code is not checked while locked.
        let good = code_at("u", RFC_SECRET, at(1_800_000_100)).unwrap();
        let (st, v) = verify("u", RFC_SECRET, &st, &good, at(1_800_000_100), LIMITS).unwrap();
        assert_eq!(
            v,
            Verdict::Locked {
                until: at(1_800_000_300)
            }
        );
        // After the lockout a good code works and failures start again from zero.
        let later = at(1_800_000_300);
        let good = code_at("u", RFC_SECRET, later).unwrap();
        let (st, v) = verify("u", RFC_SECRET, &st, &good, later, LIMITS).unwrap();
        assert!(matches!(v, Verdict::Accepted { .. }));
        assert_eq!(st.failures, 0);
        assert_eq!(st.locked_until, None);
    }

    #[test]
    fn success_resets_failures() {
        let now = at(1_800_000_000);
        let (st, _) = verify(
            "u",
            RFC_SECRET,
            &MfaState::default(),
            "000000x",
            now,
            LIMITS,
        )
        .unwrap();
        assert_eq!(st.failures, 1);
        let good = code_at("u", RFC_SECRET, now).unwrap();
        let (st, _) = verify("u", RFC_SECRET, &st, &good, now, LIMITS).unwrap();
        assert_eq!(st.failures, 0);
    }

    #[test]
    fn refusal_messages_say_what_to_do() {
        let e = Verdict::Wrong { failures: 2 }
            .into_result("ann", LIMITS)
            .unwrap_err();
        assert!(e.to_string().contains("3 tries left"), "{e}");
        let e = Verdict::Replayed { failures: 1 }
            .into_result("ann", LIMITS)
            .unwrap_err();
        assert!(e.to_string().contains("wait for the next code"), "{e}");
    }

    #[test]
    fn bad_secret_is_an_error_not_a_panic() {
        assert!(matches!(
            verify("u", "!!!", &MfaState::default(), "123456", at(0), LIMITS),
            Err(MfaError::BadSecret { .. })
        ));
    }
}
