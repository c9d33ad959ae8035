"""Memory scopes, end to end: the API acting as agents (`agent` as a query
parameter or a body field) under the scope rules their files give them, and
the troubleshooting guide's "Memory Scope Violations" procedure.

The agents (one server for the module; each test uses agents and scopes of
its own, so the tests do not see each other's data or violations):

    alice, bob       scope agent               (workspace w in the file)
    wendy, walter    scope workspace w
    xavier           scope workspace x
    gina             scope global, global_write true, workspace w
    greg             scope global, global_write false, workspace w
    off-agent        memory.enabled false
    mallory          scope agent: only ever refused, to count violations
    fixer, mender    scope agent, workspace w: the guide's scope-reset

Every refusal must be 403 SCOPE_PERMISSION_DENIED with "Memory access
denied" in the message, and must show in `caxton memory violations`, in
agents.log and in caxton_memory_scope_violations_total.
"""
import json
import re

import pytest

from agents_util import grep, stop_clean
from llm_server import ScriptedLLM
from memory_util import (MEMORY, cli_doc, entity_path, error_of, get_entity, graph_path,
                         memory_agent, memory_cli, names, operation, relate, scrape,
                         search_path, start_memory_server, store, text, wait_metric,
                         wait_until)
from messaging_util import metric

AGENTS = {
    "alice": memory_agent("alice", scope="agent", workspace="w"),
    "bob": memory_agent("bob", scope="agent", workspace="w"),
    "wendy": memory_agent("wendy", scope="workspace", workspace="w"),
    "walter": memory_agent("walter", scope="workspace", workspace="w"),
    "xavier": memory_agent("xavier", scope="workspace", workspace="x"),
    "gina": memory_agent("gina", scope="global", workspace="w", global_write=True),
    "greg": memory_agent("greg", scope="global", workspace="w", global_write=False),
    "off-agent": memory_agent("off-agent", enabled=False, scope="workspace", workspace="w"),
    "mallory": memory_agent("mallory", scope="agent", workspace="w"),
    "fixer": memory_agent("fixer", scope="agent", workspace="w"),
    "mender": memory_agent("mender", scope="agent", workspace="w"),
}


@pytest.fixture(scope="module")
def llm():
    srv = ScriptedLLM().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def srv(tmp_path_factory, llm):
    s = start_memory_server(tmp_path_factory.mktemp("memory_scopes"), llm, AGENTS)
    yield s
    stop_clean(s)


def denied(r, agent=None, scope=None):
    """Checks r is a scope refusal; returns its message."""
    error = error_of(r, 403, "SCOPE_PERMISSION_DENIED")
    message = error["message"]
    assert "Memory access denied" in message, error
    if agent:
        assert f"'{agent}'" in message, error
    if scope:
        assert scope in message, error
    return message


def as_agent(s, method, path, agent, body=None, where="query"):
    """A request acting as agent: ?agent= (where="query") or a body field ("body")."""
    if where == "query":
        path += ("&" if "?" in path else "?") + f"agent={agent}"
    else:
        body = dict(body or {}, agent=agent)
    return s.request(method, path, body=body, token=s.token)


def table_cell(output, first, column):
    """The cell of a text table (cells 2+ spaces apart) in the row starting with
    first, under the header column; None when there is no such column."""
    header = None
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0] == "AGENT":
            header = cells
        elif header and cells and cells[0] == first:
            return cells[header.index(column)] if column in header else None
    return None


def violations(s, agent):
    r, doc = cli_doc(s, "memory", "violations", "--last-24h", "--agent", agent)
    assert r.returncode == 0, text(r)
    assert doc["operation"] == "violations" and doc["ok"] is True, doc
    assert all(v["agent"] == agent for v in doc["violations"]), doc
    return doc["violations"]


