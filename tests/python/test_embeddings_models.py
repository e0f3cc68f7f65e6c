"""Issue 12's smaller front doors, through the official `openai` SDK and raw httpx:

- `POST /v1/embeddings`: passed through to an OpenAI-format provider (model spliced,
  the provider's answer untouched, the SDK's default `encoding_format: "base64"`
  included) and translated for a Gemini provider (`embedContent` /
  `batchEmbedContents`), which must give the same vectors as mock_upstream computes
  them the same way for both formats;
- `GET /v1/models/{id}`: ids with `/` (percent-encoded by the SDK, or literal), 404 in
  OpenAI's shape;
- CORS (PROTOCOL.md "Browsers (CORS)"): preflights answered before auth with the listed
  headers, origins echoed, `X-Request-Id` and the rate-limit headers exposed, nothing for
  a not-listed origin or without `[server.cors]`; WebSocket upgrades from a not-listed
  `Origin` refused."""

import asyncio
import json

import httpx
import openai
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from conftest import USER_KEY, Gateway
from test_anthropic_front import last_upstream_json, marker, mock_requests, upstream_requests
from test_openai_relay import upstream  # noqa: F401  (the module-scoped mock_upstream fixture)

ALLOWED = "http://app.example"
OTHER = "http://evil.example"

# The keys get a request limit so that the X-RateLimit-* headers the CORS answers
# expose are there to read: a key with no limit gets none of them (config docs,
# tests/it/ratelimit.rs), and the base config's keys set no rpm.
CORS = """
[server.cors]
allow_origins = ["{allowed}", "http://localhost:5173"]

[limits]
rpm = 6000
"""

EXTRA = """
[[providers]]
name = "openai-up"
kind = "openai"
base_url = "http://{upstream}/v1"
api_key = "sk-upstream"
max_retries = 0

[[providers]]
name = "gemini-up"
kind = "gemini"
base_url = "http://{upstream}"
api_key = "gm-upstream"
max_retries = 0

[[models]]
id = "org/embed-small"
provider = "openai-up"
upstream = "text-embedding-3-small"

[[models]]
id = "gemini-embed"
provider = "gemini-up"
upstream = "text-embedding-004"
"""


@pytest.fixture(scope="module")
def gw(upstream):  # noqa: F811
    g = Gateway(server_extra=EXTRA.format(upstream=upstream))
    yield g
    g.stop()


@pytest.fixture(scope="module")
def cors_gw():
    g = Gateway(server_extra=CORS.format(allowed=ALLOWED))
    yield g
    g.stop()


@pytest.fixture
def client(gw):
    return openai.OpenAI(base_url=f"{gw.http}/v1", api_key=USER_KEY, max_retries=0, timeout=30)


def words(texts) -> int:
    return sum(len(t.split()) for t in texts)


# --- embeddings -----------------------------------------------------------------------


def test_embeddings_are_passed_through_to_an_openai_format_provider(upstream, client):  # noqa: F811
    m = marker()
    inputs = [f"hello world {m}", f"a second text {m}"]
    r = client.embeddings.create(model="org/embed-small", input=inputs, encoding_format="float", dimensions=4)
    assert r.object == "list"
    assert r.model == "text-embedding-3-small"
    assert [(d.object, d.index) for d in r.data] == [("embedding", 0), ("embedding", 1)]
    for d in r.data:
        assert len(d.embedding) == 4 and all(isinstance(x, float) for x in d.embedding)
    assert r.data[0].embedding != r.data[1].embedding
    assert (r.usage.prompt_tokens, r.usage.total_tokens) == (words(inputs), words(inputs))
    rec = upstream_requests(upstream, m, "/v1/embeddings")[-1]
    assert rec["json"] == {"model": "text-embedding-3-small", "input": inputs, "encoding_format": "float", "dimensions": 4}
    assert rec["headers"]["authorization"] == "Bearer sk-upstream"
    # The same input gives the same vector.
    again = client.embeddings.create(model="org/embed-small", input=inputs[0], encoding_format="float", dimensions=4)
    assert [d.index for d in again.data] == [0]
    assert again.data[0].embedding == r.data[0].embedding


def test_the_sdks_default_base64_embeddings_travel_untouched(upstream, client):  # noqa: F811
    m = marker()
    inputs = [f"base64 please {m}", f"and this one {m}"]
    floats = client.embeddings.create(model="org/embed-small", input=inputs, encoding_format="float", dimensions=4)
    decoded = client.embeddings.create(model="org/embed-small", input=inputs, dimensions=4)
    sent = last_upstream_json(upstream, m, "/v1/embeddings")
    assert sent["encoding_format"] == "base64" and sent["model"] == "text-embedding-3-small"
    assert [d.index for d in decoded.data] == [0, 1]
    for a, b in zip(floats.data, decoded.data):
        assert b.embedding == pytest.approx(a.embedding, abs=1e-6)


