//! wasm32-only: the `DispatchQueue` Durable Object (one per region) and the
//! Worker-side [`Dispatcher`] that talks to it. All decisions are made by the
//! pure `dispatch` / `sidecar_link` code; this file loads and persists the
//! queue, keeps its alarm on the next deadline, holds empty lease polls open,
//! and mirrors call updates into KV.

use crate::dispatch::{CallUpdate, CancelOutcome, DispatchTimings, EnqueueOutcome, QueuedCall, RegionQueue};
use crate::dispatcher::{mirror_updates, Dispatcher};
use crate::glue::{var_u64, WorkersKv, KV_BINDING};
use crate::sidecar_link::{self, SidecarEnvelope};
use crate::store::StoreError;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::time::Duration;
use worker::{durable_object, console_log, Date, Delay, Env, Method, Request, RequestInit, Response, Result, State};

pub const DO_BINDING: &str = "DISPATCH";
const STORAGE_KEY: &str = "queue";
/// A held-open poll is woken by [`DispatchQueue::wake_polls`] when work may
/// have arrived, and re-checks at least this often anyway.
const POLL_RECHECK_MS: u64 = 1_000;

pub fn timings(env: &Env) -> DispatchTimings {
    let d = DispatchTimings::default();
    DispatchTimings {
        ack_deadline_ms: var_u64(env, "DISPATCH_ACK_DEADLINE_MS").unwrap_or(d.ack_deadline_ms),
        dead_after_ms: var_u64(env, "DISPATCH_DEAD_AFTER_MS").unwrap_or(d.dead_after_ms),
        max_wait_ms: var_u64(env, "DISPATCH_MAX_WAIT_MS").unwrap_or(d.max_wait_ms),
    }
}

#[durable_object]
pub struct DispatchQueue {
    state: State,
    env: Env,
    /// The queue, loaded once; every mutation is synchronous on this copy and
    /// persisted before the reply (the object's output gate holds the reply
    /// until the write is durable).
    queue: RefCell<Option<RegionQueue>>,
    /// Held-open polls waiting for work (same isolate, so a oneshot wakes them).
    waiters: RefCell<Vec<futures_channel::oneshot::Sender<()>>>,
}

impl DispatchQueue {
    async fn ensure_loaded(&self) -> Result<()> {
        if self.queue.borrow().is_some() {
            return Ok(());
        }
        let stored: Option<RegionQueue> = self.state.storage().get(STORAGE_KEY).await?;
        let mut slot = self.queue.borrow_mut();
        if slot.is_none() {
            *slot = Some(stored.unwrap_or_default());
        }
        Ok(())
    }

    /// Tells every held-open poll to look again (new call, command, requeue).
    fn wake_polls(&self) {
        for waiter in self.waiters.borrow_mut().drain(..) {
            let _ = waiter.send(());
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut RegionQueue) -> R) -> R {
        let mut slot = self.queue.borrow_mut();
        f(slot.get_or_insert_with(RegionQueue::default))
    }

    async fn persist(&self, now: u64, t: &DispatchTimings) -> Result<()> {
        let (snapshot, next) = self.with(|q| (q.clone(), q.next_deadline(now, t)));
        let storage = self.state.storage();
        storage.put(STORAGE_KEY, &snapshot).await?;
        if let Some(at) = next {
            storage.set_alarm(at.saturating_sub(now).max(1) as i64).await?;
        }
        Ok(())
    }

