//! The policy's defaults: the file written on first run, and the values it documents.

use std::time::Duration;

/// The policy written on first run, with every key and its meaning.
pub const DEFAULT_POLICY: &str = r#"# pink-sombrero policy. Checked with `sombrero policy check`.
#
# A person may request (or approve, or review) when they are enrolled with that role
# (`sombrero user add NAME --role requester|approver|reviewer|both`) AND the list below
# names them or contains "*". "*" trusts every enrolled user with the role: fine for one
# console or a lab; a team should list names.
requesters = ["*"]
approvers = ["*"]
reviewers = ["*"]

# Distinct approvers needed, never the requester (at least 1; default 2).
approvals_required = 2

# How long a request may wait for approvals, how long an approved request may wait to be
# opened, and the longest session one may ask for (humantime: "90s", "15m", "1h 30m").
request_ttl = "30m"
grant_window = "15m"
max_session_duration = "1h"

# Shortest acceptable reason, in characters.
reason_min_length = 10

# If set, every request needs an incident reference matching this regex.
# incident_pattern = "^INC-[0-9]+$"

# What happens to an instance after its session closes:
#   "asg"                 terminate it in its Auto Scaling group (which launches a fresh one)
#   "asg-unhealthy"       mark it Unhealthy in its group
#   "automation:<doc>"    run an SSM Automation document with the instance id
#   "none"                only tag it as tainted
replacement = "asg"

# In an immutable fleet nothing lives long: instances older than this (since launch for EC2
# instances, since registration for managed nodes) are a finding. `sombrero fleet` marks them
# OLD; `sombrero rogue` reports them and audits each one once. "0" turns the check off.
max_instance_age = "14d"

# On the daemon's Unix socket, an OS user whose name is an enrolled sombrero user is that user
# without an [identities] line. false turns that off: only [identities] maps anyone.
implicit_identities = true

# Requests still pending after this long (and every such step after) are announced again to
# the [[notify]] targets listing "escalation". Off unless set.
# escalate_after = "5m"

# Whose recordings must be reviewed ("emergency", "all" or "none"), and by when after the
# session ends; `sombrero review --pending` lists them, late ones are audited and notified.
review_required = "emergency"
review_within = "24h"

[mfa]
# Consecutive wrong or replayed TOTP codes before a lockout, and how long it lasts.
max_failures = 5
lockout = "5m"
# Opening an approved session needs the requester's code too (true), not only the request.
# Killing a session always needs the approver's code.
at_open = true

# Who is who when `sombrero serve` runs the broker: the daemon names each client by its
# connection, never by what the client says. On the Unix socket that is the peer's OS user
# ("alice", or "uid:1001" for a uid without a passwd entry); over TCP it is the AWS IAM ARN the
# client proved. Map them to enrolled sombrero users here. An OS user whose name is an enrolled
# sombrero user is that user without a line here (unless implicit_identities = false); anyone
# else is refused.
[identities]
# "alice.smith" = "alice"
# "uid:1001" = "bob"
# "arn:aws:iam::123456789012:role/oncall-carol" = "carol"

# Where events are announced (README: "Notifications"). URLs and secrets: see there; never
# write a secret in this file.
# [[notify]]
# kind = "slack"
# url_env = "SOMBRERO_SLACK_URL"
# events = ["request_created", "escalation", "emergency_opened", "review_overdue"]

# The emergency door (README: "The emergency door"): off unless enabled.
# [emergency]
# enabled = true
# requesters = ["oncall"]
# veto_window = "2m"
# max_per_day = 1
# review_within = "24h"
# reviewers_required = 2
"#;

/// `max_instance_age` when the policy does not set it: two weeks.
pub const DEFAULT_MAX_INSTANCE_AGE: Duration = Duration::from_secs(14 * 24 * 60 * 60);
