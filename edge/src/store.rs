//! The key-value port the pure service logic talks to. In the Worker it is
//! Cloudflare KV (see `glue`); in native unit tests an in-memory map.
//!
//! KV is eventually consistent with no atomics: keep counters, locks and
//! queues out of it (they belong in Durable Objects).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The store did not answer or refused the operation.
    Unavailable(String),
    /// A stored value could not be decoded.
    Corrupt(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct KvEntry {
    pub name: String,
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KvPage {
    pub keys: Vec<KvEntry>,
    /// Present when more keys follow.
    pub cursor: Option<String>,
}

/// The subset of Workers KV the edge uses.
#[allow(async_fn_in_trait)] // single-threaded wasm: no Send bound wanted
pub trait Kv {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError>;
    async fn put(&self, key: &str, value: &str, metadata: Option<&Value>)
        -> Result<(), StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Keys with `prefix` in lexicographic order, at most `limit`, with metadata.
    async fn list(
        &self,
        prefix: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<KvPage, StoreError>;
}

/// Typed JSON helpers over any [`Kv`].
pub async fn get_json<T: serde::de::DeserializeOwned>(
    kv: &impl Kv,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match kv.get(key).await? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("{key}: {e}"))),
    }
}

/// Every record under a small configuration prefix (a tenant's agents, keys,
/// endpoints: a handful), page by page; keys listed but gone by the time they
/// are read are skipped. Call records never go through here.
pub async fn get_all_json<T: serde::de::DeserializeOwned>(
    kv: &impl Kv,
    prefix: &str,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = kv.list(prefix, 1000, cursor.as_deref()).await?;
        for entry in page.keys {
            if let Some(v) = get_json(kv, &entry.name).await? {
                out.push(v);
            }
        }
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

pub async fn put_json<T: serde::Serialize>(
    kv: &impl Kv,
    key: &str,
    value: &T,
    metadata: Option<&Value>,
) -> Result<(), StoreError> {
    let text = serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    kv.put(key, &text, metadata).await
}

/// In-memory [`Kv`] for native unit tests of the service logic and, with the
/// `bench-support` feature, the CPU bench (edge/bench-wasm). The real
/// store is exercised end to end against `wrangler dev` in `tests/`.
#[cfg(any(test, feature = "bench-support"))]
pub mod memory {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// Workers KV's documented limits, off unless a test turns them on.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct KvLimits {
        /// One write per key per second; a second one answers 429.
        pub one_write_per_second: bool,
        /// A read sees a write only this long after it (other locations lag up to 60 s).
        pub propagation_ms: u64,
    }

    /// Keys up to 512 bytes, values up to 25 MiB, metadata up to 1024 bytes of JSON.
    pub const MAX_KEY_BYTES: usize = 512;
    pub const MAX_VALUE_BYTES: usize = 25 * 1024 * 1024;
    pub const MAX_METADATA_BYTES: usize = 1024;

    #[derive(Default)]
    pub struct MemoryKv {
        pub map: RefCell<BTreeMap<String, (String, Option<Value>)>>,
        pub limits: std::cell::Cell<KvLimits>,
        /// The clock the limits are judged by (tests set it with each request).
        pub now_ms: std::cell::Cell<u64>,
        /// Per key: when it was last written, and what a lagging reader still sees.
        writes: RefCell<BTreeMap<String, (u64, Option<String>)>>,
        /// Writes refused with 429.
        pub refused: std::cell::Cell<u32>,
    }

    impl Kv for MemoryKv {
        async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
            let current = self.map.borrow().get(key).map(|(v, _)| v.clone());
            let lag = self.limits.get().propagation_ms;
            match self.writes.borrow().get(key) {
                // A reader elsewhere still sees the value before the last write.
                Some((at, before)) if lag > 0 && self.now_ms.get() < at + lag => Ok(before.clone()),
                _ => Ok(current),
            }
        }
        async fn put(
            &self,
            key: &str,
            value: &str,
            metadata: Option<&Value>,
        ) -> Result<(), StoreError> {
            let meta_len = metadata.map_or(0, |m| m.to_string().len());
            if key.len() > MAX_KEY_BYTES
                || value.len() > MAX_VALUE_BYTES
                || meta_len > MAX_METADATA_BYTES
            {
                return Err(StoreError::Unavailable(format!(
                    "KV refuses {key}: key, value or metadata over its limit"
                )));
            }
            let now = self.now_ms.get();
            let last = self.writes.borrow().get(key).map(|(at, _)| *at);
            if self.limits.get().one_write_per_second && last.is_some_and(|at| now < at + 1_000) {
                self.refused.set(self.refused.get() + 1);
                return Err(StoreError::Unavailable(format!(
                    "KV 429: {key} written less than a second ago"
                )));
            }
            let before = self.map.borrow().get(key).map(|(v, _)| v.clone());
            self.writes
                .borrow_mut()
                .insert(key.to_string(), (now, before));
            self.map
                .borrow_mut()
                .insert(key.to_string(), (value.to_string(), metadata.cloned()));
            Ok(())
        }
        async fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.map.borrow_mut().remove(key);
            Ok(())
        }
        async fn list(
            &self,
            prefix: &str,
            limit: u32,
            cursor: Option<&str>,
        ) -> Result<KvPage, StoreError> {
            let map = self.map.borrow();
            let mut keys: Vec<KvEntry> = map
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .filter(|(k, _)| cursor.is_none_or(|c| k.as_str() > c))
                .take(limit as usize + 1)
                .map(|(k, (_, m))| KvEntry {
                    name: k.clone(),
                    metadata: m.clone(),
                })
                .collect();
            let more = keys.len() > limit as usize;
            keys.truncate(limit as usize);
            let cursor = if more {
                keys.last().map(|k| k.name.clone())
            } else {
                None
            };
            Ok(KvPage { keys, cursor })
        }
    }
}
