//! PostgreSQL WAL file names and the gaps in an archive of them (pure; see the tests).
//!
//! A segment is `TTTTTTTTXXXXXXXXYYYYYYYY` (timeline, then the segment number split in two
//! halves of 16 MiB segments: `XXXXXXXX * 256 + YYYYYYYY`); `.partial` marks the last,
//! incomplete segment of a timeline a promotion ended; `TTTTTTTT.history` names the parent
//! timeline and the LSN the new one branched off at. The archive assumes 16 MiB segments
//! (PostgreSQL's default, which the engine's initdb keeps); data directories made with
//! another `--wal-segsize` are not supported: gaps and restores would be computed wrong.

use std::collections::{BTreeMap, BTreeSet};

/// Bytes per WAL segment (PostgreSQL's default).
pub const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Segments per "xlogid" (the high half of the number in a file name).
const PER_XLOGID: u64 = 0x1_0000_0000 / SEGMENT_BYTES;

/// What a WAL archive file is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WalFile {
    /// A timeline's history (`00000002.history`).
    History { timeline: u32 },
    /// A complete segment.
    Segment { timeline: u32, segment: u64 },
    /// The incomplete last segment of a timeline a promotion ended (`….partial`).
    Partial { timeline: u32, segment: u64 },
    /// Anything else PostgreSQL archives (`….backup` labels).
    Other,
}

/// Parses an archived file's name.
pub fn parse(name: &str) -> Option<WalFile> {
    if let Some(t) = name.strip_suffix(".history") {
        return (t.len() == 8)
            .then(|| u32::from_str_radix(t, 16).ok())
            .flatten()
            .map(|timeline| WalFile::History { timeline });
    }
    let (base, partial) = match name.strip_suffix(".partial") {
        Some(b) => (b, true),
        None => (name, false),
    };
    if base.len() != 24 || !base.bytes().all(|b| b.is_ascii_hexdigit()) {
        return name
            .split('.')
            .next()
            .is_some_and(|b| b.len() == 24)
            .then_some(WalFile::Other);
    }
    let timeline = u32::from_str_radix(&base[..8], 16).ok()?;
    let hi = u64::from_str_radix(&base[8..16], 16).ok()?;
    let lo = u64::from_str_radix(&base[16..], 16).ok()?;
    if lo >= PER_XLOGID {
        return None;
    }
    let segment = hi * PER_XLOGID + lo;
    Some(if partial {
        WalFile::Partial { timeline, segment }
    } else {
        WalFile::Segment { timeline, segment }
    })
}

/// The file name of segment `segment` of `timeline`.
pub fn segment_name(timeline: u32, segment: u64) -> String {
    format!(
        "{timeline:08X}{:08X}{:08X}",
        segment / PER_XLOGID,
        segment % PER_XLOGID
    )
}

/// The segment holding `lsn`.
pub fn segment_of(lsn: u64) -> u64 {
    lsn / SEGMENT_BYTES
}

/// Parses an LSN as PostgreSQL prints it (`0/5000100`).
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// The branch points a history file lists: `(parent timeline, LSN the child branched at)`,
/// oldest first.
pub fn parse_history(text: &str) -> Vec<(u32, u64)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let mut cols = l.split_whitespace();
            let tli = cols.next()?.parse().ok()?;
            let lsn = parse_lsn(cols.next()?)?;
            Some((tli, lsn))
        })
        .collect()
}

/// Segments missing from a timeline: `first..=last` of `timeline` are not archived.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Gap {
    /// The timeline.
    pub timeline: u32,
    /// The first missing segment.
    pub first: u64,
    /// The last missing segment.
    pub last: u64,
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", segment_name(self.timeline, self.first))
        } else {
            write!(
                f,
                "{} to {}",
                segment_name(self.timeline, self.first),
                segment_name(self.timeline, self.last)
            )
        }
    }
}

