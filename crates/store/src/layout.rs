//! Object keys of the store: where a camera's segments and gap records live.
//!
//! Pure string work, no I/O, so that the recorder, backfill jobs and the playback server all
//! agree on one layout:
//!
//! ```text
//! <prefix>/<namespace>/<camera>/<YYYY>/<MM>/<DD>/<HH>/<startMs>-<endMs>-<origin>.mp4
//! <prefix>/<namespace>/<camera>/gaps/<startMs>-<endMs>.json
//! ```
//!
//! `startMs`/`endMs` are UTC Unix milliseconds of the first frame and of the end of the last
//! frame; `[startMs, endMs)` is half-open, so consecutive segments of one session share a
//! boundary value. The hour directory is the UTC hour of `startMs`, which lets a reader list
//! only the hours a query touches (a segment starting at 10:59:58 lives under `10/` even though
//! it ends at 11:00:08, so readers also list the hour before a window). An empty prefix means
//! keys start at the namespace.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::error::Error;

/// Where a segment's footage came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// Recorded from the camera's live stream.
    Live,
    /// Fetched later from the camera's edge storage.
    Backfill,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Live => "live",
            Origin::Backfill => "backfill",
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Origin {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "live" => Ok(Origin::Live),
            "backfill" => Ok(Origin::Backfill),
            _ => Err(Error::Layout(format!("unknown origin {s:?}"))),
        }
    }
}

/// Identity of a camera in the store: namespace and name, as in Kubernetes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CameraId {
    pub namespace: String,
    pub name: String,
}

