//! OpenAI's Responses API wire format, as documented in the API reference
//! (platform.openai.com/docs/api-reference/responses: "Create a model response", "The
//! response object", "Streaming events") and the function-calling and reasoning
//! guides. The request side is read in `chat.rs` (`Dialect::Responses`); auth and
//! error bodies are OpenAI's (`openai.rs`).
//!
//! The answer is the Response object: `{"id":"resp_...","object":"response",
//! "created_at","status","error":null,"incomplete_details","instructions",
//! "max_output_tokens","model","output":[...],"parallel_tool_calls":true,
//! "previous_response_id","reasoning":{"effort","summary"},"store":true,
//! "temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools",
//! "top_p":1.0,"truncation":"disabled","usage":{...},"user":null,"metadata":{}}`, the
//! request's `instructions`, `max_output_tokens`, `tools` (as sent),
//! `previous_response_id` and `reasoning` repeated. Every block of the scripted
//! answer is one output item: text a `message` item (`role: assistant`, one
//! `output_text` part with `annotations: []`), a tool call a `function_call` item
//! (`call_id` as in Chat Completions, `arguments` a JSON string), thinking a
//! `reasoning` item whose `summary` holds one `summary_text` only when the request
//! set `reasoning.summary`. `status` is `completed`, or `incomplete` with
//! `incomplete_details.reason` `max_output_tokens` (`stop=length`) or
//! `content_filter`. `usage` is `{"input_tokens","input_tokens_details":
//! {"cached_tokens"},"output_tokens","output_tokens_details":{"reasoning_tokens"},
//! "total_tokens"}`, output counting reasoning.
//!
//! The stream is named SSE events, each `event:` naming the `type` of its data and
//! each data carrying `sequence_number` from 0 (the emitter's event count); there is
//! no `[DONE]`:
//!
//! ```text
//! response.created, response.in_progress          (status in_progress, no output, usage null)
//! per output item:
//!   response.output_item.added                     (the item, empty, status in_progress)
//!   message:   response.content_part.added, response.output_text.delta..,
//!              response.output_text.done, response.content_part.done
//!   call:      response.function_call_arguments.delta.., response.function_call_arguments.done
//!   reasoning: with a summary: response.reasoning_summary_part.added,
//!              response.reasoning_summary_text.delta.., response.reasoning_summary_text.done,
//!              response.reasoning_summary_part.done
//!   response.output_item.done                      (the finished item)
//! response.completed | response.incomplete         (the whole Response object)
//! ```
//! An in-stream failure (`stream-error=N`) is an `error` event. Bodies are appended by
//! hand in the documented field order (see `json.rs`).

use crate::chat::Turn;
use crate::json::{push_num, push_raw, push_str};
use crate::openai;
use crate::reply::Block;
use crate::scenario::StopKind;
use crate::sse::Emitter;

/// `incomplete_details.reason` when the answer stopped early, else `None`.
fn incomplete_reason(stop: StopKind) -> Option<&'static str> {
    match stop {
        StopKind::Length => Some("max_output_tokens"),
        StopKind::ContentFilter => Some("content_filter"),
        StopKind::End | StopKind::ToolUse | StopKind::StopSequence => None,
    }
}

/// The id of output item `b`: `rs_`, `fc_` or `msg_`, the random part of the
/// response id, `_` and `b`.
fn item_id(t: &Turn<'_>, b: usize, block: &Block) -> String {
    let prefix = match block {
        Block::Thinking { .. } => "rs_",
        Block::Tool { .. } => "fc_",
        Block::Text { .. } => "msg_",
    };
    format!("{prefix}{}_{b}", t.id.strip_prefix("resp_").unwrap_or(&t.id))
}

/// The non-streamed Response object.
pub fn full(t: &Turn<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1000 + t.reply.text().len());
    response(&mut out, t, true);
    out
}

