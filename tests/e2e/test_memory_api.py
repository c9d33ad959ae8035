"""The memory REST API, end to end, as a client and an operator meet it.

Entities (create 201, merge 200, versions, history with removed
observations, observations=N), relations, search (q, scope, limit, types,
min_score, depth, mode; ranked by score; neighbours expanded by depth), the
graph, every operation of POST /api/v1/memory/{operation} (and background
jobs), roles, and hostile input on every endpoint, each refusal checked in
the API's error envelope {"error": {code, message, details, request_id}}.
MEMORY_LIMIT_EXCEEDED (507) and MEMORY_UNAVAILABLE (503) each get a server
of their own; so do the operations that replace the database, and the
troubleshooting guide's "Embedded SQLite Database Corruption" and "Memory
Performance Degradation" commands, run as written.

Most tests share one server (scopes of their own keep them apart). The
provider `openai` is a ScriptedLLM on 127.0.0.1; these tests only need the
agents to load.
"""
import json
import os
import re
import time

import pytest

from agents_util import create_token, stop_clean
from conftest import run_cli
from llm_server import ScriptedLLM
from memory_util import (MEMORY, cli_doc, entity_path, error_of, get_entity, graph_path,
                         memory_agent, memory_cli, names, operation, relate, scrape, search,
                         search_path, start_memory_server, store, text, wait_job, wait_until)
from messaging_util import metric


@pytest.fixture(scope="module")
def llm():
    srv = ScriptedLLM().start()
    yield srv
    srv.stop()


AGENTS = {
    "prober": memory_agent("prober", enabled=True, scope="workspace", workspace="api"),
    "capped": memory_agent("capped", enabled=True, scope="agent", max_entries=1),
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory, llm):
    s = start_memory_server(tmp_path_factory.mktemp("memory_api"), llm, AGENTS)
    yield s
    stop_clean(s)


@pytest.fixture
def fresh(tmp_path, llm):
    """Factory: a server of the test's own (before_start(server) runs before it starts)."""
    servers = []

    def make(config_extra="", before_start=None):
        path = tmp_path / f"s{len(servers)}"
        path.mkdir()
        s = start_memory_server(path, llm, AGENTS, config_extra=config_extra,
                                before_start=before_start)
        servers.append(s)
        return s

    yield make
    for s in servers:
        if s.proc is not None and s.proc.poll() is None:
            stop_clean(s)
        else:
            s.assert_clean()


# ---- entities --------------------------------------------------------------------------------


def test_entity_create_merge_versions_and_history(srv):
    scope = "workspace:entities"
    r = store(srv, {"scope": scope, "name": "Acme Steel", "type": "supplier",
                    "observations": ["ships steel coils", "based in Ohio"],
                    "confidence": 0.9, "metadata": {"source": "onboarding", "tier": 2}},
              status=201)
    e = r.json()
    assert e["created"] is True and e["version"] == 1, e
    assert (e["scope"], e["name"], e["type"], e["confidence"]) == (
        scope, "Acme Steel", "supplier", 0.9), e
    assert e["metadata"] == {"source": "onboarding", "tier": 2}, e
    assert e["created_by"] == "operator" and e["observation_count"] == 2, e
    assert [o["text"] for o in e["observations"]] == ["ships steel coils", "based in Ohio"], e

    # merged: a new observation is appended, an exact duplicate is skipped
    e = store(srv, {"scope": scope, "name": "Acme Steel",
                    "observations": ["ships steel coils", "late twice in March"]},
              status=200).json()
    assert e["created"] is False and e["version"] == 2, e
    assert [o["text"] for o in e["observations"]] == [
        "ships steel coils", "based in Ohio", "late twice in March"], e
    assert e["type"] == "supplier" and e["confidence"] == 0.9, "unchanged fields were kept"

    # nothing new: the same version
    e = store(srv, {"scope": scope, "name": "Acme Steel", "observations": ["based in Ohio"]},
              status=200).json()
    assert e["version"] == 2 and e["observation_count"] == 3, e

    # a removed observation: a new version, gone from the entity, kept in the history
    e = store(srv, {"scope": scope, "name": "Acme Steel",
                    "remove_observations": ["based in Ohio"]}, status=200).json()
    assert e["version"] == 3 and e["observation_count"] == 2, e
    assert "based in Ohio" not in [o["text"] for o in e["observations"]], e

    # type and confidence replaced: one more version
    e = store(srv, {"scope": scope, "name": "Acme Steel", "type": "key supplier",
                    "confidence": 0.5}, status=200).json()
    assert (e["version"], e["type"], e["confidence"]) == (4, "key supplier", 0.5), e

    doc = get_entity(srv, scope, "Acme Steel", history=1)
    assert doc["version"] == 4 and doc["observation_count"] == 2, doc
    versions = doc["history"]["versions"]
    assert [v["version"] for v in versions] == [1, 2, 3, 4], versions
    assert [v["type"] for v in versions] == ["supplier"] * 3 + ["key supplier"], versions
    assert [v["confidence"] for v in versions] == [0.9, 0.9, 0.9, 0.5], versions
    assert all(v["changed_by"] == "operator" for v in versions), versions
    assert versions[0]["metadata"] == {"source": "onboarding", "tier": 2}, versions
    removed = doc["history"]["removed_observations"]
    assert [o["text"] for o in removed] == ["based in Ohio"], removed
    assert removed[0]["removed_at"] >= removed[0]["at"], removed
    # without history=1 there is none
    assert "history" not in get_entity(srv, scope, "Acme Steel")

    # observations=N: the newest N, oldest first; the count stays the total
    doc = get_entity(srv, scope, "Acme Steel", observations=1)
    assert [o["text"] for o in doc["observations"]] == ["late twice in March"], doc
    assert doc["observation_count"] == 2, doc
    doc = get_entity(srv, scope, "Acme Steel", observations=2)
    assert [o["text"] for o in doc["observations"]] == [
        "ships steel coils", "late twice in March"], doc

    # the operator's writes are audited
    r = srv.admin("GET", "/api/v1/config/audit-log?limit=500")
    assert r.status == 200, r
    assert f"{scope}/Acme Steel" in json.dumps(r.json()), "no audit record of the operator's write"


def test_entity_delete(srv):
    scope = "workspace:deletions"
    store(srv, {"scope": scope, "name": "Old Vendor", "observations": ["closed down"]}, status=201)
    r = srv.admin("DELETE", entity_path(scope, "Old Vendor"))
    assert r.status == 200, r
    assert r.json() == {"deleted": True, "scope": scope, "name": "Old Vendor"}, r.json()
    error = error_of(srv.admin("GET", entity_path(scope, "Old Vendor")), 404, "NOT_FOUND")
    assert "Old Vendor" in error["message"] and scope in error["message"], error
    error_of(srv.admin("DELETE", entity_path(scope, "Old Vendor")), 404, "NOT_FOUND")
    assert "Old Vendor" not in names(search(srv, q="closed down", scope=scope)["results"])
    # stored again: a new entity, version 1
    e = store(srv, {"scope": scope, "name": "Old Vendor", "observations": ["reopened"]},
              status=201).json()
    assert e["version"] == 1 and e["observation_count"] == 1, e


