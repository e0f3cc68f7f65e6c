//! API-key authentication. Keys are stored only as SHA-256 digests (`key` in the
//! config is hashed at load, `key_sha256` is taken as is); a presented Bearer token is
//! hashed once and compared with every configured digest in constant time (`subtle`),
//! without early exit, so timing reveals neither which key nor how much of it matched.
//! With no keys configured the gateway is in open mode (loopback only, enforced by the
//! config) and every caller is the admin identity `open`. Cost: one SHA-256 of the token
//! (~150 ns) plus 32 bytes compared per configured key.

use std::sync::Arc;

use subtle::ConstantTimeEq;

use crate::config::{hash_key, Config, Role};
use crate::error::{ApiError, ErrorCode};

/// Who is calling: the key's name and role (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: Arc<str>,
    pub role: Role,
    /// Index into `Config::keys`; `None` in open mode.
    pub key_index: Option<usize>,
}

impl Identity {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Longest `Authorization` value an `AuthMemo` keeps.
const MAX_MEMO_HEADER: usize = 512;

/// One connection's last accepted `Authorization` value and its identity (see
/// `KeyStore::authenticate_header_memo`). The comparison is with bytes this same
/// client sent earlier on this connection, so it reveals nothing about other keys.
#[derive(Debug, Default)]
pub struct AuthMemo {
    header: Vec<u8>,
    identity: Option<Identity>,
    /// Address of the `KeyStore` that accepted it (a reloaded store starts afresh).
    store: usize,
}

/// The configured keys, as digests, built once per config snapshot.
#[derive(Debug)]
pub struct KeyStore {
    keys: Vec<([u8; 32], Identity)>,
    open: Option<Identity>,
}

impl KeyStore {
    pub fn new(config: &Config) -> Self {
        let keys: Vec<_> = config
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let id = Identity { name: Arc::from(k.name.as_str()), role: k.role, key_index: Some(i) };
                (k.key_sha256, id)
            })
            .collect();
        let open = keys.is_empty().then(|| Identity { name: Arc::from("open"), role: Role::Admin, key_index: None });
        KeyStore { keys, open }
    }

    /// `authenticate_header` for a keep-alive connection: a request presenting the same
    /// `Authorization` bytes as the last one accepted on this connection (with this
    /// store) gets the same identity without hashing again. Only successes are kept.
    pub fn authenticate_header_memo(&self, header: Option<&[u8]>, memo: &mut AuthMemo) -> Result<Identity, ApiError> {
        let store = self as *const KeyStore as usize;
        if let (Some(h), Some(id)) = (header, &memo.identity) {
            if memo.store == store && memo.header.as_slice() == h {
                return Ok(id.clone());
            }
        }
        let id = self.authenticate_header(header)?;
        if let Some(h) = header.filter(|h| h.len() <= MAX_MEMO_HEADER) {
            memo.header.clear();
            memo.header.extend_from_slice(h);
            memo.identity = Some(id.clone());
            memo.store = store;
        }
        Ok(id)
    }

    /// `authenticate_token` for an `x-api-key` header value (the raw key, as the
    /// Anthropic SDK sends it), memoised like `authenticate_header_memo`. The memo is
    /// told apart from an `Authorization` one by a NUL first byte, which no header
    /// value can hold.
    pub fn authenticate_api_key_memo(&self, key: &[u8], memo: &mut AuthMemo) -> Result<Identity, ApiError> {
        let store = self as *const KeyStore as usize;
        let memoised = memo.header.first() == Some(&0) && &memo.header[1..] == key;
        if let (true, Some(id)) = (memoised && memo.store == store, &memo.identity) {
            return Ok(id.clone());
        }
        let id = self.authenticate_token(key)?;
        if key.len() < MAX_MEMO_HEADER {
            memo.header.clear();
            memo.header.push(0);
            memo.header.extend_from_slice(key);
            memo.identity = Some(id.clone());
            memo.store = store;
        }
        Ok(id)
    }

    /// Authenticates an `Authorization` header value (`Bearer <key>`).
    pub fn authenticate_header(&self, header: Option<&[u8]>) -> Result<Identity, ApiError> {
        if let Some(open) = &self.open {
            return Ok(open.clone());
        }
        let header = header.ok_or_else(|| unauthorized("missing Authorization: Bearer <key>"))?;
        let token = bearer(header).ok_or_else(|| unauthorized("Authorization must be Bearer <key>"))?;
        self.authenticate_token(token)
    }

    /// Authenticates a raw key (the WebSocket `auth` frame).
    pub fn authenticate_token(&self, token: &[u8]) -> Result<Identity, ApiError> {
        if let Some(open) = &self.open {
            return Ok(open.clone());
        }
        let digest = std::str::from_utf8(token).map(hash_key).map_err(|_| unauthorized("unknown API key"))?;
        let mut found: Option<&Identity> = None;
        for (stored, id) in &self.keys {
            let eq: bool = stored.ct_eq(&digest).into();
            if eq && found.is_none() {
                found = Some(id);
            }
        }
        found.cloned().ok_or_else(|| unauthorized("unknown API key"))
    }

    pub fn open_mode(&self) -> bool {
        self.open.is_some()
    }
}