/// The gaps in an archive holding `names`, given each timeline's branch point
/// (`branches[child] = (parent, LSN)`, from the history files): within a timeline, every
/// segment between its first and its last archived one; across a branch, the parent's
/// segments up to the one before the branch point and the child's from the branch point on.
/// Trailing segments not archived yet are not gaps.
pub fn gaps(names: &[String], branches: &BTreeMap<u32, (u32, u64)>) -> Vec<Gap> {
    let mut have: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    for n in names {
        if let Some(WalFile::Segment { timeline, segment }) = parse(n) {
            have.entry(timeline).or_default().insert(segment);
        }
    }
    let mut out = Vec::new();
    let missing = |tli: u32, from: u64, to: u64, set: &BTreeSet<u64>, out: &mut Vec<Gap>| {
        let mut start = None;
        for s in from..=to {
            if set.contains(&s) {
                if let Some(f) = start.take() {
                    out.push(Gap {
                        timeline: tli,
                        first: f,
                        last: s - 1,
                    });
                }
            } else if start.is_none() {
                start = Some(s);
            }
        }
        if let Some(f) = start {
            out.push(Gap {
                timeline: tli,
                first: f,
                last: to,
            });
        }
    };
    for (&tli, set) in &have {
        let (Some(&min), Some(&max)) = (set.first(), set.last()) else {
            continue;
        };
        // A timeline that branched off an archived parent starts at the branch segment.
        let from = match branches.get(&tli) {
            Some(&(parent, lsn)) if have.contains_key(&parent) => min.min(segment_of(lsn)),
            _ => min,
        };
        missing(tli, from, max, set, &mut out);
    }
    // A parent's segments up to the branch point: what the old primary wrote before the
    // promotion (its `.partial` or full segment at the branch point is optional).
    for (&child, &(parent, lsn)) in branches {
        let (Some(pset), true) = (have.get(&parent), have.contains_key(&child)) else {
            continue;
        };
        let Some(&pmax) = pset.last() else { continue };
        let branch_seg = segment_of(lsn);
        if branch_seg > 0 && pmax < branch_seg - 1 {
            out.push(Gap {
                timeline: parent,
                first: pmax + 1,
                last: branch_seg - 1,
            });
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[(u32, u64)]) -> Vec<String> {
        list.iter().map(|&(t, s)| segment_name(t, s)).collect()
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(
            parse("000000020000000100000003"),
            Some(WalFile::Segment {
                timeline: 2,
                segment: 256 + 3
            })
        );
        assert_eq!(segment_name(2, 259), "000000020000000100000003");
        assert_eq!(
            parse("000000010000000000000005.partial"),
            Some(WalFile::Partial {
                timeline: 1,
                segment: 5
            })
        );
        assert_eq!(
            parse("00000002.history"),
            Some(WalFile::History { timeline: 2 })
        );
        assert_eq!(
            parse("000000010000000000000002.00000028.backup"),
            Some(WalFile::Other)
        );
        assert_eq!(parse("garbage"), None);
        assert_eq!(parse_lsn("0/5000100"), Some(0x5000100));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(segment_of(0x5000100), 5);
    }

    #[test]
    fn history_files_parse() {
        let text = "1\t0/5000100\tno recovery target specified\n\n2\t0/7000000\tx\n";
        assert_eq!(parse_history(text), vec![(1, 0x5000100), (2, 0x7000000)]);
    }

    #[test]
    fn a_complete_archive_has_no_gaps_and_holes_are_found() {
        let mut branches = BTreeMap::new();
        assert!(gaps(&names(&[(1, 1), (1, 2), (1, 3)]), &branches).is_empty());
        assert_eq!(
            gaps(&names(&[(1, 1), (1, 4), (1, 5), (1, 8)]), &branches),
            vec![
                Gap {
                    timeline: 1,
                    first: 2,
                    last: 3
                },
                Gap {
                    timeline: 1,
                    first: 6,
                    last: 7
                }
            ]
        );
        // Timeline 2 branched at segment 5: 1/1..1/4 then 2/5.. is complete (1/5 partial).
        branches.insert(2, (1, 5 * SEGMENT_BYTES + 0x100));
        let mut n = names(&[(1, 1), (1, 2), (1, 3), (1, 4), (2, 5), (2, 6)]);
        n.push(format!("{}.partial", segment_name(1, 5)));
        assert!(gaps(&n, &branches).is_empty(), "{:?}", gaps(&n, &branches));
        // The old primary's last two segments never shipped, and the child lacks its first.
        let n = names(&[(1, 1), (1, 2), (2, 6)]);
        assert_eq!(
            gaps(&n, &branches),
            vec![
                Gap {
                    timeline: 1,
                    first: 3,
                    last: 4
                },
                Gap {
                    timeline: 2,
                    first: 5,
                    last: 5
                }
            ]
        );
    }
}
