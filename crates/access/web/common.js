// What the recordings page (app.js) and a camera's page (camera.js) share: the API with the
// page's bearer token, the timeline (live, backfilled, missing, the event lane), recorded
// playback with hls.js and export links. Everything is on `window.Vigil`.
'use strict';
(() => {
  // The token field's value, kept in localStorage by every page (`vigil-token`).
  function authHeaders() {
    const t = (localStorage.getItem('vigil-token') || '').trim();
    return t ? { Authorization: 'Bearer ' + t } : {};
  }

  async function api(path) {
    const r = await fetch(path, { headers: authHeaders() });
    if (!r.ok) {
      let msg = r.status + '';
      try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
      const e = new Error(msg);
      e.status = r.status;
      throw e;
    }
    return r.json();
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

  // Footage before and after an event that its "play" and "clip" include (the camera's own
  // pre/post buffers are recorded around it; this only frames the view).
  const EVENT_MARGIN_MS = 5000;
  const W = 1000;

  // Draws a camera's `recordings` answer and its events into `svg` for [start, end]: live,
  // backfilled and missing spans, the event lane above them (a click on an event calls
  // `onEvent(from)` with the time to play from), and time ticks.
  function drawTimeline(svg, rec, events, start, end, onEvent) {
    svg.replaceChildren();
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
      r.addEventListener('click', (e) => { e.stopPropagation(); onEvent(ev.startMs - EVENT_MARGIN_MS); });
    }
    for (let i = 0; i <= 4; i++) {
      const t = document.createElementNS(SVG, 'text');
      t.setAttribute('class', 'tick'); t.setAttribute('y', 39);
      t.setAttribute('x', i === 4 ? W - 60 : i * W / 4 + 2);
      t.textContent = new Date(start + (end - start) * i / 4).toISOString().slice(11, 19);
      svg.appendChild(t);
    }
  }

  // Where footage at `t` or after it starts (a time in a hole plays from the next footage).
  function nextFootage(rec, t) {
    const next = rec.recorded.find((s) => s.endMs > t);
    return next && next.startMs > t ? next.startMs : t;
  }

  // A click on the timeline calls `onPick(t)` with the time clicked (moved out of a hole).
  function onTimelineClick(svg, rec, start, end, onPick) {
    svg.addEventListener('click', (ev) => {
      const b = svg.getBoundingClientRect();
      onPick(nextFootage(rec, start + (ev.clientX - b.left) / b.width * (end - start)));
    });
  }

  // The white mark at `t` on a drawn timeline (the playback position, or now while live).
  function setCursor(svg, start, end, t) {
    let c = svg.querySelector('rect.cursor');
    if (t === null || t < start || t > end) { if (c) c.remove(); return; }
    if (!c) c = rect(svg, 'cursor', 0, 0, 7, 26);
    c.setAttribute('x', ((t - start) / (end - start) * W - 1).toFixed(2));
    c.setAttribute('width', '2');
  }

  // The camera's events, newest first (at most 10): time, type, length, play (`onPlay(from)`)
  // and, where `exportable`, clip links.
  function eventList(base, events, box, exportable, onPlay) {
    box.innerHTML = '';
    for (const ev of events.slice(-10).reverse()) {
      const row = document.createElement('div');
      row.className = 'event-row';
      row.dataset.type = ev.type;
      const secs = Math.max(0, (ev.endMs - ev.startMs) / 1000).toFixed(0);
      row.append(`${fmt(ev.startMs)} ${ev.type} (${secs} s) `);
      const p = document.createElement('a');
      p.href = '#'; p.className = 'event-play'; p.textContent = 'play';
      p.addEventListener('click', (e) => { e.preventDefault(); onPlay(ev.startMs - EVENT_MARGIN_MS); });
      row.append(p);
      if (exportable) {
        const clip = exportLink(base, () => [ev.startMs - EVENT_MARGIN_MS, ev.endMs + EVENT_MARGIN_MS], 'clip');
        clip.className = 'event-clip';
        row.append(' · ', clip);
      }
      box.appendChild(row);
    }
  }

  // A camera's timeline block into `div` (class `camera`): an svg timeline, a stats line and
  // the event list, for [start, end] from the camera's `recordings` and `events` (optional: a
  // server or child domain without them shows none). A click on the timeline or an event calls
  // `onPlay(from)`. Returns { rec, events, svg }; throws if the recordings cannot be read (the
  // stats line says why).
  async function cameraTimeline(div, base, start, end, exportable, onPlay) {
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', 'timeline');
    const stats = document.createElement('div');
    stats.className = 'stats';
    const evBox = document.createElement('div');
    evBox.className = 'events';
    div.append(svg, stats, evBox);
    let rec;
    try {
      rec = await api(base + `recordings?start=${start}&end=${end}`);
    } catch (e) {
      stats.textContent = 'error: ' + e.message;
      throw e;
    }
    let events = [];
    try { events = (await api(base + `events?start=${start}&end=${end}`)).events || []; }
    catch (_) { /* no event lane */ }
    drawTimeline(svg, rec, events, start, end, onPlay);
    eventList(base, events, evBox, exportable, onPlay);
    stats.textContent = `${(rec.recordedMs / 1000).toFixed(0)} s recorded, ${rec.holes.length} holes, ${events.length} event${events.length === 1 ? '' : 's'}, ${(rec.bytes / 1048576).toFixed(1)} MiB`;
    onTimelineClick(svg, rec, start, end, onPlay);
    div.dataset.live = rec.live.length; div.dataset.backfill = rec.backfill.length; div.dataset.holes = rec.holes.length;
    div.dataset.events = events.length;
    return { rec, events, svg };
  }

  // An export link (a playable MP4 of [start, end) from `range()`, asked when clicked, so
  // that "the last 5 minutes" are those before the click). Without a token the browser
  // downloads the answer as it streams; with one (a link cannot carry a header) the page
  // fetches it with the token and saves it.
  function exportLink(base, range, text) {
    const a = document.createElement('a');
    const href = () => {
      const [s, e] = range();
      return base + `export.mp4?start=${Math.floor(s)}&end=${Math.floor(e)}`;
    };
    a.href = href();
    a.textContent = text;
    a.setAttribute('download', '');
    a.addEventListener('click', async (ev) => {
      a.href = href();
      const auth = authHeaders();
      if (!auth.Authorization) return;
      ev.preventDefault();
      const was = a.textContent;
      a.textContent = `${was} (downloading…)`;
      try {
        const r = await fetch(a.href, { headers: auth });
        if (!r.ok) {
          let msg = String(r.status);
          try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
          throw new Error(msg);
        }
        const name = /filename="([^"]+)"/.exec(r.headers.get('content-disposition') || '');
        const url = URL.createObjectURL(await r.blob());
        const save = document.createElement('a');
        save.href = url;
        save.download = name ? name[1] : 'export.mp4';
        document.body.appendChild(save);
        save.click();
        save.remove();
        setTimeout(() => URL.revokeObjectURL(url), 60000);
        a.textContent = was;
      } catch (e) {
        a.textContent = `${was} (failed: ${e.message})`;
      }
    });
    return a;
  }

  // Plays `base`'s recorded footage from `from` in `video` with hls.js (Safari: natively); near
  // now (`end` within a minute) it follows the growing playlist. Returns whether it follows.
  function playRecorded(video, base, from, end, onError) {
    const live = Date.now() - end < 60000;
    const url = base + `index.m3u8?start=${Math.floor(from)}` + (live ? '' : `&end=${Math.floor(end)}`);
    if (video.vigilHls) { video.vigilHls.destroy(); video.vigilHls = null; }
    if (window.Hls && Hls.isSupported()) {
      // startPosition 0: from the time asked for (the playlist starts there), even when the
      // playlist is still growing (hls.js would otherwise start near its live edge).
      const hls = new Hls({
        startPosition: 0,
        xhrSetup: (xhr) => { const h = authHeaders(); for (const k in h) xhr.setRequestHeader(k, h[k]); },
      });
      hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal && onError) onError(d.details); });
      // On a growing (EVENT) playlist hls.js does not jump the small gap between time 0 and
      // the first frame (it does for VOD), so playback would sit at 0: start at the first frame.
      hls.on(Hls.Events.FRAG_BUFFERED, () => {
        const b = video.buffered;
        if (b.length && video.currentTime < b.start(0)) video.currentTime = b.start(0);
      });
      hls.loadSource(url);
      hls.attachMedia(video);
      video.vigilHls = hls;
    } else {
      video.src = url; // Safari plays HLS natively
    }
    video.play().catch(() => {});
    return live;
  }

  // Stops what `playRecorded` started.
  function stopRecorded(video) {
    if (video.vigilHls) { video.vigilHls.destroy(); video.vigilHls = null; }
    video.removeAttribute('src');
    video.load();
  }

  window.Vigil = {
    authHeaders, api, fmt, cameraTimeline, drawTimeline, nextFootage, onTimelineClick, setCursor, eventList,
    exportLink, playRecorded, stopRecorded, EVENT_MARGIN_MS,
  };
})();
