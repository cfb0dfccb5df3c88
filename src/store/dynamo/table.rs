//! The table: opening and creating it, queries over a partition, and the commit of one
//! transaction.

use super::*;

/// A filter expression with its attribute names and values.
pub(super) type Filter = (
    String,
    Vec<(&'static str, &'static str)>,
    Vec<(String, AttributeValue)>,
);

/// One Query over a partition.
pub(super) struct Query {
    pub(super) pk: &'static str,
    /// Only sort keys after this one.
    pub(super) after: Option<String>,
    pub(super) filter: Option<Filter>,
    pub(super) limit: Option<usize>,
}

impl Query {
    pub(super) fn all(pk: &'static str) -> Query {
        Query {
            pk,
            after: None,
            filter: None,
            limit: None,
        }
    }

    pub(super) fn in_states(pk: &'static str, states: &[State]) -> Query {
        let values: Vec<(String, AttributeValue)> = states
            .iter()
            .enumerate()
            .map(|(i, st)| (format!(":s{i}"), s(st.as_str())))
            .collect();
        let names: Vec<&str> = values.iter().map(|(k, _)| k.as_str()).collect();
        let expr = format!("#st IN ({})", names.join(", "));
        Query {
            filter: Some((expr, vec![("#st", "state")], values)),
            ..Query::all(pk)
        }
    }
}

/// Why a commit did not land.
pub(super) enum Commit {
    Landed,
    /// Another writer got there first: run the transaction again.
    Lost,
}

impl DynamoStore {
    /// A store over `table` (region, endpoint and credentials from the usual AWS chain,
    /// `AWS_ENDPOINT_URL_DYNAMODB` included). The table must exist (`init` creates it);
    /// a missing one shows as [`StoreError::NoTable`] on first use.
    pub fn open(table: &str) -> Result<DynamoStore, StoreError> {
        DynamoStore::open_with(table, AwsSelect::default())
    }

    /// [`DynamoStore::open`] through the profile and region `aws` names.
    pub fn open_with(table: &str, aws: AwsSelect) -> Result<DynamoStore, StoreError> {
        if !valid_table_name(table) {
            return Err(StoreError::BadSpec(format!("dynamodb:{table}")));
        }
        Ok(DynamoStore {
            table: table.to_string(),
            bridge: Bridge::start(aws)?,
            writing: Turns::default(),
        })
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table (on-demand billing) unless it exists, and waits until it is ACTIVE,
    /// telling `progress` what it waits for. An existing table with another key schema is
    /// [`StoreError::WrongSchema`].
    pub fn init(&self, progress: &mut dyn FnMut(&str)) -> Result<InitOutcome, StoreError> {
        let mut created = false;
        let mut status = match self.describe()? {
            Some(status) => status,
            None => {
                progress(&format!("creating DynamoDB table {}", self.table));
                self.create()?;
                created = true;
                TableStatus::Creating
            }
        };
        let started = std::time::Instant::now();
        while status != TableStatus::Active {
            if started.elapsed() > INIT_TIMEOUT {
                return Err(StoreError::Dynamo {
                    op: "DescribeTable",
                    message: format!(
                        "table {} is still {} after {}s",
                        self.table,
                        status.as_str(),
                        INIT_TIMEOUT.as_secs()
                    ),
                });
            }
            progress(&format!(
                "waiting for table {} to become ACTIVE (now {})",
                self.table,
                status.as_str()
            ));
            std::thread::sleep(Duration::from_secs(1));
            status = self.describe()?.ok_or_else(|| StoreError::NoTable {
                table: self.table.clone(),
            })?;
        }
        Ok(InitOutcome {
            table: self.table.clone(),
            created,
            status: status.as_str().to_string(),
        })
    }

    /// The table's status, `None` when it does not exist; checks its key schema.
    pub(super) fn describe(&self) -> Result<Option<TableStatus>, StoreError> {
        let (c, table) = (self.bridge.client.clone(), self.table.clone());
        self.bridge.run(async move {
            let out = match c.describe_table().table_name(&table).send().await {
                Ok(out) => out,
                Err(e) => {
                    return match sdk_err("DescribeTable", &table, e) {
                        StoreError::NoTable { .. } => Ok(None),
                        other => Err(other),
                    };
                }
            };
            let Some(desc) = out.table else {
                return Ok(None);
            };
            let mut keys: Vec<String> = desc
                .key_schema()
                .iter()
                .map(|k| format!("{} {}", k.attribute_name(), k.key_type().as_str()))
                .collect();
            keys.sort();
            let types: BTreeMap<&str, &str> = desc
                .attribute_definitions()
                .iter()
                .map(|a| (a.attribute_name(), a.attribute_type().as_str()))
                .collect();
            let right = keys == ["pk HASH", "sk RANGE"]
                && types.get("pk") == Some(&"S")
                && types.get("sk") == Some(&"S");
            if !right {
                return Err(StoreError::WrongSchema {
                    table,
                    found: format!("[{}] with types {types:?}", keys.join(", ")),
                });
            }
            Ok(Some(
                desc.table_status()
                    .cloned()
                    .unwrap_or(TableStatus::Creating),
            ))
        })
    }

    pub(super) fn create(&self) -> Result<(), StoreError> {
        let (c, table) = (self.bridge.client.clone(), self.table.clone());
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Dynamo {
            op: "CreateTable",
            message: e.to_string(),
        };
        let keys = [("pk", KeyType::Hash), ("sk", KeyType::Range)];
        let mut schema = Vec::new();
        let mut attrs = Vec::new();
        for (name, kind) in keys {
            schema.push(
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(kind)
                    .build()
                    .map_err(build)?,
            );
            attrs.push(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)?,
            );
        }
        self.bridge.run(async move {
            match c
                .create_table()
                .table_name(&table)
                .billing_mode(BillingMode::PayPerRequest)
                .set_key_schema(Some(schema))
                .set_attribute_definitions(Some(attrs))
                .send()
                .await
            {
                Ok(_) => Ok(()),
                // Another `init` won the race; the status loop checks what it made.
                Err(e)
                    if e.as_service_error().and_then(|s| s.code())
                        == Some("ResourceInUseException") =>
                {
                    Ok(())
                }
                Err(e) => Err(sdk_err("CreateTable", &table, e)),
            }
        })
    }

