//! ONVIF events by PullPoint (ONVIF Core, "Real-time Pull-Point Notification Interface"):
//! find the event service, `CreatePullPointSubscription`, `PullMessages` (a long poll),
//! `Renew`, `Unsubscribe`, and the notifications parsed into typed values. The calls go through
//! [`Device`](crate::onvif::Device), so WS-Security, HTTP Digest, TLS and the address policy
//! apply to the subscription's address (which the camera names) as to every other ONVIF call.

use std::time::Duration;

use chrono::DateTime;
use url::Url;

use crate::error::{Error, Result};
use crate::onvif::{Device, elements, first_text};
use vigil_api::redact::redact_url;

/// What a notification is about, as far as recording cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topic {
    /// `tns1:VideoSource/MotionAlarm` (also `…/RuleEngine/CellMotionDetector/Motion`).
    Motion,
    /// `tns1:Device/Trigger/DigitalInput`.
    DigitalInput,
}

/// One notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub topic: Topic,
    /// `UtcTime` of the message, if it parsed.
    pub utc_ms: Option<i64>,
    /// The `State` (or `IsMotion`, `LogicalState`) data item.
    pub state: bool,
    /// `Initialized` (the current state on subscribing), `Changed` or `Deleted`.
    pub initialized: bool,
    /// The first source item's value (video source token, input token), bounded.
    pub source: Option<String>,
}

/// A subscription: where to pull and until when it lives (camera's clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub address: Url,
    /// Termination time minus current time as the camera stated them (its clock may be off,
    /// the difference is what counts).
    pub lifetime: Option<Duration>,
}

pub(crate) fn topic_of(text: &str) -> Option<Topic> {
    let t = text.trim();
    let local = t.split_once(':').map_or(t, |(_, r)| r);
    if local == "VideoSource/MotionAlarm" || local.ends_with("CellMotionDetector/Motion") {
        Some(Topic::Motion)
    } else if local == "Device/Trigger/DigitalInput" {
        Some(Topic::DigitalInput)
    } else {
        None
    }
}

pub(crate) fn parse_time_ms(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.timestamp_millis())
}

fn lifetime(xml: &str) -> Option<Duration> {
    let cur = first_text(xml, "CurrentTime").and_then(|t| parse_time_ms(&t))?;
    let end = first_text(xml, "TerminationTime").and_then(|t| parse_time_ms(&t))?;
    u64::try_from(end - cur).ok().map(Duration::from_millis)
}

/// Most notifications taken from one answer.
const MAX_NOTIFICATIONS: usize = 1000;

/// The motion and digital-input notifications of a `PullMessagesResponse`, in order; others
/// and malformed ones are skipped.
pub fn parse_notifications(xml: &str) -> Vec<Notification> {
    let mut out = Vec::new();
    for msg in elements(xml, "NotificationMessage")
        .into_iter()
        .take(MAX_NOTIFICATIONS)
    {
        let Some(topic) = first_text(msg, "Topic").and_then(|t| topic_of(&t)) else {
            continue;
        };
        if let Some(n) = parse_message(msg, topic) {
            out.push(n);
        }
    }
    out
}

pub(crate) fn parse_message(msg: &str, topic: Topic) -> Option<Notification> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(msg);
    let (mut utc_ms, mut initialized, mut state, mut source) = (None, false, None, None);
    // Which of Source / Data the reader is in.
    let mut section: Option<bool> = None;
    let attr = |e: &quick_xml::events::BytesStart, name: &[u8]| -> Option<String> {
        e.attributes()
            .flatten()
            .find(|a| a.key.local_name().as_ref() == name)
            .map(|a| {
                let raw = String::from_utf8_lossy(&a.value).into_owned();
                quick_xml::escape::unescape(&raw).map_or(raw.clone(), |v| v.into_owned())
            })
    };
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match e.local_name().as_ref() {
                b"Message" if utc_ms.is_none() && attr(&e, b"UtcTime").is_some() => {
                    utc_ms = attr(&e, b"UtcTime").and_then(|t| parse_time_ms(&t));
                    initialized = attr(&e, b"PropertyOperation").as_deref() == Some("Initialized");
                }
                b"Source" => section = Some(false),
                b"Data" => section = Some(true),
                b"SimpleItem" => {
                    let (name, value) = (attr(&e, b"Name"), attr(&e, b"Value"));
                    match (section, name.as_deref(), value) {
                        (Some(true), Some("State" | "IsMotion" | "LogicalState"), Some(v)) => {
                            state = match v.trim() {
                                "true" | "1" => Some(true),
                                "false" | "0" => Some(false),
                                _ => None,
                            };
                        }
                        (Some(false), _, Some(v)) if source.is_none() => {
                            source = Some(v.chars().take(128).collect());
                        }
                        _ => {}
                    }
                }
                _ => {}
            },
            Ok(Event::End(e)) if matches!(e.local_name().as_ref(), b"Source" | b"Data") => {
                section = None;
            }
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
    }
    Some(Notification {
        topic,
        utc_ms,
        state: state?,
        initialized,
        source,
    })
}

