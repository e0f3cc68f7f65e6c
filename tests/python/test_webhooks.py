"""Channel webhooks end to end (issue 14): the real gateway with its SQLite store, signed
deliveries sent as each platform sends them, and the replies received by the fake
platform server (`fake_platform.py`), which speaks each platform's send API.

Signatures are made here the way the platforms make them: Slack and WhatsApp HMAC-SHA256
(`hmac`), Discord Ed25519 (`cryptography`, with RFC 8032's first test key)."""

import hashlib
import hmac
import json
import time
import urllib.parse
import uuid
import http.client

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import ADMIN_KEY, Gateway
from fake_platform import FakePlatform, generic_signature_ok, utf16_len

TG_SECRET = "tg-secret_1"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
WA_SECRET = "wa-app-secret"
WA_VERIFY = "wa-verify-token"
GENERIC_SECRET = "generic-secret"
# RFC 8032 section 7.1, TEST 1.
DISCORD_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
DISCORD_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
DISCORD_KEY = Ed25519PrivateKey.from_private_bytes(DISCORD_SEED)


def channels(fake: str, model: str = "mock") -> str:
    return f"""
[[channels]]
name = "tg"
type = "telegram"
secret = "{TG_SECRET}"
bot_token = "123:tg-token"
api_base = "{fake}"
model = "{model}"

[[channels]]
name = "tg-groups"
type = "telegram"
secret = "{TG_SECRET}"
bot_token = "123:tg-token"
api_base = "{fake}"
session_scope = "user"

[[channels]]
name = "slack"
type = "slack"
secret = "{SLACK_SECRET}"
bot_token = "xoxb-test"
api_base = "{fake}"

[[channels]]
name = "discord"
type = "discord"
public_key = "{DISCORD_PUBLIC}"
api_base = "{fake}"

[[channels]]
name = "wa"
type = "whatsapp"
secret = "{WA_SECRET}"
verify_token = "{WA_VERIFY}"
bot_token = "wa-test"
api_base = "{fake}"

[[channels]]
name = "hook"
type = "generic"
secret = "{GENERIC_SECRET}"
callback_url = "{fake}/callback/in"
"""


def post(gw: Gateway, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict, bytes]:
    host, port = gw.addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def get(gw: Gateway, path: str, key: str | None = None) -> tuple[int, dict, bytes]:
    host, port = gw.addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {key}"} if key else {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def channel_stats(gw: Gateway, name: str) -> dict:
    status, _, body = get(gw, "/api/channels", ADMIN_KEY)
    assert status == 200, body
    return next(c for c in json.loads(body)["data"] if c["name"] == name)["stats"]


# Deliveries as each platform sends them.


def telegram(gw, update_id: int, text: str, chat: int = 4242, user: int = 4242, chat_type="private", secret=TG_SECRET,
             channel="tg", **extra):
    msg = {"message_id": update_id * 10, "date": int(time.time()), "from": {"id": user, "is_bot": False, "first_name": "Ann"},
           "chat": {"id": chat, "type": chat_type}, "text": text, **extra}
    body = json.dumps({"update_id": update_id, "message": msg}).encode()
    return post(gw, f"/webhooks/{channel}", body, {"X-Telegram-Bot-Api-Secret-Token": secret})


def slack_headers(body: bytes, secret: str = SLACK_SECRET, ts: int | None = None) -> dict:
    ts = int(time.time()) if ts is None else ts
    sig = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": sig}


def slack_event(event: dict, event_id: str | None = None) -> bytes:
    return json.dumps({"token": "x", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
                       "event_id": event_id or f"Ev{uuid.uuid4().hex[:10]}", "event_time": int(time.time()),
                       "event": event}).encode()


def discord_headers(body: bytes, ts: int | None = None, key=DISCORD_KEY) -> dict:
    ts = str(int(time.time()) if ts is None else ts)
    return {"X-Signature-Timestamp": ts, "X-Signature-Ed25519": key.sign(ts.encode() + body).hex()}


