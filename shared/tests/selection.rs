//! Store selection at cold start (docs/architecture.md, "Store modes"), against real servers.

mod support;

use shared::config::Config;
use shared::session::now_unix;
use shared::store::{SelectError, StoreErrorKind};
use shared::{SessionToken, Store};
use std::net::TcpListener;
use std::time::{Duration, Instant};
use support::servers::{Moto, RedisServer, free_port};
use support::stores::unique;

/// Loose on purpose: it proves the connect timeout is wired, not how fast it is.
const LOOSE_BOUND: Duration = Duration::from_secs(5);

fn config(pairs: &[(&str, &str)]) -> Config {
    support::stores::local_config(pairs)
}

/// A port that accepts connections (the kernel completes the handshake) and never answers.
fn silent_port() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "redis://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    (listener, url)
}

async fn select(config: &Config) -> (Result<Store, SelectError>, Duration) {
    let started = Instant::now();
    let result = Store::from_config(config).await;
    (result, started.elapsed())
}

#[tokio::test]
async fn auto_puts_redis_in_front_of_dynamodb_when_both_are_set() {
    let server = RedisServer::start();
    let (store, _) = select(&config(&[
        ("REDIS_URL", &server.url()),
        ("SESSION_TABLE", "unused"),
    ]))
    .await;
    assert_eq!(store.unwrap().backend(), "redis+dynamodb");
}

#[tokio::test]
async fn a_table_alone_is_dynamodb_and_redis_alone_is_redis() {
    let (store, _) = select(&config(&[("SESSION_TABLE", "sessions")])).await;
    assert_eq!(store.unwrap().backend(), "dynamodb");
    let server = RedisServer::start();
    let (store, _) = select(&config(&[("REDIS_URL", &server.url())])).await;
    assert_eq!(store.unwrap().backend(), "redis");
    let (store, _) = select(&config(&[
        ("SESSION_STORE", "redis"),
        ("REDIS_URL", &server.url()),
        ("SESSION_TABLE", "sessions"),
    ]))
    .await;
    assert_eq!(store.unwrap().backend(), "redis", "named, Redis alone");
}

#[tokio::test]
async fn auto_serves_from_dynamodb_when_redis_never_answers() {
    let (_listener, url) = silent_port();
    let endpoint = Moto::shared().endpoint();
    let table = unique("sessions");
    let config = config(&[
        ("REDIS_URL", &url),
        ("REDIS_CONNECT_TIMEOUT_MS", "200"),
        ("REDIS_COMMAND_TIMEOUT_MS", "200"),
        ("SESSION_TABLE", &table),
        ("DYNAMODB_ENDPOINT", &endpoint),
    ]);
    let (store, took) = select(&config).await;
    let store = store.expect("starts, serving from DynamoDB");
    assert_eq!(store.backend(), "redis+dynamodb");
    assert!(
        took < LOOSE_BOUND,
        "selection took {took:?}: the connect timeout is not applied"
    );

    // It serves from the configured table on the configured endpoint while Redis is silent.
    support::stores::dynamo_store(&endpoint, &table)
        .ensure_table()
        .await
        .unwrap();
    let token = SessionToken::mint("user_1");
    let session = shared::Session::new("user_1", false, None, lifetimes(), now_unix());
    let started = Instant::now();
    store.create(&token, &session).await.unwrap();
    assert!(store.get(&token, now_unix()).await.unwrap().is_some());
    assert!(started.elapsed() < LOOSE_BOUND, "{:?}", started.elapsed());
    let record = Store::Dynamodb(support::stores::dynamo_store(&endpoint, &table));
    assert!(
        record.get(&token, now_unix()).await.unwrap().is_some(),
        "the session is in the table"
    );
}

#[tokio::test]
async fn auto_serves_from_dynamodb_when_redis_refuses_connections() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let config = config(&[("REDIS_URL", &url), ("SESSION_TABLE", "sessions")]);
    let (store, took) = select(&config).await;
    assert_eq!(store.unwrap().backend(), "redis+dynamodb");
    assert!(took < LOOSE_BOUND, "{took:?}");
}

#[tokio::test]
async fn redis_by_name_does_not_fall_through() {
    let (_listener, url) = silent_port();
    let config = config(&[
        ("SESSION_STORE", "redis"),
        ("REDIS_URL", &url),
        ("REDIS_CONNECT_TIMEOUT_MS", "200"),
        ("SESSION_TABLE", "sessions"),
    ]);
    let (store, took) = select(&config).await;
    match store {
        Err(SelectError::Redis { source, .. }) => assert_eq!(source.kind, StoreErrorKind::Timeout),
        other => panic!("expected a Redis timeout, got {other:?}"),
    }
    assert!(took < LOOSE_BOUND, "{took:?}");
}

