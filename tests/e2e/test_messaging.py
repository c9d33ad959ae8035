"""FIPA-ACL messaging end to end, as an operator meets it: messages over the
REST API (admin token) and the `caxton messages` / `caxton conversations`
commands, configuration agents answering through a scripted
OpenAI-compatible provider on loopback (llm_server.ScriptedLLM).

Covered: replies with and without ?wait, the LLM context (system prompt and
conversation history), routing by receiver and capability (round-robin,
broadcast, least-loaded, no provider), refusals at the door, full queues,
drains and requeues, LLM faults turned into failure replies and dead
letters, reply_by deadlines, protocol checks and cancel, redelivery after
kill -9, conversation time-outs, metrics, SIGTERM with waiting clients,
duplicate message ids, protocol steps of refused messages, broadcast answers,
?wait with no value, and a long queue failing while the API answers.

Slow answers are held with a gate (llm_server "gate" steps) rather than a
fixed delay wherever a test needs something to stay in flight, so a loaded
machine cannot make the race go the other way.
"""
import json
import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from llm_server import ScriptedLLM
from messaging_util import (agent_action, agent_md, cli, cli_json, config_text, conversation,
                            conversation_messages, dead_letters, error_of, get_json, log_events,
                            metric, poll, queue, replies_to, request_msg, send, status_counts,
                            wait_reply, write_agents)


@pytest.fixture
def llm():
    srv = ScriptedLLM().start()
    yield srv
    srv.stop()


@pytest.fixture
def start(llm, make_server):
    """start(agents={name: text}, messaging={...}, extra="") -> a started Server.

    Depends on llm first so that the servers stop before the provider does."""
    def factory(agents=None, messaging=None, extra="", subdir=None, provider_timeout="2s"):
        s = make_server(config=config_text(llm.url, messaging, extra, provider_timeout),
                        start=False, subdir=subdir)
        write_agents(s.data_dir, agents or {})
        s.start()
        return s
    return factory


def rfc3339(dt):
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def failure_reason(reply):
    assert reply["performative"] == "failure", reply
    assert isinstance(reply["content"], dict), reply
    return reply["content"]["reason"]


def stop_clean(s):
    assert s.stop() == 0, s.stderr()[-3000:]
    s.assert_clean()


# ---- happy path ----------------------------------------------------------------------------------


def test_wait_returns_the_reply(start, llm):
    s = start(agents={"helper": agent_md("helper")})
    llm.script([{"text": "the scripted answer"}])
    m = request_msg("helper", "what is up?", conversation_id="conv-happy-1")
    r = send(s, m, wait="5s")
    assert r.status == 200, r
    doc = r.json()
    reply = doc["reply"]
    assert reply["performative"] == "inform", reply
    assert reply["content"] == "the scripted answer", reply
    assert reply["in_reply_to"] == doc["message_id"], doc
    assert reply["conversation_id"] == "conv-happy-1" == doc["conversation_id"], doc
    assert reply["sender"] == "helper" and reply["receiver"] == "external:api", reply
    stop_clean(s)


def test_cli_send_wait_prints_the_answer(start, llm):
    s = start(agents={"helper": agent_md("helper")})
    llm.script([{"text": "answer for the operator"}, {"text": "as json"}])
    r = cli(s, "messages", "send", "--to", "helper", "--content", "ping", "--wait", "5s")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "answer for the operator", r.stdout
    r, doc = cli_json(s, "messages", "send", "--to", "helper", "--content", "ping again",
                      "--wait", "5s")
    assert r.returncode == 0, r.stderr
    assert doc["reply"]["content"] == "as json" and doc["reply"]["performative"] == "inform", doc
    assert doc["reply"]["in_reply_to"] == doc["message_id"], doc
    stop_clean(s)


def test_accepted_without_wait_then_conversation_has_both(start, llm):
    s = start(agents={"helper": agent_md("helper")})
    llm.script([{"text": "later answer"}])
    r = send(s, request_msg("helper", "no waiting"))
    assert r.status == 202, r
    doc = r.json()
    assert set(doc) >= {"message_id", "conversation_id", "routed_to"}, doc
    assert doc["routed_to"] == ["helper"], doc
    cid, mid = doc["conversation_id"], doc["message_id"]
    reply = wait_reply(s, cid, mid)
    assert reply["performative"] == "inform" and reply["content"] == "later answer", reply
    msgs = conversation_messages(s, cid)
    assert [m["performative"] for m in msgs] == ["request", "inform"], msgs
    assert msgs[0]["message_id"] == mid and msgs[0]["content"] == "no waiting", msgs
    assert all("at" in m for m in msgs), msgs
    conv = poll(lambda: (c := conversation(s, cid))["state"] == "completed" and c,
                what="conversation completed")
    assert conv["message_count"] == 2, conv
    assert set(conv["participants"]) == {"external:api", "helper"}, conv
    # the operator's view of the same conversation
    r, shown = cli_json(s, "conversations", "show", cid)
    assert r.returncode == 0, r.stderr
    assert shown["conversation"]["state"] == "completed", shown
    assert [m["performative"] for m in shown["messages"]] == ["request", "inform"], shown
    r = cli(s, "conversations", "show", cid)
    assert r.returncode == 0 and "later answer" in r.stdout and "completed" in r.stdout, r.stdout
    r, listed = cli_json(s, "conversations", "list", "--agent", "helper")
    assert r.returncode == 0, r.stderr
    assert cid in [c["conversation_id"] for c in listed["items"]], listed
    stop_clean(s)


def test_llm_sees_rendered_prompt_and_history(start, llm):
    body = ("You are {{name}}. Speak in a {{parameters.tone}} tone, "
            "at most {{parameters.words}} words.")
    s = start(agents={"poet": agent_md("poet", parameters={"tone": "dry", "words": 12},
                                       body=body)})
    llm.script([{"text": "first answer"}, {"text": "second answer"}])
    r = send(s, request_msg("poet", "first question"), wait="5s")
    assert r.status == 200, r
    cid = r.json()["conversation_id"]
    r = send(s, request_msg("poet", "second question", conversation_id=cid), wait="5s")
    assert r.status == 200 and r.json()["reply"]["content"] == "second answer", r
    reqs = llm.requests
    assert len(reqs) == 2, reqs
    first, second = reqs
    assert first["model"] == "m", first
    system = first["messages"][0]
    assert system["role"] == "system", system
    assert system["content"].strip() == "You are poet. Speak in a dry tone, at most 12 words.", \
        system
    assert first["messages"][-1]["role"] == "user"
    assert "first question" in first["messages"][-1]["content"], first
    # the second call carries the earlier exchange, oldest first, then the new message
    msgs = second["messages"]
    assert msgs[0] == system, msgs
    texts = [(m["role"], m["content"]) for m in msgs[1:]]
    q1 = next(i for i, (role, t) in enumerate(texts) if role == "user" and "first question" in t)
    a1 = next(i for i, (role, t) in enumerate(texts) if role == "assistant" and t == "first answer")
    assert q1 < a1 < len(texts) - 1, texts
    assert texts[-1][0] == "user" and "second question" in texts[-1][1], texts
    assert sum("second question" in t for _, t in texts) == 1, texts
    stop_clean(s)


