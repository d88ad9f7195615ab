//! The in-process store: for tests and single-process use. Never picked by `auto`, since each
//! Lambda endpoint is its own process and would see only its own sessions.

use super::StoreError;
use crate::session::{GlobalStats, Session};
use crate::token::{TokenHash, UserKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    max_sessions: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            inner: Arc::default(),
            max_sessions: super::DEFAULT_MAX_SESSIONS_PER_USER,
        }
    }
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<UserKey, HashMap<TokenHash, Session>>,
    caches: HashMap<UserKey, (String, i64)>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Caps the sessions one user may hold; creating one more evicts the oldest.
    pub fn with_max_sessions(mut self, max_sessions: usize) -> Self {
        self.max_sessions = max_sessions.max(1);
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) async fn create(
        &self,
        user: &UserKey,
        hash: &TokenHash,
        session: &Session,
    ) -> Result<(), StoreError> {
        let now = crate::session::now_unix();
        let mut inner = self.lock();
        let sessions = inner.sessions.entry(user.clone()).or_default();
        sessions.retain(|h, s| h != hash && s.is_active(now));
        if sessions.len() >= self.max_sessions {
            // Oldest first, ties by token hash, never one newer than the new session: the order
            // every store evicts in.
            let new = (session.created_at, hash.0);
            let mut order: Vec<(i64, [u8; 32])> =
                sessions.iter().map(|(h, s)| (s.created_at, h.0)).collect();
            order.sort_unstable();
            let excess = sessions.len() + 1 - self.max_sessions;
            for (_, h) in order.into_iter().take(excess).take_while(|old| *old < new) {
                sessions.remove(&TokenHash(h));
            }
        }
        sessions.insert(*hash, session.clone());
        Ok(())
    }

    pub(super) async fn get(
        &self,
        user: &UserKey,
        hash: &TokenHash,
    ) -> Result<Option<Session>, StoreError> {
        Ok(self
            .lock()
            .sessions
            .get(user)
            .and_then(|sessions| sessions.get(hash))
            .cloned())
    }

    pub(super) async fn refresh(
        &self,
        user: &UserKey,
        hash: &TokenHash,
        now: i64,
    ) -> Result<Option<Session>, StoreError> {
        let mut inner = self.lock();
        let Some(session) = inner.sessions.get_mut(user).and_then(|s| s.get_mut(hash)) else {
            return Ok(None);
        };
        if !session.is_active(now) {
            return Ok(None);
        }
        *session = session.clone().refreshed(now);
        Ok(Some(session.clone()))
    }

    pub(super) async fn delete(
        &self,
        user: &UserKey,
        hash: &TokenHash,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(sessions) = inner.sessions.get_mut(user) else {
            return Ok(false);
        };
        let removed = sessions.remove(hash).is_some();
        if sessions.is_empty() {
            inner.sessions.remove(user);
        }
        Ok(removed)
    }

    pub(super) async fn delete_user(&self, user: &UserKey, now: i64) -> Result<u64, StoreError> {
        let removed = self.lock().sessions.remove(user).unwrap_or_default();
        Ok(removed.values().filter(|s| s.is_active(now)).count() as u64)
    }

    pub(super) async fn sessions_of(
        &self,
        user: &UserKey,
    ) -> Result<Vec<(TokenHash, Session)>, StoreError> {
        Ok(self
            .lock()
            .sessions
            .get(user)
            .map(|sessions| sessions.iter().map(|(h, s)| (*h, s.clone())).collect())
            .unwrap_or_default())
    }

    pub(super) async fn global_stats(
        &self,
        now: i64,
        _deadline: std::time::Instant,
    ) -> Result<GlobalStats, StoreError> {
        let inner = self.lock();
        let mut stats = GlobalStats::default();
        for sessions in inner.sessions.values() {
            let active = sessions.values().filter(|s| s.is_active(now)).count() as u64;
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
        Ok(self
            .lock()
            .caches
            .get(user)
            .filter(|(_, expires_at)| *expires_at > now)
            .map(|(json, _)| json.clone()))
    }

    pub(super) async fn cache_put(
        &self,
        user: &UserKey,
        json: &str,
        ttl: u64,
        now: i64,
    ) -> Result<(), StoreError> {
        let expires_at = now.saturating_add_unsigned(ttl);
        self.lock()
            .caches
            .insert(user.clone(), (json.to_owned(), expires_at));
        Ok(())
    }
}
