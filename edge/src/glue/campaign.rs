//! wasm32-only: the `Campaign` Durable Object (one per campaign, SQLite
//! storage). Every decision is the pure `campaigns` code; this file feeds it
//! requests, sets the alarm to `campaigns::next_wake` after each, and on the
//! alarm runs `api::campaigns::run_alarm` (lease, place each call through
//! `place_call`, report back) against this object's own rows.

use crate::campaigns::{self, CampaignAnswer, CampaignRequest, Campaigns};
use crate::glue::env::{
    auth_failures, dev_mode, sealing_key, secret_or_var, DoSql, WorkersKv, KV_BINDING,
};
use crate::glue::stubs::CampaignEnvelope;
use crate::store::StoreError;
use crate::traffic::LocalFuture;
use std::cell::Cell;
use worker::{console_log, durable_object, Date, Env, Request, Response, Result, State};

/// A drain that could not hand the event to the queue runs again this much later.
const DRAIN_RETRY_MS: u64 = 2_000;

#[durable_object]
pub struct Campaign {
    state: State,
    env: Env,
    schema_ready: Cell<bool>,
}

/// This object's own rows as the [`Campaigns`] port, for its alarm.
struct Own<'a>(&'a DoSql);

impl Campaigns for Own<'_> {
    fn send<'a>(
        &'a self,
        _: &'a str,
        request: CampaignRequest,
    ) -> LocalFuture<'a, std::result::Result<CampaignAnswer, StoreError>> {
        Box::pin(async move { campaigns::handle(self.0, request, Date::now().as_millis()) })
    }
}

impl Campaign {
    fn sql(&self) -> std::result::Result<DoSql, StoreError> {
        let sql = DoSql(self.state.storage().sql());
        if !self.schema_ready.get() {
            campaigns::open(&sql)?;
            self.schema_ready.set(true);
        }
        Ok(sql)
    }

    /// The alarm at the pacing's next wake, or at the drain's retry.
    async fn rearm(&self, sql: &DoSql, drain_left: bool) {
        let now = Date::now().as_millis();
        let wake = campaigns::next_wake(sql, now).ok().flatten();
        let wake = match (wake, drain_left) {
            (Some(w), true) => Some(w.min(now + DRAIN_RETRY_MS)),
            (None, true) => Some(now + DRAIN_RETRY_MS),
            (w, false) => w,
        };
        let storage = self.state.storage();
        let result = match wake {
            Some(at) => {
                storage
                    .set_alarm(at.saturating_sub(now).max(1) as i64)
                    .await
            }
            None => storage.delete_alarm().await,
        };
        if let Err(e) = result {
            console_log!("campaign: setting the alarm failed: {e}");
        }
    }

    /// Hands `campaign.completed` to the delivery queue; true when left.
    async fn drain(&self, sql: &DoSql) -> bool {
        let kv = match self.env.kv(KV_BINDING) {
            Ok(kv) => WorkersKv(kv),
            Err(_) => return true,
        };
        let env = &self.env;
        campaigns::drain_outbox(sql, &kv, Date::now().as_millis(), |jobs| {
            crate::glue::webhook_queue::send_all(env, jobs)
        })
        .await
        .unwrap_or(true)
    }

    fn campaign_id(&self, sql: &DoSql) -> Option<String> {
        campaigns::record(sql).ok().flatten().map(|r| r.spec.id)
    }
}

impl worker::DurableObject for Campaign {
    fn new(state: State, env: Env) -> Self {
        Campaign {
            state,
            env,
            schema_ready: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let envelope: CampaignEnvelope = match req.json().await {
            Ok(e) => e,
            Err(e) => return Response::error(format!("bad campaign request: {e}"), 400),
        };
        let id = envelope.campaign_id;
        let answer = self.sql().and_then(|sql| {
            let a = campaigns::handle(&sql, envelope.request, Date::now().as_millis())?;
            Ok((sql, a))
        });
        match answer {
            Ok((sql, answer)) => {
                let left = self.drain(&sql).await;
                self.rearm(&sql, left).await;
                Response::from_json(&answer)
            }
            Err(e) => {
                console_log!("campaign {id}: {e:?}");
                Response::error(format!("campaign: {e:?}"), 503)
            }
        }
    }

    async fn alarm(&self) -> Result<Response> {
        let Ok(sql) = self.sql() else {
            return Response::ok("");
        };
        let Some(id) = self.campaign_id(&sql) else {
            return Response::ok("");
        };
        let own = Own(&sql);
        if let Err(e) = run_alarm(&self.env, &own, &id).await {
            console_log!("campaign {id}: alarm: {e:?}");
        }
        let left = self.drain(&sql).await;
        self.rearm(&sql, left).await;
        Response::ok("")
    }
}

/// A campaign object's alarm: the service's `run_alarm` against the Worker's
/// ports, with the object's own rows as its campaigns.
async fn run_alarm(
    env: &Env,
    campaigns: &dyn crate::campaigns::Campaigns,
    campaign_id: &str,
) -> std::result::Result<(), crate::store::StoreError> {
    let unavailable = |e: worker::Error| crate::store::StoreError::Unavailable(e.to_string());
    let kv = WorkersKv(env.kv(KV_BINDING).map_err(unavailable)?);
    let default_region =
        secret_or_var(env, "DEFAULT_REGION").unwrap_or_else(|| "local".to_string());
    let dispatch_queues = crate::glue::stubs::WorkersDispatchQueues(env);
    let traffic = crate::glue::stubs::WorkersTraffic(env);
    let calls = crate::glue::stubs::WorkersCalls(env);
    let directory = crate::glue::stubs::WorkersDirectory(env);
    let outbox = crate::webhooks::delivery::Outbox::default();
    let sealing_key = sealing_key(env);
    let senv = crate::api::env::Env {
        kv: &kv,
        dispatch_queues: &dispatch_queues,
        now_ms: worker::Date::now().as_millis(),
        admin_token: None,
        dev_mode: dev_mode(env),
        default_region: &default_region,
        traffic: &traffic,
        calls: &calls,
        directory: &directory,
        outbox: &outbox,
        sealing_key: sealing_key.as_ref(),
        auth_failures: auth_failures(env),
        tool_http: &crate::webhooks::tool_calls::NoToolHttp,
        campaigns,
    };
    let result = crate::api::campaigns::run_alarm(&senv, campaign_id).await;
    crate::glue::webhook_queue::send_jobs(env, outbox.take()).await;
    result
}
