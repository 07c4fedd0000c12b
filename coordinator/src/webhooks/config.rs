//! The webhooks file (`--webhooks-file`, YAML) → validated [`Webhook`]s.
//!
//! Values are checked while the YAML is read (names, URLs, durations, event kinds, cluster
//! patterns), so a bad value is reported with its field path, line and column; what needs
//! several fields or the outside world (the secret, duplicate names) is checked after and
//! names the webhook. The secret is read from a file or an environment variable, never
//! written inline, and never shown: errors name where it was to come from, not what it is.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cluster::secret::Secret;
use cluster::wire::EventKind;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

use super::backoff::Backoff;
use super::filter::{ClusterPattern, Filter};
use crate::config::ConfigError;

/// Shortest accepted signing secret: receivers compare HMACs keyed by it, so it must be hard
/// to guess.
pub const MIN_SECRET_LEN: usize = 16;
/// Most events one webhook may hold waiting for delivery.
pub const MAX_QUEUE: usize = 100_000;
/// Most attempts for one delivery.
pub const MAX_ATTEMPTS: u32 = 100;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    /// The endpoints.
    webhooks: Vec<RawWebhook>,
}

/// One endpoint as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    /// Names it in logs and metrics.
    #[serde(deserialize_with = "de_name")]
    name: String,
    /// Where events are POSTed.
    #[serde(deserialize_with = "de_url")]
    url: reqwest::Url,
    /// File holding the signing secret (its first line).
    #[serde(default)]
    secret_file: Option<PathBuf>,
    /// Environment variable holding the signing secret.
    #[serde(default)]
    secret_env: Option<String>,
    /// Event kinds to deliver; absent: all.
    #[serde(default, deserialize_with = "de_kinds")]
    events: Option<Vec<String>>,
    /// `namespace/project/cluster` patterns (`*`, `?`); absent: all.
    #[serde(default, deserialize_with = "de_patterns")]
    clusters: Option<Vec<ClusterPattern>>,
    /// Bound on one HTTP attempt.
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    timeout: Duration,
    /// Retry policy.
    #[serde(default)]
    retry: RawRetry,
    /// Events waiting at most; beyond, the oldest is dropped.
    #[serde(default = "default_queue", deserialize_with = "de_queue")]
    queue: usize,
}

/// The retry policy as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    /// Attempts per event, the first included.
    #[serde(default = "default_attempts", deserialize_with = "de_attempts")]
    max_attempts: u32,
    /// Wait before the second attempt; doubles after each.
    #[serde(default = "default_initial", deserialize_with = "de_duration")]
    initial_backoff: Duration,
    /// Cap on the wait.
    #[serde(default = "default_max", deserialize_with = "de_duration")]
    max_backoff: Duration,
}

