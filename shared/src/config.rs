//! Configuration, read once per cold start; the only place that reads the environment.

use std::collections::HashMap;
use std::time::Duration;

/// Which session store to use (`SESSION_STORE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// Redis when `REDIS_URL` answers, else DynamoDB when `SESSION_TABLE` is set, else refuse.
    Auto,
    Redis,
    Dynamodb,
    /// In-process only: for tests and single-process use, never picked by `Auto`.
    Memory,
}

/// Whether `REDIS_URL` points at a cluster (`REDIS_CLUSTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisMode {
    /// Ask the server at start-up (`INFO cluster`).
    Auto,
    Standalone,
    Cluster,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub store: StoreKind,
    pub redis_url: Option<String>,
    pub redis_mode: RedisMode,
    /// Budget for opening a Redis connection, the start-up probe included.
    pub redis_connect_timeout: Duration,
    /// Budget for one Redis command (or script) to answer.
    pub redis_command_timeout: Duration,
    pub session_table: Option<String>,
    pub dynamodb_endpoint: Option<String>,
    /// Budget for one DynamoDB call, retries included.
    pub dynamodb_timeout: Duration,
    /// Sliding lifetime of an ordinary session, in seconds.
    pub session_timeout: u64,
    /// Sliding lifetime of a remember-me session, in seconds.
    pub remember_me_timeout: u64,
    /// No refresh moves a session's expiry past `created + session_max_lifetime`, in seconds.
    pub session_max_lifetime: u64,
    /// Lifetime of a user's cached data, in seconds.
    pub user_cache_ttl: u64,
    /// Largest user-cache body accepted, in bytes.
    pub cache_max_bytes: usize,
    /// Sessions one user may hold; creating one more evicts the oldest.
    pub max_sessions_per_user: usize,
    /// With Redis in front of DynamoDB: how often a container rereads the store epoch, the bound
    /// on how long a session revoked during a Redis outage can still be accepted.
    pub epoch_check_interval: Duration,
    /// With Redis in front of DynamoDB: how long to serve from DynamoDB alone after a Redis
    /// failure before trying Redis again.
    pub redis_retry_after: Duration,
    /// Where Clerk's signing key comes from.
    pub clerk_key: ClerkKey,
    /// Required `iss` of Clerk JWTs, when set.
    pub clerk_issuer: Option<String>,
    /// Origins allowed by CORS and as a JWT's `azp`; `scheme://host:*` matches any port.
    pub allowed_origins: Vec<String>,
    /// User ids that may see global stats.
    pub admin_user_ids: Vec<String>,
}

/// Clerk's JWT verification key (`CLERK_JWT_KEY` or `CLERK_JWKS_URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClerkKey {
    /// A PEM public key: no network needed, the right choice inside a VPC.
    Pem(String),
    /// A JWKS URL, fetched once per container and again on an unknown `kid`.
    JwksUrl(String),
    /// Neither is set: every JWT is refused (session tokens still work).
    Unset,
}

/// A configuration value that cannot be used; names the variable and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?} is not valid: {expected}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub expected: String,
}

pub const DEFAULT_SESSION_TIMEOUT: u64 = 3_600;
pub const DEFAULT_REMEMBER_ME_TIMEOUT: u64 = 2_592_000;
pub const DEFAULT_SESSION_MAX_LIFETIME: u64 = 7_776_000;
pub const DEFAULT_USER_CACHE_TTL: u64 = 3_600;
pub const DEFAULT_CACHE_MAX_BYTES: usize = 64 * 1024;
// Connect and probe: an in-VPC ElastiCache answers in a few ms, TLS included; an unreachable
// one must not hold a cold start past 300 ms (BENCHMARKS.md, cold start).
pub const DEFAULT_REDIS_CONNECT_TIMEOUT_MS: u64 = 200;
pub const DEFAULT_REDIS_COMMAND_TIMEOUT_MS: u64 = 250;
/// Budget for one DynamoDB call, retries included: in-region it answers in milliseconds, and a
/// revocation's worst case (a few such calls) must still fit the Lambda timeout.
pub const DEFAULT_DYNAMODB_TIMEOUT_MS: u64 = 1_000;
pub const DEFAULT_EPOCH_CHECK_INTERVAL_MS: u64 = 2_000;
pub const DEFAULT_REDIS_RETRY_AFTER_MS: u64 = 1_000;

