//! wasm32-only: the `DispatchQueue` Durable Object (one per region) and the
//! Worker-side [`DispatchQueues`] that talks to it. All decisions are made by the
//! pure `dispatch::queue` / `dispatch::sidecar_link` code; this file loads and persists the
//! queue, keeps its alarm on the next deadline, holds empty lease polls open,
//! and reports what changed to the tenants' call stores: each change is a
//! numbered row, written with the queue's own change, sent to its tenant's
//! `CallStore` and deleted once that store has applied it (retried by alarm).

use crate::calls::store::{
    CallStoreAnswer, CallStoreRequest, CallStoreTransport, Report, ReportItem,
};
use crate::dispatch::link_timing::{LinkChanges, LinkSample, LinkTiming};
use crate::dispatch::message_line::{MessageLine, MessageRow, MessageRowChange};
use crate::dispatch::port::{DispatchQueueAnswer, DispatchQueueRequest};
use crate::dispatch::queue::{
    CallRow, CallUpdate, CancelVerdict, DispatchTimings, EnqueueVerdict, Queue, QueueMeta,
};
use crate::dispatch::queued_call::QueuedCall;
use crate::dispatch::sidecar_link::{self, SidecarMessage};
use crate::glue::env::var_u64;
use crate::glue::env::DoSql;
use crate::glue::stubs::REGION_HEADER;
use crate::messages::MessageUpdate;
use crate::sql::{int_at, text_at, Sql};
use crate::store::StoreError;
use crate::transcript::TranscriptUpdate;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Duration;
use worker::{console_log, durable_object, Date, Delay, Env, Request, Response, Result, State};

/// The region a request is for (an object cannot read its own name), kept
/// in storage for the alarm.
const REGION_KEY: &str = "region";
/// The queue as one value, before rows (read once, to move it into rows).
const STORAGE_KEY: &str = "queue";
/// A held-open poll is woken by [`DispatchQueue::wake_polls`] when work may
/// have arrived, and re-checks at least this often anyway.
const POLL_RECHECK_MS: u64 = 1_000;
/// Reports sent per round; a tenant's store that did not answer is retried this much later.
const REPORT_BATCH: i64 = 500;

fn encode<T: serde::Serialize>(v: &T) -> std::result::Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}
const REPORT_RETRY_MS: u64 = 2_000;
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS reports (seq INTEGER PRIMARY KEY AUTOINCREMENT, tenant_id TEXT NOT NULL, item TEXT NOT NULL)",
    // Offer bodies, one row per queued call, read only when it is offered.
    "CREATE TABLE IF NOT EXISTS offers (call_id TEXT PRIMARY KEY, body TEXT NOT NULL) WITHOUT ROWID",
    // One row per call the queue has (waiting, leased, held, stranded); a
    // rowid table so waiting calls load back in the order they were written.
    "CREATE TABLE IF NOT EXISTS q_calls (call_id TEXT PRIMARY KEY, body TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS q_nonces (nonce TEXT PRIMARY KEY, forget_after INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS q_nonces_by_expiry ON q_nonces (forget_after)",
    // Text messages, one row per message waiting for a sidecar or out with one.
    "CREATE TABLE IF NOT EXISTS q_messages (message_id TEXT PRIMARY KEY, body TEXT NOT NULL) WITHOUT ROWID",
    // Sidecars, their commands, counters: small, one value.
    "CREATE TABLE IF NOT EXISTS q_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID",
    // The link's lease turnaround, one row per sample, the newest
    // `link_timing::MAX_LINK_SAMPLES` per sidecar.
    "CREATE TABLE IF NOT EXISTS q_link (sidecar_id TEXT NOT NULL, at_ms INTEGER NOT NULL, turnaround_ms INTEGER NOT NULL, PRIMARY KEY (sidecar_id, at_ms)) WITHOUT ROWID",
];

pub fn timings(env: &Env) -> DispatchTimings {
    let d = DispatchTimings::default();
    DispatchTimings {
        ack_deadline_ms: var_u64(env, "DISPATCH_ACK_DEADLINE_MS").unwrap_or(d.ack_deadline_ms),
        dead_after_ms: var_u64(env, "DISPATCH_DEAD_AFTER_MS").unwrap_or(d.dead_after_ms),
        max_wait_ms: var_u64(env, "DISPATCH_MAX_WAIT_MS").unwrap_or(d.max_wait_ms),
        lost_margin_ms: var_u64(env, "DISPATCH_LOST_MARGIN_MS").unwrap_or(d.lost_margin_ms),
    }
}

