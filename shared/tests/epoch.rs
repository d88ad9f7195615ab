//! The store epoch with Redis in front of DynamoDB: copies in partitions of their own, one of them
//! read at random, all of them bumped in one transaction. Each test stands containers (stores with
//! their own epoch cache) over one redis-server and one moto table, and judges by what the table
//! holds, what Redis holds and what the containers answer.

mod support;

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeSerializationInterceptorContextRef,
    BeforeTransmitInterceptorContextMut,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::operation::get_item::GetItemInput;
use aws_sdk_dynamodb::types::AttributeValue;
use shared::config::RedisMode;
use shared::session::{Lifetimes, Session, now_unix};
use shared::store::{DynamoStore, RedisConnect, StoreErrorKind, TieredStore};
use shared::token::UserKey;
use shared::{SessionToken, Store};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::faults::one_at_a_time;
use support::servers::{Moto, redis_command};
use support::stores::{
    FLEET_EPOCH_CHECK, Fleet, TEST_MAX_SESSIONS, TEST_TIMEOUT, connect_redis, dynamo_client,
    dynamo_over, unique,
};

const LIFETIMES: Lifetimes = Lifetimes {
    session: 3600,
    remember_me: 2_592_000,
    max_lifetime: 7_776_000,
};

/// What the epoch is before its first bump: far above any epoch stamped before it had copies.
const BASE: u64 = 1 << 32;
const COPIES: u32 = DynamoStore::EPOCH_COPIES;

type Item = HashMap<String, AttributeValue>;

fn session_of(user: &str) -> (SessionToken, Session) {
    (
        SessionToken::mint(user),
        Session::new(user, false, None, LIFETIMES, now_unix()),
    )
}

/// Every item of the table that is, or once was, the store epoch, by partition key.
async fn epoch_items(fleet: &Fleet) -> BTreeMap<String, Item> {
    let items = support::stores::scan_table(&fleet.client, &fleet.table).await;
    items
        .into_iter()
        .filter_map(|item| {
            let pk = item.get("pk")?.as_s().ok()?.clone();
            (pk.starts_with("EPOCH") || pk == "META").then_some((pk, item))
        })
        .collect()
}

fn number(item: &Item, name: &str) -> i64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not a number in {item:?}"))
}

/// Asserts that the table holds exactly the copies of one epoch, each bumped `bumps` times.
async fn assert_copies_hold(fleet: &Fleet, bumps: i64) {
    let items = epoch_items(fleet).await;
    let expected: Vec<String> = (0..COPIES).map(|i| format!("EPOCH#{i}")).collect();
    assert_eq!(
        items
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        expected.iter().cloned().collect(),
        "one item per copy, nothing else (no legacy item)"
    );
    for (pk, item) in &items {
        assert_eq!(item.get("sk").and_then(|v| v.as_s().ok()).unwrap(), "EPOCH");
        assert_eq!(number(item, "epoch"), bumps, "{pk}");
        assert_eq!(number(item, "copies"), i64::from(COPIES), "{pk}");
    }
}

/// A container without Redis bumps the epoch on every logout: `n` sessions created and logged out.
async fn bump(store: &Store, n: usize) {
    for _ in 0..n {
        let (token, session) = session_of(&unique("user"));
        store.create(&token, &session).await.unwrap();
        assert!(store.delete(&token).await.unwrap());
    }
}

