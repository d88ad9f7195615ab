//! Part 6: the service behind a network's round trip instead of loopback's. Every store sits
//! behind a [`DelayProxy`] that delays its replies by [`DELAY`] (about what ElastiCache or
//! DynamoDB take to answer a Lambda in the same AZ), and everything is one call at a time, as
//! one Lambda instance serves requests:
//!
//! - the round trip achieved through the proxy (PING, p50/p99) and how late its delay line ran;
//! - validate through the real handler against a raw GET through the same proxy
//!   (`redis-benchmark -c 1`), ops/s, median of interleaved rounds;
//! - every operation's latency (p50/p99) with Redis alone, DynamoDB alone (moto through the
//!   proxy), and Redis in front of DynamoDB (both through proxies); for the writes, both stores
//!   against the slower of the two alone.

use crate::delay::{DelayProxy, ping_rtts};
use crate::dynamo;
use crate::load::{median, percentile};
use crate::procs::{Moto, RedisServer, run_captured};
use crate::report::{Row, thousands};
use crate::setup::{
    BROWSER_UA, config, fill, for_each, new_session, redis_conn, redis_store, request, seed,
    tiered_store,
};
use crate::{Ctx, PART6};
use lambda_http::Request;
use shared::store::DynamoStore;
use shared::{Config, Endpoint, State, Store, handle};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One way, on the server's replies: the whole round trip's added delay.
pub const DELAY: Duration = Duration::from_micros(250);
/// validate ≥ this × a raw GET through the same proxy.
const VALIDATE_BUDGET: f64 = 0.95;
/// Both stores ≤ this × the slower store alone.
const BOTH_BUDGET: f64 = 1.15;
/// The user the cache events' path names.
const CACHE_USER: &str = "user_events";
/// Sessions that validate and refresh cycle through, per store mode.
const POOL: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    Redis,
    Dynamo,
    Both,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Redis => "Redis",
            Mode::Dynamo => "DynamoDB (moto)",
            Mode::Both => "both",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Create,
    Validate,
    Refresh,
    CachePut,
    CacheGet,
    Logout,
    LogoutAll,
}

const OPS: [Op; 7] = [
    Op::Create,
    Op::Validate,
    Op::Refresh,
    Op::CachePut,
    Op::CacheGet,
    Op::Logout,
    Op::LogoutAll,
];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Validate => "validate",
            Op::Refresh => "refresh",
            Op::CachePut => "cache-put",
            Op::CacheGet => "cache-get",
            Op::Logout => "logout",
            Op::LogoutAll => "logout-all (3 sessions, Clerk JWT)",
        }
    }

    fn endpoint(self) -> Endpoint {
        match self {
            Op::Create => Endpoint::SessionCreate,
            Op::Validate => Endpoint::SessionValidate,
            Op::Refresh => Endpoint::SessionRefresh,
            Op::CachePut => Endpoint::CachePut,
            Op::CacheGet => Endpoint::CacheGet,
            Op::Logout => Endpoint::SessionLogout,
            Op::LogoutAll => Endpoint::SessionLogoutAll,
        }
    }

    /// The writes whose wall time with both stores has a budget.
    fn compared(self) -> bool {
        matches!(self, Op::Create | Op::Refresh | Op::Logout | Op::LogoutAll)
    }
}

/// A store mode: the handler's state on stores behind the proxies, and the same stores reached
/// directly, to seed sessions without waiting for the delay.
struct Subject {
    mode: Mode,
    state: Arc<State>,
    direct: Store,
    /// Sessions validate and refresh cycle through.
    pool: Vec<String>,
    /// A session of [`CACHE_USER`].
    cache_token: String,
}

/// Calls of one batch: µs each, failures, the first failure.
#[derive(Debug, Default, Clone)]
struct Batch {
    micros: Vec<f64>,
    failures: usize,
    first_failure: Option<String>,
}

pub async fn run(ctx: &Ctx, moto: Result<&Moto, &String>) -> Vec<Row> {
    match measure(ctx, moto).await {
        Ok(rows) => rows,
        Err(why) => {
            eprintln!("bench: part 6: {why}");
            vec![Row::failed(PART6, "delayed network", &why)]
        }
    }
}

