//! Every process the bench starts: spawned with SIGKILL as the parent-death signal, recorded so
//! that a signal or the overall time limit stops them all, and stopped on drop.

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// Pids (and whether each leads a process group of its own) to kill if the bench is stopped.
static RUNNING: Mutex<Vec<(libc::pid_t, bool)>> = Mutex::new(Vec::new());
static SIGNALLED: AtomicI32 = AtomicI32::new(0);
/// Scratch directories to remove if the bench is stopped.
static SCRATCH: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn on_signal(signal: libc::c_int) {
    SIGNALLED.store(signal, Ordering::SeqCst);
}

/// SIGINT/SIGTERM, or `limit` passing, stop every process started here, then the bench.
pub fn install_guard(limit: Duration) {
    // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let deadline = Instant::now() + limit;
    thread::Builder::new()
        .name("bench-guard".into())
        .spawn(move || {
            loop {
                thread::sleep(Duration::from_millis(100));
                let signal = SIGNALLED.load(Ordering::SeqCst);
                let late = Instant::now() > deadline;
                if signal != 0 || late {
                    if late {
                        eprintln!("bench: not done within {limit:?}: stopping everything");
                    } else {
                        eprintln!("bench: signal {signal}: stopping everything");
                    }
                    kill_all();
                    for dir in SCRATCH
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .iter()
                    {
                        let _ = fs::remove_dir_all(dir);
                    }
                    std::process::exit(if late { 124 } else { 128 + signal });
                }
            }
        })
        .expect("start the guard thread");
}

fn kill_all() {
    let running = RUNNING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for (pid, group) in running {
        kill_tree(pid, group);
    }
}

/// SIGKILL to `pid`, its process group when it leads one, and every descendant.
fn kill_tree(pid: libc::pid_t, group: bool) {
    let descendants = descendants_of(pid);
    // SAFETY: kill(2) on processes this bench started (or their descendants, found a moment ago).
    unsafe {
        if group {
            libc::kill(-pid, libc::SIGKILL);
        }
        libc::kill(pid, libc::SIGKILL);
        for child in descendants {
            libc::kill(child, libc::SIGKILL);
        }
    }
}

/// Every process under `root`, from /proc.
pub fn descendants_of(root: libc::pid_t) -> Vec<libc::pid_t> {
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

/// A started process; SIGKILLed (with its group and descendants) and reaped on drop.
pub struct Proc {
    child: Option<Child>,
    group: bool,
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `command` with stdin closed and stdout/stderr appended to `log`. `group`: in a
    /// process group of its own (so that a terminal's Ctrl-C reaches the bench first).
    pub fn spawn(mut command: Command, log: &Path, group: bool) -> io::Result<Proc> {
        let out = OpenOptions::new().create(true).append(true).open(log)?;
        command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        if group {
            command.process_group(0);
        }
        let child = spawn_with_deathsig(command)?;
        RUNNING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((child.id() as libc::pid_t, group));
        Ok(Proc {
            child: Some(child),
            group,
            log: log.to_path_buf(),
        })
    }

    pub fn id(&self) -> libc::pid_t {
        self.child.as_ref().map_or(0, |c| c.id() as libc::pid_t)
    }

    /// `Some(status text)` once the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => Some(status.to_string()),
            Some(Ok(None)) => None,
            Some(Err(e)) => Some(e.to_string()),
            None => Some("stopped".into()),
        }
    }

    /// SIGINT first (a clean stop for watch), SIGKILL for whatever is left after `grace`.
    pub fn interrupt(&mut self, grace: Duration) {
        let pid = self.id();
        if pid == 0 {
            return;
        }
        let descendants = descendants_of(pid);
        // SAFETY: kill(2) on our own child, not reaped yet.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && self.exited().is_none() {
            thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: pids that were this child's descendants a moment ago.
        unsafe {
            for child in descendants {
                if libc::kill(child, 0) == 0 {
                    libc::kill(child, libc::SIGKILL);
                }
            }
        }
        self.stop();
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as libc::pid_t;
            if matches!(child.try_wait(), Ok(None)) || self.group {
                kill_tree(pid, self.group);
            }
            let _ = child.wait();
            RUNNING
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|(p, _)| *p != pid);
        }
    }

    /// The last `lines` lines of the log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    format!(
        "--- last lines of {}:\n{}",
        path.display(),
        all[all.len().saturating_sub(lines)..].join("\n")
    )
}

