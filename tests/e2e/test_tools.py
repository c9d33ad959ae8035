"""Tool calling, MCP tool servers and LLM providers, end to end.

The real `caxton` binary runs configuration agents whose LLM is a
ScriptedLLM on 127.0.0.1 and whose tools come from real MCP servers over
stdio: the reference `everything` and `filesystem` servers from npm (skipped
while tests/mcp/node_modules is missing) and tests/mcp/scripted_server.py,
which dies, writes garbage, hangs or answers 50 MB on request. Everything is
checked as an operator sees it: the reply, what the LLM was sent, `caxton
tools ...` and `caxton agents ...`, /metrics, agents.log and caxton.log.

Covered: one tool round trip (OpenAI, Anthropic and Ollama shapes); two
agents working together through send_message in one conversation; reading a
file through the filesystem server; the troubleshooting guide's tool-access
procedure (status, reconnect, test-connectivity, test-all,
performance-summary); tool server faults, a missing server program, long
results cut for the LLM, a server's cwd/env and no inherited secrets,
refused and malformed tool calls, the reply tool, an endless tool loop, a
tool outliving the message's deadline, providers down with and without a
fallback, a spent token budget; bad tools.mcp_servers settings; agent files
naming tools that do not exist.
"""
import json
import os
import re
import time

import pytest

from agents_util import write_file
from conftest import SANITIZER_MARKS, run_cli
from llm_server import ScriptedLLM
from messaging_util import (cli, cli_json, conversation_messages, log_events, metric, poll,
                            replies_to, request_msg, send, wait_reply)
from tools_util import (ask, closed_port, everything_cmd, filesystem_cmd, last_tool_result,
                        lines_with, needs_npm, offered, provider, read_record, scripted_cmd,
                        start_with, stop_clean, tool_agent, tool_results, tool_servers,
                        tools_config, wait_agent, wait_ready)

ECHO_HI = {"name": "everything__echo", "arguments": {"message": "hi"}}


@pytest.fixture
def llm():
    srv = ScriptedLLM().start()
    yield srv
    srv.stop()


@pytest.fixture
def second():
    srv = ScriptedLLM().start()
    yield srv
    srv.stop()


def calls(name, arguments=None, **extra):
    """A step asking for one tool call."""
    return {"tool_calls": [dict({"name": name, "arguments": arguments or {}}, **extra)]}


def may_call_tools(llm_request):
    """Whether an OpenAI-shaped request lets the LLM call a tool."""
    return bool(llm_request.get("tools")) and llm_request.get("tool_choice") != "none"


def table_row(text, first_cell):
    """The cells of the table row starting with first_cell (cells are 2+ spaces apart)."""
    for line in text.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{text}")


def stats(s, name):
    r = s.admin("GET", f"/api/v1/agents/{name}")
    assert r.status == 200, r
    return r.json()["stats"]


def events(s, kind, agent):
    return [e for e in log_events(s) if e.get("event") == kind and e.get("agent") == agent]


# ---- 1. one tool round trip -------------------------------------------------------------------


@needs_npm
def test_tool_round_trip_through_the_everything_server(make_server, llm):
    config = tools_config({"openai": provider(llm.url)},
                          {"everything": {"command": everything_cmd()}})
    s = start_with(make_server, config, {"echoer": tool_agent("echoer", ["everything.echo"])})
    wait_ready(s, "everything")
    llm.script([calls(**ECHO_HI), {"text": "the server said hi back"}])

    reply = ask(s, "echoer", "please echo hi")
    assert reply["performative"] == "inform", reply
    assert reply["content"] == "the server said hi back", reply

    assert len(llm.requests) == 2, llm.requests
    first, again = llm.requests
    assert offered(first) == ["everything__echo"], first.get("tools")
    schema = first["tools"][0]["function"]["parameters"]
    assert schema["properties"]["message"]["type"] == "string", schema  # the server's own schema
    asked = again["messages"][-2]
    assert asked["role"] == "assistant", asked
    assert asked["tool_calls"][0]["function"]["name"] == "everything__echo", asked
    result = again["messages"][-1]
    assert result["role"] == "tool", result
    assert result["tool_call_id"] == asked["tool_calls"][0]["id"], again["messages"]
    assert result["content"] == "Echo: hi", result

    r, doc = cli_json(s, "agents", "performance-summary")
    assert r.returncode == 0, r.stderr
    row = next(a for a in doc["agents"] if a["agent"] == "echoer")
    assert row["tool_calls"] == 1 and row["llm_calls"] == 2 and row["answered"] == 1, row
    r = cli(s, "agents", "performance-summary")
    assert r.returncode == 0, r.stderr
    cells = table_row(r.stdout, "echoer")
    assert cells[6].startswith("1 / ") and cells[6].endswith(" ms"), cells  # TOOL CALLS/TIME
    assert cells[5].startswith("2 / "), cells                                # LLM CALLS/TIME

    def scraped():
        text = s.get("/metrics").body.decode()
        ok = metric(text, "caxton_mcp_calls_total", server="everything", outcome="ok")
        return text if ok == 1 else None
    text = poll(scraped, timeout=5, what="caxton_mcp_calls_total ok 1 for everything")
    assert metric(text, "caxton_mcp_calls_total", server="everything", outcome="error") == 0
    assert metric(text, "caxton_mcp_server_up", server="everything") == 1
    stop_clean(s)


