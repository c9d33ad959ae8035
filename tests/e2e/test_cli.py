"""End-to-end tests of the `caxton` command line: help, typos, completion,
status and health checks, exit codes, server/token discovery, tokens and
`config show`.

Exit codes (70-api-cli.md, docs/operations.md): 0 ok, 1 a check found a
problem, 2 usage or config error, 3 server unreachable or not ready, 4
permission denied.
"""
import json
import os
import re
import resource
import socket
import subprocess
import threading
import time

import pytest

from conftest import run_cli

BAD_TOKEN = "cxt_" + "0" * 64
GROUPS = ("status", "health-check", "service", "config", "token")
COMPONENTS = ("event_loop", "state_db", "data_dir", "api", "log_dir")


def out(r):
    return r.stdout + r.stderr


def parse_json(r):
    try:
        return json.loads(r.stdout)
    except ValueError as e:  # pragma: no cover - failure message only
        raise AssertionError(f"stdout is not JSON ({e}): {r.stdout!r} / {r.stderr!r}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_token(server, role, name):
    r = server.cli("token", "create", "--role", role, "--name", name, "--output", "json")
    assert r.returncode == 0, out(r)
    return parse_json(r)


# --------------------------------------------------------------------------
# version, help, typos, completion (no server)


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0, out(r)
    assert re.search(r"caxton \d+\.\d+\.\d+", r.stdout), r.stdout


@pytest.mark.parametrize("args,env", [
    (("--version", "--output", "json"), None),
    (("--output=json", "--version"), None),
    (("--version",), {"CAXTON_OUTPUT": "json"}),
])
def test_version_json(args, env):
    r = run_cli(*args, env=env)
    assert r.returncode == 0, out(r)
    doc = parse_json(r)
    assert list(doc) == ["version"], doc
    assert re.fullmatch(r"\d+\.\d+\.\d+", doc["version"]), doc


def test_version_ignores_a_bad_output_variable():
    r = run_cli("--version", env={"CAXTON_OUTPUT": "yaml"})
    assert r.returncode == 0, out(r)
    assert re.search(r"caxton \d+\.\d+\.\d+", r.stdout), r.stdout


def test_help_lists_groups():
    r = run_cli("help")
    assert r.returncode == 0, out(r)
    for group in GROUPS + ("serve", "completion"):
        assert re.search(rf"^\s+{re.escape(group)}\b", r.stdout, re.M), (group, r.stdout)
    for flag in ("--output", "--server", "--token", "--timeout"):
        assert flag in r.stdout, (flag, r.stdout)


@pytest.mark.parametrize("args", [("help", "token"), ("token", "--help"), ("token", "-h")])
def test_group_help_lists_commands(args):
    r = run_cli(*args)
    assert r.returncode == 0, out(r)
    for cmd in ("create", "list", "revoke"):
        assert re.search(rf"^\s+{cmd}\b", r.stdout, re.M), (cmd, r.stdout)


def test_help_token_create_lists_flags():
    r = run_cli("help", "token", "create")
    assert r.returncode == 0, out(r)
    assert "--role" in r.stdout and "--name" in r.stdout, r.stdout


@pytest.mark.parametrize("args,suggestion", [
    (("stauts",), "status"),
    (("tokn", "list"), "token"),
    (("health-check", "--comprehesive"), "--comprehensive"),
    (("token", "lsit"), "list"),
    (("status", "--prodution-check"), "--production-check"),
])
def test_typo_is_usage_error_with_suggestion(args, suggestion):
    r = run_cli(*args, timeout=20)
    assert r.returncode == 2, out(r)
    assert "did you mean" in r.stderr, r.stderr
    assert f"'{suggestion}'" in r.stderr or f" {suggestion}" in r.stderr, r.stderr
    assert r.stdout == "", r.stdout


def test_unknown_command_without_close_match_is_usage_error():
    r = run_cli("zzzzzzzzqqq")
    assert r.returncode == 2, out(r)
    assert "zzzzzzzzqqq" in r.stderr, r.stderr


def test_missing_argument_is_usage_error():
    r = run_cli("config", "validate")
    assert r.returncode == 2, out(r)
    assert "FILE" in r.stderr or "missing" in r.stderr.lower(), r.stderr


def test_bad_output_format_is_usage_error():
    r = run_cli("status", "--output", "yaml", "--server", "http://127.0.0.1:1")
    assert r.returncode == 2, out(r)
    assert "--output" in r.stderr, r.stderr


def test_bad_timeout_is_usage_error():
    r = run_cli("health-check", "--timeout", "soon", "--server", "http://127.0.0.1:1")
    assert r.returncode == 2, out(r)
    assert "--timeout" in r.stderr, r.stderr


def test_completion_bash(tmp_path):
    r = run_cli("completion", "bash")
    assert r.returncode == 0, out(r)
    script = tmp_path / "caxton.bash"
    script.write_text(r.stdout)
    check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True,
                           timeout=20)
    assert check.returncode == 0, check.stderr
    assert "complete" in r.stdout and "caxton" in r.stdout
    for group in GROUPS:
        assert group in r.stdout, group
    # Loading it and completing the first word offers the groups.
    probe = subprocess.run(
        ["bash", "-c", f"source {script}; COMP_WORDS=(caxton to); COMP_CWORD=1; _caxton; "
                       "printf '%s\\n' \"${COMPREPLY[@]}\""],
        capture_output=True, text=True, timeout=20)
    assert probe.returncode == 0, probe.stderr
    assert "token" in probe.stdout.split(), probe.stdout


