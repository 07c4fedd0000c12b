//! `autopilotctl`: the command line over the coordinator's API. Table output by default,
//! `-o json` for scripts; the URL and token come from flags, the environment
//! (`AUTOPILOT_URL`, `AUTOPILOT_TOKEN`, `AUTOPILOT_TOKEN_FILE`) or the config file
//! (`~/.config/autopilot/autopilotctl.yaml`). The environment is read here rather than by
//! clap, so the usage line never lists `--url`/`--token` as if they were required. Exit codes
//! are in [`client::exit`] and docs/cli.md.

pub mod backups;
pub mod client;
pub mod migrate;
pub mod nodes;
pub mod output;
pub mod restore;
pub mod show;
pub mod upgrade;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};

use client::{Client, CtlError, FileConfig, exit, read_token_file};

/// autopilotctl: the command line of the Autopilot coordinator's API — list and show
/// clusters, follow their events, switch over, fail over, pause, rebuild, restart or reload
/// nodes, restore a cluster in place, list and request backups, manage tokens, read the audit
/// log.
#[derive(Parser, Debug)]
#[command(
    name = "autopilotctl",
    version,
    about = "autopilotctl: the command line of the Autopilot coordinator's API (clusters, \
             events, switchover, failover, maintenance, node requests, backups, tokens, audit)",
    long_about = None
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Where the coordinator is, who we are, how to print. The five settings below fall back on
/// their environment variable, then on the config file ([`Global::resolve`]).
#[derive(Args, Debug)]
pub struct Global {
    /// Coordinator URL, e.g. https://coordinator:8080 [default: $AUTOPILOT_URL, else the
    /// config file's `url`].
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// Bearer token (prefer --token-file: flags show in `ps`) [default: $AUTOPILOT_TOKEN].
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// File holding the token (first line) [default: $AUTOPILOT_TOKEN_FILE, else the config
    /// file's `token_file`].
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for an https URL [default: $AUTOPILOT_CA_FILE, else the
    /// config file's `ca_file`].
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,
    /// Config file (YAML: url, token_file, ca_file) [default: $AUTOPILOTCTL_CONFIG, else
    /// ~/.config/autopilot/autopilotctl.yaml].
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Connect timeout.
    #[arg(long, global = true, value_parser = humantime::parse_duration, default_value = "5s")]
    pub connect_timeout: Duration,
}

impl Global {
    /// Fills the settings not given as flags from the environment (`env` looks a variable
    /// up; empty values count as unset).
    pub fn resolve(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        let var = |k: &str| env(k).filter(|v| !v.is_empty());
        if self.url.is_none() {
            self.url = var("AUTOPILOT_URL");
        }
        if self.token.is_none() && self.token_file.is_none() {
            self.token = var("AUTOPILOT_TOKEN");
            if self.token.is_none() {
                self.token_file = var("AUTOPILOT_TOKEN_FILE").map(PathBuf::from);
            }
        }
        if self.ca_file.is_none() {
            self.ca_file = var("AUTOPILOT_CA_FILE").map(PathBuf::from);
        }
        if self.config.is_none() {
            self.config = var("AUTOPILOTCTL_CONFIG").map(PathBuf::from);
        }
    }
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, for scripts.
    Json,
}

/// A cluster as `namespace/project/cluster`.
#[derive(Args, Debug, Clone)]
pub struct ClusterArg {
    /// The cluster, as namespace/project/cluster.
    pub cluster: String,
}

impl ClusterArg {
    fn path(&self) -> Result<String, CtlError> {
        let parts: Vec<&str> = self.cluster.split('/').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(CtlError::new(
                exit::USAGE,
                format!(
                    "{:?} is not a cluster: write namespace/project/cluster (see `autopilotctl list`)",
                    self.cluster
                ),
            ));
        }
        Ok(format!(
            "/v1/clusters/{}",
            parts
                .iter()
                .map(|p| encode(p))
                .collect::<Vec<_>>()
                .join("/")
        ))
    }
}

/// A cluster and one of its nodes.
#[derive(Args, Debug, Clone)]
pub struct NodeArg {
    #[command(flatten)]
    pub c: ClusterArg,
    /// The node id.
    pub node: String,
}

impl NodeArg {
    /// `/v1/clusters/…/<under>/<node>`.
    fn path(&self, under: &str) -> Result<String, CtlError> {
        Ok(format!("{}/{under}/{}", self.c.path()?, encode(&self.node)))
    }
}

