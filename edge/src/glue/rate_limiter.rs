//! wasm32-only: the `RateLimiter` Durable Object (one per tenant, and one
//! per client address that sent wrong credentials) and the
//! Worker-side [`Traffic`] port that talks to it. Decisions are the pure
//! `traffic` code; this file caches and persists its state.
//!
//! Exactness: every decision is a synchronous step on in-memory state after
//! the awaited loads, so concurrent requests to the object serialise on it
//! (a load that raced another request re-checks the cache before use).

use crate::glue::env::DoSql;
use crate::traffic::tokens::SqlTokens;
use crate::traffic::{
    self, complete_entry, idem_expiry_key, idem_storage_key, parse_idem_expiry_key,
    parse_signature_storage_key, window_storage_key, Admission, Admitted, IdemEntry, Limiter,
    RateLimit, RateLimiterAnswer, RateLimiterRequest, RateVerdict, StoredResponse, Window,
    AUTH_FAILURE_PREFIX, IDEMPOTENCY_TTL_MS, LOGIN_FAILURE_PREFIX,
};
use std::cell::RefCell;
use std::collections::BTreeMap;
use worker::{durable_object, js_sys, Date, Env, ListOptions, Request, Response, Result, State};

/// Expired idempotency records removed per alarm run.
const SWEEP_BATCH: usize = 128;

#[durable_object]
pub struct RateLimiter {
    state: State,
    #[allow(dead_code)]
    env: Env,
    /// Windows of the scopes seen since the object started (loaded lazily).
    limiter: RefCell<Limiter>,
    /// Idempotency records being decided or in flight; done ones live in storage only.
    idem: RefCell<BTreeMap<String, IdemEntry>>,
    /// Signatures accepted by this instance (storage key -> forget after),
    /// so two racing copies of one request cannot both pass the load.
    signatures: RefCell<BTreeMap<String, u64>>,
}

/// An alarm set for a signature sweep may run this much after the earliest
/// expiry, so a busy key does not move the alarm on every request.
const SIGNATURE_SWEEP_SLACK_MS: u64 = 60_000;

impl RateLimiter {
    async fn load_scopes(&self, a: &Admission) -> Result<()> {
        let storage = self.state.storage();
        for c in &a.checks {
            if self.limiter.borrow().knows(&c.scope) {
                continue;
            }
            if let Some(w) = storage.get::<Window>(&window_storage_key(&c.scope)).await? {
                self.limiter.borrow_mut().restore(&c.scope, w);
            }
        }
        Ok(())
    }

    /// The record of `key`: the cache first, else storage (cached when found).
    async fn load_idem(&self, key: &str) -> Result<Option<IdemEntry>> {
        if let Some(e) = self.idem.borrow().get(key) {
            return Ok(Some(e.clone()));
        }
        let stored: Option<IdemEntry> = self.state.storage().get(&idem_storage_key(key)).await?;
        // Another request may have decided this key while we awaited.
        let mut cache = self.idem.borrow_mut();
        if let Some(e) = cache.get(key) {
            return Ok(Some(e.clone()));
        }
        if let Some(e) = &stored {
            cache.insert(key.to_string(), e.clone());
        }
        Ok(stored)
    }

    /// Whether this signature was accepted before (cache, else storage).
    async fn load_signature(&self, key: &str) -> Result<()> {
        if self.signatures.borrow().contains_key(key) {
            return Ok(());
        }
        if let Some(until) = self.state.storage().get::<u64>(key).await? {
            self.signatures
                .borrow_mut()
                .entry(key.to_string())
                .or_insert(until);
        }
        Ok(())
    }

    async fn admit(&self, a: Admission) -> Result<Admitted> {
        self.load_scopes(&a).await?;
        if let Some(r) = &a.idempotency {
            self.load_idem(&r.key).await?;
        }
        if let Some(sig) = &a.signature {
            self.load_signature(&sig.key).await?;
        }
        // --- synchronous decision ---
        let now = Date::now().as_millis();
        let current = a
            .idempotency
            .as_ref()
            .and_then(|r| self.idem.borrow().get(&r.key).cloned());
        self.signatures.borrow_mut().retain(|_, until| *until > now);
        let seen = a
            .signature
            .as_ref()
            .is_some_and(|sig| self.signatures.borrow().contains_key(&sig.key));
        let (admitted, entry) = traffic::admit(
            &mut self.limiter.borrow_mut(),
            current.as_ref(),
            seen,
            &a,
            now,
        );
        if let (Some(r), Some(e)) = (&a.idempotency, &entry) {
            self.idem.borrow_mut().insert(r.key.clone(), e.clone());
        }
        let spent = a
            .signature
            .as_ref()
            .filter(|_| admitted.rate.allowed && !admitted.replayed);
        if let Some(sig) = spent {
            self.signatures
                .borrow_mut()
                .insert(sig.key.clone(), sig.until_ms);
        }
        let windows: Vec<(String, Window)> = if admitted.rate.allowed {
            a.checks
                .iter()
                .filter_map(|c| {
                    Some((
                        window_storage_key(&c.scope),
                        self.limiter.borrow().window(&c.scope)?,
                    ))
                })
                .collect()
        } else {
            Vec::new()
        };
        // --- persist (the output gate holds the reply until it is durable) ---
        let storage = self.state.storage();
        for (k, w) in windows {
            storage.put(&k, w).await?;
        }
        if let (Some(r), Some(e)) = (&a.idempotency, entry) {
            storage.put(&idem_storage_key(&r.key), &e).await?;
            storage
                .put(&idem_expiry_key(now + IDEMPOTENCY_TTL_MS, &r.key), true)
                .await?;
            if storage.get_alarm().await?.is_none() {
                storage.set_alarm(IDEMPOTENCY_TTL_MS as i64).await?;
            }
        }
        if let Some(sig) = spent {
            storage.put(&sig.key, sig.until_ms).await?;
            // Swept a few minutes on, not a day: signed keys may be busy.
            let wanted = sig.until_ms + SIGNATURE_SWEEP_SLACK_MS;
            match storage.get_alarm().await? {
                Some(at) if (at as u64) <= wanted => {}
                _ => {
                    storage
                        .set_alarm(wanted.saturating_sub(now).max(1) as i64)
                        .await?
                }
            }
        }
        Ok(admitted)
    }

