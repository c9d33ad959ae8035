"""End-to-end tests of the server's lifecycle: stop signals and draining,
SIGHUP (log reopen, config reload), logs, restart and crash recovery, and
`caxton service start|stop|restart|status`.
"""
import json
import os
import re
import signal
import socket
import time

import pytest

from conftest import base_env, run_cli


def out(r):
    return r.stdout + r.stderr


def wait_for(pred, timeout=10.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    return pred()


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def json_lines(path):
    return [json.loads(l) for l in read(path).splitlines() if l.strip()]


def pid_alive(pid):
    """True while pid is a live process (a zombie waiting to be reaped counts as
    gone). A killed process's leader can turn zombie while its other threads
    are still exiting and holding its files (the server's lock among them), so
    those threads count as alive."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        tasks = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return False
    if stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
        return True
    return any(t != str(pid) for t in tasks)


def run_files(s):
    run = os.path.join(s.data_dir, "run")
    return os.path.join(run, "caxton.pid"), os.path.join(run, "api.url")


def partial_post(s, body=b'{"role": "viewer", "name": "slow"}', sent=5):
    """Opens a connection and sends a token-create request whose body is incomplete:
    a request in flight until the rest is sent."""
    conn = socket.create_connection((s.host, s.port), timeout=10)
    head = (f"POST /api/v1/tokens HTTP/1.1\r\nHost: {s.host}\r\n"
            f"Authorization: Bearer {s.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    conn.sendall(head + body[:sent])
    return conn, body[sent:]


def recv_response(conn, timeout=10):
    conn.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    m = re.search(rb"content-length:\s*(\d+)", head, re.I)
    length = int(m.group(1)) if m else 0
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    status = int(head.split()[1]) if head else None
    return status, head.decode(errors="replace"), rest


def connect_refused(s):
    try:
        c = socket.create_connection((s.host, s.port), timeout=2)
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    except OSError:
        return True
    c.close()
    return False


def wait_log(path, needle, timeout=10):
    return wait_for(lambda: needle in read(path), timeout)


# --------------------------------------------------------------------------
# stop signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal(make_server, sig):
    s = make_server(config="server:\n  shutdown_timeout: 5s\n")
    token = s.token
    pid_file, url_file = run_files(s)
    assert os.path.exists(pid_file) and os.path.exists(url_file)
    with open(pid_file) as f:
        assert f.read().strip() == str(s.proc.pid)
    t0 = time.monotonic()
    code = s.stop(sig=sig, timeout=15)
    elapsed = time.monotonic() - t0
    assert code == 0, s.stderr()
    assert elapsed < 5, elapsed  # an idle server does not wait for shutdown_timeout
    assert not os.path.exists(pid_file)
    assert not os.path.exists(url_file)
    s.assert_clean()
    # The lock is released: a new server starts on the same data dir, same admin token.
    s.start()
    assert s.get("/health").status == 200
    assert s.token == token
    assert s.admin("GET", "/api/v1/status").status == 200



def wait_in_flight(s, n=1, timeout=10):
    """Waits until the server counts n requests in flight besides the scrape."""
    def busy():
        text = s.get("/metrics").body.decode()
        m = re.search(r"^caxton_http_requests_in_flight (\d+)", text, re.M)
        return m and int(m.group(1)) >= n + 1
    assert wait_for(busy, timeout), "the request never reached the server"

def test_drain_refuses_new_connections(make_server):
    s = make_server(config="server:\n  shutdown_timeout: 10s\n")
    conn, rest = partial_post(s)
    try:
        wait_in_flight(s)
        t0 = time.monotonic()
        s.signal(signal.SIGTERM)
        assert wait_log(os.path.join(s.log_dir, "caxton.log"), "SIGTERM"), s.stderr()
        # Draining: still running, but no longer accepting connections.
        assert s.proc.poll() is None, "exited without waiting for the request in flight"
        assert wait_for(lambda: connect_refused(s), 5), "new connection accepted while draining"
        assert s.proc.poll() is None
        # The request in flight completes and is answered.
        conn.sendall(rest)
        status, head, body = recv_response(conn)
        assert status in (201, 503), (status, head, body)
        if status == 503:
            assert json.loads(body)["error"]["code"] == "SHUTTING_DOWN"
    finally:
        conn.close()
    code = s.proc.wait(timeout=15)
    assert code == 0, s.stderr()
    assert time.monotonic() - t0 < 10
    s._stderr.close()
    s.assert_clean()


def test_drain_request_on_open_connection_gets_503(make_server):
    """docs/operations.md: a request that arrives on an already open connection while
    the server drains is answered 503 SHUTTING_DOWN with Retry-After."""
    s = make_server(config="server:\n  shutdown_timeout: 10s\n")
    inflight, rest = partial_post(s)
    idle = socket.create_connection((s.host, s.port), timeout=10)
    try:
        idle.sendall(f"GET /health HTTP/1.1\r\nHost: {s.host}\r\n\r\n".encode())
        status, _, _ = recv_response(idle)
        assert status == 200
        wait_in_flight(s)
        s.signal(signal.SIGTERM)
        assert wait_log(os.path.join(s.log_dir, "caxton.log"), "SIGTERM"), s.stderr()
        assert s.proc.poll() is None
        idle.sendall((f"GET /api/v1/status HTTP/1.1\r\nHost: {s.host}\r\n"
                      f"Authorization: Bearer {s.token}\r\n\r\n").encode())
        status, head, body = recv_response(idle)
        assert status == 503, (status, head, body[:300])
        assert re.search(r"^retry-after:\s*\d+", head, re.I | re.M), head
        assert json.loads(body)["error"]["code"] == "SHUTTING_DOWN"
    finally:
        try:
            inflight.sendall(rest)
        except OSError:
            pass
        inflight.close()
        idle.close()
        code = s.proc.wait(timeout=15)
        s._stderr.close()
    assert code == 0, s.stderr()
    s.assert_clean()


def test_stuck_request_does_not_hold_shutdown_beyond_timeout(make_server):
    s = make_server(config="server:\n  shutdown_timeout: 2s\n")
    conn, _ = partial_post(s)  # never completed
    try:
        wait_in_flight(s)
        t0 = time.monotonic()
        s.signal(signal.SIGTERM)
        code = s.proc.wait(timeout=15)
        elapsed = time.monotonic() - t0
    finally:
        conn.close()
    s._stderr.close()
    assert code == 0, s.stderr()
    assert 1.5 <= elapsed < 6, elapsed
    assert "in flight" in read(os.path.join(s.log_dir, "caxton.log")), s.stderr()
    s.assert_clean()


def test_second_signal_stops_without_waiting(make_server):
    s = make_server(config="server:\n  shutdown_timeout: 60s\n")
    conn, _ = partial_post(s)
    try:
        wait_in_flight(s)
        s.signal(signal.SIGTERM)
        assert wait_log(os.path.join(s.log_dir, "caxton.log"), "SIGTERM")
        assert s.proc.poll() is None
        t0 = time.monotonic()
        s.signal(signal.SIGINT)
        code = s.proc.wait(timeout=15)
        assert time.monotonic() - t0 < 5
    finally:
        conn.close()
    s._stderr.close()
    assert code == 0, s.stderr()
    s.assert_clean()


# --------------------------------------------------------------------------
# SIGHUP


def test_sighup_reopens_logs(make_server):
    s = make_server()
    log = os.path.join(s.log_dir, "caxton.log")
    audit = os.path.join(s.log_dir, "audit.log")
    assert wait_log(log, "serving")
    os.rename(log, log + ".1")
    if os.path.exists(audit):
        os.rename(audit, audit + ".1")
    s.signal(signal.SIGHUP)
    assert wait_for(lambda: os.path.exists(log) and read(log).strip(), 10), \
        "no new caxton.log after SIGHUP"
    rotated = read(log + ".1")
    # Later server events go to the new file, not to the moved one.
    s.signal(signal.SIGHUP)
    assert wait_for(lambda: read(log).count("reopened") >= 2 or
                    read(log).count("SIGHUP") >= 2, 10), read(log)
    assert read(log + ".1") == rotated
    for entry in json_lines(log):
        assert {"ts", "level", "component", "msg"} <= set(entry), entry
    # The audit log is reopened too.
    r = s.cli("token", "create", "--role", "viewer", "--name", "after-rotate")
    assert r.returncode == 0, out(r)
    assert wait_log(audit, "after-rotate"), read(audit)
    assert "after-rotate" not in read(audit + ".1")
    assert s.get("/health").status == 200


def test_sighup_reloads_config(make_server):
    s = make_server(config="logging: {level: info}\n")
    log = os.path.join(s.log_dir, "caxton.log")

    def level():
        r = s.admin("GET", "/api/v1/config/effective")
        assert r.status == 200, r
        doc = r.json()
        return doc.get("values", doc)["logging.level"]["value"]

    def failures():
        text = s.get("/metrics").body.decode()
        m = re.search(r"^caxton_config_validation_failures_total(?:\{[^}]*\})? (\S+)$", text,
                      re.M)
        assert m, "caxton_config_validation_failures_total missing from /metrics"
        return float(m.group(1))

    assert level() == "info"
    assert failures() == 0
    with open(s.config_path, "w") as f:
        f.write("logging: {level: debug}\n")
    s.signal(signal.SIGHUP)
    assert wait_log(log, "reloaded"), read(log)
    assert wait_for(lambda: level() == "debug", 5)
    # A broken file is refused: the server keeps running with the old config.
    with open(s.config_path, "w") as f:
        f.write("logging: {level: [\n")
    s.signal(signal.SIGHUP)
    assert wait_for(lambda: any(e["level"] == "error" and e["component"] == "config"
                                for e in json_lines(log)), 10), read(log)
    errors = [e for e in json_lines(log) if e["level"] == "error" and e["component"] == "config"]
    assert any(re.search(re.escape(os.path.basename(s.config_path)) + r":\d+:\d+", e["msg"])
               for e in errors), errors
    assert wait_for(lambda: failures() == 1, 5), failures()
    assert s.proc.poll() is None
    assert s.get("/health").status == 200
    assert level() == "debug"
    r = s.cli("status")
    assert r.returncode == 0, out(r)


def test_sighup_names_restart_only_keys(make_server):
    s = make_server(config="api:\n  workers: 2\n")
    log = os.path.join(s.log_dir, "caxton.log")
    with open(s.config_path, "w") as f:
        f.write("api:\n  workers: 3\n")
    s.signal(signal.SIGHUP)
    assert wait_log(log, "api.workers"), read(log)
    line = [l for l in read(log).splitlines() if "api.workers" in l][0]
    assert "restart" in line, line


def test_sighup_without_config_file(server):
    log = os.path.join(server.log_dir, "caxton.log")
    server.signal(signal.SIGHUP)
    assert wait_log(log, "SIGHUP"), read(log)
    assert server.get("/health").status == 200


# --------------------------------------------------------------------------
# logs


def test_logs_json_lines_and_human_stderr(server):
    log = os.path.join(server.log_dir, "caxton.log")
    assert wait_log(log, "serving")
    entries = json_lines(log)
    assert entries
    for e in entries:
        assert {"ts", "level", "component", "msg"} <= set(e), e
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)", e["ts"]), e
        assert e["level"] in ("debug", "info", "warn", "error"), e
    assert any(e["component"] == "server" and server.url in e["msg"] for e in entries)
    # Human-readable lines on stderr, not JSON.
    lines = [l for l in server.stderr().splitlines() if l.strip()]
    assert lines
    for l in lines:
        assert not l.lstrip().startswith("{"), l
    assert any("serving" in l and server.url in l for l in lines), lines
    # The admin token never appears in a log.
    token = server.token
    for name in os.listdir(server.log_dir):
        assert token not in read(os.path.join(server.log_dir, name)), name
    assert token not in server.stderr()


# --------------------------------------------------------------------------
# restart and crash recovery


def test_state_survives_restart(make_server):
    s = make_server()
    r = s.cli("token", "create", "--role", "viewer", "--name", "keeper", "--output", "json")
    assert r.returncode == 0, out(r)
    kept = json.loads(r.stdout)["token"]
    r = s.cli("token", "create", "--role", "viewer", "--name", "gone", "--output", "json")
    gone = json.loads(r.stdout)["token"]
    assert s.cli("token", "revoke", "gone").returncode == 0
    admin = s.token
    assert s.stop() == 0
    s.start()
    assert s.token == admin
    assert s.get("/api/v1/status", token=kept).status == 200
    assert s.get("/api/v1/status", token=gone).status == 401
    r = s.cli("status", "--token", kept)
    assert r.returncode == 0, out(r)


def test_kill9_then_restart(make_server):
    s = make_server()
    admin = s.token
    r = s.cli("token", "create", "--role", "viewer", "--name", "survivor", "--output", "json")
    assert r.returncode == 0, out(r)
    survivor = json.loads(r.stdout)["token"]
    old_pid = s.proc.pid
    s.proc.kill()
    s.proc.wait(timeout=10)
    s._stderr.close()
    pid_file, _ = run_files(s)
    assert os.path.exists(pid_file)  # left behind by the crash
    s.start()
    assert s.proc.pid != old_pid
    assert s.token == admin
    with open(pid_file) as f:
        assert f.read().strip() == str(s.proc.pid)
    assert s.get("/api/v1/status", token=survivor).status == 200
    r = s.cli("status")
    assert r.returncode == 0, out(r)


# --------------------------------------------------------------------------
# caxton service


@pytest.fixture
def service(tmp_path):
    """Runs `caxton service ...` on one data dir; stops whatever is left at the end."""
    data, logs = str(tmp_path / "svc-data"), str(tmp_path / "svc-log")
    # The background server's stderr is not ours: sanitizer reports go to files.
    san_dir = tmp_path / "sanitizer"
    san_dir.mkdir()
    env = base_env()
    env = {"ASAN_OPTIONS": env["ASAN_OPTIONS"] + f":log_path={san_dir}/asan",
           "UBSAN_OPTIONS": env["UBSAN_OPTIONS"] + f":log_path={san_dir}/ubsan"}

    def run(*args, timeout=60):
        return run_cli("service", *args, "--data-dir", data, timeout=timeout, env=env)

    run.data_dir, run.log_dir = data, logs
    run.start_args = ("--log-dir", logs, "--listen", "127.0.0.1:0")
    yield run
    run("stop", timeout=30)
    pid_file = os.path.join(data, "run", "caxton.pid")
    pid = read(pid_file).strip()
    if pid.isdigit() and pid_alive(int(pid)):
        os.kill(int(pid), signal.SIGKILL)
    reports = {p.name: p.read_text(errors="replace") for p in san_dir.iterdir()}
    assert not reports, reports


def started_pid_and_url(r):
    started = [l for l in r.stdout.splitlines() if "started" in l]
    assert started, r.stdout
    m = re.search(r"pid (\d+)", started[-1])
    u = re.search(r"(https?://127\.0\.0\.1:\d+)", started[-1])
    assert m and u, r.stdout
    return int(m.group(1)), u.group(1)


def test_service_lifecycle(service):
    r = service("start", *service.start_args)
    assert r.returncode == 0, out(r)
    pid, url = started_pid_and_url(r)
    assert pid_alive(pid)
    with open(os.path.join(service.data_dir, "run", "api.url")) as f:
        assert f.read().strip() == url
    # It is ready when start returns.
    r = run_cli("health-check", "--server", url)
    assert r.returncode == 0, out(r)

    r = service("status")
    assert r.returncode == 0, out(r)
    assert str(pid) in r.stdout
    r = service("status", "--output", "json")
    assert r.returncode == 0, out(r)
    doc = json.loads(r.stdout)
    assert doc["running"] is True and doc["pid"] == pid

    r = service("start", *service.start_args)
    assert r.returncode == 0, out(r)
    assert "already running" in out(r), out(r)
    assert str(pid) in out(r)

    r = service("restart", *service.start_args)
    assert r.returncode == 0, out(r)
    new_pid, new_url = started_pid_and_url(r)
    assert new_pid != pid
    assert wait_for(lambda: not pid_alive(pid), 10), "old server still running after restart"
    assert pid_alive(new_pid)
    r = run_cli("health-check", "--server", new_url)
    assert r.returncode == 0, out(r)

    r = service("stop")
    assert r.returncode == 0, out(r)
    assert not pid_alive(new_pid), "service stop returned before the server exited"
    assert not os.path.exists(os.path.join(service.data_dir, "run", "caxton.pid"))

    r = service("status")
    assert r.returncode == 3, out(r)
    assert "not running" in out(r)
    r = service("status", "--output", "json")
    assert r.returncode == 3, out(r)
    assert json.loads(r.stdout)["running"] is False

    r = service("stop")
    assert r.returncode == 0, out(r)


def test_service_logs_go_to_log_dir(service):
    r = service("start", *service.start_args)
    assert r.returncode == 0, out(r)
    log = os.path.join(service.log_dir, "caxton.log")
    assert wait_log(log, "serving"), read(log)
    assert service("stop").returncode == 0
    assert wait_log(log, "stopped"), read(log)


def test_service_start_bad_config(service, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("api: {workers: many}\n")
    t0 = time.monotonic()
    r = service("start", *service.start_args, "--config", str(cfg))
    assert r.returncode == 2, out(r)
    assert time.monotonic() - t0 < 20
    assert re.search(re.escape(str(cfg)) + r":1:\d+", r.stderr), r.stderr
    assert "api.workers" in r.stderr
    r = service("status")
    assert r.returncode == 3, out(r)


def test_service_start_port_in_use(service):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        r = service("start", "--log-dir", service.log_dir, "--listen", f"127.0.0.1:{port}")
    assert r.returncode == 1, out(r)
    assert "address already in use" in r.stderr.lower(), r.stderr
    assert service("status").returncode == 3


def test_service_start_verify_health(service):
    r = service("start", *service.start_args, "--verify-health")
    assert r.returncode == 0, out(r)
    for comp in ("event_loop", "state_db", "data_dir", "api"):
        assert comp in r.stdout, (comp, r.stdout)
    assert service("status").returncode == 0
    assert service("stop").returncode == 0


def test_service_restart_when_stopped_starts(service):
    r = service("restart", *service.start_args)
    assert r.returncode == 0, out(r)
    pid, _ = started_pid_and_url(r)
    assert pid_alive(pid)
    assert service("status").returncode == 0


def test_service_status_with_stale_pid_file(service):
    r = service("start", *service.start_args)
    assert r.returncode == 0, out(r)
    pid, _ = started_pid_and_url(r)
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not pid_alive(pid), 10)
    r = service("status")
    assert r.returncode == 3, out(r)
    r = service("start", *service.start_args)
    assert r.returncode == 0, out(r)
    new_pid, _ = started_pid_and_url(r)
    assert new_pid != pid and pid_alive(new_pid)
