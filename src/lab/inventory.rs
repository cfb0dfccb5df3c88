//! DescribeInstanceInformation and the tag operations (ResourceType ManagedInstance).

use std::time::SystemTime;

use serde::Deserialize;
use serde_json::{Value, json};

use super::call::{ApiError, Ctx, input, max_results, page};
use super::nodes::{AGENT_VERSION, Node, platform};
use super::state::epoch_secs;

/// AWS's limit of tags on one resource.
const MAX_TAGS: usize = 50;

/// `InstanceInformationFilter`: the service model spells its members `key` and `valueSet`
/// (unlike `InstanceInformationStringFilter`'s `Key` and `Values`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListFilter {
    key: String,
    value_set: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StringFilter {
    key: String,
    values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeInput {
    instance_information_filter_list: Option<Vec<ListFilter>>,
    filters: Option<Vec<StringFilter>>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

/// `i-` + 8 or 17 hex digits, or `mi-` + 17: the shapes AWS accepts.
fn well_formed_instance_id(id: &str) -> bool {
    let hex = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    };
    match (id.strip_prefix("i-"), id.strip_prefix("mi-")) {
        (Some(h), _) => (h.len() == 8 || h.len() == 17) && hex(h),
        (_, Some(h)) => h.len() == 17 && hex(h),
        _ => false,
    }
}

/// Does `node` pass filter `key` with `values`?
fn matches(node: &Node, key: &str, values: &[String]) -> Result<bool, ApiError> {
    let any = |v: &str| values.iter().any(|x| x == v);
    Ok(match key {
        "InstanceIds" => {
            if let Some(bad) = values.iter().find(|v| !well_formed_instance_id(v)) {
                return Err(ApiError::bad(
                    "InvalidInstanceId",
                    format!("Instance id {bad:?} is not valid."),
                ));
            }
            any(&node.id)
        }
        "PingStatus" => any(ping(node)),
        "PlatformTypes" => any("Linux"),
        "ResourceType" => any("ManagedInstance"),
        "AgentVersion" => any(AGENT_VERSION),
        "tag-key" => node.tags.iter().any(|(k, _)| any(k)),
        k => match k.strip_prefix("tag:") {
            Some(tag) => node.tags.iter().any(|(tk, tv)| tk == tag && any(tv)),
            None => {
                return Err(ApiError::bad(
                    "InvalidFilterKey",
                    format!("The filter key {key:?} isn't valid."),
                ));
            }
        },
    })
}

/// The agent's ping status: `ConnectionLost` once the lab control stopped it.
fn ping(node: &Node) -> &'static str {
    if node.agent_lost.is_some() {
        "ConnectionLost"
    } else {
        "Online"
    }
}

fn describe(node: &Node, platform: &(String, String), now: SystemTime) -> Value {
    json!({
        "InstanceId": node.id,
        "PingStatus": ping(node),
        "LastPingDateTime": epoch_secs(node.agent_lost.unwrap_or(now)),
        "AgentVersion": AGENT_VERSION,
        "IsLatestVersion": true,
        "PlatformType": "Linux",
        "PlatformName": platform.0,
        "PlatformVersion": platform.1,
        "ActivationId": "00000000-0000-4000-8000-00000000001a",
        "IamRole": "SombreroLabNode",
        "RegistrationDate": epoch_secs(node.registered),
        "ResourceType": "ManagedInstance",
        "IPAddress": format!("127.0.0.{}", node.ip_octet),
        "ComputerName": node.id,
        "SourceId": node.id,
        "SourceType": "AWS::SSM::ManagedInstance",
    })
}

