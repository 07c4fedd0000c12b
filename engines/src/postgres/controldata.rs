//! What a *stopped* data directory says of itself (`pg_controldata`), and the decisions
//! that can only be final once the server is down: must it be rewound before it can follow
//! a primary, and which timeline history files in `pg_wal` would stop it from starting.
//!
//! A former primary that was fenced while still running writes its shutdown checkpoint when
//! it is stopped — after the new primary promoted, so at or past the switch point of the
//! new timeline. Judged while it ran, its WAL ended exactly at the switch point and it
//! looked like a plain ancestor; only the stopped directory shows the extra record. Started
//! as a standby it then cannot follow ("forked off … before current recovery point"), and
//! once the new timeline's history file is in its `pg_wal` it cannot start at all
//! ("requested timeline N is not a child of this server's history").

use std::path::{Path, PathBuf};

use super::sql::parse_lsn;

/// The fields of `pg_controldata`'s report the engine decides on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlData {
    /// `Database cluster state` is `shut down` or `shut down in recovery`: the WAL ends at
    /// the last checkpoint (or the minimum recovery point), nothing needs replaying.
    pub clean: bool,
    /// `Latest checkpoint location`.
    pub checkpoint: u64,
    /// `Latest checkpoint's TimeLineID`.
    pub checkpoint_tli: u64,
    /// `Minimum recovery ending location` (0 when unset).
    pub min_recovery: u64,
    /// `Min recovery ending loc's timeline` (0 when unset).
    pub min_recovery_tli: u64,
}

impl ControlData {
    /// Parse `pg_controldata`'s output (run with `LC_ALL=C`); `None` when a field is missing.
    pub fn parse(text: &str) -> Option<Self> {
        let field = |name: &str| {
            text.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_owned())
            })
        };
        let number = |name: &str| field(name)?.parse::<u64>().ok();
        let state = field("Database cluster state")?;
        Some(Self {
            clean: state == "shut down" || state == "shut down in recovery",
            checkpoint: parse_lsn(&field("Latest checkpoint location")?)?,
            checkpoint_tli: number("Latest checkpoint's TimeLineID")?,
            min_recovery: parse_lsn(&field("Minimum recovery ending location")?)?,
            min_recovery_tli: number("Min recovery ending loc's timeline")?,
        })
    }

    /// The timeline the data directory is on: a standby's minimum recovery point may already
    /// be on a later one than its last checkpoint.
    pub fn timeline(&self) -> u64 {
        self.checkpoint_tli.max(self.min_recovery_tli)
    }

    /// Whether this stopped data directory must be rewound before it can stream from a
    /// primary on `primary_tli` whose timeline history is `history` (`(timeline, switch
    /// point)` pairs; empty on timeline 1). The rule pg_rewind itself applies, on the
    /// conservative side: anything at or past the switch point away from our timeline
    /// (the former primary's shutdown checkpoint included) is a divergence; an unclean stop
    /// always asks pg_rewind, which runs crash recovery first and then decides.
    pub fn needs_rewind(&self, primary_tli: u64, history: &[(u64, u64)]) -> bool {
        if !self.clean {
            return true;
        }
        let tli = self.timeline();
        if tli == primary_tli {
            return false;
        }
        if tli > primary_tli {
            return true;
        }
        match history.iter().find(|(t, _)| *t == tli) {
            Some(&(_, switch)) => self.checkpoint >= switch || self.min_recovery > switch,
            None => true,
        }
    }

    /// Whether a timeline whose history is `history` left this directory's timeline at or
    /// before the directory's last checkpoint: a standby start that targets it fails.
    pub fn forked_before_checkpoint(&self, history: &[(u64, u64)]) -> bool {
        history
            .iter()
            .find(|(t, _)| *t == self.checkpoint_tli)
            .is_some_and(|&(_, switch)| self.checkpoint >= switch)
    }
}

