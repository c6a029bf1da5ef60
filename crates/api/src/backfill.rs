use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, TimeWindow};

/// A window of one camera's footage to fetch from the camera's edge storage into the store.
/// Whoever finds a hole creates one ([`Backfill::for_hole`]): the recorder that takes a camera
/// over after a failover or restart, the recorder whose stream came back, the coverage audit. A
/// user can create one by hand to re-fetch a window.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "vigil.dev",
    version = "v1alpha1",
    kind = "Backfill",
    plural = "backfills",
    shortname = "bf",
    category = "vigil",
    namespaced,
    status = "BackfillStatus",
    printcolumn = r#"{"name":"Camera","type":"string","jsonPath":".spec.camera"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".spec.reason"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Progress","type":"string","jsonPath":".status.progress"}"#,
    printcolumn = r#"{"name":"Recovered s","type":"number","jsonPath":".status.secondsRecovered"}"#,
    printcolumn = r#"{"name":"Lost s","type":"number","jsonPath":".status.secondsLost"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BackfillSpec {
    /// Name of the Camera (same namespace).
    #[schemars(length(min = 1, max = 253))]
    pub camera: String,
    /// The window to fill. `end` must be after `start`.
    pub window: TimeWindow,
    /// Why the window is missing.
    #[serde(default)]
    pub reason: BackfillReason,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum BackfillReason {
    RecorderFailure,
    StreamLoss,
    Audit,
    #[default]
    Manual,
}

impl BackfillReason {
    pub fn as_str(self) -> &'static str {
        match self {
            BackfillReason::RecorderFailure => "RecorderFailure",
            BackfillReason::StreamLoss => "StreamLoss",
            BackfillReason::Audit => "Audit",
            BackfillReason::Manual => "Manual",
        }
    }
}

/// Characters of the camera name kept at the front of a hole's Backfill name.
const NAME_HEAD_CHARS: usize = 46;

/// The name of the Backfill for a hole `window` in `camera`'s footage: the camera's name (its
/// first 46 characters) and 16 hex digits of a hash of the camera and the window's start and end
/// in milliseconds. Whoever finds the same hole again gets the same name, so a second report is
/// a harmless AlreadyExists; two different holes (even starting in the same second) get
/// different names. At most 63 characters: the name is also a label value on the Job.
pub fn hole_backfill_name(camera: &str, window: &TimeWindow) -> String {
    // FNV-1a, written out so the name never changes with a library version.
    let key = format!(
        "{camera}/{}/{}",
        window.start.timestamp_millis(),
        window.end.timestamp_millis()
    );
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let head: String = camera.chars().take(NAME_HEAD_CHARS).collect();
    // A DNS name part must end with a letter or digit.
    format!("{}-{hash:016x}", head.trim_end_matches(['-', '.']))
}

impl Backfill {
    /// The Backfill for a hole `window` in `camera`'s footage found by a recorder or the audit,
    /// named by [`hole_backfill_name`] and labelled with the camera.
    pub fn for_hole(
        namespace: &str,
        camera: &str,
        window: TimeWindow,
        reason: BackfillReason,
    ) -> Backfill {
        let mut b = Backfill::new(
            &hole_backfill_name(camera, &window),
            BackfillSpec {
                camera: camera.to_string(),
                window,
                reason,
            },
        );
        b.metadata.namespace = Some(namespace.to_string());
        b.metadata.labels = Some(std::collections::BTreeMap::from([(
            crate::labels::CAMERA_LABEL.to_string(),
            camera.to_string(),
        )]));
        b
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BackfillPhase {
    /// Waiting for a slot (one backfill per camera, pool concurrency cap).
    Pending,
    Running,
    /// The whole window is in the store.
    Succeeded,
    /// Finished, but some seconds could not be recovered (listed in `stillMissing`).
    PartiallyRecovered,
    /// Nothing could be recovered (no edge storage, camera unreachable after all retries).
    Failed,
}

/// Progress and outcome of a backfill, honest to the second.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackfillStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackfillPhase>,
    /// The Job doing the work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub job_name: Option<String>,
    /// Seconds of the window missing from the store before the backfill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_missing_before: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_recovered: Option<f64>,
    /// Seconds still missing after the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_lost: Option<f64>,
    /// Intervals still missing after the last attempt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub still_missing: Vec<TimeWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Progress as text for `kubectl get`, e.g. `42%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub progress: Option<String>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Keyed by `type`, so the operator and a recorder can each apply their own conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"])
    )]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::ResourceExt;

    fn window(start_ms: i64, end_ms: i64) -> TimeWindow {
        TimeWindow {
            start: DateTime::from_timestamp_millis(start_ms).expect("start"),
            end: DateTime::from_timestamp_millis(end_ms).expect("end"),
        }
    }

    #[test]
    fn same_hole_same_name_and_holes_in_one_second_differ() {
        let w = window(1_700_000_000_100, 1_700_000_030_000);
        assert_eq!(
            hole_backfill_name("lobby", &w),
            hole_backfill_name("lobby", &w)
        );
        // Two holes starting in the same second: different names (the old
        // `<camera>-<start seconds>` collided and one was dropped).
        let later_start = window(1_700_000_000_900, 1_700_000_030_000);
        assert_ne!(
            hole_backfill_name("lobby", &w),
            hole_backfill_name("lobby", &later_start)
        );
        // Same start, another end: another hole.
        let other_end = window(1_700_000_000_100, 1_700_000_031_000);
        assert_ne!(
            hole_backfill_name("lobby", &w),
            hole_backfill_name("lobby", &other_end)
        );
        assert_ne!(
            hole_backfill_name("lobby", &w),
            hole_backfill_name("hall", &w)
        );
        assert!(hole_backfill_name("lobby", &w).starts_with("lobby-"));
    }

    #[test]
    fn names_are_dns_labels_of_at_most_63_characters() {
        let w = window(1_700_000_000_000, 1_700_000_001_000);
        let long = format!("{}-{}", "a".repeat(45), "b".repeat(200));
        for camera in [
            "x",
            "lobby",
            long.as_str(),
            "cam.floor-1.door",
            "a1234567890123456789012345678901234567890123-.b",
        ] {
            let name = hole_backfill_name(camera, &w);
            assert!(name.len() <= 63, "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'),
                "{name}"
            );
            assert!(!name.contains("-.") && !name.contains(".-"), "{name}");
            assert!(
                name.starts_with(|c: char| c.is_ascii_alphanumeric()),
                "{name}"
            );
        }
        let b = Backfill::for_hole("site", "lobby", w.clone(), BackfillReason::StreamLoss);
        assert_eq!(b.name_any(), hole_backfill_name("lobby", &w));
        assert_eq!(b.namespace().as_deref(), Some("site"));
        assert_eq!(b.spec.window, w);
        assert_eq!(
            b.labels()
                .get(crate::labels::CAMERA_LABEL)
                .map(String::as_str),
            Some("lobby")
        );
    }
}