def test_names_with_quotes_and_other_characters_round_trip(srv):
    scope = "workspace:quotes"
    tricky = ["O'Brien \"Steel\" & Sons", "50% off? #1 deal", "Zürich Stahl AG — 東京",
              "back\\slash", "semi;colon <tag> {json}"]
    for name in tricky:
        e = store(srv, {"scope": scope, "name": name, "observations": [f"about {name}"]},
                  status=201).json()
        assert e["name"] == name, e
        assert get_entity(srv, scope, name)["name"] == name
        r = srv.admin("GET", graph_path(scope, name))
        assert r.status == 200 and r.json()["root"]["name"] == name, (name, r)
    found = names(search(srv, q="O'Brien Steel Sons", scope=scope, mode="text")["results"])
    assert found[0] == tricky[0], found
    r = memory_cli(srv, "show", scope, tricky[0])
    assert r.returncode == 0, text(r)
    assert tricky[0] in r.stdout, r.stdout
    for name in tricky:
        r = srv.admin("DELETE", entity_path(scope, name))
        assert r.status == 200 and r.json()["name"] == name, (name, r)
    assert search(srv, q="Steel Sons deal", scope=scope)["results"] == []


def test_names_with_a_slash_can_be_read_back(srv):
    """A name the API stores must be reachable by GET and DELETE (percent-encoded)."""
    scope = "workspace:slashes"
    r = store(srv, {"scope": scope, "name": "in/out", "observations": ["two sides"]})
    if r.status != 201:  # refusing such names at the write would be fine too
        error_of(r, 422, "INVALID")
        return
    r = srv.admin("GET", entity_path(scope, "in/out"))
    assert r.status == 200, r
    assert r.json()["name"] == "in/out", r.json()
    r = srv.admin("DELETE", entity_path(scope, "in/out"))
    assert r.status == 200, r


# ---- relations and the graph -----------------------------------------------------------------


def test_relations_and_graph_depth(srv):
    scope = "workspace:graph"
    for name in ("Plant", "Line", "Press", "Die"):
        store(srv, {"scope": scope, "name": name, "type": "equipment",
                    "observations": [f"{name} of the factory"]}, status=201)
    r = relate(srv, {"scope": scope, "from": "Plant", "to": "Line", "type": "contains"},
               status=201)
    assert r.json() == {"scope": scope, "from": "Plant", "to_scope": scope, "to": "Line",
                        "type": "contains", "strength": 1.0}, r.json()
    relate(srv, {"scope": scope, "from": "Line", "to": "Press", "type": "contains",
                 "strength": 0.8}, status=201)
    relate(srv, {"scope": scope, "from": "Press", "to": "Die", "type": "uses"}, status=201)
    # the same relation again: its strength is updated, not a second edge
    again = relate(srv, {"scope": scope, "from": "Press", "to": "Die", "type": "uses",
                         "strength": 0.25}, status=201).json()
    assert again["strength"] == 0.25, again
    # a relation to a global entity
    store(srv, {"scope": "global", "name": "Steel Standard", "observations": ["EN 10025"]},
          status=201)
    relate(srv, {"scope": scope, "from": "Die", "to": "Steel Standard", "type": "conforms_to",
                 "to_scope": "global"}, status=201)

    def graph(depth):
        r = srv.admin("GET", graph_path(scope, "Plant", depth=depth))
        assert r.status == 200, r
        return r.json()

    g = graph(1)
    assert g["root"]["name"] == "Plant" and g["root"]["scope"] == scope, g["root"]
    assert {n["name"]: n["depth"] for n in g["nodes"]} == {"Plant": 0, "Line": 1}, g["nodes"]
    assert [(e["from"], e["type"], e["to"]) for e in g["edges"]] == [
        ("Plant", "contains", "Line")], g["edges"]
    g = graph(2)
    assert {n["name"]: n["depth"] for n in g["nodes"]} == {"Plant": 0, "Line": 1, "Press": 2}
    g = graph(5)
    assert {n["name"]: n["depth"] for n in g["nodes"]} == {
        "Plant": 0, "Line": 1, "Press": 2, "Die": 3, "Steel Standard": 4}, g["nodes"]
    edges = {(e["from"], e["type"], e["to"]): e["strength"] for e in g["edges"]}
    assert edges == {("Plant", "contains", "Line"): 1.0, ("Line", "contains", "Press"): 0.8,
                     ("Press", "uses", "Die"): 0.25,
                     ("Die", "conforms_to", "Steel Standard"): 1.0}, edges
    assert [e for e in g["edges"] if e["to"] == "Steel Standard"][0]["to_scope"] == "global"
    # relations are walked both ways
    g = srv.admin("GET", graph_path(scope, "Die", depth=1)).json()
    assert {n["name"] for n in g["nodes"]} == {"Die", "Press", "Steel Standard"}, g["nodes"]
    # the default depth is 1
    assert {n["name"] for n in srv.admin("GET", graph_path(scope, "Plant")).json()["nodes"]} == {
        "Plant", "Line"}


def test_graph_depth_zero_is_only_the_root(srv):
    """depth=0 is accepted ("depth must be 0 to 5"), so it must mean no neighbours."""
    scope = "workspace:graph0"
    for name in ("Hub", "Spoke"):
        store(srv, {"scope": scope, "name": name, "observations": [name]}, status=201)
    relate(srv, {"scope": scope, "from": "Hub", "to": "Spoke", "type": "links"}, status=201)
    r = srv.admin("GET", graph_path(scope, "Hub", depth=0))
    assert r.status == 200, r
    g = r.json()
    assert [n["name"] for n in g["nodes"]] == ["Hub"] and g["edges"] == [], g
    assert g["depth"] == 0, g


# ---- search ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalogue(srv):
    """Suppliers and parts in workspace:search, a little graph among them."""
    scope = "workspace:search"
    items = [
        ("Northwind Steel", "supplier", ["steel plates and steel coils", "ships from Gdansk"]),
        ("Harbor Metals", "supplier", ["aluminium sheet", "occasionally steel"]),
        ("Bolt M8", "part", ["zinc plated bolt", "made of steel"]),
        ("Gasket G2", "part", ["rubber gasket for pumps"]),
        ("Pump Works", "customer", ["buys gaskets every month"]),
    ]
    for name, kind, obs in items:
        store(srv, {"scope": scope, "name": name, "type": kind, "observations": obs},
              status=201)
    relate(srv, {"scope": scope, "from": "Gasket G2", "to": "Pump Works", "type": "sold_to"},
           status=201)
    relate(srv, {"scope": scope, "from": "Pump Works", "to": "Harbor Metals",
                 "type": "buys_from"}, status=201)
    # the same words in another scope
    store(srv, {"scope": "workspace:elsewhere", "name": "Steel Elsewhere", "type": "supplier",
                "observations": ["steel steel steel"]}, status=201)
    return scope


