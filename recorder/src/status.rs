//! What each camera task is doing, for `/status`, the Camera status patches and logs.
//!
//! Camera tasks write here; readers take snapshots. Nothing in a report is secret: URLs are
//! stored redacted and error texts scrubbed before they get here.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

use vigil_store::gaps::GapRecord;
use vigil_store::layout::CameraId;

/// Recent gaps kept per camera in memory (all of them are in the store).
const RECENT_GAPS: usize = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CameraState {
    /// Connecting, or waiting for the first keyframe.
    Connecting,
    /// Footage is flowing.
    Recording,
    /// The stream is lost; waiting before the next attempt.
    Reconnecting,
    /// The camera's sessions kept exceeding the receive limits; not contacted for a while.
    Quarantined,
    Stopped,
}

impl CameraState {
    pub fn as_str(self) -> &'static str {
        match self {
            CameraState::Connecting => "Connecting",
            CameraState::Recording => "Recording",
            CameraState::Reconnecting => "Reconnecting",
            CameraState::Quarantined => "Quarantined",
            CameraState::Stopped => "Stopped",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CameraReport {
    pub namespace: String,
    pub camera: String,
    /// Redacted.
    pub url: String,
    pub state: CameraState,
    /// Unix ms of the last state change.
    pub state_since_ms: i64,
    pub codec: Option<String>,
    pub audio: Option<String>,
    pub bitrate_kbps: Option<u32>,
    pub last_segment_end_ms: Option<i64>,
    /// Start of the first segment this recorder wrote for the camera.
    pub first_segment_start_ms: Option<i64>,
    /// Start of the first footage this recorder has on its disk for the camera (its first
    /// fragment, from a keyframe, fsync'd): when a planned move may let the old recorder go.
    pub first_footage_ms: Option<i64>,
    pub segments: u64,
    pub sessions: u64,
    pub reconnects: u64,
    /// Scrubbed.
    pub last_error: Option<String>,
    /// The last attempt was refused by the address policy (no connection was made).
    pub address_refused: bool,
    /// Start of the interval without footage that is still open.
    pub open_gap_since_ms: Option<i64>,
    pub gaps: Vec<GapRecord>,
    /// `Event` mode: the event subscription.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_source: Option<crate::event_source::EventSourceReport>,
    /// Gaps not yet reported to the Camera's status (Kubernetes mode).
    #[serde(skip)]
    pub unreported_gaps: Vec<GapRecord>,
}

impl CameraReport {
    fn new(id: &CameraId, url: String) -> Self {
        CameraReport {
            namespace: id.namespace.clone(),
            camera: id.name.clone(),
            url,
            state: CameraState::Connecting,
            state_since_ms: now_ms(),
            codec: None,
            audio: None,
            bitrate_kbps: None,
            last_segment_end_ms: None,
            first_segment_start_ms: None,
            first_footage_ms: None,
            segments: 0,
            sessions: 0,
            reconnects: 0,
            last_error: None,
            address_refused: false,
            open_gap_since_ms: None,
            gaps: Vec::new(),
            event_source: None,
            unreported_gaps: Vec::new(),
        }
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Every camera of this recorder.
#[derive(Default)]
pub struct StatusBoard {
    cams: Mutex<BTreeMap<CameraId, CameraReport>>,
}

impl StatusBoard {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<CameraId, CameraReport>> {
        self.cams.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, id: &CameraId, redacted_url: String) {
        self.lock()
            .entry(id.clone())
            .or_insert_with(|| CameraReport::new(id, redacted_url));
    }

    pub fn remove(&self, id: &CameraId) {
        self.lock().remove(id);
    }

    /// Applies `f` to the camera's report, if the camera is known.
    pub fn update(&self, id: &CameraId, f: impl FnOnce(&mut CameraReport)) {
        if let Some(r) = self.lock().get_mut(id) {
            f(r);
        }
    }

    pub fn set_state(&self, id: &CameraId, state: CameraState) {
        self.update(id, |r| {
            if r.state != state {
                r.state = state;
                r.state_since_ms = now_ms();
            }
        });
    }

    /// Remembers a gap (also for the Camera status).
    pub fn gap(&self, g: &GapRecord) {
        self.update(&g.camera_id(), |r| {
            r.gaps.push(g.clone());
            if r.gaps.len() > RECENT_GAPS {
                r.gaps.remove(0);
            }
            r.unreported_gaps.push(g.clone());
            if r.unreported_gaps.len() > RECENT_GAPS {
                r.unreported_gaps.remove(0);
            }
        });
    }

    pub fn snapshot(&self) -> Vec<CameraReport> {
        self.lock().values().cloned().collect()
    }

    pub fn get(&self, id: &CameraId) -> Option<CameraReport> {
        self.lock().get(id).cloned()
    }

    /// Hands the unreported gaps of a camera to the status reporter. If the patch fails, the
    /// reporter puts them back with `requeue_gaps`.
    pub fn take_unreported_gaps(&self, id: &CameraId) -> Vec<GapRecord> {
        let mut out = Vec::new();
        self.update(id, |r| out = std::mem::take(&mut r.unreported_gaps));
        out
    }

    pub fn requeue_gaps(&self, id: &CameraId, mut gaps: Vec<GapRecord>) {
        self.update(id, |r| {
            gaps.append(&mut r.unreported_gaps);
            r.unreported_gaps = gaps;
        });
    }
}
