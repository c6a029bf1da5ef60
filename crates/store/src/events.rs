//! Events kept with the footage: what happened at a camera (motion, a digital input, a manual
//! recording, an event posted by another system), per camera and time.
//!
//! ```text
//! <prefix>/<ns>/<camera>/events/<YYYY>/<MM>/<DD>/<HH>/<startMs>-<endMs>-<type>.json
//! ```
//!
//! The hour directory is the UTC hour of `startMs`, as for segments; a record covers at most
//! [`MAX_EVENT_RECORD_MS`] (a longer event is written as consecutive records), so a reader of a
//! window lists the window's hours plus one before it. Records go through the recorder's buffer
//! like gap records (`.tmp`, fsync, rename into `ready/`, uploaded in order), see
//! `docs/storage.md`, "Events".

use std::fmt;
use std::str::FromStr;

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gaps::rfc3339;
use crate::layout::{self, CameraId};

/// Longest interval one event record covers; a longer event is split into several records
/// (and an event still active is written every this long, so a crash loses at most this much
/// of its record).
pub const MAX_EVENT_RECORD_MS: i64 = 600_000;

/// What kind of event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventType {
    /// ONVIF `tns1:VideoSource/MotionAlarm`.
    Motion,
    /// ONVIF `tns1:Device/Trigger/DigitalInput`.
    DigitalInput,
    /// A user started recording by hand.
    Manual,
    /// Posted by another system (analytics, access control).
    External,
}

pub const ALL_TYPES: [EventType; 4] = [
    EventType::Motion,
    EventType::DigitalInput,
    EventType::Manual,
    EventType::External,
];

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Motion => "motion",
            EventType::DigitalInput => "digital-input",
            EventType::Manual => "manual",
            EventType::External => "external",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ALL_TYPES
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| Error::Layout(format!("unknown event type {s:?}")))
    }
}

/// An event record's key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventKey {
    pub camera: CameraId,
    pub start_ms: i64,
    pub end_ms: i64,
    pub kind: EventType,
}

impl EventKey {
    pub fn new(camera: CameraId, start_ms: i64, end_ms: i64, kind: EventType) -> Result<Self> {
        // The same checks as a segment key (1970..9999, non-empty), and the record length.
        layout::SegmentKey::new(camera.clone(), start_ms, end_ms, layout::Origin::Live)?;
        if end_ms - start_ms > MAX_EVENT_RECORD_MS {
            return Err(Error::Layout(format!(
                "event record {start_ms}-{end_ms} is longer than {MAX_EVENT_RECORD_MS} ms"
            )));
        }
        Ok(EventKey {
            camera,
            start_ms,
            end_ms,
            kind,
        })
    }

    /// `<ns>/<camera>/events/<YYYY>/<MM>/<DD>/<HH>/<start>-<end>-<type>.json`.
    pub fn relative(&self) -> String {
        let seg = layout::SegmentKey {
            camera: self.camera.clone(),
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            origin: layout::Origin::Live,
        }
        .relative();
        // <ns>/<cam>/<Y>/<M>/<D>/<H>/<file>: the same hour directory, under events/.
        let (dir, _file) = seg.rsplit_once('/').unwrap_or((&seg, ""));
        let hours = dir
            .splitn(3, '/')
            .nth(2)
            .unwrap_or("invalid-time")
            .to_string();
        format!(
            "{}/{}/events/{hours}/{}-{}-{}.json",
            self.camera.namespace, self.camera.name, self.start_ms, self.end_ms, self.kind
        )
    }

    pub fn to_key(&self, prefix: &str) -> String {
        layout::join_prefix(prefix, &self.relative())
    }

