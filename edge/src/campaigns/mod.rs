//! Campaigns: a list of contacts dialled by one agent at a pacing rate,
//! within a concurrency limit and a calling window. Each campaign is one
//! `Campaign` Durable Object (SQLite storage, one row per contact, never one
//! big value), the one writer of its contacts' states; every call it makes
//! is an ordinary call placed through `api::calls::place_call`.
//!
//! Pure: [`handle`] runs a [`CampaignRequest`] against the [`Sql`] port,
//! synchronously (inside the object every statement of a request is one
//! implicit transaction); [`pacing`] decides what to dial at time T. The
//! glue (`glue::campaign`) feeds requests, sets the alarm to [`next_wake`]
//! and, on the alarm, runs `api::campaigns::run_alarm`, which leases
//! contacts here, places their calls and reports each placement back.
//!
//! A contact's row moves `pending -> placing (leased) -> placed(call_id) ->
//! done(outcome)`; `skipped` when the campaign is cancelled before it was
//! dialled. A lease runs out after [`LEASE_MS`]: a placement that crashed
//! midway is handed out again and placed under the same idempotency key
//! (campaign + contact), so the call store answers with the call it already
//! made: a number is never dialled twice by the campaign (a call's own
//! `retries` are the one retry rule). The call's end reaches the object as a
//! [`CallNotice`] from the tenant's `CallStore` outbox (written with the
//! call's change, in the same transaction, and resent until accepted), so
//! nothing is polled and nothing is lost.

pub mod pacing;

use crate::calling_window::CallingWindow;
use crate::model::Metadata;
use crate::sql::{int_at, text_at, Sql, SqlValue};
use crate::store::StoreError;
use crate::traffic::LocalFuture;
use crate::webhooks::events::{PendingEvent, WebhookEvent};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use voxline_shared::CallStatus;

/// Most contacts in one campaign.
pub const MAX_CONTACTS: usize = 100_000;
/// `max_concurrent_calls`: (min, max, default).
pub const MAX_CONCURRENT_CALLS: (i64, i64, i64) = (1, 1_000, 1);
/// `calls_per_minute`: (min, max, default).
pub const CALLS_PER_MINUTE: (i64, i64, i64) = (1, 600, 10);
/// A contact handed out for placing is handed out again after this long
/// unless its placement was reported (the placer crashed).
pub const LEASE_MS: u64 = 60_000;
/// Contacts handed out per lease at most (the pacing gives one per slot).
pub const MAX_LEASE: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    /// Created, not started: nothing is dialled.
    Created,
    Running,
    /// Nothing new is dialled; calls in flight go on.
    Paused,
    /// Every contact was dialled and every call has ended.
    Completed,
    /// Stopped for good: contacts not dialled yet are `skipped`.
    Cancelled,
}

impl CampaignStatus {
    pub const ALL: [CampaignStatus; 5] = [
        CampaignStatus::Created,
        CampaignStatus::Running,
        CampaignStatus::Paused,
        CampaignStatus::Completed,
        CampaignStatus::Cancelled,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Created => "created",
            CampaignStatus::Running => "running",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Completed => "completed",
            CampaignStatus::Cancelled => "cancelled",
        }
    }
}

/// What every call of the campaign is placed with besides its contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallOptions {
    pub max_seconds: u32,
    pub retries: u32,
    pub retry_delay_minutes: u32,
    pub record: bool,
}

/// The campaign's settings, fixed at creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignSpec {
    pub id: String,
    pub tenant_id: String,
    pub name: Option<String>,
    pub agent_id: String,
    pub calling_window: Option<CallingWindow>,
    pub max_concurrent_calls: u32,
    pub calls_per_minute: u32,
    pub call: CallOptions,
    pub created_at: String,
}