async fn measure(ctx: &Ctx, moto: Result<&Moto, &String>) -> Result<Vec<Row>, String> {
    let redis = RedisServer::start(&ctx.tools.redis_server, &ctx.scratch.0, "redis-delayed")?;
    let redis_proxy =
        DelayProxy::start(redis.port, DELAY).map_err(|e| format!("delay proxy: {e}"))?;

    eprintln!("bench: part 6: the round trip through the delay proxy");
    let pings = ctx.ops(2_000);
    let (port, proxied) = (redis.port, redis_proxy.port);
    let (direct_rtt, proxy_rtt) = tokio::task::spawn_blocking(move || {
        Ok::<_, std::io::Error>((ping_rtts(port, pings)?, ping_rtts(proxied, pings)?))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("PING: {e}"))?;

    let mut rows = Vec::new();
    eprintln!("bench: part 6: validate vs a raw GET through the proxy");
    rows.push(match validate_vs_raw(ctx, &redis, &redis_proxy).await {
        Ok(row) => row,
        Err(why) => Row::failed(PART6, "validate vs raw GET, delayed network", &why),
    });

    // A redis-server of its own for Redis in front of DynamoDB: the two modes keep records of
    // different shapes under the same cache key.
    let moto_proxy = match moto {
        Ok(moto) => {
            let port = moto
                .endpoint
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("no port in {}", moto.endpoint))?;
            Ok(DelayProxy::start(port, DELAY).map_err(|e| format!("delay proxy: {e}"))?)
        }
        Err(why) => Err(format!("no moto server: {why}")),
    };
    let tiered_redis = RedisServer::start(
        &ctx.tools.redis_server,
        &ctx.scratch.0,
        "redis-delayed-tiered",
    )?;
    let tiered_proxy =
        DelayProxy::start(tiered_redis.port, DELAY).map_err(|e| format!("delay proxy: {e}"))?;
    let mut subjects = vec![redis_subject(ctx, &redis, &redis_proxy).await?];
    let mut missing = None;
    match (&moto, &moto_proxy) {
        (Ok(moto), Ok(proxy)) => {
            subjects.push(dynamo_subject(ctx, moto, proxy).await?);
            subjects.push(tiered_subject(ctx, moto, proxy, &tiered_redis, &tiered_proxy).await?);
        }
        (_, Err(why)) => missing = Some(why.clone()),
        (Err(why), _) => missing = Some(why.to_string()),
    }
    eprintln!("bench: part 6: every operation's latency, one call at a time");
    let batches = latencies(ctx, &subjects).await?;
    for op in OPS {
        rows.push(op_row(op, &batches, missing.as_deref()));
    }

    let mut lateness = redis_proxy.lateness_us();
    lateness.extend(tiered_proxy.lateness_us());
    if let Ok(proxy) = &moto_proxy {
        lateness.extend(proxy.lateness_us());
    }
    rows.insert(0, rtt_row(direct_rtt, proxy_rtt, lateness));
    drop(moto_proxy);
    Ok(rows)
}

fn rtt_row(mut direct: Vec<f64>, mut proxied: Vec<f64>, mut lateness: Vec<f64>) -> Row {
    let scheduling = match crate::delay::realtime() {
        Some(true) => "SCHED_FIFO",
        Some(false) => "normal priority (SCHED_FIFO was not permitted)",
        None => "none started",
    };
    let late = if lateness.is_empty() {
        "no chunk went through".to_owned()
    } else {
        format!(
            "p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs over {} chunks",
            percentile(&mut lateness, 50.0),
            percentile(&mut lateness, 99.0),
            lateness.iter().copied().fold(0.0, f64::max),
            thousands(lateness.len() as f64)
        )
    };
    Row::new(
        PART6,
        format!(
            "the round trip through the delay proxy ({} µs on every reply, a delay line): PING, \
             one at a time",
            DELAY.as_micros()
        ),
        format!(
            "through the proxy p50 **{:.0} µs**, p99 {:.0} µs; straight to redis-server p50 {:.0} \
             µs, p99 {:.0} µs ({} PINGs each). The delay line's threads: {scheduling}; its \
             sleeps ended after their due instant by {late}",
            percentile(&mut proxied, 50.0),
            percentile(&mut proxied, 99.0),
            percentile(&mut direct, 50.0),
            percentile(&mut direct, 99.0),
            thousands(proxied.len() as f64),
        ),
        "—",
        "info: the network every other figure of part 6 goes through",
    )
}

