//! Manual recording and events from other systems (issue 17), written to the Camera object:
//!
//! ```text
//! GET    /api/v1/cameras/{ns}/{name}/manual-recording                  (get cameras/recordings)
//! POST   /api/v1/cameras/{ns}/{name}/manual-recording?durationSeconds=  (create cameras/manual-recording)
//! DELETE /api/v1/cameras/{ns}/{name}/manual-recording                  (same: stops it early)
//! POST   /api/v1/cameras/{ns}/{name}/events  {"durationSeconds": 5, "source": "lpr-1"}
//!                                                                       (create cameras/events)
//! ```
//!
//! The channel to the recorder is the Camera itself: the access point patches
//! `spec.recording.manual` / `spec.recording.externalEvent` (with the object's
//! `resourceVersion`, so concurrent requests cannot lose each other's window), the operator
//! places a camera in mode `Off` while its manual window lasts, and the recorder holding the
//! camera sees the window through its watch (`recorder/src/windows.rs`). Nothing needs the
//! recorder's address, and a recorder taking the camera over sees the same window.
//!
//! Bounds on what a caller can write: one window per kind per camera (a new external event
//! while one runs extends it), at most 24 h for a manual recording and 10 min for an event, a
//! `source` of at most 63 characters `[A-Za-z0-9._-]`, a body of at most 4 KiB, and at most one
//! write per camera per second (429 otherwise): the API server sees at most one Camera write
//! per camera per second from here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use vigil_api::{Camera, MAX_WINDOW_SECONDS, RecordingWindow};
use vigil_store::layout::CameraId;

/// Longest external event (one event record).
pub const MAX_EVENT_SECONDS: f64 = 600.0;
/// Largest request body of `POST .../events`.
pub const MAX_EVENT_BODY: usize = 4096;
/// Least time between two writes to one camera.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_secs(1);
const MAX_RATE_ENTRIES: usize = 10_000;

/// The manual window after a start of `duration`: a running one is extended (or shortened)
/// to end `duration` from now; otherwise a new one starts now.
pub fn start_manual(
    existing: Option<&RecordingWindow>,
    now: DateTime<Utc>,
    duration: TimeDelta,
    user: &str,
) -> RecordingWindow {
    match existing {
        Some(w) if w.covers(now) => RecordingWindow {
            start: w.start,
            end: now + duration,
            by: Some(user.to_string()),
        },
        _ => RecordingWindow {
            start: now,
            end: now + duration,
            by: Some(user.to_string()),
        },
    }
}

/// The manual window after a stop: it ends now. `None`: none is running.
pub fn stop_manual(
    existing: Option<&RecordingWindow>,
    now: DateTime<Utc>,
) -> Option<RecordingWindow> {
    let w = existing.filter(|w| w.covers(now))?;
    Some(RecordingWindow {
        end: now.max(w.start + TimeDelta::milliseconds(1)),
        ..w.clone()
    })
}

/// The external event window after an event of `duration` at `now`: merged into the running
/// one (so no event is lost to the next), else a new one.
pub fn post_event(
    existing: Option<&RecordingWindow>,
    now: DateTime<Utc>,
    duration: TimeDelta,
    source: Option<&str>,
) -> RecordingWindow {
    let end = now + duration.max(TimeDelta::milliseconds(1));
    match existing {
        Some(w) if w.start <= now && now <= w.end => RecordingWindow {
            start: w.start,
            end: w.end.max(end),
            by: source.map(str::to_string).or_else(|| w.by.clone()),
        },
        _ => RecordingWindow {
            start: now,
            end,
            by: source.map(str::to_string),
        },
    }
}

/// A manual recording's duration in seconds: 1 s to 24 h.
pub fn manual_duration(s: Option<&str>) -> Result<TimeDelta, String> {
    let secs: i64 = match s {
        None | Some("") => 300,
        Some(v) => v
            .parse()
            .map_err(|_| format!("durationSeconds {v:?} is not a whole number"))?,
    };
    if !(1..=MAX_WINDOW_SECONDS).contains(&secs) {
        return Err(format!("durationSeconds must be 1..={MAX_WINDOW_SECONDS}"));
    }
    Ok(TimeDelta::seconds(secs))
}