/// Percent-encodes a path segment.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// List the clusters the token can see.
    List {
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
    },
    /// Show one cluster: engine, primary, maintenance, pending requests, what holds a
    /// failover, and every member (stopped ones too) with role, state, sync, lag, position
    /// and eligibility.
    Show {
        #[command(flatten)]
        c: ClusterArg,
        /// Redraw every SECONDS (default 2) until interrupted.
        #[arg(long, short, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2",
            value_parser = clap::value_parser!(u64).range(1..=3600))]
        watch: Option<u64>,
    },
    /// List a cluster's nodes.
    Nodes(ClusterArg),
    /// A cluster's changes of primary.
    History(ClusterArg),
    /// A cluster's events; with --follow, keep following (reconnecting after errors).
    Events {
        #[command(flatten)]
        c: ClusterArg,
        /// Keep following until interrupted.
        #[arg(long, short)]
        follow: bool,
        /// Start after this revision (from `show` or an earlier event id).
        #[arg(long)]
        since: Option<i64>,
    },
    /// Each node's top statements by total execution time (the primary first).
    Top {
        #[command(flatten)]
        c: ClusterArg,
        /// Statements per node (1-100; default: each agent's telemetry.top_statements).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: Option<u32>,
    },
    /// Ask the primary to hand over (to --candidate, or the best replica).
    Switchover {
        #[command(flatten)]
        c: ClusterArg,
        /// Node id to promote.
        #[arg(long)]
        candidate: Option<String>,
    },
    /// Promote a named node now, with or without a primary (admin).
    Failover {
        #[command(flatten)]
        c: ClusterArg,
        /// Node id to promote.
        #[arg(long)]
        candidate: String,
        /// Even if the candidate is behind another node (may lose writes).
        #[arg(long)]
        force: bool,
    },
    /// Turn maintenance mode on: agents make no automatic role change.
    Pause {
        #[command(flatten)]
        c: ClusterArg,
        /// Why (shown in `show` and the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Turn maintenance mode off.
    Resume(ClusterArg),
    /// Rebuild a replica: its agent moves its data aside and clones the primary again
    /// (operator; the primary: switch over first).
    Reinit(NodeArg),
    /// Restart a replica's database (operator; the primary: switch over first).
    Restart(NodeArg),
    /// Have a node's database (or every live node's) re-read its configuration (operator).
    Reload {
        #[command(flatten)]
        c: ClusterArg,
        /// The node; omit for every live node.
        node: Option<String>,
    },
    /// Rewind the whole cluster in place to --time or --latest (admin; needs --confirm):
    /// maintenance on, the primary restores the newest base backup and the archive, and the
    /// other nodes rebuild from it; data after the point is kept aside, no longer served.
    Restore(restore::RestoreArgs),
    /// A live migration from an external database: its status, and the cutover (admin).
    #[command(subcommand)]
    Migrate(migrate::MigrateCmd),
    /// A rolling upgrade: begin one, follow it, pause and resume it (operator).
    #[command(subcommand)]
    Upgrade(upgrade::UpgradeCmd),
    /// Forget a member that is gone for good (admin; stop its agent first).
    Remove(NodeArg),
    /// A node's effective configuration, from its agent (secrets redacted).
    ShowConfig(NodeArg),
    /// Backups: list them, show one with its manual restore instructions, request a backup,
    /// a verify or a test restore (operator).
    #[command(subcommand)]
    Backup(backups::BackupCmd),
    /// Manage API tokens (admin).
    #[command(subcommand)]
    Token(TokenCmd),
    /// Which nodes lag behind their packages' candidate versions (each agent's
    /// `packages.watch`): one row per node and package with an update.
    Packages {
        /// Only clusters of this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Every watched package, not only those with an update.
        #[arg(long)]
        all: bool,
    },
    /// Read the audit log (admin), newest first.
    Audit {
        /// At most this many records.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only records older than this record id.
        #[arg(long)]
        before: Option<String>,
    },
}

/// Token commands.
#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Issue a token; it is printed once.
    Create {
        /// Who or what uses it.
        #[arg(long)]
        name: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: String,
        /// A namespace it may see; repeat for several, `*` for all.
        #[arg(long = "namespace", required = true)]
        namespaces: Vec<String>,
        /// Lifetime, e.g. 30d or 12h; default: no expiry.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
    },
    /// List tokens.
    List,
    /// Revoke a token by id.
    Revoke {
        /// The token id (the middle part of apt_<id>_<secret>).
        id: String,
    },
}

/// Runs the CLI with the process environment; the error carries the exit code.
pub fn run(cli: Cli) -> Result<(), CtlError> {
    run_with(cli, &|k| std::env::var(k).ok())
}

