#!/usr/bin/env python3
"""Minimal ONVIF replay RTSP client (standard library only).

Does what ffmpeg cannot: OPTIONS, DESCRIBE, SETUP (TCP interleaved) and
PLAY with `Require: onvif-replay`, `Range: clock=<start>-<end>` and
`Rate-Control: no`, then reads the RTP packets and decodes the ONVIF RTP
header extension (profile 0xABAC: 64-bit NTP time + C/E/D/T flags).

  onvif_replay_client.py rtsp://127.0.0.1:8554/cam1/replay \
      --start 2026-01-02T03:04:05Z --end 2026-01-02T03:04:25Z [--rate-control yes]
      [--user U --password P] [--timeout 60] [--out video.es] [--packets]

Prints one JSON object with the counts and the NTP time range seen.
Exit status 0 when the PLAY succeeded and at least one RTP packet arrived.
"""

import argparse
import base64
import datetime
import hashlib
import json
import re
import secrets
import socket
import sys
import time
import urllib.parse

NTP_UNIX_OFFSET_S = 2208988800
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def parse_time(text):
    t = text.strip().replace('+00:00', 'Z')
    if re.fullmatch(r'\d{12,14}', t):
        return int(t)
    for fmt in ('%Y-%m-%dT%H:%M:%S.%fZ', '%Y-%m-%dT%H:%M:%SZ', '%Y%m%dT%H%M%S.%fZ', '%Y%m%dT%H%M%SZ'):
        try:
            dt = datetime.datetime.strptime(t, fmt).replace(tzinfo=datetime.timezone.utc)
            return (dt - EPOCH) // datetime.timedelta(milliseconds=1)
        except ValueError:
            pass
    raise ValueError('bad time %r' % text)


def clock_str(ms):
    dt = EPOCH + datetime.timedelta(milliseconds=ms)
    return dt.strftime('%Y%m%dT%H%M%S.') + '%03dZ' % (ms % 1000)


def iso(ms):
    if ms is None:
        return None
    dt = EPOCH + datetime.timedelta(milliseconds=ms)
    return dt.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (ms % 1000)


class RtspError(Exception):
    pass


