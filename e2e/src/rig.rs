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
    /// Where the operator serves /metrics.
    pub operator_port: u16,
    pub recorders: BTreeMap<String, RecorderProcess>,
    pub cameras: Vec<String>,
    /// Environment of recorders started from now on (e.g. `VIGIL_LIVE_TOKEN_FILE`).
    pub recorder_env: Vec<(String, std::ffi::OsString)>,
    next_recorder: usize,
}

/// Settings of a rig.
pub struct RigConfig {
    /// Prefix of the rig's namespace (a random suffix follows).
    pub namespace_prefix: &'static str,
    pub cameras: usize,
    pub recorders: usize,
    pub lease_seconds: u32,
    pub segment_seconds: u32,
}

impl Rig {
    pub async fn start(client: Client, config: &RigConfig) -> Rig {
        // Small, cheap streams (the simulator encodes them all on this machine) with mixed
        // declared bitrates, so placement has something to balance before measurements arrive.
        let spec = |i: usize, c: &str| {
            format!(
                "name={c},codec={},bitrate={},fps=15,gop=15,width=320,height=180",
                if i % 4 == 3 { "h265" } else { "h264" },
                300 + 100 * (i % 5)
            )
        };
        Rig::start_with(client, config, &spec, &[]).await
    }

    /// A rig whose camera `i` (named `cam-{i:02}`) is the simulator's `--camera camera_spec(i,
    /// name)`, with `sim_args` added to the simulator's command line (e.g. `--frame-log DIR`).
    pub async fn start_with(
        client: Client,
        config: &RigConfig,
        camera_spec: &dyn Fn(usize, &str) -> String,
        sim_args: &[&std::ffi::OsStr],
    ) -> Rig {
        crate::apply_crds(&client).await;
        let namespace = create_namespace(&client, config.namespace_prefix, &[]).await;
        let work = std::env::temp_dir().join(&namespace);
        let store = work.join("store");
        std::fs::create_dir_all(&store).expect("store dir");

        let cameras: Vec<String> = (0..config.cameras).map(|i| format!("cam-{i:02}")).collect();
        let specs: Vec<String> = cameras
            .iter()
            .enumerate()
            .map(|(i, c)| camera_spec(i, c))
            .collect();
        let simulator = Simulator::start_with("127.0.0.1", &specs, None, None, sim_args);

        let pool: RecorderPool = serde_json::from_value(serde_json::json!({
            "apiVersion": "vigil.dev/v1alpha1", "kind": "RecorderPool", "metadata": {"name": "main"},
            "spec": {"replicas": 0, "capacityKbps": 20000, "failoverHeadroomPercent": 20,
                     "segmentSeconds": config.segment_seconds,
                     "lease": {"durationSeconds": config.lease_seconds, "renewSeconds": 1},
                     "storage": {"local": {"path": store.to_string_lossy()}},
                     // The simulator is on loopback, which only an explicit entry opens.
                     "cameraNetworks": {"allow": ["127.0.0.1/32"]}}
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
        let operator_port = free_port();
        let operator = start_operator(&namespace, "operator-0", operator_port, &work, &[]);
        let mut rig = Rig {
            client,
            namespace,
            work,
            store,
            simulator,
            operator,
            operator_port,
            recorders: BTreeMap::new(),
            cameras,
            recorder_env: Vec::new(),
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
        let r = RecorderProcess::start_with_env(
            &self.namespace,
            "main",
            &name,
            free_port(),
            &self.work,
            &self.recorder_env,
        );
        self.recorders.insert(name.clone(), r);
        name
    }

    /// SIGTERMs `name` (a rolling update or scale-down stopping its pod) and waits for it to
    /// exit: it drains first, recording until every camera has been taken over. Returns how
    /// long it took and whether it exited cleanly.
    pub async fn terminate(&mut self, name: &str, timeout: Duration) -> (Duration, bool) {
        let mut r = self.recorders.remove(name).expect("recorder is running");
        let start = std::time::Instant::now();
        let pid = r.child.0.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        loop {
            if let Ok(Some(status)) = r.child.0.try_wait() {
                return (start.elapsed(), status.success());
            }
            if start.elapsed() > timeout {
                r.child.kill();
                return (start.elapsed(), false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The stored footage of `camera`: (start ms, end ms) of each segment, by start.
    pub fn stored_intervals(&self, camera: &str) -> Vec<(i64, i64)> {
        let mut out: Vec<(i64, i64)> = stored_segments(&self.store, &self.namespace, camera)
            .iter()
            .filter_map(|p| {
                let stem = p.file_stem()?.to_str()?;
                let mut parts = stem.split('-');
                let start = parts.next()?.parse().ok()?;
                let end = parts.next()?.parse().ok()?;
                Some((start, end))
            })
            .collect();
        out.sort();
        out
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

    /// SIGKILLs the `victims` one after another, `gap` apart (all at once for a zero gap), and
    /// measures, for each camera they held, the time from its recorder's kill to the first
    /// segment bytes on the live recorder it moved to. A camera moved onto a victim killed later
    /// counts from its first recorder's kill, so a back-to-back kill is judged end to end.
    pub async fn kill_and_measure(
        &mut self,
        victims: &[&str],
        gap: Duration,
        timeout: Duration,
    ) -> Vec<FailoverSample> {
        let before = self.assignments().await;
        let mut killed_at: BTreeMap<String, std::time::Instant> = BTreeMap::new();
        for (i, victim) in victims.iter().enumerate() {
            if i > 0 && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            let mut killed = self.recorders.remove(*victim).expect("victim is running");
            killed.child.kill();
            killed_at.insert((*victim).to_string(), std::time::Instant::now());
        }
        let mut pending: Vec<(String, String)> = before
            .iter()
            .filter(|(_, r)| killed_at.contains_key(*r))
            .map(|(c, r)| (c.clone(), r.clone()))
            .collect();
        let first_kill = killed_at.values().min().copied().expect("a victim");
        let mut samples = vec![];
        let mut reassigned: BTreeMap<String, f64> = BTreeMap::new();
        while !pending.is_empty() && first_kill.elapsed() < timeout {
            let now = self.assignments().await;
            pending.retain(|(cam, victim)| {
                let since = killed_at[victim];
                let Some(to) = now.get(cam).filter(|r| *r != victim) else {
                    return true;
                };
                let reassigned_seconds = *reassigned
                    .entry(cam.clone())
                    .or_insert_with(|| since.elapsed().as_secs_f64());
                // Still on a recorder that is dead (killed later in this round): not yet.
                let Some(r) = self.recorders.get(to) else {
                    return true;
                };
                if partial_segment_bytes(&r.buffer_dir, &self.namespace, cam) == 0 {
                    return true;
                }
                samples.push(FailoverSample {
                    camera: cam.clone(),
                    from: victim.clone(),
                    to: to.clone(),
                    seconds: since.elapsed().as_secs_f64(),
                    reassigned_seconds,
                });
                false
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            pending.is_empty(),
            "cameras {pending:?} (camera, killed recorder) did not resume within {timeout:?}"
        );
        samples
    }

    /// The operator's `/metrics` text.
    pub fn operator_metrics(&self) -> String {
        http_get(&format!("127.0.0.1:{}", self.operator_port), "/metrics").unwrap_or_default()
    }
}

/// The recorders holding the most cameras in `assignments` (camera → recorder), busiest first
/// (ties by name): the victims of the kill tests.
pub fn busiest(assignments: &BTreeMap<String, String>, n: usize) -> Vec<String> {
    let mut load: BTreeMap<&String, usize> = BTreeMap::new();
    for r in assignments.values() {
        *load.entry(r).or_default() += 1;
    }
    let mut by_load: Vec<(&String, usize)> = load.into_iter().collect();
    by_load.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    by_load
        .into_iter()
        .take(n)
        .map(|(r, _)| r.clone())
        .collect()
}
