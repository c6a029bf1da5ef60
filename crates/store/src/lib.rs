//! Vigil's store: where footage lives and how it is named, read and accounted for.
//!
//! - [`layout`]: the object key layout (`<prefix>/<ns>/<camera>/YYYY/MM/DD/HH/<start>-<end>-<origin>.mp4`)
//!   and camera identities; see `docs/storage.md`.
//! - [`intervals`] and [`spans`]: pure interval arithmetic (coverage, holes, playlists).
//! - [`catalog`]: listing a camera's segments for a window.
//! - [`gaps`]: gap records (intervals without footage, and why).
//! - [`config`], [`backend`], [`pool_store`]: the storage target (S3 or a local directory),
//!   built into an `ObjectStore`, and a RecorderPool's target with its Secret.
//!
//! Pure modules have no I/O; `catalog`, `backend` and `pool_store` do the talking.

pub mod backend;
pub mod catalog;
pub mod config;
pub mod error;
pub mod gaps;
pub mod intervals;
pub mod layout;
pub mod pool_store;
pub mod spans;

pub use config::{S3Credentials, StorageConfig};
pub use error::{Error, Result};
