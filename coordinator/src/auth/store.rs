//! Token documents in etcd (`<prefix>/_coordinator/tokens/<id>`), with a very short
//! per-coordinator cache.
//!
//! Every request checks its token's document. Answers are cached for `cache_ttl` (default
//! 1 s, `--token-cache`), so a token revoked through one coordinator is refused by every
//! other coordinator within that time; with `--token-cache 0s` every request reads etcd.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cluster::store::{EtcdStore, Store, StoreError};
use cluster::wire::{self, CoordinatorKeys, TokenDoc};

/// Entries beyond this are dropped wholesale (a flood of random token ids must not grow
/// memory without bound).
const CACHE_MAX: usize = 10_000;

/// Reads and writes token documents.
pub struct TokenStore {
    /// The etcd client.
    store: EtcdStore,
    /// Where the documents live.
    keys: CoordinatorKeys,
    /// How long an answer may be reused.
    cache_ttl: Duration,
    /// id → (when read, document or absent).
    cache: Mutex<HashMap<String, (Instant, Option<TokenDoc>)>>,
}

impl TokenStore {
    /// A store over `store` under `keys`.
    pub fn new(store: EtcdStore, keys: CoordinatorKeys, cache_ttl: Duration) -> Self {
        Self {
            store,
            keys,
            cache_ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The document of token `id` (`None` when unknown or unreadable).
    pub async fn get(&self, id: &str) -> Result<Option<TokenDoc>, StoreError> {
        if !self.cache_ttl.is_zero()
            && let Some((at, doc)) = self.lock().get(id)
            && at.elapsed() < self.cache_ttl
        {
            return Ok(doc.clone());
        }
        let doc = self.get_fresh(id).await?;
        if !self.cache_ttl.is_zero() {
            let mut cache = self.lock();
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(id.to_owned(), (Instant::now(), doc.clone()));
        }
        Ok(doc)
    }

    /// The document of token `id`, read from etcd now.
    pub async fn get_fresh(&self, id: &str) -> Result<Option<TokenDoc>, StoreError> {
        Ok(self
            .store
            .get(&self.keys.token(id))
            .await?
            .and_then(|(v, _)| wire::decode::<TokenDoc>(&v).ok()))
    }

    /// Stores a new token; `false` when the id is taken (never in practice: 64 random bits).
    pub async fn create(&self, doc: &TokenDoc) -> Result<bool, StoreError> {
        self.store
            .create_if_absent(&self.keys.token(&doc.id), wire::encode(doc), None)
            .await
    }

    /// Overwrites a token (revocation).
    pub async fn put(&self, doc: &TokenDoc) -> Result<(), StoreError> {
        self.store
            .put(&self.keys.token(&doc.id), wire::encode(doc), None)
            .await?;
        self.lock().remove(&doc.id);
        Ok(())
    }

    /// Every readable token document, by id.
    pub async fn list(&self) -> Result<Vec<TokenDoc>, StoreError> {
        let (entries, _) = self.store.get_prefix(&self.keys.tokens_prefix()).await?;
        Ok(entries
            .iter()
            .filter_map(|e| wire::decode::<TokenDoc>(&e.value).ok())
            .collect())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Option<TokenDoc>)>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts).
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}