# ---- routing -------------------------------------------------------------------------------------


def two_translators(**kw):
    return {"trans-one": agent_md("trans-one", ("translate", "one-only"), **kw),
            "trans-two": agent_md("trans-two", ("translate",), **kw)}


def test_round_robin_alternates(start, llm):
    s = start(agents=two_translators())
    routed = []
    for i in range(4):
        r = send(s, request_msg(capability="translate", content=f"text {i}"))
        assert r.status == 202, r
        routed.append(r.json()["routed_to"])
    assert all(len(x) == 1 for x in routed), routed
    names = [x[0] for x in routed]
    assert set(names) == {"trans-one", "trans-two"}, names
    assert names[0] != names[1] and names[0] == names[2] and names[1] == names[3], names
    stop_clean(s)


def test_broadcast_reaches_every_provider(start, llm):
    s = start(agents=two_translators())
    r = send(s, request_msg(capability="translate", content="to all"), strategy="broadcast")
    assert r.status == 202, r
    doc = r.json()
    assert sorted(doc["routed_to"]) == ["trans-one", "trans-two"], doc
    poll(lambda: len(replies_to(s, doc["conversation_id"], doc["message_id"])) == 2,
         what="both providers answered")
    replies = replies_to(s, doc["conversation_id"], doc["message_id"])
    assert sorted(m["sender"] for m in replies) == ["trans-one", "trans-two"], replies
    assert all(m["performative"] == "inform" for m in replies), replies
    assert llm.wait_for_requests(2, timeout=1)
    stop_clean(s)


def test_least_loaded_avoids_the_busy_provider(start, llm):
    s = start(agents=two_translators())
    gate = threading.Event()  # the busy provider's answer is held until the quick ones are in
    llm.script([{"gate": gate, "text": "slow"}])
    try:
        r = send(s, request_msg(capability="translate", content="slow one"),
                 strategy="least-loaded")
        assert r.status == 202, r
        busy = r.json()["routed_to"][0]
        slow_cid, slow_id = r.json()["conversation_id"], r.json()["message_id"]
        assert llm.wait_for_requests(1, timeout=10)
        idle = {"trans-one", "trans-two"}.difference([busy]).pop()
        for i in range(2):
            r = send(s, request_msg(capability="translate", content=f"quick {i}"), wait="10s",
                     strategy="least-loaded")
            assert r.status == 200, r
            assert r.json()["reply"]["sender"] == idle, (busy, r.json())
        assert queue(s, busy)["in_flight"] == 1, queue(s, busy)  # still busy all along
    finally:
        gate.set()
    assert wait_reply(s, slow_cid, slow_id)["content"] == "slow"
    poll(lambda: queue(s, busy)["in_flight"] == 0 and queue(s, busy)["depth"] == 0,
         what="the slow answer finished")
    stop_clean(s)


def test_capability_without_provider_fails_at_once(start, llm):
    s = start(agents=two_translators())
    r = send(s, request_msg(capability="translation", content="anyone?"))
    assert r.status == 200, r
    doc = r.json()
    reply = doc["reply"]
    assert failure_reason(reply) == "no-provider", reply
    assert reply["content"]["capability"] == "translation", reply
    assert "translate" in reply["content"]["similar"], reply
    assert reply["in_reply_to"] == doc["message_id"], doc
    assert doc["routed_to"] == [], doc
    r = cli(s, "messages", "send", "--capability", "translation", "--content", "x")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "translation" in r.stderr and "translate" in r.stderr, r.stderr
    assert llm.requests == []
    stop_clean(s)


def test_failed_agent_does_not_accept(start, llm):
    broken = "---\nname: broken\nversion: 1.0.0\nllm:\n  provider: openai\n---\nno capabilities\n"
    s = start(agents={"broken": broken, "helper": agent_md("helper")})
    assert get_json(s, "/api/v1/agents/broken")["state"] == "failed"
    r = send(s, request_msg("broken", "are you there?"))
    assert r.status == 409, r
    err = error_of(r)
    assert err["code"] == "AGENT_NOT_ACCEPTING" and "failed" in err["message"], err
    assert llm.requests == [] and status_counts(s)["accepted"] == 0
    stop_clean(s)


def test_unknown_receiver_is_404_with_suggestion(start, llm):
    s = start(agents={"helper": agent_md("helper")})
    r = send(s, request_msg("helpr"))
    assert r.status == 404, r
    err = error_of(r)
    assert err["code"] == "AGENT_NOT_FOUND", err
    assert "helpr" in err["message"] and "did you mean 'helper'" in err["message"], err
    stop_clean(s)


# ---- refusals at the door ------------------------------------------------------------------------

