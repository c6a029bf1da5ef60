//! The pure part of federation: the parent's registry of children (sessions, catalogs,
//! liveness) and the child's catalog diff. No I/O; time is passed in (milliseconds of a
//! monotonic clock), so every rule is tested here.

use std::collections::{BTreeMap, HashMap};

use vigil_api::{ChildDomain, Right, intersect};

use super::protocol::{CameraRef, CatalogPush, Delta, RemoteCamera, valid_camera};

/// Cameras a child may share unless its ChildDomain says otherwise.
pub const DEFAULT_MAX_CAMERAS: usize = 20_000;
/// Most deltas in one catalog message (the child splits larger changes).
pub const MAX_DELTAS: usize = 5_000;

/// Why a message from a child is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No ChildDomain names this certificate identity.
    UnknownIdentity,
    /// No such session: register again.
    NoSession,
    /// A catalog message was lost: send the full catalog.
    Resync { expected: u64 },
    /// More cameras than the ChildDomain allows.
    TooManyCameras { max: usize },
    /// A malformed camera or too many deltas.
    Invalid(String),
    /// Unregistering would cut active sessions (`force` not set).
    Busy { sessions: usize },
}

/// What the parent's ChildDomain says about an identity it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub rights: Vec<Right>,
    pub max_cameras: usize,
}

/// The ChildDomain (if any) that accepts `identity`. Two ChildDomains naming the same identity
/// is a configuration error: the oldest by namespace/name wins, so the answer is stable.
pub fn admit<'a>(
    children: impl IntoIterator<Item = &'a ChildDomain>,
    identity: &str,
) -> Option<Admission> {
    children
        .into_iter()
        .filter(|c| c.spec.identity == identity)
        .filter_map(|c| {
            Some(Admission {
                namespace: c.metadata.namespace.clone()?,
                name: c.metadata.name.clone()?,
                generation: c.metadata.generation,
                rights: c.spec.rights.clone(),
                max_cameras: c
                    .spec
                    .max_cameras
                    .map_or(DEFAULT_MAX_CAMERAS, |m| m as usize),
            })
        })
        .min_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
}

/// One registered child.
#[derive(Debug, Clone)]
pub struct Child {
    pub admission: Admission,
    pub identity: String,
    pub display_name: Option<String>,
    /// What the child shares within what the parent accepts.
    pub rights: Vec<Right>,
    pub session: u64,
    /// The seq of the last catalog message applied; `None` until the first full catalog.
    pub seq: Option<u64>,
    pub cameras: BTreeMap<CameraRef, bool>,
    pub last_seen_ms: u64,
    pub online: bool,
    /// Why it is offline (`Offline` after missed keepalives, `Unregistered`).
    pub reason: &'static str,
    /// Proxied sessions through this child that unregistering would cut.
    pub active_sessions: usize,
}

impl Child {
    pub fn cameras_online(&self) -> usize {
        self.cameras.values().filter(|o| **o).count()
    }
}

/// The parent's view of all children, keyed by certificate identity.
#[derive(Debug, Default)]
pub struct Registry {
    children: HashMap<String, Child>,
    next_session: u64,
}

impl Registry {
    pub fn new(first_session: u64) -> Self {
        Registry {
            children: HashMap::new(),
            next_session: first_session.max(1),
        }
    }

    pub fn children(&self) -> impl Iterator<Item = &Child> {
        self.children.values()
    }

    pub fn get(&self, identity: &str) -> Option<&Child> {
        self.children.get(identity)
    }

    /// A (re-)registration: a new session with an empty catalog (the child sends it in full
    /// next). `admission` is `None` when no ChildDomain names the identity.
    pub fn register(
        &mut self,
        identity: &str,
        admission: Option<Admission>,
        display_name: Option<String>,
        shared: &[Right],
        now_ms: u64,
    ) -> Result<u64, Refusal> {
        let admission = admission.ok_or(Refusal::UnknownIdentity)?;
        if display_name
            .as_ref()
            .is_some_and(|d| d.len() > super::protocol::MAX_NAME)
        {
            return Err(Refusal::Invalid("display name too long".into()));
        }
        let session = self.next_session;
        self.next_session += 1;
        let rights = intersect(&admission.rights, shared);
        self.children.insert(
            identity.to_string(),
            Child {
                admission,
                identity: identity.to_string(),
                display_name,
                rights,
                session,
                seq: None,
                cameras: BTreeMap::new(),
                last_seen_ms: now_ms,
                online: true,
                reason: "Online",
                active_sessions: 0,
            },
        );
        Ok(session)
    }

