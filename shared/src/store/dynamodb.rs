//! DynamoDB: one table, partition key `pk` = `USER#<user key>`, sort key `sk` =
//! `SESSION#<token hash, hex>` or `CACHE`. A user's sessions share a partition, so validate is one
//! strongly consistent `GetItem` and logout-all one strongly consistent `Query` plus batched
//! deletes. `ttl` lets DynamoDB delete lapsed items, days late; reads refuse them before that.
//! With Redis in front, the store epoch lives beside them as [`DynamoStore::EPOCH_COPIES`] copies
//! (`pk` = `EPOCH#<i>`, `sk` = `EPOCH`), each its own partition (docs/both-stores.md, "The epoch
//! at scale").

use super::{StoreError, StoreErrorKind};
use crate::session::{GlobalStats, Session};
use crate::token::{TokenHash, UserKey};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, KeySchemaElement, KeyType,
    ReturnValue, ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem, Update,
    WriteRequest,
};
use std::collections::HashMap;
use std::time::Duration;

const BACKEND: &str = "dynamodb";
/// BatchWriteItem takes at most 25 requests.
const BATCH: usize = 25;
/// How often unprocessed deletes of one batch are sent again before giving up, with a back-off
/// that doubles from [`BATCH_BACKOFF`] (and a random part, so that throttled callers spread).
const BATCH_RETRIES: u32 = 5;
const BATCH_BACKOFF: Duration = Duration::from_millis(25);
/// Added to the stored count of bumps: far above any epoch stamped before the epoch had copies
/// (the count of the single item that held it then), so every such Redis entry is checked
/// against the record once.
const EPOCH_BASE: u64 = 1 << 32;
/// Attempts of an epoch bump that conflicts with concurrent ones, with pauses doubling from
/// [`EPOCH_BUMP_BACKOFF`] (5–10, 10–20, 20–40, 40–80 ms); all within one call's budget.
const EPOCH_BUMP_ATTEMPTS: u32 = 5;
const EPOCH_BUMP_BACKOFF: Duration = Duration::from_millis(10);
const SESSION_PREFIX: &str = "SESSION#";
const CACHE_SK: &str = "CACHE";

type Item = HashMap<String, AttributeValue>;

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    max_sessions: usize,
    /// The budget of one call, retries included (`DYNAMODB_TIMEOUT_MS`); operations of several
    /// calls get a whole number of these (see `crate::budget`).
    call_timeout: Duration,
}

