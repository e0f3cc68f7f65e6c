"""A real browser on another origin (issue 12): headless Chromium (Debian's `chromium`)
loads a page from a local web server on its own port and `fetch`es the gateway with a
key, reading `/v1/chat/completions` and `/api/chat` as streams. With `[server.cors]`
listing the page's origin the streams arrive whole and `X-Request-Id` is readable;
from an origin not listed, or without `[server.cors]`, the browser blocks the calls.

The page posts its results as JSON back to the server it came from (same origin, no
CORS involved); the test waits for them in real time and then ends the browser it
started. (An earlier version read `--dump-dom` under `--virtual-time-budget`, whose
virtual clock could run out while the real streams were still arriving.)"""

import http.server
import json
import os
import shutil
import signal
import socketserver
import subprocess
import threading
import time

import pytest

from conftest import USER_KEY, Gateway

PAGE = """<!doctype html>
<html><body>
<script>
const GW = %(gw)s, KEY = %(key)s;
async function read(path, body) {
  try {
    const r = await fetch(GW + path, {method: "POST", body: JSON.stringify(body),
      headers: {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}});
    const reader = r.body.getReader(), dec = new TextDecoder();
    let text = "";
    for (;;) { const {done, value} = await reader.read(); if (done) break; text += dec.decode(value); }
    return {status: r.status, requestId: r.headers.get("x-request-id"), text};
  } catch (e) {
    return {error: String(e)};
  }
}
(async () => {
  const out = {
    v1: await read("/v1/chat/completions",
      {model: "mock", stream: true, messages: [{role: "user", content: "hello from a browser"}]}),
    api: await read("/api/chat", {message: "hello from a browser", stream: true}),
  };
  await fetch("/result", {method: "POST", body: JSON.stringify(out)});
})();
</script></body></html>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Chromium is not installed (tests/run.sh installs Debian's `chromium`)")


class PageServer:
    """Serves one page on 127.0.0.1 at a free port (the page's origin); the page is set
    once the gateway's address is known. `POST /result` stores the page's results."""

    def __init__(self):
        self.page = b""
        self.result: bytes | None = None
        self.done = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(outer.page)))
                self.end_headers()
                self.wfile.write(outer.page)

            def do_POST(self):  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                outer.result = self.rfile.read(n)
                self.send_response(204)
                self.end_headers()
                outer.done.set()

            def log_message(self, *args):
                pass

        self.server = socketserver.TCPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def run_page(gw: Gateway, server: PageServer) -> dict:
    """Loads the page from `server` in headless Chromium and waits (60 s at most) for
    the page to post its results; ends the browser it started."""
    server.page = (PAGE % {"gw": json.dumps(gw.http), "key": json.dumps(USER_KEY)}).encode()
    profile = f"/tmp/clawgate-chromium-{os.getpid()}-{server.port}"
    log = open(f"{profile}.log", "w+")
    browser = subprocess.Popen(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"{server.origin}/page.html",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,  # its own process group: the renderers end with it
    )
    try:
        deadline = time.monotonic() + 60
        while not server.done.wait(0.2):
            if browser.poll() is not None or time.monotonic() > deadline:
                break
    finally:
        try:
            os.killpg(browser.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        browser.wait()
        log.seek(0)
        stderr = log.read()
        log.close()
        os.unlink(f"{profile}.log")
        shutil.rmtree(profile, ignore_errors=True)
    assert server.result is not None, f"the page posted no results (browser exit {browser.returncode}): {stderr[-800:]!r}"
    return json.loads(server.result)


@pytest.fixture
def page():
    s = PageServer()
    yield s
    s.close()


def test_a_listed_origin_streams_both_routes_and_reads_the_exposed_headers(page):
    gw = Gateway(server_extra=f'[server.cors]\nallow_origins = ["{page.origin}"]')
    try:
        out = run_page(gw, page)
    finally:
        gw.stop()
    v1, api = out["v1"], out["api"]
    assert v1.get("status") == 200, out
    assert v1["text"].rstrip().endswith("data: [DONE]"), v1
    chunks = [json.loads(line[6:]) for line in v1["text"].split("\n") if line.startswith("data: {")]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "hello from a browser" in "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert v1["requestId"], "X-Request-Id is exposed to the page"
    assert api.get("status") == 200, out
    assert '"type":"chunk"' in api["text"] and '"type":"done"' in api["text"], api
    assert api["requestId"]


def test_an_origin_not_listed_is_blocked_by_the_browser(page):
    gw = Gateway(server_extra='[server.cors]\nallow_origins = ["http://app.example"]')
    try:
        out = run_page(gw, page)
    finally:
        gw.stop()
    assert "error" in out["v1"] and "error" in out["api"], out


def test_without_cors_config_the_browser_blocks_every_call(page):
    gw = Gateway()
    try:
        out = run_page(gw, page)
    finally:
        gw.stop()
    assert "error" in out["v1"] and "error" in out["api"], out
