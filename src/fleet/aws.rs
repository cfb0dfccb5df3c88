//! AWS clients from the default credential chain and the global options.
//!
//! `--profile` and `--region` apply to every client. `--endpoint-url` applies to SSM only: it is
//! how the lab (which serves the SSM API) is reached. Every client also honours the standard
//! per-service variables read by aws-config: `AWS_ENDPOINT_URL_SSM`,
//! `AWS_ENDPOINT_URL_RESOURCE_GROUPS_TAGGING_API`, `AWS_ENDPOINT_URL_AUTO_SCALING`,
//! `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL_EC2` (the hand-made DescribeInstances, see
//! [`super::ec2_query`]), and the global `AWS_ENDPOINT_URL`.

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use tokio::sync::OnceCell;

use super::Fleet;
use crate::channel::client::{ClientOptions, ResumeError, Signing, resume_fn};

use super::FleetError;
use super::error::api;
use crate::config::GlobalOpts;

/// Region the lab pretends to be in.
const LAB_REGION: &str = "us-east-1";

/// Who the credentials belong to; the account and partition build instance ARNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The account id.
    pub account: String,
    /// The caller's ARN.
    pub arn: String,
    /// The partition (`aws`, `aws-cn`, `aws-us-gov`), from the caller's ARN.
    pub partition: String,
}

/// The fleet over AWS: SSM, Resource Groups Tagging, Auto Scaling and STS clients.
#[derive(Debug, Clone)]
pub struct AwsFleet {
    pub(crate) ssm: aws_sdk_ssm::Client,
    pub(crate) tagging: aws_sdk_resourcegroupstagging::Client,
    pub(crate) autoscaling: aws_sdk_autoscaling::Client,
    /// EC2 DescribeInstances (launch times), by hand.
    pub(crate) ec2: super::ec2_query::Ec2Query,
    sts: aws_sdk_sts::Client,
    region: String,
    identity: std::sync::Arc<OnceCell<Identity>>,
    /// Kept to sign the data channel's websocket upgrade.
    credentials: Option<SharedCredentialsProvider>,
}

impl AwsFleet {
    /// Builds the clients from the default chain plus `--profile`, `--region`, `--endpoint-url`.
    pub async fn from_opts(g: &GlobalOpts) -> Result<Self, FleetError> {
        Self::from_config(&g.aws_config().await, g.endpoint_url.as_deref())
    }

    /// A fleet whose SSM calls go to a local lab, with the lab's static credentials.
    pub async fn lab(endpoint_url: &str) -> Result<Self, FleetError> {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(LAB_REGION))
            .credentials_provider(Credentials::new("lab", "lab", None, None, "sombrero-lab"))
            .load()
            .await;
        Self::from_config(&sdk, Some(endpoint_url))
    }

    /// Builds the clients from a loaded SDK config; `ssm_endpoint` overrides SSM's endpoint only.
    pub fn from_config(
        sdk: &aws_config::SdkConfig,
        ssm_endpoint: Option<&str>,
    ) -> Result<Self, FleetError> {
        let region = sdk.region().ok_or(FleetError::NoRegion)?.to_string();
        let mut ssm = aws_sdk_ssm::config::Builder::from(sdk);
        if let Some(url) = ssm_endpoint {
            ssm = ssm.endpoint_url(url);
        }
        Ok(AwsFleet {
            credentials: sdk.credentials_provider(),
            ssm: aws_sdk_ssm::Client::from_conf(ssm.build()),
            tagging: aws_sdk_resourcegroupstagging::Client::new(sdk),
            autoscaling: aws_sdk_autoscaling::Client::new(sdk),
            ec2: super::ec2_query::Ec2Query::from_config(sdk)?,
            sts: aws_sdk_sts::Client::new(sdk),
            region,
            identity: std::sync::Arc::new(OnceCell::new()),
        })
    }

    /// Data-channel options: SigV4 signing with these credentials, and reconnection through
    /// ResumeSession after a socket loss.
    pub fn channel_options(&self) -> ClientOptions {
        let fleet = self.clone();
        ClientOptions {
            signing: self.credentials.clone().map(|credentials| Signing {
                credentials,
                region: self.region.clone(),
            }),
            resume: Some(resume_fn(move |session_id: String| {
                let fleet = fleet.clone();
                async move {
                    match fleet.resume_session(&session_id).await {
                        Ok(s) if s.token.is_empty() => Ok(None),
                        Ok(s) => Ok(Some(s.token)),
                        Err(e) => Err(Box::new(e) as ResumeError),
                    }
                }
            })),
            ..ClientOptions::default()
        }
    }

    /// The region the clients use.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The caller's identity (sts GetCallerIdentity), asked once and remembered.
    pub async fn identity(&self) -> Result<&Identity, FleetError> {
        self.identity
            .get_or_try_init(|| async {
                let out = self
                    .sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| api("GetCallerIdentity", e))?;
                let account = out.account.ok_or(FleetError::Incomplete {
                    op: "GetCallerIdentity",
                    what: "an account id",
                })?;
                let arn = out.arn.ok_or(FleetError::Incomplete {
                    op: "GetCallerIdentity",
                    what: "an ARN",
                })?;
                let partition = arn
                    .split(':')
                    .nth(1)
                    .filter(|p| !p.is_empty())
                    .ok_or(FleetError::Incomplete {
                        op: "GetCallerIdentity",
                        what: "a well-formed ARN",
                    })?
                    .to_owned();
                Ok(Identity {
                    account,
                    arn,
                    partition,
                })
            })
            .await
    }

    /// The ARN of an EC2 instance in this account and region.
    pub async fn instance_arn(&self, instance_id: &str) -> Result<String, FleetError> {
        let id = self.identity().await?;
        Ok(format!(
            "arn:{}:ec2:{}:{}:instance/{instance_id}",
            id.partition, self.region, id.account
        ))
    }
}

impl super::Fleet for AwsFleet {
    async fn list_nodes(&self) -> Result<Vec<super::Node>, FleetError> {
        self.nodes().await
    }

    async fn start_session(
        &self,
        target: &str,
        reason: &super::SessionReason,
    ) -> Result<super::StartedSession, FleetError> {
        self.start(target, reason).await
    }

    async fn start_command_session(
        &self,
        target: &str,
        reason: &super::SessionReason,
        command: &str,
    ) -> Result<super::StartedSession, FleetError> {
        self.start_command(target, reason, command).await
    }

    async fn resume_session(&self, session_id: &str) -> Result<super::StartedSession, FleetError> {
        self.resume(session_id).await
    }

    async fn terminate_session(&self, session_id: &str) -> Result<(), FleetError> {
        self.terminate(session_id).await
    }

    async fn describe_sessions(
        &self,
        state: super::SessionState,
    ) -> Result<Vec<super::SessionInfo>, FleetError> {
        self.sessions(state).await
    }

    async fn taint(&self, target: &str, taint: &super::Taint) -> Result<(), FleetError> {
        self.apply_taint(target, taint).await
    }

    async fn replace(
        &self,
        target: &str,
        strategy: &super::ReplaceStrategy,
        opts: &super::ReplaceOptions,
        progress: impl FnMut(super::ReplaceProgress) + Send,
    ) -> super::ReplacementOutcome {
        self.replace_node(target, strategy, opts, progress).await
    }
}
