//! Verifying that a webhook delivery comes from its platform, on the raw body before
//! anything parses it (PROTOCOL.md "Channel webhooks"; the platforms' formats and
//! sources are in `docs/dev/webhook-platforms.md`):
//!
//! | type | what is checked |
//! |---|---|
//! | `telegram` | `X-Telegram-Bot-Api-Secret-Token` equals `secret` |
//! | `slack` | `X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:" + ts + ":" + body)>`, `X-Slack-Request-Timestamp` within 300 s of now |
//! | `discord` | `X-Signature-Ed25519`: Ed25519 over `X-Signature-Timestamp` + body with `public_key`, the timestamp within 300 s |
//! | `whatsapp` | `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>` |
//! | `generic` | `Authorization: Bearer <secret>` |
//!
//! Every comparison of a secret or a MAC is constant-time (`subtle`, `hmac`'s
//! `verify_slice`); HMAC-SHA256 is `hmac` + `sha2`, Ed25519 is `ed25519-dalek`.

use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::{ChannelConfig, ChannelKind};

/// How far a signed timestamp may be from now (Slack's documented window, also used
/// for Discord's), in seconds.
pub const MAX_SKEW_SECS: u64 = 300;

/// Why a delivery was refused: answered `401 UNAUTHORIZED`, nothing stored. The
/// message names the header, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("{0} does not match")]
    Mismatch(&'static str),
    #[error("{0} is malformed")]
    Malformed(&'static str),
    #[error("the signed timestamp is {0} s away from now (at most {MAX_SKEW_SECS} s)")]
    Stale(u64),
    #[error("the channel has no verification key configured")]
    NotConfigured,
}

/// Checks that `body`, with request headers read through `header` (lower-case name ->
/// raw value), was sent by channel `ch`'s platform. `now_unix`: the current time in
/// seconds (a parameter, so tests can use the platforms' published examples).
pub fn verify<'h>(
    ch: &ChannelConfig,
    header: &dyn Fn(&str) -> Option<&'h [u8]>,
    body: &[u8],
    now_unix: u64,
) -> Result<(), Refusal> {
    let secret = ch.secret.as_ref().map(|s| s.expose().as_bytes());
    match ch.kind {
        ChannelKind::Telegram => {
            let name = "X-Telegram-Bot-Api-Secret-Token";
            let given = header("x-telegram-bot-api-secret-token").ok_or(Refusal::Missing(name))?;
            equal(given, secret.ok_or(Refusal::NotConfigured)?, name)
        }
        ChannelKind::Generic => {
            let name = "Authorization";
            let given = header("authorization").ok_or(Refusal::Missing(name))?;
            let token = strip_prefix_ci(given, b"bearer ").ok_or(Refusal::Malformed(name))?;
            equal(trim(token), secret.ok_or(Refusal::NotConfigured)?, name)
        }
        ChannelKind::Slack => {
            let ts_name = "X-Slack-Request-Timestamp";
            let ts = header("x-slack-request-timestamp").ok_or(Refusal::Missing(ts_name))?;
            check_fresh(ts, now_unix, ts_name)?;
            let name = "X-Slack-Signature";
            let sig = header("x-slack-signature").ok_or(Refusal::Missing(name))?;
            let sig = sig.strip_prefix(b"v0=").ok_or(Refusal::Malformed(name))?;
            let sig = decode_hex(sig).ok_or(Refusal::Malformed(name))?;
            let mut mac = hmac_sha256(secret.ok_or(Refusal::NotConfigured)?);
            mac.update(b"v0:");
            mac.update(ts);
            mac.update(b":");
            mac.update(body);
            mac.verify_slice(&sig).map_err(|_| Refusal::Mismatch(name))
        }
        ChannelKind::WhatsApp => {
            let name = "X-Hub-Signature-256";
            let sig = header("x-hub-signature-256").ok_or(Refusal::Missing(name))?;
            let sig = sig.strip_prefix(b"sha256=").ok_or(Refusal::Malformed(name))?;
            let sig = decode_hex(sig).ok_or(Refusal::Malformed(name))?;
            let mut mac = hmac_sha256(secret.ok_or(Refusal::NotConfigured)?);
            mac.update(body);
            mac.verify_slice(&sig).map_err(|_| Refusal::Mismatch(name))
        }
        ChannelKind::Discord => {
            let ts_name = "X-Signature-Timestamp";
            let ts = header("x-signature-timestamp").ok_or(Refusal::Missing(ts_name))?;
            check_fresh(ts, now_unix, ts_name)?;
            let name = "X-Signature-Ed25519";
            let sig = header("x-signature-ed25519").ok_or(Refusal::Missing(name))?;
            let sig: [u8; 64] = decode_hex(sig).and_then(|v| v.try_into().ok()).ok_or(Refusal::Malformed(name))?;
            let key = ch.public_key.as_ref().ok_or(Refusal::NotConfigured)?;
            let key = VerifyingKey::from_bytes(key).map_err(|_| Refusal::NotConfigured)?;
            let mut message = Vec::with_capacity(ts.len() + body.len());
            message.extend_from_slice(ts);
            message.extend_from_slice(body);
            key.verify_strict(&message, &Signature::from_bytes(&sig)).map_err(|_| Refusal::Mismatch(name))
        }
    }
}

