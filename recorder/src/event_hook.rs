//! The hook of `Event` mode into the recording path (`camera.rs`): frames go to the segmenter
//! through the camera's [`EventGate`], which the event source's triggers open and close. Without
//! `Event` mode frames go to the segmenter directly, as before. A camera in mode `Off` recorded
//! for a manual window (`CameraConfig::manual_only`) gets a gate without pre- or post-time, so
//! its footage is the window to within a GOP. The gate is open while any source (ONVIF, manual
//! window, external event) has an event in progress.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use vigil_config::CameraConfig;
use vigil_media::segmenter::{AudioIn, Discontinuity, Event, Segmenter, VideoIn};
use vigil_media::timeline::Timeline;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tracing::warn;

use crate::camera::Ctx;
use crate::event_gate::{EventGate, GateStats, Item, Out};
use crate::event_source::{self, Trigger};
use crate::metrics::CamLabels;
use crate::prebuf_spill::SpillStore;
use crate::windows;

/// The pre-event spill of a camera: its file and metrics (issue #17).
struct Spill {
    store: SpillStore,
    mem_bytes: usize,
    /// Logged the first error already (one line per camera task, the counter counts).
    logged: bool,
    memory: Gauge,
    spilled: Gauge,
    failures: Counter,
    dropped: Counter,
    /// The gate's counters already added to the metrics.
    seen: GateStats,
}

/// A camera's event state across its sessions.
pub struct Events {
    rx: mpsc::Receiver<Trigger>,
    /// Pre- and post-seconds of the gate; `None`: frames pass straight through (the triggers
    /// only count, e.g. a manual window of a continuously recorded camera).
    gate: Option<(u32, u32)>,
    /// Which sources have an event in progress (so a new session starts recording at once).
    active: [bool; 3],
    scratch: Vec<Out>,
    /// `Event` mode with a pre-event time: where the gate's older GOPs go.
    spill: Option<Spill>,
}

impl Events {
    /// The triggers of a camera: its ONVIF event source in `Event` mode, and (Kubernetes mode)
    /// its manual and external windows. `None` when there is neither.
    pub fn start(
        cfg: &CameraConfig,
        ctx: &Arc<Ctx>,
        stop: &watch::Receiver<bool>,
    ) -> Option<Events> {
        let gate = match (&cfg.events, cfg.manual_only) {
            (Some(m), _) => Some((m.pre_seconds, m.post_seconds)),
            (None, true) => Some((0, 0)),
            (None, false) => None,
        };
        if gate.is_none() && ctx.windows.is_none() {
            return None;
        }
        let (tx, rx) = mpsc::channel(64);
        if let Some(mode) = cfg.events.clone() {
            event_source::spawn(cfg.clone(), mode, ctx.clone(), stop.clone(), tx.clone());
        }
        if let Some(board) = &ctx.windows {
            windows::spawn(
                cfg.id.clone(),
                board.subscribe(),
                ctx.clone(),
                stop.clone(),
                tx,
            );
        }
        let spill = match gate {
            Some((pre, _)) if pre > 0 && ctx.settings.prebuffer_memory_bytes != usize::MAX => {
                let l = CamLabels::from(&cfg.id);
                let m = &ctx.metrics;
                Some(Spill {
                    store: SpillStore::new(&ctx.settings.buffer_dir, &cfg.id),
                    mem_bytes: ctx.settings.prebuffer_memory_bytes,
                    logged: false,
                    memory: m.prebuffer_memory_bytes.get_or_create(&l).clone(),
                    spilled: m.prebuffer_spilled_bytes.get_or_create(&l).clone(),
                    failures: m.prebuffer_spill_failures.get_or_create(&l).clone(),
                    dropped: m.prebuffer_dropped_bytes.get_or_create(&l).clone(),
                    seen: GateStats::default(),
                })
            }
            _ => None,
        };
        Some(Events {
            rx,
            gate,
            active: [false; 3],
            scratch: Vec::new(),
            spill,
        })
    }

