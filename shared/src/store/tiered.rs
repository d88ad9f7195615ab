//! Redis in front, DynamoDB behind: DynamoDB is the record, Redis the fast path. See
//! `docs/both-stores.md` for the mechanism and the four invariants it keeps.
//!
//! - Create, refresh and logout-all send their writes to both stores together; logout goes to
//!   DynamoDB first, then to Redis (`docs/both-stores.md`, "What overlaps", says why). Reads go
//!   to Redis and fall through to DynamoDB on a miss, an error, an entry that looks lapsed, or an
//!   entry older than the epoch.
//! - A revocation (logout, logout-all, a cache write) that could not reach Redis bumps the store
//!   epoch kept in DynamoDB; every container rereads the epoch at least every
//!   `EPOCH_CHECK_INTERVAL_MS`, and every Redis entry carries the epoch it was written under.
//! - After a Redis error, Redis is skipped for `REDIS_RETRY_AFTER_MS`, so an outage costs one
//!   timeout per container per interval, not one per request.

use super::redis::{Entry, Expect, Fence, WRITE_WINDOW_SECS};
use super::{DynamoStore, RedisStore, StoreError};
use crate::config::RedisMode;
use crate::hooks::{hook, jitter_point};
use crate::metrics::note_fallback;
use crate::session::{GlobalStats, Session, now_unix};
use crate::token::{TokenHash, UserKey};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

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
    /// A revocation's epoch bump failed; retried before the next epoch read.
    owes_bump: AtomicBool,
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
    checked_at: Option<Checked>,
}

/// When the epoch was last read, on both clocks: a container frozen between invocations may
/// find its monotonic clock stood still, so the copy's age is the larger of the two.
#[derive(Clone, Copy)]
struct Checked {
    monotonic: Instant,
    wall: SystemTime,
}

