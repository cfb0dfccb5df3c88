//! Replacement: ask for a fresh node in place of a tainted one, then watch for the outcome.
//!
//! Strategies: `asg` (TerminateInstanceInAutoScalingGroup without decrement: the group launches
//! a new one), `asg-unhealthy` (SetInstanceHealth Unhealthy: the group's maintenance policy
//! replaces it), `automation:<document>` (StartAutomationExecution with `InstanceId`, followed to
//! its end; the new id comes from an output named `NewInstanceId`), `none` (tag only).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use aws_sdk_autoscaling::types::Instance as AsgInstance;
use aws_sdk_ssm::types::AutomationExecutionStatus as Status;
use thiserror::Error;
use tokio::time::Instant;

use super::aws::AwsFleet;
use super::error::api;
use super::taint::tag;
use super::{FleetError, ReplacementOutcome, TargetKind};

/// The automation output that names the new node (also matched as `<step>.NewInstanceId`).
pub const NEW_INSTANCE_OUTPUT: &str = "NewInstanceId";

/// How a tainted node is replaced (the policy names one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplaceStrategy {
    /// Terminate in its Auto Scaling group without decrementing: the group launches a new one.
    Asg,
    /// Mark unhealthy in its group: the group's instance maintenance policy replaces it.
    AsgUnhealthy,
    /// Run an SSM Automation document with `InstanceId`.
    Automation {
        /// The document name or ARN.
        document: String,
    },
    /// Tag only: a person replaces the node.
    None,
}

/// A strategy string the policy cannot use.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "unknown replacement strategy {0:?}: use asg, asg-unhealthy, automation:<document> or none"
)]
pub struct BadStrategy(pub String);

impl FromStr for ReplaceStrategy {
    type Err = BadStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "asg" => Ok(ReplaceStrategy::Asg),
            "asg-unhealthy" => Ok(ReplaceStrategy::AsgUnhealthy),
            "none" => Ok(ReplaceStrategy::None),
            _ => match s.strip_prefix("automation:") {
                // The service's DocumentARN rule: ^[a-zA-Z0-9_\-.:/]{3,128}$.
                Some(doc)
                    if (3..=128).contains(&doc.len())
                        && doc
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"_-.:/".contains(&b)) =>
                {
                    Ok(ReplaceStrategy::Automation {
                        document: doc.to_owned(),
                    })
                }
                _ => Err(BadStrategy(s.to_owned())),
            },
        }
    }
}

impl fmt::Display for ReplaceStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplaceStrategy::Asg => f.write_str("asg"),
            ReplaceStrategy::AsgUnhealthy => f.write_str("asg-unhealthy"),
            ReplaceStrategy::Automation { document } => write!(f, "automation:{document}"),
            ReplaceStrategy::None => f.write_str("none"),
        }
    }
}

impl From<&crate::policy::Replacement> for ReplaceStrategy {
    fn from(r: &crate::policy::Replacement) -> Self {
        use crate::policy::Replacement;
        match r {
            Replacement::Asg => ReplaceStrategy::Asg,
            Replacement::AsgUnhealthy => ReplaceStrategy::AsgUnhealthy,
            Replacement::Automation(document) => ReplaceStrategy::Automation {
                document: document.clone(),
            },
            Replacement::None => ReplaceStrategy::None,
        }
    }
}

/// How long to watch and how often to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplaceOptions {
    /// Give up watching after this long.
    pub timeout: Duration,
    /// Longest pause between looks (they start at 100 ms and double up to this).
    pub poll: Duration,
}

/// How long after a replacement's own timeout a `requested` mark still counts as in flight.
const STALE_MARGIN: Duration = Duration::from_secs(5 * 60);

impl ReplaceOptions {
    /// How old a `requested` mark must be before the reaper tries the replacement again
    /// (the watch timeout plus a margin), or `None` when `strategy` makes no call to retry:
    /// with `none` the mark is the whole replacement and a person takes it from there.
    pub fn retry_requested_after(&self, strategy: &ReplaceStrategy) -> Option<Duration> {
        (*strategy != ReplaceStrategy::None).then(|| self.timeout + STALE_MARGIN)
    }
}

impl Default for ReplaceOptions {
    fn default() -> Self {
        ReplaceOptions {
            timeout: Duration::from_secs(15 * 60),
            poll: Duration::from_secs(5),
        }
    }
}

