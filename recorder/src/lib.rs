//! Vigil's recorder: pulls cameras' RTSP streams into self-contained fragmented MP4 segments
//! in object storage (see `docs/storage.md`).
//!
//! Pure logic (key layout, segment cutting, timing, backoff, bitrate, gaps, buffer accounting)
//! lives in modules without I/O so that it can be property-tested and reused by backfill and
//! playback; the I/O modules (`camera`, `spool`, `uploader`, `kubernetes`, `http`, `record`)
//! wire it up.

pub mod audit;
pub mod backfill;
pub mod backoff;
pub mod camera;
pub mod config;
pub mod error;
pub mod ewma;
pub mod gaps;
pub mod holes;
pub mod http;
pub mod kubernetes;
pub mod layout;
pub mod metrics;
pub mod mp4;
pub mod onvif;
pub mod playback;
pub mod pool_store;
pub mod record;
pub mod redact;
pub mod replay;
pub mod retention;
pub mod segmenter;
pub mod spool;
pub mod status;
pub mod store;
pub mod supervisor;
pub mod timeline;
pub mod uploader;

pub use error::{Error, Result};
