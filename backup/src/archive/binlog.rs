//! MariaDB binary logs in the archive (pure; see the tests).
//!
//! Each archived file is one closed binary log of one server, named by what it holds so
//! that a listing alone tells the archive's coverage:
//! `<domain>-<first seq>-<last seq>-<last event, unix seconds>.<server id>.<file name>`, the
//! sequence numbers zero-padded to 20 digits so names sort by them, e.g.
//! `0-00000000000000000004-00000000000000000009-1796383167.3.mariadb-bin.000007`.
//!
//! Every node binlogs what it applies (`log_slave_updates`) and GTID sequence numbers keep
//! growing across failovers (`gtid_strict_mode`), so files of different servers chain by
//! sequence number: a restore takes, from its base backup's position on, the file that
//! reaches furthest among those that start at or before the next transaction, and replays
//! each from the position reached (the overlap is skipped). The archive holds one
//! replication domain: the cluster's.
//!
//! A former primary may have shipped transactions no other node received (an asynchronous
//! failover, or a commit still waiting for its acknowledgement): the new primary then
//! writes other transactions under the same sequence numbers. Before it ships anything the
//! new archiver marks every archived file that reaches past its own position as
//! *superseded* (`….superseded`, kept, never replayed), as a new PostgreSQL timeline leaves
//! the old one's segments behind. A superseded file that also holds the shared history (it
//! starts at or before the new primary's position: an in-place restore to a point inside
//! it, whose server starts a fresh binary log after that point) keeps that part live as a
//! copy named up to the position ([`kept_prefix`]); a replay applies no transaction past a
//! file's named last.

use std::fmt;

/// One archived binary log, as its name says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binlog {
    /// The replication domain of its transactions.
    pub domain: u32,
    /// The sequence number of its first transaction.
    pub first: u64,
    /// The sequence number of its last transaction.
    pub last: u64,
    /// Its last event's time (unix seconds; the binary log stamps whole seconds).
    pub last_time: u64,
    /// The server whose binary log it is.
    pub server: u32,
    /// The file's own name (`mariadb-bin.000007`).
    pub file: String,
    /// Left behind by a failover: never replayed.
    pub superseded: bool,
}

const SUPERSEDED: &str = ".superseded";

impl Binlog {
    /// The archive name (see the module docs).
    pub fn name(&self) -> String {
        format!(
            "{}-{:020}-{:020}-{}.{}.{}{}",
            self.domain,
            self.first,
            self.last,
            self.last_time,
            self.server,
            self.file,
            if self.superseded { SUPERSEDED } else { "" }
        )
    }

    /// Parses an archive name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Binlog> {
        let (name, superseded) = match name.strip_suffix(SUPERSEDED) {
            Some(n) => (n, true),
            None => (name, false),
        };
        let (range, rest) = name.split_once('.')?;
        let (server, file) = rest.split_once('.')?;
        let mut parts = range.split('-');
        let (Some(domain), Some(first), Some(last), Some(time), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let num = |p: &str| {
            (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u64>().ok())
                .flatten()
        };
        let b = Binlog {
            domain: u32::try_from(num(domain)?).ok()?,
            first: num(first)?,
            last: num(last)?,
            last_time: num(time)?,
            server: u32::try_from(num(server)?).ok()?,
            file: file.to_owned(),
            superseded,
        };
        (b.first <= b.last && !b.file.is_empty()).then_some(b)
    }
}

impl fmt::Display for Binlog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of server {} ({}-{}-{} … {})",
            self.file, self.server, self.domain, self.server, self.first, self.last
        )
    }
}

/// A range of transactions no archived file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    pub domain: u32,
    /// The first missing sequence number.
    pub first: u64,
    /// The last missing one.
    pub last: u64,
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "GTID sequence {} of domain {}", self.first, self.domain)
        } else {
            write!(
                f,
                "GTID sequences {}–{} of domain {}",
                self.first, self.last, self.domain
            )
        }
    }
}

/// Where a replay from `after` can go: the files to replay in order, and the sequence
/// number reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain<'a> {
    pub files: Vec<&'a Binlog>,
    /// The last sequence number the files hold (`after` when none).
    pub reached: u64,
    /// The first hole after `reached` when files exist beyond it.
    pub gap: Option<Gap>,
}

