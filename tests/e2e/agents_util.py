"""Helpers for the agent end-to-end tests.

Definition files as an operator writes them, a server config whose provider
`openai` is a ScriptedLLM on 127.0.0.1, a server started with files already
in its agents dir, bounded polling, and small readers for the API, the CLI
and agents.log. Every wait here is bounded in both attempts and time.
"""
import itertools
import json
import os
import time

from conftest import SANITIZER_MARKS

POLL_INTERVAL_S = 0.02
WAIT_S = 10.0  # hot reload is debounced ~25 ms; the bound only matters when something is wrong
SEND_WAIT = "10s"


def agent_md(name, version="1.0.0", capabilities=("echo",), prompt=None, model="test-model",
             extra=""):
    """The text of a valid definition file (extra: more frontmatter lines)."""
    lines = ["---", f"name: {name}", f"version: {version}",
             f"capabilities: [{', '.join(capabilities)}]"]
    if extra:
        lines.append(extra.rstrip("\n"))
    lines += ["llm:", "  provider: openai"]
    if model:
        lines.append(f"  model: {model}")
    lines.append("---")
    lines.append(prompt if prompt is not None else "You are {{name}}, version {{version}}.")
    return "\n".join(lines) + "\n"


def provider_config(llm, retries=0, extra=""):
    """A server config with one provider named `openai` served by llm (no default model)."""
    return ("llm:\n"
            "  providers:\n"
            "    openai:\n"
            f"      base_url: {llm.url}\n"
            "      api_key: test-key\n"
            f"      retries: {retries}\n" + extra)


def agents_dir(server):
    return os.path.join(server.data_dir, "agents")


_temp_serial = itertools.count()


def write_file(directory, filename, content):
    """Writes one file (text or bytes) in directory at once; returns its path.

    The content goes to a hidden temporary file in the same directory (the
    server ignores names starting with a dot), which then replaces the
    target with one rename: the watcher never sees a half-written file, and
    one write is one change event."""
    path = os.path.join(directory, filename)
    temp = os.path.join(directory, f".{filename}.{os.getpid()}.{next(_temp_serial)}.tmp")
    try:
        with open(temp, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return path


def start_with_agents(make_server, llm, files, retries=0, config_extra=""):
    """A server whose agents dir holds files ({filename: content}) before it starts."""
    s = make_server(config=provider_config(llm, retries, config_extra), start=False)
    directory = agents_dir(s)
    os.makedirs(directory, exist_ok=True)
    for filename, content in files.items():
        write_file(directory, filename, content)
    return s.start()


def wait_for(check, what, timeout=WAIT_S):
    """Calls check() until it returns something truthy (at most timeout seconds)."""
    deadline = time.monotonic() + timeout
    last = None
    for _ in range(int(timeout / POLL_INTERVAL_S) + 2):
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL_S)
    raise AssertionError(f"no {what} within {timeout}s; last seen: {last!r}")


def cli(server, *args, **kw):
    """`caxton ARGS` against server; a sanitizer report in the CLI fails the test."""
    r = server.cli(*args, **kw)
    for mark in SANITIZER_MARKS:
        assert mark not in r.stderr, r.stderr[-3000:]
    return r


def out(r):
    return r.stdout + r.stderr


def agent(server, name, token=None):
    """GET /api/v1/agents/NAME as a dict, or None when 404."""
    r = server.request("GET", f"/api/v1/agents/{name}", token=token or server.token)
    if r.status == 404:
        return None
    assert r.status == 200, r
    return r.json()


def agents_by_name(server):
    r = server.admin("GET", "/api/v1/agents?limit=500")
    assert r.status == 200, r
    return {a["name"]: a for a in r.json()["items"]}


def send(server, receiver, content, wait=SEND_WAIT):
    """POST /api/v1/messages (a request to one agent); ?wait= unless wait is None."""
    path = "/api/v1/messages" + (f"?wait={wait}" if wait else "")
    body = {"performative": "request", "receiver": receiver, "content": content}
    return server.admin("POST", path, body, timeout=30)


def conversation(server, conversation_id):
    """The messages of one conversation, oldest first."""
    r = server.admin("GET", f"/api/v1/conversations/{conversation_id}/messages")
    assert r.status == 200, r
    return r.json()["items"]


def replies(server, conversation_id):
    """The replies stored in one conversation (messages with in_reply_to)."""
    return [m for m in conversation(server, conversation_id) if m.get("in_reply_to")]


def create_token(server, role, name):
    r = server.admin("POST", "/api/v1/tokens", {"role": role, "name": name})
    assert r.status == 201, r
    return r.json()["token"]


def log_lines(server, stream="agents.log"):
    """The JSON lines of one log file (unparsable lines are skipped)."""
    path = os.path.join(server.log_dir, stream)
    if not os.path.exists(path):
        return []
    items = []
    with open(path, errors="replace") as f:
        for line in f:
            try:
                items.append(json.loads(line))
            except ValueError:
                continue
    return items


def grep(server, word, stream="agents.log"):
    """The raw lines of a log file that contain word (like `grep WORD FILE`)."""
    path = os.path.join(server.log_dir, stream)
    if not os.path.exists(path):
        return []
    with open(path, errors="replace") as f:
        return [line for line in f if word in line]


def system_prompt(llm_request):
    """The system message of one request received by the ScriptedLLM."""
    for m in llm_request.get("messages", []):
        if m.get("role") == "system":
            return m.get("content")
    return None


def stop_clean(server):
    """Stops server and checks it exited 0 with no sanitizer report."""
    code = server.stop()
    assert code == 0, f"server exited with {code}: {server.stderr()[-3000:]}"
    server.assert_clean()
