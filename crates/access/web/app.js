// Vigil playback page: camera list, a timeline per camera (live, backfilled, missing) with a
// lane of the camera's events above it, click to play with hls.js, an event's clip to download.
// Everything comes from the same server's JSON API.
'use strict';

const $ = (s) => document.querySelector(s);
const tokenInput = $('#token');
tokenInput.value = localStorage.getItem('vigil-token') || '';
tokenInput.addEventListener('change', () => { localStorage.setItem('vigil-token', tokenInput.value); load(); });

function authHeaders() {
  const t = tokenInput.value.trim();
  return t ? { Authorization: 'Bearer ' + t } : {};
}

async function api(path) {
  const r = await fetch(path, { headers: authHeaders() });
  if (!r.ok) {
    let msg = r.status + '';
    try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
    throw new Error(msg);
  }
  return r.json();
}

async function send(method, path) {
  const r = await fetch(path, { method, headers: authHeaders() });
  let j = {};
  try { j = await r.json(); } catch (_) { /* no body */ }
  if (!r.ok) throw new Error(j.error || String(r.status));
  return j;
}

// Manual recording (Kubernetes mode): start for 5 minutes whatever the camera's mode, or stop
// early. Needs `create cameras/manual-recording`; hidden where the server has no such call.
function manualControls(cam, div) {
  const base = `api/v1/cameras/${cam.namespace}/${cam.name}/manual-recording`;
  const btn = document.createElement('button');
  btn.className = 'manual';
  const show = (m) => {
    const on = !!(m && m.active);
    btn.dataset.active = String(on);
    btn.textContent = on ? `Stop recording (until ${fmt(m.manual.endMs)})` : 'Record 5 min';
  };
  btn.addEventListener('click', async () => {
    const on = btn.dataset.active === 'true';
    try { show(await send(on ? 'DELETE' : 'POST', on ? base : base + '?durationSeconds=300')); }
    catch (e) { btn.textContent = 'manual recording: ' + e.message; }
  });
  div.querySelector('.name').append(' ', btn);
  send('GET', base).then(show).catch(() => btn.remove());
}

// Where a camera's playback API is: the server's own cameras under api/v1/cameras, a child
// domain's (cascade) under api/v1/domains/<ns>/<domain>[:<below>…]/cameras, proxied through
// its tunnel.
function camBase(cam) {
  const c = `cameras/${cam.namespace}/${cam.name}/`;
  // Deeper domains (a child's own children) are named by the whole path, joined by ':'.
  const path = (cam.domainPath || [cam.domain]).join(':');
  return cam.remote ? `api/v1/domains/${cam.domainNamespace}/${path}/${c}` : `api/v1/${c}`;
}
function camId(cam) {
  return cam.remote ? `${(cam.domainPath || [cam.domain]).join('/')}:${cam.namespace}/${cam.name}` : `${cam.namespace}/${cam.name}`;
}
const canExport = (cam) => !cam.remote || (cam.rights || []).includes('export');

function fmt(ms) { return new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + 'Z'; }

const SVG = 'http://www.w3.org/2000/svg';
function rect(svg, cls, x0, x1, y, h) {
  const r = document.createElementNS(SVG, 'rect');
  r.setAttribute('class', cls);
  r.setAttribute('x', x0.toFixed(2));
  r.setAttribute('width', Math.max(0.5, x1 - x0).toFixed(2));
  r.setAttribute('y', y); r.setAttribute('height', h);
  svg.appendChild(r);
  return r;
}

// Footage before and after an event that its "play" and "clip" include (the camera's own
// pre/post buffers are recorded around it; this only frames the view).
const EVENT_MARGIN_MS = 5000;

