//! clawgate: a thread-per-core AI gateway. Clients speak the OpenClaw Gateway
//! protocol (REST, SSE, WebSocket, webhooks) or OpenAI's API; clawgate authenticates
//! them, keeps their conversations and forwards each turn to a model provider.
//!
//! Layout: `runtime` starts one monoio worker per core; `http::conn` runs each
//! connection; `router` + `api` serve requests; `session` owns conversations (one
//! owner core per session); `provider` talks to models; `config` is the validated,
//! immutable configuration; `error` is the one error envelope.

pub mod api;
pub mod auth;
pub mod chat;
pub mod clock;
pub mod config;
pub mod error;
pub mod http;
pub mod json;
pub mod log;
pub mod peers;
pub mod provider;
pub mod ratelimit;
pub mod router;
pub mod runtime;
pub mod server;
pub mod session;
pub mod stats;
pub mod turn;
pub mod upstream;
pub mod worker;
pub mod ws;
