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
/// What a logged-out session's field holds with Redis in front of DynamoDB.
const TOMBSTONE: &str = "revoked";
/// How long a logout-all marker outlives the logout: read-repairs in flight finish well within.
const REVOCATION_MARKER_SECS: u64 = 60;

/// What a checked write requires the field to hold.
#[derive(Debug, Clone, Copy)]
pub(super) enum Expect<'a> {
    Absent,
    /// The record as read before (compare-and-set).
    Exactly(&'a str),
    /// Anything but a tombstone.
    Anything,
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

/// Stores a session after sweeping the user's lapsed ones and, past the per-user cap, evicting
/// the oldest; keeps the hash alive as long as its longest-lived session.
/// KEYS[1] the user's hash; ARGV: field, record, now, expiry, cap.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local key, field, now, expiry, cap = KEYS[1], ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local all = redis.call('HGETALL', key)
local live = {}
for i = 1, #all, 2 do
  local c, e, a = string.match(all[i + 1], '^(%d+)|(%d+)|(%d+)|')
  if not c or math.min(tonumber(e), tonumber(a)) <= now then
    redis.call('HDEL', key, all[i])
  elseif all[i] ~= field then
    table.insert(live, {tonumber(c), all[i]})
  end
end
if #live >= cap then
  table.sort(live, function(x, y) return x[1] < y[1] end)
  for i = 1, #live - cap + 1 do redis.call('HDEL', key, live[i][2]) end
end
redis.call('HSET', key, field, ARGV[2])
if redis.call('EXPIRETIME', key) < expiry then
  redis.call('EXPIREAT', key, expiry)
end
return 1
",
    )
});

/// Slides an active session's expiry, capped by its absolute expiry; returns the new record.
/// KEYS[1] the user's hash; ARGV: field, now.
static REFRESH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
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
if redis.call('EXPIRETIME', key) < expiry then
  redis.call('EXPIREAT', key, expiry)
end
return record
",
    )
});

/// Writes a session read back from the record (DynamoDB) unless Redis changed meanwhile:
/// the field must still hold `expected` (empty: be absent; `*`: anything), must not be a logout tombstone,
/// and a logout-all marker must not postdate the session's creation.
/// KEYS[1] the user's hash; ARGV: field, record, expiry, expected, created.
static PUT_CHECKED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local key, field, expiry = KEYS[1], ARGV[1], tonumber(ARGV[3])
local current = redis.call('HGET', key, field)
if current == 'revoked' or (ARGV[4] ~= '*' and (current or '') ~= ARGV[4]) then return 0 end
local marker = redis.call('HGET', key, 'revoked_before')
if marker and tonumber(ARGV[5]) <= tonumber(marker) then return 0 end
redis.call('HSET', key, field, ARGV[2])
if redis.call('EXPIREAT', key, expiry, 'GT') == 0 and redis.call('TTL', key) < 0 then
  redis.call('EXPIREAT', key, expiry)
end
return 1
",
    )
});

/// Ends every session of a user and leaves a marker that stops a concurrent read-repair from
/// writing one back. KEYS[1] the user's hash; ARGV: now, marker lifetime (s).
static REVOKE_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'revoked_before', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
",
    )
});

