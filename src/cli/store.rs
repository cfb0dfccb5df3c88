//! `sombrero store init`: creates the DynamoDB table of the team store.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::ExitError;
use super::connection;
use crate::backend::Config;
use crate::store::StoreError;
use crate::store::any::StoreSpec;
use crate::store::dynamo::{AwsSelect, DynamoStore};

/// `sombrero store ...`
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Create the DynamoDB table (on-demand billing) and wait until it is ready; an existing
    /// table with the right key schema is fine.
    Init(InitArgs),
}

/// `sombrero store init`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Table name (default: the table of `--store dynamodb:TABLE`).
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Dispatches `sombrero store`.
pub fn run(g: &Config, c: StoreCommand) -> anyhow::Result<ExitCode> {
    match c {
        StoreCommand::Init(a) => init(g, a),
    }
}

fn init(g: &Config, a: InitArgs) -> anyhow::Result<ExitCode> {
    let table = match a.table {
        Some(t) => t,
        None => match g.store().map_err(connection::fail)? {
            StoreSpec::Dynamo { table, .. } => table.clone(),
            StoreSpec::Sqlite => {
                return Err(ExitError::usage(
                        "the SQLite store needs no setup; name a DynamoDB table with --table NAME or --store dynamodb:NAME",
                    )
                    .into());
            }
        },
    };
    let store = DynamoStore::open_with(
        &table,
        AwsSelect {
            profile: g.aws.profile.clone(),
            region: g.aws.region.clone(),
        },
    )
    .map_err(usage_if_bad_spec)?;
    let outcome = store
        .init(&mut |msg| eprintln!("sombrero: {msg}"))
        .map_err(usage_if_bad_spec)?;
    if a.json {
        connection::print_json(&outcome)?;
    } else if outcome.created {
        println!(
            "created DynamoDB table {} ({})",
            outcome.table, outcome.status
        );
    } else {
        println!(
            "DynamoDB table {} already exists with the right schema ({})",
            outcome.table, outcome.status
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A bad name or a table with the wrong schema is the person's input; the rest is a failure.
fn usage_if_bad_spec(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::BadSpec(_) | StoreError::WrongSchema { .. } => {
            ExitError::usage(e.to_string()).into()
        }
        other => anyhow::Error::new(other),
    }
}
