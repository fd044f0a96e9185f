//! Instants as Unix seconds, and the dates the policy writes.
//!
//! The policy's `expires`/`revoked` values are TOML dates or date-times; a
//! bare date means 00:00 UTC that day.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (UTC).
pub type Timestamp = i64;

/// Now, as Unix seconds.
pub fn now() -> Timestamp {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// Convert a Unix timestamp to a `SystemTime`.
pub fn to_system_time(t: Timestamp) -> SystemTime {
    if t >= 0 {
        UNIX_EPOCH + std::time::Duration::from_secs(t as u64)
    } else {
        UNIX_EPOCH - std::time::Duration::from_secs(t.unsigned_abs())
    }
}

/// Convert a `SystemTime` to Unix seconds.
pub fn from_system_time(t: SystemTime) -> Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let d = i64::from(d);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Format Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format(t: Timestamp) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    // civil_from_days
    let z = days + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Convert a TOML date or date-time to Unix seconds. A date-time without an
/// offset is taken as UTC. A time without a date is refused.
///
/// # Errors
///
/// A message for a date-time without an offset or out of range.
pub fn from_toml(dt: &toml_edit::Datetime) -> Result<Timestamp, &'static str> {
    let date = dt
        .date
        .ok_or("a time without a date is not a point in time")?;
    let mut t = days_from_civil(
        i64::from(date.year),
        u32::from(date.month),
        u32::from(date.day),
    ) * 86400;
    if let Some(time) = dt.time {
        t += i64::from(time.hour) * 3600 + i64::from(time.minute) * 60 + i64::from(time.second);
    }
    if let Some(toml_edit::Offset::Custom { minutes }) = dt.offset {
        t -= i64::from(minutes) * 60;
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11017);
        assert_eq!(format(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            format(days_from_civil(2026, 11, 29) * 86400 + 3661),
            "2026-11-29 01:01:01 UTC"
        );
        assert_eq!(format(-1), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn toml_dates() {
        let d: toml_edit::Datetime = "2027-06-30".parse().unwrap();
        assert_eq!(from_toml(&d).unwrap(), days_from_civil(2027, 6, 30) * 86400);
        let d: toml_edit::Datetime = "2027-06-30T02:00:00+02:00".parse().unwrap();
        assert_eq!(from_toml(&d).unwrap(), days_from_civil(2027, 6, 30) * 86400);
        let d: toml_edit::Datetime = "12:00:00".parse().unwrap();
        assert!(from_toml(&d).is_err());
    }
}
