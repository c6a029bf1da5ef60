//! Kubernetes mode of `vigil-rendezvous` (`--kubernetes`, see `docs/sites.md`): the sites are the
//! `Site` resources and their credentials Secrets, kept in reflectors (a watch), so adding or
//! deleting a Site or rotating its Secret takes effect without a restart: the next check (a
//! gateway's registration, a data connection, or the keepalive every
//! [`crate::rendezvous::PING_INTERVAL`]) sees it, and a gateway whose Site is gone or whose token
//! changed is disconnected. Recorders authenticate per namespace with the token in the
//! namespace's recorder Secret (`vigil-site-recorder` by default, key `token`).
//!
//! [`status_loop`] writes each Site's status (server-side apply on the status subresource, field
//! manager [`FIELD_MANAGER`]) from [`Rendezvous::site_status`]: the `Connected` condition, the
//! path in use, RTT, bytes each way, last seen. Tokens never reach logs, status or errors.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};
use vigil_api::{
    CameraNetworks, Condition, ConditionStatus, Site, SitePath, SiteStatus as ApiSiteStatus,
    find_condition, set_condition,
};

use crate::error::{Error, Result};
use crate::lan::Path;
use crate::proto::Token;
use crate::rendezvous::{Registry, Rendezvous, SiteStatus};

/// The field manager of the status this service writes.
pub const FIELD_MANAGER: &str = "vigil-rendezvous";
/// The default name of a namespace's recorder Secret (key `token`).
pub const RECORDER_SECRET: &str = "vigil-site-recorder";
/// The key of the token in a site's credentials Secret and in the recorder Secret.
pub const TOKEN_KEY: &str = "token";
/// A status where only the RTT and last-seen time moved is rewritten at most this often.
pub const REFRESH: Duration = Duration::from_secs(30);

/// Sites and recorder tokens from the API server.
pub struct KubeRegistry {
    sites: Store<Site>,
    secrets: Store<Secret>,
    recorder_secret: String,
    watches: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for KubeRegistry {
    fn drop(&mut self) {
        for w in &self.watches {
            w.abort();
        }
    }
}

impl KubeRegistry {
    /// Starts watching Sites and Secrets in `namespace` (all namespaces when `None`) and waits
    /// until both caches hold the first listing.
    pub async fn start(
        client: Client,
        namespace: Option<&str>,
        recorder_secret: &str,
    ) -> Result<Arc<Self>> {
        let (sites_api, secrets_api): (Api<Site>, Api<Secret>) = match namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client, ns),
            ),
            None => (Api::all(client.clone()), Api::all(client)),
        };
        let (sites, w1) = reflector::store();
        let (secrets, w2) = reflector::store();
        let watches = vec![
            tokio::spawn(
                reflector::reflector(w1, watcher(sites_api, watcher::Config::default()))
                    .default_backoff()
                    .applied_objects()
                    .for_each(|_| futures::future::ready(())),
            ),
            tokio::spawn(
                reflector::reflector(w2, watcher(secrets_api, watcher::Config::default()))
                    .default_backoff()
                    .applied_objects()
                    .for_each(|_| futures::future::ready(())),
            ),
        ];
        let reg = Arc::new(KubeRegistry {
            sites,
            secrets,
            recorder_secret: recorder_secret.to_string(),
            watches,
        });
        tokio::time::timeout(Duration::from_secs(60), async {
            reg.sites.wait_until_ready().await.ok();
            reg.secrets.wait_until_ready().await.ok();
        })
        .await
        .map_err(|_| Error::Timeout("the first listing of Sites and Secrets"))?;
        Ok(reg)
    }

    /// The Sites known now.
    pub fn sites(&self) -> Vec<Arc<Site>> {
        self.sites.state()
    }

    fn site(&self, namespace: &str, name: &str) -> Option<Arc<Site>> {
        self.sites
            .get(&ObjectRef::new(name).within(namespace))
            .filter(|s| s.metadata.deletion_timestamp.is_none())
    }

    /// The token under `token` in the Secret, if the Secret exists and holds a non-empty one.
    fn secret_token(&self, namespace: &str, name: &str) -> Option<Token> {
        let s = self.secrets.get(&ObjectRef::new(name).within(namespace))?;
        token_of(&s)
    }
}

/// The token in a Secret's `token` key (trailing newline dropped); `None` when absent or empty.
pub fn token_of(secret: &Secret) -> Option<Token> {
    let b = secret.data.as_ref()?.get(TOKEN_KEY)?;
    let t = std::str::from_utf8(&b.0)
        .ok()?
        .trim_end_matches(['\n', '\r']);
    (!t.is_empty()).then(|| Token::new(t))
}

