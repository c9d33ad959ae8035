"""memory.retention, end to end: `caxton memory cleanup` deletes the entities
an agent created that nobody updated within its retention, and nothing else
(not its recent ones, not other agents', not the operator's). Offline, the
cleanup says it cannot apply retention without the agents."""
import os
import sqlite3

import pytest

from agents_util import stop_clean
from llm_server import ScriptedLLM
from memory_util import (cli_doc, entity_path, memory_agent, start_memory_server, store)

DAY_MS = 86400 * 1000

AGENTS = {
    "keeper": memory_agent("keeper", scope="agent", retention="1d"),
    "hoarder": memory_agent("hoarder", scope="agent"),
}


@pytest.fixture(scope="module")
def llm():
    srv = ScriptedLLM().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def srv(tmp_path_factory, llm):
    s = start_memory_server(tmp_path_factory.mktemp("memory_retention"), llm, AGENTS)
    yield s
    stop_clean(s)


def age(s, scope, name, days):
    """Moves an entity's last update `days` into the past, as time would."""
    db = sqlite3.connect(os.path.join(s.data_dir, "data", "memory.db"), timeout=10)
    with db:
        db.execute("UPDATE entities SET updated_at = updated_at - ? WHERE scope = ? AND name = ?",
                   (days * DAY_MS, scope, name))
    db.close()


def test_cleanup_applies_retention(srv):
    for agent, name in [("keeper", "old fact"), ("keeper", "new fact"), ("hoarder", "old hoard")]:
        store(srv, {"agent": agent, "name": name, "observations": ["x"]}, status=201)
    store(srv, {"scope": "agent:keeper", "name": "operator note", "observations": ["y"]},
          status=201)
    age(srv, "agent:keeper", "old fact", 2)
    age(srv, "agent:keeper", "operator note", 2)
    age(srv, "agent:hoarder", "old hoard", 30)
    r, doc = cli_doc(srv, "memory", "cleanup", "--compact")
    assert r.returncode == 0, r.stderr
    assert doc["retention"]["deleted_by_agent"] == {"keeper": 1}, doc
    assert srv.admin("GET", entity_path("agent:keeper", "old fact")).status == 404
    for scope, name in [("agent:keeper", "new fact"), ("agent:keeper", "operator note"),
                        ("agent:hoarder", "old hoard")]:
        assert srv.admin("GET", entity_path(scope, name)).status == 200, name
    # the deleted entity is gone from search too
    r = srv.admin("GET", "/api/v1/memory/search?q=old+fact&scope=agent:keeper")
    assert "old fact" not in [h["name"] for h in r.json()["results"]]
    # a second cleanup finds nothing more
    r, doc = cli_doc(srv, "memory", "cleanup", "--compact", "--agent", "keeper")
    assert r.returncode == 0, r.stderr
    assert doc["retention"]["deleted_by_agent"] == {"keeper": 0}, doc


def test_offline_cleanup_says_retention_needs_the_server(tmp_path):
    from conftest import Server
    s = Server(tmp_path)
    s.start()
    assert s.admin("POST", "/api/v1/memory/entities",
                   body={"scope": "global", "name": "n", "observations": ["o"]}).status == 201
    stop_clean(s)
    r, doc = cli_doc(s, "memory", "cleanup", "--compact")
    assert r.returncode == 0, r.stderr
    assert "running server applies them" in doc["retention"], doc
