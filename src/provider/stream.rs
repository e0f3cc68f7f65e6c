//! The loop every streaming HTTP adapter shares: read the next body piece, feed the
//! incremental SSE parser, hand each complete event to the adapter's `Events` (which
//! turns its wire format into deltas and usage), and return the queued deltas one by
//! one. A body that ends before the adapter saw its end-of-stream event is an error
//! (a cut stream must not look like a short answer).

use std::collections::VecDeque;

use crate::provider::{ProviderError, StreamEvent};
use crate::upstream::sse;
use crate::upstream::BodyReader;

/// An adapter's reading of its provider's stream events.
pub trait Events {
    /// How the adapter names its end-of-stream event, for the "ended early" error.
    const END: &'static str;

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
pub struct SseStream<E> {
    /// `None` once the adapter saw the end: the rest of the body (the closing chunk)
    /// is drained by a small task so the connection goes back to the pool.
    body: Option<BodyReader>,
    parser: sse::Parser,
    events: Vec<sse::Event>,
    pending: VecDeque<StreamEvent>,
    state: E,
    finished: bool,
}

impl<E: Events> SseStream<E> {
    pub fn new(body: BodyReader, state: E) -> Self {
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
                return Err(ProviderError::upstream(format!("provider stream ended before {}", E::END)));
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
