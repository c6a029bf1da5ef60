//! Kubernetes mode of `serve` and `retention`: storage from a RecorderPool (and its S3
//! credentials Secret), cameras from the API.

use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use vigil_api::Camera;

use crate::config::StorageConfig;
use crate::error::{Error, Result};
use crate::layout::CameraId;

/// `ns/name`.
pub fn parse_ref(s: &str) -> Result<(String, String)> {
    let (ns, name) = s
        .split_once('/')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains('/'))
        .ok_or_else(|| Error::Config(format!("--pool {s:?} is not <namespace>/<name>")))?;
    Ok((ns.to_string(), name.to_string()))
}

/// The pool's storage and key prefix.
pub async fn storage(client: &Client, ns: &str, name: &str) -> Result<(StorageConfig, String)> {
    let (_, storage, prefix) = crate::pool_store::get_pool_storage(client, ns, name).await?;
    Ok((storage, prefix))
}

/// The pool's cameras (same namespace, `spec.pool` = the pool) with their retention in days.
pub async fn cameras(client: &Client, ns: &str, pool: &str) -> Result<Vec<(CameraId, u32)>> {
    let api: Api<Camera> = Api::namespaced(client.clone(), ns);
    let mut out = Vec::new();
    for c in api.list(&ListParams::default()).await? {
        if c.spec.pool != pool {
            continue;
        }
        let id = CameraId::new(ns, &c.name_any())?;
        out.push((id, c.spec.retention.days));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_refs() {
        assert_eq!(
            parse_ref("site/main").unwrap(),
            ("site".to_string(), "main".to_string())
        );
        for bad in ["main", "/main", "site/", "a/b/c"] {
            assert!(parse_ref(bad).is_err(), "{bad}");
        }
    }
}
