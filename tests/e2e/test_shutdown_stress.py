"""Shutdown under load: requests keep arriving on open keep-alive
connections while the server drains and stops. Each request uses a token
not seen before, so every one of them also queues a last-used update for the
event loop: the server must refuse or finish that work, never touch freed
memory, and still exit 0."""
import hashlib
import http.client
import os
import signal
import sqlite3
import threading
import time

TOKENS = 20000
CLIENTS = 16


def insert_tokens(data_dir, count):
    """Adds viewer tokens to state.db while the server is stopped."""
    db = sqlite3.connect(os.path.join(data_dir, "data", "state.db"))
    now = int(time.time() * 1000)
    rows = []
    secrets = []
    for i in range(count):
        secret = "cxt_" + hashlib.sha256(f"stress{i}".encode()).hexdigest()
        secrets.append(secret)
        rows.append((f"tok_s{i:07d}", f"stress{i}", "viewer",
                     hashlib.sha256(secret.encode()).digest(), now))
    db.executemany("INSERT INTO tokens(id, name, role, hash, created_at) VALUES (?,?,?,?,?)", rows)
    db.commit()
    db.close()
    return secrets


def hammer(server, secrets, stop_at, errors):
    conn = None
    i = 0
    while time.monotonic() < stop_at and i < len(secrets):
        try:
            if conn is None:
                conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
            conn.request("GET", "/api/v1/status",
                         headers={"Authorization": f"Bearer {secrets[i]}"})
            r = conn.getresponse()
            r.read()
            if r.status not in (200, 503):
                errors.append(r.status)
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            if conn:
                conn.close()
            conn = None
            if server.proc.poll() is not None:
                break
            time.sleep(0.01)
        i += 1
    if conn:
        conn.close()


def test_sigterm_while_requests_keep_coming(make_server):
    s = make_server(env={"CAXTON_SHUTDOWN_TIMEOUT": "0s"})
    assert s.stop() == 0
    secrets = insert_tokens(s.data_dir, TOKENS)
    s.start()
    errors = []
    per_client = len(secrets) // CLIENTS
    stop_at = time.monotonic() + 20
    threads = [threading.Thread(target=hammer,
                                args=(s, secrets[i * per_client:(i + 1) * per_client],
                                      stop_at, errors))
               for i in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    s.signal(signal.SIGTERM)
    code = s.proc.wait(timeout=30)
    for t in threads:
        t.join(timeout=30)
    assert code == 0, s.stderr()[-4000:]
    s.assert_clean()
    assert not errors, errors[:10]