    /// A client address's credential check (this object is that address's,
    /// named by its scope). Its one window row is deleted by the alarm once
    /// the window has ended, so idle addresses leave nothing behind.
    async fn auth_attempt(
        &self,
        scope: &str,
        limit: RateLimit,
        failed: bool,
    ) -> Result<RateVerdict> {
        let storage = self.state.storage();
        let key = window_storage_key(scope);
        if !self.limiter.borrow().knows(scope) {
            if let Some(w) = storage.get::<Window>(&key).await? {
                self.limiter.borrow_mut().restore(scope, w);
            }
        }
        let now = Date::now().as_millis();
        let verdict =
            traffic::auth_attempt(&mut self.limiter.borrow_mut(), scope, limit, failed, now);
        let counted = self
            .limiter
            .borrow()
            .window(scope)
            .filter(|_| failed && verdict.allowed);
        if let Some(w) = counted {
            storage.put(&key, w).await?;
            match storage.get_alarm().await? {
                Some(at) if (at as u64) <= w.end_ms => {}
                _ => {
                    storage
                        .set_alarm(w.end_ms.saturating_sub(now).max(1) as i64)
                        .await?
                }
            }
        }
        Ok(verdict)
    }

    /// The CodeB token tables (SQLite) of this tenant's object.
    fn tokens(&self) -> std::result::Result<SqlTokens<DoSql>, crate::store::StoreError> {
        SqlTokens::open(DoSql(self.state.storage().sql()))
    }

