//! Manual recording windows and events posted by other systems (issue 17), as they reach a
//! recorder in Kubernetes mode: through the Camera object (`spec.recording.manual`,
//! `spec.recording.externalEvent`), which the access point patches and the recorder's watch
//! delivers. No recorder address is needed, RBAC on the access point decides who may write,
//! and a recorder that takes the camera over (failover, planned move) sees the same window.
//!
//! One task per camera (beside its camera task) follows the camera's windows: it sends the
//! gate ([`crate::event_hook`]) a begin at a window's start and an end at its end, and writes
//! the window's event record (type `manual` or `external`) into the buffer when it ends or is
//! stopped early, like the event source does for ONVIF events. A window longer than one record
//! ([`MAX_EVENT_RECORD_MS`], 10 minutes) is checkpointed: each 10 minutes of it that have
//! passed are written at once (`complete: false`), so a recorder crash loses at most the last
//! 10 minutes of the window's record, and the keys (cut every 10 minutes from the window's
//! start) are the same whoever writes them, so a recorder taking over rewrites, never
//! duplicates. The state machine ([`Tracker`]) is pure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{Instrument, info, info_span};

use crate::camera::Ctx;
use crate::event_source::{Trigger, TriggerSource, write_record};
use crate::status::now_ms;
use vigil_store::events::{EventType, MAX_EVENT_RECORD_MS};
use vigil_store::layout::CameraId;

/// How long after its end a window first seen is still recorded.
pub const LATE_MS: i64 = 60_000;

/// A window in UTC milliseconds and who asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
    pub by: Option<String>,
}

impl Window {
    pub fn of(w: &vigil_api::RecordingWindow) -> Window {
        Window {
            start_ms: w.start.timestamp_millis(),
            end_ms: w.end.timestamp_millis(),
            by: w.by.clone(),
        }
    }
}

/// A camera's windows as its Camera object has them now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CameraWindows {
    pub manual: Option<Window>,
    pub external: Option<Window>,
}

/// Every held camera's windows (published by the Camera watch).
pub type WindowBoard = BTreeMap<CameraId, CameraWindows>;

/// What following a window asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open the gate from this time (UTC ms).
    Begin(i64),
    /// This source's part ends at this time.
    End(i64),
    /// Write the event record.
    Record {
        start_ms: i64,
        end_ms: i64,
        by: Option<String>,
        complete: bool,
    },
}

/// Follows one kind of window (manual or external) of one camera. Pure.
#[derive(Debug, Default)]
pub struct Tracker {
    cur: Option<Window>,
    began: bool,
    done: bool,
    /// Where the part of the running window not yet in a record starts.
    recorded_to: i64,
}

impl Tracker {
    /// `latest` is the window the Camera has now (`None`: none).
    pub fn step(&mut self, latest: Option<&Window>, now: i64, out: &mut Vec<Action>) {
        if latest != self.cur.as_ref() {
            match (&mut self.cur, latest) {
                // Extended or stopped early: the same window with another end.
                (Some(c), Some(l)) if c.start_ms == l.start_ms && !self.done => {
                    *c = l.clone();
                }
                _ => {
                    self.finish(now, out);
                    self.cur = latest.cloned();
                    self.began = false;
                    self.done = false;
                }
            }
        }
        let Some(w) = &self.cur else { return };
        if !self.began && !self.done && now >= w.start_ms {
            // A window that ended moments ago (a short external event, the watch's latency) is
            // still recorded: the pre-event buffer holds its time.
            if now < w.end_ms + LATE_MS {
                out.push(Action::Begin(w.start_ms));
                self.began = true;
                self.recorded_to = w.start_ms;
            } else {
                // Over before this recorder saw it (another recorder held the camera).
                self.done = true;
            }
        }
        // Checkpoints: every whole record's worth of the window that has passed (and is not
        // its last part).
        while self.began
            && !self.done
            && now >= self.recorded_to + MAX_EVENT_RECORD_MS
            && self.recorded_to + MAX_EVENT_RECORD_MS < w.end_ms
        {
            out.push(Action::Record {
                start_ms: self.recorded_to,
                end_ms: self.recorded_to + MAX_EVENT_RECORD_MS,
                by: w.by.clone(),
                complete: false,
            });
            self.recorded_to += MAX_EVENT_RECORD_MS;
        }
        if self.began && !self.done && now >= w.end_ms {
            out.push(Action::End(w.end_ms));
            out.push(Action::Record {
                start_ms: self.recorded_to,
                end_ms: w.end_ms.max(self.recorded_to + 1),
                by: w.by.clone(),
                complete: true,
            });
            self.done = true;
        }
    }

