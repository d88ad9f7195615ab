//! The stores under test, each over a real server: a fresh redis-server per test, the shared
//! local cluster, the shared moto server with a fresh table per test.

use super::servers::{Moto, RedisCluster, RedisServer};
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use shared::config::RedisMode;
use shared::store::{DynamoStore, MemoryStore, RedisConnect, RedisStore, TieredStore};
use shared::{SessionToken, Store};
use std::time::Duration;

/// Generous: these machines are small and busy; the budgets are measured by `make bench`.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Above the 100 sessions one case creates for one user; the cap has its own case.
pub const TEST_MAX_SESSIONS: usize = 1000;

/// A store and what it takes to look inside it.
pub struct Subject {
    pub store: Store,
    /// No other test writes to it, so global figures are exact.
    pub isolated: bool,
    backing: Backing,
}

enum Backing {
    Memory,
    Redis {
        _server: Option<RedisServer>,
        urls: Vec<String>,
    },
    Dynamo {
        client: aws_sdk_dynamodb::Client,
        table: String,
    },
    Both(Box<Backing>, Box<Backing>),
}

pub fn memory() -> Subject {
    Subject {
        store: Store::Memory(MemoryStore::new().with_max_sessions(TEST_MAX_SESSIONS)),
        isolated: true,
        backing: Backing::Memory,
    }
}

pub async fn redis_standalone() -> Subject {
    let server = RedisServer::start();
    let store = connect_redis(&server.url()).await;
    let urls = vec![server.url()];
    Subject {
        store,
        isolated: true,
        backing: Backing::Redis {
            _server: Some(server),
            urls,
        },
    }
}

pub async fn redis_cluster() -> Subject {
    let urls = RedisCluster::shared().urls();
    let store = connect_redis(&urls[0]).await;
    match &store {
        Store::Redis(redis) => assert!(redis.is_cluster(), "auto mode must detect the cluster"),
        other => panic!("expected Redis, got {other:?}"),
    }
    Subject {
        store,
        isolated: false,
        backing: Backing::Redis {
            _server: None,
            urls,
        },
    }
}

pub async fn dynamodb() -> Subject {
    let (store, backing) = dynamo_table().await;
    Subject {
        store: Store::Dynamodb(store),
        isolated: true,
        backing,
    }
}

/// A fresh table on the shared moto server.
async fn dynamo_table() -> (DynamoStore, Backing) {
    let client = dynamo_client(&Moto::shared().endpoint());
    let table = unique("sessions");
    let store =
        DynamoStore::from_client(client.clone(), &table).with_max_sessions(TEST_MAX_SESSIONS);
    store.ensure_table().await.expect("create the test table");
    (store, Backing::Dynamo { client, table })
}

/// Redis in front of DynamoDB: a redis-server of its own and a fresh table.
pub async fn tiered() -> Subject {
    let server = RedisServer::start();
    let (record, dynamo_backing) = dynamo_table().await;
    let Store::Redis(front) = connect_redis(&server.url()).await else {
        unreachable!()
    };
    let connect = RedisConnect {
        url: server.url(),
        mode: RedisMode::Auto,
        connect_timeout: TEST_TIMEOUT,
        command_timeout: TEST_TIMEOUT,
        max_sessions: TEST_MAX_SESSIONS,
    };
    let store = TieredStore::new(
        record,
        Some(front.with_max_sessions(TEST_MAX_SESSIONS)),
        connect,
        Duration::from_millis(500),
        Duration::from_millis(500),
    );
    let urls = vec![server.url()];
    Subject {
        store: Store::Tiered(store),
        isolated: true,
        backing: Backing::Both(
            Box::new(Backing::Redis {
                _server: Some(server),
                urls,
            }),
            Box::new(dynamo_backing),
        ),
    }
}

pub async fn connect_redis(url: &str) -> Store {
    let store = RedisStore::connect(url, RedisMode::Auto, TEST_TIMEOUT, TEST_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    Store::Redis(store.with_max_sessions(TEST_MAX_SESSIONS))
}

/// A config from these variables, with the environment made fit for a local DynamoDB server:
/// `Store::from_config` reads credentials and region the SDK's way, and a local server takes any.
pub fn local_config(pairs: &[(&str, &str)]) -> shared::Config {
    static AWS_ENV: std::sync::Once = std::sync::Once::new();
    AWS_ENV.call_once(|| {
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ] {
            // SAFETY: set once, before any store is built, to the same values in every test.
            unsafe { std::env::set_var(k, v) };
        }
    });
    let vars: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    shared::Config::from_map(&vars).expect("valid config")
}

/// A store over `table` on a local server (the table may not exist yet).
pub fn dynamo_store(endpoint: &str, table: &str) -> DynamoStore {
    DynamoStore::from_client(dynamo_client(endpoint), table)
}

/// A DynamoDB client for a local server: fixed region, dummy credentials.
pub fn dynamo_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    let token = SessionToken::mint("seed");
    let random: String = token
        .expose()
        .chars()
        .rev()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    format!("{prefix}_{random}")
}

impl Subject {
    /// Everything the backing server holds, keys and values, as text; `None` for memory.
    pub async fn dump(&self) -> Option<String> {
        dump(&self.backing).await
    }
}

async fn dump(backing: &Backing) -> Option<String> {
    match backing {
        Backing::Memory => None,
        Backing::Redis { urls, .. } => {
            let mut out = String::new();
            for url in urls {
                out.push_str(&dump_redis_node(url).await);
            }
            Some(out)
        }
        Backing::Dynamo { client, table } => {
            let items = client
                .scan()
                .table_name(table)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .expect("scan the table");
            Some(format!("{items:?}"))
        }
        Backing::Both(front, back) => {
            let front = Box::pin(dump(front)).await.unwrap_or_default();
            let back = Box::pin(dump(back)).await.unwrap_or_default();
            Some(format!("{front}\n{back}"))
        }
    }
}

/// One key of a Redis node and what it holds: a hash's fields and values in turn, a string's
/// value; nothing for other types.
pub struct RedisEntry {
    pub key: Vec<u8>,
    pub kind: String,
    pub parts: Vec<Vec<u8>>,
}

/// Every key of one Redis node (by `SCAN`), sorted, with its content.
pub async fn redis_entries(url: &str) -> Vec<RedisEntry> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    let mut entries = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let parts: Vec<Vec<u8>> = match kind.as_str() {
            "hash" => redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "string" => vec![
                redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap(),
            ],
            _ => vec![],
        };
        entries.push(RedisEntry { key, kind, parts });
    }
    entries
}

async fn dump_redis_node(url: &str) -> String {
    let mut out = String::new();
    for entry in redis_entries(url).await {
        out.push_str(&String::from_utf8_lossy(&entry.key));
        for part in entry.parts {
            out.push(' ');
            // Both forms: a raw secret could hide in binary as well as in text.
            out.push_str(&String::from_utf8_lossy(&part));
            out.push(' ');
            out.push_str(&hex(&part));
        }
        out.push('\n');
    }
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
