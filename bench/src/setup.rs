//! What every part shares: the Clerk-like key pair, the service configuration, the sample API
//! Gateway events of `events/`, stores, sessions, and reading Redis' INFO.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lambda_http::Request;
use serde_json::json;
use shared::config::RedisMode;
use shared::session::{Lifetimes, Session, now_unix};
use shared::store::{DynamoStore, RedisConnect, RedisStore, TieredStore};
use shared::{Config, SessionToken, Store};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The origin the sample events carry (events/README.md).
pub const ORIGIN: &str = "chrome-extension://abcdefghijklmnopabcdefghijklmnop";
/// The user agent of the sample events: what a browser sends; a session keeps its device label.
pub const BROWSER_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

/// An RSA key pair made by `openssl` for this run: the private half signs the bench's Clerk JWTs,
/// the public half is the service's `CLERK_JWT_KEY`.
pub struct Keys {
    pub public_pem: String,
    encoding: EncodingKey,
}

impl Keys {
    pub fn generate() -> Result<Keys, String> {
        let private_pem = openssl(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            None,
        )?;
        let public_pem = openssl(&["pkey", "-pubout"], Some(&private_pem))?;
        let encoding = EncodingKey::from_rsa_pem(private_pem.as_bytes())
            .map_err(|e| format!("openssl made a key jsonwebtoken cannot read: {e}"))?;
        Ok(Keys {
            public_pem,
            encoding,
        })
    }

    /// An RS256 Clerk-like JWT for `sub`, valid for two hours (longer than the whole bench).
    pub fn jwt(&self, sub: &str) -> String {
        let now = now_unix();
        let claims = json!({ "sub": sub, "iat": now, "nbf": now - 5, "exp": now + 7200, "sid": "sess_bench" });
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.encoding)
            .expect("RS256 signing with an RSA key")
    }
}

fn openssl(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("openssl: {e} (make bench installs it: apt-get install openssl)"))?;
    let mut input = child.stdin.take().expect("piped stdin");
    if let Some(text) = stdin {
        input
            .write_all(text.as_bytes())
            .map_err(|e| format!("openssl stdin: {e}"))?;
    }
    drop(input);
    let out = child
        .wait_with_output()
        .map_err(|e| format!("openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!("openssl {args:?} failed ({})", out.status));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("openssl output: {e}"))
}

/// The service's configuration as deployed (every default), with the bench's key and the
/// sample events' origin.
pub fn config(keys: &Keys, extra: &[(&str, &str)]) -> Config {
    config_with_key(&keys.public_pem, extra)
}

/// [`config`] with only the public half of the key (what a worker process gets).
pub fn config_with_key(public_pem: &str, extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("CLERK_JWT_KEY".into(), public_pem.to_owned()),
        ("ALLOWED_ORIGINS".into(), ORIGIN.into()),
    ]);
    for (name, value) in extra {
        vars.insert((*name).into(), (*value).into());
    }
    Config::from_map(&vars).expect("the bench configuration is valid")
}

/// The sample events of `events/`, placeholders left in.
pub struct Events {
    pub validate: String,
    pub create: String,
    pub refresh: String,
    pub logout: String,
    pub logout_all_token: String,
    pub logout_all_jwt: String,
    /// Of user `user_events` (the user its path names).
    pub cache_get: String,
    pub cache_put: String,
}

impl Events {
    pub fn load(root: &Path) -> Result<Events, String> {
        let read = |name: &str| {
            let path = root.join("events").join(name);
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
        };
        Ok(Events {
            validate: read("session-validate/200-valid.json")?,
            create: read("session-create/200-remember-me.json")?,
            refresh: read("session-refresh/200-refresh.json")?,
            logout: read("session-logout/200-logout.json")?,
            logout_all_token: read("session-logout-all/200-session-token.json")?,
            logout_all_jwt: read("session-logout-all/200-jwt.json")?,
            cache_get: read("cache-get/200-hit.json")?,
            cache_put: read("cache-put/200-put.json")?,
        })
    }
}

/// An event with its placeholders filled in.
pub fn fill(template: &str, session_token: &str, jwt: &str) -> String {
    template
        .replace("${SESSION_TOKEN}", session_token)
        .replace("${JWT}", jwt)
}

/// The request the Lambda runtime would hand the handler for this event.
pub fn request(event: &str) -> Request {
    lambda_http::request::from_str(event).expect("the sample events are API Gateway events")
}

pub async fn redis_store(url: &str, config: &Config) -> Result<Store, String> {
    RedisStore::connect(
        url,
        RedisMode::Standalone,
        Duration::from_secs(5),
        config.redis_command_timeout,
    )
    .await
    .map(|store| Store::Redis(store.with_max_sessions(config.max_sessions_per_user)))
    .map_err(|e| format!("connect to {url}: {e}"))
}

