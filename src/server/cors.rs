//! CORS (PROTOCOL.md "Browsers (CORS)"), for the origins of `[server.cors]
//! allow_origins`. Three hooks on the request path, each a no-op without
//! `[server.cors]` and, for a request that carries no `Origin` (every client but a
//! browser), a no-op that neither allocates nor scans the headers (the parse pass
//! noted where `Origin` is, `Request::origin`):
//!
//! - `preflight` (first in `dispatch`, before routing and auth): an `OPTIONS` with
//!   `Origin` and `Access-Control-Request-Method` on `/api/*` or `/v1/*` from a listed
//!   origin is answered `204` with the methods, the headers and `Max-Age`. Any other
//!   `OPTIONS` goes on to the router (405 with `Allow`, as without CORS).
//! - `check_ws_origin` (for `/ws`, before auth and the upgrade): an upgrade whose
//!   `Origin` is not listed gets `403 FORBIDDEN` instead of a `101`; an upgrade
//!   without `Origin` (not a browser) is not refused.
//! - `decorate` (in the connection loop, on every response but a `101`, errors and
//!   streams included): `Vary: Origin`; for a listed origin, the origin echoed in
//!   `Access-Control-Allow-Origin` and `Access-Control-Expose-Headers` naming the
//!   headers the contract gives (`X-Request-Id`, `X-RateLimit-*`, `Retry-After`,
//!   `X-Session-Id`, `X-Clawgate-Dropped-Params`). A not-listed origin gets no
//!   `Access-Control-*` header.
//!
//! Allowed request headers (decided here): a fixed list, what the gateway's own
//! clients and the official SDKs send (`ALLOW_HEADERS`), plus each `x-stainless-*`
//! name the preflight asks for (the openai and anthropic SDKs send a changing set:
//! `x-stainless-os`, `-lang`, `-retry-count`, `-timeout`, ...), echoed. Any other
//! requested header is left out, so the browser refuses the request: the gateway
//! does not let pages send arbitrary headers. No credentials mode: `Authorization`
//! travels as a header, never as a cookie, so `Access-Control-Allow-Credentials` is
//! never sent, and `"*"` in the config echoes the origin rather than sending `*`.

use std::borrow::Cow;

use crate::config::ServerConfig;
use crate::error::{ApiError, ErrorCode};
use crate::http::{Body, Method, Request, Response};

/// The methods of the routes under `/api/*` and `/v1/*`.
pub const ALLOW_METHODS: &str = "GET, POST, OPTIONS";

/// The request headers a page may send (plus requested `x-stainless-*` names).
pub const ALLOW_HEADERS: &str = "Authorization, Content-Type, X-Session-Id, Last-Event-ID, X-Request-Id, x-api-key, \
                                 anthropic-version, anthropic-beta, anthropic-dangerous-direct-browser-access";

/// The response headers a page may read besides the CORS-safelisted ones.
pub const EXPOSE_HEADERS: &str = "X-Request-Id, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, \
                                  Retry-After, X-Session-Id, X-Clawgate-Dropped-Params";

/// How long a browser may cache a preflight answer, in seconds (Chromium's cap).
pub const MAX_AGE_SECS: &str = "7200";

/// The prefix of the SDKs' telemetry headers, echoed when a preflight asks for them.
const STAINLESS: &[u8] = b"x-stainless-";

/// Most `x-stainless-*` names echoed from one preflight (the SDKs send about ten).
const MAX_ECHOED: usize = 32;

/// The `204` to a preflight from a listed origin on `/api/*` or `/v1/*`; `None` for
/// any other request (see the module doc). `decorate` adds the origin afterwards.
pub fn preflight(cfg: &ServerConfig, req: &Request) -> Option<Response> {
    if req.method != Method::Options {
        return None;
    }
    let cors = cfg.cors.as_ref()?;
    let origin = req.origin()?;
    req.header_bytes("access-control-request-method")?;
    let path = req.path();
    if !(path.starts_with("/api/") || path.starts_with("/v1/")) || !cors.allows(origin) {
        return None;
    }
    let mut resp = Response::new(204, Body::Empty);
    resp.push_header("access-control-allow-methods", ALLOW_METHODS);
    resp.push_header("access-control-allow-headers", allow_headers(req.header_bytes("access-control-request-headers")));
    resp.push_header("access-control-max-age", MAX_AGE_SECS);
    Some(resp)
}

/// `ALLOW_HEADERS` plus the `x-stainless-*` names of a preflight's
/// `Access-Control-Request-Headers`.
fn allow_headers(requested: Option<&[u8]>) -> Cow<'static, str> {
    let mut out = Cow::Borrowed(ALLOW_HEADERS);
    let names = requested.unwrap_or_default().split(|b| *b == b',').map(<[u8]>::trim_ascii);
    for name in names
        .filter(|n| n.len() > STAINLESS.len() && n[..STAINLESS.len()].eq_ignore_ascii_case(STAINLESS))
        .filter(|n| n.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-'))
        .take(MAX_ECHOED)
    {
        let owned = out.to_mut();
        owned.push_str(", ");
        // Checked ASCII above.
        owned.push_str(std::str::from_utf8(name).unwrap_or_default());
    }
    out
}

/// Refuses a WebSocket upgrade from a browser page of a not-listed origin (`403`),
/// when `[server.cors]` is set. No `Origin`: not a browser, not refused.
pub fn check_ws_origin(cfg: &ServerConfig, req: &Request) -> Result<(), ApiError> {
    match (cfg.cors.as_ref(), req.origin()) {
        (Some(cors), Some(origin)) if !cors.allows(origin) => Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "origin {} may not open /ws: it is not in server.cors.allow_origins",
                String::from_utf8_lossy(origin)
            ),
        )),
        _ => Ok(()),
    }
}