BAD_MESSAGES = [
    ("unknown-performative", {"performative": "reqest", "receiver": "helper", "content": "x"},
     422, "INVALID_MESSAGE", "performative", "did you mean 'request'"),
    ("receiver-and-capability", {"performative": "request", "receiver": "helper",
                                 "capability": "chat", "content": "x"},
     422, "INVALID_MESSAGE", "receiver", "both receiver and capability"),
    ("neither", {"performative": "request", "content": "x"},
     422, "INVALID_MESSAGE", "receiver", "neither receiver nor capability"),
    ("no-content", {"performative": "request", "receiver": "helper"},
     422, "INVALID_MESSAGE", "content", "content is required"),
    ("oversized", {"performative": "request", "receiver": "helper", "content": "x" * 2000},
     413, "MESSAGE_TOO_LARGE", None, "limit"),
    ("not-an-object", [{"performative": "request"}],
     422, "INVALID_MESSAGE", "message", "JSON object"),
    ("sender-is-receiver", {"performative": "request", "sender": "external:bob",
                            "receiver": "external:bob", "content": "x"},
     422, "INVALID_MESSAGE", "receiver", "own sender"),
    ("sender-not-external", {"performative": "request", "sender": "helper",
                             "receiver": "helper", "content": "x"},
     422, "INVALID_MESSAGE", "sender", "external:"),
    ("unknown-field", {"performative": "request", "recever": "helper", "content": "x"},
     422, "INVALID_MESSAGE", "recever", "did you mean 'receiver'"),
    ("reply-to-nothing", {"performative": "inform", "receiver": "helper", "content": "x",
                          "in_reply_to": "no-such-message"},
     404, "CONVERSATION_NOT_FOUND", None, "no-such-message"),
    ("reply-by-malformed", {"performative": "request", "receiver": "helper", "content": "x",
                            "reply_by": "tomorrow at noon"},
     422, "INVALID_MESSAGE", "reply_by", "RFC 3339"),
]


@pytest.fixture
def door(start):
    return start(agents={"helper": agent_md("helper")},
                 messaging={"max_message_size": "1KB"})


@pytest.mark.parametrize("case", BAD_MESSAGES, ids=[c[0] for c in BAD_MESSAGES])
def test_bad_message_refused(door, llm, case):
    _, body, status, code, field, text = case
    r = send(door, body)
    assert r.status == status, r
    err = error_of(r)
    assert err["code"] == code, err
    if field is not None:
        assert err["details"]["field"] == field, err
    elif code == "MESSAGE_TOO_LARGE":
        assert err["details"]["field"] in ("content", "message"), err
    assert text in err["message"], err
    assert llm.requests == []
    counts = status_counts(door)
    assert counts["accepted"] == 0 and counts["journal_pending"] == 0, counts
    stop_clean(door)


def test_invalid_json_body_names_line_and_column(door, llm):
    r = send(door, None, raw='{"performative": "request",\n  "receiver": }')
    assert r.status == 400, r
    err = error_of(r)
    assert err["code"] == "INVALID_JSON", err
    assert err["details"]["line"] == 2 and err["details"]["column"] > 0, err
    assert "line 2" in err["message"], err
    stop_clean(door)


@pytest.mark.parametrize("query,parameter", [({"wait": "forever"}, "wait"),
                                             ({"wait": "6m"}, "wait"),
                                             ({"strategy": "bogus"}, "strategy")])
def test_bad_query_parameter(door, llm, query, parameter):
    r = send(door, request_msg("helper"), **query)
    assert r.status == 400, r
    err = error_of(r)
    assert err["code"] == "INVALID_PARAMETER" and err["details"]["parameter"] == parameter, err
    stop_clean(door)


def test_tokens_are_checked(door, llm):
    r = door.admin("POST", "/api/v1/tokens", body={"role": "viewer", "name": "reader"})
    assert r.status in (200, 201), r
    viewer = r.json()["token"]
    r = send(door, request_msg("helper"), token=viewer)
    assert r.status == 403, r
    r = door.request("POST", "/api/v1/messages", body=request_msg("helper"))
    assert r.status == 401, r
    # a viewer may read conversations
    r = door.request("GET", "/api/v1/conversations", token=viewer)
    assert r.status == 200, r
    assert llm.requests == []
    stop_clean(door)


# ---- full queues, drains, requeues ---------------------------------------------------------------


def fill_suspended(s, name, count, capability=None):
    """Sends count requests to a suspended agent; returns [(message_id, conversation_id)]."""
    sent = []
    for i in range(count):
        m = request_msg(name, f"queued {i}") if capability is None else \
            request_msg(capability=capability, content=f"queued {i}")
        r = send(s, m)
        assert r.status == 202, r
        sent.append((r.json()["message_id"], r.json()["conversation_id"]))
    return sent


def test_queue_full_then_drain_to_dead_letters(start, llm):
    s = start(agents={"slowpoke": agent_md("slowpoke", ("chat",))},
              messaging={"queue_size": 2})
    assert agent_action(s, "slowpoke", "suspend")["state"] == "suspended"
    sent = fill_suspended(s, "slowpoke", 2)
    r = send(s, request_msg("slowpoke", "one too many"))
    assert r.status == 429, r
    err = error_of(r)
    assert err["code"] == "QUEUE_FULL", err
    assert r.header("Retry-After") and int(r.header("Retry-After")) >= 1, r.headers
    assert "slowpoke" in err["message"], err

    r, q = cli_json(s, "conversations", "queue-status", "slowpoke")
    assert r.returncode == 1, (r.stdout, r.stderr)  # a full queue is a problem found
    assert q["depth"] == 2 and q["capacity"] == 2, q
    r = cli(s, "conversations", "queue-status", "slowpoke")
    assert "2 of 2 queued" in r.stdout and "full" in r.stdout, r.stdout

    r = cli(s, "conversations", "drain-queue", "slowpoke")
    assert r.returncode == 0, r.stderr
    assert "drained 2 messages" in r.stdout, r.stdout
    assert queue(s, "slowpoke")["depth"] == 0
    dead = dead_letters(s, "slowpoke")
    assert sorted(d["message"]["message_id"] for d in dead) == sorted(m for m, _ in sent), dead
    assert all(d["reason"] == "drained" for d in dead), dead
    for mid, cid in sent:
        reply = wait_reply(s, cid, mid)
        assert failure_reason(reply) == "drained", reply
        assert conversation(s, cid)["state"] == "completed"
    r, listed = cli_json(s, "conversations", "dead-letters", "--agent", "slowpoke")
    assert r.returncode == 0 and len(listed["items"]) == 2, (r.stderr, listed)
    # the queue takes messages again
    assert send(s, request_msg("slowpoke", "after the drain")).status == 202
    assert llm.requests == []
    counts = status_counts(s)
    assert counts["journal_pending"] == 1, counts
    stop_clean(s)


