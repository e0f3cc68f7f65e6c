//! Reading a verified webhook delivery: what each platform sent, in the gateway's terms
//! (`Inbound`). Shapes and sources: `docs/dev/webhook-platforms.md`.
//!
//! | type | a message is | idempotency key | conversation | ignored |
//! |---|---|---|---|---|
//! | `telegram` | an Update with `message.text` | `update_id` | `message.chat.id` | other updates (edits, channel posts, callbacks), non-text messages, `from.is_bot` |
//! | `slack` | `event_callback` whose event is `message` or `app_mention` | `channel:ts` (one turn for a mention delivered as both events; a retry keeps it) | `event.channel` | `bot_id`, any `subtype` (edits, deletions, bot messages) |
//! | `discord` | an application command (type 2) | interaction `id` | `channel_id` | components, modals (acknowledged `{"type":6}`), autocomplete (no choices), bot users |
//! | `whatsapp` | each text message of `entry[].changes[].value.messages[]` | message `id` | `from` | `statuses`, `errors`, non-text types |
//! | `generic` | `{"from","text","messageId"}` | `messageId` | `from` | - |
//!
//! The reply's address (`Incoming::target`) is JSON in the type's own terms, read back by
//! `outbound::build_send`.

use serde::Deserialize;
use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};

use super::{DiscordTarget, GenericTarget, SlackTarget, TelegramTarget, WhatsAppTarget};
use crate::config::{ChannelConfig, ChannelKind};

/// What a verified delivery asks of the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Answer with this JSON body at once and store nothing (Slack's
    /// `url_verification`, Discord's PING and its non-command interactions).
    Answer(String),
    /// Messages to spool before the `200` (a WhatsApp delivery may carry several).
    Messages(Vec<Incoming>),
    /// Platform chatter, acknowledged and ignored (what it was, for the log).
    Ignored(&'static str),
}

/// One chat message to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The platform's id for it, unique per channel (see the table above).
    pub key: String,
    /// The conversation's id on the platform.
    pub chat: String,
    /// The sender's id on the platform.
    pub user: String,
    /// Whether the conversation is a group (several people): `session_scope = "user"`
    /// then keeps one session per sender.
    pub group: bool,
    pub text: String,
    /// Where the reply goes (JSON, per type; see `outbound`).
    pub target: String,
}

/// A delivery that verified but cannot be read: acknowledged with `200` all the same
/// (platforms retry anything else forever), logged and counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable delivery: {0}")]
pub struct Unreadable(pub String);

/// Reads a verified delivery of channel `ch`. The body's nesting was checked
/// (`json::check_depth`) by the caller.
pub fn parse(ch: &ChannelConfig, body: &[u8]) -> Result<Inbound, Unreadable> {
    let value: Value = sonic_rs::from_slice(body).map_err(|e| Unreadable(first_line(&e)))?;
    if !value.is_object() {
        return Err(Unreadable("the body is not a JSON object".into()));
    }
    match ch.kind {
        ChannelKind::Telegram => telegram(&value),
        ChannelKind::Slack => slack(&value),
        ChannelKind::Discord => discord(&value),
        ChannelKind::WhatsApp => whatsapp(&value),
        ChannelKind::Generic => generic(body),
    }
}