# ---- the rules -------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["query", "body"])
def test_agent_scope_is_private(srv, where):
    name = f"Diary {where}"
    r = as_agent(srv, "POST", f"{MEMORY}/entities", "alice",
                 {"name": name, "observations": ["alice's private note"]}, where=where)
    assert r.status == 201, r
    assert r.json()["scope"] == "agent:alice" and r.json()["created_by"] == "alice", r.json()
    # alice reads and updates her own
    r = as_agent(srv, "GET", entity_path("agent:alice", name), "alice")
    assert r.status == 200, r
    r = as_agent(srv, "POST", f"{MEMORY}/entities", "alice",
                 {"scope": "agent:alice", "name": name, "observations": ["more"]}, where=where)
    assert r.status == 200, r

    before = len(violations(srv, "bob"))
    denied(as_agent(srv, "GET", entity_path("agent:alice", name), "bob"), "bob", "agent:alice")
    denied(as_agent(srv, "GET", graph_path("agent:alice", name), "bob"), "bob")
    denied(as_agent(srv, "GET", search_path(q="private note", scope="agent:alice"), "bob"), "bob")
    denied(as_agent(srv, "POST", f"{MEMORY}/entities", "bob",
                    {"scope": "agent:alice", "name": name, "observations": ["bob was here"]},
                    where=where), "bob", "agent:alice")
    denied(as_agent(srv, "POST", f"{MEMORY}/relations", "bob",
                    {"scope": "agent:alice", "from": name, "to": name, "type": "mirrors"},
                    where=where), "bob")
    denied(as_agent(srv, "DELETE", entity_path("agent:alice", name), "bob"), "bob")
    after = violations(srv, "bob")
    assert len(after) == before + 6, after
    assert {v["operation"] for v in after[:6]} == {
        "read", "search", "write", "relate", "delete"}, after
    assert {v["scope"] for v in after[:6]} == {"agent:alice"}, after

    # nothing of bob's attempts reached alice's entity
    doc = get_entity(srv, "agent:alice", name)
    assert [o["text"] for o in doc["observations"]] == ["alice's private note", "more"], doc
    # the operator sees everything
    assert get_entity(srv, "agent:alice", name)["created_by"] == "alice"


def test_workspace_is_shared_and_crossing_is_denied(srv):
    r = as_agent(srv, "POST", f"{MEMORY}/entities", "wendy",
                 {"name": "Roadmap", "observations": ["ship in May"]}, where="body")
    assert r.status == 201 and r.json()["scope"] == "workspace:w", r
    # walter shares workspace w: reads and adds to it
    r = as_agent(srv, "GET", entity_path("workspace:w", "Roadmap"), "walter")
    assert r.status == 200, r
    r = as_agent(srv, "POST", f"{MEMORY}/entities", "walter",
                 {"scope": "workspace:w", "name": "Roadmap", "observations": ["QA in April"]},
                 where="body")
    assert r.status == 200 and r.json()["version"] == 2, r
    # xavier is in workspace x
    denied(as_agent(srv, "GET", entity_path("workspace:w", "Roadmap"), "xavier"), "xavier",
           "workspace:w")
    denied(as_agent(srv, "POST", f"{MEMORY}/entities", "xavier",
                    {"scope": "workspace:w", "name": "Roadmap", "observations": ["cancel it"]},
                    where="body"), "xavier", "workspace:w")
    denied(as_agent(srv, "GET", search_path(q="roadmap", scope="workspace:w"), "xavier"))
    # an agent-scope agent of workspace w does not see the workspace either
    denied(as_agent(srv, "GET", entity_path("workspace:w", "Roadmap"), "bob"), "bob")
    # xavier's own workspace is its default
    r = as_agent(srv, "POST", f"{MEMORY}/entities", "xavier",
                 {"name": "Roadmap", "observations": ["x's own roadmap"]}, where="body")
    assert r.status == 201 and r.json()["scope"] == "workspace:x", r
    assert [o["text"] for o in get_entity(srv, "workspace:w", "Roadmap")["observations"]] == [
        "ship in May", "QA in April"]
    assert len(violations(srv, "xavier")) == 3


