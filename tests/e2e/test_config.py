"""End-to-end tests of configuration loading: `caxton config validate`, the
same bad input through `caxton serve`, start-up failures (data dir, port,
lock) and the flag > environment > file > default precedence.

Config errors are one line naming file:line:column (or the environment
variable / path); `serve` exits 2 for a configuration error and 1 for a
runtime failure, and never stays up after refusing to start.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import BIN, ROOT, base_env, run_cli

PACKAGED_CONFIG = os.path.join(ROOT, "packaging", "caxton.yaml")
SERVE_TIMEOUT_S = 30


def out(r):
    return r.stdout + r.stderr


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(tmp_path, *args, env=None, listen="127.0.0.1:0", data_dir=None):
    """Runs `caxton serve` expecting it to refuse to start; it must exit on its own."""
    cmd = [BIN, "serve", "--data-dir", data_dir or str(tmp_path / "data"),
           "--log-dir", str(tmp_path / "log")]
    if listen:
        cmd += ["--listen", listen]
    cmd += list(args)
    try:
        return subprocess.run(cmd, env=base_env(**(env or {})), capture_output=True, text=True,
                              timeout=SERVE_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:  # the server came up and stayed up
        raise AssertionError(f"serve did not exit within {SERVE_TIMEOUT_S}s: {e.stderr!r}")


def error_lines(text):
    return [l for l in text.splitlines() if l.strip()]


# --------------------------------------------------------------------------
# caxton config validate


GOOD = """\
server:
  shutdown_timeout: 5s
api:
  listen: 127.0.0.1:9000
  workers: 2
  max_body: 2MB
logging:
  level: warn