# ---- 2. two agents working together -----------------------------------------------------------


@needs_npm
def test_two_agents_collaborate_in_one_conversation(make_server, llm, second):
    """coordinator (send_message) asks whoever provides `echoing`; echoer (everything.echo)
    uses its tool and answers; coordinator answers the sender with echoer's answer. One
    ScriptedLLM per agent, so each script is in that agent's order."""
    config = tools_config({"openai": provider(llm.url),
                           "helper-llm": provider(second.url, kind="openai")},
                          {"everything": {"command": everything_cmd()}})
    agents = {
        "coordinator": tool_agent("coordinator", ["send_message"], capabilities=("coordinating",)),
        "echoer": tool_agent("echoer", ["everything.echo"], provider_name="helper-llm",
                             capabilities=("echoing",)),
    }
    s = start_with(make_server, config, agents)
    wait_ready(s, "everything")
    llm.script([calls("send_message", {"capability": "echoing", "content": "echo the word hi",
                                       "timeout_seconds": 15}),
                {"text": "echoer reports: Echo: hi"}])
    second.script([calls(**ECHO_HI), {"text": "I echoed it: Echo: hi"}])

    r = send(s, request_msg("coordinator", "get the word hi echoed"), wait="20s", timeout=40)
    assert r.status == 200, r
    doc = r.json()
    reply = doc["reply"]
    assert reply["performative"] == "inform" and reply["sender"] == "coordinator", reply
    assert reply["content"] == "echoer reports: Echo: hi", reply

    assert offered(llm.requests[0]) == ["send_message"], llm.requests[0].get("tools")
    # echoer was asked by coordinator, and its tool result was the real server's
    assert len(second.requests) == 2, second.requests
    asked = json.dumps(second.requests[0]["messages"][-1])
    assert "echo the word hi" in asked and "coordinator" in asked, asked
    assert last_tool_result(second.requests[1]) == "Echo: hi", second.requests[1]
    # coordinator's second round carries echoer's answer as the send_message result
    assert len(llm.requests) == 2, llm.requests
    result = tool_results(llm.requests[1])[-1]
    assert result["content"] == "[inform from echoer] I echoed it: Echo: hi", result

    conv = doc["conversation_id"]
    msgs = conversation_messages(s, conv)
    assert all(m["conversation_id"] == conv for m in msgs), msgs
    # coordinator's question, addressed as the LLM asked: to the capability
    ask_b = [m for m in msgs if m["sender"] == "coordinator" and m.get("in_reply_to") is None]
    assert len(ask_b) == 1 and ask_b[0]["performative"] == "request", msgs
    assert ask_b[0].get("capability") == "echoing" or ask_b[0].get("receiver") == "echoer", ask_b
    assert ask_b[0]["content"] == "echo the word hi", ask_b
    from_b = [m for m in msgs if m["sender"] == "echoer" and m.get("receiver") == "coordinator"]
    assert len(from_b) == 1 and from_b[0]["performative"] == "inform", msgs
    assert from_b[0]["in_reply_to"] == ask_b[0]["message_id"], msgs
    assert from_b[0]["content"] == "I echoed it: Echo: hi", from_b
    final = [m for m in msgs if m.get("in_reply_to") == doc["message_id"]]
    assert [m["sender"] for m in final] == ["coordinator"], msgs
    assert stats(s, "coordinator")["tool_calls"] == 1 and stats(s, "echoer")["tool_calls"] == 1

    # asking a capability nobody provides, or itself: tool errors, and the agent still answers
    llm.script([{"tool_calls": [
        {"name": "send_message", "arguments": {"capability": "juggling", "content": "juggle"},
         "id": "call_nobody"},
        {"name": "send_message", "arguments": {"receiver": "coordinator", "content": "me?"},
         "id": "call_self"}]},
        {"text": "nobody could help"}])
    reply = ask(s, "coordinator", "find a juggler")
    assert reply["performative"] == "inform" and reply["content"] == "nobody could help", reply
    results = {m["tool_call_id"]: m["content"] for m in tool_results(llm.requests[3])}
    assert results["call_nobody"].startswith("[failure from "), results
    assert "no-provider" in results["call_nobody"], results
    assert results["call_self"].startswith("send_message refused:"), results
    assert len(second.requests) == 2, "echoer was asked for a capability it does not have"
    stop_clean(s)


# ---- 3. the filesystem server -----------------------------------------------------------------


