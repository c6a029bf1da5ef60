//! The object store: S3 (any S3-compatible endpoint) or a local directory.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::config::StorageConfig;
use crate::error::{Error, Result};

pub fn build(storage: &StorageConfig) -> Result<Arc<dyn ObjectStore>> {
    match storage {
        StorageConfig::Local { path } => {
            std::fs::create_dir_all(path)
                .map_err(|e| Error::io("creating store directory", path, e))?;
            Ok(Arc::new(LocalFileSystem::new_with_prefix(path)?))
        }
        StorageConfig::S3 {
            bucket,
            endpoint,
            region,
            path_style,
            allow_http,
            credentials,
        } => {
            // from_env picks up AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN
            // (and web identity / instance credentials on AWS); explicit values win.
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_region(region)
                .with_virtual_hosted_style_request(!path_style)
                // The recorder retries forever from its buffer, in order; the client's own
                // retries only smooth over single failed requests and must give up quickly so
                // that an outage shows in metrics and the buffer within seconds.
                .with_retry(RetryConfig {
                    backoff: BackoffConfig {
                        init_backoff: Duration::from_millis(100),
                        max_backoff: Duration::from_secs(2),
                        base: 2.0,
                    },
                    max_retries: 2,
                    retry_timeout: Duration::from_secs(15),
                })
                // allow_http lives in the client options: set it after replacing them.
                .with_client_options(
                    ClientOptions::new()
                        .with_connect_timeout(Duration::from_secs(5))
                        .with_timeout(Duration::from_secs(60)),
                )
                .with_allow_http(*allow_http);
            if let Some(e) = endpoint {
                b = b.with_endpoint(e);
            }
            // Signing the payload means a SHA-256 over every byte recorded (15 % of the
            // recorder's CPU in the S3 benchmark). Over TLS the transport already protects the
            // body, so only plain-HTTP endpoints (lab setups) pay for it.
            let tls = endpoint
                .as_deref()
                .is_none_or(|e| e.starts_with("https://"));
            b = b.with_unsigned_payload(tls);
            if let Some(c) = credentials {
                b = b
                    .with_access_key_id(&c.access_key_id)
                    .with_secret_access_key(&c.secret_access_key);
            }
            Ok(Arc::new(b.build()?))
        }
    }
}
