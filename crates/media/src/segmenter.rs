//! Turning a session's frames into segments and fragments — pure logic, no I/O.
//!
//! The camera task feeds video frames (RTP time, keyframe flag, data) and audio frames (already
//! placed on the video clock) and gets back [`Event`]s: open a segment, append a fragment, close
//! a segment. Rules:
//!
//! * A segment starts on a keyframe; frames before the session's first keyframe are dropped
//!   (they cannot be decoded).
//! * A segment is cut at the first keyframe at least `segment_ticks` after its start, or at the
//!   first keyframe carrying new parameter sets (the init segment must change).
//! * A sample's duration is the RTP delta to the next frame, so a segment's duration is exactly
//!   `next segment start - this segment start`; the last frame of a session (no successor) gets
//!   the duration of the frame before it.
//! * A fragment is flushed once it holds `fragment_ticks` of video: this bounds both memory and
//!   what a crash can lose. It is also flushed once it holds `MAX_FRAGMENT_BYTES`, whatever
//!   the timestamps say, so a camera cannot make it grow with huge frames or tiny time steps.
//! * Audio frames go to the segment whose video interval contains them. Audio is late relative
//!   to the video keyframe that cuts a segment, so the old segment stays open for audio until an
//!   audio frame past the cut arrives or video is `AUDIO_WAIT_TICKS` past it.
//! * A timestamp that goes backwards or jumps by more than `MAX_JUMP_TICKS` is a
//!   discontinuity: the caller ends the segment and starts a new timeline.

use crate::mp4::{self, SampleInfo, TrackRun};

/// Largest forward jump between consecutive video frames accepted as continuous (10 s).
pub const MAX_JUMP_TICKS: i64 = 10 * 90_000;
/// How long the previous segment waits for late audio after a cut (0.5 s of video time).
pub const AUDIO_WAIT_TICKS: i64 = 45_000;
/// Sample bytes a fragment holds in memory at most before it is flushed (plus one frame).
pub const MAX_FRAGMENT_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Minimum segment length, 90 kHz ticks.
    pub segment_ticks: i64,
    /// Fragment length, 90 kHz ticks.
    pub fragment_ticks: i64,
    /// Audio timescale (RTP clock rate of the audio stream), if the session has audio.
    pub audio_rate: Option<u32>,
}

/// Whether an H.265 access unit (4-byte length-prefixed NAL units) is an IRAP picture (BLA,
/// IDR or CRA, NAL types 16..=23). retina only flags IDR pictures, but many encoders (x265's
/// default open GOP, several camera SoCs) start GOPs with CRA pictures; without B-frames no
/// leading pictures follow them, so they are clean places to start a segment.
pub fn h265_is_irap(data: &[u8]) -> bool {
    let mut rest = data;
    while rest.len() >= 6 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < 2 || rest.len() < 4 + len {
            return false;
        }
        let nal_type = (rest[4] >> 1) & 0x3f;
        if (16..=23).contains(&nal_type) {
            return true;
        }
        if nal_type < 32 {
            // Any other VCL NAL: one picture has one kind of slice.
            return false;
        }
        match rest.get(4 + len..) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    false
}

/// A video frame.
#[derive(Debug)]
pub struct VideoIn {
    pub ts: i64,
    pub key: bool,
    pub new_params: bool,
    pub data: Vec<u8>,
}

/// An audio frame, positioned on the video clock by the caller.
#[derive(Debug)]
pub struct AudioIn {
    /// Position in 90 kHz video ticks.
    pub pos: i64,
    /// Duration in audio ticks.
    pub duration: u32,
    pub data: Vec<u8>,
}

/// A fragment ready to append: `moof`, then `mdat` header, then `chunks` in order.
#[derive(Debug)]
pub struct Fragment {
    pub moof: Vec<u8>,
    pub mdat_header: [u8; 8],
    pub chunks: Vec<Vec<u8>>,
    /// Video duration of the fragment, 90 kHz ticks.
    pub video_ticks: i64,
    /// Bytes of sample data (video + audio).
    pub payload_bytes: u64,
}

