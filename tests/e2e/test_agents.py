"""Configuration agents against a running server, as an operator meets them.

Agent files in the agents dir at start and dropped in while running; every
kind of bad definition through POST /api/v1/agents/validate and through the
dir (file:line:column, field, message and hint); REST create, update and
delete with roles; hot reload (new version, new prompt, invalid edits that
keep the last good version, the hot_reload log event, forced reloads, the
audit log); removal with queued messages; suspend, resume and scale; the
error log of one agent; capabilities and their conflicts; and the two
troubleshooting procedures of the operations guide, step by step.

The provider `openai` is a ScriptedLLM on 127.0.0.1, so the prompts the
server sends can be checked. Every test that starts a server stops it and
checks it exited 0 with no sanitizer report.
"""
import os
import re
import subprocess
import threading

import pytest

from agents_util import (agent, agent_md, agents_by_name, agents_dir, cli, create_token, grep,
                         log_lines, out, provider_config, replies, send, start_with_agents,
                         stop_clean, system_prompt, wait_for, write_file)
from conftest import Server
from llm_server import ScriptedLLM

MB = 1024 * 1024
POSITIVE = "a line or column from 1"


@pytest.fixture
def llm():
    srv = ScriptedLLM().start()
    yield srv
    srv.stop()


def failure_reason(message):
    content = message.get("content")
    return content.get("reason") if isinstance(content, dict) else None


# ---- start-up: valid agents run, an invalid file is listed as failed -------------------------


def test_start_lists_valid_and_failed_agents(make_server, llm):
    s = start_with_agents(make_server, llm, {
        "summarizer.md": agent_md("summarizer", capabilities=("summarization",)),
        "invoice-checker.md": agent_md("invoice-checker", version="1.2.0",
                                       capabilities=("invoice-validation", "po-lookup")),
        "broken.md": "this file has no frontmatter\n",
    })
    agents = agents_by_name(s)
    assert set(agents) == {"summarizer", "invoice-checker", "broken"}, agents
    for name in ("summarizer", "invoice-checker"):
        assert agents[name]["state"] == "active", agents[name]
        assert agents[name]["reload_status"] == "ok", agents[name]
    assert agents["invoice-checker"]["version"] == "1.2.0"
    assert agents["invoice-checker"]["capabilities"] == ["invoice-validation", "po-lookup"]
    broken = agents["broken"]
    assert broken["state"] == "failed" and broken["version"] is None, broken
    assert "frontmatter missing" in broken["state_reason"], broken
    assert broken["file"] == os.path.join(agents_dir(s), "broken.md")
    r = s.admin("GET", "/api/v1/agents?state=failed")
    assert [a["name"] for a in r.json()["items"]] == ["broken"], r

    r = cli(s, "agents", "list")
    assert r.returncode == 0, out(r)
    assert re.search(r"^broken\s+-\s+llm\s+failed\s", r.stdout, re.M), r.stdout
    assert re.search(r"^summarizer\s+1\.0\.0\s+llm\s+active\s", r.stdout, re.M), r.stdout
    assert re.search(r"^invoice-checker\s+1\.2\.0\s+llm\s+active\s", r.stdout, re.M), r.stdout

    r = cli(s, "agents", "status", "--error-states-only")
    assert r.returncode == 1, out(r)
    assert "broken" in r.stdout and "frontmatter missing" in r.stdout, r.stdout
    assert "summarizer" not in r.stdout and "invoice-checker" not in r.stdout, r.stdout
    assert "1 of 3 agents in an error state" in r.stdout, r.stdout

    r = cli(s, "agents", "health-summary", "--critical-only")
    assert r.returncode == 1, out(r)
    assert "status: critical" in r.stdout and "1 failed" in r.stdout, r.stdout
    assert re.search(r"^broken\s+failed\s+critical\s", r.stdout, re.M), r.stdout
    assert "summarizer" not in r.stdout, r.stdout

    viewer = create_token(s, "viewer", "dashboard")
    r = s.get("/agents/health-summary", token=viewer)
    assert r.status == 200, r
    doc = r.json()
    assert doc["status"] == "critical", doc
    assert doc["counts"]["total"] == 3 and doc["counts"]["active"] == 2, doc
    assert doc["counts"]["failed"] == 1, doc
    r = s.get("/agents/health-summary?critical_only=true", token=viewer)
    assert [a["name"] for a in r.json()["agents"]] == ["broken"], r
    assert s.get("/agents/health-summary").status == 401
    assert s.get("/api/v1/agents/health-summary").status == 401
    assert s.get("/api/v1/agents/health-summary", token=viewer).status == 200
    stop_clean(s)


# ---- every bad input, through the API and through the agents dir ------------------------------

def diag(severity, line, column, field, message, hint):
    """An expected diagnostic; line/column None: anything, POSITIVE: some real place,
    a tuple: one of these."""
    return {"severity": severity, "line": line, "column": column, "field": field,
            "message": message, "hint": hint}


def error(line, column, field, message, hint):
    return diag("error", line, column, field, message, hint)


NO_TYPES = ("---\nname: wrong-types\nversion: 1.0.0\ncapabilities: echo\ninstances: many\n"
            "llm:\n  provider: openai\n  model: m\n  temperature: 5\n---\nhi\n")

# (file name, content, valid, expected diagnostics)
BAD_INPUTS = {
    "frontmatter-missing": (
        "frontmatter-missing.md", "name: frontmatter-missing\nversion: 1.0.0\n", False,
        [error(1, 1, "", "frontmatter missing", "start the file with a line '---'")]),
    "frontmatter-unclosed": (
        "frontmatter-unclosed.md",
        "---\nname: frontmatter-unclosed\nversion: 1.0.0\ncapabilities: [echo]\nYou help.\n",
        False, [error(POSITIVE, 1, "", "frontmatter not closed", "add a line '---'")]),
    "tab-indentation": (
        "tab-indentation.md",
        "---\nname: tab-indentation\nversion: 1.0.0\ncapabilities: [echo]\nllm:\n"
        "\tprovider: openai\n---\nhi\n",
        False, [error(6, 1, "", "tab", "spaces, not tabs")]),
    "yaml-syntax": (
        "yaml-syntax.md",
        "---\nname: yaml-syntax\nversion: 1.0.0\ncapabilities: [echo\nllm:\n"
        "  provider: openai\n---\nhi\n",
        False, [error((4, 5), POSITIVE, "", "YAML syntax error", "not closed")]),
    "wrong-types": (
        "wrong-types.md", NO_TYPES, False,
        [error(4, 15, "capabilities", "expected a list", "capabilities: [echo]"),
         error(5, 12, "instances", "expected an integer from 1 to 64", "1 to 64"),
         error(9, 16, "llm.temperature", "expected a number from 0 to 2", "0 to 2")]),
    "version-not-semver": (
        "version-not-semver.md", agent_md("version-not-semver", version="1.0"), False,
        [error(3, 10, "version", "not a valid version", "did you mean `1.0.0`?")]),
    "required-missing": (
        "required-missing.md", "---\nname: required-missing\ncapabilities: [echo]\n---\nhi\n",
        False, [error(POSITIVE, POSITIVE, "version", "required field `version` is missing",
                      "version: 1.0.0")]),
    "unknown-key": (
        "unknown-key.md", agent_md("unknown-key", extra="descripton: checks invoices"), True,
        [diag("warning", 5, 1, "descripton", "unknown key", "did you mean `description`?")]),
    "name-upper-case": (
        "name-upper-case.md", agent_md("Bad_Name"), False,
        [error(2, 7, "name", "upper-case", "did you mean `bad-name`?")]),
    "name-too-short": (
        "name-too-short.md", agent_md("ab"), False,
        [error(2, 7, "name", "shorter than 3", "3 to 64 characters")]),
    "name-too-long": (
        "name-too-long.md", agent_md("a" * 65), False,
        [error(2, 7, "name", "longer than 64", "3 to 64 characters")]),
    "name-leading-digit": (
        "name-leading-digit.md", agent_md("9lives"), False,
        [error(2, 7, "name", "must start with a lower-case letter", "starting with a letter")]),
    "template-variable": (
        "template-variable.md", agent_md("template-variable", prompt="Hello {{nope}}."), False,
        [error(9, 7, "body", "unknown template variable \"nope\"", "known variables")]),
    "provider-not-configured": (
        "provider-not-configured.md",
        agent_md("provider-not-configured").replace("provider: openai", "provider: opnai"),
        False, [error(6, 13, "llm.provider", "unknown provider \"opnai\"",
                      "did you mean `openai`?")]),
    "reserved-validate": (
        "reserved-validate.md", agent_md("validate"), False,
        [error(None, None, "name", "'validate' is reserved", "choose another name")]),
    "reserved-health-summary": (
        "reserved-health-summary.md", agent_md("health-summary"), False,
        [error(None, None, "name", "'health-summary' is reserved", "choose another name")]),
}