def test_drain_requeue_to_another_provider(start, llm):
    agents = {"slowpoke": agent_md("slowpoke", ("chat", "smalltalk")),
              "backup": agent_md("backup", ("chat",)),
              "loner": agent_md("loner", ("accounting",))}
    s = start(agents=agents, messaging={"queue_size": 5})
    agent_action(s, "slowpoke", "suspend")
    sent = fill_suspended(s, "slowpoke", 3)
    # an agent that shares no capability cannot take them
    r = cli(s, "conversations", "drain-queue", "slowpoke", "--requeue-to", "loner")
    assert r.returncode != 0, r.stdout
    assert "loner" in r.stderr and "capabilit" in r.stderr, r.stderr
    assert queue(s, "slowpoke")["depth"] == 3
    r = s.admin("POST", "/api/v1/agents/slowpoke/queue/drain", body={"requeue_to": "loner"})
    assert r.status == 422 and error_of(r)["details"]["field"] == "requeue_to", r
    # an agent that shares one answers them
    r, doc = cli_json(s, "conversations", "drain-queue", "slowpoke", "--requeue-to", "backup")
    assert r.returncode == 0, r.stderr
    assert doc["drained"] == 3 and doc["requeued"] == 3 and doc["dead_lettered"] == 0, doc
    for mid, cid in sent:
        reply = wait_reply(s, cid, mid)
        assert reply["performative"] == "inform" and reply["sender"] == "backup", reply
    assert dead_letters(s) == []
    assert len(llm.requests) == 3
    poll(lambda: status_counts(s)["journal_pending"] == 0, what="journal emptied")
    stop_clean(s)


# ---- LLM faults ----------------------------------------------------------------------------------

SLOW_S = 30  # a provider this slow (its timeout is longer) is cut off by the agent's 1s limit
FAULTS = [
    # id, steps, agent limits, accepted reasons
    ("rate-limited", [{"status": 429}, {"status": 429}], None, {"rate-limited"}),
    ("server-error", [{"status": 500}, {"status": 500}], None, {"provider-error"}),
    ("slow", [{"delay": SLOW_S}], {"max_execution_time": "1s"}, {"timeout"}),
    ("malformed", [{"body": "this is not JSON"}], None, {"malformed-response"}),
    ("no-choices", [{"choices": []}], None, {"empty-response"}),
    ("hang-up", [{"close": True}, {"close": True}], None,
     {"provider-unreachable", "provider-error"}),
]


@pytest.mark.parametrize("case", FAULTS, ids=[c[0] for c in FAULTS])
def test_llm_fault_becomes_failure_reply(start, llm, case):
    _, steps, limits, reasons = case
    s = start(agents={"fragile": agent_md("fragile", limits=limits)},
              provider_timeout="60s" if limits else "2s")
    llm.script(steps)
    t0 = time.monotonic()
    r = send(s, request_msg("fragile", "will this work?"), wait="10s", timeout=20)
    took = time.monotonic() - t0
    assert r.status == 200, r
    doc = r.json()
    reply = doc["reply"]
    assert failure_reason(reply) in reasons, reply
    assert reply["content"]["detail"], reply
    assert reply["in_reply_to"] == doc["message_id"], doc
    if limits:
        assert took < SLOW_S / 2, took  # the agent's time limit, not the provider's answer
    assert llm.pending == 0, "every scripted attempt was used (retries: 1)"
    conv = conversation(s, doc["conversation_id"])
    assert conv["state"] == "completed", conv
    dead = dead_letters(s, "fragile")
    assert [d["message"]["message_id"] for d in dead] == [doc["message_id"]], dead
    assert dead[0]["reason"] == reply["content"]["reason"], dead
    summary = get_json(s, "/api/v1/agents/fragile")
    assert summary["stats"]["failed"] == 1 and summary["last_error"], summary
    poll(lambda: status_counts(s)["journal_pending"] == 0, what="journal emptied")
    stop_clean(s)


def test_rate_limit_retry_after_is_honoured(start, llm):
    s = start(agents={"patient": agent_md("patient")})
    llm.script([{"status": 429, "headers": {"Retry-After": "1"}}, {"text": "worth the wait"}])
    t0 = time.monotonic()
    r = send(s, request_msg("patient", "hello"), wait="10s", timeout=20)
    took = time.monotonic() - t0
    assert r.status == 200, r
    reply = r.json()["reply"]
    assert reply["performative"] == "inform" and reply["content"] == "worth the wait", reply
    assert took >= 0.9, took
    assert len(llm.requests) == 2
    assert dead_letters(s) == []
    stop_clean(s)


def test_dead_letter_requeue_after_fixing_the_provider(start, llm):
    s = start(agents={"fragile": agent_md("fragile")})
    llm.script([{"status": 500}, {"status": 500}])
    r = send(s, request_msg("fragile", "try me"), wait="10s", timeout=20)
    assert r.status == 200 and failure_reason(r.json()["reply"]) == "provider-error", r
    mid, cid = r.json()["message_id"], r.json()["conversation_id"]
    r, listed = cli_json(s, "conversations", "dead-letters")
    assert r.returncode == 0, r.stderr
    (dead,) = listed["items"]
    assert dead["message"]["message_id"] == mid and dead["reason"] == "provider-error", dead
    r = cli(s, "conversations", "dead-letters")
    assert "provider-error" in r.stdout and "fragile" in r.stdout, r.stdout
    llm.script([{"text": "fixed now"}])
    r = cli(s, "conversations", "dead-letters", "--requeue", str(dead["id"]))
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "requeued dead letter" in r.stdout and "fragile" in r.stdout, r.stdout
    answer = poll(lambda: [m for m in replies_to(s, cid, mid) if m["performative"] == "inform"],
                  what="the requeued message answered")
    assert answer[0]["content"] == "fixed now", answer
    assert dead_letters(s) == []
    r = cli(s, "conversations", "dead-letters", "--requeue", str(dead["id"]))
    assert r.returncode != 0, r.stdout  # it is gone
    stop_clean(s)


def test_dead_letter_purge(start, llm):
    s = start(agents={"fragile": agent_md("fragile")})
    llm.script([{"body": "{"}])
    r = send(s, request_msg("fragile", "x"), wait="10s")
    assert failure_reason(r.json()["reply"]) == "malformed-response", r
    (dead,) = dead_letters(s)
    r = cli(s, "conversations", "dead-letters", "--purge", str(dead["id"]))
    assert r.returncode == 0 and "purged" in r.stdout, (r.stdout, r.stderr)
    assert dead_letters(s) == []
    r = s.admin("POST", "/api/v1/dead-letters/0/requeue")
    assert r.status == 404 and error_of(r)["code"] == "DEAD_LETTER_NOT_FOUND", r
    stop_clean(s)


# ---- reply_by ------------------------------------------------------------------------------------