fn bearer(header: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = header.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

fn unauthorized(msg: &'static str) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, msg)
}

/// Checks that `who` may use model `model_id` (keys may list allowed models).
pub fn check_model_access(config: &Config, who: &Identity, model_id: &str) -> Result<(), ApiError> {
    let allowed = who
        .key_index
        .and_then(|i| config.keys.get(i))
        .and_then(|k| k.models.as_ref())
        .is_none_or(|list| list.iter().any(|m| m == model_id));
    if allowed {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::Forbidden, format!("this key may not use model {model_id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml_str(text, None).unwrap()
    }

    const KEYS: &str = r#"
[[keys]]
name = "ops"
key = "sk-admin"
role = "admin"
[[keys]]
name = "app"
key = "sk-user"
"#;

    #[test]
    fn bearer_key_maps_to_its_name_and_role() {
        let store = KeyStore::new(&config(KEYS));
        let id = store.authenticate_header(Some(b"Bearer sk-admin")).unwrap();
        assert_eq!((&*id.name, id.role), ("ops", Role::Admin));
        let id = store.authenticate_header(Some(b"bearer  sk-user ")).unwrap();
        assert_eq!((&*id.name, id.role), ("app", Role::User));
    }

    #[test]
    fn the_connection_memo_only_answers_the_exact_header_it_accepted() {
        let store = KeyStore::new(&config(KEYS));
        let mut memo = AuthMemo::default();
        let id = store.authenticate_header_memo(Some(b"Bearer sk-user"), &mut memo).unwrap();
        assert_eq!(&*id.name, "app");
        assert_eq!(memo.identity.as_ref(), Some(&id));
        assert_eq!(store.authenticate_header_memo(Some(b"Bearer sk-user"), &mut memo).unwrap(), id);
        // Another key on the same connection is checked, and a wrong one refused.
        let ops = store.authenticate_header_memo(Some(b"Bearer sk-admin"), &mut memo).unwrap();
        assert_eq!(&*ops.name, "ops");
        for h in [None, Some(&b"Bearer sk-admiN"[..]), Some(b"Bearer sk-admin2")] {
            let e = store.authenticate_header_memo(h, &mut memo).unwrap_err();
            assert_eq!(e.code, ErrorCode::Unauthorized);
        }
        // A reloaded store without that key does not take the memo's word for it.
        let reloaded = KeyStore::new(&config("[[keys]]\nname = \"app\"\nkey = \"sk-user\"\n"));
        let e = reloaded.authenticate_header_memo(Some(b"Bearer sk-admin"), &mut memo).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized);
    }

    #[test]
    fn missing_wrong_or_malformed_keys_are_unauthorized() {
        let store = KeyStore::new(&config(KEYS));
        for h in [None, Some(&b"Bearer nope"[..]), Some(b"Basic sk-admin"), Some(b"Bearer "), Some(b"Bearer \xff")] {
            assert_eq!(store.authenticate_header(h).unwrap_err().code, ErrorCode::Unauthorized);
        }
    }

    #[test]
    fn open_mode_admits_everyone_as_admin() {
        let store = KeyStore::new(&Config::builtin_default());
        assert!(store.open_mode());
        assert!(store.authenticate_header(None).unwrap().is_admin());
    }
}
