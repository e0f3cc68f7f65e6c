//! The chat platforms, independent of HTTP and of the gateway's state (layer 1):
//! verifying a delivery (`verify`), reading it (`inbound`), building the send of a reply
//! and reading the platform's answer (`outbound`), and here the message length limit of
//! each channel type and the split of a long reply into parts that fit
//! (PROTOCOL.md "Channel webhooks": split by the platform's own measure, never inside a
//! surrogate pair or, when avoidable, a code fence; the parts in order add up to the
//! reply).
//!
//! Lengths are counted in UTF-16 code units for every platform: Telegram documents its
//! limit in them, and for Discord, WhatsApp and Slack ("characters", unit unstated) a
//! UTF-16 count is never below the character count, so a part within it is within
//! theirs (`docs/dev/webhook-platforms.md`, section 5).

use crate::config::ChannelKind;

pub mod inbound;
pub mod outbound;
pub mod verify;

pub use inbound::{new_session_command, Inbound, Incoming, Unreadable};
pub use outbound::{
    build_send, classify, DiscordTarget, GenericTarget, SendRequest, SlackTarget, TelegramTarget, Verdict,
    WhatsAppTarget,
};
pub use verify::{verify, Refusal};

/// The longest message a channel type's send API takes, in UTF-16 code units (`None`:
/// no limit, the generic callback gets the reply whole).
pub fn reply_limit(kind: ChannelKind) -> Option<usize> {
    match kind {
        ChannelKind::Telegram => Some(4096),
        ChannelKind::Discord => Some(2000),
        ChannelKind::WhatsApp => Some(4096),
        ChannelKind::Slack => Some(40_000),
        ChannelKind::Generic => None,
    }
}

/// `text` split into parts of at most `limit` UTF-16 code units, in order, whose
/// concatenation is `text` exactly. A cut goes, by preference, after a blank line, a
/// line, or a space outside a code fence (```), then after a line or a space inside
/// one, and only when a part has none of these, mid-word; it is always at a character
/// boundary (so never inside a surrogate pair). An empty text is one empty part.
/// `limit` below 2 is taken as 2 (room for one character of any size).
pub fn split_reply(text: &str, limit: usize) -> Vec<&str> {
    let limit = limit.max(2);
    let fenced = fence_map(text);
    let mut parts = Vec::new();
    let mut start = 0;
    while utf16_len(&text[start..]) > limit {
        let end = start + prefix_within(&text[start..], limit);
        let cut = best_cut(text, start, end, &fenced).unwrap_or(end);
        parts.push(&text[start..cut]);
        start = cut;
    }
    parts.push(&text[start..]);
    parts
}

/// UTF-16 code units of `s`.
pub fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// The byte length of the longest prefix of `s` within `limit` UTF-16 units (at least
/// one character).
fn prefix_within(s: &str, limit: usize) -> usize {
    let mut units = 0;
    for (i, c) in s.char_indices() {
        units += c.len_utf16();
        if units > limit {
            return if i == 0 { c.len_utf8() } else { i };
        }
    }
    s.len()
}

/// For each byte of `text`, whether it lies inside a ``` code fence (a line starting
/// with ``` opens or closes one).
fn fence_map(text: &str) -> Vec<bool> {
    let mut map = vec![false; text.len()];
    let mut inside = false;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let opens_or_closes = line.trim_start().starts_with("```");
        if opens_or_closes {
            inside = !inside;
        }
        // The fence lines themselves count as inside, so a cut never splits them off.
        let mark = inside || opens_or_closes;
        for m in &mut map[pos..pos + line.len()] {
            *m = mark;
        }
        pos += line.len();
    }
    map
}

/// The best cut in `text[start..end]` (a byte index after a separator), or `None`.
fn best_cut(text: &str, start: usize, end: usize, fenced: &[bool]) -> Option<usize> {
    let window = &text[start..end];
    let outside = |i: usize| !fenced.get(i.saturating_sub(1)).copied().unwrap_or(false);
    let after = |pat: &str, need_outside: bool| {
        window
            .match_indices(pat)
            .map(|(i, m)| start + i + m.len())
            .filter(|&cut| cut > start && cut < text.len() && (!need_outside || outside(cut)))
            .last()
    };
    after("\n\n", true)
        .or_else(|| after("\n", true))
        .or_else(|| after(" ", true))
        .or_else(|| after("\n", false))
        .or_else(|| after(" ", false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, limit: usize) -> Vec<&str> {
        let parts = split_reply(text, limit);
        assert_eq!(parts.concat(), text, "the parts add up to the reply");
        for p in &parts {
            assert!(utf16_len(p) <= limit.max(2), "{p:?} over {limit}");
        }
        parts
    }

    #[test]
    fn short_replies_are_one_part_and_long_ones_split_at_words() {
        assert_eq!(check("hello", 10), ["hello"]);
        assert_eq!(check("", 10), [""]);
        assert_eq!(check("one two three four", 9), ["one two ", "three ", "four"]);
        // A word longer than the limit is cut mid-word.
        assert_eq!(check("abcdefghij", 4), ["abcd", "efgh", "ij"]);
    }

    #[test]
    fn lines_and_paragraphs_are_preferred_cut_points() {
        let text = "first paragraph line\n\nsecond one here\nthird";
        assert_eq!(check(text, 30), ["first paragraph line\n\n", "second one here\nthird"]);
    }

    #[test]
    fn utf16_units_are_counted_and_no_surrogate_pair_is_split() {
        // Each emoji is 2 UTF-16 units (a surrogate pair), 4 UTF-8 bytes.
        let text = "😀😀😀😀😀";
        let parts = check(text, 4);
        assert_eq!(parts, ["😀😀", "😀😀", "😀"]);
        assert_eq!(utf16_len("a😀"), 3);
        // A limit of one unit still makes progress with whole characters.
        assert_eq!(check("😀x", 1), ["😀", "x"]);
    }

    #[test]
    fn code_fences_are_not_split_when_a_cut_outside_fits() {
        let text = "intro text\n```\nlet a = 1;\nlet b = 2;\n```\nafter";
        let parts = check(text, 40);
        assert_eq!(parts[0], "intro text\n");
        assert!(parts[1].starts_with("```") && parts[1].contains("let b = 2;\n```"), "{parts:?}");
        // A fence longer than the limit must be split: at a line inside it.
        let long = format!("```\n{}```\n", "line of code\n".repeat(10));
        let parts = check(&long, 40);
        assert!(parts.iter().all(|p| p.ends_with('\n')), "{parts:?}");
    }

    #[test]
    fn any_text_splits_into_parts_that_fit_and_add_up() {
        let mut rng = fastrand::Rng::with_seed(11);
        let alphabet: Vec<char> = "ab cd\n`é😀".chars().collect();
        for _ in 0..500 {
            let n = rng.usize(0..300);
            let text: String = (0..n).map(|_| alphabet[rng.usize(..alphabet.len())]).collect();
            check(&text, rng.usize(1..40));
        }
    }

    #[test]
    fn each_platform_has_its_documented_limit() {
        assert_eq!(reply_limit(ChannelKind::Telegram), Some(4096));
        assert_eq!(reply_limit(ChannelKind::Discord), Some(2000));
        assert_eq!(reply_limit(ChannelKind::WhatsApp), Some(4096));
        assert_eq!(reply_limit(ChannelKind::Slack), Some(40_000));
        assert_eq!(reply_limit(ChannelKind::Generic), None);
    }
}
