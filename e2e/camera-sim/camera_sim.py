#!/usr/bin/python3
"""Vigil camera simulator: IP cameras on GStreamer's RTSP server.

Run with Debian's /usr/bin/python3 (it has the `gi` bindings). Standard
library + gi only. See README.md in this directory for the full interface.

Per camera:
  rtsp://HOST:PORT/<name>/live       shared live stream (H.264/H.265 [+AAC])
  rtsp://HOST:PORT/<name>/replay     ONVIF Profile G replay of the SD card
                                     (Require: onvif-replay, Range: clock=...,
                                     Rate-Control: no, RTP ext 0xABAC)
  rtsp://HOST:PORT/<name>/playback?starttime=YYYYMMDDTHHMMSSZ&endtime=...
                                     Hikvision-style playback in real time
Control API (HTTP/JSON) on --control-port, ONVIF SOAP under /onvif/.
"""

import argparse
import base64
import ctypes
import datetime
import hashlib
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import xml.etree.ElementTree as ET

import gi

gi.require_version('Gst', '1.0')
gi.require_version('GstApp', '1.0')
gi.require_version('GstVideo', '1.0')
gi.require_version('GstRtsp', '1.0')
gi.require_version('GstRtspServer', '1.0')
from gi.repository import GLib, Gst, GstApp, GstRtsp, GstRtspServer, GstVideo  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from font5x7 import TextRenderer  # noqa: E402

# --------------------------------------------------------------------------
# time helpers

NTP_UNIX_OFFSET_S = 2208988800            # seconds from 1900-01-01 to 1970-01-01
NTP_UNIX_OFFSET_NS = NTP_UNIX_OFFSET_S * 1_000_000_000
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
CLOCK_NONE = Gst.CLOCK_TIME_NONE
U64_MAX = 18446744073709551615


def now_ms():
    return time.time_ns() // 1_000_000


def iso_ms(ms):
    """UTC ISO-8601 with milliseconds, e.g. 2026-01-02T03:04:05.678Z."""
    if ms is None:
        return None
    dt = EPOCH + datetime.timedelta(milliseconds=int(ms))
    return dt.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (int(ms) % 1000)


def iso_s(ms):
    """xs:dateTime without fraction when it is zero (ONVIF style)."""
    if ms % 1000 == 0:
        return (EPOCH + datetime.timedelta(milliseconds=int(ms))).strftime('%Y-%m-%dT%H:%M:%SZ')
    return iso_ms(ms)


_TIME_FORMATS = (
    '%Y%m%dT%H%M%SZ', '%Y%m%dT%H%M%S', '%Y%m%dT%H%M%S.%fZ',
    '%Y-%m-%dT%H:%M:%SZ', '%Y-%m-%dT%H:%M:%S.%fZ', '%Y-%m-%dT%H:%M:%S',
    '%Y-%m-%dT%H:%M:%S.%f', '%Y_%m_%d_%H_%M_%S', '%Y-%m-%d %H:%M:%S',
)


def parse_utc_ms(text):
    """Parses the time formats cameras use in playback URLs; returns UTC ms."""
    text = (text or '').strip()
    if re.fullmatch(r'\d{12,14}', text):       # raw epoch milliseconds
        return int(text)
    t = text.replace('+00:00', 'Z')
    for fmt in _TIME_FORMATS:
        try:
            dt = datetime.datetime.strptime(t, fmt)
        except ValueError:
            continue
        dt = dt.replace(tzinfo=datetime.timezone.utc)
        return (dt - EPOCH) // datetime.timedelta(milliseconds=1)
    raise ValueError('unrecognised time %r' % text)


def log(msg):
    sys.stderr.write('%s camera-sim: %s\n' % (iso_ms(now_ms()), msg))
    sys.stderr.flush()


def run_on_main(func, timeout=10.0):
    """Runs func() on the GLib main loop and returns its result."""
    box = {}
    done = threading.Event()

    def call():
        try:
            box['result'] = func()
        except Exception as e:  # noqa: BLE001
            box['error'] = e
            traceback.print_exc()
        done.set()
        return False

    GLib.idle_add(call)
    if not done.wait(timeout):
        raise TimeoutError('main loop did not respond')
    if 'error' in box:
        raise box['error']
    return box.get('result')


def link_many(*els):
    for a, b in zip(els, els[1:]):
        if not a.link(b):
            raise RuntimeError('cannot link %s to %s' % (a.get_name(), b.get_name()))


def make(factory, name=None, **props):
    el = Gst.ElementFactory.make(factory, name)
    if el is None:
        raise RuntimeError('GStreamer element %r is not available' % factory)
    for k, v in props.items():
        el.set_property(k.replace('_', '-'), v)
    return el


# --------------------------------------------------------------------------
# camera configuration

class CameraConfig:
    KEYS = ('name', 'codec', 'bitrate', 'fps', 'width', 'height', 'gop', 'audio',
            'user', 'password', 'pattern', 'speed')

    def __init__(self, spec):
        opts = {}
        for part in spec.split(','):
            part = part.strip()
            if not part:
                continue
            k, sep, v = part.partition('=')
            if not sep:
                raise ValueError('camera option %r is not key=value' % part)
            k = k.strip().lower()
            if k not in self.KEYS:
                raise ValueError('unknown camera option %r (known: %s)' % (k, ', '.join(self.KEYS)))
            opts[k] = v.strip()
        self.name = opts.get('name', '')
        if not re.fullmatch(r'[A-Za-z0-9_.-]{1,64}', self.name):
            raise ValueError('camera needs name=[A-Za-z0-9_.-]+, got %r' % self.name)
        self.codec = opts.get('codec', 'h264').lower()
        if self.codec in ('h.264', 'avc'):
            self.codec = 'h264'
        if self.codec in ('h.265', 'hevc'):
            self.codec = 'h265'
        if self.codec not in ('h264', 'h265'):
            raise ValueError('codec must be h264 or h265')
        self.bitrate = int(opts.get('bitrate', 4000 if self.codec == 'h264' else 2000))
        self.fps = int(opts.get('fps', 25))
        self.width = int(opts.get('width', 1280))
        self.height = int(opts.get('height', 720))
        self.gop = int(opts.get('gop', self.fps))
        self.audio = opts.get('audio', 'none').lower()
        if self.audio in ('', 'off', 'no', 'false', '0'):
            self.audio = 'none'
        if self.audio not in ('none', 'aac'):
            raise ValueError('audio must be aac or none')
        self.user = opts.get('user') or None
        self.password = opts.get('password') or None
        if (self.user is None) != (self.password is None):
            raise ValueError('camera %s: give both user= and password=' % self.name)
        self.pattern = opts.get('pattern', 'smpte')
        self.speed = int(opts.get('speed', 0))       # videotestsrc horizontal-speed
        if not (1 <= self.fps <= 120 and 16 <= self.width <= 7680 and 16 <= self.height <= 4320
                and self.gop >= 1 and 16 <= self.bitrate <= 100000):
            raise ValueError('camera %s: fps/size/gop/bitrate out of range' % self.name)
        if self.width % 2 or self.height % 2:
            raise ValueError('camera %s: width and height must be even' % self.name)

    @property
    def frame_ns(self):
        return 1_000_000_000 // self.fps


# --------------------------------------------------------------------------
# MPEG-TS demuxing (SD card files) in pure Python

TS_VIDEO_TYPES = {0x1B: 'h264', 0x24: 'h265'}
TS_AUDIO_TYPES = {0x0F: 'aac'}


def _pes_header(buf, p, end):
    """Returns (pts, dts, payload_offset) of a PES packet starting at p."""
    if end - p < 9 or buf[p] != 0 or buf[p + 1] != 0 or buf[p + 2] != 1:
        return None, None, None
    flags = buf[p + 7]
    hlen = buf[p + 8]
    pts = dts = None
    if flags & 0x80 and end - p >= 14:
        pts = (((buf[p + 9] >> 1) & 7) << 30) | (buf[p + 10] << 22) | ((buf[p + 11] >> 1) << 15) \
            | (buf[p + 12] << 7) | (buf[p + 13] >> 1)
        dts = pts
        if flags & 0x40 and end - p >= 19:
            dts = (((buf[p + 14] >> 1) & 7) << 30) | (buf[p + 15] << 22) | ((buf[p + 16] >> 1) << 15) \
                | (buf[p + 17] << 7) | (buf[p + 18] >> 1)
    return pts, dts, p + 9 + hlen


def demux_ts(data):
    """Splits an MPEG-TS byte string into PES packets.

    Returns (streams, packets): streams maps pid -> 'h264'|'h265'|'aac',
    packets is a list of (pid, pts90k, payload bytes) in file order.
    """
    buf = memoryview(data)
    n = len(data)
    pos = data.find(b'\x47')
    pmt_pid = None
    streams = {}
    cur = {}          # pid -> [pts, [chunks]]
    packets = []

    def flush(pid):
        st = cur.pop(pid, None)
        if st and st[1]:
            packets.append((pid, st[0], b''.join(st[1])))

    while 0 <= pos <= n - 188:
        if data[pos] != 0x47:
            pos = data.find(b'\x47', pos + 1)
            continue
        b1 = data[pos + 1]
        pid = ((b1 & 0x1F) << 8) | data[pos + 2]
        pusi = b1 & 0x40
        afc = (data[pos + 3] >> 4) & 3
        p = pos + 4
        end = pos + 188
        if afc & 2:
            p += 1 + data[p]
        if afc & 1 and p < end:
            if pid in streams:
                if pusi:
                    flush(pid)
                    pts, _dts, off = _pes_header(data, p, end)
                    if off is not None and off <= end:
                        cur[pid] = [pts, [buf[off:end]]]
                elif pid in cur:
                    cur[pid][1].append(buf[p:end])
            elif pid == 0 and pusi:
                sec = p + 1 + data[p]
                slen = ((data[sec + 1] & 0x0F) << 8) | data[sec + 2]
                q = sec + 8
                stop = min(sec + 3 + slen - 4, end)
                while q + 4 <= stop:
                    prog = (data[q] << 8) | data[q + 1]
                    ppid = ((data[q + 2] & 0x1F) << 8) | data[q + 3]
                    if prog != 0:
                        pmt_pid = ppid
                        break
                    q += 4
            elif pid == pmt_pid and pusi:
                sec = p + 1 + data[p]
                slen = ((data[sec + 1] & 0x0F) << 8) | data[sec + 2]
                pilen = ((data[sec + 10] & 0x0F) << 8) | data[sec + 11]
                q = sec + 12 + pilen
                stop = min(sec + 3 + slen - 4, end)
                while q + 5 <= stop:
                    stype = data[q]
                    epid = ((data[q + 1] & 0x1F) << 8) | data[q + 2]
                    eslen = ((data[q + 3] & 0x0F) << 8) | data[q + 4]
                    kind = TS_VIDEO_TYPES.get(stype) or TS_AUDIO_TYPES.get(stype)
                    if kind:
                        streams[epid] = kind
                    q += 5 + eslen
        pos += 188
    for pid in list(cur):
        flush(pid)
    return streams, packets


def is_keyframe(codec, au):
    """True when the Annex-B access unit holds an IDR/IRAP picture."""
    i = 0
    n = len(au)
    for _ in range(64):                  # bounded: AUD/VPS/SPS/PPS/SEI come first
        j = au.find(b'\x00\x00\x01', i)
        if j < 0 or j + 3 >= n:
            return False
        h = au[j + 3]
        if codec == 'h264':
            t = h & 0x1F
            if 1 <= t <= 5:
                return t == 5
        else:
            t = (h >> 1) & 0x3F
            if t <= 31:
                return 16 <= t <= 21
        i = j + 3
    return False


def ts_delta_ns(pts, ref):
    d = (pts - ref) % (1 << 33)
    if d >= (1 << 32):
        d -= 1 << 33
    return d * 100000 // 9        # 90 kHz ticks -> ns


# --------------------------------------------------------------------------
# SD card

SD_NAME = re.compile(r'^(\d{10,16})(?:-(\d{10,16}))?\.ts$')


