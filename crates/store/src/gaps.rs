//! Intervals without footage: arithmetic and the JSON record written to the store.
//!
//! A gap runs from the end of the last frame recorded (or from when the recorder became
//! responsible for the camera) to the first frame of the next session, both on the timelines
//! that name the segments, so gaps and segments tile a camera's time line together.

use serde::{Deserialize, Serialize};

use crate::layout::{CameraId, GapKey};

/// Why footage is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GapReason {
    /// From the moment the recorder took the camera over until its first frame.
    Startup,
    /// The recorder process restarted; from the last frame it had saved to the first new one.
    RecorderRestart,
    /// The stream broke (camera reboot, network, stall) until footage came back.
    StreamLost,
    /// Recorded footage was dropped from the full local buffer during a store outage.
    BufferOverflow,
    /// The recorder stopped recording the camera while no footage was flowing.
    Stopped,
    /// The camera's clock and the receipt times drifted apart (an encoder falling behind, a
    /// clock jump) and the timeline was re-anchored forward: the time stepped over has no
    /// footage on the timeline (the frames received are stored after the step).
    TimelineStep,
}

pub const ALL_REASONS: [GapReason; 6] = [
    GapReason::Startup,
    GapReason::RecorderRestart,
    GapReason::StreamLost,
    GapReason::BufferOverflow,
    GapReason::Stopped,
    GapReason::TimelineStep,
];

impl GapReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Startup => "startup",
            GapReason::RecorderRestart => "recorder-restart",
            GapReason::StreamLost => "stream-lost",
            GapReason::BufferOverflow => "buffer-overflow",
            GapReason::Stopped => "stopped",
            GapReason::TimelineStep => "timeline-step",
        }
    }
}

/// The JSON object stored at `<prefix>/<ns>/<camera>/gaps/<startMs>-<endMs>.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GapRecord {
    pub namespace: String,
    pub camera: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// RFC 3339 forms of the same instants, for people reading the bucket.
    pub start: String,
    pub end: String,
    pub seconds: f64,
    pub reason: GapReason,
    /// The recorder that saw the gap (pod name or host name).
    pub recorder: String,
    /// Bytes of footage dropped (buffer overflow only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_bytes: Option<u64>,
}

impl GapRecord {
    pub fn new(
        camera: &CameraId,
        start_ms: i64,
        end_ms: i64,
        reason: GapReason,
        recorder: &str,
    ) -> Self {
        GapRecord {
            namespace: camera.namespace.clone(),
            camera: camera.name.clone(),
            start_ms,
            end_ms,
            start: rfc3339(start_ms),
            end: rfc3339(end_ms),
            seconds: (end_ms - start_ms) as f64 / 1000.0,
            reason,
            recorder: recorder.to_string(),
            dropped_bytes: None,
        }
    }

    pub fn camera_id(&self) -> CameraId {
        CameraId {
            namespace: self.namespace.clone(),
            name: self.camera.clone(),
        }
    }

    pub fn key(&self) -> Option<GapKey> {
        GapKey::new(self.camera_id(), self.start_ms, self.end_ms).ok()
    }
}

pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Tracks, per camera, where the current interval without footage began.
#[derive(Clone, Debug)]
pub struct GapTracker {
    open_since: Option<(i64, GapReason)>,
    last_end_ms: Option<i64>,
}

/// A closed gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub start_ms: i64,
    pub end_ms: i64,
    pub reason: GapReason,
}

impl Gap {
    pub fn seconds(&self) -> f64 {
        (self.end_ms - self.start_ms) as f64 / 1000.0
    }
}

impl GapTracker {
    /// The recorder became responsible for the camera at `since_ms` (startup), or knows it
    /// saved footage up to `since_ms` before a restart.
    pub fn new(since_ms: i64, reason: GapReason) -> Self {
        GapTracker {
            open_since: Some((since_ms, reason)),
            last_end_ms: None,
        }
    }

