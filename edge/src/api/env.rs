//! What a request runs against: the ports and settings every handler takes.

use crate::calls::store::Calls;
use crate::dispatch::port::DispatchQueues;
use crate::error::ApiError;
use crate::store::Kv;
use crate::traffic::{self, Traffic};

/// What a request runs against.
pub struct Env<'a, K: Kv, D: DispatchQueues> {
    pub kv: &'a K,
    /// The region dispatch queues (Durable Objects in the Worker).
    pub dispatch_queues: &'a D,
    pub now_ms: u64,
    /// `ADMIN_TOKEN` secret; the admin API is closed without it.
    pub admin_token: Option<&'a str>,
    /// Local development (`VOXLINE_ENV=development`): allows plain-http loopback webhooks.
    pub dev_mode: bool,
    /// Region whose sidecars dial new calls (`DEFAULT_REGION`, "local" when unset).
    pub default_region: &'a str,
    /// Per-tenant rate limits and idempotency keys (a Durable Object per tenant in the Worker).
    pub traffic: &'a dyn Traffic,
    /// Each tenant's calls: the `CallStore` Durable Objects in the Worker.
    pub calls: &'a dyn Calls,
    /// Each tenant's directory and the cross-tenant claims: the `Directory`
    /// Durable Objects in the Worker.
    pub directory: &'a dyn crate::directory::Directory,
    /// Each campaign: its `Campaign` Durable Object in the Worker.
    pub campaigns: &'a dyn crate::campaigns::Campaigns,
    /// Webhook deliveries this request produced; the glue queues them.
    pub outbox: &'a crate::webhooks::delivery::Outbox,
    /// `VOXLINE_SEALING_KEY`: seals engine API keys (none: they are refused).
    pub sealing_key: Option<&'a crate::engine_keys::SealingKey>,
    /// Wrong credentials allowed per client address and window
    /// (`traffic::AUTH_FAILURES` unless the Worker's vars say otherwise).
    pub auth_failures: traffic::RateLimit,
    /// POSTs customer tools' calls (issue 18): `fetch` in the Worker.
    pub tool_http: &'a dyn crate::webhooks::tool_calls::ToolHttp,
}

pub(crate) type Result<T> = std::result::Result<T, ApiError>;

impl<K: Kv, D: DispatchQueues> Env<'_, K, D> {
    /// The KV record at `key` for an `id` we minted with `prefix`; `not_found`
    /// when it is absent, or when `id` is not shaped like ours (so junk never
    /// reaches storage).
    pub(crate) async fn load_by_id<T: serde::de::DeserializeOwned>(
        &self,
        id: &str,
        prefix: &str,
        key: &str,
        not_found: impl Fn() -> ApiError,
    ) -> Result<T> {
        if !crate::ids::is_id(id, prefix) {
            return Err(not_found());
        }
        crate::store::get_json(self.kv, key)
            .await?
            .ok_or_else(not_found)
    }
}
