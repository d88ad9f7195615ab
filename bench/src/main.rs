//! `make bench`: the performance budgets of docs/architecture.md, measured against the raw store in the same
//! run, printed as one table and written to BENCHMARKS.md (see `mk/bench.mk`).
//!
//! ```text
//! bench [--root DIR] [--target-dir DIR] [--validate-bin FILE] [--hello-bin FILE] [--out FILE]
//!       [--command TEXT] [--parts 1,2,3,4,5,6,7] [--scale F] [--rounds N] [--limit-minutes N]
//! bench callgrind-worker DIR OP PREPARE CALLS     (part 7 runs this under valgrind)
//! ```
//!
//! Parts: 1 handler vs raw Redis, 2 round trips, 3 cold start (beside a hello-world), 4 memory,
//! 5 end to end, 6 delayed network (every store behind a proxy that adds a network's round
//! trip), 7 instructions per call (callgrind; skipped with a note when valgrind is missing).
//!
//! Every server it needs (redis-server, moto, cargo lambda watch) is started here on free loopback
//! ports and stopped again, also on Ctrl-C and past the time limit.

mod callgrind;
mod cold_start;
mod delay;
mod dynamo;
mod e2e;
mod load;
mod memory;
mod network;
mod procs;
mod proxy;
mod report;
mod round_trips;
mod setup;
mod throughput;
mod watch;

use procs::{Moto, Scratch};
use report::Row;
use setup::{Events, Keys};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const PART1: &str = "1 handler vs raw Redis";
pub const PART2: &str = "2 round trips";
pub const PART3: &str = "3 cold start";
pub const PART4: &str = "4 memory";
pub const PART5: &str = "5 end to end";
pub const PART6: &str = "6 delayed network";
pub const PART7: &str = "7 instructions";
/// Every part, the default of --parts.
const ALL_PARTS: [u8; 7] = [1, 2, 3, 4, 5, 6, 7];

/// Where the tools are.
pub struct Tools {
    pub redis_server: PathBuf,
    pub redis_benchmark: PathBuf,
    pub moto_server: PathBuf,
    pub cargo_lambda: PathBuf,
    pub wrk: PathBuf,
    pub validate_bin: PathBuf,
    /// A hello-world `lambda_http` function (bench/src/bin/hello.rs), part 3's reference.
    pub hello_bin: PathBuf,
    pub venv_bin: PathBuf,
}

impl Tools {
    /// PATH with the venv first: cargo-lambda finds zig as the venv's `python3 -m ziglang`.
    pub fn path_with_venv(&self) -> std::ffi::OsString {
        let mut dirs = vec![self.venv_bin.clone()];
        dirs.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        std::env::join_paths(dirs).unwrap_or_default()
    }
}

/// What every part gets.
pub struct Ctx {
    pub root: PathBuf,
    pub target_dir: PathBuf,
    pub tools: Tools,
    pub scratch: Scratch,
    pub keys: Keys,
    pub events: Events,
    pub scale: f64,
    pub rounds: usize,
}

impl Ctx {
    /// An operation count, scaled by --scale.
    pub fn ops(&self, base: usize) -> usize {
        ((base as f64 * self.scale) as usize).max(100)
    }
}

