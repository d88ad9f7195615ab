//! What the fuzz targets share (see `fuzz/README.md`): one setup per process (the handlers' log
//! and metrics lines into a sink, upstream panics told apart), a state over the memory store
//! with live credentials, RSA keys made at start-up, and the HTTP contract as the README states
//! it.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lambda_http::tracing::subscriber::fmt::MakeWriter;
use serde_json::{Value, json};
use shared::session::{Session, now_unix};
use shared::store::MemoryStore;
use shared::{Config, SessionToken, State, Store};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Once, OnceLock};

pub const USER: &str = "user_fuzz";
pub const OTHER_USER: &str = "user_fuzz_other";
/// In `ADMIN_USER_IDS`: sees the global figures of session-stats.
pub const ADMIN: &str = "user_fuzz_admin";
pub const ISSUER: &str = "https://clerk.fuzz.example";
/// The origin the events of `events/` send; allowed, so that answers carry CORS headers.
pub const ORIGIN: &str = "chrome-extension://abcdefghijklmnopabcdefghijklmnop";
pub const ALLOWED_ORIGINS: &str =
    "chrome-extension://abcdefghijklmnopabcdefghijklmnop,http://localhost:*";
/// `CACHE_MAX_BYTES` of the fuzz state: small, so that inputs of libFuzzer's usual sizes
/// reach the 413 as well as the 200.
pub const CACHE_MAX_BYTES: usize = 2048;

// ---------------------------------------------------------------------------------------------
// Setup: sinks and the panic hook
// ---------------------------------------------------------------------------------------------

thread_local! {
    /// This thread's log lines since the last `take_log`.
    static LOG: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Set while a target expects `lambda_http` to panic (see `upstream_panics`).
    static EXPECTING_UPSTREAM: Cell<bool> = const { Cell::new(false) };
    static UPSTREAM_PANICKED: Cell<bool> = const { Cell::new(false) };
}

/// Where the handlers' log lines go: a buffer of this thread, read by `take_log`.
pub struct LogSink;

/// The most the sink holds: a target that never takes the log does not grow without bound.
const LOG_CAP: usize = 1 << 20;

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.with(|log| {
            let mut log = log.borrow_mut();
            if log.len() + buf.len() > LOG_CAP {
                log.clear();
            }
            log.extend_from_slice(buf);
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = LogSink;

    fn make_writer(&'a self) -> LogSink {
        LogSink
    }
}

/// The log lines written since the last call.
pub fn take_log() -> String {
    LOG.with(|log| String::from_utf8_lossy(&std::mem::take(&mut *log.borrow_mut())).into_owned())
}

/// Once per process, from a target's `init`: the functions' own log subscriber (JSON, as
/// deployed) writing into [`LogSink`]; stdout, where every invocation prints its metrics (EMF)
/// line, to `/dev/null` (libFuzzer reports on stderr); a panic hook that lets
/// [`upstream_panics`] catch `lambda_http`'s panics and sends every other panic to libFuzzer's
/// hook, which aborts: a crash.
pub fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: set before any thread of ours starts; the functions read them the same way.
        unsafe {
            std::env::set_var("AWS_LAMBDA_LOG_FORMAT", "JSON");
            std::env::set_var("AWS_LAMBDA_LOG_LEVEL", "INFO");
        }
        lambda_http::tracing::init_default_subscriber_with_writer(LogSink);
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            use std::os::fd::AsRawFd;
            // SAFETY: dup2 on two open descriptors; stdout stays open, pointing elsewhere.
            unsafe { libc::dup2(null.as_raw_fd(), libc::STDOUT_FILENO) };
        }
        let libfuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let upstream = info.location().is_some_and(|l| {
                l.file().contains("/lambda_http-") || l.file().contains("/aws_lambda_events-")
            });
            if upstream && EXPECTING_UPSTREAM.get() {
                UPSTREAM_PANICKED.set(true);
                return;
            }
            libfuzzer_hook(info);
        }));
    });
}

/// Whether `f` panics inside `lambda_http` (or the event types it uses). A panic anywhere else
/// is still a crash.
pub fn upstream_panics(f: impl FnOnce()) -> bool {
    EXPECTING_UPSTREAM.set(true);
    UPSTREAM_PANICKED.set(false);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    EXPECTING_UPSTREAM.set(false);
    result.is_err() && UPSTREAM_PANICKED.get()
}

// ---------------------------------------------------------------------------------------------
// Keys and JWTs
// ---------------------------------------------------------------------------------------------

/// An RSA key pair, made by `openssl` at start-up (a second or so, once per process).
pub struct KeyPair {
    pub public_pem: String,
    pub encoding: EncodingKey,
}

impl KeyPair {
    fn generate() -> Self {
        let private_pem = openssl(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            None,
        );
        let public_pem = openssl(&["pkey", "-pubout"], Some(&private_pem));
        KeyPair {
            encoding: EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("an RSA key"),
            public_pem,
        }
    }

    /// The key the fuzz states trust.
    pub fn trusted() -> &'static KeyPair {
        static KEYS: OnceLock<KeyPair> = OnceLock::new();
        KEYS.get_or_init(KeyPair::generate)
    }

    /// A key pair nobody trusts.
    pub fn other() -> &'static KeyPair {
        static KEYS: OnceLock<KeyPair> = OnceLock::new();
        KEYS.get_or_init(KeyPair::generate)
    }

    pub fn sign(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).expect("sign")
    }
}

