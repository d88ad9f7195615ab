//! The HTTP contract of every endpoint, called the way a Lambda binary calls it: `shared::handle`
//! over a `State` and a `lambda_http::Request`, with no Lambda runtime. The main flow runs over a
//! real `redis-server`; pure input checks run over the memory store.

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lambda_http::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ALLOW,
    CONTENT_TYPE, VARY,
};
use lambda_http::http::{self, HeaderMap, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use shared::config::RedisMode;
use shared::session::{Session, now_unix};
use shared::store::{MemoryStore, RedisStore};
use shared::token::SessionId;
use shared::{Config, Endpoint, SessionToken, State, Store, handle};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use support::keys::{TestKeys, claims};
use support::servers::{RedisServer, free_port};
use support::stores::{self, Subject};

const EXTENSION: &str = "chrome-extension://testext";
const ALLOWED_ORIGINS: &str = "chrome-extension://testext,http://localhost:*";
const ADMIN: &str = "user_admin";
const ISSUER: &str = "https://clerk.example.com";

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// The configuration every test starts from; `extra` overrides (an empty value unsets).
fn config(extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::new();
    vars.insert(
        "CLERK_JWT_KEY".into(),
        TestKeys::shared().public_pem.clone(),
    );
    vars.insert("ALLOWED_ORIGINS".into(), ALLOWED_ORIGINS.into());
    vars.insert("ADMIN_USER_IDS".into(), ADMIN.into());
    for (name, value) in extra {
        vars.insert((*name).into(), (*value).into());
    }
    Config::from_map(&vars).expect("the test configuration is valid")
}

/// A state over one store, and whatever keeps that store's server alive.
struct Api {
    state: State,
    _subject: Option<Subject>,
}

impl Api {
    async fn redis() -> Api {
        Api::redis_with(&[]).await
    }

    async fn redis_with(extra: &[(&str, &str)]) -> Api {
        let subject = stores::redis_standalone().await;
        Api {
            state: State::with_store(config(extra), subject.store.clone()).expect("state"),
            _subject: Some(subject),
        }
    }

    fn memory() -> Api {
        Api::memory_with(&[])
    }

    fn memory_with(extra: &[(&str, &str)]) -> Api {
        Api::over(Store::Memory(MemoryStore::new()), extra)
    }

    fn over(store: Store, extra: &[(&str, &str)]) -> Api {
        Api {
            state: State::with_store(config(extra), store).expect("state"),
            _subject: None,
        }
    }

    fn store(&self) -> &Store {
        &self.state.store
    }

    async fn send(&self, endpoint: Endpoint, req: Request) -> Reply {
        Reply::from(handle(&self.state, endpoint, req).await)
    }

    /// A new session for `user` through the create endpoint; returns the whole success body.
    async fn create_body(&self, user: &str, remember_me: bool) -> Value {
        let body = json!({ "remember_me": remember_me }).to_string();
        let reply = self
            .send(
                Endpoint::SessionCreate,
                to(Endpoint::SessionCreate).jwt(&jwt(user)).text(&body),
            )
            .await;
        reply.ok().clone()
    }

    /// A new session token for `user`, through the create endpoint.
    async fn create(&self, user: &str, remember_me: bool) -> String {
        let body = self.create_body(user, remember_me).await;
        body["session_token"].as_str().expect("a token").to_owned()
    }

    /// A session put straight into the store, starting `age` seconds ago.
    async fn session_aged(&self, user: &str, age: i64) -> SessionToken {
        let token = SessionToken::mint(user);
        let session = Session::new(user, false, None, self.state.lifetimes(), now_unix() - age);
        self.store()
            .create(&token, &session)
            .await
            .expect("store a session");
        token
    }

    async fn validate(&self, token: &str) -> Reply {
        self.send(
            Endpoint::SessionValidate,
            to(Endpoint::SessionValidate).token(token).empty(),
        )
        .await
    }
}

/// One response, its body parsed.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    raw: String,
    body: Value,
}

impl From<lambda_http::Response<Body>> for Reply {
    fn from(response: lambda_http::Response<Body>) -> Self {
        let (parts, body) = response.into_parts();
        let raw = match body {
            Body::Empty => String::new(),
            Body::Text(text) => text,
            Body::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            _ => String::new(),
        };
        let body = if parts.status == StatusCode::NO_CONTENT {
            assert!(raw.is_empty(), "a 204 has no body: {raw}");
            Value::Null
        } else {
            assert_eq!(
                parts.headers.get(CONTENT_TYPE).map(HeaderValue::as_bytes),
                Some(&b"application/json"[..]),
                "every answer is JSON"
            );
            serde_json::from_str(&raw).unwrap_or_else(|e| panic!("not JSON ({e}): {raw}"))
        };
        Reply {
            status: parts.status,
            headers: parts.headers,
            raw,
            body,
        }
    }
}

impl Reply {
    /// The body of a 200 with `success: true`.
    #[track_caller]
    fn ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.raw);
        assert_eq!(self.body["success"], json!(true), "{}", self.raw);
        assert!(self.body.get("error").is_none(), "{}", self.raw);
        &self.body
    }

    /// An error answer: this status, this code, `success: false` and a message.
    #[track_caller]
    fn err(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.raw);
        assert_eq!(self.body["success"], json!(false), "{}", self.raw);
        assert_eq!(self.body["error"]["code"], json!(code), "{}", self.raw);
        let message = self.body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "an error has a message: {}", self.raw);
        &self.body
    }

    fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A request to `endpoint` at its own path and method (not for the cache endpoints).
fn to(endpoint: Endpoint) -> http::request::Builder {
    assert!(
        !endpoint.path().contains('{'),
        "use cache() for {endpoint:?}"
    );
    request(endpoint.method(), endpoint.path())
}

fn request(method: Method, uri: &str) -> http::request::Builder {
    http::Request::builder().method(method).uri(uri)
}

/// A request to the cache endpoint of `user`, its id percent-encoded in the path.
fn cache(endpoint: Endpoint, user: &str) -> http::request::Builder {
    request(endpoint.method(), &cache_path(user))
}

fn cache_path(user: &str) -> String {
    format!(
        "/api/cache/user/{}",
        utf8_percent_encode(user, NON_ALPHANUMERIC)
    )
}

trait Build {
    fn token(self, token: &str) -> Self;
    fn jwt(self, jwt: &str) -> Self;
    fn origin(self, origin: &str) -> Self;
    fn empty(self) -> Request;
    fn text(self, body: &str) -> Request;
    fn json(self, body: &Value) -> Request;
}

impl Build for http::request::Builder {
    fn token(self, token: &str) -> Self {
        self.header("X-Session-Token", token)
    }

    fn jwt(self, jwt: &str) -> Self {
        self.header("Authorization", format!("Bearer {jwt}"))
    }

    fn origin(self, origin: &str) -> Self {
        self.header("Origin", origin)
    }

    fn empty(self) -> Request {
        self.body(Body::Empty).expect("request")
    }

    fn text(self, body: &str) -> Request {
        self.body(Body::from(body)).expect("request")
    }

    fn json(self, body: &Value) -> Request {
        self.text(&body.to_string())
    }
}

/// A fresh Clerk-like JWT for `sub`, signed by the configured key.
fn jwt(sub: &str) -> String {
    TestKeys::shared().sign(&claims(sub), None)
}

/// A JWT for `user_jwt` whose claims `edit` changed, signed by the configured key.
fn jwt_with(edit: impl FnOnce(&mut Value)) -> String {
    let mut c = claims("user_jwt");
    edit(&mut c);
    TestKeys::shared().sign(&c, None)
}

