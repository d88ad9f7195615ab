//! openapi.yaml against the handlers: the document lists exactly the routes of the code, every
//! error code the code can produce, and every answer the handlers give fits it.
//!
//! The answers come from `shared::handle`, in process, the way each Lambda binary calls it, over a
//! real `redis-server`: every endpoint of `Endpoint::ALL`, successes and each refusal, its CORS
//! preflight (sent where the watch router sends it), a wrong method, a store that died and Clerk
//! keys that cannot be fetched. Each answer is held to the document's response for its path,
//! method and status: the status must be documented, the body must validate against the JSON
//! Schema (formats checked), every required header must be there and every header sent must be
//! declared. Then every status and error code the document promises for an operation must have
//! been seen: nothing in it is left untried. `make test-api` runs schemathesis with the same
//! document against the local API over HTTP.

mod support;

use lambda_http::http::{self, HeaderMap, Method, StatusCode, header};
use lambda_http::{Body, Request};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use shared::{Config, Endpoint, State, Store, handle};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use support::keys::{TestKeys, claims};
use support::servers::{RedisServer, free_port};
use support::stores;

const DOCUMENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml");
const SOURCES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
const ORIGIN: &str = "chrome-extension://testext";
const ALLOWED_ORIGINS: &str = "chrome-extension://testext,http://localhost:*";
const ADMIN: &str = "user_admin";
const USER: &str = "user_doc";
const OTHER: &str = "user_doc_other";
/// Where the document's own description puts the answer to a method a function does not serve.
const WRONG_METHOD: &str = "#/components/responses/MethodNotAllowed";

// ---------------------------------------------------------------------------------------------
// The document
// ---------------------------------------------------------------------------------------------

struct Document {
    root: Value,
}

impl Document {
    fn load() -> Document {
        let text = std::fs::read_to_string(DOCUMENT).expect("read openapi.yaml");
        let root: Value = serde_saphyr::from_str(&text).expect("openapi.yaml is YAML");
        assert_eq!(root["openapi"], json!("3.1.0"), "an OpenAPI 3.1 document");
        Document { root }
    }

