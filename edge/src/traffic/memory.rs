//! In-process [`Traffic`](crate::traffic::port::Traffic) over the same pure
//! logic, for native tests and (`bench-support`) the CPU bench.

use crate::store::StoreError;
use crate::traffic::auth_failures::*;
use crate::traffic::idempotency::*;
use crate::traffic::port::*;
use crate::traffic::rate::*;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

#[cfg(test)]
type TestTokens = crate::traffic::tokens::SqlTokens<crate::sql::sqlite::LimitedSqlite>;

#[derive(Default)]
pub struct MemoryTraffic {
    pub limiters: RefCell<BTreeMap<String, Limiter>>,
    pub idem: RefCell<BTreeMap<(String, String), IdemEntry>>,
    /// Accepted signatures: (tenant, storage key).
    pub signatures: RefCell<std::collections::BTreeSet<(String, String)>>,
    pub now_ms: Cell<u64>,
    /// Each tenant's CodeB token tables, on real SQLite like the object's.
    #[cfg(test)]
    pub tokens: RefCell<BTreeMap<String, TestTokens>>,
}

impl MemoryTraffic {
    /// Runs `f` on the tenant's token tables (created on first use).
    #[cfg(test)]
    fn with_tokens<T>(
        &self,
        tenant_id: &str,
        f: impl FnOnce(&TestTokens) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut all = self.tokens.borrow_mut();
        if !all.contains_key(tenant_id) {
            let opened =
                crate::traffic::tokens::SqlTokens::open(crate::sql::sqlite::LimitedSqlite::new())?;
            all.insert(tenant_id.to_string(), opened);
        }
        match all.get(tenant_id) {
            Some(t) => f(t),
            None => Err(StoreError::Unavailable("token tables".into())),
        }
    }
}

impl Traffic for MemoryTraffic {
    fn admit<'a>(
        &'a self,
        tenant_id: &'a str,
        a: &'a Admission,
    ) -> LocalFuture<'a, Result<Admitted, StoreError>> {
        Box::pin(async move {
            let now = self.now_ms.get();
            let mut limiters = self.limiters.borrow_mut();
            let limiter = limiters.entry(tenant_id.to_string()).or_default();
            let key = a
                .idempotency
                .as_ref()
                .map(|r| (tenant_id.to_string(), r.key.clone()));
            let current = key
                .as_ref()
                .and_then(|k| self.idem.borrow().get(k).cloned());
            let sig = a
                .signature
                .as_ref()
                .map(|s| (tenant_id.to_string(), s.key.clone()));
            let seen = sig
                .as_ref()
                .is_some_and(|k| self.signatures.borrow().contains(k));
            let (admitted, entry) = admit(limiter, current.as_ref(), seen, a, now);
            if let (Some(k), Some(e)) = (key, entry) {
                self.idem.borrow_mut().insert(k, e);
            }
            if let (Some(k), true, false) = (sig, admitted.rate.allowed, admitted.replayed) {
                self.signatures.borrow_mut().insert(k);
            }
            Ok(admitted)
        })
    }
    fn complete<'a>(
        &'a self,
        tenant_id: &'a str,
        key: &'a str,
        response: &'a StoredResponse,
    ) -> LocalFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let k = (tenant_id.to_string(), key.to_string());
            let mut idem = self.idem.borrow_mut();
            if let Some(done) = complete_entry(idem.get(&k), response, self.now_ms.get()) {
                idem.insert(k, done);
            }
            Ok(())
        })
    }
    fn release<'a>(
        &'a self,
        tenant_id: &'a str,
        key: &'a str,
    ) -> LocalFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.idem
                .borrow_mut()
                .remove(&(tenant_id.to_string(), key.to_string()));
            Ok(())
        })
    }
    fn auth_attempt<'a>(
        &'a self,
        scope: &'a str,
        limit: RateLimit,
        failed: bool,
    ) -> LocalFuture<'a, Result<RateVerdict, StoreError>> {
        Box::pin(async move {
            // Like the Worker: one object per address, named by its scope.
            let mut limiters = self.limiters.borrow_mut();
            let limiter = limiters.entry(scope.to_string()).or_default();
            Ok(auth_attempt(
                limiter,
                scope,
                limit,
                failed,
                self.now_ms.get(),
            ))
        })
    }
    fn issue_token<'a>(
        &'a self,
        tenant_id: &'a str,
        token: &'a crate::traffic::tokens::IssueToken,
    ) -> LocalFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let now = self.now_ms.get();
            #[cfg(test)]
            let answer = self.with_tokens(tenant_id, |t| t.issue(token, now));
            #[cfg(not(test))]
            let answer = no_tokens((tenant_id, token, now));
            answer
        })
    }
    fn check_token<'a>(
        &'a self,
        tenant_id: &'a str,
        token_hash: &'a str,
    ) -> LocalFuture<'a, Result<Option<String>, StoreError>> {
        Box::pin(async move {
            let now = self.now_ms.get();
            #[cfg(test)]
            let answer = self.with_tokens(tenant_id, |t| t.check(token_hash, now));
            #[cfg(not(test))]
            let answer = no_tokens((tenant_id, token_hash, now));
            answer
        })
    }
    fn set_user_credential<'a>(
        &'a self,
        tenant_id: &'a str,
        username: &'a str,
        credential: Option<&'a str>,
    ) -> LocalFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            #[cfg(test)]
            let answer = self.with_tokens(tenant_id, |t| {
                t.set_credential(username, credential).map(|_| ())
            });
            #[cfg(not(test))]
            let answer = no_tokens((tenant_id, username, credential));
            answer
        })
    }
}

/// The CPU bench builds this fake without SQLite: it has no token tables.
#[cfg(not(test))]
fn no_tokens<A, T>(_args: A) -> Result<T, StoreError> {
    Err(StoreError::Unavailable(
        "no CodeB token tables in this build".into(),
    ))
}
