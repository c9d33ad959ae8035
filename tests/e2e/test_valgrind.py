"""The server and the CLI under valgrind: no invalid accesses, no leaks.

Runs the plain (non-sanitizer) build, since valgrind and ASan do not mix.
Skipped when valgrind or the plain build is missing (make test builds it).
"""
import os
import shutil
import subprocess
import threading
import time

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


AGENT = """---
name: {name}
version: {version}
capabilities: [summarization]
llm:
  provider: openai
  model: m
limits:
  max_execution_time: 5s
---
You summarize. Version {version}.
"""


def test_agents_and_messages_under_valgrind(tmp_path):
    """Agents loaded, reloaded, answering, failing, deleted: no invalid accesses, no leaks."""
    from llm_server import ScriptedLLM
    llm = ScriptedLLM()
    llm.start()
    try:
        config = (f"llm:\n  providers:\n    openai:\n      base_url: {llm.url}\n"
                  f"      retries: 0\n      timeout: 2s\n")
        s = ValgrindServer(tmp_path, config=config)
        s.env = base_env()
        agents = tmp_path / "data" / "agents"
        agents.mkdir(parents=True)
        (agents / "writer.md").write_text(AGENT.format(name="writer", version="1.0.0"))
        (agents / "broken.md").write_text("---\nname: broken\n")
        s.start()
        try:
            msg = {"performative": "request", "receiver": "writer", "content": "hello"}
            r = s.admin("POST", "/api/v1/messages?wait=20s", body=msg, timeout=30)
            assert r.status == 200, r
            assert r.json()["reply"]["performative"] == "inform"
            llm.script([{"status": 500}])
            r = s.admin("POST", "/api/v1/messages?wait=20s", body=msg, timeout=30)
            assert r.status == 200 and r.json()["reply"]["performative"] == "failure", r
            r = s.admin("POST", "/api/v1/messages?wait=20s",
                        body={"performative": "request", "capability": "nothing-here",
                              "content": "x"}, timeout=30)
            assert r.json()["reply"]["content"]["reason"] == "no-provider", r
            assert s.admin("POST", "/api/v1/messages", body={"performative": "nope"}).status == 422
            r = s.admin("POST", "/api/v1/agents/writer/reload", body={"force": True}, timeout=30)
            assert r.status == 200
            (agents / "writer.md").write_text(AGENT.format(name="writer", version="1.1.0"))
            r = s.admin("PUT", "/api/v1/agents/writer",
                        body={"content": AGENT.format(name="writer", version="1.2.0")}, timeout=30)
            assert r.status == 200, r
            for path in ("/api/v1/agents", "/api/v1/agents/writer", "/api/v1/conversations",
                         "/api/v1/dead-letters", "/api/v1/capabilities",
                         "/api/v1/agents/writer/reload-status", "/api/v1/agents/writer/queue",
                         "/agents/health-summary", "/api/v1/config/audit-log"):
                assert s.admin("GET", path, timeout=30).status == 200, path
            assert s.get("/metrics").status == 200
            assert s.admin("DELETE", "/api/v1/agents/writer", timeout=30).status == 200
        finally:
            code = s.stop(timeout=60)
    finally:
        llm.stop()
    report = valgrind_report(f"{tmp_path}/valgrind.log")
    assert code == 0, f"exit {code}; valgrind says:\n{report}"
    assert report.strip() == "", report


TOOL_AGENT = """---
name: tooler
version: 1.0.0
capabilities: [tooling]
tools: [scripted.echo, scripted.die, send_message, reply]
llm:
  provider: openai
  model: m
limits:
  max_execution_time: 20s
---
You use tools.
"""