impl Fragment {
    pub fn len(&self) -> u64 {
        self.moof.len() as u64 + 8 + self.payload_bytes
    }
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What the caller must do.
#[derive(Debug)]
pub enum Event {
    /// The segment receiving video ends at video time `ts` and the next one starts there.
    /// Comes before the `Open` of the next segment and before the `Close` of this one (which
    /// may wait for late audio): the caller fixes the boundary's wall time here.
    Cut { ts: i64 },
    /// Create segment `id` starting at video time `start_ts` (write its init segment, built from
    /// the stream's current parameters).
    Open { id: u64, start_ts: i64 },
    /// Append a fragment to segment `id`.
    Fragment { id: u64, fragment: Fragment },
    /// Segment `id` is complete and covers `[start_ts, end_ts)`.
    Close {
        id: u64,
        start_ts: i64,
        end_ts: i64,
        video_frames: u64,
    },
}

/// `push_video` refused the frame: its timestamp does not continue the session.
#[derive(Debug)]
pub struct Discontinuity {
    pub frame: VideoIn,
    pub prev_ts: i64,
}

#[derive(Debug)]
struct Sample {
    info: SampleInfo,
    data: Vec<u8>,
}

#[derive(Debug)]
struct AudioSample {
    pos: i64,
    duration: u32,
    data: Vec<u8>,
}

#[derive(Debug)]
struct Seg {
    id: u64,
    start_ts: i64,
    seq: u32,
    /// Decode time (from segment start) of the first pending video sample.
    video_dts: u64,
    video: Vec<Sample>,
    video_ticks: i64,
    audio: Vec<AudioSample>,
    /// End (audio ticks from segment start) of the last audio sample written.
    audio_end: u64,
    frames: u64,
    /// Sample bytes held (video and audio) since the last fragment.
    held_bytes: u64,
}

impl Seg {
    fn new(id: u64, start_ts: i64) -> Self {
        Seg {
            id,
            start_ts,
            seq: 0,
            video_dts: 0,
            video: Vec::new(),
            video_ticks: 0,
            audio: Vec::new(),
            audio_end: 0,
            frames: 0,
            held_bytes: 0,
        }
    }

    fn take_fragment(&mut self, audio_rate: Option<u32>) -> Option<Fragment> {
        if self.video.is_empty() && self.audio.is_empty() {
            return None;
        }
        self.seq += 1;
        let vinfo: Vec<SampleInfo> = self.video.iter().map(|s| s.info).collect();
        let mut runs = Vec::with_capacity(2);
        if !vinfo.is_empty() {
            runs.push(TrackRun {
                track_id: mp4::VIDEO_TRACK_ID,
                base_decode_time: self.video_dts,
                samples: &vinfo,
                sample_flags: true,
            });
        }
        let mut ainfo = Vec::new();
        if let Some(rate) = audio_rate.filter(|_| !self.audio.is_empty()) {
            self.audio.sort_by_key(|a| a.pos);
            let first = self.audio[0].pos - self.start_ts;
            let at = (first.max(0) as i128 * i128::from(rate) / 90_000) as u64;
            // Never overlap the previous fragment's audio (rounding, or frames that arrived
            // slightly out of order).
            let base = at.max(self.audio_end);
            ainfo = self
                .audio
                .iter()
                .map(|a| SampleInfo {
                    duration: a.duration,
                    size: a.data.len() as u32,
                    sync: true,
                })
                .collect();
            self.audio_end = base + ainfo.iter().map(|s| u64::from(s.duration)).sum::<u64>();
            runs.push(TrackRun {
                track_id: mp4::AUDIO_TRACK_ID,
                base_decode_time: base,
                samples: &ainfo,
                sample_flags: false,
            });
        }
        let moof = mp4::moof(self.seq, &runs);
        let payload: u64 = vinfo
            .iter()
            .chain(ainfo.iter())
            .map(|s| u64::from(s.size))
            .sum();
        let mut chunks = Vec::with_capacity(self.video.len() + self.audio.len());
        chunks.extend(self.video.drain(..).map(|s| s.data));
        chunks.extend(self.audio.drain(..).map(|a| a.data));
        let video_ticks = self.video_ticks;
        self.video_dts += video_ticks as u64;
        self.video_ticks = 0;
        self.held_bytes = 0;
        Some(Fragment {
            moof,
            mdat_header: mp4::mdat_header(payload.min(u64::from(u32::MAX - 8)) as u32),
            chunks,
            video_ticks,
            payload_bytes: payload,
        })
    }
}

/// A previous segment kept open only for late audio.
#[derive(Debug)]
struct Closing {
    seg: Seg,
    end_ts: i64,
}

#[derive(Debug)]
pub struct Segmenter {
    policy: Policy,
    next_id: u64,
    open: Option<Seg>,
    closing: Option<Closing>,
    /// Last frame received; its duration is known once the next one arrives.
    last: Option<VideoIn>,
    last_duration: Option<u32>,
    cut_at_next_key: bool,
    dropped_before_key: u64,
}

impl Segmenter {
    pub fn new(policy: Policy) -> Self {
        Segmenter {
            policy,
            next_id: 1,
            open: None,
            closing: None,
            last: None,
            last_duration: None,
            cut_at_next_key: false,
            dropped_before_key: 0,
        }
    }