/// The body of `POST .../events`.
#[derive(Debug, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostedEvent {
    /// Only `external` (the default): other systems' events are told apart by `source`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// 0–600; default 0 (an instant: recorded `pre` before to `post` after).
    #[serde(default)]
    pub duration_seconds: Option<f64>,
    #[serde(default)]
    pub source: Option<String>,
}

impl PostedEvent {
    /// Parses and checks a body.
    pub fn parse(body: &[u8]) -> Result<(TimeDelta, Option<String>), String> {
        if body.len() > MAX_EVENT_BODY {
            return Err(format!("body larger than {MAX_EVENT_BODY} bytes"));
        }
        let e: PostedEvent = if body.iter().all(u8::is_ascii_whitespace) {
            PostedEvent {
                kind: None,
                duration_seconds: None,
                source: None,
            }
        } else {
            serde_json::from_slice(body).map_err(|e| format!("body is not a valid event: {e}"))?
        };
        if let Some(k) = &e.kind
            && k != "external"
        {
            return Err(format!("type {k:?}: only \"external\" can be posted"));
        }
        let d = e.duration_seconds.unwrap_or(0.0);
        if !(0.0..=MAX_EVENT_SECONDS).contains(&d) {
            return Err(format!("durationSeconds must be 0..={MAX_EVENT_SECONDS}"));
        }
        if let Some(s) = &e.source
            && (s.is_empty()
                || s.len() > 63
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
        {
            return Err("source must be 1–63 characters [A-Za-z0-9._-]".into());
        }
        Ok((TimeDelta::milliseconds((d * 1000.0) as i64), e.source))
    }
}

/// At most one write per camera per [`MIN_WRITE_INTERVAL`]; bounded memory.
#[derive(Default)]
pub struct RateLimit {
    last: Mutex<HashMap<CameraId, Instant>>,
}

impl RateLimit {
    /// True when `camera` may be written now (and counts the write).
    pub fn allow(&self, camera: &CameraId, now: Instant) -> bool {
        let Ok(mut m) = self.last.lock() else {
            return false;
        };
        if m.len() >= MAX_RATE_ENTRIES {
            m.retain(|_, t| now.duration_since(*t) < MIN_WRITE_INTERVAL);
        }
        match m.get(camera) {
            Some(t) if now.duration_since(*t) < MIN_WRITE_INTERVAL => false,
            _ => {
                m.insert(camera.clone(), now);
                true
            }
        }
    }
}

/// Which window of the Camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Manual,
    ExternalEvent,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Manual => "manual",
            Field::ExternalEvent => "externalEvent",
        }
    }

    pub fn of(self, c: &Camera) -> Option<&RecordingWindow> {
        match self {
            Field::Manual => c.spec.recording.manual.as_ref(),
            Field::ExternalEvent => c.spec.recording.external_event.as_ref(),
        }
    }
}