async fn redis_conn(fleet: &Fleet) -> redis::aio::MultiplexedConnection {
    redis::Client::open(fleet.redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// What Redis holds for a session: its raw field, if any.
async fn redis_field(fleet: &Fleet, token: &SessionToken) -> Option<String> {
    redis::cmd("HGET")
        .arg(format!("sess:{{{}}}", token.user_key().as_str()))
        .arg(token.hash().as_bytes().as_slice())
        .query_async(&mut redis_conn(fleet).await)
        .await
        .unwrap()
}

/// The epoch a live Redis entry was stamped with (`created|expires|absolute|idle|remember|
/// last_seen|epoch|ua`).
fn stamp(field: &str) -> u64 {
    field
        .split('|')
        .nth(6)
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("not a session record: {field}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bump_moves_every_copy_alike() {
    let fleet = Fleet::start().await;
    let outage = fleet.container_without_redis();
    // A read before any bump writes nothing.
    let (token, session) = session_of(&unique("user"));
    outage.create(&token, &session).await.unwrap();
    assert!(epoch_items(&fleet).await.is_empty());
    for bumps in 1..=3 {
        bump(&outage, 1).await;
        assert_copies_hold(&fleet, bumps).await;
    }
}

/// Counts the epoch copies that GetItem reads, by copy.
#[derive(Debug, Default, Clone)]
struct EpochReads(Arc<Mutex<BTreeMap<String, u32>>>);

impl Intercept for EpochReads {
    fn name(&self) -> &'static str {
        "EpochReads"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if let Some(pk) = context
            .input()
            .downcast_ref::<GetItemInput>()
            .and_then(|i| i.key())
            .and_then(|k| k.get("pk"))
            .and_then(|pk| pk.as_s().ok())
            .filter(|pk| pk.starts_with("EPOCH") || pk.starts_with("META"))
        {
            *self.0.lock().unwrap().entry(pk.clone()).or_default() += 1;
        }
        Ok(())
    }
}

/// Many containers, each reading the copy it happens to pick, stamp the same epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_reading_different_copies_agree() {
    let fleet = Fleet::start().await;
    bump(&fleet.container_without_redis(), 3).await;
    let reads = EpochReads::default();
    let client = fleet
        .client
        .config()
        .to_builder()
        .interceptor(reads.clone())
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(client);
    let mut stamps = Vec::new();
    for _ in 0..64 {
        // A fresh container reads the epoch for its first create's fence.
        let container = fleet.container_over(client.clone()).await;
        let (token, session) = session_of(&unique("user"));
        container.create(&token, &session).await.unwrap();
        stamps.push(stamp(&redis_field(&fleet, &token).await.expect("in Redis")));
    }
    assert!(
        stamps.iter().all(|&s| s == BASE + 3),
        "stamps differ: {stamps:?}"
    );
    let reads = reads.0.lock().unwrap().clone();
    assert!(
        reads.keys().all(|pk| pk.starts_with("EPOCH#")),
        "the legacy item was read: {reads:?}"
    );
    assert_eq!(
        reads.values().sum::<u32>(),
        64,
        "one read per fence: {reads:?}"
    );
    // 64 uniform picks of 16 copies reach fewer than 8 of them with a chance below 1e-18.
    assert!(
        reads.len() >= 8,
        "reads not spread over the copies: {reads:?}"
    );
}

/// A container that never saw Redis logs a session out: Redis still holds it, and every container
/// with Redis, one started afterwards included, refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_during_an_outage_reaches_every_container() {
    let fleet = Fleet::start().await;
    let (before, outage) = (fleet.container().await, fleet.container_without_redis());
    let (token, session) = session_of(&unique("user"));
    before.create(&token, &session).await.unwrap();
    assert!(before.get(&token, now_unix()).await.unwrap().is_some());

    assert!(outage.delete(&token).await.unwrap());
    let held = redis_field(&fleet, &token).await.expect("Redis missed it");
    assert_eq!(stamp(&held), BASE, "Redis still holds the live entry");

    let after = fleet.container().await;
    tokio::time::sleep(FLEET_EPOCH_CHECK * 5).await;
    for (name, store) in [("started after", &after), ("started before", &before)] {
        assert_eq!(
            store.get(&token, now_unix()).await.unwrap(),
            None,
            "a container {name} the revocation served it from Redis"
        );
    }
}

/// The container whose Redis write failed bumps the epoch and must not go on trusting its own copy
/// from before the bump, however long its interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_that_bumped_rereads_the_epoch() {
    let fleet = Fleet::start().await;
    let Store::Redis(front) = connect_redis(&fleet.redis.url()).await else {
        unreachable!()
    };
    let retry_after = Duration::from_millis(100);
    let container = Store::Tiered(TieredStore::new(
        dynamo_over(fleet.client.clone(), &fleet.table).with_max_sessions(TEST_MAX_SESSIONS),
        Some(front),
        RedisConnect {
            url: fleet.redis.url(),
            mode: RedisMode::Auto,
            connect_timeout: TEST_TIMEOUT,
            command_timeout: TEST_TIMEOUT,
            max_sessions: TEST_MAX_SESSIONS,
        },
        retry_after,
        Duration::from_secs(3600),
    ));
    let (token, session) = session_of(&unique("user"));
    container.create(&token, &session).await.unwrap();

    // Redis refuses writes (out of memory) and still answers reads: the tombstone is lost.
    let port = fleet.redis.port();
    redis_command(port, &["CONFIG", "SET", "maxmemory", "1"], TEST_TIMEOUT).unwrap();
    let deleted = container.delete(&token).await;
    redis_command(port, &["CONFIG", "SET", "maxmemory", "0"], TEST_TIMEOUT).unwrap();
    assert!(deleted.unwrap());
    assert_copies_hold(&fleet, 1).await;
    let held = redis_field(&fleet, &token).await.expect("Redis missed it");
    assert_eq!(stamp(&held), BASE);

    tokio::time::sleep(retry_after * 2).await;
    assert_eq!(
        container.get(&token, now_unix()).await.unwrap(),
        None,
        "the container served from Redis what its own bump revoked"
    );
}

