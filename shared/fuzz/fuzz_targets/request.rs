#![no_main]
//! The whole request path from bytes: the bytes as the Lambda runtime receives them, read as an
//! API Gateway event (REST v1 or HTTP v2) the way the runtime reads it, then
//! `shared::lambda::serve` (the event check, `lambda_http`'s conversion, `shared::handle` over the
//! memory store), then the answer as the runtime would send it back.
//!
//! `${JWT}`, `${OTHER_JWT}`, `${ADMIN_JWT}` and `${SESSION_TOKEN}` in the input are filled with
//! live credentials (events/README.md). The endpoint is the one whose route the event names, so
//! that the seeds of `events/` go where API Gateway would send them; an event that names none
//! goes to one picked by a hash of the input.
//!
//! Properties: the answer has the shape of the API Gateway that sent the event; its status is
//! one the README documents, its body the documented JSON (`success`, `error.code` of that
//! status, `error.message`); never a 5xx (only `store_unavailable` and `auth_unavailable` may be
//! one, and neither can happen over the memory store and a PEM key); an `Allow` header on a 405;
//! CORS headers only for an allowed origin; an event refused as unreadable is one `lambda_http`
//! really panics on (the panic reproduced here), answered 400 `invalid_request`; the log lines of
//! the request hold no JWT and no session token.

use lambda_http::http::Method;
use lambda_http::lambda_runtime::{Context, LambdaEvent};
use lambda_http::request::LambdaRequest;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::Value;
use session_service_fuzz::{
    ADMIN, Rig, USER, contract_violation, setup, take_log, upstream_panics,
};
use shared::Endpoint;
use shared::auth::origin_allowed;

fuzz_target!(init: setup(), |data: &[u8]| run(data));

fn run(data: &[u8]) {
    let rig = Rig::get();
    let mut secrets = vec![
        rig.jwt.clone(),
        rig.other_jwt.clone(),
        rig.admin_jwt.clone(),
    ];
    let mut bytes = data.to_vec();
    for (placeholder, value) in [
        ("${JWT}", &rig.jwt),
        ("${OTHER_JWT}", &rig.other_jwt),
        ("${ADMIN_JWT}", &rig.admin_jwt),
    ] {
        bytes = replace(&bytes, placeholder.as_bytes(), value.as_bytes());
    }
    if find(&bytes, b"${SESSION_TOKEN}").is_some() {
        let user = if find(&bytes, b"${ADMIN_JWT}").is_some() {
            ADMIN
        } else {
            USER
        };
        let token = rig.session(user);
        bytes = replace(&bytes, b"${SESSION_TOKEN}", token.as_bytes());
        secrets.push(token);
    }
    // As the runtime reads an invocation: serde_json from the bytes, nothing checked after the
    // value.
    let read = || LambdaRequest::deserialize(&mut serde_json::Deserializer::from_slice(&bytes));
    let Ok(payload) = read() else { return };
    let (v1, method, path, credentials) = describe(&payload);
    // Credentials the event carries, when they look like one (the JWT after a scheme, a session
    // token): long runs of base64url and dots, which no log line holds by chance.
    secrets.extend(credentials.into_iter().filter_map(|value| {
        let value = value
            .split_once(' ')
            .map_or(value.as_str(), |(_, v)| v)
            .trim();
        let token_like = value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        (token_like && value.len() >= 24).then(|| value.to_owned())
    }));
    let endpoint = endpoint_for(&method, &path, data);

    let refused = shared::lambda::refusal(&payload);
    if refused.is_some() {
        // The panic the check spares the function: lambda_http's own conversion of this event.
        let panics = upstream_panics(|| {
            let payload = read().expect("read once already");
            drop(lambda_http::Request::from(payload));
        });
        assert!(panics, "refused an event lambda_http converts: {refused:?}");
    }

    take_log();
    let event = LambdaEvent::new(payload, Context::default());
    let answer = rig
        .block_on(shared::lambda::serve(&rig.state, endpoint, event))
        .expect("serve is infallible");
    let answer = serde_json::to_value(answer).expect("the answer serializes");
    let log = take_log();

    let status = answer["statusCode"].as_u64().expect("a statusCode") as u16;
    let context = || format!("{} {answer}", endpoint.function());
    assert!(status < 500, "a 5xx over the memory store: {}", context());
    if let Some(violation) = contract_violation(status, body(&answer).as_bytes()) {
        panic!("{violation}: {}", context());
    }
    if let Some(refusal) = &refused {
        assert_eq!(status, 400, "{}", context());
        assert!(body(&answer).contains(refusal.code), "{}", context());
    }
    assert_eq!(
        answer["isBase64Encoded"],
        Value::Bool(false),
        "{}",
        context()
    );
    // The shape of the API Gateway that sent the event.
    let headers = if v1 {
        assert!(
            answer.get("cookies").is_none(),
            "v1 answer with cookies: {}",
            context()
        );
        assert!(
            answer["headers"].as_object().is_none_or(|h| h.is_empty()),
            "{}",
            context()
        );
        &answer["multiValueHeaders"]
    } else {
        assert!(
            answer["cookies"].is_array(),
            "v2 answer without cookies: {}",
            context()
        );
        &answer["headers"]
    };
    let header = |name: &str| match &headers[name] {
        Value::Array(values) => values.first().and_then(Value::as_str).map(str::to_owned),
        value => value.as_str().map(str::to_owned),
    };
    if status != 204 {
        assert_eq!(
            header("content-type").as_deref(),
            Some("application/json"),
            "{}",
            context()
        );
    }
    if status == 405 {
        assert_eq!(
            header("allow").as_deref(),
            Some(endpoint.method().as_str()),
            "{}",
            context()
        );
    }
    match header("access-control-allow-origin") {
        Some(origin) => {
            assert!(
                origin_allowed(&rig.state.config.allowed_origins, &origin),
                "CORS for {origin}: {}",
                context()
            );
        }
        None => assert_ne!(
            status,
            204,
            "a preflight passed without CORS: {}",
            context()
        ),
    }
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a credential in the log: {log}"
        );
        if let Some((_, key)) = secret.split_once('.').filter(|(_, k)| k.len() >= 24) {
            assert!(!log.contains(key), "part of a credential in the log: {log}");
        }
    }
}

