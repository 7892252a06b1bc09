#!/usr/bin/python3
"""RSS, CPU and request latency of tokend while it holds N idle keep-alive
connections (default 10,000), each after one request. Loopback only; stops
by itself.

    bench/idle_conns.py BUILD/tokend [--idle 10000] [--requests 2000]

Prints the RSS before and with the idle connections, the CPU tokend used in
10 s of holding them (the connection watchdog's cost), and p50/p99 of
sequential keep-alive POST /api/auth/jwt/verify/ requests meanwhile.
"""

import argparse
import os
import re
import resource
import socket
import subprocess
import tempfile
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--request-timeout", type=int, default=None,
                    help="server.request_timeout: idle connections are looked at once per it")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, args.idle + 1000), hard), hard))
    tmp = tempfile.mkdtemp(prefix="tokend-idle-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKEND_")}
    env.update({"TOKEND_SERVER_MAX_CONNECTIONS": str(args.idle + 2000),
                "TOKEND_SERVER_PER_IP_CONNECTIONS": "0",
                "TOKEND_SERVER_IDLE_TIMEOUT": "600",
                "TOKEND_LOG_ACCESS_LOG": "false"})
    if args.request_timeout:
        env["TOKEND_SERVER_REQUEST_TIMEOUT"] = str(args.request_timeout)
    log = open(os.path.join(tmp, "err"), "w+")
    proc = subprocess.Popen([args.binary, "--database", f"{tmp}/db", "--key-dir", f"{tmp}/keys",
                             "serve", "--listen", "127.0.0.1:0"], env=env, stderr=log)
    try:
        port = None
        for _ in range(200):
            log.seek(0)
            m = re.search(r"listening on http://[^:\s]+:(\d+)", log.read())
            if m:
                port = int(m.group(1))
                break
            time.sleep(0.05)
        assert port, "tokend did not start"
        base = rss_kib(proc.pid)
        socks = []
        for i in range(args.idle):
            s = socket.create_connection(("127.0.0.1", port), 5)
            s.sendall(b"GET /nope HTTP/1.1\r\nHost: bench\r\n\r\n")
            socks.append(s)
            if len(socks) % 500 == 0:
                for t in socks[-500:]:
                    t.recv(4096)
        for t in socks[len(socks) - len(socks) % 500:]:
            t.recv(4096)
        time.sleep(1)
        held = rss_kib(proc.pid)
        c0 = cpu_s(proc.pid)
        time.sleep(10)
        cpu = cpu_s(proc.pid) - c0
        body = b"token=x.y.z"
        req = (b"POST /api/auth/jwt/verify/ HTTP/1.1\r\nHost: bench\r\n"
               b"Content-Type: application/x-www-form-urlencoded\r\n"
               b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        c = socket.create_connection(("127.0.0.1", port), 5)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lat = []
        for _ in range(args.requests):
            t0 = time.perf_counter()
            c.sendall(req)
            buf = b""
            while b"\r\n\r\n" not in buf or not buf.endswith(b"}"):
                buf += c.recv(65536)
            lat.append((time.perf_counter() - t0) * 1000)
        c.close()
        lat.sort()
        print(f"idle connections: {len(socks)}")
        print(f"RSS after start-up: {base / 1024:.1f} MiB; with the idle connections: "
              f"{held / 1024:.1f} MiB")
        print(f"tokend CPU in 10 s holding them: {cpu * 1000:.0f} ms")
        print(f"verify (sequential, keep-alive) p50 {lat[len(lat) // 2]:.3f} ms, "
              f"p99 {lat[int(len(lat) * 0.99)]:.3f} ms")
        for s in socks:
            s.close()
    finally:
        proc.terminate()
        proc.wait(15)


if __name__ == "__main__":
    main()
