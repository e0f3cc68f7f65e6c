"""`POST /v1/messages` (PROTOCOL.md "Anthropic-compatible front door", issue 12) through
the official `anthropic` Python SDK, as Claude Code and Anthropic-SDK apps reach a
gateway: auth by `x-api-key` and by `Authorization: Bearer`; non-stream and streamed
answers with Anthropic's exact event sequence; tools (`tool_use`, streamed
`input_json_delta`, the `tool_result` follow-up); system prompts as a string and as
blocks; base64 images; thinking deltas; stop reasons; errors in Anthropic's shape with
the SDK's error classes; `messages.count_tokens`.

Three models serve it: the built-in `mock` (translated from the canonical turn), `gpt`
on an OpenAI-format upstream (translated) and `claude` on an Anthropic-format upstream,
which gets the client's body untouched but for `model` (checked against what
`mock_upstream` recorded, `GET /__mock/requests`)."""

import json
import uuid

import anthropic
import httpx
import pytest

from conftest import USER_KEY, Gateway
from test_openai_relay import upstream  # noqa: F401  (the module-scoped mock_upstream fixture)

REPLY = 'You said "{}". This is turn {} of our conversation.'
ANTHROPIC_VERSION = "2023-06-01"
# mock_upstream's scripted tool call and thinking signature (src/bin/mock_upstream/reply.rs).
SF_ARGS = {"location": "San Francisco, CA", "unit": "celsius"}
SIGNATURE = "bW9jay10aGlua2luZy1zaWduYXR1cmU="
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["location"],
    },
}
# A 1x1 transparent PNG.
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="

EXTRA = """
[[providers]]
name = "claude-up"
kind = "anthropic"
base_url = "http://{upstream}"
api_key = "sk-ant-upstream"
max_retries = 0

[[providers]]
name = "openai-up"
kind = "openai"
base_url = "http://{upstream}/v1"
api_key = "sk-upstream"
max_retries = 0

[[models]]
id = "claude"
provider = "claude-up"
upstream = "claude-sonnet-4"

[[models]]
id = "gpt"
provider = "openai-up"
upstream = "gpt-4o-mini"
"""

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
}


# --- helpers shared with test_responses_front.py and test_embeddings_models.py -------


def marker() -> str:
    """A word unique to one test, to find its request among those the mock recorded."""
    return "m" + uuid.uuid4().hex[:10]


def mock_requests(upstream_addr: str, path: str | None = None) -> list[dict]:
    """What mock_upstream received, oldest first (`GET /__mock/requests[?path=]`)."""
    params = {"path": path} if path else None
    r = httpx.get(f"http://{upstream_addr}/__mock/requests", params=params, timeout=10)
    r.raise_for_status()
    return r.json()["requests"]


def upstream_requests(upstream_addr: str, mark: str, path: str | None = None) -> list[dict]:
    """The recorded requests whose body contains `mark`, oldest first; at least one."""
    found = [r for r in mock_requests(upstream_addr, path) if mark in r["body"]]
    assert found, f"the upstream received no request containing {mark!r} (path {path})"
    return found


def last_upstream_json(upstream_addr: str, mark: str, path: str | None = None) -> dict:
    """The parsed body of the last recorded request containing `mark`."""
    body = upstream_requests(upstream_addr, mark, path)[-1]["json"]
    assert isinstance(body, dict), body
    return body