def test_global_write_needs_global_write(srv):
    message = denied(as_agent(srv, "POST", f"{MEMORY}/entities", "wendy",
                              {"scope": "global", "name": "Holiday Calendar",
                               "observations": ["closed on May 1"]}, where="body"), "wendy")
    assert "memory.global_write is false" in message, message
    # a global-scope agent without global_write may read it, not write it
    denied(as_agent(srv, "POST", f"{MEMORY}/entities", "greg",
                    {"scope": "global", "name": "Holiday Calendar"}, where="body"), "greg")
    error_of(srv.admin("GET", entity_path("global", "Holiday Calendar")), 404, "NOT_FOUND")
    r = as_agent(srv, "POST", f"{MEMORY}/entities", "gina",
                 {"scope": "global", "name": "Holiday Calendar",
                  "observations": ["closed on May 1"]}, where="body")
    assert r.status == 201 and r.json()["created_by"] == "gina", r
    # a global-scope agent still keeps its own facts in its workspace by default
    r = as_agent(srv, "POST", f"{MEMORY}/entities", "gina", {"name": "Gina's Note"},
                 where="body")
    assert r.status == 201 and r.json()["scope"] == "workspace:w", r
    # every agent with memory reads global
    for agent in ("wendy", "greg", "xavier", "alice"):
        r = as_agent(srv, "GET", entity_path("global", "Holiday Calendar"), agent)
        assert r.status == 200, (agent, r)
    # relating into global needs global_write; relating to a global entity needs only read
    denied(as_agent(srv, "POST", f"{MEMORY}/relations", "wendy",
                    {"scope": "global", "from": "Holiday Calendar", "to": "Holiday Calendar",
                     "type": "repeats"}, where="body"), "wendy", "global")
    r = as_agent(srv, "POST", f"{MEMORY}/entities", "wendy", {"name": "Office Plan"},
                 where="body")
    assert r.status == 201, r
    r = as_agent(srv, "POST", f"{MEMORY}/relations", "wendy",
                 {"from": "Office Plan", "to": "Holiday Calendar", "to_scope": "global",
                  "type": "respects"}, where="body")
    assert r.status == 201, r


def test_memory_disabled_denies_everything(srv):
    store(srv, {"scope": "workspace:w", "name": "Team Lunch", "observations": ["Fridays"]},
          status=201)
    attempts = [
        ("POST", f"{MEMORY}/entities", {"name": "Anything", "observations": ["x"]}),
        ("GET", entity_path("workspace:w", "Team Lunch"), None),
        ("GET", entity_path("global", "Holiday Calendar"), None),
        ("GET", search_path(q="lunch"), None),
        ("GET", search_path(q="lunch", scope="workspace:w"), None),
        ("GET", graph_path("workspace:w", "Team Lunch"), None),
        ("DELETE", entity_path("workspace:w", "Team Lunch"), None),
    ]
    for method, path, payload in attempts:
        message = denied(as_agent(srv, method, path, "off-agent", payload,
                                  where="body" if payload else "query"), "off-agent")
        assert "memory is not enabled for agent 'off-agent'" in message, message
    assert len(violations(srv, "off-agent")) == len(attempts)
    assert get_entity(srv, "workspace:w", "Team Lunch")["observation_count"] == 1


def test_search_never_leaks_other_scopes(srv):
    """The same rare word in every scope; each agent's search (and its graph
    expansion, at every depth) returns only what it may read."""
    word = "zeppelin"
    placed = {"agent:alice": "Alice Zeppelin", "agent:bob": "Bob Zeppelin",
              "workspace:w": "W Zeppelin", "workspace:x": "X Zeppelin",
              "global": "Global Zeppelin"}
    for scope, name in placed.items():
        store(srv, {"scope": scope, "name": name, "observations": [f"{word} {name}"]},
              status=201)
    # relations across scopes the readers must not follow into
    relate(srv, {"scope": "workspace:w", "from": "W Zeppelin", "to": "Global Zeppelin",
                 "to_scope": "global", "type": "docks_at"}, status=201)
    relate(srv, {"scope": "workspace:x", "from": "X Zeppelin", "to": "Global Zeppelin",
                 "to_scope": "global", "type": "docks_at"}, status=201)
    relate(srv, {"scope": "agent:alice", "from": "Alice Zeppelin", "to": "Global Zeppelin",
                 "to_scope": "global", "type": "flies_to"}, status=201)
    readable = {
        "alice": {"agent:alice", "global"},
        "bob": {"agent:bob", "global"},
        "wendy": {"workspace:w", "global", "agent:wendy"},
        "xavier": {"workspace:x", "global", "agent:xavier"},
        "gina": {"workspace:w", "global", "agent:gina"},
    }
    for agent, allowed in readable.items():
        for mode in ("hybrid", "vector", "text"):
            for depth in (0, 1, 5):
                r = as_agent(srv, "GET", search_path(q=word, limit=100, depth=depth, mode=mode),
                             agent)
                assert r.status == 200, (agent, r)
                doc = r.json()
                seen = {h["scope"] for h in doc["results"] + doc["expanded"]}
                assert seen <= allowed, (agent, mode, depth, doc)
                zeppelins = {h["scope"] for h in doc["results"] if word in h["name"].lower()}
                if mode != "vector":
                    assert zeppelins == {s for s in placed if s in allowed}, (agent, mode, doc)
        # the graph around the global entity shows only readable neighbours and edges
        r = as_agent(srv, "GET", graph_path("global", "Global Zeppelin", depth=5), agent)
        assert r.status == 200, r
        g = r.json()
        assert {n["scope"] for n in g["nodes"]} <= allowed, (agent, g)
        for e in g["edges"]:
            assert e["from_scope"] in allowed and e["to_scope"] in allowed, (agent, e)
        assert json.dumps(g).count("Zeppelin") >= 1
        leaked = [name for scope, name in placed.items() if scope not in allowed
                  and name in json.dumps(g)]
        assert leaked == [], (agent, leaked, g)