class Client:
    def __init__(self, url, user=None, password=None, timeout=60.0):
        self.url = url
        u = urllib.parse.urlsplit(url)
        self.host = u.hostname
        self.port = u.port or 554
        self.user = user if user is not None else (urllib.parse.unquote(u.username) if u.username else None)
        self.password = password if password is not None else (
            urllib.parse.unquote(u.password) if u.password else None)
        # the request URL never carries the credentials
        netloc = self.host + (':%d' % u.port if u.port else '')
        self.req_url = urllib.parse.urlunsplit((u.scheme, netloc, u.path, u.query, ''))
        self.sock = socket.create_connection((self.host, self.port), timeout=10)
        self.sock.settimeout(timeout)
        self.buf = b''
        self.cseq = 0
        self.session = None
        self.auth = None          # (scheme, params)
        self.nc = 0               # digest nonce count
        self.rtp_queue = []       # interleaved frames seen while waiting for a reply

    # ---- low level
    def _recv(self):
        d = self.sock.recv(262144)
        if not d:
            raise EOFError('connection closed by server')
        self.buf += d

    def _read_message(self):
        """Returns ('rtp', channel, payload) or ('rtsp', status, headers, body)."""
        while True:
            if self.buf[:1] == b'$':
                if len(self.buf) < 4:
                    self._recv()
                    continue
                n = int.from_bytes(self.buf[2:4], 'big')
                if len(self.buf) < 4 + n:
                    self._recv()
                    continue
                ch = self.buf[1]
                data = self.buf[4:4 + n]
                self.buf = self.buf[4 + n:]
                return ('rtp', ch, data)
            if self.buf[:4] == b'RTSP':
                i = self.buf.find(b'\r\n\r\n')
                if i < 0:
                    self._recv()
                    continue
                head = self.buf[:i].decode('latin-1').split('\r\n')
                headers = {}
                for line in head[1:]:
                    k, _, v = line.partition(':')
                    headers.setdefault(k.strip().lower(), []).append(v.strip())
                clen = int(headers.get('content-length', ['0'])[0])
                if len(self.buf) < i + 4 + clen:
                    self._recv()
                    continue
                body = self.buf[i + 4:i + 4 + clen]
                self.buf = self.buf[i + 4 + clen:]
                status = int(head[0].split()[1])
                return ('rtsp', status, headers, body)
            if not self.buf:
                self._recv()
                continue
            # junk or a server request: skip to the next '$' or 'RTSP'
            j = min([x for x in (self.buf.find(b'$', 1), self.buf.find(b'RTSP', 1)) if x > 0] or [len(self.buf)])
            self.buf = self.buf[j:]
            if not self.buf:
                self._recv()

    def _auth_header(self, method, uri):
        if not self.auth or self.user is None:
            return None
        scheme, params = self.auth
        if scheme == 'basic':
            return 'Basic ' + base64.b64encode(('%s:%s' % (self.user, self.password)).encode()).decode()
        realm, nonce = params.get('realm', ''), params.get('nonce', '')
        alg = params.get('algorithm', 'MD5')
        h = lambda s: (hashlib.sha256 if alg == 'SHA-256' else hashlib.md5)(s.encode()).hexdigest()  # noqa: E731
        ha1 = h('%s:%s:%s' % (self.user, realm, self.password))
        ha2 = h('%s:%s' % (method, uri))
        out = 'Digest username="%s", realm="%s", nonce="%s", uri="%s"' % (self.user, realm, nonce, uri)
        if 'auth' in [q.strip() for q in params.get('qop', '').split(',')]:
            # RFC 7616: qop=auth with a client nonce and a counting nc
            self.nc += 1
            cnonce = secrets.token_hex(8)
            resp = h('%s:%s:%08x:%s:auth:%s' % (ha1, nonce, self.nc, cnonce, ha2))
            out += ', qop=auth, nc=%08x, cnonce="%s"' % (self.nc, cnonce)
        else:
            resp = h('%s:%s:%s' % (ha1, nonce, ha2))
        out += ', response="%s", algorithm=%s' % (resp, alg)
        if 'opaque' in params:
            out += ', opaque="%s"' % params['opaque']
        return out

    def request(self, method, uri, headers=None, _tries=3):
        self.cseq += 1
        lines = ['%s %s RTSP/1.0' % (method, uri), 'CSeq: %d' % self.cseq,
                 'User-Agent: vigil-onvif-replay-client']
        if self.session:
            lines.append('Session: %s' % self.session)
        a = self._auth_header(method, uri)
        if a:
            lines.append('Authorization: ' + a)
        for k, v in (headers or {}).items():
            lines.append('%s: %s' % (k, v))
        self.sock.sendall(('\r\n'.join(lines) + '\r\n\r\n').encode())
        while True:
            m = self._read_message()
            if m[0] == 'rtp':
                self.rtp_queue.append(m)
                continue
            _, status, hdrs, body = m
            break
        if status == 401 and _tries > 1 and self.user is not None:
            chosen = None
            for h in hdrs.get('www-authenticate', []):
                scheme, _, rest = h.partition(' ')
                params = dict((k.lower(), v.strip('"'))
                              for k, v in re.findall(r'(\w+)=("[^"]*"|[^,]+)', rest))
                if (scheme.lower() == 'digest' and (chosen is None or chosen[0] != 'digest')
                        and params.get('algorithm', 'MD5') in ('MD5', 'SHA-256')):
                    chosen = ('digest', params)
                elif scheme.lower() == 'basic' and chosen is None:
                    chosen = ('basic', params)
            # after credentials were sent, only a stale nonce is worth another try
            if chosen and (a is None or chosen[1].get('stale', '').lower() == 'true'):
                self.auth = chosen
                self.nc = 0
                return self.request(method, uri, headers, _tries - 1)
        if status != 200:
            raise RtspError('%s %s -> %d' % (method, uri, status))
        if 'session' in hdrs and not self.session:
            self.session = hdrs['session'][0].split(';')[0].strip()
        return hdrs, body


