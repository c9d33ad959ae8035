"""Helpers for the memory end-to-end tests.

Agent files with a `memory:` section as an operator writes them, a server
whose agents dir holds them before it starts, the memory REST endpoints with
their error envelope, the `caxton memory ...` commands, and bounded polling
of /metrics and of background jobs. Every wait here is bounded in both
attempts and time.
"""
import json
import os
import subprocess
import time
from urllib.parse import quote, urlencode

from agents_util import agent_md, agents_dir, cli, provider_config, write_file
from conftest import BIN, SANITIZER_MARKS, Server, base_env
from messaging_util import metric

MEMORY = "/api/v1/memory"
POLL_INTERVAL_S = 0.05
WAIT_S = 10.0


def memory_section(enabled=True, scope=None, workspace=None, global_write=None,
                   max_entries=None, retention=None):
    """The `memory:` lines of an agent file (only the settings given)."""
    lines = ["memory:", f"  enabled: {'true' if enabled else 'false'}"]
    if scope is not None:
        lines.append(f"  scope: {scope}")
    if workspace is not None:
        lines.append(f"  workspace: {workspace}")
    if global_write is not None:
        lines.append(f"  global_write: {'true' if global_write else 'false'}")
    if max_entries is not None:
        lines.append(f"  max_entries: {max_entries}")
    if retention is not None:
        lines.append(f"  retention: {retention}")
    return "\n".join(lines)


def memory_agent(name, tools=(), prompt=None, **memory):
    """The text of a configuration agent's file with a memory section (and tools)."""
    extra = []
    if tools:
        extra.append(f"tools: [{', '.join(tools)}]")
    extra.append(memory_section(**memory))
    return agent_md(name, capabilities=("chat",), prompt=prompt, extra="\n".join(extra))


def start_memory_server(path, llm, agents, config_extra="", before_start=None):
    """A started server whose agents dir holds {name: text} before it starts
    (before_start(server) runs just before); every agent is active when this returns."""
    s = Server(path, config=provider_config(llm, extra=config_extra))
    os.makedirs(agents_dir(s), exist_ok=True)
    for name, content in agents.items():
        write_file(agents_dir(s), f"{name}.md", content)
    if before_start:
        before_start(s)
    s.start()
    wait_until(lambda: all_active(s, agents), f"agents {sorted(agents)} active")
    return s


def all_active(s, names):
    r = s.admin("GET", "/api/v1/agents?limit=500")
    if r.status != 200:
        return False
    states = {a["name"]: a["state"] for a in r.json()["items"]}
    return all(states.get(n) == "active" for n in names)


def wait_until(check, what, timeout=WAIT_S, interval=POLL_INTERVAL_S):
    """Calls check() until it returns something truthy (at most timeout seconds)."""
    deadline = time.monotonic() + timeout
    last = None
    for _ in range(int(timeout / interval) + 2):
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"no {what} within {timeout}s; last seen: {last!r}")


# ---- REST ---------------------------------------------------------------------------------------


def entity_path(scope, name, **query):
    """/api/v1/memory/entities/SCOPE/NAME with both segments percent-encoded."""
    path = f"{MEMORY}/entities/{quote(scope, safe=':')}/{quote(name, safe='')}"
    return path + ("?" + urlencode(query) if query else "")


def graph_path(scope, name, **query):
    path = f"{MEMORY}/graph/{quote(scope, safe=':')}/{quote(name, safe='')}"
    return path + ("?" + urlencode(query) if query else "")


def search_path(**query):
    return f"{MEMORY}/search?" + urlencode(query)


def store(s, body, status=None, token=None, **query):
    """POST /api/v1/memory/entities; checks the status when given."""
    path = f"{MEMORY}/entities" + ("?" + urlencode(query) if query else "")
    r = s.request("POST", path, body=body, token=token or s.token)
    if status is not None:
        assert r.status == status, (body if not isinstance(body, bytes) else body[:200], r)
    return r


def relate(s, body, status=None, token=None):
    r = s.request("POST", f"{MEMORY}/relations", body=body, token=token or s.token)
    if status is not None:
        assert r.status == status, (body, r)
    return r


def get_entity(s, scope, name, status=200, **query):
    r = s.admin("GET", entity_path(scope, name, **query))
    assert r.status == status, (scope, name, r)
    return r.json()


def search(s, status=200, token=None, **query):
    r = s.request("GET", search_path(**query), token=token or s.token)
    assert r.status == status, (query, r)
    return r.json()


def operation(s, name, body=None, status=200, token=None, raw=None):
    """POST /api/v1/memory/NAME with a JSON body (raw: the body as given)."""
    payload = raw if raw is not None else (body if body is not None else {})
    headers = {"Content-Type": "application/json"} if raw is not None else None
    r = s.request("POST", f"{MEMORY}/{name}", body=payload, headers=headers,
                  token=token or s.token, timeout=60)
    assert r.status == status, (name, body, r)
    return r.json()


def error_of(r, status, code):
    """Checks r is an error in the API's envelope with this status and code;
    returns the error object."""
    assert r.status == status, r
    assert (r.header("Content-Type") or "").startswith("application/json"), r.headers
    doc = r.json()
    assert set(doc) == {"error"}, doc
    error = doc["error"]
    assert set(error) >= {"code", "message", "details", "request_id"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["details"], dict), error
    assert error["request_id"] == r.header("X-Request-Id"), (error, r.headers)
    return error


def names(results):
    return [h["name"] for h in results]


def wait_job(s, job_id, timeout=30.0):
    """Polls GET /api/v1/jobs/ID until it is done or failed; returns the job."""
    def finished():
        r = s.admin("GET", f"/api/v1/jobs/{quote(job_id)}")
        assert r.status == 200, r
        job = r.json()
        return job if job["state"] in ("done", "failed") else None
    return wait_until(finished, f"job {job_id} finished", timeout=timeout)


# ---- CLI ----------------------------------------------------------------------------------------


def memory_cli(s, *args, timeout=120, cwd=None):
    """`caxton memory ARGS` against s, run from cwd (relative file names are the
    operator's); a sanitizer report in the CLI fails the test."""
    if cwd is None:
        return cli(s, "memory", *args, timeout=timeout)
    r = subprocess.run([BIN, "memory", *args], env=base_env(CAXTON_DATA_DIR=s.data_dir),
                       capture_output=True, text=True, timeout=timeout, cwd=cwd)
    for mark in SANITIZER_MARKS:
        assert mark not in r.stderr, r.stderr[-3000:]
    return r


def cli_doc(s, *args, timeout=120):
    """`caxton ARGS --output json` against s; returns (CompletedProcess, document or None)."""
    r = cli(s, *args, "--output", "json", timeout=timeout)
    try:
        doc = json.loads(r.stdout) if r.stdout.strip() else None
    except ValueError:
        doc = None
    return r, doc


def text(r):
    return r.stdout + r.stderr


# ---- metrics ------------------------------------------------------------------------------------


def scrape(s):
    r = s.get("/metrics")
    assert r.status == 200, r
    return r.body.decode()


def wait_metric(s, name, predicate, what, timeout=WAIT_S, **labels):
    """Polls /metrics until the sample name{labels} satisfies predicate; returns its value.
    (The memory families are refreshed once a second.)"""
    def check():
        value = metric(scrape(s), name, **labels)
        return (True, value) if value is not None and predicate(value) else None
    return wait_until(check, what, timeout=timeout)[1]
