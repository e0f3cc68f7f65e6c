"""A fake chat platform for clawgate's channel integration tests.

The tests start clawgate with `[[channels]] api_base = <FakePlatform.url>`, so clawgate sends
its chat replies here instead of to Telegram, Slack, Discord or WhatsApp. The server speaks
each platform's documented send API - request validation, success bodies, error bodies,
429 rate-limit answers - exactly as written down (with sources) in
docs/dev/webhook-platforms.md, and records every request so a test can assert on what
clawgate sent.

Routes, relative to the server root (the `api_base`; clawgate appends the platform path):

* Telegram  `POST /bot<token>/sendMessage`                                (section 1)
* Slack     `POST /chat.postMessage` (also `/api/chat.postMessage`)       (section 2)
* Discord   `PATCH /webhooks/<app_id>/<token>/messages/@original` and
            `POST /webhooks/<app_id>/<token>` (optional `/api`, `/v10`)   (section 3)
* WhatsApp  `POST /<phone_number_id>/messages` (optional `/v26.0` prefix) (section 4)
* generic   any method on a path starting with `/callback` -> 200 `{"ok":true}`
* anything else -> 404 `{"error":"not found"}`

Text limits are counted in UTF-16 code units (section 5). Failures can be injected
(`fail_next`, `delay_next`, `hang_up_next`); injected error bodies use the platform's own
shape, chosen by the request path. Standard library only.

Run this file directly for a self-check: `python3 tests/python/fake_platform.py`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import http.client
import http.server
import json
import math
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Self

PLATFORMS = ("telegram", "slack", "discord", "whatsapp", "generic")

_TELEGRAM = re.compile(r"^/bot(?P<token>[^/]+)/sendMessage$")
_SLACK = re.compile(r"^(?:/api)?/chat\.postMessage$")
_DISCORD_ORIGINAL = re.compile(
    r"^(?:/api)?(?:/v\d+)?/webhooks/(?P<app>[^/]+)/(?P<token>[^/]+)/messages/@original$"
)
_DISCORD_FOLLOWUP = re.compile(r"^(?:/api)?(?:/v\d+)?/webhooks/(?P<app>[^/]+)/(?P<token>[^/]+)$")
_WHATSAPP = re.compile(r"^(?:/v\d+(?:\.\d+)?)?/(?P<phone>[^/]+)/messages$")

# Discord snowflakes count milliseconds from this epoch in their top 42 bits.
_DISCORD_EPOCH_MS = 1420070400000

Response = tuple[int, Any, list[tuple[str, str]]]


def utf16_len(text: str) -> int:
    """Length of `text` in UTF-16 code units (how the platform limits are counted here)."""
    return len(text.encode("utf-16-le", errors="surrogatepass")) // 2


def hmac_sha256_hex(secret: str | bytes, data: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of `data` keyed with `secret`."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, data, hashlib.sha256).hexdigest()


@dataclass
class Call:
    """One request the fake received.

    `status` is None while the answer is pending (e.g. during an injected delay), 0 when the
    fake hung up without answering, else the HTTP status it answered. `response` is the JSON
    body it answered (None until answered). `platform` is the route family the path matched:
    one of PLATFORMS, or "unknown".
    """

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    json: Any
    at: float
    status: int | None = None
    platform: str = "unknown"
    response: Any = None

    @property
    def ok(self) -> bool:
        """True when the fake answered with a 2xx status."""
        return self.status is not None and 200 <= self.status < 300


def generic_signature_ok(call: Call, secret: str | bytes) -> bool:
    """True when `call` carries `X-Clawgate-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`."""
    got = call.headers.get("x-clawgate-signature")
    if got is None:
        return False
    want = "sha256=" + hmac_sha256_hex(secret, call.raw)
    return hmac.compare_digest(got.encode("utf-8", errors="surrogateescape"), want.encode())


@dataclass
class _Failure:
    remaining: int
    status: int
    retry_after: int | float | None
    path_contains: str | None
    kind: str | None


@dataclass
class _Delay:
    remaining: int
    seconds: float
    path_contains: str | None


@dataclass
class _HangUp:
    remaining: int
    path_contains: str | None


def _fmt_seconds(value: int | float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _graph_error(message: str, code: int, details: str | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if details is not None:
        err["error_data"] = {"messaging_product": "whatsapp", "details": details}
    err["fbtrace_id"] = "x"
    return {"error": err}


def _failure_response(platform: str, status: int, retry_after: int | float | None) -> Response:
    """The body and headers a platform answers with for an (injected) error status."""
    headers: list[tuple[str, str]] = []
    if status == 429 and retry_after is not None and platform != "whatsapp":
        headers.append(("Retry-After", _fmt_seconds(retry_after)))
    phrase = _phrase(status)
    body: Any
    if platform == "telegram":
        if status == 429:
            body = {"ok": False, "error_code": 429, "description": "Too Many Requests"}
            if retry_after is not None:
                secs = math.ceil(retry_after)
                body["description"] = f"Too Many Requests: retry after {secs}"
                body["parameters"] = {"retry_after": secs}
        elif status == 403:
            body = {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}
        else:
            body = {"ok": False, "error_code": status, "description": phrase}
    elif platform == "slack":
        if status == 429:
            body = {"ok": False, "error": "ratelimited"}
        elif status == 500:
            body = {"ok": False, "error": "internal_error"}
        else:
            body = {"ok": False, "error": phrase.lower().replace(" ", "_").replace("-", "_")}
    elif platform == "discord":
        if status == 429:
            body = {
                "message": "You are being rate limited.",
                "retry_after": float(retry_after) if retry_after is not None else 1.0,
                "global": False,
            }
        else:
            body = {"message": f"{status}: {phrase}", "code": 0}
    elif platform == "whatsapp":
        if status == 429:
            body = _graph_error(
                "(#130429) Rate limit hit", 130429, "Cloud API message throughput has been reached."
            )
        elif status in (502, 503):
            body = _graph_error("Service temporarily unavailable", 2)
        elif status >= 500:
            body = _graph_error("An unknown error has occurred.", 1)
        elif status == 401:
            body = _graph_error("Invalid OAuth access token.", 190)
        else:
            body = _graph_error("(#100) Invalid parameter", 100, phrase)
    else:
        body = {"error": phrase}
    return status, body, headers


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # Idle keep-alive connections would make server_close() wait forever; close() shuts
    # the tracked connections down itself.
    block_on_close = False
    fake: FakePlatform


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakePlatform/1"
    timeout = 120
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        pass

    def _handle(self) -> None:
        self.server.fake._serve(self)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _handle

    def read_body(self) -> bytes:
        """The request body, by Content-Length or chunked transfer coding."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ValueError("connection closed inside a chunked body")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(3)  # CRLF after the chunk data
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length) if length else b""

    def send_json(self, status: int, body: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        """Writes one JSON answer with Content-Length (keep-alive friendly)."""
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()


class FakePlatform:
    """A threaded HTTP server on 127.0.0.1 that fakes the four platforms' send APIs.

    Constructor kwargs: `telegram_token` (the `<token>` in `/bot<token>/sendMessage`),
    `slack_token` and `whatsapp_token` (expected `Authorization: Bearer` values),
    `expired_tokens` (Discord interaction tokens answered with 401/50027; kept as the
    mutable set `self.expired_tokens`), `port` (0 = any free port).

    Use as `with FakePlatform() as fake: ...` or call `close()` yourself.
    """

    def __init__(
        self,
        *,
        telegram_token: str = "123:tg-token",
        slack_token: str = "xoxb-test",
        whatsapp_token: str = "wa-test",
        expired_tokens: Iterable[str] = (),
        port: int = 0,
    ) -> None:
        self.telegram_token = telegram_token
        self.slack_token = slack_token
        self.whatsapp_token = whatsapp_token
        self.expired_tokens: set[str] = set(expired_tokens)
        self._cond = threading.Condition()
        self._calls: list[Call] = []
        self._failures: list[_Failure] = []
        self._delays: list[_Delay] = []
        self._hang_ups: list[_HangUp] = []
        self._conns: set[socket.socket] = set()
        self._counter = 0
        self._closed = False
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.fake = self
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    # ----- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Stops the server and closes every open connection. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            conns = list(self._conns)
        self._server.shutdown()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._cond:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    # ----- recorded calls --------------------------------------------------------------

    def calls(self, path_contains: str | None = None) -> list[Call]:
        """A snapshot (copies) of the recorded calls, oldest first, optionally filtered by path."""
        with self._cond:
            return [
                dataclasses.replace(c)
                for c in self._calls
                if path_contains is None or path_contains in c.path
            ]

    def wait_for(
        self,
        n: int,
        timeout: float = 10.0,
        path_contains: str | None = None,
        ok_only: bool = False,
    ) -> list[Call]:
        """Blocks until at least `n` calls match, then returns all matching calls (copies).

        `path_contains` filters on the request path; `ok_only` counts only calls the fake
        answered 2xx (so a call still waiting on an injected delay does not count yet).
        Raises AssertionError listing what did arrive when `timeout` seconds pass first.
        """

        def matching() -> list[Call]:
            return [
                c
                for c in self._calls
                if (path_contains is None or path_contains in c.path) and (not ok_only or c.ok)
            ]

        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = matching()
                if len(found) >= n:
                    return [dataclasses.replace(c) for c in found]
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            arrived = "\n".join(f"  {_describe(c)}" for c in self._calls) or "  (none)"
            total = len(self._calls)
        what = f"{n} call(s)" + (f" with path containing {path_contains!r}" if path_contains else "")
        what += " answered 2xx" if ok_only else ""
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what}; got {len(found)}. "
            f"All {total} recorded calls:\n{arrived}"
        )

    def reset(self) -> None:
        """Forgets the recorded calls and every pending injected failure, delay and hang-up."""
        with self._cond:
            self._calls.clear()
            self._failures.clear()
            self._delays.clear()
            self._hang_ups.clear()
            self._cond.notify_all()

    # ----- failure injection -----------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        status: int = 429,
        retry_after: int | float | None = 1,
        path_contains: str | None = None,
        kind: str | None = None,
    ) -> None:
        """Answers the next `count` matching requests with `status` instead of handling them.

        The body (and `Retry-After` header for 429, except WhatsApp which has none) is the
        platform's own shape, chosen by the request path. `retry_after=None` leaves the
        header and Telegram's `parameters.retry_after` out. A request matches when its path
        contains `path_contains` (if given) and its platform is `kind` (if given; one of
        PLATFORMS or "unknown"). Queued failures are consumed in order; the call is still
        recorded, with the injected status.
        """
        if count < 1:
            raise ValueError("count must be >= 1")
        if kind is not None and kind not in (*PLATFORMS, "unknown"):
            raise ValueError(f"kind must be one of {PLATFORMS} or 'unknown', not {kind!r}")
        with self._cond:
            self._failures.append(_Failure(count, status, retry_after, path_contains, kind))

    def delay_next(self, seconds: float, count: int = 1, path_contains: str | None = None) -> None:
        """Sleeps `seconds` before answering each of the next `count` matching requests."""
        if count < 1:
            raise ValueError("count must be >= 1")
        with self._cond:
            self._delays.append(_Delay(count, seconds, path_contains))

    def hang_up_next(self, count: int = 1, path_contains: str | None = None) -> None:
        """Reads and records the next `count` matching requests, then closes the connection
        without answering (a platform that crashed after receipt). Their status is 0."""
        if count < 1:
            raise ValueError("count must be >= 1")
        with self._cond:
            self._hang_ups.append(_HangUp(count, path_contains))

    # ----- request handling ------------------------------------------------------------

    def _next_id(self) -> int:
        with self._cond:
            self._counter += 1
            return self._counter

    @staticmethod
    def _take(queue: list[Any], call: Call, platform: str | None = None) -> Any:
        """Consumes one use of the first queued entry matching `call` (caller holds the lock)."""
        for entry in queue:
            if entry.path_contains is not None and entry.path_contains not in call.path:
                continue
            if platform is not None and entry.kind is not None and entry.kind != platform:
                continue
            entry.remaining -= 1
            if entry.remaining <= 0:
                queue.remove(entry)
            return entry
        return None

    def _serve(self, h: _Handler) -> None:
        try:
            raw = h.read_body()
        except (ValueError, OSError):
            h.close_connection = True
            try:
                h.send_json(400, {"error": "bad request body"})
            except OSError:
                pass
            return
        try:
            parsed = json.loads(raw) if raw.strip() else None
        except ValueError:
            parsed = None
        headers: dict[str, str] = {}
        for name, value in h.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        route_path = urllib.parse.unquote(urllib.parse.urlsplit(h.path).path)
        platform = _classify(route_path)
        call = Call(h.command, h.path, headers, raw, parsed, time.monotonic(), None, platform)
        with self._cond:
            self._calls.append(call)
            delay = self._take(self._delays, call)
            hang_up = self._take(self._hang_ups, call)
            failure = None if hang_up else self._take(self._failures, call, platform)
            self._cond.notify_all()

        if delay is not None:
            time.sleep(delay.seconds)
        if hang_up is not None:
            # Record first: whoever sees the connection drop must also see status 0.
            self._answered(call, 0, None)
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return

        if failure is not None:
            status, body, extra = _failure_response(platform, failure.status, failure.retry_after)
        else:
            status, body, extra = self._route(h.command, route_path, platform, call)
        # Record before writing, so a client that has read the answer always finds it.
        self._answered(call, status, body)
        try:
            h.send_json(status, body, extra)
        except OSError:
            h.close_connection = True

    def _answered(self, call: Call, status: int, body: Any) -> None:
        with self._cond:
            call.status = status
            call.response = body
            self._cond.notify_all()

    def _route(self, method: str, path: str, platform: str, call: Call) -> Response:
        body = call.json if isinstance(call.json, dict) else {}
        if platform == "generic":
            return 200, {"ok": True}, []
        if platform == "telegram" and method == "POST":
            m = _TELEGRAM.match(path)
            assert m is not None
            return self._telegram(m["token"], body)
        if platform == "slack" and method == "POST":
            return self._slack(call.headers, body)
        if platform == "discord":
            m = _DISCORD_ORIGINAL.match(path)
            if m is not None and method == "PATCH":
                return self._discord(m["token"], body)
            m = _DISCORD_FOLLOWUP.match(path)
            if m is not None and method == "POST":
                return self._discord(m["token"], body)
        if platform == "whatsapp" and method == "POST":
            return self._whatsapp(call.headers, body)
        return 404, {"error": "not found"}, []

    def _telegram(self, token: str, body: dict[str, Any]) -> Response:
        def bad(code: int, description: str) -> Response:
            return code, {"ok": False, "error_code": code, "description": description}, []

        if not hmac.compare_digest(token.encode(), self.telegram_token.encode()):
            return bad(401, "Unauthorized")
        chat_id = body.get("chat_id")
        if isinstance(chat_id, bool) or not isinstance(chat_id, int | str) or chat_id == "":
            return bad(400, "Bad Request: chat not found")
        text = body.get("text")
        if not isinstance(text, str) or text == "":
            return bad(400, "Bad Request: message text is empty")
        if utf16_len(text) > 4096:
            return bad(400, "Bad Request: message is too long")
        result: dict[str, Any] = {
            "message_id": self._next_id(),
            "date": int(time.time()),
            "chat": {"id": chat_id},
            "text": text,
        }
        if "message_thread_id" in body:
            result["message_thread_id"] = body["message_thread_id"]
        return 200, {"ok": True, "result": result}, []

    def _slack(self, headers: dict[str, str], body: dict[str, Any]) -> Response:
        if not _bearer_ok(headers, self.slack_token):
            return 200, {"ok": False, "error": "invalid_auth"}, []
        channel = body.get("channel")
        if not isinstance(channel, str) or channel == "":
            return 200, {"ok": False, "error": "channel_not_found"}, []
        text = body.get("text")
        if not isinstance(text, str) or text == "":
            return 200, {"ok": False, "error": "no_text"}, []
        ts = f"{int(time.time())}.{self._next_id() % 1_000_000:06d}"
        message: dict[str, Any] = {"text": text, "type": "message", "ts": ts}
        if isinstance(body.get("thread_ts"), str):
            message["thread_ts"] = body["thread_ts"]
        return 200, {"ok": True, "channel": channel, "ts": ts, "message": message}, []

    def _discord(self, token: str, body: dict[str, Any]) -> Response:
        if token in self.expired_tokens:
            return 401, {"message": "Invalid Webhook Token", "code": 50027}, []
        content = body.get("content")
        if not isinstance(content, str) or content == "":
            return 400, {"message": "Cannot send an empty message", "code": 50006}, []
        if utf16_len(content) > 2000:
            too_long = {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}
            errors = {"content": {"_errors": [too_long]}}
            return 400, {"code": 50035, "errors": errors, "message": "Invalid Form Body"}, []
        snowflake = ((int(time.time() * 1000) - _DISCORD_EPOCH_MS) << 22) + self._next_id()
        return 200, {"id": str(snowflake), "content": content, "channel_id": "1", "type": 0}, []

    def _whatsapp(self, headers: dict[str, str], body: dict[str, Any]) -> Response:
        if not _bearer_ok(headers, self.whatsapp_token):
            return 401, _graph_error("Invalid OAuth access token.", 190), []

        def bad(details: str) -> Response:
            return 400, _graph_error("(#100) Invalid parameter", 100, details), []

        if body.get("messaging_product") != "whatsapp":
            return bad("messaging_product must be 'whatsapp'")
        to = body.get("to")
        if not isinstance(to, str) or to == "":
            return bad("Parameter 'to' is required")
        if body.get("type") != "text":
            return bad("Only type 'text' is supported by this fake")
        text = body.get("text")
        text_body = text.get("body") if isinstance(text, dict) else None
        if not isinstance(text_body, str) or text_body == "":
            return bad("Parameter 'text.body' is required")
        if utf16_len(text_body) > 4096:
            return bad("Parameter 'text.body' must be at most 4096 characters")
        return (
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": f"wamid.{self._next_id()}"}],
            },
            [],
        )


