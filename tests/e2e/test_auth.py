"""Authentication and authorization: public endpoints, bearer tokens, roles,
token create/list/revoke, hashed storage, file modes, `api.public`, audit.

One server is shared by the module; each test creates tokens with its own
names, so tests do not depend on each other's state.
"""
import json
import os
import re
import stat
import time

import pytest

from conftest import Server

JSON_CT = "application/json; charset=utf-8"
SECRET_RE = re.compile(r"^cxt_[0-9a-f]{64}$")
ID_RE = re.compile(r"^tok_[0-9a-f]{8}$")
RFC3339_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("auth"))
    s.start()
    yield s
    code = s.stop()
    assert code == 0, f"server exited with {code}: {s.stderr()}"
    s.assert_clean()


def create_token(s, role, name):
    r = s.admin("POST", "/api/v1/tokens", body={"role": role, "name": name})
    assert r.status == 201, r
    return r.json()


def assert_error(r, status, code):
    assert r.status == status, r
    assert r.header("Content-Type") == JSON_CT, r.headers
    err = r.json()["error"]
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and len(err["message"]) > 10, err
    assert isinstance(err["details"], dict), err
    assert err["request_id"] == r.header("X-Request-Id"), err
    return err


def assert_401(r):
    err = assert_error(r, 401, "UNAUTHENTICATED")
    www = r.header("WWW-Authenticate")
    assert www and www.startswith("Bearer"), r.headers
    assert 'realm="caxton"' in www, www
    return err


def poll(fn, timeout=5.0, interval=0.05):
    deadline = time.monotonic() + timeout
    value = fn()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = fn()
    return value


# ---- public and protected endpoints -----------------------------------------

def test_public_endpoints_need_no_token(srv):
    for path in ("/health", "/health/deep", "/metrics", "/api/v1/openapi.json"):
        r = srv.get(path)
        assert r.status == 200, (path, r)
    assert srv.request("HEAD", "/health").status == 200


@pytest.mark.parametrize("method,path", [("GET", "/api/v1/status"), ("GET", "/api/v1/tokens"),
                                         ("POST", "/api/v1/tokens"),
                                         ("DELETE", "/api/v1/tokens/tok_00000000"),
                                         ("GET", "/api/v1/config/effective")])
def test_protected_without_token_401(srv, method, path):
    r = srv.request(method, path)
    err = assert_401(r)
    assert "Authorization" in err["message"] or "token" in err["message"], err


def test_status_with_admin_token(srv):
    r = srv.admin("GET", "/api/v1/status")
    assert r.status == 200, r
    assert r.header("Content-Type") == JSON_CT
    assert isinstance(r.json(), dict)


@pytest.mark.parametrize("header", [
    "Basic dXNlcjpwYXNzd29yZA==",
    "Bearer short",
    "Bearer",
    "Bearer ",
    "Token cxt_" + "a" * 64,
    "Bearer cxt_" + "a" * 63,
    "Bearer cxt_" + "a" * 65,
    "Bearer " + "a" * 68,
    "cxt_" + "a" * 64,
    "Bearer cxt_" + "a" * 60 + " x y",
], ids=["basic", "short", "bare", "bare_space", "token_scheme", "63hex", "65hex", "no_prefix",
        "no_scheme", "spaces"])
def test_malformed_authorization_401(srv, header):
    r = srv.get("/api/v1/status", headers={"Authorization": header})
    assert_401(r)


def test_admin_secret_without_scheme_401(srv):
    assert_401(srv.get("/api/v1/status", headers={"Authorization": srv.token}))


def test_unknown_well_formed_token_401(srv):
    r = srv.get("/api/v1/status", token="cxt_" + "0123456789abcdef" * 4)
    err = assert_401(r)
    assert "invalid token" in err["message"], err


# ---- the admin token file and data dir modes ------------------------------------

def test_admin_token_file_and_modes(srv):
    path = os.path.join(srv.data_dir, "tokens", "admin.token")
    st = os.stat(path)
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert SECRET_RE.match(srv.token), "admin.token does not hold a cxt_ + 64 hex secret"
    assert stat.S_IMODE(os.stat(srv.data_dir).st_mode) == 0o700, oct(os.stat(srv.data_dir).st_mode)
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) & 0o077 == 0
    db = os.path.join(srv.data_dir, "data", "state.db")
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600, oct(os.stat(db).st_mode)
    # The admin token works.
    assert srv.get("/api/v1/tokens", token=srv.token).status == 200


# ---- create, list, roles, revoke ------------------------------------------------

