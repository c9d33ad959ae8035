"""End-to-end tests of the API over TLS (api.tls.cert / api.tls.key).

Each server gets a fresh self-signed certificate made with the `openssl`
command (P-256, CN=localhost, subjectAltName IP:127.0.0.1 and DNS:localhost)
and listens on loopback. The tests speak HTTPS with that certificate as the
only trust anchor, check that plain HTTP and TLS 1.1 are refused, and drive
the `caxton` command line: --cacert, CAXTON_CACERT, trust taken from the
config's api.tls.cert, the message and exit code when the certificate cannot
be verified, the production check, and `caxton serve` refusing bad keys.
"""
import http.client
import json
import resource
import shutil
import socket
import ssl
import subprocess
import time
import warnings

import pytest

from conftest import SANITIZER_MARKS, Server, run_cli

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="the openssl command is needed to make certificates")

SANITIZER_EXIT_CODES = (98, 99)  # UBSAN_OPTIONS / ASAN_OPTIONS exitcode in conftest.base_env


def out(r):
    return r.stdout + r.stderr


def make_cert(directory, name="server"):
    """A self-signed certificate and its key, as PEM files; returns their paths."""
    cert = str(directory / f"{name}.crt")
    key = str(directory / f"{name}.key")
    r = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", key, "-out", cert],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return cert, key


def tls_config(cert, key, **api):
    """YAML with api.tls set (paths quoted as JSON strings, which YAML reads as is)."""
    lines = ["api:", "  tls:", f"    cert: {json.dumps(cert)}", f"    key: {json.dumps(key)}"]
    lines += [f"  {k}: {v}" for k, v in api.items()]
    return "\n".join(lines) + "\n"


def fd_safe_api():
    """Like test_cli's _fd_safe_config: keep the file_descriptors check passing."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = hard if hard != resource.RLIM_INFINITY else 1 << 20
    return {} if limit >= 16384 + 256 else {"max_connections": 256}


class TlsServer(Server):
    """A Server spoken to over HTTPS, trusting only its own certificate."""

    def __init__(self, tmp_path, cafile, **kw):
        super().__init__(tmp_path, **kw)
        self.cafile = cafile

    def context(self):
        return ssl.create_default_context(cafile=self.cafile)

    def connection(self, timeout):
        return http.client.HTTPSConnection(self.host.strip("[]"), self.port, timeout=timeout,
                                           context=self.context())


def stop_and_check(servers):
    for s in servers:
        if s.proc is not None and s.proc.poll() is None:
            code = s.stop()
            assert code == 0, f"server exited with {code}: {s.stderr()}"
        if s.proc is not None:
            s.assert_clean()


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """One TLS server on 127.0.0.1:0 shared by the read-only tests."""
    path = tmp_path_factory.mktemp("tls")
    cert, key = make_cert(path)
    s = TlsServer(path, cert, config=tls_config(cert, key))
    s.start()
    yield s
    stop_and_check([s])


@pytest.fixture
def make_tls_server(tmp_path):
    """Factory: make_tls_server(args=..., **api) -> a started TlsServer with a new cert."""
    servers = []

    def factory(args=(), **api):
        path = tmp_path / f"s{len(servers)}"
        path.mkdir()
        cert, key = make_cert(path)
        s = TlsServer(path, cert, args=args, config=tls_config(cert, key, **api))
        servers.append(s)
        return s.start()

    yield factory
    stop_and_check(servers)


# --------------------------------------------------------------------------
# The wire


def test_https_health_with_cert_as_ca(tls):
    assert tls.url.startswith("https://127.0.0.1:"), tls.url
    r = tls.get("/health")
    assert r.status == 200, r
    assert r.json() == {"status": "ok"}


def test_https_without_the_cert_is_not_trusted(tls):
    ctx = ssl.create_default_context()  # the system's CAs only
    with socket.create_connection((tls.host, tls.port), timeout=10) as sock:
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(sock, server_hostname="127.0.0.1")


def test_plain_http_to_tls_port_gets_no_200(tls):
    conn = http.client.HTTPConnection(tls.host, tls.port, timeout=10)
    try:
        conn.request("GET", "/health")
        status = conn.getresponse().status
    except (http.client.HTTPException, OSError):
        status = None
    finally:
        conn.close()
    assert status != 200
    assert tls.get("/health").status == 200  # and the server still serves


def tls11_context(cafile):
    """A client context that offers TLS 1.1 at most, or None when the local
    OpenSSL will not even send such a ClientHello."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(cafile)
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        except (ValueError, ssl.SSLError):
            return None
    # Dry run into memory: the first flight must be a ClientHello for TLS 1.1
    # (record type 22, handshake type 1, client_version 3.2).
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    except ssl.SSLError:
        return None
    hello = outgoing.read()
    if len(hello) < 11 or hello[0] != 22 or hello[5] != 1 or hello[9:11] != b"\x03\x02":
        return None
    return ctx


