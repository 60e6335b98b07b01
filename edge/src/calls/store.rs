//! A tenant's calls: the one writer of their records, transcripts and
//! recording metadata, and the outbox of the webhook events their changes
//! cause. In the Worker this is the `CallStore` Durable Object (one per
//! tenant, SQLite storage, `glue::call_store`); natively the same code runs over
//! real SQLite (tests) or plain maps (the CPU bench).
//!
//! Every change goes through here: creation and hangup from the API,
//! status changes and transcript turns from the region's queue (which sends
//! them numbered, so a resent batch is applied once). A change and the event
//! it causes are written in one synchronous step (one implicit transaction in
//! the Durable Object); events leave through the outbox, which the object
//! drains to Cloudflare Queues and retries by alarm until accepted.
//!
//! Nothing here is read from KV except configuration (webhook endpoints, when
//! an event is turned into deliveries).

use crate::calls::contacts::{ContactCreated, ContactFilter, ContactUpdated};
use crate::calls::messages::{InboundVerdict, MessageCreated, MessageFilter, NewMessage};
use crate::calls::state;
use crate::contacts::{apply_patch, ContactEvent, ContactPatch, ContactRecord, MAX_CONTACTS};
use crate::dispatch::message_line::EnqueueMessageVerdict;
use crate::dispatch::port::DispatchQueues;
use crate::dispatch::queue::{CallChange, CallUpdate, CancelVerdict, EnqueueVerdict};
use crate::dispatch::queued_call::QueuedCall;
use crate::ids::rfc3339_ms;
use crate::messages::{reasons, MessageChange, MessageDirection, MessageEvent, MessageStatus};
use crate::messages::{MessageRecord, MessageUpdate};
use crate::model::{CallDirection, CallRecord};
use crate::sql::{int_at, text_at, Sql, SqlValue};
use crate::store::StoreError;
use crate::traffic::{IdemRequest, LocalFuture};
use crate::transcript::{Change, Transcript, TranscriptUpdate, Turn};
use crate::webhooks::events::{contact_event_payload, message_event_payload};
use crate::webhooks::events::{PendingEvent, WebhookEvent};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use voxline_shared::analysis::{analyse_locally, CallAnalysis, Line};
use voxline_shared::sidecar_link::InboundContent;
use voxline_shared::sidecar_link::InboundMessage;
use voxline_shared::sidecar_link::{LegStep, QueueStep};
use voxline_shared::{CallStatus, EndedReason};

/// An `Idempotency-Key` names the call it created for this long.
pub const IDEMPOTENCY_TTL_MS: u64 = crate::traffic::IDEMPOTENCY_TTL_MS;
/// Outbox events handed to the delivery queue per drain.
pub const DRAIN_BATCH: u32 = 50;

// ---- rows ----

/// What a listing asks for: calls in id order (newest first), optionally of
/// some statuses, after a cursor or skipping `offset` rows, at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListFilter {
    pub statuses: Vec<CallStatus>,
    pub after_id: Option<String>,
    pub offset: u32,
    pub limit: u32,
    /// Rows are whole call records (`CallRecord` JSON, for a dialect's own
    /// listing) instead of the public listing rows.
    #[serde(default)]
    pub records: bool,
}

/// An idempotency key's claim on the call it created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdemClaim {
    pub fingerprint: String,
    pub call_id: String,
    pub expires_ms: u64,
}

/// One row per item: a call, a transcript turn, a small value, an event.
/// Each method is one statement (or a few), never a read of everything.
pub trait CallRows {
    fn call(&self, id: &str) -> Result<Option<CallRecord>, StoreError>;
    fn put_call(&self, record: &CallRecord) -> Result<(), StoreError>;
    fn delete_call(&self, id: &str) -> Result<(), StoreError>;
    /// Public listing rows (`CallRecord::summary`) matching `f`, at most `f.limit`.
    fn list_calls(&self, f: &ListFilter) -> Result<Vec<Value>, StoreError>;
    fn push_turn(&self, call_id: &str, turn: &Turn) -> Result<(), StoreError>;
    fn turns(&self, call_id: &str) -> Result<Vec<Turn>, StoreError>;
    /// Small per-call values (summary, recording) and per-region counters.
    fn value(&self, key: &str) -> Result<Option<String>, StoreError>;
    fn put_value(&self, key: &str, value: &str) -> Result<(), StoreError>;
    fn idem(&self, key: &str) -> Result<Option<IdemClaim>, StoreError>;
    fn put_idem(&self, key: &str, claim: &IdemClaim) -> Result<(), StoreError>;
    fn delete_idem(&self, key: &str) -> Result<(), StoreError>;
    /// Forgets claims expired by `now_ms`.
    fn sweep_idem(&self, now_ms: u64) -> Result<(), StoreError>;
    fn push_event(&self, event: &PendingEvent) -> Result<(), StoreError>;
    /// The oldest pending events, with their row ids.
    fn events(&self, limit: u32) -> Result<Vec<(i64, PendingEvent)>, StoreError>;
    fn delete_event(&self, id: i64) -> Result<(), StoreError>;
    fn message(&self, id: &str) -> Result<Option<MessageRecord>, StoreError>;
    fn put_message(&self, record: &MessageRecord) -> Result<(), StoreError>;
    fn delete_message(&self, id: &str) -> Result<(), StoreError>;
    /// Public listing rows (`MessageRecord::summary`) matching `f`, at most `f.limit`.
    fn list_messages(&self, f: &MessageFilter) -> Result<Vec<Value>, StoreError>;
    fn contact(&self, id: &str) -> Result<Option<ContactRecord>, StoreError>;
    /// The contact with this phone (at most one: the column is unique).
    fn contact_by_phone(&self, phone: &str) -> Result<Option<ContactRecord>, StoreError>;
    fn put_contact(&self, record: &ContactRecord) -> Result<(), StoreError>;
    fn delete_contact(&self, id: &str) -> Result<(), StoreError>;
    /// Public listing rows (`ContactRecord::summary`) matching `f`, at most `f.limit`.
    fn list_contacts(&self, f: &ContactFilter) -> Result<Vec<Value>, StoreError>;
    /// Remembers one of the tenant's campaigns (the index its listing reads).
    fn put_campaign(&self, campaign_id: &str) -> Result<(), StoreError>;
    /// The tenant's campaign ids after `after` in id order (newest first), at most `limit`.
    fn list_campaigns(&self, after: Option<&str>, limit: u32) -> Result<Vec<String>, StoreError>;
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn to_text<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| corrupt("encode", e))
}

fn from_text<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

/// [`CallRows`] over SQLite: the Durable Object's storage, or real SQLite in tests.
pub struct SqlCallRows<S: Sql>(pub S);

impl<S: Sql> SqlCallRows<S> {
    /// Creates the tables if missing. Cheap; run once per object start.
    pub fn open(sql: S) -> Result<Self, StoreError> {
        for stmt in SCHEMA {
            sql.exec(stmt, vec![])?;
        }
        Ok(SqlCallRows(sql))
    }
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS calls (id TEXT PRIMARY KEY, status TEXT NOT NULL, summary TEXT NOT NULL, body TEXT NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS calls_by_status ON calls (status, id)",
    "CREATE TABLE IF NOT EXISTS turns (call_id TEXT NOT NULL, n INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (call_id, n)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS vals (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS idem (k TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, call_id TEXT NOT NULL, expires_ms INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS idem_by_expiry ON idem (expires_ms)",
    "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS messages (id TEXT PRIMARY KEY, direction TEXT NOT NULL, status TEXT NOT NULL, summary TEXT NOT NULL, body TEXT NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS messages_by_status ON messages (status, id)",
    "CREATE TABLE IF NOT EXISTS contacts (id TEXT PRIMARY KEY, phone TEXT NOT NULL UNIQUE, summary TEXT NOT NULL, body TEXT NOT NULL) WITHOUT ROWID",
    // The tenant's campaigns (each is its own `Campaign` object): ids only.
    "CREATE TABLE IF NOT EXISTS campaigns (id TEXT PRIMARY KEY) WITHOUT ROWID",
];

impl<S: Sql> CallRows for SqlCallRows<S> {
    fn call(&self, id: &str) -> Result<Option<CallRecord>, StoreError> {
        let rows = self
            .0
            .exec("SELECT body FROM calls WHERE id = ?", vec![id.into()])?;
        rows.first()
            .map(|r| from_text("call", &text_at(r, 0, "call")?))
            .transpose()
    }

    fn put_call(&self, r: &CallRecord) -> Result<(), StoreError> {
        self.0.exec(
            "INSERT OR REPLACE INTO calls (id, status, summary, body) VALUES (?, ?, ?, ?)",
            vec![
                r.id.as_str().into(),
                r.status.as_str().into(),
                to_text(&r.summary())?.into(),
                to_text(r)?.into(),
            ],
        )?;
        Ok(())
    }

    fn delete_call(&self, id: &str) -> Result<(), StoreError> {
        self.0
            .exec("DELETE FROM calls WHERE id = ?", vec![id.into()])?;
        self.0
            .exec("DELETE FROM turns WHERE call_id = ?", vec![id.into()])?;
        Ok(())
    }

    fn list_calls(&self, f: &ListFilter) -> Result<Vec<Value>, StoreError> {
        let column = if f.records { "body" } else { "summary" };
        let mut query = format!("SELECT {column} FROM calls WHERE id > ?");
        let mut args: Vec<SqlValue> = vec![f.after_id.clone().unwrap_or_default().into()];
        if !f.statuses.is_empty() {
            query.push_str(" AND status IN (");
            query.push_str(&vec!["?"; f.statuses.len()].join(", "));
            query.push(')');
            args.extend(f.statuses.iter().map(|s| SqlValue::from(s.as_str())));
        }
        query.push_str(" ORDER BY id LIMIT ? OFFSET ?");
        args.push(i64::from(f.limit).into());
        args.push(i64::from(f.offset).into());
        self.0
            .exec(&query, args)?
            .iter()
            .map(|r| {
                let mut row: Value = from_text("call listing row", &text_at(r, 0, column)?)?;
                // Rows written before inbound calls existed are outbound.
                if let Some(fields) = row.as_object_mut().filter(|_| !f.records) {
                    fields
                        .entry("direction")
                        .or_insert_with(|| json!(crate::model::CallDirection::Outbound));
                }
                Ok(row)
            })
            .collect()
    }

    fn push_turn(&self, call_id: &str, turn: &Turn) -> Result<(), StoreError> {
        self.0.exec(
            "INSERT INTO turns (call_id, n, body) SELECT ?, COALESCE(MAX(n), 0) + 1, ? FROM turns WHERE call_id = ?",
            vec![call_id.into(), to_text(turn)?.into(), call_id.into()],
        )?;
        Ok(())
    }

    fn turns(&self, call_id: &str) -> Result<Vec<Turn>, StoreError> {
        let rows = self.0.exec(
            "SELECT body FROM turns WHERE call_id = ? ORDER BY n",
            vec![call_id.into()],
        )?;
        rows.iter()
            .map(|r| from_text("turn", &text_at(r, 0, "turn")?))
            .collect()
    }

    fn value(&self, key: &str) -> Result<Option<String>, StoreError> {
        let rows = self
            .0
            .exec("SELECT v FROM vals WHERE k = ?", vec![key.into()])?;
        rows.first().map(|r| text_at(r, 0, key)).transpose()
    }

    fn put_value(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.0.exec(
            "INSERT OR REPLACE INTO vals (k, v) VALUES (?, ?)",
            vec![key.into(), value.into()],
        )?;
        Ok(())
    }

    fn idem(&self, key: &str) -> Result<Option<IdemClaim>, StoreError> {
        let rows = self.0.exec(
            "SELECT fingerprint, call_id, expires_ms FROM idem WHERE k = ?",
            vec![key.into()],
        )?;
        rows.first()
            .map(|r| {
                Ok(IdemClaim {
                    fingerprint: text_at(r, 0, "fingerprint")?,
                    call_id: text_at(r, 1, "call_id")?,
                    expires_ms: int_at(r, 2, "expires_ms")?.max(0) as u64,
                })
            })
            .transpose()
    }

