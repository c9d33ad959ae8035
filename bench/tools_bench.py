#!/usr/bin/env python3
"""Tool calling benchmarks, printed as figures and ratios.

1. Tool round trip: the `echo` tool of the reference MCP server
   (@modelcontextprotocol/server-everything, pinned in tests/mcp) called
   through Caxton, side by side in the same run with the same call made
   directly over stdio by a minimal JSON-RPC client in this script. Through
   Caxton, one agent may use everything.echo and a stand-in LLM asks for it
   once per message, then answers text when it sees the tool result; a
   second agent has no tools and its one LLM round is answered at once.
   Each of N rounds (after a warm-up) makes one direct call, then sends one
   message to each agent, so the three are measured under the same
   conditions; the difference per pair of messages is what the tool round
   adds end to end: one MCP call and one more LLM round. Reported: Caxton's
   own per-call tool time (the agent's stats, an average), the end-to-end
   difference p50/p99, the stand-in LLM's round trip measured alone, the
   direct stdio p50/p99, and the ratios.
2. Many conversations waiting: 1 000 messages sent without waiting (202)
   to agents with many instances each, on a provider allowing 1 024 calls
   at once, whose stand-in LLM (asyncio, no thread per request, in its own
   process) answers each request after 2 s. Reported: time until every
   conversation has its reply, how many LLM requests were in flight at
   once, Caxton's peak RSS and thread count while waiting, and how many
   inform replies came back.

Everything runs on 127.0.0.1 with ports chosen here; every loop is bounded.
Part 1 needs node and tests/mcp/node_modules (tests/mcp/install.sh).
"""
import asyncio
import http.client
import http.server
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from http_bench import free_port, stop, wait_ok  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVERYTHING = os.path.join(ROOT, "tests", "mcp", "node_modules", "@modelcontextprotocol",
                          "server-everything", "dist", "index.js")
THREADS = 2
ROUND_MESSAGES = 500
ROUND_WARMUP = 20
ECHO_TEXT = "bench"
WAIT_MESSAGES = 1000
WAIT_AGENTS = 16
WAIT_INSTANCES = 63            # AGENTDEF_MAX_INSTANCES is 64; 16 x 63 = 1 008 slots
WAIT_DELAY_S = 2.0
WAIT_LIMIT_S = 60.0
SAMPLE_EVERY_S = 0.02


def pct(values, q):
    """The q-quantile (0..1) of a sorted list, nearest rank."""
    return values[min(len(values) - 1, int(len(values) * q))]


def completion(message, finish="stop"):
    return json.dumps({"id": "bench", "object": "chat.completion", "model": "bench",
                       "choices": [{"index": 0, "finish_reason": finish, "message": message}],
                       "usage": {"prompt_tokens": 10, "completion_tokens": 1,
                                 "total_tokens": 11}}).encode()


TOOL_CALL = completion({"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_bench", "type": "function",
     "function": {"name": "everything__echo",
                  "arguments": json.dumps({"message": ECHO_TEXT})}}]}, "tool_calls")


class ToolEcho(http.server.BaseHTTPRequestHandler):
    """A stand-in LLM: asks for everything__echo when tools are offered and no
    tool result is in the request yet; otherwise answers text at once (the
    tool result's text when there is one, else "ok")."""
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # headers and body go out in two writes: without this, Nagle's
        # algorithm and delayed ACKs add 40 ms to every answer
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        results = [m for m in body["messages"] if m.get("role") == "tool"]
        if results:
            content = results[-1].get("content")
            out = completion({"role": "assistant",
                              "content": content if isinstance(content, str)
                              else json.dumps(content)})
        elif body.get("tools"):
            out = TOOL_CALL
        else:
            out = completion({"role": "assistant", "content": "ok"})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def agent_file(name, tools=None, instances=None):
    text = (f"---\nname: {name}\nversion: 1.0.0\ncapabilities: [{name}-cap, bench]\n"
            f"llm:\n  provider: stub\n  model: bench\n")
    if tools:
        text += f"tools: [{', '.join(tools)}]\n"
    if instances:
        text += f"instances: {instances}\n"
    return text + "---\nYou answer briefly.\n"


