//! The durable session store (`[store]`, SQLite) on the real binary: restarts, `kill -9`
//! with turns in flight, reset/delete reaching the disk, lazy loading, bad files and
//! directories refused at start-up, a full disk at run time, and `clawgate backup`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

/// A fresh directory for one test's database; removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let d = temp_path("store");
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn db(&self) -> PathBuf {
        self.0.join("clawgate.db")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Generous history bounds so that every turn of a test stays in the history.
const ROOMY: &str = "[sessions]\nmax_messages = 100000\nmax_bytes = 100000000\n";

/// Runs the gateway with `cfg` in `dir` (where its `clawgate.db` is), under `wrap` (a
/// command and its arguments put in front, e.g. `prlimit`).
fn start_in(dir: &Path, cfg: &Cfg, wrap: &[&str]) -> Gateway {
    let file = TempFile::new(&cfg.toml());
    let mut cmd = match wrap.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin());
            c
        }
        None => Command::new(bin()),
    };
    cmd.arg("--config").arg(file.path()).current_dir(dir);
    Gateway::spawn(cmd, Some(file))
}

fn stop(mut gw: Gateway) {
    gw.signal("TERM");
    let status = gw.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "clawgate did not stop cleanly: {status:?}");
}

fn history(gw: &Gateway, id: &str) -> Vec<(String, String)> {
    let resp = gw.get(&format!("/api/sessions/{id}"), Some(ADMIN));
    assert_eq!(resp.status(), 200, "session {id}: {}", resp.text());
    resp.json()["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap().to_string(), m["content"].as_str().unwrap().to_string()))
        .collect()
}

fn user_texts(h: &[(String, String)]) -> Vec<String> {
    h.iter().filter(|(r, _)| r == "user").map(|(_, c)| c.clone()).collect()
}

fn sessions_in_memory(gw: &Gateway) -> u64 {
    gw.get("/api/status", Some(ADMIN)).json()["data"]["totals"]["sessions"].as_u64().unwrap()
}

#[test]
fn history_survives_a_restart_in_order_and_loads_lazily() {
    let dir = Dir::new();
    let cfg = Cfg::new().extra(ROOMY);
    let gw = start_in(&dir.0, &cfg, &[]);
    for n in 0..5 {
        gw.chat(USER, json!({"sessionId": "keep-1", "message": format!("first {n}")}));
    }
    gw.chat(USER, json!({"sessionId": "keep-2", "message": "second"}));
    let status = gw.get("/api/status", Some(ADMIN)).json();
    let store = &status["data"]["store"];
    assert_eq!(store["backend"], "sqlite");
    assert_eq!(store["state"], "ok");
    assert_eq!(store["durability"], "ack");
    assert!(store["commits"].as_u64().unwrap() >= 1 && store["writes"].as_u64().unwrap() >= 6, "{store}");
    assert!(store["sizeBytes"].as_u64().unwrap() > 0, "{store}");
    let before = history(&gw, "keep-1");
    assert_eq!(before.len(), 10);
    stop(gw);

    let gw = start_in(&dir.0, &cfg, &[]);
    // Nothing is loaded at start-up; the listing comes from the store.
    assert_eq!(sessions_in_memory(&gw), 0);
    let list = gw.get("/api/sessions", Some(USER)).json();
    let ids: Vec<&str> =
        list["data"]["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["keep-2", "keep-1"], "{list}");
    assert_eq!(list["data"]["sessions"][1]["messageCount"], 10);
    assert_eq!(sessions_in_memory(&gw), 0, "listing loads nothing");
    let after = history(&gw, "keep-1");
    assert_eq!(after, before, "same messages, same order");
    assert_eq!(sessions_in_memory(&gw), 1, "the session read is loaded, only it");
    // The conversation goes on where it was.
    gw.chat(USER, json!({"sessionId": "keep-1", "message": "after restart"}));
    let h = history(&gw, "keep-1");
    assert_eq!(user_texts(&h), ["first 0", "first 1", "first 2", "first 3", "first 4", "after restart"]);
    // Another key still cannot see it.
    assert_error(&gw.get("/api/sessions/keep-1", Some(OTHER)), 404, "INVALID_SESSION", "unknown session keep-1");
    stop(gw);
}

#[test]
fn reset_and_delete_reach_the_disk() {
    let dir = Dir::new();
    let cfg = Cfg::new();
    let gw = start_in(&dir.0, &cfg, &[]);
    gw.chat(USER, json!({"sessionId": "to-reset", "message": "one"}));
    gw.chat(USER, json!({"sessionId": "to-delete", "message": "two"}));
    gw.chat(USER, json!({"sessionId": "to-model", "message": "three"}));
    let act = |id: &str, body: Value| {
        let r = gw.post(&format!("/api/sessions/{id}"), Some(USER), &body);
        assert_eq!(r.status(), 200, "{}", r.text());
    };
    act("to-reset", json!({"action": "reset"}));
    act("to-delete", json!({"action": "delete"}));
    act("to-model", json!({"action": "setModel", "model": "mock-large"}));
    stop(gw);
    let gw = start_in(&dir.0, &cfg, &[]);
    assert!(history(&gw, "to-reset").is_empty());
    assert_error(&gw.get("/api/sessions/to-delete", Some(USER)), 404, "INVALID_SESSION", "unknown session to-delete");
    let m = gw.get("/api/sessions/to-model", Some(USER)).json();
    assert_eq!(m["data"]["model"], "mock-large");
    // A session reset and restarted numbers on: a new turn is its only history.
    gw.chat(USER, json!({"sessionId": "to-reset", "message": "again"}));
    assert_eq!(user_texts(&history(&gw, "to-reset")), ["again"]);
    stop(gw);
}

#[test]
fn kill_9_during_24_busy_sessions_loses_no_acknowledged_turn() {
    let dir = Dir::new();
    let cfg = Cfg::new().workers(2).extra(ROOMY);
    let gw = start_in(&dir.0, &cfg, &[]);
    let addr = gw.addr();
    let stop_flag = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<Vec<usize>>>> = Arc::new(Mutex::new(vec![Vec::new(); 24]));
    let threads: Vec<_> = (0..24)
        .map(|i| {
            let (stop_flag, acked) = (stop_flag.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::open(addr);
                for n in 0.. {
                    if stop_flag.load(Ordering::Relaxed) {
                        return;
                    }
                    let body = json!({"sessionId": format!("busy-{i}"), "message": format!("t{i}-{n}")});
                    let req = req("POST", "/api/chat").key(USER).json(&body);
                    // After the kill the connection breaks: the thread ends.
                    let Some(resp) = conn.try_exchange(&req) else { return };
                    if resp.status() != 200 {
                        return;
                    }
                    acked.lock().unwrap()[i].push(n);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    gw.signal("KILL");
    stop_flag.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    drop(gw);
    let acked = acked.lock().unwrap().clone();
    let total: usize = acked.iter().map(Vec::len).sum();
    assert!(total >= 24, "the sessions did turns before the kill ({total})");

    let gw = start_in(&dir.0, &cfg, &[]);
    for (i, turns) in acked.iter().enumerate() {
        let h = history(&gw, &format!("busy-{i}"));
        let users = user_texts(&h);
        // Every acknowledged turn, once, in order; at most the one in flight beyond.
        let expected: Vec<String> = turns.iter().map(|n| format!("t{i}-{n}")).collect();
        assert!(users.len() == expected.len() || users.len() == expected.len() + 1, "session {i}: {users:?}");
        assert_eq!(users[..expected.len()], expected[..], "session {i}");
        // Each user message is followed by its reply.
        for pair in h.chunks(2) {
            assert_eq!((pair[0].0.as_str(), pair.get(1).map(|p| p.0.as_str())), ("user", Some("assistant")));
        }
    }
    stop(gw);
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let dupes: i64 = conn
        .query_row(
            "SELECT count(*) FROM (SELECT t.session, m.value ->> 'content' AS content \
             FROM turns t, json_each(t.messages) m WHERE m.value ->> 'role' = 'user' \
             GROUP BY t.session, content HAVING count(*) > 1)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(dupes, 0, "no message stored twice");
}

#[test]
fn a_database_from_a_newer_clawgate_is_refused_naming_both_versions() {
    let dir = Dir::new();
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let file = TempFile::new(&Cfg::new().toml());
    let (status, stderr, _) = run_bin_in(Some(&dir.0), &["--config", &file.display()], &[], Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&dir.db().display().to_string()), "names the file: {stderr}");
    assert!(stderr.contains("schema version 99") && stderr.contains("newer clawgate"), "{stderr}");
    assert!(stderr.contains(&format!("up to {}", clawgate::store::SCHEMA_VERSION)), "{stderr}");
}

#[test]
fn a_corrupt_or_locked_file_and_a_read_only_directory_are_refused_at_start_up() {
    // Not a database.
    let dir = Dir::new();
    std::fs::write(dir.db(), vec![0x5a; 16384]).unwrap();
    let file = TempFile::new(&Cfg::new().toml());
    let (status, stderr, _) = run_bin_in(Some(&dir.0), &["--config", &file.display()], &[], Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&dir.db().display().to_string()) && stderr.contains("not a database"), "{stderr}");

    // Held by a running clawgate.
    let dir = Dir::new();
    let gw = start_in(&dir.0, &Cfg::new(), &[]);
    let (status, stderr, _) = run_bin_in(Some(&dir.0), &["--config", &file.display()], &[], Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("in use by another process") && stderr.contains("clawgate.db"), "{stderr}");
    drop(gw);

    // A directory the gateway may not write (as root, run it as `nobody`: root
    // writes anywhere).
    let dir = Dir::new();
    let ro = dir.0.join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    let toml = Cfg::new().extra(&format!("[store]\npath = \"{}/clawgate.db\"\n", ro.display())).toml();
    let cfg_path = dir.0.join("clawgate.toml");
    std::fs::write(&cfg_path, toml).unwrap();
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(bin());
        c
    } else {
        Command::new(bin())
    };
    let out = cmd.arg("--config").arg(&cfg_path).current_dir(&ro).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("{}/clawgate.db", ro.display())), "names the file: {stderr}");
    assert!(stderr.contains("is not writable") && stderr.contains("Permission denied"), "{stderr}");
}

#[test]
fn a_full_disk_fails_turns_with_503_keeps_reads_and_recovers_by_itself() {
    let dir = Dir::new();
    let cfg = Cfg::new().extra(ROOMY).server("max_body_bytes = 4194304");
    // A file-size limit stands in for a full disk: writes past it fail with EFBIG.
    let gw = start_in(&dir.0, &cfg, &["prlimit", "--fsize=262144:unlimited"]);
    gw.chat(USER, json!({"sessionId": "full", "message": "small"}));
    let big = "x".repeat(60_000);
    let mut refused = None;
    for n in 0..20 {
        let r = gw.post("/api/chat", Some(USER), &json!({"sessionId": "full", "message": format!("{n} {big}")}));
        if r.status() != 200 {
            refused = Some((n, r));
            break;
        }
    }
    let (n, resp) = refused.expect("a write past the limit fails");
    assert_eq!(resp.status(), 503, "{}", resp.text());
    assert_eq!(resp.json()["error"]["code"], "OVERLOADED");
    assert_eq!(resp.header("retry-after"), Some("1"));
    let health = gw.get("/health/detailed", Some(ADMIN)).json();
    assert_eq!(health["data"]["store"]["state"], "degraded", "{health}");
    assert_eq!(health["data"]["status"], "degraded");
    // Not ready for new traffic while writes fail; still alive.
    let ready = gw.get("/health/ready", None);
    assert_eq!(ready.status(), 503, "{}", ready.text());
    assert_eq!(ready.json()["status"], "not_ready");
    assert!(ready.json()["reasons"][0].as_str().unwrap().starts_with("store sqlite is degraded"), "{}", ready.text());
    assert_eq!(gw.get("/health/live", None).status(), 200);
    // Reads keep working; the refused turn is in no history.
    let h = history(&gw, "full");
    assert_eq!(user_texts(&h).len(), n + 1, "only the acknowledged turns");
    // The disk comes back: so does the store, by itself.
    let ok = Command::new("prlimit").args(["--pid", &gw.pid().to_string(), "--fsize=unlimited"]).status().unwrap();
    assert!(ok.success());
    gw.chat(USER, json!({"sessionId": "full", "message": "after"}));
    let health = gw.get("/health/detailed", Some(ADMIN)).json();
    assert_eq!(health["data"]["store"]["state"], "ok", "{health}");
    assert_eq!(gw.get("/health/ready", None).text(), r#"{"status":"ready"}"#);
    let users = user_texts(&history(&gw, "full"));
    assert_eq!(users.len(), n + 2);
    assert_eq!(users.last().map(String::as_str), Some("after"));
    stop(gw);
}

#[test]
fn backup_taken_under_load_restores() {
    let dir = Dir::new();
    let cfg = Cfg::new().workers(2).extra(ROOMY);
    let gw = start_in(&dir.0, &cfg, &[]);
    let addr = gw.addr();
    let stop_flag = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|i| {
            let stop_flag = stop_flag.clone();
            std::thread::spawn(move || {
                let mut conn = Conn::open(addr);
                let mut n = 0;
                while !stop_flag.load(Ordering::Relaxed) {
                    let body = json!({"sessionId": format!("load-{i}"), "message": format!("m{n}")});
                    let r = conn.exchange(&req("POST", "/api/chat").key(USER).json(&body));
                    assert_eq!(r.status(), 200);
                    n += 1;
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let file = TempFile::new(&cfg.toml());
    let dest = dir.0.join("backup.db");
    let started = Instant::now();
    let (status, stderr, stdout) = run_bin_in(
        Some(&dir.0),
        &["--config", &file.display(), "backup", &dest.display().to_string()],
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stdout.starts_with("backed up ") && stdout.contains(" sessions, "), "{stdout}");
    assert!(started.elapsed() < Duration::from_secs(60));
    stop_flag.store(true, Ordering::Relaxed);
    let turns: usize = load.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(turns > 0);
    stop(gw);

    let copy = rusqlite::Connection::open(&dest).unwrap();
    let check: String = copy.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    drop(copy);
    // A gateway started on the backup serves its sessions, each history whole: every
    // user message has its reply (a snapshot never splits a turn).
    let restored = Dir::new();
    std::fs::copy(&dest, restored.db()).unwrap();
    let gw = start_in(&restored.0, &cfg, &[]);
    let list = gw.get("/api/sessions", Some(ADMIN)).json();
    let n = list["data"]["sessions"].as_array().unwrap().len();
    assert!(n >= 1, "{list}");
    for i in 0..4 {
        let r = gw.get(&format!("/api/sessions/load-{i}"), Some(USER));
        if r.status() == 404 {
            continue;
        }
        let h = history(&gw, &format!("load-{i}"));
        assert_eq!(h.len() % 2, 0);
        let users = user_texts(&h);
        let expected: Vec<String> = (0..users.len()).map(|n| format!("m{n}")).collect();
        assert_eq!(users, expected);
    }
    stop(gw);
}

#[test]
fn async_durability_and_the_memory_backend() {
    // async: acknowledged before the commit, still written (a clean stop keeps it).
    let dir = Dir::new();
    let cfg = Cfg::new().extra("[store]\ndurability = \"async\"\n");
    let gw = start_in(&dir.0, &cfg, &[]);
    gw.chat(USER, json!({"sessionId": "a-1", "message": "kept"}));
    assert_eq!(gw.get("/api/status", Some(ADMIN)).json()["data"]["store"]["durability"], "async");
    stop(gw);
    let gw = start_in(&dir.0, &cfg, &[]);
    assert_eq!(user_texts(&history(&gw, "a-1")), ["kept"]);
    stop(gw);

    // memory: nothing on disk, nothing after a restart.
    let dir = Dir::new();
    let cfg = Cfg::new().extra("[store]\nbackend = \"memory\"\n");
    let gw = start_in(&dir.0, &cfg, &[]);
    gw.chat(USER, json!({"sessionId": "m-1", "message": "gone"}));
    assert_eq!(gw.get("/api/status", Some(ADMIN)).json()["data"]["store"]["backend"], "memory");
    stop(gw);
    assert!(!dir.db().exists());
    let gw = start_in(&dir.0, &cfg, &[]);
    assert_error(&gw.get("/api/sessions/m-1", Some(USER)), 404, "INVALID_SESSION", "unknown session m-1");
    stop(gw);
}
