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
