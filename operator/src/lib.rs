//! Vigil's operator: places cameras on recorders, fails them over, runs backfills, and serves
//! the admission webhook. The API types it manages live in the `vigil-api` crate.

pub mod controller;
pub mod doctor;
pub mod error;
pub mod leader;
pub mod liveness;
pub mod metrics;
pub mod placement;
pub mod webhook;

pub use vigil_api::install_crypto_provider;
