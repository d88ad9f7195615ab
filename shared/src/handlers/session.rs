//! Session lifecycle: create, validate, refresh, logout, logout-all.

use super::{Reply, SessionAnswer, any_caller, jwt_caller, session_caller};
use crate::error::ApiError;
use crate::http;
use crate::session::{Session, now_unix};
use crate::state::State;
use crate::token::{SessionToken, UserKey};
use lambda_http::Request;
use lambda_http::http::header::USER_AGENT;
use serde_json::{Value, json};

/// Largest body `create` reads: it only takes `{"remember_me": bool}`.
const CREATE_BODY_LIMIT: usize = 4 * 1024;

/// `POST /api/session/create`: trades a Clerk JWT for a session token.
pub async fn create(state: &State, req: &Request) -> Result<Reply, ApiError> {
    let user_id = jwt_caller(state, req).await?;
    let remember_me = match http::json_body(req, CREATE_BODY_LIMIT)? {
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

/// The well-formed session token of `X-Session-Token`; the store is not asked.
fn session_token(req: &Request) -> Result<SessionToken, ApiError> {
    if !http::has_header(req, http::SESSION_TOKEN_HEADER) {
        return Err(ApiError::missing_credentials("the X-Session-Token header"));
    }
    let raw = http::header(req, http::SESSION_TOKEN_HEADER).unwrap_or_default();
    Ok(SessionToken::parse(raw)?)
}
