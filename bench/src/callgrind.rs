//! Part 7: instructions per call of the handler's own work, counted by callgrind: `n` calls
//! in-process over the memory store (as part 1's "handler's own cost" row times them), one at a
//! time on a current-thread runtime, in a worker process (`bench callgrind-worker …`) run under
//! `valgrind --tool=callgrind`. Each operation runs twice with the same set-up (the same
//! sessions seeded, the same `n` requests deserialized), once making the `n` calls and once
//! making none; the difference of the two totals (Ir), divided by `n`, is what one call costs.
//! Instruction counts barely move with the machine's load, unlike times on 2 shared cores.

use crate::procs::run_captured;
use crate::report::{Row, thousands};
use crate::setup::{config_with_key, fill, request, seed};
use crate::{Ctx, PART7};
use shared::store::MemoryStore;
use shared::{Endpoint, State, Store, handle};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Validate,
    Refresh,
    Create,
    /// Verifying the RS256 JWT of a create, alone (jsonwebtoken on aws-lc-rs).
    Jwt,
}

impl Op {
    const ALL: [Op; 4] = [Op::Validate, Op::Refresh, Op::Create, Op::Jwt];

    fn name(self) -> &'static str {
        match self {
            Op::Validate => "validate",
            Op::Refresh => "refresh",
            Op::Create => "create",
            Op::Jwt => "jwt",
        }
    }

    fn parse(name: &str) -> Result<Op, String> {
        Op::ALL
            .into_iter()
            .find(|op| op.name() == name)
            .ok_or_else(|| format!("unknown operation {name:?}"))
    }
}

/// Where valgrind is, if it is installed.
fn valgrind() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("valgrind"))
        .find(|p| p.is_file())
}

pub async fn run(ctx: &Ctx) -> Vec<Row> {
    const WHAT: &str = "instructions per call, the handler's own work (callgrind)";
    let Some(valgrind) = valgrind() else {
        return vec![Row::new(
            PART7,
            WHAT,
            "not measured: valgrind is not installed",
            "—",
            "info: `make bench-callgrind` installs it (Debian package valgrind) and measures this",
        )];
    };
    match measure(ctx, &valgrind).await {
        Ok(row) => vec![row],
        Err(why) => {
            eprintln!("bench: part 7: {why}");
            vec![Row::failed(PART7, WHAT, &why)]
        }
    }
}

async fn measure(ctx: &Ctx, valgrind: &Path) -> Result<Row, String> {
    let dir = ctx.scratch.file("callgrind");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let n = |op: Op| match op {
        Op::Validate | Op::Refresh => ctx.ops(2_000),
        Op::Create | Op::Jwt => ctx.ops(200),
    };
    // What the worker needs and cannot make as cheaply itself: the JWTs are signed here (RSA
    // signing under valgrind would take longer than everything else).
    let write = |name: &str, text: &str| {
        fs::write(dir.join(name), text).map_err(|e| format!("write {name}: {e}"))
    };
    write("public.pem", &ctx.keys.public_pem)?;
    write("validate.json", &ctx.events.validate)?;
    write("refresh.json", &ctx.events.refresh)?;
    let creates: Vec<String> = (0..n(Op::Create))
        .map(|i| {
            let event = fill(
                &ctx.events.create,
                "",
                &ctx.keys.jwt(&format!("callgrind_{i}")),
            );
            serde_json::from_str::<serde_json::Value>(&event)
                .map(|v| v.to_string())
                .map_err(|e| format!("the create event: {e}"))
        })
        .collect::<Result<_, _>>()?;
    write("create.jsonl", &creates.join("\n"))?;
    write("jwt.txt", &ctx.keys.jwt("callgrind_jwt"))?;

    let exe = std::env::current_exe().map_err(|e| format!("the bench's own path: {e}"))?;
    let mut per_call = Vec::new();
    for op in Op::ALL {
        let n = n(op);
        eprintln!("bench: part 7: callgrind, {} × {n} and × 0", op.name());
        let with = instructions(valgrind, &exe, &dir, op, n, n).await?;
        let without = instructions(valgrind, &exe, &dir, op, n, 0).await?;
        per_call.push((op, n, (with as f64 - without as f64) / n as f64));
    }
    let figure = |op: Op| {
        per_call
            .iter()
            .find(|(o, _, _)| *o == op)
            .map_or(f64::NAN, |(_, _, ir)| *ir)
    };
    let counts: Vec<String> = per_call
        .iter()
        .map(|(op, n, _)| format!("{} {}", op.name(), thousands(*n as f64)))
        .collect();
    Ok(Row::new(
        PART7,
        format!(
            "instructions per call, the handler's own work: in-process over the memory store, one \
             at a time, under callgrind ((Ir of n calls − Ir of none) / n; n: {})",
            counts.join(", ")
        ),
        format!(
            "validate **{}** Ir; refresh **{}** Ir; create **{}** Ir, of which verifying the \
             RS256 JWT (jsonwebtoken on aws-lc-rs, measured alone) {} Ir",
            thousands(figure(Op::Validate)),
            thousands(figure(Op::Refresh)),
            thousands(figure(Op::Create)),
            thousands(figure(Op::Jwt)),
        ),
        "—",
        "info: where the handler's time goes, free of the machine's noise",
    ))
}

