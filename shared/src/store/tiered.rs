//! Redis in front, DynamoDB behind: DynamoDB is the record, Redis the fast path. See
//! `docs/both-stores.md` for the mechanism and the four invariants it keeps.
//!
//! - Every write goes to DynamoDB first, then to Redis; reads go to Redis and fall through to
//!   DynamoDB on a miss, an error, an entry that looks lapsed, or an entry older than the epoch.
//! - A revocation (logout, logout-all, a cache write) that could not reach Redis bumps the store
//!   epoch kept in DynamoDB; every container rereads the epoch at least every
//!   `EPOCH_CHECK_INTERVAL_MS`, and every Redis entry carries the epoch it was written under.
//! - After a Redis error, Redis is skipped for `REDIS_RETRY_AFTER_MS`, so an outage costs one
//!   timeout per container per interval, not one per request.

use super::redis::{Entry, Expect};
use super::{DynamoStore, RedisStore, StoreError};
use crate::config::RedisMode;
use crate::metrics::note_fallback;
use crate::session::{GlobalStats, Session, now_unix};
use crate::token::{TokenHash, UserKey};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct TieredStore {
    inner: Arc<Inner>,
}

struct Inner {
    dynamo: DynamoStore,
    /// `None` until a connection succeeds (Redis may be down at cold start).
    redis: RwLock<Option<RedisStore>>,
    connect: RedisConnect,
    /// Redis is skipped until then, after a failure.
    skip_redis_until: Mutex<Option<Instant>>,
    retry_after: Duration,
    epoch: tokio::sync::Mutex<EpochCache>,
    epoch_check_interval: Duration,
}

/// How to (re)connect to Redis.
#[derive(Clone)]
pub struct RedisConnect {
    pub url: String,
    pub mode: RedisMode,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub max_sessions: usize,
}

#[derive(Default)]
struct EpochCache {
    value: u64,
    checked_at: Option<Instant>,
}

impl TieredStore {
    /// `redis` is the connection made at cold start, if Redis answered then.
    pub fn new(
        dynamo: DynamoStore,
        redis: Option<RedisStore>,
        connect: RedisConnect,
        retry_after: Duration,
        epoch_check_interval: Duration,
    ) -> Self {
        let skip = redis.is_none().then(|| Instant::now() + retry_after);
        TieredStore {
            inner: Arc::new(Inner {
                dynamo,
                redis: RwLock::new(redis),
                connect,
                skip_redis_until: Mutex::new(skip),
                retry_after,
                epoch: tokio::sync::Mutex::new(EpochCache::default()),
                epoch_check_interval,
            }),
        }
    }

    /// Caps the sessions one user may hold, in both stores.
    pub fn with_max_sessions(self, max_sessions: usize) -> Self {
        let inner = &self.inner;
        let redis = inner
            .redis
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        TieredStore::new(
            inner.dynamo.clone().with_max_sessions(max_sessions),
            redis.map(|r| r.with_max_sessions(max_sessions)),
            RedisConnect {
                max_sessions,
                ..inner.connect.clone()
            },
            inner.retry_after,
            inner.epoch_check_interval,
        )
    }

    /// Redis, unless it failed within `retry_after`; connects when there is no connection yet.
    async fn redis(&self) -> Option<RedisStore> {
        let skip_until = *self
            .inner
            .skip_redis_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if skip_until.is_some_and(|until| Instant::now() < until) {
            note_fallback();
            return None;
        }
        let current = self
            .inner
            .redis
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if current.is_some() {
            return current;
        }
        let c = &self.inner.connect;
        match RedisStore::connect(&c.url, c.mode, c.connect_timeout, c.command_timeout).await {
            Ok(store) => {
                let store = store.with_max_sessions(c.max_sessions);
                tracing::info!("Redis reachable again");
                *self.inner.redis.write().unwrap_or_else(|p| p.into_inner()) = Some(store.clone());
                Some(store)
            }
            Err(e) => {
                self.redis_failed(&e);
                None
            }
        }
    }

    /// Serve from DynamoDB alone for a while, and say why once.
    fn redis_failed(&self, e: &StoreError) {
        let mut skip = self
            .inner
            .skip_redis_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let already_skipping = skip.is_some_and(|until| Instant::now() < until);
        *skip = Some(Instant::now() + self.inner.retry_after);
        note_fallback();
        if !already_skipping {
            tracing::warn!(cause = %e, "Redis failed; serving from DynamoDB");
        }
    }

    /// The store epoch, reread from DynamoDB at least every `epoch_check_interval`.
    async fn epoch(&self) -> Result<u64, StoreError> {
        let mut cache = self.inner.epoch.lock().await;
        if cache
            .checked_at
            .is_some_and(|at| at.elapsed() < self.inner.epoch_check_interval)
        {
            return Ok(cache.value);
        }
        let fresh = self.inner.dynamo.epoch().await?;
        cache.value = cache.value.max(fresh);
        cache.checked_at = Some(Instant::now());
        Ok(cache.value)
    }

    /// After a change Redis did not get: entries written before it are no longer trusted.
    async fn bump_epoch(&self) -> Result<(), StoreError> {
        let fresh = self.inner.dynamo.bump_epoch().await?;
        let mut cache = self.inner.epoch.lock().await;
        cache.value = cache.value.max(fresh);
        cache.checked_at = Some(Instant::now());
        tracing::warn!(
            epoch = cache.value,
            "store epoch bumped: Redis missed a change"
        );
        Ok(())
    }

