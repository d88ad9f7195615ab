//! What fuzzing found (shared/fuzz/README.md), one regression test each, on the stable toolchain.
//!
//! - Events `lambda_http` cannot turn into a request (it panics, and a release build aborts on a
//!   panic): an `X-Forwarded-Proto`, `Host` or path that make no URL, a query that makes no URI,
//!   a body marked base64 that is not. `shared::lambda::serve` answers them 400
//!   `invalid_request` instead, exactly those, in the shape API Gateway expects.
//! - A cache put re-serialized the parsed body, so an integer past 64 bits came back as a float
//!   and a long decimal rounded. The body is now stored as sent and read back byte for byte.
//! - The record decoders read the unsigned idle timeout and epoch as signed: a value past
//!   `i64::MAX` was written, then read as a corrupt record.
//! - A Redis record reads an empty user agent back as none, DynamoDB kept it empty; an empty one
//!   is now none everywhere, and `Session::new` makes none.

mod support;

use lambda_http::http::{Method, StatusCode, header};
use lambda_http::lambda_runtime::{Context, LambdaEvent};
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Request};
use serde_json::{Value, json};
use shared::config::Config;
use shared::store::MemoryStore;
use shared::{Endpoint, State, Store, handle};
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use support::keys::{TestKeys, claims};

const ORIGIN: &str = "chrome-extension://abcdefghijklmnopabcdefghijklmnop";
const EVENTS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../events");

fn state() -> State {
    let vars = HashMap::from([
        (
            "CLERK_JWT_KEY".to_owned(),
            TestKeys::shared().public_pem.clone(),
        ),
        ("ALLOWED_ORIGINS".to_owned(), ORIGIN.to_owned()),
    ]);
    let config = Config::from_map(&vars).expect("a valid configuration");
    State::with_store(config, Store::Memory(MemoryStore::new())).expect("a state")
}

/// An event of `events/` with `${JWT}` and `${OTHER_JWT}` filled in, and `edit` applied to its
/// JSON.
fn event(file: &str, edit: impl FnOnce(&mut Value)) -> String {
    let text = std::fs::read_to_string(format!("{EVENTS_DIR}/{file}")).expect("read the event");
    let jwt = |user: &str| TestKeys::shared().sign(&claims(user), None);
    let text = text
        .replace("${JWT}", &jwt("user_events"))
        .replace("${OTHER_JWT}", &jwt("user_other"));
    let mut value: Value = serde_json::from_str(&text).unwrap();
    edit(&mut value);
    value.to_string()
}

/// What the runtime would send back for `text`: the answer of `serve`, as JSON.
async fn serve(state: &State, endpoint: Endpoint, text: &str) -> Value {
    let payload: LambdaRequest = serde_json::from_str(text).expect("an API Gateway event");
    let answer = shared::lambda::serve(
        state,
        endpoint,
        LambdaEvent::new(payload, Context::default()),
    )
    .await
    .unwrap();
    serde_json::to_value(answer).unwrap()
}

/// Whether `lambda_http`'s own conversion of `text` panics. Its panics are expected here, so
/// they are not printed; any other panic is, as usual.
fn lambda_http_panics(text: &str) -> bool {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let upstream = info.location().is_some_and(|l| {
                l.file().contains("/lambda_http-") || l.file().contains("/aws_lambda_events-")
            });
            if !upstream {
                previous(info);
            }
        }));
    });
    let payload: LambdaRequest = serde_json::from_str(text).unwrap();
    catch_unwind(AssertUnwindSafe(|| Request::from(payload))).is_err()
}

/// The status, the headers and the JSON body of a serialized v1 or v2 answer.
fn parts(answer: &Value) -> (u16, Value, Value) {
    let status = answer["statusCode"].as_u64().unwrap() as u16;
    let headers = if answer["multiValueHeaders"]
        .as_object()
        .is_some_and(|h| !h.is_empty())
    {
        answer["multiValueHeaders"].clone()
    } else {
        answer["headers"].clone()
    };
    let body = serde_json::from_str(answer["body"].as_str().unwrap_or("null")).unwrap();
    (status, headers, body)
}