/// What the watcher sees, for a progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplaceProgress {
    /// The replacement was asked for.
    Requested {
        /// The node being replaced.
        old: String,
        /// What was asked, e.g. `TerminateInstanceInAutoScalingGroup in web-asg`.
        action: String,
    },
    /// A look at the Auto Scaling group.
    Group {
        /// The group.
        group: String,
        /// The old instance's lifecycle state, `None` once it has left the group.
        old_state: Option<String>,
        /// Instances in service that were not in the group before.
        new_in_service: Vec<String>,
    },
    /// A look at the automation execution.
    Automation {
        /// The execution id.
        execution_id: String,
        /// Its status.
        status: String,
    },
}

impl fmt::Display for ReplaceProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplaceProgress::Requested { old, action } => write!(f, "{old}: {action}"),
            ReplaceProgress::Group {
                group,
                old_state,
                new_in_service,
            } => write!(
                f,
                "{group}: old instance {}, new in service: {}",
                old_state.as_deref().unwrap_or("gone"),
                if new_in_service.is_empty() {
                    "none yet".to_owned()
                } else {
                    new_in_service.join(", ")
                }
            ),
            ReplaceProgress::Automation {
                execution_id,
                status,
            } => write!(f, "automation {execution_id}: {status}"),
        }
    }
}

/// Why a replacement failed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ReplaceFailure {
    /// The target is not a node id.
    #[error("{0}")]
    InvalidTarget(String),
    /// `asg` strategies need an EC2 instance.
    #[error(
        "{target} is a managed node, not an EC2 instance: the asg strategies cannot replace it"
    )]
    NotAnInstance {
        /// The node.
        target: String,
    },
    /// The instance belongs to no Auto Scaling group.
    #[error(
        "{instance} is in no Auto Scaling group, so strategy {strategy} cannot replace it: replace it by hand or set another strategy in the policy"
    )]
    NotInGroup {
        /// The instance.
        instance: String,
        /// The strategy that needed a group.
        strategy: String,
    },
    /// An AWS call failed.
    #[error("{0}")]
    Api(String),
    /// The watch ran out of time.
    #[error("no replacement seen after {}s (last seen: {last})", waited.as_secs())]
    TimedOut {
        /// How long we watched.
        waited: Duration,
        /// The last progress seen.
        last: String,
    },
    /// The automation ended without success.
    #[error("automation {execution_id} ended {status}: {message}")]
    AutomationEnded {
        /// The execution id.
        execution_id: String,
        /// Its final status.
        status: String,
        /// The failure message, if any.
        message: String,
    },
    /// The automation succeeded but did not say which node replaced the old one.
    #[error(
        "automation {execution_id} succeeded but has no {NEW_INSTANCE_OUTPUT} output naming the new node"
    )]
    NoNewInstanceId {
        /// The execution id.
        execution_id: String,
    },
}

impl From<FleetError> for ReplaceFailure {
    fn from(e: FleetError) -> Self {
        match e {
            FleetError::InvalidTarget { .. } => ReplaceFailure::InvalidTarget(e.to_string()),
            other => ReplaceFailure::Api(other.to_string()),
        }
    }
}

/// The new node named by an automation's outputs (`NewInstanceId` or `<step>.NewInstanceId`).
pub fn new_instance_from_outputs(
    outputs: &std::collections::HashMap<String, Vec<String>>,
) -> Option<String> {
    let mut keys: Vec<&String> = outputs
        .keys()
        .filter(|k| {
            *k == NEW_INSTANCE_OUTPUT
                || k.rsplit_once('.').map(|(_, n)| n) == Some(NEW_INSTANCE_OUTPUT)
        })
        .collect();
    keys.sort();
    keys.iter()
        .flat_map(|k| outputs.get(*k).into_iter().flatten())
        .find(|v| !v.is_empty() && TargetKind::of(v).is_ok())
        .cloned()
}

/// Pauses between looks: short at first (a lab or emulator answers at once), doubling up to
/// the configured interval (a real group takes minutes; no need to poll it hard).
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);

    fn new(max: Duration) -> Self {
        Backoff {
            next: Self::FIRST.min(max),
            max,
        }
    }

    async fn sleep(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.max);
    }
}

/// Where an automation status leads.
enum Phase {
    Running,
    Succeeded,
    Ended,
}

fn phase(s: &Status) -> Phase {
    match s {
        Status::Success | Status::CompletedWithSuccess => Phase::Succeeded,
        Status::Failed
        | Status::Timedout
        | Status::Cancelled
        | Status::Rejected
        | Status::CompletedWithFailure
        | Status::Exited
        | Status::ChangeCalendarOverrideRejected => Phase::Ended,
        _ => Phase::Running,
    }
}

