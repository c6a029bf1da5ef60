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

use crate::camera::Ctx;
use crate::event_gate::{EventGate, Out};
use crate::event_source::{self, Trigger};
use crate::windows;

/// A camera's event state across its sessions.
pub struct Events {
    rx: mpsc::Receiver<Trigger>,
    /// Pre- and post-seconds of the gate; `None`: frames pass straight through (the triggers
    /// only count, e.g. a manual window of a continuously recorded camera).
    gate: Option<(u32, u32)>,
    /// Which sources have an event in progress (so a new session starts recording at once).
    active: [bool; 3],
    scratch: Vec<Out>,
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
        Some(Events {
            rx,
            gate,
            active: [false; 3],
            scratch: Vec::new(),
        })
    }

    /// A session's gate (its buffer starts empty: a new session is a new timeline); `None`
    /// when frames pass straight through.
    pub fn gate(&self) -> Option<EventGate> {
        let (pre, post) = self.gate?;
        Some(EventGate::new(pre, post, EventGate::bound_for(pre)))
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
    let mut result = Ok(());
    for o in outs.drain(..) {
        if result.is_err() {
            continue;
        }
        match o {
            Out::Video(v) => result = seg.push_video(v, out),
            Out::Audio(a) => seg.push_audio(a, out),
            Out::Finish => seg.finish(out),
        }
    }
    ev.scratch = outs;
    result
}

/// One audio frame into the segmenter, through the gate in `Event` mode.
pub fn push_audio(
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
    for o in outs {
        if let Out::Audio(a) = o {
            seg.push_audio(a, out);
        }
    }
}
