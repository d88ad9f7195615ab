//! What a session is, and the figures reported about a user's sessions.

use serde::Serialize;

/// Longest device label kept with a session, in bytes.
pub const MAX_DEVICE_LEN: usize = 48;

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
    /// from its user agent ([`device_label`]); `None` when it said nothing recognisable.
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
            device: user_agent.and_then(device_label),
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

/// What a user sees of the browser behind a session, from its user agent: "Chrome 131 on
/// macOS", "Firefox 133 on Linux", "Safari 18 on iPhone"; the browser or the OS alone when only
/// one is known; `None` when neither is. woothee's small rule set (about fifty patterns) reads it:
/// uap-core's full set would cost cold start and megabytes (docs/sessions.md).
///
/// At most [`MAX_DEVICE_LEN`] bytes, without control characters, `|` or `/`, so that it is
/// stored as is and never mistaken for a user agent (records written before labels existed
/// hold the first 64 bytes of one, which [`stored_device`] turns into a label).
pub fn device_label(user_agent: &str) -> Option<String> {
    // No user agent is long; a longer one is cut before the parser sees it (its patterns then
    // find what the first kilobyte says, which is where browsers say it).
    let user_agent = user_agent.get(..1024).unwrap_or(user_agent);
    let found = woothee::parser::Parser::new().parse(user_agent)?;
    let known = |v: &str| !v.is_empty() && v != woothee::woothee::VALUE_UNKNOWN;
    let browser = known(found.name).then(|| {
        let name = match found.name {
            "SamsungBrowser" => "Samsung Internet",
            name => name,
        };
        // A version is digits ("131.0.0.0"); for a library woothee names the library there.
        let major = found.version.split('.').next();
        match major.filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())) {
            Some(major) => format!("{name} {major}"),
            None => name.to_owned(),
        }
    });
    let os = known(found.os).then(|| match found.os {
        "Mac OSX" => "macOS",
        // A user agent says "Windows NT 10.0" on Windows 11 too.
        windows if windows.starts_with("Windows") && !windows.starts_with("Windows Phone") => {
            "Windows"
        }
        os => os,
    });
    let label = match (browser, os) {
        (Some(browser), Some(os)) => format!("{browser} on {os}"),
        (Some(browser), None) => browser,
        (None, Some(os)) => os.to_owned(),
        (None, None) => return None,
    };
    let mut out = String::new();
    for c in label
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '|' || c == '/' { ' ' } else { c })
    {
        if out.len() + c.len_utf8() > MAX_DEVICE_LEN {
            break;
        }
        out.push(c);
    }
    let out = out.trim().to_owned();
    (!out.is_empty()).then_some(out)
}

/// The device of a stored session, as a store read it back: a label, or (in a record written
/// before labels existed) the first bytes of a user agent, which becomes its label here.
pub fn stored_device(stored: &str) -> Option<String> {
    if stored.is_empty() {
        None
    } else if stored.contains('/') {
        device_label(stored)
    } else {
        Some(stored.to_owned())
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

    const CHROME_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

    #[test]
    fn devices_are_short_labels() {
        let cases = [
            (CHROME_MAC, Some("Chrome 131 on macOS")),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
                Some("Edge 131 on Windows"),
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
                Some("Firefox 133 on Linux"),
            ),
            ("curl/8.5.0", Some("HTTP Library")),
            ("", None),
            ("\u{0}\u{1}|||", None),
        ];
        for (ua, want) in cases {
            assert_eq!(device_label(ua).as_deref(), want, "{ua:?}");
        }
        let long = format!("{CHROME_MAC} {}", "x/1 ".repeat(10_000));
        let label = device_label(&long).unwrap();
        assert!(label.len() <= MAX_DEVICE_LEN);
        for junk in ["é".repeat(3000), "Mozilla/5.0 (|/|\n) Firefox/".repeat(50)] {
            let label = device_label(&junk).unwrap_or_default();
            assert!(label.len() <= MAX_DEVICE_LEN, "{label:?}");
            assert!(!label.contains(['|', '/']) && !label.chars().any(char::is_control));
        }
    }

    #[test]
    fn a_stored_user_agent_reads_as_its_label() {
        // What records written before labels existed hold: the first 64 bytes of a user agent.
        assert_eq!(
            stored_device(&CHROME_MAC[..64]),
            device_label(&CHROME_MAC[..64])
        );
        assert_eq!(
            stored_device("Chrome 131 on macOS").as_deref(),
            Some("Chrome 131 on macOS")
        );
        assert_eq!(stored_device(""), None);
        let label = device_label(CHROME_MAC).unwrap();
        assert_eq!(stored_device(&label), Some(label));
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
