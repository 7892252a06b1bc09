"""Checking a JWT (issue 3 "Checking a JWT" and "Hostile input"): every
rejection, crafted by hand (base64url + HMAC computed here) and with PyJWT,
through /verify/ (access and refresh tokens) and /refresh/; the leeway;
iss/aud; HS256 interoperability with PyJWT both ways.

The installation has three keys: an RS256 and an ES256 key (not current)
and a current HS256 key, so the algorithm-confusion attack can name an
RSA/EC kid."""

import base64
import hashlib
import hmac
import json
import time
import uuid as uuidlib

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from conftest import (HANG, WWW_AUTH, RawConn, build_request, claims_of, expect_invalid, expect_json,
                      expect_tokens, expect_verified, header_of)

REFRESH = "/api/auth/jwt/refresh/"
VERIFY = "/api/auth/jwt/verify/"
ISS = "https://auth.example"
AUD = "api"


# ---------------------------------------------------------------- helpers

def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def js(obj):
    return json.dumps(obj, separators=(",", ":"))


def hs256(signing_input, key):
    if isinstance(signing_input, str):
        signing_input = signing_input.encode("latin-1")
    return b64u(hmac.new(key, signing_input, hashlib.sha256).digest())


def craft(header, payload, key, sig=None):
    """header / payload: a dict (serialised here) or the literal JSON text;
    signs the literal signing input with HMAC-SHA256 over key unless sig."""
    h = b64u(header if isinstance(header, str) else js(header))
    p = b64u(payload if isinstance(payload, str) else js(payload))
    si = f"{h}.{p}"
    return f"{si}.{hs256(si, key) if sig is None else sig}"


def sign_segments(h, p, key):
    """Signs two literal (possibly malformed) segments."""
    si = f"{h}.{p}"
    return f"{si}.{hs256(si, key)}"


def verify(srv, token):
    return srv.post(VERIFY, json={"token": token})


def refresh(srv, token):
    return srv.post(REFRESH, json={"refresh": token})


class Ctx:
    def __init__(self, inst, srv):
        self.inst, self.srv = inst, srv
        self.name = f"chk-{uuidlib.uuid4().hex[:8]}"
        self.pw = "checks password"
        self.uid = inst.add_user(self.name, self.pw)
        files = {f.name.split(".")[1]: f for f in inst.keys.glob("*.key")}
        assert set(files) == {"HS256", "RS256", "ES256"}, files
        self.hs_kid = files["HS256"].name.split(".")[0]
        self.rs_kid = files["RS256"].name.split(".")[0]
        self.es_kid = files["ES256"].name.split(".")[0]
        self.hs_key = inst.keys_by_kid()[self.hs_kid]
        self.rs_priv_pem = files["RS256"].read_bytes()
        self.es_priv_pem = files["ES256"].read_bytes()
        rs = serialization.load_pem_private_key(self.rs_priv_pem, None)
        es = serialization.load_pem_private_key(self.es_priv_pem, None)
        self.rs_pub_pem = rs.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.rs_pub_pkcs1 = rs.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
        self.es_pub_pem = es.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.pair = self.login()
        assert header_of(self.pair["access"])["kid"] == self.hs_kid

    def login(self):
        return expect_tokens(self.srv.login(self.name, self.pw), "login")


@pytest.fixture(scope="module")
def ctx(module_factory):
    inst = module_factory(label="jwt checks")
    for alg in ("RS256", "ES256", "HS256"):
        inst.cli_ok("key", "rotate", "--alg", alg)
    srv = inst.start()
    return Ctx(inst, srv)


@pytest.fixture(scope="module")
def lee30(ctx):
    """A second server on the same store and keys with leeway 30 s."""
    return ctx.inst.start(env={"TOKEND_TOKENS_LEEWAY": "30"}, label="leeway 30")


# ---------------------------------------------------------------- hostile cases
#
# Each builder gets (c, claims, hdr): the context, the claims of a genuine
# token and its header ({"alg": "HS256", "typ": "JWT", "kid": ...}); it
# returns a token that must be refused although only the named aspect is
# wrong.

def _now():
    return int(time.time())


def _with(claims, **kw):
    out = dict(claims)
    for k, v in kw.items():
        if v is _DROP:
            out.pop(k, None)
        else:
            out[k] = v
    return out


_DROP = object()


def _dup_payload(claims, key, first, second):
    """JSON text with `key` twice: first value, then second."""
    rest = {k: v for k, v in claims.items() if k != key}
    body = js(rest)[1:-1]
    return "{" + f'"{key}":{js(first)},{body},"{key}":{js(second)}' + "}"