impl AwsFleet {
    /// Runs the strategy and watches; marks the node `requested`, or `failed` on failure.
    pub(crate) async fn replace_node(
        &self,
        target: &str,
        strategy: &ReplaceStrategy,
        opts: &ReplaceOptions,
        mut progress: impl FnMut(ReplaceProgress) + Send,
    ) -> ReplacementOutcome {
        let result = match strategy {
            ReplaceStrategy::None => self.none(target).await,
            ReplaceStrategy::Asg | ReplaceStrategy::AsgUnhealthy => {
                self.via_group(target, strategy, opts, &mut progress).await
            }
            ReplaceStrategy::Automation { document } => {
                self.via_automation(target, document, opts, &mut progress)
                    .await
            }
        };
        match result {
            Ok(outcome) => outcome,
            Err(why) => {
                if TargetKind::of(target).is_ok()
                    && let Err(e) = self.mark_replacement(target, tag::REPLACEMENT_FAILED).await
                {
                    tracing::warn!(%target, error = %e, "could not mark the failed replacement");
                }
                ReplacementOutcome::Failed { why }
            }
        }
    }

    /// Marks the node `requested`; a failure here is logged, not fatal: the replacement matters more.
    async fn mark_requested(&self, target: &str) {
        if let Err(e) = self
            .mark_replacement(target, tag::REPLACEMENT_REQUESTED)
            .await
        {
            tracing::warn!(%target, error = %e, "could not mark the replacement as requested");
        }
    }

    async fn none(&self, target: &str) -> Result<ReplacementOutcome, ReplaceFailure> {
        TargetKind::of(target)?;
        self.mark_requested(target).await;
        Ok(ReplacementOutcome::Requested {
            note: format!("strategy none: {target} stays tainted and must be replaced by hand"),
        })
    }

    async fn via_group(
        &self,
        target: &str,
        strategy: &ReplaceStrategy,
        opts: &ReplaceOptions,
        progress: &mut (impl FnMut(ReplaceProgress) + Send),
    ) -> Result<ReplacementOutcome, ReplaceFailure> {
        if TargetKind::of(target)? != TargetKind::Instance {
            return Err(ReplaceFailure::NotAnInstance {
                target: target.to_owned(),
            });
        }
        let group = self
            .group_of(target)
            .await?
            .ok_or_else(|| ReplaceFailure::NotInGroup {
                instance: target.to_owned(),
                strategy: strategy.to_string(),
            })?;
        let before: HashSet<String> = self
            .group_instances(&group)
            .await?
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect();
        self.mark_requested(target).await;
        let action = if *strategy == ReplaceStrategy::Asg {
            self.autoscaling
                .terminate_instance_in_auto_scaling_group()
                .instance_id(target)
                .should_decrement_desired_capacity(false)
                .send()
                .await
                .map_err(|e| ReplaceFailure::from(api("TerminateInstanceInAutoScalingGroup", e)))?;
            format!("TerminateInstanceInAutoScalingGroup in {group} (no decrement)")
        } else {
            self.autoscaling
                .set_instance_health()
                .instance_id(target)
                .health_status("Unhealthy")
                .should_respect_grace_period(false)
                .send()
                .await
                .map_err(|e| ReplaceFailure::from(api("SetInstanceHealth", e)))?;
            format!("SetInstanceHealth Unhealthy in {group}")
        };
        progress(ReplaceProgress::Requested {
            old: target.to_owned(),
            action,
        });
        let deadline = Instant::now() + opts.timeout;
        let mut pause = Backoff::new(opts.poll);
        loop {
            let now_in = self.group_instances(&group).await?;
            let old_state = now_in
                .iter()
                .find(|i| i.instance_id() == Some(target))
                .map(|i| {
                    i.lifecycle_state()
                        .map_or("Unknown", |s| s.as_str())
                        .to_owned()
                });
            let new_in_service: Vec<String> = now_in
                .iter()
                .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
                .filter_map(|i| i.instance_id())
                .filter(|id| *id != target && !before.contains(*id))
                .map(str::to_owned)
                .collect();
            let old_leaving = old_state
                .as_deref()
                .is_none_or(|s| s.starts_with("Terminat"));
            let seen = ReplaceProgress::Group {
                group: group.clone(),
                old_state,
                new_in_service: new_in_service.clone(),
            };
            let last = seen.to_string();
            progress(seen);
            if old_leaving && let Some(new) = new_in_service.into_iter().next() {
                return Ok(ReplacementOutcome::Completed {
                    old: target.to_owned(),
                    new,
                });
            }
            if Instant::now() >= deadline {
                return if *strategy == ReplaceStrategy::AsgUnhealthy {
                    Ok(ReplacementOutcome::Requested {
                        note: format!(
                            "{target} is marked Unhealthy in {group}; the group had not replaced it after {}s (last seen: {last}); its maintenance policy decides when",
                            opts.timeout.as_secs()
                        ),
                    })
                } else {
                    Err(ReplaceFailure::TimedOut {
                        waited: opts.timeout,
                        last,
                    })
                };
            }
            pause.sleep().await;
        }
    }

