//! Webhook delivery: the delivery jobs and their log, the retry schedule, and
//! [`process`], which runs one job (checks the endpoint, signs, POSTs,
//! records the attempt, says what happens next).

use crate::dialects::Dialect;
use crate::engine_keys::{SealingKey, SecretOwner, SecretUnavailable};
use crate::ids::{self, rfc3339_ms};
use crate::mail::MailJob;
use crate::model::{keys, DialectKeyInfo, WebhookEndpoint, WebhookFormat};
use crate::store::{get_json, put_json, Kv, StoreError};
use crate::url_guard;
use crate::webhooks::post_call;
use crate::webhooks::signing as webhook_signing;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const MIN_RETRY_STEP_DEV: u32 = 1;
pub const MIN_RETRY_STEP_PROD: u32 = 30;
pub const MAX_RETRY_STEP: u32 = 86_400;
pub const MAX_RETRY_STEPS: usize = 20;
/// How long the previous secret still signs after a rotation, by default.
pub const DEFAULT_ROTATION_OVERLAP_SECONDS: u64 = 86_400;
pub const MAX_ROTATION_OVERLAP_SECONDS: u64 = 7 * 86_400;
/// Cloudflare Queues' longest delay; longer waits are chained.
pub const MAX_QUEUE_DELAY_SECONDS: u32 = 43_200;
/// A Retry-After longer than this is capped.
const MAX_RETRY_AFTER_SECONDS: u64 = 86_400;

pub fn min_retry_step(dev_mode: bool) -> u32 {
    if dev_mode {
        MIN_RETRY_STEP_DEV
    } else {
        MIN_RETRY_STEP_PROD
    }
}

/// Jobs a request produced; the glue sends them to the queue once the
/// request is handled (the service itself never touches the queue).
#[derive(Debug, Default)]
pub struct Outbox(
    std::cell::RefCell<Vec<DeliveryJob>>,
    std::cell::RefCell<Vec<MailJob>>,
    std::cell::RefCell<Vec<crate::campaign_notice::CallNotice>>,
);

impl Outbox {
    pub fn push(&self, jobs: Vec<DeliveryJob>) {
        self.0.borrow_mut().extend(jobs);
    }
    pub fn take(&self) -> Vec<DeliveryJob> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
    /// Webhook deliveries and mails, as the drain hands them over.
    pub fn push_queued(&self, jobs: Vec<QueueJob>) {
        for job in jobs {
            match job {
                QueueJob::Webhook(j) => self.0.borrow_mut().push(j),
                QueueJob::Mail(j) => self.1.borrow_mut().push(j),
                QueueJob::Campaign(n) => self.2.borrow_mut().push(n),
            }
        }
    }
    pub fn take_mails(&self) -> Vec<MailJob> {
        std::mem::take(&mut *self.1.borrow_mut())
    }
    /// Campaign notices (the Worker sends each to its campaign's object).
    pub fn take_campaign_notices(&self) -> Vec<crate::campaign_notice::CallNotice> {
        std::mem::take(&mut *self.2.borrow_mut())
    }
}

/// What the delivery queue carries: a webhook delivery, or a mail (the
/// transcript email, `mail`); and what an outbox drain hands over besides,
/// a campaign's call notice. A mail job's `kind` field tells them apart;
/// webhook jobs are written exactly as before, so messages queued by an
/// earlier version read as they did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueueJob {
    Mail(MailJob),
    Webhook(DeliveryJob),
    /// A campaign's call was placed or ended: for its `Campaign` object
    /// (the call store's drain sends it there directly, not to the queue).
    Campaign(crate::campaign_notice::CallNotice),
}

/// One delivery of one event to one endpoint, as a queue message. It carries
/// the whole body so the consumer never depends on reading back a record
/// written a moment earlier (KV is eventually consistent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryJob {
    pub tenant_id: String,
    pub delivery_id: String,
    pub endpoint_id: String,
    /// The `webhook-id`: the same for every attempt and redelivery of the event.
    pub event_id: String,
    pub event_type: String,
    /// The exact body that is signed and sent.
    pub payload: String,
    pub call_id: Option<String>,
    pub created_at_ms: u64,
    /// The attempt this job makes, counted over the delivery's whole life.
    pub attempt: u32,
    /// Index in the endpoint's retry schedule of the delay that follows a failure.
    pub step: u32,
    /// Not before this time (a wait longer than the queue's maximum delay is chained).
    pub due_at_ms: u64,
    /// Started by a manual redelivery.
    #[serde(default)]
    pub manual: bool,
    /// The endpoint format the payload was rendered in: it is signed, timed
    /// and retried as that format says (even if the endpoint changed since).
    #[serde(default)]
    pub format: WebhookFormat,
    /// BuildVoiceAI: the credential that placed the call (its token signs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_with_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Queued, or waiting for a retry.
    Pending,
    Delivered,
    /// Gave up: schedule exhausted, endpoint gone/disabled/refused, or 410.
    Failed,
}