fn openssl(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl is installed (make fuzz installs it)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?} failed");
    String::from_utf8(out.stdout).expect("PEM is text")
}

/// A Clerk-like session JWT for `sub`, valid for 30 days: long runs keep it valid.
pub fn jwt(sub: &str) -> String {
    let now = now_unix();
    let claims = json!({
        "sub": sub, "iss": ISSUER, "azp": ORIGIN, "sid": "sess_fuzz",
        "iat": now, "nbf": now - 5, "exp": now + 30 * 86_400,
    });
    KeyPair::trusted().sign(&Header::new(Algorithm::RS256), &claims)
}

/// The configuration of every fuzz state, with `extra` on top.
pub fn config(extra: &[(&str, &str)]) -> Config {
    let cache_max = CACHE_MAX_BYTES.to_string();
    let mut vars: HashMap<String, String> = [
        ("CLERK_JWT_KEY", KeyPair::trusted().public_pem.as_str()),
        ("CLERK_ISSUER", ISSUER),
        ("ALLOWED_ORIGINS", ALLOWED_ORIGINS),
        ("ADMIN_USER_IDS", ADMIN),
        ("CACHE_MAX_BYTES", cache_max.as_str()),
        // Sessions outlive the longest run.
        ("SESSION_TIMEOUT", "2592000"),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    vars.retain(|_, v| !v.is_empty());
    Config::from_map(&vars).expect("a valid fuzz configuration")
}

// ---------------------------------------------------------------------------------------------
// The state the handler targets run over
// ---------------------------------------------------------------------------------------------

/// A state over the memory store, a runtime, and live credentials.
pub struct Rig {
    pub state: State,
    rt: tokio::runtime::Runtime,
    pub jwt: String,
    pub other_jwt: String,
    pub admin_jwt: String,
    /// A session of `USER` that lasts the run: no RSA verification per use.
    pub session_token: String,
}

impl Rig {
    /// The one rig of this process.
    pub fn get() -> &'static Rig {
        static RIG: OnceLock<Rig> = OnceLock::new();
        RIG.get_or_init(|| {
            let mut rig = Rig {
                state: State::with_store(config(&[]), Store::Memory(MemoryStore::new()))
                    .expect("a state"),
                rt: tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime"),
                jwt: jwt(USER),
                other_jwt: jwt(OTHER_USER),
                admin_jwt: jwt(ADMIN),
                session_token: String::new(),
            };
            rig.session_token = rig.session(USER);
            rig
        })
    }

    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }

    /// A fresh live session of `user`, put straight into the store.
    pub fn session(&self, user: &str) -> String {
        let token = SessionToken::mint(user);
        let session = Session::new(user, false, None, self.state.lifetimes(), now_unix());
        self.block_on(self.state.store.create(&token, &session))
            .expect("the memory store stores");
        token.expose().to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// The HTTP contract (README.md, "API")
// ---------------------------------------------------------------------------------------------

/// Every error code and its status.
pub const ERROR_CODES: [(&str, u16); 12] = [
    ("invalid_json", 400),
    ("invalid_request", 400),
    ("missing_credentials", 401),
    ("invalid_token", 401),
    ("invalid_jwt", 401),
    ("forbidden", 403),
    ("origin_not_allowed", 403),
    ("cache_miss", 404),
    ("method_not_allowed", 405),
    ("payload_too_large", 413),
    ("store_unavailable", 503),
    ("auth_unavailable", 503),
];

/// Checks one answer body against the contract: `None` if it holds, else what is wrong.
/// 204 (a preflight) has no body; every other answer is a JSON object whose `success` says
/// whether the status is 200, and an error carries a documented `error.code` of that status
/// and a message.
pub fn contract_violation(status: u16, body: &[u8]) -> Option<String> {
    if status == 204 {
        return (!body.is_empty()).then(|| "a 204 with a body".to_owned());
    }
    let Ok(Value::Object(answer)) = parse_deep(body) else {
        return Some(format!("{status}: the body is not a JSON object"));
    };
    if answer.get("success") != Some(&Value::Bool(status == 200)) {
        return Some(format!("{status}: success is {:?}", answer.get("success")));
    }
    if status == 200 {
        return None;
    }
    let code = answer
        .get("error")
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str);
    let message = answer
        .get("error")
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str);
    match (code, message) {
        (Some(code), Some(message)) if !message.is_empty() => {
            match ERROR_CODES.iter().find(|(c, _)| *c == code) {
                Some((_, want)) if *want == status => None,
                Some((_, want)) => Some(format!("{code} answered {status}, documented {want}")),
                None => Some(format!("{status}: undocumented code {code}")),
            }
        }
        _ => Some(format!("{status}: no error code and message")),
    }
}

/// JSON of any depth: a cache-get answer wraps the cached data, which may be as deep as
/// serde_json's limit allows, one level deeper.
pub fn parse_deep(bytes: &[u8]) -> serde_json::Result<Value> {
    use serde::Deserialize;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    deserializer.disable_recursion_limit();
    let value = Value::deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}