    fn session_mut(&mut self, identity: &str, session: u64) -> Result<&mut Child, Refusal> {
        match self.children.get_mut(identity) {
            Some(c) if c.session == session && c.reason != "Unregistered" => Ok(c),
            _ => Err(Refusal::NoSession),
        }
    }

    pub fn keepalive(&mut self, identity: &str, session: u64, now_ms: u64) -> Result<(), Refusal> {
        let c = self.session_mut(identity, session)?;
        c.last_seen_ms = now_ms;
        c.online = true;
        c.reason = "Online";
        Ok(())
    }

    /// Applies a catalog message: a full one replaces the catalog; deltas must follow the last
    /// applied seq. The catalog is unchanged when the message is refused.
    pub fn catalog(
        &mut self,
        identity: &str,
        msg: CatalogPush,
        now_ms: u64,
    ) -> Result<usize, Refusal> {
        let c = self.session_mut(identity, msg.session)?;
        let max = c.admission.max_cameras;
        if let Some(full) = msg.full {
            if full.len() > max {
                return Err(Refusal::TooManyCameras { max });
            }
            let mut cams = BTreeMap::new();
            for cam in full {
                let k = cam.key();
                if !valid_camera(&k) {
                    return Err(Refusal::Invalid(format!("bad camera name {:?}", k.name)));
                }
                cams.insert(k, cam.online);
            }
            c.cameras = cams;
        } else {
            let expected = c.seq.map(|s| s + 1);
            if expected != Some(msg.seq) {
                return Err(Refusal::Resync {
                    expected: expected.unwrap_or(0),
                });
            }
            if msg.deltas.len() > MAX_DELTAS {
                return Err(Refusal::Invalid(format!(
                    "{} deltas in one message (at most {MAX_DELTAS})",
                    msg.deltas.len()
                )));
            }
            let cams = apply_deltas(&c.cameras, &msg.deltas, max)?;
            c.cameras = cams;
        }
        c.seq = Some(msg.seq);
        c.last_seen_ms = now_ms;
        c.online = true;
        c.reason = "Online";
        Ok(c.cameras.len())
    }

    /// Removes the child's session (it shows Unregistered until it registers again); refused
    /// while `active_sessions` proxied answers are being streamed, unless `force`.
    pub fn unregister(
        &mut self,
        identity: &str,
        session: u64,
        force: bool,
        active_sessions: usize,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let c = self.session_mut(identity, session)?;
        c.active_sessions = active_sessions;
        if c.active_sessions > 0 && !force {
            return Err(Refusal::Busy {
                sessions: c.active_sessions,
            });
        }
        c.online = false;
        c.reason = "Unregistered";
        c.cameras.clear();
        c.seq = None;
        c.last_seen_ms = now_ms;
        Ok(())
    }

    /// Marks children silent for `timeout_ms` or longer offline; returns their identities.
    pub fn sweep(&mut self, now_ms: u64, timeout_ms: u64) -> Vec<String> {
        let mut out = vec![];
        for c in self.children.values_mut() {
            if c.online && now_ms.saturating_sub(c.last_seen_ms) >= timeout_ms {
                c.online = false;
                c.reason = "Offline";
                out.push(c.identity.clone());
            }
        }
        out
    }

    /// Forgets children whose ChildDomain is gone (so a deleted ChildDomain's identity can no
    /// longer push). `keep` says whether an identity is still admitted.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.children.retain(|id, _| keep(id));
    }
}

