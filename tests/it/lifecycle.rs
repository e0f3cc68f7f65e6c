//! The process: graceful drain on SIGTERM/SIGINT, config reload on SIGHUP,
//! `clawgate check-config`, start-up refusals, and where the config comes from.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// Waits until a fresh connection to `gw` is refused.
fn wait_until_refused(gw: &Gateway, within: Duration) -> bool {
    eventually(within, || match TcpStream::connect_timeout(&gw.addr(), Duration::from_millis(500)) {
        Err(e) => e.kind() == ErrorKind::ConnectionRefused,
        Ok(_) => false,
    })
}

#[test]
fn sigterm_lets_a_stream_finish_answers_draining_and_exits_zero() {
    // ~11 one-word chunks, 200 ms apart: the stream lasts about 2 s.
    let mut gw = Cfg::new().chunk_delay_ms(200).chunk_words(1).start();

    // A: a slow stream, with a /health pipelined behind it on the same connection.
    let mut a = gw.conn();
    let mut bytes = req("POST", "/api/chat").key(USER).json(&json!({"message": "drain me", "stream": true})).bytes();
    bytes.extend(req("GET", "/health").id("after-stream").bytes());
    a.send(&bytes);
    let head = a.read_head();
    assert_eq!(head.status, 200);
    let first = parse_event(&a.read_chunk().expect("first event"));
    assert_eq!(first.data["type"], "chunk");

    // B: an open keep-alive connection that is in the middle of its next request head.
    let mut b = gw.conn();
    assert_eq!(b.exchange(&req("GET", "/health")).status(), 200);
    b.send(b"GET /health HTTP/1.1\r\nHost: x\r\n");
    // C: an idle keep-alive connection.
    let mut c = gw.conn();
    assert_eq!(c.exchange(&req("GET", "/health")).status(), 200);

    gw.signal("TERM");
    assert!(gw.wait_for_log("draining", Duration::from_secs(3)), "no drain log: {:?}", gw.logs());
    let drain_started = Instant::now();

    // Idle connections are closed; new connections are refused.
    c.expect_closed(Duration::from_secs(2));
    assert!(wait_until_refused(&gw, Duration::from_secs(2)), "new connections are still accepted while draining");

    // B finishes its head: /health now says draining, and the connection closes.
    b.send(b"\r\n");
    let resp = b.read_response();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.body, br#"{"status":"draining"}"#);
    assert_eq!(resp.header("connection"), Some("close"));
    b.read_to_eof();
    assert!(
        drain_started.elapsed() < Duration::from_millis(1200),
        "checks took too long for the stream to still be running"
    );

    // A's stream runs to its end, every event intact.
    let mut text = first.data["content"].as_str().unwrap().to_string();
    let mut done = None;
    while let Some(chunk) = a.read_chunk() {
        let ev = parse_event(&chunk);
        match ev.data["type"].as_str().unwrap() {
            "chunk" => text.push_str(ev.data["content"].as_str().unwrap()),
            "done" => done = Some(ev.data),
            other => panic!("unexpected {other} event: {:?}", ev.data),
        }
    }
    assert_eq!(text, mock_reply("drain me", 1));
    let done = done.expect("a done event");
    assert_eq!(done["usage"], mock_usage(&["drain me"], &mock_reply("drain me", 1)));
    // The pipelined /health is answered after the stream, as draining, then close.
    let resp = a.read_response();
    assert_eq!((resp.status(), resp.request_id()), (503, "after-stream"));
    assert_eq!(resp.body, br#"{"status":"draining"}"#);
    assert_eq!(resp.header("connection"), Some("close"));
    a.read_to_eof();

    let status = gw.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "exit status; logs: {:?}", gw.logs());
    assert!(gw.wait_for_log("stopped", Duration::from_secs(1)));
}

#[test]
fn sigint_drains_and_exits_zero() {
    let mut gw = Cfg::new().start();
    let mut idle = gw.conn();
    assert_eq!(idle.exchange(&req("GET", "/health")).status(), 200);
    gw.signal("INT");
    let status = gw.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "logs: {:?}", gw.logs());
    idle.expect_closed(Duration::from_secs(1));
}