impl Default for RawRetry {
    fn default() -> Self {
        Self {
            max_attempts: default_attempts(),
            initial_backoff: default_initial(),
            max_backoff: default_max(),
        }
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_queue() -> usize {
    1000
}
fn default_attempts() -> u32 {
    5
}
fn default_initial() -> Duration {
    Duration::from_secs(1)
}
fn default_max() -> Duration {
    Duration::from_secs(60)
}

/// A validated endpoint.
#[derive(Clone)]
pub struct Webhook {
    /// Its name (logs, metrics, the `Autopilot-Webhook` header).
    pub name: String,
    /// Where to POST.
    pub url: reqwest::Url,
    /// The HMAC key of `Autopilot-Signature`.
    pub secret: Secret,
    /// Which events it gets.
    pub filter: Filter,
    /// Bound on one attempt (connect, send, answer).
    pub timeout: Duration,
    /// Attempts and waits.
    pub backoff: Backoff,
    /// Most events waiting.
    pub queue: usize,
}

impl Webhook {
    /// The URL without path, query or user info, for logs: `https://hooks.example.com:8443`.
    pub fn origin(&self) -> String {
        self.url.origin().ascii_serialization()
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("url", &self.origin())
            .field("secret", &self.secret)
            .field("filter", &self.filter)
            .field("timeout", &self.timeout)
            .field("backoff", &self.backoff)
            .field("queue", &self.queue)
            .finish()
    }
}

/// Reads and validates the webhooks file at `path`; `env` looks environment variables up
/// (passed in so tests need no process environment). `flag` names the flag in errors.
pub fn load(
    flag: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Webhook>, ConfigError> {
    let what = format!("{flag}={}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        what: what.clone(),
        why: format!("cannot read the file: {e}"),
    })?;
    parse(&what, path, &text, env)
}

/// [`load`] on text already read; `what` prefixes every error.
pub fn parse(
    what: &str,
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Webhook>, ConfigError> {
    let err = |why: String| ConfigError {
        what: what.to_owned(),
        why,
    };
    let raw: RawFile = yaml_serde::from_str(text).map_err(|e| err(e.to_string()))?;
    if raw.webhooks.is_empty() {
        return Err(err(
            "webhooks: the list is empty; list at least one endpoint or leave the flag out".into(),
        ));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(raw.webhooks.len());
    for (i, w) in raw.webhooks.into_iter().enumerate() {
        let at = format!("webhooks[{i}] ({:?})", w.name);
        let RawWebhook {
            name,
            url,
            secret_file,
            secret_env,
            events,
            clusters,
            timeout,
            retry,
            queue,
        } = w;
        if !names.insert(name.clone()) {
            return Err(err(format!(
                "{at}.name: another webhook has this name; names label the metrics, make each one unique"
            )));
        }
        let secret = match (secret_file, secret_env) {
            (Some(_), Some(_)) => {
                return Err(err(format!(
                    "{at}: give secret_file or secret_env, not both"
                )));
            }
            (None, None) => {
                return Err(err(format!(
                    "{at}: no signing secret; add secret_file: <path> (its first line) or \
                     secret_env: <VARIABLE>, e.g. made with `openssl rand -hex 32`"
                )));
            }
            (Some(p), None) => {
                let p = if p.is_relative() { base.join(p) } else { p };
                let bytes = std::fs::read(&p).map_err(|e| {
                    err(format!(
                        "{at}.secret_file: cannot read {}: {e}",
                        p.display()
                    ))
                })?;
                let text = String::from_utf8(bytes).map_err(|_| {
                    err(format!(
                        "{at}.secret_file: {} is not UTF-8 text",
                        p.display()
                    ))
                })?;
                let first = text.lines().next().unwrap_or("").trim().to_owned();
                Secret::new(format!("file {}", p.display()), first)
            }
            (None, Some(var)) => {
                let value = env(&var).ok_or_else(|| {
                    err(format!(
                        "{at}.secret_env: the environment variable {var} is not set; set it \
                         to the signing secret"
                    ))
                })?;
                Secret::new(
                    format!("environment variable {var}"),
                    value.trim().to_owned(),
                )
            }
        };
        if secret.expose().chars().count() < MIN_SECRET_LEN {
            return Err(err(format!(
                "{at}: the signing secret from {} is shorter than {MIN_SECRET_LEN} characters; \
                 generate one with `openssl rand -hex 32`",
                secret.origin
            )));
        }
        let RawRetry {
            max_attempts,
            initial_backoff,
            max_backoff,
        } = retry;
        if initial_backoff > max_backoff {
            return Err(err(format!(
                "{at}.retry: initial_backoff ({}) is longer than max_backoff ({}); raise \
                 max_backoff or lower initial_backoff",
                humantime::format_duration(initial_backoff),
                humantime::format_duration(max_backoff)
            )));
        }
        out.push(Webhook {
            name,
            url,
            secret,
            filter: Filter::new(events, clusters),
            timeout,
            backoff: Backoff {
                max_attempts,
                initial: initial_backoff,
                max: max_backoff,
            },
            queue,
        });
    }
    Ok(out)
}

/// Deserializes a string and checks it inside the visitor, so that yaml_serde reports the
/// error with the field's path, line and column (an error raised after the value was read
/// only gets the enclosing mapping's).
fn checked_str<'de, D: Deserializer<'de>, T>(
    d: D,
    expecting: &'static str,
    check: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error> {
    struct V<F>(F, &'static str);
    impl<'de, T, F: FnOnce(&str) -> Result<T, String>> Visitor<'de> for V<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.1)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(V(check, expecting))
}

/// [`checked_str`] for whole numbers.
fn checked_u64<'de, D: Deserializer<'de>, T>(
    d: D,
    expecting: &'static str,
    check: impl FnOnce(u64) -> Result<T, String>,
) -> Result<T, D::Error> {
    struct V<F>(F, &'static str);
    impl<'de, T, F: FnOnce(u64) -> Result<T, String>> Visitor<'de> for V<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.1)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            match u64::try_from(v) {
                Ok(v) => (self.0)(v).map_err(E::custom),
                Err(_) => Err(E::custom(format!("{v} is negative; expected {}", self.1))),
            }
        }
    }
    d.deserialize_u64(V(check, expecting))
}

/// A list that must not be empty; `empty` says why and what to do instead.
fn non_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
    empty: &'static str,
) -> Result<Vec<T>, D::Error> {
    struct V<T>(&'static str, std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list")
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(v) = seq.next_element()? {
                out.push(v);
            }
            if out.is_empty() {
                return Err(de::Error::custom(self.0));
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V(empty, std::marker::PhantomData))
}

fn de_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked_str(d, "a webhook name", |s| {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(s.to_owned())
        } else {
            Err(format!(
                "{s:?} is not a webhook name: use 1-64 characters of letters, digits, '-', '_' or '.'"
            ))
        }
    })
}

fn de_url<'de, D: Deserializer<'de>>(d: D) -> Result<reqwest::Url, D::Error> {
    // The value is not repeated in errors: a URL may carry a token in its path or query.
    checked_str(d, "an http:// or https:// URL", |s| {
        let url = reqwest::Url::parse(s).map_err(|e| {
            format!("not a URL ({e}); write it as http://host:port/path or https://…")
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "scheme {:?} is not supported; use http:// or https://",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the URL has no host".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "user info in the URL is not supported (it would travel in every \
                        request); authenticate the coordinator by the signature instead"
                    .into(),
            );
        }
        if url.fragment().is_some() {
            return Err("remove the #fragment: it is never sent".into());
        }
        Ok(url)
    })
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    checked_str(d, "a duration such as 500ms or 10s", |s| {
        let v = humantime::parse_duration(s)
            .map_err(|e| format!("{s:?} is not a duration ({e}); write e.g. 500ms, 10s or 2m"))?;
        if v.is_zero() {
            return Err("must be longer than 0s".into());
        }
        Ok(v)
    })
}

fn de_queue<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    checked_u64(d, "a number of events", |v| match usize::try_from(v) {
        Ok(v) if (1..=MAX_QUEUE).contains(&v) => Ok(v),
        _ => Err(format!("{v} is out of range: give 1 to {MAX_QUEUE} events")),
    })
}