/// Runs `command` to completion within `limit`, capturing stdout; stderr goes to `log`.
pub fn run_captured(mut command: Command, log: &Path, limit: Duration) -> io::Result<String> {
    let err = OpenOptions::new().create(true).append(true).open(log)?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err);
    let mut child = spawn_with_deathsig(command)?;
    let pid = child.id() as libc::pid_t;
    RUNNING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((pid, false));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    RUNNING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|(p, _)| *p != pid);
    let out = reader.join().unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(out),
        Some(s) => Err(io::Error::other(format!(
            "exited with {s}\n{out}\n{}",
            tail(log, 20)
        ))),
        None => Err(io::Error::other(format!(
            "did not finish within {limit:?}\n{}",
            tail(log, 20)
        ))),
    }
}

/// The kernel sends the parent-death signal when the *thread* that forked the child exits, so
/// every process is forked by one thread that lives as long as the bench.
fn spawn_with_deathsig(mut command: Command) -> io::Result<Child> {
    type Job = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe syscalls.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, incoming) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("bench-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start the spawner thread");
        Mutex::new(jobs)
    });
    let (reply, child) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .send((command, reply))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    child
        .recv()
        .map_err(|_| io::Error::other("spawner thread is gone"))?
}

/// A loopback port nobody listened on a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0 to find a free port")
        .port()
}

/// Polls `ready` until it holds, the process exits, or `limit` passes.
pub fn wait_until(
    proc: &mut Proc,
    limit: Duration,
    what: &str,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return Ok(());
        }
        if let Some(status) = proc.exited() {
            return Err(format!(
                "{what} exited during start ({status})\n{}",
                proc.log_tail(20)
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{what} did not answer within {limit:?}\n{}",
                proc.log_tail(20)
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `request` and returns whatever arrives in the first read.
pub fn exchange(port: u16, request: &[u8], timeout: Duration) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request)?;
    let mut buf = [0; 256];
    let n = stream.read(&mut buf)?;
    let _ = stream.shutdown(Shutdown::Both);
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

pub fn http_answers(port: u16) -> bool {
    let request = format!("GET / HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    exchange(port, request.as_bytes(), Duration::from_secs(2)).is_ok_and(|r| r.starts_with("HTTP/"))
}

pub fn redis_is_up(port: u16) -> bool {
    exchange(port, b"PING\r\n", Duration::from_millis(500)).is_ok_and(|r| r.starts_with("+PONG"))
}

/// A scratch directory for logs and data, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(base: &Path) -> io::Result<Scratch> {
        let dir = base.join(format!("bench-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        SCRATCH
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(dir.clone());
        Ok(Scratch(dir))
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A `redis-server` on a free port, no persistence; stopped on drop.
pub struct RedisServer {
    pub port: u16,
    _proc: Proc,
}

impl RedisServer {
    pub fn start(redis_server: &Path, dir: &Path, name: &str) -> Result<RedisServer, String> {
        for _ in 0..3 {
            let port = free_port();
            let data = dir.join(name);
            fs::create_dir_all(&data).map_err(|e| format!("create {}: {e}", data.display()))?;
            let mut command = Command::new(redis_server);
            command
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--dir"])
                .arg(&data);
            let log = dir.join(format!("{name}.log"));
            let mut proc = Proc::spawn(command, &log, false)
                .map_err(|e| format!("cannot start {}: {e}", redis_server.display()))?;
            match wait_until(&mut proc, Duration::from_secs(10), "redis-server", || {
                redis_is_up(port)
            }) {
                Ok(()) => {
                    return Ok(RedisServer { port, _proc: proc });
                }
                Err(_) if proc.log_tail(20).contains("Address already in use") => continue,
                Err(why) => return Err(why),
            }
        }
        Err("redis-server: three free ports in a row were taken".into())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// A moto server (DynamoDB) on a free port; stopped on drop.
pub struct Moto {
    pub endpoint: String,
    _proc: Proc,
}

impl Moto {
    pub fn start(moto_server: &Path, dir: &Path) -> Result<Moto, String> {
        let port = free_port();
        let mut command = Command::new(moto_server);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let mut proc = Proc::spawn(command, &dir.join("moto.log"), false)
            .map_err(|e| format!("cannot start {}: {e}", moto_server.display()))?;
        // moto is a Python server: its imports alone take seconds on a busy 2-core machine.
        wait_until(&mut proc, Duration::from_secs(60), "moto_server", || {
            http_answers(port)
        })?;
        Ok(Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            _proc: proc,
        })
    }
}

/// A port that accepts connections and never answers: the kernel completes the handshake, a
/// thread takes each connection and holds it unread until the bench ends.
pub fn silent_port() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind a silent port");
    let port = listener.local_addr().expect("local addr").port();
    thread::Builder::new()
        .name("silent-port".into())
        .spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream);
            }
        })
        .expect("start the silent port thread");
    port
}