impl Device {
    /// The event service's address (GetCapabilities, falling back to GetServices).
    pub async fn event_service(&self) -> Result<Url> {
        let caps = self
            .call(
                self.device_url(),
                "GetCapabilities",
                "<tds:GetCapabilities><tds:Category>Events</tds:Category></tds:GetCapabilities>",
            )
            .await;
        if let Ok(t) = &caps
            && let Some(u) = elements(t, "Events")
                .first()
                .and_then(|s| first_text(s, "XAddr"))
                .and_then(|u| Url::parse(&u).ok())
        {
            return Ok(u);
        }
        let t = self
            .call(
                self.device_url(),
                "GetServices",
                "<tds:GetServices><tds:IncludeCapability>false</tds:IncludeCapability></tds:GetServices>",
            )
            .await?;
        elements(&t, "Service")
            .into_iter()
            .filter(|s| first_text(s, "Namespace").is_some_and(|n| n.contains("/events/")))
            .find_map(|s| first_text(s, "XAddr").and_then(|u| Url::parse(&u).ok()))
            .ok_or_else(|| {
                Error::Rtsp(format!(
                    "ONVIF device {} has no event service",
                    redact_url(self.device_url())
                ))
            })
    }

    /// `CreatePullPointSubscription` with an initial lifetime.
    pub async fn create_pull_point(&self, events: &Url, ttl: Duration) -> Result<Subscription> {
        let t = self
            .call(
                events,
                "CreatePullPointSubscription",
                &format!(
                    "<tev:CreatePullPointSubscription><tev:InitialTerminationTime>PT{}S</tev:InitialTerminationTime></tev:CreatePullPointSubscription>",
                    ttl.as_secs().max(1)
                ),
            )
            .await?;
        let reference = elements(&t, "SubscriptionReference");
        let address = reference
            .first()
            .and_then(|r| first_text(r, "Address"))
            .and_then(|u| Url::parse(&u).ok())
            .ok_or_else(|| {
                Error::Rtsp("ONVIF CreatePullPointSubscription returned no address".into())
            })?;
        Ok(Subscription {
            address,
            lifetime: lifetime(&t),
        })
    }

    /// `PullMessages`: waits up to `timeout` at the camera for up to `limit` messages. The
    /// client's own request timeout must be longer than `timeout`.
    pub async fn pull_messages(
        &self,
        sub: &Url,
        timeout: Duration,
        limit: u32,
    ) -> Result<Vec<Notification>> {
        let t = self
            .call(
                sub,
                "PullMessages",
                &format!(
                    "<tev:PullMessages><tev:Timeout>PT{}S</tev:Timeout><tev:MessageLimit>{}</tev:MessageLimit></tev:PullMessages>",
                    timeout.as_secs().max(1),
                    limit.max(1)
                ),
            )
            .await?;
        if elements(&t, "PullMessagesResponse").is_empty() {
            return Err(Error::Rtsp(
                "ONVIF PullMessages: no PullMessagesResponse".into(),
            ));
        }
        Ok(parse_notifications(&t))
    }

