//! wasm32-only: webhook delivery through Cloudflare Queues. The producer
//! sends [`DeliveryJob`]s (JSON text) to `WEBHOOK_DELIVERIES`; the consumer
//! (`#[event(queue)]`, same Worker) runs the pure [`delivery::process`] on
//! each with a `fetch`-backed [`WebhookHttp`] and acks, re-queues (retry
//! delays are per job, so a new message carries the next attempt), or lets
//! the queue retry a job whose outcome could not be recorded. The same
//! queue carries the transcript emails ([`QueueJob::Mail`], `glue::mail`).

use crate::engine_keys::SealingKey;
use crate::glue::env::{WorkersKv, KV_BINDING};
use crate::glue::mail::WorkerMail;
use crate::webhooks::delivery::{self, DeliveryJob, HttpReply, Next, QueueJob, WebhookHttp};
use futures_util::future::{join_all, select, Either};
use futures_util::StreamExt;
use std::time::Duration;
use worker::{
    console_log, event, AbortController, Context, Date, Delay, Env, Fetch, Headers, MessageBatch,
    MessageBuilder, MessageExt, Method, QueueRetryOptionsBuilder, RawMessage, Request, RequestInit,
    RequestRedirect, Result,
};

pub const QUEUE_BINDING: &str = "WEBHOOK_DELIVERIES";
/// Queue-level retry when a job's outcome could not be stored or re-queued.
const STORE_RETRY_DELAY_SECONDS: u32 = 5;

/// Sends jobs to the delivery queue. A job that cannot be queued is logged:
/// the event is lost for that endpoint (the state change itself is stored).
pub async fn send_jobs(env: &Env, jobs: Vec<DeliveryJob>) {
    if jobs.is_empty() {
        return;
    }
    let queue = match env.queue(QUEUE_BINDING) {
        Ok(q) => q,
        Err(e) => {
            return console_log!(
                "webhooks: no queue binding {QUEUE_BINDING}: {e}; {} deliveries dropped",
                jobs.len()
            )
        }
    };
    for job in jobs {
        if let Err(e) = send_one(&queue, &job, 0).await {
            console_log!(
                "webhooks: queueing {} ({}) failed: {e}",
                job.delivery_id,
                job.event_type
            );
        }
    }
}

/// Sends jobs to the delivery queue; false if any could not be queued (the
/// caller keeps the event and tries again: a delivery may then go out twice,
/// with the same `webhook-id`, which receivers deduplicate on; a mail with
/// the same `Message-ID`).
pub async fn send_all(env: &Env, jobs: Vec<QueueJob>) -> bool {
    let queue = match env.queue(QUEUE_BINDING) {
        Ok(q) => q,
        Err(e) => {
            console_log!("webhooks: no queue binding {QUEUE_BINDING}: {e}");
            return false;
        }
    };
    for job in &jobs {
        // A campaign's call notice goes to its object, not to the queue.
        if let QueueJob::Campaign(notice) = job {
            use crate::campaigns::{CampaignRequest, Campaigns};
            let campaigns = crate::glue::stubs::WorkersCampaigns(env);
            let request = CampaignRequest::Notice {
                notice: notice.clone(),
            };
            if let Err(e) = campaigns.send(&notice.campaign_id, request).await {
                console_log!("campaign {}: notice failed: {e:?}", notice.campaign_id);
                return false;
            }
            continue;
        }
        if let Err(e) = send_one(&queue, job, 0).await {
            let (id, what) = match job {
                QueueJob::Webhook(j) => (j.delivery_id.as_str(), j.event_type.as_str()),
                QueueJob::Mail(j) => (j.mail_id.as_str(), "transcript_email"),
                QueueJob::Campaign(n) => (n.call_id.as_str(), "campaign_notice"),
            };
            console_log!("webhooks: queueing {id} ({what}) failed: {e}");
            return false;
        }
    }
    true
}

async fn send_one(
    queue: &worker::Queue,
    job: &impl serde::Serialize,
    delay_seconds: u32,
) -> Result<()> {
    let text = serde_json::to_string(job).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let mut msg = MessageBuilder::new(text);
    if delay_seconds > 0 {
        msg = msg.delay_seconds(delay_seconds);
    }
    queue.send(msg.build()).await
}

/// `fetch` with the timeout of the job's format (AbortController) and no redirects (a 3xx
/// could otherwise bounce a delivery to an address the URL guard refuses).
struct FetchHttp;

