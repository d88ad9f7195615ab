//! `GET|POST /api/cache/user/{user_id}`: a small per-user JSON cache, owner only.

use super::{Reply, any_caller};
use crate::error::ApiError;
use crate::http;
use crate::session::now_unix;
use crate::state::State;
use crate::token::{MAX_USER_ID_LEN, UserKey};
use lambda_http::Request;
use serde_json::{Value, json};

const PATH_PREFIX: &str = "/api/cache/user/";

/// The cached JSON, sent back byte for byte as cache-put stored it.
pub async fn get(state: &State, req: &Request) -> Result<Reply, ApiError> {
    let now = now_unix();
    let user_id = owner(state, req, now).await?;
    let json = state
        .store
        .cache_get(&UserKey::for_user(&user_id), now)
        .await?
        .ok_or_else(ApiError::cache_miss)?;
    // Checked again on the way out: the answer embeds it as it is.
    if let Err(e) = serde_json::from_str::<Value>(&json) {
        return Err(ApiError::from(crate::store::StoreError {
            backend: state.store.backend(),
            kind: crate::store::StoreErrorKind::Corrupt,
            detail: format!("cached data is not JSON: {e}"),
        }));
    }
    Ok(Reply::with_raw_data(json!({ "user_id": user_id }), json))
}

/// Stores the body, any JSON up to `CACHE_MAX_BYTES`, for `USER_CACHE_TTL` seconds: the JSON
/// text as sent (without the whitespace around it), so that it reads back exactly. Parsed and
/// written again, an integer past 64 bits would come back as a float, a long decimal rounded.
pub async fn put(state: &State, req: &Request) -> Result<Value, ApiError> {
    let now = now_unix();
    let user_id = owner(state, req, now).await?;
    let json = json_text(http::body_bytes(req, state.config.cache_max_bytes)?)?;
    let ttl = state.config.user_cache_ttl;
    state
        .store
        .cache_put(&UserKey::for_user(&user_id), json, ttl, now)
        .await?;
    Ok(json!({
        "user_id": user_id,
        "expires_at": super::rfc3339(now.saturating_add_unsigned(ttl)),
        "expires_in": ttl,
    }))
}

/// The body as JSON text, checked by the same parser (and depth limit) as every other body,
/// without the JSON whitespace around it.
pub fn json_text(bytes: &[u8]) -> Result<&str, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid_json("empty body"));
    }
    serde_json::from_slice::<Value>(bytes).map_err(|e| ApiError::invalid_json(e.to_string()))?;
    let json_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = bytes.iter().position(|b| !json_space(b)).unwrap_or(0);
    let end = bytes
        .iter()
        .rposition(|b| !json_space(b))
        .map_or(start, |i| i + 1);
    // serde_json took it, so it is UTF-8.
    std::str::from_utf8(&bytes[start..end]).map_err(|e| ApiError::invalid_json(e.to_string()))
}

/// The caller, who must be the user named in the path.
async fn owner(state: &State, req: &Request, now: i64) -> Result<String, ApiError> {
    let caller = any_caller(state, req, now).await?;
    let Some(user_id) = http::path_parameter(req, "user_id", PATH_PREFIX) else {
        return Err(ApiError::invalid_request(
            "the path must be /api/cache/user/{user_id}",
        ));
    };
    if user_id.is_empty() || user_id.len() > MAX_USER_ID_LEN || user_id.contains('/') {
        return Err(ApiError::invalid_request(
            "the user id in the path is not valid",
        ));
    }
    if user_id != caller {
        return Err(ApiError::forbidden("a user may only use their own cache"));
    }
    Ok(user_id)
}