impl Registry for KubeRegistry {
    fn authenticate_site(
        &self,
        namespace: &str,
        name: &str,
        token: &Token,
    ) -> Result<CameraNetworks> {
        let site = self
            .site(namespace, name)
            .ok_or_else(|| Error::Refused(format!("unknown site {namespace}/{name}")))?;
        match self.secret_token(namespace, &site.spec.credentials_secret) {
            Some(t) if t.matches(token) => Ok(site.spec.camera_networks.clone()),
            Some(_) => Err(Error::Refused(format!(
                "site {namespace}/{name}: token not valid (revoked or wrong)"
            ))),
            None => Err(Error::Refused(format!(
                "site {namespace}/{name}: no valid token"
            ))),
        }
    }

    fn authenticate_recorder(&self, namespace: &str, token: &Token) -> Result<()> {
        match self.secret_token(namespace, &self.recorder_secret) {
            Some(t) if t.matches(token) => Ok(()),
            _ => Err(Error::Refused(format!(
                "recorder not allowed for namespace {namespace}"
            ))),
        }
    }

    fn max_relay_kbps(&self, namespace: &str, name: &str) -> Option<u32> {
        self.site(namespace, name)?.spec.max_relay_kbps
    }
}

/// The status a Site should show: `prev` is what it shows now (transition times are kept when
/// the condition's status does not change), `known` what the service knows of the site
/// (`None`: no gateway since the service started), `credentials` whether its Secret holds a
/// token.
pub fn desired_status(site: &Site, known: Option<&SiteStatus>, credentials: bool) -> ApiSiteStatus {
    let generation = site.metadata.generation;
    let prev = site.status.clone().unwrap_or_default();
    let connected = known.is_some_and(|k| k.connected);
    let (status, reason, message) = if connected {
        (
            ConditionStatus::True,
            "GatewayConnected",
            "the site's gateway holds a tunnel to the rendezvous service".to_string(),
        )
    } else if !credentials {
        (
            ConditionStatus::False,
            "CredentialsMissing",
            format!(
                "Secret {} has no `{TOKEN_KEY}` key (or does not exist): every gateway is refused",
                site.spec.credentials_secret
            ),
        )
    } else if known.is_some() {
        (
            ConditionStatus::False,
            "GatewayDisconnected",
            "the site's gateway disconnected (network, revoked token, or stopped)".to_string(),
        )
    } else {
        (
            ConditionStatus::False,
            "NeverConnected",
            "no gateway of this site has connected since the rendezvous service started"
                .to_string(),
        )
    };
    let mut conditions = prev.conditions.clone();
    set_condition(
        &mut conditions,
        Condition::new("Connected", status, reason, message, generation),
    );
    let k = known.cloned().unwrap_or_default();
    ApiSiteStatus {
        conditions,
        path: if connected {
            k.path.map(api_path)
        } else {
            None
        },
        rtt_ms: if connected {
            k.rtt_ms.map(|r| (r * 10.0).round() / 10.0)
        } else {
            None
        },
        bytes_in: known.map(|k| k.bytes_from_site),
        bytes_out: known.map(|k| k.bytes_to_site),
        last_seen: k.last_seen.map(DateTime::<Utc>::from).or(prev.last_seen),
    }
}

fn api_path(p: Path) -> SitePath {
    match p {
        Path::Lan => SitePath::Lan,
        Path::Direct => SitePath::Direct,
        Path::Relay => SitePath::Relay,
    }
}

/// Whether `new` differs from `old` in what a reader acts on or counts (the condition, its
/// generation, the path, the bytes), as opposed to what moves at every keepalive (RTT, last
/// seen), which is refreshed every [`REFRESH`].
pub fn meaning_changed(old: Option<&ApiSiteStatus>, new: &ApiSiteStatus) -> bool {
    let Some(old) = old else { return true };
    let key = |s: &ApiSiteStatus| {
        find_condition(&s.conditions, "Connected")
            .map(|c| (c.status, c.reason.clone(), c.observed_generation))
    };
    key(old) != key(new)
        || old.path != new.path
        || old.bytes_in != new.bytes_in
        || old.bytes_out != new.bytes_out
}

