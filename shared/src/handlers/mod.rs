//! Every endpoint's handler, as a plain async function of the state and the request.
//!
//! [`handle`] is what a Lambda binary runs: CORS preflight, method check, the endpoint's own
//! function ([`Operation`]), then one JSON response, one log line and one metrics (EMF) line.

pub mod cache;
pub mod session;
pub mod stats;

use crate::error::ApiError;
use crate::http::{self, SESSION_TOKEN_HEADER};
use crate::metrics::Invocation;
use crate::session::Session;
use crate::state::State;
use crate::token::SessionToken;
use lambda_http::http::header::AUTHORIZATION;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::Value;
use std::time::Instant;

/// The API, one Lambda function each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    SessionCreate,
    SessionValidate,
    SessionRefresh,
    SessionLogout,
    SessionLogoutAll,
    SessionStats,
    SessionList,
    SessionRevoke,
    CacheGet,
    CachePut,
}

impl Endpoint {
    pub const ALL: [Endpoint; 10] = [
        Endpoint::SessionCreate,
        Endpoint::SessionValidate,
        Endpoint::SessionRefresh,
        Endpoint::SessionLogout,
        Endpoint::SessionLogoutAll,
        Endpoint::SessionStats,
        Endpoint::SessionList,
        Endpoint::SessionRevoke,
        Endpoint::CacheGet,
        Endpoint::CachePut,
    ];

    /// The function's name: its folder under `functions/`, its binary, its SAM resource.
    pub fn function(self) -> &'static str {
        match self {
            Endpoint::SessionCreate => "session-create",
            Endpoint::SessionValidate => "session-validate",
            Endpoint::SessionRefresh => "session-refresh",
            Endpoint::SessionLogout => "session-logout",
            Endpoint::SessionLogoutAll => "session-logout-all",
            Endpoint::SessionStats => "session-stats",
            Endpoint::SessionList => "session-list",
            Endpoint::SessionRevoke => "session-revoke",
            Endpoint::CacheGet => "cache-get",
            Endpoint::CachePut => "cache-put",
        }
    }

    pub fn method(self) -> Method {
        match self {
            Endpoint::SessionValidate
            | Endpoint::SessionStats
            | Endpoint::SessionList
            | Endpoint::CacheGet => Method::GET,
            _ => Method::POST,
        }
    }

    /// The route, as API Gateway and `cargo lambda watch` declare it.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::SessionCreate => "/api/session/create",
            Endpoint::SessionValidate => "/api/session/validate",
            Endpoint::SessionRefresh => "/api/session/refresh",
            Endpoint::SessionLogout => "/api/session/logout",
            Endpoint::SessionLogoutAll => "/api/session/logout-all",
            Endpoint::SessionStats => "/api/session/stats",
            Endpoint::SessionList => "/api/session/list",
            Endpoint::SessionRevoke => "/api/session/revoke",
            Endpoint::CacheGet | Endpoint::CachePut => "/api/cache/user/{user_id}",
        }
    }

    pub fn from_function(name: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.function() == name)
    }
}

/// What an endpoint does once its request is admitted (its method checked): the handler of
/// [`handle`]. Two kinds: an [`Endpoint`] value chooses its handler at run time (the tests, the
/// bench); a type of [`only`] names one handler at compile time, so that a binary that serves
/// it carries that handler's code and no other endpoint's.
pub trait Operation: Copy + Send + Sync + 'static {
    fn endpoint(self) -> Endpoint;
    fn call<'a>(
        self,
        state: &'a State,
        req: &'a Request,
    ) -> impl Future<Output = Result<Reply, ApiError>> + Send + 'a;
}

