//! Pacing, pure: what a running campaign may dial at time T, and when to
//! look again. The campaign's Durable Object asks this on every alarm and
//! after every change; its glue only sets the alarm to [`Plan::wake_at_ms`].
//!
//! Rules, each pinned by a test below:
//! - at most one call starts per `60_000 / calls_per_minute` ms (rounded up,
//!   so the rate is never exceeded); a late alarm loses that slot, it never
//!   bursts to catch up;
//! - never more than `max_concurrent_calls` of the campaign's calls in flight
//!   (placing or placed and not ended); at the cap nothing wakes by time: the
//!   end of a call (its notice) runs the plan again;
//! - outside the calling window nothing is dialled; the plan wakes at the
//!   window's next start.

use crate::calling_window::CallingWindow;

/// What the plan is decided from.
#[derive(Debug, Clone, Copy)]
pub struct PacingInput<'a> {
    pub now_ms: u64,
    pub calls_per_minute: u32,
    pub max_concurrent_calls: u32,
    /// Contacts placing (lease not expired) or placed with the call not ended.
    pub in_flight: u32,
    /// Contacts that may be handed out: pending, or placing with an expired lease.
    pub leasable: u32,
    /// The earliest time the next call may start (the previous one's slot end).
    pub next_slot_ms: u64,
    /// When the earliest unexpired lease runs out (a crashed placement is
    /// handed out again then, under the same idempotency key).
    pub earliest_lease_expiry_ms: Option<u64>,
    pub window: Option<&'a CallingWindow>,
}

/// The decision: how many contacts to hand out now, the slot after them,
/// and when to run the plan again (None: only a change wakes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub lease: u32,
    pub next_slot_ms: u64,
    pub wake_at_ms: Option<u64>,
}

/// Milliseconds between two call starts at `calls_per_minute`, rounded up.
pub fn interval_ms(calls_per_minute: u32) -> u64 {
    let rate = u64::from(calls_per_minute.max(1));
    60_000u64.div_ceil(rate)
}

fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub fn plan(p: &PacingInput<'_>) -> Plan {
    let idle = |wake: Option<u64>| Plan {
        lease: 0,
        next_slot_ms: p.next_slot_ms,
        wake_at_ms: earliest(wake, p.earliest_lease_expiry_ms),
    };
    if p.leasable == 0 {
        return idle(None);
    }
    if let Some(window) = p.window {
        // An unknown zone (a tzdb change) dials nothing and looks again in an hour.
        match window.earliest_start(p.now_ms) {
            Some(start) if start > p.now_ms => return idle(Some(start)),
            Some(_) => {}
            None => return idle(Some(p.now_ms + 3_600_000)),
        }
    }
    if p.next_slot_ms > p.now_ms {
        return idle(Some(p.next_slot_ms));
    }
    if p.in_flight >= p.max_concurrent_calls {
        return idle(None);
    }
    let next_slot_ms = p.now_ms + interval_ms(p.calls_per_minute);
    let wake = (p.leasable > 1 && p.in_flight + 1 < p.max_concurrent_calls).then_some(next_slot_ms);
    Plan {
        lease: 1,
        next_slot_ms,
        wake_at_ms: earliest(wake, p.earliest_lease_expiry_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_764_082_200_000; // Tuesday 2025-11-25 14:50 UTC

    fn input(now_ms: u64) -> PacingInput<'static> {
        PacingInput {
            now_ms,
            calls_per_minute: 6,
            max_concurrent_calls: 3,
            in_flight: 0,
            leasable: 10,
            next_slot_ms: 0,
            earliest_lease_expiry_ms: None,
            window: None,
        }
    }

    #[test]
    fn one_call_per_slot_at_the_pacing_rate() {
        assert_eq!(interval_ms(6), 10_000);
        assert_eq!(interval_ms(7), 8_572, "rounded up: never faster than asked");
        assert_eq!(interval_ms(60_000), 1);
        let first = plan(&input(T));
        assert_eq!(
            first,
            Plan {
                lease: 1,
                next_slot_ms: T + 10_000,
                wake_at_ms: Some(T + 10_000)
            }
        );
        // Asked again before the slot: nothing, wake at the slot.
        let again = plan(&PacingInput {
            next_slot_ms: first.next_slot_ms,
            in_flight: 1,
            ..input(T + 9_999)
        });
        assert_eq!((again.lease, again.wake_at_ms), (0, Some(T + 10_000)));
        // At the slot: the next one.
        let next = plan(&PacingInput {
            next_slot_ms: first.next_slot_ms,
            in_flight: 1,
            ..input(T + 10_000)
        });
        assert_eq!((next.lease, next.next_slot_ms), (1, T + 20_000));
        // A late alarm does not burst: one call, the slot counted from now.
        let late = plan(&PacingInput {
            next_slot_ms: T + 10_000,
            ..input(T + 95_000)
        });
        assert_eq!((late.lease, late.next_slot_ms), (1, T + 105_000));
    }

    #[test]
    fn the_concurrency_cap_holds_calls_until_one_ends() {
        let full = plan(&PacingInput {
            in_flight: 3,
            ..input(T)
        });
        assert_eq!(
            full,
            Plan {
                lease: 0,
                next_slot_ms: 0,
                wake_at_ms: None
            },
            "only a call's end wakes a full campaign"
        );
        // The last free place: leased, and no wake by time (the cap is reached).
        let last = plan(&PacingInput {
            in_flight: 2,
            ..input(T)
        });
        assert_eq!((last.lease, last.wake_at_ms), (1, None));
        // A placement that crashed: its lease expiry wakes the campaign.
        let crashed = plan(&PacingInput {
            in_flight: 3,
            earliest_lease_expiry_ms: Some(T + 60_000),
            ..input(T)
        });
        assert_eq!((crashed.lease, crashed.wake_at_ms), (0, Some(T + 60_000)));
    }

    #[test]
    fn nothing_is_dialled_outside_the_window_and_it_wakes_at_the_next_start() {
        let window = CallingWindow {
            days: vec!["mon".into(), "tue".into()],
            start: "09:00".into(),
            end: "10:00".into(),
            time_zone: "UTC".into(),
        };
        let outside = plan(&PacingInput {
            window: Some(&window),
            ..input(T)
        });
        // Tuesday 14:50 is past Tuesday's window: next Monday 09:00.
        let next_monday_nine = T + (6 * 24 * 60 - 5 * 60 - 50) * 60_000;
        assert_eq!(
            (outside.lease, outside.wake_at_ms),
            (0, Some(next_monday_nine))
        );
        let inside = plan(&PacingInput {
            window: Some(&window),
            ..input(next_monday_nine)
        });
        assert_eq!(inside.lease, 1);
    }

    #[test]
    fn an_empty_campaign_sleeps() {
        let done = plan(&PacingInput {
            leasable: 0,
            in_flight: 1,
            ..input(T)
        });
        assert_eq!((done.lease, done.wake_at_ms), (0, None));
        // One left: no wake by time after it.
        let last = plan(&PacingInput {
            leasable: 1,
            ..input(T)
        });
        assert_eq!((last.lease, last.wake_at_ms), (1, None));
    }
}
