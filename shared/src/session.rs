//! What a session is, and the figures reported about a user's sessions.

use serde::Serialize;

/// One session, as every store keeps it. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user_id: String,
    pub created_at: i64,
    /// When the session lapses unless refreshed. Readers use [`Session::expiry`], which also
    /// applies the absolute cap.
    pub expires_at: i64,
    /// No refresh moves the expiry past this.
    pub absolute_expires_at: i64,
    /// Sliding window that a refresh grants, in seconds.
    pub idle_timeout: u64,
    pub remember_me: bool,
    /// The last refresh, or the creation until the first.
    pub last_refreshed_at: i64,
    /// A short description of the browser that created the session ("Chrome 131 on macOS"),
    /// from its user agent ([`crate::device::device_label`]); `None` when it said nothing
    /// recognisable. As stored: a record written before labels existed holds the first 64 bytes
    /// of a user agent here, which [`crate::device::stored_device`] labels where the session
    /// list shows it (so that only create and list read user agents).
    pub device: Option<String>,
}

/// The lifetimes a new session gets, from config.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub session: u64,
    pub remember_me: u64,
    pub max_lifetime: u64,
}

impl Session {
    /// A session starting `now`.
    pub fn new(
        user_id: &str,
        remember_me: bool,
        user_agent: Option<&str>,
        lifetimes: Lifetimes,
        now: i64,
    ) -> Self {
        let idle_timeout = if remember_me {
            lifetimes.remember_me
        } else {
            lifetimes.session
        };
        let absolute_expires_at = now.saturating_add_unsigned(lifetimes.max_lifetime);
        Session {
            user_id: user_id.to_owned(),
            created_at: now,
            expires_at: now
                .saturating_add_unsigned(idle_timeout)
                .min(absolute_expires_at),
            absolute_expires_at,
            idle_timeout,
            remember_me,
            last_refreshed_at: now,
            device: user_agent.and_then(crate::device::device_label),
        }
    }

    /// When the session ends: its sliding expiry, never past the absolute cap.
    pub fn expiry(&self) -> i64 {
        self.expires_at.min(self.absolute_expires_at)
    }

    pub fn is_active(&self, now: i64) -> bool {
        self.expiry() > now
    }

    /// The expiry a refresh at `now` grants.
    pub fn refreshed_expiry(&self, now: i64) -> i64 {
        now.saturating_add_unsigned(self.idle_timeout)
            .min(self.absolute_expires_at)
    }

    /// This session as refreshed at `now`.
    pub fn refreshed(mut self, now: i64) -> Self {
        self.expires_at = self.refreshed_expiry(now);
        self.last_refreshed_at = now;
        self
    }
}

/// The caller's active sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserStats {
    pub active_sessions: u64,
    pub remember_me_sessions: u64,
    /// Creation time of the oldest active session, Unix seconds.
    pub oldest_created_at: Option<i64>,
    /// Creation time of the newest active session, Unix seconds.
    pub newest_created_at: Option<i64>,
}

impl UserStats {
    pub fn of<'a>(sessions: impl IntoIterator<Item = &'a Session>, now: i64) -> Self {
        let mut stats = UserStats::default();
        for s in sessions.into_iter().filter(|s| s.is_active(now)) {
            stats.active_sessions += 1;
            stats.remember_me_sessions += u64::from(s.remember_me);
            stats.oldest_created_at = Some(
                stats
                    .oldest_created_at
                    .map_or(s.created_at, |t| t.min(s.created_at)),
            );
            stats.newest_created_at = Some(
                stats
                    .newest_created_at
                    .map_or(s.created_at, |t| t.max(s.created_at)),
            );
        }
        stats
    }
}

/// Figures across all users; shown to admins only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GlobalStats {
    pub active_sessions: u64,
    pub users_with_sessions: u64,
    /// The walk stopped at its time budget: the figures cover part of the store only.
    pub partial: bool,
}

pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFETIMES: Lifetimes = Lifetimes {
        session: 3600,
        remember_me: 2_592_000,
        max_lifetime: 7_776_000,
    };

    #[test]
    fn lifetimes_follow_remember_me() {
        let s = Session::new("u", false, None, LIFETIMES, 1000);
        assert_eq!(s.expiry(), 1000 + 3600);
        let r = Session::new("u", true, None, LIFETIMES, 1000);
        assert_eq!(r.expiry(), 1000 + 2_592_000);
        assert_eq!(r.absolute_expires_at, 1000 + 7_776_000);
    }

    #[test]
    fn refresh_slides_but_stops_at_the_cap() {
        let lifetimes = Lifetimes {
            max_lifetime: 5000,
            ..LIFETIMES
        };
        let s = Session::new("u", false, None, lifetimes, 0);
        assert_eq!(s.clone().refreshed(1000).expiry(), 4600);
        assert_eq!(s.clone().refreshed(4000).expiry(), 5000);
        // A store may hold an expiry past the cap; readers never see it.
        let raw = Session {
            expires_at: 9999,
            ..s
        };
        assert_eq!(raw.expiry(), 5000);
    }

    #[test]
    fn stats_count_only_active_sessions() {
        let a = Session::new("u", true, None, LIFETIMES, 100);
        let b = Session::new("u", false, None, LIFETIMES, 200);
        let gone = Session::new("u", true, None, LIFETIMES, -10_000_000);
        let stats = UserStats::of([&a, &b, &gone], 300);
        assert_eq!(stats.active_sessions, 2);
        assert_eq!(stats.remember_me_sessions, 1);
        assert_eq!(stats.oldest_created_at, Some(100));
        assert_eq!(stats.newest_created_at, Some(200));
        assert_eq!(UserStats::of([], 0), UserStats::default());
    }
}
