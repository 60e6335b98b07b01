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
    async fn put(&self, key: &str, value: &str, metadata: Option<&Value>) -> Result<(), StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Keys with `prefix` in lexicographic order, at most `limit`, with metadata.
    async fn list(&self, prefix: &str, limit: u32, cursor: Option<&str>) -> Result<KvPage, StoreError>;
}

/// Typed JSON helpers over any [`Kv`].
pub async fn get_json<T: serde::de::DeserializeOwned>(kv: &impl Kv, key: &str) -> Result<Option<T>, StoreError> {
    match kv.get(key).await? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("{key}: {e}"))),
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

    #[derive(Default)]
    pub struct MemoryKv {
        pub map: RefCell<BTreeMap<String, (String, Option<Value>)>>,
    }

    impl Kv for MemoryKv {
        async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
            Ok(self.map.borrow().get(key).map(|(v, _)| v.clone()))
        }
        async fn put(&self, key: &str, value: &str, metadata: Option<&Value>) -> Result<(), StoreError> {
            self.map.borrow_mut().insert(key.to_string(), (value.to_string(), metadata.cloned()));
            Ok(())
        }
        async fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.map.borrow_mut().remove(key);
            Ok(())
        }
        async fn list(&self, prefix: &str, limit: u32, cursor: Option<&str>) -> Result<KvPage, StoreError> {
            let map = self.map.borrow();
            let mut keys: Vec<KvEntry> = map
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .filter(|(k, _)| cursor.is_none_or(|c| k.as_str() > c))
                .take(limit as usize + 1)
                .map(|(k, (_, m))| KvEntry { name: k.clone(), metadata: m.clone() })
                .collect();
            let more = keys.len() > limit as usize;
            keys.truncate(limit as usize);
            let cursor = if more { keys.last().map(|k| k.name.clone()) } else { None };
            Ok(KvPage { keys, cursor })
        }
    }
}