/// Each endpoint's handler, written once: the match of [`Endpoint`]'s [`Operation`] and the
/// types of [`only`] both come from this list.
macro_rules! operations {
    ($($endpoint:ident => $handler:path,)*) => {
        impl Operation for Endpoint {
            fn endpoint(self) -> Endpoint {
                self
            }
            fn call<'a>(
                self,
                state: &'a State,
                req: &'a Request,
            ) -> impl Future<Output = Result<Reply, ApiError>> + Send + 'a {
                async move {
                    match self {
                        $(Endpoint::$endpoint => $handler(state, req).await.map(Reply::from),)*
                    }
                }
            }
        }

        /// One type per endpoint, for its Lambda binary: `lambda::run(state,
        /// only::SessionValidate)` serves validate with no other endpoint's code linked in.
        pub mod only {
            use super::*;
            $(
                #[doc = concat!("[`Endpoint::", stringify!($endpoint), "`], alone.")]
                #[derive(Debug, Clone, Copy)]
                pub struct $endpoint;

                impl Operation for $endpoint {
                    fn endpoint(self) -> Endpoint {
                        Endpoint::$endpoint
                    }
                    fn call<'a>(
                        self,
                        state: &'a State,
                        req: &'a Request,
                    ) -> impl Future<Output = Result<Reply, ApiError>> + Send + 'a {
                        async move { $handler(state, req).await.map(Reply::from) }
                    }
                }
            )*
        }
    };
}

operations! {
    SessionCreate => session::create,
    SessionValidate => session::validate,
    SessionRefresh => session::refresh,
    SessionLogout => session::logout,
    SessionLogoutAll => session::logout_all,
    SessionStats => stats::stats,
    SessionList => session::list,
    SessionRevoke => session::revoke,
    CacheGet => cache::get,
    CachePut => cache::put,
}

/// Serves one request for an endpoint ([`Operation`]: an [`Endpoint`], or a type of [`only`]).
/// Never panics on any input; every error is JSON.
pub async fn handle(state: &State, operation: impl Operation, req: Request) -> Response<Body> {
    let endpoint = operation.endpoint();
    let started = Instant::now();
    let origin = http::allowed_origin(&req, &state.config.allowed_origins).map(str::to_owned);
    if req.method() == Method::OPTIONS {
        return http::preflight(origin.as_deref(), &endpoint.method());
    }
    let (result, store_use) = crate::metrics::with_store_timer(async {
        if req.method() != endpoint.method() {
            return Err(ApiError::method_not_allowed(endpoint.method().as_str()));
        }
        operation.call(state, &req).await
    })
    .await;
    answer(state, endpoint, origin, result, started, store_use)
}

/// The answer to a request that could not be read at all (see [`crate::lambda::refusal`]):
/// `error`, with the CORS headers, the log line and the metrics line of every other answer.
/// `req` stands in for the request: its method and headers only.
pub fn refuse(state: &State, endpoint: Endpoint, req: &Request, error: ApiError) -> Response<Body> {
    let started = Instant::now();
    let origin = http::allowed_origin(req, &state.config.allowed_origins).map(str::to_owned);
    answer(
        state,
        endpoint,
        origin,
        Err(error),
        started,
        Default::default(),
    )
}

/// What a handler answers on success.
pub enum Reply {
    /// A JSON object; `success` is added to it.
    Object(Value),
    /// A JSON object with `data` set to stored JSON text, sent byte for byte (re-serializing it
    /// would turn an integer past 64 bits into a float, or change a decimal's digits).
    WithRawData(Value, String),
    /// The whole answer, `success` included, serialized from a typed answer (the hot paths:
    /// no JSON tree is built).
    Text(String),
}

impl From<Value> for Reply {
    fn from(body: Value) -> Self {
        Reply::Object(body)
    }
}

impl Reply {
    /// `body` with `data` set to `json`, valid JSON text, as it is.
    pub fn with_raw_data(body: Value, json: String) -> Self {
        Reply::WithRawData(body, json)
    }
}

/// The answer of create, validate and refresh. Members in alphabetical order, as every other
/// answer has them (serde_json's objects are sorted).
#[derive(serde::Serialize)]
pub(crate) struct SessionAnswer<'a> {
    expires_at: Rfc3339,
    expires_in: i64,
    remember_me: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_token: Option<&'a str>,
    success: bool,
    user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid: Option<bool>,
}

impl<'a> SessionAnswer<'a> {
    /// `expires_at` and `expires_in` of a session, as every session answer carries them.
    pub fn of(session: &'a Session, now: i64) -> Self {
        SessionAnswer {
            expires_at: Rfc3339(session.expiry()),
            expires_in: (session.expiry() - now).max(0),
            remember_me: session.remember_me,
            session_token: None,
            success: true,
            user_id: &session.user_id,
            valid: None,
        }
    }
}

