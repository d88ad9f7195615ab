//! Fuzzing on the stable toolchain: proptest properties over the four ways untrusted bytes come in.
//! The coverage-guided (cargo-fuzz) targets of `shared/fuzz/` go further on nightly (`make fuzz`); these
//! run in `make test`, and replay the seeds both share and the corpus libFuzzer keeps.
//!
//! | target | what is fed | what must hold |
//! | --- | --- | --- |
//! | `token` | any string or bytes, near-miss and mutated tokens, to `SessionToken::parse` | no panic; the answer is exactly that of an independent model of the format (canonical `<base64url user id>.<43-char secret>`) |
//! | `token_round_trip` | any user id, to `SessionToken::mint` then `parse` | a minted token parses back to its user, key and hash (ids of 1..=512 bytes) |
//! | `jwt` | any string; the valid JWT with flipped, inserted, deleted bytes, swapped segments, random headers (alg, kid, jku, …); random claims signed every which way | no panic; nothing but the unmodified valid JWT, or claims the right key really signed and a model of the checks accepts, gets through |
//! | `bodies` | any bytes, text and JSON as the body of session-create and cache-put, under every credential | no panic; the status and error code a model of the contract predicts, always in {200, 400, 401, 403, 413}; JSON with `success` and `error.code`; what cache-put stored reads back byte for byte |
//! | `events` | the API Gateway events of `events/`, `shared/fuzz/seeds/event/` and `shared/fuzz/corpus/request/`, mutated as JSON and as bytes | `shared::lambda::serve` never panics: it refuses (400) exactly the events `lambda_http` panics on, and serves the rest through `shared::handle`: a known status, JSON, never a 5xx |
//!
//! Every target first replays its seeds, `shared/fuzz/seeds/<target>/` (see `shared/fuzz/README.md`), then runs
//! `FUZZ_CASES` generated cases (default 2000, so `make test` stays short; `make fuzz` runs many
//! more). Generated cases start from the seeds too. `FUZZ_SEED` replays one run. Each target prints
//! its executions, crashes (a failed property or a panic: must be 0) and a histogram of outcomes.
//!
//! The handler targets run over `Store::Memory`: the input paths are the same for every store and
//! the memory store is fast; the stores themselves are covered by tests/conformance.rs.

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::lambda_runtime::{Context, LambdaEvent};
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Request};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{
    Config as RunnerConfig, RngAlgorithm, TestCaseError, TestRng, TestRunner,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shared::auth::{Verifier, origin_allowed};
use shared::session::{Session, now_unix};
use shared::store::MemoryStore;
use shared::token::{MAX_TOKEN_LEN, MAX_USER_ID_LEN, TokenError};
use shared::{Config, Endpoint, SessionToken, State, Store, handle};
use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;
use support::keys::TestKeys;

/// Generated cases per target when `FUZZ_CASES` is not set: a few seconds each.
const DEFAULT_CASES: u32 = 2000;
const SEEDS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds");
/// The corpus libFuzzer keeps for the cargo-fuzz targets (`make fuzz`).
const LIBFUZZER_CORPUS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus");
const EVENTS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../events");

const ISSUER: &str = "https://clerk.fuzz.example";
const ALLOWED_ORIGINS: &str = "chrome-extension://fuzzext,http://localhost:*";
const EVENTS_ORIGIN: &str = "chrome-extension://abcdefghijklmnopabcdefghijklmnop";
const USER: &str = "user_fuzz";
const OTHER_USER: &str = "user_fuzz_other";
/// The user of the session-create cases, so that their sessions never evict `USER`'s.
const CREATOR: &str = "user_fuzz_creator";
const ADMIN: &str = "user_fuzz_admin";
/// Largest body session-create reads (`CREATE_BODY_LIMIT` in handlers/session.rs).
const CREATE_BODY_LIMIT: usize = 4 * 1024;

// ---------------------------------------------------------------------------------------------
// Harness: case count, seed, corpus, counts
// ---------------------------------------------------------------------------------------------

fn cases() -> u32 {
    match std::env::var("FUZZ_CASES") {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("FUZZ_CASES={value:?} is not a whole number")),
        _ => DEFAULT_CASES,
    }
}

/// `FUZZ_SEED` (decimal or 0x-hex) to replay a run; otherwise a fresh one, printed.
fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| match std::env::var("FUZZ_SEED") {
        Ok(value) if !value.trim().is_empty() => {
            let value = value.trim();
            let parsed = match value.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => value.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("FUZZ_SEED={value:?} is not a number"))
        }
        _ => {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).expect("OS random numbers");
            u64::from_le_bytes(bytes)
        }
    })
}

/// One fuzz target: its executions, its outcomes, its seeds.
struct Target {
    name: &'static str,
    started: Instant,
    corpus_runs: AtomicU64,
    generated_runs: AtomicU64,
    outcomes: Mutex<BTreeMap<String, u64>>,
}

impl Target {
    fn new(name: &'static str) -> Self {
        Target {
            name,
            started: Instant::now(),
            corpus_runs: AtomicU64::new(0),
            generated_runs: AtomicU64::new(0),
            outcomes: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts one outcome, for the histogram printed at the end.
    fn note(&self, outcome: impl Into<String>) {
        *self
            .outcomes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(outcome.into())
            .or_default() += 1;
    }

    /// The files of `shared/fuzz/seeds/<dir>/`, sorted: (file name, bytes). There must be some.
    fn corpus(&self, dir: &str) -> Vec<(String, Vec<u8>)> {
        files_of(&Path::new(SEEDS_DIR).join(dir))
    }

    /// The files of libFuzzer's `shared/fuzz/corpus/<target>/`, sorted: (file name, bytes); none
    /// before the first `make fuzz`.
    fn libfuzzer_corpus(&self, target: &str) -> Vec<(String, Vec<u8>)> {
        let dir = Path::new(LIBFUZZER_CORPUS_DIR).join(target);
        if dir.is_dir() {
            files_of(&dir)
        } else {
            Vec::new()
        }
    }

    /// Runs `check` on every seed; a failure or panic of any fails the target, all reported.
    fn replay<T>(
        &self,
        seeds: impl IntoIterator<Item = (String, T)>,
        check: impl Fn(T) -> Result<(), TestCaseError>,
    ) {
        let mut failures = Vec::new();
        for (name, input) in seeds {
            self.corpus_runs.fetch_add(1, Ordering::Relaxed);
            match catch_unwind(AssertUnwindSafe(|| check(input))) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!("{name}: {e}")),
                Err(panic) => failures.push(format!("{name}: panicked: {}", panic_text(&panic))),
            }
        }
        assert!(
            failures.is_empty(),
            "fuzz {}: {} corpus seed(s) failed:\n{}",
            self.name,
            failures.len(),
            failures.join("\n")
        );
    }

    /// Runs `check` on `cases()` values of `strategy`; on a failure, shrinks it and fails with
    /// the smallest input found and the seed that replays the run.
    fn run<S: Strategy>(&self, strategy: S, check: impl Fn(S::Value) -> Result<(), TestCaseError>) {
        let config = RunnerConfig {
            cases: cases(),
            failure_persistence: None,
            max_shrink_iters: 4096,
            ..RunnerConfig::default()
        };
        // One stream per target, so that adding a target changes no other target's inputs.
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed().to_le_bytes());
        for (slot, byte) in key[8..].iter_mut().zip(self.name.bytes()) {
            *slot = byte;
        }
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &key);
        let mut runner = TestRunner::new_with_rng(config, rng);
        let result = runner.run(&strategy, |input| {
            self.generated_runs.fetch_add(1, Ordering::Relaxed);
            check(input)
        });
        if let Err(e) = result {
            panic!(
                "fuzz {}: crash after {} generated cases (replay: FUZZ_SEED={:#x}): {e}",
                self.name,
                self.generated_runs.load(Ordering::Relaxed),
                seed()
            );
        }
    }

    fn report(&self) {
        let corpus = self.corpus_runs.load(Ordering::Relaxed);
        let generated = self.generated_runs.load(Ordering::Relaxed);
        let outcomes = self
            .outcomes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        eprintln!(
            "fuzz {:<16} executions={} (corpus {corpus}, generated {generated}) crashes=0 \
             time={:.1?} seed={:#x} cases={}\n    outcomes: {outcomes}",
            self.name,
            corpus + generated,
            self.started.elapsed(),
            seed(),
            cases()
        );
    }
}

/// The files of `dir`, sorted: (file name, bytes). There must be some.
fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read the corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes =
                std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            (name, bytes)
        })
        .collect()
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(not a string)".into())
}

