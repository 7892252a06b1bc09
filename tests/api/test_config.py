"""Configuration: INI file, TOKEND_<SECTION>_<KEY> environment overrides,
flags, `serve --check-config`, and start-up errors (exit 2, file:line)."""

import os
import pathlib
import re
import socket
import subprocess
import time

import pytest

from conftest import HANG, LOGIN, REPO, child_env, expect_detail, expect_json

DEFAULTS = {
    ("server", "listen"): "127.0.0.1:8000",
    ("server", "threads"): "0",
    ("server", "max_connections"): "1024",
    ("server", "per_ip_connections"): "-1",
    ("server", "per_client_requests"): "32",
    ("server", "trusted_proxies"): "",
    ("server", "idle_timeout"): "30",
    ("server", "request_timeout"): "30",
    ("server", "max_body"): "65536",
    ("server", "max_header"): "16384",
    ("server", "max_json_depth"): "32",
    ("server", "max_string"): "4096",
    ("log", "level"): "info",
    ("log", "format"): "text",
    ("log", "access_log"): "true",
    ("database", "url"): "var/tokend.db",
    ("database", "busy_timeout_ms"): "5000",
    ("keys", "dir"): "var/keys",
    ("keys", "algorithm"): "HS256",
    ("keys", "reload_interval"): "5",
    ("tokens", "access_lifetime"): "300",
    ("tokens", "refresh_lifetime"): "86400",
    ("tokens", "refresh_grace"): "10",
    ("tokens", "session_lifetime"): "2592000",
    ("password", "pbkdf2_iterations"): "600000",
    ("password", "hash_workers"): "0",
    ("password", "hash_queue"): "64",
    ("password", "hash_deadline_ms"): "10000",
    ("throttle", "login_client_failures"): "10",
    ("throttle", "login_client_window"): "900",
    ("throttle", "login_user_failures"): "100",
    ("throttle", "login_user_window"): "3600",
    ("throttle", "entries"): "100000",
    ("cors", "allowed_origins"): "",
    ("cors", "max_age"): "600",
    ("metrics", "enabled"): "true",
    ("metrics", "allowed"): "127.0.0.0/8 ::1",
}


# Each could never equal an Origin header a browser sends: refused at start-up.
BAD_ORIGINS = [
    "*", "https://*.app.example", "null", "app.example", "//app.example",
    "https://app.example/", "https://app.example/path", "https://user@app.example",
    "ftp://app.example", "file:///etc", "https://", "https://app.example:0",
    "https://app.example:70000", "https://app.example:", "http://127.1",
    "https://app..example", "https://app.exämple", "https://[::1", "garbage",
    "https://ok.example, https://bad.example/",
]


def check_config(inst, cfg=None, env=None):
    ga = inst.global_args() + (["--config", str(cfg)] if cfg else [])
    return inst.cli("serve", "--check-config", global_args=ga, env=env, timeout=20)


def write(tmp_path, text, name="tokend.conf"):
    p = tmp_path / name
    p.write_text(text)
    return p


def assert_startup_error(res, what, needle=None):
    assert res.rc == 2, f"{what}: expected exit 2, got {res!r}"
    assert res.err.strip(), f"{what}: no message on stderr"
    if needle:
        assert needle in res.err, f"{what}: stderr should contain {needle!r}: {res.err!r}"


# ---------------------------------------------------------------- valid files

def test_valid_file_passes_check_config(factory, tmp_path):
    inst = factory()
    cfg = write(tmp_path, "; a comment\n# another\n\n[server]\nlisten = 127.0.0.1:0\nthreads = 2\n"
                          "max_body = 65536\n\n[log]\nlevel = info\naccess_log = true\n\n"
                          "[password]\npbkdf2_iterations = 1000\n\n[tokens]\naccess_lifetime = 60\n")
    res = check_config(inst, cfg)
    assert res.rc == 0, f"valid config rejected: {res!r}"


def test_empty_file_passes(factory, tmp_path):
    assert check_config(factory(), write(tmp_path, "")).rc == 0


def test_check_config_without_file(factory):
    res = check_config(factory())
    assert res.rc == 0, f"serve --check-config with defaults: {res!r}"