/// Logouts from several containers at once, each bumping the epoch: every bump lands, on every
/// copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bumps_all_land() {
    let fleet = Fleet::start().await;
    let client = dynamo_client(&one_at_a_time(&Moto::shared().endpoint()).await);
    let (containers, per_container) = (4, 5);
    let mut logouts = Vec::new();
    for _ in 0..containers {
        let store = without_redis_over(&fleet, client.clone());
        for _ in 0..per_container {
            let (token, session) = session_of(&unique("user"));
            store.create(&token, &session).await.unwrap();
            logouts.push((store.clone(), token));
        }
    }
    let logouts: Vec<_> = logouts
        .into_iter()
        .map(|(store, token)| tokio::spawn(async move { store.delete(&token).await }))
        .collect();
    for logout in logouts {
        assert!(logout.await.unwrap().unwrap());
    }
    assert_copies_hold(&fleet, containers * per_container).await;
}

/// Turns the first `conflicts` epoch bumps into a transaction conflict, as DynamoDB answers when
/// another bump holds the copies: the request goes out as a harmless `ListTables`, and its answer
/// is replaced by a cancellation.
#[derive(Debug)]
struct Conflicts {
    conflicts: u32,
    attempts: Arc<AtomicU32>,
    /// Decoys sent whose answer is not replaced yet (the container sends one call at a time).
    decoys: AtomicU32,
}

const DECOY: &str = "DynamoDB_20120810.ListTables";