    pub fn parse_relative(rel: &str) -> Result<Self> {
        let parts: Vec<&str> = rel.split('/').collect();
        let [ns, cam, "events", _, _, _, _, file] = parts[..] else {
            return Err(Error::Layout(format!(
                "event key {rel:?} is not <ns>/<camera>/events/<Y>/<M>/<D>/<H>/<file>"
            )));
        };
        let camera = CameraId::new(ns, cam)?;
        let stem = file
            .strip_suffix(".json")
            .ok_or_else(|| Error::Layout(format!("event key {rel:?} does not end in .json")))?;
        let mut it = stem.splitn(3, '-');
        let (Some(s), Some(e), Some(t)) = (it.next(), it.next(), it.next()) else {
            return Err(Error::Layout(format!(
                "event file {file:?} is not <start>-<end>-<type>.json"
            )));
        };
        let num = |v: &str| -> Result<i64> {
            if v.is_empty()
                || !v.bytes().all(|b| b.is_ascii_digit())
                || (v.len() > 1 && v.starts_with('0'))
            {
                return Err(Error::Layout(format!("{v:?} in {rel:?} is not a time")));
            }
            v.parse()
                .map_err(|_| Error::Layout(format!("{v:?} in {rel:?} is not a time")))
        };
        let key = EventKey::new(camera, num(s)?, num(e)?, t.parse()?)?;
        if key.relative() != rel {
            return Err(Error::Layout(format!(
                "event key {rel:?} is filed under the wrong hour"
            )));
        }
        Ok(key)
    }
}

/// `<prefix>/<ns>/<camera>/events/<Y>/<M>/<D>/<H>/` for every hour a reader must list to find
/// the records overlapping `[start_ms, end_ms)`.
pub fn hour_prefixes(
    prefix: &str,
    camera: &CameraId,
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<String>> {
    let seg_dirs = layout::hour_prefixes("", camera, start_ms, end_ms, MAX_EVENT_RECORD_MS)?;
    Ok(seg_dirs
        .into_iter()
        .map(|d| {
            let hours = d.splitn(3, '/').nth(2).unwrap_or_default().to_string();
            layout::join_prefix(
                prefix,
                &format!("{}/{}/events/{hours}", camera.namespace, camera.name),
            )
        })
        .collect())
}

/// Hours of one day a reader needs before it lists the whole day instead (one LIST of the
/// day's records instead of this many LISTs of hours; the day's other hours' keys are few and
/// filtered out).
pub const WHOLE_DAY_FROM_HOURS: usize = 4;

/// Pure: the prefixes to list for `[start_ms, end_ms)`: the hour directories
/// ([`hour_prefixes`]), where a day needs at least [`WHOLE_DAY_FROM_HOURS`] of them replaced by
/// that day's directory. A 30-day window is 31–32 LISTs instead of 721.
pub fn list_prefixes(
    prefix: &str,
    camera: &CameraId,
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<String>> {
    let hours = hour_prefixes(prefix, camera, start_ms, end_ms)?;
    let day_of = |h: &str| -> String {
        // ".../<D>/<H>/" -> ".../<D>/"
        let t = h.trim_end_matches('/');
        t.rsplit_once('/')
            .map_or_else(|| h.to_string(), |(d, _)| format!("{d}/"))
    };
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < hours.len() {
        let day = day_of(&hours[i]);
        let n = hours[i..].iter().take_while(|h| day_of(h) == day).count();
        if n >= WHOLE_DAY_FROM_HOURS {
            out.push(day);
        } else {
            out.extend(hours[i..i + n].iter().cloned());
        }
        i += n;
    }
    Ok(out)
}

/// How [`query_listing`] lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing {
    /// One LIST per hour directory (before: 721 LISTs for 30 days).
    Hours,
    /// Whole days where a day needs [`WHOLE_DAY_FROM_HOURS`] hours or more ([`list_prefixes`]).
    Days,
    /// One listing of the camera's `events/` from the window's first hour directory on
    /// (S3 `start-after`), read page by page in key order and stopped at the first record
    /// starting at or after the window's end (or once `limit` are found): one request for a
    /// camera with fewer than 1,000 records in the window, whatever its length. Needs a store
    /// that lists in key order (S3 and the other cloud stores; not a local directory).
    Range,
}

/// Whether `store` lists keys in lexicographic order (S3, GCS, Azure, in-memory do; a local
/// directory does not), which [`Listing::Range`] needs.
pub fn lists_in_order(store: &dyn ObjectStore) -> bool {
    !store.to_string().starts_with("LocalFileSystem")
}

/// The JSON body of an event record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    pub namespace: String,
    pub camera: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub start_ms: i64,
    pub end_ms: i64,
    pub start: String,
    pub end: String,
    /// The event's source at the camera (ONVIF source token, input name, user), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// False for a record written while the event was still active (it continues in the next
    /// record, or ended unseen when the recorder stopped).
    pub complete: bool,
    /// Who wrote it (recorder pod or host name).
    pub recorder: String,
}