def test_search_is_ranked_by_score(srv, catalogue):
    doc = search(srv, q="steel coils", scope=catalogue, limit=100)
    results = doc["results"]
    assert results, doc
    scores = [h["score"] for h in results]
    assert scores == sorted(scores, reverse=True), scores
    assert all(0 <= x <= 1 for x in scores), scores
    assert results[0]["name"] == "Northwind Steel", results
    assert results[0]["score"] == 1.0, results[0]
    for h in results:
        assert h["scope"] == catalogue, h
        assert set(h) >= {"scope", "name", "type", "score", "vector_score", "text_rank",
                          "observations", "observation_count"}, h
        assert len(h["observations"]) <= 3, h
    assert isinstance(doc["took_ms"], (int, float)) and doc["expanded"] == [], doc
    # without a scope the operator searches every scope
    everywhere = names(search(srv, q="steel", limit=100)["results"])
    assert "Steel Elsewhere" in everywhere and "Northwind Steel" in everywhere, everywhere


def test_search_filters(srv, catalogue):
    assert len(search(srv, q="steel", scope=catalogue, limit=1)["results"]) == 1
    assert len(search(srv, q="steel", scope=catalogue, limit=2)["results"]) == 2
    typed = search(srv, q="steel", scope=catalogue, types="part", limit=100)["results"]
    assert typed and {h["type"] for h in typed} == {"part"}, typed
    typed = search(srv, q="steel", scope=catalogue, types="part,customer", limit=100)["results"]
    assert {h["type"] for h in typed} <= {"part", "customer"} and typed, typed
    high = search(srv, q="steel", scope=catalogue, min_score=0.9, limit=100)["results"]
    assert high and all(h["score"] >= 0.9 for h in high), high
    low = search(srv, q="steel", scope=catalogue, min_score=0, limit=100)["results"]
    assert len(low) > len(high), (low, high)
    assert search(srv, q="steel", scope=catalogue, min_score=1, limit=100)["results"] == [
        h for h in high if h["score"] >= 1]

    text_only = search(srv, q="gasket", scope=catalogue, mode="text", limit=100)["results"]
    assert names(text_only) and set(names(text_only)) <= {"Gasket G2", "Pump Works"}, text_only
    assert all(h["vector_score"] is None and isinstance(h["text_rank"], int)
               for h in text_only), text_only
    assert [h["text_rank"] for h in text_only] == sorted(h["text_rank"] for h in text_only)
    vector_only = search(srv, q="gasket", scope=catalogue, mode="vector", limit=100)["results"]
    assert vector_only and all(h["text_rank"] is None and h["vector_score"] is not None
                               for h in vector_only), vector_only
    hybrid = search(srv, q="gasket", scope=catalogue, mode="hybrid", limit=100)["results"]
    assert hybrid[0]["name"] == "Gasket G2", hybrid
    assert hybrid[0]["vector_score"] is not None and hybrid[0]["text_rank"] == 1, hybrid[0]
    # since (on updated_at): RFC 3339 or milliseconds since the epoch
    hour_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    assert search(srv, q="gasket", scope=catalogue, since=hour_ago)["results"]
    assert search(srv, q="gasket", scope=catalogue, since=int(time.time() * 1000) - 3600_000)[
        "results"]
    assert search(srv, q="gasket", scope=catalogue, since="2999-01-01T00:00:00Z")[
        "results"] == []


def test_since_accepts_a_duration(srv, catalogue):
    """Both messages promise it: search's "since a time or duration", violations'
    "a duration back from now (24h)"."""
    assert search(srv, q="gasket", scope=catalogue, since="1h")["results"]
    doc = operation(srv, "violations", {"since": "24h"})
    assert doc["ok"] is True, doc


def test_search_expands_neighbours_by_depth(srv, catalogue):
    doc = search(srv, q="rubber gasket", scope=catalogue, limit=1, depth=1)
    assert names(doc["results"]) == ["Gasket G2"], doc
    assert {(n["name"], n["depth"]) for n in doc["expanded"]} == {("Pump Works", 1)}, doc
    doc = search(srv, q="rubber gasket", scope=catalogue, limit=1, depth=2)
    assert {(n["name"], n["depth"]) for n in doc["expanded"]} == {
        ("Pump Works", 1), ("Harbor Metals", 2)}, doc
    doc = search(srv, q="rubber gasket", scope=catalogue, limit=1, depth=0)
    assert doc["expanded"] == [], doc


def test_search_limit_zero_is_refused(srv, catalogue):
    """The API's own message says limit is 1-100."""
    r = srv.admin("GET", search_path(q="steel", scope=catalogue, limit=0))
    error = error_of(r, 400, "INVALID_PARAMETER")
    assert error["details"] == {"parameter": "limit"}, error


# ---- operations ------------------------------------------------------------------------------


ENTITY_COMMANDS = {"search", "show", "store", "relate", "delete", "graph", "job"}


def operation_names():
    """The operations `caxton memory --help` lists (the entity commands aside)."""
    r = run_cli("memory", "--help", timeout=60)
    assert r.returncode == 0, text(r)
    listed = re.findall(r"^  ([a-z][a-z-]+)\s{2,}", r.stdout, re.M)
    return sorted(set(listed) - ENTITY_COMMANDS)


def test_every_operation_answers(fresh, tmp_path):
    s = fresh()
    store(s, {"scope": "workspace:api", "name": "Keep Me", "observations": ["survives a restore"]},
          status=201)
    export = str(tmp_path / "export.json")
    calls = [
        ("health-check", {}), ("integrity-check", {"full": True}), ("wal-status", {}),
        ("corruption-analysis", {}), ("backup", {}), ("emergency-backup", {}),
        ("export", {"json": export}), ("usage", {"by_scope": True, "detailed": True}),
        ("resource-usage", {"breakdown": True}), ("index-analysis", {"fragmentation": True}),
        ("analyze-queries", {"optimize_suggestions": True}), ("performance-metrics", {}),
        ("slow-queries", {"threshold": "5s"}), ("adjust-cache", {"size": "+16MB"}),
        ("reindex", {"full": True, "scope_aware": True}), ("optimize", {"indexes": True}),
        ("maintenance", {}), ("cleanup", {"compact": True, "vacuum": True}),
        ("scope-status", {}), ("permissions-check", {"agent": "prober"}),
        ("violations", {"since": int(time.time() * 1000) - 3600_000}),
        ("connection-test", {"agent": "prober"}),
        ("scope-reset", {"agent": "prober", "scope": "workspace"}),
        ("recover", {"from_wal": True, "backup_first": True}),
        ("restore", {"from_backup": "latest", "verify_integrity": True}),
        ("reinitialize", {"yes": True}), ("import", {"file": export}),
    ]
    assert sorted({name for name, _ in calls}) == operation_names()
    answers = {}
    for name, args in calls:
        doc = operation(s, name, args)
        answers[name] = doc
        assert doc["operation"] == name, doc
        assert doc["ok"] is True, (name, doc)
        assert not doc.get("problems"), (name, doc)
        if name == "reinitialize":
            assert search(s, q="survives restore")["results"] == [], "reinitialize kept data"
    with open(export) as f:
        exported = json.load(f)
    assert "Keep Me" in json.dumps(exported), exported
    assert answers["scope-status"]["agents"] and answers["connection-test"]["checks"], answers
    # after reinitialize and import, the entity is back and found
    assert names(search(s, q="survives restore")["results"]) == ["Keep Me"]
    assert get_entity(s, "workspace:api", "Keep Me")["observation_count"] == 1


