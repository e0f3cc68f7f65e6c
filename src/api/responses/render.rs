//! The Responses API's answer shapes for a translated turn
//! (https://platform.openai.com/docs/api-reference/responses/object and
//! .../responses-streaming): the Response object, and its event stream, each event
//! named by its `type` with a `sequence_number` counting from 0:
//! `response.created`, `response.in_progress`, then per output item in order
//! (`reasoning`, `message`, `function_call`) `response.output_item.added`, its parts
//! and deltas (`response.reasoning_summary_part.added`/`_text.delta`/`_text.done`/
//! `_part.done`; `response.content_part.added`, `response.output_text.delta`,
//! `response.output_text.done`, `response.content_part.done`;
//! `response.function_call_arguments.delta`/`.done`) and
//! `response.output_item.done`, then `response.completed` (or
//! `response.incomplete` when the provider stopped for length or its content
//! filter). A failure after the start is an `error` event then `response.failed`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use sonic_rs::json;

use crate::api::native::chunked_event;
use crate::chat::{FinishReason, Usage};
use crate::error::ApiError;
use crate::http::response::EventStream;
use crate::provider::Answer;
use crate::turn::{LiveTurn, TurnEvent};

use super::Echo;

/// What every rendering of one response shares.
pub struct Head {
    pub id: String,
    /// The catalogue id of the model that answered.
    pub model: String,
    pub created_at: u64,
    pub echo: Echo,
}

/// One output item, complete.
#[derive(Debug, Clone)]
enum Item {
    Reasoning { id: String, text: String },
    Message { id: String, text: String },
    Call { id: String, call_id: String, name: String, arguments: String },
}

