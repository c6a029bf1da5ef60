//! A recording cluster on the API server in `KUBECONFIG`: a RecorderPool storing to a local
//! directory, the camera simulator, the operator and N recorder processes. Shared by the failover
//! test and the failover benchmark.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use vigil_api::{Camera, RECORDER_LABEL, RecorderPool};

use crate::harness::*;
use crate::{ChildGuard, create_namespace, wait_for};

pub struct Rig {
    pub client: Client,
    pub namespace: String,
    pub work: PathBuf,
    pub store: PathBuf,
    pub simulator: Simulator,
    pub operator: ChildGuard,
    pub recorders: BTreeMap<String, RecorderProcess>,
    pub cameras: Vec<String>,
    next_recorder: usize,
}

/// Settings of a rig.
pub struct RigConfig {
    pub cameras: usize,
    pub recorders: usize,
    pub lease_seconds: u32,
    pub segment_seconds: u32,
}

impl Rig {
    pub async fn start(client: Client, config: &RigConfig) -> Rig {
        crate::apply_crds(&client).await;
        let namespace = create_namespace(&client, "vigil-e2e-failover", &[]).await;
        let work = std::env::temp_dir().join(&namespace);
        let store = work.join("store");
        std::fs::create_dir_all(&store).expect("store dir");

        // Small, cheap streams (the simulator encodes them all on this machine) with mixed
        // declared bitrates, so placement has something to balance before measurements arrive.
        let cameras: Vec<String> = (0..config.cameras).map(|i| format!("cam-{i:02}")).collect();
        let specs: Vec<String> = cameras
            .iter()
            .enumerate()
            .map(|(i, c)| {
                format!(
                    "name={c},codec={},bitrate={},fps=15,gop=15,width=320,height=180",
                    if i % 4 == 3 { "h265" } else { "h264" },
                    300 + 100 * (i % 5)
                )
            })
            .collect();
        let simulator = Simulator::start(&specs);

        let pool: RecorderPool = serde_json::from_value(serde_json::json!({
            "apiVersion": "vigil.dev/v1alpha1", "kind": "RecorderPool", "metadata": {"name": "main"},
            "spec": {"replicas": 0, "capacityKbps": 20000, "failoverHeadroomPercent": 20,
                     "segmentSeconds": config.segment_seconds,
                     "lease": {"durationSeconds": config.lease_seconds, "renewSeconds": 1},
                     "storage": {"local": {"path": store.to_string_lossy()}}}
        }))
        .expect("pool");
        Api::<RecorderPool>::namespaced(client.clone(), &namespace)
            .create(&PostParams::default(), &pool)
            .await
            .expect("create pool");
        let api: Api<Camera> = Api::namespaced(client.clone(), &namespace);
        const DECLARED_KBPS: [u32; 6] = [1000, 2000, 4000, 6000, 3000, 1500];
        for (i, name) in cameras.iter().enumerate() {
            let declared = DECLARED_KBPS[i % DECLARED_KBPS.len()];
            let cam: Camera = serde_json::from_value(serde_json::json!({
                "apiVersion": "vigil.dev/v1alpha1", "kind": "Camera", "metadata": {"name": name},
                "spec": {"source": {"url": simulator.url(name)}, "expectedBitrateKbps": declared, "pool": "main"}
            }))
            .expect("camera");
            api.create(&PostParams::default(), &cam)
                .await
                .expect("create camera");
        }
        let operator = start_operator(&namespace, "operator-0", free_port(), &work, &[]);
        let mut rig = Rig {
            client,
            namespace,
            work,
            store,
            simulator,
            operator,
            recorders: BTreeMap::new(),
            cameras,
            next_recorder: 0,
        };
        for _ in 0..config.recorders {
            rig.add_recorder();
        }
        rig
    }

    /// Starts one more recorder process (as a Deployment would replace a failed pod).
    pub fn add_recorder(&mut self) -> String {
        let name = format!("rec-{}", self.next_recorder);
        self.next_recorder += 1;
        let r = RecorderProcess::start(&self.namespace, "main", &name, free_port(), &self.work);
        self.recorders.insert(name.clone(), r);
        name
    }

    pub fn cameras_api(&self) -> Api<Camera> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// camera → recorder label.
    pub async fn assignments(&self) -> BTreeMap<String, String> {
        crate::camera_assignments(&self.cameras_api()).await
    }

    /// Waits until every camera is Recording on a live recorder and writing segment bytes there.
    pub async fn wait_all_recording(&self, timeout: Duration) -> BTreeMap<String, String> {
        wait_for(timeout, "every camera recording", || async {
            let cams = self
                .cameras_api()
                .list(&ListParams::default())
                .await
                .ok()?
                .items;
            let mut out = BTreeMap::new();
            for c in cams {
                let rec = c.labels().get(RECORDER_LABEL)?.clone();
                let r = self.recorders.get(&rec)?;
                if c.status.as_ref()?.state != Some(vigil_api::CameraState::Recording)
                    || partial_segment_bytes(&r.buffer_dir, &self.namespace, &c.name_any()) == 0
                {
                    return None;
                }
                out.insert(c.name_any(), rec);
            }
            (out.len() == self.cameras.len()).then_some(out)
        })
        .await
    }

    /// SIGKILLs `victim` and measures, for each of its cameras, the time to the first segment
    /// bytes on the recorder it moved to.
    pub async fn kill_and_measure(
        &mut self,
        victim: &str,
        timeout: Duration,
    ) -> Vec<FailoverSample> {
        let before = self.assignments().await;
        let orphans: Vec<String> = before
            .iter()
            .filter(|(_, r)| *r == victim)
            .map(|(c, _)| c.clone())
            .collect();
        let mut killed = self.recorders.remove(victim).expect("victim is running");
        let start = std::time::Instant::now();
        killed.child.kill();
        let mut samples = vec![];
        let mut pending = orphans.clone();
        let mut reassigned: BTreeMap<String, f64> = BTreeMap::new();
        while !pending.is_empty() && start.elapsed() < timeout {
            let now = self.assignments().await;
            pending.retain(|cam| {
                let Some(to) = now.get(cam).filter(|r| *r != victim) else {
                    return true;
                };
                let reassigned_seconds = *reassigned
                    .entry(cam.clone())
                    .or_insert_with(|| start.elapsed().as_secs_f64());
                let Some(r) = self.recorders.get(to) else {
                    return true;
                };
                if partial_segment_bytes(&r.buffer_dir, &self.namespace, cam) == 0 {
                    return true;
                }
                samples.push(FailoverSample {
                    camera: cam.clone(),
                    from: victim.into(),
                    to: to.clone(),
                    seconds: start.elapsed().as_secs_f64(),
                    reassigned_seconds,
                });
                false
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            pending.is_empty(),
            "cameras {pending:?} did not resume within {timeout:?}"
        );
        samples
    }
}