#[test]
fn sigterm_with_nothing_in_flight_exits_promptly() {
    let mut gw = Cfg::new().start();
    let start = Instant::now();
    gw.signal("TERM");
    assert_eq!(gw.wait_exit(Duration::from_secs(5)).code(), Some(0));
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
}

#[test]
fn sighup_reloads_the_config_for_new_connections() {
    let cfg = Cfg::new();
    let gw = cfg.start();
    let ids = |gw: &Gateway| -> Vec<String> {
        let v = gw.get("/api/models", Some(USER)).json();
        v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids(&gw), ["mock", "mock-large"]);

    gw.reload(&cfg.clone().extra("[[models]]\nid = \"mock-new\"\nprovider = \"mock\"\n").toml());
    assert!(gw.wait_for_log("reloaded", Duration::from_secs(3)), "{:?}", gw.logs());
    assert!(
        eventually(Duration::from_secs(3), || ids(&gw) == ["mock", "mock-large", "mock-new"]),
        "new connections never saw the new model: {:?}",
        ids(&gw)
    );
    assert_eq!(gw.chat(USER, json!({"message": "hi", "model": "mock-new"}))["model"], "mock-new");
    // Still serving on the same address, same process.
    assert_eq!(gw.get("/health", None).status(), 200);
}

#[test]
fn sighup_with_a_broken_file_keeps_the_running_config() {
    let cfg = Cfg::new();
    let gw = cfg.start();
    gw.reload("[server]\nlisten = \"127.0.0.1:0\"\nbogus_key = 1\n");
    assert!(gw.wait_for_log("reload refused", Duration::from_secs(3)), "{:?}", gw.logs());
    // The refusal names the offending key (the message may span several lines).
    let logs = gw.logs();
    let from = logs.iter().position(|l| l.contains("reload refused")).unwrap();
    assert!(logs[from..].iter().any(|l| l.contains("bogus_key")), "{logs:?}");
    let models = gw.get("/api/models", Some(USER)).json();
    assert_eq!(models["data"].as_array().unwrap().len(), 2);
    assert_eq!(gw.get("/api/status", Some(ADMIN)).status(), 200, "keys still apply");
}

#[test]
fn check_config_accepts_a_valid_file() {
    let file = TempFile::new(&Cfg::new().toml());
    let (status, stderr) = run_bin(&["check-config", &file.display()], &[], Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.trim(), format!("{}: ok", file.display()));
}

#[test]
fn check_config_accepts_the_shipped_mock_config() {
    // config/mock.toml is the demo config and needs no environment variables.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/mock.toml");
    let (status, stderr) = run_bin(&["check-config", path], &[], Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.trim(), format!("{path}: ok"));
}

#[test]
fn check_config_rejects_an_unknown_key_naming_it() {
    let file = TempFile::new("[server]\nlisten = \"127.0.0.1:0\"\nworkerz = 2\n");
    let (status, stderr) = run_bin(&["check-config", &file.display()], &[], Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("workerz"), "the unknown key is named: {stderr}");
    assert!(stderr.contains(&file.display()), "the file is named: {stderr}");

    let file =
        TempFile::new(&Cfg::new().extra("[[models]]\nid = \"x\"\nprovider = \"mock\"\ncolour = \"red\"\n").toml());
    let (status, stderr) = run_bin(&["check-config", &file.display()], &[], Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("colour"), "{stderr}");
}

#[test]
fn check_config_rejects_bad_values_naming_the_key() {
    let cases = [
        ("[server]\nmax_body_bytes = 0\n", "server.max_body_bytes"),
        ("[server]\nlisten = \"localhost:80\"\n", "server.listen"),
        ("[server]\nio = \"kqueue\"\n", "server.io"),
        (
            "[[providers]]\nname = \"m\"\nkind = \"mock\"\n[[models]]\nid = \"a\"\nprovider = \"nope\"\n",
            "models[0].provider",
        ),
    ];
    for (toml, key) in cases {
        let file = TempFile::new(toml);
        let (status, stderr) =
            run_bin(&["check-config", &file.display()], &[("CLAWGATE_IO", "")], Duration::from_secs(5));
        assert_eq!(status.code(), Some(1), "{toml}: {stderr}");
        assert!(stderr.contains(key), "{key} is named: {stderr}");
        assert!(stderr.contains(&file.display()), "the file is named: {stderr}");
    }
}

