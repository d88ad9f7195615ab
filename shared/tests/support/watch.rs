//! `cargo lambda watch` serving the eight functions on a free port, as `make run` does, for the
//! tests that go over real HTTP. Stopped, with every function process, on drop.

use super::servers::free_port;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Bounds a first build of the functions on a busy two-core machine.
pub const FIRST_ANSWER: Duration = Duration::from_secs(15 * 60);

pub struct Watch {
    pub child: Child,
    pub port: u16,
    /// Everything watch and the functions print, stdout and stderr.
    pub log: PathBuf,
    stopped: bool,
}

/// What the functions are configured with beyond the test redis and key.
pub struct WatchEnv<'a> {
    pub allowed_origins: &'a str,
    pub admin_user_ids: &'a str,
    /// `(endpoint, table)` of a local DynamoDB server: Redis in front of it, as deployed with
    /// both stores. `None`: Redis alone.
    pub dynamodb: Option<(&'a str, &'a str)>,
}

impl Watch {
    /// Builds the eight functions once, then starts watch over `redis_url`, trusting only
    /// `public_pem`. `tag` names the log folder and the progress lines.
    pub fn start(tag: &str, redis_url: &str, public_pem: &str, settings: WatchEnv<'_>) -> Self {
        let root = workspace_root();
        let target_dir = target_dir();
        let cargo_lambda = cargo_lambda(&root);

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
            "{tag}: cargo build --workspace --bins took {:.1?}",
            started.elapsed()
        );

        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{tag}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let log = dir.join("watch.log");
        let out = File::create(&log).expect("create watch.log");
        let port = free_port();
        let mut env: HashMap<&str, String> = HashMap::from([
            ("SESSION_STORE", "redis".into()),
            ("REDIS_URL", redis_url.into()),
            ("REDIS_CLUSTER", String::new()),
            // Empty is unset: nothing from the caller's environment leaks in.
            ("SESSION_TABLE", String::new()),
            ("DYNAMODB_ENDPOINT", String::new()),
            ("CLERK_JWT_KEY", public_pem.replace('\n', "\\n")),
            ("CLERK_JWKS_URL", String::new()),
            ("CLERK_ISSUER", String::new()),
            ("ALLOWED_ORIGINS", settings.allowed_origins.into()),
            ("ADMIN_USER_IDS", settings.admin_user_ids.into()),
        ]);
        if let Some((endpoint, table)) = settings.dynamodb {
            env.extend([
                ("SESSION_STORE", "auto".into()),
                ("SESSION_TABLE", table.into()),
                ("DYNAMODB_ENDPOINT", endpoint.into()),
                ("AWS_ACCESS_KEY_ID", "test".into()),
                ("AWS_SECRET_ACCESS_KEY", "test".into()),
                ("AWS_SESSION_TOKEN", String::new()),
                ("AWS_REGION", "us-east-1".into()),
                ("AWS_PROFILE", String::new()),
            ]);
        }
        let started = Instant::now();
        let child = cargo_env(Command::new(&cargo_lambda))
            .args(["lambda", "watch", "--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &port.to_string()])
            // The service's own CORS answers; no reload when a file changes mid-test.
            .args(["--disable-cors", "--ignore-changes"])
            .current_dir(&root)
            .env("PATH", env_path(&root))
            .env("CARGO_TARGET_DIR", &target_dir)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup log"))
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", cargo_lambda.display()));
        let mut watch = Watch {
            child,
            port,
            log,
            stopped: false,
        };
        // Listening comes at once; the first answer waits for a function.
        watch.wait_for(|| TcpStream::connect(("127.0.0.1", port)).is_ok(), "listen");
        eprintln!(
            "{tag}: cargo lambda watch listening after {:.1?}",
            started.elapsed()
        );
        watch
    }

    /// `start`, off the async runtime's threads (it builds and waits).
    pub async fn launch(
        tag: &'static str,
        redis_url: &str,
        public_pem: &str,
        settings: WatchEnv<'_>,
    ) -> Self {
        let (url, pem) = (redis_url.to_owned(), public_pem.to_owned());
        let origins = settings.allowed_origins.to_owned();
        let admins = settings.admin_user_ids.to_owned();
        let dynamodb = settings
            .dynamodb
            .map(|(endpoint, table)| (endpoint.to_owned(), table.to_owned()));
        tokio::task::spawn_blocking(move || {
            let settings = WatchEnv {
                allowed_origins: &origins,
                admin_user_ids: &admins,
                dynamodb: dynamodb.as_ref().map(|(e, t)| (e.as_str(), t.as_str())),
            };
            Watch::start(tag, &url, &pem, settings)
        })
        .await
        .expect("start cargo lambda watch")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn wait_for(&mut self, mut ready: impl FnMut() -> bool, what: &str) {
        let deadline = Instant::now() + FIRST_ANSWER;
        while !ready() {
            self.assert_running(what);
            assert!(
                Instant::now() < deadline,
                "cargo lambda watch did not {what} within {FIRST_ANSWER:?}\n{}",
                self.log_tail()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Panics with the log when watch has exited.
    pub fn assert_running(&mut self, what: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "cargo lambda watch exited ({status}) before it could {what}\n{}",
                self.log_tail()
            );
        }
    }

    /// Waits for the first answer of a function (watch starts it on that first request):
    /// `GET /api/session/validate` without credentials; returns its status and body.
    pub async fn first_answer(
        &mut self,
        http: &reqwest::Client,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let started = Instant::now();
        let url = self.url("/api/session/validate");
        let response = loop {
            match http.get(&url).timeout(FIRST_ANSWER).send().await {
                Ok(response) => break response,
                Err(e) => {
                    self.assert_running("answer");
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
            "first answer (GET /api/session/validate -> {}) after {:.1?}",
            response.status(),
            started.elapsed()
        );
        let status = response.status();
        (status, response.json().await.expect("JSON body"))
    }

    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- last lines of {}:\n{}",
            self.log.display(),
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    /// Stops watch and its functions and returns everything they printed.
    pub fn stop(mut self) -> String {
        self.kill();
        let bytes = fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn kill(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
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
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.kill();
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
