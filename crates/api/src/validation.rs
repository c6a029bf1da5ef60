//! Validation that the OpenAPI schema cannot express: rules across fields, and parsing.
//!
//! Used by the admission webhook (so the API server refuses the object with this message) and
//! by the reconcilers (so an object that got in without the webhook shows an `Invalid`
//! condition instead of failing later). Pure functions, no I/O.

use crate::redact::url_has_credentials;
use crate::{BackfillSpec, CameraSpec, RecorderPoolSpec, RecordingMode, ScheduleWindow};

const NO_CREDENTIALS: &str = "must not contain credentials (user info or a query parameter such as \
password=, token=, key=); put them in a Secret and set spec.credentialsSecretRef";

/// One problem with an object, addressed by its JSON path so the user finds the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn err(path: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.to_string(),
        message: message.into(),
    }
}

/// Joins errors into one line for a condition message or an admission response.
pub fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn validate_camera(spec: &CameraSpec) -> Vec<FieldError> {
    let mut errors = vec![];
    match url::Url::parse(&spec.source.url) {
        Ok(u) if u.scheme() != "rtsp" && u.scheme() != "rtsps" => errors.push(err(
            "spec.source.url",
            format!("scheme must be rtsp or rtsps, not {:?}", u.scheme()),
        )),
        Ok(u) if url_has_credentials(&u) => errors.push(err("spec.source.url", NO_CREDENTIALS)),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => {
            errors.push(err("spec.source.url", "has no host"))
        }
        Ok(_) => {}
        Err(e) => errors.push(err("spec.source.url", format!("is not a valid URL: {e}"))),
    }
    if spec.expected_bitrate_kbps == 0 {
        errors.push(err("spec.expectedBitrateKbps", "must be greater than 0"));
    }
    if spec.retention.days < 1 {
        errors.push(err("spec.retention.days", "must be at least 1"));
    }
    if spec.recording.mode == RecordingMode::Scheduled && spec.recording.schedule.is_empty() {
        errors.push(err(
            "spec.recording.schedule",
            "mode Scheduled needs at least one window (or use mode Continuous)",
        ));
    }
    if spec
        .recording
        .pre_seconds
        .is_some_and(|p| p > crate::camera::MAX_PRE_SECONDS)
    {
        errors.push(err(
            "spec.recording.preSeconds",
            format!("must be at most {}", crate::camera::MAX_PRE_SECONDS),
        ));
    }
    if spec.recording.mode == RecordingMode::Event
        && spec.recording.onvif_events_url.is_none()
        && spec.edge_storage.as_ref().is_none_or(|e| e.onvif.is_none())
    {
        errors.push(err(
            "spec.recording.onvifEventsUrl",
            "mode Event needs an event source: onvifEventsUrl or edgeStorage.onvif.deviceUrl",
        ));
    }
    for (field, w) in [
        ("spec.recording.manual", &spec.recording.manual),
        (
            "spec.recording.externalEvent",
            &spec.recording.external_event,
        ),
    ] {
        if let Some(w) = w
            && let Err(m) = recording_window(w)
        {
            errors.push(err(field, m));
        }
    }
    if let Some(tz) = &spec.recording.time_zone
        && let Err(m) = time_zone(tz)
    {
        errors.push(err("spec.recording.timeZone", m));
    }
    for (i, w) in spec.recording.schedule.iter().enumerate() {
        if let Err(message) = schedule_window_minutes(w) {
            errors.push(err(&format!("spec.recording.schedule[{i}]"), message));
        }
    }
    if let Some(edge) = &spec.edge_storage {
        match (&edge.onvif, &edge.rtsp_playback) {
            (Some(_), Some(_)) => errors.push(err(
                "spec.edgeStorage",
                "set exactly one of onvif or rtspPlayback, not both",
            )),
            (None, None) => errors.push(err(
                "spec.edgeStorage",
                "set one of onvif or rtspPlayback, or remove edgeStorage",
            )),
            (None, Some(p)) => {
                let path = "spec.edgeStorage.rtspPlayback.urlTemplate";
                if !p.url_template.contains("{start}") || !p.url_template.contains("{end}") {
                    errors.push(err(path, "must contain both {start} and {end}"));
                }
                match url::Url::parse(&p.url_template) {
                    Ok(u) if url_has_credentials(&u) => errors.push(err(path, NO_CREDENTIALS)),
                    Ok(_) => {}
                    Err(e) => errors.push(err(path, format!("is not a valid URL: {e}"))),
                }
            }
            (Some(o), None) => {
                let path = "spec.edgeStorage.onvif.deviceUrl";
                match url::Url::parse(&o.device_url) {
                    Ok(u) if url_has_credentials(&u) => errors.push(err(path, NO_CREDENTIALS)),
                    Ok(u) if u.host_str().is_none_or(str::is_empty) => {
                        errors.push(err(path, "has no host"))
                    }
                    Ok(_) => {}
                    Err(e) => errors.push(err(path, format!("is not a valid URL: {e}"))),
                }
                if let Some(tls) = &o.tls
                    && tls.insecure_skip_verify
                    && tls.ca_secret_ref.is_some()
                {
                    errors.push(err(
                        "spec.edgeStorage.onvif.tls",
                        "set caSecretRef or insecureSkipVerify, not both",
                    ));
                }
            }
        }
    }
    errors
}