def test_background_operations_are_jobs(srv):
    r = srv.admin("POST", f"{MEMORY}/optimize", {"background": True})
    assert r.status == 202, r
    doc = r.json()
    assert doc["operation"] == "optimize" and doc["state"] in ("queued", "running", "done"), doc
    job = wait_job(srv, doc["job_id"])
    assert job["id"] == doc["job_id"] and job["operation"] == "optimize", job
    assert job["state"] == "done" and job["result"]["ok"] is True, job
    assert job["finished_at"] >= job["created_at"], job
    r = memory_cli(srv, "job", doc["job_id"])
    assert r.returncode == 0, text(r)
    assert f"job {doc['job_id']} (memory optimize): done" in r.stdout, r.stdout

    # a job whose operation finds a problem: the CLI says so and exits 1
    store(srv, {"scope": "workspace:jobs", "name": "Before Restore Attempt",
                "observations": ["still here"]}, status=201)
    r = srv.admin("POST", f"{MEMORY}/restore", {"background": True,
                                                "from_backup": "/nonexistent/memory.db"})
    assert r.status == 202, r
    job = wait_job(srv, r.json()["job_id"])
    assert job["state"] == "failed" or job["result"]["ok"] is False, job
    r = memory_cli(srv, "job", job["id"])
    assert r.returncode == 1, text(r)
    # the store was not harmed by the failed restore, and still takes writes
    assert get_entity(srv, "workspace:jobs", "Before Restore Attempt")["observation_count"] == 1
    store(srv, {"scope": "workspace:jobs", "name": "After Restore Attempt"}, status=201)

    error_of(srv.admin("GET", "/api/v1/jobs/job-999999"), 404, "JOB_NOT_FOUND")
    r = memory_cli(srv, "job", "job-999999")
    assert r.returncode != 0 and "no job 'job-999999'" in text(r), text(r)


def test_unknown_operation(srv):
    for op in ("nonsense", "HEALTH-CHECK", "health_check", "entitiesx"):
        error = error_of(srv.admin("POST", f"{MEMORY}/{op}", {}), 404, "UNKNOWN_OPERATION")
        assert error["details"] == {"operation": op}, error
        assert op in error["message"], error


OPERATION_REFUSALS = [
    ("malformed JSON", "health-check", b'{"quick": tru', 400, "INVALID_JSON", "not valid JSON"),
    ("a JSON array", "health-check", b"[1, 2]", 422, "INVALID_PARAMETER", "JSON object"),
    ("JSON null", "usage", b"null", 422, "INVALID_PARAMETER", "JSON object"),
    ("a number", "backup", b"7", 422, "INVALID_PARAMETER", "JSON object"),
    ("invalid UTF-8", "usage", b'{"x": "\xff"}', 400, "INVALID_UTF8", "UTF-8"),
    ("no agent", "permissions-check", b"{}", 422, "INVALID_PARAMETER", "needs an agent"),
    ("unknown agent", "permissions-check", b'{"agent": "probr"}', 404, "AGENT_NOT_FOUND",
     "did you mean 'prober'"),
    ("agent not a string", "connection-test", b'{"agent": 5}', 422, "INVALID_PARAMETER",
     "needs an agent"),
    ("bad scope", "scope-reset", b'{"agent": "prober", "scope": "planet"}', 422,
     "INVALID_PARAMETER", "agent, workspace or global"),
    ("bad workspace", "scope-reset",
     b'{"agent": "prober", "scope": "workspace", "workspace": "a b"}', 422, "INVALID",
     "workspace"),
    ("bad threshold", "slow-queries", b'{"threshold": "soon"}', 422, "INVALID_PARAMETER",
     "duration"),
    ("bad cache size", "adjust-cache", b'{"size": "huge"}', 422, "INVALID_PARAMETER", "size"),
    ("no cache size", "adjust-cache", b"{}", 422, "INVALID_PARAMETER", "size"),
    ("bad since", "violations", b'{"since": "whenever"}', 422, "INVALID_PARAMETER", "since"),
    ("restore from nothing", "restore", b"{}", 422, "INVALID", "--from-backup"),
    ("agent path trick", "reindex", b'{"agent": "../../etc"}', 422, "INVALID",
     "invalid agent name"),
]


@pytest.mark.parametrize("case", OPERATION_REFUSALS, ids=[c[0] for c in OPERATION_REFUSALS])
def test_operation_refusals(srv, case):
    _, op, raw, status, code, fragment = case
    r = srv.request("POST", f"{MEMORY}/{op}", body=raw,
                    headers={"Content-Type": "application/json"}, token=srv.token)
    error = error_of(r, status, code)
    assert fragment in error["message"], error


def test_reinitialize_needs_yes(srv):
    store(srv, {"scope": "workspace:keep", "name": "Precious", "observations": ["do not lose"]},
          status=201)
    doc = operation(srv, "reinitialize", {"empty": True})
    assert doc["ok"] is False and "--yes" in doc["problems"][0], doc
    assert get_entity(srv, "workspace:keep", "Precious")["observation_count"] == 1


# ---- roles -----------------------------------------------------------------------------------