# ---- violations are recorded everywhere ------------------------------------------------------


def test_every_denial_is_recorded(srv):
    start = metric(scrape(srv), "caxton_memory_scope_violations_total") or 0
    attempts = [
        ("GET", entity_path("agent:alice", "Diary query"), None),
        ("GET", entity_path("workspace:w", "Roadmap"), None),
        ("POST", f"{MEMORY}/entities", {"scope": "global", "name": "Mallory Was Here"}),
        ("POST", f"{MEMORY}/entities", {"scope": "workspace:x", "name": "Mallory Was Here"}),
        ("GET", search_path(q="roadmap", scope="workspace:w"), None),
    ]
    for method, path, payload in attempts:
        denied(as_agent(srv, method, path, "mallory", payload,
                        where="body" if payload else "query"), "mallory")

    # the CLI, as the guide runs it, and filtered by agent
    r = memory_cli(srv, "violations", "--last-24h")
    assert r.returncode == 0, text(r)
    rows = [line for line in r.stdout.splitlines() if " mallory " in f" {line} "]
    assert len(rows) == len(attempts), r.stdout
    r = memory_cli(srv, "violations", "--last-24h", "--agent", "mallory")
    assert r.returncode == 0, text(r)
    assert "count: 5" in r.stdout, r.stdout
    assert all(" mallory " in f" {line} " for line in r.stdout.splitlines()
               if line.startswith("20")), r.stdout
    listed = violations(srv, "mallory")
    assert [(v["operation"], v["scope"]) for v in reversed(listed)] == [
        ("read", "agent:alice"), ("read", "workspace:w"), ("write", "global"),
        ("write", "workspace:x"), ("search", "workspace:w")], listed
    assert all("mallory" in v["detail"] for v in listed), listed
    # the API's own filter
    doc = operation(srv, "violations", {"agent": "mallory"})
    assert doc["count"] == 5 and doc["since_start"] >= 5, doc
    # agents.log, one line per denial
    lines = [line for line in grep(srv, "memory scope violation") if '"mallory"' in line]
    assert len(lines) == 5, lines
    # the counter on /metrics (refreshed once a second)
    wait_metric(srv, "caxton_memory_scope_violations_total", lambda v: v >= start + 5,
                "caxton_memory_scope_violations_total to count mallory's denials")


# ---- the guide: diagnostics ------------------------------------------------------------------