/// The Response object: finished (`done`), or as a stream opens (`in_progress`, no
/// output, `usage: null`).
fn response(out: &mut Vec<u8>, t: &Turn<'_>, done: bool) {
    let incomplete = incomplete_reason(t.reply.stop).filter(|_| done);
    push_raw(out, "{\"id\":");
    push_str(out, &t.id);
    push_raw(out, ",\"object\":\"response\",\"created_at\":");
    push_num(out, t.created);
    push_raw(out, ",\"status\":\"");
    push_raw(
        out,
        match (done, incomplete) {
            (false, _) => "in_progress",
            (true, None) => "completed",
            (true, Some(_)) => "incomplete",
        },
    );
    push_raw(out, "\",\"error\":null,\"incomplete_details\":");
    match incomplete {
        Some(reason) => {
            push_raw(out, "{\"reason\":\"");
            push_raw(out, reason);
            push_raw(out, "\"}");
        }
        None => push_raw(out, "null"),
    }
    let echo = t.echo;
    push_raw(out, ",\"instructions\":");
    opt_str(out, echo.and_then(|e| e.instructions.as_deref()));
    push_raw(out, ",\"max_output_tokens\":");
    match echo.and_then(|e| e.max_output_tokens) {
        Some(n) => push_num(out, n),
        None => push_raw(out, "null"),
    }
    push_raw(out, ",\"model\":");
    push_str(out, t.model);
    push_raw(out, ",\"output\":[");
    if done {
        for (b, block) in t.reply.blocks.iter().enumerate() {
            if b > 0 {
                out.push(b',');
            }
            item(out, t, b, block, true);
        }
    }
    push_raw(out, "],\"parallel_tool_calls\":true,\"previous_response_id\":");
    opt_str(out, echo.and_then(|e| e.previous_response_id.as_deref()));
    push_raw(out, ",\"reasoning\":{\"effort\":");
    opt_str(out, echo.and_then(|e| e.reasoning_effort.as_deref()));
    push_raw(out, ",\"summary\":");
    opt_str(out, echo.and_then(|e| e.reasoning_summary.as_deref()));
    push_raw(
        out,
        "},\"store\":true,\"temperature\":1.0,\"text\":{\"format\":{\"type\":\"text\"}},\"tool_choice\":\"auto\",\"tools\":",
    );
    push_raw(out, echo.map_or("[]", |e| e.tools.as_str()));
    push_raw(out, ",\"top_p\":1.0,\"truncation\":\"disabled\",\"usage\":");
    if done {
        usage(out, t);
    } else {
        push_raw(out, "null");
    }
    push_raw(out, ",\"user\":null,\"metadata\":{}}");
}

fn opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => push_str(out, s),
        None => push_raw(out, "null"),
    }
}

fn usage(out: &mut Vec<u8>, t: &Turn<'_>) {
    let (p, c) = (t.prompt_tokens, t.completion_tokens());
    push_raw(out, "{\"input_tokens\":");
    push_num(out, p);
    push_raw(out, ",\"input_tokens_details\":{\"cached_tokens\":");
    push_num(out, t.cached_tokens());
    push_raw(out, "},\"output_tokens\":");
    push_num(out, c);
    push_raw(out, ",\"output_tokens_details\":{\"reasoning_tokens\":");
    push_num(out, t.reply.thinking_tokens());
    push_raw(out, "},\"total_tokens\":");
    push_num(out, p + c);
    out.push(b'}');
}

/// Output item `b`: finished (`done`), or empty as `response.output_item.added`
/// shows it.
fn item(out: &mut Vec<u8>, t: &Turn<'_>, b: usize, block: &Block, done: bool) {
    let id = item_id(t, b, block);
    match block {
        Block::Thinking { text, .. } => {
            push_raw(out, "{\"type\":\"reasoning\",\"id\":");
            push_str(out, &id);
            push_raw(out, ",\"summary\":[");
            if done && t.include_thoughts {
                summary_part(out, text);
            }
            push_raw(out, "]}");
        }
        Block::Text { text, .. } => {
            push_raw(out, "{\"type\":\"message\",\"id\":");
            push_str(out, &id);
            push_raw(out, ",\"status\":\"");
            push_raw(out, item_status(t, done));
            push_raw(out, "\",\"role\":\"assistant\",\"content\":[");
            if done {
                text_part(out, text);
            }
            push_raw(out, "]}");
        }
        Block::Tool { ordinal, name, arguments, .. } => {
            push_raw(out, "{\"type\":\"function_call\",\"id\":");
            push_str(out, &id);
            push_raw(out, ",\"call_id\":");
            push_str(out, &openai::call_id(*ordinal));
            push_raw(out, ",\"name\":");
            push_str(out, name);
            push_raw(out, ",\"arguments\":");
            push_str(out, if done { arguments } else { "" });
            push_raw(out, ",\"status\":\"");
            push_raw(out, if done { "completed" } else { "in_progress" });
            push_raw(out, "\"}");
        }
    }
}

