//! The connections of one app, sharded so that publishing never takes a global lock.
//!
//! A connection lives in the shard of its user (anonymous ones in the shard of their id), so
//! everything about one user — its connection count, a publish to it, a kick — touches one
//! shard. Each shard indexes its connections by user, session, tenant and channel; a publish to
//! a tenant or channel visits every shard, each under its own short lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use super::conn::Conn;
use crate::mercure::{Selector, Topic};
use crate::message::{Message, Targets};

const SHARDS: usize = 32;

/// Connections by one attribute. The lists hold the connections themselves, so a publish goes
/// from an address to its recipients without a lookup per recipient.
type Index = HashMap<Arc<str>, Vec<Arc<Conn>>>;

#[derive(Default)]
struct Shard {
    conns: HashMap<u64, Arc<Conn>>,
    users: Index,
    /// The keys of `users` in order, so that a page of `GET /api/users` reads `limit` users
    /// after its cursor instead of sorting everybody online.
    online: BTreeSet<Arc<str>>,
    sessions: Index,
    tenants: Index,
    channels: Index,
    /// Mercure subscribers by the id of each of their non-exact selectors (templates, URL
    /// patterns, `*`); exact topics are in `channels`.
    patterns: HashMap<u32, Vec<Arc<Conn>>, BuildHasherDefault<IdHasher>>,
}

/// Hashes the small integer ids of selectors with one multiplication: a publish looks up every
/// matched selector in every shard, so this lookup is on the delivery path.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// One distinct live selector: how many connections use it, and the id shards index it by.
struct Live {
    selector: Arc<Selector>,
    count: usize,
    id: u32,
}

/// The distinct non-exact Mercure selectors of an app, each evaluated once per published topic
/// however many connections share it, and a bounded cache of which selectors a topic matched.
#[derive(Default)]
struct Patterns {
    /// By selector key.
    live: HashMap<Arc<str>, Live>,
    /// Ids given back by selectors no connection uses any more, reused first.
    free: Vec<u32>,
    next: u32,
    /// Topic → ids of the selectors it matches; cleared when the selector set changes or it fills.
    cache: HashMap<Box<str>, Arc<[u32]>>,
    /// Bumped whenever `live` changes, so a result computed before the change is not cached.
    generation: u64,
}

/// Topics whose matched selectors are remembered; past this the cache starts over.
const PATTERN_CACHE: usize = 4096;

impl Shard {
    fn index(&mut self, conn: &Arc<Conn>) {
        let who = &conn.who;
        for (index, key) in
            [(&mut self.users, &who.user), (&mut self.sessions, &who.session), (&mut self.tenants, &who.tenant)]
        {
            if let Some(key) = key {
                index.entry(key.clone()).or_default().push(conn.clone());
            }
        }
        for channel in &who.channels {
            self.channels.entry(channel.clone()).or_default().push(conn.clone());
        }
        for &id in conn.mercure.iter().flat_map(|m| m.pattern_ids.iter()) {
            self.patterns.entry(id).or_default().push(conn.clone());
        }
        if let Some(user) = &who.user {
            if self.users.get(user).map_or(0, Vec::len) == 1 {
                self.online.insert(user.clone());
            }
        }
    }

    fn unindex(&mut self, conn: &Conn) {
        fn drop_from(index: &mut Index, key: &Arc<str>, id: u64) {
            if let Some(conns) = index.get_mut(key) {
                conns.retain(|c| c.id != id);
                if conns.is_empty() {
                    index.remove(key);
                }
            }
        }
        let who = &conn.who;
        for (index, key) in
            [(&mut self.users, &who.user), (&mut self.sessions, &who.session), (&mut self.tenants, &who.tenant)]
        {
            if let Some(key) = key {
                drop_from(index, key, conn.id);
            }
        }
        for channel in &who.channels {
            drop_from(&mut self.channels, channel, conn.id);
        }
        for id in conn.mercure.iter().flat_map(|m| m.pattern_ids.iter()) {
            if let Some(conns) = self.patterns.get_mut(id) {
                conns.retain(|c| c.id != conn.id);
                if conns.is_empty() {
                    self.patterns.remove(id);
                }
            }
        }
        if let Some(user) = &who.user {
            if !self.users.contains_key(user) {
                self.online.remove(user);
            }
        }
    }