impl EventRecord {
    pub fn new(
        key: &EventKey,
        source: Option<String>,
        complete: bool,
        recorder: &str,
    ) -> EventRecord {
        EventRecord {
            namespace: key.camera.namespace.clone(),
            camera: key.camera.name.clone(),
            kind: key.kind,
            start_ms: key.start_ms,
            end_ms: key.end_ms,
            start: rfc3339(key.start_ms),
            end: rfc3339(key.end_ms),
            source,
            complete,
            recorder: recorder.to_string(),
        }
    }
}

/// One event as the query returns it: the key's facts (the body is not read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventItem {
    #[serde(rename = "type")]
    pub kind: EventType,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Pure: the keys (relative) overlapping `[start_ms, end_ms)` of `kind` (all if `None`),
/// in start order; keys of other cameras or that do not parse are ignored.
pub fn select(
    rels: impl IntoIterator<Item = String>,
    camera: &CameraId,
    start_ms: i64,
    end_ms: i64,
    kind: Option<EventType>,
) -> Vec<EventItem> {
    let mut out: Vec<EventItem> = rels
        .into_iter()
        .filter_map(|r| EventKey::parse_relative(&r).ok())
        .filter(|k| &k.camera == camera && k.start_ms < end_ms && k.end_ms > start_ms)
        .filter(|k| kind.is_none_or(|t| t == k.kind))
        .map(|k| EventItem {
            kind: k.kind,
            start_ms: k.start_ms,
            end_ms: k.end_ms,
        })
        .collect();
    out.sort_by_key(|e| (e.start_ms, e.end_ms, e.kind));
    out.dedup();
    out
}

/// The events of `camera` overlapping `[start_ms, end_ms)`: one LIST per hour directory, or
/// per day where the window covers most of it ([`list_prefixes`]), keys only. At most `limit`
/// items (the earliest).
pub async fn query(
    store: &dyn ObjectStore,
    prefix: &str,
    camera: &CameraId,
    start_ms: i64,
    end_ms: i64,
    kind: Option<EventType>,
    limit: usize,
) -> Result<Vec<EventItem>> {
    let listing = if lists_in_order(store) {
        Listing::Range
    } else {
        Listing::Days
    };
    query_listing(
        store, prefix, camera, start_ms, end_ms, kind, limit, listing,
    )
    .await
}

