"""Resumable SSE on `/api/chat` with httpx: every event has an `id:`; a client that
drops the stream and reconnects with `Last-Event-ID` gets the rest of the same turn,
exactly once, from whichever worker it lands on."""

import json

import httpx

from conftest import OTHER_KEY, USER_KEY

AUTH = {"Authorization": f"Bearer {USER_KEY}"}
REPLY = 'You said "{}". This is turn {} of our conversation.'


def parse_events(lines):
    """SSE lines -> list of (id, data dict)."""
    events, cur = [], {}
    for line in lines:
        if not line:
            if cur:
                events.append((cur.get("id"), json.loads(cur["data"])))
                cur = {}
            continue
        field, _, value = line.partition(": ")
        cur[field] = value
    return events


def read_some(client, url, n, **kw):
    """Reads `n` events of a stream and drops the connection."""
    got, cur = [], {}
    with client.stream("POST", url, **kw) as r:
        assert r.status_code == 200, r.read()
        worker = r.headers["x-request-id"]
        for line in r.iter_lines():
            if not line:
                got.append((cur["id"], json.loads(cur["data"])))
                cur = {}
                if len(got) == n:
                    break
                continue
            field, _, value = line.partition(": ")
            cur[field] = value
    return got, worker


def worker_of_request(request_id):
    # req_<8 hex prefix><2 hex worker><10 hex counter>
    return int(request_id[12:14], 16)


def worker_of_turn(event_id):
    return int(event_id.split("-")[0][1:])


def test_every_stream_event_has_an_id(gateway):
    with httpx.stream("POST", f"{gateway.http}/api/chat", json={"message": "ids", "stream": True}, headers=AUTH) as r:
        events = parse_events(r.iter_lines())
    assert events[-1][1]["type"] == "done"
    turn = events[0][0].rsplit(":", 1)[0]
    assert [e[0] for e in events] == [f"{turn}:{i}" for i in range(len(events))]


def test_a_reconnect_with_last_event_id_gets_the_rest_exactly_once(gateway):
    body = {"message": "please resume this stream", "stream": True, "model": "mock-slow", "sessionId": "py-resume-1"}
    with httpx.Client(timeout=10) as client:
        first, _ = read_some(client, f"{gateway.http}/api/chat", 2, json=body, headers=AUTH)
        assert [e[1]["type"] for e in first] == ["chunk", "chunk"]
        last_id = first[-1][0]
        with client.stream(
            "POST", f"{gateway.http}/api/chat", json=body, headers={**AUTH, "Last-Event-ID": last_id}
        ) as r:
            assert r.status_code == 200
            rest = parse_events(r.iter_lines())
    events = first + rest
    turn = last_id.rsplit(":", 1)[0]
    assert [e[0] for e in events] == [f"{turn}:{i}" for i in range(len(events))], "no gap, no repeat"
    text = "".join(e[1]["content"] for e in events if e[1]["type"] == "chunk")
    assert text == REPLY.format("please resume this stream", 1)
    assert events[-1][1]["type"] == "done" and events[-1][1]["sessionId"] == "py-resume-1"
    # It was the same turn, not a new one: the session holds exactly one exchange.
    s = httpx.get(f"{gateway.http}/api/sessions/py-resume-1", headers=AUTH).json()["data"]
    assert len(s["messages"]) == 2


def test_a_turn_keeps_running_after_its_client_left(gateway):
    body = {"message": "finish without me", "stream": True, "model": "mock-slow"}
    with httpx.Client(timeout=10) as client:
        first, _ = read_some(client, f"{gateway.http}/api/chat", 1, json=body, headers=AUTH)
        import time

        time.sleep(1.5)  # the turn finishes while nobody listens
        with client.stream(
            "POST", f"{gateway.http}/api/chat", headers={**AUTH, "Last-Event-ID": first[0][0]}
        ) as r:
            rest = parse_events(r.iter_lines())
    text = "".join(e[1]["content"] for e in first + rest if e[1]["type"] == "chunk")
    assert text == REPLY.format("finish without me", 1)
    assert rest[-1][1]["type"] == "done"


def test_resume_works_from_the_other_worker(gateway):
    crossed = False
    for attempt in range(24):
        body = {"message": f"cross {attempt}", "stream": True, "model": "mock-slow"}
        with httpx.Client(timeout=10) as client:
            first, _ = read_some(client, f"{gateway.http}/api/chat", 1, json=body, headers=AUTH)
        with httpx.Client(timeout=10) as client:
            with client.stream(
                "POST", f"{gateway.http}/api/chat", headers={**AUTH, "Last-Event-ID": first[0][0]}
            ) as r:
                assert r.status_code == 200
                resumed_on = worker_of_request(r.headers["x-request-id"])
                rest = parse_events(r.iter_lines())
        text = "".join(e[1]["content"] for e in first + rest if e[1]["type"] == "chunk")
        assert text == REPLY.format(f"cross {attempt}", 1)
        if resumed_on != worker_of_turn(first[0][0]):
            crossed = True
            break
    assert crossed, "never landed on the other worker in 24 tries"


def test_an_unknown_or_foreign_turn_is_not_resumed(gateway):
    r = httpx.post(f"{gateway.http}/api/chat", headers={**AUTH, "Last-Event-ID": "t0-00000000deadbeef:3"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "INVALID_SESSION"
    r = httpx.post(f"{gateway.http}/api/chat", headers={**AUTH, "Last-Event-ID": "garbage"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_REQUEST"
    body = {"message": "mine only", "stream": True, "model": "mock-slow"}
    with httpx.Client(timeout=10) as client:
        first, _ = read_some(client, f"{gateway.http}/api/chat", 1, json=body, headers=AUTH)
    other = {"Authorization": f"Bearer {OTHER_KEY}", "Last-Event-ID": first[0][0]}
    r = httpx.post(f"{gateway.http}/api/chat", headers=other)
    assert r.status_code == 404