impl DeliveryStatus {
    pub const NAMES: [&'static str; 3] = ["pending", "delivered", "failed"];
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptLog {
    pub attempt: u32,
    pub at: String,
    pub url: String,
    /// The receiver's HTTP status; null when no response came (refused, timeout).
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
    pub manual: bool,
    /// The start of the receiver's answer body ([`RESPONSE_SNIPPET_CHARS`]
    /// characters at most); null when none came (attempts logged before it too).
    #[serde(default)]
    pub response_snippet: Option<String>,
}

/// How much of a receiver's answer the log keeps per attempt (characters).
pub const RESPONSE_SNIPPET_CHARS: usize = 256;
/// How many bytes of an answer are read for it (a UTF-8 character is at most 4).
pub const RESPONSE_SNIPPET_BYTES: usize = RESPONSE_SNIPPET_CHARS * 4;

/// The log's snippet of an answer body: at most [`RESPONSE_SNIPPET_CHARS`]
/// characters (lossy for bytes that are not UTF-8); None for an empty body.
pub fn response_snippet(body: &[u8]) -> Option<String> {
    let head = &body[..body.len().min(RESPONSE_SNIPPET_BYTES)];
    let text: String = String::from_utf8_lossy(head)
        .chars()
        .take(RESPONSE_SNIPPET_CHARS)
        .collect();
    (!text.is_empty()).then_some(text)
}

/// What an entry of the delivery log records: a webhook event sent to an
/// endpoint (real events and test events), or a customer tool's request
/// made by the edge during a call (issue 18: `api::tool_calls`), logged
/// once with its answer and never sent again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryKind {
    /// Records written before kinds existed are webhook deliveries.
    #[default]
    Webhook,
    ToolCall,
}

impl DeliveryKind {
    pub const NAMES: [&'static str; 2] = ["webhook", "tool_call"];
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Webhook => "webhook",
            DeliveryKind::ToolCall => "tool_call",
        }
    }
}

/// The `type` of a test event (`POST .../webhooks/{id}/test`): no endpoint
/// subscribes to it, every endpoint can be sent one.
pub const TEST_EVENT_TYPE: &str = "webhook.test";
/// The `event_type` of a tool call's log entry (the request body's `type`).
pub const TOOL_CALL_EVENT_TYPE: &str = "tool.call";

/// The delivery log record, `whdlv/{tenant}/{delivery}`: one per delivery,
/// rewritten after each attempt (attempts are seconds apart, within KV's
/// one-write-per-second-per-key limit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub call_id: Option<String>,
    pub status: DeliveryStatus,
    pub payload: String,
    pub attempts: Vec<AttemptLog>,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Kept for a redelivery (see [`DeliveryJob`]); not in the public JSON.
    #[serde(default)]
    pub format: WebhookFormat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_with_key: Option<String>,
    /// A webhook delivery or a tool call's request.
    #[serde(default)]
    pub kind: DeliveryKind,
}

impl DeliveryRecord {
    /// The record of a job not attempted yet (`pending`, no attempts).
    pub fn from_job(job: &DeliveryJob) -> DeliveryRecord {
        DeliveryRecord {
            id: job.delivery_id.clone(),
            endpoint_id: job.endpoint_id.clone(),
            event_id: job.event_id.clone(),
            event_type: job.event_type.clone(),
            call_id: job.call_id.clone(),
            status: DeliveryStatus::Pending,
            payload: job.payload.clone(),
            attempts: Vec::new(),
            next_attempt_at: None,
            last_error: None,
            created_at: rfc3339_ms(job.created_at_ms),
            updated_at: rfc3339_ms(job.created_at_ms),
            format: job.format,
            placed_with_key: job.placed_with_key.clone(),
            kind: DeliveryKind::Webhook,
        }
    }

    fn last_status_code(&self) -> Option<u16> {
        self.attempts.last().and_then(|a| a.status_code)
    }

    /// KV key metadata: what a listing shows without reading records.
    pub fn list_metadata(&self) -> Value {
        json!({"e": self.event_type, "s": self.status, "w": self.endpoint_id, "c": self.created_at,
               "u": self.updated_at, "n": self.attempts.len(), "h": self.last_status_code(), "k": self.call_id,
               "t": self.kind})
    }

    /// The public JSON text; `payload` is the body as sent, verbatim (a
    /// `Value` would reorder a call's metadata and rewrite its numbers).
    pub fn to_public_json(&self) -> String {
        let endpoint_id = (!self.endpoint_id.is_empty()).then_some(&self.endpoint_id);
        let fields = json!({"id": self.id, "object": "webhook_delivery", "kind": self.kind,
               "endpoint_id": endpoint_id, "event_id": self.event_id,
               "event_type": self.event_type, "call_id": self.call_id, "status": self.status,
               "attempt_count": self.attempts.len(), "last_status_code": self.last_status_code(),
               "next_attempt_at": self.next_attempt_at, "last_error": self.last_error,
               "created_at": self.created_at, "updated_at": self.updated_at, "attempts": self.attempts});
        let Value::Object(fields) = fields else {
            return String::new();
        };
        let payload = serde_json::from_str::<&serde_json::value::RawValue>(&self.payload).ok();
        crate::model::object_with_raw(&fields, "payload", payload)
    }

    /// Rebuilds this record's job for a manual redelivery (a fresh schedule).
    pub fn redelivery_job(&self, tenant_id: &str, now_ms: u64) -> DeliveryJob {
        DeliveryJob {
            tenant_id: tenant_id.to_string(),
            delivery_id: self.id.clone(),
            endpoint_id: self.endpoint_id.clone(),
            event_id: self.event_id.clone(),
            event_type: self.event_type.clone(),
            payload: self.payload.clone(),
            call_id: self.call_id.clone(),
            created_at_ms: ids::parse_rfc3339_utc_ms(&self.created_at).unwrap_or(now_ms),
            attempt: self.attempts.iter().map(|a| a.attempt).max().unwrap_or(0) + 1,
            step: 0,
            due_at_ms: now_ms,
            manual: true,
            format: self.format,
            placed_with_key: self.placed_with_key.clone(),
        }
    }
}