def discord_command(interaction_id: str, text: str, token: str = "itoken") -> bytes:
    # Each interaction in a channel of its own: its own session.
    return json.dumps({"type": 2, "id": interaction_id, "application_id": "777", "token": token,
                       "guild_id": "1", "channel_id": f"6450{interaction_id}",
                       "member": {"user": {"id": "53908232506183680", "username": "Mason"}},
                       "data": {"id": "9", "name": "ask", "type": 1,
                                "options": [{"type": 3, "name": "prompt", "value": text}]}}).encode()


def whatsapp_body(messages: list[dict], statuses: list[dict] | None = None) -> bytes:
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
             "contacts": [{"profile": {"name": "Sheena"}, "wa_id": "16505551234"}], "messages": messages}
    if statuses is not None:
        value = {"messaging_product": "whatsapp", "metadata": value["metadata"], "statuses": statuses}
    return json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "1022", "changes": [{"value": value, "field": "messages"}]}]}).encode()


def whatsapp_headers(body: bytes, secret: str = WA_SECRET) -> dict:
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def wa_text(msg_id: str, text: str, sender: str = "16505551234") -> dict:
    return {"from": sender, "id": msg_id, "timestamp": str(int(time.time())), "type": "text", "text": {"body": text}}


def reply_to(text: str, turn: int = 1) -> str:
    """The mock model's reply."""
    return f'You said "{text}". This is turn {turn} of our conversation.'


@pytest.fixture(scope="module")
def fake():
    with FakePlatform() as f:
        yield f


@pytest.fixture(scope="module")
def gw(fake, tmp_path_factory):
    g = Gateway(server_extra=channels(fake.url), workdir=str(tmp_path_factory.mktemp("webhooks")))
    yield g
    g.stop()


@pytest.fixture(autouse=True)
def clean(fake):
    fake.reset()
    yield


def test_telegram_delivery_is_answered_with_send_message(gw, fake):
    status, headers, body = telegram(gw, 1001, "hello telegram", chat=-100123, chat_type="supergroup",
                                     message_thread_id=7)
    assert status == 200, body
    assert json.loads(body)["data"] == {"accepted": 1, "duplicates": 0}
    [call] = fake.wait_for(1, path_contains="sendMessage", ok_only=True)
    assert call.path == "/bot123:tg-token/sendMessage" and call.method == "POST"
    assert call.json["chat_id"] == -100123
    assert call.json["text"] == reply_to("hello telegram")
    assert call.json["message_thread_id"] == 7
    assert call.json["reply_parameters"]["message_id"] == 10010


def test_slack_event_is_answered_in_its_thread_with_chat_post_message(gw, fake):
    body = slack_event({"type": "message", "channel": "C1", "user": "U1", "text": "hello slack",
                        "ts": "1700000000.000100", "thread_ts": "1700000000.000001", "channel_type": "channel"})
    status, _, resp = post(gw, "/webhooks/slack", body, slack_headers(body))
    assert status == 200, resp
    [call] = fake.wait_for(1, path_contains="chat.postMessage", ok_only=True)
    assert call.headers["authorization"] == "Bearer xoxb-test"
    assert call.json == {"channel": "C1", "text": reply_to("hello slack"), "thread_ts": "1700000000.000001"}


def test_discord_command_is_deferred_then_the_original_response_is_edited(gw, fake):
    body = discord_command("786008729715212338", "hello discord")
    start = time.monotonic()
    status, headers, resp = post(gw, "/webhooks/discord", body, discord_headers(body))
    assert time.monotonic() - start < 3, "Discord's 3 s deadline"
    assert (status, json.loads(resp)) == (200, {"type": 5})
    assert headers["content-type"].startswith("application/json")
    [call] = fake.wait_for(1, path_contains="/webhooks/777")
    assert (call.method, call.path) == ("PATCH", "/webhooks/777/itoken/messages/@original")
    assert call.json == {"content": reply_to("hello discord")}
    assert "authorization" not in call.headers