function drawTimeline(svg, rec, events, start, end, cam) {
  const W = 1000;
  svg.setAttribute('viewBox', `0 0 ${W} 40`);
  svg.setAttribute('preserveAspectRatio', 'none');
  const x = (t) => (t - start) / (end - start) * W;
  for (const h of rec.holes) rect(svg, 'hole', x(h.startMs), x(h.endMs), 9, 22);
  for (const s of rec.live) rect(svg, 'live', x(s.startMs), x(s.endMs), 9, 22);
  for (const s of rec.backfill) rect(svg, 'backfill', x(s.startMs), x(s.endMs), 9, 22);
  // The event lane: one mark per event record (at least 3 units wide so a short one shows).
  for (const ev of events) {
    const x0 = x(Math.max(ev.startMs, start)), x1 = x(Math.min(ev.endMs, end));
    const r = rect(svg, `event ${ev.type}`, x0, Math.max(x1, x0 + 3), 1, 6);
    r.dataset.startMs = ev.startMs;
    const title = document.createElementNS(SVG, 'title');
    title.textContent = `${ev.type} ${fmt(ev.startMs)} – ${fmt(ev.endMs)}`;
    r.appendChild(title);
    r.addEventListener('click', (e) => { e.stopPropagation(); play(cam, ev.startMs - EVENT_MARGIN_MS, end); });
  }
  for (let i = 0; i <= 4; i++) {
    const t = document.createElementNS(SVG, 'text');
    t.setAttribute('class', 'tick'); t.setAttribute('y', 39);
    t.setAttribute('x', i === 4 ? W - 60 : i * W / 4 + 2);
    t.textContent = new Date(start + (end - start) * i / 4).toISOString().slice(11, 19);
    svg.appendChild(t);
  }
}

// The camera's events, newest first (at most 10): time, type, length, play and clip links.
function eventList(cam, events, end, box) {
  box.innerHTML = '';
  const base = camBase(cam);
  for (const ev of events.slice(-10).reverse()) {
    const row = document.createElement('div');
    row.className = 'event-row';
    row.dataset.type = ev.type;
    const secs = Math.max(0, (ev.endMs - ev.startMs) / 1000).toFixed(0);
    row.append(`${fmt(ev.startMs)} ${ev.type} (${secs} s) `);
    const p = document.createElement('a');
    p.href = '#'; p.className = 'event-play'; p.textContent = 'play';
    p.addEventListener('click', (e) => { e.preventDefault(); play(cam, ev.startMs - EVENT_MARGIN_MS, end); });
    const clip = document.createElement('a');
    clip.className = 'event-clip';
    clip.href = base + `export.mp4?start=${ev.startMs - EVENT_MARGIN_MS}&end=${ev.endMs + EVENT_MARGIN_MS}`;
    clip.textContent = 'clip';
    row.append(p);
    if (canExport(cam)) row.append(' · ', clip);
    box.appendChild(row);
  }
}

let hls = null;
function play(cam, from, end) {
  const base = camBase(cam);
  // Near now: follow the live edge (EVENT playlist without an end).
  const live = Date.now() - end < 60000;
  const url = base + `index.m3u8?start=${Math.floor(from)}` + (live ? '' : `&end=${Math.floor(end)}`);
  $('#status').textContent = `${camId(cam)} from ${fmt(from)}${live ? ' (live)' : ''}`;
  const exportEnd = Math.min(end, from + 3600000);
  $('#export').innerHTML = '';
  if (canExport(cam)) {
    const a = document.createElement('a');
    a.href = base + `export.mp4?start=${Math.floor(from)}&end=${Math.floor(exportEnd)}`;
    a.textContent = `Download MP4 (${fmt(from)} – ${fmt(exportEnd)})`;
    $('#export').appendChild(a);
  }
  const video = $('#player');
  if (hls) { hls.destroy(); hls = null; }
  if (window.Hls && Hls.isSupported()) {
    // startPosition 0: from the time asked for (the playlist starts there), even when the
    // playlist is still growing (hls.js would otherwise start near its live edge).
    hls = new Hls({
      startPosition: 0,
      xhrSetup: (xhr) => { const h = authHeaders(); for (const k in h) xhr.setRequestHeader(k, h[k]); },
    });
    hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) $('#status').textContent = 'playback error: ' + d.details; });
    // On a growing (EVENT) playlist hls.js does not jump the small gap between time 0 and
    // the first frame (it does for VOD), so playback would sit at 0: start at the first frame.
    hls.on(Hls.Events.FRAG_BUFFERED, () => {
      const b = video.buffered;
      if (b.length && video.currentTime < b.start(0)) video.currentTime = b.start(0);
    });
    hls.loadSource(url);
    hls.attachMedia(video);
  } else {
    video.src = url; // Safari plays HLS natively
  }
  video.play().catch(() => {});
}

