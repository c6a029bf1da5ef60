//! Vigil's recorder: pulls cameras' RTSP streams into self-contained fragmented MP4 segments
//! in object storage (see `docs/storage.md`).
//!
//! Pure logic (key layout, segment cutting, timing, backoff, bitrate, buffer accounting) lives
//! in modules without I/O so that it can be property-tested and reused by backfill and
//! playback; the I/O modules (`camera`, `spool`, `uploader`, `kubernetes`, `http`) wire it up.

pub mod backoff;
pub mod error;
pub mod ewma;
pub mod layout;
pub mod mp4;
pub mod segmenter;
pub mod timeline;

pub use error::{Error, Result};