def _find_nonce(claims, key, want_chars, segment):
    """Adds a nonce claim until the standard-base64 encoding of the payload
    (segment='p') or of the HMAC signature (segment='s') contains one of
    want_chars; returns (payload_dict, std_b64_payload_or_None)."""
    for i in range(5000):
        p = _with(claims, nonce="~?>" * (i % 3 + 1) + str(i))
        raw = js(p).encode()
        if segment == "p":
            std = base64.b64encode(raw).rstrip(b"=").decode()
            if any(ch in std for ch in want_chars):
                return p, std
        else:
            return p, None
    raise AssertionError("no nonce found")


def b_alg_none(c, cl, hdr):
    return craft(_with(hdr, alg="none"), cl, c.hs_key, sig="")


def b_alg_None(c, cl, hdr):
    return craft(_with(hdr, alg="None"), cl, c.hs_key, sig="")


def b_alg_NONE_signed(c, cl, hdr):
    return craft(_with(hdr, alg="NONE"), cl, c.hs_key)


def b_alg_nOnE_no_kid(c, cl, hdr):
    return craft({"alg": "nOnE", "typ": "JWT"}, cl, c.hs_key, sig="")


def b_alg_missing(c, cl, hdr):
    return craft(_with(hdr, alg=_DROP), cl, c.hs_key)


def b_alg_hs384(c, cl, hdr):
    h = b64u(js(_with(hdr, alg="HS384")))
    p = b64u(js(cl))
    sig = b64u(hmac.new(c.hs_key, f"{h}.{p}".encode(), hashlib.sha384).digest())
    return f"{h}.{p}.{sig}"


def b_alg_hs512_pyjwt(c, cl, hdr):
    return jwt.encode(cl, c.hs_key, algorithm="HS512", headers={"kid": c.hs_kid})


def b_kid_unknown(c, cl, hdr):
    return craft(_with(hdr, kid="ffffffffffffffff"), cl, c.hs_key)


def b_kid_missing(c, cl, hdr):
    return craft(_with(hdr, kid=_DROP), cl, c.hs_key)


def b_kid_empty(c, cl, hdr):
    return craft(_with(hdr, kid=""), cl, c.hs_key)


def b_kid_number(c, cl, hdr):
    return craft(_with(hdr, kid=12345), cl, c.hs_key)


def b_kid_null(c, cl, hdr):
    return craft(_with(hdr, kid=None), cl, c.hs_key)


def b_kid_path(c, cl, hdr):
    return craft(_with(hdr, kid=f"../keys/{c.hs_kid}"), cl, c.hs_key)


def b_kid_with_suffix(c, cl, hdr):
    return craft(_with(hdr, kid=c.hs_kid + ".HS256"), cl, c.hs_key)


def b_kid_uppercase(c, cl, hdr):
    if c.hs_kid.upper() == c.hs_kid:
        pytest.skip("kid has no letters")
    return craft(_with(hdr, kid=c.hs_kid.upper()), cl, c.hs_key)


def b_confusion_rs_spki(c, cl, hdr):
    return craft(_with(hdr, kid=c.rs_kid), cl, c.rs_pub_pem)


def b_confusion_rs_spki_stripped(c, cl, hdr):
    return craft(_with(hdr, kid=c.rs_kid), cl, c.rs_pub_pem.strip())


def b_confusion_rs_pkcs1(c, cl, hdr):
    return craft(_with(hdr, kid=c.rs_kid), cl, c.rs_pub_pkcs1)


def b_confusion_rs_private_pem(c, cl, hdr):
    return craft(_with(hdr, kid=c.rs_kid), cl, c.rs_priv_pem)


def b_confusion_es_spki(c, cl, hdr):
    return craft(_with(hdr, kid=c.es_kid), cl, c.es_pub_pem)


def b_hs_key_under_rs_kid(c, cl, hdr):
    return craft(_with(hdr, kid=c.rs_kid), cl, c.hs_key)


def b_rs256_under_hs_kid(c, cl, hdr):
    return jwt.encode(cl, c.rs_priv_pem, algorithm="RS256", headers={"kid": c.hs_kid})


def b_es256_under_rs_kid(c, cl, hdr):
    return jwt.encode(cl, c.es_priv_pem, algorithm="ES256", headers={"kid": c.rs_kid})


def b_rs384_under_rs_kid(c, cl, hdr):
    return jwt.encode(cl, c.rs_priv_pem, algorithm="RS384", headers={"kid": c.rs_kid})


def b_parts_two(c, cl, hdr):
    return ".".join(craft(hdr, cl, c.hs_key).split(".")[:2])


def b_parts_four(c, cl, hdr):
    tok = craft(hdr, cl, c.hs_key)
    return tok + "." + tok.split(".")[2]


def b_parts_trailing_dot(c, cl, hdr):
    return craft(hdr, cl, c.hs_key) + "."


