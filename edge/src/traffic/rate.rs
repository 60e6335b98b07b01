//! Rate limits: fixed windows per scope, checked all at once ([`Limiter`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const LIMIT_MAX: u32 = 1_000_000;
pub const WINDOW_SECONDS_MAX: u32 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub limit: u32,
    pub window_seconds: u32,
}

/// A tenant's limits. Defaults are generous for the API (per key and per
/// IP: 1,000 requests a minute) and protective for callees (per number: 20
/// call requests an hour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimits {
    pub per_key: RateLimit,
    pub per_ip: RateLimit,
    pub per_number: RateLimit,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_key: RateLimit {
                limit: 1_000,
                window_seconds: 60,
            },
            per_ip: RateLimit {
                limit: 1_000,
                window_seconds: 60,
            },
            per_number: RateLimit {
                limit: 20,
                window_seconds: 3_600,
            },
        }
    }
}

/// One scope to count a request against, e.g. `key:key_ab12` with its limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub scope: String,
    pub limit: RateLimit,
    /// Counts only requests that do new work: not idempotent replays (the
    /// destination-number limit counts calls placed, not answers repeated).
    #[serde(default)]
    pub new_work_only: bool,
}

/// One scope's counter in its current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start_ms: u64,
    pub end_ms: u64,
    pub count: u32,
}

/// The rate-limit outcome, reported for the tightest applicable limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateVerdict {
    pub allowed: bool,
    /// The scope reported (the one that refused, or the tightest one).
    pub scope: String,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until that scope's window resets (rounded up, at least 1).
    #[serde(rename = "reset_secs")]
    pub reset_seconds: u64,
}

impl RateVerdict {
    /// `X-RateLimit-*` headers (and `Retry-After` when refused).
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut h = vec![
            ("X-RateLimit-Limit".to_string(), self.limit.to_string()),
            (
                "X-RateLimit-Remaining".to_string(),
                self.remaining.to_string(),
            ),
            (
                "X-RateLimit-Reset".to_string(),
                self.reset_seconds.to_string(),
            ),
        ];
        if !self.allowed {
            h.push(("Retry-After".to_string(), self.reset_seconds.to_string()));
        }
        h
    }
}

/// Fixed-window counters of one tenant, by scope, with an expiry index: a
/// tenant that called 10,000 numbers this hour has 10,000 live windows, and
/// a request must not walk them all to forget the expired ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limiter {
    windows: BTreeMap<String, Window>,
    /// (end, scope) of every window, oldest end first.
    by_end: std::collections::BTreeSet<(u64, String)>,
}

impl Limiter {
    pub fn knows(&self, scope: &str) -> bool {
        self.windows.contains_key(scope)
    }

    /// Puts back a window read from storage (the object loads scopes lazily).
    pub fn restore(&mut self, scope: &str, w: Window) {
        if !self.windows.contains_key(scope) {
            self.set(scope, w);
        }
    }

    fn set(&mut self, scope: &str, w: Window) {
        if let Some(old) = self.windows.insert(scope.to_string(), w) {
            if old.end_ms != w.end_ms {
                self.by_end.remove(&(old.end_ms, scope.to_string()));
            }
        }
        self.by_end.insert((w.end_ms, scope.to_string()));
    }

    /// Forgets windows that ended by `now_ms`: only those are visited.
    fn expire(&mut self, now_ms: u64) {
        while let Some((end, scope)) = self.by_end.first().cloned() {
            if end > now_ms {
                break;
            }
            self.by_end.pop_first();
            if self.windows.get(&scope).is_some_and(|w| w.end_ms == end) {
                self.windows.remove(&scope);
            }
        }
    }

    /// Live windows (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    pub fn window(&self, scope: &str) -> Option<Window> {
        self.windows.get(scope).copied()
    }

    /// `c`'s current fixed window at `now_ms`: (start, requests counted, end).
    fn usage(&self, c: &Check, now_ms: u64) -> (u64, u32, u64) {
        let len = u64::from(c.limit.window_seconds.max(1)) * 1000;
        let start = now_ms / len * len;
        let used = self
            .windows
            .get(&c.scope)
            .filter(|w| w.start_ms == start)
            .map_or(0, |w| w.count);
        (start, used, start + len)
    }

    /// Where `c` stands, counting nothing: refused when its window is spent.
    pub fn peek(&self, c: &Check, now_ms: u64) -> RateVerdict {
        let (_, used, end) = self.usage(c, now_ms);
        RateVerdict {
            allowed: used < c.limit.limit,
            scope: c.scope.clone(),
            limit: c.limit.limit,
            remaining: c.limit.limit.saturating_sub(used),
            reset_seconds: end.saturating_sub(now_ms).div_ceil(1000).max(1),
        }
    }

    /// Counts the request against every check, or against none if any is
    /// exhausted. `checks` must not be empty.
    pub fn admit(&mut self, checks: &[Check], now_ms: u64) -> RateVerdict {
        self.expire(now_ms);
        let state: Vec<(u64, u32, u64)> = checks.iter().map(|c| self.usage(c, now_ms)).collect();
        let reset = |end: u64| end.saturating_sub(now_ms).div_ceil(1000).max(1);
        // Refused by the exhausted scope that frees up last (Retry-After must suffice).
        let refused = checks
            .iter()
            .zip(&state)
            .filter(|(c, (_, used, _))| *used >= c.limit.limit)
            .max_by_key(|(_, (_, _, end))| *end);
        if let Some((c, (_, _, end))) = refused {
            return RateVerdict {
                allowed: false,
                scope: c.scope.clone(),
                limit: c.limit.limit,
                remaining: 0,
                reset_seconds: reset(*end),
            };
        }
        for (c, (start, used, end)) in checks.iter().zip(&state) {
            self.set(
                &c.scope,
                Window {
                    start_ms: *start,
                    end_ms: *end,
                    count: used + 1,
                },
            );
        }
        // Tightest: fewest remaining, then the one resetting last.
        let (c, (_, used, end)) = checks
            .iter()
            .zip(&state)
            .min_by_key(|(c, (_, used, end))| (c.limit.limit - used - 1, std::cmp::Reverse(*end)))
            .expect("at least one check");
        RateVerdict {
            allowed: true,
            scope: c.scope.clone(),
            limit: c.limit.limit,
            remaining: c.limit.limit - used - 1,
            reset_seconds: reset(*end),
        }
    }
}
