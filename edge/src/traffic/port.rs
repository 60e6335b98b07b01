//! The port the API reaches a tenant's traffic state through (a
//! `RateLimiter` Durable Object in the Worker).

use std::future::Future;
use std::pin::Pin;

use crate::store::StoreError;
use crate::traffic::idempotency::*;
use crate::traffic::rate::*;

pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// The tenant's traffic-control object (the `RateLimiter` Durable Object in
/// the Worker). Object-safe so `api::env::Env` needs no extra type parameter.
pub trait Traffic {
    fn admit<'a>(
        &'a self,
        tenant_id: &'a str,
        a: &'a Admission,
    ) -> LocalFuture<'a, Result<Admitted, StoreError>>;
    /// Stores the response of a request that began `key` (for replays).
    fn complete<'a>(
        &'a self,
        tenant_id: &'a str,
        key: &'a str,
        response: &'a StoredResponse,
    ) -> LocalFuture<'a, Result<(), StoreError>>;
    /// Forgets an in-flight key whose request failed on our side (5xx), so a retry runs again.
    fn release<'a>(
        &'a self,
        tenant_id: &'a str,
        key: &'a str,
    ) -> LocalFuture<'a, Result<(), StoreError>>;
    /// [`auth_attempt`] in the object of the client address's `scope`
    /// ([`auth_failure_scope`]): failures have no tenant to be counted under.
    ///
    /// [`auth_attempt`]: crate::traffic::auth_failures::auth_attempt
    /// [`auth_failure_scope`]: crate::traffic::auth_failures::auth_failure_scope
    fn auth_attempt<'a>(
        &'a self,
        scope: &'a str,
        limit: RateLimit,
        failed: bool,
    ) -> LocalFuture<'a, Result<RateVerdict, StoreError>>;
}

/// The entry after `complete`: only an in-flight key becomes done.
pub fn complete_entry(
    entry: Option<&IdemEntry>,
    response: &StoredResponse,
    now_ms: u64,
) -> Option<IdemEntry> {
    match entry {
        Some(IdemEntry::InFlight { fingerprint, .. }) => Some(IdemEntry::Done {
            fingerprint: fingerprint.clone(),
            created_ms: now_ms,
            response: response.clone(),
        }),
        _ => None,
    }
}
