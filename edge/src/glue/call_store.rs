//! wasm32-only: the `CallStore` Durable Object (one per tenant, SQLite
//! storage) and the Worker's handle on it. Every decision is the pure
//! `calls::store` code; this file adapts `ctx.storage.sql` to the [`Sql`]
//! port, drains the outbox of webhook events into the delivery queue, and
//! retries that drain by alarm until the queue has taken every event.

use crate::calls::store::{self, SqlCallRows};
use crate::glue::env::{DoSql, WorkersKv, KV_BINDING};
use crate::glue::stubs::Envelope;
use crate::store::StoreError;
use std::cell::Cell;
use worker::{console_log, durable_object, Date, Env, Request, Response, Result, State};

/// A drain that could not hand every event to the queue runs again this much later.
const DRAIN_RETRY_MS: i64 = 2_000;
/// Expired idempotency claims are swept at most this often.
const SWEEP_EVERY_MS: i64 = 3_600_000;

#[durable_object]
pub struct CallStore {
    state: State,
    env: Env,
    rows: SqlCallRows<DoSql>,
    schema_ready: Cell<bool>,
    /// A drain is running; another request's events wait for its next round.
    draining: Cell<bool>,
    drain_again: Cell<bool>,
    tenant: std::cell::RefCell<Option<String>>,
}

const TENANT_KEY: &str = "tenant";

impl CallStore {
    fn ready(&self) -> std::result::Result<(), StoreError> {
        if !self.schema_ready.get() {
            SqlCallRows::open(DoSql(self.state.storage().sql()))?;
            self.schema_ready.set(true);
        }
        Ok(())
    }

    /// Hands pending events to the delivery queue; an alarm retries what is left.
    async fn drain(&self, tenant_id: &str) {
        if self.draining.replace(true) {
            self.drain_again.set(true);
            return;
        }
        let mut more = true;
        while more {
            self.drain_again.set(false);
            more = match self.drain_once(tenant_id).await {
                Ok(left) => left || self.drain_again.get(),
                Err(e) => {
                    console_log!("call store {tenant_id}: outbox drain failed: {e:?}");
                    self.retry_later().await;
                    false
                }
            };
        }
        self.draining.set(false);
    }

    async fn drain_once(&self, tenant_id: &str) -> std::result::Result<bool, StoreError> {
        let kv = WorkersKv(
            self.env
                .kv(KV_BINDING)
                .map_err(|e| StoreError::Unavailable(e.to_string()))?,
        );
        let now = Date::now().as_millis();
        let env = &self.env;
        let links = crate::glue::env::recording_links(env);
        store::drain_outbox(&self.rows, &kv, tenant_id, links.as_ref(), now, |jobs| {
            crate::glue::webhook_queue::send_all(env, jobs)
        })
        .await
    }

    async fn retry_later(&self) {
        let storage = self.state.storage();
        match storage.get_alarm().await {
            Ok(Some(_)) => {}
            _ => {
                if let Err(e) = storage.set_alarm(DRAIN_RETRY_MS).await {
                    console_log!("call store: setting the drain alarm failed: {e}");
                }
            }
        }
    }

    /// The tenant this object belongs to: cached after the first read.
    fn tenant(&self) -> Option<String> {
        use store::CallRows;
        if let Some(t) = self.tenant.borrow().as_ref() {
            return Some(t.clone());
        }
        let stored = self.rows.value(TENANT_KEY).ok().flatten();
        self.tenant.borrow_mut().clone_from(&stored);
        stored
    }
}

impl worker::DurableObject for CallStore {
    fn new(state: State, env: Env) -> Self {
        let rows = SqlCallRows(DoSql(state.storage().sql()));
        CallStore {
            state,
            env,
            rows,
            schema_ready: Cell::new(false),
            draining: Cell::new(false),
            drain_again: Cell::new(false),
            tenant: Default::default(),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let envelope: Envelope = match req.json().await {
            Ok(e) => e,
            Err(e) => return Response::error(format!("bad call store request: {e}"), 400),
        };
        let tenant_id = envelope.tenant_id;
        let answer = async {
            self.ready()?;
            if self.tenant().as_deref() != Some(tenant_id.as_str()) {
                use store::CallRows;
                self.rows.put_value(TENANT_KEY, &tenant_id)?;
                *self.tenant.borrow_mut() = Some(tenant_id.clone());
                // The first request also arms the periodic sweep.
                self.retry_later().await;
            }
            let dispatch_queues = crate::glue::stubs::WorkersDispatchQueues(&self.env);
            let mut log = |m: String| console_log!("call store {tenant_id}: {m}");
            store::handle(
                &self.rows,
                &dispatch_queues,
                envelope.request,
                Date::now().as_millis(),
                &mut log,
            )
            .await
        }
        .await;
        match answer {
            Ok(answer) => {
                // Events leave before the answer: by the time a client hears
                // of a change, its webhooks are queued (or retried by alarm).
                self.drain(&tenant_id).await;
                Response::from_json(&answer)
            }
            Err(e) => {
                console_log!("call store {tenant_id}: {e:?}");
                Response::error(format!("call store: {e:?}"), 503)
            }
        }
    }

    async fn alarm(&self) -> Result<Response> {
        use store::CallRows;
        if self.ready().is_err() {
            return Response::ok("");
        }
        let Some(tenant_id) = self.tenant() else {
            return Response::ok("");
        };
        let now = Date::now().as_millis();
        if let Err(e) = self.rows.sweep_idem(now) {
            console_log!("call store {tenant_id}: idempotency sweep failed: {e:?}");
        }
        self.drain(&tenant_id).await;
        let pending = self.rows.events(1).map(|e| !e.is_empty()).unwrap_or(true);
        let next = if pending {
            DRAIN_RETRY_MS
        } else {
            SWEEP_EVERY_MS
        };
        self.state.storage().set_alarm(next).await?;
        Response::ok("")
    }
}
