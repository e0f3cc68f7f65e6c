#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (realistic inputs, each in the
byte layout its target expects: see the header of fuzz_targets/<target>.rs).
Run from anywhere: python3 fuzz/seeds/make_seeds.py. Deterministic."""
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# request_head: byte 0 picks the limits (0 = the defaults, 16 KiB / 64 fields).
put("request_head", "get_with_headers", b"\x00GET /api/v1/sessions?limit=5&channel=a%20b+c HTTP/1.1\r\nHost: gw.local\r\n"
    b"Authorization: Bearer sk-fuzz-key\r\nAccept: application/json\r\nX-Request-Id: r-1\r\n\r\n")
put("request_head", "post_chat_pipelined", b"\x00POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 17\r\nConnection: keep-alive\r\n\r\n{\"message\":\"hi\"}\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n")
put("request_head", "post_chunked_expect", b"\x00POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Expect: 100-continue\r\nAccept: text/event-stream\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
put("request_head", "ws_upgrade", b"\x00GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
put("request_head", "smuggle_cl_te", b"\x01POST /webhooks/telegram HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nabc")
put("request_head", "http10_keepalive", b"\x02GET /health/detailed HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")

# chunked_body: 2 bytes split offset (LE), 1 byte limit pick (0 = 1 MiB, 1 = 16 bytes).
def chunked(cut, limit, body):
    return struct.pack("<HB", cut, limit) + body

put("chunked_body", "ext_trailer_pipelined", chunked(7, 0, b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: y\r\n\r\nGET /next"))
chat = json.dumps({"message": "Hello there", "channel": "api", "stream": True}).encode()
put("chunked_body", "chat_json_in_chunks", chunked(20, 0, b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (10, chat[:10], len(chat) - 10, chat[10:])))
put("chunked_body", "over_limit", chunked(3, 1, b"ff\r\n" + b"a" * 255 + b"\r\n0\r\n\r\n"))
put("chunked_body", "upper_hex_ws_size", chunked(1, 3, b"A \t\r\n0123456789\r\n0\r\n\r\n"))
put("chunked_body", "bad_crlf", chunked(4, 0, b"5\r\nhelloXX0\r\n\r\n"))

# upstream_sse: byte 0 the number of cut points, then 2-byte cut offsets, then the stream.
def sse(cuts, stream):
    return bytes([len(cuts)]) + b"".join(struct.pack("<H", c) for c in cuts) + stream

def data(obj):
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"

openai = (data({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
          + data({"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hel"}}]})
          + data({"id": "c1", "choices": [{"index": 0, "delta": {"content": "lo \u00e9\n"}}]})
          + data({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
          + data({"id": "c1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}})
          + b"data: [DONE]\n\n")
put("upstream_sse", "openai_stream", sse([17, 200], openai))

def ev(name, obj):
    return b"event: " + name.encode() + b"\r\ndata: " + json.dumps(obj, separators=(",", ":")).encode() + b"\r\n\r\n"

anthropic = (ev("message_start", {"type": "message_start", "message": {"id": "m1", "content": [], "usage": {"input_tokens": 12, "output_tokens": 1}}})
             + ev("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
             + b": keep-alive\r\n\r\n"
             + ev("ping", {"type": "ping"})
             + ev("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}})
             + ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}})
             + ev("message_stop", {"type": "message_stop"}))
put("upstream_sse", "anthropic_stream_crlf", sse([1, 99, 300], anthropic))
put("upstream_sse", "multiline_cr_comments", sse([5], b": hi\rid: 7\rretry: 10\revent:x\rdata:line1\rdata: line2\r\rdata\r\rdata: [DONE]\r\r"))
put("upstream_sse", "error_event", sse([], ev("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})))

# json_entry: the bytes (byte 0 also picks a depth limit for the extra checks).
put("json_entry", "chat_body", json.dumps({"channel": "api", "message": "Hi \"you\" \u00e9", "sessionId": "s-1", "stream": False, "model": "mock"}).encode())
put("json_entry", "v1_completions_parts", json.dumps({"model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True},
    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}]}).encode())
put("json_entry", "ws_auth_frame", b'{"type":"auth","token":"sk-fuzz-key"}')
put("json_entry", "ws_subscribe_frame", b'{"type":"subscribe","events":["message","status"],"sessionId":null}')
put("json_entry", "session_op", b'{"action":"history","limit":20,"model":null}')
put("json_entry", "deep_20000", b"[" * 20000)
put("json_entry", "brackets_in_strings", b'{"a":"[[[[{{{{\\"[[[[","b":[[[["\\\\"]]]],"c":1e400,"d":-0.0}')

# ws_frames: byte 0 read size (0 = all), byte 1 bit 0 authenticated, byte 2 leftover length.
def frame(opcode, payload, fin=True, mask=b"\x37\xfa\x21\x3d"):
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

auth = frame(1, b'{"type":"auth","token":"sk-fuzz-key"}')
msg = frame(1, json.dumps({"type": "message", "content": "Hello \u00e9 \"q\"", "model": "mock"}).encode())
put("ws_frames", "auth_message_ping_close", bytes([0, 0, 10]) + auth + msg + frame(9, b"p") + frame(1, b'{"type":"ping"}') + frame(8, b"\x03\xe8bye"))
put("ws_frames", "fragmented_text", bytes([7, 1, 0]) + frame(1, b'{"type":"mess', fin=False) + frame(9, b"") + frame(0, b'age","content":"hi"}'))
put("ws_frames", "preauth_too_big", bytes([0, 0, 0]) + frame(1, b'{"type":"auth","token":"' + b"k" * 5000 + b'"}'))
put("ws_frames", "binary_bad_utf8_unmasked", bytes([3, 1, 0]) + frame(2, b"\x00\x01") + frame(1, b"\xff\xfe") + b"\x81\x02{}")

# upstream_answer: the response body.
put("upstream_answer", "openai_completion", json.dumps({"id": "x", "object": "chat.completion", "choices": [{"index": 0,
    "message": {"role": "assistant", "content": "Hi \u00e9"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}).encode())
put("upstream_answer", "openai_content_mentions_usage", b'{"choices":[{"message":{"content":"a \\"usage\\": {"}}],"usage":{"prompt_tokens":4,"completion_tokens":1}}')
put("upstream_answer", "anthropic_message", json.dumps({"id": "msg_1", "type": "message", "role": "assistant",
    "content": [{"type": "text", "text": "Hello"}, {"type": "tool_use", "id": "t"}, {"type": "text", "text": " there"}],
    "stop_reason": "end_turn", "usage": {"input_tokens": 9, "output_tokens": 2}}).encode())
put("upstream_answer", "openai_error", b'{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}')
put("upstream_answer", "anthropic_error", b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}')

# stream_translators (pending, see fuzz/pending/): byte 0 bit 0 the adapter
# (0 = OpenAI, 1 = Anthropic), byte 1 the read size, then the provider's stream.
put("stream_translators", "openai_stream", bytes([0, 13]) + openai)
put("stream_translators", "anthropic_stream", bytes([1, 64]) + anthropic)
put("stream_translators", "openai_inband_error", bytes([0, 255]) + data({"error": {"message": "overloaded", "type": "server_error"}}))
put("stream_translators", "anthropic_error_event", bytes([1, 7]) + ev("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))


# webhooks: byte 0 the channel type (0 telegram, 1 slack, 2 discord, 3 whatsapp,
# 4 generic), byte 1 the answer's status byte; then header value, "\n", header value,
# "\n", body (see fuzz_targets/webhooks.rs).
def hook(kind, name, first, second, body, status=50):
    put("webhooks", name, bytes([kind, status]) + first + b"\n" + second + b"\n" + json.dumps(body).encode())


hook(0, "telegram_topic_message", b'{"chat_id":-100,"message_id":7,"message_thread_id":3}', b"fuzz-secret",
     {"update_id": 10000, "message": {"message_id": 1365, "from": {"id": 1, "is_bot": False},
                                      "chat": {"id": -1001234567890, "type": "supergroup"}, "message_thread_id": 7,
                                      "text": "/new@bot hello"}})
hook(0, "telegram_429", b"", b"", {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 5",
                                   "parameters": {"retry_after": 5}}, status=164)
hook(1, "slack_mention_in_thread", b"1700000000", b"v0=00",
     {"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_mention", "channel": "C1", "user": "U1",
      "text": "<@U0> hi", "ts": "1.2", "thread_ts": "1.1", "channel_type": "channel"}})
hook(1, "slack_challenge", b"1700000000", b"v0=00", {"type": "url_verification", "challenge": "abc"})
hook(2, "discord_command", b"1700000000", b"00" * 64,
     {"type": 2, "id": "786", "application_id": "77", "token": "t", "channel_id": "5", "guild_id": "1",
      "member": {"user": {"id": "8"}}, "data": {"name": "ask", "options": [
          {"type": 1, "name": "sub", "options": [{"type": 3, "name": "q", "value": "hello"}]}]}})
hook(3, "whatsapp_two_messages", b"", b"sha256=00",
     {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": {
         "metadata": {"phone_number_id": "106"}, "messages": [
             {"from": "1650", "id": "wamid.A", "type": "text", "text": {"body": "one"}},
             {"from": "1651", "id": "wamid.B", "type": "image"}],
         "statuses": [{"id": "wamid.X", "status": "read"}]}}]}]})
hook(4, "generic", b'{"to":"alice","inReplyTo":"m1"}', b"Bearer fuzz-secret",
     {"from": "alice@example.com", "text": "hi", "messageId": "m1"})
