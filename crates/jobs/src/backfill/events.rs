//! Events of the backfill window recovered from the camera's own log (ONVIF Profile G
//! `FindEvents`): the motion and digital-input intervals the camera saw while the recorder
//! did not, written as event records (`vigil_store::events`) like the recorder's.
//!
//! No duplicates: what the store already holds of the window's camera events (motion and
//! digital-input records, whoever wrote them) is subtracted first, and the rest is written
//! under keys that follow from the camera's times alone, so a second run finds everything
//! covered and writes nothing. A camera without the event search is logged and counted; the
//! backfill goes on.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tracing::{info, warn};

use crate::error::Result;
use vigil_media::onvif::{EdgeInterval, edge_intervals};
use vigil_media::onvif_events::Topic;
use vigil_store::events::{self, EventKey, EventRecord, EventType, MAX_EVENT_RECORD_MS};
use vigil_store::intervals::{Interval, missing};
use vigil_store::layout::CameraId;

/// Who the records say wrote them.
pub const WRITER: &str = "backfill";

/// One record to write: its key and whether the event's end is in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub key: EventKey,
    pub source: Option<String>,
    pub complete: bool,
}

fn kind(t: Topic) -> EventType {
    match t {
        Topic::Motion => EventType::Motion,
        Topic::DigitalInput => EventType::DigitalInput,
    }
}

/// Pure: the records to write for the camera's `found` intervals given the camera-event
/// intervals the store already has (`existing`). Pieces of at most `tolerance_ms` left after
/// the subtraction (clock differences between the camera's log and what the recorder saw) are
/// dropped; what remains is cut into records of at most [`MAX_EVENT_RECORD_MS`] from its
/// start (only the last piece of a completed event is `complete`).
pub fn plan(
    camera: &CameraId,
    found: &[EdgeInterval],
    existing: &[Interval],
    tolerance_ms: i64,
) -> Vec<Planned> {
    let mut out: Vec<Planned> = Vec::new();
    for iv in found {
        let pieces = missing(
            Interval::new(iv.start_ms, iv.end_ms),
            existing,
            tolerance_ms,
        );
        let n = pieces.len();
        for (i, p) in pieces.into_iter().enumerate() {
            let mut s = p.start;
            while s < p.end {
                let e = (s + MAX_EVENT_RECORD_MS).min(p.end);
                let Ok(key) = EventKey::new(camera.clone(), s, e, kind(iv.topic)) else {
                    break;
                };
                // The camera's end is in the last piece only if nothing covered it.
                let last = i + 1 == n && e == iv.end_ms;
                if !out.iter().any(|o| o.key == key) {
                    out.push(Planned {
                        key,
                        source: iv.source.clone(),
                        complete: last && iv.complete,
                    });
                }
                s = e;
            }
        }
    }
    out
}

/// What the event recovery did (part of the backfill report).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Intervals the camera reported in the window.
    pub found: usize,
    /// Event records written.
    pub written: usize,
    /// The camera had more events than one search takes.
    pub truncated: bool,
}

/// Writes the records for `found` (see [`plan`]). Each record is one PUT, whole or absent.
pub async fn write(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    camera: &CameraId,
    window: Interval,
    found: &[EdgeInterval],
    tolerance_ms: i64,
) -> Result<usize> {
    let have = events::query(
        store.as_ref(),
        prefix,
        camera,
        window.start,
        window.end,
        None,
        usize::MAX,
    )
    .await?;
    let existing: Vec<Interval> = have
        .iter()
        .filter(|e| matches!(e.kind, EventType::Motion | EventType::DigitalInput))
        .map(|e| Interval::new(e.start_ms, e.end_ms))
        .collect();
    let todo = plan(camera, found, &existing, tolerance_ms);
    let mut written = 0;
    for p in &todo {
        let body = serde_json::to_vec(&EventRecord::new(
            &p.key,
            p.source.clone(),
            p.complete,
            WRITER,
        ))?;
        let loc = Path::from(p.key.to_key(prefix.trim_matches('/')));
        store.put(&loc, PutPayload::from(Bytes::from(body))).await?;
        written += 1;
    }
    Ok(written)
}

/// Pure: the camera's state changes as intervals inside the window.
pub fn intervals(search: &vigil_media::onvif::EventSearch, window: Interval) -> Vec<EdgeInterval> {
    edge_intervals(&search.events, window.start, window.end)
}

/// Logs what was found and written.
pub fn log_outcome(o: &Outcome, camera: &CameraId) {
    if o.truncated {
        warn!(camera = %camera, found = o.found, "the camera had more events than one search takes");
    }
    info!(camera = %camera, found = o.found, written = o.written, "backfill: events recovered from the camera");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam() -> CameraId {
        CameraId::new("site", "door").unwrap()
    }

    fn edge(topic: Topic, s: i64, e: i64, complete: bool) -> EdgeInterval {
        EdgeInterval {
            topic,
            source: Some("src".into()),
            start_ms: s,
            end_ms: e,
            complete,
        }
    }

    fn keys(p: &[Planned]) -> Vec<(i64, i64, EventType, bool)> {
        p.iter()
            .map(|p| (p.key.start_ms, p.key.end_ms, p.key.kind, p.complete))
            .collect()
    }

    #[test]
    fn what_the_recorder_wrote_is_not_written_again() {
        let found = [
            edge(Topic::Motion, 10_000, 20_000, true),
            edge(Topic::DigitalInput, 30_000, 40_000, true),
        ];
        // Nothing in the store: both, complete.
        assert_eq!(
            keys(&plan(&cam(), &found, &[], 100)),
            [
                (10_000, 20_000, EventType::Motion, true),
                (30_000, 40_000, EventType::DigitalInput, true)
            ]
        );
        // The recorder saw the motion (its clock 40 ms off) and the input's start before it
        // went down: only the rest of the input is written, and it keeps its end.
        let existing = [Interval::new(10_040, 20_030), Interval::new(29_990, 33_000)];
        assert_eq!(
            keys(&plan(&cam(), &found, &existing, 100)),
            [(33_000, 40_000, EventType::DigitalInput, true)]
        );
        // A second run: what the first wrote covers everything.
        let first: Vec<Interval> = plan(&cam(), &found, &[], 100)
            .iter()
            .map(|p| Interval::new(p.key.start_ms, p.key.end_ms))
            .collect();
        assert!(plan(&cam(), &found, &first, 100).is_empty());
    }

    #[test]
    fn long_events_are_cut_into_records() {
        let found = [edge(Topic::Motion, 0, 2 * MAX_EVENT_RECORD_MS + 5, false)];
        assert_eq!(
            keys(&plan(&cam(), &found, &[], 100)),
            [
                (0, MAX_EVENT_RECORD_MS, EventType::Motion, false),
                (
                    MAX_EVENT_RECORD_MS,
                    2 * MAX_EVENT_RECORD_MS,
                    EventType::Motion,
                    false
                ),
                (
                    2 * MAX_EVENT_RECORD_MS,
                    2 * MAX_EVENT_RECORD_MS + 5,
                    EventType::Motion,
                    false
                ),
            ]
        );
        let done = [edge(Topic::Motion, 0, MAX_EVENT_RECORD_MS + 1000, true)];
        assert_eq!(
            keys(&plan(&cam(), &done, &[], 100)),
            [
                (0, MAX_EVENT_RECORD_MS, EventType::Motion, false),
                (
                    MAX_EVENT_RECORD_MS,
                    MAX_EVENT_RECORD_MS + 1000,
                    EventType::Motion,
                    true
                ),
            ]
        );
    }
}
