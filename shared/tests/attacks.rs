//! The attack suite, over real HTTP: `cargo lambda watch` serving the eight functions (as in
//! e2e.rs, `--disable-cors`, a free port) over a real `redis-server`, every byte that watch and the
//! functions print captured to one log file. Then, counted and printed:
//!
//! 1. forged Clerk JWTs: `alg: none`, HS256 keyed with the public key, RS256 header over an HMAC,
//!    another key, other RSA algorithms, expired, not yet valid, swapped payloads: 401 `invalid_jwt`;
//! 2. another user's cache, with a session token or a JWT, and a token whose user part names
//!    another user: 403 / 401, and the victim's data unchanged;
//! 3. cache paths carrying `{`, `}`, `:`, `#`, `/`, `..`, NUL, 10 KB and non-UTF-8 bytes, sent raw
//!    (no client-side normalisation): a clean 4xx, never the caller's or anyone's data;
//! 4. user ids that are all of that and legitimately owned (a JWT whose `sub` is `a{b}c:#`, `x}`
//!    beside `x`, …): everything works and stays isolated, and a raw `SCAN` of Redis finds only
//!    `sess:{<base64url>}` / `cache:{<base64url>}` keys, each of a user the suite made;
//! 5. 1 MB bodies: 413; 100 KB headers: whatever watch answers, printed (never a 5xx or a hang);
//! 6. a Redis dump (`SCAN` + `HGETALL` / `GET`) holds none of the suite's session tokens or
//!    secrets, and no hash in it works as a token;
//! 7. every captured log line: no session token, no secret, no JWT
//!    (`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.`).
//!
//! Needs cargo-lambda like e2e.rs: `$CARGO_LAMBDA`, else `.venv/bin/cargo-lambda`, else PATH.

mod support;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64_STD, URL_SAFE_NO_PAD as B64};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use shared::session::now_unix;
use shared::store::DynamoStore;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use support::keys::{TestKeys, claims};
use support::servers::{Moto, RedisServer};
use support::stores::{RedisEntry, dynamo_client, hex, redis_entries, snapshot, unique};
use support::watch::{Watch, WatchEnv};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// watch builds a function on its first request; on a busy 2-core machine that can take minutes.
/// Any later request (a source file changed meanwhile makes watch rebuild on first use).
const REQUEST: Duration = Duration::from_secs(10 * 60);
const ALLOWED_ORIGIN: &str = "chrome-extension://attacktest";
const VICTIM: &str = "user_attack_victim";
const ATTACKER: &str = "user_attack_attacker";
/// Legitimately owned user ids full of key syntax, each with a session and a cache of its own.
const ODD_USERS: [&str; 9] = [
    "a{b}c:#",
    "x",
    "x}",
    "{x}",
    "x:y",
    "../x",
    "a b",
    "ünï ✓",
    "nul\0x",
];

#[tokio::test(flavor = "multi_thread")]
async fn attacks_over_http_through_cargo_lambda_watch() {
    let redis = RedisServer::start();
    let keys = TestKeys::shared();
    let mut api = Watch::launch(
        "attacks",
        &redis.url(),
        &keys.public_pem,
        WatchEnv {
            allowed_origins: ALLOWED_ORIGIN,
            admin_user_ids: "",
            dynamodb: None,
        },
    )
    .await;
    shared::install_tls_provider();
    let http = Client::builder()
        .timeout(REQUEST)
        .build()
        .expect("reqwest client");
    let (status, _) = api.first_answer(&http).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", api.log_tail());
    api.warm_up(&http).await;

    let mut suite = Suite::default();
    forged_jwts(&api, &http, &mut suite).await;
    another_users_cache(&api, &http, &mut suite).await;
    hostile_cache_paths(&api, &mut suite).await;
    odd_but_owned_user_ids(&api, &http, &mut suite).await;
    key_shapes(&redis, &mut suite).await;
    oversized_bodies(&api, &http, &mut suite).await;
    oversized_headers(&api, &mut suite).await;
    redis_dump_yields_no_token(&api, &http, &redis, &mut suite).await;

    // Stop watch and its functions, so that every line they printed is in the file.
    let log = tokio::task::spawn_blocking(move || api.stop())
        .await
        .expect("stop watch");
    logs_hold_no_credential(&log, &mut suite);
    suite.report();
    drop(redis);
}