def test_completion_unknown_shell_is_usage_error():
    r = run_cli("completion", "tcsh-xyz")
    assert r.returncode == 2, out(r)


# --------------------------------------------------------------------------
# status


def test_status_table(server):
    r = server.cli("status")
    assert r.returncode == 0, out(r)
    assert re.search(r"\b\d+\.\d+\.\d+\b", r.stdout), r.stdout
    assert server.url in r.stdout, r.stdout
    for comp in COMPONENTS:
        assert comp in r.stdout, (comp, r.stdout)


def test_status_json(server):
    r = server.cli("status", "--output", "json")
    assert r.returncode == 0, out(r)
    doc = parse_json(r)
    assert doc["status"] == "ok"
    assert doc["server"]["url"] == server.url
    assert re.match(r"\d+\.\d+\.\d+", doc["server"]["version"])
    assert doc["server"]["pid"] == server.proc.pid
    names = {c["name"] for c in doc["components"]}
    assert set(COMPONENTS) <= names, names
    assert all(c["status"] == "ok" for c in doc["components"]), doc["components"]


def _fd_safe_config():
    """The file_descriptors check needs RLIMIT_NOFILE >= api.max_connections + 256;
    lower max_connections if this host cannot give that, so only loopback matters."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if limit >= 16384 + 256:
        return None
    return "api:\n  max_connections: 256\n"


def test_status_production_check_loopback(make_server):
    s = make_server(config=_fd_safe_config())
    r = s.cli("status", "--production-check", "--timeout", "10s")
    assert r.returncode == 0, out(r)
    for check in ("components", "api_exposure", "data_dir_mode", "admin_token_mode",
                  "file_descriptors", "log_level"):
        assert check in r.stdout, (check, r.stdout)
    r = s.cli("status", "--production-check", "--output", "json")
    assert r.returncode == 0, out(r)
    checks = {c["name"]: c for c in parse_json(r)["production_checks"]}
    assert checks["api_exposure"]["status"] == "ok", checks


def test_status_production_check_exposed_without_tls(make_server):
    s = make_server(args=["--listen", "0.0.0.0:0"], config=_fd_safe_config())
    r = s.cli("status", "--production-check", "--timeout", "10s",
              "--server", f"http://127.0.0.1:{s.port}", "--token", s.token)
    assert r.returncode == 1, out(r)
    line = [l for l in r.stdout.splitlines() if "api_exposure" in l]
    assert line, r.stdout
    assert "fail" in line[0] or "warn" in line[0], line
    assert "tls" in line[0].lower(), line  # the fix is printed
    r = s.cli("status", "--production-check", "--output", "json",
              "--server", f"http://127.0.0.1:{s.port}", "--token", s.token)
    assert r.returncode == 1, out(r)
    checks = {c["name"]: c for c in parse_json(r)["production_checks"]}
    assert checks["api_exposure"]["status"] in ("fail", "warn"), checks
    assert checks["api_exposure"]["fix"], checks


def test_status_without_production_check_ignores_exposure(make_server):
    s = make_server(args=["--listen", "0.0.0.0:0"])
    r = s.cli("status", "--server", f"http://127.0.0.1:{s.port}", "--token", s.token)
    assert r.returncode == 0, out(r)


# --------------------------------------------------------------------------
# health-check


def test_health_check(server):
    r = server.cli("health-check")
    assert r.returncode == 0, out(r)
    r = server.cli("health-check", "--output", "json")
    assert r.returncode == 0, out(r)
    assert parse_json(r)["status"] == "ok"


def test_health_check_comprehensive(server):
    r = server.cli("health-check", "--comprehensive")
    assert r.returncode == 0, out(r)
    for comp in COMPONENTS:
        assert re.search(rf"^{comp}\s+ok\b", r.stdout, re.M), (comp, r.stdout)
    r = server.cli("health-check", "--comprehensive", "--output", "json")
    assert r.returncode == 0, out(r)
    doc = parse_json(r)
    assert doc["status"] == "ok"
    assert set(COMPONENTS) <= {c["name"] for c in doc["components"]}


def test_health_check_wait_ready(server):
    r = server.cli("health-check", "--wait-ready", "--timeout", "30s")
    assert r.returncode == 0, out(r)


def test_health_check_wait_ready_waits_for_a_starting_server(make_server):
    s = make_server(start=False)
    port = free_port()
    s.args = ["--listen", f"127.0.0.1:{port}"]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [s.command()[0], "health-check", "--wait-ready", "--timeout", "30s", "--server", url],
        env=s.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        s.start()
        stdout, stderr = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stdout + stderr


@pytest.mark.parametrize("args", [
    ("status",), ("health-check",), ("health-check", "--comprehensive"),
    ("token", "list"), ("status", "--production-check"),
])
def test_unreachable_server_exit_3(args):
    url = "http://127.0.0.1:1"
    t0 = time.monotonic()
    r = run_cli(*args, "--server", url, "--token", BAD_TOKEN, timeout=30)
    assert r.returncode == 3, out(r)
    assert url in r.stderr, r.stderr
    assert time.monotonic() - t0 < 15


def test_wait_ready_honours_timeout():
    url = "http://127.0.0.1:1"
    t0 = time.monotonic()
    r = run_cli("health-check", "--wait-ready", "--timeout", "2s", "--server", url, timeout=30)
    elapsed = time.monotonic() - t0
    assert r.returncode == 3, out(r)
    assert url in r.stderr, r.stderr
    assert 1.5 <= elapsed < 10, elapsed


# --------------------------------------------------------------------------
# server and token discovery


def test_wrong_token_exit_4(server):
    r = server.cli("status", "--token", BAD_TOKEN)
    assert r.returncode == 4, out(r)
    assert r.stderr.strip(), "no explanation printed"
    assert BAD_TOKEN not in out(r)  # the secret is not echoed


def test_viewer_token_on_token_list_exit_4(server):
    viewer = create_token(server, "viewer", "reader")["token"]
    r = server.cli("status", "--token", viewer)
    assert r.returncode == 0, out(r)
    r = server.cli("token", "list", "--token", viewer)
    assert r.returncode == 4, out(r)
    assert "admin" in r.stderr, r.stderr
    r = server.cli("token", "create", "--role", "viewer", "--name", "x", "--token", viewer)
    assert r.returncode == 4, out(r)


def test_server_flag_beats_env_and_url_file(server):
    # CAXTON_SERVER beats run/api.url ...
    r = server.cli("status", env={"CAXTON_SERVER": "http://127.0.0.1:1"})
    assert r.returncode == 3, out(r)
    assert "127.0.0.1:1" in r.stderr
    # ... and --server beats CAXTON_SERVER.
    r = server.cli("status", "--server", server.url, "--token", server.token,
                   env={"CAXTON_SERVER": "http://127.0.0.1:1"})
    assert r.returncode == 0, out(r)
    r = server.cli("status", "--server", "http://127.0.0.1:1")
    assert r.returncode == 3, out(r)


def test_server_found_from_config_api_listen(server, tmp_path):
    empty = tmp_path / "empty-data"
    empty.mkdir()
    cfg = tmp_path / "client.yaml"
    cfg.write_text(f"api:\n  listen: 127.0.0.1:{server.port}\n")
    r = run_cli("status", "--config", str(cfg), "--data-dir", str(empty), "--token", server.token)
    assert r.returncode == 0, out(r)
    assert server.url in r.stdout
    r = run_cli("status", "--data-dir", str(empty), "--token", server.token,
                env={"CAXTON_CONFIG": str(cfg)})
    assert r.returncode == 0, out(r)


def test_token_precedence(server):
    # --token beats CAXTON_TOKEN, which beats tokens/admin.token.
    r = server.cli("token", "list", env={"CAXTON_TOKEN": BAD_TOKEN})
    assert r.returncode == 4, out(r)
    r = server.cli("token", "list", "--token", server.token, env={"CAXTON_TOKEN": BAD_TOKEN})
    assert r.returncode == 0, out(r)
    r = server.cli("token", "list", "--token", BAD_TOKEN)
    assert r.returncode == 4, out(r)
    r = server.cli("token", "list", env={"CAXTON_TOKEN": server.token})
    assert r.returncode == 0, out(r)


def test_no_token_available_exit_4(server, tmp_path):
    empty = tmp_path / "nodata"
    empty.mkdir()
    r = run_cli("token", "list", "--server", server.url, "--data-dir", str(empty))
    assert r.returncode == 4, out(r)


class CaptureServer:
    """A tiny HTTP server on 127.0.0.1 that records each request's headers
    and answers 401 with an API error envelope, like a caxton server would
    for a request without a token."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests = []  # one dict of lower-cased header names per request
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(10)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                self.requests.append({"request_line": lines[0], "headers": headers})
                body = json.dumps({"error": {"code": "UNAUTHENTICATED",
                                             "message": "this endpoint needs a token"}}).encode()
                conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                             b"Connection: close\r\nContent-Length: " + str(len(body)).encode() +
                             b"\r\n\r\n" + body)

    def close(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def capture():
    c = CaptureServer()
    yield c
    c.close()


def _data_dir_with_admin_token(tmp_path):
    data = tmp_path / "data"
    (data / "tokens").mkdir(parents=True)
    (data / "tokens" / "admin.token").write_text("cxt_" + "a" * 64 + "\n")
    return data


@pytest.mark.parametrize("how", ["flag", "env"])
def test_admin_token_is_not_sent_to_a_named_server(capture, tmp_path, how):
    data = _data_dir_with_admin_token(tmp_path)
    args, env = ["status", "--data-dir", str(data)], {}
    if how == "flag":
        args += ["--server", capture.url]
    else:
        env["CAXTON_SERVER"] = capture.url
    r = run_cli(*args, env=env, timeout=30)
    assert len(capture.requests) == 1, (capture.requests, out(r))
    assert "authorization" not in capture.requests[0]["headers"], capture.requests
    assert capture.requests[0]["request_line"].startswith("GET /api/v1/status "), capture.requests
    # The server's 401 comes with the way to send a token, and no secret is printed.
    assert r.returncode == 4, out(r)
    assert "--token" in r.stderr and "CAXTON_TOKEN" in r.stderr, r.stderr
    assert "a" * 64 not in out(r)


def test_token_given_for_a_named_server_is_sent(capture, tmp_path):
    data = _data_dir_with_admin_token(tmp_path)
    r = run_cli("health-check", "--comprehensive", "--data-dir", str(data), "--server",
                capture.url, env={"CAXTON_TOKEN": BAD_TOKEN}, timeout=30)
    assert r.returncode == 4, out(r)
    assert [q["headers"].get("authorization") for q in capture.requests] == \
        [f"Bearer {BAD_TOKEN}"], capture.requests


def test_admin_token_file_is_used_for_the_local_server(server):
    # Found through the data dir: the admin token there is the operator's own.
    r = server.cli("token", "list")
    assert r.returncode == 0, out(r)


def test_service_status_sends_no_admin_token_to_a_named_server(capture, make_server):
    # A running server in the data dir, but --server names another one.
    s = make_server()
    r = s.cli("service", "status", "--server", capture.url, "--output", "json")
    assert r.returncode == 0, out(r)
    assert capture.requests, out(r)
    assert all("authorization" not in q["headers"] for q in capture.requests), capture.requests
    assert "401" in parse_json(r)["api_error"], r.stdout


# --------------------------------------------------------------------------
# tokens


def test_token_create_prints_secret_once(server):
    r = server.cli("token", "create", "--role", "viewer", "--name", "grafana")
    assert r.returncode == 0, out(r)
    secrets = re.findall(r"cxt_[0-9a-f]{64}", r.stdout)
    assert len(secrets) == 1, r.stdout
    secret = secrets[0]
    # The secret works, with the viewer role.
    assert server.get("/api/v1/status", token=secret).status == 200
    assert server.request("GET", "/api/v1/tokens", token=secret).status == 403
    # It is never shown again.
    r = server.cli("token", "list")
    assert r.returncode == 0, out(r)
    assert secret not in r.stdout and "cxt_" not in r.stdout, r.stdout
    r = server.cli("token", "list", "--output", "json")
    assert secret not in r.stdout and "cxt_" not in r.stdout, r.stdout


def test_token_create_and_list_json(server):
    doc = create_token(server, "operator", "deployer")
    assert doc["name"] == "deployer" and doc["role"] == "operator"
    assert doc["id"].startswith("tok_")
    assert re.fullmatch(r"cxt_[0-9a-f]{64}", doc["token"]), doc
    r = server.cli("token", "list", "--output", "json")
    assert r.returncode == 0, out(r)
    items = parse_json(r)["items"]
    by_name = {t["name"]: t for t in items}
    assert by_name["deployer"]["id"] == doc["id"]
    assert by_name["deployer"]["role"] == "operator"
    assert by_name["deployer"]["revoked_at"] is None
    assert any(t["role"] == "admin" for t in items)
    assert all("token" not in t for t in items)


def test_token_list_table_shows_name_and_role(server):
    create_token(server, "viewer", "grafana")
    r = server.cli("token", "list")
    assert r.returncode == 0, out(r)
    line = [l for l in r.stdout.splitlines() if "grafana" in l]
    assert len(line) == 1, r.stdout
    assert "viewer" in line[0] and "tok_" in line[0], line


def _token_entry(server, name):
    r = server.cli("token", "list", "--output", "json")
    assert r.returncode == 0, out(r)
    return {t["name"]: t for t in parse_json(r)["items"]}[name]


def test_token_revoke_by_name(server):
    doc = create_token(server, "viewer", "grafana")
    r = server.cli("token", "revoke", "grafana")
    assert r.returncode == 0, out(r)
    assert _token_entry(server, "grafana")["revoked_at"], "not shown revoked"
    line = [l for l in server.cli("token", "list").stdout.splitlines() if "grafana" in l][0]
    # The last column (REVOKED) holds when it was revoked.
    assert re.search(r"\d{4}-\d\d-\d\dT\S+\s*$", line) or "revoked" in line.lower(), line
    assert server.get("/api/v1/status", token=doc["token"]).status == 401


def test_token_revoke_by_id(server):
    doc = create_token(server, "viewer", "prom")
    r = server.cli("token", "revoke", doc["id"])
    assert r.returncode == 0, out(r)
    assert _token_entry(server, "prom")["revoked_at"]
    r = server.cli("status", "--token", doc["token"])
    assert r.returncode == 4, out(r)


def test_token_revoke_unknown_exit_1(server):
    r = server.cli("token", "revoke", "no-such-token")
    assert r.returncode == 1, out(r)
    assert "no-such-token" in r.stderr, r.stderr
    r = server.cli("token", "revoke", "tok_00000000")
    assert r.returncode == 1, out(r)


def test_token_create_bad_role_exit_2(server):
    r = server.cli("token", "create", "--role", "root", "--name", "x")
    assert r.returncode == 2, out(r)
    assert "root" in r.stderr and "viewer" in r.stderr, r.stderr
    r = server.cli("token", "list", "--output", "json")
    assert "\"x\"" not in r.stdout


def test_token_create_missing_name_exit_2(server):
    r = server.cli("token", "create", "--role", "viewer")
    assert r.returncode == 2, out(r)
    assert "--name" in r.stderr, r.stderr


# --------------------------------------------------------------------------
# config show


def test_config_show_effective_from_server(server):
    r = server.cli("config", "show", "--effective")
    assert r.returncode == 0, out(r)
    listen = [l for l in r.stdout.splitlines() if l.startswith("api.listen")]
    assert listen and "flag" in listen[0] and "--listen" in listen[0], r.stdout
    workers = [l for l in r.stdout.splitlines() if l.startswith("api.workers")]
    assert workers and "default" in workers[0], r.stdout
    r = server.cli("config", "show", "--effective", "--output", "json")
    assert r.returncode == 0, out(r)
    values = parse_json(r)["values"]
    assert values["api.listen"]["source"] == "flag"
    assert values["api.listen"]["where"] == "--listen"
    assert values["server.data_dir"]["value"] == server.data_dir
    assert values["logging.level"]["source"] == "default"


def test_config_show_effective_needs_admin(server):
    viewer = create_token(server, "viewer", "v")["token"]
    r = server.cli("config", "show", "--effective", "--token", viewer)
    assert r.returncode == 4, out(r)


def test_config_show_offline_env(tmp_path):
    env = {"CAXTON_API_WORKERS": "7", "CAXTON_DATA_DIR": str(tmp_path / "d")}
    r = run_cli("config", "show", "--effective", "--offline", env=env)
    assert r.returncode == 0, out(r)
    line = [l for l in r.stdout.splitlines() if l.startswith("api.workers")]
    assert line and re.search(r"\b7\b", line[0]), r.stdout
    assert "env" in line[0] and "CAXTON_API_WORKERS" in line[0], line
    r = run_cli("config", "show", "--effective", "--offline", "--output", "json", env=env)
    assert r.returncode == 0, out(r)
    w = parse_json(r)["values"]["api.workers"]
    assert w["value"] == 7 and w["source"] == "env" and w["where"] == "CAXTON_API_WORKERS", w


SECRET_CONFIG = """\
llm:
  providers:
    openai:
      base_url: https://api.openai.com/v1
      api_key: sk-very-secret-value-123
"""


def test_config_show_offline_redacts_secrets(tmp_path):
    cfg = tmp_path / "caxton.yaml"
    cfg.write_text(SECRET_CONFIG)
    for fmt in ("table", "json"):
        r = run_cli("config", "show", "--offline", "--config", str(cfg), "--output", fmt,
                    env={"CAXTON_DATA_DIR": str(tmp_path / "d")})
        assert r.returncode == 0, out(r)
        assert "sk-very-secret-value-123" not in out(r), r.stdout
        assert "***" in r.stdout, r.stdout
        assert "api.openai.com" in r.stdout, r.stdout
    doc = parse_json(r)
    assert doc["values"]["llm.providers"]["value"]["openai"]["api_key"] == "***"
    assert doc["values"]["llm.providers"]["source"] == "file"


def test_config_show_effective_redacts_secrets_from_server(make_server):
    s = make_server(config=SECRET_CONFIG)
    r = s.cli("config", "show", "--effective", "--output", "json")
    assert r.returncode == 0, out(r)
    assert "sk-very-secret-value-123" not in r.stdout
    assert parse_json(r)["values"]["llm.providers"]["value"]["openai"]["api_key"] == "***"
    r = s.cli("config", "show", "--effective")
    assert r.returncode == 0, out(r)
    assert "sk-very-secret-value-123" not in r.stdout and "***" in r.stdout
    # ... and never in the logs either.
    for name in os.listdir(s.log_dir):
        with open(os.path.join(s.log_dir, name), errors="replace") as f:
            assert "sk-very-secret-value-123" not in f.read(), name
    assert "sk-very-secret-value-123" not in s.stderr()
