//! Prints a Clerk-like JWT for local runs, signed with the dev key pair under `.local/`.
//!
//! `make token USER=<id>` runs it; the local API (`make run`) trusts only that key pair's public
//! half, through `CLERK_JWT_KEY`. Verification stays on: a token from anything else is refused.
//!
//! Usage: `cargo run -q -p shared --example dev_token -- <private-key.pem> <user-id> [ttl-seconds]`

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use std::process::ExitCode;

/// Lifetime of a token when none is given: an hour, as the issue asks (Clerk's own are shorter).
const DEFAULT_TTL_SECS: i64 = 3_600;
/// Written into `iss`; the local API does not set `CLERK_ISSUER`, so it is informative only.
const ISSUER: &str = "css-picker-local-dev";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(jwt) => {
            println!("{jwt}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("dev_token: {why}");
            eprintln!("usage: dev_token <private-key.pem> <user-id> [ttl-seconds]");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<String>) -> Result<String, String> {
    let (key_path, user, ttl) = match args.as_slice() {
        [key, user] => (key, user, DEFAULT_TTL_SECS),
        [key, user, ttl] => (
            key,
            user,
            ttl.parse::<i64>()
                .ok()
                .filter(|t| *t > 0)
                .ok_or_else(|| format!("ttl-seconds {ttl:?} is not a whole number above zero"))?,
        ),
        _ => return Err("expected two or three arguments".into()),
    };
    if user.trim().is_empty() {
        return Err("the user id is empty".into());
    }
    let pem = std::fs::read(key_path).map_err(|e| format!("cannot read {key_path}: {e}"))?;
    let key = EncodingKey::from_rsa_pem(&pem)
        .map_err(|e| format!("{key_path} is not an RSA private key in PEM form: {e}"))?;
    let now = shared::session::now_unix();
    let claims = json!({
        "sub": user,
        "iss": ISSUER,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
    });
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key)
        .map_err(|e| format!("cannot sign: {e}"))
}
