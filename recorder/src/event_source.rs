//! `Event` mode's event source: the camera's ONVIF event service by PullPoint. One task per
//! camera in `Event` mode, beside its camera task: subscribe, pull (a long poll), renew before
//! the subscription expires, and, when a pull or renewal fails (the camera rebooted and forgot
//! the subscription, the network broke), subscribe again with a short capped backoff (0.5–4 s)
//! so that events flow again within a few seconds of the camera answering. While there is no
//! working subscription the source is *stale*: shown in `/status` and on the Camera.
//!
//! It turns notifications into [`Trigger`]s for the camera task's gate (`event_gate.rs`) and
//! writes an event record per event (`vigil_store::events`) into the buffer, like gap records.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::camera::{Ctx, credentials_of};
use crate::error::Result;
use crate::status::now_ms;
use vigil_api::redact::{Redactor, redact_url};
use vigil_config::{CameraConfig, EventMode};
use vigil_media::backoff::Backoff;
use vigil_media::onvif::{ClientOptions, Device};
use vigil_media::onvif_events::{Notification, Topic};
use vigil_store::events::{EventKey, EventRecord, EventType, MAX_EVENT_RECORD_MS};
use vigil_store::layout::CameraId;

/// The gate's instruction: `source`'s event began (`active`) or its last one ended, at `at_ms`
/// (UTC). The gate is open while any source is active.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trigger {
    pub at_ms: i64,
    pub active: bool,
    pub source: TriggerSource,
}

/// Where a trigger comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerSource {
    /// The camera's ONVIF events.
    Onvif = 0,
    /// A manual recording window (`spec.recording.manual`).
    Manual = 1,
    /// An event posted by another system (`spec.recording.externalEvent`).
    External = 2,
}

/// Subscription lifetime asked for; renewed at half of what the camera grants.
const SUBSCRIPTION_TTL: Duration = Duration::from_secs(60);
/// Long-poll time of one PullMessages.
const PULL_TIMEOUT: Duration = Duration::from_secs(5);
/// A camera clock further off than this is not trusted for event times (receipt time is used).
const MAX_CLOCK_SKEW_MS: i64 = 5_000;

/// Where the event source stands, for `/status` and the Camera's condition.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSourceReport {
    pub subscribed: bool,
    /// Since when the state (subscribed or stale) holds.
    pub since_ms: i64,
    /// Scrubbed.
    pub last_error: Option<String>,
    pub subscriptions: u64,
    pub events: u64,
    pub active: bool,
}

/// The time an event is placed at: the camera's, unless its clock is off.
pub fn event_time(camera_ms: Option<i64>, now_ms: i64) -> i64 {
    match camera_ms {
        Some(t) if (t - now_ms).abs() <= MAX_CLOCK_SKEW_MS => t,
        _ => now_ms,
    }
}

/// The active (topic, source) pairs and the episode they make up. Pure.
#[derive(Debug, Default)]
pub struct Episodes {
    active: BTreeSet<(u8, String)>,
    /// Start of the current episode's record and whether it includes motion.
    open: Option<(i64, bool)>,
}

/// What a change to the active set means.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    None,
    Began(i64),
    /// Ended: the record to write `[start, end)` and its type.
    Ended {
        start_ms: i64,
        end_ms: i64,
        kind: EventType,
    },
}

impl Episodes {
    pub fn apply(&mut self, n: &Notification, at_ms: i64) -> Change {
        let key = (
            match n.topic {
                Topic::Motion => 0,
                Topic::DigitalInput => 1,
            },
            n.source.clone().unwrap_or_default(),
        );
        let was = !self.active.is_empty();
        if n.state {
            self.active.insert(key);
        } else {
            self.active.remove(&key);
        }
        let now = !self.active.is_empty();
        match (was, now) {
            (false, true) => {
                self.open = Some((at_ms, n.topic == Topic::Motion));
                Change::Began(at_ms)
            }
            (true, true) => {
                if let Some(o) = &mut self.open {
                    o.1 |= n.topic == Topic::Motion;
                }
                Change::None
            }
            (true, false) => match self.open.take() {
                Some((start_ms, motion)) => Change::Ended {
                    start_ms,
                    end_ms: at_ms.max(start_ms + 1),
                    kind: if motion {
                        EventType::Motion
                    } else {
                        EventType::DigitalInput
                    },
                },
                None => Change::None,
            },
            (false, false) => Change::None,
        }
    }

    /// An episode running longer than one record may cover: the record to write now (the
    /// episode continues from its end).
    pub fn split_due(&mut self, now_ms: i64) -> Option<(i64, i64, EventType)> {
        let (start, motion) = self.open.as_mut()?;
        if now_ms - *start < MAX_EVENT_RECORD_MS {
            return None;
        }
        let out = (*start, *start + MAX_EVENT_RECORD_MS, kind(*motion));
        *start += MAX_EVENT_RECORD_MS;
        Some(out)
    }