def write_agents(workdir, files):
    agents = os.path.join(workdir, "data", "agents")
    os.makedirs(agents, mode=0o700)
    for name, text in files.items():
        with open(os.path.join(agents, f"{name}.md"), "w") as f:
            f.write(text)


def write_config(workdir, base_url, concurrency, extra=""):
    path = os.path.join(workdir, "caxton.yaml")
    with open(path, "w") as f:
        f.write(f"llm:\n  providers:\n    stub:\n      type: openai\n"
                f"      base_url: {base_url}\n      max_concurrency: {concurrency}\n"
                f"      timeout: 30s\n"
                f"messaging:\n  queue_size: 10000\nlogging:\n  level: warn\n{extra}")
    return path


def start_caxton(binary, workdir, port, config):
    return subprocess.Popen(
        [binary, "serve", "--config", config, "--data-dir", os.path.join(workdir, "data"),
         "--log-dir", os.path.join(workdir, "log"), "--listen", f"127.0.0.1:{port}"],
        env=dict(os.environ, CAXTON_API_WORKERS=str(THREADS)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def admin_token(workdir):
    with open(os.path.join(workdir, "data", "tokens", "admin.token")) as f:
        return f.read().strip()


class Api:
    """One keep-alive connection to Caxton's REST API."""

    def __init__(self, port, token):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method, path, body=None):
        for attempt in range(2):
            try:
                self.conn.request(method, path, headers=self.headers,
                                  body=None if body is None else json.dumps(body))
                r = self.conn.getresponse()
                return r.status, json.loads(r.read() or b"null")
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()  # the server closed a kept-alive connection: once more
                if attempt:
                    raise
        return None, None

    def send(self, receiver, content, wait=None):
        query = f"?wait={wait}" if wait else ""
        return self.call("POST", f"/api/v1/messages{query}",
                         {"performative": "request", "receiver": receiver, "content": content})

    def close(self):
        self.conn.close()


def proc_status(pid):
    with open(f"/proc/{pid}/status") as f:
        text = f.read()

    def field(name):
        return int(re.search(rf"^{name}:\s+(\d+)", text, re.M).group(1))
    return field("VmRSS"), field("VmHWM"), field("Threads")


# ---- part 1: tool round trip ------------------------------------------------

class StdioClient:
    """A minimal MCP client: JSON-RPC lines on the server's stdin and stdout."""

    def __init__(self, command):
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, bufsize=0)
        self.next_id = 0

    def request(self, method, params):
        self.next_id += 1
        ident = self.next_id
        self.notify_raw({"jsonrpc": "2.0", "id": ident, "method": method, "params": params})
        for _ in range(1000):  # notifications may come first; bounded
            line = self.proc.stdout.readline()
            if not line:
                sys.exit("the MCP server closed its stdout")
            msg = json.loads(line)
            if msg.get("id") == ident and "method" not in msg:
                return msg
        sys.exit("the MCP server did not answer")

    def notify_raw(self, msg):
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_direct():
    client = StdioClient(["node", EVERYTHING, "stdio"])
    client.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                  "clientInfo": {"name": "bench", "version": "1"}})
    client.notify_raw({"jsonrpc": "2.0", "method": "notifications/initialized"})
    return client


def timed_direct(client):
    t0 = time.perf_counter()
    r = client.request("tools/call", {"name": "echo", "arguments": {"message": ECHO_TEXT}})
    elapsed = (time.perf_counter() - t0) * 1000
    if r.get("result", {}).get("content", [{}])[0].get("text") != f"Echo: {ECHO_TEXT}":
        sys.exit(f"unexpected echo answer: {r}")
    return elapsed