    fn put_idem(&self, key: &str, c: &IdemClaim) -> Result<(), StoreError> {
        self.0.exec(
            "INSERT OR REPLACE INTO idem (k, fingerprint, call_id, expires_ms) VALUES (?, ?, ?, ?)",
            vec![
                key.into(),
                c.fingerprint.as_str().into(),
                c.call_id.as_str().into(),
                c.expires_ms.into(),
            ],
        )?;
        Ok(())
    }

    fn delete_idem(&self, key: &str) -> Result<(), StoreError> {
        self.0
            .exec("DELETE FROM idem WHERE k = ?", vec![key.into()])?;
        Ok(())
    }

    fn sweep_idem(&self, now_ms: u64) -> Result<(), StoreError> {
        self.0.exec(
            "DELETE FROM idem WHERE expires_ms <= ?",
            vec![now_ms.into()],
        )?;
        Ok(())
    }

    fn push_event(&self, event: &PendingEvent) -> Result<(), StoreError> {
        self.0.exec(
            "INSERT INTO outbox (event) VALUES (?)",
            vec![to_text(event)?.into()],
        )?;
        Ok(())
    }

    fn events(&self, limit: u32) -> Result<Vec<(i64, PendingEvent)>, StoreError> {
        let rows = self.0.exec(
            "SELECT id, event FROM outbox ORDER BY id LIMIT ?",
            vec![i64::from(limit).into()],
        )?;
        rows.iter()
            .map(|r| {
                Ok((
                    int_at(r, 0, "outbox id")?,
                    from_text("event", &text_at(r, 1, "event")?)?,
                ))
            })
            .collect()
    }

    fn delete_event(&self, id: i64) -> Result<(), StoreError> {
        self.0
            .exec("DELETE FROM outbox WHERE id = ?", vec![id.into()])?;
        Ok(())
    }

    fn message(&self, id: &str) -> Result<Option<MessageRecord>, StoreError> {
        let rows = self
            .0
            .exec("SELECT body FROM messages WHERE id = ?", vec![id.into()])?;
        rows.first()
            .map(|r| from_text("message", &text_at(r, 0, "message")?))
            .transpose()
    }

    fn put_message(&self, m: &MessageRecord) -> Result<(), StoreError> {
        self.0.exec(
            "INSERT OR REPLACE INTO messages (id, direction, status, summary, body) VALUES (?, ?, ?, ?, ?)",
            vec![
                m.id.as_str().into(),
                m.direction.as_str().into(),
                m.status.as_str().into(),
                to_text(&m.summary())?.into(),
                to_text(m)?.into(),
            ],
        )?;
        Ok(())
    }

    fn delete_message(&self, id: &str) -> Result<(), StoreError> {
        self.0
            .exec("DELETE FROM messages WHERE id = ?", vec![id.into()])?;
        Ok(())
    }

    fn list_messages(&self, f: &MessageFilter) -> Result<Vec<Value>, StoreError> {
        let mut query = "SELECT summary FROM messages WHERE id > ?".to_string();
        let mut args: Vec<SqlValue> = vec![f.after_id.clone().unwrap_or_default().into()];
        if let Some(d) = f.direction {
            query.push_str(" AND direction = ?");
            args.push(d.as_str().into());
        }
        if !f.statuses.is_empty() {
            query.push_str(" AND status IN (");
            query.push_str(&vec!["?"; f.statuses.len()].join(", "));
            query.push(')');
            args.extend(f.statuses.iter().map(|s| SqlValue::from(s.as_str())));
        }
        query.push_str(" ORDER BY id LIMIT ?");
        args.push(i64::from(f.limit).into());
        self.0
            .exec(&query, args)?
            .iter()
            .map(|r| from_text("message listing row", &text_at(r, 0, "summary")?))
            .collect()
    }

    fn contact(&self, id: &str) -> Result<Option<ContactRecord>, StoreError> {
        let rows = self
            .0
            .exec("SELECT body FROM contacts WHERE id = ?", vec![id.into()])?;
        rows.first()
            .map(|r| from_text("contact", &text_at(r, 0, "contact")?))
            .transpose()
    }

    fn contact_by_phone(&self, phone: &str) -> Result<Option<ContactRecord>, StoreError> {
        let rows = self.0.exec(
            "SELECT body FROM contacts WHERE phone = ?",
            vec![phone.into()],
        )?;
        rows.first()
            .map(|r| from_text("contact", &text_at(r, 0, "contact")?))
            .transpose()
    }

    fn put_contact(&self, c: &ContactRecord) -> Result<(), StoreError> {
        self.0.exec(
            "INSERT OR REPLACE INTO contacts (id, phone, summary, body) VALUES (?, ?, ?, ?)",
            vec![
                c.id.as_str().into(),
                c.phone.as_str().into(),
                to_text(&c.summary())?.into(),
                to_text(c)?.into(),
            ],
        )?;
        Ok(())
    }

    fn delete_contact(&self, id: &str) -> Result<(), StoreError> {
        self.0
            .exec("DELETE FROM contacts WHERE id = ?", vec![id.into()])?;
        Ok(())
    }

    fn list_contacts(&self, f: &ContactFilter) -> Result<Vec<Value>, StoreError> {
        let mut query = "SELECT summary FROM contacts WHERE id > ?".to_string();
        let mut args: Vec<SqlValue> = vec![f.after_id.clone().unwrap_or_default().into()];
        if let Some(phone) = &f.phone {
            query.push_str(" AND phone = ?");
            args.push(phone.as_str().into());
        }
        query.push_str(" ORDER BY id LIMIT ?");
        args.push(i64::from(f.limit).into());
        self.0
            .exec(&query, args)?
            .iter()
            .map(|r| from_text("contact listing row", &text_at(r, 0, "summary")?))
            .collect()
    }

    fn put_campaign(&self, campaign_id: &str) -> Result<(), StoreError> {
        self.0.exec(
            "INSERT OR IGNORE INTO campaigns (id) VALUES (?)",
            vec![campaign_id.into()],
        )?;
        Ok(())
    }

    fn list_campaigns(&self, after: Option<&str>, limit: u32) -> Result<Vec<String>, StoreError> {
        self.0
            .exec(
                "SELECT id FROM campaigns WHERE id > ? ORDER BY id LIMIT ?",
                vec![after.unwrap_or("").into(), i64::from(limit).into()],
            )?
            .iter()
            .map(|r| text_at(r, 0, "campaign id"))
            .collect()
    }
}

/// [`CallRows`] in plain maps, for the CPU bench (wasm32-wasip1 has no SQLite).
#[cfg(any(test, feature = "bench-support"))]
pub mod memory_rows {
    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    #[derive(Default)]
    pub struct MemoryCallRows {
        calls: RefCell<BTreeMap<String, CallRecord>>,
        turns: RefCell<BTreeMap<String, Vec<Turn>>>,
        values: RefCell<BTreeMap<String, String>>,
        idem: RefCell<BTreeMap<String, IdemClaim>>,
        events: RefCell<BTreeMap<i64, PendingEvent>>,
        messages: RefCell<BTreeMap<String, MessageRecord>>,
        contacts: RefCell<BTreeMap<String, ContactRecord>>,
        campaigns: RefCell<std::collections::BTreeSet<String>>,
    }

    impl CallRows for MemoryCallRows {
        fn call(&self, id: &str) -> Result<Option<CallRecord>, StoreError> {
            Ok(self.calls.borrow().get(id).cloned())
        }
        fn put_call(&self, r: &CallRecord) -> Result<(), StoreError> {
            self.calls.borrow_mut().insert(r.id.clone(), r.clone());
            Ok(())
        }
        fn delete_call(&self, id: &str) -> Result<(), StoreError> {
            self.calls.borrow_mut().remove(id);
            self.turns.borrow_mut().remove(id);
            Ok(())
        }
        fn list_calls(&self, f: &ListFilter) -> Result<Vec<Value>, StoreError> {
            let after = f.after_id.clone().unwrap_or_default();
            Ok(self
                .calls
                .borrow()
                .range::<String, _>((
                    std::ops::Bound::Excluded(&after),
                    std::ops::Bound::Unbounded,
                ))
                .map(|(_, r)| r)
                .filter(|r| f.statuses.is_empty() || f.statuses.contains(&r.status))
                .skip(f.offset as usize)
                .take(f.limit as usize)
                .map(|r| match f.records {
                    true => serde_json::to_value(r).unwrap_or_default(),
                    false => r.summary(),
                })
                .collect())
        }
        fn push_turn(&self, call_id: &str, turn: &Turn) -> Result<(), StoreError> {
            self.turns
                .borrow_mut()
                .entry(call_id.to_string())
                .or_default()
                .push(turn.clone());
            Ok(())
        }
        fn turns(&self, call_id: &str) -> Result<Vec<Turn>, StoreError> {
            Ok(self
                .turns
                .borrow()
                .get(call_id)
                .cloned()
                .unwrap_or_default())
        }
        fn value(&self, key: &str) -> Result<Option<String>, StoreError> {
            Ok(self.values.borrow().get(key).cloned())
        }
        fn put_value(&self, key: &str, value: &str) -> Result<(), StoreError> {
            self.values
                .borrow_mut()
                .insert(key.to_string(), value.to_string());
            Ok(())
        }
        fn idem(&self, key: &str) -> Result<Option<IdemClaim>, StoreError> {
            Ok(self.idem.borrow().get(key).cloned())
        }
        fn put_idem(&self, key: &str, claim: &IdemClaim) -> Result<(), StoreError> {
            self.idem
                .borrow_mut()
                .insert(key.to_string(), claim.clone());
            Ok(())
        }
        fn delete_idem(&self, key: &str) -> Result<(), StoreError> {
            self.idem.borrow_mut().remove(key);
            Ok(())
        }
        fn sweep_idem(&self, now_ms: u64) -> Result<(), StoreError> {
            self.idem.borrow_mut().retain(|_, c| c.expires_ms > now_ms);
            Ok(())
        }
        fn push_event(&self, event: &PendingEvent) -> Result<(), StoreError> {
            let mut events = self.events.borrow_mut();
            let id = events.keys().next_back().map_or(1, |k| k + 1);
            events.insert(id, event.clone());
            Ok(())
        }
        fn events(&self, limit: u32) -> Result<Vec<(i64, PendingEvent)>, StoreError> {
            Ok(self
                .events
                .borrow()
                .iter()
                .take(limit as usize)
                .map(|(k, v)| (*k, v.clone()))
                .collect())
        }
        fn delete_event(&self, id: i64) -> Result<(), StoreError> {
            self.events.borrow_mut().remove(&id);
            Ok(())
        }
        fn message(&self, id: &str) -> Result<Option<MessageRecord>, StoreError> {
            Ok(self.messages.borrow().get(id).cloned())
        }
        fn put_message(&self, m: &MessageRecord) -> Result<(), StoreError> {
            self.messages.borrow_mut().insert(m.id.clone(), m.clone());
            Ok(())
        }
        fn delete_message(&self, id: &str) -> Result<(), StoreError> {
            self.messages.borrow_mut().remove(id);
            Ok(())
        }
        fn list_messages(&self, f: &MessageFilter) -> Result<Vec<Value>, StoreError> {
            let after = f.after_id.clone().unwrap_or_default();
            Ok(self
                .messages
                .borrow()
                .range::<String, _>((
                    std::ops::Bound::Excluded(&after),
                    std::ops::Bound::Unbounded,
                ))
                .map(|(_, m)| m)
                .filter(|m| f.direction.is_none_or(|d| d == m.direction))
                .filter(|m| f.statuses.is_empty() || f.statuses.contains(&m.status))
                .take(f.limit as usize)
                .map(MessageRecord::summary)
                .collect())
        }
        fn contact(&self, id: &str) -> Result<Option<ContactRecord>, StoreError> {
            Ok(self.contacts.borrow().get(id).cloned())
        }
        fn contact_by_phone(&self, phone: &str) -> Result<Option<ContactRecord>, StoreError> {
            Ok(self
                .contacts
                .borrow()
                .values()
                .find(|c| c.phone == phone)
                .cloned())
        }
        fn put_contact(&self, c: &ContactRecord) -> Result<(), StoreError> {
            self.contacts.borrow_mut().insert(c.id.clone(), c.clone());
            Ok(())
        }
        fn delete_contact(&self, id: &str) -> Result<(), StoreError> {
            self.contacts.borrow_mut().remove(id);
            Ok(())
        }
        fn list_contacts(&self, f: &ContactFilter) -> Result<Vec<Value>, StoreError> {
            let after = f.after_id.clone().unwrap_or_default();
            Ok(self
                .contacts
                .borrow()
                .range::<String, _>((
                    std::ops::Bound::Excluded(&after),
                    std::ops::Bound::Unbounded,
                ))
                .map(|(_, c)| c)
                .filter(|c| f.phone.as_ref().is_none_or(|p| *p == c.phone))
                .take(f.limit as usize)
                .map(ContactRecord::summary)
                .collect())
        }
        fn put_campaign(&self, campaign_id: &str) -> Result<(), StoreError> {
            self.campaigns.borrow_mut().insert(campaign_id.to_string());
            Ok(())
        }
        fn list_campaigns(
            &self,
            after: Option<&str>,
            limit: u32,
        ) -> Result<Vec<String>, StoreError> {
            let after = after.unwrap_or("");
            Ok(self
                .campaigns
                .borrow()
                .iter()
                .filter(|id| id.as_str() > after)
                .take(limit as usize)
                .cloned()
                .collect())
        }
    }
}

// ---- what the dispatch queues report ----

/// A change the region's queue made, numbered per region so a batch sent
/// again (the answer was lost) is applied once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub seq: u64,
    pub item: ReportItem,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReportItem {
    Call { update: CallUpdate },
    Transcript { update: TranscriptUpdate },
    Message { update: MessageUpdate },
}

impl ReportItem {
    /// One turn of a dispatch queue's reports in the order both queue ports
    /// (the Durable Object and the in-memory one) number them: transcript
    /// lines first, then the call changes.
    pub fn in_order(
        updates: Vec<CallUpdate>,
        turns: Vec<TranscriptUpdate>,
        messages: Vec<MessageUpdate>,
    ) -> impl Iterator<Item = ReportItem> {
        turns
            .into_iter()
            .map(|update| ReportItem::Transcript { update })
            .chain(
                updates
                    .into_iter()
                    .map(|update| ReportItem::Call { update }),
            )
            .chain(
                messages
                    .into_iter()
                    .map(|update| ReportItem::Message { update }),
            )
    }