impl DynamoStore {
    /// A store over `table`, with credentials and region from the environment as Lambda sets
    /// them (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`; `AWS_REGION`, else
    /// `AWS_DEFAULT_REGION`). Not aws-config's whole default chain (profile files, SSO, STS web
    /// identity, ECS, instance metadata), which a function never reaches and whose code and
    /// start-up every bootstrap would carry (docs/build-profiles.md). `endpoint` overrides the
    /// service endpoint (a local server). Every call is bounded by `timeout`, retries included.
    pub async fn connect(table: &str, endpoint: Option<&str>, timeout: Duration) -> Self {
        use aws_sdk_dynamodb::config::{BehaviorVersion, Region, timeout::TimeoutConfig};
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(timeout)
            .operation_timeout(timeout)
            .build();
        let region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .into_iter()
            .find_map(|name| std::env::var(name).ok().filter(|r| !r.is_empty()));
        let mut config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(
                aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
            )
            .region(region.map(Region::new))
            .timeout_config(timeouts);
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint);
        }
        let mut store = Self::from_client(Client::from_conf(config.build()), table);
        store.call_timeout = timeout;
        store
    }

    /// A store over an already configured client.
    pub fn from_client(client: Client, table: &str) -> Self {
        DynamoStore {
            client,
            table: table.to_owned(),
            max_sessions: super::DEFAULT_MAX_SESSIONS_PER_USER,
            call_timeout: Duration::from_millis(crate::config::DEFAULT_DYNAMODB_TIMEOUT_MS),
        }
    }

    /// The budget of one call (`DYNAMODB_TIMEOUT_MS`), from which operations of several calls
    /// get theirs.
    pub fn with_call_timeout(mut self, call_timeout: Duration) -> Self {
        self.call_timeout = call_timeout;
        self
    }

    /// Caps the sessions one user may hold; creating one more evicts the oldest.
    pub fn with_max_sessions(mut self, max_sessions: usize) -> Self {
        self.max_sessions = max_sessions.max(1);
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table (on-demand, TTL on `ttl`) if it does not exist. For local servers and
    /// tests; a deployed table comes from `template.yaml`.
    pub async fn ensure_table(&self) -> Result<(), StoreError> {
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type are set")
        };
        let key = |name: &str, key_type| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .expect("name and type are set")
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(attribute("pk"))
            .attribute_definitions(attribute("sk"))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.code() == Some("ResourceInUseException") => return Ok(()),
            Err(e) => return Err(store_error(e)),
        }
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("ttl")
                    .build()
                    .expect("name and flag are set"),
            )
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    pub(super) async fn create(
        &self,
        user: &UserKey,
        hash: &TokenHash,
        session: &Session,
    ) -> Result<(), StoreError> {
        self.create_evicting(user, hash, session).await.1
    }

    /// Stores a new session and, past the cap, evicts the oldest of the user's other active
    /// sessions that are older than it (by creation time, ties by token hash). Returns, beside
    /// the result, the token hashes it set out to evict: whatever the result, the record may
    /// have lost them (a delete can be applied and its answer still time out). Never evicting a
    /// newer session is what makes concurrent creates at the cap end as some order of them
    /// would: each keeps the newest ones it saw.
    pub(super) async fn create_evicting(
        &self,
        user: &UserKey,
        hash: &TokenHash,
        session: &Session,
    ) -> (Vec<TokenHash>, Result<(), StoreError>) {
        let item = encode(user, hash, session);
        let put = async {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                // A token hash is never reused; refuse to overwrite rather than trust that.
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await
                .map_err(store_error)
        };
        // The cap's Query leaves the new session out, so it may run beside the PutItem: one
        // round trip of waiting, not two.
        let others = match tokio::try_join!(put, self.other_active_sessions(user, hash)) {
            Ok((_, others)) => others,
            Err(e) => return (Vec::new(), Err(e)),
        };
        let new = (session.created_at, session_sk(hash));
        self.evict_past_cap(user, others, &new).await
    }

    /// (created, sk) of the user's active sessions other than `except`; one consistent Query.
    async fn other_active_sessions(
        &self,
        user: &UserKey,
        except: &TokenHash,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let now = crate::session::now_unix();
        let except = session_sk(except);
        Ok(within(self.call_timeout, self.query_sessions(user))
            .await?
            .iter()
            .filter_map(|item| {
                let sk = item.get("sk")?.as_s().ok()?.clone();
                let session = decode(user, item).ok()?;
                (session.is_active(now) && sk != except).then_some((session.created_at, sk))
            })
            .collect())
    }

    /// Deletes the oldest of `active` that are older than `new`, so that with it the user holds
    /// at most the cap; deletes only when over. One call's budget for all of it.
    async fn evict_past_cap(
        &self,
        user: &UserKey,
        mut active: Vec<(i64, String)>,
        new: &(i64, String),
    ) -> (Vec<TokenHash>, Result<(), StoreError>) {
        if active.len() < self.max_sessions {
            return (Vec::new(), Ok(()));
        }
        active.sort();
        let excess = active.len() + 1 - self.max_sessions;
        let evicted: Vec<(i64, String)> = active
            .into_iter()
            .take(excess)
            .take_while(|older| older < new)
            .collect();
        let keys: Vec<Item> = evicted.iter().map(|(_, sk)| key(user, sk)).collect();
        let result = within(self.call_timeout, async {
            for chunk in keys.chunks(BATCH) {
                self.delete_batch(chunk).await?;
            }
            Ok(())
        })
        .await;
        let hashes = evicted
            .iter()
            .filter_map(|(_, sk)| hash_of_sk(sk))
            .collect();
        (hashes, result)
    }

    /// How many copies of the store epoch the table holds, each its own partition (`pk` =
    /// `EPOCH#<i>`): a reader reads one of them, a bump writes them all, so that no single
    /// partition takes every container's reads. Stored with every copy: changing it is a change
    /// of the table's format (see `docs/both-stores.md`, "The epoch at scale").
    pub const EPOCH_COPIES: u32 = 16;

    /// The store epoch (see `tiered`): one copy, chosen at random, read with strong consistency;
    /// [`EPOCH_BASE`] plus the stored count, so that entries stamped before the copies existed
    /// (a smaller epoch, or 0 by Redis alone) are never trusted again without the record.
    pub(super) async fn epoch(&self) -> Result<u64, StoreError> {
        let copy = getrandom::u32().unwrap_or(0) % Self::EPOCH_COPIES;
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(epoch_key(copy)))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        let Some(item) = out.item() else {
            return Ok(EPOCH_BASE);
        };
        let copies = int(item, "copies")?;
        if copies != i64::from(Self::EPOCH_COPIES) {
            // Containers of another build read other copies: they must not disagree silently.
            return Err(StoreError {
                backend: BACKEND,
                kind: StoreErrorKind::Corrupt,
                detail: format!(
                    "epoch copy {copy} was written with {copies} copies, this build uses {}",
                    Self::EPOCH_COPIES
                ),
            });
        }
        Ok(EPOCH_BASE + int(item, "epoch")?.max(0) as u64)
    }

    /// Moves the store epoch on by one: every copy in one transaction, so that all of them
    /// always hold the same value, whichever a reader picks. Returns nothing (a transaction
    /// returns no values): the caller forgets its copy and rereads. A conflict with another
    /// bump is retried, within one call's budget.
    pub(super) async fn bump_epoch(&self) -> Result<(), StoreError> {
        // The tests' local DynamoDB (moto) applies concurrent transactions over the same items
        // neither atomically nor in isolation, where DynamoDB serializes them: in test builds,
        // one process bumps one at a time.
        #[cfg(feature = "test-hooks")]
        let _one = crate::hooks::MOTO_TRANSACTIONS.lock().await;
        within(self.call_timeout, async {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.bump_epoch_once().await {
                    Err(EpochBump::Conflict(e)) if attempt < EPOCH_BUMP_ATTEMPTS => {
                        tracing::debug!(cause = %e, attempt, "epoch bump conflicted; retrying");
                        tokio::time::sleep(epoch_backoff(attempt)).await;
                    }
                    Err(EpochBump::Conflict(e) | EpochBump::Failed(e)) => return Err(e),
                    Ok(()) => return Ok(()),
                }
            }
        })
        .await
    }

    async fn bump_epoch_once(&self) -> Result<(), EpochBump> {
        let copies = Self::EPOCH_COPIES;
        let items = (0..copies).map(|copy| {
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(epoch_key(copy)))
                .update_expression("ADD epoch :one SET copies = :copies")
                // Never write over copies of another format: its readers would miss the bump.
                .condition_expression("attribute_not_exists(copies) OR copies = :copies")
                .expression_attribute_values(":one", number(1))
                .expression_attribute_values(":copies", number(copies))
                .build()
                .expect("table, key and expression are set");
            TransactWriteItem::builder().update(update).build()
        });
        let sent = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items.collect()))
            .send()
            .await;
        let e = match sent {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let reasons: Vec<&str> = match e.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(canceled)) => canceled
                .cancellation_reasons()
                .iter()
                .filter_map(|reason| reason.code())
                .collect(),
            _ => Vec::new(),
        };
        let has = |code: &str| reasons.contains(&code);
        let error = |kind, detail: String| StoreError {
            backend: BACKEND,
            kind,
            detail,
        };
        Err(if has("ConditionalCheckFailed") {
            EpochBump::Failed(error(
                StoreErrorKind::Corrupt,
                format!(
                    "the epoch's copies were written with another number of copies than this \
                     build's {copies}"
                ),
            ))
        } else if has("TransactionConflict") {
            EpochBump::Conflict(error(StoreErrorKind::Other, store_error(e).detail))
        } else if has("ThrottlingError") || has("ProvisionedThroughputExceeded") {
            EpochBump::Failed(error(StoreErrorKind::Capacity, store_error(e).detail))
        } else {
            EpochBump::Failed(store_error(e))
        })
    }

    pub(super) async fn get(
        &self,
        user: &UserKey,
        hash: &TokenHash,
    ) -> Result<Option<Session>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(user, &session_sk(hash))))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        out.item().map(|item| decode(user, item)).transpose()
    }

    pub(super) async fn refresh(
        &self,
        user: &UserKey,
        hash: &TokenHash,
        now: i64,
    ) -> Result<Option<Session>, StoreError> {
        // One conditional write. DynamoDB cannot take a minimum, so the stored `expires_at` may
        // pass the absolute cap; `Session::expiry` applies the cap on every read.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(user, &session_sk(hash))))
            .update_expression(
                "SET expires_at = :now + idle_timeout, last_refreshed_at = :now, #ttl = :now + idle_timeout",
            )
            .condition_expression(
                "attribute_exists(pk) AND expires_at > :now AND absolute_expires_at > :now",
            )
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", number(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => out.attributes().map(|item| decode(user, item)).transpose(),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    pub(super) async fn delete(
        &self,
        user: &UserKey,
        hash: &TokenHash,
    ) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(user, &session_sk(hash))))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(store_error)?;
        Ok(out.attributes().is_some())
    }

    pub(super) async fn delete_user(&self, user: &UserKey, now: i64) -> Result<u64, StoreError> {
        self.delete_user_fenced(user, now).await.1
    }

    /// Deletes every session item of a user, the `Query` and all batches within one budget of
    /// [`crate::budget::DELETE_USER_BUDGET_CALLS`] calls. Returns, beside how many active
    /// sessions it ended, the newest creation time among the sessions it found (`None` when it
    /// found none, so that nothing can have been deleted): whatever the result, even an error
    /// part-way, the record may have lost sessions created up to then.
    pub(super) async fn delete_user_fenced(
        &self,
        user: &UserKey,
        now: i64,
    ) -> (Option<i64>, Result<u64, StoreError>) {
        let budget = self.call_timeout * crate::budget::DELETE_USER_BUDGET_CALLS;
        let deadline = tokio::time::Instant::now() + budget;
        let items = match within_deadline(deadline, budget, self.query_sessions(user)).await {
            Ok(items) if items.is_empty() => return (None, Ok(0)),
            Ok(items) => items,
            Err(e) => return (None, Err(e)),
        };
        let sessions: Vec<Session> = items
            .iter()
            .filter_map(|item| decode(user, item).ok())
            .collect();
        let newest = sessions.iter().map(|s| s.created_at).max().unwrap_or(now);
        let active = sessions.iter().filter(|s| s.is_active(now)).count() as u64;
        let keys: Vec<Item> = items
            .into_iter()
            .filter_map(|item| Some(key(user, item.get("sk")?.as_s().ok()?)))
            .collect();
        let deleted = within_deadline(deadline, budget, async {
            for chunk in keys.chunks(BATCH) {
                self.delete_batch(chunk).await?;
            }
            Ok(active)
        })
        .await;
        (Some(newest), deleted)
    }

    async fn delete_batch(&self, keys: &[Item]) -> Result<(), StoreError> {
        let mut requests: Vec<WriteRequest> = keys
            .iter()
            .map(|key| {
                let delete = DeleteRequest::builder()
                    .set_key(Some(key.clone()))
                    .build()
                    .expect("key is set");
                WriteRequest::builder().delete_request(delete).build()
            })
            .collect();
        for attempt in 0..BATCH_RETRIES {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(store_error)?;
            requests = out
                .unprocessed_items
                .and_then(|mut unprocessed| unprocessed.remove(&self.table))
                .unwrap_or_default();
            if requests.is_empty() {
                return Ok(());
            }
        }
        Err(StoreError {
            backend: BACKEND,
            kind: StoreErrorKind::Capacity,
            detail: format!("{} deletes still unprocessed", requests.len()),
        })
    }

    /// Every session item of a user, read with strong consistency so none is missed.
    async fn query_sessions(&self, user: &UserKey) -> Result<Vec<Item>, StoreError> {
        let pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", AttributeValue::S(pk(user)))
            .expression_attribute_values(":prefix", AttributeValue::S(SESSION_PREFIX.to_owned()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        collect(pages).await
    }

    pub(super) async fn sessions_of(
        &self,
        user: &UserKey,
    ) -> Result<Vec<(TokenHash, Session)>, StoreError> {
        within(self.call_timeout, self.query_sessions(user))
            .await?
            .iter()
            .map(|item| {
                let hash = match item.get("sk") {
                    Some(AttributeValue::S(sk)) => hash_of_sk(sk),
                    _ => None,
                };
                Ok((hash.ok_or_else(|| corrupt("sk"))?, decode(user, item)?))
            })
            .collect()
    }

    pub(super) async fn global_stats(
        &self,
        now: i64,
        deadline: std::time::Instant,
    ) -> Result<GlobalStats, StoreError> {
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(sk, :prefix)")
            .expression_attribute_values(":prefix", AttributeValue::S(SESSION_PREFIX.to_owned()))
            .projection_expression("pk, expires_at, absolute_expires_at")
            .into_paginator()
            .send();
        let mut users = std::collections::HashSet::new();
        let mut stats = GlobalStats::default();
        let mut items = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                stats.partial = true;
                break;
            }
            match tokio::time::timeout(left, pages.next()).await {
                Ok(Some(page)) => {
                    items.extend(page.map_err(store_error)?.items.unwrap_or_default())
                }
                Ok(None) => break,
                Err(_) => {
                    stats.partial = true;
                    break;
                }
            }
        }
        for item in items {
            let expiry = int(&item, "expires_at")?.min(int(&item, "absolute_expires_at")?);
            if expiry > now {
                stats.active_sessions += 1;
                if let Some(AttributeValue::S(pk)) = item.get("pk") {
                    users.insert(pk.clone());
                }
            }
        }
        stats.users_with_sessions = users.len() as u64;
        Ok(stats)
    }

    pub(super) async fn cache_get(
        &self,
        user: &UserKey,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(user, CACHE_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        decode_cache(item, now)
    }

    pub(super) async fn cache_put(
        &self,
        user: &UserKey,
        json: &str,
        ttl: u64,
        now: i64,
    ) -> Result<(), StoreError> {
        let item = encode_cache(user, json, now.saturating_add_unsigned(ttl));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }
}

