//! Taint: the tags that mark a node a pink-sombrero session touched.
//!
//! `i-` instances are tagged through the Resource Groups Tagging API (TagResources with the
//! instance ARN), `mi-` nodes through SSM AddTagsToResource (ManagedInstance). Any failure,
//! partial or total, is an error: the caller opens no session.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_ssm::types::{ResourceTypeForTagging, Tag};
use chrono::{DateTime, SecondsFormat, Utc};

use super::aws::AwsFleet;
use super::error::api;
use super::{FleetError, TargetKind};

/// Tag keys and values.
pub mod tag {
    /// `true` once a session has been (or is about to be) opened on the node.
    pub const TAINTED: &str = "pink-sombrero:tainted";
    /// The request id the session belongs to.
    pub const REQUEST: &str = "pink-sombrero:request";
    /// Who opened the session.
    pub const BY: &str = "pink-sombrero:by";
    /// When the node was tainted (RFC 3339).
    pub const AT: &str = "pink-sombrero:at";
    /// Replacement state: [`REPLACEMENT_REQUESTED`] or [`REPLACEMENT_FAILED`].
    pub const REPLACEMENT: &str = "pink-sombrero:replacement";
    /// When [`REPLACEMENT`] was last set (RFC 3339), written with it.
    pub const REPLACEMENT_AT: &str = "pink-sombrero:replacement-at";
    /// A replacement was requested; the reaper leaves the node alone until the request is
    /// stale (older than the replace timeout plus a margin, or without [`REPLACEMENT_AT`]):
    /// then the run that made it most likely died before the call or its outcome.
    pub const REPLACEMENT_REQUESTED: &str = "requested";
    /// The last replacement failed; the reaper tries again.
    pub const REPLACEMENT_FAILED: &str = "failed";
}

/// Tag values: SSM's rule (`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`, at most 256 characters) is the
/// stricter of the two APIs, so both paths use it and a value never works on one and not the other.
const TAG_VALUE_MAX_CHARS: usize = 256;

/// How long the tagging API may take to show a new tag (it is eventually consistent).
const READ_BACK_ATTEMPTS: u32 = 10;
/// Pause between read-back attempts.
const READ_BACK_PAUSE: Duration = Duration::from_millis(500);

/// Who tainted the node, for which request, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    /// The request id.
    pub request: String,
    /// The person opening the session.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

impl Taint {
    /// The four taint tags, validated against the tagging rules.
    pub fn tags(&self) -> Result<Vec<(&'static str, String)>, FleetError> {
        let tags = vec![
            (tag::TAINTED, "true".to_owned()),
            (tag::REQUEST, self.request.clone()),
            (tag::BY, self.by.clone()),
            (tag::AT, self.at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        ];
        for (k, v) in &tags {
            check_value(k, v)?;
        }
        Ok(tags)
    }
}

/// Refuses a value the tagging APIs would refuse, before any call.
fn check_value(key: &str, value: &str) -> Result<(), FleetError> {
    let refuse = |why| FleetError::InvalidTag {
        key: key.to_owned(),
        value: value.to_owned(),
        why,
    };
    if value.chars().count() > TAG_VALUE_MAX_CHARS {
        return Err(refuse("longer than 256 characters"));
    }
    let allowed = |c: char| {
        c.is_alphanumeric()
            || c == ' '
            || matches!(c, '_' | '.' | ':' | '/' | '=' | '+' | '-' | '@')
    };
    if !value.chars().all(allowed) {
        return Err(refuse(
            "only letters, digits, spaces and _ . : / = + - @ are allowed in tag values",
        ));
    }
    Ok(())
}

impl AwsFleet {
    /// Tags `target` with the taint; an error means it is not (fully) tagged.
    pub(crate) async fn apply_taint(&self, target: &str, taint: &Taint) -> Result<(), FleetError> {
        TargetKind::of(target)?;
        let tags = taint.tags()?;
        let expect = [
            (tag::TAINTED, "true"),
            (tag::REQUEST, taint.request.as_str()),
        ];
        self.put_tags(target, &tags, &expect)
            .await
            .map_err(|why| FleetError::TaintFailed {
                target: target.to_owned(),
                why,
            })
    }

    /// Tags `target` `pink-sombrero:emergency=true`; an error means it is not tagged.
    pub(crate) async fn apply_emergency_tag(&self, target: &str) -> Result<(), FleetError> {
        TargetKind::of(target)?;
        let tags = [(crate::policy::emergency::TAG, "true".to_owned())];
        self.put_tags(target, &tags, &[(crate::policy::emergency::TAG, "true")])
            .await
            .map_err(|why| FleetError::TaintFailed {
                target: target.to_owned(),
                why,
            })
    }

