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

// Runs in the page (`page.evaluate(measure, {...})`): reads the burnt-in time of the frame
// being shown in the `selector` video (default the first), the same 5x7 template
// matching as crates/testkit/src/frames.rs (read_time), on a canvas copy of the frame.
export function measure({ simName, seconds, after, selector = 'video' }) {
  const DIGITS = [[0x3E, 0x51, 0x49, 0x45, 0x3E], [0x00, 0x42, 0x7F, 0x40, 0x00],
    [0x42, 0x61, 0x51, 0x49, 0x46], [0x21, 0x41, 0x45, 0x4B, 0x31], [0x18, 0x14, 0x12, 0x7F, 0x10],
    [0x27, 0x45, 0x45, 0x45, 0x39], [0x3C, 0x4A, 0x49, 0x49, 0x30], [0x01, 0x71, 0x09, 0x05, 0x03],
    [0x36, 0x49, 0x49, 0x49, 0x36], [0x06, 0x49, 0x49, 0x29, 0x1E]];
  const DIGIT_AT = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22];
  const video = document.querySelector(selector);
  const w = video.videoWidth, h = video.videoHeight;
  const scale = Math.max(2, Math.floor(h / 180));
  const ox = 8 * scale + (simName.length + 1) * 6 * scale, oy = 8 * scale;
  const sw = 23 * 6 * scale, sh = 9 * scale;
  const canvas = document.createElement('canvas');
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  function digit(gray, cx) {
    const inset = scale > 2 ? 1 : 0;
    const dots = [];
    for (let col = 0; col < 5; col++) for (let row = 0; row < 7; row++) {
      const x0 = cx + col * scale, y0 = (row + 1) * scale;
      let sum = 0, n = 0;
      for (let y = y0 + inset; y < y0 + scale - inset; y++) {
        for (let x = x0 + inset; x < x0 + scale - inset; x++) { sum += gray[y * sw + x]; n++; }
      }
      dots.push(sum / Math.max(n, 1));
    }
    const lo = Math.min(...dots), hi = Math.max(...dots);
    if (hi < lo + 64) return null;
    const cut = (lo + hi) / 2;
    let best = [1e9, 0], second = 1e9;
    DIGITS.forEach((g, d) => {
      let wrong = 0;
      for (let col = 0; col < 5; col++) for (let row = 0; row < 7; row++) {
        if (((g[col] >> row) & 1) === 1 !== (dots[col * 7 + row] > cut)) wrong++;
      }
      if (wrong < best[0]) { second = best[0]; best = [wrong, d]; } else if (wrong < second) second = wrong;
    });
    return best[0] <= 5 && second >= best[0] + 3 ? best[1] : null;
  }
  function readTime() {
    ctx.drawImage(video, 0, 0, w, h);
    const px = ctx.getImageData(ox, oy, sw, sh).data;
    const gray = new Float32Array(sw * sh);
    for (let i = 0; i < sw * sh; i++) gray[i] = 0.299 * px[4 * i] + 0.587 * px[4 * i + 1] + 0.114 * px[4 * i + 2];
    const d = [];
    for (const at of DIGIT_AT) {
      const v = digit(gray, at * 6 * scale);
      if (v === null) return null;
      d.push(v);
    }
    const num = (a, b) => d.slice(a, b).reduce((x, y) => x * 10 + y, 0);
    const t = Date.UTC(num(0, 4), num(4, 6) - 1, num(6, 8), num(8, 10), num(10, 12), num(12, 14), num(14, 17));
    return Number.isFinite(t) ? t : null;
  }
  // Waiting for the first frame burnt after `after` (UTC ms): resolves with when it was shown.
  if (after) {
    return new Promise((resolve) => {
      const end = performance.now() + seconds * 1000;
      const onFrame = (now, meta) => {
        const shownAt = performance.timeOrigin + (meta.expectedDisplayTime || now);
        const t = readTime();
        if (t !== null && t > after) resolve({ shownAt, burnt: t });
        else if (performance.now() > end) resolve(null);
        else video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
    });
  }
  return new Promise((resolve) => {
    const samples = [];
    let unreadable = 0, frames = 0;
    const end = performance.now() + seconds * 1000;
    const onFrame = (now, meta) => {
      frames++;
      // The wall-clock time at which this frame is presented.
      const shownAt = performance.timeOrigin + (meta.expectedDisplayTime || now);
      const t = readTime();
      if (t === null) unreadable++; else samples.push({ burnt: t, latency: shownAt - t });
      if (performance.now() < end) video.requestVideoFrameCallback(onFrame);
      else resolve({ samples, unreadable, frames, width: w, height: h });
    };
    video.requestVideoFrameCallback(onFrame);
  });
}

export const pct = (v, p) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))] : NaN;
};
