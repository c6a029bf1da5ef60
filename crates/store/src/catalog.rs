//! What the store holds: cameras and the segments of a time window, from object listings.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path;
use tracing::debug;

use crate::error::Result;
use crate::intervals::{self, Interval};
use crate::layout::{self, CameraId, SegmentKey};

/// Longest segment the reader assumes when listing hour directories (`segmentSeconds` is at
/// most 600, plus slack for the first keyframe after it).
pub const MAX_SEGMENT_MS: i64 = 660_000;

#[derive(Clone)]
pub struct Catalog {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: String,
}

impl Catalog {
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Catalog {
            store,
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    pub fn path(&self, key: &SegmentKey) -> Path {
        Path::from(key.to_key(&self.prefix))
    }

    /// Segments overlapping `window`, with their sizes, in start order. Objects that do not
    /// parse as this camera's segments are ignored (a stray upload must not break playback).
    pub async fn segments(
        &self,
        camera: &CameraId,
        window: Interval,
    ) -> Result<Vec<(SegmentKey, u64)>> {
        segments(self.store.as_ref(), &self.prefix, camera, window).await
    }

    /// Cameras that have a directory in the store (file mode: the store is the catalogue).
    pub async fn cameras(&self) -> Result<Vec<CameraId>> {
        let root = if self.prefix.is_empty() {
            None
        } else {
            Some(Path::from(self.prefix.as_str()))
        };
        let mut out = Vec::new();
        let namespaces = self.store.list_with_delimiter(root.as_ref()).await?;
        for ns in namespaces.common_prefixes {
            let cams = self.store.list_with_delimiter(Some(&ns)).await?;
            for c in cams.common_prefixes {
                let (Some(n), Some(name)) = (ns.filename(), c.filename()) else {
                    continue;
                };
                if let Ok(id) = CameraId::new(n, name) {
                    out.push(id);
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// The segments of `camera` under `prefix` overlapping `window`, with their sizes, in start
/// order: the one listing of the store that playback, backfill, audit and recorders share.
/// Objects that do not parse as this camera's segments are ignored.
pub async fn segments(
    store: &dyn ObjectStore,
    prefix: &str,
    camera: &CameraId,
    window: Interval,
) -> Result<Vec<(SegmentKey, u64)>> {
    let dirs = layout::hour_prefixes(prefix, camera, window.start, window.end, MAX_SEGMENT_MS)?;
    let lists = futures::stream::iter(dirs.into_iter().map(|d| async move {
        let p = Path::from(d.trim_end_matches('/'));
        store.list(Some(&p)).try_collect::<Vec<_>>().await
    }))
    .buffered(8)
    .try_collect::<Vec<_>>()
    .await?;
    let mut out = Vec::new();
    for meta in lists.into_iter().flatten() {
        match SegmentKey::parse(meta.location.as_ref(), prefix) {
            Ok(k) if &k.camera == camera && k.end_ms > window.start && k.start_ms < window.end => {
                out.push((k, meta.size))
            }
            Ok(_) => {}
            Err(e) => debug!(key = %meta.location, error = %e, "not a segment"),
        }
    }
    out.sort_by_key(|(k, _)| (k.start_ms, k.end_ms, k.origin));
    Ok(out)
}

/// The merged intervals the store holds for `camera` that overlap `window`, live and backfilled
/// alike (overlaps are harmless): what a backfill must not fetch again, and where a recorder's
/// footage ends.
pub async fn covered(
    store: &dyn ObjectStore,
    prefix: &str,
    camera: &CameraId,
    window: Interval,
) -> Result<Vec<Interval>> {
    let found = segments(store, prefix.trim_matches('/'), camera, window).await?;
    Ok(intervals::merge(
        found
            .iter()
            .map(|(k, _)| Interval::new(k.start_ms, k.end_ms))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intervals::missing;
    use crate::layout::Origin;
    use object_store::ObjectStoreExt;
    use object_store::path::Path as StorePath;

    #[tokio::test]
    async fn coverage_lists_the_hour_before() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let cam = CameraId::new("ns", "cam").unwrap();
        let h = 1_767_322_800_000; // 03:00
        for (s, e, o) in [
            (h - 5_000, h + 5_000, Origin::Live),
            (h + 5_000, h + 9_000, Origin::Backfill),
            (h + 20_000, h + 30_000, Origin::Live),
        ] {
            let k = SegmentKey::new(cam.clone(), s, e, o).unwrap();
            store
                .put(
                    &StorePath::from(k.to_key("p")),
                    bytes::Bytes::from_static(b"x").into(),
                )
                .await
                .unwrap();
        }
        let c = covered(store.as_ref(), "p", &cam, Interval::new(h, h + 40_000))
            .await
            .unwrap();
        assert_eq!(
            c,
            vec![
                Interval::new(h - 5_000, h + 9_000),
                Interval::new(h + 20_000, h + 30_000)
            ]
        );
        let m = missing(Interval::new(h, h + 40_000), &c, 100);
        assert_eq!(
            m,
            vec![
                Interval::new(h + 9_000, h + 20_000),
                Interval::new(h + 30_000, h + 40_000)
            ]
        );
    }
}
