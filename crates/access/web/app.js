// Vigil playback page: camera list, a timeline per camera (live, backfilled, missing) with a
// lane of the camera's events above it, click to play with hls.js, an event's clip to download.
// Everything comes from the same server's JSON API.
'use strict';

const $ = (s) => document.querySelector(s);
const tokenInput = $('#token');
tokenInput.value = localStorage.getItem('vigil-token') || '';
tokenInput.addEventListener('change', () => { localStorage.setItem('vigil-token', tokenInput.value); load(); });

const { api, authHeaders, fmt } = Vigil;

async function send(method, path) {
  const r = await fetch(path, { method, headers: authHeaders() });
  let j = {};
  try { j = await r.json(); } catch (_) { /* no body */ }
  if (!r.ok) throw new Error(j.error || String(r.status));
  return j;
}

// Manual recording (Kubernetes mode): start for 5 minutes whatever the camera's mode, or stop
// early. Needs `create cameras/manual-recording`; hidden without it.
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

// Plays a camera's footage from `from` in the player, with its export link beside it.
function play(cam, from, end) {
  const base = camBase(cam);
  const live = Vigil.playRecorded($('#player'), base, from, end,
    (why) => { $('#status').textContent = 'playback error: ' + why; });
  $('#status').textContent = `${camId(cam)} from ${fmt(from)}${live ? ' (live)' : ''}`;
  const exportEnd = Math.min(end, from + 3600000);
  $('#export').innerHTML = '';
  if (canExport(cam)) {
    $('#export').appendChild(Vigil.exportLink(base, () => [from, exportEnd],
      `Download MP4 (${fmt(from)} – ${fmt(exportEnd)})`));
  }
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
  let cams, listing;
  try { listing = await api('api/v1/cameras'); cams = listing.cameras; }
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
    // The camera's page: live beside this timeline (a child domain's camera with the live right).
    if (!cam.remote || (cam.rights || []).includes('live')) {
      const open = document.createElement('a');
      open.className = 'open';
      open.href = `camera.html?camera=${encodeURIComponent(camId(cam))}`;
      open.textContent = 'live ›';
      name.append(' ', open);
    }
    div.appendChild(name);
    box.appendChild(div);
    // Only where the server has manual recording (Kubernetes mode), so that no call fails.
    if (!cam.remote && listing.manualRecording) manualControls(cam, div);
    try {
      const { rec } = await Vigil.cameraTimeline(div, camBase(cam), start, end, canExport(cam),
        (from) => play(cam, from, end));
      loaded.set(camId(cam), { cam, rec, end });
    } catch (_) { /* the camera's stats line says why */ }
  }
  box.dataset.loaded = 'true';
  const want = deepLink.get('camera'), at = Number(deepLink.get('at'));
  if (want && at > 0 && loaded.has(want)) {
    deepLink.delete('camera');
    const { cam, rec, end } = loaded.get(want);
    play(cam, Vigil.nextFootage(rec, at), end);
  }
}

$('#refresh').addEventListener('click', load);
$('#window').addEventListener('change', load);
load();
