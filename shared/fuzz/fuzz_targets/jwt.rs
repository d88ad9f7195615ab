#![no_main]
//! The Clerk JWT path: `Verifier::verify` (header, `alg`, `kid`, signature, claims, `sub`,
//! `iss`, `azp`) with the PEM key of the fuzz state, its issuer and allowed origins.
//!
//! Signing per input would cap the run at a few hundred executions a second, so a pool of
//! tokens is signed once at start-up, each with the answer the checks must give: the valid one,
//! and one per way to be wrong (expired, not yet valid, no `exp`, `sub` missing, empty, too long
//! or not a string, duplicate claims, another issuer or none, an `azp` not allowed, RS384 or
//! HS256 or `alg: none`, another key). The first input byte picks a pool token, the rest edits
//! it (flip, insert, delete, set a byte); a first byte of 0xC0 or more sends the rest as it is.
//!
//! Properties: `verify` never panics and never says the keys are unavailable (a PEM key is
//! always there); an unedited pool token gets exactly its answer; anything else that passes is
//! byte for byte a pool token that must pass, for that token's `sub`; no log line holds the JWT.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use session_service_fuzz::{ISSUER, KeyPair, ORIGIN, USER, config, setup, take_log};
use shared::auth::{AuthError, Verifier};
use shared::session::now_unix;
use std::sync::OnceLock;

struct Pool {
    verifier: Verifier,
    rt: tokio::runtime::Runtime,
    /// (token, what it is, the `sub` it must give or `None` for a refusal).
    tokens: Vec<(String, &'static str, Option<String>)>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let now = now_unix();
        let day = 86_400;
        let base = json!({
            "sub": USER, "iss": ISSUER, "azp": ORIGIN, "sid": "sess_fuzz",
            "iat": now, "nbf": now - 5, "exp": now + 30 * day,
        });
        let with = |changes: Value| {
            let mut claims = base.clone();
            for (k, v) in changes.as_object().unwrap() {
                if v.is_null() {
                    claims.as_object_mut().unwrap().remove(k);
                } else {
                    claims[k] = v.clone();
                }
            }
            claims.to_string()
        };
        let rs256 = json!({ "alg": "RS256", "typ": "JWT" }).to_string();
        let trusted = &KeyPair::trusted().encoding;
        let other = &KeyPair::other().encoding;
        let hmac = EncodingKey::from_secret(KeyPair::trusted().public_pem.as_bytes());
        let long_sub = "a".repeat(512);
        let too_long_sub = "a".repeat(513);
        #[rustfmt::skip]
        let specs: Vec<(&str, String, String, Signer, Option<String>)> = vec![
            ("valid", rs256.clone(), base.to_string(), Signer::Key(trusted, Algorithm::RS256), Some(USER.into())),
            ("valid with a kid", json!({ "alg": "RS256", "kid": "ins_1" }).to_string(), base.to_string(), Signer::Key(trusted, Algorithm::RS256), Some(USER.into())),
            ("no azp", rs256.clone(), with(json!({ "azp": null })), Signer::Key(trusted, Algorithm::RS256), Some(USER.into())),
            ("azp on any port", rs256.clone(), with(json!({ "azp": "http://localhost:5173" })), Signer::Key(trusted, Algorithm::RS256), Some(USER.into())),
            ("sub of 512 bytes", rs256.clone(), with(json!({ "sub": long_sub })), Signer::Key(trusted, Algorithm::RS256), Some(long_sub.clone())),
            ("another sub", rs256.clone(), with(json!({ "sub": "user_other" })), Signer::Key(trusted, Algorithm::RS256), Some("user_other".into())),
            ("azp not allowed", rs256.clone(), with(json!({ "azp": "https://evil.example" })), Signer::Key(trusted, Algorithm::RS256), None),
            ("expired", rs256.clone(), with(json!({ "exp": now - day })), Signer::Key(trusted, Algorithm::RS256), None),
            ("not yet valid", rs256.clone(), with(json!({ "nbf": now + day })), Signer::Key(trusted, Algorithm::RS256), None),
            ("no exp", rs256.clone(), with(json!({ "exp": null })), Signer::Key(trusted, Algorithm::RS256), None),
            ("no sub", rs256.clone(), with(json!({ "sub": null })), Signer::Key(trusted, Algorithm::RS256), None),
            ("empty sub", rs256.clone(), with(json!({ "sub": "" })), Signer::Key(trusted, Algorithm::RS256), None),
            ("sub of 513 bytes", rs256.clone(), with(json!({ "sub": too_long_sub })), Signer::Key(trusted, Algorithm::RS256), None),
            ("sub a number", rs256.clone(), with(json!({ "sub": 42 })), Signer::Key(trusted, Algorithm::RS256), None),
            ("two subs", rs256.clone(), format!("{},\"sub\":\"user_other\"}}", base.to_string().trim_end_matches('}')), Signer::Key(trusted, Algorithm::RS256), None),
            ("another issuer", rs256.clone(), with(json!({ "iss": "https://clerk.other.example" })), Signer::Key(trusted, Algorithm::RS256), None),
            ("no issuer", rs256.clone(), with(json!({ "iss": null })), Signer::Key(trusted, Algorithm::RS256), None),
            ("claims not an object", rs256.clone(), "[1]".into(), Signer::Key(trusted, Algorithm::RS256), None),
            ("RS384 by the trusted key", json!({ "alg": "RS384" }).to_string(), base.to_string(), Signer::Key(trusted, Algorithm::RS384), None),
            ("another key", rs256.clone(), base.to_string(), Signer::Key(other, Algorithm::RS256), None),
            ("HS256 keyed with the public key", json!({ "alg": "HS256" }).to_string(), base.to_string(), Signer::Key(&hmac, Algorithm::HS256), None),
            ("RS256 header over an HS256 signature", rs256.clone(), base.to_string(), Signer::Key(&hmac, Algorithm::HS256), None),
            ("alg none", json!({ "alg": "none" }).to_string(), base.to_string(), Signer::Nothing, None),
            ("header not JSON", "{".into(), base.to_string(), Signer::Key(trusted, Algorithm::RS256), None),
        ];
        let tokens = specs
            .into_iter()
            .map(|(what, header, claims, signer, expect)| {
                let message = format!("{}.{}", B64.encode(header), B64.encode(claims));
                let signature = match signer {
                    Signer::Key(key, alg) => {
                        jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("sign")
                    }
                    Signer::Nothing => String::new(),
                };
                (format!("{message}.{signature}"), what, expect)
            })
            .collect();
        Pool {
            verifier: Verifier::new(&config(&[])).expect("a verifier"),
            rt: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime"),
            tokens,
        }
    })
}