    /// The connections `targets` reaches, each once. Mercure subscribers are reached through
    /// topics only (their channels and `patterns`, the keys of the selectors the message's
    /// topics matched), and a private message only by those whose token may read it.
    fn matching(&self, targets: &Targets, patterns: &[u32], private: Option<&[Topic<'_>]>) -> Vec<&Arc<Conn>> {
        let native = |c: &&Arc<Conn>| c.mercure.is_none();
        if targets.all {
            return self.conns.values().filter(native).collect();
        }
        let mut found = Vec::new();
        let mut lists = 0;
        for (index, keys) in
            [(&self.users, &targets.users), (&self.sessions, &targets.sessions), (&self.tenants, &targets.tenants)]
        {
            for key in keys {
                if let Some(conns) = index.get(key.as_str()) {
                    found.extend(conns.iter().filter(native));
                    lists += 1;
                }
            }
        }
        let readable = |c: &&Arc<Conn>| match (&c.mercure, private) {
            (Some(m), Some(topics)) => m.may_read(topics),
            _ => true,
        };
        for key in &targets.channels {
            if let Some(conns) = self.channels.get(key.as_str()) {
                found.extend(conns.iter().filter(readable));
                lists += 1;
            }
        }
        for id in patterns {
            if let Some(conns) = self.patterns.get(id) {
                found.extend(conns.iter().filter(readable));
                lists += 1;
            }
        }
        // A connection can be in two lists (its user and its channel, say): it gets one copy.
        if lists > 1 {
            found.sort_unstable_by_key(|c| c.id);
            found.dedup_by_key(|c| c.id);
        }
        found
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    UserLimit(usize),
    AddressLimit(usize),
}

/// The sharded connection registry of one app.
pub(crate) struct Registry {
    shards: Box<[Mutex<Shard>]>,
    /// Open connections per remote address; touched on connect and disconnect only.
    per_address: Mutex<HashMap<IpAddr, usize>>,
    /// Mercure selectors in play; read on each publish to topics, written on (dis)connects.
    patterns: RwLock<Patterns>,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_address: Mutex::default(),
            patterns: RwLock::default(),
        }
    }

    /// The keys of the live non-exact selectors that one of `topics` matches: each distinct
    /// selector is evaluated once per topic (and a topic seen recently not at all), so the cost
    /// is bounded by the distinct selectors, not by the connections.
    fn matched_patterns(&self, topics: &[String]) -> Vec<u32> {
        let mut keys = Vec::new();
        let mut computed = Vec::new();
        let generation = {
            // Evaluated under the read lock, so publishers never wait on each other here.
            let patterns = self.patterns.read();
            if patterns.live.is_empty() {
                return keys;
            }
            for topic in topics {
                if let Some(hit) = patterns.cache.get(topic.as_str()) {
                    keys.extend_from_slice(hit);
                    continue;
                }
                let parsed = Topic::new(topic);
                let hit: Arc<[u32]> =
                    patterns.live.values().filter(|l| l.selector.matches(&parsed)).map(|l| l.id).collect();
                keys.extend_from_slice(&hit);
                computed.push((topic, hit));
            }
            patterns.generation
        };
        if !computed.is_empty() {
            let mut patterns = self.patterns.write();
            // Only if no selector came or went meanwhile: the result would be stale.
            if patterns.generation == generation {
                if patterns.cache.len() + computed.len() > PATTERN_CACHE {
                    patterns.cache.clear();
                }
                for (topic, hit) in computed {
                    patterns.cache.insert(topic.as_str().into(), hit);
                }
            }
        }
        if topics.len() > 1 {
            keys.sort_unstable();
            keys.dedup();
        }
        keys
    }

    /// Counts a connection's non-exact selectors in (before it is inserted) and returns the ids
    /// shards index them by.
    pub(crate) fn acquire_patterns(&self, selectors: &[(Arc<str>, Arc<Selector>)]) -> Vec<u32> {
        if selectors.is_empty() {
            return Vec::new();
        }
        let mut patterns = self.patterns.write();
        let mut added = false;
        let mut ids = Vec::with_capacity(selectors.len());
        for (key, selector) in selectors {
            let id = match patterns.live.get_mut(key) {
                Some(live) => {
                    live.count += 1;
                    live.id
                }
                None => {
                    let id = match patterns.free.pop() {
                        Some(id) => id,
                        None => {
                            patterns.next += 1;
                            patterns.next
                        }
                    };
                    patterns.live.insert(key.clone(), Live { selector: selector.clone(), count: 1, id });
                    added = true;
                    id
                }
            };
            ids.push(id);
        }
        if added {
            patterns.generation += 1;
            patterns.cache.clear();
        }
        ids
    }

    fn release_patterns(&self, conn: &Conn) {
        let Some(m) = &conn.mercure else { return };
        if m.patterns.is_empty() {
            return;
        }
        let mut patterns = self.patterns.write();
        let mut removed = false;
        for key in &m.patterns {
            if let Some(live) = patterns.live.get_mut(key) {
                live.count -= 1;
                if live.count == 0 {
                    let id = live.id;
                    patterns.live.remove(key);
                    patterns.free.push(id);
                    removed = true;
                }
            }
        }
        if removed {
            patterns.generation += 1;
            patterns.cache.clear();
        }
    }

