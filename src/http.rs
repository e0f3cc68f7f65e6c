//! HTTP/1.1 for the gateway's front door: our own connection loop (`conn`) over
//! `httparse` heads (`request`), a chunked/content-length body decoder (`body`),
//! response heads and bodies (`response`), and per-event SSE framing (`sse`).
//! monoio-http's server side lacks head-size limits and flushes SSE late (STACK.md),
//! so only its ideas are reused here.

pub mod body;
pub mod conn;
pub mod request;
pub mod response;
pub mod sse;

pub use request::{Method, Request};
pub use response::{Body, Response};