def place_ok(expected, actual):
    if expected is None:
        return True
    if expected is POSITIVE:
        return isinstance(actual, int) and actual >= 1
    if isinstance(expected, tuple):
        return actual in expected
    return actual == expected


def find_diag(diagnostics, exp):
    """The diagnostic matching exp, or None."""
    for d in diagnostics:
        if (d.get("severity") == exp["severity"] and d.get("field") == exp["field"]
                and exp["message"] in (d.get("message") or "")
                and exp["hint"] in (d.get("hint") or "")
                and place_ok(exp["line"], d.get("line")) and place_ok(exp["column"],
                                                                       d.get("column"))):
            return d
    return None


def assert_diagnostics(diagnostics, expected):
    for exp in expected:
        assert find_diag(diagnostics, exp), (exp, diagnostics)


@pytest.fixture(scope="module")
def checker(tmp_path_factory):
    """One server for the bad-input cases; every case's file is in its agents dir at start."""
    srv = ScriptedLLM().start()
    try:
        s = Server(tmp_path_factory.mktemp("validation"), config=provider_config(srv))
        os.makedirs(agents_dir(s))
        for filename, content, valid, _ in BAD_INPUTS.values():
            if valid:  # loaded, it would make the API's check of the same text a duplicate
                content = re.sub(r"^name: (.*)$", r"name: \1-in-dir", content, count=1,
                                 flags=re.M)
            write_file(agents_dir(s), filename, content)
        s.start()
        yield s
        stop_clean(s)
    finally:
        srv.stop()


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_through_validate_endpoint(checker, case):
    filename, content, valid, expected = BAD_INPUTS[case]
    r = checker.admin("POST", "/api/v1/agents/validate", {"content": content, "file": filename})
    assert r.status == 200, r
    doc = r.json()
    assert doc["valid"] is valid, doc
    assert (doc["errors"] == 0) is valid, doc
    assert doc["errors"] == sum(d["severity"] == "error" for d in doc["diagnostics"]), doc
    for d in doc["diagnostics"]:
        assert set(d) >= {"severity", "line", "column", "field", "message", "hint"}, d
    assert_diagnostics(doc["diagnostics"], expected)


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_dropped_in_agents_dir(checker, case):
    filename, _, valid, expected = BAD_INPUTS[case]
    path = os.path.join(agents_dir(checker), filename)
    entries = [a for a in agents_by_name(checker).values() if a["file"] == path]
    assert len(entries) == 1, (path, entries)
    entry = entries[0]
    if valid:
        assert entry["state"] == "active" and entry["reload_status"] == "ok", entry
    else:
        assert entry["state"] == "failed" and entry["reload_status"] == "failed", entry
        first = next(e for e in expected if e["severity"] == "error")
        assert first["message"] in entry["state_reason"], (first, entry)
    r = checker.admin("GET", f"/api/v1/agents/{entry['name']}/reload-status")
    assert r.status == 200, r
    attempt = r.json()["attempts"][0]
    assert attempt["trigger"] == "start"
    assert attempt["result"] == ("ok" if valid else "failed"), attempt
    assert_diagnostics(attempt["diagnostics"], expected)


def test_dropped_file_diagnostics_printed_as_file_line_column(checker):
    path = os.path.join(agents_dir(checker), "tab-indentation.md")
    r = cli(checker, "agents", "reload-status", "tab-indentation")
    assert r.returncode == 1, out(r)
    assert "tab-indentation: reload status failed (state failed)" in r.stdout, r.stdout
    assert f"{path}:6:1: error: a tab is used for indentation" in r.stdout, r.stdout
    assert "  hint: YAML indentation must use spaces, not tabs" in r.stdout, r.stdout
    r = cli(checker, "agents", "status", "provider-not-configured", "--detailed")
    assert r.returncode == 1, out(r)
    path = os.path.join(agents_dir(checker), "provider-not-configured.md")
    assert (f'{path}:6:13: error: llm.provider: unknown provider "opnai"') in r.stdout, r.stdout
    assert "hint: did you mean `openai`?" in r.stdout, r.stdout


@pytest.mark.parametrize("content,message", [
    (agent_md("validate"), "'validate' is reserved"),
    (agent_md("health-summary"), "'health-summary' is reserved"),
    (agent_md("unknown-key-in-dir"), "is already used by"),
], ids=["reserved-validate", "reserved-health-summary", "duplicate"])
def test_name_refusals_point_at_the_name(checker, content, message):
    """Every problem has a place: a reserved or duplicate name is the `name:` line."""
    r = checker.admin("POST", "/api/v1/agents/validate", {"content": content, "file": "x.md"})
    assert r.status == 200 and r.json()["valid"] is False, r
    d = next((d for d in r.json()["diagnostics"]
              if d["field"] == "name" and message in d["message"]), None)
    assert d and d["severity"] == "error", r.json()
    assert (d["line"], d["column"]) == (2, 7), d


