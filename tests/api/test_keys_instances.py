"""Keys across instances (issue 13): several tokend processes on one
database, each with its own copy of the key directory (or one shared
directory), pick up a key added to or retired from their directory without
a signal -- at once on a token of a kid they do not know, and by the
periodic check of keys.reload_interval -- and a roll-over goes "publish
first, sign later" (`tokend key add`, then `tokend key use KID`).

Hostile paths: a flood of tokens with invented kids costs at most about one
look at the directory per second (counted by tokend_key_dir_checks_total);
a half-written key file, a key file readable by others, a directory made
world-writable, a directory that disappears and a "current" that names a
key the copy lacks all keep the old keys, log once, and never crash.

No assertion is on a duration: each wait polls for a condition, and its
deadline only bounds a hang."""

import base64
import concurrent.futures
import os
import re
import secrets
import shutil
import signal
import time
import uuid as uuidlib

import jwt

from conftest import b64url_decode, expect_invalid, expect_json, expect_tokens, header_of
from test_keys import JWKS, KID_RE, current_kid, key_files, verify, wait_until
from test_metrics import parse, scrape, value

DEADLINE = 30.0  # seconds: bounds a hang, never a measurement
PASSWORD = "instances test password"


# ---------------------------------------------------------------- helpers

def copy_key_file(src, dst_dir, mode=0o600):
    """Copies one file as rsync does: a temporary name, then a rename."""
    tmp = dst_dir / f".{src.name}.copy"
    shutil.copyfile(src, tmp)
    os.chmod(tmp, mode)
    os.rename(tmp, dst_dir / src.name)


def copy_key_dir(src, dst):
    dst.mkdir(mode=0o700, exist_ok=True)
    os.chmod(dst, 0o700)
    for f in sorted(src.iterdir()):
        if f.name.endswith(".key"):
            copy_key_file(f, dst)
    if (src / "current").exists():
        copy_key_file(src / "current", dst)


def two_instances(factory, env_a=None, env_b=None, shared_dir=False):
    """Instances A and B on one database; B's key directory a copy of A's
    (or A's own with shared_dir). Returns (a, sa, b, sb)."""
    a = factory(env=env_a, label="A")
    sa = a.start(label="A")
    b = factory(env=env_b, label="B")
    b.share_database(a)
    if shared_dir:
        b.keys = a.keys
    else:
        copy_key_dir(a.keys, b.keys)
    sb = b.start(label="B")
    return a, sa, b, sb


def user(inst):
    name = f"m-{uuidlib.uuid4().hex[:8]}"
    inst.add_user(name, PASSWORD)
    return name


def login(srv, name):
    return expect_tokens(srv.login(name, PASSWORD))


def login_kid(srv, name):
    return header_of(login(srv, name)["access"])["kid"]


def jwks_kids(srv):
    r = srv.request("GET", JWKS)
    body = expect_json(r, 200, "GET jwks")
    return sorted(k["kid"] for k in body["keys"])


def metric(srv, name, **labels):
    samples, _ = parse(scrape(srv))
    return value(samples, name, **labels)


def checks(srv, trigger):
    return metric(srv, "tokend_key_dir_checks_total", trigger=trigger)


def add_key(inst, alg=None):
    res = inst.cli_ok("key", "add", *(["--alg", alg] if alg else []))
    kid = res.out.strip()
    assert KID_RE.match(kid), f"`key add` must print the new kid alone: {res!r}"
    return kid


def lines(srv, *needles):
    return [ln for ln in srv.err_lines if all(n in ln for n in needles)]


def wait_line(srv, *needles):
    """Waits for a log line holding every needle (log lines may be buffered)."""
    return srv.wait_for_stderr(lambda ln: all(n in ln for n in needles), DEADLINE)


def wait_checks(srv, trigger, n):
    """Waits until srv has looked at its directory n more times for trigger."""
    start = checks(srv, trigger)
    assert wait_until(lambda: checks(srv, trigger) >= start + n, DEADLINE), (
        f"{srv.label}: fewer than {n} '{trigger}' checks of the key directory\n{srv.tail()}")


