#!/usr/bin/env python3
"""Self-test of the NAT harness (net.sh): does a UDP hole punched through both NATs open?

Roles (one process each):
  rendezvous ADDR:PORT          on the host: remembers the address each peer's packets come
                                from (its reflexive address) and tells each peer the other's.
  peer NAME RENDEZVOUS SECONDS  inside a namespace: registers, learns the other's reflexive
                                address, sends to it every 100 ms; exits 0 when a packet from
                                the other peer arrives, 1 when SECONDS pass without one.

  echo ADDR:PORT                answers every UDP packet with its payload.
  probe ADDR:PORT               exits 0 when ADDR:PORT echoes a packet within 1 s, 1 otherwise.

With endpoint-independent NATs on both sides the hole opens; with a symmetric NAT on either side
it must not (the harness is only useful if it can show both).
"""

import socket
import sys
import time


def rendezvous(bind: str) -> None:
    host, port = bind.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, int(port)))
    peers: dict[str, tuple[str, int]] = {}
    while True:
        data, addr = s.recvfrom(512)
        name = data.decode(errors="replace").strip()[:32]
        peers[name] = addr
        others = [f"{a[0]}:{a[1]}" for n, a in peers.items() if n != name]
        s.sendto((others[0] if others else "wait").encode(), addr)


def echo(bind: str) -> None:
    host, port = bind.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, int(port)))
    while True:
        data, addr = s.recvfrom(512)
        s.sendto(data, addr)


def probe(target: str) -> int:
    host, port = target.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    for _ in range(5):
        try:
            s.sendto(b"probe", (host, int(port)))
            if s.recvfrom(512)[0] == b"probe":
                return 0
        except OSError:
            continue
    return 1


def peer(name: str, rendezvous_addr: str, seconds: float) -> int:
    host, port = rendezvous_addr.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    s.settimeout(0.1)
    deadline = time.monotonic() + seconds
    other = None
    while time.monotonic() < deadline:
        if other is None:
            s.sendto(name.encode(), (host, int(port)))
        else:
            s.sendto(f"hello from {name}".encode(), other)
        try:
            data, addr = s.recvfrom(512)
        except socket.timeout:
            continue
        text = data.decode(errors="replace")
        if addr == (host, int(port)):
            if text != "wait" and other is None:
                h, p = text.rsplit(":", 1)
                other = (h, int(p))
        elif text.startswith("hello from"):
            # Answer once more so the other side sees us too before we exit.
            for _ in range(5):
                s.sendto(f"hello from {name}".encode(), addr)
            print(f"{name}: direct path open to {addr[0]}:{addr[1]}")
            return 0
    print(f"{name}: no direct path within {seconds} s (other side seen at {other})")
    return 1


if __name__ == "__main__":
    if sys.argv[1] == "rendezvous":
        rendezvous(sys.argv[2])
    elif sys.argv[1] == "echo":
        echo(sys.argv[2])
    elif sys.argv[1] == "probe":
        sys.exit(probe(sys.argv[2]))
    elif sys.argv[1] == "peer":
        sys.exit(peer(sys.argv[2], sys.argv[3], float(sys.argv[4])))
    else:
        sys.exit(__doc__)
