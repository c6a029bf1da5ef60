//! The rendezvous service's Prometheus metrics (`/metrics`, with `/healthz` and `/readyz`, on
//! its own plain-HTTP port, as the operator's and the recorders' are).
//!
//! - `vigil_rendezvous_sites_connected`: gateways holding a control connection now;
//!   `vigil_rendezvous_site_connected{namespace,site}` 1 or 0 per site seen since the start.
//! - `vigil_rendezvous_streams_opened_total{namespace,site,path}`: recorder streams, by the path
//!   that carried them (`relay` through this service; `lan`/`direct` opened elsewhere, known
//!   from the gateway's answer).
//! - `vigil_rendezvous_relay_bytes_total{namespace,site,direction}`: relayed bytes,
//!   `to_site` / `from_site`, counted as they flow.
//! - `vigil_rendezvous_refusals_total{reason}`: connections refused, by [`Refusal`]. No site
//!   label: an unauthenticated peer names any site it likes, and the series must stay bounded.
//! - `vigil_rendezvous_gateway_disconnects_total{reason}`: control connections that ended.
//!
//! Series with a site carry only sites that authenticated (or a recorder of their namespace
//! named), so their number is bounded by the `Site`s.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::lan::Path;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteLabels {
    namespace: String,
    site: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabels {
    namespace: String,
    site: String,
    path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BytesLabels {
    namespace: String,
    site: String,
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// Why a connection was refused (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No TLS handshake or no valid `Hello` in time.
    Handshake,
    /// A gateway (control or data connection) with an unknown site, a wrong or revoked token.
    SiteAuth,
    /// A recorder whose token is not valid for the namespace it names.
    RecorderAuth,
    /// A recorder asked for a site whose gateway is not connected.
    NotConnected,
    /// The gateway did not open the camera (refused address, camera unreachable, timeout).
    OpenFailed,
    /// A gateway data connection for a stream nobody waits for.
    NoSuchStream,
    /// The site's connection-rate limit.
    RateLimited,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Handshake => "handshake",
            Refusal::SiteAuth => "site_auth",
            Refusal::RecorderAuth => "recorder_auth",
            Refusal::NotConnected => "not_connected",
            Refusal::OpenFailed => "open_failed",
            Refusal::NoSuchStream => "no_such_stream",
            Refusal::RateLimited => "rate_limited",
        }
    }
}

/// The `reason` label of a gateway disconnect, from the control loop's reason text (a small,
/// fixed set: I/O error texts all become `error`).
pub fn disconnect_reason(why: &str) -> &'static str {
    match why {
        "replaced by a newer connection" => "replaced",
        "connection closed" => "closed",
        "silent" => "silent",
        "token revoked" => "token_revoked",
        "unexpected message" => "protocol",
        _ => "error",
    }
}