/// Runs `call` within `budget`; past it, a timeout error.
async fn within<T>(
    budget: Duration,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    within_deadline(tokio::time::Instant::now() + budget, budget, call).await
}

/// Runs `call` until `deadline` (the end of `budget`); past it, a timeout error.
async fn within_deadline<T>(
    deadline: tokio::time::Instant,
    budget: Duration,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout_at(deadline, call)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError {
                backend: BACKEND,
                kind: StoreErrorKind::Timeout,
                detail: format!("not done within {} ms", budget.as_millis()),
            })
        })
}

/// The pause before retry `attempt` (1, 2, …) of unprocessed deletes: doubling, half of it random.
fn backoff(attempt: u32) -> Duration {
    let full = BATCH_BACKOFF * 2u32.pow(attempt - 1);
    let random = getrandom::u32().unwrap_or(0) % 1000;
    full / 2 + full / 2 * random / 1000
}

/// The token hash of a session's sort key.
fn hash_of_sk(sk: &str) -> Option<TokenHash> {
    let hex = sk.strip_prefix(SESSION_PREFIX)?;
    if hex.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(TokenHash(bytes))
}

async fn collect<E, R>(
    mut pages: aws_smithy_async::future::pagination_stream::PaginationStream<
        Result<Item, SdkError<E, R>>,
    >,
) -> Result<Vec<Item>, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let mut items = Vec::new();
    while let Some(item) = pages.next().await {
        items.push(item.map_err(store_error)?);
    }
    Ok(items)
}

