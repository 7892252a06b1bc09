"""Issue 11 in a real browser: headless Chromium runs a page served from one
loopback port against tokend on another (a cross-origin frontend).

tokend is started with the page's origin, http://127.0.0.1:<page port>, in
`[cors] allowed_origins`. The page (PAGE below) logs in with JSON (a
preflighted fetch) and with a form, lists and issues API tokens with a
Bearer header, refreshes, logs out, and reads a 401's detail and
WWW-Authenticate; it writes each outcome into the DOM, which
`chromium --dump-dom` prints and the test reads. The same page from another
port (an origin not in the list) must see every call blocked: fetch rejects
with a TypeError and the page writes "blocked".

Skipped, with the reason, only when chromium is not installed or cannot
start (CI installs Debian's chromium: scripts/install-deps). As root it
needs --no-sandbox (docs: /work/shared/PITFALLS.md).

    /usr/bin/python3 tests/api/test_browser.py --screenshot docs/cors-browser.png

makes the picture in the docs: both pages side by side.
"""

import html
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import uuid as uuidlib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import LOGIN, UUID_RE, expect_tokens  # noqa: E402

BLACKLIST = "/api/auth/jwt/blacklist/"
STEPS = ["login-json", "login-form", "list", "issue", "list-again", "refresh", "logout", "after-logout",
         "bad-token"]