#[test]
fn check_config_needs_a_readable_file() {
    let (status, stderr) = run_bin(&["check-config"], &[], Duration::from_secs(5));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("usage: clawgate"), "{stderr}");
    let missing = temp_path("toml").display().to_string();
    let (status, stderr) = run_bin(&["check-config", &missing], &[], Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&missing) && stderr.contains("cannot read config file"), "{stderr}");
}

#[test]
fn starting_with_an_unknown_key_fails_naming_it() {
    let file = TempFile::new(&Cfg::new().server("listen_backlog = 5").toml());
    let (status, stderr) = run_bin(&["--config", &file.display()], &[], Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("listen_backlog"), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
}

#[test]
fn open_mode_on_a_non_loopback_address_refuses_to_start() {
    let toml = Cfg::new().open_mode().listen("0.0.0.0:0").toml();
    let file = TempFile::new(&toml);
    let (status, stderr) = run_bin(&["--config", &file.display()], &[], Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no [[keys]] configured"), "{stderr}");
    assert!(stderr.contains("open mode is only allowed on a loopback listen address"), "{stderr}");
    assert!(stderr.contains("0.0.0.0:0"), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
    let (status, _) = run_bin(&["check-config", &file.display()], &[], Duration::from_secs(5));
    assert_eq!(status.code(), Some(1));
}

#[test]
fn keys_make_a_non_loopback_listen_address_acceptable() {
    let file = TempFile::new(&Cfg::new().listen("0.0.0.0:0").toml());
    let (status, stderr) = run_bin(&["check-config", &file.display()], &[], Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{stderr}");
}

#[test]
fn the_config_file_can_come_from_clawgate_config() {
    let file = TempFile::new(&Cfg::new().toml());
    let mut cmd = Command::new(bin());
    cmd.env("CLAWGATE_CONFIG", file.path());
    let gw = Gateway::spawn(cmd, None);
    assert_eq!(gw.get("/api/status", Some(ADMIN)).json()["data"]["user"], "ops");
    assert_error(&gw.get("/api/status", None), 401, "UNAUTHORIZED", "missing Authorization: Bearer <key>");
}

#[test]
fn unknown_arguments_are_refused_with_usage() {
    let (status, stderr) = run_bin(&["--bogus"], &[], Duration::from_secs(5));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown argument --bogus") && stderr.contains("usage: clawgate"), "{stderr}");
    // `--version` and `--help` answer on stdout (`V=$(clawgate --version)`), exit 0.
    let (status, stderr, stdout) = run_bin_in(None, &["--version"], &[], Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.trim(), format!("clawgate {}", env!("CARGO_PKG_VERSION")));
    let (status, _, stdout) = run_bin_in(None, &["--help"], &[], Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    assert!(stdout.starts_with("usage: clawgate") && stdout.contains("backup DEST"), "{stdout}");
}

#[test]
fn listen_on_the_command_line_overrides_the_config() {
    // The file says a port this test cannot use; --listen wins.
    let file = TempFile::new(&Cfg::new().listen("127.0.0.1:1").toml());
    let mut cmd = Command::new(bin());
    cmd.arg("--config").arg(file.path()).args(["--listen", "127.0.0.1:0"]);
    let gw = Gateway::spawn(cmd, None);
    assert_ne!(gw.addr().port(), 1);
    assert_eq!(gw.get("/health/live", None).status(), 200);
    // Open mode stays loopback-only, whatever the flag says.
    let open = TempFile::new(&Cfg::new().open_mode().toml());
    let (status, stderr) =
        run_bin(&["--config", &open.display(), "--listen", "0.0.0.0:0"], &[], Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("open mode is only allowed on a loopback address"), "{stderr}");
    let (status, stderr) = run_bin(&["--listen", "localhost:80"], &[], Duration::from_secs(5));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("expected an IP:port"), "{stderr}");
}

#[test]
fn sigterm_turns_the_probes_to_503_while_the_listener_accepts_for_drain_delay_ms() {
    let mut gw = Cfg::new().server("drain_delay_ms = 2000").start();
    gw.signal("TERM");
    let signalled = Instant::now();
    assert!(gw.wait_for_log("draining: health answers 503", Duration::from_secs(3)), "{:?}", gw.logs());
    // During the delay new connections are still accepted: the probes say draining,
    // everything else is served.
    for probe in ["/health", "/health/live", "/health/ready"] {
        let resp = gw.get(probe, None);
        assert_eq!((resp.status(), resp.body.as_slice()), (503, &br#"{"status":"draining"}"#[..]), "{probe}");
    }
    assert_eq!(gw.get("/api/models", Some(USER)).status(), 200);
    // Then the listener closes, not before the delay, and the process exits 0.
    assert!(wait_until_refused(&gw, Duration::from_secs(8)), "the listener never closed");
    assert!(signalled.elapsed() >= Duration::from_millis(1500), "closed after {:?}", signalled.elapsed());
    assert!(gw.wait_exit(Duration::from_secs(15)).success());
}

#[test]
fn workers_default_to_the_allowed_cpus_and_pin_inside_them() {
    // The last CPU this test may use, given to the gateway alone with taskset.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim().to_string();
    let cpu = clawgate::runtime::parse_cpu_list(&list).last().copied().expect("an allowed CPU");
    let file = TempFile::new(&Cfg::new().workers(0).toml());
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", &cpu.to_string()]).arg(bin()).arg("--config").arg(file.path());
    let gw = Gateway::spawn(cmd, None);
    assert_eq!(gw.get("/api/status", Some(ADMIN)).json()["data"]["workers"], 1, "one worker per allowed CPU");
    let mut workers = 0;
    for task in std::fs::read_dir(format!("/proc/{}/task", gw.pid())).unwrap() {
        let dir = task.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if name.trim().starts_with("clawgate-w") {
            workers += 1;
            let st = std::fs::read_to_string(dir.join("status")).unwrap();
            let allowed = st.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim().to_string();
            assert_eq!(allowed, cpu.to_string(), "worker {} pinned inside the set", name.trim());
        }
    }
    assert_eq!(workers, 1);
}

#[test]
fn the_log_level_filters_warnings_and_clawgate_log_overrides_the_file() {
    let dead = "[[providers]]\nname = \"dead\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\napi_key = \"k\"\nmax_retries = 0\n\n[[models]]\nid = \"dead-only\"\nprovider = \"dead\"\n";
    let fail = |gw: &Gateway| {
        let r = gw.post("/api/chat", Some(USER), &json!({"message": "hi", "model": "dead-only"}));
        assert_eq!(r.status(), 502, "{}", r.text());
        r.request_id().to_string()
    };
    // The file says warn: the provider failure is logged, marked as a warning.
    let gw = Cfg::new().extra(&format!("{dead}\n[log]\nlevel = \"warn\"\n")).start();
    let id = fail(&gw);
    assert!(gw.wait_for_log(&format!("warn: request {id}: model dead-only failed"), Duration::from_secs(5)));
    drop(gw);
    // CLAWGATE_LOG=error wins over the file: no warnings, and still the listening line.
    let file = TempFile::new(&Cfg::new().extra(&format!("{dead}\n[log]\nlevel = \"warn\"\n")).toml());
    let mut cmd = Command::new(bin());
    cmd.env("CLAWGATE_LOG", "error").arg("--config").arg(file.path());
    let gw = Gateway::spawn(cmd, None);
    let id = fail(&gw);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!gw.logs().iter().any(|l| l.contains(&id)), "{:?}", gw.logs());
    // A bad value is refused naming the variable.
    let (status, stderr) = run_bin(&["--config", &file.display()], &[("CLAWGATE_LOG", "loud")], Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("CLAWGATE_LOG") && stderr.contains("error | warn | info | debug"), "{stderr}");
}