/// An IANA time zone name (`Europe/Berlin`, `UTC`), checked against the tz database compiled in.
pub fn time_zone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse::<chrono_tz::Tz>().map_err(|_| {
        let shown: String = name.chars().take(64).collect();
        format!("{shown:?} is not an IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)")
    })
}

/// Parses a schedule window into minutes of the day `[start, end)`.
pub fn schedule_window_minutes(w: &ScheduleWindow) -> Result<(u32, u32), String> {
    let start = parse_hhmm(&w.start).ok_or_else(|| format!("start {:?} is not HH:MM", w.start))?;
    let end = parse_hhmm(&w.end).ok_or_else(|| format!("end {:?} is not HH:MM", w.end))?;
    if end <= start {
        return Err(format!("end {} must be after start {}", w.end, w.start));
    }
    if w.days.is_empty() {
        return Err("days must name at least one day".into());
    }
    Ok((start, end))
}

fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

/// A CronJob schedule: five fields (minute hour day-of-month month day-of-week) of digits,
/// names, `*`, `/`, `,`, `-`, `?`, or a descriptor such as `@hourly`. The API server checks
/// the details; this catches what would make every apply of the CronJob fail.
pub fn cron_schedule(s: &str) -> Result<(), String> {
    let s = s.trim();
    if let Some(d) = s.strip_prefix('@') {
        return if !d.is_empty() && d.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ') {
            Ok(())
        } else {
            Err(format!("{s:?} is not a cron descriptor like @hourly"))
        };
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    let ok_chars = fields.iter().all(|f| {
        f.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | '/' | ',' | '-' | '?'))
    });
    if fields.len() != 5 || !ok_chars {
        return Err(format!(
            "{s:?} is not a cron schedule (five fields: minute hour day month weekday, e.g. \"*/15 * * * *\")"
        ));
    }
    Ok(())
}

pub fn validate_pool(spec: &RecorderPoolSpec) -> Vec<FieldError> {
    let mut errors = vec![];
    match (&spec.storage.s3, &spec.storage.local) {
        (Some(_), Some(_)) => errors.push(err(
            "spec.storage",
            "set exactly one of s3 or local, not both",
        )),
        (None, None) => errors.push(err("spec.storage", "set one of s3 or local")),
        _ => {}
    }
    for (path, e) in crate::netpolicy::validate(&spec.camera_networks) {
        errors.push(err(&path, e.to_string()));
    }
    if spec.lease.renew_seconds >= spec.lease.duration_seconds {
        errors.push(err(
            "spec.lease.renewSeconds",
            format!(
                "must be shorter than durationSeconds ({}), or every recorder looks dead",
                spec.lease.duration_seconds
            ),
        ));
    }
    errors
}

/// The pool's audit settings. Refused by the webhook like the rest; the reconciler only skips
/// the audit CronJob (reported in the pool's `WorkloadApplied` condition), since a bad audit
/// schedule must not stop recording.
pub fn validate_pool_audit(spec: &RecorderPoolSpec) -> Vec<FieldError> {
    match cron_schedule(&spec.audit.schedule) {
        Ok(()) => vec![],
        Err(m) => vec![err("spec.audit.schedule", m)],
    }
}