    /// Video frames dropped because no keyframe had been seen yet.
    pub fn dropped_before_key(&self) -> u64 {
        self.dropped_before_key
    }

    /// True once a segment has been opened in this session.
    pub fn started(&self) -> bool {
        self.open.is_some()
    }

    pub fn push_video(&mut self, f: VideoIn, out: &mut Vec<Event>) -> Result<(), Discontinuity> {
        let Some(last) = self.last.take() else {
            if f.key {
                self.open_segment(f, out);
            } else {
                self.dropped_before_key += 1;
            }
            return Ok(());
        };
        let delta = f.ts - last.ts;
        if delta <= 0 || delta > MAX_JUMP_TICKS || delta > i64::from(u32::MAX) {
            let prev_ts = last.ts;
            self.last = Some(last);
            return Err(Discontinuity { frame: f, prev_ts });
        }
        let duration = delta as u32;
        self.last_duration = Some(duration);
        self.append(last, duration);
        if f.new_params {
            self.cut_at_next_key = true;
        }
        // Late audio waits at most AUDIO_WAIT_TICKS.
        if self
            .closing
            .as_ref()
            .is_some_and(|c| f.ts - c.end_ts >= AUDIO_WAIT_TICKS)
        {
            self.finish_closing(out);
        }
        let seg_start = self.open.as_ref().map_or(f.ts, |s| s.start_ts);
        if f.key && (self.cut_at_next_key || f.ts - seg_start >= self.policy.segment_ticks) {
            self.cut(f, out);
        } else {
            self.maybe_flush(out);
            self.last = Some(f);
        }
        Ok(())
    }

    pub fn push_audio(&mut self, a: AudioIn, out: &mut Vec<Event>) {
        if self.policy.audio_rate.is_none() {
            return;
        }
        let sample = AudioSample {
            pos: a.pos,
            duration: a.duration,
            data: a.data,
        };
        if let Some(c) = &mut self.closing {
            if a.pos < c.end_ts {
                if a.pos >= c.seg.start_ts {
                    c.seg.held_bytes += sample.data.len() as u64;
                    c.seg.audio.push(sample);
                    if c.seg.held_bytes >= MAX_FRAGMENT_BYTES {
                        // A flood of late audio: the old segment is done.
                        self.finish_closing(out);
                    }
                }
                return;
            }
            // Audio has passed the cut: nothing more can arrive for the old segment.
            self.finish_closing(out);
        }
        if let Some(s) = &mut self.open
            && a.pos >= s.start_ts
        {
            s.held_bytes += sample.data.len() as u64;
            s.audio.push(sample);
            if s.held_bytes >= MAX_FRAGMENT_BYTES
                && let Some(fragment) = s.take_fragment(self.policy.audio_rate)
            {
                out.push(Event::Fragment { id: s.id, fragment });
            }
        }
    }

    /// Ends the session: writes everything held and closes the segments. The last frame's
    /// duration is estimated from the frame before it.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        self.finish_closing(out);
        if let Some(last) = self.last.take() {
            let duration = self.last_duration.unwrap_or(3600);
            let end_ts = last.ts + i64::from(duration);
            self.append(last, duration);
            if let Some(mut s) = self.open.take() {
                if let Some(fragment) = s.take_fragment(self.policy.audio_rate) {
                    out.push(Event::Fragment { id: s.id, fragment });
                }
                out.push(Event::Close {
                    id: s.id,
                    start_ts: s.start_ts,
                    end_ts,
                    video_frames: s.frames,
                });
            }
        }
        self.last_duration = None;
        self.cut_at_next_key = false;
    }

