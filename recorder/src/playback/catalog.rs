//! What the store holds: cameras and the segments of a time window, from object listings.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path;
use tracing::debug;

use crate::error::Result;
use crate::layout::{self, CameraId, SegmentKey};
use crate::playback::intervals::Span;

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
        window: Span,
    ) -> Result<Vec<(SegmentKey, u64)>> {
        let dirs = layout::hour_prefixes(
            &self.prefix,
            camera,
            window.start_ms,
            window.end_ms,
            MAX_SEGMENT_MS,
        )?;
        let lists = futures::stream::iter(dirs.into_iter().map(|d| {
            let store = self.store.clone();
            async move {
                let p = Path::from(d.trim_end_matches('/'));
                store.list(Some(&p)).try_collect::<Vec<_>>().await
            }
        }))
        .buffered(8)
        .try_collect::<Vec<_>>()
        .await?;
        let mut out = Vec::new();
        for meta in lists.into_iter().flatten() {
            match SegmentKey::parse(meta.location.as_ref(), &self.prefix) {
                Ok(k)
                    if &k.camera == camera
                        && k.end_ms > window.start_ms
                        && k.start_ms < window.end_ms =>
                {
                    out.push((k, meta.size))
                }
                Ok(_) => {}
                Err(e) => debug!(key = %meta.location, error = %e, "not a segment"),
            }
        }
        out.sort_by_key(|(k, _)| (k.start_ms, k.end_ms, k.origin));
        Ok(out)
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
