"""The Prometheus endpoint: content type, required families, per-route
counters and histograms labelled by route template (bounded labels), and
`promtool check metrics` on the scraped text."""
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import Server, run_cli

PROMTOOL = shutil.which("promtool") or ("/usr/bin/promtool" if os.path.exists("/usr/bin/promtool")
                                        else None)
SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("metrics"))
    s.start()
    yield s
    code = s.stop()
    assert code == 0, f"server exited with {code}: {s.stderr()}"
    s.assert_clean()


def scrape(s):
    r = s.get("/metrics")
    assert r.status == 200, r
    return r, r.body.decode("utf-8")


def parse(text):
    """[(name, {labels}, value)] for every sample line; checks the syntax."""
    samples = []
    seen = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        name, _, labels_text, value = m.group(1), m.group(2), m.group(3), m.group(4)
        labels = dict(LABEL_RE.findall(labels_text or ""))
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, f"duplicate series: {line!r}"
        seen.add(key)
        samples.append((name, labels, float(value)))
    return samples


def value(samples, name, **labels):
    for n, l, v in samples:
        if n == name and all(l.get(k) == str(val) for k, val in labels.items()):
            return v
    return None


def promtool_check(text):
    if not PROMTOOL:
        pytest.skip("promtool is not installed (Debian package 'prometheus')")
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, f"promtool check metrics failed:\n{p.stdout}\n{p.stderr}"


# ---- format and required families ---------------------------------------------

def test_content_type(srv):
    r, _ = scrape(srv)
    ct = r.header("Content-Type") or ""
    assert ct.startswith("text/plain; version=0.0.4"), ct
    assert r.header("X-Request-Id")


def test_required_families(srv):
    srv.get("/health")
    _, text = scrape(srv)
    samples = parse(text)
    assert value(samples, "caxton_up") == 1
    version = next((l.get("version") for n, l, v in samples if n == "caxton_build_info"), None)
    assert version, "caxton_build_info{version=...} missing"
    assert value(samples, "caxton_build_info", version=version) == 1
    cli = run_cli("--version")
    assert cli.returncode == 0 and version in cli.stdout, (version, cli.stdout, cli.stderr)
    assert value(samples, "caxton_uptime_seconds") is not None
    assert value(samples, "caxton_uptime_seconds") >= 0
    assert value(samples, "caxton_http_connections") >= 1  # this scrape's own connection
    assert value(samples, "caxton_config_validation_failures_total") == 0
    assert value(samples, "process_resident_memory_bytes") > 1024 * 1024
    assert value(samples, "process_open_fds") > 3
    for family, kind in (("caxton_up", "gauge"), ("caxton_http_requests_total", "counter"),
                         ("caxton_http_request_duration_seconds", "histogram"),
                         ("caxton_http_connections", "gauge"),
                         ("caxton_config_validation_failures_total", "counter")):
        assert f"# TYPE {family} {kind}\n" in text, f"no '# TYPE {family} {kind}'"
        assert f"# HELP {family} " in text, f"no HELP for {family}"


def test_uptime_grows(srv):
    _, a = scrape(srv)
    time.sleep(0.3)
    _, b = scrape(srv)
    ua = value(parse(a), "caxton_uptime_seconds")
    ub = value(parse(b), "caxton_uptime_seconds")
    assert ub > ua, (ua, ub)


def test_promtool_accepts_scrape(srv):
    _, text = scrape(srv)
    promtool_check(text)


# ---- request counters and histograms --------------------------------------------

def test_requests_counted_by_route(srv):
    before = parse(scrape(srv)[1])
    n0 = value(before, "caxton_http_requests_total", method="GET", route="/api/v1/status",
               status="200") or 0
    for _ in range(3):
        assert srv.admin("GET", "/api/v1/status").status == 200
    after = parse(scrape(srv)[1])
    n1 = value(after, "caxton_http_requests_total", method="GET", route="/api/v1/status",
               status="200")
    assert n1 == n0 + 3, (n0, n1)
    c = value(after, "caxton_http_request_duration_seconds_count", route="/api/v1/status")
    assert c is not None and c >= 3


def test_route_template_not_raw_url(srv):
    r = srv.admin("DELETE", "/api/v1/tokens/tok_deadbeef")
    assert r.status == 404, r
    for path in ("/api/v1/nope-x1y2z3", "/no/such/thing-q9w8e7", "/api/v1/tokens/a/b-r5t6"):
        assert srv.get(path).status == 404
    _, text = scrape(srv)
    samples = parse(text)
    v = value(samples, "caxton_http_requests_total", method="DELETE", route="/api/v1/tokens/{id}",
              status="404")
    assert v is not None and v >= 1, [s for s in samples if s[0] == "caxton_http_requests_total"]
    for raw in ("tok_deadbeef", "nope-x1y2z3", "thing-q9w8e7", "b-r5t6"):
        assert raw not in text, f"a raw URL part ({raw}) became a label"
    # Route labels are bounded: route templates, plus at most one label for
    # requests that matched no route.
    openapi = srv.get("/api/v1/openapi.json").json()
    templates = set(openapi["paths"])
    routes = {l["route"] for n, l, _ in samples if "route" in l}
    others = routes - templates
    assert len(others) <= 1, f"route labels that are not templates: {others}"


def test_histogram_buckets(srv):
    for _ in range(2):
        srv.get("/health")
    samples = parse(scrape(srv)[1])
    buckets = [(l["le"], v) for n, l, v in samples
               if n == "caxton_http_request_duration_seconds_bucket" and l.get("route") == "/health"]
    assert len(buckets) >= 5, buckets
    les = [float("inf") if le == "+Inf" else float(le) for le, _ in buckets]
    assert les == sorted(les), f"buckets not in ascending order: {les}"
    assert les[-1] == float("inf"), "no +Inf bucket"
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), f"bucket counts must not decrease: {buckets}"
    total = value(samples, "caxton_http_request_duration_seconds_count", route="/health")
    assert counts[-1] == total and total >= 2, (counts[-1], total)
    s = value(samples, "caxton_http_request_duration_seconds_sum", route="/health")
    assert s is not None and s >= 0


def test_promtool_after_errors(srv):
    statuses = {
        srv.get("/api/v1/nope").status,                                  # 404
        srv.request("DELETE", "/health").status,                         # 405
        srv.request("PUT", "/api/v1/tokens").status,                     # 405
        srv.get("/api/v1/status").status,                                # 401
        srv.get("/api/v1/status", token="cxt_" + "f" * 64).status,       # 401
        srv.admin("POST", "/api/v1/tokens", body="{").status,            # 400
        srv.admin("GET", "/api/v1/tokens?limit=0").status,               # 400
        srv.admin("POST", "/api/v1/tokens", body={"role": "x"}).status,  # 422
    }
    assert statuses == {404, 405, 401, 400, 422}, statuses
    _, text = scrape(srv)
    samples = parse(text)
    for status in ("404", "405", "401", "400", "422"):
        assert any(n == "caxton_http_requests_total" and l.get("status") == status
                   for n, l, _ in samples), f"no request counted with status {status}"
    assert value(samples, "caxton_http_requests_total", method="DELETE", route="/health",
                 status="405") >= 1
    assert value(samples, "caxton_http_requests_total", method="GET", route="/api/v1/status",
                 status="401") >= 2
    promtool_check(text)
