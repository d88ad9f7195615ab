//! What a session is, and the figures reported about a user's sessions.

use serde::Serialize;

/// Longest user agent kept with a session, in bytes.
pub const MAX_USER_AGENT_LEN: usize = 64;

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
    pub last_seen_at: i64,
    pub user_agent: Option<String>,
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
            last_seen_at: now,
            // Stores keep no empty user agent (a Redis record cannot tell it from none).
            user_agent: user_agent
                .map(truncate_user_agent)
                .filter(|ua| !ua.is_empty()),
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
        self.last_seen_at = now;
        self
    }
}

/// Cuts a user agent to [`MAX_USER_AGENT_LEN`] bytes on a character boundary, dropping control
/// characters so it can be stored and logged as is.
pub fn truncate_user_agent(ua: &str) -> String {
    let mut out = String::new();
    for c in ua.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_USER_AGENT_LEN {
            break;
        }
        out.push(c);
    }
    out
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
    fn user_agents_are_cut_on_a_char_boundary() {
        let ua = "é".repeat(100);
        let cut = truncate_user_agent(&ua);
        assert!(cut.len() <= MAX_USER_AGENT_LEN);
        assert_eq!(cut.chars().count(), MAX_USER_AGENT_LEN / 2);
        assert_eq!(truncate_user_agent("a\nb\u{0}c"), "abc");
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
