//! Outage drills against a real redis-server that the test kills (SIGKILL), restarts empty,
//! freezes (SIGSTOP) and thaws (SIGCONT) under a bounded load: the promise of
//! docs/both-stores.md. Every loop is bounded in count and time.

mod support;

use shared::config::Config;
use shared::session::{Lifetimes, Session, now_unix};
use shared::store::StoreErrorKind;
use shared::token::UserKey;
use shared::{SessionToken, Store};
use std::time::{Duration, Instant};
use support::servers::{Moto, RedisServer, redis_command};
use support::stores::{dynamo_store, unique};

const REDIS_TIMEOUT_MS: u64 = 200;
const RETRY_AFTER_MS: u64 = 300;
const EPOCH_CHECK_MS: u64 = 1000;
/// The Redis budget (connect + command) plus room for one DynamoDB call to the local server on a
/// busy two-core machine. A hang would take seconds: the socket default.
const REQUEST_BUDGET: Duration = Duration::from_millis(2 * REDIS_TIMEOUT_MS + 1500);
/// Invariant 3's bound: every container rereads the epoch within EPOCH_CHECK_MS, and skips
/// Redis for RETRY_AFTER_MS after an error.
const REVOCATION_BOUND: Duration = Duration::from_millis(EPOCH_CHECK_MS + RETRY_AFTER_MS + 200);

const LIFETIMES: Lifetimes = Lifetimes {
    session: 3600,
    remember_me: 2_592_000,
    max_lifetime: 7_776_000,
};

fn config(pairs: &[(&str, &str)]) -> Config {
    let timeout = REDIS_TIMEOUT_MS.to_string();
    let retry = RETRY_AFTER_MS.to_string();
    let epoch = EPOCH_CHECK_MS.to_string();
    let mut vars = vec![
        ("REDIS_CONNECT_TIMEOUT_MS", timeout.as_str()),
        ("REDIS_COMMAND_TIMEOUT_MS", timeout.as_str()),
        ("REDIS_RETRY_AFTER_MS", retry.as_str()),
        ("EPOCH_CHECK_INTERVAL_MS", epoch.as_str()),
        ("DYNAMODB_TIMEOUT_MS", "3000"),
    ];
    vars.extend_from_slice(pairs);
    support::stores::local_config(&vars)
}

/// Both stores: a redis-server of its own and a fresh table on the shared moto server.
async fn both_stores(redis: &RedisServer) -> Config {
    let endpoint = Moto::shared().endpoint();
    let table = unique("drill");
    dynamo_store(&endpoint, &table)
        .ensure_table()
        .await
        .unwrap();
    config(&[
        ("REDIS_URL", &redis.url()),
        ("SESSION_TABLE", &table),
        ("DYNAMODB_ENDPOINT", &endpoint),
    ])
}

/// What a drill counted.
#[derive(Debug, Default)]
struct Tally {
    requests: usize,
    over_budget: Vec<(String, Duration)>,
    errors: Vec<String>,
    /// Valid sessions refused.
    lost: Vec<String>,
    /// Revoked sessions accepted.
    resurrected: Vec<String>,
}

impl Tally {
    async fn time<T>(&mut self, what: &str, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = call.await;
        let took = started.elapsed();
        self.requests += 1;
        if took > REQUEST_BUDGET {
            self.over_budget.push((what.to_owned(), took));
        }
        out
    }
}

/// The sessions a drill made, and which of them it revoked.
#[derive(Default)]
struct Sessions {
    live: Vec<SessionToken>,
    revoked: Vec<SessionToken>,
}

impl Sessions {
    async fn create(&mut self, store: &Store, user: &str, tally: &mut Tally) {
        let token = SessionToken::mint(user);
        let session = Session::new(user, false, None, LIFETIMES, now_unix());
        match tally.time("create", store.create(&token, &session)).await {
            Ok(()) => self.live.push(token),
            Err(e) => tally.errors.push(format!("create: {e}")),
        }
    }

    async fn logout_one(&mut self, store: &Store, tally: &mut Tally) {
        let Some(token) = self.live.pop() else { return };
        match tally.time("logout", store.delete(&token)).await {
            Ok(_) => self.revoked.push(token),
            Err(e) => {
                tally.errors.push(format!("logout: {e}"));
                self.live.push(token);
            }
        }
    }

