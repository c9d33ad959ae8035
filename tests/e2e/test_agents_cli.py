"""The agent, conversation, message and capability commands as an operator
meets them without a server: `agents validate` and `agents validate-all` on
real definition files (text and JSON, fix suggestions, duplicate names,
unreadable and oversized files), help and completion for the new groups,
usage errors, and exit 3 when the server cannot be reached.
"""
import json
import os
import re

import pytest

from conftest import SANITIZER_MARKS, run_cli

CONFIG = """\
llm:
  providers:
    openai:
      api_key: test-key
"""

AGENT = """\
---
name: {name}
version: 1.2.0
description: Checks invoices against purchase orders
capabilities: [invoice-validation, po-lookup]
tools: [memory_search, send_message]
llm:
  provider: openai
  model: gpt-4o-mini
  temperature: 0.2
limits:
  max_execution_time: 60s
  token_budget: 200000/day
---
You are {{{{name}}}}. Check invoices.
"""

# A tab for indentation and a misspelt key: mechanical fixes.
TABBED = "---\nname: tabbed\nversion: 1.0.0\ncapabilites: [x]\nllm:\n\tprovider: openai\n---\nhi\n"


def cli(*args, timeout=60):
    r = run_cli(*args, timeout=timeout)
    for mark in SANITIZER_MARKS:
        assert mark not in r.stderr, r.stderr[-3000:]
    return r


def out(r):
    return r.stdout + r.stderr


@pytest.fixture
def setup(tmp_path):
    """A config with one provider and a data dir whose agents dir holds two agents."""
    config = tmp_path / "caxton.yaml"
    config.write_text(CONFIG)
    agents = tmp_path / "data" / "agents"
    agents.mkdir(parents=True)
    for name in ("invoice-checker", "summarizer"):
        (agents / f"{name}.md").write_text(AGENT.format(name=name))
    return {"config": str(config), "data": str(tmp_path / "data"), "agents": agents,
            "dir": tmp_path}


def validate(setup, *args):
    return cli("agents", *args, "--config", setup["config"], "--data-dir", setup["data"])


def test_validate_valid_file_detailed(setup):
    f = str(setup["agents"] / "invoice-checker.md")
    r = validate(setup, "validate", f, "--detailed")
    assert r.returncode == 0, out(r)
    assert f"{f}: valid" in r.stdout
    for text in ("invoice-checker", "1.2.0", "invoice-validation, po-lookup", "openai",
                 "gpt-4o-mini", "memory_search, send_message", "200000/day"):
        assert text in r.stdout, (text, r.stdout)


def test_validate_errors_and_fix_suggestions(setup):
    bad = setup["dir"] / "tabbed.md"
    bad.write_text(TABBED)
    r = validate(setup, "validate", str(bad), "--fix-suggestions")
    assert r.returncode == 1, out(r)
    assert re.search(rf"{re.escape(str(bad))}:6:1: error: ", r.stdout), r.stdout
    assert re.search(r"\d+ errors?, \d+ warnings?", r.stdout), r.stdout
    assert "--- suggested file ---" in r.stdout, r.stdout
    fixed = r.stdout.split("--- suggested file ---\n", 1)[1].split("--- end", 1)[0]
    assert "\t" not in fixed and "capabilities: [x]" in fixed, fixed
    # The suggestion is itself a valid file.
    good = setup["dir"] / "fixed.md"
    good.write_text(fixed)
    r = validate(setup, "validate", str(good))
    assert r.returncode == 0, out(r)


def test_validate_json(setup):
    bad = setup["dir"] / "tabbed.md"
    bad.write_text(TABBED)
    f = str(setup["agents"] / "summarizer.md")
    r = validate(setup, "validate", f, str(bad), "--detailed", "--fix-suggestions",
                 "--output", "json")
    assert r.returncode == 1, out(r)
    doc = json.loads(r.stdout)
    good, broken = doc["files"]
    assert good["file"] == f and good["valid"] and good["errors"] == 0
    assert good["definition"]["name"] == "summarizer"
    assert not broken["valid"] and broken["errors"] >= 1
    d = broken["diagnostics"][0]
    assert set(d) >= {"severity", "line", "column", "field", "message", "hint"}, d
    assert "suggested_fix" in broken and "definition" not in broken


