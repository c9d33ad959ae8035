"""Configuration agents with memory, end to end.

The provider `openai` is a ScriptedLLM on 127.0.0.1: it asks for the
memory tools when scripted to, and keeps every request, so the tests see
what the agents offered and were given (tool results, system prompts).

    keeper   tools [memory_store, memory_search], scope workspace, workspace ops
    hermit   tools [memory_store, memory_search], scope agent
    templ    no tools; its prompt holds {{memory_context}}; workspace ops
    sealed   tools [memory_store, memory_search], memory.enabled false

Covered: the memory_store tool writing to the agent's default scope and
the result the LLM gets; stored facts reaching the next system prompt
("Relevant memories:" or {{memory_context}}) and not reaching agents that
may not read them; refused memory calls as tool errors that never fail the
message (and are recorded as violations); no memory tools without memory;
`caxton tools status --agent`; the guide's "Agent Not Responding" memory
steps; and a damaged memory database: the server starts, agents answer
without memory, health says why, and a backup restored on the running
server brings memory back.
"""
import json
import os

import pytest

from agents_util import agent, grep, stop_clean, system_prompt
from llm_server import ScriptedLLM
from memory_util import (cli_doc, get_entity, memory_agent, memory_cli, names, scrape, search,
                         start_memory_server, store, text, wait_metric, wait_until)
from messaging_util import cli, metric
from tools_util import ask, offered, tool_results

TOOLS = ("memory_store", "memory_search")
TEMPLATE = "You are templ.\nKnown facts:\n{{memory_context}}\nEnd of facts."
AGENTS = {
    "keeper": memory_agent("keeper", tools=TOOLS, scope="workspace", workspace="ops"),
    "hermit": memory_agent("hermit", tools=TOOLS, scope="agent", workspace="ops"),
    "templ": memory_agent("templ", prompt=TEMPLATE, scope="workspace", workspace="ops"),
    "sealed": memory_agent("sealed", tools=TOOLS, enabled=False, workspace="ops"),
}


@pytest.fixture(scope="module")
def llm():
    srv = ScriptedLLM().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def srv(tmp_path_factory, llm):
    s = start_memory_server(tmp_path_factory.mktemp("memory_agents"), llm, AGENTS)
    yield s
    stop_clean(s)


def call(name, arguments, call_id=None):
    c = {"name": name, "arguments": arguments}
    if call_id:
        c["id"] = call_id
    return c


def asks(*calls):
    """One LLM step asking for these tool calls."""
    return {"tool_calls": list(calls)}


def converse(s, llm, agent_name, message, steps):
    """Scripts steps, asks agent_name, and returns (reply, the requests of this exchange)."""
    first = len(llm.requests)
    llm.script(steps)
    reply = ask(s, agent_name, message)
    assert llm.pending == 0, "the agent did not use every scripted step"
    return reply, llm.requests[first:]


def results_by_id(llm_request):
    return {m["tool_call_id"]: m["content"] for m in tool_results(llm_request)}


def stats(s, name):
    return agent(s, name)["stats"]


def hermits_locker(s):
    """hermit's private fact (as its memory_store would have written it)."""
    r = store(s, {"agent": "hermit", "name": "Locker", "observations": ["code 4711"]})
    assert r.status in (200, 201), r
    assert r.json()["scope"] == "agent:hermit", r.json()


# ---- (a) memory_store ------------------------------------------------------------------------


def test_memory_store_tool_writes_to_the_agents_scope(srv, llm):
    before = stats(srv, "keeper")
    reply, requests = converse(srv, llm, "keeper", "remember that Acme delivers on Tuesdays", [
        asks(call("memory_store", {"name": "Acme Corp", "type": "supplier",
                                   "observations": ["Acme delivers steel on Tuesdays"]},
                  "call_store")),
        {"text": "noted"}])
    assert reply["performative"] == "inform" and reply["content"] == "noted", reply
    assert len(requests) == 2, requests
    assert offered(requests[0]) == list(TOOLS), requests[0].get("tools")
    schema = requests[0]["tools"][0]["function"]["parameters"]
    assert schema["required"] == ["name", "observations"], schema
    result = json.loads(results_by_id(requests[1])["call_store"])
    assert result == {"stored": True, "scope": "workspace:ops", "name": "Acme Corp",
                      "version": 1, "observation_count": 1}, result
    e = get_entity(srv, "workspace:ops", "Acme Corp")
    assert e["created_by"] == "keeper" and e["type"] == "supplier", e
    assert [o["text"] for o in e["observations"]] == ["Acme delivers steel on Tuesdays"], e
    after = stats(srv, "keeper")
    assert after["tool_calls"] == before["tool_calls"] + 1, after
    assert after["tool_errors"] == before["tool_errors"], after

    # an agent-scope agent stores into its own scope
    reply, requests = converse(srv, llm, "hermit", "remember my locker code", [
        asks(call("memory_store", {"name": "Locker", "observations": ["code 4711"]}, "call_h")),
        {"text": "kept to myself"}])
    assert reply["content"] == "kept to myself", reply
    result = json.loads(results_by_id(requests[1])["call_h"])
    assert result["stored"] is True and result["scope"] == "agent:hermit", result
    assert get_entity(srv, "agent:hermit", "Locker")["created_by"] == "hermit"

    # memory_search gives the LLM what it stored
    reply, requests = converse(srv, llm, "keeper", "what do we know about Acme?", [
        asks(call("memory_search", {"query": "Acme steel delivery"}, "call_find")),
        {"text": "Acme delivers on Tuesdays"}])
    found = json.loads(results_by_id(requests[1])["call_find"])
    assert found["results"][0]["name"] == "Acme Corp", found
    assert "Acme delivers steel on Tuesdays" in found["results"][0]["observations"], found
    assert {h["scope"] for h in found["results"]} <= {"workspace:ops", "global", "agent:keeper"}


