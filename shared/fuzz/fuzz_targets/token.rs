#![no_main]
//! The session-token parser, and its round trip.
//!
//! The input, as text, is (a) a token candidate and (b) a user id. Properties:
//! (a) `SessionToken::parse` answers exactly what an independent model of the format says:
//!     `<canonical base64url of a 1..=512-byte UTF-8 user id>.<canonical base64url of 32 bytes>`,
//!     at most 1024 bytes, no padding, nothing else; an accepted token displays as the input
//!     byte for byte, with the model's user, the user key `UserKey::for_user` gives, the SHA-256
//!     of the input as its hash, and a `Debug` that hides the secret;
//! (b) a token minted for the id parses back to the same user, key and hash when the id has
//!     1..=512 bytes, and is refused otherwise; the id's user key decodes back to it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use shared::SessionToken;
use shared::token::{MAX_TOKEN_LEN, MAX_USER_ID_LEN, TokenError, UserKey};

fuzz_target!(init: session_service_fuzz::setup(), |data: &[u8]| run(data));

fn run(data: &[u8]) {
    // Header values reach the parser as text.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    parse(text);
    round_trip(text);
}

fn parse(raw: &str) {
    let parsed = SessionToken::parse(raw);
    let model = model(raw);
    match (&parsed, &model) {
        (Ok(token), Ok(user_id)) => {
            assert_eq!(token.expose(), raw, "display round trip");
            assert_eq!(token.user_id(), user_id);
            assert_eq!(token.user_key(), &UserKey::for_user(user_id));
            assert_eq!(token.user_key().as_str(), raw.split_once('.').unwrap().0);
            assert_eq!(
                token.hash().as_bytes(),
                &<[u8; 32]>::from(Sha256::digest(raw))
            );
            let secret = raw.split_once('.').unwrap().1;
            assert!(
                !format!("{token:?}").contains(secret),
                "Debug shows the secret"
            );
        }
        (Err(got), Err(want)) => assert_eq!(got, want, "{raw:?}"),
        _ => panic!("{raw:?}: parse says {parsed:?}, the model {model:?}"),
    }
}

/// The format, written apart from the parser: canonical base64url only (re-encoding gives the
/// same text), so that one user and one secret have one token.
fn model(raw: &str) -> Result<String, TokenError> {
    if raw.is_empty() {
        return Err(TokenError::Empty);
    }
    if raw.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    let canonical = |part: &str| {
        let bytes = B64.decode(part).ok()?;
        (B64.encode(&bytes) == part).then_some(bytes)
    };
    let (user, secret) = raw.split_once('.').ok_or(TokenError::Malformed)?;
    let secret = canonical(secret).ok_or(TokenError::Malformed)?;
    let user = canonical(user)
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(TokenError::Malformed)?;
    if secret.len() != 32 || user.is_empty() || user.len() > MAX_USER_ID_LEN {
        return Err(TokenError::Malformed);
    }
    Ok(user)
}

fn round_trip(user_id: &str) {
    assert_eq!(UserKey::for_user(user_id).user_id(), user_id);
    let minted = SessionToken::mint(user_id);
    let usable = !user_id.is_empty() && user_id.len() <= MAX_USER_ID_LEN;
    match SessionToken::parse(minted.expose()) {
        Ok(parsed) => {
            assert!(usable, "a token for an unusable id {user_id:?} parsed");
            assert_eq!(parsed.user_id(), user_id);
            assert_eq!(parsed.user_key(), minted.user_key());
            assert_eq!(parsed.hash(), minted.hash());
            assert_eq!(parsed.expose(), minted.expose());
        }
        Err(e) => assert!(!usable, "a minted token for {user_id:?} was refused: {e:?}"),
    }
}
