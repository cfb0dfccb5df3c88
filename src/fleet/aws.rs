//! AWS clients from the default credential chain and the global options.
//!
//! `--profile` and `--region` apply to every client. `--endpoint-url` applies to SSM only: it is
//! how the lab (which serves the SSM API) is reached; a loopback `--endpoint-url` (a lab or an
//! emulator) also serves the tagging API unless that has an endpoint of its own, so a lab's
//! fleet never asks AWS for tainted instances. Every client also honours the standard
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
use crate::config::AwsOptions;

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
    pub async fn from_opts(aws: &AwsOptions) -> Result<Self, FleetError> {
        Self::from_config(&aws.aws_config().await, aws.endpoint_url.as_deref())
    }

    /// A fleet whose SSM calls go to a local lab, with the lab's static credentials.
    pub async fn lab(endpoint_url: &str) -> Result<Self, FleetError> {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(LAB_REGION))
            .credentials_provider(Credentials::new("lab", "lab", None, None, "sombrero-lab"))
            .load()
            .await;
        Ok(Self::from_config(&sdk, Some(endpoint_url))?.with_tagging_endpoint(endpoint_url))
    }

    /// The same fleet with its Resource Groups Tagging calls sent to `url` (a lab answers
    /// them; tests keep an emulator's shared state out of a lab's fleet this way).
    pub fn with_tagging_endpoint(mut self, url: &str) -> Self {
        let conf = self.tagging.config().to_builder().endpoint_url(url).build();
        self.tagging = aws_sdk_resourcegroupstagging::Client::from_conf(conf);
        self
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
        let mut tagging = aws_sdk_resourcegroupstagging::config::Builder::from(sdk);
        if let Some(url) = ssm_endpoint.filter(|u| loopback(u) && !tagging_configured(sdk)) {
            tagging = tagging.endpoint_url(url);
        }
        Ok(AwsFleet {
            credentials: sdk.credentials_provider(),
            ssm: aws_sdk_ssm::Client::from_conf(ssm.build()),
            tagging: aws_sdk_resourcegroupstagging::Client::from_conf(tagging.build()),
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

/// Whether a URL names a loopback host (`127.0.0.0/8`, `[::1]`, `localhost`): a lab or an
/// emulator, never an AWS endpoint.
fn loopback(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether the tagging API has an endpoint of its own (its service variable, a profile's
/// `endpoint_url`, or `AWS_ENDPOINT_URL`).
fn tagging_configured(sdk: &aws_config::SdkConfig) -> bool {
    sdk.endpoint_url().is_some()
        || sdk.service_config().is_some_and(|c| {
            aws_types::service_config::ServiceConfigKey::builder()
                .service_id("Resource Groups Tagging API")
                .env("AWS_ENDPOINT_URL")
                .profile("endpoint_url")
                .build()
                .ok()
                .and_then(|key| c.load_config(key))
                .is_some()
        })
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

    async fn active_sessions_on(
        &self,
        target: &str,
    ) -> Result<Vec<super::SessionInfo>, FleetError> {
        self.sessions_on(target).await
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

    async fn mark_emergency(&self, target: &str) -> Result<(), FleetError> {
        self.apply_emergency_tag(target).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_endpoints_count_as_a_lab() {
        for url in [
            "http://127.0.0.1:4566",
            "http://127.8.9.1/",
            "http://localhost:80",
            "http://[::1]:8080/x",
        ] {
            assert!(loopback(url), "{url}");
        }
        for url in [
            "https://ssm.us-east-1.amazonaws.com",
            "https://vpce-0abc.ssm.eu-west-1.vpce.amazonaws.com",
            "http://10.0.0.1:4566",
            "http://127.0.0.1.example.com/",
        ] {
            assert!(!loopback(url), "{url}");
        }
    }

    #[tokio::test]
    async fn a_lab_endpoint_also_serves_the_tagging_api_unless_it_has_its_own() {
        use crate::fleet::Fleet;
        let lab = crate::lab::start(crate::lab::LabConfig {
            nodes: 1,
            ..Default::default()
        })
        .await
        .unwrap();
        // Built by hand: no environment or profile names another endpoint.
        let sdk = |endpoint: Option<&str>| {
            let mut b = aws_config::SdkConfig::builder()
                .region(Region::new("us-east-1"))
                .behavior_version(BehaviorVersion::latest())
                .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                    "lab", "lab", None, None, "test",
                )));
            if let Some(url) = endpoint {
                b = b.endpoint_url(url);
            }
            b.build()
        };
        let f = AwsFleet::from_config(&sdk(None), Some(&lab.endpoint_url())).unwrap();
        assert_eq!(f.list_nodes().await.unwrap().len(), 1);
        // The tagging API has an endpoint of its own (nothing listens there): it is used.
        let f = AwsFleet::from_config(&sdk(Some("http://127.0.0.1:1")), Some(&lab.endpoint_url()))
            .unwrap();
        let e = f.list_nodes().await.unwrap_err();
        assert!(e.to_string().contains("GetResources"), "{e}");
        let f = f.with_tagging_endpoint(&lab.endpoint_url());
        assert_eq!(f.list_nodes().await.unwrap().len(), 1);
        lab.shutdown().await;
    }
}
