//! Forms and prompts: the request form, approve/deny prompts and the switch-user prompt.
//!
//! A form is a list of text fields; validation is pure and returns the field to fix and why,
//! so refusals appear next to what caused them.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::intent::Intent;
use super::model::{PolicyLimits, RequestRow};
use crate::text::{self, escaped as safe};

/// What a form is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// A break-glass request for this target.
    NewRequest {
        /// Target node id.
        target: String,
    },
    /// Approve this request.
    Approve {
        /// Request id.
        id: String,
    },
    /// Deny this request.
    Deny {
        /// Request id.
        id: String,
    },
    /// Switch the acting user.
    SwitchUser,
    /// Open this approved request's session in a pane of this size (the code form).
    Open {
        /// Request id.
        id: String,
        /// Pane rows.
        rows: u16,
        /// Pane columns.
        cols: u16,
    },
    /// End this request's live session (the code form).
    Kill {
        /// Request id.
        id: String,
    },
}

/// One text field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Label.
    pub label: &'static str,
    /// What to type (shown under the field while it is focused).
    pub hint: String,
    /// Current text.
    pub value: String,
    /// Shown as dots (TOTP codes).
    pub masked: bool,
}

impl Field {
    fn new(label: &'static str, hint: impl Into<String>) -> Self {
        Field {
            label,
            hint: hint.into(),
            value: String::new(),
            masked: false,
        }
    }

    fn code() -> Self {
        Field {
            masked: true,
            ..Field::new("TOTP code", "6 digits; each code works only once")
        }
    }
}

/// An open form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    /// What it is for.
    pub purpose: Purpose,
    /// Its fields, in order.
    pub fields: Vec<Field>,
    /// Focused field.
    pub focus: usize,
    /// The last refusal or validation error, shown inline.
    pub error: Option<String>,
    /// Set while the driver performs the submitted intent.
    pub busy: bool,
    /// Policy limits, captured when the form opened.
    pub limits: PolicyLimits,
    /// What is being decided, shown above the fields (label, value), already escaped.
    pub context: Vec<(&'static str, String)>,
    /// The request form's emergency door is on (then [`CONFIRM`] must read [`CONFIRM_WORD`]).
    pub emergency: bool,
}

/// What an approver must see before deciding: who asks, for which node, why, for how long,
/// how long ago, and where the approvals stand (including what this approval would do).
pub fn decision_context(
    r: &RequestRow,
    node_name: Option<&str>,
    now: DateTime<Utc>,
) -> Vec<(&'static str, String)> {
    let target = match node_name {
        Some(name) => format!("{} ({})", safe(&r.target), safe(name)),
        None => format!(
            "{} (node name unknown: the fleet was not listed)",
            safe(&r.target)
        ),
    };
    let so_far = if r.approved_by.is_empty() {
        "none yet".to_string()
    } else {
        safe(&r.approved_by.join(", "))
    };
    let after = r.approved_by.len() + 1;
    let required = r.approvals_required as usize;
    let effect = if after >= required {
        "yours makes it APPROVED: the requester may open it"
    } else {
        "yours is not the last: it stays pending"
    };
    vec![
        ("Requester", safe(&r.requester)),
        ("Target", target),
        ("Reason", safe(&r.reason)),
        (
            "Incident",
            r.incident.as_deref().map_or_else(|| "(none)".into(), safe),
        ),
        (
            "Duration",
            humantime::format_duration(Duration::from_secs(r.duration_secs)).to_string(),
        ),
        (
            "Asked",
            format!(
                "{} ago ({})",
                super::widgets::age(now, r.created_at),
                r.created_at.format("%H:%M UTC")
            ),
        ),
        (
            "Approvals",
            format!(
                "{} of {required} so far ({so_far}); {effect}",
                r.approved_by.len()
            ),
        ),
    ]
}

// The request form's fields: what a requester types first, the code (whose Enter submits),
// then the duration, which has a default and is reached with Tab.
const REASON: usize = 0;
const INCIDENT: usize = 1;
const CODE: usize = 2;
const DURATION: usize = 3;
/// The emergency confirmation, present only while the door is on.
pub const CONFIRM: usize = 4;
/// What the requester types to confirm an emergency request: a second, deliberate step.
pub const CONFIRM_WORD: &str = "EMERGENCY";