    /// The open episode's record at shutdown.
    pub fn close(&mut self, now_ms: i64) -> Option<(i64, i64, EventType)> {
        let (start, motion) = self.open.take()?;
        self.active.clear();
        Some((start, now_ms.max(start + 1), kind(motion)))
    }
}

fn kind(motion: bool) -> EventType {
    if motion {
        EventType::Motion
    } else {
        EventType::DigitalInput
    }
}

/// Starts the event source of `cfg`; the camera task reads the triggers.
pub fn spawn(
    cfg: CameraConfig,
    mode: EventMode,
    ctx: Arc<Ctx>,
    stop: watch::Receiver<bool>,
    tx: mpsc::Sender<Trigger>,
) {
    let span = info_span!("events", camera = %cfg.id);
    tokio::spawn(
        async move {
            let mut s = Source {
                cfg,
                mode,
                ctx,
                tx,
                episodes: Episodes::default(),
                redactor: Redactor::new(),
                subscribed_once: false,
            };
            s.run(stop).await;
        }
        .instrument(span),
    );
}

struct Source {
    cfg: CameraConfig,
    mode: EventMode,
    ctx: Arc<Ctx>,
    tx: mpsc::Sender<Trigger>,
    episodes: Episodes,
    redactor: Redactor,
    /// A subscription was made since the last failure (resets the backoff).
    subscribed_once: bool,
}

impl Source {
    fn report(&self, f: impl FnOnce(&mut EventSourceReport)) {
        self.ctx.status.update(&self.cfg.id, |r| {
            let e = r
                .event_source
                .get_or_insert_with(EventSourceReport::default);
            f(e)
        });
    }

    async fn run(&mut self, mut stop: watch::Receiver<bool>) {
        info!(onvif = %redact_url(&self.mode.onvif_url), pre_s = self.mode.pre_seconds,
              post_s = self.mode.post_seconds, "event source started");
        self.report(|e| e.since_ms = now_ms());
        let mut backoff =
            Backoff::with_random_seed(Duration::from_millis(500), Duration::from_secs(4));
        while !*stop.borrow() {
            let r = tokio::select! {
                r = self.session() => r,
                _ = stop.wait_for(|s| *s) => break,
            };
            let msg = match r {
                Ok(()) => "subscription ended".to_string(),
                Err(e) => self.redactor.scrub(&e.to_string()),
            };
            let delay = backoff.next_delay();
            warn!(error = %msg, retry_in_ms = delay.as_millis() as u64,
                  "event subscription lost; subscribing again");
            self.report(|e| {
                if e.subscribed {
                    e.since_ms = now_ms();
                }
                e.subscribed = false;
                e.last_error = Some(msg);
            });
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            // A session that got as far as a subscription starts the backoff afresh.
            if self.subscribed_once {
                backoff.reset();
                self.subscribed_once = false;
            }
        }
        if let Some((s, e, k)) = self.episodes.close(now_ms()) {
            self.write(s, e, k, false).await;
        }
        info!("event source stopped");
    }

    async fn session(&mut self) -> Result<()> {
        let creds = credentials_of(&self.cfg, &self.ctx).await?;
        if let Some(c) = &creds {
            self.redactor.add(&c.password);
        }
        let opts = ClientOptions {
            timeout: PULL_TIMEOUT + Duration::from_secs(10),
            ..ClientOptions::default()
        };
        let device = Device::new(
            self.mode.onvif_url.clone(),
            creds,
            &opts,
            // A camera at a remote site: its ONVIF service through the site's tunnel too.
            vigil_media::netguard::Route::for_camera(
                self.ctx.settings.address_policy.clone(),
                self.cfg.site.as_deref(),
                self.ctx.settings.site_link.as_ref(),
            )?,
        )?;
        let service = device.event_service().await?;
        let sub = device.create_pull_point(&service, SUBSCRIPTION_TTL).await?;
        let mut lifetime = sub.lifetime.unwrap_or(SUBSCRIPTION_TTL);
        let mut renewed = Instant::now();
        info!(
            lifetime_s = lifetime.as_secs(),
            "subscribed to ONVIF events (PullPoint)"
        );
        self.subscribed_once = true;
        self.report(|e| {
            e.subscribed = true;
            e.since_ms = now_ms();
            e.subscriptions += 1;
            e.last_error = None;
        });
        let result = loop {
            // Renew at half the lifetime (at least 2 s before it ends).
            if renewed.elapsed()
                >= (lifetime / 2).min(lifetime.saturating_sub(Duration::from_secs(2)))
            {
                match device.renew(&sub.address, SUBSCRIPTION_TTL).await {
                    Ok(l) => {
                        lifetime = l.unwrap_or(SUBSCRIPTION_TTL);
                        renewed = Instant::now();
                        debug!(lifetime_s = lifetime.as_secs(), "subscription renewed");
                    }
                    Err(e) => break Err(e),
                }
            }
            let msgs = match device.pull_messages(&sub.address, PULL_TIMEOUT, 100).await {
                Ok(m) => m,
                Err(e) => break Err(e),
            };
            for n in msgs {
                self.notification(&n).await;
            }
            let now = now_ms();
            while let Some((s, e, k)) = self.episodes.split_due(now) {
                self.write(s, e, k, false).await;
            }
        };
        let _ = device.unsubscribe(&sub.address).await;
        result.map_err(Into::into)
    }

