//! The operator's part of a Camera's status, computed purely from the camera and the facts the
//! reconcilers gathered. Recorders own `measuredBitrateKbps`, `lastSegmentTime` and the
//! `Recording` condition; the operator owns everything here and always writes all of it, with
//! one field manager, so a field it stops writing is removed.

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;

use vigil_api::{
    BackfillReason, Camera, Condition, ConditionStatus, Outage, find_condition, set_condition,
};

/// Condition types.
pub const SCHEDULED: &str = "Scheduled";
pub const RECORDING: &str = "Recording";
pub const DEGRADED: &str = "Degraded";
pub const INVALID: &str = "Invalid";

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
    /// A new outage to open (the camera was moved off a failed recorder).
    pub new_outage: Option<Outage>,
    /// The credentials Secret named in the spec does not exist.
    pub secret_missing: Option<String>,
}

/// The operator-owned status fields. Written with a JSON merge patch that carries the
/// resourceVersion the status was computed from, so a concurrent write by the recorder makes
/// the patch fail (and the reconcile retry) instead of being overwritten. `None` serializes as
/// null so that a cleared field is removed.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OperatorCameraStatus {
    pub state: String,
    pub recorder: Option<String>,
    pub assigned_at: Option<DateTime<Utc>>,
    pub outages: Vec<Outage>,
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
    let status = camera.status.clone().unwrap_or_default();
    let generation = camera.metadata.generation;
    // Start from the current conditions so unchanged ones keep their transition times; only the
    // operator's own types are written back.
    let mut conditions = status.conditions.clone();
    let recording = find_condition(&status.conditions, RECORDING).cloned();

    let assigned_at = match (&facts.recorder, &status.recorder) {
        (Some(new), Some(old)) if new == old => status.assigned_at.or(Some(now)),
        (Some(_), _) => Some(now),
        (None, _) => None,
    };

    // Outages: keep the list, close open ones when the camera records again on its current
    // recorder (the Recording condition turned True after the assignment), add the new one.
    let mut outages = status.outages.clone();
    // The camera records on its current recorder when the Recording condition turned True after
    // the assignment, or a segment ended after it (a recorder may keep an older transition time
    // when the condition was already True). Kubernetes times are often whole seconds: compare
    // at that precision.
    let since_assignment =
        |t: &DateTime<Utc>| assigned_at.is_some_and(|a| *t >= a.trunc_subsecs(0));
    let proofs: Vec<DateTime<Utc>> = recording
        .iter()
        .filter(|r| r.status == ConditionStatus::True)
        .map(|r| r.last_transition_time)
        .chain(status.last_segment_time)
        .filter(since_assignment)
        .collect();
    let recording_since_assignment = recording
        .as_ref()
        .is_some_and(|r| r.status == ConditionStatus::True)
        && !proofs.is_empty();
    if let Some(outage) = &facts.new_outage {
        outages.push(outage.clone());
    }
    // Close open outages at the latest proof: a window that is too long costs nothing (a
    // backfill fetches only what the store lacks), one that is too short would lose footage.
    if recording_since_assignment && let Some(end) = proofs.iter().max() {
        for o in outages.iter_mut().filter(|o| o.end.is_none()) {
            o.end = Some((*end).max(o.start));
        }
    }

    let (scheduled, reason, message) = if let Some(msg) = &facts.invalid {
        (
            ConditionStatus::False,
            "InvalidSpec".to_string(),
            msg.clone(),
        )
    } else if !facts.wanted {
        (
            ConditionStatus::False,
            "NotScheduled".to_string(),
            "recording mode is Off or outside the schedule".to_string(),
        )
    } else if let Some((reason, message)) = &facts.unplaced {
        (ConditionStatus::False, reason.clone(), message.clone())
    } else if let Some(r) = &facts.recorder {
        (
            ConditionStatus::True,
            "Assigned".to_string(),
            format!("assigned to recorder {r}"),
        )
    } else {
        (
            ConditionStatus::False,
            "Pending".to_string(),
            "waiting for placement".to_string(),
        )
    };
    set_condition(
        &mut conditions,
        Condition::new(SCHEDULED, scheduled, &reason, message, generation),
    );

    set_condition(
        &mut conditions,
        match &facts.invalid {
            Some(msg) => Condition::new(
                INVALID,
                ConditionStatus::True,
                "InvalidSpec",
                msg.clone(),
                generation,
            ),
            None => Condition::new(INVALID, ConditionStatus::False, "Valid", "", generation),
        },
    );

    let recording_false = recording
        .as_ref()
        .filter(|r| r.status == ConditionStatus::False && facts.recorder.is_some());
    let degraded = if let Some(secret) = &facts.secret_missing {
        Condition::new(
            DEGRADED,
            ConditionStatus::True,
            "SecretMissing",
            format!("credentials Secret {secret:?} not found in the camera's namespace"),
            generation,
        )
    } else if let Some(r) = recording_false {
        Condition::new(
            DEGRADED,
            ConditionStatus::True,
            &r.reason,
            r.message.clone(),
            generation,
        )
    } else if scheduled == ConditionStatus::False && facts.wanted && facts.invalid.is_none() {
        Condition::new(
            DEGRADED,
            ConditionStatus::True,
            &reason,
            "camera is not being recorded",
            generation,
        )
    } else {
        Condition::new(
            DEGRADED,
            ConditionStatus::False,
            "AsExpected",
            "",
            generation,
        )
    };
    set_condition(&mut conditions, degraded);
    // Other writers' conditions (the recorder's Recording) are carried through unchanged: the
    // merge patch replaces the whole list.

    let state = if facts.invalid.is_some() {
        "Invalid"
    } else if !facts.wanted {
        "Off"
    } else if facts.recorder.is_none() {
        "Pending"
    } else {
        match recording {
            Some(r) if r.status == ConditionStatus::True && recording_since_assignment => {
                "Recording"
            }
            Some(r) if r.status == ConditionStatus::False => "Degraded",
            _ => "Scheduled",
        }
    }
    .to_string();

    OperatorCameraStatus {
        state,
        recorder: facts.recorder.clone(),
        assigned_at,
        outages,
        conditions,
        observed_generation: generation,
    }
}