fn pk(user: &UserKey) -> String {
    format!("USER#{}", user.as_str())
}

fn session_sk(hash: &TokenHash) -> String {
    format!("{SESSION_PREFIX}{}", hash.to_hex())
}

fn key(user: &UserKey, sk: &str) -> Item {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk(user))),
        ("sk".to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

/// Copy `copy` of the store epoch, a partition of its own.
fn epoch_key(copy: u32) -> Item {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(format!("EPOCH#{copy}"))),
        ("sk".to_owned(), AttributeValue::S("EPOCH".to_owned())),
    ])
}

/// Why one epoch bump was not applied.
enum EpochBump {
    /// Another bump held the copies: worth another attempt.
    Conflict(StoreError),
    Failed(StoreError),
}

/// The pause before attempt `attempt + 1` of a conflicting bump: doubling, half of it random, so
/// that bumps that conflicted once do not meet again.
fn epoch_backoff(attempt: u32) -> Duration {
    let full = EPOCH_BUMP_BACKOFF * 2u32.pow(attempt - 1);
    let random = getrandom::u32().unwrap_or(0) % 1000;
    full / 2 + full / 2 * random / 1000
}

fn number(n: impl ToString) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn int(item: &Item, name: &str) -> Result<i64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse().map_err(|_| corrupt(name)),
        _ => Err(corrupt(name)),
    }
}

