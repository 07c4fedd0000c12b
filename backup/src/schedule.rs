//! Job schedules: cron syntax (5 fields, or 6 with seconds first) in an IANA time zone read
//! from the host's zoneinfo, as `croner` and `jiff` understand them (daylight-saving changes
//! handled: a wall-clock time that does not exist is skipped, one that happens twice runs
//! once).

use std::time::{Duration, SystemTime};

use croner::Cron;
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// A parsed schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    tz: TimeZone,
}

/// A schedule that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// Not cron syntax.
    #[error(
        "{value:?} is not a cron schedule ({reason}); expected 5 fields (minute hour day month weekday) like \"0 3 * * *\", or 6 with seconds first"
    )]
    Cron { value: String, reason: String },
    /// An unknown time zone.
    #[error(
        "{0:?} is not a time zone this host knows; expected an IANA name like Europe/Berlin or UTC (from /usr/share/zoneinfo)"
    )]
    TimeZone(String),
}

impl Schedule {
    /// Parses `cron` in time zone `tz` (`UTC` or an IANA name).
    pub fn parse(cron: &str, tz: &str) -> Result<Self, ScheduleError> {
        let parsed = cron.parse::<Cron>().map_err(|e| ScheduleError::Cron {
            value: cron.to_owned(),
            reason: e.to_string(),
        })?;
        let zone = if tz == "UTC" {
            TimeZone::UTC
        } else {
            TimeZone::get(tz).map_err(|_| ScheduleError::TimeZone(tz.to_owned()))?
        };
        Ok(Self {
            cron: parsed,
            tz: zone,
        })
    }

    fn zoned(&self, at: SystemTime) -> Option<jiff::Zoned> {
        Timestamp::try_from(at)
            .ok()
            .map(|t| t.to_zoned(self.tz.clone()))
    }

    /// The latest scheduled time at or before `now` (`None` if there is none in range).
    pub fn latest_at_or_before(&self, now: SystemTime) -> Option<SystemTime> {
        let z = self.zoned(now)?;
        let t = self.cron.find_previous_occurrence(&z, true).ok()?;
        Some(SystemTime::from(t.timestamp()))
    }

    /// The first scheduled time strictly after `t`.
    pub fn next_after(&self, t: SystemTime) -> Option<SystemTime> {
        let z = self.zoned(t)?;
        let n = self.cron.find_next_occurrence(&z, false).ok()?;
        Some(SystemTime::from(n.timestamp()))
    }

    /// How long until the next scheduled time after `now` (zero if it cannot be computed:
    /// the caller's periodic tick then looks again).
    pub fn until_next(&self, now: SystemTime) -> Duration {
        self.next_after(now)
            .and_then(|n| n.duration_since(now).ok())
            .unwrap_or_default()
    }
}

/// A slot's name in keys and records: its UTC time, `20261203T020000Z`.
pub fn slot_name(at: SystemTime) -> String {
    crate::repo::compact_utc(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        SystemTime::from(s.parse::<Timestamp>().expect("timestamp"))
    }

    #[test]
    fn latest_and_next_in_utc() {
        let s = Schedule::parse("0 3 * * *", "UTC").expect("parse");
        let now = at("2026-12-03T10:15:00Z");
        assert_eq!(s.latest_at_or_before(now), Some(at("2026-12-03T03:00:00Z")));
        assert_eq!(s.next_after(now), Some(at("2026-12-04T03:00:00Z")));
        // inclusive: a slot time is its own latest
        assert_eq!(
            s.latest_at_or_before(at("2026-12-03T03:00:00Z")),
            Some(at("2026-12-03T03:00:00Z"))
        );
    }

    #[test]
    fn time_zones_come_from_the_host() {
        let s = Schedule::parse("0 3 * * *", "Europe/Berlin").expect("parse");
        // 03:00 in Berlin in winter is 02:00 UTC
        assert_eq!(
            s.next_after(at("2026-12-03T00:00:00Z")),
            Some(at("2026-12-03T02:00:00Z"))
        );
        let e = Schedule::parse("0 3 * * *", "Mars/Olympus").expect_err("unknown zone");
        assert!(e.to_string().contains("Mars/Olympus"), "{e}");
        let e = Schedule::parse("every day", "UTC").expect_err("not cron");
        assert!(e.to_string().contains("5 fields"), "{e}");
    }

    #[test]
    fn seconds_field_is_optional() {
        let s = Schedule::parse("*/10 * * * * *", "UTC").expect("parse");
        let now = at("2026-12-03T10:15:07Z");
        assert_eq!(s.latest_at_or_before(now), Some(at("2026-12-03T10:15:00Z")));
        assert_eq!(s.until_next(now), Duration::from_secs(3));
    }

    #[test]
    fn slot_names_are_compact_utc() {
        assert_eq!(slot_name(at("2026-12-03T02:00:00Z")), "20261203T020000Z");
    }
}