def b_parts_leading_dot(c, cl, hdr):
    return "." + craft(hdr, cl, c.hs_key)


def b_parts_one(c, cl, hdr):
    return b64u(js(hdr)) + b64u(js(cl))


def b_parts_empty_payload(c, cl, hdr):
    return sign_segments(b64u(js(hdr)), "", c.hs_key)


def b_parts_empty_header(c, cl, hdr):
    return sign_segments("", b64u(js(cl)), c.hs_key)


def b_parts_jwe_like(c, cl, hdr):
    tok = craft(hdr, cl, c.hs_key)
    h, p, s = tok.split(".")
    return f"{h}.{p}.{s}.{s}.{s}"


def b_b64_header_padding(c, cl, hdr):
    return sign_segments(b64u(js(hdr)) + "=", b64u(js(cl)), c.hs_key)


def b_b64_payload_padding(c, cl, hdr):
    p = b64u(js(cl))
    pad = "=" * (-len(p) % 4) or "=="
    return sign_segments(b64u(js(hdr)), p + pad, c.hs_key)


def b_b64_sig_padding(c, cl, hdr):
    return craft(hdr, cl, c.hs_key) + "="


def b_b64_plus_slash_payload(c, cl, hdr):
    p, std = _find_nonce(cl, "nonce", "+/", "p")
    assert std != b64u(js(p))
    return sign_segments(b64u(js(hdr)), std, c.hs_key)


def b_b64_plus_slash_signature(c, cl, hdr):
    for i in range(5000):
        tok = craft(hdr, _with(cl, nonce=i), c.hs_key)
        h, p, s = tok.split(".")
        if "-" in s or "_" in s:
            return f"{h}.{p}." + s.replace("-", "+").replace("_", "/")
    raise AssertionError("no signature with - or _")


def b_b64_space_in_payload(c, cl, hdr):
    p = b64u(js(cl))
    return sign_segments(b64u(js(hdr)), p[:8] + " " + p[8:], c.hs_key)


def b_b64_space_in_signature(c, cl, hdr):
    tok = craft(hdr, cl, c.hs_key)
    return tok[:-5] + " " + tok[-5:]


def b_b64_newline_in_payload(c, cl, hdr):
    p = b64u(js(cl))
    return sign_segments(b64u(js(hdr)), p[:8] + "\n" + p[8:], c.hs_key)


def b_b64_bad_char(c, cl, hdr):
    p = b64u(js(cl))
    return sign_segments(b64u(js(hdr)), p[:8] + "*" + p[8:], c.hs_key)


def b_b64_bad_length(c, cl, hdr):
    p = b64u(js(cl))
    # a base64 length of 4k+1 can not be valid
    p = p + "A" * ((1 - len(p)) % 4)
    return sign_segments(b64u(js(hdr)), p, c.hs_key)


def b_b64_std_alphabet_whole(c, cl, hdr):
    raw = js(cl).encode()
    std = base64.b64encode(raw).decode()  # padded standard base64
    return sign_segments(b64u(js(hdr)), std, c.hs_key)


def b_header_array(c, cl, hdr):
    return craft(js([hdr]), cl, c.hs_key)


def b_header_string(c, cl, hdr):
    return craft(js("HS256"), cl, c.hs_key)


def b_header_null(c, cl, hdr):
    return craft("null", cl, c.hs_key)


def b_header_not_json(c, cl, hdr):
    return craft(js(hdr)[:-1], cl, c.hs_key)


def b_header_dup_alg(c, cl, hdr):
    text = '{"alg":"none",' + js(hdr)[1:]
    return craft(text, cl, c.hs_key)


def b_header_dup_kid(c, cl, hdr):
    text = js(hdr)[:-1] + ',"kid":"ffffffffffffffff"}'
    return craft(text, cl, c.hs_key)


def b_payload_array(c, cl, hdr):
    return craft(hdr, js([cl]), c.hs_key)


def b_payload_string(c, cl, hdr):
    return craft(hdr, js(js(cl)), c.hs_key)


def b_payload_number(c, cl, hdr):
    return craft(hdr, "42", c.hs_key)


def b_payload_not_json(c, cl, hdr):
    return craft(hdr, js(cl)[:-1], c.hs_key)


def b_payload_trailing_garbage(c, cl, hdr):
    return craft(hdr, js(cl) + "x", c.hs_key)


def b_payload_two_objects(c, cl, hdr):
    return craft(hdr, js(cl) + js(cl), c.hs_key)


def b_payload_nul_byte(c, cl, hdr):
    text = js(cl)[:-1] + ',"x":"a\u0000b"}'
    return craft(hdr, text, c.hs_key)


def b_dup_exp_past_last(c, cl, hdr):
    return craft(hdr, _dup_payload(cl, "exp", cl["exp"], _now() - 3600), c.hs_key)


