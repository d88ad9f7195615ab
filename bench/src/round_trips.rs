//! Part 2: round trips per operation, through the real handler, one call at a time, for each
//! store the service can run on: Redis, DynamoDB, and Redis in front of DynamoDB (what `auto`
//! picks when both are configured).
//!
//! Redis: a counting proxy sits between the store and redis-server and counts what the client
//! puts on the wire (commands, and flights: the client speaking again after an answer, i.e. round
//! trips); `INFO commandstats` deltas say what the server executed (a script's inner commands
//! included). DynamoDB: an SDK interceptor counts every HTTP request (retries included) against
//! moto.

use crate::dynamo::{self, Counter};
use crate::procs::{Moto, RedisServer};
use crate::proxy::Proxy;
use crate::report::Row;
use crate::setup::{
    BROWSER_UA, command_calls, config, fill, new_session, redis_conn, redis_store, request,
    tiered_store,
};
use crate::{Ctx, PART2};
use shared::store::DynamoStore;
use shared::{Endpoint, State, Store, handle};
use std::collections::BTreeMap;

/// One case: an operation, and the sessions each call's user holds beforehand.
#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    endpoint: Endpoint,
    /// Sessions of the caller's user before the call; `usize::MAX`: as many as the cap allows.
    sessions: usize,
    /// Calls with the Clerk JWT instead of the session token.
    jwt: bool,
}

const AT_CAP: usize = usize::MAX;

const CASES: [Case; 7] = [
    Case {
        name: "validate",
        endpoint: Endpoint::SessionValidate,
        sessions: 1,
        jwt: false,
    },
    Case {
        name: "create",
        endpoint: Endpoint::SessionCreate,
        sessions: 0,
        jwt: true,
    },
    Case {
        name: "refresh",
        endpoint: Endpoint::SessionRefresh,
        sessions: 1,
        jwt: false,
    },
    Case {
        name: "logout",
        endpoint: Endpoint::SessionLogout,
        sessions: 1,
        jwt: false,
    },
    Case {
        name: "logout-all, 3 sessions, Clerk JWT",
        endpoint: Endpoint::SessionLogoutAll,
        sessions: 3,
        jwt: true,
    },
    Case {
        name: "logout-all, sessions at the cap (MAX_SESSIONS_PER_USER), Clerk JWT",
        endpoint: Endpoint::SessionLogoutAll,
        sessions: AT_CAP,
        jwt: true,
    },
    Case {
        name: "logout-all, 3 sessions, session token",
        endpoint: Endpoint::SessionLogoutAll,
        sessions: 3,
        jwt: false,
    },
];

/// Per call: Redis round trips and DynamoDB requests, and what they were.
#[derive(Debug, Clone, Default)]
struct Count {
    redis_trips: f64,
    redis_sent: BTreeMap<String, f64>,
    redis_executed: BTreeMap<String, f64>,
    dynamo_requests: f64,
    dynamo_sent: BTreeMap<String, f64>,
}

/// A state over one store, and what counts its traffic.
struct Subject {
    state: State,
    proxy: Option<Proxy>,
    /// A direct connection to the server behind the proxy, for INFO.
    conn: Option<redis::aio::MultiplexedConnection>,
    counter: Option<Counter>,
    /// Calls per case: moto is slow.
    calls: usize,
}

pub async fn run(ctx: &Ctx, moto: Result<&Moto, &String>) -> Vec<Row> {
    let server =
        match RedisServer::start(&ctx.tools.redis_server, &ctx.scratch.0, "redis-round-trips") {
            Ok(server) => server,
            Err(why) => return vec![Row::failed(PART2, "round trips per operation", &why)],
        };
    let mut rows = Vec::new();
    let mut redis = match redis_subject(ctx, &server, None).await {
        Ok(subject) => subject,
        Err(why) => {
            return vec![Row::failed(
                PART2,
                "round trips per operation (Redis)",
                &why,
            )];
        }
    };
    match cold_script_call(ctx, &mut redis).await {
        Ok(cold) => rows.push(Row::new(
            PART2,
            "Redis, the first script call after a server start (or failover): create, before any warm-up",
            format!(
                "{} round trips ({}); every later call of that script: 1",
                trim(cold.redis_trips),
                names(&cold.redis_sent)
            ),
            "—",
            "info: redis-rs sends EVALSHA, gets NOSCRIPT, loads the script and sends EVALSHA \
             again; every figure below is measured after one warm-up call of each script",
        )),
        Err(why) => rows.push(Row::failed(PART2, "first script call", &why)),
    }
    let redis_counts = count_cases(ctx, &mut redis, "rt_r").await;
    let (dynamo_counts, tiered_counts) = match moto {
        Ok(moto) => {
            let dynamo = match dynamo_subject(ctx, moto).await {
                Ok(mut subject) => count_cases(ctx, &mut subject, "rt_d").await,
                Err(why) => Err(why),
            };
            let tiered = match redis_subject(ctx, &server, Some(moto)).await {
                Ok(mut subject) => count_cases(ctx, &mut subject, "rt_t").await,
                Err(why) => Err(why),
            };
            (dynamo, tiered)
        }
        Err(why) => (
            Err(format!("no moto server: {why}")),
            Err(format!("no moto server: {why}")),
        ),
    };
    let cap = config(&ctx.keys, &[]).max_sessions_per_user;
    for (i, case) in CASES.iter().enumerate() {
        rows.push(case_row(
            case,
            cap,
            redis_counts.as_ref().map(|c| &c[i]),
            dynamo_counts.as_ref().map(|c| &c[i]),
            tiered_counts.as_ref().map(|c| &c[i]),
        ));
    }
    rows
}