class SdStore:
    """Chunks of one camera's encoded stream, named <startMs>-<endMs>.ts.

    The chunk being written is named <startMs>.ts; it is renamed when
    splitmuxsink closes it (its end is the next chunk's first frame).
    """

    def __init__(self, root, cam, minutes):
        self.cam = cam
        self.dir = os.path.join(root, cam.cfg.name)
        self.minutes = minutes
        os.makedirs(self.dir, exist_ok=True)
        self.lock = threading.Lock()
        self.current = None            # (start_ms, path) being written
        self.closing_final = False
        self._recover_leftovers()

    def _recover_leftovers(self):
        """Gives chunks left open by an earlier (killed) run their end time."""
        for fn in os.listdir(self.dir):
            m = SD_NAME.match(fn)
            if not m or m.group(2):
                continue
            path = os.path.join(self.dir, fn)
            try:
                with open(path, 'rb') as f:
                    data = f.read()
                streams, packets = demux_ts(data)
                vpid = next((p for p, k in streams.items() if k in TS_VIDEO_TYPES.values()), None)
                pts = [p[1] for p in packets if p[0] == vpid and p[1] is not None]
                if len(pts) < 2:
                    os.unlink(path)
                    continue
                dur = ts_delta_ns(pts[-1], pts[0]) + self.cam.cfg.frame_ns
                start = int(m.group(1))
                os.rename(path, os.path.join(self.dir, '%d-%d.ts' % (start, start + dur // 1_000_000)))
                log('%s: recovered unfinished SD chunk %s' % (self.cam.cfg.name, fn))
            except OSError as e:
                log('%s: cannot recover %s: %s' % (self.cam.cfg.name, fn, e))

    def location_for(self, start_ms):
        path = os.path.join(self.dir, '%d.ts' % start_ms)
        with self.lock:
            self.current = (start_ms, path)
        return path

    def fragment_closed(self, location, end_ms):
        m = SD_NAME.match(os.path.basename(location))
        if not m or m.group(2):
            return
        start = int(m.group(1))
        end_ms = max(end_ms, start + 1)
        final = os.path.join(self.dir, '%d-%d.ts' % (start, end_ms))
        try:
            os.rename(location, final)
        except OSError as e:
            log('%s: rename %s failed: %s' % (self.cam.cfg.name, location, e))
        with self.lock:
            if self.current and self.current[1] == location:
                self.current = None

    def entries(self):
        """Sorted list of dicts: start_ms, end_ms, path, recording, bytes."""
        out = []
        try:
            names = os.listdir(self.dir)
        except OSError:
            return out
        with self.lock:
            cur = self.current
        for fn in names:
            m = SD_NAME.match(fn)
            if not m:
                continue
            path = os.path.join(self.dir, fn)
            start = int(m.group(1))
            recording = m.group(2) is None
            if recording:
                if not cur or cur[1] != path:
                    continue      # leftover being recovered or stale
                end = self.cam.last_frame_end_ms() or start
            else:
                end = int(m.group(2))
            try:
                size = os.path.getsize(path)
            except OSError:
                continue
            out.append({'start_ms': start, 'end_ms': end, 'path': path,
                        'recording': recording, 'bytes': size})
        out.sort(key=lambda e: e['start_ms'])
        return out

    def prune(self):
        limit = now_ms() - self.minutes * 60_000
        for e in self.entries():
            if not e['recording'] and e['end_ms'] < limit:
                try:
                    os.unlink(e['path'])
                except OSError:
                    pass
        self._prune_events(limit)

    # ---- event log: the alarms the camera raised, kept on the card like its footage (what
    # ONVIF Profile G FindEvents searches). One JSON line per state change, appended and
    # fsynced; a torn last line (a kill mid-write) is skipped when read.
    EVENT_LOG = 'events.jsonl'

    def log_event(self, topic, source, state, ms):
        line = json.dumps({'time_ms': ms, 'topic': topic, 'source': source, 'state': bool(state)})
        with self.lock:
            with open(os.path.join(self.dir, self.EVENT_LOG), 'a') as f:
                f.write(line + '\n')
                f.flush()
                os.fsync(f.fileno())

    def logged_events(self):
        """The logged state changes, oldest first."""
        out = []
        try:
            with self.lock, open(os.path.join(self.dir, self.EVENT_LOG)) as f:
                lines = f.readlines()
        except OSError:
            return out
        for line in lines:
            try:
                e = json.loads(line)
                out.append({'time_ms': int(e['time_ms']), 'topic': str(e['topic']),
                            'source': str(e['source']), 'state': bool(e['state'])})
            except (ValueError, KeyError, TypeError):
                continue
        out.sort(key=lambda e: e['time_ms'])
        return out

    def _prune_events(self, limit):
        """Drops changes older than the footage kept, but keeps the last one of each
        (topic, source) before the limit: it is the state in force when the footage starts."""
        evs = self.logged_events()
        old = [e for e in evs if e['time_ms'] < limit]
        if not old:
            return
        last = {}
        for e in old:
            last[(e['topic'], e['source'])] = e
        keep = sorted(last.values(), key=lambda e: e['time_ms']) + [e for e in evs if e['time_ms'] >= limit]
        if len(keep) == len(evs):
            return
        path = os.path.join(self.dir, self.EVENT_LOG)
        with self.lock:
            with open(path + '.tmp', 'w') as f:
                f.writelines(json.dumps(e) + '\n' for e in keep)
                f.flush()
                os.fsync(f.fileno())
            os.replace(path + '.tmp', path)

    def summary(self):
        es = self.entries()
        if not es:
            return {'files': 0, 'earliest': None, 'latest': None}
        return {'files': len(es), 'earliest_ms': es[0]['start_ms'], 'latest_ms': es[-1]['end_ms'],
                'earliest': iso_ms(es[0]['start_ms']), 'latest': iso_ms(es[-1]['end_ms']),
                'bytes': sum(e['bytes'] for e in es)}


class SdReader:
    """Reads access units of one stream from the SD chunks, in time order."""

    def __init__(self, store, kind, codec):
        self.store = store
        self.kind = kind          # 'video' | 'audio'
        self.codec = codec
        self.units = []           # (utc_ns, data, key)
        self.pos = 0
        self.file_start = None    # start_ms of the loaded chunk
        self.file_recording = False
        self.last_utc = None

    def _load(self, entry):
        path = entry['path']
        data = None
        for _ in range(3):        # the chunk may get renamed under us
            try:
                with open(path, 'rb') as f:
                    data = f.read()
                break
            except FileNotFoundError:
                match = [e for e in self.store.entries() if e['start_ms'] == entry['start_ms']]
                if not match:
                    break
                path = match[0]['path']
                entry = match[0]
        self.file_start = entry['start_ms']
        self.file_recording = entry['recording']
        self.units = []
        self.pos = 0
        if data is None:
            return
        streams, packets = demux_ts(data)
        vpid = next((p for p, k in streams.items() if k in ('h264', 'h265')), None)
        apid = next((p for p, k in streams.items() if k == 'aac'), None)
        ref = next((p[1] for p in packets if p[0] == vpid and p[1] is not None), None)
        if ref is None:
            return
        want = vpid if self.kind == 'video' else apid
        base = entry['start_ms'] * 1_000_000
        for pid, pts, payload in packets:
            if pid != want or pts is None:
                continue
            key = True if self.kind == 'audio' else is_keyframe(self.codec, payload)
            self.units.append((base + ts_delta_ns(pts, ref), payload, key))
        if self.kind == 'video':
            # the last AU of a chunk still being written may be incomplete
            if entry['recording'] and self.units:
                self.units.pop()

    def seek(self, utc_ns):
        """Positions on the last keyframe at or before utc_ns (or the first
        frame after it when utc_ns falls in a gap). Returns its time or None."""
        entries = self.store.entries()
        if not entries:
            self.units, self.pos, self.file_start = [], 0, None
            return None
        t_ms = utc_ns // 1_000_000
        idx = None
        for i, e in enumerate(entries):
            if e['start_ms'] <= t_ms < e['end_ms'] or e['start_ms'] > t_ms:
                idx = i
                break
        if idx is None:            # after the newest footage
            self.units, self.pos, self.file_start = [], 0, None
            return None
        for e in entries[idx:]:
            if self.file_start != e['start_ms'] or e['recording'] or self.file_recording:
                self._load(e)
            else:
                self.pos = 0
            if not self.units:
                continue
            best = 0
            for i, (u, _d, k) in enumerate(self.units):
                if u > utc_ns:
                    break
                if k:
                    best = i
            self.pos = best
            self.last_utc = None
            return self.units[best][0]
        self.units, self.pos, self.file_start = [], 0, None
        return None

    def next(self):
        """Returns the next (utc_ns, data, key) or None at the end of footage."""
        for _ in range(10000):
            if self.pos < len(self.units):
                u = self.units[self.pos]
                self.pos += 1
                self.last_utc = u[0]
                return u
            if self.file_start is None:
                return None
            entries = self.store.entries()
            if self.file_recording:
                again = [e for e in entries if e['start_ms'] == self.file_start]
                if again:
                    last = self.last_utc
                    self._load(again[0])
                    self.units = [u for u in self.units if last is None or u[0] > last]
                    if self.units:
                        continue
                    if again[0]['recording']:
                        return None       # caught up with the recorder
            nxt = [e for e in entries if e['start_ms'] > self.file_start]
            if not nxt:
                return None
            self._load(nxt[0])
        return None


# --------------------------------------------------------------------------
# camera: encoder, live fan-out, SD recording

class LiveSink:
    """One RTSP live media (shared by its clients) fed from the encoder."""

    def __init__(self, media, vsrc, asrc):
        self.media = media
        self.vsrc = vsrc
        self.asrc = asrc
        self.started = False      # first keyframe pushed
        self.dead = False


class Camera:
    def __init__(self, cfg, sim):
        self.cfg = cfg
        self.sim = sim
        self.lock = threading.Lock()
        self.sinks = []
        self.video_caps = None
        self.audio_caps = None
        self.frames_encoded = 0
        self.last_running = None          # running time of the last encoded frame
        self.state = 'up'
        self.down_scope = None
        self.events = []
        self.motion = False               # ONVIF tns1:VideoSource/MotionAlarm state
        self.input = False                # ONVIF tns1:Device/Trigger/DigitalInput (token DI0)
        self.started_at_ms = None
        self.utc0_ns = None               # UTC at encoder running time 0
        self.enc_base = None
        self.renderer = TextRenderer(scale=max(2, cfg.height // 180))
        self.sd = SdStore(sim.args.sd_dir, self, sim.args.sd_minutes) if sim.args.sd_dir else None
        self.pipeline = None
        self.factories = {}
        # --frame-log: one line per frame that left the encoder, "<count> <utc ms>", where the
        # UTC ms is the time burnt into that frame; line-buffered so a reader sees it at once.
        self.frame_log = None
        if sim.args.frame_log:
            os.makedirs(sim.args.frame_log, exist_ok=True)
            self.frame_log = open(os.path.join(sim.args.frame_log, cfg.name + '.frames'), 'a',
                                  buffering=1)

    # ---- events
    def add_event(self, kind, **extra):
        ms = now_ms()
        ev = {'type': kind, 'time': iso_ms(ms), 'time_ms': ms}
        ev.update(extra)
        with self.lock:
            self.events.append(ev)
        log('%s: %s at %s %s' % (self.cfg.name, kind, ev['time'], json.dumps(extra) if extra else ''))
        return ev

    # ---- time
    def _calibrate(self):
        clock = self.pipeline.get_clock()
        if clock is None:
            return False
        base = self.pipeline.get_base_time()
        running = clock.get_time() - base
        self.utc0_ns = time.time_ns() - running
        self.enc_base = base
        return True

    def running_to_utc_ns(self, running):
        if self.utc0_ns is None:
            self._calibrate()
        return (self.utc0_ns or 0) + running

    def last_frame_end_ms(self):
        if self.last_running is None or self.utc0_ns is None:
            return None
        return (self.utc0_ns + self.last_running + self.cfg.frame_ns) // 1_000_000

    # ---- pipeline
    def build(self):
        c = self.cfg
        p = Gst.Pipeline.new('enc-' + c.name)
        src = make('videotestsrc', is_live=True)
        src.set_property('pattern', c.pattern)
        if c.speed:
            src.set_property('horizontal-speed', c.speed)
        rawcaps = make('capsfilter', caps=Gst.Caps.from_string(
            'video/x-raw,format=I420,width=%d,height=%d,framerate=%d/1,pixel-aspect-ratio=1/1'
            % (c.width, c.height, c.fps)))
        ov = make('overlaycomposition')
        ov.connect('draw', self._on_draw)
        if c.codec == 'h264':
            enc = make('x264enc', bitrate=c.bitrate, key_int_max=c.gop, bframes=0, b_adapt=False)
            enc.set_property('speed-preset', 'ultrafast')
            enc.set_property('tune', 'zerolatency')
            # fixed GOP (no scene-cut keyframes) and CABAC, i.e. Main profile like
            # most cameras; ultrafast alone would give Constrained Baseline
            enc.set_property('option-string', 'scenecut=0:cabac=1')
            enccaps = 'video/x-h264,profile=main,stream-format=byte-stream'
            parse = make('h264parse', config_interval=-1)
            outcaps = 'video/x-h264,stream-format=byte-stream,alignment=au'
        else:
            enc = make('x265enc', bitrate=c.bitrate, key_int_max=c.gop)
            enc.set_property('speed-preset', 'ultrafast')
            enc.set_property('tune', 'zerolatency')
            enc.set_property('option-string', 'bframes=0:scenecut=0:open-gop=0:min-keyint=%d' % c.gop)
            enccaps = 'video/x-h265,profile=main,stream-format=byte-stream'
            parse = make('h265parse', config_interval=-1)
            outcaps = 'video/x-h265,stream-format=byte-stream,alignment=au'
        ecf = make('capsfilter', caps=Gst.Caps.from_string(enccaps))
        ocf = make('capsfilter', caps=Gst.Caps.from_string(outcaps))
        tee = make('tee', 'vtee')
        q_live = make('queue', max_size_buffers=0, max_size_bytes=0, max_size_time=2 * Gst.SECOND)
        q_live.set_property('leaky', 'downstream')
        vsink = make('appsink', 'vlive', emit_signals=True, sync=False, max_buffers=50, drop=True)
        vsink.set_property('async', False)
        vsink.connect('new-sample', self._on_video_sample)
        for el in (src, rawcaps, ov, enc, ecf, parse, ocf, tee, q_live, vsink):
            p.add(el)
        link_many(src, rawcaps, ov, enc, ecf, parse, ocf, tee)
        link_many(q_live, vsink)
        tee.request_pad_simple('src_%u').link(q_live.get_static_pad('sink'))

        smux = None
        if self.sd:
            smux = make('splitmuxsink', 'sd', max_size_time=self.sim.args.sd_chunk_seconds * Gst.SECOND,
                        muxer=make('mpegtsmux'), send_keyframe_requests=False)
            smux.connect('format-location-full', self._on_sd_location)
            q_sd = make('queue', max_size_buffers=0, max_size_bytes=0, max_size_time=10 * Gst.SECOND)
            p.add(q_sd)
            p.add(smux)
            tee.request_pad_simple('src_%u').link(q_sd.get_static_pad('sink'))
            q_sd.get_static_pad('src').link(smux.request_pad_simple('video'))

        if c.audio == 'aac':
            asrc = make('audiotestsrc', is_live=True, samplesperbuffer=1024, volume=0.3)
            asrc.set_property('wave', 'sine')
            acaps = make('capsfilter', caps=Gst.Caps.from_string(
                'audio/x-raw,format=S16LE,rate=48000,channels=1,layout=interleaved'))
            aconv = make('audioconvert')
            aenc = make('avenc_aac', bitrate=64000)
            aparse = make('aacparse')
            atee = make('tee', 'atee')
            qa = make('queue', max_size_buffers=0, max_size_bytes=0, max_size_time=2 * Gst.SECOND)
            qa.set_property('leaky', 'downstream')
            asink = make('appsink', 'alive', emit_signals=True, sync=False, max_buffers=100, drop=True)
            asink.set_property('async', False)
            asink.connect('new-sample', self._on_audio_sample)
            for el in (asrc, acaps, aconv, aenc, aparse, atee, qa, asink):
                p.add(el)
            link_many(asrc, acaps, aconv, aenc, aparse, atee)
            link_many(qa, asink)
            atee.request_pad_simple('src_%u').link(qa.get_static_pad('sink'))
            if smux:
                qsa = make('queue', max_size_buffers=0, max_size_bytes=0, max_size_time=10 * Gst.SECOND)
                p.add(qsa)
                atee.request_pad_simple('src_%u').link(qsa.get_static_pad('sink'))
                qsa.get_static_pad('src').link(smux.request_pad_simple('audio_%u'))

        bus = p.get_bus()
        bus.add_signal_watch()
        bus.connect('message', self._on_bus)
        self.pipeline = p
        self.smux = smux

    def start(self):
        ret = self.pipeline.set_state(Gst.State.PLAYING)
        if ret == Gst.StateChangeReturn.FAILURE:
            raise RuntimeError('camera %s: encoder pipeline failed to start' % self.cfg.name)
        self.started_at_ms = now_ms()
        self.add_event('start')

    def stop(self, timeout_s=3.0):
        """EOS so the SD chunk is finalised, then NULL."""
        p = self.pipeline
        if p is None:
            return
        if self.sd:
            self.sd.closing_final = True
        p.send_event(Gst.Event.new_eos())
        bus = p.get_bus()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = bus.timed_pop_filtered(100 * Gst.MSECOND,
                                       Gst.MessageType.EOS | Gst.MessageType.ERROR | Gst.MessageType.ELEMENT)
            if m is None:
                continue
            if m.type == Gst.MessageType.ELEMENT:
                self._on_element_message(m)
                continue
            break
        bus.remove_signal_watch()
        p.set_state(Gst.State.NULL)
        self.pipeline = None

    def _on_bus(self, bus, msg):
        t = msg.type
        if t == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            log('%s: encoder error: %s (%s)' % (self.cfg.name, err.message, dbg))
        elif t == Gst.MessageType.WARNING:
            err, dbg = msg.parse_warning()
            log('%s: encoder warning: %s' % (self.cfg.name, err.message))
        elif t == Gst.MessageType.ELEMENT:
            self._on_element_message(msg)
        return True

    def _on_element_message(self, msg):
        s = msg.get_structure()
        if s is None or s.get_name() != 'splitmuxsink-fragment-closed' or not self.sd:
            return
        loc = s.get_string('location')
        ok, running = s.get_uint64('running-time')
        if not ok:
            return
        end_ns = self.running_to_utc_ns(running)
        if self.sd.closing_final:
            end_ns += self.cfg.frame_ns       # EOS: running-time is the last frame's start
        self.sd.fragment_closed(loc, end_ns // 1_000_000)

    # ---- streaming-thread callbacks
    def _on_draw(self, ov, sample):
        buf = sample.get_buffer()
        seg = sample.get_segment()
        running = seg.to_running_time(Gst.Format.TIME, buf.pts)
        utc_ms = self.running_to_utc_ns(running) // 1_000_000
        text = '%s %s #%d' % (self.cfg.name, iso_ms(utc_ms), self.frames_encoded)
        data, w, h = self.renderer.render(text)
        b = Gst.Buffer.new_wrapped(data)
        GstVideo.buffer_add_video_meta(b, GstVideo.VideoFrameFlags.NONE, GstVideo.VideoFormat.BGRA, w, h)
        x = 8 * self.renderer.scale
        rect = GstVideo.VideoOverlayRectangle.new_raw(b, x, x, min(w, self.cfg.width - x), h,
                                                      GstVideo.VideoOverlayFormatFlags.NONE)
        return GstVideo.VideoOverlayComposition.new(rect)

    def _on_sd_location(self, smux, fragment_id, sample):
        buf = sample.get_buffer()
        seg = sample.get_segment()
        running = seg.to_running_time(Gst.Format.TIME, buf.pts)
        start_ms = self.running_to_utc_ns(running) // 1_000_000
        return self.sd.location_for(start_ms)

    def _on_video_sample(self, appsink):
        sample = appsink.emit('pull-sample')
        if sample is None:
            return Gst.FlowReturn.EOS
        buf = sample.get_buffer()
        running = sample.get_segment().to_running_time(Gst.Format.TIME, buf.pts)
        self.frames_encoded += 1
        self.last_running = running
        if self.video_caps is None:
            self.video_caps = sample.get_caps()
        if self.enc_base is None:
            self._calibrate()
        if self.frame_log is not None:
            utc_ms = self.running_to_utc_ns(running) // 1_000_000
            self.frame_log.write('%d %d\n' % (self.frames_encoded, utc_ms))
        with self.lock:
            sinks = list(self.sinks)
        if not sinks:
            return Gst.FlowReturn.OK
        key = not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)
        for s in sinks:
            if not s.started and not key:
                continue
            if self._push(s, s.vsrc, buf, running, self.video_caps):
                s.started = True
        return Gst.FlowReturn.OK

    def _on_audio_sample(self, appsink):
        sample = appsink.emit('pull-sample')
        if sample is None:
            return Gst.FlowReturn.EOS
        buf = sample.get_buffer()
        running = sample.get_segment().to_running_time(Gst.Format.TIME, buf.pts)
        if self.audio_caps is None:
            self.audio_caps = sample.get_caps()
        with self.lock:
            sinks = list(self.sinks)
        for s in sinks:
            if s.started and s.asrc is not None:
                self._push(s, s.asrc, buf, running, self.audio_caps)
        return Gst.FlowReturn.OK

    def _push(self, s, appsrc, buf, running, caps):
        if s.dead or self.enc_base is None or running is None or running == CLOCK_NONE:
            return False
        if appsrc.get_clock() is None:        # media not PLAYING yet
            return False
        pts = running + self.enc_base - appsrc.get_base_time()
        if pts < 0:
            return False
        if appsrc.get_property('caps') is None and caps is not None:
            appsrc.set_property('caps', caps)
        nb = buf.copy_region(Gst.BufferCopyFlags.FLAGS | Gst.BufferCopyFlags.TIMESTAMPS
                             | Gst.BufferCopyFlags.META | Gst.BufferCopyFlags.MEMORY, 0, U64_MAX)
        nb.pts = pts
        nb.dts = pts
        ret = appsrc.emit('push-buffer', nb)
        if ret not in (Gst.FlowReturn.OK,):
            if ret in (Gst.FlowReturn.EOS, Gst.FlowReturn.NOT_LINKED):
                s.dead = True
            return False
        return True

    # ---- live media attach/detach (main loop)
    def attach(self, media):
        el = media.get_element()
        vsrc = el.get_by_name('vsrc')
        asrc = el.get_by_name('asrc')
        for a, caps in ((vsrc, self.video_caps), (asrc, self.audio_caps)):
            if a is None:
                continue
            a.set_property('is-live', True)
            a.set_property('format', Gst.Format.TIME)
            a.set_property('do-timestamp', False)
            a.set_property('block', False)
            a.set_property('max-bytes', 0)
            a.set_property('max-buffers', 200)
            a.set_property('leaky-type', GstApp.AppLeakyType.DOWNSTREAM)
            if caps is not None:
                a.set_property('caps', caps)
        sink = LiveSink(media, vsrc, asrc)
        with self.lock:
            self.sinks.append(sink)
        media.connect('unprepared', self._on_media_unprepared)

    def _on_media_unprepared(self, media):
        with self.lock:
            self.sinks = [s for s in self.sinks if s.media is not media]

    def detach_all(self):
        with self.lock:
            for s in self.sinks:
                s.dead = True
            self.sinks = []

    def info(self):
        c = self.cfg
        sim = self.sim
        host = sim.url_host
        d = {
            'name': c.name, 'codec': c.codec, 'state': self.state,
            'frames_encoded': self.frames_encoded,
            'started_at': iso_ms(self.started_at_ms), 'started_at_ms': self.started_at_ms,
            'width': c.width, 'height': c.height, 'fps': c.fps, 'bitrate_kbps': c.bitrate,
            'gop': c.gop, 'audio': c.audio, 'auth': c.user is not None,
            'live_medias': len(self.sinks), 'motion': self.motion, 'input': self.input,
            'rtsp_clients': self.sim.client_count(c.name),
            'urls': {
                'live': 'rtsp://%s:%d/%s/live' % (host, sim.rtsp_port, c.name),
                'replay': 'rtsp://%s:%d/%s/replay' % (host, sim.rtsp_port, c.name),
                'playback_template': 'rtsp://%s:%d/%s/playback?starttime={start}&endtime={end}'
                                     % (host, sim.rtsp_port, c.name),
                'onvif_device_service': 'http://%s:%d/onvif/device_service' % (host, sim.control_port),
            },
        }
        if self.state == 'down':
            d['down_scope'] = self.down_scope
        if self.sd:
            d['sd'] = self.sd.summary()
        return d


# --------------------------------------------------------------------------
# replay / playback sources

class ReplayFeeder:
    """Feeds one appsrc from the SD card; handles seeks.

    mode 'onvif':    pipeline time = UTC as ns since 1900 (what gst-rtsp-server
                     makes of `Range: clock=`), rtponviftimestamp ntp-offset=0
    mode 'playback': pipeline time = UTC - window start (plain RTSP, npt)
    """

    def __init__(self, cam, appsrc, kind, mode, start_ns=None, end_ns=None):
        self.cam = cam
        self.appsrc = appsrc
        self.kind = kind
        self.mode = mode
        self.window_start = start_ns
        self.window_end = end_ns
        self.reader = SdReader(cam.sd, kind, cam.cfg.codec)
        self.stop_utc = end_ns
        self.seg_start_utc = None
        self.reseeking = False
        self.frame_ns = cam.cfg.frame_ns if kind == 'video' else 1024 * 1_000_000_000 // 48000
        self.pushed = 0
        appsrc.set_property('format', Gst.Format.TIME)
        appsrc.set_property('is-live', False)
        appsrc.set_property('stream-type', GstApp.AppStreamType.SEEKABLE)
        appsrc.set_property('max-bytes', 0)
        appsrc.set_property('block', False)
        if kind == 'video':
            caps = 'video/x-%s,stream-format=byte-stream,alignment=au' % cam.cfg.codec
        else:
            caps = 'audio/mpeg,mpegversion=4,stream-format=adts'
        appsrc.set_property('caps', Gst.Caps.from_string(caps))
        appsrc.connect('need-data', self._on_need_data)
        appsrc.connect('seek-data', self._on_seek_data)
        appsrc.get_static_pad('src').add_probe(Gst.PadProbeType.EVENT_UPSTREAM, self._on_upstream)
        # initial position: window start, or the oldest footage for ONVIF
        if start_ns is not None:
            self.seg_start_utc = start_ns
            self.reader.seek(start_ns)
        else:
            es = cam.sd.entries()
            if es:
                self.reader.seek(es[0]['start_ms'] * 1_000_000)

    def to_pipe(self, utc_ns):
        if self.mode == 'onvif':
            return utc_ns + NTP_UNIX_OFFSET_NS
        return max(0, utc_ns - self.window_start)

    def to_utc(self, pipe_ns):
        if self.mode == 'onvif':
            return pipe_ns - NTP_UNIX_OFFSET_NS
        return pipe_ns + self.window_start

    def _on_upstream(self, pad, info):
        ev = info.get_event()
        if ev is None or ev.type != Gst.EventType.SEEK or self.reseeking:
            return Gst.PadProbeReturn.OK
        rate, fmt, flags, st_type, start, sp_type, stop = ev.parse_seek()
        if fmt != Gst.Format.TIME:
            return Gst.PadProbeReturn.OK
        if sp_type == Gst.SeekType.SET and stop not in (CLOCK_NONE, -1):
            stop_utc = self.to_utc(stop)
            if self.window_end is not None:
                stop_utc = min(stop_utc, self.window_end)
            self.stop_utc = stop_utc
        else:
            self.stop_utc = self.window_end
        if self.kind != 'video' or st_type != Gst.SeekType.SET or start in (CLOCK_NONE, -1) or rate < 0:
            return Gst.PadProbeReturn.OK
        want = self.to_utc(start)
        if self.window_start is not None:
            want = max(want, self.window_start)
        k = self.reader.seek(want)
        log('%s: %s seek to %s (keyframe %s, stop %s)' % (
            self.cam.cfg.name, self.mode, iso_ms(want // 1_000_000),
            iso_ms(k // 1_000_000) if k else None,
            iso_ms(self.stop_utc // 1_000_000) if self.stop_utc else None))
        if k is None or k == want or (self.stop_utc is not None and k >= self.stop_utc):
            return Gst.PadProbeReturn.OK
        # start on the keyframe before the requested time (as cameras do), or
        # on the first footage after it when the start falls into a gap
        new = Gst.Event.new_seek(rate, fmt, flags, Gst.SeekType.SET, self.to_pipe(k), sp_type, stop)
        new.set_seqnum(ev.get_seqnum())
        self.reseeking = True
        try:
            pad.send_event(new)
        finally:
            self.reseeking = False
        return Gst.PadProbeReturn.DROP

    def _on_seek_data(self, appsrc, offset):
        utc = self.to_utc(offset)
        k = self.reader.seek(utc)
        # A stream that goes EOS right after a seek without a single buffer
        # makes gst-rtsp-server 1.22 abort (g_assert in
        # gst_rtsp_media_get_rates: no segment on the stream). So refuse
        # seeks into windows without footage: the seek fails and the client
        # gets an error for its PLAY (457 Invalid Range) instead.
        stop = self.stop_utc
        first = None if k is None else max(k, utc)
        if first is None or (stop is not None and stop - first < self.frame_ns):
            log('%s: %s %s seek to %s: no footage before %s, refused' % (
                self.cam.cfg.name, self.mode, self.kind, iso_ms(utc // 1_000_000),
                iso_ms(stop // 1_000_000) if stop else 'the end'))
            return False
        self.seg_start_utc = utc
        return True

    def _on_need_data(self, appsrc, length):
        for _ in range(100000):
            u = self.reader.next()
            if u is None or (self.stop_utc is not None and u[0] >= self.stop_utc):
                appsrc.emit('end-of-stream')
                return
            utc, data, key = u
            if self.seg_start_utc is not None and utc < self.seg_start_utc:
                continue             # audio before the (keyframe) start
            b = Gst.Buffer.new_wrapped(data)
            b.pts = self.to_pipe(utc)
            b.dts = b.pts
            b.duration = self.frame_ns
            if not key:
                b.set_flags(Gst.BufferFlags.DELTA_UNIT)
            if self.pushed == 0:
                b.set_flags(Gst.BufferFlags.DISCONT)
            self.pushed += 1
            appsrc.emit('push-buffer', b)
            return
        appsrc.emit('end-of-stream')


def _payloader_bin(name, codec, onvif):
    """( [q] parse ! pay [! rtponviftimestamp] ) as a bin named pay%d."""
    b = Gst.Bin.new(name)
    if codec in ('h264', 'h265'):
        parse = make('%sparse' % codec, config_interval=-1)
        # the parser repeats SPS/PPS(/VPS) before every IDR; the payloader must
        # not add a second copy (ffmpeg would then see two frames per IDR)
        pay = make('rtp%spay' % codec, pt=96)
    else:
        parse = make('aacparse')
        pay = make('rtpmp4gpay', pt=97)
    els = [parse, pay]
    if onvif:
        ts = make('rtponviftimestamp', set_e_bit=True, set_t_bit=True, ntp_offset=0,
                  drop_out_of_segment=False)
        els.append(ts)
    for e in els:
        b.add(e)
    link_many(*els)
    b.add_pad(Gst.GhostPad.new('sink', els[0].get_static_pad('sink')))
    b.add_pad(Gst.GhostPad.new('src', els[-1].get_static_pad('src')))
    return b


def build_replay_element(cam, mode, start_ns=None, end_ns=None):
    if start_ns is not None:
        # like a camera, start on the keyframe at/before the requested start
        # (or on the first footage after it); npt 0 is that frame
        k = SdReader(cam.sd, 'video', cam.cfg.codec).seek(start_ns)
        if k is None or (end_ns is not None and k >= end_ns):
            log('%s: no footage in the requested window' % cam.cfg.name)
            return None
        start_ns = k
    top = Gst.Bin.new(None)
    kinds = [('video', cam.cfg.codec)]
    if cam.cfg.audio == 'aac':
        kinds.append(('audio', 'aac'))
    feeders = []
    for i, (kind, codec) in enumerate(kinds):
        src = make('appsrc', 'src%d' % i)
        pay = _payloader_bin('pay%d' % i, codec, mode == 'onvif')
        top.add(src)
        top.add(pay)
        src.link(pay)
        feeders.append(ReplayFeeder(cam, src, kind, mode, start_ns, end_ns))
    top._feeders = feeders           # keep the Python side alive with the bin
    return top


class ReplayFactory(GstRtspServer.RTSPOnvifMediaFactory):
    """ONVIF replay of a camera's SD card (one media per client)."""

    def __init__(self, cam):
        super().__init__()
        self.cam = cam
        self.set_media_gtype(GstRtspServer.RTSPOnvifMedia.__gtype__)
        self.set_replay_support(True)
        self.set_shared(False)

    def do_create_element(self, url):
        try:
            if not self.cam.sd or not self.cam.sd.entries():
                log('%s: replay requested but the SD card is empty' % self.cam.cfg.name)
                return None
            return build_replay_element(self.cam, 'onvif')
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            return None


class PlaybackFactory(GstRtspServer.RTSPMediaFactory):
    """Hikvision/Dahua-style ...?starttime=..&endtime=.. playback, real time."""

    def __init__(self, cam):
        super().__init__()
        self.cam = cam
        self.set_shared(False)

    def do_create_element(self, url):
        try:
            q = urllib.parse.parse_qs(url.query or '')
            start = q.get('starttime') or q.get('start') or q.get('StartTime')
            end = q.get('endtime') or q.get('end') or q.get('EndTime')
            if not start or not self.cam.sd:
                log('%s: playback without starttime or SD card' % self.cam.cfg.name)
                return None
            s_ms = parse_utc_ms(start[0].split('/')[0])
            e_ms = parse_utc_ms(end[0].split('/')[0]) if end else now_ms()
            if e_ms <= s_ms:
                return None
            log('%s: playback %s .. %s' % (self.cam.cfg.name, iso_ms(s_ms), iso_ms(e_ms)))
            return build_replay_element(self.cam, 'playback', s_ms * 1_000_000, e_ms * 1_000_000)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            return None


# --------------------------------------------------------------------------
# ONVIF SOAP (Profile G subset)

NS = {
    's': 'http://www.w3.org/2003/05/soap-envelope',
    'wsse': 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd',
    'wsu': 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd',
    'tds': 'http://www.onvif.org/ver10/device/wsdl',
    'tse': 'http://www.onvif.org/ver10/search/wsdl',
    'trp': 'http://www.onvif.org/ver10/replay/wsdl',
    'trc': 'http://www.onvif.org/ver10/recording/wsdl',
    'tt': 'http://www.onvif.org/ver10/schema',
    'ter': 'http://www.onvif.org/ver10/error',
    'tev': 'http://www.onvif.org/ver10/events/wsdl',
    'wsnt': 'http://docs.oasis-open.org/wsn/b-2',
    'wsa5': 'http://www.w3.org/2005/08/addressing',
    'tns1': 'http://www.onvif.org/ver10/topics',
}
XMLNS = ' '.join('xmlns:%s="%s"' % kv for kv in NS.items())


def _x(s):
    return (str(s).replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')
            .replace('"', '&quot;'))


def soap_envelope(body):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<s:Envelope %s><s:Body>%s</s:Body></s:Envelope>'
            % (XMLNS, body))


def soap_fault(code, subcode, reason):
    return soap_envelope(
        '<s:Fault><s:Code><s:Value>s:%s</s:Value><s:Subcode><s:Value>%s</s:Value></s:Subcode></s:Code>'
        '<s:Reason><s:Text xml:lang="en">%s</s:Text></s:Reason></s:Fault>' % (code, subcode, _x(reason)))


class SoapError(Exception):
    def __init__(self, status, code, subcode, reason):
        super().__init__(reason)
        self.status, self.code, self.subcode, self.reason = status, code, subcode, reason


class Onvif:
    SERVICES = {
        'device_service': 'http://www.onvif.org/ver10/device/wsdl',
        'recording_service': 'http://www.onvif.org/ver10/recording/wsdl',
        'search_service': 'http://www.onvif.org/ver10/search/wsdl',
        'replay_service': 'http://www.onvif.org/ver10/replay/wsdl',
        'event_service': 'http://www.onvif.org/ver10/events/wsdl',
    }
    MOTION_TOPIC = 'tns1:VideoSource/MotionAlarm'
    INPUT_TOPIC = 'tns1:Device/Trigger/DigitalInput'
    MAX_QUEUED = 100          # per subscription: the oldest go first
    MAX_SUBSCRIPTIONS = 64    # oldest evicted
    MAX_PULL_TIMEOUT_S = 30

    def __init__(self, sim):
        self.sim = sim
        self.searches = {}
        self.lock = threading.Lock()
        # PullPoint subscriptions: id -> {'cams': [names], 'queue': [...], 'expires_ms': int}
        self.subs = {}
        self.subs_cond = threading.Condition()
        self.subs_created = 0

    # ---- auth
    def _credentials(self, root):
        tok = root.find('.//wsse:Security/wsse:UsernameToken', NS)
        if tok is None:
            return None
        user = (tok.findtext('wsse:Username', default='', namespaces=NS) or '').strip()
        pw_el = tok.find('wsse:Password', NS)
        nonce = (tok.findtext('wsse:Nonce', default='', namespaces=NS) or '').strip()
        created = (tok.findtext('wsu:Created', default='', namespaces=NS) or '').strip()
        pw = pw_el.text.strip() if pw_el is not None and pw_el.text else ''
        ptype = pw_el.get('Type', '') if pw_el is not None else ''
        return {'user': user, 'password': pw, 'digest': not ptype.endswith('#PasswordText'),
                'nonce': nonce, 'created': created}

    @staticmethod
    def _check(creds, cam):
        """True when creds authenticate for cam (cameras without a user are open)."""
        c = cam.cfg
        if c.user is None:
            return True
        if not creds or creds['user'] != c.user:
            return False
        if not creds['digest']:
            return secrets.compare_digest(creds['password'], c.password)
        try:
            nonce = base64.b64decode(creds['nonce'])
        except ValueError:
            return False
        want = base64.b64encode(hashlib.sha1(nonce + creds['created'].encode() + c.password.encode())
                                .digest()).decode()
        return secrets.compare_digest(want, creds['password'])

    def _visible(self, creds, only=None):
        cams = [c for c in self.sim.cameras.values() if only is None or c.cfg.name == only]
        return [c for c in cams if self._check(creds, c)]

    def _camera(self, token, creds, only):
        cam = self.sim.cameras.get(token)
        if cam is None or (only is not None and token != only):
            raise SoapError(400, 'Sender', 'ter:InvalidArgVal',
                            'no such recording token %r' % token)
        if not self._check(creds, cam):
            raise SoapError(401, 'Sender', 'ter:NotAuthorized', 'not authorized for %s' % token)
        return cam

    # ---- dispatch
    def handle(self, service, body, host_header, only=None, http_user=None, scheme='http', sub=None):
        try:
            root = ET.fromstring(body)
        except ET.ParseError as e:
            return 400, soap_fault('Sender', 'ter:WellFormed', 'bad XML: %s' % e)
        b = root.find('s:Body', NS)
        if b is None:
            b = root.find('{http://schemas.xmlsoap.org/soap/envelope/}Body')
        if b is None or len(b) == 0:
            return 400, soap_fault('Sender', 'ter:WellFormed', 'no SOAP body')
        req = b[0]
        op = req.tag.split('}')[-1]
        if (sub is None) != (op not in ('PullMessages', 'Renew', 'Unsubscribe')):
            return 400, soap_fault('Sender', 'ter:ActionNotSupported',
                                   'operation %s not supported at this address' % op)
        if sub is not None:
            req.set('{vigil}sub', sub)
        creds = self._credentials(root)
        if http_user is not None:       # HTTP Digest already proved the password
            creds = {'user': http_user, 'password': self.sim.passwords[http_user], 'digest': False}
        prefix = '/onvif/' if only is None else '/onvif/%s/' % only
        port = self.sim.onvif_https_port if scheme == 'https' else self.sim.control_port
        base = '%s://%s%s' % (scheme, host_header or '%s:%d' % (self.sim.url_host, port), prefix)
        try:
            fn = getattr(self, 'op_' + op, None)
            if fn is None:
                raise SoapError(400, 'Receiver', 'ter:ActionNotSupported', 'operation %s not supported' % op)
            return 200, soap_envelope(fn(req, creds, base, only))
        except SoapError as e:
            return e.status, soap_fault(e.code, e.subcode, e.reason)

    # ---- event service (PullPoint)
    @staticmethod
    def _duration_s(text, default):
        """xs:duration like PT60S / PT1M / PT1H30S (or an absolute time: seconds from now)."""
        text = (text or '').strip()
        if not text:
            return default
        m = re.fullmatch(r'P(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)', text)
        if m and any(m.groups()):
            h, mi, se = m.groups()
            return int(h or 0) * 3600 + int(mi or 0) * 60 + float(se or 0)
        ms = parse_utc_ms(text)
        if ms is not None:
            return max(0.0, (ms - now_ms()) / 1000.0)
        raise SoapError(400, 'Sender', 'ter:InvalidArgVal', 'bad duration %r' % text)

    def _notification(self, cam_name, state, ms, op='Changed', topic=None):
        # Motion: source = the video source, data "State"; a digital input (as cameras with
        # alarm inputs send it): source = the input token, data "LogicalState".
        if topic == self.INPUT_TOPIC:
            source, item = ('InputToken', 'DI0'), 'LogicalState'
        else:
            topic, source, item = self.MOTION_TOPIC, ('VideoSourceConfigurationToken', cam_name), 'State'
        return ('<wsnt:NotificationMessage><wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/'
                'topicExpression/ConcreteSet">%s</wsnt:Topic><wsnt:Message>'
                '<tt:Message UtcTime="%s" PropertyOperation="%s"><tt:Source>'
                '<tt:SimpleItem Name="%s" Value="%s"/></tt:Source>'
                '<tt:Data><tt:SimpleItem Name="%s" Value="%s"/></tt:Data></tt:Message>'
                '</wsnt:Message></wsnt:NotificationMessage>'
                % (topic, iso_ms(ms), op, source[0], _x(source[1]), item, 'true' if state else 'false'))

    def motion_changed(self, cam, state, ms, topic=None):
        """Queues the change on every live subscription that covers the camera."""
        with self.subs_cond:
            for sub in self.subs.values():
                if cam.cfg.name in sub['cams']:
                    sub['queue'].append(self._notification(cam.cfg.name, state, ms, topic=topic))
                    del sub['queue'][:-self.MAX_QUEUED]
            self.subs_cond.notify_all()

    def _expire(self):
        now = now_ms()
        for k in [k for k, v in self.subs.items() if v['expires_ms'] <= now]:
            del self.subs[k]

    def subscription_count(self):
        with self.subs_cond:
            self._expire()
            return len(self.subs)

    def _sub(self, req, creds):
        sid = req.get('{vigil}sub')
        with self.subs_cond:
            self._expire()
            sub = self.subs.get(sid)
        if sub is None:
            raise SoapError(400, 'Sender', 'wsrf-rw:ResourceUnknownFault',
                            'no such subscription (expired, unsubscribed or the camera restarted)')
        for name in sub['cams']:
            cam = self.sim.cameras.get(name)
            if cam is not None and not self._check(creds, cam):
                raise SoapError(401, 'Sender', 'ter:NotAuthorized', 'not authorized')
        return sid, sub

    def op_GetEventProperties(self, req, creds, base, only):
        return ('<tev:GetEventPropertiesResponse><tev:TopicNamespaceLocation>'
                'http://www.onvif.org/onvif/ver10/topics/topicns.xml</tev:TopicNamespaceLocation>'
                '<wsnt:FixedTopicSet>true</wsnt:FixedTopicSet><wstop:TopicSet '
                'xmlns:wstop="http://docs.oasis-open.org/wsn/t-1"><tns1:VideoSource><MotionAlarm '
                'wstop:topic="true"/></tns1:VideoSource></wstop:TopicSet></tev:GetEventPropertiesResponse>')

    def op_CreatePullPointSubscription(self, req, creds, base, only):
        if only is not None:
            cams = [self._camera(only, creds, only)]
        else:
            cams = self._visible(creds)
            if not cams:
                raise SoapError(401, 'Sender', 'ter:NotAuthorized', 'not authorized for any camera')
        ttl = self._duration_s(req.findtext('tev:InitialTerminationTime', default='', namespaces=NS), 60)
        ttl = min(max(ttl, 1), 3600)
        now = now_ms()
        with self.subs_cond:
            self._expire()
            while len(self.subs) >= self.MAX_SUBSCRIPTIONS:
                oldest = min(self.subs, key=lambda k: self.subs[k]['created_ms'])
                del self.subs[oldest]
            sid = secrets.token_hex(8)
            # As cameras do, the current state first ("Initialized").
            queue = [self._notification(c.cfg.name, c.motion, now, 'Initialized') for c in cams]
            queue += [self._notification(c.cfg.name, c.input, now, 'Initialized', self.INPUT_TOPIC)
                      for c in cams]
            self.subs[sid] = {'cams': [c.cfg.name for c in cams], 'queue': queue,
                              'expires_ms': now + int(ttl * 1000), 'created_ms': now}
            self.subs_created += 1
        log('ONVIF PullPoint subscription %s for %s (%d s)' % (sid, ','.join(c.cfg.name for c in cams), ttl))
        return ('<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference>'
                '<wsa5:Address>%ssubscription/%s</wsa5:Address></tev:SubscriptionReference>'
                '<wsnt:CurrentTime>%s</wsnt:CurrentTime><wsnt:TerminationTime>%s</wsnt:TerminationTime>'
                '</tev:CreatePullPointSubscriptionResponse>'
                % (_x(base), sid, iso_s(now), iso_s(now + int(ttl * 1000))))

    def op_PullMessages(self, req, creds, base, only):
        sid, sub = self._sub(req, creds)
        timeout = min(self._duration_s(req.findtext('tev:Timeout', default='', namespaces=NS), 10),
                      self.MAX_PULL_TIMEOUT_S)
        try:
            limit = max(1, min(int(req.findtext('tev:MessageLimit', default='100', namespaces=NS)), 1000))
        except ValueError:
            raise SoapError(400, 'Sender', 'ter:InvalidArgVal', 'bad MessageLimit') from None
        deadline = time.monotonic() + timeout
        with self.subs_cond:
            while not sub['queue'] and self.subs.get(sid) is sub:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.subs_cond.wait(left)
            msgs, sub['queue'][:limit] = sub['queue'][:limit], []
            expires = sub['expires_ms']
        now = now_ms()
        return ('<tev:PullMessagesResponse><tev:CurrentTime>%s</tev:CurrentTime>'
                '<tev:TerminationTime>%s</tev:TerminationTime>%s</tev:PullMessagesResponse>'
                % (iso_s(now), iso_s(expires), ''.join(msgs)))

    def op_Renew(self, req, creds, base, only):
        sid, sub = self._sub(req, creds)
        ttl = min(max(self._duration_s(req.findtext('wsnt:TerminationTime', default='', namespaces=NS), 60), 1), 3600)
        now = now_ms()
        with self.subs_cond:
            sub['expires_ms'] = now + int(ttl * 1000)
        return ('<wsnt:RenewResponse><wsnt:TerminationTime>%s</wsnt:TerminationTime>'
                '<wsnt:CurrentTime>%s</wsnt:CurrentTime></wsnt:RenewResponse>'
                % (iso_s(sub['expires_ms']), iso_s(now)))

    def op_Unsubscribe(self, req, creds, base, only):
        sid, _sub = self._sub(req, creds)
        with self.subs_cond:
            self.subs.pop(sid, None)
            self.subs_cond.notify_all()
        return '<wsnt:UnsubscribeResponse/>'

    # ---- device service
    def op_GetSystemDateAndTime(self, req, creds, base, only):
        n = datetime.datetime.now(datetime.timezone.utc)
        return ('<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>'
                '<tt:DateTimeType>NTP</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>'
                '<tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone><tt:UTCDateTime>'
                '<tt:Time><tt:Hour>%d</tt:Hour><tt:Minute>%d</tt:Minute><tt:Second>%d</tt:Second></tt:Time>'
                '<tt:Date><tt:Year>%d</tt:Year><tt:Month>%d</tt:Month><tt:Day>%d</tt:Day></tt:Date>'
                '</tt:UTCDateTime></tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>'
                % (n.hour, n.minute, n.second, n.year, n.month, n.day))

    def op_GetDeviceInformation(self, req, creds, base, only):
        return ('<tds:GetDeviceInformationResponse><tds:Manufacturer>Vigil</tds:Manufacturer>'
                '<tds:Model>camera-sim</tds:Model><tds:FirmwareVersion>1.0</tds:FirmwareVersion>'
                '<tds:SerialNumber>%s</tds:SerialNumber><tds:HardwareId>gst-rtsp-server</tds:HardwareId>'
                '</tds:GetDeviceInformationResponse>' % _x(only or 'camera-sim'))

    def op_GetServices(self, req, creds, base, only):
        out = []
        for svc, ns in self.SERVICES.items():
            out.append('<tds:Service><tds:Namespace>%s</tds:Namespace><tds:XAddr>%s%s</tds:XAddr>'
                       '<tds:Version><tt:Major>%d</tt:Major><tt:Minor>%d</tt:Minor></tds:Version></tds:Service>'
                       % (ns, base, svc, 2 if svc == 'device_service' else 1, 0))
        return '<tds:GetServicesResponse>%s</tds:GetServicesResponse>' % ''.join(out)

    def op_GetCapabilities(self, req, creds, base, only):
        return ('<tds:GetCapabilitiesResponse><tds:Capabilities>'
                '<tt:Device><tt:XAddr>{b}device_service</tt:XAddr></tt:Device>'
                '<tt:Events><tt:XAddr>{b}event_service</tt:XAddr><tt:WSSubscriptionPolicySupport>false'
                '</tt:WSSubscriptionPolicySupport><tt:WSPullPointSupport>true</tt:WSPullPointSupport>'
                '<tt:WSPausableSubscriptionManagerInterfaceSupport>false'
                '</tt:WSPausableSubscriptionManagerInterfaceSupport></tt:Events>'
                '<tt:Extension>'
                '<tt:Recording><tt:XAddr>{b}recording_service</tt:XAddr><tt:ReceiverSource>false</tt:ReceiverSource>'
                '<tt:MediaProfileSource>false</tt:MediaProfileSource><tt:DynamicRecordings>false</tt:DynamicRecordings>'
                '<tt:DynamicTracks>false</tt:DynamicTracks><tt:MaxStringLength>64</tt:MaxStringLength></tt:Recording>'
                '<tt:Search><tt:XAddr>{b}search_service</tt:XAddr><tt:MetadataSearch>false</tt:MetadataSearch></tt:Search>'
                '<tt:Replay><tt:XAddr>{b}replay_service</tt:XAddr></tt:Replay>'
                '</tt:Extension></tds:Capabilities></tds:GetCapabilitiesResponse>').format(b=base)

    # ---- recording information
    def _recording_info(self, cam):
        s = cam.sd.summary() if cam.sd else {'files': 0}
        earliest = iso_s(s['earliest_ms']) if s.get('earliest_ms') is not None else None
        latest = iso_s(s['latest_ms']) if s.get('latest_ms') is not None else None
        enc = 'H264' if cam.cfg.codec == 'h264' else 'H265'
        times = ''
        if earliest:
            times = ('<tt:EarliestRecording>%s</tt:EarliestRecording><tt:LatestRecording>%s</tt:LatestRecording>'
                     % (earliest, latest))
        tracks = ('<tt:Track><tt:TrackToken>VIDEO001</tt:TrackToken><tt:TrackType>Video</tt:TrackType>'
                  '<tt:Description>%s video</tt:Description>%s</tt:Track>'
                  % (enc, times.replace('EarliestRecording', 'DataFrom').replace('LatestRecording', 'DataTo')))
        if cam.cfg.audio == 'aac':
            tracks += ('<tt:Track><tt:TrackToken>AUDIO001</tt:TrackToken><tt:TrackType>Audio</tt:TrackType>'
                       '<tt:Description>AAC audio</tt:Description>%s</tt:Track>'
                       % times.replace('EarliestRecording', 'DataFrom').replace('LatestRecording', 'DataTo'))
        return ('<tt:RecordingToken>{n}</tt:RecordingToken>'
                '<tt:Source><tt:SourceId>{n}</tt:SourceId><tt:Name>{n}</tt:Name><tt:Location>camera-sim</tt:Location>'
                '<tt:Description>Vigil simulated camera {n}</tt:Description><tt:Address>{u}</tt:Address></tt:Source>'
                '{t}<tt:Content>SD card of {n}</tt:Content>{tr}'
                '<tt:RecordingStatus>{st}</tt:RecordingStatus>').format(
                    n=_x(cam.cfg.name), u=_x(cam.info()['urls']['live']), t=times, tr=tracks,
                    st='Recording' if cam.sd else 'Stopped')

    def op_FindRecordings(self, req, creds, base, only):
        tokens = [t.text.strip() for t in req.findall('.//tse:Scope/tt:IncludedRecordings', NS) if t.text]
        srcs = [t.text.strip() for t in req.findall('.//tse:Scope/tt:IncludedSources/tt:Token', NS) if t.text]
        maxm = req.findtext('tse:MaxMatches', default='', namespaces=NS)
        cams = [c for c in self._visible(creds, only) if c.sd]
        if tokens:
            cams = [c for c in cams if c.cfg.name in tokens]
        if srcs:
            cams = [c for c in cams if c.cfg.name in srcs]
        if maxm.strip().isdigit():
            cams = cams[:int(maxm)]
        tok = 'search-' + secrets.token_hex(6)
        with self.lock:
            if len(self.searches) > 1000:
                self.searches.clear()
            self.searches[tok] = [c.cfg.name for c in cams]
        return '<tse:FindRecordingsResponse><tse:SearchToken>%s</tse:SearchToken></tse:FindRecordingsResponse>' % tok

    def op_GetRecordingSearchResults(self, req, creds, base, only):
        tok = (req.findtext('tse:SearchToken', default='', namespaces=NS) or '').strip()
        with self.lock:
            names = self.searches.get(tok)
        if not isinstance(names, list):
            raise SoapError(400, 'Sender', 'ter:InvalidArgVal', 'unknown search token')
        infos = []
        for n in names:
            cam = self.sim.cameras.get(n)
            if cam and self._check(creds, cam):
                infos.append('<tt:RecordingInformation>%s</tt:RecordingInformation>' % self._recording_info(cam))
        return ('<tse:GetRecordingSearchResultsResponse><tse:ResultList><tt:SearchState>Completed</tt:SearchState>'
                '%s</tse:ResultList></tse:GetRecordingSearchResultsResponse>' % ''.join(infos))

    MAX_EVENT_RESULTS = 10_000

    def _event_holder(self, topic, source, state, ms, op):
        """wsnt:NotificationMessageHolderType content (Topic + Message), as in a PullPoint
        notification: motion from the video source, a digital input from its token."""
        if topic == self.INPUT_TOPIC:
            src, item = 'InputToken', 'LogicalState'
        else:
            src, item = 'VideoSourceConfigurationToken', 'State'
        return ('<wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">%s'
                '</wsnt:Topic><wsnt:Message><tt:Message UtcTime="%s" PropertyOperation="%s"><tt:Source>'
                '<tt:SimpleItem Name="%s" Value="%s"/></tt:Source><tt:Data><tt:SimpleItem Name="%s" '
                'Value="%s"/></tt:Data></tt:Message></wsnt:Message>'
                % (topic, iso_ms(ms), op, src, _x(source), item, 'true' if state else 'false'))

    def op_FindEvents(self, req, creds, base, only):
        """Profile G event search over the SD card's event log: the state changes of the
        scope's recordings in [StartPoint, EndPoint] (reverse order when EndPoint is before
        StartPoint), optionally preceded by the state in force at StartPoint
        (IncludeStartState) and filtered by topic (a TopicExpression naming one)."""
        if self.sim.args.no_find_events:
            raise SoapError(400, 'Receiver', 'ter:ActionNotSupported', 'FindEvents is not supported')
        def when(name):
            text = (req.findtext('tse:' + name, default='', namespaces=NS) or '').strip()
            if not text:
                return None
            try:
                return parse_utc_ms(text)
            except ValueError:
                raise SoapError(400, 'Sender', 'ter:InvalidArgVal', 'bad %s %r' % (name, text)) from None
        start, end = when('StartPoint'), when('EndPoint')
        if start is None:
            raise SoapError(400, 'Sender', 'ter:InvalidArgVal', 'StartPoint is required')
        tokens = [t.text.strip() for t in req.findall('.//tse:Scope/tt:IncludedRecordings', NS) if t.text]
        topics = [t.text.strip() for t in req.findall('.//tse:SearchFilter//wsnt:TopicExpression', NS)
                  if t.text and t.text.strip()]
        start_state = (req.findtext('tse:IncludeStartState', default='false', namespaces=NS)
                       or '').strip() in ('true', '1')
        maxm = (req.findtext('tse:MaxMatches', default='', namespaces=NS) or '').strip()
        cams = [c for c in self._visible(creds, only) if c.sd]
        if tokens:
            cams = [c for c in cams if c.cfg.name in tokens]
        lo, hi = (start, end) if end is None or end >= start else (end, start)
        results = []
        for cam in cams:
            evs = [e for e in cam.sd.logged_events() if not topics or e['topic'] in topics]
            if start_state:
                state = {}
                for e in evs:
                    if e['time_ms'] < lo:
                        state[(e['topic'], e['source'])] = e['state']
                for (topic, source), on in sorted(state.items()):
                    results.append((lo, cam.cfg.name, topic, source, on, True))
            for e in evs:
                if lo <= e['time_ms'] and (hi is None or e['time_ms'] <= hi):
                    results.append((e['time_ms'], cam.cfg.name, e['topic'], e['source'], e['state'], False))
        results.sort(key=lambda r: (r[0], not r[5]), reverse=end is not None and end < start)
        limit = self.MAX_EVENT_RESULTS
        if maxm.isdigit():
            limit = min(limit, int(maxm))
        results = results[:limit]
        tok = 'events-' + secrets.token_hex(6)
        with self.lock:
            if len(self.searches) > 1000:
                self.searches.clear()
            self.searches[tok] = {'events': results}
        return '<tse:FindEventsResponse><tse:SearchToken>%s</tse:SearchToken></tse:FindEventsResponse>' % tok

    def op_GetEventSearchResults(self, req, creds, base, only):
        """Hands out the search's results in pages of MaxResults (default 100): SearchState
        Searching while more remain, then Completed."""
        tok = (req.findtext('tse:SearchToken', default='', namespaces=NS) or '').strip()
        maxr = (req.findtext('tse:MaxResults', default='', namespaces=NS) or '').strip()
        page = max(1, min(int(maxr), 1000)) if maxr.isdigit() else 100
        with self.lock:
            search = self.searches.get(tok)
            if not isinstance(search, dict):
                raise SoapError(400, 'Sender', 'ter:InvalidToken', 'unknown search token')
            batch, search['events'] = search['events'][:page], search['events'][page:]
            more = bool(search['events'])
        out = []
        for (ms, rec, topic, source, on, initial) in batch:
            out.append('<tt:Result><tt:RecordingToken>%s</tt:RecordingToken><tt:TrackToken>VIDEO001'
                       '</tt:TrackToken><tt:Time>%s</tt:Time><tt:Event>%s</tt:Event>'
                       '<tt:StartStateEvent>%s</tt:StartStateEvent></tt:Result>'
                       % (_x(rec), iso_ms(ms),
                          self._event_holder(topic, source, on, ms, 'Initialized' if initial else 'Changed'),
                          'true' if initial else 'false'))
        return ('<tse:GetEventSearchResultsResponse><tse:ResultList><tt:SearchState>%s</tt:SearchState>'
                '%s</tse:ResultList></tse:GetEventSearchResultsResponse>'
                % ('Searching' if more else 'Completed', ''.join(out)))

    def op_EndSearch(self, req, creds, base, only):
        tok = (req.findtext('tse:SearchToken', default='', namespaces=NS) or '').strip()
        with self.lock:
            self.searches.pop(tok, None)
        return '<tse:EndSearchResponse><tse:Endpoint>%s</tse:Endpoint></tse:EndSearchResponse>' % iso_s(now_ms())

    def op_GetRecordingInformation(self, req, creds, base, only):
        tok = (req.findtext('tse:RecordingToken', default='', namespaces=NS) or '').strip()
        cam = self._camera(tok, creds, only)
        return ('<tse:GetRecordingInformationResponse><tse:RecordingInformation>%s</tse:RecordingInformation>'
                '</tse:GetRecordingInformationResponse>' % self._recording_info(cam))

    def op_GetRecordingSummary(self, req, creds, base, only):
        cams = [c for c in self._visible(creds, only) if c.sd]
        sums = [c.sd.summary() for c in cams]
        sums = [s for s in sums if s.get('earliest_ms') is not None]
        if sums:
            dfrom = iso_s(min(s['earliest_ms'] for s in sums))
            duntil = iso_s(max(s['latest_ms'] for s in sums))
        else:
            dfrom = duntil = iso_s(now_ms())
        return ('<tse:GetRecordingSummaryResponse><tse:Summary><tt:DataFrom>%s</tt:DataFrom>'
                '<tt:DataUntil>%s</tt:DataUntil><tt:NumberRecordings>%d</tt:NumberRecordings>'
                '</tse:Summary></tse:GetRecordingSummaryResponse>' % (dfrom, duntil, len(cams)))

    def op_GetServiceCapabilities(self, req, creds, base, only):
        ns = req.tag.split('}')[0].lstrip('{')
        pfx = {v: k for k, v in NS.items()}.get(ns, 'tds')
        if pfx == 'trp':
            inner = '<trp:Capabilities ReversePlayback="false" SessionTimeoutRange="60 60" RTP_RTSP_TCP="true"/>'
        elif pfx == 'tse':
            inner = '<tse:Capabilities MetadataSearch="false" GeneralStartEvents="false"/>'
        else:
            inner = '<%s:Capabilities/>' % pfx
        return '<%s:GetServiceCapabilitiesResponse>%s</%s:GetServiceCapabilitiesResponse>' % (pfx, inner, pfx)

    # ---- replay service
    def op_GetReplayUri(self, req, creds, base, only):
        tok = (req.findtext('trp:RecordingToken', default='', namespaces=NS) or '').strip()
        cam = self._camera(tok, creds, only)
        return ('<trp:GetReplayUriResponse><trp:Uri>%s</trp:Uri></trp:GetReplayUriResponse>'
                % _x(cam.info()['urls']['replay']))

    def op_GetReplayConfiguration(self, req, creds, base, only):
        return ('<trp:GetReplayConfigurationResponse><trp:Configuration><tt:SessionTimeout>PT60S</tt:SessionTimeout>'
                '</trp:Configuration></trp:GetReplayConfigurationResponse>')

    # ---- recording service
    def op_GetRecordings(self, req, creds, base, only):
        items = []
        for cam in self._visible(creds, only):
            if not cam.sd:
                continue
            n = _x(cam.cfg.name)
            tracks = ('<tt:Track><tt:TrackToken>VIDEO001</tt:TrackToken><tt:Configuration>'
                      '<tt:TrackType>Video</tt:TrackType><tt:Description>video</tt:Description>'
                      '</tt:Configuration></tt:Track>')
            if cam.cfg.audio == 'aac':
                tracks += ('<tt:Track><tt:TrackToken>AUDIO001</tt:TrackToken><tt:Configuration>'
                           '<tt:TrackType>Audio</tt:TrackType><tt:Description>audio</tt:Description>'
                           '</tt:Configuration></tt:Track>')
            items.append(
                '<trc:RecordingItem><tt:RecordingToken>{n}</tt:RecordingToken><tt:Configuration>'
                '<tt:Source><tt:SourceId>{n}</tt:SourceId><tt:Name>{n}</tt:Name><tt:Location>camera-sim</tt:Location>'
                '<tt:Description>Vigil simulated camera</tt:Description><tt:Address>{u}</tt:Address></tt:Source>'
                '<tt:Content>SD card of {n}</tt:Content><tt:MaximumRetentionTime>PT{m}M</tt:MaximumRetentionTime>'
                '</tt:Configuration><tt:Tracks>{tr}</tt:Tracks></trc:RecordingItem>'.format(
                    n=n, u=_x(cam.info()['urls']['live']), m=self.sim.args.sd_minutes, tr=tracks))
        return '<trc:GetRecordingsResponse>%s</trc:GetRecordingsResponse>' % ''.join(items)


# --------------------------------------------------------------------------
# control HTTP API

# --------------------------------------------------------------------------
# Digest authentication with qop (RFC 7616 / RFC 2617), server side, for the
# --rtsp-auth digest-qop and --onvif-auth digest modes (gst-rtsp-server's own
# digest has no qop, cnonce or nc).

_DIGEST_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^,\s]*)')
_DIGEST_HASH = {'MD5': hashlib.md5, 'SHA-256': hashlib.sha256}


def digest_params(value):
    scheme, _, rest = value.strip().partition(' ')
    params = {}
    for m in _DIGEST_PARAM.finditer(rest):
        v = m.group(3) if m.group(3) is not None else m.group(2)
        params[m.group(1).lower()] = re.sub(r'\\(.)', r'\1', v)
    return scheme.lower(), params


class DigestServer:
    """Nonces issued, their nonce counts (nc must grow: a replayed Authorization is refused)
    and their expiry after `uses` requests (then the 401 says stale=true, as servers whose
    nonces time out do). Offers SHA-256 first, then MD5 (RFC 7616 §3.7 order of preference)."""

    def __init__(self, realm, uses=0, algorithms=('SHA-256', 'MD5')):
        self.realm, self.uses, self.algorithms = realm, uses, algorithms
        self.nonces = {}
        self.opaque = secrets.token_hex(8)
        self.lock = threading.Lock()
        self.stats = {'challenges': 0, 'stale': 0, 'ok': 0, 'refused': 0}

    def challenges(self, stale=False):
        nonce = secrets.token_hex(16)
        with self.lock:
            if len(self.nonces) > 10000:
                self.nonces.clear()
            self.nonces[nonce] = {'nc': 0, 'uses': 0}
            self.stats['stale' if stale else 'challenges'] += 1
        return ['Digest realm="%s", qop="auth", algorithm=%s, nonce="%s", opaque="%s"%s'
                % (self.realm, alg, nonce, self.opaque, ', stale=true' if stale else '')
                for alg in self.algorithms]

    def check(self, header, method, uri, passwords):
        """(user, stale): user when the Authorization is valid; stale when the response was
        right but the nonce is used up."""
        if not header:
            return None, False
        scheme, p = digest_params(header)
        user = p.get('username')
        alg = p.get('algorithm', 'MD5')
        if (scheme != 'digest' or user not in passwords or alg not in self.algorithms
                or p.get('qop') != 'auth' or not p.get('cnonce') or p.get('uri') != uri):
            self._count('refused')
            return None, False
        try:
            nc = int(p.get('nc', ''), 16)
        except ValueError:
            self._count('refused')
            return None, False
        h = lambda s: _DIGEST_HASH[alg](s.encode()).hexdigest()  # noqa: E731
        ha1 = h('%s:%s:%s' % (user, self.realm, passwords[user]))
        ha2 = h('%s:%s' % (method, uri))
        want = h('%s:%s:%08x:%s:auth:%s' % (ha1, p.get('nonce', ''), nc, p['cnonce'], ha2))
        if not secrets.compare_digest(want, p.get('response', '')):
            self._count('refused')
            return None, False
        with self.lock:
            st = self.nonces.get(p.get('nonce', ''))
            if st is None:              # not ours (or forgotten): a fresh nonce is all it needs
                self.stats['refused'] += 1
                return None, True
            if nc <= st['nc']:          # replayed
                self.stats['refused'] += 1
                return None, False
            if self.uses and st['uses'] >= self.uses:
                return None, True
            st['nc'], st['uses'] = nc, st['uses'] + 1
            self.stats['ok'] += 1
        return user, False

    def _count(self, k):
        with self.lock:
            self.stats[k] += 1


def _rtsp_split(buf):
    """(message, rest) from the front of buf, or None when incomplete. Interleaved '$'
    frames and header+Content-Length messages."""
    if not buf:
        return None
    if buf[:1] == b'$':
        if len(buf) < 4:
            return None
        n = 4 + int.from_bytes(buf[2:4], 'big')
        return (buf[:n], buf[n:]) if len(buf) >= n else None
    i = buf.find(b'\r\n\r\n')
    if i < 0:
        if len(buf) > 65536:
            raise ValueError('RTSP header too long')
        return None
    clen = 0
    for line in buf[:i].split(b'\r\n')[1:]:
        k, _, v = line.partition(b':')
        if k.strip().lower() == b'content-length':
            clen = int(v.strip() or 0)
    n = i + 4 + clen
    return (buf[:n], buf[n:]) if len(buf) >= n else None


class RtspDigestProxy:
    """The RTSP port in --rtsp-auth digest-qop mode: a TCP relay in front of the (then
    unauthenticated, loopback-only) gst-rtsp-server that demands Digest with qop=auth for
    cameras with user=/password=. RTSP over TCP (interleaved) only."""

    def __init__(self, sim, bind, port, backend_port):
        self.sim, self.backend_port = sim, backend_port
        self.digest = DigestServer('vigil-camera-sim RTSP', sim.args.digest_nonce_uses)
        self.sock = socket.create_server((bind, port), reuse_port=False)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, name='rtsp-digest-proxy', daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _camera(self, uri):
        parts = [p for p in urllib.parse.urlsplit(uri).path.split('/') if p]
        return self.sim.cameras.get(parts[0]) if parts else None

    def _serve(self, client):
        try:
            backend = socket.create_connection(('127.0.0.1', self.backend_port))
        except OSError:
            client.close()
            return
        out_lock = threading.Lock()

        def close():
            for s in (client, backend):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        def downstream():               # camera -> client, whole messages
            buf = b''
            try:
                while True:
                    data = backend.recv(65536)
                    if not data:
                        break
                    buf += data
                    while True:
                        m = _rtsp_split(buf)
                        if m is None:
                            break
                        msg, buf = m
                        with out_lock:
                            client.sendall(msg)
            except (OSError, ValueError):
                pass
            close()

        threading.Thread(target=downstream, daemon=True).start()
        buf = b''
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                buf += data
                while True:
                    m = _rtsp_split(buf)
                    if m is None:
                        break
                    msg, buf = m
                    if msg[:1] != b'$' and not self._allowed(msg, client, out_lock):
                        continue
                    backend.sendall(msg)
        except (OSError, ValueError):
            pass
        close()
        client.close()
        backend.close()

    def _allowed(self, msg, client, out_lock):
        head = msg.split(b'\r\n\r\n', 1)[0].decode('latin-1')
        lines = head.split('\r\n')
        parts = lines[0].split(' ')
        if len(parts) != 3:
            return True
        method, uri = parts[0], parts[1]
        hdrs = {}
        for l in lines[1:]:
            k, _, v = l.partition(':')
            hdrs.setdefault(k.strip().lower(), v.strip())
        cam = self._camera(uri)
        if cam is None or not cam.cfg.user:
            return True
        user, stale = self.digest.check(hdrs.get('authorization'), method, uri,
                                         {cam.cfg.user: cam.cfg.password})
        if user is not None:
            return True
        resp = 'RTSP/1.0 401 Unauthorized\r\nCSeq: %s\r\n' % hdrs.get('cseq', '0')
        for c in self.digest.challenges(stale):
            resp += 'WWW-Authenticate: %s\r\n' % c
        resp += 'Content-Length: 0\r\n\r\n'
        with out_lock:
            client.sendall(resp.encode())
        return False


def make_tls_context(work_dir, host):
    """A CA and a server certificate it signs (SAN: localhost, 127.0.0.1 and host), made with
    the openssl CLI, as a camera with a private/self-made CA would present. Returns
    (SSLContext, path of the CA certificate to trust)."""
    ext = os.path.join(work_dir, 'ext.cnf')
    sans = ['DNS:localhost', 'IP:127.0.0.1']
    if host and host not in ('127.0.0.1', 'localhost'):
        sans.append(('IP:%s' if re.fullmatch(r'[0-9.]+|[0-9a-fA-F:]+', host) else 'DNS:%s') % host)
    with open(ext, 'w') as f:
        f.write('subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\n'
                'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' % ','.join(sans))
    j = lambda n: os.path.join(work_dir, n)  # noqa: E731
    ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
    for cmd in (
        ['openssl', 'req', '-x509', *ec, '-days', '3', '-subj', '/CN=vigil-camera-sim CA',
         '-keyout', j('ca.key'), '-out', j('ca.pem')],
        ['openssl', 'req', *ec, '-subj', '/CN=vigil-camera-sim', '-keyout', j('key.pem'),
         '-out', j('leaf.csr')],
        ['openssl', 'x509', '-req', '-in', j('leaf.csr'), '-CA', j('ca.pem'), '-CAkey', j('ca.key'),
         '-CAcreateserial', '-days', '3', '-extfile', ext, '-out', j('cert.pem')],
    ):
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(j('cert.pem'), j('key.pem'))
    return ctx, j('ca.pem')


class ControlServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_handler(sim):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'
        server_version = 'vigil-camera-sim/1.0'

        def log_message(self, fmt, *a):
            if sim.args.verbose:
                log('http: ' + fmt % a)

        def _send(self, status, body, ctype='application/json', chunked=False, headers=()):
            if not isinstance(body, (bytes, str)):
                body = json.dumps(body, indent=1)
            if isinstance(body, str):
                body = body.encode()
            self.send_response(status)
            self.send_header('Content-Type', ctype)
            for k, v in headers:
                self.send_header(k, v)
            if not chunked:
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            # --onvif-chunked: small chunks, as embedded web servers stream their answers.
            self.send_header('Transfer-Encoding', 'chunked')
            self.end_headers()
            for i in range(0, len(body), 512):
                part = body[i:i + 512]
                self.wfile.write(b'%x\r\n%s\r\n' % (len(part), part))
            self.wfile.write(b'0\r\n\r\n')

        def _cam(self, name):
            cam = sim.cameras.get(name)
            if cam is None:
                self._send(404, {'error': 'no such camera %r' % name})
            return cam

        def do_GET(self):
            try:
                u = urllib.parse.urlsplit(self.path)
                parts = [urllib.parse.unquote(p) for p in u.path.split('/') if p]
                if parts == ['healthz']:
                    auth = {}
                    if sim.proxy is not None:
                        auth['rtsp_digest'] = dict(sim.proxy.digest.stats)
                    if sim.onvif_digest is not None:
                        auth['onvif_digest'] = dict(sim.onvif_digest.stats)
                    return self._send(200, {'status': 'ok', 'cameras': len(sim.cameras), **auth,
                                            'pullpoint_subscriptions': sim.onvif.subscription_count(),
                                            'pullpoint_created': sim.onvif.subs_created})
                if parts == ['cameras']:
                    return self._send(200, [c.info() for c in sim.cameras.values()])
                if len(parts) >= 2 and parts[0] == 'cameras':
                    cam = self._cam(parts[1])
                    if cam is None:
                        return None
                    if len(parts) == 2:
                        return self._send(200, cam.info())
                    if parts[2:] == ['events']:
                        with cam.lock:
                            return self._send(200, list(cam.events))
                    if parts[2:] == ['sd']:
                        if not cam.sd:
                            return self._send(200, [])
                        return self._send(200, [{
                            'file': os.path.basename(e['path']), 'path': e['path'],
                            'start': iso_ms(e['start_ms']), 'end': iso_ms(e['end_ms']),
                            'start_ms': e['start_ms'], 'end_ms': e['end_ms'],
                            'duration_ms': e['end_ms'] - e['start_ms'], 'bytes': e['bytes'],
                            'recording': e['recording']} for e in cam.sd.entries()])
                return self._send(404, {'error': 'not found'})
            except (BrokenPipeError, ConnectionResetError):
                return None
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                return self._send(500, {'error': str(e)})

        def do_POST(self):
            try:
                n = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(min(n, 1 << 20)) if n > 0 else b''
                u = urllib.parse.urlsplit(self.path)
                q = urllib.parse.parse_qs(u.query)
                parts = [urllib.parse.unquote(p) for p in u.path.split('/') if p]
                if len(parts) == 3 and parts[0] == 'cameras' and parts[2] in ('drop', 'restore'):
                    cam = self._cam(parts[1])
                    if cam is None:
                        return None
                    if parts[2] == 'drop':
                        scope = (q.get('scope') or ['all'])[0]
                        if scope not in ('all', 'live'):
                            return self._send(400, {'error': 'scope must be all or live'})
                        ev = run_on_main(lambda: sim.drop(cam, scope))
                    else:
                        ev = run_on_main(lambda: sim.restore(cam))
                    return self._send(200, ev)
                if len(parts) == 3 and parts[0] == 'cameras' and parts[2] in ('motion', 'input'):
                    # Raise or clear motion, or the digital input DI0 (an alarm contact).
                    cam = self._cam(parts[1])
                    if cam is None:
                        return None
                    state = (q.get('state') or [''])[0]
                    if state not in ('true', 'false'):
                        return self._send(400, {'error': 'state must be true or false'})
                    on = state == 'true'
                    with cam.lock:
                        changed = getattr(cam, parts[2]) != on
                        setattr(cam, parts[2], on)
                    ev = cam.add_event(parts[2], state=on, changed=changed)
                    if changed:
                        topic = Onvif.INPUT_TOPIC if parts[2] == 'input' else None
                        if cam.sd:
                            cam.sd.log_event(topic or Onvif.MOTION_TOPIC,
                                             'DI0' if topic else cam.cfg.name, on, ev['time_ms'])
                        sim.onvif.motion_changed(cam, on, ev['time_ms'], topic)
                    return self._send(200, ev)
                sub = None
                if parts and parts[0] == 'onvif' and len(parts) in (3, 4) and parts[-2] == 'subscription':
                    sub = parts[-1]
                    parts = parts[:-2] + ['event_service']
                if parts and parts[0] == 'onvif' and len(parts) in (2, 3):
                    only = None
                    if len(parts) == 3:
                        only = parts[1]
                        if only not in sim.cameras:
                            return self._send(404, {'error': 'no such camera'})
                    svc = parts[-1]
                    if svc not in Onvif.SERVICES:
                        return self._send(404, {'error': 'unknown ONVIF service'})
                    http_user = None
                    if sim.onvif_digest is not None and sim.passwords:
                        http_user, stale = sim.onvif_digest.check(
                            self.headers.get('Authorization'), 'POST', self.path, sim.passwords)
                        if http_user is None and sim.args.onvif_auth == 'digest':
                            return self._send(
                                401, soap_fault('Sender', 'ter:NotAuthorized', 'HTTP authentication required'),
                                'application/soap+xml; charset=utf-8', sim.args.onvif_chunked,
                                [('WWW-Authenticate', c) for c in sim.onvif_digest.challenges(stale)])
                    status, xml = sim.onvif.handle(svc, body, self.headers.get('Host'), only,
                                                   http_user, getattr(self.server, 'scheme', 'http'),
                                                   sub)
                    return self._send(status, xml, 'application/soap+xml; charset=utf-8',
                                      sim.args.onvif_chunked)
                return self._send(404, {'error': 'not found'})
            except (BrokenPipeError, ConnectionResetError):
                return None
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                return self._send(500, {'error': str(e)})

    return Handler


# --------------------------------------------------------------------------
# the simulator

_librtsp = None


def set_auth_methods(auth, methods):
    """gst_rtsp_auth_set_supported_methods(BASIC|DIGEST): the GIR types the
    argument as an enum, so a combination cannot be passed through gi."""
    global _librtsp
    try:
        if _librtsp is None:
            _librtsp = ctypes.CDLL('libgstrtspserver-1.0.so.0')
            _librtsp.gst_rtsp_auth_set_supported_methods.argtypes = [ctypes.c_void_p, ctypes.c_int]
        ptr = ctypes.c_void_p.from_address(id(auth) + object.__basicsize__).value
        _librtsp.gst_rtsp_auth_set_supported_methods(ptr, methods)
        return True
    except OSError:
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        return False


class Simulator:
    def __init__(self, args, cfgs):
        self.args = args
        self.url_host = args.bind if args.bind not in ('0.0.0.0', '::', '') else '127.0.0.1'
        self.cameras = {}
        self.clients = {}             # RTSPClient -> set(paths)
        self.loop = GLib.MainLoop()
        self.rtsp_port = args.rtsp_port
        self.control_port = args.control_port
        self.onvif_https_port = None
        self.tls_ca = None
        self.proxy = None
        self.onvif = Onvif(self)
        self.onvif_digest = (DigestServer('vigil-camera-sim ONVIF', args.digest_nonce_uses)
                             if args.onvif_auth in ('digest', 'both') else None)
        for cfg in cfgs:
            if cfg.name in self.cameras:
                raise ValueError('duplicate camera name %s' % cfg.name)
            self.cameras[cfg.name] = Camera(cfg, self)

        self.passwords = {}
        for cam in self.cameras.values():
            c = cam.cfg
            if c.user:
                if self.passwords.get(c.user, c.password) != c.password:
                    raise ValueError('user %s is configured with two different passwords' % c.user)
                self.passwords[c.user] = c.password

        self.server = GstRtspServer.RTSPOnvifServer()
        if args.rtsp_auth == 'digest-qop':
            # gst-rtsp-server listens on loopback without auth; RtspDigestProxy owns the port.
            self.server.set_address('127.0.0.1')
            self.server.set_service('0')
        else:
            self.server.set_address(args.bind)
            self.server.set_service(str(args.rtsp_port))
        # One thread per client connection, as a camera serves its clients: with the default
        # (max-threads 0) every client runs in the main context, and a DESCRIBE that waits for a
        # media to start (up to a GOP) blocks every other client's requests, so N recorders
        # reconnecting at once after a failover waited N × that.
        self.server.get_thread_pool().set_max_threads(64)
        self.mounts = self.server.get_mount_points()
        self.user_roles = sorted({'user:' + c.cfg.user for c in self.cameras.values() if c.cfg.user})
        self.auth = None
        if self.user_roles and args.rtsp_auth != 'digest-qop':
            self._setup_auth()
        self.server.connect('client-connected', self._on_client)

    def _setup_auth(self):
        auth = GstRtspServer.RTSPAuth()
        method = self.args.rtsp_auth
        methods = {'basic': 1, 'digest': 2, 'both': 3}[method]
        set_auth_methods(auth, methods)
        anon = GstRtspServer.RTSPToken.new()
        anon.set_string('media.factory.role', 'anonymous')
        auth.set_default_token(anon)
        seen = {}
        for cam in self.cameras.values():
            c = cam.cfg
            if not c.user:
                continue
            if c.user in seen and seen[c.user] != c.password:
                raise ValueError('user %s is configured with two different passwords' % c.user)
            seen[c.user] = c.password
        for user, pw in seen.items():
            tok = GstRtspServer.RTSPToken.new()
            tok.set_string('media.factory.role', 'user:' + user)
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, pw), tok)
            auth.add_digest(user, pw, tok)
        self.server.set_auth(auth)
        self.auth = auth

    def _permit(self, factory, cam):
        if not self.auth:
            return
        if cam.cfg.user:
            # anonymous may see the mount but not construct it: that makes
            # the server answer 401 + WWW-Authenticate instead of 404
            roles = [('anonymous', False), ('user:' + cam.cfg.user, True)]
        else:
            roles = [(r, True) for r in ['anonymous'] + self.user_roles]
        for r, construct in roles:
            s = Gst.Structure.new_empty(r)
            s.set_value('media.factory.access', True)
            s.set_value('media.factory.construct', construct)
            factory.add_role_from_structure(s)

    def _live_factory(self, cam):
        c = cam.cfg
        pay = 'rtph264pay' if c.codec == 'h264' else 'rtph265pay'
        launch = '( appsrc name=vsrc ! %s name=pay0 pt=96' % pay
        if c.audio == 'aac':
            launch += ' appsrc name=asrc ! rtpmp4gpay name=pay1 pt=97'
        launch += ' )'
        f = GstRtspServer.RTSPMediaFactory()
        f.set_launch(launch)
        f.set_shared(True)
        f.connect('media-configure', lambda _f, media: cam.attach(media))
        return f

    def mount(self, cam, scope='all'):
        fs = {'live': self._live_factory(cam)}
        if scope == 'all' and cam.sd:
            fs['replay'] = ReplayFactory(cam)
            fs['playback'] = PlaybackFactory(cam)
        for kind, f in fs.items():
            self._permit(f, cam)
            self.mounts.add_factory('/%s/%s' % (cam.cfg.name, kind), f)
            cam.factories[kind] = f

    def unmount(self, cam, scope):
        kinds = ['live'] if scope == 'live' else list(cam.factories)
        for kind in kinds:
            if kind in cam.factories:
                self.mounts.remove_factory('/%s/%s' % (cam.cfg.name, kind))
                del cam.factories[kind]
        return kinds

    # ---- client tracking (to cut sessions on drop)
    def _on_client(self, server, client):
        self.clients[client] = set()
        for sig in ('options-request', 'describe-request', 'setup-request', 'play-request'):
            client.connect(sig, self._on_request)
        client.connect('closed', self._on_client_closed)

    def _on_request(self, client, ctx):
        try:
            uri = ctx.uri
            if uri is not None and uri.abspath:
                self.clients.setdefault(client, set()).add(uri.abspath)
        except Exception:  # noqa: BLE001
            traceback.print_exc()

    def _on_client_closed(self, client):
        self.clients.pop(client, None)

    def client_count(self, cam_name, kind=None):
        """RTSP connections that addressed this camera (any thread)."""
        pre = '/%s/%s' % (cam_name, kind) if kind else '/%s/' % cam_name
        for _ in range(3):
            try:
                items = list(self.clients.items())
                break
            except RuntimeError:        # dict changed size on the main loop
                continue
        else:
            return None
        return sum(1 for _c, paths in items if any(p.startswith(pre) for p in paths))

    def drop(self, cam, scope='all'):
        if cam.state == 'down':
            return {'type': 'drop', 'already': True, 'state': 'down'}
        kinds = self.unmount(cam, scope)
        cam.state = 'down'
        cam.down_scope = scope
        prefixes = ['/%s/%s' % (cam.cfg.name, k) for k in kinds]
        closed = 0
        for client, paths in list(self.clients.items()):
            if any(p == pre or p.startswith(pre + '/') for p in paths for pre in prefixes):
                client.close()
                closed += 1
        cam.detach_all()
        return cam.add_event('drop', scope=scope, closed_clients=closed)

    def restore(self, cam):
        if cam.state == 'up':
            return {'type': 'restore', 'already': True, 'state': 'up'}
        self.unmount(cam, 'all')
        self.mount(cam)
        cam.state = 'up'
        cam.down_scope = None
        return cam.add_event('restore')

    # ---- lifecycle
    def _prune(self):
        for cam in self.cameras.values():
            if cam.sd:
                try:
                    cam.sd.prune()
                except Exception:  # noqa: BLE001
                    traceback.print_exc()
        return True

    def run(self):
        for cam in self.cameras.values():
            cam.build()
        for cam in self.cameras.values():
            self.mount(cam)
        if self.server.attach(None) == 0:
            log('cannot listen on %s:%s' % (self.args.bind, self.args.rtsp_port))
            return 2
        self.rtsp_port = self.server.get_bound_port()
        if self.args.rtsp_auth == 'digest-qop':
            try:
                self.proxy = RtspDigestProxy(self, self.args.bind, self.args.rtsp_port, self.rtsp_port)
            except OSError as e:
                log('cannot listen on %s:%s: %s' % (self.args.bind, self.args.rtsp_port, e))
                return 2
            self.rtsp_port = self.proxy.port
        try:
            self.httpd = ControlServer((self.args.bind, self.args.control_port), make_handler(self))
        except OSError as e:
            log('cannot listen on control port %s: %s' % (self.args.control_port, e))
            return 2
        self.control_port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, name='control-http', daemon=True).start()
        self.tls_dir = None
        if self.args.onvif_https_port is not None:
            try:
                self.tls_dir = tempfile.mkdtemp(prefix='camera-sim-tls-')
                ctx, self.tls_ca = make_tls_context(self.tls_dir, self.url_host)
                self.httpsd = ControlServer((self.args.bind, self.args.onvif_https_port),
                                            make_handler(self))
            except (OSError, subprocess.CalledProcessError, ssl.SSLError) as e:
                log('cannot serve ONVIF over HTTPS: %s' % e)
                return 2
            # The handshake runs in the request's thread, not in the accept loop.
            self.httpsd.socket = ctx.wrap_socket(self.httpsd.socket, server_side=True,
                                                 do_handshake_on_connect=False)
            self.httpsd.scheme = 'https'
            self.onvif_https_port = self.httpsd.server_address[1]
            threading.Thread(target=self.httpsd.serve_forever, name='onvif-https', daemon=True).start()
        for cam in self.cameras.values():
            cam.start()
        GLib.timeout_add_seconds(10, self._prune)
        for sig in (signal.SIGTERM, signal.SIGINT):
            GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, self._on_signal, sig)

        deadline = time.monotonic() + 15

        def ready_check():
            if all(c.frames_encoded > 0 for c in self.cameras.values()) or time.monotonic() > deadline:
                if not all(c.frames_encoded > 0 for c in self.cameras.values()):
                    log('warning: not every camera produced a frame within 15 s')
                extra = ''
                if self.onvif_https_port is not None:
                    extra = ' onvif_https=%d tls_ca=%s' % (self.onvif_https_port, self.tls_ca)
                sys.stdout.write('READY rtsp=%d control=%d%s\n' % (self.rtsp_port, self.control_port, extra))
                sys.stdout.flush()
                log('serving %d camera(s): rtsp://%s:%d/<name>/live, control http://%s:%d/cameras'
                    % (len(self.cameras), self.url_host, self.rtsp_port, self.url_host, self.control_port))
                return False
            return True

        GLib.timeout_add(50, ready_check)
        self.loop.run()
        log('shutting down')
        try:
            self.httpd.shutdown()
            self.httpd.server_close()
        except Exception:  # noqa: BLE001
            pass
        if self.tls_dir:
            shutil.rmtree(self.tls_dir, ignore_errors=True)
        for cam in self.cameras.values():
            cam.stop()
        return 0

    def _on_signal(self, sig):
        log('signal %d received' % sig)
        self.loop.quit()
        return False


def warm_up_introspection():
    """Resolves, on the main thread, every introspected method the streaming threads call.

    PyGObject looks methods up lazily on first attribute access, and that lookup is not
    thread-safe: when several cameras' streaming threads touch e.g. Gst.Segment.to_running_time
    for the first time at once, one of them can get AttributeError (seen with 4 cameras
    starting together), and that camera never produces a frame.
    """
    for owner, names in (
        (Gst.Segment, ('to_running_time',)),
        (Gst.Sample, ('get_buffer', 'get_segment', 'get_caps')),
        (Gst.Structure, ('get_uint64', 'get_name', 'get_value')),
        (Gst.Buffer, ('new_wrapped', 'get_size', 'has_flags')),
        (GstVideo, ('buffer_add_video_meta',)),
        (GstVideo.VideoOverlayRectangle, ('new_raw',)),
        (GstVideo.VideoOverlayComposition, ('new',)),
    ):
        for name in names:
            getattr(owner, name, None)


def main(argv=None):
    ap = argparse.ArgumentParser(description='Vigil IP camera simulator (GStreamer RTSP server)')
    ap.add_argument('--rtsp-port', type=int, default=8554, help='RTSP port (0 = pick a free one)')
    ap.add_argument('--control-port', type=int, default=8555, help='HTTP control/ONVIF port (0 = free)')
    ap.add_argument('--camera', action='append', default=[], metavar='SPEC',
                    help='name=cam1,codec=h264|h265,bitrate=KBPS,fps=N,width=W,height=H,gop=N,'
                         'audio=aac,user=U,password=P,pattern=smpte,speed=0 (repeatable)')
    ap.add_argument('--sd-dir', help='record each camera to DIR/<name>/ ("SD card")')
    ap.add_argument('--sd-minutes', type=int, default=90, help='SD retention in minutes (default 90)')
    ap.add_argument('--sd-chunk-seconds', type=int, default=10, help='SD chunk length (default 10 s)')
    ap.add_argument('--bind', default='127.0.0.1', help='address to listen on (default 127.0.0.1)')
    ap.add_argument('--rtsp-auth', choices=('digest', 'basic', 'both', 'digest-qop'), default='both',
                    help='RTSP auth methods offered for cameras with user/password (default both); '
                         'digest-qop: only Digest with qop=auth, SHA-256 or MD5 (TCP interleaved only)')
    ap.add_argument('--onvif-auth', choices=('wsse', 'digest', 'both'), default='wsse',
                    help='ONVIF SOAP auth: WS-UsernameToken (default), HTTP Digest with qop '
                         '(401 challenge first), or either')
    ap.add_argument('--onvif-chunked', action='store_true',
                    help='answer SOAP with Transfer-Encoding: chunked (512-byte chunks)')
    ap.add_argument('--onvif-https-port', type=int, default=None, metavar='N',
                    help='also serve ONVIF (and the control API) over HTTPS on N (0 = free), with a '
                         'certificate from a CA made at start; READY says onvif_https=N tls_ca=PATH')
    ap.add_argument('--digest-nonce-uses', type=int, default=0, metavar='N',
                    help='digest-qop/ONVIF Digest nonces go stale after N requests (0 = never)')
    ap.add_argument('--no-find-events', action='store_true',
                    help='answer Profile G FindEvents with ActionNotSupported (cameras without an event search)')
    ap.add_argument('--verbose', action='store_true', help='log every HTTP request')
    ap.add_argument('--frame-log', metavar='DIR',
                    help='write DIR/<name>.frames: "<count> <UTC ms burnt into the frame>" per '
                         'encoded frame (for frame-level coverage checks)')
    args = ap.parse_args(argv)
    if not args.camera:
        ap.error('at least one --camera is required')
    try:
        cfgs = [CameraConfig(s) for s in args.camera]
    except ValueError as e:
        ap.error(str(e))
    if args.sd_minutes < 1 or args.sd_chunk_seconds < 1:
        ap.error('--sd-minutes and --sd-chunk-seconds must be >= 1')
    Gst.init(None)
    warm_up_introspection()
    try:
        sim = Simulator(args, cfgs)
        return sim.run()
    except (RuntimeError, ValueError) as e:
        log('error: %s' % e)
        return 2


if __name__ == '__main__':
    sys.exit(main())
