"""Fault drills for the memory store, run as the troubleshooting guide runs
them ("Embedded SQLite Database Corruption", Fix 1 to Fix 4, and the
memory_corruption alert response) against real damage done to real files:
a WAL deleted after kill -9, a database file of garbage, pages overwritten in
the middle, a tampered backup, kill -9 in the middle of a 10,000-entity
import (of the server and of the offline CLI), a read-only data dir, a full
disk, and scheduled backups with retention.

The expectations are the operator's: an acknowledged write survives unless
the file that held it is destroyed, a repair says what it did, a refused
operation changes nothing, and afterwards `caxton memory integrity-check
--full` exits 0.
"""
import copy
import hashlib
import json
import os
import pathlib
import random
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import tempfile
import time
import urllib.parse

import pytest

from conftest import BIN, Server, base_env

UNPRIVILEGED_UID = 65534  # nobody
EXPORT_FORMAT = "caxton-memory-export"
STAMP = "2026-01-02T03:04:05.000Z"


# ---- helpers -------------------------------------------------------------------------------------


def out(r):
    return f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"


def poll(fn, timeout, what, interval=0.02):
    """Calls fn until it returns something truthy; bounded in time and count."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        value = fn()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def cli_json(s, *args, timeout=120, env=None):
    """`caxton ARGS --json` for this server's data dir: (result, parsed stdout)."""
    r = s.cli(*args, "--json", timeout=timeout, env=env)
    try:
        doc = json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"not JSON: {out(r)}")
    return r, doc


def entity_path(scope, name, history=True):
    path = (f"/api/v1/memory/entities/{urllib.parse.quote(scope, safe=':')}/"
            f"{urllib.parse.quote(name, safe='')}")
    return path + ("?history=1" if history else "")


def store(s, scope, name, observations, type_="note", **extra):
    body = {"scope": scope, "name": name, "type": type_, "observations": list(observations)}
    body.update(extra)
    r = s.admin("POST", "/api/v1/memory/entities", body)
    assert r.status in (200, 201), r
    return r.json()


def view(s, scope, name):
    """The entity with its history, or None when it does not exist."""
    r = s.admin("GET", entity_path(scope, name))
    if r.status == 404:
        return None
    assert r.status == 200, r
    return r.json()


def count_api(s):
    """Entities, as the API's usage operation counts them."""
    r = s.admin("POST", "/api/v1/memory/usage", {})
    assert r.status == 200, r
    doc = r.json()
    assert doc["ok"] is True, doc
    return doc["totals"]["entities"]


def count_cli(s):
    """Entities, as `caxton memory usage` counts them (the server, or the files offline)."""
    r, doc = cli_json(s, "memory", "usage")
    assert r.returncode == 0, out(r)
    return doc["totals"]["entities"]


def search_names(s, text, mode=None):
    q = urllib.parse.urlencode({"q": text, "limit": 20, **({"mode": mode} if mode else {})})
    r = s.admin("GET", f"/api/v1/memory/search?{q}")
    assert r.status == 200, r
    return [x["name"] for x in r.json()["results"]]


def integrity_ok(s):
    r = s.cli("memory", "integrity-check", "--full", timeout=120)
    assert r.returncode == 0, out(r)
    return r


def service_stop(s):
    """`caxton service stop`, as the guide runs it; the server must exit 0."""
    r = s.cli("service", "stop", timeout=60)
    assert r.returncode == 0, out(r)
    try:
        code = s.proc.wait(timeout=30)
    finally:
        s._stderr.close()
    assert code == 0, f"server exited with {code}: {s.stderr()}"
    return r


def kill9(s):
    s.proc.kill()
    s.proc.wait(timeout=10)
    s._stderr.close()


def db_file(s):
    return os.path.join(s.data_dir, "data", "memory.db")


def backups_dir(s):
    return os.path.join(s.data_dir, "backups")


def size_or(path, missing=-1):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return missing


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def count_in_file(path):
    """Entities in a database file, read without creating -wal/-shm beside it."""
    uri = "file:" + urllib.parse.quote(path) + "?immutable=1"
    con = sqlite3.connect(uri, uri=True)
    try:
        return con.execute("SELECT count(*) FROM entities").fetchone()[0]
    finally:
        con.close()


def garbage(n, seed):
    return random.Random(seed).randbytes(n)