    /// Footage resumed at `start_ms`. Returns the gap it closes, if any. A new session that
    /// starts before the previous one ended (clock estimation) closes no gap.
    pub fn started(&mut self, start_ms: i64) -> Option<Gap> {
        self.open_since.take().and_then(|(since, reason)| {
            (start_ms > since).then_some(Gap {
                start_ms: since,
                end_ms: start_ms,
                reason,
            })
        })
    }

    /// Footage up to `end_ms` is saved.
    pub fn saved_until(&mut self, end_ms: i64) {
        self.last_end_ms = Some(self.last_end_ms.map_or(end_ms, |e| e.max(end_ms)));
    }

    /// A segment `[start_ms, end_ms)` was recorded: `started` then `saved_until`.
    pub fn footage(&mut self, start_ms: i64, end_ms: i64) -> Option<Gap> {
        let gap = self.started(start_ms);
        self.saved_until(end_ms);
        gap
    }

    /// The stream was lost; the gap starts at the end of the last recorded frame, or at
    /// `now_ms` if this session recorded nothing and no gap is open yet.
    pub fn lost(&mut self, now_ms: i64) {
        if self.open_since.is_none() {
            let since = self.last_end_ms.unwrap_or(now_ms);
            self.open_since = Some((since, GapReason::StreamLost));
        }
    }

    /// Where the open gap began, if footage is not flowing.
    pub fn open_since(&self) -> Option<(i64, GapReason)> {
        self.open_since
    }

    /// The recorder stops recording the camera at `now_ms`: an open gap is closed there.
    pub fn stop(&mut self, now_ms: i64) -> Option<Gap> {
        self.open_since.take().and_then(|(since, reason)| {
            (now_ms > since).then_some(Gap {
                start_ms: since,
                end_ms: now_ms,
                reason,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn startup_then_loss_then_recovery() {
        let mut t = GapTracker::new(1000, GapReason::Startup);
        assert_eq!(
            t.footage(1800, 11_800),
            Some(Gap {
                start_ms: 1000,
                end_ms: 1800,
                reason: GapReason::Startup
            })
        );
        assert_eq!(t.footage(11_800, 21_800), None);
        t.lost(25_000);
        t.lost(26_000); // repeated failures keep the original start
        assert_eq!(t.open_since(), Some((21_800, GapReason::StreamLost)));
        assert_eq!(
            t.footage(31_840, 41_840),
            Some(Gap {
                start_ms: 21_800,
                end_ms: 31_840,
                reason: GapReason::StreamLost
            })
        );
        assert_eq!(t.stop(50_000), None);
    }

    #[test]
    fn record_json_shape() {
        let c = CameraId::new("ns", "cam").unwrap();
        let r = GapRecord::new(
            &c,
            1_700_000_000_000,
            1_700_000_012_345,
            GapReason::StreamLost,
            "rec-0",
        );
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["reason"], "stream-lost");
        assert_eq!(j["start"], "2023-11-14T22:13:20.000Z");
        assert_eq!(j["seconds"], 12.345);
        assert_eq!(
            r.key().unwrap().relative(),
            "ns/cam/gaps/1700000000000-1700000012345.json"
        );
        let back: GapRecord = serde_json::from_value(j).unwrap();
        assert_eq!(back, r);
    }

    proptest! {
        /// Footage plus the gaps reported tile the time from the start to the last footage.
        #[test]
        fn gaps_and_footage_tile(sessions in proptest::collection::vec((0i64..100_000, 1i64..100_000), 1..30)) {
            let mut t = GapTracker::new(0, GapReason::Startup);
            let mut now = 0i64;
            let mut covered = Vec::new();
            for (pause, len) in sessions {
                let start = now + pause;
                let end = start + len;
                if let Some(g) = t.footage(start, end) {
                    covered.push((g.start_ms, g.end_ms));
                }
                covered.push((start, end));
                t.lost(end + 5_000);
                now = end;
            }
            let mut at = 0;
            for (s, e) in covered {
                prop_assert_eq!(s, at);
                at = e;
            }
        }
    }
}
