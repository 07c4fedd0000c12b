//! Token strings: `apt_<id>_<secret>`, where `id` is 16 hex digits (the etcd key of the token
//! document, so lookup is one `get`) and `secret` is 64 hex digits (32 random bytes from the
//! OS). Only `sha256(secret)` is stored.
//!
//! Why a plain SHA-256 and not a password hash (argon2): the secret is 256 bits of OS
//! randomness, not a human-chosen password, so there is no dictionary to try and brute force
//! is 2^256 work whatever the hash costs; a slow hash would only make every API request slow.
//! Comparison is in constant time so the hash cannot be probed byte by byte.

use sha2::{Digest, Sha256};

/// The prefix of every issued token; lets secret scanners recognise leaked tokens.
pub const TOKEN_PREFIX: &str = "apt_";
/// Id of the bootstrap admin token (from `--admin-token-file` / `AUTOPILOT_ADMIN_TOKEN`).
pub const ADMIN_ID: &str = "admin";

/// A freshly issued token: the string shown once, its id and the hash to store.
pub struct Issued {
    /// Token id (16 hex digits).
    pub id: String,
    /// The whole token string, `apt_<id>_<secret>`; shown to the caller once, never stored.
    pub token: String,
    /// `sha256:<hex>` of the secret.
    pub hash: String,
}

/// Makes a new token from 8 + 32 random bytes.
pub fn issue() -> Result<Issued, getrandom::Error> {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id)?;
    getrandom::fill(&mut secret)?;
    let (id, secret) = (hex(&id), hex(&secret));
    Ok(Issued {
        token: format!("{TOKEN_PREFIX}{id}_{secret}"),
        hash: hash(&secret),
        id,
    })
}

/// A presented token, split. `Debug` never shows the secret.
pub struct Presented<'a> {
    /// The id part.
    pub id: &'a str,
    /// The secret part.
    pub secret: &'a str,
}

impl std::fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Presented {{ id: {:?}, secret: <redacted> }}", self.id)
    }
}

/// Splits `apt_<16 hex>_<64 hex>`; `None` for anything else.
pub fn parse(token: &str) -> Option<Presented<'_>> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hexy = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hexy(id, 16) && hexy(secret, 64)).then_some(Presented { id, secret })
}

/// `sha256:<hex>` of `secret`.
pub fn hash(secret: &str) -> String {
    format!("sha256:{}", hex(&Sha256::digest(secret.as_bytes())))
}

/// Whether `secret` hashes to `stored`, compared in constant time.
pub fn verify(secret: &str, stored: &str) -> bool {
    constant_time_eq(hash(secret).as_bytes(), stored.as_bytes())
}

/// Equal length and equal bytes, without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lower-case hex (sha2 0.11's output has no `{:x}`).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_parses_and_verifies() {
        let t = issue().expect("OS randomness");
        let p = parse(&t.token).expect("parses");
        assert_eq!(p.id, t.id);
        assert!(verify(p.secret, &t.hash));
        assert!(!verify(&"0".repeat(64), &t.hash));
        assert!(!format!("{p:?}").contains(p.secret));
        assert_ne!(issue().expect("rng").token, t.token);
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        for bad in [
            "",
            "apt_",
            "apt_abc_def",
            "xyz_0123456789abcdef_0123",
            &format!("apt_0123456789abcdeg_{}", "a".repeat(64)),
            &format!("apt_0123456789abcdef_{}", "a".repeat(63)),
            &format!("apt_0123456789abcdef_{}_", "a".repeat(64)),
        ] {
            assert!(parse(bad).is_none(), "{bad:?} parsed");
        }
    }

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(
            hash("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
