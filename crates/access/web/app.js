// Vigil playback page: camera list, a timeline per camera (live, backfilled, missing), click
// to play with hls.js. Everything comes from the same server's JSON API.
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

function drawTimeline(svg, rec, start, end) {
  const W = 1000;
  svg.setAttribute('viewBox', `0 0 ${W} 34`);
  svg.setAttribute('preserveAspectRatio', 'none');
  const x = (t) => (t - start) / (end - start) * W;
  for (const h of rec.holes) rect(svg, 'hole', x(h.startMs), x(h.endMs), 4, 22);
  for (const s of rec.live) rect(svg, 'live', x(s.startMs), x(s.endMs), 4, 22);
  for (const s of rec.backfill) rect(svg, 'backfill', x(s.startMs), x(s.endMs), 4, 22);
  for (let i = 0; i <= 4; i++) {
    const t = document.createElementNS(SVG, 'text');
    t.setAttribute('class', 'tick'); t.setAttribute('y', 33);
    t.setAttribute('x', i === 4 ? W - 60 : i * W / 4 + 2);
    t.textContent = new Date(start + (end - start) * i / 4).toISOString().slice(11, 19);
    svg.appendChild(t);
  }
}

let hls = null;
function play(cam, from, end) {
  const base = `api/v1/cameras/${cam.namespace}/${cam.name}/`;
  // Near now: follow the live edge (EVENT playlist without an end).
  const live = Date.now() - end < 60000;
  const url = base + `index.m3u8?start=${Math.floor(from)}` + (live ? '' : `&end=${Math.floor(end)}`);
  $('#status').textContent = `${cam.namespace}/${cam.name} from ${fmt(from)}${live ? ' (live)' : ''}`;
  const exportEnd = Math.min(end, from + 3600000);
  $('#export').innerHTML = '';
  const a = document.createElement('a');
  a.href = base + `export.mp4?start=${Math.floor(from)}&end=${Math.floor(exportEnd)}`;
  a.textContent = `Download MP4 (${fmt(from)} – ${fmt(exportEnd)})`;
  $('#export').appendChild(a);
  const video = $('#player');
  if (hls) { hls.destroy(); hls = null; }
  if (window.Hls && Hls.isSupported()) {
    hls = new Hls({ xhrSetup: (xhr) => { const h = authHeaders(); for (const k in h) xhr.setRequestHeader(k, h[k]); } });
    hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) $('#status').textContent = 'playback error: ' + d.details; });
    hls.loadSource(url);
    hls.attachMedia(video);
  } else {
    video.src = url; // Safari plays HLS natively
  }
  video.play().catch(() => {});
}

async function load() {
  const box = $('#cameras');
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
    div.dataset.camera = `${cam.namespace}/${cam.name}`;
    div.innerHTML = `<div class="name">${cam.namespace}/${cam.name}</div>`;
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', 'timeline');
    div.appendChild(svg);
    const stats = document.createElement('div');
    stats.className = 'stats';
    div.appendChild(stats);
    box.appendChild(div);
    if (!cam.remote) manualControls(cam, div);
    try {
      const rec = await api(`api/v1/cameras/${cam.namespace}/${cam.name}/recordings?start=${start}&end=${end}`);
      drawTimeline(svg, rec, start, end);
      stats.textContent = `${(rec.recordedMs / 1000).toFixed(0)} s recorded, ${rec.holes.length} holes, ${(rec.bytes / 1048576).toFixed(1)} MiB`;
      svg.addEventListener('click', (ev) => {
        const b = svg.getBoundingClientRect();
        let t = start + (ev.clientX - b.left) / b.width * (end - start);
        // Clicking into a hole plays from the next recorded footage.
        const next = rec.recorded.find((s) => s.endMs > t);
        if (next && next.startMs > t) t = next.startMs;
        play(cam, t, end);
      });
      div.dataset.live = rec.live.length; div.dataset.backfill = rec.backfill.length; div.dataset.holes = rec.holes.length;
    } catch (e) {
      stats.textContent = 'error: ' + e.message;
    }
  }
  box.dataset.loaded = 'true';
}

$('#refresh').addEventListener('click', load);
$('#window').addEventListener('change', load);
load();
