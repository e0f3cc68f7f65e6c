"""`POST /v1/responses` (the OpenAI Responses API, issue 12) through the official `openai`
SDK, and one `openai-agents` Agent run (its default model is the Responses API).

Every provider kind but `openai` is translated to its chat API: the built-in `mock`,
`claude` on an Anthropic-format upstream and `compat` on an `openai_compat` upstream
(both `mock_upstream`, whose recorded requests show what the translation sent). Covered:
`input` as a string and as items, `instructions`, `max_output_tokens` (as the upstream's
`max_tokens`), function tools with a `function_call` output item and the
`function_call_output` follow-up, streaming with the Responses event sequence (text and
function-call argument deltas), `previous_response_id` (the conversation up to that
response, kept by the gateway), and errors by the SDK's classes."""

import asyncio
import json

import httpx
import openai
import pytest

from conftest import USER_KEY, Gateway
from test_anthropic_front import REPLY, SF_ARGS, last_upstream_json, marker, sse_events, text_of
from test_openai_relay import upstream  # noqa: F401  (the module-scoped mock_upstream fixture)

EXTRA = """
[[providers]]
name = "claude-up"
kind = "anthropic"
base_url = "http://{upstream}"
api_key = "sk-ant-upstream"
max_retries = 0

[[providers]]
name = "compat-up"
kind = "openai_compat"
base_url = "http://{upstream}/v1"
api_key = "sk-compat"
max_retries = 0

[[models]]
id = "claude"
provider = "claude-up"
upstream = "claude-sonnet-4"

[[models]]
id = "compat"
provider = "compat-up"
upstream = "llama-3.1-8b"
"""

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["location"],
    },
}
# Where each translated model's upstream requests land on mock_upstream.
UPSTREAM_PATH = {"claude": "/v1/messages", "compat": "/v1/chat/completions"}

TEXT_SEQUENCE = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]
CALL_SEQUENCE = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture(scope="module")
def gw(upstream):  # noqa: F811
    g = Gateway(server_extra=EXTRA.format(upstream=upstream))
    yield g
    g.stop()


@pytest.fixture
def client(gw):
    return openai.OpenAI(base_url=f"{gw.http}/v1", api_key=USER_KEY, max_retries=0, timeout=30)


def expected_text(model: str, user_text: str, turn: int = 1) -> str:
    return REPLY.format(user_text, turn) if model == "mock" else f"Echo: {user_text}"


def collapse(types: list[str]) -> list[str]:
    """The event types with runs of the same type folded into one."""
    out: list[str] = []
    for t in types:
        if not out or out[-1] != t:
            out.append(t)
    return out


def upstream_messages(body: dict) -> list[tuple[str, str]]:
    """(role, text) of the messages an upstream chat request carried."""
    return [(m["role"], text_of(m.get("content"))) for m in body["messages"]]


# --- text -----------------------------------------------------------------------------


def test_a_string_input_on_the_mock_model(client):
    r = client.responses.create(model="mock", input="Hello there")
    text = REPLY.format("Hello there", 1)
    assert (r.object, r.status, r.model) == ("response", "completed", "mock")
    assert r.id.startswith("resp_")
    assert r.created_at > 0
    assert r.error is None and r.incomplete_details is None
    assert len(r.output) == 1
    item = r.output[0]
    assert (item.type, item.role, item.status) == ("message", "assistant", "completed")
    assert item.id.startswith("msg_")
    assert [(c.type, c.text, c.annotations) for c in item.content] == [("output_text", text, [])]
    assert r.output_text == text
    u = r.usage
    assert (u.input_tokens, u.output_tokens) == (2 + 3, len(text.split()))
    assert u.total_tokens == u.input_tokens + u.output_tokens
    assert u.input_tokens_details.cached_tokens == 0
    assert u.output_tokens_details.reasoning_tokens == 0


def test_the_wire_body_has_every_required_field(gw):
    r = httpx.post(
        f"{gw.http}/v1/responses",
        headers={"Authorization": f"Bearer {USER_KEY}", "X-Request-Id": "req-resp-1"},
        json={"model": "mock", "input": "wire"},
        timeout=30,
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-request-id"] == "req-resp-1"
    body = r.json()
    assert set(body) >= {
        "id",
        "object",
        "created_at",
        "status",
        "error",
        "incomplete_details",
        "model",
        "output",
        "parallel_tool_calls",
        "tool_choice",
        "tools",
        "usage",
    }
    assert body["object"] == "response" and body["tools"] == []
    assert set(body["usage"]) >= {
        "input_tokens",
        "input_tokens_details",
        "output_tokens",
        "output_tokens_details",
        "total_tokens",
    }
    (item,) = body["output"]
    assert set(item) >= {"id", "type", "role", "status", "content"}
    assert item["content"][0]["type"] == "output_text"
    assert item["content"][0]["text"] == REPLY.format("wire", 1)
    assert item["content"][0]["annotations"] == []


def test_input_items_are_the_conversation(client):
    r = client.responses.create(
        model="mock",
        input=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "input_text", "text": "second"}]},
        ],
    )
    assert r.output_text == REPLY.format("second", 2)