/// Reads the Camera, computes its new window with `f` (`None`: nothing to write) and writes
/// it with the read `resourceVersion`; retried on a conflict.
pub async fn update<F>(
    api: &Api<Camera>,
    name: &str,
    field: Field,
    mut f: F,
) -> crate::error::Result<Option<(Camera, RecordingWindow)>>
where
    F: FnMut(&Camera) -> Option<RecordingWindow>,
{
    let mut attempt = 0;
    loop {
        let cam = api.get(name).await?;
        let Some(w) = f(&cam) else { return Ok(None) };
        let patch = json!({
            "metadata": {"resourceVersion": cam.metadata.resource_version},
            "spec": {"recording": {field.name(): w}},
        });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            // A CRD without the field prunes it silently: say so instead of claiming success.
            Ok(c) if field.of(&c) != Some(&w) => {
                return Err(crate::error::Error::CrdOutdated(field.name()));
            }
            Ok(c) => return Ok(Some((c, w))),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 3 => attempt += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The JSON form of a window.
pub fn window_json(w: &RecordingWindow) -> serde_json::Value {
    json!({
        "startMs": w.start.timestamp_millis(),
        "endMs": w.end.timestamp_millis(),
        "start": w.start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "end": w.end.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "by": w.by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn manual_windows_start_extend_and_stop() {
        let w = start_manual(None, t(0), TimeDelta::seconds(60), "alice");
        assert_eq!((w.start, w.end), (t(0), t(60)));
        // Started again while it runs: the same window, a new end.
        let w2 = start_manual(Some(&w), t(30), TimeDelta::seconds(60), "bob");
        assert_eq!(
            (w2.start, w2.end, w2.by.as_deref()),
            (t(0), t(90), Some("bob"))
        );
        // After it ended: a new one.
        let w3 = start_manual(Some(&w), t(100), TimeDelta::seconds(10), "alice");
        assert_eq!((w3.start, w3.end), (t(100), t(110)));
        let s = stop_manual(Some(&w), t(20)).unwrap();
        assert_eq!((s.start, s.end), (t(0), t(20)));
        assert_eq!(stop_manual(Some(&w), t(61)), None);
        assert_eq!(stop_manual(None, t(1)), None);
    }

    #[test]
    fn posted_events_merge_into_the_running_one() {
        let e = post_event(None, t(0), TimeDelta::seconds(5), Some("lpr-1"));
        assert_eq!((e.start, e.end), (t(0), t(5)));
        let e2 = post_event(Some(&e), t(3), TimeDelta::seconds(5), None);
        assert_eq!(
            (e2.start, e2.end, e2.by.as_deref()),
            (t(0), t(8), Some("lpr-1"))
        );
        let e3 = post_event(Some(&e), t(3), TimeDelta::seconds(1), None);
        assert_eq!(e3.end, t(5), "a shorter event does not cut the running one");
        let e4 = post_event(Some(&e), t(9), TimeDelta::zero(), Some("door-7"));
        assert_eq!(e4.start, t(9));
        assert!(e4.end > e4.start);
    }

    #[test]
    fn bodies_and_durations_are_bounded() {
        assert_eq!(
            PostedEvent::parse(br#"{"durationSeconds": 2.5, "source": "lpr-1"}"#),
            Ok((TimeDelta::milliseconds(2500), Some("lpr-1".into())))
        );
        assert_eq!(PostedEvent::parse(b""), Ok((TimeDelta::zero(), None)));
        assert!(PostedEvent::parse(br#"{"type": "motion"}"#).is_err());
        assert!(PostedEvent::parse(br#"{"durationSeconds": 601}"#).is_err());
        assert!(PostedEvent::parse(br#"{"durationSeconds": -1}"#).is_err());
        assert!(PostedEvent::parse(br#"{"source": "a b"}"#).is_err());
        assert!(PostedEvent::parse(br#"{"extra": 1}"#).is_err());
        assert!(PostedEvent::parse(&vec![b' '; MAX_EVENT_BODY + 1]).is_err());
        assert_eq!(manual_duration(None), Ok(TimeDelta::seconds(300)));
        assert_eq!(manual_duration(Some("30")), Ok(TimeDelta::seconds(30)));
        assert!(manual_duration(Some("0")).is_err());
        assert!(manual_duration(Some("86401")).is_err());
        assert!(manual_duration(Some("1.5")).is_err());
    }

    #[test]
    fn one_write_per_camera_per_second() {
        let r = RateLimit::default();
        let a = CameraId::new("s", "a").unwrap();
        let b = CameraId::new("s", "b").unwrap();
        let t0 = Instant::now();
        assert!(r.allow(&a, t0));
        assert!(!r.allow(&a, t0 + Duration::from_millis(500)));
        assert!(r.allow(&b, t0 + Duration::from_millis(500)));
        assert!(r.allow(&a, t0 + Duration::from_millis(1000)));
    }
}
