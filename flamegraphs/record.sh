#!/usr/bin/env bash
# Records CPU flamegraphs of clawgate under the main load-test scenarios and writes
# flamegraphs/<date>-<commit>-<scenario>.svg plus a plain-text list of the hottest
# functions beside each (<...>.txt). One command, about 4 minutes (most of it the
# profiling build):
#
#   bash flamegraphs/record.sh            # all scenarios
#   bash flamegraphs/record.sh ws-64      # only some
#
# How: clawgate is built with frame pointers and line tables into its own target dir
# (target/flamegraph, so the normal release build is untouched); mock_upstream and
# loadgen come from the normal release build. For each scenario loadgen drives the
# gateway (2 workers) for WARMUP+SECONDS, and `perf record -e cpu-clock -g` samples the
# gateway's threads (user and kernel stacks) for SECONDS; `perf script` is folded by
# inferno-collapse-perf and drawn by inferno-flamegraph. Where the kernel refuses
# perf_event_open, it falls back to eu-stack sampling (elfutils; wall-clock, ~10-20
# stacks/s per thread, user space only, parked threads included) and says so in the
# SVG's title. Everything it starts is
# stopped by PID when it exits; traffic stays on 127.0.0.1.
# Knobs: SECONDS_PER=8 WARMUP=1 FREQ=999 SAMPLER=auto|perf|eu-stack.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source-path=SCRIPTDIR/.. source=loadtest/lib.sh
. "$root/loadtest/lib.sh"
SECONDS_PER=${SECONDS_PER:-8}
WARMUP=${WARMUP:-1}
FREQ=${FREQ:-999}
SAMPLER=${SAMPLER:-auto}
ALL=(chat-64 api-chat-64 api-chat-1 stream-64 ws-64)
if [ $# -gt 0 ]; then SCENARIOS=("$@"); else SCENARIOS=("${ALL[@]}"); fi

# ---------------------------------------------------------------------------------
# Tools: perf (Debian linux-perf), inferno (cargo install)
if [ "$SAMPLER" != eu-stack ] && ! command -v perf >/dev/null; then
  echo "== installing linux-perf"
  apt_install linux-perf
fi
if ! command -v inferno-flamegraph >/dev/null || ! command -v inferno-collapse-perf >/dev/null; then
  echo "== installing inferno (cargo install)"
  cargo install inferno --locked --no-default-features --features cli
fi
export PATH="$HOME/.cargo/bin:$PATH"

if [ "$SAMPLER" = auto ]; then
  probe=$(mktemp /tmp/perf-probe.XXXXXX)
  if perf record -e cpu-clock -F 99 -g -o "$probe" -- sh -c 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done' >/dev/null 2>&1 \
     && perf script -i "$probe" 2>/dev/null | grep -q .; then
    SAMPLER=perf
  else
    echo "!! perf record is refused here (perf_event_paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null)); falling back to eu-stack sampling"
    SAMPLER=eu-stack
  fi
  rm -f "$probe"
fi
if [ "$SAMPLER" = eu-stack ] && ! command -v eu-stack >/dev/null; then
  apt_install elfutils
fi
echo "== sampler: $SAMPLER"

echo "== build: clawgate with frame pointers (target/flamegraph), mock and loadgen (target/release)"
CARGO_TARGET_DIR="$root/target/flamegraph" \
  RUSTFLAGS="-C target-cpu=x86-64-v3 -C force-frame-pointers=yes" \
  CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_PROFILE_RELEASE_STRIP=none \
  cargo build --release --bin clawgate
cargo build --release --bin mock_upstream --bin loadgen
CLAWGATE="$root/target/flamegraph/release/clawgate"
BIN="$root/target/release"

# ---------------------------------------------------------------------------------
# Processes: started here, stopped by PID on exit
init_work clawgate-flame "perf data and logs"

serve "$work/mock.log" "$BIN/mock_upstream" --listen 127.0.0.1:0 --workers 2
mock_addr=$served_addr
KEY=sk-flamegraph-client
cat >"$work/clawgate.toml" <<EOF
[server]
listen = "127.0.0.1:0"
workers = 2

[[keys]]
name = "flamegraph"
key = "$KEY"
role = "user"

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
EOF
serve "$work/clawgate.log" "$CLAWGATE" --config "$work/clawgate.toml"
cg_pid=$served_pid cg_addr=$served_addr

AUTH="Authorization: Bearer $KEY"
MSG="Hello from the load test"
V1_BODY="{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"$MSG\"}]}"
API_BODY="{\"message\":\"$MSG\",\"sessionId\":\"lt-{conn}\"}"
V1_STREAM="{\"model\":\"gpt-4o-mini\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"$MSG [fault:chunks=20]\"}]}"

load_args() { # scenario -> loadgen arguments
  case $1 in
    chat-64) echo "--url http://$cg_addr/v1/chat/completions -c 64" ;;
    api-chat-64) echo "--url http://$cg_addr/api/chat -c 64" ;;
    api-chat-1) echo "--url http://$cg_addr/api/chat -c 1" ;;
    stream-64) echo "--scenario sse --url http://$cg_addr/v1/chat/completions -c 64 --expect-events 23" ;;
    ws-64) echo "--scenario ws --url http://$cg_addr/ws -c 64 --expect-events 20" ;;
    *) echo "unknown scenario $1 (known: ${ALL[*]})" >&2; return 1 ;;
  esac
}
body_of() {
  case $1 in
    chat-64) echo "$V1_BODY" ;;
    api-chat-64|api-chat-1) echo "$API_BODY" ;;
    stream-64) echo "$V1_STREAM" ;;
    ws-64) echo "" ;;
  esac
}