    pub fn tenant_id(&self) -> &str {
        match self {
            ReportItem::Call { update } => &update.tenant_id,
            ReportItem::Transcript { update } => &update.tenant_id,
            ReportItem::Message { update } => &update.tenant_id,
        }
    }
}

fn region_seq_key(region: &str) -> String {
    format!("seq:{region}")
}

fn summary_key(call_id: &str) -> String {
    format!("summary:{call_id}")
}

/// The engine's post-call analysis of the call, when it gave one.
fn engine_analysis_key(call_id: &str) -> String {
    format!("analysis:{call_id}")
}

fn recording_key(call_id: &str) -> String {
    format!("recording:{call_id}")
}

/// Which sidecar held an attempt: written when the attempt starts dialling,
/// read when that attempt's recording is uploaded (only its holder may).
fn holder_key(call_id: &str, attempt: u32) -> String {
    format!("holder:{call_id}:{attempt}")
}

/// A call and the sidecar that held one of its attempts (None: not recorded).
pub type CallAndHolder = (CallRecord, Option<String>);

/// The sidecar that held `attempt` of the call, if known (attempts dialled
/// before holders were recorded are not).
pub fn attempt_holder(
    rows: &impl CallRows,
    call_id: &str,
    attempt: u32,
) -> Result<Option<String>, StoreError> {
    rows.value(&holder_key(call_id, attempt))
}

// ---- the operations (pure: rows in, rows out) ----

/// Queues `event_type` about `record` in the outbox (same step as the change).
fn push_call_event(
    rows: &impl CallRows,
    event_type: WebhookEvent,
    record: &CallRecord,
    now_ms: u64,
) -> Result<(), StoreError> {
    let event_id = crate::ids::random_id("evt");
    let payload =
        crate::webhooks::events::call_event_payload(event_type, &event_id, record, now_ms);
    rows.push_event(&PendingEvent {
        event_id,
        event_type,
        call_id: record.id.clone(),
        payload,
        created_ms: now_ms,
    })
}

fn push_event_with(
    rows: &impl CallRows,
    event_type: WebhookEvent,
    call_id: &str,
    data: Value,
    now_ms: u64,
) -> Result<(), StoreError> {
    let event_id = crate::ids::random_id("evt");
    let payload = crate::webhooks::events::event_payload(event_type, &event_id, now_ms, data);
    rows.push_event(&PendingEvent {
        event_id,
        event_type,
        call_id: call_id.to_string(),
        payload,
        created_ms: now_ms,
    })
}

/// The call's (summary, outcome), as last reported.
fn summary(
    rows: &impl CallRows,
    call_id: &str,
) -> Result<(Option<String>, Option<String>), StoreError> {
    match rows.value(&summary_key(call_id))? {
        Some(text) => from_text("summary", &text),
        None => Ok((None, None)),
    }
}

pub fn transcript(rows: &impl CallRows, call_id: &str) -> Result<Transcript, StoreError> {
    let (summary, outcome) = summary(rows, call_id)?;
    Ok(Transcript {
        turns: rows.turns(call_id)?,
        summary,
        outcome,
    })
}

/// The post-call analysis of a call that has just ended: for an answered
/// call whose agent asked for one (`analysis_plan`), the engine's when it
/// gave one (reported before the end), else read from its transcript,
/// summary and outcome by `voxline_shared::analysis`'s rules.
fn analyse(
    rows: &impl CallRows,
    record: &CallRecord,
    t: &Transcript,
) -> Result<Option<CallAnalysis>, StoreError> {
    let Some(plan) = record.analysis_plan.as_ref() else {
        return Ok(None);
    };
    if let Some(text) = rows.value(&engine_analysis_key(&record.id))? {
        return Ok(Some(from_text("analysis", &text)?));
    }
    let lines: Vec<Line<'_>> = t
        .turns
        .iter()
        .map(|turn| Line {
            callee: turn.role == crate::transcript::Role::Callee,
            text: &turn.text,
        })
        .collect();
    Ok(Some(analyse_locally(
        plan,
        &lines,
        t.summary.as_deref(),
        t.outcome.as_deref(),
    )))
}

/// Whether this change ended an answered call: its transcript is then
/// complete (the queue reports the turns first) and is saved and analysed.
fn ended_answered(before: CallStatus, record: &CallRecord) -> bool {
    record.status.is_terminal() && !before.is_terminal() && record.answered_at.is_some()
}

/// The events a stored change causes: the call event, and `transcript.saved`
/// once an answered call has ended (`ended`: its transcript, when the caller
/// has read it already).
fn events_for_change(
    rows: &impl CallRows,
    before: CallStatus,
    record: &CallRecord,
    ended: Option<&Transcript>,
    now_ms: u64,
) -> Result<(), StoreError> {
    if let Some(event) = crate::webhooks::events::event_for_change(before, record) {
        push_call_event(rows, event, record, now_ms)?;
    }
    if ended_answered(before, record) {
        let read;
        let t = match ended {
            Some(t) => t,
            None => {
                read = transcript(rows, &record.id)?;
                &read
            }
        };
        // A person's call: its transcript comes from its recording after
        // the end (`post_call_transcript` sends `transcript.saved` then).
        if !awaits_post_call_transcript(rows, record, t)? {
            push_transcript_saved(rows, record, t, now_ms)?;
        }
    }
    Ok(())
}

/// Queues `transcript.saved` (and so Voice360's `TRANSCRIPTION_FINISHED`)
/// with the whole transcript.
fn push_transcript_saved(
    rows: &impl CallRows,
    record: &CallRecord,
    t: &Transcript,
    now_ms: u64,
) -> Result<(), StoreError> {
    let mut data = crate::transcript::to_json(&record.id, t);
    data["call_status"] = json!(record.status);
    data["analysis"] = json!(record.analysis);
    data["url"] = json!(format!("/v1/calls/{}/transcript", record.id));
    push_event_with(
        rows,
        WebhookEvent::TranscriptSaved,
        &record.id,
        data,
        now_ms,
    )
}

/// Marks a call whose post-call transcript arrived (the attempt's number):
/// later ones change nothing.
fn post_call_transcript_key(call_id: &str) -> String {
    format!("posttx:{call_id}")
}

/// Whether a call's transcript is still to come from its sidecar, made from
/// its recording after the end (issue 16): a recorded call that no agent
/// answered (a person's, a queue's; `agent_id` empty), with no turns of its
/// own, whose post-call transcript has not arrived yet.
fn awaits_post_call_transcript(
    rows: &impl CallRows,
    record: &CallRecord,
    t: &Transcript,
) -> Result<bool, StoreError> {
    Ok(record.agent_id.is_empty()
        && record.record
        && t.turns.is_empty()
        && rows.value(&post_call_transcript_key(&record.id))?.is_none())
}

/// Stores the transcript a sidecar made from a call's recording after the
/// call (`POST /v1/sidecar/transcripts`, issue 16): only for a call with no
/// transcript of its own, and once per call (a repeat, or another attempt's,
/// changes nothing: `Ok(false)`). When the call has ended answered, its
/// analysis is made and `transcript.saved` sent now (its end sent none);
/// when its end is still to be applied (the end comes through the region's
/// queue, this straight here), the end sends it with these turns.
pub fn post_call_transcript(
    rows: &impl CallRows,
    call_id: &str,
    attempt: u32,
    turns: &[Turn],
    now_ms: u64,
) -> Result<bool, StoreError> {
    let Some(mut record) = rows.call(call_id)? else {
        return Ok(false);
    };
    let key = post_call_transcript_key(call_id);
    if rows.value(&key)?.is_some() {
        return Ok(false);
    }
    let before = transcript(rows, call_id)?;
    if !before.turns.is_empty() {
        return Ok(false);
    }
    for turn in turns {
        let turn = Turn {
            text: crate::transcript::bound_turn_text(&turn.text),
            ..turn.clone()
        };
        rows.push_turn(call_id, &turn)?;
    }
    rows.put_value(&key, &attempt.to_string())?;
    if record.status.is_terminal() && record.answered_at.is_some() {
        let t = transcript(rows, call_id)?;
        let analysis = analyse(rows, &record, &t)?;
        if analysis.is_some() {
            record.analysis = analysis;
            rows.put_call(&record)?;
        }
        push_transcript_saved(rows, &record, &t, now_ms)?;
    }
    Ok(true)
}

/// Applies one region's numbered reports for this tenant, skipping those at
/// or below the last number applied. Illegal transitions are logged and
/// dropped (the record stays as it was); they still count as applied.
pub fn apply_reports(
    rows: &impl CallRows,
    region: &str,
    reports: &[Report],
    now_ms: u64,
    log: &mut dyn FnMut(String),
) -> Result<u64, StoreError> {
    let key = region_seq_key(region);
    let mut last: u64 = rows.value(&key)?.and_then(|v| v.parse().ok()).unwrap_or(0);
    for report in reports {
        if report.seq <= last {
            continue;
        }
        match &report.item {
            ReportItem::Call { update } => match rows.call(&update.call_id)? {
                None => log(format!(
                    "call {} not found for {:?}",
                    update.call_id, update.change
                )),
                Some(mut record) => {
                    let before = record.status;
                    match state::apply(&mut record, update) {
                        Ok(()) => {
                            if let CallChange::Dialing {
                                sidecar_id,
                                attempt,
                            } = &update.change
                            {
                                rows.put_value(&holder_key(&record.id, *attempt), sidecar_id)?;
                            }
                            // An answered call's transcript, read once for
                            // its analysis and its `transcript.saved`.
                            let ended = if ended_answered(before, &record) {
                                Some(transcript(rows, &record.id)?)
                            } else {
                                None
                            };
                            if let Some(t) = &ended {
                                record.analysis = analyse(rows, &record, t)?;
                            }
                            rows.put_call(&record)?;
                            events_for_change(rows, before, &record, ended.as_ref(), now_ms)?;
                        }
                        Err(e) => log(format!("call {}: {e}; update dropped", update.call_id)),
                    }
                }
            },
            ReportItem::Transcript { update } => match &update.change {
                Change::Turn(turn) => rows.push_turn(&update.call_id, turn)?,
                Change::Summary {
                    summary: new_summary,
                    outcome: new_outcome,
                } => {
                    // Only the summary row: a call's turns are not read for it.
                    let (old_summary, old_outcome) = summary(rows, &update.call_id)?;
                    let merged = (
                        new_summary.clone().or(old_summary),
                        new_outcome.clone().or(old_outcome),
                    );
                    rows.put_value(&summary_key(&update.call_id), &to_text(&merged)?)?;
                }
                Change::Analysis(analysis) => rows.put_value(
                    &engine_analysis_key(&update.call_id),
                    &to_text(analysis.as_ref())?,
                )?,
                Change::AnsweredBy {
                    answered_by,
                    decision_ms,
                } => match rows.call(&update.call_id)? {
                    // The verdict of the attempt that was answered: a
                    // retry's (if any) replaces it.
                    Some(mut record) => {
                        record.answered_by = Some(*answered_by);
                        record.amd_decision_ms = Some(*decision_ms);
                        rows.put_call(&record)?;
                    }
                    None => log(format!("call {} not found for answered_by", update.call_id)),
                },
                Change::Transferred {
                    destination,
                    method,
                    at_offset_ms,
                    extension,
                    mode,
                    transfer_id,
                } => match rows.call(&update.call_id)? {
                    Some(mut record) => {
                        // The API's transfer it completes, if it is the one on the record.
                        if let Some(t) = record
                            .transfer_request
                            .as_mut()
                            .filter(|t| transfer_id.as_deref() == Some(t.id.as_str()))
                        {
                            t.status = crate::model::TransferStatus::Completed;
                            t.method = Some(method.clone());
                            t.ended_at = Some(rfc3339_ms(now_ms));
                            record.updated_at = rfc3339_ms(now_ms);
                            rows.put_call(&record)?;
                        }
                        let event_id = crate::ids::random_id("evt");
                        let mode = mode.unwrap_or_default();
                        let payload = crate::webhooks::events::call_transferred_payload(
                            &event_id,
                            &record,
                            now_ms,
                            json!({"destination": destination, "extension": extension,
                                "method": method, "mode": mode.as_str(),
                                "transfer_id": transfer_id, "at_offset_ms": at_offset_ms}),
                        );
                        rows.push_event(&PendingEvent {
                            event_id,
                            event_type: WebhookEvent::CallTransferred,
                            call_id: record.id.clone(),
                            payload,
                            created_ms: now_ms,
                        })?;
                    }
                    None => log(format!("call {} not found for transferred", update.call_id)),
                },
                Change::Leg {
                    step,
                    user_pk,
                    destination,
                    sip_code,
                    talk_ms,
                } => match rows.call(&update.call_id)? {
                    Some(mut record) => {
                        // The person who took an inbound call: theirs from now.
                        if let (LegStep::Answered, Some(pk), CallDirection::Inbound) =
                            (step, user_pk, record.direction)
                        {
                            record.answered_user = Some(*pk);
                            rows.put_call(&record)?;
                        }
                        let leg = crate::webhooks::events::leg_json(
                            *step,
                            *user_pk,
                            destination.as_deref(),
                            *sip_code,
                            *talk_ms,
                        );
                        push_step_event(rows, WebhookEvent::CallLeg, &record, "leg", leg, now_ms)?;
                    }
                    None => log(format!("call {} not found for leg", update.call_id)),
                },
                Change::Queue {
                    step,
                    queue_pk,
                    position,
                    wait_ms,
                } => match rows.call(&update.call_id)? {
                    Some(mut record) => {
                        // Leaving the queue: it no longer waits there.
                        let leaves = matches!(
                            step,
                            QueueStep::Connected | QueueStep::TimedOut | QueueStep::Abandoned
                        );
                        if let Some(q) = record.queue.as_mut().filter(|q| leaves && !q.left) {
                            q.left = true;
                            rows.put_call(&record)?;
                        }
                        let name = record
                            .queue
                            .as_ref()
                            .filter(|q| q.pk == *queue_pk)
                            .map(|q| q.name.as_str());
                        let queue = crate::webhooks::events::queue_json(
                            *step, *queue_pk, name, *position, *wait_ms,
                        );
                        push_step_event(
                            rows,
                            WebhookEvent::CallQueue,
                            &record,
                            "queue",
                            queue,
                            now_ms,
                        )?;
                    }
                    None => log(format!("call {} not found for queue", update.call_id)),
                },
                Change::TransferFailed {
                    error,
                    sip_code,
                    transfer_id,
                } => match rows.call(&update.call_id)? {
                    Some(mut record) => {
                        if let Some(t) = record.transfer_request.as_mut().filter(|t| {
                            t.id == *transfer_id
                                && t.status == crate::model::TransferStatus::Requested
                        }) {
                            t.status = crate::model::TransferStatus::Failed;
                            t.error = Some(error.clone());
                            t.sip_code = *sip_code;
                            t.ended_at = Some(rfc3339_ms(now_ms));
                            // A queue never entered: the call waits in none.
                            if let Some(pk) = t.queue {
                                if record.queue.as_ref().is_some_and(|q| q.pk == pk) {
                                    record.queue = None;
                                }
                            }
                            record.updated_at = rfc3339_ms(now_ms);
                            rows.put_call(&record)?;
                        }
                    }
                    None => log(format!(
                        "call {} not found for transfer_failed",
                        update.call_id
                    )),
                },
            },
            ReportItem::Message { update } => apply_message_update(rows, update, now_ms, log)?,
        }
        last = report.seq;
    }
    rows.put_value(&key, &last.to_string())?;
    Ok(last)
}

/// Puts a step event of a call (`call.leg`, `call.queue`) in the outbox.
fn push_step_event(
    rows: &impl CallRows,
    event_type: WebhookEvent,
    record: &CallRecord,
    key: &str,
    step: Value,
    now_ms: u64,
) -> Result<(), StoreError> {
    let event_id = crate::ids::random_id("evt");
    let payload = crate::webhooks::events::call_step_payload(
        event_type, &event_id, record, now_ms, key, step,
    );
    rows.push_event(&PendingEvent {
        event_id,
        event_type,
        call_id: record.id.clone(),
        payload,
        created_ms: now_ms,
    })
}

/// A new call as the API built it: the record, its queue entry, and the
/// `Idempotency-Key` it came with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewCall {
    pub record: CallRecord,
    pub queued: QueuedCall,
    #[serde(default)]
    pub idempotency: Option<IdemRequest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Created {
    Created {
        record: CallRecord,
    },
    /// This `Idempotency-Key` created this call before (same request).
    Existing {
        record: CallRecord,
    },
    /// This `Idempotency-Key` created a call from a different request.
    KeyReused,
    /// Refused by the queue: another call of the agent to the number is live.
    Duplicate {
        call_id: String,
    },
    /// Refused by the queue: the tenant's cap is reached.
    ConcurrencyLimit {
        limit: u32,
        active: u32,
    },
    /// The queue did not answer: the call was stored as failed.
    DispatchUnavailable {
        record: CallRecord,
    },
}

/// What a live idempotency claim says about a create request.
enum Earlier {
    /// No claim: create.
    None,
    /// The key was used with another request.
    KeyReused,
    /// The key created this id (a call or a message) before.
    Created(String),
}

fn earlier_claim(
    rows: &impl CallRows,
    idem: Option<&IdemRequest>,
    now_ms: u64,
) -> Result<Earlier, StoreError> {
    let Some(idem) = idem else {
        return Ok(Earlier::None);
    };
    Ok(
        match rows.idem(&idem.key)?.filter(|c| c.expires_ms > now_ms) {
            None => Earlier::None,
            Some(claim) if claim.fingerprint != idem.fingerprint => Earlier::KeyReused,
            Some(claim) => Earlier::Created(claim.call_id),
        },
    )
}

/// Claims the idempotency key (if any) for the id just created.
fn claim_key(
    rows: &impl CallRows,
    idem: Option<&IdemRequest>,
    id: &str,
    now_ms: u64,
) -> Result<(), StoreError> {
    if let Some(idem) = idem {
        rows.put_idem(
            &idem.key,
            &IdemClaim {
                fingerprint: idem.fingerprint.clone(),
                call_id: id.to_string(),
                expires_ms: now_ms + IDEMPOTENCY_TTL_MS,
            },
        )?;
    }
    Ok(())
}

/// Creates a call: its record first (so every report from the queue finds
/// it) together with the idempotency claim, then its queue entry. A call the
/// queue refuses never existed for the client and is deleted again.
pub async fn create(
    rows: &impl CallRows,
    queues: &impl DispatchQueues,
    new: NewCall,
    now_ms: u64,
) -> Result<Created, StoreError> {
    match earlier_claim(rows, new.idempotency.as_ref(), now_ms)? {
        Earlier::KeyReused => return Ok(Created::KeyReused),
        Earlier::Created(id) => {
            if let Some(record) = rows.call(&id)? {
                return Ok(Created::Existing { record });
            }
        }
        Earlier::None => {}
    }
    let record = new.record;
    rows.put_call(&record)?;
    claim_key(rows, new.idempotency.as_ref(), &record.id, now_ms)?;
    match queues.enqueue(&record.region, &new.queued).await {
        Ok(EnqueueVerdict::Accepted | EnqueueVerdict::AlreadyKnown) => {
            // Reports about it may have arrived while the queue answered.
            let current = rows.call(&record.id)?.unwrap_or(record);
            let event = match &new.queued.held_by {
                // An inbound call is created ringing, held by the sidecar
                // that rings its caller: the holder its recording needs.
                Some(sidecar_id) => {
                    rows.put_value(&holder_key(&current.id, 1), sidecar_id)?;
                    WebhookEvent::CallRinging
                }
                None => WebhookEvent::CallQueued,
            };
            push_call_event(rows, event, &current, now_ms)?;
            Ok(Created::Created { record: current })
        }
        Ok(EnqueueVerdict::Duplicate { call_id }) => {
            forget(rows, &record.id, new.idempotency.as_ref())?;
            Ok(Created::Duplicate { call_id })
        }
        Ok(EnqueueVerdict::ConcurrencyLimit { limit, active }) => {
            forget(rows, &record.id, new.idempotency.as_ref())?;
            Ok(Created::ConcurrencyLimit { limit, active })
        }
        Err(_) => {
            let mut failed = record;
            failed.status = CallStatus::Failed;
            failed.ended_reason = Some(EndedReason::DispatchUnavailable);
            failed.ended_at = Some(failed.updated_at.clone());
            rows.put_call(&failed)?;
            push_call_event(rows, WebhookEvent::CallFailed, &failed, now_ms)?;
            Ok(Created::DispatchUnavailable { record: failed })
        }
    }
}

/// A refused call never existed for the client: its record and claim go.
fn forget(
    rows: &impl CallRows,
    call_id: &str,
    idem: Option<&IdemRequest>,
) -> Result<(), StoreError> {
    rows.delete_call(call_id)?;
    match idem {
        Some(idem) => rows.delete_idem(&idem.key),
        None => Ok(()),
    }
}

/// Hangup, idempotent: an ended call is returned unchanged (200); one the
/// queue had not handed to a sidecar yet is cancelled (200); a live one is
/// marked and its sidecar told (202).
pub async fn hangup(
    rows: &impl CallRows,
    queues: &impl DispatchQueues,
    call_id: &str,
    now_ms: u64,
) -> Result<Option<(u16, CallRecord)>, StoreError> {
    let Some(record) = rows.call(call_id)? else {
        return Ok(None);
    };
    if record.status.is_terminal() {
        return Ok(Some((200, record)));
    }
    let outcome = queues.cancel(&record.region, call_id).await?;
    // Reports may have changed it while the queue answered.
    let Some(mut record) = rows.call(call_id)? else {
        return Ok(None);
    };
    if record.status.is_terminal() {
        return Ok(Some((200, record)));
    }
    let now = rfc3339_ms(now_ms);
    record.hangup_requested_at.get_or_insert(now.clone());
    record.updated_at = now.clone();
    if outcome == CancelVerdict::Cancelled {
        let before = record.status;
        record.status = CallStatus::Cancelled;
        record.ended_reason = Some(EndedReason::HangupRequested);
        record.ended_at = Some(now);
        record.next_attempt_at = None;
        rows.put_call(&record)?;
        events_for_change(rows, before, &record, None, now_ms)?;
        return Ok(Some((200, record)));
    }
    // Signalled: the sidecar ends it and reports. Unknown: the queue has
    // already finished with it and its ending is on the way here.
    rows.put_call(&record)?;
    Ok(Some((202, record)))
}

/// A transfer the API asks for (`POST /v1/calls/{id}/transfer`, issue 16),
/// its target resolved (an extension to the person's `pk`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferAsk {
    pub target: voxline_shared::sidecar_link::TransferTarget,
    #[serde(default)]
    pub mode: voxline_shared::sidecar_link::TransferMode,
    #[serde(default)]
    pub message: Option<String>,
}

