"""LLM provider types and fallback, end to end.

First the scripted server itself (llm_server.ScriptedLLM): one server speaks
the OpenAI, Anthropic and Ollama shapes by path, tool call steps included,
so the server tests below can trust it. Then the real `caxton` binary with
agents on an `anthropic` and an `ollama` provider (the request reaches
/v1/messages with x-api-key and anthropic-version, or /api/chat), and with a
provider that fails over to its `fallback`: the reply comes from the second
provider, with the second provider's own model, and a 401 does not fall
back. `caxton config validate` reports bad fallback lists.
"""
import json
import urllib.error
import urllib.request

import pytest

from conftest import SANITIZER_MARKS, run_cli
from llm_server import ScriptedLLM
from messaging_util import request_msg, send, write_agents


@pytest.fixture
def llm():
    srv = ScriptedLLM().start()
    yield srv
    srv.stop()


@pytest.fixture
def backup():
    srv = ScriptedLLM().start()
    yield srv
    srv.stop()


def post(url, body):
    """POST body as JSON; (status, decoded answer)."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


ECHO_CALL = {"name": "everything__echo", "arguments": {"message": "hi"}}
ASK = {"model": "m", "messages": [{"role": "user", "content": "say hi"}]}


# ---- the scripted server ----------------------------------------------------------------------


def test_scripted_server_speaks_each_shape(llm):
    llm.script([{"tool_calls": [ECHO_CALL]}] * 3 + [{"text": "plain"}] * 3)
    status, openai = post(llm.url + "/chat/completions", ASK)
    assert status == 200, openai
    msg = openai["choices"][0]["message"]
    assert msg["content"] is None and openai["choices"][0]["finish_reason"] == "tool_calls"
    call = msg["tool_calls"][0]
    assert call["type"] == "function" and call["id"].startswith("call_"), call
    assert call["function"] == {"name": "everything__echo", "arguments": '{"message": "hi"}'}

    status, claude = post(llm.anthropic_url + "/v1/messages",
                          {"model": "m", "max_tokens": 10, "system": "be brief",
                           "messages": [{"role": "user", "content": "say hi"}]})
    assert status == 200 and claude["type"] == "message", claude
    assert claude["stop_reason"] == "tool_use", claude
    use = claude["content"][0]
    assert use["type"] == "tool_use" and use["id"].startswith("toolu_"), use
    assert use["name"] == "everything__echo" and use["input"] == {"message": "hi"}, use
    assert set(claude["usage"]) == {"input_tokens", "output_tokens"}, claude

    status, local = post(llm.ollama_url + "/api/chat", dict(ASK, stream=False))
    assert status == 200 and local["done"] is True, local
    assert local["message"]["tool_calls"] == [
        {"function": {"name": "everything__echo", "arguments": {"message": "hi"}}}], local
    assert "prompt_eval_count" in local and "eval_count" in local, local

    # text answers, echoing the last user text in each shape
    assert post(llm.url + "/chat/completions", ASK)[1]["choices"][0]["message"]["content"] \
        == "plain"
    claude = post(llm.anthropic_url + "/v1/messages",
                  {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]})[1]
    assert claude["content"] == [{"type": "text", "text": "plain"}], claude
    assert claude["stop_reason"] == "end_turn", claude
    assert post(llm.ollama_url + "/api/chat", ASK)[1]["message"]["content"] == "plain"
    assert post(llm.anthropic_url + "/v1/messages", {
        "messages": [{"role": "user", "content": "first"},
                     {"role": "assistant", "content": [{"type": "tool_use", "id": "t",
                                                        "name": "n", "input": {}}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                                   "content": "r"}]}]})[1]["content"] \
        == [{"type": "text", "text": "echo: first"}]

    assert llm.paths == ["/v1/chat/completions", "/v1/messages", "/api/chat"] * 2 + \
        ["/v1/messages"], llm.paths
    assert llm.requests[1]["system"] == "be brief", llm.requests[1]


def test_scripted_server_errors_in_each_shape(llm):
    llm.script([{"status": 529}, {"status": 429, "message": "slow down"}, {"status": 500},
                {"status": 404, "message": "no such model"}])
    status, body = post(llm.anthropic_url + "/v1/messages", ASK)
    assert status == 529 and body == {"type": "error", "error": {
        "type": "overloaded_error", "message": "scripted error 529"}}, body
    status, body = post(llm.anthropic_url + "/v1/messages", ASK)
    assert status == 429 and body["error"]["type"] == "rate_limit_error", body
    status, body = post(llm.url + "/chat/completions", ASK)
    assert status == 500 and body["error"]["type"] == "server_error", body
    status, body = post(llm.ollama_url + "/api/chat", ASK)
    assert status == 404 and body == {"error": "no such model"}, body
    status, body = post(llm.root_url + "/api/generate", ASK)
    assert status == 404, body
    assert llm.paths == ["/v1/messages", "/v1/messages", "/v1/chat/completions", "/api/chat"]


def test_scripted_server_tool_call_details(llm):
    llm.script([
        {"tool_calls": [{"name": "a", "arguments": "{not json", "id": "mine"}], "text": "so"},
        {"tool_calls": [{"name": "a", "arguments": '{"k": 1}'}, {"name": "b"}]},
        {"tool_calls": [{"name": "a", "arguments": {"k": 1}, "id": "given"}]},
    ])
    msg = post(llm.url + "/chat/completions", ASK)[1]["choices"][0]["message"]
    assert msg["content"] == "so", msg
    assert msg["tool_calls"][0]["id"] == "mine", msg
    assert msg["tool_calls"][0]["function"]["arguments"] == "{not json", msg
    claude = post(llm.anthropic_url + "/v1/messages", ASK)[1]
    assert [b["type"] for b in claude["content"]] == ["tool_use", "tool_use"], claude
    assert claude["content"][0]["input"] == {"k": 1}, claude
    assert claude["content"][1]["input"] == {}, claude
    assert claude["content"][0]["id"] != claude["content"][1]["id"], claude
    local = post(llm.ollama_url + "/api/chat", ASK)[1]
    assert local["message"]["tool_calls"][0]["id"] == "given", local


# ---- the server with each provider type -------------------------------------------------------


def agent_on(name, provider, model=None):
    lines = ["---", f"name: {name}", "version: 1.0.0", "capabilities: [chat]", "llm:",
             f"  provider: {provider}"]
    if model:
        lines.append(f"  model: {model}")
    lines += ["---", f"You are {name}. Answer briefly."]
    return "\n".join(lines) + "\n"


def start_with(make_server, config, agents):
    s = make_server(config=config, start=False)
    write_agents(s.data_dir, agents)
    return s.start()


def ask(s, agent, text):
    r = send(s, request_msg(agent, text), wait="5s")
    assert r.status == 200, r
    return r.json()["reply"]


def stop_clean(s):
    assert s.stop() == 0, s.stderr()
    s.assert_clean()


def test_anthropic_and_ollama_providers(make_server, llm):
    config = ("llm:\n  providers:\n"
              "    claude:\n      type: anthropic\n"
              f"      base_url: {llm.anthropic_url}\n"
              "      api_key: sk-ant-test-0123456789\n      model: claude-test\n"
              "      retries: 0\n"
              "    ollama:\n"
              f"      base_url: {llm.ollama_url}\n      model: llama-test\n      retries: 0\n")
    s = start_with(make_server, config, {"poet": agent_on("poet", "claude"),
                                         "local": agent_on("local", "ollama")})
    llm.script([{"text": "from claude"}, {"text": "from ollama"}])
    reply = ask(s, "poet", "write a line")
    assert reply["performative"] == "inform" and reply["content"] == "from claude", reply
    reply = ask(s, "local", "count to two")
    assert reply["performative"] == "inform" and reply["content"] == "from ollama", reply
    assert llm.paths == ["/v1/messages", "/api/chat"], llm.paths
    claude, local = llm.requests
    assert claude["model"] == "claude-test" and claude["max_tokens"] == 1024, claude
    assert claude["system"].strip() == "You are poet. Answer briefly.", claude
    assert all(m["role"] in ("user", "assistant") for m in claude["messages"]), claude
    assert "write a line" in json.dumps(claude["messages"][-1]), claude
    headers = {k.lower(): v for k, v in llm.headers[0].items()}
    assert headers["x-api-key"] == "sk-ant-test-0123456789", headers
    assert headers["anthropic-version"] == "2023-06-01", headers
    assert "authorization" not in headers, headers
    assert local["model"] == "llama-test" and local["stream"] is False, local
    assert local["messages"][0]["role"] == "system", local
    stop_clean(s)


def fallback_config(first, second, first_key="sk-first-0123456789"):
    return ("llm:\n  providers:\n"
            "    openai:\n"
            f"      base_url: {first.url}\n      api_key: {first_key}\n      retries: 0\n"
            "      fallback: [claude]\n"
            "    claude:\n      type: anthropic\n"
            f"      base_url: {second.anthropic_url}\n      api_key: sk-ant-second-0123456789\n"
            "      model: claude-backup\n      retries: 0\n")


def test_fallback_answers_when_the_first_provider_fails(make_server, llm, backup):
    s = start_with(make_server, fallback_config(llm, backup),
                   {"helper": agent_on("helper", "openai", model="agent-model")})
    llm.script([{"status": 500, "message": "the first one is down"}, {"status": 401}])
    backup.script([{"text": "answered by the backup"}])
    reply = ask(s, "helper", "are you there")
    assert reply["performative"] == "inform", reply
    assert reply["content"] == "answered by the backup", reply
    assert llm.requests[0]["model"] == "agent-model", llm.requests
    assert backup.paths == ["/v1/messages"], backup.paths
    assert backup.requests[0]["model"] == "claude-backup", backup.requests
    # our request's fault: no fallback, the agent's sender gets the failure
    reply = ask(s, "helper", "again")
    assert reply["performative"] == "failure", reply
    assert reply["content"]["reason"] == "provider-error", reply
    assert "HTTP 401 from openai" in json.dumps(reply["content"]), reply
    assert len(backup.requests) == 1, backup.requests
    stop_clean(s)


def test_config_validate_reports_fallback_problems(llm, tmp_path):
    config = ("llm:\n  providers:\n"
              "    openai:\n"
              f"      base_url: {llm.url}\n      model: m\n      fallback: [openai, nowhere]\n"
              "    a:\n      type: ollama\n      model: m\n      fallback: [b]\n"
              "    b:\n      type: ollama\n      model: m\n      fallback: [a]\n")
    path = tmp_path / "caxton.yaml"
    path.write_text(config)
    r = run_cli("config", "validate", str(path), timeout=30)
    for mark in SANITIZER_MARKS:
        assert mark not in r.stderr, r.stderr[-3000:]
    text = r.stdout + r.stderr
    assert r.returncode != 0, text
    assert "llm.providers.openai.fallback: 'openai' is this provider itself" in text, text
    assert "llm.providers.openai.fallback: no provider named \"nowhere\"" in text, text
    assert "llm.providers.b.fallback: 'a' leads back to itself (a -> b -> a)" in text, text
