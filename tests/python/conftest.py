"""Fixtures for the Python client tests: each starts the real clawgate binary on port 0
with a temporary config and reads its address from the `listening on http://ADDR`
line on stderr. The binary is `$CLAWGATE_BIN` (default `target/debug/clawgate`); the
I/O driver follows `$CLAWGATE_IO` like the binary itself."""

import os
import re
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "sk-test-admin"
USER_KEY = "sk-test-user"
OTHER_KEY = "sk-test-other"

BASE_CONFIG = """
[server]
listen = "127.0.0.1:0"
workers = 2
pin_workers = false
drain_delay_ms = 0
{server_extra}

[[keys]]
name = "test-admin"
key = "{admin}"
role = "admin"

[[keys]]
name = "test-user"
key = "{user}"

[[keys]]
name = "test-other"
key = "{other}"

[[providers]]
name = "mock"
kind = "mock"

[providers.mock]
chunk_delay_ms = 0
chunk_words = 3

[[providers]]
name = "slowmock"
kind = "mock"

[providers.mock]
chunk_delay_ms = {slow_delay}
chunk_words = 1

[[models]]
id = "mock"
provider = "mock"
default = true

[[models]]
id = "mock-slow"
provider = "slowmock"
"""


class Gateway:
    """A running clawgate process."""

    def __init__(self, server_extra: str = "", slow_delay: int = 60, workdir: str | None = None):
        binary = os.environ.get("CLAWGATE_BIN", str(ROOT / "target" / "debug" / "clawgate"))
        if not Path(binary).exists():
            raise RuntimeError(f"{binary} does not exist: build it first (cargo build)")
        self.dir = tempfile.TemporaryDirectory()
        # The working directory, where the default store (clawgate.db) goes: the
        # caller's (kept across restarts) or the temporary one.
        self.workdir = workdir or self.dir.name
        cfg = Path(self.dir.name) / "clawgate.toml"
        cfg.write_text(
            BASE_CONFIG.format(
                server_extra=server_extra, admin=ADMIN_KEY, user=USER_KEY, other=OTHER_KEY, slow_delay=slow_delay
            )
        )
        self.proc = subprocess.Popen(
            [binary, "--config", str(cfg)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            cwd=self.workdir,
        )
        self.addr = None
        # What the process printed up to its listening line (e.g. the metrics address).
        self.startup_lines: list[str] = []
        self.lines: list[str] = []
        deadline = time.time() + 15
        assert self.proc.stderr is not None
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.startup_lines.append(line)
            m = re.search(r"listening on https?://(\S+)", line)
            if m:
                self.addr = m.group(1)
                break
        if self.addr is None:
            self.stop()
            raise RuntimeError("clawgate did not print its listening address")
        # Keep draining stderr so the process never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            # Kept (bounded) for tests that read the log, e.g. the access log.
            if len(self.lines) < 10_000:
                self.lines.append(line)

    @property
    def http(self) -> str:
        return f"http://{self.addr}"

    @property
    def ws(self) -> str:
        return f"ws://{self.addr}/ws"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.dir.cleanup()


@pytest.fixture(scope="session")
def gateway():
    gw = Gateway(server_extra="ws_auth_timeout_ms = 1000\nws_status_interval_ms = 200")
    yield gw
    gw.stop()


@pytest.fixture
def start_gateway():
    """Starts gateways with extra `[server]` lines; stops them after the test."""
    started = []

    def start(server_extra: str = "", slow_delay: int = 60) -> Gateway:
        gw = Gateway(server_extra=server_extra, slow_delay=slow_delay)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()