def test_guide_scope_diagnostics(srv):
    # 1. memory scope-status --all-agents
    r = memory_cli(srv, "scope-status", "--all-agents")
    assert r.returncode == 0, text(r)
    assert "memory scope-status: ok" in r.stdout, r.stdout
    for agent in AGENTS:
        assert any(line.split()[:1] == [agent] for line in r.stdout.splitlines()), (agent,
                                                                                   r.stdout)
    r, doc = cli_doc(srv, "memory", "scope-status", "--all-agents")
    assert r.returncode == 0, text(r)
    by_name = {a["agent"]: a for a in doc["agents"]}
    assert set(by_name) == set(AGENTS), by_name
    assert by_name["alice"]["readable"] == ["agent:alice", "global"], by_name["alice"]
    assert by_name["alice"]["writable"] == ["agent:alice"], by_name["alice"]
    assert by_name["wendy"]["default_write_scope"] == "workspace:w", by_name["wendy"]
    assert "global" in by_name["gina"]["writable"], by_name["gina"]
    assert "global" not in by_name["greg"]["writable"], by_name["greg"]
    assert by_name["off-agent"]["enabled"] is False and by_name["off-agent"]["readable"] == []
    # the command refuses to guess
    r = memory_cli(srv, "scope-status")
    assert r.returncode == 2 and "AGENT or --all-agents" in r.stderr, text(r)

    # 2. memory violations --last-24h (covered in detail above): it runs
    r = memory_cli(srv, "violations", "--last-24h")
    assert r.returncode == 0, text(r)

    # 3. memory usage --by-scope --detailed (after a violation of bob's, counted there too)
    denied(as_agent(srv, "GET", entity_path("workspace:x", "Roadmap"), "bob"), "bob")
    store(srv, {"scope": "workspace:usage", "name": "Counted Once", "observations": ["abc"]},
          status=201)
    r = memory_cli(srv, "usage", "--by-scope", "--detailed")
    assert r.returncode == 0, text(r)
    assert "workspace:usage" in r.stdout and "entities" in r.stdout.lower(), r.stdout
    r, doc = cli_doc(srv, "memory", "usage", "--by-scope", "--detailed")
    assert doc["by_scope"]["workspace:usage"]["entities"] == 1, doc["by_scope"]
    assert doc["by_scope"]["workspace:usage"]["observations"] == 1, doc["by_scope"]
    assert doc["totals"]["scope_violations"] >= 1, doc["totals"]
    assert doc["tables"], "--detailed lists the tables"

    # 4. memory permissions-check AGENT: 0 when fine, 1 with the reason otherwise
    r = memory_cli(srv, "permissions-check", "walter")
    assert r.returncode == 0, text(r)
    assert "memory permissions-check: ok" in r.stdout, r.stdout
    r = memory_cli(srv, "permissions-check", "bob")
    assert r.returncode == 1, text(r)
    assert "scope violations in the last 24h" in r.stdout, r.stdout
    r = memory_cli(srv, "permissions-check", "off-agent")
    assert r.returncode == 1, text(r)
    assert "memory.enabled is false" in r.stdout, r.stdout
    r = memory_cli(srv, "permissions-check", "nobody-here")
    assert r.returncode != 0 and "no agent named 'nobody-here'" in text(r), text(r)


# ---- the guide: fixes ------------------------------------------------------------------------


def test_guide_scope_reset_as_written(srv):
    """Fix 1 exactly as the guide gives it: the workspace is the agent's own."""
    store(srv, {"scope": "workspace:w", "name": "Fixer Target", "observations": ["shared"]},
          status=201)
    denied(as_agent(srv, "GET", entity_path("workspace:w", "Fixer Target"), "fixer"), "fixer")
    r = memory_cli(srv, "scope-reset", "fixer", "--scope", "workspace")
    assert r.returncode == 0, text(r)
    r = as_agent(srv, "GET", entity_path("workspace:w", "Fixer Target"), "fixer")
    assert r.status == 200, r


