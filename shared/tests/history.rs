//! The history checker: the proof of the store protocol.
//!
//! Seeded, randomized concurrent histories — create, validate, refresh, logout, logout-all, revoke
//! one session by its id (as the session list names it), stats, cache put and get, and the same
//! calls with forged, unknown and expired tokens or another user's session id — from several
//! store instances (each a Lambda container with its own epoch cache and Redis skip state),
//! against a real redis-server (through a fault proxy) and moto, while faults are injected: Redis
//! killed and restarted empty, frozen (SIGSTOP), its replies delayed past the command timeout, its
//! connections cut; DynamoDB calls failed, the epoch's reads and bumps throttled, batch deletes
//! failed part-way, writes applied with their answer lost. Every call's start, end and result is recorded, and each user's history is
//! judged against a sequential model of sessions:
//!
//! - **revoked stays revoked**: after a logout, a revoke or a logout-all completed, no call that
//!   starts once
//!   the protocol's bound has passed (`EPOCH_CHECK_INTERVAL`, counted from the end of the
//!   revocation; the protocol counts a container's copy of the epoch from when its read was sent)
//!   accepts that session, on any container;
//! - **live stays live**: a session whose create completed is never refused unless a revocation
//!   of it had started, the cap may have evicted it, or (Redis alone) Redis lost its data;
//! - **forged, unknown and expired tokens** are never accepted, and no key or item of a user
//!   the checker never signed in appears in either store;
//! - **once quiet** (faults healed): every container and the record agree on every session, the
//!   session list of every container names exactly the sessions validate accepts, the user's
//!   stats count what the record holds, Redis trusts no session the record lacks, and every Redis
//!   key has a TTL.
//!
//! A failing run prints its seed and the history, then shrinks it (fewer users, fewer calls, no
//! faults) to the smallest parameters that still fail. `HISTORY_SEED` replays one run;
//! `HISTORY_HISTORIES` sets the budget (`make test`: a few hundred per mode; `make drill`: 10,000
//! and more).

mod support;

use shared::session::{Lifetimes, Session, now_unix};
use shared::store::{RedisConnect, RedisStore, TieredStore};
use shared::token::{SessionId, UserKey};
use shared::{SessionToken, Store};
use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use support::faults::{DynamoFaults, DynamoKnobs, FaultProxy, faulty_client};
use support::servers::{Moto, RedisCluster, RedisServer};
use support::stores::{dynamo_client, dynamo_over, unique};

/// The protocol's intervals in these histories: short, so that thousands of histories fit in
/// minutes and every bound is crossed many times in each.
const EPOCH_CHECK: Duration = Duration::from_millis(20);
const REDIS_RETRY: Duration = Duration::from_millis(30);
const REDIS_TIMEOUT: Duration = Duration::from_millis(150);
/// Reading a clock twice is not exact; the bound is checked this much later.
const CLOCK_SLACK: Duration = Duration::from_millis(5);
const LIFETIMES: Lifetimes = Lifetimes {
    session: 3600,
    remember_me: 2_592_000,
    max_lifetime: 7_776_000,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Both,
    Redis,
    Dynamodb,
    Cluster,
}

/// What one run is made of; all of it follows from the seed but for the sizes, which shrink.
#[derive(Debug, Clone, Copy)]
struct Plan {
    mode: Mode,
    seed: u64,
    users: usize,
    calls_per_user: usize,
    faults: bool,
    /// The per-user cap: usually above what a history creates, sometimes small.
    cap: usize,
    /// Swarm testing: each run draws its own mix of calls and faults, some left out and some
    /// made frequent, so that runs differ in kind and not only in order. A mix that is all
    /// logout-all and validate under one fault reaches races an even mix dilutes.
    mix: Mix,
}

/// One run's weights for each kind of call (see `CALLS`) and the fault kinds it injects.
#[derive(Debug, Clone, Copy)]
struct Mix {
    weights: [u32; CALLS.len()],
    faults: u16,
}

/// The kinds of call and their base weights; a run scales each by 0, 1 or 3 (create and
/// validate are never left out).
const CALLS: [(&str, u32); 14] = [
    ("create", 20),
    ("validate", 25),
    ("refresh", 12),
    ("logout", 8),
    ("logout-all", 5),
    ("stats", 2),
    ("cache-put", 5),
    ("cache-get", 5),
    ("forged-validate", 4),
    ("forged-refresh", 4),
    ("forged-logout", 5),
    ("expired", 5),
    ("revoke", 6),
    ("forged-revoke", 4),
];
/// How many kinds of fault `inject_faults` knows.
const FAULT_KINDS: u32 = 9;

impl Mix {
    fn draw(rng: &mut Rng) -> Mix {
        let mut weights = [0; CALLS.len()];
        for (i, (_, base)) in CALLS.iter().enumerate() {
            let scale = match rng.below(3) {
                0 if i > 1 => 0,
                2 => 3,
                _ => 1,
            };
            weights[i] = base * scale;
        }
        // Each kind of fault with even odds; one in four runs injects every kind.
        let faults = if rng.chance(250) {
            (1 << FAULT_KINDS) - 1
        } else {
            (0..FAULT_KINDS).fold(0, |m, k| if rng.chance(500) { m | 1 << k } else { m })
        };
        Mix { weights, faults }
    }

