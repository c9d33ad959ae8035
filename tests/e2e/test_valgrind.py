"""The server and the CLI under valgrind: no invalid accesses, no leaks.

Runs the plain (non-sanitizer) build, since valgrind and ASan do not mix.
Skipped when valgrind or the plain build is missing (make test builds it).
"""
import os
import shutil
import subprocess

import pytest

from conftest import ROOT, Server, base_env

PLAIN_BIN = os.environ.get("CAXTON_PLAIN_BIN") or os.path.join(ROOT, "build", "caxton")
VALGRIND = shutil.which("valgrind")
VALGRIND_ARGS = ["--error-exitcode=97", "--leak-check=full", "--show-leak-kinds=definite,indirect",
                 "--errors-for-leak-kinds=definite,indirect", "--track-fds=no", "--quiet"]

pytestmark = pytest.mark.skipif(not VALGRIND or not os.path.exists(PLAIN_BIN),
                                reason="valgrind or the plain build (build/caxton) is missing")


class ValgrindServer(Server):
    def command(self):
        return [VALGRIND, *VALGRIND_ARGS, f"--log-file={self.dir}/valgrind.log",
                PLAIN_BIN, *super().command()[1:]]


def valgrind_report(path):
    with open(path) as f:
        return f.read()


def test_server_under_valgrind(tmp_path):
    s = ValgrindServer(tmp_path, config="logging:\n  level: debug\n")
    s.env = base_env()
    s.start()
    try:
        assert s.get("/health").status == 200
        assert s.get("/health/deep").status == 200
        assert s.get("/metrics").status == 200
        assert s.get("/nope").status == 404
        assert s.request("DELETE", "/health").status == 405
        assert s.get("/api/v1/status").status == 401
        assert s.admin("GET", "/api/v1/status").status == 200
        r = s.admin("POST", "/api/v1/tokens", body={"role": "viewer", "name": "grafana"})
        assert r.status == 201
        token_id = r.json()["id"]
        assert s.admin("POST", "/api/v1/tokens", body="{bad json").status == 400
        assert s.admin("GET", "/api/v1/tokens").status == 200
        assert s.admin("DELETE", f"/api/v1/tokens/{token_id}").status == 200
        assert s.admin("GET", "/api/v1/config/effective").status == 200
    finally:
        code = s.stop(timeout=60)
    report = valgrind_report(f"{tmp_path}/valgrind.log")
    assert code == 0, f"exit {code}; valgrind says:\n{report}"
    assert report.strip() == "", report


@pytest.mark.parametrize("args", [
    ["--version"], ["help"], ["completion", "bash"], ["stauts"],
    ["config", "validate", os.path.join(ROOT, "packaging", "caxton.yaml")],
    ["status", "--server", "http://127.0.0.1:1", "--timeout", "2s"],
])
def test_cli_under_valgrind(tmp_path, args):
    log = tmp_path / "valgrind.log"
    r = subprocess.run([VALGRIND, *VALGRIND_ARGS, f"--log-file={log}", PLAIN_BIN, *args],
                       env=base_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode != 97, valgrind_report(log)
    assert valgrind_report(log).strip() == ""