/// Why a call cannot be transferred now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferRefusal {
    /// The call has ended.
    Ended,
    /// Not answered yet (queued, scheduled, dialling, ringing).
    NotAnswered,
    /// A person's call (no agent holds the callee).
    NotAnAgentsCall,
    /// Another transfer of it is under way, or one has completed.
    InProgress,
    /// No sidecar that can be reached holds it now.
    NotHeld,
}

/// Starts a transfer: checks the call can be transferred, hands the
/// command to the sidecar holding it and records the transfer
/// (`requested`). `None`: no such call.
pub async fn transfer(
    rows: &impl CallRows,
    queues: &impl DispatchQueues,
    call_id: &str,
    ask: TransferAsk,
    now_ms: u64,
) -> Result<Option<Result<CallRecord, TransferRefusal>>, StoreError> {
    let Some(record) = rows.call(call_id)? else {
        return Ok(None);
    };
    let refusal = |r: &CallRecord| {
        if r.status.is_terminal() || r.hangup_requested_at.is_some() {
            Some(TransferRefusal::Ended)
        } else if r.rings_user.is_some() || r.agent_id.is_empty() {
            Some(TransferRefusal::NotAnAgentsCall)
        } else if r.status != CallStatus::InProgress {
            Some(TransferRefusal::NotAnswered)
        } else if r.transfer_request.as_ref().is_some_and(|t| {
            t.is_pending(now_ms) || t.status == crate::model::TransferStatus::Completed
        }) {
            Some(TransferRefusal::InProgress)
        } else {
            None
        }
    };
    if let Some(r) = refusal(&record) {
        return Ok(Some(Err(r)));
    }
    let transfer_id = crate::ids::random_id("xfr");
    let command = voxline_shared::sidecar_link::Command::Transfer {
        call_id: call_id.to_string(),
        transfer_id: transfer_id.clone(),
        target: ask.target.clone(),
        mode: ask.mode,
        message: ask.message,
    };
    let verdict = queues.transfer(&record.region, &command).await?;
    // Reports may have changed it while the queue answered.
    let Some(mut record) = rows.call(call_id)? else {
        return Ok(None);
    };
    if let Some(r) = refusal(&record) {
        return Ok(Some(Err(r)));
    }
    if verdict == crate::dispatch::queue::TransferVerdict::NotHeld {
        return Ok(Some(Err(TransferRefusal::NotHeld)));
    }
    let now = rfc3339_ms(now_ms);
    let (destination, extension, queue) = match ask.target {
        voxline_shared::sidecar_link::TransferTarget::Number { destination } => {
            (Some(destination), None, None)
        }
        voxline_shared::sidecar_link::TransferTarget::User { extension, .. } => {
            (None, Some(extension), None)
        }
        // The edge never asks for a kind it does not know.
        voxline_shared::sidecar_link::TransferTarget::Unknown => (None, None, None),
        voxline_shared::sidecar_link::TransferTarget::Queue { plan } => {
            // The call waits in the queue from now (its availability, the
            // Voice360 `QUEUE_*` events), as an inbound queue call does;
            // a failed transfer takes it out again.
            record.queue = Some(crate::model::CallQueue {
                pk: plan.queue_pk,
                name: plan.name.clone(),
                left: false,
            });
            (None, None, Some(plan.queue_pk))
        }
    };
    record.transfer_request = Some(crate::model::CallTransfer {
        id: transfer_id,
        status: crate::model::TransferStatus::Requested,
        destination,
        extension,
        queue,
        mode: ask.mode,
        requested_at: now.clone(),
        ended_at: None,
        method: None,
        error: None,
        sip_code: None,
    });
    record.updated_at = now;
    rows.put_call(&record)?;
    Ok(Some(Ok(record)))
}