/// [`query`], listing as told (the hour-by-hour way is kept to measure against).
#[allow(clippy::too_many_arguments)]
pub async fn query_listing(
    store: &dyn ObjectStore,
    prefix: &str,
    camera: &CameraId,
    start_ms: i64,
    end_ms: i64,
    kind: Option<EventType>,
    limit: usize,
    listing: Listing,
) -> Result<Vec<EventItem>> {
    let prefix = prefix.trim_matches('/');
    let strip = |k: String| -> String {
        if prefix.is_empty() {
            k
        } else {
            k.strip_prefix(prefix)
                .map(|r| r.trim_start_matches('/').to_string())
                .unwrap_or(k)
        }
    };
    let dirs = match listing {
        Listing::Hours => hour_prefixes(prefix, camera, start_ms, end_ms)?,
        Listing::Days => list_prefixes(prefix, camera, start_ms, end_ms)?,
        Listing::Range => {
            let hours = hour_prefixes(prefix, camera, start_ms, end_ms)?;
            let base = layout::join_prefix(
                prefix,
                &format!("{}/{}/events", camera.namespace, camera.name),
            );
            // Keys after ".../<H>" (exclusive) are those of that hour and later.
            let from = hours
                .first()
                .map(|h| h.trim_end_matches('/').to_string())
                .unwrap_or_else(|| base.clone());
            let mut stream =
                store.list_with_offset(Some(&Path::from(base.as_str())), &Path::from(from));
            let mut rels = Vec::new();
            let mut found = 0usize;
            while let Some(m) = stream.try_next().await? {
                let rel = strip(m.location.to_string());
                if let Ok(k) = EventKey::parse_relative(&rel) {
                    if k.start_ms >= end_ms {
                        break;
                    }
                    if k.end_ms > start_ms && kind.is_none_or(|t| t == k.kind) {
                        found += 1;
                    }
                }
                rels.push(rel);
                if found >= limit {
                    break;
                }
            }
            let mut out = select(rels, camera, start_ms, end_ms, kind);
            out.truncate(limit);
            return Ok(out);
        }
    };
    // At most 16 LISTs at a time.
    let mut lists: Vec<Vec<String>> = Vec::with_capacity(dirs.len());
    for chunk in dirs.chunks(16) {
        lists.extend(
            futures::future::try_join_all(chunk.iter().map(|d| async move {
                let p = Path::from(d.trim_end_matches('/'));
                store
                    .list(Some(&p))
                    .map_ok(|m| m.location.to_string())
                    .try_collect::<Vec<_>>()
                    .await
            }))
            .await?,
        );
    }
    let mut out = select(
        lists.into_iter().flatten().map(strip),
        camera,
        start_ms,
        end_ms,
        kind,
    );
    out.truncate(limit);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam() -> CameraId {
        CameraId::new("site-a", "door").unwrap()
    }

    #[test]
    fn key_round_trip_and_layout() {
        let k = EventKey::new(
            cam(),
            1_735_787_045_678,
            1_735_787_055_678,
            EventType::Motion,
        )
        .unwrap();
        assert_eq!(
            k.relative(),
            "site-a/door/events/2025/01/02/03/1735787045678-1735787055678-motion.json"
        );
        assert_eq!(EventKey::parse_relative(&k.relative()).unwrap(), k);
        assert_eq!(
            k.to_key("vigil"),
            "vigil/site-a/door/events/2025/01/02/03/1735787045678-1735787055678-motion.json"
        );
        let d = EventKey::new(cam(), 1000, 2000, EventType::DigitalInput).unwrap();
        assert_eq!(EventKey::parse_relative(&d.relative()).unwrap(), d);
    }

    #[test]
    fn bad_keys_are_refused() {
        for bad in [
            "site-a/door/events/2025/01/02/04/1735787045678-1735787055678-motion.json",
            "site-a/door/events/2025/01/02/03/1735787045678-1735787055678-fire.json",
            "site-a/door/events/2025/01/02/03/01735787045678-1735787055678-motion.json",
            "site-a/door/events/2025/01/02/03/1735787055678-1735787045678-motion.json",
            "site-a/../events/2025/01/02/03/1735787045678-1735787055678-motion.json",
            "site-a/door/gaps/1-2.json",
        ] {
            assert!(EventKey::parse_relative(bad).is_err(), "{bad}");
        }
        // Longer than one record may be.
        assert!(EventKey::new(cam(), 0, MAX_EVENT_RECORD_MS + 1, EventType::Motion).is_err());
    }

    #[test]
    fn hour_prefixes_include_the_hour_before() {
        let start = 1_735_787_045_678; // 03:04:05
        let p = hour_prefixes("vigil", &cam(), start, start + 1000).unwrap();
        assert_eq!(
            p,
            vec![
                "vigil/site-a/door/events/2025/01/02/02/",
                "vigil/site-a/door/events/2025/01/02/03/"
            ]
        );
    }

    #[test]
    fn long_windows_list_whole_days() {
        let day = 86_400_000;
        let start = 1_735_787_045_678; // 2025-01-02 03:04:05
        // A short window: its hours (and the one before).
        let p = list_prefixes("vigil", &cam(), start, start + 1000).unwrap();
        assert_eq!(
            p,
            hour_prefixes("vigil", &cam(), start, start + 1000).unwrap()
        );
        // 30 days less an hour: 02:00 (the hour before) to the end of 01-02 is one day
        // listing, then whole days, and the last day's 3 hours (00..02) listed by hour.
        let end = start + 30 * day - 3_600_000;
        let p = list_prefixes("vigil", &cam(), start, end).unwrap();
        assert_eq!(p[0], "vigil/site-a/door/events/2025/01/02/");
        assert_eq!(p[1], "vigil/site-a/door/events/2025/01/03/");
        assert_eq!(
            &p[p.len() - 4..],
            [
                "vigil/site-a/door/events/2025/01/31/",
                "vigil/site-a/door/events/2025/02/01/00/",
                "vigil/site-a/door/events/2025/02/01/01/",
                "vigil/site-a/door/events/2025/02/01/02/",
            ]
        );
        assert_eq!(p.len(), 30 + 3);
        // Whatever is listed covers every hour directory the window needs.
        let hours = hour_prefixes("vigil", &cam(), start, end).unwrap();
        assert!(
            hours
                .iter()
                .all(|h| p.iter().any(|d| h.starts_with(d.as_str())))
        );
    }

    #[tokio::test]
    async fn every_listing_finds_the_same_events() {
        use object_store::{ObjectStoreExt, PutPayload};
        let mem = object_store::memory::InMemory::new();
        let local_dir = tempfile::tempdir().unwrap();
        let local =
            object_store::local::LocalFileSystem::new_with_prefix(local_dir.path()).unwrap();
        assert!(lists_in_order(&mem) && !lists_in_order(&local));
        let other = CameraId::new("site-a", "doorway").unwrap();
        let t0 = 1_735_787_045_678;
        let mut all = Vec::new();
        // Three days of a record every 50 minutes, some 10 minutes long (crossing hours),
        // and a camera whose name shares the prefix.
        for i in 0..90 {
            let s = t0 + i * 3_000_000;
            for c in [cam(), other.clone()] {
                let k = EventKey::new(c, s, s + 600_000, EventType::Motion).unwrap();
                all.push(k);
            }
        }
        for k in &all {
            for st in [&mem as &dyn ObjectStore, &local] {
                st.put(
                    &Path::from(k.to_key("vigil")),
                    PutPayload::from_static(b"{}"),
                )
                .await
                .unwrap();
            }
        }
        for (from, to, limit) in [
            (t0 - 86_400_000, t0 + 4 * 86_400_000, 1000),
            (t0 + 3_500_000, t0 + 30_000_000, 1000),
            (t0 + 100_000_000, t0 + 200_000_000, 7),
            (t0 + 599_999, t0 + 600_000, 1000),
        ] {
            let want: Vec<EventItem> =
                select(all.iter().map(EventKey::relative), &cam(), from, to, None)
                    .into_iter()
                    .take(limit)
                    .collect();
            assert!(!want.is_empty());
            for listing in [Listing::Hours, Listing::Days, Listing::Range] {
                let got = query_listing(&mem, "vigil", &cam(), from, to, None, limit, listing)
                    .await
                    .unwrap();
                assert_eq!(got, want, "{listing:?} {from}..{to}");
            }
            let got = query(&local, "vigil", &cam(), from, to, None, limit)
                .await
                .unwrap();
            assert_eq!(got, want, "local {from}..{to}");
        }
    }

    #[test]
    fn select_filters_by_window_type_and_camera() {
        let other = CameraId::new("site-a", "yard").unwrap();
        let keys = [
            EventKey::new(cam(), 1000, 2000, EventType::Motion).unwrap(),
            EventKey::new(cam(), 5000, 6000, EventType::Motion).unwrap(),
            EventKey::new(cam(), 1500, 1600, EventType::Manual).unwrap(),
            EventKey::new(other, 1000, 2000, EventType::Motion).unwrap(),
        ];
        let rels: Vec<String> = keys.iter().map(EventKey::relative).collect();
        let all = select(rels.clone(), &cam(), 0, 10_000, None);
        assert_eq!(
            all.iter().map(|e| e.start_ms).collect::<Vec<_>>(),
            [1000, 1500, 5000]
        );
        let motion = select(rels.clone(), &cam(), 1999, 5001, Some(EventType::Motion));
        assert_eq!(
            motion.iter().map(|e| e.start_ms).collect::<Vec<_>>(),
            [1000, 5000]
        );
        // Half-open: an event ending at the window's start is outside it.
        assert!(select(rels, &cam(), 2000, 5000, Some(EventType::Motion)).is_empty());
    }
}
