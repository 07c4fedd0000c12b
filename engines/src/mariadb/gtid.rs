//! MariaDB GTID positions: [`GtidSet`], parsed from `@@gtid_current_pos`,
//! `@@gtid_slave_pos` or `@@gtid_binlog_pos` (`DOMAIN-SERVER-SEQ` elements separated by
//! commas, e.g. `0-1-213,1-2-5`; the empty string is the empty set).
//!
//! A set holds at most one GTID per replication domain: the last transaction applied in
//! that domain. Within a domain sequence numbers grow monotonically (`gtid_strict_mode`),
//! so two sets compare domain by domain on the sequence number; the server id only says
//! who wrote that transaction. Sets are partially ordered: when each has something the
//! other lacks, [`GtidSet::compare`] returns `None` (errant transactions or a diverged
//! history), and no failover may treat either as "ahead".
//!
//! # Mapping to [`Position`]
//!
//! The engine-agnostic [`Position { epoch, offset }`](Position) is totally ordered, so only
//! a projection of a GTID set fits into it. [`GtidSet::position`] maps the set to
//! `epoch = 0, offset = seq of the main domain`:
//!
//! - The server id is **not** an epoch. It names the server that wrote the last
//!   transaction, and server ids are arbitrary numbers: after a failover from server 3 to
//!   server 1 the new primary's GTIDs (`0-1-…`) carry a *smaller* server id than the old
//!   ones (`0-3-…`) although they come later. Using it as the epoch would order a newer
//!   history below an older one, so the epoch is always 0.
//! - With `gtid_strict_mode` the sequence number of a domain keeps growing across
//!   failovers (a promoted replica continues from its own last seq), so `offset = seq` is
//!   monotonic along one history and sound for "which replica has applied more" among
//!   replicas of the same primary.
//! - It is **not** sound across diverged histories (two servers that both wrote seq 6
//!   after a split compare equal) nor across domains (a transaction in another domain does
//!   not move the offset). Whenever a set has more than the main domain, or when histories
//!   may have diverged, use [`GtidSet::compare`] / [`GtidSet::contains`] instead.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::Position;

/// One MariaDB global transaction id: `DOMAIN-SERVER-SEQ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gtid {
    /// Replication domain (`gtid_domain_id`, 32-bit).
    pub domain: u32,
    /// Server that wrote the transaction (`server_id`, 32-bit).
    pub server: u32,
    /// Sequence number within the domain (64-bit).
    pub seq: u64,
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

impl FromStr for Gtid {
    type Err = GtidError;

    fn from_str(s: &str) -> Result<Self, GtidError> {
        let bad = || GtidError::BadElement(s.to_owned());
        let mut parts = s.trim().split('-');
        let (Some(domain), Some(server), Some(seq), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        // `u32::from_str` accepts a leading '+'; MariaDB never prints one.
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !(digits(domain) && digits(server) && digits(seq)) {
            return Err(bad());
        }
        Ok(Gtid {
            domain: domain.parse().map_err(|_| bad())?,
            server: server.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// Why a GTID set did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GtidError {
    /// An element is not `DOMAIN-SERVER-SEQ` with decimal integers in range.
    #[error(
        "bad GTID {0:?}: expected DOMAIN-SERVER-SEQ, three decimal integers \
         (domain and server id up to 4294967295, seq up to 18446744073709551615), e.g. 0-1-213"
    )]
    BadElement(String),
    /// Two elements name the same domain; a position has one GTID per domain.
    #[error(
        "GTID set names domain {domain} twice ({first} and {second}): expected one GTID per domain"
    )]
    DuplicateDomain {
        /// The domain.
        domain: u32,
        /// The first element for it.
        first: Gtid,
        /// The second element for it.
        second: Gtid,
    },
}

/// A MariaDB GTID position: the last GTID of each replication domain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct GtidSet {
    /// Domain -> last GTID in that domain.
    domains: BTreeMap<u32, Gtid>,
}

impl GtidSet {
    /// Parses `DOMAIN-SERVER-SEQ[,DOMAIN-SERVER-SEQ...]` as MariaDB prints it (white space
    /// around elements ignored; empty or blank text is the empty set).
    pub fn parse(text: &str) -> Result<GtidSet, GtidError> {
        let mut domains = BTreeMap::new();
        if text.trim().is_empty() {
            return Ok(GtidSet { domains });
        }
        for element in text.split(',') {
            let gtid: Gtid = element.parse()?;
            if let Some(first) = domains.insert(gtid.domain, gtid) {
                return Err(GtidError::DuplicateDomain {
                    domain: gtid.domain,
                    first,
                    second: gtid,
                });
            }
        }
        Ok(GtidSet { domains })
    }

    /// A set of these GTIDs; a later GTID for the same domain replaces an earlier one.
    pub fn from_gtids(gtids: impl IntoIterator<Item = Gtid>) -> GtidSet {
        GtidSet {
            domains: gtids.into_iter().map(|g| (g.domain, g)).collect(),
        }
    }