/// `prop_assert!` for conditions computed outside the macro's reach.
fn ensure(condition: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if condition {
        Ok(())
    } else {
        Err(TestCaseError::fail(what()))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Generic generators: byte mutations, strings, JSON
// ---------------------------------------------------------------------------------------------

/// Fragments that tend to matter to parsers of tokens, JSON, paths and headers.
const DICTIONARY: &[&str] = &[
    ".",
    "..",
    "=",
    "==",
    "+",
    "/",
    "-",
    "_",
    "%00",
    "\0",
    "{",
    "}",
    ":",
    "#",
    "%FF",
    "%2F",
    "%2e%2e",
    "\u{FFFD}",
    "\u{202E}",
    "é",
    "eyJ",
    "\"",
    "\\",
    "\\u0000",
    " ",
    "\t",
    "\r\n",
    "null",
    "true",
    "-1",
    "0",
    "1e999",
    "18446744073709551616",
    "[",
    "]",
    ",",
    "{}",
    "[]",
    "\"remember_me\"",
    "\"sub\":",
    "RS256",
    "none",
    "HS256",
];

/// One edit of a byte string; indices scale to its length.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Insert(Index, u8),
    InsertText(Index, &'static str),
    Delete(Index, usize),
    Duplicate(Index, usize),
    Truncate(Index),
    Swap(Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::FlipBit(i, bit)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => (any::<Index>(), select(DICTIONARY)).prop_map(|(i, t)| Mutation::InsertText(i, t)),
        2 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
    ]
}

fn mutate(input: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for m in mutations {
        let len = bytes.len();
        // An index into the bytes, or (for inserts) one past the end.
        let at = |i: &Index| if len == 0 { 0 } else { i.index(len) };
        let gap = |i: &Index| i.index(len + 1);
        match m {
            Mutation::FlipBit(i, bit) if len > 0 => bytes[at(i)] ^= 1 << bit,
            Mutation::SetByte(i, b) if len > 0 => bytes[at(i)] = *b,
            Mutation::Insert(i, b) => bytes.insert(gap(i), *b),
            Mutation::InsertText(i, text) => {
                let at = gap(i);
                bytes.splice(at..at, text.bytes());
            }
            Mutation::Delete(i, n) if len > 0 => {
                let start = at(i);
                bytes.drain(start..(start + n).min(len));
            }
            Mutation::Duplicate(i, n) if len > 0 => {
                let start = at(i);
                let copy = bytes[start..(start + n).min(len)].to_vec();
                bytes.splice(start..start, copy);
            }
            Mutation::Truncate(i) => bytes.truncate(gap(i)),
            Mutation::Swap(a, b) if len > 0 => bytes.swap(at(a), at(b)),
            _ => {}
        }
    }
    bytes
}

/// Short strings of every kind: printable, any char (NUL, controls, surrogate-free unicode),
/// dictionary fragments.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,16}",
        vec(any::<char>(), 0..12).prop_map(|c| c.into_iter().collect()),
        select(DICTIONARY).prop_map(str::to_owned),
    ]
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((text(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

// ---------------------------------------------------------------------------------------------
// Target 1: the session token parser
// ---------------------------------------------------------------------------------------------

/// `Some(bytes)` when `s` is the canonical unpadded base64url encoding of `bytes`.
fn canonical_b64(s: &str) -> Option<Vec<u8>> {
    let bytes = B64.decode(s).ok()?;
    (B64.encode(&bytes) == s).then_some(bytes)
}

/// The token format as the contract states it, written independently of token.rs: the user id
/// (1..=512 bytes of UTF-8) in canonical base64url, one dot, 32 random bytes in canonical
/// base64url (43 characters); nothing else, and nothing over 1024 bytes.
fn token_model(raw: &str) -> Result<String, TokenError> {
    if raw.is_empty() {
        return Err(TokenError::Empty);
    }
    if raw.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    let parts: Vec<&str> = raw.split('.').collect();
    let [user_part, secret] = parts.as_slice() else {
        return Err(TokenError::Malformed);
    };
    let secret_ok = secret.len() == 43 && canonical_b64(secret).is_some_and(|b| b.len() == 32);
    let user_id = canonical_b64(user_part)
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|id| !id.is_empty() && id.len() <= MAX_USER_ID_LEN);
    match user_id {
        Some(id) if secret_ok => Ok(id),
        _ => Err(TokenError::Malformed),
    }
}

fn check_token(target: &Target, raw: &str) -> Result<(), TestCaseError> {
    let parsed = SessionToken::parse(raw);
    let model = token_model(raw);
    match (&parsed, &model) {
        (Ok(token), Ok(user_id)) => {
            target.note("accepted");
            let (user_part, secret) = raw.split_once('.').unwrap();
            ensure(token.user_id() == user_id, || {
                format!("{raw:?}: user {:?}, expected {user_id:?}", token.user_id())
            })?;
            ensure(token.expose() == raw, || {
                format!("{raw:?}: exposes another text")
            })?;
            ensure(token.user_key().as_str() == user_part, || {
                format!("{raw:?}: user key {:?}", token.user_key())
            })?;
            ensure(token.user_key().user_id() == *user_id, || {
                format!("{raw:?}: the user key decodes to another id")
            })?;
            let hash: [u8; 32] = Sha256::digest(raw.as_bytes()).into();
            ensure(token.hash().0 == hash, || {
                format!("{raw:?}: hash is not SHA-256")
            })?;
            ensure(!format!("{token:?}").contains(secret), || {
                format!("{raw:?}: Debug shows the secret")
            })
        }
        (Err(got), Err(want)) => {
            target.note(format!("refused:{got:?}"));
            ensure(got == want, || {
                format!("{raw:?}: refused as {got:?}, expected {want:?}")
            })
        }
        _ => Err(TestCaseError::fail(format!(
            "{raw:?}: parse says {parsed:?}, the format says {model:?}"
        ))),
    }
}

/// User ids of every kind, the 512-byte limit included.
fn user_id() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => vec(any::<char>(), 0..40).prop_map(|c| c.into_iter().collect::<String>()),
        2 => "[a-z0-9_]{1,24}",
        1 => (505usize..=520).prop_map(|n| "u".repeat(n)),
        1 => (166usize..=174).prop_map(|n| "€".repeat(n)),
        1 => select(vec!["a{b}c:#", "x}", "{x}", "../..", "a/b", "nul\0", "%FF", ".", ""]).prop_map(str::to_owned),
    ]
}

fn token_input(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = String> {
    let shaped = (
        "[A-Za-z0-9_=+/-]{0,24}",
        select(vec!["", ".", ".", ".", "..", ". "]),
        prop_oneof!["[A-Za-z0-9_-]{41,45}", "[A-Za-z0-9_=+/.-]{43}"],
    )
        .prop_map(|(u, dot, s)| format!("{u}{dot}{s}"));
    // Well-formed tokens (any user id, any secret), then perhaps damaged.
    let formed = (user_id(), any::<[u8; 32]>(), vec(mutation(), 0..3)).prop_map(|(u, s, ms)| {
        let token = format!("{}.{}", B64.encode(u.as_bytes()), B64.encode(s));
        lossy(&mutate(token.as_bytes(), &ms))
    });
    let seeded =
        (select(seeds), vec(mutation(), 0..5)).prop_map(|(seed, ms)| lossy(&mutate(&seed, &ms)));
    prop_oneof![
        2 => vec(any::<char>(), 0..80).prop_map(|c| c.into_iter().collect::<String>()),
        2 => vec(any::<u8>(), 0..96).prop_map(|b| lossy(&b)),
        2 => shaped,
        4 => formed,
        3 => seeded,
        1 => (1000usize..1100, select(vec!["a", ".", "-"])).prop_map(|(n, c)| c.repeat(n)),
    ]
}

#[test]
fn fuzz_token_parser() {
    let target = Target::new("token");
    let corpus = target.corpus("token");
    target.replay(corpus.iter().cloned(), |bytes| {
        check_token(&target, &lossy(&bytes))
    });
    // What libFuzzer kept for its token target: the text inputs (others never reach a parser).
    let kept = target.libfuzzer_corpus("token").into_iter();
    let kept = kept.filter_map(|(name, bytes)| Some((name, String::from_utf8(bytes).ok()?)));
    target.replay(kept, |raw| check_token(&target, &raw));
    let seeds: Vec<Vec<u8>> = corpus.into_iter().map(|(_, b)| b).collect();
    target.run(token_input(seeds), |raw| check_token(&target, &raw));
    target.report();
}

/// What the `device` target of `shared/fuzz/` checks: a device label is short, plain and kept as
/// it is by a store; the first 64 bytes of an agent read back as their label.
fn check_device(target: &Target, agent: &str) -> Result<(), TestCaseError> {
    use shared::device::{MAX_DEVICE_LEN, device_label, stored_device};
    let label = device_label(agent);
    target.note(if label.is_some() { "label" } else { "unknown" });
    if let Some(label) = &label {
        ensure(
            !label.is_empty() && label.len() <= MAX_DEVICE_LEN && label.trim() == label,
            || format!("{agent:?} -> {label:?}: empty, long or padded"),
        )?;
        ensure(
            !label.contains(['|', '/']) && !label.chars().any(char::is_control),
            || format!("{agent:?} -> {label:?}: a pipe, slash or control character"),
        )?;
        ensure(stored_device(label).as_ref() == Some(label), || {
            format!("{label:?} does not read back as itself")
        })?;
    }
    let mut cut = agent.len().min(64);
    while !agent.is_char_boundary(cut) {
        cut -= 1;
    }
    let old = &agent[..cut];
    ensure(
        !old.contains('/') || stored_device(old) == device_label(old),
        || format!("{old:?}: an old record reads otherwise than its label"),
    )
}

#[test]
fn fuzz_device_label() {
    let target = Target::new("device");
    let corpus = target.corpus("device");
    target.replay(corpus.iter().cloned(), |bytes| {
        check_device(&target, &lossy(&bytes))
    });
    let kept = target.libfuzzer_corpus("device").into_iter();
    let kept = kept.filter_map(|(name, bytes)| Some((name, String::from_utf8(bytes).ok()?)));
    target.replay(kept, |agent| check_device(&target, &agent));
    let seeds: Vec<String> = corpus.into_iter().map(|(_, b)| lossy(&b)).collect();
    let agents = prop_oneof![
        // A real agent with edits: text spliced in at any point.
        (select(seeds), any::<prop::sample::Index>(), text()).prop_map(|(seed, at, insert)| {
            let mut at = at.index(seed.len() + 1);
            while !seed.is_char_boundary(at) {
                at -= 1;
            }
            format!("{}{insert}{}", &seed[..at], &seed[at..])
        }),
        text(),
        vec(any::<char>(), 0..300).prop_map(|c| c.into_iter().collect::<String>()),
        (
            1000usize..3000,
            select(vec!["Chrome/1", "/", "|", "é", " on "])
        )
            .prop_map(|(n, c)| c.repeat(n / c.len())),
    ];
    target.run(agents, |agent| check_device(&target, &agent));
    target.report();
}

#[test]
fn fuzz_token_round_trip() {
    let target = Target::new("token_round_trip");
    let check = |id: String| -> Result<(), TestCaseError> {
        let token = SessionToken::mint(&id);
        let (user_part, secret) = token.expose().split_once('.').unwrap();
        ensure(
            secret.len() == 43 && canonical_b64(secret).is_some_and(|s| s.len() == 32),
            || format!("{id:?}: the secret is not 32 bytes of base64url"),
        )?;
        ensure(user_part == B64.encode(id.as_bytes()), || {
            format!("{id:?}: the user part is not its base64url")
        })?;
        let usable = !id.is_empty() && id.len() <= MAX_USER_ID_LEN;
        match SessionToken::parse(token.expose()) {
            Ok(parsed) => {
                target.note("parsed_back");
                ensure(usable, || format!("{id:?}: an unusable id parsed back"))?;
                ensure(parsed.user_id() == id, || {
                    format!("{id:?}: came back as {:?}", parsed.user_id())
                })?;
                ensure(parsed.hash() == token.hash(), || {
                    format!("{id:?}: another hash")
                })?;
                ensure(parsed.user_key() == token.user_key(), || {
                    format!("{id:?}: another key")
                })
            }
            Err(e) => {
                target.note(format!("refused:{e:?}"));
                ensure(!usable, || {
                    format!("{id:?}: a minted token was refused: {e:?}")
                })
            }
        }
    };
    let corpus = target.corpus("token_round_trip");
    target.replay(corpus, |bytes| check(lossy(&bytes)));
    target.run(user_id(), check);
    target.report();
}

// ---------------------------------------------------------------------------------------------
// Target 2: the Clerk JWT path (header, claims, signature)
// ---------------------------------------------------------------------------------------------

fn fuzz_config(extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::from([
        (
            "CLERK_JWT_KEY".into(),
            TestKeys::shared().public_pem.clone(),
        ),
        ("ALLOWED_ORIGINS".into(), ALLOWED_ORIGINS.into()),
    ]);
    for (name, value) in extra {
        vars.insert((*name).into(), (*value).into());
    }
    Config::from_map(&vars).expect("a valid fuzz configuration")
}

fn allowed_origins() -> Vec<String> {
    ALLOWED_ORIGINS.split(',').map(str::to_owned).collect()
}

/// Keys and the one valid JWT the JWT target starts from.
struct JwtRig {
    verifier: Verifier,
    /// RS256 by the configured key, for `USER`; lives for days, so long runs keep it valid.
    valid: String,
    right: EncodingKey,
    wrong: EncodingKey,
    /// HMAC keyed with the public PEM: the classic RS256 → HS256 confusion.
    hmac_public: EncodingKey,
}

impl JwtRig {
    fn new() -> Self {
        let config = fuzz_config(&[("CLERK_ISSUER", ISSUER)]);
        let right = EncodingKey::from_rsa_pem(TestKeys::shared().private_pem.as_bytes()).unwrap();
        let wrong = EncodingKey::from_rsa_pem(TestKeys::other().private_pem.as_bytes()).unwrap();
        let now = now_unix();
        let claims = json!({
            "sub": USER, "iss": ISSUER, "azp": "chrome-extension://fuzzext",
            "iat": now, "nbf": now - 5, "exp": now + 7 * 86_400, "sid": "sess_fuzz",
        });
        let valid = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &right).unwrap();
        JwtRig {
            verifier: Verifier::new(&config).expect("a verifier"),
            valid,
            right,
            wrong,
            hmac_public: EncodingKey::from_secret(TestKeys::shared().public_pem.as_bytes()),
        }
    }
}

/// A time claim: absent, now plus an offset well away from the leeway edges, or any JSON.
#[derive(Debug, Clone)]
enum TimeClaim {
    Absent,
    Offset(i64),
    Raw(Value),
}

#[derive(Debug, Clone)]
enum StringClaim {
    Absent,
    Str(String),
    Raw(Value),
}

#[derive(Debug, Clone)]
struct ClaimsSpec {
    sub: StringClaim,
    exp: TimeClaim,
    nbf: TimeClaim,
    iss: StringClaim,
    azp: StringClaim,
    /// Another key, any value (`aud`, `iat`, anything).
    extra: Option<(String, Value)>,
    /// A second `"<key>": <value>` appended to the JSON text: duplicate claims.
    duplicate: Option<(&'static str, Value)>,
}

#[derive(Debug, Clone, Copy)]
enum Signer {
    /// RS256 by the configured key: the only one that can pass.
    Right,
    /// RS256 by another key pair.
    Wrong,
    /// `alg: HS256`, HMAC keyed with the public PEM.
    HmacPublic,
    /// `alg: RS256` in the header, HMAC keyed with the public PEM as the signature.
    HmacUnderRs256,
    /// `alg: none` (and its spellings), no signature or a copied one.
    None(&'static str, bool),
    /// The right key under another algorithm (RS384, RS512, PS256, …).
    RightOtherAlg(Algorithm),
}

#[derive(Debug, Clone)]
enum JwtCase {
    Arbitrary(String),
    /// The valid JWT with bytes changed.
    Mutated(Vec<Mutation>),
    /// The valid JWT's segments (0..=2), an empty one (3) or junk (4), joined by dots.
    Segments(Vec<usize>),
    /// A random header over the valid payload, with the signature of `HeaderSig`.
    Header(Value, HeaderSig),
    /// Random claims, signed by `Signer`, with a `kid` maybe.
    Claims(Box<ClaimsSpec>, Signer, Option<String>),
    /// A corpus seed, mutated.
    Seed(Vec<u8>, Vec<Mutation>),
}

#[derive(Debug, Clone, Copy)]
enum HeaderSig {
    /// The valid JWT's own signature (over another header).
    Original,
    /// HMAC keyed with the public PEM.
    HmacPublic,
    /// None at all.
    Empty,
    /// A real RS256 signature by the configured key over this header: accepted only if the
    /// header says RS256.
    Right,
}

/// `exp` (`expiry`) or `nbf` values. Offsets stay clear of the 5 s leeway on either side (and of
/// a slow machine's seconds between signing and verifying).
fn time_claim(expiry: bool) -> impl Strategy<Value = TimeClaim> {
    let offsets = if expiry {
        vec![
            -86_400 * 400,
            -3600,
            -60,
            -10,
            30,
            600,
            86_400,
            86_400 * 400,
        ]
    } else {
        vec![-3600, -600, -30, 0, 30, 600, 3600]
    };
    prop_oneof![
        1 => Just(TimeClaim::Absent),
        4 => select(offsets).prop_map(TimeClaim::Offset),
        2 => prop_oneof![
            json_value(),
            Just(json!(u64::MAX)),
            Just(json!(-1)),
            Just(json!(1e300)),
            Just(json!("9999999999")),
            any::<f64>().prop_map(|f| json!(f)),
        ]
        .prop_map(TimeClaim::Raw),
    ]
}

fn string_claim(values: Vec<String>) -> impl Strategy<Value = StringClaim> {
    prop_oneof![
        1 => Just(StringClaim::Absent),
        5 => select(values).prop_map(StringClaim::Str),
        2 => text().prop_map(StringClaim::Str),
        1 => json_value().prop_map(StringClaim::Raw),
    ]
}

fn claims_spec() -> impl Strategy<Value = ClaimsSpec> {
    let subs = vec![
        USER.to_owned(),
        "a{b}c:#".into(),
        "quote\"back\\slash".into(),
        "ünï ✓".into(),
        String::new(),
        "u".repeat(512),
        "u".repeat(513),
    ];
    let issuers = vec![
        ISSUER.to_owned(),
        format!("{ISSUER}/"),
        "https://evil.example".into(),
    ];
    let origins = vec![
        "chrome-extension://fuzzext".to_owned(),
        "http://localhost:3000".into(),
        "http://localhost".into(),
        "https://evil.example".into(),
        "chrome-extension://fuzzext2".into(),
        String::new(),
    ];
    (
        string_claim(subs),
        time_claim(true),
        time_claim(false),
        string_claim(issuers),
        string_claim(origins),
        option::of((text(), json_value())),
        option::weighted(
            0.1,
            (select(vec!["sub", "exp", "azp", "iss"]), json_value()),
        ),
    )
        .prop_map(|(sub, exp, nbf, iss, azp, extra, duplicate)| ClaimsSpec {
            sub,
            exp,
            nbf,
            iss,
            azp,
            extra,
            duplicate,
        })
}

/// Random claims, or (half the time) valid claims with a few fields random: so that the model's
/// "accept" side is exercised too, not only its many ways to refuse.
fn claims_near_valid() -> impl Strategy<Value = ClaimsSpec> {
    (
        claims_spec(),
        any::<bool>(),
        [proptest::bool::weighted(0.75); 5],
    )
        .prop_map(|(mut spec, near, keep)| {
            if near {
                if keep[0] {
                    spec.sub = StringClaim::Str(USER.into());
                }
                if keep[1] {
                    spec.exp = TimeClaim::Offset(3600);
                }
                if keep[2] {
                    spec.nbf = TimeClaim::Offset(-60);
                }
                if keep[3] {
                    spec.iss = StringClaim::Str(ISSUER.into());
                }
                if keep[4] {
                    spec.azp = StringClaim::Absent;
                }
            }
            spec
        })
}

fn signer() -> impl Strategy<Value = Signer> {
    prop_oneof![
        // Signing is slow with an unoptimised RSA: the RSA signers get a small share.
        3 => Just(Signer::Right),
        1 => Just(Signer::Wrong),
        2 => Just(Signer::HmacPublic),
        2 => Just(Signer::HmacUnderRs256),
        2 => (select(vec!["none", "None", "NONE", "nOnE"]), any::<bool>())
            .prop_map(|(alg, copy)| Signer::None(alg, copy)),
        1 => select(vec![Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS512])
            .prop_map(Signer::RightOtherAlg),
    ]
}

fn header_json() -> impl Strategy<Value = Value> {
    let alg = prop_oneof![
        4 => select(vec![
            "RS256", "none", "None", "HS256", "HS384", "HS512", "RS384", "RS512", "PS256", "ES256",
            "EdDSA", "rs256", "RS256 ", "", "RS256\u{0}",
        ])
        .prop_map(|s| json!(s)),
        1 => json_value(),
    ];
    let kid = prop_oneof![
        "[a-zA-Z0-9_-]{0,16}".prop_map(Value::String),
        Just(json!("../../../../dev/null")),
        Just(json!("' OR 1=1 --")),
        json_value(),
    ];
    let extra_name = select(vec![
        "jku", "jwk", "x5u", "x5c", "crit", "b64", "cty", "zip", "enc",
    ]);
    (
        option::weighted(0.95, alg),
        option::of(kid),
        option::of(select(vec!["JWT", "jwt", "JWS", ""])),
        option::of((extra_name, json_value())),
    )
        .prop_map(|(alg, kid, typ, extra)| {
            let mut header = serde_json::Map::new();
            if let Some(alg) = alg {
                header.insert("alg".into(), alg);
            }
            if let Some(kid) = kid {
                header.insert("kid".into(), kid);
            }
            if let Some(typ) = typ {
                header.insert("typ".into(), json!(typ));
            }
            if let Some((name, value)) = extra {
                header.insert(name.into(), value);
            }
            Value::Object(header)
        })
}

fn jwt_case(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = JwtCase> {
    let sig = select(vec![
        HeaderSig::Original,
        HeaderSig::HmacPublic,
        HeaderSig::Empty,
        HeaderSig::Right,
    ]);
    prop_oneof![
        2 => prop_oneof![
            vec(any::<char>(), 0..200).prop_map(|c| c.into_iter().collect::<String>()),
            ("eyJ[A-Za-z0-9_-]{0,60}", "eyJ[A-Za-z0-9_-]{0,200}", "[A-Za-z0-9_-]{0,400}")
                .prop_map(|(h, p, s)| format!("{h}.{p}.{s}")),
        ]
        .prop_map(JwtCase::Arbitrary),
        6 => vec(mutation(), 1..6).prop_map(JwtCase::Mutated),
        2 => vec(0usize..5, 0..6).prop_map(JwtCase::Segments),
        3 => (header_json(), sig).prop_map(|(h, s)| JwtCase::Header(h, s)),
        4 => (claims_near_valid(), signer(), option::weighted(0.3, "[a-z0-9]{1,8}"))
            .prop_map(|(c, s, k)| JwtCase::Claims(Box::new(c), s, k)),
        2 => (select(seeds), vec(mutation(), 0..4)).prop_map(|(s, m)| JwtCase::Seed(s, m)),
    ]
}

/// What the verifier must answer.
#[derive(Debug, PartialEq)]
enum Expect {
    Accept(String),
    Reject,
}

/// A time claim as the JWT library reads it: a non-negative integer, or a finite non-negative
/// float rounded; anything else is malformed.
fn numeric_date(value: &Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    if value.is_i64() {
        return None;
    }
    value
        .as_f64()
        .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
        .map(|f| f.round() as u64)
}

impl ClaimsSpec {
    /// The claims as JSON text, and whether a claim is there twice.
    fn resolve(&self, now: i64) -> (String, bool) {
        let mut claims = serde_json::Map::new();
        if let Some((key, value)) = &self.extra {
            claims.insert(key.clone(), value.clone());
        }
        let mut put = |name: &str, value: Option<Value>| match value {
            Some(v) => {
                claims.insert(name.into(), v);
            }
            None => {
                claims.remove(name);
            }
        };
        let string = |c: &StringClaim| match c {
            StringClaim::Absent => None,
            StringClaim::Str(s) => Some(json!(s)),
            StringClaim::Raw(v) => Some(v.clone()),
        };
        let time = |c: &TimeClaim| match c {
            TimeClaim::Absent => None,
            TimeClaim::Offset(o) => Some(json!(now + o)),
            TimeClaim::Raw(v) => Some(v.clone()),
        };
        put("sub", string(&self.sub));
        put("iss", string(&self.iss));
        put("azp", string(&self.azp));
        put("exp", time(&self.exp));
        put("nbf", time(&self.nbf));
        let duplicated = self
            .duplicate
            .as_ref()
            .is_some_and(|(key, _)| claims.contains_key(*key));
        let mut text = Value::Object(claims).to_string();
        if let Some((key, value)) = self.duplicate.as_ref().filter(|_| duplicated) {
            text.pop();
            text.push_str(&format!(",{}:{value}}}", json!(key)));
        }
        (text, duplicated)
    }

    /// The contract's checks: RS256 (the signer's business), `exp` required and not past,
    /// `nbf` not ahead, `sub` a string of 1..=512 bytes, `iss` the configured one, `azp` absent
    /// or an allowed origin. Duplicate claims are malformed JSON for a struct: refused.
    fn expect(&self, now: i64, duplicated: bool) -> Expect {
        let now = now as u64;
        if duplicated {
            return Expect::Reject;
        }
        // A raw JSON string is a string claim like any other.
        let plain = |c: &StringClaim| match c {
            StringClaim::Raw(Value::String(s)) => StringClaim::Str(s.clone()),
            other => other.clone(),
        };
        let sub = match plain(&self.sub) {
            StringClaim::Str(s) if !s.is_empty() && s.len() <= MAX_USER_ID_LEN => s,
            _ => return Expect::Reject,
        };
        let exp_ok = match &self.exp {
            TimeClaim::Absent => false,
            TimeClaim::Offset(o) => *o > 0,
            TimeClaim::Raw(v) => numeric_date(v).is_some_and(|exp| exp >= now),
        };
        let nbf_ok = match &self.nbf {
            TimeClaim::Absent => true,
            TimeClaim::Offset(o) => *o <= 0,
            TimeClaim::Raw(v) => numeric_date(v).is_some_and(|nbf| nbf <= now),
        };
        let iss_ok = match plain(&self.iss) {
            StringClaim::Str(s) => s == ISSUER,
            // The JWT library takes an array of issuers if one matches.
            StringClaim::Raw(Value::Array(items)) => {
                items.iter().all(Value::is_string) && items.contains(&json!(ISSUER))
            }
            _ => false,
        };
        let azp_ok = match plain(&self.azp) {
            StringClaim::Absent | StringClaim::Raw(Value::Null) => true,
            StringClaim::Str(s) => origin_allowed(&allowed_origins(), &s),
            StringClaim::Raw(_) => false,
        };
        if exp_ok && nbf_ok && iss_ok && azp_ok {
            Expect::Accept(sub)
        } else {
            Expect::Reject
        }
    }

    /// Raw time claims near `now` (±10 s) cannot be judged exactly; such cases are skipped.
    fn borderline(&self, now: i64) -> bool {
        [&self.exp, &self.nbf].iter().any(|c| match c {
            TimeClaim::Raw(v) => numeric_date(v).is_some_and(|t| (t as i64 - now).abs() <= 10),
            _ => false,
        })
    }
}

fn b64json(value: &Value) -> String {
    B64.encode(value.to_string())
}

fn check_jwt(
    target: &Target,
    rig: &JwtRig,
    rt: &tokio::runtime::Runtime,
    case: JwtCase,
) -> Result<(), TestCaseError> {
    let now = now_unix();
    let segments: Vec<&str> = rig.valid.split('.').collect();
    // A case the model cannot decide: it may pass, but only as the valid user.
    let mut either = false;
    let (kind, jwt, expect) = match &case {
        JwtCase::Arbitrary(s) => ("arbitrary", s.clone(), None),
        JwtCase::Mutated(ms) => ("mutated", lossy(&mutate(rig.valid.as_bytes(), ms)), None),
        JwtCase::Segments(order) => {
            let parts: Vec<&str> = order
                .iter()
                .map(|&i| match i {
                    0..=2 => segments[i],
                    3 => "",
                    _ => "eyJhbGciOiJub25lIn0",
                })
                .collect();
            ("segments", parts.join("."), None)
        }
        JwtCase::Header(header, sig) => {
            let input = format!("{}.{}", b64json(header), segments[1]);
            let signature = match sig {
                HeaderSig::Original => segments[2].to_owned(),
                HeaderSig::Empty => String::new(),
                HeaderSig::HmacPublic => {
                    jsonwebtoken::crypto::sign(input.as_bytes(), &rig.hmac_public, Algorithm::HS256)
                        .unwrap()
                }
                HeaderSig::Right => {
                    jsonwebtoken::crypto::sign(input.as_bytes(), &rig.right, Algorithm::RS256)
                        .unwrap()
                }
            };
            // Really signed by the key holder under `alg: RS256`: whether odd extra header
            // fields (kid, jku, crit, …) are tolerated is the JWT library's call, but nothing
            // but the valid claims can come out.
            if matches!(sig, HeaderSig::Right) && header["alg"] == json!("RS256") {
                either = true;
            }
            ("header", format!("{input}.{signature}"), None)
        }
        JwtCase::Claims(spec, signer, kid) => {
            if spec.borderline(now) {
                target.note("jwt:claims:borderline-skipped");
                return Ok(());
            }
            let (payload, duplicated) = spec.resolve(now);
            let encoded_payload = B64.encode(&payload);
            let header_of = |alg: &str| {
                let mut h = json!({ "alg": alg, "typ": "JWT" });
                if let Some(kid) = kid {
                    h["kid"] = json!(kid);
                }
                h
            };
            let sign = |alg_name: &str, key: &EncodingKey, alg: Algorithm| {
                let input = format!("{}.{encoded_payload}", b64json(&header_of(alg_name)));
                let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
                format!("{input}.{signature}")
            };
            let (jwt, expect) = match signer {
                Signer::Right => (
                    sign("RS256", &rig.right, Algorithm::RS256),
                    spec.expect(now, duplicated),
                ),
                Signer::Wrong => (sign("RS256", &rig.wrong, Algorithm::RS256), Expect::Reject),
                Signer::HmacPublic => (
                    sign("HS256", &rig.hmac_public, Algorithm::HS256),
                    Expect::Reject,
                ),
                Signer::HmacUnderRs256 => (
                    sign("RS256", &rig.hmac_public, Algorithm::HS256),
                    Expect::Reject,
                ),
                Signer::None(alg, copy) => {
                    let signature = if *copy { segments[2] } else { "" };
                    let jwt = format!("{}.{encoded_payload}.{signature}", b64json(&header_of(alg)));
                    (jwt, Expect::Reject)
                }
                Signer::RightOtherAlg(alg) => {
                    let name = format!("{alg:?}");
                    (sign(&name, &rig.right, *alg), Expect::Reject)
                }
            };
            ("claims", jwt, Some(expect))
        }
        JwtCase::Seed(seed, ms) => ("seed", lossy(&mutate(seed, ms)), None),
    };
    let result = rt.block_on(rig.verifier.verify(&jwt));
    target.note(format!(
        "jwt:{kind}:{}",
        if result.is_ok() {
            "accepted"
        } else {
            "refused"
        }
    ));
    // Without a model of its own, a case may pass only if it is the valid JWT itself.
    let expect = expect.unwrap_or_else(|| {
        if jwt == rig.valid {
            Expect::Accept(USER.into())
        } else {
            Expect::Reject
        }
    });
    match (&result, &expect) {
        (Ok(sub), Expect::Accept(want)) => ensure(sub == want, || {
            format!("{case:?}: accepted as {sub:?}, expected {want:?}")
        }),
        (Err(_), Expect::Reject) => Ok(()),
        (Ok(sub), Expect::Reject) if either => {
            if let JwtCase::Header(header, _) = &case {
                let fields: Vec<&str> = header
                    .as_object()
                    .map(|h| h.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                target.note(format!(
                    "jwt:header:right-key-accepted[{}]",
                    fields.join(",")
                ));
            }
            ensure(sub == USER, || format!("{case:?}: accepted as {sub:?}"))
        }
        _ => Err(TestCaseError::fail(format!(
            "{kind}: verify({jwt:?}) = {result:?}, expected {expect:?}; case {case:?}"
        ))),
    }
}

#[test]
fn fuzz_jwt_verify() {
    let target = Target::new("jwt");
    let rig = JwtRig::new();
    let rt = runtime();
    // Controls: the valid JWT passes, so every refusal below means something.
    assert_eq!(
        rt.block_on(rig.verifier.verify(&rig.valid)),
        Ok(USER.to_owned())
    );
    let corpus = target.corpus("jwt");
    target.replay(corpus.iter().cloned(), |bytes| {
        check_jwt(&target, &rig, &rt, JwtCase::Arbitrary(lossy(&bytes)))
    });
    let seeds: Vec<Vec<u8>> = corpus.into_iter().map(|(_, b)| b).collect();
    target.run(jwt_case(seeds), |case| check_jwt(&target, &rig, &rt, case));
    target.report();
}

// ---------------------------------------------------------------------------------------------
// Target 3: request bodies of session-create and cache-put
// ---------------------------------------------------------------------------------------------

/// The handler side of the fuzz targets: a state over the memory store and live credentials.
struct ApiRig {
    state: State,
    rt: tokio::runtime::Runtime,
    /// Valid for days, so long runs keep them valid.
    jwt: String,
    other_jwt: String,
    creator_jwt: String,
    /// Of `ADMIN`, who sees the global figures of session-stats.
    admin_jwt: String,
}

impl ApiRig {
    fn new(origins: &str) -> Self {
        let config = fuzz_config(&[
            ("ALLOWED_ORIGINS", origins),
            ("ADMIN_USER_IDS", ADMIN),
            // Sessions outlive the longest run.
            ("SESSION_TIMEOUT", "2592000"),
        ]);
        let state = State::with_store(config, Store::Memory(MemoryStore::new())).expect("a state");
        let long_jwt = |sub: &str| {
            let now = now_unix();
            let claims = json!({ "sub": sub, "iat": now, "nbf": now - 5, "exp": now + 7 * 86_400 });
            TestKeys::shared().sign(&claims, None)
        };
        ApiRig {
            state,
            rt: runtime(),
            jwt: long_jwt(USER),
            other_jwt: long_jwt(OTHER_USER),
            creator_jwt: long_jwt(CREATOR),
            admin_jwt: long_jwt(ADMIN),
        }
    }

    /// A fresh live session of `USER`, put straight into the store (no JWT to verify).
    fn session(&self) -> String {
        let token = SessionToken::mint(USER);
        let session = Session::new(USER, false, None, self.state.lifetimes(), now_unix());
        self.rt
            .block_on(self.state.store.create(&token, &session))
            .expect("store a session");
        token.expose().to_owned()
    }

    fn send(&self, endpoint: Endpoint, req: Request) -> (StatusCode, Value, bool) {
        let (status, raw, is_json) = self.send_raw(endpoint, req);
        (
            status,
            serde_json::from_slice(&raw).unwrap_or(Value::Null),
            is_json,
        )
    }

    /// The status, the body's bytes and whether the content type is JSON.
    fn send_raw(&self, endpoint: Endpoint, req: Request) -> (StatusCode, Vec<u8>, bool) {
        let response = self.rt.block_on(handle(&self.state, endpoint, req));
        let is_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == b"application/json");
        (
            response.status(),
            response.body().as_ref().to_vec(),
            is_json,
        )
    }
}

/// Every answer but a 204: JSON, `success` as the status says, an error code and message.
fn check_answer(
    status: StatusCode,
    body: &Value,
    is_json: bool,
    context: &dyn Fn() -> String,
) -> Result<(), TestCaseError> {
    if status == StatusCode::NO_CONTENT {
        return Ok(());
    }
    ensure(is_json && body.is_object(), || {
        format!("{}: {status} is not a JSON object: {body}", context())
    })?;
    ensure(body["success"] == json!(status.is_success()), || {
        format!("{}: {status} with success {}", context(), body["success"])
    })?;
    if !status.is_success() {
        ensure(
            body["error"]["code"]
                .as_str()
                .is_some_and(|c| !c.is_empty()),
            || format!("{}: {status} without error.code: {body}", context()),
        )?;
        ensure(body["error"]["message"].is_string(), || {
            format!("{}: {status} without error.message: {body}", context())
        })?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Auth {
    /// A valid Clerk JWT of `USER`.
    Jwt,
    /// A valid Clerk JWT of `OTHER_USER`.
    OtherJwt,
    /// A live session token of `USER`.
    Session,
    /// `Authorization: Bearer <garbage>`.
    GarbageJwt,
    /// `X-Session-Token: <garbage>`.
    GarbageSession,
    None,
}

#[derive(Debug, Clone)]
struct BodyCase {
    endpoint: Endpoint,
    auth: Auth,
    /// The cache path names `USER` (else `OTHER_USER`).
    own_path: bool,
    body: Vec<u8>,
    /// Sent as `Body::Text` when it is UTF-8 (API Gateway's usual), else as `Body::Binary`.
    as_text: bool,
}

fn body_bytes(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let sized = |limit: usize| {
        (limit - 2..=limit + 2, select(vec![b'a', b' ', b'1'])).prop_map(|(n, fill)| {
            // A JSON string, a number or whitespace of exactly n bytes.
            match fill {
                b'a' => format!("\"{}\"", "a".repeat(n - 2)).into_bytes(),
                b'1' => vec![b'1'; n],
                _ => vec![b' '; n],
            }
        })
    };
    prop_oneof![
        1 => Just(Vec::new()),
        3 => vec(any::<u8>(), 0..200),
        3 => vec(any::<char>(), 0..100).prop_map(|c| c.into_iter().collect::<String>().into_bytes()),
        6 => json_value().prop_map(|v| v.to_string().into_bytes()),
        4 => (json_value(), option::of(json_value())).prop_map(|(flag, extra)| {
            let mut body = json!({ "remember_me": flag });
            if let Some(extra) = extra {
                body["extra"] = extra;
            }
            body.to_string().into_bytes()
        }),
        2 => any::<Option<bool>>().prop_map(|flag| json!({ "remember_me": flag }).to_string().into_bytes()),
        1 => sized(CREATE_BODY_LIMIT),
        1 => sized(shared::config::DEFAULT_CACHE_MAX_BYTES),
        1 => (0usize..400, select(vec!["[", "{\"a\":"])).prop_map(|(depth, open)| {
            let close = if open == "[" { "]" } else { "}" };
            format!("{}1{}", open.repeat(depth), close.repeat(depth)).into_bytes()
        }),
        4 => (select(seeds), vec(mutation(), 0..4)).prop_map(|(seed, ms)| mutate(&seed, &ms)),
    ]
}

fn body_case(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = BodyCase> {
    (
        select(vec![Endpoint::SessionCreate, Endpoint::CachePut]),
        prop_oneof![
            8 => select(vec![Auth::Jwt, Auth::Session]),
            1 => select(vec![Auth::OtherJwt, Auth::GarbageJwt, Auth::GarbageSession, Auth::None]),
        ],
        proptest::bool::weighted(0.9),
        body_bytes(seeds),
        any::<bool>(),
    )
        .prop_map(|(endpoint, auth, own_path, body, as_text)| BodyCase {
            endpoint,
            auth,
            own_path,
            body,
            as_text,
        })
}

/// The status and error code the contract gives: credentials first, then the owner of the
/// cache, then the body (size, JSON, shape).
fn expected_body_answer(case: &BodyCase, cache_limit: usize) -> (u16, &'static str) {
    let create = case.endpoint == Endpoint::SessionCreate;
    let caller = match (case.auth, create) {
        (Auth::None, _) => return (401, "missing_credentials"),
        (Auth::GarbageJwt, _) => return (401, "invalid_jwt"),
        // create takes a Clerk JWT only.
        (Auth::Session | Auth::GarbageSession, true) => return (401, "missing_credentials"),
        (Auth::GarbageSession, false) => return (401, "invalid_token"),
        (Auth::Jwt | Auth::Session, _) => USER,
        (Auth::OtherJwt, _) => OTHER_USER,
    };
    let path_user = if case.own_path { USER } else { OTHER_USER };
    if !create && caller != path_user {
        return (403, "forbidden");
    }
    let limit = if create {
        CREATE_BODY_LIMIT
    } else {
        cache_limit
    };
    if case.body.len() > limit {
        return (413, "payload_too_large");
    }
    if case.body.iter().all(u8::is_ascii_whitespace) {
        return if create {
            (200, "")
        } else {
            (400, "invalid_json")
        };
    }
    let Ok(value) = serde_json::from_slice::<Value>(&case.body) else {
        return (400, "invalid_json");
    };
    if !create {
        return (200, "");
    }
    match value {
        Value::Object(map) => match map.get("remember_me") {
            None | Some(Value::Null | Value::Bool(_)) => (200, ""),
            Some(_) => (400, "invalid_request"),
        },
        _ => (400, "invalid_request"),
    }
}

fn with_auth(
    builder: lambda_http::http::request::Builder,
    rig: &ApiRig,
    endpoint: Endpoint,
    auth: Auth,
    session: &str,
) -> lambda_http::http::request::Builder {
    let bearer = |jwt: &str| format!("Bearer {jwt}");
    match auth {
        Auth::Jwt if endpoint == Endpoint::SessionCreate => {
            builder.header(header::AUTHORIZATION, bearer(&rig.creator_jwt))
        }
        Auth::Jwt => builder.header(header::AUTHORIZATION, bearer(&rig.jwt)),
        Auth::OtherJwt => builder.header(header::AUTHORIZATION, bearer(&rig.other_jwt)),
        Auth::Session => builder.header("x-session-token", session),
        Auth::GarbageJwt => builder.header(header::AUTHORIZATION, "Bearer eyJ.garbage.x"),
        Auth::GarbageSession => builder.header("x-session-token", "dXNlcg.not-a-secret"),
        Auth::None => builder,
    }
}

fn check_body(target: &Target, rig: &ApiRig, case: BodyCase) -> Result<(), TestCaseError> {
    let path = match (case.endpoint, case.own_path) {
        (Endpoint::SessionCreate, _) => "/api/session/create".to_owned(),
        (_, true) => format!("/api/cache/user/{USER}"),
        (_, false) => format!("/api/cache/user/{OTHER_USER}"),
    };
    let body = match (case.as_text, std::str::from_utf8(&case.body)) {
        (_, _) if case.body.is_empty() && case.as_text => Body::Empty,
        (true, Ok(text)) => Body::Text(text.to_owned()),
        _ => Body::Binary(case.body.clone()),
    };
    let builder = lambda_http::http::Request::builder()
        .method(Method::POST)
        .uri(&path)
        .header(header::CONTENT_TYPE, "application/json");
    let session = match case.auth {
        Auth::Session => rig.session(),
        _ => String::new(),
    };
    let req = with_auth(builder, rig, case.endpoint, case.auth, &session)
        .body(body)
        .unwrap();
    let (status, answer, is_json) = rig.send(case.endpoint, req);
    let function = case.endpoint.function();
    target.note(format!("{function}:{}", status.as_u16()));
    let context = || format!("{function} {case:?}");
    ensure([200, 400, 401, 403, 413].contains(&status.as_u16()), || {
        format!("{}: status {status}: {answer}", context())
    })?;
    check_answer(status, &answer, is_json, &context)?;
    let (want_status, want_code) = expected_body_answer(&case, rig.state.config.cache_max_bytes);
    let code = answer["error"]["code"].as_str().unwrap_or_default();
    ensure(status.as_u16() == want_status && code == want_code, || {
        format!(
            "{}: answered {status} {code:?}, the contract says {want_status} {want_code:?}: {answer}",
            context()
        )
    })?;
    if status == StatusCode::OK && case.endpoint == Endpoint::SessionCreate {
        let flag = serde_json::from_slice::<Value>(&case.body)
            .ok()
            .and_then(|v| v.get("remember_me").and_then(Value::as_bool))
            .unwrap_or(false);
        ensure(answer["remember_me"] == json!(flag), || {
            format!("{}: remember_me {}", context(), answer["remember_me"])
        })?;
        let token = answer["session_token"].as_str().unwrap_or_default();
        let owner = if case.auth == Auth::OtherJwt {
            OTHER_USER
        } else {
            CREATOR
        };
        ensure(
            SessionToken::parse(token).is_ok_and(|t| t.user_id() == owner),
            || format!("{}: an unusable session token", context()),
        )?;
    }
    if status == StatusCode::OK && case.endpoint == Endpoint::CachePut {
        // What was stored reads back, through the same credential.
        let builder = lambda_http::http::Request::builder()
            .method(Method::GET)
            .uri(&path);
        let req = with_auth(builder, rig, Endpoint::CacheGet, case.auth, &session)
            .body(Body::Empty)
            .unwrap();
        let (status, raw, _) = rig.send_raw(Endpoint::CacheGet, req);
        // Byte for byte: the JSON text as sent, without the whitespace around it.
        let json_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        let start = case.body.iter().position(|b| !json_space(b)).unwrap_or(0);
        let end = case
            .body
            .iter()
            .rposition(|b| !json_space(b))
            .map_or(0, |i| i + 1);
        let sent = lossy(&case.body[start..end]);
        let same = lossy(&raw).ends_with(&format!(",\"data\":{sent}}}"));
        ensure(status == StatusCode::OK && same, || {
            format!(
                "{}: stored {sent}, read back {status} {}",
                context(),
                lossy(&raw)
            )
        })?;
    }
    Ok(())
}

#[test]
fn fuzz_request_bodies() {
    let target = Target::new("bodies");
    let rig = ApiRig::new(ALLOWED_ORIGINS);
    let corpus = target.corpus("body");
    // Every seed through both endpoints, under the owner's JWT.
    let seeded = corpus.iter().flat_map(|(name, bytes)| {
        [Endpoint::SessionCreate, Endpoint::CachePut].map(|endpoint| {
            let case = BodyCase {
                endpoint,
                auth: Auth::Jwt,
                own_path: true,
                body: bytes.clone(),
                as_text: true,
            };
            (format!("{name} ({})", endpoint.function()), case)
        })
    });
    target.replay(seeded, |case| check_body(&target, &rig, case));
    // What libFuzzer kept for its cache_body target, as cache-put bodies.
    let kept = target
        .libfuzzer_corpus("cache_body")
        .into_iter()
        .map(|(name, body)| {
            let as_text = std::str::from_utf8(&body).is_ok();
            let case = BodyCase {
                endpoint: Endpoint::CachePut,
                auth: Auth::Session,
                own_path: true,
                body,
                as_text,
            };
            (format!("shared/fuzz/corpus/cache_body/{name}"), case)
        });
    target.replay(kept, |case| check_body(&target, &rig, case));
    let seeds: Vec<Vec<u8>> = corpus.into_iter().map(|(_, b)| b).collect();
    target.run(body_case(seeds), |case| check_body(&target, &rig, case));
    target.report();
}

// ---------------------------------------------------------------------------------------------
// Target 4: API Gateway event decoding, then the handler
// ---------------------------------------------------------------------------------------------

/// An event as a seed: its endpoint and its text, placeholders filled in.
#[derive(Debug, Clone)]
struct EventSeed {
    name: String,
    endpoint: Endpoint,
    text: String,
}

/// An event's text with `${JWT}`, `${OTHER_JWT}` and `${SESSION_TOKEN}` filled in (a fresh
/// session each time: some events log theirs out).
fn fill(rig: &ApiRig, text: &str) -> String {
    let mut text = text
        .replace("${JWT}", &rig.jwt)
        .replace("${OTHER_JWT}", &rig.other_jwt)
        .replace("${ADMIN_JWT}", &rig.admin_jwt);
    if text.contains("${SESSION_TOKEN}") {
        text = text.replace("${SESSION_TOKEN}", &rig.session());
    }
    text
}

fn event_seeds(target: &Target) -> Vec<EventSeed> {
    let mut seeds = Vec::new();
    let mut stack = vec![PathBuf::from(EVENTS_DIR)];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let relative = path
                    .strip_prefix(EVENTS_DIR)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let function = relative.split('/').next().unwrap_or_default();
                let endpoint = Endpoint::from_function(function)
                    .unwrap_or_else(|| panic!("events/{relative}: no function {function}"));
                let text = std::fs::read_to_string(&path).unwrap();
                seeds.push(EventSeed {
                    name: format!("events/{relative}"),
                    endpoint,
                    text,
                });
            }
        }
    }
    // shared/fuzz/seeds/event/<function>--<case>.json
    for (name, bytes) in target.corpus("event") {
        let function = name.split("--").next().unwrap_or_default();
        let endpoint = Endpoint::from_function(function).unwrap_or_else(|| {
            panic!("shared/fuzz/seeds/event/{name}: not <function>--<case>.json")
        });
        seeds.push(EventSeed {
            name: format!("shared/fuzz/seeds/event/{name}"),
            endpoint,
            text: lossy(&bytes),
        });
    }
    // What libFuzzer kept for the request target, sent where that target sends it.
    for (name, bytes) in target.libfuzzer_corpus("request") {
        seeds.push(EventSeed {
            name: format!("shared/fuzz/corpus/request/{name}"),
            endpoint: endpoint_for(&bytes),
            text: lossy(&bytes),
        });
    }
    seeds.sort_by(|a, b| a.name.cmp(&b.name));
    seeds
}

/// One edit of an event's JSON tree: the node at an index of its pointer list.
#[derive(Debug, Clone)]
enum JsonEdit {
    Replace(Index, Value),
    SetText(Index, String),
    Remove(Index),
    Insert(Index, String, Value),
}

#[derive(Debug, Clone)]
struct EventCase {
    seed: Index,
    /// Another function's handler for the event, sometimes.
    endpoint: Option<Endpoint>,
    edits: Vec<JsonEdit>,
    bytes: Vec<Mutation>,
}

fn event_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => text(),
        1 => select(vec![
            "GET", "POST", "OPTIONS", "DELETE", "get", "", "/api/cache/user/%FF", "/api/cache/user/../x",
            "/api/cache/user/a%2Fb", "/api/cache/user/%00", "/api/cache/user/{user_id}",
            "/api/session/create?x=1", "true", "false", "aGVsbG8=", "!!not base64!!", "application/json",
            "Bearer ", "Bearer eyJ.eyJ.", "chrome-extension://abcdefghijklmnopabcdefghijklmnop",
        ])
        .prop_map(str::to_owned),
        1 => (1usize..12_000).prop_map(|n| "x".repeat(n)),
    ]
}

fn event_case() -> impl Strategy<Value = EventCase> {
    let edit = prop_oneof![
        3 => (any::<Index>(), json_value()).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
        4 => (any::<Index>(), event_text()).prop_map(|(i, t)| JsonEdit::SetText(i, t)),
        2 => any::<Index>().prop_map(JsonEdit::Remove),
        1 => (any::<Index>(), text(), json_value()).prop_map(|(i, k, v)| JsonEdit::Insert(i, k, v)),
    ];
    (
        any::<Index>(),
        option::weighted(0.15, select(Endpoint::ALL.to_vec())),
        vec(edit, 0..4),
        prop_oneof![3 => Just(Vec::new()), 1 => vec(mutation(), 1..4)],
    )
        .prop_map(|(seed, endpoint, edits, bytes)| EventCase {
            seed,
            endpoint,
            edits,
            bytes,
        })
}

/// Every JSON pointer in `value`, the root included.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let key = key.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

fn edit_json(value: &mut Value, edit: &JsonEdit) {
    let mut all = Vec::new();
    pointers(value, String::new(), &mut all);
    let pick = |i: &Index| all[i.index(all.len())].clone();
    match edit {
        JsonEdit::Replace(i, new) => {
            if let Some(node) = value.pointer_mut(&pick(i)) {
                *node = new.clone();
            }
        }
        JsonEdit::SetText(i, text) => {
            if let Some(node) = value.pointer_mut(&pick(i)) {
                *node = Value::String(text.clone());
            }
        }
        JsonEdit::Remove(i) => {
            let pointer = pick(i);
            if let Some((parent, key)) = pointer.rsplit_once('/') {
                let key = key.replace("~1", "/").replace("~0", "~");
                match value.pointer_mut(parent) {
                    Some(Value::Object(map)) => {
                        map.remove(&key);
                    }
                    Some(Value::Array(items)) => {
                        if let Ok(n) = key.parse::<usize>()
                            && n < items.len()
                        {
                            items.remove(n);
                        }
                    }
                    _ => {}
                }
            }
        }
        JsonEdit::Insert(i, key, new) => {
            if let Some(Value::Object(map)) = value.pointer_mut(&pick(i)) {
                map.insert(key.clone(), new.clone());
            }
        }
    }
}

/// The endpoint the cargo-fuzz request target sends an input to: the one whose route the event
/// names, else one picked by a hash of the input (shared/fuzz/fuzz_targets/request.rs).
fn endpoint_for(bytes: &[u8]) -> Endpoint {
    let event: Value = serde_json::from_slice(bytes).unwrap_or_default();
    let (method, path) = if event.get("httpMethod").is_some() {
        (&event["httpMethod"], &event["path"])
    } else {
        (
            &event["requestContext"]["http"]["method"],
            &event["rawPath"],
        )
    };
    let path = path.as_str().unwrap_or_default();
    if path.contains("/api/cache/user/") {
        return if method == "GET" {
            Endpoint::CacheGet
        } else {
            Endpoint::CachePut
        };
    }
    if let Some(endpoint) = Endpoint::ALL.into_iter().find(|e| path.ends_with(e.path())) {
        return endpoint;
    }
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    Endpoint::ALL[(hash % Endpoint::ALL.len() as u64) as usize]
}

thread_local! {
    /// Set while `lambda_http` is expected to panic: its panics are then noted, not printed.
    static EXPECTING_UPSTREAM: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static UPSTREAM_PANICKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A panic hook that keeps quiet about `lambda_http`'s panics while one is expected; every
/// other panic goes to the previous hook as usual.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let upstream = info.location().is_some_and(|l| {
                l.file().contains("/lambda_http-") || l.file().contains("/aws_lambda_events-")
            });
            if upstream && EXPECTING_UPSTREAM.get() {
                UPSTREAM_PANICKED.set(true);
                return;
            }
            previous(info);
        }));
    });
}

