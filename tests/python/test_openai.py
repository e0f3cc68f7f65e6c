"""`/v1/*` through the official `openai` Python SDK (and raw httpx for the wire
format): non-stream and stream completions, usage chunks, models, error classes,
sessions by `X-Session-Id`."""

import json

import httpx
import openai
import pytest

from conftest import USER_KEY

REPLY = 'You said "{}". This is turn {} of our conversation.'


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway.http}/v1", api_key=USER_KEY, max_retries=0)


def test_non_stream_completion_has_openai_shape(client):
    r = client.chat.completions.create(
        model="mock",
        messages=[{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"}],
    )
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-")
    assert r.model == "mock"
    assert len(r.choices) == 1
    c = r.choices[0]
    assert (c.index, c.finish_reason, c.message.role) == (0, "stop", "assistant")
    assert c.message.content == REPLY.format("hi", 1)
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0


def test_request_messages_are_the_history_without_a_session(client):
    r = client.chat.completions.create(
        model="mock",
        messages=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
        ],
    )
    assert r.choices[0].message.content == REPLY.format("second", 2)
    # Nothing was stored: the same request again is again turn 2.
    r = client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "solo"}])
    assert r.choices[0].message.content == REPLY.format("solo", 1)


def test_x_session_id_keeps_the_conversation_on_the_gateway(client):
    headers = {"X-Session-Id": "py-openai-session"}
    r = client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "a"}], extra_headers=headers)
    assert r.choices[0].message.content == REPLY.format("a", 1)
    r = client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "b"}], extra_headers=headers)
    assert r.choices[0].message.content == REPLY.format("b", 2)


def test_stream_yields_chunks_that_add_up_and_a_stop(client):
    stream = client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "stream me"}], stream=True)
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY.format("stream me", 1)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_include_usage_adds_a_final_usage_chunk(client):
    stream = client.chat.completions.create(
        model="mock",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens > 0
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_the_wire_stream_ends_with_done(gateway):
    body = {"model": "mock", "stream": True, "messages": [{"role": "user", "content": "wire"}]}
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    with httpx.stream("POST", f"{gateway.http}/v1/chat/completions", json=body, headers=headers) as r:
        assert r.headers["content-type"] == "text/event-stream"
        lines = [l for l in r.iter_lines() if l]
    assert all(l.startswith("data: ") for l in lines)
    assert lines[-1] == "data: [DONE]"
    first = json.loads(lines[0][6:])
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "usage" not in first


def test_models_list_shows_the_catalogue(client):
    models = client.models.list()
    ids = [m.id for m in models]
    assert ids == ["mock", "mock-slow"]
    m = models.data[0]
    assert (m.object, m.owned_by) == ("model", "mock") and m.created > 0


def test_a_bad_key_is_an_authentication_error(gateway):
    bad = openai.OpenAI(base_url=f"{gateway.http}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model="mock", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_an_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_found"


def test_a_malformed_request_is_a_bad_request_in_openai_shape(gateway, client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="mock", messages=[{"role": "assistant", "content": "x"}])
    r = httpx.post(
        f"{gateway.http}/v1/chat/completions", content=b"{nope", headers={"Authorization": f"Bearer {USER_KEY}"}
    )
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and set(err) == {"message", "type", "code"}


def test_an_upstream_failure_is_a_server_error(client):
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "[mock:error] now"}])
    assert e.value.status_code == 502
