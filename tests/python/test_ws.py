"""`/ws` through the `websockets` client library: every message type of PROTOCOL.md,
bad JSON, unauthenticated messages, several turns in flight, ping/pong, subscribe."""

import asyncio
import json

import pytest
import websockets

from conftest import ADMIN_KEY, OTHER_KEY, USER_KEY

REPLY = 'You said "{}". This is turn {} of our conversation.'


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def recv_json(ws):
    return json.loads(await ws.recv())


async def authed(gateway, key=USER_KEY):
    ws = await websockets.connect(gateway.ws)
    await ws.send(json.dumps({"type": "auth", "token": key}))
    assert await recv_json(ws) == {"type": "auth_ok", "user": {USER_KEY: "test-user", ADMIN_KEY: "test-admin", OTHER_KEY: "test-other"}[key]}
    return ws


async def collect_turn(ws, session_id):
    """Frames of one turn until its `done`."""
    frames = []
    while True:
        f = await recv_json(ws)
        assert f.get("sessionId") == session_id, f
        frames.append(f)
        if f["type"] in ("done", "error"):
            return frames


def test_auth_frame_is_answered_with_the_key_name(gateway):
    async def go():
        ws = await authed(gateway, ADMIN_KEY)
        await ws.close()

    run(go())


def test_message_streams_chunks_then_the_full_message_then_done(gateway):
    async def go():
        ws = await authed(gateway)
        await ws.send(json.dumps({"type": "message", "channel": "api", "content": "Hello", "sessionId": "py-ws-1"}))
        frames = await collect_turn(ws, "py-ws-1")
        kinds = [f["type"] for f in frames]
        assert kinds[-2:] == ["message", "done"]
        assert set(kinds[:-2]) == {"chunk"} and len(kinds) > 3
        text = "".join(f["content"] for f in frames if f["type"] == "chunk")
        assert text == REPLY.format("Hello", 1)
        assert frames[-2]["content"] == text
        usage = frames[-1]["usage"]
        assert usage["totalTokens"] == usage["promptTokens"] + usage["completionTokens"] > 0
        # The session remembers the turn.
        await ws.send(json.dumps({"type": "message", "content": "Again", "sessionId": "py-ws-1"}))
        frames = await collect_turn(ws, "py-ws-1")
        assert frames[-2]["content"] == REPLY.format("Again", 2)
        await ws.close()

    run(go())


def test_a_message_without_session_id_gets_a_new_session(gateway):
    async def go():
        ws = await authed(gateway)
        await ws.send(json.dumps({"type": "message", "content": "fresh"}))
        first = await recv_json(ws)
        sid = first["sessionId"]
        assert sid.startswith("s_")
        rest = await collect_turn(ws, sid)
        assert rest[-1]["type"] == "done"
        await ws.close()

    run(go())


def test_two_turns_in_flight_are_tagged_with_their_session(gateway):
    async def go():
        ws = await authed(gateway)
        await ws.send(json.dumps({"type": "message", "content": "one two three", "sessionId": "py-a", "model": "mock-slow"}))
        await ws.send(json.dumps({"type": "message", "content": "four five six", "sessionId": "py-b", "model": "mock-slow"}))
        chunks = {"py-a": [], "py-b": []}
        order = []
        done = set()
        while len(done) < 2:
            f = await recv_json(ws)
            order.append(f["sessionId"])
            if f["type"] == "chunk":
                chunks[f["sessionId"]].append(f["content"])
            elif f["type"] == "done":
                done.add(f["sessionId"])
        assert "".join(chunks["py-a"]) == REPLY.format("one two three", 1)
        assert "".join(chunks["py-b"]) == REPLY.format("four five six", 1)
        # Interleaved, not one after the other.
        first_b = order.index("py-b")
        assert "py-a" in order[first_b:], order
        await ws.close()

    run(go())


def test_ping_is_answered_with_pong(gateway):
    async def go():
        ws = await authed(gateway)
        await ws.send(json.dumps({"type": "ping"}))
        assert await recv_json(ws) == {"type": "pong"}
        await ws.close()

    run(go())


