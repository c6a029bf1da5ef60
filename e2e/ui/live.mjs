// Opens the live page in headless Debian Chromium and checks that a camera of the simulator
// plays over WebRTC with a moving picture, and measures glass-to-glass latency: the simulator
// burns the UTC time in ms into every frame; for each frame shown (requestVideoFrameCallback)
// the page reads those digits off the picture and compares them with the clock (same machine).
// Usage: node live.mjs <base-url> <camera ns/name> <camera sim name> <seconds> <screenshot.png>
// (a child domain's camera: `<domain path>:ns/name`). VIGIL_TOKEN: the bearer token the page
// uses; VIGIL_LIVE_NO_BACK=1 leaves out "back 30 s". VIGIL_LIVE_PROTO=hls: the same checks over
// LL-HLS (the page's `?proto=hls`), also without "back 30 s" (the WebRTC run covers it).
// VIGIL_LIVE_EXPECT_ICE=tcp|udp: checks the transport of the browser's selected candidate pair.
// VIGIL_LIVE_RESTART: a shell command run once the picture plays (a recorder SIGKILL); the page
// then waits for a frame burnt after it. With VIGIL_LIVE_WATCH_SECONDS=N instead: watches N s
// after the command and reports the longest the picture stood still (a planned move).
// Prints the figures as JSON and one line "N passed, M failed".
import fs from 'node:fs';
import path from 'node:path';
import { checks, launch, measure, pct } from './harness.mjs';
import { execSync } from 'node:child_process';

const [base, camera, simName, secondsArg, shot] = process.argv.slice(2);
const seconds = Number(secondsArg || 15);
const overHls = process.env.VIGIL_LIVE_PROTO === 'hls';
const protoName = overHls ? 'LL-HLS' : 'WebRTC';
const t = checks();
const check = t.check;

// The longest the picture stood still (between two frames shown that moved the burnt-in clock
// on, or from the last such frame to `endAt`, ms) and the most its clock went back, ms.
function stillness(samples, endAt) {
  let longestStillMs = 0, rewindMs = 0, newest = null, prev = null;
  for (const x of samples) {
    const at = x.burnt + x.latency;
    if (prev) rewindMs = Math.max(rewindMs, prev.burnt - x.burnt);
    if (!newest || x.burnt > newest.burnt) {
      if (newest) longestStillMs = Math.max(longestStillMs, at - newest.at);
      newest = { burnt: x.burnt, at };
    }
    prev = x;
  }
  if (newest) longestStillMs = Math.max(longestStillMs, endAt - newest.at);
  return { longestStillMs: Math.round(longestStillMs), rewindMs };
}

