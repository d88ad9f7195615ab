//! Every sample event under `events/` (see `events/README.md`) through the real handler, against a
//! real redis-server: the status must be the number the file name starts with.
//!
//! Placeholders are filled in per event: `${JWT}` and `${OTHER_JWT}` with fresh Clerk-like JWTs
//! for `user_events` and `user_other`, `${SESSION_TOKEN}` with a session of `user_events` made
//! through the session-create handler just before, `${SESSION_ID}` with the session id of another
//! one. So no event depends on another one (logout
//! and logout-all revoke only sessions nobody else uses), and a `cache-get` success is seeded
//! through the cache-put handler first.

mod support;

use lambda_http::http::{Method, StatusCode, header};
use lambda_http::request::{RequestContext, from_str};
use lambda_http::{Body, Request, RequestExt};
use serde_json::Value;
use shared::config::Config;
use shared::{Endpoint, State};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use support::keys::{TestKeys, claims};

const EVENTS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../events");
/// The sub-folder of a function's events that holds REST API (payload v1) events.
const REST_DIR: &str = "rest-v1";
/// The functions that must have REST API (v1) events too.
const REST_FUNCTIONS: [&str; 2] = ["session-validate", "cache-get"];
/// The extension origin the events send; allowed by the config below.
const ORIGIN: &str = "chrome-extension://abcdefghijklmnopabcdefghijklmnop";
const USER: &str = "user_events";
const OTHER_USER: &str = "user_other";
const CACHE_PREFIX: &str = "/api/cache/user/";

/// One file under `events/`.
struct Event {
    /// `events/<its path>`, for messages.
    name: String,
    endpoint: Endpoint,
    /// Under `<function>/rest-v1/`: a REST API (payload v1) event; else an HTTP API (v2) one.
    rest: bool,
    status: StatusCode,
    text: String,
}

/// Every `.json` file under `dir`, sorted, at any depth.
fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("read a directory entry").path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "json") {
            out.push(path);
        }
    }
    out.sort();
}

/// Reads every event, or says why a file does not follow the naming scheme.
fn load_events(problems: &mut Vec<String>) -> Vec<Event> {
    let root = Path::new(EVENTS_DIR);
    let mut files = Vec::new();
    json_files(root, &mut files);
    let mut events = Vec::new();
    for path in files {
        let relative = path
            .strip_prefix(root)
            .expect("found under the events folder")
            .to_string_lossy()
            .into_owned();
        let name = format!("events/{relative}");
        let parts: Vec<&str> = relative.split('/').collect();
        let (function, rest, file) = match parts.as_slice() {
            [function, file] => (*function, false, *file),
            [function, REST_DIR, file] => (*function, true, *file),
            _ => {
                problems.push(format!(
                    "{name}: not at <function>/<status>-<case>.json or \
                     <function>/{REST_DIR}/<status>-<case>.json"
                ));
                continue;
            }
        };
        let Some(endpoint) = Endpoint::from_function(function) else {
            problems.push(format!("{name}: `{function}` is not a function name"));
            continue;
        };
        let stem = file.strip_suffix(".json").unwrap_or(file);
        let status = stem
            .split_once('-')
            .filter(|(code, case)| {
                code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) && !case.is_empty()
            })
            .and_then(|(code, _)| code.parse::<u16>().ok())
            .and_then(|code| StatusCode::from_u16(code).ok());
        let Some(status) = status else {
            problems.push(format!("{name}: the name is not <status>-<case>.json"));
            continue;
        };
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        events.push(Event {
            name,
            endpoint,
            rest,
            status,
            text,
        });
    }
    events
}

/// The environment of `make run` as far as the events care: the test key, the events' origin.
fn config() -> Config {
    let vars = HashMap::from([
        (
            "CLERK_JWT_KEY".to_owned(),
            TestKeys::shared().public_pem.clone(),
        ),
        (
            "ALLOWED_ORIGINS".to_owned(),
            format!("{ORIGIN},http://localhost:*"),
        ),
    ]);
    Config::from_map(&vars).expect("a valid test config")
}

fn jwt(user: &str) -> String {
    TestKeys::shared().sign(&claims(user), None)
}