# ---- (b) memories in the system prompt -------------------------------------------------------


def test_stored_facts_reach_the_next_system_prompt(srv, llm):
    fact = "Zephyr Freight picks up on Thursdays"
    converse(srv, llm, "keeper", "remember Zephyr's pickup day", [
        asks(call("memory_store", {"name": "Zephyr Freight", "type": "carrier",
                                   "observations": [fact]})),
        {"text": "stored"}])

    reply, requests = converse(srv, llm, "keeper", "when does Zephyr Freight pick up?",
                               [{"text": "Thursdays"}])
    assert reply["content"] == "Thursdays", reply
    prompt = system_prompt(requests[0])
    head, sep, memories = prompt.partition("\n\nRelevant memories:\n")
    assert sep, prompt
    assert head.startswith("You are keeper"), prompt
    assert f"- Zephyr Freight (carrier, workspace:ops): {fact}" in memories, prompt

    # {{memory_context}} puts them where the prompt says, and nothing is appended
    reply, requests = converse(srv, llm, "templ", "when does Zephyr Freight pick up?",
                               [{"text": "Thursdays"}])
    prompt = system_prompt(requests[0])
    assert prompt.startswith("You are templ.\nKnown facts:\n"), prompt
    inside = prompt.split("Known facts:\n", 1)[1].split("End of facts.", 1)[0]
    assert fact in inside, prompt
    assert "Relevant memories:" not in prompt, prompt

    # an agent that may not read workspace ops is not told
    reply, requests = converse(srv, llm, "hermit", "when does Zephyr Freight pick up?",
                               [{"text": "no idea"}])
    prompt = system_prompt(requests[0])
    assert "Zephyr" not in prompt and "workspace:ops" not in prompt, prompt
    # nor is keeper told hermit's own facts
    hermits_locker(srv)
    reply, requests = converse(srv, llm, "keeper", "what is the locker code?",
                               [{"text": "no idea"}])
    assert "4711" not in json.dumps(requests[0]), system_prompt(requests[0])


# ---- (c) refused memory calls ----------------------------------------------------------------


def test_refused_memory_calls_are_tool_errors(srv, llm):
    hermits_locker(srv)
    before = stats(srv, "keeper")
    start = metric(scrape(srv), "caxton_memory_scope_violations_total") or 0
    reply, requests = converse(srv, llm, "keeper", "tell everyone about Acme", [
        asks(call("memory_store", {"scope": "global", "name": "Acme Corp",
                                   "observations": ["everyone should know"]}, "call_global"),
             call("memory_store", {"agent": "hermit", "scope": "agent:hermit", "name": "Locker",
                                   "observations": ["code 0000"]}, "call_pose"),
             call("memory_search", {"query": "locker", "scope": "agent:hermit"}, "call_peek"),
             call("memory_store", {"name": "Bad\nName", "observations": ["x"]}, "call_bad")),
        {"text": "I could not share it"}])
    assert reply["performative"] == "inform", reply
    assert reply["content"] == "I could not share it", reply
    results = results_by_id(requests[1])
    for call_id in ("call_global", "call_pose", "call_peek"):
        assert results[call_id].startswith(
            "memory error (SCOPE_PERMISSION_DENIED): Memory access denied"), results
    assert "memory.global_write is false" in results["call_global"], results
    assert "agent:hermit" in results["call_pose"], results
    assert results["call_bad"].startswith("memory error (INVALID)"), results
    assert "control character" in results["call_bad"], results

    # nothing was written where it was refused
    r = srv.admin("GET", "/api/v1/memory/entities/global/Acme%20Corp")
    assert r.status == 404, r
    assert [o["text"] for o in get_entity(srv, "agent:hermit", "Locker")["observations"]] == [
        "code 4711"]
    # the message was answered, the refusals counted as tool errors
    after = stats(srv, "keeper")
    assert after["answered"] == before["answered"] + 1, after
    assert after["failed"] == before["failed"], after
    assert after["tool_errors"] >= before["tool_errors"] + 3, after
    # and recorded as violations
    r, doc = cli_doc(srv, "memory", "violations", "--last-24h", "--agent", "keeper")
    assert r.returncode == 0, text(r)
    recorded = {(v["operation"], v["scope"]) for v in doc["violations"]}
    assert {("write", "global"), ("write", "agent:hermit"),
            ("search", "agent:hermit")} <= recorded, doc
    assert any('"keeper"' in line for line in grep(srv, "memory scope violation")), \
        "no violation line in agents.log"
    wait_metric(srv, "caxton_memory_scope_violations_total", lambda v: v >= start + 3,
                "the violations counter to count keeper's refusals")


