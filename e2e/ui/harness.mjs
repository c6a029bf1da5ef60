// What the Chromium tests share: headless Debian Chromium (never a downloaded browser) with a
// fresh profile, and the "ok / FAIL" bookkeeping that ends in one line "N passed, M failed".
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// Flags without which Chromium tries Google's hosts (refused on this closed network).
const QUIET = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// Starts Chromium with a new profile directory; `close()` ends it and removes the profile.
export async function launch({ viewport, args = [] } = {}) {
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-ui-chromium-'));
  const browser = await chromium.launchPersistentContext(userDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    ...(viewport ? { viewport } : {}),
    args: [...QUIET, ...args],
  });
  const close = async () => {
    await browser.close();
    fs.rmSync(userDir, { recursive: true, force: true });
  };
  return { browser, close };
}

// Counts checks; `finish()` prints the tally and exits 1 if any failed.
export function checks() {
  const t = { passed: 0, failed: 0 };
  t.check = (name, ok, detail = '') => {
    if (ok) { t.passed++; console.log(`ok   ${name}`); }
    else { t.failed++; console.log(`FAIL ${name} ${detail}`); }
  };
  t.unexpected = (e) => { t.failed++; console.log(`FAIL unexpected error: ${e}`); };
  t.finish = () => {
    console.log(`${t.passed} passed, ${t.failed} failed`);
    process.exit(t.failed ? 1 : 0);
  };
  return t;
}

// The playback page: clicks 20 % into the first element matching `sel` (a timeline span), waits
// until the player has shown more than `seconds` of video, and returns what it played (`played`
// false after `timeout` ms) with the page's status line.
export async function clickToPlay(page, sel, seconds, timeout = 30000) {
  const box = await page.$eval(sel, (r) => {
    const b = r.getBoundingClientRect();
    return { x: b.x + b.width * 0.2, y: b.y + b.height / 2 };
  });
  await page.mouse.click(box.x, box.y);
  let played = false;
  try {
    await page.waitForFunction((s) => {
      const v = document.querySelector('#player');
      return v && v.currentTime > s && v.videoWidth > 0;
    }, seconds, { timeout });
    played = true;
  } catch (_) { /* the caller reports it */ }
  const state = await page.$eval('#player', (v) => ({ t: v.currentTime, w: v.videoWidth, h: v.videoHeight, err: v.error && v.error.code }));
  const status = await page.$eval('#status', (e) => e.textContent);
  return { played, state, status };
}
