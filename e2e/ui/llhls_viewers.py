#!/usr/bin/env python3
"""N LL-HLS viewers of one camera, as hls.js does it in low-latency mode: a blocking playlist
reload for the next part (_HLS_msn/_HLS_part), then every new part. For measuring the access
point's CPU and memory per LL-HLS viewer (docs/benchmarks.md); not a CI test.

Usage: llhls_viewers.py <playlist URL> <viewers> <seconds>
Prints one line: viewers, parts and bytes received, errors, and playlist requests."""
import re
import sys
import threading
import time
import urllib.request

url, n, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
base = url.rsplit("/", 1)[0]
stats = {"parts": 0, "bytes": 0, "errors": 0, "playlists": 0}
lock = threading.Lock()
end = time.time() + secs


def get(u):
    with urllib.request.urlopen(u, timeout=10) as r:
        return r.read()


def viewer():
    seen = set()
    nxt = None
    while time.time() < end:
        try:
            q = f"?_HLS_msn={nxt[0]}&_HLS_part={nxt[1]}" if nxt else ""
            text = get(url + q).decode()
            with lock:
                stats["playlists"] += 1
            parts = re.findall(r'#EXT-X-PART:[^\n]*URI="(\d+)\.(\d+)\.mp4"', text)
            for m, p in parts[-3:]:
                if (m, p) not in seen:
                    seen.add((m, p))
                    b = get(f"{base}/{m}.{p}.mp4")
                    with lock:
                        stats["parts"] += 1
                        stats["bytes"] += len(b)
            h = re.search(r'PRELOAD-HINT:TYPE=PART,URI="(\d+)\.(\d+)\.mp4"', text)
            nxt = (h.group(1), h.group(2)) if h else None
        except Exception:
            with lock:
                stats["errors"] += 1
            time.sleep(0.2)


threads = [threading.Thread(target=viewer, daemon=True) for _ in range(n)]
for t in threads:
    t.start()
print("MEASURE_START", flush=True)
for t in threads:
    t.join()
print(f"llhls viewers={n} seconds={secs:.0f} parts={stats['parts']} "
      f"mbytes={stats['bytes'] / 1e6:.1f} playlists={stats['playlists']} errors={stats['errors']}")
