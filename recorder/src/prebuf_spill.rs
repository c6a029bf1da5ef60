//! The I/O edge of the pre-event spill (issue #17): the GOPs an [`EventGate`] spills are
//! appended to per-camera chunk files in the local buffer directory, trimmed as they age out
//! and read back in order when an event opens the gate.
//!
//! ```text
//! <buffer-dir>/prebuf/<ns>/<camera>/<n>.spill   append-only chunks of whole GOPs
//! ```
//!
//! The files are never uploaded (the spool's queue is `ready/` and `partial/`) and hold nothing
//! a crash must keep: they are deleted when the camera task ends and when it starts. No fsync.
//! A chunk is closed at [`CHUNK_BYTES`]; a chunk whose newest GOP aged out is deleted.
//!
//! Record format (little-endian): `V ts:i64 flags:u8 len:u32 data` (flags: 1 key, 2 new
//! parameters) or `A pos:i64 duration:u32 len:u32 data`.
//!
//! [`EventGate`]: crate::event_gate::EventGate

use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use vigil_media::segmenter::{AudioIn, VideoIn};
use vigil_store::layout::CameraId;

use crate::event_gate::{Item, SpillGop};

/// Size at which a chunk file is closed and a new one begun.
pub const CHUNK_BYTES: u64 = 8 << 20;

struct Chunk {
    path: PathBuf,
    /// Start of the newest GOP in it.
    last_start_ts: i64,
    bytes: u64,
}

pub struct SpillStore {
    dir: PathBuf,
    chunks: VecDeque<Chunk>,
    /// The chunk being appended to (the last in `chunks`).
    file: Option<fs::File>,
    seq: u64,
}

impl SpillStore {
    /// The camera's spill directory, emptied (a previous run's files are of no use).
    pub fn new(buffer_dir: &Path, cam: &CameraId) -> SpillStore {
        let dir = buffer_dir
            .join("prebuf")
            .join(&cam.namespace)
            .join(&cam.name);
        let _ = fs::remove_dir_all(&dir);
        SpillStore {
            dir,
            chunks: VecDeque::new(),
            file: None,
            seq: 0,
        }
    }

    /// Appends a whole GOP.
    pub fn append(&mut self, gop: &SpillGop) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(gop.items.iter().map(|i| i.bytes() + 17).sum());
        for i in &gop.items {
            encode(i, &mut buf);
        }
        if self.file.is_none() {
            fs::create_dir_all(&self.dir)?;
            self.seq += 1;
            let path = self.dir.join(format!("{}.spill", self.seq));
            let f = fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&path)?;
            self.chunks.push_back(Chunk {
                path,
                last_start_ts: gop.start_ts,
                bytes: 0,
            });
            self.file = Some(f);
        }
        let (Some(f), Some(c)) = (self.file.as_mut(), self.chunks.back_mut()) else {
            return Err(std::io::ErrorKind::NotFound.into());
        };
        if let Err(e) = f.write_all(&buf) {
            // The chunk's tail is undefined now; the caller drops the whole spill.
            self.file = None;
            return Err(e);
        }
        c.last_start_ts = gop.start_ts;
        c.bytes += buf.len() as u64;
        if c.bytes >= CHUNK_BYTES {
            self.file = None;
        }
        Ok(())
    }

    /// Deletes the chunks whose GOPs all start before `keep_from_ts`.
    pub fn trim(&mut self, keep_from_ts: i64) {
        while let Some(c) = self.chunks.front() {
            if c.last_start_ts >= keep_from_ts {
                break;
            }
            let _ = fs::remove_file(&c.path);
            self.chunks.pop_front();
            if self.chunks.is_empty() {
                self.file = None;
            }
        }
    }

    /// The spilled GOPs from the one starting at `from_ts`, in order, and empties the spill.
    /// On a read error, what was read before it is returned with the error.
    pub fn take_from(&mut self, from_ts: i64) -> (Vec<Item>, Option<std::io::Error>) {
        let mut items = Vec::new();
        let mut err = None;
        self.file = None;
        for c in std::mem::take(&mut self.chunks) {
            if err.is_none() && c.last_start_ts >= from_ts {
                match fs::File::open(&c.path) {
                    Ok(f) => {
                        if !decode(f, from_ts, &mut items) {
                            err = Some(std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                "truncated spill record",
                            ));
                        }
                    }
                    Err(e) => err = Some(e),
                }
            }
            let _ = fs::remove_file(&c.path);
        }
        (items, err)
    }

    /// Deletes every chunk.
    pub fn clear(&mut self) {
        self.trim(i64::MAX);
    }

    /// Bytes on disk now.
    pub fn bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.bytes).sum()
    }
}

impl Drop for SpillStore {
    fn drop(&mut self) {
        self.clear();
        let _ = fs::remove_dir(&self.dir);
    }
}