    fn pick(&self, rng: &mut Rng) -> usize {
        let total: u32 = self.weights.iter().sum();
        let mut at = (rng.next() % u64::from(total)) as u32;
        for (i, w) in self.weights.iter().enumerate() {
            if at < *w {
                return i;
            }
            at -= w;
        }
        1
    }

    fn injects(&self, fault: u32) -> bool {
        self.faults & (1 << fault) != 0
    }
}

#[derive(Debug, Clone)]
enum Call {
    Create(usize),
    Validate(usize),
    Refresh(usize),
    Logout(usize),
    /// Revoke session `i` by its session id, as another device of the same user would.
    Revoke(usize),
    LogoutAll,
    Stats,
    CachePut,
    CacheGet,
    /// A well-formed token never issued: the user's own key or another user's, a made-up secret.
    Forged(ForgedCall),
    /// A session stored already expired, then asked for.
    Expired,
}

#[derive(Debug, Clone, Copy)]
enum ForgedCall {
    Validate,
    Refresh,
    Logout,
    /// The id of a session never issued, under this user or a user never signed in.
    Revoke,
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Done,
    Accepted,
    Refused,
    Removed(bool),
    Count(u64),
    Failed(String),
}

#[derive(Debug, Clone)]
struct Event {
    container: usize,
    call: Call,
    start: Duration,
    end: Duration,
    outcome: Outcome,
}

/// Faults as they happened, for the model (Redis data loss) and the report.
#[derive(Debug, Clone)]
struct Fault {
    at: Duration,
    what: &'static str,
}

/// The servers and the containers of one run.
struct World {
    mode: Mode,
    containers: Vec<Store>,
    /// DynamoDB alone over the same table: the record's truth.
    record: Option<Store>,
    redis: Option<Arc<Mutex<RedisServer>>>,
    /// One proxy per container in front of the one redis-server: a fault can cut one container
    /// off (a network path failing) while the others reach Redis.
    proxies: Vec<FaultProxy>,
    knobs: Arc<DynamoKnobs>,
    redis_urls: Vec<String>,
    table: Option<(aws_sdk_dynamodb::Client, String)>,
}

impl World {
    async fn new(plan: &Plan, containers: usize) -> World {
        let knobs = Arc::new(DynamoKnobs::default());
        let mut world = World {
            mode: plan.mode,
            containers: Vec::new(),
            record: None,
            redis: None,
            proxies: Vec::new(),
            knobs: knobs.clone(),
            redis_urls: Vec::new(),
            table: None,
        };
        if matches!(plan.mode, Mode::Both | Mode::Redis) {
            let server = RedisServer::start();
            for _ in 0..containers {
                world.proxies.push(FaultProxy::start(server.port()).await);
            }
            world.redis_urls = vec![server.url()];
            world.redis = Some(Arc::new(Mutex::new(server)));
        }
        if plan.mode == Mode::Cluster {
            world.redis_urls = RedisCluster::shared().urls();
        }
        if matches!(plan.mode, Mode::Both | Mode::Dynamodb) {
            // Each mode its own moto (one core each), so that the two modes do not queue on one.
            let moto = match plan.mode {
                Mode::Both => Moto::shared(),
                _ => Moto::second(),
            };
            let client = dynamo_client(&moto.endpoint());
            let table = unique("history");
            dynamo_over(client.clone(), &table)
                .ensure_table()
                .await
                .expect("create the table");
            world.record = Some(Store::Dynamodb(
                dynamo_over(client.clone(), &table).with_max_sessions(plan.cap),
            ));
            world.table = Some((client, table));
        }
        for i in 0..containers {
            let store = world.container(plan, i as u64).await;
            world.containers.push(store.with_max_sessions(plan.cap));
        }
        world
    }

    async fn container(&self, plan: &Plan, i: u64) -> Store {
        let dynamo = || {
            let (client, table) = self.table.as_ref().unwrap();
            let faults = DynamoFaults::new(self.knobs.clone(), plan.seed ^ ((i + 1) * 0x9e37));
            dynamo_over(faulty_client(client, faults), table)
        };
        let redis_url = match self.proxies.get(i as usize) {
            Some(proxy) => proxy.url(),
            None => self.redis_urls.first().cloned().unwrap_or_default(),
        };
        let redis = || async {
            RedisStore::connect(
                &redis_url,
                shared::config::RedisMode::Auto,
                REDIS_TIMEOUT,
                REDIS_TIMEOUT,
            )
            .await
        };
        match self.mode {
            Mode::Dynamodb => Store::Dynamodb(dynamo()),
            Mode::Redis | Mode::Cluster => Store::Redis(redis().await.expect("connect to Redis")),
            Mode::Both => Store::Tiered(TieredStore::new(
                dynamo(),
                redis().await.ok(),
                RedisConnect {
                    url: redis_url.clone(),
                    mode: shared::config::RedisMode::Auto,
                    connect_timeout: REDIS_TIMEOUT,
                    command_timeout: REDIS_TIMEOUT,
                    max_sessions: plan.cap,
                },
                REDIS_RETRY,
                EPOCH_CHECK,
            )),
        }
    }

