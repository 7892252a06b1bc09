"""A real nginx (Debian nginx-light) in front of tokend, for black-box tests.

    from proxy import Nginx, nginx_available
    with Nginx(tmp_path, upstreams=[srv.port]) as ngx:
        requests.get(ngx.url("/api/auth/jwt/verify/"))

nginx runs unprivileged in the foreground (`daemon off;`) with every temp
path, its pid file and its error log inside its own directory, listening on
a free loopback port. `locations` replaces the default `location /` block;
`http_extra` is added to the http block. The default proxies every request
to the upstream(s) with X-Forwarded-For $proxy_add_x_forwarded_for, the
configuration the README documents.
"""

import shutil
import socket
import subprocess
import time
from pathlib import Path

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

DEFAULT_LOCATIONS = """
        location / {
            proxy_pass http://tokend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
"""


def nginx_available():
    return Path(NGINX).is_file()


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Nginx:
    def __init__(self, workdir, upstreams, locations=DEFAULT_LOCATIONS, http_extra="",
                 listen_host="127.0.0.1", upstream_extra="keepalive 16;"):
        self.dir = Path(workdir) / f"nginx-{free_port()}"
        self.dir.mkdir(parents=True)
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
            (self.dir / d).mkdir()
        self.host = listen_host
        self.port = free_port(listen_host)
        servers = "\n".join(f"        server 127.0.0.1:{p};" for p in upstreams)
        conf = f"""
worker_processes 1;
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/logs/error.log info;
events {{ worker_connections 4096; }}
http {{
    access_log {self.dir}/logs/access.log;
    client_body_temp_path {self.dir}/client_body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    upstream tokend {{
{servers}
        {upstream_extra}
    }}
    {http_extra}
    server {{
        listen {listen_host}:{self.port};
{locations}
    }}
}}
"""
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(conf)
        self.proc = None

    def start(self, timeout=10.0):
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.dir), "-c", str(self.conf)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited {self.proc.returncode}: "
                                     f"{self.proc.stderr.read().decode(errors='replace')}\n"
                                     f"{self.error_log()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"nginx did not listen within {timeout}s\n{self.error_log()}")

    def error_log(self):
        p = self.dir / "logs" / "error.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def url(self, path):
        return f"http://{self.host}:{self.port}{path}"

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
