//! The per-region dispatch queue, sans-IO. The `DispatchQueue` Durable Object
//! (glue) owns one [`Queue`], feeds it requests and the clock, persists
//! it, and carries out the [`CallUpdate`]s it returns. Exactness comes from the
//! object being the single writer for its region: every operation here is a
//! synchronous mutation with no I/O in the middle.
//!
//! Life of a call in the queue: `waiting` (ready at a time: now, schedule_at,
//! or a retry) -> `leased` to a polling sidecar until its ack deadline -> `held`
//! once acked, until the sidecar reports it ended or is presumed dead.

use crate::dispatch::queued_call::{OfferBody, QueuedCall};
use crate::engine_keys::SealingKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use voxline_shared::sidecar_link::{Offer, SecretText};
use voxline_shared::{CallStatus, EndedReason};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchTimings {
    /// How long a sidecar has to ack an offer before it is re-leased.
    pub ack_deadline_ms: u64,
    /// Silence after which a sidecar is presumed dead.
    pub dead_after_ms: u64,
    /// Longest long-poll the edge holds open.
    pub max_wait_ms: u64,
    /// Added to a call's `max_seconds` for how long an attempt can still be
    /// running on a sidecar that stopped answering (ringing, setup): only
    /// then is it presumed over and retried, unless the sidecar says sooner.
    pub lost_margin_ms: u64,
}

impl Default for DispatchTimings {
    fn default() -> Self {
        DispatchTimings {
            ack_deadline_ms: 10_000,
            dead_after_ms: 30_000,
            max_wait_ms: 25_000,
            lost_margin_ms: 60_000,
        }
    }
}

/// What the queue did with a new call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum EnqueueVerdict {
    Accepted,
    /// This call id is already queued (a retried enqueue): nothing changed.
    AlreadyKnown,
    /// Another call of the same tenant and agent to the same number is
    /// waiting, leased or held: refused.
    Duplicate {
        call_id: String,
    },
    /// `reject_over_cap` and the tenant's calls in flight plus those already
    /// due and waiting reach its `max_concurrent_calls`: refused.
    ConcurrencyLimit {
        limit: u32,
        active: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub lease_id: String,
    pub sidecar_id: String,
    pub deadline_ms: u64,
    pub call: QueuedCall,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Held {
    pub sidecar_id: String,
    /// The lease it was acked under: a repeated ack of it (the first answer
    /// was lost) is answered the same, never refused.
    #[serde(default)]
    pub lease_id: String,
    pub since_ms: u64,
    /// Highest event sequence applied (duplicates are ignored).
    pub last_seq: Option<u32>,
    /// When the last applied event happened, as [`event_time`] placed it:
    /// the next one is placed after it.
    #[serde(default)]
    pub last_at_ms: Option<u64>,
    pub call: QueuedCall,
}

/// When a held call's event happened, for its record (`ringing_at`,
/// `answered_at`, ...): the time the sidecar stamped it (`reported_ms`, its
/// clock), not when its batch reached us, so a 180 and a 200 sent in one
/// batch keep their real times. Kept within what we know: not before the
/// call was held (`since_ms`), not after `now`, and at least 1 ms after the
/// previous event of the attempt (`last_ms`), so the order survives even when
/// two events share a millisecond (or a skewed sidecar clock) and the
/// timestamps sort the way the events happened.
pub fn event_time(reported_ms: u64, since_ms: u64, last_ms: Option<u64>, now: u64) -> u64 {
    let floor = last_ms.map_or(since_ms, |l| l.saturating_add(1).max(since_ms));
    reported_ms.min(now).max(floor)
}

/// A held call whose sidecar stopped answering. It may still be talking to
/// the callee (a partition, not a crash), so it is not dialled again until
/// that sidecar confirms it has ended (it reports the end, or polls without
/// listing it) or `release_at_ms` passes, when it surely has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stranded {
    pub held: Held,
    pub release_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SidecarSeen {
    pub last_seen_ms: u64,
    /// As registered (the sidecar's `capacity`).
    pub capacity: u32,
    /// When the queue last answered one of its lease polls (the start of a
    /// turnaround, see [`crate::dispatch::link_timing`]).
    #[serde(default)]
    pub last_answered_ms: Option<u64>,
    /// The free slots its last lease poll reported.
    #[serde(default)]
    pub free_slots: Option<u32>,
}

/// A sidecar of the region as the operators' API shows it: what it
/// registered, what it reported last, what the queue holds for it, and its
/// link's turnaround samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SidecarStatus {
    pub sidecar_id: String,
    pub capacity: u32,
    pub free_slots: Option<u32>,
    /// Calls this queue has it holding (acked offers, inbound calls).
    pub active_calls: u32,
    /// Offers leased to it and not acked yet.
    pub offered_calls: u32,
    pub last_seen_ms: u64,
    pub samples: Vec<crate::dispatch::link_timing::LinkSample>,
}

/// A command for a sidecar, delivered through its next or open poll: the
/// protocol's own type.
pub use voxline_shared::sidecar_link::Command;

/// An offer as sent to a sidecar: the lease data and the call's offer body,
/// its sealed engine key opened (or, when it cannot be, the offer says
/// `engine_key_unavailable` so the sidecar fails the engine rather than fall
/// back to its own key).
pub fn offer(lease: &Lease, body: OfferBody, key: Option<&SealingKey>) -> Offer {
    let (engine_api_key, engine_key_unavailable) = match &body.engine_api_key_sealed {
        None => (None, false),
        Some(sealed) => match key.map(|k| k.open(&lease.call.tenant_id, sealed)) {
            Some(Ok(clear)) => (Some(SecretText::new(clear)), false),
            Some(Err(_)) | None => (None, true),
        },
    };
    Offer {
        lease_id: lease.lease_id.clone(),
        call_id: lease.call.call_id.clone(),
        tenant_id: lease.call.tenant_id.clone(),
        attempt: lease.call.attempt,
        phone: body.phone,
        caller_name: body.caller_name,
        caller_number: body.caller_number,
        agent_id: body.agent_id,
        system_prompt: body.system_prompt,
        voice: body.voice,
        language: body.language,
        engine: body.engine.into(),
        model: body.model,
        max_seconds: body.max_seconds,
        silence_timeout_seconds: body.silence_timeout_seconds,
        record: body.record,
        metadata: body.metadata,
        engine_api_key,
        engine_base_url: body.engine_base_url,
        engine_key_unavailable,
        ack_deadline_ms: lease.deadline_ms,
        first_speaker: body.first_speaker,
        analysis: body.analysis,
        amd: body.amd,
        amd_message: body.amd_message,
        tools: body.tools,
        connect: body.connect,
    }
}

/// Takes the offer body (prompt, metadata, engine settings: up to tens of
/// kilobytes) out of a call, so the queue's own state stays small whatever
/// the calls carry; the Durable Object keeps it in a row of its own, read
/// only when the call is offered.
pub fn take_offer_body(call: &mut QueuedCall) -> Option<OfferBody> {
    call.offer.take()
}

/// A change the tenant's call store must apply to the call record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallUpdate {
    pub call_id: String,
    pub tenant_id: String,
    pub at_ms: u64,
    pub change: CallChange,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CallChange {
    /// A scheduled call became due.
    Released,
    /// Leased and acked: a sidecar is dialing.
    Dialing {
        sidecar_id: String,
        attempt: u32,
    },
    Ringing,
    Answered,
    /// The attempt ended and another will follow at `retry_at_ms`.
    RetryScheduled {
        status: CallStatus,
        reason: EndedReason,
        sip_code: Option<u16>,
        retry_at_ms: u64,
    },
    /// Final.
    Ended {
        status: CallStatus,
        reason: EndedReason,
        sip_code: Option<u16>,
    },
}

/// What a sidecar reports about a call it holds.
/// A sidecar's `Retry-After` is honoured up to an hour (the sidecar bounds
/// it too; this keeps a hostile sidecar from parking a call for years).
const MAX_RETRY_AFTER_S: u32 = 3_600;

/// How one attempt ended, as [`Queue::end_attempt`] weighs it.
#[derive(Debug, Clone, Copy)]
struct AttemptEnd {
    status: CallStatus,
    reason: EndedReason,
    sip_code: Option<u16>,
    retry_after_s: Option<u32>,
}