@pytest.mark.parametrize("model", ["claude", "compat"])
def test_instructions_and_max_output_tokens_reach_the_upstream(upstream, client, model):  # noqa: F811
    m = marker()
    r = client.responses.create(model=model, input=f"Hi {m}", instructions="be brief", max_output_tokens=77)
    assert r.status == "completed"
    assert r.model == model
    assert r.output_text == f"Echo: Hi {m}"
    assert r.instructions == "be brief"
    assert r.max_output_tokens == 77
    sent = last_upstream_json(upstream, m, UPSTREAM_PATH[model])
    if model == "claude":
        assert sent["model"] == "claude-sonnet-4"
        assert sent["max_tokens"] == 77
        assert text_of(sent["system"]) == "be brief"
        assert upstream_messages(sent) == [("user", f"Hi {m}")]
    else:
        assert sent["model"] == "llama-3.1-8b"
        assert sent.get("max_tokens", sent.get("max_completion_tokens")) == 77
        assert upstream_messages(sent) == [("system", "be brief"), ("user", f"Hi {m}")]


def test_input_items_reach_an_anthropic_upstream_as_messages(upstream, client):  # noqa: F811
    m = marker()
    r = client.responses.create(
        model="claude",
        input=[
            {"role": "developer", "content": "answer in English"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "input_text", "text": f"second {m}"}]},
        ],
    )
    assert r.output_text == f"Echo: second {m}"
    sent = last_upstream_json(upstream, m, "/v1/messages")
    assert text_of(sent["system"]) == "answer in English"
    assert upstream_messages(sent) == [("user", "first"), ("assistant", "ok"), ("user", f"second {m}")]


def test_an_upstream_stopped_for_length_is_an_incomplete_response(client):
    r = client.responses.create(model="claude", input="a long story [fault:stop=length]", max_output_tokens=5)
    assert r.status == "incomplete"
    assert r.incomplete_details.reason == "max_output_tokens"


# --- function tools -------------------------------------------------------------------


def function_calls(r) -> list:
    return [i for i in r.output if i.type == "function_call"]


@pytest.mark.parametrize("model", ["claude", "compat"])
def test_a_function_call_and_its_output_follow_up(upstream, client, model):  # noqa: F811
    m = marker()
    question = f"Weather in SF? {m}"
    r = client.responses.create(model=model, tools=[WEATHER], input=f"{question} [fault:reply=tool_call]")
    assert r.status == "completed"
    calls = function_calls(r)
    assert len(calls) == 1 and [i.type for i in r.output] == ["function_call"]
    call = calls[0]
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == SF_ARGS
    assert call.call_id
    first = last_upstream_json(upstream, m, UPSTREAM_PATH[model])
    if model == "claude":
        assert first["tools"] == [
            {"name": "get_weather", "description": "Current weather in a city", "input_schema": WEATHER["parameters"]}
        ]
    else:
        assert first["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather in a city",
                    "parameters": WEATHER["parameters"],
                },
            }
        ]

    m2 = marker()
    follow = client.responses.create(
        model=model,
        tools=[WEATHER],
        input=[
            {"role": "user", "content": f"{question} {m2}"},
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "18C and sunny"},
        ],
    )
    assert follow.status == "completed"
    assert function_calls(follow) == []
    assert follow.output_text.startswith("Echo:")
    sent = last_upstream_json(upstream, m2, UPSTREAM_PATH[model])
    msgs = sent["messages"]
    if model == "claude":
        assert [x["role"] for x in msgs] == ["user", "assistant", "user"]
        uses = [b for b in msgs[1]["content"] if b["type"] == "tool_use"]
        assert [(b["id"], b["name"], b["input"]) for b in uses] == [(call.call_id, "get_weather", SF_ARGS)]
        results = [b for b in msgs[2]["content"] if b["type"] == "tool_result"]
        assert [b["tool_use_id"] for b in results] == [call.call_id]
        assert text_of(results[0]["content"]) == "18C and sunny"
    else:
        assert [x["role"] for x in msgs] == ["user", "assistant", "tool"]
        (tc,) = msgs[1]["tool_calls"]
        assert (tc["id"], tc["type"], tc["function"]["name"]) == (call.call_id, "function", "get_weather")
        assert json.loads(tc["function"]["arguments"]) == SF_ARGS
        assert msgs[2]["tool_call_id"] == call.call_id
        assert text_of(msgs[2]["content"]) == "18C and sunny"
        assert follow.output_text == f"Echo: {question} {m2}"


