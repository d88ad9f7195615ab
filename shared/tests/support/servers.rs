//! Real servers for tests: a per-test `redis-server`, a shared 3-master Redis cluster and a shared
//! moto (DynamoDB) server, each on free loopback ports and none outliving the test process.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

const REDIS_READY: Duration = Duration::from_secs(5);
const CLUSTER_READY: Duration = Duration::from_secs(15);
// moto is a Python server; its imports alone take a second or more on a busy 2-core machine.
const MOTO_READY: Duration = Duration::from_secs(30);

const MISSING_REDIS: &str = "is not installed or not on PATH; install it with \
    `apt-get install redis-server` (it provides redis-server and redis-cli)";

/// A loopback port nobody was listening on a moment ago, never handed out twice in one process.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0 to find a free port")
            .port();
        if HANDED_OUT
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(port)
        {
            return port;
        }
    }
}

/// Sends one command as a RESP array on a fresh connection and returns the reply: simple strings,
/// integers and bulk strings as text, error replies as `Err` carrying the message.
pub fn redis_command(port: u16, args: &[&str], timeout: Duration) -> io::Result<String> {
    let mut stream = connect(port, timeout)?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        let _ = write!(request, "${}\r\n{arg}\r\n", arg.len());
    }
    stream.write_all(request.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end_matches("\r\n");
    match line.split_at_checked(1) {
        Some(("+" | ":", rest)) => Ok(rest.to_string()),
        Some(("-", message)) => Err(io::Error::other(message.to_string())),
        Some(("$", len)) => {
            let len: usize = len
                .parse()
                .map_err(|_| io::Error::other("nil or bad bulk length"))?;
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body)?;
            body.truncate(len);
            String::from_utf8(body).map_err(io::Error::other)
        }
        _ => Err(io::Error::other(format!(
            "unsupported or empty reply: {line:?}"
        ))),
    }
}

/// One `redis-server` with its own scratch directory; SIGKILLed and reaped on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    extra_args: Vec<String>,
    dir: ScratchDir,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Extra arguments go after the defaults, so they may override them.
    pub fn start_with(extra_args: &[&str]) -> Self {
        let extra_args: Vec<String> = extra_args.iter().map(ToString::to_string).collect();
        // The free port can be taken between our probe and redis binding it; then try another.
        for _ in 0..3 {
            let port = free_port();
            let dir = ScratchDir::new("redis");
            let mut child =
                spawn_redis(port, &extra_args, &dir.0).unwrap_or_else(|why| panic!("{why}"));
            match wait_until(&mut child, REDIS_READY, || redis_is_up(port)) {
                Ok(()) => {
                    return RedisServer {
                        child: Some(child),
                        port,
                        extra_args,
                        dir,
                    };
                }
                Err(_) if log_tail(&dir.0).contains("Address already in use") => {
                    kill_and_reap(&mut child);
                }
                Err(why) => {
                    kill_and_reap(&mut child);
                    panic!("redis-server on port {port} {why}\n{}", log_tail(&dir.0));
                }
            }
        }
        panic!("redis-server: three free ports in a row were taken before it could bind them");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether it runs (not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, as a crash or an outage would; `restart` brings it back.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }

    /// Starts again on the same port with the same arguments and no data.
    pub fn restart(&mut self) {
        self.kill();
        let mut child = spawn_redis(self.port, &self.extra_args, &self.dir.0)
            .unwrap_or_else(|why| panic!("{why}"));
        if let Err(why) = wait_until(&mut child, REDIS_READY, || redis_is_up(self.port)) {
            kill_and_reap(&mut child);
            panic!(
                "restarted redis-server on port {} {why}\n{}",
                self.port,
                log_tail(&self.dir.0)
            );
        }
        self.child = Some(child);
    }

    /// Drops every key (`FLUSHALL`), as an eviction of everything or an empty restart would,
    /// without closing anyone's connection.
    pub fn flush(&self) {
        redis_command(self.port, &["FLUSHALL"], REDIS_READY).expect("FLUSHALL");
    }

    /// SIGSTOP: connections are still accepted by the kernel but nothing answers.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let child = self
            .child
            .as_ref()
            .expect("redis-server is not running (killed)");
        send_signal(child, signal);
    }
}

/// kill(2) on one of our own children, which is not reaped while we hold it.
fn send_signal(child: &Child, signal: libc::c_int) {
    // SAFETY: plain kill(2) on our own child process, still unreaped.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(
        rc,
        0,
        "kill({}, {signal}): {}",
        child.id(),
        io::Error::last_os_error()
    );
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three masters, no replicas, on loopback; started once per test binary.
pub struct RedisCluster {
    ports: Vec<u16>,
    nodes: Vec<Child>,
    _dir: ScratchDir,
}

