#!/usr/bin/env python3
"""The HTTP front's speed and memory: one srvd process (one worker), run by hand.

    python3 tests/perf/http_bench.py                       # 100k domains, 10 s per route
    python3 tests/perf/http_bench.py --domains 1000000     # the issue's 1M domains
    python3 tests/perf/http_bench.py --domains 1000 --seconds 2    # a quick check

For each size srvd is started three times on a generated configuration (``custNNNNNNN.example``
domains on two profiles, one with ``{domain}`` templates, 5% with an override of their own):
without ``http:``, with ``http:`` and ``pacc: off``, and with ``pacc: on``. It reports the RSS
once ready (and for the HTTP ones, again after documents were asked for 20,000 different
domains: documents are kept per Table, so this must not grow with the domains asked for), then
loads the front with keep-alive clients for each route kind and reports the server's CPU time
per request (user + system from /proc/PID/stat over the run) and requests per second of that
one process's CPU (1 / CPU per request). The clients are Python threads in this process: with two
cores they compete with srvd, so requests/s of CPU is the figure, not the wall-clock rate.

The report goes to stdout, progress to stderr. Not a pytest module (tests/perf/conftest.py keeps
pytest out of this directory).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRVD = [sys.executable, "-m", "srvd"]
HOST = "127.0.0.1"
MIB = 1 << 20
TICKS = os.sysconf("SC_CLK_TCK")

HEAD = """zone: {{nameservers: [ns1.example.net]}}
{http}
profiles:
  standard:
    imaps:
      - {{target: imap1.example.net, port: 993, priority: 0, weight: 10}}
      - {{target: imap2.example.net, port: 993, priority: 0, weight: 5}}
    submissions: {{target: smtp.example.net, port: 465}}
    submission: {{target: smtp.example.net, port: 587}}
    caldavs: {{target: dav.example.net, port: 443, path: /dav/}}
    carddavs: {{target: dav.example.net, port: 443, path: /dav/}}
    jmap: {{target: jmap.example.net, port: 443}}
  branded:
    imaps: {{target: "mail.{{domain}}", port: 993}}
    submissions: {{target: "mail.{{domain}}", port: 465}}
include: [domains.json]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def domain(i: int) -> str:
    return f"cust{i:07d}.example"


def write_config(folder: Path, count: int, http: str) -> Path:
    domains: dict[str, object] = {}
    for i in range(count):
        if i % 20 == 0:  # 5%: an IMAP server of their own
            domains[domain(i)] = {
                "profile": "standard",
                "imaps": [{"target": f"mail.{domain(i)}", "port": 993}],
            }
        else:
            domains[domain(i)] = "branded" if i % 2 else "standard"
    (folder / "domains.json").write_text(json.dumps({"domains": domains}))
    path = folder / "srvd.yaml"
    path.write_text(HEAD.format(http=http))
    return path


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


class Server:
    def __init__(self, config: Path, http_port: int | None) -> None:
        self.dns = free_port()
        command = [*SRVD, "serve", "-c", str(config), "--listen", f"{HOST}:{self.dns}"]
        command += ["--metrics", "off"]
        command += ["--http", f"{HOST}:{http_port}" if http_port else "off"]
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        self.http = http_port
        started = time.monotonic()
        self.wait_ready()
        self.ready_seconds = time.monotonic() - started

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(self.log.read().decode(errors="replace"))
            self.log.seek(0)
            if b"listening on" in self.log.read():
                time.sleep(0.2)
                return
            time.sleep(0.1)
        raise TimeoutError("srvd did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def client_loop(
    port: int,
    make: Callable[[random.Random], tuple[str, str, str, bytes | None]],
    stop: float,
    counts: list[int],
    errors: list[str],
) -> None:
    rng = random.Random()
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    done = 0
    while time.monotonic() < stop:
        method, path, host, body = make(rng)
        headers = {"Host": host}
        if body is not None:
            headers["Content-Type"] = "text/xml"
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status >= 400:
                errors.append(f"{response.status} {path}")
            done += 1
        except (OSError, http.client.HTTPException) as exc:
            errors.append(repr(exc))
            connection.close()
            connection = http.client.HTTPConnection(HOST, port, timeout=10)
    counts.append(done)
    connection.close()


