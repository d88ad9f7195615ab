//! End to end over real HTTP: `cargo lambda watch` serving the eight functions through the router
//! of the workspace `Cargo.toml` (the extension's own paths), over a real `redis-server`, driven
//! with `reqwest` the way the extension calls the API (README walkthrough).
//!
//! Needs cargo-lambda: `$CARGO_LAMBDA`, else `.venv/bin/cargo-lambda` (`make venv`), else
//! `cargo-lambda` on PATH. Missing, the test fails; it never skips.

mod support;

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::keys::{TestKeys, claims};
use support::servers::RedisServer;
use support::watch::{Watch, WatchEnv};

/// watch builds a function on its first request; on a busy 2-core machine that can take minutes.
/// Any later request. Each function is prebuilt, but a source file changed meanwhile (other work
/// in the same tree) makes watch rebuild it on its first request.
const REQUEST: Duration = Duration::from_secs(10 * 60);
const ALLOWED_ORIGIN: &str = "chrome-extension://e2etest";
const LOCALHOST_ORIGIN: &str = "http://localhost:5173";
const REFUSED_ORIGIN: &str = "https://evil.example";
const USER: &str = "user_e2e";
const OTHER_USER: &str = "user_e2e_other";
const ADMIN: &str = "user_e2e_admin";

