#!/usr/bin/env python3
"""Idle WebSocket capacity: how much memory one clawgate worker spends per idle,
authenticated WebSocket.

Starts its own gateway (one worker, loopback, port 0, a temp config with a long ping
interval so idle raw clients are not pinged away), opens COUNT WebSockets with a
minimal asyncio client (handshake and a masked `auth` frame in one write, waits for
`auth_ok`), samples the gateway's RSS from /proc before and after, holds them for a
few seconds, then closes everything and stops the gateway. Loopback only, bounded by
COUNT, stops by itself. Raises its own RLIMIT_NOFILE soft limit to what it needs.

    python3 loadtest/ws_idle.py [--count 10000] [--bin target/release/clawgate]

Prints one JSON line: count, rss_before_kib, rss_after_kib, per_socket_bytes.
"""

import argparse
import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

KEY = "sk-loadtest"
HANDSHAKE = (
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
).encode()


def masked_text(payload: bytes) -> bytes:
    key = b"\x11\x22\x33\x44"
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


AUTH = masked_text(json.dumps({"type": "auth", "token": KEY}).encode())


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def open_one(addr, port, sockets):
    reader, writer = await asyncio.open_connection(addr, port)
    writer.write(HANDSHAKE + AUTH)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head[:80])
    hdr = await reader.readexactly(2)
    body = await reader.readexactly(hdr[1] & 0x7F)
    if b"auth_ok" not in body:
        raise RuntimeError(body)
    sockets.append(writer)


async def main_async(args, addr, port, pid):
    sockets = []
    sem = asyncio.Semaphore(200)

    async def guarded():
        async with sem:
            await open_one(addr, port, sockets)

    before = rss_kib(pid)
    t0 = time.time()
    results = await asyncio.gather(*(guarded() for _ in range(args.count)), return_exceptions=True)
    failed = [r for r in results if isinstance(r, Exception)]
    await asyncio.sleep(args.hold)
    after = rss_kib(pid)
    opened = len(sockets)
    for w in sockets:
        w.close()
    return {
        "count": opened,
        "failed": len(failed),
        "first_error": repr(failed[0]) if failed else None,
        "open_seconds": round(time.time() - t0 - args.hold, 2),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "per_socket_bytes": round((after - before) * 1024 / max(opened, 1)),
        "io": os.environ.get("CLAWGATE_IO", "auto"),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--hold", type=float, default=3.0)
    ap.add_argument("--bin", default=os.environ.get("CLAWGATE_BIN", "target/release/clawgate"))
    args = ap.parse_args()
    need = args.count * 2 + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "ws_idle.toml")
        with open(cfg, "w") as f:
            f.write(
                f"""[server]
listen = "127.0.0.1:0"
workers = 1
max_connections_per_worker = {args.count + 100}
ws_ping_interval_ms = 3600000
ws_auth_timeout_ms = 60000

[[keys]]
name = "loadtest"
key = "{KEY}"
"""
            )
        # The gateway inherits the raised descriptor limit.
        proc = subprocess.Popen([args.bin, "--config", cfg], stderr=subprocess.PIPE, text=True)
        try:
            addr = None
            for line in proc.stderr:
                m = re.search(r"listening on http://([\d.]+):(\d+)", line)
                if m:
                    addr = (m.group(1), int(m.group(2)))
                    break
            if addr is None:
                sys.exit("gateway did not start")
            time.sleep(0.5)
            result = asyncio.run(asyncio.wait_for(main_async(args, addr[0], addr[1], proc.pid), 600))
            print(json.dumps(result))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