impl RedisCluster {
    pub fn shared() -> &'static RedisCluster {
        static CLUSTER: OnceLock<Result<RedisCluster, String>> = OnceLock::new();
        match CLUSTER.get_or_init(RedisCluster::start) {
            Ok(cluster) => cluster,
            Err(why) => panic!("{why}"),
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    pub fn nodes(&self) -> usize {
        self.ports.len()
    }

    /// SIGSTOP to one node: its slots stop answering while the others serve theirs. Keep it well
    /// under the cluster's node timeout (2 s), or the cluster marks the node failed.
    pub fn pause_node(&self, node: usize) {
        send_signal(&self.nodes[node], libc::SIGSTOP);
    }

    pub fn resume_node(&self, node: usize) {
        send_signal(&self.nodes[node], libc::SIGCONT);
    }

    /// Closes every client connection to one node (`CLIENT KILL TYPE normal`), as a network
    /// blip would: commands in flight fail and the clients reconnect.
    pub fn cut_clients(&self, node: usize) {
        let _ = redis_command(
            self.ports[node],
            &["CLIENT", "KILL", "TYPE", "normal"],
            Duration::from_secs(1),
        );
    }

    fn start() -> Result<RedisCluster, String> {
        let dir = ScratchDir::new("cluster");
        let mut nodes = Vec::new();
        let mut ports = Vec::new();
        match Self::boot(&dir.0, &mut nodes, &mut ports) {
            Ok(()) => Ok(RedisCluster {
                ports,
                nodes,
                _dir: dir,
            }),
            Err(why) => {
                nodes.iter_mut().for_each(kill_and_reap);
                Err(format!("redis cluster: {why}\n{}", log_tail(&dir.0)))
            }
        }
    }

    fn boot(dir: &Path, nodes: &mut Vec<Child>, ports: &mut Vec<u16>) -> Result<(), String> {
        for _ in 0..3 {
            let port = free_port();
            let node_dir = dir.join(port.to_string());
            fs::create_dir_all(&node_dir)
                .map_err(|e| format!("create {}: {e}", node_dir.display()))?;
            // The default bus port is port + 10000, which may be taken or above 65535.
            let bus_port = free_port().to_string();
            let config_file = node_dir.join(format!("nodes-{port}.conf"));
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus_port,
                "--cluster-config-file",
                config_file.to_str().expect("utf-8 temp path"),
                "--cluster-node-timeout",
                "2000",
            ]
            .map(String::from);
            nodes.push(spawn_redis(port, &args, &node_dir)?);
            ports.push(port);
        }
        for (node, &port) in nodes.iter_mut().zip(ports.iter()) {
            wait_until(node, REDIS_READY, || redis_is_up(port))
                .map_err(|why| format!("node {port} {why}"))?;
        }

        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => format!("redis-cli {MISSING_REDIS}"),
                _ => format!("cannot run redis-cli: {e}"),
            })?;
        if !output.status.success() {
            return Err(format!(
                "`redis-cli --cluster create` failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }

        // Slots are assigned at once but every node must also learn of the others through gossip.
        let deadline = Instant::now() + CLUSTER_READY;
        let mut pending: Vec<u16> = ports.clone();
        while !pending.is_empty() {
            pending.retain(|&port| {
                let info = redis_command(port, &["CLUSTER", "INFO"], Duration::from_secs(1));
                !info.is_ok_and(|i| {
                    i.contains("cluster_state:ok") && i.contains("cluster_known_nodes:3")
                })
            });
            if Instant::now() > deadline {
                return Err(format!(
                    "nodes {pending:?} not cluster_state:ok after {CLUSTER_READY:?}"
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

/// A moto server (DynamoDB mock) shared by the test binary, or an endpoint from the environment.
pub struct Moto {
    endpoint: String,
    _child: Option<Child>,
    _dir: Option<ScratchDir>,
}

impl Moto {
    pub fn shared() -> &'static Moto {
        static MOTO: OnceLock<Result<Moto, String>> = OnceLock::new();
        match MOTO.get_or_init(Moto::start) {
            Ok(moto) => moto,
            Err(why) => panic!("{why}"),
        }
    }

    /// A second server for the binary: moto is one Python process on one core, so two busy
    /// tests that each have their own finish sooner than two that share one.
    pub fn second() -> &'static Moto {
        static MOTO: OnceLock<Result<Moto, String>> = OnceLock::new();
        match MOTO.get_or_init(Moto::start) {
            Ok(moto) => moto,
            Err(why) => panic!("{why}"),
        }
    }

    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    fn start() -> Result<Moto, String> {
        if let Some(endpoint) = std::env::var("DYNAMODB_TEST_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty())
        {
            return Ok(Moto {
                endpoint,
                _child: None,
                _dir: None,
            });
        }
        let binary = moto_binary()?;
        let port = free_port();
        let dir = ScratchDir::new("moto");
        let log = dir.0.join("server.log");
        let mut command = Command::new(&binary);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let mut child = spawn_logged(command, &log).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => format!(
                "moto_server not found (looked at $MOTO_SERVER, {}, PATH); \
                 run `make test`, which installs it into .venv",
                venv_moto().display()
            ),
            _ => format!("cannot start {}: {e}", binary.display()),
        })?;
        if let Err(why) = wait_until(&mut child, MOTO_READY, || http_answers(port)) {
            kill_and_reap(&mut child);
            return Err(format!(
                "{} on port {port} {why}\n{}",
                binary.display(),
                log_tail(&dir.0)
            ));
        }
        Ok(Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            _child: Some(child),
            _dir: Some(dir),
        })
    }
}

/// `$MOTO_SERVER` if set (it must exist), else the workspace's .venv, else `moto_server` on PATH.
fn moto_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("MOTO_SERVER").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(format!(
                "MOTO_SERVER={} does not exist; run `make test`, which installs it",
                path.display()
            ));
        }
        return Ok(path);
    }
    let venv = venv_moto();
    Ok(if venv.is_file() {
        venv
    } else {
        PathBuf::from("moto_server")
    })
}