    fn heal(&self) {
        self.knobs.heal();
        for proxy in &self.proxies {
            proxy.heal();
        }
        if let Some(redis) = &self.redis {
            let mut redis = redis.lock().unwrap_or_else(PoisonError::into_inner);
            if !redis.is_running() {
                redis.restart();
            }
            redis.resume();
        }
    }
}

/// A small seeded generator (xorshift64*), so that a seed replays the same choices.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }
}

/// One user's side of a run: their tokens (minted up front, used by creates in turn) and what
/// happened.
struct UserRun {
    user: String,
    tokens: Vec<SessionToken>,
    /// Tokens whose create has started.
    claimed: AtomicUsize,
    events: Mutex<Vec<Event>>,
}

/// The result of one run: how many histories and calls, which faults, and what went wrong.
struct RunReport {
    /// The histories of the users a violation names.
    histories: String,
    calls: usize,
    faults: Vec<Fault>,
    violations: Vec<String>,
}

/// The random pause at the protocol's pause points (`shared::hooks`): it widens the windows between
/// a request's steps, where the races live, far beyond what timing alone gives.
const JITTER: Duration = Duration::from_millis(40);

async fn run(plan: Plan) -> RunReport {
    shared::hooks::set_jitter(JITTER);
    let containers = if plan.mode == Mode::Cluster { 2 } else { 3 };
    let world = Arc::new(World::new(&plan, containers).await);
    let started = Instant::now();
    let users: Vec<Arc<UserRun>> = (0..plan.users)
        .map(|_| {
            let user = unique("hist");
            let tokens = (0..plan.calls_per_user)
                .map(|_| SessionToken::mint(&user))
                .collect();
            Arc::new(UserRun {
                user,
                tokens,
                claimed: AtomicUsize::new(0),
                events: Mutex::new(Vec::new()),
            })
        })
        .collect();
    let forged_user = unique("forged");

    // Faults, while the calls run.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let faults = Arc::new(Mutex::new(Vec::new()));
    let fault_task = plan.faults.then(|| {
        let (world, done, faults) = (world.clone(), done.clone(), faults.clone());
        tokio::spawn(inject_faults(world, plan, started, done, faults))
    });

    // Each user's calls come from three clients at once, each on a random container.
    let mut tasks = Vec::new();
    for (u, user) in users.iter().enumerate() {
        for client in 0..3u64 {
            let (world, user, forged_user) = (world.clone(), user.clone(), forged_user.clone());
            let seed = plan.seed ^ ((u as u64) << 20) ^ (client << 40);
            let calls =
                plan.calls_per_user / 3 + usize::from(client < plan.calls_per_user as u64 % 3);
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng::new(seed);
                for _ in 0..calls {
                    // A little think time, so that faults land between and during calls.
                    tokio::time::sleep(Duration::from_millis(rng.below(4) as u64)).await;
                    let call = pick_call(&mut rng, &plan.mix, &user);
                    let container = rng.below(world.containers.len());
                    let start = started.elapsed();
                    let outcome =
                        perform(&world.containers[container], &user, &call, &forged_user).await;
                    let end = started.elapsed();
                    user.events
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(Event {
                            container,
                            call,
                            start,
                            end,
                            outcome,
                        });
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("a client task panicked");
    }
    done.store(true, Ordering::SeqCst);
    if let Some(task) = fault_task {
        task.await.expect("the fault task panicked");
    }
    let faults = faults
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();

    // Judge each history, then the quiet state.
    let mut violations = Vec::new();
    let mut calls = 0;
    for user in &users {
        let events = user
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        calls += events.len();
        for v in judge(&plan, user, &events, &faults) {
            violations.push(format!("{}: {v}", user.user));
        }
    }
    world.heal();
    violations.extend(quiet(&world, &users, &forged_user).await);
    // The whole history of every user a violation names, in start order.
    let mut histories = String::new();
    for user in &users {
        if violations.iter().any(|v| v.contains(&user.user)) {
            let mut events = user
                .events
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            events.sort_by_key(|e| e.start);
            histories.push_str(&format!("history of {}:\n", user.user));
            for e in events {
                histories.push_str(&format!("  {e}\n"));
            }
        }
    }
    RunReport {
        histories,
        calls,
        faults,
        violations,
    }
}

fn pick_call(rng: &mut Rng, mix: &Mix, user: &UserRun) -> Call {
    let created = user.claimed.load(Ordering::SeqCst);
    let existing = |rng: &mut Rng| rng.below(created);
    if created == 0 {
        return Call::Create(user.claimed.fetch_add(1, Ordering::SeqCst));
    }
    match mix.pick(rng) {
        0 if created < user.tokens.len() => {
            Call::Create(user.claimed.fetch_add(1, Ordering::SeqCst))
        }
        0 | 1 => Call::Validate(existing(rng)),
        2 => Call::Refresh(existing(rng)),
        3 => Call::Logout(existing(rng)),
        4 => Call::LogoutAll,
        5 => Call::Stats,
        6 => Call::CachePut,
        7 => Call::CacheGet,
        8 => Call::Forged(ForgedCall::Validate),
        9 => Call::Forged(ForgedCall::Refresh),
        10 => Call::Forged(ForgedCall::Logout),
        12 => Call::Revoke(existing(rng)),
        13 => Call::Forged(ForgedCall::Revoke),
        _ => Call::Expired,
    }
}

async fn perform(store: &Store, user: &UserRun, call: &Call, forged_user: &str) -> Outcome {
    let now = now_unix();
    let key = UserKey::for_user(&user.user);
    let failed = |e: shared::StoreError| Outcome::Failed(e.kind.to_string());
    match call {
        Call::Create(i) => {
            let session = Session::new(&user.user, *i % 3 == 0, None, LIFETIMES, now);
            store
                .create(&user.tokens[*i], &session)
                .await
                .map_or_else(failed, |()| Outcome::Done)
        }
        Call::Validate(i) => match store.get(&user.tokens[*i], now).await {
            Ok(Some(_)) => Outcome::Accepted,
            Ok(None) => Outcome::Refused,
            Err(e) => failed(e),
        },
        Call::Refresh(i) => match store.refresh(&user.tokens[*i], now).await {
            Ok(Some(_)) => Outcome::Accepted,
            Ok(None) => Outcome::Refused,
            Err(e) => failed(e),
        },
        Call::Logout(i) => store
            .delete(&user.tokens[*i])
            .await
            .map_or_else(failed, Outcome::Removed),
        Call::Revoke(i) => store
            .revoke(&key, &SessionId::of(&user.tokens[*i].hash()), now)
            .await
            .map_or_else(failed, Outcome::Removed),
        Call::LogoutAll => store
            .delete_user(&key, now)
            .await
            .map_or_else(failed, Outcome::Count),
        Call::Stats => store
            .user_stats(&key, now)
            .await
            .map_or_else(failed, |s| Outcome::Count(s.active_sessions)),
        Call::CachePut => store
            .cache_put(&key, r#"{"n":1}"#, 60, now)
            .await
            .map_or_else(failed, |()| Outcome::Done),
        Call::CacheGet => store
            .cache_get(&key, now)
            .await
            .map_or_else(failed, |_| Outcome::Done),
        Call::Forged(kind) => {
            // Half with this user's key, half with a user the checker never signs in.
            let owner = if now % 2 == 0 {
                &user.user
            } else {
                forged_user
            };
            let token = SessionToken::mint(owner);
            let result = match kind {
                ForgedCall::Validate => store.get(&token, now).await.map(|s| s.is_some()),
                ForgedCall::Refresh => store.refresh(&token, now).await.map(|s| s.is_some()),
                ForgedCall::Logout => store.delete(&token).await,
                ForgedCall::Revoke => {
                    let id = SessionId::of(&token.hash());
                    store.revoke(&UserKey::for_user(owner), &id, now).await
                }
            };
            match result {
                Ok(true) => Outcome::Accepted,
                Ok(false) => Outcome::Refused,
                Err(e) => failed(e),
            }
        }
        Call::Expired => {
            let token = SessionToken::mint(&user.user);
            let lapsed = Session::new(&user.user, false, None, LIFETIMES, now - 7200);
            if let Err(e) = store.create(&token, &lapsed).await {
                return failed(e);
            }
            match store.get(&token, now).await {
                Ok(Some(_)) => Outcome::Accepted,
                Ok(None) => Outcome::Refused,
                Err(e) => failed(e),
            }
        }
    }
}

async fn inject_faults(
    world: Arc<World>,
    plan: Plan,
    started: Instant,
    done: Arc<std::sync::atomic::AtomicBool>,
    log: Arc<Mutex<Vec<Fault>>>,
) {
    let mut rng = Rng::new(plan.seed ^ 0xfa17);
    let note = |what: &'static str| {
        log.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Fault {
                at: started.elapsed(),
                what,
            });
    };
    let pause =
        |rng: &mut Rng, low: u64, high: u64| Duration::from_millis(low + rng.next() % (high - low));
    // The faults that apply to each mode (by `Mode` order), weighted toward those that split the
    // containers' views (one cut off from Redis, writes applied with their answer lost), where
    // the protocol's races are.
    let kinds: [&[u32]; 4] = [
        &[0, 1, 2, 3, 4, 5, 6, 7, 7, 8, 8, 8],
        &[0, 1, 2, 3, 8, 8],
        &[4, 5, 6, 7, 7],
        &[1, 3],
    ];
    let has_redis = world.redis.is_some();
    let cluster = (world.mode == Mode::Cluster).then(RedisCluster::shared);
    let has_dynamo = world.table.is_some();
    while !done.load(Ordering::SeqCst) {
        tokio::time::sleep(pause(&mut rng, 1, 40)).await;
        if done.load(Ordering::SeqCst) {
            break;
        }
        let kinds = kinds[world.mode as usize];
        let fault = kinds[rng.below(kinds.len())];
        let hold = pause(&mut rng, 20, 200);
        if !plan.mix.injects(fault) {
            continue;
        }
        match fault {
            0 if has_redis => {
                note("redis killed");
                let redis = world.redis.clone().unwrap();
                tokio::task::spawn_blocking(move || {
                    redis.lock().unwrap_or_else(PoisonError::into_inner).kill()
                })
                .await
                .unwrap();
                tokio::time::sleep(hold).await;
                let redis = world.redis.clone().unwrap();
                tokio::task::spawn_blocking(move || {
                    redis
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .restart()
                })
                .await
                .unwrap();
                note("redis restarted empty");
            }
            1 if has_redis => {
                note("redis frozen");
                world.redis.as_ref().unwrap().lock().unwrap().pause();
                tokio::time::sleep(hold).await;
                world.redis.as_ref().unwrap().lock().unwrap().resume();
                note("redis thawed");
            }
            2 if has_redis => {
                note("redis replies delayed past the timeout");
                for proxy in &world.proxies {
                    proxy.set_delay(REDIS_TIMEOUT + Duration::from_millis(50));
                }
                tokio::time::sleep(hold).await;
                for proxy in &world.proxies {
                    proxy.set_delay(Duration::ZERO);
                }
            }
            3 if has_redis => {
                note("redis connections cut");
                for proxy in &world.proxies {
                    proxy.cut();
                }
            }
            4 if has_dynamo => {
                note("dynamodb failing 1 call in 5");
                world.knobs.any.store(200, Ordering::SeqCst);
                tokio::time::sleep(hold).await;
                world.knobs.any.store(0, Ordering::SeqCst);
            }
            5 if has_dynamo => {
                note("epoch reads and bumps throttled");
                world.knobs.epoch.store(700, Ordering::SeqCst);
                tokio::time::sleep(hold).await;
                world.knobs.epoch.store(0, Ordering::SeqCst);
            }
            6 if has_dynamo => {
                note("batch deletes failing");
                world.knobs.batch.store(600, Ordering::SeqCst);
                tokio::time::sleep(hold).await;
                world.knobs.batch.store(0, Ordering::SeqCst);
            }
            7 if has_dynamo => {
                note("dynamodb answers of applied writes lost");
                world.knobs.lost_answers.store(500, Ordering::SeqCst);
                tokio::time::sleep(hold).await;
                world.knobs.lost_answers.store(0, Ordering::SeqCst);
            }
            1 if cluster.is_some() => {
                let cluster = cluster.unwrap();
                let node = rng.below(cluster.nodes());
                note("cluster node frozen");
                cluster.pause_node(node);
                // Well under the cluster's node timeout, so no node is marked failed.
                tokio::time::sleep(hold).await;
                cluster.resume_node(node);
                note("cluster node thawed");
            }
            3 if cluster.is_some() => {
                note("cluster node's connections cut");
                let (cluster, node) = (cluster.unwrap(), rng.below(cluster.unwrap().nodes()));
                tokio::task::spawn_blocking(move || cluster.cut_clients(node))
                    .await
                    .unwrap();
            }
            8 if has_redis => {
                note("one container cut off from Redis");
                let proxy = &world.proxies[rng.below(world.proxies.len())];
                proxy.set_refusing(true);
                proxy.cut();
                tokio::time::sleep(hold).await;
                proxy.set_refusing(false);
            }
            _ => {}
        }
    }
}

/// The model: one user's history, judged session by session.
fn judge(plan: &Plan, user: &UserRun, events: &[Event], faults: &[Fault]) -> Vec<String> {
    let mut violations = Vec::new();
    let bound = match plan.mode {
        Mode::Both => EPOCH_CHECK + CLOCK_SLACK,
        _ => CLOCK_SLACK,
    };
    // With Redis alone, an empty restart loses sessions: the model allows refusals after it.
    let data_lost_at = (plan.mode == Mode::Redis)
        .then(|| {
            faults
                .iter()
                .find(|f| f.what == "redis killed")
                .map(|f| f.at)
        })
        .flatten();
    let creates: Vec<Option<&Event>> = (0..user.tokens.len())
        .map(|i| {
            events
                .iter()
                .find(|e| matches!(e.call, Call::Create(j) if j == i))
        })
        .collect();
    let logout_alls: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e.call, Call::LogoutAll))
        .collect();
    for e in events {
        let token = match e.call {
            Call::Validate(i) | Call::Refresh(i) => i,
            Call::Forged(_) | Call::Expired if e.outcome == Outcome::Accepted => {
                violations.push(format!("accepted a forged or expired token: {e}"));
                continue;
            }
            _ => continue,
        };
        let Some(create) = creates[token] else {
            continue;
        };
        // Calls that may revoke this session: its logouts and revokes, and every logout-all.
        let revocations: Vec<&Event> = events
            .iter()
            .filter(|r| matches!(r.call, Call::Logout(j) | Call::Revoke(j) if j == token))
            .chain(logout_alls.iter().copied())
            .collect();
        match e.outcome {
            Outcome::Accepted => {
                // Completed revocations: a logout that removed it, or a logout-all that began
                // after its create had completed (one that raced the create may not have seen
                // it). A failed call may or may not have taken effect — a failed create too,
                // and later: a write queued at a frozen Redis runs when it thaws, after commands
                // other connections sent since. Its token never reached a client.
                let revoked = revocations.iter().find(|r| {
                    let completed = match (&r.call, &r.outcome) {
                        (Call::Logout(_) | Call::Revoke(_), Outcome::Removed(true)) => true,
                        (Call::LogoutAll, Outcome::Count(_)) => {
                            create.outcome == Outcome::Done && r.start > create.end
                        }
                        _ => false,
                    };
                    completed && r.end + bound < e.start
                });
                if let Some(r) = revoked {
                    violations.push(format!("revoked by {r}, then accepted: {e}"));
                }
            }
            Outcome::Refused => {
                let created = matches!(create.outcome, Outcome::Done) && create.end < e.start;
                let excused = revocations.iter().any(|r| r.start < e.end)
                    || data_lost_at.is_some_and(|at| at < e.end)
                    || may_be_evicted(plan, token, &creates, e);
                if created && !excused {
                    violations.push(format!("a live session refused: {e} (created by {create})"));
                }
            }
            _ => {}
        }
    }
    violations.extend(gone_stays_gone(&creates, events));
    violations
}