/// The files that replay `domain` from sequence `after + 1` on, as far as they reach
/// without a hole, stopping once `until` is reached (`None`: the end of the archive).
/// Superseded files are never used.
pub fn chain(files: &[Binlog], domain: u32, after: u64, until: Option<u64>) -> Chain<'_> {
    let mut live: Vec<&Binlog> = files
        .iter()
        .filter(|b| !b.superseded && b.domain == domain)
        .collect();
    live.sort_by_key(|b| (b.first, std::cmp::Reverse(b.last)));
    let mut out = Vec::new();
    let mut reached = after;
    loop {
        if until.is_some_and(|u| reached >= u) {
            break;
        }
        // Among the files that start at or before the next transaction, the one that
        // reaches furthest (the newest of equals: a later server's copy).
        let next = live
            .iter()
            .filter(|b| b.first <= reached + 1 && b.last > reached)
            .max_by_key(|b| (b.last, b.last_time));
        match next {
            Some(b) => {
                reached = b.last;
                out.push(*b);
            }
            None => break,
        }
    }
    let gap = live
        .iter()
        .filter(|b| b.last > reached)
        .map(|b| b.first)
        .min()
        .filter(|_| until.is_none_or(|u| reached < u))
        .map(|first| Gap {
            domain,
            first: reached + 1,
            last: first - 1,
        });
    Chain {
        files: out,
        reached,
        gap,
    }
}

/// Every hole in `domain` after sequence `since`, between the archived files.
pub fn gaps(files: &[Binlog], domain: u32, since: u64) -> Vec<Gap> {
    let mut out = Vec::new();
    let mut after = since;
    loop {
        let c = chain(files, domain, after, None);
        match c.gap {
            Some(g) => {
                after = g.last;
                out.push(g);
            }
            None => return out,
        }
    }
}

/// The files that reach past `seq` and are not superseded yet: what a new primary whose
/// own history ends at `seq` must mark superseded before it archives.
pub fn beyond(files: &[Binlog], domain: u32, seq: u64) -> Vec<&Binlog> {
    files
        .iter()
        .filter(|b| !b.superseded && b.domain == domain && b.last > seq)
        .collect()
}