fn de_attempts<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    checked_u64(d, "a number of attempts", |v| match u32::try_from(v) {
        Ok(v) if (1..=MAX_ATTEMPTS).contains(&v) => Ok(v),
        _ => Err(format!(
            "{v} is out of range: give 1 (no retry) to {MAX_ATTEMPTS}"
        )),
    })
}

/// An event kind this coordinator knows.
struct Kind(String);

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "an event kind", |k| {
            let known = serde_json::from_value::<EventKind>(serde_json::Value::String(k.into()))
                .is_ok_and(|e| e != EventKind::Unknown);
            if known && k != "unknown" {
                Ok(Kind(k.to_owned()))
            } else {
                Err(format!(
                    "{k:?} is not an event kind; use the kinds of docs/etcd-keys.md \
                     (`events/<id>`), e.g. failover, switchover, fenced, lease_lost, joined"
                ))
            }
        })
    }
}

fn de_kinds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let v: Vec<Kind> = non_empty(
        d,
        "an empty list would deliver nothing; list event kinds or leave `events` out for all",
    )?;
    Ok(Some(v.into_iter().map(|k| k.0).collect()))
}

impl<'de> Deserialize<'de> for ClusterPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(
            d,
            "a namespace/project/cluster pattern",
            ClusterPattern::parse,
        )
    }
}

fn de_patterns<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<ClusterPattern>>, D::Error> {
    non_empty(
        d,
        "an empty list would deliver nothing; list patterns or leave `clusters` out for all",
    )
    .map(Some)
}

#[cfg(test)]
mod tests;