/// The rendezvous service's metrics.
pub struct Metrics {
    registry: Registry,
    sites_connected: Gauge,
    site_connected: Family<SiteLabels, Gauge>,
    streams: Family<PathLabels, Counter>,
    relay_bytes: Family<BytesLabels, Counter>,
    refusals: Family<ReasonLabels, Counter>,
    disconnects: Family<ReasonLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vigil_rendezvous");
        let m = Metrics {
            registry: Registry::default(),
            sites_connected: Gauge::default(),
            site_connected: Family::default(),
            streams: Family::default(),
            relay_bytes: Family::default(),
            refusals: Family::default(),
            disconnects: Family::default(),
        };
        registry.register(
            "sites_connected",
            "Sites whose gateway holds a control connection",
            m.sites_connected.clone(),
        );
        registry.register(
            "site_connected",
            "1 while the site's gateway is connected, 0 after it disconnected",
            m.site_connected.clone(),
        );
        registry.register(
            "streams_opened",
            "Recorder streams to a site's cameras, by the path that carried them",
            m.streams.clone(),
        );
        registry.register(
            "relay_bytes",
            "Bytes relayed for a site, to_site or from_site",
            m.relay_bytes.clone(),
        );
        registry.register(
            "refusals",
            "Connections refused, by reason",
            m.refusals.clone(),
        );
        registry.register(
            "gateway_disconnects",
            "Gateway control connections that ended, by reason",
            m.disconnects.clone(),
        );
        Metrics { registry, ..m }
    }

    fn site(namespace: &str, site: &str) -> SiteLabels {
        SiteLabels {
            namespace: namespace.into(),
            site: site.into(),
        }
    }

    /// A site's gateway registered (a reconnect that replaces a live connection counts once).
    pub fn gateway_connected(&self, namespace: &str, site: &str) {
        if self
            .site_connected
            .get_or_create(&Self::site(namespace, site))
            .set(1)
            == 0
        {
            self.sites_connected.inc();
        }
    }

    /// A control connection ended, `why` as the control loop says it; `current`: it was the
    /// site's live connection (not one a newer connection replaced), so the site is now
    /// disconnected.
    pub fn gateway_disconnected(&self, namespace: &str, site: &str, why: &str, current: bool) {
        self.disconnects
            .get_or_create(&ReasonLabels {
                reason: disconnect_reason(why).into(),
            })
            .inc();
        if current
            && self
                .site_connected
                .get_or_create(&Self::site(namespace, site))
                .set(0)
                == 1
        {
            self.sites_connected.dec();
        }
    }

    /// A recorder stream opened on `path`.
    pub fn stream_opened(&self, namespace: &str, site: &str, path: Path) {
        self.streams
            .get_or_create(&PathLabels {
                namespace: namespace.into(),
                site: site.into(),
                path: path.to_string(),
            })
            .inc();
    }

    /// The site's relay byte counters (to the site, from the site), to count a stream's bytes
    /// as they flow without a label lookup per chunk.
    pub fn relay_counters(&self, namespace: &str, site: &str) -> (Counter, Counter) {
        let c = |direction: &str| {
            self.relay_bytes
                .get_or_create(&BytesLabels {
                    namespace: namespace.into(),
                    site: site.into(),
                    direction: direction.into(),
                })
                .clone()
        };
        (c("to_site"), c("from_site"))
    }

    /// A connection refused.
    pub fn refused(&self, why: Refusal) {
        self.refusals
            .get_or_create(&ReasonLabels {
                reason: why.as_str().into(),
            })
            .inc();
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// `/metrics`, `/healthz` and `/readyz` (the service is up once this serves: it starts after the
/// TLS listener is bound and, in Kubernetes mode, the Sites and Secrets were first listed).
pub fn router(metrics: Arc<Metrics>) -> axum::Router {
    use axum::http::header;
    use axum::response::IntoResponse;
    use axum::routing::get;
    axum::Router::new()
        .route(
            "/metrics",
            get(
                |axum::extract::State(m): axum::extract::State<Arc<Metrics>>| async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                        .into_response()
                },
            ),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .with_state(metrics)
}

/// Serves [`router`] on `listener` until it fails.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) -> crate::Result<()> {
    axum::serve(listener, router(metrics))
        .await
        .map_err(|e| crate::Error::io("serving /metrics", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn connects_streams_bytes_and_refusals_are_counted() {
        let m = Metrics::new();
        m.gateway_connected("a", "branch");
        // A reconnect replacing the live connection: still one site.
        m.gateway_connected("a", "branch");
        m.gateway_connected("a", "other");
        m.gateway_disconnected("a", "branch", "replaced by a newer connection", false);
        let t = m.encode();
        assert_eq!(
            line(&t, "vigil_rendezvous_sites_connected "),
            Some("vigil_rendezvous_sites_connected 2")
        );
        m.gateway_disconnected("a", "other", "token revoked", true);
        m.gateway_disconnected("a", "other", "silent", true);
        m.stream_opened("a", "branch", Path::Relay);
        m.stream_opened("a", "branch", Path::Relay);
        m.stream_opened("a", "branch", Path::Lan);
        let (to, from) = m.relay_counters("a", "branch");
        to.inc_by(10);
        from.inc_by(4096);
        m.relay_counters("a", "branch").1.inc_by(4);
        m.refused(Refusal::SiteAuth);
        m.refused(Refusal::SiteAuth);
        m.refused(Refusal::Handshake);
        let t = m.encode();
        for want in [
            "vigil_rendezvous_sites_connected 1",
            r#"vigil_rendezvous_site_connected{namespace="a",site="branch"} 1"#,
            r#"vigil_rendezvous_site_connected{namespace="a",site="other"} 0"#,
            r#"vigil_rendezvous_streams_opened_total{namespace="a",site="branch",path="relay"} 2"#,
            r#"vigil_rendezvous_streams_opened_total{namespace="a",site="branch",path="lan"} 1"#,
            r#"vigil_rendezvous_relay_bytes_total{namespace="a",site="branch",direction="to_site"} 10"#,
            r#"vigil_rendezvous_relay_bytes_total{namespace="a",site="branch",direction="from_site"} 4100"#,
            r#"vigil_rendezvous_refusals_total{reason="site_auth"} 2"#,
            r#"vigil_rendezvous_refusals_total{reason="handshake"} 1"#,
            r#"vigil_rendezvous_gateway_disconnects_total{reason="replaced"} 1"#,
            r#"vigil_rendezvous_gateway_disconnects_total{reason="token_revoked"} 1"#,
            r#"vigil_rendezvous_gateway_disconnects_total{reason="silent"} 1"#,
        ] {
            assert!(t.lines().any(|l| l == want), "missing {want:?} in\n{t}");
        }
    }

    #[test]
    fn disconnect_reasons_are_a_small_fixed_set() {
        assert_eq!(disconnect_reason("token revoked"), "token_revoked");
        assert_eq!(disconnect_reason("connection closed"), "closed");
        assert_eq!(
            disconnect_reason("broken pipe (os error 32) from 10.0.0.1"),
            "error"
        );
    }
}
