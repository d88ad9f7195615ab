//! Where sessions and user caches live: one small API over Redis, DynamoDB and memory.
//!
//! Every backend keeps a user's sessions together under the user's [`UserKey`] (a Redis hash tag, a
//! DynamoDB partition), keyed by the [`TokenHash`]; none ever sees a raw token. Expired sessions are
//! refused here, on read, whatever the backend still holds.

mod dynamodb;
mod memory;
mod redis;
mod select;
mod tiered;

pub use dynamodb::DynamoStore;
pub use memory::MemoryStore;
pub use redis::RedisStore;
pub use select::SelectError;
pub use tiered::{RedisConnect, TieredStore};

use crate::session::{GlobalStats, Session, UserStats};
use crate::token::{SessionId, SessionToken, TokenHash, UserKey};
use std::fmt;

/// The stores' record formats on their own: what each store writes and how it reads that back,
/// for the fuzz targets (shared/fuzz/README.md) to check each decoder against its encoder. No store
/// call goes through here.
#[doc(hidden)]
pub mod records {
    use super::{StoreError, dynamodb, redis};
    use crate::session::Session;
    use crate::token::{TokenHash, UserKey};
    pub use aws_sdk_dynamodb::types::AttributeValue;

    /// A DynamoDB item.
    pub type Item = std::collections::HashMap<String, AttributeValue>;

    /// A session's field in the user's Redis hash, stamped with `epoch`.
    pub fn redis_session(session: &Session, epoch: u64) -> String {
        redis::encode(session, epoch)
    }

    pub fn redis_session_decode(
        user: &UserKey,
        record: &str,
    ) -> Result<(Session, u64), StoreError> {
        redis::decode(user, record)
    }

    /// (expiry, created) of a Redis session field, as the stats walk reads it.
    pub fn redis_session_times(record: &str) -> Option<(i64, i64)> {
        redis::decode_times(record)
    }

    pub fn redis_cache(json: &str, expires_at: i64, epoch: u64) -> String {
        redis::encode_cache(json, expires_at, epoch)
    }

    /// (expires, epoch, json) of a Redis cache entry.
    pub fn redis_cache_decode(value: &str) -> Result<(i64, u64, &str), StoreError> {
        redis::decode_cache(value)
    }

    pub fn dynamodb_session(user: &UserKey, hash: &TokenHash, session: &Session) -> Item {
        dynamodb::encode(user, hash, session)
    }

    pub fn dynamodb_session_decode(user: &UserKey, item: &Item) -> Result<Session, StoreError> {
        dynamodb::decode(user, item)
    }

    pub fn dynamodb_cache(user: &UserKey, json: &str, expires_at: i64) -> Item {
        dynamodb::encode_cache(user, json, expires_at)
    }

    /// The data of a DynamoDB cache item, unless it has expired at `now`.
    pub fn dynamodb_cache_decode(item: &Item, now: i64) -> Result<Option<String>, StoreError> {
        dynamodb::decode_cache(item, now)
    }
}

/// Sessions one user may hold unless `MAX_SESSIONS_PER_USER` says otherwise; creating one more
/// evicts the oldest, so no user's sessions grow without bound.
pub const DEFAULT_MAX_SESSIONS_PER_USER: usize = 50;

/// A store failure; every one becomes a 503 for the caller.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{backend} {kind}: {detail}")]
pub struct StoreError {
    pub backend: &'static str,
    pub kind: StoreErrorKind,
    /// The cause, for the log; never shown to a client.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// No answer within the budget.
    Timeout,
    /// Refused, reset or not reachable.
    Connection,
    /// The server refused our credentials (`NOAUTH`, `WRONGPASS`, AWS access denied).
    Auth,
    /// The server is out of memory or throttling.
    Capacity,
    /// The server is up but cannot serve for now: loading its data, running a long script,
    /// failing over (`LOADING`, `BUSY`, `CLUSTERDOWN`, `MASTERDOWN`, `TRYAGAIN`).
    Unavailable,
    /// A record the store holds cannot be read back.
    Corrupt,
    Other,
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreErrorKind::Timeout => "timeout",
            StoreErrorKind::Connection => "connection failure",
            StoreErrorKind::Auth => "authentication failure",
            StoreErrorKind::Capacity => "out of capacity",
            StoreErrorKind::Unavailable => "temporarily unavailable",
            StoreErrorKind::Corrupt => "corrupt record",
            StoreErrorKind::Other => "error",
        })
    }
}

/// The session store in use.
#[derive(Clone)]
pub enum Store {
    Memory(MemoryStore),
    Redis(RedisStore),
    Dynamodb(DynamoStore),
    /// Redis in front of DynamoDB, when both are configured.
    Tiered(TieredStore),
}

/// Calls the same method on whichever backend this is, timing it for the request's metrics.
macro_rules! backend {
    ($self:ident, $s:ident => $call:expr) => {
        crate::metrics::time_store(async {
            match $self {
                Store::Memory($s) => $call,
                Store::Redis($s) => $call,
                // Boxed: these futures hold several SDK calls' worth of state (tens of KB in a
                // debug build), and would otherwise make every `Store` future as large.
                Store::Dynamodb($s) => Box::pin(async move { $call }).await,
                Store::Tiered($s) => Box::pin(async move { $call }).await,
            }
        })
        .await
    };
}

