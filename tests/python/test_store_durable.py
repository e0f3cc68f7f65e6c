"""The durable store seen from real clients: a turn the client saw finish (the
`websockets` client's `done`, the `openai` SDK's JSON answer and its streamed
`[DONE]`) is still there after `kill -9` and a restart, in order, and the
conversation goes on from it."""

import asyncio
import json
import urllib.request

import websockets
from openai import OpenAI

from conftest import USER_KEY, Gateway


def history(gw, session_id):
    req = urllib.request.Request(
        f"{gw.http}/api/sessions/{session_id}", headers={"Authorization": f"Bearer {USER_KEY}"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        body = json.load(r)
    return [(m["role"], m["content"]) for m in body["data"]["messages"]]


async def ws_turns(gw, session_id, texts):
    async with websockets.connect(gw.ws) as ws:
        await ws.send(json.dumps({"type": "auth", "token": USER_KEY}))
        assert json.loads(await ws.recv())["type"] == "auth_ok"
        for text in texts:
            await ws.send(json.dumps({"type": "message", "content": text, "sessionId": session_id}))
            while True:
                f = json.loads(await ws.recv())
                if f["type"] == "done":
                    break
                assert f["type"] in ("chunk", "message", "status"), f


def test_acknowledged_turns_survive_kill_9_for_ws_and_the_openai_sdk(tmp_path):
    gw = Gateway(workdir=str(tmp_path))
    try:
        asyncio.run(asyncio.wait_for(ws_turns(gw, "py-ws", ["ws one", "ws two"]), 30))
        client = OpenAI(
            base_url=f"{gw.http}/v1", api_key=USER_KEY, default_headers={"X-Session-Id": "py-sdk"}, max_retries=0
        )
        answer = client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "sdk plain"}])
        assert answer.choices[0].message.content
        stream = client.chat.completions.create(
            model="mock", messages=[{"role": "user", "content": "sdk streamed"}], stream=True
        )
        streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert streamed
    finally:
        # No drain, no goodbye: the process dies at once.
        gw.proc.kill()
        gw.proc.wait()
        gw.dir.cleanup()

    gw = Gateway(workdir=str(tmp_path))
    try:
        ws = history(gw, "py-ws")
        assert [r for r, _ in ws] == ["user", "assistant"] * 2
        assert [c for r, c in ws if r == "user"] == ["ws one", "ws two"]
        sdk = history(gw, "py-sdk")
        assert [c for r, c in sdk if r == "user"] == ["sdk plain", "sdk streamed"]
        assert sdk[-1] == ("assistant", streamed)
        # The conversation goes on: the next turn is the session's third.
        asyncio.run(asyncio.wait_for(ws_turns(gw, "py-ws", ["ws three"]), 30))
        assert [c for r, c in history(gw, "py-ws") if r == "user"] == ["ws one", "ws two", "ws three"]
    finally:
        gw.stop()