impl From<SessionAnswer<'_>> for Reply {
    fn from(answer: SessionAnswer<'_>) -> Self {
        // A struct of strings, numbers and booleans always serializes.
        Reply::Text(serde_json::to_string(&answer).unwrap_or_default())
    }
}

/// Unix seconds, serialized as RFC 3339 in UTC.
pub(crate) struct Rfc3339(pub i64);

impl serde::Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.formatted())
    }
}

impl Rfc3339 {
    /// As `to_rfc3339_opts(Secs, true)` writes it. chrono finds the date; the digits are
    /// written here, as its generic formatter costs more than the rest of a validate answer.
    fn formatted(&self) -> impl std::fmt::Display {
        use chrono::{Datelike, Timelike};
        struct Digits(chrono::DateTime<chrono::Utc>);
        impl std::fmt::Display for Digits {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let at = &self.0;
                let year = at.year();
                if !(0..=9999).contains(&year) {
                    return f.write_str(&at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                }
                let two = |n: u32| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
                let y = year as u32;
                let (yh, yl) = (two(y / 100), two(y));
                let (mo, d, h, mi, s) = (
                    two(at.month()),
                    two(at.day()),
                    two(at.hour()),
                    two(at.minute()),
                    two(at.second()),
                );
                let text = [
                    yh[0], yh[1], yl[0], yl[1], b'-', mo[0], mo[1], b'-', d[0], d[1], b'T', h[0],
                    h[1], b':', mi[0], mi[1], b':', s[0], s[1], b'Z',
                ];
                // ASCII digits and separators only.
                f.write_str(std::str::from_utf8(&text).unwrap_or_default())
            }
        }
        Digits(chrono::DateTime::from_timestamp(self.0, 0).unwrap_or_default())
    }
}

/// The response, CORS and `Allow` headers, the log line and the metrics (EMF) line.
fn answer(
    state: &State,
    endpoint: Endpoint,
    origin: Option<String>,
    result: Result<Reply, ApiError>,
    started: Instant,
    store_use: crate::metrics::StoreReport,
) -> Response<Body> {
    log(state, endpoint, &result, started);
    let outcome = result.as_ref().map_or_else(|e| e.code, |_| "ok");
    let mut response = match &result {
        Ok(_) => http::json_text_response(StatusCode::OK, String::new()),
        Err(error) => {
            // The extension reads `valid` from every validate answer.
            let extra = (endpoint == Endpoint::SessionValidate
                && error.status == StatusCode::UNAUTHORIZED)
                .then_some(("valid", Value::Bool(false)));
            http::error_response(error, extra)
        }
    };
    if let Ok(reply) = result {
        *response.body_mut() = Body::Text(match reply {
            Reply::Object(body) => http::json_text(StatusCode::OK, body),
            Reply::WithRawData(body, data) => {
                http::json_text_with_raw(StatusCode::OK, body, "data", &data)
            }
            Reply::Text(text) => text,
        });
    }
    http::add_cors(response.headers_mut(), origin.as_deref());
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && let Ok(allow) = endpoint.method().as_str().parse()
    {
        response
            .headers_mut()
            .insert(lambda_http::http::header::ALLOW, allow);
    }
    let invocation = Invocation {
        operation: endpoint.function(),
        outcome,
        status: response.status().as_u16(),
        store: state.store.backend(),
        store_latency: store_use.latency,
        latency: started.elapsed(),
        fallback: store_use.fell_back,
    };
    let mut line = invocation.emf(chrono::Utc::now().timestamp_millis());
    line.push('\n');
    // One write for the whole line, as println! would make it, without its formatting.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), line.as_bytes());
    response
}

/// One line per request; never a token, a JWT or a secret.
fn log(state: &State, endpoint: Endpoint, result: &Result<Reply, ApiError>, started: Instant) {
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let backend = state.store.backend();
    match result {
        Ok(_) => tracing::info!(
            endpoint = endpoint.function(),
            status = 200,
            backend,
            elapsed_ms,
            "served"
        ),
        Err(e) if e.status.is_server_error() => tracing::error!(
            endpoint = endpoint.function(),
            status = e.status.as_u16(),
            code = e.code,
            cause = e.detail.as_deref().unwrap_or(""),
            backend,
            elapsed_ms,
            "failed"
        ),
        Err(e) => tracing::info!(
            endpoint = endpoint.function(),
            status = e.status.as_u16(),
            code = e.code,
            reason = e.detail.as_deref().unwrap_or(""),
            backend,
            elapsed_ms,
            "refused"
        ),
    }
}