#[tokio::test]
async fn events_lambda_http_cannot_convert_are_refused_400_not_a_crash() {
    let state = state();
    let v2 = "session-validate/401-missing-token.json";
    let v1 = "cache-get/rest-v1/404-cache-miss.json";
    let put = "cache-put/200-put-jwt.json";
    let cases: Vec<(&str, Endpoint, String)> = vec![
        (
            "v2, X-Forwarded-Proto with a space",
            Endpoint::SessionValidate,
            event(v2, |e| e["headers"]["x-forwarded-proto"] = json!("a b")),
        ),
        (
            "v2, empty X-Forwarded-Proto",
            Endpoint::SessionValidate,
            event(v2, |e| e["headers"]["x-forwarded-proto"] = json!("")),
        ),
        (
            "v2, a Host that is no host",
            Endpoint::SessionValidate,
            event(v2, |e| e["headers"]["host"] = json!("a b")),
        ),
        (
            "v2, a query with a space",
            Endpoint::SessionValidate,
            event(v2, |e| e["rawQueryString"] = json!("a b")),
        ),
        (
            "v2, no host and a path that is a port",
            Endpoint::SessionValidate,
            event(v2, |e| {
                e["headers"].as_object_mut().unwrap().remove("host");
                e["requestContext"]
                    .as_object_mut()
                    .unwrap()
                    .remove("domainName");
                e["rawPath"] = json!(":99999");
            }),
        ),
        (
            "v2, a body marked base64 that is not",
            Endpoint::CachePut,
            event(put, |e| e["isBase64Encoded"] = json!(true)),
        ),
        (
            "v1, X-Forwarded-Proto with a space",
            Endpoint::CacheGet,
            event(v1, |e| e["headers"]["X-Forwarded-Proto"] = json!("a b")),
        ),
        (
            "v1, a body marked base64 that is not",
            Endpoint::CacheGet,
            event(v1, |e| {
                e["body"] = json!("!!");
                e["isBase64Encoded"] = json!(true);
            }),
        ),
    ];
    for (what, endpoint, text) in cases {
        assert!(
            lambda_http_panics(&text),
            "{what}: lambda_http converts it after all"
        );
        let answer = serve(&state, endpoint, &text).await;
        let (status, headers, body) = parts(&answer);
        assert_eq!(status, 400, "{what}: {answer}");
        assert_eq!(body["success"], json!(false), "{what}: {answer}");
        assert_eq!(body["error"]["code"], json!("invalid_request"), "{what}");
        assert!(body["error"]["message"].is_string(), "{what}: {answer}");
        // The CORS headers of every answer, so that the extension can read the error.
        let allowed = headers
            .get("access-control-allow-origin")
            .map(|v| v.as_str().map_or_else(|| v[0].clone(), |s| json!(s)));
        assert_eq!(allowed, Some(json!(ORIGIN)), "{what}: {answer}");
        // Answered in the shape of the API Gateway that sent it.
        let v1_answer = answer.get("cookies").is_none();
        assert_eq!(
            v1_answer,
            text.contains("\"httpMethod\""),
            "{what}: {answer}"
        );
    }
    // Refused before any handler: the cache-put with a body that is not base64 wrote nothing.
    let user = shared::token::UserKey::for_user("user_events");
    let cached = state
        .store
        .cache_get(&user, shared::session::now_unix())
        .await;
    assert_eq!(cached.unwrap(), None, "a refused event wrote to the store");
}

#[tokio::test]
async fn events_lambda_http_converts_are_served_as_before() {
    let state = state();
    let cases = [
        (
            "v2, X-Forwarded-Proto http",
            Endpoint::SessionValidate,
            event("session-validate/401-missing-token.json", |e| {
                e["headers"]["x-forwarded-proto"] = json!("http")
            }),
            401,
        ),
        (
            "v2, a base64 body",
            Endpoint::CachePut,
            event("cache-put/200-put-jwt.json", |e| {
                e["body"] = json!("eyJhIjogMX0="); // {"a": 1}
                e["isBase64Encoded"] = json!(true);
            }),
            200,
        ),
        (
            "v2, an encoded query",
            Endpoint::SessionValidate,
            event("session-validate/401-missing-token.json", |e| {
                e["rawQueryString"] = json!("a=%20b&c")
            }),
            401,
        ),
        (
            "v1, a query with a space (lambda_http encodes it)",
            Endpoint::CacheGet,
            event("cache-get/rest-v1/404-cache-miss.json", |e| {
                e["queryStringParameters"] = json!({ "a": "b c" })
            }),
            404,
        ),
    ];
    for (what, endpoint, text, want) in cases {
        assert!(!lambda_http_panics(&text), "{what}: lambda_http panics");
        let answer = serve(&state, endpoint, &text).await;
        assert_eq!(parts(&answer).0, want, "{what}: {answer}");
    }
}

/// A cache put then get, over the handlers, with a Clerk JWT of `user`.
async fn put_then_get(state: &State, body: &str) -> (StatusCode, String) {
    let jwt = TestKeys::shared().sign(&claims("user_cache"), None);
    let request = |method: Method, body: Body| -> Request {
        lambda_http::http::Request::builder()
            .method(method)
            .uri("/api/cache/user/user_cache")
            .header(header::AUTHORIZATION, format!("Bearer {jwt}"))
            .body(body)
            .unwrap()
    };
    let put = handle(
        state,
        Endpoint::CachePut,
        request(Method::POST, Body::Text(body.to_owned())),
    )
    .await;
    assert_eq!(put.status(), StatusCode::OK, "{body}");
    let got = handle(state, Endpoint::CacheGet, request(Method::GET, Body::Empty)).await;
    let text = String::from_utf8(got.body().to_vec()).unwrap();
    (got.status(), text)
}