fn encode(i: &Item, buf: &mut Vec<u8>) {
    match i {
        Item::Video(v) => {
            buf.push(b'V');
            buf.extend_from_slice(&v.ts.to_le_bytes());
            buf.push(u8::from(v.key) | (u8::from(v.new_params) << 1));
            buf.extend_from_slice(&(v.data.len() as u32).to_le_bytes());
            buf.extend_from_slice(&v.data);
        }
        Item::Audio(a) => {
            buf.push(b'A');
            buf.extend_from_slice(&a.pos.to_le_bytes());
            buf.extend_from_slice(&a.duration.to_le_bytes());
            buf.extend_from_slice(&(a.data.len() as u32).to_le_bytes());
            buf.extend_from_slice(&a.data);
        }
    }
}

/// Appends the records of `r` from the first keyframe at or after `from_ts` (record by
/// record: the chunk is never in memory whole); false if it ends inside a record.
fn decode(r: impl std::io::Read, from_ts: i64, items: &mut Vec<Item>) -> bool {
    use std::io::Read;
    fn arr<const N: usize>(r: &mut impl Read) -> std::io::Result<[u8; N]> {
        let mut b = [0u8; N];
        r.read_exact(&mut b)?;
        Ok(b)
    }
    fn payload(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
        let len = u32::from_le_bytes(arr::<4>(r)?) as usize;
        let mut data = vec![0u8; len];
        r.read_exact(&mut data)?;
        Ok(data)
    }
    let mut r = std::io::BufReader::with_capacity(64 << 10, r);
    let mut on = !items.is_empty();
    let mut one = |r: &mut std::io::BufReader<_>| -> std::io::Result<bool> {
        let mut tag = [0u8; 1];
        if r.read(&mut tag)? == 0 {
            return Ok(false);
        }
        let t = i64::from_le_bytes(arr::<8>(r)?);
        match tag[0] {
            b'V' => {
                let flags = arr::<1>(r)?[0];
                let data = payload(r)?;
                let key = flags & 1 != 0;
                on |= key && t >= from_ts;
                if on {
                    items.push(Item::Video(VideoIn {
                        ts: t,
                        key,
                        new_params: flags & 2 != 0,
                        data,
                    }));
                }
            }
            b'A' => {
                let duration = u32::from_le_bytes(arr::<4>(r)?);
                let data = payload(r)?;
                if on {
                    items.push(Item::Audio(AudioIn {
                        pos: t,
                        duration,
                        data,
                    }));
                }
            }
            _ => return Err(std::io::ErrorKind::InvalidData.into()),
        }
        Ok(true)
    };
    loop {
        match one(&mut r) {
            Ok(true) => {}
            Ok(false) => return true,
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gop(start: i64, frames: i64) -> SpillGop {
        let mut items = Vec::new();
        for n in 0..frames {
            items.push(Item::Video(VideoIn {
                ts: start + n * 3600,
                key: n == 0,
                new_params: n == 0 && start == 0,
                data: vec![n as u8; 1000],
            }));
            items.push(Item::Audio(AudioIn {
                pos: start + n * 3600,
                duration: 1024,
                data: vec![7; 50],
            }));
        }
        SpillGop {
            start_ts: start,
            items,
        }
    }

    fn video_ts(items: &[Item]) -> Vec<i64> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Video(v) if v.key => Some(v.ts),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn gops_come_back_in_order_from_the_asked_one_and_chunks_rotate() {
        let tmp = tempfile::tempdir().unwrap();
        let cam = CameraId::new("ns", "cam").unwrap();
        let mut s = SpillStore::new(tmp.path(), &cam);
        // 25 frames of ~1 KB: ~26 KB a GOP; 400 GOPs > one chunk.
        for g in 0..400 {
            s.append(&gop(g * 90_000, 25)).unwrap();
        }
        assert!(s.chunks.len() >= 2, "rotated into chunks");
        let before = s.chunks.len();
        s.trim(350 * 90_000);
        assert!(s.chunks.len() < before, "aged-out chunks deleted");
        let (items, err) = s.take_from(350 * 90_000);
        assert!(err.is_none());
        let keys = video_ts(&items);
        assert_eq!(keys, (350..400).map(|g| g * 90_000).collect::<Vec<_>>());
        assert_eq!(items.len(), 50 * 50, "every frame and audio packet");
        assert_eq!(s.bytes(), 0);
        let dir = tmp.path().join("prebuf/ns/cam");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "files deleted");
        s.append(&gop(0, 2)).unwrap();
        drop(s);
        assert!(!dir.exists(), "the directory goes with the store");
    }

    #[test]
    fn a_truncated_chunk_returns_what_it_holds_and_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let cam = CameraId::new("ns", "cam").unwrap();
        let mut s = SpillStore::new(tmp.path(), &cam);
        s.append(&gop(0, 5)).unwrap();
        s.append(&gop(90_000, 5)).unwrap();
        let path = s.chunks[0].path.clone();
        let len = fs::metadata(&path).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 10)
            .unwrap();
        let (items, err) = s.take_from(0);
        assert!(err.is_some());
        assert_eq!(video_ts(&items), vec![0, 90_000]);
    }
}