# ---- (d) no memory, no memory tools ----------------------------------------------------------


def test_memory_tools_are_not_offered_without_memory(srv, llm):
    reply, requests = converse(srv, llm, "sealed", "remember that Acme delivers on Tuesdays",
                               [{"text": "I cannot remember things"}])
    assert reply["content"] == "I cannot remember things", reply
    assert offered(requests[0]) == [], requests[0].get("tools")
    assert "Relevant memories" not in system_prompt(requests[0])
    # an LLM that asks for them anyway gets an error, and the message is still answered
    reply, requests = converse(srv, llm, "sealed", "try anyway", [
        asks(call("memory_store", {"name": "Sealed Secret", "observations": ["x"]}, "call_s")),
        {"text": "could not"}])
    assert reply["performative"] == "inform" and reply["content"] == "could not", reply
    result = results_by_id(requests[1])["call_s"]
    assert "not enabled" in result or "not available" in result, result
    assert search(srv, q="Sealed Secret", mode="text")["results"] == []


# ---- (e) tools status ------------------------------------------------------------------------


def test_tools_status_shows_memory_tools(srv):
    r = cli(srv, "tools", "status", "--agent", "keeper")
    assert r.returncode == 0, text(r)
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()
            if line.startswith("memory_")}
    assert set(rows) == set(TOOLS), r.stdout
    for row in rows.values():
        assert row[1:3] == ["memory", "yes"], r.stdout
    r, doc = cli_doc(srv, "tools", "status", "--agent", "keeper")
    assert r.returncode == 0 and doc["agent"] == "keeper", text(r)
    assert [(t["tool"], t["kind"], t["reachable"]) for t in doc["tools"]] == [
        ("memory_store", "memory", True), ("memory_search", "memory", True)], doc
    # with memory disabled they are listed as unreachable, with the reason
    r = cli(srv, "tools", "status", "--agent", "sealed")
    assert r.returncode == 1, text(r)
    assert "memory.enabled is false" in r.stdout and " NO " in r.stdout, r.stdout


# ---- (f) the guide: Agent Not Responding -----------------------------------------------------


def test_guide_agent_not_responding_memory_steps(srv):
    # the diagnostic steps run
    for args in (("agents", "status", "keeper", "--detailed"),
                 ("conversations", "queue-status", "keeper"),
                 ("tools", "status", "--agent", "keeper"),
                 ("agents", "logs", "keeper", "--level", "error", "--last-10min")):
        r = cli(srv, *args)
        assert r.returncode == 0, (args, text(r))

    # 3. memory connection-test: a timed store, search and delete in the agent's scope
    r = memory_cli(srv, "connection-test", "keeper")
    assert r.returncode == 0, text(r)
    assert "memory connection-test: ok" in r.stdout, r.stdout
    assert "STORE_MS" in r.stdout and "workspace:ops" in r.stdout, r.stdout
    r, doc = cli_doc(srv, "memory", "connection-test", "keeper")
    assert r.returncode == 0 and doc["ok"] is True and doc["problems"] == [], doc
    (check,) = doc["checks"]
    assert check["scope"] == "workspace:ops", check
    for key in ("store_ms", "search_ms", "delete_ms"):
        assert isinstance(check[key], (int, float)) and 0 <= check[key] < 10000, check
    # the probe leaves nothing behind
    left = search(srv, q="caxton connection test probe", scope="workspace:ops", limit=100)
    assert not [n for n in names(left["results"]) if n.startswith("caxton-connection-test")]

    # the fix: reconnect-memory, then health-check
    r = cli(srv, "agents", "reconnect-memory", "keeper")
    assert r.returncode == 0, text(r)
    assert r.stdout.startswith("keeper: memory reconnected"), r.stdout
    r = memory_cli(srv, "health-check", "keeper")
    assert r.returncode == 0, text(r)
    assert "memory health-check: ok" in r.stdout, r.stdout

    # an agent without memory, and one that does not exist
    r = memory_cli(srv, "connection-test", "sealed")
    assert r.returncode == 1 and "memory.enabled is false" in r.stdout, text(r)
    for args in (("memory", "connection-test", "nobody-here"),
                 ("agents", "reconnect-memory", "nobody-here"),
                 ("memory", "health-check", "nobody-here")):
        r = cli(srv, *args)
        assert r.returncode != 0 and "nobody-here" in text(r), (args, text(r))