/// The campaign's one small row: its settings and where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignRecord {
    pub spec: CampaignSpec,
    pub status: CampaignStatus,
    pub total_contacts: u32,
    /// The earliest time the next call may start (pacing).
    pub next_slot_ms: u64,
    pub started_at: Option<String>,
    pub paused_reason: Option<String>,
    pub cancelled_at: Option<String>,
    /// When the campaign finished (completed, or cancelled with no call
    /// left in flight): `campaign.completed` was queued then, once.
    pub finished_at: Option<String>,
    pub updated_at: String,
}

/// One contact of a new campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewContact {
    pub phone: String,
    pub name: Option<String>,
    pub metadata: Option<Metadata>,
}

/// A contact handed out to be placed: its row number and what the call needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeasedContact {
    pub row: u32,
    pub contact: NewContact,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub spec: CampaignSpec,
    pub contacts: Vec<LeasedContact>,
}

/// What placing a leased contact's call came to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "placement", rename_all = "snake_case")]
pub enum Placement {
    /// The call exists (made now, or earlier under the same idempotency key).
    Placed { call_id: String, status: CallStatus },
    /// The call API refused this contact for good (`code`: its `ErrorCode`).
    Refused { code: String, message: String },
    /// Not now (storage, the tenant's cap): handed out again later.
    Retry,
    /// No call of this campaign can be placed (its agent is gone or
    /// disabled, the tenant is disabled): the campaign pauses with `reason`.
    Halt { reason: String },
}

pub use crate::campaign_notice::CallNotice;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Start,
    Pause,
    Resume,
    Cancel,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Cancel => "cancel",
        }
    }
}

/// One request to a campaign's object; the wire form of [`Campaigns`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CampaignRequest {
    Create {
        record: Box<CampaignRecord>,
        contacts: Vec<NewContact>,
    },
    /// The campaign with its counts, if it is this tenant's.
    Get {
        tenant_id: String,
    },
    Control {
        tenant_id: String,
        action: Action,
    },
    /// Contacts to place now, as the pacing allows (the alarm's request).
    Lease,
    Placed {
        row: u32,
        placement: Placement,
    },
    Notice {
        notice: CallNotice,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum CampaignAnswer {
    /// The campaign's public JSON (None: no such campaign of this tenant).
    Campaign {
        view: Option<Value>,
    },
    /// An action refused in this status.
    Conflict {
        status: CampaignStatus,
    },
    Leased {
        lease: Option<Box<Lease>>,
    },
    Done,
}

/// How a request reaches a campaign's object: a Durable Object stub in the
/// Worker, the object itself on its alarm, a direct call in native tests.
pub trait Campaigns {
    fn send<'a>(
        &'a self,
        campaign_id: &'a str,
        request: CampaignRequest,
    ) -> LocalFuture<'a, Result<CampaignAnswer, StoreError>>;
}

/// Campaigns that are never there (the CPU bench, which serves no campaign).
pub struct NoCampaigns;

impl Campaigns for NoCampaigns {
    fn send<'a>(
        &'a self,
        _: &'a str,
        _: CampaignRequest,
    ) -> LocalFuture<'a, Result<CampaignAnswer, StoreError>> {
        Box::pin(async { Err(StoreError::Unavailable("no campaigns here".into())) })
    }
}

// ---- rows ----

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID",
    // One row per contact; `state`: pending, placing, placed, done, skipped.
    "CREATE TABLE IF NOT EXISTS contacts (n INTEGER PRIMARY KEY, phone TEXT NOT NULL, state TEXT NOT NULL, \
     lease_until INTEGER NOT NULL DEFAULT 0, call_id TEXT, outcome TEXT, reason TEXT, body TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS contacts_by_state ON contacts (state, lease_until, n)",
    "CREATE INDEX IF NOT EXISTS contacts_by_outcome ON contacts (state, outcome)",
    "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL)",
];

const RECORD_KEY: &str = "campaign";

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

fn to_text<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| corrupt("campaign row", e))
}

