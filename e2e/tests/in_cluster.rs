//! A pod built from this repository runs in the cluster: `vigil-operator doctor` as a Job, with
//! its own ServiceAccount and a least-privilege Role, reaches the API server through the
//! in-cluster config (the `kubernetes` Service ClusterIP) and lists Vigil's objects.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams, PostParams};
use vigil_e2e::*;

#[tokio::test]
async fn doctor_job_lists_cameras_with_its_service_account() {
    let client = client().await;
    apply_crds(&client).await;
    let binary = built_binary("vigil-operator");
    let image = build_image("operator", &binary);

    let ns = create_namespace(&client, "vigil-e2e-pod", &[]).await;
    for file in ["camera-onvif.yaml", "camera-no-edge-storage.yaml"] {
        for obj in read_manifests(&repo_root().join("examples").join(file)) {
            apply(&client, &ns, &obj).await.expect("example camera");
        }
    }
    let manifests = format!(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {{name: vigil-doctor}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: vigil-doctor}}
rules:
  - apiGroups: [vigil.dev]
    resources: [cameras, recorderpools, backfills]
    verbs: [list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: vigil-doctor}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: vigil-doctor}}
subjects: [{{kind: ServiceAccount, name: vigil-doctor, namespace: {ns}}}]
"#
    );
    for doc in serde_yaml::Deserializer::from_str(&manifests) {
        let value = <serde_yaml::Value as serde::Deserialize>::deserialize(doc).expect("yaml");
        let obj: kube::core::DynamicObject = serde_yaml::from_value(value).expect("object");
        apply(&client, &ns, &obj).await.expect("RBAC object");
    }

    let job: Job = serde_json::from_value(serde_json::json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "vigil-doctor"},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "serviceAccountName": "vigil-doctor",
                "restartPolicy": "Never",
                "containers": [{
                    "name": "doctor", "image": image, "imagePullPolicy": "Never",
                    "args": ["doctor", "--namespace", ns],
                    "securityContext": {"runAsNonRoot": true, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false}
                }]
            }}
        }
    }))
    .expect("job");
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    jobs.create(&PostParams::default(), &job)
        .await
        .expect("create Job");

    let outcome = wait_for(Duration::from_secs(120), "the doctor Job to finish", || {
        let jobs = jobs.clone();
        async move {
            let status = jobs.get("vigil-doctor").await.ok()?.status?;
            if status.succeeded.unwrap_or(0) > 0 {
                Some(true)
            } else if status.failed.unwrap_or(0) > 0 {
                Some(false)
            } else {
                None
            }
        }
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = pods
        .list(&ListParams::default().labels("job-name=vigil-doctor"))
        .await
        .expect("job pods")
        .items
        .into_iter()
        .next()
        .expect("the Job made a pod");
    let name = pod.metadata.name.clone().unwrap_or_default();
    let logs = pods
        .logs(&name, &LogParams::default())
        .await
        .unwrap_or_else(|e| format!("(no logs: {e})"));
    println!("doctor pod {name} log:\n{logs}");
    assert!(outcome, "doctor Job failed:\n{logs}");
    assert!(logs.contains("can list cameras in namespace"), "{logs}");
    assert!(
        logs.contains(": 2 found"),
        "doctor saw both cameras: {logs}"
    );
    assert!(logs.contains("all 5 checks passed"), "{logs}");
    delete_namespace(&client, &ns).await;
}

/// Builds a from-scratch image holding `binary` and imports it into the cluster's containerd.
fn build_image(name: &str, binary: &std::path::Path) -> String {
    let out = Command::new("bash")
        .arg(repo_root().join("e2e/images/build.sh"))
        .arg(name)
        .arg(binary)
        .output()
        .expect("run e2e/images/build.sh");
    assert!(
        out.status.success(),
        "image build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("image name printed")
        .trim()
        .to_string()
}
