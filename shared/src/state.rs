//! Everything a handler needs, built once per cold start.

use crate::auth::{Verifier, VerifierError};
use crate::config::{Config, ConfigError};
use crate::session::Lifetimes;
use crate::store::{SelectError, Store};

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
        Self::from_config(Config::from_env()?).await
    }

    pub async fn from_config(config: Config) -> Result<Self, StartupError> {
        let verifier = Verifier::new(&config)?;
        let store = Store::from_config(&config).await?;
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