def test_reply_by_deadline_fails_a_slow_answer(start, llm):
    # the provider answers 8 s late (its timeout is longer); reply_by is 2 s away
    s = start(agents={"sloth": agent_md("sloth")}, provider_timeout="60s")
    llm.script([{"delay": 8, "text": "too late"}])
    deadline = rfc3339(datetime.now(timezone.utc) + timedelta(seconds=2))
    t0 = time.monotonic()
    r = send(s, request_msg("sloth", "quick!", reply_by=deadline), wait="30s", timeout=40)
    took = time.monotonic() - t0
    assert r.status == 200, r
    assert failure_reason(r.json()["reply"]) == "timeout", r
    assert 1.0 <= took < 6, took  # at the deadline, well before the provider's answer
    doc = r.json()
    # the late answer never follows: once the provider has answered (to nobody), the
    # conversation still holds the request and the failure only
    assert len(llm.requests) == 1
    poll(lambda: llm.in_flight == 0, timeout=20, what="the provider's late answer")
    poll(lambda: queue(s, "sloth")["in_flight"] == 0, what="the agent idle")
    assert [m["performative"] for m in replies_to(s, doc["conversation_id"],
                                                  doc["message_id"])] == ["failure"]
    assert [m["performative"] for m in conversation_messages(s, doc["conversation_id"])] == [
        "request", "failure"]
    assert send(s, request_msg("sloth", "still there?"), wait="10s").json()["reply"][
        "performative"] == "inform"
    stop_clean(s)


def test_reply_by_in_the_past_fails_at_once(start, llm):
    s = start(agents={"sloth": agent_md("sloth")})
    past = rfc3339(datetime.now(timezone.utc) - timedelta(seconds=5))
    r = send(s, request_msg("sloth", "yesterday", reply_by=past))
    assert r.status == 200, r
    assert failure_reason(r.json()["reply"]) == "timeout", r
    assert llm.requests == []
    stop_clean(s)


# ---- protocols and cancel ------------------------------------------------------------------------


def test_contract_net_violation_by_client_is_not_understood(start, llm):
    s = start(agents={"bidder": agent_md("bidder", ("bids",))})
    llm.script([{"text": "I can do it for 10"}, {"text": "done"}])
    r = send(s, {"performative": "cfp", "receiver": "bidder", "content": "who can paint?"},
             wait="5s")
    assert r.status == 200, r
    cfp = r.json()
    assert cfp["reply"]["performative"] == "propose", cfp
    cid, cfp_id = cfp["conversation_id"], cfp["message_id"]
    # after a propose the initiator must accept or reject; an inform breaks the protocol
    r = send(s, {"performative": "inform", "receiver": "bidder", "content": "whatever",
                 "in_reply_to": cfp_id, "conversation_id": cid}, wait="5s")
    assert r.status == 200, r
    reply = r.json()["reply"]
    assert reply["performative"] == "not-understood", reply
    assert reply["content"]["reason"] == "protocol", reply
    assert "accept-proposal" in reply["content"]["detail"], reply
    # the interaction is still open: the right answer goes through and is served
    r = send(s, {"performative": "accept-proposal", "receiver": "bidder", "content": "deal",
                 "in_reply_to": cfp_id, "conversation_id": cid}, wait="5s")
    assert r.status == 200, r
    assert r.json()["reply"]["performative"] == "inform", r
    assert len(llm.requests) == 2
    stop_clean(s)


def test_answer_to_finished_request_is_not_understood(start, llm):
    """A fipa-request interaction is over once the agent's inform answered it; a later
    propose from the client that names the request breaks the protocol: the client gets
    not-understood (reason protocol) at once, and the propose reaches no agent."""
    s = start(agents={"helper": agent_md("helper")})
    llm.script([{"text": "done"}])
    r = send(s, request_msg("helper", "do it"), wait="10s")  # fipa-request by default
    assert r.status == 200 and r.json()["reply"]["performative"] == "inform", r
    cid, rid = r.json()["conversation_id"], r.json()["message_id"]
    # no ?wait: the refusal is decided at the door, so the answer is there at once
    r = send(s, {"performative": "propose", "receiver": "helper", "content": "one more?",
                 "in_reply_to": rid, "conversation_id": cid})
    assert r.status == 200, r
    doc = r.json()
    reply = doc["reply"]
    assert reply["performative"] == "not-understood", reply
    assert reply["content"]["reason"] == "protocol", reply
    assert "already finished" in reply["content"]["detail"], reply
    assert reply["in_reply_to"] == doc["message_id"] and reply["conversation_id"] == cid, doc
    # the same with ?wait and an explicit protocol
    r = send(s, {"performative": "propose", "receiver": "helper", "content": "and now?",
                 "in_reply_to": rid, "conversation_id": cid, "protocol": "fipa-request"},
             wait="10s")
    assert r.status == 200 and r.json()["reply"]["performative"] == "not-understood", r
    assert len(llm.requests) == 1, llm.requests  # neither propose reached the agent
    assert queue(s, "helper")["depth"] == 0 and queue(s, "helper")["in_flight"] == 0
    assert status_counts(s)["journal_pending"] == 0
    stop_clean(s)


def test_cancel_withdraws_a_queued_message(start, llm):
    s = start(agents={"helper": agent_md("helper")})
    agent_action(s, "helper", "suspend")
    r = send(s, request_msg("helper", "never mind"))
    assert r.status == 202, r
    mid, cid = r.json()["message_id"], r.json()["conversation_id"]
    assert queue(s, "helper")["depth"] == 1
    r = send(s, {"performative": "cancel", "receiver": "helper", "in_reply_to": mid})
    assert r.status in (200, 202), r
    assert r.json()["conversation_id"] == cid, r.json()
    assert conversation(s, cid)["state"] == "cancelled"
    assert queue(s, "helper")["depth"] == 0
    agent_action(s, "helper", "resume")
    # the queue is first in, first out: once a later message is answered, the
    # cancelled one would have run before it
    r = send(s, request_msg("helper", "after the cancel"), wait="10s")
    assert r.status == 200 and r.json()["reply"]["performative"] == "inform", r
    assert len(llm.requests) == 1 and "never mind" not in json.dumps(llm.requests), llm.requests
    assert conversation(s, cid)["state"] == "cancelled"
    assert [m["performative"] for m in conversation_messages(s, cid)] == ["request", "cancel"]
    assert status_counts(s)["journal_pending"] == 0
    r, listed = cli_json(s, "conversations", "list", "--state", "cancelled")
    assert cid in [c["conversation_id"] for c in listed["items"]], listed
    stop_clean(s)