def test_duplicate_name_and_oversized_file_dropped_while_running(make_server, llm):
    s = start_with_agents(make_server, llm, {
        "a-first.md": agent_md("dup-agent", prompt="First file."),
    }, config_extra="api:\n  max_body: 16MB\n")
    directory = agents_dir(s)
    write_file(directory, "z-second.md", agent_md("dup-agent", version="9.0.0",
                                                  prompt="Second file."))
    second = wait_for(lambda: (agent(s, "z-second") or {}).get("state") == "failed"
                      and agent(s, "z-second"), "the second file refused")
    first_path = os.path.join(directory, "a-first.md")
    assert "the name 'dup-agent' is already used by" in second["state_reason"], second
    assert first_path in second["state_reason"], second
    dup = agent(s, "dup-agent")
    assert dup["state"] == "active" and dup["version"] == "1.0.0", dup
    assert dup["file"] == first_path, dup
    r = send(s, "dup-agent", "still there?")
    assert r.status == 200 and r.json()["reply"]["performative"] == "inform", r
    assert system_prompt(llm.requests[-1]) == "First file.\n", llm.requests[-1]

    # A 10 MB file: refused with a clear reason; the server and the other agent carry on.
    write_file(directory, "huge.md", b"---\nname: huge\n" + b"a" * (10 * MB))
    huge = wait_for(lambda: (agent(s, "huge") or {}).get("state") == "failed" and agent(s, "huge"),
                    "the 10 MB file refused")
    assert "larger than the limit of 1048576 bytes" in huge["state_reason"], huge
    assert s.get("/health").status == 200
    r = send(s, "dup-agent", "and now?")
    assert r.status == 200 and r.json()["reply"]["performative"] == "inform", r
    big = "---\nname: huge-api\n" + "a" * (10 * MB)
    for path in ("/api/v1/agents/validate", "/api/v1/agents"):
        r = s.admin("POST", path, {"content": big}, timeout=30)
        assert r.status == 413, r
        assert "limited to 1048576 bytes" in r.json()["error"]["message"], r
    assert not os.path.exists(os.path.join(directory, "huge-api.md"))
    assert agent(s, "huge-api") is None
    stop_clean(s)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file: chmod 000 proves nothing")
def test_unreadable_file_says_how_to_fix(make_server, llm):
    s = make_server(config=provider_config(llm), start=False)
    os.makedirs(agents_dir(s))
    path = write_file(agents_dir(s), "locked.md", agent_md("locked"))
    os.chmod(path, 0)
    s.start()
    locked = agent(s, "locked")
    assert locked["state"] == "failed", locked
    assert "permission denied" in locked["state_reason"], locked
    assert "mode 0000" in locked["state_reason"], locked
    r = s.admin("GET", "/api/v1/agents/locked/reload-status")
    hints = [d.get("hint") or "" for d in r.json()["attempts"][0]["diagnostics"]]
    assert any("chmod 644" in h for h in hints), hints
    os.chmod(path, 0o644)
    wait_for(lambda: (agent(s, "locked") or {}).get("state") == "active", "the file loaded")
    stop_clean(s)


def test_reserved_file_names_are_reachable_for_diagnosis(make_server, llm):
    s = start_with_agents(make_server, llm, {
        "validate.md": agent_md("validate"),
        "health-summary.md": agent_md("health-summary"),
        "fine.md": agent_md("fine"),
    })
    r = cli(s, "agents", "status", "--error-states-only")
    assert r.returncode == 1, out(r)
    assert "'validate' is reserved" in r.stdout, r.stdout
    assert "'health-summary' is reserved" in r.stdout, r.stdout
    r = cli(s, "agents", "status", "validate")
    assert r.returncode == 1, out(r)
    assert "'validate' is reserved" in r.stdout, r.stdout
    # The failed entry of health-summary.md must not hide behind the health summary route.
    r = cli(s, "agents", "status", "health-summary")
    assert "agent:         ? ?" not in r.stdout, r.stdout
    assert r.returncode == 1, out(r)
    stop_clean(s)


# ---- REST create, update, delete ------------------------------------------------------------


def test_rest_create_update_delete(make_server, llm):
    s = start_with_agents(make_server, llm, {})
    directory = agents_dir(s)
    content = agent_md("triage", capabilities=("ticket-triage",), prompt="Triage v1.")
    r = s.admin("POST", "/api/v1/agents", {"content": content})
    assert r.status == 201, r
    doc = r.json()
    assert doc["name"] == "triage" and doc["version"] == "1.0.0" and doc["state"] == "active"
    assert doc["definition"]["prompt"] == "Triage v1.\n", doc["definition"]
    path = os.path.join(directory, "triage.md")
    assert doc["file"] == path
    with open(path) as f:
        assert f.read() == content

    # Invalid content: 422 with the diagnostics, and nothing written or listed.
    before = sorted(os.listdir(directory))
    r = s.admin("POST", "/api/v1/agents", {"content": "---\nname: half-done\n---\n"})
    assert r.status == 422, r
    err = r.json()["error"]
    assert err["code"] == "INVALID_AGENT", err
    diags = err["details"]["diagnostics"]
    assert_diagnostics(diags, [error(None, None, "version", "required field `version`",
                                     "version: 1.0.0"),
                               error(None, None, "capabilities", "required field",
                                     "capabilities:")])
    assert sorted(os.listdir(directory)) == before
    assert agent(s, "half-done") is None
    r = s.admin("POST", "/api/v1/agents", {"text": content})
    assert r.status == 422 and r.json()["error"]["details"]["field"] == "content", r

    # Update with a new version: the detail has it and the history of versions.
    r = s.admin("PUT", "/api/v1/agents/triage",
                {"content": agent_md("triage", version="1.1.0", capabilities=("ticket-triage",),
                                     prompt="Triage v2.")})
    assert r.status == 200, r
    doc = r.json()
    assert doc["version"] == "1.1.0" and doc["definition"]["prompt"] == "Triage v2.\n", doc
    assert [v["version"] for v in doc["versions"]] == ["1.1.0", "1.0.0"], doc["versions"]
    assert doc["versions"][0]["sha256"] != doc["versions"][1]["sha256"]
    with open(path) as f:
        assert "version: 1.1.0" in f.read()
    r = send(s, "triage", "ticket 42")
    assert r.status == 200, r
    assert system_prompt(llm.requests[-1]) == "Triage v2.\n"

    # Update with another name: refused, nothing changes.
    r = s.admin("PUT", "/api/v1/agents/triage", {"content": agent_md("renamed", version="2.0.0")})
    assert r.status == 422 and r.json()["error"]["code"] == "INVALID_AGENT", r
    assert "must stay 'triage'" in r.json()["error"]["message"], r
    assert agent(s, "renamed") is None and agent(s, "triage")["version"] == "1.1.0"
    assert not os.path.exists(os.path.join(directory, "renamed.md"))
    r = s.admin("PUT", "/api/v1/agents/nobody", {"content": agent_md("nobody")})
    assert r.status == 404 and r.json()["error"]["code"] == "AGENT_NOT_FOUND", r

    # Roles: a viewer reads but changes nothing; no token is 401.
    viewer = create_token(s, "viewer", "v")
    assert s.get("/api/v1/agents/triage", token=viewer).status == 200
    for method, p, body in (("POST", "/api/v1/agents", {"content": agent_md("sneaky")}),
                            ("PUT", "/api/v1/agents/triage", {"content": content}),
                            ("DELETE", "/api/v1/agents/triage", None),
                            ("POST", "/api/v1/agents/triage/suspend", None)):
        r = s.request(method, p, body=body, token=viewer)
        assert r.status == 403 and r.json()["error"]["code"] == "FORBIDDEN", (method, p, r)
        r = s.request(method, p, body=body)
        assert r.status == 401, (method, p, r)
    assert not os.path.exists(os.path.join(directory, "sneaky.md"))
    assert agent(s, "triage")["version"] == "1.1.0"
    operator = create_token(s, "operator", "ops")
    r = s.request("POST", "/api/v1/agents/triage/suspend", token=operator)
    assert r.status == 200 and r.json()["state"] == "suspended", r

    # Delete with queued messages: the file goes, the agent goes, the queue fails.
    sent = [send(s, "triage", f"queued {i}", wait=None) for i in range(2)]
    assert all(x.status == 202 for x in sent), sent
    r = s.admin("DELETE", "/api/v1/agents/triage")
    assert r.status == 200, r
    assert r.json() == {"name": "triage", "state": "stopped", "failed_queued": 2}, r.json()
    assert not os.path.exists(path)
    assert agent(s, "triage") is None
    assert s.admin("GET", "/api/v1/agents/triage").json()["error"]["code"] == "AGENT_NOT_FOUND"
    for x in sent:
        rs = replies(s, x.json()["conversation_id"])
        assert [(m["performative"], failure_reason(m)) for m in rs] == [
            ("failure", "agent-removed")], rs
    assert s.admin("DELETE", "/api/v1/agents/triage").status == 404

    r = cli(s, "config", "audit-log", "--last-1h")
    assert r.returncode == 0, out(r)
    for action in ("agent.create", "agent.update", "agent.suspend", "agent.delete"):
        assert re.search(rf"\s{re.escape(action)}\s+triage\s", r.stdout), (action, r.stdout)
    stop_clean(s)