/// Statuses the handlers may answer an event with, over the memory store.
const EVENT_STATUSES: [u16; 8] = [200, 204, 400, 401, 403, 404, 405, 413];

fn check_event(
    target: &Target,
    rig: &ApiRig,
    seeds: &[EventSeed],
    case: &EventCase,
) -> Result<(), TestCaseError> {
    let seed = &seeds[case.seed.index(seeds.len())];
    let endpoint = case.endpoint.unwrap_or(seed.endpoint);
    let mut text = fill(rig, &seed.text);
    if !case.edits.is_empty()
        && let Ok(mut value) = serde_json::from_str::<Value>(&text)
    {
        for edit in &case.edits {
            edit_json(&mut value, edit);
        }
        text = value.to_string();
    }
    let text = lossy(&mutate(text.as_bytes(), &case.bytes));
    run_event(target, rig, endpoint, &text, &|| {
        format!("{} as {}: {case:?}", seed.name, endpoint.function())
    })
}

/// An invocation as the runtime reads it: serde_json from the bytes, nothing checked after the
/// value.
fn read_event(text: &str) -> serde_json::Result<LambdaRequest> {
    use serde::Deserialize;
    LambdaRequest::deserialize(&mut serde_json::Deserializer::from_str(text))
}

fn run_event(
    target: &Target,
    rig: &ApiRig,
    endpoint: Endpoint,
    text: &str,
    context: &dyn Fn() -> String,
) -> Result<(), TestCaseError> {
    let Ok(payload) = read_event(text) else {
        target.note("event:not-an-event");
        return Ok(());
    };
    // The check refuses exactly the events lambda_http's own conversion panics on.
    let refused = shared::lambda::refusal(&payload);
    EXPECTING_UPSTREAM.set(true);
    UPSTREAM_PANICKED.set(false);
    let converted = catch_unwind(AssertUnwindSafe(|| {
        drop(Request::from(read_event(text).unwrap()))
    }));
    EXPECTING_UPSTREAM.set(false);
    let upstream_panic = converted.is_err() && UPSTREAM_PANICKED.get();
    if let Err(panic) = &converted
        && !upstream_panic
    {
        return Err(TestCaseError::fail(format!(
            "converting the event panicked outside lambda_http ({}); {}",
            panic_text(panic),
            context()
        )));
    }
    ensure(refused.is_some() == upstream_panic, || {
        format!(
            "refused {refused:?}, lambda_http panics: {upstream_panic}; {}",
            context()
        )
    })?;
    let event = LambdaEvent::new(payload, Context::default());
    let answer = catch_unwind(AssertUnwindSafe(|| {
        rig.rt
            .block_on(shared::lambda::serve(&rig.state, endpoint, event))
            .map(|answer| serde_json::to_value(answer).unwrap())
    }))
    .map_err(|panic| {
        TestCaseError::fail(format!(
            "serve panicked ({}) on {text:?}; {}",
            panic_text(&panic),
            context()
        ))
    })?
    .unwrap();
    let v1 = answer.get("cookies").is_none();
    let headers = &answer[if v1 { "multiValueHeaders" } else { "headers" }];
    let content_type = match &headers["content-type"] {
        Value::Array(values) => values.first().cloned().unwrap_or_default(),
        value => value.clone(),
    };
    let status = StatusCode::from_u16(answer["statusCode"].as_u64().unwrap_or(0) as u16)
        .map_err(|_| TestCaseError::fail(format!("no status: {answer}; {}", context())))?;
    let body: Value =
        serde_json::from_str(answer["body"].as_str().unwrap_or_default()).unwrap_or(Value::Null);
    let kind = if v1 { "v1" } else { "v2" };
    match &refused {
        Some(_) => target.note(format!("event:{kind}:{}:unreadable", status.as_u16())),
        None => target.note(format!("event:{kind}:{}", status.as_u16())),
    }
    if refused.is_some() {
        ensure(
            status == StatusCode::BAD_REQUEST && body["error"]["code"] == "invalid_request",
            || format!("an unreadable event answered {answer}; {}", context()),
        )?;
    }
    ensure(EVENT_STATUSES.contains(&status.as_u16()), || {
        format!("{}: status {status}: {body}", context())
    })?;
    check_answer(status, &body, content_type == "application/json", context)
}

#[test]
fn fuzz_api_gateway_events() {
    let target = Target::new("events");
    install_panic_hook();
    let rig = ApiRig::new(&format!("{EVENTS_ORIGIN},http://localhost:*"));
    let seeds = event_seeds(&target);
    target.replay(seeds.iter().map(|s| (s.name.clone(), s)), |seed| {
        let text = fill(&rig, &seed.text);
        run_event(&target, &rig, seed.endpoint, &text, &|| seed.name.clone())
    });
    target.run(event_case(), |case| {
        check_event(&target, &rig, &seeds, &case)
    });
    target.report();
}