def test_gemini_embeddings_are_translated(upstream, client):  # noqa: F811
    m = marker()
    inputs = [f"translate me {m}", f"me too {m}"]
    reference = client.embeddings.create(model="org/embed-small", input=inputs, encoding_format="float", dimensions=4)
    r = client.embeddings.create(model="gemini-embed", input=inputs, dimensions=4)
    assert r.object == "list"
    assert r.model == "gemini-embed"
    assert [(d.object, d.index) for d in r.data] == [("embedding", 0), ("embedding", 1)]
    for got, want in zip(r.data, reference.data):
        assert got.embedding == pytest.approx(want.embedding, abs=1e-6)
    assert r.usage.total_tokens == r.usage.prompt_tokens >= 0
    recs = [
        x
        for x in upstream_requests(upstream, m)
        if x["path"].startswith("/v1beta/models/text-embedding-004:")
    ]
    assert recs, [x["path"] for x in mock_requests(upstream)]
    assert all(x["path"].endswith((":embedContent", ":batchEmbedContents")) for x in recs)
    assert all(x["headers"]["x-goog-api-key"] == "gm-upstream" for x in recs)
    assert all(inp in "".join(x["body"] for x in recs) for inp in inputs)
    assert all('"outputDimensionality":4' in x["body"].replace(" ", "") for x in recs)


def test_a_provider_400_on_embeddings_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="org/embed-small", input="bad [fault:status=400]", encoding_format="float")
    assert set(e.value.body) >= {"message", "type", "code"}