/// Runs the CLI, looking environment variables up with `env`.
pub fn run_with(mut cli: Cli, env: &dyn Fn(&str) -> Option<String>) -> Result<(), CtlError> {
    cli.global.resolve(env);
    // Before anything is looked up: the consequences, not a missing URL, come first.
    if let Cmd::Restore(a) = &cli.cmd {
        a.confirmed()?;
    }
    if let Cmd::Migrate(migrate::MigrateCmd::Cutover(a)) = &cli.cmd {
        a.confirmed()?;
    }
    let g = &cli.global;
    let (cfg_path, explicit) = match &g.config {
        Some(p) => (p.clone(), true),
        None => (
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default()
                .join(".config/autopilot/autopilotctl.yaml"),
            false,
        ),
    };
    let file = FileConfig::load(&cfg_path, explicit)?;
    let url = g.url.clone().or(file.url).ok_or_else(|| {
        CtlError::new(
            exit::USAGE,
            "no coordinator URL: pass --url, set AUTOPILOT_URL, or put `url:` in the config file",
        )
    })?;
    let token = match (&g.token, &g.token_file, &file.token_file) {
        (Some(t), _, _) => Some(t.clone()),
        (None, Some(f), _) | (None, None, Some(f)) => Some(read_token_file(f)?),
        (None, None, None) => None,
    };
    let ca = g.ca_file.clone().or(file.ca_file);
    let client = Client::new(&url, token, ca.as_deref(), g.connect_timeout)?;
    let json_out = g.output == Output::Json;
    let print = |v: &Value, render: &dyn Fn(&Value) -> String| {
        if json_out {
            println!(
                "{}",
                serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
            );
        } else {
            print!("{}", output::terminal_safe(&render(v)));
        }
    };
    match cli.cmd {
        Cmd::List { namespace, project } => {
            let mut q = Vec::new();
            if let Some(n) = namespace {
                q.push(format!("namespace={}", encode(&n)));
            }
            if let Some(p) = project {
                q.push(format!("project={}", encode(&p)));
            }
            let path = if q.is_empty() {
                "/v1/clusters".to_owned()
            } else {
                format!("/v1/clusters?{}", q.join("&"))
            };
            print(&client.get(&path)?, &show::clusters);
        }
        Cmd::Show { c, watch: None } => print(&client.get(&c.path()?)?, &show::cluster),
        Cmd::Show {
            c,
            watch: Some(every),
        } => nodes::watch(&client, &c, Duration::from_secs(every), json_out)?,
        Cmd::Nodes(c) => {
            let v = client.get(&format!("{}/nodes", c.path()?))?;
            print(&v, &|v| output::nodes(&v["nodes"]));
        }
        Cmd::History(c) => print(
            &client.get(&format!("{}/history", c.path()?))?,
            &show::history,
        ),
        Cmd::Events { c, follow, since } => events(&client, &c, follow, since, json_out)?,
        Cmd::Top { c, limit } => {
            let mut path = format!("{}/statements", c.path()?);
            if let Some(n) = limit {
                path += &format!("?limit={n}");
            }
            let v = client.get(&path)?;
            print(&v, &output::top);
            let nodes = v["nodes"].as_array().map(Vec::as_slice).unwrap_or_default();
            if !nodes.is_empty() && nodes.iter().all(|n| !n["error"].is_null()) {
                return Err(CtlError::new(
                    exit::UNAVAILABLE,
                    "no agent of the cluster answered (see each node's error above); retry \
                     when they are up",
                ));
            }
        }
        Cmd::Switchover { c, candidate } => {
            let body = json!({ "candidate": candidate });
            let v = client.call(
                Method::POST,
                &format!("{}/switchover", c.path()?),
                Some(&body),
            )?;
            print(&v, &|v| accepted(v, &c.cluster));
        }
        Cmd::Failover {
            c,
            candidate,
            force,
        } => {
            let body = json!({ "candidate": candidate, "force": force });
            let v = client.call(
                Method::POST,
                &format!("{}/failover", c.path()?),
                Some(&body),
            )?;
            print(&v, &|v| accepted(v, &c.cluster));
        }
        Cmd::Pause { c, reason } => {
            let body = json!({ "enabled": true, "reason": reason });
            let v = client.call(
                Method::PUT,
                &format!("{}/maintenance", c.path()?),
                Some(&body),
            )?;
            print(&v, &|_| {
                "maintenance on: agents make no automatic role change\n".into()
            });
        }
        Cmd::Resume(c) => {
            let body = json!({ "enabled": false });
            let v = client.call(
                Method::PUT,
                &format!("{}/maintenance", c.path()?),
                Some(&body),
            )?;
            print(&v, &|_| "maintenance off\n".into());
        }
        Cmd::Reinit(n) => nodes::request(&client, &n.c, Some(&n.node), "reinit", &print)?,
        Cmd::Restart(n) => nodes::request(&client, &n.c, Some(&n.node), "restart", &print)?,
        Cmd::Reload { c, node } => nodes::request(&client, &c, node.as_deref(), "reload", &print)?,
        Cmd::Restore(a) => restore::run(&client, &a, &print, json_out)?,
        Cmd::Migrate(m) => migrate::run(&client, m, &print, json_out)?,
        Cmd::Upgrade(u) => upgrade::run(&client, u, &print, json_out)?,
        Cmd::Remove(n) => {
            let v = client.call(Method::DELETE, &n.path("members")?, None)?;
            let cluster = n.c.cluster.clone();
            print(&v, &move |v| nodes::removed(v, &cluster));
        }
        Cmd::ShowConfig(n) => {
            let v = client.get(&format!("{}/config", n.path("nodes")?))?;
            print(&v, &nodes::config);
        }
        Cmd::Backup(b) => backups::run(&client, b, &print)?,
        Cmd::Token(t) => token_cmd(&client, t, &print)?,
        Cmd::Packages { namespace, all } => {
            let mut path = format!("/v1/packages?all={all}");
            if let Some(ns) = namespace {
                path += &format!("&namespace={}", encode(&ns));
            }
            print(&client.get(&path)?, &output::packages);
        }
        Cmd::Audit { limit, before } => {
            let mut path = format!("/v1/audit?limit={limit}");
            if let Some(b) = before {
                path += &format!("&before={}", encode(&b));
            }
            print(&client.get(&path)?, &output::audit);
        }
    }
    Ok(())
}

