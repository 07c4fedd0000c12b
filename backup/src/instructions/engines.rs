//! The engine-specific steps of the manual restore: unpack or load each stream with the
//! engine's own tools, then prepare and start the server.

use super::{Link, Text, plain};

/// The comment that introduces the decrypting steps.
const CONCAT: &str = "(a stream's chunks, concatenated in name order, are one age file)";

pub(super) fn mariadb_physical(t: &mut Text, chain: &[Link], major: Option<&str>) {
    t.step(format!(
        "Decrypt, decompress and unpack {} {CONCAT}.",
        if chain.len() > 1 {
            "each backup"
        } else {
            "the backup"
        }
    ));
    let dirs: Vec<String> = (0..chain.len())
        .map(|i| {
            if i == 0 {
                "$WORK/full".to_owned()
            } else {
                format!("$WORK/inc-{i}")
            }
        })
        .collect();
    for (l, dir) in chain.iter().zip(&dirs) {
        t.line(format!("mkdir -p \"{dir}\""));
        for s in &l.streams {
            t.line(format!(
                "{} | mbstream -x -C \"{dir}\"",
                plain(&l.backup_id, s)
            ));
        }
    }
    if chain.len() > 1 {
        t.step("Prepare the full backup, then apply each incremental to it, in order.");
    } else {
        t.step("Prepare it (apply its redo log, so the data files are consistent).");
    }
    t.line("mariadb-backup --prepare --target-dir=\"$WORK/full\"");
    for dir in dirs.iter().skip(1) {
        t.line(format!(
            "mariadb-backup --prepare --target-dir=\"$WORK/full\" --incremental-dir=\"{dir}\""
        ));
    }
    t.step(format!(
        "Put it in place with the server{} stopped: keep the old data directory aside, copy the backup back, own it, start.",
        major.map(|m| format!(" (MariaDB {m})")).unwrap_or_default()
    ));
    t.line("#    (on a node an Autopilot agent runs, stop that agent first: it would restart the server)");
    t.line("DATADIR=/var/lib/mysql   # the server's data directory");
    t.line("systemctl stop mariadb");
    t.line("mv \"$DATADIR\" \"$DATADIR.before-restore\"");
    t.line("mariadb-backup --copy-back --target-dir=\"$WORK/full\" --datadir=\"$DATADIR\"");
    t.line("chown -R mysql:mysql \"$DATADIR\"");
    t.line("systemctl start mariadb");
}

/// Logical streams in loading order: `globals` (users, roles) first, then the others as
/// they are listed.
fn loading_order(l: &Link) -> Vec<&str> {
    let mut v: Vec<&str> = l
        .streams
        .iter()
        .filter(|s| *s == "globals")
        .map(String::as_str)
        .collect();
    v.extend(
        l.streams
            .iter()
            .filter(|s| *s != "globals")
            .map(String::as_str),
    );
    v
}

/// A stream these instructions do not know: decrypted into a file.
fn to_file(t: &mut Text, id: &str, stream: &str) {
    t.line(format!(
        "#    {stream}: a stream these instructions do not know; decrypted into a file for you to load:"
    ));
    t.line(format!("{} > \"$WORK/{stream}.out\"", plain(id, stream)));
}

pub(super) fn mariadb_logical(t: &mut Text, l: &Link, major: Option<&str>) {
    t.step(format!(
        "Load the dumps into a running MariaDB server{}, each database {CONCAT}, then the \
         accounts (`users`: their table grants need the tables).",
        major
            .map(|m| format!(" ({m} or newer)"))
            .unwrap_or_default()
    ));
    t.line("#    Connection options: ~/.my.cnf, or add them after each `mariadb`.");
    let id = &l.backup_id;
    // Each `db-<name>` dump creates its database (mariadb-dump --databases).
    for s in l.streams.iter().filter(|s| *s != "users") {
        if s.strip_prefix("db-").is_some_and(|d| !d.is_empty()) {
            t.line(format!("{} | mariadb", plain(id, s)));
        } else {
            to_file(t, id, s);
        }
    }
    if l.streams.iter().any(|s| s == "users") {
        t.line(format!("{} | mariadb", plain(id, "users")));
    }
}