/// The catalog after `deltas`, or a refusal (the input is not changed).
pub fn apply_deltas(
    cams: &BTreeMap<CameraRef, bool>,
    deltas: &[Delta],
    max: usize,
) -> Result<BTreeMap<CameraRef, bool>, Refusal> {
    let mut out = cams.clone();
    for d in deltas {
        match d {
            Delta::Add { camera } | Delta::Update { camera } => {
                let k = camera.key();
                if !valid_camera(&k) {
                    return Err(Refusal::Invalid(format!("bad camera name {:?}", k.name)));
                }
                out.insert(k, camera.online);
                if out.len() > max {
                    return Err(Refusal::TooManyCameras { max });
                }
            }
            Delta::Delete { camera } => {
                out.remove(camera);
            }
            Delta::Online { camera } | Delta::Offline { camera } => {
                let online = matches!(d, Delta::Online { .. });
                match out.get_mut(camera) {
                    Some(o) => *o = online,
                    None => {
                        return Err(Refusal::Invalid(format!(
                            "state of unknown camera {}/{}",
                            camera.namespace, camera.name
                        )));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The deltas that turn the catalog the parent has (`sent`) into `now`: deletes, adds,
/// online/offline for a change of state only, in a stable order.
pub fn diff(sent: &BTreeMap<CameraRef, RemoteCamera>, now: &[RemoteCamera]) -> Vec<Delta> {
    let now: BTreeMap<CameraRef, &RemoteCamera> = now.iter().map(|c| (c.key(), c)).collect();
    let mut out = vec![];
    for k in sent.keys() {
        if !now.contains_key(k) {
            out.push(Delta::Delete { camera: k.clone() });
        }
    }
    for (k, c) in &now {
        match sent.get(k) {
            None => out.push(Delta::Add {
                camera: (*c).clone(),
            }),
            Some(old) if old == *c => {}
            Some(old) => {
                let mut same = old.clone();
                same.online = c.online;
                if same == **c {
                    out.push(if c.online {
                        Delta::Online { camera: k.clone() }
                    } else {
                        Delta::Offline { camera: k.clone() }
                    });
                } else {
                    out.push(Delta::Update {
                        camera: (*c).clone(),
                    });
                }
            }
        }
    }
    out
}

/// Readiness as the parent's ChildDomain status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusView {
    pub online: bool,
    pub reason: &'static str,
    pub cameras: usize,
    pub cameras_online: usize,
    pub rights: Vec<Right>,
    pub display_name: Option<String>,
}

impl StatusView {
    pub fn of(c: &Child) -> Self {
        StatusView {
            online: c.online,
            reason: c.reason,
            cameras: c.cameras.len(),
            cameras_online: c.cameras_online(),
            rights: c.rights.clone(),
            display_name: c.display_name.clone(),
        }
    }
}

/// Whether the status must be written: something a reader sees changed, or the written last
/// keepalive is older than `refresh_ms` while the child is online.
pub fn status_due(
    written: Option<&(StatusView, u64)>,
    now: &StatusView,
    last_seen_ms: u64,
    refresh_ms: u64,
) -> bool {
    match written {
        None => true,
        Some((v, seen)) => {
            v != now || (now.online && last_seen_ms.saturating_sub(*seen) >= refresh_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adm(max: usize) -> Option<Admission> {
        Some(Admission {
            namespace: "fed".into(),
            name: "site-a".into(),
            generation: Some(1),
            rights: vec![Right::Live, Right::Playback],
            max_cameras: max,
        })
    }

    fn cam(name: &str, online: bool) -> RemoteCamera {
        RemoteCamera {
            namespace: "site".into(),
            name: name.into(),
            path: vec![],
            online,
        }
    }

    fn full(session: u64, seq: u64, cams: Vec<RemoteCamera>) -> CatalogPush {
        CatalogPush {
            session,
            seq,
            full: Some(cams),
            deltas: vec![],
        }
    }

    fn deltas(session: u64, seq: u64, deltas: Vec<Delta>) -> CatalogPush {
        CatalogPush {
            session,
            seq,
            full: None,
            deltas,
        }
    }

    #[test]
    fn admission_by_identity() {
        let mut c = ChildDomain::new(
            "site-a",
            vigil_api::ChildDomainSpec {
                identity: "child-a".into(),
                rights: vec![Right::Playback],
                max_cameras: Some(5),
            },
        );
        c.metadata.namespace = Some("fed".into());
        let all = vec![c];
        let a = admit(&all, "child-a").unwrap();
        assert_eq!((a.name.as_str(), a.max_cameras), ("site-a", 5));
        assert_eq!(admit(&all, "child-b"), None);
        assert_eq!(admit(&[], "child-a"), None);
    }

    #[test]
    fn unknown_identity_is_refused() {
        let mut r = Registry::new(1);
        assert_eq!(
            r.register("x", None, None, &Right::ALL, 0),
            Err(Refusal::UnknownIdentity)
        );
        assert!(r.get("x").is_none());
    }

    #[test]
    fn rights_are_the_intersection() {
        let mut r = Registry::new(1);
        r.register("a", adm(10), None, &[Right::Playback, Right::Export], 0)
            .unwrap();
        assert_eq!(r.get("a").unwrap().rights, vec![Right::Playback]);
    }

    #[test]
    fn full_then_deltas_then_lost_message() {
        let mut r = Registry::new(7);
        let s = r.register("a", adm(10), None, &Right::ALL, 0).unwrap();
        assert_eq!(s, 7);
        // Deltas before any full catalog: resync.
        assert_eq!(
            r.catalog("a", deltas(s, 0, vec![]), 1),
            Err(Refusal::Resync { expected: 0 })
        );
        assert_eq!(
            r.catalog("a", full(s, 5, vec![cam("a", true), cam("b", false)]), 1),
            Ok(2)
        );
        let b = cam("b", false).key();
        assert_eq!(
            r.catalog(
                "a",
                deltas(
                    s,
                    6,
                    vec![
                        Delta::Online { camera: b.clone() },
                        Delta::Add {
                            camera: cam("c", true)
                        },
                        Delta::Delete {
                            camera: cam("a", true).key()
                        },
                    ]
                ),
                2
            ),
            Ok(2)
        );
        let c = r.get("a").unwrap();
        assert_eq!(c.cameras.get(&b), Some(&true));
        assert_eq!(c.cameras_online(), 2);
        // seq 8 after 6: message 7 was lost; nothing applied.
        assert_eq!(
            r.catalog(
                "a",
                deltas(s, 8, vec![Delta::Offline { camera: b.clone() }]),
                3
            ),
            Err(Refusal::Resync { expected: 7 })
        );
        assert_eq!(r.get("a").unwrap().cameras.get(&b), Some(&true));
        // A stale session is told to register again.
        assert_eq!(
            r.catalog("a", full(s + 1, 0, vec![]), 3),
            Err(Refusal::NoSession)
        );
    }

    #[test]
    fn bounded_catalog() {
        let mut r = Registry::new(1);
        let s = r.register("a", adm(2), None, &Right::ALL, 0).unwrap();
        assert_eq!(
            r.catalog(
                "a",
                full(s, 0, vec![cam("a", true), cam("b", true), cam("c", true)]),
                0
            ),
            Err(Refusal::TooManyCameras { max: 2 })
        );
        r.catalog("a", full(s, 0, vec![cam("a", true), cam("b", true)]), 0)
            .unwrap();
        assert_eq!(
            r.catalog(
                "a",
                deltas(
                    s,
                    1,
                    vec![Delta::Add {
                        camera: cam("c", true)
                    }]
                ),
                0
            ),
            Err(Refusal::TooManyCameras { max: 2 })
        );
        let mut bad = cam("x", true);
        bad.name = "a".repeat(300);
        assert!(matches!(
            r.catalog("a", full(s, 0, vec![bad]), 0),
            Err(Refusal::Invalid(_))
        ));
        assert!(matches!(
            r.catalog(
                "a",
                deltas(
                    s,
                    1,
                    vec![Delta::Online {
                        camera: cam("zz", true).key()
                    }]
                ),
                0
            ),
            Err(Refusal::Invalid(_))
        ));
        assert_eq!(r.get("a").unwrap().cameras.len(), 2);
    }

    #[test]
    fn silence_makes_offline_and_keepalive_brings_back() {
        let mut r = Registry::new(1);
        let s = r.register("a", adm(10), None, &Right::ALL, 1_000).unwrap();
        assert!(r.sweep(8_999, 8_000).is_empty());
        assert_eq!(r.sweep(9_000, 8_000), vec!["a".to_string()]);
        assert!(r.sweep(10_000, 8_000).is_empty(), "reported once");
        let c = r.get("a").unwrap();
        assert!(!c.online);
        assert_eq!(c.reason, "Offline");
        r.keepalive("a", s, 10_000).unwrap();
        assert!(r.get("a").unwrap().online);
        assert_eq!(r.keepalive("a", s + 1, 10_000), Err(Refusal::NoSession));
    }

    #[test]
    fn unregister_checks_sessions_unless_forced() {
        let mut r = Registry::new(1);
        let s = r.register("a", adm(10), None, &Right::ALL, 0).unwrap();
        r.catalog("a", full(s, 0, vec![cam("a", true)]), 0).unwrap();
        assert_eq!(
            r.unregister("a", s, false, 2, 1),
            Err(Refusal::Busy { sessions: 2 })
        );
        assert!(
            r.get("a").unwrap().online,
            "a refused unregister changes nothing"
        );
        r.unregister("a", s, true, 2, 1).unwrap();
        let c = r.get("a").unwrap();
        assert_eq!(
            (c.online, c.reason, c.cameras.len()),
            (false, "Unregistered", 0)
        );
        assert_eq!(r.keepalive("a", s, 2), Err(Refusal::NoSession));
        assert!(r.sweep(100_000, 8_000).is_empty());
    }

    #[test]
    fn diff_produces_the_smallest_deltas() {
        let sent: BTreeMap<_, _> = [cam("a", true), cam("b", true), cam("c", false)]
            .into_iter()
            .map(|c| (c.key(), c))
            .collect();
        let mut moved = cam("c", false);
        moved.path = vec!["leaf".into()];
        let now = vec![
            cam("a", true),
            cam("b", false),
            cam("d", true),
            moved.clone(),
        ];
        let d = diff(&sent, &now);
        assert_eq!(
            d,
            vec![
                Delta::Delete {
                    camera: cam("c", false).key()
                },
                Delta::Offline {
                    camera: cam("b", true).key()
                },
                Delta::Add {
                    camera: cam("d", true)
                },
                Delta::Add {
                    camera: moved.clone()
                },
            ]
        );
        // Applying the diff to the parent's copy gives the child's catalog.
        let parent: BTreeMap<_, _> = sent.values().map(|c| (c.key(), c.online)).collect();
        let after = apply_deltas(&parent, &d, 100).unwrap();
        let want: BTreeMap<_, _> = now.iter().map(|c| (c.key(), c.online)).collect();
        assert_eq!(after, want);
        assert!(diff(&after_map(&now), &now).is_empty());
    }

    fn after_map(c: &[RemoteCamera]) -> BTreeMap<CameraRef, RemoteCamera> {
        c.iter().map(|c| (c.key(), c.clone())).collect()
    }

    #[test]
    fn status_written_on_change_and_refresh() {
        let v = StatusView {
            online: true,
            reason: "Online",
            cameras: 1,
            cameras_online: 1,
            rights: vec![],
            display_name: None,
        };
        assert!(status_due(None, &v, 0, 10_000));
        let w = (v.clone(), 1_000);
        assert!(!status_due(Some(&w), &v, 5_000, 10_000));
        assert!(status_due(Some(&w), &v, 11_000, 10_000));
        let mut off = v.clone();
        off.online = false;
        assert!(status_due(Some(&w), &off, 1_000, 10_000));
        let w_off = (off.clone(), 1_000);
        assert!(!status_due(Some(&w_off), &off, 50_000, 10_000));
    }
}