/// Forged and unknown credentials on every endpoint, with both stores (Redis in front of a local
/// DynamoDB): Redis and DynamoDB stay byte for byte as they were (keys, TTLs, items, the epoch),
/// while Redis answers and after it is gone, when every revocation would bump the epoch.
#[tokio::test(flavor = "multi_thread")]
async fn forged_credentials_change_nothing_with_both_stores() {
    let mut redis = RedisServer::start();
    let endpoint = Moto::shared().endpoint();
    let table = unique("sessions");
    let client = dynamo_client(&endpoint);
    DynamoStore::from_client(client.clone(), &table)
        .ensure_table()
        .await
        .expect("create the table");
    let keys = TestKeys::shared();
    let mut api = Watch::launch(
        "forged",
        &redis.url(),
        &keys.public_pem,
        WatchEnv {
            allowed_origins: ALLOWED_ORIGIN,
            admin_user_ids: "",
            dynamodb: Some((&endpoint, &table)),
        },
    )
    .await;
    shared::install_tls_provider();
    let http = Client::builder()
        .timeout(REQUEST)
        .build()
        .expect("reqwest client");
    let (status, _) = api.first_answer(&http).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", api.log_tail());
    api.warm_up(&http).await;

    // Something to protect: a session and a cache of the victim.
    let jwt = keys.sign(&claims(VICTIM), None);
    let created = http
        .post(api.url("/api/session/create"))
        .bearer_auth(&jwt)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::OK);
    let victim_token = created.json::<Value>().await.unwrap()["session_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let cache = api.url(&format!("/api/cache/user/{VICTIM}"));
    let put = http
        .post(&cache)
        .header("X-Session-Token", &victim_token)
        .json(&json!({ "theme": "dark" }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);

    let before = snapshot(Some(&redis.url()), &client, &table).await;
    let record_before = snapshot(None, &client, &table).await;
    let sent = forge_everywhere(&api, &http, &victim_token).await;
    assert_eq!(
        snapshot(Some(&redis.url()), &client, &table).await,
        before,
        "{sent} forged requests with Redis up changed a store"
    );

    // Redis gone: each function serves from DynamoDB alone, where a revocation bumps the epoch.
    redis.kill();
    let sent = forge_everywhere(&api, &http, &victim_token).await;
    assert_eq!(
        snapshot(None, &client, &table).await,
        record_before,
        "{sent} forged requests with Redis down changed the record or bumped the epoch"
    );
    let log = tokio::task::spawn_blocking(move || api.stop())
        .await
        .expect("stop watch");
    assert!(!log.contains(&victim_token), "a token in the log");
}

/// Every endpoint with forged and unknown credentials: session tokens never issued (another user,
/// the victim's user part with a made-up secret, malformed) and JWTs not signed by the trusted
/// key. Each must get its 4xx; returns how many were sent.
async fn forge_everywhere(api: &Watch, http: &Client, victim_token: &str) -> usize {
    let (victim_part, _) = victim_token.split_once('.').unwrap();
    let made_up = || b64(&rand_bytes());
    let tokens = [
        format!("{}.{}", b64(b"user_nobody"), made_up()),
        format!("{victim_part}.{}", made_up()),
        format!("{victim_part}.{}x", made_up()),
        "not-a-token".to_owned(),
    ];
    let jwt = TestKeys::other().sign(&claims(VICTIM), None);
    let cache = format!("/api/cache/user/{VICTIM}");
    let routes: [(Method, &str); 10] = [
        (Method::POST, "/api/session/create"),
        (Method::GET, "/api/session/validate"),
        (Method::POST, "/api/session/refresh"),
        (Method::POST, "/api/session/logout"),
        (Method::POST, "/api/session/logout-all"),
        (Method::GET, "/api/session/stats"),
        (Method::GET, "/api/session/list"),
        (Method::POST, "/api/session/revoke"),
        (Method::GET, &cache),
        (Method::POST, &cache),
    ];
    // A revoke names the victim's own session: only a forged credential stands in its way.
    let victim = shared::SessionToken::parse(victim_token).unwrap();
    let body = json!({ "session_id": shared::token::SessionId::of(&victim.hash()).to_string() });
    let mut sent = 0;
    for (method, path) in routes {
        let mut requests: Vec<reqwest::RequestBuilder> = tokens
            .iter()
            .map(|t| {
                http.request(method.clone(), api.url(path))
                    .header("X-Session-Token", t)
            })
            .collect();
        requests.push(
            http.request(method.clone(), api.url(path))
                .bearer_auth(&jwt),
        );
        for request in requests {
            let response = request.json(&body).send().await.unwrap();
            let status = response.status();
            assert!(
                status == StatusCode::UNAUTHORIZED || status == StatusCode::BAD_REQUEST,
                "{method} {path}: {status} {}",
                response.text().await.unwrap_or_default()
            );
            sent += 1;
        }
    }
    sent
}

fn rand_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("OS randomness");
    bytes
}

// ---------------------------------------------------------------------------------------------
// Bookkeeping
// ---------------------------------------------------------------------------------------------

/// What the suite sent and saw: every credential (for the dump and log scans) and the count of
/// each kind of attack.
#[derive(Default)]
struct Suite {
    /// Every session token the API handed out.
    tokens: Vec<String>,
    /// Every JWT sent, valid or not.
    jwts: Vec<String>,
    /// Every user id whose keys may be in Redis.
    users: HashSet<String>,
    counts: BTreeMap<&'static str, u64>,
    /// The odd users whose own cache took a write.
    cached: Vec<String>,
    /// How watch (not the functions) answered what never reached a function.
    notes: Vec<String>,
}

impl Suite {
    fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }

    fn note(&mut self, note: String) {
        eprintln!("attacks: {note}");
        self.notes.push(note);
    }

    /// A fresh JWT for `sub` by the configured key (test JWTs live a minute: sign just before use).
    fn jwt(&mut self, sub: &str) -> String {
        let jwt = TestKeys::shared().sign(&claims(sub), None);
        self.jwts.push(jwt.clone());
        jwt
    }

    fn sent(&mut self, jwt: String) -> String {
        self.jwts.push(jwt.clone());
        jwt
    }

    fn report(&self) {
        let mut out = String::from("attacks: summary\n");
        for (what, n) in &self.counts {
            let _ = writeln!(out, "    {what:<44} {n}");
        }
        let _ = writeln!(
            out,
            "    session tokens made {}, JWTs sent {}, user ids {}",
            self.tokens.len(),
            self.jwts.len(),
            self.users.len()
        );
        for note in &self.notes {
            let _ = writeln!(out, "    note: {note}");
        }
        eprint!("{out}");
    }
}