/// True when applying `new` would change what the camera's status says (ignoring the transition
/// times that `set_condition` carries over).
pub fn differs(camera: &Camera, new: &OperatorCameraStatus) -> bool {
    let Some(old) = &camera.status else {
        return true;
    };
    let old_conditions = own_condition_keys(&old.conditions);
    let new_conditions = own_condition_keys(&new.conditions);
    old.state.as_deref() != Some(new.state.as_str())
        || old.recorder != new.recorder
        || old.assigned_at != new.assigned_at
        || old.outages != new.outages
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
        .filter(|c| [SCHEDULED, INVALID, DEGRADED].contains(&c.type_.as_str()))
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

/// The outage opened when a camera leaves a failed recorder: footage is safe up to the failed
/// recorder's last lease renewal minus one segment (its unfinished segment died with it).
pub fn failover_outage(
    recorder: &str,
    lease_renewed: Option<DateTime<Utc>>,
    segment_seconds: u32,
    now: DateTime<Utc>,
) -> Outage {
    let last_alive = lease_renewed.unwrap_or(now);
    Outage {
        start: last_alive - chrono::Duration::seconds(i64::from(segment_seconds)),
        end: None,
        reason: BackfillReason::RecorderFailure,
        recorder: Some(recorder.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_api::{CameraSpec, CameraStatus};

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

    #[test]
    fn assignment_then_recording_then_failover_closes_outage() {
        let t0 = Utc::now();
        let s = operator_status(&camera(None), &facts(Some("rec-a")), t0);
        assert_eq!(s.state, "Scheduled");
        assert_eq!(s.recorder.as_deref(), Some("rec-a"));
        assert_eq!(
            find_condition(&s.conditions, SCHEDULED).map(|c| c.status),
            Some(ConditionStatus::True)
        );
        assert_eq!(s.observed_generation, Some(3));

        // rec-a reports Recording; then rec-a fails and the camera moves to rec-b.
        let mut status = CameraStatus {
            recorder: s.recorder.clone(),
            assigned_at: s.assigned_at,
            conditions: s.conditions.clone(),
            ..Default::default()
        };
        status.conditions.push(Condition::new(
            RECORDING,
            ConditionStatus::True,
            "Streaming",
            "",
            Some(3),
        ));
        let c = camera(Some(status.clone()));
        assert_eq!(
            operator_status(&c, &facts(Some("rec-a")), t0).state,
            "Recording"
        );

        let t1 = t0 + chrono::Duration::seconds(60);
        let mut f = facts(Some("rec-b"));
        f.new_outage = Some(failover_outage(
            "rec-a",
            Some(t1 - chrono::Duration::seconds(3)),
            10,
            t1,
        ));
        let moved = operator_status(&c, &f, t1);
        assert_eq!(
            moved.state, "Scheduled",
            "rec-a's Recording condition predates the move"
        );
        assert_eq!(moved.outages.len(), 1);
        assert_eq!(moved.outages[0].start, t1 - chrono::Duration::seconds(13));
        assert!(moved.outages[0].end.is_none());

        // rec-b starts recording at t2: the outage closes at t2.
        let t2 = t1 + chrono::Duration::seconds(2);
        let mut status = CameraStatus {
            recorder: moved.recorder.clone(),
            assigned_at: moved.assigned_at,
            outages: moved.outages.clone(),
            conditions: moved.conditions.clone(),
            ..Default::default()
        };
        // rec-a's stale Recording=True is still in the list: not proof of recording on rec-b.
        let stale = operator_status(&camera(Some(status.clone())), &facts(Some("rec-b")), t2);
        assert_eq!(stale.state, "Scheduled");
        assert!(stale.outages[0].end.is_none());

        // A recorder that keeps the old transition time but reports a segment after the move.
        let mut by_segment = status.clone();
        by_segment.last_segment_time = Some(t2);
        let after = operator_status(&camera(Some(by_segment)), &facts(Some("rec-b")), t2);
        assert_eq!(after.state, "Recording");
        assert_eq!(after.outages[0].end, Some(t2));

        // A recorder that writes a fresh transition time.
        status.conditions.retain(|c| c.type_ != RECORDING);
        let mut rec = Condition::new(RECORDING, ConditionStatus::True, "Streaming", "", Some(3));
        rec.last_transition_time = t2;
        status.conditions.push(rec);
        let after = operator_status(&camera(Some(status)), &facts(Some("rec-b")), t2);
        assert_eq!(after.state, "Recording");
        assert_eq!(after.outages[0].end, Some(t2));
        assert_eq!(
            after
                .conditions
                .iter()
                .filter(|c| c.type_ == RECORDING)
                .count(),
            1,
            "the recorder's condition is carried through once"
        );
    }

    #[test]
    fn unplaced_invalid_and_off_cameras() {
        let mut f = facts(None);
        f.unplaced = Some((
            "InsufficientCapacity".into(),
            "no recorder has 4000 kbit/s free".into(),
        ));
        let s = operator_status(&camera(None), &f, Utc::now());
        assert_eq!(s.state, "Pending");
        let degraded = find_condition(&s.conditions, DEGRADED).expect("degraded");
        assert_eq!(
            (degraded.status, degraded.reason.as_str()),
            (ConditionStatus::True, "InsufficientCapacity")
        );

        let f = CameraFacts {
            invalid: Some("spec.source.url: bad".into()),
            ..facts(None)
        };
        let s = operator_status(&camera(None), &f, Utc::now());
        assert_eq!(s.state, "Invalid");
        assert_eq!(
            find_condition(&s.conditions, INVALID).map(|c| c.status),
            Some(ConditionStatus::True)
        );

        let f = CameraFacts {
            wanted: false,
            ..facts(None)
        };
        assert_eq!(operator_status(&camera(None), &f, Utc::now()).state, "Off");
    }

    #[test]
    fn differs_ignores_transition_times_only() {
        let t0 = Utc::now();
        let s = operator_status(&camera(None), &facts(Some("rec-a")), t0);
        let status = CameraStatus {
            state: Some(s.state.clone()),
            recorder: s.recorder.clone(),
            assigned_at: s.assigned_at,
            conditions: s.conditions.clone(),
            observed_generation: s.observed_generation,
            ..Default::default()
        };
        let c = camera(Some(status));
        let again = operator_status(&c, &facts(Some("rec-a")), t0 + chrono::Duration::seconds(5));
        assert!(!differs(&c, &again), "nothing changed");
        let moved = operator_status(&c, &facts(Some("rec-b")), t0);
        assert!(differs(&c, &moved));
    }
}