def test_bad_json_is_invalid_request_and_the_socket_stays_open(gateway):
    async def go():
        ws = await authed(gateway)
        for bad in ["{not json", "[]", '{"type": 5}', '{"content":"no type"}']:
            await ws.send(bad)
            f = await recv_json(ws)
            assert f["type"] == "error" and f["code"] == "INVALID_REQUEST", f
        await ws.send(json.dumps({"type": "nope"}))
        f = await recv_json(ws)
        assert f["code"] == "INVALID_REQUEST" and "nope" in f["message"]
        await ws.send(json.dumps({"type": "message", "sessionId": "py-empty", "content": "  "}))
        f = await recv_json(ws)
        assert (f["code"], f["sessionId"]) == ("INVALID_REQUEST", "py-empty")
        await ws.send(json.dumps({"type": "ping"}))
        assert await recv_json(ws) == {"type": "pong"}
        await ws.close()

    run(go())


@pytest.mark.parametrize(
    "first",
    [
        {"type": "message", "content": "hi", "sessionId": "x"},
        {"type": "ping"},
        {"type": "subscribe", "events": ["status"]},
        "not json at all",
        {"type": "auth", "token": "sk-wrong"},
        {"type": "auth"},
    ],
)
def test_anything_before_auth_is_unauthorized_and_closes_1008(gateway, first):
    async def go():
        ws = await websockets.connect(gateway.ws)
        await ws.send(first if isinstance(first, str) else json.dumps(first))
        f = await recv_json(ws)
        assert f["type"] == "error" and f["code"] == "UNAUTHORIZED"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008

    run(go())


def test_no_auth_within_the_deadline_closes_1008(gateway):
    async def go():
        ws = await websockets.connect(gateway.ws)
        f = await recv_json(ws)  # the fixture's deadline is 1 s
        assert f["code"] == "UNAUTHORIZED"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd.code == 1008

    run(go())


def test_authorization_header_on_the_upgrade_authenticates_the_socket(gateway):
    async def go():
        ws = await websockets.connect(gateway.ws, additional_headers={"Authorization": f"Bearer {USER_KEY}"})
        await ws.send(json.dumps({"type": "ping"}))
        assert await recv_json(ws) == {"type": "pong"}
        await ws.close()

    run(go())


def test_a_bad_authorization_header_refuses_the_upgrade(gateway):
    async def go():
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(gateway.ws, additional_headers={"Authorization": "Bearer sk-wrong"})
        assert refused.value.response.status_code == 401

    run(go())


def test_subscribe_to_status_sends_status_events(gateway):
    async def go():
        ws = await authed(gateway)
        await ws.send(json.dumps({"type": "subscribe", "events": ["message", "status"]}))
        f = await recv_json(ws)
        assert f["type"] == "status"
        assert f["workers"] == 2 and f["webSocketClients"] >= 1
        assert {"connections", "sessions", "inFlight"} <= f.keys()
        # A change (another socket) brings a new status event.
        other = await authed(gateway, OTHER_KEY)
        f2 = await recv_json(ws)
        assert f2["type"] == "status" and f2["webSocketClients"] >= f["webSocketClients"]
        await other.close()
        await ws.close()

    run(go())


def test_subscribing_without_message_leaves_out_the_full_reply(gateway):
    async def go():
        ws = await authed(gateway)
        await ws.send(json.dumps({"type": "subscribe", "events": []}))
        await ws.send(json.dumps({"type": "message", "content": "quiet", "sessionId": "py-quiet"}))
        frames = await collect_turn(ws, "py-quiet")
        assert "message" not in [f["type"] for f in frames]
        await ws.send(json.dumps({"type": "subscribe", "events": ["bogus"]}))
        assert (await recv_json(ws))["code"] == "INVALID_REQUEST"
        await ws.close()

    run(go())


