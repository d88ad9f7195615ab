//! Part 1: validate, create and refresh through the real handler, in-process, against a local
//! redis-server, beside the same operations as bare store calls and beside `redis-benchmark`
//! (GET for validate, SET for create and refresh) on the same server in the same run.

use crate::dynamo;
use crate::load::{Outcome, Run, closed_loop, median};
use crate::procs::{Moto, RedisServer, run_captured};
use crate::report::{Row, thousands};
use crate::setup::{
    BROWSER_UA, config, fill, new_session, own_cpu, redis_conn, redis_store, request, seed,
    server_cpu, tiered_store,
};
use crate::{Ctx, PART1};
use lambda_http::Request;
use shared::metrics::Invocation;
use shared::session::{Session, now_unix};
use shared::store::{DynamoStore, MemoryStore};
use shared::token::UserKey;
use shared::{Endpoint, SessionToken, State, Store, handle};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub const CONCURRENCY: [usize; 3] = [1, 16, 64];
/// Sessions that validate and refresh cycle through, one user each.
const SESSIONS: usize = 1_000;
/// Sessions that validate cycles through over Redis in front of DynamoDB.
const TIERED_SESSIONS: usize = 300;
/// Users that create sessions, each with a JWT of its own; their hashes are emptied before each
/// create run, so a user holds at most ops / CREATE_USERS sessions (the create script reads them).
const CREATE_USERS: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Validate,
    Refresh,
    Create,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Validate => "validate",
            Op::Refresh => "refresh",
            Op::Create => "create",
        }
    }

    fn endpoint(self) -> Endpoint {
        match self {
            Op::Validate => Endpoint::SessionValidate,
            Op::Refresh => Endpoint::SessionRefresh,
            Op::Create => Endpoint::SessionCreate,
        }
    }

    /// The closest `redis-benchmark` test.
    fn raw(self) -> &'static str {
        match self {
            Op::Validate => "get",
            Op::Refresh | Op::Create => "set",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Variant {
    Raw,
    Store,
    Handler,
    /// The handler over Redis in front of DynamoDB (validate only).
    Tiered,
}

struct Bench {
    redis: RedisServer,
    conn: redis::aio::MultiplexedConnection,
    store: Store,
    state: Arc<State>,
    validate_events: Arc<Vec<String>>,
    refresh_events: Arc<Vec<String>>,
    create_events: Arc<Vec<String>>,
    tokens: Arc<Vec<SessionToken>>,
    create_users: Vec<String>,
    record_len: usize,
    /// Redis in front of DynamoDB (moto), and validate events of its own sessions.
    tiered: Option<(Arc<State>, Arc<Vec<String>>)>,
    redis_benchmark: std::path::PathBuf,
    log: std::path::PathBuf,
}

pub async fn run(ctx: &Ctx, moto: Result<&Moto, &String>) -> Vec<Row> {
    match measure(ctx, moto).await {
        Ok(rows) => rows,
        Err(why) => vec![Row::failed(PART1, "handler vs raw Redis", &why)],
    }
}

async fn measure(ctx: &Ctx, moto: Result<&Moto, &String>) -> Result<Vec<Row>, String> {
    let redis = RedisServer::start(&ctx.tools.redis_server, &ctx.scratch.0, "redis-throughput")?;
    let config = config(&ctx.keys, &[]);
    let store = redis_store(&redis.url(), &config).await?;
    let state =
        Arc::new(State::with_store(config.clone(), store.clone()).map_err(|e| e.to_string())?);
    let mut conn = redis_conn(&redis.url()).await?;

    eprintln!("bench: part 1: seeding {SESSIONS} sessions, signing {CREATE_USERS} JWTs");
    let tokens = seed(&store, &config, "bench_user_", SESSIONS, 64).await?;
    let validate_events: Vec<String> = tokens
        .iter()
        .map(|t| fill(&ctx.events.validate, t, ""))
        .collect();
    let refresh_events: Vec<String> = tokens
        .iter()
        .map(|t| fill(&ctx.events.refresh, t, ""))
        .collect();
    let tokens: Vec<SessionToken> = tokens
        .iter()
        .map(|t| SessionToken::parse(t).expect("minted tokens parse"))
        .collect();
    let create_users: Vec<String> = (0..CREATE_USERS)
        .map(|i| format!("bench_create_{i}"))
        .collect();
    let create_events: Vec<String> = create_users
        .iter()
        .map(|u| fill(&ctx.events.create, "", &ctx.keys.jwt(u)))
        .collect();
    // The size of one stored record, for redis-benchmark's value size (-d).
    let first = &tokens[0];
    let record_len: usize = redis::cmd("HSTRLEN")
        .arg(format!("sess:{{{}}}", first.user_key().as_str()))
        .arg(first.hash().as_bytes().as_slice())
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("HSTRLEN: {e}"))?;

    let tiered = match moto {
        Ok(moto) => {
            eprintln!(
                "bench: part 1: seeding {TIERED_SESSIONS} sessions in Redis in front of DynamoDB (moto)"
            );
            let dynamo = DynamoStore::from_client(
                dynamo::client(&moto.endpoint, &dynamo::Counter::default()),
                "bench_throughput",
            );
            dynamo
                .ensure_table()
                .await
                .map_err(|e| format!("create the table on moto: {e}"))?;
            let store = tiered_store(&redis.url(), dynamo, &config).await?;
            let tokens = seed(&store, &config, "bench_tiered_", TIERED_SESSIONS, 16).await?;
            let events: Vec<String> = tokens
                .iter()
                .map(|t| fill(&ctx.events.validate, t, ""))
                .collect();
            let state = State::with_store(config.clone(), store).map_err(|e| e.to_string())?;
            Some((Arc::new(state), Arc::new(events)))
        }
        Err(_) => None,
    };

    let bench = Bench {
        tiered,
        redis,
        conn,
        store,
        state,
        validate_events: Arc::new(validate_events),
        refresh_events: Arc::new(refresh_events),
        create_events: Arc::new(create_events),
        tokens: Arc::new(tokens),
        create_users,
        record_len,
        redis_benchmark: ctx.tools.redis_benchmark.clone(),
        log: ctx.scratch.file("redis-benchmark.log"),
    };

    // Warm-up: connections, the three scripts loaded, allocator and caches settled.
    for op in [Op::Validate, Op::Refresh, Op::Create] {
        bench.clear_create_users().await?;
        bench.run(op, Variant::Handler, 16, 1_000).await?;
    }
    let ops = |op: Op| match op {
        Op::Validate | Op::Refresh => ctx.ops(20_000),
        Op::Create => ctx.ops(6_000),
    };

    let mut runs: BTreeMap<(Op, usize, Variant), Vec<Run>> = BTreeMap::new();
    for round in 1..=ctx.rounds {
        eprintln!("bench: part 1: round {round} of {}", ctx.rounds);
        for op in [Op::Validate, Op::Refresh, Op::Create] {
            for c in CONCURRENCY {
                for variant in [
                    Variant::Raw,
                    Variant::Store,
                    Variant::Handler,
                    Variant::Tiered,
                ] {
                    if variant == Variant::Tiered && (op != Op::Validate || bench.tiered.is_none())
                    {
                        continue;
                    }
                    if op == Op::Create {
                        bench.clear_create_users().await?;
                    }
                    let run = bench.run(op, variant, c, ops(op)).await?;
                    runs.entry((op, c, variant)).or_default().push(run);
                }
            }
        }
    }

    eprintln!("bench: part 1: the handler's own cost");
    let costs = handler_costs(ctx).await?;
    let mut rows = Vec::new();
    for op in [Op::Validate, Op::Refresh, Op::Create] {
        for c in CONCURRENCY {
            rows.push(row(op, c, &runs, bench.record_len, &costs));
        }
    }
    for c in CONCURRENCY {
        rows.push(match moto {
            Ok(_) => tiered_row(c, &runs),
            Err(why) => Row::failed(
                PART1,
                &format!("validate, Redis in front of DynamoDB, concurrency {c}"),
                &format!("no moto server: {why}"),
            ),
        });
    }
    rows.push(Row::new(
        PART1,
        "the handler's own cost: the same calls in-process over the memory store, one at a time",
        format!(
            "validate **{:.1} µs** per call = JSON log line {:.1} + EMF line {:.1} + the rest {:.1} \
             (token parsing and hashing, lookup, JSON answer, CORS); refresh {:.1} µs; create {:.1} µs \
             (verifying one RS256 JWT, measured on its own: {:.1} µs, jsonwebtoken on its aws_lc_rs backend). \
             Not in any figure above: deserializing the API Gateway event, the Lambda runtime's work, \
             {:.1} µs",
            costs.validate,
            costs.validate - costs.validate_quiet,
            costs.emf,
            costs.validate_quiet - costs.emf,
            costs.refresh,
            costs.create,
            costs.jwt,
            costs.parse
        ),
        format!("validate ≤ {OWN_VALIDATE_US:.0} µs, create ≤ {OWN_CREATE_US:.0} µs"),
        own_cost_verdict(&costs),
    ));
    drop(bench);
    Ok(rows)
}