    /// The running window was removed or replaced by another: it ends now (at its end if
    /// that came first).
    fn finish(&mut self, now: i64, out: &mut Vec<Action>) {
        if let Some(w) = &self.cur
            && self.began
            && !self.done
        {
            let end = now.min(w.end_ms).max(w.start_ms + 1);
            out.push(Action::End(end));
            out.push(Action::Record {
                start_ms: self.recorded_to,
                end_ms: end.max(self.recorded_to + 1),
                by: w.by.clone(),
                complete: true,
            });
            self.done = true;
        }
    }

    /// The recorder stops holding the camera: the record of a running window so far.
    pub fn stop(&mut self, now: i64, out: &mut Vec<Action>) {
        if let Some(w) = &self.cur
            && self.began
            && !self.done
        {
            let end = now.min(w.end_ms).max(w.start_ms + 1);
            out.push(Action::Record {
                start_ms: self.recorded_to,
                end_ms: end.max(self.recorded_to + 1),
                by: w.by.clone(),
                complete: end >= w.end_ms,
            });
            self.done = true;
        }
    }

    /// When to look again (UTC ms) without a change of the window.
    pub fn next_wake(&self) -> Option<i64> {
        let w = self.cur.as_ref()?;
        match (self.began, self.done) {
            (false, false) => Some(w.start_ms),
            (true, false) => Some(w.end_ms.min(self.recorded_to + MAX_EVENT_RECORD_MS)),
            _ => None,
        }
    }
}

