// A camera's page in headless Debian Chromium, reached from the live grid: the tile's export
// link downloads a playable MP4; the tile's name opens camera.html, which shows a moving live
// picture (the burnt-in clock read off the frames) beside the camera's timeline with
// recordings; "⟲ 30 s" plays the recording from about 30 s ago in place of live (moving, its
// clock 20–60 s behind), its export link downloads a playable MP4 (fetched with the page's
// token), and "● Live" brings the live picture back. No page errors and no failed requests.
// Usage: node camera.mjs <base-url> <camera ns/name> <camera sim name> <screenshot.png>
// (VIGIL_TOKEN: a bearer token for an access point with authentication, e.g. the demo's.)
// Exports are checked with ffprobe (h264, frames > 0). Prints one line "N passed, M failed".
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { checks, launch, measure, pct } from './harness.mjs';

const [base, camera, simName, shot] = process.argv.slice(2);
const t = checks();
const check = t.check;
const t0 = Date.now();
const dl = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-ui-export-'));

// ffprobe of a downloaded export: codec, frames decoded, duration.
function probe(file) {
  try {
    const out = execFileSync('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0',
      '-show_entries', 'stream=codec_name,nb_read_frames:format=duration', '-of', 'json', file]).toString();
    const j = JSON.parse(out);
    const s = (j.streams || [])[0] || {};
    return { codec: s.codec_name, frames: Number(s.nb_read_frames || 0), seconds: Number(j.format && j.format.duration),
      bytes: fs.statSync(file).size };
  } catch (e) {
    return { error: String(e).slice(0, 200) };
  }
}

// Clicks `sel`, saves the download it starts, and probes it.
async function download(page, sel, name) {
  const [d] = await Promise.all([page.waitForEvent('download', { timeout: 30000 }), page.click(sel)]);
  const file = path.join(dl, name);
  await d.saveAs(file);
  return { name: d.suggestedFilename(), ...probe(file) };
}
const playable = (p) => p.codec === 'h264' && p.frames > 0 && p.seconds > 1;

// Waits until the `sel` video shows more than `after` s of picture.
async function playing(page, sel, after, timeout) {
  try {
    await page.waitForFunction(([s, a]) => {
      const v = document.querySelector(s);
      return v && !v.hidden && v.videoWidth > 0 && v.currentTime > a;
    }, [sel, after], { timeout });
    return true;
  } catch (_) { return false; }
}

// Samples the frames of `sel` for `seconds`: moving (burnt-in clock advancing) and how far
// behind the wall clock (p50, ms).
async function sample(page, sel, seconds) {
  const m = await page.evaluate(measure, { simName, seconds, selector: sel });
  const burnt = m.samples.map((s) => s.burnt);
  return {
    frames: m.frames, readable: m.samples.length, distinct: new Set(burnt).size,
    moving: new Set(burnt).size >= seconds * 8 && burnt.every((x, i) => i === 0 || x >= burnt[i - 1]),
    behindMs: m.samples.length ? Math.round(pct(m.samples.map((s) => s.latency), 50)) : null,
  };
}

