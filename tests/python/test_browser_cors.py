"""A real browser on another origin (issue 12): headless Chromium (Debian's `chromium`)
loads a page from a local web server on its own port and `fetch`es the gateway with a
key, reading `/v1/chat/completions` and `/api/chat` as streams. With `[server.cors]`
listing the page's origin the streams arrive whole and `X-Request-Id` is readable;
from an origin not listed, or without `[server.cors]`, the browser blocks the calls.

Chromium prints the page's DOM after its scripts ran (`--dump-dom`); the page writes
its results as JSON into `<pre id="out">`."""

import html
import http.server
import json
import os
import shutil
import socketserver
import subprocess
import threading

import pytest

from conftest import USER_KEY, Gateway

PAGE = """<!doctype html>
<html><body><pre id="out">pending</pre>
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
  document.getElementById("out").textContent = JSON.stringify(out);
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
    once the gateway's address is known."""

    def __init__(self):
        self.page = b""
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(outer.page)))
                self.end_headers()
                self.wfile.write(outer.page)

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
    """Loads the page from `server` in headless Chromium; the page's results."""
    server.page = (PAGE % {"gw": json.dumps(gw.http), "key": json.dumps(USER_KEY)}).encode()
    profile = f"/tmp/clawgate-chromium-{os.getpid()}-{server.port}"
    try:
        out = subprocess.run(
            [
                chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=20000",
                "--dump-dom",
                f"{server.origin}/page.html",
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    dom = out.stdout
    start, end = dom.find('<pre id="out">'), dom.find("</pre>")
    assert start >= 0 and end > start, f"no results in the page: {dom[:500]!r} {out.stderr[-500:]!r}"
    text = html.unescape(dom[start + len('<pre id="out">') : end])
    assert text != "pending", f"the page's script did not finish: {out.stderr[-500:]!r}"
    return json.loads(text)


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