    pub(super) async fn create(
        &self,
        user: &UserKey,
        hash: &TokenHash,
        session: &Session,
    ) -> Result<(), StoreError> {
        self.inner.dynamo.create(user, hash, session).await?;
        // A session Redis does not get is a miss, served from DynamoDB: nothing to bump.
        if let Some(redis) = self.redis().await {
            let epoch = self.epoch().await?;
            if let Err(e) = redis.put(user, hash, session, epoch).await {
                self.redis_failed(&e);
            }
        }
        Ok(())
    }

    pub(super) async fn get(
        &self,
        user: &UserKey,
        hash: &TokenHash,
    ) -> Result<Option<Session>, StoreError> {
        let Some(redis) = self.redis().await else {
            return self.inner.dynamo.get(user, hash).await;
        };
        let seen = match redis.get_raw(user, hash).await {
            Ok(Entry::Revoked) => return Ok(None),
            Ok(Entry::Session {
                session,
                epoch,
                raw,
            }) => {
                if session.is_active(now_unix()) && epoch >= self.epoch().await? {
                    return Ok(Some(session));
                }
                // Older than the epoch, or lapsed here while maybe refreshed in the record.
                Some(raw)
            }
            Ok(Entry::Absent) => None,
            Err(e) => {
                self.redis_failed(&e);
                return self.inner.dynamo.get(user, hash).await;
            }
        };
        let found = self.inner.dynamo.get(user, hash).await?;
        self.repair(&redis, user, hash, found.as_ref(), seen.as_deref())
            .await;
        Ok(found)
    }

    /// Brings Redis in line with what the record said, unless Redis changed meanwhile.
    async fn repair(
        &self,
        redis: &RedisStore,
        user: &UserKey,
        hash: &TokenHash,
        record: Option<&Session>,
        seen: Option<&str>,
    ) {
        let expected = seen.map_or(Expect::Absent, Expect::Exactly);
        let result = match (record, seen) {
            (Some(session), _) if session.is_active(now_unix()) => match self.epoch().await {
                Ok(epoch) => redis
                    .put_checked(user, hash, session, epoch, expected)
                    .await
                    .map(drop),
                Err(_) => return,
            },
            // Gone from the record: drop what Redis still holds.
            (_, Some(_)) => redis.revoke(user, hash).await,
            _ => return,
        };
        if let Err(e) = result {
            self.redis_failed(&e);
        }
    }

    pub(super) async fn refresh(
        &self,
        user: &UserKey,
        hash: &TokenHash,
        now: i64,
    ) -> Result<Option<Session>, StoreError> {
        let Some(session) = self.inner.dynamo.refresh(user, hash, now).await? else {
            return Ok(None);
        };
        // Capped as every reader sees it (DynamoDB cannot take the minimum itself).
        let session = Session {
            expires_at: session.expiry(),
            ..session
        };
        // If Redis misses this, it holds an earlier expiry, which readers check in the record.
        if let Some(redis) = self.redis().await {
            let written = match self.epoch().await {
                Ok(epoch) => {
                    redis
                        .put_checked(user, hash, &session, epoch, Expect::Anything)
                        .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                self.redis_failed(&e);
            }
        }
        Ok(Some(session))
    }

    pub(super) async fn delete(
        &self,
        user: &UserKey,
        hash: &TokenHash,
    ) -> Result<bool, StoreError> {
        let existed = self.inner.dynamo.delete(user, hash).await?;
        match self.redis().await {
            Some(redis) => {
                if let Err(e) = redis.revoke(user, hash).await {
                    self.redis_failed(&e);
                    self.bump_epoch().await?;
                }
            }
            None => self.bump_epoch().await?,
        }
        Ok(existed)
    }

    pub(super) async fn delete_user(&self, user: &UserKey, now: i64) -> Result<u64, StoreError> {
        let revoked = self.inner.dynamo.delete_user(user, now).await?;
        match self.redis().await {
            Some(redis) => {
                if let Err(e) = redis.revoke_user(user, now).await {
                    self.redis_failed(&e);
                    self.bump_epoch().await?;
                }
            }
            None => self.bump_epoch().await?,
        }
        Ok(revoked)
    }

    pub(super) async fn sessions_of(&self, user: &UserKey) -> Result<Vec<Session>, StoreError> {
        self.inner.dynamo.sessions_of(user).await
    }

    pub(super) async fn global_stats(&self, now: i64) -> Result<GlobalStats, StoreError> {
        self.inner.dynamo.global_stats(now).await
    }

    pub(super) async fn cache_get(
        &self,
        user: &UserKey,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        if let Some(redis) = self.redis().await {
            match redis.cache_entry(user, now).await {
                Ok(Some((json, epoch))) if epoch >= self.epoch().await? => return Ok(Some(json)),
                Ok(_) => {}
                Err(e) => self.redis_failed(&e),
            }
        }
        self.inner.dynamo.cache_get(user, now).await
    }

    pub(super) async fn cache_put(
        &self,
        user: &UserKey,
        json: &str,
        ttl: u64,
        now: i64,
    ) -> Result<(), StoreError> {
        self.inner.dynamo.cache_put(user, json, ttl, now).await?;
        let Some(redis) = self.redis().await else {
            return self.bump_epoch().await;
        };
        let epoch = self.epoch().await?;
        if let Err(e) = redis.cache_put_entry(user, json, ttl, now, epoch).await {
            self.redis_failed(&e);
            self.bump_epoch().await?;
        }
        Ok(())
    }
}
