//! The stores under test, each over a real server: a fresh redis-server per test, the shared
//! local cluster, the shared moto server with a fresh table per test.

use super::servers::{Moto, RedisCluster, RedisServer};
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use shared::config::RedisMode;
use shared::store::{DynamoStore, MemoryStore, RedisStore};
use shared::{SessionToken, Store};
use std::time::Duration;

/// Generous: these machines are small and busy; the budgets are measured by `make bench`.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(3);

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
}

pub fn memory() -> Subject {
    Subject {
        store: Store::Memory(MemoryStore::new()),
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
    let client = dynamo_client(&Moto::shared().endpoint());
    let table = unique("sessions");
    let store = DynamoStore::from_client(client.clone(), &table);
    store.ensure_table().await.expect("create the test table");
    Subject {
        store: Store::Dynamodb(store),
        isolated: true,
        backing: Backing::Dynamo { client, table },
    }
}

pub async fn connect_redis(url: &str) -> Store {
    let store = RedisStore::connect(url, RedisMode::Auto, TEST_TIMEOUT, TEST_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    Store::Redis(store)
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
        match &self.backing {
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
        }
    }
}

async fn dump_redis_node(url: &str) -> String {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut out = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let value: Vec<Vec<u8>> = match kind.as_str() {
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
        out.push_str(&String::from_utf8_lossy(&key));
        for part in value {
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
