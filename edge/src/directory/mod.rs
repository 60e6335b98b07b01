//! Each tenant's directory: the people and AI agents that have extensions,
//! the call queues, the Voice360 API keys, and the counters that allocate
//! their `pk`s. A `Directory` Durable Object per tenant (SQLite storage, one
//! row per item) in the Worker, so an extension is unique and a `pk` is
//! never handed out twice, however many requests race.
//!
//! The object named [`CLAIMS_OBJECT`] holds the names that must be unique
//! across tenants (phone numbers, Voice360 account ids, CodeB hosts): a claim is decided
//! there, never by reading KV back (KV may be a minute stale).
//!
//! Pure: [`handle`] runs a [`DirectoryRequest`] against the [`Sql`] port;
//! the Worker glue (`glue::directory`) only feeds it. Native tests run it
//! against real SQLite with the platform's limits.

pub mod records;

use crate::sql::{int_at, text_at, Sql, SqlValue};
use crate::store::StoreError;
use crate::traffic::LocalFuture;
use serde::{Deserialize, Serialize};

pub use records::{
    BindingRow, DirectoryQueue, DirectoryUser, QueueFields, QueueOverflowRule, SipCredentials,
    UserFields, UserKind, V360Key, V360KeyKind, DEFAULT_MAX_WAIT_SECONDS,
};
use voxline_shared::sidecar_link::{
    registration_refusals, PhoneBinding, PhoneRegistration, PhoneRegistrationDecision,
    MAX_PHONE_CONTACTS,
};

/// The one object that decides cross-tenant claims.
pub const CLAIMS_OBJECT: &str = "_claims";

/// Most users, queues or keys in one tenant's directory (every list is
/// answered whole, so it is bounded).
pub const MAX_ITEMS: u64 = 2_000;

/// The largest `pk` taken anywhere (2^53 - 1): a Durable Object binds SQL
/// integers through JavaScript numbers, which hold no larger integer exactly.
pub const MAX_PK: u64 = (1 << 53) - 1;

/// What a claim is on: one namespace each.
pub mod claim_kinds {
    pub const NUMBER: &str = "number";
    pub const VOICE360_ACCOUNT: &str = "voice360_account";
    pub const CODEB_HOST: &str = "codeb_host";
}

/// One request to a directory object; the wire form of [`Directory`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum DirectoryRequest {
    /// Creates a user (`pk: None`) or replaces user `pk`'s fields.
    SaveUser {
        pk: Option<u64>,
        fields: UserFields,
    },
    DeleteUser {
        pk: u64,
    },
    ListUsers,
    /// Creates a queue (`pk: None`) or replaces queue `pk`'s fields.
    SaveQueue {
        pk: Option<u64>,
        fields: QueueFields,
    },
    DeleteQueue {
        pk: u64,
    },
    ListQueues,
    /// Stores a minted key (by the SHA-256 of its text).
    AddKey {
        key: V360Key,
    },
    RevokeKey {
        id: String,
    },
    ListKeys,
    /// The live key with this hash, if any.
    FindKey {
        hash: String,
    },
    /// The next `pk` of a counter: 1, 2, 3...
    NextPk {
        counter: String,
    },
    /// The `pk` of `key` in `counter`'s namespace: allocated on first ask,
    /// the same ever after (a phone number's `pk`).
    PkFor {
        counter: String,
        key: String,
    },
    /// Claims `value` in `kind` for `owner`; answers the holder afterwards
    /// (the owner itself when the claim succeeded or was already its own).
    Claim {
        kind: String,
        value: String,
        owner: String,
    },
    /// Gives up `owner`'s claim (a claim of another owner stays).
    Release {
        kind: String,
        value: String,
        owner: String,
    },
    /// Sets (or, `None`, removes) user `pk`'s SIP phone account; the
    /// bindings made with the old password go.
    SetSip {
        pk: u64,
        sip: Option<SipCredentials>,
    },
    /// A phone's REGISTER for user `user_pk`: its Digest answer checked
    /// against the stored HA1, then its bindings recorded (issue 16).
    RegisterPhone {
        user_pk: u64,
        registration: PhoneRegistration,
    },
    /// Every live binding of the tenant's phones (expired ones are dropped).
    ListBindings,
    /// The next turn of queue `queue_pk`'s round robin (`rrmemory`, issue
    /// 16): 1, 2, 3... one per call, kept in the queue's row of `counters`
    /// (`rr:<pk>`), so concurrent calls never get the same turn.
    QueueTurn {
        queue_pk: u64,
    },
}