def hs256_token(kid, secret=None, user_id=None):
    now = int(time.time())
    return jwt.encode({"token_type": "access", "exp": now + 60, "iat": now,
                       "jti": str(uuidlib.uuid4()), "user_id": user_id or str(uuidlib.uuid4())},
                      secret or secrets.token_bytes(64), algorithm="HS256",
                      headers={"kid": kid})


# ---------------------------------------------------------------- CLI: add / use

def test_key_add_publishes_without_signing_and_use_switches(factory):
    inst = factory()
    k1 = inst.cli_ok("key", "rotate").out.strip()
    k2 = add_key(inst, "ES256")
    assert current_kid(inst) == k1, "`key add` must not change the signing key"
    assert set(key_files(inst)) == {k1, k2}
    listed = {ln.split("\t")[0]: ln for ln in inst.cli_ok("key", "list").out.splitlines()}
    assert listed[k1].endswith("\tcurrent") and not listed[k2].endswith("\tcurrent"), listed
    assert inst.cli_ok("key", "use", k2).out.strip() == f"signing with {k2}"
    assert current_kid(inst) == k2
    # refused: an unknown kid, a malformed one, a missing argument
    before = (inst.keys / "current").read_text()
    for bad in ("0123456789abcdef", "../current", "xyz"):
        res = inst.cli("key", "use", bad)
        assert res.rc == 1 and "no key" in res.err, res
    assert inst.cli("key", "use").rc == 2
    assert (inst.keys / "current").read_text() == before
    # retire still refuses the current key, accepts the other
    assert inst.cli("key", "retire", k2).rc == 1
    inst.cli_ok("key", "retire", k1, "--force")


def test_key_add_pins_the_signer_when_current_is_missing(factory):
    """Without "current" the newest key signs: `key add` must first pin the
    key that signs now, or the added key would sign at once."""
    inst = factory()
    k1 = inst.cli_ok("key", "rotate").out.strip()
    (inst.keys / "current").unlink()
    k2 = add_key(inst)
    assert current_kid(inst) == k1
    # on an empty directory the added key is the only one: it signs
    fresh = factory()
    k = add_key(fresh)
    assert current_kid(fresh) == k and set(key_files(fresh)) == {k}
    assert k2 != k


# ---------------------------------------------------------------- across instances

def test_rollover_across_machines_without_a_signal(factory):
    """The README's procedure on two machines: publish (key add + copy),
    wait for the check, switch signing (key use + copy), retire later."""
    env = {"TOKEND_KEYS_RELOAD_INTERVAL": "1"}
    a, sa, b, sb = two_instances(factory, env, env)
    name = user(a)
    k1 = current_kid(a)
    old = login(sa, name)
    assert header_of(old["access"])["kid"] == k1

    # 1. publish: the new key in both directories; both list it, neither signs with it
    k2 = add_key(a, "RS256")
    copy_key_file(key_files(a)[k2][1], b.keys)
    for s in (sa, sb):
        assert wait_until(lambda: jwks_kids(s) == [k2], DEADLINE), (
            f"{s.label}: JWKS without the published key {k2}\n{s.tail()}")
    assert login_kid(sa, name) == k1 and login_kid(sb, name) == k1

    # 2. sign: A first; B verifies A's new tokens, B follows its copy of "current"
    a.cli_ok("key", "use", k2)
    assert wait_until(lambda: login_kid(sa, name) == k2, DEADLINE), sa.tail()
    new = login(sa, name)
    assert verify(sb, new["access"]).status_code == 201
    pub = jwt.PyJWK([k for k in expect_json(sb.request("GET", JWKS), 200)["keys"]
                     if k["kid"] == k2][0]).key
    jwt.decode(new["access"], pub, algorithms=["RS256"], options={"verify_aud": False})
    copy_key_file(a.keys / "current", b.keys)
    assert wait_until(lambda: login_kid(sb, name) == k2, DEADLINE), sb.tail()
    # the old key's tokens still work everywhere
    for s in (sa, sb):
        assert verify(s, old["access"]).status_code == 201

    # 3. retire the old key everywhere: its tokens stop verifying after the check
    a.cli_ok("key", "retire", k1, "--force")
    b.cli_ok("key", "retire", k1, "--force")
    for s in (sa, sb):
        assert wait_until(lambda: verify(s, old["access"]).status_code == 401, DEADLINE), (
            f"{s.label}: a retired key's token still verifies\n{s.tail()}")
        expect_invalid(verify(s, old["access"]), f"{s.label}: token of a retired key")
        assert verify(s, new["access"]).status_code == 201
    assert wait_line(sb, "added", k2) and wait_line(sb, "retired", k1), sb.tail()
    for s in (sa, sb):
        s.assert_alive("roll-over")
        assert not lines(s, "SIGHUP"), "no signal was sent"