def test_turn_errors_carry_the_contract_codes(gateway):
    async def go():
        owner = await authed(gateway)
        await owner.send(json.dumps({"type": "message", "content": "mine", "sessionId": "py-private"}))
        await collect_turn(owner, "py-private")
        other = await authed(gateway, OTHER_KEY)
        await other.send(json.dumps({"type": "message", "content": "peek", "sessionId": "py-private"}))
        f = await recv_json(other)
        assert (f["type"], f["code"], f["sessionId"]) == ("error", "INVALID_SESSION", "py-private")
        await other.send(json.dumps({"type": "message", "content": "x", "sessionId": "py-m", "model": "no-such"}))
        f = await recv_json(other)
        assert (f["code"], f["sessionId"]) == ("MODEL_NOT_FOUND", "py-m")
        await other.send(json.dumps({"type": "message", "content": "[mock:error-mid] boom", "sessionId": "py-up"}))
        frames = await collect_turn(other, "py-up")
        assert frames[-1]["code"] == "UPSTREAM_ERROR"
        # The socket is still usable.
        await other.send(json.dumps({"type": "ping"}))
        assert await recv_json(other) == {"type": "pong"}
        await owner.close()
        await other.close()

    run(go())


def test_a_client_close_is_answered_with_the_same_code(gateway):
    async def go():
        ws = await authed(gateway)
        await ws.close(code=1000, reason="bye")
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000

    run(go())


def test_an_oversized_message_closes_1009(start_gateway):
    gw = start_gateway("ws_max_message_bytes = 1024\nws_max_frame_bytes = 1024")

    async def go():
        ws = await authed(gw)
        await ws.send(json.dumps({"type": "message", "content": "x" * 4000}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd.code == 1009

    run(go())


def test_a_slow_reader_has_its_turns_cut_and_the_socket_closed_1013(start_gateway):
    gw = start_gateway("ws_send_buffer_bytes = 4096\nws_max_message_bytes = 2000000\nws_max_frame_bytes = 2000000")

    async def go():
        # A tiny client queue: the client library stops reading from the socket.
        ws = await websockets.connect(gw.ws, max_queue=1, max_size=None)
        await ws.send(json.dumps({"type": "auth", "token": USER_KEY}))
        await recv_json(ws)
        words = " ".join(["word"] * 200_000)
        frames = []
        # The server may cut the socket while turns are still being sent (the first
        # replies alone can fill a 4 KiB buffer): a send can see the close as well.
        with pytest.raises(websockets.ConnectionClosed) as closed:
            for i in range(8):
                await ws.send(json.dumps({"type": "message", "content": words, "sessionId": f"py-slow-{i}"}))
            await asyncio.sleep(3)  # let the server fill every buffer
            while True:
                frames.append(await recv_json(ws))
        assert closed.value.rcvd is not None and closed.value.rcvd.code in (1008, 1013)
        assert "send buffer" in closed.value.rcvd.reason
        # If the error frame got through before the close, it says why.
        errors = [f for f in frames if f.get("type") == "error"]
        assert all(f["code"] == "OVERLOADED" for f in errors), errors

    run(go())


def test_a_draining_server_closes_its_sockets_with_1001(start_gateway):
    import signal

    gw = start_gateway()

    async def go():
        ws = await authed(gw)
        gw.proc.send_signal(signal.SIGTERM)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001

    run(go())


def test_the_socket_message_quota_refuses_with_rate_limited_and_stays_open(start_gateway):
    gw = start_gateway("\n[limits]\nws_messages_per_minute = 3\nws_connects_per_minute_per_ip = 100")

    async def go():
        ws = await authed(gw)
        for _ in range(3):
            await ws.send(json.dumps({"type": "ping"}))
            assert await recv_json(ws) == {"type": "pong"}
        await ws.send(json.dumps({"type": "ping"}))
        f = await recv_json(ws)
        assert (f["type"], f["code"]) == ("error", "RATE_LIMITED") and f["retryAfter"] >= 1
        await ws.close()

    run(go())


def test_the_per_ip_connect_quota_refuses_the_upgrade_with_429(start_gateway):
    gw = start_gateway("\n[limits]\nws_connects_per_minute_per_ip = 2")

    async def go():
        for _ in range(2):
            ws = await authed(gw)
            await ws.close()
        # Per-core leases let the global limit overshoot by a bounded few (ratelimit.rs).
        statuses = []
        for _ in range(6):
            try:
                ws = await websockets.connect(gw.ws)
                await ws.close()
                statuses.append(101)
            except websockets.InvalidStatus as refused:
                statuses.append(refused.response.status_code)
        assert 429 in statuses, statuses

    run(go())
