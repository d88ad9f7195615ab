//! `GET|POST /api/cache/user/{user_id}`: a small per-user JSON cache, owner only.

use super::any_caller;
use crate::error::ApiError;
use crate::http;
use crate::session::now_unix;
use crate::state::State;
use crate::token::{MAX_USER_ID_LEN, UserKey};
use lambda_http::Request;
use serde_json::{Value, json};

const PATH_PREFIX: &str = "/api/cache/user/";

pub async fn get(state: &State, req: &Request) -> Result<Value, ApiError> {
    let now = now_unix();
    let user_id = owner(state, req, now).await?;
    let json = state
        .store
        .cache_get(&UserKey::for_user(&user_id), now)
        .await?
        .ok_or_else(ApiError::cache_miss)?;
    let data: Value = serde_json::from_str(&json).map_err(|e| {
        ApiError::from(crate::store::StoreError {
            backend: state.store.backend(),
            kind: crate::store::StoreErrorKind::Corrupt,
            detail: format!("cached data is not JSON: {e}"),
        })
    })?;
    Ok(json!({ "user_id": user_id, "data": data }))
}

/// Stores the body, any JSON up to `CACHE_MAX_BYTES`, for `USER_CACHE_TTL` seconds.
pub async fn put(state: &State, req: &Request) -> Result<Value, ApiError> {
    let now = now_unix();
    let user_id = owner(state, req, now).await?;
    let data = http::json_body(req, state.config.cache_max_bytes)?
        .ok_or_else(|| ApiError::invalid_json("empty body"))?;
    let ttl = state.config.user_cache_ttl;
    state
        .store
        .cache_put(&UserKey::for_user(&user_id), &data.to_string(), ttl, now)
        .await?;
    Ok(json!({
        "user_id": user_id,
        "expires_at": super::rfc3339(now.saturating_add_unsigned(ttl)),
        "expires_in": ttl,
    }))
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