    async fn logout_all(&mut self, store: &Store, user: &str, tally: &mut Tally) {
        let key = UserKey::for_user(user);
        match tally
            .time("logout-all", store.delete_user(&key, now_unix()))
            .await
        {
            Ok(_) => {
                let (gone, kept) = self
                    .live
                    .drain(..)
                    .partition(|t: &SessionToken| t.user_id() == user);
                self.live = kept;
                self.revoked.extend::<Vec<_>>(gone);
            }
            Err(e) => tally.errors.push(format!("logout-all: {e}")),
        }
    }

    /// Validates every session through `store`: live ones must be found, revoked ones not.
    async fn check(&self, store: &Store, tally: &mut Tally, label: &str) {
        for token in &self.live {
            match tally.time("validate", store.get(token, now_unix())).await {
                Ok(Some(_)) => {}
                Ok(None) => tally.lost.push(format!("{label}: {token:?}")),
                Err(e) => tally.errors.push(format!("{label} validate: {e}")),
            }
        }
        for token in &self.revoked {
            match tally.time("validate", store.get(token, now_unix())).await {
                Ok(None) => {}
                Ok(Some(_)) => tally.resurrected.push(format!("{label}: {token:?}")),
                Err(e) => tally.errors.push(format!("{label} validate: {e}")),
            }
        }
    }