/// validate with both stores, against raw GET: the epoch check may cost a little.
const TIERED_BUDGET: f64 = 0.75;
/// The handler's own work per call, in-process over the memory store.
const OWN_VALIDATE_US: f64 = 3.0;
const OWN_CREATE_US: f64 = 60.0;

fn own_cost_verdict(costs: &Costs) -> String {
    let mut misses = Vec::new();
    if costs.validate > OWN_VALIDATE_US {
        misses.push(format!(
            "validate {:.1} µs, of which the JSON log line (tracing-subscriber's formatter) {:.1}; \
             part 7 counts the instructions, free of the machine's load",
            costs.validate,
            costs.validate - costs.validate_quiet
        ));
    }
    if costs.create > OWN_CREATE_US {
        misses.push(format!(
            "create {:.1} µs, of which the RS256 verification {:.1}",
            costs.create, costs.jwt
        ));
    }
    if misses.is_empty() {
        "ok".to_owned()
    } else {
        format!("MISS: {}", misses.join("; "))
    }
}

impl Bench {
    async fn clear_create_users(&self) -> Result<(), String> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for user in &self.create_users {
            pipe.cmd("UNLINK")
                .arg(format!("sess:{{{}}}", UserKey::for_user(user).as_str()))
                .ignore();
        }
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| format!("UNLINK: {e}"))
    }

    async fn run(&self, op: Op, variant: Variant, c: usize, n: usize) -> Result<Run, String> {
        let mut conn = self.conn.clone();
        // What the Lambda runtime hands the handler, made before the clock starts.
        let prepared = match variant {
            Variant::Handler | Variant::Tiered => {
                let (state, events) = match (variant, op) {
                    (Variant::Tiered, _) => {
                        self.tiered.clone().expect("tiered runs only with moto")
                    }
                    (_, Op::Validate) => (self.state.clone(), self.validate_events.clone()),
                    (_, Op::Refresh) => (self.state.clone(), self.refresh_events.clone()),
                    (_, Op::Create) => (self.state.clone(), self.create_events.clone()),
                };
                Some((state, Requests::new(&events, n)))
            }
            Variant::Raw | Variant::Store => None,
        };
        let server_before = server_cpu(&mut conn).await?;
        let (self_before, children_before) = own_cpu();
        let (seconds, failures, first_failure) = match (variant, prepared) {
            (Variant::Raw, _) => {
                let mut command = Command::new(&self.redis_benchmark);
                command
                    .args(["-h", "127.0.0.1", "-p", &self.redis.port.to_string()])
                    .args(["-c", &c.to_string(), "-n", &n.to_string()])
                    .args(["-d", &self.record_len.to_string(), "-t", op.raw(), "--csv"]);
                let log = self.log.clone();
                let out = tokio::task::spawn_blocking(move || {
                    run_captured(command, &log, Duration::from_secs(300))
                })
                .await
                .expect("redis-benchmark thread")
                .map_err(|e| format!("redis-benchmark: {e}"))?;
                let rps = parse_csv_rps(&out)
                    .ok_or_else(|| format!("redis-benchmark said nothing usable:\n{out}"))?;
                (n as f64 / rps, 0, None)
            }
            (Variant::Store, _) => self.store_calls(op, c, n).await,
            (_, Some((state, requests))) => {
                let endpoint = op.endpoint();
                closed_loop(c, n, move |i| {
                    let (state, req) = (state.clone(), requests.take(i));
                    async move { answered_ok(handle(&state, endpoint, req).await) }
                })
                .await
            }
            (_, None) => unreachable!("handler runs are prepared"),
        };
        let (self_after, children_after) = own_cpu();
        let server_after = server_cpu(&mut conn).await?;
        Ok(Run {
            ops: n,
            seconds,
            failures,
            first_failure,
            client_cpu: if variant == Variant::Raw {
                children_after - children_before
            } else {
                self_after - self_before
            },
            server_cpu: server_after - server_before,
        })
    }

    /// The store call alone, arguments made beforehand.
    async fn store_calls(&self, op: Op, c: usize, n: usize) -> Outcome {
        let store = self.store.clone();
        match op {
            Op::Validate | Op::Refresh => {
                let tokens = self.tokens.clone();
                closed_loop(c, n, move |i| {
                    let (store, tokens) = (store.clone(), tokens.clone());
                    async move {
                        let token = &tokens[i % tokens.len()];
                        let found = if op == Op::Validate {
                            store.get(token, now_unix()).await
                        } else {
                            store.refresh(token, now_unix()).await
                        };
                        match found {
                            Ok(Some(_)) => Ok(()),
                            Ok(None) => Err("the store found no session".to_owned()),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                })
                .await
            }
            Op::Create => {
                let config = self.state.config.clone();
                let made: Arc<Vec<(SessionToken, Session)>> = Arc::new(
                    (0..n)
                        .map(|i| {
                            let user = &self.create_users[i % self.create_users.len()];
                            new_session(user, Some(BROWSER_UA), &config)
                        })
                        .collect(),
                );
                closed_loop(c, n, move |i| {
                    let (store, made) = (store.clone(), made.clone());
                    async move {
                        let (token, session) = &made[i];
                        store
                            .create(token, session)
                            .await
                            .map_err(|e| e.to_string())
                    }
                })
                .await
            }
        }
    }
}

/// Ok for a 200; otherwise the status and the body.
fn answered_ok(response: lambda_http::Response<lambda_http::Body>) -> Result<(), String> {
    if response.status() == 200 {
        return Ok(());
    }
    let body = match response.body() {
        lambda_http::Body::Text(text) => text.clone(),
        _ => String::new(),
    };
    Err(format!("{} {body}", response.status().as_u16()))
}

/// `n` requests deserialized from the events (cycled), each taken once by the load loop.
#[derive(Clone)]
struct Requests(Arc<Vec<Mutex<Option<Request>>>>);

impl Requests {
    fn new(events: &[String], n: usize) -> Requests {
        Requests(Arc::new(
            (0..n)
                .map(|i| Mutex::new(Some(request(&events[i % events.len()]))))
                .collect(),
        ))
    }

    fn take(&self, i: usize) -> Request {
        self.0[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .expect("each request is taken once")
    }
}

fn row(
    op: Op,
    c: usize,
    runs: &BTreeMap<(Op, usize, Variant), Vec<Run>>,
    record_len: usize,
    costs: &Costs,
) -> Row {
    let get = |variant| runs.get(&(op, c, variant)).cloned().unwrap_or_default();
    let rate = |variant| {
        let mut rates: Vec<f64> = get(variant).iter().map(Run::ops_per_sec).collect();
        median(&mut rates)
    };
    // CPU per operation over every round.
    let cpu = |variant, server: bool| {
        let all = get(variant);
        let ops: usize = all.iter().map(|r| r.ops).sum();
        let secs: f64 = all
            .iter()
            .map(|r| if server { r.server_cpu } else { r.client_cpu })
            .sum();
        secs * 1e6 / ops as f64
    };
    let failed: Vec<Run> = [Variant::Store, Variant::Handler]
        .into_iter()
        .flat_map(get)
        .collect();
    let failures: usize = failed.iter().map(|r| r.failures).sum();
    let failure = failure_text(&failed);
    let (raw, store, handler) = (
        rate(Variant::Raw),
        rate(Variant::Store),
        rate(Variant::Handler),
    );
    // The ratio of each round (handler and raw measured back to back), then their median: the
    // machine's state drifts between rounds far more than within one.
    let (ratio, low, high) = round_ratios(&get(Variant::Handler), &get(Variant::Raw));
    let (store_ratio, _, _) = round_ratios(&get(Variant::Store), &get(Variant::Raw));
    let cmd = op.raw().to_ascii_uppercase();
    let result = format!(
        "handler {} · store call {} · redis-benchmark {cmd} {} ops/s → **{ratio:.2}×** raw (rounds \
         {low:.2}–{high:.2}; store call {store_ratio:.2}×); CPU µs/op: bench {:.0} (store call {:.0}) \
         vs redis-benchmark {:.0}; redis-server {:.1} vs {:.1}{}",
        thousands(handler),
        thousands(store),
        thousands(raw),
        cpu(Variant::Handler, false),
        cpu(Variant::Store, false),
        cpu(Variant::Raw, false),
        cpu(Variant::Handler, true),
        cpu(Variant::Raw, true),
        failure
    );
    let measure = format!(
        "{}, concurrency {c} (-c {c}, `-t {} -d {record_len}`)",
        op.name(),
        op.raw()
    );
    let (budget, verdict) = if op == Op::Validate {
        let verdict = if failures > 0 {
            format!("MISS: calls failed{failure}")
        } else if ratio >= 0.8 && low >= 0.8 {
            "ok".to_owned()
        } else if ratio >= 0.8 {
            format!(
                "ok on the median, but round(s) down to {low:.2}×: the machine's noise at this concurrency"
            )
        } else {
            format!(
                "MISS{}: {}",
                if high >= 0.8 {
                    format!(" on the median (rounds up to {high:.2}×)")
                } else {
                    String::new()
                },
                miss_reason(c, raw, store, handler, &|v, s| cpu(v, s), costs)
            )
        };
        ("≥ 0.80× raw".to_owned(), verdict)
    } else {
        (
            "— (SET is a lower bound: the op is a script)".to_owned(),
            if failures > 0 {
                format!("info, but calls failed{failure}")
            } else {
                "info".to_owned()
            },
        )
    };
    Row::new(PART1, measure, result, budget, verdict)
}

/// "; 2 of 30,000 calls failed (first: 503 …)", or nothing.
fn failure_text(runs: &[Run]) -> String {
    let failures: usize = runs.iter().map(|r| r.failures).sum();
    if failures == 0 {
        return String::new();
    }
    let ops: usize = runs.iter().map(|r| r.ops).sum();
    let first = runs
        .iter()
        .find_map(|r| r.first_failure.clone())
        .unwrap_or_default();
    format!(
        "; {failures} of {} calls failed (the first: {})",
        thousands(ops as f64),
        first.chars().take(200).collect::<String>()
    )
}

/// Median, lowest and highest of `a[i] / b[i]` (ops/s of the same round).
fn round_ratios(a: &[Run], b: &[Run]) -> (f64, f64, f64) {
    let mut ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(a, b)| a.ops_per_sec() / b.ops_per_sec())
        .collect();
    if ratios.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(&mut ratios), low, high)
}

