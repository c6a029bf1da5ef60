// Live view: one WebRTC (WHEP) session per camera shown. `?camera=ns/name` (repeatable; a child
// domain's camera as the recordings page names it, `<domain path>:ns/name`) picks the cameras;
// without it, every camera the token may watch, up to 16, in a grid. A tile's name opens the
// camera's page (live beside its timeline, camera.html); each tile links back 30 s into the
// recordings and to an export of its last 5 minutes.
// LL-HLS (hls.js, low-latency mode) instead of WebRTC: `?proto=hls` or the page's toggle; and
// per tile, when WHEP fails (an H.265 camera: 415, WebRTC passes H.264 only) or shows no
// picture within FALLBACK_MS. camera.html uses `openLive` and `resolveCameras` (`window.VigilLive`).
'use strict';
const $ = (s) => document.querySelector(s);
const tokenInput = $('#token');
tokenInput.value = localStorage.getItem('vigil-token') || '';
tokenInput.addEventListener('change', () => { localStorage.setItem('vigil-token', tokenInput.value); location.reload(); });
function auth() {
  const t = tokenInput.value.trim();
  return t ? { Authorization: 'Bearer ' + t } : {};
}

const FALLBACK_MS = 8000;
// Status badges: from the camera's recordings of the last BADGE_WINDOW_MS (the same query as
// the recordings page), every BADGE_EVERY_MS.
const BADGE_WINDOW_MS = 10 * 60 * 1000;
const BADGE_EVERY_MS = 10000;
// Stored footage trails the live picture by a segment plus its upload: footage ending within
// this long counts as recording now.
const RECORDING_LAG_MS = 45000;
// Holes shorter than this (a reconnect) do not make a camera degraded.
const DEGRADED_HOLE_MS = 5000;

// The badges of a tile from a `recordings` answer (pure; `window.vigilTileBadges` for tests):
// recording (footage up to now), not recording, degraded (holes in the window), backfilling
// (footage filled in from the camera's own storage in the window).
function tileBadges(rec, nowMs) {
  const out = [];
  const ends = [...rec.live, ...rec.backfill].map((i) => i.endMs);
  const newest = ends.length ? Math.max(...ends) : -Infinity;
  out.push(newest >= nowMs - RECORDING_LAG_MS ? 'recording' : 'not-recording');
  // The hole at the window's end is the footage not stored yet, not a loss.
  const lost = rec.holes.filter((h) => h.endMs < nowMs - RECORDING_LAG_MS && h.endMs - h.startMs >= DEGRADED_HOLE_MS);
  if (lost.length) out.push('degraded');
  if (rec.backfill.length) out.push('backfilling');
  return out;
}
window.vigilTileBadges = tileBadges;

async function updateBadges(cam, el) {
  const now = Date.now();
  try {
    const r = await fetch(`${cam.base}/recordings?start=${now - BADGE_WINDOW_MS}&end=${now}`, { headers: auth() });
    // Without `cameras/recordings` (401/403) the tile offers no recordings links either.
    if (el.parentElement) el.parentElement.dataset.recordings = r.ok ? 'yes' : 'no';
    if (!r.ok) { el.textContent = ''; el.dataset.badges = ''; return; }
    const b = tileBadges(await r.json(), now);
    el.dataset.badges = b.join(' ');
    el.replaceChildren(...b.map((x) => {
      const s = document.createElement('span');
      s.className = `badge ${x}`;
      s.textContent = x.replace('-', ' ');
      return s;
    }));
  } catch (_) { /* next time */ }
}
const params = new URLSearchParams(location.search);
const proto = params.get('proto') === 'hls' ? 'hls' : 'webrtc';