def test_viewer_reads_and_cannot_write(srv):
    viewer = create_token(srv, "viewer", "memory-viewer")
    operator = create_token(srv, "operator", "memory-operator")
    scope = "workspace:roles"
    store(srv, {"scope": scope, "name": "Shown", "observations": ["visible to viewers"]},
          status=201)
    store(srv, {"scope": scope, "name": "Other", "observations": ["x"]}, status=201)
    relate(srv, {"scope": scope, "from": "Shown", "to": "Other", "type": "near"}, status=201)

    for method, path in (("GET", entity_path(scope, "Shown")),
                         ("GET", f"{MEMORY}/search?q=visible"),
                         ("GET", graph_path(scope, "Shown"))):
        r = srv.request(method, path, token=viewer)
        assert r.status == 200, (path, r)
    writes = [("POST", f"{MEMORY}/entities", {"scope": scope, "name": "Sneaky"}),
              ("POST", f"{MEMORY}/relations", {"scope": scope, "from": "Shown", "to": "Other",
                                                "type": "hides"}),
              ("DELETE", entity_path(scope, "Shown"), None),
              ("POST", f"{MEMORY}/health-check", {}),
              ("POST", f"{MEMORY}/reinitialize", {"yes": True}),
              ("POST", "/api/v1/agents/prober/reconnect-memory", {})]
    for method, path, body in writes:
        error = error_of(srv.request(method, path, body=body, token=viewer), 403, "FORBIDDEN")
        assert error["details"] == {"required_role": "operator", "token_role": "viewer"}, error
        assert "needs an operator token" in error["message"], error
        error_of(srv.request(method, path, body=body), 401, "UNAUTHENTICATED")
    assert get_entity(srv, scope, "Shown")["observation_count"] == 1, "a refused write changed it"
    error_of(srv.admin("GET", entity_path(scope, "Sneaky")), 404, "NOT_FOUND")
    # an operator token writes
    r = srv.request("POST", f"{MEMORY}/entities", body={"scope": scope, "name": "By Operator"},
                    token=operator)
    assert r.status == 201, r
    r = srv.request("POST", f"{MEMORY}/usage", body={}, token=operator)
    assert r.status == 200 and r.json()["ok"] is True, r


# ---- hostile input ---------------------------------------------------------------------------


def body(value):
    """A request body: bytes as given, anything else as JSON."""
    return value if isinstance(value, bytes) else json.dumps(value).encode()


ENTITY_REFUSALS = [
    ("malformed JSON", b'{"name": "refused",', 400, "INVALID_JSON", "not valid JSON"),
    ("trailing garbage", b'{"name": "refused"} x', 400, "INVALID_JSON", "not valid JSON"),
    ("duplicate keys", b'{"name": "refused", "name": "again"}', 400, "INVALID_JSON", "duplicate"),
    ("a JSON array", [{"name": "refused"}], 422, "INVALID", "must be a JSON object"),
    ("a JSON string", "refused", 422, "INVALID", "must be a JSON object"),
    ("JSON null", b"null", 422, "INVALID", "must be a JSON object"),
    ("no body", b"", 422, "INVALID_ENTITY", "expected an entity as a JSON object"),
    ("invalid UTF-8", b'{"name": "refused\xff"}', 400, "INVALID_UTF8", "UTF-8"),
    ("unknown field", {"name": "refused", "colour": "red"}, 422, "INVALID",
     'unknown field "colour"'),
    ("no name", {"observations": ["x"]}, 422, "INVALID", "name: must be a string"),
    ("empty name", {"name": ""}, 422, "INVALID", "name: must not be empty"),
    ("name not text", {"name": ["refused"]}, 422, "INVALID", "name: must be a string"),
    ("newline in name", {"name": "refused\nsecond line"}, 422, "INVALID",
     "name: control character 0x0a at byte 7 is not allowed"),
    ("tab in name", {"name": "refused\tx"}, 422, "INVALID", "name: control character 0x09"),
    ("escape in name", {"name": "refused\u001b[31m"}, 422, "INVALID", "control character 0x1b"),
    ("DEL in name", {"name": "refused\u007f"}, 422, "INVALID", "DEL character"),
    ("10 KB name", {"name": "n" * 10240}, 413, "PAYLOAD_TOO_LARGE",
     "name: 10240 bytes, at most 256"),
    ("escaped NUL in name", b'{"name": "refused\\u0000x"}', 400, "INVALID_JSON", "\\u0000"),
    ("raw NUL in name", b'{"name": "refused\x00x"}', 400, "INVALID_JSON", "control character"),
    ("scope planet:x", {"scope": "planet:x", "name": "refused"}, 422, "INVALID",
     'scope: "planet:x" is not agent:NAME, workspace:NAME or global'),
    ("scope agent:", {"scope": "agent:", "name": "refused"}, 422, "INVALID", 'scope: "agent:"'),
    ("scope workspace:a b", {"scope": "workspace:a b", "name": "refused"}, 422, "INVALID",
     'scope: "workspace:a b"'),
    ("scope Global", {"scope": "Global", "name": "refused"}, 422, "INVALID", 'scope: "Global"'),
    ("scope with slash", {"scope": "workspace:a/b", "name": "refused"}, 422, "INVALID",
     "scope:"),
    ("scope not text", {"scope": 7, "name": "refused"}, 422, "INVALID",
     "scope: must be a string"),
    ("confidence 2", {"name": "refused", "confidence": 2}, 422, "INVALID",
     "confidence: 2 is outside 0..1"),
    ("confidence -0.1", {"name": "refused", "confidence": -0.1}, 422, "INVALID", "outside 0..1"),
    ("confidence text", {"name": "refused", "confidence": "high"}, 422, "INVALID",
     "confidence: must be a number from 0 to 1"),
    ("observations not a list", {"name": "refused", "observations": "one"}, 422, "INVALID",
     "observations: must be a list of strings"),
    ("observation not text", {"name": "refused", "observations": ["ok", 1]}, 422, "INVALID",
     "observations[1]: must be a string"),
    ("empty observation", {"name": "refused", "observations": [""]}, 422, "INVALID",
     "observations[0]: must not be empty"),
    ("NUL in observation", b'{"name": "refused", "observations": ["a\\u0000"]}', 400,
     "INVALID_JSON", "\\u0000"),
    ("1001 observations", {"name": "refused", "observations": [f"o{i}" for i in range(1001)]},
     413, "PAYLOAD_TOO_LARGE", "observations: 1001 items, at most 1000 per write"),
    ("4 KB + 1 observation", {"name": "refused", "observations": ["o" * 4097]}, 413,
     "PAYLOAD_TOO_LARGE", "observations[0]: 4097 bytes, at most 4096"),
    ("1001 removals", {"name": "refused", "remove_observations": ["o"] * 1001}, 413,
     "PAYLOAD_TOO_LARGE", "remove_observations: 1001 items"),
    ("metadata over 16 KB", {"name": "refused", "metadata": {"notes": "m" * 16400}}, 413,
     "PAYLOAD_TOO_LARGE", "at most 16384"),
    ("metadata not an object", {"name": "refused", "metadata": ["a"]}, 422, "INVALID",
     "metadata: must be a JSON object"),
    ("type with a newline", {"name": "refused", "type": "a\nb"}, 422, "INVALID",
     "type: control character 0x0a"),
    ("type with punctuation", {"name": "refused", "type": "drop;table"}, 422, "INVALID",
     "type: only letters, digits, space"),
    ("65-byte type", {"name": "refused", "type": "t" * 65}, 413, "PAYLOAD_TOO_LARGE",
     "type: 65 bytes, at most 64"),
    ("unknown agent", {"agent": "nobody", "name": "refused"}, 404, "AGENT_NOT_FOUND",
     "no agent named 'nobody'"),
]


