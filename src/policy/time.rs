//! The time criteria gatehouse adds to PPL: `date`, `day_of_week`, `time_of_day`, with IANA
//! time zones compiled in (chrono-tz), and the next instant at which each may change.

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use serde_yaml::{Mapping, Value};

use super::parse::{describe, Problems};

const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// `date: {after, before, timezone}`: holds when `after <= now < before`.
#[derive(Debug, Clone)]
pub(crate) struct DateRange {
    after: Option<DateTime<Utc>>,
    before: Option<DateTime<Utc>>,
}

/// `day_of_week`: holds on the listed local week days.
#[derive(Debug, Clone)]
pub(crate) struct DayOfWeek {
    /// Bit `n` = `n` days from Monday.
    days: u8,
    tz: Tz,
}

/// `time_of_day: {after, before, timezone}`: holds when the local wall clock is in
/// `[after, before)`, wrapping over midnight when `after > before`.
#[derive(Debug, Clone)]
pub(crate) struct TimeOfDay {
    /// Seconds since local midnight.
    after: Option<u32>,
    before: Option<u32>,
    tz: Tz,
}

const DAY_NAMES: [(&str, &str); 7] = [
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

// === impl DateRange ===

impl DateRange {
    /// Parses `{after?, before?, timezone?}`; values are RFC 3339 timestamps or `YYYY-MM-DD`
    /// dates (local midnight in `timezone`, default UTC).
    pub(crate) fn parse(v: &Value, path: &str, p: &mut Problems) -> Option<Self> {
        let map = expect_map(v, path, "{after, before, timezone}", p)?;
        let mut ok = check_keys(map, path, &["after", "before", "timezone"], p);
        let tz = match map.get("timezone") {
            Some(t) => parse_tz(t, &format!("{path}.timezone"), p),
            None => Some(Tz::UTC),
        };
        let tz = tz?;
        let mut bound = |key: &str| -> Option<DateTime<Utc>> {
            let val = map.get(key)?;
            let sub = format!("{path}.{key}");
            let r = parse_instant(val, tz, &sub, p);
            ok &= r.is_some();
            r
        };
        let (after, before) = (bound("after"), bound("before"));
        if !ok {
            return None;
        }
        match (after, before) {
            (None, None) => {
                p.push(path, "`date` needs `after`, `before` or both");
                None
            }
            (Some(a), Some(b)) if a >= b => {
                p.push(path, "`after` is not before `before`: this never holds");
                None
            }
            _ => Some(DateRange { after, before }),
        }
    }

    pub(crate) fn holds(&self, now: DateTime<Utc>) -> bool {
        self.after.is_none_or(|a| now >= a) && self.before.is_none_or(|b| now < b)
    }

    pub(crate) fn next_boundary(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        [self.after, self.before]
            .into_iter()
            .flatten()
            .filter(|t| *t > now)
            .min()
    }
}

fn parse_instant(v: &Value, tz: Tz, path: &str, p: &mut Problems) -> Option<DateTime<Utc>> {
    let Value::String(s) = v else {
        p.push(
            path,
            format!(
                "expected a date or RFC 3339 timestamp string, got {}",
                describe(v)
            ),
        );
        return None;
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(d) => resolve_local(tz, d.and_time(NaiveTime::MIN)),
        Err(_) => {
            p.push(
                path,
                format!("`{s}` is neither a date (2026-12-31) nor an RFC 3339 timestamp"),
            );
            None
        }
    }
}

/// The first instant whose local time in `tz` is `naive` or, inside a DST gap, the first one
/// after it.
fn resolve_local(tz: Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    // Gaps are at most a day (Samoa 2011); step through them a minute at a time.
    (0..=(26 * 60)).find_map(|m| {
        tz.from_local_datetime(&(naive + Duration::minutes(m)))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    })
}

// === impl DayOfWeek ===

impl DayOfWeek {
    /// Parses `mon-fri`, `sat,sun`, a list of such strings, or `{days, timezone}` (default
    /// time zone UTC).
    pub(crate) fn parse(v: &Value, path: &str, p: &mut Problems) -> Option<Self> {
        let (days_v, days_path, tz) = match v {
            Value::Mapping(map) => {
                let ok = check_keys(map, path, &["days", "timezone"], p);
                let tz = match map.get("timezone") {
                    Some(t) => parse_tz(t, &format!("{path}.timezone"), p),
                    None => Some(Tz::UTC),
                };
                let Some(days) = map.get("days") else {
                    p.push(path, "`day_of_week` object needs `days`");
                    return None;
                };
                if !ok {
                    return None;
                }
                (days, format!("{path}.days"), tz?)
            }
            other => (other, path.to_owned(), Tz::UTC),
        };
        let days = parse_days(days_v, &days_path, p)?;
        Some(DayOfWeek { days, tz })
    }

    pub(crate) fn holds(&self, now: DateTime<Utc>) -> bool {
        let day = now.with_timezone(&self.tz).weekday().num_days_from_monday();
        self.days & (1 << day) != 0
    }

    pub(crate) fn next_boundary(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        next_wall_clock(self.tz, now, 0)
    }
}

fn parse_days(v: &Value, path: &str, p: &mut Problems) -> Option<u8> {
    let specs: Vec<(&str, String)> = match v {
        Value::String(s) => vec![(s.as_str(), path.to_owned())],
        Value::Sequence(items) if !items.is_empty() => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let sub = format!("{path}[{i}]");
                match item {
                    Value::String(s) => out.push((s.as_str(), sub)),
                    other => p.push(
                        &sub,
                        format!("expected a day string, got {}", describe(other)),
                    ),
                }
            }
            if out.len() != items.len() {
                return None;
            }
            out
        }
        other => {
            p.push(
                path,
                format!(
                    "expected days like `mon-fri` or `sat,sun`, got {}",
                    describe(other)
                ),
            );
            return None;
        }
    };
    let mut mask = 0u8;
    let mut ok = true;
    for (spec, sub) in specs {
        for part in spec.split(',').map(str::trim) {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            match (day_index(a.trim()), day_index(b.trim())) {
                (Some(a), Some(b)) => {
                    // A range may wrap over the week end: `fri-mon`.
                    let mut d = a;
                    loop {
                        mask |= 1 << d;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                _ => {
                    p.push(
                        &sub,
                        format!("`{part}` is not a day or day range (mon, tue, …, sun)"),
                    );
                    ok = false;
                }
            }
        }
    }
    ok.then_some(mask)
}

fn day_index(s: &str) -> Option<u8> {
    let s = s.to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|(short, long)| s == *short || s == *long)
        .and_then(|i| u8::try_from(i).ok())
}