    /// Records the replacement state on the node (see [`tag::REPLACEMENT`]), and when
    /// ([`tag::REPLACEMENT_AT`]), so a mark left by a crashed run can be told from a fresh one.
    pub(crate) async fn mark_replacement(
        &self,
        target: &str,
        state: &'static str,
    ) -> Result<(), FleetError> {
        TargetKind::of(target)?;
        let at = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
        self.put_tags(
            target,
            &[
                (tag::REPLACEMENT, state.to_owned()),
                (tag::REPLACEMENT_AT, at.clone()),
            ],
            &[
                (tag::REPLACEMENT, state),
                (tag::REPLACEMENT_AT, at.as_str()),
            ],
        )
        .await
        .map_err(|why| FleetError::TagFailed {
            target: target.to_owned(),
            why,
        })
    }

    /// Puts tags through the API for the node's kind; for instances, reads `expect` back.
    /// The error says why the tags are not (all) in place.
    async fn put_tags(
        &self,
        target: &str,
        tags: &[(&'static str, String)],
        expect: &[(&str, &str)],
    ) -> Result<(), String> {
        match TargetKind::of(target).map_err(|e| e.to_string())? {
            TargetKind::Managed => {
                let aws_tags = tags
                    .iter()
                    .map(|(k, v)| Tag::builder().key(*k).value(v).build())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                self.ssm
                    .add_tags_to_resource()
                    .resource_type(ResourceTypeForTagging::ManagedInstance)
                    .resource_id(target)
                    .set_tags(Some(aws_tags))
                    .send()
                    .await
                    .map_err(|e| api("AddTagsToResource", e).to_string())?;
                Ok(())
            }
            TargetKind::Instance => {
                let arn = self.instance_arn(target).await.map_err(|e| e.to_string())?;
                let out = self
                    .tagging
                    .tag_resources()
                    .resource_arn_list(&arn)
                    .set_tags(Some(
                        tags.iter()
                            .map(|(k, v)| ((*k).to_owned(), v.clone()))
                            .collect::<HashMap<_, _>>(),
                    ))
                    .send()
                    .await
                    .map_err(|e| api("TagResources", e).to_string())?;
                if let Some((arn, info)) = out.failed_resources_map().and_then(|m| m.iter().next())
                {
                    return Err(format!(
                        "TagResources refused {arn}: {} {}",
                        info.error_code().map_or("error", |c| c.as_str()),
                        info.error_message().unwrap_or_default()
                    ));
                }
                self.confirm_instance_tags(target, expect).await
            }
        }
    }

    /// Reads the instance's tags back until `expect` shows: TagResources reports success for
    /// ARNs it cannot see (no such instance, wrong account), so success alone proves nothing.
    async fn confirm_instance_tags(
        &self,
        target: &str,
        expect: &[(&str, &str)],
    ) -> Result<(), String> {
        for attempt in 1..=READ_BACK_ATTEMPTS {
            let mut tags = self
                .instance_tags(&[target])
                .await
                .map_err(|e| e.to_string())?;
            let seen = tags.remove(target).unwrap_or_default();
            if expect
                .iter()
                .all(|(k, v)| seen.get(*k).map(String::as_str) == Some(*v))
            {
                return Ok(());
            }
            if attempt < READ_BACK_ATTEMPTS {
                tokio::time::sleep(READ_BACK_PAUSE).await;
            }
        }
        Err(format!(
            "the tags did not show on the instance after tagging (does {target} exist in this account and region?)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(by: &str) -> Taint {
        Taint {
            request: "req-1".into(),
            by: by.into(),
            at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn taint_tags_are_the_four_keys() {
        let tags = taint("alice@example.com").tags().unwrap();
        assert_eq!(
            tags,
            vec![
                (tag::TAINTED, "true".to_owned()),
                (tag::REQUEST, "req-1".to_owned()),
                (tag::BY, "alice@example.com".to_owned()),
                (tag::AT, "2023-11-14T22:13:20Z".to_owned()),
            ]
        );
    }

    #[test]
    fn refuses_values_the_apis_refuse() {
        for bad in ["a;b", "a\nb", "<script>", "x".repeat(257).as_str()] {
            assert!(
                matches!(taint(bad).tags(), Err(FleetError::InvalidTag { .. })),
                "{bad:?} accepted"
            );
        }
        assert!(taint("Zoë Ünal").tags().is_ok());
    }
}