    /// No transaction in any domain.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// The GTIDs, by domain.
    pub fn iter(&self) -> impl Iterator<Item = &Gtid> {
        self.domains.values()
    }

    /// The last GTID of `domain`, if any.
    pub fn get(&self, domain: u32) -> Option<&Gtid> {
        self.domains.get(&domain)
    }

    /// Partial order, domain by domain on the sequence number (a missing domain counts as
    /// seq 0, i.e. nothing applied). `Some(Less)` when `other` has everything `self` has and
    /// more, `Some(Equal)` when both are at the same seq everywhere, `None` when each has
    /// something the other lacks (a domain or a higher seq): errant transactions or
    /// diverged histories. Equal seqs written by different servers are also `None`: in
    /// strict mode that is two different transactions with the same number, a divergence.
    pub fn compare(&self, other: &GtidSet) -> Option<Ordering> {
        let mut less = false; // self lacks something other has
        let mut greater = false; // other lacks something self has
        for domain in self.domains.keys().chain(other.domains.keys()) {
            let (a, b) = (self.domains.get(domain), other.domains.get(domain));
            let (sa, sb) = (a.map_or(0, |g| g.seq), b.map_or(0, |g| g.seq));
            match sa.cmp(&sb) {
                Ordering::Less => less = true,
                Ordering::Greater => greater = true,
                Ordering::Equal => {
                    if let (Some(a), Some(b)) = (a, b)
                        && a.server != b.server
                    {
                        return None;
                    }
                }
            }
        }
        match (less, greater) {
            (false, false) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Less),
            (false, true) => Some(Ordering::Greater),
            (true, true) => None,
        }
    }

    /// `self` has applied everything `other` has (equal or ahead in every domain).
    pub fn contains(&self, other: &GtidSet) -> bool {
        matches!(
            self.compare(other),
            Some(Ordering::Equal | Ordering::Greater)
        )
    }

    /// `other`'s GTIDs in the domains where `other` is ahead of `self` (a higher seq, or a
    /// domain `self` lacks), by domain. Empty when `self` is equal or ahead everywhere. As in
    /// [`compare`](Self::compare), a missing domain counts as seq 0.
    pub fn missing_from(&self, other: &GtidSet) -> Vec<Gtid> {
        other
            .domains
            .values()
            .filter(|theirs| {
                self.domains.get(&theirs.domain).map_or(0, |ours| ours.seq) < theirs.seq
            })
            .copied()
            .collect()
    }

    /// The engine-agnostic projection: `epoch = 0`, `offset = seq` of `main_domain` (0 when
    /// the set has nothing in it). Only sound within one history and one domain; see the
    /// [module docs](self) for why the server id is not used as the epoch.
    pub fn position(&self, main_domain: u32) -> Position {
        Position {
            epoch: 0,
            offset: self.domains.get(&main_domain).map_or(0, |g| g.seq),
        }
    }

    /// [`position`](Self::position) when the set has at most one domain and it is
    /// `main_domain`; `None` when another domain is present, since then the projection
    /// would hide transactions and the caller must use [`compare`](Self::compare).
    pub fn single_domain_position(&self, main_domain: u32) -> Option<Position> {
        self.domains
            .keys()
            .all(|d| *d == main_domain)
            .then(|| self.position(main_domain))
    }
}

impl FromStr for GtidSet {
    type Err = GtidError;

    fn from_str(s: &str) -> Result<Self, GtidError> {
        GtidSet::parse(s)
    }
}