def test_create_existing_agent_is_a_conflict(make_server, llm, tmp_path):
    s = start_with_agents(make_server, llm, {"triage.md": agent_md("triage")})
    r = s.admin("POST", "/api/v1/agents", {"content": agent_md("triage", version="2.0.0")})
    assert r.status == 409, r
    assert r.json()["error"]["code"] == "AGENT_EXISTS", r
    assert agent(s, "triage")["version"] == "1.0.0"
    f = tmp_path / "triage.md"
    f.write_text(agent_md("triage", version="2.0.0"))
    r = cli(s, "agents", "deploy", str(f))
    assert r.returncode == 1, out(r)
    assert "caxton agents update" in r.stderr, out(r)
    r = cli(s, "agents", "update", str(f))
    assert r.returncode == 0, out(r)
    assert "updated triage version 2.0.0 (state active)" in r.stdout, r.stdout
    stop_clean(s)


def test_cli_deploy_update_remove(make_server, llm, tmp_path):
    s = start_with_agents(make_server, llm, {})
    f = tmp_path / "notes.md"
    f.write_text(agent_md("notes"))
    r = cli(s, "agents", "deploy", str(f))
    assert r.returncode == 0, out(r)
    assert "deployed notes version 1.0.0 (state active)" in r.stdout, r.stdout
    assert os.path.exists(os.path.join(agents_dir(s), "notes.md"))
    bad = tmp_path / "bad.md"
    bad.write_text(agent_md("notes", version="1.1.0").replace("provider: openai",
                                                               "provider: opnai"))
    r = cli(s, "agents", "update", str(bad))
    assert r.returncode == 1, out(r)
    assert f'{bad}:6:13: error: llm.provider: unknown provider "opnai"' in r.stderr, r.stderr
    assert "hint: did you mean `openai`?" in r.stderr, r.stderr
    assert agent(s, "notes")["version"] == "1.0.0"
    r = cli(s, "agents", "remove", "notes")
    assert r.returncode == 0, out(r)
    assert "removed notes" in r.stdout, r.stdout
    assert not os.path.exists(os.path.join(agents_dir(s), "notes.md"))
    r = cli(s, "agents", "status", "notes")
    assert r.returncode == 1 and "no agent named 'notes'" in r.stderr, out(r)
    stop_clean(s)


# ---- hot reload ----------------------------------------------------------------------------


def test_hot_reload(make_server, llm):
    s = start_with_agents(make_server, llm, {
        "hot.md": agent_md("hot", prompt="Prompt one for {{name}}."),
    })
    path = os.path.join(agents_dir(s), "hot.md")
    r = send(s, "hot", "first")
    assert r.status == 200 and r.json()["reply"]["performative"] == "inform", r
    first_conversation = r.json()["conversation_id"]
    assert system_prompt(llm.requests[-1]) == "Prompt one for hot.\n"

    # A message in flight finishes while the file changes under it: its answer is
    # held until the new version is live.
    gate = threading.Event()
    llm.script([{"gate": gate}])
    slow = send(s, "hot", "slow one", wait=None)
    assert slow.status == 202, slow
    try:
        assert llm.wait_for_requests(2, timeout=10)
        assert agent(s, "hot")["instance_states"][0]["state"] == "busy"

        # A valid edit: the new version answers the next message with the new prompt.
        write_file(agents_dir(s), "hot.md",
                   agent_md("hot", version="1.1.0", prompt="Prompt two for {{name}}."))
        wait_for(lambda: agent(s, "hot")["version"] == "1.1.0", "version 1.1.0")
        doc = agent(s, "hot")
        assert doc["instance_states"][0]["state"] == "busy", doc  # still on the old version
        assert replies(s, slow.json()["conversation_id"]) == []
    finally:
        gate.set()
    wait_for(lambda: replies(s, slow.json()["conversation_id"]), "the in-flight answer")
    rs = replies(s, slow.json()["conversation_id"])
    assert [m["performative"] for m in rs] == ["inform"], rs
    assert system_prompt(llm.requests[1]) == "Prompt one for hot.\n", llm.requests[1]
    r = send(s, "hot", "second")
    assert r.status == 200, r
    assert system_prompt(llm.requests[-1]) == "Prompt two for hot.\n"
    # The conversation started on the old version is kept.
    r = s.admin("POST", "/api/v1/messages?wait=5s",
                {"performative": "request", "receiver": "hot", "content": "follow-up",
                 "conversation_id": first_conversation}, timeout=30)
    assert r.status == 200, r
    texts = [m["content"] for m in llm.requests[-1]["messages"]]
    assert texts[0] == "Prompt two for hot.\n", texts
    assert "[request from external:api] first" in texts, texts
    assert "echo: [request from external:api] first" in texts, texts
    doc = agent(s, "hot")
    assert doc["reload_status"] == "ok" and doc["state"] == "active", doc
    assert [v["version"] for v in doc["versions"]][:2] == ["1.1.0", "1.0.0"], doc["versions"]

    # An invalid edit: the last good version keeps answering.
    write_file(agents_dir(s), "hot.md",
               agent_md("hot", version="1.2.0", capabilities=("echo",),
                        prompt="Prompt three.").replace("[echo]", "[echo"))
    wait_for(lambda: agent(s, "hot")["reload_status"] == "failed", "reload_status failed")
    doc = agent(s, "hot")
    assert doc["version"] == "1.1.0" and doc["state"] == "active", doc
    r = send(s, "hot", "third")
    assert r.status == 200 and r.json()["reply"]["performative"] == "inform", r
    assert system_prompt(llm.requests[-1]) == "Prompt two for hot.\n"
    r = cli(s, "agents", "reload-status", "hot")
    assert r.returncode == 1, out(r)
    assert "hot: reload status failed (state active)" in r.stdout, r.stdout
    assert re.search(rf"{re.escape(path)}:\d+:\d+: error: YAML syntax error", r.stdout), r.stdout
    events = [e for e in log_lines(s) if e.get("event") == "hot_reload" and e.get("agent") == "hot"]
    failed = [e for e in events if e.get("result") == "failed"]
    assert failed, events
    assert failed[-1]["level"] == "error" and failed[-1]["version_before"] == "1.1.0", failed
    assert any("YAML syntax error" in x for x in failed[-1]["errors"]), failed[-1]
    assert any("YAML syntax error" in line for line in grep(s, "hot_reload"))

    r = cli(s, "agents", "reload", "hot", "--force", "--fallback-on-error")
    assert r.returncode == 1, out(r)
    assert "reload of hot failed" in r.stdout, r.stdout
    assert "hot is running the last good version 1.1.0" in r.stdout, r.stdout
    assert re.search(rf"{re.escape(path)}:\d+:\d+: error: YAML syntax error", r.stdout), r.stdout

    # Fixing the file restores ok.
    write_file(agents_dir(s), "hot.md",
               agent_md("hot", version="1.2.0", prompt="Prompt three for {{name}}."))
    wait_for(lambda: agent(s, "hot")["version"] == "1.2.0", "version 1.2.0")
    assert agent(s, "hot")["reload_status"] == "ok"
    r = cli(s, "agents", "reload-status", "hot")
    assert r.returncode == 0, out(r)
    assert "1.1.0 → 1.2.0" in r.stdout, r.stdout
    r = send(s, "hot", "fourth")
    assert r.status == 200 and system_prompt(llm.requests[-1]) == "Prompt three for hot.\n"
    rs = s.admin("GET", "/api/v1/agents/hot/reload-status").json()
    assert [a["result"] for a in rs["attempts"][:3]] == ["ok", "failed", "failed"], rs
    assert rs["attempts"][1]["trigger"] == "api" and rs["attempts"][2]["trigger"] == "watch", rs
    assert all(a["state"] != "reloading" for a in [doc, agent(s, "hot")])

    # Deleting the file removes the agent.
    os.unlink(path)
    wait_for(lambda: agent(s, "hot") is None, "the agent removed")
    r = cli(s, "config", "audit-log", "--last-1h")
    assert r.returncode == 0, out(r)
    for action in ("agent.update", "agent.reload_failed", "agent.delete"):
        assert re.search(rf"\s{re.escape(action)}\s+hot\s", r.stdout), (action, r.stdout)
    stop_clean(s)