/// Stores an uploaded recording's metadata and queues `recording.saved`.
/// Idempotent: the same upload again, or an older attempt's, changes nothing.
pub fn recording_saved(
    rows: &impl CallRows,
    call_id: &str,
    info: &RecordingInfo,
    now_ms: u64,
) -> Result<bool, StoreError> {
    if let Some(before) = recording(rows, call_id)? {
        if before.attempt > info.attempt
            || (before.attempt == info.attempt && before.sha256 == info.sha256)
        {
            return Ok(false);
        }
    }
    rows.put_value(&recording_key(call_id), &to_text(info)?)?;
    push_event_with(
        rows,
        WebhookEvent::RecordingSaved,
        call_id,
        info.to_public(call_id),
        now_ms,
    )?;
    Ok(true)
}

pub fn recording(rows: &impl CallRows, call_id: &str) -> Result<Option<RecordingInfo>, StoreError> {
    rows.value(&recording_key(call_id))?
        .map(|t| from_text("recording", &t))
        .transpose()
}

// ---- text messages (types: `calls::messages`) ----

fn imdn_key(imdn_message_id: &str) -> String {
    format!("imdn:{imdn_message_id}")
}

fn inbound_key(from: &str, sip_call_id: &str) -> String {
    format!("inbound:{from}\n{sip_call_id}")
}

/// Queues `event` about `record` in the outbox (same step as the change).
fn push_message_event(
    rows: &impl CallRows,
    event: MessageEvent,
    record: &MessageRecord,
    now_ms: u64,
) -> Result<(), StoreError> {
    let event_id = crate::ids::random_id("evt");
    rows.push_event(&PendingEvent {
        payload: message_event_payload(event, &event_id, record, now_ms),
        event_id,
        event_type: WebhookEvent::from(event),
        call_id: record.id.clone(),
        created_ms: now_ms,
    })
}

/// Creates an outbound message: its row (with the idempotency claim) first,
/// so every report from the queue finds it, then its queue entry.
pub async fn create_message(
    rows: &impl CallRows,
    queues: &impl DispatchQueues,
    new: NewMessage,
    now_ms: u64,
) -> Result<MessageCreated, StoreError> {
    match earlier_claim(rows, new.idempotency.as_ref(), now_ms)? {
        Earlier::KeyReused => return Ok(MessageCreated::KeyReused),
        Earlier::Created(id) => {
            if let Some(record) = rows.message(&id)? {
                return Ok(MessageCreated::Existing { record });
            }
        }
        Earlier::None => {}
    }
    let record = new.record;
    rows.put_message(&record)?;
    claim_key(rows, new.idempotency.as_ref(), &record.id, now_ms)?;
    match queues.enqueue_message(&record.region, &new.queued).await {
        Ok(EnqueueMessageVerdict::Accepted | EnqueueMessageVerdict::AlreadyKnown) => {
            // Reports about it may have arrived while the queue answered.
            let current = rows.message(&record.id)?.unwrap_or(record);
            Ok(MessageCreated::Created { record: current })
        }
        Ok(EnqueueMessageVerdict::Full) => {
            rows.delete_message(&record.id)?;
            if let Some(idem) = &new.idempotency {
                rows.delete_idem(&idem.key)?;
            }
            Ok(MessageCreated::QueueFull)
        }
        Err(_) => {
            let mut failed = record;
            let change = MessageChange::Failed {
                reason: reasons::DISPATCH_UNAVAILABLE.into(),
                sip_code: None,
                imdn_message_id: None,
            };
            if let Ok(Some(event)) = crate::messages::apply(&mut failed, &change, now_ms) {
                rows.put_message(&failed)?;
                push_message_event(rows, event, &failed, now_ms)?;
            }
            Ok(MessageCreated::DispatchUnavailable { record: failed })
        }
    }
}

/// Applies one change from the region's queue (or a delivery report): the
/// first outcome wins; what the status does not allow is logged and dropped.
pub fn apply_message_update(
    rows: &impl CallRows,
    update: &MessageUpdate,
    now_ms: u64,
    log: &mut dyn FnMut(String),
) -> Result<(), StoreError> {
    let Some(mut record) = rows.message(&update.message_id)? else {
        log(format!(
            "message {} not found for {:?}",
            update.message_id, update.change
        ));
        return Ok(());
    };
    apply_message_to(rows, &mut record, update, now_ms, log)
}

fn apply_message_to(
    rows: &impl CallRows,
    record: &mut MessageRecord,
    update: &MessageUpdate,
    now_ms: u64,
    log: &mut dyn FnMut(String),
) -> Result<(), StoreError> {
    match crate::messages::apply(record, &update.change, update.at_ms) {
        Ok(event) => {
            rows.put_message(record)?;
            if let Some(imdn) = &record.imdn_message_id {
                rows.put_value(&imdn_key(imdn), &record.id)?;
            }
            if let Some(event) = event {
                push_message_event(rows, event, record, now_ms)?;
            }
        }
        Err(u) => log(format!(
            "message {}: {:?} on a {} message dropped (first outcome wins)",
            update.message_id,
            update.change,
            u.from.as_str()
        )),
    }
    Ok(())
}

/// A MESSAGE the trunk sent to one of this tenant's numbers: a text is
/// stored once per (sender, SIP Call-ID); a delivery report updates the
/// outbound message whose IMDN `Message-ID` it names.
pub fn inbound_message(
    rows: &impl CallRows,
    m: &InboundMessage,
    now_ms: u64,
) -> Result<InboundVerdict, StoreError> {
    match &m.content {
        InboundContent::Text { body } => {
            let key = inbound_key(&m.from, &m.sip_call_id);
            if let Some(message_id) = rows.value(&key)? {
                return Ok(InboundVerdict::Duplicate { message_id });
            }
            let now = rfc3339_ms(now_ms);
            let record = MessageRecord {
                id: crate::ids::message_id(now_ms),
                direction: MessageDirection::Inbound,
                status: MessageStatus::Received,
                from: m.from.clone(),
                to: m.to.clone(),
                body: body.clone(),
                metadata: None,
                region: m.region.clone(),
                sidecar_id: Some(m.sidecar_id.clone()),
                sip_code: None,
                failure_reason: None,
                created_at: now.clone(),
                updated_at: now,
                sending_at: None,
                sent_at: None,
                failed_at: None,
                delivered_at: None,
                // The sidecar's clock, never ahead of ours.
                received_at: Some(rfc3339_ms(m.received_ms.min(now_ms))),
                imdn_message_id: None,
                sip_call_id: Some(m.sip_call_id.clone()),
            };
            rows.put_message(&record)?;
            rows.put_value(&key, &record.id)?;
            push_message_event(rows, MessageEvent::Received, &record, now_ms)?;
            Ok(InboundVerdict::Stored {
                message_id: record.id,
            })
        }
        InboundContent::DeliveryReport {
            imdn_message_id,
            status,
        } => {
            let found = match rows.value(&imdn_key(imdn_message_id))? {
                Some(id) => rows.message(&id)?,
                None => None,
            };
            let Some(mut record) = found else {
                return Ok(InboundVerdict::NoSuchMessage);
            };
            if let Some(change) = crate::messages::delivery_change(status) {
                // The sidecar's clock, never ahead of ours.
                let update = MessageUpdate {
                    message_id: record.id.clone(),
                    tenant_id: String::new(),
                    at_ms: m.received_ms.min(now_ms),
                    change,
                };
                apply_message_to(rows, &mut record, &update, now_ms, &mut |_| {})?;
            }
            Ok(InboundVerdict::Reported {
                message_id: record.id,
            })
        }
        InboundContent::Unknown => Ok(InboundVerdict::Ignored),
    }
}