fn venv_moto() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate inside a workspace");
    workspace.join(".venv/bin/moto_server")
}

fn spawn_redis(port: u16, extra_args: &[String], dir: &Path) -> Result<Child, String> {
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir)
        .args(extra_args);
    spawn_logged(command, &dir.join("server.log")).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!("redis-server {MISSING_REDIS}"),
        _ => format!("cannot start redis-server: {e}"),
    })
}

/// Spawns with stdout and stderr appended to `log`, and with SIGKILL as the parent-death signal.
///
/// The kernel sends that signal when the *thread* that forked the child exits, and test threads
/// exit after every test; so every server is forked by one thread that lives as long as the process.
fn spawn_logged(mut command: Command, log: &Path) -> io::Result<Child> {
    type Job = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();

    let out = OpenOptions::new().create(true).append(true).open(log)?;
    command
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe syscalls.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(io::Error::last_os_error());
            }
            // If the test process died before prctl, no signal will ever come.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }

    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, incoming) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("test-server-spawner".into())
            // The sender lives in a static and is never dropped, so this loop never ends.
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start the server spawner thread");
        jobs
    });
    let (reply, child) = mpsc::channel();
    spawner
        .send((command, reply))
        .expect("server spawner thread is gone");
    child.recv().expect("server spawner thread is gone")
}

/// Polls `ready` until it holds, the child exits, or `limit` passes.
fn wait_until(
    child: &mut Child,
    limit: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited during start ({status})"));
        }
        if Instant::now() > deadline {
            return Err(format!("did not answer within {limit:?}"));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A raw inline PING; NOAUTH also proves the server is up (it runs with `--requirepass`).
fn redis_is_up(port: u16) -> bool {
    let reply = exchange(port, b"PING\r\n", Duration::from_millis(500));
    reply.is_ok_and(|r| r.starts_with("+PONG") || r.starts_with("-NOAUTH"))
}

fn http_answers(port: u16) -> bool {
    let request = format!("GET / HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    exchange(port, request.as_bytes(), Duration::from_secs(2)).is_ok_and(|r| r.starts_with("HTTP/"))
}

/// Writes `request` and returns whatever arrives in the first read.
fn exchange(port: u16, request: &[u8], timeout: Duration) -> io::Result<String> {
    let mut stream = connect(port, timeout)?;
    stream.write_all(request)?;
    let mut buf = [0; 256];
    let n = stream.read(&mut buf)?;
    let _ = stream.shutdown(Shutdown::Both);
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn connect(port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The last lines of every server.log under `dir`, for panic messages.
fn log_tail(dir: &Path) -> String {
    let mut logs = vec![dir.join("server.log")];
    if let Ok(entries) = fs::read_dir(dir) {
        logs.extend(entries.flatten().map(|e| e.path().join("server.log")));
    }
    let mut tail = String::new();
    for log in logs.iter().filter(|l| l.is_file()) {
        let text = fs::read_to_string(log).unwrap_or_default();
        if text.is_empty() {
            continue;
        }
        let lines: Vec<&str> = text.lines().collect();
        let _ = writeln!(tail, "--- last lines of {}:", log.display());
        for line in &lines[lines.len().saturating_sub(20)..] {
            tail.push_str(line);
            tail.push('\n');
        }
    }
    tail
}

/// A directory under cargo's per-target tmp dir, removed on drop. Shared servers live in statics,
/// which are never dropped, so directories of test processes that are gone are swept on first use.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(kind: &str) -> Self {
        static SWEEP: Once = Once::new();
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("servers");
        SWEEP.call_once(|| sweep_dead(&base));
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("{kind}-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        ScratchDir(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Removes `<kind>-<pid>-<n>` directories whose process no longer exists.
fn sweep_dead(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.split('-').nth(1))
            .and_then(|p| p.parse::<libc::pid_t>().ok());
        // SAFETY: signal 0 only checks that the process exists.
        if pid.is_some_and(|pid| unsafe { libc::kill(pid, 0) } == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