fn tiered_row(c: usize, runs: &BTreeMap<(Op, usize, Variant), Vec<Run>>) -> Row {
    let get = |variant| {
        runs.get(&(Op::Validate, c, variant))
            .cloned()
            .unwrap_or_default()
    };
    let rate = |variant| {
        let mut rates: Vec<f64> = get(variant).iter().map(Run::ops_per_sec).collect();
        median(&mut rates)
    };
    let cpu = |variant| {
        let all = get(variant);
        let ops: usize = all.iter().map(|r| r.ops).sum();
        all.iter().map(|r| r.client_cpu).sum::<f64>() * 1e6 / ops as f64
    };
    let failures: usize = get(Variant::Tiered).iter().map(|r| r.failures).sum();
    let failure = failure_text(&get(Variant::Tiered));
    let (raw, tiered) = (rate(Variant::Raw), rate(Variant::Tiered));
    let (ratio, low, high) = round_ratios(&get(Variant::Tiered), &get(Variant::Raw));
    let (plain_ratio, _, _) = round_ratios(&get(Variant::Handler), &get(Variant::Raw));
    let (vs_plain, _, _) = round_ratios(&get(Variant::Tiered), &get(Variant::Handler));
    let result = format!(
        "handler {} ops/s → **{ratio:.2}×** raw GET ({}; rounds {low:.2}–{high:.2}), {:.2}× the \
         handler over Redis alone; CPU µs/op: bench {:.0}{}",
        thousands(tiered),
        thousands(raw),
        vs_plain,
        cpu(Variant::Tiered),
        failure
    );
    let verdict = if failures > 0 {
        format!("MISS: calls failed{failure}")
    } else if ratio >= TIERED_BUDGET && low >= TIERED_BUDGET {
        "ok".to_owned()
    } else if ratio >= TIERED_BUDGET {
        format!(
            "ok on the median, but round(s) down to {low:.2}×: the machine's noise at this concurrency"
        )
    } else {
        format!(
            "MISS: for the reason given for Redis alone ({plain_ratio:.2}× there); the store epoch \
             check (a tokio mutex per read, a DynamoDB GetItem at most every \
             EPOCH_CHECK_INTERVAL_MS) {}",
            if vs_plain >= 0.97 {
                "costs nothing measurable".to_owned()
            } else {
                format!(
                    "costs {:.0}% of throughput (median of the rounds' ratios)",
                    (1.0 - vs_plain) * 100.0
                )
            }
        )
    };
    Row::new(
        PART1,
        format!("validate, Redis in front of DynamoDB (moto), concurrency {c}"),
        result,
        format!("≥ {TIERED_BUDGET:.2}× raw"),
        verdict,
    )
}