    pub(super) fn get(&self, pk: &'static str, sk: &str) -> Result<Option<Item>, StoreError> {
        let (c, table, sk) = (
            self.bridge.client.clone(),
            self.table.clone(),
            sk.to_string(),
        );
        self.bridge.run(async move {
            c.get_item()
                .table_name(&table)
                .set_key(Some(key(pk, &sk)))
                .consistent_read(true)
                .send()
                .await
                .map(|o| o.item)
                .map_err(|e| sdk_err("GetItem", &table, e))
        })
    }

    pub(super) fn query(&self, q: Query) -> Result<Vec<Item>, StoreError> {
        let (c, table) = (self.bridge.client.clone(), self.table.clone());
        self.bridge.run(async move {
            let mut out = Vec::new();
            let mut start: Option<Item> = None;
            loop {
                let mut req = c
                    .query()
                    .table_name(&table)
                    .consistent_read(true)
                    .expression_attribute_values(":pk", s(q.pk))
                    .set_exclusive_start_key(start.take());
                req = match &q.after {
                    Some(after) => req
                        .key_condition_expression("pk = :pk AND sk > :after")
                        .expression_attribute_values(":after", s(after)),
                    None => req.key_condition_expression("pk = :pk"),
                };
                if let Some((expr, names, values)) = &q.filter {
                    req = req.filter_expression(expr);
                    for (k, v) in names {
                        req = req.expression_attribute_names(*k, *v);
                    }
                    for (k, v) in values {
                        req = req.expression_attribute_values(k, v.clone());
                    }
                }
                let page = req.send().await.map_err(|e| sdk_err("Query", &table, e))?;
                out.extend(page.items.unwrap_or_default());
                if let Some(limit) = q.limit
                    && out.len() >= limit
                {
                    out.truncate(limit);
                    break;
                }
                match page.last_evaluated_key {
                    Some(k) if !k.is_empty() => start = Some(k),
                    _ => break,
                }
            }
            Ok(out)
        })
    }