impl WebhookHttp for FetchHttp {
    async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: &str,
        timeout_ms: u64,
    ) -> std::result::Result<HttpReply, String> {
        let h = Headers::new();
        for (k, v) in headers {
            h.set(k, v).map_err(|e| format!("header {k}: {e}"))?;
        }
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(h)
            .with_body(Some(body.into()))
            .with_redirect(RequestRedirect::Manual);
        let req = Request::new_with_init(url, &init).map_err(|e| format!("bad request: {e}"))?;
        let controller = AbortController::default();
        let signal = controller.signal();
        let fetch = Fetch::Request(req);
        // The answer and the start of its body (for the log), within the timeout.
        let send = std::pin::pin!(async {
            let mut resp = fetch.send_with_signal(&signal).await?;
            let retry_after = resp.headers().get("retry-after").ok().flatten();
            let status = resp.status_code();
            let mut head = Vec::new();
            if let Ok(mut stream) = resp.stream() {
                while head.len() < delivery::RESPONSE_SNIPPET_BYTES {
                    match stream.next().await {
                        Some(Ok(chunk)) => head.extend_from_slice(&chunk),
                        // A body cut short still leaves its status to log.
                        Some(Err(_)) | None => break,
                    }
                }
            }
            Ok::<_, worker::Error>(HttpReply {
                status,
                retry_after,
                body_snippet: delivery::response_snippet(&head),
            })
        });
        let timeout = Delay::from(Duration::from_millis(timeout_ms));
        match select(send, timeout).await {
            Either::Left((Ok(reply), _)) => Ok(reply),
            Either::Left((Err(e), _)) => Err(format!("request failed: {e}")),
            Either::Right(_) => {
                controller.abort();
                Err(format!("no answer within {} s", timeout_ms / 1000))
            }
        }
    }
}

/// One transcript email: sent (or given up, logged) and acked, or queued
/// again after its retry delay.
async fn handle_mail(
    env: &Env,
    queue: &worker::Queue,
    transport: &WorkerMail,
    job: crate::mail::MailJob,
    msg: RawMessage,
) {
    let from = crate::glue::mail::mail_from(env);
    let Some((job, delay_seconds)) = crate::glue::mail::run(job, &from, transport).await else {
        return msg.ack();
    };
    match send_one(queue, &QueueJob::Mail(job), delay_seconds).await {
        Ok(()) => msg.ack(),
        Err(e) => {
            // The old job runs again later: one extra attempt, nothing lost.
            console_log!("mail: re-queueing failed: {e}");
            msg.retry_with_options(
                &QueueRetryOptionsBuilder::new()
                    .with_delay_seconds(delay_seconds.max(1))
                    .build(),
            );
        }
    }
}

async fn handle(
    env: &Env,
    queue: &worker::Queue,
    mail: &WorkerMail,
    kv: &WorkersKv,
    dev_mode: bool,
    sealing: Option<&SealingKey>,
    msg: RawMessage,
) {
    let job = match msg
        .body()
        .as_string()
        .and_then(|t| serde_json::from_str::<QueueJob>(&t).ok())
    {
        Some(QueueJob::Webhook(job)) => job,
        Some(QueueJob::Mail(job)) => return handle_mail(env, queue, mail, job, msg).await,
        // Never queued (send_all hands notices to the campaign's object).
        Some(QueueJob::Campaign(_)) => {
            msg.ack();
            return;
        }
        None => {
            console_log!("webhooks: unreadable queue message {} dropped", msg.id());
            return msg.ack();
        }
    };
    let clock = || Date::now().as_millis();
    match delivery::process(kv, &FetchHttp, job, &clock, dev_mode, sealing).await {
        Ok(Next::Done) => msg.ack(),
        Ok(Next::Requeue { job, delay_seconds }) => {
            match send_one(queue, &job, delay_seconds).await {
                Ok(()) => msg.ack(),
                Err(e) => {
                    // The old job runs again later: one extra attempt, nothing lost.
                    console_log!("webhooks: re-queueing {} failed: {e}", job.delivery_id);
                    msg.retry_with_options(
                        &QueueRetryOptionsBuilder::new()
                            .with_delay_seconds(delay_seconds.max(1))
                            .build(),
                    );
                }
            }
        }
        Err(e) => {
            console_log!(
                "webhooks: storing the outcome of a delivery failed: {e:?}; the queue retries it"
            );
            msg.retry_with_options(
                &QueueRetryOptionsBuilder::new()
                    .with_delay_seconds(STORE_RETRY_DELAY_SECONDS)
                    .build(),
            );
        }
    }
}

#[event(queue)]
pub async fn consume(batch: MessageBatch<String>, env: Env, _ctx: Context) -> Result<()> {
    let kv = WorkersKv(env.kv(KV_BINDING)?);
    let queue = env.queue(QUEUE_BINDING)?;
    let dev_mode = env
        .var("VOXLINE_ENV")
        .is_ok_and(|v| v.to_string() == "development");
    let sealing = crate::glue::env::sealing_key(&env);
    let mail = WorkerMail::from_env(&env);
    // Attempts of one batch run concurrently: one slow receiver (up to the
    // attempt timeout) does not hold up the others.
    join_all(
        batch
            .raw_iter()
            .map(|msg| handle(&env, &queue, &mail, &kv, dev_mode, sealing.as_ref(), msg)),
    )
    .await;
    Ok(())
}