def test_repo_config_documents_every_key_and_passes(factory):
    path = REPO / "config" / "tokend.conf"
    assert path.is_file(), f"{path} missing"
    found = {}
    section = None
    for ln in path.read_text().splitlines():
        s = ln.strip()
        m = re.match(r"^\[([^\]]+)\]$", s)
        if m:
            section = m.group(1).strip()
            continue
        m = re.match(r"^[;#]?\s*([a-z0-9_]+)\s*=\s*(.*?)\s*$", s)
        if m and section:
            value = re.split(r"\s+[;#]", m.group(2))[0].strip().strip('"')
            found.setdefault((section, m.group(1)), value)
    missing = [f"{s}.{k}" for (s, k) in DEFAULTS if (s, k) not in found]
    assert not missing, f"config/tokend.conf does not document: {missing}"
    wrong = {f"{s}.{k}": (found[(s, k)], d) for (s, k), d in DEFAULTS.items()
             if found[(s, k)].lower() != d.lower()}
    assert not wrong, f"config/tokend.conf documents other defaults than expected (found, expected): {wrong}"
    res = check_config(factory(), path)
    assert res.rc == 0, f"config/tokend.conf fails --check-config: {res!r}"


# ---------------------------------------------------------------- bad files

def test_unknown_key_reports_file_and_line(factory, tmp_path):
    cfg = write(tmp_path, "[server]\nthreads = 2\n\nbogus_key = 1\n")
    res = check_config(factory(), cfg)
    assert_startup_error(res, "unknown key", f"{cfg}:4:")


def test_unknown_section(factory, tmp_path):
    cfg = write(tmp_path, "[server]\nthreads = 2\n[nosuch]\nthreads = 2\n")
    assert_startup_error(check_config(factory(), cfg), "unknown section", f"{cfg}:")


@pytest.mark.parametrize("section,key,value", [
    ("server", "threads", "-1"), ("server", "threads", "abc"), ("server", "listen", "nonsense"),
    ("server", "listen", "127.0.0.1:99999"), ("server", "listen", "127.0.0.1:"),
    ("server", "max_body", "-5"), ("server", "max_body", "12abc"), ("server", "max_body", ""),
    ("server", "idle_timeout", "1.5x"), ("server", "max_json_depth", "0"),
    ("server", "max_connections", "99999999999999999999"), ("log", "level", "loud"),
    ("log", "format", "JSON"), ("log", "format", "logfmt"),
    ("log", "access_log", "maybe"), ("password", "pbkdf2_iterations", "0"),
    ("password", "hash_queue", "-1"), ("keys", "algorithm", "none"), ("keys", "algorithm", "HS999"),
    ("tokens", "access_lifetime", "-300"), ("database", "busy_timeout_ms", "soon"),
    ("throttle", "login_client_failures", "-1"), ("throttle", "login_user_failures", "65536"),
    ("throttle", "login_client_window", "0"), ("throttle", "login_user_window", "2592001"),
    ("throttle", "entries", "0"), ("throttle", "entries", "1023"),
    ("server", "per_ip_connections", "-2"), ("server", "per_client_requests", "-1"),
    ("server", "trusted_proxies", "10.0.0.1/8"), ("server", "trusted_proxies", "localhost"),
    ("server", "trusted_proxies", "10.0.0.0/8 fe80::1%eth0"),
    ("cors", "max_age", "-1"), ("cors", "max_age", "1d"),
] + [("cors", "allowed_origins", v) for v in BAD_ORIGINS])
def test_bad_value_in_file(factory, tmp_path, section, key, value):
    cfg = write(tmp_path, f"# header\n[{section}]\n{key} = {value}\n")
    res = check_config(factory(), cfg)
    assert_startup_error(res, f"{section}.{key} = {value!r}", f"{cfg}:3:")