/// A listing row rebuilt from KV metadata alone.
pub fn delivery_summary_from_metadata(id: &str, m: &Value) -> Value {
    // Entries listed before kinds existed are webhook deliveries; a tool call has no endpoint.
    let kind = m["t"].as_str().unwrap_or(DeliveryKind::Webhook.as_str());
    let endpoint_id = m["w"].as_str().filter(|w| !w.is_empty());
    json!({"id": id, "object": "webhook_delivery", "kind": kind, "endpoint_id": endpoint_id, "event_type": m["e"], "call_id": m["k"],
           "status": m["s"], "attempt_count": m["n"], "last_status_code": m["h"], "created_at": m["c"], "updated_at": m["u"]})
}

/// Delivery ids sort newest first under a tenant's prefix, like call ids.
pub fn delivery_id(now_ms: u64) -> String {
    let inverted = 0xFFFF_FFFF_FFFFu64.saturating_sub(now_ms);
    format!(
        "dlv_{inverted:012x}{}",
        hex::encode(ids::random_bytes::<5>())
    )
}

impl WebhookEndpoint {
    pub fn wants(&self, event_type: &str) -> bool {
        self.enabled && (self.events.is_empty() || self.events.iter().any(|e| e == event_type))
    }

    /// Seals the secrets of a record written before sealing (when a key is
    /// at hand), before the record is written again.
    pub fn seal_legacy_secrets(&mut self, tenant_id: &str, key: Option<&SealingKey>) {
        let owner = SecretOwner::Webhook {
            tenant: tenant_id,
            endpoint: &self.id,
        };
        self.secret = self.secret.clone().sealed_if_clear(key, owner);
        self.previous_secret = self
            .previous_secret
            .take()
            .map(|s| s.sealed_if_clear(key, owner));
    }

    /// Secrets to sign with now, newest first (two during a rotation's
    /// overlap), opened from their sealed form just for this.
    pub fn signing_secrets(
        &self,
        tenant_id: &str,
        key: Option<&SealingKey>,
        now_ms: u64,
    ) -> Result<Vec<String>, SecretUnavailable> {
        let owner = SecretOwner::Webhook {
            tenant: tenant_id,
            endpoint: &self.id,
        };
        let mut out = vec![self.secret.open(key, owner)?];
        if let (Some(old), Some(until)) = (&self.previous_secret, self.previous_secret_expires_ms) {
            if now_ms < until {
                out.push(old.open(key, owner)?);
            }
        }
        Ok(out)
    }
}

// ---- delivery ----

#[derive(Debug, Clone, PartialEq)]
pub struct HttpReply {
    pub status: u16,
    pub retry_after: Option<String>,
    /// The answer body's start, as [`response_snippet`] keeps it.
    pub body_snippet: Option<String>,
}

/// The outbound HTTP the consumer needs: one POST, abandoned after
/// `timeout_ms` (the format's, [`WebhookFormat::attempt_timeout_ms`]),
/// redirects not followed. `Err` is a transport failure or the timeout,
/// described for the log.
#[allow(async_fn_in_trait)]
pub trait WebhookHttp {
    async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: &str,
        timeout_ms: u64,
    ) -> Result<HttpReply, String>;
}

/// What to do with a job after [`process`].
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Done,
    /// Queue this job after `delay_seconds` seconds (a retry, or a chained wait).
    Requeue {
        job: Box<DeliveryJob>,
        delay_seconds: u32,
    },
}

/// `Retry-After`: delta seconds, or an HTTP date.
pub fn parse_retry_after(v: &str, now_ms: u64) -> Option<u64> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(s.min(MAX_RETRY_AFTER_SECONDS));
    }
    let at_seconds = crate::ids::parse_rfc2822_unix_seconds(v)?;
    let at_ms = u64::try_from(at_seconds).ok()?.saturating_mul(1000);
    Some((at_ms.saturating_sub(now_ms).div_ceil(1000)).min(MAX_RETRY_AFTER_SECONDS))
}

/// Delay after a failed attempt: the schedule's step, or longer when the
/// receiver asked for it (Retry-After). None: the schedule is exhausted.
pub fn retry_delay_seconds(
    schedule: &[u32],
    step: u32,
    retry_after_seconds: Option<u64>,
) -> Option<u64> {
    let base = u64::from(*schedule.get(step as usize)?);
    Some(base.max(retry_after_seconds.unwrap_or(0)))
}

