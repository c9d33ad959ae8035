"""docs/openapi.json against the route table in src/api/routes.c.

The route table is the source of truth for what the server serves; the
OpenAPI document is what clients read. These tests keep the two in step
without a server: every row of the table is documented with its method and
path template, every documented operation is a row of the table, each
operation has a success response, and its security and stated role match the
row's role. They read the two files only, so they run before anything is
built.
"""
import json
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROUTES_C = os.path.join(ROOT, "src", "api", "routes.c")
OPENAPI = os.path.join(ROOT, "docs", "openapi.json")

HTTP_METHODS = ("get", "head", "post", "put", "delete", "patch", "options", "trace")
ROLE_NAMES = {"NONE": "public", "VIEWER": "viewer", "OPERATOR": "operator", "ADMIN": "admin"}
ROLE_RANK = {"public": 0, "viewer": 1, "operator": 2, "admin": 3}
# The table has more rows than this; fewer means the parser lost track of it.
MIN_ROUTES = 30

ROW_RE = re.compile(
    r'\{\s*"(?P<method>[A-Z]+)"\s*,\s*"(?P<path>/[^"\s]*)"\s*,\s*TOKEN_ROLE_(?P<role>[A-Z]+)\s*,'
    r'\s*(?P<public>true|false)\s*,')
TABLE_RE = re.compile(r"route_table\s*\[\s*\]\s*=\s*\{(?P<body>.*?)\n\};", re.S)
COMMENT_RE = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
TEMPLATE_RE = re.compile(r"\{([^{}/]+)\}")


def strip_comments(source):
    """C source without comments (string literals in the table hold no comment markers)."""
    return COMMENT_RE.sub(" ", source)


def parse_routes(source):
    """The rows of route_table: dicts with method, path, role and public."""
    m = TABLE_RE.search(strip_comments(source))
    if not m:
        raise ValueError("no `route_table[] = { ... };` found")
    rows = []
    for row in ROW_RE.finditer(m.group("body")):
        role = row.group("role")
        if role not in ROLE_NAMES:
            raise ValueError(f"unknown role TOKEN_ROLE_{role} in the row for {row.group('path')}")
        rows.append({"method": row.group("method").lower(), "path": row.group("path"),
                     "role": ROLE_NAMES[role],
                     "public": role == "NONE" or row.group("public") == "true"})
    return rows


def shape(path):
    """The path with its parameter names blanked: /a/{name}/b -> /a/{}/b."""
    return TEMPLATE_RE.sub("{}", path)