pub fn validate_backfill(spec: &BackfillSpec) -> Vec<FieldError> {
    let mut errors = vec![];
    if spec.window.end <= spec.window.start {
        errors.push(err(
            "spec.window",
            format!(
                "end ({}) must be after start ({})",
                spec.window.end.to_rfc3339(),
                spec.window.start.to_rfc3339()
            ),
        ));
    }
    errors
}

/// A manual recording or external event window: `end` after `start`, at most 24 h long.
pub fn recording_window(w: &crate::RecordingWindow) -> Result<(), String> {
    let len = (w.end - w.start).num_seconds();
    if w.end <= w.start {
        return Err("end must be after start".into());
    }
    if len > crate::camera::MAX_WINDOW_SECONDS {
        return Err(format!(
            "window of {len} s is longer than {} s",
            crate::camera::MAX_WINDOW_SECONDS
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;

    fn camera(url: &str) -> CameraSpec {
        CameraSpec {
            source: CameraSource {
                url: url.into(),
                transport: RtspTransport::Tcp,
            },
            credentials_secret_ref: None,
            expected_bitrate_kbps: 4000,
            pool: "default".into(),
            recording: RecordingSpec::default(),
            retention: RetentionSpec::default(),
            edge_storage: None,
            auto_backfill: true,
            site: None,
        }
    }

    #[test]
    fn camera_url_scheme_and_credentials() {
        assert!(validate_camera(&camera("rtsp://10.0.0.5:554/stream1")).is_empty());
        assert!(validate_camera(&camera("rtsps://cam.example/live")).is_empty());
        let e = validate_camera(&camera("http://cam/live"));
        assert_eq!(e.len(), 1);
        assert!(e[0].message.contains("rtsp or rtsps"), "{}", e[0]);
        let e = validate_camera(&camera("rtsp://admin:secret@cam/live"));
        assert!(e[0].message.contains("credentials"));
        // The error must not echo the password back.
        assert!(!describe(&e).contains("secret"));
    }

    #[test]
    fn credentials_in_query_strings_are_refused_everywhere() {
        let e = validate_camera(&camera("rtsp://cam/live?user=admin&Password=hunter2"));
        assert_eq!(e.len(), 1);
        assert!(e[0].message.contains("credentials"), "{}", e[0]);
        assert!(!describe(&e).contains("hunter2"));
        let mut c = camera("rtsp://cam/live");
        c.edge_storage = Some(EdgeStorage {
            onvif: Some(OnvifEdgeStorage {
                device_url: "http://cam/onvif/device_service?TOKEN=abc".into(),
                recording_token: None,
                tls: None,
            }),
            rtsp_playback: None,
        });
        assert_eq!(
            validate_camera(&c)[0].path,
            "spec.edgeStorage.onvif.deviceUrl"
        );
        c.edge_storage = Some(EdgeStorage {
            onvif: None,
            rtsp_playback: Some(RtspPlaybackEdgeStorage {
                url_template: "rtsp://cam/pb?starttime={start}&endtime={end}&pwd=x".into(),
                time_format: PlaybackTimeFormat::Hikvision,
            }),
        });
        let e = validate_camera(&c);
        assert_eq!(e[0].path, "spec.edgeStorage.rtspPlayback.urlTemplate");
        assert!(e[0].message.contains("credentials"));
    }

    #[test]
    fn time_zones_come_from_the_iana_database() {
        let mut c = camera("rtsp://cam/live");
        for ok in ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires"] {
            c.recording.time_zone = Some(ok.into());
            assert!(validate_camera(&c).is_empty(), "{ok}");
        }
        for bad in ["Mars/Olympus_Mons", "Europe/Berlinn", "+02:00", ""] {
            c.recording.time_zone = Some(bad.into());
            let e = validate_camera(&c);
            assert_eq!(e.len(), 1, "{bad}");
            assert_eq!(e[0].path, "spec.recording.timeZone");
        }
        // A huge value is refused, and not echoed whole.
        c.recording.time_zone = Some("x".repeat(300_000));
        assert!(describe(&validate_camera(&c)).len() < 300);
    }

    #[test]
    fn pool_camera_networks_must_be_cidrs() {
        let mut p: RecorderPoolSpec = serde_json::from_value(serde_json::json!({
            "replicas": 1, "capacityKbps": 1000,
            "storage": {"local": {"path": "/x"}},
            "cameraNetworks": {"allow": ["10.0.0.0/8", "192.168.1.0/24"], "deny": ["10.9.0.0/16"]}
        }))
        .unwrap();
        assert!(validate_pool(&p).is_empty());
        p.camera_networks.allow.push("cameras".into());
        assert_eq!(validate_pool(&p)[0].path, "spec.cameraNetworks.allow[2]");
    }

    #[test]
    fn camera_schedule_windows() {
        let mut c = camera("rtsp://cam/live");
        c.recording.mode = RecordingMode::Scheduled;
        assert!(describe(&validate_camera(&c)).contains("at least one window"));
        c.recording.schedule.push(ScheduleWindow {
            days: vec![Weekday::Mon],
            start: "18:00".into(),
            end: "08:00".into(),
        });
        assert!(describe(&validate_camera(&c)).contains("end 08:00 must be after start 18:00"));
        c.recording.schedule[0].end = "24:00".into();
        assert!(validate_camera(&c).is_empty());
    }

    #[test]
    fn camera_edge_storage_exactly_one() {
        let mut c = camera("rtsp://cam/live");
        c.edge_storage = Some(EdgeStorage {
            onvif: None,
            rtsp_playback: None,
        });
        assert_eq!(validate_camera(&c).len(), 1);
        c.edge_storage = Some(EdgeStorage {
            onvif: Some(OnvifEdgeStorage {
                device_url: "http://cam/onvif".into(),
                recording_token: None,
                tls: None,
            }),
            rtsp_playback: None,
        });
        assert!(validate_camera(&c).is_empty());
    }

    #[test]
    fn onvif_tls_trusts_a_ca_or_skips_verification_not_both() {
        let mut c = camera("rtsp://cam/live");
        let with_tls = |tls: OnvifTls| {
            Some(EdgeStorage {
                onvif: Some(OnvifEdgeStorage {
                    device_url: "https://cam/onvif/device_service".into(),
                    recording_token: None,
                    tls: Some(tls),
                }),
                rtsp_playback: None,
            })
        };
        let ca = SecretKeyRef {
            name: "cam-ca".into(),
            key: None,
        };
        c.edge_storage = with_tls(OnvifTls {
            ca_secret_ref: Some(ca.clone()),
            insecure_skip_verify: false,
        });
        assert!(validate_camera(&c).is_empty());
        c.edge_storage = with_tls(OnvifTls {
            ca_secret_ref: None,
            insecure_skip_verify: true,
        });
        assert!(validate_camera(&c).is_empty());
        c.edge_storage = with_tls(OnvifTls {
            ca_secret_ref: Some(ca),
            insecure_skip_verify: true,
        });
        assert!(describe(&validate_camera(&c)).contains("not both"));
    }

    #[test]
    fn backfill_window_must_end_after_start() {
        let t = chrono::Utc::now();
        let ok = BackfillSpec {
            camera: "c".into(),
            window: TimeWindow {
                start: t,
                end: t + chrono::Duration::seconds(1),
            },
            reason: BackfillReason::Manual,
        };
        assert!(validate_backfill(&ok).is_empty());
        let bad = BackfillSpec {
            window: TimeWindow { start: t, end: t },
            ..ok.clone()
        };
        assert!(describe(&validate_backfill(&bad)).contains("must be after start"));
    }

    #[test]
    fn audit_cron_schedules() {
        for ok in [
            "*/15 * * * *",
            "17 * * * *",
            "0 8-18/2 * * MON-FRI",
            "@hourly",
        ] {
            assert!(cron_schedule(ok).is_ok(), "{ok}");
        }
        for bad in [
            "*/15 * * *",
            "every 15 minutes",
            "* * * * * *",
            "@",
            "0 0 * * 1;rm",
        ] {
            assert!(cron_schedule(bad).is_err(), "{bad}");
        }
    }
}
