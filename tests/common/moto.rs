//! Finding the moto emulator that `scripts/test` (or `eval "$(scripts/moto-up)"`) started.
//! Outside CI a missing moto is a printed skip; under `CI=true` it fails, so a skip can never
//! hide a gap there.

/// moto's endpoint, or `None` (outside CI) when it is not running.
pub fn moto() -> Option<String> {
    match std::env::var("SOMBRERO_MOTO_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "SOMBRERO_MOTO_ENDPOINT is not set under CI=true: run the tests through scripts/test"
            )
        }
        _ => {
            eprintln!(
                "skipped: moto is not running (run scripts/test, or eval \"$(scripts/moto-up)\" first)"
            );
            None
        }
    }
}

/// [`moto`], also checking that DynamoDB calls go to it (the store reads the SDK's own
/// `AWS_ENDPOINT_URL_DYNAMODB`).
pub fn moto_dynamodb() -> Option<String> {
    let e = moto()?;
    assert!(
        std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_ok_and(|d| d == e),
        "AWS_ENDPOINT_URL_DYNAMODB must point at moto ({e}): eval \"$(scripts/moto-up)\" again"
    );
    Some(e)
}