#[durable_object]
pub struct DispatchQueue {
    state: State,
    env: Env,
    /// The queue, loaded once; every mutation is synchronous on this copy and
    /// persisted before the reply (the object's output gate holds the reply
    /// until the write is durable).
    queue: RefCell<Option<Queue>>,
    /// Held-open polls waiting for work (same isolate, so a oneshot wakes them).
    waiters: RefCell<Vec<futures_channel::oneshot::Sender<()>>>,
    sql: DoSql,
    schema_ready: Cell<bool>,
    /// Reports are being sent; a second sender only asks for another round.
    reporting: Cell<bool>,
    report_again: Cell<bool>,
    /// Reports could not all be delivered: the alarm comes back for them.
    reports_stuck: Cell<bool>,
    /// The region name as last stored under [`REGION_KEY`].
    region_stored: RefCell<Option<String>>,
    /// Loaded from the one-value format: its key goes once the rows are written.
    legacy: Cell<bool>,
}

impl DispatchQueue {
    async fn ensure_loaded(&self) -> Result<()> {
        if self.queue.borrow().is_some() {
            return Ok(());
        }
        // Before rows, the whole queue was one value: moved into rows by the next persist.
        let legacy: Option<Queue> = self.state.storage().get(STORAGE_KEY).await?;
        if self.queue.borrow().is_some() {
            return Ok(());
        }
        let q = match legacy {
            Some(mut q) => {
                q.all_rows();
                self.legacy.set(true);
                q
            }
            None => self
                .load_rows()
                .map_err(|e| worker::Error::RustError(format!("loading the queue: {e:?}")))?,
        };
        *self.queue.borrow_mut() = Some(q);
        Ok(())
    }

    fn load_rows(&self) -> std::result::Result<Queue, StoreError> {
        self.ensure_schema()?;
        let corrupt =
            |what: &str, e: serde_json::Error| StoreError::Corrupt(format!("{what}: {e}"));
        let meta = match self
            .sql
            .exec("SELECT v FROM q_meta WHERE k = 'meta'", vec![])?
            .first()
        {
            Some(row) => serde_json::from_str(&text_at(row, 0, "meta")?)
                .map_err(|e| corrupt("queue meta", e))?,
            None => QueueMeta::default(),
        };
        let mut calls = Vec::new();
        for row in self
            .sql
            .exec("SELECT call_id, body FROM q_calls ORDER BY rowid", vec![])?
        {
            match serde_json::from_str::<CallRow>(&text_at(&row, 1, "queue row")?) {
                Ok(call) => calls.push(call),
                Err(e) => console_log!(
                    "dispatch: unreadable queue row {:?} skipped: {e}",
                    row.first()
                ),
            }
        }
        let now = Date::now().as_millis();
        let nonces = self
            .sql
            .exec(
                "SELECT nonce, forget_after FROM q_nonces WHERE forget_after > ?",
                vec![now.into()],
            )?
            .iter()
            .map(|r| {
                Ok((
                    text_at(r, 0, "nonce")?,
                    int_at(r, 1, "forget_after")?.max(0) as u64,
                ))
            })
            .collect::<std::result::Result<Vec<_>, StoreError>>()?;
        let mut messages = Vec::new();
        for row in self
            .sql
            .exec("SELECT message_id, body FROM q_messages", vec![])?
        {
            match serde_json::from_str::<MessageRow>(&text_at(&row, 1, "message row")?) {
                Ok(m) => messages.push(m),
                Err(e) => console_log!(
                    "dispatch: unreadable message row {:?} skipped: {e}",
                    row.first()
                ),
            }
        }
        let samples = self
            .sql
            .exec(
                "SELECT sidecar_id, at_ms, turnaround_ms FROM q_link",
                vec![],
            )?
            .iter()
            .map(|r| {
                Ok((
                    text_at(r, 0, "sidecar_id")?,
                    LinkSample {
                        at_ms: int_at(r, 1, "at_ms")?.max(0) as u64,
                        turnaround_ms: int_at(r, 2, "turnaround_ms")?.max(0) as u64,
                    },
                ))
            })
            .collect::<std::result::Result<Vec<_>, StoreError>>()?;
        let mut q = Queue::from_rows(meta, calls, nonces);
        q.messages = MessageLine::from_rows(messages);
        q.link = LinkTiming::from_rows(samples);
        Ok(q)
    }