    async fn mirror(&self, updates: &[CallUpdate]) {
        if updates.is_empty() {
            return;
        }
        let kv = match self.env.kv(KV_BINDING) {
            Ok(kv) => WorkersKv(kv),
            Err(e) => return console_log!("dispatch: KV unavailable, {} updates not mirrored: {e}", updates.len()),
        };
        let mut log = |m: String| console_log!("dispatch: {m}");
        let (applied, result) = mirror_updates(&kv, updates, &mut log).await;
        if let Err(e) = result {
            console_log!("dispatch: mirroring updates failed: {e:?}");
        }
        // Webhook events for the changes that were stored.
        let now = Date::now().as_millis();
        let mut jobs = Vec::new();
        for a in &applied {
            let Some(event) = crate::webhooks::event_for_change(a.before, &a.record) else { continue };
            match crate::webhooks::emit(&kv, &a.tenant_id, event, &a.record, now).await {
                Ok(j) => jobs.extend(j),
                Err(e) => console_log!("dispatch: {event} for {} not emitted: {e:?}", a.record.id),
            }
            match crate::transcript::emit_saved(&kv, &a.tenant_id, a.before, &a.record, now).await {
                Ok(j) => jobs.extend(j),
                Err(e) => console_log!("dispatch: transcript.saved for {} not emitted: {e:?}", a.record.id),
            }
        }
        crate::glue_webhooks::send_jobs(&self.env, jobs).await;
    }

    async fn append_turns(&self, turns: &[crate::transcript::TranscriptUpdate]) {
        if turns.is_empty() {
            return;
        }
        match self.env.kv(KV_BINDING) {
            Ok(kv) => {
                if let Err(e) = crate::transcript::apply(&WorkersKv(kv), turns).await {
                    console_log!("dispatch: {} transcript turns not stored: {e:?}", turns.len());
                }
            }
            Err(e) => console_log!("dispatch: KV unavailable, {} transcript turns not stored: {e}", turns.len()),
        }
    }

    /// Expired leases and dead sidecars are handled on every request too, so
    /// a late alarm never delays them.
    async fn tick(&self, now: u64, t: &DispatchTimings) -> Vec<CallUpdate> {
        self.with(|q| q.tick(now, t))
    }
}

impl worker::DurableObject for DispatchQueue {
    fn new(state: State, env: Env) -> Self {
        DispatchQueue { state, env, queue: RefCell::new(None), waiters: RefCell::new(Vec::new()) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let t = timings(&self.env);
        self.ensure_loaded().await?;
        let body: Value = req.json().await.unwrap_or(Value::Null);
        let now = Date::now().as_millis();
        let mut updates = self.tick(now, &t).await;
        let mut turns = Vec::new();
        let (status, reply) = match req.path().as_str() {
            "/enqueue" => match serde_json::from_value::<QueuedCall>(body) {
                Ok(mut call) => {
                    // Local development only: RETRY_DELAY_UNIT_MS shrinks a retry
                    // "minute" so retry paths can be tested in seconds.
                    let dev = self.env.var("VOXLINE_ENV").is_ok_and(|v| v.to_string() == "development");
                    if let (true, Some(unit)) = (dev, var_u64(&self.env, "RETRY_DELAY_UNIT_MS")) {
                        call.retry_delay_ms = call.retry_delay_ms / 60_000 * unit;
                    }
                    let outcome = self.with(|q| q.enqueue(call));
                    (200, serde_json::to_value(&outcome).unwrap_or(Value::Null))
                }
                Err(e) => (400, json!({"error": format!("bad queued call: {e}")})),
            },
            "/cancel" => {
                let call_id = body["call_id"].as_str().unwrap_or_default();
                let outcome = match self.with(|q| q.cancel(call_id)) {
                    CancelOutcome::Cancelled => json!({"outcome": "cancelled"}),
                    CancelOutcome::Signalled { sidecar_id } => json!({"outcome": "signalled", "sidecar_id": sidecar_id}),
                    CancelOutcome::Unknown => json!({"outcome": "unknown"}),
                };
                (200, outcome)
            }
            "/sidecar" => match serde_json::from_value::<SidecarEnvelope>(body) {
                Ok(envelope) => {
                    let mut reply = self.with(|q| sidecar_link::handle(q, &envelope, now, &t));
                    crate::engine_keys::open_offers(&mut reply.body, crate::glue::sealing_key(&self.env).as_ref());
                    updates.extend(reply.updates);
                    turns = reply.turns;
                    match reply.hold_open_until {
                        None => (reply.status, reply.body),
                        Some(until) => {
                            // Persist what the poll changed before waiting.
                            self.persist(now, &t).await?;
                            self.mirror(&std::mem::take(&mut updates)).await;
                            let free_slots = envelope.body["free_slots"].as_u64().unwrap_or(0) as u32;
                            let sid = envelope.sidecar_id.as_str();
                            loop {
                                let (tx, rx) = futures_channel::oneshot::channel();
                                self.waiters.borrow_mut().push(tx);
                                let left = until.saturating_sub(Date::now().as_millis()).clamp(1, POLL_RECHECK_MS);
                                futures_util::future::select(rx, Delay::from(Duration::from_millis(left))).await;
                                let now = Date::now().as_millis();
                                if self.with(|q| q.has_work_for(sid, now)) || now >= until {
                                    let mut r = self.with(|q| sidecar_link::lease_reply(q, sid, free_slots, now, &t));
                                    crate::engine_keys::open_offers(&mut r.body, crate::glue::sealing_key(&self.env).as_ref());
                                    self.persist(now, &t).await?;
                                    break (r.status, r.body);
                                }
                            }
                        }
                    }
                }
                Err(e) => (400, json!({"error": format!("bad envelope: {e}")})),
            },
            other => (404, json!({"error": format!("no dispatch op {other}")})),
        };
        self.persist(Date::now().as_millis(), &t).await?;
        self.wake_polls();
        // Turns first: a call.completed webhook may point at the transcript.
        self.append_turns(&turns).await;
        self.mirror(&updates).await;
        Ok(Response::from_json(&reply)?.with_status(status))
    }

    async fn alarm(&self) -> Result<Response> {
        let t = timings(&self.env);
        self.ensure_loaded().await?;
        let now = Date::now().as_millis();
        let updates = self.tick(now, &t).await;
        self.persist(now, &t).await?;
        self.wake_polls();
        self.mirror(&updates).await;
        Response::ok("")
    }
}

/// The Worker's handle on the region queues.
pub struct WorkersDispatcher<'a>(pub &'a Env);

