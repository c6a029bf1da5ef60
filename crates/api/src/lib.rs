//! The Vigil API: group `vigil.dev`, version `v1alpha1`.
//!
//! Three custom resources:
//! - [`Camera`]: one RTSP source, where it is recorded, how, and for how long.
//! - [`RecorderPool`]: a set of recorder pods, their capacity and their storage target.
//! - [`Backfill`]: a time window of one camera to re-fetch from the camera's edge storage.
//!
//! Field-level validation (URL scheme, bitrate > 0, retention >= 1 day, enums) lives in the
//! OpenAPI schema so that every API server enforces it. Rules that compare two fields (a window
//! must end after it starts) cannot be expressed in the OpenAPI schema of Kubernetes < 1.25, so
//! they live in [`crate::validation`], enforced by the operator's admission webhook and again by
//! the reconcilers (which report a condition when the webhook is not installed).

mod backfill;
mod camera;
mod condition;
pub mod crd;
mod federation;
pub mod labels;
pub mod netpolicy;
mod pool;
pub mod redact;
pub mod schedule;
mod site;
pub mod validation;

pub use backfill::*;
pub use camera::*;
pub use condition::*;
pub use federation::*;
pub use pool::*;
pub use site::*;

/// The API group of every Vigil resource.
pub const GROUP: &str = "vigil.dev";
/// The API version of every Vigil resource.
pub const VERSION: &str = "v1alpha1";
pub use labels::{POOL_LABEL, RECORDER_LABEL};

/// A reference to a Secret in the same namespace, with the keys to read from it.
#[derive(
    serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Name of the Secret (same namespace as the referring object).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key holding the user name. Default `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub username_key: Option<String>,
    /// Key holding the password. Default `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub password_key: Option<String>,
}

impl CredentialsSecretRef {
    pub fn username_key(&self) -> &str {
        self.username_key.as_deref().unwrap_or("username")
    }
    pub fn password_key(&self) -> &str {
        self.password_key.as_deref().unwrap_or("password")
    }
}

/// A closed-open time interval `[start, end)` in UTC.
#[derive(
    serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct TimeWindow {
    /// Start of the window (RFC 3339), inclusive.
    pub start: chrono::DateTime<chrono::Utc>,
    /// End of the window (RFC 3339), exclusive. Must be after `start`.
    pub end: chrono::DateTime<chrono::Utc>,
}

impl TimeWindow {
    pub fn seconds(&self) -> f64 {
        (self.end - self.start).num_milliseconds() as f64 / 1000.0
    }
}

/// Installs rustls' process-wide crypto provider. kube's rustls client panics without one,
/// so every binary that talks to the API server calls this first. Calling it twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
