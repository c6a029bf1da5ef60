//! Kubernetes mode of `backfill`: the operator's Job.
//!
//! Reads the Backfill, its Camera and the Camera's RecorderPool (storage, S3 credentials
//! Secret, segment length), runs the backfill, and merge-patches the Job's fields of the
//! Backfill status (`secondsMissingBefore`, `secondsRecovered`, `secondsLost`, `stillMissing`,
//! `bytes`, `progress`); phase, jobName, attempts and conditions are the operator's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tracing::{info, warn};
use url::Url;
use vigil_api::netpolicy::{AddressPolicy, CLUSTER_NETWORKS_ENV, ClusterNetworks};
use vigil_api::{Backfill, Camera, RecorderPool};

use super::{EdgeSource, Job, Progress, Report, env_credentials, run};
use crate::error::{Error, Result};
use vigil_config::validate_segment_seconds;
use vigil_media::netguard::Route;
use vigil_store::intervals::{DEFAULT_TOLERANCE_MS, Interval};
use vigil_store::layout::CameraId;

/// The camera's edge storage as a fetch source.
pub fn edge_source(cam: &Camera) -> Result<EdgeSource> {
    let Some(e) = &cam.spec.edge_storage else {
        return Ok(EdgeSource::None);
    };
    if let Some(o) = &e.onvif {
        let device_url = Url::parse(&o.device_url)
            .map_err(|err| Error::Config(format!("edgeStorage.onvif.deviceUrl: {err}")))?;
        return Ok(EdgeSource::Onvif {
            device_url,
            recording_token: o.recording_token.clone(),
        });
    }
    if let Some(p) = &e.rtsp_playback {
        return Ok(EdgeSource::Playback {
            url_template: p.url_template.clone(),
            time_format: p.time_format,
        });
    }
    Ok(EdgeSource::None)
}

fn status_body(r: &Report) -> serde_json::Value {
    json!({"status": {
        "secondsMissingBefore": r.seconds_missing_before,
        "secondsRecovered": r.seconds_recovered,
        "secondsLost": r.seconds_lost,
        "stillMissing": r.still_missing,
        "bytes": r.bytes,
        "progress": "100%",
    }})
}

/// Runs `backfill <namespace>/<name>`.
pub async fn run_job(target: &str, bandwidth_mbps: f64) -> Result<Report> {
    vigil_api::install_crypto_provider();
    let (ns, name) = match target.split_once('/') {
        Some((n, b)) => (n.to_string(), b.to_string()),
        None => (
            std::env::var("POD_NAMESPACE").map_err(|_| {
                Error::Config("give <namespace>/<name> or set POD_NAMESPACE".into())
            })?,
            target.to_string(),
        ),
    };
    let client = Client::try_default().await?;
    let backfills: Api<Backfill> = Api::namespaced(client.clone(), &ns);
    let bf = backfills.get(&name).await?;
    let cam: Camera = Api::namespaced(client.clone(), &ns)
        .get(&bf.spec.camera)
        .await?;
    let pool: RecorderPool = Api::namespaced(client.clone(), &ns)
        .get(&cam.spec.pool)
        .await?;
    let (storage, prefix) = vigil_store::pool_store::pool_storage(&client, &ns, &pool).await?;
    info!(backfill = %name, camera = %bf.spec.camera, storage = %storage.describe(), "backfill job");
    let store = vigil_store::backend::build(&storage)?;
    let window = Interval::new(
        bf.spec.window.start.timestamp_millis(),
        bf.spec.window.end.timestamp_millis(),
    );
    let job = Job {
        camera: CameraId::new(&ns, &bf.spec.camera)?,
        window,
        source: edge_source(&cam)?,
        creds: env_credentials(),
        store,
        prefix,
        segment_seconds: validate_segment_seconds(pool.spec.segment_seconds)?,
        bandwidth_mbps,
        passes: 3,
        tolerance_ms: DEFAULT_TOLERANCE_MS,
        read_timeout: Duration::from_secs(15),
        onvif: vigil_media::onvif::ClientOptions {
            tls: super::env_onvif_tls()?,
            ..Default::default()
        },
        route: route(&ns, &cam, &pool)?,
    };
    let progress = Arc::new(Mutex::new(Progress::default()));
    // Progress every ~2 s while running, for `kubectl get bf`.
    let reporter = {
        let api = backfills.clone();
        let name = name.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut last = String::new();
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let (pct, bytes) = match progress.lock() {
                    Ok(p) => (p.percent(), p.bytes),
                    Err(_) => continue,
                };
                if pct == last {
                    continue;
                }
                let body = json!({"status": {"progress": pct, "bytes": bytes}});
                match api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
                    .await
                {
                    Ok(_) => last = pct,
                    Err(e) => warn!(error = %e, "progress patch failed"),
                }
            }
        })
    };
    let result = run(&job, progress).await;
    reporter.abort();
    let report = result?;
    let body = status_body(&report);
    let mut attempt = 0;
    loop {
        match backfills
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => break,
            Err(e) if attempt < 5 => {
                attempt += 1;
                warn!(error = %e, "status patch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(report)
}

/// How the camera is reached: directly under the pool's address policy, or, for a camera with
/// `spec.site`, through the site link the operator gives the Job (`VIGIL_SITE_*`, the
/// namespace's `vigil-site-recorder` Secret mounted), as it gives recorder pods.
fn route(ns: &str, cam: &Camera, pool: &RecorderPool) -> Result<Route> {
    let policy = Arc::new(address_policy(pool)?);
    let link = match &cam.spec.site {
        Some(_) => vigil_config::site_link_from_env(ns)?,
        None => None,
    };
    Ok(Route::for_camera(
        policy,
        cam.spec.site.as_deref(),
        link.as_ref(),
    )?)
}

/// The pool's `cameraNetworks` with the cluster's networks the operator passes in the
/// environment (`VIGIL_CLUSTER_NETWORKS`) and the API server (`KUBERNETES_SERVICE_HOST`).
fn address_policy(pool: &RecorderPool) -> Result<AddressPolicy> {
    let cluster = ClusterNetworks::from_env()
        .map_err(|e| Error::Config(format!("{CLUSTER_NETWORKS_ENV}: {e}")))?;
    AddressPolicy::new(&pool.spec.camera_networks, &cluster)
        .map_err(|e| Error::Config(format!("spec.cameraNetworks: {e}")))
}