def test_answer_to_agent_is_recorded_not_answered(start, llm):
    """An inform with in_reply_to is an answer: the agent takes it without an LLM call, and
    its journal entry is removed at once (nothing left to redeliver after a restart)."""
    s = start(agents={"helper": agent_md("helper")})
    llm.script([{"text": "here you are"}])
    r = send(s, request_msg("helper", "give me one"), wait="5s")
    assert r.status == 200, r
    cid, reply_id = r.json()["conversation_id"], r.json()["reply"]["message_id"]
    # a thank-you that answers the agent's inform: stored, handed over, never answered
    r = send(s, {"performative": "inform", "receiver": "helper", "content": "thanks",
                 "in_reply_to": reply_id})
    assert r.status == 202, r
    assert r.json()["conversation_id"] == cid, r.json()
    poll(lambda: status_counts(s)["journal_pending"] == 0, timeout=10, what="journal emptied")
    # a later request is answered; the thank-you before it never reached the LLM
    r = send(s, request_msg("helper", "one more", conversation_id="conv-other"), wait="10s")
    assert r.status == 200 and r.json()["reply"]["performative"] == "inform", r
    assert len(llm.requests) == 2 and "thanks" not in json.dumps(llm.requests), llm.requests
    msgs = conversation_messages(s, cid)
    assert [m["performative"] for m in msgs] == ["request", "inform", "inform"], msgs
    assert queue(s, "helper")["in_flight"] == 0
    stop_clean(s)


# ---- durability ----------------------------------------------------------------------------------


def test_kill_9_redelivers_every_accepted_message(start, llm):
    agents = {"durable": agent_md("durable", instances=1)}
    s = start(agents=agents, subdir="crash", provider_timeout="60s")
    gate = threading.Event()  # the first message stays in flight until the crash
    llm.script([{"gate": gate}])
    sent = []
    try:
        for i in range(20):
            r = send(s, request_msg("durable", f"message {i}"))
            assert r.status == 202, r
            sent.append((r.json()["message_id"], r.json()["conversation_id"]))
        assert llm.wait_for_requests(1, timeout=10)
        # one message in flight, nineteen queued, none answered
        assert queue(s, "durable")["in_flight"] == 1 and queue(s, "durable")["depth"] == 19
        s.proc.kill()
        s.proc.wait(timeout=10)
    finally:
        gate.set()
    s2 = start(agents=agents, subdir="crash")
    assert s2.data_dir == s.data_dir

    def all_answered():
        return all(any(m["performative"] == "inform" for m in replies_to(s2, cid, mid))
                   for mid, cid in sent)
    poll(all_answered, timeout=30, interval=0.2, what="every message answered after restart")
    for mid, cid in sent:
        replies = [m for m in replies_to(s2, cid, mid) if m["performative"] == "inform"]
        assert len(replies) >= 1, (mid, replies)  # at least once, the same message_id
        assert conversation(s2, cid)["state"] == "completed"
    seen = [json.dumps(b) for b in llm.requests]
    for i in range(20):
        assert any(f"message {i}" in b for b in seen), i
    poll(lambda: status_counts(s2)["journal_pending"] == 0, timeout=10,
         what="journal_pending back to 0")

    def scraped():  # the scrape may be up to a second old
        text = s2.get("/metrics").body.decode()
        return (metric(text, "caxton_messages_total", outcome="redelivered") == 20
                and metric(text, "caxton_message_journal_pending") == 0)
    poll(scraped, timeout=10, interval=0.2, what="20 redelivered and an empty journal in /metrics")
    assert dead_letters(s2) == []
    stop_clean(s2)


def test_conversation_times_out_when_idle(start, llm):
    s = start(agents={"helper": agent_md("helper")},
              messaging={"conversation_timeout": "3s"})
    agent_action(s, "helper", "suspend")
    t0 = time.monotonic()
    r = send(s, request_msg("helper", "anyone there?"))
    assert r.status == 202, r
    cid = r.json()["conversation_id"]
    state = conversation(s, cid)["state"]
    if time.monotonic() - t0 < 2.5:  # read well inside the timeout: it must still be open
        assert state == "active", state
    # it times out at all, and not before it was idle for the timeout
    poll(lambda: conversation(s, cid)["state"] == "timed-out", timeout=30, interval=0.2,
         what="conversation timed-out")
    assert time.monotonic() - t0 >= 2.9
    r, doc = cli_json(s, "conversations", "list", "--state", "timed-out")
    assert r.returncode == 0, r.stderr
    assert cid in [c["conversation_id"] for c in doc["items"]], doc
    assert queue(s, "helper")["depth"] == 1  # timing out withdraws nothing
    r = s.admin("GET", "/api/v1/conversations?state=bogus")
    assert r.status == 400, r
    stop_clean(s)


def test_metrics_count_messages_and_queue_depth(start, llm):
    s = start(agents={"helper": agent_md("helper"), "parked": agent_md("parked")})
    agent_action(s, "parked", "suspend")
    for i in range(3):
        assert send(s, request_msg("helper", f"m{i}"), wait="5s").status == 200
    for i in range(2):
        assert send(s, request_msg("parked", f"p{i}")).status == 202

    def scraped():
        r = s.get("/metrics")
        assert r.status == 200, r
        text = r.body.decode()
        ok = ((metric(text, "caxton_messages_total", outcome="accepted") or 0) >= 5
              and (metric(text, "caxton_messages_total", outcome="replied") or 0) >= 3
              and metric(text, "caxton_agent_queue_depth", agent="parked") == 2)
        return ok and text
    text = poll(scraped, timeout=10, interval=0.2, what="message metrics")
    assert metric(text, "caxton_agent_queue_depth", agent="helper") == 0, text
    assert "# TYPE caxton_messages_total counter" in text
    assert "# TYPE caxton_agent_queue_depth gauge" in text
    stop_clean(s)


# ---- shutdown ------------------------------------------------------------------------------------


