//! Kubernetes mode of `serve` and `retention`: storage from a RecorderPool (and its S3
//! credentials Secret), cameras from the API.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use vigil_operator::api::{Camera, RecorderPool};

use crate::config::{S3Credentials, StorageConfig};
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

fn secret_value(s: &Secret, key: &str, what: &str) -> Result<String> {
    let v = s
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| Error::Config(format!("{what} has no key {key:?}")))?;
    let text = String::from_utf8(v.0.clone())
        .map_err(|_| Error::Config(format!("{what} key {key:?} is not UTF-8")))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

/// The pool's storage and key prefix.
pub async fn storage(client: &Client, ns: &str, name: &str) -> Result<(StorageConfig, String)> {
    let pools: Api<RecorderPool> = Api::namespaced(client.clone(), ns);
    let pool = pools.get(name).await?;
    let st = pool.spec.storage;
    match (st.s3, st.local) {
        (Some(s3), None) => {
            let r = &s3.credentials_secret_ref;
            let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
            let secret = secrets.get(&r.name).await?;
            let what = format!("Secret {ns}/{}", r.name);
            let access_key_id = secret_value(
                &secret,
                r.username_key.as_deref().unwrap_or("accessKeyId"),
                &what,
            )?;
            let secret_access_key = secret_value(
                &secret,
                r.password_key.as_deref().unwrap_or("secretAccessKey"),
                &what,
            )?;
            Ok((
                StorageConfig::S3 {
                    bucket: s3.bucket.clone(),
                    endpoint: s3.endpoint.clone(),
                    region: s3.region.clone().unwrap_or_else(|| "us-east-1".into()),
                    path_style: s3.path_style,
                    allow_http: s3
                        .endpoint
                        .as_deref()
                        .is_some_and(|e| e.starts_with("http://")),
                    credentials: Some(S3Credentials {
                        access_key_id,
                        secret_access_key,
                    }),
                },
                s3.prefix.unwrap_or_default(),
            ))
        }
        (None, Some(local)) => Ok((
            StorageConfig::Local {
                path: local.path.into(),
            },
            String::new(),
        )),
        _ => Err(Error::Config(format!(
            "RecorderPool {ns}/{name}: storage must set exactly one of s3 or local"
        ))),
    }
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