// Deep link `?camera=<ns>/<name>&at=<ms>` (the live page's "back 30 s"): play that camera from
// `at` (or from its next recorded footage) once the timelines are loaded.
const deepLink = new URLSearchParams(location.search);
const loaded = new Map();

async function load() {
  const box = $('#cameras');
  loaded.clear();
  box.dataset.loaded = 'false';
  const len = Number($('#window').value);
  const end = Date.now(), start = end - len;
  let cams;
  try { cams = (await api('api/v1/cameras')).cameras; }
  catch (e) { box.textContent = 'cannot list cameras: ' + e.message; return; }
  box.innerHTML = '';
  if (!cams.length) box.textContent = 'no cameras';
  for (const cam of cams) {
    const div = document.createElement('div');
    div.className = 'camera';
    div.dataset.camera = camId(cam);
    const name = document.createElement('div');
    name.className = 'name';
    // A child domain's camera: the domain (display name) first, and whether it is reachable.
    name.textContent = cam.remote
      ? [cam.domainDisplayName || cam.domain, ...(cam.domainPath || []).slice(1), `${cam.namespace}/${cam.name}`].join(' › ')
        + (cam.online ? '' : ' (offline)')
      : `${cam.namespace}/${cam.name}`;
    div.appendChild(name);
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', 'timeline');
    div.appendChild(svg);
    const stats = document.createElement('div');
    stats.className = 'stats';
    div.appendChild(stats);
    const evBox = document.createElement('div');
    evBox.className = 'events';
    div.appendChild(evBox);
    box.appendChild(div);
    if (!cam.remote) manualControls(cam, div);
    try {
      const base = camBase(cam);
      const rec = await api(base + `recordings?start=${start}&end=${end}`);
      // Events are optional to the timeline: a server (or child domain) without them shows none.
      let events = [];
      try { events = (await api(base + `events?start=${start}&end=${end}`)).events || []; }
      catch (_) { /* no event lane */ }
      drawTimeline(svg, rec, events, start, end, cam);
      loaded.set(camId(cam), { cam, rec, end });
      eventList(cam, events, end, evBox);
      stats.textContent = `${(rec.recordedMs / 1000).toFixed(0)} s recorded, ${rec.holes.length} holes, ${events.length} event${events.length === 1 ? "" : "s"}, ${(rec.bytes / 1048576).toFixed(1)} MiB`;
      svg.addEventListener('click', (ev) => {
        const b = svg.getBoundingClientRect();
        let t = start + (ev.clientX - b.left) / b.width * (end - start);
        // Clicking into a hole plays from the next recorded footage.
        const next = rec.recorded.find((s) => s.endMs > t);
        if (next && next.startMs > t) t = next.startMs;
        play(cam, t, end);
      });
      div.dataset.live = rec.live.length; div.dataset.backfill = rec.backfill.length; div.dataset.holes = rec.holes.length;
      div.dataset.events = events.length;
    } catch (e) {
      stats.textContent = 'error: ' + e.message;
    }
  }
  box.dataset.loaded = 'true';
  const want = deepLink.get('camera'), at = Number(deepLink.get('at'));
  if (want && at > 0 && loaded.has(want)) {
    deepLink.delete('camera');
    const { cam, rec, end } = loaded.get(want);
    const next = rec.recorded.find((s) => s.endMs > at);
    play(cam, next && next.startMs > at ? next.startMs : at, end);
  }
}

$('#refresh').addEventListener('click', load);
$('#window').addEventListener('change', load);
load();
