//! `GET /api/session/stats`: the caller's sessions; global figures for admins only.

use super::{any_caller, rfc3339};
use crate::error::ApiError;
use crate::session::now_unix;
use crate::state::State;
use crate::token::UserKey;
use lambda_http::Request;
use serde_json::{Value, json};

pub async fn stats(state: &State, req: &Request) -> Result<Value, ApiError> {
    let now = now_unix();
    let user_id = any_caller(state, req, now).await?;
    let mine = state
        .store
        .user_stats(&UserKey::for_user(&user_id), now)
        .await?;
    let mut stats = json!({
        "user_id": user_id,
        "active_sessions": mine.active_sessions,
        "remember_me_sessions": mine.remember_me_sessions,
        "oldest_session_created_at": mine.oldest_created_at.map(rfc3339),
        "newest_session_created_at": mine.newest_created_at.map(rfc3339),
        "backend": state.store.backend(),
    });
    if state.config.admin_user_ids.contains(&user_id) {
        stats["global"] = serde_json::to_value(state.store.global_stats(now).await?)
            .expect("plain numbers serialize");
    }
    Ok(json!({ "stats": stats }))
}
