use super::*;
use crate::config::{ChannelConfig, ChannelKind, SessionScope};

fn ch(scope: SessionScope) -> ChannelConfig {
    ChannelConfig { session_scope: scope, ..ChannelConfig::new("tg", ChannelKind::Telegram) }
}

fn msg(chat: &str, user: &str, group: bool) -> Incoming {
    Incoming { key: "1".into(), chat: chat.into(), user: user.into(), group, text: "hi".into(), target: "{}".into() }
}

#[test]
fn sessions_are_per_chat_or_per_user_in_groups() {
    assert_eq!(session_id(&ch(SessionScope::Chat), &msg("-100", "7", true)), "tg:-100");
    assert_eq!(session_id(&ch(SessionScope::User), &msg("-100", "7", true)), "tg:-100:7");
    // A direct chat is one person already.
    assert_eq!(session_id(&ch(SessionScope::User), &msg("7", "7", false)), "tg:7");
}

#[test]
fn ids_that_are_not_session_id_characters_are_hashed() {
    let a = session_id(&ch(SessionScope::Chat), &msg("alice@example.com", "x", false));
    let b = session_id(&ch(SessionScope::Chat), &msg("bob@example.com", "x", false));
    assert!(a.starts_with("tg:h") && a.len() == "tg:h".len() + 16, "{a}");
    assert_ne!(a, b);
    assert_eq!(a, session_id(&ch(SessionScope::Chat), &msg("alice@example.com", "y", false)));
    assert!(crate::session::validate_id(&a).is_ok());
    let long = "x".repeat(200);
    assert!(crate::session::validate_id(&session_id(&ch(SessionScope::Chat), &msg(&long, "x", false))).is_ok());
}