    /// Deletes failure windows (an address's or a user's) that have ended;
    /// returns when the next one ends.
    async fn sweep_auth_failures(&self, now: u64) -> Result<Option<u64>> {
        let mut next: Option<u64> = None;
        for prefix in [AUTH_FAILURE_PREFIX, LOGIN_FAILURE_PREFIX] {
            if let Some(at) = self.sweep_failure_windows(prefix, now).await? {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        Ok(next)
    }

    async fn sweep_failure_windows(&self, scope_prefix: &str, now: u64) -> Result<Option<u64>> {
        let storage = self.state.storage();
        let prefix = window_storage_key(scope_prefix);
        let listed = storage
            .list_with_options(ListOptions::new().prefix(&prefix).limit(SWEEP_BATCH))
            .await?;
        let keys: Vec<String> = js_sys::Array::from(&listed.keys().into())
            .iter()
            .filter_map(|k| k.as_string())
            .collect();
        let mut next: Option<u64> = None;
        for k in keys {
            match storage.get::<Window>(&k).await? {
                Some(w) if w.end_ms > now => {
                    next = Some(next.map_or(w.end_ms, |n| n.min(w.end_ms)))
                }
                _ => storage.delete(&k).await.map(|_| ())?,
            }
        }
        Ok(next)
    }

    async fn complete(&self, key: &str, response: &StoredResponse) -> Result<()> {
        let current = self.load_idem(key).await?;
        let now = Date::now().as_millis();
        if let Some(done) = complete_entry(current.as_ref(), response, now) {
            self.idem.borrow_mut().insert(key.to_string(), done.clone());
            self.state
                .storage()
                .put(&idem_storage_key(key), &done)
                .await?;
        }
        // Durable now: replays read it from storage.
        self.idem.borrow_mut().remove(key);
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<()> {
        self.idem.borrow_mut().remove(key);
        self.state.storage().delete(&idem_storage_key(key)).await?;
        Ok(())
    }

    /// Deletes accepted signatures that could no longer be replayed (their
    /// keys sort by that time); returns when the next one falls due.
    async fn sweep_signatures(&self, now: u64) -> Result<Option<u64>> {
        let storage = self.state.storage();
        let listed = storage
            .list_with_options(ListOptions::new().prefix("sig:").limit(SWEEP_BATCH))
            .await?;
        let keys: Vec<String> = js_sys::Array::from(&listed.keys().into())
            .iter()
            .filter_map(|k| k.as_string())
            .collect();
        let mut due = Vec::new();
        let mut next = None;
        for k in &keys {
            match parse_signature_storage_key(k) {
                Some(until) if until > now => {
                    next = Some(until);
                    break;
                }
                _ => due.push(k.clone()),
            }
        }
        if !due.is_empty() {
            storage.delete_multiple(due.clone()).await?;
        }
        Ok(match next {
            Some(at) => Some(at),
            None if keys.len() == SWEEP_BATCH => Some(now + 1_000),
            None => None,
        })
    }

    /// Deletes idempotency records past their 24 h, oldest first, through the
    /// expiry index, and spent signatures; re-arms the alarm for what remains.
    async fn sweep(&self) -> Result<()> {
        let storage = self.state.storage();
        let now = Date::now().as_millis();
        let next_signature = self.sweep_signatures(now).await?;
        let next_auth_failure = self.sweep_auth_failures(now).await?;
        let listed = storage
            .list_with_options(ListOptions::new().prefix("idemx:").limit(SWEEP_BATCH))
            .await?;
        let index: Vec<String> = js_sys::Array::from(&listed.keys().into())
            .iter()
            .filter_map(|k| k.as_string())
            .collect();
        let mut next = None;
        for ik in &index {
            let Some((at, key)) = parse_idem_expiry_key(ik) else {
                storage.delete(ik).await?;
                continue;
            };
            if at > now {
                next = Some(at);
                break;
            }
            // The key may have been used again after expiring: keep a live record.
            let entry: Option<IdemEntry> = storage.get(&idem_storage_key(key)).await?;
            if entry.is_some_and(|e| e.expired(now)) && !self.idem.borrow().contains_key(key) {
                storage.delete(&idem_storage_key(key)).await?;
            }
            storage.delete(ik).await?;
        }
        let next_idem = match next {
            Some(at) => Some(at),
            None if index.len() == SWEEP_BATCH => Some(now + 1_000),
            None => None,
        };
        if let Some(at) = next_idem
            .into_iter()
            .chain(next_signature)
            .chain(next_auth_failure)
            .min()
        {
            storage
                .set_alarm(at.saturating_sub(now).max(1) as i64)
                .await?;
        }
        Ok(())
    }
}

impl worker::DurableObject for RateLimiter {
    fn new(state: State, env: Env) -> Self {
        RateLimiter {
            state,
            env,
            limiter: RefCell::new(Limiter::default()),
            idem: RefCell::new(BTreeMap::new()),
            signatures: RefCell::new(BTreeMap::new()),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let request: RateLimiterRequest = match req.json().await {
            Ok(r) => r,
            Err(e) => return Response::error(format!("bad rate limiter request: {e}"), 400),
        };
        let answer = match request {
            RateLimiterRequest::Admit { admission } if admission.checks.is_empty() => {
                return Response::error("an admission needs checks", 400)
            }
            RateLimiterRequest::Admit { admission } => RateLimiterAnswer::Admitted {
                admitted: self.admit(admission).await?,
            },
            RateLimiterRequest::Complete { key, response } => {
                self.complete(&key, &response).await?;
                RateLimiterAnswer::Done
            }
            RateLimiterRequest::Release { key } => {
                self.release(&key).await?;
                RateLimiterAnswer::Done
            }
            // Only an address's (or a CodeB user's) own object counts its failed credentials.
            RateLimiterRequest::AuthAttempt { scope, .. } if !traffic::is_failure_scope(&scope) => {
                return Response::error("bad auth attempt scope", 400)
            }
            RateLimiterRequest::AuthAttempt {
                scope,
                limit,
                failed,
            } => RateLimiterAnswer::AuthAttempt {
                verdict: self.auth_attempt(&scope, limit, failed).await?,
            },
            // CodeB access tokens: synchronous SQL, one implicit transaction each.
            RateLimiterRequest::IssueToken { token } => {
                let now = Date::now().as_millis();
                let issued = self
                    .tokens()
                    .and_then(|t| t.issue(&token, now))
                    .map_err(|e| worker::Error::RustError(format!("{e:?}")))?;
                RateLimiterAnswer::TokenIssued { issued }
            }
            RateLimiterRequest::CheckToken { token_hash } => {
                let now = Date::now().as_millis();
                let username = self
                    .tokens()
                    .and_then(|t| t.check(&token_hash, now))
                    .map_err(|e| worker::Error::RustError(format!("{e:?}")))?;
                RateLimiterAnswer::TokenChecked { username }
            }
            RateLimiterRequest::SetUserCredential {
                username,
                credential,
            } => {
                self.tokens()
                    .and_then(|t| t.set_credential(&username, credential.as_deref()))
                    .map_err(|e| worker::Error::RustError(format!("{e:?}")))?;
                RateLimiterAnswer::Done
            }
        };
        Response::from_json(&answer)
    }

    async fn alarm(&self) -> Result<Response> {
        self.sweep().await?;
        Response::ok("")
    }
}
