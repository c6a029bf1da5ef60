//! API fixtures for tests against a real API server: a client, CRDs, namespaces, manifests,
//! polling.
//!
//! The tests run against whatever cluster `KUBECONFIG` points at: the local control plane
//! (`e2e/cluster/up.sh`, then `source /var/lib/vigil-cluster/env`) or a kind cluster in CI.

use std::path::Path;

use crate::repo_root;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Client, ResourceExt};

/// Field manager for everything the tests apply.
pub const FIELD_MANAGER: &str = "vigil-e2e";

/// A client for the cluster under test. Panics with instructions when no cluster is configured,
/// so a missing cluster is a failed test, never a skipped one.
pub async fn client() -> Client {
    vigil_api::install_crypto_provider();
    if std::env::var_os("KUBECONFIG").is_none() {
        panic!(
            "KUBECONFIG is not set. Start the local cluster with `e2e/cluster/up.sh` and \
             `source /var/lib/vigil-cluster/env` (or point KUBECONFIG at a kind cluster)."
        );
    }
    Client::try_default()
        .await
        .expect("a client for the cluster in KUBECONFIG")
}

/// Reads every object of a (multi-document) YAML file.
pub fn read_manifests(path: &Path) -> Vec<DynamicObject> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let value = serde_yaml::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            serde_yaml::from_value(value).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|o: &DynamicObject| o.types.is_some())
        .collect()
}

use serde::Deserialize;

/// The API resource of an object, from its apiVersion and kind.
pub fn api_resource(obj: &DynamicObject) -> ApiResource {
    let types = obj.types.as_ref().expect("object has apiVersion and kind");
    let (group, version) = match types.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", types.api_version.as_str()),
    };
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &types.kind))
}

/// Server-side applies `obj` into `namespace`.
pub async fn apply(
    client: &Client,
    namespace: &str,
    obj: &DynamicObject,
) -> kube::Result<DynamicObject> {
    let ar = api_resource(obj);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
    let mut obj = obj.clone();
    obj.metadata.namespace = Some(namespace.to_string());
    obj.metadata.managed_fields = None;
    api.patch(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&obj),
    )
    .await
}

/// Reads `obj` back from `namespace`.
pub async fn get(
    client: &Client,
    namespace: &str,
    obj: &DynamicObject,
) -> kube::Result<DynamicObject> {
    let ar = api_resource(obj);
    Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &ar)
        .get(&obj.name_any())
        .await
}

/// Installs the committed CRDs from `crds/` with server-side apply and waits until each is
/// Established. Using the committed files (not the code) also proves they are installable.
pub async fn apply_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = vec![];
    for entry in std::fs::read_dir(repo_root().join("crds")).expect("crds/ exists") {
        let path = entry.expect("crds/ entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("CRD file readable");
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {}: {e}", path.display()));
        names.push(name);
    }
    for core in [
        "cameras.vigil.dev",
        "recorderpools.vigil.dev",
        "backfills.vigil.dev",
        "sites.vigil.dev",
    ] {
        assert!(
            names.iter().any(|n| n == core),
            "crds/ holds {core} (found {names:?})"
        );
    }
    for name in names {
        wait_for(
            Duration::from_secs(30),
            &format!("CRD {name} Established"),
            || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let crd = api.get(&name).await.ok()?;
                    let established = crd
                        .status?
                        .conditions?
                        .into_iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    established.then_some(())
                }
            },
        )
        .await;
    }
}

/// Polls `probe` every 250 ms until it returns Some, or panics after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A unique suffix for names, so reruns and parallel tests never collide.
pub fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", std::process::id() & 0xfff, nanos & 0xfffff)
}

/// Creates a namespace with the given labels; delete it with [`delete_namespace`].
pub async fn create_namespace(client: &Client, prefix: &str, labels: &[(&str, &str)]) -> String {
    let name = format!("{prefix}-{}", unique_suffix());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.clone());
    ns.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    name
}

/// Deletes a namespace (and so everything in it); does not wait.
pub async fn delete_namespace(client: &Client, name: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

/// True when every field of `expected` is in `actual` with the same value (objects compared
/// recursively; `actual` may hold more, e.g. schema defaults).
pub fn json_contains(actual: &serde_json::Value, expected: &serde_json::Value) -> bool {
    match (actual, expected) {
        (serde_json::Value::Object(a), serde_json::Value::Object(e)) => e
            .iter()
            .all(|(k, ev)| a.get(k).is_some_and(|av| json_contains(av, ev))),
        (a, e) => a == e,
    }
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves nothing running.
pub struct ChildGuard(pub std::process::Child);

impl ChildGuard {
    /// SIGKILL now, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// camera name → the recorder named by its `vigil.dev/recorder` label.
pub async fn camera_assignments(
    api: &Api<vigil_api::Camera>,
) -> std::collections::BTreeMap<String, String> {
    api.list(&kube::api::ListParams::default())
        .await
        .expect("list cameras")
        .items
        .into_iter()
        .filter_map(|c| {
            Some((
                c.name_any(),
                c.labels().get(vigil_api::RECORDER_LABEL)?.clone(),
            ))
        })
        .collect()
}

/// Waits for a finished Backfill of `camera` (the operator labels them `vigil.dev/camera`).
pub async fn finished_backfill(
    api: &Api<vigil_api::Backfill>,
    camera: &str,
    timeout: Duration,
) -> vigil_api::Backfill {
    wait_for(
        timeout,
        &format!("a finished Backfill of {camera}"),
        || async {
            let b = api
                .list(
                    &kube::api::ListParams::default().labels(&format!("vigil.dev/camera={camera}")),
                )
                .await
                .ok()?
                .items
                .into_iter()
                .next()?;
            b.status.as_ref()?.finished_at?;
            Some(b)
        },
    )
    .await
}