#[tokio::test(flavor = "multi_thread")]
async fn readme_walkthrough_over_http_through_cargo_lambda_watch() {
    let redis = RedisServer::start();
    let keys = TestKeys::shared();
    let mut api = Watch::launch(
        "e2e",
        &redis.url(),
        &keys.public_pem,
        WatchEnv {
            allowed_origins: &format!("{ALLOWED_ORIGIN},http://localhost:*"),
            admin_user_ids: ADMIN,
            dynamodb: None,
        },
    )
    .await;
    shared::install_tls_provider();
    let http = Client::builder()
        .timeout(REQUEST)
        .build()
        .expect("reqwest client");
    let (status, body) = api.first_answer(&http).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "{body}\n{}",
        api.log_tail()
    );
    assert_eq!(body["valid"], false, "{body}");
    assert_eq!(body["error"]["code"], "missing_credentials", "{body}");
    api.warm_up(&http).await;
    // Test JWTs live a minute, and a function's first request may wait longer than that for
    // its build: sign each one just before it is sent.
    let bearer = |user: &str| format!("Bearer {}", keys.sign(&claims(user), None));

    // Session token from a Clerk JWT, remember-me.
    let (status, _, created) = api
        .call(
            &http,
            Method::POST,
            "/api/session/create",
            &[("authorization", &bearer(USER))],
            Some(json!({ "remember_me": true })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["success"], true, "{created}");
    assert_eq!(created["user_id"], USER, "{created}");
    assert_eq!(created["remember_me"], true, "{created}");
    assert_eq!(created["expires_in"], 2_592_000, "{created}");
    assert!(
        created["expires_at"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );
    let token = created["session_token"]
        .as_str()
        .expect("session_token")
        .to_owned();
    let session = [("x-session-token", token.as_str())];

    // Validate, refresh.
    let (status, _, body) = api
        .call(&http, Method::GET, "/api/session/validate", &session, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["valid"], true, "{body}");
    assert_eq!(body["user_id"], USER, "{body}");
    assert_eq!(body["expires_at"], created["expires_at"], "{body}");

    let (status, _, body) = api
        .call(&http, Method::POST, "/api/session/refresh", &session, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["user_id"], USER, "{body}");
    assert!(body["expires_at"].as_str() >= created["expires_at"].as_str());

    // The user's cache: miss, put, hit (the `{user_id}` route of the router).
    let cache = format!("/api/cache/user/{USER}");
    let (status, _, body) = api.call(&http, Method::GET, &cache, &session, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "cache_miss", "{body}");
    let data = json!({ "theme": "dark", "recent": ["#ff0000", "#00ff00"] });
    let (status, _, body) = api
        .call(&http, Method::POST, &cache, &session, Some(data.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true, "{body}");
    let (status, _, body) = api.call(&http, Method::GET, &cache, &session, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"], data, "{body}");

    // Another user may not read it, with a session token or a JWT.
    let (status, _, other) = api
        .call(
            &http,
            Method::POST,
            "/api/session/create",
            &[("authorization", &bearer(OTHER_USER))],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{other}");
    assert_eq!(other["remember_me"], false, "{other}");
    let other_token = other["session_token"].as_str().expect("session_token");
    let (status, _, body) = api
        .call(
            &http,
            Method::GET,
            &cache,
            &[("x-session-token", other_token)],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    let (status, _, body) = api
        .call(
            &http,
            Method::GET,
            &cache,
            &[("authorization", &bearer(OTHER_USER))],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Stats: the caller's own figures; global ones for admins only.
    let (status, _, body) = api
        .call(&http, Method::GET, "/api/session/stats", &session, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stats = &body["stats"];
    assert_eq!(stats["user_id"], USER, "{body}");
    assert_eq!(stats["active_sessions"], 1, "{body}");
    assert_eq!(stats["remember_me_sessions"], 1, "{body}");
    assert_eq!(stats["backend"], "redis", "{body}");
    assert!(stats.get("global").is_none(), "{body}");
    let (status, _, body) = api
        .call(
            &http,
            Method::GET,
            "/api/session/stats",
            &[("authorization", &bearer(ADMIN))],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["stats"]["global"].is_object(), "{body}");

    // A JWT signed by any other key is refused: verification is on.
    let forged = TestKeys::other().sign(&claims(USER), None);
    let (status, _, body) = api
        .call(
            &http,
            Method::POST,
            "/api/session/create",
            &[("authorization", &format!("Bearer {forged}"))],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["success"], false, "{body}");

    // Logout of one session.
    let (_, _, second) = api
        .call(
            &http,
            Method::POST,
            "/api/session/create",
            &[("authorization", &bearer(USER))],
            None,
        )
        .await;
    let second_token = second["session_token"].as_str().expect("session_token");
    let (status, _, body) = api
        .call(
            &http,
            Method::POST,
            "/api/session/logout",
            &[("x-session-token", second_token)],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = api
        .call(
            &http,
            Method::GET,
            "/api/session/validate",
            &[("x-session-token", second_token)],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // Where am I signed in: a second device, listed and signed out from the first.
    let (_, _, laptop) = api
        .call(
            &http,
            Method::POST,
            "/api/session/create",
            &[
                ("authorization", &bearer(USER)),
                (
                    "user-agent",
                    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
                ),
            ],
            None,
        )
        .await;
    let laptop_token = laptop["session_token"].as_str().expect("session_token");
    let (status, _, body) = api
        .call(&http, Method::GET, "/api/session/list", &session, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = body["sessions"].as_array().expect("sessions");
    assert_eq!(listed.len(), 2, "{body}");
    // Both made within the same second, likely: the order between them is then the token
    // hashes', so the rows are told apart by `current`.
    let (mine, laptop): (Vec<&Value>, Vec<&Value>) =
        listed.iter().partition(|s| s["current"] == true);
    assert_eq!((mine.len(), laptop.len()), (1, 1), "{body}");
    assert_eq!(laptop[0]["device"], "Firefox 133 on Linux", "{body}");
    assert_eq!(laptop[0]["remember_me"], false, "{body}");
    let laptop_id = laptop[0]["session_id"].as_str().expect("session_id");
    let (status, _, body) = api
        .call(
            &http,
            Method::POST,
            "/api/session/revoke",
            &session,
            Some(json!({ "session_id": laptop_id })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["current"], false, "{body}");
    let (status, _, body) = api
        .call(
            &http,
            Method::GET,
            "/api/session/validate",
            &[("x-session-token", laptop_token)],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _, body) = api
        .call(
            &http,
            Method::POST,
            "/api/session/revoke",
            &session,
            Some(json!({ "session_id": laptop_id })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "session_not_found", "{body}");

    // Logout everywhere: the token stops working at once.
    let (status, _, body) = api
        .call(
            &http,
            Method::POST,
            "/api/session/logout-all",
            &session,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revoked"], 1, "{body}");
    let (status, _, body) = api
        .call(&http, Method::GET, "/api/session/validate", &session, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["valid"], false, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"]["code"], "invalid_token", "{body}");
    // The other user's session is untouched.
    let (status, _, body) = api
        .call(
            &http,
            Method::GET,
            "/api/session/validate",
            &[("x-session-token", other_token)],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // CORS, answered by the service itself (watch runs with --disable-cors).
    for origin in [ALLOWED_ORIGIN, LOCALHOST_ORIGIN] {
        let (status, headers, body) = api
            .call(
                &http,
                Method::OPTIONS,
                "/api/session/create",
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    (
                        "access-control-request-headers",
                        "authorization,content-type",
                    ),
                ],
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{origin}: {body}");
        assert_eq!(
            headers
                .get("access-control-allow-origin")
                .map(String::as_str),
            Some(origin)
        );
        let methods = &headers["access-control-allow-methods"];
        assert!(methods.contains("POST"), "{methods}");
        let allowed = headers["access-control-allow-headers"].to_ascii_lowercase();
        assert!(
            allowed.contains("authorization") && allowed.contains("x-session-token"),
            "{allowed}"
        );
    }
    let (status, headers, body) = api
        .call(
            &http,
            Method::OPTIONS,
            "/api/session/create",
            &[
                ("origin", REFUSED_ORIGIN),
                ("access-control-request-method", "POST"),
            ],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "origin_not_allowed", "{body}");
    assert!(!headers.contains_key("access-control-allow-origin"));
    // A real request carries ACAO for an allowed origin only.
    let (status, headers, _) = api
        .call(
            &http,
            Method::GET,
            "/api/session/validate",
            &[("origin", ALLOWED_ORIGIN)],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers
            .get("access-control-allow-origin")
            .map(String::as_str),
        Some(ALLOWED_ORIGIN)
    );
    let (_, headers, _) = api
        .call(
            &http,
            Method::GET,
            "/api/session/validate",
            &[("origin", REFUSED_ORIGIN)],
            None,
        )
        .await;
    assert!(!headers.contains_key("access-control-allow-origin"));

    // No route: watch itself answers 404 (the functions never see it).
    for (method, path) in [
        (Method::GET, "/api/unknown"),
        (Method::GET, "/api/session/create"),
        (Method::DELETE, "/api/cache/user/user_e2e"),
    ] {
        let (status, _, body) = api.call(&http, method.clone(), path, &[], None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
        assert!(body.get("success").is_none(), "{method} {path}: {body}");
    }

    drop(api);
    drop(redis);
}

/// What the walkthrough adds to the shared harness.
impl Watch {
    /// Starts every other function with a request without credentials (401), so that no JWT of
    /// the walkthrough waits out its minute behind a build.
    async fn warm_up(&self, http: &Client) {
        let started = Instant::now();
        for (method, path) in [
            (Method::POST, "/api/session/create"),
            (Method::POST, "/api/session/refresh"),
            (Method::POST, "/api/session/logout"),
            (Method::POST, "/api/session/logout-all"),
            (Method::GET, "/api/session/stats"),
            (Method::GET, "/api/session/list"),
            (Method::POST, "/api/session/revoke"),
            (Method::GET, "/api/cache/user/user_warm_up"),
            (Method::POST, "/api/cache/user/user_warm_up"),
        ] {
            let (status, _, body) = self.call(http, method.clone(), path, &[], None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
            assert_eq!(body["success"], false, "{method} {path}: {body}");
        }
        eprintln!(
            "e2e: the nine other functions answered after {:.1?} more",
            started.elapsed()
        );
    }

    /// One request; the status, the headers (lower-case names) and the body as JSON (`Null` when
    /// empty, a string when not JSON).
    async fn call(
        &self,
        http: &Client,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, HashMap<String, String>, Value) {
        let mut request = http.request(method.clone(), self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log_tail()));
        let status = response.status();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let text = response.text().await.expect("response body");
        let body = match text.trim() {
            "" => Value::Null,
            t => serde_json::from_str(t).unwrap_or(Value::String(text)),
        };
        assert!(
            status.as_u16() < 500,
            "{method} {path} -> {status}: {body}\n{}",
            self.log_tail()
        );
        (status, headers, body)
    }
}