enum Signer<'a> {
    Key(&'a EncodingKey, Algorithm),
    Nothing,
}

fuzz_target!(
    init: {
        setup();
        // Every pool token gets its answer before the first input.
        for (token, what, expect) in &pool().tokens {
            let got = pool().rt.block_on(pool().verifier.verify(token));
            assert_eq!(got.as_ref().ok(), expect.as_ref(), "pool token {what}: {got:?}");
        }
    },
    |data: &[u8]| run(data)
);

fn run(data: &[u8]) {
    let pool = pool();
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let jwt = if first >= 0xC0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        text.to_owned()
    } else {
        let (token, _, _) = &pool.tokens[usize::from(first) % pool.tokens.len()];
        edit(token.as_bytes(), rest)
    };
    take_log();
    let got = pool.rt.block_on(pool.verifier.verify(&jwt));
    let log = take_log();
    assert!(
        jwt.len() < 24 || !log.contains(&jwt),
        "the JWT in the log: {log}"
    );
    match &got {
        Err(AuthError::KeysUnavailable(why)) => panic!("keys unavailable with a PEM key: {why}"),
        Err(AuthError::Invalid(_)) => {}
        Ok(sub) => {
            let pooled = pool.tokens.iter().find(|(token, _, _)| *token == jwt);
            match pooled {
                Some((_, _, Some(expected))) => assert_eq!(sub, expected),
                Some((_, what, None)) => panic!("pool token {what} passed as {sub:?}"),
                None => panic!("a token nobody signed passed as {sub:?}: {jwt:?}"),
            }
        }
    }
    if let Some((_, what, expect)) = pool.tokens.iter().find(|(token, _, _)| *token == jwt) {
        assert_eq!(
            got.as_ref().ok(),
            expect.as_ref(),
            "pool token {what}: {got:?}"
        );
    }
}

/// The token with the edits of `ops` applied, four bytes an edit (what, where in two bytes,
/// which byte); as text, since the header value reaching the verifier is text.
fn edit(token: &[u8], ops: &[u8]) -> String {
    let mut bytes = token.to_vec();
    for op in ops.chunks_exact(4) {
        let at = usize::from(u16::from_be_bytes([op[1], op[2]])) % (bytes.len() + 1);
        let byte = op[3];
        match op[0] % 4 {
            0 if at < bytes.len() => bytes[at] ^= byte.max(1),
            1 => bytes.insert(at, byte),
            2 if at < bytes.len() => {
                bytes.remove(at);
            }
            3 if at < bytes.len() => bytes[at] = byte,
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
