//! Time helpers: Unix milliseconds, as the database and Matrix keep them, and RFC 3339.

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

/// RFC 3339 in UTC with whole seconds, e.g. `2026-11-25T19:00:00Z`.
const RFC3339_SECONDS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// A duration in whole milliseconds, saturating.
pub fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Formats a Unix time (seconds) as RFC 3339 UTC.
pub fn rfc3339(unix_secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix_secs)
        .ok()
        .and_then(|t| t.format(RFC3339_SECONDS).ok())
        .unwrap_or_default()
}

/// Formats Unix milliseconds as RFC 3339 UTC (whole seconds).
pub fn rfc3339_ms(unix_ms: i64) -> String {
    rfc3339(unix_ms.div_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_whole_seconds_in_utc() {
        assert_eq!(rfc3339(1_764_097_200), "2025-11-25T19:00:00Z");
        assert_eq!(rfc3339_ms(1_764_097_200_999), "2025-11-25T19:00:00Z");
        assert_eq!(ms(Duration::from_secs(2)), 2000);
    }
}
