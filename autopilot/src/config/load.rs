//! Stage one and the public entry points: read the file, parse YAML into raw structs, validate.
//!
//! A YAML syntax error or a serde type error (unknown field, wrong type, bad duration) stops
//! parsing and is the only problem reported; semantic problems are all collected by
//! `validate.rs`.

use std::path::Path;

use super::error::{ConfigError, Problem};
use super::model::Config;
use super::raw::RawConfig;
use super::secrets::EnvLookup;
use super::validate::{HostLookup, Validator};

/// Read and validate the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Validate `text` as if read from `source`; relative paths resolve against `source`'s
/// directory, secrets are read from files and the process environment now.
pub fn parse(source: &Path, text: &str) -> Result<Config, ConfigError> {
    let env = |name: &str| std::env::var(name).ok();
    let host = || {
        nix::unistd::gethostname()
            .map_err(|e| e.to_string())
            .and_then(|h| {
                h.into_string()
                    .map_err(|_| "the host name is not UTF-8".to_owned())
            })
    };
    parse_with(source, text, &env, &host)
}

/// [`parse`] with the environment and host name injected (for tests).
pub(crate) fn parse_with(
    source: &Path,
    text: &str,
    env: EnvLookup<'_>,
    hostname: HostLookup<'_>,
) -> Result<Config, ConfigError> {
    let invalid = |problems| ConfigError::Invalid {
        path: source.to_path_buf(),
        problems,
    };
    let raw: RawConfig = yaml_serde::from_str(text).map_err(|e| invalid(vec![from_yaml(&e)]))?;
    Validator::new(source, text, env, hostname)
        .validate(source, raw)
        .map_err(invalid)
}

/// Turn a yaml_serde error into a [`Problem`]: its location, its path (extended by the field
/// name for unknown fields) and its message with serde's Rust type names made readable.
fn from_yaml(err: &yaml_serde::Error) -> Problem {
    let location = err.location();
    let mut text = err.to_string();
    if let Some(loc) = &location {
        let at = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(i) = text.find(&at) {
            text.replace_range(i..i + at.len(), "");
        }
    }
    let (mut field, mut message) = match text.split_once(": ") {
        Some((path, rest)) if is_path(path) => (path.to_owned(), rest.to_owned()),
        _ => (String::new(), text.clone()),
    };
    if let Some(name) = message
        .strip_prefix("unknown field `")
        .and_then(|m| m.split_once('`'))
        .map(|(name, _)| name.to_owned())
    {
        field = if field.is_empty() {
            name
        } else {
            format!("{field}.{name}")
        };
    }
    if field.is_empty() && !message.starts_with("unknown field") && is_syntax(&message) {
        message = format!("invalid YAML: {message}");
    }
    Problem {
        line: location.as_ref().map(|l| l.line()),
        column: location.as_ref().map(|l| l.column()),
        field,
        message: readable(&message),
    }
}

/// Whether `s` looks like a yaml_serde path (`a.b[0].c`) rather than prose.
fn is_path(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']' | '?'))
}

/// Whether a path-less message is a YAML syntax error rather than a type error at the root.
fn is_syntax(message: &str) -> bool {
    !message.starts_with("invalid type") && !message.starts_with("invalid value")
}

/// Replace serde's Rust type names with words an operator knows.
fn readable(message: &str) -> String {
    let mut out = message.to_owned();
    while let Some(i) = out.find("struct Raw") {
        let end = out[i + "struct ".len()..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .map_or(out.len(), |j| i + "struct ".len() + j);
        out.replace_range(i..end, "a mapping");
    }
    for (rust, words) in [
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("expected a sequence", "expected a list"),
        ("expected a boolean", "expected true or false"),
    ] {
        out = out.replace(rust, words);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_rewrites_rust_names() {
        assert_eq!(
            readable("invalid type: sequence, expected struct RawProcess"),
            "invalid type: sequence, expected a mapping"
        );
        assert_eq!(
            readable("invalid type: integer `-1`, expected u32"),
            "invalid type: integer `-1`, expected a whole number from 0 to 4294967295"
        );
    }

    #[test]
    fn paths_are_told_from_prose() {
        assert!(is_path("jobs[0].name"));
        assert!(is_path("process.env.A"));
        assert!(!is_path("invalid type"));
    }
}
