//! Should a camera be recording at a given instant? Recording mode and weekly windows, pure.

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::validation::schedule_window_minutes;
use crate::{RecordingMode, RecordingSpec, Weekday};

/// True when `spec` says to record at `now`. An unknown time zone falls back to UTC; validation
/// reports it separately, so recording errs on the side of recording.
/// A manual recording window in progress makes every mode record.
pub fn should_record(spec: &RecordingSpec, now: DateTime<Utc>) -> bool {
    if spec.manual.as_ref().is_some_and(|m| m.covers(now)) {
        return true;
    }
    match spec.mode {
        // Event mode keeps the stream open (the pre-event buffer needs it).
        RecordingMode::Continuous | RecordingMode::Event => true,
        RecordingMode::Off => false,
        RecordingMode::Scheduled => scheduled_at(spec, time_zone(spec), now),
    }
}

/// When a manual recording window in the future of `now` starts or ends (the operator looks
/// again then).
pub fn next_manual_turn(spec: &RecordingSpec, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let m = spec.manual.as_ref()?;
    [m.start, m.end].into_iter().filter(|t| *t > now).min()
}

fn time_zone(spec: &RecordingSpec) -> chrono_tz::Tz {
    spec.time_zone
        .as_deref()
        .and_then(|z| z.parse().ok())
        .unwrap_or(chrono_tz::UTC)
}

fn scheduled_at(spec: &RecordingSpec, tz: chrono_tz::Tz, now: DateTime<Utc>) -> bool {
    let local = now.with_timezone(&tz);
    let day = weekday(local.weekday());
    let minute = local.hour() * 60 + local.minute();
    spec.schedule.iter().any(|w| {
        w.days.contains(&day)
            && schedule_window_minutes(w).is_ok_and(|(start, end)| minute >= start && minute < end)
    })
}

/// The parts of `[start, end)` in which `spec` says to record, in order, disjoint and
/// non-adjacent. Schedule windows are whole minutes of local time and every IANA offset in use
/// is a whole number of minutes, so evaluating [`should_record`] once per UTC minute is exact.
pub fn recording_intervals(
    spec: &RecordingSpec,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    if end <= start {
        return Vec::new();
    }
    match spec.mode {
        RecordingMode::Continuous => vec![(start, end)],
        // Footage is only promised around events, which a schedule cannot know.
        RecordingMode::Off | RecordingMode::Event => Vec::new(),
        RecordingMode::Scheduled => {
            let tz = time_zone(spec);
            let minute = chrono::TimeDelta::minutes(1);
            let mut out: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
            let mut m = start
                .with_second(0)
                .and_then(|t| t.with_nanosecond(0))
                .unwrap_or(start);
            while m < end {
                let next = m + minute;
                if scheduled_at(spec, tz, m) {
                    let (a, b) = (m.max(start), next.min(end));
                    match out.last_mut() {
                        Some(last) if last.1 == a => last.1 = b,
                        _ => out.push((a, b)),
                    }
                }
                m = next;
            }
            out
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
    use crate::ScheduleWindow;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test time")
            .with_timezone(&Utc)
    }

    #[test]
    fn a_manual_window_records_every_mode_while_it_lasts() {
        let w = crate::RecordingWindow {
            start: at("2026-11-23T10:00:00Z"),
            end: at("2026-11-23T10:05:00Z"),
            by: Some("alice".into()),
        };
        for mode in [
            RecordingMode::Off,
            RecordingMode::Scheduled,
            RecordingMode::Event,
        ] {
            let spec = RecordingSpec {
                mode,
                manual: Some(w.clone()),
                ..Default::default()
            };
            assert!(should_record(&spec, at("2026-11-23T10:00:00Z")), "{mode:?}");
            assert!(should_record(&spec, at("2026-11-23T10:04:59Z")), "{mode:?}");
        }
        let off = RecordingSpec {
            mode: RecordingMode::Off,
            manual: Some(w),
            ..Default::default()
        };
        assert!(!should_record(&off, at("2026-11-23T09:59:59Z")));
        assert!(!should_record(&off, at("2026-11-23T10:05:00Z")));
        assert_eq!(
            next_manual_turn(&off, at("2026-11-23T09:00:00Z")),
            Some(at("2026-11-23T10:00:00Z"))
        );
        assert_eq!(
            next_manual_turn(&off, at("2026-11-23T10:01:00Z")),
            Some(at("2026-11-23T10:05:00Z"))
        );
        assert_eq!(next_manual_turn(&off, at("2026-11-23T10:05:00Z")), None);
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
            ..Default::default()
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
    fn recording_intervals_follow_the_schedule() {
        let spec = RecordingSpec {
            mode: RecordingMode::Scheduled,
            time_zone: Some("Europe/Berlin".into()),
            schedule: vec![ScheduleWindow {
                days: vec![Weekday::Mon],
                start: "06:00".into(),
                end: "22:00".into(),
            }],
            ..Default::default()
        };
        // Sunday noon to Tuesday noon (UTC): Monday 05:00–21:00 UTC.
        let v = recording_intervals(
            &spec,
            at("2026-11-22T12:00:30Z"),
            at("2026-11-24T12:00:00Z"),
        );
        assert_eq!(
            v,
            vec![(at("2026-11-23T05:00:00Z"), at("2026-11-23T21:00:00Z"))]
        );
        // Clipped to the range, including a range starting mid-minute.
        let v = recording_intervals(
            &spec,
            at("2026-11-23T20:30:30Z"),
            at("2026-11-23T22:00:00Z"),
        );
        assert_eq!(
            v,
            vec![(at("2026-11-23T20:30:30Z"), at("2026-11-23T21:00:00Z"))]
        );
        let mut off = spec.clone();
        off.mode = RecordingMode::Off;
        assert!(
            recording_intervals(&off, at("2026-11-23T00:00:00Z"), at("2026-11-24T00:00:00Z"))
                .is_empty()
        );
        off.mode = RecordingMode::Continuous;
        assert_eq!(
            recording_intervals(&off, at("2026-11-23T00:00:00Z"), at("2026-11-24T00:00:00Z")).len(),
            1
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