fn case_row(
    case: &Case,
    cap: usize,
    redis: Result<&Count, &String>,
    dynamo: Result<&Count, &String>,
    tiered: Result<&Count, &String>,
) -> Row {
    let sessions = if case.sessions == AT_CAP {
        cap
    } else {
        case.sessions
    };
    let logout_all = case.endpoint == Endpoint::SessionLogoutAll;
    let token_get = usize::from(logout_all && !case.jwt);
    let batches = sessions.div_ceil(25);
    // What each store should take.
    let (redis_want, dynamo_want) = if logout_all {
        ((1 + token_get) as f64, (token_get + 1 + batches) as f64)
    } else {
        (1.0, 1.0)
    };
    let budget = if logout_all {
        format!(
            "bounded: Redis {}; DynamoDB {}1 Query page (per MB of items) + ⌈n/25⌉ BatchWriteItem, \
             n ≤ MAX_SESSIONS_PER_USER = {cap}: here {} (at most {}){}; with both stores the \
             two, one after the other (Redis's marker follows the record: docs/both-stores.md)",
            1 + token_get,
            if token_get == 1 { "1 GetItem + " } else { "" },
            token_get + 1 + batches,
            token_get + 1 + cap.div_ceil(25),
            if token_get == 1 {
                " (the session token is looked up first)"
            } else {
                ""
            },
        )
    } else {
        "1".to_owned()
    };

    let mut parts = Vec::new();
    let mut misses = Vec::new();
    let mut failures = Vec::new();
    match redis {
        Ok(c) => {
            parts.push(format!(
                "Redis: {} ({}; executed: {})",
                trips(c.redis_trips, "round trip"),
                names(&c.redis_sent),
                names(&c.redis_executed)
            ));
            if c.redis_trips != redis_want {
                misses.push(format!(
                    "Redis takes {} round trips, not {redis_want}",
                    trim(c.redis_trips)
                ));
            }
        }
        Err(why) => failures.push(format!("Redis: {why}")),
    }
    match dynamo {
        Ok(c) => {
            parts.push(format!(
                "DynamoDB: {} ({})",
                trips(c.dynamo_requests, "request"),
                names(&c.dynamo_sent)
            ));
            if c.dynamo_requests != dynamo_want {
                misses.push(format!(
                    "DynamoDB takes {} requests, not {dynamo_want}{}",
                    trim(c.dynamo_requests),
                    dynamo_reason(case, c)
                ));
            }
        }
        Err(why) => failures.push(format!("DynamoDB: {why}")),
    }
    match tiered {
        Ok(c) => {
            let total = c.redis_trips + c.dynamo_requests;
            // What a caller waits for: create and refresh send to both stores together
            // (docs/both-stores.md, "What overlaps"); create's PutItem and Query go together
            // too; logout and logout-all go to DynamoDB, then to Redis.
            let dynamo_waits = if case.endpoint == Endpoint::SessionCreate {
                c.dynamo_requests.min(1.0)
            } else {
                c.dynamo_requests
            };
            let waited = match case.endpoint {
                Endpoint::SessionLogout
                | Endpoint::SessionLogoutAll
                | Endpoint::SessionValidate => total,
                _ => c.redis_trips.max(dynamo_waits),
            };
            parts.push(format!(
                "Redis in front of DynamoDB: {} = {} Redis ({}) + {} DynamoDB ({}), {} of waiting{}",
                trips(total, "request"),
                trim(c.redis_trips),
                names(&c.redis_sent),
                trim(c.dynamo_requests),
                names(&c.dynamo_sent),
                trips(waited, "round trip"),
                if case.endpoint == Endpoint::SessionValidate {
                    ", plus one GetItem of the store epoch per EPOCH_CHECK_INTERVAL_MS per container"
                } else {
                    ""
                }
            ));
            let want = if logout_all {
                redis_want + dynamo_want
            } else {
                1.0
            };
            if waited > want + 0.2 {
                misses.push(format!(
                    "Redis in front of DynamoDB waits {} round trips, not {}{}",
                    trim(waited),
                    trim(want),
                    tiered_reason(case)
                ));
            }
        }
        Err(why) => failures.push(format!("Redis in front of DynamoDB: {why}")),
    }
    let verdict = if !failures.is_empty() {
        format!(
            "FAILED: {}",
            failures
                .iter()
                .map(|f| f.lines().next().unwrap_or(f))
                .collect::<Vec<_>>()
                .join("; ")
        )
    } else if misses.is_empty() {
        "ok".to_owned()
    } else {
        format!("MISS: {}", misses.join("; "))
    };
    let name = if case.sessions == AT_CAP {
        format!("logout-all, {cap} sessions (the cap), Clerk JWT")
    } else {
        case.name.to_owned()
    };
    Row::new(PART2, name, parts.join(" · "), budget, verdict)
}