def b_dup_exp_future_last(c, cl, hdr):
    return craft(hdr, _dup_payload(cl, "exp", _now() - 3600, cl["exp"]), c.hs_key)


def b_dup_exp_same(c, cl, hdr):
    return craft(hdr, _dup_payload(cl, "exp", cl["exp"], cl["exp"]), c.hs_key)


def b_dup_token_type(c, cl, hdr):
    other = "access" if cl["token_type"] == "refresh" else "refresh"
    return craft(hdr, _dup_payload(cl, "token_type", other, cl["token_type"]), c.hs_key)


def b_dup_user_id(c, cl, hdr):
    return craft(hdr, _dup_payload(cl, "user_id", str(uuidlib.uuid4()), cl["user_id"]), c.hs_key)


def b_dup_jti(c, cl, hdr):
    return craft(hdr, _dup_payload(cl, "jti", str(uuidlib.uuid4()), cl["jti"]), c.hs_key)


def b_too_big_8193(c, cl, hdr):
    return _sized(c, cl, hdr, 8193)


def b_too_big_9000(c, cl, hdr):
    return _sized(c, cl, hdr, 9000)


def b_too_big_60k(c, cl, hdr):
    return _sized(c, cl, hdr, 60 * 1024)


def _sized(c, cl, hdr, size):
    """A correctly signed token of exactly size characters: a pad claim,
    and spaces in the header JSON to reach every length."""
    base = len(craft(hdr, _with(cl, pad=""), c.hs_key))
    n = max(0, (size - base) * 3 // 4)
    for spaces in range(0, 4):
        htext = "{" + " " * spaces + js(hdr)[1:]
        for extra in range(max(0, n - 6), n + 6):
            tok = craft(htext, _with(cl, pad="a" * extra), c.hs_key)
            if len(tok) == size:
                return tok
    raise AssertionError(f"cannot build a token of {size} characters")


def b_exp_missing(c, cl, hdr):
    return craft(hdr, _with(cl, exp=_DROP), c.hs_key)


def b_exp_string(c, cl, hdr):
    return craft(hdr, _with(cl, exp=str(cl["exp"])), c.hs_key)


def b_exp_float(c, cl, hdr):
    return craft(hdr, _with(cl, exp=cl["exp"] + 0.5), c.hs_key)


def b_exp_float_integral(c, cl, hdr):
    return craft(hdr, _with(cl, exp=float(cl["exp"])), c.hs_key)


def b_exp_bool(c, cl, hdr):
    return craft(hdr, _with(cl, exp=True), c.hs_key)


def b_exp_null(c, cl, hdr):
    return craft(hdr, _with(cl, exp=None), c.hs_key)


def b_exp_object(c, cl, hdr):
    return craft(hdr, _with(cl, exp={"t": cl["exp"]}), c.hs_key)


def b_exp_past(c, cl, hdr):
    return craft(hdr, _with(cl, exp=_now() - 5), c.hs_key)


def b_exp_zero(c, cl, hdr):
    return craft(hdr, _with(cl, exp=0), c.hs_key)


def b_exp_negative(c, cl, hdr):
    return craft(hdr, _with(cl, exp=-1), c.hs_key)


def b_exp_too_large(c, cl, hdr):
    return craft(hdr, f'{js(_with(cl, exp=_DROP))[:-1]},"exp":1e400}}', c.hs_key)


def b_nbf_future(c, cl, hdr):
    return craft(hdr, _with(cl, nbf=_now() + 120), c.hs_key)


def b_nbf_string(c, cl, hdr):
    return craft(hdr, _with(cl, nbf=str(_now() - 10)), c.hs_key)


def b_iat_future(c, cl, hdr):
    return craft(hdr, _with(cl, iat=_now() + 120), c.hs_key)


def b_iat_string(c, cl, hdr):
    return craft(hdr, _with(cl, iat=str(cl["iat"])), c.hs_key)


def b_token_type_missing(c, cl, hdr):
    return craft(hdr, _with(cl, token_type=_DROP), c.hs_key)


def b_token_type_unknown(c, cl, hdr):
    return craft(hdr, _with(cl, token_type="id"), c.hs_key)


def b_token_type_case(c, cl, hdr):
    return craft(hdr, _with(cl, token_type=cl["token_type"].capitalize()), c.hs_key)


def b_token_type_empty(c, cl, hdr):
    return craft(hdr, _with(cl, token_type=""), c.hs_key)


def b_token_type_number(c, cl, hdr):
    return craft(hdr, _with(cl, token_type=1), c.hs_key)


def b_token_type_swapped(c, cl, hdr):
    """A refresh-typed token with an access token's jti (never recorded), and
    an access token presented to /refresh/. (A refresh token re-typed as
    access, signed with our key, is a valid access token for /verify/.)"""
    if cl["token_type"] == "refresh" and c.kind == "refresh":
        pytest.skip("a well-signed access token is valid for /verify/")
    other = "access" if cl["token_type"] == "refresh" else "refresh"
    return craft(hdr, _with(cl, token_type=other, jti=str(uuidlib.uuid4())), c.hs_key)


def b_api_without_team(c, cl, hdr):
    return craft(hdr, _with(cl, token_type="api"), c.hs_key)


def b_jti_not_uuid(c, cl, hdr):
    return craft(hdr, _with(cl, jti="not-a-uuid"), c.hs_key)


def b_jti_uppercase(c, cl, hdr):
    return craft(hdr, _with(cl, jti=cl["jti"].upper()), c.hs_key)


def b_jti_no_dashes(c, cl, hdr):
    return craft(hdr, _with(cl, jti=cl["jti"].replace("-", "")), c.hs_key)


def b_jti_braces(c, cl, hdr):
    return craft(hdr, _with(cl, jti="{" + cl["jti"] + "}"), c.hs_key)


def b_jti_number(c, cl, hdr):
    return craft(hdr, _with(cl, jti=12345), c.hs_key)


def b_jti_missing(c, cl, hdr):
    return craft(hdr, _with(cl, jti=_DROP), c.hs_key)


def b_jti_sql(c, cl, hdr):
    return craft(hdr, _with(cl, jti=cl["jti"] + "' OR '1'='1"), c.hs_key)


def b_user_id_not_uuid(c, cl, hdr):
    return craft(hdr, _with(cl, user_id="alice"), c.hs_key)


def b_user_id_uppercase(c, cl, hdr):
    return craft(hdr, _with(cl, user_id=cl["user_id"].upper()), c.hs_key)


def b_user_id_number(c, cl, hdr):
    return craft(hdr, _with(cl, user_id=1), c.hs_key)


def b_user_id_missing(c, cl, hdr):
    return craft(hdr, _with(cl, user_id=_DROP), c.hs_key)


def b_user_id_other_user(c, cl, hdr):
    """A recorded refresh jti claimed for another user: refresh must refuse
    (store: a token must not name another's row)."""
    if c.kind != "refresh-route":
        pytest.skip("only the refresh route ties the row to the user")
    return craft(hdr, _with(cl, user_id=str(uuidlib.uuid4())), c.hs_key)


def b_other_key_pyjwt(c, cl, hdr):
    return jwt.encode(cl, uuidlib.uuid4().bytes * 4, algorithm="HS256",
                      headers={"kid": c.hs_kid})


def b_other_key_no_kid_pyjwt(c, cl, hdr):
    return jwt.encode(cl, uuidlib.uuid4().bytes * 4, algorithm="HS256")


def b_other_rsa_key(c, cl, hdr):
    from cryptography.hazmat.primitives.asymmetric import rsa
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(cl, k, algorithm="RS256", headers={"kid": c.rs_kid})


def b_other_ec_key(c, cl, hdr):
    from cryptography.hazmat.primitives.asymmetric import ec
    k = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(cl, k, algorithm="ES256", headers={"kid": c.es_kid})


def b_typ_other(c, cl, hdr):
    """A header typ other than JWT is not ours."""
    return craft(_with(hdr, typ="at+jwt"), cl, c.hs_key)


# RFC 7515 4.1.11: a recipient that does not understand an extension named
# in crit must refuse the token; tokend understands none, so any crit
# member (whatever its value) makes the token invalid.

def b_crit_unknown(c, cl, hdr):
    return craft(_with(hdr, crit=["x-unknown"], **{"x-unknown": 1}), cl, c.hs_key)


def b_crit_unknown_absent(c, cl, hdr):
    return craft(_with(hdr, crit=["x-unknown"]), cl, c.hs_key)


def b_crit_empty_list(c, cl, hdr):
    return craft(_with(hdr, crit=[]), cl, c.hs_key)


def b_crit_string(c, cl, hdr):
    return craft(_with(hdr, crit="x-unknown"), cl, c.hs_key)


def b_crit_null(c, cl, hdr):
    return craft(_with(hdr, crit=None), cl, c.hs_key)


def b_crit_b64_false(c, cl, hdr):
    """RFC 7797's unencoded payload: not supported, so refused."""
    return craft(_with(hdr, crit=["b64"], b64=False), cl, c.hs_key)


def b_crit_pyjwt(c, cl, hdr):
    return jwt.encode(cl, c.hs_key, algorithm="HS256",
                      headers={"kid": c.hs_kid, "crit": ["exp"]})


HOSTILE = {name[2:]: fn for name, fn in sorted(globals().items())
           if name.startswith("b_") and callable(fn)}


def _genuine(c, kind):
    """(claims, header) of a genuine token of kind; for 'refresh-route' a
    fresh login's refresh token (so accepting a hostile token would show)."""
    if kind == "refresh-route":
        tok = c.login()["refresh"]
    else:
        tok = c.pair[kind]
    return tok, claims_of(tok), header_of(tok)


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("kind", ["access", "refresh", "refresh-route"])
def test_hostile_token_refused(ctx, kind, case):
    tok, cl, hdr = _genuine(ctx, kind)
    ctx.kind = kind
    forged = HOSTILE[case](ctx, cl, hdr)
    assert forged != tok
    if kind == "refresh-route":
        expect_invalid(refresh(ctx.srv, forged), f"/refresh/ with {case}")
        # the genuine token was not consumed by the hostile one
        expect_verified(verify(ctx.srv, tok), tok, f"genuine refresh token after {case}")
    else:
        expect_invalid(verify(ctx.srv, forged), f"/verify/ {kind} with {case}")


# ---------------------------------------------------------------- controls

@pytest.mark.parametrize("kind", ["access", "refresh"])
def test_control_resigned_by_hand_verifies(ctx, kind):
    """The hand crafting is right: the genuine claims and header, serialised
    and signed here, verify."""
    tok, cl, hdr = _genuine(ctx, kind)
    forged = craft(hdr, cl, ctx.hs_key)
    expect_verified(verify(ctx.srv, forged), forged, f"hand-signed {kind}")
    # key order and whitespace of the JSON do not matter
    text = json.dumps(dict(reversed(list(cl.items()))), indent=1)
    forged2 = craft(hdr, text, ctx.hs_key)
    expect_verified(verify(ctx.srv, forged2), forged2, f"hand-signed reordered {kind}")


def test_control_unknown_header_member_without_crit_verifies(ctx):
    """An extension header member that crit does not name is ignored (RFC
    7515 4.1.11), so the crit cases above fail for crit alone."""
    tok, cl, hdr = _genuine(ctx, "access")
    forged = craft(_with(hdr, **{"x-unknown": 1}), cl, ctx.hs_key)
    expect_verified(verify(ctx.srv, forged), forged, "header with x-unknown, no crit")


@pytest.mark.parametrize("crit", [["x-unknown"], [], "x-unknown", None])
def test_crit_token_refused_as_bearer(ctx, crit):
    """Bearer authentication refuses a crit token too. The team does not
    exist: a token that authenticates gets 403, one that does not 401."""
    tok, cl, hdr = _genuine(ctx, "access")
    team = str(uuidlib.uuid4())
    path = f"/api/openapi/token/{team}/"
    control = craft(hdr, cl, ctx.hs_key)
    r = ctx.srv.request("GET", path, headers={"Authorization": f"Bearer {control}"})
    expect_json(r, 403, "control token without crit")
    forged = craft(_with(hdr, crit=crit), cl, ctx.hs_key)
    r = ctx.srv.request("GET", path, headers={"Authorization": f"Bearer {forged}"})
    body = expect_json(r, 401, f"Bearer token with crit {crit!r}")
    assert body.get("code") == "token_not_valid", body
    assert r.headers.get("WWW-Authenticate") == WWW_AUTH


def test_control_hand_signed_refresh_rotates(ctx):
    tok, cl, hdr = _genuine(ctx, "refresh-route")
    forged = craft(hdr, cl, ctx.hs_key)
    expect_tokens(refresh(ctx.srv, forged), "hand-signed genuine refresh claims")
    # same jti: the original is now used
    expect_invalid(verify(ctx.srv, tok), "original after its re-signed twin was used")


def test_control_past_nbf_and_extra_claims(ctx):
    tok, cl, hdr = _genuine(ctx, "access")
    forged = craft(hdr, _with(cl, nbf=_now() - 10, extra="ignored"), ctx.hs_key)
    expect_verified(verify(ctx.srv, forged), forged)


def test_token_of_exactly_8_kib_verifies(ctx):
    tok, cl, hdr = _genuine(ctx, "access")
    big = _sized(ctx, cl, hdr, 8192)
    assert len(big) == 8192
    expect_verified(verify(ctx.srv, big), big, "token of 8192 characters")
    bigger = _sized(ctx, cl, hdr, 8193)
    expect_invalid(verify(ctx.srv, bigger), "token of 8193 characters")


def test_nine_megabyte_token_in_form_body(ctx):
    """Far over the body limit: 413, answered on the declared length before
    the body is read (config/tokend.conf, max_body), never a crash. Only
    the first 64 KiB are sent: the answer must come without the rest (were
    the whole 9 MB sent, the server's close after its 413 could reset the
    connection before the answer is read, and the test would have to
    accept 'no answer')."""
    tok = "a" * 9_000_000
    body = b"token=" + tok.encode()
    req = build_request("POST", VERIFY, headers=[
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Content-Length", str(len(body)))])
    with RawConn(ctx.srv.port, timeout=HANG) as conn:
        conn.send(req + body[:65536])
        resps = conn.read_final(1, timeout=HANG)
    assert resps, "no answer to a declared 9 MB body with 64 KiB of it sent"
    expect_json(resps[0], 413, "9 MB token in a form body")
    ctx.srv.assert_alive("9 MB token")


def test_sixty_kib_token_in_json_body(ctx):
    tok, cl, hdr = _genuine(ctx, "access")
    big = _sized(ctx, cl, hdr, 60 * 1024)
    expect_invalid(verify(ctx.srv, big), "60 KiB token (verify)")
    expect_invalid(refresh(ctx.srv, big), "60 KiB token (refresh)")
    expect_invalid(ctx.srv.post(VERIFY, data={"token": big}), "60 KiB token (form)")
    ctx.srv.assert_alive("60 KiB token")


def test_non_current_rs_and_es_keys_verify_tokens_pyjwt_mints(ctx):
    """Older keys keep verifying; PyJWT RS256/ES256 tokens with our keys."""
    _, cl, _ = _genuine(ctx, "access")
    for alg, pem, kid in (("RS256", ctx.rs_priv_pem, ctx.rs_kid),
                          ("ES256", ctx.es_priv_pem, ctx.es_kid)):
        tok = jwt.encode(cl, pem, algorithm=alg, headers={"kid": kid})
        expect_verified(verify(ctx.srv, tok), tok, f"PyJWT {alg} with our {alg} key")


# ---------------------------------------------------------------- HS256 interop

def test_pyjwt_minted_hs256_tokens_verify(ctx):
    now = _now()
    claims = {"token_type": "access", "exp": now + 300, "iat": now,
              "jti": str(uuidlib.uuid4()), "user_id": ctx.uid}
    tok = jwt.encode(claims, ctx.hs_key, algorithm="HS256", headers={"kid": ctx.hs_kid})
    expect_verified(verify(ctx.srv, tok), tok, "PyJWT HS256 access token")
    # and a refresh token PyJWT mints with the claims of one we issued
    genuine = ctx.login()["refresh"]
    rtok = jwt.encode(claims_of(genuine), ctx.hs_key, algorithm="HS256",
                      headers={"kid": ctx.hs_kid})
    expect_verified(verify(ctx.srv, rtok), rtok, "PyJWT HS256 refresh token")
    expect_tokens(refresh(ctx.srv, rtok), "refresh with a PyJWT-minted refresh token")


def test_our_hs256_tokens_verify_with_pyjwt(ctx):
    pair = ctx.login()
    for kind in ("access", "refresh"):
        hdr = jwt.get_unverified_header(pair[kind])
        assert hdr == {"alg": "HS256", "typ": "JWT", "kid": ctx.hs_kid}, hdr
        cl = jwt.decode(pair[kind], ctx.hs_key, algorithms=["HS256"],
                        options={"require": ["exp", "iat", "jti"]})
        assert cl["token_type"] == kind and cl["user_id"] == ctx.uid
        assert "iss" not in cl and "aud" not in cl, "iss/aud without configuration"


# ---------------------------------------------------------------- leeway

def _mint(ctx, **over):
    now = _now()
    claims = {"token_type": "access", "exp": now + 300, "iat": now,
              "jti": str(uuidlib.uuid4()), "user_id": ctx.uid}
    claims.update(over)
    claims = {k: v for k, v in claims.items() if v is not _DROP}
    return jwt.encode(claims, ctx.hs_key, algorithm="HS256", headers={"kid": ctx.hs_kid})


def test_leeway_expired(ctx, lee30):
    now = _now()
    t10 = _mint(ctx, exp=now - 10, iat=now - 310)
    t60 = _mint(ctx, exp=now - 60, iat=now - 360)
    expect_verified(verify(lee30, t10), t10, "expired 10 s ago, leeway 30")
    expect_invalid(verify(lee30, t60), "expired 60 s ago, leeway 30")
    expect_invalid(verify(ctx.srv, t10), "expired 10 s ago, leeway 0")


def test_leeway_iat_in_future(ctx, lee30):
    now = _now()
    t10 = _mint(ctx, iat=now + 10)
    t60 = _mint(ctx, iat=now + 60)
    expect_verified(verify(lee30, t10), t10, "iat 10 s ahead, leeway 30")
    expect_invalid(verify(ctx.srv, t10), "iat 10 s ahead, leeway 0")
    expect_invalid(verify(lee30, t60), "iat 60 s ahead, leeway 30")


def test_leeway_nbf_in_future(ctx, lee30):
    now = _now()
    t10 = _mint(ctx, nbf=now + 10)
    t60 = _mint(ctx, nbf=now + 60)
    expect_verified(verify(lee30, t10), t10, "nbf 10 s ahead, leeway 30")
    expect_invalid(verify(ctx.srv, t10), "nbf 10 s ahead, leeway 0")
    expect_invalid(verify(lee30, t60), "nbf 60 s ahead, leeway 30")


def test_leeway_applies_to_refresh_route(ctx, lee30):
    """A refresh token expired 10 s ago (hand-minted with a recorded jti)
    refreshes with leeway 30, not with 0."""
    genuine = ctx.login()["refresh"]
    cl = claims_of(genuine)
    now = _now()
    old = jwt.encode(_with(cl, exp=now - 10), ctx.hs_key, algorithm="HS256",
                     headers={"kid": ctx.hs_kid})
    expect_invalid(refresh(ctx.srv, old), "refresh token expired 10 s ago, leeway 0")
    expect_tokens(refresh(lee30, old), "refresh token expired 10 s ago, leeway 30")


# ---------------------------------------------------------------- iss / aud

@pytest.fixture(scope="module")
def issued(module_factory):
    inst, srv = module_factory.server(env={"TOKEND_TOKENS_ISSUER": ISS,
                                           "TOKEND_TOKENS_AUDIENCE": AUD},
                                      label="iss/aud")
    uid = inst.add_user("issy", "issy password")
    keys = inst.keys_by_kid()
    assert len(keys) == 1, keys
    kid, key = next(iter(keys.items()))
    return inst, srv, uid, kid, key


def _aud_has(claims):
    aud = claims.get("aud")
    return aud == AUD or (isinstance(aud, list) and AUD in aud)


def test_minted_tokens_carry_iss_and_aud(issued):
    inst, srv, uid, kid, key = issued
    pair = expect_tokens(srv.login("issy", "issy password"))
    new = expect_tokens(refresh(srv, pair["refresh"]), "refresh with iss/aud")
    for name, tok in list(pair.items()) + [("rotated " + k, v) for k, v in new.items()]:
        cl = jwt.decode(tok, key, algorithms=["HS256"], audience=AUD, issuer=ISS,
                        options={"require": ["exp", "iat", "jti", "iss", "aud"]})
        assert cl["iss"] == ISS, (name, cl)
        assert _aud_has(cl), (name, cl)
        expect_verified(verify(srv, tok), tok, name) if name != "refresh" else None


@pytest.mark.parametrize("over,ok", [
    ({}, True),
    ({"aud": [AUD]}, True),
    ({"aud": ["other", AUD]}, True),
    ({"iss": _DROP}, False),
    ({"aud": _DROP}, False),
    ({"iss": _DROP, "aud": _DROP}, False),
    ({"iss": "https://evil.example"}, False),
    ({"iss": ISS + "/"}, False),
    ({"aud": "other"}, False),
    ({"aud": ["other"]}, False),
    ({"aud": []}, False),
    ({"aud": AUD.upper()}, False),
    ({"iss": 1}, False),
    ({"aud": 1}, False),
], ids=["good", "aud-list", "aud-list-2", "no-iss", "no-aud", "neither", "wrong-iss",
        "iss-slash", "wrong-aud", "wrong-aud-list", "empty-aud-list", "aud-case",
        "iss-number", "aud-number"])
def test_iss_aud_enforced(issued, over, ok):
    inst, srv, uid, kid, key = issued
    now = _now()
    claims = {"token_type": "access", "exp": now + 300, "iat": now,
              "jti": str(uuidlib.uuid4()), "user_id": uid, "iss": ISS, "aud": AUD}
    claims.update(over)
    claims = {k: v for k, v in claims.items() if v is not _DROP}
    tok = craft({"alg": "HS256", "typ": "JWT", "kid": kid}, claims, key)
    if ok:
        expect_verified(verify(srv, tok), tok, f"iss/aud {over}")
    else:
        expect_invalid(verify(srv, tok), f"iss/aud {over}")


def test_tokens_without_iss_from_unconfigured_server_refused(ctx, issued):
    """Our own tokens from before iss/aud were configured do not pass a
    server that requires them (same key bytes reused here)."""
    inst, srv, uid, kid, key = issued
    now = _now()
    tok = jwt.encode({"token_type": "access", "exp": now + 300, "iat": now,
                      "jti": str(uuidlib.uuid4()), "user_id": uid},
                     key, algorithm="HS256", headers={"kid": kid})
    expect_invalid(verify(srv, tok), "PyJWT token without iss/aud")
