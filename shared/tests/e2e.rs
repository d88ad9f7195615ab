//! End to end over real HTTP: `cargo lambda watch` serving the eight functions through the router
//! of the workspace `Cargo.toml` (the extension's own paths), over a real `redis-server`, driven
//! with `reqwest` the way the extension calls the API (README walkthrough).
//!
//! Needs cargo-lambda: `$CARGO_LAMBDA`, else `.venv/bin/cargo-lambda` (`make venv`), else
//! `cargo-lambda` on PATH. Missing, the test fails; it never skips.

mod support;

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use support::keys::{TestKeys, claims};
use support::servers::{RedisServer, free_port};

/// watch builds a function on its first request; on a busy 2-core machine that can take minutes.
const FIRST_ANSWER: Duration = Duration::from_secs(15 * 60);
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
    let mut api = tokio::task::spawn_blocking({
        let url = redis.url();
        let public_pem = keys.public_pem.clone();
        move || Watch::start(&url, &public_pem)
    })
    .await
    .expect("start cargo lambda watch");
    let http = Client::builder()
        .timeout(REQUEST)
        .build()
        .expect("reqwest client");
    api.first_answer(&http).await;
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

/// `cargo lambda watch` on a free port, in its own process group; stopped on drop.
struct Watch {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Watch {
    fn start(redis_url: &str, public_pem: &str) -> Self {
        let root = workspace_root();
        let target_dir = target_dir();
        let cargo_lambda = cargo_lambda(&root);
        let path = env_path(&root);

        // One cargo build for all eight functions, instead of one per first request.
        let started = Instant::now();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let build = cargo_env(Command::new(&cargo))
            .args(["build", "--workspace", "--bins"])
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", &target_dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
        assert!(
            build.status.success(),
            "cargo build --workspace --bins failed:\n{}",
            String::from_utf8_lossy(&build.stderr)
        );
        eprintln!(
            "e2e: cargo build --workspace --bins took {:.1?}",
            started.elapsed()
        );

        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("e2e-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let log = dir.join("watch.log");
        let out = File::create(&log).expect("create watch.log");
        let port = free_port();
        let env: HashMap<&str, String> = HashMap::from([
            ("SESSION_STORE", "redis".into()),
            ("REDIS_URL", redis_url.into()),
            ("REDIS_CLUSTER", String::new()),
            // Empty is unset: nothing from the caller's environment leaks in.
            ("SESSION_TABLE", String::new()),
            ("DYNAMODB_ENDPOINT", String::new()),
            ("CLERK_JWT_KEY", public_pem.replace('\n', "\\n")),
            ("CLERK_JWKS_URL", String::new()),
            ("CLERK_ISSUER", String::new()),
            (
                "ALLOWED_ORIGINS",
                format!("{ALLOWED_ORIGIN},http://localhost:*"),
            ),
            ("ADMIN_USER_IDS", ADMIN.into()),
        ]);
        let started = Instant::now();
        let child = cargo_env(Command::new(&cargo_lambda))
            .args(["lambda", "watch", "--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &port.to_string()])
            // The service's own CORS answers; no reload when a file changes mid-test.
            .args(["--disable-cors", "--ignore-changes"])
            .current_dir(&root)
            .env("PATH", path)
            .env("CARGO_TARGET_DIR", &target_dir)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup log"))
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", cargo_lambda.display()));
        let mut watch = Watch { child, port, log };

        // Listening comes at once; the first answer (first_answer) waits for a function.
        watch.wait_for(|| TcpStream::connect(("127.0.0.1", port)).is_ok(), "listen");
        eprintln!(
            "e2e: cargo lambda watch listening after {:.1?}",
            started.elapsed()
        );
        watch
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn wait_for(&mut self, mut ready: impl FnMut() -> bool, what: &str) {
        let deadline = Instant::now() + FIRST_ANSWER;
        while !ready() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "cargo lambda watch exited ({status}) before it could {what}\n{}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "cargo lambda watch did not {what} within {FIRST_ANSWER:?}\n{}",
                self.log_tail()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the first answer of a function: watch starts it on that first request.
    async fn first_answer(&mut self, http: &Client) {
        let started = Instant::now();
        let url = self.url("/api/session/validate");
        let response = loop {
            match http.get(&url).timeout(FIRST_ANSWER).send().await {
                Ok(response) => break response,
                Err(e) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        panic!("cargo lambda watch exited ({status})\n{}", self.log_tail());
                    }
                    assert!(
                        started.elapsed() < FIRST_ANSWER,
                        "no answer from {url} within {FIRST_ANSWER:?}: {e}\n{}",
                        self.log_tail()
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        eprintln!(
            "e2e: first answer (GET /api/session/validate -> {}) after {:.1?}",
            response.status(),
            started.elapsed()
        );
        let status = response.status();
        let body: Value = response.json().await.expect("JSON body");
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{body}\n{}",
            self.log_tail()
        );
        assert_eq!(body["valid"], false, "{body}");
        assert_eq!(body["error"]["code"], "missing_credentials", "{body}");
    }

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
            (Method::GET, "/api/cache/user/user_warm_up"),
            (Method::POST, "/api/cache/user/user_warm_up"),
        ] {
            let (status, _, body) = self.call(http, method.clone(), path, &[], None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
            assert_eq!(body["success"], false, "{method} {path}: {body}");
        }
        eprintln!(
            "e2e: the seven other functions answered after {:.1?} more",
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

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- last lines of {}:\n{}",
            self.log.display(),
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // The function processes run in process groups of their own: find them before watch
        // goes, while they are still its descendants.
        let descendants = descendants_of(pid);
        // SIGINT first: watch stops its function instances itself.
        // SAFETY: kill(2) on our own child, which is not reaped yet.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            thread::sleep(Duration::from_millis(50));
        }
        // Whatever is left: the whole group of watch, then each descendant.
        // SAFETY: the group is the one `process_group(0)` made for this child; the pids were its
        // descendants a moment ago.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            for child in descendants {
                if libc::kill(child, 0) == 0 {
                    libc::kill(child, libc::SIGKILL);
                }
            }
        }
        let _ = self.child.wait();
        if !thread::panicking()
            && let Some(dir) = self.log.parent()
        {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// Every process under `root`, from /proc.
fn descendants_of(root: libc::pid_t) -> Vec<libc::pid_t> {
    let mut parents: HashMap<libc::pid_t, Vec<libc::pid_t>> = HashMap::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok());
        if let Some(ppid) = ppid {
            parents.entry(ppid).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        for &child in parents.get(&pid).into_iter().flatten() {
            if seen.insert(child) {
                found.push(child);
                queue.push(child);
            }
        }
    }
    found
}

/// `cmd` without the variables cargo sets for a test process (`CARGO_PKG_NAME`,
/// `CARGO_MANIFEST_DIR`, `OUT_DIR`, …). Build scripts such as ring's name some of them in
/// `rerun-if-env-changed`, so a nested cargo that saw them would rebuild half the dependency
/// tree, and every other cargo sharing the target directory would rebuild it back.
fn cargo_env(mut cmd: Command) -> Command {
    const SET_BY_CARGO: [&str; 8] = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_BIN_",
        "CARGO_CRATE_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|n| SET_BY_CARGO.iter().any(|p| n.starts_with(p)))
        {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("shared/ is inside the workspace")
        .to_path_buf()
}

/// The target directory this test was built in (`CARGO_TARGET_DIR`, `--target-dir` or the
/// default): watch builds the functions there too, so nothing is compiled twice.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is <target-dir>/tmp")
        .to_path_buf()
}

fn cargo_lambda(root: &Path) -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_LAMBDA").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "CARGO_LAMBDA={} is not a file",
            path.display()
        );
        return path;
    }
    let venv = root.join(".venv/bin/cargo-lambda");
    if venv.is_file() {
        return venv;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("cargo-lambda"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "cargo-lambda not found (looked at $CARGO_LAMBDA, {}, PATH): run `make venv` \
                 (or `make test`), which installs it into .venv",
                venv.display()
            )
        })
}

/// PATH with the venv first: cargo-lambda finds zig as the venv's `python3 -m ziglang`.
fn env_path(root: &Path) -> std::ffi::OsString {
    let venv_bin = root.join(".venv/bin");
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(venv_bin).chain(std::env::split_paths(&rest)))
        .expect("PATH entries without ':'")
}