    /// Writes the rows of the calls that changed, new nonces, new link
    /// samples (dropping those past the bound), and the meta value.
    fn write_rows(
        &self,
        rows: Vec<(String, Option<CallRow>)>,
        messages: Vec<MessageRowChange>,
        nonces: Vec<(String, u64)>,
        link: LinkChanges,
        meta: &QueueMeta,
        now: u64,
    ) -> std::result::Result<(), StoreError> {
        self.ensure_schema()?;
        let (samples, oldest_kept) = link;
        for (sidecar_id, sample) in samples {
            self.sql.exec(
                "INSERT OR REPLACE INTO q_link (sidecar_id, at_ms, turnaround_ms) VALUES (?, ?, ?)",
                vec![
                    sidecar_id.into(),
                    sample.at_ms.into(),
                    sample.turnaround_ms.into(),
                ],
            )?;
        }
        for (sidecar_id, oldest) in oldest_kept {
            self.sql.exec(
                "DELETE FROM q_link WHERE sidecar_id = ? AND at_ms < ?",
                vec![sidecar_id.into(), oldest.into()],
            )?;
        }
        for (call_id, row) in rows {
            match row {
                Some(row) => {
                    let body = encode(&row)?;
                    self.sql.exec(
                        "INSERT OR REPLACE INTO q_calls (call_id, body) VALUES (?, ?)",
                        vec![call_id.into(), body.into()],
                    )?;
                }
                None => {
                    self.sql.exec(
                        "DELETE FROM q_calls WHERE call_id = ?",
                        vec![call_id.into()],
                    )?;
                }
            }
        }
        for (message_id, row) in messages {
            match row {
                Some(row) => {
                    self.sql.exec(
                        "INSERT OR REPLACE INTO q_messages (message_id, body) VALUES (?, ?)",
                        vec![message_id.into(), encode(&row)?.into()],
                    )?;
                }
                None => {
                    self.sql.exec(
                        "DELETE FROM q_messages WHERE message_id = ?",
                        vec![message_id.into()],
                    )?;
                }
            }
        }
        for (nonce, forget_after) in nonces {
            self.sql.exec(
                "INSERT OR REPLACE INTO q_nonces (nonce, forget_after) VALUES (?, ?)",
                vec![nonce.into(), forget_after.into()],
            )?;
        }
        self.sql.exec(
            "DELETE FROM q_nonces WHERE forget_after <= ?",
            vec![now.into()],
        )?;
        self.sql.exec(
            "INSERT OR REPLACE INTO q_meta (k, v) VALUES ('meta', ?)",
            vec![encode(meta)?.into()],
        )?;
        Ok(())
    }

    /// Tells every held-open poll to look again (new call, command, requeue).
    fn wake_polls(&self) {
        for waiter in self.waiters.borrow_mut().drain(..) {
            let _ = waiter.send(());
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Queue) -> R) -> R {
        let mut slot = self.queue.borrow_mut();
        f(slot.get_or_insert_with(Queue::default))
    }

    /// Writes only what changed. If that fails, the copy in memory is
    /// dropped (reloaded from storage by the next request), so memory is never
    /// ahead of what is stored.
    async fn persist(&self, now: u64, t: &DispatchTimings) -> Result<()> {
        let (rows, messages, nonces, link, meta, next) = self.with(|q| {
            let (rows, nonces) = q.take_changes();
            let messages = q.messages.take_changes();
            let link = q.link.take_new();
            (
                rows,
                messages,
                nonces,
                link,
                q.meta(),
                q.next_deadline(now, t),
            )
        });
        if let Err(e) = self.write_rows(rows, messages, nonces, link, &meta, now) {
            *self.queue.borrow_mut() = None;
            return Err(worker::Error::RustError(format!(
                "storing the queue: {e:?}"
            )));
        }
        let storage = self.state.storage();
        if self.legacy.replace(false) {
            storage.delete(STORAGE_KEY).await?;
        }
        if let Some(at) = next {
            storage
                .set_alarm(at.saturating_sub(now).max(1) as i64)
                .await?;
        }
        Ok(())
    }

