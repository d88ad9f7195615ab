//! The session token: the only place that knows its format.
//!
//! `<user key>.<secret>`: the user key is the user id in base64url (the store's routing key, so a
//! user's sessions live together), the secret 32 bytes from the OS CSPRNG in base64url. Stores
//! keep only [`TokenHash`], the SHA-256 of the whole token, so a dump of a store yields no token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use sha2::{Digest, Sha256};
use std::fmt;

/// Longest token accepted, in bytes; anything longer is refused before any store call.
pub const MAX_TOKEN_LEN: usize = 1024;
/// Longest user id a token may carry, in bytes.
pub const MAX_USER_ID_LEN: usize = 512;
const SECRET_BYTES: usize = 32;
const SECRET_B64_LEN: usize = 43;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the session token is empty")]
    Empty,
    #[error("the session token is too long")]
    TooLong,
    #[error("the session token is malformed")]
    Malformed,
}

/// A user id in base64url: safe in a Redis hash tag, a DynamoDB key and a token.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserKey(String);

impl UserKey {
    pub fn for_user(user_id: &str) -> Self {
        UserKey(B64.encode(user_id.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user id this key stands for.
    pub fn user_id(&self) -> String {
        // A UserKey is only built from a &str or checked by `SessionToken::parse`.
        String::from_utf8(B64.decode(&self.0).unwrap_or_default()).unwrap_or_default()
    }
}

impl fmt::Debug for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserKey({})", self.0)
    }
}

/// SHA-256 of a session token: what the stores key on.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for TokenHash {
    // Short on purpose: enough to tell two apart in a test failure.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", &self.to_hex()[..8])
    }
}

/// Bytes of the token hash a [`SessionId`] shows: 96 bits, enough that no two sessions of one
/// user share an id, and far too few to find the hash, let alone the token.
const SESSION_ID_BYTES: usize = 12;
/// Length of a [`SessionId`] in base64url.
pub const SESSION_ID_LEN: usize = 16;

/// The name of a session that its owner may see and pass around (the session list, revoke):
/// the first 12 bytes of its [`TokenHash`], base64url. It can never be used as a token: the
/// token is a preimage of the whole hash, which the id shows only part of.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; SESSION_ID_BYTES]);

impl SessionId {
    pub fn of(hash: &TokenHash) -> Self {
        let mut id = [0u8; SESSION_ID_BYTES];
        id.copy_from_slice(&hash.0[..SESSION_ID_BYTES]);
        SessionId(id)
    }

    /// An id as a client sent it back: 16 base64url characters, nothing else.
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() != SESSION_ID_LEN {
            return None;
        }
        // 16 characters are 96 bits, 12 bytes exactly: no spare bits, one spelling per id.
        Some(SessionId(B64.decode(raw).ok()?.try_into().ok()?))
    }

    /// Whether this is the id of the session keyed by `hash`, compared in constant time.
    pub fn names(&self, hash: &TokenHash) -> bool {
        let diff = self
            .0
            .iter()
            .zip(&hash.0)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        diff == 0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&B64.encode(self.0))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// A well-formed session token. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken {
    token: String,
    user_key: UserKey,
    user_id: String,
}

impl SessionToken {
    /// A new token for `user_id`, with a fresh secret from the OS CSPRNG.
    pub fn mint(user_id: &str) -> Self {
        let mut secret = [0u8; SECRET_BYTES];
        // The OS CSPRNG does not fail on Linux once booted; there is no weaker fallback.
        getrandom::fill(&mut secret).expect("the OS random number generator is available");
        let user_key = UserKey::for_user(user_id);
        SessionToken {
            token: format!("{}.{}", user_key.as_str(), B64.encode(secret)),
            user_key,
            user_id: user_id.to_owned(),
        }
    }