def test_sigterm_with_waiting_clients(start, llm):
    """Three clients wait (?wait=30s) on a slow agent; SIGTERM: the server exits 0 within
    server.shutdown_timeout, every client gets an answer (503 SHUTTING_DOWN, or the reply),
    and after a restart every message is answered from the journal."""
    extra = "server:\n  shutdown_timeout: 2s\n"
    agents = {"sloth": agent_md("sloth", instances=1)}
    s = start(agents=agents, extra=extra, subdir="term", provider_timeout="60s")
    gate = threading.Event()  # the provider never answers before the server stops
    llm.script([{"gate": gate, "text": "too slow"}])
    results = {}

    def client(i):
        try:
            results[i] = send(s, request_msg("sloth", f"take your time {i}"), wait="30s",
                              timeout=40)
        except Exception as e:  # noqa: BLE001 - a lost answer is what this test looks for
            results[i] = e
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    try:
        assert llm.wait_for_requests(1, timeout=10)
        poll(lambda: status_counts(s)["waiting"] == 3, timeout=10, what="three waiting clients")
        t0 = time.monotonic()
        s.signal(signal.SIGTERM)
        code = s.proc.wait(timeout=30)
        took = time.monotonic() - t0
    finally:
        gate.set()
    assert code == 0, s.stderr()[-3000:]
    # it stopped on its own (shutdown_timeout 2s), not because the provider answered
    assert took < 15, took
    for t in threads:
        t.join(timeout=10)
    s.assert_clean()
    message_ids = []
    for i in range(3):
        r = results.get(i)
        assert not isinstance(r, Exception) and r is not None, \
            f"client {i} got no HTTP answer at shutdown: {r!r}"
        assert r.status in (200, 503), r
        if r.status == 503:
            err = error_of(r)
            assert err["code"] == "SHUTTING_DOWN", err
            assert r.header("Retry-After"), r.headers
            message_ids.append(err["details"]["message_id"])
        else:
            message_ids.append(r.json()["message_id"])
    # after the restart the journaled messages are answered
    s2 = start(agents=agents, extra=extra, subdir="term")

    def answered():
        convs = get_json(s2, "/api/v1/conversations?limit=10")["items"]
        informs = {m.get("in_reply_to") for c in convs
                   for m in conversation_messages(s2, c["conversation_id"])
                   if m["performative"] == "inform"}
        return all(mid in informs for mid in message_ids)
    poll(answered, timeout=10, what="the messages answered after the restart")
    poll(lambda: status_counts(s2)["journal_pending"] == 0, what="journal emptied")
    stop_clean(s2)


# ---- one copy per message_id, protocol steps, broadcasts, ?wait, long failing queues -------------


def test_duplicate_message_id_is_refused_until_answered(start, llm):
    """A message_id still waiting for its answer is 409 DUPLICATE_MESSAGE, wherever the copy
    would go; once answered, the id may be used again."""
    s = start(agents={"alpha": agent_md("alpha", ("chat",)), "beta": agent_md("beta", ("chat",))})
    agent_action(s, "alpha", "suspend")
    r = send(s, request_msg("alpha", "the original", message_id="retry-me-1"))
    assert r.status == 202, r
    assert r.json()["message_id"] == "retry-me-1", r.json()
    cid = r.json()["conversation_id"]
    retries = [request_msg("alpha", "a retry", message_id="retry-me-1", conversation_id=cid),
               request_msg("alpha", "a retry, new conversation", message_id="retry-me-1"),
               request_msg("beta", "to another agent", message_id="retry-me-1"),
               request_msg(capability="chat", content="to a capability", message_id="retry-me-1")]
    for body in retries:
        for strategy in (None, "broadcast") if "capability" in body else (None,):
            r = send(s, body, wait="10s", strategy=strategy)  # refused at once, no waiting
            assert r.status == 409, (body, strategy, r)
            err = error_of(r)
            assert err["code"] == "DUPLICATE_MESSAGE", err
            assert "retry-me-1" in err["message"] and "alpha" in err["message"], err
    # nothing of the retries was queued, recorded or run
    assert queue(s, "alpha")["depth"] == 1 and queue(s, "beta")["depth"] == 0
    assert [m["content"] for m in conversation_messages(s, cid)] == ["the original"]
    counts = status_counts(s)
    assert counts["accepted"] == 1 and counts["journal_pending"] == 1, counts
    assert llm.requests == []

    agent_action(s, "alpha", "resume")
    reply = wait_reply(s, cid, "retry-me-1")
    assert reply["performative"] == "inform" and reply["sender"] == "alpha", reply
    # answered: the same id is accepted again, here by another agent
    r = send(s, request_msg("beta", "a new message, an old id", message_id="retry-me-1"),
             wait="10s")
    assert r.status == 200, r
    assert r.json()["message_id"] == "retry-me-1", r.json()
    assert r.json()["reply"]["performative"] == "inform" and r.json()["reply"]["sender"] == "beta"
    assert len(llm.requests) == 2

    # a message being answered right now is still waiting too: its retry is refused
    gate = threading.Event()
    llm.script([{"gate": gate, "text": "held"}])
    try:
        r = send(s, request_msg("alpha", "in flight", message_id="retry-me-2"))
        assert r.status == 202, r
        cid2 = r.json()["conversation_id"]
        assert llm.wait_for_requests(3, timeout=10)
        assert queue(s, "alpha")["in_flight"] == 1
        r = send(s, request_msg("alpha", "in flight", message_id="retry-me-2",
                                conversation_id=cid2), wait="10s")
        assert r.status == 409 and error_of(r)["code"] == "DUPLICATE_MESSAGE", r
    finally:
        gate.set()
    assert wait_reply(s, cid2, "retry-me-2")["content"] == "held"
    assert len(llm.requests) == 3
    # a client that got its answer through ?wait may reuse the id at once
    for attempt in range(2):
        r = send(s, request_msg("alpha", f"twice {attempt}", message_id="retry-me-3"),
                 wait="10s")
        assert r.status == 200 and r.json()["reply"]["performative"] == "inform", (attempt, r)
    assert status_counts(s)["journal_pending"] == 0
    stop_clean(s)


