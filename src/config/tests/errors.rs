//! Error cases: every validation error names its key and the file; unknown keys,
//! TOML syntax errors, unset `${ENV}` variables, open mode off loopback and a bad
//! `CLAWGATE_IO` are all rejected with messages that say where to look.

use super::*;

/// Asserts that `text` fails with a message naming `key` and the file.
fn assert_error(text: &str, key: &str, fragment: &str) {
    match parse(text) {
        Ok(_) => panic!("expected an error naming {key}, but the config was accepted:\n{text}"),
        Err(ConfigError(msg)) => {
            assert!(msg.starts_with(&format!("{key}: ")), "message should start with key {key}: {msg}");
            assert!(msg.contains(FILE), "message should name the file: {msg}");
            assert!(msg.contains(fragment), "message should contain {fragment:?}: {msg}");
        }
    }
}

#[test]
fn an_unset_env_var_is_an_error_naming_the_key_the_variable_and_the_file() {
    let text = OPENAI.replace("sk-1", "${MISSING_KEY}");
    let err = parse(&text).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("providers[0].api_key: environment variable MISSING_KEY is not set (in {FILE})")
    );
}

#[test]
fn unknown_keys_are_rejected_with_their_name_and_the_file() {
    for (text, name) in [
        ("bogus = 1\n", "bogus"),
        ("[server]\nlisten_addr = \"127.0.0.1:1\"\n", "listen_addr"),
        ("[sessions]\nmax_msgs = 1\n", "max_msgs"),
        ("[store]\nfsync = true\n", "fsync"),
        ("[[keys]]\nname = \"a\"\nkey = \"b\"\nrate = 1\n", "rate"),
        ("[[providers]]\nname = \"m\"\nkind = \"mock\"\napikey = \"x\"\n", "apikey"),
        ("[[providers]]\nname = \"m\"\nkind = \"mock\"\n[providers.mock]\ndelay = 1\n", "delay"),
        ("[[models]]\nid = \"m\"\nprovider = \"p\"\nalias = \"x\"\n", "alias"),
        ("[[channels]]\nname = \"c\"\nkind = \"generic\"\n", "kind"),
    ] {
        let msg = parse(text).unwrap_err().to_string();
        assert!(msg.starts_with(&format!("{FILE}: ")), "file first: {msg}");
        assert!(msg.contains(&format!("unknown field `{name}`")), "names {name}: {msg}");
    }
}

#[test]
fn toml_syntax_and_type_errors_are_prefixed_with_the_file() {
    for text in ["[server\n", "[server]\nworkers = \"four\"\n", "[server]\nmax_body_bytes = -1\n"] {
        let msg = parse(text).unwrap_err().to_string();
        assert!(msg.starts_with(&format!("{FILE}: ")), "{msg}");
    }
}

#[test]
fn errors_without_a_file_say_so() {
    let msg = Config::from_toml_str_with_env("[server]\nworkers = 5000\n", None, &env).unwrap_err().to_string();
    assert_eq!(msg, "server.workers: must be at most 1024 (got 5000) (in <inline config>)");
}

