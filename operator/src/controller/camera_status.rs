//! The operator's part of a Camera's status, computed purely from the camera and the facts the
//! reconcilers gathered, and written with server-side apply under the operator's field manager
//! ([`CameraStatusWriter::Operator`]): `state`, `recorder`, `assignedAt`, `failover`,
//! `observedGeneration` and the `Scheduled` and `Invalid` conditions. The recorder applies its
//! own fields (`measuredBitrateKbps`, `lastSegmentTime`, `Recording`, `Degraded`) and the audit
//! `coverage`, each under its own manager, so nobody rewrites anybody else's fields and no write
//! needs a resourceVersion guard. The operator always applies all of its fields: one it stops
//! sending (a recorder after unassignment) is removed.
//!
//! The operator keeps no record of holes in the footage: when it moves a camera off a failed
//! recorder it writes `failover` (from, when, footage safe until), and the recorder that takes
//! the camera over finds the real hole in the store and creates the Backfill.

use chrono::{DateTime, SubsecRound, Utc};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;

use crate::error::Result;
use vigil_api::{
    Camera, CameraConditionReason, CameraConditionType, CameraState, CameraStatusWriter, Condition,
    ConditionStatus, Failover, camera_status_apply_body, find_condition, set_condition,
};

/// What the reconcilers decided about one camera.
#[derive(Clone, Debug, Default)]
pub struct CameraFacts {
    /// Spec validation errors, joined; None when valid.
    pub invalid: Option<String>,
    /// Why the camera is not placed: (reason, message). None when it is placed or not wanted.
    pub unplaced: Option<(String, String)>,
    /// False when mode Off or outside its schedule.
    pub wanted: bool,
    /// The recorder the camera is assigned to after this reconcile.
    pub recorder: Option<String>,
    /// The camera was just moved off a failed recorder.
    pub failover: Option<Failover>,
    /// The credentials Secret named in the spec does not exist.
    pub secret_missing: Option<String>,
    /// `recorder` took the camera over by a planned move (make-before-break) that completes
    /// now: the camera never stopped recording, so the assignment time stays.
    pub handed_over: bool,
}

