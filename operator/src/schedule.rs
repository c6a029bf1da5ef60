//! Should a camera be recording at a given instant? Recording mode and weekly windows, pure.

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::api::{RecordingMode, RecordingSpec, Weekday};
use crate::validation::schedule_window_minutes;

/// True when `spec` says to record at `now`. An unknown time zone falls back to UTC; validation
/// reports it separately, so recording errs on the side of recording.
pub fn should_record(spec: &RecordingSpec, now: DateTime<Utc>) -> bool {
    match spec.mode {
        RecordingMode::Continuous => true,
        RecordingMode::Off => false,
        RecordingMode::Scheduled => {
            let tz: chrono_tz::Tz = spec
                .time_zone
                .as_deref()
                .and_then(|z| z.parse().ok())
                .unwrap_or(chrono_tz::UTC);
            let local = now.with_timezone(&tz);
            let day = weekday(local.weekday());
            let minute = local.hour() * 60 + local.minute();
            spec.schedule.iter().any(|w| {
                w.days.contains(&day)
                    && schedule_window_minutes(w)
                        .is_ok_and(|(start, end)| minute >= start && minute < end)
            })
        }
    }
}

fn weekday(d: chrono::Weekday) -> Weekday {
    match d {
        chrono::Weekday::Mon => Weekday::Mon,
        chrono::Weekday::Tue => Weekday::Tue,
        chrono::Weekday::Wed => Weekday::Wed,
        chrono::Weekday::Thu => Weekday::Thu,
        chrono::Weekday::Fri => Weekday::Fri,
        chrono::Weekday::Sat => Weekday::Sat,
        chrono::Weekday::Sun => Weekday::Sun,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ScheduleWindow;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test time")
            .with_timezone(&Utc)
    }

    #[test]
    fn weekly_windows_in_a_time_zone() {
        let spec = RecordingSpec {
            mode: RecordingMode::Scheduled,
            time_zone: Some("Europe/Berlin".into()),
            schedule: vec![ScheduleWindow {
                days: vec![Weekday::Mon, Weekday::Fri],
                start: "06:00".into(),
                end: "22:00".into(),
            }],
        };
        // 2026-11-23 is a Monday; Berlin is UTC+1 in November.
        assert!(!should_record(&spec, at("2026-11-23T04:59:00Z")));
        assert!(should_record(&spec, at("2026-11-23T05:00:00Z")));
        assert!(should_record(&spec, at("2026-11-23T20:59:59Z")));
        assert!(!should_record(&spec, at("2026-11-23T21:00:00Z")));
        assert!(
            !should_record(&spec, at("2026-11-24T12:00:00Z")),
            "Tuesday is not scheduled"
        );
    }

    #[test]
    fn continuous_and_off() {
        let mut spec = RecordingSpec::default();
        assert!(should_record(&spec, Utc::now()));
        spec.mode = RecordingMode::Off;
        assert!(!should_record(&spec, Utc::now()));
    }
}