def test_cors_origins_in_file_env_and_check_config(factory, tmp_path):
    """Entries are normalised as a browser serialises an origin; a long list
    continues on indented lines; the environment replaces the file's list."""
    cfg = write(tmp_path, "[cors]\nallowed_origins = HTTPS://App.Example:443,\n"
                          "    http://127.0.0.1:5000 http://[0:0::1]:80\nmax_age = 60\n")
    inst = factory()
    res = check_config(inst, cfg)
    assert res.rc == 0, res
    values = dumped(res)
    assert values["cors.allowed_origins"] == "https://app.example http://127.0.0.1:5000 http://[::1]", values
    assert values["cors.max_age"] == "60"
    res = check_config(inst, cfg, env={"TOKEND_CORS_ALLOWED_ORIGINS": "https://b.example"})
    assert res.rc == 0, res
    assert dumped(res)["cors.allowed_origins"] == "https://b.example"
    res = check_config(inst, cfg, env={"TOKEND_CORS_ALLOWED_ORIGINS": ""})
    assert dumped(res)["cors.allowed_origins"] == "", "an empty variable turns CORS off"


def test_bad_cors_origin_on_a_continued_line(factory, tmp_path):
    cfg = write(tmp_path, "[cors]\nallowed_origins = https://a.example\n  https://b.example/\n")
    res = check_config(factory(), cfg)
    assert_startup_error(res, "continued line", f"{cfg}:3: cors.allowed_origins: ")
    assert '"https://b.example/"' in res.err, res.err


@pytest.mark.parametrize("value", ["*", "https://app.example/", "app.example", "null"])
def test_bad_cors_origin_in_environment(factory, value):
    res = check_config(factory(), env={"TOKEND_CORS_ALLOWED_ORIGINS": value})
    assert_startup_error(res, f"TOKEND_CORS_ALLOWED_ORIGINS={value}",
                         "env TOKEND_CORS_ALLOWED_ORIGINS: cors.allowed_origins: ")


def test_unreadable_config(factory, tmp_path):
    inst = factory()
    assert_startup_error(check_config(inst, tmp_path / "does-not-exist.conf"), "missing config file")
    assert_startup_error(check_config(inst, tmp_path), "config path is a directory")


def test_bad_config_stops_plain_serve(factory, tmp_path):
    inst = factory()
    cfg = write(tmp_path, "[server]\nthreads = -1\n")
    argv = [str(inst.bin)] + inst.global_args() + ["--config", str(cfg), "serve", "--listen", "127.0.0.1:0"]
    try:
        p = subprocess.run(argv, capture_output=True, text=True, env=child_env(), timeout=10, cwd=str(tmp_path))
    except subprocess.TimeoutExpired:
        raise AssertionError("serve with threads = -1 started anyway (still running after 10 s)")
    assert p.returncode == 2, f"serve with a bad config: exit {p.returncode}, stderr {p.stderr!r}"
    assert f"{cfg}:2:" in p.stderr, p.stderr
    assert "listening on" not in p.stderr


# ---------------------------------------------------------------- environment

@pytest.mark.parametrize("var,value", [
    ("TOKEND_SERVER_NOPE", "1"), ("TOKEND_SERVER_THREADS", "abc"),
    ("TOKEND_SERVER_MAX_BODY", "-1"), ("TOKEND_LOG_LEVEL", "loud"), ("TOKEND_LOG_FORMAT", "yaml"),
    ("TOKEND_PASSWORD_PBKDF2_ITERATIONS", "0"),
])
def test_bad_environment(factory, var, value):
    res = check_config(factory(), env={var: value})
    assert_startup_error(res, f"{var}={value}", f"env {var}")
    assert any(ln.startswith(f"env {var}") for ln in res.err.splitlines()), (
        f"message must start with 'env {var}': {res.err!r}")


def test_env_overrides_file_and_file_is_used(factory, tmp_path):
    cfg = write(tmp_path, "[server]\nmax_body = 1024\n")
    inst = factory()
    inst.add_user("cfg", "cfg-pw")
    body = b'{"username": "cfg", "password": "cfg-pw", "pad": "' + b"x" * 1950 + b'"}'
    srv = inst.start(global_args=inst.global_args() + ["--config", str(cfg)])
    expect_detail(srv.post(LOGIN, data=body, headers={"Content-Type": "application/json"}), 413,
                  "file max_body = 1024, 2000-byte body")
    assert srv.stop() == 0
    srv = inst.start(global_args=inst.global_args() + ["--config", str(cfg)],
                     env={"TOKEND_SERVER_MAX_BODY": "4096"})
    expect_json(srv.post(LOGIN, data=body, headers={"Content-Type": "application/json"}), 201,
                "TOKEND_SERVER_MAX_BODY=4096 over file max_body = 1024")


