"""docs/openapi.yaml: valid OpenAPI 3.1 (checked with python3-jsonschema
against the OpenAPI 3.1 meta-schema vendored in openapi-3.1-schema.yaml,
from github.com/OAI/OpenAPI-Specification; every Schema Object against
JSON Schema 2020-12; every local $ref resolved), served by the binary as
JSON at GET /api/openapi.json, and describing exactly the router's table:
`tokend routes` and the Allow header of every documented path, both ways."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, child_env

yaml = pytest.importorskip("yaml", reason="python3-yaml is not installed")
jsonschema = pytest.importorskip("jsonschema", reason="python3-jsonschema is not installed")

SPEC = REPO / "docs" / "openapi.yaml"
META = Path(__file__).with_name("openapi-3.1-schema.yaml")
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
TEAM = "0b3e8a52-7c1d-4e5f-9a6b-2c4d6e8f0a1b"


def load_spec():
    return yaml.safe_load(SPEC.read_text(encoding="utf-8"))


def norm(path):
    """A path template with its parameters unnamed: /a/{team}/ -> /a/{}/."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def documented(spec):
    return {(m.upper(), norm(p)) for p, item in spec["paths"].items() for m in item
            if m in METHODS}


def router_table(binary):
    proc = subprocess.run([str(binary), "routes"], capture_output=True, text=True,
                          env=child_env(), timeout=30)
    assert proc.returncode == 0, proc.stderr
    rows = [ln.split("\t") for ln in proc.stdout.splitlines()]
    assert rows and all(len(r) == 2 for r in rows), proc.stdout
    return {(m, norm(p)) for m, p in rows}


def test_spec_is_valid_openapi_3_1():
    spec = load_spec()
    meta = yaml.safe_load(META.read_text(encoding="utf-8"))
    assert spec["openapi"].startswith("3.1.")
    validator = jsonschema.Draft202012Validator(meta)
    errors = sorted(validator.iter_errors(spec), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:20])
    # The meta-schema leaves Schema Objects to the dialect: JSON Schema 2020-12.
    for name, schema in spec["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)


def walk(node, at="#"):
    if isinstance(node, dict):
        for k, v in node.items():
            yield at, k, v
            yield from walk(v, f"{at}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{at}/{i}")


def test_every_ref_resolves_and_every_operation_is_whole():
    spec = load_spec()
    for at, k, v in walk(spec):
        if k != "$ref":
            continue
        assert v.startswith("#/"), f"{at}: only local references: {v}"
        node = spec
        for part in v[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"{at}: {v} does not resolve"
            node = node[part]
    ids = set()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            where = f"{method.upper()} {path}"
            assert op.get("operationId") and op["operationId"] not in ids, where
            ids.add(op["operationId"])
            assert op.get("summary"), where
            assert "default" in op["responses"], f"{where}: the JSON error shape"
            if method == "post":
                assert "415" in op["responses"], where
                content = op["requestBody"]["content"]
                assert set(content) == {"application/json",
                                        "application/x-www-form-urlencoded"}, where
            if op.get("security"):
                assert "401" in op["responses"], where
            if "{" in path:
                assert "404" in op["responses"] and "403" in op["responses"], where


def test_401_table_and_bearer_scheme():
    spec = load_spec()
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        **spec["components"]["securitySchemes"]["bearerAuth"],
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    text = json.dumps(spec["components"]["responses"]["Unauthorized"])
    for code in ("bad_authorization_header", "token_not_valid", "user_inactive",
                 "user_not_found", "Authentication credentials were not provided."):
        assert code in text, code
    for path, item in spec["paths"].items():
        if path.startswith("/api/openapi/token/"):
            for m, op in item.items():
                if m in METHODS:
                    assert op["security"] == [{"bearerAuth": []}], (m, path)


def test_documented_paths_are_the_router_table(tokend_bin):
    doc = documented(load_spec())
    table = router_table(tokend_bin)
    assert doc - table == set(), f"documented but not routed: {sorted(doc - table)}"
    assert table - doc == set(), f"routed but not documented: {sorted(table - doc)}"


def test_served_document_and_allow_headers(factory):
    spec = load_spec()
    inst, srv = factory.server()
    r = srv.request("GET", "/api/openapi.json")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Cache-Control"] == "public, max-age=3600"
    assert r.headers.get("X-Request-Id")
    assert r.json() == spec, "the served document must be docs/openapi.yaml as JSON"
    h = srv.request("HEAD", "/api/openapi.json")
    assert h.status_code == 200 and h.content == b""
    assert h.headers["Content-Length"] == r.headers["Content-Length"]
    # Each documented path answers OPTIONS with 405 and Allow: exactly its
    # documented methods (HEAD wherever GET), so the live router agrees too.
    for path, item in spec["paths"].items():
        want = {m.upper() for m in item if m in METHODS}
        if "GET" in want:
            want.add("HEAD")
        concrete = path.replace("{team_uuid}", TEAM)
        o = srv.request("OPTIONS", concrete)
        assert o.status_code == 405, (path, o.status_code, o.text)
        allow = {m.strip() for m in o.headers["Allow"].split(",")}
        assert allow == want, (path, allow, want)