    fn ensure_schema(&self) -> std::result::Result<(), StoreError> {
        if !self.schema_ready.get() {
            for stmt in SCHEMA {
                self.sql.exec(stmt, vec![])?;
            }
            self.schema_ready.set(true);
        }
        Ok(())
    }

    /// Keeps a new call's offer body in its own row (not in the queue's state).
    fn store_offer_body(&self, call: &mut QueuedCall) -> std::result::Result<(), StoreError> {
        self.ensure_schema()?;
        let Some(body) = crate::dispatch::queue::take_offer_body(call) else {
            return Ok(()); // A retried enqueue already stored it.
        };
        self.sql.exec(
            "INSERT OR REPLACE INTO offers (call_id, body) VALUES (?, ?)",
            vec![call.call_id.as_str().into(), encode(&body)?.into()],
        )?;
        Ok(())
    }

    fn forget_offer_body(&self, call_id: &str) {
        if let Err(e) = self.ensure_schema().and_then(|_| {
            self.sql
                .exec("DELETE FROM offers WHERE call_id = ?", vec![call_id.into()])
        }) {
            console_log!("dispatch: offer body of {call_id} not deleted: {e:?}");
        }
    }

    /// Gives a lease answer's offers their bodies from their rows and opens
    /// their sealed keys (see `sidecar_link::Reply::finish`).
    fn finish_offers(&self, reply: &mut sidecar_link::Reply) {
        let _ = self.ensure_schema();
        let missing = reply.finish(
            |call_id| {
                let rows = self
                    .sql
                    .exec(
                        "SELECT body FROM offers WHERE call_id = ?",
                        vec![call_id.into()],
                    )
                    .ok()?;
                serde_json::from_str(&text_at(rows.first()?, 0, "offer").ok()?).ok()
            },
            crate::glue::env::sealing_key(&self.env).as_ref(),
        );
        for call_id in missing {
            console_log!("dispatch: offer body of {call_id} missing or unreadable: not offered");
        }
    }

    /// Writes what changed as numbered report rows, in order (turns before
    /// the updates of the same batch: a `transcript.saved` sent when the call
    /// ends must hold every turn). Synchronous: one transaction with the change.
    fn record_reports(
        &self,
        turns: Vec<TranscriptUpdate>,
        updates: Vec<CallUpdate>,
        messages: Vec<MessageUpdate>,
    ) {
        if turns.is_empty() && updates.is_empty() && messages.is_empty() {
            return;
        }
        if let Err(e) = self.ensure_schema() {
            return console_log!("dispatch: reports table: {e:?}");
        }
        // A call that ended for good needs its offer body no more.
        for u in &updates {
            if matches!(u.change, crate::dispatch::queue::CallChange::Ended { .. }) {
                self.forget_offer_body(&u.call_id);
            }
        }
        let items = ReportItem::in_order(updates, turns, messages);
        for item in items {
            let text = match serde_json::to_string(&item) {
                Ok(t) => t,
                Err(e) => {
                    console_log!("dispatch: report not encoded: {e}");
                    continue;
                }
            };
            if let Err(e) = self.sql.exec(
                "INSERT INTO reports (tenant_id, item) VALUES (?, ?)",
                vec![item.tenant_id().into(), text.into()],
            ) {
                console_log!("dispatch: report not stored: {e:?}");
            }
        }
    }

    /// Sends pending reports to their tenants' call stores, oldest first, and
    /// deletes those each store confirmed. A store that does not answer keeps
    /// its reports (and their order) for the alarm's next round.
    async fn deliver_reports(&self, region: &str) {
        if self.reporting.replace(true) {
            self.report_again.set(true);
            return;
        }
        loop {
            self.report_again.set(false);
            match self.deliver_once(region).await {
                Ok(more) if more || self.report_again.get() => continue,
                Ok(_) => {}
                Err(e) => console_log!("dispatch: reports: {e:?}"),
            }
            break;
        }
        self.reporting.set(false);
    }