/// The answer's body text ("" when it has none).
fn body(answer: &Value) -> &str {
    answer["body"].as_str().unwrap_or_default()
}

/// (REST v1?, method, path, the credentials it carries) of an event.
fn describe(payload: &LambdaRequest) -> (bool, Method, String, Vec<String>) {
    let credentials = |headers: &lambda_http::http::HeaderMap| -> Vec<String> {
        ["authorization", "x-session-token"]
            .iter()
            .flat_map(|name| headers.get_all(*name))
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect()
    };
    match payload {
        LambdaRequest::ApiGatewayV1(e) => {
            let mut found = credentials(&e.headers);
            found.extend(credentials(&e.multi_value_headers));
            (
                true,
                e.http_method.clone(),
                e.path.clone().unwrap_or_default(),
                found,
            )
        }
        LambdaRequest::ApiGatewayV2(e) => (
            false,
            e.request_context.http.method.clone(),
            e.raw_path.clone().unwrap_or_default(),
            credentials(&e.headers),
        ),
        _ => (false, Method::GET, String::new(), Vec::new()),
    }
}

/// The endpoint API Gateway would invoke for this route; one picked by a hash of the input for
/// a route of none.
fn endpoint_for(method: &Method, path: &str, data: &[u8]) -> Endpoint {
    if path.contains("/api/cache/user/") {
        return if method == Method::GET {
            Endpoint::CacheGet
        } else {
            Endpoint::CachePut
        };
    }
    if let Some(endpoint) = Endpoint::ALL.into_iter().find(|e| path.ends_with(e.path())) {
        return endpoint;
    }
    let hash = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    Endpoint::ALL[(hash % Endpoint::ALL.len() as u64) as usize]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = find(rest, needle) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(with);
        rest = &rest[at + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}
