#!/usr/bin/env bash
# Checks that the fuzz targets build on the stable toolchain, then replays the
# committed seed corpora through them (no fuzzing: seconds). Installs cargo-fuzz when
# it is missing; when that cannot be done (offline), says so and exits 0, since this
# check is optional.
#
# Usage: bash fuzz/check.sh                 build + replay fuzz/corpus/<target>/
#        bash fuzz/check.sh --regressions   also replay fuzz/regressions/<target>/
#                                           (fails while a recorded bug is unfixed)
# Cost: about 4 minutes from a cold fuzz/target on 2 cores (ASan + coverage build of
# the gateway and its dependencies), seconds when fuzz/target is warm.
set -euo pipefail
cd "$(dirname "$0")"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  if ! cargo install cargo-fuzz --locked --version 0.13.2; then
    echo "fuzz/check.sh: cargo-fuzz is not installed and cannot be installed here; skipping" >&2
    exit 0
  fi
fi

# cargo-fuzz needs nightly-only flags (-Zsanitizer): RUSTC_BOOTSTRAP lets the stable
# toolchain take them. RUSTFLAGS matches the gateway's own build (.cargo/config.toml),
# which cargo-fuzz's RUSTFLAGS would otherwise replace: sonic-rs picks its SIMD code at
# compile time, and the fuzzed code should be the code that ships.
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="${RUSTFLAGS:--Ctarget-cpu=x86-64-v3}"

echo "== cargo fuzz build -O"
cargo fuzz build -O

replay() {
  local dir=$1 failed=0
  for t in $(cargo fuzz list); do
    [ -d "$dir/$t" ] || continue
    echo "== $t: $dir/$t"
    # -runs=0: run every input once, fuzz nothing.
    if ! cargo fuzz run -O "$t" "$dir/$t" -- -runs=0 >"target/check-$t.log" 2>&1; then
      echo "FAILED: $t on $dir/$t (log: fuzz/target/check-$t.log)"
      grep -E "panicked|ERROR|SUMMARY" "target/check-$t.log" | head -5 || true
      failed=1
    fi
  done
  return $failed
}

replay corpus
if [ "${1:-}" = "--regressions" ]; then
  replay regressions
fi
echo "fuzz/check.sh: all fuzz targets build and pass their corpus"
