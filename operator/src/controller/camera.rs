//! The Camera reconciler. Cameras of an existing pool are placed by the pool reconciler, which
//! watches them; this one handles a camera whose pool does not exist, so that a typo in
//! `spec.pool` shows up as a condition on the camera instead of silence.

use std::sync::Arc;

use chrono::Utc;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;

use super::camera_status::{self, CameraFacts, differs, operator_status};
use super::{Context, publish};
use crate::error::{Error, Result};
use crate::metrics::ControllerKind;
use vigil_api::schedule::should_record;
use vigil_api::validation;
use vigil_api::{Camera, CameraConditionReason, RECORDER_LABEL, RecorderPool};

pub async fn reconcile(camera: Arc<Camera>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.count_reconcile(ControllerKind::Camera);
    let ns = camera
        .namespace()
        .ok_or(Error::MissingNamespace { kind: "Camera" })?;
    let pool = ObjectRef::<RecorderPool>::new(&camera.spec.pool).within(&ns);
    if ctx.caches.pools.get(&pool).is_some() {
        return Ok(Action::await_change()); // the pool reconciler owns this camera
    }
    let errors = validation::validate_camera(&camera.spec);
    let facts = CameraFacts {
        invalid: (!errors.is_empty()).then(|| validation::describe(&errors)),
        wanted: should_record(&camera.spec.recording, Utc::now()),
        unplaced: Some((
            CameraConditionReason::PoolNotFound.as_str().into(),
            format!(
                "RecorderPool {:?} not found in namespace {ns}: create it or fix spec.pool",
                camera.spec.pool
            ),
        )),
        ..Default::default()
    };
    let status = operator_status(&camera, &facts, Utc::now());
    let api: Api<Camera> = Api::namespaced(ctx.client.clone(), &ns);
    if differs(&camera, &status) {
        ctx.metrics.count_write("camera");
        camera_status::apply(&api, &camera, &status).await?;
        publish(
            &ctx,
            camera.as_ref(),
            EventType::Warning,
            "PoolNotFound",
            format!("RecorderPool {:?} not found", camera.spec.pool),
        )
        .await;
    }
    if camera.labels().contains_key(RECORDER_LABEL) {
        let patch = serde_json::json!({"metadata": {"labels": {RECORDER_LABEL: null}}});
        ctx.metrics.count_write("camera");
        api.patch(
            &camera.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    Ok(Action::await_change())
}
