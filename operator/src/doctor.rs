//! `vigil-operator doctor`: checks, from wherever it runs (a laptop with a kubeconfig or a pod
//! with its ServiceAccount), that the API server answers, that Vigil's CRDs are served, and that
//! this identity may read Vigil's objects. Prints one line per check; fails if any check fails.

use kube::{Api, Client, api::ListParams, discovery};

use crate::error::{Error, Result};
use vigil_api::{Backfill, Camera, GROUP, RecorderPool, VERSION};

/// Outcome of one check, as printed.
pub struct Check {
    pub ok: bool,
    pub what: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}  {}",
            if self.ok { "ok  " } else { "FAIL" },
            self.what
        )
    }
}

/// Runs every check against `client`; `namespace` None means all namespaces.
pub async fn run_checks(client: &Client, namespace: Option<&str>) -> Vec<Check> {
    let mut checks = vec![];
    match client.apiserver_version().await {
        Ok(v) => checks.push(Check {
            ok: true,
            what: format!("API server answers: {}", v.git_version),
        }),
        Err(e) => {
            checks.push(Check {
                ok: false,
                what: format!("API server unreachable: {e}"),
            });
            return checks;
        }
    }
    match discovery::group(client, GROUP).await {
        Ok(group) => {
            let served: Vec<String> = group
                .versioned_resources(VERSION)
                .into_iter()
                .map(|(r, _)| r.plural)
                .collect();
            let wanted = ["cameras", "recorderpools", "backfills"];
            let missing: Vec<&str> = wanted
                .iter()
                .copied()
                .filter(|w| !served.iter().any(|s| s == w))
                .collect();
            checks.push(if missing.is_empty() {
                Check {
                    ok: true,
                    what: format!("{GROUP}/{VERSION} serves {}", wanted.join(", ")),
                }
            } else {
                Check {
                    ok: false,
                    what: format!(
                        "{GROUP}/{VERSION} lacks {}: apply the CRDs in crds/",
                        missing.join(", ")
                    ),
                }
            });
        }
        Err(e) => checks.push(Check {
            ok: false,
            what: format!("API group {GROUP} not served ({e}): apply the CRDs in crds/"),
        }),
    }
    let scope = namespace.map_or("all namespaces".to_string(), |n| format!("namespace {n}"));
    checks.push(count::<Camera>(client, namespace, "cameras", &scope).await);
    checks.push(count::<RecorderPool>(client, namespace, "recorderpools", &scope).await);
    checks.push(count::<Backfill>(client, namespace, "backfills", &scope).await);
    checks
}

async fn count<K>(client: &Client, namespace: Option<&str>, plural: &str, scope: &str) -> Check
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list(&ListParams::default()).await {
        Ok(list) => Check {
            ok: true,
            what: format!("can list {plural} in {scope}: {} found", list.items.len()),
        },
        Err(e) => Check {
            ok: false,
            what: format!("cannot list {plural} in {scope}: {e}"),
        },
    }
}

/// Runs the checks, prints them, and fails if any failed.
pub async fn doctor(client: &Client, namespace: Option<&str>) -> Result<()> {
    let checks = run_checks(client, namespace).await;
    for c in &checks {
        println!("{c}");
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed == 0 {
        println!("all {} checks passed", checks.len());
        Ok(())
    } else {
        Err(Error::ChecksFailed {
            failed,
            total: checks.len(),
        })
    }
}
