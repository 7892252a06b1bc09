"""Django-compatible password hashes, re-hashing, the default iteration
count, and timing that does not reveal which usernames exist."""

import math
import os
import random
import statistics
import time
import uuid as uuidlib

import pytest

from conftest import (DEFAULT_ITERATIONS, FAST_ITERATIONS, HASH_RE, UNTHROTTLED, db_rows, django_check, django_hash,
                      expect_401, expect_tokens, insert_user, user_row, b64url_decode)


def stored_hash(db, username):
    row = user_row(db, username)
    assert row is not None, f"user {username} not in the users table"
    return row["password"]


def check_format(encoded, iterations, what):
    m = HASH_RE.match(encoded)
    assert m, f"{what}: stored hash {encoded[:40]!r}... is not pbkdf2_sha256$<iter>$<salt>$<base64>"
    assert int(m.group(1)) == iterations, f"{what}: {m.group(1)} iterations, expected {iterations}"
    assert len(m.group(2)) >= 22, f"{what}: salt {m.group(2)!r} shorter than 22 characters"
    import base64
    assert len(base64.b64decode(m.group(3))) == 32, f"{what}: hash part is not base64 of 32 bytes"


def test_django_made_hash_logs_in(srv, shared):
    pw = "dj4ngo p\u00e4ss \u2603"
    encoded = django_hash(pw, 1000)
    insert_user(shared.inst.database, "django-user", encoded)
    tokens = expect_tokens(srv.login("django-user", pw), "login with a hash written by Django")
    expect_401(srv.login("django-user", pw + " "), "wrong password for a Django hash")
    assert tokens


def test_django_hash_with_other_iteration_counts_verifies(srv, shared):
    for n in (1, 999, 1001):
        pw = f"pw-{n}"
        insert_user(shared.inst.database, f"django-{n}", django_hash(pw, n))
        expect_tokens(srv.login(f"django-{n}", pw), f"Django hash with {n} iterations")


def test_cli_hash_is_django_compatible(shared):
    pw = "cli p\u00e4ss+word"
    name, _ = shared.new_user("clihash", pw)
    encoded = stored_hash(shared.inst.database, name)
    check_format(encoded, int(FAST_ITERATIONS), "hash written by `tokend user add`")
    assert django_check(pw, encoded), "Django's check_password rejects the hash tokend wrote"
    assert not django_check(pw + "x", encoded), "Django accepts a wrong password for tokend's hash"


def test_salts_are_random(shared):
    a, _ = shared.new_user("salt", "same-password")
    b, _ = shared.new_user("salt", "same-password")
    ha, hb = stored_hash(shared.inst.database, a), stored_hash(shared.inst.database, b)
    assert ha.split("$")[2] != hb.split("$")[2], "two users got the same salt"
    assert ha != hb


def test_lower_iteration_hash_is_rehashed_on_successful_login(srv, shared):
    pw = "rehash-me"
    insert_user(shared.inst.database, "rehash-user", django_hash(pw, 500))
    expect_401(srv.login("rehash-user", "wrong"))
    assert stored_hash(shared.inst.database, "rehash-user").startswith("pbkdf2_sha256$500$"), (
        "a failed login must not re-hash")
    expect_tokens(srv.login("rehash-user", pw))
    new = stored_hash(shared.inst.database, "rehash-user")
    check_format(new, int(FAST_ITERATIONS), "hash after re-hash on login")
    assert django_check(pw, new), "re-hashed password does not verify with Django"
    expect_tokens(srv.login("rehash-user", pw), "login after the re-hash")


def test_inactive_django_user_is_401(srv, shared):
    insert_user(shared.inst.database, "django-inactive", django_hash("pw", 1000), active=False)
    expect_401(srv.login("django-inactive", "pw"))


def test_passwd_writes_django_compatible_hash(shared, srv):
    name, _ = shared.new_user("pwchange", "old-pw")
    shared.inst.cli_ok("user", "passwd", name, "--password-stdin", input="n\u00e9w pw\n")
    encoded = stored_hash(shared.inst.database, name)
    check_format(encoded, int(FAST_ITERATIONS), "hash written by `user passwd`")
    assert django_check("n\u00e9w pw", encoded)
    expect_401(srv.login(name, "old-pw"), "old password after passwd")
    expect_tokens(srv.login(name, "n\u00e9w pw"), "new password after passwd")


