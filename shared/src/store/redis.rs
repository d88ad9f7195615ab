//! Redis (ElastiCache / Valkey), standalone or cluster, over one multiplexed self-reconnecting
//! connection per container.
//!
//! Keys: `sess:{<user key>}` is a hash of the user's sessions (field: the 32-byte token hash;
//! value: a compact record, see [`encode`]); `cache:{<user key>}` is the user's cached data. The
//! `{…}` hash tag puts both in one slot, so no command or script spans two slots, validate is one
//! `HGET` and logout-all one script.

use super::{StoreError, StoreErrorKind};
use crate::config::{RedisMode, redact_url};
use crate::session::{GlobalStats, Session};
use crate::token::{TokenHash, UserKey};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Script, Value};
use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

const BACKEND: &str = "redis";
/// The field of a user's hash that fences logout-all: sessions created at or before its value
/// (Unix seconds) may not be written back (with Redis in front of DynamoDB).
const MARKER: &str = "revoked_before";
/// How long a logout tombstone or a logout-all marker outlives its revocation before a later
/// write sweeps it. Every write it fences lands well within: a write carries its own deadline of
/// [`WRITE_WINDOW_SECS`] (see [`Fence`]).
pub(super) const REVOCATION_GRACE_SECS: i64 = 60;
/// How long after its fence was taken a write of a record into Redis may still land. A function
/// never runs longer than its timeout (10 s); a write that arrives later was held by a frozen
/// server or a stalled network, and is dropped rather than trusted.
pub(super) const WRITE_WINDOW_SECS: i64 = 10;

/// What a write of the record into Redis is fenced by, taken *before* the DynamoDB operation it
/// follows: the store epoch then (a revocation that bumps the epoch meanwhile makes the entry
/// stale) and the time after which the write is refused.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fence {
    pub epoch: u64,
    pub not_after: i64,
}

/// What a checked write requires the field to hold.
#[derive(Debug, Clone, Copy)]
pub(super) enum Expect<'a> {
    Absent,
    /// The record as read before (compare-and-set).
    Exactly(&'a str),
}

/// What a slide of a session's expiry replaced, and by what (with Redis in front of DynamoDB).
pub(super) struct Slid {
    before: String,
    after: String,
}

/// What a user's hash holds for one token.
pub(super) enum Entry {
    Absent,
    /// Logged out (with Redis in front of DynamoDB).
    Revoked,
    Session {
        session: Session,
        epoch: u64,
        /// The stored record, for a compare-and-set repair.
        raw: String,
    },
}

