//! Vigil's API types and the operator that manages them.

pub mod api;
pub mod controller;
pub mod crd;
pub mod doctor;
pub mod error;
pub mod leader;
pub mod liveness;
pub mod metrics;
pub mod placement;
pub mod schedule;
pub mod validation;
pub mod webhook;

/// Installs rustls' process-wide crypto provider. kube's rustls client panics without one,
/// so every binary calls this first. Calling it twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
