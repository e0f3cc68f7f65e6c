#!/usr/bin/env bash
# Hostile upstream stream (issue 16): an upstream that streams EVENTS (50,000) SSE events
# of about 1 KB each, as fast as it can, to CLIENTS (10) clients at once, for ROUNDS (4)
# rounds, while the gateway's RSS is sampled every half second, in one command:
#
#   bash loadtest/hostile_stream.sh                   # about 2-10 minutes
#
# Builds release (unless BIN_DIR is given); starts mock_upstream and clawgate
# (workers = 2) on 127.0.0.1 with free ports; for each front door in MODES ("api v1":
# /api/chat with "stream": true, /v1/chat/completions with "stream": true, the latter a
# pass-through) starts a fresh clawgate and runs ROUNDS rounds. A round: CLIENTS python3
# clients start at the same instant, each asks for one streamed turn whose upstream
# answer is EVENTS content chunks of WORD_BYTES bytes (the mock's
# `[fault:chunks=N]` directive repeating the user message's words, so about 1 KB per
# upstream event with the JSON around it) and reads as fast as it can; the round ends
# when every client has ended, or after ROUND_TIMEOUT seconds (then the clients left
# are stopped); then SETTLE seconds with no traffic. VmRSS is read from
# /proc/PID/status every 0.5 s throughout. Each client reports its status, the bytes
# and events it read and how the stream ended (complete, an error event and its code,
# a connection cut, a timeout). Writes loadtest/results/hostile-stream-<date>-<commit>.md:
# per round RSS at the start, peak, at the end of the streams, 5 s later and at the end
# of the settle; the clients' outcomes; every sample; the gateway's log warnings; the
# exact command and config. Everything it starts is stopped by PID when it exits.
#
# Knobs (environment): ROUNDS=4 CLIENTS=10 EVENTS=50000 WORD_BYTES=800 MODES="api v1"
# ROUND_TIMEOUT=60 READ_TIMEOUT=30 (a client gives up after that long with nothing
# read) SETTLE=20 (longer than the default sse_resume_window_ms, 15 s, so a turn left
# running by a gone client is seen to stop, or not) WORKERS=2 MOCK_WORKERS=1
# BIN_DIR=<dir with clawgate> (skip the build: measure another build, e.g. an old
# commit's) MOCK_BIN_DIR=<dir with mock_upstream> (default BIN_DIR) GATEWAY_COMMIT=<what
# BIN_DIR's clawgate was built from, for the file name and header> SERVER_EXTRA=<TOML
# lines added to [server], e.g. "max_memory_mb = 512"; none by default, so that builds
# older than server.max_reply_bytes (e295929) accept the config> EXTRA_TOML=<appended
# at the end> QUIET_CORES=0.3 QUIET_BUDGET=60 (before each round, wait that long at most
# for the machine to be quiet) OUT=<results file>.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source-path=SCRIPTDIR/.. source=loadtest/lib.sh
. "$root/loadtest/lib.sh"

knob_names=(ROUNDS CLIENTS EVENTS WORD_BYTES MODES ROUND_TIMEOUT READ_TIMEOUT SETTLE WORKERS MOCK_WORKERS
  BIN_DIR MOCK_BIN_DIR GATEWAY_COMMIT SERVER_EXTRA EXTRA_TOML QUIET_CORES QUIET_BUDGET OUT)
# The command as given (the knobs set in the environment), for the results file.
given=""
for k in "${knob_names[@]}"; do
  if [ -n "${!k+x}" ]; then given+="$k=$(quote "${!k}") "; fi
done
given+="bash loadtest/hostile_stream.sh"

ROUNDS=${ROUNDS:-4}
CLIENTS=${CLIENTS:-10}
EVENTS=${EVENTS:-50000}
WORD_BYTES=${WORD_BYTES:-800}
MODES=${MODES:-api v1}
ROUND_TIMEOUT=${ROUND_TIMEOUT:-60}
SETTLE=${SETTLE:-20}
WORKERS=${WORKERS:-2}
MOCK_WORKERS=${MOCK_WORKERS:-1}
QUIET_CORES=${QUIET_CORES:-0.3}
QUIET_BUDGET=${QUIET_BUDGET:-60}
READ_TIMEOUT=${READ_TIMEOUT:-30}
SERVER_EXTRA=${SERVER_EXTRA:-}
EXTRA_TOML=${EXTRA_TOML:-}
started=$(date +%s)