impl CameraId {
    /// Checks both parts so that no key can escape its camera's directory (`..`, `/`) and so
    /// that file mode accepts exactly the names Kubernetes would.
    pub fn new(namespace: &str, name: &str) -> Result<Self, Error> {
        validate_namespace(namespace)?;
        validate_camera_name(name)?;
        Ok(CameraId {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for CameraId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A segment object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SegmentKey {
    pub camera: CameraId,
    pub start_ms: i64,
    pub end_ms: i64,
    pub origin: Origin,
}

/// A gap record object (an interval without footage, see `gaps.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GapKey {
    pub camera: CameraId,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Either kind of object under a camera's directory.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKey {
    Segment(SegmentKey),
    Gap(GapKey),
    /// An event record (see `events.rs`).
    Event(crate::events::EventKey),
}

impl ObjectKey {
    pub fn camera(&self) -> &CameraId {
        match self {
            ObjectKey::Segment(k) => &k.camera,
            ObjectKey::Gap(k) => &k.camera,
            ObjectKey::Event(k) => &k.camera,
        }
    }
    pub fn start_ms(&self) -> i64 {
        match self {
            ObjectKey::Segment(k) => k.start_ms,
            ObjectKey::Gap(k) => k.start_ms,
            ObjectKey::Event(k) => k.start_ms,
        }
    }
    pub fn end_ms(&self) -> i64 {
        match self {
            ObjectKey::Segment(k) => k.end_ms,
            ObjectKey::Gap(k) => k.end_ms,
            ObjectKey::Event(k) => k.end_ms,
        }
    }
    /// Key relative to the prefix (what the local buffer mirrors).
    pub fn relative(&self) -> String {
        match self {
            ObjectKey::Segment(k) => k.relative(),
            ObjectKey::Gap(k) => k.relative(),
            ObjectKey::Event(k) => k.relative(),
        }
    }
    pub fn to_key(&self, prefix: &str) -> String {
        join_prefix(prefix, &self.relative())
    }
    /// Parses a key relative to the prefix.
    pub fn parse_relative(rel: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = rel.split('/').collect();
        if parts.len() == 4 && parts[2] == "gaps" {
            return GapKey::parse_relative(rel).map(ObjectKey::Gap);
        }
        if parts.len() == 8 && parts[2] == "events" {
            return crate::events::EventKey::parse_relative(rel).map(ObjectKey::Event);
        }
        SegmentKey::parse_relative(rel).map(ObjectKey::Segment)
    }
}

impl SegmentKey {
    pub fn new(
        camera: CameraId,
        start_ms: i64,
        end_ms: i64,
        origin: Origin,
    ) -> Result<Self, Error> {
        check_interval(start_ms, end_ms)?;
        Ok(SegmentKey {
            camera,
            start_ms,
            end_ms,
            origin,
        })
    }

    /// `<namespace>/<camera>/<YYYY>/<MM>/<DD>/<HH>/<start>-<end>-<origin>.mp4`.
    pub fn relative(&self) -> String {
        format!(
            "{}/{}-{}-{}.mp4",
            hour_dir(&self.camera, self.start_ms),
            self.start_ms,
            self.end_ms,
            self.origin
        )
    }

    pub fn to_key(&self, prefix: &str) -> String {
        join_prefix(prefix, &self.relative())
    }

    /// Parses a full key written with `prefix`.
    pub fn parse(key: &str, prefix: &str) -> Result<Self, Error> {
        Self::parse_relative(strip_prefix(key, prefix)?)
    }

    pub fn parse_relative(rel: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = rel.split('/').collect();
        let [ns, cam, yyyy, mm, dd, hh, file] = parts[..] else {
            return Err(Error::Layout(format!(
                "segment key {rel:?} does not have 7 parts"
            )));
        };
        let camera = CameraId::new(ns, cam)?;
        let stem = file
            .strip_suffix(".mp4")
            .ok_or_else(|| Error::Layout(format!("segment key {rel:?} does not end in .mp4")))?;
        let mut it = stem.splitn(3, '-');
        let (Some(s), Some(e), Some(o)) = (it.next(), it.next(), it.next()) else {
            return Err(Error::Layout(format!(
                "segment file {file:?} is not <start>-<end>-<origin>.mp4"
            )));
        };
        let start_ms = parse_ms(s, rel)?;
        let end_ms = parse_ms(e, rel)?;
        let origin: Origin = o.parse()?;
        let key = SegmentKey::new(camera, start_ms, end_ms, origin)?;
        // The hour directory is redundant with startMs; a mismatch means the object was not
        // written by this layout and a time-range listing would miss it.
        let expect = hour_parts(start_ms)?;
        if [yyyy, mm, dd, hh] != [&expect[0][..], &expect[1], &expect[2], &expect[3]] {
            return Err(Error::Layout(format!(
                "segment key {rel:?} is filed under the wrong hour (expected {}/{}/{}/{})",
                expect[0], expect[1], expect[2], expect[3]
            )));
        }
        Ok(key)
    }
}

impl GapKey {
    pub fn new(camera: CameraId, start_ms: i64, end_ms: i64) -> Result<Self, Error> {
        check_interval(start_ms, end_ms)?;
        Ok(GapKey {
            camera,
            start_ms,
            end_ms,
        })
    }

    /// `<namespace>/<camera>/gaps/<start>-<end>.json`.
    pub fn relative(&self) -> String {
        format!(
            "{}/{}/gaps/{}-{}.json",
            self.camera.namespace, self.camera.name, self.start_ms, self.end_ms
        )
    }

    pub fn to_key(&self, prefix: &str) -> String {
        join_prefix(prefix, &self.relative())
    }

    pub fn parse(key: &str, prefix: &str) -> Result<Self, Error> {
        Self::parse_relative(strip_prefix(key, prefix)?)
    }

    pub fn parse_relative(rel: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = rel.split('/').collect();
        let [ns, cam, "gaps", file] = parts[..] else {
            return Err(Error::Layout(format!(
                "gap key {rel:?} is not <ns>/<camera>/gaps/<file>"
            )));
        };
        let camera = CameraId::new(ns, cam)?;
        let stem = file
            .strip_suffix(".json")
            .ok_or_else(|| Error::Layout(format!("gap key {rel:?} does not end in .json")))?;
        let (s, e) = stem
            .split_once('-')
            .ok_or_else(|| Error::Layout(format!("gap file {file:?} is not <start>-<end>.json")))?;
        GapKey::new(camera, parse_ms(s, rel)?, parse_ms(e, rel)?)
    }
}

/// `<prefix>/<namespace>/<camera>/` — everything of one camera.
pub fn camera_prefix(prefix: &str, camera: &CameraId) -> String {
    join_prefix(prefix, &format!("{}/{}/", camera.namespace, camera.name))
}

/// `<prefix>/<namespace>/<camera>/gaps/`.
pub fn gaps_prefix(prefix: &str, camera: &CameraId) -> String {
    join_prefix(
        prefix,
        &format!("{}/{}/gaps/", camera.namespace, camera.name),
    )
}

/// The hour directories (with trailing `/`) a reader must list to find every segment that
/// overlaps `[start_ms, end_ms)`, assuming no segment is longer than `max_segment_ms`.
pub fn hour_prefixes(
    prefix: &str,
    camera: &CameraId,
    start_ms: i64,
    end_ms: i64,
    max_segment_ms: i64,
) -> Result<Vec<String>, Error> {
    check_interval(start_ms, end_ms)?;
    const HOUR: i64 = 3_600_000;
    let first = (start_ms - max_segment_ms.max(0)).max(0).div_euclid(HOUR);
    let last = (end_ms - 1).div_euclid(HOUR);
    (first..=last)
        .map(|h| {
            Ok(join_prefix(
                prefix,
                &format!("{}/", hour_dir(camera, h * HOUR)),
            ))
        })
        .collect()
}

fn hour_dir(camera: &CameraId, start_ms: i64) -> String {
    // check_interval guarantees a representable time for keys built through `new`.
    match hour_parts(start_ms) {
        Ok([y, m, d, h]) => format!("{}/{}/{y}/{m}/{d}/{h}", camera.namespace, camera.name),
        Err(_) => format!("{}/{}/invalid-time", camera.namespace, camera.name),
    }
}

fn hour_parts(ms: i64) -> Result<[String; 4], Error> {
    let t: DateTime<Utc> = DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| Error::Layout(format!("time {ms} ms is out of range")))?;
    Ok([
        format!("{:04}", t.year()),
        format!("{:02}", t.month()),
        format!("{:02}", t.day()),
        format!("{:02}", t.hour()),
    ])
}

fn check_interval(start_ms: i64, end_ms: i64) -> Result<(), Error> {
    // Years 1970..=9999 keep the `YYYY` directory four digits wide and sortable.
    const MAX_MS: i64 = 253_402_300_799_999;
    if !(0..=MAX_MS).contains(&start_ms) || !(0..=MAX_MS).contains(&end_ms) {
        return Err(Error::Layout(format!(
            "interval {start_ms}-{end_ms} is outside 1970..9999"
        )));
    }
    if end_ms <= start_ms {
        return Err(Error::Layout(format!(
            "interval {start_ms}-{end_ms} is empty or reversed"
        )));
    }
    Ok(())
}

fn parse_ms(s: &str, rel: &str) -> Result<i64, Error> {
    // Only plain decimal digits: `+5` or `007` would make two spellings of one key.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return Err(Error::Layout(format!(
            "bad millisecond value {s:?} in {rel:?}"
        )));
    }
    s.parse()
        .map_err(|_| Error::Layout(format!("bad millisecond value {s:?} in {rel:?}")))
}