pub fn record(sql: &impl Sql) -> Result<Option<CampaignRecord>, StoreError> {
    let rows = sql.exec("SELECT v FROM meta WHERE k = ?", vec![RECORD_KEY.into()])?;
    rows.first()
        .map(|r| {
            let text = text_at(r, 0, "campaign")?;
            serde_json::from_str(&text).map_err(|e| corrupt("campaign", e))
        })
        .transpose()
}

fn put_record(sql: &impl Sql, r: &CampaignRecord) -> Result<(), StoreError> {
    sql.exec(
        "INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)",
        vec![RECORD_KEY.into(), to_text(r)?.into()],
    )?;
    Ok(())
}

fn count(sql: &impl Sql, query: &str, args: Vec<SqlValue>) -> Result<u32, StoreError> {
    let rows = sql.exec(query, args)?;
    let n = rows
        .first()
        .ok_or_else(|| corrupt("count", "no row"))
        .and_then(|r| int_at(r, 0, "count"))?;
    Ok(u32::try_from(n).unwrap_or(0))
}

/// Placing with a live lease, or placed and not ended.
fn in_flight(sql: &impl Sql, now_ms: u64) -> Result<u32, StoreError> {
    count(
        sql,
        "SELECT COUNT(*) FROM contacts WHERE state = 'placed' OR (state = 'placing' AND lease_until > ?)",
        vec![now_ms.into()],
    )
}

/// Pending, or placing with a lease run out: up to `cap` of them counted.
fn leasable(sql: &impl Sql, now_ms: u64, cap: u32) -> Result<u32, StoreError> {
    count(
        sql,
        "SELECT COUNT(*) FROM (SELECT 1 FROM contacts WHERE state = 'pending' \
         OR (state = 'placing' AND lease_until <= ?) LIMIT ?)",
        vec![now_ms.into(), i64::from(cap).into()],
    )
}

fn earliest_lease_expiry(sql: &impl Sql, now_ms: u64) -> Result<Option<u64>, StoreError> {
    let rows = sql.exec(
        "SELECT MIN(lease_until) FROM contacts WHERE state = 'placing' AND lease_until > ?",
        vec![now_ms.into()],
    )?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .and_then(SqlValue::as_i64)
        .and_then(|n| u64::try_from(n).ok()))
}

/// Contacts per state and outcome: the public `counts`.
pub fn counts(sql: &impl Sql, now_ms: u64) -> Result<Map<String, Value>, StoreError> {
    let mut out = Map::new();
    for k in COUNT_NAMES {
        out.insert(k.to_string(), json!(0));
    }
    let rows = sql.exec(
        "SELECT state, outcome, COUNT(*) FROM contacts GROUP BY state, outcome",
        vec![],
    )?;
    let mut total = 0u64;
    for r in rows {
        let state = text_at(&r, 0, "state")?;
        let outcome = r.get(1).and_then(SqlValue::as_text).map(str::to_string);
        let n = u64::try_from(int_at(&r, 2, "count")?).unwrap_or(0);
        total += n;
        let key = match (state.as_str(), outcome.as_deref()) {
            ("pending", _) => "pending",
            ("placing" | "placed", _) => "in_flight",
            ("skipped", _) => "skipped",
            ("done", Some(o)) if COUNT_NAMES.contains(&o) => o,
            _ => "failed",
        };
        let before = out.get(key).and_then(Value::as_u64).unwrap_or(0);
        out.insert(key.to_string(), json!(before + n));
    }
    // A placing lease that ran out is pending again.
    let stale = count(
        sql,
        "SELECT COUNT(*) FROM contacts WHERE state = 'placing' AND lease_until <= ?",
        vec![now_ms.into()],
    )?;
    if stale > 0 {
        let f = |k: &str| out.get(k).and_then(Value::as_u64).unwrap_or(0);
        let (p, i) = (f("pending"), f("in_flight"));
        out.insert("pending".into(), json!(p + u64::from(stale)));
        out.insert(
            "in_flight".into(),
            json!(i.saturating_sub(u64::from(stale))),
        );
    }
    out.insert("total".into(), json!(total));
    Ok(out)
}