impl Store {
    /// The backend's name, as reported by the stats endpoint and in logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
            Store::Dynamodb(_) => "dynamodb",
            Store::Tiered(_) => "redis+dynamodb",
        }
    }

    /// Caps the sessions one user may hold; creating one more evicts the oldest.
    pub fn with_max_sessions(self, max_sessions: usize) -> Self {
        match self {
            Store::Memory(s) => Store::Memory(s.with_max_sessions(max_sessions)),
            Store::Redis(s) => Store::Redis(s.with_max_sessions(max_sessions)),
            Store::Dynamodb(s) => Store::Dynamodb(s.with_max_sessions(max_sessions)),
            Store::Tiered(s) => Store::Tiered(s.with_max_sessions(max_sessions)),
        }
    }

    /// Stores a new session under its token's hash.
    pub async fn create(&self, token: &SessionToken, session: &Session) -> Result<(), StoreError> {
        backend!(self, s => s.create(token.user_key(), &token.hash(), session).await)
    }

    /// The session of this token, if it exists and has not expired.
    pub async fn get(&self, token: &SessionToken, now: i64) -> Result<Option<Session>, StoreError> {
        let found = backend!(self, s => s.get(token.user_key(), &token.hash()).await)?;
        Ok(found.filter(|session| session.is_active(now)))
    }

    /// Slides an active session's expiry (never past its absolute cap); `None` if there is none.
    pub async fn refresh(
        &self,
        token: &SessionToken,
        now: i64,
    ) -> Result<Option<Session>, StoreError> {
        let found = backend!(self, s => s.refresh(token.user_key(), &token.hash(), now).await)?;
        Ok(found.filter(|session| session.is_active(now)))
    }

    /// Removes one session; `true` if it was there.
    pub async fn delete(&self, token: &SessionToken) -> Result<bool, StoreError> {
        backend!(self, s => s.delete(token.user_key(), &token.hash()).await)
    }

    /// Removes every session of a user; returns how many of them were still active.
    pub async fn delete_user(&self, user: &UserKey, now: i64) -> Result<u64, StoreError> {
        backend!(self, s => s.delete_user(user, now).await)
    }

    /// Every session the store holds for a user, expired ones included, each with its token's
    /// hash. With both stores, the record's.
    pub async fn sessions_of(
        &self,
        user: &UserKey,
    ) -> Result<Vec<(TokenHash, Session)>, StoreError> {
        backend!(self, s => s.sessions_of(user).await)
    }

    /// A user's active sessions, newest first (ties in token-hash order, so the order is stable).
    pub async fn active_sessions(
        &self,
        user: &UserKey,
        now: i64,
    ) -> Result<Vec<(TokenHash, Session)>, StoreError> {
        let mut sessions = self.sessions_of(user).await?;
        sessions.retain(|(_, session)| session.is_active(now));
        sessions.sort_by(|(ha, a), (hb, b)| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| ha.as_bytes().cmp(hb.as_bytes()))
        });
        Ok(sessions)
    }

    /// Ends the active session of `user` that `id` names, as a logout of its token would; `true`
    /// if there was one. An id of another user's session names nothing here: only this user's
    /// sessions are looked at.
    pub async fn revoke(
        &self,
        user: &UserKey,
        id: &SessionId,
        now: i64,
    ) -> Result<bool, StoreError> {
        let found = self
            .sessions_of(user)
            .await?
            .into_iter()
            .find(|(hash, session)| id.names(hash) && session.is_active(now));
        let Some((hash, _)) = found else {
            return Ok(false);
        };
        // Gone by the time it is deleted (a logout, a logout-all, expiry in between) is gone
        // all the same: the caller asked for this session to end, and it has.
        backend!(self, s => s.delete(user, &hash).await)?;
        Ok(true)
    }

    pub async fn user_stats(&self, user: &UserKey, now: i64) -> Result<UserStats, StoreError> {
        let sessions = self.sessions_of(user).await?;
        Ok(UserStats::of(sessions.iter().map(|(_, s)| s), now))
    }

    /// Figures across every user. Walks the store: for admins, not for a hot path, and for at
    /// most [`crate::budget::GLOBAL_STATS_BUDGET`], after which the figures say they are partial.
    pub async fn global_stats(&self, now: i64) -> Result<GlobalStats, StoreError> {
        self.global_stats_within(now, crate::budget::GLOBAL_STATS_BUDGET)
            .await
    }

    /// [`Store::global_stats`] with another time budget.
    pub async fn global_stats_within(
        &self,
        now: i64,
        budget: std::time::Duration,
    ) -> Result<GlobalStats, StoreError> {
        let deadline = std::time::Instant::now() + budget;
        backend!(self, s => s.global_stats(now, deadline).await)
    }

    /// A user's cached data (JSON text), if present and not expired.
    pub async fn cache_get(&self, user: &UserKey, now: i64) -> Result<Option<String>, StoreError> {
        backend!(self, s => s.cache_get(user, now).await)
    }

    /// Replaces a user's cached data, kept for `ttl` seconds.
    pub async fn cache_put(
        &self,
        user: &UserKey,
        json: &str,
        ttl: u64,
        now: i64,
    ) -> Result<(), StoreError> {
        backend!(self, s => s.cache_put(user, json, ttl, now).await)
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Store({})", self.backend())
    }
}