/// Gone stays gone: once a read that began after a session's create had ended answered that the
/// session is not there (the record's answer, or Redis alone's), no read that begins after it
/// accepts it. Nothing brings a session back: a revoked, evicted, expired or lost one is gone for
/// good, whatever the call that removed it returned.
fn gone_stays_gone(creates: &[Option<&Event>], events: &[Event]) -> Vec<String> {
    let read = |e: &&Event| matches!(e.call, Call::Validate(_) | Call::Refresh(_));
    let token = |e: &Event| match e.call {
        Call::Validate(i) | Call::Refresh(i) => i,
        _ => unreachable!(),
    };
    let mut violations = Vec::new();
    for refused in events
        .iter()
        .filter(read)
        .filter(|e| e.outcome == Outcome::Refused)
    {
        let i = token(refused);
        // A create that failed may still land later (a write a frozen Redis runs on thawing):
        // its token never reached a client, so only completed creates count.
        if !creates[i].is_some_and(|c| c.outcome == Outcome::Done && c.end < refused.start) {
            continue;
        }
        // A revocation (or an eviction) is not atomic across the two stores: the record drops
        // the session before Redis does. A read that begins while a revocation that began before the refusal
        // ended is still in flight may be served by Redis. And the one known exception: a
        // revocation that failed (503) after the record had dropped the session, while neither
        // Redis nor the epoch could be told; its container owes the bump and pays it on its next
        // request (docs/both-stores.md, "Known limits"). The quiet check holds the stores to
        // agree afterwards.
        let excused = |back: &Event| {
            events.iter().any(|r| {
                let revokes = match r.call {
                    Call::LogoutAll => true,
                    Call::Logout(j) | Call::Revoke(j) => j == i,
                    // A create of another session may evict this one at the cap.
                    Call::Create(j) => j != i,
                    _ => false,
                };
                revokes
                    && r.start < refused.end
                    && (r.end > back.start || matches!(r.outcome, Outcome::Failed(_)))
            })
        };
        if let Some(back) = events.iter().filter(read).find(|e| {
            token(e) == i && e.outcome == Outcome::Accepted && e.start > refused.end && !excused(e)
        }) {
            violations.push(format!("gone, then back: {refused}, then {back}"));
        }
    }
    violations
}

