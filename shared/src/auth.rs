//! Clerk JWT verification: RS256 only, key from a PEM or a cached JWKS, `exp`/`nbf` with a small
//! leeway, `iss` and `azp` when configured. `sub` is the user id.

use crate::config::{ClerkKey, Config};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 5;
/// The JWKS is fetched at most this often, whatever the outcome: an unknown `kid` (chosen by
/// whoever sends the JWT) refetches only once the interval has passed.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// Longest JWT accepted, in bytes (Clerk's are well under 2 KiB).
pub const MAX_JWT_LEN: usize = 8 * 1024;
/// Budget for one JWKS fetch. It bounds create's worst case (a JWT with an uncached `kid`), so
/// keep it small: Clerk answers in well under a second.
pub const JWKS_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The JWT is malformed, forged, expired or not for us. The reason is for logs only.
    #[error("invalid JWT: {0}")]
    Invalid(String),
    /// The JWKS could not be fetched: not the caller's fault.
    #[error("JWKS unavailable: {0}")]
    KeysUnavailable(String),
}

#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    #[error("set CLERK_JWT_KEY (PEM public key) or CLERK_JWKS_URL to verify Clerk JWTs")]
    NoKey,
    #[error("CLERK_JWT_KEY is not an RSA public key in PEM form: {0}")]
    BadPem(String),
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    azp: Option<String>,
}

/// Verifies Clerk JWTs; built once per container.
#[derive(Clone)]
pub struct Verifier {
    keys: Keys,
    validation: Validation,
    allowed_origins: Vec<String>,
    /// `JWKS_REFETCH_INTERVAL`, shorter in tests.
    jwks_refetch_interval: Duration,
}

#[derive(Clone)]
enum Keys {
    Pem(Arc<DecodingKey>),
    Jwks(Arc<JwksCache>),
}

struct JwksCache {
    url: String,
    /// Built at the first fetch, not at cold start: most functions never verify a JWT, and
    /// building it loads the root certificates.
    http: OnceLock<reqwest::Client>,
    /// Only ever replaced by a non-empty set: empty means no usable key was ever fetched.
    keys: RwLock<HashMap<String, Arc<DecodingKey>>>,
    /// When the last fetch was attempted, whatever its outcome; one fetch at a time.
    fetched_at: Mutex<Option<Instant>>,
}

impl Verifier {
    pub fn new(config: &Config) -> Result<Self, VerifierError> {
        let keys = match &config.clerk_key {
            ClerkKey::Pem(pem) => Keys::Pem(Arc::new(
                DecodingKey::from_rsa_pem(pem.as_bytes())
                    .map_err(|e| VerifierError::BadPem(e.to_string()))?,
            )),
            ClerkKey::JwksUrl(url) => Keys::Jwks(Arc::new(JwksCache {
                url: url.clone(),
                http: OnceLock::new(),
                keys: RwLock::new(HashMap::new()),
                fetched_at: Mutex::new(None),
            })),
            ClerkKey::Unset => return Err(VerifierError::NoKey),
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = vec![Algorithm::RS256];
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(issuer) = &config.clerk_issuer {
            // jsonwebtoken checks `iss` only when present: require it too.
            validation.set_required_spec_claims(&["exp", "sub", "iss"]);
            validation.set_issuer(&[issuer]);
        }
        Ok(Verifier {
            keys,
            validation,
            allowed_origins: config.allowed_origins.clone(),
            jwks_refetch_interval: JWKS_REFETCH_INTERVAL,
        })
    }

    /// For tests: a shorter JWKS back-off than `JWKS_REFETCH_INTERVAL`.
    #[doc(hidden)]
    pub fn set_jwks_refetch_interval(&mut self, interval: Duration) {
        self.jwks_refetch_interval = interval;
    }

    /// The user id (`sub`) of a valid Clerk JWT.
    pub async fn verify(&self, jwt: &str) -> Result<String, AuthError> {
        if jwt.is_empty() || jwt.len() > MAX_JWT_LEN {
            return Err(AuthError::Invalid("empty or oversized".into()));
        }
        let header = jsonwebtoken::decode_header(jwt).map_err(invalid)?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} refused",
                header.alg
            )));
        }
        let key = match &self.keys {
            Keys::Pem(key) => key.clone(),
            Keys::Jwks(cache) => {
                cache
                    .key(header.kid.as_deref(), self.jwks_refetch_interval)
                    .await?
            }
        };
        let claims = jsonwebtoken::decode::<Claims>(jwt, &key, &self.validation)
            .map_err(invalid)?
            .claims;
        if claims.sub.is_empty() || claims.sub.len() > crate::token::MAX_USER_ID_LEN {
            return Err(AuthError::Invalid("unusable sub".into()));
        }
        if let Some(azp) = &claims.azp
            && !self.allowed_origins.is_empty()
            && !origin_allowed(&self.allowed_origins, azp)
        {
            return Err(AuthError::Invalid("azp is not an allowed origin".into()));
        }
        Ok(claims.sub)
    }
}

