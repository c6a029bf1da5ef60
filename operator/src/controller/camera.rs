//! The Camera reconciler. Cameras of an existing pool are placed by the pool reconciler, which
//! watches them; this one handles a camera whose pool does not exist, so that a typo in
//! `spec.pool` shows up as a condition on the camera instead of silence.

use std::sync::Arc;

use chrono::Utc;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::Context;
use super::camera_status::{self, CameraFacts, differs, operator_status};
use crate::error::{Error, Result};
use vigil_api::schedule::should_record;
use vigil_api::validation;
use vigil_api::{Camera, CameraConditionReason, RECORDER_LABEL, RecorderPool};

pub async fn reconcile(camera: Arc<Camera>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.count_reconcile("camera");
    let ns = camera
        .namespace()
        .ok_or_else(|| Error::Check("Camera without namespace".into()))?;
    let pools: Api<RecorderPool> = Api::namespaced(ctx.client.clone(), &ns);
    if pools.get_opt(&camera.spec.pool).await?.is_some() {
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
        camera_status::apply(&api, &camera, &status).await?;
        super::pool::publish(
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
        api.patch(
            &camera.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    Ok(Action::await_change())
}
