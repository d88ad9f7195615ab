//! Choosing the store at cold start (`SESSION_STORE`; docs/architecture.md, "Store modes").

use super::{
    DynamoStore, MemoryStore, RedisConnect, RedisStore, Store, StoreError, StoreErrorKind,
    TieredStore,
};
use crate::config::{Config, StoreKind, redact_url};

/// Why no store could be chosen; the message says what to set.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error(
        "no session store: set REDIS_URL (redis:// or rediss://) or SESSION_TABLE (a DynamoDB table), \
         or SESSION_STORE=memory for a single process"
    )]
    NothingConfigured,
    #[error("Redis at {url} cannot be used: {source}")]
    Redis { url: String, source: StoreError },
}

impl Store {
    /// The store `config` asks for. `auto`: Redis in front of DynamoDB when both `REDIS_URL` and
    /// `SESSION_TABLE` are set (served from DynamoDB while Redis does not answer within
    /// `REDIS_CONNECT_TIMEOUT_MS`); else whichever one is set. A Redis that answers but refuses
    /// our credentials is an error, never a silent fallback.
    pub async fn from_config(config: &Config) -> Result<Store, SelectError> {
        match config.store {
            StoreKind::Memory => Ok(Store::Memory(
                MemoryStore::new().with_max_sessions(config.max_sessions_per_user),
            )),
            StoreKind::Dynamodb => Ok(Store::Dynamodb(dynamodb(config).await?)),
            StoreKind::Redis => {
                let url = config
                    .redis_url
                    .as_deref()
                    .ok_or(SelectError::NothingConfigured)?;
                Ok(Store::Redis(redis(config, url).await?))
            }
            StoreKind::Auto => {
                let Some(url) = config.redis_url.as_deref() else {
                    return Ok(Store::Dynamodb(dynamodb(config).await?));
                };
                if config.session_table.is_none() {
                    return Ok(Store::Redis(redis(config, url).await?));
                }
                // Both configured: Redis in front of DynamoDB, both made ready at once (the
                // DynamoDB client's setup overlaps Redis's round trips, or its timeout). A Redis
                // that is down, loading, busy or failing over now is retried later; one that
                // refuses our credentials is an error.
                let (front, back) = tokio::join!(redis(config, url), dynamodb(config));
                let front = match front {
                    Ok(store) => Some(store),
                    Err(SelectError::Redis { source, .. })
                        if matches!(
                            source.kind,
                            StoreErrorKind::Timeout
                                | StoreErrorKind::Connection
                                | StoreErrorKind::Unavailable
                        ) =>
                    {
                        tracing::warn!(
                            cause = %source,
                            "Redis not serving at start-up; serving from DynamoDB until it answers"
                        );
                        None
                    }
                    Err(e) => return Err(e),
                };
                Ok(Store::Tiered(TieredStore::new(
                    back?,
                    front,
                    RedisConnect {
                        url: url.to_owned(),
                        mode: config.redis_mode,
                        connect_timeout: config.redis_connect_timeout,
                        command_timeout: config.redis_command_timeout,
                        max_sessions: config.max_sessions_per_user,
                    },
                    config.redis_retry_after,
                    config.epoch_check_interval,
                )))
            }
        }
    }
}

async fn dynamodb(config: &Config) -> Result<DynamoStore, SelectError> {
    let table = config
        .session_table
        .as_deref()
        .ok_or(SelectError::NothingConfigured)?;
    let store = DynamoStore::connect(
        table,
        config.dynamodb_endpoint.as_deref(),
        config.dynamodb_timeout,
    )
    .await;
    Ok(store.with_max_sessions(config.max_sessions_per_user))
}

async fn redis(config: &Config, url: &str) -> Result<RedisStore, SelectError> {
    RedisStore::connect(
        url,
        config.redis_mode,
        config.redis_connect_timeout,
        config.redis_command_timeout,
    )
    .await
    .map(|store| store.with_max_sessions(config.max_sessions_per_user))
    .map_err(|source| SelectError::Redis {
        url: redact_url(url),
        source,
    })
}