def test_tool_calls_under_valgrind(tmp_path):
    """The tool loop, an MCP server that answers and one that dies, a hallucinated tool."""
    from llm_server import ScriptedLLM
    llm = ScriptedLLM()
    llm.start()
    try:
        script = os.path.join(ROOT, "tests", "mcp", "scripted_server.py")
        config = (f"llm:\n  providers:\n    openai:\n      base_url: {llm.url}\n"
                  f"      retries: 0\n      timeout: 5s\n"
                  f"tools:\n  mcp_servers:\n    scripted:\n"
                  f"      command: [python3, {script}]\n      timeout: 5s\n"
                  f"      restart_backoff: 100ms\n")
        s = ValgrindServer(tmp_path, config=config)
        s.env = base_env()
        agents = tmp_path / "data" / "agents"
        agents.mkdir(parents=True)
        (agents / "tooler.md").write_text(TOOL_AGENT)
        s.start()
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                r = s.admin("GET", "/api/v1/tools", timeout=30)
                servers = r.json()["servers"] if r.status == 200 else []
                if servers and servers[0]["state"] == "ready":
                    break
                time.sleep(0.2)
            llm.script([
                {"tool_calls": [{"name": "scripted__echo", "arguments": {"text": "hi"}},
                                {"name": "invented__tool", "arguments": {}},
                                {"name": "scripted__die", "arguments": {}}]},
                {"tool_calls": [{"name": "reply", "arguments": {"performative": "inform",
                                                                "content": "done"}}]},
            ])
            msg = {"performative": "request", "receiver": "tooler", "content": "work"}
            r = s.admin("POST", "/api/v1/messages?wait=60s", body=msg, timeout=90)
            assert r.status == 200, r
            assert r.json()["reply"]["content"] == "done", r
            assert s.admin("POST", "/api/v1/tools/test", body={"agent": "tooler"},
                           timeout=90).status == 200
            assert s.admin("POST", "/api/v1/tools/reconnect", body={}, timeout=30).status == 200
        finally:
            code = s.stop(timeout=90)
    finally:
        llm.stop()
    report = valgrind_report(f"{tmp_path}/valgrind.log")
    assert code == 0, f"exit {code}; valgrind says:\n{report}"
    assert report.strip() == "", report


def test_memory_under_valgrind(tmp_path):
    """Memory writes, searches, scope refusals, the file operations that
    quiesce and resume the store (backup, export, reinitialize, import,
    restore, recover, reindex) and a damaged file at start: no invalid
    accesses, no leaks."""
    s = ValgrindServer(tmp_path)
    s.env = base_env()
    s.start()
    try:
        for i in range(20):
            r = s.admin("POST", "/api/v1/memory/entities", body={
                "scope": "global" if i % 2 else "workspace:ops", "name": f"entity {i}",
                "type": "thing", "observations": [f"fact {i}", "shared fact"]})
            assert r.status == 201, r.body
        assert s.admin("POST", "/api/v1/memory/relations", body={
            "scope": "global", "from": "entity 1", "to": "entity 3", "type": "depends_on"}).status == 201
        assert s.admin("POST", "/api/v1/memory/entities", body={"name": "a\nb"}).status == 422
        assert s.admin("GET", "/api/v1/memory/search?q=shared+fact&depth=2").status == 200
        assert s.admin("GET", "/api/v1/memory/graph/global/entity%201?depth=2").status == 200
        assert s.admin("GET", "/api/v1/memory/entities/global/entity%201?history=1").status == 200
        export = str(tmp_path / "export.json")
        for op, body in [("backup", {}), ("export", {"json": export}),
                         ("reinitialize", {"empty": True, "yes": True}),
                         ("import", {"file": export, "validate": True}),
                         ("restore", {"from_backup": "latest", "verify_integrity": True}),
                         ("recover", {"from_wal": True, "backup_first": True}),
                         ("reindex", {"full": True, "optimize": True}),
                         ("health-check", {}), ("integrity-check", {"full": True}),
                         ("usage", {"by_scope": True}), ("performance-metrics", {}),
                         ("cleanup", {"vacuum": True})]:
            r = s.admin("POST", f"/api/v1/memory/{op}", body=body)
            assert r.status == 200, (op, r.body)
        assert s.admin("GET", "/api/v1/memory/search?q=fact").json()["results"]
    finally:
        code = s.stop(timeout=120)
    report = valgrind_report(f"{tmp_path}/valgrind.log")
    assert code == 0, f"exit {code}; valgrind says:\n{report}"
    assert report.strip() == "", report
    # a damaged database at start: memory unavailable, the server fine
    with open(os.path.join(s.data_dir, "data", "memory.db"), "r+b") as f:
        f.write(b"\xa5" * 4096)
    os.unlink(f"{tmp_path}/valgrind.log")
    s.start()
    try:
        assert s.admin("GET", "/api/v1/memory/search?q=fact").status == 503
        r = s.admin("POST", "/api/v1/memory/restore", body={"from_backup": "latest"})
        assert r.status == 200, r.body
        assert s.admin("GET", "/api/v1/memory/search?q=fact").status == 200
    finally:
        code = s.stop(timeout=120)
    report = valgrind_report(f"{tmp_path}/valgrind.log")
    assert code == 0, f"exit {code}; valgrind says:\n{report}"
    assert report.strip() == "", report


