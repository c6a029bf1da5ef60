//! Replayed frames → segments in the normal layout with origin `backfill`.
//!
//! Reuses the live path's segmenter and MP4 muxer: segments start on keyframes, are cut on the
//! first keyframe after the pool's segment length, and are named by the absolute times of
//! their first frame and of the end of their last frame. A segment is held in memory until it
//! closes (one segment: ~5 MB at 4 Mbit/s and 10 s) and then written with one PUT, so the
//! store never sees a partial backfill segment.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use retina::codec::ParametersRef;
use tracing::{debug, warn};

use crate::error::{Error, Result};
use vigil_media::mp4::{self, VideoTrack};
use vigil_media::replay::depack::{self, Codec};
use vigil_media::replay::{Frame, Sink};
use vigil_media::segmenter::{Event, Policy, Segmenter, VideoIn};
use vigil_store::layout::{CameraId, Origin, SegmentKey};

/// A jump between consecutive frames beyond this is a hole in the camera's recording, not a
/// long frame: the session ends and a new segment starts at the next keyframe.
pub const MAX_FRAME_GAP_US: i64 = 1_000_000;

type ParamSets = (Option<Vec<u8>>, Vec<u8>, Vec<u8>);

/// The `a=fmtp` an RTSP server would announce for these parameter sets; retina turns it into
/// an MP4 sample entry.
pub fn fmtp_for(codec: Codec, p: &ParamSets) -> String {
    let b = base64::engine::general_purpose::STANDARD;
    match codec {
        Codec::H264 => format!(
            "packetization-mode=1;sprop-parameter-sets={},{}",
            b.encode(&p.1),
            b.encode(&p.2)
        ),
        Codec::H265 => format!(
            "sprop-vps={};sprop-sps={};sprop-pps={}",
            b.encode(p.0.as_deref().unwrap_or_default()),
            b.encode(&p.1),
            b.encode(&p.2)
        ),
    }
}

/// MP4 video track description from format parameters.
pub fn video_track(codec: Codec, fmtp: &str) -> Result<VideoTrack> {
    let enc = match codec {
        Codec::H264 => "h264",
        Codec::H265 => "h265",
    };
    let d = retina::codec::Depacketizer::new("video", enc, 90_000, None, Some(fmtp))
        .map_err(|e| Error::Stream(format!("parameter sets: {e}")))?;
    match d.parameters() {
        Some(ParametersRef::Video(p)) => {
            let se = p
                .mp4_sample_entry()
                .build()
                .map_err(|e| Error::Stream(format!("cannot describe video for MP4: {e}")))?;
            let (w, h) = p.pixel_dimensions();
            Ok(VideoTrack {
                sample_entry: se,
                width: w.min(u32::from(u16::MAX)) as u16,
                height: h.min(u32::from(u16::MAX)) as u16,
            })
        }
        _ => Err(Error::Stream("no video parameters in the stream".into())),
    }
}

struct OpenSeg {
    bytes: Vec<u8>,
}

pub struct SegmentWriter {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    camera: CameraId,
    policy: Policy,
    codec: Codec,
    params: Option<ParamSets>,
    video: Option<VideoTrack>,
    seg: Segmenter,
    /// Wall time (µs) of video tick 0 of the current session.
    base_us: Option<i64>,
    last_us: Option<i64>,
    need_key: bool,
    open: BTreeMap<u64, OpenSeg>,
    events: Vec<Event>,
    /// Segments written, in order.
    pub written: Vec<SegmentKey>,
    pub bytes_written: u64,
    /// Time (µs) of the latest frame accepted, for progress.
    pub latest_us: Option<i64>,
}