def test_config_file_paths_and_listen_are_used(factory, tmp_path):
    inst = factory()
    db = tmp_path / "fromcfg.db"
    keys = tmp_path / "fromcfg-keys"
    cfg = write(tmp_path, f"[server]\nlisten = 127.0.0.1:0\n[database]\nurl = {db}\n[keys]\ndir = {keys}\n")
    srv = inst.start(global_args=["--config", str(cfg)], listen=None)
    expect_json(srv.request("GET", "/nope"), 404)
    assert db.exists(), "database.url from the config file not used"
    assert list(keys.glob("*.HS256.key")), "keys.dir from the config file not used"
    assert srv.stop() == 0
    # --database beats the file
    other = tmp_path / "fromflag.db"
    srv = inst.start(global_args=["--config", str(cfg), "--database", str(other)], listen=None)
    expect_json(srv.request("GET", "/nope"), 404)
    assert other.exists(), "--database did not override database.url"


def test_database_path_is_an_alias_of_url(factory, tmp_path):
    """[database] path, the setting's name before it took PostgreSQL URLs,
    is still read (file and environment) and printed as database.url."""
    inst = factory()
    cfg = write(tmp_path, "[database]\npath = /srv/from-file.db\n")
    values = dumped(inst.cli("serve", "--check-config", global_args=["--config", str(cfg)]))
    assert values["database.url"] == "/srv/from-file.db", values
    assert "database.path" not in values, "the alias is not printed as a key of its own"
    values = dumped(inst.cli("serve", "--check-config", global_args=[],
                             env={"TOKEND_DATABASE_PATH": "/srv/from-env.db"}))
    assert values["database.url"] == "/srv/from-env.db", values


@pytest.mark.parametrize("url", [
    "postgresql://tokend:s3cret@/tokend?host=/tmp",
    "postgres://tokend:s3cret@db.example:5432/tokend",
    "postgresql://tokend@/tokend?host=/tmp&password=s3cret&sslmode=disable",
    "host=/tmp dbname=tokend user=tokend password=s3cret",
    "host=/tmp dbname=tokend password='s3cret with \\' a quote'",
])
def test_check_config_never_prints_the_database_password(factory, url):
    res = factory().cli("serve", "--check-config", global_args=["--database", url])
    assert res.rc == 0, res
    assert "s3cret" not in res.out + res.err, res
    assert "***" in dumped(res)["database.url"], res


def test_listen_flag_beats_environment(factory):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        port = busy.getsockname()[1]
        inst = factory()
        srv = inst.start(env={"TOKEND_SERVER_LISTEN": f"127.0.0.1:{port}"})
        assert srv.port != port
        expect_json(srv.request("GET", "/nope"), 404)
    finally:
        busy.close()


def test_listen_on_busy_port_fails(factory):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        inst = factory()
        argv = [str(inst.bin)] + inst.global_args() + ["serve", "--listen", f"127.0.0.1:{busy.getsockname()[1]}"]
        try:
            p = subprocess.run(argv, capture_output=True, text=True, env=child_env(), timeout=10)
        except subprocess.TimeoutExpired:
            raise AssertionError("serve on a busy port did not fail")
        assert p.returncode != 0, p
        assert p.stderr.strip(), "no message when the port is busy"
    finally:
        busy.close()


