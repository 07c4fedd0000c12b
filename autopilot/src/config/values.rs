//! Checks of plain values, before they have a place in the file: names, URLs, durations
//! as text.
//!
//! Each check returns `Err(message)` where the message says what was expected; the caller
//! adds the field path and position.

use std::time::Duration;

/// `[A-Za-z0-9][A-Za-z0-9._-]{0,62}` — node names end up in etcd keys and metric labels.
pub(crate) fn node_name(name: &str) -> Result<(), String> {
    name_like(
        name,
        |c| c.is_ascii_alphanumeric(),
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
        "1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit",
    )
}

/// `[a-z0-9][a-z0-9_.-]{0,62}` — cluster names are etcd path parts.
pub(crate) fn cluster_part(name: &str) -> Result<(), String> {
    name_like(
        name,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'),
        "1 to 63 lowercase letters, digits, '_', '.' or '-', starting with a letter or digit",
    )
}

/// `[a-z0-9][a-z0-9_-]{0,62}` — job names are metric labels.
pub(crate) fn job_name(name: &str) -> Result<(), String> {
    name_like(
        name,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'),
        "1 to 63 lowercase letters, digits, '_' or '-', starting with a letter or digit",
    )
}

/// A Debian package name (policy 5.6.1: lowercase letters, digits, `+`, `-`, `.`, at least
/// two characters, starting with a letter or digit), optionally with `:architecture`.
/// Package names become metric labels and command arguments: nothing else passes.
pub(crate) fn package_name(name: &str) -> Result<(), String> {
    let (package, arch) = match name.split_once(':') {
        Some((p, a)) => (p, Some(a)),
        None => (name, None),
    };
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut chars = package.chars();
    let ok = package.len() >= 2
        && name.len() <= 100
        && chars.next().is_some_and(alnum)
        && chars.all(|c| alnum(c) || matches!(c, '+' | '-' | '.'))
        && arch.is_none_or(|a| !a.is_empty() && a.chars().all(|c| alnum(c) || c == '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a Debian package name; expected lowercase letters, digits, '+', '-' or '.', at least two, starting with a letter or digit (optionally :arch), like mariadb-server"
        ))
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*` — a portable environment variable name.
pub(crate) fn env_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid environment variable name; expected letters, digits and '_', not starting with a digit"
        ))
    }
}

fn name_like(
    name: &str,
    first: impl Fn(char) -> bool,
    rest: impl Fn(char) -> bool,
    expected: &str,
) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(&first) && chars.all(&rest) && name.len() <= 63;
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid name; expected {expected}"))
    }
}

/// An etcd endpoint: `http://host:port` or `https://host:port` (IPv6 in brackets), optional
/// trailing `/`, nothing else.
pub(crate) fn endpoint(url: &str) -> Result<(), String> {
    let expected = "expected a URL like http://127.0.0.1:2379 (http or https, with host and port)";
    if url.contains('@') {
        // Never echo it: the part before '@' may be a password.
        return Err(format!(
            "contains user info; expected no credentials in the URL (use username and password_file), {expected}"
        ));
    }
    let bad = |why: &str| Err(format!("{url:?} {why}; {expected}"));
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return bad("does not start with http:// or https://");
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) || authority.contains(char::is_whitespace) {
        return bad("has more than a host and port");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once("]:") {
            Some((host, port)) if host.parse::<std::net::Ipv6Addr>().is_ok() => (host, port),
            Some(_) => return bad("has an invalid IPv6 address"),
            None => return bad("has no port"),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, port),
            _ => return bad("has no port"),
        }
    };
    if host.is_empty() {
        return bad("has no host");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => bad("has an invalid port"),
    }
}

/// A duration as the operator would write it: `1m30s`, `500ms`.
pub(crate) fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string().replace(' ', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(node_name("db-node-1").is_ok());
        assert!(node_name("Db.node_1").is_ok());
        assert!(node_name("-x").is_err());
        assert!(node_name("").is_err());
        assert!(node_name(&"a".repeat(63)).is_ok());
        assert!(node_name(&"a".repeat(64)).is_err());
        assert!(cluster_part("production").is_ok());
        assert!(cluster_part("Production").is_err());
        assert!(job_name("rotate-logs").is_ok());
        assert!(job_name("rotate.logs").is_err());
        assert!(env_name("_A1").is_ok());
        assert!(env_name("1A").is_err());
        assert!(env_name("A-B").is_err());
        assert!(env_name("").is_err());
    }

    #[test]
    fn endpoints() {
        for ok in [
            "http://127.0.0.1:2379",
            "https://etcd.example.com:2379/",
            "http://[::1]:2379",
        ] {
            assert_eq!(endpoint(ok), Ok(()), "{ok}");
        }
        for bad in [
            "127.0.0.1:2379",
            "ftp://x:1",
            "http://x",
            "http://:2379",
            "http://x:0",
            "http://x:99999",
            "http://x:2379/v3",
            "http://u:p@x:2379",
            "http://[::1]",
            "http://::1:2379",
        ] {
            assert!(endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shows_durations_compactly() {
        assert_eq!(show(Duration::from_secs(90)), "1m30s");
        assert_eq!(show(Duration::from_millis(500)), "500ms");
    }
}
