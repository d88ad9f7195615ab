//! Part 4: Redis memory per active session: `used_memory` before and after 100 000 sessions
//! across 10 000 users, made through the store, with and without a browser's user agent (whose
//! device label, "Chrome 126 on Windows", is what the store keeps of it).

use crate::procs::RedisServer;
use crate::report::{Row, thousands};
use crate::setup::{BROWSER_UA, config, for_each, info, new_session, redis_conn, redis_store};
use crate::{Ctx, PART4};
use shared::token::UserKey;

const SESSIONS: usize = 100_000;
const USERS: usize = 10_000;
const BUDGET: f64 = 250.0;

pub async fn run(ctx: &Ctx) -> Vec<Row> {
    let mut rows = Vec::new();
    for (label, ua) in [
        ("no user agent (device unknown)", None),
        (
            "a browser's user agent (the store keeps its label, \"Chrome 126 on Windows\")",
            Some(BROWSER_UA),
        ),
    ] {
        let what = format!(
            "{} sessions across {} users, {label}",
            thousands(SESSIONS as f64),
            thousands(USERS as f64)
        );
        rows.push(match measure(ctx, ua).await {
            Ok(row) => Row::new(
                PART4,
                what,
                row.0,
                format!("≤ {BUDGET:.0} bytes/session, the user's index included"),
                row.1,
            ),
            Err(why) => Row::failed(PART4, &what, &why),
        });
    }
    rows
}

async fn measure(ctx: &Ctx, ua: Option<&'static str>) -> Result<(String, String), String> {
    let name = if ua.is_some() {
        "redis-memory-ua"
    } else {
        "redis-memory"
    };
    let server = RedisServer::start(&ctx.tools.redis_server, &ctx.scratch.0, name)?;
    let config = config(&ctx.keys, &[]);
    let store = redis_store(&server.url(), &config).await?;
    let mut conn = redis_conn(&server.url()).await?;
    // The create script loaded and its first key gone, so the baseline holds neither a session
    // nor the cost of loading the script.
    let (token, session) = new_session("mem_warm", ua, &config);
    store
        .create(&token, &session)
        .await
        .map_err(|e| e.to_string())?;
    store
        .delete_user(token.user_key(), 0)
        .await
        .map_err(|e| e.to_string())?;
    let used = |m: &std::collections::BTreeMap<String, String>| {
        m.get("used_memory")
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let before = used(&info(&mut conn, "memory").await?);

    eprintln!(
        "bench: part 4: {SESSIONS} sessions, user agent {}",
        if ua.is_some() { "on" } else { "off" }
    );
    let results = for_each((0..SESSIONS).collect(), 64, |i| {
        let store = store.clone();
        let (token, session) = new_session(&format!("mem_user_{}", i % USERS), ua, &config);
        async move {
            store
                .create(&token, &session)
                .await
                .map_err(|e| e.to_string())
        }
    })
    .await;
    if let Some(Err(why)) = results.into_iter().find(Result::is_err) {
        return Err(format!("create: {why}"));
    }
    let after = used(&info(&mut conn, "memory").await?);

    let key = format!("sess:{{{}}}", UserKey::for_user("mem_user_0").as_str());
    let encoding: String = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("OBJECT ENCODING: {e}"))?;
    let fields: Vec<Vec<u8>> = redis::cmd("HKEYS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("HKEYS: {e}"))?;
    let record_len: usize = redis::cmd("HSTRLEN")
        .arg(&key)
        .arg(fields.first().map(Vec::as_slice).unwrap_or_default())
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("HSTRLEN: {e}"))?;
    let key_usage: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&key)
        .arg("SAMPLES")
        .arg(0)
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("MEMORY USAGE: {e}"))?;
    let keys: i64 = redis::cmd("DBSIZE")
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("DBSIZE: {e}"))?;
    let listpack_value: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("hash-max-listpack-value")
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("CONFIG GET: {e}"))?;
    let listpack_value = listpack_value.get(1).cloned().unwrap_or_default();
    drop(server);

    let per_session = (after - before) as f64 / SESSIONS as f64;
    let per_user = SESSIONS / USERS;
    let result = format!(
        "**{per_session:.0} bytes/session** (used_memory +{} bytes; {keys} keys); a user's hash: \
         {per_user} fields, encoding {encoding}, MEMORY USAGE {key_usage} bytes ({:.0}/session); \
         field 32 bytes (SHA-256), record {record_len} bytes",
        thousands((after - before) as f64),
        key_usage as f64 / per_user as f64,
    );
    let verdict = if per_session <= BUDGET && encoding == "hashtable" {
        format!(
            "ok, by {:.0} bytes only: the record ({record_len} bytes) is longer than \
             hash-max-listpack-value ({listpack_value}), so each user's hash is a hashtable (a dict \
             entry and two SDS strings per session) instead of a listpack",
            BUDGET - per_session
        )
    } else if per_session <= BUDGET {
        "ok".to_owned()
    } else if encoding == "hashtable" {
        format!(
            "MISS: the record ({record_len} bytes) is longer than hash-max-listpack-value \
             ({listpack_value}), so each user's hash is a hashtable (a dict entry and two SDS \
             strings per session) instead of a listpack"
        )
    } else {
        format!("MISS: {per_session:.0} bytes/session in a {encoding}")
    };
    Ok((result, verdict))
}