@pytest.mark.parametrize("case", ENTITY_REFUSALS, ids=[c[0] for c in ENTITY_REFUSALS])
def test_entity_write_refusals(srv, case):
    _, value, status, code, fragment = case
    r = srv.request("POST", f"{MEMORY}/entities", body=body(value),
                    headers={"Content-Type": "application/json"}, token=srv.token)
    error = error_of(r, status, code)
    assert fragment in error["message"], error
    # nothing was written
    for scope in ("global", "workspace:a", "workspace:default"):
        error_of(srv.admin("GET", entity_path(scope, "refused")), 404, "NOT_FOUND")


@pytest.fixture(scope="module")
def pair(srv):
    scope = "workspace:rel"
    for name in ("From Here", "To There"):
        store(srv, {"scope": scope, "name": name, "observations": [name]}, status=201)
    store(srv, {"scope": "workspace:other", "name": "Far Away"}, status=201)
    return scope


RELATION_REFUSALS = [
    ("malformed JSON", b'{"from": ', 400, "INVALID_JSON", "not valid JSON"),
    ("a JSON array", [1, 2], 422, "INVALID", "the relation must be a JSON object"),
    ("JSON null", b"null", 422, "INVALID", "the relation must be a JSON object"),
    ("no body", b"", 422, "INVALID", "expected a relation"),
    ("unknown field", {"from": "From Here", "to": "To There", "type": "goes_to", "via": "x"},
     422, "INVALID", 'unknown field "via"'),
    ("no type", {"from": "From Here", "to": "To There"}, 422, "INVALID", "type: must be a string"),
    ("type not snake case", {"from": "From Here", "to": "To There", "type": "GoesTo"}, 422,
     "INVALID", "lower_snake_case"),
    ("type with a quote", {"from": "From Here", "to": "To There", "type": "goes'to"}, 422,
     "INVALID", "lower_snake_case"),
    ("newline in from", {"from": "From\nHere", "to": "To There", "type": "goes_to"}, 422,
     "INVALID", "from: control character 0x0a"),
    ("10 KB to", {"from": "From Here", "to": "t" * 10240, "type": "goes_to"}, 413,
     "PAYLOAD_TOO_LARGE", "to: 10240 bytes, at most 256"),
    ("NUL in to", b'{"from": "From Here", "to": "To\\u0000There", "type": "goes_to"}', 400,
     "INVALID_JSON", "\\u0000"),
    ("strength 2", {"from": "From Here", "to": "To There", "type": "goes_to", "strength": 2},
     422, "INVALID", "strength: 2 is outside 0..1"),
    ("bad scope", {"scope": "planet:x", "from": "From Here", "to": "To There",
                   "type": "goes_to"}, 422, "INVALID", 'scope: "planet:x"'),
    ("another workspace", {"from": "From Here", "to": "Far Away", "type": "goes_to",
                           "to_scope": "workspace:other"}, 422, "INVALID",
     "to_scope: a relation goes to an entity in the same scope"),
    ("missing entity", {"from": "From Here", "to": "Nowhere", "type": "goes_to"}, 404,
     "NOT_FOUND", 'no entity "Nowhere"'),
    ("unknown agent", {"agent": "nobody", "from": "From Here", "to": "To There",
                       "type": "goes_to"}, 404, "AGENT_NOT_FOUND", "nobody"),
]


@pytest.mark.parametrize("case", RELATION_REFUSALS, ids=[c[0] for c in RELATION_REFUSALS])
def test_relation_refusals(srv, pair, case):
    _, value, status, code, fragment = case
    if isinstance(value, dict) and "scope" not in value:
        value = dict(value, scope=pair)
    r = srv.request("POST", f"{MEMORY}/relations", body=body(value),
                    headers={"Content-Type": "application/json"}, token=srv.token)
    error = error_of(r, status, code)
    assert fragment in error["message"], error
    g = srv.admin("GET", graph_path(pair, "From Here")).json()
    assert g["edges"] == [], "a refused relation was stored"


SEARCH_REFUSALS = [
    ("no q", {}, 422, "INVALID", "q: the search text is missing", None),
    ("empty q", {"q": ""}, 422, "INVALID", "q: the search text is missing", None),
    ("limit 101", {"q": "x", "limit": 101}, 400, "INVALID_PARAMETER", "bad limit", "limit"),
    ("limit -1", {"q": "x", "limit": -1}, 400, "INVALID_PARAMETER", "bad limit", "limit"),
    ("limit text", {"q": "x", "limit": "ten"}, 400, "INVALID_PARAMETER", "bad limit", "limit"),
    ("depth 6", {"q": "x", "depth": 6}, 400, "INVALID_PARAMETER", "bad depth", "depth"),
    ("depth -1", {"q": "x", "depth": -1}, 400, "INVALID_PARAMETER", "bad depth", "depth"),
    ("min_score -1", {"q": "x", "min_score": -1}, 400, "INVALID_PARAMETER", "bad min_score",
     "min_score"),
    ("min_score 1.5", {"q": "x", "min_score": 1.5}, 400, "INVALID_PARAMETER", "bad min_score",
     "min_score"),
    ("min_score nan", {"q": "x", "min_score": "nan"}, 400, "INVALID_PARAMETER", "bad min_score",
     "min_score"),
    ("mode fuzzy", {"q": "x", "mode": "fuzzy"}, 400, "INVALID_PARAMETER", "bad mode", "mode"),
    ("since garbage", {"q": "x", "since": "last tuesday"}, 400, "INVALID_PARAMETER",
     "bad since", "since"),
    ("17 types", {"q": "x", "types": ",".join(f"t{i}" for i in range(17))}, 400,
     "INVALID_PARAMETER", "bad types", "types"),
    ("types over 1 KB", {"q": "x", "types": "t" * 1100}, 400, "INVALID_PARAMETER", "bad types",
     "types"),
    ("q over 4 KB", {"q": "q" * 4097}, 400, "INVALID_PARAMETER", "values up to 4096 bytes", None),
    ("scope planet:x", {"q": "x", "scope": "planet:x"}, 422, "INVALID", 'scope: "planet:x"',
     None),
    ("scope agent:", {"q": "x", "scope": "agent:"}, 422, "INVALID", 'scope: "agent:"', None),
    ("scope workspace:a b", {"q": "x", "scope": "workspace:a b"}, 422, "INVALID",
     'scope: "workspace:a b"', None),
    ("unknown agent", {"q": "x", "agent": "nobody"}, 404, "AGENT_NOT_FOUND", "nobody", None),
]


@pytest.mark.parametrize("case", SEARCH_REFUSALS, ids=[c[0] for c in SEARCH_REFUSALS])
def test_search_refusals(srv, case):
    _, query, status, code, fragment, parameter = case
    error = error_of(srv.admin("GET", search_path(**query)), status, code)
    assert fragment in error["message"], error
    if parameter:
        assert error["details"] == {"parameter": parameter}, error