def test_files_renamed_in_agents_dir_keep_their_agents(make_server, llm):
    """`mv old.md new.md` in the agents dir: each agent runs on from its new file,
    whatever order the watcher reports the two names in."""
    names = [f"keeper-{i}" for i in range(6)]
    s = start_with_agents(make_server, llm, {f"{n}.md": agent_md(n) for n in names})
    directory = agents_dir(s)
    for n in names:
        os.rename(os.path.join(directory, f"{n}.md"), os.path.join(directory, f"{n}-moved.md"))

    def settled():
        agents = agents_by_name(s)
        return all(os.path.basename((agents.get(n) or {}).get("file", "")) == f"{n}-moved.md"
                   for n in names) and agents

    try:
        agents = wait_for(settled, "every agent on its new file")
    except AssertionError:
        agents = agents_by_name(s)
    summary = {k: (a["state"], os.path.basename(a["file"]), a["state_reason"])
               for k, a in agents.items()}
    assert set(agents) == set(names), summary
    assert all(a["state"] == "active" for a in agents.values()), summary
    for n in names:
        r = send(s, n, "still here?")
        assert r.status == 200 and r.json()["reply"]["performative"] == "inform", (n, r)
    stop_clean(s)


def test_file_renamed_while_suspended_keeps_name_and_queue(make_server, llm):
    """`mv mover.md moved.md` while the agent is suspended with two queued messages: the
    agent keeps its name, its state and its queue, and runs from moved.md."""
    s = start_with_agents(make_server, llm, {"mover.md": agent_md("mover")})
    directory = agents_dir(s)
    assert s.admin("POST", "/api/v1/agents/mover/suspend").status == 200
    sent = [send(s, "mover", f"queued {i}", wait=None) for i in range(2)]
    assert [x.status for x in sent] == [202, 202], sent
    os.rename(os.path.join(directory, "mover.md"), os.path.join(directory, "moved.md"))
    moved = os.path.join(directory, "moved.md")
    doc = wait_for(lambda: (a := agent(s, "mover")) and a["file"] == moved and a,
                   "the agent on its new file")
    assert doc["state"] == "suspended", doc
    assert doc["queue"]["depth"] == 2, doc
    r = s.admin("GET", "/api/v1/agents/mover/queue")
    assert r.status == 200 and r.json()["depth"] == 2, r
    assert set(agents_by_name(s)) == {"mover"}, agents_by_name(s)
    assert agent(s, "moved") is None
    assert llm.requests == []
    assert s.admin("POST", "/api/v1/agents/mover/resume").status == 200
    for x in sent:
        rs = wait_for(lambda: replies(s, x.json()["conversation_id"]), "an answer")
        assert [(m["performative"], m["sender"]) for m in rs] == [("inform", "mover")], rs
    assert len(llm.requests) == 2
    assert agent(s, "mover")["file"] == moved
    stop_clean(s)


def test_file_renamed_onto_a_failed_file_keeps_the_agent(make_server, llm):
    """target.md is invalid (a failed entry named target); `mv keeper.md target.md`: the
    agent keeper runs on from target.md under its own name, and the failed entry goes."""
    s = start_with_agents(make_server, llm, {
        "keeper.md": agent_md("keeper"),
        "target.md": "---\nname: target\n---\nno version, no capabilities\n",
    })
    directory = agents_dir(s)
    target = os.path.join(directory, "target.md")
    assert agent(s, "target")["state"] == "failed"
    assert agent(s, "keeper")["state"] == "active"
    os.rename(os.path.join(directory, "keeper.md"), target)

    def settled():
        agents = agents_by_name(s)
        keeper = agents.get("keeper") or {}
        return keeper.get("file") == target and "target" not in agents and agents
    try:
        agents = wait_for(settled, "keeper on target.md and the failed entry gone")
    except AssertionError:
        agents = agents_by_name(s)
    summary = {k: (a["state"], a["file"], a["state_reason"]) for k, a in agents.items()}
    assert set(agents) == {"keeper"}, summary
    assert agents["keeper"]["file"] == target, summary
    assert agents["keeper"]["state"] == "active", summary
    assert agent(s, "target") is None
    r = send(s, "keeper", "still here?")
    assert r.status == 200 and r.json()["reply"]["performative"] == "inform", r
    assert r.json()["reply"]["sender"] == "keeper", r
    stop_clean(s)


