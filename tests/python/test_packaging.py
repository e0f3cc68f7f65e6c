"""Packaging on bare metal (issue 15): the systemd unit passes `systemd-analyze verify`,
the gateway tells systemd it is ready (`Type=notify`: `READY=1` on $NOTIFY_SOCKET once
it listens, `STOPPING=1` when it drains), and the .deb (when `cargo deb` built one:
CLAWGATE_DEB=path) installs with `dpkg -i`, then purges cleanly."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT

BIN = os.environ.get("CLAWGATE_BIN", str(ROOT / "target" / "debug" / "clawgate"))


def test_the_systemd_unit_verifies():
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    unit = (ROOT / "packaging" / "clawgate.service").read_text()
    with tempfile.TemporaryDirectory() as d:
        # The unit names the installed binary; point it at the one under test.
        path = Path(d) / "clawgate.service"
        path.write_text(unit.replace("/usr/bin/clawgate", BIN))
        out = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == "" and out.stdout.strip() == "", out.stderr + out.stdout
    for line in ("Type=notify", "AmbientCapabilities=CAP_NET_BIND_SERVICE", "User=clawgate",
                 "SystemCallFilter=@system-service io_uring_setup io_uring_enter io_uring_register"):
        assert line in unit


def test_readiness_and_stopping_are_notified():
    with tempfile.TemporaryDirectory() as d:
        sock_path = os.path.join(d, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        sock.settimeout(15)
        cfg = Path(d) / "c.toml"
        cfg.write_text('[server]\nlisten = "127.0.0.1:0"\nworkers = 1\ndrain_delay_ms = 0\n[store]\nbackend = "memory"\n')
        proc = subprocess.Popen([BIN, "--config", str(cfg)], env={**os.environ, "NOTIFY_SOCKET": sock_path},
                                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        try:
            first = sock.recv(4096).decode()
            assert "READY=1" in first.split("\n"), first
            assert "STATUS=listening on 127.0.0.1:" in first
            proc.send_signal(signal.SIGTERM)
            assert "STOPPING=1" in sock.recv(4096).decode()
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            sock.close()


def test_the_deb_installs_and_purges():
    deb = os.environ.get("CLAWGATE_DEB")
    if not deb:
        pytest.skip("no .deb to install (tests/run.sh builds one with cargo-deb when it can)")
    if os.geteuid() != 0:
        pytest.skip("dpkg -i needs root")
    subprocess.run(["dpkg", "-i", deb], check=True, capture_output=True, timeout=300)
    try:
        assert os.access("/usr/bin/clawgate", os.X_OK)
        assert Path("/lib/systemd/system/clawgate.service").exists()
        assert Path("/etc/clawgate/clawgate.toml").exists()
        assert Path("/var/lib/clawgate").is_dir()
        assert subprocess.run(["getent", "passwd", "clawgate"], capture_output=True).returncode == 0
        version = subprocess.run(["/usr/bin/clawgate", "--version"], capture_output=True, text=True, timeout=10)
        assert version.returncode == 0 and version.stdout.startswith("clawgate ")
    finally:
        subprocess.run(["dpkg", "--purge", "clawgate"], capture_output=True, timeout=300)
    assert not Path("/usr/bin/clawgate").exists()
