#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need (Debian
# packages, a Python venv with the real client SDKs), then runs the Rust unit and
# integration tests and the Python client tests, the integration part once on
# io_uring and once on the epoll fallback. Usage: bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
# The browser of the CORS tests (tests/python/test_browser_cors.py).
command -v chromium >/dev/null || need_apt+=(chromium)
# The packaging tests (tests/python/test_packaging.py): systemd-analyze, dpkg, adduser.
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v adduser >/dev/null || need_apt+=(adduser)
# A real Prometheus server scraping /metrics, and promtool (test_metrics.py).
command -v prometheus >/dev/null || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
  else sudo apt-get update -qq && sudo apt-get install -y -qq "${need_apt[@]}"; fi
fi

if ! command -v cargo-nextest >/dev/null && ! cargo nextest --version >/dev/null 2>&1; then
  echo "== installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

echo "== python venv (.venv) with the client SDKs"
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt

echo "== lints (rustfmt; clippy denies unwrap/expect/panic outside tests)"
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings

echo "== build"
cargo build --release --bins
export CLAWGATE_BIN="$root/target/release/clawgate"
export CLAWGATE_MOCK_UPSTREAM_BIN="$root/target/release/mock_upstream"

# The .deb (cargo-deb; test_packaging.py installs it with dpkg -i when run as root).
if ! cargo deb --version >/dev/null 2>&1; then
  echo "== installing cargo-deb"
  cargo install cargo-deb --locked --version 3.8.0 || echo "(cargo-deb not installed: the .deb test is skipped)"
fi
if cargo deb --version >/dev/null 2>&1; then
  echo "== cargo deb"
  deb=$(cargo deb --no-build --no-strip 2>/dev/null | tail -1)
  [ -f "$deb" ] && export CLAWGATE_DEB="$deb"
fi

echo "== unit and integration tests (io_uring)"
CLAWGATE_IO=uring cargo nextest run --release --no-fail-fast

echo "== integration tests (epoll fallback)"
CLAWGATE_IO=epoll cargo nextest run --release --no-fail-fast -E 'kind(test)'

echo "== python client tests (io_uring, then epoll)"
CLAWGATE_IO=uring .venv/bin/python -m pytest -q tests/python
CLAWGATE_IO=epoll .venv/bin/python -m pytest -q tests/python

# The fuzz targets build on the stable toolchain and replay their committed corpora
# (fuzz/check.sh; exits 0 with a note when cargo-fuzz cannot be installed).
echo "== fuzz targets (build + corpus replay)"
bash fuzz/check.sh