impl Item {
    fn render(&self, status: &str) -> sonic_rs::Value {
        match self {
            Item::Reasoning { id, text } => {
                json!({"id": id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]})
            }
            Item::Message { id, text } => json!({"id": id, "type": "message", "status": status, "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}),
            Item::Call { id, call_id, name, arguments } => json!({"id": id, "type": "function_call", "status": status,
                "call_id": call_id, "name": name, "arguments": arguments}),
        }
    }
}

fn usage_json(u: Usage) -> sonic_rs::Value {
    json!({"input_tokens": u.prompt_tokens, "input_tokens_details": {"cached_tokens": u.cached_tokens},
        "output_tokens": u.completion_tokens, "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total()})
}

/// `status` and `incomplete_details` for a finish reason.
fn status_of(finish: FinishReason) -> (&'static str, Option<&'static str>) {
    match finish {
        FinishReason::Length => ("incomplete", Some("max_output_tokens")),
        FinishReason::ContentFilter => ("incomplete", Some("content_filter")),
        _ => ("completed", None),
    }
}

/// The Response object.
fn object(
    head: &Head,
    status: &str,
    incomplete: Option<&str>,
    output: &[Item],
    usage: Option<Usage>,
) -> sonic_rs::Value {
    let e = &head.echo;
    let item_status = if status == "in_progress" { "in_progress" } else { "completed" };
    let output: Vec<sonic_rs::Value> = output.iter().map(|i| i.render(item_status)).collect();
    json!({
        "id": head.id, "object": "response", "created_at": head.created_at, "status": status,
        "background": false, "error": null,
        "incomplete_details": incomplete.map(|reason| json!({"reason": reason})),
        "instructions": e.instructions, "max_output_tokens": e.max_output_tokens, "model": head.model,
        "output": output, "parallel_tool_calls": e.parallel_tool_calls.unwrap_or(true),
        "previous_response_id": e.previous_response_id,
        "reasoning": {"effort": e.effort, "summary": null}, "store": e.store,
        "temperature": e.temperature.unwrap_or(1.0),
        "text": {"format": e.text_format.clone().unwrap_or_else(|| json!({"type": "text"}))},
        "tool_choice": e.tool_choice.clone().unwrap_or_else(|| json!("auto")), "tools": e.tools,
        "top_p": e.top_p.unwrap_or(1.0), "truncation": "disabled",
        "usage": usage.map(usage_json), "user": e.user,
        "metadata": e.metadata.clone().unwrap_or_else(|| json!({})),
    })
}

/// The output items of a whole answer: its reasoning, its text, its calls.
fn items_of(head: &Head, answer: &Answer) -> Vec<Item> {
    let suffix = head.id.trim_start_matches("resp_");
    let mut out = Vec::with_capacity(2 + answer.tool_calls.len());
    if !answer.reasoning.text.is_empty() {
        out.push(Item::Reasoning { id: format!("rs_{suffix}"), text: answer.reasoning.text.clone() });
    }
    if !answer.text.is_empty() || answer.tool_calls.is_empty() {
        out.push(Item::Message { id: format!("msg_{suffix}"), text: answer.text.clone() });
    }
    for (i, c) in answer.tool_calls.iter().enumerate() {
        out.push(Item::Call {
            id: format!("fc_{suffix}_{i}"),
            call_id: c.id.clone(),
            name: c.name.clone(),
            arguments: c.arguments.clone(),
        });
    }
    out
}

/// A whole answer as the Response object.
pub fn response(head: &Head, answer: &Answer) -> Result<Vec<u8>, ApiError> {
    let (status, incomplete) = status_of(answer.finish);
    let body = object(head, status, incomplete, &items_of(head, answer), Some(answer.usage));
    sonic_rs::to_vec(&body).map_err(|e| ApiError::internal(format!("rendering failed: {e}")))
}

/// The data of an `error` event (`{"type":"error","code","message","param","sequence_number"}`).
pub fn error_event(e: &ApiError, sequence_number: u64) -> Vec<u8> {
    let code = e.provider.as_ref().and_then(|p| p.code.clone()).unwrap_or_else(|| e.code.as_str().to_string());
    let body = json!({"type": "error", "code": code, "message": &*e.message, "param": null,
        "sequence_number": sequence_number});
    sonic_rs::to_vec(&body).unwrap_or_default()
}

/// The item being streamed, by its place in `output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Reasoning,
    Message,
    /// The function call of this canonical tool-call index.
    Call(u32),
}

/// A translated turn rendered as the Responses event stream.
pub struct ResponseStream {
    turn: LiveTurn,
    head: Head,
    seq: u64,
    started: bool,
    over: bool,
    open: Open,
    /// The items so far (the open one last).
    items: Vec<Item>,
    calls: u32,
    pending: VecDeque<Bytes>,
}

impl ResponseStream {
    pub fn new(turn: LiveTurn, head: Head) -> Self {
        ResponseStream {
            turn,
            head,
            seq: 0,
            started: false,
            over: false,
            open: Open::None,
            items: Vec::new(),
            calls: 0,
            pending: VecDeque::new(),
        }
    }

    /// Queues one event: `type` and `sequence_number` are added to `data`'s members.
    fn emit(&mut self, kind: &str, mut data: sonic_rs::Value) {
        if let Some(obj) = sonic_rs::JsonValueMutTrait::as_object_mut(&mut data) {
            obj.insert("type", json!(kind));
            obj.insert("sequence_number", json!(self.seq));
        }
        self.seq += 1;
        self.pending.push_back(chunked_event(Some(kind.as_bytes()), &sonic_rs::to_vec(&data).unwrap_or_default()));
    }

    fn index(&self) -> usize {
        self.items.len().saturating_sub(1)
    }

    /// Closes the open item with its done events.
    fn close(&mut self) {
        let at = self.index();
        let Some(item) = self.items.last().cloned() else { return };
        match (self.open, &item) {
            (Open::Reasoning, Item::Reasoning { id, text }) => {
                let part = json!({"type": "summary_text", "text": text});
                self.emit(
                    "response.reasoning_summary_text.done",
                    json!({"item_id": id, "output_index": at, "summary_index": 0, "text": text}),
                );
                self.emit(
                    "response.reasoning_summary_part.done",
                    json!({"item_id": id, "output_index": at, "summary_index": 0, "part": part}),
                );
            }
            (Open::Message, Item::Message { id, text }) => {
                self.emit(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": at, "content_index": 0, "text": text, "logprobs": []}),
                );
                self.emit(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": at, "content_index": 0,
                    "part": {"type": "output_text", "text": text, "annotations": [], "logprobs": []}}),
                );
            }
            (Open::Call(_), Item::Call { id, name, arguments, .. }) => {
                self.emit(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": at, "name": name, "arguments": arguments}),
                );
            }
            _ => return,
        }
        self.emit("response.output_item.done", json!({"output_index": at, "item": item.render("completed")}));
        self.open = Open::None;
    }