    fn shard_of(&self, user: Option<&str>, id: u64) -> &Mutex<Shard> {
        let hash = match user {
            Some(user) => BuildHasherDefault::<DefaultHasher>::default().hash_one(user),
            None => id,
        };
        &self.shards[(hash % SHARDS as u64) as usize]
    }

    fn shard_of_conn(&self, conn: &Conn) -> &Mutex<Shard> {
        self.shard_of(conn.who.user.as_deref(), conn.id)
    }

    /// Admits `conn` unless its user or its address is at its limit.
    pub(crate) fn insert(&self, conn: Arc<Conn>, per_user: usize, per_address: usize) -> Result<(), Refused> {
        {
            let mut counts = self.per_address.lock();
            let count = counts.entry(conn.meta.remote_addr.ip()).or_default();
            if *count >= per_address {
                drop(counts);
                self.release_patterns(&conn);
                return Err(Refused::AddressLimit(per_address));
            }
            *count += 1;
        }
        let mut shard = self.shard_of_conn(&conn).lock();
        if let Some(user) = &conn.who.user {
            if shard.users.get(user).map_or(0, Vec::len) >= per_user {
                drop(shard);
                self.release_address(conn.meta.remote_addr.ip());
                self.release_patterns(&conn);
                return Err(Refused::UserLimit(per_user));
            }
        }
        shard.index(&conn);
        shard.conns.insert(conn.id, conn);
        Ok(())
    }

    /// Removes a connection; `None` when it was already gone.
    pub(crate) fn remove(&self, conn: &Conn) -> Option<Arc<Conn>> {
        let removed = {
            let mut shard = self.shard_of_conn(conn).lock();
            let removed = shard.conns.remove(&conn.id)?;
            shard.unindex(&removed);
            removed
        };
        self.release_address(removed.meta.remote_addr.ip());
        self.release_patterns(&removed);
        Some(removed)
    }

