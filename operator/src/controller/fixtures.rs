//! Test fixtures: a mock API server that answers the exact requests a reconcile is expected to
//! make, in order, and fails the test on any other request (the pattern of kube-rs's
//! `controller-rs` example), and a [`Context`] whose watch caches are filled by the test.
//!
//! Events are best effort and not part of what a reconcile must do, so requests to the Events
//! API are answered whenever they come and only counted.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde_json::Value;

use super::children::RecorderSettings;
use super::{CacheWriters, Caches, Context};
use crate::metrics::Metrics;

/// One request the reconcile must make next, and the answer it gets.
pub struct Expected {
    pub method: Method,
    /// The request path, without the query.
    pub path: String,
    /// Checks the request body (JSON, Null when empty) and answers it; panics on a mismatch.
    pub answer: Answer,
}

pub type Answer = Box<dyn Fn(&Value) -> (StatusCode, Value) + Send + Sync>;

/// The objects the mock API server holds, by request path (without `/status`).
pub type Objects = Arc<Mutex<BTreeMap<String, Value>>>;

impl Expected {
    /// A PATCH of `path` whose body passes `check`; the body is merged into the object held
    /// at `path` (without `/status`), which is the answer. A server-side apply of an object not
    /// held yet creates it.
    pub fn patch(
        objects: &Objects,
        path: &str,
        check: impl Fn(&Value) + Send + Sync + 'static,
    ) -> Expected {
        let objects = objects.clone();
        let key = path.trim_end_matches("/status").to_string();
        Expected {
            method: Method::PATCH,
            path: path.to_string(),
            answer: Box::new(move |body| {
                check(body);
                let mut held = lock(&objects);
                let object = held.entry(key.clone()).or_insert(Value::Null);
                merge(object, body);
                (StatusCode::OK, object.clone())
            }),
        }
    }
}

/// What the mock saw.
#[derive(Default)]
pub struct Seen {
    /// `METHOD path` of every request but Events, in order.
    pub requests: Vec<String>,
    /// Bodies of those requests (JSON, Null when empty).
    pub bodies: Vec<Value>,
    pub events: usize,
}

/// The mock API server's script: requests still expected, and what it saw.
#[derive(Clone, Default)]
pub struct Script {
    pub expected: Arc<Mutex<VecDeque<Expected>>>,
    pub seen: Arc<Mutex<Seen>>,
}

impl Script {
    /// Expects these requests next, in this order.
    pub fn expect(&self, requests: Vec<Expected>) {
        lock(&self.expected).extend(requests);
    }

    /// Takes what was seen since the last call, asserting every expected request was made.
    pub fn finish(&self) -> Seen {
        let left: Vec<String> = lock(&self.expected)
            .iter()
            .map(|e| format!("{} {}", e.method, e.path))
            .collect();
        assert!(left.is_empty(), "requests expected but not made: {left:?}");
        std::mem::take(&mut *lock(&self.seen))
    }
}

/// A client whose every request is checked against the [`Script`], in order. Unexpected
/// requests panic the reconcile (and so the test) with the request they made.
pub fn mock_client() -> (Client, Script) {
    let script = Script::default();
    let (expected, seen) = (script.expected.clone(), script.seen.clone());
    let (exp, saw) = (expected, seen);
    let service = tower::service_fn(move |request: Request<Body>| {
        let (exp, saw) = (exp.clone(), saw.clone());
        async move {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.map_err(Box::new)?;
            let json: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            };
            let path = parts.uri.path().to_string();
            let line = format!("{} {path}", parts.method);
            if path.starts_with("/apis/events.k8s.io/") || path.contains("/events") {
                lock(&saw).events += 1;
                return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(json_response(
                    StatusCode::CREATED,
                    &json,
                ));
            }
            {
                let mut s = lock(&saw);
                s.requests.push(line.clone());
                s.bodies.push(json.clone());
            }
            let next = lock(&exp).pop_front();
            let Some(next) = next else {
                panic!("unexpected request: {line} {json}");
            };
            assert_eq!(
                (&parts.method, path.as_str()),
                (&next.method, next.path.as_str()),
                "request out of order: got {line}"
            );
            let (status, body) = (next.answer)(&json);
            Ok(json_response(status, &body))
        }
    });
    (Client::new(service, "default"), script)
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut r = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A Context over `client` with empty caches; fill them with [`Filler`].
pub fn context(client: Client) -> (Arc<Context>, CacheWriters) {
    let (caches, writers) = Caches::new();
    let ctx = Context::new(
        client,
        Arc::new(Metrics::default()),
        RecorderSettings {
            image: "vigil/recorder:test".into(),
            image_pull_policy: "IfNotPresent".into(),
            cluster_networks: String::new(),
            site_rendezvous: String::new(),
            site_server_name: String::new(),
        },
        caches,
        Duration::from_secs(300),
    );
    (Arc::new(ctx), writers)
}

/// Puts `object` into a cache, as a watch event would.
pub fn put<K>(writer: &mut kube::runtime::reflector::store::Writer<K>, object: K)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    writer.apply_watcher_event(&watcher::Event::Apply(object));
}

/// RFC 7386 JSON merge patch of `patch` into `target` (how the mock's API "stores" a write).
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, Value::Object(p)) => {
            // As the API server does: nulls in a patch for a field not there yet are dropped.
            *t = Value::Object(Default::default());
            merge(t, &Value::Object(p.clone()));
        }
        (t, p) => *t = p.clone(),
    }
}