    /// Checks the shape of a token as a client sent it. No store is asked.
    pub fn parse(raw: &str) -> Result<Self, TokenError> {
        if raw.is_empty() {
            return Err(TokenError::Empty);
        }
        if raw.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        let (user_part, secret) = raw.split_once('.').ok_or(TokenError::Malformed)?;
        let b64url = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if user_part.is_empty()
            || secret.len() != SECRET_B64_LEN
            || !b64url(user_part)
            || !b64url(secret)
        {
            return Err(TokenError::Malformed);
        }
        match B64.decode(secret) {
            Ok(bytes) if bytes.len() == SECRET_BYTES => {}
            _ => return Err(TokenError::Malformed),
        }
        let user_id = B64
            .decode(user_part)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|id| !id.is_empty() && id.len() <= MAX_USER_ID_LEN)
            .ok_or(TokenError::Malformed)?;
        // Only the canonical encoding is accepted, so one user has exactly one key.
        let user_key = UserKey::for_user(&user_id);
        if user_key.as_str() != user_part {
            return Err(TokenError::Malformed);
        }
        Ok(SessionToken {
            token: raw.to_owned(),
            user_key,
            user_id,
        })
    }

    /// The user id the token claims; trusted only once the store has found its hash.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    pub fn user_key(&self) -> &UserKey {
        &self.user_key
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.token.as_bytes()).into())
    }

    /// The token itself, to hand to the client once, at creation.
    pub fn expose(&self) -> &str {
        &self.token
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionToken")
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_parses_back() {
        let token = SessionToken::mint("user_2abcDEF");
        let parsed = SessionToken::parse(token.expose()).unwrap();
        assert_eq!(parsed.user_id(), "user_2abcDEF");
        assert_eq!(parsed.hash(), token.hash());
        assert_eq!(parsed.user_key(), &UserKey::for_user("user_2abcDEF"));
    }

    #[test]
    fn secrets_are_256_bit_and_distinct() {
        let a = SessionToken::mint("u");
        let b = SessionToken::mint("u");
        assert_ne!(a.expose(), b.expose());
        assert_ne!(a.hash(), b.hash());
        let secret = a.expose().split_once('.').unwrap().1;
        assert_eq!(B64.decode(secret).unwrap().len(), 32);
    }

    #[test]
    fn odd_user_ids_stay_inside_the_user_key() {
        for id in [
            "a.b",
            "{tag}",
            "x:y#z",
            "../..",
            "nul\0byte",
            "ünï",
            "a/b c",
        ] {
            let token = SessionToken::mint(id);
            let key = token.user_key().as_str();
            assert!(
                key.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            assert_eq!(SessionToken::parse(token.expose()).unwrap().user_id(), id);
            assert_eq!(token.user_key().user_id(), id);
        }
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = SessionToken::mint("user_1");
        let (user, secret) = good.expose().split_once('.').unwrap();
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        let cases: Vec<(String, TokenError)> = vec![
            (String::new(), TokenError::Empty),
            (long, TokenError::TooLong),
            (format!("{user}{secret}"), TokenError::Malformed),
            (format!(".{secret}"), TokenError::Malformed),
            (format!("{user}."), TokenError::Malformed),
            (format!("{user}.{secret}.x"), TokenError::Malformed),
            (format!("{user}.{}", &secret[1..]), TokenError::Malformed),
            (format!("{user}.{secret}A"), TokenError::Malformed),
            (format!("{user}.{}+", &secret[1..]), TokenError::Malformed),
            (format!("{user}=.{secret}"), TokenError::Malformed),
            (format!("{user} .{secret}"), TokenError::Malformed),
            (format!("{{x}}.{secret}"), TokenError::Malformed),
            // "/w" is not valid UTF-8 once decoded.
            (format!("_w.{secret}"), TokenError::Malformed),
            ("null".to_owned(), TokenError::Malformed),
        ];
        for (raw, want) in cases {
            assert_eq!(SessionToken::parse(&raw).unwrap_err(), want, "{raw:?}");
        }
    }

    #[test]
    fn a_session_id_names_its_session_and_is_no_token() {
        let token = SessionToken::mint("user_1");
        let id = SessionId::of(&token.hash());
        let text = id.to_string();
        assert_eq!(text.len(), SESSION_ID_LEN);
        assert_eq!(SessionId::parse(&text), Some(id));
        assert!(id.names(&token.hash()));
        assert!(!id.names(&SessionToken::mint("user_1").hash()));
        assert_eq!(B64.decode(&text).unwrap(), token.hash().0[..12]);
        assert!(SessionToken::parse(&text).is_err());
        assert!(!token.expose().contains(&text));
        for bad in [
            "",
            "short",
            &format!("{text}A"),
            &text[1..],
            "AAAAAAAAAAAAAAA+",
            "AAAAAAAAAAAAAAA=",
        ] {
            assert_eq!(SessionId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let token = SessionToken::mint("user_1");
        let secret = token.expose().split_once('.').unwrap().1;
        assert!(!format!("{token:?}").contains(secret));
        assert!(!format!("{:?}", token.hash()).contains(&token.hash().to_hex()));
    }
}
