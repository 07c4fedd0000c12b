//! The data directory: initialising it (initdb with checksums), cloning it from the primary
//! (pg_basebackup), rewinding it (pg_rewind), and the files the engine owns in it —
//! `pg_hba.conf`, `standby.signal`, `postgresql.auto.conf` (primary_conninfo and slot), and
//! the password file replication connects with.
//!
//! Every file written here is owned by the PostgreSQL user, since the agent may run as root.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use handlers::exec::{Captured, RunOutcome, run_capture};
use nix::unistd::{Gid, Uid, chown};
use tracing::info;

use super::controldata::{self, ControlData};
use super::settings::{PostgresSettings, conn_value};
use crate::engine::EngineError;
use crate::role_ops::{Peer, Source};

/// initdb takes 1–2 s; allow for a slow disk.
const INITDB_LIMIT: Duration = Duration::from_secs(120);
/// Cloning copies the whole database.
const BASEBACKUP_LIMIT: Duration = Duration::from_secs(3600);
/// pg_controldata reads one file.
const CONTROLDATA_LIMIT: Duration = Duration::from_secs(30);
/// Rewinding copies the blocks changed since the divergence.
const REWIND_LIMIT: Duration = Duration::from_secs(1800);

/// The password file (libpq `passfile`) replication connects with; in the data directory,
/// mode 0600, so only the PostgreSQL user reads it.
pub const PASSFILE: &str = "autopilot.pgpass";

fn failed(operation: &'static str, reason: impl Into<String>) -> EngineError {
    EngineError::Failed {
        operation,
        reason: reason.into(),
    }
}

/// Whether the data directory holds a database (`PG_VERSION` exists, and it is not the
/// partial copy of a clone that did not finish).
pub fn initialised(s: &PostgresSettings) -> bool {
    s.data_dir.join("PG_VERSION").exists() && !clone_marker(&s.data_dir).exists()
}

