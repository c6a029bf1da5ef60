//! `vigil-jobs retention`: deletes each camera's segments and gap records older than the
//! camera's retention.
//!
//! Kubernetes mode (`--pool ns/name`, run by the operator as a CronJob per pool): the pool's
//! storage, its cameras and each camera's `spec.retention.days`. File mode (`--config`): the
//! cameras found in the store, all with `--days`.
//!
//! Safety: only the camera's own prefix is listed, and every key is parsed and checked to
//! belong to that camera before it may be deleted; keys that do not parse are never deleted.
//! An object is deleted only when its whole interval ended before the cut-off, so footage
//! that straddles the cut-off is kept.

use std::path::PathBuf;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path;
use tracing::{info, warn};

use crate::error::{Error, Result};
use vigil_config::{FileConfig, Overrides};
use vigil_store::layout::{self, CameraId, ObjectKey};

const DAY_MS: i64 = 86_400_000;

#[derive(clap::Args, Debug, Clone)]
pub struct RetentionArgs {
    /// Storage from a recorder config file; every camera in the store gets `--days`.
    #[arg(long, conflicts_with = "pool", required_unless_present = "pool")]
    pub config: Option<PathBuf>,
    /// Kubernetes mode: the RecorderPool (`namespace/name`); each of its cameras keeps
    /// `spec.retention.days`.
    #[arg(long)]
    pub pool: Option<String>,
    /// Retention in file mode.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// "Now" in Unix milliseconds (tests); default: the clock.
    #[arg(long, hide = true)]
    pub now_ms: Option<i64>,
    /// Only count what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
}

/// Everything whose interval ended at or before this is expired.
pub fn cutoff(now_ms: i64, days: u32) -> i64 {
    now_ms.saturating_sub(i64::from(days).saturating_mul(DAY_MS))
}

/// Whether `rel` (a key relative to the prefix) is an expired object of `camera`. Pure; the
/// property tests pin the window.
pub fn expired(rel: &str, camera: &CameraId, cutoff_ms: i64) -> bool {
    match ObjectKey::parse_relative(rel) {
        Ok(k) => k.camera() == camera && k.end_ms() <= cutoff_ms,
        Err(_) => false,
    }
}

/// What one camera's pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub listed: u64,
    pub deleted: u64,
    pub deleted_bytes: u64,
    pub kept: u64,
    pub errors: u64,
}

/// Deletes `camera`'s expired objects in batches (`delete_stream`: S3 DeleteObjects).
pub async fn sweep_camera(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    camera: &CameraId,
    cutoff_ms: i64,
    dry_run: bool,
) -> Result<Outcome> {
    let root = layout::camera_prefix(prefix, camera);
    let p = prefix.trim_matches('/');
    let strip = if p.is_empty() {
        String::new()
    } else {
        format!("{p}/")
    };
    let mut out = Outcome::default();
    let mut doomed: Vec<(Path, u64)> = Vec::new();
    let mut listing = store.list(Some(&Path::from(root.trim_end_matches('/'))));
    while let Some(meta) = listing.try_next().await? {
        out.listed += 1;
        let key = meta.location.as_ref();
        let rel = key.strip_prefix(&strip).unwrap_or(key);
        if expired(rel, camera, cutoff_ms) {
            doomed.push((meta.location, meta.size));
        } else {
            out.kept += 1;
        }
    }
    if dry_run {
        out.deleted = doomed.len() as u64;
        out.deleted_bytes = doomed.iter().map(|(_, s)| s).sum();
        return Ok(out);
    }
    let sizes: std::collections::HashMap<Path, u64> = doomed.iter().cloned().collect();
    let paths = futures::stream::iter(doomed.into_iter().map(|(p, _)| Ok(p))).boxed();
    let mut results = store.delete_stream(paths);
    while let Some(r) = results.next().await {
        match r {
            Ok(p) => {
                out.deleted += 1;
                out.deleted_bytes += sizes.get(&p).copied().unwrap_or(0);
            }
            // Already gone (a concurrent run) is success.
            Err(object_store::Error::NotFound { .. }) => out.deleted += 1,
            Err(e) => {
                out.errors += 1;
                warn!(camera = %camera, error = %vigil_store::error::chain(&e), "delete failed");
            }
        }
    }
    Ok(out)
}