impl AttemptEnd {
    /// The sidecar went silent or dropped the call: retryable like any failure.
    fn media_lost() -> Self {
        AttemptEnd {
            status: CallStatus::Failed,
            reason: EndedReason::MediaLost,
            sip_code: None,
            retry_after_s: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum HeldEvent {
    Ringing,
    Answered,
    Ended {
        status: CallStatus,
        reason: EndedReason,
        sip_code: Option<u16>,
        /// The sidecar's "dial again no earlier than" (SIP `Retry-After`).
        retry_after_s: Option<u32>,
    },
    /// Transcript turns and the like: no state change.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckVerdict {
    /// The call is the sidecar's now.
    Held,
    /// Rejected by the sidecar: back to the front of the queue.
    Requeued,
    /// Unknown or expired lease (already re-leased): the sidecar must drop it.
    Stale,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum CancelVerdict {
    /// Was waiting: removed; the call is cancelled.
    Cancelled,
    /// Leased or held: a hangup command waits for the sidecar.
    Signalled { sidecar_id: String },
    /// The queue does not know it (ended, or another region).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventVerdict {
    Applied,
    Duplicate,
    /// Not held by this sidecar (stale, or never leased to it).
    NotHeld,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    pub next_lease: u64,
    pub waiting: crate::dispatch::waiting_line::WaitingLine,
    pub leased: Vec<Lease>,
    pub held: BTreeMap<String, Held>,
    pub sidecars: BTreeMap<String, SidecarSeen>,
    pub commands: BTreeMap<String, Vec<Command>>,
    /// The time `tick` last ran (scheduled releases are reported once).
    #[serde(default)]
    pub last_tick_ms: u64,
    /// Signature nonces seen within the replay window: nonce -> forget-after ms.
    #[serde(default)]
    pub nonces: BTreeMap<String, u64>,
    /// Sidecars that said they are leaving -> when. A long-poll still open on
    /// their behalf gets nothing; kept for `dead_after_ms`.
    #[serde(default)]
    pub departed: BTreeMap<String, u64>,
    /// Held calls of sidecars presumed dead, by call id (see [`Stranded`]).
    #[serde(default)]
    pub stranded: BTreeMap<String, Stranded>,
    /// Text messages waiting for a sidecar or out with one (their own rows).
    #[serde(default)]
    pub messages: crate::dispatch::message_line::MessageLine,
    /// The link's turnaround samples (their own rows).
    #[serde(skip)]
    pub link: crate::dispatch::link_timing::LinkTiming,
    /// Calls changed since the last [`Queue::take_changes`]: the
    /// Durable Object rewrites only their rows.
    #[serde(skip)]
    pub changed_calls: std::collections::BTreeSet<String>,
    /// Nonces remembered since then (nonce, forget after).
    #[serde(skip)]
    pub new_nonces: Vec<(String, u64)>,
}

/// The small part of a dispatch queue that is not one row per call: sidecars,
/// their pending commands, the lease counter, the clock of the last tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueMeta {
    pub next_lease: u64,
    pub sidecars: BTreeMap<String, SidecarSeen>,
    pub commands: BTreeMap<String, Vec<Command>>,
    pub last_tick_ms: u64,
    pub departed: BTreeMap<String, u64>,
}

/// A call id and its new row (`None`: delete the row).
pub type CallRowChange = (String, Option<CallRow>);

/// Where a call is in the queue, as stored in its row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CallRow {
    Waiting { call: QueuedCall },
    Leased { lease: Lease },
    Held { held: Held },
    Stranded { stranded: Stranded },
}

/// A call due within this long counts as starting now for `on_concurrency_limit: reject`.
pub const REJECT_HORIZON_MS: u64 = 60_000;

/// At most this many of a poll's `held_calls` are checked (a sidecar's capacity is far lower).
const MAX_RECONCILED: usize = 1_024;

impl Queue {
    fn touch(&mut self, call_id: &str) {
        self.changed_calls.insert(call_id.to_string());
    }

    /// The call's row as it is now (None: the queue is done with it).
    pub fn row_of(&self, call_id: &str) -> Option<CallRow> {
        if let Some(c) = self.waiting.get(call_id) {
            return Some(CallRow::Waiting { call: c.clone() });
        }
        if let Some(l) = self.leased.iter().find(|l| l.call.call_id == call_id) {
            return Some(CallRow::Leased { lease: l.clone() });
        }
        if let Some(h) = self.held.get(call_id) {
            return Some(CallRow::Held { held: h.clone() });
        }
        self.stranded.get(call_id).map(|s| CallRow::Stranded {
            stranded: s.clone(),
        })
    }

    /// What changed since the last call: the calls whose rows to rewrite (or
    /// delete) and the nonces to store. The meta part is small and rewritten whole.
    pub fn take_changes(&mut self) -> (Vec<CallRowChange>, Vec<(String, u64)>) {
        let ids = std::mem::take(&mut self.changed_calls);
        let rows = ids.into_iter().map(|id| {
            let row = self.row_of(&id);
            (id, row)
        });
        (rows.collect(), std::mem::take(&mut self.new_nonces))
    }

    pub fn meta(&self) -> QueueMeta {
        QueueMeta {
            next_lease: self.next_lease,
            sidecars: self.sidecars.clone(),
            commands: self.commands.clone(),
            last_tick_ms: self.last_tick_ms,
            departed: self.departed.clone(),
        }
    }

    /// A queue back from its rows: waiting calls in the order given (the
    /// order their rows were last written), nonces still in their window.
    pub fn from_rows(meta: QueueMeta, rows: Vec<CallRow>, nonces: Vec<(String, u64)>) -> Queue {
        let mut q = Queue {
            next_lease: meta.next_lease,
            sidecars: meta.sidecars,
            commands: meta.commands,
            last_tick_ms: meta.last_tick_ms,
            departed: meta.departed,
            nonces: nonces.into_iter().collect(),
            ..Queue::default()
        };
        for row in rows {
            match row {
                CallRow::Waiting { call } => q.waiting.push_back(call),
                CallRow::Leased { lease } => q.leased.push(lease),
                CallRow::Held { held } => {
                    q.held.insert(held.call.call_id.clone(), held);
                }
                CallRow::Stranded { stranded } => {
                    q.stranded
                        .insert(stranded.held.call.call_id.clone(), stranded);
                }
            }
        }
        q
    }

    /// Every call it holds, as rows (a queue stored as one value before rows existed).
    pub fn all_rows(&mut self) {
        let ids: Vec<String> = self
            .waiting
            .iter()
            .map(|c| c.call_id.clone())
            .chain(self.leased.iter().map(|l| l.call.call_id.clone()))
            .chain(self.held.keys().cloned())
            .chain(self.stranded.keys().cloned())
            .collect();
        self.changed_calls.extend(ids);
        self.new_nonces
            .extend(self.nonces.iter().map(|(n, at)| (n.clone(), *at)));
    }

    pub fn enqueue(&mut self, call: QueuedCall) -> EnqueueVerdict {
        if self.knows(&call.call_id) {
            return EnqueueVerdict::AlreadyKnown; // idempotent: a retried enqueue must not dial twice
        }
        if let Some(sidecar_id) = call.held_by.clone() {
            return self.hold_inbound(call, sidecar_id);
        }
        if let Some(other) = self.in_progress_to(&call) {
            return EnqueueVerdict::Duplicate {
                call_id: other.to_string(),
            };
        }
        // The newest setting governs the tenant's waiting calls too, so a
        // changed cap takes effect with the next call placed.
        let recapped = self
            .waiting
            .set_tenant_cap(&call.tenant_id, call.max_concurrent);
        self.changed_calls.extend(recapped);
        // Reject mode judges a call that would start now against the tenant's
        // load now: calls in flight plus calls due (they take the free slots
        // first). "Now" is the queue's clock (`tick` ran just before), not the
        // creating Worker's, whose clocks differ by milliseconds between
        // concurrent requests: judged by those, a later-stamped call missed an
        // earlier-stamped one queued before it and the cap let 4-6 of 20
        // through instead of 3. A call scheduled for later is not refused for
        // today's load; it waits for a slot at its time like a queued call.
        let now = self.last_tick_ms.max(1);
        let starts_now = call.ready_at_ms <= now + REJECT_HORIZON_MS;
        if let (true, true, Some(limit)) = (call.reject_over_cap, starts_now, call.max_concurrent) {
            let due = self
                .waiting
                .of_tenant(&call.tenant_id)
                .filter(|c| c.ready_at_ms <= now + REJECT_HORIZON_MS)
                .count() as u32;
            let active = self.in_flight(&call.tenant_id) + due;
            if active >= limit {
                return EnqueueVerdict::ConcurrencyLimit { limit, active };
            }
        }
        let mut call = call;
        call.reject_over_cap = false;
        self.touch(&call.call_id);
        self.waiting.push_back(call);
        EnqueueVerdict::Accepted
    }

    /// An inbound call its sidecar is ringing: held by that sidecar from
    /// now, exactly like an acked offer (its events, hangup commands, loss
    /// and reconciliation are the same), if the tenant is under its cap.
    /// Waiting calls do not count against it: a caller is answered now or
    /// never, and a queued outbound call waits for the next free slot anyway.
    fn hold_inbound(&mut self, mut call: QueuedCall, sidecar_id: String) -> EnqueueVerdict {
        if let Some(limit) = call.max_concurrent {
            let active = self.in_flight(&call.tenant_id);
            if active >= limit {
                return EnqueueVerdict::ConcurrencyLimit { limit, active };
            }
        }
        let now = self.last_tick_ms;
        call.reject_over_cap = false;
        call.retries = 0;
        self.touch(&call.call_id);
        self.held.insert(
            call.call_id.clone(),
            Held {
                sidecar_id,
                lease_id: format!("inbound_{}", call.call_id),
                since_ms: now,
                last_seq: None,
                last_at_ms: None,
                call,
            },
        );
        EnqueueVerdict::Accepted
    }

    /// The tenant's calls leased or held: what its concurrency cap counts.
    pub fn in_flight(&self, tenant_id: &str) -> u32 {
        self.live_calls()
            .filter(|c| c.tenant_id == tenant_id)
            .count() as u32
    }

    /// Calls a sidecar has or may still have: leased, held, stranded.
    fn live_calls(&self) -> impl Iterator<Item = &QueuedCall> {
        self.leased
            .iter()
            .map(|l| &l.call)
            .chain(self.held.values().map(|h| &h.call))
            .chain(self.stranded.values().map(|s| &s.held.call))
    }

    /// Calls leased or held, per tenant.
    fn in_flight_by_tenant(&self) -> BTreeMap<String, u32> {
        let mut n = BTreeMap::new();
        for c in self.live_calls() {
            *n.entry(c.tenant_id.clone()).or_insert(0) += 1;
        }
        n
    }

    /// The waiting call `lease` would hand out next: due, its tenant under
    /// its cap, oldest due first (ties: queue order).
    fn next_offerable(
        &self,
        sidecar_id: &str,
        now: u64,
        in_flight: &BTreeMap<String, u32>,
    ) -> Option<String> {
        let under_cap = |c: &QueuedCall| {
            c.max_concurrent
                .is_none_or(|cap| in_flight.get(&c.tenant_id).copied().unwrap_or(0) < cap)
        };
        self.waiting
            .due(now)
            .find(|c| under_cap(c) && self.may_lease(sidecar_id, c))
            .map(|c| c.call_id.clone())
    }

    /// Whether `sidecar_id` may take `call`: any may, unless the call names
    /// its sidecars and one of them is registered (not departed).
    fn may_lease(&self, sidecar_id: &str, call: &QueuedCall) -> bool {
        call.sidecars.is_empty()
            || call.sidecars.iter().any(|s| s == sidecar_id)
            || !call
                .sidecars
                .iter()
                .any(|s| self.sidecars.contains_key(s) && !self.departed.contains_key(s))
    }

    /// Every call this queue has not finished with counts as in progress:
    /// waiting (queued, scheduled, between retries), leased, held (live).
    fn in_progress_to(&self, call: &QueuedCall) -> Option<&str> {
        if call.phone.is_empty() {
            return None;
        }
        let same = |c: &QueuedCall| {
            c.tenant_id == call.tenant_id && c.agent_id == call.agent_id && c.phone == call.phone
        };
        if let Some(id) = self
            .waiting
            .conversation(&call.tenant_id, &call.agent_id, &call.phone)
        {
            return Some(id);
        }
        self.live_calls()
            .find(|c| same(c))
            .map(|c| c.call_id.as_str())
    }

    pub fn knows(&self, call_id: &str) -> bool {
        self.waiting.contains(call_id)
            || self.leased.iter().any(|l| l.call.call_id == call_id)
            || self.held.contains_key(call_id)
            || self.stranded.contains_key(call_id)
    }

    /// The sidecar is leaving: nothing more for it. Its unacked offers go back
    /// to the front of the queue, the calls it still holds end `media_lost`.
    pub fn deregister(&mut self, sidecar_id: &str, now: u64) -> Vec<CallUpdate> {
        self.sidecars.remove(sidecar_id);
        self.commands.remove(sidecar_id);
        self.departed.insert(sidecar_id.to_string(), now);
        self.requeue_leases(|l| l.sidecar_id == sidecar_id);
        let lost: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| h.sidecar_id == sidecar_id)
            .map(|(id, _)| id.clone())
            .collect();
        let mut updates = self.lose(lost, now);
        // It hung up its calls before leaving: stranded ones are over too.
        let gone = self.stranded_of(sidecar_id);
        updates.extend(self.lose(gone, now));
        updates
    }

    /// The region's live sidecars (registered, not departed), by id.
    pub fn sidecar_status(&self) -> Vec<SidecarStatus> {
        self.sidecars
            .iter()
            .map(|(id, seen)| SidecarStatus {
                sidecar_id: id.clone(),
                capacity: seen.capacity,
                free_slots: seen.free_slots,
                active_calls: self.held.values().filter(|h| &h.sidecar_id == id).count() as u32,
                offered_calls: self.leased.iter().filter(|l| &l.sidecar_id == id).count() as u32,
                last_seen_ms: seen.last_seen_ms,
                samples: self.link.samples(id),
            })
            .collect()
    }

    /// A lease poll of a registered sidecar arrived: its turnaround sample
    /// and the free slots it reports.
    pub fn poll_arrived(&mut self, sidecar_id: &str, free_slots: u32, now: u64) {
        let Some(seen) = self.sidecars.get_mut(sidecar_id) else {
            return;
        };
        seen.free_slots = Some(free_slots);
        let answered = seen.last_answered_ms;
        self.link.poll_arrived(sidecar_id, answered, now);
    }

    /// The queue answers a lease poll of `sidecar_id` now.
    pub fn poll_answered(&mut self, sidecar_id: &str, now: u64) {
        if let Some(seen) = self.sidecars.get_mut(sidecar_id) {
            seen.last_answered_ms = Some(now);
        }
    }

    pub fn register(&mut self, sidecar_id: &str, capacity: u32, now: u64) {
        self.departed.remove(sidecar_id);
        let seen = self
            .sidecars
            .entry(sidecar_id.to_string())
            .or_insert(SidecarSeen {
                last_seen_ms: now,
                capacity,
                last_answered_ms: None,
                free_slots: None,
            });
        seen.last_seen_ms = now;
        seen.capacity = capacity;
    }

    /// One poll: marks the sidecar alive, hands it up to `free_slots` due
    /// calls (oldest due first) and its pending commands.
    pub fn lease(
        &mut self,
        sidecar_id: &str,
        free_slots: u32,
        now: u64,
        t: &DispatchTimings,
    ) -> (Vec<Lease>, Vec<Command>) {
        if self.departed.contains_key(sidecar_id) {
            // A poll left open by a sidecar that has gone: nobody would ack.
            return (Vec::new(), Vec::new());
        }
        let seen = self
            .sidecars
            .entry(sidecar_id.to_string())
            .or_insert(SidecarSeen {
                last_seen_ms: now,
                capacity: free_slots,
                last_answered_ms: None,
                free_slots: None,
            });
        seen.last_seen_ms = now;
        let commands = self.commands.remove(sidecar_id).unwrap_or_default();
        let mut offers = Vec::new();
        let mut in_flight = self.in_flight_by_tenant();
        while (offers.len() as u32) < free_slots {
            let Some(call_id) = self.next_offerable(sidecar_id, now, &in_flight) else {
                break;
            };
            let Some(call) = self.waiting.remove(&call_id) else {
                break;
            };
            self.touch(&call.call_id);
            *in_flight.entry(call.tenant_id.clone()).or_insert(0) += 1;
            self.next_lease += 1;
            let lease = Lease {
                lease_id: format!("lease_{:x}", self.next_lease),
                sidecar_id: sidecar_id.to_string(),
                deadline_ms: now + t.ack_deadline_ms,
                call,
            };
            self.leased.push(lease.clone());
            offers.push(lease);
        }
        (offers, commands)
    }

    pub fn ack(
        &mut self,
        sidecar_id: &str,
        lease_id: &str,
        accepted: bool,
        now: u64,
    ) -> (AckVerdict, Option<CallUpdate>) {
        let Some(i) = self
            .leased
            .iter()
            .position(|l| l.lease_id == lease_id && l.sidecar_id == sidecar_id)
        else {
            // The same ack again after its answer was lost: still this sidecar's call.
            let again = accepted
                && self
                    .held
                    .values()
                    .any(|h| h.lease_id == lease_id && h.sidecar_id == sidecar_id);
            return (
                if again {
                    AckVerdict::Held
                } else {
                    AckVerdict::Stale
                },
                None,
            );
        };
        let lease = self.leased.remove(i);
        self.touch(&lease.call.call_id);
        if !accepted {
            // Front of the line: it was due before anything queued since.
            self.waiting.push_front(lease.call);
            return (AckVerdict::Requeued, None);
        }
        let update = CallUpdate {
            call_id: lease.call.call_id.clone(),
            tenant_id: lease.call.tenant_id.clone(),
            at_ms: now,
            change: CallChange::Dialing {
                sidecar_id: sidecar_id.to_string(),
                attempt: lease.call.attempt,
            },
        };
        self.held.insert(
            lease.call.call_id.clone(),
            Held {
                sidecar_id: sidecar_id.to_string(),
                lease_id: lease.lease_id,
                since_ms: now,
                last_seq: None,
                last_at_ms: None,
                call: lease.call,
            },
        );
        (AckVerdict::Held, Some(update))
    }

    pub fn cancel(&mut self, call_id: &str) -> CancelVerdict {
        if self.waiting.remove(call_id).is_some() {
            self.touch(call_id);
            return CancelVerdict::Cancelled;
        }
        // Offered but not acked: the lease goes, so the sidecar's ack is
        // refused (409) and it never dials; nothing waits on a lease expiry.
        if let Some(i) = self.leased.iter().position(|l| l.call.call_id == call_id) {
            self.leased.remove(i);
            self.touch(call_id);
            return CancelVerdict::Cancelled;
        }
        // Held, or stranded: the command waits for that sidecar to come back.
        let holder = self
            .held
            .get(call_id)
            .or_else(|| self.stranded.get(call_id).map(|s| &s.held))
            .map(|h| h.sidecar_id.clone());
        match holder {
            Some(sidecar_id) => {
                let cmds = self.commands.entry(sidecar_id.clone()).or_default();
                let cmd = Command::Hangup {
                    call_id: call_id.to_string(),
                };
                if !cmds.contains(&cmd) {
                    cmds.push(cmd);
                }
                CancelVerdict::Signalled { sidecar_id }
            }
            None => CancelVerdict::Unknown,
        }
    }

    /// [`Queue::event_at`] for an event that happened `now`.
    pub fn event(
        &mut self,
        sidecar_id: &str,
        call_id: &str,
        attempt: u32,
        seq: u32,
        ev: HeldEvent,
        now: u64,
    ) -> (EventVerdict, Option<CallUpdate>) {
        self.event_at(sidecar_id, call_id, attempt, seq, ev, now, now)
    }

    /// Applies one event of a held call, which the sidecar stamped
    /// `reported_ms` (placed by [`event_time`]). `seq` orders a call's events;
    /// a seq at or below the last applied one is a duplicate (at-least-once
    /// delivery). Events of an earlier attempt (late deliveries) do not touch
    /// the current one.
    #[allow(clippy::too_many_arguments)]
    pub fn event_at(
        &mut self,
        sidecar_id: &str,
        call_id: &str,
        attempt: u32,
        seq: u32,
        ev: HeldEvent,
        reported_ms: u64,
        now: u64,
    ) -> (EventVerdict, Option<CallUpdate>) {
        // A stranded call's sidecar is back and reporting on it: held again.
        if self
            .stranded
            .get(call_id)
            .is_some_and(|s| s.held.sidecar_id == sidecar_id && s.held.call.attempt == attempt)
        {
            self.touch(call_id);
            if let Some(s) = self.stranded.remove(call_id) {
                self.held.insert(call_id.to_string(), s.held);
            }
        }
        let Some(held) = self
            .held
            .get_mut(call_id)
            .filter(|h| h.sidecar_id == sidecar_id && h.call.attempt == attempt)
        else {
            return (EventVerdict::NotHeld, None);
        };
        if held.last_seq.is_some_and(|last| seq <= last) {
            return (EventVerdict::Duplicate, None);
        }
        held.last_seq = Some(seq);
        let at = event_time(reported_ms, held.since_ms, held.last_at_ms, now);
        held.last_at_ms = Some(at);
        self.changed_calls.insert(call_id.to_string());
        let Some(held) = self.held.get(call_id) else {
            return (EventVerdict::NotHeld, None);
        };
        let update = |call: &QueuedCall, change| CallUpdate {
            call_id: call.call_id.clone(),
            tenant_id: call.tenant_id.clone(),
            at_ms: at,
            change,
        };
        let change = match ev {
            HeldEvent::Ringing => CallChange::Ringing,
            HeldEvent::Answered => CallChange::Answered,
            HeldEvent::Other => return (EventVerdict::Applied, None),
            HeldEvent::Ended {
                status,
                reason,
                sip_code,
                retry_after_s,
            } => {
                let held = self.held.remove(call_id).expect("checked above");
                // Retries are timed from now; `ended_at` is when it ended.
                let end = AttemptEnd {
                    status,
                    reason,
                    sip_code,
                    retry_after_s,
                };
                let mut ended = self.end_attempt(held.call, end, now);
                ended.at_ms = at;
                return (EventVerdict::Applied, Some(ended));
            }
        };
        (EventVerdict::Applied, Some(update(&held.call, change)))
    }

    /// Takes back the leases `pick` chooses: their calls return to the front
    /// of the line, in the order they were leased.
    fn requeue_leases(&mut self, pick: impl Fn(&Lease) -> bool) {
        let (back, kept): (Vec<Lease>, Vec<Lease>) = std::mem::take(&mut self.leased)
            .into_iter()
            .partition(|l| pick(l));
        self.leased = kept;
        for lease in back.into_iter().rev() {
            self.touch(&lease.call.call_id);
            self.waiting.push_front(lease.call);
        }
    }

    /// The stranded calls `sidecar_id` was holding.
    fn stranded_of(&self, sidecar_id: &str) -> Vec<String> {
        self.stranded
            .iter()
            .filter(|(_, s)| s.held.sidecar_id == sidecar_id)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Ends these held or stranded calls' attempts as `media_lost`: lost
    /// media is retryable like any failure, with its own reason.
    fn lose(&mut self, call_ids: Vec<String>, now: u64) -> Vec<CallUpdate> {
        let mut updates = Vec::new();
        for call_id in call_ids {
            let held = self
                .held
                .remove(&call_id)
                .or_else(|| self.stranded.remove(&call_id).map(|s| s.held));
            if let Some(held) = held {
                updates.push(self.end_attempt(held.call, AttemptEnd::media_lost(), now));
            }
        }
        updates
    }

    /// Ends one attempt; retries per the call's policy when the outcome
    /// allows (no answer, busy, failure, lost media; not a decline or a
    /// definite SIP refusal: `voxline_shared::sip_outcome`), else final.
    fn end_attempt(&mut self, mut call: QueuedCall, end: AttemptEnd, now: u64) -> CallUpdate {
        let AttemptEnd {
            status,
            reason,
            sip_code,
            retry_after_s,
        } = end;
        // One table for both halves: 603 and definite 4xx/6xx are final.
        let retryable = voxline_shared::sip_outcome::worth_redialling(status, reason, sip_code);
        let (call_id, tenant_id) = (call.call_id.clone(), call.tenant_id.clone());
        self.touch(&call_id);
        let change = if retryable && call.attempt <= call.retries {
            // Never sooner than the trunk or callee asked (Retry-After, bounded).
            let asked_ms = u64::from(retry_after_s.unwrap_or(0).min(MAX_RETRY_AFTER_S)) * 1_000;
            let after_delay = now + call.retry_delay_ms.max(asked_ms);
            let retry_at_ms = call
                .calling_window
                .as_ref()
                .and_then(|w| w.earliest_start(after_delay))
                .unwrap_or(after_delay);
            call.attempt += 1;
            call.ready_at_ms = retry_at_ms;
            self.waiting.push_back(call);
            CallChange::RetryScheduled {
                status,
                reason,
                sip_code,
                retry_at_ms,
            }
        } else {
            CallChange::Ended {
                status,
                reason,
                sip_code,
            }
        };
        CallUpdate {
            call_id,
            tenant_id,
            at_ms: now,
            change,
        }
    }

    /// Time passes: expired leases return to the queue, silent sidecars are
    /// presumed dead (their calls end as `media_lost`, retried per policy),
    /// and scheduled calls that became due are reported released.
    pub fn tick(&mut self, now: u64, t: &DispatchTimings) -> Vec<CallUpdate> {
        let last_tick = std::mem::replace(&mut self.last_tick_ms, now);
        self.nonces.retain(|_, forget_after| *forget_after > now);
        self.departed.retain(|_, at| *at + t.dead_after_ms > now);
        let mut updates = Vec::new();
        self.requeue_leases(|l| l.deadline_ms <= now);
        let dead: Vec<String> = self
            .sidecars
            .iter()
            .filter(|(_, s)| s.last_seen_ms + t.dead_after_ms <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for sidecar_id in dead {
            self.sidecars.remove(&sidecar_id);
            // Commands stay: a stranded call's hangup reaches it when it is back.
            let lost: Vec<String> = self
                .held
                .iter()
                .filter(|(_, h)| h.sidecar_id == sidecar_id)
                .map(|(id, _)| id.clone())
                .collect();
            for call_id in lost {
                self.touch(&call_id);
                if let Some(held) = self.held.remove(&call_id) {
                    let surely_over =
                        held.since_ms + u64::from(held.call.max_seconds) * 1_000 + t.lost_margin_ms;
                    self.stranded.insert(
                        call_id,
                        Stranded {
                            release_at_ms: surely_over.max(now),
                            held,
                        },
                    );
                }
            }
        }
        let over: Vec<String> = self
            .stranded
            .iter()
            .filter(|(_, s)| s.release_at_ms <= now)
            .map(|(id, _)| id.clone())
            .collect();
        updates.extend(self.lose(over, now));
        // Pending commands of sidecars that are neither known nor holding anything go.
        let holders: std::collections::BTreeSet<&str> = self
            .stranded
            .values()
            .map(|s| s.held.sidecar_id.as_str())
            .collect();
        let sidecars = &self.sidecars;
        self.commands
            .retain(|sid, _| sidecars.contains_key(sid) || holders.contains(sid.as_str()));
        // Scheduled first attempts that became due in (last_tick, now].
        for call in self.waiting.ready_between(last_tick, now) {
            if call.scheduled && call.attempt == 1 {
                updates.push(CallUpdate {
                    call_id: call.call_id.clone(),
                    tenant_id: call.tenant_id.clone(),
                    at_ms: now,
                    change: CallChange::Released,
                });
            }
        }
        updates
    }

    /// Records a request nonce; false when it was already seen (a replay).
    pub fn remember_nonce(&mut self, nonce: &str, now: u64, window_ms: u64) -> bool {
        self.nonces.retain(|_, forget_after| *forget_after > now);
        if self.nonces.contains_key(nonce) {
            return false;
        }
        // Kept for twice the window: the timestamp may be up to a window ahead.
        self.nonces.insert(nonce.to_string(), now + 2 * window_ms);
        self.new_nonces
            .push((nonce.to_string(), now + 2 * window_ms));
        true
    }

    /// A poll lists the calls the sidecar holds. A call we believe it has held
    /// for longer than `grace_ms` but that it does not list was lost (e.g. the
    /// sidecar restarted): end the attempt as `media_lost`, retried per policy.
    pub fn reconcile(
        &mut self,
        sidecar_id: &str,
        held_calls: &[String],
        now: u64,
        grace_ms: u64,
    ) -> Vec<CallUpdate> {
        let held_calls = &held_calls[..held_calls.len().min(MAX_RECONCILED)];
        let lost: Vec<String> = self
            .held
            .iter()
            .filter(|(id, h)| {
                h.sidecar_id == sidecar_id
                    && h.since_ms + grace_ms < now
                    && !held_calls.contains(id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut updates = self.lose(lost, now);
        // Its stranded calls: still running (the partition healed: held
        // again) or not (confirmed over: the attempt ends and may be retried).
        for call_id in self.stranded_of(sidecar_id) {
            let Some(s) = self.stranded.remove(&call_id) else {
                continue;
            };
            self.touch(&call_id);
            if held_calls.contains(&call_id) {
                self.held.insert(call_id, s.held);
            } else {
                updates.push(self.end_attempt(s.held.call, AttemptEnd::media_lost(), now));
            }
        }
        // Calls it runs that are not its own (any more): it must stop them.
        // (A call it accepted but whose ack is still on the way is leased to it.)
        let leased_here = |id: &String| {
            self.leased
                .iter()
                .any(|l| &l.call.call_id == id && l.sidecar_id == sidecar_id)
        };
        let foreign: Vec<String> = held_calls
            .iter()
            .filter(|id| {
                self.held
                    .get(*id)
                    .is_none_or(|h| h.sidecar_id != sidecar_id)
                    && !leased_here(id)
            })
            .cloned()
            .collect();
        for call_id in foreign {
            let cmds = self.commands.entry(sidecar_id.to_string()).or_default();
            let cmd = Command::Hangup { call_id };
            if !cmds.contains(&cmd) {
                cmds.push(cmd);
            }
        }
        updates
    }

    /// The next time `tick` has something to do, for the object's alarm.
    pub fn next_deadline(&self, now: u64, t: &DispatchTimings) -> Option<u64> {
        let leases = self.leased.iter().map(|l| l.deadline_ms);
        let sidecars = self
            .sidecars
            .values()
            .map(|s| s.last_seen_ms + t.dead_after_ms);
        let future_ready = self.waiting.next_ready_after(now);
        let stranded = self.stranded.values().map(|s| s.release_at_ms);
        leases
            .chain(sidecars)
            .chain(future_ready)
            .chain(stranded)
            .chain(self.messages.next_deadline())
            .min()
    }

    /// True when a poll of this sidecar would get something now.
    pub fn has_work_for(&self, sidecar_id: &str, now: u64) -> bool {
        // Same rule as `lease`: a capped tenant's calls must not wake a poll
        // that would then come back empty (and poll again at once). A departed
        // sidecar's open poll is answered (empty) at once.
        self.departed.contains_key(sidecar_id)
            || self.commands.get(sidecar_id).is_some_and(|c| !c.is_empty())
            || self.messages.has_waiting()
            || self
                .next_offerable(sidecar_id, now, &self.in_flight_by_tenant())
                .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T: DispatchTimings = DispatchTimings {
        ack_deadline_ms: 1_000,
        dead_after_ms: 5_000,
        max_wait_ms: 2_000,
        lost_margin_ms: 1_000,
    };

    fn call(id: &str, ready: u64, retries: u32) -> QueuedCall {
        QueuedCall {
            call_id: id.into(),
            tenant_id: "ten_1".into(),
            ready_at_ms: ready,
            attempt: 1,
            retries,
            retry_delay_ms: 60_000,
            offer: Some(OfferBody::example("+14155550100")),
            scheduled: ready > 0,
            agent_id: "agt_1".into(),
            // One number per call id, so only the duplicate test collides.
            phone: format!("+1415555{id}"),
            ..QueuedCall::default()
        }
    }

    fn capped(id: &str, tenant: &str, cap: u32) -> QueuedCall {
        QueuedCall {
            tenant_id: tenant.into(),
            max_concurrent: Some(cap),
            ..call(id, 0, 0)
        }
    }

    fn ids(offers: &[Lease]) -> Vec<&str> {
        offers.iter().map(|l| l.call.call_id.as_str()).collect()
    }

    #[test]
    fn a_call_naming_its_sidecars_goes_to_one_of_them_while_one_is_registered() {
        let mut q = Queue::default();
        q.register("s1", 2, 0);
        q.register("s2", 2, 0);
        q.enqueue(QueuedCall {
            sidecars: vec!["s2".into()],
            ..call("p1", 0, 0)
        });
        q.enqueue(call("a1", 0, 0));
        // s1 skips the person's call (it holds no phone of theirs).
        assert!(q.has_work_for("s1", 1));
        let (offers, _) = q.lease("s1", 2, 1, &T);
        assert_eq!(ids(&offers), ["a1"]);
        assert!(!q.has_work_for("s1", 1), "nothing else for s1");
        assert!(q.has_work_for("s2", 1));
        let (offers, _) = q.lease("s2", 2, 1, &T);
        assert_eq!(ids(&offers), ["p1"]);
        // With its sidecar gone, any sidecar takes it.
        let mut q = Queue::default();
        q.register("s1", 2, 0);
        q.enqueue(QueuedCall {
            sidecars: vec!["s9".into()],
            ..call("p2", 0, 0)
        });
        let (offers, _) = q.lease("s1", 2, 1, &T);
        assert_eq!(ids(&offers), ["p2"]);
    }

    #[test]
    fn a_tenant_at_its_cap_waits_while_others_are_served() {
        let mut q = Queue::default();
        for id in ["a1", "a2", "a3", "a4", "a5"] {
            assert_eq!(q.enqueue(capped(id, "ten_a", 2)), EnqueueVerdict::Accepted);
        }
        q.enqueue(QueuedCall {
            tenant_id: "ten_b".into(),
            ..call("b1", 0, 0)
        });
        // Ten free slots: two of ten_a's (oldest first), and ten_b's, which is not capped.
        let (o, _) = q.lease("s1", 10, 1, &T);
        assert_eq!(ids(&o), ["a1", "a2", "b1"]);
        assert!(!q.has_work_for("s1", 2), "capped calls do not wake polls");
        assert!(q.lease("s2", 10, 2, &T).0.is_empty());
        // Held calls count too; one ending frees exactly one slot.
        q.ack("s1", &o[0].lease_id, true, 3);
        q.ack("s1", &o[1].lease_id, true, 3);
        q.ack("s1", &o[2].lease_id, true, 3);
        assert!(q.lease("s1", 10, 4, &T).0.is_empty());
        let done = HeldEvent::Ended {
            status: CallStatus::Completed,
            reason: EndedReason::CalleeHangup,
            retry_after_s: None,
            sip_code: None,
        };
        q.event("s1", "a1", 1, 1, done, 5);
        assert!(q.has_work_for("s1", 6));
        let (o, _) = q.lease("s1", 10, 6, &T);
        assert_eq!(ids(&o), ["a3"]);
        // A rejected or expired offer gives its slot back.
        q.ack("s1", &o[0].lease_id, false, 7);
        assert_eq!(ids(&q.lease("s1", 10, 8, &T).0), ["a3"]);
        q.tick(8 + T.ack_deadline_ms, &T);
        assert_eq!(ids(&q.lease("s1", 10, 9 + T.ack_deadline_ms, &T).0), ["a3"]);
    }

    #[test]
    fn an_inbound_call_is_held_by_its_sidecar_at_once_and_counts_against_the_cap() {
        let mut q = Queue::default();
        q.tick(100, &T);
        let inbound = |id: &str| QueuedCall {
            held_by: Some("s1".into()),
            retries: 3,
            ..capped(id, "ten_a", 2)
        };
        assert_eq!(q.enqueue(inbound("in1")), EnqueueVerdict::Accepted);
        let held = &q.held["in1"];
        assert_eq!(
            (held.sidecar_id.as_str(), held.since_ms, held.call.retries),
            ("s1", 100, 0),
            "held from now by the ringing sidecar; a caller is never redialled"
        );
        assert_eq!(q.enqueue(inbound("in1")), EnqueueVerdict::AlreadyKnown);
        // An outbound call takes the second slot; a third caller is refused.
        assert_eq!(
            q.enqueue(capped("out1", "ten_a", 2)),
            EnqueueVerdict::Accepted
        );
        let (o, _) = q.lease("s1", 10, 101, &T);
        assert_eq!(ids(&o), ["out1"]);
        assert_eq!(
            q.enqueue(inbound("in2")),
            EnqueueVerdict::ConcurrencyLimit {
                limit: 2,
                active: 2
            }
        );
        assert!(!q.knows("in2"));
        // Its events are a held call's: the end frees the slot.
        let (v, u) = q.event("s1", "in1", 1, 1, HeldEvent::Answered, 102);
        assert_eq!(
            (v, u.map(|u| u.change)),
            (EventVerdict::Applied, Some(CallChange::Answered))
        );
        let done = HeldEvent::Ended {
            status: CallStatus::Completed,
            reason: EndedReason::CalleeHangup,
            retry_after_s: None,
            sip_code: None,
        };
        let (_, u) = q.event("s1", "in1", 1, 2, done, 103);
        assert!(matches!(u.unwrap().change, CallChange::Ended { .. }));
        assert_eq!(q.enqueue(inbound("in2")), EnqueueVerdict::Accepted);
        // Another sidecar's events about it are not applied.
        assert_eq!(
            q.event("s2", "in2", 1, 1, HeldEvent::Answered, 104).0,
            EventVerdict::NotHeld
        );
    }

    #[test]
    fn reject_mode_refuses_at_the_cap_counting_due_waiting_calls() {
        let mut q = Queue::default();
        let reject = |id: &str| QueuedCall {
            reject_over_cap: true,
            ..capped(id, "ten_a", 2)
        };
        assert_eq!(q.enqueue(reject("a1")), EnqueueVerdict::Accepted);
        assert_eq!(q.enqueue(reject("a2")), EnqueueVerdict::Accepted);
        // Nothing is live yet, but two due calls would take both slots.
        assert_eq!(
            q.enqueue(reject("a3")),
            EnqueueVerdict::ConcurrencyLimit {
                limit: 2,
                active: 2
            }
        );
        let (o, _) = q.lease("s1", 10, 1, &T);
        assert_eq!(ids(&o), ["a1", "a2"]);
        assert_eq!(
            q.enqueue(reject("a3")),
            EnqueueVerdict::ConcurrencyLimit {
                limit: 2,
                active: 2
            }
        );
        // Queue mode still accepts and waits; another tenant is unaffected.
        assert_eq!(
            q.enqueue(capped("a4", "ten_a", 2)),
            EnqueueVerdict::Accepted
        );
        assert_eq!(
            q.enqueue(QueuedCall {
                reject_over_cap: true,
                ..capped("b1", "ten_b", 2)
            }),
            EnqueueVerdict::Accepted
        );
        assert!(
            q.waiting.iter().all(|c| !c.reject_over_cap),
            "the flag is not kept"
        );
        // One ends: a reject-mode call fits again only once a4 has had its turn.
        let done = HeldEvent::Ended {
            status: CallStatus::Completed,
            reason: EndedReason::CalleeHangup,
            retry_after_s: None,
            sip_code: None,
        };
        q.ack("s1", &o[0].lease_id, true, 2);
        q.event("s1", "a1", 1, 1, done, 3);
        assert!(matches!(
            q.enqueue(reject("a5")),
            EnqueueVerdict::ConcurrencyLimit { .. }
        ));
        assert_eq!(ids(&q.lease("s1", 10, 4, &T).0), ["a4", "b1"]);
    }

    #[test]
    fn reject_mode_is_exact_whatever_order_concurrent_calls_arrive_in() {
        let mut q = Queue::default();
        q.tick(1_000_000, &T);
        // Twenty calls created within a few ms by different Worker
        // invocations, reaching the queue in another order than stamped.
        let mut accepted = 0;
        for i in [
            7u64, 3, 19, 0, 12, 5, 1, 18, 9, 14, 2, 17, 4, 11, 6, 16, 8, 15, 10, 13,
        ] {
            let c = QueuedCall {
                reject_over_cap: true,
                ready_at_ms: 1_000_000 - 20 + i,
                ..capped(&format!("c{i}"), "ten_a", 3)
            };
            if q.enqueue(c) == EnqueueVerdict::Accepted {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 3);
        // A call for tomorrow is not refused by today's load.
        let tomorrow = QueuedCall {
            reject_over_cap: true,
            ready_at_ms: 1_000_000 + 86_400_000,
            ..capped("later", "ten_a", 3)
        };
        assert_eq!(q.enqueue(tomorrow), EnqueueVerdict::Accepted);
    }

    #[test]
    fn a_new_cap_applies_to_the_tenants_waiting_calls() {
        let mut q = Queue::default();
        for id in ["a1", "a2", "a3"] {
            q.enqueue(capped(id, "ten_a", 1));
        }
        assert_eq!(q.lease("s1", 10, 1, &T).0.len(), 1);
        // Raised to 3 (the admin changed it; the next call carries it).
        q.enqueue(capped("a4", "ten_a", 3));
        assert_eq!(ids(&q.lease("s1", 10, 2, &T).0), ["a2", "a3"]);
        // Removed: unlimited.
        q.enqueue(QueuedCall {
            tenant_id: "ten_a".into(),
            ..call("a5", 0, 0)
        });
        assert_eq!(ids(&q.lease("s1", 10, 3, &T).0), ["a4", "a5"]);
    }

    #[test]
    fn a_second_call_to_the_same_number_by_the_same_agent_is_refused_until_the_first_ends() {
        let mut q = Queue::default();
        let same = |id: &str| QueuedCall {
            phone: "+14155550100".into(),
            ..call(id, 0, 0)
        };
        assert_eq!(q.enqueue(same("c1")), EnqueueVerdict::Accepted);
        assert_eq!(q.enqueue(same("c1")), EnqueueVerdict::AlreadyKnown);
        assert_eq!(
            q.enqueue(same("c2")),
            EnqueueVerdict::Duplicate {
                call_id: "c1".into()
            }
        );
        // Another agent, or another tenant, may call the number.
        assert_eq!(
            q.enqueue(QueuedCall {
                agent_id: "agt_2".into(),
                ..same("c3")
            }),
            EnqueueVerdict::Accepted
        );
        assert_eq!(
            q.enqueue(QueuedCall {
                tenant_id: "ten_2".into(),
                ..same("c4")
            }),
            EnqueueVerdict::Accepted
        );
        // Leased and held count too.
        let (o, _) = q.lease("s1", 1, 0, &T);
        assert_eq!(o[0].call.call_id, "c1");
        assert_eq!(
            q.enqueue(same("c5")),
            EnqueueVerdict::Duplicate {
                call_id: "c1".into()
            }
        );
        q.ack("s1", &o[0].lease_id, true, 1);
        assert_eq!(
            q.enqueue(same("c5")),
            EnqueueVerdict::Duplicate {
                call_id: "c1".into()
            }
        );
        // Ended: the number is free again.
        let done = HeldEvent::Ended {
            status: CallStatus::Completed,
            reason: EndedReason::CalleeHangup,
            retry_after_s: None,
            sip_code: None,
        };
        q.event("s1", "c1", 1, 1, done, 2);
        assert_eq!(q.enqueue(same("c5")), EnqueueVerdict::Accepted);
        // A cancelled waiting call frees it as well.
        assert_eq!(q.cancel("c5"), CancelVerdict::Cancelled);
        assert_eq!(q.enqueue(same("c6")), EnqueueVerdict::Accepted);
    }

    #[test]
    fn offers_respect_free_slots_readiness_and_order() {
        let mut q = Queue::default();
        q.enqueue(call("c1", 0, 0));
        q.enqueue(call("c2", 500, 0));
        q.enqueue(call("c3", 0, 0));
        q.enqueue(call("c1", 0, 0)); // duplicate enqueue ignored
        let (offers, _) = q.lease("s1", 5, 100, &T);
        assert_eq!(
            offers
                .iter()
                .map(|l| l.call.call_id.as_str())
                .collect::<Vec<_>>(),
            ["c1", "c3"]
        );
        assert!(offers.iter().all(|l| l.deadline_ms == 1_100));
        let (none, _) = q.lease("s1", 0, 600, &T);
        assert!(none.is_empty(), "no free slots, no offers");
        let (later, _) = q.lease("s1", 1, 600, &T);
        assert_eq!(later[0].call.call_id, "c2");
        let o = offer(&later[0], later[0].call.offer.clone().unwrap(), None);
        assert_eq!(
            (o.call_id.as_str(), o.attempt, o.phone.as_str()),
            ("c2", 1, "+14155550100")
        );
    }

    #[test]
    fn unacked_lease_is_released_to_another_sidecar() {
        let mut q = Queue::default();
        q.enqueue(call("c1", 0, 0));
        let (offers, _) = q.lease("s1", 1, 0, &T);
        assert!(
            q.lease("s2", 1, 500, &T).0.is_empty(),
            "leased calls are not offered twice"
        );
        assert!(q.tick(1_000, &T).is_empty());
        let (again, _) = q.lease("s2", 1, 1_001, &T);
        assert_eq!(again[0].call.call_id, "c1");
        assert_ne!(again[0].lease_id, offers[0].lease_id);
        // The late ack of the first lease is stale: s1 must drop the call.
        assert_eq!(
            q.ack("s1", &offers[0].lease_id, true, 1_002).0,
            AckVerdict::Stale
        );
        let (out, update) = q.ack("s2", &again[0].lease_id, true, 1_003);
        assert_eq!(out, AckVerdict::Held);
        assert_eq!(
            update.unwrap().change,
            CallChange::Dialing {
                sidecar_id: "s2".into(),
                attempt: 1
            }
        );
    }

    #[test]
    fn a_departed_sidecar_gets_nothing_and_gives_back_what_it_had() {
        let mut q = Queue::default();
        q.register("s1", 3, 0);
        q.enqueue(call("held", 0, 1));
        q.enqueue(call("offered", 0, 0));
        let (held, _) = q.lease("s1", 1, 0, &T);
        q.ack("s1", &held[0].lease_id, true, 5);
        let (offered, _) = q.lease("s1", 1, 10, &T);
        assert_eq!(offered[0].call.call_id, "offered");
        // s1 leaves with one call held and one offer not yet acked.
        let updates = q.deregister("s1", 20);
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].call_id, "held");
        assert!(
            matches!(
                updates[0].change,
                CallChange::RetryScheduled {
                    reason: EndedReason::MediaLost,
                    ..
                }
            ),
            "{:?}",
            updates[0].change
        );
        assert!(!q.sidecars.contains_key("s1"));
        // A poll still open on its behalf wakes at once and gets nothing.
        q.enqueue(call("new", 0, 0));
        assert!(q.has_work_for("s1", 30));
        assert_eq!(q.lease("s1", 3, 30, &T), (Vec::new(), Vec::new()));
        assert!(
            !q.sidecars.contains_key("s1"),
            "an open poll does not bring it back"
        );
        // Another sidecar gets the returned offer first, then the new call.
        let (next, _) = q.lease("s2", 2, 40, &T);
        assert_eq!(
            next.iter()
                .map(|l| l.call.call_id.as_str())
                .collect::<Vec<_>>(),
            ["offered", "new"]
        );
        // Registering again undoes it; the mark is forgotten after dead_after_ms anyway.
        q.register("s1", 1, 50);
        assert!(!q.departed.contains_key("s1"));
        q.deregister("s3", 60);
        q.tick(60 + T.dead_after_ms, &T);
        assert!(q.departed.is_empty());
    }

    #[test]
    fn a_thousand_scheduled_calls_with_large_prompts_keep_the_queue_state_small() {
        let prompt = "p".repeat(20_000);
        let mut inline = Queue::default();
        let mut apart = Queue::default();
        let mut bodies = BTreeMap::new();
        for i in 0..1_000 {
            let mut c = QueuedCall {
                scheduled: true,
                phone: format!("+1415555{i:04}"),
                ..call(&format!("call_{i:04}"), 86_400_000, 0)
            };
            c.offer = Some(OfferBody {
                system_prompt: Some(prompt.clone()),
                metadata: Some(json!({"crm": i})),
                ..OfferBody::example(&c.phone)
            });
            inline.enqueue(c.clone());
            bodies.insert(c.call_id.clone(), take_offer_body(&mut c).unwrap());
            apart.enqueue(c);
        }
        let size = |q: &Queue| serde_json::to_string(q).unwrap().len();
        // One value holding the bodies is far over what a Durable Object stores per value.
        assert!(
            size(&inline) > crate::sql::MAX_VALUE_BYTES,
            "{}",
            size(&inline)
        );
        assert!(
            size(&apart) < crate::sql::MAX_VALUE_BYTES / 4,
            "{}",
            size(&apart)
        );
        // The offer still reaches the sidecar whole.
        let (o, _) = apart.lease("s1", 1, 86_400_000, &T);
        let lease_id = o[0].lease_id.clone();
        let answer = crate::dispatch::sidecar_link::LeaseAnswer {
            leases: o,
            commands: vec![],
            messages: vec![],
        };
        let (reply, missing) = answer.into_response(|id| bodies.get(id).cloned(), None);
        assert!(missing.is_empty());
        let offer = &reply.offers[0];
        assert_eq!(
            (
                offer.system_prompt.as_deref().map(str::len),
                offer.call_id.as_str()
            ),
            (Some(20_000), "call_0000")
        );
        assert_eq!(offer.lease_id, lease_id);
    }

    #[test]
    fn offers_leave_with_the_clear_key_or_a_refusal() {
        let k = SealingKey::from_secret(&"07".repeat(32)).unwrap();
        let other = SealingKey::from_secret(&"08".repeat(32)).unwrap();
        let lease = |sealed: Option<String>| {
            let mut c = call("c1", 0, 0);
            if let Some(body) = c.offer.as_mut() {
                body.engine_api_key_sealed = sealed;
            }
            Lease {
                lease_id: "lease_1".into(),
                sidecar_id: "s1".into(),
                deadline_ms: 9,
                call: c,
            }
        };
        let sent = |l: Lease, key: Option<&SealingKey>| {
            let body = l.call.offer.clone().unwrap();
            serde_json::to_value(offer(&l, body, key)).unwrap()
        };
        let opened = sent(lease(Some(k.seal("ten_1", "sk-1"))), Some(&k));
        assert_eq!(
            (
                opened["engine_api_key"].as_str(),
                opened.get("engine_api_key_sealed")
            ),
            (Some("sk-1"), None)
        );
        for refused in [
            sent(lease(Some(other.seal("ten_1", "x"))), Some(&k)),
            sent(lease(Some(k.seal("ten_2", "x"))), Some(&k)),
            sent(lease(Some(k.seal("ten_1", "x"))), None),
        ] {
            assert_eq!(
                (
                    refused["engine_key_unavailable"].as_bool(),
                    refused.get("engine_api_key")
                ),
                (Some(true), None)
            );
        }
        let none = sent(lease(None), Some(&k));
        assert!(
            none.get("engine_api_key").is_none() && none.get("engine_key_unavailable").is_none()
        );
        assert_eq!(
            (
                none["lease_id"].as_str(),
                none["tenant_id"].as_str(),
                none["ack_deadline_ms"].as_u64()
            ),
            (Some("lease_1"), Some("ten_1"), Some(9))
        );
    }

    /// The object's rows, kept as it keeps them: a write moves a row to the end.
    #[derive(Default)]
    struct Rows {
        calls: Vec<(String, CallRow)>,
        nonces: BTreeMap<String, u64>,
        meta: QueueMeta,
        writes: usize,
    }

    impl Rows {
        fn flush(&mut self, q: &mut Queue) {
            let (rows, nonces) = q.take_changes();
            for (id, row) in rows {
                self.writes += 1;
                self.calls.retain(|(k, _)| *k != id);
                if let Some(row) = row {
                    self.calls.push((id, row));
                }
            }
            self.nonces.extend(nonces);
            self.meta = q.meta();
        }

        fn load(&self) -> Queue {
            Queue::from_rows(
                self.meta.clone(),
                self.calls.iter().map(|(_, r)| r.clone()).collect(),
                self.nonces.clone().into_iter().collect(),
            )
        }
    }

    /// What must survive a reload (waiting order may differ between equally ready calls).
    fn essence(q: &Queue) -> String {
        let mut waiting: Vec<String> = q
            .waiting
            .iter()
            .map(|c| serde_json::to_string(c).unwrap())
            .collect();
        waiting.sort();
        format!(
            "{waiting:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}",
            q.leased,
            q.held,
            q.stranded,
            q.meta(),
            q.nonces,
            q.next_lease
        )
    }

    #[test]
    fn the_rows_written_after_each_step_load_back_as_the_same_queue_and_only_changes_are_written() {
        let mut q = Queue::default();
        let mut rows = Rows::default();
        let step = |q: &mut Queue, rows: &mut Rows| {
            rows.flush(q);
            assert_eq!(essence(&rows.load()), essence(q));
        };
        for i in 0..50 {
            q.enqueue(QueuedCall {
                max_seconds: 60,
                ..call(&format!("c{i:02}"), if i % 2 == 0 { 0 } else { 100_000 }, 1)
            });
        }
        step(&mut q, &mut rows);
        assert_eq!(rows.writes, 50);
        q.register("s1", 4, 0);
        q.remember_nonce("n1", 0, 300_000);
        let (o, _) = q.lease("s1", 4, 1, &T);
        step(&mut q, &mut rows);
        assert_eq!(
            rows.writes, 54,
            "a poll that leased four calls rewrote four rows"
        );
        q.ack("s1", &o[0].lease_id, true, 2);
        q.ack("s1", &o[1].lease_id, false, 2);
        q.event("s1", &o[0].call.call_id, 1, 1, HeldEvent::Answered, 3);
        step(&mut q, &mut rows);
        assert_eq!(rows.writes, 56);
        let busy = HeldEvent::Ended {
            status: CallStatus::Busy,
            reason: EndedReason::Busy,
            retry_after_s: None,
            sip_code: Some(486),
        };
        q.event("s1", &o[0].call.call_id, 1, 2, busy, 4); // retried: waiting again
        q.cancel(&o[2].call.call_id);
        step(&mut q, &mut rows);
        q.ack("s1", &o[3].lease_id, true, 5);
        q.tick(10_000, &T); // s1 silent: its call is stranded
        step(&mut q, &mut rows);
        assert_eq!(rows.load().stranded.len(), 1);
        q.tick(200_000, &T); // surely over; scheduled calls released
        step(&mut q, &mut rows);
        assert!(rows.load().stranded.is_empty());
    }

    /// c1 (max 60 s) held by s1 since t=10.
    fn held_by_s1() -> Queue {
        let mut q = Queue::default();
        q.enqueue(QueuedCall {
            max_seconds: 60,
            phone: "+14155550100".into(),
            ..call("c1", 0, 2)
        });
        let (o, _) = q.lease("s1", 1, 0, &T);
        q.ack("s1", &o[0].lease_id, true, 10);
        q
    }

    const SURELY_OVER: u64 = 10 + 60_000 + 1_000; // since + max_seconds + margin

    #[test]
    fn a_partitioned_sidecar_keeps_its_call_and_nobody_dials_it_again() {
        let mut q = held_by_s1();
        q.lease("s2", 0, 4_000, &T); // s2 keeps polling, s1 falls silent
        assert!(
            q.tick(5_010, &T).is_empty(),
            "presumed dead, but the call may still be talking"
        );
        assert!(q.stranded.contains_key("c1") && !q.sidecars.contains_key("s1"));
        // Not offered again, and the number stays busy for the agent.
        assert!(q.lease("s2", 1, 6_000, &T).0.is_empty());
        let again = QueuedCall {
            max_seconds: 60,
            phone: "+14155550100".into(),
            ..call("c2", 0, 0)
        };
        assert_eq!(
            q.enqueue(again),
            EnqueueVerdict::Duplicate {
                call_id: "c1".into()
            }
        );
        // The partition heals: s1 registers again and still lists c1.
        q.register("s1", 1, 40_000);
        assert!(q
            .reconcile("s1", &["c1".to_string()], 40_000, 5_000)
            .is_empty());
        assert!(q.held.contains_key("c1") && q.stranded.is_empty());
        let done = HeldEvent::Ended {
            status: CallStatus::Completed,
            reason: EndedReason::CalleeHangup,
            retry_after_s: None,
            sip_code: None,
        };
        let (_, u) = q.event("s1", "c1", 1, 1, done, 41_000);
        assert_eq!(
            u.unwrap().change,
            CallChange::Ended {
                status: CallStatus::Completed,
                reason: EndedReason::CalleeHangup,
                sip_code: None
            },
            "one real end, no retry"
        );
    }

    #[test]
    fn a_stranded_call_is_retried_once_its_sidecar_confirms_or_surely_over() {
        // Confirmed: s1 is back and no longer runs it.
        let mut q = held_by_s1();
        q.tick(5_010, &T);
        q.register("s1", 1, 20_000);
        let u = q.reconcile("s1", &[], 20_000, 5_000);
        assert!(
            matches!(
                u[0].change,
                CallChange::RetryScheduled {
                    reason: EndedReason::MediaLost,
                    ..
                }
            ),
            "{u:?}"
        );
        // Never heard of again: only once it would surely have ended.
        let mut q = held_by_s1();
        q.tick(5_010, &T);
        assert!(q.tick(SURELY_OVER - 1, &T).is_empty());
        assert_eq!(q.next_deadline(SURELY_OVER - 1, &T), Some(SURELY_OVER));
        let u = q.tick(SURELY_OVER, &T);
        assert!(
            matches!(
                u[0].change,
                CallChange::RetryScheduled {
                    reason: EndedReason::MediaLost,
                    ..
                }
            ),
            "{u:?}"
        );
        // Its late report is then ignored (the retry is another attempt).
        let done = HeldEvent::Ended {
            status: CallStatus::Completed,
            reason: EndedReason::CalleeHangup,
            retry_after_s: None,
            sip_code: None,
        };
        q.register("s1", 1, SURELY_OVER + 1);
        assert_eq!(
            q.event("s1", "c1", 1, 1, done, SURELY_OVER + 1).0,
            EventVerdict::NotHeld
        );
    }

    #[test]
    fn a_sidecar_is_told_to_stop_calls_that_are_not_its_own() {
        let mut q = held_by_s1();
        // A hangup while stranded waits for s1 to come back.
        q.tick(5_010, &T);
        assert_eq!(
            q.cancel("c1"),
            CancelVerdict::Signalled {
                sidecar_id: "s1".into()
            }
        );
        q.register("s1", 1, 6_000);
        q.reconcile("s1", &["c1".to_string(), "c9".to_string()], 6_000, 5_000);
        let (_, cmds) = q.lease("s1", 0, 6_000, &T);
        assert_eq!(
            cmds,
            vec![
                Command::Hangup {
                    call_id: "c1".into()
                },
                Command::Hangup {
                    call_id: "c9".into()
                }
            ],
            "its own hangup, and the call it should not run"
        );
        // A call it accepted whose ack is still on the way is its own.
        q.enqueue(call("c3", 0, 0));
        let (o, _) = q.lease("s1", 1, 7_000, &T);
        q.reconcile(
            "s1",
            &["c1".to_string(), o[0].call.call_id.clone()],
            7_000,
            5_000,
        );
        assert!(q.lease("s1", 0, 7_000, &T).1.is_empty());
    }

    #[test]
    fn a_repeated_ack_after_a_lost_answer_is_answered_the_same() {
        let mut q = Queue::default();
        q.enqueue(call("c1", 0, 0));
        let (o, _) = q.lease("s1", 1, 0, &T);
        let (first, update) = q.ack("s1", &o[0].lease_id, true, 1);
        assert_eq!((first, update.is_some()), (AckVerdict::Held, true));
        // The answer was lost; the sidecar acks again: still its call, no second update.
        assert_eq!(
            q.ack("s1", &o[0].lease_id, true, 2),
            (AckVerdict::Held, None)
        );
        // Another sidecar, or another lease id, is still refused.
        assert_eq!(q.ack("s2", &o[0].lease_id, true, 3).0, AckVerdict::Stale);
        assert_eq!(q.ack("s1", "lease_ff", true, 3).0, AckVerdict::Stale);
    }

    #[test]
    fn hangup_of_an_offered_but_unacked_call_cancels_it_outright() {
        let mut q = Queue::default();
        q.enqueue(call("c1", 0, 3));
        let (o, _) = q.lease("s1", 1, 0, &T);
        assert_eq!(
            q.cancel("c1"),
            CancelVerdict::Cancelled,
            "not a hangup command waiting for the lease to expire"
        );
        assert!(!q.knows("c1"));
        // The sidecar's ack now fails, so it never dials; nothing is re-offered.
        assert_eq!(q.ack("s1", &o[0].lease_id, true, 1).0, AckVerdict::Stale);
        assert!(q.tick(T.ack_deadline_ms + 1, &T).is_empty());
        assert!(q.lease("s2", 1, T.ack_deadline_ms + 2, &T).0.is_empty());
    }

    #[test]
    fn rejected_offer_goes_back_to_the_front() {
        let mut q = Queue::default();
        q.enqueue(call("c1", 0, 0));
        q.enqueue(call("c2", 0, 0));
        let (offers, _) = q.lease("s1", 1, 0, &T);
        assert_eq!(
            q.ack("s1", &offers[0].lease_id, false, 1).0,
            AckVerdict::Requeued
        );
        assert_eq!(q.lease("s2", 1, 2, &T).0[0].call.call_id, "c1");
    }

    #[test]
    fn dead_sidecar_calls_end_media_lost_and_retry_elsewhere() {
        let mut q = Queue::default();
        q.enqueue(call("c1", 0, 1));
        q.enqueue(call("c2", 0, 0));
        let (offers, _) = q.lease("s1", 2, 0, &T);
        for o in &offers {
            q.ack("s1", &o.lease_id, true, 10);
        }
        q.lease("s2", 0, 4_000, &T); // s2 keeps polling
        assert!(q.tick(4_999, &T).is_empty());
        let updates = q.tick(5_000, &T);
        assert_eq!(updates.len(), 2);
        let c1 = updates.iter().find(|u| u.call_id == "c1").unwrap();
        assert_eq!(
            c1.change,
            CallChange::RetryScheduled {
                status: CallStatus::Failed,
                reason: EndedReason::MediaLost,
                sip_code: None,
                retry_at_ms: 65_000
            }
        );
        let c2 = updates.iter().find(|u| u.call_id == "c2").unwrap();
        assert_eq!(
            c2.change,
            CallChange::Ended {
                status: CallStatus::Failed,
                reason: EndedReason::MediaLost,
                sip_code: None
            }
        );
        assert!(!q.sidecars.contains_key("s1"));
        assert!(
            q.lease("s2", 1, 64_999, &T).0.is_empty(),
            "retry waits its delay"
        );
        let (retry, _) = q.lease("s2", 1, 65_000, &T);
        assert_eq!(
            (retry[0].call.call_id.as_str(), retry[0].call.attempt),
            ("c1", 2)
        );
    }

    #[test]
    fn events_are_ordered_deduplicated_and_scoped_to_the_holder() {
        let mut q = Queue::default();
        q.enqueue(call("c1", 0, 0));
        let (offers, _) = q.lease("s1", 1, 0, &T);
        q.ack("s1", &offers[0].lease_id, true, 1);
        assert_eq!(
            q.event("s2", "c1", 1, 1, HeldEvent::Ringing, 2).0,
            EventVerdict::NotHeld
        );
        assert_eq!(
            q.event("s1", "c1", 1, 1, HeldEvent::Ringing, 2)
                .1
                .unwrap()
                .change,
            CallChange::Ringing
        );
        assert_eq!(
            q.event("s1", "c1", 1, 1, HeldEvent::Ringing, 3),
            (EventVerdict::Duplicate, None)
        );
        assert_eq!(
            q.event("s1", "c1", 1, 2, HeldEvent::Answered, 4)
                .1
                .unwrap()
                .change,
            CallChange::Answered
        );
        let ended = HeldEvent::Ended {
            status: CallStatus::Completed,
            reason: EndedReason::CalleeHangup,
            retry_after_s: None,
            sip_code: None,
        };
        let (_, u) = q.event("s1", "c1", 1, 3, ended.clone(), 5);
        assert_eq!(
            u.unwrap().change,
            CallChange::Ended {
                status: CallStatus::Completed,
                reason: EndedReason::CalleeHangup,
                sip_code: None
            }
        );
        assert_eq!(
            q.event("s1", "c1", 1, 3, ended, 6).0,
            EventVerdict::NotHeld,
            "ended calls are gone"
        );
        assert!(!q.knows("c1"));
    }

    #[test]
    fn late_events_of_an_earlier_attempt_are_ignored() {
        let mut q = Queue::default();
        q.enqueue(call("c1", 0, 1));
        let (o, _) = q.lease("s1", 1, 0, &T);
        q.ack("s1", &o[0].lease_id, true, 0);
        let busy = HeldEvent::Ended {
            status: CallStatus::Busy,
            reason: EndedReason::Busy,
            retry_after_s: None,
            sip_code: Some(486),
        };
        q.event("s1", "c1", 1, 1, busy, 1);
        let (o, _) = q.lease("s1", 1, 60_001, &T);
        q.ack("s1", &o[0].lease_id, true, 60_001);
        assert_eq!(
            q.event("s1", "c1", 1, 2, HeldEvent::Answered, 60_002).0,
            EventVerdict::NotHeld
        );
        assert_eq!(
            q.event("s1", "c1", 2, 1, HeldEvent::Answered, 60_002).0,
            EventVerdict::Applied
        );
    }

    #[test]
    fn nonces_are_single_use_within_the_window() {
        let mut q = Queue::default();
        assert!(q.remember_nonce("n1", 0, 300_000));
        assert!(!q.remember_nonce("n1", 1_000, 300_000));
        assert!(
            q.remember_nonce("n1", 600_001, 300_000),
            "forgotten after twice the window"
        );
    }

    #[test]
    fn calls_missing_from_a_poll_are_lost_after_the_grace() {
        let mut q = Queue::default();
        q.enqueue(call("c1", 0, 0));
        let (o, _) = q.lease("s1", 1, 0, &T);
        q.ack("s1", &o[0].lease_id, true, 0);
        assert!(
            q.reconcile("s1", &[], 4_000, 5_000).is_empty(),
            "within grace"
        );
        assert!(
            q.reconcile("s1", &["c1".to_string()], 9_000, 5_000)
                .is_empty(),
            "listed"
        );
        let lost = q.reconcile("s1", &[], 9_000, 5_000);
        assert_eq!(
            lost[0].change,
            CallChange::Ended {
                status: CallStatus::Failed,
                reason: EndedReason::MediaLost,
                sip_code: None
            }
        );
    }

    #[test]
    fn a_retry_outside_the_calling_window_waits_for_its_next_start() {
        let window = crate::calling_window::parse(&json!({"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "18:00", "time_zone": "UTC"})).unwrap();
        let wed_1759 = 1_768_413_540_000; // 2026-01-14T17:59:00Z, a Wednesday
        let thu_0900 = 1_768_467_600_000;
        let mut q = Queue::default();
        q.enqueue(QueuedCall {
            calling_window: Some(window),
            ready_at_ms: wed_1759,
            ..call("c1", 0, 2)
        });
        let (o, _) = q.lease("s1", 1, wed_1759, &T);
        q.ack("s1", &o[0].lease_id, true, wed_1759);
        let busy = HeldEvent::Ended {
            status: CallStatus::Busy,
            reason: EndedReason::Busy,
            retry_after_s: None,
            sip_code: Some(486),
        };
        let (_, u) = q.event("s1", "c1", 1, 1, busy, wed_1759 + 10);
        // 18:00:10 + 1 minute is outside: the retry waits until Thursday 09:00.
        assert!(
            matches!(u.unwrap().change, CallChange::RetryScheduled { retry_at_ms, .. } if retry_at_ms == thu_0900)
        );
        assert!(q.lease("s1", 1, thu_0900 - 1, &T).0.is_empty());
        assert_eq!(q.lease("s1", 1, thu_0900, &T).0[0].call.attempt, 2);
    }

    #[test]
    fn busy_is_retried_per_policy_then_final() {
        let mut q = Queue::default();
        q.enqueue(call("c1", 0, 1));
        let busy = || HeldEvent::Ended {
            status: CallStatus::Busy,
            reason: EndedReason::Busy,
            retry_after_s: None,
            sip_code: Some(486),
        };
        let (o, _) = q.lease("s1", 1, 0, &T);
        q.ack("s1", &o[0].lease_id, true, 0);
        let (_, u) = q.event("s1", "c1", 1, 1, busy(), 10);
        assert!(matches!(
            u.unwrap().change,
            CallChange::RetryScheduled {
                status: CallStatus::Busy,
                sip_code: Some(486),
                ..
            }
        ));
        let (o, _) = q.lease("s1", 1, 60_010, &T);
        assert_eq!(o[0].call.attempt, 2);
        q.ack("s1", &o[0].lease_id, true, 60_010);
        let (_, u) = q.event("s1", "c1", 2, 1, busy(), 60_020);
        assert_eq!(
            u.unwrap().change,
            CallChange::Ended {
                status: CallStatus::Busy,
                reason: EndedReason::Busy,
                sip_code: Some(486)
            }
        );
    }

    #[test]
    fn a_retry_after_puts_the_redial_off_bounded_to_an_hour() {
        for (asked, retry_at_ms) in [
            (None, 60_010),     // the call's own delay (1 minute)
            (Some(30), 60_010), // shorter than that: the delay wins
            (Some(300), 300_010),
            (Some(u32::MAX), 3_600_010),
        ] {
            let mut q = Queue::default();
            q.enqueue(call("c1", 0, 1));
            let (o, _) = q.lease("s1", 1, 0, &T);
            q.ack("s1", &o[0].lease_id, true, 0);
            let end = HeldEvent::Ended {
                status: CallStatus::Failed,
                reason: EndedReason::TrunkError,
                sip_code: Some(503),
                retry_after_s: asked,
            };
            let (_, u) = q.event("s1", "c1", 1, 1, end, 10);
            assert!(
                matches!(u.unwrap().change, CallChange::RetryScheduled { retry_at_ms: at, .. } if at == retry_at_ms),
                "{asked:?}"
            );
            assert!(
                q.lease("s1", 1, retry_at_ms - 1, &T).0.is_empty(),
                "{asked:?}"
            );
            assert_eq!(q.lease("s1", 1, retry_at_ms, &T).0.len(), 1, "{asked:?}");
        }
    }

    #[test]
    fn a_decline_or_a_definite_refusal_is_final_despite_retries() {
        for (status, reason, code) in [
            (CallStatus::Busy, EndedReason::Declined, 603),
            // A sidecar older than the table reports 603 as busy: the code decides.
            (CallStatus::Busy, EndedReason::Busy, 603),
            (CallStatus::Failed, EndedReason::Rejected, 404),
            (CallStatus::Failed, EndedReason::Rejected, 604),
        ] {
            let mut q = Queue::default();
            q.enqueue(call("c1", 0, 3));
            let (o, _) = q.lease("s1", 1, 0, &T);
            q.ack("s1", &o[0].lease_id, true, 0);
            let end = HeldEvent::Ended {
                status,
                reason,
                retry_after_s: None,
                sip_code: Some(code),
            };
            let (_, u) = q.event("s1", "c1", 1, 1, end, 10);
            assert_eq!(
                u.unwrap().change,
                CallChange::Ended {
                    status,
                    reason,
                    sip_code: Some(code)
                },
                "{code}"
            );
            assert!(q.lease("s1", 1, 10_000_000, &T).0.is_empty(), "{code}");
        }
    }

    #[test]
    fn cancel_removes_waiting_and_signals_holders_once() {
        let mut q = Queue::default();
        q.enqueue(call("c1", 0, 0));
        q.enqueue(call("c2", 0, 0));
        assert_eq!(q.cancel("c2"), CancelVerdict::Cancelled);
        let (o, _) = q.lease("s1", 1, 0, &T);
        q.ack("s1", &o[0].lease_id, true, 1);
        assert_eq!(
            q.cancel("c1"),
            CancelVerdict::Signalled {
                sidecar_id: "s1".into()
            }
        );
        assert_eq!(
            q.cancel("c1"),
            CancelVerdict::Signalled {
                sidecar_id: "s1".into()
            }
        );
        assert!(q.has_work_for("s1", 2));
        let (_, cmds) = q.lease("s1", 0, 2, &T);
        assert_eq!(
            cmds,
            vec![Command::Hangup {
                call_id: "c1".into()
            }]
        );
        assert_eq!(q.cancel("nope"), CancelVerdict::Unknown);
    }

    #[test]
    fn scheduled_release_and_alarm_deadline() {
        let mut q = Queue::default();
        q.enqueue(call("c1", 10_000, 0));
        assert_eq!(q.next_deadline(0, &T), Some(10_000));
        assert!(q.tick(9_999, &T).is_empty());
        let u = q.tick(10_000, &T);
        assert_eq!(u[0].change, CallChange::Released);
        assert!(q.tick(10_001, &T).is_empty(), "released once");
        q.register("s1", 4, 10_001);
        assert_eq!(q.next_deadline(10_001, &T), Some(15_001));
    }
}
