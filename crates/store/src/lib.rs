//! Vigil's store: where footage lives and how it is named, read and accounted for.
//!
//! - [`layout`]: the object key layout (`<prefix>/<ns>/<camera>/YYYY/MM/DD/HH/<start>-<end>-<origin>.mp4`)
//!   and camera identities; see `docs/storage.md`.
//! - [`intervals`]: the one interval type and its pure arithmetic; [`playlist`]: segment keys as
//!   time (coverage of a window, a run of segments to play).
//! - [`catalog`]: listing a camera's segments for a window.
//! - [`events`]: event records (motion, inputs, manual, external) kept with the footage.
//! - [`gaps`]: gap records (intervals without footage, and why); [`holes`]: holes found by a
//!   recorder or the audit, turned into Backfills under deterministic names.
//! - [`config`], [`backend`], [`pool_store`]: the storage target (S3 or a local directory),
//!   built into an `ObjectStore`, and a RecorderPool's target with its Secret.
//!
//! Pure modules have no I/O; `catalog`, `backend` and `pool_store` do the talking.

pub mod backend;
pub mod catalog;
pub mod config;
pub mod error;
pub mod events;
pub mod gaps;
pub mod holes;
pub mod intervals;
pub mod layout;
pub mod playlist;
pub mod pool_store;

pub use config::{S3Credentials, StorageConfig};
pub use error::{Error, Result};