impl Form {
    fn with(purpose: Purpose, fields: Vec<Field>, limits: PolicyLimits) -> Self {
        Form {
            purpose,
            fields,
            focus: 0,
            error: None,
            busy: false,
            limits,
            context: Vec::new(),
            emergency: false,
        }
    }

    /// The form with `context` shown above its fields (see [`decision_context`]).
    pub fn with_context(mut self, context: Vec<(&'static str, String)>) -> Self {
        self.context = context;
        self
    }

    /// The break-glass request form for `target`.
    pub fn new_request(target: &str, limits: PolicyLimits) -> Self {
        let mut duration = Field::new(
            "Duration",
            format!(
                "e.g. 30m; at most {}",
                humantime::format_duration(limits.max_duration)
            ),
        );
        duration.value = humantime::format_duration(limits.default_duration).to_string();
        let fields = vec![
            Field::new(
                "Reason",
                format!(
                    "why you need a shell (at least {} characters)",
                    limits.min_reason_len
                ),
            ),
            Field::new("Incident", "ticket or incident reference (optional)"),
            Field::code(),
            duration,
        ];
        debug_assert!(fields[CODE].masked && !fields[DURATION].masked);
        Form::with(
            Purpose::NewRequest {
                target: target.to_string(),
            },
            fields,
            limits,
        )
    }

    /// Switches the request form's emergency door on or off; says why not when the policy does
    /// not open it to this user (or this is not the request form).
    pub fn toggle_emergency(&mut self) -> Result<(), String> {
        if !matches!(self.purpose, Purpose::NewRequest { .. }) {
            return Err("Only the request form has an emergency door.".to_string());
        }
        if !self.limits.emergency_allowed {
            return Err(
                "The emergency door is not open to you: the policy's [emergency] must be enabled and list you."
                    .to_string(),
            );
        }
        self.emergency = !self.emergency;
        self.error = None;
        if self.emergency {
            self.fields.push(Field::new(
                "Confirm",
                format!("type {CONFIRM_WORD} to confirm: it is announced at once"),
            ));
            self.fields[INCIDENT].hint = "incident reference (required for an emergency)".into();
        } else {
            self.fields.truncate(CONFIRM);
            self.fields[INCIDENT].hint = "ticket or incident reference (optional)".into();
            self.focus = self.focus.min(CONFIRM - 1);
        }
        Ok(())
    }

    /// The approve prompt: the code first (Enter approves), the comment optional after it.
    pub fn approve(id: &str) -> Self {
        Form::with(
            Purpose::Approve { id: id.to_string() },
            vec![
                Field::code(),
                Field::new("Comment", "optional note for the audit log (Tab)"),
            ],
            PolicyLimits::default(),
        )
    }

    /// The deny prompt.
    pub fn deny(id: &str) -> Self {
        Form::with(
            Purpose::Deny { id: id.to_string() },
            vec![
                Field::new("Comment", "why you deny it (required)"),
                Field::code(),
            ],
            PolicyLimits::default(),
        )
    }

    /// The switch-user prompt.
    pub fn switch_user() -> Self {
        Form::with(
            Purpose::SwitchUser,
            vec![
                Field::new("User", "name of the enrolled user to act as"),
                Field::code(),
            ],
            PolicyLimits::default(),
        )
    }

    /// The one-field code form that opens a session (`o`) or kills one (`K`).
    pub fn code_only(purpose: Purpose) -> Self {
        Form::with(purpose, vec![Field::code()], PolicyLimits::default())
    }

    /// Title shown on the form's border.
    pub fn title(&self) -> String {
        match &self.purpose {
            Purpose::NewRequest { target } if self.emergency => {
                format!("EMERGENCY request for {target}")
            }
            Purpose::NewRequest { target } => format!("Break-glass request for {target}"),
            Purpose::Approve { id } => format!("Approve {id}"),
            Purpose::Deny { id } => format!("Deny {id}"),
            Purpose::SwitchUser => "Switch acting user".to_string(),
            Purpose::Open { id, .. } => format!("Open the session of {id}"),
            Purpose::Kill { id } => format!("End the session of {id}"),
        }
    }

    /// Whether the focused field is the last one.
    pub fn on_last_field(&self) -> bool {
        self.focus + 1 >= self.fields.len()
    }

    /// The code field's position (every form has one).
    pub fn code_field(&self) -> usize {
        self.fields
            .iter()
            .position(|f| f.masked)
            .unwrap_or(self.fields.len().saturating_sub(1))
    }

    /// Whether Enter submits (else it moves to the next field): on the last field, on the code
    /// field, and on any field once the code is typed; the fields after the code are optional.
    pub fn submits_on_enter(&self) -> bool {
        self.on_last_field()
            || self.focus == self.code_field()
            || !self.value(self.code_field()).is_empty()
    }

    /// The focused field's text, for editing.
    pub fn focused_mut(&mut self) -> Option<&mut String> {
        self.fields.get_mut(self.focus).map(|f| &mut f.value)
    }

    fn value(&self, i: usize) -> &str {
        self.fields.get(i).map_or("", |f| f.value.trim())
    }

    /// Checks every field and builds the intent, or names the field to fix and why.
    pub fn validate(&self) -> Result<Intent, (usize, String)> {
        let code_at = self.code_field();
        let code = self.value(code_at).to_string();
        let check_code = || {
            if code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()) {
                Ok(())
            } else {
                Err((
                    code_at,
                    "The TOTP code is 6 digits: type the current code from your authenticator."
                        .to_string(),
                ))
            }
        };
        match &self.purpose {
            Purpose::NewRequest { target } => {
                let reason = self.value(REASON);
                let min = self.limits.min_reason_len;
                if reason.chars().count() < min {
                    return Err((
                        REASON,
                        format!(
                            "The reason needs at least {min} characters ({} so far): say what is broken and why a shell helps.",
                            reason.chars().count()
                        ),
                    ));
                }
                field_rule(REASON, text::Field::Reason, reason)?;
                field_rule(INCIDENT, text::Field::Incident, self.value(INCIDENT))?;
                let duration = parse_duration(self.value(DURATION), &self.limits)
                    .map_err(|m| (DURATION, m))?;
                if self.emergency && self.value(INCIDENT).is_empty() {
                    return Err((
                        INCIDENT,
                        "An emergency needs its incident reference.".to_string(),
                    ));
                }
                if self.emergency && self.value(CONFIRM) != CONFIRM_WORD {
                    return Err((
                        CONFIRM,
                        format!(
                            "Type {CONFIRM_WORD} to confirm: it is announced to every approver at once (Ctrl-E: ordinary request)."
                        ),
                    ));
                }
                check_code()?;
                let incident = Some(self.value(INCIDENT).to_string()).filter(|s| !s.is_empty());
                Ok(Intent::CreateRequest {
                    target: target.clone(),
                    reason: reason.to_string(),
                    incident,
                    duration,
                    code,
                    emergency: self.emergency,
                })
            }
            Purpose::Approve { id } => {
                field_rule(1, text::Field::Comment, self.value(1))?;
                check_code()?;
                let comment = Some(self.value(1).to_string()).filter(|s| !s.is_empty());
                Ok(Intent::Approve {
                    id: id.clone(),
                    code,
                    comment,
                })
            }
            Purpose::Deny { id } => {
                let comment = self.value(0);
                if comment.is_empty() {
                    return Err((
                        0,
                        "Say why you deny it: the requester sees this.".to_string(),
                    ));
                }
                field_rule(0, text::Field::Comment, comment)?;
                check_code()?;
                Ok(Intent::Deny {
                    id: id.clone(),
                    code,
                    comment: comment.to_string(),
                })
            }
            Purpose::SwitchUser => {
                let name = self.value(0);
                if name.is_empty() {
                    return Err((0, "Type the name of an enrolled user.".to_string()));
                }
                check_code()?;
                Ok(Intent::SwitchUser {
                    name: name.to_string(),
                    code,
                })
            }
            Purpose::Open { id, rows, cols } => {
                check_code()?;
                Ok(Intent::OpenSession {
                    id: id.clone(),
                    rows: *rows,
                    cols: *cols,
                    code: Some(code),
                })
            }
            Purpose::Kill { id } => {
                check_code()?;
                Ok(Intent::Kill {
                    id: id.clone(),
                    code,
                })
            }
        }
    }
}

