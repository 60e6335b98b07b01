//! wasm32-only: the Worker's handles on its Durable Objects (the client
//! side of `call_store`, `dispatch_queue` and `rate_limiter`), apart from the
//! objects so that one object may call another without an import circle.

use crate::calls::store::{CallStoreAnswer, CallStoreRequest, CallStoreTransport};
use crate::dispatch::port::DispatchQueues;
use crate::dispatch::queue::{CancelOutcome, EnqueueOutcome};
use crate::dispatch::queued_call::QueuedCall;
use crate::dispatch::sidecar_link::SidecarEnvelope;
use crate::store::StoreError;
use crate::traffic::{
    Admission, Admitted, LocalFuture, RateLimit, RateVerdict, StoredResponse, Traffic,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use worker::{Env, Method, Request, RequestInit};

/// Durable Object bindings (`wrangler.toml`).
pub const CALL_STORE_BINDING: &str = "CALL_STORE";
pub const DISPATCH_QUEUE_BINDING: &str = "DISPATCH";
pub const RATE_LIMITER_BINDING: &str = "RATE_LIMITER";
/// The region a `DispatchQueue` object serves, sent with every request to it.
pub const REGION_HEADER: &str = "x-voxline-region";

/// What the Worker (or a region's queue) sends to a tenant's object.
#[derive(Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub tenant_id: String,
    pub request: CallStoreRequest,
}

/// The Worker's (and the dispatch queues') handle on the tenants' call stores.
pub struct WorkersCalls<'a>(pub &'a Env);

impl CallStoreTransport for WorkersCalls<'_> {
    fn send<'a>(
        &'a self,
        tenant_id: &'a str,
        request: CallStoreRequest,
    ) -> LocalFuture<'a, std::result::Result<CallStoreAnswer, StoreError>> {
        Box::pin(async move {
            let unavailable =
                |e: worker::Error| StoreError::Unavailable(format!("call store {tenant_id}: {e}"));
            let stub = self
                .0
                .durable_object(CALL_STORE_BINDING)
                .and_then(|ns| ns.id_from_name(tenant_id)?.get_stub())
                .map_err(unavailable)?;
            let body = serde_json::to_string(&Envelope {
                tenant_id: tenant_id.to_string(),
                request,
            })
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let mut init = RequestInit::new();
            init.with_method(Method::Post).with_body(Some(body.into()));
            let req = Request::new_with_init("https://calls/", &init).map_err(unavailable)?;
            let mut resp = stub.fetch_with_request(req).await.map_err(unavailable)?;
            if resp.status_code() != 200 {
                let text = resp.text().await.unwrap_or_default();
                return Err(StoreError::Unavailable(format!(
                    "call store {tenant_id} answered {}: {text}",
                    resp.status_code()
                )));
            }
            resp.json::<CallStoreAnswer>()
                .await
                .map_err(|e| StoreError::Corrupt(format!("call store answer: {e}")))
        })
    }
}

/// The Worker's handle on the dispatch queues.
pub struct WorkersDispatchQueues<'a>(pub &'a Env);

impl WorkersDispatchQueues<'_> {
    async fn call(
        &self,
        region: &str,
        op: &str,
        body: &Value,
    ) -> std::result::Result<(u16, Value), StoreError> {
        let unavailable =
            |e: worker::Error| StoreError::Unavailable(format!("dispatch {region}{op}: {e}"));
        let stub = self
            .0
            .durable_object(DISPATCH_QUEUE_BINDING)
            .and_then(|ns| ns.id_from_name(region)?.get_stub())
            .map_err(unavailable)?;
        let mut init = RequestInit::new();
        let headers = worker::Headers::new();
        headers.set(REGION_HEADER, region).map_err(unavailable)?;
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(body.to_string().into()));
        let req =
            Request::new_with_init(&format!("https://dispatch{op}"), &init).map_err(unavailable)?;
        let mut resp = stub.fetch_with_request(req).await.map_err(unavailable)?;
        let status = resp.status_code();
        let value = resp.json::<Value>().await.map_err(unavailable)?;
        Ok((status, value))
    }
}