fn request(method: Method, path: &str, jwt: &str, body: &str) -> Request {
    lambda_http::http::Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {jwt}"))
        .header(header::ORIGIN, ORIGIN)
        .body(Body::from(body))
        .expect("a valid request")
}

fn json_of(body: &Body) -> Option<Value> {
    serde_json::from_slice(body.as_ref()).ok()
}

/// A live session token of `user_events`, made through the session-create handler.
async fn session_token(state: &State) -> String {
    let req = request(Method::POST, "/api/session/create", &jwt(USER), "");
    let response = shared::handle(state, Endpoint::SessionCreate, req).await;
    let body = json_of(response.body());
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "create a session: {body:?}"
    );
    body.as_ref()
        .and_then(|b| b["session_token"].as_str())
        .expect("a session_token in the create answer")
        .to_owned()
}

/// Something in `user_events`' cache, through the cache-put handler.
async fn seed_cache(state: &State) {
    let path = format!("{CACHE_PREFIX}{USER}");
    let req = request(
        Method::POST,
        &path,
        &jwt(USER),
        r#"{"seeded_by":"tests/events.rs"}"#,
    );
    let response = shared::handle(state, Endpoint::CachePut, req).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "seed the cache: {:?}",
        json_of(response.body())
    );
}

/// The event's text with its placeholders filled in; a session is made only when one is asked.
async fn substitute(state: &State, text: &str) -> String {
    let mut text = text
        .replace("${JWT}", &jwt(USER))
        .replace("${OTHER_JWT}", &jwt(OTHER_USER));
    if text.contains("${SESSION_TOKEN}") {
        text = text.replace("${SESSION_TOKEN}", &session_token(state).await);
    }
    if text.contains("${SESSION_ID}") {
        let other = shared::SessionToken::parse(&session_token(state).await).expect("a token");
        let id = shared::token::SessionId::of(&other.hash()).to_string();
        text = text.replace("${SESSION_ID}", &id);
    }
    text
}

/// Runs one event; every way it differs from what its name promises goes to `problems`.
async fn check(state: &State, event: &Event, problems: &mut Vec<String>) {
    let name = &event.name;
    let mut fail = |what: String| problems.push(format!("{name}: {what}"));
    let json = substitute(state, &event.text).await;
    if let Some(at) = json.find("${") {
        let rest = &json[at..];
        let placeholder = &rest[..rest.find('}').map_or(rest.len(), |end| end + 1)];
        fail(format!("unknown placeholder {placeholder}"));
        return;
    }
    let raw: Value = match serde_json::from_str(&json) {
        Ok(raw) => raw,
        Err(e) => return fail(format!("not JSON: {e}")),
    };
    let req = match from_str(&json) {
        Ok(req) => req,
        Err(e) => return fail(format!("not an API Gateway event for lambda_http: {e}")),
    };

    // The right kind of event, and the path the handlers will see.
    let (kind_ok, expected_path) = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(_)) => (event.rest, &raw["path"]),
        Some(RequestContext::ApiGatewayV2(_)) => (!event.rest, &raw["rawPath"]),
        _ => (false, &Value::Null),
    };
    if !kind_ok {
        let expected = if event.rest {
            "REST API (payload v1)"
        } else {
            "HTTP API (payload 2.0)"
        };
        fail(format!(
            "lambda_http did not read it as an {expected} event"
        ));
    }
    let raw_path = shared::http::raw_path(&req);
    if expected_path.as_str() != Some(raw_path) {
        fail(format!(
            "the handlers see the path {raw_path:?}, the event says {expected_path}"
        ));
    }
    let route_prefix = match event.endpoint {
        Endpoint::CacheGet | Endpoint::CachePut => CACHE_PREFIX,
        other => other.path(),
    };
    if !raw_path.starts_with(route_prefix) {
        fail(format!("the path {raw_path:?} is not under {route_prefix}"));
    }
    if let Some(user_id) = raw["pathParameters"]["user_id"].as_str() {
        check_path_fallback(&raw, user_id, &mut fail);
    }

    if event.endpoint == Endpoint::CacheGet && event.status.is_success() {
        seed_cache(state).await;
    }
    let origin = shared::http::header(&req, "origin").map(str::to_owned);
    let response = shared::handle(state, event.endpoint, req).await;
    let body = json_of(response.body());

    let status = response.status();
    if status != event.status {
        let code = body.as_ref().map(|b| b["error"]["code"].clone());
        fail(format!(
            "status {} (error code {}), the name says {}",
            status.as_u16(),
            code.unwrap_or(Value::Null),
            event.status.as_u16()
        ));
    }

    // The body: none for a preflight, else `success` and, for an error, `error.code`.
    if status == StatusCode::NO_CONTENT {
        if !response.body().is_empty() {
            fail("a 204 with a body".into());
        }
    } else {
        match &body {
            None => fail("the body is not JSON".into()),
            Some(body) => {
                if body["success"] != Value::Bool(status.is_success()) {
                    fail(format!(
                        "status {} with success = {}",
                        status.as_u16(),
                        body["success"]
                    ));
                }
                if !status.is_success() && body["error"]["code"].as_str().is_none_or(str::is_empty)
                {
                    fail(format!("an error without error.code: {body}"));
                }
                if !status.is_success() && !body["error"]["message"].is_string() {
                    fail(format!("an error without error.message: {body}"));
                }
                if event.endpoint == Endpoint::SessionValidate
                    && status == StatusCode::UNAUTHORIZED
                    && body["valid"] != Value::Bool(false)
                {
                    fail(format!("a refused validate without valid: false: {body}"));
                }
            }
        }
    }

    // CORS: the allowed origin is echoed, any other is not.
    let allow_origin = response
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .and_then(|v| v.to_str().ok());
    let expected = origin.as_deref().filter(|o| *o == ORIGIN);
    if allow_origin != expected {
        fail(format!(
            "Access-Control-Allow-Origin {allow_origin:?} for Origin {origin:?}"
        ));
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        let allow = response
            .headers()
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok());
        if allow != Some(event.endpoint.method().as_str()) {
            fail(format!("a 405 with Allow {allow:?}"));
        }
    }
}

