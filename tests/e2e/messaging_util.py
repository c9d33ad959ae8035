"""Helpers for the messaging end-to-end tests: agent files, a server wired to
a scripted LLM provider, sending FIPA-ACL messages over the REST API, and
bounded polling.

Every wait here is bounded in time; a helper that gives up raises an
AssertionError naming what it waited for and what it saw last.
"""
import json
import os
import time
from urllib.parse import quote

from conftest import SANITIZER_MARKS

MESSAGES = "/api/v1/messages"


def agent_md(name, capabilities=("chat",), body=None, parameters=None, limits=None,
             instances=None, conversation=None, version="1.0.0"):
    """The text of a configuration agent's definition file."""
    lines = ["---", f"name: {name}", f"version: {version}",
             f"capabilities: [{', '.join(capabilities)}]",
             "llm:", "  provider: openai", "  model: m"]
    for section, values in (("limits", limits), ("conversation", conversation)):
        if values:
            lines.append(f"{section}:")
            lines += [f"  {k}: {v}" for k, v in values.items()]
    if instances is not None:
        lines.append(f"instances: {instances}")
    if parameters:
        lines.append("parameters:")
        lines += [f"  {k}: {v}" for k, v in parameters.items()]
    lines.append("---")
    lines.append(body if body is not None else f"You are {name}. Answer briefly.")
    return "\n".join(lines) + "\n"


def config_text(llm_url, messaging=None, extra="", provider_timeout="2s"):
    """A server config with the scripted provider and the given messaging settings."""
    text = ("llm:\n  providers:\n    openai:\n"
            f"      base_url: {llm_url}\n      timeout: {provider_timeout}\n      retries: 1\n")
    if messaging:
        text += "messaging:\n" + "".join(f"  {k}: {v}\n" for k, v in messaging.items())
    return text + extra


def write_agents(data_dir, agents):
    """Writes {name: text} into <data_dir>/agents before the server starts."""
    path = os.path.join(str(data_dir), "agents")
    os.makedirs(path, exist_ok=True)
    for name, text in agents.items():
        with open(os.path.join(path, f"{name}.md"), "w") as f:
            f.write(text)


def send(s, body, wait=None, strategy=None, token=None, timeout=None, raw=None):
    """POST /api/v1/messages (admin token unless given); returns the Response."""
    query = []
    if wait is not None:
        query.append(f"wait={quote(str(wait))}")
    if strategy is not None:
        query.append(f"strategy={quote(str(strategy))}")
    path = MESSAGES + ("?" + "&".join(query) if query else "")
    if timeout is None:
        timeout = 30
    payload = raw if raw is not None else body
    headers = {"Content-Type": "application/json"} if raw is not None else None
    return s.request("POST", path, body=payload, headers=headers,
                     token=s.token if token is None else token, timeout=timeout)


def request_msg(receiver=None, content="hello", capability=None, **fields):
    """A request message to a receiver or a capability."""
    m = {"performative": "request", "content": content}
    if receiver is not None:
        m["receiver"] = receiver
    if capability is not None:
        m["capability"] = capability
    m.update(fields)
    return m


def error_of(r):
    """The error object of an error response."""
    doc = r.json()
    assert "error" in doc, r
    return doc["error"]


def get_json(s, path, status=200):
    r = s.admin("GET", path)
    assert r.status == status, (path, r)
    return r.json()


def conversation(s, conversation_id):
    return get_json(s, f"/api/v1/conversations/{quote(conversation_id)}")


def conversation_messages(s, conversation_id):
    return get_json(s, f"/api/v1/conversations/{quote(conversation_id)}/messages?limit=500")[
        "items"]


def dead_letters(s, agent=None):
    path = "/api/v1/dead-letters?limit=500" + (f"&agent={quote(agent)}" if agent else "")
    return get_json(s, path)["items"]


def queue(s, name):
    return get_json(s, f"/api/v1/agents/{quote(name)}/queue")


def status_counts(s):
    return get_json(s, "/api/v1/status")["counts"]["messages"]


def agent_action(s, name, action, body=None):
    r = s.admin("POST", f"/api/v1/agents/{quote(name)}/{action}", body=body or {})
    assert r.status == 200, (action, r)
    return r.json()


def poll(fn, timeout=10.0, interval=0.05, what="condition"):
    """Calls fn until it returns a truthy value (returned) or timeout passes."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
        except AssertionError as e:  # a transient state reads as "not yet"
            last = e
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def replies_to(s, conversation_id, message_id):
    """The messages of a conversation that answer message_id."""
    return [m for m in conversation_messages(s, conversation_id)
            if m.get("in_reply_to") == message_id]


def wait_reply(s, conversation_id, message_id, timeout=10.0):
    """Polls the conversation until message_id has an answer; returns the first one."""
    found = poll(lambda: replies_to(s, conversation_id, message_id), timeout=timeout,
                 what=f"a reply to {message_id}")
    return found[0]


def cli(s, *args, timeout=60):
    """Runs `caxton ARGS` against s; the client must not report a sanitizer error."""
    r = s.cli(*args, timeout=timeout)
    for mark in SANITIZER_MARKS:
        assert mark not in r.stderr, r.stderr[-3000:]
    return r


def cli_json(s, *args, timeout=60):
    """Runs `caxton ARGS --output json` against s; returns (CompletedProcess, document)."""
    r = cli(s, *args, "--output", "json", timeout=timeout)
    doc = None
    if r.stdout.strip():
        try:
            doc = json.loads(r.stdout)
        except ValueError:
            doc = None
    return r, doc


def metric(text, name, **labels):
    """The value of one sample in a Prometheus scrape, or None."""
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric_name, _, label_text = head.partition("{")
        if metric_name != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            return float(value)
    return None


def log_events(s, stream="agents.log"):
    """The JSON lines of one of the server's log files (unparsable lines skipped)."""
    path = os.path.join(s.log_dir, stream)
    if not os.path.exists(path):
        return []
    events = []
    with open(path, errors="replace") as f:
        for line in f:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events