command -v python3 >/dev/null || { echo "hostile_stream.sh needs python3" >&2; exit 1; }
for m in $MODES; do
  case $m in api | v1) ;; *) echo "MODES: unknown mode '$m' (api, v1)" >&2; exit 1 ;; esac
done

if [ -n "${BIN_DIR:-}" ]; then
  BIN=$BIN_DIR
  GATEWAY_COMMIT=${GATEWAY_COMMIT:-custom}
  echo "== using $BIN/clawgate (built from $GATEWAY_COMMIT)"
else
  echo "== build (release)"
  cargo build --release --bin clawgate --bin mock_upstream
  BIN="${CARGO_TARGET_DIR:-$root/target}/release"
  GATEWAY_COMMIT=${GATEWAY_COMMIT:-$(head_commit)}
  src_dirty && GATEWAY_COMMIT+="-dirty"
fi
MOCK_BIN=${MOCK_BIN_DIR:-$BIN}
for f in "$BIN/clawgate" "$MOCK_BIN/mock_upstream"; do
  [ -x "$f" ] || { echo "missing $f" >&2; exit 1; }
done

# ---------------------------------------------------------------------------------
# Processes: started here, stopped by PID on exit
init_work clawgate-hostile "logs and raw results"

# ---------------------------------------------------------------------------------
# The client: one streamed turn, read as fast as it can; one JSON line of results.
cat >"$work/client.py" <<'PY'
import http.client, json, socket, sys, time

host, port, path, body_file, key, deadline, start_at, out, mode, rnd, label, read_timeout = sys.argv[1:13]
deadline, start_at, read_timeout = float(deadline), float(start_at), float(read_timeout)
body = open(body_file, "rb").read()
res = {"mode": mode, "round": int(rnd), "client": label, "status": None, "bytes": 0, "events": 0, "end": None, "ttfb_s": None, "secs": None}
recent, recent_len = [], 0  # the last ~64 KB read, to classify the end


def last_events(n=4):
    data = b"".join(recent).replace(b"\r\n", b"\n")
    evs = [e for e in data.split(b"\n\n") if e.strip()]
    return evs[-n:]


def data_of(ev):
    lines = [l[5:].lstrip() for l in ev.split(b"\n") if l.startswith(b"data:")]
    return b"\n".join(lines)


def error_text(obj):
    """An error event's code and message, for both front doors' shapes."""
    if not isinstance(obj, dict):
        return None
    if obj.get("type") == "error":
        return f"{obj.get('code') or obj.get('error', {}).get('code')}: {str(obj.get('message') or obj.get('error'))[:80]}"
    err = obj.get("error")
    if isinstance(err, dict):
        return f"{err.get('code') or err.get('type')}: {str(err.get('message'))[:80]}"
    return None


def classify():
    evs = last_events()
    if not evs:
        return "no events"
    errs, final = [], None
    for ev in evs:
        d = data_of(ev)
        if d == b"[DONE]":
            final = "[DONE]"
            continue
        try:
            obj = json.loads(d)
        except ValueError:
            final = "unparsed"
            continue
        e = error_text(obj)
        if e:
            errs.append(e)
            final = "error"
        elif isinstance(obj, dict) and obj.get("type") == "done":
            final = "done"
        else:
            final = "chunk"
    if errs:
        return "error event " + errs[-1] + (" then [DONE]" if final == "[DONE]" else "")
    if final in ("done", "[DONE]"):
        return f"complete ({final})"
    return "ended without an end event"


while time.time() < start_at:
    time.sleep(0.002)