// Opens one camera into a <video> over LL-HLS: one shared stream per camera on the access point.
function playHls(cam, video) {
  const src = `${cam.base}/llhls/index.m3u8`;
  if (!window.Hls || !Hls.isSupported()) {
    // Players with native HLS (Safari) take the playlist as it is.
    video.src = src;
    return Promise.resolve({ kind: 'hls-native' });
  }
  const hls = new Hls({
    lowLatencyMode: true,
    liveDurationInfinity: true,
    backBufferLength: 10,
    // Catch up after a freeze (recorder restart) instead of staying behind.
    maxLiveSyncPlaybackRate: 1.5,
    xhrSetup: (xhr) => { const h = auth(); for (const k in h) xhr.setRequestHeader(k, h[k]); },
  });
  hls.on(Hls.Events.ERROR, (_, d) => {
    if (!d.fatal) return;
    // Fatal network or media errors: start again (the stream on the access point goes on).
    if (d.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
    else setTimeout(() => hls.startLoad(-1), 1000);
  });
  hls.loadSource(src);
  hls.attachMedia(video);
  window.addEventListener('pagehide', () => hls.destroy());
  return Promise.resolve(hls);
}

// A listed camera as this page shows it: its id, its API base and WHEP address (a child
// domain's camera is watched through this access point, which reads it through the child:
// docs/cascade.md).
function local(id) {
  return { id, base: `/api/v1/cameras/${id}`, whep: `/api/v1/cameras/${id}/whep`, rights: null };
}
// Whether the page offers the camera's export: a child domain's camera says its rights; this
// domain's export is part of `cameras/recordings`, which the tile learns from its badges'
// query (`data-recordings`). The server refuses an export without the right anyway.
const canExport = (cam) => !cam.remote || cam.rights.includes('export');
function shown(c) {
  if (!c.remote) return local(`${c.namespace}/${c.name}`);
  const base = `/api/v1/domains/${c.domainNamespace}/${c.domainPath.join(':')}/cameras/${c.namespace}/${c.name}`;
  return { id: `${c.domainPath.join('/')}:${c.namespace}/${c.name}`, base, whep: `${base}/whep`, remote: true, rights: c.rights || [] };
}

// Opens one camera into a <video>: offer (recvonly H.264), POST to WHEP, apply the answer.
async function play(cam, video) {
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  const tr = pc.addTransceiver('video', { direction: 'recvonly' });
  const h264 = (RTCRtpReceiver.getCapabilities('video')?.codecs || [])
    .filter((c) => c.mimeType === 'video/H264');
  if (h264.length && tr.setCodecPreferences) tr.setCodecPreferences(h264);
  pc.ontrack = (e) => { video.srcObject = e.streams[0] || new MediaStream([e.track]); };
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  const r = await fetch(cam.whep, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', ...auth() },
    body: pc.localDescription.sdp,
  });
  if (r.status !== 201) { pc.close(); throw new Error(`WHEP ${r.status}: ${await r.text()}`); }
  const session = r.headers.get('Location');
  await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
  video.dataset.session = session || '';
  window.addEventListener('pagehide', () => {
    if (session) fetch(session, { method: 'DELETE', headers: auth(), keepalive: true });
    pc.close();
  });
  return pc;
}

// The cameras `wanted` (ids; none: every camera the token may watch, up to 16). Throws with the
// listing's status if it cannot be read.
async function resolveCameras(wanted) {
  // This domain's cameras need no listing; a child domain's are looked up in it.
  const cams = wanted.filter((w) => !w.includes(':')).map(local);
  if (cams.length === wanted.length && wanted.length) return cams;
  const r = await fetch('/api/v1/cameras', { headers: auth() });
  if (!r.ok) throw new Error(`cameras: ${r.status}`);
  const listed = (await r.json()).cameras
    .filter((c) => !c.remote || (c.rights || []).includes('live')).map(shown);
  return wanted.length
    ? wanted.map((w) => cams.find((c) => c.id === w) || listed.find((c) => c.id === w)).filter(Boolean)
    : listed.slice(0, 16);
}

