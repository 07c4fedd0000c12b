//! What the API accepts as a name or a free text: names (namespaces, projects, clusters,
//! nodes) become etcd key segments and appear in tables and logs; texts (token names,
//! maintenance reasons) appear on operators' terminals. Limits count characters, not bytes.

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 253;

/// Why `value` is not a usable name, or `None` when it is: 1–253 characters, no `/`, not
/// starting with `_` (reserved), not `*`, `.` or `..`, no whitespace or control characters.
pub fn name_problem(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        return Some("is empty");
    }
    if value.chars().count() > MAX_NAME_CHARS {
        return Some("is longer than 253 characters");
    }
    if value.contains('/') {
        return Some("contains '/'");
    }
    if value.starts_with('_') {
        return Some("starts with '_' (reserved)");
    }
    if matches!(value, "*" | "." | "..") {
        return Some("is `*`, `.` or `..`");
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("contains whitespace or control characters");
    }
    None
}

/// Longest backup job name, in characters.
pub const MAX_JOB_CHARS: usize = 63;

/// Why `value` is not a backup job name, or `None` when it is: the agents' rule for
/// `backup.jobs[].name` (1–63 lowercase letters, digits, `_` or `-`, starting with a letter
/// or digit), so a name no agent can have is refused here rather than by every agent.
pub fn job_problem(value: &str) -> Option<&'static str> {
    let mut chars = value.chars();
    match chars.next() {
        None => Some("is empty"),
        Some(c) if !(c.is_ascii_lowercase() || c.is_ascii_digit()) => {
            Some("does not start with a lowercase letter or digit")
        }
        _ if value.chars().count() > MAX_JOB_CHARS => Some("is longer than 63 characters"),
        _ if !chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-')) =>
        {
            Some("holds a character other than lowercase letters, digits, '_' and '-'")
        }
        _ => None,
    }
}

/// Why `value` is not a usable free text of at most `max` characters, or `None`: it must
/// hold no control characters (line breaks and terminal escapes included).
pub fn text_problem(value: &str, max: usize) -> Option<String> {
    if value.chars().count() > max {
        return Some(format!("is longer than {max} characters"));
    }
    if value.chars().any(char::is_control) {
        return Some("contains control characters (line breaks, escapes)".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "prod-eu", "données", &"é".repeat(253)] {
            assert_eq!(name_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "*",
            ".",
            "..",
            "a b",
            "a\0b",
            "a/b",
            "_x",
            "a\u{1b}",
            &"é".repeat(254),
        ] {
            assert!(name_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn job_names() {
        for ok in ["nightly", "0", "full-weekly_2", &"a".repeat(63)] {
            assert_eq!(job_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "Nightly",
            "-x",
            "_x",
            "a/b",
            "a b",
            "é",
            "a.b",
            &"a".repeat(64),
        ] {
            assert!(job_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn texts() {
        assert_eq!(text_problem("patching the kernel", 1024), None);
        assert_eq!(
            text_problem(&"é".repeat(1024), 1024),
            None,
            "characters, not bytes"
        );
        assert!(text_problem(&"é".repeat(1025), 1024).is_some());
        assert!(text_problem("a\u{1b}]0;x\u{7}", 1024).is_some());
        assert!(text_problem("two\nlines", 1024).is_some());
    }
}