POX = (
    '<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/'
    'exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>user@{d}'
    "</EMailAddress></Request></Autodiscover>"
)


def routes(
    count: int, pacc: bool
) -> dict[str, Callable[[random.Random], tuple[str, str, str, bytes | None]]]:
    def pick(rng: random.Random) -> str:
        return domain(rng.randrange(count))

    out: dict[str, Callable[[random.Random], tuple[str, str, str, bytes | None]]] = {
        "autoconfig": lambda rng: ("GET", "/mail/config-v1.1.xml", f"autoconfig.{pick(rng)}", None),
        "autodiscover_xml": lambda rng: (
            "POST",
            "/autodiscover/autodiscover.xml",
            "autodiscover.provider.net",
            POX.format(d=pick(rng)).encode(),
        ),
        "mobileconfig": lambda rng: (
            "GET",
            f"/email.mobileconfig?emailaddress=user@{pick(rng)}",
            "provider.net",
            None,
        ),
        "not_found": lambda rng: (
            "GET",
            "/mail/config-v1.1.xml",
            "autoconfig.unknown.example",
            None,
        ),
    }
    if pacc:
        out["pacc"] = lambda rng: (
            "GET",
            "/.well-known/user-agent-configuration.json",
            f"ua-auto-config.{pick(rng)}",
            None,
        )
    return out


def load(
    server: Server,
    make: Callable[[random.Random], tuple[str, str, str, bytes | None]],
    seconds: float,
    clients: int,
) -> tuple[int, float, list[str]]:
    assert server.http is not None
    counts: list[int] = []
    errors: list[str] = []
    before = cpu(server.process.pid)
    stop = time.monotonic() + seconds
    threads = [
        threading.Thread(target=client_loop, args=(server.http, make, stop, counts, errors))
        for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    used = cpu(server.process.pid) - before
    return sum(counts), used, errors


def warm(server: Server, count: int, asked: int) -> None:
    """Ask for the documents of ``asked`` different domains."""
    assert server.http is not None
    connection = http.client.HTTPConnection(HOST, server.http, timeout=10)
    for i in range(0, count, max(1, count // asked)):
        connection.request(
            "GET", "/mail/config-v1.1.xml", headers={"Host": f"autoconfig.{domain(i)}"}
        )
        connection.getresponse().read()
    connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--domains", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    count = args.domains
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(
            f"# HTTP front, {count:,} domains, {args.seconds:g} s per route, {args.clients} clients"
        )
        base: int | None = None
        for label, http, pacc in (
            ("no http", "", False),
            ("http, pacc off", "http: {listen: [127.0.0.1:8080]}", False),
            ("http, pacc on", "http: {listen: [127.0.0.1:8080], pacc: on}", True),
        ):
            config = write_config(folder, count, http)
            port = free_port() if http else None
            print(f"starting srvd: {label}", file=sys.stderr)
            server = Server(config, port)
            try:
                ready = rss(server.process.pid)
                base = ready if base is None else base
                line = f"{label:16s} ready in {server.ready_seconds:5.1f} s"
                line += f", RSS {ready / MIB:7.1f} MiB"
                line += f" ({(ready - base) / MIB:+.1f} MiB vs no http)"
                if port is None:
                    print(line)
                    continue
                warm(server, count, min(count, 20_000))
                after = rss(server.process.pid)
                line += (
                    f"; after documents for {min(count, 20_000):,} domains {after / MIB:7.1f} MiB"
                )
                print(line)
                for route, make in routes(count, pacc).items():
                    done, used, errors = load(server, make, args.seconds, args.clients)
                    wanted_errors = route == "not_found"
                    bad = [e for e in errors if not (wanted_errors and e.startswith("404"))]
                    per = used / done if done else float("nan")
                    print(
                        f"  {route:18s} {done:8,} requests, {per * 1e6:7.1f} µs CPU each, "
                        f"{1 / per if done and per else 0:8,.0f} requests/s of one core"
                        + (f"  ERRORS: {len(bad)} ({bad[:3]})" if bad else "")
                    )
                print(f"  RSS after the load {rss(server.process.pid) / MIB:7.1f} MiB")
            finally:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
