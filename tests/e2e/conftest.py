"""Shared fixtures for the end-to-end tests.

Every test talks to the real `caxton` binary (CAXTON_BIN, normally the
sanitizer build) started on an ephemeral loopback port with a temporary data
dir, exactly as an operator would: over HTTP and through the CLI. A server
that reports a sanitizer error or does not stop cleanly fails the test.
"""
import http.client
import json
import os
import signal
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CAXTON_BIN") or os.path.join(ROOT, "build-asan", "caxton")
START_TIMEOUT_S = 30
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer")


def base_env(**extra):
    """The environment for caxton processes: no stray CAXTON_* settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CAXTON_") and not k.lower().endswith("_proxy")
           and k != "NOTIFY_SOCKET"}
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:exitcode=99"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:exitcode=98"
    env.update(extra)
    return env


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return f"<Response {self.status} {self.body[:200]!r}>"


class Server:
    """A caxton server process with its own data dir and log dir."""

    def __init__(self, tmp_path, args=(), env=None, config=None):
        self.dir = tmp_path
        self.data_dir = str(tmp_path / "data")
        self.log_dir = str(tmp_path / "log")
        self.stderr_path = str(tmp_path / "server.stderr")
        self.args = list(args)
        self.env = base_env(**(env or {}))
        self.config_path = None
        if config is not None:
            self.config_path = str(tmp_path / "caxton.yaml")
            with open(self.config_path, "w") as f:
                f.write(config)
        self.proc = None
        self.url = None
        self.host = None
        self.port = None

    def command(self):
        cmd = [BIN, "serve", "--data-dir", self.data_dir, "--log-dir", self.log_dir]
        if self.config_path:
            cmd += ["--config", self.config_path]
        if not any(a.startswith("--listen") for a in self.args):
            cmd += ["--listen", "127.0.0.1:0"]
        return cmd + self.args

    def start(self, wait=True):
        url_file = os.path.join(self.data_dir, "run", "api.url")
        if os.path.exists(url_file):
            os.unlink(url_file)
        self._stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.command(), env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=self._stderr, stderr=self._stderr)
        if wait:
            self.wait_ready(url_file)
        return self

    def wait_ready(self, url_file):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}: {self.stderr()}")
            if os.path.exists(url_file):
                with open(url_file) as f:
                    self.url = f.read().strip()
                hostport = self.url.split("://", 1)[1]
                self.host, port = hostport.rsplit(":", 1)
                self.port = int(port)
                if self.get("/health").status == 200:
                    return
            time.sleep(0.02)
        raise AssertionError(f"server not ready after {START_TIMEOUT_S}s: {self.stderr()}")

    def stderr(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    @property
    def token(self):
        with open(os.path.join(self.data_dir, "tokens", "admin.token")) as f:
            return f.read().strip()

    def connection(self, timeout):
        """A client connection to the API (TLS servers override it)."""
        return http.client.HTTPConnection(self.host.strip("[]"), self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, token=None, timeout=10):
        conn = self.connection(timeout)
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def admin(self, method, path, body=None, **kw):
        return self.request(method, path, body=body, token=self.token, **kw)

    def cli(self, *args, env=None, timeout=60, input=None):
        """Runs `caxton ARGS` pointed at this server through its data dir."""
        cmd = [BIN, *args]
        full_env = base_env(**(env or {}))
        if "--data-dir" not in args:
            full_env.setdefault("CAXTON_DATA_DIR", self.data_dir)
        return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout,
                              input=input)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=None, timeout=30):
        """Stops the server and checks it exited cleanly (code 0, no sanitizer report)."""
        sig = sig or signal.SIGTERM
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"server did not stop within {timeout}s: {self.stderr()}")
        finally:
            self._stderr.close()
        return code

    def assert_clean(self):
        text = self.stderr()
        for mark in SANITIZER_MARKS:
            assert mark not in text, text


def run_cli(*args, env=None, timeout=60, input=None, cwd=None):
    """Runs `caxton ARGS` with no server association."""
    return subprocess.run([BIN, *args], env=base_env(**(env or {})), capture_output=True,
                          text=True, timeout=timeout, input=input, cwd=cwd)


@pytest.fixture
def make_server(tmp_path):
    """Factory: make_server(args=..., env=..., config=...) -> started Server."""
    servers = []

    def factory(args=(), env=None, config=None, start=True, subdir=None):
        path = tmp_path / (subdir or f"s{len(servers)}")
        path.mkdir(exist_ok=True)
        s = Server(path, args=args, env=env, config=config)
        servers.append(s)
        return s.start() if start else s

    yield factory
    for s in servers:
        if s.proc is not None and s.proc.poll() is None:
            code = s.stop()
            assert code == 0, f"server exited with {code}: {s.stderr()}"
        if s.proc is not None:
            s.assert_clean()


@pytest.fixture
def server(make_server):
    """One started server with default settings."""
    return make_server()
