"""Remote embedders for the memory: openai and ollama through the LLM providers.

The ScriptedLLM (llm_server.py) serves /v1/embeddings and /api/embed with
vectors in which synonyms coincide ("automobiles" and "cars"), so a search
that finds an entity by a word it does not contain found it by vector. Each
test checks what an operator would: writes acknowledged whatever the
embedder does, the queue of entities waiting for vectors in health-check,
batching and the cache in the provider's request log, searches that fall
back to text and say so, an agent's memory context and memory_search tool,
the switch of embedder at start, and config validate. Every wait is bounded.
"""
import math
import os
import time
import urllib.parse

from agents_util import agent_md, agents_dir, send, stop_clean, system_prompt, write_file
from conftest import run_cli
from llm_server import ScriptedLLM

WAIT_S = 45.0  # the queue's backoff doubles up to 30 s while the provider is down


def config(llm, embedder="openai", model="emb-test", batch=4, provider=None, extra=""):
    lines = ["llm:", "  providers:", "    openai:", f"      base_url: {llm.url}",
             "      api_key: test-key", "      retries: 0", "      timeout: 3s", "    local:",
             "      type: ollama", f"      base_url: {llm.ollama_url}", "      retries: 0",
             "      timeout: 3s"]
    if embedder:
        lines += ["memory:", f"  embedder: {embedder}", "  embedding:"]
        if model:
            lines.append(f"    model: {model}")
        if provider:
            lines.append(f"    provider: {provider}")
        lines.append(f"    batch: {batch}")
    return "\n".join(lines) + "\n" + extra