def operations(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield path, method, item, op


def resolve(doc, node):
    seen = 0
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local references are used, got {ref}"
        node = doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            assert isinstance(node, dict) and part in node, f"unresolved reference {ref}"
            node = node[part]
        seen += 1
        assert seen < 16, f"reference loop at {ref}"
    return node


@pytest.fixture(scope="module")
def routes():
    with open(ROUTES_C, encoding="utf-8") as f:
        rows = parse_routes(f.read())
    assert len(rows) >= MIN_ROUTES, f"only {len(rows)} rows parsed from {ROUTES_C}"
    return rows


@pytest.fixture(scope="module")
def doc():
    with open(OPENAPI, encoding="utf-8") as f:
        return json.load(f)


def route_index(rows):
    return {(r["method"], r["path"]): r for r in rows}


def row_for(rows, method, path):
    """The table row serving a documented operation (HEAD is served wherever GET is)."""
    index = route_index(rows)
    if (method, path) in index:
        return index[(method, path)]
    if method == "head":
        return index.get(("get", path))
    return None


# ---- the parser itself -------------------------------------------------------

SAMPLE = r'''
static const int other[] = {1, 2};
static const route route_table[] = {
    {"GET", "/health", TOKEN_ROLE_VIEWER, true, ROUTE_INLINE, false, api_health},
    /* a comment holding a row: {"GET", "/commented", TOKEN_ROLE_ADMIN, false, ROUTE_LOOP, */
    // {"DELETE", "/line-comment", TOKEN_ROLE_ADMIN, false, ROUTE_LOOP, false, h},
    {"POST", "/api/v1/things/{id}/do", TOKEN_ROLE_OPERATOR, false, ROUTE_LOOP, true,
     api_do},
    {"GET",
     "/api/v1/openapi.json", TOKEN_ROLE_NONE, false, ROUTE_INLINE, false, api_openapi},
};
static const char *not_a_route = "{\"GET\", \"/outside\", TOKEN_ROLE_ADMIN, false,";
'''


def test_parser_reads_rows_across_lines_and_skips_comments():
    rows = parse_routes(SAMPLE)
    assert [(r["method"], r["path"], r["role"], r["public"]) for r in rows] == [
        ("get", "/health", "viewer", True),
        ("post", "/api/v1/things/{id}/do", "operator", False),
        ("get", "/api/v1/openapi.json", "public", True),
    ]


def test_parser_refuses_a_file_without_the_table():
    with pytest.raises(ValueError):
        parse_routes("static const route routes[] = {};\n")
    with pytest.raises(ValueError):
        parse_routes("")


def test_parser_refuses_an_unknown_role():
    bad = SAMPLE.replace("TOKEN_ROLE_OPERATOR", "TOKEN_ROLE_ROOT")
    with pytest.raises(ValueError, match="TOKEN_ROLE_ROOT"):
        parse_routes(bad)


def test_parser_is_not_fooled_by_hostile_text():
    # A huge table of junk, unbalanced braces and quotes: no rows, quickly.
    junk = "static const route route_table[] = {\n" + ('{"GET", "/x' * 20000) + "\n};\n"
    assert parse_routes(junk) == []
    # Paths with spaces or without a leading slash are not rows.
    odd = ('static const route route_table[] = {\n'
           '    {"GET", "no-slash", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false, h},\n'
           '    {"GET", "/has space", TOKEN_ROLE_VIEWER, false, ROUTE_LOOP, false, h},\n'
           '};\n')
    assert parse_routes(odd) == []


def test_shape_blanks_parameter_names():
    assert shape("/api/v1/agents/{name}/queue") == "/api/v1/agents/{}/queue"
    assert shape("/api/v1/dead-letters/{id}") == shape("/api/v1/dead-letters/{name}")
    assert shape("/health") == "/health"


# ---- the table against the document -------------------------------------------

def test_table_has_no_duplicate_rows(routes):
    seen = {}
    for r in routes:
        key = (r["method"], shape(r["path"]))
        assert key not in seen, f"{r['method'].upper()} {r['path']} repeats {seen[key]}"
        seen[key] = r["path"]


def test_every_route_is_documented(routes, doc):
    paths = doc["paths"]
    by_shape = {shape(p): p for p in paths}
    missing = []
    for r in routes:
        if r["method"] in paths.get(r["path"], {}):
            continue
        near = by_shape.get(shape(r["path"]))
        hint = f" (documented as {near}: parameter names differ)" if near and near != r["path"] \
            else ""
        missing.append(f"{r['method'].upper()} {r['path']}{hint}")
    assert not missing, "routes of src/api/routes.c missing from docs/openapi.json: " + \
        ", ".join(missing)


def test_every_documented_operation_is_served(routes, doc):
    extra = [f"{m.upper()} {p}" for p, m, _, _ in operations(doc) if not row_for(routes, m, p)]
    assert not extra, "operations of docs/openapi.json with no row in src/api/routes.c: " + \
        ", ".join(extra)


def test_path_parameters_match_templates(doc):
    problems = []
    for path, method, item, op in operations(doc):
        declared = {}
        for p in item.get("parameters", []) + op.get("parameters", []):
            p = resolve(doc, p)
            if p.get("in") == "path":
                declared[p["name"]] = p
        names = TEMPLATE_RE.findall(path)
        for name in names:
            if name not in declared:
                problems.append(f"{method.upper()} {path}: {{{name}}} is not declared")
            elif declared[name].get("required") is not True:
                problems.append(f"{method.upper()} {path}: {{{name}}} is not required")
        for name in set(declared) - set(names):
            problems.append(f"{method.upper()} {path}: path parameter {name} is not in the path")
    assert not problems, problems


def test_every_operation_has_a_success_response(doc):
    missing = [f"{m.upper()} {p}" for p, m, _, op in operations(doc)
               if not any(re.fullmatch(r"2[0-9][0-9]|2XX", str(code))
                          for code in op.get("responses", {}))]
    assert not missing, f"operations without a 2xx response: {missing}"


def test_security_matches_the_role(routes, doc):
    schemes = doc.get("components", {}).get("securitySchemes", {})
    assert schemes.get("bearerAuth", {}).get("scheme") == "bearer", schemes
    problems = []
    for path, method, _, op in operations(doc):
        row = row_for(routes, method, path)
        if not row:
            continue  # reported by test_every_documented_operation_is_served
        where = f"{method.upper()} {path}"
        security = op.get("security", doc.get("security", []))
        optional = security == [] or {} in security
        if row["public"]:
            if not optional:
                problems.append(f"{where} is public but requires {security}")
        else:
            if optional:
                problems.append(f"{where} needs a {row['role']} token but documents no "
                                "required security")
            for requirement in security:
                unknown = set(requirement) - set(schemes)
                if unknown:
                    problems.append(f"{where} names unknown security schemes {unknown}")
    assert not problems, problems


def test_description_states_the_role(routes, doc):
    problems = []
    for path, method, _, op in operations(doc):
        row = row_for(routes, method, path)
        if not row:
            continue
        stated = re.match(r"Role: (public|viewer|operator|admin)\b", op.get("description", ""))
        want = "public" if row["public"] else row["role"]
        if not stated or stated.group(1) != want:
            problems.append(f"{method.upper()} {path}: description should start with "
                            f"'Role: {want}', got {op.get('description', '')[:40]!r}")
    assert not problems, problems


def test_auth_errors_match_the_role(routes, doc):
    """A route that needs a token documents 401; one above viewer also 403."""
    problems = []
    for path, method, _, op in operations(doc):
        row = row_for(routes, method, path)
        if not row or row["public"]:
            continue
        codes = {str(c) for c in op.get("responses", {})}
        if "401" not in codes:
            problems.append(f"{method.upper()} {path}: no 401")
        if ROLE_RANK[row["role"]] > ROLE_RANK["viewer"] and "403" not in codes:
            problems.append(f"{method.upper()} {path}: needs {row['role']} but has no 403")
    assert not problems, problems


# Error statuses whose body is not the envelope, by design: readiness failing
# answers 503 with the same component document as 200.
NOT_ENVELOPED = {("get", "/health/deep", "503")}


def test_error_responses_use_the_envelope(doc):
    envelope = "#/components/schemas/Error"
    problems = []
    for path, method, _, op in operations(doc):
        for code, response in op.get("responses", {}).items():
            if not re.fullmatch(r"[45][0-9][0-9]", str(code)) or \
                    (method, path, str(code)) in NOT_ENVELOPED:
                continue
            response = resolve(doc, response)
            for ctype, media in response.get("content", {}).items():
                if ctype.startswith("application/json") and \
                        media.get("schema", {}).get("$ref") != envelope:
                    problems.append(f"{method.upper()} {path} {code}")
    assert not problems, f"error responses not described by the Error envelope: {problems}"


def test_operation_ids_are_unique(doc):
    ids = [op.get("operationId") for _, _, _, op in operations(doc)]
    assert all(ids), "every operation has an operationId"
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, f"repeated operationIds: {dupes}"


def test_every_reference_resolves(doc):
    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(doc, node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(doc)