fn miss_reason(
    c: usize,
    raw: f64,
    store: f64,
    handler: f64,
    cpu: &dyn Fn(Variant, bool) -> f64,
    costs: &Costs,
) -> String {
    let us = |rate: f64| 1e6 / rate;
    let alone = format!(
        "alone, in a tight loop, the handler costs {:.0} µs per validate (JSON log line {:.0}, EMF \
         line {:.0}, token parsing and hashing, JSON answer and CORS {:.0})",
        costs.validate,
        costs.validate - costs.validate_quiet,
        costs.emf,
        costs.validate_quiet - costs.emf
    );
    let extra_cpu = cpu(Variant::Handler, false) - cpu(Variant::Store, false);
    if c == 1 {
        format!(
            "against a loopback round trip this short the handler's own work weighs: a call takes \
             {:.0} µs, a raw GET {:.0} µs and the bare store call {:.0} µs, so the handler adds {:.0} \
             µs per call ({extra_cpu:.0} µs of CPU); {alone}",
            us(handler),
            us(raw),
            us(store),
            us(handler) - us(store)
        )
    } else {
        format!(
            "CPU-bound (the bench and redis-server share the 2 cores): the bench spends {:.0} µs of \
             CPU per call, {:.0} of them in the store call (redis-rs pipelines concurrent calls on \
             its one connection) and {extra_cpu:.0} in the handler, where redis-benchmark spends \
             {:.0} µs per GET; {alone}",
            cpu(Variant::Handler, false),
            cpu(Variant::Store, false),
            cpu(Variant::Raw, false)
        )
    }
}