impl JwksCache {
    async fn key(
        &self,
        kid: Option<&str>,
        refetch_interval: Duration,
    ) -> Result<Arc<DecodingKey>, AuthError> {
        let kid = kid.ok_or_else(|| AuthError::Invalid("no kid".into()))?;
        if let Some(key) = self.keys.read().await.get(kid) {
            return Ok(key.clone());
        }
        let mut fetched_at = self.fetched_at.lock().await;
        // Another request may have fetched while this one waited for the lock.
        if let Some(key) = self.keys.read().await.get(kid) {
            return Ok(key.clone());
        }
        if fetched_at.is_some_and(|at| at.elapsed() < refetch_interval) {
            return Err(self.not_cached().await);
        }
        // A failure counts too: while Clerk is down, made-up kids must not each cost a fetch.
        *fetched_at = Some(Instant::now());
        let fresh = self.fetch().await?;
        if fresh.is_empty() {
            tracing::warn!("Clerk JWKS has no usable RS256 key; keeping the cached keys");
            return Err(self.not_cached().await);
        }
        let key = fresh.get(kid).cloned();
        *self.keys.write().await = fresh;
        key.ok_or_else(|| AuthError::Invalid("unknown kid".into()))
    }

    /// Why a `kid` that is not cached gets no key, without fetching.
    async fn not_cached(&self) -> AuthError {
        if self.keys.read().await.is_empty() {
            AuthError::KeysUnavailable("no usable JWKS key fetched yet".into())
        } else {
            AuthError::Invalid("unknown kid".into())
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<DecodingKey>>, AuthError> {
        let unavailable =
            |e: reqwest::Error| AuthError::KeysUnavailable(e.without_url().to_string());
        let http = match self.http.get() {
            Some(http) => http,
            None => {
                let built = jwks_client().map_err(unavailable)?;
                self.http.get_or_init(|| built)
            }
        };
        let set: JwkSet = http
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            // Only RSA keys with a kid can verify our tokens; skip the rest.
            if let (AlgorithmParameters::RSA(_), Some(kid), Ok(key)) = (
                &jwk.algorithm,
                &jwk.common.key_id,
                DecodingKey::from_jwk(jwk),
            ) {
                keys.insert(kid.clone(), Arc::new(key));
            }
        }
        tracing::info!(
            listed = set.keys.len(),
            usable = keys.len(),
            "fetched Clerk JWKS"
        );
        Ok(keys)
    }
}

/// The HTTPS client of the JWKS fetch, on aws-lc-rs like every other TLS connection here.
fn jwks_client() -> Result<reqwest::Client, reqwest::Error> {
    crate::install_tls_provider();
    reqwest::Client::builder().timeout(JWKS_TIMEOUT).build()
}

fn invalid(e: jsonwebtoken::errors::Error) -> AuthError {
    AuthError::Invalid(format!("{:?}", e.kind()))
}

/// Whether `origin` is in `allowed`; an entry `scheme://host:*` matches that host on any port
/// (and without one).
pub fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    allowed.iter().any(|entry| match entry.strip_suffix(":*") {
        Some(base) => {
            origin == base
                || origin
                    .strip_prefix(base)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .is_some_and(|port| {
                        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
                    })
        }
        None => entry == origin,
    })
}

#[cfg(test)]
mod tests {
    use super::origin_allowed;

    #[test]
    fn origins_match_exactly_or_on_any_port() {
        let allowed = vec![
            "chrome-extension://abc".to_owned(),
            "http://localhost:*".to_owned(),
        ];
        for ok in [
            "chrome-extension://abc",
            "http://localhost:3000",
            "http://localhost",
        ] {
            assert!(origin_allowed(&allowed, ok), "{ok}");
        }
        for bad in [
            "chrome-extension://abcd",
            "chrome-extension://ab",
            "http://localhost.evil.com",
            "http://localhost:80x",
            "http://localhost:",
            "https://localhost:3000",
            "null",
            "",
        ] {
            assert!(!origin_allowed(&allowed, bad), "{bad}");
        }
    }
}
