"""systemd readiness: the server speaks the sd_notify protocol when run as a
Type=notify service. A datagram socket stands in for systemd's
NOTIFY_SOCKET; everything else is the real server."""
import signal
import socket
import time

import pytest


def read_states(sock, want, timeout=20):
    """Collects notify datagrams until one contains `want`."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(4096).decode()
        except socket.timeout:
            break
        seen.append(data)
        if want in data.split("\n"):
            return seen
    raise AssertionError(f"no {want} among notifications {seen}")


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    yield path, sock
    sock.close()


def test_ready_reloading_stopping(make_server, notify_socket):
    path, sock = notify_socket
    s = make_server(env={"NOTIFY_SOCKET": path}, config="logging:\n  level: info\n")
    read_states(sock, "READY=1")
    assert s.get("/health").status == 200  # READY came once serving

    s.signal(signal.SIGHUP)
    read_states(sock, "RELOADING=1")
    read_states(sock, "READY=1")

    s.signal(signal.SIGTERM)
    read_states(sock, "STOPPING=1")
    assert s.proc.wait(timeout=30) == 0


def test_no_notify_socket_is_fine(server):
    assert server.get("/health").status == 200
