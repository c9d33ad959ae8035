"""Helpers for the tool-calling end-to-end tests: MCP servers to launch, a
server config with providers and tool servers, agent files with a `tools`
allow-list, and bounded waits on the tool servers' state.

Three kinds of MCP server: the reference servers from npm (`everything` and
`filesystem`, pinned in tests/mcp; the tests using them are skipped while
tests/mcp/node_modules is missing) and tests/mcp/scripted_server.py, whose
misbehaviour a test picks by the tool it calls. Every wait here is bounded.
"""
import json
import os
import shutil
import socket
import sys

import pytest

from conftest import ROOT
from messaging_util import get_json, poll, request_msg, send, write_agents

MCP_DIR = os.path.join(ROOT, "tests", "mcp")
NPM_SCOPE = os.path.join(MCP_DIR, "node_modules", "@modelcontextprotocol")
EVERYTHING_JS = os.path.join(NPM_SCOPE, "server-everything", "dist", "index.js")
FILESYSTEM_JS = os.path.join(NPM_SCOPE, "server-filesystem", "dist", "index.js")
SCRIPTED = os.path.join(MCP_DIR, "scripted_server.py")

HAVE_NPM_SERVERS = (os.path.exists(EVERYTHING_JS) and os.path.exists(FILESYSTEM_JS)
                    and shutil.which("node") is not None)
needs_npm = pytest.mark.skipif(
    not HAVE_NPM_SERVERS,
    reason="the reference MCP servers are not installed (tests/mcp/node_modules is missing, "
           "or node is not on PATH): run tests/mcp/install.sh (`make test` does)")

READY_WAIT_S = 20.0  # node servers start in well under a second; this only bounds a failure


def everything_cmd():
    return ["node", EVERYTHING_JS, "stdio"]


def filesystem_cmd(directory):
    return ["node", FILESYSTEM_JS, str(directory)]


def scripted_cmd(*options):
    return [sys.executable, SCRIPTED, *[str(o) for o in options]]


def closed_port():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _yaml_value(value):
    """A value in YAML flow style: JSON is valid YAML for strings, numbers and lists."""
    return json.dumps(value)


def provider(base_url, kind=None, retries=0, **settings):
    """One entry of llm.providers (kind: the `type`, when not implied by the name)."""
    entry = {"base_url": base_url, "retries": retries}
    if kind:
        entry["type"] = kind
    entry.update(settings)
    return entry


def tools_config(providers, servers=None, extra=""):
    """A server config: {name: provider(...)} and {name: {command: [...], timeout: ...}}."""
    lines = ["llm:", "  providers:"]
    for name, settings in providers.items():
        lines.append(f"    {name}:")
        lines += [f"      {k}: {_yaml_value(v)}" for k, v in settings.items()]
    if servers:
        lines += ["tools:", "  mcp_servers:"]
        for name, settings in servers.items():
            lines.append(f"    {name}:")
            lines += [f"      {k}: {_yaml_value(v)}" for k, v in settings.items()]
    return "\n".join(lines) + "\n" + extra


def tool_agent(name, tools=(), provider_name="openai", capabilities=("chat",), limits=None,
               model="m", body=None):
    """The text of a configuration agent's file with a `tools` allow-list."""
    lines = ["---", f"name: {name}", "version: 1.0.0",
             f"capabilities: [{', '.join(capabilities)}]"]
    if tools:
        lines.append(f"tools: [{', '.join(tools)}]")
    lines += ["llm:", f"  provider: {provider_name}", f"  model: {model}"]
    if limits:
        lines.append("limits:")
        lines += [f"  {k}: {v}" for k, v in limits.items()]
    lines += ["---", body or f"You are {name}. Use your tools when they help; answer briefly."]
    return "\n".join(lines) + "\n"


def start_with(make_server, config, agents, env=None):
    """A server whose agents dir holds agents ({name: text}) before it starts."""
    s = make_server(config=config, start=False, env=env)
    write_agents(s.data_dir, agents)
    return s.start()


def tool_servers(s):
    """GET /api/v1/tools: {server name: its status}."""
    return {srv["name"]: srv for srv in get_json(s, "/api/v1/tools")["servers"]}


def wait_ready(s, *names, timeout=READY_WAIT_S, other_than=None):
    """Waits until the named tool servers are ready (with a pid other than other_than[name])."""
    other_than = other_than or {}

    def ready():
        states = tool_servers(s)
        for n in names:
            srv = states.get(n)
            if not srv or srv["state"] != "ready" or srv["pid"] == other_than.get(n):
                return None
        return states
    return poll(ready, timeout=timeout, interval=0.05, what=f"tool servers {names} ready")


def agent_state(s, name):
    r = s.admin("GET", f"/api/v1/agents/{name}")
    return r.json() if r.status == 200 else None


def wait_agent(s, name, state, timeout=10.0):
    """Waits until agent name is in state; returns its document."""
    def in_state():
        doc = agent_state(s, name)
        return doc if doc and doc.get("state") == state else None
    return poll(in_state, timeout=timeout, what=f"agent {name} {state}")


def ask(s, agent, text, wait="20s", timeout=40):
    """Sends a request to agent and waits for its answer; returns the reply."""
    r = send(s, request_msg(agent, text), wait=wait, timeout=timeout)
    assert r.status == 200, r
    return r.json()["reply"]


def tool_results(llm_request):
    """The tool messages of an OpenAI-shaped request, in order."""
    return [m for m in llm_request.get("messages", []) if m.get("role") == "tool"]


def last_tool_result(llm_request):
    results = tool_results(llm_request)
    assert results, llm_request
    return results[-1]["content"]


def offered(llm_request):
    """The tool names offered in an OpenAI-shaped request."""
    return [t["function"]["name"] for t in llm_request.get("tools") or []]


def read_record(path):
    """The JSON-RPC messages a scripted server recorded (--record)."""
    if not os.path.exists(path):
        return []
    with open(path, errors="replace") as f:
        return [json.loads(line) for line in f if line.strip()]


def lines_with(s, word, stream="caxton.log"):
    path = os.path.join(s.log_dir, stream)
    if not os.path.exists(path):
        return []
    with open(path, errors="replace") as f:
        return [line for line in f if word in line]


def stop_clean(s):
    code = s.stop()
    assert code == 0, f"server exited with {code}: {s.stderr()[-3000:]}"
    s.assert_clean()
