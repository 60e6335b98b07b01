//! wasm32-only: the Worker's environment as the plain code's ports and
//! settings: KV as [`crate::store::Kv`], Durable Object SQLite as
//! [`crate::sql::Sql`], vars and secrets. A leaf: every other glue module may use it.

use crate::sql::{Row, Sql, SqlValue};
use crate::store::{Kv, KvEntry, KvPage, StoreError};
use serde_json::Value;
use worker::{kv::KvStore, Env, SqlStorage, SqlStorageValue};

pub(crate) const KV_BINDING: &str = "VOXLINE_KV";

pub(crate) struct WorkersKv(pub KvStore);

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl Kv for WorkersKv {
    async fn get(&self, key: &str) -> std::result::Result<Option<String>, StoreError> {
        self.0.get(key).text().await.map_err(unavailable)
    }

    async fn put(
        &self,
        key: &str,
        value: &str,
        metadata: Option<&Value>,
    ) -> std::result::Result<(), StoreError> {
        let mut put = self.0.put(key, value).map_err(unavailable)?;
        if let Some(m) = metadata {
            put = put.metadata(m).map_err(unavailable)?;
        }
        put.execute().await.map_err(unavailable)
    }

    async fn delete(&self, key: &str) -> std::result::Result<(), StoreError> {
        self.0.delete(key).await.map_err(unavailable)
    }

    async fn list(
        &self,
        prefix: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> std::result::Result<KvPage, StoreError> {
        let mut list = self
            .0
            .list()
            .prefix(prefix.to_string())
            .limit(u64::from(limit));
        if let Some(c) = cursor {
            list = list.cursor(c.to_string());
        }
        let page = list.execute().await.map_err(unavailable)?;
        Ok(KvPage {
            keys: page
                .keys
                .into_iter()
                .map(|k| KvEntry {
                    name: k.name,
                    metadata: k.metadata,
                })
                .collect(),
            cursor: if page.list_complete {
                None
            } else {
                page.cursor.filter(|c| !c.is_empty())
            },
        })
    }
}

pub(crate) fn var_u64(env: &Env, name: &str) -> Option<u64> {
    secret_or_var(env, name).and_then(|v| v.trim().parse().ok())
}

pub(crate) fn secret_or_var(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .map(|s| s.to_string())
        .or_else(|_| env.var(name).map(|v| v.to_string()))
        .ok()
}

/// `VOXLINE_ENV=development`: loopback webhooks, plain-http sidecar link.
pub(crate) fn dev_mode(env: &Env) -> bool {
    secret_or_var(env, "VOXLINE_ENV").is_some_and(|v| v == "development")
}

/// `VOXLINE_SEALING_KEY`, when set and well-formed (a bad one is logged and
/// treated as absent: engine keys are refused rather than sealed wrongly).
pub(crate) fn sealing_key(env: &Env) -> Option<crate::engine_keys::SealingKey> {
    let text = secret_or_var(env, "VOXLINE_SEALING_KEY")?;
    crate::engine_keys::SealingKey::from_secret(&text)
        .map_err(|e| worker::console_log!("VOXLINE_SEALING_KEY ignored: {e}"))
        .ok()
}

/// Recording links for dialect webhooks' `recording_url`: `PUBLIC_BASE_URL`
/// (this Worker's public origin, e.g. `https://api.example.com`) and the key
/// derived from `VOXLINE_SEALING_KEY`. Without either (or with a bad base
/// URL, logged) there are none and `recording_url` stays null.
pub(crate) fn recording_links(env: &Env) -> Option<crate::recording_links::RecordingLinks> {
    let base = secret_or_var(env, "PUBLIC_BASE_URL").filter(|b| !b.trim().is_empty())?;
    let key = sealing_key(env)?;
    crate::recording_links::RecordingLinks::new(&base, key.recording_link_key())
        .map_err(|e| worker::console_log!("PUBLIC_BASE_URL ignored: {e}"))
        .ok()
}

/// `AUTH_FAILURE_LIMIT` / `AUTH_FAILURE_WINDOW_SECONDS`, each defaulting to
/// `traffic::AUTH_FAILURES` (out-of-range values too).
pub(crate) fn auth_failures(env: &Env) -> crate::traffic::RateLimit {
    let d = crate::traffic::AUTH_FAILURES;
    let within = |v: Option<u64>, max: u32, default: u32| {
        v.filter(|n| (1..=u64::from(max)).contains(n))
            .map_or(default, |n| n as u32)
    };
    crate::traffic::RateLimit {
        limit: within(
            var_u64(env, "AUTH_FAILURE_LIMIT"),
            crate::traffic::LIMIT_MAX,
            d.limit,
        ),
        window_seconds: within(
            var_u64(env, "AUTH_FAILURE_WINDOW_SECONDS"),
            crate::traffic::WINDOW_SECONDS_MAX,
            d.window_seconds,
        ),
    }
}

/// `ctx.storage.sql` as the [`Sql`] port.
pub(crate) struct DoSql(pub SqlStorage);

fn to_do(v: SqlValue) -> SqlStorageValue {
    match v {
        SqlValue::Null => SqlStorageValue::Null,
        SqlValue::Integer(n) => SqlStorageValue::Integer(n),
        SqlValue::Real(f) => SqlStorageValue::Float(f),
        SqlValue::Text(s) => SqlStorageValue::String(s),
        SqlValue::Blob(b) => SqlStorageValue::Blob(b),
    }
}

fn from_do(v: SqlStorageValue) -> SqlValue {
    match v {
        SqlStorageValue::Null => SqlValue::Null,
        SqlStorageValue::Boolean(b) => SqlValue::Integer(i64::from(b)),
        SqlStorageValue::Integer(n) => SqlValue::Integer(n),
        SqlStorageValue::Float(f) => SqlValue::Real(f),
        SqlStorageValue::String(s) => SqlValue::Text(s),
        SqlStorageValue::Blob(b) => SqlValue::Blob(b),
    }
}

impl Sql for DoSql {
    fn exec(&self, query: &str, args: Vec<SqlValue>) -> std::result::Result<Vec<Row>, StoreError> {
        let failed = |e: worker::Error| StoreError::Unavailable(format!("sql: {e}"));
        let cursor = self
            .0
            .exec(query, args.into_iter().map(to_do).collect::<Vec<_>>())
            .map_err(failed)?;
        cursor
            .raw()
            .map(|row| {
                row.map(|values| values.into_iter().map(from_do).collect())
                    .map_err(failed)
            })
            .collect()
    }
}