// ---- the port the API talks to ----

/// A call and, once one was saved, its recording's metadata.
pub type CallWithRecording = (CallRecord, Option<RecordingInfo>);

/// The tenant's call store as the request handling sees it (the `CallStore`
/// Durable Object in the Worker). Object-safe, like [`crate::traffic::Traffic`].
pub trait Calls {
    fn create<'a>(
        &'a self,
        tenant_id: &'a str,
        new: &'a NewCall,
    ) -> LocalFuture<'a, Result<Created, StoreError>>;
    fn get<'a>(
        &'a self,
        tenant_id: &'a str,
        call_id: &'a str,
    ) -> LocalFuture<'a, Result<Option<CallRecord>, StoreError>>;
    /// At most `f.limit` listing rows.
    fn list<'a>(
        &'a self,
        tenant_id: &'a str,
        f: &'a ListFilter,
    ) -> LocalFuture<'a, Result<Vec<Value>, StoreError>>;
    fn transcript<'a>(
        &'a self,
        tenant_id: &'a str,
        call_id: &'a str,
    ) -> LocalFuture<'a, Result<Option<(CallRecord, Transcript)>, StoreError>>;
    fn hangup<'a>(
        &'a self,
        tenant_id: &'a str,
        call_id: &'a str,
    ) -> LocalFuture<'a, Result<Option<(u16, CallRecord)>, StoreError>>;
    /// See [`transfer`].
    fn transfer<'a>(
        &'a self,
        tenant_id: &'a str,
        call_id: &'a str,
        ask: &'a TransferAsk,
    ) -> LocalFuture<'a, Result<Option<Result<CallRecord, TransferRefusal>>, StoreError>>;
    fn recording<'a>(
        &'a self,
        tenant_id: &'a str,
        call_id: &'a str,
    ) -> LocalFuture<'a, Result<Option<CallWithRecording>, StoreError>>;
    fn recording_saved<'a>(
        &'a self,
        tenant_id: &'a str,
        call_id: &'a str,
        info: &'a RecordingInfo,
    ) -> LocalFuture<'a, Result<bool, StoreError>>;
    /// The call and the sidecar that held `attempt` (None: not recorded).
    fn attempt_holder<'a>(
        &'a self,
        tenant_id: &'a str,
        call_id: &'a str,
        attempt: u32,
    ) -> LocalFuture<'a, Result<Option<CallAndHolder>, StoreError>>;
    /// [`post_call_transcript`]: whether the turns were stored.
    fn post_call_transcript<'a>(
        &'a self,
        tenant_id: &'a str,
        call_id: &'a str,
        attempt: u32,
        turns: &'a [Turn],
    ) -> LocalFuture<'a, Result<bool, StoreError>>;
    /// [`whitelist_add`]: whether `phone` was new to the tenant's whitelist.
    fn whitelist_add<'a>(
        &'a self,
        tenant_id: &'a str,
        phone: &'a str,
    ) -> LocalFuture<'a, Result<bool, StoreError>>;
    /// [`create_message`]: stores an outbound text message and queues it.
    fn create_message<'a>(
        &'a self,
        tenant_id: &'a str,
        new: &'a NewMessage,
    ) -> LocalFuture<'a, Result<MessageCreated, StoreError>>;
    fn get_message<'a>(
        &'a self,
        tenant_id: &'a str,
        message_id: &'a str,
    ) -> LocalFuture<'a, Result<Option<MessageRecord>, StoreError>>;
    /// At most `f.limit` listing rows.
    fn list_messages<'a>(
        &'a self,
        tenant_id: &'a str,
        f: &'a MessageFilter,
    ) -> LocalFuture<'a, Result<Vec<Value>, StoreError>>;
    /// [`inbound_message`]: a MESSAGE the trunk sent to one of the tenant's numbers.
    fn inbound_message<'a>(
        &'a self,
        tenant_id: &'a str,
        message: &'a InboundMessage,
    ) -> LocalFuture<'a, Result<InboundVerdict, StoreError>>;
    /// [`create_contact`].
    fn create_contact<'a>(
        &'a self,
        tenant_id: &'a str,
        record: &'a ContactRecord,
    ) -> LocalFuture<'a, Result<ContactCreated, StoreError>>;
    fn get_contact<'a>(
        &'a self,
        tenant_id: &'a str,
        contact_id: &'a str,
    ) -> LocalFuture<'a, Result<Option<ContactRecord>, StoreError>>;
    /// At most `f.limit` listing rows.
    fn list_contacts<'a>(
        &'a self,
        tenant_id: &'a str,
        f: &'a ContactFilter,
    ) -> LocalFuture<'a, Result<Vec<Value>, StoreError>>;
    /// [`update_contact`].
    fn update_contact<'a>(
        &'a self,
        tenant_id: &'a str,
        contact_id: &'a str,
        patch: &'a ContactPatch,
    ) -> LocalFuture<'a, Result<ContactUpdated, StoreError>>;
    /// [`delete_contact`]: the contact as it was.
    fn delete_contact<'a>(
        &'a self,
        tenant_id: &'a str,
        contact_id: &'a str,
    ) -> LocalFuture<'a, Result<Option<ContactRecord>, StoreError>>;
    /// Adds a campaign to the tenant's index of campaigns.
    fn index_campaign<'a>(
        &'a self,
        tenant_id: &'a str,
        campaign_id: &'a str,
    ) -> LocalFuture<'a, Result<(), StoreError>>;
    /// A page of the tenant's campaign ids, newest first.
    fn list_campaigns<'a>(
        &'a self,
        tenant_id: &'a str,
        after: Option<&'a str>,
        limit: u32,
    ) -> LocalFuture<'a, Result<Vec<String>, StoreError>>;
}

/// One request to a tenant's `CallStore` object, and its answer: the wire
/// form of [`Calls`] (and of the queue's reports), so a renamed field fails to compile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CallStoreRequest {
    Create {
        new: Box<NewCall>,
    },
    Get {
        call_id: String,
    },
    List {
        filter: ListFilter,
    },
    Transcript {
        call_id: String,
    },
    Hangup {
        call_id: String,
    },
    Transfer {
        call_id: String,
        ask: TransferAsk,
    },
    Recording {
        call_id: String,
    },
    RecordingSaved {
        call_id: String,
        info: RecordingInfo,
    },
    AttemptHolder {
        call_id: String,
        attempt: u32,
    },
    PostCallTranscript {
        call_id: String,
        attempt: u32,
        turns: Vec<Turn>,
    },
    /// Adds a number to the tenant's whitelist (CodeB's "whitelists the
    /// target number"): `added` is false when it was there already.
    WhitelistAdd {
        phone: String,
    },
    CreateMessage {
        new: Box<NewMessage>,
    },
    GetMessage {
        message_id: String,
    },
    ListMessages {
        filter: MessageFilter,
    },
    InboundMessage {
        message: Box<InboundMessage>,
    },
    CreateContact {
        record: Box<ContactRecord>,
    },
    GetContact {
        contact_id: String,
    },
    ListContacts {
        filter: ContactFilter,
    },
    UpdateContact {
        contact_id: String,
        patch: Box<ContactPatch>,
    },
    DeleteContact {
        contact_id: String,
    },
    IndexCampaign {
        campaign_id: String,
    },
    ListCampaigns {
        after: Option<String>,
        limit: u32,
    },
    /// From a region's queue: its numbered reports for this tenant.
    Reports {
        region: String,
        reports: Vec<Report>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum CallStoreAnswer {
    Created {
        created: Created,
    },
    Call {
        record: Option<CallRecord>,
    },
    List {
        rows: Vec<Value>,
    },
    Transcript {
        found: Option<(CallRecord, Transcript)>,
    },
    Hangup {
        result: Option<(u16, CallRecord)>,
    },
    Transfer {
        result: Option<Result<CallRecord, TransferRefusal>>,
    },
    Recording {
        found: Option<CallWithRecording>,
    },
    Saved {
        changed: bool,
    },
    AttemptHolder {
        found: Option<CallAndHolder>,
    },
    /// Reports applied up to this number.
    Applied {
        up_to: u64,
    },
    Whitelisted {
        added: bool,
    },
    MessageCreated {
        created: MessageCreated,
    },
    Message {
        record: Option<MessageRecord>,
    },
    Inbound {
        verdict: InboundVerdict,
    },
    ContactCreated {
        created: ContactCreated,
    },
    Contact {
        record: Option<ContactRecord>,
    },
    ContactUpdated {
        updated: ContactUpdated,
    },
    Campaigns {
        ids: Vec<String>,
    },
    Done,
}

/// How a request reaches a tenant's store: a Durable Object stub in the
/// Worker, a direct call in process. Every such transport is a [`Calls`].
pub trait CallStoreTransport {
    fn send<'a>(
        &'a self,
        tenant_id: &'a str,
        request: CallStoreRequest,
    ) -> LocalFuture<'a, Result<CallStoreAnswer, StoreError>>;
}

fn unexpected(a: CallStoreAnswer) -> StoreError {
    StoreError::Corrupt(format!("unexpected call store answer {a:?}"))
}

