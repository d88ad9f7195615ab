#![no_main]
//! Cache bodies: the input is the body of a cache put by its owner (a session token), over the
//! memory store with `CACHE_MAX_BYTES` = 2048; then a cache get.
//!
//! Properties: the put answers 413 `payload_too_large` past the limit, 400 `invalid_json` for an
//! empty or blank body or one serde_json refuses (syntax, depth, numbers out of range, bad
//! UTF-8), and 200 otherwise; after a 200 the store holds the JSON text as sent without the
//! whitespace around it, both stores' cache records give that text back byte for byte, and the
//! get answers 200 with it as `data`, byte for byte (an integer past 64 bits keeps every digit);
//! the log lines hold no session token.

use lambda_http::http::{Method, header};
use lambda_http::{Body, Request};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use session_service_fuzz::{
    CACHE_MAX_BYTES, Rig, USER, contract_violation, parse_deep, setup, take_log,
};
use shared::session::now_unix;
use shared::store::records;
use shared::token::UserKey;
use shared::{Endpoint, handle};

fuzz_target!(init: setup(), |data: &[u8]| run(data));

fn request(rig: &Rig, method: Method, body: Body) -> Request {
    lambda_http::http::Request::builder()
        .method(method)
        .uri(format!("/api/cache/user/{USER}"))
        .header("x-session-token", &rig.session_token)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .expect("a request")
}

fn run(data: &[u8]) {
    let rig = Rig::get();
    // API Gateway hands a UTF-8 body over as text, anything else base64-encoded.
    let body = match std::str::from_utf8(data) {
        Ok(text) if !text.is_empty() => Body::Text(text.to_owned()),
        Ok(_) => Body::Empty,
        Err(_) => Body::Binary(data.to_vec()),
    };
    take_log();
    let put = rig.block_on(handle(
        &rig.state,
        Endpoint::CachePut,
        request(rig, Method::POST, body),
    ));
    let status = put.status().as_u16();
    let answer = put.body().as_ref();
    if let Some(violation) = contract_violation(status, answer) {
        panic!("cache-put: {violation}");
    }
    let code = serde_json::from_slice::<Value>(answer)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
    let want = if data.len() > CACHE_MAX_BYTES {
        Some("payload_too_large")
    } else if data.iter().all(u8::is_ascii_whitespace)
        || serde_json::from_slice::<Value>(data).is_err()
    {
        Some("invalid_json")
    } else {
        None
    };
    assert_eq!(code.as_deref(), want, "cache-put answered {status}");
    if want.is_some() {
        return;
    }

    let json_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = data.iter().position(|b| !json_space(b)).unwrap();
    let end = data.iter().rposition(|b| !json_space(b)).unwrap() + 1;
    let sent = std::str::from_utf8(&data[start..end]).expect("JSON is UTF-8");
    let now = now_unix();
    let user = UserKey::for_user(USER);
    let stored = rig
        .block_on(rig.state.store.cache_get(&user, now))
        .expect("the memory store reads")
        .expect("the put stored it");
    assert_eq!(stored, sent, "stored otherwise than sent");
    // Both stores' records of it.
    let value = records::redis_cache(&stored, now + 60, 3);
    assert_eq!(
        records::redis_cache_decode(&value).ok(),
        Some((now + 60, 3, sent))
    );
    let item = records::dynamodb_cache(&user, &stored, now + 60);
    assert_eq!(
        records::dynamodb_cache_decode(&item, now).ok(),
        Some(Some(stored.clone()))
    );

    let get = rig.block_on(handle(
        &rig.state,
        Endpoint::CacheGet,
        request(rig, Method::GET, Body::Empty),
    ));
    let text = std::str::from_utf8(get.body().as_ref()).expect("a JSON answer is text");
    assert_eq!(get.status().as_u16(), 200, "cache-get: {text}");
    if let Some(violation) = contract_violation(200, text.as_bytes()) {
        panic!("cache-get: {violation}");
    }
    assert!(
        text.ends_with(&format!(",\"data\":{sent}}}")),
        "sent {sent}, read back {text}"
    );
    let answer = parse_deep(text.as_bytes()).expect("the answer is JSON");
    assert_eq!(answer["user_id"], Value::String(USER.to_owned()));
    assert_eq!(answer.as_object().map(|o| o.len()), Some(3), "{text}");
    let log = take_log();
    assert!(
        !log.contains(&rig.session_token),
        "the session token in the log: {log}"
    );
}