const { browser, close } = await launch({ viewport: { width: 800, height: 500 }, args: ['--autoplay-policy=no-user-gesture-required'] });
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().includes('404')) console.log(`page: ${m.text()} ${m.location().url || ''}`); });
  // The page keeps the bearer token in localStorage (the token field).
  if (process.env.VIGIL_TOKEN) await page.addInitScript((t) => localStorage.setItem('vigil-token', t), process.env.VIGIL_TOKEN);
  const opened = Date.now();
  await page.goto(`${base}/live.html?camera=${camera}${overHls ? '&proto=hls' : ''}`, { waitUntil: 'load' });
  let playing = false;
  try {
    await page.waitForFunction(() => {
      const v = document.querySelector('video');
      return v && v.videoWidth > 0 && v.currentTime > 0.5;
    }, null, { timeout: 20000 });
    playing = true;
  } catch (_) { /* reported below */ }
  const state = await page.$eval('.tile', (t) => {
    const v = t.querySelector('video');
    return { error: t.dataset.error || null, proto: t.dataset.proto, w: v.videoWidth, h: v.videoHeight, t: v.currentTime,
      firstFrameMs: Number(v.dataset.firstFrameMs || NaN) };
  });
  check(`the live page plays the camera over ${protoName}`,
    playing && state.proto === (overHls ? 'hls' : 'webrtc'), JSON.stringify(state));
  if (playing && !overHls && process.env.VIGIL_LIVE_BADGES) {
    // Status badges (VIGIL_LIVE_BADGES=1, set by live_test.sh): the tile of a camera being
    // recorded says so (from its recordings of the last 10 min); the rules on made-up answers
    // (holes, backfill, nothing recent).
    let recording = false;
    try {
      await page.waitForSelector('.tile .badges[data-badges~="recording"]', { timeout: 15000 });
      recording = true;
    } catch (_) { /* reported below */ }
    const rules = await page.evaluate(() => {
      const now = 1_000_000_000;
      const iv = (a, b) => ({ startMs: now - a, endMs: now - b });
      const f = (rec) => window.vigilTileBadges({ live: [], backfill: [], holes: [], ...rec }, now).join(' ');
      return [
        f({ live: [iv(600000, 4000)], holes: [iv(4000, 0)] }),
        f({ live: [iv(600000, 300000), iv(290000, 4000)], holes: [iv(300000, 290000), iv(4000, 0)] }),
        f({ live: [iv(600000, 300000), iv(299000, 4000)], holes: [iv(300000, 299000)] }),
        f({ live: [iv(600000, 120000)], holes: [iv(120000, 0)] }),
        f({ live: [iv(600000, 300000)], backfill: [iv(300000, 60000)], holes: [iv(60000, 0)] }),
      ];
    });
    const want = ['recording', 'recording degraded', 'recording', 'not-recording', 'not-recording backfilling'];
    check('the live tile shows a "recording" badge; badge rules (degraded, backfilling, not recording)',
      recording && JSON.stringify(rules) === JSON.stringify(want), JSON.stringify({ recording, rules }));
  }
  if (playing) {
    const m = await page.evaluate(measure, { simName, seconds });
    const burnt = m.samples.map((s) => s.burnt);
    const distinct = new Set(burnt).size;
    const increasing = burnt.every((t, i) => i === 0 || t >= burnt[i - 1]);
    const span = burnt.length ? burnt[burnt.length - 1] - burnt[0] : 0;
    const lat = m.samples.map((s) => s.latency);
    const figures = {
      framesShown: m.frames, readable: m.samples.length, unreadable: m.unreadable,
      distinctTimes: distinct, spanMs: span,
      latencyMs: { p50: Math.round(pct(lat, 50)), p95: Math.round(pct(lat, 95)), max: Math.round(pct(lat, 100)), min: Math.round(pct(lat, 0)) },
      firstFrameMs: state.firstFrameMs, pageToPlayingMs: null, size: `${m.width}x${m.height}`,
      longestStillMs: stillness(m.samples, Date.now()).longestStillMs,
    };
    console.log(`live figures${overHls ? ' (LL-HLS)' : ''}: ${JSON.stringify(figures)}`);
    // A moving picture: the clock burnt into the frames shown advances with real time.
    check('the picture moves (burnt-in clock advances frame by frame)',
      distinct >= seconds * 10 && increasing && span >= (seconds - 3) * 1000, JSON.stringify(figures));
    check('most frames shown are readable (passed through untouched)',
      m.samples.length >= 0.8 * m.frames, JSON.stringify(figures));
    // WebRTC: plausible (target p50 300 ms, measured in docs/benchmarks.md); LL-HLS: the
    // issue's target p50 ≤ 1.5 s (override with VIGIL_LIVE_HLS_P50_MS on a loaded machine).
    const latOk = overHls
      ? figures.latencyMs.min > -50 && figures.latencyMs.p50 <= Number(process.env.VIGIL_LIVE_HLS_P50_MS || 1500)
      : figures.latencyMs.min > -50 && figures.latencyMs.p95 < 2000;
    check(overHls ? 'latency p50 within 1.5 s (LL-HLS target)' : 'latency is plausible (between 0 and 2 s)', latOk,
      JSON.stringify(figures.latencyMs));
    const firstWithin = Number(process.env.VIGIL_LIVE_FIRST_FRAME_WITHIN_MS || 5000);
    check(`first frame within ${firstWithin} ms of opening (target 1 s: measured, see docs/benchmarks.md)`, state.firstFrameMs < firstWithin, String(state.firstFrameMs));
  }
  if (playing && process.env.VIGIL_LIVE_EXPECT_ICE) {
    // The transport the browser chose: the remote (access point) candidate of the selected pair.
    const remote = await page.evaluate(async () => {
      const st = await window.vigilLive[0].getStats();
      let pair = null;
      st.forEach((r) => { if (r.type === 'transport' && r.selectedCandidatePairId) pair = st.get(r.selectedCandidatePairId); });
      if (!pair) st.forEach((r) => { if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r; });
      const c = pair && st.get(pair.remoteCandidateId);
      return c ? { protocol: c.protocol, port: c.port, tcpType: c.tcpType || null } : null;
    });
    const want = process.env.VIGIL_LIVE_EXPECT_ICE;
    const port = Number(new URL(base).port);
    check(`the WebRTC session runs over ICE-${want.toUpperCase()}${want === 'tcp' ? ' on the HTTP port' : ''}`,
      remote && remote.protocol === want && (want !== 'tcp' || remote.port === port), JSON.stringify(remote));
  }
  if (playing && process.env.VIGIL_LIVE_RESTART && process.env.VIGIL_LIVE_WATCH_SECONDS) {
    // Watch mode (a planned move): the hook starts something that takes a while (SIGTERM to the
    // recorder, which hands its cameras over); the page watches for that many seconds and
    // reports the longest the picture stood still (between two frames shown that moved the
    // burnt-in clock on) and the most it went back.
    const pcBefore = await page.evaluate(() => window.vigilLive.length);
    const hookAt = Date.now();
    execSync(process.env.VIGIL_LIVE_RESTART, { stdio: 'inherit' });
    const watch = await page.evaluate(measure, { simName, seconds: Number(process.env.VIGIL_LIVE_WATCH_SECONDS) });
    const { longestStillMs, rewindMs } = stillness(watch.samples, Date.now());
    const burnt = watch.samples.map((x) => x.burnt);
    const state2 = await page.evaluate(() => ({
      pcs: window.vigilLive.length, ice: window.vigilLive[0] && window.vigilLive[0].iceConnectionState,
    }));
    const figures = { hookAtMs: hookAt, framesShown: watch.frames, readable: watch.samples.length,
      longestStillMs, rewindMs, ...state2 };
    console.log(`live figures while watching the hook: ${JSON.stringify(figures)}`);
    check(`the same ${protoName} session shows a moving picture all through the hook's ${process.env.VIGIL_LIVE_WATCH_SECONDS} s`,
      new Set(burnt).size >= 10 && state2.pcs === pcBefore && state2.ice !== 'failed' && state2.ice !== 'closed',
      JSON.stringify(figures));
  } else if (playing && process.env.VIGIL_LIVE_RESTART) {
    // The recorder is SIGKILLed and started again 1 s later; the viewer's WebRTC session stays
    // up and the picture comes back (the access point reconnects to the recorder).
    const pcBefore = await page.evaluate(() => window.vigilLive.length);
    const killedAt = Date.now();
    execSync(process.env.VIGIL_LIVE_RESTART, { stdio: 'inherit' });
    // Frames burnt before this are old ones still on their way (default 1.5 s: the restart
    // test's recorder is down for 1 s); VIGIL_LIVE_AFTER_MS says otherwise.
    const afterMs = Number(process.env.VIGIL_LIVE_AFTER_MS || 1500);
    const backWithin = Number(process.env.VIGIL_LIVE_BACK_WITHIN_MS || 15000);
    const back = await page.evaluate(measure, { simName, seconds: 30, after: killedAt + afterMs });
    const state2 = await page.evaluate(() => ({
      pcs: window.vigilLive.length, ice: window.vigilLive[0] && window.vigilLive[0].iceConnectionState,
    }));
    const gap = back ? Math.round(back.shownAt - killedAt) : null;
    const more = back ? await page.evaluate(measure, { simName, seconds: 3 }) : null;
    const after = more ? more.samples.map((x) => x.latency) : [];
    state2.latencyAfterMs = after.length ? Math.round(pct(after, 50)) : null;
    console.log(`live figures${overHls ? ' (LL-HLS)' : ''} after recorder SIGKILL: ${JSON.stringify({ killedAtMs: killedAt, pictureBackAfterMs: gap, ...state2 })}`);
    // The picture moves again: a few more frames, their burnt-in clock advancing.
    const moreTimes = more ? more.samples.map((s) => s.burnt) : [];
    const moving = moreTimes.length >= 10 && new Set(moreTimes).size >= 10 && moreTimes[moreTimes.length - 1] > moreTimes[0];
    check(`after a recorder SIGKILL the same ${protoName} session shows a moving picture again within ${backWithin} ms`,
      back !== null && gap < backWithin && moving && state2.pcs === pcBefore && state2.ice !== 'failed' && state2.ice !== 'closed',
      JSON.stringify({ gap, ...state2 }));
  }
  check('no page errors', errors.length === 0, errors.join('; '));
  fs.mkdirSync(path.dirname(shot), { recursive: true });
  await page.screenshot({ path: shot });
  console.log(`screenshot: ${shot} (opened ${Date.now() - opened} ms ago)`);
  if (playing && !overHls && !process.env.VIGIL_LIVE_NO_BACK) {
    // "Back 30 s": from the live tile into the recordings page, which plays this camera from
    // 30 s before the click (or from its first footage after that): the frames shown are
    // recorded ones, their burnt-in clock well behind the wall clock, and moving.
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('.tile a.back')]);
    let replaying = false;
    try {
      await page.waitForFunction(() => {
        const v = document.querySelector('#player');
        return v && v.videoWidth > 0 && v.currentTime > 1;
      }, null, { timeout: 30000 });
      replaying = true;
    } catch (_) { /* reported below */ }
    const status = await page.$eval('#status', (e) => e.textContent).catch(() => '');
    const past = replaying ? await page.evaluate(measure, { simName, seconds: 2 }) : null;
    const behind = past && past.samples.length >= 10
      ? Math.round(pct(past.samples.map((x) => x.latency), 50)) : null;
    const moving = past ? new Set(past.samples.map((x) => x.burnt)).size >= 10 : false;
    console.log(`back 30 s: ${JSON.stringify({ status, behindMs: behind, frames: past && past.samples.length })}`);
    check('"back 30 s" plays this camera\'s recording from before the click (moving, 5–60 s behind)',
      replaying && status.startsWith(camera) && moving && behind > 5000 && behind < 60000,
      JSON.stringify({ status, behind, moving }));
  }
  check('no page errors on the recordings page', errors.length === 0, errors.join('; '));
  if (process.env.VIGIL_LIVE_H265_CAMERA) {
    // An H.265 camera on the default (WebRTC) page: WHEP refuses it at once (415) and the tile
    // plays it over LL-HLS instead (whether headless Chromium can decode H.265 is not asked).
    const cam = process.env.VIGIL_LIVE_H265_CAMERA;
    const p2 = await browser.newPage();
    const t0 = Date.now();
    await p2.goto(`${base}/live.html?camera=${cam}`, { waitUntil: 'load' });
    let switched = false;
    try {
      await p2.waitForSelector('.tile[data-proto="hls"]', { timeout: 4000 });
      switched = true;
    } catch (_) { /* reported below */ }
    const why = await p2.$eval('.tile', (t) => t.dataset.fallback || '');
    check('an H.265 camera\'s tile switches to LL-HLS at once (WHEP 415)',
      switched && why.includes('415'), JSON.stringify({ switched, afterMs: Date.now() - t0, why: why.slice(0, 120) }));
    await p2.close();
  }
} catch (e) {
  t.unexpected(e);
} finally {
  await close();
}
t.finish();
