//! Vigil's media: formats and camera protocols, without storage or Kubernetes.
//!
//! - [`mp4`]: the fragmented MP4 writer; [`fmp4`]: the one reader of stored segments.
//! - [`segmenter`]: cutting frames into segments on keyframes; [`timeline`]: RTP time → UTC.
//! - [`replay`]: the RTSP replay client (ONVIF Profile G replay, vendor playback URLs) and its
//!   depacketizers; [`onvif`]: the ONVIF SOAP client (recording search, replay URI).
//! - [`auth`]: Basic and Digest (RFC 7616/2617, `qop`) for RTSP and HTTP.
//! - [`netguard`]: resolving and connecting to a camera under the pool's address policy.
//! - [`live`]: the recorder → access point live frame stream and H.264 Annex B helpers.
//! - [`livemux`]: live frames into fMP4 (init segment from the SPS, parts) for LL-HLS.
//! - [`backoff`], [`ewma`]: small pure helpers for retry delays and bitrate smoothing.

pub mod auth;
pub mod backoff;
pub mod error;
pub mod ewma;
pub mod fmp4;
pub mod live;
pub mod livemux;
pub mod mp4;
pub mod netguard;
pub mod onvif;
pub mod onvif_events;
pub mod replay;
pub mod segmenter;
pub mod timeline;

pub use error::{Error, Result};
