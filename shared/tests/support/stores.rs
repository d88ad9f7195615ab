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
    let store = dynamo_over(client.clone(), &table).with_max_sessions(TEST_MAX_SESSIONS);
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

/// Generous, like [`TEST_TIMEOUT`]: moto is a Python server on a busy 2-core machine, and a
/// logout-all of 100 sessions is several calls. The budgets are measured by `make bench`.
pub const TEST_DYNAMO_CALL: Duration = Duration::from_secs(10);

/// A DynamoDB store over `client`, with the tests' call budget.
pub fn dynamo_over(client: aws_sdk_dynamodb::Client, table: &str) -> DynamoStore {
    DynamoStore::from_client(client, table).with_call_timeout(TEST_DYNAMO_CALL)
}

/// A store over `table` on a local server (the table may not exist yet).
pub fn dynamo_store(endpoint: &str, table: &str) -> DynamoStore {
    dynamo_over(dynamo_client(endpoint), table)
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
            let items = scan_table(client, table).await;
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

/// Several Redis-in-front-of-DynamoDB stores over one redis-server and one table, each standing
/// for a Lambda container with its own epoch cache and Redis skip state.
pub struct Fleet {
    pub redis: RedisServer,
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
}

/// Short enough that a container rereads the epoch on nearly every request: the race tests
/// count on the protocol's own epoch reads, never on sleeping past an interval.
pub const FLEET_EPOCH_CHECK: Duration = Duration::from_millis(1);

impl Fleet {
    pub async fn start() -> Fleet {
        let redis = RedisServer::start();
        let (_, backing) = dynamo_table().await;
        let Backing::Dynamo { client, table } = backing else {
            unreachable!()
        };
        Fleet {
            redis,
            client,
            table,
        }
    }

    /// A container that reaches Redis.
    pub async fn container(&self) -> Store {
        self.container_over(self.client.clone()).await
    }

    /// A container whose DynamoDB calls go through `client` (one with a fault interceptor).
    pub async fn container_over(&self, client: aws_sdk_dynamodb::Client) -> Store {
        let Store::Redis(front) = connect_redis(&self.redis.url()).await else {
            unreachable!()
        };
        Store::Tiered(TieredStore::new(
            dynamo_over(client, &self.table).with_max_sessions(TEST_MAX_SESSIONS),
            Some(front),
            self.connect(&self.redis.url()),
            Duration::from_millis(500),
            FLEET_EPOCH_CHECK,
        ))
    }

    /// A container that cannot reach Redis (started while it was down, skipping it for the
    /// length of the test): it serves from DynamoDB and bumps the epoch on every revocation.
    pub fn container_without_redis(&self) -> Store {
        let dead = format!("redis://127.0.0.1:{}", super::servers::free_port());
        Store::Tiered(TieredStore::new(
            dynamo_over(self.client.clone(), &self.table).with_max_sessions(TEST_MAX_SESSIONS),
            None,
            self.connect(&dead),
            Duration::from_secs(3600),
            FLEET_EPOCH_CHECK,
        ))
    }

    /// The record alone: what DynamoDB holds, read by the DynamoDB store.
    pub fn record(&self) -> Store {
        Store::Dynamodb(
            dynamo_over(self.client.clone(), &self.table).with_max_sessions(TEST_MAX_SESSIONS),
        )
    }

    fn connect(&self, url: &str) -> RedisConnect {
        RedisConnect {
            url: url.to_owned(),
            mode: RedisMode::Auto,
            connect_timeout: TEST_TIMEOUT,
            command_timeout: TEST_TIMEOUT,
            max_sessions: TEST_MAX_SESSIONS,
        }
    }

    /// Everything both stores hold; see [`snapshot`].
    pub async fn snapshot(&self) -> String {
        snapshot(Some(&self.redis.url()), &self.client, &self.table).await
    }

    /// How many keys Redis holds, and how many of them have no TTL.
    pub async fn redis_keys(&self) -> (usize, usize) {
        let url = self.redis.url();
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let entries = redis_entries(&url).await;
        let mut without_ttl = 0;
        for entry in &entries {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(&entry.key)
                .query_async(&mut conn)
                .await
                .unwrap();
            without_ttl += usize::from(ttl < 0);
        }
        (entries.len(), without_ttl)
    }
}

/// Everything the stores hold: every key of the Redis at `redis_url` (when given) with its type,
/// absolute expiry (`PEXPIRETIME`, -1 without a TTL) and content, then every item of the table.
/// Two snapshots are equal only if nothing was written, no TTL moved and no epoch was bumped.
pub async fn snapshot(
    redis_url: Option<&str>,
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> String {
    let mut out = String::new();
    if let Some(url) = redis_url {
        let redis_client = redis::Client::open(url).unwrap();
        let mut conn = redis_client
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        for entry in redis_entries(url).await {
            let expires: i64 = redis::cmd("PEXPIRETIME")
                .arg(&entry.key)
                .query_async(&mut conn)
                .await
                .unwrap();
            out.push_str(&format!(
                "{} {} expires={expires}",
                String::from_utf8_lossy(&entry.key),
                entry.kind
            ));
            for part in entry.parts {
                out.push(' ');
                out.push_str(&hex(&part));
            }
            out.push('\n');
        }
    }
    let items = scan_table(client, table).await;
    // Attributes and items in a fixed order, so that equal contents compare equal.
    let mut items: Vec<String> = items
        .into_iter()
        .map(|item| {
            format!(
                "{:?}",
                item.into_iter()
                    .collect::<std::collections::BTreeMap<_, _>>()
            )
        })
        .collect();
    items.sort_unstable();
    out.push_str(&items.join("\n"));
    out
}

/// Every item of `table`, by a paginated scan.
pub async fn scan_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    client
        .scan()
        .table_name(table)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("scan the table")
}
