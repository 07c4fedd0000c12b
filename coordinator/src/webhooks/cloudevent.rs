//! An `events/<id>` document as a CloudEvents 1.0 event in structured mode
//! (`Content-Type: application/cloudevents+json`):
//!
//! ```json
//! {"specversion":"1.0","id":"1764000000123-db-2","source":"/autopilot/production/bluebird/billing/nodes/db-2",
//!  "type":"io.autopilot.failover","time":"2026-11-24T16:00:00.123Z","subject":"db-2",
//!  "datacontenttype":"application/json","data":{"schema":1,"time":"…","kind":"failover","node":"db-2",…}}
//! ```
//!
//! `id` is the event's key id (unique with `source`), `type` is `io.autopilot.<kind>` with
//! the document's own kind (kinds newer than this coordinator pass through as written),
//! `data` the document exactly as the agent stored it.

use serde::Serialize;
use serde_json::Value;

use cluster::wire::{self, EventDoc};

/// The media type of a structured-mode body.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";
/// `type` is this prefix and the event's kind.
pub const TYPE_PREFIX: &str = "io.autopilot.";

/// Where an event was stored: its cluster and key id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Namespace of the cluster.
    pub namespace: String,
    /// Project of the cluster.
    pub project: String,
    /// The cluster.
    pub cluster: String,
    /// `<id>` of `events/<id>`.
    pub id: String,
}

/// One event ready to deliver to any number of webhooks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    /// The event's kind as written (`failover`, …).
    pub kind: String,
    /// The node it happened on.
    pub node: String,
    /// The CloudEvent's `id` (for logs).
    pub id: String,
    /// The JSON body, signed as it is.
    pub body: Vec<u8>,
}

/// The structured-mode JSON object.
#[derive(Serialize)]
struct CloudEvent<'a> {
    specversion: &'static str,
    id: &'a str,
    source: String,
    #[serde(rename = "type")]
    kind: String,
    time: &'a str,
    subject: &'a str,
    datacontenttype: &'static str,
    data: &'a Value,
}

/// Why a stored value is not delivered.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// Not an event document this coordinator can read.
    #[error("not a readable event document: {0}")]
    Unreadable(String),
    /// The kind is not a plain lower-case word (it would make a strange `type`).
    #[error("event kind {0:?} is not a lower-case word")]
    BadKind(String),
}

/// Maps the stored `value` of `events/<origin.id>` to its CloudEvent.
pub fn map(origin: &Origin, value: &[u8]) -> Result<Mapped, MapError> {
    let doc: EventDoc =
        wire::decode(value).map_err(|e| MapError::Unreadable(cluster::error_chain(&e)))?;
    let data: Value =
        serde_json::from_slice(value).map_err(|e| MapError::Unreadable(e.to_string()))?;
    let kind = data["kind"].as_str().unwrap_or_default().to_owned();
    let plain = !kind.is_empty()
        && kind.len() <= 64
        && kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain {
        return Err(MapError::BadKind(kind));
    }
    let time = data["time"].as_str().unwrap_or_default();
    let source = format!(
        "/autopilot/{}/{}/{}/nodes/{}",
        segment(&origin.namespace),
        segment(&origin.project),
        segment(&origin.cluster),
        segment(&doc.node)
    );
    let ce = CloudEvent {
        specversion: "1.0",
        id: &origin.id,
        source,
        kind: format!("{TYPE_PREFIX}{kind}"),
        time,
        subject: &doc.node,
        datacontenttype: "application/json",
        data: &data,
    };
    let body = serde_json::to_vec(&ce).map_err(|e| MapError::Unreadable(e.to_string()))?;
    Ok(Mapped {
        kind,
        node: doc.node,
        id: origin.id.clone(),
        body,
    })
}

/// A name as one URI path segment: percent-encodes what is not unreserved or a sub-delimiter
/// (names hold no `/` or whitespace, but may hold `?`, `#`, `%` or non-ASCII letters).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
            );
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn origin() -> Origin {
        Origin {
            namespace: "production".into(),
            project: "bluebird".into(),
            cluster: "billing".into(),
            id: "1764000000123-db-2".into(),
        }
    }

    #[test]
    fn maps_a_failover() {
        let doc = json!({"schema":1,"time":"2026-11-24T16:00:00.123Z","kind":"failover",
            "node":"db-2","detail":"primary db-1 lost","from":"db-1","to":"db-2",
            "position":{"epoch":2,"offset":40},"a_newer_field":true});
        let m = map(&origin(), doc.to_string().as_bytes()).expect("maps");
        assert_eq!((m.kind.as_str(), m.node.as_str()), ("failover", "db-2"));
        let ce: Value = serde_json::from_slice(&m.body).expect("json");
        assert_eq!(
            ce,
            json!({"specversion":"1.0","id":"1764000000123-db-2",
                "source":"/autopilot/production/bluebird/billing/nodes/db-2",
                "type":"io.autopilot.failover","time":"2026-11-24T16:00:00.123Z","subject":"db-2",
                "datacontenttype":"application/json","data":doc})
        );
    }

    #[test]
    fn a_newer_kind_passes_through() {
        let doc = json!({"schema":1,"time":"2026-11-24T16:00:00.123Z","kind":"some_future_kind",
            "node":"db-1"});
        let m = map(&origin(), doc.to_string().as_bytes()).expect("maps");
        let ce: Value = serde_json::from_slice(&m.body).expect("json");
        assert_eq!(ce["type"], "io.autopilot.some_future_kind");
    }

    #[test]
    fn odd_names_are_encoded_in_the_source() {
        let doc = json!({"schema":1,"time":"2026-11-24T16:00:00.123Z","kind":"fenced",
            "node":"n?1#é"});
        let m = map(&origin(), doc.to_string().as_bytes()).expect("maps");
        let ce: Value = serde_json::from_slice(&m.body).expect("json");
        assert_eq!(
            ce["source"],
            "/autopilot/production/bluebird/billing/nodes/n%3F1%23%C3%A9"
        );
        assert_eq!(ce["subject"], "n?1#é");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(
            map(&origin(), b"not json"),
            Err(MapError::Unreadable(_))
        ));
        let no_node = json!({"schema":1,"time":"2026-11-24T16:00:00.123Z","kind":"fenced"});
        assert!(matches!(
            map(&origin(), no_node.to_string().as_bytes()),
            Err(MapError::Unreadable(_))
        ));
        let newer_schema =
            json!({"schema":2,"time":"2026-11-24T16:00:00.123Z","kind":"fenced","node":"x"});
        assert!(map(&origin(), newer_schema.to_string().as_bytes()).is_err());
        let odd_kind =
            json!({"schema":1,"time":"2026-11-24T16:00:00.123Z","kind":"Bad Kind!","node":"x"});
        assert!(matches!(
            map(&origin(), odd_kind.to_string().as_bytes()),
            Err(MapError::BadKind(_))
        ));
    }
}
