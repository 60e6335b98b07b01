//! A call as the dispatch queue keeps it (in its waiting line or leased).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A call as the queue knows it: routing and retry policy plus the offer
/// body (built from the call record when it was enqueued).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueuedCall {
    pub call_id: String,
    pub tenant_id: String,
    /// Not leased before this time (schedule_at, retry delay).
    pub ready_at_ms: u64,
    /// 1 for the first dial.
    pub attempt: u32,
    pub retries: u32,
    pub retry_delay_ms: u64,
    /// Offer fields: phone, agent and engine settings, max_seconds, metadata ...
    pub offer: Value,
    /// Created with `schedule_at`: its record is `scheduled` until released.
    #[serde(default)]
    pub scheduled: bool,
    /// With `phone`, what makes two calls the same conversation: one at a
    /// time per (tenant, agent, number). Empty for calls queued before this existed.
    #[serde(default)]
    pub agent_id: String,
    #[serde(default)]
    pub phone: String,
    /// The tenant's `max_concurrent_calls` (None: unlimited). While the
    /// tenant has that many calls leased or held, its waiting calls are
    /// skipped by `lease`.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// Enqueue only (`on_concurrency_limit: reject`): refuse the call rather
    /// than let it wait when the tenant is at its cap.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reject_over_cap: bool,
    /// The agent's calling window when the call was placed: a retry that
    /// would fall outside it waits for the window's next start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calling_window: Option<crate::calling_window::CallingWindow>,
    /// The call's `max_seconds`: the sidecar ends an attempt after this long
    /// whatever happens, which bounds how long a stranded one can still run.
    #[serde(default = "default_max_seconds")]
    pub max_seconds: u32,
}

/// For entries queued before `max_seconds` was carried: the API's maximum.
fn default_max_seconds() -> u32 {
    3_600
}
