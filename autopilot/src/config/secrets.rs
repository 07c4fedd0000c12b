//! Reading secrets at load time, from a file or an environment variable.
//!
//! Messages name the file or variable, never the content. One trailing newline (`\n` or
//! `\r\n`) is trimmed, since `echo secret > file` adds one. Passwords must then be one line
//! ([`one_line`]); other secrets (handler environment files) may span lines.

use std::path::Path;

use cluster::secret::Secret;

/// How the loader looks up environment variables; tests inject their own.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Read a secret from `path` (already resolved against the config directory).
pub(crate) fn from_file(path: &Path) -> Result<Secret, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| {
        format!("cannot read the secret file {shown} ({e}); expected a readable file")
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("the secret file {shown} is not UTF-8 text; expected a text file"))?;
    let value = trim_newline(text);
    if value.is_empty() {
        return Err(format!(
            "the secret file {shown} is empty; expected the secret in it"
        ));
    }
    Ok(Secret::new(format!("file {shown}"), value))
}

/// A password must be one line of text: a second line (or another control character) is a
/// mistake in the file, and the database tools would each read it differently.
pub(crate) fn one_line(secret: &Secret) -> Result<(), String> {
    if secret.expose().chars().any(char::is_control) {
        let (kind, place) = origin_parts(secret);
        return Err(format!(
            "the password from {kind} {place} holds more than one line or a control character; \
             expected the password alone on one line"
        ));
    }
    Ok(())
}

/// Read a secret from the environment variable `name` (already checked to be a valid name).
pub(crate) fn from_env(name: &str, lookup: EnvLookup<'_>) -> Result<Secret, String> {
    match lookup(name) {
        Some(v) if !v.is_empty() => Ok(Secret::new(format!("env {name}"), trim_newline(v))),
        Some(_) => Err(format!(
            "the environment variable {name} is empty; expected it to hold the secret"
        )),
        None => Err(format!(
            "the environment variable {name} is not set; expected it to hold the secret"
        )),
    }
}

fn trim_newline(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

/// Where a secret came from, split back into `("file", path)` or `("env", name)`.
pub(crate) fn origin_parts(secret: &Secret) -> (&str, &str) {
    secret
        .origin
        .split_once(' ')
        .unwrap_or(("file", secret.origin.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_one_trailing_newline() {
        assert_eq!(trim_newline("s3cret\n".into()), "s3cret");
        assert_eq!(trim_newline("s3cret\r\n".into()), "s3cret");
        assert_eq!(trim_newline("s3cret\n\n".into()), "s3cret\n");
        assert_eq!(trim_newline("s3cret".into()), "s3cret");
    }

    #[test]
    fn a_password_must_be_one_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (content, ok) in [
            ("pw#with \\ spaces \n", true),
            ("line one\nline two\n", false),
            ("pw\u{1b}x", false),
        ] {
            let p = dir.path().join("s");
            std::fs::write(&p, content).expect("write");
            let secret = from_file(&p).expect("read");
            let r = one_line(&secret);
            assert_eq!(r.is_ok(), ok, "{content:?}");
            if let Err(e) = r {
                assert!(
                    !e.contains("line two") && e.contains("alone on one line"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn file_errors_name_the_file() {
        let err = from_file(Path::new("/nonexistent/autopilot/pass")).expect_err("no such file");
        assert!(err.contains("/nonexistent/autopilot/pass"), "{err}");
    }

    #[test]
    fn env_lookup_is_injected() {
        let lookup = |n: &str| (n == "SET").then(|| "v\n".to_owned());
        let s = from_env("SET", &lookup).expect("set");
        assert_eq!(s.expose(), "v");
        assert_eq!(origin_parts(&s), ("env", "SET"));
        assert!(
            from_env("UNSET", &lookup)
                .expect_err("unset")
                .contains("UNSET is not set")
        );
    }
}
