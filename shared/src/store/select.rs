//! Choosing the store at cold start (`SESSION_STORE`, DESIGN.md "Store selection").

use super::{DynamoStore, MemoryStore, RedisStore, Store, StoreError, StoreErrorKind};
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
    /// The store `config` asks for. `auto` takes Redis when `REDIS_URL` answers within
    /// `REDIS_CONNECT_TIMEOUT_MS`, else DynamoDB when `SESSION_TABLE` is set. A Redis that
    /// answers but refuses our credentials is an error, never a silent fallback.
    pub async fn from_config(config: &Config) -> Result<Store, SelectError> {
        let dynamodb = || async {
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
            Ok(Store::Dynamodb(store))
        };
        match config.store {
            StoreKind::Memory => Ok(Store::Memory(MemoryStore::new())),
            StoreKind::Dynamodb => dynamodb().await,
            StoreKind::Redis => {
                let url = config
                    .redis_url
                    .as_deref()
                    .ok_or(SelectError::NothingConfigured)?;
                Ok(Store::Redis(redis(config, url).await?))
            }
            StoreKind::Auto => {
                let Some(url) = config.redis_url.as_deref() else {
                    return dynamodb().await;
                };
                match redis(config, url).await {
                    Ok(store) => Ok(Store::Redis(store)),
                    Err(SelectError::Redis { source, .. })
                        if config.session_table.is_some()
                            && matches!(
                                source.kind,
                                StoreErrorKind::Timeout | StoreErrorKind::Connection
                            ) =>
                    {
                        tracing::warn!(
                            cause = %source,
                            "Redis unreachable at start-up; using DynamoDB"
                        );
                        dynamodb().await
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }
}

async fn redis(config: &Config, url: &str) -> Result<RedisStore, SelectError> {
    RedisStore::connect(
        url,
        config.redis_mode,
        config.redis_connect_timeout,
        config.redis_command_timeout,
    )
    .await
    .map_err(|source| SelectError::Redis {
        url: redact_url(url),
        source,
    })
}