/// Deletes a user's sessions; returns how many were still active.
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

    pub(super) async fn create(
        &self,
        user: &UserKey,
        hash: &TokenHash,
        session: &Session,
    ) -> Result<(), StoreError> {
        self.put(user, hash, session, 0).await
    }

    /// Writes a session stamped with `epoch` (see `tiered`), enforcing the per-user cap.
    pub(super) async fn put(
        &self,
        user: &UserKey,
        hash: &TokenHash,
        session: &Session,
        epoch: u64,
    ) -> Result<(), StoreError> {
        let mut invocation = CREATE.key(sessions_key(user));
        invocation
            .arg(hash.as_bytes().as_slice())
            .arg(encode(session, epoch))
            .arg(crate::session::now_unix())
            .arg(session.expiry())
            .arg(self.max_sessions);
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
            Some(r) if r == TOMBSTONE => Entry::Revoked,
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

    /// Writes `session` only if the field still holds what is `expected` and no logout since
    /// forbids it; `true` if written.
    pub(super) async fn put_checked(
        &self,
        user: &UserKey,
        hash: &TokenHash,
        session: &Session,
        epoch: u64,
        expected: Expect<'_>,
    ) -> Result<bool, StoreError> {
        let expected = match expected {
            Expect::Absent => "",
            Expect::Exactly(raw) => raw,
            Expect::Anything => "*",
        };
        let mut invocation = PUT_CHECKED.key(sessions_key(user));
        invocation
            .arg(hash.as_bytes().as_slice())
            .arg(encode(session, epoch))
            .arg(session.expiry())
            .arg(expected)
            .arg(session.created_at);
        let written: u8 = self
            .run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await?;
        Ok(written == 1)
    }

    /// Replaces a session by a tombstone, so no read-repair in flight can bring it back.
    pub(super) async fn revoke(&self, user: &UserKey, hash: &TokenHash) -> Result<(), StoreError> {
        self.run(|mut c| async move {
            redis::cmd("HSET")
                .arg(sessions_key(user))
                .arg(hash.as_bytes().as_slice())
                .arg(TOMBSTONE)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    /// Ends every session of a user, leaving a short-lived marker against read-repairs.
    pub(super) async fn revoke_user(&self, user: &UserKey, now: i64) -> Result<(), StoreError> {
        let mut invocation = REVOKE_USER.key(sessions_key(user));
        invocation.arg(now).arg(REVOCATION_MARKER_SECS);
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
        invocation.arg(hash.as_bytes().as_slice()).arg(now);
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

    pub(super) async fn sessions_of(&self, user: &UserKey) -> Result<Vec<Session>, StoreError> {
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
            .filter(|(field, value)| field.len() == 32 && value != TOMBSTONE)
            .map(|(_, r)| decode(user, r).map(|(session, _)| session))
            .collect()
    }

    pub(super) async fn global_stats(&self, now: i64) -> Result<GlobalStats, StoreError> {
        // Not under the command budget: it walks the whole keyspace, once per admin request.
        let mut conn = self.conn.clone();
        let keys = scan_all(&mut conn, "sess:{*}").await.map_err(store_error)?;
        let mut stats = GlobalStats::default();
        for key in keys {
            let records: Vec<String> = redis::cmd("HVALS")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(store_error)?;
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
        let mut parts = value.splitn(3, '|');
        let (Some(expires_at), Some(epoch), Some(json)) = (
            parts.next().and_then(|t| t.parse::<i64>().ok()),
            parts.next().and_then(|e| e.parse::<u64>().ok()),
            parts.next(),
        ) else {
            return Err(corrupt("cache entry"));
        };
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
        let value = format!("{}|{epoch}|{json}", now.saturating_add_unsigned(ttl));
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

fn sessions_key(user: &UserKey) -> String {
    format!("sess:{{{}}}", user.as_str())
}

fn cache_key(user: &UserKey) -> String {
    format!("cache:{{{}}}", user.as_str())
}

/// `created|expires|absolute|idle|remember|last_seen|epoch|user_agent`: small enough that a
/// user's hash stays a compact listpack; the user id is the key's, the user agent (control
/// characters removed) comes last so it may hold `|`.
fn encode(s: &Session, epoch: u64) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}|{epoch}|{}",
        s.created_at,
        s.expires_at,
        s.absolute_expires_at,
        s.idle_timeout,
        u8::from(s.remember_me),
        s.last_seen_at,
        s.user_agent.as_deref().unwrap_or("")
    )
}

fn decode(user: &UserKey, record: &str) -> Result<(Session, u64), StoreError> {
    let mut parts = record.splitn(8, '|');
    let mut number = || parts.next().and_then(|p| p.parse::<i64>().ok());
    let (
        Some(created_at),
        Some(expires_at),
        Some(absolute_expires_at),
        Some(idle),
        Some(rm),
        Some(last_seen_at),
        Some(epoch),
    ) = (
        number(),
        number(),
        number(),
        number(),
        number(),
        number(),
        number(),
    )
    else {
        return Err(corrupt("session record"));
    };
    let user_agent = parts.next().filter(|ua| !ua.is_empty()).map(str::to_owned);
    let session = Session {
        user_id: user.user_id(),
        created_at,
        expires_at,
        absolute_expires_at,
        idle_timeout: u64::try_from(idle).map_err(|_| corrupt("session record"))?,
        remember_me: rm == 1,
        last_seen_at,
        user_agent,
    };
    Ok((
        session,
        u64::try_from(epoch).map_err(|_| corrupt("session record"))?,
    ))
}

/// (expiry, created) of a record without decoding the rest.
fn decode_times(record: &str) -> Option<(i64, i64)> {
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
    } else if matches!(code, "OOM" | "BUSY" | "LOADING") {
        StoreErrorKind::Capacity
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
            last_seen_at: 1_700_000_100,
            user_agent: Some("Mozilla/5.0 | odd".into()),
        };
        assert_eq!(
            decode(&user, &encode(&session, 7)).unwrap(),
            (session.clone(), 7)
        );
        let bare = Session {
            user_agent: None,
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