    async fn deliver_once(&self, region: &str) -> std::result::Result<bool, StoreError> {
        self.ensure_schema()?;
        let rows = self.sql.exec(
            "SELECT seq, tenant_id, item FROM reports ORDER BY seq LIMIT ?",
            vec![REPORT_BATCH.into()],
        )?;
        let full = rows.len() as i64 == REPORT_BATCH;
        let mut by_tenant: BTreeMap<String, Vec<Report>> = BTreeMap::new();
        for row in &rows {
            let seq = int_at(row, 0, "report seq")?;
            let tenant = text_at(row, 1, "report tenant")?;
            match serde_json::from_str::<ReportItem>(&text_at(row, 2, "report")?) {
                Ok(item) => by_tenant.entry(tenant).or_default().push(Report {
                    seq: seq as u64,
                    item,
                }),
                Err(e) => {
                    console_log!("dispatch: unreadable report {seq} dropped: {e}");
                    self.sql
                        .exec("DELETE FROM reports WHERE seq = ?", vec![seq.into()])?;
                }
            }
        }
        let stores = crate::glue::stubs::WorkersCalls(&self.env);
        let mut stuck = false;
        for (tenant, reports) in by_tenant {
            let last = reports.last().map_or(0, |r| r.seq);
            match stores
                .send(
                    &tenant,
                    CallStoreRequest::Reports {
                        region: region.to_string(),
                        reports,
                    },
                )
                .await
            {
                Ok(CallStoreAnswer::Applied { .. }) => {
                    self.sql.exec(
                        "DELETE FROM reports WHERE tenant_id = ? AND seq <= ?",
                        vec![tenant.as_str().into(), (last as i64).into()],
                    )?;
                }
                Ok(other) => {
                    console_log!("dispatch: call store {tenant} answered {other:?}");
                    stuck = true;
                }
                Err(e) => {
                    console_log!("dispatch: call store {tenant} unreachable: {e:?}; retried");
                    stuck = true;
                }
            }
        }
        self.reports_stuck.set(stuck);
        if stuck {
            let at = Date::now().as_millis() + REPORT_RETRY_MS;
            let storage = self.state.storage();
            match storage.get_alarm().await {
                Ok(Some(current)) if (current as u64) <= at => {}
                _ => {
                    storage
                        .set_alarm(REPORT_RETRY_MS as i64)
                        .await
                        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                }
            }
            return Ok(false);
        }
        Ok(full)
    }

    /// Expired leases and dead sidecars are handled on every request too, so
    /// a late alarm never delays them.
    async fn tick(&self, now: u64, t: &DispatchTimings) -> (Vec<CallUpdate>, Vec<MessageUpdate>) {
        self.with(|q| (q.tick(now, t), q.messages.tick(now)))
    }
}