/// The keys of `counts`: every contact is in exactly one besides `total`.
pub const COUNT_NAMES: &[&str] = &[
    "total",
    "pending",
    "in_flight",
    "completed",
    "failed",
    "no_answer",
    "busy",
    "cancelled",
    "not_placed",
    "skipped",
];

/// The campaign as the API shows it (`GET /v1/campaigns/{id}`, the
/// `campaign.completed` event's `data`).
pub fn view(r: &CampaignRecord, counts: Map<String, Value>) -> Value {
    let s = &r.spec;
    json!({
        "id": s.id,
        "object": "campaign",
        "name": s.name,
        "status": r.status.as_str(),
        "agent_id": s.agent_id,
        "calling_window": s.calling_window,
        "max_concurrent_calls": s.max_concurrent_calls,
        "calls_per_minute": s.calls_per_minute,
        "max_seconds": s.call.max_seconds,
        "retries": s.call.retries,
        "retry_delay_minutes": s.call.retry_delay_minutes,
        "record": s.call.record,
        "paused_reason": r.paused_reason,
        "counts": counts,
        "created_at": s.created_at,
        "started_at": r.started_at,
        "cancelled_at": r.cancelled_at,
        "finished_at": r.finished_at,
        "updated_at": r.updated_at,
    })
}

fn view_of(sql: &impl Sql, r: &CampaignRecord, now_ms: u64) -> Result<Value, StoreError> {
    Ok(view(r, counts(sql, now_ms)?))
}

/// The body a contact row keeps besides its phone.
#[derive(Serialize, Deserialize)]
struct ContactBody {
    name: Option<String>,
    metadata: Option<Metadata>,
}

fn insert_contacts(sql: &impl Sql, contacts: &[NewContact]) -> Result<(), StoreError> {
    for (i, c) in contacts.iter().enumerate() {
        let body = ContactBody {
            name: c.name.clone(),
            metadata: c.metadata.clone(),
        };
        sql.exec(
            "INSERT INTO contacts (n, phone, state, body) VALUES (?, ?, 'pending', ?)",
            vec![
                i64::try_from(i + 1).unwrap_or(i64::MAX).into(),
                c.phone.as_str().into(),
                to_text(&body)?.into(),
            ],
        )?;
    }
    Ok(())
}

/// A contact row's state and its call, if it has one.
fn contact_state(sql: &impl Sql, row: u32) -> Result<Option<(String, Option<String>)>, StoreError> {
    let rows = sql.exec(
        "SELECT state, call_id FROM contacts WHERE n = ?",
        vec![i64::from(row).into()],
    )?;
    rows.first()
        .map(|r| {
            Ok((
                text_at(r, 0, "state")?,
                r.get(1).and_then(SqlValue::as_text).map(str::to_string),
            ))
        })
        .transpose()
}

fn set_contact(
    sql: &impl Sql,
    row: u32,
    state: &str,
    call_id: Option<&str>,
    outcome: Option<&str>,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    sql.exec(
        "UPDATE contacts SET state = ?, lease_until = 0, call_id = COALESCE(?, call_id), outcome = ?, reason = ? WHERE n = ?",
        vec![
            state.into(),
            call_id.map(str::to_string).into(),
            outcome.map(str::to_string).into(),
            reason.map(str::to_string).into(),
            i64::from(row).into(),
        ],
    )?;
    Ok(())
}

