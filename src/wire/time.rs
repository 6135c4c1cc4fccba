//! Civil-time formatting for fc's `time_point_sec` and `time_point`, without a calendar crate.
//!
//! fc prints times as ISO 8601 "YYYY-MM-DDTHH:MM:SS" in UTC (boost's
//! `to_iso_extended_string`), and drops sub-second digits even for `time_point`. We print the
//! same, adding ".ffffff" only when a `time_point` has microseconds, so nothing is lost.

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
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

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats seconds since the epoch as "YYYY-MM-DDTHH:MM:SS".
pub fn format_seconds(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Formats microseconds since the epoch; whole seconds print exactly as fc prints them.
pub fn format_micros(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    if frac == 0 {
        format_seconds(secs)
    } else {
        format!("{}.{frac:06}", format_seconds(secs))
    }
}

/// Parses "YYYY-MM-DDTHH:MM:SS[.ffffff]" (an optional trailing "Z" is accepted) into
/// microseconds since the epoch.
pub fn parse_micros(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (main, frac) = match text.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (text, None),
    };
    // The year may carry a sign and more than four digits (a peer can send any i64); the rest
    // is fixed: "-MM-DDTHH:MM:SS", 15 bytes.
    let split = main.len().checked_sub(15)?;
    let (year_text, rest) = main.split_at_checked(split)?;
    let r = rest.as_bytes();
    if r[0] != b'-' || r[3] != b'-' || r[6] != b'T' || r[9] != b':' || r[12] != b':' {
        return None;
    }
    let digits = |s: &str| -> Option<i64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let y = match year_text.strip_prefix('-') {
        Some(d) => -digits(d)?,
        None => digits(year_text)?,
    };
    if year_text.trim_start_matches('-').len() < 4 && y >= 0 {
        return None;
    }
    let (mo, d) = (digits(&rest[1..3])?, digits(&rest[4..6])?);
    let (h, mi, s) = (
        digits(&rest[7..9])?,
        digits(&rest[10..12])?,
        digits(&rest[13..15])?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let micros_frac = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 6 && f.bytes().all(|c| c.is_ascii_digit()) => {
            f.parse::<i64>().ok()? * 10i64.pow(6 - f.len() as u32)
        }
        Some(_) => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = i128::from(days) * 86_400 + i128::from(h * 3600 + mi * 60 + s);
    i64::try_from(secs * 1_000_000 + i128::from(micros_frac)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_times() {
        assert_eq!(format_seconds(0), "1970-01-01T00:00:00");
        assert_eq!(format_seconds(1_700_000_000), "2023-11-14T22:13:20");
        assert_eq!(format_seconds(i64::from(u32::MAX)), "2106-02-07T06:28:15");
        assert_eq!(
            parse_micros("2023-11-14T22:13:20"),
            Some(1_700_000_000_000_000)
        );
        assert_eq!(
            format_micros(1_700_000_000_000_001),
            "2023-11-14T22:13:20.000001"
        );
        assert_eq!(
            parse_micros("2023-11-14T22:13:20.000001"),
            Some(1_700_000_000_000_001)
        );
        assert_eq!(parse_micros("2023-11-14 22:13:20"), None);
        assert_eq!(parse_micros("2023-13-14T22:13:20"), None);
    }

    #[test]
    fn extreme_times_round_trip() {
        for micros in [
            i64::MIN,
            i64::MAX,
            -62_167_219_200_000_001,
            253_402_300_800_000_000,
            0,
            -1,
        ] {
            let text = format_micros(micros);
            assert_eq!(parse_micros(&text), Some(micros), "{text}");
        }
    }

    #[test]
    fn round_trip_over_a_wide_range() {
        for secs in (-62_000_000_000i64..253_000_000_000).step_by(7_777_777) {
            let text = format_seconds(secs);
            assert_eq!(parse_micros(&text), Some(secs * 1_000_000), "{text}");
        }
    }
}
