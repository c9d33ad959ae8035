#!/usr/bin/env python3
"""HTTP foundation benchmarks, printed as figures and ratios.

1. /health throughput with wrk at 64 connections, Caxton side by side with
   nginx serving the same JSON body as a static file (both on loopback, both
   with the same number of worker threads/processes). Target: >= 0.5x nginx.
2. Time from exec of `caxton serve` to the first 200 on /health (median of
   several starts). Target: <= 50 ms.
3. Resident memory of an idle server after start. Target: <= 15 MB.

Everything runs on 127.0.0.1 with ports chosen here; every loop is bounded.
"""
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

WORKERS = 2
CONNECTIONS = 64
DURATION_S = int(os.environ.get("BENCH_SECONDS", "10"))
STARTS = 15
BODY = b'{"status":"ok"}'


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_ok(port, path="/health"):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def wait_ok(port, limit_s=10.0):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if http_ok(port):
            return True
        time.sleep(0.001)
    return False


def start_caxton(binary, workdir, port):
    env = dict(os.environ, CAXTON_API_WORKERS=str(WORKERS))
    return subprocess.Popen(
        [binary, "serve", "--data-dir", os.path.join(workdir, "data"),
         "--log-dir", os.path.join(workdir, "log"), "--listen", f"127.0.0.1:{port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_nginx(workdir, port):
    root = os.path.join(workdir, "www")
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "health"), "wb") as f:
        f.write(BODY)
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
daemon off;
worker_processes {WORKERS};
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location = /health {{ default_type application/json; }}
    }}
}}
""")
    return subprocess.Popen(["nginx", "-c", conf, "-p", workdir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wrk(port):
    out = subprocess.run(
        ["wrk", "-t", str(WORKERS), "-c", str(CONNECTIONS), "-d", f"{DURATION_S}s",
         f"http://127.0.0.1:{port}/health"],
        capture_output=True, text=True, timeout=DURATION_S + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, int(errors.group(1)) if errors else 0


def bench_throughput(binary, workdir):
    print(f"== /health throughput: wrk -t{WORKERS} -c{CONNECTIONS} -d{DURATION_S}s, "
          f"{WORKERS} workers each")
    results = {}
    for name in ("nginx", "caxton", "nginx ", "caxton "):
        port = free_port()
        sub = os.path.join(workdir, name.strip() + str(sum(map(len, results.values()))))
        os.makedirs(sub, mode=0o755)
        proc = (start_nginx(sub, port) if name.strip() == "nginx"
                else start_caxton(binary, sub, port))
        try:
            if not wait_ok(port):
                sys.exit(f"{name.strip()} did not start on port {port}")
            rps, bad = wrk(port)
        finally:
            stop(proc)
        results.setdefault(name.strip(), []).append(rps)
        print(f"  {name.strip():7s} {rps:12.0f} req/s  (non-2xx: {bad})")
    nginx, caxton = max(results["nginx"]), max(results["caxton"])
    print(f"  best of 2: caxton {caxton:.0f} req/s, nginx {nginx:.0f} req/s, "
          f"ratio {caxton / nginx:.2f}x (target >= 0.5x)")


def bench_startup(binary, workdir):
    print(f"== time from exec to first 200 on /health, {STARTS} starts")
    times = []
    for i in range(STARTS):
        port = free_port()
        sub = os.path.join(workdir, f"start{i}")
        t0 = time.monotonic()
        proc = start_caxton(binary, sub, port)
        ok = wait_ok(port)
        elapsed = (time.monotonic() - t0) * 1000
        if ok:
            times.append(elapsed)
        if i == 0 and ok:
            time.sleep(1.0)
            with open(f"/proc/{proc.pid}/status") as f:
                rss_kb = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
        stop(proc)
    print(f"  first start (creates the data dir): {times[0]:.1f} ms")
    print(f"  median {statistics.median(times):.1f} ms, min {min(times):.1f} ms, "
          f"max {max(times):.1f} ms (target <= 50 ms)")
    print(f"== idle RSS one second after start: {rss_kb / 1024:.1f} MB (target <= 15 MB)")


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/caxton")
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"{tool} is missing: run 'scripts/deps.sh bench'")
    os.environ["PATH"] += ":/usr/sbin"
    with tempfile.TemporaryDirectory(prefix="caxton-bench-") as workdir:
        # nginx workers drop to an unprivileged user that must reach www/.
        os.chmod(workdir, 0o755)
        bench_startup(binary, workdir)
        bench_throughput(binary, workdir)


if __name__ == "__main__":
    main()
