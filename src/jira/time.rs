//! Jira's timestamp formats and JQL date literals.
//!
//! Jira renders `2024-01-02T10:11:12.345+0000` (no colon in the offset, so not RFC 3339), Agile
//! uses `+10:00`, some feeds use `Z` or epoch milliseconds. JQL date literals have minute
//! precision and are read in the API user's profile time zone, never in UTC.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// Parses every timestamp shape Jira sends into UTC, or `None` if the text is none of them.
pub fn parse_jira_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M%z") {
        return Some(t.with_timezone(&Utc));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().ok().and_then(from_epoch_millis);
    }
    None
}

/// Parses a JSON value that holds a timestamp as a string or as epoch milliseconds.
pub fn parse_jira_timestamp_value(value: &serde_json::Value) -> Option<DateTime<Utc>> {
    match value {
        serde_json::Value::String(s) => parse_jira_timestamp(s),
        serde_json::Value::Number(n) => n.as_i64().and_then(from_epoch_millis),
        _ => None,
    }
}

/// Parses a date-only field (`duedate`): `yyyy-MM-dd`.
pub fn parse_jira_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()
}

fn from_epoch_millis(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

/// Parses an IANA zone name as `/myself` reports it.
pub fn parse_zone(name: &str) -> Option<Tz> {
    name.parse::<Tz>().ok()
}

/// Formats `instant` as a JQL date-time literal in `zone`, floored to the minute:
/// `2025/03/04 19:15`. Quote it in JQL.
///
/// Flooring can only move the literal earlier, so a `>=` bound built from it never skips a
/// change; the caller subtracts its overlap before calling.
pub fn jql_datetime_literal(instant: DateTime<Utc>, zone: Tz) -> String {
    instant
        .with_timezone(&zone)
        .format("%Y/%m/%d %H:%M")
        .to_string()
}

/// Formats a UTC instant the way Jira renders timestamps in `zone`: `2025-03-04T10:15:27.120+0100`.
pub fn format_jira_timestamp(instant: DateTime<Utc>, zone: Tz) -> String {
    instant
        .with_timezone(&zone)
        .format("%Y-%m-%dT%H:%M:%S%.3f%z")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_shape_jira_sends() {
        let want = Utc
            .with_ymd_and_hms(2025, 3, 4, 9, 15, 27)
            .single()
            .map(|t| t + chrono::Duration::milliseconds(120));
        assert_eq!(parse_jira_timestamp("2025-03-04T09:15:27.120+0000"), want);
        assert_eq!(parse_jira_timestamp("2025-03-04T10:15:27.120+0100"), want);
        assert_eq!(parse_jira_timestamp("2025-03-04T19:15:27.120+10:00"), want);
        assert_eq!(parse_jira_timestamp("2025-03-04T09:15:27.120Z"), want);
        assert_eq!(parse_jira_timestamp("1741079727120"), want);
        assert_eq!(
            parse_jira_timestamp_value(&serde_json::json!(1741079727120_i64)),
            want
        );
        assert_eq!(parse_jira_timestamp("yesterday"), None);
        assert_eq!(parse_jira_timestamp(""), None);
    }

    #[test]
    fn jql_literal_is_wall_clock_in_the_users_zone_floored_to_the_minute() {
        let t = Utc
            .with_ymd_and_hms(2025, 3, 4, 9, 15, 59)
            .single()
            .expect("valid");
        let kiritimati = parse_zone("Pacific/Kiritimati").expect("zone");
        let la = parse_zone("America/Los_Angeles").expect("zone");
        assert_eq!(jql_datetime_literal(t, kiritimati), "2025/03/04 23:15");
        assert_eq!(jql_datetime_literal(t, la), "2025/03/04 01:15");
        assert_eq!(jql_datetime_literal(t, chrono_tz::UTC), "2025/03/04 09:15");
    }

    #[test]
    fn rendered_timestamps_round_trip() {
        let t = Utc
            .with_ymd_and_hms(2024, 11, 3, 8, 30, 0)
            .single()
            .expect("valid");
        let la = parse_zone("America/Los_Angeles").expect("zone");
        let text = format_jira_timestamp(t, la);
        assert_eq!(text, "2024-11-03T01:30:00.000-0700");
        assert_eq!(parse_jira_timestamp(&text), Some(t));
    }
}

/// The JQL literal for a `>=` bound at `instant` in `zone` that can never skip a change: floored
/// to the minute, and an hour earlier when the wall-clock time is ambiguous (the repeated hour
/// when clocks fall back), since Jira may read an ambiguous literal as the later instant.
pub fn jql_lower_bound_literal(instant: DateTime<Utc>, zone: Tz) -> String {
    use chrono::LocalResult;
    let local = instant.with_timezone(&zone).naive_local();
    match zone.from_local_datetime(&local) {
        LocalResult::Ambiguous(_, _) => {
            jql_datetime_literal(instant - chrono::Duration::hours(1), zone)
        }
        _ => jql_datetime_literal(instant, zone),
    }
}

#[cfg(test)]
mod dst_tests {
    use super::*;

    #[test]
    fn a_bound_in_the_repeated_hour_moves_an_hour_earlier() {
        let la = parse_zone("America/Los_Angeles").expect("zone");
        // 2024-11-03 08:30 UTC is 01:30 PDT, inside the repeated 01:00–02:00 hour.
        let t = Utc
            .with_ymd_and_hms(2024, 11, 3, 8, 30, 0)
            .single()
            .expect("valid");
        assert_eq!(jql_lower_bound_literal(t, la), "2024/11/03 00:30");
        // A day later nothing is ambiguous.
        let t = Utc
            .with_ymd_and_hms(2024, 11, 4, 8, 30, 0)
            .single()
            .expect("valid");
        assert_eq!(jql_lower_bound_literal(t, la), "2024/11/04 00:30");
    }
}
