"""Django-compatible password hashes, re-hashing, the default iteration
count, and timing that does not reveal which usernames exist."""

import time

import pytest

from conftest import (DEFAULT_ITERATIONS, FAST_ITERATIONS, HASH_RE, db_rows, django_check, django_hash,
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
    insert_user(shared.inst.db, "django-user", encoded)
    tokens = expect_tokens(srv.login("django-user", pw), "login with a hash written by Django")
    expect_401(srv.login("django-user", pw + " "), "wrong password for a Django hash")
    assert tokens


def test_django_hash_with_other_iteration_counts_verifies(srv, shared):
    for n in (1, 999, 1001):
        pw = f"pw-{n}"
        insert_user(shared.inst.db, f"django-{n}", django_hash(pw, n))
        expect_tokens(srv.login(f"django-{n}", pw), f"Django hash with {n} iterations")


def test_cli_hash_is_django_compatible(shared):
    pw = "cli p\u00e4ss+word"
    name, _ = shared.new_user("clihash", pw)
    encoded = stored_hash(shared.inst.db, name)
    check_format(encoded, int(FAST_ITERATIONS), "hash written by `tokend user add`")
    assert django_check(pw, encoded), "Django's check_password rejects the hash tokend wrote"
    assert not django_check(pw + "x", encoded), "Django accepts a wrong password for tokend's hash"


def test_salts_are_random(shared):
    a, _ = shared.new_user("salt", "same-password")
    b, _ = shared.new_user("salt", "same-password")
    ha, hb = stored_hash(shared.inst.db, a), stored_hash(shared.inst.db, b)
    assert ha.split("$")[2] != hb.split("$")[2], "two users got the same salt"
    assert ha != hb


def test_lower_iteration_hash_is_rehashed_on_successful_login(srv, shared):
    pw = "rehash-me"
    insert_user(shared.inst.db, "rehash-user", django_hash(pw, 500))
    expect_401(srv.login("rehash-user", "wrong"))
    assert stored_hash(shared.inst.db, "rehash-user").startswith("pbkdf2_sha256$500$"), (
        "a failed login must not re-hash")
    expect_tokens(srv.login("rehash-user", pw))
    new = stored_hash(shared.inst.db, "rehash-user")
    check_format(new, int(FAST_ITERATIONS), "hash after re-hash on login")
    assert django_check(pw, new), "re-hashed password does not verify with Django"
    expect_tokens(srv.login("rehash-user", pw), "login after the re-hash")


def test_inactive_django_user_is_401(srv, shared):
    insert_user(shared.inst.db, "django-inactive", django_hash("pw", 1000), active=False)
    expect_401(srv.login("django-inactive", "pw"))


def test_passwd_writes_django_compatible_hash(shared, srv):
    name, _ = shared.new_user("pwchange", "old-pw")
    shared.inst.cli_ok("user", "passwd", name, "--password-stdin", input="n\u00e9w pw\n")
    encoded = stored_hash(shared.inst.db, name)
    check_format(encoded, int(FAST_ITERATIONS), "hash written by `user passwd`")
    assert django_check("n\u00e9w pw", encoded)
    expect_401(srv.login(name, "old-pw"), "old password after passwd")
    expect_tokens(srv.login(name, "n\u00e9w pw"), "new password after passwd")


# ---------------------------------------------------------------- default iterations

@pytest.fixture(scope="module")
def default_iter(module_factory):
    """A server and CLI with no PBKDF2 override: the default 600,000."""
    inst = module_factory(env={"TOKEND_PASSWORD_PBKDF2_ITERATIONS": None}, label="default-iterations server")
    inst.add_user("dflt", "default-iterations-pw")
    inst.add_user("dflt-off", "default-iterations-pw")
    inst.cli_ok("user", "disable", "dflt-off")
    return inst, inst.start()


def test_login_at_default_iterations(default_iter):
    inst, srv = default_iter
    encoded = stored_hash(inst.db, "dflt")
    check_format(encoded, DEFAULT_ITERATIONS, "hash written by `user add` with the default config")
    assert django_check("default-iterations-pw", encoded)
    t0 = time.monotonic()
    tokens = expect_tokens(srv.login("dflt", "default-iterations-pw"), "login at 600,000 iterations")
    elapsed = time.monotonic() - t0
    print(f"\nlogin at {DEFAULT_ITERATIONS} iterations took {elapsed * 1000:.0f} ms (client side)")
    assert tokens
    assert stored_hash(inst.db, "dflt") == encoded, "hash at the configured count must not be re-hashed"


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