/// `secret` with one character in the middle changed, still base64url.
fn tamper(secret: &str) -> String {
    let mut chars: Vec<char> = secret.chars().collect();
    chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Unix seconds of an RFC 3339 time; panics unless it is one.
#[track_caller]
fn unix(rfc3339: &Value) -> i64 {
    let text = rfc3339
        .as_str()
        .unwrap_or_else(|| panic!("{rfc3339} is not text"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text} is not RFC 3339: {e}"))
        .timestamp()
}

/// Asserts that every endpoint taking a Clerk JWT refuses `jwt` as `invalid_jwt`.
async fn assert_jwt_refused(api: &Api, jwt: &str, why: &str) {
    let cases = [
        (Endpoint::SessionCreate, to(Endpoint::SessionCreate)),
        (Endpoint::SessionLogoutAll, to(Endpoint::SessionLogoutAll)),
        (Endpoint::SessionStats, to(Endpoint::SessionStats)),
        (Endpoint::SessionList, to(Endpoint::SessionList)),
        (Endpoint::SessionRevoke, to(Endpoint::SessionRevoke)),
        (Endpoint::CacheGet, cache(Endpoint::CacheGet, "user_jwt")),
        (Endpoint::CachePut, cache(Endpoint::CachePut, "user_jwt")),
    ];
    for (endpoint, builder) in cases {
        let reply = api.send(endpoint, builder.jwt(jwt).text("{}")).await;
        assert_eq!(
            reply.body["error"]["code"],
            json!("invalid_jwt"),
            "{why}: {endpoint:?} answered {}",
            reply.raw
        );
        reply.err(401, "invalid_jwt");
    }
}

/// Asserts the create endpoint accepts `jwt` (the control for each attack).
async fn assert_jwt_accepted(api: &Api, jwt: &str, why: &str) {
    let reply = api
        .send(
            Endpoint::SessionCreate,
            to(Endpoint::SessionCreate).jwt(jwt).empty(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{why}: {}", reply.raw);
    reply.ok();
}

// ---------------------------------------------------------------------------------------------
// Every contract row, succeeding (real redis-server)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_without_remember_me() {
    let api = Api::redis().await;
    for body in [
        None,
        Some(""),
        Some("{}"),
        Some(r#"{"remember_me": false}"#),
    ] {
        let builder = to(Endpoint::SessionCreate).jwt(&jwt("user_create"));
        let req = match body {
            None => builder.empty(),
            Some(text) => builder.text(text),
        };
        let before = now_unix();
        let reply = api.send(Endpoint::SessionCreate, req).await;
        let body = reply.ok();
        assert_eq!(body["user_id"], json!("user_create"));
        assert_eq!(body["remember_me"], json!(false));
        let expires_in = body["expires_in"].as_i64().expect("expires_in");
        assert!((3590..=3600).contains(&expires_in), "{expires_in}");
        let expires_at = unix(&body["expires_at"]);
        assert!(
            (before + 3595..=now_unix() + 3600).contains(&expires_at),
            "{expires_at}"
        );
        let token = body["session_token"].as_str().expect("session_token");
        let (user_key, secret) = token.split_once('.').expect("<user key>.<secret>");
        assert_eq!(user_key, b64(b"user_create"));
        assert_eq!(B64.decode(secret).expect("base64url").len(), 32);
    }
}

#[tokio::test]
async fn create_with_remember_me() {
    let api = Api::redis().await;
    let body = api.create_body("user_remember", true).await;
    assert_eq!(body["remember_me"], json!(true));
    assert_eq!(body["user_id"], json!("user_remember"));
    let expires_in = body["expires_in"].as_i64().expect("expires_in");
    assert!(
        (2_591_990..=2_592_000).contains(&expires_in),
        "{expires_in}"
    );
    let expires_at = unix(&body["expires_at"]);
    assert!((expires_at - now_unix() - expires_in).abs() <= 2);

    let token = body["session_token"].as_str().unwrap();
    let validated = api.validate(token).await;
    assert_eq!(validated.ok()["remember_me"], json!(true));
    assert_eq!(validated.ok()["expires_at"], body["expires_at"]);
}

#[tokio::test]
async fn two_creates_give_two_distinct_tokens() {
    let api = Api::redis().await;
    let a = api.create("user_twice", false).await;
    let b = api.create("user_twice", false).await;
    assert_ne!(a, b);
    api.validate(&a).await.ok();
    api.validate(&b).await.ok();
}

#[tokio::test]
async fn validate_answers_valid_user_and_expiry() {
    let api = Api::redis().await;
    let created = api.create_body("user_validate", false).await;
    let token = created["session_token"].as_str().unwrap();
    let reply = api.validate(token).await;
    let body = reply.ok();
    assert_eq!(body["valid"], json!(true));
    assert_eq!(body["user_id"], json!("user_validate"));
    assert_eq!(body["expires_at"], created["expires_at"]);
    assert!(body["expires_in"].as_i64().unwrap() > 3500);
    assert!(
        !reply.raw.contains(token),
        "validate does not echo the token"
    );
}

#[tokio::test]
async fn refresh_slides_the_expiry() {
    let api = Api::redis_with(&[("SESSION_TIMEOUT", "60")]).await;
    // Thirty seconds into a sixty-second session: thirty left.
    let token = api.session_aged("user_refresh", 30).await;
    let before = api.validate(token.expose()).await;
    let old = unix(&before.ok()["expires_at"]);
    assert!(old <= now_unix() + 30);

    let reply = api
        .send(
            Endpoint::SessionRefresh,
            to(Endpoint::SessionRefresh).token(token.expose()).empty(),
        )
        .await;
    let body = reply.ok();
    let new = unix(&body["expires_at"]);
    assert!(new >= old, "refresh moved the expiry back: {old} -> {new}");
    assert!(
        new >= now_unix() + 55,
        "refresh grants a full window: {new}"
    );
    assert_eq!(body["user_id"], json!("user_refresh"));
    assert!((55..=60).contains(&body["expires_in"].as_i64().unwrap()));
    // Validate sees the refreshed expiry.
    assert_eq!(
        api.validate(token.expose()).await.ok()["expires_at"],
        body["expires_at"]
    );

    // A fresh session refreshed at once keeps (or slightly moves) its expiry: never backwards.
    let created = api.create_body("user_refresh", false).await;
    let reply = api
        .send(
            Endpoint::SessionRefresh,
            to(Endpoint::SessionRefresh)
                .token(created["session_token"].as_str().unwrap())
                .empty(),
        )
        .await;
    assert!(unix(&reply.ok()["expires_at"]) >= unix(&created["expires_at"]));
}

#[tokio::test]
async fn refresh_never_passes_the_absolute_cap() {
    let api = Api::redis_with(&[("SESSION_TIMEOUT", "60"), ("SESSION_MAX_LIFETIME", "100")]).await;
    // Fifty seconds old: ten left in its window, fifty before the cap.
    let token = api.session_aged("user_cap", 50).await;
    let created_at = api.store().sessions_of(token.user_key()).await.unwrap()[0]
        .1
        .created_at;
    let reply = api
        .send(
            Endpoint::SessionRefresh,
            to(Endpoint::SessionRefresh).token(token.expose()).empty(),
        )
        .await;
    let body = reply.ok();
    assert_eq!(unix(&body["expires_at"]), created_at + 100);
    assert!(body["expires_in"].as_i64().unwrap() <= 50);
}

#[tokio::test]
async fn logout_ends_the_session_at_once() {
    let api = Api::redis().await;
    let token = api.create("user_logout", false).await;
    let other = api.create("user_logout", false).await;
    let reply = api
        .send(
            Endpoint::SessionLogout,
            to(Endpoint::SessionLogout).token(&token).empty(),
        )
        .await;
    assert_eq!(reply.ok()["user_id"], json!("user_logout"));

    let gone = api.validate(&token).await;
    gone.err(401, "invalid_token");
    assert_eq!(gone.body["valid"], json!(false));
    api.send(
        Endpoint::SessionRefresh,
        to(Endpoint::SessionRefresh).token(&token).empty(),
    )
    .await
    .err(401, "invalid_token");
    api.send(
        Endpoint::SessionLogout,
        to(Endpoint::SessionLogout).token(&token).empty(),
    )
    .await
    .err(401, "invalid_token");
    api.send(
        Endpoint::CacheGet,
        cache(Endpoint::CacheGet, "user_logout")
            .token(&token)
            .empty(),
    )
    .await
    .err(401, "invalid_token");
    // The user's other session is untouched.
    api.validate(&other).await.ok();
}

#[tokio::test]
async fn logout_all_with_a_session_token() {
    let api = Api::redis().await;
    let mine = [
        api.create("user_a", false).await,
        api.create("user_a", true).await,
        api.create("user_a", false).await,
    ];
    let theirs = api.create("user_b", false).await;

    let reply = api
        .send(
            Endpoint::SessionLogoutAll,
            to(Endpoint::SessionLogoutAll).token(&mine[1]).empty(),
        )
        .await;
    let body = reply.ok();
    assert_eq!(body["revoked"], json!(3));
    assert_eq!(body["user_id"], json!("user_a"));
    for token in &mine {
        let gone = api.validate(token).await;
        gone.err(401, "invalid_token");
        assert_eq!(gone.body["valid"], json!(false));
    }
    api.validate(&theirs).await.ok();
    // The token that asked is gone too: asking again is refused.
    api.send(
        Endpoint::SessionLogoutAll,
        to(Endpoint::SessionLogoutAll).token(&mine[0]).empty(),
    )
    .await
    .err(401, "invalid_token");
}

#[tokio::test]
async fn logout_all_with_a_clerk_jwt() {
    let api = Api::redis().await;
    let mine = [
        api.create("user_a", false).await,
        api.create("user_a", false).await,
    ];
    let theirs = [
        api.create("user_b", true).await,
        api.create("user_b", false).await,
    ];
    let reply = api
        .send(
            Endpoint::SessionLogoutAll,
            to(Endpoint::SessionLogoutAll).jwt(&jwt("user_a")).empty(),
        )
        .await;
    assert_eq!(reply.ok()["revoked"], json!(2));
    assert_eq!(reply.ok()["user_id"], json!("user_a"));
    for token in &mine {
        api.validate(token).await.err(401, "invalid_token");
    }
    for token in &theirs {
        api.validate(token).await.ok();
    }
    // Nothing left: zero revoked, still a success.
    let again = api
        .send(
            Endpoint::SessionLogoutAll,
            to(Endpoint::SessionLogoutAll).jwt(&jwt("user_a")).empty(),
        )
        .await;
    assert_eq!(again.ok()["revoked"], json!(0));
}

#[tokio::test]
async fn logout_all_counts_only_active_sessions() {
    let api = Api::memory_with(&[("SESSION_TIMEOUT", "60")]);
    let lapsed = api.session_aged("user_lapsed", 120).await;
    let live = api.create("user_lapsed", false).await;
    let reply = api
        .send(
            Endpoint::SessionLogoutAll,
            to(Endpoint::SessionLogoutAll).token(&live).empty(),
        )
        .await;
    assert_eq!(reply.ok()["revoked"], json!(1));
    api.validate(lapsed.expose())
        .await
        .err(401, "invalid_token");
}

const CHROME_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

/// A session of `user` made through create by a browser sending `agent`; its token.
async fn create_from(api: &Api, user: &str, agent: &str, remember_me: bool) -> String {
    let body = json!({ "remember_me": remember_me }).to_string();
    let reply = api
        .send(
            Endpoint::SessionCreate,
            to(Endpoint::SessionCreate)
                .jwt(&jwt(user))
                .header("User-Agent", agent)
                .text(&body),
        )
        .await;
    reply.ok()["session_token"]
        .as_str()
        .expect("a token")
        .to_owned()
}

fn session_id(token: &str) -> String {
    SessionId::of(&SessionToken::parse(token).unwrap().hash()).to_string()
}

#[tokio::test]
async fn list_shows_the_callers_active_sessions_newest_first() {
    let api = Api::redis().await;
    let older = api.session_aged("user_list", 100).await;
    // A record written before device labels existed holds the first 64 bytes of a user agent:
    // the list shows its label.
    let from_before = SessionToken::mint("user_list");
    let session = Session {
        device: Some(CHROME_MAC[..64].into()),
        ..Session::new(
            "user_list",
            false,
            None,
            api.state.lifetimes(),
            now_unix() - 50,
        )
    };
    api.store().create(&from_before, &session).await.unwrap();
    let mac = create_from(&api, "user_list", CHROME_MAC, true).await;
    // Created in the same second as `mac`; the order between the two is the token hashes'.
    let linux = create_from(&api, "user_list", FIREFOX_LINUX, false).await;
    api.session_aged("user_list", 10 * 86_400).await; // lapsed long ago
    let others = api.create("user_list_other", false).await;

    let by_token = api
        .send(
            Endpoint::SessionList,
            to(Endpoint::SessionList).token(&mac).empty(),
        )
        .await;
    let body = by_token.ok();
    assert_eq!(body["user_id"], json!("user_list"));
    let sessions = body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 4, "{}", by_token.raw);
    let ids: Vec<&str> = sessions
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    let mut newest = [session_id(&mac), session_id(&linux)];
    let hash = |t: &str| SessionToken::parse(t).unwrap().hash();
    if hash(&mac).as_bytes() > hash(&linux).as_bytes() {
        newest.reverse();
    }
    assert_eq!(ids[..2], newest.each_ref().map(String::as_str));
    assert_eq!(ids[2], SessionId::of(&from_before.hash()).to_string());
    assert_eq!(ids[3], SessionId::of(&older.hash()).to_string());
    assert!(!ids.contains(&session_id(&others).as_str()));
    for session in sessions {
        let keys: Vec<&str> = session
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "created_at",
                "current",
                "device",
                "expires_at",
                "last_refreshed_at",
                "remember_me",
                "session_id"
            ]
        );
        assert_eq!(
            session["current"],
            json!(session["session_id"] == json!(session_id(&mac)))
        );
        assert!(unix(&session["created_at"]) <= unix(&session["last_refreshed_at"]));
        assert!(unix(&session["expires_at"]) > now_unix());
        // Never the token, never the whole hash.
        let id = session["session_id"].as_str().unwrap();
        assert_eq!(id.len(), 16);
        assert!(!mac.contains(id) && !linux.contains(id));
    }
    let by_id = |id: &str| {
        sessions
            .iter()
            .find(|s| s["session_id"] == json!(id))
            .unwrap()
            .clone()
    };
    let mac_row = by_id(&session_id(&mac));
    assert_eq!(mac_row["device"], json!("Chrome 131 on macOS"));
    assert_eq!(mac_row["remember_me"], json!(true));
    assert_eq!(mac_row["current"], json!(true));
    assert_eq!(
        by_id(&session_id(&linux))["device"],
        json!("Firefox 133 on Linux")
    );
    assert_eq!(by_id(&session_id(&linux))["remember_me"], json!(false));
    assert_eq!(
        by_id(&SessionId::of(&older.hash()).to_string())["device"],
        json!("unknown")
    );
    assert_eq!(
        by_id(&SessionId::of(&from_before.hash()).to_string())["device"],
        json!("macOS")
    );

    // A refresh moves last_refreshed_at, and the list shows it.
    api.send(
        Endpoint::SessionRefresh,
        to(Endpoint::SessionRefresh).token(&linux).empty(),
    )
    .await
    .ok();
    // With a Clerk JWT: the same sessions, none current.
    let by_jwt = api
        .send(
            Endpoint::SessionList,
            to(Endpoint::SessionList).jwt(&jwt("user_list")).empty(),
        )
        .await;
    let listed = by_jwt.ok()["sessions"].as_array().unwrap();
    assert_eq!(listed.len(), 4);
    assert!(listed.iter().all(|s| s["current"] == json!(false)));

    // No session at all: an empty list.
    let none = api
        .send(
            Endpoint::SessionList,
            to(Endpoint::SessionList)
                .jwt(&jwt("user_list_none"))
                .empty(),
        )
        .await;
    assert_eq!(none.ok()["sessions"], json!([]));
    // A revoked token lists nothing.
    api.send(
        Endpoint::SessionLogout,
        to(Endpoint::SessionLogout).token(&others).empty(),
    )
    .await
    .ok();
    api.send(
        Endpoint::SessionList,
        to(Endpoint::SessionList).token(&others).empty(),
    )
    .await
    .err(401, "invalid_token");
}

#[tokio::test]
async fn revoke_ends_that_one_session_of_the_caller() {
    let api = Api::redis().await;
    let here = create_from(&api, "user_rev", CHROME_MAC, false).await;
    let there = create_from(&api, "user_rev", FIREFOX_LINUX, true).await;
    let bystander = api.create("user_rev", false).await;
    let others = api.create("user_rev_other", false).await;
    let revoke = |credential: Result<&str, String>, id: &str| {
        let builder = match &credential {
            Ok(token) => to(Endpoint::SessionRevoke).token(token),
            Err(jwt) => to(Endpoint::SessionRevoke).jwt(jwt),
        };
        api.send(
            Endpoint::SessionRevoke,
            builder.json(&json!({ "session_id": id })),
        )
    };

    // "Sign out that other device".
    let reply = revoke(Ok(&here), &session_id(&there)).await;
    assert_eq!(
        reply.ok(),
        &json!({
            "success": true,
            "user_id": "user_rev",
            "session_id": session_id(&there),
            "current": false,
        })
    );
    api.validate(&there).await.err(401, "invalid_token");
    api.validate(&here).await.ok();
    api.validate(&bystander).await.ok();
    // Gone once: the same id again is unknown.
    revoke(Ok(&here), &session_id(&there))
        .await
        .err(404, "session_not_found");

    // Another user's session id answers exactly as an unknown one, and that session stays.
    let theirs = revoke(Ok(&here), &session_id(&others)).await;
    let never = SessionToken::mint("user_rev");
    let unknown = revoke(Ok(&here), &session_id(never.expose())).await;
    theirs.err(404, "session_not_found");
    assert_eq!(theirs.raw, unknown.raw);
    assert_eq!(theirs.status, unknown.status);
    api.validate(&others).await.ok();

    // With a Clerk JWT.
    let reply = revoke(Err(jwt("user_rev")), &session_id(&bystander)).await;
    assert_eq!(reply.ok()["current"], json!(false));
    api.validate(&bystander).await.err(401, "invalid_token");

    // Revoking one's own session is a logout.
    let reply = revoke(Ok(&here), &session_id(&here)).await;
    assert_eq!(reply.ok()["current"], json!(true));
    api.validate(&here).await.err(401, "invalid_token");
    revoke(Ok(&here), &session_id(&here))
        .await
        .err(401, "invalid_token");
    api.validate(&others).await.ok();
}

#[tokio::test]
async fn revoke_refuses_bad_bodies_and_writes_nothing() {
    let api = Api::redis().await;
    let token = api.create("user_rev_bad", false).await;
    let id = session_id(&token);
    let cases: Vec<(String, u16, &str)> = vec![
        (String::new(), 400, "invalid_json"),
        ("   ".into(), 400, "invalid_json"),
        ("{".into(), 400, "invalid_json"),
        ("[]".into(), 400, "invalid_request"),
        ("\"x\"".into(), 400, "invalid_request"),
        ("{}".into(), 400, "invalid_request"),
        (r#"{"session_id": null}"#.into(), 400, "invalid_request"),
        (r#"{"session_id": 7}"#.into(), 400, "invalid_request"),
        (r#"{"session_id": ""}"#.into(), 400, "invalid_request"),
        (r#"{"session_id": "short"}"#.into(), 400, "invalid_request"),
        (
            format!(r#"{{"session_id": "{id}A"}}"#),
            400,
            "invalid_request",
        ),
        (
            format!(r#"{{"session_id": "{}+"}}"#, &id[1..]),
            400,
            "invalid_request",
        ),
        // The token itself is no session id.
        (
            format!(r#"{{"session_id": "{token}"}}"#),
            400,
            "invalid_request",
        ),
        (
            format!(r#"{{"session_id": "{id}", "pad": "{}"}}"#, "x".repeat(5000)),
            413,
            "payload_too_large",
        ),
    ];
    for (body, status, code) in cases {
        let reply = api
            .send(
                Endpoint::SessionRevoke,
                to(Endpoint::SessionRevoke).token(&token).text(&body),
            )
            .await;
        assert_eq!(reply.status.as_u16(), status, "{body:.80}: {}", reply.raw);
        reply.err(status, code);
        api.validate(&token).await.ok();
    }
    // No credential, a forged one: 401, and the session stays.
    let body = json!({ "session_id": id });
    api.send(
        Endpoint::SessionRevoke,
        to(Endpoint::SessionRevoke).json(&body),
    )
    .await
    .err(401, "missing_credentials");
    let forged = SessionToken::mint("user_rev_bad");
    api.send(
        Endpoint::SessionRevoke,
        to(Endpoint::SessionRevoke)
            .token(forged.expose())
            .json(&body),
    )
    .await
    .err(401, "invalid_token");
    api.send(
        Endpoint::SessionRevoke,
        to(Endpoint::SessionRevoke).jwt("not.a.jwt").json(&body),
    )
    .await
    .err(401, "invalid_jwt");
    api.validate(&token).await.ok();
    // The wrong method.
    api.send(
        Endpoint::SessionRevoke,
        request(Method::GET, Endpoint::SessionRevoke.path())
            .token(&token)
            .empty(),
    )
    .await
    .err(405, "method_not_allowed");
    api.send(
        Endpoint::SessionList,
        request(Method::POST, Endpoint::SessionList.path())
            .token(&token)
            .empty(),
    )
    .await
    .err(405, "method_not_allowed");
}

#[tokio::test]
async fn stats_with_a_jwt_and_with_a_session_token() {
    let api = Api::redis().await;
    let first = api.create("user_stats", false).await;
    api.create("user_stats", true).await;
    api.create("user_other", false).await;

    let by_jwt = api
        .send(
            Endpoint::SessionStats,
            to(Endpoint::SessionStats).jwt(&jwt("user_stats")).empty(),
        )
        .await;
    let by_token = api
        .send(
            Endpoint::SessionStats,
            to(Endpoint::SessionStats).token(&first).empty(),
        )
        .await;
    for reply in [&by_jwt, &by_token] {
        let stats = &reply.ok()["stats"];
        assert_eq!(stats["user_id"], json!("user_stats"));
        assert_eq!(stats["active_sessions"], json!(2));
        assert_eq!(stats["remember_me_sessions"], json!(1));
        assert_eq!(stats["backend"], json!("redis"));
        let oldest = unix(&stats["oldest_session_created_at"]);
        let newest = unix(&stats["newest_session_created_at"]);
        assert!(oldest <= newest && newest <= now_unix());
        assert!(
            stats.get("global").is_none(),
            "global figures are for admins only: {}",
            reply.raw
        );
    }

    // A user with no session (JWT only) sees zeros and no times.
    let empty = api
        .send(
            Endpoint::SessionStats,
            to(Endpoint::SessionStats).jwt(&jwt("user_none")).empty(),
        )
        .await;
    let stats = &empty.ok()["stats"];
    assert_eq!(stats["active_sessions"], json!(0));
    assert_eq!(stats["oldest_session_created_at"], Value::Null);
    assert!(stats.get("global").is_none());
}

#[tokio::test]
async fn stats_show_global_figures_to_admins_only() {
    let api = Api::redis().await;
    api.create("user_x", false).await;
    api.create("user_x", true).await;
    api.create("user_y", false).await;
    let admin_token = api.create(ADMIN, false).await;

    for req in [
        to(Endpoint::SessionStats).jwt(&jwt(ADMIN)).empty(),
        to(Endpoint::SessionStats).token(&admin_token).empty(),
    ] {
        let reply = api.send(Endpoint::SessionStats, req).await;
        let stats = &reply.ok()["stats"];
        assert_eq!(stats["user_id"], json!(ADMIN));
        assert_eq!(stats["active_sessions"], json!(1));
        assert_eq!(
            stats["global"]["active_sessions"],
            json!(4),
            "{}",
            reply.raw
        );
        assert_eq!(stats["global"]["users_with_sessions"], json!(3));
    }
    // An id that merely contains the admin id is not an admin.
    let reply = api
        .send(
            Endpoint::SessionStats,
            to(Endpoint::SessionStats)
                .jwt(&jwt(&format!("{ADMIN}_2")))
                .empty(),
        )
        .await;
    assert!(reply.ok()["stats"].get("global").is_none());
}

#[tokio::test]
async fn cache_round_trips_any_json_with_a_token_and_with_a_jwt() {
    let api = Api::redis_with(&[("USER_CACHE_TTL", "120")]).await;
    let token = api.create("user_cache", false).await;
    let values = [
        json!({ "theme": "dark", "picked": ["#fff", "#000"], "n": { "deep": [1, 2.5, null] } }),
        json!([1, "two", { "three": 3 }, [], {}]),
        json!("just a string with ünïcode and \"quotes\""),
        json!(42),
        json!(-1.5e10),
        json!(true),
        json!(null),
    ];
    for (i, value) in values.iter().enumerate() {
        let put = if i % 2 == 0 {
            cache(Endpoint::CachePut, "user_cache").token(&token)
        } else {
            cache(Endpoint::CachePut, "user_cache").jwt(&jwt("user_cache"))
        };
        let reply = api.send(Endpoint::CachePut, put.json(value)).await;
        let body = reply.ok();
        assert_eq!(body["user_id"], json!("user_cache"));
        assert_eq!(body["expires_in"], json!(120));
        let expires_at = unix(&body["expires_at"]);
        assert!((expires_at - now_unix() - 120).abs() <= 2);

        for get in [
            cache(Endpoint::CacheGet, "user_cache").token(&token),
            cache(Endpoint::CacheGet, "user_cache").jwt(&jwt("user_cache")),
        ] {
            let reply = api.send(Endpoint::CacheGet, get.empty()).await;
            let body = reply.ok();
            assert_eq!(&body["data"], value, "{}", reply.raw);
            assert_eq!(body["user_id"], json!("user_cache"));
        }
    }
}

#[tokio::test]
async fn cache_get_of_nothing_is_a_cache_miss() {
    let api = Api::redis().await;
    let token = api.create("user_empty", false).await;
    let reply = api
        .send(
            Endpoint::CacheGet,
            cache(Endpoint::CacheGet, "user_empty")
                .token(&token)
                .empty(),
        )
        .await;
    reply.err(404, "cache_miss");
    assert!(reply.body.get("data").is_none());
    // Another user's data is not this user's hit.
    let other = api.create("user_full", false).await;
    api.send(
        Endpoint::CachePut,
        cache(Endpoint::CachePut, "user_full")
            .token(&other)
            .json(&json!({"a": 1})),
    )
    .await
    .ok();
    api.send(
        Endpoint::CacheGet,
        cache(Endpoint::CacheGet, "user_empty")
            .jwt(&jwt("user_empty"))
            .empty(),
    )
    .await
    .err(404, "cache_miss");
}

// ---------------------------------------------------------------------------------------------
// Every error code
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_json_is_invalid_json() {
    let api = Api::memory();
    for bad in [
        "{",
        "{remember_me: true}",
        "nul",
        "{\"remember_me\": tru}",
        "\u{1}",
    ] {
        api.send(
            Endpoint::SessionCreate,
            to(Endpoint::SessionCreate).jwt(&jwt("u1")).text(bad),
        )
        .await
        .err(400, "invalid_json");
        api.send(
            Endpoint::CachePut,
            cache(Endpoint::CachePut, "u1").jwt(&jwt("u1")).text(bad),
        )
        .await
        .err(400, "invalid_json");
    }
    // Trailing garbage after a valid document.
    api.send(
        Endpoint::CachePut,
        cache(Endpoint::CachePut, "u1")
            .jwt(&jwt("u1"))
            .text("{} {}"),
    )
    .await
    .err(400, "invalid_json");
    // A cache put needs a body.
    for empty in ["", "   \n"] {
        api.send(
            Endpoint::CachePut,
            cache(Endpoint::CachePut, "u1").jwt(&jwt("u1")).text(empty),
        )
        .await
        .err(400, "invalid_json");
    }
}

#[tokio::test]
async fn a_body_of_the_wrong_shape_is_invalid_request() {
    let api = Api::memory();
    for bad in [
        r#"{"remember_me": "yes"}"#,
        r#"{"remember_me": 1}"#,
        r#"{"remember_me": [true]}"#,
        "[true]",
        "[]",
        "\"remember_me\"",
        "true",
        "7",
    ] {
        api.send(
            Endpoint::SessionCreate,
            to(Endpoint::SessionCreate).jwt(&jwt("u1")).text(bad),
        )
        .await
        .err(400, "invalid_request");
    }
    // Unknown fields and a null flag are tolerated.
    let reply = api
        .send(
            Endpoint::SessionCreate,
            to(Endpoint::SessionCreate)
                .jwt(&jwt("u1"))
                .text(r#"{"remember_me": null, "extra": 1}"#),
        )
        .await;
    assert_eq!(reply.ok()["remember_me"], json!(false));
}

#[tokio::test]
async fn no_credentials_is_missing_credentials() {
    let api = Api::memory();
    let jwt_endpoints = [
        (Endpoint::SessionCreate, to(Endpoint::SessionCreate)),
        (Endpoint::SessionLogoutAll, to(Endpoint::SessionLogoutAll)),
        (Endpoint::SessionStats, to(Endpoint::SessionStats)),
        (Endpoint::SessionList, to(Endpoint::SessionList)),
        (Endpoint::SessionRevoke, to(Endpoint::SessionRevoke)),
        (Endpoint::CacheGet, cache(Endpoint::CacheGet, "u1")),
        (Endpoint::CachePut, cache(Endpoint::CachePut, "u1")),
    ];
    for (endpoint, builder) in jwt_endpoints {
        for authorization in [
            None,
            Some("Bearer"),
            Some("Bearer "),
            Some("Bearer    "),
            Some("Basic xyz"),
            Some("Token abc.def.ghi"),
            Some(""),
        ] {
            let builder = builder.clone_parts();
            let builder = match authorization {
                Some(value) => builder.header("Authorization", value),
                None => builder,
            };
            let reply = api.send(endpoint, builder.text("{}")).await;
            assert_eq!(
                reply.body["error"]["code"],
                json!("missing_credentials"),
                "{endpoint:?} with {authorization:?}: {}",
                reply.raw
            );
            reply.err(401, "missing_credentials");
        }
    }
    for endpoint in [
        Endpoint::SessionValidate,
        Endpoint::SessionRefresh,
        Endpoint::SessionLogout,
    ] {
        let reply = api.send(endpoint, to(endpoint).empty()).await;
        reply.err(401, "missing_credentials");
        if endpoint == Endpoint::SessionValidate {
            assert_eq!(reply.body["valid"], json!(false));
        }
        // A Clerk JWT is not a session credential.
        api.send(endpoint, to(endpoint).jwt(&jwt("u1")).empty())
            .await
            .err(401, "missing_credentials");
    }
}

/// `http::request::Builder` is not `Clone`; rebuild one with the same method and URI.
trait CloneParts {
    fn clone_parts(&self) -> http::request::Builder;
}

impl CloneParts for http::request::Builder {
    fn clone_parts(&self) -> http::request::Builder {
        let method = self.method_ref().cloned().unwrap_or(Method::GET);
        let uri = self.uri_ref().cloned().unwrap_or_default();
        http::Request::builder().method(method).uri(uri)
    }
}

#[tokio::test]
async fn a_bad_session_token_is_invalid_token() {
    let api = Api::redis().await;
    let good = api.create("user_tok", false).await;
    let (user_part, secret) = good.split_once('.').unwrap();
    let tampered = format!("{user_part}.{}", tamper(secret));
    // Someone else's routing key with this user's secret.
    let moved = format!("{}.{secret}", b64(b"user_other"));
    let unknown = SessionToken::mint("user_tok");
    let long = format!("{user_part}.{}", "A".repeat(2048));
    let cases = [
        "garbage".to_owned(),
        String::new(),
        " ".to_owned(),
        long,
        "A".repeat(2048),
        tampered,
        moved,
        unknown.expose().to_owned(),
        format!("{good}x"),
        good.replace('.', ""),
        jwt("user_tok"),
    ];
    for bad in &cases {
        for endpoint in [
            Endpoint::SessionValidate,
            Endpoint::SessionRefresh,
            Endpoint::SessionLogout,
            Endpoint::SessionLogoutAll,
            Endpoint::SessionStats,
        ] {
            let reply = api.send(endpoint, to(endpoint).token(bad).empty()).await;
            assert_eq!(
                reply.body["error"]["code"],
                json!("invalid_token"),
                "{endpoint:?} with {bad:?}: {}",
                reply.raw
            );
            reply.err(401, "invalid_token");
            if endpoint == Endpoint::SessionValidate {
                assert_eq!(reply.body["valid"], json!(false));
            }
        }
        for endpoint in [Endpoint::CacheGet, Endpoint::CachePut] {
            api.send(endpoint, cache(endpoint, "user_tok").token(bad).text("{}"))
                .await
                .err(401, "invalid_token");
        }
    }
    // None of that touched the real session.
    api.validate(&good).await.ok();
}

#[tokio::test]
async fn an_expired_session_is_invalid_token_on_redis() {
    let api = Api::redis_with(&[("SESSION_TIMEOUT", "60")]).await;
    let expired = api.session_aged("user_old", 61).await;
    assert_expired_is_refused(&api, &expired).await;
}

#[tokio::test]
async fn an_expired_session_still_in_the_store_is_refused() {
    // The memory store keeps lapsed records (as DynamoDB does until TTL runs): reads refuse them.
    let api = Api::memory_with(&[("SESSION_TIMEOUT", "60")]);
    let expired = api.session_aged("user_old", 61).await;
    assert_eq!(
        api.store()
            .sessions_of(expired.user_key())
            .await
            .unwrap()
            .len(),
        1,
        "the store still holds the lapsed record"
    );
    assert_expired_is_refused(&api, &expired).await;
}

async fn assert_expired_is_refused(api: &Api, expired: &SessionToken) {
    let reply = api.validate(expired.expose()).await;
    reply.err(401, "invalid_token");
    assert_eq!(reply.body["valid"], json!(false));
    for endpoint in [
        Endpoint::SessionRefresh,
        Endpoint::SessionLogoutAll,
        Endpoint::SessionStats,
    ] {
        api.send(endpoint, to(endpoint).token(expired.expose()).empty())
            .await
            .err(401, "invalid_token");
    }
    api.send(
        Endpoint::CacheGet,
        cache(Endpoint::CacheGet, "user_old")
            .token(expired.expose())
            .empty(),
    )
    .await
    .err(401, "invalid_token");
    // Refresh cannot bring it back.
    api.validate(expired.expose())
        .await
        .err(401, "invalid_token");
}

#[tokio::test]
async fn a_bad_jwt_is_invalid_jwt() {
    let api = Api::memory();
    assert_jwt_refused(&api, "garbage", "garbage").await;
}

#[tokio::test]
async fn another_users_cache_is_forbidden() {
    let api = Api::redis().await;
    let alice = api.create("alice", false).await;
    let bob = api.create("bob", false).await;
    api.send(
        Endpoint::CachePut,
        cache(Endpoint::CachePut, "bob")
            .token(&bob)
            .json(&json!({"secret": "bob's"})),
    )
    .await
    .ok();

    for (endpoint, body) in [(Endpoint::CacheGet, ""), (Endpoint::CachePut, "{\"x\":1}")] {
        let by_token = api
            .send(endpoint, cache(endpoint, "bob").token(&alice).text(body))
            .await;
        by_token.err(403, "forbidden");
        assert!(!by_token.raw.contains("bob's"));
        let by_jwt = api
            .send(
                endpoint,
                cache(endpoint, "bob").jwt(&jwt("alice")).text(body),
            )
            .await;
        by_jwt.err(403, "forbidden");
        assert!(!by_jwt.raw.contains("bob's"));
    }
    // Bob's data is as Bob left it.
    let reply = api
        .send(
            Endpoint::CacheGet,
            cache(Endpoint::CacheGet, "bob").token(&bob).empty(),
        )
        .await;
    assert_eq!(reply.ok()["data"], json!({"secret": "bob's"}));
    // Case and prefix do not make another user the same user.
    for path_user in ["Alice", "alic", "alice ", "alice%"] {
        api.send(
            Endpoint::CacheGet,
            cache(Endpoint::CacheGet, path_user).token(&alice).empty(),
        )
        .await
        .err(403, "forbidden");
    }
}

#[tokio::test]
async fn a_wrong_method_is_method_not_allowed_with_an_allow_header() {
    let api = Api::memory();
    for endpoint in Endpoint::ALL {
        let path = endpoint.path().replace("{user_id}", "u1");
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::HEAD,
        ] {
            if method == endpoint.method() {
                continue;
            }
            // No credentials: the method is checked first.
            let reply = api
                .send(
                    endpoint,
                    request(method.clone(), &path).origin(EXTENSION).empty(),
                )
                .await;
            reply.err(405, "method_not_allowed");
            assert_eq!(
                reply.header(ALLOW),
                Some(endpoint.method().as_str()),
                "{endpoint:?} {method}"
            );
            // CORS still applies, so the page can read the 405.
            assert_eq!(reply.header(ACCESS_CONTROL_ALLOW_ORIGIN), Some(EXTENSION));
        }
        // The right method gets no Allow header.
        let reply = api
            .send(endpoint, request(endpoint.method(), &path).empty())
            .await;
        assert!(reply.header(ALLOW).is_none(), "{endpoint:?}");
    }
}

#[tokio::test]
async fn a_cache_body_over_the_cap_is_payload_too_large() {
    let api = Api::memory_with(&[("CACHE_MAX_BYTES", "64")]);
    let fits = format!("\"{}\"", "x".repeat(62));
    assert_eq!(fits.len(), 64);
    let too_big = format!("\"{}\"", "x".repeat(63));
    let reply = api
        .send(
            Endpoint::CachePut,
            cache(Endpoint::CachePut, "u1")
                .jwt(&jwt("u1"))
                .text(&too_big),
        )
        .await;
    let body = reply.err(413, "payload_too_large");
    assert!(body["error"]["message"].as_str().unwrap().contains("64"));
    // As binary too.
    api.send(
        Endpoint::CachePut,
        cache(Endpoint::CachePut, "u1")
            .jwt(&jwt("u1"))
            .body(Body::from(too_big.into_bytes()))
            .unwrap(),
    )
    .await
    .err(413, "payload_too_large");
    api.send(
        Endpoint::CacheGet,
        cache(Endpoint::CacheGet, "u1").jwt(&jwt("u1")).empty(),
    )
    .await
    .err(404, "cache_miss");

    api.send(
        Endpoint::CachePut,
        cache(Endpoint::CachePut, "u1").jwt(&jwt("u1")).text(&fits),
    )
    .await
    .ok();
}

#[tokio::test]
async fn a_create_body_over_4_kib_is_payload_too_large() {
    let api = Api::memory();
    let flag = r#"{"remember_me":true}"#;
    let fits = format!("{flag}{}", " ".repeat(4096 - flag.len()));
    let too_big = format!("{flag}{}", " ".repeat(4097 - flag.len()));
    api.send(
        Endpoint::SessionCreate,
        to(Endpoint::SessionCreate).jwt(&jwt("u1")).text(&too_big),
    )
    .await
    .err(413, "payload_too_large");
    let reply = api
        .send(
            Endpoint::SessionCreate,
            to(Endpoint::SessionCreate).jwt(&jwt("u1")).text(&fits),
        )
        .await;
    assert_eq!(reply.ok()["remember_me"], json!(true));
    // A megabyte is refused the same way, without being parsed.
    api.send(
        Endpoint::SessionCreate,
        to(Endpoint::SessionCreate)
            .jwt(&jwt("u1"))
            .text(&"[".repeat(1 << 20)),
    )
    .await
    .err(413, "payload_too_large");
}

#[tokio::test]
async fn a_dead_store_is_store_unavailable_without_internals() {
    let mut server = RedisServer::start();
    let port = server.port();
    let store = RedisStore::connect(
        &server.url(),
        RedisMode::Standalone,
        Duration::from_millis(500),
        Duration::from_millis(500),
    )
    .await
    .expect("connect");
    let api = Api::over(Store::Redis(store), &[]);
    let token = api.create("user_dead", false).await;
    let admin = api.create(ADMIN, false).await;
    server.kill();

    let cases: Vec<(Endpoint, Request)> = vec![
        (
            Endpoint::SessionCreate,
            to(Endpoint::SessionCreate).jwt(&jwt("user_dead")).empty(),
        ),
        (
            Endpoint::SessionValidate,
            to(Endpoint::SessionValidate).token(&token).empty(),
        ),
        (
            Endpoint::SessionRefresh,
            to(Endpoint::SessionRefresh).token(&token).empty(),
        ),
        (
            Endpoint::SessionLogout,
            to(Endpoint::SessionLogout).token(&token).empty(),
        ),
        (
            Endpoint::SessionLogoutAll,
            to(Endpoint::SessionLogoutAll).token(&token).empty(),
        ),
        (
            Endpoint::SessionLogoutAll,
            to(Endpoint::SessionLogoutAll)
                .jwt(&jwt("user_dead"))
                .empty(),
        ),
        (
            Endpoint::SessionStats,
            to(Endpoint::SessionStats).jwt(&jwt("user_dead")).empty(),
        ),
        (
            Endpoint::SessionStats,
            to(Endpoint::SessionStats).token(&admin).empty(),
        ),
        (
            Endpoint::CacheGet,
            cache(Endpoint::CacheGet, "user_dead")
                .jwt(&jwt("user_dead"))
                .empty(),
        ),
        (
            Endpoint::CachePut,
            cache(Endpoint::CachePut, "user_dead")
                .token(&token)
                .json(&json!({"a": 1})),
        ),
    ];
    for (endpoint, req) in cases {
        let started = Instant::now();
        let reply = api.send(endpoint, req).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{endpoint:?} hung for {:?}",
            started.elapsed()
        );
        reply.err(503, "store_unavailable");
        let lower = reply.raw.to_lowercase();
        for internal in [
            "redis",
            "127.0.0.1",
            "connection",
            "refused",
            "os error",
            "io error",
            "sess:",
            "dynamodb",
            &port.to_string(),
        ] {
            assert!(
                !lower.contains(internal),
                "{endpoint:?} leaks {internal:?}: {}",
                reply.raw
            );
        }
        if endpoint == Endpoint::SessionValidate {
            assert!(
                reply.body.get("valid").is_none(),
                "a store outage is not a verdict on the token: {}",
                reply.raw
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clerk JWT attacks: each refused as invalid_jwt
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn jwt_alg_none_is_refused() {
    let api = Api::memory();
    let payload = b64(claims("user_jwt").to_string().as_bytes());
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"None","typ":"JWT"}"#,
        r#"{"alg":"NONE"}"#,
        r#"{"typ":"JWT"}"#,
    ] {
        let unsigned = format!("{}.{payload}.", b64(header.as_bytes()));
        assert_jwt_refused(&api, &unsigned, header).await;
        // With a real RS256 signature (of other bytes) stuck on.
        let real = jwt("user_jwt");
        let signature = real.rsplit('.').next().unwrap();
        let resigned = format!("{}.{payload}.{signature}", b64(header.as_bytes()));
        assert_jwt_refused(&api, &resigned, header).await;
    }
}

#[tokio::test]
async fn jwt_hs256_keyed_with_the_public_key_is_refused() {
    let api = Api::memory();
    let pem = TestKeys::shared().public_pem.as_bytes();
    let key = EncodingKey::from_secret(pem);
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let forged = jsonwebtoken::encode(&Header::new(alg), &claims("user_jwt"), &key).unwrap();
        assert_jwt_refused(&api, &forged, &format!("{alg:?}")).await;
    }
    // The same HMAC under a header that claims RS256 (key confusion the other way round).
    let header = b64(br#"{"alg":"RS256","typ":"JWT"}"#);
    let payload = b64(claims("user_jwt").to_string().as_bytes());
    let input = format!("{header}.{payload}");
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap();
    assert_jwt_refused(&api, &format!("{input}.{signature}"), "RS256 header, HMAC").await;
    assert_jwt_accepted(&api, &jwt("user_jwt"), "control").await;
}

#[tokio::test]
async fn jwt_other_rsa_algorithms_are_refused() {
    let api = Api::memory();
    let key = EncodingKey::from_rsa_pem(TestKeys::shared().private_pem.as_bytes()).unwrap();
    for alg in [
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ] {
        let token = jsonwebtoken::encode(&Header::new(alg), &claims("user_jwt"), &key).unwrap();
        assert_jwt_refused(&api, &token, &format!("{alg:?} by the right key")).await;
    }
}

#[tokio::test]
async fn jwt_expired_beyond_the_leeway_is_refused() {
    let api = Api::memory();
    let now = now_unix();
    for exp in [now - 10, now - 3600, 0, 1] {
        let token = jwt_with(|c| {
            c["exp"] = json!(exp);
            c["nbf"] = json!(exp - 60);
            c["iat"] = json!(exp - 60);
        });
        assert_jwt_refused(&api, &token, &format!("exp {exp}")).await;
    }
    // Inside the 5 s leeway: accepted.
    let token = jwt_with(|c| c["exp"] = json!(now_unix() - 1));
    assert_jwt_accepted(&api, &token, "exp 1 s ago").await;
    // No exp at all: refused.
    let token = jwt_with(|c| {
        c.as_object_mut().unwrap().remove("exp");
    });
    assert_jwt_refused(&api, &token, "no exp").await;
    // An exp that is not a number.
    let token = jwt_with(|c| c["exp"] = json!("tomorrow"));
    assert_jwt_refused(&api, &token, "exp as text").await;
}

#[tokio::test]
async fn jwt_not_yet_valid_beyond_the_leeway_is_refused() {
    let api = Api::memory();
    for ahead in [10, 60, 86_400] {
        let token = jwt_with(|c| {
            c["nbf"] = json!(now_unix() + ahead);
            c["exp"] = json!(now_unix() + ahead + 60);
        });
        assert_jwt_refused(&api, &token, &format!("nbf +{ahead}")).await;
    }
    let token = jwt_with(|c| c["nbf"] = json!(now_unix() + 1));
    assert_jwt_accepted(&api, &token, "nbf 1 s ahead, inside the leeway").await;
}

#[tokio::test]
async fn jwt_from_another_issuer_is_refused() {
    let api = Api::memory_with(&[("CLERK_ISSUER", ISSUER)]);
    for iss in [
        json!("https://evil.example"),
        json!("https://clerk.example.com.evil.example"),
        json!("https://clerk.example.com/"),
        json!(""),
        json!(["https://evil.example"]),
    ] {
        let token = jwt_with(|c| c["iss"] = iss.clone());
        assert_jwt_refused(&api, &token, &format!("iss {iss}")).await;
    }
    // A token without `iss` cannot pass an issuer check.
    for missing in [json!(null), json!("drop")] {
        let token = jwt_with(|c| {
            if missing.is_null() {
                c["iss"] = json!(null);
            } else {
                c.as_object_mut().unwrap().remove("iss");
            }
        });
        assert_jwt_refused(&api, &token, &format!("iss {missing}")).await;
    }
    assert_jwt_accepted(&api, &jwt_with(|c| c["iss"] = json!(ISSUER)), "right iss").await;
    // Without CLERK_ISSUER any issuer passes.
    let open = Api::memory();
    assert_jwt_accepted(
        &open,
        &jwt_with(|c| c["iss"] = json!("https://anything.example")),
        "no issuer configured",
    )
    .await;
}

#[tokio::test]
async fn jwt_azp_must_be_an_allowed_origin() {
    let api = Api::memory();
    for azp in [
        "chrome-extension://evil",
        "chrome-extension://testext2",
        "https://evil.example",
        "http://localhost.evil.example",
        "",
    ] {
        let token = jwt_with(|c| c["azp"] = json!(azp));
        assert_jwt_refused(&api, &token, &format!("azp {azp:?}")).await;
    }
    for azp in [EXTENSION, "http://localhost:5173", "http://localhost"] {
        let token = jwt_with(|c| c["azp"] = json!(azp));
        assert_jwt_accepted(&api, &token, &format!("azp {azp:?}")).await;
    }
    // No azp claim: accepted (Clerk only sets it for browser sessions).
    assert_jwt_accepted(&api, &jwt("user_jwt"), "no azp").await;
    // Without ALLOWED_ORIGINS the azp is not checked.
    let open = Api::memory_with(&[("ALLOWED_ORIGINS", "")]);
    let token = jwt_with(|c| c["azp"] = json!("chrome-extension://evil"));
    assert_jwt_accepted(&open, &token, "no allowed origins configured").await;
}

#[tokio::test]
async fn jwt_signed_by_another_key_is_refused() {
    let api = Api::memory();
    let forged = TestKeys::other().sign(&claims("user_jwt"), None);
    assert_jwt_refused(&api, &forged, "other key").await;
    let forged = TestKeys::other().sign(&claims("user_jwt"), Some("kid1"));
    assert_jwt_refused(&api, &forged, "other key, with a kid").await;
}

#[tokio::test]
async fn jwt_tampered_or_truncated_is_refused() {
    let api = Api::memory();
    let good = jwt("user_jwt");
    assert_jwt_refused(&api, &good[..good.len() - 10], "truncated").await;
    assert_jwt_refused(&api, &good[..good.rfind('.').unwrap()], "no signature").await;
    assert_jwt_refused(&api, &format!("{good}.x"), "four parts").await;
    // Another payload under the real signature.
    let parts: Vec<&str> = good.split('.').collect();
    let evil = b64(claims("admin_wannabe").to_string().as_bytes());
    let swapped = format!("{}.{evil}.{}", parts[0], parts[2]);
    assert_jwt_refused(&api, &swapped, "payload swapped").await;
    assert_jwt_accepted(&api, &good, "control").await;
}

#[tokio::test]
async fn jwt_garbage_is_refused() {
    let api = Api::memory();
    for garbage in [
        "not.a.jwt",
        "abc",
        "a.b.c.d",
        "..",
        ".",
        "e30.e30.",
        "eyJhbGciOiJSUzI1NiJ9.e30.",
        "null",
        "Bearer",
    ] {
        assert_jwt_refused(&api, garbage, garbage).await;
    }
}

#[tokio::test]
async fn bearer_with_nothing_after_is_missing_credentials() {
    let api = Api::memory();
    for value in ["Bearer ", "Bearer", "bearer   ", "BEARER"] {
        api.send(
            Endpoint::SessionCreate,
            to(Endpoint::SessionCreate)
                .header("Authorization", value)
                .empty(),
        )
        .await
        .err(401, "missing_credentials");
    }
    // The scheme is case-insensitive.
    let reply = api
        .send(
            Endpoint::SessionCreate,
            to(Endpoint::SessionCreate)
                .header("Authorization", format!("bearer {}", jwt("u1")))
                .empty(),
        )
        .await;
    reply.ok();
}

#[tokio::test]
async fn jwt_without_a_usable_sub_is_refused() {
    let api = Api::memory();
    let no_sub = jwt_with(|c| {
        c.as_object_mut().unwrap().remove("sub");
    });
    assert_jwt_refused(&api, &no_sub, "no sub").await;
    for sub in [json!(""), json!(42), json!(null), json!(["u1"]), json!({})] {
        let token = jwt_with(|c| c["sub"] = sub.clone());
        assert_jwt_refused(&api, &token, &format!("sub {sub}")).await;
    }
    let token = jwt_with(|c| c["sub"] = json!("u".repeat(513)));
    assert_jwt_refused(&api, &token, "sub over 512 bytes").await;
    assert_jwt_accepted(&api, &jwt(&"u".repeat(512)), "sub of 512 bytes").await;
}

#[tokio::test]
async fn jwt_of_9_kib_is_refused() {
    let api = Api::memory();
    let token = jwt_with(|c| c["padding"] = json!("p".repeat(9 * 1024)));
    assert!(token.len() > 9 * 1024);
    assert_jwt_refused(&api, &token, "9 KiB").await;
    // A 100 KB header value the same.
    assert_jwt_refused(&api, &"a".repeat(100_000), "100 KB").await;
}

// ---------------------------------------------------------------------------------------------
// JWKS mode
// ---------------------------------------------------------------------------------------------

/// A tiny HTTP/1.1 server on loopback that answers every GET with `respond(n)` (n counts from
/// zero) and counts the requests. Its thread lives as long as the test process.
struct JwksServer {
    url: String,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    fn serving(document: Value) -> JwksServer {
        let body = document.to_string();
        JwksServer::with(move |_| (200, body.clone()))
    }

    fn with(respond: impl Fn(usize) -> (u16, String) + Send + 'static) -> JwksServer {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind the JWKS server");
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                if !request.starts_with(b"GET ") {
                    continue;
                }
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let (status, body) = respond(n);
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes());
                let _ = stream.flush();
            }
        });
        JwksServer {
            url: format!("http://127.0.0.1:{port}/.well-known/jwks.json"),
            hits,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn jwks_api(url: &str) -> Api {
    Api::memory_with(&[("CLERK_JWT_KEY", ""), ("CLERK_JWKS_URL", url)])
}

fn kid_jwt(sub: &str, kid: &str) -> String {
    TestKeys::shared().sign(&claims(sub), Some(kid))
}

#[tokio::test]
async fn jwks_is_fetched_once_and_cached() {
    let server = JwksServer::serving(TestKeys::shared().jwks("kid1"));
    let api = jwks_api(&server.url);
    assert_eq!(server.hits(), 0, "nothing is fetched before the first JWT");

    assert_jwt_accepted(&api, &kid_jwt("u1", "kid1"), "first").await;
    assert_eq!(server.hits(), 1);
    for i in 0..20 {
        assert_jwt_accepted(&api, &kid_jwt(&format!("u{i}"), "kid1"), "cached").await;
    }
    assert_eq!(server.hits(), 1, "the JWKS is cached");

    // An unknown kid: at most one refetch, and none again within the minute.
    let reply = api
        .send(
            Endpoint::SessionCreate,
            to(Endpoint::SessionCreate)
                .jwt(&kid_jwt("u1", "kid_unknown"))
                .empty(),
        )
        .await;
    reply.err(401, "invalid_jwt");
    let after_first_unknown = server.hits();
    assert!(after_first_unknown <= 2, "{after_first_unknown} fetches");
    for kid in ["kid_unknown", "kid_other", "kid_third"] {
        assert_jwt_refused(&api, &kid_jwt("u1", kid), kid).await;
    }
    assert_eq!(
        server.hits(),
        after_first_unknown,
        "unknown kids within the minute do not refetch"
    );
    // The known key still works, from the cache.
    assert_jwt_accepted(&api, &kid_jwt("u1", "kid1"), "known kid").await;
    assert_eq!(server.hits(), after_first_unknown);
}

#[tokio::test]
async fn jwks_unknown_kid_first_fetches_once_then_never_within_the_minute() {
    let server = JwksServer::serving(TestKeys::shared().jwks("kid1"));
    let api = jwks_api(&server.url);
    assert_jwt_refused(&api, &kid_jwt("u1", "kid_unknown"), "unknown kid").await;
    assert_eq!(server.hits(), 1, "the first unknown kid fetches once");
    assert_jwt_refused(&api, &kid_jwt("u1", "kid_unknown2"), "unknown kid").await;
    assert_eq!(server.hits(), 1, "a second unknown kid does not refetch");
    // That one fetch brought kid1.
    assert_jwt_accepted(&api, &kid_jwt("u1", "kid1"), "kid1").await;
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn jwks_mode_refuses_what_pem_mode_refuses() {
    let server = JwksServer::serving(TestKeys::shared().jwks("kid1"));
    let api = jwks_api(&server.url);
    // No kid at all.
    assert_jwt_refused(&api, &jwt("u1"), "no kid").await;
    // The right kid, the wrong key.
    let forged = TestKeys::other().sign(&claims("u1"), Some("kid1"));
    assert_jwt_refused(&api, &forged, "other key under kid1").await;
    // HS256 keyed with the JWKS document itself.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("kid1".into());
    let secret = TestKeys::shared().jwks("kid1").to_string();
    let forged = jsonwebtoken::encode(
        &header,
        &claims("u1"),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    assert_jwt_refused(&api, &forged, "HS256 with a kid").await;
    assert_jwt_accepted(&api, &kid_jwt("u1", "kid1"), "control").await;
}

#[tokio::test]
async fn jwks_with_an_hmac_key_cannot_verify_an_rs256_header() {
    // A JWKS that also lists an octet key: a token claiming RS256 under that kid, signed with
    // HMAC, must not pass.
    let secret = b"shared-secret-shared-secret-0123";
    let mut document = TestKeys::shared().jwks("kid1");
    document["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "kty": "oct", "kid": "hmac", "k": b64(secret), "alg": "HS256" }));
    let server = JwksServer::serving(document);
    let api = jwks_api(&server.url);
    let header = b64(br#"{"alg":"RS256","typ":"JWT","kid":"hmac"}"#);
    let payload = b64(claims("u1").to_string().as_bytes());
    let input = format!("{header}.{payload}");
    let signature = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .unwrap();
    assert_jwt_refused(&api, &format!("{input}.{signature}"), "RS256 header, HMAC").await;
    assert_jwt_accepted(&api, &kid_jwt("u1", "kid1"), "control").await;
}

#[tokio::test]
async fn jwks_down_at_first_use_is_auth_unavailable() {
    // A port nobody listens on.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/.well-known/jwks.json");
    let api = jwks_api(&url);
    let started = Instant::now();
    let reply = api
        .send(
            Endpoint::SessionCreate,
            to(Endpoint::SessionCreate)
                .jwt(&kid_jwt("u1", "kid1"))
                .empty(),
        )
        .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    reply.err(503, "auth_unavailable");
    let lower = reply.raw.to_lowercase();
    for internal in ["127.0.0.1", &port.to_string(), "refused", "error sending"] {
        assert!(
            !lower.contains(internal),
            "leaks {internal:?}: {}",
            reply.raw
        );
    }
    // Every JWT endpoint says the same.
    for (endpoint, builder) in [
        (Endpoint::SessionLogoutAll, to(Endpoint::SessionLogoutAll)),
        (Endpoint::SessionStats, to(Endpoint::SessionStats)),
        (Endpoint::SessionList, to(Endpoint::SessionList)),
        (Endpoint::CacheGet, cache(Endpoint::CacheGet, "u1")),
    ] {
        api.send(endpoint, builder.jwt(&kid_jwt("u1", "kid1")).empty())
            .await
            .err(503, "auth_unavailable");
    }
    // A malformed JWT is still the caller's fault, whatever the JWKS does.
    assert_jwt_refused(&api, "abc", "garbage while the JWKS is down").await;
}

/// A short JWKS back-off, so tests can wait it out.
const BACK_OFF: Duration = Duration::from_secs(1);

/// A JWKS api that refetches at most once per `BACK_OFF` instead of once a minute.
fn jwks_api_backing_off(url: &str) -> Api {
    let mut api = jwks_api(url);
    api.state.verifier.set_jwks_refetch_interval(BACK_OFF);
    api
}

async fn create_with_kid(api: &Api, kid: &str) -> Reply {
    api.send(
        Endpoint::SessionCreate,
        to(Endpoint::SessionCreate).jwt(&kid_jwt("u1", kid)).empty(),
    )
    .await
}

async fn wait_out_the_back_off() {
    tokio::time::sleep(BACK_OFF + Duration::from_millis(100)).await;
}

#[tokio::test]
async fn jwks_failure_is_auth_unavailable_and_retried_after_the_interval() {
    let document = TestKeys::shared().jwks("kid1").to_string();
    let server = JwksServer::with(move |n| match n {
        0 => (500, "{\"oops\":true}".into()),
        1 => (200, "this is not JSON".into()),
        _ => (200, document.clone()),
    });
    let api = jwks_api_backing_off(&server.url);
    create_with_kid(&api, "kid1")
        .await
        .err(503, "auth_unavailable");
    assert_eq!(server.hits(), 1);
    // A failed fetch starts the interval too.
    create_with_kid(&api, "kid1")
        .await
        .err(503, "auth_unavailable");
    assert_eq!(server.hits(), 1, "no refetch within the interval");
    wait_out_the_back_off().await;
    create_with_kid(&api, "kid1")
        .await
        .err(503, "auth_unavailable");
    assert_eq!(server.hits(), 2);
    wait_out_the_back_off().await;
    create_with_kid(&api, "kid1").await.ok();
    assert_eq!(server.hits(), 3);
    create_with_kid(&api, "kid1").await.ok();
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn jwks_down_is_fetched_once_per_interval_whatever_the_kid() {
    // The production interval: JWTs with made-up kids must not each cost a fetch.
    let server = JwksServer::with(|_| (500, "{}".into()));
    let api = jwks_api(&server.url);
    create_with_kid(&api, "kid1")
        .await
        .err(503, "auth_unavailable");
    assert_eq!(server.hits(), 1);
    for i in 0..10 {
        create_with_kid(&api, &format!("attacker_{i}"))
            .await
            .err(503, "auth_unavailable");
    }
    create_with_kid(&api, "kid1")
        .await
        .err(503, "auth_unavailable");
    assert_eq!(server.hits(), 1, "one fetch attempt per interval");
}

#[tokio::test]
async fn jwks_down_after_keys_were_fetched_backs_off_and_refuses_unknown_kids() {
    let document = TestKeys::shared().jwks("kid1").to_string();
    let server = JwksServer::with(move |n| match n {
        0 => (200, document.clone()),
        _ => (500, "{}".into()),
    });
    let api = jwks_api_backing_off(&server.url);
    create_with_kid(&api, "kid1").await.ok();
    assert_eq!(server.hits(), 1);
    wait_out_the_back_off().await;
    // A new kid refetches; the fetch fails, which is not the caller's fault.
    create_with_kid(&api, "kid_new")
        .await
        .err(503, "auth_unavailable");
    assert_eq!(server.hits(), 2);
    // Within the interval an unknown kid is refused without a fetch.
    for kid in ["kid_new", "attacker"] {
        create_with_kid(&api, kid).await.err(401, "invalid_jwt");
    }
    assert_eq!(server.hits(), 2, "no refetch within the interval");
    create_with_kid(&api, "kid1").await.ok();
    wait_out_the_back_off().await;
    create_with_kid(&api, "kid_new")
        .await
        .err(503, "auth_unavailable");
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn jwks_without_a_usable_key_keeps_the_cached_keys() {
    let document = TestKeys::shared().jwks("kid1").to_string();
    let unusable = [
        json!({ "keys": [] }),
        // An RSA key whose modulus is not base64url.
        json!({ "keys": [{ "kty": "RSA", "kid": "kid2", "n": "!!!", "e": "AQAB" }] }),
        // A key that cannot verify RS256.
        json!({ "keys": [{ "kty": "oct", "kid": "kid2", "k": b64(b"0123456789abcdef") }] }),
    ];
    let bodies: Vec<String> = unusable.iter().map(Value::to_string).collect();
    let server = JwksServer::with(move |n| match n {
        0 => (200, document.clone()),
        n => (200, bodies[(n - 1) % bodies.len()].clone()),
    });
    let api = jwks_api_backing_off(&server.url);
    create_with_kid(&api, "kid1").await.ok();
    assert_eq!(server.hits(), 1);
    for (i, body) in unusable.iter().enumerate() {
        wait_out_the_back_off().await;
        create_with_kid(&api, "kid2").await.err(401, "invalid_jwt");
        assert_eq!(server.hits(), i + 2, "{body}");
        let reply = create_with_kid(&api, "kid1").await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "kid1 after {body}: {}",
            reply.raw
        );
        // Such a fetch counts for the back-off.
        create_with_kid(&api, "kid2").await.err(401, "invalid_jwt");
        assert_eq!(server.hits(), i + 2, "{body}");
    }
}

#[tokio::test]
async fn jwks_without_a_usable_key_at_first_use_is_auth_unavailable() {
    let server = JwksServer::serving(json!({ "keys": [] }));
    let api = jwks_api(&server.url);
    for _ in 0..3 {
        create_with_kid(&api, "kid1")
            .await
            .err(503, "auth_unavailable");
    }
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
/// The fetch is given up after `JWKS_TIMEOUT` (a worst-case-time term of create), not a socket
/// default. The upper bound is loose on purpose (these machines are busy): it only tells 1 s from
/// the 3 s this used to take.
async fn jwks_that_never_answers_is_given_up_after_the_jwks_timeout() {
    // Connections complete in the kernel's backlog, but nothing ever answers.
    let silent = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let port = silent.local_addr().unwrap().port();
    let api = jwks_api(&format!("http://127.0.0.1:{port}/.well-known/jwks.json"));
    let started = Instant::now();
    create_with_kid(&api, "kid1")
        .await
        .err(503, "auth_unavailable");
    let elapsed = started.elapsed();
    let timeout = shared::auth::JWKS_TIMEOUT;
    assert!(
        elapsed >= timeout * 9 / 10 && elapsed < timeout * 3,
        "{elapsed:?}"
    );
    drop(silent);
}

// ---------------------------------------------------------------------------------------------
// CORS
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_allowed_origin_is_echoed_with_vary() {
    let api = Api::memory();
    let token = api.create("u1", false).await;
    // On a success, and on an error.
    for req in [
        to(Endpoint::SessionValidate)
            .token(&token)
            .origin(EXTENSION)
            .empty(),
        to(Endpoint::SessionValidate).origin(EXTENSION).empty(),
    ] {
        let reply = api.send(Endpoint::SessionValidate, req).await;
        assert_eq!(reply.header(ACCESS_CONTROL_ALLOW_ORIGIN), Some(EXTENSION));
        assert!(
            reply
                .header(VARY)
                .is_some_and(|v| v.to_ascii_lowercase().contains("origin")),
            "Vary: Origin"
        );
    }
}

#[tokio::test]
async fn a_refused_origin_gets_no_allow_origin() {
    let api = Api::memory();
    let token = api.create("u1", false).await;
    for origin in [
        "https://evil.example",
        "chrome-extension://testext2",
        "chrome-extension://testex",
        "https://localhost:3000",
        "http://localhost.evil.example",
        "http://localhost:",
        "null",
        "*",
    ] {
        let reply = api
            .send(
                Endpoint::SessionValidate,
                to(Endpoint::SessionValidate)
                    .token(&token)
                    .origin(origin)
                    .empty(),
            )
            .await;
        // The request itself is served; the browser keeps the answer from the page.
        reply.ok();
        assert!(
            reply.header(ACCESS_CONTROL_ALLOW_ORIGIN).is_none(),
            "{origin} got {:?}",
            reply.header(ACCESS_CONTROL_ALLOW_ORIGIN)
        );
        assert_eq!(reply.header(VARY), Some("Origin"));
    }
    // No Origin at all (curl, the extension's background worker): no CORS header either.
    let reply = api
        .send(
            Endpoint::SessionValidate,
            to(Endpoint::SessionValidate).token(&token).empty(),
        )
        .await;
    assert!(reply.header(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
}

#[tokio::test]
async fn localhost_is_allowed_on_any_port() {
    let api = Api::memory();
    for origin in [
        "http://localhost:3000",
        "http://localhost:5173",
        "http://localhost:65535",
        "http://localhost",
    ] {
        let reply = api
            .send(
                Endpoint::SessionValidate,
                to(Endpoint::SessionValidate).origin(origin).empty(),
            )
            .await;
        assert_eq!(reply.header(ACCESS_CONTROL_ALLOW_ORIGIN), Some(origin));
        let preflight = api
            .send(
                Endpoint::SessionValidate,
                request(Method::OPTIONS, Endpoint::SessionValidate.path())
                    .origin(origin)
                    .empty(),
            )
            .await;
        assert_eq!(preflight.status, StatusCode::NO_CONTENT);
    }
}

#[tokio::test]
async fn preflight_from_an_allowed_origin_is_204() {
    let api = Api::memory();
    for endpoint in Endpoint::ALL {
        let path = endpoint.path().replace("{user_id}", "u1");
        let reply = api
            .send(
                endpoint,
                request(Method::OPTIONS, &path)
                    .origin(EXTENSION)
                    .header("Access-Control-Request-Method", endpoint.method().as_str())
                    .header(
                        "Access-Control-Request-Headers",
                        "x-session-token, content-type",
                    )
                    .empty(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{endpoint:?}");
        assert_eq!(reply.header(ACCESS_CONTROL_ALLOW_ORIGIN), Some(EXTENSION));
        let methods = reply.header(ACCESS_CONTROL_ALLOW_METHODS).unwrap_or("");
        assert!(
            methods.contains(endpoint.method().as_str()),
            "{endpoint:?}: {methods}"
        );
        let headers = reply
            .header(ACCESS_CONTROL_ALLOW_HEADERS)
            .unwrap_or("")
            .to_ascii_lowercase();
        for needed in ["x-session-token", "authorization", "content-type"] {
            assert!(headers.contains(needed), "{endpoint:?}: {headers}");
        }
        assert!(reply.header(ALLOW).is_none());
    }
}

#[tokio::test]
async fn preflight_from_a_refused_origin_is_origin_not_allowed() {
    let api = Api::memory();
    for endpoint in Endpoint::ALL {
        let path = endpoint.path().replace("{user_id}", "u1");
        for origin in [Some("https://evil.example"), None] {
            let builder = request(Method::OPTIONS, &path)
                .header("Access-Control-Request-Method", endpoint.method().as_str());
            let builder = match origin {
                Some(origin) => builder.origin(origin),
                None => builder,
            };
            let reply = api.send(endpoint, builder.empty()).await;
            reply.err(403, "origin_not_allowed");
            assert!(reply.header(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
            assert!(reply.header(ACCESS_CONTROL_ALLOW_METHODS).is_none());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_percent_encoded_user_id_in_the_path_works() {
    let api = Api::redis().await;
    for user in ["a b", "ünï ✓", "user:1#x", "a.b", "{tag}"] {
        let encoded = cache_path(user);
        assert!(encoded.contains('%'), "{encoded}");
        api.send(
            Endpoint::CachePut,
            cache(Endpoint::CachePut, user)
                .jwt(&jwt(user))
                .json(&json!({ "who": user })),
        )
        .await
        .ok();
        // The same data through a session token of that user.
        let token = api.create(user, false).await;
        let reply = api
            .send(
                Endpoint::CacheGet,
                cache(Endpoint::CacheGet, user).token(&token).empty(),
            )
            .await;
        assert_eq!(reply.ok()["data"], json!({ "who": user }));
        assert_eq!(reply.ok()["user_id"], json!(user));
    }
    // `+` is not a space in a path.
    api.send(
        Endpoint::CacheGet,
        request(Method::GET, "/api/cache/user/a+b")
            .jwt(&jwt("a b"))
            .empty(),
    )
    .await
    .err(403, "forbidden");
    // A trailing slash is tolerated.
    api.send(
        Endpoint::CacheGet,
        request(Method::GET, "/api/cache/user/a%20b/")
            .jwt(&jwt("a b"))
            .empty(),
    )
    .await
    .ok();
}

#[tokio::test]
async fn a_bad_cache_path_is_invalid_request() {
    let api = Api::memory();
    for path in [
        "/api/cache/user/",
        "/api/cache/user",
        "/api/other",
        "/api/cache/user/u1/extra",
        "/api/cache/user/a%2Fb",
        "/api/cache/user/%FF%FE",
    ] {
        let reply = api
            .send(
                Endpoint::CacheGet,
                request(Method::GET, path).jwt(&jwt("u1")).empty(),
            )
            .await;
        assert_eq!(
            reply.body["error"]["code"],
            json!("invalid_request"),
            "{path}: {}",
            reply.raw
        );
        reply.err(400, "invalid_request");
    }
    let long = format!("/api/cache/user/{}", "u".repeat(513));
    api.send(
        Endpoint::CacheGet,
        request(Method::GET, &long).jwt(&jwt("u1")).empty(),
    )
    .await
    .err(400, "invalid_request");
}

#[tokio::test]
async fn a_rest_api_stage_prefix_is_not_part_of_the_path() {
    let api = Api::memory();
    let token = api.create("u1", false).await;
    api.send(
        Endpoint::CachePut,
        cache(Endpoint::CachePut, "u1")
            .token(&token)
            .json(&json!([1])),
    )
    .await
    .ok();
    // API Gateway REST (v1): the URI carries the stage, the raw path does not.
    let req = request(Method::GET, "/Prod/api/cache/user/u1")
        .token(&token)
        .empty()
        .with_raw_http_path("/api/cache/user/u1");
    let reply = api.send(Endpoint::CacheGet, req).await;
    assert_eq!(reply.ok()["data"], json!([1]));
    // The raw path wins over the URI when both are present.
    let req = request(Method::GET, "/Prod/api/cache/user/somebody_else")
        .token(&token)
        .empty()
        .with_raw_http_path("/api/cache/user/u1");
    assert_eq!(
        api.send(Endpoint::CacheGet, req).await.ok()["data"],
        json!([1])
    );
    // Without a raw path, the stage-prefixed URI still finds the user id.
    let req = request(Method::GET, "/Prod/api/cache/user/u1")
        .token(&token)
        .empty();
    api.send(Endpoint::CacheGet, req).await.ok();
}

#[tokio::test]
async fn path_parameters_from_api_gateway_are_used() {
    let api = Api::memory();
    let token = api.create("u1", false).await;
    let params = |user: &str| HashMap::from([("user_id".to_owned(), user.to_owned())]);
    api.send(
        Endpoint::CachePut,
        request(Method::POST, "/Prod/api/cache/user/u1")
            .token(&token)
            .json(&json!({"k": "v"}))
            .with_path_parameters(params("u1")),
    )
    .await
    .ok();
    let reply = api
        .send(
            Endpoint::CacheGet,
            request(Method::GET, "/Prod/api/cache/user/u1")
                .token(&token)
                .empty()
                .with_path_parameters(params("u1")),
        )
        .await;
    assert_eq!(reply.ok()["data"], json!({"k": "v"}));
    // The extracted parameter, not the path, decides whose cache it is.
    api.send(
        Endpoint::CacheGet,
        request(Method::GET, "/Prod/api/cache/user/u1")
            .token(&token)
            .empty()
            .with_path_parameters(params("u2")),
    )
    .await
    .err(403, "forbidden");
    // API Gateway hands over the decoded value.
    let spaced = api.create("a b", false).await;
    api.send(
        Endpoint::CachePut,
        request(Method::POST, "/api/cache/user/a%20b")
            .token(&spaced)
            .json(&json!(1))
            .with_path_parameters(params("a b")),
    )
    .await
    .ok();
    // `cargo lambda watch` hands over the segment as sent: decoded here, same cache.
    let reply = api
        .send(
            Endpoint::CacheGet,
            request(Method::GET, "/api/cache/user/a%20b")
                .token(&spaced)
                .empty()
                .with_path_parameters(params("a%20b")),
        )
        .await;
    assert_eq!(reply.ok()["data"], json!(1));
    // An empty extracted value is refused, not taken as "any user".
    api.send(
        Endpoint::CacheGet,
        request(Method::GET, "/api/cache/user/u1")
            .token(&token)
            .empty()
            .with_path_parameters(params("")),
    )
    .await
    .err(400, "invalid_request");
}

// ---------------------------------------------------------------------------------------------
// Odd input: never a panic, always a JSON answer
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn non_utf8_headers_are_refused_cleanly() {
    let api = Api::memory();
    let bytes = HeaderValue::from_bytes(&[0xff, 0xfe]).unwrap();
    for endpoint in [
        Endpoint::SessionValidate,
        Endpoint::SessionRefresh,
        Endpoint::SessionLogout,
        Endpoint::SessionLogoutAll,
        Endpoint::SessionStats,
        Endpoint::SessionList,
        Endpoint::SessionRevoke,
    ] {
        let reply = api
            .send(
                endpoint,
                to(endpoint)
                    .header("X-Session-Token", bytes.clone())
                    .empty(),
            )
            .await;
        reply.err(401, "invalid_token");
    }
    api.send(
        Endpoint::CacheGet,
        cache(Endpoint::CacheGet, "u1")
            .header("X-Session-Token", bytes.clone())
            .empty(),
    )
    .await
    .err(401, "invalid_token");
    let reply = api
        .send(
            Endpoint::SessionCreate,
            to(Endpoint::SessionCreate)
                .header("Authorization", bytes.clone())
                .empty(),
        )
        .await;
    reply.err(401, "missing_credentials");
    // Bytes after a good scheme.
    let mut value = b"Bearer ".to_vec();
    value.extend_from_slice(&[0xff, 0xfe, 0x80]);
    api.send(
        Endpoint::SessionCreate,
        to(Endpoint::SessionCreate)
            .header("Authorization", HeaderValue::from_bytes(&value).unwrap())
            .empty(),
    )
    .await
    .err(401, "missing_credentials");
    // A non-UTF-8 Origin is a refused origin; a non-UTF-8 User-Agent is ignored.
    let reply = api
        .send(
            Endpoint::SessionCreate,
            to(Endpoint::SessionCreate)
                .jwt(&jwt("u1"))
                .header("Origin", bytes.clone())
                .header("User-Agent", bytes)
                .empty(),
        )
        .await;
    reply.ok();
    assert!(reply.header(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
}

#[tokio::test]
async fn binary_bodies_that_are_not_utf8_are_invalid_json() {
    let api = Api::memory();
    for bytes in [
        vec![0xff, 0xfe, 0xfd],
        vec![b'"', 0xff, b'"'],
        vec![b'{', b'"', 0xc3, b'"', b':', b'1', b'}'],
        vec![0; 16],
    ] {
        api.send(
            Endpoint::CachePut,
            cache(Endpoint::CachePut, "u1")
                .jwt(&jwt("u1"))
                .body(Body::from(bytes.clone()))
                .unwrap(),
        )
        .await
        .err(400, "invalid_json");
        api.send(
            Endpoint::SessionCreate,
            to(Endpoint::SessionCreate)
                .jwt(&jwt("u1"))
                .body(Body::from(bytes))
                .unwrap(),
        )
        .await
        .err(400, "invalid_json");
    }
    // Valid JSON as binary is fine.
    api.send(
        Endpoint::CachePut,
        cache(Endpoint::CachePut, "u1")
            .jwt(&jwt("u1"))
            .body(Body::from(b"{\"a\":[1,2]}".to_vec()))
            .unwrap(),
    )
    .await
    .ok();
}

#[tokio::test]
async fn huge_header_values_are_refused_cleanly() {
    let api = Api::memory();
    let huge = "A".repeat(100_000);
    for endpoint in [
        Endpoint::SessionValidate,
        Endpoint::SessionRefresh,
        Endpoint::SessionLogout,
    ] {
        api.send(endpoint, to(endpoint).token(&huge).empty())
            .await
            .err(401, "invalid_token");
    }
    api.send(
        Endpoint::SessionCreate,
        to(Endpoint::SessionCreate).jwt(&huge).empty(),
    )
    .await
    .err(401, "invalid_jwt");
    let token = api.create("u1", false).await;
    let reply = api
        .send(
            Endpoint::SessionValidate,
            to(Endpoint::SessionValidate)
                .token(&token)
                .origin(&format!("chrome-extension://{huge}"))
                .empty(),
        )
        .await;
    reply.ok();
    assert!(reply.header(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    // A huge User-Agent is read for its label, not stored.
    let agent = format!(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 {huge}"
    );
    let reply = api
        .send(
            Endpoint::SessionCreate,
            to(Endpoint::SessionCreate)
                .jwt(&jwt("u_agent"))
                .header("User-Agent", agent.as_str())
                .empty(),
        )
        .await;
    let token = SessionToken::parse(reply.ok()["session_token"].as_str().unwrap()).unwrap();
    let sessions = api.store().sessions_of(token.user_key()).await.unwrap();
    assert_eq!(sessions[0].1.device.as_deref(), Some("Chrome 131 on macOS"));
}

#[tokio::test]
async fn deeply_nested_json_is_refused_without_overflowing_the_stack() {
    let api = Api::memory();
    let deep = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    api.send(
        Endpoint::CachePut,
        cache(Endpoint::CachePut, "u1").jwt(&jwt("u1")).text(&deep),
    )
    .await
    .err(400, "invalid_json");
    let deep = "{\"a\":".repeat(500) + "1" + &"}".repeat(500);
    api.send(
        Endpoint::SessionCreate,
        to(Endpoint::SessionCreate).jwt(&jwt("u1")).text(&deep),
    )
    .await
    .err(400, "invalid_json");
}

// ---------------------------------------------------------------------------------------------
// Logs never carry a token or a JWT
// ---------------------------------------------------------------------------------------------

/// Everything the test's subscriber writes.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn logs_never_contain_a_token_or_a_jwt() {
    use lambda_http::tracing::subscriber as tracing_subscriber;

    let api = Api::redis().await;
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // tracing caches each callsite's interest. With a single scoped dispatcher it asks only the
    // current thread's, so a callsite first hit by another test's thread (no subscriber) would
    // be cached as "never" and this test would miss it. A second live dispatcher makes tracing
    // ask every registered one; then rebuild whatever was cached before ours existed.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let _guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();

    let mut secrets: Vec<String> = Vec::new();
    let user_jwt = jwt("user_logs");
    let created = api
        .send(
            Endpoint::SessionCreate,
            to(Endpoint::SessionCreate)
                .jwt(&user_jwt)
                .header("User-Agent", "agent-with-no-secret")
                .empty(),
        )
        .await;
    let token = created.ok()["session_token"].as_str().unwrap().to_owned();
    api.validate(&token).await.ok();
    api.send(
        Endpoint::SessionRefresh,
        to(Endpoint::SessionRefresh).token(&token).empty(),
    )
    .await
    .ok();
    api.send(
        Endpoint::CachePut,
        cache(Endpoint::CachePut, "user_logs")
            .token(&token)
            .json(&json!({"a": 1})),
    )
    .await
    .ok();
    // Refusals carry a reason in the log: it must not be the credential.
    let (user_part, secret) = token.split_once('.').unwrap();
    let tampered = format!("{user_part}.{}", tamper(secret));
    api.validate(&tampered).await.err(401, "invalid_token");
    let forged = TestKeys::other().sign(&claims("user_logs"), None);
    let truncated = user_jwt[..user_jwt.len() - 10].to_owned();
    let expired = jwt_with(|c| c["exp"] = json!(now_unix() - 100));
    for bad in [&forged, &truncated, &expired] {
        api.send(
            Endpoint::SessionCreate,
            to(Endpoint::SessionCreate).jwt(bad).empty(),
        )
        .await
        .err(401, "invalid_jwt");
    }
    api.send(
        Endpoint::SessionCreate,
        to(Endpoint::SessionCreate)
            .jwt(&user_jwt)
            .text("{\"remember_me\": \"secret-body\"}"),
    )
    .await
    .err(400, "invalid_request");
    api.send(
        Endpoint::SessionLogout,
        to(Endpoint::SessionLogout).token(&token).empty(),
    )
    .await
    .ok();
    api.validate(&token).await.err(401, "invalid_token");

    secrets.push(token.clone());
    secrets.push(secret.to_owned());
    secrets.push(tampered.split_once('.').unwrap().1.to_owned());
    for jwt in [&user_jwt, &forged, &truncated, &expired] {
        secrets.push(jwt.clone());
        for part in jwt.split('.').filter(|p| p.len() > 8) {
            secrets.push(part.to_owned());
        }
    }

    let logs = buffer.text();
    assert!(
        logs.contains("served") && logs.contains("refused") && logs.contains("session-create"),
        "the subscriber captured the request lines: {logs}"
    );
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "the logs contain a credential ({}…): {logs}",
            &secret[..8.min(secret.len())]
        );
    }
}