/// requests per second from `redis-benchmark --csv` (a header line, then one line per test).
fn parse_csv_rps(out: &str) -> Option<f64> {
    out.lines()
        .filter(|l| !l.starts_with("\"test\""))
        .find_map(|l| l.split(',').nth(1)?.trim_matches('"').parse().ok())
}

/// What the handler itself costs per call, in-process over the memory store, one call at a time
/// on a current-thread runtime (CPU-bound, so wall time is CPU time), in µs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Costs {
    validate: f64,
    /// validate with no log subscriber: the difference is the JSON log line.
    validate_quiet: f64,
    /// Building and printing one EMF line.
    emf: f64,
    /// Deserializing one API Gateway event into a Request (the runtime's work).
    parse: f64,
    refresh: f64,
    create: f64,
    /// Verifying one RS256 JWT with jsonwebtoken (its aws_lc_rs backend), as create does.
    jwt: f64,
}

async fn handler_costs(ctx: &Ctx) -> Result<Costs, String> {
    let config = config(&ctx.keys, &[]);
    let store = Store::Memory(MemoryStore::new().with_max_sessions(config.max_sessions_per_user));
    let state =
        Arc::new(State::with_store(config.clone(), store.clone()).map_err(|e| e.to_string())?);
    let tokens = seed(&store, &config, "alone_", 1_000, 1).await?;
    let validate: Vec<String> = tokens
        .iter()
        .map(|t| fill(&ctx.events.validate, t, ""))
        .collect();
    let refresh: Vec<String> = tokens
        .iter()
        .map(|t| fill(&ctx.events.refresh, t, ""))
        .collect();
    let create: Vec<String> = (0..100)
        .map(|i| {
            fill(
                &ctx.events.create,
                "",
                &ctx.keys.jwt(&format!("alone_create_{i}")),
            )
        })
        .collect();
    let (n, n_create) = (ctx.ops(20_000), ctx.ops(3_000));
    let jwt = ctx.keys.jwt("alone_jwt");
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(ctx.keys.public_pem.as_bytes())
        .map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let time = |endpoint: Endpoint, events: &[String], n: usize| -> Result<f64, String> {
            let requests = Requests::new(events, n);
            let started = Instant::now();
            let failures = rt.block_on(async {
                let mut failures = 0;
                for i in 0..n {
                    if handle(&state, endpoint, requests.take(i)).await.status() != 200 {
                        failures += 1;
                    }
                }
                failures
            });
            if failures > 0 {
                return Err(format!(
                    "{failures} memory-store calls of {endpoint:?} failed"
                ));
            }
            Ok(started.elapsed().as_secs_f64() * 1e6 / n as f64)
        };
        let per_call = |n: usize, mut f: Box<dyn FnMut(usize) + '_>| {
            let started = Instant::now();
            for i in 0..n {
                f(i);
            }
            started.elapsed().as_secs_f64() * 1e6 / n as f64
        };
        let invocation = Invocation {
            operation: "session-validate",
            outcome: "ok",
            status: 200,
            store: "redis",
            store_latency: Duration::from_micros(30),
            latency: Duration::from_micros(50),
            fallback: false,
        };
        Ok(Costs {
            validate: time(Endpoint::SessionValidate, &validate, n)?,
            validate_quiet: tracing::subscriber::with_default(
                tracing::subscriber::NoSubscriber::default(),
                || time(Endpoint::SessionValidate, &validate, n),
            )?,
            emf: per_call(
                n,
                Box::new(|_| println!("{}", invocation.emf(chrono::Utc::now().timestamp_millis()))),
            ),
            parse: per_call(
                n,
                Box::new(|i| drop(std::hint::black_box(request(&validate[i % validate.len()])))),
            ),
            refresh: time(Endpoint::SessionRefresh, &refresh, n)?,
            create: time(Endpoint::SessionCreate, &create, n_create)?,
            jwt: per_call(
                n_create,
                Box::new(|_| {
                    let validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
                    let claims = jsonwebtoken::decode::<serde_json::Value>(&jwt, &key, &validation);
                    assert!(claims.is_ok(), "the bench's own JWT verifies");
                }),
            ),
        })
    })
    .await
    .map_err(|e| e.to_string())?
}