fn normalized_prefix(prefix: &str) -> &str {
    prefix.trim_matches('/')
}

pub fn join_prefix(prefix: &str, rel: &str) -> String {
    let p = normalized_prefix(prefix);
    if p.is_empty() {
        rel.to_string()
    } else {
        format!("{p}/{rel}")
    }
}

fn strip_prefix<'a>(key: &'a str, prefix: &str) -> Result<&'a str, Error> {
    let p = normalized_prefix(prefix);
    if p.is_empty() {
        return Ok(key);
    }
    key.strip_prefix(p)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| Error::Layout(format!("key {key:?} is not under prefix {p:?}")))
}

/// A Kubernetes namespace name: DNS-1123 label.
pub fn validate_namespace(s: &str) -> Result<(), Error> {
    if s.is_empty() || s.len() > 63 || !is_dns_label(s) {
        return Err(Error::Layout(format!(
            "namespace {s:?} is not a DNS-1123 label (lowercase letters, digits, '-', at most 63)"
        )));
    }
    Ok(())
}

/// A Kubernetes object name: DNS-1123 subdomain.
pub fn validate_camera_name(s: &str) -> Result<(), Error> {
    if s.is_empty() || s.len() > 253 || !s.split('.').all(is_dns_label) {
        return Err(Error::Layout(format!(
            "camera name {s:?} is not a DNS-1123 subdomain (lowercase letters, digits, '-', '.')"
        )));
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cam() -> CameraId {
        CameraId::new("default", "cam1").unwrap()
    }

    #[test]
    fn segment_key_example() {
        // 2025-01-02T03:04:05.678Z
        let k = SegmentKey::new(cam(), 1_735_787_045_678, 1_735_787_055_678, Origin::Live).unwrap();
        assert_eq!(
            k.to_key("vigil"),
            "vigil/default/cam1/2025/01/02/03/1735787045678-1735787055678-live.mp4"
        );
        assert_eq!(
            k.to_key(""),
            "default/cam1/2025/01/02/03/1735787045678-1735787055678-live.mp4"
        );
        assert_eq!(k.to_key("/a/b/"), format!("a/b/{}", k.relative()));
        assert_eq!(SegmentKey::parse(&k.to_key("/a/b/"), "a/b").unwrap(), k);
    }

    #[test]
    fn gap_key_example() {
        let k = GapKey::new(cam(), 1000, 2500).unwrap();
        assert_eq!(k.to_key("p"), "p/default/cam1/gaps/1000-2500.json");
        assert_eq!(
            GapKey::parse("p/default/cam1/gaps/1000-2500.json", "p").unwrap(),
            k
        );
        assert_eq!(
            ObjectKey::parse_relative(&k.relative()).unwrap(),
            ObjectKey::Gap(k)
        );
    }

    #[test]
    fn rejects_bad_keys() {
        for bad in [
            "default/cam1/2025/01/02/03/1735787045678-1735787055678-live.mp4x",
            "default/cam1/2025/01/02/04/1735787045678-1735787055678-live.mp4", // wrong hour
            "default/cam1/2025/01/02/03/1735787055678-1735787045678-live.mp4", // reversed
            "default/cam1/2025/01/02/03/1735787045678-1735787055678-other.mp4",
            "default/cam1/2025/01/02/03/01735787045678-1735787055678-live.mp4",
            "default/../2025/01/02/03/1735787045678-1735787055678-live.mp4",
            "Default/cam1/2025/01/02/03/1735787045678-1735787055678-live.mp4",
            "default/cam1/2025/01/02/1735787045678-1735787055678-live.mp4",
            "default/cam1/gaps/5-1.json",
            "default/cam1/gaps/a-b.json",
        ] {
            assert!(ObjectKey::parse_relative(bad).is_err(), "{bad}");
        }
        assert!(SegmentKey::parse("other/default/cam1/x", "vigil").is_err());
        assert!(CameraId::new("ns", "a/b").is_err());
        assert!(CameraId::new("ns", "..").is_err());
        assert!(CameraId::new("", "a").is_err());
    }

    #[test]
    fn hour_prefixes_cover_window() {
        let c = cam();
        let h = 3_600_000;
        let p = hour_prefixes("x", &c, 10 * h + 5, 12 * h, 60_000).unwrap();
        assert_eq!(
            p,
            vec![
                "x/default/cam1/1970/01/01/09/",
                "x/default/cam1/1970/01/01/10/",
                "x/default/cam1/1970/01/01/11/"
            ]
        );
    }

    fn name_strategy() -> impl Strategy<Value = String> {
        "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\\.[a-z0-9]{1,5}){0,2}"
    }

    proptest! {
        #[test]
        fn segment_key_round_trips(
            ns in "[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?",
            name in name_strategy(),
            start in 0i64..4_000_000_000_000,
            len in 1i64..3_600_000,
            backfill in any::<bool>(),
            prefix in "(|[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2})",
        ) {
            let origin = if backfill { Origin::Backfill } else { Origin::Live };
            let k = SegmentKey::new(CameraId::new(&ns, &name).unwrap(), start, start + len, origin).unwrap();
            let key = k.to_key(&prefix);
            prop_assert_eq!(SegmentKey::parse(&key, &prefix).unwrap(), k.clone());
            prop_assert_eq!(ObjectKey::parse_relative(&k.relative()).unwrap(), ObjectKey::Segment(k.clone()));
            // Lexicographic order of the file name inside one hour directory follows start time
            // only for equal digit counts; the directory layout itself must sort by time.
            prop_assert!(key.starts_with(&camera_prefix(&prefix, &k.camera)));
        }

        #[test]
        fn gap_key_round_trips(start in 0i64..4_000_000_000_000, len in 1i64..86_400_000) {
            let k = GapKey::new(cam(), start, start + len).unwrap();
            prop_assert_eq!(GapKey::parse(&k.to_key("p/q"), "p/q").unwrap(), k);
        }

        #[test]
        fn hour_prefixes_contain_segment_hour(start in 0i64..4_000_000_000_000, len in 1i64..600_000, qoff in 0i64..600_000) {
            // A query window starting anywhere inside the segment finds the segment's directory.
            let k = SegmentKey::new(cam(), start, start + len, Origin::Live).unwrap();
            let q0 = start + qoff.min(len - 1);
            let dirs = hour_prefixes("", &cam(), q0, q0 + 1, 600_000).unwrap();
            let rel = k.relative();
            let dir = &rel[..rel.rfind('/').unwrap() + 1];
            prop_assert!(dirs.iter().any(|d| d == dir));
        }
    }
}