def test_scope_reset_gives_access_and_is_shown(srv):
    store(srv, {"scope": "workspace:w", "name": "Mender Target", "observations": ["shared"]},
          status=201)
    denied(as_agent(srv, "GET", entity_path("workspace:w", "Mender Target"), "mender"),
           "mender")
    r = memory_cli(srv, "scope-reset", "mender", "--scope", "workspace", "--workspace", "w")
    assert r.returncode == 0, text(r)
    assert "memory scope-reset: ok" in r.stdout, r.stdout
    r = as_agent(srv, "GET", entity_path("workspace:w", "Mender Target"), "mender")
    assert r.status == 200, r
    # its default write scope follows
    r = as_agent(srv, "POST", f"{MEMORY}/entities", "mender", {"name": "Mended"}, where="body")
    assert r.status == 201 and r.json()["scope"] == "workspace:w", r
    r, doc = cli_doc(srv, "memory", "scope-status", "mender")
    assert r.returncode == 0, text(r)
    (row,) = doc["agents"]
    assert (row["scope"], row["file_scope"], row["overridden"]) == ("workspace", "agent", True)
    assert "workspace:w" in row["readable"] and "workspace:w" in row["writable"], row
    r = memory_cli(srv, "permissions-check", "mender")
    assert "overridden: true" in r.stdout, r.stdout
    # the guide's own command, checked at the end
    table = memory_cli(srv, "scope-status", "--all-agents")

    # back to its own scope: denied again, not overridden
    r = memory_cli(srv, "scope-reset", "mender", "--scope", "agent")
    assert r.returncode == 0, text(r)
    denied(as_agent(srv, "GET", entity_path("workspace:w", "Mender Target"), "mender"))
    r, doc = cli_doc(srv, "memory", "scope-status", "mender")
    assert doc["agents"][0]["overridden"] is False, doc
    # refused values
    r = memory_cli(srv, "scope-reset", "mender", "--scope", "planet")
    assert r.returncode == 2 and "invalid value 'planet' for --scope" in r.stderr, text(r)
    r = memory_cli(srv, "scope-reset", "nobody-here", "--scope", "agent")
    assert r.returncode != 0 and "no agent named 'nobody-here'" in text(r), text(r)
    # the operator saw the override in `scope-status --all-agents`
    assert table.returncode == 0, text(table)
    assert table_cell(table.stdout, "mender", "OVERRIDDEN") == "true", table.stdout


def test_guide_cleanup_and_reindex(srv):
    # the same name in alice's own scope and in workspace w: a scope conflict for alice
    store(srv, {"scope": "agent:alice", "name": "Budget", "observations": ["mine: 10k"]},
          status=201)
    store(srv, {"scope": "workspace:w", "name": "Budget", "observations": ["team: 50k"]},
          status=201)
    # Fix 2: memory cleanup --scope-conflicts --agent AGENT
    r = memory_cli(srv, "cleanup", "--scope-conflicts", "--agent", "alice")
    assert r.returncode == 0, text(r)
    assert "memory cleanup: ok" in r.stdout, r.stdout
    r, doc = cli_doc(srv, "memory", "cleanup", "--scope-conflicts", "--agent", "alice")
    conflicts = doc["scope_conflicts"]["conflicts"]
    budget = [c for c in conflicts if c["name"] == "Budget"]
    assert len(budget) == 1 and set(budget[0]["scopes"]) == {"agent:alice", "workspace:w"}, doc
    assert budget[0]["newer"] == "workspace:w", budget
    # another agent's conflicts are not alice's
    assert all("agent:bob" not in c["scopes"] for c in conflicts), conflicts
    # nothing was deleted
    assert get_entity(srv, "agent:alice", "Budget")["observation_count"] == 1
    assert get_entity(srv, "workspace:w", "Budget")["observation_count"] == 1

    # Fix 3: memory reindex --agent AGENT --scope-aware
    r = memory_cli(srv, "reindex", "--agent", "alice", "--scope-aware")
    assert r.returncode == 0, text(r)
    assert "memory reindex: ok" in r.stdout and "target: agent:alice" in r.stdout, r.stdout
    r, doc = cli_doc(srv, "memory", "reindex", "--agent", "alice", "--scope-aware")
    count = doc["scopes"]["agent:alice"]
    assert count >= 1 and doc["report"]["entities"] == count, doc
    assert set(doc["scopes"]) == {"agent:alice"}, doc
    # searches still find what they found
    r = as_agent(srv, "GET", search_path(q="budget mine"), "alice")
    assert r.status == 200 and "Budget" in names(r.json()["results"]), r
    r = memory_cli(srv, "reindex", "--agent", "../etc", "--scope-aware")
    assert r.returncode != 0 and "invalid agent name" in text(r), text(r)


def test_metric_and_api_agree_after_the_module(srv):
    """caxton_memory_scope_violations_total counts what the store recorded."""
    doc = operation(srv, "violations", {})
    wait_until(lambda: metric(scrape(srv), "caxton_memory_scope_violations_total")
               == doc["since_start"], "the violations counter to match the store's",
               timeout=5)
    assert doc["count"] == doc["since_start"], doc