def test_unknown_kid_reloads_at_once_with_the_check_off(factory):
    """reload_interval = 0: no periodic check; a token of a kid B does not
    know makes B look at its directory before answering."""
    a, sa, b, sb = two_instances(factory, {"TOKEND_KEYS_RELOAD_INTERVAL": "1"},
                                 {"TOKEND_KEYS_RELOAD_INTERVAL": "0"})
    name = user(a)
    k2 = add_key(a, "ES256")
    copy_key_file(key_files(a)[k2][1], b.keys)
    a.cli_ok("key", "use", k2)
    assert wait_until(lambda: login_kid(sa, name) == k2, DEADLINE), sa.tail()
    assert jwks_kids(sb) == [], "B has no periodic check: it cannot know k2 yet"
    tok = login(sa, name)
    # at once: the first verify on B already succeeds
    assert verify(sb, tok["access"]).status_code == 201, sb.tail()
    assert jwks_kids(sb) == [k2], "the unknown-kid reload swapped in the whole set"
    assert checks(sb, "poll") == 0
    assert checks(sb, "unknown_kid") >= 1
    assert wait_line(sb, "unknown kid", "added", k2), sb.tail()
    # B keeps signing with its own "current": the copy did not bring A's
    assert login_kid(sb, name) == current_kid(b) != k2


def test_shared_key_directory(factory):
    """Both instances read one directory: an added key reaches both by the
    check; `key use` switches both."""
    env = {"TOKEND_KEYS_RELOAD_INTERVAL": "1"}
    a, sa, b, sb = two_instances(factory, env, env, shared_dir=True)
    assert b.keys == a.keys
    name = user(a)
    k1 = current_kid(a)
    k2 = add_key(a, "ES256")
    for s in (sa, sb):
        assert wait_until(lambda: jwks_kids(s) == [k2], DEADLINE), s.tail()
        assert login_kid(s, name) == k1
    a.cli_ok("key", "use", k2)
    for s in (sa, sb):
        assert wait_until(lambda: login_kid(s, name) == k2, DEADLINE), s.tail()
    tb = login(sb, name)
    assert verify(sa, tb["access"]).status_code == 201
    ta = login(sa, name)
    assert verify(sb, ta["access"]).status_code == 201


def test_sighup_still_reloads(factory):
    inst, srv = factory.server(env={"TOKEND_KEYS_RELOAD_INTERVAL": "0"}, label="sighup")
    name = user(inst)
    k2 = add_key(inst, "RS256")
    assert jwks_kids(srv) == []
    srv.send_signal(signal.SIGHUP)
    assert wait_until(lambda: jwks_kids(srv) == [k2], DEADLINE), srv.tail()
    assert wait_line(srv, "SIGHUP: keys reloaded", "added " + k2), srv.tail()
    assert login_kid(srv, name) != k2


# ---------------------------------------------------------------- hostile