# ---------------------------------------------------------------- default iterations

@pytest.fixture(scope="module")
def default_iter(module_factory):
    """A server and CLI with no PBKDF2 override: the default 600,000."""
    inst = module_factory(env={"TOKEND_PASSWORD_PBKDF2_ITERATIONS": None, **UNTHROTTLED},
                          label="default-iterations server")
    inst.add_user("dflt", "default-iterations-pw")
    inst.add_user("dflt-off", "default-iterations-pw")
    inst.cli_ok("user", "disable", "dflt-off")
    return inst, inst.start()


def test_login_at_default_iterations(default_iter):
    inst, srv = default_iter
    encoded = stored_hash(inst.database, "dflt")
    check_format(encoded, DEFAULT_ITERATIONS, "hash written by `user add` with the default config")
    assert django_check("default-iterations-pw", encoded)
    t0 = time.monotonic()
    tokens = expect_tokens(srv.login("dflt", "default-iterations-pw"), "login at 600,000 iterations")
    elapsed = time.monotonic() - t0
    print(f"\nlogin at {DEFAULT_ITERATIONS} iterations took {elapsed * 1000:.0f} ms (client side)")
    assert tokens
    assert stored_hash(inst.database, "dflt") == encoded, "hash at the configured count must not be re-hashed"


def test_unknown_user_costs_as_much_as_wrong_password(default_iter):
    inst, srv = default_iter

    def timed(user, pw):
        t0 = time.monotonic()
        r = srv.login(user, pw)
        dt = time.monotonic() - t0
        expect_401(r, f"{user}/{pw}")
        return dt

    # Interleaved, best of three each: a burst of load on the machine then
    # slows all three kinds alike instead of one of them.
    wrong, unknown, disabled = [], [], []
    for _ in range(3):
        wrong.append(timed("dflt", "wrong"))
        unknown.append(timed("no-such-user-xyz", "wrong"))
        disabled.append(timed("dflt-off", "default-iterations-pw"))
    wrong, unknown, disabled = min(wrong), min(unknown), min(disabled)
    assert wrong > 0.02, f"a wrong password at 600,000 iterations took only {wrong * 1000:.1f} ms"
    assert unknown > 0.5 * wrong, (
        f"unknown user answered in {unknown * 1000:.0f} ms vs wrong password {wrong * 1000:.0f} ms: "
        f"timing reveals which usernames exist (hash a dummy)")
    assert disabled > 0.5 * wrong, (
        f"disabled user answered in {disabled * 1000:.0f} ms vs wrong password {wrong * 1000:.0f} ms")


# ---------------------------------------------------------------- timing, by rank test

def mann_whitney_p(xs, ys):
    """Two-sided p-value of the Mann-Whitney U test (normal approximation
    with the tie correction; fine from about 20 samples a side). Written
    here because scipy is not installed."""
    n1, n2 = len(xs), len(ys)
    pooled = sorted([(v, 0) for v in xs] + [(v, 1) for v in ys])
    ranks = [0.0] * len(pooled)
    ties = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t ** 3 - t
        i = j + 1
    r1 = sum(r for r, (_, g) in zip(ranks, pooled) if g == 0)
    u1 = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    mu = n1 * n2 / 2
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    if sigma == 0:
        return 1.0
    z = (abs(u1 - mu) - 0.5) / sigma  # continuity correction
    return math.erfc(max(z, 0.0) / math.sqrt(2))


SANITIZED = bool(os.environ.get("TOKEND_SANITIZED"))
TIMING_SAMPLES = 24 if SANITIZED else 36
TIMING_ALPHA = 0.001
UNUSABLE_HASHES = [
    "!abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN",  # Django's set_unusable_password()
    "argon2$argon2id$v=19$m=102400,t=2,p=8$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
    "bcrypt_sha256$$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234",
]


