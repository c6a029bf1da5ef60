// Opens the playback page in headless Debian Chromium and checks the timeline and playback.
// Usage: node timeline.mjs <base-url> <screenshot.png>
// Prints one line "N passed, M failed".
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const [base, shot] = process.argv.slice(2);
let passed = 0, failed = 0;
const check = (name, ok, detail = '') => {
  if (ok) { passed++; console.log(`ok   ${name}`); }
  else { failed++; console.log(`FAIL ${name} ${detail}`); }
};

const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-ui-chromium-'));
// A fresh profile directory per run (playwright passes it as --user-data-dir).
const browser = await chromium.launchPersistentContext(userDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1400, height: 700 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required'],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(base + '/', { waitUntil: 'load' });
  await page.waitForSelector('#cameras[data-loaded="true"]', { timeout: 20000 });
  const cams = await page.$$eval('.camera', (els) => els.map((e) => ({
    id: e.dataset.camera,
    live: e.querySelectorAll('rect.live').length,
    backfill: e.querySelectorAll('rect.backfill').length,
    holes: e.querySelectorAll('rect.hole').length,
    stats: e.querySelector('.stats').textContent,
  })));
  console.log(JSON.stringify(cams));
  check('camera list shows both cameras',
    cams.map((c) => c.id).join(',') === 'site-a/cam1,site-b/cam2', JSON.stringify(cams));
  const c1 = cams.find((c) => c.id === 'site-a/cam1') || {};
  const c2 = cams.find((c) => c.id === 'site-b/cam2') || {};
  check('cam1 timeline has live spans', c1.live >= 2, JSON.stringify(c1));
  check('cam1 timeline has a backfilled span', c1.backfill === 1, JSON.stringify(c1));
  check('cam1 timeline shows missing spans', c1.holes >= 2, JSON.stringify(c1));
  check('cam2 timeline has a live span', c2.live >= 1, JSON.stringify(c2));
  // Zoom to 15 minutes so that the spans are wide, then click inside cam1's first live span.
  await page.selectOption('#window', '900000');
  await page.waitForFunction(() => document.querySelector('#cameras').dataset.loaded === 'true'
    && document.querySelectorAll('.camera rect.live').length > 0, null, { timeout: 20000 });
  const box = await page.$eval('.camera[data-camera="site-a/cam1"] rect.live', (r) => {
    const b = r.getBoundingClientRect();
    return { x: b.x + b.width * 0.2, y: b.y + b.height / 2 };
  });
  await page.mouse.click(box.x, box.y);
  let played = false;
  try {
    await page.waitForFunction(() => {
      const v = document.querySelector('#player');
      return v && v.currentTime > 2 && v.videoWidth > 0;
    }, null, { timeout: 30000 });
    played = true;
  } catch (_) { /* reported below */ }
  const state = await page.$eval('#player', (v) => ({ t: v.currentTime, w: v.videoWidth, h: v.videoHeight, err: v.error && v.error.code }));
  const status = await page.$eval('#status', (e) => e.textContent);
  check('clicking the timeline plays the footage with hls.js', played, JSON.stringify({ state, status }));
  check('export link offered', (await page.$$('#export a')).length === 1);
  check('no page errors', errors.length === 0, errors.join('; '));
  // Screenshot at 5 minutes so that the spans of this short recording are visible.
  await page.selectOption('#window', '300000');
  await page.waitForFunction(() => document.querySelector('#cameras').dataset.loaded === 'true', null, { timeout: 20000 });
  await page.waitForTimeout(500);
  fs.mkdirSync(path.dirname(shot), { recursive: true });
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);
} catch (e) {
  failed++;
  console.log(`FAIL unexpected error: ${e}`);
} finally {
  await browser.close();
  fs.rmSync(userDir, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