/// The session behind `X-Session-Token`, if it is active.
pub(crate) async fn session_caller(
    state: &State,
    req: &Request,
    now: i64,
) -> Result<(SessionToken, Session), ApiError> {
    if !http::has_header(req, SESSION_TOKEN_HEADER) {
        return Err(ApiError::missing_credentials("the X-Session-Token header"));
    }
    let raw = http::header(req, SESSION_TOKEN_HEADER).unwrap_or_default();
    let token = SessionToken::parse(raw)?;
    match state.store.get(&token, now).await? {
        Some(session) => Ok((token, session)),
        None => Err(ApiError::invalid_token()),
    }
}

/// The user id of the Clerk JWT in `Authorization: Bearer …`.
pub(crate) async fn jwt_caller(state: &State, req: &Request) -> Result<String, ApiError> {
    let Some(value) = http::header(req, AUTHORIZATION) else {
        return Err(ApiError::missing_credentials(
            "an Authorization: Bearer <Clerk JWT> header",
        ));
    };
    let jwt = match value.split_once(' ') {
        Some((scheme, jwt)) if scheme.eq_ignore_ascii_case("bearer") && !jwt.trim().is_empty() => {
            jwt.trim()
        }
        _ => {
            return Err(ApiError::missing_credentials(
                "an Authorization: Bearer <Clerk JWT> header",
            ));
        }
    };
    Ok(state.verifier.verify(jwt).await?)
}

/// The caller's user id from a session token when one is sent, else from a Clerk JWT.
pub(crate) async fn any_caller(state: &State, req: &Request, now: i64) -> Result<String, ApiError> {
    Ok(caller(state, req, now).await?.0)
}

/// As [`any_caller`], with the session token when that is what the caller sent.
pub(crate) async fn caller(
    state: &State,
    req: &Request,
    now: i64,
) -> Result<(String, Option<SessionToken>), ApiError> {
    if http::has_header(req, SESSION_TOKEN_HEADER) {
        let (token, session) = session_caller(state, req, now).await?;
        return Ok((session.user_id, Some(token)));
    }
    if http::has_header(req, AUTHORIZATION) {
        return Ok((jwt_caller(state, req).await?, None));
    }
    Err(ApiError::missing_credentials(
        "an X-Session-Token header or an Authorization: Bearer <Clerk JWT> header",
    ))
}

/// Unix seconds as RFC 3339, UTC.
pub(crate) fn rfc3339(unix: i64) -> String {
    Rfc3339(unix).formatted().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_chronos_own() {
        for unix in [
            0,
            1,
            59,
            951_782_400,
            1_764_600_000,
            4_102_444_799,
            253_402_300_799,
        ] {
            let chrono = chrono::DateTime::from_timestamp(unix, 0)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            assert_eq!(rfc3339(unix), chrono);
            assert_eq!(
                serde_json::to_value(Rfc3339(unix)).unwrap(),
                Value::String(chrono)
            );
        }
    }

    /// The typed answer is the object the handlers built before, member for member and in the
    /// same order.
    #[test]
    fn a_session_answer_is_the_object_it_replaces() {
        let session = Session {
            user_id: "user \"quoted\" ☃".into(),
            ..Session::new(
                "x",
                true,
                None,
                crate::session::Lifetimes {
                    session: 3600,
                    remember_me: 86_400,
                    max_lifetime: 604_800,
                },
                1_764_600_000,
            )
        };
        let mut answer = SessionAnswer::of(&session, 1_764_600_100);
        answer.session_token = Some("abc.def");
        answer.valid = Some(true);
        let text = serde_json::to_string(&answer).unwrap();
        let expected = serde_json::json!({
            "user_id": session.user_id,
            "expires_at": rfc3339(session.expiry()),
            "expires_in": (session.expiry() - 1_764_600_100).max(0),
            "remember_me": true,
            "session_token": "abc.def",
            "valid": true,
            "success": true,
        });
        assert_eq!(text, expected.to_string());
    }
}
