//! Go-style durations (`30s`, `5m`, `1h30m`, `500ms`, `0`), written as Pomerium writes them.

use std::{fmt, time::Duration};

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A duration field of a file struct: a Go-style duration string, or the integer `0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dur(pub(super) Duration);

/// Parses a Go-style duration: one or more `<number><unit>` parts (`1h30m`, `1.5s`) with units
/// `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`; or `0` alone. Negative durations are refused.
/// The error says what is wrong with `s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let text = text.strip_prefix('+').unwrap_or(text);
    if text.is_empty() {
        return Err("empty duration (write e.g. 30s, 5m or 1h30m)".to_owned());
    }
    if text.starts_with('-') {
        return Err(format!("negative duration {s:?}"));
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let invalid = || format!("invalid duration {s:?} (write e.g. 30s, 5m, 500ms or 1h30m)");
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() {
            return Err(invalid());
        }
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos_per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "" => return Err(format!("missing unit in duration {s:?} (write e.g. 30s)")),
            other => {
                return Err(format!(
                    "unknown unit {other:?} in duration {s:?} (use ns, us, ms, s, m or h)"
                ))
            }
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if number == "." || fraction.contains('.') {
            return Err(invalid());
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| invalid())?
        };
        // Digits beyond nanosecond precision of an hour are dropped, as Go does.
        let fraction = &fraction[..fraction.len().min(18)];
        let fraction_nanos = if fraction.is_empty() {
            0
        } else {
            let digits: u128 = fraction.parse().map_err(|_| invalid())?;
            digits * nanos_per_unit / 10u128.pow(fraction.len() as u32)
        };
        total = whole
            .checked_mul(nanos_per_unit)
            .and_then(|n| n.checked_add(fraction_nanos))
            .and_then(|n| n.checked_add(total))
            .ok_or_else(|| format!("duration {s:?} is too long"))?;
    }
    let nanos = u64::try_from(total).map_err(|_| format!("duration {s:?} is too long"))?;
    Ok(Duration::from_nanos(nanos))
}

struct DurVisitor;

impl<'de> Visitor<'de> for DurVisitor {
    type Value = Dur;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as 30s, 5m or 1h30m")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
        parse_duration(v).map(Dur).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
        if v == 0 {
            Ok(Dur(Duration::ZERO))
        } else {
            Err(E::custom(format!(
                "missing unit in duration {v} (write e.g. {v}s)"
            )))
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!("negative duration {v}"))),
        }
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Dur, D::Error> {
        deserializer.deserialize_any(DurVisitor)
    }
}