/// One answer: the status and the body as JSON (`Null` when empty, a string when
/// not JSON).
struct Reply {
    status: u16,
    body: Value,
}

impl Reply {
    /// A JSON error from a function: this status and code, `success: false`, a message.
    #[track_caller]
    fn error(&self, status: u16, code: &str, what: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.body);
        assert_eq!(self.body["success"], json!(false), "{what}: {}", self.body);
        assert_eq!(
            self.body["error"]["code"],
            json!(code),
            "{what}: {}",
            self.body
        );
        assert!(
            self.body["error"]["message"].is_string(),
            "{what}: {}",
            self.body
        );
    }

    #[track_caller]
    fn ok(&self, what: &str) -> &Value {
        assert_eq!(self.status, 200, "{what}: {}", self.body);
        assert_eq!(self.body["success"], json!(true), "{what}: {}", self.body);
        &self.body
    }

    /// Whether a function wrote this answer (watch's own answers are not the service's JSON).
    fn by_function(&self) -> bool {
        self.body.get("success").is_some_and(Value::is_boolean)
    }
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

// ---------------------------------------------------------------------------------------------
// 1. Forged, expired and algorithm-confused JWTs
// ---------------------------------------------------------------------------------------------

async fn forged_jwts(api: &Watch, http: &Client, suite: &mut Suite) {
    let keys = TestKeys::shared();
    let user = VICTIM;
    let public_hmac = EncodingKey::from_secret(keys.public_pem.as_bytes());
    let right = EncodingKey::from_rsa_pem(keys.private_pem.as_bytes()).unwrap();
    let payload = |c: &Value| b64(c.to_string().as_bytes());
    let header = |h: Value| b64(h.to_string().as_bytes());
    let real = suite.jwt(user);
    let real_signature = real.rsplit('.').next().unwrap().to_owned();
    let now = now_unix();

    let mut forged: Vec<(&str, String)> = Vec::new();
    for alg in ["none", "None", "NONE"] {
        let unsigned = format!(
            "{}.{}.",
            header(json!({ "alg": alg, "typ": "JWT" })),
            payload(&claims(user))
        );
        forged.push(("alg none, unsigned", unsigned.clone()));
        forged.push((
            "alg none, a real signature stuck on",
            format!("{unsigned}{real_signature}"),
        ));
    }
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let token = jsonwebtoken::encode(&Header::new(alg), &claims(user), &public_hmac).unwrap();
        forged.push(("HMAC keyed with the public key", token));
    }
    let input = format!(
        "{}.{}",
        header(json!({ "alg": "RS256", "typ": "JWT" })),
        payload(&claims(user))
    );
    let hmac =
        jsonwebtoken::crypto::sign(input.as_bytes(), &public_hmac, Algorithm::HS256).unwrap();
    forged.push(("RS256 header over an HMAC", format!("{input}.{hmac}")));
    forged.push((
        "signed by another key",
        TestKeys::other().sign(&claims(user), None),
    ));
    for alg in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256] {
        let token = jsonwebtoken::encode(&Header::new(alg), &claims(user), &right).unwrap();
        forged.push(("the right key, another algorithm", token));
    }
    let mut expired = claims(user);
    expired["exp"] = json!(now - 3600);
    expired["nbf"] = json!(now - 7200);
    forged.push(("expired an hour ago", keys.sign(&expired, None)));
    let mut early = claims(user);
    early["nbf"] = json!(now + 3600);
    early["exp"] = json!(now + 7200);
    forged.push(("not valid for an hour", keys.sign(&early, None)));
    let mut anonymous = claims(user);
    anonymous["sub"] = json!("");
    forged.push(("empty sub", keys.sign(&anonymous, None)));
    let mut parts: Vec<&str> = real.split('.').collect();
    let other_payload = payload(&claims(ATTACKER));
    parts[1] = &other_payload;
    forged.push((
        "another user's payload, the victim's signature",
        parts.join("."),
    ));
    forged.push(("signature cut short", real[..real.len() - 20].to_owned()));
    let with_jku = jsonwebtoken::encode(
        &Header {
            jku: Some("http://127.0.0.1:1/jwks.json".into()),
            kid: Some("attacker".into()),
            ..Header::new(Algorithm::RS256)
        },
        &claims(user),
        &EncodingKey::from_rsa_pem(TestKeys::other().private_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    forged.push(("jku and kid pointing at the attacker's key", with_jku));

    for (why, jwt) in forged {
        let jwt = suite.sent(jwt);
        let bearer = format!("Bearer {jwt}");
        for (method, path) in [
            (Method::POST, "/api/session/create".to_owned()),
            (Method::GET, client_path(user)),
            (Method::POST, "/api/session/logout-all".to_owned()),
        ] {
            let reply = api
                .call(http, method, &path, &[("authorization", &bearer)], None)
                .await;
            reply.error(401, "invalid_jwt", why);
            suite.count("forged JWT refused (401 invalid_jwt)");
        }
    }
    for value in ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "bearer", ""] {
        let reply = api
            .call(
                http,
                Method::POST,
                "/api/session/create",
                &[("authorization", value)],
                None,
            )
            .await;
        reply.error(401, "missing_credentials", value);
        suite.count("malformed Authorization refused (401)");
    }
    // The control: the real thing passes, so the refusals above mean something.
    let reply = api
        .call(
            http,
            Method::POST,
            "/api/session/create",
            &[("authorization", &format!("Bearer {}", suite.jwt(user)))],
            None,
        )
        .await;
    let token = reply.ok("a valid JWT")["session_token"]
        .as_str()
        .unwrap()
        .to_owned();
    suite.tokens.push(token);
    suite.users.insert(user.to_owned());
}