t0 = time.monotonic()
try:
    conn = http.client.HTTPConnection(host, int(port), timeout=read_timeout)
    conn.request("POST", path, body=body, headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json", "Accept": "text/event-stream"})
    resp = conn.getresponse()
    res["status"] = resp.status
    res["ttfb_s"] = round(time.monotonic() - t0, 3)
    if resp.status != 200:
        text = resp.read(65536)
        try:
            res["end"] = f"HTTP {resp.status} " + (error_text(json.loads(text)) or text[:80].decode(errors="replace"))
        except ValueError:
            res["end"] = f"HTTP {resp.status} {text[:80]!r}"
    else:
        prev = b""
        while True:
            if time.monotonic() - t0 > deadline:
                res["end"] = f"client deadline ({deadline:.0f} s) passed, still streaming"
                break
            data = resp.read1(65536)
            if not data:
                res["end"] = classify()
                break
            res["bytes"] += len(data)
            res["events"] += (prev + data).count(b"\n\n") - prev.count(b"\n\n")
            prev = data[-1:]
            recent.append(data)
            recent_len += len(data)
            while recent_len - len(recent[0]) > 65536:
                recent_len -= len(recent.pop(0))
except socket.timeout:
    res["end"] = f"read timeout ({read_timeout:.0f} s with nothing; status {res['status']}), after: " + (classify() if recent else "nothing")
except (http.client.IncompleteRead, ConnectionError, http.client.HTTPException, OSError) as e:
    res["end"] = f"connection cut ({type(e).__name__}), after: " + (classify() if recent else "nothing")
res["secs"] = round(time.monotonic() - t0, 3)
open(out, "w").write(json.dumps(res) + "\n")
PY

# The request bodies: the user message is WORD_BYTES-byte words that the mock repeats
# into EVENTS content chunks (its reply is "Echo: <message>", one word per chunk; one
# chunk in words+1 is the 5-byte "Echo:").
python3 - "$work" "$EVENTS" "$WORD_BYTES" <<'PY'
import json, sys
work, events, word = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
words = [f"w{i:02d}" + "x" * max(0, word - 3) for i in range(19)]
msg = " ".join(words) + f" [fault:chunks={events}]"
open(f"{work}/body-api.json", "w").write(json.dumps(
    {"model": "gpt-4o-mini", "message": msg, "sessionId": "SESSION", "stream": True}))
open(f"{work}/body-v1.json", "w").write(json.dumps(
    {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": msg}]}))
PY

echo "== mock_upstream ($MOCK_WORKERS workers)"
serve "$work/mock.log" "$MOCK_BIN/mock_upstream" --listen 127.0.0.1:0 --workers "$MOCK_WORKERS"
mock_pid=$served_pid mock_addr=$served_addr

KEY=sk-hostile-client
{
  cat <<EOF
# clawgate config (generated by loadtest/hostile_stream.sh): only keys every build since
# before issue 16 accepts; the store (where the build has one) is its default, a SQLite
# file in the gateway's working directory (the run's directory).
[server]
listen = "127.0.0.1:0"
workers = $WORKERS
EOF
  [ -n "$SERVER_EXTRA" ] && printf '%s\n' "$SERVER_EXTRA"
  cat <<EOF

[[keys]]
name = "hostile"
key = "$KEY"
role = "user"

[[providers]]
name = "mockai"
kind = "openai"
base_url = "http://$mock_addr/v1"
api_key = "sk-upstream-mock"

[[models]]
id = "gpt-4o-mini"
provider = "mockai"
default = true
EOF
  [ -n "$EXTRA_TOML" ] && printf '\n%s\n' "$EXTRA_TOML"
} >"$work/clawgate.toml"

: >"$work/rss.tsv"
: >"$work/rounds.tsv"
: >"$work/clients.jsonl"

for mode in $MODES; do
  dir="$work/$mode"
  mkdir -p "$dir"
  case $mode in
    api) path=/api/chat ;;
    v1) path=/v1/chat/completions ;;
  esac

  echo "== clawgate for $mode ($path), workers = $WORKERS"
  serve "$dir/clawgate.log" in_dir "$dir" "$BIN/clawgate" --config "$work/clawgate.toml"
  cg_pid=$served_pid cg_addr=$served_addr
  cg_host=${cg_addr%:*}; cg_port=${cg_addr##*:}
  sleep 1
  echo "$mode idle RSS: $(rss_kb "$cg_pid" 0) kB"
  printf '%s\tidle\t%s\n' "$mode" "$(rss_kb "$cg_pid" 0)" >>"$work/rounds.tsv"

  dead=""
  for ((r = 1; r <= ROUNDS; r++)); do
    # Wait (within QUIET_BUDGET seconds) for the machine to be quiet: other work on the
    # cores slows the streams (and the clients) down.
    quiet_waited=0
    wait_quiet "running anyway"
    for ((c = 1; c <= CLIENTS; c++)); do
      sed "s/SESSION/hs-$mode-r$r-c$c/" "$work/body-$mode.json" >"$dir/body-r$r-c$c.json"
    done
    start_kb=$(rss_kb "$cg_pid" 0)
    t0=$(date +%s%N)
    start_at=$(python3 -c 'import time; print(time.time() + 0.3)')
    cpids=()
    for ((c = 1; c <= CLIENTS; c++)); do
      python3 "$work/client.py" "$cg_host" "$cg_port" "$path" "$dir/body-r$r-c$c.json" "$KEY" \
        "$((ROUND_TIMEOUT - 2))" "$start_at" "$dir/client-r$r-c$c.json" "$mode" "$r" "$c" "$READ_TIMEOUT" 2>"$dir/client-r$r-c$c.err" &
      cpids+=($!); pids+=($!)
    done
    # Streams: RSS every 0.5 s until every client ended (or ROUND_TIMEOUT).
    while :; do
      now_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
      if ! kill -0 "$cg_pid" 2>/dev/null; then dead="died in round $r ($mode)"; break; fi
      printf '%s\t%s\t%s\t%s\tstream\n' "$mode" "$r" "$now_ms" "$(rss_kb "$cg_pid" 0)" >>"$work/rss.tsv"
      alive=0
      for p in "${cpids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
      [ "$alive" -eq 0 ] && break
      if [ "$now_ms" -ge $((ROUND_TIMEOUT * 1000)) ]; then
        echo "   round $r: $alive clients still running after ${ROUND_TIMEOUT}s: stopped"
        for p in "${cpids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
        break
      fi
      sleep 0.5
    done
    for p in "${cpids[@]}"; do wait "$p" 2>/dev/null || true; forget "$p"; done
    streams_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    end_kb=$(rss_kb "$cg_pid" 0)
    hwm_kb=$(status_kb "$cg_pid" VmHWM 0)
    for ((c = 1; c <= CLIENTS; c++)); do
      if [ -s "$dir/client-r$r-c$c.json" ]; then
        cat "$dir/client-r$r-c$c.json" >>"$work/clients.jsonl"
      else
        printf '{"mode":"%s","round":%d,"client":"%d","status":null,"bytes":0,"events":0,"end":"no report (stopped, or crashed: %s)","ttfb_s":null,"secs":null}\n' \
          "$mode" "$r" "$c" "$(tr '\n"' ' _' <"$dir/client-r$r-c$c.err" | tail -c 150)" >>"$work/clients.jsonl"
      fi
    done
    [ -n "$dead" ] && break
    # Settle: no traffic, RSS every 0.5 s.
    s0=$(date +%s%N)
    while [ $(( ($(date +%s%N) - s0) / 1000000 )) -lt $((SETTLE * 1000)) ]; do
      sleep 0.5
      if ! kill -0 "$cg_pid" 2>/dev/null; then dead="died in round $r's settle ($mode)"; break; fi
      printf '%s\t%s\t%s\t%s\tsettle\n' "$mode" "$r" "$(( ($(date +%s%N) - t0) / 1000000 ))" "$(rss_kb "$cg_pid" 0)" >>"$work/rss.tsv"
    done
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$r" "$start_kb" "$end_kb" "$streams_ms" "$hwm_kb" "$busy_before/${quiet_waited}s" >>"$work/rounds.tsv"
    echo "   $mode round $r: start $((start_kb / 1024)) MB, end of streams $((end_kb / 1024)) MB after $((streams_ms / 1000)) s, after settle $(($(rss_kb "$cg_pid" 0) / 1024)) MB"
    [ -n "$dead" ] && break
  done
  if [ -n "$dead" ]; then
    echo "   clawgate $dead: $(tail -3 "$dir/clawgate.log")" >&2
    printf '%s\tdied\t%s\n' "$mode" "$dead" >>"$work/rounds.tsv"
    forget "$cg_pid"
  else
    curl -s -H "Authorization: Bearer $KEY" "http://$cg_addr/api/status" >"$dir/status.json" || true
    kill -TERM "$cg_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$cg_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$cg_pid" 2>/dev/null || true
    wait "$cg_pid" 2>/dev/null || true
    forget "$cg_pid"
  fi
done
mock_peak=$(status_kb "$mock_pid" VmHWM 0)

# ---------------------------------------------------------------------------------
# Results file
day=$(date -u +%Y-%m-%d)
mkdir -p loadtest/results
OUT=${OUT:-loadtest/results/hostile-stream-$day-$GATEWAY_COMMIT.md}
{
  echo "commit=$GATEWAY_COMMIT"
  echo "repo_commit=$(head_commit)"
  echo "clawgate=$BIN/clawgate"
  echo "mock=$MOCK_BIN/mock_upstream"
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine=$(machine_summary)"
  echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "knobs=ROUNDS=$ROUNDS CLIENTS=$CLIENTS EVENTS=$EVENTS WORD_BYTES=$WORD_BYTES MODES=\"$MODES\" ROUND_TIMEOUT=$ROUND_TIMEOUT SETTLE=$SETTLE WORKERS=$WORKERS MOCK_WORKERS=$MOCK_WORKERS"
  echo "command=$given"
  echo "mock_peak_kb=$mock_peak"
  echo "elapsed_s=$(( $(date +%s) - started ))"
} >"$work/meta.txt"
python3 - "$work" "$OUT" "$MODES" <<'PY'
import collections, json, os, re, sys

work, out, modes = sys.argv[1], sys.argv[2], sys.argv[3].split()
meta = dict(l.split("=", 1) for l in open(f"{work}/meta.txt").read().splitlines() if "=" in l)
samples = collections.defaultdict(list)  # (mode, round) -> [(ms, kb, phase)]
for l in open(f"{work}/rss.tsv").read().splitlines():
    m, r, ms, kb, ph = l.split("\t")
    samples[(m, int(r))].append((int(ms), int(kb), ph))
idle, died, rounds = {}, {}, []
for l in open(f"{work}/rounds.tsv").read().splitlines():
    f = l.split("\t")
    if f[1] == "idle":
        idle[f[0]] = int(f[2])
    elif f[1] == "died":
        died[f[0]] = f[2]
    else:
        rounds.append((f[0], int(f[1]), int(f[2]), int(f[3]), int(f[4]), int(f[5]), f[6]))
clients = collections.defaultdict(list)
for l in open(f"{work}/clients.jsonl").read().splitlines():
    c = json.loads(l)
    clients[(c["mode"], c["round"])].append(c)

MB = lambda kb: f"{kb / 1024:,.0f}"
door = {"api": "`/api/chat` stream", "v1": "`/v1/chat/completions` stream:true (pass-through)"}


def outcome(cs):
    """The clients' outcomes, grouped: '10x error event UPSTREAM_ERROR (16.4-16.5 MB, 3.1-4.0 s)'."""
    groups = collections.defaultdict(list)
    for c in cs:
        end = re.sub(r"\d+ bytes", "N bytes", c["end"] or "?")
        groups[end].append(c)
    parts = []
    for end, g in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        b = [c["bytes"] / 1e6 for c in g]
        s = [c["secs"] or 0 for c in g]
        parts.append(f"{len(g)}x {end} ({min(b):.1f}-{max(b):.1f} MB, {min(s):.1f}-{max(s):.1f} s)")
    return "; ".join(parts)


def at(series, ms):
    """The first sample at or after ms (else the last)."""
    for t, kb, _ in series:
        if t >= ms:
            return kb
    return series[-1][1] if series else 0


L = [
    f"# Hostile upstream stream, clawgate {meta['commit']}, {meta['date']}",
    "",
    f"`{meta['command']}` ({meta['knobs']}). Each round: the clients start at the same",
    "instant, each asks for one streamed turn whose upstream (mock_upstream, on 127.0.0.1)",
    "streams its content chunks as fast as it can (about 1 KB per upstream event), and reads",
    "as fast as it can (python3 `http.client`, `read1`). The round ends when every client",
    "has; then nothing runs for the settle. The gateway's VmRSS is read every 0.5 s.",
    "Each front door gets a fresh gateway.",
    "",
    f"- clawgate: `{meta['clawgate']}` (built from {meta['commit']}); mock_upstream: `{meta['mock']}`;",
    f"  repository at {meta['repo_commit']}",
    f"- machine: {meta['machine']}",
    f"- load average after: {meta['load_after']}",
    f"- mock_upstream peak RSS: {MB(int(meta['mock_peak_kb']))} MB; {meta['elapsed_s']} s in all",
    "",
]
for m in modes:
    rs = [x for x in rounds if x[0] == m]
    L += [f"## {door[m]}", "", f"Idle RSS before round 1: {MB(idle.get(m, 0))} MB.", ""]
    L += ["| round | start MB | peak MB | VmHWM MB | end of streams MB | +5 s MB | end of settle MB | streams s | busy before | clients |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r, start, end, ms, hwm, busy in rs:
        s = samples[(m, r)]
        peak = max([kb for _, kb, _ in s] + [start, end])
        settle = [x for x in s if x[2] == "settle"]
        plus5 = at(settle, ms + 5000) if settle else 0
        last = settle[-1][1] if settle else end
        L.append(f"| {r} | {MB(start)} | {MB(peak)} | {MB(hwm)} | {MB(end)} | {MB(plus5)} | {MB(last)} | {ms / 1000:.1f} | {busy.split('/')[0]} | {outcome(clients[(m, r)])} |")
    if m in died:
        L += ["", f"**clawgate {died[m]}** (see its log below)."]
    L += ["", "Busy before: cores busy on the machine (not ours) just before the round, after",
          "waiting up to QUIET_BUDGET seconds for it to fall under QUIET_CORES.",
          "Peak is the highest 0.5 s sample of the round (streams and settle); VmHWM is the",
          "process's high-water mark since it started, read at the end of the round's streams",
          "(it catches a peak between samples).", "", "Every sample (round: seconds since the round began / MB; `|` marks the end of the streams):", "", "```"]
    for _, r, *_ in rs:
        s = samples[(m, r)]
        txt, marked = [], False
        for t, kb, ph in s:
            if ph == "settle" and not marked:
                txt.append("|")
                marked = True
            txt.append(f"{t / 1000:.1f}/{kb / 1024:.0f}")
        L.append(f"r{r}: " + " ".join(txt))
    L += ["```", ""]
    L += ["Clients, one line each (status, bytes, events, seconds, end):", "", "```"]
    for _, r, *_ in rs:
        for c in sorted(clients[(m, r)], key=lambda c: int(c["client"])):
            L.append(f"r{r} c{c['client']:>2}: {c['status']} {c['bytes']:>10} B {c['events']:>6} ev {c['secs'] or 0:6.2f} s  {c['end']}")
    L += ["```", ""]
    log = open(f"{work}/{m}/clawgate.log", errors="replace").read().splitlines()
    notable = [l for l in log if re.search(r"warn|error|panic|abort|overflow|killed", l, re.I)]
    L += [f"Gateway log: {len(log)} lines, {len(notable)} with warn/error/panic."]
    if notable:
        shapes = collections.Counter(re.sub(r"\d+", "N", re.sub(r"^\S+ ", "", l))[:160] for l in notable)
        L += ["", "```"] + [f"{n:>5}x {s}" for s, n in shapes.most_common(8)] + ["```"]
    try:
        totals = json.load(open(f"{work}/{m}/status.json"))["data"]
        L += ["", "At the end (`GET /api/status`): `" + json.dumps({k: totals.get(k) for k in ("totals", "store") if k in totals}, sort_keys=True) + "`"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    L.append("")
body = json.load(open(f"{work}/body-api.json"))
L += [
    "## Request and config",
    "",
    f"`/api/chat` body: `{{\"model\":\"gpt-4o-mini\",\"message\":\"<19 words of {len(body['message'].split()[0])} bytes> "
    + re.search(r"\[fault:[^\]]*\]", body["message"]).group(0)
    + "\",\"sessionId\":\"hs-api-r<round>-c<client>\",\"stream\":true}`; `/v1` the same message as the one",
    "user message, `\"stream\":true`. The mock answers `Echo: <message>` in exactly that many",
    "content chunks, one word each.",
    "",
    "Config:",
    "",
    "```toml",
    re.sub(r"127\.0\.0\.1:\d+/v1", "$MOCK/v1", open(f"{work}/clawgate.toml").read().strip()),
    "```",
]
open(out, "w").write("\n".join(L) + "\n")
PY
echo "== wrote $OUT ($(( $(date +%s) - started )) s)"