/// A message item's status: `incomplete` once done when the response is.
fn item_status(t: &Turn<'_>, done: bool) -> &'static str {
    match (done, incomplete_reason(t.reply.stop)) {
        (false, _) => "in_progress",
        (true, None) => "completed",
        (true, Some(_)) => "incomplete",
    }
}

fn text_part(out: &mut Vec<u8>, text: &str) {
    push_raw(out, "{\"type\":\"output_text\",\"text\":");
    push_str(out, text);
    push_raw(out, ",\"annotations\":[]}");
}

fn summary_part(out: &mut Vec<u8>, text: &str) {
    push_raw(out, "{\"type\":\"summary_text\",\"text\":");
    push_str(out, text);
    out.push(b'}');
}

/// One named event: `{"type":"<kind>",` what `fields` writes, then
/// `,"sequence_number":N}`.
fn event(em: &mut Emitter, kind: &str, fields: impl FnOnce(&mut Vec<u8>)) {
    let seq = em.emitted() as u64;
    let out = em.data();
    push_raw(out, "{\"type\":\"");
    push_raw(out, kind);
    push_raw(out, "\",");
    fields(out);
    push_raw(out, ",\"sequence_number\":");
    push_num(out, seq);
    out.push(b'}');
    em.emit(Some(kind));
}

/// `"item_id":ID,"output_index":b`.
fn item_ref(out: &mut Vec<u8>, t: &Turn<'_>, b: usize, block: &Block) {
    push_raw(out, "\"item_id\":");
    push_str(out, &item_id(t, b, block));
    push_raw(out, ",\"output_index\":");
    push_num(out, b as u64);
}

/// `response.created` and `response.in_progress`, then the first item opens.
pub fn prelude(t: &Turn<'_>, em: &mut Emitter) {
    for kind in ["response.created", "response.in_progress"] {
        event(em, kind, |out| {
            push_raw(out, "\"response\":");
            response(out, t, false);
        });
    }
    open(t, 0, em);
}

/// `response.output_item.added` for item `b`, and its first part when it has one.
fn open(t: &Turn<'_>, b: usize, em: &mut Emitter) {
    let Some(block) = t.reply.blocks.get(b) else { return };
    event(em, "response.output_item.added", |out| {
        push_raw(out, "\"output_index\":");
        push_num(out, b as u64);
        push_raw(out, ",\"item\":");
        item(out, t, b, block, false);
    });
    match block {
        Block::Text { .. } => event(em, "response.content_part.added", |out| {
            item_ref(out, t, b, block);
            push_raw(out, ",\"content_index\":0,\"part\":");
            text_part(out, "");
        }),
        Block::Thinking { .. } if t.include_thoughts => event(em, "response.reasoning_summary_part.added", |out| {
            item_ref(out, t, b, block);
            push_raw(out, ",\"summary_index\":0,\"part\":");
            summary_part(out, "");
        }),
        Block::Thinking { .. } | Block::Tool { .. } => {}
    }
}

/// The `.done` events of item `b`, then `response.output_item.done`.
fn close(t: &Turn<'_>, b: usize, em: &mut Emitter) {
    let Some(block) = t.reply.blocks.get(b) else { return };
    match block {
        Block::Text { text, .. } => {
            event(em, "response.output_text.done", |out| {
                item_ref(out, t, b, block);
                push_raw(out, ",\"content_index\":0,\"text\":");
                push_str(out, text);
                push_raw(out, ",\"logprobs\":[]");
            });
            event(em, "response.content_part.done", |out| {
                item_ref(out, t, b, block);
                push_raw(out, ",\"content_index\":0,\"part\":");
                text_part(out, text);
            });
        }
        Block::Tool { name, arguments, .. } => event(em, "response.function_call_arguments.done", |out| {
            item_ref(out, t, b, block);
            push_raw(out, ",\"name\":");
            push_str(out, name);
            push_raw(out, ",\"arguments\":");
            push_str(out, arguments);
        }),
        Block::Thinking { text, .. } if t.include_thoughts => {
            event(em, "response.reasoning_summary_text.done", |out| {
                item_ref(out, t, b, block);
                push_raw(out, ",\"summary_index\":0,\"text\":");
                push_str(out, text);
            });
            event(em, "response.reasoning_summary_part.done", |out| {
                item_ref(out, t, b, block);
                push_raw(out, ",\"summary_index\":0,\"part\":");
                summary_part(out, text);
            });
        }
        Block::Thinking { .. } => {}
    }
    event(em, "response.output_item.done", |out| {
        push_raw(out, "\"output_index\":");
        push_num(out, b as u64);
        push_raw(out, ",\"item\":");
        item(out, t, b, block, true);
    });
}

/// Stream step `i`: closes the previous item and opens the next when the step starts
/// a new one, then its delta (none for a hidden thinking chunk or a signature).
pub fn delta(t: &Turn<'_>, i: usize, em: &mut Emitter) {
    let Some(step) = t.reply.steps.get(i).copied() else { return };
    let prev = if i == 0 { 0 } else { t.reply.steps.get(i - 1).map_or(0, |s| s.block) };
    if step.block != prev {
        close(t, prev, em);
        open(t, step.block, em);
    }
    let Some(block) = t.reply.blocks.get(step.block) else { return };
    let piece = t.reply.piece(i);
    match block {
        Block::Text { .. } => event(em, "response.output_text.delta", |out| {
            item_ref(out, t, step.block, block);
            push_raw(out, ",\"content_index\":0,\"delta\":");
            push_str(out, piece);
            push_raw(out, ",\"logprobs\":[]");
        }),
        Block::Tool { .. } => event(em, "response.function_call_arguments.delta", |out| {
            item_ref(out, t, step.block, block);
            push_raw(out, ",\"delta\":");
            push_str(out, piece);
        }),
        Block::Thinking { chunks, .. } if t.include_thoughts && step.piece < chunks.len() => {
            event(em, "response.reasoning_summary_text.delta", |out| {
                item_ref(out, t, step.block, block);
                push_raw(out, ",\"summary_index\":0,\"delta\":");
                push_str(out, piece);
            });
        }
        Block::Thinking { .. } => {}
    }
}

/// Closes the last item, then `response.completed` (or `response.incomplete`) with
/// the whole Response object.
pub fn finale(t: &Turn<'_>, em: &mut Emitter) {
    close(t, t.reply.steps.last().map_or(0, |s| s.block), em);
    let kind = if incomplete_reason(t.reply.stop).is_some() { "response.incomplete" } else { "response.completed" };
    event(em, kind, |out| {
        push_raw(out, "\"response\":");
        response(out, t, true);
    });
}

/// An `error` event in place of the rest of the stream.
pub fn stream_error(em: &mut Emitter) {
    event(em, "error", |out| {
        push_raw(
            out,
            "\"code\":\"server_error\",\"message\":\"The server had an error while processing your request. Sorry about that!\",\"param\":null",
        );
    });
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::chat::{self, Dialect};
    use crate::reply::{Asked, Reply, TOOL_ARGS};
    use crate::scenario::Scenario;
    use crate::sse::Style;

    fn turn<'a>(reply: &'a Reply, chat: &'a chat::Chat) -> Turn<'a> {
        Turn {
            id: "resp_abc".into(),
            created: 7,
            model: &chat.model,
            prompt_tokens: chat.prompt_tokens,
            include_usage: false,
            include_thoughts: chat.include_thoughts,
            dialect: Dialect::Responses,
            reply,
            echo: chat.echo.as_ref(),
        }
    }

    fn request(body: &str) -> chat::Chat {
        chat::parse(body.as_bytes(), Dialect::Responses).unwrap()
    }

    fn scripted(spec: &str, stop: Option<&str>) -> Reply {
        let mut s = Scenario::default();
        s.set_reply(spec).unwrap();
        if let Some(stop) = stop {
            s.set_stop(stop).unwrap();
        }
        Reply::build(&s, &Asked { last_user: "hi there", ..Asked::default() })
    }

    /// `(event name, data)` of every event, checking names match types and sequence
    /// numbers count from 0.
    fn events(t: &Turn<'_>) -> Vec<(String, Value)> {
        let mut em = Emitter::new(Style::default());
        prelude(t, &mut em);
        for i in 0..t.reply.steps.len() {
            delta(t, i, &mut em);
        }
        finale(t, &mut em);
        let text = String::from_utf8(em.take().to_vec()).unwrap();
        let names = text.lines().filter_map(|l| l.strip_prefix("event: ").map(str::to_string));
        let data = text.lines().filter_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str(d).unwrap());
        let all: Vec<(String, Value)> = names.zip(data).collect();
        for (i, (name, data)) in all.iter().enumerate() {
            assert_eq!(
                (data["type"].as_str(), data["sequence_number"].as_u64()),
                (Some(name.as_str()), Some(i as u64))
            );
        }
        all
    }

    /// The event names with runs of one name folded into one.
    fn collapsed(ev: &[(String, Value)]) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for (name, _) in ev {
            if out.last() != Some(&name.as_str()) {
                out.push(name);
            }
        }
        out
    }

    #[test]
    fn full_response_has_the_documented_shape() {
        let chat =
            request(r#"{"model":"gpt-4.1","input":"hi there","instructions":"be brief","max_output_tokens":50}"#);
        let reply = Reply::echo("hi there", None);
        let v: Value = serde_json::from_slice(&full(&turn(&reply, &chat))).unwrap();
        assert_eq!(
            v,
            json!({"id": "resp_abc", "object": "response", "created_at": 7, "status": "completed", "error": null,
                "incomplete_details": null, "instructions": "be brief", "max_output_tokens": 50, "model": "gpt-4.1",
                "output": [{"type": "message", "id": "msg_abc_0", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": "Echo: hi there", "annotations": []}]}],
                "parallel_tool_calls": true, "previous_response_id": null,
                "reasoning": {"effort": null, "summary": null}, "store": true, "temperature": 1.0,
                "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
                "truncation": "disabled",
                "usage": {"input_tokens": (2 + 3) + (2 + 3), "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 13},
                "user": null, "metadata": {}})
        );
    }

    #[test]
    fn function_calls_reasoning_and_incomplete_answers() {
        let chat = request(
            r#"{"model":"o4-mini","input":"hi","reasoning":{"effort":"low","summary":"auto"},
                "tools":[{"type":"function","name":"lookup","parameters":{"type":"object"}}]}"#,
        );
        let mut s = Scenario::default();
        s.set_reply("thinking+tool_calls").unwrap();
        s.cached = 2;
        let reply = Reply::build(&s, &Asked { last_user: "hi", tools: &chat.tools, ..Asked::default() });
        let v: Value = serde_json::from_slice(&full(&turn(&reply, &chat))).unwrap();
        assert_eq!(
            v["output"],
            json!([{"type": "reasoning", "id": "rs_abc_0", "summary": [{"type": "summary_text", "text": "Thinking about: hi"}]},
                {"type": "function_call", "id": "fc_abc_1", "call_id": "call_mock_1", "name": "lookup", "arguments": TOOL_ARGS[0], "status": "completed"},
                {"type": "function_call", "id": "fc_abc_2", "call_id": "call_mock_2", "name": "lookup", "arguments": TOOL_ARGS[1], "status": "completed"}])
        );
        assert_eq!(v["tools"][0]["name"], "lookup");
        assert_eq!(v["reasoning"], json!({"effort": "low", "summary": "auto"}));
        assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 2);
        assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 3);
        assert_eq!(v["usage"]["output_tokens"], 3 + 3 + 2, "reasoning, then both calls' arguments");

        let chat = request(r#"{"model":"m","input":"hi there"}"#);
        let long = scripted("text", Some("length"));
        let v: Value = serde_json::from_slice(&full(&turn(&long, &chat))).unwrap();
        assert_eq!(
            (v["status"].as_str(), v["incomplete_details"].clone()),
            (Some("incomplete"), json!({"reason": "max_output_tokens"}))
        );
        assert_eq!(v["output"][0]["status"], "incomplete");
        let ev = events(&turn(&long, &chat));
        assert_eq!(ev.last().unwrap().0, "response.incomplete");
        // Without `reasoning.summary` the reasoning item stays empty.
        let thinking = scripted("thinking+text", None);
        let v: Value = serde_json::from_slice(&full(&turn(&thinking, &chat))).unwrap();
        assert_eq!(v["output"][0], json!({"type": "reasoning", "id": "rs_abc_0", "summary": []}));
    }

    #[test]
    fn text_stream_has_the_documented_event_sequence() {
        let chat = request(r#"{"model":"m","input":"one two three four five","stream":true}"#);
        let reply = Reply::echo("one two three four five", None);
        let t = turn(&reply, &chat);
        let ev = events(&t);
        assert_eq!(
            collapsed(&ev),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let created = &ev[0].1["response"];
        assert_eq!(
            (created["status"].as_str(), created["output"].clone(), created["usage"].clone()),
            (Some("in_progress"), json!([]), Value::Null)
        );
        assert_eq!(
            ev[2].1["item"],
            json!({"type": "message", "id": "msg_abc_0", "status": "in_progress", "role": "assistant", "content": []})
        );
        assert_eq!(ev[3].1["part"], json!({"type": "output_text", "text": "", "annotations": []}));
        let deltas: Vec<&Value> =
            ev.iter().filter(|(n, _)| n == "response.output_text.delta").map(|(_, d)| d).collect();
        assert_eq!(deltas.len(), 2);
        assert_eq!(
            deltas[0],
            &json!({"type": "response.output_text.delta", "item_id": "msg_abc_0", "output_index": 0, "content_index": 0,
                "delta": "Echo: one two", "logprobs": [], "sequence_number": 4})
        );
        let joined: String = deltas.iter().map(|d| d["delta"].as_str().unwrap()).collect();
        assert_eq!(joined, "Echo: one two three four five");
        let done = &ev.last().unwrap().1["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done, &serde_json::from_slice::<Value>(&full(&t)).unwrap());
    }

    #[test]
    fn function_call_and_reasoning_streams() {
        let chat = request(r#"{"model":"m","input":"hi","reasoning":{"summary":"detailed"}}"#);
        let reply = scripted("thinking+tool_call", None);
        let ev = events(&turn(&reply, &chat));
        assert_eq!(
            collapsed(&ev),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let added = ev.iter().filter(|(n, _)| n == "response.output_item.added").nth(1).unwrap();
        assert_eq!(
            added.1["item"],
            json!({"type": "function_call", "id": "fc_abc_1", "call_id": "call_mock_1", "name": "get_weather", "arguments": "", "status": "in_progress"})
        );
        let args: String = ev
            .iter()
            .filter(|(n, _)| n == "response.function_call_arguments.delta")
            .map(|(_, d)| d["delta"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(args, TOOL_ARGS[0]);
        let (_, done) = ev.iter().find(|(n, _)| n == "response.function_call_arguments.done").unwrap();
        assert_eq!(
            (done["arguments"].as_str(), done["name"].as_str(), done["output_index"].as_u64()),
            (Some(TOOL_ARGS[0]), Some("get_weather"), Some(1))
        );
        let summary: String = ev
            .iter()
            .filter(|(n, _)| n == "response.reasoning_summary_text.delta")
            .map(|(_, d)| d["delta"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(summary, "Thinking about: hi there");

        // Hidden reasoning: the item opens and closes with nothing in between.
        let chat = request(r#"{"model":"m","input":"hi"}"#);
        let names: Vec<String> = events(&turn(&reply, &chat)).into_iter().map(|(n, _)| n).take(5).collect();
        assert_eq!(
            names[2..],
            ["response.output_item.added", "response.output_item.done", "response.output_item.added"]
        );
    }

    #[test]
    fn an_in_stream_error_is_an_error_event() {
        let mut em = Emitter::new(Style::default());
        em.data().extend_from_slice(b"{}");
        em.emit(None);
        stream_error(&mut em);
        let text = String::from_utf8(em.take().to_vec()).unwrap();
        let data = text.rsplit("data: ").next().unwrap().trim();
        let v: Value = serde_json::from_str(data).unwrap();
        assert!(text.contains("event: error\n"));
        assert_eq!(
            (v["type"].as_str(), v["code"].as_str(), v["sequence_number"].as_u64()),
            (Some("error"), Some("server_error"), Some(1))
        );
    }
}
