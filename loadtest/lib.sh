# shellcheck shell=bash
# Shared helpers of the load-test scripts (loadtest/run.sh, loadtest/soak.sh,
# loadtest/hostile_stream.sh, flamegraphs/record.sh). Sourced, not run, from the
# repository's root (the scripts cd there first):
#
#   . "$root/loadtest/lib.sh"
#
# The caller runs under `set -euo pipefail`. Sourcing defines the functions below and
# sets quiet_waited=0; it starts nothing.
#
# Processes: everything a script starts is stopped by PID when it exits.
#   init_work PREFIX WHAT   Makes the run's directory /tmp/PREFIX.XXXXXX and sets `work`
#                           to it; sets `pids` to (). On exit (trap EXIT) every PID in
#                           `pids` gets TERM, then up to 5 s each, then KILL, and
#                           "== WHAT kept in $work" is printed; INT and TERM exit with
#                           130 (through the EXIT trap). The caller appends what it starts
#                           to `pids` (pids+=("$!")) unless it uses serve.
#   forget PID              Drops PID from `pids`: call it once the process is reaped, so
#                           the exit trap never signals a reused PID.
#   serve LOG CMD...        Starts CMD in the background with its stderr in LOG, adds it
#                           to `pids` and waits for its "listening on" line (see
#                           wait_listening); sets served_pid and served_addr (host:port).
#                           If CMD dies or never listens, the script exits with 1.
#   in_dir DIR CMD...       Runs CMD in DIR by exec (for serve: the PID stays CMD's).
#   wait_listening LOG PID  Prints ADDR from the first "listening on http://ADDR" (or
#                           https://) in LOG, polling every 0.1 s. Status 1 with a
#                           message on stderr if PID dies first or after 10 s.
#
# Readings:
#   free_port               Prints a TCP port free on 127.0.0.1 (python3).
#   status_kb PID FIELD [DEFAULT]
#                           Prints the kB of FIELD (VmRSS, VmHWM, ...) in
#                           /proc/PID/status. A gone process: with DEFAULT, prints
#                           DEFAULT; without, awk's error and a failing status.
#   rss_kb PID [DEFAULT]    status_kb PID VmRSS [DEFAULT].
#   busy_cores              Prints the cores busy on the whole machine over half a
#                           second, e.g. 0.27 (two decimals).
#   wait_quiet WHAT         Waits while busy_cores > QUIET_CORES, one sample every ~1.5 s,
#                           until quiet_waited (counted 2 per sample) reaches QUIET_BUDGET;
#                           then prints "   (machine busy: B cores not ours; WHAT)" and
#                           returns. Needs QUIET_CORES and QUIET_BUDGET; sets busy_before
#                           (the last sample) and adds to quiet_waited, which it never
#                           resets (set quiet_waited=0 for a budget per call).
#   machine_summary         Prints "N cores (CPU model), M GiB, kernel K".
#
# Results:
#   quote ARG...            Prints the ARGs as one shell command line, single-quoting
#                           those with characters outside [A-Za-z0-9_./:=@%+-].
#   head_commit             Prints HEAD's 9-character hash, or "unknown".
#   src_dirty               Succeeds when src/, Cargo.toml or Cargo.lock have
#                           uncommitted changes (what the binaries are built from).
#   apt_install PKG...      apt-get update, then install PKGs quietly (sudo unless root).
#                           A failed install fails (the script exits); a failed update
#                           installs nothing and returns 0, as the inline copies did.

# ---------------------------------------------------------------------------------
# Processes
init_work() { # prefix what-is-kept
  work=$(mktemp -d "/tmp/$1.XXXXXX")
  _lt_kept=$2
  pids=()
  trap _lt_cleanup EXIT
  trap 'exit 130' INT TERM
}

_lt_cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  echo "== $_lt_kept kept in $work"
}

forget() { # pid
  local p keep=()
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}

serve() { # log command...
  local log=$1
  shift
  "$@" 2>"$log" &
  served_pid=$!; pids+=("$served_pid")
  # shellcheck disable=SC2034 # for the caller
  served_addr=$(wait_listening "$log" "$served_pid") || exit 1
}

in_dir() { # dir command...
  cd "$1" && shift && exec "$@"
}

wait_listening() { # log pid
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

# ---------------------------------------------------------------------------------
# Readings
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

status_kb() { # pid field [default]
  if [ $# -ge 3 ]; then
    awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || echo "$3"
  else
    awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"
  fi
}

rss_kb() { # pid [default]
  status_kb "$1" VmRSS "${@:2}"
}

busy_cores() {
  local a b
  a=$(awk '/^cpu / {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  sleep 0.5
  b=$(awk '/^cpu / {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  echo "$a $b" | awk -v n="$(nproc)" '{ t = $4 - $2; printf "%.2f", (t > 0 ? ($3 - $1) / t * n : 0) }'
}

quiet_waited=0
wait_quiet() { # what the script does when the budget is spent
  while :; do
    busy_before=$(busy_cores)
    awk -v b="$busy_before" -v q="$QUIET_CORES" 'BEGIN { exit !(b <= q) }' && return 0
    if [ "$quiet_waited" -ge "$QUIET_BUDGET" ]; then
      echo "   (machine busy: $busy_before cores not ours; $1)"
      return 0
    fi
    sleep 1; quiet_waited=$((quiet_waited + 2))
  done
}

machine_summary() {
  echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(free -g | awk '/^Mem:/ {print $2}') GiB, kernel $(uname -r)"
}

# ---------------------------------------------------------------------------------
# Results
quote() { # arg...
  local a out=""
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=@%+-]+$ ]]; then out+="$a "
    else out+="'${a//\'/\'\\\'\'}' "; fi
  done
  echo "${out% }"
}

head_commit() {
  git rev-parse --short=9 HEAD 2>/dev/null || echo unknown
}

src_dirty() {
  [ -n "$(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null || true)" ]
}

apt_install() { # package...
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq || return 0
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}
