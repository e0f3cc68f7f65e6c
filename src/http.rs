//! The HTTP/1.1 codec of the front door, and nothing else: `httparse` request heads
//! with the RFC 9112 framing rules (`request`), a chunked/content-length body decoder
//! (`body`), response heads and bodies (`response`), and per-event SSE framing
//! (`sse`). The connection loop that drives them is `server`. monoio-http's server
//! side lacks head-size limits and flushes SSE late (STACK.md), so only its ideas are
//! reused here.

pub mod body;
pub mod request;
pub mod response;
pub mod sse;

pub use request::{Method, Request};
pub use response::{Body, Response};
