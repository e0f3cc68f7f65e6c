#!/usr/bin/env bash
# clawgate side by side with nginx and with the mock upstream called directly, on this
# machine, in one command (about 14 minutes on 2 cores, 17 with a clean build):
#
#   bash loadtest/run.sh
#
# Builds release; installs nginx, wrk and openssl with apt if missing; starts mock_upstream,
# clawgate (workers = 2, and a second one with workers = 1 for the scaling ratio) and
# nginx (2 workers, upstream keepalive pool to the same mock), all on 127.0.0.1 with
# free ports; runs every scenario against every target for ROUNDS rounds, rotating the
# order each round; and writes loadtest/results/<date>-<commit>.md (machine, commit,
# exact commands, tables, the issue 6, 13, 14 and 15 targets). For TLS (issue 15) it
# makes a private CA and a localhost leaf with openssl and runs one more clawgate with
# [server.tls] beside an `ssl` server block of the same nginx; for the cost of metrics,
# two more clawgates with [metrics] enabled = true / false. Before each window it waits
# (within a total budget) for the machine to be quiet, since other work on the 2 cores moves
# every number; each window also records how much CPU was not ours. Everything it
# starts is stopped by PID when it exits. Knobs (environment): ROUNDS=3 DURATION=5
# WARMUP=1 LOADGEN_THREADS=2 CHUNK_MS=10 MOCK_WORKERS=2 QUIET_CORES=0.3
# QUIET_BUDGET=45 OUT=<results file> SCENARIOS="<names>" (only those scenarios, e.g.
# SCENARIOS="tls-64 metrics-64"; calibration is a name too; default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
LOADGEN_THREADS=${LOADGEN_THREADS:-2}
CHUNK_MS=${CHUNK_MS:-10}
MOCK_WORKERS=${MOCK_WORKERS:-2}
QUIET_CORES=${QUIET_CORES:-0.3}
QUIET_BUDGET=${QUIET_BUDGET:-45}
SCENARIOS=${SCENARIOS:-}
started=$(date +%s)