# eu-stack fallback: samples every thread of $1 for $2 seconds into folded stacks.
eu_stack_sample() {
  local pid=$1 secs=$2 out=$3 end
  end=$(( $(date +%s%N) + secs * 1000000000 ))
  : >"$out.raw"
  while [ "$(date +%s%N)" -lt "$end" ]; do
    eu-stack -p "$pid" 2>/dev/null >>"$out.raw" || true
    sleep 0.05
  done
  # "TID n:" starts a stack; "#k 0xaddr name" frames, innermost first. Names lose
  # their hash suffix and legacy-mangling escapes; the main thread (asleep in
  # clock_nanosleep) is left out. eu-stack sees every thread whether it runs or not,
  # so this is wall-clock sampling: idle workers show up parked in io_uring_enter.
  awk '
    function clean(s) {
      gsub(/::h[0-9a-f]+$/, "", s); gsub(/\.llvm\.[0-9]+/, "", s)
      gsub(/\$LT\$/, "<", s); gsub(/\$GT\$/, ">", s); gsub(/\$u20\$/, " ", s)
      gsub(/\$u7b\$/, "{", s); gsub(/\$u7d\$/, "}", s); gsub(/\$RF\$/, "\\&", s)
      gsub(/\$C\$/, ",", s); gsub(/\.\./, "::", s); gsub(/;/, ":", s)
      return s
    }
    function flush() {
      if (n > 0 && f[1] !~ /clock_nanosleep/) { s = f[n]; for (i = n - 1; i >= 1; i--) s = s ";" f[i]; c[s]++ }
      n = 0
    }
    /^TID / { flush(); next }
    /^#[0-9]+/ { name = $3; for (i = 4; i <= NF; i++) name = name " " $i; if (name == "") name = $2; f[++n] = clean(name); next }
    END { flush(); for (s in c) print s, c[s] }' "$out.raw" >"$out"
}