# --- streams --------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["mock", "claude", "compat"])
def test_a_text_stream_has_the_responses_event_sequence(client, model):
    text = f"please stream this answer now {marker()}"
    events = list(client.responses.create(model=model, input=text, stream=True))
    types = [e.type for e in events]
    assert collapse(types) == TEXT_SEQUENCE, types
    assert types.count("response.output_text.delta") >= 2
    assert [e.sequence_number for e in events] == list(range(len(events)))
    created, completed = events[0].response, events[-1].response
    assert created.status == "in_progress" and created.output == []
    assert completed.status == "completed" and completed.id == created.id
    assert created.id.startswith("resp_")
    want = expected_text(model, text)
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert "".join(e.delta for e in deltas) == want
    (done,) = [e for e in events if e.type == "response.output_text.done"]
    assert done.text == want
    (added,) = [e for e in events if e.type == "response.output_item.added"]
    assert (added.item.type, added.output_index) == ("message", 0)
    item_id = added.item.id
    assert all(e.item_id == item_id for e in deltas) and done.item_id == item_id
    assert completed.output_text == want
    assert completed.output[0].id == item_id
    assert completed.usage.output_tokens == len(want.split())


def test_the_wire_stream_names_each_event_by_its_type(gw):
    body = {"model": "mock", "input": "wire stream", "stream": True}
    with httpx.stream(
        "POST", f"{gw.http}/v1/responses", json=body, headers={"Authorization": f"Bearer {USER_KEY}"}, timeout=30
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.iter_lines())
    assert events and all(name == data.get("type") for name, data in events)
    assert events[-1][0] == "response.completed"
    assert not any(data.get("done") for _, data in events), "the Responses stream has no [DONE]"


def test_the_stream_helper_accumulates_the_final_response(client):
    with client.responses.stream(model="mock", input="helper") as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == REPLY.format("helper", 1)
    assert final.output_text == REPLY.format("helper", 1)
    assert final.status == "completed"


@pytest.mark.parametrize("model", ["claude", "compat"])
def test_streamed_function_call_arguments(client, model):
    events = list(
        client.responses.create(
            model=model, tools=[WEATHER], stream=True, input=f"Weather? {marker()} [fault:reply=tool_call]"
        )
    )
    types = [e.type for e in events]
    assert collapse(types) == CALL_SEQUENCE, types
    assert [e.sequence_number for e in events] == list(range(len(events)))
    (added,) = [e for e in events if e.type == "response.output_item.added"]
    assert (added.item.type, added.item.name) == ("function_call", "get_weather")
    assert added.item.call_id
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert len([d for d in deltas if d]) >= 2, deltas
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert "".join(deltas) == done.arguments
    assert json.loads(done.arguments) == SF_ARGS
    (item_done,) = [e for e in events if e.type == "response.output_item.done"]
    assert (item_done.item.call_id, item_done.item.arguments) == (added.item.call_id, done.arguments)
    completed = events[-1].response
    (call,) = function_calls(completed)
    assert (call.call_id, call.name, json.loads(call.arguments)) == (added.item.call_id, "get_weather", SF_ARGS)


# --- previous_response_id -------------------------------------------------------------


def test_previous_response_id_continues_on_the_mock_model(client):
    r1 = client.responses.create(model="mock", input="My name is Ada")
    r2 = client.responses.create(model="mock", input="What is my name?", previous_response_id=r1.id)
    assert r2.output_text == REPLY.format("What is my name?", 2)
    assert r2.previous_response_id == r1.id
    assert r2.id != r1.id
    r3 = client.responses.create(model="mock", input="And again?", previous_response_id=r2.id)
    assert r3.output_text == REPLY.format("And again?", 3)
    # A response id names the conversation up to that response, not the session's tail.
    branch = client.responses.create(model="mock", input="Branch", previous_response_id=r1.id)
    assert branch.output_text == REPLY.format("Branch", 2)


@pytest.mark.parametrize("model", ["claude", "compat"])
def test_previous_response_id_sends_the_first_turn_upstream(upstream, client, model):  # noqa: F811
    m = marker()
    r1 = client.responses.create(model=model, input=f"My name is Ada {m}")
    assert r1.output_text == f"Echo: My name is Ada {m}"
    m2 = marker()
    r2 = client.responses.create(model=model, input=f"What is my name? {m2}", previous_response_id=r1.id)
    assert r2.output_text == f"Echo: What is my name? {m2}"
    sent = last_upstream_json(upstream, m2, UPSTREAM_PATH[model])
    assert upstream_messages(sent) == [
        ("user", f"My name is Ada {m}"),
        ("assistant", f"Echo: My name is Ada {m}"),
        ("user", f"What is my name? {m2}"),
    ]