def _flood(srv, tokens, workers=8):
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        return list(ex.map(lambda t: verify(srv, t).status_code, tokens))


def test_flood_of_unknown_kids_costs_one_look_per_second(factory):
    inst, srv = factory.server(env={"TOKEND_KEYS_RELOAD_INTERVAL": "0",
                                    "TOKEND_SERVER_THREADS": "4"}, label="unknown kid flood")
    # kids not of tokend's form never make it look
    odd = [hs256_token(k) for k in ("../current", "ABCDEF0123456789", "0" * 15, "0" * 17,
                                    "current", "")]
    assert set(_flood(srv, odd * 5)) == {401}
    assert checks(srv, "unknown_kid") == 0
    # well-formed invented kids: at most about one look per second
    tokens = [hs256_token(secrets.token_hex(8)) for _ in range(600)]
    t0 = time.monotonic()
    codes = _flood(srv, tokens)
    elapsed = time.monotonic() - t0
    assert set(codes) == {401}
    looks = checks(srv, "unknown_kid")
    assert 1 <= looks <= elapsed + 2, (
        f"{looks} looks at the key directory for 600 unknown kids in {elapsed:.1f} s")
    # none of them changed anything: no full re-read
    assert metric(srv, "tokend_key_reloads_total", outcome="loaded") == 0
    assert metric(srv, "tokend_key_reloads_total", outcome="failed") == 0
    srv.assert_alive("unknown-kid flood")