impl DispatchQueues for WorkersDispatchQueues<'_> {
    async fn enqueue(
        &self,
        region: &str,
        call: &QueuedCall,
    ) -> std::result::Result<EnqueueOutcome, StoreError> {
        let body = serde_json::to_value(call).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        match self.call(region, "/enqueue", &body).await? {
            (200, v) => serde_json::from_value(v)
                .map_err(|e| StoreError::Corrupt(format!("enqueue answer: {e}"))),
            (s, v) => Err(StoreError::Unavailable(format!(
                "enqueue answered {s}: {v}"
            ))),
        }
    }

    async fn cancel(
        &self,
        region: &str,
        call_id: &str,
    ) -> std::result::Result<CancelOutcome, StoreError> {
        let (_, v) = self
            .call(region, "/cancel", &json!({"call_id": call_id}))
            .await?;
        Ok(match v["outcome"].as_str() {
            Some("cancelled") => CancelOutcome::Cancelled,
            Some("signalled") => CancelOutcome::Signalled {
                sidecar_id: v["sidecar_id"].as_str().unwrap_or_default().to_string(),
            },
            _ => CancelOutcome::Unknown,
        })
    }

    async fn sidecar(
        &self,
        region: &str,
        envelope: &SidecarEnvelope,
    ) -> std::result::Result<(u16, Value), StoreError> {
        let body =
            serde_json::to_value(envelope).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.call(region, "/sidecar", &body).await
    }
}

/// The Worker's handle on the tenants' `RateLimiter` objects.
pub struct WorkersTraffic<'a>(pub &'a Env);

impl WorkersTraffic<'_> {
    async fn call(
        &self,
        tenant_id: &str,
        op: &str,
        body: &Value,
    ) -> std::result::Result<Value, StoreError> {
        let unavailable =
            |e: worker::Error| StoreError::Unavailable(format!("rate limiter {op}: {e}"));
        let stub = self
            .0
            .durable_object(RATE_LIMITER_BINDING)
            .and_then(|ns| ns.id_from_name(tenant_id)?.get_stub())
            .map_err(unavailable)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_body(Some(body.to_string().into()));
        let req =
            Request::new_with_init(&format!("https://traffic{op}"), &init).map_err(unavailable)?;
        let mut resp = stub.fetch_with_request(req).await.map_err(unavailable)?;
        let status = resp.status_code();
        let value = resp.json::<Value>().await.map_err(unavailable)?;
        if status != 200 {
            return Err(StoreError::Unavailable(format!(
                "rate limiter {op} answered {status}: {value}"
            )));
        }
        Ok(value)
    }
}

impl Traffic for WorkersTraffic<'_> {
    fn admit<'a>(
        &'a self,
        tenant_id: &'a str,
        a: &'a Admission,
    ) -> LocalFuture<'a, std::result::Result<Admitted, StoreError>> {
        Box::pin(async move {
            let body = serde_json::to_value(a).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let v = self.call(tenant_id, "/admit", &body).await?;
            serde_json::from_value(v).map_err(|e| StoreError::Corrupt(format!("admit answer: {e}")))
        })
    }

    fn complete<'a>(
        &'a self,
        tenant_id: &'a str,
        key: &'a str,
        response: &'a StoredResponse,
    ) -> LocalFuture<'a, std::result::Result<(), StoreError>> {
        Box::pin(async move {
            self.call(
                tenant_id,
                "/complete",
                &json!({"key": key, "response": response}),
            )
            .await?;
            Ok(())
        })
    }

    fn release<'a>(
        &'a self,
        tenant_id: &'a str,
        key: &'a str,
    ) -> LocalFuture<'a, std::result::Result<(), StoreError>> {
        Box::pin(async move {
            self.call(tenant_id, "/release", &json!({"key": key}))
                .await?;
            Ok(())
        })
    }

    fn auth_attempt<'a>(
        &'a self,
        scope: &'a str,
        limit: RateLimit,
        failed: bool,
    ) -> LocalFuture<'a, std::result::Result<RateVerdict, StoreError>> {
        Box::pin(async move {
            // The address's own object: its name is the scope (`authfail:...`),
            // which no tenant id (`ten_...`) can be.
            let v = self
                .call(
                    scope,
                    "/auth_attempt",
                    &json!({"scope": scope, "limit": limit, "failed": failed}),
                )
                .await?;
            serde_json::from_value(v)
                .map_err(|e| StoreError::Corrupt(format!("auth attempt answer: {e}")))
        })
    }
}
