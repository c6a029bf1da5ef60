//! Validating admission webhook for Vigil's resources.
//!
//! The OpenAPI schema already refuses most bad input (URL scheme, bitrate 0, retention < 1 day).
//! What it cannot express on every supported Kubernetes version — rules that compare fields, such
//! as "a window must end after it starts" — is checked here with [`vigil_api::validation`], so the API
//! server refuses such an object at `kubectl apply` time with a message naming the field.
//!
//! The webhook serves HTTPS with a certificate given on the command line, or a self-signed one it
//! makes at start-up ([`self_signed`]) whose CA bundle is then put into the
//! ValidatingWebhookConfiguration, so no cert-manager is needed.

use std::net::SocketAddr;

use axum::{Json, Router, routing::post};
use kube::core::{
    DynamicObject, ResourceExt,
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview},
};
use tracing::{info, warn};

use crate::error::{Error, Result};
use vigil_api::validation::{self, FieldError};
use vigil_api::{BackfillSpec, CameraSpec, RecorderPoolSpec};

/// Path the API server posts AdmissionReviews to.
pub const VALIDATE_PATH: &str = "/validate";

/// A PEM certificate and key for the webhook's HTTPS server.
#[derive(Clone)]
pub struct ServingCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A self-signed serving certificate for the given DNS names / IP addresses. Its own PEM is the
/// CA bundle the API server needs (`clientConfig.caBundle`).
pub fn self_signed(names: &[String]) -> Result<ServingCert> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())?;
    Ok(ServingCert {
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
    })
}

/// The router with the validation endpoint, for embedding in a larger server.
pub fn router() -> Router {
    Router::new().route(VALIDATE_PATH, post(validate_handler))
}

/// Serves the webhook over HTTPS on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, cert: ServingCert) -> Result<()> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| Error::Io {
        path: addr.to_string(),
        source: e,
    })?;
    serve_listener(listener, cert).await
}

/// Serves the webhook over HTTPS on an already bound listener (tests bind port 0).
pub async fn serve_listener(listener: std::net::TcpListener, cert: ServingCert) -> Result<()> {
    crate::install_crypto_provider();
    let addr = listener.local_addr().map_err(|e| Error::Io {
        path: "listener".into(),
        source: e,
    })?;
    listener.set_nonblocking(true).map_err(|e| Error::Io {
        path: addr.to_string(),
        source: e,
    })?;
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        cert.cert_pem.into_bytes(),
        cert.key_pem.into_bytes(),
    )
    .await
    .map_err(|e| Error::Tls(e.to_string()))?;
    info!(%addr, path = VALIDATE_PATH, "admission webhook listening");
    axum_server::from_tcp_rustls(listener, tls)
        .map_err(|e| Error::Io {
            path: addr.to_string(),
            source: e,
        })?
        .serve(router().into_make_service())
        .await
        .map_err(|e| Error::Io {
            path: addr.to_string(),
            source: e,
        })
}

async fn validate_handler(
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "malformed AdmissionReview");
            return Json(AdmissionResponse::invalid(e.to_string()).into_review());
        }
    };
    Json(review_request(&request).into_review())
}

/// Decides one admission request. Pure apart from logging; unit-tested below.
pub fn review_request(request: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    let Some(object) = &request.object else {
        return response; // DELETE carries no object; nothing to validate.
    };
    let kind = request.kind.kind.as_str();
    let errors = match validate_object(kind, object) {
        Ok(errors) => errors,
        Err(message) => return response.deny(message),
    };
    if errors.is_empty() {
        response
    } else {
        let message = format!(
            "{kind} {:?} is invalid: {}",
            object.name_any(),
            validation::describe(&errors)
        );
        info!(kind, name = %object.name_any(), %message, "denied");
        response.deny(message)
    }
}

fn validate_object(
    kind: &str,
    object: &DynamicObject,
) -> std::result::Result<Vec<FieldError>, String> {
    let spec = object.data.get("spec").cloned().unwrap_or_default();
    let parse_error = |e: serde_json::Error| format!("{kind} {:?}: spec: {e}", object.name_any());
    match kind {
        "Camera" => Ok(validation::validate_camera(
            &serde_json::from_value::<CameraSpec>(spec).map_err(parse_error)?,
        )),
        "RecorderPool" => {
            let spec = serde_json::from_value::<RecorderPoolSpec>(spec).map_err(parse_error)?;
            let mut errors = validation::validate_pool(&spec);
            errors.extend(validation::validate_pool_audit(&spec));
            Ok(errors)
        }
        "Backfill" => Ok(validation::validate_backfill(
            &serde_json::from_value::<BackfillSpec>(spec).map_err(parse_error)?,
        )),
        _ => Ok(vec![]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(kind: &str, spec: serde_json::Value) -> AdmissionRequest<DynamicObject> {
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "0df28fbd-5f5f-11e8-bc74-36e6bb280816",
                "kind": {"group": "vigil.dev", "version": "v1alpha1", "kind": kind},
                "resource": {"group": "vigil.dev", "version": "v1alpha1", "resource": "x"},
                "operation": "CREATE",
                "userInfo": {},
                "object": {
                    "apiVersion": "vigil.dev/v1alpha1", "kind": kind,
                    "metadata": {"name": "bad", "namespace": "default"},
                    "spec": spec
                }
            }
        }))
        .expect("review fixture parses");
        review.try_into().expect("review has a request")
    }

    #[test]
    fn denies_backfill_window_ending_before_start() {
        let r = review_request(&review(
            "Backfill",
            serde_json::json!({"camera": "lobby", "reason": "Manual",
                "window": {"start": "2026-11-21T10:00:00Z", "end": "2026-11-21T09:00:00Z"}}),
        ));
        assert!(!r.allowed);
        assert!(
            r.result.message.contains("spec.window: end"),
            "{}",
            r.result.message
        );
        assert!(
            r.result.message.contains("Backfill \"bad\""),
            "{}",
            r.result.message
        );
    }

    #[test]
    fn allows_valid_backfill_and_unknown_kinds() {
        let r = review_request(&review(
            "Backfill",
            serde_json::json!({"camera": "lobby",
                "window": {"start": "2026-11-21T09:00:00Z", "end": "2026-11-21T10:00:00Z"}}),
        ));
        assert!(r.allowed, "{}", r.result.message);
        assert!(review_request(&review("Other", serde_json::json!({}))).allowed);
    }

    #[test]
    fn denies_camera_with_credentials_in_url_without_echoing_them() {
        let r = review_request(&review(
            "Camera",
            serde_json::json!({"source": {"url": "rtsp://admin:hunter2@cam/live"},
                "expectedBitrateKbps": 4000, "pool": "p"}),
        ));
        assert!(!r.allowed);
        assert!(
            !r.result.message.contains("hunter2"),
            "{}",
            r.result.message
        );
    }

    #[test]
    fn self_signed_cert_is_pem() {
        let c = self_signed(&["127.0.0.1".into(), "vigil-webhook.vigil.svc".into()]).expect("cert");
        assert!(c.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(c.key_pem.contains("PRIVATE KEY"));
    }
}