/// Rounds of validate vs raw GET: at least 10.
pub fn validate_rounds(ctx: &Ctx) -> usize {
    (ctx.rounds * 2).max(10)
}

/// redis-benchmark's ops/s and p50 (µs) from `--csv`.
fn parse_csv(out: &str) -> Option<(f64, f64)> {
    let line = out.lines().find(|l| !l.starts_with("\"test\""))?;
    let cols: Vec<f64> = line
        .split(',')
        .skip(1)
        .filter_map(|c| c.trim_matches('"').parse().ok())
        .collect();
    Some((*cols.first()?, cols.get(3)? * 1e3))
}

async fn validate_vs_raw(
    ctx: &Ctx,
    redis: &RedisServer,
    proxy: &DelayProxy,
) -> Result<Row, String> {
    let config = config(&ctx.keys, &[]);
    let direct = redis_store(&redis.url(), &config).await?;
    let tokens = seed(&direct, &config, "net_validate_", 200, 16).await?;
    let events: Arc<Vec<String>> = Arc::new(
        tokens
            .iter()
            .map(|t| fill(&ctx.events.validate, t, ""))
            .collect(),
    );
    let store = redis_store(&proxy.url("redis"), &config).await?;
    let state = Arc::new(State::with_store(config, store).map_err(|e| e.to_string())?);

    // The raw GET reads a value the size of a stored session record.
    let mut conn = redis_conn(&redis.url()).await?;
    let first = shared::SessionToken::parse(&tokens[0]).map_err(|e| e.to_string())?;
    let record_len: usize = redis::cmd("HSTRLEN")
        .arg(format!("sess:{{{}}}", first.user_key().as_str()))
        .arg(first.hash().as_bytes().as_slice())
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("HSTRLEN: {e}"))?;
    redis::cmd("SET")
        .arg("key:__rand_int__")
        .arg("x".repeat(record_len))
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| format!("SET: {e}"))?;
    let proxied = redis_conn(&proxy.url("redis")).await?;

    // Many short rounds rather than a few long ones: the median then shrugs off a round that a
    // burst of the machine's other work fell on.
    let n = ctx.ops(1_000);
    let rounds = validate_rounds(ctx);
    handler_calls(&state, Endpoint::SessionValidate, &events, 100).await;
    get_calls(&proxied, 100).await?;
    let (mut bench_rates, mut bench_p50s) = (Vec::new(), Vec::new());
    let (mut handler_rates, mut handler_times) = (Vec::new(), Vec::new());
    let (mut get_rates, mut get_times) = (Vec::new(), Vec::new());
    let mut ratios = Vec::new();
    let mut failures = Batch::default();
    for round in 1..=rounds {
        eprintln!("bench: part 6: validate vs raw GET, round {round} of {rounds}");
        let mut command = Command::new(&ctx.tools.redis_benchmark);
        command
            .args(["-h", "127.0.0.1", "-p", &proxy.port.to_string()])
            .args(["-c", "1", "-n", &n.to_string()])
            .args(["-d", &record_len.to_string(), "-t", "get", "--csv"]);
        let log = ctx.scratch.file("redis-benchmark-delayed.log");
        let out = tokio::task::spawn_blocking(move || {
            run_captured(command, &log, Duration::from_secs(300))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("redis-benchmark: {e}"))?;
        let (rate, p50) = parse_csv(&out)
            .ok_or_else(|| format!("redis-benchmark said nothing usable:\n{out}"))?;
        bench_rates.push(rate);
        bench_p50s.push(p50);

        let (seconds, times) = get_calls(&proxied, n).await?;
        get_rates.push(n as f64 / seconds);
        get_times.extend(times);

        let (seconds, batch) = handler_calls(&state, Endpoint::SessionValidate, &events, n).await;
        handler_rates.push(n as f64 / seconds);
        ratios.push(n as f64 / seconds / rate);
        handler_times.extend(batch.micros);
        failures.failures += batch.failures;
        failures.first_failure = failures.first_failure.or(batch.first_failure);
    }
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let ratio = median(&mut ratios);
    let (handler_p50, get_p50, bench_p50) = (
        percentile(&mut handler_times, 50.0),
        percentile(&mut get_times, 50.0),
        median(&mut bench_p50s),
    );
    let (handler_rate, bench_rate) = (median(&mut handler_rates), median(&mut bench_rates));
    let failure = failure_text(&failures);
    let result = format!(
        "handler {} ops/s · redis-benchmark GET {} ops/s → **{ratio:.3}×** raw (rounds \
         {low:.2}–{high:.2}); per call p50: handler {handler_p50:.0} µs, redis-benchmark \
         {bench_p50:.0} µs ({:.3}×), a GET of redis-rs (the store's client, on a multiplexed connection) \
         {get_p50:.0} µs at {} ops/s{failure}",
        thousands(handler_rate),
        thousands(bench_rate),
        bench_p50 / handler_p50,
        thousands(median(&mut get_rates)),
    );
    let verdict = if failures.failures > 0 {
        format!("MISS: calls failed{failure}")
    } else if ratio >= VALIDATE_BUDGET && low >= VALIDATE_BUDGET {
        "ok".to_owned()
    } else if ratio >= VALIDATE_BUDGET {
        format!("ok on the median, but round(s) down to {low:.2}×: the machine's noise")
    } else {
        // Mean time per call, from the median rates.
        let (handler_us, raw_us) = (1e6 / handler_rate, 1e6 / bench_rate);
        format!(
            "MISS: a validate takes {handler_us:.0} µs on average where a raw GET through the same \
             proxy takes {raw_us:.0} µs: the handler's {:.0} µs beyond it are more than the {:.0} \
             µs the budget leaves (part 1's handler's own cost and part 7's instruction counts say \
             where that time goes)",
            handler_us - raw_us,
            raw_us * (1.0 / VALIDATE_BUDGET - 1.0)
        )
    };
    Ok(Row::new(
        PART6,
        format!(
            "validate vs raw GET, delayed network, concurrency 1 (`redis-benchmark -c 1 -t get -d \
             {record_len}` through the same proxy), {rounds} rounds of {} calls",
            thousands(n as f64)
        ),
        result,
        format!("≥ {VALIDATE_BUDGET:.2}× raw"),
        verdict,
    ))
}

