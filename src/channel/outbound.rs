//! Sending a reply part through the platform's send API, and reading what it answered
//! (`docs/dev/webhook-platforms.md` gives each shape and its source):
//!
//! | type | request | accepted when |
//! |---|---|---|
//! | `telegram` | `POST {api_base}/bot{bot_token}/sendMessage` `{"chat_id","text","message_thread_id"?,"reply_parameters"?}` | 2xx and `"ok": true` |
//! | `slack` | `POST {api_base}/chat.postMessage`, `Authorization: Bearer {bot_token}`, `{"channel","text","thread_ts"?}` | 2xx and `"ok": true` (Slack reports errors with 200) |
//! | `discord` | part 0: `PATCH {api_base}/webhooks/{application_id}/{token}/messages/@original` `{"content"}`; later parts: `POST {api_base}/webhooks/{application_id}/{token}` | 2xx |
//! | `whatsapp` | `POST {api_base}/{phone_number_id}/messages`, `Authorization: Bearer {bot_token}`, `{"messaging_product":"whatsapp","recipient_type":"individual","to","type":"text","text":{"preview_url":false,"body"}}` | 2xx |
//! | `generic` | `POST {callback_url}` `{"to","text","inReplyTo"}`, `X-Clawgate-Signature: sha256=<hex HMAC-SHA256 of the body with the channel secret>` | 2xx |
//!
//! What is retried (`Verdict::Retry`): 429 (after the platform's `Retry-After` header,
//! Telegram's `parameters.retry_after` or Discord's `retry_after`, in that order), 408,
//! 5xx, Slack's `ratelimited`/`internal_error`/`fatal_error`/`service_unavailable`/
//! `request_timeout`, WhatsApp's throttling codes (130429, 131056, 4, 80007, 131048,
//! 133016), and every transport failure. Anything else is permanent (`Verdict::Dead`):
//! a bad token, an unknown chat, an expired Discord interaction token.

use serde::{Deserialize, Serialize};
use sonic_rs::{JsonValueTrait, Value};

use super::verify::hmac_sha256_hex;
use crate::config::{ChannelConfig, ChannelKind};

/// Telegram reply address: the chat, the message answered, its forum topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelegramTarget {
    pub chat_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_thread_id: Option<i64>,
}

/// Slack reply address: the channel, and the thread when the message was in one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlackTarget {
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_ts: Option<String>,
}

/// Discord reply address: the interaction's application and token (valid 15 minutes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscordTarget {
    pub application_id: String,
    pub token: String,
}

/// WhatsApp reply address: the business number that received the message, the sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhatsAppTarget {
    pub phone_number_id: String,
    pub to: String,
    pub message_id: String,
}

/// Generic reply address: the sender and the message answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenericTarget {
    pub to: String,
    pub in_reply_to: String,
}

/// One HTTP call to a platform: `base` (the channel's `api_base`, or the generic
/// `callback_url`) + `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRequest {
    pub method: &'static str,
    pub base: String,
    pub path: String,
    /// Extra headers (lower-case names); `Content-Type: application/json` is implied.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// What an empty model reply is sent as (every platform refuses an empty message).
pub const EMPTY_REPLY: &str = "(no reply)";

/// The call that sends part `part` (0, 1, ...) of a reply, `text`, to `target` (the
/// `Incoming::target` JSON of channel `ch`'s type). Errors: a target that does not
/// read as the type's address, or a missing `bot_token`/`callback_url` (permanent).
pub fn build_send(ch: &ChannelConfig, target: &str, text: &str, part: u32) -> Result<SendRequest, String> {
    let text = if text.trim().is_empty() { EMPTY_REPLY } else { text };
    let bad_target = |e: sonic_rs::Error| format!("unreadable reply address {target:?}: {e}");
    let token = || {
        ch.bot_token
            .as_ref()
            .map(|t| t.expose().to_string())
            .ok_or_else(|| format!("channel {} has no bot_token to send replies with", ch.name))
    };
    let req = match ch.kind {
        ChannelKind::Telegram => {
            let t: TelegramTarget = sonic_rs::from_str(target).map_err(bad_target)?;
            #[derive(Serialize)]
            struct ReplyParameters {
                message_id: i64,
                allow_sending_without_reply: bool,
            }
            #[derive(Serialize)]
            struct Body<'a> {
                chat_id: i64,
                text: &'a str,
                #[serde(skip_serializing_if = "Option::is_none")]
                message_thread_id: Option<i64>,
                #[serde(skip_serializing_if = "Option::is_none")]
                reply_parameters: Option<ReplyParameters>,
            }
            // The first part answers the user's message; the rest follow it.
            let reply_parameters = t
                .message_id
                .filter(|_| part == 0)
                .map(|message_id| ReplyParameters { message_id, allow_sending_without_reply: true });
            let body = Body { chat_id: t.chat_id, text, message_thread_id: t.message_thread_id, reply_parameters };
            SendRequest {
                method: "POST",
                base: ch.api_base.clone(),
                path: format!("/bot{}/sendMessage", token()?),
                headers: Vec::new(),
                body: json(&body),
            }
        }
        ChannelKind::Slack => {
            let t: SlackTarget = sonic_rs::from_str(target).map_err(bad_target)?;
            #[derive(Serialize)]
            struct Body<'a> {
                channel: &'a str,
                text: &'a str,
                #[serde(skip_serializing_if = "Option::is_none")]
                thread_ts: Option<&'a str>,
            }
            let body = Body { channel: &t.channel, text, thread_ts: t.thread_ts.as_deref() };
            SendRequest {
                method: "POST",
                base: ch.api_base.clone(),
                path: "/chat.postMessage".into(),
                headers: vec![("authorization", format!("Bearer {}", token()?))],
                body: json(&body),
            }
        }
        ChannelKind::Discord => {
            let t: DiscordTarget = sonic_rs::from_str(target).map_err(bad_target)?;
            #[derive(Serialize)]
            struct Body<'a> {
                content: &'a str,
            }
            let (method, path) = if part == 0 {
                ("PATCH", format!("/webhooks/{}/{}/messages/@original", t.application_id, t.token))
            } else {
                ("POST", format!("/webhooks/{}/{}", t.application_id, t.token))
            };
            SendRequest {
                method,
                base: ch.api_base.clone(),
                path,
                headers: Vec::new(),
                body: json(&Body { content: text }),
            }
        }
        ChannelKind::WhatsApp => {
            let t: WhatsAppTarget = sonic_rs::from_str(target).map_err(bad_target)?;
            #[derive(Serialize)]
            struct Text<'a> {
                preview_url: bool,
                body: &'a str,
            }
            #[derive(Serialize)]
            struct Body<'a> {
                messaging_product: &'static str,
                recipient_type: &'static str,
                to: &'a str,
                #[serde(rename = "type")]
                kind: &'static str,
                text: Text<'a>,
            }
            let body = Body {
                messaging_product: "whatsapp",
                recipient_type: "individual",
                to: &t.to,
                kind: "text",
                text: Text { preview_url: false, body: text },
            };
            SendRequest {
                method: "POST",
                base: ch.api_base.clone(),
                path: format!("/{}/messages", t.phone_number_id),
                headers: vec![("authorization", format!("Bearer {}", token()?))],
                body: json(&body),
            }
        }
        ChannelKind::Generic => {
            let t: GenericTarget = sonic_rs::from_str(target).map_err(bad_target)?;
            #[derive(Serialize)]
            #[serde(rename_all = "camelCase")]
            struct Body<'a> {
                to: &'a str,
                text: &'a str,
                in_reply_to: &'a str,
            }
            let body = json(&Body { to: &t.to, text, in_reply_to: &t.in_reply_to });
            let url = ch.callback_url.clone().ok_or_else(|| format!("channel {} has no callback_url", ch.name))?;
            let secret = ch.secret.as_ref().map(|s| s.expose().as_bytes()).unwrap_or_default();
            let signature = format!("sha256={}", hmac_sha256_hex(secret, &body));
            SendRequest {
                method: "POST",
                base: url,
                path: String::new(),
                headers: vec![("x-clawgate-signature", signature)],
                body,
            }
        }
    };
    Ok(req)
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    sonic_rs::to_vec(v).unwrap_or_default()
}

