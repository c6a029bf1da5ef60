// Viewers per core: opens N WebRTC (WHEP) sessions of one camera in one headless Chromium page
// (no <video>: the page only receives), keeps them for a while, and prints how many connected
// and the bytes they received. The caller measures the access point's CPU and memory meanwhile.
// Usage: node live_density.mjs <base-url> <camera ns/name> <viewers> <seconds>
import { launch } from './harness.mjs';

const [base, camera, nArg, secArg] = process.argv.slice(2);
const n = Number(nArg), seconds = Number(secArg);
const { browser, close } = await launch();
try {
  const page = await browser.newPage();
  page.on('console', (m) => console.log(m.text()));
  await page.goto(`${base}/healthz`);
  const r = await page.evaluate(async ({ camera, n, seconds }) => {
    const pcs = [];
    for (let i = 0; i < n; i++) {
      const pc = new RTCPeerConnection();
      pc.addTransceiver('video', { direction: 'recvonly' });
      await pc.setLocalDescription(await pc.createOffer());
      const resp = await fetch(`/api/v1/cameras/${camera}/whep`, {
        method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp,
      });
      if (resp.status !== 201) throw new Error(`WHEP ${resp.status}`);
      await pc.setRemoteDescription({ type: 'answer', sdp: await resp.text() });
      pcs.push(pc);
    }
    const bytes = async () => {
      let b = 0;
      for (const pc of pcs) (await pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp') b += s.bytesReceived; });
      return b;
    };
    await new Promise((r) => setTimeout(r, 4000));
    const b0 = await bytes();
    const t0 = performance.now();
    console.log('MEASURE_START');
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const b1 = await bytes();
    const connected = pcs.filter((pc) => pc.connectionState === 'connected').length;
    return { connected, kbitPerViewer: Math.round((b1 - b0) * 8 / ((performance.now() - t0) / 1000) / n / 1000) };
  }, { camera, n, seconds });
  console.log(`density: ${JSON.stringify({ viewers: n, ...r })}`);
} finally {
  await close();
}