fn dynamo_reason(case: &Case, c: &Count) -> String {
    if case.endpoint == Endpoint::SessionCreate && c.dynamo_sent.contains_key("Query") {
        " (beside the PutItem, a strongly consistent Query of the user's sessions checks \
         MAX_SESSIONS_PER_USER; the two are sent together, so the wait is one round trip)"
            .into()
    } else {
        String::new()
    }
}

fn tiered_reason(case: &Case) -> &'static str {
    match case.endpoint {
        Endpoint::SessionCreate => {
            " (past the cap, a second Redis call tombstones what the record evicted)"
        }
        Endpoint::SessionLogout => {
            " (DeleteItem on DynamoDB first, then the Redis tombstone: a tombstone sent before \
             the record confirmed the token would be a write by whoever holds a forged one; \
             docs/both-stores.md, \"What overlaps\")"
        }
        Endpoint::SessionValidate => {
            " (the store epoch is reread from DynamoDB at most every EPOCH_CHECK_INTERVAL_MS)"
        }
        _ => " (DynamoDB first, then Redis)",
    }
}

/// A Redis store (or, with `moto`, Redis in front of DynamoDB) through a counting proxy.
async fn redis_subject(
    ctx: &Ctx,
    server: &RedisServer,
    moto: Option<&Moto>,
) -> Result<Subject, String> {
    let proxy = Proxy::start(server.port)
        .await
        .map_err(|e| format!("proxy: {e}"))?;
    let config = config(&ctx.keys, &[]);
    let url = format!("redis://127.0.0.1:{}", proxy.port);
    let (store, counter) = match moto {
        None => (redis_store(&url, &config).await?, None),
        Some(moto) => {
            let counter = Counter::default();
            let dynamo = DynamoStore::from_client(
                dynamo::client(&moto.endpoint, &counter),
                "bench_round_trips_tiered",
            );
            dynamo
                .ensure_table()
                .await
                .map_err(|e| format!("create the table on moto: {e}"))?;
            (tiered_store(&url, dynamo, &config).await?, Some(counter))
        }
    };
    let mut subject = Subject {
        state: State::with_store(config, store).map_err(|e| e.to_string())?,
        proxy: Some(proxy),
        conn: Some(redis_conn(&server.url()).await?),
        counter,
        calls: if moto.is_some() { 10 } else { 50 },
    };
    if moto.is_some() {
        // The scripts are loaded by now (the Redis-only subject ran first on this server).
        warm_up(ctx, &mut subject).await?;
    }
    Ok(subject)
}

async fn dynamo_subject(ctx: &Ctx, moto: &Moto) -> Result<Subject, String> {
    let counter = Counter::default();
    let store = DynamoStore::from_client(
        dynamo::client(&moto.endpoint, &counter),
        "bench_round_trips",
    );
    store
        .ensure_table()
        .await
        .map_err(|e| format!("create the table on moto: {e}"))?;
    let config = config(&ctx.keys, &[]);
    let store = Store::Dynamodb(store.with_max_sessions(config.max_sessions_per_user));
    Ok(Subject {
        state: State::with_store(config, store).map_err(|e| e.to_string())?,
        proxy: None,
        conn: None,
        counter: Some(counter),
        calls: 10,
    })
}

/// The very first create on a server that has never seen the script, then a warm-up call of
/// every other script.
async fn cold_script_call(ctx: &Ctx, subject: &mut Subject) -> Result<Count, String> {
    let event = fill(&ctx.events.create, "", &ctx.keys.jwt("rt_cold"));
    let cold = measure(subject, Endpoint::SessionCreate, &[event]).await?;
    warm_up(ctx, subject).await?;
    Ok(cold)
}