def llm_round_trips(port, count):
    """The stand-in LLM's second-round answer, timed from a client here."""
    body = json.dumps({"model": "bench", "messages": [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "ping"},
        {"role": "assistant", "content": None, "tool_calls": json.loads(TOOL_CALL)[
            "choices"][0]["message"]["tool_calls"]},
        {"role": "tool", "tool_call_id": "call_bench", "content": f"Echo: {ECHO_TEXT}"}]})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    try:
        for i in range(ROUND_WARMUP + count):
            t0 = time.perf_counter()
            conn.request("POST", "/v1/chat/completions", body=body,
                         headers={"Content-Type": "application/json"})
            conn.getresponse().read()
            if i >= ROUND_WARMUP:
                times.append((time.perf_counter() - t0) * 1000)
    finally:
        conn.close()
    return sorted(times)


def tools_ready(api, limit_s=20.0):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        status, doc = api.call("GET", "/api/v1/tools?agent=tooled")
        if status == 200 and any(t.get("tool") == "everything.echo" and t.get("reachable")
                                 for t in doc.get("tools", [])):
            return True
        time.sleep(0.05)
    return False


def agent_stats(api, name):
    status, doc = api.call("GET", f"/api/v1/agents/{name}")
    if status != 200:
        sys.exit(f"GET /api/v1/agents/{name}: {status} {doc}")
    return doc["stats"]


def timed_send(api, receiver, content):
    t0 = time.perf_counter()
    status, doc = api.send(receiver, content, wait="10s")
    elapsed = (time.perf_counter() - t0) * 1000
    reply = (doc or {}).get("reply") or {}
    return elapsed, status, reply.get("performative"), reply.get("content")


def bench_round(binary, workdir):
    print(f"== tool round trip: everything.echo through Caxton vs direct over stdio, "
          f"{ROUND_MESSAGES} rounds of (direct call, message with a tool call, message "
          f"without) after {ROUND_WARMUP} of warm-up")
    if not os.path.exists(EVERYTHING):
        sys.exit("tools bench: tests/mcp/node_modules is missing; run tests/mcp/install.sh")
    llm = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ToolEcho)
    llm.daemon_threads = True
    threading.Thread(target=llm.serve_forever, daemon=True).start()
    llm_port = llm.server_address[1]
    port = free_port()
    write_agents(workdir, {"tooled": agent_file("tooled", tools=["everything.echo"]),
                           "plain": agent_file("plain")})
    config = write_config(workdir, f"http://127.0.0.1:{llm_port}/v1", 16,
                          f"tools:\n  mcp_servers:\n    everything:\n"
                          f"      command: [node, {json.dumps(EVERYTHING)}, stdio]\n")
    client = start_direct()
    proc = start_caxton(binary, workdir, port, config)
    api = None
    try:
        if not wait_ok(port):
            sys.exit("caxton did not start")
        api = Api(port, admin_token(workdir))
        if not tools_ready(api):
            sys.exit("everything.echo did not become reachable through caxton")
        for i in range(ROUND_WARMUP):
            timed_direct(client)
            timed_send(api, "tooled", f"warm {i}")
            timed_send(api, "plain", f"warm {i}")
        before = agent_stats(api, "tooled")
        direct, tooled, plain, diffs, wrong = [], [], [], [], 0
        for i in range(ROUND_MESSAGES):
            direct.append(timed_direct(client))
            t, status, perf, content = timed_send(api, "tooled", f"ping {i}")
            wrong += not (status == 200 and perf == "inform" and content == f"Echo: {ECHO_TEXT}")
            p, status, perf, content = timed_send(api, "plain", f"ping {i}")
            wrong += not (status == 200 and perf == "inform" and content == "ok")
            tooled.append(t)
            plain.append(p)
            diffs.append(t - p)
        after = agent_stats(api, "tooled")
        llm_alone = llm_round_trips(llm_port, ROUND_MESSAGES)
    finally:
        if api:
            api.close()
        stop(proc)
        client.close()
        llm.shutdown()
    calls = after["tool_calls"] - before["tool_calls"]
    tool_ms = after["tool_time_ms"] - before["tool_time_ms"]
    errors = after["tool_errors"] - before["tool_errors"]
    avg = tool_ms / calls if calls else float("nan")
    for values in (direct, tooled, plain, diffs, llm_alone):
        values.sort()
    d50, d99, dmean = pct(direct, 0.5), pct(direct, 0.99), statistics.fmean(direct)
    e50, e99 = pct(diffs, 0.5), pct(diffs, 0.99)
    l50 = pct(llm_alone, 0.5)
    print(f"  direct stdio tools/call (this script)  : p50 {d50:.3f} ms, p99 {d99:.3f} ms, "
          f"mean {dmean:.3f} ms")
    print(f"  caxton agent with the tool, end to end : p50 {pct(tooled, 0.5):.3f} ms, "
          f"p99 {pct(tooled, 0.99):.3f} ms (2 LLM rounds + 1 tool call)")
    print(f"  caxton agent without tools, end to end : p50 {pct(plain, 0.5):.3f} ms, "
          f"p99 {pct(plain, 0.99):.3f} ms (1 LLM round)")
    print(f"  tool round end to end (per-pair diff.) : p50 {e50:.3f} ms, p99 {e99:.3f} ms, "
          f"mean {statistics.fmean(diffs):.3f} ms (1 tool call + 1 LLM round)")
    print(f"  stand-in LLM round alone (this script) : p50 {l50:.3f} ms, "
          f"p99 {pct(llm_alone, 0.99):.3f} ms")
    print(f"  tool call as caxton times it (stats)   : avg {avg:.3f} ms over {calls} calls "
          f"({errors} errors; whole-ms clock per call)")
    print(f"  replies not as expected: {wrong} of {2 * ROUND_MESSAGES}")
    if d50 > 0:
        print(f"  ratio tool round end to end p50 / direct p50          : {e50 / d50:.1f}x")
        print(f"  ratio (tool round p50 - LLM round p50) / direct p50   : "
              f"{max(e50 - l50, 0.0) / d50:.1f}x")
        print(f"  ratio caxton's own tool call avg / direct mean        : {avg / dmean:.1f}x")