@needs_npm
def test_filesystem_server_reads_a_file_and_nothing_outside(make_server, llm, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    note = shared / "note.txt"
    note.write_text("the launch code is 1234\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the shared directory")
    config = tools_config({"openai": provider(llm.url)},
                          {"files": {"command": filesystem_cmd(shared)}})
    s = start_with(make_server, config,
                   {"librarian": tool_agent("librarian", ["files.read_text_file"])})
    wait_ready(s, "files")
    r, doc = cli_json(s, "tools", "status")
    assert r.returncode == 0, r.stdout + r.stderr
    listed = {srv["name"]: srv["tools"] for srv in doc["servers"]}
    assert "files.read_text_file" in listed["files"], listed

    llm.script([calls("files__read_text_file", {"path": str(note)}), {"text": "I read it"},
                calls("files__read_text_file", {"path": str(secret)}), {"text": "not allowed"}])
    reply = ask(s, "librarian", "what is in note.txt?")
    assert reply["performative"] == "inform" and reply["content"] == "I read it", reply
    assert "the launch code is 1234" in last_tool_result(llm.requests[1]), llm.requests[1]

    reply = ask(s, "librarian", "and secret.txt next to it?")
    assert reply["performative"] == "inform" and reply["content"] == "not allowed", reply
    refused = last_tool_result(llm.requests[3])
    assert "denied" in refused.lower(), refused
    assert "outside the shared directory" not in refused, refused
    stop_clean(s)


# ---- 4. the guide's tool-access procedure -----------------------------------------------------


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@needs_npm
def test_guide_tool_access_procedure(make_server, llm):
    config = tools_config({"openai": provider(llm.url),
                           "down": provider(f"http://127.0.0.1:{closed_port()}/v1",
                                            kind="openai")},
                          {"everything": {"command": everything_cmd()}})
    s = start_with(make_server, config, {"toolsmith": tool_agent("toolsmith", ["everything.echo"]),
                                         "plain": tool_agent("plain")})
    wait_ready(s, "everything")

    # caxton tools status --agent: the agent's tools, reachable
    r = cli(s, "tools", "status", "--agent", "toolsmith")
    assert r.returncode == 0, r.stdout + r.stderr
    assert table_row(r.stdout, "everything.echo")[:3] == ["everything.echo", "mcp", "yes"], r.stdout
    assert table_row(r.stdout, "everything")[1] == "ready", r.stdout
    r, doc = cli_json(s, "tools", "status", "--agent", "toolsmith")
    assert r.returncode == 0 and doc["agent"] == "toolsmith", r.stdout
    assert [t["reachable"] for t in doc["tools"]] == [True], doc
    pid = doc["servers"][0]["pid"]
    assert isinstance(pid, int) and pid > 0, doc

    # caxton tools reconnect --agent: a new process, ready again
    r = cli(s, "tools", "reconnect", "--agent", "toolsmith")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "reconnecting: everything" in r.stdout, r.stdout
    now = wait_ready(s, "everything", other_than={"everything": pid})["everything"]
    assert now["pid"] != pid and now["state"] == "ready", now
    poll(lambda: gone(pid), timeout=10, what=f"the old server process {pid} to exit")
    r = cli(s, "tools", "status", "--agent", "toolsmith")
    assert r.returncode == 0, r.stdout + r.stderr
    # names that do not exist are errors, not silence
    r = cli(s, "tools", "reconnect", "--tool-server", "evrything")
    assert r.returncode != 0 and "evrything" in r.stderr, r.stdout + r.stderr
    r = cli(s, "tools", "status", "--agent", "nobody")
    assert r.returncode != 0 and "no agent named 'nobody'" in r.stderr, r.stdout + r.stderr
    assert tool_servers(s)["everything"]["pid"] == now["pid"]

    # caxton tools test-connectivity --agent: a timed round trip
    r = cli(s, "tools", "test-connectivity", "--agent", "toolsmith")
    assert r.returncode == 0, r.stdout + r.stderr
    row = table_row(r.stdout, "everything")
    assert row[1] == "yes", r.stdout
    assert re.fullmatch(r"\d+ ms", row[2]) and re.fullmatch(r"\d+ ms", row[3]), row  # timings
    assert int(row[4]) > 0, row
    assert "all tool servers answered" in r.stdout, r.stdout
    r, doc = cli_json(s, "tools", "test-connectivity", "--agent", "toolsmith")
    assert r.returncode == 0 and doc["ok"] is True, r.stdout
    tested = doc["servers"][0]
    assert tested["name"] == "everything" and tested["ok"] is True and tested["error"] is None
    assert tested["initialize_ms"] >= 0 and tested["list_ms"] >= 0 and tested["tools"] > 0

    # caxton agents test-all: a provider round trip per agent
    llm.reply("OK")
    r = cli(s, "agents", "test-all", "--basic-functions", "--timeout", "30s")
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("toolsmith", "plain"):
        assert table_row(r.stdout, name)[1:2] == ["ok"], r.stdout
    probes = [q for q in llm.requests if "single word OK" in json.dumps(q["messages"][-1])]
    assert len(probes) == 2, llm.requests

    # one agent whose provider is down, one slow agent
    directory = os.path.join(s.data_dir, "agents")
    write_file(directory, "broken.md", tool_agent("broken", provider_name="down"))
    write_file(directory, "sluggish.md", tool_agent("sluggish"))
    wait_agent(s, "broken", "active")
    wait_agent(s, "sluggish", "active")
    llm.script([{"delay": 5.2, "text": "slow answer"}])
    assert ask(s, "sluggish", "take your time")["content"] == "slow answer"

    r = cli(s, "agents", "test-all", "--basic-functions", "--timeout", "30s")
    assert r.returncode == 1, r.stdout + r.stderr
    row = table_row(r.stdout, "broken")
    assert row[1] == "FAILED" and "provider-unreachable" in row[3], r.stdout
    for name in ("toolsmith", "plain", "sluggish"):
        assert table_row(r.stdout, name)[1] == "ok", r.stdout

    # caxton agents performance-summary --slow-only: p99 of 5 s or more
    r = cli(s, "agents", "performance-summary", "--slow-only")
    assert r.returncode == 0, r.stdout + r.stderr
    assert table_row(r.stdout, "sluggish")[0] == "sluggish", r.stdout
    assert "toolsmith" not in r.stdout and "broken" not in r.stdout, r.stdout
    r, doc = cli_json(s, "agents", "performance-summary", "--slow-only")
    assert r.returncode == 0 and doc["slow_p99_ms"] == 5000, r.stdout
    assert [a["agent"] for a in doc["agents"]] == ["sluggish"], doc
    assert doc["agents"][0]["p99_latency_ms"] >= 5000, doc
    stop_clean(s)


def test_tool_round_trip_on_anthropic_and_ollama_providers(make_server, llm):
    """The same tool round on the other provider types: tools offered in their shape, the
    calls' results sent back as Anthropic tool_result blocks (a failed one with is_error) and
    as Ollama tool messages naming the tool."""
    config = tools_config(
        {"claude": provider(llm.anthropic_url, kind="anthropic", api_key="sk-ant-test-0123456789",
                            model="claude-test"),
         "ollama": provider(llm.ollama_url, model="llama-test")},
        {"scripted": {"command": scripted_cmd()}})
    tools = ["scripted.echo", "scripted.tool_error"]
    s = start_with(make_server, config, {"poet": tool_agent("poet", tools, provider_name="claude"),
                                         "local": tool_agent("local", tools,
                                                             provider_name="ollama")})
    wait_ready(s, "scripted")
    both = {"tool_calls": [{"name": "scripted__echo", "arguments": {"text": "rhyme"},
                            "id": "toolu_echo"},
                           {"name": "scripted__tool_error", "arguments": {}, "id": "toolu_err"}]}
    llm.script([both, {"text": "claude done"}, both, {"text": "ollama done"}])
    assert ask(s, "poet", "write")["content"] == "claude done"
    assert ask(s, "local", "count")["content"] == "ollama done"
    assert llm.paths == ["/v1/messages"] * 2 + ["/api/chat"] * 2, llm.paths

    claude_first, claude_again, local_first, local_again = llm.requests
    assert sorted(t["name"] for t in claude_first["tools"]) == ["scripted__echo",
                                                                "scripted__tool_error"]
    assert all(t["input_schema"]["type"] == "object" for t in claude_first["tools"])
    blocks = [b for m in claude_again["messages"] if m["role"] == "user"
              and isinstance(m["content"], list) for b in m["content"]
              if b.get("type") == "tool_result"]
    by_id = {b["tool_use_id"]: b for b in blocks}
    assert by_id["toolu_echo"]["content"] == "rhyme" and "is_error" not in by_id["toolu_echo"]
    assert by_id["toolu_err"]["content"] == "bad input", by_id
    assert by_id["toolu_err"]["is_error"] is True, by_id

    assert sorted(offered(local_first)) == ["scripted__echo", "scripted__tool_error"]
    results = {m.get("tool_name"): m["content"] for m in tool_results(local_again)}
    assert results == {"scripted__echo": "rhyme", "scripted__tool_error": "bad input"}, \
        local_again["messages"]
    assert stats(s, "poet")["tool_errors"] == 1 and stats(s, "local")["tool_errors"] == 1
    stop_clean(s)


# ---- 5. bad input -----------------------------------------------------------------------------


def test_tool_server_faults_become_tool_errors(make_server, llm, second, tmp_path):
    """The scripted server dies mid-call, writes garbage, never answers (timeout 1s) and
    answers 50 MB (max_result 1MB); each time the LLM gets a tool error naming the reason,
    the agent answers, a line is logged, the server is restarted and other agents answer."""
    record = tmp_path / "record.jsonl"
    config = tools_config(
        {"openai": provider(llm.url), "calm": provider(second.url, kind="openai")},
        {"scripted": {"command": scripted_cmd("--bad-tools", "--record", record),
                      "timeout": "1s", "max_result": "1MB", "restart_backoff": "50ms"}})
    tools = ["scripted.echo", "scripted.die", "scripted.garbage", "scripted.hang", "scripted.big"]
    s = start_with(make_server, config, {"faulty": tool_agent("faulty", tools),
                                         "bystander": tool_agent("bystander",
                                                                 provider_name="calm")})
    ready = wait_ready(s, "scripted")["scripted"]
    # the tools with an invalid schema or name are skipped, the others usable
    assert "scripted.echo" in ready["tools"], ready
    assert not any(t.split(".", 1)[1] in ("bad_schema", "no_schema", "bad name!")
                   for t in ready["tools"]), ready
    assert lines_with(s, "lists tool 'bad_schema' with an invalid schema"), s.log_dir
    assert lines_with(s, "lists a tool named \\\"bad name!\\\""), s.log_dir

    cases = [("die", {}, "tool-server-died", "exited with status 3"),
             ("garbage", {}, "tool-protocol-error", "not JSON-RPC"),
             ("hang", {}, "tool-timeout", "did not answer the call to 'hang' within"),
             ("big", {"size": 50 * 1024 * 1024}, "tool-result-too-large", "longer than")]
    for tool, args, reason, detail in cases:
        before = wait_ready(s, "scripted")["scripted"]
        n = len(llm.requests)
        llm.script([calls(f"scripted__{tool}", args), {"text": f"{tool}: handled"}])
        started = time.monotonic()
        r = send(s, request_msg("faulty", f"call {tool}"))
        assert r.status == 202, r
        if tool == "hang":  # while faulty waits on its tool, another agent answers at once
            assert llm.wait_for_requests(n + 1, timeout=10)
            other = ask(s, "bystander", "are you free?")
            assert other["content"] == "echo: [request from external:api] are you free?", other
            assert not replies_to(s, r.json()["conversation_id"], r.json()["message_id"]), \
                "the bystander was answered only after the hung tool timed out"
        reply = wait_reply(s, r.json()["conversation_id"], r.json()["message_id"], timeout=15)
        took = time.monotonic() - started
        assert reply["performative"] == "inform" and reply["content"] == f"{tool}: handled", reply
        result = last_tool_result(llm.requests[n + 1])
        assert f"({reason})" in result and detail in result, (tool, result)
        assert took < 8, (tool, took)
        if tool == "hang":  # the server's 1s timeout, stated as configured
            assert took >= 0.9, took
            assert "within 1s" in result, result
        else:  # the server was restarted with a new process
            wait_ready(s, "scripted", other_than={"scripted": before["pid"]})

    assert lines_with(s, "MCP server 'scripted' failed: the server process exited with status 3")
    assert lines_with(s, "MCP server 'scripted' wrote a line that is not JSON")
    assert lines_with(s, "the server sent a line longer than")

    # the server still works after all that
    wait_ready(s, "scripted")
    n = len(llm.requests)
    llm.script([calls("scripted__echo", {"text": "still here"}), {"text": "fine"}])
    assert ask(s, "faulty", "call echo")["content"] == "fine"
    assert last_tool_result(llm.requests[n + 1]) == "still here"

    # the timed-out call was cancelled on the server
    messages = read_record(record)
    hang = [m for m in messages if m.get("method") == "tools/call"
            and m["params"]["name"] == "hang"]
    assert len(hang) == 1, messages
    cancelled = [m for m in messages if m.get("method") == "notifications/cancelled"]
    assert [m["params"]["requestId"] for m in cancelled] == [hang[0]["id"]], cancelled

    def scraped():
        text = s.get("/metrics").body.decode()
        return metric(text, "caxton_mcp_calls_total", server="scripted", outcome="error") == 4
    poll(scraped, timeout=5, what="caxton_mcp_calls_total errors 4 for scripted")
    status = tool_servers(s)["scripted"]
    assert status["state"] == "ready" and status["restarts"] >= 3, status
    assert status["calls"] == 5 and status["errors"] == 4, status
    st = stats(s, "faulty")
    assert st["tool_calls"] == 5 and st["tool_errors"] == 4 and st["answered"] == 5, st
    assert st["tool_violations"] == 0, st
    # each failed call is a warning in agents.log with its duration, under the tool's own
    # name, the one the agent file and `caxton tools status` use (successful calls are
    # logged at debug level)
    audit = events(s, "tool_call", "faulty")
    assert [(e["ok"], e["level"]) for e in audit] == [(False, "warn")] * 4, audit
    assert audit[2]["duration_ms"] >= 990, audit
    assert [e["tool"] for e in audit] == [f"scripted.{t}" for t in
                                          ("die", "garbage", "hang", "big")], audit
    stop_clean(s)


def test_long_tool_results_are_cut_for_the_llm(make_server, llm):
    """A tool result over 256 KB (but under max_result) is cut before it goes to the LLM;
    the cut must not split a UTF-8 character, or the next LLM request cannot be built."""
    config = tools_config({"openai": provider(llm.url)},
                          {"scripted": {"command": scripted_cmd()}})
    s = start_with(make_server, config,
                   {"reader": tool_agent("reader", ["scripted.big", "scripted.echo"])})
    wait_ready(s, "scripted")
    cut = 256 * 1024

    llm.script([calls("scripted__big", {"size": 300_000}), {"text": "long but fine"}])
    reply = ask(s, "reader", "read a lot")
    assert reply["performative"] == "inform" and reply["content"] == "long but fine", reply
    assert last_tool_result(llm.requests[1]) == "x" * cut

    # 280 001 bytes of text whose 2-byte characters straddle the 256 KB mark
    text = "x" + "\u00e9" * 140_000
    llm.script([calls("scripted__echo", {"text": text}), {"text": "accents survived"}])
    reply = ask(s, "reader", "read accents")
    assert reply["performative"] == "inform", reply
    assert reply["content"] == "accents survived", reply
    got = last_tool_result(llm.requests[3])
    assert cut - 4 < len(got.encode()) <= cut, len(got.encode())
    kept = got.rstrip("?\ufffd")  # a split character may be marked at the cut
    assert text.startswith(kept) and len(got) - len(kept) <= 1, got[-10:]
    stop_clean(s)


def test_tool_server_program_missing(make_server, llm):
    """A server whose command does not exist: tools status says so and exits 1; the LLM's
    call to its tool gets a tool error, a working server's tool in the same round answers,
    and the agent still answers."""
    missing = "/nonexistent/caxton-tests/mcp-server"
    config = tools_config({"openai": provider(llm.url)},
                          {"ghost": {"command": [missing, "--stdio"]},
                           "scripted": {"command": scripted_cmd()}})
    s = start_with(make_server, config,
                   {"hopeful": tool_agent("hopeful", ["ghost.run", "scripted.echo"])})
    wait_ready(s, "scripted")
    poll(lambda: tool_servers(s)["ghost"]["last_error"], timeout=10, what="ghost's last error")

    r = cli(s, "tools", "status")
    assert r.returncode == 1, r.stdout + r.stderr
    row = table_row(r.stdout, "ghost")
    assert row[1] != "ready" and row[2] == "-", row
    assert missing in r.stdout and "was not found" in r.stdout, r.stdout
    assert table_row(r.stdout, "scripted")[1] == "ready", r.stdout
    r = cli(s, "tools", "status", "--agent", "hopeful")
    assert r.returncode == 1, r.stdout + r.stderr
    assert table_row(r.stdout, "ghost.run")[2] == "NO", r.stdout
    assert table_row(r.stdout, "scripted.echo")[2] == "yes", r.stdout
    r = cli(s, "tools", "test-connectivity", "--agent", "hopeful")
    assert r.returncode == 1, r.stdout + r.stderr
    assert table_row(r.stdout, "ghost")[1] == "NO", r.stdout
    assert table_row(r.stdout, "scripted")[1] == "yes", r.stdout
    assert lines_with(s, "MCP server 'ghost' failed: cannot start MCP server 'ghost'")

    llm.script([{"tool_calls": [{"name": "ghost__run", "arguments": {}, "id": "call_ghost"},
                                {"name": "scripted__echo", "arguments": {"text": "alive"},
                                 "id": "call_echo"}]},
                {"text": "one of two worked"}])
    reply = ask(s, "hopeful", "run both")
    assert reply["performative"] == "inform" and reply["content"] == "one of two worked", reply
    results = {m["tool_call_id"]: m["content"] for m in tool_results(llm.requests[1])}
    assert results["call_echo"] == "alive", results
    assert "ghost" in results["call_ghost"], results
    # ghost.run is in the agent's allow-list: its server being down is not a violation
    assert "tool-server-unavailable" in results["call_ghost"], results
    assert stats(s, "hopeful")["tool_violations"] == 0, stats(s, "hopeful")
    stop_clean(s)


def test_tool_servers_get_their_settings_and_no_secrets(make_server, llm, tmp_path):
    """A tool server runs in its `cwd` with its `env`, and does not inherit Caxton's secrets
    (here the API key a provider reads from the environment)."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    config = tools_config({"openai": provider(llm.url, api_key="${TOOLS_TEST_API_KEY}")},
                          {"scripted": {"command": scripted_cmd(), "cwd": str(workdir),
                                        "env": {"GREETING": "hello from config"}}})
    s = start_with(make_server, config,
                   {"inspector": tool_agent("inspector", ["scripted.env", "scripted.cwd"])},
                   env={"TOOLS_TEST_API_KEY": "sk-tools-test-0123456789"})
    wait_ready(s, "scripted")
    asks = [("TOOLS_TEST_API_KEY", "(unset)"), ("GREETING", "hello from config")]
    llm.script([{"tool_calls": [{"name": "scripted__env", "arguments": {"name": name},
                                 "id": f"call_{name}"} for name, _ in asks] +
                 [{"name": "scripted__cwd", "arguments": {}, "id": "call_cwd"}]},
                {"text": "inspected"}])
    assert ask(s, "inspector", "look around")["content"] == "inspected"
    results = {m["tool_call_id"]: m["content"] for m in tool_results(llm.requests[1])}
    for name, expected in asks:
        assert results[f"call_{name}"] == expected, results
    assert os.path.realpath(results["call_cwd"]) == os.path.realpath(workdir), results
    headers = {k.lower(): v for k, v in llm.headers[0].items()}
    assert headers["authorization"] == "Bearer sk-tools-test-0123456789", headers
    stop_clean(s)


def test_refused_and_malformed_tool_calls(make_server, llm, tmp_path):
    record = tmp_path / "record.jsonl"
    config = tools_config({"openai": provider(llm.url)},
                          {"scripted": {"command": scripted_cmd("--record", record)}})
    s = start_with(make_server, config,
                   {"careful": tool_agent("careful", ["scripted.echo", "reply"])})
    wait_ready(s, "scripted")

    # a tool the LLM invents
    llm.script([calls("launch_missiles", {"target": "moon"}), {"text": "I cannot do that"}])
    reply = ask(s, "careful", "launch")
    assert reply["performative"] == "inform" and reply["content"] == "I cannot do that", reply
    assert offered(llm.requests[0]) == ["scripted__echo", "reply"], llm.requests[0].get("tools")
    refused = last_tool_result(llm.requests[1])
    assert "tool 'launch_missiles' is not available to this agent" in refused, refused
    violations = events(s, "tool_violation", "careful")
    assert len(violations) == 1 and violations[0]["tool"] == "launch_missiles", violations
    assert violations[0]["message_id"] and violations[0]["level"] == "warn", violations
    assert stats(s, "careful")["tool_violations"] == 1

    # a tool its server has, but outside this agent's allow-list
    llm.script([calls("scripted__env", {"name": "HOME"}), {"text": "not mine to use"}])
    assert ask(s, "careful", "read HOME")["content"] == "not mine to use"
    assert "is not available to this agent" in last_tool_result(llm.requests[3])
    assert stats(s, "careful")["tool_violations"] == 2

    # arguments that are not a JSON object: an error the LLM can act on, then a retry
    llm.script([calls("scripted__echo", "{not json"), calls("scripted__echo", "[1, 2]"),
                calls("scripted__echo", {"text": "second try"}), {"text": "worked the third time"}])
    reply = ask(s, "careful", "echo something")
    assert reply["performative"] == "inform" and reply["content"] == "worked the third time"
    for q in llm.requests[5:7]:
        assert "not a JSON object" in last_tool_result(q), q["messages"][-1]
    assert last_tool_result(llm.requests[7]) == "second try"

    # two calls in one round: both run, each result under its own id
    llm.script([{"tool_calls": [{"name": "scripted__echo", "arguments": {"text": "left"},
                                 "id": "call_l"},
                                {"name": "scripted__echo", "arguments": {"text": "right"},
                                 "id": "call_r"}]},
                {"text": "both"}])
    assert ask(s, "careful", "echo twice")["content"] == "both"
    results = {m["tool_call_id"]: m["content"] for m in tool_results(llm.requests[9])}
    assert results["call_l"] == "left" and results["call_r"] == "right", results

    # the built-in reply tool picks the performative; a wrong one is an error to fix
    llm.script([calls("reply", {"performative": "shout", "content": "no"}),
                calls("reply", {"performative": "refuse", "content": "I will not do that"})])
    reply = ask(s, "careful", "do something bad")
    assert reply["performative"] == "refuse" and reply["content"] == "I will not do that", reply
    assert len(llm.requests) == 12, "the LLM was asked again after choosing its reply"
    assert "performative must be" in last_tool_result(llm.requests[11])

    echoed = [m["params"]["arguments"].get("text") for m in read_record(record)
              if m.get("method") == "tools/call"]
    assert sorted(echoed) == ["left", "right", "second try"], echoed  # nothing refused ran
    st = stats(s, "careful")
    assert st["tool_violations"] == 2 and st["answered"] == 5, st
    # the two malformed calls are logged as failed calls of the tool the agent file names
    audit = events(s, "tool_call", "careful")
    assert [(e["tool"], e["ok"]) for e in audit] == [("scripted.echo", False)] * 2, audit
    stop_clean(s)


def test_endless_tool_loop_ends_with_a_clear_result(make_server, llm, tmp_path):
    """max_tool_calls 3: three calls run, then the LLM is asked without tools; an LLM that
    keeps asking anyway is stopped after 64 rounds with reason tool-limit."""
    record = tmp_path / "record.jsonl"
    config = tools_config({"openai": provider(llm.url)},
                          {"scripted": {"command": scripted_cmd("--record", record)}})
    s = start_with(make_server, config,
                   {"looper": tool_agent("looper", ["scripted.echo"],
                                         limits={"max_tool_calls": 3}),
                    "hasty": tool_agent("hasty", ["scripted.hang"],
                                        limits={"max_execution_time": "2s"})})
    wait_ready(s, "scripted")
    llm.script([calls("scripted__echo", {"text": f"round {i}"}) for i in range(64)] +
               [{"text": "back to normal"}])
    started = time.monotonic()
    reply = ask(s, "looper", "loop forever", wait="30s")
    took = time.monotonic() - started
    assert took < 20, took
    assert reply["performative"] == "failure", reply
    assert reply["content"]["reason"] == "tool-limit", reply
    assert len(llm.requests) == 64, len(llm.requests)
    # three calls made, and from then on the LLM may call no tool (it is offered none, or
    # they stay described with tool_choice "none")
    allowed = [may_call_tools(q) for q in llm.requests]
    assert allowed == [True] * 3 + [False] * 61, allowed
    assert all(offered(q) in ([], ["scripted__echo"]) for q in llm.requests)
    assert "limits.max_tool_calls" in last_tool_result(llm.requests[4])
    echoed = [m["params"]["arguments"]["text"] for m in read_record(record)
              if m.get("method") == "tools/call"]
    assert echoed == ["round 0", "round 1", "round 2"], echoed
    st = stats(s, "looper")
    assert st["tool_calls"] == 3 and st["tool_violations"] == 0 and st["failed"] == 1, st
    # the agent is fine afterwards
    assert ask(s, "looper", "hello again")["content"] == "back to normal"

    # a tool that never answers within the message's own deadline: failure with timeout
    llm.script([calls("scripted__hang")])
    n = len(llm.requests)
    started = time.monotonic()
    reply = ask(s, "hasty", "wait for it")
    took = time.monotonic() - started
    assert reply["performative"] == "failure", reply
    assert reply["content"]["reason"] == "timeout", reply
    assert 1.5 <= took < 6, took
    assert len(llm.requests) == n + 1, "the LLM was asked again past the deadline"
    stop_clean(s)


def test_providers_down_with_and_without_fallback_and_budget(make_server, second):
    down = [f"http://127.0.0.1:{closed_port()}/v1" for _ in range(3)]
    config = tools_config(
        {"primary": provider(down[0], kind="openai", fallback=["backup"]),
         "backup": provider(second.url, kind="openai", model="backup-model"),
         "lost": provider(down[1], kind="openai", fallback=["lost-too"]),
         "lost-too": provider(down[2], kind="openai", model="lost-model")},
        {"scripted": {"command": scripted_cmd()}})
    s = start_with(make_server, config, {
        "resilient": tool_agent("resilient", ["scripted.echo"], provider_name="primary"),
        "stranded": tool_agent("stranded", provider_name="lost"),
        "thrifty": tool_agent("thrifty", provider_name="backup",
                              limits={"token_budget": "40/day"}),
    })
    wait_ready(s, "scripted")

    # the first provider is down: the fallback answers, tool round included
    second.script([calls("scripted__echo", {"text": "via backup"}),
                   {"text": "answered by the backup"}])
    reply = ask(s, "resilient", "anyone there?")
    assert reply["performative"] == "inform", reply
    assert reply["content"] == "answered by the backup", reply
    assert len(second.requests) == 2 and last_tool_result(second.requests[1]) == "via backup"

    # both down: a failure with the reason
    reply = ask(s, "stranded", "anyone there?")
    assert reply["performative"] == "failure", reply
    assert reply["content"]["reason"] == "provider-unreachable", reply
    assert "cannot reach" in reply["content"]["detail"], reply
    assert len(second.requests) == 2
    assert "provider-unreachable" in json.dumps(
        s.admin("GET", "/api/v1/agents/stranded").json()["last_error"]), "no recorded error"

    # a token budget spent by the first answer: the second message fails at once
    second.script([{"text": "first answer", "usage": {"prompt_tokens": 30, "completion_tokens": 20,
                                                      "total_tokens": 50}}])
    assert ask(s, "thrifty", "one")["content"] == "first answer"
    reply = ask(s, "thrifty", "two")
    assert reply["performative"] == "failure", reply
    assert reply["content"]["reason"] == "budget-exhausted", reply
    assert len(second.requests) == 3, "the spent agent still called its provider"
    # each failure is a line in agents.log with its reason; each fallback one in caxton.log
    failed = {e["agent"]: e["reason"] for e in log_events(s) if e.get("event") == "message_failed"}
    assert failed == {"stranded": "provider-unreachable", "thrifty": "budget-exhausted"}, failed
    assert lines_with(s, "LLM provider failed, trying its fallback")
    # the others are unaffected
    second.script([{"text": "still fine"}])
    assert ask(s, "resilient", "again?")["content"] == "still fine"
    stop_clean(s)


# ---- 6. bad tools.mcp_servers settings --------------------------------------------------------


BAD_SERVERS = """\
tools:
  mcp_servers:
    files:
      comand: [node, server.js]
    web:
      url: ftp://127.0.0.1:9/mcp
      command: [node, server.js]
"""


def test_config_validate_refuses_bad_tool_servers(make_server, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_SERVERS)
    r = run_cli("config", "validate", str(path), timeout=30)
    for mark in SANITIZER_MARKS:
        assert mark not in r.stderr, r.stderr[-3000:]
    text = r.stdout + r.stderr
    assert r.returncode == 1, text
    assert "tools.mcp_servers.files: unknown setting \"comand\"; did you mean 'command'?" in text
    assert "tools.mcp_servers.files: no command" in text, text
    assert "tools.mcp_servers.web.url: expected an http:// or https:// address" in text, text
    assert "tools.mcp_servers.web: both command and url" in text, text

    s = make_server(config=BAD_SERVERS, start=False)
    s.start(wait=False)
    code = s.proc.wait(timeout=30)
    assert code == 2, s.stderr()
    assert "tools.mcp_servers" in s.stderr(), s.stderr()
    assert not os.path.exists(os.path.join(s.data_dir, "run", "api.url"))
    s.assert_clean()


# ---- 7. agent files naming tools that do not exist --------------------------------------------


@needs_npm
def test_agent_naming_missing_tools_fails_to_load(make_server, llm, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    config = tools_config({"openai": provider(llm.url)},
                          {"files": {"command": filesystem_cmd(shared)}})
    s = start_with(make_server, config, {})
    wait_ready(s, "files")
    directory = os.path.join(s.data_dir, "agents")
    nope = write_file(directory, "nope.md", tool_agent("nope", ["files.nope"]))
    write_file(directory, "ghosty.md", tool_agent("ghosty", ["ghost.tool"]))
    write_file(directory, "reader.md", tool_agent("reader", ["files.read_text_file"]))

    doc = wait_agent(s, "nope", "failed")
    assert 'unknown tool "files.nope": its MCP server does not provide it' in doc["state_reason"]
    doc = wait_agent(s, "ghosty", "failed")
    assert 'unknown tool "ghost.tool": no MCP server named "ghost"' in doc["state_reason"], doc
    wait_agent(s, "reader", "active")  # the good file next to them loads
    reloads = {e["agent"]: e for e in log_events(s) if e.get("event") == "hot_reload"}
    assert reloads["nope"]["result"] == "failed", reloads
    r = cli(s, "agents", "status", "nope")
    assert "its MCP server does not provide it" in r.stdout, r.stdout + r.stderr

    # offline, tools cannot be checked: warnings only
    r = cli(s, "agents", "validate", "--config", s.config_path, nope,
            os.path.join(directory, "ghosty.md"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'warning: tools[0]: cannot check tool "files.nope" offline' in r.stdout, r.stdout
    assert 'warning: tools[0]: cannot check tool "ghost.tool" offline' in r.stdout, r.stdout
    assert "error:" not in r.stdout + r.stderr, r.stdout
    stop_clean(s)
