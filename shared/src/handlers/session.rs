//! Session lifecycle: create, validate, refresh, logout, logout-all; and a user's own view of
//! their sessions: list, revoke one.

use super::{Reply, SessionAnswer, any_caller, caller, jwt_caller, rfc3339, session_caller};
use crate::device::stored_device;
use crate::error::ApiError;
use crate::http;
use crate::session::{Session, now_unix};
use crate::state::State;
use crate::token::{SessionId, SessionToken, UserKey};
use lambda_http::Request;
use lambda_http::http::header::USER_AGENT;
use serde_json::{Value, json};

/// Largest body `create` and `revoke` read: they take `{"remember_me": bool}` and
/// `{"session_id": "…"}`.
const SMALL_BODY_LIMIT: usize = 4 * 1024;

/// `POST /api/session/create`: trades a Clerk JWT for a session token.
pub async fn create(state: &State, req: &Request) -> Result<Reply, ApiError> {
    let user_id = jwt_caller(state, req).await?;
    let remember_me = match http::json_body(req, SMALL_BODY_LIMIT)? {
        None => false,
        Some(Value::Object(body)) => match body.get("remember_me") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(flag)) => *flag,
            Some(_) => {
                return Err(ApiError::invalid_request(
                    "remember_me must be true or false",
                ));
            }
        },
        Some(_) => return Err(ApiError::invalid_request("the body must be a JSON object")),
    };
    let now = now_unix();
    let user_agent = http::header(req, USER_AGENT);
    let session = Session::new(&user_id, remember_me, user_agent, state.lifetimes(), now);
    let token = SessionToken::mint(&user_id);
    state.store.create(&token, &session).await?;
    let mut answer = SessionAnswer::of(&session, now);
    answer.session_token = Some(token.expose());
    Ok(answer.into())
}

/// `GET /api/session/validate`: whether a session token is active, and whose it is.
pub async fn validate(state: &State, req: &Request) -> Result<Reply, ApiError> {
    let now = now_unix();
    let (_, session) = session_caller(state, req, now).await?;
    let mut answer = SessionAnswer::of(&session, now);
    answer.valid = Some(true);
    Ok(answer.into())
}

/// `POST /api/session/refresh`: slides the expiry, never past the absolute cap.
pub async fn refresh(state: &State, req: &Request) -> Result<Reply, ApiError> {
    let now = now_unix();
    let token = session_token(req)?;
    let session = state
        .store
        .refresh(&token, now)
        .await?
        .ok_or_else(ApiError::invalid_token)?;
    Ok(SessionAnswer::of(&session, now).into())
}

/// `POST /api/session/logout`: ends this session at once.
pub async fn logout(state: &State, req: &Request) -> Result<Value, ApiError> {
    let token = session_token(req)?;
    if !state.store.delete(&token).await? {
        return Err(ApiError::invalid_token());
    }
    Ok(json!({ "user_id": token.user_id() }))
}

/// `POST /api/session/logout-all`: ends every session of the caller.
pub async fn logout_all(state: &State, req: &Request) -> Result<Value, ApiError> {
    let now = now_unix();
    let user_id = any_caller(state, req, now).await?;
    let revoked = state
        .store
        .delete_user(&UserKey::for_user(&user_id), now)
        .await?;
    Ok(json!({ "user_id": user_id, "revoked": revoked }))
}

/// `GET /api/session/list`: the caller's active sessions, newest first, each named by its
/// [`SessionId`]; `current` marks the one whose token made the request.
pub async fn list(state: &State, req: &Request) -> Result<Value, ApiError> {
    let now = now_unix();
    let (user_id, token) = caller(state, req, now).await?;
    let current = token.map(|t| t.hash());
    let sessions = state
        .store
        .active_sessions(&UserKey::for_user(&user_id), now)
        .await?;
    let sessions: Vec<Value> = sessions
        .iter()
        .map(|(hash, session)| {
            json!({
                "session_id": SessionId::of(hash).to_string(),
                "created_at": rfc3339(session.created_at),
                "last_refreshed_at": rfc3339(session.last_refreshed_at),
                "expires_at": rfc3339(session.expiry()),
                "remember_me": session.remember_me,
                "device": session.device.as_deref().and_then(stored_device).as_deref().unwrap_or("unknown"),
                "current": current.as_ref() == Some(hash),
            })
        })
        .collect();
    Ok(json!({ "user_id": user_id, "sessions": sessions }))
}

/// `POST /api/session/revoke`: ends one session of the caller's, named by its id from the list.
/// An unknown id and another user's answer alike, 404.
pub async fn revoke(state: &State, req: &Request) -> Result<Value, ApiError> {
    let now = now_unix();
    let (user_id, token) = caller(state, req, now).await?;
    let raw = match http::json_body(req, SMALL_BODY_LIMIT)? {
        Some(Value::Object(body)) => match body.get("session_id") {
            Some(Value::String(id)) => id.clone(),
            None | Some(Value::Null) => {
                return Err(ApiError::invalid_request("send {\"session_id\": \"…\"}"));
            }
            Some(_) => return Err(ApiError::invalid_request("session_id must be a string")),
        },
        None => return Err(ApiError::invalid_json("an empty body")),
        Some(_) => return Err(ApiError::invalid_request("the body must be a JSON object")),
    };
    let id = SessionId::parse(&raw).ok_or_else(|| {
        ApiError::invalid_request("session_id must be a session_id from /api/session/list")
    })?;
    if !state
        .store
        .revoke(&UserKey::for_user(&user_id), &id, now)
        .await?
    {
        return Err(ApiError::session_not_found());
    }
    let current = token.is_some_and(|t| id.names(&t.hash()));
    Ok(json!({ "user_id": user_id, "session_id": raw, "current": current }))
}

/// The well-formed session token of `X-Session-Token`; the store is not asked.
fn session_token(req: &Request) -> Result<SessionToken, ApiError> {
    if !http::has_header(req, http::SESSION_TOKEN_HEADER) {
        return Err(ApiError::missing_credentials("the X-Session-Token header"));
    }
    let raw = http::header(req, http::SESSION_TOKEN_HEADER).unwrap_or_default();
    Ok(SessionToken::parse(raw)?)
}