def table_leaf_pages(path, table, limit=100000):
    """The leaf pages of a table's b-tree in key order: [(page number, cells)].
    Read from the file itself (the server is stopped, the WAL checkpointed)."""
    uri = "file:" + urllib.parse.quote(path) + "?immutable=1"
    con = sqlite3.connect(uri, uri=True)
    try:
        root = con.execute("SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?",
                           (table,)).fetchone()[0]
    finally:
        con.close()
    with open(path, "rb") as f:
        data = f.read()
    page_size = struct.unpack(">H", data[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    leaves, stack, seen = [], [root], set()
    for _ in range(limit):
        if not stack:
            break
        page = stack.pop()
        if page in seen or page < 1 or page * page_size > len(data):
            continue
        seen.add(page)
        base = (page - 1) * page_size
        head = base + (100 if page == 1 else 0)
        kind = data[head]
        cells = struct.unpack(">H", data[head + 3:head + 5])[0]
        if kind == 0x0D:  # table leaf
            leaves.append((page, cells))
            continue
        assert kind == 0x05, f"page {page} of {table} is not a table b-tree page ({kind:#x})"
        children = []
        for i in range(cells):
            cell = struct.unpack(">H", data[head + 12 + 2 * i:head + 14 + 2 * i])[0]
            children.append(struct.unpack(">I", data[base + cell:base + cell + 4])[0])
        children.append(struct.unpack(">I", data[head + 8:head + 12])[0])
        stack.extend(reversed(children))
    return leaves, page_size


def overwrite_pages(path, pages, page_size, seed):
    with open(path, "r+b") as f:
        for i, page in enumerate(pages):
            f.seek((page - 1) * page_size)
            f.write(garbage(page_size, seed + i))
        f.flush()
        os.fsync(f.fileno())


def bulk_entities(n, scope, prefix, template=None):
    """n entities in the export format (the fields `caxton memory export` writes)."""
    base = template or {
        "scope": scope, "name": "", "type": "fact", "confidence": 0.5, "metadata": {},
        "created_at": STAMP, "updated_at": STAMP, "version": 1, "created_by": "drill",
        "observations": [], "history": [{"version": 1, "type": "fact", "confidence": 0.5,
                                         "metadata": {}, "changed_at": STAMP,
                                         "changed_by": "drill"}],
    }
    at = (base.get("observations") or [{"at": STAMP}])[0]["at"]
    items = []
    for i in range(n):
        e = copy.deepcopy(base)
        e["scope"] = scope
        e["name"] = f"{prefix}-{i:05d}"
        e["metadata"] = {"n": i}
        e["observations"] = [{"text": f"{prefix} fact number {i} about item {i % 97}", "at": at}]
        for h in e.get("history", []):
            h["metadata"] = {"n": i}
        items.append(e)
    return items


def export_doc(entities, relations=(), overrides=()):
    return {
        "format": EXPORT_FORMAT, "version": 1, "exported_at": STAMP, "schema_version": 1,
        "entities": list(entities), "relations": list(relations),
        "scope_overrides": list(overrides),
        "counts": {"entities": len(entities), "relations": len(relations),
                   "observations": sum(len(e.get("observations", [])) for e in entities)},
    }


def write_json(path, doc):
    with open(path, "w") as f:
        json.dump(doc, f)
    return str(path)


def seed_entities(s, prefix, n, scope="global"):
    """n entities stored through the API; returns their views."""
    for i in range(n):
        store(s, scope, f"{prefix}-{i}", [f"{prefix} observation {i}", f"{prefix} detail {i}"],
              confidence=0.25 + i / (4 * n), metadata={"drill": prefix, "i": i})
    return {f"{prefix}-{i}": view(s, scope, f"{prefix}-{i}") for i in range(n)}


# ---- Fix 1: recover --from-wal --backup-first on a stopped server ------------------------------


def recover_offline(s):
    """The guide's Fix 1 step on a stopped server: works on the files and says so."""
    r, doc = cli_json(s, "memory", "recover", "--from-wal", "--backup-first")
    assert "server not running; working on the files" in r.stderr, out(r)
    return r, doc


def test_fix1_deleted_wal_after_kill9(make_server):
    """kill -9, then the WAL is deleted. Writes that were checkpointed into
    memory.db before (optimize checkpoints) survive; a write acknowledged
    after the checkpoint lived only in the deleted WAL, so it is lost: the
    file that held it is gone, and nothing can bring it back."""
    s = make_server()
    kept = seed_entities(s, "kept", 4)
    r, doc = cli_json(s, "memory", "optimize", "--indexes")
    assert r.returncode == 0 and doc["ok"], out(r)
    r = s.cli("memory", "backup")
    assert r.returncode == 0, out(r)
    seed_entities(s, "walonly", 2)
    wal = db_file(s) + "-wal"
    assert size_or(wal) > 0, "the late writes should sit in the WAL"
    kill9(s)
    os.unlink(wal)
    r = s.cli("service", "stop")
    assert r.returncode == 0, out(r)  # nothing runs: it says so and tidies the pid file

    r, doc = recover_offline(s)
    assert r.returncode == 0 and doc["ok"] is True, out(r)
    assert doc["method"] == "wal-checkpoint", doc
    assert "checkpoint" in doc["message"], doc
    copied = [os.path.basename(f["file"]) for f in doc["damaged_copy"]["files"]]
    assert "memory.db" in copied, doc
    assert os.path.isdir(doc["damaged_copy"]["dir"]), doc

    s.start()
    for name, before in kept.items():
        assert view(s, "global", name) == before, name
    for i in range(2):
        assert view(s, "global", f"walonly-{i}") is None, "a write only in the deleted WAL"
    assert count_api(s) == len(kept)
    integrity_ok(s)
    store(s, "global", "after-recovery", ["writes work again"])
    assert count_api(s) == len(kept) + 1


def test_fix1_database_of_garbage_restores_latest_backup(make_server):
    """memory.db overwritten with random bytes: health-check says it is not a
    database; nothing can be salvaged, so recover restores the latest backup
    and says so, keeping the damaged bytes aside."""
    s = make_server()
    kept = seed_entities(s, "kept", 3)
    r, doc = cli_json(s, "memory", "backup")
    assert r.returncode == 0 and doc["ok"], out(r)
    backup = doc["path"]
    service_stop(s)
    path = db_file(s)
    size = max(os.path.getsize(path), 16384)
    with open(path, "wb") as f:
        f.write(garbage(size, 7))
    bad_sha = sha256_of(path)

    r, doc = cli_json(s, "memory", "health-check")
    assert r.returncode == 1 and doc["ok"] is False, out(r)
    assert any("not a database" in p for p in doc["problems"]), doc

    r, doc = recover_offline(s)
    assert r.returncode == 0 and doc["ok"] is True, out(r)
    assert doc["method"] == "backup", doc
    assert doc["restored_from"] == backup, doc
    assert doc["message"] == "recovered by restoring a backup", doc
    assert any("nothing could be salvaged" in w for w in doc.get("warnings", [])), doc
    # --backup-first kept the damaged bytes for a post-mortem
    damaged = [f for f in doc["damaged_copy"]["files"] if f["file"].endswith("/memory.db")]
    assert damaged and damaged[0]["sha256"] == bad_sha, doc
    assert sha256_of(damaged[0]["file"]) == bad_sha

    r, doc = cli_json(s, "memory", "health-check")
    assert r.returncode == 0, out(r)
    s.start()
    for name, before in kept.items():
        assert view(s, "global", name) == before, name
    assert count_api(s) == len(kept)
    integrity_ok(s)


def test_fix1_pages_overwritten_salvages_most_rows(make_server, tmp_path):
    """Three leaf pages of the entities table overwritten. While rows can be
    read, recover --from-wal salvages them into a new file (it restores a
    backup only when nothing can be read): every row outside the damaged
    pages comes back, and the answer says how many were lost."""
    s = make_server()
    n = 1000
    seed = write_json(tmp_path / "seed.json",
                      export_doc(bulk_entities(n, "workspace:drill", "row")))
    r = s.cli("memory", "import", seed)
    assert r.returncode == 0, out(r)
    assert count_api(s) == n
    r = s.cli("memory", "backup")
    assert r.returncode == 0, out(r)
    service_stop(s)
    path = db_file(s)
    leaves, page_size = table_leaf_pages(path, "entities")
    assert len(leaves) >= 12, leaves
    middle = leaves[len(leaves) // 2:len(leaves) // 2 + 3]
    on_damaged = sum(cells for _, cells in middle)
    overwrite_pages(path, [p for p, _ in middle], page_size, seed=11)

    r = s.cli("memory", "integrity-check", "--full")
    assert r.returncode == 1, out(r)
    r, doc = recover_offline(s)
    assert r.returncode == 0 and doc["ok"] is True, out(r)
    assert doc["method"] == "salvage", doc
    entities = doc["tables"]["entities"]
    print(f"salvage: {on_damaged} entity rows on the damaged pages; report: entities {entities}, "
          f"rows_recovered {doc['rows_recovered']}, rows_lost {doc['rows_lost']}, "
          f"rows_skipped_invalid {doc['rows_skipped_invalid']}")
    # every row outside the overwritten pages is readable, so it must be saved
    assert n - on_damaged <= entities["recovered"] < n, (on_damaged, entities)
    assert entities["recovered"] >= 0.75 * n, entities
    assert entities["read_errors"] >= 1 and entities.get("lost_ranges"), entities
    assert doc["rows_lost"] >= n - entities["recovered"], doc
    integrity_ok(s)  # offline, on the salvaged file

    s.start()
    assert count_api(s) == entities["recovered"]
    integrity_ok(s)
    r, doc = cli_json(s, "memory", "health-check")
    assert r.returncode == 0, out(r)
    # what was saved is intact, not half-read
    dump = tmp_path / "after.json"
    r = s.cli("memory", "export", "--json", str(dump))
    assert r.returncode == 0, out(r)
    saved = json.loads(dump.read_text())["entities"]
    assert len(saved) == entities["recovered"]
    for e in saved:
        i = int(e["name"].split("-")[1])
        assert e["metadata"] == {"n": i}, e
        assert [o["text"] for o in e["observations"]] == [
            f"row fact number {i} about item {i % 97}"], e


# ---- Fix 2: restore --from-backup latest --verify-integrity on a running server ----------------


def test_fix2_restore_latest_on_running_server(make_server):
    """memory.db overwritten under a running server; the server quiesces its
    store, swaps the latest backup in and resumes. Writes made after that
    backup are gone, as a restore means."""
    s = make_server()
    kept = seed_entities(s, "kept", 3)
    r, doc = cli_json(s, "memory", "backup")
    assert r.returncode == 0 and doc["ok"], out(r)
    backup = doc["path"]
    seed_entities(s, "later", 2)  # after the backup: a restore takes them back
    r, doc = cli_json(s, "memory", "optimize", "--indexes")  # everything into memory.db
    assert r.returncode == 0 and doc["ok"], out(r)
    path = db_file(s)
    with open(path, "r+b") as f:
        f.write(garbage(os.path.getsize(path), 5))
    r = s.cli("memory", "health-check")
    assert r.returncode == 1, out(r)

    r, doc = cli_json(s, "memory", "restore", "--from-backup", "latest", "--verify-integrity")
    assert r.returncode == 0 and doc["ok"] is True, out(r)
    assert "working on the files" not in r.stderr, out(r)  # the server did it
    assert doc["restored_from"] == backup, doc
    assert doc["sha256"]["verified"] is True, doc
    assert doc["verified_after"] is True, doc
    assert os.path.isdir(doc["previous_files"]["dir"]), doc
    assert s.proc.poll() is None
    for name, before in kept.items():
        assert view(s, "global", name) == before, name
    assert view(s, "global", "later-0") is None
    assert count_api(s) == len(kept)
    integrity_ok(s)
    r = s.cli("memory", "health-check")
    assert r.returncode == 0, out(r)
    store(s, "global", "after-restore", ["writes work again"])
    assert "after-restore" in search_names(s, "writes work again")


@pytest.mark.parametrize("tamper", ["backup-bytes", "checksum-file"])
def test_fix2_restore_refuses_a_backup_whose_sha256_does_not_match(make_server, tamper):
    """A backup changed after it was written (or a .sha256 that does not
    match it) is refused before anything is touched."""
    s = make_server()
    seed_entities(s, "kept", 3)
    r, doc = cli_json(s, "memory", "backup")
    assert r.returncode == 0 and doc["ok"], out(r)
    backup = doc["path"]
    later = seed_entities(s, "later", 2)
    if tamper == "backup-bytes":
        with open(backup, "r+b") as f:
            f.seek(os.path.getsize(backup) // 2)
            f.write(garbage(64, 3))
    else:
        with open(backup + ".sha256", "w") as f:
            f.write("0" * 64 + "  " + os.path.basename(backup) + "\n")
    listing = sorted(os.listdir(backups_dir(s)))
    before = {name: view(s, "global", name) for name in later}
    total = count_api(s)

    r, doc = cli_json(s, "memory", "restore", "--from-backup", "latest", "--verify-integrity")
    assert r.returncode == 1 and doc["ok"] is False, out(r)
    assert any("refusing to restore" in p and "sha256" in p for p in doc["problems"]), doc
    # nothing changed: the data, the files beside it, the backups
    assert s.proc.poll() is None
    assert {name: view(s, "global", name) for name in later} == before
    assert count_api(s) == total and count_cli(s) == total
    assert sorted(os.listdir(backups_dir(s))) == listing
    store(s, "global", "after-refusal", ["the store still takes writes"])


# ---- Fix 3: export, reinitialize --empty, import --validate --------------------------------------


def rich_memory(s):
    """Entities in three scopes with history, metadata, a removed observation and relations."""
    store(s, "global", "caxton", ["an orchestration server", "written in C"], type_="project",
          confidence=0.9, metadata={"lang": "c", "tags": ["server"]})
    store(s, "global", "caxton", ["uses SQLite for memory"], confidence=0.95)
    store(s, "global", "caxton", [], remove_observations=["written in C"])
    store(s, "workspace:ops", "runbook", ["restore the latest backup first"], type_="doc")
    store(s, "agent:bob", "tea", ["bob likes green tea"], type_="preference", confidence=0.4)
    for rel in ({"scope": "global", "from": "caxton", "to": "caxton", "type": "self",
                 "strength": 0.5},
                {"scope": "workspace:ops", "from": "runbook", "to": "caxton", "to_scope": "global",
                 "type": "documents"}):
        r = s.admin("POST", "/api/v1/memory/relations", rel)
        assert r.status == 201, r
    return [("global", "caxton"), ("workspace:ops", "runbook"), ("agent:bob", "tea")]


def graph(s, scope, name):
    r = s.admin("GET", f"/api/v1/memory/graph/{urllib.parse.quote(scope, safe=':')}/{name}"
                       "?depth=2")
    assert r.status == 200, r
    doc = r.json()
    return sorted(json.dumps(e, sort_keys=True) for e in doc["edges"])


def test_fix3_export_reinitialize_import(make_server, tmp_path):
    """The guide's Fix 3 on a running server: what comes back is what was
    exported, history, removed observations and relations included (import
    keeps the exported times and versions, so nothing differs)."""
    s = make_server()
    keys = rich_memory(s)
    views = {k: view(s, *k) for k in keys}
    assert views[("global", "caxton")]["version"] >= 2
    edges = {k: graph(s, *k) for k in keys}
    total = count_api(s)
    export = tmp_path / "emergency-export.json"
    r = s.cli("memory", "export", "--json", str(export))  # the guide's spelling
    assert r.returncode == 0, out(r)
    exported = json.loads(export.read_text())
    assert exported["format"] == EXPORT_FORMAT and len(exported["entities"]) == total

    # Not on a terminal and no --yes: refused, nothing changes.
    r = s.cli("memory", "reinitialize", "--empty", input="")
    assert r.returncode == 2, out(r)
    assert "--yes" in r.stderr, out(r)
    assert count_api(s) == total

    r, doc = cli_json(s, "memory", "reinitialize", "--empty", "--yes")
    assert r.returncode == 0 and doc["ok"] is True, out(r)
    kept = doc["backup"]
    assert isinstance(kept, str) and os.path.isfile(kept), doc
    with open(kept + ".sha256") as f:
        assert f.read().split()[0] == sha256_of(kept)
    assert count_in_file(kept) == total
    assert count_api(s) == 0
    assert search_names(s, "orchestration server") == []

    r, doc = cli_json(s, "memory", "import", str(export), "--validate")
    assert r.returncode == 0 and doc["ok"] is True, out(r)
    assert doc["written"] is True and doc["counts"]["created"] == total, doc
    assert doc["counts"]["relations_created"] == len(exported["relations"]), doc

    assert count_api(s) == total and count_cli(s) == total
    for k in keys:
        assert view(s, *k) == views[k], k
        assert graph(s, *k) == edges[k], k
    again = tmp_path / "again.json"
    r = s.cli("memory", "export", "--json", str(again))
    assert r.returncode == 0, out(r)
    second = json.loads(again.read_text())
    for doc_ in (exported, second):
        doc_.pop("exported_at")
    assert second == exported
    assert "caxton" in search_names(s, "orchestration server")
    integrity_ok(s)


# ---- Fix 4: reindex --full --embedded --optimize ---------------------------------------------


def test_fix4_reindex_full_optimize(make_server):
    """The guide's Fix 4 on a running server: indexes rebuilt, nothing lost,
    hybrid, text and vector search still find the right entities."""
    s = make_server()
    rich_memory(s)
    seed_entities(s, "filler", 20, scope="workspace:ops")
    total = count_api(s)
    r, doc = cli_json(s, "memory", "reindex", "--full", "--embedded", "--optimize")
    assert r.returncode == 0 and doc["ok"] is True, out(r)
    assert doc["sql_indexes"] == "rebuilt", doc
    assert doc["optimize"]["ok"] is True, doc
    assert count_api(s) == total
    assert search_names(s, "green tea")[0] == "tea"
    assert search_names(s, "green tea", mode="text")[0] == "tea"
    assert "tea" in search_names(s, "bob likes green tea", mode="vector")[:3]
    assert search_names(s, "restore latest backup")[0] == "runbook"
    integrity_ok(s)
    r = s.cli("memory", "health-check")
    assert r.returncode == 0, out(r)


# ---- import of truncated and forged files ----------------------------------------------------


@pytest.fixture(scope="module")
def import_server(tmp_path_factory):
    """One server for the forged imports: each must leave it exactly as it was."""
    s = Server(tmp_path_factory.mktemp("forged"))
    s.start()
    seed_entities(s, "resident", 3)
    yield s
    code = s.stop()
    assert code == 0, s.stderr()
    s.assert_clean()


def valid_entity(name):
    return {"scope": "global", "name": name, "type": "fact", "confidence": 0.5,
            "metadata": {}, "created_at": STAMP, "updated_at": STAMP, "version": 1,
            "created_by": "drill", "observations": [{"text": f"about {name}", "at": STAMP}],
            "history": []}


def forged(case):
    """(document text, problem expected in the answer). Each file also holds
    two valid entities: nothing of it may be written."""
    ents = [valid_entity(f"{case}-ok-1"), valid_entity(f"{case}-ok-2")]
    bad = valid_entity(f"{case}-bad")
    if case == "truncated":
        text = json.dumps(export_doc(ents + bulk_entities(50, "global", "trunc")), indent=1)
        return text[:len(text) * 2 // 3], "is not valid JSON"
    if case == "bad-format":
        doc = export_doc(ents)
        doc["format"] = "some-other-export"
        return json.dumps(doc), "not a caxton memory export"
    if case == "bad-version":
        doc = export_doc(ents)
        doc["version"] = 2
        return json.dumps(doc), "version: expected 1"
    if case == "confidence-2":
        bad["confidence"] = 2
        return json.dumps(export_doc(ents + [bad])), "confidence 2 is out of range"
    if case == "planet-scope":
        bad["scope"] = "planet:x"
        return json.dumps(export_doc(ents + [bad])), '"planet:x" is not agent:NAME'
    if case == "unknown-relation-end":
        rel = {"from_scope": "global", "from": ents[0]["name"], "to_scope": "global",
               "to": "nobody-knows-me", "type": "knows", "strength": 1.0,
               "created_at": STAMP, "created_by": "drill"}
        return (json.dumps(export_doc(ents, relations=[rel])),
                "is neither in the file nor in the database")
    if case == "duplicate-json-keys":
        text = json.dumps(export_doc(ents))
        return text.replace('"version": 1,', '"version": 1, "version": 1,', 1), "duplicate"
    if case == "duplicate-entity":
        return json.dumps(export_doc(ents + [copy.deepcopy(ents[0])])), "appears again"
    if case == "10kb-name":
        bad["name"] = "n" * 10240
        return json.dumps(export_doc(ents + [bad])), "name is 10240 bytes"
    if case == "name-with-newline":
        bad["name"] = "two\nlines"
        return json.dumps(export_doc(ents + [bad])), "name"
    if case == "observation-with-control-character":
        bad["observations"][0]["text"] = "bell\u0007here"
        return json.dumps(export_doc(ents + [bad])), "text"
    if case == "type-the-api-refuses":
        bad["type"] = "a/b"
        return json.dumps(export_doc(ents + [bad])), "type"
    raise AssertionError(case)


FORGED = ["truncated", "bad-format", "bad-version", "confidence-2", "planet-scope",
          "unknown-relation-end", "duplicate-json-keys", "duplicate-entity", "10kb-name",
          "name-with-newline", "observation-with-control-character", "type-the-api-refuses"]


@pytest.mark.parametrize("case", FORGED)
def test_import_of_a_forged_file_writes_nothing(import_server, tmp_path, case):
    """Exit 1, the problem listed, and not one entity written: the counts of
    the API and of `caxton memory usage` do not move. The import must refuse
    what the store's own API refuses (names and observations with control
    characters, types outside its alphabet)."""
    s = import_server
    text, problem = forged(case)
    path = tmp_path / f"{case}.json"
    path.write_text(text)
    total_api, total_cli = count_api(s), count_cli(s)
    names = [f"{case}-ok-1", f"{case}-ok-2", f"{case}-bad", "two\nlines", "trunc-00000"]
    r, doc = cli_json(s, "memory", "import", str(path), "--validate")
    assert r.returncode == 1, out(r)
    assert doc["ok"] is False and doc["written"] is False, doc
    assert doc["problems"] and any(problem in p for p in doc["problems"]), doc
    assert count_api(s) == total_api and count_cli(s) == total_cli
    for name in names:
        assert view(s, "global", name) is None, name
    if case == "name-with-newline":  # the API's own rule for names
        r = s.admin("POST", "/api/v1/memory/entities",
                    {"scope": "global", "name": "two\nlines", "type": "fact",
                     "observations": ["x"]})
        assert r.status == 422 or r.status == 400, r


# ---- kill -9 in the middle of a 10,000-entity import -----------------------------------------


BIG = 10000


def big_export(s, tmp_path):
    """10,000 entities shaped after what this server exports for one of its own."""
    sample = tmp_path / "sample.json"
    r = s.cli("memory", "export", "--json", str(sample))
    assert r.returncode == 0, out(r)
    template = json.loads(sample.read_text())["entities"][0]
    return write_json(tmp_path / "big.json",
                      export_doc(bulk_entities(BIG, "workspace:bulk", "bulk", template)))


def import_popen(s, path):
    return subprocess.Popen([BIN, "memory", "import", path, "--merge", "skip"],
                            env=base_env(CAXTON_DATA_DIR=s.data_dir), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_wal_growth(proc, wal, above, timeout=60):
    """Until the import has written past `above` bytes of WAL (it is inside its
    transaction) or it finished; returns the WAL size seen."""
    def progressed():
        size = size_or(wal)
        return size > above or proc.poll() is not None
    poll(progressed, timeout, "the import to write into the WAL", interval=0.002)
    return size_or(wal)


def assert_all_or_none(s, before):
    total = count_api(s)
    assert total in (before, before + BIG), f"{total} entities: neither {before} nor {before + BIG}"
    first, last = view(s, "workspace:bulk", "bulk-00000"), view(s, "workspace:bulk", "bulk-09999")
    if total == before:
        assert first is None and last is None
    else:
        assert first and last and last["observations"][0]["text"].startswith("bulk fact")
    return total


def test_kill9_server_during_a_10000_entity_import(make_server, tmp_path):
    """The import is one transaction: killed once it has written into the
    WAL (or after it finished, if it was faster), the restarted server holds
    all 10,000 entities or none of them, and the database is sound."""
    s = make_server()
    seed_entities(s, "resident", 5)
    before = count_api(s)
    big = big_export(s, tmp_path)
    wal = db_file(s) + "-wal"
    start_wal = max(size_or(wal, 0), 0)
    proc = import_popen(s, big)
    try:
        seen = wait_wal_growth(proc, wal, start_wal + 512 * 1024)
        finished_first = proc.poll() is not None
        kill9(s)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    print(f"kill -9 with the WAL at {seen} bytes; import finished first: {finished_first}")
    if finished_first:
        assert proc.returncode == 0, (stdout, stderr)
    else:
        # the server died under the request: the CLI says so, and does not go on
        # to repeat the operation on the files by itself
        assert proc.returncode != 0, (stdout, stderr)
        assert "cannot reach the server" in stderr, stderr
        assert "working on the files" not in stderr, stderr
    s.start()
    total = assert_all_or_none(s, before)
    if finished_first:
        assert total == before + BIG
    integrity_ok(s)


def test_kill9_offline_import_cli(make_server, tmp_path):
    """The same on a stopped server: the CLI importing into the files is
    killed; the next command and the restarted server find all or none."""
    s = make_server()
    seed_entities(s, "resident", 5)
    big = big_export(s, tmp_path)
    service_stop(s)
    before = count_cli(s)
    wal = db_file(s) + "-wal"
    assert size_or(wal) <= 0  # a clean stop leaves no WAL
    proc = import_popen(s, big)
    try:
        seen = wait_wal_growth(proc, wal, 256 * 1024)
        finished_first = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    print(f"kill -9 of the CLI with the WAL at {seen} bytes; import finished first: "
          f"{finished_first}")
    offline = count_cli(s)  # the files, as the next offline command finds them
    assert offline in (before, before + BIG), offline
    if finished_first and proc.returncode == 0:
        assert offline == before + BIG
    r = s.cli("memory", "integrity-check", "--full", timeout=120)
    assert r.returncode == 0, out(r)
    s.start()
    assert assert_all_or_none(s, before) == offline
    integrity_ok(s)


# ---- a read-only data dir --------------------------------------------------------------------


class UnprivilegedServer(Server):
    """A server run as another (unprivileged) user from a copy of the binary."""

    def __init__(self, path, binary, uid):
        super().__init__(path)
        self.binary = binary
        self.uid = uid

    def command(self):
        return [self.binary, *super().command()[1:]]

    def start(self, wait=True):
        url_file = os.path.join(self.data_dir, "run", "api.url")
        if os.path.exists(url_file):
            os.unlink(url_file)
        user = {} if self.uid is None else {"user": self.uid, "group": self.uid,
                                            "extra_groups": []}
        self._stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.command(), env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=self._stderr, stderr=self._stderr, cwd="/", **user)
        if wait:
            self.wait_ready(url_file)
        return self


def test_read_only_data_dir_refuses_writes_and_serves_reads():
    """data/ 0500 and memory.db 0400 under a running server. The files it
    holds open stay writable through their descriptors (POSIX), so the modes
    count once it opens them again: it restarts on them. Then every write
    answers a clear error naming the read-only files (not a crash, not a
    success), and reads keep working. Root ignores modes, so as root the
    server runs as nobody."""
    uid = UNPRIVILEGED_UID if os.geteuid() == 0 else None
    shared = tempfile.mkdtemp(prefix="caxton-e2e-ro-")
    s = None
    try:
        os.chmod(shared, 0o755)
        binary = os.path.join(shared, "caxton")
        shutil.copy(BIN, binary)
        os.chmod(binary, 0o755)
        if uid is not None:
            try:
                subprocess.run([binary, "--version"], user=uid, group=uid, extra_groups=[],
                               capture_output=True, timeout=30, check=True, cwd="/")
            except (OSError, subprocess.SubprocessError) as e:
                pytest.skip(f"cannot run a process as uid {uid} to make modes count: {e}")
        s = UnprivilegedServer(pathlib.Path(shared), binary, uid)
        for d in (s.data_dir, s.log_dir):
            os.mkdir(d, 0o700)
            if uid is not None:
                os.chown(d, uid, uid)
        s.start()
        kept = seed_entities(s, "kept", 3)
        data = os.path.join(s.data_dir, "data")
        os.chmod(data, 0o500)
        os.chmod(db_file(s), 0o400)
        code = s.stop()
        assert code == 0, s.stderr()
        s.start()

        r = s.admin("POST", "/api/v1/memory/entities",
                    {"scope": "global", "name": "new", "type": "note", "observations": ["x"]})
        assert 500 <= r.status < 600, r
        assert "read-only" in r.json()["error"]["message"], r
        r = s.cli("memory", "store", "--scope", "global", "--name", "new2", "--type", "note",
                  "--observation", "y")
        assert r.returncode == 1 and "read-only" in r.stderr, out(r)
        r = s.admin("POST", "/api/v1/memory/relations",
                    {"scope": "global", "from": "kept-0", "to": "kept-1", "type": "r"})
        assert 500 <= r.status < 600 and "read-only" in r.json()["error"]["message"], r
        r = s.admin("DELETE", entity_path("global", "kept-0", history=False))
        assert 500 <= r.status < 600 and "read-only" in r.json()["error"]["message"], r

        assert s.proc.poll() is None and s.get("/health").status == 200
        for name, before in kept.items():
            assert view(s, "global", name) == before, name
        assert "kept-1" in search_names(s, "kept observation 1")
        assert count_api(s) == len(kept)
        assert view(s, "global", "new") is None
        code = s.stop()
        assert code == 0, s.stderr()
        s.assert_clean()
    finally:
        if s is not None and s.proc is not None and s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(timeout=10)
        for root, dirs, _ in os.walk(shared):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o700)
        shutil.rmtree(shared, ignore_errors=True)


# ---- a full disk -----------------------------------------------------------------------------


def fill(directory, limit_bytes):
    """Writes a file until the file system refuses (ENOSPC); bounded by limit_bytes."""
    path = os.path.join(directory, "filler")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    written = 0
    try:
        for chunk in (65536, 4096, 512):
            block = b"\0" * chunk
            for _ in range(limit_bytes // chunk + 1):
                try:
                    n = os.write(fd, block)
                except OSError as e:
                    if e.errno != 28:  # ENOSPC
                        raise
                    break
                written += n
                if n < chunk:
                    break
    finally:
        os.close(fd)
    return path, written


def test_disk_full_refuses_writes_then_recovers(make_server):
    """data/ on a 2 MB tmpfs, filled up: writes answer 507 naming the full
    disk, the server keeps serving reads, and once space is freed writes
    work again."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    s = make_server(start=False)
    data = os.path.join(s.data_dir, "data")
    os.makedirs(data, mode=0o700)
    os.chmod(s.data_dir, 0o700)
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", data],
                       capture_output=True, text=True, timeout=30)
    if m.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {m.stderr.strip()}")
    code = None
    try:
        s.start()
        kept = seed_entities(s, "kept", 3)
        r, doc = cli_json(s, "memory", "optimize", "--indexes")  # an empty WAL: writes need space
        assert r.returncode == 0 and doc["ok"], out(r)
        filler, written = fill(data, 4 * 1024 * 1024)
        assert written > 0 and shutil.disk_usage(data).free < 4096, shutil.disk_usage(data)

        body = {"scope": "global", "name": "no-room", "type": "note",
                "observations": ["x" * 4000, "y" * 4000]}
        r = s.admin("POST", "/api/v1/memory/entities", body)
        assert r.status == 507, r
        assert "disk is full" in r.json()["error"]["message"], r
        r = s.cli("memory", "store", "--scope", "global", "--name", "no-room-2", "--type", "note",
                  "--observation", "z" * 4000)
        assert r.returncode == 1 and "disk is full" in r.stderr, out(r)
        assert s.proc.poll() is None
        assert s.get("/health").status in (200, 503)
        for name, before in kept.items():
            assert view(s, "global", name) == before, name
        assert "kept-2" in search_names(s, "kept observation 2")
        assert view(s, "global", "no-room") is None

        os.unlink(filler)
        r = s.admin("POST", "/api/v1/memory/entities", body)
        assert r.status == 201, r
        assert count_api(s) == len(kept) + 1
        integrity_ok(s)
    finally:
        if s.proc is not None and s.proc.poll() is None:
            code = s.stop()
        u = subprocess.run(["umount", data], capture_output=True, text=True, timeout=30)
        if u.returncode != 0:
            subprocess.run(["umount", "-l", data], capture_output=True, timeout=30)
    assert code == 0, s.stderr()


# ---- scheduled backups -----------------------------------------------------------------------


SCHEDULED = re.compile(r"^memory-\d{8}T\d{6}(\.\d{3})?Z-scheduled\.db$")


def test_scheduled_backups_keep_the_newest_with_checksums(make_server):
    """memory.backups.every 1s (the minimum) and keep 2: backups appear with a
    matching .sha256 each, and only the newest two remain."""
    s = make_server(config="memory:\n  backups:\n    every: 1s\n    keep: 2\n")
    seed_entities(s, "kept", 2)

    def written():
        return re.findall(r"scheduled memory backup written to (\S+)", s.stderr())
    poll(lambda: len(written()) >= 4, 20, "four scheduled backups", interval=0.1)
    code = s.stop()
    assert code == 0, s.stderr()
    paths = written()
    names = sorted(os.listdir(backups_dir(s)))
    dbs = [n for n in names if SCHEDULED.match(n)]
    assert len(dbs) == 2, names
    assert sorted(os.path.basename(p) for p in paths[-2:]) == dbs, (paths, names)
    assert sorted(names) == sorted(dbs + [d + ".sha256" for d in dbs]), names  # nothing else
    for name in dbs:
        path = os.path.join(backups_dir(s), name)
        with open(path + ".sha256") as f:
            digest, base = f.read().split()
        assert base == name and digest == sha256_of(path)
        assert count_in_file(path) == 2


# ---- the memory_corruption alert response ----------------------------------------------------


def test_alert_script_emergency_backup_then_recover_from_backup(make_server, tmp_path):
    """caxton service stop; caxton memory emergency-backup; caxton memory
    recover --from-backup --verify; caxton service start --verify-health."""
    s = make_server()
    n = 200
    seed = write_json(tmp_path / "seed.json",
                      export_doc(bulk_entities(n, "workspace:drill", "row")))
    r = s.cli("memory", "import", seed)
    assert r.returncode == 0, out(r)
    r, doc = cli_json(s, "memory", "backup")
    assert r.returncode == 0 and doc["ok"], out(r)
    good = doc["path"]
    sample = {name: view(s, "workspace:drill", name) for name in ("row-00000", "row-00199")}
    seed_entities(s, "later", 2)
    service_stop(s)
    path = db_file(s)
    leaves, page_size = table_leaf_pages(path, "entities")
    overwrite_pages(path, [p for p, _ in leaves[len(leaves) // 2:len(leaves) // 2 + 2]],
                    page_size, seed=23)
    damaged_sha = sha256_of(path)

    r, doc = cli_json(s, "memory", "emergency-backup")
    assert r.returncode == 0 and doc["ok"] is True, out(r)
    assert "server not running" in r.stderr, out(r)
    if doc["method"] == "online":
        emergency = doc["path"]
        assert os.path.isfile(emergency) and emergency != good
    else:
        copies = [f for f in doc["raw_copy"]["files"] if f["file"].endswith("/memory.db")]
        assert copies and copies[0]["sha256"] == damaged_sha, doc

    r, doc = cli_json(s, "memory", "recover", "--from-backup", "--verify")
    assert r.returncode == 0 and doc["ok"] is True, out(r)  # the newest GOOD backup
    assert doc["restored_from"] == good, doc
    assert doc.get("verified") is True or doc.get("verified_after") is True, doc

    san = tmp_path / "sanitizer"
    san.mkdir()
    env = base_env()
    env = {"ASAN_OPTIONS": env["ASAN_OPTIONS"] + f":log_path={san}/asan",
           "UBSAN_OPTIONS": env["UBSAN_OPTIONS"] + f":log_path={san}/ubsan"}
    r = s.cli("service", "start", "--verify-health", "--log-dir", s.log_dir, "--listen",
              "127.0.0.1:0", env=env, timeout=120)
    try:
        assert r.returncode == 0, out(r)
        with open(os.path.join(s.data_dir, "run", "api.url")) as f:
            s.url = f.read().strip()
        s.host, port = s.url.split("://", 1)[1].rsplit(":", 1)
        s.port = int(port)
        for name, before in sample.items():
            assert view(s, "workspace:drill", name) == before, name
        assert view(s, "global", "later-0") is None
        assert count_api(s) == n
        integrity_ok(s)
    finally:
        stop = s.cli("service", "stop", env=env, timeout=60)
    assert stop.returncode == 0, out(stop)
    reports = {p.name: p.read_text(errors="replace") for p in san.iterdir()}
    assert not reports, reports


def test_emergency_backups_of_a_damaged_database_keep_a_good_backup(make_server):
    """With memory.backups.keep: 2, two emergency backups taken of a damaged
    database (the alert script run twice) must not push the good backups out:
    afterwards `recover --from-backup` still has a good one to restore."""
    s = make_server(config="memory:\n  backups:\n    keep: 2\n")
    env = {"CAXTON_CONFIG": s.config_path}  # the offline CLI reads the same settings
    kept = seed_entities(s, "kept", 3)
    good = []
    for _ in range(2):
        r, doc = cli_json(s, "memory", "backup")
        assert r.returncode == 0 and doc["ok"], out(r)
        good.append(doc["path"])
    service_stop(s)
    path = db_file(s)
    leaves, page_size = table_leaf_pages(path, "entities")
    overwrite_pages(path, [leaves[0][0]], page_size, seed=31)
    r = s.cli("memory", "integrity-check", "--full", env=env)
    assert r.returncode == 1, out(r)
    for _ in range(2):
        r, doc = cli_json(s, "memory", "emergency-backup", env=env)
        assert r.returncode == 0 and doc["ok"] is True, out(r)
    survivors = [p for p in good if os.path.exists(p)]
    assert survivors, f"both good backups were deleted: {sorted(os.listdir(backups_dir(s)))}"
    r, doc = cli_json(s, "memory", "recover", "--from-backup", "--verify", env=env)
    assert r.returncode == 0 and doc["ok"] is True, out(r)
    assert doc["restored_from"] in good, doc
    s.start()
    for name, before in kept.items():
        assert view(s, "global", name) == before, name
    integrity_ok(s)