def test_create_token_shows_secret_once(srv):
    r = srv.admin("POST", "/api/v1/tokens", body={"role": "viewer", "name": "grafana"})
    assert r.status == 201, r
    assert r.header("Content-Type") == JSON_CT
    t = r.json()
    assert SECRET_RE.match(t["token"]), t
    assert ID_RE.match(t["id"]), t
    assert t["name"] == "grafana" and t["role"] == "viewer", t
    assert RFC3339_RE.match(t["created_at"]), t
    assert t["last_used_at"] is None and t["revoked_at"] is None, t

    listed = srv.admin("GET", "/api/v1/tokens?limit=500")
    assert listed.status == 200, listed
    doc = listed.json()
    assert "items" in doc and "next_cursor" in doc, doc
    mine = [i for i in doc["items"] if i["id"] == t["id"]]
    assert len(mine) == 1, doc
    assert "token" not in mine[0], mine[0]
    assert mine[0]["name"] == "grafana" and mine[0]["role"] == "viewer"
    # No secret anywhere in the list: not the new one, not the admin one.
    assert t["token"].encode() not in listed.body
    assert t["token"][4:].encode() not in listed.body
    assert srv.token.encode() not in listed.body
    assert b"cxt_" not in listed.body
    # The admin token itself is listed, with its role.
    assert any(i["role"] == "admin" for i in doc["items"]), doc


def test_token_ids_and_secrets_are_unique(srv):
    a = create_token(srv, "viewer", "uniq-a")
    b = create_token(srv, "viewer", "uniq-b")
    assert a["id"] != b["id"] and a["token"] != b["token"]


def test_viewer_role(srv):
    t = create_token(srv, "viewer", "viewer-1")
    assert srv.get("/api/v1/status", token=t["token"]).status == 200
    r = srv.get("/api/v1/tokens", token=t["token"])
    err = assert_error(r, 403, "FORBIDDEN")
    assert err["details"]["required_role"] == "admin", err
    assert err["details"]["token_role"] == "viewer", err
    assert "admin" in err["message"], err
    r = srv.request("POST", "/api/v1/tokens", body={"role": "admin", "name": "escalate"},
                    token=t["token"])
    assert_error(r, 403, "FORBIDDEN")
    r = srv.request("DELETE", f"/api/v1/tokens/{t['id']}", token=t["token"])
    assert_error(r, 403, "FORBIDDEN")
    assert_error(srv.get("/api/v1/config/effective", token=t["token"]), 403, "FORBIDDEN")
    # Nothing was created by the refused request.
    names = [i["name"] for i in srv.admin("GET", "/api/v1/tokens?limit=500").json()["items"]]
    assert "escalate" not in names


def test_operator_role(srv):
    t = create_token(srv, "operator", "operator-1")
    assert srv.get("/api/v1/status", token=t["token"]).status == 200
    for method, path in (("GET", "/api/v1/tokens"), ("POST", "/api/v1/tokens"),
                         ("GET", "/api/v1/config/effective")):
        r = srv.request(method, path, body={"role": "viewer", "name": "x"} if method == "POST"
                        else None, token=t["token"])
        err = assert_error(r, 403, "FORBIDDEN")
        assert err["details"] == {"required_role": "admin", "token_role": "operator"}, err


def test_second_admin_token_works(srv):
    t = create_token(srv, "admin", "admin-2")
    assert srv.get("/api/v1/tokens", token=t["token"]).status == 200


def test_revoked_token_401(srv):
    t = create_token(srv, "viewer", "to-revoke")
    assert srv.get("/api/v1/status", token=t["token"]).status == 200
    r = srv.admin("DELETE", f"/api/v1/tokens/{t['id']}")
    assert r.status == 200, r
    body = r.json()
    assert body["id"] == t["id"] and body["revoked_at"] is not None, body
    assert "token" not in body, body
    # It stops working before the answer comes back: no waiting here.
    r = srv.get("/api/v1/status", token=t["token"])
    err = assert_401(r)
    assert "revoked" in err["message"], err
    listed = srv.admin("GET", "/api/v1/tokens?limit=500").json()["items"]
    mine = [i for i in listed if i["id"] == t["id"]]
    assert mine and RFC3339_RE.match(mine[0]["revoked_at"] or ""), mine


def test_revoke_unknown_404(srv):
    r = srv.admin("DELETE", "/api/v1/tokens/tok_00000000")
    err = assert_error(r, 404, "TOKEN_NOT_FOUND")
    assert "tok_00000000" in err["message"], err