/// Prints a value as JSON or with a table renderer.
pub type Printer<'a> = &'a dyn Fn(&Value, &dyn Fn(&Value) -> String);

/// The answer to a switchover or failover, with the command that follows its outcome.
pub fn accepted(v: &Value, cluster: &str) -> String {
    let mut s = format!(
        "{} requested ({}): {} -> {}; follow with `autopilotctl events {} --since {}`\n",
        output::s(&v["action"]),
        output::s(&v["mode"]),
        output::s(&v["from"]),
        match &v["candidate"] {
            Value::Null => "best replica".into(),
            c => output::s(c),
        },
        output::s(&Value::String(cluster.into())),
        output::s(&v["revision"]),
    );
    for w in v["warnings"].as_array().into_iter().flatten() {
        s += &format!("warning: {}\n", output::s(w));
    }
    s
}

fn token_cmd(client: &Client, t: TokenCmd, print: Printer<'_>) -> Result<(), CtlError> {
    match t {
        TokenCmd::Create {
            name,
            role,
            namespaces,
            expires_in,
        } => {
            let body = json!({
                "name": name, "role": role, "namespaces": namespaces,
                "expires_in_seconds": expires_in.map(|d| d.as_secs().max(1)),
            });
            let v = client.call(Method::POST, "/v1/tokens", Some(&body))?;
            print(&v, &|v| {
                format!(
                    "{}\ntoken (shown once, store it now):\n{}\n",
                    output::token(&v["info"]),
                    output::s(&v["token"])
                )
            });
        }
        TokenCmd::List => print(&client.get("/v1/tokens")?, &output::tokens),
        TokenCmd::Revoke { id } => {
            let v = client.call(Method::DELETE, &format!("/v1/tokens/{}", encode(&id)), None)?;
            print(&v, &output::token);
        }
    }
    Ok(())
}

fn events(
    client: &Client,
    c: &ClusterArg,
    follow: bool,
    since: Option<i64>,
    json_out: bool,
) -> Result<(), CtlError> {
    let base = format!("{}/events", c.path()?);
    let mut last = since.map(|s| s.to_string());
    let mut on = |id: &str, kind: &str, data: &str| {
        if json_out {
            println!("{data}");
        } else {
            print!("{}", output::terminal_safe(&show::event(id, kind, data)));
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        kind != "error" || follow
    };
    if !follow {
        // Replay what happened since `since` (or nothing), then stop once the stream is idle.
        client.events(
            &base,
            last.as_deref(),
            Some(Duration::from_secs(1)),
            &mut on,
        )?;
        return Ok(());
    }
    loop {
        match client.events(&base, last.as_deref(), None, &mut on) {
            Ok(seen) => last = seen.or(last),
            Err(e) if e.code == exit::UNAVAILABLE => eprintln!("autopilotctl: {e}; reconnecting"),
            Err(e) => return Err(e),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