def test_embeddings_for_an_unknown_model_or_key(gw, client):
    with pytest.raises(openai.NotFoundError) as e:
        client.embeddings.create(model="org/nope", input="x")
    assert e.value.code == "model_not_found"
    bad = openai.OpenAI(base_url=f"{gw.http}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model="org/embed-small", input="x")


# --- models ---------------------------------------------------------------------------


def test_retrieve_a_model(client):
    m = client.models.retrieve("mock")
    assert (m.id, m.object, m.owned_by) == ("mock", "model", "mock")
    assert m.created > 0
    listed = {x.id: x for x in client.models.list()}
    assert listed["mock"].model_dump() == m.model_dump()


def test_retrieve_a_model_whose_id_has_a_slash(gw, client):
    m = client.models.retrieve("org/embed-small")
    assert (m.id, m.object, m.owned_by) == ("org/embed-small", "model", "openai-up")
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    for path in ("/v1/models/org/embed-small", "/v1/models/org%2Fembed-small"):
        r = httpx.get(f"{gw.http}{path}", headers=headers, timeout=10)
        assert r.status_code == 200, path
        doors = {
            "/v1/chat/completions": "passthrough",
            "/v1/messages": "translated",
            "/v1/responses": "passthrough",
            "/v1/embeddings": "passthrough",
        }
        want = {"id": "org/embed-small", "object": "model", "created": m.created, "owned_by": "openai-up"}
        assert r.json() == {**want, "front_doors": doors}


def test_an_unknown_model_is_404_in_openais_shape(gw, client):
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("nope/missing")
    assert e.value.code == "model_not_found"
    r = httpx.get(f"{gw.http}/v1/models/nope/missing", headers={"Authorization": f"Bearer {USER_KEY}"}, timeout=10)
    assert r.status_code == 404
    assert set(r.json()) == {"error"}
    assert set(r.json()["error"]) >= {"message", "type", "code"}
    assert r.json()["error"]["code"] == "model_not_found"


# --- CORS -----------------------------------------------------------------------------


def header_set(value: str | None) -> set[str]:
    return {h.strip().lower() for h in (value or "").split(",") if h.strip()}


def cors_headers(r: httpx.Response) -> dict:
    return {k: v for k, v in r.headers.items() if k.lower().startswith("access-control-")}


def preflight(g, path: str, origin: str, method="POST", headers="authorization, content-type"):
    return httpx.options(
        f"{g.http}{path}",
        headers={"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers},
        timeout=10,
    )


@pytest.mark.parametrize(
    "path",
    ["/v1/chat/completions", "/api/chat", "/api/v1/chat", "/v1/messages", "/v1/responses", "/v1/embeddings"],
)
def test_a_preflight_from_a_listed_origin_is_answered_without_auth(cors_gw, path):
    r = preflight(cors_gw, path, ALLOWED)
    assert r.status_code == 204
    assert r.content == b""
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in {m.upper() for m in header_set(r.headers["access-control-allow-methods"])}
    allowed = header_set(r.headers["access-control-allow-headers"])
    assert {"authorization", "content-type", "x-session-id", "last-event-id"} <= allowed
    assert int(r.headers["access-control-max-age"]) > 0
    assert "origin" in header_set(r.headers.get("vary"))


def test_each_listed_origin_is_echoed(cors_gw):
    r = preflight(cors_gw, "/v1/chat/completions", "http://localhost:5173")
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "http://localhost:5173"


def test_a_preflight_allows_what_the_anthropic_sdk_sends(cors_gw):
    r = preflight(cors_gw, "/v1/messages", ALLOWED, headers="x-api-key, anthropic-version, content-type")
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert {"x-api-key", "anthropic-version", "content-type"} <= header_set(r.headers["access-control-allow-headers"])


def test_a_preflight_from_an_unlisted_origin_gets_no_cors_headers(cors_gw):
    r = preflight(cors_gw, "/v1/chat/completions", OTHER)
    assert cors_headers(r) == {}


def test_an_actual_response_echoes_the_origin_and_exposes_the_headers(cors_gw):
    r = httpx.post(
        f"{cors_gw.http}/v1/chat/completions",
        headers={"Origin": ALLOWED, "Authorization": f"Bearer {USER_KEY}"},
        json={"model": "mock", "messages": [{"role": "user", "content": "from a browser"}]},
        timeout=30,
    )
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == 'You said "from a browser". This is turn 1 of our conversation.'
    assert r.headers["access-control-allow-origin"] == ALLOWED
    exposed = header_set(r.headers["access-control-expose-headers"])
    assert {"x-request-id", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= exposed
    for h in ("x-request-id", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
        assert h in r.headers
    assert "origin" in header_set(r.headers.get("vary"))


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/chat/completions", {"model": "mock", "stream": True, "messages": [{"role": "user", "content": "s"}]}),
        ("/api/chat", {"message": "s", "stream": True}),
    ],
)
def test_a_streamed_response_carries_the_cors_headers(cors_gw, path, body):
    headers = {"Origin": ALLOWED, "Authorization": f"Bearer {USER_KEY}"}
    with httpx.stream("POST", f"{cors_gw.http}{path}", json=body, headers=headers, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["access-control-allow-origin"] == ALLOWED
        assert "x-request-id" in header_set(r.headers["access-control-expose-headers"])
        lines = [line for line in r.iter_lines() if line]
    assert lines and any("data:" in line for line in lines)


def test_an_error_response_carries_the_cors_headers(cors_gw):
    r = httpx.post(
        f"{cors_gw.http}/v1/chat/completions",
        headers={"Origin": ALLOWED, "Authorization": "Bearer sk-wrong"},
        json={"model": "mock", "messages": [{"role": "user", "content": "x"}]},
        timeout=10,
    )
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] == ALLOWED


def test_an_unlisted_origin_is_served_without_cors_headers(cors_gw):
    r = httpx.get(f"{cors_gw.http}/v1/models", headers={"Origin": OTHER, "Authorization": f"Bearer {USER_KEY}"}, timeout=10)
    assert r.status_code == 200
    assert cors_headers(r) == {}


def test_without_cors_config_nothing_is_allowed(gateway):
    r = preflight(gateway, "/v1/chat/completions", ALLOWED)
    assert cors_headers(r) == {}
    r = httpx.get(
        f"{gateway.http}/v1/models", headers={"Origin": ALLOWED, "Authorization": f"Bearer {USER_KEY}"}, timeout=10
    )
    assert r.status_code == 200
    assert cors_headers(r) == {}


def test_a_websocket_upgrade_checks_the_origin(cors_gw):
    async def auth_ok(**kwargs) -> dict:
        async with websockets.connect(f"ws://{cors_gw.addr}/ws", open_timeout=10, **kwargs) as ws:
            await ws.send(json.dumps({"type": "auth", "token": USER_KEY}))
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    async def go():
        with pytest.raises(InvalidStatus) as e:
            await auth_ok(origin=OTHER)
        assert e.value.response.status_code == 403
        assert (await auth_ok(origin=ALLOWED))["type"] == "auth_ok"
        # Clients that are not browsers send no Origin: not refused.
        assert (await auth_ok())["type"] == "auth_ok"

    asyncio.run(asyncio.wait_for(go(), 30))
