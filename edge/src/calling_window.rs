//! Agents' calling windows, pure: when may a call of this agent start?
//!
//! A window is a set of weekdays and a wall-clock span in an IANA time zone
//! (`{days: ["mon", ...], start: "09:00", end: "18:00", time_zone: "Europe/Berlin"}`).
//! Decisions, each pinned by a test below:
//! - `end` before `start` crosses midnight: the window opens on a listed day
//!   and closes the next morning (`fri 22:00-06:00` covers Saturday 03:00).
//!   `end` may be `24:00`; `start == end` is refused (empty or ambiguous).
//! - Times are wall-clock times of that day, resolved like most calendars
//!   (RFC 5545, jiff's "compatible"): a time in a DST gap moves forward by the
//!   gap (02:30 on a spring-forward night is 03:30), a time that occurs twice
//!   means its first occurrence. A window can so be an hour shorter or longer
//!   on those nights; one that is empty that day (02:00-03:00 across the gap)
//!   is skipped.
//!
//! The time zone comes from jiff's bundled tzdb: no OS database on wasm.

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
pub const TIME_ZONE_MAX: usize = 64;
/// `HH:MM`, 00:00-23:59 (and `24:00` for `end`).
pub const TIME_PATTERN: &str = r"^([01][0-9]|2[0-3]):[0-5][0-9]$";
pub const END_PATTERN: &str = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$";

/// As stored on the agent and shown by the API (normalised: days in week
/// order, the zone's canonical name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallingWindow {
    pub days: Vec<String>,
    pub start: String,
    pub end: String,
    pub time_zone: String,
}

/// `HH:MM` as minutes since midnight; `24:00` only when `allow_24`.
fn minutes(s: &str, allow_24: bool) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) if allow_24 => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

/// Every time zone name the bundled tzdb knows, sorted: what `time_zone` accepts.
pub fn time_zone_names() -> &'static [String] {
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: Vec<String> = jiff::tz::db()
            .available()
            .map(|n| n.as_str().to_string())
            .filter(|n| n.len() <= TIME_ZONE_MAX)
            .collect();
        names.sort();
        names.dedup();
        names
    })
}

/// Reads a window from an admin body; errors name the field (`calling_window.start`).
pub fn parse(v: &Value) -> Result<CallingWindow, (String, String)> {
    let f = |k: &str| format!("calling_window.{k}");
    let obj = v.as_object().ok_or_else(|| {
        (
            "calling_window".to_string(),
            "calling_window must be an object {days, start, end, time_zone}".to_string(),
        )
    })?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["days", "start", "end", "time_zone"].contains(&k.as_str()))
    {
        return Err((
            f(k),
            "unknown field; known: days, start, end, time_zone".into(),
        ));
    }
    let days = obj
        .get("days")
        .and_then(Value::as_array)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            (
                f("days"),
                format!("days must be a non-empty array of {}", DAY_NAMES.join(", ")),
            )
        })?;
    let mut picked = [false; 7];
    for d in days {
        let i = d
            .as_str()
            .and_then(|d| DAY_NAMES.iter().position(|n| *n == d))
            .ok_or_else(|| {
                (
                    f("days"),
                    format!("each day must be one of {}", DAY_NAMES.join(", ")),
                )
            })?;
        if std::mem::replace(&mut picked[i], true) {
            return Err((f("days"), "a day is listed twice".into()));
        }
    }
    let time = |k: &str, allow_24: bool| -> Result<String, (String, String)> {
        let s = obj.get(k).and_then(Value::as_str).unwrap_or("");
        minutes(s, allow_24).map(|_| s.to_string()).ok_or_else(|| {
            (
                f(k),
                format!(
                    "{k} must be HH:MM, 00:00 to {}",
                    if allow_24 { "24:00" } else { "23:59" }
                ),
            )
        })
    };
    let (start, end) = (time("start", false)?, time("end", true)?);
    if start == end {
        return Err((f("end"), "end must differ from start (a window runs from start to end, crossing midnight when end < start)".into()));
    }
    // Exactly a name of the bundled database, as the OpenAPI document's enum
    // lists them (jiff itself would also take other spellings of the case).
    let time_zone = obj
        .get("time_zone")
        .and_then(Value::as_str)
        .filter(|z| z.len() <= TIME_ZONE_MAX && time_zone_names().iter().any(|n| n == z))
        .filter(|z| TimeZone::get(z).is_ok())
        .ok_or_else(|| {
            (
                f("time_zone"),
                "time_zone must be an IANA time zone name such as Europe/Berlin (exact spelling)"
                    .into(),
            )
        })?
        .to_string();
    let days = DAY_NAMES
        .iter()
        .zip(picked)
        .filter(|(_, p)| *p)
        .map(|(n, _)| n.to_string())
        .collect();
    Ok(CallingWindow {
        days,
        start,
        end,
        time_zone,
    })
}