def test_tls_1_1_client_fails_the_handshake(tls):
    ctx = tls11_context(tls.cafile)
    if ctx is None:
        pytest.skip("the local OpenSSL refuses to offer TLS 1.1, so it cannot be tried")
    with socket.create_connection((tls.host, tls.port), timeout=10) as sock:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as conn:
                pytest.fail(f"the server accepted {conn.version()}")
    assert tls.get("/health").status == 200


def test_status_says_tls(tls):
    r = tls.admin("GET", "/api/v1/status")
    assert r.status == 200, r
    server = r.json()["server"]
    assert server["tls"] is True, server
    assert server["url"].startswith("https://"), server
    assert server["url"] == tls.url


# --------------------------------------------------------------------------
# The command line


def test_cli_cacert_flag(tls):
    r = tls.cli("status", "--cacert", tls.cafile)
    assert r.returncode == 0, out(r)
    assert tls.url in r.stdout, r.stdout
    r = tls.cli("health-check", "--comprehensive", "--server", tls.url, "--cacert", tls.cafile)
    assert r.returncode == 0, out(r)
    r = tls.cli("token", "list", "--cacert", tls.cafile)
    assert r.returncode == 0, out(r)


def test_cli_cacert_environment(tls):
    r = tls.cli("status", "--server", tls.url, "--output", "json",
                env={"CAXTON_CACERT": tls.cafile, "CAXTON_TOKEN": tls.token})
    assert r.returncode == 0, out(r)
    assert json.loads(r.stdout)["server"]["tls"] is True


def test_cli_trusts_the_configs_cert_for_a_local_server(tls):
    r = run_cli("status", "--config", tls.config_path,
                env={"CAXTON_DATA_DIR": tls.data_dir})
    assert r.returncode == 0, out(r)
    assert tls.url in r.stdout, r.stdout
    # Found through api.listen (no run/api.url in an empty data dir): the same trust.
    empty = tls.dir / "empty-data"
    empty.mkdir(exist_ok=True)
    client_config = tls.dir / "client.yaml"
    with open(tls.config_path) as f:
        client_config.write_text(f.read() + f"  listen: 127.0.0.1:{tls.port}\n")
    r = run_cli("health-check", "--config", str(client_config), "--data-dir", str(empty))
    assert r.returncode == 0, out(r)


def test_cli_unverified_certificate_exit_3(tls):
    # --server means the config's certificate is not trusted automatically.
    for args in (("status",), ("health-check",), ("token", "list")):
        r = tls.cli(*args, "--server", tls.url)
        assert r.returncode == 3, out(r)
        assert "certificate" in r.stderr and "could not be verified" in r.stderr, r.stderr
        assert "--cacert" in r.stderr and "CAXTON_CACERT" in r.stderr, r.stderr
        assert tls.url in r.stderr, r.stderr
    # So is a CA file that did not sign the server's certificate.
    other, _ = make_cert(tls.dir, "other")
    r = tls.cli("status", "--cacert", other)
    assert r.returncode == 3, out(r)
    assert "certificate" in r.stderr and other in r.stderr, r.stderr


