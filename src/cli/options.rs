//! The options every subcommand accepts (clap's part: below `cli::run` nothing sees them,
//! commands get the resolved [`crate::backend::Config`]).

use std::path::PathBuf;

use clap::Args;

use crate::config::AwsOptions;

/// Options every subcommand accepts.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalOpts {
    /// Data directory (store, policy, keys, recordings, logs). Default: XDG data dir `pink-sombrero`.
    #[arg(long, global = true, env = "SOMBRERO_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Config file (TOML). Default: `config.toml` in the data dir, if present.
    #[arg(long, global = true, env = "SOMBRERO_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// AWS profile for the fleet (else the default credential chain).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// AWS region (else the default chain's region).
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,
    /// SSM endpoint URL: a lab (`sombrero lab` prints it) or an emulator.
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// A `sombrero serve` daemon to talk to (`unix:/path/to/sock`); else `broker` in the
    /// config file; else this process opens the data dir itself.
    #[arg(long, global = true, env = "SOMBRERO_BROKER", value_name = "URL")]
    pub broker: Option<crate::wire::Endpoint>,
    /// Store: `sqlite` (the data dir's file) or `dynamodb:TABLE` (shared by several brokers).
    /// Default: the config file's `store` key, else `sqlite`.
    #[arg(long, global = true, env = "SOMBRERO_STORE", value_name = "SPEC")]
    pub store: Option<String>,
    /// CA certificate (PEM) that signed a `tcp://`/`https://` broker's certificate. Default:
    /// the public web roots.
    #[arg(long, global = true, env = "SOMBRERO_BROKER_CA", value_name = "PEM")]
    pub ca: Option<PathBuf>,
}

impl GlobalOpts {
    /// The AWS selection these options make (`--profile`, `--region`, `--endpoint-url`, `--ca`).
    pub fn aws(&self) -> AwsOptions {
        AwsOptions {
            profile: self.profile.clone(),
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            ca: self.ca.clone(),
        }
    }
}