/// Starts following `id`'s windows; triggers go to the camera task's gate.
pub fn spawn(
    id: CameraId,
    mut board: watch::Receiver<WindowBoard>,
    ctx: Arc<Ctx>,
    mut stop: watch::Receiver<bool>,
    tx: mpsc::Sender<Trigger>,
) {
    let span = info_span!("windows", camera = %id);
    tokio::spawn(
        async move {
            let mut manual = Tracker::default();
            let mut external = Tracker::default();
            let mut acts = Vec::new();
            loop {
                let w = board
                    .borrow_and_update()
                    .get(&id)
                    .cloned()
                    .unwrap_or_default();
                let now = now_ms();
                manual.step(w.manual.as_ref(), now, &mut acts);
                perform(&id, &ctx, &tx, TriggerSource::Manual, &mut acts).await;
                external.step(w.external.as_ref(), now, &mut acts);
                perform(&id, &ctx, &tx, TriggerSource::External, &mut acts).await;
                let wake = [manual.next_wake(), external.next_wake()]
                    .into_iter()
                    .flatten()
                    .min();
                let sleep = wake.map_or(Duration::from_secs(3600), |t| {
                    Duration::from_millis((t - now_ms()).clamp(0, 3_600_000) as u64 + 2)
                });
                tokio::select! {
                    r = board.changed() => if r.is_err() { break },
                    _ = tokio::time::sleep(sleep) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            let now = now_ms();
            manual.stop(now, &mut acts);
            perform(&id, &ctx, &tx, TriggerSource::Manual, &mut acts).await;
            external.stop(now, &mut acts);
            perform(&id, &ctx, &tx, TriggerSource::External, &mut acts).await;
        }
        .instrument(span),
    );
}

async fn perform(
    id: &CameraId,
    ctx: &Ctx,
    tx: &mpsc::Sender<Trigger>,
    source: TriggerSource,
    acts: &mut Vec<Action>,
) {
    let kind = match source {
        TriggerSource::External => EventType::External,
        _ => EventType::Manual,
    };
    for a in acts.drain(..) {
        match a {
            Action::Begin(at_ms) | Action::End(at_ms) => {
                let active = matches!(a, Action::Begin(_));
                info!(?source, at_ms, active, "window");
                // The camera task may be gone (stopping): nothing to open then.
                let _ = tx.try_send(Trigger {
                    at_ms,
                    active,
                    source,
                });
            }
            Action::Record {
                start_ms,
                end_ms,
                by,
                complete,
            } => write_record(ctx, id, start_ms, end_ms, kind, by, complete).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start_ms: i64, end_ms: i64) -> Window {
        Window {
            start_ms,
            end_ms,
            by: Some("alice".into()),
        }
    }

    fn rec(start_ms: i64, end_ms: i64, complete: bool) -> Action {
        Action::Record {
            start_ms,
            end_ms,
            by: Some("alice".into()),
            complete,
        }
    }

    #[test]
    fn a_window_begins_and_ends_once_with_one_record() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        t.step(Some(&w(100, 200)), 50, &mut out);
        assert!(out.is_empty());
        assert_eq!(t.next_wake(), Some(100));
        t.step(Some(&w(100, 200)), 120, &mut out);
        assert_eq!(out, [Action::Begin(100)]);
        assert_eq!(t.next_wake(), Some(200));
        out.clear();
        t.step(Some(&w(100, 200)), 150, &mut out);
        assert!(out.is_empty());
        t.step(Some(&w(100, 200)), 201, &mut out);
        assert_eq!(out, [Action::End(200), rec(100, 200, true)]);
        out.clear();
        t.step(Some(&w(100, 200)), 300, &mut out);
        t.stop(400, &mut out);
        assert!(out.is_empty());
        assert_eq!(t.next_wake(), None);
    }

    #[test]
    fn stopped_early_extended_and_removed() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        t.step(Some(&w(100, 1000)), 150, &mut out);
        // Extended: no new begin.
        t.step(Some(&w(100, 2000)), 160, &mut out);
        assert_eq!(out, [Action::Begin(100)]);
        out.clear();
        // Stopped early: the end moved to the stop time.
        t.step(Some(&w(100, 300)), 300, &mut out);
        assert_eq!(out, [Action::End(300), rec(100, 300, true)]);
        out.clear();
        // A new window, then the field is removed while it runs.
        t.step(Some(&w(500, 900)), 500, &mut out);
        t.step(None, 600, &mut out);
        assert_eq!(
            out,
            [Action::Begin(500), Action::End(600), rec(500, 600, true)]
        );
    }

    #[test]
    fn a_long_window_is_checkpointed_every_record_length() {
        const M: i64 = MAX_EVENT_RECORD_MS;
        let mut t = Tracker::default();
        let mut out = Vec::new();
        // A 25-minute window from 1000.
        let win = w(1000, 1000 + 2 * M + 300_000);
        t.step(Some(&win), 1000, &mut out);
        assert_eq!(out, [Action::Begin(1000)]);
        assert_eq!(t.next_wake(), Some(1000 + M));
        out.clear();
        t.step(Some(&win), 1000 + M - 1, &mut out);
        assert!(out.is_empty());
        // Its first 10 minutes are written when they have passed, the next at 20 minutes.
        t.step(Some(&win), 1000 + M, &mut out);
        assert_eq!(out, [rec(1000, 1000 + M, false)]);
        assert_eq!(t.next_wake(), Some(1000 + 2 * M));
        out.clear();
        t.step(Some(&win), 1000 + 2 * M + 5, &mut out);
        assert_eq!(out, [rec(1000 + M, 1000 + 2 * M, false)]);
        // The last part is not a checkpoint: it is written at the end, complete.
        assert_eq!(t.next_wake(), Some(1000 + 2 * M + 300_000));
        out.clear();
        t.step(Some(&win), 1000 + 2 * M + 300_000, &mut out);
        assert_eq!(
            out,
            [
                Action::End(1000 + 2 * M + 300_000),
                rec(1000 + 2 * M, 1000 + 2 * M + 300_000, true)
            ]
        );
        // A recorder stopping during the window writes the part since the last checkpoint;
        // one seeing the window late (a take-over) catches up the passed checkpoints at once,
        // under the same keys.
        let mut t = Tracker::default();
        out.clear();
        t.step(Some(&win), 1000 + M + 10, &mut out);
        t.stop(1000 + M + 20, &mut out);
        assert_eq!(
            out,
            [
                Action::Begin(1000),
                rec(1000, 1000 + M, false),
                rec(1000 + M, 1000 + M + 20, false)
            ]
        );
        // Stopped early by the user after a checkpoint.
        let mut t = Tracker::default();
        out.clear();
        t.step(Some(&win), 1000 + M + 10, &mut out);
        t.step(Some(&w(1000, 1000 + M + 50)), 1000 + M + 50, &mut out);
        assert_eq!(
            out,
            [
                Action::Begin(1000),
                rec(1000, 1000 + M, false),
                Action::End(1000 + M + 50),
                rec(1000 + M, 1000 + M + 50, true)
            ]
        );
    }

    #[test]
    fn a_window_seen_after_it_ended_is_not_recorded_and_a_stop_is_incomplete() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        t.step(Some(&w(100, 200)), 200 + LATE_MS, &mut out);
        assert!(out.is_empty());
        assert_eq!(t.next_wake(), None);
        // Seen just after it ended: recorded whole.
        let mut t = Tracker::default();
        t.step(Some(&w(100, 200)), 900, &mut out);
        assert_eq!(
            out,
            [Action::Begin(100), Action::End(200), rec(100, 200, true)]
        );
        out.clear();
        let mut t = Tracker::default();
        t.step(Some(&w(100, 200)), 150, &mut out);
        t.stop(170, &mut out);
        assert_eq!(out, [Action::Begin(100), rec(100, 170, false)]);
    }
}