/// Runs one job: see the module docs. `clock` gives the current unix ms;
/// `sealing` opens the endpoint's secrets (`VOXLINE_SEALING_KEY`).
pub async fn process(
    kv: &impl Kv,
    http: &impl WebhookHttp,
    job: DeliveryJob,
    clock: &dyn Fn() -> u64,
    dev_mode: bool,
    sealing: Option<&SealingKey>,
) -> Result<Next, StoreError> {
    let now = clock();
    // A chained wait that is not over yet: wait more, no attempt.
    if job.due_at_ms > now + 1_000 {
        let delay_seconds = (job.due_at_ms - now)
            .div_ceil(1000)
            .min(u64::from(MAX_QUEUE_DELAY_SECONDS)) as u32;
        return Ok(Next::Requeue {
            job: Box::new(job),
            delay_seconds,
        });
    }
    let record_key = keys::webhook_delivery(&job.tenant_id, &job.delivery_id);
    let mut record = get_json::<DeliveryRecord>(kv, &record_key)
        .await?
        .unwrap_or_else(|| DeliveryRecord::from_job(&job));
    let endpoint_key = keys::webhook(&job.tenant_id, &job.endpoint_id);
    let endpoint = get_json::<WebhookEndpoint>(kv, &endpoint_key).await?;
    let refusal = match &endpoint {
        None => Some("the endpoint was deleted".to_string()),
        Some(e) if !e.enabled => Some("the endpoint is disabled".to_string()),
        Some(e) => url_guard::check_webhook(&e.url, dev_mode)
            .err()
            .map(|why| format!("the endpoint URL is not allowed: {why}")),
    };
    let (Some(mut endpoint), None) = (endpoint, refusal.clone()) else {
        // Nothing is sent; the delivery ends here (a redelivery can revive it).
        record.status = DeliveryStatus::Failed;
        record.last_error = refusal;
        record.next_attempt_at = None;
        record.updated_at = rfc3339_ms(now);
        put_json(kv, &record_key, &record, Some(&record.list_metadata())).await?;
        return Ok(Next::Done);
    };

    // A secret that does not open, or no credential to sign with, fails the
    // attempt like any other error and nothing is sent (retried per the
    // schedule: the operator may restore the key or mint a credential meanwhile).
    let signed = signature_headers(kv, &endpoint, &job, now, sealing).await?;
    let (reply, error) = match signed {
        Err(e) => (None, Some(e)),
        Ok(mut headers) => {
            headers.push(("content-type".into(), "application/json".into()));
            headers.push(("user-agent".into(), "voxline-webhooks/1".into()));
            let timeout_ms = job.format.attempt_timeout_ms();
            match http
                .post(&endpoint.url, &headers, &job.payload, timeout_ms)
                .await
            {
                Ok(r) => (Some(r), None),
                Err(e) => (None, Some(e)),
            }
        }
    };
    let done_at = clock();
    let status_code = reply.as_ref().map(|r| r.status);
    record.attempts.push(AttemptLog {
        attempt: job.attempt,
        at: rfc3339_ms(now),
        url: endpoint.url.clone(),
        status_code,
        error: error.clone(),
        duration_ms: done_at.saturating_sub(now),
        manual: job.manual,
        response_snippet: reply.as_ref().and_then(|r| r.body_snippet.clone()),
    });
    record.updated_at = rfc3339_ms(done_at);
    record.next_attempt_at = None;
    let mut next = Next::Done;
    match status_code {
        Some(s) if (200..300).contains(&s) => {
            record.status = DeliveryStatus::Delivered;
            record.last_error = None;
        }
        Some(410) => {
            // Gone: the receiver asks us to stop. Disable the endpoint.
            endpoint.enabled = false;
            endpoint.disabled_reason = Some(format!(
                "the endpoint answered 410 Gone at {}",
                rfc3339_ms(done_at)
            ));
            endpoint.updated_at = Some(rfc3339_ms(done_at));
            endpoint.seal_legacy_secrets(&job.tenant_id, sealing);
            put_json(kv, &endpoint_key, &endpoint, None).await?;
            record.status = DeliveryStatus::Failed;
            record.last_error = Some("410 Gone: the endpoint was disabled".into());
        }
        _ => {
            let why = error.unwrap_or_else(|| format!("HTTP {}", status_code.unwrap_or(0)));
            let retry_after = reply
                .as_ref()
                .and_then(|r| r.retry_after.as_deref())
                .and_then(|v| parse_retry_after(v, done_at))
                .filter(|_| job.format.honours_retry_after());
            let schedule = job.format.retry_schedule(&endpoint.retry_schedule);
            match retry_delay_seconds(schedule, job.step, retry_after) {
                Some(delay) => {
                    let due = done_at + delay * 1000;
                    record.status = DeliveryStatus::Pending;
                    record.next_attempt_at = Some(rfc3339_ms(due));
                    record.last_error = Some(why);
                    let follow = DeliveryJob {
                        attempt: job.attempt + 1,
                        step: job.step + 1,
                        due_at_ms: due,
                        manual: false,
                        ..job
                    };
                    next = Next::Requeue {
                        job: Box::new(follow),
                        delay_seconds: delay.min(u64::from(MAX_QUEUE_DELAY_SECONDS)) as u32,
                    };
                }
                None => {
                    record.status = DeliveryStatus::Failed;
                    record.last_error = Some(format!("{why}; retry schedule exhausted"));
                }
            }
        }
    }
    put_json(kv, &record_key, &record, Some(&record.list_metadata())).await?;
    Ok(next)
}