impl Checked {
    fn now() -> Self {
        Checked {
            monotonic: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    fn age(&self) -> Duration {
        let wall = SystemTime::now()
            .duration_since(self.wall)
            .unwrap_or(Duration::ZERO);
        self.monotonic.elapsed().max(wall)
    }
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
                owes_bump: AtomicBool::new(false),
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

    /// The store epoch, reread from DynamoDB at least every `epoch_check_interval`. A copy's age
    /// counts from when its read was sent, so that a bump completed before a request is seen by
    /// every request that starts an interval later, however slow the read that missed it was.
    async fn epoch(&self) -> Result<u64, StoreError> {
        self.settle_owed_bump().await;
        let mut cache = self.inner.epoch.lock().await;
        if cache
            .checked_at
            .is_some_and(|at| at.age() < self.inner.epoch_check_interval)
        {
            return Ok(cache.value);
        }
        let sent = Checked::now();
        let fresh = self.inner.dynamo.epoch().await?;
        cache.value = cache.value.max(fresh);
        cache.checked_at = Some(sent);
        Ok(cache.value)
    }

    /// After a change Redis did not get: entries written before it are no longer trusted. If the
    /// bump fails too, this container owes it, and pays on its next request (the request fails:
    /// a revocation that neither store confirmed is not reported done).
    async fn bump_epoch(&self) -> Result<(), StoreError> {
        if let Err(e) = self.inner.dynamo.bump_epoch().await {
            self.inner.owes_bump.store(true, Ordering::SeqCst);
            return Err(e);
        }
        self.inner.owes_bump.store(false, Ordering::SeqCst);
        // The bump returns no value, and this container's copy is now behind it: the next
        // epoch read goes to DynamoDB. A read in flight holds the lock, so it cannot land after
        // this with a value from before the bump.
        self.inner.epoch.lock().await.checked_at = None;
        tracing::warn!("store epoch bumped: Redis missed a change");
        Ok(())
    }

    /// A bump that failed earlier: the record may have lost sessions that Redis still serves.
    async fn settle_owed_bump(&self) {
        if self.inner.owes_bump.load(Ordering::Relaxed) {
            let _ = Box::pin(self.bump_epoch()).await;
        }
    }

    /// What a write of the record into Redis is fenced by; taken before the DynamoDB operation
    /// it follows, so that a revocation between the two makes the entry stale, never current.
    async fn fence(&self) -> Result<Fence, StoreError> {
        jitter_point!();
        Ok(Fence {
            epoch: self.epoch().await?,
            not_after: now_unix() + WRITE_WINDOW_SECS,
        })
    }

    /// A revocation the record accepted: Redis gets it through `write`, or, when Redis cannot
    /// be reached, the epoch moves on so that every container stops trusting older entries.
    async fn revoke_in_redis<F, Fut>(&self, write: F) -> Result<(), StoreError>
    where
        F: FnOnce(RedisStore) -> Fut,
        Fut: Future<Output = Result<(), StoreError>>,
    {
        if let Some(redis) = self.redis().await {
            match write(redis).await {
                Ok(()) => return Ok(()),
                Err(e) => self.redis_failed(&e),
            }
        }
        self.bump_epoch().await
    }

    /// The record's write and Redis's are sent together (see `docs/both-stores.md`, "What
    /// overlaps"): one round trip of waiting, the slower store's, unless the record evicted
    /// (a second Redis call tombstones what it evicted) or failed (Redis must then drop what it
    /// was given). The fence is read before both, so that it precedes the record's write.
    pub(super) async fn create(
        &self,
        user: &UserKey,
        hash: &TokenHash,
        session: &Session,
    ) -> Result<(), StoreError> {
        let fence = self.fence().await?;
        let record = async {
            hook!("tiered.create.recording", user);
            let outcome = self.inner.dynamo.create_evicting(user, hash, session).await;
            hook!("tiered.create.recorded", user);
            outcome
        };
        let cache = async {
            let redis = self.redis().await?;
            hook!("tiered.create.caching", user);
            let written = redis.put_new(user, hash, session, fence).await;
            hook!("tiered.create.cached", user);
            Some(written)
        };
        let ((evicted, recorded), cached) = tokio::join!(record, cache);
        if let Some(Err(e)) = &cached {
            self.redis_failed(e);
        }
        if recorded.is_err() && evicted.is_empty() {
            // The record's write failed, and its answer may be what was lost: the record may or
            // may not hold the session, so Redis must not serve it. A session Redis holds
            // becomes a tombstone (reads then ask the record); a Redis write that failed may
            // still land (a frozen server runs it on thawing), which only the epoch can tell:
            // the entry carries the fence's epoch, read before the bump.
            match cached {
                None | Some(Ok(false)) => {}
                Some(Ok(true)) => {
                    self.revoke_in_redis(
                        |redis| async move { redis.revoke(user, hash, true).await },
                    )
                    .await?
                }
                Some(Err(_)) => self.bump_epoch().await?,
            }
            return recorded;
        }
        // The new session is stored (an eviction is only tried after it); if Redis missed it, it
        // is only a miss. The evicted ones are revocations, which Redis must get or the epoch
        // must tell, even when their delete failed or its answer was lost. Only now are they
        // known: a second call, at the cap only.
        if !evicted.is_empty() {
            self.revoke_in_redis(
                |redis| async move { redis.tombstone_evicted(user, &evicted).await },
            )
            .await?;
        }
        recorded
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
            // A tombstone stops Redis from answering for the session and from being repaired,
            // never more: the record decides (a logout whose answer was lost may not have been
            // applied, and the session must then stay valid).
            Ok(Entry::Revoked) => return self.inner.dynamo.get(user, hash).await,
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
        let fence = self.fence().await?;
        let found = self.inner.dynamo.get(user, hash).await?;
        hook!("tiered.get.recorded", user);
        self.repair(&redis, user, hash, found.as_ref(), seen.as_deref(), fence)
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
        fence: Fence,
    ) {
        let expected = seen.map_or(Expect::Absent, Expect::Exactly);
        let result = match (record, seen) {
            (Some(session), _) if session.is_active(now_unix()) => {
                match redis
                    .put_checked(user, hash, session, fence, expected)
                    .await
                {
                    Ok(true) => return self.confirm_repair(redis, user, hash).await,
                    Ok(false) => return,
                    Err(e) => Err(e),
                }
            }
            // Gone from the record: drop what Redis still holds (and nothing if it holds none).
            (None, Some(_)) => redis.revoke(user, hash, true).await,
            // Lapsed in the record as read, or nothing anywhere: leave Redis alone (a refresh
            // may be landing right now).
            _ => return,
        };
        if let Err(e) = result {
            self.redis_failed(&e);
        }
    }

    /// After a repair wrote a session into Redis: the record must still hold it, asked after the
    /// write. The record was read before the write, and a revocation between the two is refused
    /// by its tombstone or marker in Redis, unless Redis lost them meanwhile (an empty restart):
    /// then nothing in Redis refuses the write, but the revocation's record write came before
    /// its Redis write, so before the loss, so before this read, which sees it. Gone, or the
    /// record cannot tell: Redis's copy becomes a tombstone, or the epoch moves on.
    async fn confirm_repair(&self, redis: &RedisStore, user: &UserKey, hash: &TokenHash) {
        hook!("tiered.get.repaired", user);
        if let Ok(Some(session)) = self.inner.dynamo.get(user, hash).await
            && session.is_active(now_unix())
        {
            return;
        }
        if let Err(e) = redis.revoke(user, hash, true).await {
            self.redis_failed(&e);
            let _ = self.bump_epoch().await;
        }
    }

    /// The record's conditional update and a slide of Redis's copy in place are sent together
    /// (see `docs/both-stores.md`, "What overlaps"). The slide never makes an entry and keeps the
    /// entry's epoch, and it computes the expiry as the record does; the record decides the
    /// answer. Redis must never hold a later expiry than the record (readers trust Redis's), so
    /// when the record's update failed while Redis slid, or may have, Redis's copy becomes a
    /// tombstone, or the epoch moves on.
    pub(super) async fn refresh(
        &self,
        user: &UserKey,
        hash: &TokenHash,
        now: i64,
    ) -> Result<Option<Session>, StoreError> {
        let record = async {
            let outcome = self.inner.dynamo.refresh(user, hash, now).await;
            hook!("tiered.refresh.recorded", user);
            outcome
        };
        let cache = async {
            let redis = self.redis().await?;
            hook!("tiered.refresh.sliding", user);
            let slid = redis
                .slide(user, hash, now, now_unix() + WRITE_WINDOW_SECS)
                .await;
            hook!("tiered.refresh.slid", user);
            Some(slid)
        };
        let (recorded, slid) = tokio::join!(record, cache);
        if let Some(Err(e)) = &slid {
            self.redis_failed(e);
        }
        match recorded {
            // Redis slid to the same expiry, or holds an earlier one (or none), which readers
            // check in the record.
            Ok(Some(session)) => Ok(Some(Session {
                // Capped as every reader sees it (DynamoDB cannot take the minimum itself).
                expires_at: session.expiry(),
                ..session
            })),
            Ok(None) => {
                // Gone from the record (or lapsed there) while Redis held it active: a
                // revocation that removed it tells Redis itself, or bumps the epoch. The slide is
                // undone, unless the field changed since: a refused refresh leaves Redis as it
                // found it, and never extends by a whole idle period a session that Redis
                // already held a little longer than the record (refreshes that landed in the two
                // stores in different orders).
                if let Some(Ok(Some(done))) = &slid
                    && let Some(redis) = self.redis().await
                    && let Err(e) = redis.unslide(user, hash, done).await
                {
                    self.redis_failed(&e);
                }
                Ok(None)
            }
            Err(e) => {
                // Not known whether the record slid: Redis's copy, if slid, may now be later
                // than the record's. A slide that failed may still land, but never over a
                // tombstone; with Redis unreachable, the epoch moves on.
                if matches!(slid, Some(Ok(Some(_)) | Err(_))) {
                    let _ = self
                        .revoke_in_redis(
                            |redis| async move { redis.revoke(user, hash, true).await },
                        )
                        .await;
                }
                Err(e)
            }
        }
    }

    pub(super) async fn delete(
        &self,
        user: &UserKey,
        hash: &TokenHash,
    ) -> Result<bool, StoreError> {
        // Sequential, unlike the other writes (`docs/both-stores.md`, "What overlaps"): the
        // tombstone must be written whether or not Redis holds the session, to stop a read-repair
        // in flight that read the record before this delete; but a tombstone sent before the
        // record confirmed the token would be a write by whoever holds a forged one.
        match self.inner.dynamo.delete(user, hash).await {
            Ok(true) => {}
            Ok(false) => {
                // Not a session of the record: nothing is bumped and no key is made (a forged
                // token must not touch either store), but what Redis may still hold of it goes.
                if let Some(redis) = self.redis().await
                    && let Err(e) = redis.revoke(user, hash, true).await
                {
                    self.redis_failed(&e);
                }
                return Ok(false);
            }
            Err(e) => {
                // Not known whether the delete was applied: its answer may be what was lost. If
                // the record still holds the session, it was not, and both stores are whole.
                // Otherwise Redis must drop what it holds, or, unreachable, learn it from the
                // epoch: a lost answer cannot be told from a token that never existed here, the
                // one case where a logout the record did not confirm bumps.
                if let Ok(Some(_)) = self.inner.dynamo.get(user, hash).await {
                    return Err(e);
                }
                let _ = self
                    .revoke_in_redis(|redis| async move { redis.revoke(user, hash, true).await })
                    .await;
                return Err(e);
            }
        }
        hook!("tiered.delete.recorded", user);
        self.revoke_in_redis(|redis| async move { redis.revoke(user, hash, false).await })
            .await?;
        Ok(true)
    }

    /// The record's `Query` and deletes first, then Redis's marker: it drops every session Redis
    /// holds and refuses every later write of one created at or before its time, the request's
    /// or the newest creation time the record found, if later (a clock ahead of ours, or a create
    /// that began after this request). Not sent together: a marker that Redis acknowledged
    /// before the record's deletes landed, then lost in an empty restart, would leave a
    /// read-repair that confirms its write against the record before the deletes nothing to
    /// refuse it (`docs/both-stores.md`, "What overlaps").
    pub(super) async fn delete_user(&self, user: &UserKey, now: i64) -> Result<u64, StoreError> {
        let (newest, deleted) = self.inner.dynamo.delete_user_fenced(user, now).await;
        hook!("tiered.delete_user.recorded", user);
        match newest {
            // Whatever the record lost, even when it failed part-way, Redis must stop serving,
            // or the epoch must tell.
            Some(newest) => {
                let fence = newest.max(now);
                self.revoke_in_redis(|redis| async move {
                    hook!("tiered.delete_user.revoking", user);
                    redis.revoke_user(user, fence).await
                })
                .await?;
            }
            // The record held nothing. The caller is authenticated, so Redis is told all the same
            // (a retry after a revocation whose Redis write and bump both failed); no bump when
            // it cannot be, since the record lost nothing.
            None => {
                if let Some(redis) = self.redis().await {
                    hook!("tiered.delete_user.revoking", user);
                    if let Err(e) = redis.revoke_user(user, now).await {
                        self.redis_failed(&e);
                    }
                }
            }
        }
        deleted
    }

    pub(super) async fn sessions_of(
        &self,
        user: &UserKey,
    ) -> Result<Vec<(TokenHash, Session)>, StoreError> {
        self.inner.dynamo.sessions_of(user).await
    }

    pub(super) async fn global_stats(
        &self,
        now: i64,
        deadline: Instant,
    ) -> Result<GlobalStats, StoreError> {
        self.inner.dynamo.global_stats(now, deadline).await
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
        let fence = self.fence().await?;
        if let Err(e) = self.inner.dynamo.cache_put(user, json, ttl, now).await {
            // The write may have been applied with its answer lost: Redis must not keep serving
            // the value it replaced.
            let _ = self
                .revoke_in_redis(|redis| async move { redis.cache_drop(user).await })
                .await;
            return Err(e);
        }
        self.revoke_in_redis(|redis| async move {
            redis
                .cache_put_entry(user, json, ttl, now, fence.epoch)
                .await
        })
        .await
    }
}
