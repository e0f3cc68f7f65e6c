"""The official `openai` SDK against models the gateway must translate or fall back
for (issue 11): an Anthropic model (the mock speaks Anthropic's documented wire
format) and an OpenAI model with fallbacks. Tools, streamed tools, the tool-result
follow-up, finish reasons, and the SDK's error classes (BadRequestError,
RateLimitError) by the provider error's kind."""

import json

import openai
import pytest

from conftest import USER_KEY
from test_openai_relay import upstream  # noqa: F401  (the module-scoped mock fixture)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}


@pytest.fixture
def client(start_gateway, upstream):  # noqa: F811
    extra = f"""
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
id = "gpt-with-fallbacks"
provider = "openai-up"
upstream = "gpt-4o-mini"
fallbacks = ["claude"]
"""
    gw = start_gateway(server_extra=extra)
    return openai.OpenAI(base_url=f"{gw.http}/v1", api_key=USER_KEY, max_retries=0)


@pytest.mark.parametrize("model", ["claude", "gpt-with-fallbacks"])
def test_a_tool_call_and_its_follow_up(client, model):
    r = client.chat.completions.create(
        model=model,
        tools=[WEATHER],
        messages=[{"role": "user", "content": "Weather in SF? [fault:reply=tool_call]"}],
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["location"] == "San Francisco, CA"
    follow = client.chat.completions.create(
        model=model,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in SF?"},
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
        ],
    )
    assert follow.choices[0].finish_reason == "stop"
    assert follow.choices[0].message.content


def test_streamed_tool_calls_through_anthropic(client):
    stream = client.chat.completions.create(
        model="claude",
        tools=[WEATHER],
        stream=True,
        messages=[{"role": "user", "content": "Weather? [fault:reply=tool_call]"}],
    )
    args, name, finish = "", None, None
    for chunk in stream:
        delta = chunk.choices[0].delta
        for call in delta.tool_calls or []:
            name = call.function.name or name
            args += call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather"
    assert json.loads(args)["location"] == "San Francisco, CA"
    assert finish == "tool_calls"


def test_length_is_the_finish_reason_when_anthropic_stops_for_max_tokens(client):
    r = client.chat.completions.create(
        model="claude", max_tokens=5, messages=[{"role": "user", "content": "long story [fault:stop=length]"}]
    )
    assert r.choices[0].finish_reason == "length"


@pytest.mark.parametrize("model", ["claude", "gpt-with-fallbacks"])
def test_a_refused_request_is_a_bad_request_error(client, model):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi [fault:error=context_length]"}]
        )


def test_a_provider_rate_limit_is_a_rate_limit_error(client):
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi [fault:status=429]"}])
    assert e.value.response.headers.get("retry-after")


def test_structured_output_with_parse_through_anthropic(client):
    """`.parse()` with a pydantic model: the JSON schema reaches Anthropic as a forced
    tool and its input comes back as the message content the SDK parses."""
    from pydantic import BaseModel

    class City(BaseModel):
        location: str
        unit: str

    parse = getattr(client.chat.completions, "parse", None) or client.beta.chat.completions.parse
    r = parse(
        model="claude",
        response_format=City,
        messages=[{"role": "user", "content": "Where is it warm? [fault:reply=tool_call]"}],
    )
    message = r.choices[0].message
    assert r.choices[0].finish_reason == "stop"
    assert message.tool_calls in (None, [])
    assert message.parsed == City(location="San Francisco, CA", unit="celsius")


def test_reasoning_comes_back_as_reasoning_content_through_anthropic(client):
    r = client.chat.completions.create(
        model="claude",
        reasoning_effort="low",
        messages=[{"role": "user", "content": "one two [fault:reply=thinking+text]"}],
    )
    message = r.choices[0].message
    assert message.reasoning_content == "Thinking about: one two"
    assert message.content.startswith("Echo: one two")
    stream = client.chat.completions.create(
        model="claude",
        reasoning_effort="low",
        stream=True,
        messages=[{"role": "user", "content": "one two [fault:reply=thinking+text]"}],
    )
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in stream if c.choices)
    assert reasoning == "Thinking about: one two"
