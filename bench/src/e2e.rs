//! Part 5: validate over HTTP through `cargo lambda watch` (the router of the workspace
//! Cargo.toml, release build), loaded with wrk. Informational: watch's own proxying and its one
//! instance per function dominate.

use crate::procs::{RedisServer, run_captured};
use crate::report::{Row, thousands};
use crate::setup::{BROWSER_UA, ORIGIN, config, new_session, redis_store};
use crate::watch::Watch;
use crate::{Ctx, PART5};
use std::process::Command;
use std::time::{Duration, Instant};

/// watch builds a function on its first request if it is not built yet.
const FIRST_ANSWER: Duration = Duration::from_secs(15 * 60);
const SECONDS: u32 = 10;

pub async fn run(ctx: &Ctx) -> Vec<Row> {
    match measure(ctx).await {
        Ok(rows) => rows,
        Err(why) => vec![Row::failed(
            PART5,
            "validate over HTTP through cargo lambda watch",
            &why,
        )],
    }
}

async fn measure(ctx: &Ctx) -> Result<Vec<Row>, String> {
    let redis = RedisServer::start(&ctx.tools.redis_server, &ctx.scratch.0, "redis-e2e")?;
    let config = config(&ctx.keys, &[]);
    let token = {
        let store = redis_store(&redis.url(), &config).await?;
        let (token, session) = new_session("e2e_user", Some(BROWSER_UA), &config);
        store
            .create(&token, &session)
            .await
            .map_err(|e| e.to_string())?;
        token.expose().to_owned()
    };
    let env = [
        ("SESSION_STORE", "redis".to_owned()),
        ("REDIS_URL", redis.url()),
        ("REDIS_CLUSTER", String::new()),
        ("SESSION_TABLE", String::new()),
        ("DYNAMODB_ENDPOINT", String::new()),
        ("CLERK_JWT_KEY", ctx.keys.public_pem.replace('\n', "\\n")),
        ("CLERK_JWKS_URL", String::new()),
        ("CLERK_ISSUER", String::new()),
        ("ALLOWED_ORIGINS", ORIGIN.to_owned()),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_owned()),
    ];
    let watch = Watch::start(
        ctx,
        &["--release", "--disable-cors", "--ignore-changes", "--quiet"],
        &env,
        "watch-router.log",
    )?;
    let url = watch.url("/api/session/validate");
    let http = reqwest::Client::builder()
        .timeout(FIRST_ANSWER)
        .build()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let first = http
        .get(&url)
        .header("x-session-token", &token)
        .send()
        .await
        .map_err(|e| format!("first request: {e}\n{}", watch.proc.log_tail(20)))?;
    if first.status() != 200 {
        return Err(format!(
            "first validate answered {}: {}",
            first.status(),
            first.text().await.unwrap_or_default()
        ));
    }
    eprintln!(
        "bench: part 5: first answer through watch after {:.1?}",
        started.elapsed()
    );

    let mut rows = Vec::new();
    for connections in [1usize, 16] {
        let mut command = Command::new(&ctx.tools.wrk);
        command
            .args(["-t", "1", "-c", &connections.to_string()])
            .args([
                "-d",
                &format!("{SECONDS}s"),
                "--latency",
                "--timeout",
                "10s",
            ])
            .args(["-H", &format!("X-Session-Token: {token}")])
            .arg(&url);
        let log = ctx.scratch.file("wrk.log");
        let out = tokio::task::spawn_blocking(move || {
            run_captured(command, &log, Duration::from_secs(u64::from(SECONDS) + 60))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("wrk: {e}"))?;
        let w = Wrk::parse(&out).ok_or_else(|| format!("wrk said nothing usable:\n{out}"))?;
        let verdict = if w.non_2xx > 0 || w.socket_errors {
            format!(
                "info; MISS: {} non-2xx answers{}",
                w.non_2xx,
                if w.socket_errors {
                    ", socket errors"
                } else {
                    ""
                }
            )
        } else {
            "info".to_owned()
        };
        rows.push(Row::new(
            PART5,
            format!("GET /api/session/validate, wrk -c {connections}, {SECONDS} s"),
            format!(
                "{} requests/s, p50 {}, p99 {}, {} requests, {} non-2xx",
                thousands(w.rps),
                w.p50,
                w.p99,
                thousands(w.requests as f64),
                w.non_2xx
            ),
            "no non-2xx",
            verdict,
        ));
    }
    drop(watch);
    drop(redis);
    Ok(rows)
}

struct Wrk {
    rps: f64,
    p50: String,
    p99: String,
    requests: u64,
    non_2xx: u64,
    socket_errors: bool,
}

impl Wrk {
    fn parse(out: &str) -> Option<Wrk> {
        let field = |prefix: &str| {
            out.lines()
                .map(str::trim)
                .find_map(|l| l.strip_prefix(prefix).map(|v| v.trim().to_owned()))
        };
        Some(Wrk {
            rps: field("Requests/sec:")?.parse().ok()?,
            p50: field("50%")?,
            p99: field("99%")?,
            requests: out
                .lines()
                .find(|l| l.contains(" requests in "))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?,
            non_2xx: field("Non-2xx or 3xx responses:")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            socket_errors: field("Socket errors:").is_some(),
        })
    }
}