/// Whether the cap may have evicted session `token` before `e` ended: enough sessions were being
/// created by then.
fn may_be_evicted(plan: &Plan, token: usize, creates: &[Option<&Event>], e: &Event) -> bool {
    let begun = creates
        .iter()
        .enumerate()
        .filter(|(i, c)| *i != token && c.is_some_and(|c| c.start < e.end))
        .count();
    begun >= plan.cap
}

/// Once quiet: the stores agree, and what was forged left no trace. Users are checked at once,
/// each on its own task (their keys are disjoint), so the check costs one user's reads.
async fn quiet(world: &Arc<World>, users: &[Arc<UserRun>], forged_user: &str) -> Vec<String> {
    // Past every skip window: each container reconnects and rereads the epoch.
    tokio::time::sleep(REDIS_RETRY + EPOCH_CHECK + CLOCK_SLACK).await;
    let now = now_unix();
    let checks: Vec<_> = users
        .iter()
        .map(|user| {
            let (world, user) = (world.clone(), user.clone());
            tokio::spawn(async move { quiet_user(&world, &user, now).await })
        })
        .collect();
    let mut violations = Vec::new();
    for check in checks {
        violations.extend(check.await.expect("a quiet check panicked"));
    }
    violations.extend(no_trace(world, users, forged_user).await);
    violations
}