def test_a_function_call_output_after_previous_response_id(upstream, client):  # noqa: F811
    m = marker()
    r1 = client.responses.create(model="claude", tools=[WEATHER], input=f"Weather? {m} [fault:reply=tool_call]")
    (call,) = function_calls(r1)
    r2 = client.responses.create(
        model="claude",
        tools=[WEATHER],
        previous_response_id=r1.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": f"18C and sunny {m}"}],
    )
    assert r2.status == "completed" and function_calls(r2) == []
    sent = last_upstream_json(upstream, f"18C and sunny {m}", "/v1/messages")
    msgs = sent["messages"]
    assert [x["role"] for x in msgs] == ["user", "assistant", "user"]
    assert text_of(msgs[0]["content"]).startswith(f"Weather? {m}")
    assert [(b["type"], b["id"], b["input"]) for b in msgs[1]["content"] if b["type"] == "tool_use"] == [
        ("tool_use", call.call_id, SF_ARGS)
    ]
    results = [b for b in msgs[2]["content"] if b["type"] == "tool_result"]
    assert [(b["tool_use_id"], text_of(b["content"])) for b in results] == [(call.call_id, f"18C and sunny {m}")]


def test_an_unknown_previous_response_id_is_refused(client):
    # OpenAI answers 400 `previous_response_not_found`; PROTOCOL.md's INVALID_SESSION is a
    # 404. Either is a refusal; answering as if the id were absent is not.
    with pytest.raises((openai.NotFoundError, openai.BadRequestError)) as e:
        client.responses.create(model="mock", input="hi", previous_response_id="resp_doesnotexist0000")
    message = e.value.body["message"]
    assert "resp_doesnotexist0000" in message or "previous_response_id" in message, message


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, error",
    [
        ("hi [fault:error=invalid_request]", openai.BadRequestError),
        ("hi [fault:status=429]", openai.RateLimitError),
    ],
)
@pytest.mark.parametrize("model", ["claude", "compat"])
def test_upstream_errors_by_kind(client, model, content, error):
    with pytest.raises(error) as e:
        client.responses.create(model=model, input=content)
    # The SDK keeps the `error` object of OpenAI's `{"error":{"message","type","code"}}`.
    body = e.value.body
    assert isinstance(body, dict) and set(body) >= {"message", "type", "code"}, body
    if error is openai.BadRequestError:
        assert e.value.status_code == 400
        assert "Invalid request." in body["message"]
    else:
        assert e.value.status_code == 429
        assert int(e.value.response.headers["retry-after"]) >= 0


def test_a_bad_key_and_an_unknown_model(gw, client):
    bad = openai.OpenAI(base_url=f"{gw.http}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.responses.create(model="mock", input="x")
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model="gpt-nope", input="x")
    assert e.value.code == "model_not_found"


# --- openai-agents --------------------------------------------------------------------


def test_an_openai_agents_agent_calls_a_tool_and_finishes(gw, upstream):  # noqa: F811
    from agents import Agent, OpenAIResponsesModel, RunConfig, Runner, function_tool

    m = marker()
    calls = []

    @function_tool
    def get_weather(location: str, unit: str) -> str:
        """Current weather in a city.

        Args:
            location: The city.
            unit: celsius or fahrenheit.
        """
        calls.append((location, unit))
        return f"18C and sunny in {location} {m}"

    async def run():
        client = openai.AsyncOpenAI(base_url=f"{gw.http}/v1", api_key=USER_KEY, max_retries=0, timeout=30)
        agent = Agent(
            name="weather",
            instructions="Answer with the weather tool.",
            tools=[get_weather],
            model=OpenAIResponsesModel(model="claude", openai_client=client),
        )
        return await Runner.run(
            agent,
            f"What is the weather in San Francisco? {m} [fault:reply=tool_call]",
            max_turns=4,
            run_config=RunConfig(tracing_disabled=True),
        )

    result = asyncio.run(asyncio.wait_for(run(), 60))
    assert calls == [("San Francisco, CA", "celsius")]
    assert isinstance(result.final_output, str) and result.final_output.startswith("Echo:")
    # The second model call carried the tool's result back to the upstream.
    sent = last_upstream_json(upstream, f"18C and sunny in San Francisco, CA {m}", "/v1/messages")
    assert text_of(sent["system"]) == "Answer with the weather tool."
    assert [t["name"] for t in sent["tools"]] == ["get_weather"]
    results = [b for b in sent["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert [text_of(b["content"]) for b in results] == [f"18C and sunny in San Francisco, CA {m}"]