def parse_sdp(sdp, base):
    tracks = []
    cur = None
    for line in sdp.splitlines():
        if line.startswith('m='):
            cur = {'media': line[2:].split()[0], 'control': None, 'rtpmap': None}
            tracks.append(cur)
        elif cur is not None and line.startswith('a=control:'):
            cur['control'] = line[len('a=control:'):].strip()
        elif cur is not None and line.startswith('a=rtpmap:'):
            cur['rtpmap'] = line[len('a=rtpmap:'):].strip()
    for t in tracks:
        c = t['control'] or ''
        if c.startswith('rtsp://'):
            t['url'] = c
        elif base.endswith('/'):
            t['url'] = base + c
        else:
            t['url'] = base + '/' + c
    return tracks


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('url')
    ap.add_argument('--start', required=True, help='UTC, e.g. 2026-01-02T03:04:05Z')
    ap.add_argument('--end', help='UTC (open-ended when omitted)')
    ap.add_argument('--rate-control', choices=('yes', 'no'), default='no')
    ap.add_argument('--user')
    ap.add_argument('--password')
    ap.add_argument('--timeout', type=float, default=60.0, help='overall limit in seconds')
    ap.add_argument('--max-packets', type=int, default=2_000_000)
    ap.add_argument('--out', help='write the video elementary stream (Annex B) here')
    ap.add_argument('--packets', action='store_true', help='include per-frame NTP times in the JSON')
    ap.add_argument('--no-require', action='store_true', help='do not send Require: onvif-replay')
    args = ap.parse_args(argv)

    start_ms = parse_time(args.start)
    end_ms = parse_time(args.end) if args.end else None
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    res = {'url': args.url, 'window_start': iso(start_ms), 'window_end': iso(end_ms),
           'rate_control': args.rate_control, 'ok': False}
    req = {} if args.no_require else {'Require': 'onvif-replay'}
    cl = None
    try:
        cl = Client(args.url, args.user, args.password, timeout=min(30.0, args.timeout))
        cl.request('OPTIONS', cl.req_url)
        hdrs, body = cl.request('DESCRIBE', cl.req_url, dict(req, Accept='application/sdp'))
        base = (hdrs.get('content-base') or hdrs.get('content-location') or [cl.req_url])[0]
        tracks = parse_sdp(body.decode('latin-1'), base)
        res['tracks'] = [{'media': t['media'], 'rtpmap': t['rtpmap']} for t in tracks]
        video_ch = None
        for i, t in enumerate(tracks):
            h, _ = cl.request('SETUP', t['url'], dict(
                req, Transport='RTP/AVP/TCP;unicast;interleaved=%d-%d' % (2 * i, 2 * i + 1)))
            m = re.search(r'interleaved=(\d+)', h.get('transport', [''])[0])
            ch = int(m.group(1)) if m else 2 * i
            t['channel'] = ch
            if t['media'] == 'video' and video_ch is None:
                video_ch = ch
        rng = 'clock=%s-%s' % (clock_str(start_ms), clock_str(end_ms) if end_ms is not None else '')
        play_hdrs = dict(req, Range=rng)
        play_hdrs['Rate-Control'] = args.rate_control
        h, _ = cl.request('PLAY', cl.req_url if not base else base.rstrip('/'), play_hdrs)
        res['play_range'] = (h.get('range') or [None])[0]
        res['play_rate_control'] = (h.get('rate-control') or [None])[0]
        t_play = time.monotonic()

        packets = ext_packets = frames = keyframes = nbytes = 0
        outside = 0
        first_ntp = last_ntp = None
        t_bit = False
        frame_times = []
        seq_prev = None
        seq_gaps = 0
        prev_marker = True
        out = open(args.out, 'wb') if args.out else None
        fu = b''
        cl.sock.settimeout(2.0)
        idle_since = time.monotonic()
        while time.monotonic() < deadline and packets < args.max_packets:
            if cl.rtp_queue:
                m = cl.rtp_queue.pop(0)
            else:
                try:
                    m = cl._read_message()
                except socket.timeout:
                    if time.monotonic() - idle_since > 5.0:
                        res['stopped'] = 'idle 5 s'
                        break
                    continue
                except EOFError:
                    res['stopped'] = 'connection closed'
                    break
            idle_since = time.monotonic()
            if m[0] != 'rtp' or m[1] != video_ch:
                continue
            pkt = m[2]
            if len(pkt) < 12 or pkt[0] >> 6 != 2:
                continue
            packets += 1
            nbytes += len(pkt)
            x = pkt[0] & 0x10
            cc = pkt[0] & 0x0F
            marker = pkt[1] & 0x80
            seq = int.from_bytes(pkt[2:4], 'big')
            if seq_prev is not None and seq != (seq_prev + 1) & 0xFFFF:
                seq_gaps += 1
            seq_prev = seq
            off = 12 + 4 * cc
            ntp_ms = None
            frame_start = prev_marker
            prev_marker = bool(marker)
            if x and len(pkt) >= off + 4:
                prof = int.from_bytes(pkt[off:off + 2], 'big')
                words = int.from_bytes(pkt[off + 2:off + 4], 'big')
                ext = pkt[off + 4:off + 4 + 4 * words]
                off += 4 + 4 * words
                if prof == 0xABAC and len(ext) >= 12:
                    ext_packets += 1
                    ntp = int.from_bytes(ext[0:8], 'big')
                    ntp_ms = (ntp >> 32) * 1000 + ((ntp & 0xFFFFFFFF) * 1000 >> 32) - NTP_UNIX_OFFSET_S * 1000
                    flags = ext[8]
                    if flags & 0x80 and frame_start:
                        keyframes += 1
                    if flags & 0x10:
                        t_bit = True
                    if first_ntp is None:
                        first_ntp = ntp_ms
                    last_ntp = ntp_ms if last_ntp is None else max(last_ntp, ntp_ms)
                    if ntp_ms < start_ms - 10_000 or (end_ms is not None and ntp_ms > end_ms + 1000):
                        outside += 1
            if out is not None:
                payload = pkt[off:]
                if pkt[0] & 0x20 and payload:
                    payload = payload[:-payload[-1]]
                if payload:
                    nal = payload[0] & 0x1F
                    if 1 <= nal <= 23:
                        out.write(b'\x00\x00\x00\x01' + payload)
                    elif nal == 24:          # STAP-A
                        i = 1
                        while i + 2 <= len(payload):
                            n = int.from_bytes(payload[i:i + 2], 'big')
                            out.write(b'\x00\x00\x00\x01' + payload[i + 2:i + 2 + n])
                            i += 2 + n
                    elif nal == 28 and len(payload) > 2:   # FU-A
                        if payload[1] & 0x80:
                            fu = bytes([(payload[0] & 0xE0) | (payload[1] & 0x1F)])
                        fu += payload[2:]
                        if payload[1] & 0x40:
                            out.write(b'\x00\x00\x00\x01' + fu)
                            fu = b''
            if marker:
                frames += 1
                if args.packets and ntp_ms is not None:
                    frame_times.append(ntp_ms)
            if t_bit and marker:
                res['stopped'] = 'T bit (end of replay)'
                break
            if end_ms is not None and ntp_ms is not None and ntp_ms >= end_ms + 2000:
                res['stopped'] = 'past window end'
                break
        else:
            res.setdefault('stopped', 'timeout' if time.monotonic() >= deadline else 'max packets')
        if out is not None:
            out.close()
        wall = time.monotonic() - t_play
        media_s = (last_ntp - first_ntp) / 1000.0 if first_ntp is not None else 0.0
        res.update({
            'ok': packets > 0, 'packets': packets, 'ext_packets': ext_packets, 'frames': frames,
            'keyframes': keyframes, 'bytes': nbytes, 'seq_gaps': seq_gaps,
            'first_ntp': iso(first_ntp), 'last_ntp': iso(last_ntp),
            'first_ntp_ms': first_ntp, 'last_ntp_ms': last_ntp,
            'packets_outside_window': outside, 't_bit': t_bit,
            'media_seconds': round(media_s, 3), 'wall_seconds': round(wall, 3),
            'speed': round(media_s / wall, 2) if wall > 0 else None,
        })
        if args.packets:
            res['frame_ntp_ms'] = frame_times
        try:
            cl.sock.settimeout(2.0)
            cl.request('TEARDOWN', cl.req_url)
        except Exception:  # noqa: BLE001
            pass
    except (OSError, RtspError, EOFError, ValueError) as e:
        res['error'] = '%s: %s' % (type(e).__name__, e)
    finally:
        if cl is not None:
            try:
                cl.sock.close()
            except OSError:
                pass
    print(json.dumps(res, indent=1))
    return 0 if res.get('ok') else 1


if __name__ == '__main__':
    sys.exit(main())