    /// A session's gate (its buffer starts empty: a new session is a new timeline); `None`
    /// when frames pass straight through.
    pub fn gate(&mut self) -> Option<EventGate> {
        let (pre, post) = self.gate?;
        let bound = EventGate::bound_for(pre);
        Some(match &mut self.spill {
            Some(sp) => {
                sp.store.clear();
                sp.seen = GateStats::default();
                EventGate::with_spill(pre, post, bound, sp.mem_bytes)
            }
            None => EventGate::new(pre, post, bound),
        })
    }

    fn any_active(&self) -> bool {
        self.active.iter().any(|a| *a)
    }
}

/// One video frame into the segmenter, through the gate in `Event` mode.
pub fn push_video(
    events: Option<&mut Events>,
    gate: &mut Option<EventGate>,
    seg: &mut Segmenter,
    vtl: Option<&Timeline>,
    f: VideoIn,
    out: &mut Vec<Event>,
) -> Result<(), Discontinuity> {
    let Some(ev) = events else {
        return seg.push_video(f, out);
    };
    let mut outs = std::mem::take(&mut ev.scratch);
    while let Ok(t) = ev.rx.try_recv() {
        let was = ev.any_active();
        ev.active[t.source as usize] = t.active;
        let Some(g) = gate.as_mut() else { continue };
        let ts = vtl.map_or(f.ts, |v| v.inverse(t.at_ms.saturating_mul(1000)));
        match (was, ev.any_active()) {
            (false, true) => g.begin(ts, &mut outs),
            (true, false) => g.end(ts),
            // Another source began (the gate is open already) or one of several ended.
            _ => {}
        }
    }
    let Some(g) = gate.as_mut() else {
        ev.scratch = outs;
        return seg.push_video(f, out);
    };
    if ev.any_active() && !g.is_open() {
        // An event that began before this session: record from its first frame.
        g.begin(f.ts, &mut outs);
    }
    g.video(f, &mut outs);
    let result = apply(&mut ev.spill, g, seg, &mut outs, out);
    ev.scratch = outs;
    result
}

/// Carries out the gate's outputs: to the segmenter, to and from the spill file.
fn apply(
    spill: &mut Option<Spill>,
    g: &mut EventGate,
    seg: &mut Segmenter,
    outs: &mut Vec<Out>,
    out: &mut Vec<Event>,
) -> Result<(), Discontinuity> {
    let mut result = Ok(());
    // A spill write failed in this batch: later spilled GOPs of it are lost too.
    let mut lost = false;
    for o in outs.drain(..) {
        match o {
            Out::Video(v) if result.is_ok() => result = seg.push_video(v, out),
            Out::Audio(a) if result.is_ok() => seg.push_audio(a, out),
            Out::Finish if result.is_ok() => seg.finish(out),
            Out::Video(_) | Out::Audio(_) | Out::Finish => {}
            Out::Spill(gop) => {
                let Some(sp) = spill.as_mut() else { continue };
                if lost {
                    continue;
                }
                if let Err(e) = sp.store.append(&gop) {
                    lost = true;
                    g.spill_lost();
                    sp.store.clear();
                    if !sp.logged {
                        sp.logged = true;
                        warn!(error = %e, "cannot spill the pre-event buffer to disk; dropping its oldest part (counted in prebuffer_dropped_bytes)");
                    }
                }
            }
            Out::SpillTrim { keep_from_ts } => {
                if let Some(sp) = spill.as_mut() {
                    sp.store.trim(keep_from_ts);
                }
            }
            Out::Unspill { from_ts } => {
                let Some(sp) = spill.as_mut() else { continue };
                let (items, err) = sp.store.take_from(from_ts);
                if let Some(e) = err {
                    g.spill_lost();
                    if !sp.logged {
                        sp.logged = true;
                        warn!(error = %e, "cannot read back the spilled pre-event buffer; recording starts later");
                    }
                    // What was read before the error cannot be joined to what follows.
                    continue;
                }
                for i in items {
                    if result.is_err() {
                        break;
                    }
                    match i {
                        Item::Video(v) => result = seg.push_video(v, out),
                        Item::Audio(a) => seg.push_audio(a, out),
                    }
                }
            }
        }
    }
    if let Some(sp) = spill.as_mut() {
        let s = g.stats();
        sp.memory.set(s.buffered_bytes as i64);
        sp.spilled.set(s.spilled_bytes as i64);
        sp.failures
            .inc_by(s.spill_failures.saturating_sub(sp.seen.spill_failures));
        sp.dropped
            .inc_by(s.dropped_bytes.saturating_sub(sp.seen.dropped_bytes));
        sp.seen = s;
    }
    result
}