impl<T: CallStoreTransport> Calls for T {
    fn create<'a>(
        &'a self,
        tenant_id: &'a str,
        new: &'a NewCall,
    ) -> LocalFuture<'a, Result<Created, StoreError>> {
        Box::pin(async move {
            match self
                .send(
                    tenant_id,
                    CallStoreRequest::Create {
                        new: Box::new(new.clone()),
                    },
                )
                .await?
            {
                CallStoreAnswer::Created { created } => Ok(created),
                a => Err(unexpected(a)),
            }
        })
    }
    fn get<'a>(
        &'a self,
        tenant_id: &'a str,
        call_id: &'a str,
    ) -> LocalFuture<'a, Result<Option<CallRecord>, StoreError>> {
        Box::pin(async move {
            match self
                .send(
                    tenant_id,
                    CallStoreRequest::Get {
                        call_id: call_id.into(),
                    },
                )
                .await?
            {
                CallStoreAnswer::Call { record } => Ok(record),
                a => Err(unexpected(a)),
            }
        })
    }
    fn list<'a>(
        &'a self,
        tenant_id: &'a str,
        f: &'a ListFilter,
    ) -> LocalFuture<'a, Result<Vec<Value>, StoreError>> {
        Box::pin(async move {
            match self
                .send(tenant_id, CallStoreRequest::List { filter: f.clone() })
                .await?
            {
                CallStoreAnswer::List { rows } => Ok(rows),
                a => Err(unexpected(a)),
            }
        })
    }
    fn transcript<'a>(
        &'a self,
        tenant_id: &'a str,
        call_id: &'a str,
    ) -> LocalFuture<'a, Result<Option<(CallRecord, Transcript)>, StoreError>> {
        Box::pin(async move {
            match self
                .send(
                    tenant_id,
                    CallStoreRequest::Transcript {
                        call_id: call_id.into(),
                    },
                )
                .await?
            {
                CallStoreAnswer::Transcript { found } => Ok(found),
                a => Err(unexpected(a)),
            }
        })
    }
    fn hangup<'a>(
        &'a self,
        tenant_id: &'a str,
        call_id: &'a str,
    ) -> LocalFuture<'a, Result<Option<(u16, CallRecord)>, StoreError>> {
        Box::pin(async move {
            match self
                .send(
                    tenant_id,
                    CallStoreRequest::Hangup {
                        call_id: call_id.into(),
                    },
                )
                .await?
            {
                CallStoreAnswer::Hangup { result } => Ok(result),
                a => Err(unexpected(a)),
            }
        })
    }
    fn transfer<'a>(
        &'a self,
        tenant_id: &'a str,
        call_id: &'a str,
        ask: &'a TransferAsk,
    ) -> LocalFuture<'a, Result<Option<Result<CallRecord, TransferRefusal>>, StoreError>> {
        Box::pin(async move {
            match self
                .send(
                    tenant_id,
                    CallStoreRequest::Transfer {
                        call_id: call_id.into(),
                        ask: ask.clone(),
                    },
                )
                .await?
            {
                CallStoreAnswer::Transfer { result } => Ok(result),
                a => Err(unexpected(a)),
            }
        })
    }
    fn recording<'a>(
        &'a self,
        tenant_id: &'a str,
        call_id: &'a str,
    ) -> LocalFuture<'a, Result<Option<CallWithRecording>, StoreError>> {
        Box::pin(async move {
            match self
                .send(
                    tenant_id,
                    CallStoreRequest::Recording {
                        call_id: call_id.into(),
                    },
                )
                .await?
            {
                CallStoreAnswer::Recording { found } => Ok(found),
                a => Err(unexpected(a)),
            }
        })
    }
    fn recording_saved<'a>(
        &'a self,
        tenant_id: &'a str,
        call_id: &'a str,
        info: &'a RecordingInfo,
    ) -> LocalFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            match self
                .send(
                    tenant_id,
                    CallStoreRequest::RecordingSaved {
                        call_id: call_id.into(),
                        info: info.clone(),
                    },
                )
                .await?
            {
                CallStoreAnswer::Saved { changed } => Ok(changed),
                a => Err(unexpected(a)),
            }
        })
    }
    fn post_call_transcript<'a>(
        &'a self,
        tenant_id: &'a str,
        call_id: &'a str,
        attempt: u32,
        turns: &'a [Turn],
    ) -> LocalFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            match self
                .send(
                    tenant_id,
                    CallStoreRequest::PostCallTranscript {
                        call_id: call_id.into(),
                        attempt,
                        turns: turns.to_vec(),
                    },
                )
                .await?
            {
                CallStoreAnswer::Saved { changed } => Ok(changed),
                a => Err(unexpected(a)),
            }
        })
    }
    fn attempt_holder<'a>(
        &'a self,
        tenant_id: &'a str,
        call_id: &'a str,
        attempt: u32,
    ) -> LocalFuture<'a, Result<Option<CallAndHolder>, StoreError>> {
        Box::pin(async move {
            match self
                .send(
                    tenant_id,
                    CallStoreRequest::AttemptHolder {
                        call_id: call_id.into(),
                        attempt,
                    },
                )
                .await?
            {
                CallStoreAnswer::AttemptHolder { found } => Ok(found),
                a => Err(unexpected(a)),
            }
        })
    }
    fn whitelist_add<'a>(
        &'a self,
        tenant_id: &'a str,
        phone: &'a str,
    ) -> LocalFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            match self
                .send(
                    tenant_id,
                    CallStoreRequest::WhitelistAdd {
                        phone: phone.into(),
                    },
                )
                .await?
            {
                CallStoreAnswer::Whitelisted { added } => Ok(added),
                a => Err(unexpected(a)),
            }
        })
    }
    fn create_message<'a>(
        &'a self,
        tenant_id: &'a str,
        new: &'a NewMessage,
    ) -> LocalFuture<'a, Result<MessageCreated, StoreError>> {
        Box::pin(async move {
            let request = CallStoreRequest::CreateMessage {
                new: Box::new(new.clone()),
            };
            match self.send(tenant_id, request).await? {
                CallStoreAnswer::MessageCreated { created } => Ok(created),
                a => Err(unexpected(a)),
            }
        })
    }
    fn get_message<'a>(
        &'a self,
        tenant_id: &'a str,
        message_id: &'a str,
    ) -> LocalFuture<'a, Result<Option<MessageRecord>, StoreError>> {
        Box::pin(async move {
            let request = CallStoreRequest::GetMessage {
                message_id: message_id.into(),
            };
            match self.send(tenant_id, request).await? {
                CallStoreAnswer::Message { record } => Ok(record),
                a => Err(unexpected(a)),
            }
        })
    }
    fn list_messages<'a>(
        &'a self,
        tenant_id: &'a str,
        f: &'a MessageFilter,
    ) -> LocalFuture<'a, Result<Vec<Value>, StoreError>> {
        Box::pin(async move {
            let request = CallStoreRequest::ListMessages { filter: f.clone() };
            match self.send(tenant_id, request).await? {
                CallStoreAnswer::List { rows } => Ok(rows),
                a => Err(unexpected(a)),
            }
        })
    }
    fn inbound_message<'a>(
        &'a self,
        tenant_id: &'a str,
        message: &'a InboundMessage,
    ) -> LocalFuture<'a, Result<InboundVerdict, StoreError>> {
        Box::pin(async move {
            let request = CallStoreRequest::InboundMessage {
                message: Box::new(message.clone()),
            };
            match self.send(tenant_id, request).await? {
                CallStoreAnswer::Inbound { verdict } => Ok(verdict),
                a => Err(unexpected(a)),
            }
        })
    }
    fn create_contact<'a>(
        &'a self,
        tenant_id: &'a str,
        record: &'a ContactRecord,
    ) -> LocalFuture<'a, Result<ContactCreated, StoreError>> {
        Box::pin(async move {
            let request = CallStoreRequest::CreateContact {
                record: Box::new(record.clone()),
            };
            match self.send(tenant_id, request).await? {
                CallStoreAnswer::ContactCreated { created } => Ok(created),
                a => Err(unexpected(a)),
            }
        })
    }
    fn get_contact<'a>(
        &'a self,
        tenant_id: &'a str,
        contact_id: &'a str,
    ) -> LocalFuture<'a, Result<Option<ContactRecord>, StoreError>> {
        Box::pin(async move {
            let request = CallStoreRequest::GetContact {
                contact_id: contact_id.into(),
            };
            match self.send(tenant_id, request).await? {
                CallStoreAnswer::Contact { record } => Ok(record),
                a => Err(unexpected(a)),
            }
        })
    }
    fn list_contacts<'a>(
        &'a self,
        tenant_id: &'a str,
        f: &'a ContactFilter,
    ) -> LocalFuture<'a, Result<Vec<Value>, StoreError>> {
        Box::pin(async move {
            let request = CallStoreRequest::ListContacts { filter: f.clone() };
            match self.send(tenant_id, request).await? {
                CallStoreAnswer::List { rows } => Ok(rows),
                a => Err(unexpected(a)),
            }
        })
    }
    fn update_contact<'a>(
        &'a self,
        tenant_id: &'a str,
        contact_id: &'a str,
        patch: &'a ContactPatch,
    ) -> LocalFuture<'a, Result<ContactUpdated, StoreError>> {
        Box::pin(async move {
            let request = CallStoreRequest::UpdateContact {
                contact_id: contact_id.into(),
                patch: Box::new(patch.clone()),
            };
            match self.send(tenant_id, request).await? {
                CallStoreAnswer::ContactUpdated { updated } => Ok(updated),
                a => Err(unexpected(a)),
            }
        })
    }
    fn delete_contact<'a>(
        &'a self,
        tenant_id: &'a str,
        contact_id: &'a str,
    ) -> LocalFuture<'a, Result<Option<ContactRecord>, StoreError>> {
        Box::pin(async move {
            let request = CallStoreRequest::DeleteContact {
                contact_id: contact_id.into(),
            };
            match self.send(tenant_id, request).await? {
                CallStoreAnswer::Contact { record } => Ok(record),
                a => Err(unexpected(a)),
            }
        })
    }
    fn index_campaign<'a>(
        &'a self,
        tenant_id: &'a str,
        campaign_id: &'a str,
    ) -> LocalFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let request = CallStoreRequest::IndexCampaign {
                campaign_id: campaign_id.into(),
            };
            match self.send(tenant_id, request).await? {
                CallStoreAnswer::Done => Ok(()),
                a => Err(unexpected(a)),
            }
        })
    }
    fn list_campaigns<'a>(
        &'a self,
        tenant_id: &'a str,
        after: Option<&'a str>,
        limit: u32,
    ) -> LocalFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let request = CallStoreRequest::ListCampaigns {
                after: after.map(str::to_string),
                limit,
            };
            match self.send(tenant_id, request).await? {
                CallStoreAnswer::Campaigns { ids } => Ok(ids),
                a => Err(unexpected(a)),
            }
        })
    }
}

/// Runs one request against a tenant's rows: the whole of the Durable
/// Object's `fetch` but storage and the outbox drain.
pub async fn handle(
    rows: &impl CallRows,
    queues: &impl DispatchQueues,
    req: CallStoreRequest,
    now_ms: u64,
    log: &mut dyn FnMut(String),
) -> Result<CallStoreAnswer, StoreError> {
    Ok(match req {
        CallStoreRequest::Create { new } => CallStoreAnswer::Created {
            created: create(rows, queues, *new, now_ms).await?,
        },
        CallStoreRequest::Get { call_id } => CallStoreAnswer::Call {
            record: rows.call(&call_id)?,
        },
        CallStoreRequest::List { filter } => CallStoreAnswer::List {
            rows: rows.list_calls(&filter)?,
        },
        CallStoreRequest::Transcript { call_id } => {
            let found = match rows.call(&call_id)? {
                Some(record) => Some((record, transcript(rows, &call_id)?)),
                None => None,
            };
            CallStoreAnswer::Transcript { found }
        }
        CallStoreRequest::Hangup { call_id } => CallStoreAnswer::Hangup {
            result: hangup(rows, queues, &call_id, now_ms).await?,
        },
        CallStoreRequest::Transfer { call_id, ask } => CallStoreAnswer::Transfer {
            result: transfer(rows, queues, &call_id, ask, now_ms).await?,
        },
        CallStoreRequest::Recording { call_id } => {
            let found = match rows.call(&call_id)? {
                Some(record) => Some((record, recording(rows, &call_id)?)),
                None => None,
            };
            CallStoreAnswer::Recording { found }
        }
        CallStoreRequest::RecordingSaved { call_id, info } => CallStoreAnswer::Saved {
            changed: recording_saved(rows, &call_id, &info, now_ms)?,
        },
        CallStoreRequest::PostCallTranscript {
            call_id,
            attempt,
            turns,
        } => CallStoreAnswer::Saved {
            changed: post_call_transcript(rows, &call_id, attempt, &turns, now_ms)?,
        },
        CallStoreRequest::AttemptHolder { call_id, attempt } => {
            let found = match rows.call(&call_id)? {
                Some(record) => Some((record, attempt_holder(rows, &call_id, attempt)?)),
                None => None,
            };
            CallStoreAnswer::AttemptHolder { found }
        }
        CallStoreRequest::WhitelistAdd { phone } => CallStoreAnswer::Whitelisted {
            added: whitelist_add(rows, &phone, now_ms)?,
        },
        CallStoreRequest::CreateMessage { new } => CallStoreAnswer::MessageCreated {
            created: create_message(rows, queues, *new, now_ms).await?,
        },
        CallStoreRequest::GetMessage { message_id } => CallStoreAnswer::Message {
            record: rows.message(&message_id)?,
        },
        CallStoreRequest::ListMessages { filter } => CallStoreAnswer::List {
            rows: rows.list_messages(&filter)?,
        },
        CallStoreRequest::InboundMessage { message } => CallStoreAnswer::Inbound {
            verdict: inbound_message(rows, &message, now_ms)?,
        },
        CallStoreRequest::CreateContact { record } => CallStoreAnswer::ContactCreated {
            created: create_contact(rows, *record, now_ms)?,
        },
        CallStoreRequest::GetContact { contact_id } => CallStoreAnswer::Contact {
            record: rows.contact(&contact_id)?,
        },
        CallStoreRequest::ListContacts { filter } => CallStoreAnswer::List {
            rows: rows.list_contacts(&filter)?,
        },
        CallStoreRequest::UpdateContact { contact_id, patch } => CallStoreAnswer::ContactUpdated {
            updated: update_contact(rows, &contact_id, &patch, now_ms)?,
        },
        CallStoreRequest::DeleteContact { contact_id } => CallStoreAnswer::Contact {
            record: delete_contact(rows, &contact_id, now_ms)?,
        },
        CallStoreRequest::IndexCampaign { campaign_id } => {
            rows.put_campaign(&campaign_id)?;
            CallStoreAnswer::Done
        }
        CallStoreRequest::ListCampaigns { after, limit } => CallStoreAnswer::Campaigns {
            ids: rows.list_campaigns(after.as_deref(), limit)?,
        },
        CallStoreRequest::Reports { region, reports } => CallStoreAnswer::Applied {
            up_to: apply_reports(rows, &region, &reports, now_ms, log)?,
        },
    })
}