def test_validate_unreadable_missing_and_oversized(setup):
    big = setup["dir"] / "big.md"
    big.write_bytes(b"---\nname: big\n" + b"a" * (10 * 1024 * 1024))
    r = validate(setup, "validate", str(big), str(setup["dir"] / "missing.md"))
    assert r.returncode == 1, out(r)
    assert "over the 1MB limit" in r.stdout and "not read" in r.stdout, r.stdout
    assert "missing.md: error: cannot read" in r.stdout, r.stdout


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_validate_unreadable_file_says_how_to_fix(setup):
    locked = setup["agents"] / "summarizer.md"
    locked.chmod(0)
    try:
        r = validate(setup, "validate", str(locked))
    finally:
        locked.chmod(0o644)
    assert r.returncode == 1, out(r)
    assert "permission denied (owner" in r.stdout and "mode 0000" in r.stdout, r.stdout
    assert "chmod 644" in r.stdout, r.stdout


def test_validate_all_duplicates_and_failed_only(setup):
    agents = setup["agents"]
    (agents / "copy.md").write_text(AGENT.format(name="summarizer"))
    (agents / ".hidden.md").write_text("not an agent")
    (agents / "README.txt").write_text("not an agent")
    (agents / "nested").mkdir()
    (agents / "nested" / "deep.md").write_text("not read")
    r = validate(setup, "validate-all")
    assert r.returncode == 1, out(r)
    assert "also used by summarizer.md" in r.stdout, r.stdout
    assert "also used by copy.md" in r.stdout, r.stdout
    assert "3 files in" in r.stdout and "1 valid, 2 with errors" in r.stdout, r.stdout
    assert ".hidden" not in r.stdout and "deep.md" not in r.stdout, r.stdout
    r = validate(setup, "validate-all", "--failed-only")
    assert r.returncode == 1, out(r)
    assert "invoice-checker.md" not in r.stdout, r.stdout
    r = validate(setup, "validate-all", "--output", "json")
    doc = json.loads(r.stdout)
    assert [os.path.basename(f["file"]) for f in doc["files"]] == [
        "copy.md", "invoice-checker.md", "summarizer.md"]
    (agents / "copy.md").unlink()
    r = validate(setup, "validate-all")
    assert r.returncode == 0, out(r)
    assert "2 files in" in r.stdout and "2 valid, 0 with errors" in r.stdout, r.stdout


def test_validate_all_without_agents_dir(tmp_path):
    r = cli("agents", "validate-all", "--data-dir", str(tmp_path / "nowhere"))
    assert r.returncode == 1, out(r)
    assert "cannot list the agents dir" in r.stderr, r.stderr


@pytest.mark.parametrize("group,commands", [
    ("agents", ("list", "status", "health-summary", "suspend", "resume", "logs", "scale",
                "reload", "reload-status", "deploy", "update", "remove", "validate",
                "validate-all")),
    ("conversations", ("queue-status", "drain-queue", "list", "show", "dead-letters")),
    ("messages", ("send",)),
    ("capabilities", ("list", "check-conflicts")),
    ("config", ("validate", "show", "audit-log")),
])
def test_help_lists_new_commands(group, commands):
    r = cli("help", group)
    assert r.returncode == 0, out(r)
    for cmd in commands:
        assert re.search(rf"^\s+{re.escape(cmd)}\s", r.stdout, re.M), (cmd, r.stdout)


def test_completion_has_new_groups():
    r = cli("completion", "bash")
    assert r.returncode == 0, out(r)
    for group in ("agents", "conversations", "messages", "capabilities"):
        assert f"{group}) COMPREPLY" in r.stdout, group


@pytest.mark.parametrize("args,text", [
    (("agents", "scale", "x"), "missing --instances"),
    (("agents", "scale", "x", "--instances", "+50%"), "not a percentage"),
    (("agents", "logs", "x", "--level", "eror"), "did you mean 'error'?"),
    (("messages", "send", "--content", "hi"), "exactly one of --to AGENT and --capability"),
    (("messages", "send", "--to", "a", "--content", "{", "--json-content"), "not valid JSON"),
    (("conversations", "dead-letters", "--requeue", "a", "--purge", "b"), "not both"),
    (("config", "audit-log", "--limit", "0"), "--limit"),
])
def test_usage_errors(args, text):
    r = cli(*args, "--server", "http://127.0.0.1:1")
    assert r.returncode == 2, out(r)
    assert text in r.stderr, r.stderr


@pytest.mark.parametrize("args", [
    ("agents", "list"), ("agents", "status", "x", "--detailed"), ("agents", "health-summary"),
    ("conversations", "queue-status", "x"), ("capabilities", "list"),
    ("config", "audit-log", "--last-1h"),
    ("messages", "send", "--to", "x", "--content", "hi", "--wait", "1s"),
])
def test_unreachable_server_exits_3(args):
    r = cli(*args, "--server", "http://127.0.0.1:1", timeout=30)
    assert r.returncode == 3, out(r)
    assert "cannot reach the server" in r.stderr, r.stderr
