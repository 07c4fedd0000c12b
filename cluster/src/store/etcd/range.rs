//! Range reads and deletes that only the coordinator needs (not part of the [`Store`] trait
//! the agents use): keys-only listings, bounded and newest-first reads, and range deletes
//! for retention.
//!
//! [`Store`]: super::super::Store

use etcd_client::{DeleteOptions, GetOptions, SortOrder, SortTarget};

use super::{EtcdStore, entries_of, key_string};
use crate::store::{Entry, Revision, StoreError};

/// The smallest key greater than every key starting with `prefix` (etcd's prefix range end).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Which slice of a prefix [`EtcdStore::get_range`] reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeQuery {
    /// Only keys `>= from` (`None`: from the prefix's start).
    pub from: Option<String>,
    /// Only keys `< to` (`None`: to the prefix's end).
    pub to: Option<String>,
    /// At most this many entries (0: no limit).
    pub limit: i64,
    /// Newest (highest) keys first.
    pub descending: bool,
}

impl EtcdStore {
    /// Every key under `prefix` (values not transferred), sorted, and the read's revision.
    pub async fn list_keys(&self, prefix: &str) -> Result<(Vec<String>, Revision), StoreError> {
        let mut resp = self
            .call(
                "get_prefix",
                || format!("list key names under {prefix}"),
                None,
                || {
                    let mut c = self.client.clone();
                    let k = prefix.to_owned();
                    async move {
                        c.get(k, Some(GetOptions::new().with_prefix().with_keys_only()))
                            .await
                    }
                },
            )
            .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        let keys = resp
            .take_kvs()
            .into_iter()
            .map(|kv| key_string(kv.key()))
            .collect();
        Ok((keys, revision))
    }

    /// Every key in `[start, end)` (values not transferred), sorted: listings that must skip
    /// a part of a prefix (the coordinator's audit log) without reading it.
    pub async fn list_keys_between(
        &self,
        start: &str,
        end: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut resp = self
            .call(
                "get_prefix",
                || format!("list key names from {start} to {end}"),
                None,
                || {
                    let mut c = self.client.clone();
                    let (s, e) = (start.to_owned(), end.as_bytes().to_vec());
                    async move {
                        c.get(s, Some(GetOptions::new().with_range(e).with_keys_only()))
                            .await
                    }
                },
            )
            .await?;
        Ok(resp
            .take_kvs()
            .into_iter()
            .map(|kv| key_string(kv.key()))
            .collect())
    }

    /// The end of the range of keys starting with `prefix`, as a string (for
    /// [`EtcdStore::list_keys_between`]); `None` when it is not valid UTF-8.
    pub fn prefix_end(prefix: &str) -> Option<String> {
        String::from_utf8(prefix_end(prefix)).ok()
    }

    /// Keys under `prefix` within the bounds of `q`, sorted by key (descending when asked),
    /// at most `q.limit` of them, and the read's revision.
    pub async fn get_range(
        &self,
        prefix: &str,
        q: &RangeQuery,
    ) -> Result<(Vec<Entry>, Revision), StoreError> {
        let start = q.from.clone().unwrap_or_else(|| prefix.to_owned());
        let start = if start.as_str() < prefix {
            prefix.to_owned()
        } else {
            start
        };
        let end = match &q.to {
            Some(to) if to.as_bytes() < prefix_end(prefix).as_slice() => to.as_bytes().to_vec(),
            _ => prefix_end(prefix),
        };
        let order = if q.descending {
            SortOrder::Descend
        } else {
            SortOrder::Ascend
        };
        let mut resp = self
            .call(
                "get_prefix",
                || format!("read keys under {prefix}"),
                None,
                || {
                    let mut c = self.client.clone();
                    let opts = GetOptions::new()
                        .with_range(end.clone())
                        .with_limit(q.limit)
                        .with_sort(SortTarget::Key, order);
                    let k = start.clone();
                    async move { c.get(k, Some(opts)).await }
                },
            )
            .await?;
        Ok(entries_of(&mut resp))
    }

    /// Deletes every key in `[start, end)`; returns how many were deleted.
    pub async fn delete_range(&self, start: &str, end: &str) -> Result<i64, StoreError> {
        let resp = self
            .call(
                "delete",
                || format!("delete keys from {start} to {end}"),
                None,
                || {
                    let mut c = self.client.clone();
                    let (s, e) = (start.to_owned(), end.as_bytes().to_vec());
                    async move { c.delete(s, Some(DeleteOptions::new().with_range(e))).await }
                },
            )
            .await?;
        Ok(resp.deleted())
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
    }
}