# ---- part 2: many conversations waiting ---------------------------------------

SLOW_ANSWER = completion({"role": "assistant", "content": "done"})


class SlowLLM:
    """An asyncio HTTP/1.1 stand-in LLM: every POST is answered after a fixed
    delay, with no thread per request. GET /stats gives its counters."""

    def __init__(self, delay):
        self.delay = delay
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests = 0

    async def handle(self, reader, writer):
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if len(head) > 65536:
                    break
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length:
                    await reader.readexactly(min(length, 64 * 1024 * 1024))
                if method == "GET" and path == "/stats":
                    out = json.dumps({"requests": self.requests, "in_flight": self.in_flight,
                                      "max_in_flight": self.max_in_flight}).encode()
                else:
                    self.requests += 1
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
                    try:
                        await asyncio.sleep(self.delay)
                    finally:
                        self.in_flight -= 1
                    out = SLOW_ANSWER
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(out), out))
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                ValueError):
            pass
        finally:
            writer.close()

    async def serve(self, port):
        server = await asyncio.start_server(self.handle, "127.0.0.1", port, backlog=4096)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()


def slow_llm_main(port, delay):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncio.run(SlowLLM(delay).serve(port))


def start_slow_llm(port):
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--slow-llm",
                             str(port), str(WAIT_DELAY_S)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        sys.exit("the stand-in LLM did not start")
    return proc