/// The item of a session.
pub(super) fn encode(user: &UserKey, hash: &TokenHash, session: &Session) -> Item {
    let mut item = key(user, &session_sk(hash));
    item.extend([
        ("created_at".to_owned(), number(session.created_at)),
        ("expires_at".to_owned(), number(session.expires_at)),
        (
            "absolute_expires_at".to_owned(),
            number(session.absolute_expires_at),
        ),
        ("idle_timeout".to_owned(), number(session.idle_timeout)),
        (
            "remember_me".to_owned(),
            AttributeValue::Bool(session.remember_me),
        ),
        (
            "last_refreshed_at".to_owned(),
            number(session.last_refreshed_at),
        ),
        ("ttl".to_owned(), number(session.expiry())),
    ]);
    // An empty device is none, as in a Redis record.
    if let Some(device) = session.device.as_ref().filter(|d| !d.is_empty()) {
        item.insert("device".to_owned(), AttributeValue::S(device.clone()));
    }
    item
}

/// The item of a user's cached data.
pub(super) fn encode_cache(user: &UserKey, json: &str, expires_at: i64) -> Item {
    let mut item = key(user, CACHE_SK);
    item.extend([
        ("data".to_owned(), AttributeValue::S(json.to_owned())),
        ("expires_at".to_owned(), number(expires_at)),
        ("ttl".to_owned(), number(expires_at)),
    ]);
    item
}

