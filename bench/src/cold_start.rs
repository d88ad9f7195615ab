//! Part 3: cold start of the release session-validate binary under cargo-lambda's runtime API
//! emulator (`cargo lambda watch --only-lambda-apis`): time from spawning the process to the
//! answer of its first invocation (a valid session token, so the answer needs the store),
//! beside a hello-world `lambda_http` function (bench/src/bin/hello.rs) measured the same way in
//! the same run: what session-validate adds is reported over it.
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
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 20;
/// (b), Redis silent: an absolute budget.
const SILENT_BUDGET_MS: f64 = 250.0;
/// What the emulator calls the one function it serves with --only-lambda-apis.
const FUNCTION: &str = "_";

#[derive(Clone, Copy, PartialEq)]
enum Budget {
    None,
    /// At most this many ms over the hello-world function (median of the paired runs).
    OverHello(f64),
    /// At most this many ms, p50 and p90.
    Absolute(f64),
}

struct Case {
    what: &'static str,
    /// The hello-world function instead of session-validate.
    hello: bool,
    env: Vec<(&'static str, String)>,
    budget: Budget,
}

pub async fn run(ctx: &Ctx, moto: Result<&Moto, &String>) -> Vec<Row> {
    match measure(ctx, moto).await {
        Ok(rows) => rows,
        Err(why) => {
            eprintln!("bench: part 3: {why}");
            vec![Row::failed(PART3, "cold start of session-validate", &why)]
        }
    }
}

async fn measure(ctx: &Ctx, moto: Result<&Moto, &String>) -> Result<Vec<Row>, String> {
    for (bin, build) in [
        (&ctx.tools.validate_bin, "-p session-validate"),
        (&ctx.tools.hello_bin, "-p bench"),
    ] {
        if !bin.is_file() {
            return Err(format!(
                "{} is missing: cargo build --release {build}",
                bin.display()
            ));
        }
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
            what: "hello-world `lambda_http` function (bench/src/bin/hello.rs, the same release \
                   profile): the runtime's own cold start",
            hello: true,
            env: vec![],
            budget: Budget::None,
        },
        Case {
            what: "(a) Redis reachable",
            hello: false,
            env: vec![("REDIS_URL", redis.url())],
            budget: Budget::OverHello(3.0),
        },
        Case {
            what: "(a) Redis reachable, SESSION_TABLE set too (moto): Redis in front of DynamoDB",
            hello: false,
            env: vec![
                ("REDIS_URL", redis.url()),
                ("SESSION_TABLE", table.into()),
                ("DYNAMODB_ENDPOINT", moto.endpoint.clone()),
            ],
            budget: Budget::OverHello(10.0),
        },
        Case {
            what: "for comparison: no REDIS_URL, SESSION_TABLE set (moto), DynamoDB from the start",
            hello: false,
            env: vec![
                ("SESSION_TABLE", table.into()),
                ("DYNAMODB_ENDPOINT", moto.endpoint.clone()),
            ],
            budget: Budget::None,
        },
        Case {
            what: "(b) REDIS_URL at a port that accepts and never answers, SESSION_TABLE set (moto)",
            hello: false,
            env: vec![
                ("REDIS_URL", format!("redis://127.0.0.1:{silent}")),
                ("SESSION_TABLE", table.into()),
                ("DYNAMODB_ENDPOINT", moto.endpoint.clone()),
            ],
            budget: Budget::Absolute(SILENT_BUDGET_MS),
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
    let event = fill(&ctx.events.validate, &token, "");
    // Interleaved: run i of every case back to back, so that the machine's drift between runs
    // weighs on each case alike and "over hello" compares runs made moments apart.
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    // One run more than counted: the first pages each binary in from disk.
    for run in 0..=RUNS {
        if run > 0 && run % 5 == 0 {
            eprintln!("bench: part 3: run {run} of {RUNS}");
        }
        for (i, case) in cases.iter().enumerate() {
            let bin = if case.hello {
                &ctx.tools.hello_bin
            } else {
                &ctx.tools.validate_bin
            };
            let ms = cold_start(ctx, bin, &watch, &http, &event, &case.env, &ctx.keys).await?;
            if run > 0 {
                times[i].push(ms);
            }
        }
    }
    drop(watch);
    drop(redis);

    let hello = times[0].clone();
    let hello_p50 = median(&mut hello.clone());
    let dynamo_p50 = cases
        .iter()
        .position(|c| c.what.starts_with("for comparison"))
        .map(|i| median(&mut times[i].clone()));
    let mut rows = Vec::new();
    for (case, runs) in cases.iter().zip(times) {
        let p50 = median(&mut runs.clone());
        let p90 = percentile(&mut runs.clone(), 90.0);
        let max = runs.iter().copied().fold(0.0, f64::max);
        // Each run's excess over the hello-world run made just before it.
        let mut over: Vec<f64> = runs.iter().zip(&hello).map(|(t, h)| t - h).collect();
        let over = median(&mut over);
        let result = if case.hello {
            format!("median **{p50:.1} ms**, p90 {p90:.0} ms, max {max:.0} ms ({RUNS} runs)")
        } else {
            format!(
                "median {p50:.1} ms (hello {hello_p50:.1}), **{over:+.1} ms over hello** (median of \
                 the runs' differences), p90 {p90:.0} ms, max {max:.0} ms ({RUNS} runs)"
            )
        };
        let (budget, verdict) = match case.budget {
            Budget::None => ("—".to_owned(), "info".to_owned()),
            Budget::OverHello(limit) => (
                format!("≤ hello + {limit:.0} ms"),
                if over <= limit {
                    "ok".to_owned()
                } else {
                    format!(
                        "MISS: session-validate's own start-up (its State: configuration, key, \
                         store clients) and its first answer take {over:.1} ms more than a \
                         function that does nothing"
                    )
                },
            ),
            Budget::Absolute(limit) => (
                format!("≤ {limit:.0} ms"),
                if p50 <= limit && p90 <= limit {
                    "ok".to_owned()
                } else {
                    let rest = dynamo_p50.map_or(String::new(), |c| {
                        format!("; DynamoDB from the start answers in {c:.0} ms (median)")
                    });
                    format!(
                        "MISS: the start-up waits for the Redis probe to give up after \
                         REDIS_CONNECT_TIMEOUT_MS = {} ms (the default) before it sets up \
                         DynamoDB and answers{rest}",
                        config.redis_connect_timeout.as_millis()
                    )
                },
            ),
        };
        rows.push(Row::new(PART3, case.what, result, budget, verdict));
    }
    Ok(rows)
}

/// One cold start; milliseconds from spawn to the answer of the first invocation.
async fn cold_start(
    ctx: &Ctx,
    bin: &Path,
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

    let mut command = Command::new(bin);
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
    let mut proc = Proc::spawn(command, &ctx.scratch.file("cold-start.log"), false)
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let answer = pending.await.map_err(|e| e.to_string())?;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    let exited = proc.exited();
    proc.stop();
    let answer = answer.map_err(|e| {
        format!(
            "no answer from the emulator ({e}); {} {}\n{}\n{}",
            bin.display(),
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
