"""The `/v1/chat/completions` pass-through, judged by the official `openai` SDK: the
gateway in front of `mock_upstream` (OpenAI's real wire format), so non-stream answers
and streams are the provider's own, relayed untouched but for the model name sent
upstream. Also: an SDK stream cut mid-way raises, and a provider 400 is a
BadRequestError."""

import os
import re
import subprocess
import threading
import time
from pathlib import Path

import openai
import pytest

from conftest import ROOT, USER_KEY

ECHO_WORDS = "one two three four five six seven eight"


@pytest.fixture(scope="module")
def upstream():
    gateway_bin = Path(os.environ.get("CLAWGATE_BIN", str(ROOT / "target" / "debug" / "clawgate")))
    binary = gateway_bin.parent / "mock_upstream"
    proc = subprocess.Popen(
        [str(binary), "--listen", "127.0.0.1:0", "--workers", "1"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    addr = None
    deadline = time.time() + 15
    assert proc.stderr is not None
    while time.time() < deadline and addr is None:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(r"listening on https?://(\S+)", line)
        if m:
            addr = m.group(1)
    if addr is None:
        proc.kill()
        raise RuntimeError("mock_upstream did not print its address")
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    yield addr
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def client(start_gateway, upstream):
    extra = f"""
[[providers]]
name = "up"
kind = "openai"
base_url = "http://{upstream}/v1"
api_key = "sk-upstream"
max_retries = 0

[[models]]
id = "relayed"
provider = "up"
upstream = "gpt-4o-mini"
"""
    gw = start_gateway(server_extra=extra)
    return openai.OpenAI(base_url=f"{gw.http}/v1", api_key=USER_KEY, max_retries=0)


def test_a_relayed_completion_is_the_providers_own(client):
    r = client.chat.completions.create(model="relayed", messages=[{"role": "user", "content": ECHO_WORDS}])
    assert r.object == "chat.completion"
    assert r.model == "gpt-4o-mini"
    assert r.choices[0].message.content == f"Echo: {ECHO_WORDS}"
    assert r.usage.prompt_tokens == 8 + 3


def test_a_relayed_stream_adds_up_without_a_usage_chunk_unless_asked(client):
    chunks = list(
        client.chat.completions.create(
            model="relayed", messages=[{"role": "user", "content": ECHO_WORDS}], stream=True
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == f"Echo: {ECHO_WORDS}"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices and c.usage is None for c in chunks)
    with_usage = list(
        client.chat.completions.create(
            model="relayed",
            messages=[{"role": "user", "content": ECHO_WORDS}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert with_usage[-1].choices == [] and with_usage[-1].usage.prompt_tokens == 8 + 3


def test_a_relayed_stream_cut_by_the_provider_raises_in_the_sdk(client):
    stream = client.chat.completions.create(
        model="relayed",
        messages=[{"role": "user", "content": "go on [fault:chunks=8,reset-mid-stream=2]"}],
        stream=True,
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_a_provider_400_on_a_stream_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="relayed", messages=[{"role": "user", "content": "x [fault:status=400]"}], stream=True
        )