    /// A bounded mixed load: creates, validates, one logout and one logout-all.
    async fn load(&mut self, store: &Store, users: &[String], tally: &mut Tally) {
        for user in users {
            self.create(store, user, tally).await;
            self.create(store, user, tally).await;
        }
        self.logout_one(store, tally).await;
        self.logout_all(store, &users[0], tally).await;
        self.create(store, &users[0], tally).await;
        self.check(store, tally, "during").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_stores_survive_kill_restart_and_freeze() {
    let mut redis = RedisServer::start();
    let config = both_stores(&redis).await;
    // Container A takes the traffic; container B never sees the outage.
    let a = Store::from_config(&config).await.unwrap();
    let b = Store::from_config(&config).await.unwrap();
    assert_eq!(a.backend(), "redis+dynamodb");
    let users: Vec<String> = (0..4).map(|_| unique("drill_user")).collect();
    let mut sessions = Sessions::default();
    let mut healthy = Tally::default();
    for user in &users {
        for _ in 0..3 {
            sessions.create(&a, user, &mut healthy).await;
        }
    }
    sessions.check(&a, &mut healthy, "healthy A").await;
    sessions.check(&b, &mut healthy, "healthy B").await;
    assert!(healthy.errors.is_empty(), "{:?}", healthy.errors);

    // From the first failure on, every request is counted.
    let mut tally = Tally::default();

    // 1. SIGKILL: Redis gone.
    redis.kill();
    sessions.load(&a, &users, &mut tally).await;

    // 2. Back, empty.
    redis.restart();
    tokio::time::sleep(Duration::from_millis(RETRY_AFTER_MS + 100)).await;
    sessions.load(&a, &users, &mut tally).await;

    // 3. SIGSTOP: Redis accepts connections and never answers. B has just read every session
    //    from Redis, so Redis holds entries that the revocations below make stale.
    sessions.check(&b, &mut tally, "before freeze B").await;
    redis.pause();
    sessions.load(&a, &users, &mut tally).await;
    redis.resume();

    // After the documented bound, every container refuses what was revoked during the outage,
    // including B, which never saw it, and a container started afterwards.
    tokio::time::sleep(REVOCATION_BOUND).await;
    sessions.check(&b, &mut tally, "after B").await;
    sessions.check(&a, &mut tally, "after A").await;
    let c = Store::from_config(&config).await.unwrap();
    sessions.check(&c, &mut tally, "after C").await;

    // 4. Redis serves again without a restart: a new session reaches it.
    let user = &users[1];
    sessions.create(&a, user, &mut tally).await;
    let newest = sessions.live.last().unwrap();
    let key = format!("sess:{{{}}}", UserKey::for_user(user).as_str());
    let fields = redis_command(redis.port(), &["HLEN", &key], Duration::from_secs(2)).unwrap();
    assert!(
        fields
            .trim()
            .trim_start_matches(':')
            .parse::<u64>()
            .unwrap()
            > 0,
        "Redis holds the user's sessions again: {fields}"
    );
    assert!(a.get(newest, now_unix()).await.unwrap().is_some());

    eprintln!(
        "drill (both stores): {} requests, {} over the {:?} budget, {} errors, {} sessions lost, \
         {} revoked sessions accepted after {:?}; {} live and {} revoked sessions checked",
        tally.requests,
        tally.over_budget.len(),
        REQUEST_BUDGET,
        tally.errors.len(),
        tally.lost.len(),
        tally.resurrected.len(),
        REVOCATION_BOUND,
        sessions.live.len(),
        sessions.revoked.len(),
    );
    assert!(tally.requests > 100, "the drill ran its load");
    assert!(!sessions.revoked.is_empty(), "the drill revoked sessions");
    assert_eq!(
        tally.over_budget,
        vec![],
        "requests over the timeout budget"
    );
    assert_eq!(
        tally.errors,
        Vec::<String>::new(),
        "5xx after the first failure"
    );
    assert_eq!(tally.lost, Vec::<String>::new(), "sessions lost");
    assert_eq!(
        tally.resurrected,
        Vec::<String>::new(),
        "revoked sessions accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_only_answers_503_during_an_outage_and_recovers_by_itself() {
    let mut redis = RedisServer::start();
    let store = Store::from_config(&config(&[("REDIS_URL", &redis.url())]))
        .await
        .unwrap();
    assert_eq!(store.backend(), "redis");
    let user = unique("user");
    let mut tally = Tally::default();

    for outage in ["kill", "freeze"] {
        let mut sessions = Sessions::default();
        sessions.create(&store, &user, &mut tally).await;
        assert!(tally.errors.is_empty(), "{:?}", tally.errors);
        match outage {
            "kill" => redis.kill(),
            _ => redis.pause(),
        }
        // Every request is answered, with the store error (503), within the budget.
        for _ in 0..10 {
            let token = &sessions.live[0];
            let result = tally.time("validate", store.get(token, now_unix())).await;
            let err = result.expect_err("no store, no answer");
            assert!(
                matches!(
                    err.kind,
                    StoreErrorKind::Timeout | StoreErrorKind::Connection
                ),
                "{err}"
            );
            let session = Session::new(&user, false, None, LIFETIMES, now_unix());
            let created = tally
                .time("create", store.create(&SessionToken::mint(&user), &session))
                .await;
            assert!(created.is_err());
        }
        match outage {
            "kill" => redis.restart(),
            _ => redis.resume(),
        }
        // Service resumes by itself (the connection reconnects); bounded wait.
        let deadline = Instant::now() + Duration::from_secs(10);
        let token = SessionToken::mint(&user);
        let session = Session::new(&user, false, None, LIFETIMES, now_unix());
        loop {
            match tally.time("create", store.create(&token, &session)).await {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("not yet back after {outage}: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("Redis-only store did not recover after {outage}: {e}"),
            }
        }
        assert!(store.get(&token, now_unix()).await.unwrap().is_some());
        if outage == "freeze" {
            // A freeze loses nothing: the session made before it is still there.
            assert!(
                store
                    .get(&sessions.live[0], now_unix())
                    .await
                    .unwrap()
                    .is_some()
            );
        }
    }
    assert_eq!(
        tally.over_budget,
        vec![],
        "requests over the timeout budget"
    );
}

/// Sets `maxmemory` to what the server uses now (connections and scripts included) plus
/// `headroom` bytes.
async fn limit_memory(conn: &mut redis::aio::MultiplexedConnection, headroom: u64) {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used + headroom)
        .query_async::<()>(conn)
        .await
        .unwrap();
}

/// Redis with a small `maxmemory` and `allkeys-lru` (the original guide's policy), filled past
/// it: Redis drops whole users' session hashes. With DynamoDB behind, none of them is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_sessions_are_served_from_dynamodb() {
    const USERS: usize = 300;
    let redis = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]);
    let config = both_stores(&redis).await;
    let store = Store::from_config(&config).await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();

    let mut tokens = Vec::new();
    let mut created = tokio::task::JoinSet::new();
    for i in 0..USERS {
        let store = store.clone();
        created.spawn(async move {
            let user = format!("evict_user_{i}");
            let token = SessionToken::mint(&user);
            let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0";
            let session = Session::new(&user, true, Some(ua), LIFETIMES, now_unix());
            store.create(&token, &session).await.map(|()| token)
        });
        // Bounded concurrency: moto is one Python process.
        if created.len() >= 8 {
            tokens.push(created.join_next().await.unwrap().unwrap().unwrap());
        }
    }
    for token in created.join_all().await {
        tokens.push(token.unwrap());
    }

