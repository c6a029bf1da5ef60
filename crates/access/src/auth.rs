//! Bearer-token authentication (TokenReview) and per-camera authorisation
//! (SubjectAccessReview: `get` on `cameras/recordings` in the camera's namespace), so that
//! Kubernetes RBAC decides who may watch which camera.
//!
//! Results are cached briefly (keyed by a hash of the token, never the token itself) so that a
//! player fetching a segment every few seconds does not cost two API calls per request.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::error::Result;
use vigil_store::layout::CameraId;

const TTL: Duration = Duration::from_secs(30);
const MAX_ENTRIES: usize = 10_000;

/// What a user wants of a camera: a subresource of `cameras` that RBAC grants separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Recorded footage: listings, playback, export (`get cameras/recordings`).
    Recordings,
    /// The live picture (`get cameras/live`), granted without `recordings`.
    Live,
    /// Start and stop a manual recording (`create cameras/manual-recording`).
    ManualRecording,
    /// Post an event from another system (`create cameras/events`).
    PostEvents,
}

impl Permission {
    pub fn subresource(self) -> &'static str {
        match self {
            Permission::Recordings => "recordings",
            Permission::Live => "live",
            Permission::ManualRecording => "manual-recording",
            Permission::PostEvents => "events",
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            Permission::Recordings | Permission::Live => "get",
            Permission::ManualRecording | Permission::PostEvents => "create",
        }
    }
}

/// Who the token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

/// (user and groups, camera, permission).
type DecisionKey = (String, CameraId, Permission);

pub struct Authorizer {
    client: Client,
    users: Mutex<HashMap<u64, (Instant, Option<User>)>>,
    decisions: Mutex<HashMap<DecisionKey, (Instant, bool)>>,
}

fn token_hash(token: &str) -> u64 {
    let mut h = DefaultHasher::new();
    token.hash(&mut h);
    h.finish()
}

fn cached<K: Eq + Hash + Clone, V: Clone>(m: &Mutex<HashMap<K, (Instant, V)>>, k: &K) -> Option<V> {
    let g = m.lock().ok()?;
    g.get(k)
        .filter(|(t, _)| t.elapsed() < TTL)
        .map(|(_, v)| v.clone())
}

fn remember<K: Eq + Hash, V>(m: &Mutex<HashMap<K, (Instant, V)>>, k: K, v: V) {
    if let Ok(mut g) = m.lock() {
        if g.len() >= MAX_ENTRIES {
            g.retain(|_, (t, _)| t.elapsed() < TTL);
            if g.len() >= MAX_ENTRIES {
                g.clear();
            }
        }
        g.insert(k, (Instant::now(), v));
    }
}

/// The SubjectAccessReview a request for `camera`'s footage needs.
pub fn access_review(user: &User, camera: &CameraId, what: Permission) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.name.clone()),
            uid: user.uid.clone(),
            groups: Some(user.groups.clone()),
            extra: Some(user.extra.clone()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(camera.namespace.clone()),
                verb: Some(what.verb().into()),
                group: Some(vigil_api::GROUP.into()),
                resource: Some("cameras".into()),
                subresource: Some(what.subresource().into()),
                name: Some(camera.name.clone()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

impl Authorizer {
    pub fn new(client: Client) -> Self {
        Authorizer {
            client,
            users: Mutex::new(HashMap::new()),
            decisions: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok(None)`: the token is not valid.
    pub async fn authenticate(&self, token: &str) -> Result<Option<User>> {
        let key = token_hash(token);
        if let Some(u) = cached(&self.users, &key) {
            return Ok(u);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let r = api.create(&PostParams::default(), &review).await?;
        let user = r.status.and_then(|s| {
            if s.authenticated != Some(true) {
                return None;
            }
            let u = s.user?;
            Some(User {
                name: u.username?,
                uid: u.uid,
                groups: u.groups.unwrap_or_default(),
                extra: u.extra.unwrap_or_default(),
            })
        });
        remember(&self.users, key, user.clone());
        Ok(user)
    }

    pub async fn allowed(&self, user: &User, camera: &CameraId) -> Result<bool> {
        self.allowed_to(user, camera, Permission::Recordings).await
    }

    pub async fn allowed_to(
        &self,
        user: &User,
        camera: &CameraId,
        what: Permission,
    ) -> Result<bool> {
        let key = (
            format!("{}\u{0}{:?}", user.name, user.groups),
            camera.clone(),
            what,
        );
        if let Some(d) = cached(&self.decisions, &key) {
            return Ok(d);
        }
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let r = api
            .create(&PostParams::default(), &access_review(user, camera, what))
            .await?;
        let ok = r.status.is_some_and(|s| s.allowed);
        remember(&self.decisions, key, ok);
        Ok(ok)
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn review_asks_for_camera_recordings() {
        let u = User {
            name: "system:serviceaccount:a:b".into(),
            uid: None,
            groups: vec!["g".into()],
            extra: Default::default(),
        };
        let live = access_review(
            &u,
            &CameraId::new("site", "door").unwrap(),
            Permission::Live,
        );
        let ra = live.spec.resource_attributes.unwrap();
        assert_eq!(ra.subresource.as_deref(), Some("live"));
        assert_eq!(ra.verb.as_deref(), Some("get"));
        let r = access_review(
            &u,
            &CameraId::new("site", "door").unwrap(),
            Permission::Recordings,
        );
        let ra = r.spec.resource_attributes.unwrap();
        assert_eq!(ra.namespace.as_deref(), Some("site"));
        assert_eq!(ra.resource.as_deref(), Some("cameras"));
        assert_eq!(ra.subresource.as_deref(), Some("recordings"));
        assert_eq!(ra.verb.as_deref(), Some("get"));
        assert_eq!(ra.name.as_deref(), Some("door"));
        let manual = access_review(
            &u,
            &CameraId::new("site", "door").unwrap(),
            Permission::ManualRecording,
        );
        let ra = manual.spec.resource_attributes.unwrap();
        assert_eq!(ra.subresource.as_deref(), Some("manual-recording"));
        assert_eq!(ra.verb.as_deref(), Some("create"));
    }
}