    async fn notification(&mut self, n: &Notification) {
        let now = now_ms();
        // "Initialized" carries the state at subscription time, not when it changed.
        let at = if n.initialized {
            now
        } else {
            event_time(n.utc_ms, now)
        };
        debug!(topic = ?n.topic, state = n.state, at, "event");
        match self.episodes.apply(n, at) {
            Change::None => {}
            Change::Began(at_ms) => {
                info!(at_ms, "event began");
                self.report(|e| {
                    e.events += 1;
                    e.active = true;
                });
                let _ = self
                    .tx
                    .send(Trigger {
                        at_ms,
                        active: true,
                        source: TriggerSource::Onvif,
                    })
                    .await;
            }
            Change::Ended {
                start_ms,
                end_ms,
                kind,
            } => {
                info!(start_ms, end_ms, "event ended");
                self.report(|e| e.active = false);
                let _ = self
                    .tx
                    .send(Trigger {
                        at_ms: end_ms,
                        active: false,
                        source: TriggerSource::Onvif,
                    })
                    .await;
                self.write(start_ms, end_ms, kind, true).await;
            }
        }
    }

    async fn write(&self, start_ms: i64, end_ms: i64, kind: EventType, complete: bool) {
        write_record(
            &self.ctx,
            &self.cfg.id,
            start_ms,
            end_ms,
            kind,
            None,
            complete,
        )
        .await;
    }
}

/// Writes the event record(s) of `[start_ms, end_ms)` into the buffer (uploaded in order with
/// the camera's segments). A longer span than one record covers is written as consecutive
/// records, all but the last `complete: false`.
pub async fn write_record(
    ctx: &Ctx,
    id: &CameraId,
    start_ms: i64,
    end_ms: i64,
    kind: EventType,
    source: Option<String>,
    complete: bool,
) {
    let mut from = start_ms;
    loop {
        let to = end_ms.min(from + MAX_EVENT_RECORD_MS);
        let last = to >= end_ms;
        let key = match EventKey::new(id.clone(), from, to.max(from + 1), kind) {
            Ok(k) => k,
            Err(e) => {
                warn!(error = %e, "event record not written");
                return;
            }
        };
        let rec = EventRecord::new(
            &key,
            source.clone(),
            complete && last,
            &ctx.settings.recorder_name,
        );
        let spool = ctx.spool.clone();
        let r = tokio::task::spawn_blocking(move || spool.put_event_blocking(&key, &rec)).await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "could not write the event record"),
            Err(e) => warn!(error = %e, "event record task failed"),
        }
        if last {
            return;
        }
        from = to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(topic: Topic, source: &str, state: bool) -> Notification {
        Notification {
            topic,
            utc_ms: None,
            state,
            initialized: false,
            source: Some(source.into()),
        }
    }

    #[test]
    fn overlapping_sources_make_one_episode() {
        let mut e = Episodes::default();
        assert_eq!(e.apply(&n(Topic::Motion, "a", false), 0), Change::None);
        assert_eq!(
            e.apply(&n(Topic::DigitalInput, "i", true), 10),
            Change::Began(10)
        );
        assert_eq!(e.apply(&n(Topic::Motion, "a", true), 20), Change::None);
        assert_eq!(
            e.apply(&n(Topic::DigitalInput, "i", false), 30),
            Change::None
        );
        // Repeated true is no new episode.
        assert_eq!(e.apply(&n(Topic::Motion, "a", true), 35), Change::None);
        assert_eq!(
            e.apply(&n(Topic::Motion, "a", false), 40),
            Change::Ended {
                start_ms: 10,
                end_ms: 40,
                kind: EventType::Motion
            }
        );
        assert_eq!(e.apply(&n(Topic::Motion, "a", false), 50), Change::None);
    }

    #[test]
    fn long_episodes_are_split_and_closed() {
        let mut e = Episodes::default();
        e.apply(&n(Topic::Motion, "a", true), 1000);
        assert_eq!(e.split_due(1000 + MAX_EVENT_RECORD_MS - 1), None);
        assert_eq!(
            e.split_due(1000 + MAX_EVENT_RECORD_MS + 5),
            Some((1000, 1000 + MAX_EVENT_RECORD_MS, EventType::Motion))
        );
        assert_eq!(
            e.close(1000 + MAX_EVENT_RECORD_MS + 7),
            Some((
                1000 + MAX_EVENT_RECORD_MS,
                1000 + MAX_EVENT_RECORD_MS + 7,
                EventType::Motion
            ))
        );
        assert_eq!(e.close(5), None);
    }

    #[test]
    fn camera_time_only_when_the_clock_agrees() {
        assert_eq!(event_time(Some(10_000), 12_000), 10_000);
        assert_eq!(event_time(Some(10_000), 20_000), 20_000);
        assert_eq!(event_time(None, 7), 7);
    }
}