async fn quiet_user(world: &Arc<World>, user: &UserRun, now: i64) -> Vec<String> {
    let mut violations = Vec::new();
    let claimed = user.claimed.load(Ordering::SeqCst).min(user.tokens.len());
    // Each session on its own task too; one session's reads stay in order.
    let reads: Vec<_> = user.tokens[..claimed]
        .iter()
        .map(|token| {
            let (world, token) = (world.clone(), token.clone());
            tokio::spawn(async move {
                let truth = match &world.record {
                    Some(record) => record.get(&token, now).await.ok().map(|s| s.is_some()),
                    None => None,
                };
                let (mut answers, mut errors) = (Vec::new(), Vec::new());
                for store in &world.containers {
                    // Twice: the first read may repair, the second is served by what it left.
                    let _ = store.get(&token, now).await;
                    let answer = store.get(&token, now).await;
                    if let Err(e) = &answer {
                        errors.push(e.to_string());
                    }
                    answers.push(answer.ok().map(|s| s.is_some()));
                }
                (truth, answers, errors)
            })
        })
        .collect();
    // What each container's validate accepts, token by token (`None`: it failed).
    let mut accepted: Vec<Option<HashSet<[u8; 32]>>> =
        vec![Some(HashSet::new()); world.containers.len()];
    for (token, read) in user.tokens[..claimed].iter().zip(reads) {
        let (truth, answers, errors) = read.await.expect("a quiet read panicked");
        let first = truth.or(answers[0]);
        if answers.iter().any(|a| *a != first) {
            violations.push(format!(
                "{}: stores disagree once quiet: record {truth:?}, containers {answers:?} \
                 (errors: {errors:?})",
                user.user
            ));
        }
        for (seen, answer) in accepted.iter_mut().zip(&answers) {
            match (answer, seen.as_mut()) {
                (Some(true), Some(seen)) => {
                    seen.insert(*token.hash().as_bytes());
                }
                (None, _) => *seen = None,
                _ => {}
            }
        }
    }
    // The session list names exactly the sessions validate accepts.
    let key = UserKey::for_user(&user.user);
    for (c, (store, seen)) in world.containers.iter().zip(&accepted).enumerate() {
        let (Some(seen), Ok(listed)) = (seen, store.active_sessions(&key, now).await) else {
            continue;
        };
        let listed: HashSet<[u8; 32]> = listed.iter().map(|(h, _)| *h.as_bytes()).collect();
        if &listed != seen {
            violations.push(format!(
                "{}: container {c} lists {} sessions, validate accepts {} (listed only: {}, \
                 accepted only: {})",
                user.user,
                listed.len(),
                seen.len(),
                listed.difference(seen).count(),
                seen.difference(&listed).count(),
            ));
        }
    }
    if let Some(record) = &world.record {
        let truth = record.user_stats(&key, now).await.ok();
        for store in &world.containers {
            let stats = store.user_stats(&key, now).await.ok();
            if stats != truth {
                violations.push(format!(
                    "{}: stats disagree once quiet: {stats:?} vs the record's {truth:?}",
                    user.user
                ));
            }
        }
    }
    violations
}

