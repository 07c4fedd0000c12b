//! age keys as the configuration names them: recipients (`age1…`, public, on every node) and
//! identities (`AGE-SECRET-KEY-1…`, needed only to restore).

use std::str::FromStr;

/// Checks that `s` is an age X25519 recipient (`age1…`); the error says what was expected
/// (never echoing more than the start of what was given).
pub fn check_recipient(s: &str) -> Result<(), String> {
    if s.starts_with("AGE-SECRET-KEY-") {
        return Err(
            "is an age secret key; expected a public recipient (age1…) — the secret key is \
             needed only to restore, keep it off the nodes"
                .into(),
        );
    }
    age::x25519::Recipient::from_str(s).map(drop).map_err(|_| {
        let start: String = s.chars().take(8).collect();
        format!("{start:?}… is not an age X25519 recipient; expected age1 followed by 58 characters (age-keygen -y)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_checked() {
        let id = age::x25519::Identity::generate();
        let public = id.to_public().to_string();
        assert!(check_recipient(&public).is_ok());
        let e = check_recipient("age1nope").expect_err("bad");
        assert!(e.contains("not an age X25519 recipient"), "{e}");
        use age::secrecy::ExposeSecret;
        let secret = id.to_string();
        let e = check_recipient(secret.expose_secret()).expect_err("secret");
        assert!(e.contains("secret key"), "{e}");
        assert!(!e.contains(&secret.expose_secret()[20..]), "never echoed");
    }
}