    fn release_address(&self, ip: IpAddr) {
        let mut counts = self.per_address.lock();
        if let Some(count) = counts.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&ip);
            }
        }
    }

    /// Hands consecutive messages with the same addresses to every matching connection, each
    /// connection all of them at once; returns how many took them, and the connections whose
    /// queue overflowed (already closed; the caller unregisters them).
    pub(crate) fn deliver_run(&self, run: &[Arc<Message>]) -> (usize, Vec<Arc<Conn>>) {
        let first = &run[0];
        let targets = &first.targets;
        let patterns = if targets.channels.is_empty() { Vec::new() } else { self.matched_patterns(&targets.channels) };
        // The topics of a message that Mercure subscribers need a grant for, parsed once for
        // every recipient's grants.
        let private: Option<Vec<Topic<'_>>> =
            first.needs_mercure_grant().then(|| targets.channels.iter().map(|t| Topic::new(t)).collect());
        let private = private.as_deref();
        // A message alone (every per-user publish) needs neither a list nor a copy.
        let (one, many): ([(Option<u64>, &Bytes); 1], Vec<_>);
        let (frames, joined): (&[(Option<u64>, &Bytes)], Bytes) = match run {
            [message] => {
                one = [(Some(message.seq), &message.frame)];
                (&one, message.frame.clone())
            }
            _ => {
                many = run.iter().map(|m| (Some(m.seq), &m.frame)).collect();
                let mut joined = bytes::BytesMut::with_capacity(run.iter().map(|m| m.frame.len()).sum());
                run.iter().for_each(|m| joined.extend_from_slice(&m.frame));
                (&many, joined.freeze())
            }
        };
        let mut delivered = 0;
        let mut overflowed = Vec::new();
        let mut visit = |shard: &Mutex<Shard>| {
            let shard = shard.lock();
            for conn in shard.matching(targets, &patterns, private) {
                // The first connection to take the run times its first write.
                let since = (delivered == 0).then_some(first.created);
                match conn.outbox.push_run(frames, &joined, since) {
                    Ok(true) => delivered += 1,
                    Ok(false) => {}
                    Err(()) => overflowed.push(conn.clone()),
                }
            }
        };
        let only_users =
            !targets.all && targets.sessions.is_empty() && targets.tenants.is_empty() && targets.channels.is_empty();
        if only_users {
            let mut shards: Vec<usize> = targets.users.iter().map(|u| self.shard_index(u)).collect();
            shards.sort_unstable();
            shards.dedup();
            shards.into_iter().for_each(|i| visit(&self.shards[i]));
        } else {
            self.shards.iter().for_each(visit);
        }
        (delivered, overflowed)
    }

    fn shard_index(&self, user: &str) -> usize {
        (BuildHasherDefault::<DefaultHasher>::default().hash_one(user) % SHARDS as u64) as usize
    }

    /// The connections of one user.
    pub(crate) fn of_user(&self, user: &str) -> Vec<Arc<Conn>> {
        let shard = self.shard_of(Some(user), 0).lock();
        shard.users.get(user).cloned().unwrap_or_default()
    }

    /// Every connection that `targets` reaches (used to resolve durable recipients).
    pub(crate) fn matching(&self, targets: &Targets) -> Vec<Arc<Conn>> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            out.extend(shard.lock().matching(targets, &[], None).into_iter().cloned());
        }
        out
    }

    /// Every connection, in no particular order.
    pub(crate) fn all(&self) -> Vec<Arc<Conn>> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            out.extend(shard.lock().conns.values().cloned());
        }
        out
    }

    /// The first `limit` online users after `cursor` (from the first without one) and their
    /// connection counts, ordered by user id. Each shard's ordered index is read from the cursor
    /// only while it can still improve the page, so a page costs the same however many users are
    /// online.
    pub(crate) fn users_after(&self, cursor: Option<&str>, limit: usize) -> BTreeMap<Arc<str>, usize> {
        let after = cursor.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        let mut out: BTreeMap<Arc<str>, usize> = BTreeMap::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for user in shard.online.range::<str, _>((after, std::ops::Bound::Unbounded)) {
                if out.len() >= limit && out.last_key_value().is_some_and(|(last, _)| user >= last) {
                    break;
                }
                out.insert(user.clone(), shard.users.get(user).map_or(0, Vec::len));
                if out.len() > limit {
                    out.pop_last();
                }
            }
        }
        out
    }

    /// Finds one connection by its number.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<Conn>> {
        self.shards.iter().find_map(|shard| shard.lock().conns.get(&id).cloned())
    }

    /// How many distinct users have a connection open (a user lives in one shard).
    pub(crate) fn user_count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().users.len()).sum()
    }

    /// How many connections are open.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().conns.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::hub::conn::ConnMeta;
    use crate::hub::outbox::Outbox;
    use crate::message::Identity;

    fn subscriber(id: u64, channel: &str) -> Arc<Conn> {
        let outbox = Outbox::new(1 << 20, None);
        outbox.open(Vec::new(), 0);
        Arc::new(Conn {
            id,
            node: "n".into(),
            who: Identity {
                user: Some(format!("u{id}").into()),
                channels: vec![channel.into()],
                ..Identity::default()
            },
            meta: ConnMeta {
                client_id: None,
                remote_addr: "127.0.0.1:1".parse().unwrap(),
                user_agent: None,
                connected_at: std::time::SystemTime::now(),
            },
            expires_at: None,
            ping_events: false,
            outbox,
            mercure: None,
        })
    }

    /// A fan-out to every shard, many connections in each, singly or as a run, gives every
    /// recipient each message's exact bytes, once, in order, and nothing to a connection the
    /// messages do not address.
    #[test]
    fn every_recipient_of_a_wide_fan_out_gets_the_exact_frames() {
        let registry = Registry::new();
        let n = (SHARDS * 64) as u64;
        let conns: Vec<Arc<Conn>> = (0..n).map(|id| subscriber(id, "c")).collect();
        for conn in &conns {
            registry.insert(conn.clone(), 10, usize::MAX).unwrap();
        }
        let outsider = subscriber(n, "other");
        registry.insert(outsider.clone(), 10, usize::MAX).unwrap();
        let targets = Targets { channels: vec!["c".into()], ..Targets::default() };
        let messages: Vec<Arc<Message>> = (1..=3)
            .map(|seq| Arc::new(Message::new("ep", seq, 0, targets.clone(), None, format!("message {seq}"), false)))
            .collect();
        // One message alone, then a run of two.
        for run in [&messages[..1], &messages[1..]] {
            let (delivered, overflowed) = registry.deliver_run(run);
            assert_eq!((delivered, overflowed.len()), (n as usize, 0));
        }
        let want: Vec<u8> = messages.iter().flat_map(|m| m.frame.to_vec()).collect();
        let mut cx = Context::from_waker(Waker::noop());
        for conn in &conns {
            let Poll::Ready(Some(Ok((got, _)))) = conn.outbox.poll_next(&mut cx) else { panic!("nothing queued") };
            assert_eq!(got, want, "connection {}", conn.id);
        }
        assert!(outsider.outbox.poll_next(&mut cx).is_pending());
    }
}