/// Largest `REDIS_CONNECT_TIMEOUT_MS`, `REDIS_COMMAND_TIMEOUT_MS` and `DYNAMODB_TIMEOUT_MS`: a
/// minute, already more than a request can wait for one call.
pub const TIMEOUT_MS_LIMIT: u64 = 60_000;
/// Largest `EPOCH_CHECK_INTERVAL_MS` and `REDIS_RETRY_AFTER_MS`: an hour. Each is added to an
/// `Instant`, which a huge value would overflow.
pub const INTERVAL_MS_LIMIT: u64 = 3_600_000;
/// Largest `SESSION_TIMEOUT`, `REMEMBER_ME_TIMEOUT`, `SESSION_MAX_LIFETIME` and `USER_CACHE_TTL`:
/// ten years in seconds, so that now plus any of them stays a valid Redis `EXPIREAT`.
pub const LIFETIME_SECS_LIMIT: u64 = 315_360_000;
/// Largest `CACHE_MAX_BYTES`: 350 KiB, leaving room for the rest of the item under DynamoDB's
/// 400 KB item limit.
pub const CACHE_MAX_BYTES_LIMIT: u64 = 350 * 1024;
/// Largest `MAX_SESSIONS_PER_USER`: creating a session past the cap, and logout-all, go through
/// all of a user's sessions in one request.
pub const MAX_SESSIONS_PER_USER_LIMIT: u64 = 1_000;