    /// `(METHOD, path)` of every operation.
    fn operations(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in self.root["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                if method != "parameters" {
                    out.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    fn operation(&self, method: &Method, path: &str) -> &Value {
        let operation = &self.root["paths"][path][method.as_str().to_lowercase()];
        assert!(operation.is_object(), "openapi.yaml has no {method} {path}");
        operation
    }

    /// A `$ref` inside the document, followed (a JSON pointer after `#`).
    fn follow<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference.strip_prefix('#').expect("a local reference");
                self.follow(
                    self.root
                        .pointer(pointer)
                        .unwrap_or_else(|| panic!("openapi.yaml: {reference} does not resolve")),
                )
            }
            None => value,
        }
    }

    /// Every response of an operation, by status.
    fn responses(&self, method: &Method, path: &str) -> BTreeMap<u16, &Value> {
        self.operation(method, path)["responses"]
            .as_object()
            .expect("responses")
            .iter()
            .map(|(status, response)| {
                let status = status
                    .parse()
                    .unwrap_or_else(|_| panic!("{method} {path}: response {status:?}"));
                (status, self.follow(response))
            })
            .collect()
    }

    /// A validator for `schema`, its references resolved against this document.
    fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.root["components"],
            "allOf": [schema],
        });
        jsonschema::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("openapi.yaml: a schema that does not compile: {e}"))
    }

    /// The error codes of `ErrorCode`, the document's list of every code.
    fn error_codes(&self) -> BTreeSet<String> {
        self.root["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .expect("components.schemas.ErrorCode.enum")
            .iter()
            .map(|c| c.as_str().expect("a code").to_owned())
            .collect()
    }

    /// What a response promises: `ok` for a success, else each error code its schema accepts.
    fn promised(&self, status: u16, response: &Value) -> BTreeSet<String> {
        if (200..300).contains(&status) {
            return BTreeSet::from(["ok".to_owned()]);
        }
        let schema = &response["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "a {status} without a JSON body");
        let validator = self.validator(schema);
        self.error_codes()
            .into_iter()
            .filter(|code| {
                let error = json!({"code": code, "message": "m"});
                validator.is_valid(&json!({"success": false, "error": error}))
                    || validator
                        .is_valid(&json!({"success": false, "error": error, "valid": false}))
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The routes of Cargo.toml's watch router (as API Gateway has them, shared/tests/template.rs)
// ---------------------------------------------------------------------------------------------

/// `(METHOD, path) -> function` of `[workspace.metadata.lambda.watch.router]`.
fn router() -> BTreeMap<(String, String), String> {
    let manifest = std::fs::read_to_string(MANIFEST).expect("read Cargo.toml");
    let table = manifest
        .split("\n[workspace.metadata.lambda.watch.router]\n")
        .nth(1)
        .expect("a [workspace.metadata.lambda.watch.router] table in Cargo.toml");
    let mut routes = BTreeMap::new();
    let mut path = None;
    for line in table.lines().map(str::trim) {
        if line.starts_with('[') {
            break;
        }
        if line.is_empty() || line.starts_with('#') || line == "]" {
            continue;
        }
        if let Some(key) = line.strip_suffix("= [") {
            path = Some(key.trim().trim_matches('"').to_owned());
            continue;
        }
        let field = |name: &str| {
            let start = line
                .find(&format!("{name} = \""))
                .unwrap_or_else(|| panic!("Cargo.toml router: no {name} in {line:?}"));
            line[start + name.len() + 4..]
                .split('"')
                .next()
                .unwrap()
                .to_owned()
        };
        let path = path.clone().expect("a path before its routes");
        routes.insert((field("method"), path), field("function"));
    }
    routes
}

/// The endpoint a route reaches.
fn routed(method: &str, path: &str) -> Endpoint {
    let function = router()
        .remove(&(method.to_owned(), path.to_owned()))
        .unwrap_or_else(|| panic!("no {method} {path} in Cargo.toml's router"));
    Endpoint::from_function(&function).unwrap_or_else(|| panic!("{function}: no endpoint"))
}

// ---------------------------------------------------------------------------------------------
// The routes and the codes
// ---------------------------------------------------------------------------------------------

/// The document's operations are exactly the endpoints of the code, each at its path and
/// method, plus one preflight per path; and the router routes exactly those.
#[test]
fn the_document_has_every_route_and_no_other() {
    let document = Document::load();
    let operations = document.operations();
    let mut expected: BTreeSet<(String, String)> = Endpoint::ALL
        .iter()
        .map(|e| (e.method().to_string(), e.path().to_owned()))
        .collect();
    let paths: BTreeSet<&str> = Endpoint::ALL.iter().map(|e| e.path()).collect();
    expected.extend(
        paths
            .iter()
            .map(|p| ("OPTIONS".to_owned(), (*p).to_owned())),
    );
    assert_eq!(
        operations, expected,
        "openapi.yaml's operations (left) against Endpoint::ALL and a preflight per path (right)"
    );
    let routed: BTreeSet<(String, String)> = router().into_keys().collect();
    assert_eq!(
        operations, routed,
        "openapi.yaml against Cargo.toml's router"
    );
    // Every operation has an id (links name them), and no two the same.
    let mut ids = BTreeSet::new();
    for (method, path) in &operations {
        let method: Method = method.parse().unwrap();
        let id = document.operation(&method, path)["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
        assert!(ids.insert(id.to_owned()), "operationId {id} twice");
    }
}

/// `(status, code)` of every `ApiError` the code can build: each `StatusCode::X, "code"` pair of
/// shared/src (the constructors of error.rs and any `ApiError::new` elsewhere).
fn codes_in_the_code() -> BTreeSet<(u16, String)> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read shared/src") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(Path::new(SOURCES), &mut files);
    let mut codes = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a source file");
        for (at, _) in text.match_indices("StatusCode::") {
            let rest = &text[at + "StatusCode::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let Some(after) = rest[name.len()..].trim_start().strip_prefix(',') else {
                continue;
            };
            let Some(literal) = after.trim_start().strip_prefix('"') else {
                continue;
            };
            let code = literal.split('"').next().unwrap_or_default();
            if code.is_empty()
                || !code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
            {
                continue;
            }
            let status = match name.as_str() {
                "BAD_REQUEST" => 400,
                "UNAUTHORIZED" => 401,
                "FORBIDDEN" => 403,
                "NOT_FOUND" => 404,
                "METHOD_NOT_ALLOWED" => 405,
                "CONFLICT" => 409,
                "PAYLOAD_TOO_LARGE" => 413,
                "UNPROCESSABLE_ENTITY" => 422,
                "TOO_MANY_REQUESTS" => 429,
                "INTERNAL_SERVER_ERROR" => 500,
                "SERVICE_UNAVAILABLE" => 503,
                other => panic!("{}: StatusCode::{other}: add it here", file.display()),
            };
            codes.insert((status, code.to_owned()));
        }
    }
    codes
}

/// Every error code the code can produce is in the document, at its status, on some operation;
/// and the document lists no code the code cannot produce.
#[test]
fn every_error_code_of_the_code_is_documented() {
    let document = Document::load();
    let in_code = codes_in_the_code();
    assert!(
        in_code.len() >= 10,
        "the scan of shared/src found too few codes: {in_code:?}"
    );
    let listed = document.error_codes();
    let coded: BTreeSet<String> = in_code.iter().map(|(_, c)| c.clone()).collect();
    assert_eq!(
        listed, coded,
        "components.schemas.ErrorCode (left) against the codes of shared/src (right)"
    );
    let mut documented = BTreeSet::new();
    for (method, path) in document.operations() {
        let method: Method = method.parse().unwrap();
        for (status, response) in document.responses(&method, &path) {
            for code in document.promised(status, response) {
                documented.insert((status, code));
            }
        }
    }
    let wrong_method = document.follow(&json!({ "$ref": WRONG_METHOD })).clone();
    for code in document.promised(405, &wrong_method) {
        documented.insert((405, code));
    }
    let missing: Vec<_> = in_code.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "(status, code) the code produces and no response of openapi.yaml documents: {missing:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Every answer against the document
// ---------------------------------------------------------------------------------------------

/// One answer of a handler.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn code(&self) -> String {
        if self.status.is_success() {
            return "ok".to_owned();
        }
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("<none>")
            .to_owned()
    }
}

/// The states the handlers run over, and what the answers were held to.
struct Bench {
    document: Document,
    /// Over a real redis-server.
    live: State,
    /// Over a redis-server that was killed.
    dead: State,
    /// Clerk keys from a JWKS URL nobody answers.
    keyless: State,
    /// `(METHOD, path, status, code)` of every answer checked.
    seen: BTreeSet<(String, String, u16, String)>,
    /// Endpoints whose wrong-method answer was checked.
    wrong_methods: BTreeSet<String>,
    /// Keeps the live redis-server running.
    _live: stores::Subject,
}

fn config(extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::from([
        (
            "CLERK_JWT_KEY".to_owned(),
            TestKeys::shared().public_pem.clone(),
        ),
        ("ALLOWED_ORIGINS".to_owned(), ALLOWED_ORIGINS.to_owned()),
        ("ADMIN_USER_IDS".to_owned(), ADMIN.to_owned()),
    ]);
    for (name, value) in extra {
        vars.insert((*name).to_owned(), (*value).to_owned());
    }
    Config::from_map(&vars).expect("a valid configuration")
}

fn jwt(sub: &str) -> String {
    TestKeys::shared().sign(&claims(sub), None)
}

/// A request's parts: the builder takes the rest.
struct Call {
    endpoint: Endpoint,
    method: Method,
    user: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    body: Body,
}

impl Call {
    fn to(endpoint: Endpoint) -> Call {
        Call {
            endpoint,
            method: endpoint.method(),
            user: None,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    /// The cache path of `user` (percent-encoded), for the cache endpoints.
    fn of(mut self, user: &str) -> Call {
        self.user = Some(user.to_owned());
        self
    }

    fn method(mut self, method: Method) -> Call {
        self.method = method;
        self
    }

    fn header(self, name: &str, value: &str) -> Call {
        self.raw_header(name, value.as_bytes())
    }

    /// A header of any bytes HTTP allows in one, not only text.
    fn raw_header(mut self, name: &str, value: &[u8]) -> Call {
        self.headers.push((name.to_owned(), value.to_vec()));
        self
    }

    fn token(self, token: &str) -> Call {
        self.header("X-Session-Token", token)
    }

    fn jwt(self, jwt: &str) -> Call {
        self.header("Authorization", &format!("Bearer {jwt}"))
    }

    fn origin(self, origin: &str) -> Call {
        self.header("Origin", origin)
    }

    fn text(mut self, text: &str) -> Call {
        self.body = Body::from(text);
        self
    }

    fn bytes(mut self, bytes: &[u8]) -> Call {
        self.body = Body::Binary(bytes.to_vec());
        self
    }

    fn json(self, value: &Value) -> Call {
        self.text(&value.to_string())
    }

    fn request(self) -> Request {
        let path = match (&self.user, self.endpoint.path()) {
            (Some(user), template) => template.replace(
                "{user_id}",
                &utf8_percent_encode(user, NON_ALPHANUMERIC).to_string(),
            ),
            (None, template) => {
                assert!(!template.contains('{'), "{template}: give the user");
                template.to_owned()
            }
        };
        let mut builder = http::Request::builder().method(self.method).uri(path);
        for (name, value) in &self.headers {
            let value = http::HeaderValue::from_bytes(value).expect("a header value");
            builder = builder.header(name, value);
        }
        builder.body(self.body).expect("a request")
    }
}

impl Bench {
    async fn start() -> Bench {
        let live = stores::redis_standalone().await;
        // A store whose server is killed once it is connected.
        let mut doomed = RedisServer::start();
        let dead_store = stores::connect_redis(&doomed.url()).await;
        doomed.kill();
        Bench {
            document: Document::load(),
            live: State::with_store(config(&[]), live.store.clone()).expect("state"),
            dead: State::with_store(config(&[]), dead_store).expect("state"),
            keyless: State::with_store(
                config(&[
                    ("CLERK_JWT_KEY", ""),
                    (
                        "CLERK_JWKS_URL",
                        &format!("http://127.0.0.1:{}/.well-known/jwks.json", free_port()),
                    ),
                ]),
                Store::Memory(shared::store::MemoryStore::new()),
            )
            .expect("state"),
            seen: BTreeSet::new(),
            wrong_methods: BTreeSet::new(),
            _live: live,
        }
    }

    /// `call` answered over `state`, checked against the document; its answer.
    async fn send(&mut self, state: Which, call: Call) -> Answer {
        let endpoint = call.endpoint;
        let method = call.method.clone();
        let state = match state {
            Which::Live => &self.live,
            Which::Dead => &self.dead,
            Which::Keyless => &self.keyless,
        };
        let response = handle(state, endpoint, call.request()).await;
        let (parts, body) = response.into_parts();
        let body = match body {
            Body::Empty => Vec::new(),
            Body::Text(text) => text.into_bytes(),
            Body::Binary(bytes) => bytes,
            _ => Vec::new(),
        };
        let answer = Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        };
        let path = endpoint.path();
        let label = format!("{method} {path} -> {}", answer.status.as_u16());
        if method == Method::OPTIONS || method == endpoint.method() {
            let responses = self.document.responses(&method, path);
            let response = responses
                .get(&answer.status.as_u16())
                .copied()
                .unwrap_or_else(|| {
                    panic!(
                        "{label}: a status openapi.yaml does not document for {method} {path} \
                         (it has {:?}): {}",
                        responses.keys().collect::<Vec<_>>(),
                        String::from_utf8_lossy(&answer.body)
                    )
                })
                .clone();
            self.conforms(&label, &response, &answer);
            self.seen.insert((
                method.to_string(),
                path.to_owned(),
                answer.status.as_u16(),
                answer.code(),
            ));
        } else {
            assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{label}");
            let response = self
                .document
                .follow(&json!({ "$ref": WRONG_METHOD }))
                .clone();
            self.conforms(&label, &response, &answer);
            assert_eq!(
                answer
                    .headers
                    .get(header::ALLOW)
                    .and_then(|v| v.to_str().ok()),
                Some(endpoint.method().as_str()),
                "{label}: Allow names the endpoint's method"
            );
            self.wrong_methods.insert(endpoint.function().to_owned());
        }
        answer
    }

    /// The answer fits `response`: its headers, its content type, its body's schema.
    fn conforms(&self, label: &str, response: &Value, answer: &Answer) {
        let raw = String::from_utf8_lossy(&answer.body);
        let declared: BTreeMap<String, &Value> = response["headers"]
            .as_object()
            .map(|headers| {
                headers
                    .iter()
                    .map(|(name, h)| (name.to_ascii_lowercase(), self.document.follow(h)))
                    .collect()
            })
            .unwrap_or_default();
        for (name, definition) in &declared {
            match answer.headers.get(name.as_str()) {
                None => assert!(
                    definition["required"] != json!(true),
                    "{label}: no {name} header, which openapi.yaml requires"
                ),
                Some(value) => {
                    let value = json!(value.to_str().expect("a text header"));
                    let validator = self.document.validator(&definition["schema"]);
                    if let Err(e) = validator.validate(&value) {
                        panic!("{label}: header {name}: {value} does not fit openapi.yaml: {e}");
                    }
                }
            }
        }
        for name in answer.headers.keys() {
            assert!(
                name == header::CONTENT_TYPE || declared.contains_key(name.as_str()),
                "{label}: header {name}, which openapi.yaml does not declare"
            );
        }
        let content_type = answer
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        match response["content"].as_object() {
            None => {
                assert!(
                    answer.body.is_empty(),
                    "{label}: a body where none is documented: {raw}"
                );
                assert_eq!(
                    content_type, None,
                    "{label}: a content type without content"
                );
            }
            Some(content) => {
                let content_type =
                    content_type.unwrap_or_else(|| panic!("{label}: no content type"));
                let media = content.get(content_type).unwrap_or_else(|| {
                    panic!("{label}: content type {content_type} not documented")
                });
                let body: Value = serde_json::from_slice(&answer.body)
                    .unwrap_or_else(|e| panic!("{label}: not JSON ({e}): {raw}"));
                let validator = self.document.validator(&media["schema"]);
                let errors: Vec<String> = validator
                    .iter_errors(&body)
                    .map(|e| format!("{} at {}", e, e.instance_path()))
                    .collect();
                assert!(
                    errors.is_empty(),
                    "{label}: the body does not fit openapi.yaml:\n  {}\nbody: {raw}",
                    errors.join("\n  ")
                );
            }
        }
    }

    /// A session of `user` through the create endpoint: its token.
    async fn session(&mut self, user: &str) -> String {
        let answer = self
            .send(
                Which::Live,
                Call::to(Endpoint::SessionCreate)
                    .jwt(&jwt(user))
                    .header(
                        "User-Agent",
                        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
                    )
                    .json(&json!({"remember_me": true})),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        answer.json()["session_token"]
            .as_str()
            .expect("a token")
            .to_owned()
    }
}

#[derive(Clone, Copy)]
enum Which {
    Live,
    Dead,
    Keyless,
}

/// A well-formed session token nobody was given.
fn unknown_token(user: &str) -> String {
    shared::SessionToken::mint(user).expose().to_owned()
}

#[tokio::test]
async fn every_answer_fits_the_document() {
    let mut bench = Bench::start().await;
    let other_key = {
        let key = TestKeys::other();
        key.sign(&claims(USER), None)
    };
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(70_000));

    for endpoint in Endpoint::ALL {
        let path = endpoint.path();
        let call = || Call::to(endpoint).of(USER);
        // The preflight, sent where the router sends it.
        let preflight = routed("OPTIONS", path);
        for origin in [
            Some(ORIGIN),
            Some("http://localhost:5173"),
            Some("https://evil.example"),
            None,
        ] {
            let mut c = Call::to(preflight).of(USER).method(Method::OPTIONS);
            if let Some(origin) = origin {
                c = c
                    .origin(origin)
                    .header("Access-Control-Request-Method", endpoint.method().as_str());
            }
            bench.send(Which::Live, c).await;
        }
        // A method the function does not serve (only a direct invoke can send one).
        for method in [Method::PUT, Method::DELETE, Method::PATCH] {
            bench
                .send(
                    Which::Live,
                    call().method(method).origin(ORIGIN).jwt(&jwt(USER)),
                )
                .await;
        }
        // No credentials, a malformed token, an unknown token, a JWT of another key.
        bench.send(Which::Live, call().origin(ORIGIN)).await;
        bench.send(Which::Live, call().token("not a token")).await;
        bench
            .send(Which::Live, call().token(&unknown_token(USER)))
            .await;
        bench.send(Which::Live, call().jwt(&other_key)).await;
        bench.send(Which::Live, call().jwt("")).await;
        // Latin-1 in the token (cargo lambda watch cannot carry it: tools/schemathesis_hooks.py).
        bench
            .send(
                Which::Live,
                call().raw_header("X-Session-Token", b"abc\xe9"),
            )
            .await;
        // The store gone, with credentials that pass before it is asked.
        bench
            .send(Which::Dead, call().token(&unknown_token(USER)))
            .await;
        bench
            .send(Which::Dead, call().jwt(&jwt(USER)).text("{}"))
            .await;
        // Clerk's keys out of reach.
        bench
            .send(
                Which::Keyless,
                call().jwt(&TestKeys::shared().sign(&claims(USER), Some("k1"))),
            )
            .await;

        // Exhaustive: a new endpoint does not compile here until it has calls of its own.
        match endpoint {
            Endpoint::SessionCreate => {
                bench.session(USER).await;
                for body in ["", "{}", r#"{"remember_me": null, "other": 1}"#] {
                    bench
                        .send(Which::Live, call().jwt(&jwt(USER)).text(body))
                        .await;
                }
                for body in ["{", "[1,", "remember_me=true"] {
                    bench
                        .send(Which::Live, call().jwt(&jwt(USER)).text(body))
                        .await;
                }
                bench
                    .send(Which::Live, call().jwt(&jwt(USER)).bytes(&[0xff, 0xfe]))
                    .await;
                for body in ["[]", "true", r#"{"remember_me": "yes"}"#] {
                    bench
                        .send(Which::Live, call().jwt(&jwt(USER)).text(body))
                        .await;
                }
                bench
                    .send(Which::Live, call().jwt(&jwt(USER)).text(&big))
                    .await;
                // Only a JWT creates: a session token alone is no credential here.
                let token = bench.session(USER).await;
                bench.send(Which::Live, call().token(&token)).await;
            }
            Endpoint::SessionValidate | Endpoint::SessionRefresh => {
                let token = bench.session(USER).await;
                bench
                    .send(Which::Live, call().token(&token).origin(ORIGIN))
                    .await;
                // The JWT is no credential here.
                bench.send(Which::Live, call().jwt(&jwt(USER))).await;
            }
            Endpoint::SessionLogout => {
                let token = bench.session(USER).await;
                bench
                    .send(Which::Live, call().token(&token).origin(ORIGIN))
                    .await;
                bench.send(Which::Live, call().token(&token)).await;
                bench.send(Which::Live, call().jwt(&jwt(USER))).await;
            }
            Endpoint::SessionLogoutAll | Endpoint::SessionList => {
                let token = bench.session(USER).await;
                bench.session(USER).await;
                bench
                    .send(Which::Live, call().token(&token).origin(ORIGIN))
                    .await;
                bench.send(Which::Live, call().jwt(&jwt(USER))).await;
                // A good JWT does not save a bad session token.
                bench
                    .send(
                        Which::Live,
                        call().jwt(&jwt(USER)).token(&unknown_token(USER)),
                    )
                    .await;
            }
            Endpoint::SessionStats => {
                let token = bench.session(USER).await;
                bench.send(Which::Live, call().token(&token)).await;
                bench
                    .send(Which::Live, call().jwt(&jwt("user_doc_nobody")))
                    .await;
                bench.session(ADMIN).await;
                bench.send(Which::Live, call().jwt(&jwt(ADMIN))).await;
            }
            Endpoint::SessionRevoke => {
                let token = bench.session(USER).await;
                let listed = bench
                    .send(Which::Live, Call::to(Endpoint::SessionList).token(&token))
                    .await
                    .json();
                let ids: Vec<(String, bool)> = listed["sessions"]
                    .as_array()
                    .expect("sessions")
                    .iter()
                    .map(|s| {
                        (
                            s["session_id"].as_str().unwrap().to_owned(),
                            s["current"] == json!(true),
                        )
                    })
                    .collect();
                let other = ids
                    .iter()
                    .find(|(_, current)| !current)
                    .expect("another session");
                let own = ids
                    .iter()
                    .find(|(_, current)| *current)
                    .expect("this session");
                let revoke = |id: &str| json!({ "session_id": id });
                bench
                    .send(Which::Live, call().jwt(&jwt(USER)).json(&revoke(&other.0)))
                    .await;
                // Gone: the same id again is not found, as an id of another user's would be.
                bench
                    .send(Which::Live, call().jwt(&jwt(USER)).json(&revoke(&other.0)))
                    .await;
                bench
                    .send(Which::Live, call().jwt(&jwt(OTHER)).json(&revoke(&own.0)))
                    .await;
                bench
                    .send(Which::Live, call().token(&token).json(&revoke(&own.0)))
                    .await;
                for body in ["", "{", "not json"] {
                    bench
                        .send(Which::Live, call().jwt(&jwt(USER)).text(body))
                        .await;
                }
                bench
                    .send(Which::Live, call().jwt(&jwt(USER)).bytes(&[0xc3, 0x28]))
                    .await;
                for body in [
                    json!([]),
                    json!({}),
                    json!({"session_id": null}),
                    json!({"session_id": 7}),
                    json!({"session_id": "short"}),
                    json!({"session_id": "!!!!!!!!!!!!!!!!"}),
                ] {
                    bench
                        .send(Which::Live, call().jwt(&jwt(USER)).json(&body))
                        .await;
                }
                bench
                    .send(Which::Live, call().jwt(&jwt(USER)).text(&big))
                    .await;
            }
            Endpoint::CacheGet | Endpoint::CachePut => {
                let token = bench.session(USER).await;
                let nobody = "user_doc_empty";
                bench
                    .send(Which::Live, Call::to(endpoint).of(nobody).jwt(&jwt(nobody)))
                    .await;
                bench
                    .send(
                        Which::Live,
                        Call::to(Endpoint::CachePut)
                            .of(USER)
                            .token(&token)
                            .json(&json!({"theme": "dark", "big": 123456789012345678901234567890_u128.to_string()})),
                    )
                    .await;
                bench
                    .send(
                        Which::Live,
                        call().token(&token).json(&json!([1, 2.5, "x"])),
                    )
                    .await;
                bench
                    .send(
                        Which::Live,
                        call().jwt(&jwt(USER)).text("12345678901234567890123"),
                    )
                    .await;
                // Another user's cache; a user id that is not one.
                bench
                    .send(Which::Live, call().jwt(&jwt(OTHER)).text("{}"))
                    .await;
                for bad in ["a/b", &"x".repeat(600)] {
                    bench
                        .send(
                            Which::Live,
                            Call::to(endpoint).of(bad).jwt(&jwt(USER)).text("{}"),
                        )
                        .await;
                }
                if endpoint == Endpoint::CachePut {
                    for body in ["", "  ", "{", "{\"a\": }"] {
                        bench
                            .send(Which::Live, call().jwt(&jwt(USER)).text(body))
                            .await;
                    }
                    bench
                        .send(Which::Live, call().jwt(&jwt(USER)).bytes(&[0xff]))
                        .await;
                    bench
                        .send(Which::Live, call().jwt(&jwt(USER)).text(&big))
                        .await;
                }
            }
        }
    }

    // Nothing the document promises was left untried.
    let mut untried = Vec::new();
    for (method, path) in bench.document.operations() {
        let parsed: Method = method.parse().unwrap();
        for (status, response) in bench.document.responses(&parsed, &path) {
            for code in bench.document.promised(status, response) {
                let key = (method.clone(), path.clone(), status, code.clone());
                if !bench.seen.contains(&key) {
                    untried.push(format!("{method} {path} {status} {code}"));
                }
            }
        }
    }
    assert!(
        untried.is_empty(),
        "openapi.yaml promises answers no call here produced:\n  {}",
        untried.join("\n  ")
    );
    let functions: BTreeSet<String> = Endpoint::ALL
        .iter()
        .map(|e| e.function().to_owned())
        .collect();
    assert_eq!(
        bench.wrong_methods, functions,
        "each endpoint's wrong-method answer"
    );
}