    /// The audit chain's last event `(seq, hash)` as the head item says, `None` while empty.
    pub fn audit_head(&self) -> Result<Option<(u64, String)>, StoreError> {
        let h = self.head()?;
        Ok((h.seq > 0).then_some((h.seq, h.hash)))
    }

    pub(super) fn head(&self) -> Result<Head, StoreError> {
        Head::decode(self.get(HEAD, HEAD)?)
    }

    /// Commits `items`; `audit` is the first audit seq and the number of audit puts, which
    /// come right before the head (the last item).
    pub(super) fn commit(
        &self,
        items: Vec<TransactWriteItem>,
        audit: Option<(u64, usize)>,
    ) -> Result<Commit, StoreError> {
        let (c, table) = (self.bridge.client.clone(), self.table.clone());
        self.bridge.run(async move {
            // The token makes the SDK's own retries idempotent: a commit that landed but whose
            // answer was lost is not applied twice, nor mistaken for a lost race.
            let err = match c
                .transact_write_items()
                .client_request_token(uuid::Uuid::new_v4().to_string())
                .set_transact_items(Some(items))
                .send()
                .await
            {
                Ok(_) => return Ok(Commit::Landed),
                Err(e) => e,
            };
            if let Some(TransactWriteItemsError::TransactionCanceledException(t)) =
                err.as_service_error()
            {
                let codes: Vec<&str> = t
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code().unwrap_or("None"))
                    .collect();
                // Lost a race: a condition on what we read no longer holds, or DynamoDB saw
                // a concurrent transaction on the same items.
                let raced =
                    |c: &&str| matches!(*c, "ConditionalCheckFailed" | "TransactionConflict");
                // The head still stood as read, yet an audit seq was taken: not a race but a
                // head moved back behind the chain. Never retry into overwriting it.
                if let (Some((first, n)), Some((head, rest))) = (audit, codes.split_last())
                    && *head == "None"
                    && let Some(i) = rest[rest.len().saturating_sub(n)..]
                        .iter()
                        .position(|c| *c == "ConditionalCheckFailed")
                {
                    return Err(StoreError::AuditOverwrite {
                        seq: first + i as u64,
                    });
                }
                if codes.iter().any(raced) && codes.iter().all(|c| *c == "None" || raced(c)) {
                    return Ok(Commit::Lost);
                }
                return Err(StoreError::Dynamo {
                    op: "TransactWriteItems",
                    message: format!("transaction cancelled: {codes:?}"),
                });
            }
            Err(sdk_err("TransactWriteItems", &table, err))
        })
    }

    pub(super) fn put(&self, item: Item, cond: Cond) -> Result<TransactWriteItem, StoreError> {
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        put = match cond {
            Cond::Absent => put.condition_expression("attribute_not_exists(pk)"),
            Cond::Equals(attr, v) => put
                .condition_expression("#v = :v")
                .expression_attribute_names("#v", attr)
                .expression_attribute_values(":v", n(v)),
        };
        let put = put.build().map_err(|e| StoreError::Dynamo {
            op: "TransactWriteItems",
            message: e.to_string(),
        })?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    pub(super) fn delete(&self, pk: &str, sk: &str) -> Result<TransactWriteItem, StoreError> {
        let d = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .build()
            .map_err(|e| StoreError::Dynamo {
                op: "TransactWriteItems",
                message: e.to_string(),
            })?;
        Ok(TransactWriteItem::builder().delete(d).build())
    }

    /// How many items a partition holds (a COUNT query, paged).
    pub(super) fn count(&self, pk: &'static str) -> Result<usize, StoreError> {
        let (c, table) = (self.bridge.client.clone(), self.table.clone());
        self.bridge.run(async move {
            let mut total = 0usize;
            let mut start: Option<Item> = None;
            loop {
                let page = c
                    .query()
                    .table_name(&table)
                    .consistent_read(true)
                    .select(aws_sdk_dynamodb::types::Select::Count)
                    .key_condition_expression("pk = :pk")
                    .expression_attribute_values(":pk", s(pk))
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| sdk_err("Query", &table, e))?;
                total += page.count.max(0) as usize;
                match page.last_evaluated_key {
                    Some(k) if !k.is_empty() => start = Some(k),
                    _ => return Ok(total),
                }
            }
        })
    }
}