/// The call is known: placed while it lives, done once it has ended.
fn record_call(
    sql: &impl Sql,
    row: u32,
    call_id: &str,
    status: CallStatus,
) -> Result<(), StoreError> {
    let Some((state, _)) = contact_state(sql, row)? else {
        return Ok(());
    };
    if state == "done" {
        return Ok(()); // The first end wins.
    }
    if status.is_terminal() {
        set_contact(sql, row, "done", Some(call_id), Some(status.as_str()), None)
    } else if state != "placed" {
        set_contact(sql, row, "placed", Some(call_id), None, None)
    } else {
        Ok(())
    }
}

/// Queues `campaign.completed` once, when the campaign has finished: every
/// contact done (status `completed`), or cancelled with no call left in flight.
fn check_finished(sql: &impl Sql, r: &mut CampaignRecord, now_ms: u64) -> Result<(), StoreError> {
    if r.finished_at.is_some() {
        return Ok(());
    }
    let open = count(
        sql,
        "SELECT COUNT(*) FROM (SELECT 1 FROM contacts WHERE state IN ('placing', 'placed') LIMIT 1)",
        vec![],
    )?;
    let finished = match r.status {
        CampaignStatus::Created | CampaignStatus::Completed => false,
        CampaignStatus::Cancelled => open == 0,
        CampaignStatus::Running | CampaignStatus::Paused => {
            let pending = count(
                sql,
                "SELECT COUNT(*) FROM (SELECT 1 FROM contacts WHERE state = 'pending' LIMIT 1)",
                vec![],
            )?;
            open == 0 && pending == 0
        }
    };
    if !finished {
        return Ok(());
    }
    let now = crate::ids::rfc3339_ms(now_ms);
    if r.status != CampaignStatus::Cancelled {
        r.status = CampaignStatus::Completed;
        r.paused_reason = None;
    }
    r.finished_at = Some(now.clone());
    r.updated_at = now;
    let event_id = crate::ids::random_id("evt");
    let data = view_of(sql, r, now_ms)?;
    let payload = crate::webhooks::events::event_payload(
        WebhookEvent::CampaignCompleted,
        &event_id,
        now_ms,
        data,
    );
    let event = PendingEvent {
        event_id,
        event_type: WebhookEvent::CampaignCompleted,
        call_id: r.spec.id.clone(),
        payload,
        created_ms: now_ms,
    };
    sql.exec(
        "INSERT INTO outbox (event) VALUES (?)",
        vec![to_text(&event)?.into()],
    )?;
    Ok(())
}

fn control(
    sql: &impl Sql,
    mut r: CampaignRecord,
    action: Action,
    now_ms: u64,
) -> Result<CampaignAnswer, StoreError> {
    use CampaignStatus as S;
    let now = crate::ids::rfc3339_ms(now_ms);
    let next = match (action, r.status) {
        (Action::Start, S::Created) => {
            r.started_at = Some(now.clone());
            S::Running
        }
        (Action::Pause, S::Running) => S::Paused,
        (Action::Resume, S::Paused) => {
            r.paused_reason = None;
            S::Running
        }
        (Action::Cancel, S::Created | S::Running | S::Paused) => {
            r.cancelled_at = Some(now.clone());
            // Not dialled yet: never will be. A placement that ran out of
            // lease too (if its call was made after all, the call's notice
            // puts the row right).
            sql.exec(
                "UPDATE contacts SET state = 'skipped', lease_until = 0 WHERE state = 'pending' OR (state = 'placing' AND lease_until <= ?)",
                vec![now_ms.into()],
            )?;
            S::Cancelled
        }
        // Already there: the same answer again.
        (Action::Start | Action::Resume, S::Running)
        | (Action::Pause, S::Paused)
        | (Action::Cancel, S::Cancelled) => r.status,
        (_, status) => return Ok(CampaignAnswer::Conflict { status }),
    };
    if next != r.status {
        r.status = next;
        r.updated_at = now;
        check_finished(sql, &mut r, now_ms)?;
        put_record(sql, &r)?;
    }
    Ok(CampaignAnswer::Campaign {
        view: Some(view_of(sql, &r, now_ms)?),
    })
}

