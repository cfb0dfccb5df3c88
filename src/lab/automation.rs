//! StartAutomationExecution and GetAutomationExecution for the lab's one document,
//! `PinkSombrero-ReplaceNode`: a phoenix replacement. The old node's sessions end and its
//! shell is killed, its id is deregistered and its directory deleted, and a new node with a
//! new `mi-` id and a pristine home registers. The execution is InProgress meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::{Value, json};

use super::call::{ApiError, Ctx, input};
use super::state::{Automation, LabState, epoch_secs};

/// Name of the replace document.
pub const REPLACE_DOCUMENT: &str = "PinkSombrero-ReplaceNode";
/// Output key holding the new node's id.
pub const OUTPUT_NEW_INSTANCE: &str = "NewInstanceId";
/// Output key holding the replaced node's id.
pub const OUTPUT_OLD_INSTANCE: &str = "OldInstanceId";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartInput {
    document_name: Option<String>,
    #[serde(default)]
    parameters: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetInput {
    automation_execution_id: Option<String>,
}

fn bad_parameters(message: impl Into<String>) -> ApiError {
    ApiError::bad("InvalidAutomationExecutionParametersException", message)
}

/// StartAutomationExecution.
pub(crate) fn start(ctx: &Ctx, body: &Value) -> Result<Value, ApiError> {
    let req: StartInput = input(body)?;
    let doc = req.document_name.unwrap_or_default();
    if doc != REPLACE_DOCUMENT {
        return Err(ApiError::bad(
            "AutomationDefinitionNotFoundException",
            format!("Document {doc:?} does not exist in the lab (only {REPLACE_DOCUMENT})."),
        ));
    }
    if let Some(k) = req.parameters.keys().find(|k| k.as_str() != "InstanceId") {
        return Err(bad_parameters(format!(
            "Parameter {k:?} is not defined in {REPLACE_DOCUMENT}; it takes InstanceId only."
        )));
    }
    let old = match req.parameters.get("InstanceId").map(Vec::as_slice) {
        Some([id]) => id.clone(),
        _ => {
            return Err(bad_parameters(
                "InstanceId must be given with exactly one managed instance id.",
            ));
        }
    };
    if !ctx.state.lock().nodes.iter().any(|n| n.id == old) {
        return Err(bad_parameters(format!(
            "InstanceId {old} is not a registered managed instance."
        )));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let exec = Automation {
        id: id.clone(),
        parameters: req.parameters,
        executed_by: ctx.owner.clone(),
        start: SystemTime::now(),
        end: None,
        status: "InProgress",
        outputs: BTreeMap::new(),
        failure: None,
    };
    ctx.state.lock().automations.insert(id.clone(), exec);
    tracing::info!(execution = %id, node = %old, "replacement started");
    tokio::spawn(run(ctx.state.clone(), id.clone(), old));
    Ok(json!({ "AutomationExecutionId": id }))
}

async fn run(state: Arc<LabState>, id: String, old: String) {
    tokio::time::sleep(state.automation_delay).await;
    let outcome = replace(&state, &old);
    let mut inner = state.lock();
    let Some(exec) = inner.automations.get_mut(&id) else {
        return;
    };
    exec.end = Some(SystemTime::now());
    match outcome {
        Ok(new) => {
            tracing::info!(execution = %id, %old, %new, "node replaced");
            exec.status = "Success";
            exec.outputs
                .insert(OUTPUT_NEW_INSTANCE.into(), vec![new.clone()]);
            exec.outputs.insert(OUTPUT_OLD_INSTANCE.into(), vec![old]);
        }
        Err(why) => {
            tracing::warn!(execution = %id, %why, "replacement failed");
            exec.status = "Failed";
            exec.failure = Some(why);
        }
    }
}

fn replace(state: &LabState, old: &str) -> Result<String, String> {
    if state.hooks.take_automation_failure() {
        return Err("lab test hook: the replacement failed".into());
    }
    state.terminate_sessions(Some(old));
    let removed = {
        let mut inner = state.lock();
        let pos = inner
            .nodes
            .iter()
            .position(|n| n.id == old)
            .ok_or_else(|| format!("{old} is no longer registered"))?;
        inner.nodes.remove(pos)
    };
    if let Err(e) = std::fs::remove_dir_all(&removed.dir) {
        tracing::warn!(error = %e, dir = %removed.dir.display(), "cannot delete old node directory");
    }
    state
        .add_node()
        .map_err(|e| format!("cannot create the new node: {e}"))
}

/// GetAutomationExecution.
pub(crate) fn get(ctx: &Ctx, body: &Value) -> Result<Value, ApiError> {
    let req: GetInput = input(body)?;
    let id = req.automation_execution_id.unwrap_or_default();
    let exec = ctx
        .state
        .lock()
        .automations
        .get(&id)
        .cloned()
        .ok_or_else(|| {
            ApiError::bad(
                "AutomationExecutionNotFoundException",
                format!("Automation execution {id:?} does not exist."),
            )
        })?;
    let mut v = json!({
        "AutomationExecutionId": exec.id,
        "DocumentName": REPLACE_DOCUMENT,
        "DocumentVersion": "1",
        "ExecutionStartTime": epoch_secs(exec.start),
        "AutomationExecutionStatus": exec.status,
        "Parameters": exec.parameters,
        "Outputs": exec.outputs,
        "Mode": "Auto",
        "ExecutedBy": exec.executed_by,
    });
    if let Some(end) = exec.end {
        v["ExecutionEndTime"] = json!(epoch_secs(end));
    }
    if let Some(f) = exec.failure {
        v["FailureMessage"] = json!(f);
    }
    Ok(json!({ "AutomationExecution": v }))
}