/// The input rule for a field at `index`, as a form error next to it.
fn field_rule(index: usize, field: text::Field, value: &str) -> Result<(), (usize, String)> {
    text::validate_field(field, value).map_err(|e| (index, format!("{e}.")))
}

fn parse_duration(text: &str, limits: &PolicyLimits) -> Result<Duration, String> {
    let max = humantime::format_duration(limits.max_duration);
    let d = humantime::parse_duration(text)
        .map_err(|_| format!("Type a duration like 30m or 1h (at most {max})."))?;
    if d.is_zero() {
        return Err(format!(
            "The duration must be more than zero (at most {max})."
        ));
    }
    if d > limits.max_duration {
        return Err(format!(
            "Policy allows at most {max}: ask for less, you can request again."
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(reason: &str, duration: &str, code: &str) -> Form {
        let mut f = Form::new_request("mi-1", PolicyLimits::default());
        f.fields[REASON].value = reason.into();
        f.fields[DURATION].value = duration.into();
        f.fields[CODE].value = code.into();
        f
    }

    #[test]
    fn request_form_names_the_field_to_fix() {
        assert_eq!(
            filled("short", "30m", "123456").validate().unwrap_err().0,
            REASON
        );
        let long = "disk full on the primary";
        assert_eq!(
            filled(long, "5h", "123456").validate().unwrap_err().0,
            DURATION
        );
        assert_eq!(
            filled(long, "soon", "123456").validate().unwrap_err().0,
            DURATION
        );
        assert_eq!(
            filled(long, "30m", "12a456").validate().unwrap_err().0,
            CODE
        );
        assert_eq!(
            filled(long, "30m", "123456").validate().unwrap(),
            Intent::CreateRequest {
                target: "mi-1".into(),
                reason: long.into(),
                incident: None,
                duration: Duration::from_secs(1800),
                code: "123456".into(),
                emergency: false,
            }
        );
    }

    #[test]
    fn open_and_kill_forms_need_a_code() {
        let mut f = Form::code_only(Purpose::Kill { id: "r1".into() });
        f.fields[0].value = "12345".into();
        assert_eq!(f.validate().unwrap_err().0, 0);
        f.fields[0].value = "123456".into();
        assert_eq!(
            f.validate().unwrap(),
            Intent::Kill {
                id: "r1".into(),
                code: "123456".into()
            }
        );
        let mut f = Form::code_only(Purpose::Open {
            id: "r1".into(),
            rows: 20,
            cols: 80,
        });
        f.fields[0].value = "654321".into();
        assert!(matches!(
            f.validate(),
            Ok(Intent::OpenSession { code: Some(c), rows: 20, .. }) if c == "654321"
        ));
    }

    #[test]
    fn enter_submits_on_the_code_or_once_it_is_typed() {
        let mut f = Form::new_request("mi-1", PolicyLimits::default());
        assert!(!f.submits_on_enter(), "Enter on the reason moves on");
        f.focus = CODE;
        assert!(f.submits_on_enter());
        f.focus = REASON;
        f.fields[CODE].value = "1".into();
        assert!(
            f.submits_on_enter(),
            "the code is typed: Enter submits from anywhere"
        );
        let a = Form::approve("r1");
        assert_eq!((a.focus, a.code_field()), (0, 0));
        assert!(a.submits_on_enter());
        let d = Form::deny("r1");
        assert!(!d.submits_on_enter(), "a denial's comment comes first");
    }

    #[test]
    fn deny_requires_a_comment() {
        let mut f = Form::deny("r1");
        f.fields[1].value = "123456".into();
        assert_eq!(f.validate().unwrap_err().0, 0);
        f.fields[0].value = "not now".into();
        assert!(matches!(f.validate(), Ok(Intent::Deny { .. })));
    }
}
