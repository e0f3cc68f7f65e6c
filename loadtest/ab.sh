#!/usr/bin/env bash
# A/B of two clawgate binaries under the same load, interleaved (A, B, A, B, ...) so
# that drift on the shared machine hits both alike; prints server CPU per request,
# stream or WebSocket turn for each run, then the median per scenario and side.
#
#   bash loadtest/ab.sh BEFORE_BIN AFTER_BIN        (ROUNDS=3 by default)
#
# Uses target/release/{mock_upstream,loadgen} (built if missing) and the load-test
# config of run.sh (one key, one OpenAI-format provider on the mock, two workers).
# Scenarios: chat-v1 and chat-api (non-stream /v1/chat/completions and /api/chat, 64
# connections), ws-64 (64 sockets, 20 chunks a turn), stream-api and stream-v1 (64 SSE
# streams of 20 chunks 10 ms apart), latency-api (/api/chat on one connection).
# SCENARIOS="chat-v1 chat-api" runs only those. STORE_A / STORE_B (sqlite | memory) add
# `[store] backend = ...` to that side's config (for a binary that knows `[store]`);
# each side runs in its own directory (its own clawgate.db), so the same binary twice
# compares the stores: STORE_A=memory STORE_B=sqlite bash loadtest/ab.sh BIN BIN.
# METRICS_A / METRICS_B (true | false) set `[metrics] enabled` the same way: the cost
# of counting for /metrics is METRICS_A=false METRICS_B=true bash loadtest/ab.sh BIN BIN.
# Everything started here is stopped by PID at the end.
set -u
cd "$(dirname "$0")/.."
A=$1; B=$2; ROUNDS=${ROUNDS:-3}
SCENARIOS=${SCENARIOS:-"chat-v1 chat-api ws-64 stream-api stream-v1 latency-api"}
[ -x target/release/loadgen ] && [ -x target/release/mock_upstream ] || cargo build --release --bin loadgen --bin mock_upstream
LG=target/release/loadgen
work=$(mktemp -d /tmp/clawgate-ab.XXXXXX)
target/release/mock_upstream --listen 127.0.0.1:0 --workers 2 2> "$work/mock.log" & mp=$!
sleep 0.5; maddr=$(grep -o 'http://[0-9.:]*' "$work/mock.log" | head -1)
cat > "$work/cg.toml" <<TOML
[server]
listen = "127.0.0.1:0"
workers = 2

[[keys]]
name = "loadtest"
key = "sk-loadtest-client"
role = "user"

[sessions]
max_messages = 2

[[providers]]
name = "mockai"
kind = "openai"
base_url = "$maddr/v1"
api_key = "sk-upstream-mock"

[[models]]
id = "gpt-4o-mini"
provider = "mockai"
default = true
TOML
mkdir -p "$work/a" "$work/b"
cp "$work/cg.toml" "$work/a.toml"; cp "$work/cg.toml" "$work/b.toml"
[ -n "${STORE_A:-}" ] && printf '\n[store]\nbackend = "%s"\n' "$STORE_A" >> "$work/a.toml"
[ -n "${STORE_B:-}" ] && printf '\n[store]\nbackend = "%s"\n' "$STORE_B" >> "$work/b.toml"
[ -n "${METRICS_A:-}" ] && printf '\n[metrics]\nenabled = %s\n' "$METRICS_A" >> "$work/a.toml"
[ -n "${METRICS_B:-}" ] && printf '\n[metrics]\nenabled = %s\n' "$METRICS_B" >> "$work/b.toml"
A=$(realpath "$A"); B=$(realpath "$B")
(cd "$work/a" && exec "$A" --config "$work/a.toml" 2> "$work/a.log") & ap=$!
(cd "$work/b" && exec "$B" --config "$work/b.toml" 2> "$work/b.log") & bp=$!
trap 'kill $ap $bp $mp 2>/dev/null; wait 2>/dev/null' EXIT
sleep 1
aaddr=$(grep -o 'listening on http://[0-9.:]*' "$work/a.log" | cut -d/ -f3)
baddr=$(grep -o 'listening on http://[0-9.:]*' "$work/b.log" | cut -d/ -f3)
MSG="Hello from the load test"
run() { # label pid scenario-args...
  local label=$1 pid=$2; shift 2
  case " $SCENARIOS " in *" ${label% *} "*) ;; *) return 0 ;; esac
  "$LG" --label "$label" --threads 2 --duration 5 --warmup 1 --watch "server=$pid" "$@" 2>&1 \
    | grep "cpu server" | grep -o "[0-9.]* us/req" | sed "s/^/$label /"
}
for _ in $(seq "$ROUNDS"); do
  for side in A B; do
    if [ "$side" = A ]; then pid=$ap; addr=$aaddr; else pid=$bp; addr=$baddr; fi
    run "chat-v1 $side" $pid --url "http://$addr/v1/chat/completions" \
      --body "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"$MSG\"}]}" \
      -H 'Authorization: Bearer sk-loadtest-client' -c 64
    run "chat-api $side" $pid --url "http://$addr/api/chat" \
      --body "{\"message\":\"$MSG\",\"sessionId\":\"lt-{conn}\"}" -H 'Authorization: Bearer sk-loadtest-client' -c 64
    run "ws-64 $side" $pid --scenario ws --url "http://$addr/ws" --ws-token sk-loadtest-client \
      --ws-content "$MSG [fault:chunks=20]" -c 64 --expect-events 20
    run "stream-api $side" $pid --scenario sse --url "http://$addr/api/chat" \
      --body "{\"message\":\"$MSG [fault:chunks=20,chunk-ms=10]\",\"sessionId\":\"lt-sse-{conn}\",\"stream\":true}" \
      -H 'Authorization: Bearer sk-loadtest-client' -c 64 --expect-events 21
    run "stream-v1 $side" $pid --scenario sse --url "http://$addr/v1/chat/completions" \
      --body "{\"model\":\"gpt-4o-mini\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"$MSG [fault:chunks=20,chunk-ms=10]\"}]}" \
      -H 'Authorization: Bearer sk-loadtest-client' -c 64 --expect-events 23
    run "latency-api $side" $pid --url "http://$addr/api/chat" \
      --body "{\"message\":\"$MSG\",\"sessionId\":\"lt-{conn}\"}" -H 'Authorization: Bearer sk-loadtest-client' -c 1
  done
done | tee "$work/runs.txt"
echo "== median server CPU (us per request / stream / turn)"
# Plain awk (mawk has no asort): sort the values first, then take the middle one.
awk '{print $1" "$2" "$3}' "$work/runs.txt" | sort -k1,1 -k2,2 -k3,3n \
  | awk '{k=$1" "$2; n[k]++; v[k, n[k]]=$3} END {for (k in n) printf "%-16s %s\n", k, v[k, int((n[k]+1)/2)]}' | sort
