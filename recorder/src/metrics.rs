//! Prometheus metrics (`/metrics`). Per-camera series carry `namespace` and `camera` labels and
//! are removed when the camera leaves this recorder, so a long-running recorder does not keep
//! series of cameras it no longer records.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use vigil_store::layout::CameraId;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CamLabels {
    pub namespace: String,
    pub camera: String,
}

impl From<&CameraId> for CamLabels {
    fn from(c: &CameraId) -> Self {
        CamLabels {
            namespace: c.namespace.clone(),
            camera: c.name.clone(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GapLabels {
    pub namespace: String,
    pub camera: String,
    pub reason: String,
}

/// A stream opened to a camera at a remote site, by the path it took (issue #15).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SitePathLabels {
    pub namespace: String,
    pub camera: String,
    pub site: String,
    pub path: String,
}

type FloatCounter = Counter<f64, AtomicU64>;
type FloatGauge = Gauge<f64, AtomicU64>;

pub struct Metrics {
    pub registry: Registry,
    pub bytes_in: Family<CamLabels, Counter>,
    pub bytes_out: Family<CamLabels, Counter>,
    pub segments_written: Family<CamLabels, Counter>,
    pub segments_uploaded: Family<CamLabels, Counter>,
    pub reconnects: Family<CamLabels, Counter>,
    pub site_streams: Family<SitePathLabels, Counter>,
    pub site_open_seconds: Family<SitePathLabels, FloatGauge>,
    pub gaps: Family<GapLabels, Counter>,
    pub gap_seconds: Family<GapLabels, FloatCounter>,
    pub dropped_bytes: Family<CamLabels, Counter>,
    pub dropped_segments: Family<CamLabels, Counter>,
    pub bitrate_bps: Family<CamLabels, FloatGauge>,
    pub camera_up: Family<CamLabels, Gauge>,
    pub limit_violations: Family<CamLabels, Counter>,
    pub quarantined: Family<CamLabels, Gauge>,
    pub prebuffer_memory_bytes: Family<CamLabels, Gauge>,
    pub prebuffer_spilled_bytes: Family<CamLabels, Gauge>,
    pub prebuffer_spill_failures: Family<CamLabels, Counter>,
    pub prebuffer_dropped_bytes: Family<CamLabels, Counter>,
    pub upload_seconds: Histogram,
    pub upload_errors: Counter,
    pub buffer_bytes: Gauge,
    pub buffer_objects: Gauge,
    pub buffer_partial_bytes: Gauge,
    pub buffer_max_bytes: Gauge,
    pub cameras: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vigil_recorder");
        let m = Metrics {
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            segments_written: Family::default(),
            segments_uploaded: Family::default(),
            reconnects: Family::default(),
            site_streams: Family::default(),
            site_open_seconds: Family::default(),
            gaps: Family::default(),
            gap_seconds: Family::default(),
            dropped_bytes: Family::default(),
            dropped_segments: Family::default(),
            bitrate_bps: Family::default(),
            camera_up: Family::default(),
            limit_violations: Family::default(),
            quarantined: Family::default(),
            prebuffer_memory_bytes: Family::default(),
            prebuffer_spilled_bytes: Family::default(),
            prebuffer_spill_failures: Family::default(),
            prebuffer_dropped_bytes: Family::default(),
            // 5 ms .. ~82 s
            upload_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 15)),
            upload_errors: Counter::default(),
            buffer_bytes: Gauge::default(),
            buffer_objects: Gauge::default(),
            buffer_partial_bytes: Gauge::default(),
            buffer_max_bytes: Gauge::default(),
            cameras: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "site_streams",
            "Streams opened to a camera at a remote site, by path (lan, direct, relay)",
            m.site_streams.clone(),
        );
        registry.register(
            "site_open_seconds",
            "Time the latest stream to a camera at a remote site took to open, by path",
            m.site_open_seconds.clone(),
        );
        registry.register(
            "bytes_in",
            "Stream payload bytes received from the camera",
            m.bytes_in.clone(),
        );
        registry.register(
            "bytes_out",
            "Bytes uploaded to the object store",
            m.bytes_out.clone(),
        );
        registry.register(
            "segments_written",
            "Segments completed into the local buffer",
            m.segments_written.clone(),
        );
        registry.register(
            "segments_uploaded",
            "Segments uploaded to the object store",
            m.segments_uploaded.clone(),
        );
        registry.register(
            "reconnects",
            "Connection attempts after the first (stream loss, refused, timeouts)",
            m.reconnects.clone(),
        );
        registry.register("gaps", "Intervals without footage", m.gaps.clone());
        registry.register(
            "gap_seconds",
            "Seconds without footage",
            m.gap_seconds.clone(),
        );
        registry.register(
            "dropped_bytes",
            "Recorded bytes dropped from the full buffer before upload",
            m.dropped_bytes.clone(),
        );
        registry.register(
            "dropped_segments",
            "Recorded segments dropped from the full buffer before upload",
            m.dropped_segments.clone(),
        );
        registry.register(
            "bitrate_bits_per_second",
            "Measured stream bitrate (EWMA, 10 s time constant)",
            m.bitrate_bps.clone(),
        );
        registry.register(
            "camera_up",
            "1 while the camera's stream delivers footage",
            m.camera_up.clone(),
        );
        registry.register(
            "limit_violations",
            "Sessions ended because the camera exceeded a receive limit (message, header or frame size) or made the RTSP client panic",
            m.limit_violations.clone(),
        );
        registry.register(
            "quarantined",
            "1 while the camera is held off after repeated receive-limit violations",
            m.quarantined.clone(),
        );
        registry.register(
            "upload_duration_seconds",
            "Time to upload one object",
            m.upload_seconds.clone(),
        );
        registry.register(
            "upload_errors",
            "Failed upload attempts",
            m.upload_errors.clone(),
        );
        registry.register(
            "buffer_bytes",
            "Bytes of finished segments waiting in the local buffer",
            m.buffer_bytes.clone(),
        );
        registry.register(
            "buffer_objects",
            "Objects waiting in the local buffer",
            m.buffer_objects.clone(),
        );
        registry.register(
            "buffer_partial_bytes",
            "Bytes of segments being recorded",
            m.buffer_partial_bytes.clone(),
        );
        registry.register(
            "buffer_max_bytes",
            "Configured buffer limit",
            m.buffer_max_bytes.clone(),
        );
        registry.register(
            "cameras",
            "Cameras assigned to this recorder",
            m.cameras.clone(),
        );
        registry.register(
            "prebuffer_memory_bytes",
            "Event mode: pre-event buffer held in memory",
            m.prebuffer_memory_bytes.clone(),
        );
        registry.register(
            "prebuffer_spilled_bytes",
            "Event mode: pre-event buffer spilled to the local buffer directory",
            m.prebuffer_spilled_bytes.clone(),
        );
        registry.register(
            "prebuffer_spill_failures",
            "Event mode: pre-event spill file write or read errors",
            m.prebuffer_spill_failures.clone(),
        );
        registry.register(
            "prebuffer_dropped_bytes",
            "Event mode: pre-event bytes dropped early (byte bound or spill errors)",
            m.prebuffer_dropped_bytes.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Drops every per-camera series of `c`.
    pub fn forget_camera(&self, c: &CameraId) {
        let l = CamLabels::from(c);
        self.bytes_in.remove(&l);
        self.bytes_out.remove(&l);
        self.segments_written.remove(&l);
        self.segments_uploaded.remove(&l);
        self.reconnects.remove(&l);
        self.dropped_bytes.remove(&l);
        self.dropped_segments.remove(&l);
        self.bitrate_bps.remove(&l);
        self.camera_up.remove(&l);
        self.limit_violations.remove(&l);
        self.quarantined.remove(&l);
        self.prebuffer_memory_bytes.remove(&l);
        self.prebuffer_spilled_bytes.remove(&l);
        self.prebuffer_spill_failures.remove(&l);
        self.prebuffer_dropped_bytes.remove(&l);
        for reason in vigil_store::gaps::ALL_REASONS {
            let g = GapLabels {
                namespace: l.namespace.clone(),
                camera: l.camera.clone(),
                reason: reason.as_str().to_string(),
            };
            self.gaps.remove(&g);
            self.gap_seconds.remove(&g);
        }
    }

    pub fn record_gap(&self, c: &CameraId, reason: vigil_store::gaps::GapReason, seconds: f64) {
        let g = GapLabels {
            namespace: c.namespace.clone(),
            camera: c.name.clone(),
            reason: reason.as_str().to_string(),
        };
        self.gaps.get_or_create(&g).inc();
        self.gap_seconds.get_or_create(&g).inc_by(seconds.max(0.0));
    }

    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
