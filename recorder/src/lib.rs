//! Vigil's recorder: pulls cameras' RTSP streams into self-contained fragmented MP4 segments
//! in object storage (see `docs/storage.md`).
//!
//! Recording only: ingest (`camera`, `supervisor`), the local buffer (`spool`), the uploader,
//! the Kubernetes side (`kubernetes`: cameras assigned to this pod, its Lease, camera status),
//! its health/metrics server, and the live tap (`live`) that offers a camera's frames to the
//! access point. Formats and protocols come from `vigil-media`, the key
//! layout and listings from `vigil-store`; backfill, audit and retention are `vigil-jobs`, and
//! playback is the access point, `vigil-access`.

pub mod camera;
pub mod error;
pub mod event_gate;
pub mod event_hook;
pub mod event_source;
pub mod http;
pub mod kubernetes;
pub mod live;
pub mod metrics;
pub mod prebuf_spill;
pub mod quarantine;
pub mod record;
pub mod spool;
pub mod status;
pub mod supervisor;
pub mod uploader;
pub mod windows;

pub use error::{Error, Result};