/// `n` GETs one after the other: wall seconds and µs each.
async fn get_calls(
    conn: &redis::aio::MultiplexedConnection,
    n: usize,
) -> Result<(f64, Vec<f64>), String> {
    let mut conn = conn.clone();
    tokio::spawn(async move {
        let mut times = Vec::with_capacity(n);
        let started = Instant::now();
        for _ in 0..n {
            let call = Instant::now();
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg("key:__rand_int__")
                .query_async(&mut conn)
                .await
                .map_err(|e| format!("GET: {e}"))?;
            if value.is_none() {
                return Err("GET found no value".to_owned());
            }
            times.push(call.elapsed().as_secs_f64() * 1e6);
        }
        Ok((started.elapsed().as_secs_f64(), times))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// `n` handler calls one after the other, the events cycled, each request deserialized
/// beforehand: wall seconds and each call.
async fn handler_calls(
    state: &Arc<State>,
    endpoint: Endpoint,
    events: &Arc<Vec<String>>,
    n: usize,
) -> (f64, Batch) {
    let requests: Vec<Request> = (0..n).map(|i| request(&events[i % events.len()])).collect();
    let state = state.clone();
    tokio::spawn(async move {
        let mut batch = Batch {
            micros: Vec::with_capacity(n),
            ..Batch::default()
        };
        let started = Instant::now();
        for req in requests {
            call(&state, endpoint, req, &mut batch).await;
        }
        (started.elapsed().as_secs_f64(), batch)
    })
    .await
    .expect("handler calls task")
}

/// One handler call, timed into `batch`.
async fn call(state: &State, endpoint: Endpoint, req: Request, batch: &mut Batch) {
    let started = Instant::now();
    let response = handle(state, endpoint, req).await;
    batch.micros.push(started.elapsed().as_secs_f64() * 1e6);
    if response.status() != 200 {
        batch.failures += 1;
        if batch.first_failure.is_none() {
            let body = match response.body() {
                lambda_http::Body::Text(text) => text.clone(),
                _ => String::new(),
            };
            batch.first_failure = Some(format!("{endpoint:?}: {} {body}", response.status()));
        }
    }
}

/// Call i of every state back to back, for each i: the stores compared under the same moment's
/// conditions. One batch per state.
async fn interleaved(endpoint: Endpoint, prepared: Vec<(Arc<State>, Vec<String>)>) -> Vec<Batch> {
    let prepared: Vec<(Arc<State>, Vec<Request>)> = prepared
        .into_iter()
        .map(|(state, events)| (state, events.iter().map(|e| request(e)).collect()))
        .collect();
    tokio::spawn(async move {
        let mut batches = vec![Batch::default(); prepared.len()];
        let mut queues: Vec<_> = prepared
            .into_iter()
            .map(|(state, requests)| (state, requests.into_iter()))
            .collect();
        loop {
            let mut any = false;
            for ((state, requests), batch) in queues.iter_mut().zip(&mut batches) {
                if let Some(req) = requests.next() {
                    any = true;
                    call(state, endpoint, req, batch).await;
                }
            }
            if !any {
                break batches;
            }
        }
    })
    .await
    .expect("handler calls task")
}

fn failure_text(batch: &Batch) -> String {
    match (batch.failures, &batch.first_failure) {
        (0, _) => String::new(),
        (n, first) => format!(
            "; {n} calls failed (the first: {})",
            first
                .as_deref()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect::<String>()
        ),
    }
}

async fn redis_subject(
    ctx: &Ctx,
    redis: &RedisServer,
    proxy: &DelayProxy,
) -> Result<Subject, String> {
    let config = config(&ctx.keys, &[]);
    let direct = redis_store(&redis.url(), &config).await?;
    let store = redis_store(&proxy.url("redis"), &config).await?;
    subject(Mode::Redis, config, store, direct).await
}

fn dynamo_store(endpoint: &str, table: &str, config: &Config) -> DynamoStore {
    DynamoStore::from_client(dynamo::client(endpoint, &Default::default()), table)
        .with_max_sessions(config.max_sessions_per_user)
}

async fn dynamo_subject(ctx: &Ctx, moto: &Moto, proxy: &DelayProxy) -> Result<Subject, String> {
    let config = config(&ctx.keys, &[]);
    let table = "bench_delayed";
    let direct = dynamo_store(&moto.endpoint, table, &config);
    direct
        .ensure_table()
        .await
        .map_err(|e| format!("create the table on moto: {e}"))?;
    let store = Store::Dynamodb(dynamo_store(&proxy.url("http"), table, &config));
    subject(Mode::Dynamo, config, store, Store::Dynamodb(direct)).await
}

async fn tiered_subject(
    ctx: &Ctx,
    moto: &Moto,
    moto_proxy: &DelayProxy,
    redis: &RedisServer,
    redis_proxy: &DelayProxy,
) -> Result<Subject, String> {
    let config = config(&ctx.keys, &[]);
    let table = "bench_delayed_tiered";
    let dynamo = dynamo_store(&moto.endpoint, table, &config);
    dynamo
        .ensure_table()
        .await
        .map_err(|e| format!("create the table on moto: {e}"))?;
    let direct = tiered_store(&redis.url(), dynamo, &config).await?;
    let store = tiered_store(
        &redis_proxy.url("redis"),
        dynamo_store(&moto_proxy.url("http"), table, &config),
        &config,
    )
    .await?;
    subject(Mode::Both, config, store, direct).await
}

async fn subject(
    mode: Mode,
    config: Config,
    store: Store,
    direct: Store,
) -> Result<Subject, String> {
    let prefix = format!("net_{mode:?}_pool_");
    let pool = seed(&direct, &config, &prefix, POOL, 8).await?;
    let (token, session) = new_session(CACHE_USER, Some(BROWSER_UA), &config);
    direct
        .create(&token, &session)
        .await
        .map_err(|e| format!("seed a session: {e}"))?;
    Ok(Subject {
        mode,
        state: Arc::new(State::with_store(config, store).map_err(|e| e.to_string())?),
        direct,
        pool,
        cache_token: token.expose().to_owned(),
    })
}

/// `users` users `<prefix><i>` with `per_user` sessions each (made directly), their tokens.
async fn seed_users(
    store: &Store,
    config: &Config,
    prefix: &str,
    users: usize,
    per_user: usize,
) -> Result<Vec<(String, Vec<String>)>, String> {
    let names: Vec<String> = (0..users).map(|i| format!("{prefix}{i}")).collect();
    let made = for_each(names, 8, |user| {
        let (store, config) = (store.clone(), config.clone());
        async move {
            let mut tokens = Vec::new();
            for _ in 0..per_user {
                let (token, session) = new_session(&user, Some(BROWSER_UA), &config);
                store
                    .create(&token, &session)
                    .await
                    .map_err(|e| format!("seed a session: {e}"))?;
                tokens.push(token.expose().to_owned());
            }
            Ok::<_, String>((user, tokens))
        }
    })
    .await;
    made.into_iter().collect()
}

/// The events of one batch of `op` on `subject`, every call's sessions made beforehand.
async fn events_for(
    ctx: &Ctx,
    subject: &Subject,
    op: Op,
    round: usize,
    k: usize,
) -> Result<Vec<String>, String> {
    let config = &subject.state.config;
    let prefix = format!("net_{:?}_{op:?}_{round}_", subject.mode);
    Ok(match op {
        Op::Create => (0..k)
            .map(|i| {
                fill(
                    &ctx.events.create,
                    "",
                    &ctx.keys.jwt(&format!("{prefix}{i}")),
                )
            })
            .collect(),
        Op::Validate | Op::Refresh => (0..k)
            .map(|i| {
                let template = if op == Op::Validate {
                    &ctx.events.validate
                } else {
                    &ctx.events.refresh
                };
                fill(template, &subject.pool[i % subject.pool.len()], "")
            })
            .collect(),
        Op::CachePut | Op::CacheGet => {
            let template = if op == Op::CachePut {
                &ctx.events.cache_put
            } else {
                &ctx.events.cache_get
            };
            vec![fill(template, &subject.cache_token, ""); k]
        }
        Op::Logout => seed_users(&subject.direct, config, &prefix, k, 1)
            .await?
            .iter()
            .map(|(_, tokens)| fill(&ctx.events.logout, &tokens[0], ""))
            .collect(),
        Op::LogoutAll => seed_users(&subject.direct, config, &prefix, k, 3)
            .await?
            .iter()
            .map(|(user, _)| fill(&ctx.events.logout_all_jwt, "", &ctx.keys.jwt(user)))
            .collect(),
    })
}

/// Every op on every subject, interleaved: per round, per op, call i of each mode in turn.
/// Round 0 warms up (scripts loaded, connections made, the store epoch read) and is dropped.
async fn latencies(
    ctx: &Ctx,
    subjects: &[Subject],
) -> Result<BTreeMap<(Op, Mode), Vec<Batch>>, String> {
    // moto answers in milliseconds: a few hundred calls per mode and op in all.
    let per_round = ctx.ops(300).div_ceil(ctx.rounds).max(5);
    let mut batches: BTreeMap<(Op, Mode), Vec<Batch>> = BTreeMap::new();
    for round in 0..=ctx.rounds {
        eprintln!(
            "bench: part 6: latencies, {}",
            if round == 0 {
                "warm-up".to_owned()
            } else {
                format!("round {round} of {}", ctx.rounds)
            }
        );
        let k = if round == 0 { 3 } else { per_round };
        for op in OPS {
            let mut prepared = Vec::new();
            for subject in subjects {
                let events = events_for(ctx, subject, op, round, k).await?;
                prepared.push((subject.state.clone(), events));
            }
            let done = interleaved(op.endpoint(), prepared).await;
            if round > 0 {
                for (subject, batch) in subjects.iter().zip(done) {
                    batches.entry((op, subject.mode)).or_default().push(batch);
                }
            }
        }
    }
    Ok(batches)
}

fn op_row(op: Op, batches: &BTreeMap<(Op, Mode), Vec<Batch>>, missing: Option<&str>) -> Row {
    let get = |mode| batches.get(&(op, mode)).cloned().unwrap_or_default();
    let pooled = |mode| -> Vec<f64> { get(mode).into_iter().flat_map(|b| b.micros).collect() };
    let p = |mode, q| {
        let mut all = pooled(mode);
        if all.is_empty() {
            f64::NAN
        } else {
            percentile(&mut all, q) / 1e3
        }
    };
    let mut failed = Batch::default();
    for mode in [Mode::Redis, Mode::Dynamo, Mode::Both] {
        for batch in get(mode) {
            failed.failures += batch.failures;
            failed.first_failure = failed.first_failure.or(batch.first_failure);
        }
    }
    let failure = failure_text(&failed);
    let mut parts = Vec::new();
    for mode in [Mode::Redis, Mode::Dynamo, Mode::Both] {
        let n = pooled(mode).len();
        if n > 0 {
            parts.push(format!(
                "{} **{:.2}** / {:.2} ms ({n} calls)",
                mode.name(),
                p(mode, 50.0),
                p(mode, 99.0)
            ));
        }
    }
    if let Some(why) = missing {
        parts.push(format!("DynamoDB and both: not measured ({why})"));
    }
    let measure = format!(
        "{}, delayed network: latency p50 / p99, one call at a time, through the handler",
        op.name()
    );
    if !op.compared() {
        return Row::new(
            PART6,
            measure,
            format!("{}{failure}", parts.join(" · ")),
            "—",
            if failed.failures > 0 {
                format!("info, but calls failed{failure}")
            } else {
                "info".to_owned()
            },
        );
    }
    // Both stores against the slower alone, per round (batches of a round ran back to back),
    // then the median of the rounds.
    let round_p50 = |batch: &Batch| {
        let mut micros = batch.micros.clone();
        median(&mut micros)
    };
    let mut ratios: Vec<f64> = get(Mode::Both)
        .iter()
        .zip(get(Mode::Redis).iter().zip(get(Mode::Dynamo).iter()))
        .filter(|(b, (r, d))| !b.micros.is_empty() && !r.micros.is_empty() && !d.micros.is_empty())
        .map(|(b, (r, d))| round_p50(b) / round_p50(r).max(round_p50(d)))
        .collect();
    let budget = format!("both ≤ {BOTH_BUDGET:.2}× the slower store alone (p50)");
    if let Some(why) = missing {
        return Row::new(
            PART6,
            measure,
            parts.join(" · "),
            budget,
            format!("FAILED: {why}"),
        );
    }
    if ratios.is_empty() {
        return Row::new(
            PART6,
            measure,
            parts.join(" · "),
            budget,
            "FAILED: no calls measured",
        );
    }
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let ratio = median(&mut ratios);
    let (redis, dynamo) = (p(Mode::Redis, 50.0), p(Mode::Dynamo, 50.0));
    let slower = if dynamo >= redis {
        Mode::Dynamo
    } else {
        Mode::Redis
    };
    parts.push(format!(
        "both ÷ the slower alone ({}) **{ratio:.3}×** (median of the rounds' p50 ratios, \
         {low:.2}–{high:.2})",
        slower.name()
    ));
    let verdict = if failed.failures > 0 {
        format!("MISS: calls failed{failure}")
    } else if ratio <= BOTH_BUDGET {
        "ok".to_owned()
    } else {
        format!(
            "MISS: with both stores a call takes {ratio:.2}× as long as with {} alone, about {:.2} \
             ms more (p50), where the other store alone takes {:.2} ms: the two stores' round \
             trips are not all overlapped (part 2 counts, per store, the round trips of this \
             operation with both)",
            slower.name(),
            (ratio - 1.0) * redis.max(dynamo),
            redis.min(dynamo)
        )
    };
    Row::new(
        PART6,
        measure,
        format!("{}{failure}", parts.join(" · ")),
        budget,
        verdict,
    )
}
