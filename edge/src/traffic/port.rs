//! The port the API reaches a tenant's traffic state through (a
//! `RateLimiter` Durable Object in the Worker).

use std::future::Future;
use std::pin::Pin;

use crate::store::StoreError;
use crate::traffic::idempotency::*;
use crate::traffic::rate::*;
use crate::traffic::tokens::IssueToken;

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
    /// Stores a CodeB access token in the tenant's object; `false`: the
    /// password it was minted with is no longer the user's (see
    /// [`crate::traffic::tokens::SqlTokens::issue`]).
    fn issue_token<'a>(
        &'a self,
        tenant_id: &'a str,
        token: &'a IssueToken,
    ) -> LocalFuture<'a, Result<bool, StoreError>>;
    /// The user of a live CodeB access token of the tenant (by its hash).
    fn check_token<'a>(
        &'a self,
        tenant_id: &'a str,
        token_hash: &'a str,
    ) -> LocalFuture<'a, Result<Option<String>, StoreError>>;
    /// Sets a CodeB user's current credential stamp (`None`: disabled or
    /// deleted) and revokes all of their tokens.
    fn set_user_credential<'a>(
        &'a self,
        tenant_id: &'a str,
        username: &'a str,
        credential: Option<&'a str>,
    ) -> LocalFuture<'a, Result<(), StoreError>>;
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

/// One request to a `RateLimiter` object, and its answer: the wire form of
/// [`Traffic`], so a renamed field fails to compile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RateLimiterRequest {
    /// Counts a request in every scope of `admission` and begins its
    /// idempotency key, or refuses it (see [`Traffic::admit`]).
    Admit { admission: Admission },
    /// Stores the response of the request that began `key`.
    Complete {
        key: String,
        response: StoredResponse,
    },
    /// Forgets an in-flight key whose request failed on our side.
    Release { key: String },
    /// One credential check from the address the object is named for
    /// (`scope`, which starts with [`crate::traffic::AUTH_FAILURE_PREFIX`]).
    AuthAttempt {
        scope: String,
        limit: RateLimit,
        failed: bool,
    },
    /// Stores a CodeB access token (see [`Traffic::issue_token`]).
    IssueToken { token: IssueToken },
    /// Looks a CodeB access token up by its hash.
    CheckToken { token_hash: String },
    /// Sets a CodeB user's credential stamp and revokes their tokens.
    SetUserCredential {
        username: String,
        credential: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum RateLimiterAnswer {
    Admitted {
        admitted: Admitted,
    },
    /// `Complete` and `Release` are done.
    Done,
    AuthAttempt {
        verdict: RateVerdict,
    },
    TokenIssued {
        issued: bool,
    },
    TokenChecked {
        username: Option<String>,
    },
}
