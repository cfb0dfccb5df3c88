//! The buffering transaction of one attempt: strongly consistent reads that remember each
//! version read, writes kept until the commit.

use super::*;

/// What a put requires of the item it replaces.
pub(super) enum Cond {
    Absent,
    Equals(&'static str, u64),
}

/// Sleeps a random time up to an exponentially growing cap (full jitter), so contenders
/// spread out instead of colliding again.
pub(super) fn backoff(attempt: u32) {
    let cap_ms = (10u64 << attempt.min(7)).min(1000);
    std::thread::sleep(Duration::from_millis(rand::random_range(0..=cap_ms)));
}

/// The buffering transaction of one attempt.
pub(super) struct DynTx<'a> {
    pub(super) store: &'a DynamoStore,
    pub(super) head: Head,
    /// Version of every request or user read (`None`: it did not exist), by (pk, sk).
    pub(super) read: HashMap<(&'static str, String), Option<u64>>,
    pub(super) requests: BTreeMap<String, Request>,
    pub(super) users: BTreeMap<String, UserRecord>,
    /// Users as read earlier in this attempt (`None`: absent), so `user` needs no second read
    /// (if one changed since, the head moved and the commit fails anyway).
    pub(super) read_users: BTreeMap<String, Option<UserRecord>>,
    /// Whether `users` listed them all (a name not in `read_users` is then absent).
    pub(super) listed_users: bool,
    pub(super) events: Vec<Event>,
    /// Notifications queued by this attempt, and ids removed.
    pub(super) outbox: Vec<crate::store::outbox_item::OutboxItem>,
    pub(super) outbox_removed: Vec<String>,
}

impl DynTx<'_> {
    pub(super) fn note(&mut self, pk: &'static str, sk: &str, ver: Option<u64>) {
        // The first read counts: if the item moved since, the head moved too.
        self.read.entry((pk, sk.to_string())).or_insert(ver);
    }

    /// Makes sure the item's version is known before a put replaces it.
    pub(super) fn read_before_put(&mut self, pk: &'static str, sk: &str) -> Result<(), StoreError> {
        if self.read.contains_key(&(pk, sk.to_string())) {
            return Ok(());
        }
        let ver = match self.store.get(pk, sk)? {
            Some(item) => Some(get_n(&item, "ver")?),
            None => None,
        };
        self.note(pk, sk, ver);
        Ok(())
    }

    pub(super) fn dirty(&self) -> bool {
        !(self.requests.is_empty()
            && self.users.is_empty()
            && self.events.is_empty()
            && self.outbox.is_empty()
            && self.outbox_removed.is_empty())
    }

    pub(super) fn cond(&self, pk: &'static str, sk: &str) -> (Cond, u64) {
        match self.read.get(&(pk, sk.to_string())).copied().flatten() {
            Some(v) => (Cond::Equals("ver", v), v + 1),
            None => (Cond::Absent, 1),
        }
    }

    /// The commit: every put with its condition, and the head.
    pub(super) fn items(&self) -> Result<Vec<TransactWriteItem>, StoreError> {
        let mut items = Vec::new();
        for r in self.requests.values() {
            let (cond, ver) = self.cond(REQUEST, &r.id);
            items.push(self.store.put(request_item(r, ver)?, cond)?);
        }
        for u in self.users.values() {
            let (cond, ver) = self.cond(USER, &u.name);
            items.push(self.store.put(user_item(u, ver)?, cond)?);
        }
        // Before the audit puts: `commit` finds those just before the head.
        for o in &self.outbox {
            items.push(self.store.put(outbox_item(o)?, Cond::Absent)?);
        }
        for id in &self.outbox_removed {
            items.push(self.store.delete(OUTBOX, id)?);
        }
        for e in &self.events {
            items.push(self.store.put(event_item(e)?, Cond::Absent)?);
        }
        let (seq, hash) = match self.events.last() {
            Some(e) => (e.seq, e.hash.clone()),
            None => (self.head.seq, self.head.hash.clone()),
        };
        let mut head = key(HEAD, HEAD);
        head.insert("seq".into(), n(seq));
        head.insert("hash".into(), s(hash));
        head.insert("rev".into(), n(self.head.rev + 1));
        let cond = if self.head.exists {
            Cond::Equals("rev", self.head.rev)
        } else {
            Cond::Absent
        };
        items.push(self.store.put(head, cond)?);
        Ok(items)
    }
}