def test_refused_reply_does_not_use_up_the_protocol_step(start, llm):
    """An accept-proposal refused with 429 QUEUE_FULL was not accepted, so the contract-net
    interaction still waits for it: the retry, once there is room, is delivered and
    answered (not not-understood); after that the step is used up."""
    s = start(agents={"bidder": agent_md("bidder", ("bids",))}, messaging={"queue_size": 1})
    llm.script([{"text": "I can do it for 10"}, {"text": "painted"}])
    r = send(s, {"performative": "cfp", "receiver": "bidder", "content": "who can paint?"},
             wait="10s")
    assert r.status == 200 and r.json()["reply"]["performative"] == "propose", r
    cid, cfp_id = r.json()["conversation_id"], r.json()["message_id"]

    agent_action(s, "bidder", "suspend")
    filler = send(s, request_msg("bidder", "taking the only place in the queue"))
    assert filler.status == 202, filler
    accept = {"performative": "accept-proposal", "receiver": "bidder", "content": "deal",
              "in_reply_to": cfp_id, "conversation_id": cid, "message_id": "accept-1"}
    r = send(s, accept)
    assert r.status == 429, r
    assert error_of(r)["code"] == "QUEUE_FULL" and r.header("Retry-After"), r
    assert queue(s, "bidder")["depth"] == 1

    # room again (the filler is drained to the dead letters); the same message is retried
    r = s.admin("POST", "/api/v1/agents/bidder/queue/drain", body={})
    assert r.status == 200, r
    assert queue(s, "bidder")["depth"] == 0
    r = send(s, accept)
    assert r.status == 202, r  # not a 200 with not-understood, nor a 409 for its id
    assert r.json()["message_id"] == "accept-1" and r.json()["routed_to"] == ["bidder"], r.json()
    assert queue(s, "bidder")["depth"] == 1

    agent_action(s, "bidder", "resume")
    reply = wait_reply(s, cid, "accept-1")
    assert reply["performative"] == "inform" and reply["content"] == "painted", reply
    msgs = conversation_messages(s, cid)
    assert [m["performative"] for m in msgs] == ["cfp", "propose", "accept-proposal",
                                                 "inform"], msgs
    # the accepted accept-proposal used the step: a second one is not understood
    r = send(s, dict(accept, message_id="accept-2"))
    assert r.status == 200, r
    assert r.json()["reply"]["performative"] == "not-understood", r
    assert r.json()["reply"]["content"]["reason"] == "protocol", r
    assert len(llm.requests) == 2
    stop_clean(s)


def test_broadcast_answers_are_not_protocol_violations(start, llm):
    """Every provider of a broadcast request answers it with its own inform; the second
    inform is not a protocol violation."""
    s = start(agents=two_translators())
    r = send(s, request_msg(capability="translate", content="to all"), strategy="broadcast")
    assert r.status == 202, r
    doc = r.json()
    assert sorted(doc["routed_to"]) == ["trans-one", "trans-two"], doc

    def both_answered():
        found = replies_to(s, doc["conversation_id"], doc["message_id"])
        return len(found) == 2 and found
    replies = poll(both_answered, what="both providers answered")
    assert sorted((m["sender"], m["performative"]) for m in replies) == [
        ("trans-one", "inform"), ("trans-two", "inform")], replies

    def both_logged():  # the answers are in agents.log, so the router has seen both
        events = log_events(s)
        answered = {e.get("agent") for e in events if e.get("event") == "message_answered"
                    and e.get("message_id") == doc["message_id"]}
        return answered == {"trans-one", "trans-two"} and events
    events = poll(both_logged, what="both answers in agents.log")
    violations = [e for e in events if e.get("event") == "protocol_violation"]
    assert violations == [], violations
    stop_clean(s)


def test_wait_without_a_value_waits_the_default_reply_timeout(start, llm):
    """`?wait` and `?wait=` with no value wait messaging.default_reply_timeout."""
    s = start(agents={"helper": agent_md("helper")},
              messaging={"default_reply_timeout": "5s"}, provider_timeout="60s")
    llm.script([{"delay": 0.3, "text": "first"}, {"delay": 0.3, "text": "second"}])
    for path, text in (("/api/v1/messages?wait", "first"), ("/api/v1/messages?wait=", "second")):
        r = s.admin("POST", path, request_msg("helper", "hello"), timeout=30)
        assert r.status == 200, (path, r)
        doc = r.json()
        assert doc["reply"]["performative"] == "inform" and doc["reply"]["content"] == text, doc
        assert doc["reply"]["in_reply_to"] == doc["message_id"], doc
    # the default is a bound: with no answer the client gets 504 after it, not never
    gate = threading.Event()
    llm.script([{"gate": gate, "text": "late"}])
    try:
        t0 = time.monotonic()
        r = s.admin("POST", "/api/v1/messages?wait", request_msg("helper", "slow"), timeout=60)
        took = time.monotonic() - t0
        assert r.status == 504, r
        err = error_of(r)
        assert err["code"] == "REPLY_TIMEOUT", err
        assert took >= 4.5, took
    finally:
        gate.set()
    reply = wait_reply(s, err["details"]["conversation_id"], err["details"]["message_id"])
    assert reply["content"] == "late", reply  # still in flight, and answered
    stop_clean(s)


def test_http_answers_while_an_agent_fails_a_long_queue(start, llm):
    """300 queued messages to an agent whose token budget is spent fail one after another
    (budget-exhausted); meanwhile the API keeps answering."""
    count = 300
    s = start(agents={"thrifty": agent_md("thrifty", limits={"token_budget": '"1/day"'})},
              messaging={"queue_size": 1000})
    r = send(s, request_msg("thrifty", "spend the budget"), wait="10s")
    assert r.status == 200 and r.json()["reply"]["performative"] == "inform", r
    agent_action(s, "thrifty", "suspend")
    sent = fill_suspended(s, "thrifty", count)
    assert queue(s, "thrifty")["depth"] == count
    agent_action(s, "thrifty", "resume")

    def all_failed():
        # the point is that it answers (a generous timeout; an error here is final, not
        # a "not yet" for poll)
        r = s.admin("GET", "/api/v1/status", timeout=5)
        if r.status != 200:
            pytest.fail(f"GET /api/v1/status while the queue fails: {r!r}")
        dead = dead_letters(s, "thrifty")
        return len(dead) == count and dead
    dead = poll(all_failed, timeout=60, interval=0.02, what=f"{count} dead letters")
    assert {d["reason"] for d in dead} == {"budget-exhausted"}, dead[:3]
    assert sorted(d["message"]["message_id"] for d in dead) == sorted(m for m, _ in sent)
    for mid, cid in sent:
        replies = replies_to(s, cid, mid)
        assert [failure_reason(m) for m in replies] == ["budget-exhausted"], (mid, replies)
    assert len(llm.requests) == 1
    assert queue(s, "thrifty")["depth"] == 0
    assert s.admin("GET", "/api/v1/status", timeout=5).status == 200
    stop_clean(s)