def test_edit_and_rename_inside_the_file(make_server, llm):
    s = start_with_agents(make_server, llm, {
        "first.md": agent_md("first"),
        "second.md": agent_md("second"),
    })
    directory = agents_dir(s)
    # Naming an agent that another file already runs: refused, the old version keeps running.
    write_file(directory, "second.md", agent_md("first", version="3.0.0"))
    wait_for(lambda: agent(s, "second")["reload_status"] == "failed", "the refused rename")
    assert agent(s, "second")["version"] == "1.0.0"
    assert agent(s, "first")["version"] == "1.0.0"
    # A new name: the old agent goes (its queue fails), the new one runs.
    assert s.admin("POST", "/api/v1/agents/first/suspend").status == 200
    queued = send(s, "first", "waiting", wait=None)
    assert queued.status == 202, queued
    write_file(directory, "first.md", agent_md("premier"))
    wait_for(lambda: agent(s, "premier"), "the renamed agent")
    assert agent(s, "first") is None
    assert agent(s, "premier")["state"] == "active"
    rs = wait_for(lambda: replies(s, queued.json()["conversation_id"]), "the failure reply")
    assert rs[0]["performative"] == "failure" and failure_reason(rs[0]) == "agent-renamed", rs
    # A scale lasts until the file changes.
    r = s.admin("POST", "/api/v1/agents/premier/scale", {"instances": 3})
    assert r.status == 200 and r.json()["instances"] == 3, r
    write_file(directory, "first.md", agent_md("premier", version="1.0.1"))
    wait_for(lambda: agent(s, "premier")["version"] == "1.0.1", "version 1.0.1")
    assert agent(s, "premier")["instances"] == 1
    stop_clean(s)


def test_reload_on_demand_when_watching_is_off(make_server, llm):
    s = start_with_agents(make_server, llm, {"manual.md": agent_md("manual")},
                          config_extra="agents:\n  hot_reload: false\n")
    write_file(agents_dir(s), "manual.md", agent_md("manual", version="1.1.0"))
    r = cli(s, "agents", "reload", "manual")
    assert r.returncode == 0, out(r)
    assert "reloaded manual: version 1.0.0 → 1.1.0" in r.stdout, r.stdout
    assert agent(s, "manual")["version"] == "1.1.0"
    r = cli(s, "agents", "reload", "manual")
    assert r.returncode == 0 and "manual is unchanged (version 1.1.0)" in r.stdout, out(r)
    r = cli(s, "agents", "reload", "manul")
    assert r.returncode == 1 and "did you mean 'manual'?" in r.stderr, out(r)
    # Every attempt is in the history, the one that found nothing to change too.
    rs = s.admin("GET", "/api/v1/agents/manual/reload-status").json()
    assert [(a["trigger"], a["result"]) for a in rs["attempts"]] == [
        ("api", "unchanged"), ("api", "ok"), ("start", "ok")], rs
    stop_clean(s)


def test_file_deleted_with_queued_messages(make_server, llm):
    s = start_with_agents(make_server, llm, {
        "queued.md": agent_md("queued"),
        "other.md": agent_md("other"),
    })
    r = cli(s, "agents", "suspend", "queued")
    assert r.returncode == 0 and "suspended queued" in r.stdout, out(r)
    sent = [send(s, "queued", f"message {i}", wait=None) for i in range(3)]
    assert [x.status for x in sent] == [202, 202, 202], sent
    assert s.admin("GET", "/api/v1/agents/queued/queue").json()["depth"] == 3
    os.unlink(os.path.join(agents_dir(s), "queued.md"))
    wait_for(lambda: agent(s, "queued") is None, "the agent removed")
    for x in sent:
        m = x.json()
        rs = wait_for(lambda: replies(s, m["conversation_id"]), "a failure reply")
        assert len(rs) == 1, rs
        assert rs[0]["performative"] == "failure" and rs[0]["sender"] == "queued", rs
        assert failure_reason(rs[0]) == "agent-removed", rs
        assert rs[0]["in_reply_to"] == m["message_id"], rs
    r = s.admin("GET", "/api/v1/dead-letters?agent=queued")
    assert r.status == 200, r
    dead = r.json()["items"]
    assert sorted(d["message_id"] for d in dead) == sorted(x.json()["message_id"] for x in sent)
    assert all(d["reason"] == "agent-removed" for d in dead), dead
    removed = [e for e in log_lines(s) if e.get("event") == "agent_removed"]
    assert removed and removed[-1]["agent"] == "queued" and removed[-1]["failed_queued"] == 3
    r = send(s, "other", "unaffected")
    assert r.status == 200 and r.json()["reply"]["performative"] == "inform", r
    stop_clean(s)


# ---- suspend, resume, scale ----------------------------------------------------------------


def test_suspend_resume_and_scale(make_server, llm):
    s = start_with_agents(make_server, llm, {
        "worker.md": agent_md("worker"),
        "broken.md": "---\nname: broken\n---\n",
    })
    r = cli(s, "agents", "suspend", "worker")
    assert r.returncode == 0, out(r)
    sent = [send(s, "worker", f"job {i}", wait=None) for i in range(2)]
    assert [x.status for x in sent] == [202, 202], sent
    r = cli(s, "conversations", "queue-status", "worker")
    assert r.returncode == 0, out(r)
    assert "worker: 2 of 1000 queued, 0 in flight" in r.stdout, r.stdout
    r = cli(s, "agents", "health-summary")
    assert r.returncode == 1, out(r)
    assert "suspended with 2 queued" in r.stdout, r.stdout
    r = cli(s, "agents", "status", "worker")
    assert r.returncode == 1 and "suspended with 2 messages queued" in r.stdout, out(r)
    assert llm.requests == []

    r = cli(s, "agents", "resume", "worker")
    assert r.returncode == 0 and "resumed worker (state active" in r.stdout, out(r)
    for x in sent:
        rs = wait_for(lambda: replies(s, x.json()["conversation_id"]), "an answer")
        assert [m["performative"] for m in rs] == ["inform"], rs
    r = cli(s, "agents", "resume", "worker")
    assert r.returncode == 0 and "state active" in r.stdout, out(r)

    r = cli(s, "agents", "suspend", "broken")
    assert r.returncode == 1, out(r)
    assert "only active agents can be suspended" in r.stderr, out(r)
    r = s.admin("POST", "/api/v1/agents/broken/suspend")
    assert r.status == 409, r
    assert agent(s, "broken")["state"] == "failed"

    r = cli(s, "agents", "scale", "worker", "--instances", "+1")
    assert r.returncode == 0, out(r)
    assert "scaled worker from 1 to 2 instances" in r.stdout, r.stdout
    doc = agent(s, "worker")
    assert doc["instances"] == 2 and len(doc["instance_states"]) == 2, doc
    assert doc["queue"]["capacity"] == 2000, doc
    r = cli(s, "agents", "scale", "worker", "--instances", "-1")
    assert r.returncode == 0 and "from 2 to 1 instance" in r.stdout, out(r)
    assert agent(s, "worker")["instances"] == 1
    for value in ("0", "65"):
        r = cli(s, "agents", "scale", "worker", "--instances", value)
        assert r.returncode == 2, out(r)
        assert "an agent runs 1 to 64 instances" in r.stderr, r.stderr
    r = cli(s, "agents", "scale", "worker", "--instances", "-1")
    assert r.returncode == 1, out(r)
    assert "instances must stay from 1 to 64" in r.stderr, r.stderr
    for value in (0, 65, "+64", "-1"):
        r = s.admin("POST", "/api/v1/agents/worker/scale", {"instances": value})
        assert r.status == 422, (value, r)
        assert "1 to 64" in r.json()["error"]["message"], (value, r)
    r = s.admin("POST", "/api/v1/agents/worker/scale", {"instances": "many"})
    assert r.status == 422, r
    r = s.admin("POST", "/api/v1/agents/broken/scale", {"instances": "+1"})
    assert 400 <= r.status < 500 and "fix its file" in r.json()["error"]["message"], r
    assert s.admin("POST", "/api/v1/agents/nobody/scale", {"instances": 2}).status == 404
    assert agent(s, "worker")["instances"] == 1

    r = cli(s, "config", "audit-log", "--last-1h")
    for action in ("agent.suspend", "agent.resume", "agent.scale"):
        assert re.search(rf"\s{re.escape(action)}\s+worker\s", r.stdout), (action, r.stdout)
    stop_clean(s)


