//! The loop every streaming HTTP adapter shares: read the next body piece, feed the
//! incremental SSE parser, hand each complete event to the adapter's `Events` (which
//! turns its wire format into deltas and usage), and return the queued deltas one by
//! one. A body that ends before the adapter saw its end-of-stream event is an error
//! (a cut stream must not look like a short answer).

use std::collections::VecDeque;

use crate::provider::{ProviderError, StreamEvent};
use crate::upstream::sse;
use crate::upstream::BodyReader;

/// An adapter's reading of its provider's stream events (`Adapter::events`).
pub trait Events {
    /// How the adapter names its end-of-stream event, for the "ended early" error.
    fn end_event(&self) -> &'static str;

    /// Handles one event (`name` is its `event:` field, if any), pushing deltas and
    /// the final `Done` onto `out`. Returns `true` once the stream is over.
    fn on_event(
        &mut self,
        name: Option<&[u8]>,
        data: &[u8],
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<bool, ProviderError>;

    /// The body ended before `on_event` said the stream was over. A format whose end
    /// is the body's end (Gemini) pushes its last events and returns `true`; the
    /// default is `false`: the stream was cut.
    fn on_end(&mut self, _out: &mut VecDeque<StreamEvent>) -> bool {
        false
    }
}

/// A provider's SSE answer in progress.
pub struct SseStream {
    /// `None` once the adapter saw the end: the rest of the body (the closing chunk)
    /// is drained by a small task so the connection goes back to the pool.
    body: Option<BodyReader>,
    parser: sse::Parser,
    events: Vec<sse::Event>,
    pending: VecDeque<StreamEvent>,
    state: Box<dyn Events>,
    finished: bool,
}

impl SseStream {
    pub fn new(body: BodyReader, state: Box<dyn Events>) -> Self {
        SseStream {
            body: Some(body),
            parser: sse::Parser::new(),
            events: Vec::new(),
            pending: VecDeque::new(),
            state,
            finished: false,
        }
    }

    /// The next delta, `Done` with usage at the end, then `None`.
    pub async fn next(&mut self) -> Result<Option<StreamEvent>, ProviderError> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Ok(Some(ev));
            }
            if self.finished {
                return Ok(None);
            }
            let Some(body) = self.body.as_mut() else { return Ok(None) };
            let piece = body.next().await.map_err(ProviderError::from_upstream)?;
            let Some(piece) = piece else {
                self.parser.finish();
                if self.state.on_end(&mut self.pending) {
                    self.finished = true;
                    self.body = None;
                    continue;
                }
                return Err(ProviderError::upstream(format!(
                    "provider stream ended before {}",
                    self.state.end_event()
                )));
            };
            self.parser
                .feed(&piece, &mut self.events)
                .map_err(|_| ProviderError::upstream("provider sent an over-long SSE line"))?;
            for event in self.events.drain(..) {
                if !self.finished {
                    self.finished = self.state.on_event(event.name.as_deref(), &event.data, &mut self.pending)?;
                }
            }
            if self.finished {
                if let Some(mut rest) = self.body.take() {
                    // Bounded by the body's own chunk and total deadlines.
                    monoio::spawn(async move { while let Ok(Some(_)) = rest.next().await {} });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The stream translators see the same events however the body is split: every
    //! sample stream (copied from the providers' documentation) is fed whole and split
    //! at every offset into two pieces, and the canonical events must be identical.

    use super::*;
    use crate::chat::FinishReason;
    use crate::provider::{anthropic, gemini, openai};

    fn translate<E: Events>(mut state: E, pieces: &[&[u8]]) -> Vec<StreamEvent> {
        let mut parser = sse::Parser::new();
        let mut events = Vec::new();
        let mut out = VecDeque::new();
        let mut finished = false;
        for piece in pieces {
            parser.feed(piece, &mut events).unwrap();
            for e in events.drain(..) {
                if !finished {
                    finished = state.on_event(e.name.as_deref(), &e.data, &mut out).unwrap();
                }
            }
        }
        if !finished {
            assert!(state.on_end(&mut out), "the stream did not end");
        }
        out.into_iter().collect()
    }

    fn every_split<E: Events + Default>(body: &[u8]) -> Vec<StreamEvent> {
        let whole = translate(E::default(), &[body]);
        for cut in 0..=body.len() {
            let split = translate(E::default(), &[&body[..cut], &body[cut..]]);
            assert_eq!(split, whole, "split at {cut}");
        }
        whole
    }

    const OPENAI: &[u8] = b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]}\n\n\
data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"loc\"}}]}}]}\n\n\
data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"ation\\\":\\\"SF\\\"}\"}}]}}]}\n\n\
data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n\
data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\n\
data: [DONE]\n\n";