impl Intercept for Conflicts {
    fn name(&self) -> &'static str {
        "Conflicts"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let request = context.request_mut();
        let bump = request
            .headers()
            .get("x-amz-target")
            .is_some_and(|t| t.ends_with(".TransactWriteItems"));
        if bump && self.attempts.fetch_add(1, Ordering::SeqCst) < self.conflicts {
            request.headers_mut().insert("x-amz-target", DECOY);
            self.decoys.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let decoy = self
            .decoys
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if decoy {
            let reasons = vec![r#"{"Code":"TransactionConflict"}"#; COPIES as usize].join(",");
            let body = format!(
                r#"{{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"Transaction cancelled","CancellationReasons":[{reasons}]}}"#
            );
            let response = context.response_mut();
            *response.status_mut() = 400.try_into().unwrap();
            response.headers_mut().remove("content-length");
            response
                .headers_mut()
                .insert("content-type", "application/x-amz-json-1.0");
            *response.body_mut() = body.into();
        }
        Ok(())
    }
}

/// A container without Redis whose epoch bumps conflict `conflicts` times.
fn conflicting_container(fleet: &Fleet, conflicts: u32) -> (Store, Arc<AtomicU32>) {
    let attempts = Arc::new(AtomicU32::new(0));
    let config = fleet
        .client
        .config()
        .to_builder()
        .interceptor(Conflicts {
            conflicts,
            attempts: attempts.clone(),
            decoys: AtomicU32::new(0),
        })
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    (without_redis_over(fleet, client), attempts)
}

/// Like `Fleet::container_without_redis`, with its DynamoDB calls through `client`.
fn without_redis_over(fleet: &Fleet, client: aws_sdk_dynamodb::Client) -> Store {
    let dead = format!("redis://127.0.0.1:{}", support::servers::free_port());
    Store::Tiered(TieredStore::new(
        dynamo_over(client, &fleet.table).with_max_sessions(TEST_MAX_SESSIONS),
        None,
        RedisConnect {
            url: dead,
            mode: RedisMode::Auto,
            connect_timeout: TEST_TIMEOUT,
            command_timeout: TEST_TIMEOUT,
            max_sessions: TEST_MAX_SESSIONS,
        },
        Duration::from_secs(3600),
        FLEET_EPOCH_CHECK,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bump_that_conflicts_is_retried() {
    let fleet = Fleet::start().await;
    let (store, attempts) = conflicting_container(&fleet, 2);
    let (token, session) = session_of(&unique("user"));
    store.create(&token, &session).await.unwrap();
    assert!(store.delete(&token).await.unwrap());
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "two conflicts, then it landed"
    );
    assert_copies_hold(&fleet, 1).await;

    // A bump that keeps conflicting gives up, after a few short attempts, and says so.
    let (store, attempts) = conflicting_container(&fleet, u32::MAX);
    let (token, session) = session_of(&unique("user"));
    store.create(&token, &session).await.unwrap();
    let started = Instant::now();
    assert!(
        store.delete(&token).await.is_err(),
        "an unconfirmed revocation"
    );
    let tried = attempts.load(Ordering::SeqCst);
    assert!((2..=10).contains(&tried), "{tried} attempts");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_copies_hold(&fleet, 1).await;
}

/// Copies written by a build with another number of copies: no container of this build trusts
/// them or writes over them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_another_format_are_refused() {
    let fleet = Fleet::start().await;
    let reader = fleet.container().await;
    let (token, session) = session_of(&unique("user"));
    reader.create(&token, &session).await.unwrap();
    bump(&fleet.container_without_redis(), 1).await;

    // As a build with 32 copies would leave them after its bumps.
    for copy in 0..32 {
        fleet
            .client
            .put_item()
            .table_name(&fleet.table)
            .item("pk", AttributeValue::S(format!("EPOCH#{copy}")))
            .item("sk", AttributeValue::S("EPOCH".to_owned()))
            .item("epoch", AttributeValue::N("9".to_owned()))
            .item("copies", AttributeValue::N("32".to_owned()))
            .send()
            .await
            .unwrap();
    }
    let before = epoch_items(&fleet).await;

    tokio::time::sleep(FLEET_EPOCH_CHECK * 5).await;
    let read = reader.get(&token, now_unix()).await;
    let error = read.expect_err("a copy of another format was trusted");
    assert_eq!(error.kind, StoreErrorKind::Corrupt, "{error}");
    assert!(error.detail.contains("32"), "{error}");

    let fresh = fleet.container().await;
    let (other, other_session) = session_of(&unique("user"));
    let created = fresh.create(&other, &other_session).await;
    assert_eq!(created.unwrap_err().kind, StoreErrorKind::Corrupt);

    // A bump refuses to write over them (their readers would miss it), and says so.
    let outage = fleet.container_without_redis();
    let (third, third_session) = session_of(&unique("user"));
    fleet.record().create(&third, &third_session).await.unwrap();
    let logout = outage.delete(&third).await;
    assert_eq!(logout.unwrap_err().kind, StoreErrorKind::Corrupt);
    assert_eq!(epoch_items(&fleet).await, before, "a bump wrote over them");
}

/// Entries Redis holds from before the epoch had copies (stamped with the single item's count, or
/// 0 by Redis alone) are checked against the record once, then repaired: no flush is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_stamped_before_the_copies_are_checked_against_the_record() {
    let fleet = Fleet::start().await;
    // The epoch as it was kept before: one item, bumped six times (read as 7).
    fleet
        .client
        .put_item()
        .table_name(&fleet.table)
        .item("pk", AttributeValue::S("META".to_owned()))
        .item("sk", AttributeValue::S("EPOCH".to_owned()))
        .item("epoch", AttributeValue::N("6".to_owned()))
        .send()
        .await
        .unwrap();
    let user = unique("user");
    let key = UserKey::for_user(&user);
    let now = now_unix();
    let mut conn = redis_conn(&fleet).await;
    let mut revoked = Vec::new();
    for legacy_stamp in [7, 0] {
        // Current when written, then logged out while Redis was down: the record lacks it.
        let token = SessionToken::mint(&user);
        let record = format!(
            "{}|{}|{}|3600|0|{}|{legacy_stamp}|",
            now - 10,
            now + 3600,
            now + 7_776_000,
            now - 10
        );
        let _: () = redis::cmd("HSET")
            .arg(format!("sess:{{{}}}", key.as_str()))
            .arg(token.hash().as_bytes().as_slice())
            .arg(record)
            .query_async(&mut conn)
            .await
            .unwrap();
        revoked.push(token);
    }
    let _: () = redis::cmd("EXPIRE")
        .arg(format!("sess:{{{}}}", key.as_str()))
        .arg(3600)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("cache:{{{}}}", key.as_str()))
        .arg(format!("{}|7|{{\"stale\":true}}", now + 3600))
        .arg("EX")
        .arg(3600)
        .query_async(&mut conn)
        .await
        .unwrap();

    let container = fleet.container().await;
    for token in &revoked {
        assert_eq!(
            container.get(token, now_unix()).await.unwrap(),
            None,
            "an entry stamped before the copies was trusted"
        );
        let repaired = redis_field(&fleet, token).await.expect("a tombstone");
        assert!(repaired.starts_with("revoked|"), "not repaired: {repaired}");
    }
    assert_eq!(container.cache_get(&key, now_unix()).await.unwrap(), None);
    // The legacy item is neither read nor written.
    let items = epoch_items(&fleet).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(number(&items["META"], "epoch"), 6);
}
