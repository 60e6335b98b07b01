//! Session timers (RFC 4028): the header values and the arithmetic, pure.
//! [`super::call::Call`] keeps the state and sends the refreshes.
//!
//! - Our INVITE: `Supported: timer`, `Session-Expires: <expires_s>`,
//!   `Min-SE: <min_se_s>`; a 422 raises both to its `Min-SE` (at most
//!   [`MAX_422_RETRIES`] times, never above [`MAX_SESSION_EXPIRES_S`]).
//! - The 2xx's `Session-Expires: <s>;refresher=uac|uas` decides: `uac` (or
//!   none given) means we refresh, at half the interval; `uas` means the
//!   callee does, and without a refresh by the expiry minus
//!   `min(32 s, interval / 3)` (RFC 4028 10) we send BYE.

use super::msg::{self, Message};

/// RFC 4028 4: no session interval below 90 s is ever accepted.
pub const MIN_SE_FLOOR_S: u32 = 90;
/// The longest interval we ask for or accept (a day); longer ones from the
/// peer are read as this, so a refresh is never further away than that.
pub const MAX_SESSION_EXPIRES_S: u32 = 86_400;
/// 422 answers followed with a larger interval before the call fails.
pub const MAX_422_RETRIES: u32 = 2;

/// What we ask for, per trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimerConfig {
    /// `Session-Expires` in our INVITE.
    pub expires_s: u32,
    /// `Min-SE` in our INVITE: the shortest interval we accept from the peer.
    pub min_se_s: u32,
    /// Milliseconds per session-timer second: 1000 in production. Tests
    /// shrink it so that a real 90 s session (the RFC's floor, which is what
    /// goes on the wire) refreshes within seconds. Not a config-file key.
    pub ms_per_s: u64,
}

impl Default for SessionTimerConfig {
    fn default() -> Self {
        SessionTimerConfig {
            expires_s: 1_800,
            min_se_s: MIN_SE_FLOOR_S,
            ms_per_s: 1_000,
        }
    }
}

impl SessionTimerConfig {
    pub fn ms(&self, s: u32) -> u64 {
        u64::from(s).saturating_mul(self.ms_per_s)
    }
}

/// Who refreshes, as the `refresher` parameter says it: relative to the
/// transaction that carried it (`uac` = the side that sent the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

impl Refresher {
    pub fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// `Session-Expires: <delta>[;refresher=uac|uas]` (compact `x`): the
/// interval (bounded to [`MAX_SESSION_EXPIRES_S`]) and the refresher if
/// named. `None` when absent or malformed (a malformed one reads as absent).
pub fn session_expires(m: &Message) -> Option<(u32, Option<Refresher>)> {
    let v = m.header("Session-Expires")?;
    let (delta, params) = match v.find(';') {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, ""),
    };
    let delta: u32 = delta.trim().parse().ok().filter(|d| *d > 0)?;
    let refresher = msg::parse_params(params)
        .ok()?
        .into_iter()
        .find(|(n, _)| n == "refresher")
        .and_then(|(_, v)| match v?.to_ascii_lowercase().as_str() {
            "uac" => Some(Refresher::Uac),
            "uas" => Some(Refresher::Uas),
            _ => None,
        });
    Some((delta.min(MAX_SESSION_EXPIRES_S), refresher))
}

/// `Min-SE: <delta>` (parameters ignored), if present and a number.
pub fn min_se(m: &Message) -> Option<u32> {
    let v = m.header("Min-SE")?;
    v.split(';').next()?.trim().parse().ok()
}

/// Whether an option tag is listed in `Supported` / `Require` / `Allow`-like headers.
pub fn lists(m: &Message, header: &str, tag: &str) -> bool {
    m.header_list(header)
        .iter()
        .any(|t| t.trim().eq_ignore_ascii_case(tag))
}

/// When the side that does not refresh gives up on a session refreshed
/// `interval_s` ago (RFC 4028 10): the interval minus the lesser of 32 s
/// and a third of it, in seconds.
pub fn expiry_after_s(interval_s: u32) -> u32 {
    interval_s.saturating_sub((interval_s / 3).min(32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::parse;

    fn with(headers: &str) -> Message {
        let text = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n{headers}Content-Length: 0\r\n\r\n"
        );
        parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn header_values() {
        let m =
            with("Session-Expires: 90;refresher=uac\r\nMin-SE: 90\r\nSupported: 100rel, timer\r\n");
        assert_eq!(session_expires(&m), Some((90, Some(Refresher::Uac))));
        assert_eq!(min_se(&m), Some(90));
        assert!(lists(&m, "Supported", "timer") && lists(&m, "Supported", "100rel"));
        let m = with("x: 1800 ; REFRESHER=UAS\r\n");
        assert_eq!(session_expires(&m), Some((1800, Some(Refresher::Uas))));
        let m = with("Session-Expires: 4000000000\r\n");
        assert_eq!(session_expires(&m), Some((MAX_SESSION_EXPIRES_S, None)));
        for bad in ["Session-Expires: soon\r\n", "Session-Expires: 0\r\n", ""] {
            assert_eq!(session_expires(&with(bad)), None, "{bad}");
        }
        assert_eq!(min_se(&with("Min-SE: 120;x=1\r\n")), Some(120));
        assert_eq!(min_se(&with("Min-SE: x\r\n")), None);
    }

    #[test]
    fn the_non_refresher_waits_the_interval_minus_a_margin() {
        assert_eq!(expiry_after_s(90), 60);
        assert_eq!(expiry_after_s(1800), 1768);
        assert_eq!(expiry_after_s(0), 0);
    }
}