# ---- errors of one agent -------------------------------------------------------------------


def test_agent_logs_show_its_failures(make_server, llm):
    s = start_with_agents(make_server, llm, {
        "flaky.md": agent_md("flaky"),
        "steady.md": agent_md("steady"),
    })
    llm.script([{"status": 500}, {"status": 500}])
    ids = []
    for i in range(2):
        r = send(s, "flaky", f"try {i}")
        assert r.status == 200, r
        reply = r.json()["reply"]
        assert reply["performative"] == "failure" and failure_reason(reply) == "provider-error"
        ids.append(r.json()["message_id"])
    r = send(s, "steady", "fine")
    assert r.status == 200 and r.json()["reply"]["performative"] == "inform", r

    r = cli(s, "agents", "logs", "flaky", "--level", "error", "--last-10min")
    assert r.returncode == 0, out(r)
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2, r.stdout
    for line, message_id in zip(lines, ids):
        assert " error " in line and "message_failed" in line, line
        assert f"message {message_id} to flaky failed: provider-error" in line, line
    assert "steady" not in r.stdout and "message_answered" not in r.stdout, r.stdout
    r = cli(s, "agents", "logs", "steady", "--level", "error", "--last-10min")
    assert r.returncode == 0, out(r)
    assert "no log lines for steady at level error in that time window" in r.stdout, r.stdout
    r = cli(s, "agents", "logs", "steady", "--last-10min")
    assert "message_answered" in r.stdout, r.stdout

    doc = agent(s, "flaky")
    assert doc["stats"]["failed"] == 2 and doc["stats"]["llm_errors"] == 2, doc["stats"]
    assert "provider-error" in doc["last_error"]["message"], doc["last_error"]
    r = s.admin("GET", "/api/v1/agents/flaky/logs?level=error")
    items = r.json()["items"]
    assert [i["message_id"] for i in items] == ids, items
    assert all(i["agent"] == "flaky" and i["level"] == "error" for i in items), items
    assert s.admin("GET", "/api/v1/agents/flaky/logs?level=eror").status == 400
    stop_clean(s)


def test_failure_reply_reaches_a_waiting_sender(make_server, llm):
    """A message that fails at once (here: no model anywhere) still answers ?wait=."""
    s = start_with_agents(make_server, llm, {"modelless.md": agent_md("modelless", model=None)})
    r = send(s, "modelless", "hello", wait="3s")
    assert r.status == 200, r
    reply = r.json()["reply"]
    assert reply["performative"] == "failure", reply
    assert failure_reason(reply) == "provider-misconfigured", reply
    stop_clean(s)


# ---- capabilities --------------------------------------------------------------------------


def test_capabilities_and_conflicts(make_server, llm):
    s = start_with_agents(make_server, llm, {
        "summarizer-a.md": agent_md("summarizer-a", capabilities=("summarization",)),
        "summarizer-b.md": agent_md("summarizer-b", version="1.4.0",
                                    capabilities=("summarization", "translation")),
        "reporter.md": agent_md("reporter", capabilities=("reporting",),
                                extra="requires: [summarization, currency-conversion]"),
    })
    r = cli(s, "capabilities", "list")
    assert r.returncode == 0, out(r)
    assert re.search(r"^summarization\s+2\s+summarizer-a 1\.0\.0 \(active\), "
                     r"summarizer-b 1\.4\.0 \(active\)", r.stdout, re.M), r.stdout
    assert re.search(r"^reporting\s+1\s+reporter 1\.0\.0 \(active\)", r.stdout, re.M), r.stdout

    r = cli(s, "capabilities", "check-conflicts", "summarizer-a")
    assert r.returncode == 0, out(r)
    assert "shared with other providers" in r.stdout, r.stdout
    assert "summarizer-a: no capability conflicts" in r.stdout, r.stdout

    r = cli(s, "capabilities", "check-conflicts", "reporter")
    assert r.returncode == 1, out(r)
    assert "required but provided by no active agent:\n  currency-conversion" in r.stdout, r.stdout
    assert "reporter: 0 version clashes, 1 unmet requirement" in r.stdout, r.stdout
    doc = s.admin("GET", "/api/v1/agents/reporter/conflicts").json()
    assert doc["ok"] is False, doc
    assert [u["capability"] for u in doc["unmet_requires"]] == ["currency-conversion"], doc

    # summarizer-b alone provides translation, but nobody needs it: no warning.
    r = cli(s, "capabilities", "check-conflicts", "summarizer-b")
    assert r.returncode == 0, out(r)
    assert "warning" not in r.stdout, r.stdout
    doc = s.admin("GET", "/api/v1/agents/summarizer-b/conflicts").json()
    assert doc["sole_provider_of"] == [], doc

    # A third provider at another major version is a clash.
    write_file(agents_dir(s), "summarizer-c.md",
               agent_md("summarizer-c", version="2.0.0", capabilities=("summarization",)))
    wait_for(lambda: agent(s, "summarizer-c"), "the new agent")
    r = cli(s, "capabilities", "check-conflicts", "summarizer-a")
    assert r.returncode == 1, out(r)
    assert "version clashes" in r.stdout and "summarizer-c 2.0.0" in r.stdout, r.stdout

    # With every summarizer suspended, reporter's requirement is unmet too.
    for name in ("summarizer-a", "summarizer-b", "summarizer-c"):
        assert cli(s, "agents", "suspend", name).returncode == 0
    doc = s.admin("GET", "/api/v1/agents/reporter/conflicts").json()
    assert sorted(u["capability"] for u in doc["unmet_requires"]) == [
        "currency-conversion", "summarization"], doc
    r = cli(s, "capabilities", "check-conflicts", "reportr")
    assert r.returncode == 1 and "did you mean 'reporter'?" in r.stderr, out(r)
    stop_clean(s)


