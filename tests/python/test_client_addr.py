"""The client's address behind a balancer (issue 15): PROXY protocol v1 and v2 headers
written here, as HAProxy or an AWS NLB would, and `X-Forwarded-For` from trusted
proxies, decide the address in the access log and the per-IP limit
(`limits.ip_rpm`, which counts requests that bring no key)."""

import socket
import struct
import time

from conftest import Gateway

LIMITED = '\naccess_log = "text"\n[limits]\nip_rpm = 2'


def raw_request(gw: Gateway, prefix: bytes, headers: str = "") -> int | None:
    """Sends `prefix` then `GET /api/status` without a key; the status, or None when
    the connection closed unanswered."""
    host, port = gw.addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(prefix + f"GET /api/status HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data:
        return None
    return int(data.split(b" ", 2)[1])


def v1(src: str, port: int = 51000) -> bytes:
    return f"PROXY TCP4 {src} 10.0.0.1 {port} 443\r\n".encode()


def v2(src: str, port: int = 50000) -> bytes:
    body = socket.inet_aton(src) + socket.inet_aton("10.0.0.1") + struct.pack("!HH", port, 443)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def access_lines(gw: Gateway, needle: str) -> list[str]:
    deadline = time.time() + 5
    while time.time() < deadline:
        found = [l for l in gw.lines if (" access " in l or '"requestId"' in l) and needle in l]
        if found:
            return found
        time.sleep(0.05)
    return []


def test_proxy_protocol_v1_and_v2_give_the_client_address_to_the_limit_and_the_log():
    gw = Gateway(server_extra="proxy_protocol = true" + LIMITED)
    try:
        assert [raw_request(gw, v1("203.0.113.7")) for _ in range(3)] == [401, 401, 429]
        # Another client behind the same balancer has its own quota.
        assert raw_request(gw, v2("198.51.100.9")) == 401
        assert [raw_request(gw, v2("198.51.100.9")) for _ in range(2)] == [401, 429]
        assert access_lines(gw, "peer=203.0.113.7:51000")
        assert access_lines(gw, "peer=198.51.100.9:50000")
        # No header on a PROXY-protocol listener: closed unanswered.
        assert raw_request(gw, b"") is None
    finally:
        gw.stop()


def test_forwarded_for_counts_only_from_a_trusted_proxy():
    gw = Gateway(server_extra='trusted_proxies = ["127.0.0.1/32"]' + LIMITED)
    try:
        xff = "X-Forwarded-For: 1.2.3.4, 203.0.113.50\r\n"
        assert [raw_request(gw, b"", xff) for _ in range(3)] == [401, 401, 429]
        assert raw_request(gw, b"", "X-Forwarded-For: 203.0.113.51\r\n") == 401
        assert access_lines(gw, "peer=203.0.113.50:0")
    finally:
        gw.stop()
    gw = Gateway(server_extra='trusted_proxies = ["10.0.0.0/8"]' + LIMITED)
    try:
        # The gateway is reached from 127.0.0.1, not a trusted proxy: the header is
        # ignored and every request counts against 127.0.0.1.
        statuses = [raw_request(gw, b"", f"X-Forwarded-For: 203.0.113.{60 + i}\r\n") for i in range(3)]
        assert statuses == [401, 401, 429]
    finally:
        gw.stop()


def test_the_json_access_log_names_route_key_model_provider_and_tokens():
    import json
    import urllib.request

    from conftest import USER_KEY

    gw = Gateway(server_extra='access_log = "json"')
    try:
        req = urllib.request.Request(
            gw.http + "/api/chat",
            data=json.dumps({"message": "log me"}).encode(),
            headers={"Authorization": f"Bearer {USER_KEY}", "Content-Type": "application/json",
                     "X-Request-Id": "req-logged-1"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200
        [line] = access_lines(gw, "req-logged-1")
        entry = json.loads(line)
        assert entry["requestId"] == "req-logged-1" and entry["status"] == 200
        assert (entry["route"], entry["key"], entry["model"], entry["provider"]) == ("chat", "test-user", "mock", "mock")
        assert entry["tokensIn"] > 0 and entry["tokensOut"] > 0
        assert entry["peer"].startswith("127.0.0.1:") and entry["micros"] > 0
        # The upstream time: the provider's part of the request's duration.
        assert 0 <= entry["upstreamMicros"] <= entry["micros"]
        assert USER_KEY not in line, "never the key itself"

        # A streamed /v1 turn and an Anthropic-format turn name their model and
        # upstream time too (their tokens are in /metrics).
        for path, body, rid in [
            ("/v1/chat/completions", {"model": "mock", "stream": True, "messages": [{"role": "user", "content": "s"}]}, "req-logged-2"),
            ("/v1/messages", {"model": "mock", "max_tokens": 50, "messages": [{"role": "user", "content": "a"}]}, "req-logged-3"),
        ]:
            req = urllib.request.Request(
                gw.http + path,
                data=json.dumps(body).encode(),
                headers={"Authorization": f"Bearer {USER_KEY}", "Content-Type": "application/json",
                         "X-Request-Id": rid},
            )
            with urllib.request.urlopen(req, timeout=10) as r:
                assert r.status == 200
                r.read()
            [line] = access_lines(gw, rid)
            entry = json.loads(line)
            assert (entry["model"], entry["provider"]) == ("mock", "mock"), entry
            assert entry["upstreamMicros"] is not None and entry["upstreamMicros"] <= entry["micros"], entry
    finally:
        gw.stop()


def test_log_filters_set_a_level_per_module(monkeypatch):
    """`CLAWGATE_LOG` takes RUST_LOG-style directives: `error,server=debug` shows the
    connection loop's debug lines (a refused PROXY header) and nothing else's; plain
    `error` hides them."""
    for spec, shown in [("error,server=debug", True), ("error", False), ("error,clawgate::server::conn=debug", True)]:
        monkeypatch.setenv("CLAWGATE_LOG", spec)
        gw = Gateway(server_extra="proxy_protocol = true")
        try:
            assert raw_request(gw, b"PROXY NONSENSE\r\n") is None
            deadline = time.time() + (5 if shown else 1)
            found = []
            while time.time() < deadline and not found:
                found = [l for l in gw.lines if "debug: server: connection from" in l]
                time.sleep(0.05)
            assert bool(found) == shown, (spec, gw.lines[-5:])
            assert not [l for l in gw.lines if "debug:" in l and "debug: server:" not in l], gw.lines
        finally:
            gw.stop()
