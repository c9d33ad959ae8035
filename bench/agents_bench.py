#!/usr/bin/env python3
"""Agent and messaging benchmarks, printed as figures and ratios.

1. Routing overhead without the LLM: 100 configuration agents whose provider
   is an nginx location answering every chat completion instantly with a
   fixed JSON body. wrk sends messages through POST /api/v1/messages?wait=10s
   at 64 connections, spread over the 100 agents. Reported: messages per
   second, p50/p99 end-to-end latency, and side by side in the same run the
   same wrk load sent straight to the stand-in LLM, so the share of time
   spent inside Caxton is the difference.
2. Hot reload: an agent's file is rewritten with a new version 100 times;
   each time, the time from the write to the first reply that comes from the
   new version (the stand-in LLM echoes the system prompt). p50 and p99.
   Target p50 <= 50 ms.
3. 1 000 agent files: time from exec of `caxton serve` to the first 200 on
   /health (target <= 500 ms) and RSS one second later (target <= 100 MB).

Everything runs on 127.0.0.1 with ports chosen here; every loop is bounded.
"""
import http.client
import http.server
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from http_bench import free_port, stop, wait_ok  # noqa: E402

CONNECTIONS = 64
THREADS = 2
DURATION_S = int(os.environ.get("BENCH_SECONDS", "10"))
ROUTING_AGENTS = 100
RELOAD_EDITS = 100
MANY_AGENTS = 1000

COMPLETION = json.dumps({
    "id": "bench", "object": "chat.completion", "model": "bench",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "ok"}}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}})


def agent_file(name, version="1.0.0", prompt="You answer briefly.", capability=None):
    caps = f"[{capability or name + '-cap'}, bench]"
    return (f"---\nname: {name}\nversion: {version}\ncapabilities: {caps}\n"
            f"llm:\n  provider: stub\n  model: bench\n---\n{prompt}\n")


def write_config(workdir, base_url):
    path = os.path.join(workdir, "caxton.yaml")
    with open(path, "w") as f:
        f.write(f"llm:\n  providers:\n    stub:\n      type: openai\n"
                f"      base_url: {base_url}\n      max_concurrency: 256\n"
                f"messaging:\n  queue_size: 10000\nlogging:\n  level: warn\n")
    return path