// ---- contacts (types: `calls::contacts`) ----

/// The small value counting the tenant's contacts (so the bound costs one
/// read, however many there are).
pub const CONTACT_COUNT_KEY: &str = "contacts/count";

fn contact_count(rows: &impl CallRows) -> Result<u64, StoreError> {
    Ok(rows
        .value(CONTACT_COUNT_KEY)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

fn push_contact_event(
    rows: &impl CallRows,
    event: ContactEvent,
    record: &ContactRecord,
    updated_fields: &[&str],
    now_ms: u64,
) -> Result<(), StoreError> {
    let event_id = crate::ids::random_id("evt");
    rows.push_event(&PendingEvent {
        payload: contact_event_payload(event, &event_id, record, updated_fields, now_ms),
        event_id,
        event_type: WebhookEvent::from(event),
        call_id: record.id.clone(),
        created_ms: now_ms,
    })
}

/// Stores a new contact and queues `contact.created`, unless its phone is
/// another contact's or the tenant has [`MAX_CONTACTS`].
pub fn create_contact(
    rows: &impl CallRows,
    record: ContactRecord,
    now_ms: u64,
) -> Result<ContactCreated, StoreError> {
    if let Some(other) = rows.contact_by_phone(&record.phone)? {
        return Ok(ContactCreated::PhoneTaken {
            contact_id: other.id,
        });
    }
    let n = contact_count(rows)?;
    if n >= MAX_CONTACTS {
        return Ok(ContactCreated::Full);
    }
    rows.put_contact(&record)?;
    rows.put_value(CONTACT_COUNT_KEY, &(n + 1).to_string())?;
    push_contact_event(rows, ContactEvent::Created, &record, &[], now_ms)?;
    Ok(ContactCreated::Created { record })
}

/// Applies `patch` to the contact and, when a value changed, queues
/// `contact.updated` naming the changed fields.
pub fn update_contact(
    rows: &impl CallRows,
    contact_id: &str,
    patch: &ContactPatch,
    now_ms: u64,
) -> Result<ContactUpdated, StoreError> {
    let Some(mut record) = rows.contact(contact_id)? else {
        return Ok(ContactUpdated::NotFound);
    };
    if let Some(phone) = &patch.phone {
        if let Some(other) = rows.contact_by_phone(phone)? {
            if other.id != record.id {
                return Ok(ContactUpdated::PhoneTaken {
                    contact_id: other.id,
                });
            }
        }
    }
    let changed = apply_patch(&mut record, patch, now_ms);
    if !changed.is_empty() {
        rows.put_contact(&record)?;
        push_contact_event(rows, ContactEvent::Updated, &record, &changed, now_ms)?;
    }
    Ok(ContactUpdated::Updated {
        record,
        updated_fields: changed.into_iter().map(String::from).collect(),
    })
}

/// Deletes the contact and queues `contact.deleted` (with the contact as it
/// was); None when there is no such contact.
pub fn delete_contact(
    rows: &impl CallRows,
    contact_id: &str,
    now_ms: u64,
) -> Result<Option<ContactRecord>, StoreError> {
    let Some(record) = rows.contact(contact_id)? else {
        return Ok(None);
    };
    rows.delete_contact(&record.id)?;
    let n = contact_count(rows)?;
    rows.put_value(CONTACT_COUNT_KEY, &n.saturating_sub(1).to_string())?;
    push_contact_event(rows, ContactEvent::Deleted, &record, &[], now_ms)?;
    Ok(Some(record))
}

fn whitelist_key(phone: &str) -> String {
    format!("whitelist/{phone}")
}

/// One row per number (in the small-values table), written once: the
/// request's read and write run without an await between them, so two
/// requests for one number cannot both see it absent.
pub fn whitelist_add(rows: &impl CallRows, phone: &str, now_ms: u64) -> Result<bool, StoreError> {
    let key = whitelist_key(phone);
    if rows.value(&key)?.is_some() {
        return Ok(false);
    }
    rows.put_value(&key, &crate::ids::rfc3339_ms(now_ms))?;
    Ok(true)
}

/// Turns pending events into webhook deliveries (endpoints are read from KV,
/// configuration) and, for a call's end, its transcript email
/// (`webhooks::events::mail_job`), and hands them to `send`; an event leaves
/// the outbox only once all its jobs were accepted. True when events remain (a send
/// failed, or more than one batch was pending). `links` makes dialect bodies'
/// `recording_url` (none: null).
pub async fn drain_outbox<F, Fut>(
    rows: &impl CallRows,
    kv: &impl crate::store::Kv,
    tenant_id: &str,
    links: Option<&crate::recording_links::RecordingLinks>,
    now_ms: u64,
    mut send: F,
) -> Result<bool, StoreError>
where
    F: FnMut(Vec<crate::webhooks::delivery::QueueJob>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let events = rows.events(DRAIN_BATCH)?;
    if events.is_empty() {
        return Ok(false);
    }
    let full = events.len() == DRAIN_BATCH as usize;
    let endpoints = crate::webhooks::events::endpoints(kv, tenant_id).await?;
    let calls = StoredCalls(rows);
    for (id, event) in events {
        use crate::webhooks::delivery::QueueJob;
        let mut jobs: Vec<QueueJob> = crate::webhooks::events::jobs_for_event(
            kv, tenant_id, &endpoints, &event, &calls, links, now_ms,
        )
        .await?
        .into_iter()
        .map(QueueJob::Webhook)
        .collect();
        if let Some(mail) = crate::webhooks::events::mail_job(tenant_id, &event, &calls, now_ms)? {
            jobs.push(QueueJob::Mail(mail));
        }
        if let Some(notice) = campaign_notice(rows, &event)? {
            jobs.push(QueueJob::Campaign(notice));
        }
        if !jobs.is_empty() && !send(jobs).await {
            return Ok(true);
        }
        rows.delete_event(id)?;
    }
    Ok(full)
}

/// A campaign's call was placed or has ended: its campaign's object is told
/// (from the outbox, so the notice leaves with the change that caused it and
/// is sent again until accepted; the object applies it once).
fn campaign_notice(
    rows: &impl CallRows,
    event: &PendingEvent,
) -> Result<Option<crate::campaign_notice::CallNotice>, StoreError> {
    let placed_or_ended = event.event_type == WebhookEvent::CallQueued
        || crate::webhooks::events::is_post_call_event(event.event_type);
    if !placed_or_ended {
        return Ok(None);
    }
    let Some(record) = rows.call(&event.call_id)? else {
        return Ok(None);
    };
    let (Some(campaign_id), Some(row)) = (record.campaign_id, record.campaign_row) else {
        return Ok(None);
    };
    Ok(Some(crate::campaign_notice::CallNotice {
        campaign_id,
        row,
        call_id: record.id,
        status: record.status,
    }))
}

/// The calls of these rows, as making deliveries reads them (a dialect
/// endpoint's body is rendered from the record and transcript as stored when
/// the event is drained).
struct StoredCalls<'a, R: CallRows>(&'a R);

impl<R: CallRows> crate::webhooks::events::CallSource for StoredCalls<'_, R> {
    fn record(&self, call_id: &str) -> Result<Option<CallRecord>, StoreError> {
        self.0.call(call_id)
    }
    fn transcript(&self, call_id: &str) -> Result<Transcript, StoreError> {
        transcript(self.0, call_id)
    }
}

/// In-process [`Calls`] over the same code, one set of rows per tenant, with
/// its own in-process queue. Native tests use real SQLite rows; the CPU
/// bench (`bench-support`) plain maps.
#[cfg(any(test, feature = "bench-support"))]
pub mod memory {
    use super::*;
    use crate::dispatch::port::memory::MemoryDispatchQueues;
    use std::cell::{Cell, RefCell};
    use std::collections::BTreeMap;
    use std::rc::Rc;

    pub struct MemoryCalls<R: CallRows> {
        pub tenants: RefCell<BTreeMap<String, Rc<R>>>,
        pub dispatch_queues: MemoryDispatchQueues,
        pub now_ms: Cell<u64>,
        /// What the Worker's `PUBLIC_BASE_URL` gives: recording links in dialect webhooks.
        pub recording_links: RefCell<Option<crate::recording_links::RecordingLinks>>,
        make: fn() -> R,
    }

    impl<R: CallRows> MemoryCalls<R> {
        pub fn new(make: fn() -> R) -> Self {
            MemoryCalls {
                tenants: RefCell::new(BTreeMap::new()),
                dispatch_queues: MemoryDispatchQueues::default(),
                now_ms: Cell::new(0),
                recording_links: RefCell::new(None),
                make,
            }
        }

        pub fn rows(&self, tenant_id: &str) -> Rc<R> {
            self.tenants
                .borrow_mut()
                .entry(tenant_id.to_string())
                .or_insert_with(|| Rc::new((self.make)()))
                .clone()
        }

        /// What the dispatch queues reported since the last call: applied to
        /// the tenants' rows, numbered like the Durable Object numbers them.
        pub fn apply_queue_reports(&self) -> Result<(), StoreError> {
            let (updates, turns) = self.dispatch_queues.take_reports();
            let messages = self.dispatch_queues.take_message_reports();
            let mut seq = self.dispatch_queues.report_seq.get();
            let mut by_tenant: BTreeMap<String, Vec<Report>> = BTreeMap::new();
            let items = ReportItem::in_order(updates, turns, messages);
            for item in items {
                seq += 1;
                by_tenant
                    .entry(item.tenant_id().to_string())
                    .or_default()
                    .push(Report { seq, item });
            }
            self.dispatch_queues.report_seq.set(seq);
            for (tenant, reports) in by_tenant {
                apply_reports(
                    &*self.rows(&tenant),
                    "local",
                    &reports,
                    self.now_ms.get(),
                    &mut |_| {},
                )?;
            }
            Ok(())
        }

        /// Moves every tenant's pending events into `outbox` as deliveries and mails.
        pub async fn drain(
            &self,
            kv: &impl crate::store::Kv,
            outbox: &crate::webhooks::delivery::Outbox,
        ) -> Result<(), StoreError> {
            let tenants: Vec<String> = self.tenants.borrow().keys().cloned().collect();
            for tenant in tenants {
                let rows = self.rows(&tenant);
                let links = self.recording_links.borrow().clone();
                while drain_outbox(
                    &*rows,
                    kv,
                    &tenant,
                    links.as_ref(),
                    self.now_ms.get(),
                    |jobs| {
                        outbox.push_queued(jobs);
                        std::future::ready(true)
                    },
                )
                .await?
                {}
            }
            Ok(())
        }
    }

    /// Calls over real SQLite with the Durable Object limits, for native tests.
    #[cfg(test)]
    pub fn test_calls() -> MemoryCalls<SqlCallRows<crate::sql::sqlite::LimitedSqlite>> {
        MemoryCalls::new(|| {
            SqlCallRows::open(crate::sql::sqlite::LimitedSqlite::new()).expect("schema")
        })
    }

    impl<R: CallRows> CallStoreTransport for MemoryCalls<R> {
        fn send<'a>(
            &'a self,
            tenant_id: &'a str,
            request: CallStoreRequest,
        ) -> LocalFuture<'a, Result<CallStoreAnswer, StoreError>> {
            Box::pin(async move {
                let rows = self.rows(tenant_id);
                handle(
                    &*rows,
                    &self.dispatch_queues,
                    request,
                    self.now_ms.get(),
                    &mut |_| {},
                )
                .await
            })
        }
    }
}
/// What the tenant's call store keeps of a call's stored recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingInfo {
    pub attempt: u32,
    pub object_key: String,
    pub content_type: String,
    pub bytes: u64,
    pub sha256: String,
    pub duration_ms: u64,
    pub saved_at: String,
}

impl RecordingInfo {
    pub fn to_public(&self, call_id: &str) -> Value {
        json!({"object": "recording", "call_id": call_id, "attempt": self.attempt, "content_type": self.content_type,
               "bytes": self.bytes, "sha256": self.sha256, "duration_ms": self.duration_ms,
               "channels": {"left": "agent", "right": "callee"}, "saved_at": self.saved_at,
               "url": format!("/v1/calls/{call_id}/recording")})
    }
}