/// Adds the CORS headers of a response to a request with `Origin` (see the module
/// doc). Without `Origin` or `[server.cors]`: nothing, no allocation.
pub fn decorate(cfg: &ServerConfig, req: &Request, resp: &mut Response) {
    let Some(origin) = req.origin() else { return };
    let Some(cors) = cfg.cors.as_ref() else { return };
    if matches!(resp.body, Body::Upgrade(_)) {
        return;
    }
    resp.push_header("vary", "Origin");
    if !cors.allows(origin) {
        return;
    }
    // httparse keeps header values free of CR and LF; a non-UTF-8 origin never matched.
    let Ok(origin) = std::str::from_utf8(origin) else { return };
    resp.push_header("access-control-allow-origin", origin.to_owned());
    resp.push_header("access-control-expose-headers", EXPOSE_HEADERS);
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::config::CorsConfig;

    fn cfg(origins: &[&str]) -> ServerConfig {
        ServerConfig {
            cors: Some(CorsConfig {
                allow_origins: origins.iter().map(|o| o.to_string()).collect(),
                any_origin: false,
            }),
            ..ServerConfig::default()
        }
    }

    fn req(raw: &str) -> Request {
        Request::from_head(Bytes::copy_from_slice(raw.as_bytes()), 64).unwrap()
    }

    fn header<'r>(resp: &'r Response, name: &str) -> Option<&'r str> {
        resp.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_ref())
    }

    const PREFLIGHT: &str = "OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: g\r\nOrigin: http://app.example\r\n\
                             Access-Control-Request-Method: POST\r\n\
                             Access-Control-Request-Headers: authorization, x-stainless-os, X-Stainless-Retry-Count, \
                             x-other\r\n\r\n";

    #[test]
    fn a_listed_preflight_is_answered_with_the_stainless_names_echoed() {
        let c = cfg(&["http://app.example"]);
        let r = req(PREFLIGHT);
        let mut resp = preflight(&c, &r).unwrap();
        decorate(&c, &r, &mut resp);
        assert_eq!(resp.status, 204);
        assert_eq!(header(&resp, "access-control-allow-origin"), Some("http://app.example"));
        assert_eq!(header(&resp, "access-control-allow-methods"), Some(ALLOW_METHODS));
        let allowed = header(&resp, "access-control-allow-headers").unwrap();
        assert!(allowed.starts_with(ALLOW_HEADERS) && allowed.ends_with(", x-stainless-os, X-Stainless-Retry-Count"));
        assert!(!allowed.contains("x-other"));
        assert_eq!(header(&resp, "vary"), Some("Origin"));
        assert_eq!(header(&resp, "access-control-max-age"), Some(MAX_AGE_SECS));
    }

    #[test]
    fn other_requests_are_no_preflight() {
        let c = cfg(&["http://app.example"]);
        assert!(preflight(&c, &req(&PREFLIGHT.replace("http://app.example", "http://evil.example"))).is_none());
        assert!(preflight(&c, &req(&PREFLIGHT.replace("/v1/chat/completions", "/health"))).is_none());
        assert!(preflight(&c, &req(&PREFLIGHT.replace("Access-Control-Request-Method", "X-Nothing"))).is_none());
        assert!(preflight(&ServerConfig::default(), &req(PREFLIGHT)).is_none());
        assert!(preflight(&c, &req("OPTIONS /v1/models HTTP/1.1\r\nHost: g\r\n\r\n")).is_none());
    }

    #[test]
    fn only_listed_origins_get_cors_headers_and_no_origin_gets_nothing() {
        let c = cfg(&["http://app.example"]);
        let mut resp = Response::json(401, &b"{}"[..]);
        decorate(&c, &req("GET /v1/models HTTP/1.1\r\nHost: g\r\nOrigin: http://evil.example\r\n\r\n"), &mut resp);
        assert!(header(&resp, "access-control-allow-origin").is_none());
        assert_eq!(header(&resp, "vary"), Some("Origin"));
        let mut resp = Response::json(200, &b"{}"[..]);
        let before = resp.headers.len();
        decorate(&c, &req("GET /v1/models HTTP/1.1\r\nHost: g\r\n\r\n"), &mut resp);
        assert_eq!(resp.headers.len(), before);
        let mut resp = Response::json(401, &b"{}"[..]);
        decorate(&c, &req("GET /v1/models HTTP/1.1\r\nHost: g\r\nOrigin: http://app.example\r\n\r\n"), &mut resp);
        assert_eq!(header(&resp, "access-control-allow-origin"), Some("http://app.example"));
        assert_eq!(header(&resp, "access-control-expose-headers"), Some(EXPOSE_HEADERS));
    }

    #[test]
    fn websocket_upgrades_from_unlisted_origins_are_refused() {
        let c = cfg(&["http://app.example"]);
        let ws = |origin: &str| req(&format!("GET /ws HTTP/1.1\r\nHost: g\r\n{origin}\r\n"));
        assert_eq!(check_ws_origin(&c, &ws("Origin: http://evil.example\r\n")).unwrap_err().status(), 403);
        assert!(check_ws_origin(&c, &ws("Origin: http://app.example\r\n")).is_ok());
        assert!(check_ws_origin(&c, &ws("")).is_ok());
        assert!(check_ws_origin(&ServerConfig::default(), &ws("Origin: http://evil.example\r\n")).is_ok());
    }
}
