//! Items: how requests, users, audit events and the chain head are written as DynamoDB
//! attributes and read back, strictly.

use super::*;

pub(super) const HEAD: &str = "head";
pub(super) const REQUEST: &str = "request";
pub(super) const USER: &str = "user";
pub(super) const AUDIT: &str = "audit";
pub(super) const OUTBOX: &str = "outbox";

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn key(pk: &str, sk: &str) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

pub(super) fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(StoreError::Corrupt(format!(
            "DynamoDB item without the string attribute {name}"
        ))),
    }
}

pub(super) fn get_n(item: &Item, name: &str) -> Result<u64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("attribute {name} is not a count: {v:?}"))),
        _ => Err(StoreError::Corrupt(format!(
            "DynamoDB item without the number attribute {name}"
        ))),
    }
}

pub(super) fn to_json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(v: &str) -> Result<T, StoreError> {
    serde_json::from_str(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn audit_sk(seq: u64) -> String {
    format!("{seq:020}")
}

/// The audit chain's end and the write counter.
#[derive(Debug, Clone, Default)]
pub(super) struct Head {
    /// False until the first write created the item.
    pub(super) exists: bool,
    pub(super) seq: u64,
    pub(super) hash: String,
    pub(super) rev: u64,
}

impl Head {
    pub(super) fn decode(item: Option<Item>) -> Result<Head, StoreError> {
        let Some(item) = item else {
            return Ok(Head::default());
        };
        Ok(Head {
            exists: true,
            seq: get_n(&item, "seq")?,
            hash: get_s(&item, "hash")?.to_string(),
            rev: get_n(&item, "rev")?,
        })
    }
}

pub(super) fn request_item(r: &Request, ver: u64) -> Result<Item, StoreError> {
    let mut item = key(REQUEST, &r.id);
    item.insert("body".into(), s(to_json(r)?));
    item.insert("state".into(), s(r.state.as_str()));
    item.insert("ver".into(), n(ver));
    Ok(item)
}

pub(super) fn decode_request(item: &Item) -> Result<(Request, u64), StoreError> {
    Ok((from_json(get_s(item, "body")?)?, get_n(item, "ver")?))
}

/// A user item's body: everything but the name (the key) and the secret (its own attribute).
#[derive(Serialize, Deserialize)]
pub(super) struct UserBody {
    pub(super) roles: BTreeSet<Role>,
    pub(super) enrolled_at: DateTime<Utc>,
    pub(super) confirmed_at: Option<DateTime<Utc>>,
    pub(super) mfa: MfaState,
}

pub(super) fn user_item(u: &UserRecord, ver: u64) -> Result<Item, StoreError> {
    let body = UserBody {
        roles: u.roles.clone(),
        enrolled_at: u.enrolled_at,
        confirmed_at: u.confirmed_at,
        mfa: u.mfa.clone(),
    };
    let mut item = key(USER, &u.name);
    item.insert("body".into(), s(to_json(&body)?));
    item.insert("secret".into(), s(&u.secret_base32));
    item.insert("ver".into(), n(ver));
    Ok(item)
}

pub(super) fn decode_user(item: &Item) -> Result<(UserRecord, u64), StoreError> {
    let body: UserBody = from_json(get_s(item, "body")?)?;
    let user = UserRecord {
        name: get_s(item, "sk")?.to_string(),
        roles: body.roles,
        secret_base32: get_s(item, "secret")?.to_string(),
        enrolled_at: body.enrolled_at,
        confirmed_at: body.confirmed_at,
        mfa: body.mfa,
    };
    Ok((user, get_n(item, "ver")?))
}

pub(super) fn event_item(e: &Event) -> Result<Item, StoreError> {
    let mut item = key(AUDIT, &audit_sk(e.seq));
    item.insert("event".into(), s(to_json(e)?));
    if let Some(id) = &e.request_id {
        item.insert("request_id".into(), s(id));
    }
    Ok(item)
}

pub(super) fn decode_event(item: &Item) -> Result<Event, StoreError> {
    let sk = get_s(item, "sk")?;
    from_json(get_s(item, "event")?).map_err(|e| match e {
        StoreError::Corrupt(m) => StoreError::Corrupt(format!("audit event {sk}: {m}")),
        other => other,
    })
}

pub(super) fn outbox_item(o: &crate::store::outbox_item::OutboxItem) -> Result<Item, StoreError> {
    let mut item = key(OUTBOX, &o.id);
    item.insert("body".into(), s(to_json(o)?));
    item.insert(
        "next_at".into(),
        s(crate::store::outbox_item::sortable(o.next_at)),
    );
    item.insert("attempts".into(), n(u64::from(o.attempts)));
    Ok(item)
}
