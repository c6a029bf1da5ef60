//! Where footage goes: an S3-compatible bucket or a local directory.

use std::path::PathBuf;

use url::Url;
use vigil_api::redact::redact_url;

/// The object store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageConfig {
    Local {
        path: PathBuf,
    },
    S3 {
        bucket: String,
        endpoint: Option<String>,
        region: String,
        path_style: bool,
        allow_http: bool,
        /// `None`: from the environment (AWS_ACCESS_KEY_ID, ...).
        credentials: Option<S3Credentials>,
    },
}

#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("S3Credentials(***)")
    }
}

impl StorageConfig {
    /// For logs: where footage goes, without secrets.
    pub fn describe(&self) -> String {
        match self {
            StorageConfig::Local { path } => format!("local directory {}", path.display()),
            StorageConfig::S3 {
                bucket, endpoint, ..
            } => format!(
                "s3 bucket {bucket} at {}",
                endpoint
                    .as_deref()
                    .and_then(|e| Url::parse(e).ok())
                    .map(|u| redact_url(&u))
                    .unwrap_or_else(|| "AWS".into())
            ),
        }
    }
}