fn weekday_name(w: Weekday) -> &'static str {
    DAY_NAMES[w.to_monday_zero_offset() as usize]
}

/// The instant a wall-clock time of `date` denotes in `tz` (see the module doc).
fn resolve(tz: &TimeZone, date: Date, minute_of_day: u32) -> Option<i64> {
    let (date, m) = if minute_of_day >= 1440 {
        (date.tomorrow().ok()?, minute_of_day - 1440)
    } else {
        (date, minute_of_day)
    };
    let dt = date.at((m / 60) as i8, (m % 60) as i8, 0, 0);
    Some(
        tz.to_ambiguous_timestamp(dt)
            .compatible()
            .ok()?
            .as_millisecond(),
    )
}

impl CallingWindow {
    /// The earliest time at or after `at_ms` inside the window: `at_ms` itself
    /// when it is inside, else the next window start. None when the zone is
    /// unknown (windows are checked when set, so only on a tzdb change).
    pub fn earliest_start(&self, at_ms: u64) -> Option<u64> {
        let tz = TimeZone::get(&self.time_zone).ok()?;
        let (start, end) = (minutes(&self.start, false)?, minutes(&self.end, true)?);
        // Crossing midnight: closes the next day.
        let end = if end <= start { end + 1440 } else { end };
        let at = i64::try_from(at_ms).ok()?;
        let today = tz.to_datetime(Timestamp::from_millisecond(at).ok()?).date();
        // From yesterday (a window still open past midnight) to a week and a
        // day ahead (every listed weekday comes round within seven days).
        let mut day = today.yesterday().ok()?;
        let mut next = None::<i64>;
        for _ in 0..10 {
            if self.days.iter().any(|d| d == weekday_name(day.weekday())) {
                let (open, close) = (resolve(&tz, day, start)?, resolve(&tz, day, end)?);
                if open < close {
                    if open <= at && at < close {
                        return Some(at_ms);
                    }
                    if open > at {
                        next = Some(next.map_or(open, |n| n.min(open)));
                    }
                }
            }
            day = day.tomorrow().ok()?;
        }
        next.and_then(|n| u64::try_from(n).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ms(rfc3339: &str) -> u64 {
        rfc3339.parse::<Timestamp>().unwrap().as_millisecond() as u64
    }

    fn w(days: &[&str], start: &str, end: &str, tz: &str) -> CallingWindow {
        parse(&json!({"days": days, "start": start, "end": end, "time_zone": tz})).unwrap()
    }

    fn next(win: &CallingWindow, at: &str) -> String {
        let t = win.earliest_start(ms(at)).unwrap();
        Timestamp::from_millisecond(t as i64).unwrap().to_string()
    }

    const WEEKDAYS: [&str; 5] = ["mon", "tue", "wed", "thu", "fri"];

    #[test]
    fn inside_stays_outside_moves_to_the_next_start() {
        let office = w(&WEEKDAYS, "09:00", "18:00", "Europe/Berlin");
        // Wed 2026-01-14, CET (UTC+1): 10:00 local is inside.
        assert_eq!(
            next(&office, "2026-01-14T09:00:00Z"),
            "2026-01-14T09:00:00Z"
        );
        assert_eq!(
            next(&office, "2026-01-14T08:00:00Z"),
            "2026-01-14T08:00:00Z",
            "09:00 local: the start is inside"
        );
        assert_eq!(
            next(&office, "2026-01-14T07:59:59Z"),
            "2026-01-14T08:00:00Z",
            "before the start: today's"
        );
        assert_eq!(
            next(&office, "2026-01-14T17:00:00Z"),
            "2026-01-15T08:00:00Z",
            "18:00 local: the end is outside"
        );
        // Friday evening and the weekend: Monday 09:00.
        assert_eq!(
            next(&office, "2026-01-16T18:30:00Z"),
            "2026-01-19T08:00:00Z"
        );
        assert_eq!(
            next(&office, "2026-01-18T12:00:00Z"),
            "2026-01-19T08:00:00Z"
        );
        // The local date decides, not UTC's: Tue 00:30 local is Mon 23:30 UTC.
        let late = w(&["tue"], "00:00", "01:00", "Europe/Berlin");
        assert_eq!(next(&late, "2026-01-12T23:30:00Z"), "2026-01-12T23:30:00Z");
        // One day a week comes round within seven days.
        let sunday = w(&["sun"], "10:00", "11:00", "America/New_York");
        assert_eq!(
            next(&sunday, "2026-01-18T16:00:00Z"),
            "2026-01-25T15:00:00Z"
        );
    }

    #[test]
    fn dst_transitions_keep_wall_clock_times() {
        let office = w(&WEEKDAYS, "09:00", "18:00", "Europe/Berlin");
        // Saturday before the spring change (CET) to Monday after it (CEST): 09:00 is 07:00Z.
        assert_eq!(
            next(&office, "2026-03-28T20:00:00Z"),
            "2026-03-30T07:00:00Z"
        );
        // And back in October: Monday after the change is CET again.
        assert_eq!(
            next(&office, "2026-10-24T20:00:00Z"),
            "2026-10-26T08:00:00Z"
        );
        // A start inside the spring gap (02:00 -> 03:00 on 2026-03-29) moves forward by the gap.
        let night = w(&DAY_NAMES, "02:30", "04:00", "Europe/Berlin");
        assert_eq!(
            next(&night, "2026-03-29T00:00:00Z"),
            "2026-03-29T01:30:00Z",
            "03:30 CEST"
        );
        assert_eq!(
            next(&night, "2026-03-28T00:00:00Z"),
            "2026-03-28T01:30:00Z",
            "02:30 CET the day before"
        );
        // A window entirely inside the gap is empty that day: the next day's.
        let gap = w(&DAY_NAMES, "02:00", "03:00", "Europe/Berlin");
        assert_eq!(next(&gap, "2026-03-28T23:30:00Z"), "2026-03-30T00:00:00Z");
        // In the autumn fold 02:30 happens twice: the first one (CEST) opens, and
        // the window 02:30-03:30 lasts two hours (00:30Z to 02:30Z).
        let fold = w(&["sun"], "02:30", "03:30", "Europe/Berlin");
        assert_eq!(next(&fold, "2026-10-25T00:00:00Z"), "2026-10-25T00:30:00Z");
        assert_eq!(
            next(&fold, "2026-10-25T02:29:00Z"),
            "2026-10-25T02:29:00Z",
            "still inside"
        );
        assert_eq!(
            next(&fold, "2026-10-25T02:30:00Z"),
            "2026-11-01T01:30:00Z",
            "closed; next Sunday, CET"
        );
        // New York changes on other dates (2026-03-08).
        let ny = w(&WEEKDAYS, "09:00", "17:00", "America/New_York");
        assert_eq!(
            next(&ny, "2026-03-07T12:00:00Z"),
            "2026-03-09T13:00:00Z",
            "EDT: UTC-4"
        );
        assert_eq!(
            next(&ny, "2026-03-06T12:00:00Z"),
            "2026-03-06T14:00:00Z",
            "EST: UTC-5"
        );
    }

    #[test]
    fn windows_crossing_midnight_belong_to_their_start_day() {
        let night = w(&["fri"], "22:00", "06:00", "Europe/Berlin");
        // Fri 2026-01-16 23:00 local and Sat 03:00 local are inside.
        assert_eq!(next(&night, "2026-01-16T22:00:00Z"), "2026-01-16T22:00:00Z");
        assert_eq!(next(&night, "2026-01-17T02:00:00Z"), "2026-01-17T02:00:00Z");
        // Sat 06:00 local closes it; Sunday 03:00 is not inside (Saturday is not listed).
        assert_eq!(next(&night, "2026-01-17T05:00:00Z"), "2026-01-23T21:00:00Z");
        assert_eq!(next(&night, "2026-01-18T02:00:00Z"), "2026-01-23T21:00:00Z");
        // Crossing midnight into the spring change: closes at 06:00 CEST.
        let sat = w(&["sat"], "22:00", "06:00", "Europe/Berlin");
        assert_eq!(next(&sat, "2026-03-29T03:59:00Z"), "2026-03-29T03:59:00Z");
        assert_eq!(next(&sat, "2026-03-29T04:00:00Z"), "2026-04-04T20:00:00Z");
        // Until midnight.
        let evening = w(&["mon"], "20:00", "24:00", "UTC");
        assert_eq!(
            next(&evening, "2026-01-12T23:59:59Z"),
            "2026-01-12T23:59:59Z"
        );
        assert_eq!(
            next(&evening, "2026-01-13T00:00:00Z"),
            "2026-01-19T20:00:00Z"
        );
    }

    #[test]
    fn settings_are_validated_and_normalised() {
        let ok = parse(&json!({"days": ["sun", "mon"], "start": "08:00", "end": "24:00", "time_zone": "Europe/Berlin"})).unwrap();
        // The exact spelling only, as the OpenAPI enum lists it.
        assert!(parse(&json!({"days": ["mon"], "start": "08:00", "end": "18:00", "time_zone": "europe/berlin"})).is_err());
        assert_eq!(
            (ok.days, ok.time_zone.as_str()),
            (vec!["mon".to_string(), "sun".to_string()], "Europe/Berlin")
        );
        let field = |v: Value| parse(&v).unwrap_err().0;
        let base = json!({"days": ["mon"], "start": "09:00", "end": "18:00", "time_zone": "Europe/Berlin"});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        assert_eq!(field(with("days", json!([]))), "calling_window.days");
        assert_eq!(
            field(with("days", json!(["monday"]))),
            "calling_window.days"
        );
        assert_eq!(
            field(with("days", json!(["mon", "mon"]))),
            "calling_window.days"
        );
        for bad in ["9:00", "24:00", "12:60", "ab:cd", "", "09:00:00"] {
            assert_eq!(
                field(with("start", json!(bad))),
                "calling_window.start",
                "{bad}"
            );
        }
        assert_eq!(field(with("end", json!("24:01"))), "calling_window.end");
        assert_eq!(
            field(with("end", json!("09:00"))),
            "calling_window.end",
            "start == end"
        );
        assert_eq!(
            field(with("time_zone", json!("Mars/Olympus_Mons"))),
            "calling_window.time_zone"
        );
        assert_eq!(
            field(with("time_zone", json!(""))),
            "calling_window.time_zone"
        );
        assert_eq!(field(with("extra", json!(1))), "calling_window.extra");
        assert_eq!(field(json!([1])), "calling_window");
    }
}