/// `vigil-jobs retention`.
pub async fn run(a: RetentionArgs) -> Result<()> {
    let now = a
        .now_ms
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let (store, prefix, cameras) = if let Some(p) = &a.pool {
        vigil_api::install_crypto_provider();
        let (ns, name) = vigil_store::pool_store::parse_ref(p)?;
        let client = kube::Client::try_default().await?;
        let (storage, prefix) = vigil_store::pool_store::storage(&client, &ns, &name).await?;
        let cams = vigil_store::pool_store::cameras(&client, &ns, &name).await?;
        (vigil_store::backend::build(&storage)?, prefix, cams)
    } else {
        let path = a
            .config
            .as_ref()
            .ok_or_else(|| Error::Config("--config or --pool is required".into()))?;
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
        let r = FileConfig::parse(&text)?.resolve(&Overrides::default())?;
        let store = vigil_store::backend::build(&r.storage)?;
        let cams = vigil_store::catalog::Catalog::new(store.clone(), &r.prefix)
            .cameras()
            .await?
            .into_iter()
            .map(|c| (c, a.days))
            .collect();
        (store, r.prefix, cams)
    };
    let mut total = Outcome::default();
    for (cam, days) in cameras {
        if days == 0 {
            // 0 would delete everything up to now, including footage being recorded.
            warn!(camera = %cam, "retention of 0 days ignored");
            continue;
        }
        let c = cutoff(now, days);
        let o = sweep_camera(&store, &prefix, &cam, c, a.dry_run).await?;
        info!(camera = %cam, days, cutoff = %vigil_store::gaps::rfc3339(c), listed = o.listed,
              deleted = o.deleted, deleted_bytes = o.deleted_bytes, kept = o.kept,
              errors = o.errors, dry_run = a.dry_run, "retention");
        total.listed += o.listed;
        total.deleted += o.deleted;
        total.deleted_bytes += o.deleted_bytes;
        total.kept += o.kept;
        total.errors += o.errors;
    }
    info!(
        listed = total.listed,
        deleted = total.deleted,
        deleted_bytes = total.deleted_bytes,
        kept = total.kept,
        errors = total.errors,
        "retention done"
    );
    // Counts on stdout as well, one line, for CronJob logs and scripts.
    println!(
        "retention: listed={} deleted={} deleted_bytes={} kept={} errors={}",
        total.listed, total.deleted, total.deleted_bytes, total.kept, total.errors
    );
    if total.errors > 0 {
        return Err(Error::Config(format!(
            "{} objects could not be deleted",
            total.errors
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use vigil_store::layout::{GapKey, Origin, SegmentKey};

    fn cam(n: &str) -> CameraId {
        CameraId::new("site", n).unwrap()
    }

    #[test]
    fn window_example() {
        let now = 100 * DAY_MS;
        let c = cutoff(now, 7);
        assert_eq!(c, 93 * DAY_MS);
        let old = SegmentKey::new(cam("a"), c - 10_000, c, Origin::Live).unwrap();
        let straddle = SegmentKey::new(cam("a"), c - 5_000, c + 5_000, Origin::Backfill).unwrap();
        let gap = GapKey::new(cam("a"), c - 50_000, c - 1).unwrap();
        assert!(expired(&old.relative(), &cam("a"), c));
        assert!(!expired(&straddle.relative(), &cam("a"), c));
        assert!(expired(&gap.relative(), &cam("a"), c));
        assert!(!expired(&old.relative(), &cam("b"), c));
        assert!(!expired(
            "site/a/2025/01/01/00/junk.mp4",
            &cam("a"),
            i64::MAX
        ));
        assert!(!expired("site/a/notes.txt", &cam("a"), i64::MAX));
    }

    proptest! {
        #[test]
        fn deletes_exactly_what_ended_before_the_cutoff(
            now in 40 * DAY_MS..20_000 * DAY_MS,
            days in 1u32..400,
            start_back in 0i64..500 * DAY_MS,
            len in 1i64..700_000,
            other in any::<bool>(),
            gap in any::<bool>(),
        ) {
            let owner = if other { cam("other") } else { cam("a") };
            let start = (now - start_back).max(0);
            let rel = if gap {
                GapKey::new(owner.clone(), start, start + len).unwrap().relative()
            } else {
                SegmentKey::new(owner.clone(), start, start + len, Origin::Live).unwrap().relative()
            };
            let c = cutoff(now, days);
            let e = expired(&rel, &cam("a"), c);
            prop_assert_eq!(e, !other && start + len <= c);
            // Never anything that is still inside the retention window.
            if e {
                prop_assert!(start + len <= now - i64::from(days) * DAY_MS);
            }
        }
    }
}
