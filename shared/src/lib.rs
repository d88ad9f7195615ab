//! Session service: everything the endpoint binaries share.
//!
//! Follow one request: `functions/<endpoint>/main.rs` builds a [`State`] once per cold start and
//! hands a handler from [`handlers`] to the Lambda runtime; the handler authenticates the caller
//! ([`auth`], [`token`]) and calls the [`store`].

pub mod auth;
pub mod budget;
pub mod config;
pub mod device;
pub mod error;
pub mod handlers;
pub mod hooks;
pub mod http;
pub mod lambda;
pub mod metrics;
pub mod session;
pub mod state;
pub mod store;
pub mod token;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use config::{Config, ConfigError, StoreKind};
pub use error::ApiError;
pub use handlers::{Endpoint, handle};
pub use session::{Session, UserStats};
pub use state::{StartupError, State};
pub use store::{Store, StoreError};
pub use token::{SessionToken, TokenError};

/// Installs aws-lc-rs as the process's rustls crypto provider. reqwest is built without a
/// provider of its own (one crypto stack for the whole graph), so every reqwest client needs
/// this first; installing it again is refused, harmlessly.
pub fn install_tls_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