def test_cli_wait_ready_stops_at_an_unverified_certificate(tls):
    # Retrying cannot make the certificate verify: the answer comes at once.
    t0 = time.monotonic()
    r = tls.cli("health-check", "--wait-ready", "--timeout", "30s", "--server", tls.url,
                timeout=60)
    assert r.returncode == 3, out(r)
    assert time.monotonic() - t0 < 10
    assert "could not be verified" in r.stderr and "--cacert" in r.stderr, r.stderr
    assert "not ready after" not in r.stderr, r.stderr


def test_cli_unreadable_cacert_is_usage_error(tls):
    missing = str(tls.dir / "missing.crt")
    r = tls.cli("status", "--cacert", missing)
    assert r.returncode == 2, out(r)
    assert missing in r.stderr and "--cacert" in r.stderr, r.stderr
    r = tls.cli("status", env={"CAXTON_CACERT": missing})
    assert r.returncode == 2, out(r)
    assert "CAXTON_CACERT" in r.stderr, r.stderr


def test_production_check_exposed_with_tls(make_tls_server):
    s = make_tls_server(args=["--listen", "0.0.0.0:0"], **fd_safe_api())
    assert s.url.startswith("https://127.0.0.1:"), s.url
    r = s.cli("status", "--production-check", "--output", "json", "--cacert", s.cafile)
    checks = {c["name"]: c for c in json.loads(r.stdout)["production_checks"]}
    assert checks["api_exposure"]["status"] == "ok", checks
    others_ok = all(c["status"] == "ok" for c in checks.values())
    assert r.returncode == (0 if others_ok else 1), out(r)
    r = s.cli("status", "--production-check", "--cacert", s.cafile)
    line = [l for l in r.stdout.splitlines() if "api_exposure" in l]
    assert line and "ok" in line[0].split(), r.stdout


# --------------------------------------------------------------------------
# `caxton serve` with bad TLS material


def serve(tmp_path, cert, key, timeout=60):
    config = tmp_path / "bad.yaml"
    config.write_text(tls_config(cert, key))
    return run_cli("serve", "--config", str(config), "--data-dir", str(tmp_path / "data"),
                   "--log-dir", str(tmp_path / "log"), "--listen", "127.0.0.1:0",
                   timeout=timeout)


def assert_config_refused(r, tmp_path, *names):
    """Bad TLS material is a config error: exit 2, one line naming the file,
    checked before the data dir is touched."""
    assert_no_crash(r)
    assert r.returncode == 2, out(r)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for name in names:
        assert name in lines[0], lines
    assert not (tmp_path / "data").exists()


def assert_no_crash(r):
    assert r.returncode > 0, out(r)  # an exit, not a signal
    assert r.returncode not in SANITIZER_EXIT_CODES, out(r)
    for mark in SANITIZER_MARKS:
        assert mark not in out(r), out(r)


def test_serve_missing_key_file(tmp_path):
    cert, _ = make_cert(tmp_path)
    missing = str(tmp_path / "nowhere.key")
    r = serve(tmp_path, cert, missing)
    assert r.returncode == 2, out(r)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert missing in lines[0] and "api.tls.key" in lines[0], lines


def test_serve_key_of_another_cert(tmp_path):
    cert, _ = make_cert(tmp_path, "one")
    _, key = make_cert(tmp_path, "two")
    r = serve(tmp_path, cert, key)
    assert_config_refused(r, tmp_path, "api.tls.key", key, "does not belong")


@pytest.mark.parametrize("which", ["cert", "key"])
@pytest.mark.parametrize("content", ["", "-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
                                         "-----END CERTIFICATE-----\n", "garbage\n"],
                         ids=["empty", "bad-pem", "garbage"])
def test_serve_garbage_pem(tmp_path, which, content):
    cert, key = make_cert(tmp_path)
    bad = tmp_path / f"bad.{which}"
    bad.write_text(content)
    r = serve(tmp_path, str(bad) if which == "cert" else cert,
              str(bad) if which == "key" else key)
    assert_config_refused(r, tmp_path, f"api.tls.{which}", str(bad))