impl worker::DurableObject for DispatchQueue {
    fn new(state: State, env: Env) -> Self {
        let sql = DoSql(state.storage().sql());
        DispatchQueue {
            state,
            env,
            queue: RefCell::new(None),
            waiters: RefCell::new(Vec::new()),
            sql,
            schema_ready: Cell::new(false),
            reporting: Cell::new(false),
            report_again: Cell::new(false),
            reports_stuck: Cell::new(false),
            region_stored: RefCell::new(None),
            legacy: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let t = timings(&self.env);
        let request: DispatchQueueRequest = match req.json().await {
            Ok(r) => r,
            Err(e) => return Response::error(format!("bad dispatch queue request: {e}"), 400),
        };
        self.ensure_loaded().await?;
        let now = Date::now().as_millis();
        let region = req
            .headers()
            .get(REGION_HEADER)
            .ok()
            .flatten()
            .unwrap_or_default();
        if !region.is_empty() && self.region_stored.borrow().as_deref() != Some(region.as_str()) {
            self.state.storage().put(REGION_KEY, &region).await?;
            *self.region_stored.borrow_mut() = Some(region.clone());
        }
        let (mut updates, mut message_updates) = self.tick(now, &t).await;
        let mut turns = Vec::new();
        let answer = match request {
            DispatchQueueRequest::Enqueue { call } => {
                let mut call = *call;
                // Local development only: RETRY_DELAY_UNIT_MS shrinks a retry
                // "minute" so retry paths can be tested in seconds.
                let dev = self
                    .env
                    .var("VOXLINE_ENV")
                    .is_ok_and(|v| v.to_string() == "development");
                if let (true, Some(unit)) = (dev, var_u64(&self.env, "RETRY_DELAY_UNIT_MS")) {
                    call.retry_delay_ms = call.retry_delay_ms / 60_000 * unit;
                }
                let call_id = call.call_id.clone();
                let known = self.with(|q| q.knows(&call_id));
                if !known {
                    self.store_offer_body(&mut call)
                        .map_err(|e| worker::Error::RustError(format!("{e:?}")))?;
                }
                let outcome = self.with(|q| q.enqueue(call));
                if !known && outcome != EnqueueVerdict::Accepted {
                    self.forget_offer_body(&call_id);
                }
                DispatchQueueAnswer::Enqueued { outcome }
            }
            DispatchQueueRequest::Cancel { call_id } => {
                let outcome = self.with(|q| q.cancel(&call_id));
                if outcome == CancelVerdict::Cancelled {
                    self.forget_offer_body(&call_id);
                }
                DispatchQueueAnswer::Cancel { outcome }
            }
            DispatchQueueRequest::Transfer { command } => {
                let outcome = self.with(|q| q.transfer(command));
                DispatchQueueAnswer::Transfer { outcome }
            }
            DispatchQueueRequest::EnqueueMessage { message } => {
                let outcome = self.with(|q| q.messages.enqueue(message));
                DispatchQueueAnswer::EnqueuedMessage { outcome }
            }
            DispatchQueueRequest::SidecarStatus => DispatchQueueAnswer::SidecarStatus {
                sidecars: self.with(|q| q.sidecar_status()),
            },
            DispatchQueueRequest::Sidecar { envelope } => {
                let mut reply = self.with(|q| sidecar_link::handle(q, &envelope, now, &t));
                self.finish_offers(&mut reply);
                updates.extend(reply.updates);
                message_updates.extend(reply.messages);
                turns = reply.turns;
                let (status, body) = match reply.hold_open_until {
                    None => (reply.status, reply.body),
                    Some(until) => {
                        // Persist what the poll changed before waiting.
                        self.record_reports(
                            std::mem::take(&mut turns),
                            std::mem::take(&mut updates),
                            std::mem::take(&mut message_updates),
                        );
                        self.persist(now, &t).await?;
                        self.deliver_reports(&region).await;
                        // Only a lease poll is held open.
                        let free_slots = match &envelope.message {
                            SidecarMessage::Lease(poll) => poll.free_slots,
                            _ => 0,
                        };
                        let sid = envelope.sidecar_id.as_str();
                        loop {
                            let (tx, rx) = futures_channel::oneshot::channel();
                            self.waiters.borrow_mut().push(tx);
                            let left = until
                                .saturating_sub(Date::now().as_millis())
                                .clamp(1, POLL_RECHECK_MS);
                            futures_util::future::select(
                                rx,
                                Delay::from(Duration::from_millis(left)),
                            )
                            .await;
                            let now = Date::now().as_millis();
                            if self.with(|q| q.has_work_for(sid, now)) || now >= until {
                                let mut r = self.with(|q| {
                                    sidecar_link::lease_reply(q, sid, free_slots, now, &t)
                                });
                                self.finish_offers(&mut r);
                                // Handed out: `sending`, reported with this answer's change.
                                self.record_reports(Vec::new(), Vec::new(), r.messages);
                                self.persist(now, &t).await?;
                                break (r.status, r.body);
                            }
                        }
                    }
                };
                DispatchQueueAnswer::Sidecar { status, body }
            }
        };
        self.record_reports(turns, updates, message_updates);
        self.persist(Date::now().as_millis(), &t).await?;
        self.wake_polls();
        self.deliver_reports(&region).await;
        Response::from_json(&answer)
    }

    async fn alarm(&self) -> Result<Response> {
        let t = timings(&self.env);
        self.ensure_loaded().await?;
        let now = Date::now().as_millis();
        let (updates, messages) = self.tick(now, &t).await;
        self.record_reports(Vec::new(), updates, messages);
        self.persist(now, &t).await?;
        self.wake_polls();
        if let Some(region) = self
            .state
            .storage()
            .get::<String>(REGION_KEY)
            .await
            .ok()
            .flatten()
        {
            self.deliver_reports(&region).await;
        }
        if self.reports_stuck.get() {
            // persist() may have moved the alarm past the report retry.
            self.state
                .storage()
                .set_alarm(REPORT_RETRY_MS as i64)
                .await?;
        }
        Response::ok("")
    }
}
