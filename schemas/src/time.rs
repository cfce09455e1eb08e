//! Timestamps as GuardDuty writes them, to epoch milliseconds (UTC).
//!
//! Top-level dates are ISO-8601 (`2022-11-17T09:33:19.224Z`); some nested dates are epoch
//! seconds as floats; other producers write `2025-02-25 20:40:06.721` (no zone: UTC). A
//! hand-written parser: this runs four times per finding on the ingest hot path.

/// Parses an ISO-8601 / RFC 3339 date-time (`T` or space separator, optional fraction,
/// `Z`, `±HH:MM`, `±HHMM` or no zone meaning UTC) or a bare date into epoch milliseconds.
pub fn parse_timestamp_ms(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let year = digits(b, 0, 4)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if b.len() == 10 {
        return Some(days * 86_400_000);
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
        return None;
    }
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let (second, mut i) = if b.get(16) == Some(&b':') {
        (digits(b, 17, 2)?, 19)
    } else {
        (0, 16)
    };
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_minutes = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) => {
            let oh = digits(b, i + 1, 2)?;
            let rest = &b[i + 3..];
            let om = match rest {
                [] => 0,
                [b':', ..] if rest.len() == 3 => digits(b, i + 4, 2)?,
                _ if rest.len() == 2 => digits(b, i + 3, 2)?,
                _ => return None,
            };
            let total = oh * 60 + om;
            if *sign == b'+' { total } else { -total }
        }
        _ => return None,
    };
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1_000 + millis)
}

/// Epoch seconds (possibly fractional) to milliseconds. Values too large to be seconds
/// (beyond year 5000) are taken as milliseconds already.
pub(crate) fn epoch_number_to_ms(value: f64) -> Option<i64> {
    if !value.is_finite() {
        return None;
    }
    let ms = if value.abs() >= 1e11 {
        value
    } else {
        value * 1000.0
    };
    (ms.abs() < 9.0e15).then(|| ms.round() as i64)
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let slice = b.get(at..at + n)?;
    let mut v = 0i64;
    for &c in slice {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's days_from_civil).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guardduty_iso_with_millis() {
        // date -u -d 2022-11-17T09:33:19.224Z +%s%3N
        assert_eq!(
            parse_timestamp_ms("2022-11-17T09:33:19.224Z"),
            Some(1_668_677_599_224)
        );
    }

    #[test]
    fn zone_forms_and_missing_parts() {
        assert_eq!(parse_timestamp_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp_ms("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_timestamp_ms("1970-01-01T01:30:00+0130"), Some(0));
        assert_eq!(parse_timestamp_ms("1969-12-31T23:00:00-01:00"), Some(0));
        assert_eq!(parse_timestamp_ms("1970-01-02"), Some(86_400_000));
        assert_eq!(
            parse_timestamp_ms("2025-02-25 20:40:06.721"),
            Some(1_740_516_006_721)
        );
        assert_eq!(
            parse_timestamp_ms("2025-02-25 20:40:06.000000000"),
            Some(1_740_516_006_000)
        );
        assert_eq!(
            parse_timestamp_ms("2024-02-29T12:00Z"),
            Some(1_709_208_000_000)
        );
        assert_eq!(
            parse_timestamp_ms("2024-01-01T00:00:00.5Z"),
            Some(1_704_067_200_500)
        );
    }

    #[test]
    fn rejects_what_is_not_a_date() {
        for s in [
            "",
            "yesterday",
            "2023-02-29T00:00:00Z",
            "2024-13-01",
            "2024-01-01T25:00:00Z",
            "2024-01-01T00:00:00Zjunk",
            "2024-01-01T00:00:00.",
        ] {
            assert_eq!(parse_timestamp_ms(s), None, "{s:?}");
        }
    }

    #[test]
    fn epoch_seconds_and_millis() {
        assert_eq!(
            epoch_number_to_ms(1_668_677_599.224),
            Some(1_668_677_599_224)
        );
        assert_eq!(
            epoch_number_to_ms(1_668_677_599_224.0),
            Some(1_668_677_599_224)
        );
        assert_eq!(epoch_number_to_ms(f64::NAN), None);
    }
}

/// Epoch milliseconds as RFC 3339 UTC with milliseconds (`2024-01-01T00:00:00.000Z`).
pub fn format_rfc3339_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000
    )
}

/// Inverse of `days_from_civil` (Howard Hinnant's civil_from_days).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn formats_and_parses_back() {
        for ms in [0, 1_668_677_599_224, 1_709_208_000_000, -86_400_001] {
            let s = format_rfc3339_ms(ms);
            assert_eq!(parse_timestamp_ms(&s), Some(ms), "{s}");
        }
        assert_eq!(
            format_rfc3339_ms(1_668_677_599_224),
            "2022-11-17T09:33:19.224Z"
        );
    }
}