/// Redis in front of DynamoDB, as `Store::from_config` builds it when both are configured.
pub async fn tiered_store(
    url: &str,
    dynamo: DynamoStore,
    config: &Config,
) -> Result<Store, String> {
    let Store::Redis(redis) = redis_store(url, config).await? else {
        unreachable!("redis_store makes a Redis store");
    };
    Ok(Store::Tiered(TieredStore::new(
        dynamo.with_max_sessions(config.max_sessions_per_user),
        Some(redis),
        RedisConnect {
            url: url.to_owned(),
            mode: RedisMode::Standalone,
            connect_timeout: config.redis_connect_timeout,
            command_timeout: config.redis_command_timeout,
            max_sessions: config.max_sessions_per_user,
        },
        config.redis_retry_after,
        config.epoch_check_interval,
    )))
}

/// A session of `user` as `create` would make it, and its token.
pub fn new_session(
    user: &str,
    user_agent: Option<&str>,
    config: &Config,
) -> (SessionToken, Session) {
    let lifetimes = Lifetimes {
        session: config.session_timeout,
        remember_me: config.remember_me_timeout,
        max_lifetime: config.session_max_lifetime,
    };
    let session = Session::new(user, true, user_agent, lifetimes, now_unix());
    (SessionToken::mint(user), session)
}

/// Creates `count` sessions, one per user `<prefix><i>`, with `concurrency` calls in flight.
pub async fn seed(
    store: &Store,
    config: &Config,
    prefix: &str,
    count: usize,
    concurrency: usize,
) -> Result<Vec<String>, String> {
    let users: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
    let made = for_each(users, concurrency, |user| {
        let store = store.clone();
        let (token, session) = new_session(&user, Some(BROWSER_UA), config);
        async move {
            store
                .create(&token, &session)
                .await
                .map(|()| token.expose().to_owned())
                .map_err(|e| e.to_string())
        }
    })
    .await;
    made.into_iter().collect()
}

/// Runs `call` over `items` with at most `concurrency` at once, results in order.
pub async fn for_each<I, F, Fut, T>(items: Vec<I>, concurrency: usize, call: F) -> Vec<T>
where
    F: Fn(I) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    let mut results: Vec<Option<T>> = Vec::new();
    results.resize_with(items.len(), || None);
    for (i, item) in items.into_iter().enumerate() {
        if tasks.len() >= concurrency
            && let Some(done) = tasks.join_next().await
        {
            let (j, value) = done.expect("task panicked");
            results[j] = Some(value);
        }
        let fut = call(item);
        tasks.spawn(async move { (i, fut.await) });
    }
    while let Some(done) = tasks.join_next().await {
        let (j, value) = done.expect("task panicked");
        results[j] = Some(value);
    }
    results
        .into_iter()
        .map(|r| r.expect("every task ran"))
        .collect()
}

/// A plain connection for looking inside the server (not through the store's).
pub async fn redis_conn(url: &str) -> Result<redis::aio::MultiplexedConnection, String> {
    redis::Client::open(url)
        .map_err(|e| e.to_string())?
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("connect to {url}: {e}"))
}

/// `INFO <section>` as name → value.
pub async fn info(
    conn: &mut redis::aio::MultiplexedConnection,
    section: &str,
) -> Result<BTreeMap<String, String>, String> {
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query_async(conn)
        .await
        .map_err(|e| format!("INFO {section}: {e}"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect())
}

/// `calls` of every command in `INFO commandstats`.
pub async fn command_calls(
    conn: &mut redis::aio::MultiplexedConnection,
) -> Result<BTreeMap<String, u64>, String> {
    Ok(info(conn, "commandstats")
        .await?
        .into_iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("cmdstat_")?.to_owned();
            let calls = v
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name, calls))
        })
        .collect())
}

/// Seconds of CPU redis-server has used (user + system).
pub async fn server_cpu(conn: &mut redis::aio::MultiplexedConnection) -> Result<f64, String> {
    let cpu = info(conn, "cpu").await?;
    let get = |k: &str| {
        cpu.get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok(get("used_cpu_user") + get("used_cpu_sys"))
}

/// CPU seconds (user + system) of this process, and of its reaped children.
pub fn own_cpu() -> (f64, f64) {
    let usage = |who| {
        // SAFETY: getrusage fills the struct it is given.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut ru) };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        secs(ru.ru_utime) + secs(ru.ru_stime)
    };
    (usage(libc::RUSAGE_SELF), usage(libc::RUSAGE_CHILDREN))
}