impl WorkersDispatcher<'_> {
    async fn call(&self, region: &str, op: &str, body: &Value) -> std::result::Result<(u16, Value), StoreError> {
        let unavailable = |e: worker::Error| StoreError::Unavailable(format!("dispatch {region}{op}: {e}"));
        let stub = self.0.durable_object(DO_BINDING).and_then(|ns| ns.id_from_name(region)?.get_stub()).map_err(unavailable)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_body(Some(body.to_string().into()));
        let req = Request::new_with_init(&format!("https://dispatch{op}"), &init).map_err(unavailable)?;
        let mut resp = stub.fetch_with_request(req).await.map_err(unavailable)?;
        let status = resp.status_code();
        let value = resp.json::<Value>().await.map_err(unavailable)?;
        Ok((status, value))
    }
}

impl Dispatcher for WorkersDispatcher<'_> {
    async fn enqueue(&self, region: &str, call: &QueuedCall) -> std::result::Result<EnqueueOutcome, StoreError> {
        let body = serde_json::to_value(call).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        match self.call(region, "/enqueue", &body).await? {
            (200, v) => serde_json::from_value(v).map_err(|e| StoreError::Corrupt(format!("enqueue answer: {e}"))),
            (s, v) => Err(StoreError::Unavailable(format!("enqueue answered {s}: {v}"))),
        }
    }

    async fn cancel(&self, region: &str, call_id: &str) -> std::result::Result<CancelOutcome, StoreError> {
        let (_, v) = self.call(region, "/cancel", &json!({"call_id": call_id})).await?;
        Ok(match v["outcome"].as_str() {
            Some("cancelled") => CancelOutcome::Cancelled,
            Some("signalled") => CancelOutcome::Signalled { sidecar_id: v["sidecar_id"].as_str().unwrap_or_default().to_string() },
            _ => CancelOutcome::Unknown,
        })
    }

    async fn sidecar(&self, region: &str, envelope: &SidecarEnvelope) -> std::result::Result<(u16, Value), StoreError> {
        let body = serde_json::to_value(envelope).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.call(region, "/sidecar", &body).await
    }
}