# Bounds a hang only: chromium's start takes seconds, more under load.
CHROMIUM_TIMEOUT = 180
VIRTUAL_TIME_MS = 20000

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>tokend from a browser</title>
<style>
 body { font: 15px/1.35 sans-serif; margin: 10px 14px; }
 h2 { font-size: 17px; margin: 4px 0; }
 p { margin: 2px 0 8px; color: #444; font-size: 13px; }
 ul { list-style: none; padding: 0; margin: 0; }
 li { margin: 3px 0; padding: 3px 6px; border-radius: 3px; }
 li.ok { background: #e3f4e3; color: #0b5d0b; }
 li.blocked { background: #fbe3e3; color: #9b1111; }
 li.other { background: #fff1d6; color: #7a4b00; }
 small { color: #555; }
</style></head>
<body>
<h2 id="origin"></h2>
<p id="api"></p>
<ul id="steps"></ul>
<p id="done"></p>
<script>
const q = new URLSearchParams(location.search);
const API = q.get("api"), TEAM = q.get("team"), USER = q.get("user"), PW = q.get("pw");
document.getElementById("origin").textContent = "Page on " + location.origin;
document.getElementById("api").textContent = "calling tokend on " + API;

function show(step, outcome, note) {
  const li = document.createElement("li");
  li.id = "step-" + step;
  li.dataset.outcome = outcome;
  li.className = outcome === "blocked" ? "blocked" : (/^2/.test(outcome) ? "ok" : "other");
  li.textContent = (outcome === "blocked" ? "\\u2717 " : "\\u2713 ") + step + ": " + outcome;
  if (note) {
    const s = document.createElement("small");
    s.className = "note";
    s.textContent = " " + note;
    li.appendChild(s);
  }
  document.getElementById("steps").appendChild(li);
}

async function call(step, path, opts, note) {
  let r;
  try {
    r = await fetch(API + path, opts);
  } catch (e) {
    show(step, e instanceof TypeError ? "blocked" : "error " + e.name);
    return null;
  }
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  show(step, String(r.status), note ? note(r, body) : "");
  return body;
}

function post(obj, token) {
  const headers = {"Content-Type": "application/json"};
  if (token) headers["Authorization"] = "Bearer " + token;
  return {method: "POST", headers: headers, body: JSON.stringify(obj)};
}

(async () => {
  const pair = await call("login-json", "/api/auth/jwt/", post({username: USER, password: PW}));
  await call("login-form", "/api/auth/jwt/",
             {method: "POST", body: new URLSearchParams({username: USER, password: PW})});
  const access = pair ? pair.access : "none", refresh = pair ? pair.refresh : "none";
  const bearer = {headers: {"Authorization": "Bearer " + access}};
  const list = "/api/openapi/token/" + TEAM + "/";
  await call("list", list, bearer, (r, b) => b && b.tokens ? "tokens: " + b.tokens.length : "");
  await call("issue", list, post({name: "from a browser"}, access));
  await call("list-again", list, bearer, (r, b) => b && b.tokens ? "tokens: " + b.tokens.length : "");
  const next = await call("refresh", "/api/auth/jwt/refresh/", post({refresh: refresh}));
  await call("logout", "/api/auth/jwt/blacklist/",
             post({refresh: next && next.refresh ? next.refresh : refresh}));
  await call("after-logout", list,
             {headers: {"Authorization": "Bearer " + (next && next.access ? next.access : access)}});
  await call("bad-token", list, {headers: {"Authorization": "Bearer not.a.token"}},
             (r, b) => "detail=" + (b ? b.detail : "?") + " www-authenticate=" +
                       r.headers.get("WWW-Authenticate"));
  document.getElementById("done").textContent = "done";
})();
</script>
</body></html>
"""

BOTH = """<!doctype html>
<html><head><meta charset="utf-8"><title>tokend CORS</title>
<style>
 body { font: 14px sans-serif; margin: 8px; }
 h1 { font-size: 16px; margin: 2px 0 6px; }
 .row { display: flex; gap: 8px; }
 .col { flex: 1; }
 .col h3 { margin: 0 0 4px; font-size: 14px; }
 iframe { width: 100%%; height: 500px; border: 1px solid #bbb; }
</style></head>
<body><h1>tokend on %(api)s, [cors] allowed_origins = %(allowed)s</h1>
<div class="row">
 <div class="col"><h3>allowed origin</h3><iframe src="%(left)s"></iframe></div>
 <div class="col"><h3>another origin (not allowed)</h3><iframe src="%(right)s"></iframe></div>
</div></body></html>
"""


class Pages:
    """A loopback HTTP server (its own origin) serving the test page."""

    def __init__(self, extra=None):
        self.extra = extra or {}
        pages = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path = urllib.parse.urlsplit(self.path).path
                text = PAGE if path == "/page" else pages.extra.get(path)
                if text is None:
                    self.send_error(404)
                    return
                data = text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, api, team, user, pw):
        return f"{self.origin}/page?" + urllib.parse.urlencode(
            {"api": api, "team": team, "user": user, "pw": pw})

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def chromium_binary():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def run_chromium(url, workdir, extra=()):
    """Runs headless chromium on url; returns the CompletedProcess."""
    cmd = [chromium_binary(), "--headless=new", "--no-sandbox", "--disable-gpu",
           "--no-first-run", "--no-default-browser-check", "--disable-extensions",
           "--disable-background-networking", f"--user-data-dir={workdir}",
           f"--virtual-time-budget={VIRTUAL_TIME_MS}", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                          timeout=CHROMIUM_TIMEOUT, stdin=subprocess.DEVNULL)


def chromium_problem(tmp):
    """None when chromium starts and runs a script, else why not."""
    if chromium_binary() is None:
        return "chromium is not installed (Debian package chromium; scripts/install-deps)"
    page = "data:text/html,<p id=x>no</p><script>document.getElementById('x').textContent='ran'</script>"
    try:
        p = run_chromium(page, os.path.join(tmp, "probe"), ["--dump-dom"])
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"chromium cannot start: {e!r}"
    if ">ran<" not in p.stdout:
        return (f"chromium cannot start (exit {p.returncode}): "
                f"{' | '.join(p.stderr.strip().splitlines()[-3:])}")
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("chromium"))
    why = chromium_problem(tmp)
    if why:
        pytest.skip(why)
    return tmp


def outcomes(dom):
    """{step: (outcome, note)} of the page's list, from chromium's DOM dump."""
    out = {}
    for m in re.finditer(r'<li id="step-([a-z-]+)" data-outcome="([^"]*)"[^>]*>(.*?)</li>', dom,
                         re.S):
        note = re.search(r'<small class="note">(.*?)</small>', m.group(3), re.S)
        out[m.group(1)] = (m.group(2), html.unescape(note.group(1)).strip() if note else "")
    return out


class Scene:
    """tokend allowing one page origin, a second page origin not allowed, a
    user in a team."""

    def __init__(self, factory_or_inst_maker):
        self.allowed = Pages()
        self.other = Pages()
        self.inst, self.srv = factory_or_inst_maker(
            {"TOKEND_CORS_ALLOWED_ORIGINS": self.allowed.origin})
        self.team = self.inst.cli_ok("team", "add", f"web-{uuidlib.uuid4().hex[:8]}").out.strip()
        assert UUID_RE.match(self.team)
        self.user = f"web-{uuidlib.uuid4().hex[:8]}"
        self.pw = f"pw-{uuidlib.uuid4().hex}"
        self.inst.add_user(self.user, self.pw)
        self.inst.cli_ok("team", "add-member", self.team, self.user)

    def url(self, pages):
        return pages.url(self.srv.base, self.team, self.user, self.pw)

    def close(self):
        self.allowed.close()
        self.other.close()


@pytest.fixture
def scene(factory):
    s = Scene(lambda env: factory.server(env=env, label="browser cors server"))
    yield s
    s.close()


def page_outcomes(scene, pages, browser, name):
    p = run_chromium(scene.url(pages), os.path.join(browser, name), ["--dump-dom"])
    dom = p.stdout
    assert 'id="done">done<' in dom, (
        f"the page did not finish within chromium's run (exit {p.returncode})\nDOM:\n{dom[-3000:]}"
        f"\nstderr tail:\n{p.stderr[-2000:]}")
    got = outcomes(dom)
    assert list(got) == STEPS, f"steps written: {list(got)}\nDOM:\n{dom[-3000:]}"
    return got


def test_allowed_origin_can_use_every_route(scene, browser):
    got = page_outcomes(scene, scene.allowed, browser, "allowed")
    want = {"login-json": "201", "login-form": "201", "list": "200", "issue": "201",
            "list-again": "200", "refresh": "201", "logout": "200",
            "after-logout": "401", "bad-token": "401"}
    assert {k: got[k][0] for k in want} == want, got
    assert got["list"][1] == "tokens: 0" and got["list-again"][1] == "tokens: 1", got
    note = got["bad-token"][1]
    assert "detail=Given token not valid for any token type" in note, (
        f"the page must read a 401's detail: {note!r}")
    assert 'www-authenticate=Bearer realm="api"' in note, (
        f"WWW-Authenticate must be exposed to the page: {note!r}")


def test_other_origin_is_blocked_everywhere(scene, browser):
    got = page_outcomes(scene, scene.other, browser, "other")
    assert {k: v[0] for k, v in got.items()} == {k: "blocked" for k in STEPS}, got
    scene.srv.assert_alive("a blocked page")


def screenshot(out, factory):
    """Both pages side by side in one picture (docs/cors-browser.png)."""
    tmp = tempfile.mkdtemp(prefix="tokend-shot-")
    why = chromium_problem(tmp)
    if why:
        raise SystemExit(why)
    scene = Scene(lambda env: factory.server(env=env, label="screenshot server"))
    try:
        both = BOTH % {"api": html.escape(scene.srv.base), "allowed": scene.allowed.origin,
                       "left": html.escape(scene.url(scene.allowed)),
                       "right": html.escape(scene.url(scene.other))}
        scene.allowed.extra["/both"] = both
        p = run_chromium(scene.allowed.origin + "/both", os.path.join(tmp, "ud"),
                         [f"--screenshot={os.path.abspath(out)}", "--window-size=900,600",
                          "--hide-scrollbars"])
        if p.returncode != 0 or not os.path.exists(out):
            raise SystemExit(f"chromium failed ({p.returncode}): {p.stderr[-2000:]}")
    finally:
        scene.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    import argparse

    from conftest import Factory, find_binary

    ap = argparse.ArgumentParser(description="the docs' screenshot of both origins")
    ap.add_argument("--screenshot", required=True, help="PNG to write")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="tokend-shot-inst-")
    f = Factory(find_binary(), base)
    try:
        screenshot(args.screenshot, f)
    finally:
        for inst in f.instances:
            for s in inst.servers:
                s.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"wrote {args.screenshot}")