/// The operator-owned status fields, as applied. A `None` field is left out of the apply, which
/// removes it (the operator owns it alone).
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OperatorCameraStatus {
    pub state: CameraState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
    /// `Scheduled` and `Invalid` only.
    pub conditions: Vec<Condition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Computes the operator-owned status of `camera` at `now`.
pub fn operator_status(
    camera: &Camera,
    facts: &CameraFacts,
    now: DateTime<Utc>,
) -> OperatorCameraStatus {
    use CameraConditionReason as R;
    let status = camera.status.clone().unwrap_or_default();
    let generation = camera.metadata.generation;
    let recording = find_condition(&status.conditions, CameraConditionType::Recording.as_str());
    let degraded = find_condition(&status.conditions, CameraConditionType::Degraded.as_str());

    let assigned_at = match (&facts.recorder, &status.recorder) {
        (Some(new), Some(old)) if new == old => status.assigned_at.or(Some(now)),
        // Recorded throughout: "recording since the assignment" holds on, no Scheduled blip.
        (Some(_), Some(_)) if facts.handed_over => status.assigned_at.or(Some(now)),
        (Some(_), _) => Some(now),
        (None, _) => None,
    };
    // The camera records on its current recorder when the Recording condition turned True after
    // the assignment, or a segment ended after it (a recorder keeps the transition time when the
    // condition was already True, e.g. written by the camera's previous recorder). Kubernetes
    // times are often whole seconds: compare at that precision.
    let since_assignment =
        |t: &DateTime<Utc>| assigned_at.is_some_and(|a| *t >= a.trunc_subsecs(0));
    let recording_true = recording.filter(|r| r.status == ConditionStatus::True);
    let recording_since_assignment = recording_true.is_some()
        && recording_true
            .map(|r| r.last_transition_time)
            .into_iter()
            .chain(status.last_segment_time)
            .any(|t| since_assignment(&t));

    // Conditions start from the current ones so unchanged ones keep their transition times;
    // only the operator's own types are applied.
    let mut conditions: Vec<Condition> = status
        .conditions
        .iter()
        .filter(|c| owned(&c.type_))
        .cloned()
        .collect();
    let (scheduled, reason, message) = if let Some(msg) = &facts.invalid {
        (
            ConditionStatus::False,
            R::InvalidSpec.as_str().to_string(),
            msg.clone(),
        )
    } else if !facts.wanted {
        (
            ConditionStatus::False,
            R::NotScheduled.as_str().to_string(),
            "recording mode is Off or outside the schedule".to_string(),
        )
    } else if let Some((reason, message)) = &facts.unplaced {
        (ConditionStatus::False, reason.clone(), message.clone())
    } else if let Some(r) = &facts.recorder {
        let mut message = format!("assigned to recorder {r}");
        if let Some(secret) = &facts.secret_missing {
            message.push_str(&format!(
                "; credentials Secret {secret:?} not found in the camera's namespace"
            ));
        }
        (
            ConditionStatus::True,
            R::Assigned.as_str().to_string(),
            message,
        )
    } else {
        (
            ConditionStatus::False,
            R::Pending.as_str().to_string(),
            "waiting for placement".to_string(),
        )
    };
    set_condition(
        &mut conditions,
        Condition::new(
            CameraConditionType::Scheduled.as_str(),
            scheduled,
            &reason,
            message,
            generation,
        ),
    );
    set_condition(
        &mut conditions,
        match &facts.invalid {
            Some(msg) => Condition::new(
                CameraConditionType::Invalid.as_str(),
                ConditionStatus::True,
                R::InvalidSpec.as_str(),
                msg.clone(),
                generation,
            ),
            None => Condition::new(
                CameraConditionType::Invalid.as_str(),
                ConditionStatus::False,
                R::Valid.as_str(),
                "",
                generation,
            ),
        },
    );

    let state = if facts.invalid.is_some() {
        CameraState::Invalid
    } else if !facts.wanted {
        CameraState::Off
    } else if facts.recorder.is_none() {
        CameraState::Pending
    } else if recording_since_assignment {
        CameraState::Recording
    } else if facts.secret_missing.is_some()
        || degraded.is_some_and(|d| d.status == ConditionStatus::True)
        || recording.is_some_and(|r| {
            r.status == ConditionStatus::False && r.reason != R::Connecting.as_str()
        })
    {
        CameraState::Degraded
    } else {
        CameraState::Scheduled
    };

    OperatorCameraStatus {
        state,
        recorder: facts.recorder.clone(),
        assigned_at,
        // The last failover stays on record until the next one: the recorder that takes the
        // camera over reads it to find where the hole starts.
        failover: facts.failover.clone().or(status.failover),
        conditions,
        observed_generation: generation,
    }
}

/// Whether a condition type is the operator's.
fn owned(type_: &str) -> bool {
    CameraStatusWriter::Operator
        .condition_types()
        .iter()
        .any(|t| t.as_str() == type_)
}

/// True when applying `new` would change what the camera's status says (ignoring the transition
/// times that `set_condition` carries over).
pub fn differs(camera: &Camera, new: &OperatorCameraStatus) -> bool {
    let Some(old) = &camera.status else {
        return true;
    };
    let old_conditions = own_condition_keys(&old.conditions);
    let new_conditions = own_condition_keys(&new.conditions);
    old.state != Some(new.state)
        || old.recorder != new.recorder
        || old.assigned_at != new.assigned_at
        || old.failover != new.failover
        || old.observed_generation != new.observed_generation
        || old_conditions.len() != new_conditions.len()
        || old_conditions.iter().any(|c| !new_conditions.contains(c))
}

/// What `differs` compares of the operator's own conditions: everything but the transition time.
fn own_condition_keys(
    conditions: &[Condition],
) -> Vec<(&str, ConditionStatus, &str, &str, Option<i64>)> {
    conditions
        .iter()
        .filter(|c| owned(&c.type_))
        .map(|c| {
            (
                c.type_.as_str(),
                c.status,
                c.reason.as_str(),
                c.message.as_str(),
                c.observed_generation,
            )
        })
        .collect()
}

/// What the operator records when it moves a camera off the failed recorder `from`: footage is
/// safe up to the failed recorder's last lease renewal minus one segment (its unfinished
/// segment died with it).
pub fn failover_record(
    from: &str,
    lease_renewed: Option<DateTime<Utc>>,
    segment_seconds: u32,
    now: DateTime<Utc>,
) -> Failover {
    let last_alive = lease_renewed.unwrap_or(now);
    Failover {
        from: from.to_string(),
        at: now,
        footage_safe_until: last_alive - chrono::Duration::seconds(i64::from(segment_seconds)),
    }
}

/// The failover to record for `camera`: `new`, except that when the camera's previous failover
/// is still pending — no footage stored since (`lastSegmentTime` not past it), i.e. the recorder
/// it moved to died before its first segment — footage is safe only up to that failover's point.
/// That recorder may have died before it reported the earlier hole, and the next one looks only
/// from `footageSafeUntil` on: a kill within a recorder's first seconds of a camera lost the
/// report of the hole before it (issue 18). A hole reported twice overstates `secondsLost`; one
/// not reported hides footage that is gone.
pub fn carry_forward(camera: &Camera, new: Failover) -> Failover {
    let Some(status) = camera.status.as_ref() else {
        return new;
    };
    match &status.failover {
        Some(old)
            if status.last_segment_time.is_none_or(|t| t <= old.at)
                && old.footage_safe_until < new.footage_safe_until =>
        {
            Failover {
                footage_safe_until: old.footage_safe_until,
                ..new
            }
        }
        _ => new,
    }
}

/// Whether the failover of `camera` off `from` is recorded already (a reconcile that applied
/// the status but failed to move the label retries the move, not the record). A failover off
/// the same recorder name before the current assignment is an older one.
pub fn failover_recorded(camera: &Camera, from: &str) -> bool {
    camera.status.as_ref().is_some_and(|s| {
        s.failover
            .as_ref()
            .is_some_and(|f| f.from == from && s.assigned_at.is_none_or(|a| f.at >= a))
    })
}

/// Applies the operator's fields of `camera`'s status (server-side apply, forced: these fields
/// are the operator's alone).
pub async fn apply(
    api: &Api<Camera>,
    camera: &Camera,
    status: &OperatorCameraStatus,
) -> Result<()> {
    let name = camera.name_any();
    api.patch_status(
        &name,
        &PatchParams::apply(CameraStatusWriter::Operator.field_manager()).force(),
        &Patch::Apply(camera_status_apply_body(&name, status)),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_api::{CameraSpec, CameraStatus};

    const RECORDING: &str = "Recording";

    fn camera(status: Option<CameraStatus>) -> Camera {
        let spec: CameraSpec = serde_json::from_value(serde_json::json!({
            "source": {"url": "rtsp://cam/live"}, "expectedBitrateKbps": 4000, "pool": "main"
        }))
        .expect("spec");
        let mut c = Camera::new("lobby", spec);
        c.metadata.generation = Some(3);
        c.status = status;
        c
    }

    fn facts(recorder: Option<&str>) -> CameraFacts {
        CameraFacts {
            wanted: true,
            recorder: recorder.map(String::from),
            ..Default::default()
        }
    }

    /// The status the API server holds after the operator applied `s` over `old`.
    fn applied(old: CameraStatus, s: &OperatorCameraStatus) -> CameraStatus {
        let mut conditions: Vec<Condition> = old
            .conditions
            .into_iter()
            .filter(|c| !owned(&c.type_))
            .collect();
        conditions.extend(s.conditions.iter().cloned());
        CameraStatus {
            state: Some(s.state),
            recorder: s.recorder.clone(),
            assigned_at: s.assigned_at,
            failover: s.failover.clone(),
            conditions,
            observed_generation: s.observed_generation,
            ..old
        }
    }

    /// A planned move completing keeps the assignment time: the camera recorded throughout, so
    /// it stays Recording instead of waiting for the new owner's next routine report.
    #[test]
    fn a_completed_handover_stays_recording() {
        let t0 = Utc::now() - chrono::Duration::seconds(600);
        let recording = Condition::new(RECORDING, ConditionStatus::True, "Streaming", "x", None);
        let old = CameraStatus {
            recorder: Some("rec-a".into()),
            assigned_at: Some(t0),
            last_segment_time: Some(t0 + chrono::Duration::seconds(590)),
            conditions: vec![recording],
            ..Default::default()
        };
        let cam = camera(Some(old.clone()));
        let now = Utc::now();
        let moved = operator_status(&cam, &facts(Some("rec-b")), now);
        assert_eq!(
            moved.assigned_at,
            Some(now),
            "a failover or first assignment: now"
        );
        let handed = operator_status(
            &cam,
            &CameraFacts {
                handed_over: true,
                ..facts(Some("rec-b"))
            },
            now,
        );
        assert_eq!(handed.assigned_at, Some(t0));
        assert_eq!(handed.state, CameraState::Recording);
        // And on the next reconcile, with nothing new from rec-b yet.
        let again = operator_status(
            &camera(Some(applied(old, &handed))),
            &facts(Some("rec-b")),
            now,
        );
        assert_eq!(again.state, CameraState::Recording);
    }

    #[test]
    fn a_failover_still_pending_carries_its_safe_point_forward() {
        let t0 = Utc::now();
        let s = |secs: i64| t0 + chrono::Duration::seconds(secs);
        let first = failover_record("rec-a", Some(s(-1)), 4, s(0));
        let second = failover_record("rec-b", Some(s(4)), 4, s(5));
        let mut status = CameraStatus {
            failover: Some(first.clone()),
            last_segment_time: Some(s(-6)),
            ..Default::default()
        };
        // rec-b died before storing a segment: the hole before it may be unreported.
        let carried = carry_forward(&camera(Some(status.clone())), second.clone());
        assert_eq!(carried.from, "rec-b");
        assert_eq!(carried.at, s(5));
        assert_eq!(carried.footage_safe_until, first.footage_safe_until);
        // rec-b stored footage after the first failover: it reported that hole; judge afresh.
        status.last_segment_time = Some(s(3));
        assert_eq!(carry_forward(&camera(Some(status)), second.clone()), second);
        assert_eq!(carry_forward(&camera(None), second.clone()), second);
    }

    #[test]
    fn assignment_recording_and_failover_record() {
        let t0 = Utc::now();
        let s = operator_status(&camera(None), &facts(Some("rec-a")), t0);
        assert_eq!(s.state, CameraState::Scheduled);
        assert_eq!(s.recorder.as_deref(), Some("rec-a"));
        assert_eq!(
            find_condition(&s.conditions, "Scheduled").map(|c| c.status),
            Some(ConditionStatus::True)
        );
        assert!(
            s.conditions.iter().all(|c| owned(&c.type_)),
            "only the operator's own conditions are applied"
        );
        assert_eq!(s.observed_generation, Some(3));

        // rec-a reports Recording.
        let mut status = applied(CameraStatus::default(), &s);
        let mut rec = Condition::new(RECORDING, ConditionStatus::True, "Streaming", "x", Some(3));
        rec.last_transition_time = t0 + chrono::Duration::seconds(1);
        status.conditions.push(rec);
        let c = camera(Some(status.clone()));
        let recording = operator_status(&c, &facts(Some("rec-a")), t0);
        assert_eq!(recording.state, CameraState::Recording);
        assert!(
            !recording.conditions.iter().any(|c| c.type_ == RECORDING),
            "the recorder's condition is not applied by the operator"
        );

        // rec-a fails; the camera moves to rec-b and the failover is recorded.
        let t1 = t0 + chrono::Duration::seconds(60);
        let mut f = facts(Some("rec-b"));
        f.failover = Some(failover_record(
            "rec-a",
            Some(t1 - chrono::Duration::seconds(3)),
            10,
            t1,
        ));
        let moved = operator_status(&c, &f, t1);
        assert_eq!(
            moved.state,
            CameraState::Scheduled,
            "rec-a's Recording condition predates the move"
        );
        let failover = moved.failover.clone().expect("failover recorded");
        assert_eq!(failover.from, "rec-a");
        assert_eq!(failover.at, t1);
        assert_eq!(
            failover.footage_safe_until,
            t1 - chrono::Duration::seconds(13)
        );
        assert!(differs(&c, &moved));

        // Later reconciles keep the failover on record (an apply without it would remove it).
        let status = applied(status, &moved);
        let t2 = t1 + chrono::Duration::seconds(2);
        let again = operator_status(&camera(Some(status.clone())), &facts(Some("rec-b")), t2);
        assert_eq!(again.failover, Some(failover));
        assert_eq!(again.state, CameraState::Scheduled);
        assert!(!differs(&camera(Some(status.clone())), &again));

        // rec-b reports a segment after the move (keeping rec-a's transition time): Recording.
        let mut by_segment = status.clone();
        by_segment.last_segment_time = Some(t2);
        let after = operator_status(&camera(Some(by_segment)), &facts(Some("rec-b")), t2);
        assert_eq!(after.state, CameraState::Recording);

        // rec-b loses the stream: Degraded (the recorder's Degraded condition).
        let mut lost = status;
        lost.conditions.retain(|c| c.type_ != RECORDING);
        lost.conditions.push(Condition::new(
            RECORDING,
            ConditionStatus::False,
            "StreamLost",
            "connection refused",
            Some(3),
        ));
        let s = operator_status(&camera(Some(lost.clone())), &facts(Some("rec-b")), t2);
        assert_eq!(s.state, CameraState::Degraded);
        // Still connecting is not degraded.
        lost.conditions.retain(|c| c.type_ != RECORDING);
        lost.conditions.push(Condition::new(
            RECORDING,
            ConditionStatus::False,
            "Connecting",
            "connecting",
            Some(3),
        ));
        let s = operator_status(&camera(Some(lost)), &facts(Some("rec-b")), t2);
        assert_eq!(s.state, CameraState::Scheduled);
    }

    #[test]
    fn unplaced_invalid_off_and_secret_missing_cameras() {
        let mut f = facts(None);
        f.unplaced = Some((
            "InsufficientCapacity".into(),
            "no recorder has 4000 kbit/s free".into(),
        ));
        let s = operator_status(&camera(None), &f, Utc::now());
        assert_eq!(s.state, CameraState::Pending);
        let scheduled = find_condition(&s.conditions, "Scheduled").expect("scheduled");
        assert_eq!(
            (scheduled.status, scheduled.reason.as_str()),
            (ConditionStatus::False, "InsufficientCapacity")
        );

        let f = CameraFacts {
            invalid: Some("spec.source.url: bad".into()),
            ..facts(None)
        };
        let s = operator_status(&camera(None), &f, Utc::now());
        assert_eq!(s.state, CameraState::Invalid);
        assert_eq!(
            find_condition(&s.conditions, "Invalid").map(|c| c.status),
            Some(ConditionStatus::True)
        );

        let f = CameraFacts {
            wanted: false,
            ..facts(None)
        };
        assert_eq!(
            operator_status(&camera(None), &f, Utc::now()).state,
            CameraState::Off
        );

        let f = CameraFacts {
            secret_missing: Some("cam-secret".into()),
            ..facts(Some("rec-a"))
        };
        let s = operator_status(&camera(None), &f, Utc::now());
        assert_eq!(s.state, CameraState::Degraded);
        assert!(
            find_condition(&s.conditions, "Scheduled")
                .is_some_and(|c| c.message.contains("cam-secret")),
            "{:?}",
            s.conditions
        );
    }

    #[test]
    fn differs_ignores_transition_times_only() {
        let t0 = Utc::now();
        let s = operator_status(&camera(None), &facts(Some("rec-a")), t0);
        let c = camera(Some(applied(CameraStatus::default(), &s)));
        let again = operator_status(&c, &facts(Some("rec-a")), t0 + chrono::Duration::seconds(5));
        assert!(!differs(&c, &again), "nothing changed");
        let moved = operator_status(&c, &facts(Some("rec-b")), t0);
        assert!(differs(&c, &moved));
    }

    #[test]
    fn apply_body_carries_only_operator_fields() {
        let s = operator_status(&camera(None), &facts(Some("rec-a")), Utc::now());
        let body = camera_status_apply_body("lobby", &s);
        assert_eq!(body["kind"], "Camera");
        assert_eq!(body["apiVersion"], "vigil.dev/v1alpha1");
        assert_eq!(body["status"]["state"], "Scheduled");
        let status = body["status"].as_object().expect("object");
        for field in [
            "measuredBitrateKbps",
            "lastSegmentTime",
            "coverage",
            "failover",
        ] {
            assert!(!status.contains_key(field), "{field}: {body}");
        }
        assert!(
            body["status"]["conditions"]
                .as_array()
                .expect("conditions")
                .iter()
                .all(|c| c["type"] == "Scheduled" || c["type"] == "Invalid")
        );
    }
}