#[tokio::test]
async fn nothing_configured_is_refused_with_what_to_set() {
    let (store, _) = select(&config(&[])).await;
    let err = store.unwrap_err();
    assert!(matches!(err, SelectError::NothingConfigured));
    let text = err.to_string();
    assert!(
        text.contains("REDIS_URL") && text.contains("SESSION_TABLE"),
        "{text}"
    );

    // Unreachable Redis and no table: the Redis error, not a silent memory store.
    let url = format!("redis://127.0.0.1:{}", free_port());
    let (store, _) = select(&config(&[("REDIS_URL", &url)])).await;
    assert!(matches!(store, Err(SelectError::Redis { .. })), "{store:?}");
}

#[tokio::test]
async fn memory_only_by_name() {
    let (store, _) = select(&config(&[("SESSION_STORE", "memory")])).await;
    assert_eq!(store.unwrap().backend(), "memory");
}

#[tokio::test]
async fn wrong_redis_credentials_are_a_clear_error_not_a_fallback() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let port = server.port();
    let cases = [
        (format!("redis://127.0.0.1:{port}"), "NOAUTH"),
        (
            format!("redis://default:wrong@127.0.0.1:{port}"),
            "WRONGPASS",
        ),
    ];
    for (url, code) in cases {
        let (store, took) = select(&config(&[
            ("REDIS_URL", &url),
            ("SESSION_TABLE", "sessions"),
        ]))
        .await;
        match store {
            Err(SelectError::Redis { source, .. }) => {
                assert_eq!(source.kind, StoreErrorKind::Auth, "{source}");
                assert!(source.to_string().contains(code), "{source}");
            }
            other => panic!("{url}: expected an auth error, got {other:?}"),
        }
        assert!(took < LOOSE_BOUND, "{took:?}");
    }
    let err = select(&config(&[(
        "REDIS_URL",
        &format!("redis://default:wrong@127.0.0.1:{port}"),
    )]))
    .await
    .0
    .unwrap_err();
    assert!(
        !err.to_string().contains("wrong@"),
        "the password is redacted: {err}"
    );

    let url = format!("redis://default:s3cret@127.0.0.1:{port}");
    let (store, _) = select(&config(&[("REDIS_URL", &url)])).await;
    let store = store.expect("user:password in the URL works");
    let token = SessionToken::mint("user_1");
    let session = shared::Session::new("user_1", false, None, lifetimes(), now_unix());
    store.create(&token, &session).await.unwrap();
    assert!(store.get(&token, now_unix()).await.unwrap().is_some());
}

fn lifetimes() -> shared::session::Lifetimes {
    let defaults = Config::defaults();
    shared::session::Lifetimes {
        session: defaults.session_timeout,
        remember_me: defaults.remember_me_timeout,
        max_lifetime: defaults.session_max_lifetime,
    }
}

/// A server that speaks RESP and answers every command with `reply` (an error line), as a Redis
/// that is loading its data set, running a long script or failing over does.
fn erring_redis(reply: &'static str) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "redis://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                // One reply per RESP array: `*<n>` then n bulk strings.
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    let parts: usize = line.trim_end().trim_start_matches('*').parse().unwrap_or(0);
                    for _ in 0..parts {
                        line.clear();
                        let _ = reader.read_line(&mut line);
                        let len: usize =
                            line.trim_end().trim_start_matches('$').parse().unwrap_or(0);
                        let mut body = vec![0; len + 2];
                        let _ = reader.read_exact(&mut body);
                    }
                    line.clear();
                    if writer
                        .write_all(format!("-{reply}\r\n").as_bytes())
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn auto_serves_from_dynamodb_while_redis_loads_is_busy_or_fails_over() {
    for reply in [
        "LOADING Redis is loading the dataset in memory",
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
        "CLUSTERDOWN The cluster is down",
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        "TRYAGAIN Multiple keys request during rehashing of slot",
    ] {
        let url = erring_redis(reply);
        let config = config(&[("REDIS_URL", &url), ("SESSION_TABLE", "sessions")]);
        let (store, took) = select(&config).await;
        match store {
            Ok(store) => assert_eq!(store.backend(), "redis+dynamodb", "{reply}"),
            Err(e) => panic!("a cold start during {reply:?} must fall back to DynamoDB: {e}"),
        }
        assert!(took < LOOSE_BOUND, "{took:?}");
    }
}