# Whether scenario $1 runs (SCENARIOS empty: all of them).
want() { [ -z "$SCENARIOS" ] || [[ " $SCENARIOS " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------------
# Tools
need_apt=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v python3 >/dev/null || need_apt+=(python3)
command -v openssl >/dev/null || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"; fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

echo "== build (release)"
cargo build --release --bin clawgate --bin mock_upstream --bin loadgen
# The commit the binaries were built from: read now, not when the results are written
# (work may go on in the tree during the run).
commit=$(git rev-parse --short=9 HEAD 2>/dev/null || echo unknown)
dirty=""
[ -n "$(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null || true)" ] && dirty=" (with uncommitted changes in src/ or Cargo.*)"
BIN="$root/target/release"

# ---------------------------------------------------------------------------------
# Processes: started here, stopped by PID on exit
work=$(mktemp -d /tmp/clawgate-loadtest.XXXXXX)
mkdir -p "$work/json"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  echo "== logs and raw JSON kept in $work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits for "listening on http://ADDR" (or https://) in a log file; prints ADDR.
wait_listening() {
  local log=$1 pid=$2 addr=""
  for _ in $(seq 100); do
    addr=$(grep -o 'listening on https\?://[0-9.:]*' "$log" 2>/dev/null | head -1 | sed 's#listening on https\?://##' || true)
    [ -n "$addr" ] && { echo "$addr"; return 0; }
    kill -0 "$pid" 2>/dev/null || { echo "process $pid died: $(cat "$log")" >&2; return 1; }
    sleep 0.1
  done
  echo "timed out waiting for $log" >&2
  return 1
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# TLS material for both servers (issue 15): a private CA and a leaf for localhost and
# 127.0.0.1 signed by it, both P-256 ECDSA, valid 2 days; the CA's key stays in $work.
echo "== TLS: private CA and a localhost leaf (P-256)"
tls=$work/tls
mkdir -p "$tls"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tls/ca.key" 2>/dev/null
openssl req -x509 -new -key "$tls/ca.key" -sha256 -days 2 -subj "/CN=clawgate loadtest CA" -out "$tls/ca.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tls/key.pem" 2>/dev/null
openssl req -new -key "$tls/key.pem" -subj "/CN=localhost" -out "$tls/leaf.csr" 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$tls/leaf.ext"
openssl x509 -req -in "$tls/leaf.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 2 -sha256 \
  -extfile "$tls/leaf.ext" -out "$tls/cert.pem" 2>/dev/null
openssl verify -CAfile "$tls/ca.pem" "$tls/cert.pem" >/dev/null

echo "== mock_upstream ($MOCK_WORKERS workers)"
"$BIN/mock_upstream" --listen 127.0.0.1:0 --workers "$MOCK_WORKERS" 2>"$work/mock.log" &
mock_pid=$!; pids+=("$mock_pid")
mock_addr=$(wait_listening "$work/mock.log" "$mock_pid")

KEY=sk-loadtest-client
ADMIN_KEY=sk-loadtest-admin
HOOK_SECRET=loadtest-hook-secret
write_config() { # workers file store-backend [database name]
  cat >"$2" <<EOF
# clawgate load-test config (generated by loadtest/run.sh)
[server]
listen = "127.0.0.1:0"
workers = $1

# sqlite: the default, durable store (every /api/chat turn committed before its
# answer); memory: sessions in memory only, for the side-by-side comparison.
[store]
backend = "$3"
path = "$work/${4:-clawgate-w$1}.db"

[[keys]]
name = "loadtest"
key = "$KEY"
role = "user"

[[keys]]
name = "loadtest-admin"
key = "$ADMIN_KEY"
role = "admin"

# /api/chat keeps one session per connection; two stored messages keep the upstream
# request close to the single-message call nginx proxies (3 messages instead of 1).
[sessions]
max_messages = 2

[[providers]]
name = "mockai"
kind = "openai"
base_url = "http://$mock_addr/v1"
api_key = "sk-upstream-mock"

[[models]]
id = "gpt-4o-mini"
provider = "mockai"
default = true

# The translated path: OpenAI requests to a model of another format (the mock speaks
# Anthropic's Messages API too), target clawgate-anthropic.
[[providers]]
name = "mockant"
kind = "anthropic"
base_url = "http://$mock_addr"
api_key = "sk-upstream-mock"

[[models]]
id = "claude-mock"
provider = "mockant"
upstream = "claude-sonnet-4"

# Channel webhooks (issue 14): a generic channel whose replies go to the mock's sink,
# which accepts every send like a platform would.
[[channels]]
name = "lt"
type = "generic"
secret = "$HOOK_SECRET"
callback_url = "http://$mock_addr/__mock/sink"
EOF
}
write_config 2 "$work/clawgate.toml" sqlite
write_config 1 "$work/clawgate-w1.toml" sqlite
write_config 2 "$work/clawgate-mem.toml" memory
# TLS (issue 15): the main config (its own database) plus [server.tls].
write_config 2 "$work/clawgate-tls.toml" sqlite clawgate-tls
printf '\n[server.tls]\ncert = "%s"\nkey = "%s"\n' "$tls/cert.pem" "$tls/key.pem" >>"$work/clawgate-tls.toml"
# The cost of counting for /metrics (issue 15): the memory-store config (no fsync noise
# in /api/chat) with [metrics] enabled = true and = false, nothing else different.
for m in true false; do
  write_config 2 "$work/clawgate-metrics-$m.toml" memory
  printf '\n[metrics]\nenabled = %s\n' "$m" >>"$work/clawgate-metrics-$m.toml"
done

echo "== clawgate (workers = 2, and workers = 1; workers = 2 with the memory store)"
"$BIN/clawgate" --config "$work/clawgate.toml" 2>"$work/clawgate.log" &
cg_pid=$!; pids+=("$cg_pid")
cg_addr=$(wait_listening "$work/clawgate.log" "$cg_pid")
"$BIN/clawgate" --config "$work/clawgate-w1.toml" 2>"$work/clawgate-w1.log" &
cg1_pid=$!; pids+=("$cg1_pid")
cg1_addr=$(wait_listening "$work/clawgate-w1.log" "$cg1_pid")
"$BIN/clawgate" --config "$work/clawgate-mem.toml" 2>"$work/clawgate-mem.log" &
cgm_pid=$!; pids+=("$cgm_pid")
cgm_addr=$(wait_listening "$work/clawgate-mem.log" "$cgm_pid")
echo "== clawgate with [server.tls]; clawgate with [metrics] enabled = true and = false"
"$BIN/clawgate" --config "$work/clawgate-tls.toml" 2>"$work/clawgate-tls.log" &
cgt_pid=$!; pids+=("$cgt_pid")
cgt_addr=$(wait_listening "$work/clawgate-tls.log" "$cgt_pid")
grep -q 'listening on https://' "$work/clawgate-tls.log" || { echo "the TLS clawgate does not listen on https://" >&2; exit 1; }
"$BIN/clawgate" --config "$work/clawgate-metrics-true.toml" 2>"$work/clawgate-metrics-true.log" &
cgon_pid=$!; pids+=("$cgon_pid")
cgon_addr=$(wait_listening "$work/clawgate-metrics-true.log" "$cgon_pid")
"$BIN/clawgate" --config "$work/clawgate-metrics-false.toml" 2>"$work/clawgate-metrics-false.log" &
cgoff_pid=$!; pids+=("$cgoff_pid")
cgoff_addr=$(wait_listening "$work/clawgate-metrics-false.log" "$cgoff_pid")

echo "== nginx (worker_processes 2, keepalive pool to the mock; plain and TLS)"
nginx_port=$(free_port)
nginx_tls_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
# nginx load-test config (generated by loadtest/run.sh): a plain reverse proxy to the
# same mock, with a keep-alive upstream pool and no response buffering (SSE); the same
# again terminating TLS (the clawgate TLS listener's certificate, nginx's defaults for
# sessions: tickets on, no shared session cache).
worker_processes 2;
daemon off;
user root;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  upstream mock {
    server $mock_addr;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
  server {
    listen 127.0.0.1:$nginx_tls_port ssl;
    ssl_certificate $tls/cert.pem;
    ssl_certificate_key $tls/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
EOF
"$NGINX" -e "$work/nginx/error.log" -p "$work/nginx" -c "$work/nginx/nginx.conf" &
nginx_pid=$!; pids+=("$nginx_pid")
for _ in $(seq 50); do
  curl -s -o /dev/null "http://127.0.0.1:$nginx_port/__mock/health" &&
    curl -s -o /dev/null --cacert "$tls/ca.pem" "https://localhost:$nginx_tls_port/__mock/health" && break
  kill -0 "$nginx_pid" 2>/dev/null || { cat "$work/nginx/error.log"; exit 1; }
  sleep 0.1
done

# Idle RSS, before any traffic.
sleep 1
idle_cg=$(rss_kb "$cg_pid"); idle_cg1=$(rss_kb "$cg1_pid"); idle_mock=$(rss_kb "$mock_pid")
idle_nginx=0
for p in $nginx_pid $(cat /proc/"$nginx_pid"/task/*/children 2>/dev/null); do
  idle_nginx=$((idle_nginx + $(rss_kb "$p")))
done
echo "idle RSS kB: clawgate(w2)=$idle_cg clawgate(w1)=$idle_cg1 nginx(tree)=$idle_nginx mock=$idle_mock"

# ---------------------------------------------------------------------------------
# Scenarios
AUTH="Authorization: Bearer $KEY"
MSG="Hello from the load test"
V1_BODY="{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"$MSG\"}]}"
API_BODY="{\"message\":\"$MSG\",\"sessionId\":\"lt-{conn}\"}"
STREAM_FAULT="[fault:chunks=20,chunk-ms=$CHUNK_MS]"
V1_STREAM="{\"model\":\"gpt-4o-mini\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"$MSG $STREAM_FAULT\"}]}"
API_STREAM="{\"message\":\"$MSG $STREAM_FAULT\",\"sessionId\":\"lt-sse-{conn}\",\"stream\":true}"
# The Anthropic front door on an OpenAI-format model and the Responses front door on an
# Anthropic-format model: both translated through the canonical turn (issue 12).
MESSAGES_BODY="{\"model\":\"gpt-4o-mini\",\"max_tokens\":256,\"messages\":[{\"role\":\"user\",\"content\":\"$MSG\"}]}"
MESSAGES_STREAM="{\"model\":\"gpt-4o-mini\",\"max_tokens\":256,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"$MSG $STREAM_FAULT\"}]}"
RESPONSES_BODY="{\"model\":\"claude-mock\",\"store\":false,\"input\":\"$MSG\"}"
RESPONSES_STREAM="{\"model\":\"claude-mock\",\"store\":false,\"stream\":true,\"input\":\"$MSG $STREAM_FAULT\"}"

url_of() { # target path
  case $1 in
    clawgate|clawgate-api|clawgate-anthropic|clawgate-messages|clawgate-responses|clawgate-hook) echo "http://$cg_addr$2" ;;
    clawgate-w1) echo "http://$cg1_addr$2" ;;
    clawgate-api-mem) echo "http://$cgm_addr$2" ;;
    clawgate-tls) echo "https://localhost:${cgt_addr##*:}$2" ;;
    clawgate-metrics-on|clawgate-api-metrics-on) echo "http://$cgon_addr$2" ;;
    clawgate-metrics-off|clawgate-api-metrics-off) echo "http://$cgoff_addr$2" ;;
    nginx) echo "http://127.0.0.1:$nginx_port$2" ;;
    nginx-tls) echo "https://localhost:$nginx_tls_port$2" ;;
    direct) echo "http://$mock_addr$2" ;;
  esac
}
watch_of() { # target
  case $1 in
    clawgate|clawgate-api|clawgate-anthropic|clawgate-messages|clawgate-responses|clawgate-hook) echo "--watch server=$cg_pid --watch mock=$mock_pid" ;;
    clawgate-w1) echo "--watch server=$cg1_pid --watch mock=$mock_pid" ;;
    clawgate-api-mem) echo "--watch server=$cgm_pid --watch mock=$mock_pid" ;;
    clawgate-tls) echo "--ca $tls/ca.pem --watch server=$cgt_pid --watch mock=$mock_pid" ;;
    clawgate-metrics-on|clawgate-api-metrics-on) echo "--watch server=$cgon_pid --watch mock=$mock_pid" ;;
    clawgate-metrics-off|clawgate-api-metrics-off) echo "--watch server=$cgoff_pid --watch mock=$mock_pid" ;;
    nginx) echo "--watch server=$nginx_pid --watch mock=$mock_pid" ;;
    nginx-tls) echo "--ca $tls/ca.pem --watch server=$nginx_pid --watch mock=$mock_pid" ;;
    direct) echo "--watch mock=$mock_pid" ;;
  esac
}

# Cores busy on the whole machine over half a second (our servers are idle between
# windows, so this is someone else's work).
busy_cores() {
  local a b
  a=$(awk '/^cpu / {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  sleep 0.5
  b=$(awk '/^cpu / {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  echo "$a $b" | awk -v n="$(nproc)" '{ t = $4 - $2; printf "%.2f", (t > 0 ? ($3 - $1) / t * n : 0) }'
}
# Keeps every core out of deep idle while held: PM QoS `/dev/cpu_dma_latency` = 0 makes
# the guest's cpuidle (haltpoll here) poll instead of halting. On this VM a wake-up
# from halt costs tens of microseconds per hop, which would otherwise dominate
# one-connection latency. Needs root; without it the "awake" windows are skipped.
awake_pid=""
awake_possible() { [ -w /dev/cpu_dma_latency ]; }
awake_start() {
  python3 -c 'import struct, time
f = open("/dev/cpu_dma_latency", "wb", buffering=0)
f.write(struct.pack("i", 0))
time.sleep(3600)' &
  awake_pid=$!; pids+=("$awake_pid")
  sleep 0.2
}
awake_stop() {
  local q keep=()
  [ -n "$awake_pid" ] || return 0
  kill "$awake_pid" 2>/dev/null || true; wait "$awake_pid" 2>/dev/null || true
  # Forget it, so the exit trap never signals a reused PID.
  for q in "${pids[@]}"; do [ "$q" = "$awake_pid" ] || keep+=("$q"); done
  pids=("${keep[@]}")
  awake_pid=""
}

quiet_waited=0
wait_quiet() {
  local b
  while :; do
    b=$(busy_cores)
    awk -v b="$b" -v q="$QUIET_CORES" 'BEGIN { exit !(b <= q) }' && return 0
    if [ "$quiet_waited" -ge "$QUIET_BUDGET" ]; then
      echo "   (machine busy: $b cores not ours; quiet-wait budget spent, measuring anyway)"
      return 0
    fi
    sleep 1; quiet_waited=$((quiet_waited + 2))
  done
}

: >"$work/commands.txt"
# run_one SCENARIO TARGET ROUND loadgen-args...
run_one() {
  local scen=$1 target=$2 round=$3; shift 3
  want "$scen" || return 0
  local out="$work/json/$scen--$target--r$round.json"
  # shellcheck disable=SC2046
  local cmd=("$BIN/loadgen" --label "$scen $target" --threads "$LOADGEN_THREADS" \
    --duration "$DURATION" --warmup "$WARMUP" "$@" $(watch_of "$target") --quiet --json "$out")
  quote "${cmd[@]}" | sed "s#$BIN/##; s# --json [^ ]*##; s#$work/#\$WORK/#g" >>"$work/commands.txt"
  wait_quiet
  if [ "${AWAKE:-0}" = 1 ]; then awake_start; fi
  # The SQLite store's counters around the window (/api/status), for its commits per
  # second and turns per commit.
  local before="" t0
  if [ "$target" = clawgate-api ]; then before=$(store_counters); t0=$(date +%s.%N); fi
  "${cmd[@]}"
  if [ -n "$before" ]; then
    echo "$scen $round $before $(store_counters) $t0 $(date +%s.%N)" >>"$work/store-windows.txt"
  fi
  if [ "${AWAKE:-0}" = 1 ]; then awake_stop; fi
  python3 - "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
srv = next((p for p in r["processes"] if p["name"] == "server"), None)
lat = r["latency_us"] or {}
extra = ""
if r.get("ttfb_us"):
    extra = f'  ttfb p50 {r["ttfb_us"]["p50"]:.0f}us  gap p99 {r["gap_us"]["p99"] if r.get("gap_us") else 0:.0f}us  merged {r["stream"]["merged_chunks"]} missing {r["stream"]["missing_events"]}'
cpu = f'  server {srv["cpu_us_per_req"]} us/req' if srv else ""
other = f'  other {r["host"]["other_cores"]:.2f} cores'
if r.get("new_connection_per_request"):
    extra += f'  {r["connects_per_s"]:.0f} connects/s'
print(f'   {r["label"]:<26} {r["throughput_rps"]:>9.0f}/s  p50 {lat.get("p50", 0):>8.1f}us  p99 {lat.get("p99", 0):>9.1f}us  err {r["errors_total"]}{cpu}{other}{extra}')
PY
}

# "commits writes" of the workers=2 clawgate's store.
store_counters() {
  curl -s -H "Authorization: Bearer $ADMIN_KEY" "http://$cg_addr/api/status" |
    python3 -c 'import json,sys; s=json.load(sys.stdin)["data"]["store"]; print(s["commits"], s["writes"])'
}

# The webhook channel's counters after a round: received, answered, replies sent, and
# what still waits (spool, outbox) a moment after the load stops.
hook_counters() {
  sleep 2
  curl -s -H "Authorization: Bearer $ADMIN_KEY" "http://$cg_addr/api/channels" |
    python3 -c 'import json,sys; c=[c for c in json.load(sys.stdin)["data"] if c["name"]=="lt"][0]["stats"]; q=c["queues"]; print(c["received"], c["processed"], c["repliesSent"], q["spooled"], q["outbox"], q["deadLetters"])'
}

# Prints a command line with single quotes where needed (for the results file).
quote() {
  local a out=""
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=@%+-]+$ ]]; then out+="$a "
    else out+="'${a//\'/\'\\\'\'}' "; fi
  done
  echo "${out% }"
}

# rotate ROUND items...: the items, starting at ROUND mod count
rotate() {
  local r=$1; shift
  local n=$# i
  local items=("$@")
  for ((i = 0; i < n; i++)); do echo "${items[$(((i + r) % n))]}"; done
}

: >"$work/wrk-direct.txt"
if want calibration; then
  echo "== calibration: wrk and loadgen against the mock directly (64 connections, ${DURATION}s)"
  cat >"$work/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '$V1_BODY'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "$AUTH"
EOF
  wrk -t2 -c64 -d"${DURATION}s" -s "$work/post.lua" "http://$mock_addr/v1/chat/completions" | tee "$work/wrk-direct.txt" | grep -E "Requests/sec"
  run_one calibration direct 0 --url "$(url_of direct /v1/chat/completions)" --body "$V1_BODY" -H "$AUTH" -c 64
fi

for ((round = 1; round <= ROUNDS; round++)); do
  echo "== round $round/$ROUNDS"
  # Non-stream chat at 64 connections: /v1 through clawgate (2 and 1 workers), /api/chat
  # through clawgate, /v1 through nginx, the mock directly.
  for t in $(rotate "$round" clawgate nginx direct clawgate-api clawgate-w1 clawgate-anthropic clawgate-messages clawgate-responses clawgate-api-mem); do
    case $t in
      clawgate-api|clawgate-api-mem) run_one chat-64 "$t" "$round" --url "$(url_of "$t" /api/chat)" --body "$API_BODY" -H "$AUTH" -c 64 ;;
      clawgate-messages) run_one chat-64 "$t" "$round" --url "$(url_of "$t" /v1/messages)" --body "$MESSAGES_BODY" -H "$AUTH" -c 64 ;;
      clawgate-responses) run_one chat-64 "$t" "$round" --url "$(url_of "$t" /v1/responses)" --body "$RESPONSES_BODY" -H "$AUTH" -c 64 ;;
      clawgate-anthropic) run_one chat-64 "$t" "$round" --url "$(url_of "$t" /v1/chat/completions)" \
        --body "${V1_BODY/gpt-4o-mini/claude-mock}" -H "$AUTH" -c 64 ;;
      *) run_one chat-64 "$t" "$round" --url "$(url_of "$t" /v1/chat/completions)" --body "$V1_BODY" -H "$AUTH" -c 64 ;;
    esac
  done
  # TLS (issue 15), clawgate's listener vs nginx terminating TLS to the same mock:
  # keep-alive /v1 at 64 connections (the handshakes fall in the warm-up), then a new
  # connection per request at 16 connections (`Connection: close`), every handshake
  # full (loadgen resumes nothing unless --tls-resume), then the same resuming sessions
  # (TLS 1.3 tickets).
  for t in $(rotate "$round" clawgate-tls nginx-tls); do
    run_one tls-64 "$t" "$round" --url "$(url_of "$t" /v1/chat/completions)" --body "$V1_BODY" -H "$AUTH" -c 64
  done
  for t in $(rotate "$round" clawgate-tls nginx-tls); do
    run_one tls-handshake-16 "$t" "$round" --url "$(url_of "$t" /v1/chat/completions)" --body "$V1_BODY" -H "$AUTH" \
      -c 16 --new-connection-per-request
  done
  for t in $(rotate "$round" clawgate-tls nginx-tls); do
    run_one tls-resume-16 "$t" "$round" --url "$(url_of "$t" /v1/chat/completions)" --body "$V1_BODY" -H "$AUTH" \
      -c 16 --new-connection-per-request --tls-resume
  done
  # The cost of metrics (issue 15): the same config with [metrics] enabled = true and
  # = false, back to back per route (the order flips every round), 64 connections.
  for route in $(rotate "$round" v1 api); do
    for side in $(rotate "$round" on off); do
      case $route in
        v1) run_one metrics-64 "clawgate-metrics-$side" "$round" --url "$(url_of "clawgate-metrics-$side" /v1/chat/completions)" \
          --body "$V1_BODY" -H "$AUTH" -c 64 ;;
        api) run_one metrics-64 "clawgate-api-metrics-$side" "$round" --url "$(url_of "clawgate-api-metrics-$side" /api/chat)" \
          --body "$API_BODY" -H "$AUTH" -c 64 ;;
      esac
    done
  done
  # One connection: latency added over the mock (idle machine).
  for t in $(rotate "$round" clawgate nginx direct clawgate-api clawgate-api-mem); do
    case $t in
      clawgate-api|clawgate-api-mem) run_one latency-1 "$t" "$round" --url "$(url_of "$t" /api/chat)" --body "$API_BODY" -H "$AUTH" -c 1 ;;
      *) run_one latency-1 "$t" "$round" --url "$(url_of "$t" /v1/chat/completions)" --body "$V1_BODY" -H "$AUTH" -c 1 ;;
    esac
  done
  # The same with the cores kept out of deep idle: the software path without the VM's
  # wake-from-halt cost.
  if awake_possible; then
    for t in $(rotate "$round" clawgate nginx direct clawgate-api); do
      case $t in
        clawgate-api) AWAKE=1 run_one latency-1-awake "$t" "$round" --url "$(url_of "$t" /api/chat)" --body "$API_BODY" -H "$AUTH" -c 1 ;;
        *) AWAKE=1 run_one latency-1-awake "$t" "$round" --url "$(url_of "$t" /v1/chat/completions)" --body "$V1_BODY" -H "$AUTH" -c 1 ;;
      esac
    done
  fi
  # 64 concurrent streams of 20 chunks, CHUNK_MS apart.
  for t in $(rotate "$round" clawgate nginx direct clawgate-api clawgate-anthropic clawgate-messages clawgate-responses); do
    case $t in
      clawgate-api) run_one stream-64 "$t" "$round" --scenario sse --url "$(url_of "$t" /api/chat)" --body "$API_STREAM" -H "$AUTH" -c 64 --expect-events 21 ;;
      # message_start, block start, 20 deltas, block stop, message_delta, message_stop.
      clawgate-messages) run_one stream-64 "$t" "$round" --scenario sse --url "$(url_of "$t" /v1/messages)" \
        --body "$MESSAGES_STREAM" -H "$AUTH" -c 64 --expect-events 25 ;;
      # created, in_progress, item and part added, 20 deltas, text/part/item done, completed.
      clawgate-responses) run_one stream-64 "$t" "$round" --scenario sse --url "$(url_of "$t" /v1/responses)" \
        --body "$RESPONSES_STREAM" -H "$AUTH" -c 64 --expect-events 28 ;;
      clawgate-anthropic) run_one stream-64 "$t" "$round" --scenario sse --url "$(url_of "$t" /v1/chat/completions)" \
        --body "${V1_STREAM/gpt-4o-mini/claude-mock}" -H "$AUTH" -c 64 --expect-events 23 ;;
      *) run_one stream-64 "$t" "$round" --scenario sse --url "$(url_of "$t" /v1/chat/completions)" --body "$V1_STREAM" -H "$AUTH" -c 64 --expect-events 23 ;;
    esac
  done
  # Channel webhooks on the SQLite store: signed (bearer) deliveries of a generic
  # channel, each spooled with fsync before its 200, then a turn and a reply sent to the
  # mock's sink. At 5,000/s open loop (ack latency against the issue 14 goal), then as
  # fast as 64 connections go. Message ids are unique per window (a repeat would be a
  # cheaper duplicate).
  HOOK_AUTH="Authorization: Bearer $HOOK_SECRET"
  run_one webhook-5k clawgate-hook "$round" --url "$(url_of clawgate-hook /webhooks/lt)" -H "$HOOK_AUTH" -c 64 \
    --rate 5000 --body "{\"from\":\"lt-{conn}\",\"text\":\"$MSG\",\"messageId\":\"r$round-5k-{conn}-{seq}\"}"
  run_one webhook-64 clawgate-hook "$round" --url "$(url_of clawgate-hook /webhooks/lt)" -H "$HOOK_AUTH" -c 64 \
    --body "{\"from\":\"lt-{conn}\",\"text\":\"$MSG\",\"messageId\":\"r$round-64-{conn}-{seq}\"}"
  if want webhook-5k || want webhook-64; then hook_counters >>"$work/hook-counters.txt"; fi
  # WebSocket turns (clawgate only: nginx has nothing to proxy them to), last because
  # they leave the most memory behind.
  run_one ws-64 clawgate "$round" --scenario ws --url "$(url_of clawgate /ws)" --ws-token "$KEY" \
    --ws-content "$MSG [fault:chunks=20]" -c 64 --expect-events 20
done

final_cg=$(rss_kb "$cg_pid")

# ---------------------------------------------------------------------------------
# Results file
day=$(date -u +%Y-%m-%d)
mkdir -p loadtest/results
OUT=${OUT:-loadtest/results/$day-$commit.md}
{
  echo "nproc=$(nproc)"
  echo "kernel=$(uname -r)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "mem=$(free -g | awk '/^Mem:/ {print $2}') GiB"
  echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "nginx=$("$NGINX" -v 2>&1 | sed 's/.*: //')"
  echo "rust=$(rustc --version)"
  echo "io=$(grep -o 'io=[a-z_]*' "$work/clawgate.log" | head -1 | cut -d= -f2)"
  echo "commit=$commit$dirty"
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "knobs=ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP LOADGEN_THREADS=$LOADGEN_THREADS CHUNK_MS=$CHUNK_MS MOCK_WORKERS=$MOCK_WORKERS"
  echo "chunk_ms=$CHUNK_MS"
  echo "threads=$LOADGEN_THREADS"
  echo "idle_rss_kb=clawgate_w2:$idle_cg clawgate_w1:$idle_cg1 nginx:$idle_nginx mock:$idle_mock"
  echo "final_rss_kb=clawgate_w2:$final_cg"
  echo "elapsed_s=$(( $(date +%s) - started ))"
  echo "wrk_direct=$(grep -o 'Requests/sec: *[0-9.]*' "$work/wrk-direct.txt" | awk '{print $2}')"
  echo "quiet_waited_s=$quiet_waited"
  echo "scenarios=${SCENARIOS:-all}"
  echo "openssl=$(openssl version | cut -d' ' -f1-2)"
  echo "tls_cert=$(openssl x509 -in "$tls/cert.pem" -noout -text | grep -m1 'ASN1 OID' | sed 's/.*: //') ECDSA leaf for localhost and 127.0.0.1, signed by a private CA (the same key type)"
} >"$work/meta.txt"
python3 loadtest/report.py --meta "$work/meta.txt" --json-dir "$work/json" --commands "$work/commands.txt" \
  --store-windows "$work/store-windows.txt" --hook-counters "$work/hook-counters.txt" \
  --clawgate-config "$work/clawgate.toml" --nginx-config "$work/nginx/nginx.conf" \
  --config "clawgate TLS config (issue 15)=$work/clawgate-tls.toml" \
  --config "clawgate metrics-off config (issue 15; metrics on: the same with enabled = true)=$work/clawgate-metrics-false.toml" >"$OUT"
echo "== wrote $OUT ($(( $(date +%s) - started )) s)"
# Every "Summary" section (issue 6, 13, 14, 15).
awk '/^## / { p = /^## Summary/ } p' "$OUT"
