//! What the role logic asks of an engine, in engine-agnostic terms.

use std::fmt;

/// How far a database's data goes: the contract's position type (`epoch`, then `offset`).
pub use cluster::wire::Position;

/// Parse `OFFSET` or `EPOCH OFFSET` (decimal integers, surrounding white space ignored),
/// the format the `process` engine's hooks print.
pub fn parse_position(text: &str) -> Option<Position> {
    let mut parts = text.split_whitespace();
    let first: u64 = parts.next()?.parse().ok()?;
    match (parts.next(), parts.next()) {
        (None, _) => Some(Position {
            epoch: 0,
            offset: first,
        }),
        (Some(second), None) => Some(Position {
            epoch: first,
            offset: second.parse().ok()?,
        }),
        _ => None,
    }
}

/// Where another node's database listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Base URL of the peer's agent (its `agent_url`), when known: where a clone of its data
    /// is streamed from.
    pub agent: Option<String>,
    /// The peer leads the cluster as a standby of an external source (a live migration):
    /// it stays read-only, in recovery, and is followed as it is.
    pub standby: bool,
}

/// An external database a cluster migrates from (`cluster.bootstrap.migrate_from`): where it
/// is and the account this cluster replicates from it with (and, when its privileges allow,
/// makes it read-only at the cutover).
#[derive(Clone, PartialEq, Eq)]
pub struct Source {
    /// Where it listens.
    pub peer: Peer,
    /// The account.
    pub user: String,
    /// Its password.
    pub password: String,
    /// PostgreSQL: the physical replication slot the standby leader streams through on the
    /// source (created by the copy when missing); `None`: no slot.
    pub slot: Option<String>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("peer", &self.peer)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("slot", &self.slot)
            .finish()
    }
}

impl Peer {
    /// Parse `host:port` (the address format of the `primary` key).
    pub fn parse(address: &str) -> Option<Peer> {
        let (host, port) = address.rsplit_once(':')?;
        Some(Peer {
            host: host.trim_matches(['[', ']']).to_owned(),
            port: port.parse().ok()?,
            agent: None,
            standby: false,
        })
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Another member of the cluster, as the primary's engine sees it in
/// [`crate::Engine::set_replicas`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its node id (the `nodes/<id>` key part): replication slot and application names.
    pub id: String,
    /// Where its database listens.
    pub peer: Peer,
}

/// How fencing a former primary's database ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteFence {
    /// It refuses writes now; this is its final position.
    Fenced(Position),
    /// It could not be reached: it is not running (or not reachable at all).
    Unreachable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_with_and_without_epoch() {
        assert_eq!(
            parse_position("42\n"),
            Some(Position {
                epoch: 0,
                offset: 42
            })
        );
        assert_eq!(
            parse_position(" 3 17 "),
            Some(Position {
                epoch: 3,
                offset: 17
            })
        );
        assert_eq!(parse_position(""), None);
        assert_eq!(parse_position("1 2 3"), None);
        assert_eq!(parse_position("x"), None);
        assert!(parse_position("2 0") > parse_position("1 99"));
    }

    #[test]
    fn peers_parse_host_and_port() {
        let p = Peer::parse("127.0.0.1:6379").expect("valid");
        assert_eq!((p.host.as_str(), p.port), ("127.0.0.1", 6379));
        assert_eq!(
            Peer::parse("[::1]:5432").map(|p| p.host),
            Some("::1".to_owned())
        );
        assert_eq!(Peer::parse("nohost"), None);
    }
}
