//! What the command line resolves once, before any command runs: the data dir's paths, the
//! broker daemon, the store, the policy file, the recordings directory and the AWS selection.
//! A plain value handed down; each part keeps its own error, so a command that never uses a
//! broken part is not stopped by it.

use std::path::{Path, PathBuf};

use super::{BackendError, Result};
use crate::config::{AwsOptions, Paths};
use crate::store::any::StoreSpec;
use crate::store::dynamo::AwsSelect;
use crate::wire::Endpoint;

/// The resolved configuration (see the module doc).
#[derive(Debug, Clone)]
pub struct Config {
    /// `--data-dir` as given (the demo wants a fresh one).
    pub data_dir: Option<PathBuf>,
    /// The data dir.
    paths: Result<Paths, String>,
    /// `--config`, when given (else `config.toml` in the data dir).
    pub config_file: Option<PathBuf>,
    /// The daemon to talk to, if any.
    broker: Result<Option<Endpoint>, String>,
    /// The store, with the AWS selection applied to a DynamoDB table.
    store: Result<StoreSpec, String>,
    /// The policy file.
    policy_path: Result<PathBuf, String>,
    /// Where recordings are written and listed.
    recordings_dir: Result<PathBuf, String>,
    /// AWS profile, region, endpoints and the broker's CA.
    pub aws: AwsOptions,
}

/// What the command line says before anything is resolved.
#[derive(Debug, Clone, Default)]
pub struct Given {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--config`.
    pub config_file: Option<PathBuf>,
    /// `--broker`.
    pub broker: Option<Endpoint>,
    /// `--store`.
    pub store: Option<String>,
    /// `--profile`, `--region`, `--endpoint-url`, `--ca`.
    pub aws: AwsOptions,
}

impl Config {
    /// Resolves every part once (the config file is read for each key it may hold).
    pub fn resolve(given: Given) -> Config {
        let paths = Paths::resolve(given.data_dir.as_deref()).map_err(|e| e.to_string());
        let file = given.config_file.as_deref();
        let on_paths = |f: &dyn Fn(&Paths) -> Result<PathBuf, String>| match &paths {
            Ok(p) => f(p),
            Err(e) => Err(e.clone()),
        };
        let broker = match given.broker {
            Some(e) => Ok(Some(e)),
            None => match &paths {
                Ok(p) => broker_in_file(file, p),
                Err(e) => Err(e.clone()),
            },
        };
        let store = match &paths {
            Ok(p) => StoreSpec::resolve(given.store.as_deref(), file, p)
                .map(|mut spec| {
                    // The table is reached with the same --profile/--region as every AWS call.
                    if let StoreSpec::Dynamo { aws, .. } = &mut spec {
                        *aws = AwsSelect {
                            profile: given.aws.profile.clone(),
                            region: given.aws.region.clone(),
                        };
                    }
                    spec
                })
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        let policy_path =
            on_paths(&|p| crate::policy_file::resolve_path(file, p).map_err(|e| e.to_string()));
        let recordings_dir =
            on_paths(&|p| crate::recording::recordings_dir(file, p).map_err(|e| e.to_string()));
        Config {
            data_dir: given.data_dir,
            paths,
            config_file: given.config_file,
            broker,
            store,
            policy_path,
            recordings_dir,
            aws: given.aws,
        }
    }

    /// A configuration for a data dir and nothing else (the demo, tests).
    pub fn at(dir: impl Into<PathBuf>) -> Config {
        Config::resolve(Given {
            data_dir: Some(dir.into()),
            ..Given::default()
        })
    }

    /// The data dir's paths.
    pub fn paths(&self) -> Result<&Paths> {
        self.paths.as_ref().map_err(input)
    }
    /// The config file: `--config`, else `config.toml` in the data dir.
    pub fn config_path(&self) -> Result<PathBuf> {
        match &self.config_file {
            Some(f) => Ok(f.clone()),
            None => Ok(self.paths()?.config()),
        }
    }
    /// The daemon, if one is named.
    pub fn broker(&self) -> Result<Option<Endpoint>> {
        self.broker.clone().map_err(|e| input(&e))
    }
    /// The store.
    pub fn store(&self) -> Result<&StoreSpec> {
        self.store.as_ref().map_err(input)
    }
    /// The policy file.
    pub fn policy_path(&self) -> Result<&Path> {
        self.policy_path.as_deref().map_err(input)
    }
    /// The recordings directory.
    pub fn recordings_dir(&self) -> Result<&Path> {
        self.recordings_dir.as_deref().map_err(input)
    }
}

fn input(e: &impl ToString) -> BackendError {
    BackendError::Input(e.to_string())
}

/// `broker` in the config file, parsed.
fn broker_in_file(file: Option<&Path>, paths: &Paths) -> Result<Option<Endpoint>, String> {
    let Some((text, file)) =
        crate::config::config_string(file, paths, "broker").map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    text.parse()
        .map(Some)
        .map_err(|e| format!("{}: broker: {e}", file.display()))
}