    /// The Auto Scaling group an instance belongs to, if any.
    pub(crate) async fn group_of(&self, instance: &str) -> Result<Option<String>, FleetError> {
        let out = self
            .autoscaling
            .describe_auto_scaling_instances()
            .instance_ids(instance)
            .send()
            .await
            .map_err(|e| api("DescribeAutoScalingInstances", e))?;
        Ok(out
            .auto_scaling_instances()
            .iter()
            .find(|i| i.instance_id() == Some(instance))
            .and_then(|i| i.auto_scaling_group_name().map(str::to_owned)))
    }

    async fn group_instances(&self, group: &str) -> Result<Vec<AsgInstance>, FleetError> {
        let out = self
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group)
            .send()
            .await
            .map_err(|e| api("DescribeAutoScalingGroups", e))?;
        Ok(out
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(group))
            .map(|g| g.instances().to_vec())
            .unwrap_or_default())
    }

    async fn via_automation(
        &self,
        target: &str,
        document: &str,
        opts: &ReplaceOptions,
        progress: &mut (impl FnMut(ReplaceProgress) + Send),
    ) -> Result<ReplacementOutcome, ReplaceFailure> {
        TargetKind::of(target)?;
        self.mark_requested(target).await;
        let execution_id = self
            .ssm
            .start_automation_execution()
            .document_name(document)
            .parameters("InstanceId", vec![target.to_owned()])
            .send()
            .await
            .map_err(|e| ReplaceFailure::from(api("StartAutomationExecution", e)))?
            .automation_execution_id
            .ok_or_else(|| {
                ReplaceFailure::from(FleetError::Incomplete {
                    op: "StartAutomationExecution",
                    what: "an execution id",
                })
            })?;
        progress(ReplaceProgress::Requested {
            old: target.to_owned(),
            action: format!("StartAutomationExecution {document} ({execution_id})"),
        });
        let deadline = Instant::now() + opts.timeout;
        let mut pause = Backoff::new(opts.poll);
        loop {
            let exec = self
                .ssm
                .get_automation_execution()
                .automation_execution_id(&execution_id)
                .send()
                .await
                .map_err(|e| ReplaceFailure::from(api("GetAutomationExecution", e)))?
                .automation_execution
                .ok_or_else(|| {
                    ReplaceFailure::from(FleetError::Incomplete {
                        op: "GetAutomationExecution",
                        what: "the execution",
                    })
                })?;
            let status = exec
                .automation_execution_status()
                .cloned()
                .unwrap_or(Status::Pending);
            progress(ReplaceProgress::Automation {
                execution_id: execution_id.clone(),
                status: status.as_str().to_owned(),
            });
            match phase(&status) {
                Phase::Succeeded => {
                    return exec
                        .outputs()
                        .and_then(new_instance_from_outputs)
                        .map(|new| ReplacementOutcome::Completed {
                            old: target.to_owned(),
                            new,
                        })
                        .ok_or(ReplaceFailure::NoNewInstanceId { execution_id });
                }
                Phase::Ended => {
                    return Err(ReplaceFailure::AutomationEnded {
                        execution_id,
                        status: status.as_str().to_owned(),
                        message: exec.failure_message().unwrap_or("no message").to_owned(),
                    });
                }
                Phase::Running if Instant::now() >= deadline => {
                    return Err(ReplaceFailure::TimedOut {
                        waited: opts.timeout,
                        last: format!("automation {execution_id}: {}", status.as_str()),
                    });
                }
                Phase::Running => pause.sleep().await,
            }
        }
    }
}

#[cfg(test)]
#[path = "replace_tests.rs"]
mod tests;