/// What a platform's answer to a send means.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Accepted: the part leaves the outbox.
    Sent,
    /// Try again; `after`: the platform said how long to wait (seconds), else back off.
    Retry { after: Option<f64>, error: String },
    /// Never going to work: dead-lettered.
    Dead { error: String },
}

/// WhatsApp (Graph API) error codes that mean "too fast, try later".
const WHATSAPP_THROTTLED: &[i64] = &[130429, 131056, 4, 80007, 131048, 133016];
/// Slack `error`s worth retrying (the others are the request's own fault).
const SLACK_RETRYABLE: &[&str] =
    &["ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"];

/// Reads a platform's answer: `status`, its `Retry-After` header (seconds) if any, and
/// the body (the first bytes of it are enough).
pub fn classify(kind: ChannelKind, status: u16, retry_after: Option<f64>, body: &[u8]) -> Verdict {
    let json: Option<Value> = sonic_rs::from_slice(body).ok();
    let field = |path: &[&str]| -> Option<&Value> {
        let mut cur = json.as_ref()?;
        for p in path {
            cur = cur.get(*p)?;
        }
        Some(cur)
    };
    let text_of = |path: &[&str]| field(path).and_then(|v| v.as_str()).map(str::to_string);
    let excerpt = || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    // The platform's own words for the failure.
    let error = match kind {
        ChannelKind::Telegram => text_of(&["description"]),
        ChannelKind::Slack => text_of(&["error"]),
        ChannelKind::Discord => text_of(&["message"])
            .map(|m| field(&["code"]).and_then(|c| c.as_i64()).map_or(m.clone(), |c| format!("{m} (code {c})"))),
        ChannelKind::WhatsApp => text_of(&["error", "message"]),
        ChannelKind::Generic => None,
    }
    .map_or_else(|| format!("HTTP {status}: {}", excerpt()), |e| format!("HTTP {status}: {e}"));
    let ok_flag = field(&["ok"]).and_then(|v| v.as_bool());
    match status {
        200..=299 => match kind {
            ChannelKind::Slack if ok_flag != Some(true) => {
                let code = text_of(&["error"]).unwrap_or_default();
                if SLACK_RETRYABLE.contains(&code.as_str()) {
                    Verdict::Retry { after: retry_after, error }
                } else {
                    Verdict::Dead { error }
                }
            }
            ChannelKind::Telegram if ok_flag == Some(false) => Verdict::Dead { error },
            _ => Verdict::Sent,
        },
        429 => {
            let after = retry_after
                .or_else(|| field(&["parameters", "retry_after"]).and_then(|v| v.as_f64()))
                .or_else(|| field(&["retry_after"]).and_then(|v| v.as_f64()));
            Verdict::Retry { after, error }
        }
        408 | 500..=599 => Verdict::Retry { after: retry_after, error },
        _ if kind == ChannelKind::WhatsApp => {
            let code = field(&["error", "code"]).and_then(|c| c.as_i64());
            if code.is_some_and(|c| WHATSAPP_THROTTLED.contains(&c)) {
                Verdict::Retry { after: retry_after, error }
            } else {
                Verdict::Dead { error }
            }
        }
        _ => Verdict::Dead { error },
    }
}

#[cfg(test)]
mod tests;