fn pacing_input<'a>(
    sql: &impl Sql,
    r: &'a CampaignRecord,
    now_ms: u64,
) -> Result<pacing::PacingInput<'a>, StoreError> {
    Ok(pacing::PacingInput {
        now_ms,
        calls_per_minute: r.spec.calls_per_minute,
        max_concurrent_calls: r.spec.max_concurrent_calls,
        in_flight: in_flight(sql, now_ms)?,
        leasable: leasable(sql, now_ms, 2)?,
        next_slot_ms: r.next_slot_ms,
        earliest_lease_expiry_ms: earliest_lease_expiry(sql, now_ms)?,
        window: r.spec.calling_window.as_ref(),
    })
}

/// Hands out what the pacing allows now: each contact's row becomes
/// `placing` with a lease of [`LEASE_MS`].
pub fn lease(sql: &impl Sql, now_ms: u64) -> Result<Option<Lease>, StoreError> {
    let Some(mut r) = record(sql)? else {
        return Ok(None);
    };
    if r.status != CampaignStatus::Running {
        return Ok(None);
    }
    let plan = pacing::plan(&pacing_input(sql, &r, now_ms)?);
    if plan.lease == 0 {
        return Ok(None);
    }
    let rows = sql.exec(
        "SELECT n, phone, body FROM contacts WHERE state = 'pending' OR (state = 'placing' AND lease_until <= ?) ORDER BY n LIMIT ?",
        vec![now_ms.into(), i64::from(plan.lease.min(MAX_LEASE)).into()],
    )?;
    let mut contacts = Vec::with_capacity(rows.len());
    for row in rows {
        let n = u32::try_from(int_at(&row, 0, "contact row")?).unwrap_or(0);
        let body: ContactBody = serde_json::from_str(&text_at(&row, 2, "contact body")?)
            .map_err(|e| corrupt("contact body", e))?;
        sql.exec(
            "UPDATE contacts SET state = 'placing', lease_until = ? WHERE n = ?",
            vec![(now_ms + LEASE_MS).into(), i64::from(n).into()],
        )?;
        contacts.push(LeasedContact {
            row: n,
            contact: NewContact {
                phone: text_at(&row, 1, "contact phone")?,
                name: body.name,
                metadata: body.metadata,
            },
        });
    }
    r.next_slot_ms = plan.next_slot_ms;
    put_record(sql, &r)?;
    Ok(Some(Lease {
        spec: r.spec.clone(),
        contacts,
    }))
}

/// When the object should run [`lease`] again (its alarm); None: only a
/// request wakes it.
pub fn next_wake(sql: &impl Sql, now_ms: u64) -> Result<Option<u64>, StoreError> {
    let Some(r) = record(sql)? else {
        return Ok(None);
    };
    if r.status != CampaignStatus::Running {
        // A cancelled campaign's crashed placements end as skipped when
        // their lease runs out; nothing else needs time.
        return Ok(None);
    }
    let plan = pacing::plan(&pacing_input(sql, &r, now_ms)?);
    Ok(if plan.lease > 0 {
        Some(now_ms)
    } else {
        plan.wake_at_ms
    })
}

