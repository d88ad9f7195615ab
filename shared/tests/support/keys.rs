//! RSA key pairs made for the test run (by `openssl`), and Clerk-like JWTs signed with them.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::process::Command;
use std::sync::OnceLock;

pub struct TestKeys {
    pub private_pem: String,
    pub public_pem: String,
    encoding: EncodingKey,
}

impl TestKeys {
    /// A fresh 2048-bit key pair.
    pub fn generate() -> Self {
        let private_pem = openssl(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            None,
        );
        let public_pem = openssl(&["pkey", "-pubout"], Some(&private_pem));
        let encoding =
            EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("openssl made an RSA key");
        TestKeys {
            private_pem,
            public_pem,
            encoding,
        }
    }

    /// One key pair for the whole test binary.
    pub fn shared() -> &'static TestKeys {
        static KEYS: OnceLock<TestKeys> = OnceLock::new();
        KEYS.get_or_init(TestKeys::generate)
    }

    /// A second, unrelated key pair (for "signed by the wrong key").
    pub fn other() -> &'static TestKeys {
        static KEYS: OnceLock<TestKeys> = OnceLock::new();
        KEYS.get_or_init(TestKeys::generate)
    }

    /// An RS256 JWT over `claims`, with `kid` in the header when given.
    pub fn sign(&self, claims: &Value, kid: Option<&str>) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }

    /// The public key as a JWKS document with one key, `kid`.
    pub fn jwks(&self, kid: &str) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, Algorithm::RS256).expect("jwk");
        jwk.common.key_id = Some(kid.to_owned());
        json!({ "keys": [jwk] })
    }
}

/// Claims of a fresh Clerk session JWT for `sub`, valid for a minute.
pub fn claims(sub: &str) -> Value {
    let now = shared::session::now_unix();
    json!({ "sub": sub, "iat": now, "nbf": now - 5, "exp": now + 60, "sid": "sess_test" })
}

fn openssl(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl is not installed: run `make test`, which installs it, or `apt-get install openssl`");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}