/// Why a directory change was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum DirectoryRefusal {
    /// Another user or queue of the tenant has this extension.
    ExtensionTaken {
        extension: String,
    },
    UserNotFound,
    QueueNotFound,
    /// A queue member names no user of the tenant.
    UnknownMember {
        user_pk: u64,
    },
    /// The directory holds [`MAX_ITEMS`] of this kind already.
    Full,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum DirectoryAnswer {
    User {
        user: DirectoryUser,
    },
    Users {
        users: Vec<DirectoryUser>,
    },
    Queue {
        queue: DirectoryQueue,
    },
    Queues {
        queues: Vec<DirectoryQueue>,
    },
    Keys {
        keys: Vec<V360Key>,
    },
    Key {
        key: Option<V360Key>,
    },
    Pk {
        pk: u64,
    },
    Holder {
        owner: String,
    },
    /// A delete or revoke: whether there was something to remove.
    Removed {
        removed: bool,
    },
    Done,
    Refused {
        refusal: DirectoryRefusal,
    },
    PhoneRegistration {
        decision: PhoneRegistrationDecision,
    },
    Bindings {
        bindings: Vec<BindingRow>,
    },
}

/// How a request reaches a directory object: a Durable Object stub in the
/// Worker, a direct call in native tests.
pub trait Directory {
    /// `object`: a tenant id, or [`CLAIMS_OBJECT`].
    fn send<'a>(
        &'a self,
        object: &'a str,
        request: DirectoryRequest,
    ) -> LocalFuture<'a, Result<DirectoryAnswer, StoreError>>;
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS users (pk INTEGER PRIMARY KEY, json TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS queues (pk INTEGER PRIMARY KEY, json TEXT NOT NULL)",
    // Users and queues share one extension plan.
    "CREATE TABLE IF NOT EXISTS extensions (ext TEXT PRIMARY KEY, kind TEXT NOT NULL, pk INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS keys (hash TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE, json TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, next INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pks (counter TEXT NOT NULL, key TEXT NOT NULL, pk INTEGER NOT NULL, PRIMARY KEY (counter, key))",
    "CREATE TABLE IF NOT EXISTS claims (kind TEXT NOT NULL, value TEXT NOT NULL, owner TEXT NOT NULL, PRIMARY KEY (kind, value))",
    // One row per binding of a user's phone (issue 16).
    "CREATE TABLE IF NOT EXISTS bindings (user_pk INTEGER NOT NULL, contact TEXT NOT NULL, \
     sidecar_id TEXT NOT NULL, region TEXT NOT NULL, source TEXT NOT NULL, transport TEXT NOT NULL, \
     expires_ms INTEGER NOT NULL, sip_call_id TEXT NOT NULL, cseq INTEGER NOT NULL, \
     PRIMARY KEY (user_pk, contact))",
];

/// Creates the tables (idempotent).
pub fn open(sql: &impl Sql) -> Result<(), StoreError> {
    for statement in SCHEMA {
        sql.exec(statement, vec![])?;
    }
    Ok(())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn to_json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| corrupt("directory row", e))
}

fn rows_of<T: serde::de::DeserializeOwned>(
    sql: &impl Sql,
    query: &str,
    args: Vec<SqlValue>,
    what: &str,
) -> Result<Vec<T>, StoreError> {
    sql.exec(query, args)?
        .iter()
        .map(|row| {
            let text = text_at(row, 0, what)?;
            serde_json::from_str(&text).map_err(|e| corrupt(what, e))
        })
        .collect()
}

fn next_pk(sql: &impl Sql, counter: &str) -> Result<u64, StoreError> {
    let rows = sql.exec(
        "INSERT INTO counters (name, next) VALUES (?, 1) \
         ON CONFLICT(name) DO UPDATE SET next = next + 1 RETURNING next",
        vec![counter.into()],
    )?;
    let n = rows
        .first()
        .ok_or_else(|| corrupt("counter", "no row"))
        .and_then(|r| int_at(r, 0, "counter"))?;
    u64::try_from(n).map_err(|e| corrupt("counter", e))
}

/// The `counters` row of a queue's round robin.
fn queue_turn_counter(queue_pk: u64) -> String {
    format!("rr:{queue_pk}")
}