/// What stays live of `b` once a primary whose own history ends at GTID `server`-`seq`
/// supersedes it: a file that starts at or before `seq` holds the shared history up to
/// `seq`, and its copy under a name that ends there (the same bytes; a replay applies no
/// transaction past a file's named last) keeps the chain through that history whole.
/// `None` for a file that holds nothing at or before `seq` (or nothing past it).
pub fn kept_prefix(b: &Binlog, server: u32, seq: u64) -> Option<Binlog> {
    (b.first <= seq && seq < b.last).then(|| Binlog {
        last: seq,
        server,
        superseded: false,
        ..b.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(first: u64, last: u64, server: u32, file: &str) -> Binlog {
        Binlog {
            domain: 0,
            first,
            last,
            last_time: 1_700_000_000 + last,
            server,
            file: file.into(),
            superseded: false,
        }
    }

    #[test]
    fn names_round_trip_and_sort_by_sequence() {
        let x = b(4, 9, 3, "mariadb-bin.000007");
        assert_eq!(
            x.name(),
            "0-00000000000000000004-00000000000000000009-1700000009.3.mariadb-bin.000007"
        );
        assert_eq!(Binlog::parse(&x.name()), Some(x.clone()));
        let s = Binlog {
            superseded: true,
            ..x
        };
        assert!(s.name().ends_with(".superseded"));
        assert_eq!(Binlog::parse(&s.name()), Some(s));
        assert!(b(10, 11, 1, "f").name() > b(9, 30, 1, "f").name());
        for bad in [
            "",
            "000000010000000000000001",
            "0-1-2.3.f",
            "0-2-1-5.3.f",
            "0-1-2-5.x.f",
            "0-1-2-5.3.",
            "0-+1-2-5.3.f",
        ] {
            assert_eq!(Binlog::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn chains_skip_overlaps_across_servers_and_stop_at_the_target() {
        // Server 1 primary up to 20; server 2 (its replica, then primary) binlogged 15 on.
        let files = vec![
            b(1, 10, 1, "a.1"),
            b(11, 20, 1, "a.2"),
            b(15, 25, 2, "b.1"),
            b(26, 30, 2, "b.2"),
        ];
        let c = chain(&files, 0, 5, None);
        let names: Vec<&str> = c.files.iter().map(|f| f.file.as_str()).collect();
        assert_eq!(names, ["a.1", "a.2", "b.1", "b.2"]);
        assert_eq!((c.reached, c.gap), (30, None));
        let c = chain(&files, 0, 12, Some(18));
        let names: Vec<&str> = c.files.iter().map(|f| f.file.as_str()).collect();
        // b.1 starts at 15 > 13: a.2 is the only file holding 13.
        assert_eq!(names, ["a.2"]);
        assert_eq!(c.reached, 20);
        let c = chain(&files, 0, 30, None);
        assert!(c.files.is_empty());
        assert_eq!((c.reached, c.gap), (30, None));
    }

    #[test]
    fn holes_are_named_and_superseded_files_are_not_replayed() {
        let mut files = vec![b(1, 10, 1, "a.1"), b(14, 20, 1, "a.3"), b(21, 22, 1, "a.4")];
        let c = chain(&files, 0, 0, None);
        assert_eq!(c.reached, 10);
        assert_eq!(
            c.gap,
            Some(Gap {
                domain: 0,
                first: 11,
                last: 13
            })
        );
        assert_eq!(
            c.gap.as_ref().map(ToString::to_string).as_deref(),
            Some("GTID sequences 11–13 of domain 0")
        );
        // A target before the hole is reachable.
        assert_eq!(chain(&files, 0, 0, Some(9)).gap, None);
        assert_eq!(gaps(&files, 0, 0).len(), 1);
        assert!(gaps(&files, 0, 14).is_empty());
        // A former primary's file beyond the new primary's history (at 16) is superseded.
        let gone: Vec<String> = beyond(&files, 0, 16)
            .iter()
            .map(|f| f.file.clone())
            .collect();
        assert_eq!(gone, ["a.3", "a.4"]);
        for f in &mut files {
            if gone.contains(&f.file) {
                f.superseded = true;
            }
        }
        files.push(b(11, 23, 2, "b.1"));
        let c = chain(&files, 0, 0, None);
        let names: Vec<&str> = c.files.iter().map(|f| f.file.as_str()).collect();
        assert_eq!(names, ["a.1", "b.1"]);
        assert_eq!((c.reached, c.gap), (23, None));
        // Another domain's files are not this domain's.
        assert_eq!(chain(&files, 1, 0, None).files.len(), 0);
    }

    #[test]
    fn a_superseded_file_keeps_its_shared_history_live() {
        // A restore in place (or a failover) to sequence 16, written by server 1: a.3 holds
        // 14–20, so its copy named 14–16 stays live and a.4 has nothing to keep.
        let files = vec![b(1, 10, 1, "a.1"), b(11, 20, 1, "a.3"), b(21, 22, 1, "a.4")];
        let kept: Vec<Binlog> = beyond(&files, 0, 16)
            .into_iter()
            .filter_map(|f| kept_prefix(f, 1, 16))
            .collect();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            (kept[0].first, kept[0].last, kept[0].file.as_str()),
            (11, 16, "a.3")
        );
        assert_ne!(kept[0].name(), files[1].name());
        let mut after: Vec<Binlog> = files
            .iter()
            .map(|f| Binlog {
                superseded: f.last > 16,
                ..f.clone()
            })
            .collect();
        after.extend(kept);
        // The new term's first file starts after 16: the chain crosses no hole.
        after.push(b(17, 30, 2, "c.1"));
        let c = chain(&after, 0, 0, None);
        let names: Vec<(&str, u64)> = c.files.iter().map(|f| (f.file.as_str(), f.last)).collect();
        assert_eq!(names, [("a.1", 10), ("a.3", 16), ("c.1", 30)]);
        assert_eq!(c.gap, None);
        // A file wholly past the position, or wholly before it, keeps nothing.
        assert_eq!(kept_prefix(&files[2], 1, 16), None);
        assert_eq!(kept_prefix(&files[0], 1, 16), None);
    }
}
