//! Remote sites behind NAT (issue #15; see `docs/sites.md`): a [`Site`] names a branch site whose
//! cameras are reached through its `vigil-gateway`, which only dials out to the cluster's
//! rendezvous/relay service. A Camera names its site in `spec.site`.

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{CameraNetworks, Condition};

/// A remote site: its gateway's credentials and the camera networks the gateway may open
/// connections to on the recorders' behalf.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "vigil.dev",
    version = "v1alpha1",
    kind = "Site",
    plural = "sites",
    category = "vigil",
    namespaced,
    status = "SiteStatus",
    printcolumn = r#"{"name":"Connected","type":"string","jsonPath":".status.conditions[?(@.type==\"Connected\")].status"}"#,
    printcolumn = r#"{"name":"Path","type":"string","jsonPath":".status.path"}"#,
    printcolumn = r#"{"name":"RTT-ms","type":"number","jsonPath":".status.rttMs"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SiteSpec {
    /// Secret (same namespace) holding the site's gateway token under `token`. The gateway
    /// presents it to the rendezvous service; changing it revokes the old one.
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: String,
    /// The address ranges at the site the gateway may connect to (the cameras). The gateway
    /// refuses every other address, so a recorder credential cannot reach the site's other
    /// hosts. At least one `allow` entry.
    pub camera_networks: CameraNetworks,
    /// Relay bandwidth limit for the site, in kbit/s (each way). Unset: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000_000))]
    pub max_relay_kbps: Option<u32>,
}

/// The path a site's tunnel uses.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SitePath {
    /// The recorder reaches the gateway's LAN address directly.
    Lan,
    /// A UDP path punched through both NATs.
    Direct,
    /// Through the rendezvous service's relay.
    Relay,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SiteStatus {
    /// `Connected`: the site's gateway holds a tunnel to the rendezvous service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 8),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"])
    )]
    pub conditions: Vec<Condition>,
    /// The path in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<SitePath>,
    /// Round-trip time of the tunnel's last keepalive, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Bytes carried from the site to the cluster since the tunnel came up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    /// Bytes carried from the cluster to the site since the tunnel came up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    /// When the gateway was last heard from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
}