def test_whatsapp_messages_are_each_answered_and_statuses_ignored(gw, fake):
    body = whatsapp_body([wa_text("wamid.A1", "first"), wa_text("wamid.A2", "second", sender="16505550000")])
    status, _, resp = post(gw, "/webhooks/wa", body, whatsapp_headers(body))
    assert status == 200, resp
    assert json.loads(resp)["data"]["accepted"] == 2
    calls = fake.wait_for(2, path_contains="/messages")
    by_to = {c.json["to"]: c for c in calls}
    assert set(by_to) == {"16505551234", "16505550000"}
    for c in calls:
        assert c.path == "/106540352242922/messages" and c.headers["authorization"] == "Bearer wa-test"
        assert c.json["messaging_product"] == "whatsapp" and c.json["type"] == "text"
    assert by_to["16505551234"].json["text"]["body"] == reply_to("first")
    statuses = whatsapp_body([], statuses=[{"id": "wamid.X", "status": "delivered", "recipient_id": "1"}])
    before = channel_stats(gw, "wa")["ignored"]
    status, _, resp = post(gw, "/webhooks/wa", statuses, whatsapp_headers(statuses))
    assert status == 200 and json.loads(resp)["data"]["accepted"] == 0
    assert channel_stats(gw, "wa")["ignored"] == before + 1


def test_generic_delivery_is_posted_to_the_callback_signed(gw, fake):
    body = json.dumps({"from": "alice@example.com", "text": "hello generic", "messageId": "m-1"}).encode()
    status, _, resp = post(gw, "/webhooks/hook", body, {"Authorization": f"Bearer {GENERIC_SECRET}"})
    assert status == 200, resp
    [call] = fake.wait_for(1, path_contains="/callback")
    assert call.path == "/callback/in"
    assert call.json == {"to": "alice@example.com", "text": reply_to("hello generic"), "inReplyTo": "m-1"}
    assert generic_signature_ok(call, GENERIC_SECRET)
    assert not generic_signature_ok(call, "another secret")


def test_forged_stale_and_unsigned_deliveries_are_refused_and_nothing_is_stored(gw, fake):
    before = {n: channel_stats(gw, n) for n in ("tg", "slack", "discord", "wa", "hook")}
    refused = []
    refused.append(telegram(gw, 2001, "forged", secret="wrong"))
    body = slack_event({"type": "message", "channel": "C9", "user": "U1", "text": "x", "ts": "1.000001"})
    refused.append(post(gw, "/webhooks/slack", body, slack_headers(body, secret="not-the-secret")))
    refused.append(post(gw, "/webhooks/slack", body, slack_headers(body, ts=int(time.time()) - 301)))
    tampered = body.replace(b'"x"', b'"y"')
    refused.append(post(gw, "/webhooks/slack", tampered, slack_headers(body)))
    d = discord_command("999", "forged")
    other_key = Ed25519PrivateKey.generate()
    refused.append(post(gw, "/webhooks/discord", d, discord_headers(d, key=other_key)))
    refused.append(post(gw, "/webhooks/discord", d, discord_headers(d, ts=int(time.time()) - 3600)))
    refused.append(post(gw, "/webhooks/discord", d, {}))
    w = whatsapp_body([wa_text("wamid.F", "forged")])
    refused.append(post(gw, "/webhooks/wa", w, whatsapp_headers(w, secret="wrong")))
    refused.append(post(gw, "/webhooks/wa", w, {}))
    g = json.dumps({"from": "mallory", "text": "forged", "messageId": "f-1"}).encode()
    refused.append(post(gw, "/webhooks/hook", g, {"Authorization": "Bearer guess"}))
    for status, _, resp in refused:
        assert status == 401, resp
        err = json.loads(resp)
        assert err["success"] is False and err["error"]["code"] == "UNAUTHORIZED", err
    after = {n: channel_stats(gw, n) for n in before}
    assert sum(after[n]["rejected"] - before[n]["rejected"] for n in after) == len(refused)
    for n in after:
        assert after[n]["received"] == before[n]["received"], n
        assert after[n]["queues"]["spooled"] == 0
    time.sleep(0.5)
    assert fake.calls() == []
    # The same Discord interaction, now properly signed, is new (the forgery stored nothing).
    status, _, resp = post(gw, "/webhooks/discord", d, discord_headers(d))
    assert (status, json.loads(resp)) == (200, {"type": 5})
    fake.wait_for(1, path_contains="/webhooks/777")


