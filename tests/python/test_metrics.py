"""`GET /metrics` read by Prometheus' own Python parser (`prometheus_client`, its
OpenMetrics parser, strict about the format): admin key only on the main listener,
and counters that move by exactly the traffic sent."""

import json
import urllib.error
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conftest import ADMIN_KEY, USER_KEY, Gateway


OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def fetch(gw: Gateway, path: str, key: str | None, body: dict | None = None, accept: str | None = None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if accept:
        headers["Accept"] = accept
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(gw.http + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def scrape(gw: Gateway) -> dict:
    """{(sample name, frozenset(labels)): value} of one scrape, parsed strictly."""
    status, headers, body = fetch(gw, "/metrics", ADMIN_KEY, accept=OPENMETRICS)
    assert status == 200, body
    assert headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_need_an_admin_key():
    gw = Gateway()
    try:
        assert fetch(gw, "/metrics", None)[0] == 401
        status, _, body = fetch(gw, "/metrics", USER_KEY)
        assert status == 403 and json.loads(body)["error"]["code"] == "FORBIDDEN"
        assert fetch(gw, "/metrics", ADMIN_KEY)[0] == 200
    finally:
        gw.stop()


def test_counters_move_by_exactly_the_traffic_sent():
    gw = Gateway()
    try:
        before = scrape(gw)
        for i in range(5):
            status, _, _ = fetch(gw, "/api/chat", USER_KEY, {"message": f"count me {i}", "sessionId": "m-1"})
            assert status == 200
        assert fetch(gw, "/api/chat", USER_KEY, {"nope": 1})[0] == 400
        assert fetch(gw, "/api/nothing-here", USER_KEY)[0] == 404
        after = scrape(gw)
        chat_200 = ("clawgate_http_requests_total", {"route": "chat", "status": "200"})
        assert value(after, chat_200[0], **chat_200[1]) - value(before, chat_200[0], **chat_200[1]) == 5
        assert value(after, "clawgate_http_requests_total", route="chat", status="400") - value(
            before, "clawgate_http_requests_total", route="chat", status="400") == 1
        assert value(after, "clawgate_http_requests_total", route="unmatched", status="404") >= 1
        count = value(after, "clawgate_http_request_duration_seconds_count", route="chat")
        assert count - value(before, "clawgate_http_request_duration_seconds_count", route="chat") == 6
        assert value(after, "clawgate_http_request_duration_seconds_bucket", route="chat", le="+Inf") == count
        # The mock counts a token per word: every turn's tokens are under the model and key.
        prompt = value(after, "clawgate_tokens_total", model="mock", key="test-user", direction="prompt")
        completion = value(after, "clawgate_tokens_total", model="mock", key="test-user", direction="completion")
        assert prompt > 0 and completion > 0
        # The first scrape is counted too: one metrics request between the two.
        assert value(after, "clawgate_http_requests_total", route="metrics", status="200") - value(
            before, "clawgate_http_requests_total", route="metrics", status="200") == 1
        assert value(after, "clawgate_build_info", version=value_of_version(after), io_driver=driver_of(after)) == 1
        assert value(after, "clawgate_process_resident_memory_bytes") > 0
    finally:
        gw.stop()


def value_of_version(samples: dict) -> str:
    return next(dict(l)["version"] for (n, l) in samples if n == "clawgate_build_info")


def driver_of(samples: dict) -> str:
    return next(dict(l)["io_driver"] for (n, l) in samples if n == "clawgate_build_info")


def test_a_separate_metrics_listener_is_open_and_the_main_one_hides_metrics():
    gw = Gateway(server_extra='[metrics]\nlisten = "127.0.0.1:0"')
    try:
        line = next(l for l in gw.startup_lines if "metrics on http://" in l)
        url = line.split("metrics on ", 1)[1].strip()
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": OPENMETRICS}), timeout=10) as r:
            assert r.status == 200
            assert r.headers["content-type"].startswith("application/openmetrics-text")
            families = {f.name for f in text_string_to_metric_families(r.read().decode())}
        assert "clawgate_http_requests" in families and "clawgate_build_info" in families
        base = url.rsplit("/metrics", 1)[0]
        with urllib.request.urlopen(base + "/health/ready", timeout=10) as r:
            assert r.status == 200
        for path in ("/api/status", "/v1/models"):
            try:
                urllib.request.urlopen(base + path, timeout=10)
                raise AssertionError(f"{path} answered on the metrics listener")
            except urllib.error.HTTPError as e:
                assert e.code == 404
        # The main listener keeps /metrics to itself no more: 404 even for an admin.
        assert fetch(gw, "/metrics", ADMIN_KEY)[0] == 404
    finally:
        gw.stop()


def test_metrics_can_be_switched_off():
    gw = Gateway(server_extra="[metrics]\nenabled = false")
    try:
        assert fetch(gw, "/metrics", ADMIN_KEY)[0] == 404
        assert fetch(gw, "/api/chat", USER_KEY, {"message": "still works"})[0] == 200
    finally:
        gw.stop()


def test_promtool_reads_the_classic_text_format():
    import shutil
    import subprocess

    import pytest

    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    gw = Gateway()
    try:
        assert fetch(gw, "/api/chat", USER_KEY, {"message": "for promtool"})[0] == 200
        status, headers, body = fetch(gw, "/metrics", ADMIN_KEY)
        assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
        assert b"# EOF" not in body
        out = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
        assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    finally:
        gw.stop()


def test_a_real_prometheus_scrapes_the_gateway(tmp_path):
    """The Debian `prometheus` server scrapes /metrics with an admin bearer token; its
    own query API then answers for the gateway's series."""
    import shutil
    import socket
    import subprocess
    import time
    import urllib.parse

    import pytest

    binary = shutil.which("prometheus")
    if not binary:
        pytest.skip("prometheus is not installed (Debian package prometheus)")
    gw = Gateway()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: clawgate\n"
        f"    authorization:\n      credentials: {ADMIN_KEY}\n"
        f"    static_configs:\n      - targets: ['{gw.addr}']\n"
    )
    prom = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        query = urllib.parse.quote('clawgate_build_info{job="clawgate"}')
        deadline = time.time() + 60
        result = []
        while time.time() < deadline and not result:
            time.sleep(1)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?query={query}", timeout=5) as r:
                    result = json.load(r)["data"]["result"]
            except (urllib.error.URLError, ConnectionError, KeyError):
                continue
        assert result, "Prometheus never got clawgate_build_info"
        assert result[0]["value"][1] == "1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5) as r:
            targets = json.load(r)["data"]["activeTargets"]
        assert [t["health"] for t in targets] == ["up"], targets
    finally:
        prom.terminate()
        try:
            prom.wait(timeout=20)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
        gw.stop()
