//! What can go wrong loading a config file, and how it is shown to the operator.
//!
//! `Display` of [`ConfigError::Invalid`] prints one problem per line as
//! `FILE:LINE:COL: FIELD: MESSAGE` (or `FILE: FIELD: MESSAGE` when a problem has no place in
//! the file, e.g. a missing top-level section). No message ever contains a secret's value.

use std::fmt;
use std::path::PathBuf;

/// Loading or checking a config file failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("read config file {}", path.display())]
    Io {
        /// The file we tried to read.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration; `problems` is never empty.
    #[error("{}", Problems { path, problems })]
    Invalid {
        /// The file the problems are in; every line of the message starts with it.
        path: PathBuf,
        /// Every problem found, in file order where known.
        problems: Vec<Problem>,
    },
}

/// One thing wrong with a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the offending value or key, when it has a place in the file.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the offending value or key.
    pub column: Option<usize>,
    /// Dotted path of the field, e.g. `handlers.health.timeout` or `jobs[1].name`.
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Problem {
    /// `LINE:COL: FIELD: MESSAGE`, or `FIELD: MESSAGE` without a place.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "{line}:{column}: ")?,
            (Some(line), None) => write!(f, "{line}: ")?,
            _ => {}
        }
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Formats the problem list of [`ConfigError::Invalid`], one per line.
struct Problems<'a> {
    path: &'a PathBuf,
    problems: &'a [Problem],
}

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let sep = if problem.line.is_some() { ":" } else { ": " };
            write!(f, "{}{sep}{problem}", self.path.display())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_lists_every_problem_one_per_line() {
        let err = ConfigError::Invalid {
            path: PathBuf::from("/etc/autopilot/node.yaml"),
            problems: vec![
                Problem {
                    line: Some(14),
                    column: Some(14),
                    field: "handlers.health.timeout".into(),
                    message: "10s is longer than the interval 5s; expected a timeout no longer than the interval".into(),
                },
                Problem {
                    line: None,
                    column: None,
                    field: "process".into(),
                    message: "missing; expected a process section".into(),
                },
            ],
        };
        assert_eq!(
            err.to_string(),
            "/etc/autopilot/node.yaml:14:14: handlers.health.timeout: 10s is longer than the interval 5s; expected a timeout no longer than the interval\n\
             /etc/autopilot/node.yaml: process: missing; expected a process section"
        );
    }
}