def test_half_written_key_file_keeps_old_keys(factory):
    inst, srv = factory.server(env={"TOKEND_KEYS_RELOAD_INTERVAL": "1"}, label="half written")
    name = user(inst)
    k1 = current_kid(inst)
    pair = login(srv, name)
    # a whole RS256 key made elsewhere, then written here in two halves
    other = factory()
    k2 = other.cli_ok("key", "rotate", "--alg", "RS256").out.strip()
    text = key_files(other)[k2][1].read_bytes()
    path = inst.keys / f"{k2}.RS256.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, text[:len(text) // 2])
    assert srv.wait_for_stderr(lambda ln: "not reloaded" in ln and path.name in ln,
                               DEADLINE), srv.tail()
    wait_checks(srv, "poll", 3)
    assert len(lines(srv, "not reloaded", path.name)) == 1, "logged once per distinct error"
    srv.assert_alive("half-written key file")
    assert verify(srv, pair["access"]).status_code == 201
    assert login_kid(srv, name) == k1 and jwks_kids(srv) == []
    # the unknown-kid path does not load it either, nor log again
    tok = login(other.start(label="other"), user(other))["access"]
    expect_invalid(verify(srv, tok), "token of a half-written key")
    assert len(lines(srv, "not reloaded", path.name)) == 1
    # the rest of the file arrives: the key is loaded
    os.write(fd, text[len(text) // 2:])
    os.close(fd)
    assert wait_until(lambda: jwks_kids(srv) == [k2], DEADLINE), srv.tail()
    assert login_kid(srv, name) == k1


def test_key_file_readable_by_others_is_not_loaded(factory):
    inst, srv = factory.server(env={"TOKEND_KEYS_RELOAD_INTERVAL": "1"}, label="bad mode")
    name = user(inst)
    k1 = current_kid(inst)
    other = factory()
    k2 = other.cli_ok("key", "rotate", "--alg", "ES256").out.strip()
    copy_key_file(key_files(other)[k2][1], inst.keys, mode=0o644)
    assert srv.wait_for_stderr(lambda ln: "readable by others" in ln, DEADLINE), srv.tail()
    wait_checks(srv, "poll", 2)
    assert len(lines(srv, "readable by others")) == 1
    assert jwks_kids(srv) == [] and login_kid(srv, name) == k1
    os.chmod(inst.keys / f"{k2}.ES256.key", 0o600)  # a chmod alone is a change
    assert wait_until(lambda: jwks_kids(srv) == [k2], DEADLINE), srv.tail()
    srv.assert_alive("key file readable by others")


def test_key_dir_made_world_writable(factory):
    """A key planted in a directory anyone can write is never loaded, by the
    check or by an unknown kid; the server keeps signing with its key."""
    inst, srv = factory.server(env={"TOKEND_KEYS_RELOAD_INTERVAL": "1"}, label="writable dir")
    name = user(inst)
    uid = inst.add_user(f"w-{uuidlib.uuid4().hex[:8]}", PASSWORD)
    k1 = current_kid(inst)
    pair = login(srv, name)
    os.chmod(inst.keys, 0o777)
    planted = inst.keys / "0123456789abcdef.HS256.key"
    planted.write_text(base64.urlsafe_b64encode(b"p" * 64).decode().rstrip("=") + "\n")
    os.chmod(planted, 0o600)
    assert srv.wait_for_stderr(lambda ln: "writable" in ln and str(inst.keys) in ln,
                               DEADLINE), srv.tail()
    forged = hs256_token("0123456789abcdef", b"p" * 64, uid)
    expect_invalid(verify(srv, forged), "token of a planted key")
    wait_checks(srv, "poll", 2)
    expect_invalid(verify(srv, forged), "token of a planted key, later")
    assert len(lines(srv, "not reloaded", "writable")) == 1
    assert login_kid(srv, name) == k1
    assert verify(srv, pair["access"]).status_code == 201
    planted.unlink()
    os.chmod(inst.keys, 0o700)
    assert srv.wait_for_stderr(lambda ln: "reloaded" in ln and "not reloaded" not in ln,
                               DEADLINE), srv.tail()
    srv.assert_alive("world-writable key directory")


def test_key_dir_that_disappears(factory):
    inst, srv = factory.server(env={"TOKEND_KEYS_RELOAD_INTERVAL": "1"}, label="dir gone")
    name = user(inst)
    k1 = current_kid(inst)
    pair = login(srv, name)
    gone = inst.keys.with_name("keys.gone")
    os.rename(inst.keys, gone)
    assert srv.wait_for_stderr(lambda ln: "not reloaded" in ln and "cannot open" in ln,
                               DEADLINE), srv.tail()
    wait_checks(srv, "poll", 2)
    assert len(lines(srv, "not reloaded", "cannot open")) == 1
    expect_invalid(verify(srv, hs256_token(secrets.token_hex(8))), "unknown kid, no dir")
    assert verify(srv, pair["access"]).status_code == 201
    assert login_kid(srv, name) == k1
    # it comes back with a new key published
    os.rename(gone, inst.keys)
    k2 = add_key(inst, "ES256")
    assert wait_until(lambda: jwks_kids(srv) == [k2], DEADLINE), srv.tail()
    assert login_kid(srv, name) == k1
    srv.assert_alive("key directory gone and back")


def test_current_naming_a_missing_key_keeps_the_old_signer(factory):
    """A copy that brings "current" before the key file: the instance keeps
    signing with its key, says so, and switches once the file arrives."""
    env = {"TOKEND_KEYS_RELOAD_INTERVAL": "1"}
    a, sa, b, sb = two_instances(factory, {"TOKEND_KEYS_RELOAD_INTERVAL": "0"}, env)
    name = user(a)
    k1 = current_kid(b)
    k2 = a.cli_ok("key", "rotate").out.strip()
    copy_key_file(a.keys / "current", b.keys)  # "current" first, the key file not yet
    assert sb.wait_for_stderr(lambda ln: "lacks" in ln and k2 in ln, DEADLINE), sb.tail()
    assert login_kid(sb, name) == k1
    sb.assert_alive("current names a missing key")
    copy_key_file(key_files(a)[k2][1], b.keys)
    assert wait_until(lambda: login_kid(sb, name) == k2, DEADLINE), sb.tail()
    assert wait_line(sb, f"signing {k1} -> {k2}"), sb.tail()