/// The timeline history files in `pg_wal` of timelines after `tli` that forked off before
/// the data directory's last checkpoint (see [`ControlData::forked_before_checkpoint`]).
pub fn forked_history_files(data_dir: &Path, cd: &ControlData) -> Vec<PathBuf> {
    let wal = data_dir.join("pg_wal");
    let Ok(entries) = std::fs::read_dir(&wal) else {
        return Vec::new();
    };
    let mut forked: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let tli = name.strip_suffix(".history")?;
            let tli = u64::from_str_radix(tli, 16)
                .ok()
                .filter(|_| tli.len() == 8)?;
            (tli > cd.checkpoint_tli).then(|| e.path())
        })
        .filter(|path| {
            std::fs::read_to_string(path)
                .is_ok_and(|text| cd.forked_before_checkpoint(&super::sql::parse_history(&text)))
        })
        .collect();
    forked.sort();
    forked
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHUT_DOWN: &str = "pg_control version number:            1300\n\
        Database cluster state:               shut down\n\
        Latest checkpoint location:           0/5000028\n\
        Latest checkpoint's REDO location:    0/5000028\n\
        Latest checkpoint's TimeLineID:       2\n\
        Latest checkpoint's PrevTimeLineID:   2\n\
        Minimum recovery ending location:     0/0\n\
        Min recovery ending loc's timeline:   0\n";

    fn cd(clean: bool, checkpoint: u64, tli: u64) -> ControlData {
        ControlData {
            clean,
            checkpoint,
            checkpoint_tli: tli,
            min_recovery: 0,
            min_recovery_tli: 0,
        }
    }

    #[test]
    fn the_report_parses() {
        assert_eq!(ControlData::parse(SHUT_DOWN), Some(cd(true, 0x500_0028, 2)));
        let recovery = SHUT_DOWN
            .replace("shut down\n", "shut down in recovery\n")
            .replace("0/0\n", "0/6000000\n")
            .replace("timeline:   0", "timeline:   3");
        let parsed = ControlData::parse(&recovery).expect("parses");
        assert!(parsed.clean);
        assert_eq!((parsed.min_recovery, parsed.timeline()), (0x600_0000, 3));
        let crashed = SHUT_DOWN.replace("shut down\n", "in production\n");
        assert!(!ControlData::parse(&crashed).expect("parses").clean);
        assert_eq!(ControlData::parse("garbage"), None);
    }

    /// The crash loop of issue 12: the fenced former primary's shutdown checkpoint sits
    /// exactly at the switch point; it must be rewound, not started as a standby.
    #[test]
    fn a_shutdown_checkpoint_at_the_switch_point_needs_a_rewind() {
        let history = [(1, 0x300_0000), (2, 0x500_0028)];
        assert!(cd(true, 0x500_0028, 2).needs_rewind(3, &history));
        assert!(cd(true, 0x500_0100, 2).needs_rewind(3, &history));
        // Cleanly stopped before the switch point: a plain ancestor, it streams as it is.
        assert!(!cd(true, 0x500_0000, 2).needs_rewind(3, &history));
        // An unclean stop: pg_rewind decides (after its own crash recovery).
        assert!(cd(false, 0x500_0000, 2).needs_rewind(3, &history));
        // Same timeline as the primary: nothing to rewind; a later or unknown one: rewind.
        assert!(!cd(true, 0x900_0000, 3).needs_rewind(3, &history));
        assert!(cd(true, 0x100, 4).needs_rewind(3, &history));
        assert!(cd(true, 0x100, 7).needs_rewind(9, &[(1, 5), (2, 6)]));
        // A standby whose replay went past the switch point on the old timeline.
        let mut standby = cd(true, 0x400_0000, 2);
        standby.min_recovery = 0x500_0100;
        standby.min_recovery_tli = 2;
        assert!(standby.needs_rewind(3, &history));
    }

    #[test]
    fn history_files_that_fork_before_the_checkpoint_are_found() {
        let dir = tempfile::tempdir().expect("temp dir");
        let wal = dir.path().join("pg_wal");
        std::fs::create_dir(&wal).expect("mkdir");
        std::fs::write(wal.join("00000002.history"), "1\t0/3000000\tx\n").expect("write");
        std::fs::write(
            wal.join("00000003.history"),
            "1\t0/3000000\tx\n2\t0/5000028\tno recovery target specified\n",
        )
        .expect("write");
        std::fs::write(wal.join("000000020000000000000005"), "").expect("write");
        let at_switch = cd(true, 0x500_0028, 2);
        assert_eq!(
            forked_history_files(dir.path(), &at_switch),
            [wal.join("00000003.history")]
        );
        assert!(forked_history_files(dir.path(), &cd(true, 0x500_0000, 2)).is_empty());
    }
}