    fn open_segment(&mut self, f: VideoIn, out: &mut Vec<Event>) {
        let id = self.next_id;
        self.next_id += 1;
        out.push(Event::Open { id, start_ts: f.ts });
        self.open = Some(Seg::new(id, f.ts));
        self.cut_at_next_key = false;
        self.last = Some(f);
    }

    fn append(&mut self, f: VideoIn, duration: u32) {
        if let Some(s) = &mut self.open {
            s.video_ticks += i64::from(duration);
            s.frames += 1;
            s.held_bytes += f.data.len() as u64;
            s.video.push(Sample {
                info: SampleInfo {
                    duration,
                    size: f.data.len() as u32,
                    sync: f.key,
                },
                data: f.data,
            });
        }
    }

    fn maybe_flush(&mut self, out: &mut Vec<Event>) {
        if let Some(s) = &mut self.open
            && (s.video_ticks >= self.policy.fragment_ticks || s.held_bytes >= MAX_FRAGMENT_BYTES)
            && let Some(fragment) = s.take_fragment(self.policy.audio_rate)
        {
            out.push(Event::Fragment { id: s.id, fragment });
        }
    }

    fn cut(&mut self, key: VideoIn, out: &mut Vec<Event>) {
        // A still-closing segment (very short GOPs) is finished before the next one closes.
        self.finish_closing(out);
        out.push(Event::Cut { ts: key.ts });
        if let Some(seg) = self.open.take() {
            let closing = Closing {
                seg,
                end_ts: key.ts,
            };
            self.closing = Some(closing);
            if self.policy.audio_rate.is_none() {
                self.finish_closing(out);
            }
        }
        self.open_segment(key, out);
    }

