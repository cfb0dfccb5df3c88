//! Integration tests, one binary per area: what ships: the binary stamp, systemd unit and the IAM/CloudFormation templates.
//! Fixtures shared by every area live in `tests/common/`.

#[path = "../common/mod.rs"]
mod common;

mod iam_templates;
mod ship;
