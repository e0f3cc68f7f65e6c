//! Tests of config loading: defaults, `${ENV}` expansion, the `CLAWGATE_IO` override
//! and every shipped file in `config/`; the error cases are in `tests/errors.rs`. The
//! environment is a closure, never the process environment, so tests cannot race on it.

use std::path::{Path, PathBuf};

use super::*;

mod errors;

const FILE: &str = "/etc/clawgate/test.toml";

/// The test environment: a fixed set of variables.
fn env(name: &str) -> Option<String> {
    match name {
        "OPENAI_API_KEY" => Some("sk-openai-test".to_owned()),
        "ANTHROPIC_API_KEY" => Some("sk-ant-test".to_owned()),
        "CLAWGATE_OPS_KEY" => Some("ops-key-test".to_owned()),
        "TELEGRAM_WEBHOOK_SECRET" => Some("tg-secret-test".to_owned()),
        "ORG" => Some("org-42".to_owned()),
        "BAD_HEADER" => Some("a\r\nX-Injected: 1".to_owned()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str_with_env(text, Some(Path::new(FILE)), &env)
}

fn parse_ok(text: &str) -> Config {
    match parse(text) {
        Ok(config) => config,
        Err(e) => panic!("expected a valid config, got: {e}"),
    }
}

const OPENAI: &str = r#"
[[providers]]
name = "openai"
kind = "openai"
api_key = "sk-1"

[[models]]
id = "gpt-4o"
provider = "openai"
"#;

#[test]
fn builtin_default_serves_the_mock_model_on_loopback_in_open_mode() {
    let c = Config::builtin_default();
    assert_eq!(c.server.listen, "127.0.0.1:8080".parse().unwrap());
    assert!(c.open_mode());
    assert_eq!(c.providers.len(), 1);
    assert_eq!(c.providers[0].name, "mock");
    assert_eq!(c.providers[0].kind, ProviderKind::Mock);
    assert_eq!(c.providers[0].base_url, "");
    assert_eq!(c.models.len(), 1);
    let m = c.default_model();
    assert_eq!((m.id.as_str(), m.provider.as_str(), m.upstream.as_str(), m.default), ("mock", "mock", "mock", true));
    assert!(c.channels.is_empty());
    assert!(c.source.is_none());
}

#[test]
fn an_empty_file_equals_the_builtin_defaults() {
    let c = parse_ok("");
    let d = Config::builtin_default();
    assert_eq!(format!("{:?}", c.server), format!("{:?}", d.server));
    assert_eq!(format!("{:?}", c.providers), format!("{:?}", d.providers));
    assert_eq!(format!("{:?}", c.models), format!("{:?}", d.models));
    assert_eq!(c.sessions, d.sessions);
    assert_eq!(c.source.as_deref(), Some(Path::new(FILE)));
}

#[test]
fn server_defaults_match_the_documented_values() {
    let s = parse_ok("[server]\n").server;
    assert_eq!(s.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(s.workers, 0);
    assert_eq!(s.io, IoMode::Auto);
    assert!(s.pin_workers);
    assert_eq!(s.max_body_bytes, 1_048_576);
    assert_eq!(s.max_header_bytes, 16_384);
    assert_eq!(s.max_headers, 64);
    assert_eq!(s.header_timeout_ms, 10_000);
    assert_eq!(s.body_timeout_ms, 30_000);
    assert_eq!(s.idle_timeout_ms, 60_000);
    assert_eq!(s.write_timeout_ms, 30_000);
    assert_eq!(s.max_connections_per_worker, 10_000);
    assert_eq!(s.shutdown_timeout_ms, 10_000);
    assert_eq!(s.access_log, AccessLog::Off);
    assert!(!s.health_detailed_admin_only);
    assert_eq!((s.lingering_close_ms, s.lingering_close_bytes), (5_000, 16 * 1_048_576));
}

#[test]
fn cors_origins_are_read_lowercased_and_an_empty_list_is_off() {
    assert_eq!(parse_ok("").server.cors, None);
    assert_eq!(parse_ok("[server.cors]\nallow_origins = []\n").server.cors, None);
    let c = parse_ok("[server.cors]\nallow_origins = [\"https://App.Example.com\", \"http://localhost:5173\"]\n");
    let cors = c.server.cors.unwrap();
    assert_eq!(cors.allow_origins, ["https://app.example.com", "http://localhost:5173"]);
    assert!(!cors.any_origin);
    assert!(cors.allows(b"https://app.example.com") && cors.allows(b"HTTPS://APP.EXAMPLE.COM"));
    assert!(!cors.allows(b"https://evil.example.com") && !cors.allows(b"http://localhost:5174"));
    let any = parse_ok("[server.cors]\nallow_origins = [\"*\"]\n").server.cors.unwrap();
    assert!(any.any_origin && any.allows(b"https://anything.example"));
    let e = parse("[server.cors]\nallow_origins = [\"https://a.example\", \"https://b.example/\"]\n").unwrap_err().0;
    assert!(e.contains("server.cors.allow_origins[1]: \"https://b.example/\": an origin has no path"), "{e}");
    assert!(e.contains("(in /etc/clawgate/test.toml)"), "{e}");
    let e = parse("[server.cors]\nallow_headers = []\n").unwrap_err().0;
    assert!(e.contains("allow_headers"), "{e}");
    let example =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/clawgate.example.toml"));
    assert!(example.unwrap().lines().any(|l| l.starts_with("allow_origins =")), "the example documents allow_origins");
}

#[test]
fn lingering_close_is_read_from_the_file_and_may_be_turned_off() {
    let s = parse_ok("[server]\nlingering_close_ms = 0\nlingering_close_bytes = 12\n").server;
    assert_eq!((s.lingering_close_ms, s.lingering_close_bytes), (0, 12));
    let e = parse("[server]\nlingering_close_ms = 60001\n").unwrap_err().0;
    assert!(e.contains("server.lingering_close_ms: must be at most 60000 (got 60001)"), "{e}");
}

#[test]
fn server_keys_are_read_from_the_file() {
    let s = parse_ok(
        r#"[server]
listen = "[::1]:0"
workers = 4
io = "epoll"
pin_workers = false
max_body_bytes = 10
max_header_bytes = 2048
max_headers = 10
header_timeout_ms = 1
body_timeout_ms = 2
idle_timeout_ms = 3
write_timeout_ms = 4
max_connections_per_worker = 5
shutdown_timeout_ms = 0
access_log = "json"
health_detailed_admin_only = true
"#,
    )
    .server;
    assert_eq!(s.listen, "[::1]:0".parse().unwrap());
    assert_eq!((s.workers, s.io, s.pin_workers), (4, IoMode::Epoll, false));
    assert_eq!((s.max_body_bytes, s.max_header_bytes, s.max_headers), (10, 2048, 10));
    assert_eq!((s.header_timeout_ms, s.body_timeout_ms, s.idle_timeout_ms, s.write_timeout_ms), (1, 2, 3, 4));
    assert_eq!((s.max_connections_per_worker, s.shutdown_timeout_ms), (5, 0));
    assert_eq!(s.access_log, AccessLog::Json);
    assert!(s.health_detailed_admin_only);
}

#[test]
fn sessions_and_mock_defaults_match_the_documented_values() {
    let c = parse_ok("");
    assert_eq!(
        c.sessions,
        SessionsConfig {
            max_messages: 200,
            max_bytes: 262_144,
            idle_ttl_secs: 86_400,
            max_sessions: 100_000,
            retention_days: 0
        }
    );
    assert_eq!(c.providers[0].mock, MockConfig { chunk_delay_ms: 0, chunk_words: 3 });
    let c = parse_ok("[sessions]\nmax_messages = 5\nmax_bytes = 100\nidle_ttl_secs = 60\nmax_sessions = 7\n");
    assert_eq!(
        c.sessions,
        SessionsConfig { max_messages: 5, max_bytes: 100, idle_ttl_secs: 60, max_sessions: 7, retention_days: 0 }
    );
}

#[test]
fn store_defaults_to_durable_sqlite_in_the_working_directory() {
    let c = parse_ok("");
    assert_eq!(c.store.backend, StoreBackend::Sqlite);
    assert_eq!(c.store.path, std::path::PathBuf::from("clawgate.db"));
    assert_eq!(c.store.durability, Durability::Ack);
    let c = parse_ok("[store]\nbackend = \"memory\"\ndurability = \"async\"\npath = \"/var/lib/x.db\"\n[sessions]\nretention_days = 30\n");
    assert_eq!((c.store.backend, c.store.durability), (StoreBackend::Memory, Durability::Async));
    assert_eq!(c.store.path, std::path::PathBuf::from("/var/lib/x.db"));
    assert_eq!(c.sessions.retention_days, 30);
}

#[test]
fn provider_defaults_depend_on_the_kind() {
    let c = parse_ok(
        r#"
[[providers]]
name = "openai"
kind = "openai"
api_key = "a"
[[providers]]
name = "anthropic"
kind = "anthropic"
api_keys = ["b"]
[[providers]]
name = "local"
kind = "openai_compat"
base_url = "http://127.0.0.1:11434/v1/"
[[models]]
id = "m"
provider = "local"
"#,
    );
    let openai = c.provider("openai").unwrap();
    assert_eq!(openai.base_url, "https://api.openai.com/v1");
    assert_eq!(
        (openai.connect_timeout_ms, openai.first_byte_timeout_ms, openai.request_timeout_ms, openai.chunk_timeout_ms),
        (5_000, 60_000, 300_000, 60_000)
    );
    assert_eq!(openai.max_retries, 2);
    assert_eq!(openai.anthropic_version, "2023-06-01");
    assert!(openai.ca_file.is_none() && openai.headers.is_empty());
    assert_eq!(c.provider("anthropic").unwrap().base_url, "https://api.anthropic.com");
    let local = c.provider("local").unwrap();
    assert_eq!(local.base_url, "http://127.0.0.1:11434/v1", "trailing slash is trimmed");
    assert!(local.api_keys.is_empty(), "openai_compat needs no key");
    assert!(c.provider("nope").is_none());
}

#[test]
fn api_key_and_api_keys_are_merged_in_order() {
    let c = parse_ok(
        r#"
[[providers]]
name = "openai"
kind = "openai"
api_key = "${OPENAI_API_KEY}"
api_keys = ["k2", "k3"]
[[models]]
id = "gpt"
provider = "openai"
"#,
    );
    let keys: Vec<&str> = c.providers[0].api_keys.iter().map(Secret::expose).collect();
    assert_eq!(keys, ["sk-openai-test", "k2", "k3"]);
}

#[test]
fn headers_keep_file_order_and_expand_env() {
    let c = parse_ok(&OPENAI.replace(
        "api_key = \"sk-1\"",
        "api_key = \"sk-1\"\nheaders = { \"X-Zeta\" = \"1\", \"OpenAI-Organization\" = \"${ORG}\", \"X-Alpha\" = \"2\" }",
    ));
    let headers = &c.providers[0].headers;
    let expected = [("X-Zeta", "1"), ("OpenAI-Organization", "org-42"), ("X-Alpha", "2")];
    assert_eq!(headers.len(), 3);
    for ((name, value), (en, ev)) in headers.iter().zip(expected) {
        assert_eq!((name.as_str(), value.as_str()), (en, ev));
    }
}

#[test]
fn model_upstream_defaults_to_its_id_and_the_first_model_is_the_default() {
    let c = parse_ok(&format!("{OPENAI}\n[[models]]\nid = \"gpt-4o-mini\"\nprovider = \"openai\"\nupstream = \"x\"\n"));
    assert_eq!(c.model("gpt-4o").unwrap().upstream, "gpt-4o");
    assert_eq!(c.model("gpt-4o-mini").unwrap().upstream, "x");
    assert_eq!(c.default_model().id, "gpt-4o", "no default flag: the first model");
    assert!(c.model("nope").is_none());
}

#[test]
fn the_model_marked_default_wins() {
    let c = parse_ok(&format!("{OPENAI}\n[[models]]\nid = \"b\"\nprovider = \"openai\"\ndefault = true\n"));
    assert_eq!(c.default_model().id, "b");
}

#[test]
fn a_literal_key_is_stored_as_its_sha256() {
    let c = parse_ok("[[keys]]\nname = \"a\"\nkey = \"sk-test\"\n");
    let k = &c.keys[0];
    assert_eq!(k.key_sha256, hash_key("sk-test"));
    assert_eq!(k.role, Role::User, "role defaults to user");
    assert_eq!((k.rpm, k.tpm), (None, None));
    assert!(k.models.is_none());
    assert!(!c.open_mode());
}

#[test]
fn hash_key_is_plain_sha256() {
    let hex: String = hash_key("abc").iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

#[test]
fn a_key_sha256_is_decoded_from_hex_in_either_case() {
    let upper = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
    let c = parse_ok(&format!(
        "[[keys]]\nname = \"a\"\nkey_sha256 = \"{upper}\"\nrole = \"admin\"\nrpm = 5\ntpm = 7\nmodels = [\"mock\"]\n"
    ));
    let k = &c.keys[0];
    assert_eq!(k.key_sha256, hash_key("abc"));
    assert_eq!((k.role, k.rpm, k.tpm), (Role::Admin, Some(5), Some(7)));
    assert_eq!(k.models.as_deref(), Some(&["mock".to_owned()][..]));
}

#[test]
fn channels_get_their_webhook_path_and_defaults() {
    let c = parse_ok(
        r#"
[[channels]]
name = "tg-main"
type = "telegram"
secret = "${TELEGRAM_WEBHOOK_SECRET}"
model = "mock"
[[channels]]
name = "wa"
type = "whatsapp"
secret = "s"
verify_token = "v"
[[channels]]
name = "dc"
type = "discord"
public_key = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"
"#,
    );
    let tg = c.channel("tg-main").unwrap();
    assert_eq!((tg.kind, tg.enabled), (ChannelKind::Telegram, true));
    assert_eq!(tg.webhook_path, "/webhooks/tg-main");
    assert_eq!(tg.secret.as_ref().unwrap().expose(), "tg-secret-test");
    assert_eq!(tg.model.as_deref(), Some("mock"));
    assert_eq!(c.channel("wa").unwrap().verify_token.as_ref().unwrap().expose(), "v");
    let key = c.channel("dc").unwrap().public_key.unwrap();
    assert_eq!((key[0], key[1], key[31]), (0x00, 0x11, 0xff));
    assert!(c.channel("api").is_none());
    // Reply settings default to the platform's public API, per chat.
    assert_eq!(tg.api_base, "https://api.telegram.org");
    assert_eq!(c.channel("dc").unwrap().api_base, "https://discord.com/api/v10");
    assert_eq!((tg.session_scope, tg.bot_token.is_none(), tg.callback_url.is_none()), (SessionScope::Chat, true, true));
}

#[test]
fn log_filters_take_rust_log_directives_per_module() {
    let c = parse_ok("[log]\nlevel = \"warn,webhook=debug, clawgate::tls=DEBUG,server::conn=error\"\n").log;
    assert_eq!(c.level, LogLevel::Warn);
    assert_eq!(c.level_for("webhook"), LogLevel::Debug);
    assert_eq!(c.level_for("tls"), LogLevel::Debug);
    assert_eq!(c.level_for("server"), LogLevel::Error);
    assert_eq!(c.level_for("store"), LogLevel::Warn);
    let c = LogConfig::parse("clawgate=trace,store=off", false).unwrap();
    assert_eq!((c.level, c.level_for("store")), (LogLevel::Debug, LogLevel::Error));
    // A later directive wins.
    assert_eq!(LogConfig::parse("ws=info,ws=debug", false).unwrap().level_for("ws"), LogLevel::Debug);
    let e = parse("[log]\nlevel = \"info,webhooks=debug\"\n").unwrap_err().to_string();
    assert!(e.contains("log.level") && e.contains("unknown module \"webhooks\"") && e.contains("webhook,"), "{e}");
    let e = parse("[log]\nlevel = \"webhook=loud\"\n").unwrap_err().to_string();
    assert!(e.contains("\"loud\" is not a level"), "{e}");
    // RUST_LOG is shared with other programs: their crates are skipped.
    let c = LogConfig::parse("hyper=debug,info,webhook=debug", true).unwrap();
    assert_eq!((c.level, c.targets.len()), (LogLevel::Info, 1));
}

#[test]
fn clawgate_log_wins_over_rust_log_and_the_file() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    };
    let parse_with_env = |text: &str, env: &dyn Fn(&str) -> Option<String>| {
        Config::from_toml_str_with_env(text, Some(Path::new(FILE)), env)
    };
    let file = "[log]\nlevel = \"error\"\n";
    let c = parse_with_env(file, &env(&[("RUST_LOG", "debug,tokio=trace")])).unwrap();
    assert_eq!(c.log.level, LogLevel::Debug);
    let c = parse_with_env(file, &env(&[("RUST_LOG", "debug"), ("CLAWGATE_LOG", "warn,tls=debug")])).unwrap();
    assert_eq!((c.log.level, c.log.level_for("tls")), (LogLevel::Warn, LogLevel::Debug));
    let e = parse_with_env(file, &env(&[("CLAWGATE_LOG", "tokio=trace")])).unwrap_err().to_string();
    assert!(e.contains("CLAWGATE_LOG") && e.contains("unknown module"), "{e}");
}

#[test]
fn log_level_defaults_to_info_and_takes_the_four_levels() {
    assert_eq!(parse_ok("").log.level, LogLevel::Info);
    for (text, level) in [("error", LogLevel::Error), ("warn", LogLevel::Warn), ("debug", LogLevel::Debug)] {
        assert_eq!(parse_ok(&format!("[log]\nlevel = \"{text}\"\n")).log.level, level);
    }
    let e = parse("[log]\nlevel = \"loud\"\n").unwrap_err().to_string();
    assert!(e.contains("log.level") && e.contains("error | warn | info | debug"), "{e}");
}

#[test]
fn channels_take_the_reply_keys_of_the_design() {
    let c = parse_ok(
        r#"
[[channels]]
name = "tg"
type = "telegram"
secret = "s"
bot_token = "123:abc"
api_base = "http://127.0.0.1:9999/"
session_scope = "user"
[[channels]]
name = "hook"
type = "generic"
secret = "s"
callback_url = "https://example.com/replies"
"#,
    );
    let tg = c.channel("tg").unwrap();
    assert_eq!(tg.bot_token.as_ref().unwrap().expose(), "123:abc");
    assert_eq!((tg.api_base.as_str(), tg.session_scope), ("http://127.0.0.1:9999", SessionScope::User));
    assert_eq!(c.channel("hook").unwrap().callback_url.as_deref(), Some("https://example.com/replies"));
}

#[test]
fn env_references_are_expanded_in_every_string_value() {
    let c = Config::from_toml_str_with_env(
        "[server]\nlisten = \"${HOST}:${PORT}\"\naccess_log = \"${LOG}\"\n",
        None,
        &|name: &str| match name {
            "HOST" => Some("127.0.0.1".to_owned()),
            "PORT" => Some("9000".to_owned()),
            "LOG" => Some("json".to_owned()),
            _ => None,
        },
    )
    .unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(c.server.access_log, AccessLog::Json);
}

#[test]
fn a_double_dollar_keeps_a_literal_reference() {
    let c = parse_ok("[[keys]]\nname = \"a\"\nkey = \"$${NOT_EXPANDED}\"\n");
    assert_eq!(c.keys[0].key_sha256, hash_key("${NOT_EXPANDED}"));
}

#[test]
fn open_mode_is_allowed_on_any_loopback_address() {
    for listen in ["127.0.0.1:8080", "127.9.9.9:0", "[::1]:8080", "[::ffff:127.0.0.1]:8080"] {
        assert!(parse_ok(&format!("[server]\nlisten = \"{listen}\"\n")).open_mode(), "{listen}");
    }
}

#[test]
fn keys_allow_a_public_listen_address() {
    let c = parse_ok("[server]\nlisten = \"0.0.0.0:443\"\n[[keys]]\nname = \"a\"\nkey = \"k\"\n");
    assert!(!c.open_mode());
    assert_eq!(c.server.listen.port(), 443);
}

#[test]
fn clawgate_io_overrides_the_file_value() {
    assert_eq!(io_override(IoMode::Auto, None).unwrap(), IoMode::Auto);
    assert_eq!(io_override(IoMode::Uring, Some("")).unwrap(), IoMode::Uring, "empty counts as unset");
    assert_eq!(io_override(IoMode::Auto, Some("epoll")).unwrap(), IoMode::Epoll);
    assert_eq!(io_override(IoMode::Epoll, Some("uring")).unwrap(), IoMode::Uring);
    assert_eq!(io_override(IoMode::Epoll, Some("auto")).unwrap(), IoMode::Auto);
}

#[test]
fn the_loader_applies_clawgate_io_from_its_env_lookup() {
    let with_io = |value: &'static str| move |name: &str| (name == IO_ENV_VAR).then(|| value.to_owned());
    let text = "[server]\nio = \"uring\"\n";
    let c = Config::from_toml_str_with_env(text, None, &with_io("epoll")).unwrap();
    assert_eq!(c.server.io, IoMode::Epoll);
    let c = Config::from_toml_str_with_env(text, None, &|_: &str| None).unwrap();
    assert_eq!(c.server.io, IoMode::Uring);
    let err = Config::from_toml_str_with_env(text, None, &with_io("fast")).unwrap_err();
    assert!(err.to_string().starts_with("CLAWGATE_IO: "), "{err}");
}

#[test]
fn enums_round_trip_through_their_spelling() {
    for m in [IoMode::Auto, IoMode::Uring, IoMode::Epoll] {
        assert_eq!(IoMode::parse(m.as_str()), Some(m));
    }
    for a in [AccessLog::Off, AccessLog::Text, AccessLog::Json] {
        assert_eq!(AccessLog::parse(a.as_str()), Some(a));
    }
    assert_eq!((Role::Admin.as_str(), Role::User.as_str()), ("admin", "user"));
    let kinds = [ProviderKind::OpenAi, ProviderKind::Anthropic, ProviderKind::OpenAiCompat, ProviderKind::Mock];
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    assert_eq!(names, ["openai", "anthropic", "openai_compat", "mock"]);
    let kinds =
        [ChannelKind::Telegram, ChannelKind::Slack, ChannelKind::Discord, ChannelKind::WhatsApp, ChannelKind::Generic];
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    assert_eq!(names, ["telegram", "slack", "discord", "whatsapp", "generic"]);
    assert_eq!(IoMode::parse("Epoll"), None, "spellings are exact");
}

#[test]
fn secrets_never_print() {
    let s = Secret::new("hunter2".to_owned());
    assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
    assert_eq!(s.expose(), "hunter2");
    let c = parse_ok(&OPENAI.replace("sk-1", "${OPENAI_API_KEY}"));
    let dump = format!("{c:?}");
    assert!(!dump.contains("sk-openai-test"), "{dump}");
    assert!(dump.contains("[redacted]"));
}

#[test]
fn server_tls_names_both_files_resolved_against_the_config_directory() {
    assert_eq!(parse_ok("").server.tls, None);
    let c = parse_ok("[server.tls]\ncert = \"tls/cert.pem\"\nkey = \"/abs/key.pem\"\n");
    let tls = c.server.tls.unwrap();
    assert_eq!(tls.cert, Path::new("/etc/clawgate/tls/cert.pem"));
    assert_eq!(tls.key, Path::new("/abs/key.pem"));
    let e = parse("[server.tls]\ncert = \"cert.pem\"\n").unwrap_err().0;
    assert!(e.contains("server.tls.key") && e.contains("required"), "{e}");
    let e = parse("[server.tls]\ncert = \"\"\nkey = \"k.pem\"\n").unwrap_err().0;
    assert!(e.contains("server.tls.cert") && e.contains("must not be empty"), "{e}");
    let e = parse("[server.tls]\ncert = \"c\"\nkey = \"k\"\nciphers = \"x\"\n").unwrap_err().0;
    assert!(e.contains("ciphers"), "{e}");
}

#[test]
fn a_relative_ca_file_is_resolved_against_the_config_directory() {
    let text = "[[providers]]\nname = \"p\"\nkind = \"openai_compat\"\nbase_url = \"https://x\"\nca_file = \"certs/ca.pem\"\n\
                [[providers]]\nname = \"q\"\nkind = \"openai_compat\"\nbase_url = \"https://y\"\nca_file = \"/abs/ca.pem\"\n\
                [[models]]\nid = \"m\"\nprovider = \"p\"\n";
    let c = parse_ok(text);
    assert_eq!(c.providers[0].ca_file.as_deref(), Some(Path::new("/etc/clawgate/certs/ca.pem")));
    assert_eq!(c.providers[1].ca_file.as_deref(), Some(Path::new("/abs/ca.pem")));
}

#[test]
fn load_reads_the_file_and_remembers_its_path() {
    let dir = std::env::temp_dir().join(format!("clawgate-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("load.toml");
    std::fs::write(&path, "[server]\nworkers = 3\n[[keys]]\nname = \"a\"\nkey = \"k\"\n").unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.server.workers, 3);
    assert_eq!(c.source.as_deref(), Some(path.as_path()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_names_a_missing_file() {
    let path = Path::new("/nonexistent/clawgate/missing.toml");
    let err = Config::load(path).unwrap_err().to_string();
    assert!(err.starts_with("/nonexistent/clawgate/missing.toml: cannot read config file"), "{err}");
}

#[test]
fn default_model_of_a_hand_built_config_without_models_does_not_panic() {
    let mut c = Config::builtin_default();
    c.models.clear();
    assert_eq!(c.default_model().id, "mock");
}

#[test]
fn every_shipped_config_file_is_valid() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let config = match Config::from_toml_str_with_env(&text, Some(&path), &env) {
            Ok(config) => config,
            Err(e) => panic!("{e}"),
        };
        assert!(!config.models.is_empty());
        checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    checked.sort();
    assert!(checked.contains(&"clawgate.example.toml".to_owned()), "{checked:?}");
    assert!(checked.contains(&"mock.toml".to_owned()), "{checked:?}");
}

#[test]
fn the_example_file_sets_what_it_documents() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/clawgate.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let c = Config::from_toml_str_with_env(&text, Some(&path), &env).unwrap();
    let ops = c.keys.iter().find(|k| k.name == "ops").unwrap();
    assert_eq!((ops.key_sha256, ops.role), (hash_key("ops-key-test"), Role::Admin));
    assert_eq!(c.keys[1].models.as_ref().map(Vec::len), Some(2));
    assert_eq!(c.provider("openai").unwrap().api_keys[0].expose(), "sk-openai-test");
    assert_eq!(c.provider("anthropic").unwrap().api_keys[0].expose(), "sk-ant-test");
    assert_eq!(c.default_model().id, "gpt-4o");
    assert_eq!(c.channel("telegram").unwrap().secret.as_ref().unwrap().expose(), "tg-secret-test");
    // Every key of every raw struct appears in the example (commented keys count).
    for key in [
        "listen",
        "workers",
        "io",
        "pin_workers",
        "max_body_bytes",
        "max_header_bytes",
        "max_headers",
        "header_timeout_ms",
        "body_timeout_ms",
        "idle_timeout_ms",
        "write_timeout_ms",
        "max_connections_per_worker",
        "shutdown_timeout_ms",
        "access_log",
        "health_detailed_admin_only",
        "lingering_close_ms",
        "lingering_close_bytes",
        "max_reply_bytes",
        "max_memory_mb",
        "name",
        "key",
        "key_sha256",
        "role",
        "rpm",
        "tpm",
        "models",
        "kind",
        "base_url",
        "api_key",
        "api_keys",
        "headers",
        "connect_timeout_ms",
        "first_byte_timeout_ms",
        "request_timeout_ms",
        "chunk_timeout_ms",
        "max_retries",
        "ca_file",
        "anthropic_version",
        "[providers.mock]",
        "chunk_delay_ms",
        "chunk_words",
        "id",
        "provider",
        "upstream",
        "fallbacks",
        "default",
        "context_window",
        "max_tokens",
        "type",
        "enabled",
        "secret",
        "verify_token",
        "public_key",
        "model",
        "max_messages",
        "max_bytes",
        "idle_ttl_secs",
    ] {
        let written = text.lines().any(|l| {
            let l = l.trim_start_matches(['#', ' ']);
            l == key || l.starts_with(&format!("{key} ="))
        });
        assert!(written, "example does not document {key}");
    }
}

#[test]
fn the_mock_config_has_an_admin_and_a_user_key_and_two_workers() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/mock.toml");
    let c = Config::load(&path).unwrap();
    assert_eq!(c.server.workers, 2);
    assert!(c.providers.iter().all(|p| p.kind == ProviderKind::Mock));
    let admin = c.keys.iter().find(|k| k.role == Role::Admin).unwrap();
    let user = c.keys.iter().find(|k| k.role == Role::User).unwrap();
    assert_eq!(admin.key_sha256, hash_key("sk-clawgate-demo-admin"));
    assert_eq!(user.key_sha256, hash_key("sk-clawgate-demo-user"));
}

#[test]
fn limits_default_to_no_limits_and_documented_tuning() {
    let l = parse_ok("").limits;
    assert_eq!(l, LimitsConfig::default());
    assert_eq!((l.rpm, l.tpm, l.ip_rpm), (None, None, None));
    assert_eq!((l.ws_connects_per_minute_per_ip, l.ws_messages_per_minute), (None, None));
    assert_eq!((l.lease_size, l.max_tracked_clients, l.completion_reserve_tokens), (8, 100_000, 256));
    assert_eq!((l.auth_failures_per_minute, l.auth_lockout_secs), (10, 300));
    assert_eq!(Config::builtin_default().limits, l);
}

#[test]
fn limits_are_read_from_the_file() {
    let l = parse_ok(
        "[limits]\nrpm = 1\ntpm = 2\nip_rpm = 3\nws_connects_per_minute_per_ip = 4\n\
         ws_messages_per_minute = 5\nlease_size = 6\nmax_tracked_clients = 7\n\
         completion_reserve_tokens = 8\nauth_failures_per_minute = 9\nauth_lockout_secs = 10\n",
    )
    .limits;
    assert_eq!(
        l,
        LimitsConfig {
            rpm: Some(1),
            tpm: Some(2),
            ip_rpm: Some(3),
            ws_connects_per_minute_per_ip: Some(4),
            ws_messages_per_minute: Some(5),
            lease_size: 6,
            max_tracked_clients: 7,
            completion_reserve_tokens: 8,
            auth_failures_per_minute: 9,
            auth_lockout_secs: 10,
        }
    );
}

#[test]
fn bad_limits_are_errors_naming_the_key() {
    for (text, expected) in [
        ("[limits]\nrpm = 0\n", "limits.rpm: must be at least 1 (omit it for no limit) (in /etc/clawgate/test.toml)"),
        ("[limits]\ntpm = 0\n", "limits.tpm: must be at least 1"),
        ("[limits]\nip_rpm = 0\n", "limits.ip_rpm: must be at least 1"),
        ("[limits]\nws_connects_per_minute_per_ip = 0\n", "limits.ws_connects_per_minute_per_ip: must be"),
        ("[limits]\nws_messages_per_minute = 0\n", "limits.ws_messages_per_minute: must be"),
        ("[limits]\nlease_size = 0\n", "limits.lease_size: must be at least 1 (got 0)"),
        ("[limits]\nlease_size = 70000\n", "limits.lease_size: must be at most 65536 (got 70000)"),
        ("[limits]\nmax_tracked_clients = 0\n", "limits.max_tracked_clients: must be at least 1"),
        ("[limits]\ncompletion_reserve_tokens = 0\n", "limits.completion_reserve_tokens: must be at least 1"),
        ("[limits]\nauth_lockout_secs = 0\n", "limits.auth_lockout_secs: must be at least 1"),
        ("[limits]\nauth_lockout_secs = 604801\n", "limits.auth_lockout_secs: must be at most 604800"),
        ("[limits]\nburst = 5\n", "unknown field `burst`"),
        // Type errors come from the TOML parser, which shows the line.
        ("[limits]\nrpm = -1\n", "rpm = -1"),
    ] {
        let e = parse(text).unwrap_err().0;
        assert!(e.contains(expected), "{text:?}: {e}");
        assert!(e.contains(FILE), "{text:?}: {e}");
    }
}

#[test]
fn the_example_file_documents_every_limits_key() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/clawgate.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let c = Config::from_toml_str_with_env(&text, Some(&path), &env).unwrap();
    assert_eq!(c.limits.rpm, Some(600));
    assert!(text.lines().any(|l| l == "[limits]"));
    for key in [
        "rpm",
        "tpm",
        "ip_rpm",
        "ws_connects_per_minute_per_ip",
        "ws_messages_per_minute",
        "lease_size",
        "max_tracked_clients",
        "completion_reserve_tokens",
        "auth_failures_per_minute",
        "auth_lockout_secs",
    ] {
        let written = text.lines().any(|l| l.trim_start_matches(['#', ' ']).starts_with(&format!("{key} =")));
        assert!(written, "example does not document limits.{key}");
    }
}