async fn warm_up(ctx: &Ctx, subject: &mut Subject) -> Result<(), String> {
    let user = format!("rt_warm_{}", subject.counter.is_some());
    let tokens = seed_user(&subject.state, &user, 2).await?;
    for (endpoint, event) in [
        (
            Endpoint::SessionRefresh,
            fill(&ctx.events.refresh, &tokens[0], ""),
        ),
        (
            Endpoint::SessionLogoutAll,
            fill(&ctx.events.logout_all_token, &tokens[1], ""),
        ),
    ] {
        measure(subject, endpoint, &[event]).await?;
    }
    Ok(())
}

async fn count_cases(ctx: &Ctx, subject: &mut Subject, prefix: &str) -> Result<Vec<Count>, String> {
    let mut out = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let many = case.sessions > 10;
        let n = if many {
            (subject.calls / 10).max(2)
        } else {
            subject.calls
        };
        let events = events_for(ctx, &subject.state, case, &format!("{prefix}{i}_"), n).await?;
        out.push(measure(subject, case.endpoint, &events).await?);
    }
    Ok(out)
}

/// Calls `endpoint` with each event and counts, per call, what went to each server.
async fn measure(
    subject: &mut Subject,
    endpoint: Endpoint,
    events: &[String],
) -> Result<Count, String> {
    let before = match &mut subject.conn {
        Some(conn) => command_calls(conn).await?,
        None => BTreeMap::new(),
    };
    if let Some(proxy) = &subject.proxy {
        proxy.take();
    }
    if let Some(counter) = &subject.counter {
        counter.take();
    }
    for event in events {
        let response = handle(&subject.state, endpoint, request(event)).await;
        if response.status() != 200 {
            let body = match response.body() {
                lambda_http::Body::Text(t) => t.clone(),
                _ => String::new(),
            };
            return Err(format!(
                "{endpoint:?} answered {}: {body}",
                response.status()
            ));
        }
    }
    let n = events.len() as f64;
    let per_call = |m: BTreeMap<String, u64>| -> BTreeMap<String, f64> {
        m.into_iter().map(|(k, v)| (k, v as f64 / n)).collect()
    };
    let mut count = Count::default();
    if let Some(proxy) = &subject.proxy {
        let seen = proxy.take();
        count.redis_trips = seen.flights as f64 / n;
        count.redis_sent = per_call(seen.commands);
    }
    if let Some(conn) = &mut subject.conn {
        let after = command_calls(conn).await?;
        count.redis_executed = per_call(
            after
                .into_iter()
                .filter(|(name, _)| name != "info")
                .map(|(name, calls)| {
                    let delta = calls - before.get(&name).copied().unwrap_or(0);
                    (name, delta)
                })
                .filter(|(_, delta)| *delta > 0)
                .collect(),
        );
    }
    if let Some(counter) = &subject.counter {
        count.dynamo_sent = per_call(counter.take());
        count.dynamo_requests = count.dynamo_sent.values().fold(0.0, |a, b| a + b);
    }
    Ok(count)
}

/// `n` filled-in events of `case`, each for a user of its own holding its sessions.
async fn events_for(
    ctx: &Ctx,
    state: &State,
    case: &Case,
    prefix: &str,
    n: usize,
) -> Result<Vec<String>, String> {
    let template = match case.endpoint {
        Endpoint::SessionValidate => &ctx.events.validate,
        Endpoint::SessionCreate => &ctx.events.create,
        Endpoint::SessionRefresh => &ctx.events.refresh,
        Endpoint::SessionLogout => &ctx.events.logout,
        _ if case.jwt => &ctx.events.logout_all_jwt,
        _ => &ctx.events.logout_all_token,
    };
    let sessions = case.sessions.min(state.config.max_sessions_per_user);
    let mut events = Vec::new();
    for i in 0..n {
        let user = format!("{prefix}{i}");
        let tokens = seed_user(state, &user, sessions).await?;
        let jwt = if case.jwt {
            ctx.keys.jwt(&user)
        } else {
            String::new()
        };
        events.push(fill(
            template,
            tokens.first().map_or("", String::as_str),
            &jwt,
        ));
    }
    Ok(events)
}

/// `k` sessions for `user`, made through the store.
async fn seed_user(state: &State, user: &str, k: usize) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    for _ in 0..k {
        let (token, session) = new_session(user, Some(BROWSER_UA), &state.config);
        state
            .store
            .create(&token, &session)
            .await
            .map_err(|e| format!("seed a session: {e}"))?;
        tokens.push(token.expose().to_owned());
    }
    Ok(tokens)
}

/// `{"EVALSHA": 1.0}` → "EVALSHA 1".
fn names(counts: &BTreeMap<String, f64>) -> String {
    if counts.is_empty() {
        return "nothing".into();
    }
    counts
        .iter()
        .map(|(name, per_call)| format!("{name} {}", trim(*per_call)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn trips(n: f64, what: &str) -> String {
    format!("{} {what}{}", trim(n), if n == 1.0 { "" } else { "s" })
}

/// 1.0 → "1", 0.52 → "0.52".
fn trim(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}