const { browser, close } = await launch({ viewport: { width: 1280, height: 600 }, args: ['--autoplay-policy=no-user-gesture-required'] });
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // Any failed request the page makes (e.g. a 501 for a call the server does not have).
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`${m.text()} ${m.location().url || ''}`); });

  // VIGIL_TOKEN: the bearer token the pages use (an access point with authentication).
  const token = process.env.VIGIL_TOKEN;
  if (token) await page.addInitScript((x) => localStorage.setItem('vigil-token', x), token);
  // The live grid's tile: an export link and the way to the camera's page.
  await page.goto(`${base}/live.html?camera=${camera}`, { waitUntil: 'load' });
  const tileLive = await playing(page, '.tile video', 0.5, 20000);
  const tile = await page.$eval('.tile', (el) => ({
    page: el.querySelector('a.label') && el.querySelector('a.label').getAttribute('href'),
    export: !!el.querySelector('a.export'),
  }));
  check('a live tile links to the camera\'s page and to its export',
    tileLive && tile.export && tile.page === `/camera.html?camera=${encodeURIComponent(camera)}`, JSON.stringify(tile));
  const tileExport = tile.export ? await download(page, '.tile a.export', 'tile.mp4') : {};
  console.log(`tile export (last 5 min): ${JSON.stringify(tileExport)}`);
  check('the tile\'s export link downloads a playable MP4 (ffprobe: h264, frames)', playable(tileExport),
    JSON.stringify(tileExport));

  // From here on the page has a token (without VIGIL_TOKEN one the --no-auth server ignores):
  // exports are fetched with it and saved from memory, the path a signed-in user takes.
  if (!token) await page.evaluate(() => localStorage.setItem('vigil-token', 'e2e-token-ignored-by-no-auth'));
  const opened = Date.now();
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('.tile a.label')]);
  const live = await playing(page, '#live', 0.5, 20000);
  const liveAfterMs = Date.now() - opened;
  const m1 = live ? await sample(page, '#live', 3) : null;
  console.log(`camera page live: ${JSON.stringify({ afterMs: liveAfterMs, ...m1 })}`);
  check('the camera\'s page shows a moving live picture (burnt-in clock, < 2 s behind)',
    live && m1.moving && m1.behindMs !== null && m1.behindMs < 2000, JSON.stringify({ url: page.url(), ...m1 }));
  // The timeline beside it, with this camera's recordings.
  let timeline = null;
  try {
    await page.waitForSelector('#timeline[data-loaded="true"]', { timeout: 15000 });
    timeline = await page.evaluate(() => {
      const tl = document.querySelector('#timeline'), v = document.querySelector('#view');
      const a = v.getBoundingClientRect(), b = tl.getBoundingClientRect();
      return { live: tl.querySelectorAll('rect.live').length, stats: tl.querySelector('.stats').textContent,
        besideLive: b.left >= a.right && b.top < a.bottom };
    });
  } catch (_) { /* reported below */ }
  check('beside the live picture, the camera\'s timeline shows its recordings',
    timeline && timeline.live >= 1 && timeline.besideLive && /^[1-9][0-9]* s recorded/.test(timeline.stats),
    JSON.stringify(timeline));

  // "⟲ 30 s": the recording from 30 s ago, in place of the live picture.
  const clicked = Date.now();
  await page.click('#back30');
  const replay = await playing(page, '#player', 1, 30000);
  const m2 = replay ? await sample(page, '#player', 2) : null;
  const mode = await page.$eval('#view', (v) => v.dataset.mode);
  // The timeline marks the playback position (refreshed twice a second).
  await page.waitForTimeout(600);
  const cursor = await page.$eval('#timeline', (tl) => !!tl.querySelector('rect.cursor'));
  const liveHidden = await page.$eval('#live', (v) => v.hidden && !v.srcObject);
  console.log(`camera page back 30 s: ${JSON.stringify({ afterMs: Date.now() - clicked, mode, liveHidden, cursor, ...m2 })}`);
  check('"⟲ 30 s" plays the recording from ~30 s ago in place of live (moving, 20–60 s behind, marked on the timeline)',
    replay && mode === 'playback' && liveHidden && cursor && m2.moving && m2.behindMs > 20000 && m2.behindMs < 60000,
    JSON.stringify({ mode, liveHidden, cursor, ...m2 }));
  fs.mkdirSync(path.dirname(shot), { recursive: true });
  await page.screenshot({ path: shot });
  const fromExport = (await page.$('#export a.export-from'))
    ? await download(page, '#export a.export-from', 'from.mp4') : {};
  console.log(`camera page export (5 min from the playback start, with the token): ${JSON.stringify(fromExport)}`);
  check('the camera page\'s export link downloads a playable MP4 (ffprobe: h264, frames)', playable(fromExport),
    JSON.stringify(fromExport));

  // "● Live": the live picture again.
  await page.click('#golive');
  const again = await page.waitForFunction(() => document.querySelector('#view').dataset.mode === 'live'
    && document.querySelector('#player').hidden, null, { timeout: 5000 }).then(() => true, () => false);
  const back = again && await playing(page, '#live', 0.5, 20000);
  const m3 = back ? await sample(page, '#live', 2) : null;
  check('"● Live" brings the live picture back (moving, < 2 s behind)',
    back && m3.moving && m3.behindMs < 2000, JSON.stringify(m3));
  check('no page errors or failed requests on the live grid and the camera\'s page', errors.length === 0,
    errors.join('; '));
  console.log(`camera page test: ${Date.now() - t0} ms, screenshot ${shot}`);
} catch (e) {
  t.unexpected(e);
} finally {
  await close();
  fs.rmSync(dl, { recursive: true, force: true });
}
t.finish();