/// Lua shared by the scripts below.
///
/// A field holds a session record (`created|expires|absolute|…`, see [`encode`]), a tombstone
/// (`revoked|<time>`, with Redis in front of DynamoDB) or, for [`MARKER`], `<fence>|<time>`: the
/// newest creation time a logout-all revoked. Tombstone and marker times, their grace, TTLs and
/// write deadlines are on the server's clock (`CLOCK`); session expiries on the functions' own.
/// - `older(x, y)`: the eviction order, oldest `created` first, ties by token hash (bytewise,
///   as DynamoDB's sort key and the memory store order them);
/// - `sweep(key, now)`: drops records lapsed by `now`, and tombstones and markers past their grace;
/// - `writable(key, field, created, not_after)`: whether a record read from DynamoDB may be
///   written: not past its deadline, not over a tombstone, not fenced by a logout-all marker;
/// - `keep_alive(key, expiry)`: every key keeps a TTL, at least its longest session and at least
///   the grace of what it fences.
const LUA_PRELUDE: &str = r"
local GRACE = tonumber(ARGV[#ARGV])
local CLOCK = tonumber(redis.call('TIME')[1])
local function older(x, y)
  if x[1] ~= y[1] then return x[1] < y[1] end
  for i = 1, math.min(#x[2], #y[2]) do
    local a, b = string.byte(x[2], i), string.byte(y[2], i)
    if a ~= b then return a < b end
  end
  return #x[2] < #y[2]
end
local function tombstone_time(v)
  if string.sub(v, 1, 7) ~= 'revoked' then return nil end
  return tonumber(string.match(v, '^revoked|(%d+)$') or '0')
end
local function marker_fence(v)
  return v and tonumber(string.match(v, '^(%d+)'))
end
local function sweep(key, now)
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local f, v = all[i], all[i + 1]
    local t = tombstone_time(v)
    if f == 'revoked_before' then t = tonumber(string.match(v, '|(%d+)$') or '0') end
    if t then
      if t + GRACE < CLOCK then redis.call('HDEL', key, f) end
    else
      local e, a = string.match(v, '^%d+|(%d+)|(%d+)|')
      if not e or math.min(tonumber(e), tonumber(a)) <= now then redis.call('HDEL', key, f) end
    end
  end
end
local function writable(key, field, created, not_after)
  if CLOCK > not_after then return false end
  local current = redis.call('HGET', key, field)
  if current and tombstone_time(current) then return false end
  local fence = marker_fence(redis.call('HGET', key, 'revoked_before'))
  return not (fence and created <= fence)
end
local function keep_alive(key, expiry)
  if redis.call('EXISTS', key) == 0 then return end
  local want = CLOCK + GRACE
  if expiry and expiry > want then want = expiry end
  if redis.call('EXPIRETIME', key) < want then redis.call('EXPIREAT', key, want) end
end
";

/// A script: the shared prelude, then `body`. The last argument of every call is the grace.
fn script(body: &str) -> Script {
    Script::new(&format!("{LUA_PRELUDE}{body}"))
}

/// Redis alone: stores a session after sweeping the user's lapsed ones and, past the per-user
/// cap, evicting the oldest that are older than it; keeps the hash alive as long as its
/// longest-lived session.
/// KEYS[1] the user's hash; ARGV: field, record, now, expiry, cap, created, grace.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local key, field, now, expiry, cap = KEYS[1], ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
sweep(key, now)
local all, live = redis.call('HGETALL', key), {}
for i = 1, #all, 2 do
  local c = string.match(all[i + 1], '^(%d+)|')
  if c and all[i] ~= field then table.insert(live, {tonumber(c), all[i]}) end
end
if #live >= cap then
  table.sort(live, older)
  local new, excess = {tonumber(ARGV[6]), field}, #live - cap + 1
  for i = 1, math.min(excess, #live) do
    if not older(live[i], new) then break end
    redis.call('HDEL', key, live[i][2])
  end
end
redis.call('HSET', key, field, ARGV[2])
keep_alive(key, expiry)
return 1
",
    )
});

/// With Redis in front of DynamoDB: a session the record is storing (sent beside the record's
/// write, see `tiered.rs`), written only if [`writable`](LUA_PRELUDE).
/// KEYS[1] the user's hash; ARGV: field, record, now, expiry, not_after, created, grace.
static PUT_NEW: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local key, field, now, expiry = KEYS[1], ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
sweep(key, now)
local written = 0
if writable(key, field, tonumber(ARGV[6]), tonumber(ARGV[5])) then
  redis.call('HSET', key, field, ARGV[2])
  written = 1
end
keep_alive(key, written == 1 and expiry or nil)
return written
",
    )
});

/// With Redis in front of DynamoDB: tombstones for the sessions the record evicted past the cap
/// (the record decides the cap, so both stores evict the same).
/// KEYS[1] the user's hash; ARGV: fields…, grace.
static TOMBSTONES: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local key = KEYS[1]
for i = 1, #ARGV - 1 do redis.call('HSET', key, ARGV[i], 'revoked|' .. CLOCK) end
keep_alive(key, nil)
return 1
",
    )
});

/// With Redis in front of DynamoDB: slides the expiry of a session Redis holds, in place, beside
/// the record's conditional update (see `tiered.rs`). Never makes an entry, never touches a
/// tombstone or a session a marker fences, keeps the epoch the entry was written under (its
/// content is Redis's own, not read from the record) and computes the expiry exactly as the
/// record does, so that Redis never holds a later one. Returns what the field held before and
/// after, if it slid.
/// KEYS[1] the user's hash; ARGV: field, now, not_after, grace.
static SLIDE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local key, field, now = KEYS[1], ARGV[1], tonumber(ARGV[2])
local v = redis.call('HGET', key, field)
if not v or tombstone_time(v) then return false end
local created, e, a, idle, rest = string.match(v, '^(%d+)|(%d+)|(%d+)|(%d+)|([01])|%d+|')
if not created then return redis.error_reply('ERR corrupt session record') end
a = tonumber(a)
if math.min(tonumber(e), a) <= now then return false end
if not writable(key, field, tonumber(created), tonumber(ARGV[3])) then return false end
local expiry = math.min(now + tonumber(idle), a)
local tail = string.sub(v, string.len(string.match(v, '^%d+|%d+|%d+|%d+|[01]|%d+|')) + 1)
local record = table.concat({created, string.format('%d', expiry), string.format('%d', a), idle, rest,
  string.format('%d', now), tail}, '|')
redis.call('HSET', key, field, record)
keep_alive(key, expiry)
return {v, record}
",
    )
});

