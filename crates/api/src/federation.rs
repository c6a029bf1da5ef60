//! Cascaded domains (federation): a child Vigil registers with a parent Vigil and shares some of
//! its cameras; the parent lists them and (later) plays them back through the child.
//!
//! - [`ParentDomain`], in the child: where the parent is, how to prove who we are to it, and
//!   what we share (a camera selector in the ParentDomain's namespace and the rights).
//! - [`ChildDomain`], in the parent: one per child it accepts, by the identity (client
//!   certificate common name) the child presents, with the rights the parent accepts from it.
//!   Its status says whether the child is online, how many cameras it shares and when it last
//!   sent a keepalive.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// What a parent may do with a shared camera.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Right {
    /// Watch the live stream.
    Live,
    /// Query recordings and play them back (HLS with seek).
    Playback,
    /// Download MP4 exports.
    Export,
}

impl Right {
    pub const ALL: [Right; 3] = [Right::Live, Right::Playback, Right::Export];

    pub fn as_str(self) -> &'static str {
        match self {
            Right::Live => "live",
            Right::Playback => "playback",
            Right::Export => "export",
        }
    }
}

/// Which cameras of the ParentDomain's namespace are shared: all whose labels include every
/// pair of `matchLabels` (no `matchLabels`: every camera of the namespace).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CameraSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub match_labels: BTreeMap<String, LabelValue>,
}

/// A label value (at most 63 characters, as Kubernetes allows).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(transparent)]
pub struct LabelValue(#[schemars(length(max = 63))] pub String);

impl CameraSelector {
    /// Whether a camera with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|l| *l == v.0))
    }
}

/// In a child domain: the parent it registers with and what it shares with it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "vigil.dev",
    version = "v1alpha1",
    kind = "ParentDomain",
    plural = "parentdomains",
    shortname = "pd",
    category = "vigil",
    namespaced,
    status = "ParentDomainStatus",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url"}"#,
    printcolumn = r#"{"name":"Registered","type":"string","jsonPath":".status.conditions[?(@.type==\"Registered\")].status"}"#,
    printcolumn = r#"{"name":"Shared","type":"integer","jsonPath":".status.sharedCameras"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ParentDomainSpec {
    /// The parent access point's federation address, `https://host:port`.
    #[schemars(length(min = 9, max = 2048), regex(pattern = r"^https://"))]
    pub url: String,
    /// Secret (same namespace) with the client certificate the parent knows this domain by
    /// (`tls.crt`, `tls.key`) and the CA that signed the parent's server certificate (`ca.crt`).
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: String,
    /// Which cameras of this namespace are shared.
    #[serde(default)]
    pub camera_selector: CameraSelector,
    /// What the parent may do with them.
    #[schemars(length(min = 1, max = 3))]
    pub rights: Vec<Right>,
    /// The name the parent shows for this domain (default: the name the parent gave it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub display_name: Option<String>,
    /// Child domains of this domain (its ChildDomains) whose shared cameras are passed on to
    /// the parent, for a cascade of three or more levels. The parent sees them with the domain
    /// path `[<this domain>, <ChildDomain name>, …]`; its requests for them are checked here
    /// (within `rights` and what that child shares) and sent on through that child's tunnel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub pass_on: Vec<ChildDomainRef>,
}

/// A ChildDomain of this domain, by name (namespace: the referring object's, unless given).
/// Names are the path elements the parent sees, so two passed-on children need distinct names.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChildDomainRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParentDomainStatus {
    /// `Registered`: the parent accepted us and the last keepalive was answered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 8),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"])
    )]
    pub conditions: Vec<Condition>,
    /// Cameras shared with the parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_cameras: Option<u32>,
    /// The last keepalive the parent answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_keepalive: Option<DateTime<Utc>>,
}

/// In a parent domain: a child it accepts.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "vigil.dev",
    version = "v1alpha1",
    kind = "ChildDomain",
    plural = "childdomains",
    shortname = "cd",
    category = "vigil",
    namespaced,
    status = "ChildDomainStatus",
    printcolumn = r#"{"name":"Identity","type":"string","jsonPath":".spec.identity"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Cameras","type":"integer","jsonPath":".status.cameras"}"#,
    printcolumn = r#"{"name":"Keepalive","type":"date","jsonPath":".status.lastKeepalive"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ChildDomainSpec {
    /// The common name of the client certificate the child presents (signed by the CA the
    /// parent's federation listener trusts). A registration under any other name is refused.
    #[schemars(length(min = 1, max = 253))]
    pub identity: String,
    /// The rights the parent accepts from this child; what users get is the intersection of
    /// these, what the child shares and what the user may do.
    #[schemars(length(min = 1, max = 3))]
    pub rights: Vec<Right>,
    /// Most cameras the parent keeps for this child (a registration beyond it is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_cameras: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChildDomainStatus {
    /// `Ready`: True while the child is registered and its keepalives arrive (reason `Online`),
    /// False once they stop (reason `Offline`) or it unregistered (`Unregistered`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 8),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"])
    )]
    pub conditions: Vec<Condition>,
    /// Cameras the child shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cameras: Option<u32>,
    /// Of those, the ones online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cameras_online: Option<u32>,
    /// The last keepalive (or other message) from the child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_keepalive: Option<DateTime<Utc>>,
    /// The display name the child gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub display_name: Option<String>,
    /// The rights in effect: the child's shared rights within `spec.rights`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub rights: Vec<Right>,
}

/// The rights both sides grant, in a stable order.
pub fn intersect(a: &[Right], b: &[Right]) -> Vec<Right> {
    Right::ALL
        .into_iter()
        .filter(|r| a.contains(r) && b.contains(r))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_and_rights() {
        let s: CameraSelector =
            serde_json::from_value(serde_json::json!({"matchLabels": {"share": "yes"}})).unwrap();
        let mut l = BTreeMap::new();
        assert!(!s.matches(&l));
        l.insert("share".to_string(), "yes".to_string());
        l.insert("x".to_string(), "y".to_string());
        assert!(s.matches(&l));
        assert!(CameraSelector::default().matches(&BTreeMap::new()));
        assert_eq!(
            intersect(
                &[Right::Export, Right::Live],
                &[Right::Playback, Right::Live, Right::Export]
            ),
            vec![Right::Live, Right::Export]
        );
        let r: Vec<Right> = serde_json::from_str(r#"["live","playback"]"#).unwrap();
        assert_eq!(r, vec![Right::Live, Right::Playback]);
    }
}