struct Args {
    root: PathBuf,
    target_dir: Option<PathBuf>,
    validate_bin: Option<PathBuf>,
    hello_bin: Option<PathBuf>,
    out: Option<PathBuf>,
    command: String,
    parts: Vec<u8>,
    scale: f64,
    rounds: usize,
    limit: Duration,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        root: Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("bench/ is inside the workspace")
            .to_path_buf(),
        target_dir: None,
        validate_bin: None,
        hello_bin: None,
        out: None,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        parts: ALL_PARTS.to_vec(),
        scale: 1.0,
        rounds: 5,
        limit: Duration::from_secs(30 * 60),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--root" => args.root = value()?.into(),
            "--target-dir" => args.target_dir = Some(value()?.into()),
            "--out" => args.out = Some(value()?.into()),
            "--validate-bin" => args.validate_bin = Some(value()?.into()),
            "--hello-bin" => args.hello_bin = Some(value()?.into()),
            "--command" => args.command = value()?,
            "--parts" => {
                args.parts = value()?
                    .split(',')
                    .map(|p| {
                        p.trim()
                            .parse()
                            .map_err(|_| format!("--parts: bad part {p:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--scale" => args.scale = value()?.parse().map_err(|_| "--scale: a number")?,
            "--rounds" => args.rounds = value()?.parse().map_err(|_| "--rounds: a whole number")?,
            "--limit-minutes" => {
                let minutes: u64 = value()?
                    .parse()
                    .map_err(|_| "--limit-minutes: a whole number")?;
                args.limit = Duration::from_secs(minutes * 60);
            }
            "-h" | "--help" => {
                return Err(
                    "usage: bench [--root DIR] [--target-dir DIR] [--validate-bin FILE] [--hello-bin FILE] \
                     [--out FILE] [--command TEXT] [--parts 1,2,3,4,5,6,7] [--scale F] [--rounds N] \
                     [--limit-minutes N]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if let Some(bad) = args.parts.iter().find(|p| !ALL_PARTS.contains(p)) {
        return Err(format!("--parts: there is no part {bad} (1 to 7)"));
    }
    if args.rounds == 0 || args.scale <= 0.0 {
        return Err("--rounds and --scale must be above zero".into());
    }
    Ok(args)
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("callgrind-worker") {
        std::process::exit(callgrind::worker(&argv[1..]));
    }
    let args = match args() {
        Ok(args) => args,
        Err(why) => {
            eprintln!("bench: {why}");
            std::process::exit(2);
        }
    };
    // The handler writes its EMF line (println!) and, as deployed, a JSON log line to stdout for
    // every call: both go to /dev/null, written all the same. The report goes to the real stdout.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("AWS_LAMBDA_LOG_FORMAT", "JSON") };
    let mut report = real_stdout_aside();
    // reqwest (parts 3 and 5) is built without a crypto provider of its own.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    shared::lambda::init_logging();
    procs::install_guard(args.limit);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match runtime.block_on(bench(&args)) {
        Ok(text) => {
            let _ = report.write_all(text.as_bytes());
            let _ = report.flush();
            0
        }
        Err(why) => {
            eprintln!("bench: {why}");
            1
        }
    };
    runtime.shutdown_timeout(Duration::from_secs(5));
    std::process::exit(code);
}

/// A handle on the real stdout; fd 1 itself now goes to /dev/null.
fn real_stdout_aside() -> File {
    // SAFETY: dup/dup2 on the process's own descriptors, before any other thread exists.
    unsafe {
        let saved = libc::dup(1);
        assert!(saved >= 0, "dup(1) failed");
        let null = OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .expect("open /dev/null");
        assert!(libc::dup2(null.as_raw_fd(), 1) >= 0, "dup2 failed");
        File::from_raw_fd(saved)
    }
}

async fn bench(args: &Args) -> Result<String, String> {
    let started = Instant::now();
    let root = fs::canonicalize(&args.root).map_err(|e| format!("{}: {e}", args.root.display()))?;
    let target_dir = args
        .target_dir
        .clone()
        .unwrap_or_else(|| root.join("target"));
    let mut tools = find_tools(&root, &target_dir)?;
    if let Some(bin) = &args.validate_bin {
        tools.validate_bin = bin.clone();
    }
    if let Some(bin) = &args.hello_bin {
        tools.hello_bin = bin.clone();
    }
    let scratch = Scratch::new(&target_dir.join("tmp")).map_err(|e| format!("scratch dir: {e}"))?;
    eprintln!("bench: making a key pair (openssl), loading events/");
    let keys = Keys::generate()?;
    let events = Events::load(&root)?;
    let machine = machine(&tools);
    let ctx = Ctx {
        root: root.clone(),
        target_dir,
        tools,
        scratch,
        keys,
        events,
        scale: args.scale,
        rounds: args.rounds,
    };
    let wants = |part| args.parts.contains(&part);

    // moto first, so that its start (seconds of Python imports) disturbs no measurement.
    let moto = if wants(1) || wants(2) || wants(3) || wants(6) {
        eprintln!("bench: starting moto_server");
        Moto::start(&ctx.tools.moto_server, &ctx.scratch.0)
    } else {
        Err("not needed".into())
    };

    let mut rows: Vec<Row> = Vec::new();
    if wants(1) {
        eprintln!("bench: part 1: handler vs raw Redis");
        rows.extend(throughput::run(&ctx, moto.as_ref()).await);
    }
    if wants(2) {
        eprintln!("bench: part 2: round trips per operation");
        rows.extend(round_trips::run(&ctx, moto.as_ref()).await);
    }
    if wants(3) {
        eprintln!("bench: part 3: cold start");
        rows.extend(cold_start::run(&ctx, moto.as_ref()).await);
    }
    if wants(6) {
        eprintln!("bench: part 6: delayed network");
        rows.extend(network::run(&ctx, moto.as_ref()).await);
    }
    if wants(4) {
        eprintln!("bench: part 4: memory");
        rows.extend(memory::run(&ctx).await);
    }
    drop(moto);
    if wants(5) {
        eprintln!("bench: part 5: end to end through cargo lambda watch");
        rows.extend(e2e::run(&ctx).await);
    }
    if wants(7) {
        eprintln!("bench: part 7: instructions per call (callgrind)");
        rows.extend(callgrind::run(&ctx).await);
    }

    let misses = rows
        .iter()
        .filter(|r| r.verdict.starts_with("MISS"))
        .count();
    let failed = rows
        .iter()
        .filter(|r| r.verdict.starts_with("FAILED"))
        .count();
    let text = format!(
        "# Benchmarks\n\n\
         Written by `{command}` (bench/, mk/bench.mk) on {date}. Do not edit by hand: run it again.\n\n\
         - machine: {machine}\n\
         - command: `{command}`{parts}\n\
         - took {took:.0} s; {misses} figure(s) miss their budget, {failed} part(s) could not be measured\n\n\
         {table}\n\
         {notes}",
        command = args.command,
        date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        parts = if !ALL_PARTS.iter().all(|p| args.parts.contains(p)) {
            format!(" (parts {:?} only)", args.parts)
        } else {
            String::new()
        },
        took = started.elapsed().as_secs_f64(),
        table = report::table(&rows),
        notes = notes(&ctx),
    );
    if let Some(out) = &args.out {
        fs::write(out, &text).map_err(|e| format!("write {}: {e}", out.display()))?;
        eprintln!("bench: wrote {}", out.display());
    }
    Ok(text)
}

fn find_tools(root: &Path, target_dir: &Path) -> Result<Tools, String> {
    let venv_bin = root.join(".venv/bin");
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    };
    let from_env_or = |var: &str, name: &str| -> Result<PathBuf, String> {
        if let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(path));
        }
        let venv = venv_bin.join(name);
        if venv.is_file() {
            return Ok(venv);
        }
        on_path(name).ok_or_else(|| {
            format!(
                "{name} not found (looked at ${var}, {}, PATH): run `make venv`",
                venv.display()
            )
        })
    };
    let debian = |name: &str, package: &str| {
        on_path(name).ok_or_else(|| format!("{name} not found on PATH: apt-get install {package}"))
    };
    Ok(Tools {
        redis_server: debian("redis-server", "redis-server")?,
        redis_benchmark: debian("redis-benchmark", "redis-tools")?,
        wrk: debian("wrk", "wrk")?,
        moto_server: from_env_or("MOTO_SERVER", "moto_server")?,
        cargo_lambda: from_env_or("CARGO_LAMBDA", "cargo-lambda")?,
        validate_bin: target_dir.join("release/session-validate"),
        hello_bin: target_dir.join("release/bench-hello"),
        venv_bin,
    })
}

/// Cores, CPU model, memory, kernel, load, redis-server version.
fn machine(tools: &Tools) -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
        .map_or("unknown CPU".to_owned(), |(_, m)| m.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mem = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let redis = std::process::Command::new(&tools.redis_server)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{cores} cores (nproc), {model}, {mem} RAM, Linux {}; load average at start {}; {redis}",
        kernel.trim(),
        load.join(" ")
    )
}

fn notes(ctx: &Ctx) -> String {
    format!(
        "How each part is measured:\n\n\
         1. In-process, through `shared::handle` over a `State` on a `RedisStore` (the deployed \
         defaults: 250 ms command timeout) against a redis-server started on a free port, on the \
         same multi-threaded tokio runtime a function runs on. Each call gets a request deserialized \
         beforehand from a sample API Gateway event of `events/` (what the Lambda runtime hands the \
         handler; that deserialization is timed separately) and runs the handler: token parsing and \
         hashing (or RS256 JWT verification for create), the store call, the JSON answer, the EMF \
         line and a JSON log line (both to /dev/null). `store call` is the bare `Store` method with \
         arguments made beforehand. `redis-benchmark` runs against the same server in the same run \
         with the same concurrency (`-c`), the same number of operations (`-n`) and values the size \
         of a stored session record (`-d`); it opens one connection per client and never pipelines, \
         while redis-rs multiplexes every concurrent call over one connection and pipelines them, \
         which is why the bare store call outruns it at 16 and 64. Ops/s are the median of {rounds} \
         rounds, interleaved (raw, store call, handler back to back); a ratio is the median of the \
         rounds' own ratios, with their range, because the machine's state drifts between rounds \
         far more than within one; CPU µs/op add up every round (getrusage for the bench and for \
         redis-benchmark, `INFO cpu` for redis-server). The cores are shared by the clients and \
         redis-server alike (nothing is pinned). In Lambda one instance serves one request at a \
         time, so concurrency 1 is the deployed case; there the loopback round trip is about \
         25 µs, so the handler's microseconds weigh far more than they would against a network \
         round trip to ElastiCache (a few hundred µs: part 6 puts one in).\n\
         2. One call at a time through the handler, each for a user of its own. Redis: a counting \
         proxy between the store and redis-server counts what goes on the wire (a round trip is the \
         client speaking again after an answer), `INFO commandstats` deltas what the server executed \
         (a script's inner commands included). DynamoDB: an SDK interceptor \
         (`read_before_transmit`, so retries would count) against moto.\n\
         3. `cargo lambda watch --only-lambda-apis` as the runtime API; the release `session-validate` \
         binary ({bin}) is spawned with the runtime's variables after its invocation (validate with a \
         live session token) is queued; time from spawn to the emulator returning the answer. The \
         same for `bench-hello` ({hello}), a `lambda_http` function that answers \"hello\" and \
         does nothing else, built by `make bench` with the same release profile: the runtime's own \
         cold start, which no function on it can beat. The cases take turns (run i of each, back to \
         back); \"over hello\" is the median of each run's difference to the hello run just before \
         it. One unmeasured round first (page cache), then {runs} runs of each, a new process each.\n\
         4. `used_memory` before and after `Store::create` of the sessions (64 in flight), the create \
         script loaded beforehand; a fresh redis-server (7.x defaults) per variant.\n\
         5. `cargo lambda watch --release` with the router of Cargo.toml, one instance per function \
         (watch's default), wrk with one thread, keep-alive connections, a live session token.\n\
         6. The stores behind a network's round trip instead of loopback's (its first row gives both): \
         each store is reached through a TCP proxy of the bench (bench/src/delay.rs) that hands \
         each chunk the server sends back to the client {delay} µs after it read it. It is a delay \
         line, not stop-and-wait: pipelined replies stay pipelined, and a chunk waits behind an \
         earlier one only for ordering; requests go through at once, so a request and its answer \
         take the whole added delay on the way back (a connection's set-up is not delayed; the \
         clients keep theirs open). The kernel has no netem qdisc, so the delay \
         lives in the bench: per connection one OS thread sleeps until each chunk's due instant \
         (`clock_nanosleep`, absolute, CLOCK_MONOTONIC, 1 ns timer slack; no tokio timer, no \
         spinning), with SCHED_FIFO where permitted; the first row gives the round trip achieved \
         (PING through the proxy) and how late the sleeps woke. Everything is one call at a time, \
         as one Lambda instance serves requests, through `shared::handle` on requests deserialized \
         beforehand. validate vs raw: `redis-benchmark -c 1 -t get` through the same proxy (a C \
         client, one connection; its GET reads a value the size of a session record), then the \
         handler over a `RedisStore` through the proxy, in {rounds6} interleaved rounds; a ratio is \
         the median of the rounds' ratios of ops/s; a plain GET of redis-rs, the store's client, is \
         given beside it. Latencies: Redis alone (a `RedisStore`), DynamoDB alone (a `DynamoStore` \
         on moto, its endpoint URL at the proxy), and both (Redis in front of DynamoDB, a redis-server \
         of its own, each store through its proxy); each round makes call i of the three modes back \
         to back for each i, each call for a user of its own where the operation consumes its \
         sessions (logout, logout-all with 3 sessions and a Clerk JWT), sessions seeded straight to \
         the servers beforehand, and one unmeasured round first. p50 and p99 pool every round; \
         \"both ÷ the slower alone\" is the median of the rounds' ratios of p50s. moto is a Python \
         server on the same 2 cores: it answers in milliseconds, far slower than DynamoDB, and \
         with a wide spread, so DynamoDB's figures and the ratios move between runs more than \
         Redis' do; the added network delay is small beside moto's own time.\n\
         7. `valgrind --tool=callgrind` on `bench callgrind-worker`: in-process calls through \
         `shared::handle` over the memory store, one at a time on a current-thread runtime, JSON \
         log and EMF lines written to /dev/null. Each operation runs twice with the same set-up \
         (the same number of sessions seeded and requests deserialized), making its n calls, then \
         none; (Ir of the first − Ir of the second) / n is one call's instructions. The JWTs of \
         create are signed beforehand by the bench. Counts of user-space instructions: the \
         kernel's work (writes to /dev/null) is not in them. Skipped, with a row that says so, \
         where valgrind is not installed (`make bench-callgrind` installs it).\n",
        rounds = ctx.rounds,
        rounds6 = network::validate_rounds(ctx),
        runs = 20,
        delay = network::DELAY.as_micros(),
        hello = ctx
            .tools
            .hello_bin
            .strip_prefix(&ctx.root)
            .unwrap_or(&ctx.tools.hello_bin)
            .display(),
        bin = ctx
            .tools
            .validate_bin
            .strip_prefix(&ctx.root)
            .unwrap_or(&ctx.tools.validate_bin)
            .display(),
    )
}
