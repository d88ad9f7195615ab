//! Part 3: cold start of the release session-validate binary under cargo-lambda's runtime API
//! emulator (`cargo lambda watch --only-lambda-apis`): time from spawning the process to the
//! answer of its first invocation (a valid session token, so the answer needs the store).
//!
//! Each run: the invocation is queued with the emulator first, then the binary is spawned and
//! the clock starts; it stops when the emulator hands back the function's answer. The process is
//! then killed, and the next run starts a new one: every run is a cold start.

use crate::load::{median, percentile};
use crate::procs::{Moto, Proc, RedisServer, silent_port};
use crate::report::Row;
use crate::setup::{BROWSER_UA, Keys, config, fill, new_session, tiered_store};
use crate::watch::Watch;
use crate::{Ctx, PART3};
use serde_json::Value;
use shared::store::DynamoStore;
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 20;
const BUDGET_MS: f64 = 300.0;
/// What the emulator calls the one function it serves with --only-lambda-apis.
const FUNCTION: &str = "_";

struct Case {
    what: &'static str,
    env: Vec<(&'static str, String)>,
    budget: bool,
}

pub async fn run(ctx: &Ctx, moto: Result<&Moto, &String>) -> Vec<Row> {
    match measure(ctx, moto).await {
        Ok(rows) => rows,
        Err(why) => vec![Row::failed(PART3, "cold start of session-validate", &why)],
    }
}

async fn measure(ctx: &Ctx, moto: Result<&Moto, &String>) -> Result<Vec<Row>, String> {
    if !ctx.tools.validate_bin.is_file() {
        return Err(format!(
            "{} is missing: cargo build --release -p session-validate",
            ctx.tools.validate_bin.display()
        ));
    }
    let moto = moto.map_err(|why| format!("no moto server: {why}"))?;
    let redis = RedisServer::start(&ctx.tools.redis_server, &ctx.scratch.0, "redis-cold")?;
    let config = config(&ctx.keys, &[]);
    let table = "bench_cold_start";
    // One session in both stores (Redis in front of DynamoDB writes both): every case can find it.
    let token = {
        let client = crate::dynamo::client(&moto.endpoint, &Default::default());
        let dynamo = DynamoStore::from_client(client, table);
        dynamo.ensure_table().await.map_err(|e| e.to_string())?;
        let store = tiered_store(&redis.url(), dynamo, &config).await?;
        let (token, session) = new_session("cold_user", Some(BROWSER_UA), &config);
        store
            .create(&token, &session)
            .await
            .map_err(|e| e.to_string())?;
        token.expose().to_owned()
    };
    let silent = silent_port();

    let cases = [
        Case {
            what: "(a) Redis reachable",
            env: vec![("REDIS_URL", redis.url())],
            budget: false,
        },
        Case {
            what: "(a) Redis reachable, SESSION_TABLE set too (moto): Redis in front of DynamoDB",
            env: vec![
                ("REDIS_URL", redis.url()),
                ("SESSION_TABLE", table.into()),
                ("DYNAMODB_ENDPOINT", moto.endpoint.clone()),
            ],
            budget: false,
        },
        Case {
            what: "for comparison: no REDIS_URL, SESSION_TABLE set (moto), DynamoDB from the start",
            env: vec![
                ("SESSION_TABLE", table.into()),
                ("DYNAMODB_ENDPOINT", moto.endpoint.clone()),
            ],
            budget: false,
        },
        Case {
            what: "(b) REDIS_URL at a port that accepts and never answers, SESSION_TABLE set (moto)",
            env: vec![
                ("REDIS_URL", format!("redis://127.0.0.1:{silent}")),
                ("SESSION_TABLE", table.into()),
                ("DYNAMODB_ENDPOINT", moto.endpoint.clone()),
            ],
            budget: true,
        },
    ];

    let watch = Watch::start(
        ctx,
        &["--only-lambda-apis"],
        &[],
        "watch-only-lambda-apis.log",
    )?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let mut c_median = None;
    for case in cases {
        eprintln!("bench: part 3: {}", case.what);
        let event = fill(&ctx.events.validate, &token, "");
        let mut times = Vec::new();
        // One run more than counted: the first pages the binary in from disk.
        for run in 0..=RUNS {
            let ms = cold_start(ctx, &watch, &http, &event, &case.env, &ctx.keys).await?;
            if run > 0 {
                times.push(ms);
            }
        }
        let p50 = median(&mut times);
        let p90 = percentile(&mut times, 90.0);
        let max = times.iter().copied().fold(0.0, f64::max);
        let result =
            format!("median **{p50:.0} ms**, p90 {p90:.0} ms, max {max:.0} ms ({RUNS} runs)");
        let (budget, verdict) = if case.budget {
            let verdict = if p50 <= BUDGET_MS && p90 <= BUDGET_MS {
                "ok".to_owned()
            } else {
                let rest = c_median.map_or(String::new(), |c: f64| {
                    format!("; DynamoDB from the start answers in {c:.0} ms (median)")
                });
                format!(
                    "MISS: the start-up waits for the Redis probe to give up after \
                     REDIS_CONNECT_TIMEOUT_MS = {} ms (the default) before it sets up DynamoDB and \
                     answers{rest}",
                    config.redis_connect_timeout.as_millis()
                )
            };
            (format!("≤ {BUDGET_MS:.0} ms"), verdict)
        } else {
            ("—".to_owned(), "info".to_owned())
        };
        rows.push(Row::new(PART3, case.what, result, budget, verdict));
        if case.what.starts_with("for comparison") {
            c_median = Some(p50);
        }
    }
    drop(watch);
    drop(redis);
    Ok(rows)
}

/// One cold start; milliseconds from spawn to the answer of the first invocation.
async fn cold_start(
    ctx: &Ctx,
    watch: &Watch,
    http: &reqwest::Client,
    event: &str,
    env: &[(&str, String)],
    keys: &Keys,
) -> Result<f64, String> {
    let invoke = http
        .post(watch.url(&format!("/2015-03-31/functions/{FUNCTION}/invocations")))
        .body(event.to_owned())
        .send();
    let pending = tokio::spawn(invoke);
    // Let the emulator queue the invocation before the clock starts.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut command = Command::new(&ctx.tools.validate_bin);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{}/.rt", watch.port),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("CLERK_JWT_KEY", keys.public_pem.replace('\n', "\\n"))
        .env("ALLOWED_ORIGINS", crate::setup::ORIGIN)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let started = Instant::now();
    let mut proc = Proc::spawn(command, &ctx.scratch.file("session-validate.log"), false)
        .map_err(|e| format!("cannot start {}: {e}", ctx.tools.validate_bin.display()))?;
    let answer = pending.await.map_err(|e| e.to_string())?;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    let exited = proc.exited();
    proc.stop();
    let answer = answer.map_err(|e| {
        format!(
            "no answer from the emulator ({e}); session-validate {}\n{}\n{}",
            exited.unwrap_or_else(|| "was running".into()),
            proc.log_tail(10),
            watch.proc.log_tail(10)
        )
    })?;
    let text = answer.text().await.map_err(|e| e.to_string())?;
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if body["statusCode"] != 200 {
        return Err(format!(
            "the first invocation answered {text}\n{}",
            proc.log_tail(10)
        ));
    }
    Ok(elapsed)
}