#[test]
fn every_validation_error_names_its_key_and_the_file() {
    let gen = "[[channels]]\nname = \"c\"\ntype = \"generic\"\nsecret = \"s\"\n";
    let cases: Vec<(String, &str, &str)> = vec![
        ("[server]\nlisten = \"localhost:8080\"".into(), "server.listen", "host names are not resolved"),
        ("[server]\nlisten = \"127.0.0.1\"".into(), "server.listen", "IP:port"),
        ("[server]\nworkers = 1025".into(), "server.workers", "at most 1024"),
        ("[server]\nio = \"kqueue\"".into(), "server.io", "auto | uring | epoll"),
        ("[server]\nmax_body_bytes = 0".into(), "server.max_body_bytes", "at least 1"),
        ("[server]\nmax_header_bytes = 1023".into(), "server.max_header_bytes", "at least 1024"),
        ("[server]\nmax_header_bytes = 1048577".into(), "server.max_header_bytes", "at most 1048576"),
        ("[server]\nmax_headers = 0".into(), "server.max_headers", "at least 1"),
        ("[server]\nheader_timeout_ms = 0".into(), "server.header_timeout_ms", "at least 1"),
        ("[server]\nbody_timeout_ms = 0".into(), "server.body_timeout_ms", "at least 1"),
        ("[server]\nidle_timeout_ms = 0".into(), "server.idle_timeout_ms", "at least 1"),
        ("[server]\nwrite_timeout_ms = 0".into(), "server.write_timeout_ms", "at least 1"),
        ("[server]\nmax_connections_per_worker = 0".into(), "server.max_connections_per_worker", "at least 1"),
        ("[server]\naccess_log = \"xml\"".into(), "server.access_log", "off | text | json"),
        ("[sessions]\nmax_messages = 0".into(), "sessions.max_messages", "at least 1"),
        ("[store]\nbackend = \"disk\"".into(), "store.backend", "sqlite | memory | redis"),
        (
            "[[providers]]\nname = \"o\"\nkind = \"openai\"\napi_key = \"$OPENAI_API_KEY\"".into(),
            "providers[0].api_key",
            "\"$OPENAI_API_KEY\" is not expanded: write \"${OPENAI_API_KEY}\"",
        ),
        ("[store]\nbackend = \"redis\"".into(), "store.backend", "not available in this build"),
        ("[store]\ndurability = \"sometimes\"".into(), "store.durability", "ack | async"),
        ("[store]\npath = \"\"".into(), "store.path", "must not be empty"),
        ("[store]\nurl = \"http://x\"".into(), "store.url", "not a redis://"),
        ("[sessions]\nmax_bytes = 0".into(), "sessions.max_bytes", "at least 1"),
        ("[sessions]\nidle_ttl_secs = 0".into(), "sessions.idle_ttl_secs", "at least 1"),
        // keys
        ("[[keys]]\nkey = \"k\"".into(), "keys[0].name", "missing"),
        ("[[keys]]\nname = \" \"\nkey = \"k\"".into(), "keys[0].name", "empty"),
        ("[[keys]]\nname = \"a\"".into(), "keys[0].key", "key_sha256"),
        ("[[keys]]\nname = \"a\"\nkey = \"k\"\nkey_sha256 = \"00\"".into(), "keys[0]", "not both"),
        ("[[keys]]\nname = \"a\"\nkey = \"\"".into(), "keys[0].key", "empty"),
        ("[[keys]]\nname = \"a\"\nkey_sha256 = \"abc\"".into(), "keys[0].key_sha256", "64 hex"),
        (format!("[[keys]]\nname = \"a\"\nkey_sha256 = \"{}\"", "zz".repeat(32)), "keys[0].key_sha256", "64 hex"),
        ("[[keys]]\nname = \"a\"\nkey = \"k\"\nrole = \"root\"".into(), "keys[0].role", "admin | user"),
        ("[[keys]]\nname = \"a\"\nkey = \"k\"\nrpm = 0".into(), "keys[0].rpm", "at least 1"),
        ("[[keys]]\nname = \"a\"\nkey = \"k\"\ntpm = 0".into(), "keys[0].tpm", "at least 1"),
        ("[[keys]]\nname = \"a\"\nkey = \"k\"\nmodels = []".into(), "keys[0].models", "omit it"),
        ("[[keys]]\nname = \"a\"\nkey = \"k\"\nmodels = [\"mock\", \"gpt\"]".into(), "keys[0].models[1]", "\"gpt\""),
        ("[[keys]]\nname = \"a\"\nkey = \"k\"\n[[keys]]\nname = \"a\"\nkey = \"j\"".into(), "keys[1].name", "keys[0]"),
        ("[[keys]]\nname = \"a\"\nkey = \"k\"\n[[keys]]\nname = \"b\"\nkey = \"k\"".into(), "keys[1].key", "keys[0]"),
        // providers
        ("[[providers]]\nkind = \"mock\"".into(), "providers[0].name", "missing"),
        ("[[providers]]\nname = \"a b\"\nkind = \"mock\"".into(), "providers[0].name", "[A-Za-z0-9_.-]+"),
        ("[[providers]]\nname = \"p\"".into(), "providers[0].kind", "missing"),
        (
            "[[providers]]\nname = \"p\"\nkind = \"azure\"".into(),
            "providers[0].kind",
            "openai | anthropic | openai_compat | gemini | azure_openai | mock",
        ),
        ("[[providers]]\nname = \"p\"\nkind = \"openai\"".into(), "providers[0].api_key", "required"),
        ("[[providers]]\nname = \"p\"\nkind = \"anthropic\"\napi_keys = []".into(), "providers[0].api_key", "required"),
        (
            "[[providers]]\nname = \"p\"\nkind = \"openai\"\napi_keys = [\"a\", \"\"]".into(),
            "providers[0].api_keys[1]",
            "empty",
        ),
        ("[[providers]]\nname = \"p\"\nkind = \"openai_compat\"".into(), "providers[0].base_url", "required"),
        (
            "[[providers]]\nname = \"p\"\nkind = \"openai_compat\"\nbase_url = \"ftp://x\"".into(),
            "providers[0].base_url",
            "http://",
        ),
        (
            "[[providers]]\nname = \"p\"\nkind = \"openai_compat\"\nbase_url = \"https://\"".into(),
            "providers[0].base_url",
            "host",
        ),
        (
            "[[providers]]\nname = \"p\"\nkind = \"mock\"\nheaders = { \"Bad Name\" = \"x\" }".into(),
            "providers[0].headers.Bad Name",
            "header name",
        ),
        (
            "[[providers]]\nname = \"p\"\nkind = \"mock\"\nheaders = { \"Host\" = \"x\" }".into(),
            "providers[0].headers.Host",
            "HTTP client",
        ),
        (
            "[[providers]]\nname = \"p\"\nkind = \"mock\"\nheaders = { \"X-A\" = \"${BAD_HEADER}\" }".into(),
            "providers[0].headers.X-A",
            "control character",
        ),
        (
            "[[providers]]\nname = \"p\"\nkind = \"mock\"\nheaders = { \"X-A\" = \"1\", \"x-a\" = \"2\" }".into(),
            "providers[0].headers.x-a",
            "duplicate",
        ),
        (
            "[[providers]]\nname = \"p\"\nkind = \"mock\"\nconnect_timeout_ms = 0".into(),
            "providers[0].connect_timeout_ms",
            "at least 1",
        ),
        (
            "[[providers]]\nname = \"p\"\nkind = \"mock\"\nfirst_byte_timeout_ms = 0".into(),
            "providers[0].first_byte_timeout_ms",
            "at least 1",
        ),
        (
            "[[providers]]\nname = \"p\"\nkind = \"mock\"\nrequest_timeout_ms = 0".into(),
            "providers[0].request_timeout_ms",
            "at least 1",
        ),
        (
            "[[providers]]\nname = \"p\"\nkind = \"mock\"\nchunk_timeout_ms = 0".into(),
            "providers[0].chunk_timeout_ms",
            "at least 1",
        ),
        (
            "[[providers]]\nname = \"p\"\nkind = \"mock\"\nmax_retries = 11".into(),
            "providers[0].max_retries",
            "at most 10",
        ),
        ("[[providers]]\nname = \"p\"\nkind = \"mock\"\nca_file = \"\"".into(), "providers[0].ca_file", "empty"),
        (
            "[[providers]]\nname = \"p\"\nkind = \"anthropic\"\napi_key = \"k\"\nanthropic_version = \"\"".into(),
            "providers[0].anthropic_version",
            "empty",
        ),
        (
            "[[providers]]\nname = \"p\"\nkind = \"mock\"\n[providers.mock]\nchunk_words = 0".into(),
            "providers[0].mock.chunk_words",
            "at least 1",
        ),
        (
            "[[providers]]\nname = \"p\"\nkind = \"openai_compat\"\nbase_url = \"http://x\"\n[providers.mock]".into(),
            "providers[0].mock",
            "kind = \"mock\"",
        ),
        (
            "[[providers]]\nname = \"p\"\nkind = \"mock\"\n[[providers]]\nname = \"p\"\nkind = \"mock\"".into(),
            "providers[1].name",
            "providers[0]",
        ),
        // sections
        ("[[providers]]\nname = \"p\"\nkind = \"mock\"".into(), "models", "no [[models]]"),
        ("[[models]]\nid = \"m\"\nprovider = \"mock\"".into(), "providers", "no [[providers]]"),
        // models
        (format!("{OPENAI}[[models]]\nprovider = \"openai\""), "models[1].id", "missing"),
        (format!("{OPENAI}[[models]]\nid = \"gpt-4o\"\nprovider = \"openai\""), "models[1].id", "models[0]"),
        (format!("{OPENAI}[[models]]\nid = \"x\""), "models[1].provider", "missing"),
        (format!("{OPENAI}[[models]]\nid = \"x\"\nprovider = \"azure\""), "models[1].provider", "\"azure\""),
        (
            format!("{OPENAI}[[models]]\nid = \"x\"\nprovider = \"openai\"\nupstream = \"\""),
            "models[1].upstream",
            "empty",
        ),
        (
            format!("{OPENAI}default = true\n[[models]]\nid = \"x\"\nprovider = \"openai\"\ndefault = true"),
            "models[1].default",
            "models[0]",
        ),
        (format!("{OPENAI}fallbacks = [\"gpt-4o\"]"), "models[0].fallbacks[0]", "itself"),
        (format!("{OPENAI}fallbacks = [\"nope\"]"), "models[0].fallbacks[0]", "\"nope\""),
        (
            format!("{OPENAI}fallbacks = [\"x\", \"x\"]\n[[models]]\nid = \"x\"\nprovider = \"openai\""),
            "models[0].fallbacks[1]",
            "twice",
        ),
        (format!("{OPENAI}context_window = 0"), "models[0].context_window", "at least 1"),
        (format!("{OPENAI}max_tokens = 0"), "models[0].max_tokens", "at least 1"),
        (format!("{OPENAI}context_window = 100\nmax_tokens = 101"), "models[0].max_tokens", "context_window"),
        // channels
        ("[[channels]]\ntype = \"generic\"\nsecret = \"s\"".into(), "channels[0].name", "missing"),
        (
            "[[channels]]\nname = \"Tele gram\"\ntype = \"generic\"\nsecret = \"s\"".into(),
            "channels[0].name",
            "[a-z0-9_-]+",
        ),
        ("[[channels]]\nname = \"api\"\ntype = \"generic\"\nsecret = \"s\"".into(), "channels[0].name", "reserved"),
        (format!("{gen}{gen}"), "channels[1].name", "channels[0]"),
        ("[[channels]]\nname = \"c\"".into(), "channels[0].type", "missing"),
        (
            "[[channels]]\nname = \"c\"\ntype = \"irc\"".into(),
            "channels[0].type",
            "telegram | slack | discord | whatsapp | generic",
        ),
        ("[[channels]]\nname = \"c\"\ntype = \"slack\"".into(), "channels[0].secret", "required"),
        (format!("{gen}bot_token = \"t\""), "channels[0].bot_token", "only valid with type"),
        (format!("{gen}api_base = \"ftp://x\""), "channels[0].api_base", "must be an http"),
        (format!("{gen}callback_url = \"nope\""), "channels[0].callback_url", "must be an http"),
        (format!("{gen}session_scope = \"room\""), "channels[0].session_scope", "chat | user"),
        (
            "[[channels]]\nname = \"c\"\ntype = \"telegram\"\nsecret = \"s\"\ncallback_url = \"https://x\"".into(),
            "channels[0].callback_url",
            "only valid with type = \"generic\"",
        ),
        ("[[channels]]\nname = \"c\"\ntype = \"generic\"\nsecret = \"\"".into(), "channels[0].secret", "empty"),
        ("[[channels]]\nname = \"c\"\ntype = \"discord\"".into(), "channels[0].public_key", "required"),
        (
            "[[channels]]\nname = \"c\"\ntype = \"discord\"\npublic_key = \"12\"".into(),
            "channels[0].public_key",
            "64 hex",
        ),
        (
            "[[channels]]\nname = \"c\"\ntype = \"discord\"\nenabled = false\nsecret = \"s\"".into(),
            "channels[0].secret",
            "public_key",
        ),
        (format!("{gen}verify_token = \"v\""), "channels[0].verify_token", "whatsapp"),
        (format!("{gen}public_key = \"{}\"", "ab".repeat(32)), "channels[0].public_key", "discord"),
        (format!("{gen}model = \"gpt\""), "channels[0].model", "\"gpt\""),
        // env expansion
        (
            "[server]\nio = \"${NOT_SET_ANYWHERE}\"".into(),
            "server.io",
            "environment variable NOT_SET_ANYWHERE is not set",
        ),
        ("[[keys]]\nname = \"a\"\nkey = \"${CLAWGATE_OPS_KEY\"".into(), "keys[0].key", "unterminated"),
        ("[[keys]]\nname = \"a\"\nkey = \"${1}\"".into(), "keys[0].key", "not an environment variable name"),
    ];
    for (text, key, fragment) in &cases {
        assert_error(text, key, fragment);
    }
}

#[test]
fn open_mode_is_rejected_on_a_non_loopback_address() {
    let err = parse("[server]\nlisten = \"0.0.0.0:8080\"\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "no [[keys]] configured: open mode is only allowed on a loopback listen address \
             (server.listen = 0.0.0.0:8080) (in {FILE})"
        )
    );
    assert!(parse("[server]\nlisten = \"[::]:8080\"\n").is_err());
    assert!(parse("[server]\nlisten = \"10.1.2.3:8080\"\n").is_err());
}

#[test]
fn an_invalid_clawgate_io_is_an_error_naming_the_variable() {
    let err = io_override(IoMode::Auto, Some("poll")).unwrap_err().to_string();
    assert!(err.starts_with("CLAWGATE_IO: "), "{err}");
    assert!(err.contains("\"poll\"") && err.contains("auto | uring | epoll"), "{err}");
}
