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