# ---- the operations guide, step by step ----------------------------------------------------


def test_guide_agent_not_responding(make_server, llm):
    """Status --detailed, queue-status and the error log find a busy agent with a
    backlog and a provider error; scaling it up clears the backlog."""
    s = start_with_agents(make_server, llm, {"slowpoke.md": agent_md("slowpoke")})
    # The first answer (a 500) is held until the scaled-up instance has its own call
    # in flight, so the steps below never race it.
    gate = threading.Event()
    llm.script([{"gate": gate, "status": 500}])
    try:
        first, backlog = guide_busy_agent_steps(s, llm)
    finally:
        gate.set()
    for x in [first] + backlog:
        wait_for(lambda: replies(s, x.json()["conversation_id"]), "an answer")
    outcome = [replies(s, x.json()["conversation_id"])[0] for x in [first] + backlog]
    assert failure_reason(outcome[0]) == "provider-error", outcome[0]
    assert [m["performative"] for m in outcome[1:]] == ["inform", "inform"], outcome
    assert llm.max_in_flight == 2, llm.max_in_flight
    first_id = first.json()["message_id"]

    # 5. Review recent logs.
    r = cli(s, "agents", "logs", "slowpoke", "--level", "error", "--last-10min")
    assert r.returncode == 0, out(r)
    assert f"message {first_id} to slowpoke failed: provider-error" in r.stdout, r.stdout
    assert len(r.stdout.strip().splitlines()) == 1, r.stdout
    stop_clean(s)


def guide_busy_agent_steps(s, llm):
    """Steps 1, 2 and the scale-up of the guide while the first answer is held;
    returns the first message and the two queued behind it."""
    first = send(s, "slowpoke", "first", wait=None)
    assert first.status == 202, first
    assert llm.wait_for_requests(1, timeout=10)
    backlog = [send(s, "slowpoke", f"waiting {i}", wait=None) for i in range(2)]
    assert [x.status for x in backlog] == [202, 202], backlog

    # 1. Check agent status details.
    r = cli(s, "agents", "status", "slowpoke", "--detailed")
    assert r.returncode == 0, out(r)
    assert re.search(r"^state:\s+active$", r.stdout, re.M), r.stdout
    assert re.search(r"^queue:\s+2/1000 queued, 1 in flight", r.stdout, re.M), r.stdout
    first_id = first.json()["message_id"]
    assert re.search(rf"^0\s+busy\s+{first_id}\s", r.stdout, re.M), r.stdout

    # 2. Check the conversation queue.
    r = cli(s, "conversations", "queue-status", "slowpoke")
    assert r.returncode == 0, out(r)
    assert "slowpoke: 2 of 1000 queued, 1 in flight, accepting messages" in r.stdout, r.stdout

    # Queue backlog: scale up; the new instance takes a queued message at once,
    # while the first one is still held (two calls in flight together).
    r = cli(s, "agents", "scale", "slowpoke", "--instances", "+1")
    assert r.returncode == 0, out(r)
    wait_for(lambda: llm.max_in_flight == 2, "a second call in flight beside the held one")
    assert llm.in_flight >= 1 and replies(s, first.json()["conversation_id"]) == []
    return first, backlog


def test_guide_hot_reload_failing(make_server, llm):
    s = start_with_agents(make_server, llm, {
        "summarizer.md": agent_md("summarizer", capabilities=("summarization",)),
        "report-writer.md": agent_md("report-writer", capabilities=("reporting",),
                                     extra="requires: [summarization]"),
    })
    path = os.path.join(agents_dir(s), "report-writer.md")
    # The operator's edit: a new version with a tab in the indentation.
    write_file(agents_dir(s), "report-writer.md",
               agent_md("report-writer", version="1.1.0", capabilities=("reporting",),
                        extra="requires: [summarization]").replace("  provider:", "\tprovider:"))
    wait_for(lambda: agent(s, "report-writer")["reload_status"] == "failed", "the failed reload")
    assert agent(s, "report-writer")["version"] == "1.0.0"

    # 1. Check reload status.
    r = cli(s, "agents", "reload-status", "report-writer")
    assert r.returncode == 1, out(r)
    assert "report-writer: reload status failed (state active)" in r.stdout, r.stdout
    assert f"{path}:7:1: error: a tab is used for indentation" in r.stdout, r.stdout

    # 2. Validate configuration syntax.
    r = cli(s, "agents", "validate", path, "--detailed", "--config", s.config_path)
    assert r.returncode == 1, out(r)
    assert f"{path}:7:1: error: a tab is used for indentation" in r.stdout, r.stdout
    assert "hint: YAML indentation must use spaces, not tabs" in r.stdout, r.stdout

    # 3. Check file permissions.
    r = subprocess.run(["ls", "-la", agents_dir(s)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if line.endswith(" report-writer.md"))
    assert re.match(r"-r.-r..r..", row), row  # a regular file every user can read

    # 4. Review reload logs.
    lines = grep(s, "hot_reload")[-20:]
    mine = [line for line in lines if '"agent":"report-writer"' in line]
    assert mine and '"result":"failed"' in mine[-1], lines
    assert "7:1: a tab is used for indentation" in mine[-1], mine[-1]

    # Fix 2: YAML syntax errors, with the suggested file.
    r = cli(s, "agents", "validate", path, "--fix-suggestions", "--config", s.config_path)
    assert r.returncode == 1, out(r)
    fixed = r.stdout.split("--- suggested file ---\n", 1)[1].split("--- end", 1)[0]
    assert "\t" not in fixed and "version: 1.1.0" in fixed, fixed
    write_file(agents_dir(s), "report-writer.md", fixed)
    wait_for(lambda: agent(s, "report-writer")["version"] == "1.1.0", "the fixed version")
    assert agent(s, "report-writer")["reload_status"] == "ok"

    # Fix 3: capability conflicts.
    r = cli(s, "capabilities", "check-conflicts", "report-writer")
    assert r.returncode == 0, out(r)
    assert "report-writer: no capability conflicts" in r.stdout, r.stdout
    r = cli(s, "capabilities", "check-conflicts", "summarizer")
    assert r.returncode == 0, out(r)
    assert "only summarizer provides these" in r.stdout, r.stdout
    assert "summarization: needed by report-writer" in r.stdout, r.stdout

    # Fix 4: force reload with fallback.
    r = cli(s, "agents", "reload", "report-writer", "--force", "--fallback-on-error")
    assert r.returncode == 0, out(r)
    assert "reloaded report-writer (version 1.1.0)" in r.stdout, r.stdout
    r = cli(s, "agents", "reload", "report-writer")
    assert r.returncode == 0, out(r)
    assert "report-writer is unchanged (version 1.1.0)" in r.stdout, r.stdout
    r = cli(s, "agents", "status", "--error-states-only")
    assert r.returncode == 0, out(r)
    assert "2 agents, none in an error state" in r.stdout, r.stdout
    r = send(s, "report-writer", "weekly report")
    assert r.status == 200 and r.json()["reply"]["performative"] == "inform", r
    stop_clean(s)