    fn finish_closing(&mut self, out: &mut Vec<Event>) {
        if let Some(mut c) = self.closing.take() {
            if let Some(fragment) = c.seg.take_fragment(self.policy.audio_rate) {
                out.push(Event::Fragment {
                    id: c.seg.id,
                    fragment,
                });
            }
            out.push(Event::Close {
                id: c.seg.id,
                start_ts: c.seg.start_ts,
                end_ts: c.end_ts,
                video_frames: c.seg.frames,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn policy(audio: bool) -> Policy {
        Policy {
            segment_ticks: 10 * 90_000,
            fragment_ticks: 90_000,
            audio_rate: audio.then_some(16_000),
        }
    }

    #[derive(Default, Debug)]
    struct Seen {
        opened: Vec<(u64, i64)>,
        closed: Vec<(u64, i64, i64, u64)>,
        bytes: BTreeMap<u64, Vec<u8>>,
    }

    fn collect(events: Vec<Event>, seen: &mut Seen) {
        for e in events {
            match e {
                Event::Cut { .. } => {}
                Event::Open { id, start_ts } => {
                    assert!(seen.closed.iter().all(|c| c.0 != id));
                    seen.opened.push((id, start_ts));
                    seen.bytes.insert(
                        id,
                        mp4::init_segment(
                            &mp4::VideoTrack {
                                sample_entry: b"\0\0\0\x08avc1".to_vec(),
                                width: 1,
                                height: 1,
                            },
                            None,
                            0,
                        ),
                    );
                }
                Event::Fragment { id, fragment } => {
                    assert!(
                        seen.closed.iter().all(|c| c.0 != id),
                        "fragment after close"
                    );
                    let b = seen.bytes.get_mut(&id).unwrap();
                    b.extend_from_slice(&fragment.moof);
                    b.extend_from_slice(&fragment.mdat_header);
                    for c in fragment.chunks {
                        b.extend_from_slice(&c);
                    }
                }
                Event::Close {
                    id,
                    start_ts,
                    end_ts,
                    video_frames,
                } => seen.closed.push((id, start_ts, end_ts, video_frames)),
            }
        }
    }

    fn frame(ts: i64, key: bool) -> VideoIn {
        VideoIn {
            ts,
            key,
            new_params: false,
            data: vec![key as u8; 100],
        }
    }

    /// Huge frames one tick apart (a hostile camera) never reach `fragment_ticks`: fragments
    /// are flushed by size instead, and the segment stays valid.
    #[test]
    fn fragments_are_bounded_in_bytes_whatever_the_timestamps() {
        let mut s = Segmenter::new(policy(true));
        let mut seen = Seen::default();
        let big = 1024 * 1024;
        let mut largest = 0u64;
        for i in 0..40i64 {
            let mut ev = Vec::new();
            let f = VideoIn {
                ts: 90_000 + i,
                key: i == 0,
                new_params: false,
                data: vec![0; big],
            };
            s.push_video(f, &mut ev).unwrap();
            // And a flood of audio inside the same tick.
            for _ in 0..8 {
                s.push_audio(
                    AudioIn {
                        pos: 90_000 + i,
                        duration: 1,
                        data: vec![0; 64 * 1024],
                    },
                    &mut ev,
                );
            }
            for e in &ev {
                if let Event::Fragment { fragment, .. } = e {
                    largest = largest.max(fragment.payload_bytes);
                }
            }
            collect(ev, &mut seen);
        }
        let mut ev = Vec::new();
        s.finish(&mut ev);
        collect(ev, &mut seen);
        assert!(largest > 0, "no fragment flushed");
        assert!(
            largest <= MAX_FRAGMENT_BYTES + big as u64,
            "fragment of {largest} bytes"
        );
        let r = mp4::scan(&seen.bytes[&1]);
        assert_eq!(r.valid_len as usize, seen.bytes[&1].len());
        assert_eq!(r.video_samples, 40);
    }

    #[test]
    fn cuts_on_first_keyframe_after_length() {
        let mut s = Segmenter::new(policy(false));
        let mut seen = Seen::default();
        let mut ev = Vec::new();
        // 25 fps, GOP 2 s (50 frames), 30 s; starts on a non-key frame.
        for i in 1..=750i64 {
            s.push_video(frame(i * 3600, i % 50 == 0), &mut ev).unwrap();
        }
        s.finish(&mut ev);
        collect(ev, &mut seen);
        assert_eq!(s.dropped_before_key(), 49);
        let c: Vec<(i64, i64)> = seen.closed.iter().map(|c| (c.1, c.2)).collect();
        assert_eq!(
            c,
            vec![
                (50 * 3600, 300 * 3600),
                (300 * 3600, 550 * 3600),
                (550 * 3600, 751 * 3600)
            ]
        );
        for (id, start, end, frames) in &seen.closed {
            let r = mp4::scan(&seen.bytes[id]);
            assert_eq!(r.video_duration as i64, end - start);
            assert_eq!(r.video_samples, *frames);
            assert_eq!(r.valid_len as usize, seen.bytes[id].len());
            // 1 s fragments.
            assert_eq!(r.fragments as i64, ((end - start) + 89_999) / 90_000);
        }
    }

    #[test]
    fn detects_h265_irap() {
        let nal = |t: u8, body: &[u8]| {
            let mut v = ((body.len() + 2) as u32).to_be_bytes().to_vec();
            v.extend_from_slice(&[t << 1, 1]);
            v.extend_from_slice(body);
            v
        };
        let sei = nal(39, b"sei");
        assert!(h265_is_irap(&[sei.clone(), nal(21, b"cra")].concat()));
        assert!(h265_is_irap(&nal(19, b"idr")));
        assert!(!h265_is_irap(&[sei, nal(1, b"trail")].concat()));
        assert!(!h265_is_irap(&[0, 0, 0, 200, 42, 1]));
        assert!(!h265_is_irap(&[]));
    }

    #[test]
    fn new_parameters_force_a_cut() {
        let mut s = Segmenter::new(policy(false));
        let mut ev = Vec::new();
        let mut seen = Seen::default();
        s.push_video(frame(0, true), &mut ev).unwrap();
        s.push_video(frame(3600, false), &mut ev).unwrap();
        let mut f = frame(7200, true);
        f.new_params = true;
        s.push_video(f, &mut ev).unwrap();
        s.push_video(frame(10800, false), &mut ev).unwrap();
        collect(ev, &mut seen);
        assert_eq!(seen.closed, vec![(1, 0, 7200, 2)]);
        assert_eq!(seen.opened, vec![(1, 0), (2, 7200)]);
    }

    #[test]
    fn discontinuity_is_reported() {
        let mut s = Segmenter::new(policy(false));
        let mut ev = Vec::new();
        s.push_video(frame(90_000, true), &mut ev).unwrap();
        let d = s.push_video(frame(80_000, false), &mut ev).unwrap_err();
        assert_eq!(d.prev_ts, 90_000);
        let d = s
            .push_video(frame(90_000 + MAX_JUMP_TICKS + 1, true), &mut ev)
            .unwrap_err();
        assert_eq!(d.frame.ts, 90_000 + MAX_JUMP_TICKS + 1);
        s.finish(&mut ev);
        let mut seen = Seen::default();
        collect(ev, &mut seen);
        assert_eq!(seen.closed, vec![(1, 90_000, 93_600, 1)]);
    }

    #[test]
    fn late_audio_goes_to_previous_segment() {
        let mut s = Segmenter::new(Policy {
            segment_ticks: 90_000,
            fragment_ticks: 90_000,
            audio_rate: Some(16_000),
        });
        let mut ev = Vec::new();
        for i in 0..=25i64 {
            s.push_video(frame(i * 3600, i % 25 == 0), &mut ev).unwrap();
        }
        // Cut at 90_000; audio at 89_000 arrives after the cut and belongs to segment 1.
        s.push_audio(
            AudioIn {
                pos: 89_000,
                duration: 1024,
                data: vec![7; 10],
            },
            &mut ev,
        );
        assert!(!ev.iter().any(|e| matches!(e, Event::Close { .. })));
        s.push_audio(
            AudioIn {
                pos: 91_000,
                duration: 1024,
                data: vec![8; 10],
            },
            &mut ev,
        );
        let mut seen = Seen::default();
        s.finish(&mut ev);
        collect(ev, &mut seen);
        assert_eq!(seen.closed[0], (1, 0, 90_000, 25));
        let r = mp4::scan(&seen.bytes[&1]);
        assert_eq!(r.audio_samples, 1);
        let r2 = mp4::scan(&seen.bytes[&2]);
        assert_eq!(r2.audio_samples, 1);
    }

    proptest! {
        /// Whatever the frame pattern, segments of a session tile exactly, start on keyframes,
        /// are at least the policy length (except the last), and hold every frame once.
        #[test]
        fn segments_tile(
            gaps in proptest::collection::vec((1i64..9000, prop::bool::weighted(0.05)), 1..2000),
            seg_s in 1i64..20,
            audio in any::<bool>(),
        ) {
            let p = Policy { segment_ticks: seg_s * 90_000, fragment_ticks: 90_000, audio_rate: audio.then_some(16_000) };
            let mut s = Segmenter::new(p);
            let mut ev = Vec::new();
            let mut ts = 0i64;
            let mut frames = Vec::new();
            for (i, (d, key)) in gaps.iter().enumerate() {
                ts += d;
                let key = *key || i == 0;
                frames.push((ts, key));
                s.push_video(frame(ts, key), &mut ev).unwrap();
                if audio && i % 3 == 0 {
                    s.push_audio(AudioIn { pos: ts - 4000, duration: 1024, data: vec![1; 5] }, &mut ev);
                }
            }
            s.finish(&mut ev);
            let mut seen = Seen::default();
            collect(ev, &mut seen);
            prop_assert_eq!(seen.opened.len(), seen.closed.len());
            let mut closed = seen.closed.clone();
            closed.sort_by_key(|c| c.1);
            for w in closed.windows(2) {
                prop_assert_eq!(w[0].2, w[1].1, "segments must tile");
                prop_assert!(w[0].2 - w[0].1 >= p.segment_ticks);
            }
            let keys: Vec<i64> = frames.iter().filter(|f| f.1).map(|f| f.0).collect();
            let mut total = 0;
            for c in &closed {
                prop_assert!(keys.contains(&c.1), "segment must start on a keyframe");
                let r = mp4::scan(&seen.bytes[&c.0]);
                prop_assert_eq!(r.video_duration as i64, c.2 - c.1);
                prop_assert_eq!(r.video_samples, c.3);
                prop_assert!(r.video_sync_samples >= 1);
                total += c.3;
            }
            prop_assert_eq!(total as usize, frames.len());
        }
    }
}