"""


def test_validate_good_file(tmp_path):
    path = write(tmp_path, "good.yaml", GOOD)
    r = run_cli("config", "validate", path)
    assert r.returncode == 0, out(r)
    assert "valid" in r.stdout
    assert "error" not in out(r).lower()
    r = run_cli("config", "validate", path, "--output", "json")
    assert r.returncode == 0, out(r)
    doc = json.loads(r.stdout)
    assert doc["valid"] is True and doc["errors"] == []


def test_validate_packaged_config():
    assert os.path.exists(PACKAGED_CONFIG)
    r = run_cli("config", "validate", PACKAGED_CONFIG)
    assert r.returncode == 0, out(r)
    assert "warning" not in out(r).lower(), out(r)


def test_validate_missing_file(tmp_path):
    path = str(tmp_path / "nope.yaml")
    r = run_cli("config", "validate", path)
    assert r.returncode in (1, 2), out(r)
    assert path in r.stderr or path in r.stdout, out(r)


# (name, text, exit substrings expected in the message, the line the error is on)
BAD = {
    "syntax": ("api:\n  listen: [127.0.0.1\n  workers: 2\n", ["syntax"], None),
    "type": ("api: {workers: many}\n", ["api.workers", "many"], 1),
    "range": ("api:\n  workers: 0\n", ["api.workers", "64"], 2),
    "missing_var": ("server:\n  data_dir: ${CAXTON_TEST_UNSET_VAR_XYZ}/data\n",
                    ["CAXTON_TEST_UNSET_VAR_XYZ"], 2),
    "tabs": ("api:\n\tworkers: 2\n", ["tab", "spaces"], 2),
    "bad_duration": ("server:\n  shutdown_timeout: soon\n", ["server.shutdown_timeout"], 2),
    "bad_enum": ("logging:\n  level: loud\n", ["logging.level", "loud"], 2),
    "tls_half": ("api:\n  tls:\n    cert: /etc/ssl/x.pem\n", ["api.tls"], 3),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_validate_bad_file(tmp_path, name):
    text, needles, line = BAD[name]
    path = write(tmp_path, f"{name}.yaml", text)
    r = run_cli("config", "validate", path)
    assert r.returncode == 1, out(r)
    text_out = out(r)
    for needle in needles:
        assert needle.lower() in text_out.lower(), (needle, text_out)
    if line is None:
        assert re.search(rf"{re.escape(path)}:\d+(:\d+)?", text_out) or path in text_out, text_out
        if name == "syntax":
            assert re.search(rf"{re.escape(path)}:\d+:\d+", text_out), text_out
    else:
        assert re.search(rf"{re.escape(path)}:{line}:\d+", text_out), text_out
    r = run_cli("config", "validate", path, "--output", "json")
    assert r.returncode == 1, out(r)
    doc = json.loads(r.stdout)
    assert doc["valid"] is False and doc["errors"], doc


def test_validate_type_error_position(tmp_path):
    path = write(tmp_path, "type.yaml", "api: {workers: many}\n")
    r = run_cli("config", "validate", path)
    assert r.returncode == 1, out(r)
    # "file:line:column: key: what was expected, what was found"
    line = [l for l in out(r).splitlines() if "api.workers" in l]
    assert len(line) == 1, out(r)
    assert re.search(rf"{re.escape(path)}:1:(7|16): api\.workers: .*integer", line[0]), line


def test_validate_reports_every_error(tmp_path):
    path = write(tmp_path, "two.yaml", "api:\n  workers: 0\nlogging:\n  level: loud\n")
    r = run_cli("config", "validate", path, "--output", "json")
    assert r.returncode == 1, out(r)
    errors = json.loads(r.stdout)["errors"]
    assert len(errors) == 2, errors
    assert any("api.workers" in e for e in errors) and any("logging.level" in e for e in errors)


def test_validate_unknown_key_is_warning(tmp_path):
    path = write(tmp_path, "unknown.yaml", "api: {lisen: x}\n")
    r = run_cli("config", "validate", path)
    assert r.returncode == 0, out(r)
    text = out(r)
    assert "warning" in text.lower(), text
    assert "api.lisen" in text and "api.listen" in text, text
    assert "did you mean" in text, text
    assert re.search(rf"{re.escape(path)}:1:\d+", text), text
    r = run_cli("config", "validate", path, "--output", "json")
    assert r.returncode == 0, out(r)
    doc = json.loads(r.stdout)
    assert doc["valid"] is True and doc["warnings"], doc


def test_validate_var_default(tmp_path):
    path = write(tmp_path, "var.yaml",
                 "server:\n  data_dir: ${CAXTON_TEST_UNSET_VAR_XYZ:-/srv/caxton-fallback}\n")
    r = run_cli("config", "validate", path)
    assert r.returncode == 0, out(r)
    r = run_cli("config", "show", "--offline", "--config", path, "--output", "json")
    assert r.returncode == 0, out(r)
    v = json.loads(r.stdout)["values"]["server.data_dir"]
    assert v["value"] == "/srv/caxton-fallback" and v["source"] == "file", v
    # A set variable wins over the default.
    r = run_cli("config", "show", "--offline", "--config", path, "--output", "json",
                env={"CAXTON_TEST_UNSET_VAR_XYZ": "/srv/from-env"})
    assert r.returncode == 0, out(r)
    assert json.loads(r.stdout)["values"]["server.data_dir"]["value"] == "/srv/from-env"


def test_validate_var_expands(tmp_path):
    path = write(tmp_path, "var.yaml", "api:\n  listen: 127.0.0.1:${CAXTON_TEST_PORT_XYZ}\n")
    r = run_cli("config", "validate", path, env={"CAXTON_TEST_PORT_XYZ": "9123"})
    assert r.returncode == 0, out(r)
    r = run_cli("config", "show", "--offline", "--config", path, "--output", "json",
                env={"CAXTON_TEST_PORT_XYZ": "9123"})
    assert json.loads(r.stdout)["values"]["api.listen"]["value"] == "127.0.0.1:9123"


# --------------------------------------------------------------------------
# the same bad input through `caxton serve`


@pytest.mark.parametrize("name", sorted(BAD))
def test_serve_bad_config_exit_2_one_line(tmp_path, name):
    text, needles, line = BAD[name]
    path = write(tmp_path, f"{name}.yaml", text)
    r = serve(tmp_path, "--config", path)
    assert r.returncode == 2, out(r)
    lines = error_lines(out(r))
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines)
    if line is not None:
        assert re.search(rf"{re.escape(path)}:{line}:\d+", lines[0]), lines
    else:
        assert path in lines[0], lines
    # Nothing was left behind that looks like a running server.
    assert not os.path.exists(tmp_path / "data" / "run" / "api.url")
    assert not os.path.exists(tmp_path / "data" / "run" / "caxton.pid")


def test_serve_missing_config_file(tmp_path):
    path = str(tmp_path / "missing.yaml")
    r = serve(tmp_path, "--config", path)
    assert r.returncode == 2, out(r)
    lines = error_lines(out(r))
    assert len(lines) == 1 and path in lines[0], lines


def test_serve_config_from_env_variable(tmp_path):
    path = write(tmp_path, "type.yaml", "api: {workers: many}\n")
    r = serve(tmp_path, env={"CAXTON_CONFIG": path})
    assert r.returncode == 2, out(r)
    assert re.search(rf"{re.escape(path)}:1:\d+", r.stderr), r.stderr


def test_serve_unknown_key_warns_and_starts(make_server):
    s = make_server(config="api:\n  lisen: 127.0.0.1:1\n")
    assert s.get("/health").status == 200
    text = s.stderr()
    assert "api.lisen" in text and "api.listen" in text, text
    assert re.search(re.escape(s.config_path) + r":2:\d+", text), text


# --------------------------------------------------------------------------
# runtime failures at start-up: exit 1


def test_serve_data_dir_cannot_be_created(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a directory\n")
    data_dir = str(blocker / "sub")
    r = serve(tmp_path, data_dir=data_dir)
    assert r.returncode == 1, out(r)
    assert str(blocker) in r.stderr, r.stderr
    assert "data dir" in r.stderr.lower() or "data_dir" in r.stderr, r.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root is not blocked by directory permissions")
def test_serve_data_dir_not_writable(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir(mode=0o500)
    try:
        r = serve(tmp_path, data_dir=str(parent / "data"))
        assert r.returncode == 1, out(r)
        assert str(parent) in r.stderr, r.stderr
    finally:
        parent.chmod(0o700)


def test_serve_port_in_use(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        r = serve(tmp_path, listen=f"127.0.0.1:{port}")
    assert r.returncode == 1, out(r)
    assert "address already in use" in r.stderr.lower(), r.stderr
    assert str(port) in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / "data" / "run" / "api.url")
    assert not os.path.exists(tmp_path / "data" / "run" / "caxton.pid")


def test_serve_bad_listen_address_is_config_error(tmp_path):
    r = serve(tmp_path, listen="not-an-address")
    assert r.returncode == 2, out(r)
    assert "--listen" in r.stderr or "api.listen" in r.stderr, r.stderr


def test_second_server_same_data_dir(make_server, tmp_path):
    first = make_server()
    r = serve(tmp_path / "second", data_dir=first.data_dir)
    assert r.returncode == 1, out(r)
    assert re.search(rf"\b{first.proc.pid}\b", r.stderr), r.stderr
    assert first.data_dir in r.stderr, r.stderr
    # The first keeps serving, with its files intact.
    assert first.proc.poll() is None
    assert first.get("/health").status == 200
    assert first.admin("GET", "/api/v1/status").status == 200
    with open(os.path.join(first.data_dir, "run", "api.url")) as f:
        assert f.read().strip() == first.url
    with open(os.path.join(first.data_dir, "run", "caxton.pid")) as f:
        assert f.read().strip() == str(first.proc.pid)
    r = first.cli("status")
    assert r.returncode == 0, out(r)


# --------------------------------------------------------------------------
# precedence: flag > env > file > default


def _started(s, argv_without_listen):
    """Starts Server s with exactly this command (no automatic --listen)."""
    s.command = lambda: argv_without_listen
    return s.start()


def _effective(s):
    r = s.admin("GET", "/api/v1/config/effective")
    assert r.status == 200, r
    doc = r.json()
    return doc.get("values", doc)


def test_precedence_flag_env_file(make_server):
    p_file, p_env = free_port(), free_port()
    config = f"api:\n  listen: 127.0.0.1:{p_file}\n  workers: 3\n"

    # file only
    s = make_server(config=config, start=False, subdir="file")
    _started(s, [BIN, "serve", "--config", s.config_path, "--data-dir", s.data_dir,
                 "--log-dir", s.log_dir])
    assert s.port == p_file
    assert s.admin("GET", "/api/v1/status").json()["server"]["listen"] == f"127.0.0.1:{p_file}"
    eff = _effective(s)
    assert eff["api.listen"]["source"] == "file"
    assert re.search(r":2:\d+$", eff["api.listen"]["where"]), eff["api.listen"]
    assert eff["api.workers"]["value"] == 3 and eff["api.workers"]["source"] == "file"
    assert s.stop() == 0

    # env beats file
    s = make_server(config=config, start=False, env={"CAXTON_LISTEN": f"127.0.0.1:{p_env}"},
                    subdir="env")
    _started(s, [BIN, "serve", "--config", s.config_path, "--data-dir", s.data_dir,
                 "--log-dir", s.log_dir])
    assert s.port == p_env
    assert s.admin("GET", "/api/v1/status").json()["server"]["listen"] == f"127.0.0.1:{p_env}"
    eff = _effective(s)
    assert eff["api.listen"]["source"] == "env"
    assert eff["api.listen"]["where"] == "CAXTON_LISTEN"
    assert eff["api.workers"]["source"] == "file"
    assert s.stop() == 0

    # flag beats env and file
    s = make_server(config=config, env={"CAXTON_LISTEN": f"127.0.0.1:{p_env}"}, subdir="flag")
    assert s.port not in (p_file, p_env)
    status = s.admin("GET", "/api/v1/status").json()
    assert status["server"]["listen"] == f"127.0.0.1:{s.port}"
    eff = _effective(s)
    assert eff["api.listen"]["source"] == "flag" and eff["api.listen"]["where"] == "--listen"


def test_precedence_env_beats_file_for_other_keys(make_server):
    s = make_server(config="api:\n  workers: 3\nlogging:\n  level: warn\n",
                    env={"CAXTON_API_WORKERS": "5", "CAXTON_LOG_LEVEL": "error"})
    eff = _effective(s)
    assert eff["api.workers"]["value"] == 5 and eff["api.workers"]["source"] == "env"
    assert eff["logging.level"]["value"] == "error"
    assert eff["logging.level"]["where"] == "CAXTON_LOG_LEVEL"


def test_empty_env_variable_counts_as_unset(make_server):
    s = make_server(config="api:\n  workers: 3\n", env={"CAXTON_API_WORKERS": ""})
    eff = _effective(s)
    assert eff["api.workers"]["value"] == 3 and eff["api.workers"]["source"] == "file"


def test_flag_data_dir_beats_env(make_server, tmp_path):
    other = str(tmp_path / "env-data")
    s = make_server(env={"CAXTON_DATA_DIR": other})
    assert os.path.exists(os.path.join(s.data_dir, "tokens", "admin.token"))
    assert not os.path.exists(other)


def test_env_bad_value_exit_2(tmp_path):
    r = serve(tmp_path, env={"CAXTON_API_WORKERS": "abc"})
    assert r.returncode == 2, out(r)
    lines = error_lines(out(r))
    assert len(lines) == 1, lines
    assert "CAXTON_API_WORKERS" in lines[0] and "abc" in lines[0], lines


def test_env_bad_duration_exit_2(tmp_path):
    r = serve(tmp_path, env={"CAXTON_SHUTDOWN_TIMEOUT": "forever"})
    assert r.returncode == 2, out(r)
    assert "CAXTON_SHUTDOWN_TIMEOUT" in r.stderr, r.stderr


def test_unknown_env_variable_is_a_warning(make_server):
    s = make_server(env={"CAXTON_FOO": "1"})
    assert s.get("/health").status == 200
    text = s.stderr()
    warn = [l for l in text.splitlines() if "CAXTON_FOO" in l]
    assert warn, text
    assert "warn" in warn[0].lower() and "unknown" in warn[0].lower(), warn


def test_config_validate_ignores_environment_overrides(tmp_path):
    # validate checks the file alone: a bad CAXTON_* variable does not make it invalid
    path = write(tmp_path, "good.yaml", GOOD)
    r = run_cli("config", "validate", path, env={"CAXTON_API_WORKERS": "abc"})
    assert r.returncode == 0, out(r)


# --------------------------------------------------------------------------
# client commands read the config leniently: they only look for the server


SERVER_SECRETS = """\
server:
  data_dir: {data_dir}