def start_caxton(binary, workdir, port, config):
    return subprocess.Popen(
        [binary, "serve", "--config", config, "--data-dir", os.path.join(workdir, "data"),
         "--log-dir", os.path.join(workdir, "log"), "--listen", f"127.0.0.1:{port}"],
        env=dict(os.environ, CAXTON_API_WORKERS=str(THREADS)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_nginx_llm(workdir, port):
    conf = os.path.join(workdir, "nginx.conf")
    body = COMPLETION.replace("'", "\\'")
    with open(conf, "w") as f:
        f.write(f"""
daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location /v1/chat/completions {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
""")
    return subprocess.Popen(["nginx", "-c", conf, "-p", workdir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wrk_post(url, lua, duration=DURATION_S):
    out = subprocess.run(
        ["wrk", "-t", str(THREADS), "-c", str(CONNECTIONS), "-d", f"{duration}s",
         "--latency", "-s", lua, url],
        capture_output=True, text=True, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    return rps, pct(50), pct(99), int(bad.group(1)) if bad else 0


def admin_token(workdir):
    with open(os.path.join(workdir, "data", "tokens", "admin.token")) as f:
        return f.read().strip()


def bench_routing(binary, workdir):
    print(f"== routing: {ROUTING_AGENTS} agents, wrk -t{THREADS} -c{CONNECTIONS} "
          f"-d{DURATION_S}s, POST /api/v1/messages?wait=10s, LLM answering instantly (nginx)")
    llm_port, port = free_port(), free_port()
    os.makedirs(os.path.join(workdir, "data", "agents"), mode=0o700)
    for i in range(ROUTING_AGENTS):
        with open(os.path.join(workdir, "data", "agents", f"agent-{i:03d}.md"), "w") as f:
            f.write(agent_file(f"agent-{i:03d}"))
    config = write_config(workdir, f"http://127.0.0.1:{llm_port}/v1")
    nginx = start_nginx_llm(workdir, llm_port)
    proc = start_caxton(binary, workdir, port, config)
    try:
        if not wait_ok(port):
            sys.exit("caxton did not start")
        token = admin_token(workdir)
        lua = os.path.join(workdir, "send.lua")
        with open(lua, "w") as f:
            f.write(f"""
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
request = function()
  n = n + 1
  local body = string.format('{{"performative":"request","receiver":"agent-%03d",' ..
                             '"content":"ping %d"}}', n % {ROUTING_AGENTS}, n)
  return wrk.format(nil, "/api/v1/messages?wait=10s", nil, body)
end
""")
        direct = os.path.join(workdir, "direct.lua")
        with open(direct, "w") as f:
            f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                    'wrk.body = \'{"model":"bench","messages":[{"role":"user","content":"ping"}]}\'\n')
        rps, p50, p99, bad = wrk_post(f"http://127.0.0.1:{port}", lua)
        d_rps, d_p50, d_p99, _ = wrk_post(f"http://127.0.0.1:{llm_port}/v1/chat/completions",
                                           direct)
    finally:
        stop(proc)
        stop(nginx)
    print(f"  caxton end to end : {rps:9.0f} messages/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms "
          f"(non-2xx: {bad})")
    print(f"  LLM stand-in alone: {d_rps:9.0f} requests/s, p50 {d_p50:.2f} ms, p99 {d_p99:.2f} ms")
    inside = max(p50 - d_p50, 0.0)
    print(f"  time inside caxton at p50: {inside:.2f} ms of {p50:.2f} ms "
          f"({100 * inside / p50 if p50 else 0:.0f}%); LLM server {100 - (100 * inside / p50 if p50 else 0):.0f}%")


class PromptEcho(http.server.BaseHTTPRequestHandler):
    """A stand-in LLM that answers with the system prompt it was given."""
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # headers and body go out in two writes: without this, Nagle's
        # algorithm and delayed ACKs add 40 ms to every answer
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
        out = json.dumps({"choices": [{"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": system}}],
                          "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def send(port, token, name, content, wait="5s"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", f"/api/v1/messages?wait={wait}",
                     body=json.dumps({"performative": "request", "receiver": name,
                                      "content": content}),
                     headers={"Authorization": f"Bearer {token}",
                              "Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def bench_reload(binary, workdir):
    print(f"== hot reload: {RELOAD_EDITS} edits, file write -> first reply from the new version")
    llm = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PromptEcho)
    threading.Thread(target=llm.serve_forever, daemon=True).start()
    port = free_port()
    agents = os.path.join(workdir, "data", "agents")
    os.makedirs(agents, mode=0o700)
    path = os.path.join(agents, "reloader.md")
    with open(path, "w") as f:
        f.write(agent_file("reloader", prompt="generation 0"))
    config = write_config(workdir, f"http://127.0.0.1:{llm.server_address[1]}/v1")
    proc = start_caxton(binary, workdir, port, config)
    times = []
    try:
        if not wait_ok(port):
            sys.exit("caxton did not start")
        token = admin_token(workdir)
        for gen in range(1, RELOAD_EDITS + 1):
            marker = f"generation {gen}"
            t0 = time.monotonic()
            with open(path, "w") as f:
                f.write(agent_file("reloader", version=f"1.0.{gen}", prompt=marker))
            deadline = t0 + 5.0
            while time.monotonic() < deadline:
                status, body = send(port, token, "reloader", "which generation?")
                if status == 200 and json.loads(body)["reply"]["content"].strip() == marker:
                    times.append((time.monotonic() - t0) * 1000)
                    break
            time.sleep(0.01)
    finally:
        stop(proc)
        llm.shutdown()
    times.sort()
    print(f"  {len(times)} of {RELOAD_EDITS} edits seen; p50 {statistics.median(times):.1f} ms, "
          f"p99 {times[min(len(times) - 1, len(times) * 99 // 100)]:.1f} ms, "
          f"max {times[-1]:.1f} ms (target p50 <= 50 ms)")


def bench_many(binary, workdir):
    print(f"== {MANY_AGENTS} agent files: start-up to ready, and RSS")
    agents = os.path.join(workdir, "data", "agents")
    os.makedirs(agents, mode=0o700)
    for i in range(MANY_AGENTS):
        with open(os.path.join(agents, f"agent-{i:04d}.md"), "w") as f:
            f.write(agent_file(f"agent-{i:04d}", prompt="You answer briefly. " * 20))
    config = write_config(workdir, "http://127.0.0.1:9/v1")
    times, rss_kb = [], 0
    for i in range(5):
        port = free_port()
        t0 = time.monotonic()
        proc = start_caxton(binary, workdir, port, config)
        ok = wait_ok(port)
        elapsed = (time.monotonic() - t0) * 1000
        if ok:
            times.append(elapsed)
            if i == 0:
                time.sleep(1.0)
                with open(f"/proc/{proc.pid}/status") as f:
                    rss_kb = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
                token = admin_token(workdir)
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/api/v1/status", headers={"Authorization":
                                                               f"Bearer {token}"})
                active = json.loads(conn.getresponse().read())["counts"]["agents"]["active"]
                conn.close()
        stop(proc)
    print(f"  active agents after start: {active}")
    print(f"  exec to ready: median {statistics.median(times):.1f} ms, min {min(times):.1f} ms, "
          f"max {max(times):.1f} ms over {len(times)} starts (target <= 500 ms)")
    print(f"  RSS one second after start: {rss_kb / 1024:.1f} MB (target <= 100 MB)")


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/caxton")
    os.environ["PATH"] += ":/usr/sbin"
    which = sys.argv[2:] or ["many", "reload", "routing"]
    with tempfile.TemporaryDirectory(prefix="caxton-agents-bench-") as top:
        os.chmod(top, 0o755)
        for name in which:
            sub = os.path.join(top, name)
            os.makedirs(sub, mode=0o755)
            {"routing": bench_routing, "reload": bench_reload, "many": bench_many}[name](
                binary, sub)


if __name__ == "__main__":
    main()
