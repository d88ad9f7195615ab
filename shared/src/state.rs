//! Everything a handler needs, built once per cold start.

use crate::auth::{Verifier, VerifierError};
use crate::config::{Config, ConfigError};
use crate::session::Lifetimes;
use crate::store::{SelectError, Store};
use std::time::Instant;

pub struct State {
    pub config: Config,
    pub store: Store,
    pub verifier: Verifier,
}

/// Why a container cannot start; the message says what to fix.
#[derive(thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Verifier(#[from] VerifierError),
    #[error(transparent)]
    Store(#[from] SelectError),
}

// `main` returns this error, and Rust prints an error returned from `main` with `Debug`: make
// that the sentence that says what to fix.
impl std::fmt::Debug for StartupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl State {
    /// Reads the environment, builds the JWT verifier and picks the store.
    pub async fn from_env() -> Result<Self, StartupError> {
        let started = Instant::now();
        let config = Config::from_env()?;
        let config_us = micros(started);
        Self::build(config, started, config_us).await
    }

    pub async fn from_config(config: Config) -> Result<Self, StartupError> {
        Self::build(config, Instant::now(), 0).await
    }

    /// The verifier, then the store; says what each step took (a cold start's own work, beside
    /// the runtime's), in one log line.
    async fn build(config: Config, started: Instant, config_us: u64) -> Result<Self, StartupError> {
        let step = Instant::now();
        let verifier = Verifier::new(&config)?;
        let verifier_us = micros(step);
        let step = Instant::now();
        let store = Store::from_config(&config).await?;
        let store_us = micros(step);
        tracing::info!(
            backend = store.backend(),
            config_us,
            verifier_us,
            store_us,
            total_us = micros(started),
            "state ready"
        );
        Ok(State {
            config,
            store,
            verifier,
        })
    }

    /// A state over a store built elsewhere (tests, tools).
    pub fn with_store(config: Config, store: Store) -> Result<Self, StartupError> {
        Ok(State {
            verifier: Verifier::new(&config)?,
            config,
            store,
        })
    }

    pub fn lifetimes(&self) -> Lifetimes {
        Lifetimes {
            session: self.config.session_timeout,
            remember_me: self.config.remember_me_timeout,
            max_lifetime: self.config.session_max_lifetime,
        }
    }
}

/// Microseconds since `since`, as a log field (a u64: JSON logs write u128 as text).
fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}