// Opens `cam`'s live picture into `video` over WebRTC (or LL-HLS: `?proto=hls`, or as the
// fallback); `tile` says how (`data-proto`, `data-fallback`, `data-error`), `label` names it.
// Returns { close() }, which ends the session.
function openLive(cam, tile, video, label) {
  let closed = false;
  let handle = null; // the RTCPeerConnection or the hls.js instance
  const opened = performance.now();
  video.dataset.opened = String(opened);
  delete video.dataset.firstFrameMs;
  video.addEventListener('loadeddata', () => {
    video.dataset.firstFrameMs = String(Math.round(performance.now() - opened));
  }, { once: true });
  const keep = (h) => {
    if (closed) { end(h); return; }
    handle = h; window.vigilLive.push(h);
  };
  const end = (h) => {
    window.vigilLive = window.vigilLive.filter((x) => x !== h);
    if (window.RTCPeerConnection && h instanceof RTCPeerConnection) {
      // The session ends on the DELETE; the connection is closed after its answer (closed
      // first, the access point ends the session on the DTLS close and a DELETE arriving
      // later, e.g. through a port-forward, finds none: 404).
      const session = video.dataset.session;
      const stop = () => h.close();
      if (session) {
        fetch(session, { method: 'DELETE', headers: auth(), keepalive: true }).then(stop, stop);
        setTimeout(stop, 2000);
      } else stop();
    } else if (h && h.destroy) h.destroy();
  };
  const close = () => {
    closed = true;
    if (handle) end(handle);
    handle = null;
    video.srcObject = null;
    video.removeAttribute('src');
    video.load();
  };
  const overHls = () => {
    tile.dataset.proto = 'hls';
    label.textContent = `${cam.id} · LL-HLS`;
    return playHls(cam, video).then(keep);
  };
  if (proto === 'hls') {
    overHls();
    return { close };
  }
  tile.dataset.proto = 'webrtc';
  label.textContent = cam.id;
  // No picture over WebRTC (H.265, or UDP blocked): LL-HLS instead.
  const fallback = (why) => {
    if (closed || tile.dataset.proto !== 'webrtc' || video.readyState >= 2) return;
    tile.dataset.fallback = why;
    if (handle) { end(handle); handle = null; }
    video.srcObject = null;
    overHls().catch((e) => { tile.dataset.error = String(e); label.textContent = `${cam.id}: ${e.message}`; });
  };
  // (A child domain's camera only on a WHEP error: its first frame may take longer.)
  if (!cam.remote) setTimeout(() => fallback('no WebRTC picture'), FALLBACK_MS);
  play(cam, video).then(keep).catch((e) => fallback(String(e)));
  return { close };
}
window.vigilLive = [];
window.VigilLive = { openLive, resolveCameras, updateBadges, canExport, BADGE_EVERY_MS };

async function main() {
  const status = $('#status');
  const toggle = $('#hls');
  toggle.checked = proto === 'hls';
  toggle.addEventListener('change', () => {
    params.set('proto', toggle.checked ? 'hls' : 'webrtc');
    location.search = params.toString();
  });
  let cams;
  try { cams = await resolveCameras(params.getAll('camera')); }
  catch (e) { status.textContent = e.message; return; }
  const cols = Math.ceil(Math.sqrt(cams.length || 1));
  $('#grid').style.setProperty('--cols', cols);
  for (const cam of cams) {
    const tile = document.createElement('div');
    tile.className = 'tile';
    tile.dataset.camera = cam.id;
    const video = document.createElement('video');
    video.autoplay = true; video.muted = true; video.playsInline = true;
    // The camera's page (live beside its timeline): the tile's name, or a click on the picture.
    const page = `/camera.html?camera=${encodeURIComponent(cam.id)}${proto === 'hls' ? '&proto=hls' : ''}`;
    const label = document.createElement('a');
    label.className = 'label';
    label.href = page;
    label.title = 'open the camera\'s page';
    video.addEventListener('click', () => { location.href = page; });
    // "What just happened": the recordings page, playing this camera from 30 s ago.
    const back = document.createElement('a');
    back.className = 'back';
    back.textContent = '⟲ 30 s';
    back.href = '/';
    back.addEventListener('click', () => {
      back.href = `/?camera=${encodeURIComponent(cam.id)}&at=${Date.now() - 30000}`;
    });
    const badges = document.createElement('span');
    badges.className = 'badges';
    tile.append(video, label, back, badges);
    if (canExport(cam)) {
      // The last 5 minutes as a playable MP4 (common.js: fetched with the token if there is one).
      const exp = Vigil.exportLink(`${cam.base}/`, () => [Date.now() - 300000, Date.now()], '⤓ 5 min');
      exp.className = 'export';
      exp.title = 'download the last 5 minutes (MP4)';
      tile.append(exp);
    }
    updateBadges(cam, badges);
    setInterval(() => updateBadges(cam, badges), BADGE_EVERY_MS);
    $('#grid').append(tile);
    openLive(cam, tile, video, label);
  }
  status.textContent = `${cams.length} camera(s)`;
}
// camera.html loads this file for `openLive`; only the grid page runs the grid.
if ($('#grid')) main();