/// One audio frame into the segmenter, through the gate in `Event` mode.
pub fn push_audio(
    events: Option<&mut Events>,
    gate: &mut Option<EventGate>,
    seg: &mut Segmenter,
    a: AudioIn,
    out: &mut Vec<Event>,
) {
    let Some(g) = gate.as_mut() else {
        return seg.push_audio(a, out);
    };
    let mut outs = Vec::new();
    g.audio(a, &mut outs);
    let mut none = None;
    let spill = match events {
        Some(ev) => &mut ev.spill,
        None => &mut none,
    };
    // Audio produces no video output (only spill work), so no discontinuity can arise.
    let _ = apply(spill, g, seg, &mut outs, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_media::segmenter::Policy;
    use vigil_store::layout::CameraId;

    fn spill(dir: &std::path::Path, mem_bytes: usize) -> Spill {
        let cam = CameraId::new("ns", "cam").unwrap();
        Spill {
            store: SpillStore::new(dir, &cam),
            mem_bytes,
            logged: false,
            memory: Gauge::default(),
            spilled: Gauge::default(),
            failures: Counter::default(),
            dropped: Counter::default(),
            seen: GateStats::default(),
        }
    }

    /// Frames `from..to` (25 fps, GOPs of 25, 100 bytes) through gate and spill into a
    /// segmenter, an event beginning at frame `event`; the first recorded frame.
    fn feed(sp: &mut Option<Spill>, g: &mut EventGate, seg: &mut Segmenter, event: i64) -> i64 {
        let mut outs = Vec::new();
        let mut evs = Vec::new();
        let mut first = None;
        for n in 0..event + 100 {
            if n == event {
                g.begin(n * 3600, &mut outs);
            }
            g.video(
                VideoIn {
                    ts: n * 3600,
                    key: n % 25 == 0,
                    new_params: n == 0,
                    data: vec![1; 100],
                },
                &mut outs,
            );
            apply(sp, g, seg, &mut outs, &mut evs).unwrap();
            for e in evs.drain(..) {
                if let Event::Open { start_ts, .. } = e {
                    first.get_or_insert(start_ts / 3600);
                }
            }
        }
        first.expect("a recording")
    }

    fn segmenter() -> Segmenter {
        Segmenter::new(Policy {
            segment_ticks: 4 * 90_000,
            fragment_ticks: 90_000,
            audio_rate: None,
        })
    }

    #[test]
    fn spilled_gops_come_back_from_the_file_ahead_of_memory() {
        let tmp = tempfile::tempdir().unwrap();
        let mut sp = Some(spill(tmp.path(), 3000));
        // pre 10 s: the event at frame 1000 records from frame 750.
        let mut g = EventGate::with_spill(10, 0, usize::MAX, 3000);
        let first = feed(&mut sp, &mut g, &mut segmenter(), 1000);
        assert_eq!(first, 750);
        let s = sp.as_ref().unwrap();
        assert_eq!((s.failures.get(), s.dropped.get()), (0, 0));
    }

    #[test]
    fn a_spill_that_cannot_be_written_drops_the_oldest_data_and_recording_goes_on() {
        let tmp = tempfile::tempdir().unwrap();
        // A file where the spill directory should be: every write fails (as on a full disk).
        std::fs::write(tmp.path().join("prebuf"), b"not a directory").unwrap();
        let mut sp = Some(spill(tmp.path(), 3000));
        let mut g = EventGate::with_spill(10, 0, usize::MAX, 3000);
        let first = feed(&mut sp, &mut g, &mut segmenter(), 1000);
        // What memory held: the GOP being filled and the one before (3000 bytes bound).
        assert!((950..1000).contains(&first), "recorded from {first}");
        let s = sp.as_ref().unwrap();
        assert!(s.failures.get() > 0);
        assert!(s.dropped.get() > 0);
        assert!(s.logged);
    }
}