# ---- (g) a damaged memory database -----------------------------------------------------------


def memory_component(s):
    doc = s.get("/health/deep").json()
    return doc, next(c for c in doc["components"] if c["name"] == "memory")


def test_damaged_database_agents_answer_and_restore_brings_memory_back(tmp_path, llm):
    s = start_memory_server(tmp_path, llm, {"keeper": AGENTS["keeper"]})
    try:
        damaged_then_restored(s, llm)
    finally:
        if s.proc.poll() is None:
            stop_clean(s)


def damaged_then_restored(s, llm):
    fact = "Acme delivers steel on Tuesdays"
    converse(s, llm, "keeper", "remember Acme's delivery day", [
        asks(call("memory_store", {"name": "Acme Corp", "observations": [fact]})),
        {"text": "stored"}])
    r = memory_cli(s, "backup")
    assert r.returncode == 0, text(r)
    assert "memory backup: ok" in r.stdout, r.stdout

    # the damage, while the server is stopped
    stop_clean(s)
    db = os.path.join(s.data_dir, "data", "memory.db")
    for sidecar in ("-wal", "-shm"):
        if os.path.exists(db + sidecar):
            os.unlink(db + sidecar)
    with open(db, "wb") as f:
        f.write(bytes((i * 37 + 11) % 256 for i in range(64 * 1024)))
    s.start()
    wait_until(lambda: agent(s, "keeper")["state"] == "active", "keeper active")

    # the server runs; health says memory is failing and why
    doc, part = memory_component(s)
    assert part["status"] == "fail" and part["critical"] is False, part
    assert "not a database" in part["detail"], part
    assert doc["status"] == "degraded", doc
    wait_metric(s, "caxton_memory_up", lambda v: v == 0, "caxton_memory_up 0")

    # the agent answers without memory
    reply, requests = converse(s, llm, "keeper", "when does Acme deliver?",
                               [{"text": "I do not remember"}])
    assert reply["performative"] == "inform" and reply["content"] == "I do not remember"
    assert "Relevant memories" not in system_prompt(requests[0])
    assert grep(s, "memory context unavailable"), "no log line about answering without memory"
    reply, requests = converse(s, llm, "keeper", "look it up", [
        asks(call("memory_search", {"query": "Acme"}, "call_down")), {"text": "memory is down"}])
    assert reply["content"] == "memory is down", reply
    result = results_by_id(requests[1])["call_down"]
    assert result.startswith("memory error (MEMORY_UNAVAILABLE)"), result

    # the operator's view
    r = memory_cli(s, "health-check")
    assert r.returncode == 1, text(r)
    assert "NOT OK" in r.stdout and "not a database" in r.stdout, r.stdout
    r = memory_cli(s, "health-check", "keeper")
    assert r.returncode == 1 and "not a database" in r.stdout, text(r)
    r = cli(s, "tools", "status", "--agent", "keeper")
    assert r.returncode == 1 and "unavailable" in r.stdout, text(r)
    r = memory_cli(s, "connection-test", "keeper")
    assert r.returncode == 1 and "unavailable" in r.stdout, text(r)
    early_reconnect = cli(s, "agents", "reconnect-memory", "keeper")

    # the fix: restore the backup on the running server
    r = memory_cli(s, "restore", "--from-backup", "latest", "--verify-integrity")
    assert r.returncode == 0, text(r)
    assert "memory restore: ok" in r.stdout and "verified: true" in r.stdout, r.stdout
    r = cli(s, "agents", "reconnect-memory", "keeper")
    assert r.returncode == 0 and "memory reconnected" in r.stdout, text(r)
    assert names(search(s, q="Acme delivers")["results"])[0] == "Acme Corp"
    r = memory_cli(s, "health-check", "keeper")
    assert r.returncode == 0, text(r)
    wait_until(lambda: memory_component(s)[1]["status"] == "ok", "the memory component ok")
    wait_metric(s, "caxton_memory_up", lambda v: v == 1, "caxton_memory_up 1")
    reply, requests = converse(s, llm, "keeper", "when does Acme deliver?",
                               [{"text": "Tuesdays"}])
    assert fact in system_prompt(requests[0]), system_prompt(requests[0])

    # reconnecting while the database was damaged failed, and said why
    assert early_reconnect.returncode != 0, text(early_reconnect)
    assert "not a database" in text(early_reconnect), text(early_reconnect)