/// With Redis in front of DynamoDB: undoes a [`SLIDE`] the record refused, if the field still
/// holds what the slide wrote. KEYS[1] the user's hash; ARGV: field, slid, before, grace.
static UNSLIDE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local key, field = KEYS[1], ARGV[1]
if redis.call('HGET', key, field) ~= ARGV[2] then return 0 end
redis.call('HSET', key, field, ARGV[3])
return 1
",
    )
});

/// Redis alone: slides an active session's expiry, capped by its absolute expiry; returns the
/// new record. KEYS[1] the user's hash; ARGV: field, now, grace.
static REFRESH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local key, field, now = KEYS[1], ARGV[1], tonumber(ARGV[2])
local v = redis.call('HGET', key, field)
if not v then return false end
local created, e, a, idle, rest = string.match(v, '^(%d+)|(%d+)|(%d+)|(%d+)|([01])|%d+|')
if not created then return redis.error_reply('ERR corrupt session record') end
a = tonumber(a)
if math.min(tonumber(e), a) <= now then return false end
local expiry = math.min(now + tonumber(idle), a)
local tail = string.sub(v, string.len(string.match(v, '^%d+|%d+|%d+|%d+|[01]|%d+|')) + 1)
local record = table.concat({created, string.format('%d', expiry), string.format('%d', a), idle, rest,
  string.format('%d', now), tail}, '|')
redis.call('HSET', key, field, record)
keep_alive(key, expiry)
return record
",
    )
});

/// Writes a session read back from the record (a read-repair) if it is
/// [`writable`](LUA_PRELUDE) and the field still holds `expected` (empty: absent).
/// KEYS[1] the user's hash; ARGV: field, record, now, expiry, expected, created, not_after, grace.
static PUT_CHECKED: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local key, field, now = KEYS[1], ARGV[1], tonumber(ARGV[3])
if not writable(key, field, tonumber(ARGV[6]), tonumber(ARGV[7])) then return 0 end
if (redis.call('HGET', key, field) or '') ~= ARGV[5] then return 0 end
redis.call('HSET', key, field, ARGV[2])
keep_alive(key, tonumber(ARGV[4]))
return 1
",
    )
});

/// Replaces a session by a tombstone, so that no write in flight can bring it back; with
/// `only_if_present`, only a session Redis holds (no key is made for a token Redis never saw).
/// KEYS[1] the user's hash; ARGV: field, only_if_present (0/1), grace.
static REVOKE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local key, field = KEYS[1], ARGV[1]
if ARGV[2] == '1' and redis.call('HEXISTS', key, field) == 0 then return 0 end
redis.call('HSET', key, field, 'revoked|' .. CLOCK)
keep_alive(key, nil)
return 1
",
    )
});

/// Ends every session of a user: drops their records, keeps the tombstones, and raises the
/// marker to `fence`, so that no write in flight of a session created at or before it lands.
/// KEYS[1] the user's hash; ARGV: fence, grace.
static REVOKE_USER: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local key, fence = KEYS[1], tonumber(ARGV[1])
local all = redis.call('HGETALL', key)
for i = 1, #all, 2 do
  if all[i] ~= 'revoked_before' and not tombstone_time(all[i + 1]) then redis.call('HDEL', key, all[i]) end
end
local old = marker_fence(redis.call('HGET', key, 'revoked_before'))
if old and old > fence then fence = old end
redis.call('HSET', key, 'revoked_before', string.format('%d|%d', fence, CLOCK))
keep_alive(key, nil)
return 1
",
    )
});

/// Redis alone: deletes a user's sessions; returns how many were still active.
/// KEYS[1] the user's hash; ARGV: now.
static DELETE_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now, active = tonumber(ARGV[1]), 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
  local e, a = string.match(v, '^%d+|(%d+)|(%d+)|')
  if e and math.min(tonumber(e), tonumber(a)) > now then active = active + 1 end
end
redis.call('DEL', KEYS[1])
return active
",
    )
});

#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    command_timeout: Duration,
    max_sessions: usize,
}