#[tokio::test]
async fn cached_json_reads_back_byte_for_byte() {
    let state = state();
    for data in [
        // Past u64 and i64: parsed, these became floats (1.2345678901234568e29).
        r#"{"big":123456789012345678901234567890,"neg":-18446744073709551617}"#,
        "18446744073709551616",
        // More digits than an f64 keeps.
        "[0.1000000000000000000000000001,1e-400,12345678901234567890.5]",
        // Spelled as sent: exponents, escapes, key order, inner whitespace, duplicate keys.
        r#"{ "z" : 1E+2, "a": "\u00e9\/", "a": [ ] }"#,
    ] {
        let (status, text) = put_then_get(&state, &format!(" \n{data}\t\r\n")).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let answer: Value = serde_json::from_str(&text).expect("the answer is JSON");
        assert_eq!(answer["success"], json!(true));
        assert_eq!(answer["user_id"], json!("user_cache"));
        assert!(
            text.contains(&format!("\"data\":{data}")),
            "stored {data}, read back {text}"
        );
    }
}

#[test]
fn records_with_unsigned_fields_past_i64_read_back() {
    use shared::store::records;
    use shared::token::{TokenHash, UserKey};
    let user = UserKey::for_user("user_records");
    let session = shared::Session {
        user_id: "user_records".into(),
        created_at: 1_700_000_000,
        expires_at: 1_700_003_600,
        absolute_expires_at: 1_707_776_000,
        idle_timeout: u64::MAX,
        remember_me: true,
        last_refreshed_at: 1_700_000_100,
        device: Some("Firefox 133 on Linux".into()),
    };
    let record = records::redis_session(&session, u64::MAX);
    assert_eq!(
        records::redis_session_decode(&user, &record).ok(),
        Some((session.clone(), u64::MAX)),
        "{record}"
    );
    let item = records::dynamodb_session(&user, &TokenHash([0; 32]), &session);
    assert_eq!(
        records::dynamodb_session_decode(&user, &item).ok(),
        Some(session)
    );
}

#[test]
fn an_empty_device_is_none_in_every_store() {
    use shared::session::Lifetimes;
    use shared::store::records;
    use shared::token::{TokenHash, UserKey};
    let lifetimes = Lifetimes {
        session: 3600,
        remember_me: 86_400,
        max_lifetime: 86_400,
    };
    // Control characters only: nothing left once they are dropped.
    let made = shared::Session::new("u", false, Some("\u{1}\u{7f}"), lifetimes, 1000);
    assert_eq!(made.device, None);
    let empty = shared::Session {
        device: Some(String::new()),
        ..made.clone()
    };
    let user = UserKey::for_user("u");
    let redis = records::redis_session_decode(&user, &records::redis_session(&empty, 0));
    assert_eq!(redis.ok(), Some((made.clone(), 0)));
    let item = records::dynamodb_session(&user, &TokenHash([0; 32]), &empty);
    assert!(!item.contains_key("device"), "{item:?}");
    assert_eq!(
        records::dynamodb_session_decode(&user, &item).ok(),
        Some(made)
    );
}

/// Items written before sessions had a device label and a `last_refreshed_at` hold the first 64
/// bytes of the user agent as `user_agent`, and `last_seen_at`: they read as that user agent (the
/// list shows its label) and the time.
#[test]
fn dynamodb_items_of_the_names_before_read_back() {
    use shared::session::Lifetimes;
    use shared::store::records::{self, AttributeValue};
    use shared::token::{TokenHash, UserKey};
    let lifetimes = Lifetimes {
        session: 3600,
        remember_me: 86_400,
        max_lifetime: 86_400,
    };
    let agent = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
    let session = shared::Session::new("u", false, Some(agent), lifetimes, 1000);
    let user = UserKey::for_user("u");
    let mut item = records::dynamodb_session(&user, &TokenHash([0; 32]), &session);
    let refreshed = item.remove("last_refreshed_at").unwrap();
    item.remove("device").unwrap();
    item.insert("last_seen_at".into(), refreshed);
    item.insert("user_agent".into(), AttributeValue::S(agent[..64].into()));
    let read = records::dynamodb_session_decode(&user, &item).unwrap();
    assert_eq!(read.last_refreshed_at, 1000);
    assert_eq!(read.device.as_deref(), Some(&agent[..64]), "{read:?}");
    assert_eq!(
        shared::device::stored_device(read.device.as_deref().unwrap()).as_deref(),
        Some("Linux")
    );
    // Once refreshed, the new name is written beside the old one, and wins.
    item.insert("last_refreshed_at".into(), AttributeValue::N("2000".into()));
    let read = records::dynamodb_session_decode(&user, &item).unwrap();
    assert_eq!(read.last_refreshed_at, 2000);
}