// === impl TimeOfDay ===

impl TimeOfDay {
    /// Parses `{after?, before?, timezone}` with `HH:MM` or `HH:MM:SS` times; `timezone` is
    /// required.
    pub(crate) fn parse(v: &Value, path: &str, p: &mut Problems) -> Option<Self> {
        let map = expect_map(v, path, "{after, before, timezone}", p)?;
        let mut ok = check_keys(map, path, &["after", "before", "timezone"], p);
        let tz = match map.get("timezone") {
            Some(t) => parse_tz(t, &format!("{path}.timezone"), p),
            None => {
                p.push(
                    path,
                    "`time_of_day` needs a `timezone` (an IANA name like Europe/Berlin)",
                );
                None
            }
        };
        let mut clock = |key: &str| -> Option<u32> {
            let val = map.get(key)?;
            let sub = format!("{path}.{key}");
            let t = match val {
                Value::String(s) => NaiveTime::parse_from_str(s, "%H:%M:%S")
                    .or_else(|_| NaiveTime::parse_from_str(s, "%H:%M"))
                    .ok(),
                _ => None,
            };
            if t.is_none() {
                p.push(
                    &sub,
                    format!(
                        "expected a time `HH:MM` or `HH:MM:SS`, got {}",
                        describe(val)
                    ),
                );
                ok = false;
            }
            t.map(|t| t.num_seconds_from_midnight())
        };
        let (after, before) = (clock("after"), clock("before"));
        let tz = tz?;
        if !ok {
            return None;
        }
        match (after, before) {
            (None, None) => {
                p.push(path, "`time_of_day` needs `after`, `before` or both");
                None
            }
            (Some(a), Some(b)) if a == b => {
                p.push(path, "`after` equals `before`: this never holds");
                None
            }
            _ => Some(TimeOfDay { after, before, tz }),
        }
    }