/// The headers that sign `job`'s body, as its format does: Standard Webhooks
/// with the endpoint's secrets (native), `X-Signature` with a BuildVoiceAI
/// credential's token, Calldock's two headers or CodeB's `X-CodeB-Signature`
/// with the endpoint's secret.
/// `Ok(Err(why))`: nothing can sign it (the attempt fails, nothing is sent).
async fn signature_headers(
    kv: &impl Kv,
    endpoint: &WebhookEndpoint,
    job: &DeliveryJob,
    now_ms: u64,
    sealing: Option<&SealingKey>,
) -> Result<Result<Vec<(String, String)>, String>, StoreError> {
    let secrets = || {
        endpoint
            .signing_secrets(&job.tenant_id, sealing, now_ms)
            .map_err(|e| e.to_string())
    };
    Ok(match job.format {
        WebhookFormat::Native => secrets().and_then(|secrets| {
            let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
            webhook_signing::headers(
                &secrets,
                &job.event_id,
                now_ms / 1000,
                job.payload.as_bytes(),
            )
            .map(|h| h.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            .map_err(|e| e.to_string())
        }),
        // One signature header: the current secret only (a rotation takes effect at once).
        WebhookFormat::Calldock => secrets().and_then(|secrets| match secrets.first() {
            Some(secret) => Ok(post_call::calldock_headers(secret, &job.payload)),
            None => Err("the endpoint has no secret".into()),
        }),
        // Likewise CodeB's one header (its document: "rotate the secret at any time").
        WebhookFormat::Codeb => secrets().and_then(|secrets| match secrets.first() {
            Some(secret) => Ok(post_call::codeb_headers(secret, &job.payload)),
            None => Err("the endpoint has no secret".into()),
        }),
        // Voice360: the current secret only (a rotation ends the old one at once).
        WebhookFormat::Voice360 => secrets().and_then(|secrets| match secrets.first() {
            Some(secret) => Ok(post_call::voice360_headers(secret, &job.payload)),
            None => Err("the endpoint has no secret".into()),
        }),
        WebhookFormat::BuildVoiceAi => {
            buildvoiceai_token(kv, &job.tenant_id, job.placed_with_key.as_deref(), sealing)
                .await?
                .map(|token| post_call::buildvoiceai_headers(&token, &job.payload))
        }
    })
}

/// The token BuildVoiceAI's `X-Signature` is keyed with: that of the
/// credential that placed the call, unless it was revoked since; else the
/// tenant's newest unrevoked BuildVoiceAI credential (its receivers hold the
/// current key: the vendor's "a new key invalidates the previous one").
/// `Ok(Err(why))` when there is none, or its token does not open.
async fn buildvoiceai_token(
    kv: &impl Kv,
    tenant_id: &str,
    placed_with_key: Option<&str>,
    sealing: Option<&SealingKey>,
) -> Result<Result<String, String>, StoreError> {
    let usable = |info: &DialectKeyInfo| {
        info.dialect == Dialect::BuildVoiceAi
            && info.revoked_at.is_none()
            && info.signing_token.is_some()
    };
    let mut chosen: Option<DialectKeyInfo> = None;
    if let Some(kid) = placed_with_key {
        chosen = get_json::<DialectKeyInfo>(kv, &keys::dialect_key(tenant_id, kid))
            .await?
            .filter(|info| usable(info));
    }
    if chosen.is_none() {
        let all: Vec<DialectKeyInfo> =
            crate::store::get_all_json(kv, &keys::dialect_keys_prefix(tenant_id)).await?;
        chosen = all
            .into_iter()
            .filter(|info| usable(info))
            .max_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    }
    let Some(info) = chosen else {
        return Ok(Err(format!(
            "no BuildVoiceAI credential to sign with: the tenant has no unrevoked one \
             (POST /admin/tenants/{tenant_id}/dialect-keys {{\"dialect\": \"buildvoiceai\"}}); nothing was sent"
        )));
    };
    let owner = SecretOwner::DialectKey {
        tenant: tenant_id,
        key_id: &info.id,
    };
    Ok(match &info.signing_token {
        Some(sealed) => sealed.open(sealing, owner).map_err(|e| {
            format!(
                "the token of BuildVoiceAI credential {} does not open: {e}; nothing was sent",
                info.id
            )
        }),
        None => Err(format!(
            "BuildVoiceAI credential {} keeps no token; nothing was sent",
            info.id
        )),
    })
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::engine_keys::StoredSecret;
    use crate::model::default_retry_schedule;
    use crate::store::memory::MemoryKv;
    use futures::executor::block_on;

    /// The sealing key native tests run with.
    pub fn sealing_key() -> SealingKey {
        SealingKey::from_secret(&"5e".repeat(32)).unwrap()
    }

    /// The endpoint's current secret in clear.
    pub fn clear_secret(e: &WebhookEndpoint, tenant: &str) -> String {
        e.signing_secrets(tenant, Some(&sealing_key()), 0).unwrap()[0].clone()
    }

    /// An endpoint stored as the admin API stores it (its secret sealed under [`sealing_key`]).
    pub fn endpoint_with(
        kv: &MemoryKv,
        tenant: &str,
        events: &[&str],
        schedule: Vec<u32>,
    ) -> WebhookEndpoint {
        let id = ids::random_id("wh");
        let secret = StoredSecret::seal(
            &sealing_key(),
            SecretOwner::Webhook {
                tenant,
                endpoint: &id,
            },
            &ids::mint_webhook_secret(),
        );
        let e = WebhookEndpoint {
            id,
            url: "https://hooks.example.com/x".into(),
            events: events.iter().map(|s| s.to_string()).collect(),
            enabled: true,
            secret,
            created_at: rfc3339_ms(1_780_000_000_000),
            retry_schedule: schedule,
            disabled_reason: None,
            previous_secret: None,
            previous_secret_expires_ms: None,
            updated_at: None,
            format: WebhookFormat::Native,
            agent_id: None,
            voice360_event: None,
        };
        block_on(put_json(kv, &keys::webhook(tenant, &e.id), &e, None)).unwrap();
        e
    }

    /// An enabled endpoint of `tenant` for `events`; its id.
    pub fn endpoint(kv: &MemoryKv, tenant: &str, events: &[&str]) -> String {
        endpoint_with(kv, tenant, events, default_retry_schedule()).id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine_keys::StoredSecret;
    use crate::model::{default_retry_schedule, CallRecord};
    use crate::store::memory::MemoryKv;
    use crate::webhooks::events::*;
    use futures::executor::block_on;
    use std::cell::{Cell, RefCell};
    use voxline_shared::CallStatus;
    use voxline_shared::EndedReason;

    const NOW: u64 = 1_764_082_200_000;

    /// (url, headers, body) of one request.
    type Sent = (String, Vec<(String, String)>, String);

    /// Answers from a script; records what it was sent.
    struct Script {
        replies: RefCell<Vec<Result<HttpReply, String>>>,
        sent: RefCell<Vec<Sent>>,
    }

    impl Script {
        fn new(replies: Vec<Result<HttpReply, String>>) -> Script {
            Script {
                replies: RefCell::new(replies),
                sent: RefCell::default(),
            }
        }
    }

    impl WebhookHttp for Script {
        async fn post(
            &self,
            url: &str,
            headers: &[(String, String)],
            body: &str,
            _timeout_ms: u64,
        ) -> Result<HttpReply, String> {
            self.sent
                .borrow_mut()
                .push((url.to_string(), headers.to_vec(), body.to_string()));
            self.replies.borrow_mut().remove(0)
        }
    }

    fn ok(status: u16) -> Result<HttpReply, String> {
        Ok(HttpReply {
            status,
            retry_after: None,
            body_snippet: None,
        })
    }

    fn call(status: CallStatus) -> CallRecord {
        CallRecord {
            metadata: serde_json::from_value(json!({"crm": 7})).unwrap(),
            attempts: 1,
            dispatched_at: Some(rfc3339_ms(NOW)),
            ringing_at: Some(rfc3339_ms(NOW + 1_000)),
            answered_at: Some(rfc3339_ms(NOW + 4_000)),
            created_at: rfc3339_ms(NOW),
            updated_at: rfc3339_ms(NOW),
            ended_at: Some(rfc3339_ms(NOW + 14_500)),
            ended_reason: Some(EndedReason::CalleeHangup),
            ..crate::model::test_call(status)
        }
    }

    fn key() -> SealingKey {
        super::tests_support::sealing_key()
    }

    fn endpoint(kv: &MemoryKv, events: &[&str], schedule: Vec<u32>) -> WebhookEndpoint {
        super::tests_support::endpoint_with(kv, "ten_1", events, schedule)
    }

    fn record(kv: &MemoryKv, job: &DeliveryJob) -> DeliveryRecord {
        block_on(get_json(
            kv,
            &keys::webhook_delivery("ten_1", &job.delivery_id),
        ))
        .unwrap()
        .unwrap()
    }

    #[test]
    fn queued_webhook_jobs_read_as_before_and_mail_jobs_as_mails() {
        // A delivery as an earlier version queued it (no `kind`).
        let old = r#"{"tenant_id":"t","delivery_id":"dlv_1","endpoint_id":"we_1","event_id":"evt_1","event_type":"call.completed","payload":"{}","call_id":"call_1","created_at_ms":1,"attempt":1,"step":0,"due_at_ms":1}"#;
        let job: QueueJob = serde_json::from_str(old).unwrap();
        let QueueJob::Webhook(delivery) = &job else {
            panic!("{job:?}")
        };
        assert_eq!(delivery.delivery_id, "dlv_1");
        let again = serde_json::to_string(&job).unwrap();
        assert_eq!(
            serde_json::from_str::<DeliveryJob>(&again).unwrap(),
            *delivery,
            "written as a plain delivery"
        );
        let mail = crate::mail::tests_support::job();
        let text = serde_json::to_string(&QueueJob::Mail(mail.clone())).unwrap();
        assert_eq!(text, serde_json::to_string(&mail).unwrap());
        assert_eq!(
            serde_json::from_str::<QueueJob>(&text).unwrap(),
            QueueJob::Mail(mail)
        );
    }

    #[test]
    fn events_follow_the_state_changes() {
        use CallStatus::*;
        let mut r = call(Ringing);
        assert_eq!(
            event_for_change(Dialing, &r),
            Some(WebhookEvent::CallRinging)
        );
        r.status = InProgress;
        assert_eq!(
            event_for_change(Ringing, &r),
            Some(WebhookEvent::CallAnswered)
        );
        assert_eq!(
            event_for_change(Dialing, &r),
            Some(WebhookEvent::CallAnswered)
        );
        for s in [Completed, NoAnswer, Busy, Cancelled] {
            r.status = s;
            assert_eq!(
                event_for_change(InProgress, &r),
                Some(WebhookEvent::CallCompleted),
                "{s:?}"
            );
        }
        r.status = Failed;
        assert_eq!(
            event_for_change(Dialing, &r),
            Some(WebhookEvent::CallFailed)
        );
        r.status = Scheduled;
        assert_eq!(event_for_change(Dialing, &r), None, "a retry is no event");
        r.status = Dialing;
        assert_eq!(event_for_change(Queued, &r), None);
        r.status = Completed;
        assert_eq!(event_for_change(Completed, &r), None);
    }

    #[test]
    fn the_terminal_payload_has_status_durations_and_metadata() {
        let p: Value = serde_json::from_str(&call_event_payload(
            WebhookEvent::CallCompleted,
            "evt_1",
            &call(CallStatus::Completed),
            NOW + 15_000,
        ))
        .unwrap();
        assert_eq!(
            (p["type"].as_str(), p["id"].as_str()),
            (Some("call.completed"), Some("evt_1"))
        );
        let d = &p["data"];
        assert_eq!(
            (
                d["status"].as_str(),
                d["ended_reason"].as_str(),
                d["attempts"].as_u64()
            ),
            (Some("completed"), Some("callee_hangup"), Some(1))
        );
        assert_eq!(
            (d["ring_seconds"].as_f64(), d["talk_seconds"].as_f64()),
            (Some(3.0), Some(10.5))
        );
        assert_eq!(d["metadata"], json!({"crm": 7}));
        assert_eq!(
            d["transcript_url"].as_str(),
            Some("/v1/calls/call_1/transcript")
        );
        for k in [
            "recording_url",
            "sip_code",
            "caller_name",
            "caller_number",
            "campaign_id",
        ] {
            assert!(d[k].is_null() && d.get(k).is_some(), "{k}");
        }
        let queued: Value = serde_json::from_str(&call_event_payload(
            WebhookEvent::CallQueued,
            "evt_2",
            &call(CallStatus::Queued),
            NOW,
        ))
        .unwrap();
        // No `outcome`: it only repeated the final `status`.
        assert!(queued["data"].get("outcome").is_none() && p["data"].get("outcome").is_none());
        assert!(queued["data"]["talk_seconds"].is_null());
    }

    #[test]
    fn emit_fans_out_to_enabled_endpoints_that_want_the_event() {
        let kv = MemoryKv::default();
        let all = endpoint(&kv, &[], default_retry_schedule());
        let only_failed = endpoint(&kv, &["call.failed"], default_retry_schedule());
        let mut off = endpoint(&kv, &[], default_retry_schedule());
        off.enabled = false;
        block_on(put_json(&kv, &keys::webhook("ten_1", &off.id), &off, None)).unwrap();
        let jobs = block_on(emit(
            &kv,
            "ten_1",
            WebhookEvent::CallCompleted,
            &call(CallStatus::Completed),
            NOW,
        ))
        .unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(
            (jobs[0].endpoint_id.as_str(), jobs[0].attempt),
            (all.id.as_str(), 1)
        );
        let jobs = block_on(emit(
            &kv,
            "ten_1",
            WebhookEvent::CallFailed,
            &call(CallStatus::Failed),
            NOW,
        ))
        .unwrap();
        assert_eq!(jobs.len(), 2);
        assert!(jobs.iter().any(|j| j.endpoint_id == only_failed.id));
        assert_eq!(
            jobs[0].event_id, jobs[1].event_id,
            "one event id across endpoints"
        );
        assert_ne!(jobs[0].delivery_id, jobs[1].delivery_id);
        assert!(block_on(emit(
            &kv,
            "ten_2",
            WebhookEvent::CallFailed,
            &call(CallStatus::Failed),
            NOW
        ))
        .unwrap()
        .is_empty());
    }

    fn first_job(kv: &MemoryKv, event: &str) -> DeliveryJob {
        block_on(emit(
            kv,
            "ten_1",
            WebhookEvent::parse(event).unwrap(),
            &call(CallStatus::Completed),
            NOW,
        ))
        .unwrap()
        .remove(0)
    }

    #[test]
    fn a_delivery_is_signed_verifiably_and_logged() {
        let kv = MemoryKv::default();
        let e = endpoint(&kv, &[], default_retry_schedule());
        let job = first_job(&kv, "call.completed");
        let http = Script::new(vec![ok(204)]);
        assert_eq!(
            block_on(process(
                &kv,
                &http,
                job.clone(),
                &|| NOW + 5,
                false,
                Some(&key())
            ))
            .unwrap(),
            Next::Done
        );
        let (url, headers, body) = http.sent.borrow()[0].clone();
        assert_eq!(
            (url.as_str(), body.as_str()),
            (e.url.as_str(), job.payload.as_str())
        );
        let h = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(h("webhook-id"), job.event_id);
        let ts: u64 = h("webhook-timestamp").parse().unwrap();
        assert_eq!(
            h("webhook-signature"),
            webhook_signing::sign(
                &super::tests_support::clear_secret(&e, "ten_1"),
                &job.event_id,
                ts,
                body.as_bytes()
            )
            .unwrap()
        );
        let r = record(&kv, &job);
        assert_eq!(
            (r.status, r.attempts.len(), r.attempts[0].status_code),
            (DeliveryStatus::Delivered, 1, Some(204))
        );
    }

    #[test]
    fn failures_follow_the_schedule_then_give_up() {
        let kv = MemoryKv::default();
        endpoint(&kv, &[], vec![1, 2]);
        let mut job = first_job(&kv, "call.completed");
        let http = Script::new(vec![ok(500), Err("connection refused".into()), ok(503)]);
        let clock = Cell::new(NOW);
        for (want_delay, want_attempt) in [(1, 2), (2, 3)] {
            match block_on(process(
                &kv,
                &http,
                job.clone(),
                &|| clock.get(),
                true,
                Some(&key()),
            ))
            .unwrap()
            {
                Next::Requeue {
                    job: next,
                    delay_seconds,
                } => {
                    assert_eq!(
                        (delay_seconds, next.attempt, next.event_id.as_str()),
                        (want_delay, want_attempt, job.event_id.as_str())
                    );
                    job = *next;
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(record(&kv, &job).status, DeliveryStatus::Pending);
            clock.set(clock.get() + 5_000);
        }
        assert_eq!(
            block_on(process(
                &kv,
                &http,
                job.clone(),
                &|| clock.get(),
                true,
                Some(&key())
            ))
            .unwrap(),
            Next::Done
        );
        let r = record(&kv, &job);
        assert_eq!(r.status, DeliveryStatus::Failed);
        let codes: Vec<Option<u16>> = r.attempts.iter().map(|a| a.status_code).collect();
        assert_eq!(codes, vec![Some(500), None, Some(503)]);
        assert_eq!(r.attempts[1].error.as_deref(), Some("connection refused"));
        assert!(r.last_error.unwrap().contains("exhausted"));
    }

    #[test]
    fn retry_after_410_and_long_waits() {
        assert_eq!(parse_retry_after("7", NOW), Some(7));
        assert_eq!(
            parse_retry_after("Tue, 25 Nov 2025 14:50:30 +0000", NOW),
            Some(30)
        );
        assert_eq!(parse_retry_after("soon", NOW), None);
        assert_eq!(retry_delay_seconds(&[5, 300], 0, Some(60)), Some(60));
        assert_eq!(retry_delay_seconds(&[5, 300], 1, Some(60)), Some(300));
        assert_eq!(retry_delay_seconds(&[5, 300], 2, None), None);

        let kv = MemoryKv::default();
        let e = endpoint(&kv, &[], vec![1, 1]);
        let job = first_job(&kv, "call.completed");
        let http = Script::new(vec![
            Ok(HttpReply {
                status: 429,
                retry_after: Some("4".into()),
                body_snippet: Some("slow down".into()),
            }),
            ok(410),
        ]);
        let Next::Requeue { job, delay_seconds } =
            block_on(process(&kv, &http, job, &|| NOW, true, Some(&key()))).unwrap()
        else {
            panic!()
        };
        let job = *job;
        assert_eq!(delay_seconds, 4);
        assert_eq!(
            block_on(process(
                &kv,
                &http,
                job.clone(),
                &|| NOW + 4_000,
                true,
                Some(&key())
            ))
            .unwrap(),
            Next::Done
        );
        let stored: WebhookEndpoint = block_on(get_json(&kv, &keys::webhook("ten_1", &e.id)))
            .unwrap()
            .unwrap();
        assert!(!stored.enabled && stored.disabled_reason.unwrap().contains("410"));
        assert_eq!(record(&kv, &job).status, DeliveryStatus::Failed);
        // Each attempt keeps the start of the receiver's answer, when it had one.
        let snippets: Vec<Option<String>> = record(&kv, &job)
            .attempts
            .iter()
            .map(|a| a.response_snippet.clone())
            .collect();
        assert_eq!(snippets, vec![Some("slow down".to_string()), None]);
        // Later jobs for the disabled endpoint end without a request.
        let later = first_job_for(&kv, &e.id, &job);
        assert_eq!(
            block_on(process(
                &kv,
                &http,
                later.clone(),
                &|| NOW,
                true,
                Some(&key())
            ))
            .unwrap(),
            Next::Done
        );
        assert!(record(&kv, &later).last_error.unwrap().contains("disabled"));
        assert_eq!(http.sent.borrow().len(), 2);

        // A wait past the queue's maximum delay is chained without an attempt.
        let far = DeliveryJob {
            due_at_ms: NOW + 50_000_000,
            ..job
        };
        let Next::Requeue { delay_seconds, .. } =
            block_on(process(&kv, &http, far, &|| NOW, true, Some(&key()))).unwrap()
        else {
            panic!()
        };
        assert_eq!(delay_seconds, MAX_QUEUE_DELAY_SECONDS);
        assert_eq!(http.sent.borrow().len(), 2);
    }

    fn first_job_for(_kv: &MemoryKv, endpoint_id: &str, like: &DeliveryJob) -> DeliveryJob {
        DeliveryJob {
            delivery_id: delivery_id(NOW + 1),
            endpoint_id: endpoint_id.to_string(),
            attempt: 1,
            step: 0,
            due_at_ms: NOW,
            ..like.clone()
        }
    }

    #[test]
    fn rotation_signs_with_both_secrets_during_the_overlap_only() {
        let kv = MemoryKv::default();
        let mut e = endpoint(&kv, &[], vec![1]);
        let old = super::tests_support::clear_secret(&e, "ten_1");
        e.previous_secret = Some(e.secret.clone());
        e.previous_secret_expires_ms = Some(NOW + 10_000);
        // A record written before sealing: its clear secret is read as it is.
        let new = ids::mint_webhook_secret();
        e.secret = StoredSecret::legacy_clear(&new);
        let k = key();
        assert_eq!(
            e.signing_secrets("ten_1", Some(&k), NOW).unwrap(),
            vec![new.clone(), old]
        );
        assert_eq!(
            e.signing_secrets("ten_1", Some(&k), NOW + 10_000).unwrap(),
            vec![new]
        );
        // A sealed one needs the key, and opens only for its own endpoint.
        assert!(e.signing_secrets("ten_1", None, NOW).is_err());
        assert!(e.signing_secrets("ten_2", Some(&k), NOW).is_err());
    }

    #[test]
    fn refused_urls_are_checked_again_at_delivery() {
        let kv = MemoryKv::default();
        let mut e = endpoint(&kv, &[], vec![1]);
        e.url = "https://169.254.169.254/latest/meta-data".into();
        block_on(put_json(&kv, &keys::webhook("ten_1", &e.id), &e, None)).unwrap();
        let job = first_job(&kv, "call.completed");
        let http = Script::new(vec![]);
        assert_eq!(
            block_on(process(
                &kv,
                &http,
                job.clone(),
                &|| NOW,
                false,
                Some(&key())
            ))
            .unwrap(),
            Next::Done
        );
        assert!(http.sent.borrow().is_empty());
        let r = record(&kv, &job);
        assert!(
            r.status == DeliveryStatus::Failed && r.last_error.unwrap().contains("not allowed")
        );
    }

    #[test]
    fn a_response_snippet_is_bounded_in_characters_and_lossy() {
        assert_eq!(response_snippet(b""), None);
        assert_eq!(
            response_snippet(b"{\"ok\":true}").as_deref(),
            Some("{\"ok\":true}")
        );
        let long = "\u{e9}".repeat(RESPONSE_SNIPPET_CHARS + 50);
        let s = response_snippet(long.as_bytes()).unwrap();
        assert_eq!(s.chars().count(), RESPONSE_SNIPPET_CHARS);
        assert!(s.chars().all(|c| c == '\u{e9}'));
        assert_eq!(
            response_snippet(&[0xff, b'a']).as_deref(),
            Some("\u{fffd}a")
        );
    }
}