BAD_BODIES = {
    "missing_role": ({"name": "x1"}, "role"),
    "role_root": ({"role": "root", "name": "x2"}, "role"),
    "role_number": ({"role": 1, "name": "x3"}, "role"),
    "role_upper": ({"role": "ADMIN ", "name": "x4"}, "role"),
    "missing_name": ({"role": "viewer"}, "name"),
    "empty_name": ({"role": "viewer", "name": ""}, "name"),
    "name_space": ({"role": "viewer", "name": "has space"}, "name"),
    "name_slash": ({"role": "viewer", "name": "a/b"}, "name"),
    "name_dotdot": ({"role": "viewer", "name": "../x"}, "name"),
    "name_dash_first": ({"role": "viewer", "name": "-x"}, "name"),
    "name_65": ({"role": "viewer", "name": "n" * 65}, "name"),
    "name_number": ({"role": "viewer", "name": 7}, "name"),
    "name_unicode": ({"role": "viewer", "name": "caf\u00e9"}, "name"),
    "extra_field": ({"role": "viewer", "name": "x5", "expires": "never"}, "expires"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_create_body_422(srv, case):
    body, field = BAD_BODIES[case]
    r = srv.admin("POST", "/api/v1/tokens", body=body)
    err = assert_error(r, 422, "INVALID_FIELD")
    assert err["details"].get("field") == field, err
    assert field in err["message"], err
    listed = srv.admin("GET", "/api/v1/tokens?limit=500").json()["items"]
    if isinstance(body.get("name"), str):
        assert not any(i["name"] == body["name"] for i in listed), listed


def test_name_boundaries_accepted(srv):
    for name in ("n" * 64, "a", "9.x_y-z", "Grafana.Prod-1"):
        t = create_token(srv, "viewer", name)
        assert t["name"] == name


def test_list_pagination(srv):
    made = {create_token(srv, "viewer", f"page-{i}")["id"] for i in range(3)}
    seen, cursor = [], None
    for _ in range(200):  # bounded
        path = "/api/v1/tokens?limit=1" + (f"&cursor={cursor}" if cursor else "")
        r = srv.admin("GET", path)
        assert r.status == 200, r
        doc = r.json()
        assert len(doc["items"]) <= 1
        seen += [i["id"] for i in doc["items"]]
        cursor = doc["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), f"pages repeat tokens: {seen}"
    assert made <= set(seen)


# ---- storage, logs and audit ------------------------------------------------------

def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def test_tokens_stored_hashed(srv):
    t = create_token(srv, "viewer", "hash-check")
    assert srv.get("/api/v1/status", token=t["token"]).status == 200
    srv.admin("DELETE", f"/api/v1/tokens/{t['id']}")
    secret = t["token"].encode()
    hex_part = t["token"][4:].encode()
    admin_hex = srv.token[4:].encode()
    db = os.path.join(srv.data_dir, "data", "state.db")
    blob = b"".join(_read_bytes(db + suffix) for suffix in ("", "-wal", "-journal", "-shm"))
    assert blob, "state.db not found"
    for s in (secret, hex_part, admin_hex):
        assert s not in blob, "a token secret is stored in clear in state.db"
    # Nor in any log file, nor on the server's stderr.
    for root, _, files in os.walk(srv.log_dir):
        for name in files:
            data = _read_bytes(os.path.join(root, name))
            for s in (hex_part, admin_hex):
                assert s not in data, f"a token secret appears in {name}"
    err = srv.stderr().encode()
    assert hex_part not in err and admin_hex not in err, "a token secret appears on stderr"


def test_last_used_at_is_recorded(srv):
    t = create_token(srv, "viewer", "used-one")

    def mine():
        items = srv.admin("GET", "/api/v1/tokens?limit=500").json()["items"]
        return next(i for i in items if i["id"] == t["id"])

    assert mine()["last_used_at"] is None
    assert srv.get("/api/v1/status", token=t["token"]).status == 200
    used = poll(lambda: mine()["last_used_at"], timeout=5)
    assert used and RFC3339_RE.match(used), mine()


def _audit_lines(srv):
    path = os.path.join(srv.log_dir, "audit.log")
    lines = []
    for raw in _read_bytes(path).splitlines():
        if raw.strip():
            lines.append(json.loads(raw))  # every line is a JSON object
    return lines


def test_audit_log_records_create_and_revoke(srv):
    t = create_token(srv, "operator", "audited")
    assert srv.admin("DELETE", f"/api/v1/tokens/{t['id']}").status == 200

    def entries():
        found = {}
        for e in _audit_lines(srv):
            text = json.dumps(e)
            if t["id"] in text and e.get("action") in ("token.create", "token.revoke"):
                found[e["action"]] = e
        return found if len(found) == 2 else None

    found = poll(entries, timeout=5)
    assert found, f"token.create/token.revoke for {t['id']} not in audit.log: {_audit_lines(srv)}"
    for e in found.values():
        assert "ts" in e, e
        assert "admin" in json.dumps(e), f"the audit entry does not say who acted: {e}"
    raw = _read_bytes(os.path.join(srv.log_dir, "audit.log"))
    assert t["token"][4:].encode() not in raw and srv.token[4:].encode() not in raw


# ---- api.public ---------------------------------------------------------------------

def test_api_public_config(make_server):
    s = make_server(config="api:\n  public: [/health]\n")
    assert s.get("/health").status == 200
    assert s.request("HEAD", "/health").status == 200
    assert_401(s.get("/metrics"))
    assert_401(s.get("/health/deep"))
    assert s.get("/api/v1/openapi.json").status == 200  # always public
    viewer = create_token(s, "viewer", "scraper")
    r = s.get("/metrics", token=viewer["token"])
    assert r.status == 200 and b"caxton_up" in r.body, r
    assert s.get("/health/deep", token=viewer["token"]).status == 200
