//! The messages between a child's and a parent's access points (JSON over HTTPS with mutual
//! TLS). Every request is a POST to `/federation/v1/<verb>`; the child is known by its client
//! certificate, never by anything in a body.
//!
//! ```text
//! register    {displayName, rights}                 -> {session, keepaliveMs, timeoutMs, domain}
//! keepalive   {session}                              -> {}
//! catalog     {session, seq, full: [camera]}         -> {seq}   (replaces the catalog)
//! catalog     {session, seq, deltas: [delta]}        -> {seq}   (seq = previous + 1, else 409)
//! unregister  {session, force}                       -> {}
//! ```
//!
//! A 404 to keepalive or catalog means the parent does not know the session (it restarted, or
//! the child was declared offline and re-registered elsewhere): the child registers again. A
//! 409 means a catalog message was lost: the child sends the full catalog again.

use serde::{Deserialize, Serialize};
use vigil_api::Right;

/// Longest name (namespace, camera, domain path element) accepted from a peer.
pub const MAX_NAME: usize = 253;
/// Most levels a domain path may have.
pub const MAX_PATH: usize = 8;
/// Largest request body the federation listener reads.
pub const MAX_BODY: usize = 16 << 20;

/// A camera as the child shares it. `path` is empty for the child's own cameras and names the
/// domains below the child for cameras it passes on from its own children.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RemoteCamera {
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
    pub online: bool,
}

/// A camera's identity within one child's catalog.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "camelCase")]
pub struct CameraRef {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
    pub namespace: String,
    pub name: String,
}

impl RemoteCamera {
    pub fn key(&self) -> CameraRef {
        CameraRef {
            path: self.path.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// One change to a child's catalog.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Delta {
    Add { camera: RemoteCamera },
    Update { camera: RemoteCamera },
    Delete { camera: CameraRef },
    Online { camera: CameraRef },
    Offline { camera: CameraRef },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Register {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub rights: Vec<Right>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    pub session: u64,
    pub keepalive_ms: u64,
    pub timeout_ms: u64,
    /// The name the parent knows this child by (its ChildDomain).
    pub domain: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Keepalive {
    pub session: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CatalogPush {
    pub session: u64,
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<Vec<RemoteCamera>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deltas: Vec<Delta>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CatalogAck {
    pub seq: u64,
    pub cameras: usize,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Unregister {
    pub session: u64,
    #[serde(default)]
    pub force: bool,
}

fn name_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME && !s.chars().any(char::is_control)
}

/// Whether a camera from a peer has sane names (bounded, non-empty, printable).
pub fn valid_camera(c: &CameraRef) -> bool {
    name_ok(&c.namespace)
        && name_ok(&c.name)
        && c.path.len() <= MAX_PATH
        && c.path.iter().all(|p| name_ok(p))
}
