use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The status of a condition, as in Kubernetes' `metav1.Condition`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// A condition with `observedGeneration`, shaped like Kubernetes' `metav1.Condition` so that
/// `kubectl wait --for=condition=Recording` and generic tooling understand it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type in CamelCase, e.g. `Scheduled`, `Recording`, `Degraded`.
    #[serde(rename = "type")]
    #[schemars(length(max = 316))]
    pub type_: String,
    pub status: ConditionStatus,
    /// One CamelCase word a program can match on, e.g. `PoolFull`, `SecretMissing`.
    #[schemars(length(max = 1024))]
    pub reason: String,
    /// What happened and what to do about it, for a person; may be empty.
    // No `#[serde(default)]`: the schema default it generates (an empty string) is refused by
    // the 1.20 API server.
    #[schemars(length(max = 32768))]
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: DateTime<Utc>,
    /// The `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    pub fn new(
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
        observed_generation: Option<i64>,
    ) -> Self {
        let message = message.into();
        Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            // Never empty: server-side apply on Kubernetes 1.20 turns "" into null, which the
            // schema (message: string) then refuses. The reason is a fine message on its own.
            message: if message.is_empty() {
                reason.to_string()
            } else {
                message
            },
            last_transition_time: Utc::now(),
            observed_generation,
        }
    }
}

/// Puts `new` into `conditions`, replacing the condition of the same type. The transition time
/// is kept when the status did not change, so that it says when the state began, not when it
/// was last observed.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time;
            }
            *old = new;
        }
        None => conditions.push(new),
    }
}

/// Finds the condition of the given type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_condition_keeps_transition_time_when_status_unchanged() {
        let mut conds = vec![];
        let first = Condition::new("Recording", ConditionStatus::True, "Streaming", "", Some(1));
        let t0 = first.last_transition_time;
        set_condition(&mut conds, first);
        std::thread::sleep(std::time::Duration::from_millis(5));
        set_condition(
            &mut conds,
            Condition::new(
                "Recording",
                ConditionStatus::True,
                "Streaming",
                "again",
                Some(2),
            ),
        );
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].last_transition_time, t0);
        assert_eq!(conds[0].message, "again");
        assert_eq!(conds[0].observed_generation, Some(2));

        set_condition(
            &mut conds,
            Condition::new(
                "Recording",
                ConditionStatus::False,
                "StreamLost",
                "",
                Some(2),
            ),
        );
        assert!(conds[0].last_transition_time > t0);
        assert_eq!(
            find_condition(&conds, "Recording").map(|c| c.status),
            Some(ConditionStatus::False)
        );
        assert!(find_condition(&conds, "Degraded").is_none());
    }
}
