#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Server CPU per request: user and system microseconds tokend spent per
answered request on one route, from /proc/<pid>/stat (utime, stime)
before and after a wrk run. Steadier than req/s on a shared machine: other
work slows the run down but adds little to what each request costs.
Several binaries are interleaved round by round. Loopback only, bounded:
ROUNDS x binaries x SECONDS.

    /usr/bin/python3 bench/cpu_per_request.py --route verify|list|401 \
        [--rounds 3] [--seconds 4] BINARY [BINARY ...]

With the path of bench/mhd_ceiling (built by `make bench`) as a binary,
the bare-libmicrohttpd ceiling is measured the same way (GET /).
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import uuid

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (the harness: Tokend, free_port, wait_port)

ENV = {"TOKEND_TOKENS_ACCESS_LIFETIME": "3600", "TOKEND_SERVER_PER_IP_CONNECTIONS": "0",
       "TOKEND_SERVER_PER_CLIENT_REQUESTS": "0", "TOKEND_PASSWORD_PBKDF2_ITERATIONS": "1000"}


def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]), int(f[12])  # utime, stime in clock ticks


def measure(pid, url, seconds, script=None, env=None):
    hz = os.sysconf("SC_CLK_TCK")
    u0, s0 = cpu(pid)
    cmd = ["wrk", "-t2", "-c64", f"-d{seconds}s"] + (["-s", script] if script else []) + [url]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})},
                         timeout=seconds + 60).stdout
    u1, s1 = cpu(pid)
    n = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return (u1 - u0) / hz / n * 1e6, (s1 - s0) / hz / n * 1e6, rps


class Subject:
    def __init__(self, binary, route, tmp):
        self.name = binary
        self.mhd = os.path.basename(binary) == "mhd_ceiling"
        if self.mhd:
            port = bench.free_port()
            self.proc = subprocess.Popen([binary, "--port", str(port)], stdout=subprocess.DEVNULL)
            bench.wait_port(port)
            self.pid, self.url, self.script, self.env = self.proc.pid, f"http://127.0.0.1:{port}/", None, {}
            return
        d = tempfile.mkdtemp(dir=tmp)
        self.td = bench.Tokend(binary, d, ENV)
        pw = "cpu-" + uuid.uuid4().hex
        self.td.cli("user", "add", "cpu", "--password-stdin", stdin=pw + "\n")
        team = self.td.cli("team", "add", "cpu").strip()
        self.td.cli("team", "add-member", "cpu", "cpu")
        self.td.start()
        self.pid = self.td.proc.pid
        access = requests.post(self.td.url + "/api/auth/jwt/",
                               data={"username": "cpu", "password": pw}).json()["access"]
        for i in range(10):
            requests.post(self.td.url + f"/api/openapi/token/{team}/",
                          headers={"Authorization": "Bearer " + access}, json={"name": f"t{i}"})
        lua = os.path.join(bench.LUA, "get_auth.lua")
        if route == "verify":
            self.url, self.script = self.td.url + "/api/auth/jwt/verify/", os.path.join(bench.LUA, "post_body.lua")
            self.env = {"BODY": "token=" + access}
        else:
            self.url, self.script = self.td.url + f"/api/openapi/token/{team}/", lua
            self.env = {"AUTH": "Bearer " + (access if route == "list" else "bad")}

    def stop(self):
        if self.mhd:
            self.proc.terminate()
            self.proc.wait(30)
        else:
            self.td.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--route", choices=["verify", "list", "401"], default="verify")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("binaries", nargs="+")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tokend-cpu-")
    subjects = []
    try:
        for b in a.binaries:
            subjects.append(Subject(b, a.route, tmp))
        got = {s.name: [] for s in subjects}
        for _ in range(a.rounds):
            for s in subjects:
                got[s.name].append(measure(s.pid, s.url, a.seconds, s.script, s.env))
        print(f"{a.route}: {a.rounds} rounds x {a.seconds} s, wrk -t2 -c64; medians")
        for s in subjects:
            u = statistics.median(x[0] for x in got[s.name])
            k = statistics.median(x[1] for x in got[s.name])
            r = statistics.median(x[2] for x in got[s.name])
            print(f"  {s.name}: user {u:.2f} us, system {k:.2f} us per request ({r:,.0f} req/s)")
    finally:
        for s in subjects:
            s.stop()


if __name__ == "__main__":
    main()