/// Total instructions (Ir) of one worker run under callgrind.
async fn instructions(
    valgrind: &Path,
    exe: &Path,
    dir: &Path,
    op: Op,
    prepare: usize,
    calls: usize,
) -> Result<u64, String> {
    let out = dir.join(format!("callgrind.{}.{calls}.out", op.name()));
    let mut command = Command::new(valgrind);
    command
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .arg("callgrind-worker")
        .arg(dir)
        .arg(op.name())
        .arg(prepare.to_string())
        .arg(calls.to_string())
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON");
    let log = dir.join("valgrind.log");
    tokio::task::spawn_blocking(move || run_captured(command, &log, Duration::from_secs(900)))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("valgrind: {e}"))?;
    let text = fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    total(&text).ok_or_else(|| format!("no totals in {}", out.display()))
}

/// The first event's total of a callgrind output file (`totals:`, or else `summary:`).
fn total(text: &str) -> Option<u64> {
    let find = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    };
    find("totals:").or_else(|| find("summary:"))
}

/// `bench callgrind-worker DIR OP PREPARE CALLS`: sets up `PREPARE` calls of `OP`, makes the
/// first `CALLS` of them, and exits. Runs under callgrind, started by [`run`].
pub fn worker(args: &[String]) -> i32 {
    match work(args) {
        Ok(()) => 0,
        Err(why) => {
            eprintln!("bench callgrind-worker: {why}");
            1
        }
    }
}

fn work(args: &[String]) -> Result<(), String> {
    let [dir, op, prepare, calls] = args else {
        return Err("usage: bench callgrind-worker DIR OP PREPARE CALLS".into());
    };
    let dir = Path::new(dir);
    let op = Op::parse(op)?;
    let prepare: usize = prepare.parse().map_err(|_| "PREPARE: a whole number")?;
    let calls: usize = calls.parse().map_err(|_| "CALLS: a whole number")?;
    if calls > prepare {
        return Err("CALLS must not exceed PREPARE".into());
    }
    let read = |name: &str| {
        fs::read_to_string(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()))
    };
    let public_pem = read("public.pem")?;
    if op == Op::Jwt {
        let jwt = read("jwt.txt")?;
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_pem.as_bytes())
            .map_err(|e| e.to_string())?;
        let validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        for _ in 0..calls {
            let claims = jsonwebtoken::decode::<serde_json::Value>(&jwt, &key, &validation);
            if claims.is_err() {
                return Err("the bench's own JWT does not verify".into());
            }
        }
        return Ok(());
    }
    // The handler's EMF and JSON log lines go to /dev/null, written all the same.
    quiet_stdout()?;
    shared::lambda::init_logging();
    let config = config_with_key(&public_pem, &[]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let store =
            Store::Memory(MemoryStore::new().with_max_sessions(config.max_sessions_per_user));
        let state = State::with_store(config.clone(), store.clone()).map_err(|e| e.to_string())?;
        let (endpoint, events) = match op {
            Op::Validate | Op::Refresh => {
                let template = read(&format!("{}.json", op.name()))?;
                let tokens = seed(&store, &config, "callgrind_", prepare, 1).await?;
                let endpoint = if op == Op::Validate {
                    Endpoint::SessionValidate
                } else {
                    Endpoint::SessionRefresh
                };
                (
                    endpoint,
                    tokens.iter().map(|t| fill(&template, t, "")).collect(),
                )
            }
            Op::Create | Op::Jwt => (
                Endpoint::SessionCreate,
                read("create.jsonl")?
                    .lines()
                    .take(prepare)
                    .map(str::to_owned)
                    .collect::<Vec<String>>(),
            ),
        };
        if events.len() < prepare {
            return Err(format!("only {} events to prepare", events.len()));
        }
        let requests: Vec<_> = events.iter().map(|e| request(e)).collect();
        let mut failures = 0;
        for (i, req) in requests.into_iter().enumerate() {
            if i < calls && handle(&state, endpoint, req).await.status() != 200 {
                failures += 1;
            }
        }
        if failures > 0 {
            return Err(format!("{failures} of {calls} calls did not answer 200"));
        }
        Ok(())
    })
}

/// fd 1 to /dev/null.
fn quiet_stdout() -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let null = fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("/dev/null: {e}"))?;
    // SAFETY: dup2 onto the process's own stdout, before any other thread exists.
    if unsafe { libc::dup2(null.as_raw_fd(), 1) } < 0 {
        return Err("dup2 onto stdout failed".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::total;

    #[test]
    fn reads_the_totals_line() {
        let text =
            "version: 1\ncmd: x\nevents: Ir\nsummary: 123\n\nfn=(1) main\n5 7\ntotals: 4567\n";
        assert_eq!(total(text), Some(4567));
        assert_eq!(total("events: Ir\nsummary: 99\n"), Some(99));
        assert_eq!(total("nothing"), None);
    }
}
