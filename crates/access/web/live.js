// Live view: one WebRTC (WHEP) session per camera shown. `?camera=ns/name` (repeatable; a child
// domain's camera as the recordings page names it, `<domain path>:ns/name`) picks the cameras;
// without it, every camera the token may watch, up to 16, in a grid. Each tile links back 30 s
// into the recordings.
'use strict';
const $ = (s) => document.querySelector(s);
const tokenInput = $('#token');
tokenInput.value = localStorage.getItem('vigil-token') || '';
tokenInput.addEventListener('change', () => { localStorage.setItem('vigil-token', tokenInput.value); location.reload(); });
function auth() {
  const t = tokenInput.value.trim();
  return t ? { Authorization: 'Bearer ' + t } : {};
}

// A listed camera as this page shows it: its id, and its WHEP address (a child domain's camera
// is watched through this access point, which reads it through the child: docs/cascade.md).
function shown(c) {
  if (!c.remote) return { id: `${c.namespace}/${c.name}`, whep: `/api/v1/cameras/${c.namespace}/${c.name}/whep` };
  return {
    id: `${c.domainPath.join('/')}:${c.namespace}/${c.name}`,
    whep: `/api/v1/domains/${c.domainNamespace}/${c.domainPath.join(':')}/cameras/${c.namespace}/${c.name}/whep`,
  };
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
  if (r.status !== 201) throw new Error(`WHEP ${r.status}: ${await r.text()}`);
  const session = r.headers.get('Location');
  await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
  video.dataset.session = session || '';
  window.addEventListener('pagehide', () => {
    if (session) fetch(session, { method: 'DELETE', headers: auth(), keepalive: true });
    pc.close();
  });
  return pc;
}

async function main() {
  const status = $('#status');
  const wanted = new URLSearchParams(location.search).getAll('camera');
  // This domain's cameras need no listing; a child domain's are looked up in it.
  let cams = wanted.filter((w) => !w.includes(':'))
    .map((id) => ({ id, whep: `/api/v1/cameras/${id}/whep` }));
  if (cams.length < wanted.length || !wanted.length) {
    const r = await fetch('/api/v1/cameras', { headers: auth() });
    if (!r.ok) { status.textContent = `cameras: ${r.status}`; return; }
    const listed = (await r.json()).cameras
      .filter((c) => !c.remote || (c.rights || []).includes('live')).map(shown);
    cams = wanted.length
      ? wanted.map((w) => cams.find((c) => c.id === w) || listed.find((c) => c.id === w)).filter(Boolean)
      : listed.slice(0, 16);
  }
  const cols = Math.ceil(Math.sqrt(cams.length || 1));
  $('#grid').style.setProperty('--cols', cols);
  window.vigilLive = [];
  for (const cam of cams) {
    const tile = document.createElement('div');
    tile.className = 'tile';
    tile.dataset.camera = cam.id;
    const video = document.createElement('video');
    video.autoplay = true; video.muted = true; video.playsInline = true;
    const label = document.createElement('span');
    label.className = 'label';
    label.textContent = cam.id;
    // "What just happened": the recordings page, playing this camera from 30 s ago.
    const back = document.createElement('a');
    back.className = 'back';
    back.textContent = '⟲ 30 s';
    back.href = '/';
    back.addEventListener('click', () => {
      back.href = `/?camera=${encodeURIComponent(cam.id)}&at=${Date.now() - 30000}`;
    });
    tile.append(video, label, back);
    $('#grid').append(tile);
    const opened = performance.now();
    video.dataset.opened = String(opened);
    video.addEventListener('loadeddata', () => {
      video.dataset.firstFrameMs = String(Math.round(performance.now() - opened));
    }, { once: true });
    play(cam, video).then((pc) => window.vigilLive.push(pc)).catch((e) => {
      tile.dataset.error = String(e);
      label.textContent = `${cam.id}: ${e.message}`;
    });
  }
  status.textContent = `${cams.length} camera(s)`;
}
main();
