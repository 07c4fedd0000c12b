//! [`Denials`]: refused requests are aggregated per client address, action and problem code
//! before they reach the audit log. The first refusal of a kind in a window is written at
//! once; the rest of that window are counted and written as one record (`repeats`: how many
//! it stands for) when the window ends. So repeating a refusal costs at most two records per
//! window, however fast a client sends, and a flood of refusals cannot fill etcd (the
//! client's failure budget bounds how many kinds it can try).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cluster::wire::AuditDoc;

/// What refusals are aggregated by.
type Kind = (IpAddr, String, Option<String>);

/// Kinds tracked at once; refusals of further kinds share one overflow entry.
const MAX_KINDS: usize = 10_000;

/// One address's window.
#[derive(Debug)]
struct Window {
    /// When the window started (its first refusal, written at once).
    start: Instant,
    /// Refusals held back since, and the newest of them (the aggregate's template).
    held: u64,
    /// The newest refusal held back.
    last: Option<AuditDoc>,
}

/// Refusals per client address, per window.
#[derive(Debug)]
pub struct Denials {
    /// Length of a window.
    window: Duration,
    /// Open windows, and aggregates of windows that ended, waiting for [`Denials::flush`].
    state: Mutex<State>,
}

/// What [`Denials`] holds.
#[derive(Debug, Default)]
struct State {
    /// Open windows by address, action and code (`None`: the overflow entry).
    open: HashMap<Option<Kind>, Window>,
    /// Aggregates of windows that ended when a new one opened.
    ended: Vec<AuditDoc>,
}

impl Denials {
    /// Windows of `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            state: Mutex::default(),
        }
    }

    /// Offer a refusal from `client`: `Some(doc)` to write now (the first of a window),
    /// `None` when it was counted for the window's aggregate.
    pub fn offer(&self, client: IpAddr, doc: AuditDoc) -> Option<AuditDoc> {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let kind = Some((client, doc.action.clone(), doc.code.clone()));
        let key = if st.open.len() < MAX_KINDS || st.open.contains_key(&kind) {
            kind
        } else {
            None
        };
        if let Some(w) = st.open.get_mut(&key)
            && now.duration_since(w.start) < self.window
        {
            w.held += 1;
            w.last = Some(doc);
            return None;
        }
        let fresh = Window {
            start: now,
            held: 0,
            last: None,
        };
        if let Some(ended) = st.open.insert(key.clone(), fresh)
            && let Some(agg) = self.aggregate(key.is_none(), ended)
        {
            st.ended.push(agg);
        }
        Some(doc)
    }

    /// The aggregates of every window that ended: one record per kind that had refusals
    /// held back, carrying how many (`repeats`).
    pub fn flush(&self) -> Vec<AuditDoc> {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = std::mem::take(&mut st.ended);
        let expired: Vec<Option<Kind>> = st
            .open
            .iter()
            .filter(|(_, w)| now.duration_since(w.start) >= self.window)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            if let Some(w) = st.open.remove(&key)
                && let Some(agg) = self.aggregate(key.is_none(), w)
            {
                out.push(agg);
            }
        }
        out
    }

    /// The record standing for the refusals `w` held back; `None` when there were none.
    fn aggregate(&self, overflow: bool, w: Window) -> Option<AuditDoc> {
        let mut doc = w.last?;
        doc.repeats = Some(w.held);
        if overflow {
            doc.client = "(other addresses)".into();
            doc.token_id = None;
        }
        doc.detail = Some(format!(
            "{} more refused requests like this one from this address in {}s (the first is \
             recorded on its own)",
            w.held,
            self.window.as_secs()
        ));
        Some(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster::wire::{AuditOutcome, Timestamp};

    fn doc(n: u32) -> AuditDoc {
        AuditDoc {
            schema: 1,
            time: Timestamp::now(),
            token_id: None,
            role: None,
            action: "cluster.get".into(),
            target: format!("t{n}"),
            outcome: AuditOutcome::Denied,
            status: 401,
            code: Some("token_missing".into()),
            client: "127.0.0.1:1".into(),
            detail: None,
            repeats: None,
        }
    }

    #[test]
    fn the_first_refusal_is_written_and_the_rest_become_one_record() {
        let d = Denials::new(Duration::from_millis(50));
        let ip: IpAddr = [127, 0, 0, 1].into();
        assert!(d.offer(ip, doc(0)).is_some());
        for n in 1..=1000 {
            assert!(d.offer(ip, doc(n)).is_none());
        }
        assert!(
            d.offer([10, 0, 0, 1].into(), doc(0)).is_some(),
            "per address"
        );
        let mut other = doc(0);
        other.code = Some("forbidden".into());
        assert!(d.offer(ip, other).is_some(), "per code");
        assert!(d.flush().is_empty(), "the window is still open");
        std::thread::sleep(Duration::from_millis(60));
        let out = d.flush();
        let out: Vec<_> = out.into_iter().filter(|d| d.repeats.is_some()).collect();
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].repeats, Some(1000));
        assert_eq!(out[0].target, "t1000");
        assert!(d.offer(ip, doc(0)).is_some(), "a new window");
    }
}