/// The one connection of this container: standalone or cluster, both multiplexed and both
/// reconnecting on their own.
#[derive(Clone)]
enum Conn {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Standalone(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Standalone(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl RedisStore {
    /// Connects and checks the server answers, all within `connect_timeout`. With
    /// [`RedisMode::Auto`] the server's `INFO cluster` decides between standalone and cluster.
    pub async fn connect(
        url: &str,
        mode: RedisMode,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let connect = async {
            let client = redis::Client::open(url).map_err(|e| StoreError {
                backend: BACKEND,
                kind: StoreErrorKind::Other,
                detail: format!("REDIS_URL {} cannot be used: {e}", redact_url(url)),
            })?;
            let cluster = match mode {
                RedisMode::Cluster => true,
                RedisMode::Standalone | RedisMode::Auto => {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(connect_timeout))
                        .set_response_timeout(Some(command_timeout))
                        .set_number_of_retries(1)
                        .set_min_delay(Duration::from_millis(20))
                        .set_max_delay(Duration::from_millis(200));
                    let mut manager = ConnectionManager::new_with_config(client, config)
                        .await
                        .map_err(store_error)?;
                    // Also the liveness probe: a server that cannot answer this is not used.
                    let info: String = redis::cmd("INFO")
                        .arg("cluster")
                        .query_async(&mut manager)
                        .await
                        .map_err(store_error)?;
                    let cluster = mode == RedisMode::Auto && info.contains("cluster_enabled:1");
                    if !cluster {
                        return Ok(Conn::Standalone(manager));
                    }
                    true
                }
            };
            debug_assert!(cluster);
            let client = redis::cluster::ClusterClientBuilder::new(vec![url])
                .connection_timeout(connect_timeout)
                .response_timeout(command_timeout)
                .retries(1)
                // RESP3: the client learns at once that a node closed its connection (a push)
                // and reconnects to it. Over RESP2 a connection closed by the node while calls
                // were in flight could leave the client timing out on every call for good, as
                // the history checker found by cutting one node's connections.
                .use_protocol(redis::ProtocolVersion::RESP3)
                .build()
                .map_err(store_error)?;
            let mut conn = client.get_async_connection().await.map_err(store_error)?;
            redis::cmd("PING")
                .query_async::<()>(&mut conn)
                .await
                .map_err(store_error)?;
            Ok(Conn::Cluster(conn))
        };
        let conn = tokio::time::timeout(connect_timeout, connect)
            .await
            .map_err(|_| StoreError {
                backend: BACKEND,
                kind: StoreErrorKind::Timeout,
                detail: format!(
                    "{} did not answer within {} ms",
                    redact_url(url),
                    connect_timeout.as_millis()
                ),
            })??;
        Ok(RedisStore {
            conn,
            command_timeout,
            max_sessions: super::DEFAULT_MAX_SESSIONS_PER_USER,
        })
    }

    /// Caps the sessions one user may hold; creating one more evicts the oldest.
    pub fn with_max_sessions(mut self, max_sessions: usize) -> Self {
        self.max_sessions = max_sessions.max(1);
        self
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    /// Runs one command or script against the connection within the command budget.
    async fn run<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.command_timeout, call(self.conn.clone())).await {
            Ok(result) => result.map_err(store_error),
            Err(_) => Err(StoreError {
                backend: BACKEND,
                kind: StoreErrorKind::Timeout,
                detail: format!("no answer within {} ms", self.command_timeout.as_millis()),
            }),
        }
    }

    /// Stores a new session, evicting past the per-user cap (Redis alone).
    pub(super) async fn create(
        &self,
        user: &UserKey,
        hash: &TokenHash,
        session: &Session,
    ) -> Result<(), StoreError> {
        let mut invocation = CREATE.key(sessions_key(user));
        invocation
            .arg(hash.as_bytes().as_slice())
            .arg(encode(session, 0))
            .arg(crate::session::now_unix())
            .arg(session.expiry())
            .arg(self.max_sessions)
            .arg(session.created_at)
            .arg(REVOCATION_GRACE_SECS);
        self.run(|mut c| async move { invocation.invoke_async::<()>(&mut c).await })
            .await
    }

    /// With Redis in front of DynamoDB: a session the record is storing, stamped with the
    /// fence's epoch. `true` if written (a logout-all marker or the deadline may forbid it).
    pub(super) async fn put_new(
        &self,
        user: &UserKey,
        hash: &TokenHash,
        session: &Session,
        fence: Fence,
    ) -> Result<bool, StoreError> {
        let mut invocation = PUT_NEW.key(sessions_key(user));
        invocation
            .arg(hash.as_bytes().as_slice())
            .arg(encode(session, fence.epoch))
            .arg(crate::session::now_unix())
            .arg(session.expiry())
            .arg(fence.not_after)
            .arg(session.created_at)
            .arg(REVOCATION_GRACE_SECS);
        let written: u8 = self
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Ok(written == 1)
    }

    /// With Redis in front of DynamoDB: tombstones for the sessions the record evicted.
    pub(super) async fn tombstone_evicted(
        &self,
        user: &UserKey,
        evicted: &[TokenHash],
    ) -> Result<(), StoreError> {
        let mut invocation = TOMBSTONES.key(sessions_key(user));
        for gone in evicted {
            invocation.arg(gone.as_bytes().as_slice());
        }
        invocation.arg(REVOCATION_GRACE_SECS);
        self.run(|mut c| async move { invocation.invoke_async::<()>(&mut c).await })
            .await
    }

    /// With Redis in front of DynamoDB: slides the expiry of the session Redis holds, in place,
    /// as a refresh at `now` would; what the field held before and after, if it slid (see
    /// [`SLIDE`]).
    pub(super) async fn slide(
        &self,
        user: &UserKey,
        hash: &TokenHash,
        now: i64,
        not_after: i64,
    ) -> Result<Option<Slid>, StoreError> {
        let mut invocation = SLIDE.key(sessions_key(user));
        invocation
            .arg(hash.as_bytes().as_slice())
            .arg(now)
            .arg(not_after)
            .arg(REVOCATION_GRACE_SECS);
        let slid: Option<(String, String)> = self
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Ok(slid.map(|(before, after)| Slid { before, after }))
    }

    /// With Redis in front of DynamoDB: puts back what a slide replaced, unless the field
    /// changed since.
    pub(super) async fn unslide(
        &self,
        user: &UserKey,
        hash: &TokenHash,
        slid: &Slid,
    ) -> Result<(), StoreError> {
        let mut invocation = UNSLIDE.key(sessions_key(user));
        invocation
            .arg(hash.as_bytes().as_slice())
            .arg(&slid.after)
            .arg(&slid.before)
            .arg(REVOCATION_GRACE_SECS);
        self.run(|mut c| async move { invocation.invoke_async::<()>(&mut c).await })
            .await
    }

    pub(super) async fn get(
        &self,
        user: &UserKey,
        hash: &TokenHash,
    ) -> Result<Option<Session>, StoreError> {
        Ok(self
            .get_entry(user, hash)
            .await?
            .map(|(session, _)| session))
    }

    /// A session and the epoch it was written under; one `HGET`.
    pub(super) async fn get_entry(
        &self,
        user: &UserKey,
        hash: &TokenHash,
    ) -> Result<Option<(Session, u64)>, StoreError> {
        match self.get_raw(user, hash).await? {
            Entry::Session { session, epoch, .. } => Ok(Some((session, epoch))),
            Entry::Revoked | Entry::Absent => Ok(None),
        }
    }

    /// What the user's hash holds for one token, raw record included; one `HGET`.
    pub(super) async fn get_raw(
        &self,
        user: &UserKey,
        hash: &TokenHash,
    ) -> Result<Entry, StoreError> {
        let record: Option<String> = self
            .run(|mut c| async move {
                redis::cmd("HGET")
                    .arg(sessions_key(user))
                    .arg(hash.as_bytes().as_slice())
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(match record {
            None => Entry::Absent,
            Some(r) if is_tombstone(&r) => Entry::Revoked,
            Some(raw) => {
                let (session, epoch) = decode(user, &raw)?;
                Entry::Session {
                    session,
                    epoch,
                    raw,
                }
            }
        })
    }

    /// Writes `session`, read back from the record, stamped with the fence's epoch, only if the
    /// field still holds what is `expected`, no logout since forbids it and the fence's deadline
    /// has not passed; `true` if written.
    pub(super) async fn put_checked(
        &self,
        user: &UserKey,
        hash: &TokenHash,
        session: &Session,
        fence: Fence,
        expected: Expect<'_>,
    ) -> Result<bool, StoreError> {
        let expected = match expected {
            Expect::Absent => "",
            Expect::Exactly(raw) => raw,
        };
        let mut invocation = PUT_CHECKED.key(sessions_key(user));
        invocation
            .arg(hash.as_bytes().as_slice())
            .arg(encode(session, fence.epoch))
            .arg(crate::session::now_unix())
            .arg(session.expiry())
            .arg(expected)
            .arg(session.created_at)
            .arg(fence.not_after)
            .arg(REVOCATION_GRACE_SECS);
        let written: u8 = self
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Ok(written == 1)
    }

    /// Replaces a session by a tombstone, so that no write in flight can bring it back. With
    /// `only_if_present`, only a session Redis holds: nothing is written for a token it never saw.
    pub(super) async fn revoke(
        &self,
        user: &UserKey,
        hash: &TokenHash,
        only_if_present: bool,
    ) -> Result<(), StoreError> {
        let mut invocation = REVOKE.key(sessions_key(user));
        invocation
            .arg(hash.as_bytes().as_slice())
            .arg(u8::from(only_if_present))
            .arg(REVOCATION_GRACE_SECS);
        self.run(|mut c| async move { invocation.invoke_async::<()>(&mut c).await })
            .await
    }

    /// Ends every session of a user created at or before `fence`, keeping a marker that stops
    /// their writes in flight from landing.
    pub(super) async fn revoke_user(&self, user: &UserKey, fence: i64) -> Result<(), StoreError> {
        let mut invocation = REVOKE_USER.key(sessions_key(user));
        invocation.arg(fence).arg(REVOCATION_GRACE_SECS);
        self.run(|mut c| async move { invocation.invoke_async::<()>(&mut c).await })
            .await
    }

    pub(super) async fn refresh(
        &self,
        user: &UserKey,
        hash: &TokenHash,
        now: i64,
    ) -> Result<Option<Session>, StoreError> {
        let mut invocation = REFRESH.key(sessions_key(user));
        invocation
            .arg(hash.as_bytes().as_slice())
            .arg(now)
            .arg(REVOCATION_GRACE_SECS);
        let record: Option<String> = self
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Ok(record
            .map(|r| decode(user, &r))
            .transpose()?
            .map(|(s, _)| s))
    }

    pub(super) async fn delete(
        &self,
        user: &UserKey,
        hash: &TokenHash,
    ) -> Result<bool, StoreError> {
        let removed: u64 = self
            .run(|mut c| async move {
                redis::cmd("HDEL")
                    .arg(sessions_key(user))
                    .arg(hash.as_bytes().as_slice())
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(removed > 0)
    }

    pub(super) async fn delete_user(&self, user: &UserKey, now: i64) -> Result<u64, StoreError> {
        let mut invocation = DELETE_USER.key(sessions_key(user));
        invocation.arg(now);
        self.run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await
    }

    pub(super) async fn sessions_of(
        &self,
        user: &UserKey,
    ) -> Result<Vec<(TokenHash, Session)>, StoreError> {
        let records: Vec<(Vec<u8>, String)> = self
            .run(|mut c| async move {
                redis::cmd("HGETALL")
                    .arg(sessions_key(user))
                    .query_async(&mut c)
                    .await
            })
            .await?;
        records
            .iter()
            .filter(|(field, value)| field.as_slice() != MARKER.as_bytes() && !is_tombstone(value))
            .map(|(field, record)| {
                let hash =
                    <[u8; 32]>::try_from(field.as_slice()).map_err(|_| corrupt("session field"))?;
                Ok((TokenHash(hash), decode(user, record)?.0))
            })
            .collect()
    }

    pub(super) async fn global_stats(
        &self,
        now: i64,
        deadline: std::time::Instant,
    ) -> Result<GlobalStats, StoreError> {
        // Not under the command budget: it walks the keyspace, once per admin request, until
        // the deadline.
        let mut conn = self.conn.clone();
        let mut stats = GlobalStats::default();
        let left = || deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(keys) = tokio::time::timeout(left(), scan_all(&mut conn, "sess:{*}")).await else {
            stats.partial = true;
            return Ok(stats);
        };
        for key in keys.map_err(store_error)? {
            if left().is_zero() {
                stats.partial = true;
                break;
            }
            let mut hvals = redis::cmd("HVALS");
            hvals.arg(&key);
            let Ok(records) = tokio::time::timeout(left(), hvals.query_async(&mut conn)).await
            else {
                stats.partial = true;
                break;
            };
            let records: Vec<String> = records.map_err(store_error)?;
            let active = records
                .iter()
                .filter_map(|r| decode_times(r))
                .filter(|(expiry, _)| *expiry > now)
                .count() as u64;
            stats.active_sessions += active;
            stats.users_with_sessions += u64::from(active > 0);
        }
        Ok(stats)
    }

    pub(super) async fn cache_get(
        &self,
        user: &UserKey,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        Ok(self.cache_entry(user, now).await?.map(|(json, _)| json))
    }

    /// A user's cached data and the epoch it was written under, if not expired.
    pub(super) async fn cache_entry(
        &self,
        user: &UserKey,
        now: i64,
    ) -> Result<Option<(String, u64)>, StoreError> {
        let value: Option<String> = self
            .run(|mut c| async move {
                redis::cmd("GET")
                    .arg(cache_key(user))
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let Some(value) = value else { return Ok(None) };
        let (expires_at, epoch, json) = decode_cache(&value)?;
        Ok((expires_at > now).then(|| (json.to_owned(), epoch)))
    }

    pub(super) async fn cache_put(
        &self,
        user: &UserKey,
        json: &str,
        ttl: u64,
        now: i64,
    ) -> Result<(), StoreError> {
        self.cache_put_entry(user, json, ttl, now, 0).await
    }

    /// Drops a user's cached data (with Redis in front: the record's copy is then read).
    pub(super) async fn cache_drop(&self, user: &UserKey) -> Result<(), StoreError> {
        self.run(|mut c| async move {
            redis::cmd("DEL")
                .arg(cache_key(user))
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    pub(super) async fn cache_put_entry(
        &self,
        user: &UserKey,
        json: &str,
        ttl: u64,
        now: i64,
        epoch: u64,
    ) -> Result<(), StoreError> {
        // The expiry travels with the value, so every store refuses the same stale entry; the
        // key's own TTL only frees the memory.
        let value = encode_cache(json, now.saturating_add_unsigned(ttl), epoch);
        self.run(|mut c| async move {
            redis::cmd("SET")
                .arg(cache_key(user))
                .arg(value)
                .arg("EX")
                .arg(ttl)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }
}

/// Every key matching `pattern`, from every primary of a cluster.
async fn scan_all(conn: &mut Conn, pattern: &str) -> redis::RedisResult<Vec<Vec<u8>>> {
    let nodes = match conn {
        Conn::Standalone(_) => vec![None],
        Conn::Cluster(_) => primaries(conn).await?.into_iter().map(Some).collect(),
    };
    let mut keys = Vec::new();
    for node in nodes {
        let mut cursor = 0u64;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, batch): (u64, Vec<Vec<u8>>) = match (&node, &mut *conn) {
                (Some((host, port)), Conn::Cluster(c)) => {
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port: *port,
                    });
                    let value = c.route_command(scan, routing).await?;
                    redis::from_redis_value(value)?
                }
                _ => scan.query_async(&mut *conn).await?,
            };
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }
    Ok(keys)
}

/// The (host, port) of every cluster primary, from `CLUSTER SLOTS`.
async fn primaries(conn: &mut Conn) -> redis::RedisResult<Vec<(String, u16)>> {
    let slots: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    let mut nodes = Vec::new();
    for range in slots {
        // [start, end, [host, port, id, …], replicas…]
        if let Value::Array(parts) = range
            && let Some(Value::Array(primary)) = parts.get(2)
            && let [host, port, ..] = primary.as_slice()
        {
            let host: String = redis::from_redis_value_ref(host)?;
            let port: u16 = redis::from_redis_value_ref(port)?;
            if !nodes.contains(&(host.clone(), port)) {
                nodes.push((host, port));
            }
        }
    }
    Ok(nodes)
}

/// A logged-out session's field, with Redis in front of DynamoDB (`revoked|<time>`).
fn is_tombstone(value: &str) -> bool {
    value.starts_with("revoked")
}

fn sessions_key(user: &UserKey) -> String {
    format!("sess:{{{}}}", user.as_str())
}

fn cache_key(user: &UserKey) -> String {
    format!("cache:{{{}}}", user.as_str())
}

/// `expires|epoch|json`: the JSON last, as it is, so it may hold `|`.
pub(super) fn encode_cache(json: &str, expires_at: i64, epoch: u64) -> String {
    format!("{expires_at}|{epoch}|{json}")
}

/// (expires, epoch, json) of a cache entry.
pub(super) fn decode_cache(value: &str) -> Result<(i64, u64, &str), StoreError> {
    let mut parts = value.splitn(3, '|');
    match (
        parts.next().and_then(|t| t.parse::<i64>().ok()),
        parts.next().and_then(|e| e.parse::<u64>().ok()),
        parts.next(),
    ) {
        (Some(expires_at), Some(epoch), Some(json)) => Ok((expires_at, epoch, json)),
        _ => Err(corrupt("cache entry")),
    }
}

/// `created|expires|absolute|idle|remember|last_refreshed|epoch|device`: the user id is the
/// key's, the device label comes last. (Records written before labels existed hold the first 64
/// bytes of a user agent there, which may hold `|`: read as it is, [`Session::device`].)
pub(super) fn encode(s: &Session, epoch: u64) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}|{epoch}|{}",
        s.created_at,
        s.expires_at,
        s.absolute_expires_at,
        s.idle_timeout,
        u8::from(s.remember_me),
        s.last_refreshed_at,
        s.device.as_deref().unwrap_or("")
    )
}

pub(super) fn decode(user: &UserKey, record: &str) -> Result<(Session, u64), StoreError> {
    let mut parts = record.splitn(8, '|');
    let mut field = || parts.next().unwrap_or_default();
    // The idle timeout and the epoch are unsigned: read as such, every value `encode` writes
    // reads back.
    let (
        Ok(created_at),
        Ok(expires_at),
        Ok(absolute_expires_at),
        Ok(idle_timeout),
        Ok(rm),
        Ok(last_refreshed_at),
        Ok(epoch),
    ) = (
        field().parse::<i64>(),
        field().parse::<i64>(),
        field().parse::<i64>(),
        field().parse::<u64>(),
        field().parse::<i64>(),
        field().parse::<i64>(),
        field().parse::<u64>(),
    )
    else {
        return Err(corrupt("session record"));
    };
    let device = parts.next().filter(|d| !d.is_empty()).map(str::to_owned);
    let session = Session {
        user_id: user.user_id(),
        created_at,
        expires_at,
        absolute_expires_at,
        idle_timeout,
        remember_me: rm == 1,
        last_refreshed_at,
        device,
    };
    Ok((session, epoch))
}

/// (expiry, created) of a record without decoding the rest.
pub(super) fn decode_times(record: &str) -> Option<(i64, i64)> {
    let mut parts = record.split('|').map(|p| p.parse::<i64>().ok());
    let (created, expires, absolute) = (parts.next()??, parts.next()??, parts.next()??);
    Some((expires.min(absolute), created))
}

fn corrupt(what: &str) -> StoreError {
    StoreError {
        backend: BACKEND,
        kind: StoreErrorKind::Corrupt,
        detail: format!("unreadable {what}"),
    }
}

fn store_error(e: RedisError) -> StoreError {
    let code = e.code().unwrap_or_default();
    if e.kind() == redis::ErrorKind::AuthenticationFailed {
        // redis-rs drops the server's reply here; say what it was.
        return StoreError {
            backend: BACKEND,
            kind: StoreErrorKind::Auth,
            detail: format!("WRONGPASS: the user or password in REDIS_URL was refused ({e})"),
        };
    }
    let kind = if e.is_timeout() {
        StoreErrorKind::Timeout
    } else if matches!(code, "NOAUTH" | "WRONGPASS" | "NOPERM") {
        StoreErrorKind::Auth
    } else if code == "OOM" {
        StoreErrorKind::Capacity
    } else if matches!(
        code,
        "LOADING" | "BUSY" | "CLUSTERDOWN" | "MASTERDOWN" | "TRYAGAIN"
    ) {
        StoreErrorKind::Unavailable
    } else if e.is_connection_refusal() || e.is_io_error() || e.is_connection_dropped() {
        StoreErrorKind::Connection
    } else {
        StoreErrorKind::Other
    };
    StoreError {
        backend: BACKEND,
        kind,
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let user = UserKey::for_user("user_1");
        let session = Session {
            user_id: "user_1".into(),
            created_at: 1_700_000_000,
            expires_at: 1_700_003_600,
            absolute_expires_at: 1_707_776_000,
            idle_timeout: 3600,
            remember_me: true,
            last_refreshed_at: 1_700_000_100,
            device: Some("Chrome 131 on macOS".into()),
        };
        assert_eq!(
            decode(&user, &encode(&session, 7)).unwrap(),
            (session.clone(), 7)
        );
        // A record written before device labels: the first 64 bytes of a user agent, read as
        // they are (`|` included), labelled where the list shows them.
        let agent = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) | AppleWebKit/537";
        let old = encode(&session, 7).replace("Chrome 131 on macOS", agent);
        let (read, _) = decode(&user, &old).unwrap();
        assert_eq!(read.device.as_deref(), Some(agent));
        assert_eq!(
            crate::device::stored_device(agent).as_deref(),
            Some("macOS")
        );
        let bare = Session {
            device: None,
            ..session
        };
        let record = encode(&bare, 0);
        assert!(record.len() <= 64, "{record} keeps the hash a listpack");
        assert_eq!(decode(&user, &record).unwrap(), (bare, 0));
        assert_eq!(decode_times(&record), Some((1_700_003_600, 1_700_000_000)));
    }

    #[test]
    fn unreadable_records_are_errors_not_panics() {
        let user = UserKey::for_user("u");
        for bad in [
            "",
            "x",
            "1|2|3",
            "1|2|3|4|5|x|0|",
            "1|2|3|-4|1|5|0|",
            "1|2|3|4|1|5|-1|",
            "1|2|3|4|1|5|",
        ] {
            assert_eq!(
                decode(&user, bad).unwrap_err().kind,
                StoreErrorKind::Corrupt,
                "{bad}"
            );
        }
    }
}