// ---------------------------------------------------------------------------------------------
// 2. Another user's cache
// ---------------------------------------------------------------------------------------------

async fn another_users_cache(api: &Watch, http: &Client, suite: &mut Suite) {
    let victim = api.session(http, suite, VICTIM).await;
    let attacker = api.session(http, suite, ATTACKER).await;
    let data = json!({ "theme": "dark", "secret_note": "victim's" });
    api.call(
        http,
        Method::POST,
        &client_path(VICTIM),
        &[("x-session-token", &victim)],
        Some(data.clone()),
    )
    .await
    .ok("the victim's own cache");

    let victim_path = client_path(VICTIM);
    let attacker_jwt = format!("Bearer {}", suite.jwt(ATTACKER));
    for (method, credential) in [
        (Method::GET, ("x-session-token", attacker.as_str())),
        (Method::POST, ("x-session-token", attacker.as_str())),
        (Method::GET, ("authorization", attacker_jwt.as_str())),
        (Method::POST, ("authorization", attacker_jwt.as_str())),
    ] {
        let reply = api
            .call(
                http,
                method.clone(),
                &victim_path,
                &[credential],
                Some(json!({ "overwritten": true })),
            )
            .await;
        reply.error(403, "forbidden", &format!("{method} the victim's cache"));
        assert!(reply.body.get("data").is_none(), "{}", reply.body);
        suite.count("another user's cache refused (403)");
    }
    // The attacker's secret under the victim's user part: the store keys on the whole token.
    let attacker_secret = attacker.split_once('.').unwrap().1;
    let spliced = format!("{}.{attacker_secret}", b64(VICTIM.as_bytes()));
    for (method, path) in [
        (Method::GET, "/api/session/validate"),
        (Method::GET, victim_path.as_str()),
        (Method::POST, "/api/session/logout-all"),
    ] {
        let reply = api
            .call(http, method, path, &[("x-session-token", &spliced)], None)
            .await;
        reply.error(401, "invalid_token", "a token spliced onto the victim");
        suite.count("spliced token refused (401 invalid_token)");
    }
    let reply = api
        .call(
            http,
            Method::GET,
            &victim_path,
            &[("x-session-token", &victim)],
            None,
        )
        .await;
    assert_eq!(
        reply.ok("the victim's cache after the attacks")["data"],
        data
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Hostile cache paths, sent raw
// ---------------------------------------------------------------------------------------------

async fn hostile_cache_paths(api: &Watch, suite: &mut Suite) {
    shared::install_tls_provider();
    let http = Client::builder().timeout(REQUEST).build().unwrap();
    let victim = api.session(&http, suite, VICTIM).await;
    // The attacker's own credential against paths built around the victim's id: nothing may
    // answer 200 (a path that resolves to the attacker's own id is not among them).
    let attacker = api.session(&http, suite, ATTACKER).await;
    let long = "u".repeat(10 * 1024);
    let long_encoded = "%41".repeat(10 * 1024 / 3);
    // (what, the segment after /api/cache/user/ exactly as sent)
    let cases: Vec<(&str, Vec<u8>)> = [
        ("{", "%7B".to_owned()),
        ("}", "%7D".into()),
        ("{victim}", format!("%7B{VICTIM}%7D")),
        ("raw braces", format!("{{{VICTIM}}}")),
        (":", format!("{VICTIM}%3Ax")),
        ("raw colon", format!("{VICTIM}:x")),
        ("#", format!("{VICTIM}%23x")),
        ("raw # (a fragment)", format!("{VICTIM}#x")),
        ("%2F", format!("{VICTIM}%2Fx")),
        ("raw /", format!("{VICTIM}/x")),
        ("..", "..".into()),
        ("../ to another route", "../../session/validate".into()),
        ("%2e%2e", "%2e%2e".into()),
        ("NUL", "%00".into()),
        ("victim + NUL", format!("{VICTIM}%00")),
        ("NUL + victim", format!("%00{VICTIM}")),
        ("10 KB id", long),
        ("10 KB percent-encoded id", long_encoded),
        ("%FF", "%FF".into()),
        ("victim + %FF", format!("{VICTIM}%FF")),
        ("overlong UTF-8 of /", "%C0%AF".into()),
        ("empty", String::new()),
    ]
    .into_iter()
    .map(|(what, segment)| (what, segment.into_bytes()))
    .chain([
        ("raw 0xFF byte", b"\xff".to_vec()),
        ("raw NUL byte", [VICTIM.as_bytes(), b"\0"].concat()),
    ])
    .collect();
    for (what, segment) in cases {
        for method in ["GET", "POST"] {
            let target = [b"/api/cache/user/".as_slice(), &segment].concat();
            let reply = api
                .raw(
                    method,
                    &target,
                    &[("X-Session-Token", attacker.as_str())],
                    br#"{"planted":true}"#,
                )
                .await;
            assert!(
                (400..500).contains(&reply.status),
                "{method} {what}: {} {}",
                reply.status,
                reply.body
            );
            assert!(reply.body.get("data").is_none(), "{what}: {}", reply.body);
            if reply.by_function() {
                assert_eq!(
                    reply.body["success"],
                    json!(false),
                    "{what}: {}",
                    reply.body
                );
                let code = reply.body["error"]["code"].as_str().unwrap_or_default();
                assert!(
                    ["invalid_request", "forbidden"].contains(&code),
                    "{method} {what}: {}",
                    reply.body
                );
                suite.count("hostile path refused by the function (4xx JSON)");
            } else {
                suite.count("hostile path refused by watch (no route)");
                suite.note(format!(
                    "{method} /api/cache/user/{}: watch answered {} itself (no function ran): {}",
                    if segment.len() > 40 {
                        format!("<{} bytes>", segment.len())
                    } else {
                        segment.escape_ascii().to_string()
                    },
                    reply.status,
                    reply.body.to_string().chars().take(80).collect::<String>()
                ));
            }
        }
    }
    // Nothing was planted: the victim's cache is untouched.
    let reply = api
        .call(
            &http,
            Method::GET,
            &client_path(VICTIM),
            &[("x-session-token", &victim)],
            None,
        )
        .await;
    assert!(
        reply.body["data"].get("planted").is_none(),
        "{}",
        reply.body
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Odd but legitimately owned user ids: working and isolated
// ---------------------------------------------------------------------------------------------

/// The cache path of `user` as a client sends it: bytes that HTTP allows raw in a path stay raw
/// (so `{`, `}`, `:` reach the router as they are), everything else is percent-encoded.
fn client_path(user: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b'{')
        .remove(b'}')
        .remove(b':')
        .remove(b'@')
        .remove(b'!');
    format!("/api/cache/user/{}", utf8_percent_encode(user, KEEP))
}

async fn odd_but_owned_user_ids(api: &Watch, http: &Client, suite: &mut Suite) {
    let mut tokens = HashMap::new();
    // The users whose own cache works: every odd id but one with a `/`.
    let mut cached: Vec<&str> = Vec::new();
    for user in ODD_USERS {
        let token = api.session(http, suite, user).await;
        let reply = api
            .call(
                http,
                Method::GET,
                "/api/session/validate",
                &[("x-session-token", &token)],
                None,
            )
            .await;
        assert_eq!(reply.ok(user)["user_id"], json!(user));
        suite.count("odd user id: session works");
        // Raw: reqwest would encode `{` and `}` itself.
        let path = client_path(user);
        let body = json!({ "who": user }).to_string();
        let reply = api
            .raw(
                "POST",
                path.as_bytes(),
                &[("X-Session-Token", &token)],
                body.as_bytes(),
            )
            .await;
        if user.contains('/') {
            // A `/` cannot be told from a path separator: refused, never another user's cache.
            reply.error(
                400,
                "invalid_request",
                &format!("{user:?}'s own cache at {path}"),
            );
            suite.count("odd user id with '/': own cache refused (400)");
        } else {
            reply.ok(&format!("{user:?}'s own cache at {path}"));
            cached.push(user);
            suite.count("odd user id: own cache works");
        }
        tokens.insert(user, token);
    }
    assert_eq!(cached.len(), ODD_USERS.len() - 1, "{cached:?}");
    // Each reads its own data only; every other odd user is refused.
    for reader in ODD_USERS {
        for owner in ODD_USERS {
            let reply = api
                .raw(
                    "GET",
                    client_path(owner).as_bytes(),
                    &[("X-Session-Token", &tokens[reader])],
                    b"",
                )
                .await;
            if owner.contains('/') {
                reply.error(
                    400,
                    "invalid_request",
                    &format!("{reader:?} reads {owner:?}"),
                );
                suite.count("odd user id: a path with '/' refused (400)");
            } else if reader != owner {
                reply.error(403, "forbidden", &format!("{reader:?} reads {owner:?}"));
                suite.count("odd user id: another's cache refused (403)");
            } else if cached.contains(&owner) {
                assert_eq!(reply.ok(owner)["data"], json!({ "who": owner }));
            }
        }
        let reply = api
            .call(
                http,
                Method::GET,
                "/api/session/stats",
                &[("x-session-token", &tokens[reader])],
                None,
            )
            .await;
        let stats = &reply.ok(reader)["stats"];
        assert_eq!(stats["user_id"], json!(reader), "{stats}");
        assert_eq!(stats["active_sessions"], json!(1), "{reader:?}: {stats}");
    }
    // Logging out everywhere as `x}` ends exactly one session: x's stays.
    let reply = api
        .call(
            http,
            Method::POST,
            "/api/session/logout-all",
            &[("x-session-token", &tokens["x}"])],
            None,
        )
        .await;
    assert_eq!(reply.ok("logout-all x}")["revoked"], json!(1));
    for (user, status) in [("x}", 401), ("x", 200), ("{x}", 200)] {
        let reply = api
            .call(
                http,
                Method::GET,
                "/api/session/validate",
                &[("x-session-token", &tokens[user])],
                None,
            )
            .await;
        assert_eq!(
            reply.status, status,
            "{user:?} after x}} logged out: {}",
            reply.body
        );
    }
    suite.count("odd user id: logout-all isolated");
    suite.cached = cached.iter().map(|u| (*u).to_owned()).collect();
}

async fn key_shapes(redis: &RedisServer, suite: &mut Suite) {
    let keys: Vec<Vec<u8>> = redis_entries(&redis.url())
        .await
        .into_iter()
        .map(|entry| entry.key)
        .collect();
    assert!(!keys.is_empty(), "the suite wrote nothing to Redis?");
    for key in &keys {
        let key = String::from_utf8(key.clone())
            .unwrap_or_else(|_| panic!("a key that is not UTF-8: {key:?}"));
        let inner = key
            .strip_prefix("sess:{")
            .or_else(|| key.strip_prefix("cache:{"))
            .and_then(|rest| rest.strip_suffix('}'))
            .unwrap_or_else(|| panic!("a key of another shape: {key:?}"));
        assert!(
            !inner.is_empty()
                && inner
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "not base64url inside the hash tag: {key:?}"
        );
        let user = B64
            .decode(inner)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_else(|| panic!("{key:?} does not decode to a user id"));
        assert!(
            suite.users.contains(&user),
            "{key:?} is the key of {user:?}, a user the suite never made"
        );
        suite.count("redis key checked: sess:{b64url} / cache:{b64url}");
    }
    for user in &suite.cached {
        let tag = format!("{{{}}}", b64(user.as_bytes()));
        assert!(
            keys.iter()
                .any(|k| k.as_slice() == format!("cache:{tag}").as_bytes()),
            "no cache key for {user:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Oversized bodies and headers
// ---------------------------------------------------------------------------------------------

async fn oversized_bodies(api: &Watch, http: &Client, suite: &mut Suite) {
    let victim = api.session(http, suite, VICTIM).await;
    let before = api
        .call(
            http,
            Method::GET,
            &client_path(VICTIM),
            &[("x-session-token", &victim)],
            None,
        )
        .await;
    let mega = json!({ "blob": "A".repeat(1024 * 1024) });
    let just_over = json!({ "blob": "A".repeat(64 * 1024) });
    let create_bearer = format!("Bearer {}", suite.jwt(VICTIM));
    for (what, path, credential, body) in [
        (
            "1 MB cache body",
            client_path(VICTIM),
            ("x-session-token", victim.as_str()),
            &mega,
        ),
        (
            "64 KiB + 13 B cache body",
            client_path(VICTIM),
            ("x-session-token", victim.as_str()),
            &just_over,
        ),
        (
            "1 MB create body",
            "/api/session/create".to_owned(),
            ("authorization", create_bearer.as_str()),
            &mega,
        ),
    ] {
        let reply = api
            .call(http, Method::POST, &path, &[credential], Some(body.clone()))
            .await;
        reply.error(413, "payload_too_large", what);
        suite.count("oversized body refused (413)");
    }
    let after = api
        .call(
            http,
            Method::GET,
            &client_path(VICTIM),
            &[("x-session-token", &victim)],
            None,
        )
        .await;
    assert_eq!(before.body["data"], after.body["data"]);
}

/// What a case is called, the request line (method, path) and its headers.
type HeaderCase<'a> = (&'a str, (&'a str, &'a str), Vec<(&'a str, &'a str)>);

async fn oversized_headers(api: &Watch, suite: &mut Suite) {
    shared::install_tls_provider();
    let http = Client::builder().timeout(REQUEST).build().unwrap();
    let victim = api.session(&http, suite, VICTIM).await;
    let huge = "A".repeat(100 * 1024);
    let bearer = format!("Bearer {huge}");
    let origin = format!("chrome-extension://{huge}");
    let validate = ("GET", "/api/session/validate");
    let create = ("POST", "/api/session/create");
    let cases: [HeaderCase; 6] = [
        (
            "100 KB X-Session-Token",
            validate,
            vec![("X-Session-Token", &huge)],
        ),
        (
            "100 KB Authorization: Bearer",
            create,
            vec![("Authorization", &bearer)],
        ),
        (
            "100 KB Authorization, no scheme",
            create,
            vec![("Authorization", &huge)],
        ),
        (
            "100 KB Origin beside a valid token",
            validate,
            vec![("X-Session-Token", &victim), ("Origin", &origin)],
        ),
        (
            "100 KB X-Junk beside a valid token",
            validate,
            vec![("X-Session-Token", &victim), ("X-Junk", &huge)],
        ),
        (
            "100 KB User-Agent beside a valid token",
            validate,
            vec![("X-Session-Token", &victim), ("User-Agent", &huge)],
        ),
    ];
    for (what, (method, path), headers) in cases {
        let started = Instant::now();
        let reply = api.raw(method, path.as_bytes(), &headers, b"").await;
        assert!(
            reply.status < 500,
            "{what}: {} {}",
            reply.status,
            reply.body
        );
        if reply.by_function() && reply.status >= 400 {
            let code = reply.body["error"]["code"].as_str().unwrap_or_default();
            let expected = match what {
                "100 KB X-Session-Token" => "invalid_token",
                "100 KB Authorization: Bearer" => "invalid_jwt",
                _ => "missing_credentials",
            };
            assert_eq!(code, expected, "{what}: {}", reply.body);
        }
        if reply.status == 200 {
            assert_eq!(reply.body["user_id"], json!(VICTIM), "{what}");
        }
        suite.count("100 KB header answered (no 5xx, no hang)");
        let by = if reply.by_function() {
            format!(
                "the function: {} {}",
                reply.status,
                reply.body["error"]["code"].as_str().unwrap_or("(ok)")
            )
        } else {
            format!("watch itself: {}", reply.status)
        };
        suite.note(format!(
            "{what}: answered by {by} in {:.1?}",
            started.elapsed()
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// 6. A dump of Redis yields no usable token
// ---------------------------------------------------------------------------------------------

async fn redis_dump_yields_no_token(
    api: &Watch,
    http: &Client,
    redis: &RedisServer,
    suite: &mut Suite,
) {
    // A live session at dump time, besides the revoked ones.
    let live = api.session(http, suite, VICTIM).await;
    let mut dump = String::new();
    let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
    for RedisEntry { key, kind, parts } in redis_entries(&redis.url()).await {
        assert!(kind == "hash" || kind == "string", "{key:?}: a {kind} key");
        let key_text = String::from_utf8_lossy(&key).into_owned();
        if kind == "hash" {
            for pair in parts.chunks(2) {
                fields.push((key_text.clone(), pair[0].clone()));
            }
        }
        dump.push_str(&key_text);
        for part in &parts {
            // Text, hex and both base64 forms: a secret could hide in any.
            let _ = write!(
                dump,
                " {} {} {} {}",
                String::from_utf8_lossy(part),
                hex(part),
                B64.encode(part),
                B64_STD.encode(part)
            );
        }
        dump.push('\n');
        suite.count("redis dump: key read");
    }
    assert!(!fields.is_empty(), "no session hash in the dump");
    let tokens = suite.tokens.clone();
    for token in &tokens {
        let secret = token.split_once('.').unwrap().1;
        let raw_secret = B64.decode(secret).unwrap();
        for needle in [token.clone(), secret.to_owned(), hex(&raw_secret)] {
            assert!(
                !dump.contains(&needle),
                "the Redis dump holds a session token or its secret ({}…)",
                &needle[..8]
            );
        }
        suite.count("redis dump: token and secret absent");
    }
    // Whatever the dump holds, turned into a token, opens nothing.
    for (key, field) in &fields {
        let user_key = key
            .strip_prefix("sess:{")
            .and_then(|k| k.strip_suffix('}'))
            .unwrap();
        for candidate in [
            format!("{user_key}.{}", B64.encode(field)),
            format!("{user_key}.{}", hex(field)),
            B64.encode(field),
        ] {
            let reply = api
                .call(
                    http,
                    Method::GET,
                    "/api/session/validate",
                    &[("x-session-token", &candidate)],
                    None,
                )
                .await;
            reply.error(401, "invalid_token", "a token made from the dump");
            suite.count("redis dump: hash tried as a token, refused");
        }
    }
    // The live session still works: the refusals above are not a dead store.
    let reply = api
        .call(
            http,
            Method::GET,
            "/api/session/validate",
            &[("x-session-token", &live)],
            None,
        )
        .await;
    reply.ok("the live session after the dump");
}

// ---------------------------------------------------------------------------------------------
// 7. The logs hold no credential
// ---------------------------------------------------------------------------------------------

/// Spans of `eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.` in `line` (a JWT's header and payload).
fn jwt_like(line: &str) -> Vec<&str> {
    let b64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let bytes = line.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = line[from..].find("eyJ").map(|i| i + from) {
        let mut i = at + 3;
        let run = |i: &mut usize| {
            let start = *i;
            while *i < bytes.len() && b64url(bytes[*i]) {
                *i += 1;
            }
            *i > start
        };
        // eyJ + at least one more character, a dot, a run, a dot.
        if run(&mut i)
            && bytes.get(i) == Some(&b'.')
            && {
                i += 1;
                run(&mut i)
            }
            && bytes.get(i) == Some(&b'.')
        {
            found.push(&line[at..=i]);
        }
        from = at + 3;
    }
    found
}

fn logs_hold_no_credential(log: &str, suite: &mut Suite) {
    let lines: Vec<&str> = log.lines().collect();
    // The capture works: the functions' own request lines and metrics lines are there.
    assert!(
        log.contains("served") && log.contains("refused") && log.contains("\"_aws\""),
        "the log does not hold the functions' lines:\n{}",
        lines[lines.len().saturating_sub(40)..].join("\n")
    );
    let mut needles: Vec<(&str, String)> = Vec::new();
    for token in &suite.tokens {
        needles.push(("a session token", token.clone()));
        needles.push((
            "a session secret",
            token.split_once('.').unwrap().1.to_owned(),
        ));
    }
    for jwt in &suite.jwts {
        needles.push(("a JWT", jwt.clone()));
        for part in jwt.split('.').skip(1).filter(|p| p.len() > 16) {
            needles.push(("a JWT payload or signature", part.to_owned()));
        }
    }
    let mut hits = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        for (what, needle) in &needles {
            if line.contains(needle.as_str()) {
                hits.push(format!("line {}: {what} ({}…)", n + 1, &needle[..8]));
            }
        }
        for jwt in jwt_like(line) {
            hits.push(format!(
                "line {}: a JWT-shaped string ({}…)",
                n + 1,
                &jwt[..12.min(jwt.len())]
            ));
        }
    }
    let emf = lines.iter().filter(|l| l.contains("\"_aws\"")).count();
    let requests = lines.iter().filter(|l| l.contains(" endpoint=")).count();
    eprintln!(
        "attacks: log: {emf} metrics (EMF) lines, {requests} request lines of the functions, {} \
         other lines (watch, cargo, the Lambda runtime)",
        lines.len() - emf - requests
    );
    if std::env::var_os("ATTACKS_SHOW_LOG").is_some() {
        for line in lines.iter().filter(|l| !l.contains("\"_aws\"")) {
            eprintln!("    | {line}");
        }
    }
    eprintln!(
        "attacks: log scan: {} lines, {} bytes, {} credentials looked for, JWT pattern; {} found",
        lines.len(),
        log.len(),
        needles.len(),
        hits.len()
    );
    *suite.counts.entry("log lines scanned").or_default() += lines.len() as u64;
    *suite.counts.entry("log: credentials found").or_default() += hits.len() as u64;
    assert!(
        hits.is_empty(),
        "the logs hold credentials:\n{}",
        hits.join("\n")
    );
}

#[test]
fn the_jwt_pattern_finds_jwts_only() {
    assert_eq!(
        jwt_like("x eyJhbGc.eyJzdWIi.sig y"),
        vec!["eyJhbGc.eyJzdWIi."]
    );
    assert_eq!(jwt_like("Bearer eyJa.b."), vec!["eyJa.b."]);
    assert!(jwt_like("eyJ.b.c").is_empty());
    assert!(jwt_like("eyJab.").is_empty());
    assert!(jwt_like("eyJab.cd").is_empty());
    assert!(jwt_like("no tokens here").is_empty());
}

// ---------------------------------------------------------------------------------------------
// cargo lambda watch, as in e2e.rs, with a raw HTTP client beside reqwest
// ---------------------------------------------------------------------------------------------

/// What the attack suite adds to the shared harness: a raw HTTP client beside reqwest.
impl Watch {
    /// Starts every other function, so that no test JWT waits out its minute behind a build.
    async fn warm_up(&self, http: &Client) {
        for (method, path) in [
            (Method::POST, "/api/session/create"),
            (Method::POST, "/api/session/refresh"),
            (Method::POST, "/api/session/logout"),
            (Method::POST, "/api/session/logout-all"),
            (Method::GET, "/api/session/stats"),
            (Method::GET, "/api/cache/user/user_warm_up"),
            (Method::POST, "/api/cache/user/user_warm_up"),
        ] {
            let reply = self.call(http, method.clone(), path, &[], None).await;
            assert_eq!(reply.status, 401, "{method} {path}: {}", reply.body);
        }
    }

    /// A new session of `user` through session-create; the token is recorded for the scans.
    async fn session(&self, http: &Client, suite: &mut Suite, user: &str) -> String {
        let bearer = format!("Bearer {}", suite.jwt(user));
        let reply = self
            .call(
                http,
                Method::POST,
                "/api/session/create",
                &[("authorization", &bearer)],
                None,
            )
            .await;
        let token = reply.ok(&format!("create a session of {user:?}"))["session_token"]
            .as_str()
            .expect("a session token")
            .to_owned();
        suite.tokens.push(token.clone());
        suite.users.insert(user.to_owned());
        token
    }

    /// One request through reqwest. Never a 5xx.
    async fn call(
        &self,
        http: &Client,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
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
        let status = response.status().as_u16();
        let text = response.text().await.expect("response body");
        let reply = Reply {
            status,
            body: body_value(text.as_bytes()),
        };
        assert!(
            status < 500,
            "{method} {path} -> {status}: {}\n{}",
            reply.body,
            self.log_tail()
        );
        reply
    }

    /// One request written byte for byte (no client-side normalisation of the target), over a
    /// fresh connection that the server closes after answering.
    async fn raw(
        &self,
        method: &str,
        target: &[u8],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let mut request = Vec::new();
        request.extend_from_slice(method.as_bytes());
        request.push(b' ');
        request.extend_from_slice(target);
        request.extend_from_slice(b" HTTP/1.1\r\n");
        let _ = write!(
            Lossless(&mut request),
            "Host: 127.0.0.1:{}\r\nConnection: close\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (name, value) in headers {
            let _ = write!(Lossless(&mut request), "{name}: {value}\r\n");
        }
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(body);
        let what = String::from_utf8_lossy(&target[..target.len().min(60)]).into_owned();
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
            stream.write_all(&request).await?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        let answer = tokio::time::timeout(REQUEST, exchange)
            .await
            .unwrap_or_else(|_| panic!("{method} {what}: no answer within {REQUEST:?}"))
            .unwrap_or_else(|e| panic!("{method} {what}: {e}\n{}", self.log_tail()));
        parse_response(&answer)
            .unwrap_or_else(|| panic!("{method} {what}: not an HTTP answer: {answer:?}"))
    }
}

/// `fmt::Write` into a byte buffer.
struct Lossless<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Lossless<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn body_value(bytes: &[u8]) -> Value {
    let text = String::from_utf8_lossy(bytes);
    match text.trim() {
        "" => Value::Null,
        t => serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_owned())),
    }
}

/// Status, headers and body (de-chunked) of a whole HTTP/1.1 answer.
fn parse_response(answer: &[u8]) -> Option<Reply> {
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = answer[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        let mut plain = Vec::new();
        let mut rest = &body[..];
        loop {
            let end = rest.windows(2).position(|w| w == b"\r\n")?;
            let size_text = String::from_utf8_lossy(&rest[..end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            rest = &rest[end + 2..];
            if size == 0 {
                break;
            }
            plain.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
        body = plain;
    }
    Some(Reply {
        status,
        body: body_value(&body),
    })
}