pub(super) fn postgres_physical(
    t: &mut Text,
    l: &Link,
    version: &Option<String>,
    major: &Option<String>,
) {
    t.step(format!(
        "Decrypt, decompress and unpack it into a new, empty data directory {CONCAT}."
    ));
    t.line(format!(
        "PGDATA=/var/lib/postgresql/{}restored   # the new data directory",
        major
            .as_deref()
            .map(|m| format!("{m}/"))
            .unwrap_or_default()
    ));
    t.line("mkdir -p \"$PGDATA\"");
    for s in &l.streams {
        let id = &l.backup_id;
        match s.as_str() {
            "base" => t.line(format!("{} | tar -x -C \"$PGDATA\"", plain(id, s))),
            "wal" | "pg_wal" => {
                t.line("mkdir -p \"$PGDATA/pg_wal\"");
                t.line(format!("{} | tar -x -C \"$PGDATA/pg_wal\"", plain(id, s)));
            }
            other => {
                t.line(format!(
                    "#    {other}: a tablespace; unpack it, then move it where $PGDATA/tablespace_map says:"
                ));
                t.line(format!("mkdir -p \"$WORK/tablespace-{other}\""));
                t.line(format!(
                    "{} | tar -x -C \"$WORK/tablespace-{other}\"",
                    plain(id, other)
                ));
            }
        }
    }
    t.step("Make it a server of its own (not a standby of the old primary), owned by postgres.");
    t.line("rm -f \"$PGDATA/standby.signal\"");
    t.line("#    pg_basebackup may have written primary_conninfo into $PGDATA/postgresql.auto.conf: delete those lines.");
    t.line("chown -R postgres:postgres \"$PGDATA\"");
    t.line("chmod 700 \"$PGDATA\"");
    let with = match (major, version) {
        (Some(m), Some(v)) => format!(" with PostgreSQL {m} (it was written by {v})"),
        _ => String::new(),
    };
    t.step(format!(
        "Start it{with}: it replays the WAL in the backup, then accepts writes."
    ));
    t.line("#    (on a node an Autopilot agent runs, stop that agent first; another server on port 5432: add -o '-p PORT')");
    let debian = major
        .as_deref()
        .map(|m| format!("   # Debian, Ubuntu: /usr/lib/postgresql/{m}/bin/pg_ctl"))
        .unwrap_or_default();
    t.line(format!(
        "sudo -u postgres pg_ctl -D \"$PGDATA\" -l \"$PGDATA/restore.log\" -w start{debian}"
    ));
    t.line("sudo -u postgres psql -X -c 'SELECT pg_is_in_recovery()'   # f: it runs on its own");
}

pub(super) fn postgres_logical(t: &mut Text, l: &Link, major: Option<&str>) {
    t.step(format!(
        "Load the dumps into a running PostgreSQL server{}, roles and tablespaces first, then each database {CONCAT}.",
        major.map(|m| format!(" ({m} or newer)")).unwrap_or_default()
    ));
    t.line("#    Connection: PGHOST, PGPORT and PGUSER (a superuser) in the environment.");
    for s in loading_order(l) {
        let id = &l.backup_id;
        if s == "globals" {
            t.line(format!("{} | psql -X -d postgres", plain(id, s)));
            t.line("#    (\"role … already exists\" errors for roles the server has are harmless)");
        } else if let Some(db) = s.strip_prefix("db-").filter(|d| !d.is_empty()) {
            if db == "postgres" {
                // It exists on every server: its contents go into it.
                t.line(format!("{} | pg_restore -d postgres", plain(id, s)));
            } else {
                t.line(format!(
                    "#    {db}: pg_restore --create makes it (refused when it exists: drop or rename that one first)"
                ));
                t.line(format!(
                    "{} | pg_restore --create -d postgres",
                    plain(id, s)
                ));
            }
        } else {
            to_file(t, id, s);
        }
    }
}

pub(super) fn generic(t: &mut Text, chain: &[Link]) {
    t.step(format!(
        "Decrypt and decompress every stream into a file {CONCAT}, then load them, in this order, with the engine's tools."
    ));
    for l in chain {
        t.line(format!("mkdir -p \"$WORK/{}.plain\"", l.backup_id));
        for s in &l.streams {
            t.line(format!(
                "{} > \"$WORK/{}.plain/{s}\"",
                plain(&l.backup_id, s),
                l.backup_id
            ));
        }
    }
}
