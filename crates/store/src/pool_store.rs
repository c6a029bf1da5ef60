//! A RecorderPool's storage target as the recorder's [`StorageConfig`] and key prefix — the one
//! mapping used by recorder pods (`record --kubernetes`), backfill Jobs, the playback server,
//! retention and the coverage audit.
//!
//! S3 keys come from the pool's `credentialsSecretRef` (keys `accessKeyId` / `secretAccessKey`
//! unless overridden); their values never appear in errors or logs, only the Secret's name and
//! the key names do.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use vigil_api::{Camera, RecorderPool, S3Storage};

use crate::layout::CameraId;

use crate::config::{S3Credentials, StorageConfig};
use crate::error::{Error, Result};
use vigil_api::redact::Credentials;

/// Default Secret keys of the pool's S3 credentials.
pub const ACCESS_KEY_ID_KEY: &str = "accessKeyId";
pub const SECRET_ACCESS_KEY_KEY: &str = "secretAccessKey";

/// Reads a user name / password pair (camera credentials, S3 keys) from a Secret. A trailing
/// newline (`kubectl create secret --from-file`) is dropped.
pub async fn read_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    user_key: &str,
    pass_key: &str,
) -> Result<Credentials> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let s = secrets.get(name).await?;
    Ok(Credentials {
        username: secret_value(&s, namespace, name, user_key)?,
        password: secret_value(&s, namespace, name, pass_key)?,
    })
}

fn secret_value(s: &Secret, namespace: &str, name: &str, key: &str) -> Result<String> {
    let v =
        s.data.as_ref().and_then(|d| d.get(key)).ok_or_else(|| {
            Error::Config(format!("Secret {namespace}/{name} has no key {key:?}"))
        })?;
    let text = String::from_utf8(v.0.clone()).map_err(|_| {
        Error::Config(format!(
            "Secret {namespace}/{name} key {key:?} is not UTF-8"
        ))
    })?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

/// The S3 settings of `s3` with the given keys (pure).
pub fn s3_config(s3: &S3Storage, credentials: Option<S3Credentials>) -> (StorageConfig, String) {
    (
        StorageConfig::S3 {
            bucket: s3.bucket.clone(),
            endpoint: s3.endpoint.clone(),
            region: s3.region.clone().unwrap_or_else(|| "us-east-1".into()),
            path_style: s3.path_style,
            // The API has no allowHttp field: an http:// endpoint is the user's choice.
            allow_http: s3
                .endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://")),
            credentials,
        },
        s3.prefix.clone().unwrap_or_default(),
    )
}

/// The storage and key prefix of `pool` (in `namespace`), reading its S3 credentials Secret.
pub async fn pool_storage(
    client: &Client,
    namespace: &str,
    pool: &RecorderPool,
) -> Result<(StorageConfig, String)> {
    let st = &pool.spec.storage;
    match (&st.s3, &st.local) {
        (Some(s3), None) => {
            let r = &s3.credentials_secret_ref;
            let creds = read_secret(
                client,
                namespace,
                &r.name,
                r.username_key.as_deref().unwrap_or(ACCESS_KEY_ID_KEY),
                r.password_key.as_deref().unwrap_or(SECRET_ACCESS_KEY_KEY),
            )
            .await?;
            Ok(s3_config(
                s3,
                Some(S3Credentials {
                    access_key_id: creds.username,
                    secret_access_key: creds.password,
                }),
            ))
        }
        (None, Some(local)) => Ok((
            StorageConfig::Local {
                path: local.path.clone().into(),
            },
            String::new(),
        )),
        _ => Err(Error::Config(format!(
            "RecorderPool {namespace}/{}: storage must set exactly one of s3 or local",
            pool.name_any()
        ))),
    }
}

/// Reads the RecorderPool `namespace/name` and returns it with its storage and key prefix.
pub async fn get_pool_storage(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<(RecorderPool, StorageConfig, String)> {
    // A missing pool is the usual mistake (wrong --pool, or POOL_NAME): say so plainly rather
    // than with the API server's whole Status object.
    let pool = Api::<RecorderPool>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await?
        .ok_or_else(|| Error::Config(format!("RecorderPool {namespace}/{name} not found")))?;
    let (storage, prefix) = pool_storage(client, namespace, &pool).await?;
    Ok((pool, storage, prefix))
}

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
    let (_, storage, prefix) = get_pool_storage(client, ns, name).await?;
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
    fn s3_settings_and_defaults() {
        let s3: S3Storage = serde_json::from_value(serde_json::json!({
            "bucket": "footage",
            "endpoint": "http://10.0.0.9:9000",
            "prefix": "vigil",
            "pathStyle": true,
            "credentialsSecretRef": {"name": "s3"},
        }))
        .unwrap();
        let (st, prefix) = s3_config(&s3, None);
        assert_eq!(prefix, "vigil");
        match st {
            StorageConfig::S3 {
                bucket,
                region,
                path_style,
                allow_http,
                ..
            } => {
                assert_eq!(bucket, "footage");
                assert_eq!(region, "us-east-1");
                assert!(path_style);
                assert!(allow_http, "http:// endpoint allows plain HTTP");
            }
            other => panic!("{other:?}"),
        }
    }

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