/// Considers every Site's status every `every`: a changed condition, path or byte count is
/// written then, a moved RTT or last-seen time at most every [`REFRESH`]. Runs until aborted.
pub async fn status_loop(
    client: Client,
    rv: Arc<Rendezvous>,
    reg: Arc<KubeRegistry>,
    every: Duration,
) {
    let mut written: HashMap<(String, String), Instant> = HashMap::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let sites = reg.sites();
        written.retain(|(ns, n), _| {
            sites
                .iter()
                .any(|s| s.namespace().as_deref() == Some(ns) && &s.name_any() == n)
        });
        for site in sites {
            if site.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(ns) = site.namespace() else { continue };
            let name = site.name_any();
            let known = rv.site_status(&ns, &name);
            let credentials = reg
                .secret_token(&ns, &site.spec.credentials_secret)
                .is_some();
            let new = desired_status(&site, known.as_ref(), credentials);
            let key = (ns.clone(), name.clone());
            let due = written.get(&key).is_none_or(|t| t.elapsed() >= REFRESH);
            let changed = meaning_changed(site.status.as_ref(), &new);
            if !changed && (!due || site.status.as_ref() == Some(&new)) {
                continue;
            }
            let api: Api<Site> = Api::namespaced(client.clone(), &ns);
            let patch = json!({
                "apiVersion": "vigil.dev/v1alpha1",
                "kind": "Site",
                "status": new,
            });
            match api
                .patch_status(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await
            {
                Ok(_) => {
                    if changed {
                        let c = find_condition(&new.conditions, "Connected");
                        info!(site = %format!("{ns}/{name}"), connected = ?c.map(|c| &c.status),
                            reason = c.map(|c| c.reason.as_str()).unwrap_or(""), path = ?new.path,
                            "site status written");
                    } else {
                        debug!(site = %format!("{ns}/{name}"), "site status refreshed");
                    }
                    written.insert(key, Instant::now());
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => warn!(site = %format!("{ns}/{name}"), error = %e, "writing site status"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(generation: i64, status: Option<ApiSiteStatus>) -> Site {
        let mut s: Site = serde_json::from_value(json!({
            "apiVersion": "vigil.dev/v1alpha1",
            "kind": "Site",
            "metadata": {"name": "branch", "namespace": "shop", "generation": generation},
            "spec": {"credentialsSecret": "branch-token", "cameraNetworks": {"allow": ["10.0.0.0/8"]}}
        }))
        .unwrap();
        s.status = status;
        s
    }

    fn cond(s: &ApiSiteStatus) -> (ConditionStatus, String, Option<i64>) {
        let c = find_condition(&s.conditions, "Connected").unwrap();
        (c.status, c.reason.clone(), c.observed_generation)
    }

    #[test]
    fn the_connected_condition_follows_the_gateway() {
        let never = desired_status(&site(1, None), None, true);
        assert_eq!(
            cond(&never),
            (ConditionStatus::False, "NeverConnected".into(), Some(1))
        );
        assert_eq!(never.path, None);
        let missing = desired_status(&site(1, None), None, false);
        assert_eq!(cond(&missing).1, "CredentialsMissing");
        assert!(
            !serde_json::to_string(&missing)
                .unwrap()
                .contains("secret-value")
        );

        let mut k = SiteStatus {
            connected: true,
            rtt_ms: Some(1.234),
            last_seen: Some(std::time::SystemTime::now()),
            ..Default::default()
        };
        k.opened(Path::Relay);
        k.bytes_from_site = 1000;
        k.bytes_to_site = 10;
        let up = desired_status(&site(2, Some(never.clone())), Some(&k), true);
        assert_eq!(
            cond(&up),
            (ConditionStatus::True, "GatewayConnected".into(), Some(2))
        );
        assert_eq!(up.path, Some(SitePath::Relay));
        assert_eq!(up.rtt_ms, Some(1.2));
        assert_eq!((up.bytes_in, up.bytes_out), (Some(1000), Some(10)));
        assert!(up.last_seen.is_some());
        assert!(meaning_changed(Some(&never), &up));

        // Only the RTT moved: no write needed, and the transition time is kept.
        k.rtt_ms = Some(3.0);
        let later = desired_status(&site(2, Some(up.clone())), Some(&k), true);
        assert!(!meaning_changed(Some(&up), &later));
        // Bytes moved: written.
        k.bytes_from_site = 5000;
        assert!(meaning_changed(
            Some(&up),
            &desired_status(&site(2, Some(up.clone())), Some(&k), true)
        ));
        assert_eq!(
            find_condition(&later.conditions, "Connected")
                .unwrap()
                .last_transition_time,
            find_condition(&up.conditions, "Connected")
                .unwrap()
                .last_transition_time
        );
        // A new generation is a change of meaning (observedGeneration).
        let regen = desired_status(&site(3, Some(up.clone())), Some(&k), true);
        assert!(meaning_changed(Some(&up), &regen));

        k.connected = false;
        let down = desired_status(&site(3, Some(later.clone())), Some(&k), true);
        assert_eq!(cond(&down).1, "GatewayDisconnected");
        assert_eq!((down.path, down.rtt_ms), (None, None));
        assert_eq!(down.last_seen, later.last_seen, "last seen stays");
    }

    #[test]
    fn a_secret_token_is_read_from_its_key() {
        let s: Secret = serde_json::from_value(json!({
            "metadata": {"name": "t"},
            "data": {"token": "c2VjcmV0Cg=="}
        }))
        .unwrap();
        assert!(token_of(&s).unwrap().matches(&Token::new("secret")));
        let empty: Secret =
            serde_json::from_value(json!({"metadata": {"name": "t"}, "data": {"token": ""}}))
                .unwrap();
        assert!(token_of(&empty).is_none());
        let none: Secret = serde_json::from_value(json!({"metadata": {"name": "t"}})).unwrap();
        assert!(token_of(&none).is_none());
    }
}
