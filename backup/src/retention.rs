//! Which backups of a job expire: a pure decision over the job's finished backups.
//!
//! A backup is kept when it is among the newest `keep_last`, or younger than `keep_within`,
//! or the newest verified one (whatever the policy says: there is always a backup known to
//! restore). Every backup a kept one builds on is kept too (a full is never removed while
//! one of its incrementals stays). Everything else expires. With neither limit set nothing
//! expires.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

/// One finished (done) backup of the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Its id (sorts by start time).
    pub id: String,
    /// The backup it builds on (incrementals).
    pub parent_id: Option<String>,
    /// When it started.
    pub started: SystemTime,
    /// It was re-read and re-hashed, or test-restored.
    pub verified: bool,
}

/// The job's retention.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Keep the newest N.
    pub keep_last: Option<u32>,
    /// Keep every backup younger than this.
    pub keep_within: Option<Duration>,
}

/// The ids that expire at `now`, oldest first.
pub fn expired(items: &[Item], policy: Policy, now: SystemTime) -> Vec<String> {
    if policy.keep_last.is_none() && policy.keep_within.is_none() {
        return Vec::new();
    }
    let by_id: BTreeMap<&str, &Item> = items.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut newest_first: Vec<&Item> = by_id.values().copied().collect();
    newest_first.reverse();
    let mut keep = BTreeSet::new();
    let last = policy.keep_last.map_or(0, |n| n as usize);
    for item in newest_first.iter().take(last) {
        keep.insert(item.id.as_str());
    }
    if let Some(window) = policy.keep_within {
        for item in &newest_first {
            let age = now.duration_since(item.started).unwrap_or_default();
            if age < window {
                keep.insert(item.id.as_str());
            }
        }
    }
    if let Some(v) = newest_first.iter().find(|i| i.verified) {
        keep.insert(v.id.as_str());
    }
    // Close over parents: a kept incremental keeps its chain.
    let mut stack: Vec<&str> = keep.iter().copied().collect();
    while let Some(id) = stack.pop() {
        if let Some(parent) = by_id.get(id).and_then(|i| i.parent_id.as_deref())
            && by_id.contains_key(parent)
            && keep.insert(parent)
        {
            stack.push(parent);
        }
    }
    by_id
        .keys()
        .filter(|id| !keep.contains(*id))
        .map(|id| (*id).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_800_000_000;

    fn item(i: usize, parent: Option<usize>, verified: bool) -> Item {
        Item {
            id: format!("{i:04}"),
            parent_id: parent.map(|p| format!("{p:04}")),
            started: SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + i as u64 * 3600),
            verified,
        }
    }

    #[test]
    fn keeps_the_newest_and_their_chains() {
        // 0 full, 1 incr of 0, 2 incr of 1, 3 full, 4 incr of 3
        let items = [
            item(0, None, false),
            item(1, Some(0), false),
            item(2, Some(1), false),
            item(3, None, false),
            item(4, Some(3), false),
        ];
        let now = items[4].started;
        let p = Policy {
            keep_last: Some(1),
            keep_within: None,
        };
        assert_eq!(expired(&items, p, now), ["0000", "0001", "0002"]);
        let p = Policy {
            keep_last: Some(3),
            keep_within: None,
        };
        // 2 is kept, so 1 and 0 are too
        assert!(expired(&items, p, now).is_empty());
        let p = Policy {
            keep_last: None,
            keep_within: Some(Duration::from_secs(90 * 60)),
        };
        assert_eq!(expired(&items, p, now), ["0000", "0001", "0002"]);
        assert!(expired(&items, Policy::default(), now).is_empty());
    }

    #[test]
    fn the_newest_verified_backup_stays() {
        let items = [
            item(0, None, true),
            item(1, None, false),
            item(2, None, false),
        ];
        let p = Policy {
            keep_last: Some(1),
            keep_within: None,
        };
        assert_eq!(expired(&items, p, items[2].started), ["0001"]);
    }

    proptest! {
        #[test]
        fn kept_sets_are_closed_and_honour_the_policy(
            shape in proptest::collection::vec((any::<bool>(), any::<bool>()), 0..20),
            keep_last in proptest::option::of(0u32..6),
            window_h in proptest::option::of(0u64..30),
        ) {
            let mut items = Vec::new();
            let mut last_full = None;
            for (i, (incr, verified)) in shape.iter().enumerate() {
                let parent = if *incr { last_full.map(|_| i - 1) } else { None };
                if !incr || last_full.is_none() { last_full = Some(i); }
                items.push(item(i, parent, *verified));
            }
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + 20 * 3600);
            let policy = Policy { keep_last, keep_within: window_h.map(|h| Duration::from_secs(h * 3600)) };
            let gone: BTreeSet<String> = expired(&items, policy, now).into_iter().collect();
            let kept: Vec<&Item> = items.iter().filter(|i| !gone.contains(&i.id)).collect();
            for k in &kept {
                if let Some(p) = &k.parent_id { prop_assert!(!gone.contains(p), "parent of a kept backup expired"); }
            }
            if keep_last.is_some() || window_h.is_some() {
                let n = keep_last.unwrap_or(0) as usize;
                for i in items.iter().rev().take(n) { prop_assert!(!gone.contains(&i.id)); }
                if let Some(v) = items.iter().rev().find(|i| i.verified) { prop_assert!(!gone.contains(&v.id)); }
                if let Some(h) = window_h {
                    for i in &items {
                        if now.duration_since(i.started).unwrap_or_default() < Duration::from_secs(h * 3600) {
                            prop_assert!(!gone.contains(&i.id));
                        }
                    }
                }
            } else {
                prop_assert!(gone.is_empty());
            }
        }
    }
}
