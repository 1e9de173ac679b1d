//! Time as the simulated site reads and writes it: IANA zones, timestamps rendered the way Jira
//! renders them (`2025-03-04T10:15:27.120+0100`), and the ISO 8601 forms its endpoints accept.
//!
//! The simulator keeps its own implementation rather than borrowing the product's, so a bug in
//! how jira-sync reads Jira's timestamps cannot hide behind the same bug in the simulator.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// An IANA zone name, as `/myself` reports it.
pub fn parse_zone(name: &str) -> Option<Tz> {
    name.parse::<Tz>().ok()
}

/// `instant` as Jira renders timestamps in `zone`: milliseconds and a `+hhmm` offset.
pub fn format_jira_timestamp(instant: DateTime<Utc>, zone: Tz) -> String {
    instant
        .with_timezone(&zone)
        .format("%Y-%m-%dT%H:%M:%S%.3f%z")
        .to_string()
}

/// A date-time parameter as Jira's endpoints accept it: ISO 8601 with a `+hhmm`, `+hh:mm` or
/// `Z` offset (seconds and fractions optional), or epoch milliseconds.
pub fn parse_jira_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z"] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Utc.timestamp_millis_opt(text.parse().ok()?).single();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_with_the_zones_offset_and_read_back() {
        let t = Utc
            .with_ymd_and_hms(2024, 11, 3, 8, 30, 0)
            .single()
            .expect("valid");
        let la = parse_zone("America/Los_Angeles").expect("zone");
        let text = format_jira_timestamp(t, la);
        assert_eq!(text, "2024-11-03T01:30:00.000-0700");
        assert_eq!(parse_jira_timestamp(&text), Some(t));
        assert_eq!(parse_jira_timestamp("2024-11-03T08:30:00Z"), Some(t));
        assert_eq!(parse_jira_timestamp("1730622600000"), Some(t));
        assert_eq!(parse_jira_timestamp("soon"), None);
    }
}
