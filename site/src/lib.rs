//! Remote sites behind NAT (issue #15, `docs/sites.md`).
//!
//! - [`gateway`]: `vigil-gateway`, at the site; dials out only.
//! - [`rendezvous`]: `vigil-rendezvous`, in the cluster; authenticates gateways and recorders and
//!   relays streams between them.
//! - [`client`]: what a recorder uses to open a byte stream to a site's camera.
//!
//! This slice carries every stream over the relay on TLS-over-TCP (one control connection per
//! gateway, one TLS connection per camera stream); the LAN and hole-punched paths are not built.

pub mod backoff;
pub mod client;
pub mod error;
pub mod gateway;
pub mod proto;
pub mod rendezvous;
pub mod tls;

pub use client::{SiteLink, SiteStream};
pub use error::{Error, Result};