/// Every Redis key has a TTL and belongs to a user the checker signed in; Redis trusts no active
/// session the record lacks; the table holds nothing of the forged user.
async fn no_trace(world: &World, users: &[Arc<UserRun>], forged_user: &str) -> Vec<String> {
    let mut violations = Vec::new();
    let known: HashSet<String> = users
        .iter()
        .map(|u| UserKey::for_user(&u.user).as_str().to_owned())
        .collect();
    let forged_key = UserKey::for_user(forged_user).as_str().to_owned();
    for url in &world.redis_urls {
        let client = redis::Client::open(url.as_str()).unwrap();
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            continue;
        };
        for entry in support::stores::redis_entries(url).await {
            let key = String::from_utf8_lossy(&entry.key).into_owned();
            let Some(user_key) = key
                .split_once('{')
                .and_then(|(_, rest)| rest.strip_suffix('}'))
            else {
                continue;
            };
            if user_key == forged_key {
                violations.push(format!("a forged user's key in Redis: {key}"));
            }
            if !known.contains(user_key) {
                continue; // another test's, on the shared cluster
            }
            let ttl: i64 = redis::cmd("PTTL")
                .arg(&entry.key)
                .query_async(&mut conn)
                .await
                .unwrap_or(-3);
            if ttl < 0 {
                violations.push(format!("a Redis key without TTL: {key} ({ttl})"));
            }
        }
    }
    if let Some((client, table)) = &world.table {
        // Every copy of the store epoch holds the same value (they move in one transaction).
        let epochs: std::collections::BTreeSet<String> = support::stores::scan_table(client, table)
            .await
            .iter()
            .filter(|item| {
                item.get("pk")
                    .and_then(|pk| pk.as_s().ok())
                    .is_some_and(|pk| pk.starts_with("EPOCH#"))
            })
            .filter_map(|item| Some(item.get("epoch")?.as_n().ok()?.clone()))
            .collect();
        if epochs.len() > 1 {
            violations.push(format!("the epoch's copies differ: {epochs:?}"));
        }
        let forged = client
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(
                ":pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("USER#{forged_key}")),
            )
            .send()
            .await;
        if forged.is_ok_and(|out| out.count() > 0) {
            violations.push("a forged user's item in DynamoDB".to_owned());
        }
    }
    violations
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:>7.1?} .. {:>7.1?}] container {} {:?} -> {:?}",
            self.start, self.end, self.container, self.call, self.outcome
        )
    }
}

