#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Login throttle measurements (issue 12), standalone: not part of `make bench`.

Starts tokend (default build/tokend) on a loopback port with a fresh
temporary database and fast hashes (1,000 PBKDF2 iterations, so that the
flood measures the table, not the hash), then:

1. a hot key: 9 failures of user "hot" from 127.0.0.1 (limit 10);
2. RSS (VmRSS and RssAnon of /proc/<pid>/status) before and after
   --usernames failed logins with distinct usernames (default 100,000) from
   127.0.0.1, and --addresses failed logins (default 20,000) each from a
   distinct 127.x.y.z source address with its own username;
3. checks that the hot key is still counted: its 10th failure is a 401 and
   the 11th attempt a 429;
4. the cost of the check: the server's CPU time per throttled login (429:
   body decoded, fields read, two keys hashed, admit) against a login
   refused for a field error (400: the same but no throttle work), over
   --samples requests each on one keep-alive connection (CPU time of the
   process, best of 3: clock ticks of 10 ms, so use >= 5,000 samples).

Everything targets 127.0.0.0/8, and the server is stopped before exit.
Usage: /usr/bin/python3 bench/throttle_flood.py [--bin build/tokend]
"""

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss(pid):
    return {"VmRSS": status_kib(pid, "VmRSS"), "RssAnon": status_kib(pid, "RssAnon")}


def post(conn, body):
    conn.request("POST", "/api/auth/jwt/", body=json.dumps(body).encode(),
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    return r.status


def flood_usernames(port, n, threads, prefix):
    counts = {}
    lock = threading.Lock()

    def run(tid):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        local = {}
        for i in range(tid, n, threads):
            s = post(conn, {"username": f"{prefix}-{i}", "password": "wrong"})
            local[s] = local.get(s, 0) + 1
        conn.close()
        with lock:
            for k, v in local.items():
                counts[k] = counts.get(k, 0) + v
    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return counts


def flood_addresses(port, n, threads):
    counts = {}
    lock = threading.Lock()

    def run(tid):
        local = {}
        for i in range(tid, n, threads):
            src = f"127.{1 + i // 65536 % 254}.{i // 256 % 256}.{1 + i % 254}"
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                              source_address=(src, 0))
            s = post(conn, {"username": f"addr-{i}", "password": "wrong"})
            conn.close()
            local[s] = local.get(s, 0) + 1
        with lock:
            for k, v in local.items():
                counts[k] = counts.get(k, 0) + v
    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return counts


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_us(pid, port, body, samples):
    """The server's CPU time (user + system) per request, best of 3 runs:
    not disturbed by the client's own cost or by other load on the cores."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    post(conn, body)  # warm
    best = None
    for _ in range(3):
        c = cpu_s(pid)
        for _ in range(samples):
            post(conn, body)
        d = (cpu_s(pid) - c) / samples * 1e6
        best = d if best is None else min(best, d)
    conn.close()
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "tokend"))
    ap.add_argument("--usernames", type=int, default=100000)
    ap.add_argument("--addresses", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--samples", type=int, default=20000)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="tokend-throttle-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKEND_")}
    env.update({"TOKEND_PASSWORD_PBKDF2_ITERATIONS": "1000",
                "TOKEND_LOG_ACCESS_LOG": "false",
                "TOKEND_SERVER_PER_IP_CONNECTIONS": "0"})
    base = [args.bin, "--database", os.path.join(tmp, "tokend.db"),
            "--key-dir", os.path.join(tmp, "keys")]
    subprocess.run(base + ["user", "add", "hot", "--password-stdin"], input="hot-pw\n",
                   env=env, check=True, capture_output=True, text=True)
    log = open(os.path.join(tmp, "tokend.log"), "w+")
    proc = subprocess.Popen(base + ["serve", "--listen", "127.0.0.1:0"], env=env,
                            stderr=log, stdout=subprocess.DEVNULL)
    port = None
    try:
        for _ in range(200):
            log.seek(0)
            m = re.search(r"listening on http://[^:\s]+:(\d+)", log.read())
            if m:
                port = int(m.group(1))
                break
            time.sleep(0.05)
        if port is None:
            sys.exit("tokend did not start")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        hot = [post(conn, {"username": "hot", "password": "wrong"}) for _ in range(9)]
        conn.close()
        start = rss(proc.pid)
        t = time.monotonic()
        uc = flood_usernames(port, args.usernames, args.threads, "flood")
        after_users = rss(proc.pid)
        du = time.monotonic() - t
        t = time.monotonic()
        ac = flood_addresses(port, args.addresses, args.threads)
        after_addrs = rss(proc.pid)
        da = time.monotonic() - t
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        tenth = post(conn, {"username": "hot", "password": "wrong"})
        eleventh = post(conn, {"username": "hot", "password": "hot-pw"})
        conn.close()
        throttled = server_cpu_us(proc.pid, port, {"username": "hot", "password": "x"},
                                  args.samples)
        field_err = server_cpu_us(proc.pid, port, {"username": "hot", "password": ""},
                                  args.samples)

        print(f"hot key, 9 failures before the flood: {hot.count(401)} x 401")
        print(f"RSS at start (KiB):                  {start}")
        print(f"after {args.usernames} distinct usernames ({du:.1f} s, {uc}): {after_users}")
        print(f"after {args.addresses} distinct addresses ({da:.1f} s, {ac}): {after_addrs}")
        print(f"hot key after the floods: 10th failure {tenth}, 11th attempt {eleventh} "
              f"({'still counted' if (tenth, eleventh) == (401, 429) else 'LOST'})")
        print(f"server CPU per request, throttled login (429): {throttled:.1f} us; "
              f"field error (400): {field_err:.1f} us; difference {throttled - field_err:.1f} us")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


if __name__ == "__main__":
    main()