impl WriteTx for DynTx<'_> {
    fn request(&mut self, id: &str) -> Result<Option<Request>, StoreError> {
        if let Some(r) = self.requests.get(id) {
            return Ok(Some(r.clone()));
        }
        match self.store.get(REQUEST, id)? {
            Some(item) => {
                let (r, ver) = decode_request(&item)?;
                self.note(REQUEST, id, Some(ver));
                Ok(Some(r))
            }
            None => {
                self.note(REQUEST, id, None);
                Ok(None)
            }
        }
    }

    fn put_request(&mut self, r: &Request) -> Result<(), StoreError> {
        self.read_before_put(REQUEST, &r.id)?;
        self.requests.insert(r.id.clone(), r.clone());
        Ok(())
    }

    fn timed_requests(&mut self) -> Result<Vec<Request>, StoreError> {
        let timed = [
            State::Pending,
            State::Emergency,
            State::Approved,
            State::Active,
        ];
        let mut found = BTreeMap::new();
        for item in self.store.query(Query::in_states(REQUEST, &timed))? {
            let (r, ver) = decode_request(&item)?;
            self.note(REQUEST, &r.id, Some(ver));
            found.insert(r.id.clone(), r);
        }
        // This transaction's own writes win.
        for (id, r) in &self.requests {
            found.insert(id.clone(), r.clone());
        }
        Ok(found
            .into_values()
            .filter(|r| timed.contains(&r.state))
            .collect())
    }

    fn user(&mut self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        if let Some(u) = self.users.get(name) {
            return Ok(Some(u.clone()));
        }
        if let Some(u) = self.read_users.get(name) {
            return Ok(u.clone());
        }
        // Listed already: not among them, so absent.
        let item = match self.listed_users {
            true => None,
            false => self.store.get(USER, name)?,
        };
        let found = match item {
            Some(item) => {
                let (u, ver) = decode_user(&item)?;
                self.note(USER, name, Some(ver));
                Some(u)
            }
            None => None,
        };
        if found.is_none() {
            self.note(USER, name, None);
        }
        self.read_users.insert(name.to_string(), found.clone());
        Ok(found)
    }

    fn users(&mut self) -> Result<Vec<UserRecord>, StoreError> {
        let mut found = BTreeMap::new();
        for item in self.store.query(Query::all(USER))? {
            let (u, ver) = decode_user(&item)?;
            self.note(USER, &u.name, Some(ver));
            found.insert(u.name.clone(), u);
        }
        self.read_users = found
            .iter()
            .map(|(name, u)| (name.clone(), Some(u.clone())))
            .collect();
        self.listed_users = true;
        for (name, u) in &self.users {
            found.insert(name.clone(), u.clone());
        }
        Ok(found.into_values().collect())
    }

    fn put_user(&mut self, u: &UserRecord) -> Result<(), StoreError> {
        self.read_before_put(USER, &u.name)?;
        self.users.insert(u.name.clone(), u.clone());
        Ok(())
    }

    fn append(&mut self, e: NewEvent, at: DateTime<Utc>) -> Result<Event, StoreError> {
        let prev = match self.events.last() {
            Some(last) => Some((last.seq, last.hash.as_str())),
            None if self.head.seq > 0 => Some((self.head.seq, self.head.hash.as_str())),
            None => None,
        };
        let ev = Event::chain(prev, e, at);
        self.events.push(ev.clone());
        Ok(ev)
    }

    fn enqueue(&mut self, item: &crate::store::outbox_item::OutboxItem) -> Result<(), StoreError> {
        self.outbox.push(item.clone());
        Ok(())
    }

    fn outbox_len(&mut self) -> Result<usize, StoreError> {
        Ok(self.store.count(OUTBOX)? + self.outbox.len())
    }

    fn outbox_remove(&mut self, id: &str) -> Result<(), StoreError> {
        self.outbox.retain(|o| o.id != id);
        self.outbox_removed.push(id.to_string());
        Ok(())
    }
}