fn first_line(e: &sonic_rs::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().trim_end().to_string()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

/// A JSON id that may be a number or a string, as text.
fn id_at(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    if let Some(s) = cur.as_str() {
        return Some(s.to_string());
    }
    cur.as_i64().map(|n| n.to_string()).or_else(|| cur.as_u64().map(|n| n.to_string()))
}

/// The reply address as stored (`Incoming::target`).
fn target(t: &impl serde::Serialize) -> String {
    sonic_rs::to_string(t).unwrap_or_default()
}

fn telegram(v: &Value) -> Result<Inbound, Unreadable> {
    let update_id = id_at(v, &["update_id"]).ok_or_else(|| Unreadable("no `update_id`".into()))?;
    let Some(msg) = v.get("message") else {
        return Ok(Inbound::Ignored("an update other than a new message"));
    };
    let Some(text) = msg.get("text").and_then(|t| t.as_str()) else {
        return Ok(Inbound::Ignored("a message without text"));
    };
    if msg.get("from").and_then(|f| f.get("is_bot")).and_then(|b| b.as_bool()) == Some(true) {
        return Ok(Inbound::Ignored("a message from a bot"));
    }
    let chat = id_at(msg, &["chat", "id"]).ok_or_else(|| Unreadable("no `message.chat.id`".into()))?;
    let user = id_at(msg, &["from", "id"]).unwrap_or_else(|| chat.clone());
    let group = str_at(msg, &["chat", "type"]).is_some_and(|t| t != "private");
    let chat_id = msg
        .get("chat")
        .and_then(|c| c.get("id"))
        .and_then(|id| id.as_i64())
        .ok_or_else(|| Unreadable("`message.chat.id` is not an integer".into()))?;
    let t = TelegramTarget {
        chat_id,
        message_id: msg.get("message_id").and_then(|m| m.as_i64()),
        message_thread_id: msg.get("message_thread_id").and_then(|m| m.as_i64()),
    };
    Ok(Inbound::Messages(vec![Incoming {
        key: update_id,
        chat,
        user,
        group,
        text: text.to_string(),
        target: target(&t),
    }]))
}

fn slack(v: &Value) -> Result<Inbound, Unreadable> {
    match str_at(v, &["type"]) {
        Some("url_verification") => {
            let challenge = str_at(v, &["challenge"]).ok_or_else(|| Unreadable("no `challenge`".into()))?;
            return Ok(Inbound::Answer(format!(r#"{{"challenge":{}}}"#, quote(challenge))));
        }
        Some("event_callback") => {}
        _ => return Ok(Inbound::Ignored("a Slack request other than an event")),
    }
    let ev = v.get("event").ok_or_else(|| Unreadable("no `event`".into()))?;
    match str_at(ev, &["type"]) {
        Some("message" | "app_mention") => {}
        _ => return Ok(Inbound::Ignored("an event other than a message")),
    }
    if ev.get("bot_id").is_some() || ev.get("subtype").is_some() {
        return Ok(Inbound::Ignored("a bot message, an edit or a deletion"));
    }
    let (Some(channel), Some(ts), Some(user)) = (str_at(ev, &["channel"]), str_at(ev, &["ts"]), str_at(ev, &["user"]))
    else {
        return Err(Unreadable("a message without `channel`, `ts` or `user`".into()));
    };
    let text = str_at(ev, &["text"]).unwrap_or_default();
    let group = str_at(ev, &["channel_type"]).is_none_or(|t| t != "im");
    let t = SlackTarget { channel: channel.to_string(), thread_ts: str_at(ev, &["thread_ts"]).map(str::to_string) };
    Ok(Inbound::Messages(vec![Incoming {
        key: format!("{channel}:{ts}"),
        chat: channel.to_string(),
        user: user.to_string(),
        group,
        text: strip_leading_mention(text).to_string(),
        target: target(&t),
    }]))
}

/// `<@U123> hello` -> `hello`: an `app_mention`'s text starts with the bot's mention.
fn strip_leading_mention(text: &str) -> &str {
    let t = text.trim_start();
    match t.strip_prefix("<@").and_then(|rest| rest.split_once('>')) {
        Some((_, rest)) => rest.trim_start(),
        None => text,
    }
}

fn discord(v: &Value) -> Result<Inbound, Unreadable> {
    let kind = v.get("type").and_then(|t| t.as_u64()).ok_or_else(|| Unreadable("no interaction `type`".into()))?;
    match kind {
        1 => return Ok(Inbound::Answer(r#"{"type":1}"#.into())),
        2 => {}
        // Autocomplete: no suggestions; components and modals: a deferred update.
        4 => return Ok(Inbound::Answer(r#"{"type":8,"data":{"choices":[]}}"#.into())),
        _ => return Ok(Inbound::Answer(r#"{"type":6}"#.into())),
    }
    let id = id_at(v, &["id"]).ok_or_else(|| Unreadable("no interaction `id`".into()))?;
    let user = v.get("member").and_then(|m| m.get("user")).or_else(|| v.get("user"));
    if user.and_then(|u| u.get("bot")).and_then(|b| b.as_bool()) == Some(true) {
        return Ok(Inbound::Answer(r#"{"type":6}"#.into()));
    }
    let user_id = user.and_then(|u| id_at(u, &["id"])).unwrap_or_default();
    let chat = id_at(v, &["channel_id"])
        .or_else(|| id_at(v, &["channel", "id"]))
        .ok_or_else(|| Unreadable("no `channel_id`".into()))?;
    let (Some(app), Some(token)) = (id_at(v, &["application_id"]), str_at(v, &["token"])) else {
        return Err(Unreadable("no `application_id` or `token`".into()));
    };
    let data = v.get("data");
    let name = data.and_then(|d| str_at(d, &["name"])).unwrap_or_default();
    let option = data.and_then(|d| d.get("options")).and_then(first_string_option).unwrap_or_default();
    // A command named `new` or `reset` starts a new session, like `/new` typed in chat.
    let text = match name {
        "new" | "reset" => format!("/{name} {option}"),
        _ => option.to_string(),
    };
    let t = DiscordTarget { application_id: app, token: token.to_string() };
    Ok(Inbound::Messages(vec![Incoming {
        key: id,
        chat,
        user: user_id,
        group: v.get("guild_id").is_some(),
        text,
        target: target(&t),
    }]))
}

/// The value of the first STRING option (type 3), looking inside subcommands.
fn first_string_option(options: &Value) -> Option<&str> {
    for o in options.as_array()?.iter() {
        if o.get("type").and_then(|t| t.as_u64()) == Some(3) {
            if let Some(s) = o.get("value").and_then(|v| v.as_str()) {
                return Some(s);
            }
        }
        if let Some(s) = o.get("options").and_then(first_string_option) {
            return Some(s);
        }
    }
    None
}

fn whatsapp(v: &Value) -> Result<Inbound, Unreadable> {
    let mut out = Vec::new();
    let mut saw_messages = false;
    for entry in v.get("entry").and_then(|e| e.as_array()).into_iter().flat_map(|a| a.iter()) {
        for change in entry.get("changes").and_then(|c| c.as_array()).into_iter().flat_map(|a| a.iter()) {
            if str_at(change, &["field"]) != Some("messages") {
                continue;
            }
            let Some(value) = change.get("value") else { continue };
            let phone_number_id = str_at(value, &["metadata", "phone_number_id"]).unwrap_or_default();
            for m in value.get("messages").and_then(|m| m.as_array()).into_iter().flat_map(|a| a.iter()) {
                saw_messages = true;
                if str_at(m, &["type"]) != Some("text") {
                    continue;
                }
                let (Some(id), Some(text)) = (str_at(m, &["id"]), str_at(m, &["text", "body"])) else {
                    continue;
                };
                // Since 2026 a user with a username may come without a phone number:
                // then the business-scoped user id is the address.
                let Some(from) = str_at(m, &["from"]).or_else(|| str_at(m, &["user_id"])) else { continue };
                let t = WhatsAppTarget {
                    phone_number_id: phone_number_id.to_string(),
                    to: from.to_string(),
                    message_id: id.to_string(),
                };
                out.push(Incoming {
                    key: id.to_string(),
                    chat: from.to_string(),
                    user: from.to_string(),
                    group: false,
                    text: text.to_string(),
                    target: target(&t),
                });
            }
        }
    }
    if out.is_empty() {
        return Ok(Inbound::Ignored(if saw_messages {
            "messages other than text"
        } else {
            "delivery statuses or other changes"
        }));
    }
    Ok(Inbound::Messages(out))
}

fn generic(body: &[u8]) -> Result<Inbound, Unreadable> {
    #[derive(Deserialize)]
    struct Body {
        from: Option<String>,
        text: Option<String>,
        #[serde(rename = "messageId")]
        message_id: Option<String>,
    }
    let b: Body = sonic_rs::from_slice(body).map_err(|e| Unreadable(first_line(&e)))?;
    let (Some(from), Some(text), Some(id)) = (b.from, b.text, b.message_id) else {
        return Err(Unreadable("`from`, `text` and `messageId` are all required (strings)".into()));
    };
    if from.is_empty() || id.is_empty() {
        return Err(Unreadable("`from` and `messageId` must not be empty".into()));
    }
    let t = GenericTarget { to: from.clone(), in_reply_to: id.clone() };
    Ok(Inbound::Messages(vec![Incoming {
        key: id,
        chat: from.clone(),
        user: from,
        group: false,
        text,
        target: target(&t),
    }]))
}

fn quote(s: &str) -> String {
    sonic_rs::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A chat command that starts a new session: `/new` or `/reset` at the start of the
/// text (`/new@botname` in Telegram groups), and the rest of the text after it.
pub fn new_session_command(text: &str) -> Option<&str> {
    let t = text.trim_start();
    for cmd in ["/new", "/reset"] {
        let Some(rest) = t.strip_prefix(cmd) else { continue };
        let rest = match rest.strip_prefix('@') {
            Some(mention) => mention.split_once(char::is_whitespace).map_or("", |(_, r)| r),
            None if rest.is_empty() || rest.starts_with(char::is_whitespace) => rest,
            None => continue,
        };
        return Some(rest.trim());
    }
    None
}

#[cfg(test)]
mod tests;