def test_small_limits_from_env(factory):
    inst = factory(env={"TOKEND_SERVER_MAX_STRING": "10", "TOKEND_SERVER_MAX_JSON_DEPTH": "4",
                        "TOKEND_SERVER_MAX_HEADER": "2048"})
    srv = inst.start()
    body = expect_json(srv.login("u" * 11, "p" * 10), 400, "max_string = 10")
    assert body == {"username": ["Ensure this field has no more than 10 characters."]}, body
    expect_json(srv.login("u" * 10, "p" * 10), 401, "10 chars with max_string = 10")
    ok = b'{"username": [[[]]]}'          # depth 4
    deep = b'{"username": [[[[]]]]}'      # depth 5
    body = expect_json(srv.post(LOGIN, data=ok, headers={"Content-Type": "application/json"}), 400)
    assert "username" in body, f"depth 4 with max_json_depth = 4 must parse: {body}"
    body = expect_json(srv.post(LOGIN, data=deep, headers={"Content-Type": "application/json"}), 400)
    assert body.get("detail", "").startswith("JSON parse error - "), f"depth 5 > 4: {body}"
    expect_json(srv.request("GET", "/nope", headers={"X-Big": "b" * 3000}), 431, "max_header = 2048")
    expect_json(srv.request("GET", "/nope", headers={"X-Small": "b" * 1000}), 404, "1 KB header, limit 2048")


# ---------------------------------------------------------------- effective values

def dumped(res):
    """The `section.key = value` lines --check-config prints, as a dict."""
    return dict(re.match(r"^([a-z_]+\.[a-z0-9_]+) = (.*)$", ln).groups()
                for ln in res.out.splitlines() if " = " in ln)


def test_check_config_prints_effective_values(factory, tmp_path):
    cfg = write(tmp_path, "[server]\nthreads = 2\nmax_body = 1000\n")
    res = check_config(factory(), cfg, env={"TOKEND_SERVER_THREADS": "3"})
    assert res.rc == 0, res
    values = dumped(res)
    assert values["server.threads"] == "3", "the environment wins over the file"
    assert values["server.max_body"] == "1000", "the file wins over the defaults"
    assert values["database.url"], "every key is printed"
    assert res.out.rstrip().endswith("configuration ok"), res


def test_every_key_is_documented_in_the_repo_config(factory):
    """config/tokend.conf documents each key of the option table with its
    default: the keys --check-config prints with no file are the table."""
    values = dumped(check_config(factory(), env={"TOKEND_PASSWORD_PBKDF2_ITERATIONS": None}))
    doc = {}
    section = None
    for ln in (REPO / "config" / "tokend.conf").read_text().splitlines():
        m = re.match(r"^\[([^\]]+)\]$", ln.strip())
        if m:
            section = m.group(1)
            continue
        m = re.match(r"^([a-z0-9_]+)\s*=\s*(.*?)\s*$", ln.strip())
        if m and section:
            doc[f"{section}.{m.group(1)}"] = m.group(2)
    ignored = {"database.url", "keys.dir"}  # the test fixture overrides these
    for key, value in values.items():
        assert key in doc, f"config/tokend.conf does not document {key}"
        if key not in ignored:
            assert doc[key] == value, f"{key}: documented {doc[key]!r}, default {value!r}"


# ---------------------------------------------------------------- HTTP threads

def http_threads(srv, expected):
    """libmicrohttpd's threads of the running server: MHD-worker in a pool,
    MHD-single when there is one. Each thread names itself once it runs,
    which may be after 'listening on' is printed: poll until the count is
    the expected one, or HANG bounds the wait, and return the last count."""
    tasks = pathlib.Path(f"/proc/{srv.proc.pid}/task")
    deadline = time.monotonic() + HANG
    while True:
        count = sum(1 for t in tasks.iterdir()
                    if (t / "comm").read_text().startswith(("MHD-worker", "MHD-single")))
        if count == expected or time.monotonic() > deadline:
            return count
        time.sleep(0.02)


@pytest.mark.parametrize("value, expected", [
    ("3", 3),
    ("0", 2 * os.sysconf("SC_NPROCESSORS_ONLN")),  # the default: two per CPU
])
def test_server_threads_sets_the_http_thread_pool(factory, value, expected):
    inst = factory()
    srv = inst.start(env={"TOKEND_SERVER_THREADS": value})
    assert http_threads(srv, expected) == expected
    assert srv.post("/api/auth/jwt/verify/", data={"token": "x"}).status_code == 401


def test_threads_flag_sets_the_http_thread_pool(factory):
    srv = factory().start(serve_args=["--threads", "1"])
    assert http_threads(srv, 1) == 1
