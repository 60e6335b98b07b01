//! Failed credentials per client address: a rate limit on wrong guesses.

use crate::traffic::rate::*;

/// Requests with wrong credentials (an unknown or revoked API key, a wrong
/// admin token) one client address may make per fixed window; the next one
/// is answered 429 `too_many_failed_attempts` until the window ends. The
/// default; the Worker vars `AUTH_FAILURE_LIMIT` and
/// `AUTH_FAILURE_WINDOW_SECONDS` change it.
pub const AUTH_FAILURES: RateLimit = RateLimit {
    limit: 20,
    window_seconds: 300,
};

/// Prefix of the failure scopes, and of the objects that keep them.
pub const AUTH_FAILURE_PREFIX: &str = "authfail:";

/// The scope (and `RateLimiter` object name) of a client address's failed
/// credentials: an IPv4 address, or the /64 of an IPv6 one (a single host
/// commonly holds a whole /64, so per address it could rotate through 2^64).
/// Anything that is not an address is kept as given (bounded by the caller).
pub fn auth_failure_scope(client_ip: &str) -> String {
    use std::net::IpAddr;
    let client = match client_ip.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                format!("{}/64", std::net::Ipv6Addr::from(prefix))
            }
        },
        Err(_) => client_ip.trim().to_string(),
    };
    format!("{AUTH_FAILURE_PREFIX}{client}")
}

/// One credential check from a client address, decided in that address's
/// own object in one step (exact under parallel requests). `failed`: the
/// credentials were wrong, count it. Refused (nothing counted) once the
/// address has spent its failures in this window, whether this one failed
/// or not; a check that did not fail only looks.
pub fn auth_attempt(
    limiter: &mut Limiter,
    scope: &str,
    limit: RateLimit,
    failed: bool,
    now_ms: u64,
) -> RateVerdict {
    let check = Check {
        scope: scope.to_string(),
        limit,
        new_work_only: false,
    };
    if failed {
        limiter.admit(std::slice::from_ref(&check), now_ms)
    } else {
        limiter.peek(&check, now_ms)
    }
}

/// Failed CodeB logins one user may suffer per fixed window, whichever
/// addresses they come from (a password guessed from many addresses); the
/// next login of that user is answered `slow_down` until the window ends,
/// before any password is hashed.
pub const LOGIN_FAILURES: RateLimit = RateLimit {
    limit: 10,
    window_seconds: 900,
};

/// Prefix of the per-user failure scopes, and of the objects that keep them.
pub const LOGIN_FAILURE_PREFIX: &str = "loginfail:";

/// The scope (and `RateLimiter` object name) of a CodeB user's failed
/// logins: `loginfail:{tenant id}:{username}` (no tenant's own object, whose
/// name is its bare id, can be named so).
pub fn login_failure_scope(tenant_id: &str, username: &str) -> String {
    format!("{LOGIN_FAILURE_PREFIX}{tenant_id}:{username}")
}

/// Whether `scope` names an object that counts failures (an address's or a
/// user's): the only scopes [`auth_attempt`] is asked about.
pub fn is_failure_scope(scope: &str) -> bool {
    scope.starts_with(AUTH_FAILURE_PREFIX) || scope.starts_with(LOGIN_FAILURE_PREFIX)
}
