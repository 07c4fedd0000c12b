//! The level a line names: what a database or tool wrote to its output is logged at the
//! severity it gave the line, not at one level per stream. PostgreSQL's severities (`LOG:`,
//! `WARNING:`, `ERROR:`, `FATAL:`, … after its line prefix) and MariaDB's tags (`[Note]`,
//! `[Warning]`, `[ERROR]`) are read; a line that names none keeps its stream's level.
//!
//! A few lines name a level that does not fit what they mean under the agent: the server
//! says them in every healthy start, stop or clone the agent drives (its own probes turned
//! away while the server starts, sessions ended by the agent's fast shutdown, a standby
//! started before it is told its primary). They are logged at info ([`EXPECTED`]), so WARN
//! and ERROR keep meaning that a human should look.

/// A log level, as tracing has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineLevel {
    /// Detail for whoever debugs.
    Debug,
    /// Normal operation.
    Info,
    /// Something may be wrong.
    Warn,
    /// Something is wrong.
    Error,
}

/// What one line says about its level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Named {
    /// It names this level.
    Level(LineLevel),
    /// It continues the line before (PostgreSQL's `DETAIL:`, `HINT:`, `CONTEXT:`, …).
    Continuation,
    /// It names none.
    Nothing,
}

/// PostgreSQL severities and what they mean here. `FATAL` ends one session, not the
/// server: a client turned away is an error for that client, which is logged as such.
const PG_SEVERITIES: [(&str, LineLevel); 12] = [
    ("DEBUG1:", LineLevel::Debug),
    ("DEBUG2:", LineLevel::Debug),
    ("DEBUG3:", LineLevel::Debug),
    ("DEBUG4:", LineLevel::Debug),
    ("DEBUG5:", LineLevel::Debug),
    ("LOG:", LineLevel::Info),
    ("INFO:", LineLevel::Info),
    ("NOTICE:", LineLevel::Info),
    ("WARNING:", LineLevel::Warn),
    ("ERROR:", LineLevel::Error),
    ("FATAL:", LineLevel::Error),
    ("PANIC:", LineLevel::Error),
];

/// PostgreSQL's continuation lines, which belong to the line before.
const PG_CONTINUATIONS: [&str; 6] = [
    "DETAIL:",
    "HINT:",
    "CONTEXT:",
    "STATEMENT:",
    "QUERY:",
    "LOCATION:",
];

/// MariaDB's (and MySQL's) tags.
const MARIADB_TAGS: [(&str, LineLevel); 5] = [
    ("[Note]", LineLevel::Info),
    ("[System]", LineLevel::Info),
    ("[Warning]", LineLevel::Warn),
    ("[ERROR]", LineLevel::Error),
    ("[Error]", LineLevel::Error),
];

/// Connections refused while the server starts or stops: every client that connects then
/// gets one (the agent's own probes included), and nothing is wrong.
const EXPECTED_REFUSALS: [&str; 3] = [
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is not yet accepting connections",
];

/// Lines the server writes in a healthy start, stop or clone driven by the agent, at the level
/// they mean here; each is matched anywhere in a line that names a level.
const EXPECTED: [(&str, LineLevel); 4] = [
    // PostgreSQL, to every session when the agent stops the server (fast shutdown), and
    // to the one an operator ends with pg_terminate_backend: nothing for the server's
    // operator to fix.
    (
        "terminating connection due to administrator command",
        LineLevel::Info,
    ),
    // PostgreSQL: a standby's WAL receiver, when the agent stops or restarts the server.
    (
        "terminating walreceiver process due to administrator command",
        LineLevel::Info,
    ),
    // PostgreSQL: every node starts as a standby, before the agent has told it a primary
    // (the bootstrap node is promoted from there).
    (
        "specified neither primary_conninfo nor restore_command",
        LineLevel::Info,
    ),
    // MariaDB: the agent already raised its open-file limit to the hard limit, which the
    // server inherits; the server's wish beyond it (32184 with the defaults) is no problem
    // ("Changed limits", when it must lower max_connections, stays a warning).
    (
        "Could not increase number of max_open_files",
        LineLevel::Info,
    ),
];

/// Lines that name no level but whose level is known: (how the line starts, its level).
const UNTAGGED: [(&str, LineLevel); 1] = [
    // MariaDB's "ready for connections" line: `Version: '10.11.…'  socket: '…'  port: 3306`.
    ("Version: '", LineLevel::Info),
];

/// How far into a line its severity may be (after timestamps, pids, session ids).
const PREFIX_LIMIT: usize = 96;

/// The level `line` names, if any.
pub fn named(line: &str) -> Named {
    let head: &str = match line.char_indices().nth(PREFIX_LIMIT) {
        Some((i, _)) => &line[..i],
        None => line,
    };
    let word_at = |i: usize| i == 0 || !head.as_bytes()[i - 1].is_ascii_alphanumeric();
    let first = |token: &str| {
        head.match_indices(token)
            .map(|(i, _)| i)
            .find(|&i| word_at(i))
    };
    let mut best: Option<(usize, Named)> = None;
    let mut consider = |at: Option<usize>, what: Named| {
        if let Some(i) = at
            && best.is_none_or(|(b, _)| i < b)
        {
            best = Some((i, what));
        }
    };
    for (token, level) in PG_SEVERITIES {
        consider(first(token), Named::Level(level));
    }
    for token in PG_CONTINUATIONS {
        consider(first(token), Named::Continuation);
    }
    for (tag, level) in MARIADB_TAGS {
        consider(head.find(tag), Named::Level(level));
    }
    match best.map(|(_, n)| n) {
        Some(Named::Level(LineLevel::Error))
            if EXPECTED_REFUSALS.iter().any(|r| line.contains(r)) =>
        {
            Named::Level(LineLevel::Info)
        }
        Some(Named::Level(level @ (LineLevel::Warn | LineLevel::Error))) => {
            match EXPECTED.iter().find(|(text, _)| line.contains(text)) {
                Some(&(_, meant)) => Named::Level(meant),
                None => Named::Level(level),
            }
        }
        Some(n) => n,
        None => match UNTAGGED.iter().find(|(start, _)| line.starts_with(start)) {
            Some(&(_, level)) => Named::Level(level),
            None => Named::Nothing,
        },
    }
}