    /// Opens `item` (closing the open one) with its added events.
    fn open(&mut self, open: Open, item: Item) {
        self.close();
        self.items.push(item.clone());
        self.open = open;
        let at = self.index();
        self.emit("response.output_item.added", json!({"output_index": at, "item": item.render("in_progress")}));
        match &item {
            Item::Reasoning { id, .. } => self.emit(
                "response.reasoning_summary_part.added",
                json!({"item_id": id, "output_index": at, "summary_index": 0,
                    "part": {"type": "summary_text", "text": ""}}),
            ),
            Item::Message { id, .. } => self.emit(
                "response.content_part.added",
                json!({"item_id": id, "output_index": at, "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
            ),
            Item::Call { .. } => {}
        }
    }

    fn suffix(&self) -> String {
        self.head.id.trim_start_matches("resp_").to_string()
    }

    fn on_event(&mut self, event: TurnEvent) {
        match event {
            TurnEvent::Reasoning { text, .. } => {
                if text.is_empty() {
                    return;
                }
                if self.open != Open::Reasoning {
                    let id = format!("rs_{}_{}", self.suffix(), self.items.len());
                    self.open(Open::Reasoning, Item::Reasoning { id, text: String::new() });
                }
                let at = self.index();
                let Some(Item::Reasoning { id, text: all }) = self.items.last_mut() else { return };
                all.push_str(&text);
                let id = id.clone();
                self.emit(
                    "response.reasoning_summary_text.delta",
                    json!({"item_id": id, "output_index": at, "summary_index": 0, "delta": text}),
                );
            }
            TurnEvent::Delta(text) => {
                if self.open != Open::Message {
                    let id = format!("msg_{}_{}", self.suffix(), self.items.len());
                    self.open(Open::Message, Item::Message { id, text: String::new() });
                }
                let at = self.index();
                let Some(Item::Message { id, text: all }) = self.items.last_mut() else { return };
                all.push_str(&text);
                let id = id.clone();
                self.emit(
                    "response.output_text.delta",
                    json!({"item_id": id, "output_index": at, "content_index": 0, "delta": text, "logprobs": []}),
                );
            }
            TurnEvent::ToolCall { index, id, name, arguments } => {
                if self.open != Open::Call(index) {
                    let item_id = format!("fc_{}_{}", self.suffix(), self.calls);
                    self.calls += 1;
                    let item = Item::Call {
                        id: item_id,
                        call_id: id.unwrap_or_default(),
                        name: name.unwrap_or_default(),
                        arguments: String::new(),
                    };
                    self.open(Open::Call(index), item);
                }
                if arguments.is_empty() {
                    return;
                }
                let at = self.index();
                let Some(Item::Call { id, arguments: all, .. }) = self.items.last_mut() else { return };
                all.push_str(&arguments);
                let id = id.clone();
                self.emit(
                    "response.function_call_arguments.delta",
                    json!({"item_id": id, "output_index": at, "delta": arguments}),
                );
            }
            TurnEvent::Done { usage, finish, .. } => {
                if self.items.is_empty() {
                    let id = format!("msg_{}_0", self.suffix());
                    self.open(Open::Message, Item::Message { id, text: String::new() });
                }
                self.close();
                let (status, incomplete) = status_of(finish);
                let response = object(&self.head, status, incomplete, &self.items, Some(usage));
                let kind = if status == "completed" { "response.completed" } else { "response.incomplete" };
                self.emit(kind, json!({"response": response}));
                self.over = true;
            }
            TurnEvent::Failed(e) => {
                let data = error_event(&e, self.seq);
                self.seq += 1;
                self.pending.push_back(chunked_event(Some(b"error"), &data));
                let mut response = object(&self.head, "failed", None, &self.items, None);
                if let Some(obj) = sonic_rs::JsonValueMutTrait::as_object_mut(&mut response) {
                    obj.insert("error", json!({"code": e.code.as_str(), "message": &*e.message}));
                }
                self.emit("response.failed", json!({"response": response}));
                self.over = true;
            }
        }
    }

    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some(b);
            }
            if self.over {
                return None;
            }
            if !self.started {
                self.started = true;
                let response = object(&self.head, "in_progress", None, &[], None);
                self.emit("response.created", json!({"response": response.clone()}));
                self.emit("response.in_progress", json!({"response": response}));
                continue;
            }
            match self.turn.next().await {
                Some(event) => self.on_event(event),
                None => self.over = true,
            }
        }
    }
}

impl EventStream for ResponseStream {
    fn next_event(&mut self) -> Pin<Box<dyn Future<Output = Option<Bytes>> + '_>> {
        Box::pin(self.next())
    }
}