@pytest.fixture(scope="module")
def timing_iter(module_factory, default_iter):
    """(installation, server, configured iterations, the cheaper stored count).
    The default 600,000 against Django's 260,000; under a sanitizer build,
    where PBKDF2 runs about seven times slower (ASan intercepts the memcpy
    calls of every HMAC round: 825 ms a login measured here), 100,000 against
    the same ratio, 43,333, so that the test stays within ~40 s."""
    if not SANITIZED:
        inst, srv = default_iter
        return inst, srv, DEFAULT_ITERATIONS, 260000
    inst = module_factory(env={"TOKEND_PASSWORD_PBKDF2_ITERATIONS": "100000", **UNTHROTTLED},
                          label="timing server (sanitizer build)")
    return inst, inst.start(), 100000, 100000 * 260000 // DEFAULT_ITERATIONS


def test_failed_logins_cost_the_same_whatever_the_stored_hash(timing_iter):
    """API.md: wrong username, wrong password and inactive user are
    indistinguishable in timing. A user whose stored hash is cheaper than
    the configured count (a Django import at 260,000) or does not parse
    (Django's unusable "!..." password, another hasher's format) must cost
    what an unknown user costs; so must an inactive user with such a hash
    who sends the right password (refused, and not re-hashed). Samples are interleaved (a burst of load
    hits every kind alike) and compared by rank, with no wall-clock bound."""
    inst, srv, configured, stored = timing_iter
    tag = uuidlib.uuid4().hex[:8]
    cheap = f"dj260k-{tag}"
    insert_user(inst.database, cheap, django_hash("the real password", stored))
    inactive = f"dj260k-off-{tag}"
    insert_user(inst.database, inactive, django_hash("the real password", stored), active=False)
    unusable = []
    for i, enc in enumerate(UNUSABLE_HASHES):
        unusable.append(f"unusable{i}-{tag}")
        insert_user(inst.database, unusable[-1], enc)
    unknown = f"nobody-{tag}"

    def timed(user):
        pw = "the real password" if user == inactive else "not the password"
        t0 = time.perf_counter()
        r = srv.login(user, pw)
        dt = time.perf_counter() - t0
        expect_401(r, user)
        return dt

    for u in (unknown, cheap, unusable[0]):  # warm up connections and caches
        timed(u)
    samples = {"unknown": [], "cheap": [], "unusable": [], "inactive": []}
    rng = random.Random(10)
    for i in range(TIMING_SAMPLES):
        kinds = list(samples)
        rng.shuffle(kinds)
        for kind in kinds:
            user = {"unknown": unknown, "cheap": cheap, "inactive": inactive,
                    "unusable": unusable[i % len(unusable)]}[kind]
            samples[kind].append(timed(user))
    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    p_cheap = mann_whitney_p(samples["cheap"], samples["unknown"])
    p_unusable = mann_whitney_p(samples["unusable"], samples["unknown"])
    p_inactive = mann_whitney_p(samples["inactive"], samples["unknown"])
    print(f"\n{configured} iterations configured, {stored} stored; "
          f"medians (ms): unknown {med['unknown']:.1f}, cheaper hash {med['cheap']:.1f}, "
          f"unusable hash {med['unusable']:.1f}, inactive cheaper {med['inactive']:.1f}; "
          f"Mann-Whitney p: cheaper {p_cheap:.3g}, unusable {p_unusable:.3g}, "
          f"inactive {p_inactive:.3g}")
    assert p_cheap >= TIMING_ALPHA, (
        f"a wrong password for a user with a {stored}-iteration hash answers in "
        f"{med['cheap']:.0f} ms (median) vs {med['unknown']:.0f} ms for an unknown user "
        f"(p = {p_cheap:.2g}): timing reveals that the user exists")
    assert p_unusable >= TIMING_ALPHA, (
        f"a user with an unusable/foreign hash answers in {med['unusable']:.0f} ms (median) "
        f"vs {med['unknown']:.0f} ms for an unknown user (p = {p_unusable:.2g}): "
        f"timing reveals that the user exists")
    assert p_inactive >= TIMING_ALPHA, (
        f"an inactive user with a {stored}-iteration hash and the right password answers in "
        f"{med['inactive']:.0f} ms (median) vs {med['unknown']:.0f} ms for an unknown user "
        f"(p = {p_inactive:.2g})")