api:
  listen: 127.0.0.1:{port}
llm:
  providers:
    openai:
      api_key: "${{OPENAI_API_KEY}}"
"""


def test_client_commands_do_not_need_the_servers_secrets(make_server, tmp_path):
    s = make_server()
    path = write(tmp_path, "server.yaml", SERVER_SECRETS.format(data_dir=s.data_dir, port=s.port))
    # No OPENAI_API_KEY here: the server could not start with this file, the CLI can use it.
    for args in (("status",), ("health-check", "--comprehensive"), ("token", "list"),
                 ("config", "show", "--effective"), ("service", "status")):
        r = run_cli(*args, "--config", path)
        assert r.returncode == 0, (args, out(r))
        assert "OPENAI_API_KEY" not in r.stderr, (args, r.stderr)
    # Checking the file itself still reports the problem.
    r = run_cli("config", "validate", path)
    assert r.returncode == 1, out(r)
    assert "OPENAI_API_KEY is not set" in r.stdout, out(r)
    r = run_cli("config", "show", "--offline", "--config", path)
    assert r.returncode == 2, out(r)
    assert "OPENAI_API_KEY is not set" in r.stderr, out(r)
    # And a client still refuses a file that is wrong in itself.
    bad = write(tmp_path, "bad.yaml", "api: {workers: many}\n")
    r = run_cli("status", "--config", bad)
    assert r.returncode == 2, out(r)
    assert re.search(rf"{re.escape(bad)}:1:\d+: api.workers", r.stderr), r.stderr


def _run_unprivileged(binary, *args, env=None):
    """Runs `caxton ARGS` as a user who cannot read root's 0600 files:
    nobody when we are root (root reads anything), else ourselves. binary is
    a copy nobody can reach (the checkout may sit under a private home)."""
    kw = {}
    if os.geteuid() == 0:
        kw = {"user": 65534, "group": 65534, "extra_groups": []}
    return subprocess.run([binary, *args], env=base_env(**(env or {})), capture_output=True,
                          text=True, timeout=60, cwd="/", **kw)


def test_client_commands_work_with_an_unreadable_config(make_server):
    s = make_server()
    shared = tempfile.mkdtemp(prefix="caxton-e2e-")  # nobody may look inside
    try:
        os.chmod(shared, 0o755)
        path = os.path.join(shared, "caxton.yaml")
        with open(path, "w") as f:
            f.write("api:\n  listen: 127.0.0.1:1\n")
        os.chmod(path, 0o600 if os.geteuid() == 0 else 0o000)
        empty = os.path.join(shared, "data")
        os.mkdir(empty)
        os.chmod(empty, 0o755)
        binary = os.path.join(shared, "caxton")
        shutil.copy(BIN, binary)
        os.chmod(binary, 0o755)
        # As installed: the config is the server's (0640 root:caxton), and an
        # operator outside the group still finds the server from the environment.
        env = {"CAXTON_LISTEN": f"127.0.0.1:{s.port}"}
        r = _run_unprivileged(binary, "health-check", "--config", path, "--data-dir", empty, env=env)
        assert r.returncode == 0, out(r)
        assert "healthy" in r.stdout, out(r)
        warning = [l for l in r.stderr.splitlines() if "warning" in l]
        assert warning and path in warning[0] and "Permission denied" in warning[0], r.stderr
        r = _run_unprivileged(binary, "service", "status", "--config", path, "--data-dir", empty)
        assert r.returncode == 3, out(r)  # not running there, rather than a config error
        assert "not running" in r.stdout, out(r)
        # Showing or checking the configuration needs the file itself.
        r = _run_unprivileged(binary, "config", "show", "--offline", "--config", path)
        assert r.returncode == 2, out(r)
        assert "Permission denied" in r.stderr, out(r)
        # A file that is not there at all is still an error.
        r = _run_unprivileged(binary, "health-check", "--config", os.path.join(shared, "nope.yaml"),
                              "--data-dir", empty, env=env)
        assert r.returncode == 2, out(r)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