impl SegmentWriter {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        camera: CameraId,
        segment_seconds: u32,
    ) -> Self {
        let policy = Policy {
            segment_ticks: i64::from(segment_seconds) * 90_000,
            fragment_ticks: 90_000,
            audio_rate: None,
        };
        SegmentWriter {
            store,
            prefix: prefix.to_string(),
            camera,
            policy,
            codec: Codec::H264,
            params: None,
            video: None,
            seg: Segmenter::new(policy),
            base_us: None,
            last_us: None,
            need_key: true,
            open: BTreeMap::new(),
            events: Vec::new(),
            written: Vec::new(),
            bytes_written: 0,
            latest_us: None,
        }
    }

    fn wall_ms(&self, ts: i64) -> i64 {
        let base = self.base_us.unwrap_or(0);
        (base + ts * 100 / 9).div_euclid(1000)
    }

    /// Ends the current session: closes and writes every open segment.
    pub async fn finish(&mut self) -> Result<()> {
        let mut ev = std::mem::take(&mut self.events);
        self.seg.finish(&mut ev);
        self.handle(&mut ev).await?;
        self.seg = Segmenter::new(self.policy);
        self.base_us = None;
        self.last_us = None;
        self.need_key = true;
        Ok(())
    }

    async fn handle(&mut self, ev: &mut Vec<Event>) -> Result<()> {
        for e in ev.drain(..) {
            match e {
                Event::Cut { .. } => {}
                Event::Open { id, start_ts } => {
                    let Some(video) = &self.video else {
                        return Err(Error::Stream("segment without video parameters".into()));
                    };
                    let init = mp4::init_segment(video, None, self.wall_ms(start_ts) / 1000);
                    self.open.insert(id, OpenSeg { bytes: init });
                }
                Event::Fragment { id, fragment } => {
                    if let Some(s) = self.open.get_mut(&id) {
                        s.bytes.extend_from_slice(&fragment.moof);
                        s.bytes.extend_from_slice(&fragment.mdat_header);
                        for c in &fragment.chunks {
                            s.bytes.extend_from_slice(c);
                        }
                    }
                }
                Event::Close {
                    id,
                    start_ts,
                    end_ts,
                    video_frames,
                } => {
                    let Some(s) = self.open.remove(&id) else {
                        continue;
                    };
                    let key = SegmentKey::new(
                        self.camera.clone(),
                        self.wall_ms(start_ts),
                        self.wall_ms(end_ts),
                        Origin::Backfill,
                    )?;
                    let len = s.bytes.len() as u64;
                    let loc = StorePath::from(key.to_key(&self.prefix));
                    self.store
                        .put(&loc, PutPayload::from(Bytes::from(s.bytes)))
                        .await?;
                    debug!(key = %key.relative(), bytes = len, frames = video_frames, "backfill segment written");
                    self.bytes_written += len;
                    self.written.push(key);
                }
            }
        }
        Ok(())
    }
}

impl Sink for SegmentWriter {
    type Error = crate::Error;

    fn start(&mut self, codec: Codec, fmtp: Option<&str>) -> Result<()> {
        self.codec = codec;
        if self.video.is_none()
            && let Some(f) = fmtp
        {
            match video_track(codec, f) {
                Ok(v) => self.video = Some(v),
                Err(e) => {
                    debug!(error = %e, "SDP parameter sets unusable; waiting for in-band ones")
                }
            }
        }
        Ok(())
    }

    async fn frame(&mut self, f: Frame) -> Result<()> {
        let mut new_params = false;
        if f.key {
            let (v, s, p) = depack::parameter_sets(self.codec, &f.data);
            if let (Some(s), Some(p)) = (s, p) {
                let ps: ParamSets = (v.map(<[u8]>::to_vec), s.to_vec(), p.to_vec());
                if self.params.as_ref() != Some(&ps) {
                    match video_track(self.codec, &fmtp_for(self.codec, &ps)) {
                        Ok(vt) => {
                            new_params = self.params.is_some();
                            // A segment in progress keeps its init; the change applies from
                            // the cut the segmenter makes at this keyframe.
                            if self.seg.started() && new_params {
                                self.finish().await?;
                            }
                            self.video = Some(vt);
                            self.params = Some(ps);
                        }
                        Err(e) => warn!(error = %e, "in-band parameter sets unusable"),
                    }
                }
            }
        }
        if self.video.is_none() {
            return Ok(());
        }
        if f.damaged {
            // A frame with lost packets would decode to garbage and break the GOP after it:
            // end the segment here and start again at the next keyframe.
            self.finish().await?;
            return Ok(());
        }
        if let Some(last) = self.last_us {
            let d = f.unix_us - last;
            if f.discontinuity || d <= 0 || d > MAX_FRAME_GAP_US {
                self.finish().await?;
            }
        }
        if self.need_key && !f.key {
            return Ok(());
        }
        self.need_key = false;
        let base = *self.base_us.get_or_insert(f.unix_us);
        let ts = (f.unix_us - base) * 9 / 100;
        self.last_us = Some(f.unix_us);
        self.latest_us = Some(f.unix_us);
        let mut ev = std::mem::take(&mut self.events);
        let frame = VideoIn {
            ts,
            key: f.key,
            new_params,
            data: f.data,
        };
        if self.seg.push_video(frame, &mut ev).is_err() {
            // Cannot happen after the checks above; restart the session to be safe.
            self.handle(&mut ev).await?;
            self.finish().await?;
            return Ok(());
        }
        self.handle(&mut ev).await?;
        self.events = ev;
        Ok(())
    }
}