    // Fill Redis past maxmemory with newer keys: LRU evicts the older session hashes.
    limit_memory(&mut conn, 256 * 1024).await;
    let filler = "x".repeat(1024);
    for batch in 0..8 {
        let mut pipe = redis::pipe();
        for i in 0..100 {
            pipe.cmd("SET")
                .arg(format!("filler:{batch}:{i}"))
                .arg(&filler)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await.unwrap();
    }
    let stats: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut conn)
        .await
        .unwrap();
    let evicted: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("evicted_keys:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut gone = 0;
    for token in &tokens {
        let key = format!("sess:{{{}}}", token.user_key().as_str());
        let exists: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        gone += usize::from(!exists);
    }
    assert!(
        gone > 0,
        "the drill evicted session hashes ({evicted} keys evicted)"
    );

    // Every session is still valid: the evicted ones come from DynamoDB.
    let mut lost = 0;
    for token in &tokens {
        lost += usize::from(store.get(token, now_unix()).await.unwrap().is_none());
    }
    eprintln!(
        "eviction drill: {evicted} keys evicted, {gone} of {USERS} users' session hashes gone, \
         {lost} sessions lost"
    );
    assert_eq!(tokens.len(), USERS);
    assert_eq!(lost, 0, "evicted sessions are served from DynamoDB");
}

/// Redis alone with `noeviction`: a full Redis refuses writes (503) instead of silently logging
/// users out, which is what docs/operations.md asks for when Redis is the only store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_alone_with_noeviction_refuses_instead_of_forgetting() {
    let redis = RedisServer::start_with(&["--maxmemory-policy", "noeviction"]);
    let store = Store::from_config(&config(&[("REDIS_URL", &redis.url())]))
        .await
        .unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    limit_memory(&mut conn, 512 * 1024).await;
    let mut kept = Vec::new();
    let mut refused = None;
    for i in 0..5000 {
        let user = format!("full_user_{i}");
        let token = SessionToken::mint(&user);
        let session = Session::new(&user, false, None, LIFETIMES, now_unix());
        match store.create(&token, &session).await {
            Ok(()) => kept.push(token),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let err = refused.expect("a full Redis refuses a write");
    assert_eq!(err.kind, StoreErrorKind::Capacity, "{err}");
    assert!(err.to_string().contains("OOM"), "{err}");
    eprintln!(
        "noeviction drill: {} sessions stored, then: {err}",
        kept.len()
    );
    assert!(kept.len() > 100, "sessions were stored before it filled up");
    for token in &kept {
        assert!(
            store.get(token, now_unix()).await.unwrap().is_some(),
            "a stored session was dropped"
        );
    }
}

/// A cluster node that drops every client connection (a network blip, a node replaced) costs
/// each container at most a failed call or two, never a connection that stays broken: every user,
/// whichever node holds their slot, is served again within a few attempts. The cut comes while
/// calls are in flight, sometimes while a fresh client is still connecting to the other nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_recovers_from_connections_cut_under_load() {
    use support::servers::RedisCluster;
    let cluster = RedisCluster::shared();
    let connect = || async {
        Store::Redis(
            shared::store::RedisStore::connect(
                &cluster.urls()[0],
                shared::config::RedisMode::Auto,
                Duration::from_millis(REDIS_TIMEOUT_MS),
                Duration::from_millis(REDIS_TIMEOUT_MS),
            )
            .await
            .expect("connect to the cluster"),
        )
    };
    let now = now_unix();
    // Enough users that every node holds some of their slots.
    let tokens: Vec<SessionToken> = (0..24)
        .map(|_| SessionToken::mint(&unique("blip")))
        .collect();
    let setup = connect().await;
    for token in &tokens {
        let session = Session::new(token.user_id(), false, None, LIFETIMES, now);
        setup.create(token, &session).await.expect("create");
    }
    for round in 0..12u64 {
        // A container just started, its calls in flight when one node drops its connections.
        let store = connect().await;
        let load: Vec<_> = tokens
            .iter()
            .map(|token| {
                let (store, token) = (store.clone(), token.clone());
                tokio::spawn(async move {
                    for _ in 0..10 {
                        let _ = store.get(&token, now).await;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(round * 3)).await;
        let node = round as usize % cluster.nodes();
        tokio::task::spawn_blocking(move || RedisCluster::shared().cut_clients(node))
            .await
            .unwrap();
        for task in load {
            task.await.unwrap();
        }
        for token in &tokens {
            let mut errors = Vec::new();
            let served = loop {
                match store.get(token, now).await {
                    Ok(found) => break found,
                    Err(e) if errors.len() < 5 => {
                        errors.push(e.to_string());
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!(
                        "round {round}: still failing after {} attempts: {e}; before: {errors:?}",
                        errors.len() + 1
                    ),
                }
            };
            assert!(served.is_some(), "round {round}: a live session was lost");
        }
    }
}