/// Without API Gateway's `pathParameters` (a `$default` route, `cargo lambda watch`), the cache
/// handlers read the user id from the path: it must be the same one.
fn check_path_fallback(raw: &Value, user_id: &str, fail: &mut impl FnMut(String)) {
    let mut bare = raw.clone();
    if let Some(event) = bare.as_object_mut() {
        event.remove("pathParameters");
    }
    match from_str(&bare.to_string()) {
        Ok(req) => {
            let found = shared::http::path_parameter(&req, "user_id", CACHE_PREFIX);
            if found.as_deref() != Some(user_id) {
                fail(format!(
                    "without pathParameters the user id read from the path is {found:?}, \
                     not {user_id:?}"
                ));
            }
        }
        Err(e) => fail(format!("without pathParameters it no longer parses: {e}")),
    }
}

/// Each function has a success and a failure among its HTTP API events, and the REST functions
/// among their REST API events too: an empty or half-deleted folder does not pass.
fn check_coverage(events: &[Event], problems: &mut Vec<String>) {
    let has = |function: &str, rest: bool, success: bool| {
        events.iter().any(|e| {
            e.endpoint.function() == function && e.rest == rest && e.status.is_success() == success
        })
    };
    for endpoint in Endpoint::ALL {
        let function = endpoint.function();
        let rest_too = REST_FUNCTIONS.contains(&function);
        for (rest, wanted) in [(false, true), (true, rest_too)] {
            if !wanted {
                continue;
            }
            let kind = if rest {
                format!("{function}/{REST_DIR}")
            } else {
                function.to_owned()
            };
            if !has(function, rest, true) {
                problems.push(format!("events/{kind}: no success (2xx) event"));
            }
            if !has(function, rest, false) {
                problems.push(format!("events/{kind}: no failure (4xx) event"));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_event_gets_the_status_in_its_name() {
    let mut problems = Vec::new();
    let events = load_events(&mut problems);
    check_coverage(&events, &mut problems);

    let subject = support::stores::redis_standalone().await;
    let state = State::with_store(config(), subject.store).expect("a state over the test store");
    for event in &events {
        check(&state, event, &mut problems).await;
    }

    let mut report = String::new();
    for problem in &problems {
        let _ = writeln!(report, "  {problem}");
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) with the {} events under {EVENTS_DIR}:\n{report}",
        problems.len(),
        events.len()
    );
}
