// A camera's page, `camera.html?camera=<id>` (ids as on the live grid; `&proto=hls` for
// LL-HLS): the live picture (live.js's `openLive`: WebRTC, LL-HLS as the fallback) beside the
// camera's recordings timeline (common.js, the recordings page's). "⟲ 30 s" plays the recording
// from 30 s ago in place of the live picture, a click on the timeline from there; "● Live"
// goes back. Export links: the last 5 minutes, and 5 minutes from where playback started.
'use strict';
(() => {
  const q = (s) => document.querySelector(s);
  const { fmt } = Vigil;
  const { openLive, resolveCameras, updateBadges, canExport, BADGE_EVERY_MS } = VigilLive;
  const params = new URLSearchParams(location.search);
  const view = q('#view'), liveVideo = q('#live'), player = q('#player');
  const label = q('#view .label'), status = q('#status');
  const TIMELINE_EVERY_MS = 30000;
  const EXPORT_MS = 5 * 60 * 1000;

  let cam = null, base = '';
  let session = null; // the live session while live
  let from = null; // where playback started (ms) while playing back
  let tl = null; // the timeline drawn: { svg, rec, start, end }

  // The export links: the last 5 minutes; while playing back, also 5 minutes from there.
  function exportLinks() {
    const box = q('#export');
    box.replaceChildren();
    if (!canExport(cam)) return;
    const last = Vigil.exportLink(base, () => [Date.now() - EXPORT_MS, Date.now()], '⤓ last 5 min');
    last.className = 'export-last';
    box.append(last);
    if (from !== null) {
      const f = from;
      const sel = Vigil.exportLink(base, () => [f, Math.min(f + EXPORT_MS, Date.now())], `⤓ 5 min from ${fmt(f).slice(11)}`);
      sel.className = 'export-from';
      box.append(sel);
    }
  }

  function showLive() {
    from = null;
    Vigil.stopRecorded(player);
    player.hidden = true;
    liveVideo.hidden = false;
    view.dataset.mode = 'live';
    q('#mode').textContent = 'LIVE';
    if (session) session.close();
    session = openLive(cam, view, liveVideo, label);
    status.textContent = `${cam.id}: live`;
    exportLinks();
  }

  // Plays the recording from `at` (or from the next footage after it) in place of live.
  function playFrom(at) {
    if (session) { session.close(); session = null; }
    from = tl ? Vigil.nextFootage(tl.rec, at) : at;
    liveVideo.hidden = true;
    player.hidden = false;
    view.dataset.mode = 'playback';
    q('#mode').textContent = 'PLAYBACK';
    player.dataset.from = String(from);
    Vigil.playRecorded(player, base, from, Date.now(),
      (why) => { status.textContent = `playback error: ${why}`; });
    status.textContent = `${cam.id} from ${fmt(from)}`;
    exportLinks();
  }

  async function loadTimeline() {
    const box = q('#timeline');
    box.dataset.loaded = 'false';
    const end = Date.now(), start = end - Number(q('#window').value);
    const div = document.createElement('div');
    try {
      const t = await Vigil.cameraTimeline(div, base, start, end, canExport(cam), playFrom);
      tl = { ...t, start, end };
      view.dataset.recordings = 'yes';
    } catch (e) {
      tl = null;
      // No `cameras/recordings`: live only.
      if (e.status === 401 || e.status === 403) view.dataset.recordings = 'no';
    }
    box.replaceChildren(...div.childNodes);
    for (const k of ['live', 'backfill', 'holes', 'events']) {
      if (div.dataset[k] !== undefined) box.dataset[k] = div.dataset[k]; else delete box.dataset[k];
    }
    box.dataset.loaded = 'true';
    moveCursor();
  }

  // The timeline's white mark: now while live, the playback position otherwise.
  function moveCursor() {
    if (!tl) return;
    const t = from === null ? Date.now() : from + player.currentTime * 1000;
    Vigil.setCursor(tl.svg, tl.start, tl.end, t);
  }

  async function main() {
    const id = params.get('camera');
    const toggle = q('#hls');
    toggle.checked = params.get('proto') === 'hls';
    toggle.addEventListener('change', () => {
      params.set('proto', toggle.checked ? 'hls' : 'webrtc');
      location.search = params.toString();
    });
    if (!id) { status.textContent = 'no camera (?camera=<namespace>/<name>)'; return; }
    try { [cam] = await resolveCameras([id]); }
    catch (e) { status.textContent = e.message; return; }
    if (!cam) { status.textContent = `${id}: no such camera, or no live view of it`; return; }
    base = `${cam.base}/`;
    document.title = `Vigil — ${cam.id}`;
    q('#title').textContent = cam.id;
    view.dataset.camera = cam.id;
    const badges = q('#view .badges');
    updateBadges(cam, badges);
    setInterval(() => updateBadges(cam, badges), BADGE_EVERY_MS);
    q('#back30').addEventListener('click', () => playFrom(Date.now() - 30000));
    q('#golive').addEventListener('click', showLive);
    q('#window').addEventListener('change', loadTimeline);
    showLive();
    await loadTimeline();
    setInterval(loadTimeline, TIMELINE_EVERY_MS);
    setInterval(moveCursor, 500);
  }
  main();
})();
