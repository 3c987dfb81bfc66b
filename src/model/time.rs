//! Time as the documents write it: Unix nanoseconds and RFC 3339 UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// The wall clock in Unix nanoseconds (0 before 1970, saturating far in the future).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Unix nanoseconds from `YYYY-MM-DDTHH:MM:SS[.fff…]Z` (UTC only).
pub fn parse_rfc3339_ns(s: &str) -> Option<u64> {
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let mut t = time.split(':');
    let (hh, mm): (i64, i64) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    let sec_text = t.next()?;
    let (whole, frac) = sec_text.split_once('.').unwrap_or((sec_text, ""));
    let ss: i64 = whole.parse().ok()?;
    let frac_ns: u64 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        digits.parse::<u64>().ok()? * 10u64.pow(9 - digits.len() as u32)
    };
    if !(0..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&hh)
        || !(0..=59).contains(&mm)
        || !(0..=60).contains(&ss)
    {
        return None;
    }
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    // Beyond 2554 the nanoseconds do not fit: not a time otelwatch can hold.
    u64::try_from(secs)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(frac_ns)
}

/// Unix nanoseconds as RFC 3339 UTC (`2026-01-05T00:00:10Z`, with milliseconds when not whole).
pub fn rfc3339(ns: u64) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let millis = (ns % 1_000_000_000) / 1_000_000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    if millis == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{millis:03}Z")
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_beyond_what_nanoseconds_hold_are_not_times() {
        assert_eq!(parse_rfc3339_ns("4048-01-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_ns("99999999999-01-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_ns("2024-01-01T-1:00:00Z"), None);
        assert!(parse_rfc3339_ns("2554-01-01T00:00:00Z").is_some());
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_767_571_210_000_000_000), "2026-01-05T00:00:10Z");
        assert_eq!(rfc3339(951_782_400_500_000_000), "2000-02-29T00:00:00.500Z");
    }

    #[test]
    fn rfc3339_parses_back() {
        for ns in [0u64, 1_767_571_210_000_000_000, 951_782_400_500_000_000] {
            assert_eq!(parse_rfc3339_ns(&rfc3339(ns)), Some(ns));
        }
        assert_eq!(parse_rfc3339_ns("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_ns("2026-01-01 00:00:00"), None);
    }
}