commit=$(head_commit)
day=$(date -u +%Y-%m-%d)
mkdir -p flamegraphs
: >"$work/commands.txt"
for scen in "${SCENARIOS[@]}"; do
  args=$(load_args "$scen")
  body=$(body_of "$scen")
  name="$day-$commit-$scen"
  echo "== $scen"
  # shellcheck disable=SC2086
  cmd=("$BIN/loadgen" $args -H "$AUTH" --watch server="$cg_pid" --threads 2 --warmup "$WARMUP" --duration "$((SECONDS_PER + 1))" --label "$scen")
  [ -n "$body" ] && cmd+=(--body "$body")
  [ "$scen" = ws-64 ] && cmd+=(--ws-token "$KEY" --ws-content "$MSG [fault:chunks=20]")
  quote "${cmd[@]}" | sed "s#$BIN/##" >>"$work/commands.txt"
  "${cmd[@]}" >"$work/$scen.loadgen.txt" &
  lg_pid=$!; pids+=("$lg_pid")
  sleep "$WARMUP"
  if [ "$SAMPLER" = perf ]; then
    rec=(perf record -e cpu-clock -F "$FREQ" -g -p "$cg_pid" -o "$work/$scen.perf.data" -- sleep "$SECONDS_PER")
    echo "${rec[*]}" >>"$work/commands.txt"
    "${rec[@]}" 2>"$work/$scen.perf.log" >/dev/null
    perf script --no-inline -i "$work/$scen.perf.data" 2>/dev/null | inferno-collapse-perf >"$work/$scen.folded"
    echo "perf script --no-inline -i $work/$scen.perf.data | inferno-collapse-perf | inferno-flamegraph --title '...' --countname samples > flamegraphs/$name.svg" >>"$work/commands.txt"
    title="clawgate $scen ($commit, $day): perf cpu-clock ${FREQ} Hz, ${SECONDS_PER}s, user+kernel stacks"
  else
    eu_stack_sample "$cg_pid" "$SECONDS_PER" "$work/$scen.folded"
    title="clawgate $scen ($commit, $day): eu-stack wall-clock sampling (perf refused), ${SECONDS_PER}s, user stacks"
  fi
  wait "$lg_pid" || true
  forget "$lg_pid"
  grep -E "throughput|cpu server" "$work/$scen.loadgen.txt" | sed 's/^ */   /' || true
  { echo "# $scen"; grep -E "throughput|cpu server" "$work/$scen.loadgen.txt" | sed 's/^ */#   /'; } >>"$work/commands.txt" || true
  inferno-flamegraph --title "$title" --countname samples <"$work/$scen.folded" >"flamegraphs/$name.svg"
  # The hottest functions: self time (leaf frames) and total time (anywhere on the stack).
  python3 - "$work/$scen.folded" "$title" >"flamegraphs/$name.txt" <<'PY'
import re
import sys
from collections import Counter
self_c, total_c, where, own, n = Counter(), Counter(), Counter(), Counter(), 0
for line in open(sys.argv[1]):
    stack, _, count = line.rstrip("\n").rpartition(" ")
    if not count.isdigit():
        continue
    k = int(count)
    frames = stack.split(";")
    s = set(frames)
    n += k
    self_c[frames[-1]] += k
    for f in s:
        total_c[f] += k
    # Where the time goes, coarsely: the kernel paths a proxy pays for, or our code.
    if s & {"io_send", "io_sendmsg"}:
        where["kernel: io_uring send (TCP transmit + loopback receive softirq)"] += k
    elif s & {"io_recv", "io_recvmsg"}:
        where["kernel: io_uring recv"] += k
    elif s & {"schedule", "__schedule", "finish_task_switch.isra.0"}:
        where["kernel: sleeping and waking (scheduler)"] += k
    elif "do_syscall_64" in s:
        where["kernel: other syscalls (io_uring submit, socket, ...)"] += k
    elif any(f.startswith(("asm_", "irqentry", "clear_page", "exc_page_fault")) for f in frames):
        where["kernel: page faults, interrupts"] += k
    else:
        where["user space"] += k
        ours = [re.sub(r"::\{\{closure\}\}", "", f) for f in frames if "clawgate::" in f]
        own[ours[-1] if ours else "(runtime, allocator, libc)"] += k
print(sys.argv[2])
print(f"total weight {n} (perf: sampled cpu-clock nanoseconds; eu-stack: samples)")
print("\nwhere the time goes  %")
for f, k in where.most_common():
    print(f"{100 * k / n:6.2f}  {f}")
print("\nuser space, by innermost clawgate frame  %")
for f, k in own.most_common(20):
    print(f"{100 * k / n:6.2f}  {f}")
print("\nself (leaf) %  function")
for f, k in self_c.most_common(30):
    print(f"{100 * k / n:6.2f}  {f}")
print("\ntotal (on stack) %  function")
for f, k in total_c.most_common(45):
    print(f"{100 * k / n:6.2f}  {f}")
PY
  echo "   wrote flamegraphs/$name.svg and .txt"
done
cp "$work/commands.txt" "flamegraphs/$day-$commit.commands.txt"
echo "== commands in flamegraphs/$day-$commit.commands.txt"