impl fmt::Display for GtidSet {
    /// MariaDB's format: elements by ascending domain, comma separated, empty for the
    /// empty set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, gtid) in self.domains.values().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{gtid}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(s: &str) -> GtidSet {
        GtidSet::parse(s).expect("valid GTID set")
    }

    #[test]
    fn parses_and_prints_mariadb_positions() {
        for text in [
            "",
            "0-1-213",
            "0-1-213,1-2-5",
            "4294967295-4294967295-18446744073709551615",
        ] {
            assert_eq!(set(text).to_string(), text);
        }
        assert!(set("  ").is_empty());
        assert_eq!(set(" 1-2-5 , 0-1-213\n").to_string(), "0-1-213,1-2-5");
        assert_eq!(
            set("0-1-213").get(0),
            Some(&Gtid {
                domain: 0,
                server: 1,
                seq: 213
            })
        );
    }

    #[test]
    fn errors_name_the_bad_element_and_the_expected_form() {
        for bad in [
            "0-1",
            "0-1-2-3",
            "a-1-2",
            "0-1-",
            "-1-2",
            "0-+1-2",
            "0-1-2,",
            "0-1-2,,1-1-1",
            "4294967296-1-1",
            "0-1-18446744073709551616",
            "0 -1-2x",
        ] {
            let err = GtidSet::parse(bad).expect_err(bad);
            let msg = err.to_string();
            assert!(msg.contains("DOMAIN-SERVER-SEQ"), "{bad}: {msg}");
            assert!(matches!(err, GtidError::BadElement(_)), "{bad}: {msg}");
        }
        let msg = GtidSet::parse("0-1-5,abc").expect_err("bad").to_string();
        assert!(msg.contains("\"abc\""), "{msg}");
        let err = GtidSet::parse("0-1-5,0-2-7").expect_err("duplicate");
        assert!(err.to_string().contains("domain 0 twice"), "{err}");
    }

    #[test]
    fn compares_domain_by_domain() {
        use Ordering::*;
        assert_eq!(set("0-1-5").compare(&set("0-1-5")), Some(Equal));
        assert_eq!(set("0-1-5").compare(&set("0-1-7")), Some(Less));
        assert_eq!(set("0-1-7").compare(&set("0-1-5")), Some(Greater));
        // A failover to server 1 after server 3: the later history has the smaller id.
        assert_eq!(set("0-3-7").compare(&set("0-1-9")), Some(Less));
        assert_eq!(set("").compare(&set("0-1-1")), Some(Less));
        assert_eq!(set("0-1-5,1-2-3").compare(&set("0-1-5")), Some(Greater));
        // Errant: each has a domain or a higher seq the other lacks.
        assert_eq!(set("0-1-5,1-2-3").compare(&set("0-1-6")), None);
        assert_eq!(set("0-1-5,1-2-3").compare(&set("0-1-4,1-2-4")), None);
        // Same seq written by two servers: two different transactions.
        assert_eq!(set("0-1-5").compare(&set("0-2-5")), None);

        assert!(set("0-1-7,1-1-1").contains(&set("0-1-5")));
        assert!(set("0-1-5").contains(&set("")));
        assert!(!set("0-1-5").contains(&set("0-1-5,1-2-1")));
        assert!(!set("0-1-5").contains(&set("0-2-5")));
    }

    #[test]
    fn missing_from_lists_where_the_other_is_ahead() {
        let ours = set("0-1-5,1-2-3,2-1-9");
        let theirs = set("0-1-7,1-2-3,2-1-1,3-4-1");
        assert_eq!(
            ours.missing_from(&theirs)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["0-1-7", "3-4-1"]
        );
        assert!(theirs.missing_from(&theirs).is_empty());
        assert_eq!(
            theirs.missing_from(&ours),
            [Gtid {
                domain: 2,
                server: 1,
                seq: 9
            }]
        );
    }

    #[test]
    fn position_is_the_main_domains_seq_with_epoch_zero() {
        let p = |epoch, offset| Position { epoch, offset };
        assert_eq!(set("0-3-213").position(0), p(0, 213));
        assert_eq!(set("").position(0), p(0, 0));
        assert_eq!(set("1-3-7").position(0), p(0, 0));
        // Monotonic across a failover to a server with a smaller id.
        assert!(set("0-3-7").position(0) < set("0-1-8").position(0));
        assert_eq!(set("0-3-213").single_domain_position(0), Some(p(0, 213)));
        assert_eq!(set("").single_domain_position(0), Some(p(0, 0)));
        assert_eq!(set("0-3-213,1-1-1").single_domain_position(0), None);
    }

    fn arb_set() -> impl Strategy<Value = GtidSet> {
        // Few domains and servers so that sets overlap often.
        proptest::collection::vec((0u32..4, 1u32..3, 0u64..6), 0..5).prop_map(|v| {
            GtidSet::from_gtids(v.into_iter().map(|(domain, server, seq)| Gtid {
                domain,
                server,
                seq,
            }))
        })
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(s in arb_set()) {
            prop_assert_eq!(GtidSet::parse(&s.to_string()), Ok(s));
        }

        #[test]
        fn compare_is_antisymmetric(a in arb_set(), b in arb_set()) {
            prop_assert_eq!(a.compare(&b), b.compare(&a).map(Ordering::reverse));
        }

        #[test]
        fn contains_agrees_with_missing_from(a in arb_set(), b in arb_set()) {
            if a.contains(&b) {
                prop_assert!(a.missing_from(&b).is_empty());
            }
            if !a.missing_from(&b).is_empty() {
                prop_assert!(!a.contains(&b));
            }
            prop_assert!(a.contains(&a));
        }

        #[test]
        fn applying_the_missing_gtids_catches_up(a in arb_set(), b in arb_set()) {
            // a plus what b has beyond it (b's GTIDs replacing a's in those domains).
            let caught_up = GtidSet::from_gtids(a.iter().copied().chain(a.missing_from(&b)));
            prop_assert!(caught_up.missing_from(&b).is_empty());
            prop_assert!(a.missing_from(&caught_up).iter().all(|g| b.get(g.domain) == Some(g)));
        }

        #[test]
        fn garbage_never_panics(text in "[0-9a-z, +-]{0,24}") {
            let _ = GtidSet::parse(&text);
        }
    }
}