def poll(check, what, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {timeout}s; last seen: {last!r}")


def put(s, name, observation, entity_type="fact"):
    r = s.admin("POST", "/api/v1/memory/entities",
                body={"scope": "global", "name": name, "type": entity_type,
                      "observations": [observation]})
    assert r.status in (200, 201), r
    return r


def health(s):
    r = s.admin("POST", "/api/v1/memory/health-check", body={"quick": True})
    assert r.status == 200, r
    return r.json()


def waiting(s):
    return health(s)["embedder"]["waiting"]


def drained(s):
    h = health(s)
    return h if h["embedder"]["waiting"] == 0 else None


def search(s, query, **args):
    qs = urllib.parse.urlencode({"q": query, **args})
    t0 = time.monotonic()
    r = s.admin("GET", f"/api/v1/memory/search?{qs}", timeout=30)
    assert r.status == 200, r
    return r.json(), time.monotonic() - t0


def test_openai_embedder_queue_batches_cache_and_outage(make_server):
    with ScriptedLLM() as llm:
        llm.embed_dim = 256
        s = make_server(config=config(llm, batch=4))
        assert "memory embeds with openai:emb-test through provider openai" in open(
            os.path.join(s.log_dir, "caxton.log")).read()
        # a write is acknowledged, then its vector arrives
        put(s, "Vehicle fleet", "Twelve cars are parked at the depot", "asset")
        h = poll(lambda: drained(s), "embedding of the first entity")
        assert h["ok"] is True, h
        assert h["embedder"]["id"] == "openai:emb-test" and h["embedder"]["dim"] == 256
        assert h["vector_index"]["vectors"] == 1
        assert llm.embed_paths == ["/v1/embeddings"]
        assert llm.embed_requests[0]["model"] == "emb-test"
        assert llm.embed_texts == ["Vehicle fleet\nasset\nTwelve cars are parked at the depot"]
        # found by vector: no word of the query is in the entity
        body, _ = search(s, "automobiles")
        assert "vector" not in body, body
        hit = body["results"][0]
        assert hit["name"] == "Vehicle fleet", body
        assert hit["vector_score"] > 0.2 and hit["text_rank"] is None, hit
        # the same query again: from the cache, no request
        requests = len(llm.embed_requests)
        body, _ = search(s, "automobiles")
        assert body["results"][0]["name"] == "Vehicle fleet"
        assert len(llm.embed_requests) == requests

        # the embedder goes down: writes still acknowledged, searches by text
        llm.embed_status = 503
        for i in range(10):
            put(s, f"item {i}", f"stock number {i} in the north warehouse")
        h = health(s)
        assert h["ok"] is True, h
        assert h["embedder"]["waiting"] == 10, h
        assert any(w.startswith("10 entities waiting for embeddings from openai:emb-test")
                   for w in h.get("warnings", [])), h
        poll(lambda: "caxton_memory_embeddings_waiting 10\n" in s.get("/metrics").body.decode(),
             "the waiting entities in /metrics", timeout=10)
        body, took = search(s, "north warehouse stock")
        assert body["vector"].startswith("unavailable: "), body
        assert "503" in body["vector"], body
        assert len(body["results"]) == 10 and took < 6.0, (took, body)
        out = s.cli("memory", "search", "north warehouse stock")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "ranked by text only: vector search unavailable: " in out.stdout, out.stdout
        r = s.admin("POST", "/api/v1/memory/integrity-check", body={"quick": True})
        assert r.status == 200 and r.json()["ok"] is True, r

        # back: the queue drains in batches of 4 (a fresh query cuts the backoff short)
        llm.reset_embed_counts()
        llm.embed_status = None
        body, _ = search(s, "parked depot fleet")
        assert "vector" not in body, body
        poll(lambda: drained(s), "the queue to drain")
        batches = [r for r in llm.embed_requests if r["input"] != ["parked depot fleet"]]
        assert len(batches) == math.ceil(10 / 4), [len(r["input"]) for r in batches]
        assert all(len(r["input"]) <= 4 for r in batches)
        assert sorted(llm.embed_texts[1:]) == sorted(
            f"item {i}\nfact\nstock number {i} in the north warehouse" for i in range(10))
        h = health(s)
        assert h["ok"] is True and h["vector_index"]["vectors"] == 11, h
        assert not h.get("warnings"), h

        # reindex queues everything again (and empties the cache)
        llm.reset_embed_counts()
        r = s.admin("POST", "/api/v1/memory/reindex", body={})
        assert r.status == 200, r
        report = r.json()["report"]
        assert report["queued"] == 11 and report["embedder"] == "openai:emb-test", report
        poll(lambda: drained(s), "the reindexed entities")
        assert len(llm.embed_requests) == math.ceil(11 / 4)
        out = run_cli("memory", "reindex", env={"CAXTON_DATA_DIR": s.data_dir})
        assert out.returncode == 0, out.stdout + out.stderr
        assert "queued: 11" in out.stdout, out.stdout
        poll(lambda: drained(s), "the entities reindexed from the CLI")
        stop_clean(s)


def test_agent_memory_context_and_tool_wait_for_the_embedder(make_server):
    with ScriptedLLM() as llm:
        llm.embed_dim = 256
        md = agent_md("keeper", capabilities=("memory",),
                      extra="memory:\n  enabled: true\n  scope: workspace\n"
                            "tools: [memory_search]",
                      prompt="You keep the fleet records.\n\n{{memory_context}}")
        s = make_server(config=config(llm), start=False)
        os.makedirs(agents_dir(s), exist_ok=True)
        write_file(agents_dir(s), "keeper.md", md)
        s.start()
        put(s, "Vehicle fleet", "Twelve cars are parked at the depot", "asset")
        poll(lambda: drained(s), "the entity's vector")
        # the tool's query is not the message's: it waits for its own vector
        llm.script([{"tool_calls": [{"name": "memory_search",
                                     "arguments": {"query": "vehicles"}}]},
                    {"text": "We have twelve of them."}])
        r = send(s, "keeper", "automobiles")
        assert r.status == 200, r
        assert r.json()["reply"]["content"] == "We have twelve of them.", r.json()
        first, second = llm.requests[0], llm.requests[1]
        # the context: found by vector before the LLM was called
        assert "Vehicle fleet" in system_prompt(first), system_prompt(first)
        # the tool: its answer went back to the LLM
        tool = [m for m in second["messages"] if m.get("role") == "tool"]
        assert tool and "Vehicle fleet" in tool[0]["content"], second["messages"]
        assert '"vector"' not in tool[0]["content"], tool[0]["content"]
        assert ["automobiles"] in [r["input"] for r in llm.embed_requests]
        assert ["vehicles"] in [r["input"] for r in llm.embed_requests]

        # the embedder down: the agent still answers, memories by text
        llm.embed_status = 503
        llm.script([{"text": "Still here."}])
        t0 = time.monotonic()
        r = send(s, "keeper", "depot")
        assert r.status == 200 and r.json()["reply"]["content"] == "Still here.", r
        assert time.monotonic() - t0 < 8.0
        assert "Vehicle fleet" in system_prompt(llm.requests[-1])
        stop_clean(s)


def test_switching_builtin_to_ollama_reembeds_at_start(make_server):
    with ScriptedLLM() as llm:
        s = make_server(config=config(llm, embedder=None), subdir="one")
        for i in range(5):
            put(s, f"supplier {i}", f"supplier number {i} ships bolts")
        h = health(s)
        assert h["embedder"]["id"] == "builtin-lexical-v1" and h["ok"] is True, h
        stop_clean(s)
        assert llm.embed_requests == []
        # the same data dir with ollama: every vector is stale, queued at start
        s2 = make_server(config=config(llm, embedder="ollama", model="nomic-test", batch=2),
                         start=False, subdir="two")
        s2.data_dir, s2.log_dir = s.data_dir, s.log_dir
        s2.start()
        h = poll(lambda: drained(s2), "the vectors of the new embedder")
        assert set(llm.embed_paths) == {"/api/embed"}
        assert len(llm.embed_requests) == math.ceil(5 / 2)
        assert llm.embed_requests[0]["model"] == "nomic-test"
        assert h["ok"] is True and h["embedder"]["id"] == "ollama:nomic-test", h
        assert {"embedder": "ollama:nomic-test", "dim": 64, "vectors": 5} in h["embedders"], h
        body, _ = search(s2, "vendors")
        assert "vector" not in body and body["results"][0]["vector_score"] > 0, body
        stop_clean(s2)


def test_config_validate_checks_the_embedder(tmp_path, make_server):
    with ScriptedLLM() as llm:
        cases = [
            (config(llm, model=None), "memory.embedding.model: required when memory.embedder "
                                      "is openai"),
            (config(llm, provider="nope"), "memory.embedding.provider: no provider \"nope\" in "
                                           "llm.providers (they are: openai, local)"),
            (config(llm, embedder="ollama", provider="openai"),
             "memory.embedding.provider: \"openai\" is a provider of type openai; "
             "memory.embedder ollama needs one of type ollama"),
        ]
        for i, (text, error) in enumerate(cases):
            path = tmp_path / f"bad{i}.yaml"
            path.write_text(text)
            r = run_cli("config", "validate", str(path))
            assert r.returncode == 1, r.stdout + r.stderr
            assert f"error: {error}" in r.stdout, r.stdout
        good = tmp_path / "good.yaml"
        good.write_text(config(llm, embedder="ollama", provider="local", model="nomic"))
        r = run_cli("config", "validate", str(good))
        assert r.returncode == 0 and "warning" not in r.stdout, r.stdout + r.stderr
        # the server refuses to start with the same mistake
        s = make_server(config=cases[0][0], start=False)
        s.start(wait=False)
        assert s.proc.wait(timeout=30) == 2
        s._stderr.close()
        assert "memory.embedding.model: required" in s.stderr(), s.stderr()