    pub(crate) fn holds(&self, now: DateTime<Utc>) -> bool {
        let t = now.with_timezone(&self.tz).num_seconds_from_midnight();
        match (self.after, self.before) {
            (Some(a), Some(b)) if a < b => a <= t && t < b,
            (Some(a), Some(b)) => t >= a || t < b,
            (Some(a), None) => t >= a,
            (None, Some(b)) => t < b,
            (None, None) => false,
        }
    }

    pub(crate) fn next_boundary(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        // Midnight too: `after` alone turns false again at midnight.
        [Some(0), self.after, self.before]
            .into_iter()
            .flatten()
            .map(|t| next_wall_clock(self.tz, now, t))
            .min()
            .unwrap_or(now)
    }
}

// === helpers ===

/// The next instant after `now` at which the wall clock of `tz` shows `secs` past midnight,
/// or the first UTC-offset change before then (after which the caller computes afresh).
fn next_wall_clock(tz: Tz, now: DateTime<Utc>, secs: u32) -> DateTime<Utc> {
    let local = now.with_timezone(&tz);
    let off0 = local.offset().fix();
    let ns_now = i64::from(local.num_seconds_from_midnight()) * 1_000_000_000
        + i64::from(local.nanosecond().min(999_999_999));
    let mut delta = (i64::from(secs) * 1_000_000_000 - ns_now).rem_euclid(DAY_NS);
    if delta == 0 {
        delta = DAY_NS;
    }
    let candidate = now + Duration::nanoseconds(delta);
    if offset_at(tz, candidate) == off0 {
        return candidate;
    }
    // Offsets change on whole seconds: binary-search the first second with a new offset.
    let at = |secs: i64| DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or(candidate);
    let (mut lo, mut hi) = (now.timestamp(), candidate.timestamp());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if offset_at(tz, at(mid)) == off0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    at(hi)
}

fn offset_at(tz: Tz, t: DateTime<Utc>) -> FixedOffset {
    tz.offset_from_utc_datetime(&t.naive_utc()).fix()
}

fn parse_tz(v: &Value, path: &str, p: &mut Problems) -> Option<Tz> {
    match v {
        Value::String(s) => match s.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                p.push(
                    path,
                    format!("unknown time zone `{s}` (expected an IANA name like Europe/Berlin)"),
                );
                None
            }
        },
        other => {
            p.push(
                path,
                format!("expected a time zone name, got {}", describe(other)),
            );
            None
        }
    }
}

fn expect_map<'v>(v: &'v Value, path: &str, shape: &str, p: &mut Problems) -> Option<&'v Mapping> {
    match v {
        Value::Mapping(m) => Some(m),
        other => {
            p.push(
                path,
                format!("expected an object {shape}, got {}", describe(other)),
            );
            None
        }
    }
}

fn check_keys(map: &Mapping, path: &str, allowed: &[&str], p: &mut Problems) -> bool {
    let mut ok = true;
    for k in map.keys() {
        match k.as_str() {
            Some(k) if allowed.contains(&k) => {}
            _ => {
                let shown = k
                    .as_str()
                    .map_or_else(|| describe(k).to_owned(), str::to_owned);
                p.push(
                    path,
                    format!("unknown key `{shown}` (expected {})", allowed.join(", ")),
                );
                ok = false;
            }
        }
    }
    ok
}
