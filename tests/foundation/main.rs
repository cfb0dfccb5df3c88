//! Integration tests, one binary per area: the broker through the CLI: request flow, policy, audit chain, races, the DynamoDB store.
//! Fixtures shared by every area live in `tests/common/`.

#[path = "../common/mod.rs"]
mod common;

mod audit;
mod flow;
mod layering;
mod policy;
mod race;
mod store_dynamo;