def text_of(content) -> str:
    """The text of a message's content: a string, or its text parts concatenated."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))


def sse_events(lines) -> list[tuple[str | None, dict]]:
    """(event name, parsed data) of each SSE event in `lines` (httpx `iter_lines()`)."""
    events, name, data = [], None, []
    for line in lines:
        if line == "":
            if data:
                joined = "\n".join(data)
                events.append((name, json.loads(joined) if joined != "[DONE]" else {"done": True}))
            name, data = None, []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            name = line[len("event:") :].strip()
        elif line.startswith("data:"):
            value = line[len("data:") :]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        joined = "\n".join(data)
        events.append((name, json.loads(joined) if joined != "[DONE]" else {"done": True}))
    return events


class Sent:
    """An httpx request hook keeping the JSON bodies a client sent."""

    def __init__(self):
        self.bodies: list[dict] = []

    def __call__(self, request):
        if request.method == "POST" and request.content:
            self.bodies.append(json.loads(request.content))

    @property
    def last(self) -> dict:
        assert self.bodies, "the client sent nothing"
        return self.bodies[-1]


def without_model(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "model"}


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_anthropic_env(monkeypatch):
    """The SDK reads credentials and the base URL from the environment: keep it out."""
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def gw(upstream):  # noqa: F811
    g = Gateway(server_extra=EXTRA.format(upstream=upstream))
    yield g
    g.stop()


def client_for(gw, key=USER_KEY, auth="x-api-key", sent: Sent | None = None) -> anthropic.Anthropic:
    """An SDK client authenticating by `x-api-key` (as Claude Code and curl do), by an
    explicit `Authorization: Bearer` header, or by whatever the SDK does with
    `api_key=` (`auth="sdk"`)."""
    kwargs = dict(base_url=gw.http, max_retries=0, timeout=30)
    if auth == "x-api-key":
        kwargs.update(api_key=None, default_headers={"x-api-key": key})
    elif auth == "bearer":
        kwargs.update(api_key=None, default_headers={"Authorization": f"Bearer {key}"})
    elif auth == "auth_token":
        kwargs.update(api_key=None, auth_token=key)
    else:
        kwargs.update(api_key=key)
    if sent is not None:
        kwargs["http_client"] = anthropic.DefaultHttpxClient(event_hooks={"request": [sent]})
    return anthropic.Anthropic(**kwargs)


@pytest.fixture
def client(gw):
    return client_for(gw)


def blocks(message) -> list[dict]:
    return [b.model_dump(exclude_none=True) for b in message.content]


def expected_text(model: str, user_text: str, turn: int = 1) -> str:
    return REPLY.format(user_text, turn) if model == "mock" else f"Echo: {user_text}"


def assert_anthropic_error(body, error_type: str):
    assert isinstance(body, dict) and body.get("type") == "error", f"not Anthropic's error shape: {body}"
    assert set(body) <= {"type", "error", "request_id"}, body
    assert set(body["error"]) == {"type", "message"}, body
    assert body["error"]["type"] == error_type
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


# --- auth and plain text ------------------------------------------------------------


@pytest.mark.parametrize("auth", ["x-api-key", "bearer", "auth_token", "sdk"])
def test_every_way_of_passing_the_key_is_accepted(gw, auth):
    c = client_for(gw, auth=auth)
    msg = c.messages.create(model="mock", max_tokens=64, messages=[{"role": "user", "content": f"hi {auth}"}])
    assert blocks(msg) == [{"type": "text", "text": REPLY.format(f"hi {auth}", 1)}]


def test_non_stream_reply_from_the_mock_model_has_anthropics_shape(client):
    msg = client.messages.create(model="mock", max_tokens=64, messages=[{"role": "user", "content": "Hello there"}])
    text = REPLY.format("Hello there", 1)
    assert (msg.type, msg.role, msg.model) == ("message", "assistant", "mock")
    assert msg.id.startswith("msg_")
    assert blocks(msg) == [{"type": "text", "text": text}]
    assert (msg.stop_reason, msg.stop_sequence) == ("end_turn", None)
    # The mock counts a token per word, plus 3 per prompt message.
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (2 + 3, len(text.split()))


def test_the_wire_body_has_every_field_of_a_message(gw):
    r = httpx.post(
        f"{gw.http}/v1/messages",
        headers={"x-api-key": USER_KEY, "anthropic-version": ANTHROPIC_VERSION, "X-Request-Id": "req-anth-1"},
        json={"model": "mock", "max_tokens": 64, "messages": [{"role": "user", "content": "wire"}]},
        timeout=30,
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-request-id"] == "req-anth-1"
    # (The X-RateLimit-* headers come with a key that has a limit; this one has none.)
    body = r.json()
    assert set(body) >= {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
    assert body["content"] == [{"type": "text", "text": REPLY.format("wire", 1)}]
    assert body["stop_sequence"] is None
    assert set(body["usage"]) >= {"input_tokens", "output_tokens"}
    assert "success" not in body and "data" not in body


def test_the_request_messages_are_the_history(client):
    msg = client.messages.create(
        model="mock",
        max_tokens=64,
        messages=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
        ],
    )
    assert blocks(msg) == [{"type": "text", "text": REPLY.format("second", 2)}]


def test_an_openai_format_upstream_is_translated(gw, upstream, client):  # noqa: F811
    m = marker()
    # This SDK's `create()` no longer names the sampling settings: they go as extra body.
    msg = client.messages.create(
        model="gpt",
        max_tokens=64,
        messages=[{"role": "user", "content": f"Hello there {m}"}],
        extra_body={"temperature": 0.5},
    )
    assert msg.model == "gpt"
    assert blocks(msg) == [{"type": "text", "text": f"Echo: Hello there {m}"}]
    assert (msg.stop_reason, msg.stop_sequence) == ("end_turn", None)
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (3 + 3, 4)
    sent = last_upstream_json(upstream, m, "/v1/chat/completions")
    assert sent["model"] == "gpt-4o-mini"
    assert [(x["role"], text_of(x["content"])) for x in sent["messages"]] == [("user", f"Hello there {m}")]
    assert sent.get("max_tokens", sent.get("max_completion_tokens")) == 64
    assert sent["temperature"] == 0.5


def test_an_anthropic_upstream_gets_the_body_untouched_but_for_the_model(gw, upstream):  # noqa: F811
    m = marker()
    sent = Sent()
    c = client_for(gw, sent=sent)
    msg = c.messages.create(
        model="claude",
        max_tokens=100,
        system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        stop_sequences=["###"],
        metadata={"user_id": "u-42"},
        extra_body={"temperature": 0.2, "top_k": 5},
        messages=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": f"Hello {m}"}]},
        ],
    )
    got = last_upstream_json(upstream, m, "/v1/messages")
    assert got["model"] == "claude-sonnet-4"
    assert without_model(got) == without_model(sent.last)
    assert blocks(msg) == [{"type": "text", "text": f"Echo: Hello {m}"}]
    assert msg.model in ("claude", "claude-sonnet-4")
    assert (msg.stop_reason, msg.usage.output_tokens) == ("end_turn", 3)
    rec = upstream_requests(upstream, m, "/v1/messages")[-1]
    assert rec["headers"]["x-api-key"] == "sk-ant-upstream"
    assert rec["headers"].get("anthropic-version")


# --- streams --------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["mock", "gpt", "claude"])
def test_a_stream_gives_text_deltas_and_the_final_message(client, model):
    m = marker()
    text = f"please stream this answer {m}"
    with client.messages.stream(model=model, max_tokens=64, messages=[{"role": "user", "content": text}]) as s:
        deltas = list(s.text_stream)
        final = s.get_final_message()
    want = expected_text(model, text)
    assert len(deltas) >= 2, deltas
    assert "".join(deltas) == want
    assert blocks(final) == [{"type": "text", "text": want}]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == len(want.split())
    assert final.id.startswith("msg_")


@pytest.mark.parametrize("model", ["mock", "gpt", "claude"])
def test_the_wire_stream_is_anthropics_event_sequence(gw, model):
    m = marker()
    text = f"one two three four five six {m}"
    body = {"model": model, "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": text}]}
    headers = {"x-api-key": USER_KEY, "anthropic-version": ANTHROPIC_VERSION}
    with httpx.stream("POST", f"{gw.http}/v1/messages", json=body, headers=headers, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.iter_lines())
    for name, data in events:
        assert name == data["type"], (name, data)
    events = [(n, d) for n, d in events if n != "ping"]
    names = [n for n, _ in events]
    n_deltas = names.count("content_block_delta")
    assert n_deltas >= 2
    assert names == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * n_deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert (start["type"], start["role"], start["content"]) == ("message", "assistant", [])
    assert start["id"].startswith("msg_")
    assert start["stop_reason"] is None and start["stop_sequence"] is None
    assert isinstance(start["usage"]["input_tokens"], int)
    assert events[1][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    pieces = []
    for _, d in events[2 : 2 + n_deltas]:
        assert d["index"] == 0 and d["delta"]["type"] == "text_delta"
        pieces.append(d["delta"]["text"])
    assert "".join(pieces) == expected_text(model, text)
    assert events[-3][1] == {"type": "content_block_stop", "index": 0}
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["delta"]["stop_sequence"] is None
    assert delta["usage"]["output_tokens"] == len(expected_text(model, text).split())
    assert events[-1][1] == {"type": "message_stop"}


# --- tools ----------------------------------------------------------------------------


def tool_use_blocks(message) -> list:
    return [b for b in message.content if b.type == "tool_use"]


@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_a_tool_use_reply_and_its_tool_result_follow_up(gw, upstream, model):  # noqa: F811
    m = marker()
    sent = Sent()
    c = client_for(gw, sent=sent)
    question = f"Weather in SF? {m}"
    msg = c.messages.create(
        model=model,
        max_tokens=200,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": f"{question} [fault:reply=tool_call]"}],
    )
    assert msg.stop_reason == "tool_use"
    calls = tool_use_blocks(msg)
    assert len(calls) == 1 and [b.type for b in msg.content] == ["tool_use"]
    call = calls[0]
    assert (call.name, call.input) == ("get_weather", SF_ARGS)
    assert isinstance(call.id, str) and call.id
    if model == "gpt":
        first = last_upstream_json(upstream, m, "/v1/chat/completions")
        assert first["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather in a city",
                    "parameters": WEATHER_TOOL["input_schema"],
                },
            }
        ]

    m2 = marker()
    follow = c.messages.create(
        model=model,
        max_tokens=200,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": f"{question} {m2}"},
            {"role": "assistant", "content": blocks(msg)},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C and sunny"}]},
        ],
    )
    assert follow.stop_reason == "end_turn"
    assert [b.type for b in follow.content] == ["text"]
    assert follow.content[0].text.startswith("Echo:")
    if model == "claude":
        got = last_upstream_json(upstream, m2, "/v1/messages")
        assert without_model(got) == without_model(sent.last)
    else:
        got = last_upstream_json(upstream, m2, "/v1/chat/completions")
        msgs = got["messages"]
        assert [x["role"] for x in msgs] == ["user", "assistant", "tool"]
        (tc,) = msgs[1]["tool_calls"]
        assert (tc["id"], tc["type"], tc["function"]["name"]) == (call.id, "function", "get_weather")
        assert json.loads(tc["function"]["arguments"]) == SF_ARGS
        assert msgs[2]["tool_call_id"] == call.id
        assert text_of(msgs[2]["content"]) == "18C and sunny"
        assert follow.content[0].text == f"Echo: {question} {m2}"


@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_streamed_tool_input_arrives_as_input_json_deltas(client, model):
    with client.messages.stream(
        model=model,
        max_tokens=200,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": f"Weather? {marker()} [fault:reply=tool_call]"}],
    ) as s:
        events = list(s)
        final = s.get_final_message()
    starts = [e for e in events if e.type == "content_block_start"]
    assert [e.content_block.type for e in starts] == ["tool_use"]
    assert starts[0].content_block.name == "get_weather" and starts[0].content_block.id
    assert starts[0].content_block.input == {}
    pieces = [
        e.delta.partial_json
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    ]
    assert len([p for p in pieces if p]) >= 2, pieces
    assert json.loads("".join(pieces)) == SF_ARGS
    assert [e.type for e in events if e.type == "content_block_delta" and e.delta.type != "input_json_delta"] == []
    assert final.stop_reason == "tool_use"
    (call,) = tool_use_blocks(final)
    assert (call.id, call.name, call.input) == (starts[0].content_block.id, "get_weather", SF_ARGS)


# --- system prompts and images --------------------------------------------------------


def test_a_system_prompt_reaches_the_mock_model(client):
    plain = client.messages.create(model="mock", max_tokens=64, messages=[{"role": "user", "content": "Hello"}])
    with_system = client.messages.create(
        model="mock", max_tokens=64, system="be brief", messages=[{"role": "user", "content": "Hello"}]
    )
    assert blocks(with_system) == blocks(plain) == [{"type": "text", "text": REPLY.format("Hello", 1)}]
    # One more prompt message of two words: 2 + 3 more input tokens.
    assert with_system.usage.input_tokens - plain.usage.input_tokens == 5


@pytest.mark.parametrize("model", ["gpt", "claude"])
@pytest.mark.parametrize("form", ["string", "blocks"])
def test_a_system_prompt_reaches_the_upstream(gw, upstream, model, form):  # noqa: F811
    m = marker()
    sent = Sent()
    c = client_for(gw, sent=sent)
    system = (
        "be brief"
        if form == "string"
        else [{"type": "text", "text": "be brief"}, {"type": "text", "text": "and kind"}]
    )
    msg = c.messages.create(model=model, max_tokens=64, system=system, messages=[{"role": "user", "content": f"Hi {m}"}])
    assert blocks(msg) == [{"type": "text", "text": f"Echo: Hi {m}"}]
    if model == "claude":
        got = last_upstream_json(upstream, m, "/v1/messages")
        assert got["system"] == system
        assert without_model(got) == without_model(sent.last)
        return
    got = last_upstream_json(upstream, m, "/v1/chat/completions")
    roles = [x["role"] for x in got["messages"]]
    assert roles[-1] == "user" and text_of(got["messages"][-1]["content"]) == f"Hi {m}"
    system_text = " ".join(text_of(x["content"]) for x in got["messages"] if x["role"] in ("system", "developer"))
    if form == "string":
        assert system_text == "be brief"
    else:
        assert "be brief" in system_text and "and kind" in system_text
        assert system_text.index("be brief") < system_text.index("and kind")


@pytest.mark.parametrize("model", ["mock", "gpt", "claude"])
def test_a_base64_image_block(gw, upstream, model):  # noqa: F811
    m = marker()
    sent = Sent()
    c = client_for(gw, sent=sent)
    text = f"What is in this image? {m}"
    msg = c.messages.create(
        model=model,
        max_tokens=64,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                    {"type": "text", "text": text},
                ],
            }
        ],
    )
    assert blocks(msg) == [{"type": "text", "text": expected_text(model, text)}]
    if model == "claude":
        got = last_upstream_json(upstream, m, "/v1/messages")
        assert without_model(got) == without_model(sent.last)
    elif model == "gpt":
        got = last_upstream_json(upstream, m, "/v1/chat/completions")
        parts = got["messages"][-1]["content"]
        assert isinstance(parts, list), parts
        assert [p["type"] for p in parts] == ["image_url", "text"]
        assert parts[0]["image_url"]["url"] == f"data:image/png;base64,{PNG_B64}"
        assert parts[1]["text"] == text


# --- thinking and stop reasons --------------------------------------------------------


def test_thinking_deltas_from_an_anthropic_upstream(client):
    text = f"why is the sky blue {marker()}"
    with client.messages.stream(
        model="claude",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": f"{text} [fault:reply=thinking+text]"}],
    ) as s:
        events = list(s)
        final = s.get_final_message()
    starts = [e.content_block.type for e in events if e.type == "content_block_start"]
    assert starts == ["thinking", "text"]
    deltas = [e.delta for e in events if e.type == "content_block_delta"]
    thinking = "".join(d.thinking for d in deltas if d.type == "thinking_delta")
    signature = "".join(d.signature for d in deltas if d.type == "signature_delta")
    answer = "".join(d.text for d in deltas if d.type == "text_delta")
    assert len([d for d in deltas if d.type == "thinking_delta"]) >= 2
    assert thinking == f"Thinking about: {text}"
    assert signature == SIGNATURE
    assert answer == f"Echo: {text}"
    kinds = [d.type for d in deltas]
    assert kinds.index("signature_delta") < kinds.index("text_delta")
    assert blocks(final) == [
        {"type": "thinking", "thinking": f"Thinking about: {text}", "signature": SIGNATURE},
        {"type": "text", "text": f"Echo: {text}"},
    ]


def test_thinking_blocks_in_a_non_stream_answer_from_an_anthropic_upstream(client):
    text = f"think first {marker()}"
    msg = client.messages.create(
        model="claude",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": f"{text} [fault:reply=thinking+text]"}],
    )
    assert blocks(msg) == [
        {"type": "thinking", "thinking": f"Thinking about: {text}", "signature": SIGNATURE},
        {"type": "text", "text": f"Echo: {text}"},
    ]


@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_an_upstream_stopped_for_length_is_max_tokens(client, model):
    msg = client.messages.create(
        model=model, max_tokens=5, messages=[{"role": "user", "content": "a long story [fault:stop=length]"}]
    )
    assert msg.stop_reason == "max_tokens"
    with client.messages.stream(
        model=model, max_tokens=5, messages=[{"role": "user", "content": "a long story [fault:stop=length]"}]
    ) as s:
        events = list(s)
        final = s.get_final_message()
    assert [e.delta.stop_reason for e in events if e.type == "message_delta"] == ["max_tokens"]
    assert final.stop_reason == "max_tokens"


# --- errors ---------------------------------------------------------------------------


def test_a_bad_key_is_an_authentication_error(gw):
    bad = client_for(gw, key="sk-wrong", auth="sdk")
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model="mock", max_tokens=16, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 401
    assert_anthropic_error(e.value.body, "authentication_error")
    r = httpx.post(
        f"{gw.http}/v1/messages",
        headers={"x-api-key": "sk-wrong-too", "anthropic-version": ANTHROPIC_VERSION},
        json={"model": "mock", "max_tokens": 16, "messages": [{"role": "user", "content": "x"}]},
        timeout=30,
    )
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/json")
    assert_anthropic_error(r.json(), "authentication_error")


def test_a_missing_key_is_an_authentication_error_in_anthropics_shape(gw):
    r = httpx.post(
        f"{gw.http}/v1/messages",
        headers={"anthropic-version": ANTHROPIC_VERSION},
        json={"model": "mock", "max_tokens": 16, "messages": [{"role": "user", "content": "x"}]},
        timeout=30,
    )
    assert r.status_code == 401
    assert_anthropic_error(r.json(), "authentication_error")


@pytest.mark.parametrize("model", ["gpt", "claude"])
@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_400_is_a_bad_request_error(client, model, stream):
    with pytest.raises(anthropic.BadRequestError) as e:
        r = client.messages.create(
            model=model,
            max_tokens=16,
            stream=stream,
            messages=[{"role": "user", "content": "hi [fault:error=invalid_request]"}],
        )
        if stream:
            list(r)
    assert e.value.status_code == 400
    assert_anthropic_error(e.value.body, "invalid_request_error")
    # The provider's own message (PROTOCOL.md "Provider errors, by kind").
    assert "Invalid request." in e.value.body["error"]["message"]


@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_an_upstream_429_is_a_rate_limit_error(client, model):
    with pytest.raises(anthropic.RateLimitError) as e:
        client.messages.create(
            model=model, max_tokens=16, messages=[{"role": "user", "content": "hi [fault:status=429]"}]
        )
    assert e.value.status_code == 429
    assert int(e.value.response.headers["retry-after"]) >= 0
    assert_anthropic_error(e.value.body, "rate_limit_error")


def test_an_unknown_model_is_a_not_found_error(client):
    with pytest.raises(anthropic.NotFoundError) as e:
        client.messages.create(model="claude-nope", max_tokens=16, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 404
    assert_anthropic_error(e.value.body, "not_found_error")


def test_a_malformed_request_is_an_invalid_request_error_naming_the_field(gw):
    headers = {"x-api-key": USER_KEY, "anthropic-version": ANTHROPIC_VERSION}
    r = httpx.post(
        f"{gw.http}/v1/messages",
        headers=headers,
        json={"model": "mock", "messages": [{"role": "user", "content": "no max_tokens"}]},
        timeout=30,
    )
    assert r.status_code == 400
    body = r.json()
    assert_anthropic_error(body, "invalid_request_error")
    assert "max_tokens" in body["error"]["message"]
    r = httpx.post(f"{gw.http}/v1/messages", headers=headers, content=b"{nope", timeout=30)
    assert r.status_code == 400
    assert_anthropic_error(r.json(), "invalid_request_error")


# --- count_tokens ---------------------------------------------------------------------


@pytest.mark.parametrize("model", ["mock", "gpt"])
def test_count_tokens_answers_an_estimate(gw, client, model):
    short = client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "hello"}])
    long = client.messages.count_tokens(
        model=model, system="be brief", messages=[{"role": "user", "content": "hello " * 200}]
    )
    assert isinstance(short.input_tokens, int) and short.input_tokens > 0
    assert long.input_tokens > short.input_tokens + 100
    r = httpx.post(
        f"{gw.http}/v1/messages/count_tokens",
        headers={"x-api-key": USER_KEY, "anthropic-version": ANTHROPIC_VERSION},
        json={"model": model, "messages": [{"role": "user", "content": "hello"}]},
        timeout=30,
    )
    assert r.status_code == 200
    assert r.json() == {"input_tokens": short.input_tokens}