def test_memory_remote_embedder_under_valgrind(tmp_path):
    """A remote embedder: the queue draining, deferred searches, the provider
    down (text fallback, backoff), the store quiesced and resumed with
    entities waiting, and a search still waiting at shutdown (answered by
    text): no invalid accesses, no leaks."""
    from llm_server import ScriptedLLM
    llm = ScriptedLLM().start()
    config = ("llm:\n  providers:\n    openai:\n"
              f"      base_url: {llm.url}\n      retries: 0\n      timeout: 5s\n"
              "memory:\n  embedder: openai\n  embedding: { model: emb, batch: 3, cache: 4 }\n")
    s = ValgrindServer(tmp_path, config=config)
    s.env = base_env()
    s.start()
    late = {}
    try:
        for i in range(7):
            r = s.admin("POST", "/api/v1/memory/entities", body={
                "scope": "global", "name": f"car {i}", "observations": [f"automobile {i}"]})
            assert r.status == 201, r.body
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            h = s.admin("POST", "/api/v1/memory/health-check", body={"quick": True}).json()
            if h["embedder"]["waiting"] == 0:
                break
            time.sleep(0.2)
        assert h["embedder"]["waiting"] == 0, h
        for q in ("vehicles", "vehicles", "cars 3", "x y z", "w v"):
            body = s.admin("GET", f"/api/v1/memory/search?q={q.replace(' ', '+')}",
                           timeout=30).json()
            assert "vector" not in body, body
        llm.embed_status = 503
        assert s.admin("POST", "/api/v1/memory/entities", body={
            "scope": "global", "name": "waiting", "observations": ["not yet"]}).status == 201
        body = s.admin("GET", "/api/v1/memory/search?q=not+yet", timeout=30).json()
        assert body["vector"].startswith("unavailable:"), body
        for op, args in [("backup", {}), ("restore", {"from_backup": "latest"}),
                         ("reindex", {}), ("health-check", {})]:
            r = s.admin("POST", f"/api/v1/memory/{op}", body=args, timeout=60)
            assert r.status == 200, (op, r.body)
        # a search waiting for the embedder when the server stops
        llm.embed_status = None
        llm.embed_delay = 4.0

        def waiting_search():
            late["r"] = s.admin("GET", "/api/v1/memory/search?q=brand+new+words", timeout=60)
        t = threading.Thread(target=waiting_search)
        t.start()
        time.sleep(1.0)
    finally:
        code = s.stop(timeout=120)
        llm.stop()
    t.join(timeout=60)
    report = valgrind_report(f"{tmp_path}/valgrind.log")
    assert code == 0, f"exit {code}; valgrind says:\n{report}"
    assert report.strip() == "", report
    assert late["r"].status == 200, late["r"]
    assert "vector" in late["r"].json(), late["r"].body