    const ANTHROPIC: &[u8] = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"content\":[],\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Let me check\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\": \\\"S\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"F\\\"}\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":30}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    const GEMINI: &[u8] = b"data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Hello\"}]}}],\"usageMetadata\":{\"promptTokenCount\":5}}\r\n\r\n\
data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\" there\"}]},\"finishReason\":\"MAX_TOKENS\"}],\"usageMetadata\":{\"promptTokenCount\":5,\"candidatesTokenCount\":2}}\r\n\r\n";

    const ANTHROPIC_THINKING: &[u8] = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"content\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Let me add: 2+2\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQBCgIYAhIM\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"4\"}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    const OPENAI_REASONING: &[u8] = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"reasoning_content\":\"Hm\\u00e9\"}}]}\n\n\
data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"4\"},\"finish_reason\":\"stop\"}]}\n\n\
data: [DONE]\n\n";

    fn reasoning(text: &str, signature: Option<&str>) -> StreamEvent {
        StreamEvent::Reasoning { text: text.into(), signature: signature.map(str::to_string) }
    }

    #[test]
    fn anthropic_thinking_and_signature_deltas_are_the_same_at_every_split() {
        let events = every_split::<anthropic::Events>(ANTHROPIC_THINKING);
        assert_eq!(events[0], reasoning("Let me add: 2+2", None));
        assert_eq!(events[1], reasoning("", Some("EqQBCgIYAhIM")));
        assert_eq!(events[2], StreamEvent::Delta("4".into()));
        assert_eq!(events[3], StreamEvent::Finish(FinishReason::Stop));
    }

    #[test]
    fn openai_compatible_reasoning_content_is_the_same_at_every_split() {
        let events = every_split::<openai::Events>(OPENAI_REASONING);
        assert_eq!(events[0], reasoning("Hm\u{e9}", None));
        assert_eq!(events[1], StreamEvent::Delta("4".into()));
    }

    fn call(index: u32, id: Option<&str>, name: Option<&str>, arguments: &str) -> StreamEvent {
        StreamEvent::ToolCall {
            index,
            id: id.map(str::to_string),
            name: name.map(str::to_string),
            arguments: arguments.to_string(),
        }
    }

    #[test]
    fn openai_tool_call_deltas_are_the_same_at_every_split() {
        let events = every_split::<openai::Events>(OPENAI);
        assert_eq!(events[0], call(0, Some("call_1"), Some("get_weather"), ""));
        assert_eq!(events[1], call(0, None, None, "{\"loc"));
        assert_eq!(events[2], call(0, None, None, "ation\":\"SF\"}"));
        assert_eq!(events[3], StreamEvent::Finish(FinishReason::ToolCalls));
        let StreamEvent::Done(usage) = &events[4] else { panic!("{events:?}") };
        assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens), (9, 4, 2));
    }

    #[test]
    fn anthropic_input_json_deltas_are_the_same_at_every_split() {
        let events = every_split::<anthropic::Events>(ANTHROPIC);
        assert_eq!(events[0], StreamEvent::Delta("Let me check".into()));
        assert_eq!(events[1], call(0, Some("toolu_1"), Some("get_weather"), ""));
        assert_eq!(events[2], call(0, None, None, "{\"location\": \"S"));
        assert_eq!(events[3], call(0, None, None, "F\"}"));
        assert_eq!(events[4], StreamEvent::Finish(FinishReason::ToolCalls));
        let StreamEvent::Done(usage) = &events[5] else { panic!("{events:?}") };
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 30));
    }

    #[test]
    fn gemini_partial_answers_are_the_same_at_every_split_and_end_with_the_body() {
        let events = every_split::<gemini::Events>(GEMINI);
        assert_eq!(events[0], StreamEvent::Delta("Hello".into()));
        assert_eq!(events[1], StreamEvent::Delta(" there".into()));
        assert_eq!(events[2], StreamEvent::Finish(FinishReason::Length));
        let StreamEvent::Done(usage) = &events[3] else { panic!("{events:?}") };
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (5, 2));
    }
}