/// DescribeInstanceInformation.
pub(crate) fn describe_instance_information(ctx: &Ctx, body: &Value) -> Result<Value, ApiError> {
    let req: DescribeInput = input(body)?;
    if req.instance_information_filter_list.is_some() && req.filters.is_some() {
        return Err(ApiError::bad(
            "InvalidInstanceInformationFilterValue",
            "use either InstanceInformationFilterList or Filters, not both",
        ));
    }
    let max = max_results(req.max_results, "maxResults", 5, 50, 10)?;
    let mut filters: Vec<(String, Vec<String>)> = Vec::new();
    for f in req.instance_information_filter_list.unwrap_or_default() {
        filters.push((f.key, f.value_set));
    }
    for f in req.filters.unwrap_or_default() {
        filters.push((f.key, f.values));
    }
    let platform = platform();
    let now = SystemTime::now();
    let mut listed = Vec::new();
    for node in ctx.state.lock().nodes.iter() {
        let mut keep = true;
        for (k, v) in &filters {
            keep &= matches(node, k, v)?;
        }
        if keep {
            listed.push(describe(node, &platform, now));
        }
    }
    let (items, next) = page(listed, req.next_token.as_deref(), max)?;
    let mut out = json!({ "InstanceInformationList": items });
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    key: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagsInput {
    resource_type: String,
    resource_id: String,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    tag_keys: Vec<String>,
}

fn check_resource_type(t: &str) -> Result<(), ApiError> {
    if t == "ManagedInstance" {
        Ok(())
    } else {
        Err(ApiError::bad(
            "InvalidResourceType",
            format!("The resource type {t:?} isn't valid in the lab (only ManagedInstance)."),
        ))
    }
}

fn invalid_resource_id(id: &str) -> ApiError {
    ApiError::bad(
        "InvalidResourceId",
        format!(
            "The resource ID {id:?} isn't valid. Verify that you entered the correct ID and try again."
        ),
    )
}

fn check_tag(key: &str, value: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.chars().count() > 128 {
        return Err(ApiError::validation(format!(
            "Value '{key}' at 'tags.member.key' failed to satisfy constraint: Member must have \
             length between 1 and 128"
        )));
    }
    if value.chars().count() > 256 {
        return Err(ApiError::validation(
            "Value at 'tags.member.value' failed to satisfy constraint: Member must have length \
             less than or equal to 256",
        ));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(ApiError::bad(
            "InvalidParameters",
            "Tag keys beginning with aws: are reserved.",
        ));
    }
    Ok(())
}

fn with_node<T>(
    ctx: &Ctx,
    req: &TagsInput,
    f: impl FnOnce(&mut Node) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    check_resource_type(&req.resource_type)?;
    let mut inner = ctx.state.lock();
    let node = inner
        .nodes
        .iter_mut()
        .find(|n| n.id == req.resource_id)
        .ok_or_else(|| invalid_resource_id(&req.resource_id))?;
    f(node)
}

/// AddTagsToResource.
pub(crate) fn add_tags(ctx: &Ctx, body: &Value) -> Result<Value, ApiError> {
    let req: TagsInput = input(body)?;
    if req.tags.is_empty() {
        return Err(ApiError::validation(
            "Value at 'tags' failed to satisfy constraint: Member must not be null",
        ));
    }
    for t in &req.tags {
        check_tag(&t.key, &t.value)?;
    }
    let tags: Vec<(String, String)> = req
        .tags
        .iter()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect();
    with_node(ctx, &req, |node| {
        let mut after = node.clone();
        after.add_tags(tags);
        if after.tags.len() > MAX_TAGS {
            return Err(ApiError::bad(
                "TooManyTagsError",
                format!("The resource can carry at most {MAX_TAGS} tags."),
            ));
        }
        node.tags = after.tags;
        Ok(json!({}))
    })
}

/// GetResources of the Resource Groups Tagging API: the lab has no EC2 instances, so a search
/// for tagged ones finds none (its managed nodes are tagged through SSM).
pub(crate) fn get_resources(body: &Value) -> Result<Value, ApiError> {
    if !body.is_object() {
        return Err(ApiError::validation(
            "the request body must be a JSON object",
        ));
    }
    Ok(json!({ "ResourceTagMappingList": [], "PaginationToken": "" }))
}

/// ListTagsForResource.
pub(crate) fn list_tags(ctx: &Ctx, body: &Value) -> Result<Value, ApiError> {
    let req: TagsInput = input(body)?;
    with_node(ctx, &req, |node| {
        let list: Vec<Value> = node
            .tags
            .iter()
            .map(|(k, v)| json!({ "Key": k, "Value": v }))
            .collect();
        Ok(json!({ "TagList": list }))
    })
}

/// RemoveTagsFromResource.
pub(crate) fn remove_tags(ctx: &Ctx, body: &Value) -> Result<Value, ApiError> {
    let req: TagsInput = input(body)?;
    with_node(ctx, &req, |node| {
        node.remove_tags(&req.tag_keys);
        Ok(json!({}))
    })
}