def test_handshakes_slack_challenge_discord_ping_whatsapp_verification(gw, fake):
    body = json.dumps({"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                       "type": "url_verification"}).encode()
    status, _, resp = post(gw, "/webhooks/slack", body, slack_headers(body))
    assert (status, json.loads(resp)) == (200, {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    status, _, resp = post(gw, "/webhooks/slack", body, slack_headers(body, secret="wrong"))
    assert status == 401, "the challenge is signed like everything else"
    ping = b'{"type":1,"id":"1","application_id":"777","token":"t","version":1}'
    status, headers, resp = post(gw, "/webhooks/discord", ping, discord_headers(ping))
    assert (status, resp, headers["content-type"]) == (200, b'{"type":1}', "application/json")
    query = urllib.parse.urlencode({"hub.mode": "subscribe", "hub.verify_token": WA_VERIFY, "hub.challenge": "1158201444"})
    status, headers, resp = get(gw, f"/webhooks/wa?{query}")
    assert (status, resp) == (200, b"1158201444")
    assert headers["content-type"].startswith("text/plain")
    bad = urllib.parse.urlencode({"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"})
    status, _, resp = get(gw, f"/webhooks/wa?{bad}")
    assert status == 403 and json.loads(resp)["error"]["code"] == "FORBIDDEN"
    assert get(gw, "/webhooks/tg")[0] == 405
    assert get(gw, "/webhooks/nope")[0] == 404
    assert post(gw, "/webhooks/nope", b"{}", {})[0] == 404
    time.sleep(0.3)
    assert fake.calls() == []


def test_duplicate_deliveries_are_acknowledged_and_answered_once(gw, fake):
    before = channel_stats(gw, "tg")
    first = telegram(gw, 3001, "only once")
    again = telegram(gw, 3001, "only once")
    assert first[0] == again[0] == 200
    assert json.loads(again[2])["data"] == {"accepted": 0, "duplicates": 1}
    fake.wait_for(1, path_contains="sendMessage")
    # A redelivery after the reply went out changes nothing either.
    assert telegram(gw, 3001, "only once")[0] == 200
    # Slack: a retry (same event_id, X-Slack-Retry-Num) and the mention twin (another
    # event_id, same channel + ts) are one turn.
    event = {"type": "message", "channel": "C7", "user": "U1", "text": "<@UBOT> twice", "ts": "1700000001.000200",
             "channel_type": "channel"}
    body = slack_event(event, "EvA")
    assert post(gw, "/webhooks/slack", body, slack_headers(body))[0] == 200
    assert post(gw, "/webhooks/slack", body, {**slack_headers(body), "X-Slack-Retry-Num": "1",
                                               "X-Slack-Retry-Reason": "http_timeout"})[0] == 200
    twin = slack_event({**event, "type": "app_mention"}, "EvB")
    assert post(gw, "/webhooks/slack", twin, slack_headers(twin))[0] == 200
    fake.wait_for(1, path_contains="chat.postMessage")
    time.sleep(1.0)
    assert len(fake.calls("sendMessage")) == 1
    slack_calls = fake.calls("chat.postMessage")
    assert len(slack_calls) == 1 and slack_calls[0].json["text"] == reply_to("twice")
    after = channel_stats(gw, "tg")
    assert after["duplicates"] - before["duplicates"] == 2
    assert channel_stats(gw, "slack")["duplicates"] >= 2


def test_a_platform_429_is_honoured_and_the_reply_sent_once(gw, fake):
    before = channel_stats(gw, "tg")
    fake.fail_next(1, status=429, retry_after=1, path_contains="sendMessage")
    assert telegram(gw, 4001, "rate limited", chat=777)[0] == 200
    fake.wait_for(1, path_contains="sendMessage", timeout=15, ok_only=True)
    calls = fake.calls("sendMessage")
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 0.95, "waited for retry_after"
    assert calls[0].json == calls[1].json
    time.sleep(0.5)
    assert len(fake.calls("sendMessage")) == 2
    after = channel_stats(gw, "tg")
    assert after["retries"] - before["retries"] == 1
    assert after["repliesSent"] - before["repliesSent"] == 1
    # Slack's 429 (Retry-After header) and Discord's (retry_after in the body) alike.
    fake.fail_next(1, status=429, retry_after=1, path_contains="chat.postMessage")
    body = slack_event({"type": "message", "channel": "C8", "user": "U1", "text": "slow down", "ts": "1700000002.1",
                        "channel_type": "im"})
    assert post(gw, "/webhooks/slack", body, slack_headers(body))[0] == 200
    fake.wait_for(1, path_contains="chat.postMessage", timeout=15, ok_only=True)
    assert [c.status for c in fake.calls("chat.postMessage")] == [429, 200]


def test_a_5000_character_reply_is_split_in_order_at_each_platform_limit(gw, fake):
    words = " ".join(f"w{i:04d}" for i in range(1000))  # 5,999 characters
    assert len(words) > 5000
    expected = reply_to(words)
    assert telegram(gw, 5001, words, chat=5001)[0] == 200
    parts = fake.wait_for(2, path_contains="sendMessage")
    time.sleep(0.5)
    parts = fake.calls("sendMessage")
    assert len(parts) == 2
    texts = [c.json["text"] for c in parts]
    assert "".join(texts) == expected
    assert all(0 < utf16_len(t) <= 4096 for t in texts)
    assert texts[0].endswith(" ") or texts[1].startswith(" "), "cut at a word boundary"
    assert "reply_parameters" in parts[0].json and "reply_parameters" not in parts[1].json
    # Discord: 2000 per message: the original response, then follow-ups.
    body = discord_command("5002", words, token="longtoken")
    assert post(gw, "/webhooks/discord", body, discord_headers(body))[0] == 200
    calls = fake.wait_for(4, path_contains="/webhooks/777/longtoken")
    assert calls[0].method == "PATCH" and all(c.method == "POST" for c in calls[1:])
    assert "".join(c.json["content"] for c in calls) == expected
    assert all(utf16_len(c.json["content"]) <= 2000 for c in calls)


def test_chat_commands_start_a_new_session_and_groups_can_be_per_user(gw, fake):
    assert telegram(gw, 6001, "one", chat=6000)[0] == 200
    assert fake.wait_for(1, path_contains="sendMessage")[0].json["text"] == reply_to("one", 1)
    assert telegram(gw, 6002, "two", chat=6000)[0] == 200
    assert fake.wait_for(2, path_contains="sendMessage")[1].json["text"] == reply_to("two", 2)
    assert telegram(gw, 6003, "/new", chat=6000)[0] == 200
    assert fake.wait_for(3, path_contains="sendMessage")[2].json["text"] == "Started a new conversation."
    assert telegram(gw, 6004, "three", chat=6000)[0] == 200
    assert fake.wait_for(4, path_contains="sendMessage")[3].json["text"] == reply_to("three", 1)
    assert telegram(gw, 6005, "/reset@clawbot four", chat=6000)[0] == 200
    assert fake.wait_for(5, path_contains="sendMessage")[4].json["text"] == reply_to("four", 1)
    # session_scope = "user": two people in one group have a session each.
    fake.reset()
    for i, user in enumerate([11, 22, 11]):
        assert telegram(gw, 6100 + i, f"from {user}", chat=-6000, user=user, chat_type="group",
                        channel="tg-groups")[0] == 200
        fake.wait_for(i + 1, path_contains="sendMessage")
    texts = [c.json["text"] for c in fake.calls("sendMessage")]
    assert texts == [reply_to("from 11", 1), reply_to("from 22", 1), reply_to("from 11", 2)]
    status, _, body = get(gw, "/api/sessions/tg-groups:-6000:11", ADMIN_KEY)
    assert status == 200 and len(json.loads(body)["data"]["messages"]) == 4


def test_chatter_and_unreadable_deliveries_are_acknowledged_not_answered(gw, fake):
    before = channel_stats(gw, "tg")
    edit = json.dumps({"update_id": 7001, "edited_message": {"message_id": 1, "chat": {"id": 1}, "text": "x"}}).encode()
    assert post(gw, "/webhooks/tg", edit, {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET})[0] == 200
    bot = json.dumps({"update_id": 7002, "message": {"message_id": 2, "from": {"id": 9, "is_bot": True},
                                                     "chat": {"id": 1, "type": "private"}, "text": "x"}}).encode()
    assert post(gw, "/webhooks/tg", bot, {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET})[0] == 200
    status, _, resp = post(gw, "/webhooks/tg", b'{"update_id": 7003, "message": ', {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET})
    assert status == 200, "a verified sender retries anything but a 2xx forever"
    slack_bot = slack_event({"type": "message", "channel": "C1", "bot_id": "B1", "text": "loop", "ts": "1.5"})
    assert post(gw, "/webhooks/slack", slack_bot, slack_headers(slack_bot))[0] == 200
    deep = b'{"update_id": 7004, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    status, _, resp = post(gw, "/webhooks/tg", deep, {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET})
    assert status == 400 and "nesting" in json.loads(resp)["error"]["message"]
    status, _, resp = post(gw, "/webhooks/tg", b"x" * (1_048_576 + 10), {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET})
    assert status == 413
    time.sleep(0.5)
    assert fake.calls() == []
    after = channel_stats(gw, "tg")
    assert after["ignored"] - before["ignored"] == 2
    assert after["dropped"] - before["dropped"] == 1
    assert after["lastEventAt"]


def test_a_refused_reply_is_dead_lettered_and_shown(gw, fake):
    fake.fail_next(1, status=403, path_contains="sendMessage")
    assert telegram(gw, 8001, "blocked", chat=8001)[0] == 200
    fake.wait_for(1, path_contains="sendMessage")
    deadline = time.time() + 10
    while time.time() < deadline and channel_stats(gw, "tg")["queues"]["deadLetters"] == 0:
        time.sleep(0.1)
    stats = channel_stats(gw, "tg")
    assert stats["queues"]["deadLetters"] >= 1 and stats["deadLetters"] >= 1
    assert "403" in stats["queues"]["lastDeadLetter"]
    time.sleep(0.5)
    assert len(fake.calls("sendMessage")) == 1, "a permanent refusal is not retried"


def _kill(g: Gateway):
    g.proc.kill()
    g.proc.wait()
    g.dir.cleanup()


def test_kill_9_after_the_acknowledgement_still_answers_exactly_once(fake, tmp_path):
    # The model is slow (60 ms a word): the gateway dies while the turn runs.
    g = Gateway(server_extra=channels(fake.url, model="mock-slow"), workdir=str(tmp_path))
    try:
        for i in range(5):
            status, _, resp = telegram(g, 9001 + i, f"crash test {i}", chat=9000 + i)
            assert status == 200 and json.loads(resp)["data"]["accepted"] == 1
    finally:
        _kill(g)
    assert fake.calls() == [], "nothing was answered before the crash"
    g = Gateway(server_extra=channels(fake.url), workdir=str(tmp_path))
    try:
        calls = fake.wait_for(5, path_contains="sendMessage", timeout=20)
        time.sleep(1.5)
        calls = fake.calls("sendMessage")
        assert sorted(c.json["chat_id"] for c in calls) == [9000 + i for i in range(5)]
        assert all(c.json["text"] == reply_to(f"crash test {c.json['chat_id'] - 9000}") for c in calls)
        # The platform's retries of those deliveries are duplicates now.
        assert json.loads(telegram(g, 9001, "crash test 0", chat=9000)[2])["data"]["duplicates"] == 1
    finally:
        g.stop()


def test_kill_9_while_the_platform_holds_the_reply_repeats_at_most_that_send(fake, tmp_path):
    g = Gateway(server_extra=channels(fake.url), workdir=str(tmp_path))
    try:
        fake.delay_next(5, path_contains="sendMessage")
        assert telegram(g, 9501, "in flight", chat=9500)[0] == 200
        fake.wait_for(1, path_contains="sendMessage")  # received, not yet answered
    finally:
        _kill(g)
    g = Gateway(server_extra=channels(fake.url), workdir=str(tmp_path))
    try:
        fake.wait_for(1, path_contains="sendMessage", timeout=20, ok_only=True)
        time.sleep(1.5)
        calls = fake.calls("sendMessage")
        # The send the platform got before the crash, and its one repeat.
        assert len(calls) == 2
        assert calls[0].json == calls[1].json and calls[1].json["text"] == reply_to("in flight")
    finally:
        g.stop()