fn count(sql: &impl Sql, table: &str) -> Result<u64, StoreError> {
    let rows = sql.exec(&format!("SELECT COUNT(*) FROM {table}"), vec![])?;
    let n = rows
        .first()
        .ok_or_else(|| corrupt("count", "no row"))
        .and_then(|r| int_at(r, 0, "count"))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The holder of `ext` other than (`kind`, `pk`), if any.
fn extension_holder(
    sql: &impl Sql,
    ext: &str,
    kind: &str,
    pk: u64,
) -> Result<Option<()>, StoreError> {
    let rows = sql.exec(
        "SELECT kind, pk FROM extensions WHERE ext = ?",
        vec![ext.into()],
    )?;
    for row in rows {
        let k = text_at(&row, 0, "extension kind")?;
        let p = int_at(&row, 1, "extension pk")?;
        if k != kind || u64::try_from(p).ok() != Some(pk) {
            return Ok(Some(()));
        }
    }
    Ok(None)
}

fn set_extension(sql: &impl Sql, kind: &str, pk: u64, ext: Option<&str>) -> Result<(), StoreError> {
    sql.exec(
        "DELETE FROM extensions WHERE kind = ? AND pk = ?",
        vec![kind.into(), pk.into()],
    )?;
    if let Some(ext) = ext {
        sql.exec(
            "INSERT INTO extensions (ext, kind, pk) VALUES (?, ?, ?)",
            vec![ext.into(), kind.into(), pk.into()],
        )?;
    }
    Ok(())
}

fn refused(refusal: DirectoryRefusal) -> Result<DirectoryAnswer, StoreError> {
    Ok(DirectoryAnswer::Refused { refusal })
}

fn user(sql: &impl Sql, pk: u64) -> Result<Option<DirectoryUser>, StoreError> {
    Ok(rows_of(
        sql,
        "SELECT json FROM users WHERE pk = ?",
        vec![pk.into()],
        "user",
    )?
    .into_iter()
    .next())
}

fn queue(sql: &impl Sql, pk: u64) -> Result<Option<DirectoryQueue>, StoreError> {
    Ok(rows_of(
        sql,
        "SELECT json FROM queues WHERE pk = ?",
        vec![pk.into()],
        "queue",
    )?
    .into_iter()
    .next())
}

/// Runs one request. Synchronous: inside the object every statement of a
/// request belongs to one implicit transaction (no await between them).
pub fn handle(
    sql: &impl Sql,
    request: DirectoryRequest,
    now_ms: u64,
) -> Result<DirectoryAnswer, StoreError> {
    let now = crate::ids::rfc3339_ms(now_ms);
    match request {
        DirectoryRequest::SaveUser { pk, fields } => {
            let existing = match pk {
                Some(pk) => match user(sql, pk)? {
                    Some(u) => Some(u),
                    None => return refused(DirectoryRefusal::UserNotFound),
                },
                None => {
                    if count(sql, "users")? >= MAX_ITEMS {
                        return refused(DirectoryRefusal::Full);
                    }
                    None
                }
            };
            let pk_now = existing.as_ref().map(|u| u.pk);
            if extension_holder(sql, &fields.extension, "user", pk_now.unwrap_or(0))?.is_some() {
                return refused(DirectoryRefusal::ExtensionTaken {
                    extension: fields.extension,
                });
            }
            let saved = match existing {
                Some(old) => DirectoryUser {
                    fields,
                    updated_at: now,
                    ..old
                },
                None => DirectoryUser {
                    pk: next_pk(sql, "user")?,
                    sip_endpoint_id: next_pk(sql, "sip_endpoint")?,
                    fields,
                    created_at: now.clone(),
                    updated_at: now,
                    sip: None,
                },
            };
            sql.exec(
                "INSERT OR REPLACE INTO users (pk, json) VALUES (?, ?)",
                vec![saved.pk.into(), to_json(&saved)?.into()],
            )?;
            set_extension(sql, "user", saved.pk, Some(&saved.fields.extension))?;
            Ok(DirectoryAnswer::User { user: saved })
        }
        DirectoryRequest::DeleteUser { pk } => {
            let rows = sql.exec(
                "DELETE FROM users WHERE pk = ? RETURNING pk",
                vec![pk.into()],
            )?;
            if rows.is_empty() {
                return Ok(DirectoryAnswer::Removed { removed: false });
            }
            set_extension(sql, "user", pk, None)?;
            sql.exec("DELETE FROM bindings WHERE user_pk = ?", vec![pk.into()])?;
            // Their keys end with them, and they leave every queue.
            for key in rows_of::<V360Key>(sql, "SELECT json FROM keys", vec![], "key")? {
                if key.user_pk == Some(pk) {
                    sql.exec("DELETE FROM keys WHERE id = ?", vec![key.id.into()])?;
                }
            }
            for mut q in rows_of::<DirectoryQueue>(sql, "SELECT json FROM queues", vec![], "queue")?
            {
                if q.fields.members.contains(&pk) {
                    q.fields.members.retain(|m| *m != pk);
                    q.updated_at.clone_from(&now);
                    sql.exec(
                        "UPDATE queues SET json = ? WHERE pk = ?",
                        vec![to_json(&q)?.into(), q.pk.into()],
                    )?;
                }
            }
            Ok(DirectoryAnswer::Removed { removed: true })
        }
        DirectoryRequest::ListUsers => Ok(DirectoryAnswer::Users {
            users: rows_of(sql, "SELECT json FROM users ORDER BY pk", vec![], "user")?,
        }),
        DirectoryRequest::SaveQueue { pk, fields } => {
            let existing = match pk {
                Some(pk) => match queue(sql, pk)? {
                    Some(q) => Some(q),
                    None => return refused(DirectoryRefusal::QueueNotFound),
                },
                None => {
                    if count(sql, "queues")? >= MAX_ITEMS {
                        return refused(DirectoryRefusal::Full);
                    }
                    None
                }
            };
            for member in &fields.members {
                if user(sql, *member)?.is_none() {
                    return refused(DirectoryRefusal::UnknownMember { user_pk: *member });
                }
            }
            let pk_now = existing.as_ref().map(|q| q.pk);
            if extension_holder(sql, &fields.extension, "queue", pk_now.unwrap_or(0))?.is_some() {
                return refused(DirectoryRefusal::ExtensionTaken {
                    extension: fields.extension,
                });
            }
            let saved = match existing {
                Some(old) => DirectoryQueue {
                    fields,
                    updated_at: now,
                    ..old
                },
                None => DirectoryQueue {
                    pk: next_pk(sql, "queue")?,
                    fields,
                    created_at: now.clone(),
                    updated_at: now,
                },
            };
            sql.exec(
                "INSERT OR REPLACE INTO queues (pk, json) VALUES (?, ?)",
                vec![saved.pk.into(), to_json(&saved)?.into()],
            )?;
            set_extension(sql, "queue", saved.pk, Some(&saved.fields.extension))?;
            Ok(DirectoryAnswer::Queue { queue: saved })
        }
        DirectoryRequest::DeleteQueue { pk } => {
            let rows = sql.exec(
                "DELETE FROM queues WHERE pk = ? RETURNING pk",
                vec![pk.into()],
            )?;
            set_extension(sql, "queue", pk, None)?;
            // Its round robin goes with it.
            sql.exec(
                "DELETE FROM counters WHERE name = ?",
                vec![queue_turn_counter(pk).into()],
            )?;
            Ok(DirectoryAnswer::Removed {
                removed: !rows.is_empty(),
            })
        }
        DirectoryRequest::ListQueues => Ok(DirectoryAnswer::Queues {
            queues: rows_of(sql, "SELECT json FROM queues ORDER BY pk", vec![], "queue")?,
        }),
        DirectoryRequest::AddKey { key } => {
            if count(sql, "keys")? >= MAX_ITEMS {
                return refused(DirectoryRefusal::Full);
            }
            if let Some(pk) = key.user_pk {
                if user(sql, pk)?.is_none() {
                    return refused(DirectoryRefusal::UserNotFound);
                }
            }
            sql.exec(
                "INSERT INTO keys (hash, id, json) VALUES (?, ?, ?)",
                vec![
                    key.hash.clone().into(),
                    key.id.clone().into(),
                    to_json(&key)?.into(),
                ],
            )?;
            Ok(DirectoryAnswer::Done)
        }
        DirectoryRequest::RevokeKey { id } => {
            let rows = sql.exec(
                "DELETE FROM keys WHERE id = ? RETURNING id",
                vec![id.into()],
            )?;
            Ok(DirectoryAnswer::Removed {
                removed: !rows.is_empty(),
            })
        }
        DirectoryRequest::ListKeys => Ok(DirectoryAnswer::Keys {
            keys: rows_of(sql, "SELECT json FROM keys ORDER BY id", vec![], "key")?,
        }),
        DirectoryRequest::FindKey { hash } => Ok(DirectoryAnswer::Key {
            key: rows_of(
                sql,
                "SELECT json FROM keys WHERE hash = ?",
                vec![hash.into()],
                "key",
            )?
            .into_iter()
            .next(),
        }),
        DirectoryRequest::QueueTurn { queue_pk } => Ok(DirectoryAnswer::Pk {
            pk: next_pk(sql, &queue_turn_counter(queue_pk))?,
        }),
        DirectoryRequest::NextPk { counter } => Ok(DirectoryAnswer::Pk {
            pk: next_pk(sql, &format!("n:{counter}"))?,
        }),
        DirectoryRequest::PkFor { counter, key } => {
            let rows = sql.exec(
                "SELECT pk FROM pks WHERE counter = ? AND key = ?",
                vec![counter.clone().into(), key.clone().into()],
            )?;
            if let Some(row) = rows.first() {
                let pk = int_at(row, 0, "pk")?;
                return Ok(DirectoryAnswer::Pk {
                    pk: u64::try_from(pk).map_err(|e| corrupt("pk", e))?,
                });
            }
            let pk = next_pk(sql, &format!("n:{counter}"))?;
            sql.exec(
                "INSERT INTO pks (counter, key, pk) VALUES (?, ?, ?)",
                vec![counter.into(), key.into(), pk.into()],
            )?;
            Ok(DirectoryAnswer::Pk { pk })
        }
        DirectoryRequest::Claim { kind, value, owner } => {
            sql.exec(
                "INSERT INTO claims (kind, value, owner) VALUES (?, ?, ?) \
                 ON CONFLICT(kind, value) DO NOTHING",
                vec![kind.clone().into(), value.clone().into(), owner.into()],
            )?;
            let rows = sql.exec(
                "SELECT owner FROM claims WHERE kind = ? AND value = ?",
                vec![kind.into(), value.into()],
            )?;
            let owner = rows
                .first()
                .ok_or_else(|| corrupt("claim", "no row"))
                .and_then(|r| text_at(r, 0, "claim owner"))?;
            Ok(DirectoryAnswer::Holder { owner })
        }
        DirectoryRequest::Release { kind, value, owner } => {
            let rows = sql.exec(
                "DELETE FROM claims WHERE kind = ? AND value = ? AND owner = ? RETURNING owner",
                vec![kind.into(), value.into(), owner.into()],
            )?;
            Ok(DirectoryAnswer::Removed {
                removed: !rows.is_empty(),
            })
        }
        DirectoryRequest::SetSip { pk, sip } => {
            let Some(mut u) = user(sql, pk)? else {
                return refused(DirectoryRefusal::UserNotFound);
            };
            u.sip = sip;
            u.updated_at = now;
            sql.exec(
                "UPDATE users SET json = ? WHERE pk = ?",
                vec![to_json(&u)?.into(), pk.into()],
            )?;
            sql.exec("DELETE FROM bindings WHERE user_pk = ?", vec![pk.into()])?;
            Ok(DirectoryAnswer::User { user: u })
        }
        DirectoryRequest::RegisterPhone {
            user_pk,
            registration,
        } => Ok(DirectoryAnswer::PhoneRegistration {
            decision: register_phone(sql, user_pk, &registration, now_ms)?,
        }),
        DirectoryRequest::ListBindings => {
            sql.exec(
                "DELETE FROM bindings WHERE expires_ms <= ?",
                vec![now_ms.into()],
            )?;
            Ok(DirectoryAnswer::Bindings {
                bindings: bindings(sql, None)?,
            })
        }
    }
}

const BINDING_COLUMNS: &str =
    "user_pk, contact, sidecar_id, region, source, transport, expires_ms, sip_call_id, cseq";

/// The bindings of `user_pk` (all users' when `None`), by user and contact.
fn bindings(sql: &impl Sql, user_pk: Option<u64>) -> Result<Vec<BindingRow>, StoreError> {
    let rows = match user_pk {
        Some(pk) => sql.exec(
            &format!("SELECT {BINDING_COLUMNS} FROM bindings WHERE user_pk = ? ORDER BY contact"),
            vec![pk.into()],
        )?,
        None => sql.exec(
            &format!("SELECT {BINDING_COLUMNS} FROM bindings ORDER BY user_pk, contact"),
            vec![],
        )?,
    };
    let n = |row: &crate::sql::Row, i: usize, what: &str| -> Result<u64, StoreError> {
        u64::try_from(int_at(row, i, what)?).map_err(|e| corrupt(what, e))
    };
    rows.iter()
        .map(|r| {
            Ok(BindingRow {
                user_pk: n(r, 0, "binding user")?,
                contact: text_at(r, 1, "binding contact")?,
                sidecar_id: text_at(r, 2, "binding sidecar")?,
                region: text_at(r, 3, "binding region")?,
                source: text_at(r, 4, "binding source")?,
                transport: text_at(r, 5, "binding transport")?,
                expires_ms: n(r, 6, "binding expiry")?,
                sip_call_id: text_at(r, 7, "binding call id")?,
                cseq: u32::try_from(n(r, 8, "binding cseq")?).unwrap_or(u32::MAX),
            })
        })
        .collect()
}

fn refuse_phone(sip_code: u16, reason: &str) -> PhoneRegistrationDecision {
    PhoneRegistrationDecision::Refuse {
        sip_code,
        reason: reason.to_string(),
    }
}

/// A phone's REGISTER (RFC 3261 10.3 steps 5-8, the registrar's part the
/// sidecar cannot do): the Digest answer checked against the user's stored
/// HA1, then every change checked before any is written (a CSeq not above
/// a binding's of the same Call-ID aborts the whole request), then the
/// bindings added, refreshed or removed.
fn register_phone(
    sql: &impl Sql,
    user_pk: u64,
    reg: &PhoneRegistration,
    now_ms: u64,
) -> Result<PhoneRegistrationDecision, StoreError> {
    use voxline_shared::sip_digest::{verify, Algorithm, DigestInput};
    let Some(u) = user(sql, user_pk)?.filter(|u| u.fields.kind == UserKind::Person) else {
        return Ok(refuse_phone(404, registration_refusals::UNKNOWN_USER));
    };
    let bad = || Ok(refuse_phone(403, registration_refusals::BAD_CREDENTIALS));
    let Some(creds) = &u.sip else {
        return bad();
    };
    let d = &reg.digest;
    let Some(algorithm) = Algorithm::parse(&d.algorithm) else {
        return bad();
    };
    let qop = d.qop.as_deref().filter(|q| !q.is_empty());
    if d.username != creds.username
        || d.realm != creds.realm
        || !matches!(qop, None | Some("auth"))
        || !d.method.eq_ignore_ascii_case("REGISTER")
    {
        return bad();
    }
    let input = DigestInput {
        algorithm,
        nonce: &d.nonce,
        method: &d.method,
        uri: &d.uri,
        qop,
        nc: d.nc.as_deref().unwrap_or(""),
        cnonce: d.cnonce.as_deref().unwrap_or(""),
        body: b"",
    };
    if !verify(creds.ha1_for(algorithm), &input, &d.response) {
        return bad();
    }
    sql.exec(
        "DELETE FROM bindings WHERE user_pk = ? AND expires_ms <= ?",
        vec![user_pk.into(), now_ms.into()],
    )?;
    let live = bindings(sql, Some(user_pk))?;
    // A binding of the same Call-ID changes only with a higher CSeq.
    let stale = |b: &BindingRow| b.sip_call_id == reg.sip_call_id && reg.cseq <= b.cseq;
    if reg.remove_all {
        if live.iter().any(stale) {
            return Ok(refuse_phone(500, registration_refusals::OUT_OF_ORDER));
        }
        sql.exec(
            "DELETE FROM bindings WHERE user_pk = ?",
            vec![user_pk.into()],
        )?;
    } else {
        let mut added = 0;
        for c in &reg.contacts {
            match live.iter().find(|b| b.contact == c.uri) {
                Some(b) if stale(b) => {
                    return Ok(refuse_phone(500, registration_refusals::OUT_OF_ORDER))
                }
                Some(_) => {}
                None if c.expires_seconds > 0 => added += 1,
                None => {}
            }
        }
        if added > 0 && live.len() + added > MAX_PHONE_CONTACTS {
            return Ok(refuse_phone(403, registration_refusals::TOO_MANY_BINDINGS));
        }
        for c in &reg.contacts {
            if c.expires_seconds == 0 {
                sql.exec(
                    "DELETE FROM bindings WHERE user_pk = ? AND contact = ?",
                    vec![user_pk.into(), c.uri.clone().into()],
                )?;
                continue;
            }
            let expires_ms = now_ms.saturating_add(u64::from(c.expires_seconds) * 1000);
            sql.exec(
                &format!(
                    "INSERT OR REPLACE INTO bindings ({BINDING_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                vec![
                    user_pk.into(),
                    c.uri.clone().into(),
                    reg.sidecar_id.clone().into(),
                    reg.region.clone().into(),
                    reg.source.clone().into(),
                    reg.transport.clone().into(),
                    expires_ms.into(),
                    reg.sip_call_id.clone().into(),
                    u64::from(reg.cseq).into(),
                ],
            )?;
        }
    }
    let bindings = bindings(sql, Some(user_pk))?
        .into_iter()
        .map(|b| PhoneBinding {
            expires_seconds: u32::try_from(b.expires_ms.saturating_sub(now_ms).div_ceil(1000))
                .unwrap_or(u32::MAX),
            contact: b.contact,
            sidecar_id: b.sidecar_id,
        })
        .collect();
    Ok(PhoneRegistrationDecision::Accept {
        tenant_id: String::new(),
        user_pk,
        extension: u.fields.extension.clone(),
        bindings,
    })
}

fn unexpected(a: DirectoryAnswer) -> StoreError {
    StoreError::Corrupt(format!("unexpected directory answer {a:?}"))
}

/// Typed calls over any [`Directory`].
pub mod ops {
    use super::*;

    pub async fn save_user(
        d: &dyn Directory,
        tenant: &str,
        pk: Option<u64>,
        fields: UserFields,
    ) -> Result<Result<DirectoryUser, DirectoryRefusal>, StoreError> {
        match d
            .send(tenant, DirectoryRequest::SaveUser { pk, fields })
            .await?
        {
            DirectoryAnswer::User { user } => Ok(Ok(user)),
            DirectoryAnswer::Refused { refusal } => Ok(Err(refusal)),
            a => Err(unexpected(a)),
        }
    }

    pub async fn save_queue(
        d: &dyn Directory,
        tenant: &str,
        pk: Option<u64>,
        fields: QueueFields,
    ) -> Result<Result<DirectoryQueue, DirectoryRefusal>, StoreError> {
        match d
            .send(tenant, DirectoryRequest::SaveQueue { pk, fields })
            .await?
        {
            DirectoryAnswer::Queue { queue } => Ok(Ok(queue)),
            DirectoryAnswer::Refused { refusal } => Ok(Err(refusal)),
            a => Err(unexpected(a)),
        }
    }

    pub async fn users(d: &dyn Directory, tenant: &str) -> Result<Vec<DirectoryUser>, StoreError> {
        match d.send(tenant, DirectoryRequest::ListUsers).await? {
            DirectoryAnswer::Users { users } => Ok(users),
            a => Err(unexpected(a)),
        }
    }

    pub async fn queues(
        d: &dyn Directory,
        tenant: &str,
    ) -> Result<Vec<DirectoryQueue>, StoreError> {
        match d.send(tenant, DirectoryRequest::ListQueues).await? {
            DirectoryAnswer::Queues { queues } => Ok(queues),
            a => Err(unexpected(a)),
        }
    }

    pub async fn keys(d: &dyn Directory, tenant: &str) -> Result<Vec<V360Key>, StoreError> {
        match d.send(tenant, DirectoryRequest::ListKeys).await? {
            DirectoryAnswer::Keys { keys } => Ok(keys),
            a => Err(unexpected(a)),
        }
    }

    pub async fn find_key(
        d: &dyn Directory,
        tenant: &str,
        hash: &str,
    ) -> Result<Option<V360Key>, StoreError> {
        let request = DirectoryRequest::FindKey {
            hash: hash.to_string(),
        };
        match d.send(tenant, request).await? {
            DirectoryAnswer::Key { key } => Ok(key),
            a => Err(unexpected(a)),
        }
    }

    pub async fn add_key(
        d: &dyn Directory,
        tenant: &str,
        key: V360Key,
    ) -> Result<Result<(), DirectoryRefusal>, StoreError> {
        match d.send(tenant, DirectoryRequest::AddKey { key }).await? {
            DirectoryAnswer::Done => Ok(Ok(())),
            DirectoryAnswer::Refused { refusal } => Ok(Err(refusal)),
            a => Err(unexpected(a)),
        }
    }

    /// Deletes, revokes: whether something was removed.
    pub async fn remove(
        d: &dyn Directory,
        object: &str,
        request: DirectoryRequest,
    ) -> Result<bool, StoreError> {
        match d.send(object, request).await? {
            DirectoryAnswer::Removed { removed } => Ok(removed),
            a => Err(unexpected(a)),
        }
    }

    /// The next round-robin turn of queue `queue_pk` (1, 2, 3...).
    pub async fn queue_turn(
        d: &dyn Directory,
        tenant: &str,
        queue_pk: u64,
    ) -> Result<u64, StoreError> {
        match d
            .send(tenant, DirectoryRequest::QueueTurn { queue_pk })
            .await?
        {
            DirectoryAnswer::Pk { pk } => Ok(pk),
            a => Err(unexpected(a)),
        }
    }

    pub async fn next_pk(
        d: &dyn Directory,
        tenant: &str,
        counter: &str,
    ) -> Result<u64, StoreError> {
        let request = DirectoryRequest::NextPk {
            counter: counter.to_string(),
        };
        match d.send(tenant, request).await? {
            DirectoryAnswer::Pk { pk } => Ok(pk),
            a => Err(unexpected(a)),
        }
    }

    pub async fn pk_for(
        d: &dyn Directory,
        tenant: &str,
        counter: &str,
        key: &str,
    ) -> Result<u64, StoreError> {
        let request = DirectoryRequest::PkFor {
            counter: counter.to_string(),
            key: key.to_string(),
        };
        match d.send(tenant, request).await? {
            DirectoryAnswer::Pk { pk } => Ok(pk),
            a => Err(unexpected(a)),
        }
    }

    /// Claims `value` for `owner` across tenants: `true` when it is now
    /// (or already was) `owner`'s.
    pub async fn claim(
        d: &dyn Directory,
        kind: &str,
        value: &str,
        owner: &str,
    ) -> Result<bool, StoreError> {
        let request = DirectoryRequest::Claim {
            kind: kind.to_string(),
            value: value.to_string(),
            owner: owner.to_string(),
        };
        match d.send(CLAIMS_OBJECT, request).await? {
            DirectoryAnswer::Holder { owner: holder } => Ok(holder == owner),
            a => Err(unexpected(a)),
        }
    }

    /// Sets or removes a user's SIP phone account.
    pub async fn set_sip(
        d: &dyn Directory,
        tenant: &str,
        pk: u64,
        sip: Option<SipCredentials>,
    ) -> Result<Result<DirectoryUser, DirectoryRefusal>, StoreError> {
        match d.send(tenant, DirectoryRequest::SetSip { pk, sip }).await? {
            DirectoryAnswer::User { user } => Ok(Ok(user)),
            DirectoryAnswer::Refused { refusal } => Ok(Err(refusal)),
            a => Err(unexpected(a)),
        }
    }

    pub async fn register_phone(
        d: &dyn Directory,
        tenant: &str,
        user_pk: u64,
        registration: PhoneRegistration,
    ) -> Result<PhoneRegistrationDecision, StoreError> {
        let request = DirectoryRequest::RegisterPhone {
            user_pk,
            registration,
        };
        match d.send(tenant, request).await? {
            DirectoryAnswer::PhoneRegistration { decision } => Ok(decision),
            a => Err(unexpected(a)),
        }
    }

    /// Every live binding of the tenant's phones.
    pub async fn bindings(d: &dyn Directory, tenant: &str) -> Result<Vec<BindingRow>, StoreError> {
        match d.send(tenant, DirectoryRequest::ListBindings).await? {
            DirectoryAnswer::Bindings { bindings } => Ok(bindings),
            a => Err(unexpected(a)),
        }
    }

    pub async fn release(
        d: &dyn Directory,
        kind: &str,
        value: &str,
        owner: &str,
    ) -> Result<bool, StoreError> {
        let request = DirectoryRequest::Release {
            kind: kind.to_string(),
            value: value.to_string(),
            owner: owner.to_string(),
        };
        remove(d, CLAIMS_OBJECT, request).await
    }
}

/// In-process directories over real SQLite, one per object name.
#[cfg(test)]
pub mod memory {
    use super::*;
    use crate::sql::sqlite::LimitedSqlite;
    use std::cell::{Cell, RefCell};
    use std::collections::BTreeMap;

    #[derive(Default)]
    pub struct MemoryDirectory {
        objects: RefCell<BTreeMap<String, LimitedSqlite>>,
        pub now_ms: Cell<u64>,
    }

    impl Directory for MemoryDirectory {
        fn send<'a>(
            &'a self,
            object: &'a str,
            request: DirectoryRequest,
        ) -> LocalFuture<'a, Result<DirectoryAnswer, StoreError>> {
            Box::pin(async move {
                // The wire form, as the Worker sends it.
                let text = serde_json::to_string(&request).map_err(|e| corrupt("request", e))?;
                let request: DirectoryRequest =
                    serde_json::from_str(&text).map_err(|e| corrupt("request", e))?;
                let mut objects = self.objects.borrow_mut();
                let db = objects.entry(object.to_string()).or_insert_with(|| {
                    let db = LimitedSqlite::new();
                    open(&db).expect("schema");
                    db
                });
                let answer = handle(&*db, request, self.now_ms.get())?;
                let text = serde_json::to_string(&answer).map_err(|e| corrupt("answer", e))?;
                serde_json::from_str(&text).map_err(|e| corrupt("answer", e))
            })
        }
    }
}

#[cfg(test)]
mod tests;
