"""Regression tests: each pins down a bug found in review, so it stays fixed."""
import json
import os
import signal
import socket
import time
import urllib.parse

import pytest


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_failed_admin_token_write_does_not_lock_admin_out(make_server):
    """A first start that cannot write tokens/admin.token must not leave an
    admin token nobody holds: the next start writes one."""
    s = make_server(start=False)
    blocker = os.path.join(s.data_dir, "tokens", "admin.token")
    os.makedirs(blocker)  # a directory where the file should go
    s.start(wait=False)
    assert s.proc.wait(timeout=30) == 1, s.stderr()
    os.rmdir(blocker)
    s.start()
    r = s.admin("GET", "/api/v1/tokens")
    assert r.status == 200, r
    assert [t["role"] for t in r.json()["items"]] == ["admin"]


def test_last_admin_token_cannot_be_revoked(server):
    tokens = server.admin("GET", "/api/v1/tokens").json()["items"]
    admin_id = tokens[0]["id"]
    r = server.admin("DELETE", f"/api/v1/tokens/{admin_id}")
    assert r.status == 409, r
    err = r.json()["error"]
    assert err["code"] == "LAST_ADMIN_TOKEN"
    assert "create another" in err["message"]
    # With a second admin token, the first can go.
    second = server.admin("POST", "/api/v1/tokens", body={"role": "admin", "name": "ops"}).json()
    assert server.admin("DELETE", f"/api/v1/tokens/{admin_id}").status == 200
    r = server.request("GET", "/api/v1/tokens", token=second["token"])
    assert r.status == 200


def test_restart_with_no_active_admin_writes_a_new_token(make_server):
    s = make_server()
    first = s.token
    second = s.admin("POST", "/api/v1/tokens", body={"role": "admin", "name": "ops"}).json()
    ids = [t["id"] for t in s.admin("GET", "/api/v1/tokens").json()["items"]]
    assert s.request("DELETE", f"/api/v1/tokens/{ids[0]}", token=second["token"]).status == 200
    assert s.request("DELETE", f"/api/v1/tokens/{second['id']}", token=second["token"]).status == 409
    assert s.stop() == 0
    s.start()
    assert s.token == first  # an active admin token exists: nothing new is written
    assert s.request("GET", "/api/v1/tokens", token=second["token"]).status == 200


@pytest.mark.parametrize("path", ["/%ff", "/api/v1/%c3", "/nope%ff%fe"])
def test_error_for_non_utf8_path_keeps_its_body(server, path):
    r = server.get(path)
    assert r.status == 404, r
    err = r.json()["error"]
    assert err["code"] == "ROUTE_NOT_FOUND"
    assert err["request_id"]


def test_error_message_cut_inside_a_character_keeps_its_body(server):
    cursor = "x" * 39 + "é"
    r = server.admin("GET", "/api/v1/tokens?cursor=" + urllib.parse.quote(cursor))
    assert r.status == 400, r
    assert r.json()["error"]["code"] == "INVALID_PARAMETER"
    name = "k" * 63 + "é"
    r = server.admin("POST", "/api/v1/tokens", body={"role": "viewer", "name": "a", name: 1})
    assert r.status == 422, r
    assert r.json()["error"]["details"]["field"] == name


def test_sighup_keeps_restart_only_settings(make_server, tmp_path):
    s = make_server(config="api:\n  max_connections: 100\nlogging:\n  level: info\n")
    before = s.admin("GET", "/api/v1/config/effective").json()["values"]
    with open(s.config_path, "w") as f:
        f.write("api:\n  max_connections: 200\nserver:\n  data_dir: /nonexistent/elsewhere\n"
                "logging:\n  level: debug\n")
    s.signal(signal.SIGHUP)
    log = os.path.join(s.log_dir, "caxton.log")
    assert wait_for(lambda: "configuration reloaded" in open(log).read())
    after = s.admin("GET", "/api/v1/config/effective").json()["values"]
    assert after["logging.level"]["value"] == "debug"  # reloadable: applied
    for key in ("api.max_connections", "server.data_dir", "agents.dir", "memory.path"):
        assert after[key] == before[key], key  # restart-only: what the server runs with
    lines = [json.loads(l) for l in open(log)]
    assert any("api.max_connections" in l["msg"] and "restart" in l["msg"] for l in lines)
    audit = [json.loads(l) for l in open(os.path.join(s.log_dir, "audit.log"))]
    assert any(l.get("action") == "config.reload" for l in audit)


def test_run_files_are_private(server):
    for name in ("caxton.pid", "api.url", "caxton.lock"):
        mode = os.stat(os.path.join(server.data_dir, "run", name)).st_mode & 0o777
        assert mode == 0o600, (name, oct(mode))


def test_oversized_chunked_body_to_route_without_body(make_server):
    s = make_server(config="api:\n  max_body: 1KB\n")
    with socket.create_connection((s.host, s.port), timeout=10) as sock:
        sock.sendall(b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"800\r\n" + b"a" * 0x800 + b"\r\n"
        sock.sendall(chunk * 4 + b"0\r\n\r\n")
        data = sock.recv(4096)
    assert data.startswith(b"HTTP/1.1 405") or data.startswith(b"HTTP/1.1 413"), data[:100]
    assert s.get("/health").status == 200
