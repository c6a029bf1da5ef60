// Opens a parent domain's playback page in headless Debian Chromium and plays a child domain's
// camera through it (cascade, issue 16): the camera is listed under its domain, its timeline
// comes from the child through the parent, and clicking it plays with hls.js through the
// parent's proxy tunnel. Usage: node remote.mjs <parent-url> <token> <camera-id> <screenshot.png>
// (camera-id as the page names it: <domain path>:<ns>/<name>). Prints "N passed, M failed".
import fs from 'node:fs';
import path from 'node:path';
import { checks, clickToPlay, launch } from './harness.mjs';

const [base, token, camId, shot] = process.argv.slice(2);
const t = checks();
const check = t.check;

const { browser, close } = await launch({ viewport: { width: 1400, height: 700 }, args: ['--disable-quic', '--autoplay-policy=no-user-gesture-required'] });
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // The page keeps the bearer token in localStorage (the token field).
  await page.addInitScript((t) => localStorage.setItem('vigil-token', t), token);
  await page.goto(base + '/', { waitUntil: 'load' });
  await page.waitForSelector('#cameras[data-loaded="true"]', { timeout: 20000 });
  // 5 minutes: the child's few seconds of footage are wide enough to click.
  await page.selectOption('#window', '300000');
  await page.waitForFunction(() => document.querySelector('#cameras').dataset.loaded === 'true'
    && document.querySelectorAll('.camera').length > 0, null, { timeout: 20000 });
  const sel = `.camera[data-camera="${camId}"]`;
  const cam = await page.$eval(sel, (e) => ({
    name: e.querySelector('.name').textContent,
    live: e.querySelectorAll('rect.live').length,
    stats: e.querySelector('.stats').textContent,
  })).catch((e) => ({ error: String(e) }));
  console.log(JSON.stringify(cam));
  check('the child\'s camera is listed under its domain', (cam.name || '').includes('›'), JSON.stringify(cam));
  check('its timeline shows the footage recorded in the child', cam.live >= 1, JSON.stringify(cam));
  const run = cam.live >= 1 ? await clickToPlay(page, `${sel} rect.live`, 1) : { played: false };
  const { played, state, status } = run;
  check('clicking it plays the child\'s footage through the parent (hls.js)', played, JSON.stringify({ state, status }));
  check('no export link without the export right', (await page.$$('#export a')).length === 0);
  check('no page errors', errors.length === 0, errors.join('; '));
  fs.mkdirSync(path.dirname(shot), { recursive: true });
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);
} catch (e) {
  t.unexpected(e);
} finally {
  await close();
}
t.finish();