/// Give `path` to the PostgreSQL user (a no-op without `run_as`).
pub fn give(s: &PostgresSettings, path: &Path) -> Result<(), String> {
    if let Some(user) = s.run_as {
        chown(
            path,
            Some(Uid::from_raw(user.uid)),
            Some(Gid::from_raw(user.gid)),
        )
        .map_err(|e| format!("chown {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Write `content` to `path` with `mode`, owned by the PostgreSQL user.
pub fn write_file(
    s: &PostgresSettings,
    path: &Path,
    content: &str,
    mode: u32,
) -> Result<(), String> {
    let tmp = path.with_extension("autopilot-tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| format!("create {}: {e}", tmp.display()))?;
    f.write_all(content.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("write {}: {e}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", tmp.display()))?;
    give(s, &tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| format!("rename to {}: {e}", path.display()))
}

/// Create the data directory (mode 0700, owned by the PostgreSQL user) if it is missing.
pub fn ensure_dir(s: &PostgresSettings) -> Result<(), String> {
    let dir = &s.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
    give(s, dir)
}

/// Make the data directory empty for a clone without deleting data the clone did not write:
/// a partial copy a failed clone left (marked by [`clone_marker`]) is emptied, and so is a
/// database this agent initialised at start-up that never held the cluster's data
/// (`fresh`); anything else in it is moved aside to `<name>.aside-<secs>` and kept. The
/// moved-aside path, if any.
pub fn make_room(dir: &Path, fresh: bool) -> Result<Option<PathBuf>, String> {
    let marker = clone_marker(dir);
    let occupied = std::fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if !occupied {
        return Ok(None);
    }
    if marker.exists() || fresh {
        empty(dir)?;
        return Ok(None);
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = dir
        .file_name()
        .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
    let aside = dir.with_file_name(format!("{name}.aside-{secs}"));
    std::fs::rename(dir, &aside)
        .map_err(|e| format!("move {} aside to {}: {e}", dir.display(), aside.display()))?;
    Ok(Some(aside))
}

/// With WAL archiving: the spool directory (the server's user's, mode 0700) and the script
/// `archive_command` runs, rewritten at every start so it follows the configuration.
pub fn prepare_spool(s: &PostgresSettings) -> Result<(), String> {
    let Some(a) = &s.archive else { return Ok(()) };
    std::fs::create_dir_all(&a.dir).map_err(|e| format!("create {}: {e}", a.dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&a.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("chmod {}: {e}", a.dir.display()))?;
    }
    give(s, &a.dir)?;
    write_file(s, &a.script(), &a.script_text(), 0o755)
}

/// Where a restore to adopt is made: `<data_dir>.autopilot-restore`, beside the data
/// directory (adopting it is a rename).
pub fn restore_staging(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
    dir.with_file_name(format!("{name}.autopilot-restore"))
}

/// Beside the data directory while a clone fills it (pg_basebackup wants an empty target,
/// so the mark cannot be inside): its contents are then ours to remove.
pub fn clone_marker(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
    dir.with_file_name(format!("{name}.autopilot-clone-incomplete"))
}

/// Remove everything inside `dir` (keeping the directory itself).
fn empty(dir: &Path) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|e| format!("read {}: {e}", dir.display()))?
            .path();
        let removed = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| format!("remove {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Run a PostgreSQL tool (messages in English, so its reports parse); what it wrote to
/// stdout.
async fn run_tool(
    s: &PostgresSettings,
    operation: &'static str,
    program: &str,
    args: Vec<String>,
    limit: Duration,
    password: Option<&str>,
) -> Result<String, EngineError> {
    let spec = s.tool(program, args, limit);
    let mut env = vec![("LC_ALL".to_owned(), "C".to_owned())];
    if let Some(p) = password {
        env.push(("PGPASSWORD".to_owned(), p.to_owned()));
    }
    match run_capture(program, &spec, &env).await {
        Ok(Captured {
            outcome: RunOutcome::Exited(status),
            stdout,
            ..
        }) if status.success() => Ok(stdout),
        Ok(Captured {
            outcome: RunOutcome::Exited(status),
            failure,
            ..
        }) => Err(failed(
            operation,
            match failure {
                Some(line) => format!("{program} exited with {status:?}: {line}"),
                None => {
                    format!("{program} exited with {status:?}; see its output in the agent log")
                }
            },
        )),
        Ok(Captured {
            outcome: RunOutcome::TimedOut,
            ..
        }) => Err(failed(
            operation,
            format!("{program} timed out after {limit:?}"),
        )),
        Err(e) => Err(failed(operation, handlers::error_chain(&e))),
    }
}

/// `initdb` with data checksums (pg_rewind needs them or wal_log_hints), the superuser and
/// its password from the configuration, then the engine's `pg_hba.conf`.
pub async fn initdb(s: &PostgresSettings) -> Result<(), EngineError> {
    let op = "initialise the data directory";
    ensure_dir(s).map_err(|e| failed(op, e))?;
    // The password reaches initdb through a file only the PostgreSQL user can read, removed
    // right after: never on a command line.
    let pwfile = s
        .data_dir
        .parent()
        .unwrap_or(Path::new("/"))
        .join(format!(".autopilot-initdb-{}", std::process::id()));
    write_file(s, &pwfile, &format!("{}\n", s.superuser.password), 0o600)
        .map_err(|e| failed(op, e))?;
    let args = vec![
        "-D".to_owned(),
        s.data_dir.display().to_string(),
        "--data-checksums".to_owned(),
        "-E".to_owned(),
        "UTF8".to_owned(),
        "--locale=C".to_owned(),
        "-U".to_owned(),
        s.superuser.user.clone(),
        format!("--pwfile={}", pwfile.display()),
        "--auth-local=peer".to_owned(),
        "--auth-host=scram-sha-256".to_owned(),
    ];
    let ran = run_tool(s, op, "initdb", args, INITDB_LIMIT, None).await;
    let _ = std::fs::remove_file(&pwfile);
    // What initdb prints on success is a tutorial (how to start the server, the trust
    // warning it did not need to give): for whoever debugs, not the default log.
    for line in ran?.lines().filter(|l| !l.trim().is_empty()) {
        tracing::debug!(process = "initdb", stream = "stdout", "{line}");
    }
    write_hba(s).map_err(|e| failed(op, e))?;
    trim_conf(s).map_err(|e| failed(op, e))?;
    record_settings(s).await
}

/// Drop initdb's `max_connections` and `shared_buffers` from `postgresql.conf`: the
/// command line sets them, and a differing file value makes every reload log an error.
fn trim_conf(s: &PostgresSettings) -> Result<(), String> {
    let path = s.data_dir.join("postgresql.conf");
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("max_connections") && !l.starts_with("shared_buffers"))
        .collect();
    write_file(s, &path, &(kept.join("\n") + "\n"), 0o600)
}

/// Start the new cluster once in single-user mode with the server's settings, so its
/// control file records them: a standby refuses to start when e.g. `max_connections` is
/// lower than the value recorded (initdb records its defaults), and the first start of
/// every node is a standby start.
async fn record_settings(s: &PostgresSettings) -> Result<(), EngineError> {
    let server = s.server_command();
    let mut args = vec![
        "--single".to_owned(),
        "-D".to_owned(),
        s.data_dir.display().to_string(),
    ];
    // The server's `-c name=value` pairs, after `postgres -D <dir>`.
    args.extend(server.argv.iter().skip(3).cloned());
    args.push("postgres".to_owned());
    run_tool(
        s,
        "record the server settings in the new cluster",
        "postgres",
        args,
        INITDB_LIMIT,
        None,
    )
    .await
    .map(drop)
}

/// The engine's `pg_hba.conf`: password (SCRAM) logins for everyone over TCP, replication
/// for the replication role only, peer authentication on the (unused) Unix socket. The
/// backup role, when configured, logs in only from this host (`samehost`: the agent runs
/// the backup tools next to the server), for dumps and for `pg_basebackup`.
pub fn write_hba(s: &PostgresSettings) -> Result<(), String> {
    write_file(s, &s.data_dir.join("pg_hba.conf"), &hba(s), 0o600)
}

/// The text of [`write_hba`].
pub fn hba(s: &PostgresSettings) -> String {
    let repl = &s.replication.user;
    let su = &s.superuser.user;
    let backup = match &s.backup {
        Some(b) if &b.user != su => format!(
            "host replication \"{u}\" samehost scram-sha-256\n\
             host all \"{u}\" samehost scram-sha-256\n\
             host all \"{u}\" all reject\n",
            u = b.user
        ),
        _ => String::new(),
    };
    format!(
        "# Written by autopilot; replaced on every initialisation and start.\n\
         local all all peer\n\
         {backup}\
         host replication \"{repl}\" 0.0.0.0/0 scram-sha-256\n\
         host replication \"{repl}\" ::/0 scram-sha-256\n\
         host replication \"{su}\" 0.0.0.0/0 scram-sha-256\n\
         host replication \"{su}\" ::/0 scram-sha-256\n\
         host all all 0.0.0.0/0 scram-sha-256\n\
         host all all ::/0 scram-sha-256\n"
    )
}

/// Path of `standby.signal`.
fn standby_signal(s: &PostgresSettings) -> PathBuf {
    s.data_dir.join("standby.signal")
}

/// A point-in-time recovery ends by promoting on a scratch server, which starts a new
/// timeline whose history file and first segment exist only in this data directory (the
/// scratch server archives nothing). Marks them ready for `archive_command`, so the archive
/// holds the branch a later recovery follows: without them PostgreSQL would replay the old
/// timeline past the branch point. The names marked.
pub fn archive_new_timeline(s: &PostgresSettings) -> Result<Vec<String>, String> {
    let wal = s.data_dir.join("pg_wal");
    let names: Vec<String> = match std::fs::read_dir(&wal) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => return Err(format!("read {}: {e}", wal.display())),
    };
    // The newest timeline with a history file is the one the recovery's promotion began.
    let Some(tli) = names
        .iter()
        .filter_map(|n| n.strip_suffix(".history"))
        .filter(|t| t.len() == 8)
        .filter_map(|t| u32::from_str_radix(t, 16).ok())
        .max()
    else {
        return Ok(Vec::new());
    };
    let prefix = format!("{tli:08X}");
    let status = wal.join("archive_status");
    std::fs::create_dir_all(&status).map_err(|e| format!("create {}: {e}", status.display()))?;
    let mut marked = Vec::new();
    for n in names.iter().filter(|n| {
        n.starts_with(&prefix)
            && (n.as_str() == format!("{prefix}.history")
                || (n.len() == 24 && n.chars().all(|c| c.is_ascii_hexdigit())))
    }) {
        let done = status.join(format!("{n}.done"));
        let ready = status.join(format!("{n}.ready"));
        if !done.exists() && !ready.exists() {
            write_file(s, &ready, "", 0o600)?;
            marked.push(n.clone());
        }
    }
    Ok(marked)
}

/// Make the next start a standby start. Kept in place while primary too (PostgreSQL reads
/// it only at start-up), so a restarted former primary never takes writes by itself.
pub fn mark_standby(s: &PostgresSettings) -> Result<(), String> {
    write_file(s, &standby_signal(s), "", 0o600)
}

/// The password file for replication connections.
pub fn write_passfile(s: &PostgresSettings) -> Result<(), String> {
    let esc = |v: &str| v.replace('\\', "\\\\").replace(':', "\\:");
    let content = format!(
        "*:*:*:{}:{}\n",
        esc(&s.replication.user),
        esc(&s.replication.password)
    );
    write_file(s, &s.data_dir.join(PASSFILE), &content, 0o600)
}

/// `primary_conninfo` for streaming from `primary`.
pub fn conninfo(s: &PostgresSettings, primary: &Peer) -> String {
    format!(
        "host={} port={} user={} passfile={} application_name={} connect_timeout=2 \
         keepalives_idle=2 keepalives_interval=1 keepalives_count=3",
        conn_value(&primary.host),
        primary.port,
        conn_value(&s.replication.user),
        conn_value(&s.data_dir.join(PASSFILE).display().to_string()),
        conn_value(&s.slot_name()),
    )
}

/// Rewrite `postgresql.auto.conf` while the server is down: pg_basebackup and pg_rewind
/// copy the source's (with its run-time settings), so it is replaced wholesale. With
/// `primary`, the standby streams from it through this node's slot.
pub fn write_auto_conf(s: &PostgresSettings, primary: Option<&Peer>) -> Result<(), String> {
    let mut content = String::from("# Written by autopilot while the server was stopped.\n");
    if let Some(p) = primary {
        content.push_str(&format!(
            "primary_conninfo = {}\nprimary_slot_name = {}\n",
            super::settings::literal(&conninfo(s, p)),
            super::settings::literal(&s.slot_name())
        ));
    }
    write_file(s, &s.data_dir.join("postgresql.auto.conf"), &content, 0o600)
}

/// Replace the data directory with a copy of `primary`'s (pg_basebackup, WAL streamed
/// along). The server must be stopped. `fresh`: what the data directory holds is a database
/// this agent initialised at start-up and nothing else ever used (see [`make_room`]).
pub async fn basebackup(
    s: &PostgresSettings,
    primary: &Peer,
    fresh: bool,
) -> Result<(), EngineError> {
    let op = "clone the primary";
    if fresh && initialised(s) {
        info!(data_dir = %s.data_dir.display(), "emptying the data directory initialised at start-up (it never held the cluster's data); cloning the primary");
    }
    if let Some(aside) = make_room(&s.data_dir, fresh).map_err(|e| failed(op, e))? {
        info!(kept = %aside.display(), data_dir = %s.data_dir.display(), "moved the local data directory aside and kept it; cloning the primary (delete it with `rm -rf {}` once it is not needed)", aside.display());
    }
    ensure_dir(s).map_err(|e| failed(op, e))?;
    let marker = clone_marker(&s.data_dir);
    std::fs::write(&marker, b"").map_err(|e| failed(op, format!("{}: {e}", marker.display())))?;
    let args = basebackup_args(s, primary, &s.replication.user);
    let pw = s.replication.password.clone();
    run_tool(s, op, "pg_basebackup", args, BASEBACKUP_LIMIT, Some(&pw)).await?;
    standby_files(s, primary).map_err(|e| failed(op, e))?;
    std::fs::remove_file(&marker).map_err(|e| failed(op, format!("{}: {e}", marker.display())))
}

/// The password file for the migration source's account (beside [`PASSFILE`]).
pub const SOURCE_PASSFILE: &str = "autopilot-source.pgpass";

/// `primary_conninfo` for streaming from a migration source, with its own account.
pub fn source_conninfo(s: &PostgresSettings, source: &Source) -> String {
    format!(
        "host={} port={} user={} passfile={} application_name={} connect_timeout=2 \
         keepalives_idle=2 keepalives_interval=1 keepalives_count=3",
        conn_value(&source.peer.host),
        source.peer.port,
        conn_value(&source.user),
        conn_value(&s.data_dir.join(SOURCE_PASSFILE).display().to_string()),
        conn_value(&s.slot_name()),
    )
}

/// The source account's password file.
pub fn write_source_passfile(s: &PostgresSettings, source: &Source) -> Result<(), String> {
    let esc = |v: &str| v.replace('\\', "\\\\").replace(':', "\\:");
    let content = format!("*:*:*:{}:{}\n", esc(&source.user), esc(&source.password));
    write_file(s, &s.data_dir.join(SOURCE_PASSFILE), &content, 0o600)
}

/// Replace the data directory with a copy of the migration `source` (pg_basebackup with
/// its account, WAL streamed along, through its slot when one is named: created when
/// missing) and make it a standby of the source. The server must be stopped.
pub async fn copy_source(
    s: &PostgresSettings,
    source: &Source,
    fresh: bool,
) -> Result<(), EngineError> {
    let op = "copy the migration source";
    if let Some(aside) = make_room(&s.data_dir, fresh).map_err(|e| failed(op, e))? {
        info!(kept = %aside.display(), data_dir = %s.data_dir.display(), "moved the local data directory aside and kept it; copying the migration source");
    }
    ensure_dir(s).map_err(|e| failed(op, e))?;
    let marker = clone_marker(&s.data_dir);
    std::fs::write(&marker, b"").map_err(|e| failed(op, format!("{}: {e}", marker.display())))?;
    let mut args = basebackup_args(s, &source.peer, &source.user);
    if let Some(slot) = &source.slot {
        args.extend(["-S".to_owned(), slot.clone()]);
    }
    let pw = source.password.clone();
    let mut copied = run_tool(
        s,
        op,
        "pg_basebackup",
        with_create(&args),
        BASEBACKUP_LIMIT,
        Some(&pw),
    )
    .await;
    if source.slot.is_some()
        && matches!(&copied, Err(EngineError::Failed { reason, .. }) if reason.contains("already exists"))
    {
        // The slot is there (an earlier copy made it): use it as it is.
        empty(&s.data_dir).map_err(|e| failed(op, e))?;
        copied = run_tool(s, op, "pg_basebackup", args, BASEBACKUP_LIMIT, Some(&pw)).await;
    }
    copied?;
    source_standby_files(s, source).map_err(|e| failed(op, e))?;
    std::fs::remove_file(&marker).map_err(|e| failed(op, format!("{}: {e}", marker.display())))
}

/// `args` with `-C` (create the slot) when they name one.
fn with_create(args: &[String]) -> Vec<String> {
    let mut out = args.to_vec();
    if args.iter().any(|a| a == "-S") {
        out.push("-C".to_owned());
    }
    out
}

/// The files a standby of the migration `source` needs after its data directory was
/// replaced.
pub fn source_standby_files(s: &PostgresSettings, source: &Source) -> Result<(), String> {
    write_hba(s)?;
    write_passfile(s)?;
    write_source_passfile(s, source)?;
    let mut content = String::from("# Written by autopilot while the server was stopped.\n");
    content.push_str(&format!(
        "primary_conninfo = {}\n",
        super::settings::literal(&source_conninfo(s, source))
    ));
    if let Some(slot) = &source.slot {
        content.push_str(&format!(
            "primary_slot_name = {}\n",
            super::settings::literal(slot)
        ));
    }
    write_file(s, &s.data_dir.join("postgresql.auto.conf"), &content, 0o600)?;
    mark_standby(s)
}

/// `pg_basebackup`'s arguments for a copy of `from` as `user` into the data directory, its
/// WAL streamed along, with a fast checkpoint (the password comes from `PGPASSWORD`).
fn basebackup_args(s: &PostgresSettings, from: &Peer, user: &str) -> Vec<String> {
    vec![
        "-h".to_owned(),
        from.host.clone(),
        "-p".to_owned(),
        from.port.to_string(),
        "-U".to_owned(),
        user.to_owned(),
        "-D".to_owned(),
        s.data_dir.display().to_string(),
        "-X".to_owned(),
        "stream".to_owned(),
        "-c".to_owned(),
        "fast".to_owned(),
        "--no-password".to_owned(),
    ]
}

/// The files a standby of `primary` needs after its data directory was replaced.
pub fn standby_files(s: &PostgresSettings, primary: &Peer) -> Result<(), String> {
    write_hba(s)?;
    write_passfile(s)?;
    write_auto_conf(s, Some(primary))?;
    mark_standby(s)
}

/// Rewind the local data directory to where it left `primary`'s history (pg_rewind, as
/// the superuser over a normal connection). The server must be stopped; an unclean stop is
/// fine (pg_rewind runs crash recovery itself).
pub async fn rewind(s: &PostgresSettings, primary: &Peer) -> Result<(), EngineError> {
    let op = "rewind the data directory";
    let source = format!(
        "host={} port={} user={} dbname=postgres connect_timeout=5",
        conn_value(&primary.host),
        primary.port,
        conn_value(&s.superuser.user)
    );
    let args = vec![
        "-D".to_owned(),
        s.data_dir.display().to_string(),
        format!("--source-server={source}"),
    ];
    let pw = s.superuser.password.clone();
    run_tool(s, op, "pg_rewind", args, REWIND_LIMIT, Some(&pw)).await?;
    info!(%primary, "rewound the data directory");
    standby_files(s, primary).map_err(|e| failed(op, e))
}

/// What `pg_controldata` says of the (stopped) data directory.
pub async fn control_data(s: &PostgresSettings) -> Result<ControlData, EngineError> {
    let op = "read the control file";
    let args = vec![s.data_dir.display().to_string()];
    let out = run_tool(s, op, "pg_controldata", args, CONTROLDATA_LIMIT, None).await?;
    ControlData::parse(&out).ok_or_else(|| {
        failed(
            op,
            format!(
                "pg_controldata {} printed no checkpoint or cluster state",
                s.data_dir.display()
            ),
        )
    })
}

/// Move aside the timeline history files in `pg_wal` that fork off before the data
/// directory's last checkpoint: with one of them there, a standby start fails ("requested
/// timeline N is not a child of this server's history") and the server never comes up to
/// be rewound. Without them it starts on its own timeline, read-only, and following the
/// primary rewinds it; the files are kept beside as `<name>.forked`. The files moved.
pub async fn set_aside_forked_history(s: &PostgresSettings) -> Result<Vec<PathBuf>, EngineError> {
    let cd = control_data(s).await?;
    let mut moved = Vec::new();
    for path in controldata::forked_history_files(&s.data_dir, &cd) {
        let aside = path.with_extension("history.forked");
        std::fs::rename(&path, &aside).map_err(|e| {
            failed(
                "set aside a forked timeline history",
                format!("move {} to {}: {e}", path.display(), aside.display()),
            )
        })?;
        moved.push(path);
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_keeps_foreign_data_aside_and_empties_only_its_own_partial_copy() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("pgdata");
        // Empty or missing: nothing to keep.
        assert_eq!(make_room(&dir, false).expect("missing"), None);
        std::fs::create_dir(&dir).expect("mkdir");
        assert_eq!(make_room(&dir, false).expect("empty"), None);
        // A real data directory (a diverged former primary): moved aside, contents intact.
        std::fs::write(dir.join("PG_VERSION"), "15\n").expect("write");
        let aside = make_room(&dir, false).expect("aside").expect("moved");
        assert_eq!(
            std::fs::read_to_string(aside.join("PG_VERSION")).expect("kept"),
            "15\n"
        );
        assert!(!dir.exists());
        // A partial copy of a failed clone (marked): emptied in place, nothing kept.
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::create_dir(dir.join("base")).expect("mkdir");
        std::fs::write(dir.join("PG_VERSION"), "15\n").expect("write");
        std::fs::write(clone_marker(&dir), b"").expect("mark");
        assert_eq!(make_room(&dir, false).expect("partial"), None);
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0);
        // A database initialised at start-up that never held the cluster's data: emptied.
        std::fs::write(dir.join("PG_VERSION"), "15\n").expect("write");
        assert_eq!(make_room(&dir, true).expect("fresh"), None);
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0);
        let aside_dirs = std::fs::read_dir(root.path())
            .expect("root")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().contains(".aside-"))
            })
            .count();
        assert_eq!(
            aside_dirs, 1,
            "only the real data moved aside above is kept"
        );
    }
}