/// Runs histories of `mode` until `budget` histories were judged; on a violation, prints the
/// run, shrinks it and fails.
async fn check(mode: Mode, budget: usize) {
    // Empty is unset, as make passes it.
    let replay_seed = std::env::var("HISTORY_SEED")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let base_seed: u64 = replay_seed
        .as_deref()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            (now_unix() as u64 ^ u64::from(std::process::id())).wrapping_mul(mode as u64 + 1)
        });
    let replay = replay_seed.is_some();
    let started = Instant::now();
    let (mut histories, mut calls, mut faults, mut runs) = (0, 0, 0, 0u64);
    // Runs with both stores and DynamoDB alone wait on pauses and moto far more than they use
    // the cores: three at once, each with its own servers and table. The cluster is one for the
    // binary, so its runs (whose faults freeze its nodes) go one at a time.
    let parallel = match mode {
        _ if replay => 1,
        Mode::Both | Mode::Dynamodb => 3,
        Mode::Redis | Mode::Cluster => 1,
    };
    while histories < budget {
        let plans: Vec<Plan> = (0..parallel)
            .map(|i| {
                let seed = base_seed.wrapping_add(runs + i);
                let mut rng = Rng::new(seed);
                Plan {
                    mode,
                    seed,
                    users: 8,
                    calls_per_user: 12 + rng.below(12),
                    faults: !rng.chance(150),
                    cap: if rng.chance(350) { 2 } else { 1000 },
                    mix: Mix::draw(&mut rng),
                }
            })
            .collect();
        let reports: Vec<_> = plans.iter().map(|plan| tokio::spawn(run(*plan))).collect();
        for (plan, report) in plans.into_iter().zip(reports) {
            let report = report.await.expect("a run panicked");
            let seed = plan.seed;
            runs += 1;
            histories += plan.users;
            calls += report.calls;
            faults += report.faults.len();
            if !report.violations.is_empty() {
                let smallest = shrink(plan).await;
                panic!(
                    "{mode:?}: a violation in run seed {seed} ({plan:?}); replay with \
                     HISTORY_SEED={seed}\n{}\nfaults: {:?}\n{}smallest failing plan: {smallest:?}",
                    report.violations.join("\n"),
                    report.faults,
                    report.histories
                );
            }
        }
        if replay {
            break;
        }
    }
    eprintln!(
        "history {mode:?}: {histories} histories, {calls} calls, {faults} faults injected, \
         0 violations, in {:.1?} (seeds {base_seed}..{})",
        started.elapsed(),
        base_seed.wrapping_add(runs)
    );
}

/// The smallest plan (fewer users, fewer calls, no faults) with the same seed that still fails.
async fn shrink(plan: Plan) -> Plan {
    let mut smallest = plan;
    let candidates = |p: Plan| {
        [
            Plan { faults: false, ..p },
            Plan {
                users: (p.users / 2).max(1),
                ..p
            },
            Plan {
                calls_per_user: (p.calls_per_user / 2).max(2),
                ..p
            },
            Plan {
                calls_per_user: p.calls_per_user.saturating_sub(1).max(2),
                ..p
            },
        ]
    };
    'outer: for _ in 0..12 {
        for candidate in candidates(smallest) {
            let smaller = (candidate.users, candidate.calls_per_user, candidate.faults)
                != (smallest.users, smallest.calls_per_user, smallest.faults);
            // Concurrency makes a replay differ: give each candidate three tries.
            for _ in 0..3 {
                if smaller && !run(candidate).await.violations.is_empty() {
                    smallest = candidate;
                    continue 'outer;
                }
            }
        }
        break;
    }
    smallest
}

/// Histories per mode: `HISTORY_<MODE>` (BOTH, REDIS, DYNAMODB, CLUSTER), else
/// `HISTORY_HISTORIES`, else the `make test` budget: 600 with both stores, where the protocol's
/// races are, 400 in the other modes (about three minutes in all on 2 cores).
fn budget(mode: &str) -> usize {
    [format!("HISTORY_{mode}"), "HISTORY_HISTORIES".to_owned()]
        .iter()
        .find_map(|var| std::env::var(var).ok()?.parse().ok())
        .unwrap_or(if mode == "BOTH" { 600 } else { 400 })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_with_both_stores() {
    check(Mode::Both, budget("BOTH")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_with_redis_alone() {
    check(Mode::Redis, budget("REDIS")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_with_dynamodb_alone() {
    check(Mode::Dynamodb, budget("DYNAMODB")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_with_a_redis_cluster() {
    check(Mode::Cluster, budget("CLUSTER")).await;
}
