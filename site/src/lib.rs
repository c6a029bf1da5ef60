//! Remote sites behind NAT (issue #15, `docs/sites.md`).
//!
//! - [`gateway`]: `vigil-gateway`, at the site; dials out only.
//! - [`rendezvous`]: `vigil-rendezvous`, in the cluster; authenticates gateways and recorders and
//!   relays streams between them.
//! - [`kubernetes`]: the rendezvous service's Kubernetes mode (`Site`s and Secrets watched,
//!   `Site` status written).
//! - [`client`]: what a recorder uses to open a byte stream to a site's camera.
//!
//! Every stream is TLS over TCP, one connection per camera stream. Two paths are raced for each
//! stream: the LAN path ([`lan`]: the gateway reaches the recorder on the site's own network)
//! and the relay; the LAN path wins when it opens. The hole-punched (QUIC) path is not built.

pub mod backoff;
pub mod client;
pub mod direct;
pub mod error;
pub mod gateway;
pub mod kubernetes;
pub mod lan;
pub mod metrics;
pub mod proto;
pub mod ratelimit;
pub mod rendezvous;
pub mod tls;
pub mod udprelay;

pub use client::{SiteLink, SiteStream};
pub use error::{Error, Result};
pub use lan::Path;