// The defaults are within their limits.
const _: () = assert!(
    DEFAULT_REDIS_CONNECT_TIMEOUT_MS <= TIMEOUT_MS_LIMIT
        && DEFAULT_REDIS_COMMAND_TIMEOUT_MS <= TIMEOUT_MS_LIMIT
        && DEFAULT_DYNAMODB_TIMEOUT_MS <= TIMEOUT_MS_LIMIT
        && DEFAULT_EPOCH_CHECK_INTERVAL_MS <= INTERVAL_MS_LIMIT
        && DEFAULT_REDIS_RETRY_AFTER_MS <= INTERVAL_MS_LIMIT
        && DEFAULT_SESSION_TIMEOUT <= LIFETIME_SECS_LIMIT
        && DEFAULT_REMEMBER_ME_TIMEOUT <= LIFETIME_SECS_LIMIT
        && DEFAULT_SESSION_MAX_LIFETIME <= LIFETIME_SECS_LIMIT
        && DEFAULT_USER_CACHE_TTL <= LIFETIME_SECS_LIMIT
        && DEFAULT_CACHE_MAX_BYTES as u64 <= CACHE_MAX_BYTES_LIMIT
        && crate::store::DEFAULT_MAX_SESSIONS_PER_USER as u64 <= MAX_SESSIONS_PER_USER_LIMIT
);

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads from a map; tests use this instead of mutating the process environment.
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_lookup(|name| vars.get(name).cloned())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        // Empty values count as unset, as they do in a SAM template with an empty parameter.
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let number =
            |var: &'static str, default: u64, max: u64| bounded(var, get(var), default, max);
        let seconds = |var: &'static str, default: u64| number(var, default, LIFETIME_SECS_LIMIT);
        let millis = |var: &'static str, default: u64, max: u64| {
            number(var, default, max).map(Duration::from_millis)
        };

        let store = match get("SESSION_STORE").as_deref() {
            None | Some("auto") => StoreKind::Auto,
            Some("redis") => StoreKind::Redis,
            Some("dynamodb") => StoreKind::Dynamodb,
            Some("memory") => StoreKind::Memory,
            Some(other) => {
                return Err(ConfigError {
                    var: "SESSION_STORE",
                    value: other.to_owned(),
                    expected: "one of auto, redis, dynamodb, memory".into(),
                });
            }
        };
        let redis_mode = match get("REDIS_CLUSTER").as_deref() {
            None | Some("auto") => RedisMode::Auto,
            Some("false") | Some("0") | Some("no") => RedisMode::Standalone,
            Some("true") | Some("1") | Some("yes") => RedisMode::Cluster,
            Some(other) => {
                return Err(ConfigError {
                    var: "REDIS_CLUSTER",
                    value: other.to_owned(),
                    expected: "one of auto, true, false".into(),
                });
            }
        };
        let redis_url = get("REDIS_URL");
        if let Some(url) = &redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(ConfigError {
                var: "REDIS_URL",
                value: redact_url(url),
                expected: "a redis:// or rediss:// URL".into(),
            });
        }
        let cache_max_bytes = number(
            "CACHE_MAX_BYTES",
            DEFAULT_CACHE_MAX_BYTES as u64,
            CACHE_MAX_BYTES_LIMIT,
        )? as usize;

        let list = |name: &str| -> Vec<String> {
            get(name)
                .map(|v| {
                    v.split(',')
                        .map(|item| item.trim().to_owned())
                        .filter(|item| !item.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let clerk_key = match (get("CLERK_JWT_KEY"), get("CLERK_JWKS_URL")) {
            // Env files and template parameters often carry a PEM on one line with `\n`.
            (Some(pem), _) => ClerkKey::Pem(pem.replace("\\n", "\n")),
            (None, Some(url)) if jwks_url_allowed(&url) => ClerkKey::JwksUrl(url),
            (None, Some(url)) => {
                return Err(ConfigError {
                    var: "CLERK_JWKS_URL",
                    value: redact_url(&url),
                    expected: "an https:// URL (http:// only to a loopback host)".into(),
                });
            }
            (None, None) => ClerkKey::Unset,
        };

        let config = Config {
            store,
            redis_url,
            redis_mode,
            redis_connect_timeout: millis(
                "REDIS_CONNECT_TIMEOUT_MS",
                DEFAULT_REDIS_CONNECT_TIMEOUT_MS,
                TIMEOUT_MS_LIMIT,
            )?,
            redis_command_timeout: millis(
                "REDIS_COMMAND_TIMEOUT_MS",
                DEFAULT_REDIS_COMMAND_TIMEOUT_MS,
                TIMEOUT_MS_LIMIT,
            )?,
            session_table: get("SESSION_TABLE"),
            dynamodb_endpoint: get("DYNAMODB_ENDPOINT"),
            dynamodb_timeout: millis(
                "DYNAMODB_TIMEOUT_MS",
                DEFAULT_DYNAMODB_TIMEOUT_MS,
                TIMEOUT_MS_LIMIT,
            )?,
            session_timeout: seconds("SESSION_TIMEOUT", DEFAULT_SESSION_TIMEOUT)?,
            remember_me_timeout: seconds("REMEMBER_ME_TIMEOUT", DEFAULT_REMEMBER_ME_TIMEOUT)?,
            session_max_lifetime: seconds("SESSION_MAX_LIFETIME", DEFAULT_SESSION_MAX_LIFETIME)?,
            user_cache_ttl: seconds("USER_CACHE_TTL", DEFAULT_USER_CACHE_TTL)?,
            cache_max_bytes,
            max_sessions_per_user: number(
                "MAX_SESSIONS_PER_USER",
                crate::store::DEFAULT_MAX_SESSIONS_PER_USER as u64,
                MAX_SESSIONS_PER_USER_LIMIT,
            )? as usize,
            epoch_check_interval: millis(
                "EPOCH_CHECK_INTERVAL_MS",
                DEFAULT_EPOCH_CHECK_INTERVAL_MS,
                INTERVAL_MS_LIMIT,
            )?,
            redis_retry_after: millis(
                "REDIS_RETRY_AFTER_MS",
                DEFAULT_REDIS_RETRY_AFTER_MS,
                INTERVAL_MS_LIMIT,
            )?,
            clerk_key,
            clerk_issuer: get("CLERK_ISSUER"),
            allowed_origins: list("ALLOWED_ORIGINS"),
            admin_user_ids: list("ADMIN_USER_IDS"),
        };
        match config.store {
            StoreKind::Redis if config.redis_url.is_none() => Err(ConfigError {
                var: "REDIS_URL",
                value: String::new(),
                expected: "a redis:// or rediss:// URL when SESSION_STORE=redis".into(),
            }),
            StoreKind::Dynamodb if config.session_table.is_none() => Err(ConfigError {
                var: "SESSION_TABLE",
                value: String::new(),
                expected: "a DynamoDB table name when SESSION_STORE=dynamodb".into(),
            }),
            _ => Ok(config),
        }
    }

    /// The defaults, with nothing configured; for tests and tools.
    pub fn defaults() -> Self {
        Self::from_lookup(|_| None).expect("the defaults are valid")
    }
}

/// A whole number from 1 to `max`, or the default when unset.
fn bounded(
    var: &'static str,
    value: Option<String>,
    default: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ConfigError {
                var,
                value: v,
                expected: format!("a whole number from 1 to {max}"),
            }),
        },
    }
}