/// Follows a stream line by line: each line's level, continuations at the level of the line
/// they continue, lines that name none at the stream's `default`.
#[derive(Clone, Copy, Debug)]
pub struct LevelReader {
    default: LineLevel,
    last: LineLevel,
}

impl LevelReader {
    /// A reader for a stream whose unnamed lines are at `default`.
    pub fn new(default: LineLevel) -> Self {
        Self {
            default,
            last: default,
        }
    }

    /// The level of the next line.
    pub fn level(&mut self, line: &str) -> LineLevel {
        let level = match named(line) {
            Named::Level(l) => l,
            Named::Continuation => self.last,
            Named::Nothing => self.default,
        };
        self.last = level;
        level
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LineLevel::*;

    #[test]
    fn postgres_and_mariadb_lines_get_the_level_they_name() {
        let mut r = LevelReader::new(Warn);
        let cases = [
            (
                "2026-12-03 10:00:00.123 UTC [4711] LOG:  database system is ready to accept connections",
                Info,
            ),
            (
                "2026-12-03 10:00:00.123 UTC [4711] WARNING:  could not flush dirty data",
                Warn,
            ),
            (
                "2026-12-03 10:00:00.123 UTC [4711] HINT:  Check free disk space.",
                Warn,
            ),
            (
                "2026-12-03 10:00:01.000 UTC [4712] FATAL:  password authentication failed for user \"app\"",
                Error,
            ),
            (
                "2026-12-03 10:00:01.000 UTC [4712] DETAIL:  Connection matched pg_hba.conf line 3",
                Error,
            ),
            (
                "2026-12-03 10:00:02.000 UTC [4713] FATAL:  the database system is starting up",
                Info,
            ),
            (
                "LOG:  redirecting log output to logging collector process",
                Info,
            ),
            (
                "2026-12-03 10:00:03.000 UTC [4714] ERROR:  relation \"x\" does not exist",
                Error,
            ),
            (
                "2026-12-03 10:00:03.000 UTC [4714] STATEMENT:  SELECT * FROM x",
                Error,
            ),
            (
                "2026-12-03 10:00:04 0 [Note] InnoDB: Buffer pool(s) load completed",
                Info,
            ),
            (
                "2026-12-03 10:00:04 0 [Warning] 'proxies_priv' entry '@% root@h' ignored",
                Warn,
            ),
            (
                "2026-12-03 10:00:04 5 [ERROR] Slave SQL: Error 'Duplicate entry' on query",
                Error,
            ),
            (
                "2026-12-03 10:00:05 0 [Note] WSREP: ERROR: not really",
                Info,
            ),
            ("some tool wrote this", Warn),
            // Expected under the agent: at info, their continuations too.
            (
                "2026-12-03 10:00:06.000 UTC [4715] WARNING:  specified neither primary_conninfo nor restore_command",
                Info,
            ),
            (
                "2026-12-03 10:00:06.000 UTC [4715] HINT:  The database server will regularly poll the pg_wal subdirectory to check for files placed there.",
                Info,
            ),
            (
                "2026-12-03 10:00:07.000 UTC [4716] FATAL:  terminating connection due to administrator command",
                Info,
            ),
            (
                "2026-12-03 10:00:07.100 UTC [4717] FATAL:  terminating walreceiver process due to administrator command",
                Info,
            ),
            (
                "2026-12-03 10:00:08 0 [Warning] Could not increase number of max_open_files to more than 20000 (request: 32184)",
                Info,
            ),
            (
                "2026-12-03 10:00:08 0 [Warning] Changed limits: max_open_files: 1024  max_connections: 151",
                Warn,
            ),
            (
                "Version: '10.11.19-MariaDB-0+deb12u1-log'  socket: '/run/mysqld.sock'  port: 3306  Debian 12",
                Info,
            ),
            ("a Version: 'x' elsewhere", Warn),
            ("DEBUG2:  checkpointer updated shared memory", Debug),
        ];
        for (line, want) in cases {
            assert_eq!(r.level(line), want, "{line}");
        }
    }

    #[test]
    fn a_word_that_merely_contains_a_severity_names_nothing() {
        assert_eq!(named("CATALOG: nothing here"), Named::Nothing);
        assert_eq!(named("the ERRORS: are fine"), Named::Nothing);
        assert_eq!(named(""), Named::Nothing);
        let long = format!("{} LOG:  too far in", "x".repeat(200));
        assert_eq!(named(&long), Named::Nothing);
        assert_eq!(named("ünïcödé ✓ LOG:  fine"), Named::Level(Info));
    }
}