fn placed(
    sql: &impl Sql,
    mut r: CampaignRecord,
    row: u32,
    placement: Placement,
    now_ms: u64,
) -> Result<(), StoreError> {
    let Some((state, _)) = contact_state(sql, row)? else {
        return Ok(());
    };
    match placement {
        Placement::Placed { call_id, status } => record_call(sql, row, &call_id, status)?,
        Placement::Refused { code, .. } if state == "placing" => {
            set_contact(sql, row, "done", None, Some("not_placed"), Some(&code))?
        }
        Placement::Retry if state == "placing" => {
            set_contact(sql, row, "pending", None, None, None)?
        }
        Placement::Halt { reason } => {
            if state == "placing" {
                set_contact(sql, row, "pending", None, None, None)?;
            }
            if r.status == CampaignStatus::Running {
                r.status = CampaignStatus::Paused;
                r.paused_reason = Some(reason);
                r.updated_at = crate::ids::rfc3339_ms(now_ms);
            }
        }
        // The lease was taken back (cancelled): the row stays as it is.
        Placement::Refused { .. } | Placement::Retry => {}
    }
    if r.status == CampaignStatus::Cancelled && state == "placing" {
        // A placement that was not made while cancelling: never will be.
        sql.exec(
            "UPDATE contacts SET state = 'skipped', lease_until = 0 WHERE n = ? AND state IN ('pending', 'placing')",
            vec![i64::from(row).into()],
        )?;
    }
    check_finished(sql, &mut r, now_ms)?;
    put_record(sql, &r)
}

/// Runs one request. Synchronous: one implicit transaction in the object.
pub fn handle(
    sql: &impl Sql,
    request: CampaignRequest,
    now_ms: u64,
) -> Result<CampaignAnswer, StoreError> {
    let existing = record(sql)?;
    match request {
        CampaignRequest::Create {
            record: r,
            contacts,
        } => {
            if let Some(r) = existing {
                // Created before (a retried request): as it is.
                return Ok(CampaignAnswer::Campaign {
                    view: Some(view_of(sql, &r, now_ms)?),
                });
            }
            insert_contacts(sql, &contacts)?;
            let mut r = *r;
            r.total_contacts = u32::try_from(contacts.len()).unwrap_or(u32::MAX);
            put_record(sql, &r)?;
            Ok(CampaignAnswer::Campaign {
                view: Some(view_of(sql, &r, now_ms)?),
            })
        }
        CampaignRequest::Get { tenant_id } => Ok(CampaignAnswer::Campaign {
            view: match existing.filter(|r| r.spec.tenant_id == tenant_id) {
                Some(r) => Some(view_of(sql, &r, now_ms)?),
                None => None,
            },
        }),
        CampaignRequest::Control { tenant_id, action } => {
            match existing.filter(|r| r.spec.tenant_id == tenant_id) {
                Some(r) => control(sql, r, action, now_ms),
                None => Ok(CampaignAnswer::Campaign { view: None }),
            }
        }
        CampaignRequest::Lease => Ok(CampaignAnswer::Leased {
            lease: lease(sql, now_ms)?.map(Box::new),
        }),
        CampaignRequest::Placed { row, placement } => {
            if let Some(r) = existing {
                placed(sql, r, row, placement, now_ms)?;
            }
            Ok(CampaignAnswer::Done)
        }
        CampaignRequest::Notice { notice } => {
            if let Some(mut r) = existing.filter(|r| r.spec.id == notice.campaign_id) {
                record_call(sql, notice.row, &notice.call_id, notice.status)?;
                check_finished(sql, &mut r, now_ms)?;
                put_record(sql, &r)?;
            }
            Ok(CampaignAnswer::Done)
        }
    }
}

/// Calls have no record for a campaign event (its deliveries need none).
struct NoCalls;

impl crate::webhooks::events::CallSource for NoCalls {
    fn record(&self, _: &str) -> Result<Option<crate::model::CallRecord>, StoreError> {
        Ok(None)
    }
    fn transcript(&self, _: &str) -> Result<crate::transcript::Transcript, StoreError> {
        Ok(crate::transcript::Transcript::default())
    }
}