    /// `Renew`: the subscription lives `ttl` longer; returns the lifetime the camera states.
    pub async fn renew(&self, sub: &Url, ttl: Duration) -> Result<Option<Duration>> {
        let t = self
            .call(
                sub,
                "Renew",
                &format!(
                    "<wsnt:Renew><wsnt:TerminationTime>PT{}S</wsnt:TerminationTime></wsnt:Renew>",
                    ttl.as_secs().max(1)
                ),
            )
            .await?;
        Ok(lifetime(&t))
    }

    /// `Unsubscribe` (best effort: a camera that restarted has forgotten it anyway).
    pub async fn unsubscribe(&self, sub: &Url) -> Result<()> {
        self.call(sub, "Unsubscribe", "<wsnt:Unsubscribe/>")
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PULL: &str = r#"<?xml version="1.0"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:tev="http://www.onvif.org/ver10/events/wsdl" xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" xmlns:tt="http://www.onvif.org/ver10/schema" xmlns:tns1="http://www.onvif.org/ver10/topics"><s:Body><tev:PullMessagesResponse><tev:CurrentTime>2026-12-02T14:19:50Z</tev:CurrentTime><tev:TerminationTime>2026-12-02T14:20:50Z</tev:TerminationTime>
<wsnt:NotificationMessage><wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">tns1:VideoSource/MotionAlarm</wsnt:Topic><wsnt:Message><tt:Message UtcTime="2026-12-02T14:19:50.105Z" PropertyOperation="Changed"><tt:Source><tt:SimpleItem Name="Source" Value="VideoSource_1"/></tt:Source><tt:Data><tt:SimpleItem Name="State" Value="true"/></tt:Data></tt:Message></wsnt:Message></wsnt:NotificationMessage>
<wsnt:NotificationMessage><wsnt:Topic>tns1:Device/Trigger/DigitalInput</wsnt:Topic><wsnt:Message><tt:Message UtcTime="2026-12-02T14:19:51Z" PropertyOperation="Initialized"><tt:Source><tt:SimpleItem Name="InputToken" Value="DI_0"/></tt:Source><tt:Data><tt:SimpleItem Name="LogicalState" Value="false"/></tt:Data></tt:Message></wsnt:Message></wsnt:NotificationMessage>
<wsnt:NotificationMessage><wsnt:Topic>tns1:VideoSource/GlobalSceneChange/ImagingService</wsnt:Topic><wsnt:Message><tt:Message UtcTime="2026-12-02T14:19:52Z"><tt:Data><tt:SimpleItem Name="State" Value="true"/></tt:Data></tt:Message></wsnt:Message></wsnt:NotificationMessage>
<wsnt:NotificationMessage><wsnt:Topic>tns1:VideoSource/MotionAlarm</wsnt:Topic><wsnt:Message><tt:Message UtcTime="garbage"><tt:Data><tt:SimpleItem Name="State" Value="maybe"/></tt:Data></tt:Message></wsnt:Message></wsnt:NotificationMessage>
</tev:PullMessagesResponse></s:Body></s:Envelope>"#;

    #[test]
    fn motion_and_inputs_are_parsed_others_skipped() {
        let n = parse_notifications(PULL);
        assert_eq!(
            n,
            vec![
                Notification {
                    topic: Topic::Motion,
                    utc_ms: Some(1_796_221_190_105),
                    state: true,
                    initialized: false,
                    source: Some("VideoSource_1".into()),
                },
                Notification {
                    topic: Topic::DigitalInput,
                    utc_ms: Some(1_796_221_191_000),
                    state: false,
                    initialized: true,
                    source: Some("DI_0".into()),
                },
            ]
        );
        assert_eq!(lifetime(PULL), Some(Duration::from_secs(60)));
    }

    #[test]
    fn topics_by_local_name() {
        assert_eq!(
            topic_of("tns1:VideoSource/MotionAlarm"),
            Some(Topic::Motion)
        );
        assert_eq!(
            topic_of("tns1:RuleEngine/CellMotionDetector/Motion"),
            Some(Topic::Motion)
        );
        assert_eq!(
            topic_of("x:Device/Trigger/DigitalInput"),
            Some(Topic::DigitalInput)
        );
        assert_eq!(topic_of("tns1:VideoSource/ImageTooDark"), None);
    }
}