/// The cached data of a cache item, unless it has expired at `now`.
pub(super) fn decode_cache(item: &Item, now: i64) -> Result<Option<String>, StoreError> {
    if int(item, "expires_at")? <= now {
        return Ok(None);
    }
    match item.get("data") {
        Some(AttributeValue::S(json)) => Ok(Some(json.clone())),
        _ => Err(corrupt("cache item")),
    }
}

pub(super) fn decode(user: &UserKey, item: &Item) -> Result<Session, StoreError> {
    Ok(Session {
        user_id: user.user_id(),
        created_at: int(item, "created_at")?,
        expires_at: int(item, "expires_at")?,
        absolute_expires_at: int(item, "absolute_expires_at")?,
        // Unsigned: read as such, every value `encode` writes reads back.
        idle_timeout: match item.get("idle_timeout") {
            Some(AttributeValue::N(n)) => n.parse().map_err(|_| corrupt("idle_timeout"))?,
            _ => return Err(corrupt("idle_timeout")),
        },
        remember_me: matches!(item.get("remember_me"), Some(AttributeValue::Bool(true))),
        // Items written before these names held `last_seen_at` and `user_agent` (the first 64
        // bytes of one); a refresh since has written `last_refreshed_at` beside the old name.
        last_refreshed_at: int(item, "last_refreshed_at").or_else(|_| int(item, "last_seen_at"))?,
        device: match item.get("device").or_else(|| item.get("user_agent")) {
            Some(AttributeValue::S(stored)) if !stored.is_empty() => Some(stored.clone()),
            _ => None,
        },
    })
}

fn corrupt(what: &str) -> StoreError {
    StoreError {
        backend: BACKEND,
        kind: StoreErrorKind::Corrupt,
        detail: format!("unreadable {what}"),
    }
}

fn store_error<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let kind = match &e {
        SdkError::TimeoutError(_) => StoreErrorKind::Timeout,
        SdkError::DispatchFailure(failure) if failure.is_timeout() => StoreErrorKind::Timeout,
        SdkError::DispatchFailure(_) => StoreErrorKind::Connection,
        _ => match e.code() {
            Some(
                "AccessDeniedException"
                | "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "ExpiredTokenException",
            ) => StoreErrorKind::Auth,
            Some(
                "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "RequestLimitExceeded",
            ) => StoreErrorKind::Capacity,
            _ => StoreErrorKind::Other,
        },
    };
    let detail = match e.code() {
        Some(code) => format!("{code}: {}", e.message().unwrap_or_default()),
        None => format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&e)),
    };
    StoreError {
        backend: BACKEND,
        kind,
        detail,
    }
}