/// An https:// URL, or an http:// one to a loopback host (a local JWKS server in tests).
fn jwks_url_allowed(url: &str) -> bool {
    // reqwest's own parser, so the host checked is the host fetched.
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = parsed.host_str() else {
        return false;
    };
    match parsed.scheme() {
        "https" => true,
        "http" => {
            host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        _ => false,
    }
}

/// A Redis URL with its password replaced, fit for errors and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_map(&vars)
    }

    #[test]
    fn defaults_follow_the_original_guide() {
        let c = config(&[]).unwrap();
        assert_eq!(c.store, StoreKind::Auto);
        assert_eq!(c.session_timeout, 3600);
        assert_eq!(c.remember_me_timeout, 2_592_000);
        assert_eq!(c.cache_max_bytes, 65_536);
        assert!(c.redis_connect_timeout < Duration::from_secs(1));
        assert_eq!(c.dynamodb_timeout, Duration::from_secs(1));
    }

    #[test]
    fn reads_every_value() {
        let c = config(&[
            ("SESSION_STORE", "redis"),
            ("REDIS_URL", "rediss://u:pw@cache:6379"),
            ("REDIS_CLUSTER", "true"),
            ("SESSION_TIMEOUT", "60"),
            ("REMEMBER_ME_TIMEOUT", "120"),
            ("SESSION_MAX_LIFETIME", "600"),
            ("REDIS_CONNECT_TIMEOUT_MS", "150"),
            ("REDIS_COMMAND_TIMEOUT_MS", "90"),
            ("SESSION_TABLE", "sessions"),
            ("DYNAMODB_ENDPOINT", "http://127.0.0.1:5000"),
            ("CACHE_MAX_BYTES", "10"),
            ("MAX_SESSIONS_PER_USER", "5"),
            ("EPOCH_CHECK_INTERVAL_MS", "500"),
            ("REDIS_RETRY_AFTER_MS", "250"),
        ])
        .unwrap();
        assert_eq!(c.max_sessions_per_user, 5);
        assert_eq!(c.epoch_check_interval, Duration::from_millis(500));
        assert_eq!(c.redis_retry_after, Duration::from_millis(250));
        assert_eq!(c.store, StoreKind::Redis);
        assert_eq!(c.redis_mode, RedisMode::Cluster);
        assert_eq!(c.session_timeout, 60);
        assert_eq!(c.remember_me_timeout, 120);
        assert_eq!(c.session_max_lifetime, 600);
        assert_eq!(c.redis_connect_timeout, Duration::from_millis(150));
        assert_eq!(c.redis_command_timeout, Duration::from_millis(90));
        assert_eq!(c.session_table.as_deref(), Some("sessions"));
        assert_eq!(
            c.dynamodb_endpoint.as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(c.cache_max_bytes, 10);
    }

    #[test]
    fn a_bad_number_names_the_variable_and_the_value() {
        for bad in ["abc", "0", "-5", "1.5", "99999999999999999999999"] {
            let err = config(&[("SESSION_TIMEOUT", bad)]).unwrap_err();
            assert_eq!(err.var, "SESSION_TIMEOUT");
            assert_eq!(err.value, bad);
            let text = err.to_string();
            assert!(
                text.contains("SESSION_TIMEOUT") && text.contains(bad),
                "{text}"
            );
        }
        let err = config(&[("REDIS_CONNECT_TIMEOUT_MS", "soon")]).unwrap_err();
        assert_eq!(err.var, "REDIS_CONNECT_TIMEOUT_MS");
    }

    #[test]
    fn every_number_has_an_upper_bound() {
        for (var, max) in [
            ("REDIS_CONNECT_TIMEOUT_MS", 60_000u64),
            ("REDIS_COMMAND_TIMEOUT_MS", 60_000),
            ("DYNAMODB_TIMEOUT_MS", 60_000),
            ("EPOCH_CHECK_INTERVAL_MS", 3_600_000),
            ("REDIS_RETRY_AFTER_MS", 3_600_000),
            ("SESSION_TIMEOUT", 315_360_000),
            ("REMEMBER_ME_TIMEOUT", 315_360_000),
            ("SESSION_MAX_LIFETIME", 315_360_000),
            ("USER_CACHE_TTL", 315_360_000),
            ("CACHE_MAX_BYTES", 358_400),
            ("MAX_SESSIONS_PER_USER", 1_000),
        ] {
            config(&[(var, &max.to_string())])
                .unwrap_or_else(|e| panic!("{var} at its bound is refused: {e}"));
            for over in [max + 1, u64::MAX] {
                let over = over.to_string();
                let err = config(&[(var, &over)])
                    .err()
                    .unwrap_or_else(|| panic!("{var}={over} is accepted"));
                assert_eq!((err.var, err.value.as_str()), (var, over.as_str()));
                let text = err.to_string();
                assert!(
                    text.contains(&format!("a whole number from 1 to {max}")),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn a_jwks_url_must_be_https_unless_loopback() {
        for ok in [
            "https://x.clerk.accounts.dev/.well-known/jwks.json",
            "https://clerk.example.com:8443/jwks",
            "http://127.0.0.1:8080/.well-known/jwks.json",
            "http://127.5.6.7/jwks",
            "http://localhost:3000/jwks",
            "http://LOCALHOST/jwks",
            "http://[::1]:9000/jwks",
        ] {
            let c = config(&[("CLERK_JWKS_URL", ok)])
                .unwrap_or_else(|e| panic!("{ok} is refused: {e}"));
            assert_eq!(c.clerk_key, ClerkKey::JwksUrl(ok.into()));
        }
        for bad in [
            "http://x.clerk.accounts.dev/.well-known/jwks.json",
            "http://localhost.evil.com/jwks",
            "http://127.0.0.1.evil.com/jwks",
            "http://user@evil.com/jwks",
            "http://127.0.0.1@evil.com/jwks",
            "http://localhost:80@evil.com/jwks",
            "http://evil.com#@127.0.0.1",
            "http://evil.com/127.0.0.1",
            "http://10.0.0.1/jwks",
            "http://[::ffff:10.0.0.1]/jwks",
            "ftp://127.0.0.1/jwks",
            "https://",
            "not a url",
        ] {
            let err = config(&[("CLERK_JWKS_URL", bad)])
                .err()
                .unwrap_or_else(|| panic!("{bad} is accepted"));
            assert_eq!(err.var, "CLERK_JWKS_URL");
        }
    }

    #[test]
    fn clerk_and_cors_settings() {
        let c = config(&[
            (
                "CLERK_JWT_KEY",
                "-----BEGIN PUBLIC KEY-----\\nabc\\n-----END PUBLIC KEY-----",
            ),
            ("CLERK_ISSUER", "https://clerk.example.com"),
            (
                "ALLOWED_ORIGINS",
                "chrome-extension://abc, http://localhost:*,",
            ),
            ("ADMIN_USER_IDS", "user_admin"),
        ])
        .unwrap();
        assert_eq!(
            c.clerk_key,
            ClerkKey::Pem("-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----".into())
        );
        assert_eq!(c.clerk_issuer.as_deref(), Some("https://clerk.example.com"));
        assert_eq!(
            c.allowed_origins,
            ["chrome-extension://abc", "http://localhost:*"]
        );
        assert_eq!(c.admin_user_ids, ["user_admin"]);
        let jwks = config(&[(
            "CLERK_JWKS_URL",
            "https://x.clerk.accounts.dev/.well-known/jwks.json",
        )]);
        assert!(matches!(jwks.unwrap().clerk_key, ClerkKey::JwksUrl(_)));
        assert_eq!(
            config(&[("CLERK_JWKS_URL", "ftp://x")]).unwrap_err().var,
            "CLERK_JWKS_URL"
        );
        assert_eq!(config(&[]).unwrap().clerk_key, ClerkKey::Unset);
    }

    #[test]
    fn an_unknown_store_is_refused() {
        let err = config(&[("SESSION_STORE", "postgres")]).unwrap_err();
        assert_eq!(err.var, "SESSION_STORE");
        assert!(err.to_string().contains("postgres"));
    }

    #[test]
    fn a_named_store_needs_its_setting() {
        assert_eq!(
            config(&[("SESSION_STORE", "redis")]).unwrap_err().var,
            "REDIS_URL"
        );
        assert_eq!(
            config(&[("SESSION_STORE", "dynamodb")]).unwrap_err().var,
            "SESSION_TABLE"
        );
    }

    #[test]
    fn a_redis_url_error_hides_the_password() {
        let err = config(&[("REDIS_URL", "http://user:secret@host")]).unwrap_err();
        assert_eq!(err.var, "REDIS_URL");
        assert!(!err.to_string().contains("secret"), "{err}");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        assert_eq!(
            redact_url("rediss://default:pw@h:1/0"),
            "rediss://default:***@h:1/0"
        );
    }
}