/// Hands the campaign's pending events (`campaign.completed`) to `send` as
/// webhook deliveries, through the same jobs every event becomes; an event
/// leaves the outbox once its jobs were accepted. True when events remain.
pub async fn drain_outbox<F, Fut>(
    sql: &impl Sql,
    kv: &impl crate::store::Kv,
    now_ms: u64,
    mut send: F,
) -> Result<bool, StoreError>
where
    F: FnMut(Vec<crate::webhooks::delivery::QueueJob>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let Some(r) = record(sql)? else {
        return Ok(false);
    };
    let rows = sql.exec("SELECT id, event FROM outbox ORDER BY id LIMIT 10", vec![])?;
    if rows.is_empty() {
        return Ok(false);
    }
    let tenant_id = &r.spec.tenant_id;
    let endpoints = crate::webhooks::events::endpoints(kv, tenant_id).await?;
    for row in rows {
        let id = int_at(&row, 0, "outbox id")?;
        let event: PendingEvent =
            serde_json::from_str(&text_at(&row, 1, "event")?).map_err(|e| corrupt("event", e))?;
        let jobs: Vec<_> = crate::webhooks::events::jobs_for_event(
            kv, tenant_id, &endpoints, &event, &NoCalls, None, now_ms,
        )
        .await?
        .into_iter()
        .map(crate::webhooks::delivery::QueueJob::Webhook)
        .collect();
        if !jobs.is_empty() && !send(jobs).await {
            return Ok(true);
        }
        sql.exec("DELETE FROM outbox WHERE id = ?", vec![id.into()])?;
    }
    Ok(false)
}

/// In-process campaigns over real SQLite with the Durable Object limits,
/// for native tests: one database per campaign, the wire form on the way,
/// and the alarm each object would have set.
#[cfg(test)]
pub mod memory {
    use super::*;
    use crate::sql::sqlite::LimitedSqlite;
    use std::cell::{Cell, RefCell};
    use std::collections::BTreeMap;
    use std::rc::Rc;

    #[derive(Default)]
    pub struct MemoryCampaigns {
        pub objects: RefCell<BTreeMap<String, Rc<LimitedSqlite>>>,
        /// Each object's alarm, as its glue sets it after every request.
        pub alarms: RefCell<BTreeMap<String, Option<u64>>>,
        pub now_ms: Cell<u64>,
    }

    impl MemoryCampaigns {
        /// Moves every campaign's pending events into `outbox` as deliveries.
        pub async fn drain(
            &self,
            kv: &impl crate::store::Kv,
            outbox: &crate::webhooks::delivery::Outbox,
        ) -> Result<(), StoreError> {
            let ids: Vec<String> = self.objects.borrow().keys().cloned().collect();
            for id in ids {
                let Some(db) = self.objects.borrow().get(&id).cloned() else {
                    continue;
                };
                while drain_outbox(&*db, kv, self.now_ms.get(), |jobs| {
                    outbox.push_queued(jobs);
                    std::future::ready(true)
                })
                .await?
                {}
            }
            Ok(())
        }

        pub fn alarm(&self, id: &str) -> Option<u64> {
            self.alarms.borrow().get(id).copied().flatten()
        }
    }

    impl Campaigns for MemoryCampaigns {
        fn send<'a>(
            &'a self,
            campaign_id: &'a str,
            request: CampaignRequest,
        ) -> LocalFuture<'a, Result<CampaignAnswer, StoreError>> {
            Box::pin(async move {
                let text = serde_json::to_string(&request).map_err(|e| corrupt("request", e))?;
                let request: CampaignRequest =
                    serde_json::from_str(&text).map_err(|e| corrupt("request", e))?;
                let db = self
                    .objects
                    .borrow_mut()
                    .entry(campaign_id.to_string())
                    .or_insert_with(|| {
                        let db = LimitedSqlite::new();
                        open(&db).expect("schema");
                        Rc::new(db)
                    })
                    .clone();
                let now = self.now_ms.get();
                let answer = handle(&*db, request, now)?;
                self.alarms
                    .borrow_mut()
                    .insert(campaign_id.to_string(), next_wake(&*db, now)?);
                let text = serde_json::to_string(&answer).map_err(|e| corrupt("answer", e))?;
                serde_json::from_str(&text).map_err(|e| corrupt("answer", e))
            })
        }
    }
}

#[cfg(test)]
mod tests;