/// HMAC-SHA256 of `body` keyed with `key`, as lower-case hex: the generic channel's
/// `X-Clawgate-Signature: sha256=<this>` on the replies it POSTs.
pub fn hmac_sha256_hex(key: &[u8], body: &[u8]) -> String {
    let mut mac = hmac_sha256(key);
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length (RFC 2104): `new_from_slice` cannot fail for it.
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()))
}

fn equal(given: &[u8], expected: &[u8], name: &'static str) -> Result<(), Refusal> {
    if bool::from(given.ct_eq(expected)) {
        Ok(())
    } else {
        Err(Refusal::Mismatch(name))
    }
}

/// A unix-seconds timestamp header within `MAX_SKEW_SECS` of now, either side.
fn check_fresh(ts: &[u8], now_unix: u64, name: &'static str) -> Result<(), Refusal> {
    let ts: u64 = std::str::from_utf8(ts).ok().and_then(|s| s.trim().parse().ok()).ok_or(Refusal::Malformed(name))?;
    let skew = ts.abs_diff(now_unix);
    if skew > MAX_SKEW_SECS {
        return Err(Refusal::Stale(skew));
    }
    Ok(())
}

fn strip_prefix_ci<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)).then(|| &s[prefix.len()..])
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

fn decode_hex(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.chunks(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn channel(kind: ChannelKind, secret: Option<&str>, public_key: Option<[u8; 32]>) -> ChannelConfig {
        ChannelConfig { secret: secret.map(|s| Secret::new(s.into())), public_key, ..ChannelConfig::new("c", kind) }
    }

    fn headers<'a>(list: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a [u8]> + 'a {
        move |name| list.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_bytes())
    }

    /// Slack's own example (its "Verifying requests" page, also in python-slack-sdk's
    /// tests), with "now" frozen at the example's timestamp.
    #[test]
    fn slack_accepts_its_published_example_and_refuses_changes_and_stale_ones() {
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let ch = channel(ChannelKind::Slack, Some("8f742231b10e8888abcd99yyyzzz85a5"), None);
        let h = [
            ("x-slack-request-timestamp", "1531420618"),
            ("x-slack-signature", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"),
        ];
        assert_eq!(verify(&ch, &headers(&h), body, 1531420618), Ok(()));
        assert_eq!(verify(&ch, &headers(&h), body, 1531420618 + 300), Ok(()));
        assert_eq!(verify(&ch, &headers(&h), body, 1531420618 + 301), Err(Refusal::Stale(301)));
        assert_eq!(verify(&ch, &headers(&h), body, 1531420618 - 301), Err(Refusal::Stale(301)));
        let mut changed = body.to_vec();
        changed[6] = b'X';
        assert_eq!(verify(&ch, &headers(&h), &changed, 1531420618), Err(Refusal::Mismatch("X-Slack-Signature")));
        assert_eq!(verify(&ch, &headers(&h[..1]), body, 1531420618), Err(Refusal::Missing("X-Slack-Signature")));
        let bad = [h[0], ("x-slack-signature", "v1=00")];
        assert_eq!(verify(&ch, &headers(&bad), body, 1531420618), Err(Refusal::Malformed("X-Slack-Signature")));
    }

    /// RFC 8032 section 7.1 TEST 1's key; the signature was made with Python's
    /// `cryptography` (docs/dev/webhook-platforms.md, section 6).
    #[test]
    fn discord_accepts_a_good_ed25519_signature_only() {
        let key = decode_hex(b"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a").unwrap();
        let ch = channel(ChannelKind::Discord, None, Some(key.try_into().unwrap()));
        let sig = "1695961a47c91a1ec033b819b7e87e3dbc583dd0cee6d1fd0216f58ac87b6228ae531ddbf91fb7bc28d7edf7f08604da16f54624f38a6bc0614e4dc13cd47f0f";
        let h = [("x-signature-timestamp", "1700000000"), ("x-signature-ed25519", sig)];
        assert_eq!(verify(&ch, &headers(&h), br#"{"type":1}"#, 1700000000), Ok(()));
        assert_eq!(
            verify(&ch, &headers(&h), br#"{"type":2}"#, 1700000000),
            Err(Refusal::Mismatch("X-Signature-Ed25519"))
        );
        assert_eq!(verify(&ch, &headers(&h), br#"{"type":1}"#, 1700000000 + 3600), Err(Refusal::Stale(3600)));
        let short = [h[0], ("x-signature-ed25519", "abcd")];
        assert_eq!(
            verify(&ch, &headers(&short), br#"{"type":1}"#, 1700000000),
            Err(Refusal::Malformed("X-Signature-Ed25519"))
        );
    }

    #[test]
    fn whatsapp_checks_the_hub_signature_of_the_raw_body() {
        let ch = channel(ChannelKind::WhatsApp, Some("app_secret"), None);
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let good = [("x-hub-signature-256", "sha256=c236c758c9b2bd40b388a550eeca09eaca72384dd0aa5e7c31d19cddac5bba46")];
        assert_eq!(verify(&ch, &headers(&good), body, 0), Ok(()));
        assert_eq!(verify(&ch, &headers(&good), b"{}", 0), Err(Refusal::Mismatch("X-Hub-Signature-256")));
        assert_eq!(verify(&ch, &headers(&[]), body, 0), Err(Refusal::Missing("X-Hub-Signature-256")));
        assert_eq!(
            hmac_sha256_hex(b"secret", b"test"),
            "0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914"
        );
    }

    #[test]
    fn telegram_and_generic_compare_their_secret() {
        let tg = channel(ChannelKind::Telegram, Some("s3cret"), None);
        let ok = [("x-telegram-bot-api-secret-token", "s3cret")];
        assert_eq!(verify(&tg, &headers(&ok), b"{}", 0), Ok(()));
        let bad = [("x-telegram-bot-api-secret-token", "s3cre")];
        assert_eq!(verify(&tg, &headers(&bad), b"{}", 0), Err(Refusal::Mismatch("X-Telegram-Bot-Api-Secret-Token")));
        let generic = channel(ChannelKind::Generic, Some("tok"), None);
        assert_eq!(verify(&generic, &headers(&[("authorization", "Bearer tok")]), b"{}", 0), Ok(()));
        assert_eq!(verify(&generic, &headers(&[("authorization", "bearer  tok ")]), b"{}", 0), Ok(()));
        assert_eq!(
            verify(&generic, &headers(&[("authorization", "Bearer other")]), b"{}", 0),
            Err(Refusal::Mismatch("Authorization"))
        );
        assert_eq!(
            verify(&generic, &headers(&[("authorization", "Basic tok")]), b"{}", 0),
            Err(Refusal::Malformed("Authorization"))
        );
    }
}