def slow_llm_stats(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/stats")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def answered_total(api, names):
    status, doc = api.call("GET", f"/api/v1/agents?limit={len(names) + 10}")
    if status != 200:
        return 0, 0
    items = [a for a in doc["items"] if a["name"] in names]
    return (sum(a["stats"]["answered"] for a in items),
            sum(a["stats"]["failed"] for a in items))


class Sampler(threading.Thread):
    """Samples a process's RSS and thread count until stopped."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_rss = self.peak_threads = 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                rss, _, threads = proc_status(self.pid)
            except (OSError, AttributeError):
                return
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_threads = max(self.peak_threads, threads)
            self.done.wait(SAMPLE_EVERY_S)


def count_informs(api, sent):
    informs = 0
    for message_id, conversation_id in sent:
        status, doc = api.call("GET", f"/api/v1/conversations/{conversation_id}/messages"
                                      f"?limit=50")
        if status == 200 and any(m.get("performative") == "inform"
                                 and m.get("in_reply_to") == message_id
                                 for m in doc.get("items", [])):
            informs += 1
    return informs


def bench_wait(binary, workdir):
    slots = WAIT_AGENTS * WAIT_INSTANCES
    print(f"== {WAIT_MESSAGES} conversations waiting on a slow LLM ({WAIT_DELAY_S:.0f} s per "
          f"answer): {WAIT_AGENTS} agents x {WAIT_INSTANCES} instances = {slots} slots, "
          f"max_concurrency 1024")
    names = [f"waiter-{i:02d}" for i in range(WAIT_AGENTS)]
    write_agents(workdir, {n: agent_file(n, instances=WAIT_INSTANCES) for n in names})
    llm_port, port = free_port(), free_port()
    config = write_config(workdir, f"http://127.0.0.1:{llm_port}/v1", 1024)
    llm = start_slow_llm(llm_port)
    proc = start_caxton(binary, workdir, port, config)
    api = sampler = None
    try:
        if not wait_ok(port):
            sys.exit("caxton did not start")
        api = Api(port, admin_token(workdir))
        time.sleep(0.5)
        idle_rss, _, idle_threads = proc_status(proc.pid)
        sampler = Sampler(proc.pid)
        sampler.start()
        sent, refused = [], 0
        t0 = time.monotonic()
        for i in range(WAIT_MESSAGES):
            status, doc = api.send(names[i % WAIT_AGENTS], f"wait {i}")
            if status == 202:
                sent.append((doc["message_id"], doc["conversation_id"]))
            else:
                refused += 1
        sent_s = time.monotonic() - t0
        answered = failed = 0
        while time.monotonic() - t0 < WAIT_LIMIT_S:
            answered, failed = answered_total(api, names)
            if answered + failed >= len(sent):
                break
            time.sleep(0.05)
        all_s = time.monotonic() - t0
        sampler.done.set()
        sampler.join()
        _, hwm, _ = proc_status(proc.pid)
        stats = slow_llm_stats(llm_port)
        informs = count_informs(api, sent)
    finally:
        if sampler:
            sampler.done.set()
        if api:
            api.close()
        stop(proc)
        stop(llm)
    complete = answered + failed >= len(sent)
    print(f"  sent {len(sent)} messages (202) in {sent_s:.2f} s ({refused} refused)")
    print(f"  all answered after {all_s:.2f} s from the first send"
          if complete else f"  NOT all answered within {WAIT_LIMIT_S:.0f} s: "
          f"{answered} answered, {failed} failed")
    print(f"  LLM requests in flight at once (stand-in): max {stats['max_in_flight']}, "
          f"{stats['requests']} requests in all")
    print(f"  caxton RSS: idle {idle_rss / 1024:.1f} MB, peak sampled {sampler.peak_rss / 1024:.1f}"
          f" MB, high-water mark {hwm / 1024:.1f} MB")
    print(f"  caxton threads: idle {idle_threads}, peak {sampler.peak_threads}")
    print(f"  inform replies: {informs} of {WAIT_MESSAGES} ({answered} answered, "
          f"{failed} failed in the agents' stats)")


def raise_fd_limit():
    """1 000 LLM connections need more than the common soft limit of 1 024 files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--slow-llm":
        slow_llm_main(int(sys.argv[2]), float(sys.argv[3]))
        return
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/caxton")
    which = sys.argv[2:] or ["round", "wait"]
    raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="caxton-tools-bench-") as top:
        os.chmod(top, 0o755)
        for name in which:
            sub = os.path.join(top, name)
            os.makedirs(sub, mode=0o755)
            {"round": bench_round, "wait": bench_wait}[name](binary, sub)


if __name__ == "__main__":
    main()