def test_search_accepts_the_largest_values(srv, catalogue):
    assert search(srv, q="s" * 4096, scope=catalogue, limit=100, depth=5, min_score=1)
    assert search(srv, q="steel", types=",".join(f"t{i}" for i in range(16)))["results"] == []
    assert search(srv, q="\"unbalanced OR (steel* NEAR", scope=catalogue, mode="text")


GET_REFUSALS = [
    ("observations text", "global", "x", {"observations": "all"}, 400, "INVALID_PARAMETER",
     "observations must be a whole number from 0 to 10000"),
    ("observations 10001", "global", "x", {"observations": 10001}, 400, "INVALID_PARAMETER",
     "observations must be"),
    ("observations -1", "global", "x", {"observations": -1}, 400, "INVALID_PARAMETER",
     "observations must be"),
    ("scope planet:x", "planet:x", "x", {}, 422, "INVALID", 'scope: "planet:x"'),
    ("scope agent:", "agent:", "x", {}, 422, "INVALID", 'scope: "agent:"'),
    ("scope workspace:a b", "workspace:a b", "x", {}, 422, "INVALID", 'scope: "workspace:a b"'),
    ("missing entity", "global", "never stored", {}, 404, "NOT_FOUND", 'no entity "never stored"'),
    ("newline in name", "global", "a\nb", {}, 404, "NOT_FOUND", "no entity"),
    ("NUL in name", "global", "a\x00b", {}, 404, "NOT_FOUND", "no entity"),
    ("10 KB name", "global", "n" * 10240, {}, 404, "NOT_FOUND", "no entity"),
    ("unknown agent", "global", "x", {"agent": "nobody"}, 404, "AGENT_NOT_FOUND", "nobody"),
]


@pytest.mark.parametrize("case", GET_REFUSALS, ids=[c[0] for c in GET_REFUSALS])
def test_entity_read_and_delete_refusals(srv, case):
    _, scope, name, query, status, code, fragment = case
    error = error_of(srv.admin("GET", entity_path(scope, name, **query)), status, code)
    assert fragment in error["message"], error
    if not query.get("observations"):
        error = error_of(srv.admin("DELETE", entity_path(scope, name, **query)), status, code)
        assert fragment in error["message"], error


GRAPH_REFUSALS = [
    ("depth 6", "global", "Steel Standard", {"depth": 6}, 400, "INVALID_PARAMETER",
     "depth must be 0 to 5"),
    ("depth -1", "global", "Steel Standard", {"depth": -1}, 400, "INVALID_PARAMETER",
     "depth must be 0 to 5"),
    ("depth text", "global", "Steel Standard", {"depth": "deep"}, 400, "INVALID_PARAMETER",
     "depth must be 0 to 5"),
    ("scope planet:x", "planet:x", "x", {}, 422, "INVALID", 'scope: "planet:x"'),
    ("scope workspace:a b", "workspace:a b", "x", {}, 422, "INVALID", "scope:"),
    ("missing entity", "global", "never stored", {}, 404, "NOT_FOUND", "no entity"),
    ("unknown agent", "global", "x", {"agent": "nobody"}, 404, "AGENT_NOT_FOUND", "nobody"),
]


@pytest.mark.parametrize("case", GRAPH_REFUSALS, ids=[c[0] for c in GRAPH_REFUSALS])
def test_graph_refusals(srv, case):
    _, scope, name, query, status, code, fragment = case
    error = error_of(srv.admin("GET", graph_path(scope, name, **query)), status, code)
    assert fragment in error["message"], error
    if "depth" in query:
        assert error["details"] == {"parameter": "depth"}, error


def test_acting_as_an_agent_outside_its_scope_is_scope_permission_denied(srv):
    store(srv, {"scope": "workspace:elsewhere", "name": "Not For Prober"}, status=201)
    for r in (srv.admin("GET", entity_path("workspace:elsewhere", "Not For Prober",
                                           agent="prober")),
              store(srv, {"agent": "prober", "scope": "workspace:elsewhere",
                          "name": "Not For Prober", "observations": ["overwrite"]}),
              srv.admin("GET", search_path(q="prober", scope="workspace:elsewhere",
                                           agent="prober"))):
        error = error_of(r, 403, "SCOPE_PERMISSION_DENIED")
        assert error["message"].startswith("Memory access denied: agent 'prober'"), error
    # its own workspace is fine
    r = store(srv, {"agent": "prober", "name": "Prober's Own"}, status=201)
    assert r.json()["scope"] == "workspace:api", r.json()


def test_jobs_and_reconnect_refusals(srv):
    for job_id in ("job-0", "JOB-1", "job-1%20", "j" * 5000, "job-%00"):
        error = error_of(srv.admin("GET", f"/api/v1/jobs/{job_id}"), 404, "JOB_NOT_FOUND")
        assert len(error["message"]) < 200, error
    r = srv.admin("POST", "/api/v1/agents/prober/reconnect-memory", {})
    assert r.status == 200, r
    assert r.json() == {"agent": "prober", "ok": True, "detail": r.json()["detail"],
                        "memory_enabled": True}, r.json()
    error = error_of(srv.admin("POST", "/api/v1/agents/nobody/reconnect-memory", {}), 404,
                     "AGENT_NOT_FOUND")
    assert "nobody" in error["message"], error
    error_of(srv.request("POST", "/api/v1/agents/prober/reconnect-memory", body=b"{",
                         headers={"Content-Type": "application/json"}, token=srv.token),
             400, "INVALID_JSON")


# ---- limits and an unavailable store ---------------------------------------------------------


def test_max_entries_is_memory_limit_exceeded(srv):
    r = store(srv, {"agent": "capped", "name": "First", "observations": ["one"]}, status=201)
    assert r.json()["scope"] == "agent:capped", r.json()
    error = error_of(store(srv, {"agent": "capped", "name": "Second"}), 507,
                     "MEMORY_LIMIT_EXCEEDED")
    assert "memory.max_entries" in error["message"] and "capped" in error["message"], error
    # updating what it has is still allowed
    e = store(srv, {"agent": "capped", "name": "First", "observations": ["two"]}, status=200)
    assert e.json()["observation_count"] == 2, e.json()
    error_of(srv.admin("GET", entity_path("agent:capped", "Second")), 404, "NOT_FOUND")