def _bearer_ok(headers: dict[str, str], token: str) -> bool:
    got = headers.get("authorization", "")
    return hmac.compare_digest(
        got.encode("utf-8", errors="surrogateescape"), f"Bearer {token}".encode()
    )


def _classify(path: str) -> str:
    """Which platform a (decoded, query-less) path belongs to, or "unknown"."""
    if path.startswith("/callback"):
        return "generic"
    if _TELEGRAM.match(path):
        return "telegram"
    if _SLACK.match(path):
        return "slack"
    if _DISCORD_ORIGINAL.match(path) or _DISCORD_FOLLOWUP.match(path):
        return "discord"
    if _WHATSAPP.match(path):
        return "whatsapp"
    return "unknown"


def _describe(call: Call) -> str:
    body = call.raw.decode("utf-8", errors="replace")
    if len(body) > 200:
        body = body[:200] + f"... ({len(call.raw)} bytes)"
    return f"{call.method} {call.path} -> {call.status} [{call.platform}] {body}"


# ----- self-check ------------------------------------------------------------------------


def _request(
    url: str, body: Any = None, method: str = "POST", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, json.loads(err.read())


def _self_check() -> None:  # noqa: PLR0915 - one linear script
    with FakePlatform(expired_tokens={"dead"}) as fake:
        u = fake.url
        tg = f"{u}/bot123:tg-token/sendMessage"

        # Telegram
        s, _, b = _request(tg, {"chat_id": 42, "text": "hi"})
        assert s == 200 and b["ok"] and b["result"]["chat"]["id"] == 42, b
        first_id = b["result"]["message_id"]
        s, _, b = _request(tg, {"chat_id": "@chan", "text": "again"})
        assert s == 200 and b["result"]["message_id"] > first_id, b
        s, _, b = _request(f"{u}/botWRONG/sendMessage", {"chat_id": 1, "text": "x"})
        assert s == 401 and b == {"ok": False, "error_code": 401, "description": "Unauthorized"}, b
        s, _, b = _request(tg, {"text": "x"})
        assert s == 400 and b["description"] == "Bad Request: chat not found", b
        s, _, b = _request(tg, {"chat_id": 1, "text": ""})
        assert s == 400 and b["description"] == "Bad Request: message text is empty", b
        # 2048 emoji = 4096 UTF-16 units: fits; one more letter does not.
        s, _, b = _request(tg, {"chat_id": 1, "text": "\U0001f600" * 2048})
        assert s == 200, b
        s, _, b = _request(tg, {"chat_id": 1, "text": "\U0001f600" * 2048 + "a"})
        assert s == 400 and b["description"] == "Bad Request: message is too long", b
        fake.fail_next(status=429, retry_after=3, path_contains="sendMessage")
        s, h, b = _request(tg, {"chat_id": 1, "text": "x"})
        assert s == 429 and h["retry-after"] == "3", (s, h)
        assert b == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 3",
            "parameters": {"retry_after": 3},
        }, b
        s, _, b = _request(tg, {"chat_id": 1, "text": "x"})
        assert s == 200, b
        fake.fail_next(status=500, kind="telegram")
        s, _, b = _request(tg, {"chat_id": 1, "text": "x"})
        assert s == 500 and b == {"ok": False, "error_code": 500, "description": "Internal Server Error"}, b

        # Slack
        sl = f"{u}/chat.postMessage"
        auth = {"Authorization": "Bearer xoxb-test"}
        s, _, b = _request(sl, {"channel": "C1", "text": "hi", "thread_ts": "1.000001"}, headers=auth)
        assert s == 200 and b["ok"] and b["channel"] == "C1" and b["message"]["type"] == "message", b
        assert re.fullmatch(r"\d+\.\d{6}", b["ts"]), b
        ts1 = b["ts"]
        s, _, b = _request(sl, {"channel": "C1", "text": "hi"}, headers=auth)
        assert float(b["ts"]) > float(ts1), (ts1, b)
        s, _, b = _request(sl, {"channel": "C1", "text": "hi"}, headers={"Authorization": "Bearer no"})
        assert s == 200 and b == {"ok": False, "error": "invalid_auth"}, b
        s, _, b = _request(sl, {"text": "hi"}, headers=auth)
        assert b == {"ok": False, "error": "channel_not_found"}, b
        s, _, b = _request(sl, {"channel": "C1", "text": ""}, headers=auth)
        assert b == {"ok": False, "error": "no_text"}, b
        fake.fail_next(retry_after=2, kind="slack")
        s, h, b = _request(sl, {"channel": "C1", "text": "hi"}, headers=auth)
        assert s == 429 and h["retry-after"] == "2" and b == {"ok": False, "error": "ratelimited"}, (s, h, b)

        # Discord
        orig = f"{u}/webhooks/app1/itok/messages/@original"
        s, _, b = _request(orig, {"content": "hello"}, method="PATCH")
        assert s == 200 and b["content"] == "hello" and b["channel_id"] == "1" and b["type"] == 0, b
        s, _, b2 = _request(f"{u}/webhooks/app1/itok", {"content": "part 2"})
        assert s == 200 and int(b2["id"]) > int(b["id"]), (b, b2)
        s, _, b = _request(orig, {"content": "\u00e9" * 2000}, method="PATCH")
        assert s == 200, b
        s, _, b = _request(orig, {"content": "\U0001f600" * 1001}, method="PATCH")
        assert s == 400 and b["code"] == 50035, b
        assert b["errors"]["content"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH", b
        s, _, b = _request(f"{u}/webhooks/app1/dead/messages/@original", {"content": "x"}, method="PATCH")
        assert s == 401 and b == {"message": "Invalid Webhook Token", "code": 50027}, b
        fake.fail_next(retry_after=1.5, path_contains="/webhooks/")
        s, h, b = _request(orig, {"content": "x"}, method="PATCH")
        assert s == 429 and h["retry-after"] == "1.5" and b["retry_after"] == 1.5 and b["global"] is False, b

        # WhatsApp
        wa = f"{u}/1065/messages"
        wauth = {"Authorization": "Bearer wa-test"}
        msg = {"messaging_product": "whatsapp", "to": "1650", "type": "text", "text": {"body": "hi"}}
        s, _, b = _request(wa, msg, headers=wauth)
        assert s == 200 and b["contacts"] == [{"input": "1650", "wa_id": "1650"}], b
        assert b["messages"][0]["id"].startswith("wamid."), b
        s, _, b = _request(f"{u}/v26.0/1065/messages", msg, headers=wauth)
        assert s == 200, b
        s, _, b = _request(wa, msg)
        assert s == 401 and b["error"]["code"] == 190, b
        s, _, b = _request(wa, {**msg, "text": {"body": "x" * 4097}}, headers=wauth)
        assert s == 400 and b["error"]["code"] == 100 and b["error"]["error_data"]["details"], b
        s, _, b = _request(wa, {**msg, "type": "image"}, headers=wauth)
        assert s == 400, b
        fake.fail_next(kind="whatsapp")
        s, h, b = _request(wa, msg, headers=wauth)
        assert s == 429 and "retry-after" not in h and b["error"]["code"] == 130429, (h, b)

        # Generic callback + signature helper
        raw = b'{"event":"reply"}'
        sig = "sha256=" + hmac_sha256_hex("cb-secret", raw)
        req = urllib.request.Request(
            f"{u}/callback/x", data=raw, method="POST", headers={"X-Clawgate-Signature": sig}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200 and json.loads(resp.read()) == {"ok": True}
        cb = fake.wait_for(1, path_contains="/callback", timeout=2)[0]
        assert generic_signature_ok(cb, "cb-secret") and not generic_signature_ok(cb, "other"), cb
        fake.fail_next(status=503, path_contains="/callback")
        s, h, b = _request(f"{u}/callback", {"a": 1})
        assert s == 503 and b == {"error": "Service Unavailable"}, b

        # Unknown route
        s, _, b = _request(f"{u}/nope", {})
        assert s == 404 and b == {"error": "not found"}, b

        # Keep-alive, chunked request body, Content-Length on the answer.
        conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
        body = json.dumps({"chat_id": 7, "text": "chunked"}).encode()
        conn.request(
            "POST",
            "/bot123:tg-token/sendMessage",
            body=iter([body[:5], body[5:]]),
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Length"), resp.status
        assert json.loads(resp.read())["result"]["text"] == "chunked"
        sock = conn.sock
        conn.request("POST", "/bot123:tg-token/sendMessage", body=json.dumps({"chat_id": 7, "text": "2"}))
        resp = conn.getresponse()
        assert resp.status == 200 and conn.sock is sock, "connection was not kept alive"
        resp.read()
        conn.close()
        chunked = [c for c in fake.calls("sendMessage") if c.json and c.json.get("text") == "chunked"]
        assert chunked and chunked[0].headers.get("transfer-encoding") == "chunked", chunked

        # Delay and hang-up.
        fake.delay_next(0.3)
        t0 = time.monotonic()
        s, _, _ = _request(tg, {"chat_id": 1, "text": "slow"})
        assert s == 200 and time.monotonic() - t0 >= 0.3
        fake.hang_up_next()
        try:
            _request(tg, {"chat_id": 1, "text": "lost"})
            raise AssertionError("hang_up_next did not hang up")
        except (http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError):
            pass
        lost = fake.wait_for(1, timeout=2, path_contains="sendMessage")[-1]
        assert lost.json == {"chat_id": 1, "text": "lost"} and lost.status == 0, lost

        # wait_for: ok_only and a helpful timeout.
        ok = fake.wait_for(3, timeout=1, path_contains="chat.postMessage", ok_only=True)
        assert all(c.ok for c in ok), ok
        try:
            fake.wait_for(999, timeout=0.2, path_contains="/callback")
            raise AssertionError("wait_for did not time out")
        except AssertionError as err:
            assert "timed out" in str(err) and "/callback" in str(err), err

        fake.reset()
        assert fake.calls() == []
    print("OK")


if __name__ == "__main__":
    _self_check()
