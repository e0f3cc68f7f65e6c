"""TLS termination on the listener (issue 15, `[server.tls]`): a private CA made here
with `cryptography`, and the clients users run: curl (TLS 1.3 and 1.2, ALPN), the
`openai` SDK streaming over HTTPS, Python `websockets` over wss, a certificate rotated
by SIGHUP under open connections, plain HTTP sent to the TLS port, failed handshakes
counted in `/metrics`, and certificate files that cannot be used."""

import asyncio
import datetime
import ipaddress
import json
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import openai
import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import ADMIN_KEY, USER_KEY, Gateway


class Pki:
    """A private CA in a temporary directory, issuing leaf certificates for
    `localhost` and 127.0.0.1."""

    def __init__(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clawgate test CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.ca_file = self.path / "ca.pem"
        self.ca_file.write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))
        self.cert_file = self.path / "cert.pem"
        self.key_file = self.path / "key.pem"

    def issue(self, common_name: str = "localhost") -> int:
        """Writes a new leaf certificate and key over `cert.pem` and `key.pem`; its
        serial number."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.ca.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return serial

    def server_extra(self, extra: str = "") -> str:
        return f'{extra}\n[server.tls]\ncert = "{self.cert_file}"\nkey = "{self.key_file}"\n'

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


@pytest.fixture
def pki():
    p = Pki()
    p.issue()
    yield p
    p.dir.cleanup()


@pytest.fixture
def tls_gateway(pki):
    gw = Gateway(server_extra=pki.server_extra('access_log = "text"'))
    yield gw
    gw.stop()


def port(gw: Gateway) -> int:
    return int(gw.addr.rsplit(":", 1)[1])


def https(gw: Gateway) -> str:
    return f"https://localhost:{port(gw)}"


def peer_serial(pki: Pki, gw: Gateway) -> int:
    """The serial number of the certificate a new connection is shown."""
    with socket.create_connection(("127.0.0.1", port(gw)), timeout=10) as raw:
        with pki.context().wrap_socket(raw, server_hostname="localhost") as s:
            der = s.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


def handshakes(pki: Pki, gw: Gateway) -> dict[str, float]:
    text = httpx.get(
        f"{https(gw)}/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, verify=pki.context()
    ).text
    out = {}
    for line in text.splitlines():
        if line.startswith("clawgate_tls_handshakes_total{"):
            result = line.split('result="', 1)[1].split('"', 1)[0]
            out[result] = float(line.rsplit(" ", 1)[1])
    return out


def curl(pki: Pki, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["curl", "-sS", "--cacert", str(pki.ca_file), *args], capture_output=True, text=True, timeout=30
    )


def test_curl_over_tls_1_3_and_1_2_with_alpn_http_1_1(pki, tls_gateway):
    url = f"{https(tls_gateway)}/health"
    r = curl(pki, "-v", "--tlsv1.3", url)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"status": "ok"}
    assert "TLSv1.3" in r.stderr
    assert "ALPN: server accepted http/1.1" in r.stderr
    r = curl(pki, "-v", "--tlsv1.2", "--tls-max", "1.2", url)
    assert r.returncode == 0, r.stderr
    assert "TLSv1.2" in r.stderr
    # A client that would prefer HTTP/2 is answered in HTTP/1.1.
    r = curl(pki, "--http2", "-o", "/dev/null", "-w", "%{http_version}", url)
    assert (r.returncode, r.stdout) == (0, "1.1"), r.stderr
    # A request with a body and the access log line.
    r = curl(
        pki,
        "-H",
        f"Authorization: Bearer {USER_KEY}",
        "-H",
        "Content-Type: application/json",
        "-d",
        '{"message":"over tls","stream":false}',
        f"{https(tls_gateway)}/api/chat",
    )
    assert r.returncode == 0 and "over tls" in json.loads(r.stdout)["data"]["message"], r.stdout + r.stderr
    deadline = time.time() + 5
    while time.time() < deadline and not any("/api/chat" in l and " 200 " in l for l in tls_gateway.lines):
        time.sleep(0.05)
    assert any("/api/chat" in l and " 200 " in l for l in tls_gateway.lines), tls_gateway.lines[-5:]


def test_openai_sdk_streams_over_https(pki, tls_gateway):
    http_client = httpx.Client(verify=pki.context())
    client = openai.OpenAI(base_url=f"{https(tls_gateway)}/v1", api_key=USER_KEY, http_client=http_client)
    stream = client.chat.completions.create(
        model="mock", messages=[{"role": "user", "content": "stream me some words over TLS"}], stream=True
    )
    text = ""
    finish = None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    assert "stream me some words over TLS" in text
    assert finish == "stop"
    # Keep-alive: the same TLS connection carries the next request.
    again = client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "again"}])
    assert "again" in again.choices[0].message.content
    http_client.close()


async def wss_turn(ws, content: str) -> dict:
    await ws.send(json.dumps({"type": "message", "channel": "api", "content": content}))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["type"] in ("done", "error"):
            return frame


def test_websocket_over_wss(pki, tls_gateway):
    async def run():
        url = f"wss://localhost:{port(tls_gateway)}/ws"
        async with websockets.connect(url, ssl=pki.context()) as ws:
            await ws.send(json.dumps({"type": "auth", "token": USER_KEY}))
            assert json.loads(await ws.recv())["type"] == "auth_ok"
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await ws.recv()) == {"type": "pong"}
            for i in range(3):
                done = await wss_turn(ws, f"turn {i} over wss")
                assert done["type"] == "done", done

    asyncio.run(run())


def test_sighup_rotates_the_certificate_without_dropping_connections(pki, tls_gateway):
    first = peer_serial(pki, tls_gateway)

    async def run():
        url = f"wss://localhost:{port(tls_gateway)}/ws"
        async with websockets.connect(url, ssl=pki.context()) as ws:
            await ws.send(json.dumps({"type": "auth", "token": USER_KEY}))
            assert json.loads(await ws.recv())["type"] == "auth_ok"
            assert (await wss_turn(ws, "before the rotation"))["type"] == "done"
            # An HTTPS keep-alive connection, open across the rotation too.
            client = httpx.AsyncClient(verify=pki.context())
            assert (await client.get(f"{https(tls_gateway)}/health")).status_code == 200

            second = pki.issue()
            tls_gateway.proc.send_signal(signal.SIGHUP)
            deadline = time.time() + 10
            while time.time() < deadline and peer_serial(pki, tls_gateway) != second:
                await asyncio.sleep(0.1)
            assert peer_serial(pki, tls_gateway) == second != first

            # The connections opened before the rotation still work.
            assert (await wss_turn(ws, "after the rotation"))["type"] == "done"
            assert (await client.get(f"{https(tls_gateway)}/health")).status_code == 200
            await client.aclose()

    asyncio.run(run())

    # A rotation to files that cannot be used is refused; the running certificate stays.
    current = peer_serial(pki, tls_gateway)
    pki.key_file.write_text("not a key\n")
    tls_gateway.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while time.time() < deadline and not any("server.tls.key" in l for l in tls_gateway.lines):
        time.sleep(0.05)
    assert any("server.tls.key" in l for l in tls_gateway.lines), tls_gateway.lines[-5:]
    assert peer_serial(pki, tls_gateway) == current
    assert tls_gateway.proc.poll() is None


def test_plain_http_to_the_tls_port_is_refused_and_failed_handshakes_are_counted(pki, tls_gateway):
    before = handshakes(pki, tls_gateway)
    with socket.create_connection(("127.0.0.1", port(tls_gateway)), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400 ")
    err = json.loads(body)["error"]
    assert err["code"] == "INVALID_REQUEST" and "HTTPS" in err["message"]

    # A client that offers only HTTP/2 has no protocol in common: the handshake fails.
    ctx = pki.context()
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port(tls_gateway)), timeout=10) as raw:
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(raw, server_hostname="localhost")
    # Garbage that starts like a handshake record.
    with socket.create_connection(("127.0.0.1", port(tls_gateway)), timeout=10) as s:
        s.sendall(b"\x16\x03\x01\x00\x05hello")
        s.settimeout(10)
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
    # A client that does not trust the certificate (curl without the CA) fails too.
    r = subprocess.run(["curl", "-sS", f"{https(tls_gateway)}/health"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0

    after = handshakes(pki, tls_gateway)
    assert after["plain_http"] - before["plain_http"] == 1
    assert after["failed"] - before["failed"] == 3
    # Every failure left the gateway serving.
    assert httpx.get(f"{https(tls_gateway)}/health", verify=pki.context()).status_code == 200


def test_unusable_certificate_files_stop_the_start_with_the_path_named(pki):
    missing = Path(pki.dir.name) / "missing.pem"
    bad = Pki()
    other_key = bad.issue()  # a key that does not belong to pki's certificate
    del other_key
    cases = [
        (f'[server.tls]\ncert = "{missing}"\nkey = "{pki.key_file}"\n', str(missing)),
        (f'[server.tls]\ncert = "{pki.key_file}"\nkey = "{pki.key_file}"\n', "holds no PEM CERTIFICATE"),
        (f'[server.tls]\ncert = "{pki.cert_file}"\nkey = "{bad.key_file}"\n', "cannot be used together"),
        (f'[server.tls]\ncert = "{pki.cert_file}"\n', "server.tls.key"),
    ]
    for extra, needle in cases:
        with pytest.raises(RuntimeError):
            gw = Gateway(server_extra=extra)
            gw.stop()
        # The error is on stderr of a process that exited: run it again to read it.
        cfg = Path(pki.dir.name) / "bad.toml"
        cfg.write_text(f'[server]\nlisten = "127.0.0.1:0"\n{extra}')
        import os

        binary = os.environ.get("CLAWGATE_BIN", "target/debug/clawgate")
        r = subprocess.run([binary, "--config", str(cfg)], capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and needle in r.stderr, (needle, r.stderr)
        r = subprocess.run([binary, "check-config", str(cfg)], capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and needle in r.stderr, (needle, r.stderr, r.stdout)
    bad.dir.cleanup()


def test_a_proxy_protocol_header_comes_before_the_tls_handshake(pki):
    """Behind an L4 balancer that sends PROXY protocol and passes TLS through: the
    header is read first, then the handshake; the header's source is the client."""
    gw = Gateway(server_extra=pki.server_extra('proxy_protocol = true\naccess_log = "text"'))
    try:
        with socket.create_connection(("127.0.0.1", port(gw)), timeout=10) as raw:
            raw.sendall(b"PROXY TCP4 203.0.113.9 10.0.0.1 51515 443\r\n")
            with pki.context().wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
        assert data.startswith(b"HTTP/1.1 200 "), data[:100]
        deadline = time.time() + 5
        while time.time() < deadline and not any("peer=203.0.113.9:51515" in l for l in gw.lines):
            time.sleep(0.05)
        assert any("peer=203.0.113.9:51515" in l and "/health" in l for l in gw.lines), gw.lines[-5:]
    finally:
        gw.stop()