def test_max_size_is_memory_limit_exceeded(fresh):
    s = fresh(config_extra="memory:\n  max_size: 64KB\n")
    error = error_of(store(s, {"scope": "global", "name": "Too Much", "observations": ["x"]}),
                     507, "MEMORY_LIMIT_EXCEEDED")
    assert "memory.max_size" in error["message"], error
    assert "caxton memory cleanup --vacuum" in error["message"], error
    error_of(s.admin("GET", entity_path("global", "Too Much")), 404, "NOT_FOUND")
    # reads still work, and health says the database is near its limit
    assert search(s, q="anything")["results"] == []

    def memory_component():
        doc = s.get("/health/deep").json()
        part = next(c for c in doc["components"] if c["name"] == "memory")
        return part if part["status"] != "ok" else None
    part = wait_until(memory_component, "the memory health component to warn")
    assert part["status"] == "warn" and "memory.max_size" in part["detail"], part


def garbage_database(s):
    path = os.path.join(s.data_dir, "data")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "memory.db"), "wb") as f:
        f.write(b"this is not an SQLite database\n" * 400)


def test_unavailable_store_is_memory_unavailable(fresh):
    s = fresh(before_start=garbage_database)
    requests = [
        ("POST", f"{MEMORY}/entities", {"scope": "global", "name": "x"}),
        ("POST", f"{MEMORY}/entities", {"agent": "prober", "name": "x"}),
        ("GET", entity_path("global", "x"), None),
        ("DELETE", entity_path("global", "x"), None),
        ("POST", f"{MEMORY}/relations", {"scope": "global", "from": "a", "to": "b",
                                         "type": "t"}),
        ("GET", search_path(q="x"), None),
        ("GET", graph_path("global", "x"), None),
        ("POST", f"{MEMORY}/violations", {}),
    ]
    for method, path, payload in requests:
        error = error_of(s.request(method, path, body=payload, token=s.token), 503,
                         "MEMORY_UNAVAILABLE")
        assert "unavailable" in error["message"] and "not a database" in error["message"], error
    # the diagnostic operations answer, and say what is wrong
    doc = operation(s, "health-check", {})
    assert doc["ok"] is False, doc
    assert any("not a database" in p for p in doc["problems"]), doc
    # hostile input is still refused as such, not as unavailable
    error_of(s.request("POST", f"{MEMORY}/entities", body=b"{", token=s.token,
                       headers={"Content-Type": "application/json"}), 400, "INVALID_JSON")
    error_of(s.admin("POST", f"{MEMORY}/nonsense", {}), 404, "UNKNOWN_OPERATION")


# ---- observability of the memory routes ------------------------------------------------------


def test_request_metrics_name_the_memory_routes(srv):
    store(srv, {"scope": "workspace:metrics", "name": "Counted"}, status=201)
    search(srv, q="counted")
    srv.admin("POST", f"{MEMORY}/relations", {"scope": "workspace:metrics", "from": "Counted",
                                              "to": "Counted", "type": "is"})
    expected = [("POST", "/api/v1/memory/entities", "201"),
                ("GET", "/api/v1/memory/search", "200"),
                ("POST", "/api/v1/memory/relations", "201")]
    samples = scrape(srv)
    for method, route, status in expected:
        value = metric(samples, "caxton_http_requests_total", method=method, route=route,
                       status=status)
        assert value and value >= 1, (method, route, [
            line for line in samples.splitlines() if "/api/v1/memory" in line
            and line.startswith("caxton_http_requests_total")])


# ---- the troubleshooting guide's memory commands ---------------------------------------------


def test_guide_corruption_and_performance_commands(fresh, tmp_path):
    """Every memory command of "Embedded SQLite Database Corruption" and "Memory
    Performance Degradation", as written (the service stop/start around the WAL
    recovery is the server stopped and started)."""
    s = fresh()
    for i in range(6):
        store(s, {"scope": "workspace:guide", "name": f"Record {i}",
                  "observations": [f"fact number {i} about pumps"]}, status=201)
    search(s, q="pumps")
    work = tmp_path / "work"
    work.mkdir()

    def run(*args, code=0, where=None):
        r = memory_cli(s, *args, cwd=where or str(work))
        assert r.returncode == code, (args, text(r))
        return r

    run("health-check", "--embedded", "--quick")
    r = run("integrity-check", "--full")
    assert "memory integrity-check: ok" in r.stdout, r.stdout
    r = run("wal-status", "--embedded")
    assert "journal_mode: wal" in r.stdout, r.stdout
    r = run("corruption-analysis", "--export-report")
    assert "classification: none" in r.stdout, r.stdout
    report = re.search(r"^report_path: (.+)$", r.stdout, re.M)
    assert report and os.path.exists(report.group(1).strip()), r.stdout
    run("backup")

    # Fix 1: recover from the WAL with the service stopped
    stop_clean(s)
    r = run("recover", "--from-wal", "--backup-first")
    assert "server not running" in r.stderr, text(r)
    s.start()
    assert len(search(s, q="pumps", limit=100)["results"]) == 6

    # Fix 2: rebuild from backup
    r = run("restore", "--from-backup", "latest", "--verify-integrity")
    assert "verified: true" in r.stdout, r.stdout
    assert len(search(s, q="pumps", limit=100)["results"]) == 6

    # Fix 3: export, reinitialize, import (reinitialize asks for --yes when nobody can answer)
    run("export", "--json", "emergency-export.json")
    assert (work / "emergency-export.json").exists()
    r = run("reinitialize", "--empty", code=2)
    assert "pass --yes" in r.stderr, text(r)
    assert len(search(s, q="pumps", limit=100)["results"]) == 6, "refused, yet data was deleted"
    run("reinitialize", "--empty", "--yes")
    assert search(s, q="pumps", limit=100)["results"] == []
    run("import", "emergency-export.json", "--validate")
    assert len(search(s, q="pumps", limit=100)["results"]) == 6

    # Fix 4 and the performance section
    run("reindex", "--full", "--embedded", "--optimize")
    r = run("performance-metrics", "--detailed", "--last-1h")
    assert re.search(r"^searches: [1-9]", r.stdout, re.M), r.stdout
    r = run("slow-queries", "--threshold", "5s")
    assert "count: 0" in r.stdout, r.stdout
    run("index-analysis", "--fragmentation")
    run("resource-usage", "--embedded", "--breakdown")
    r = run("optimize", "--indexes", "--background")
    job = re.search(r"caxton memory job (\S+)", r.stdout)
    assert job, r.stdout
    assert wait_job(s, job.group(1))["state"] == "done"
    run("job", job.group(1))
    run("cleanup", "--vacuum", "--embedded", "--compact")
    run("analyze-queries", "--optimize-suggestions")
    r = run("adjust-cache", "--size", "+512MB", "--embedded")
    assert "cache_bytes: " in r.stdout, r.stdout
    run("health-check", "--embedded", "--quick")
    assert len(search(s, q="pumps", limit=100)["results"]) == 6


def test_cli_json_output_of_an_operation(srv, catalogue):
    r, doc = cli_doc(srv, "memory", "usage", "--by-scope")
    assert r.returncode == 0, text(r)
    assert doc["operation"] == "usage" and doc["ok"] is True, doc
    assert doc["by_scope"]["workspace:search"]["entities"] >= 5, doc["by_scope"]
