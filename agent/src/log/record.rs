//! One log record as a line: `<UTC time, microseconds> <level, right-aligned in 5> <message>
//! <field>=<value>…`, the layout tracing-subscriber's default formatter writes without colours
//! and targets, which the harness and the bench read from guest consoles
//! (`harness/src/guest/serial.rs`, `bench/src/boot_phases.rs`). Text values are quoted
//! (`step="hostname"`), numbers and `%`-fields are not.

use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level};

/// The field tracing gives an event's message.
const MESSAGE: &str = "message";
const SECONDS_PER_DAY: u64 = 86_400;

/// The line for `event` at `now`, newline included.
pub fn line(now: SystemTime, level: &Level, event: &Event<'_>) -> String {
    let mut fields = Fields::default();
    event.record(&mut fields);
    let mut out = String::with_capacity(64 + fields.message.len() + fields.rest.len());
    timestamp(&mut out, now);
    let _ = write!(out, " {:>5} ", level.as_str());
    out.push_str(&fields.message);
    if !fields.message.is_empty() && !fields.rest.is_empty() {
        out.push(' ');
    }
    out.push_str(&fields.rest);
    out.push('\n');
    out
}

/// The message, and the other fields as `name=value` joined by spaces, in their order.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == MESSAGE {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == MESSAGE {
            let _ = write!(self.message, "{value:?}");
            return;
        }
        if !self.rest.is_empty() {
            self.rest.push(' ');
        }
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        let _ = write!(self.rest, "{name}={value:?}");
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (RFC 3339, UTC); a clock before 1970 shows as 1970.
fn timestamp(out: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_date(secs / SECONDS_PER_DAY);
    let time = secs % SECONDS_PER_DAY;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        time / 3600,
        time / 60 % 60,
        time % 60,
        since.subsec_micros()
    );
}

/// `Thu, 03 Dec 2026 16:31:21 +0000` (RFC 2822, UTC: cloud-init's `time_rfc2822`).
pub fn rfc2822(now: SystemTime) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let days = secs / SECONDS_PER_DAY;
    let (year, month, day) = civil_date(days);
    let time = secs % SECONDS_PER_DAY;
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

/// The proleptic Gregorian date `days` days after 1970-01-01, counted in 400-year eras of
/// 146 097 days whose years start on 1 March (so that the leap day ends a year).
fn civil_date(days: u64) -> (u64, u64, u64) {
    // 1970-01-01 is day 719 468 counted from 0000-03-01.
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64, micros: u32) -> String {
        let mut out = String::new();
        timestamp(
            &mut out,
            UNIX_EPOCH + Duration::new(secs, micros * 1000 + 999),
        );
        out
    }

    #[test]
    fn rfc2822_dates_are_pythons() {
        // time.strftime("%a, %d %b %Y %H:%M:%S %z", time.gmtime(t)) for these t.
        assert_eq!(rfc2822(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 +0000");
        let at = |secs| UNIX_EPOCH + std::time::Duration::from_secs(secs);
        assert_eq!(
            rfc2822(at(1_796_315_481)),
            "Thu, 03 Dec 2026 16:31:21 +0000"
        );
        assert_eq!(rfc2822(at(951_782_400)), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(at(1_709_251_199, 999_999), "2024-02-29T23:59:59.999999Z");
        assert_eq!(at(1_796_225_656, 373_128), "2026-12-02T15:34:16.373128Z");
        assert_eq!(at(4_102_444_800, 0), "2100-01-01T00:00:00.000000Z");
    }

    #[test]
    fn every_day_follows_the_one_before() {
        let (mut y, mut m, mut d) = civil_date(0);
        for days in 1..200_000 {
            let next = civil_date(days);
            let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
            let month_days = [
                31,
                28 + u64::from(leap),
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            (y, m, d) = if d < month_days[m as usize - 1] {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
            assert_eq!(next, (y, m, d), "day {days}");
        }
    }
}
