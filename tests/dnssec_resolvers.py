"""Real validators against a signed srvd, all on loopback inside a network namespace of their own.

Run by tests/test_dnssec_validators.py as ``unshare -n python3 tests/dnssec_resolvers.py CONFIG
WORKDIR QUESTIONS`` (QUESTIONS: a JSON list of [name, type]); it brings ``lo`` up, starts srvd,
Unbound as a validating resolver that trusts the DS records ``srvd dnssec ds --all`` prints
(one stub zone per apex), and a UDP proxy to srvd that corrupts the last signature of every reply
(the stub of the zones under ``bad.example``); asks every question through Unbound and with
``delv``, and prints one JSON document of what they said.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait(port: int) -> None:
    query = dns.message.make_query("_tcp.example.com", "SOA")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            dns.query.udp(query, "127.0.0.1", port=port, timeout=0.3)
            return
        except (OSError, dns.exception.Timeout):
            time.sleep(0.1)
    raise TimeoutError(f"nothing answers on port {port}")


def start_srvd(config: str, listen: str, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``srvd serve`` on ``listen``, metrics off, its output in ``log`` (the child keeps the
    file open; this process needs no handle on it)."""
    command = [sys.executable, "-m", "srvd", "serve", "-c", config, "--listen", listen]
    command += ["--metrics", "off"]
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def corrupting_proxy(listen: int, target: int) -> None:
    """Forward datagrams to srvd; flip a bit of the last RRSIG's signature in each reply (the
    octet before the OPT record, which srvd sends last and without options)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", listen))

    def run() -> None:
        while True:
            data, client = server.recvfrom(65535)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as upstream:
                upstream.settimeout(2)
                upstream.sendto(data, ("127.0.0.1", target))
                try:
                    reply = bytearray(upstream.recv(65535))
                except OSError:
                    continue
            if len(reply) > 40 and reply[11] == 1:
                reply[-12] ^= 0x01
            server.sendto(bytes(reply), client)

    threading.Thread(target=run, daemon=True).start()


def main() -> int:
    config, work, questions_file = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    questions = json.loads(Path(questions_file).read_text())
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    port, resolver, proxy = free_port(), free_port(), free_port()
    srvd = start_srvd(config, f"127.0.0.1:{port}", work / "srvd.log", env)
    unbound = None
    try:
        wait(port)
        ds = subprocess.run(
            [sys.executable, "-m", "srvd", "dnssec", "ds", "-c", config, "--all"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            cwd=ROOT,
        ).stdout.splitlines()
        (work / "anchors").write_text("".join(line + "\n" for line in ds))
        corrupting_proxy(proxy, port)
        stubs = ""
        delv_anchors = "trust-anchors {\n"
        for line in ds:
            owner, _ttl, _in, _ds, tag, algorithm, digest_type, digest = line.split()
            target = proxy if owner.endswith(".bad.example.") else port
            stubs += f'stub-zone:\n  name: "{owner}"\n  stub-addr: 127.0.0.1@{target}\n'
            delv_anchors += f'  "{owner}" static-ds {tag} {algorithm} {digest_type} "{digest}";\n'
        (work / "delv.conf").write_text(delv_anchors + "};\n")
        (work / "unbound.conf").write_text(
            "server:\n"
            "  verbosity: 1\n  interface: 127.0.0.1\n"
            f"  port: {resolver}\n  do-ip6: no\n  do-not-query-localhost: no\n"
            f'  username: ""\n  chroot: ""\n  directory: "{work}"\n  pidfile: ""\n'
            f'  use-syslog: no\n  logfile: "{work}/unbound.log"\n'
            '  module-config: "validator iterator"\n'
            f'  trust-anchor-file: "{work}/anchors"\n'
            "  val-log-level: 2\n  qname-minimisation: no\n  aggressive-nsec: no\n"
            "  harden-referral-path: no\n  prefetch: no\n" + stubs
        )
        unbound = subprocess.Popen(["unbound", "-d", "-c", str(work / "unbound.conf")])
        wait(resolver)
        results = []
        for name, rtype in questions:
            query = dns.message.make_query(name, rtype, want_dnssec=True)
            query.flags |= dns.flags.RD
            reply = dns.query.udp(query, "127.0.0.1", port=resolver, timeout=10)
            entry = {
                "name": name,
                "type": rtype,
                "rcode": dns.rcode.to_text(reply.rcode()),
                "ad": bool(reply.flags & dns.flags.AD),
                "answer": [r.to_text() for r in reply.answer],
            }
            if not name.endswith(".bad.example"):
                delv = subprocess.run(
                    [
                        "delv",
                        "@127.0.0.1",
                        "-p",
                        str(port),
                        "-a",
                        str(work / "delv.conf"),
                        f"+root={_apex(name)}",
                        name,
                        rtype,
                    ],
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                entry["delv"] = delv.stdout + delv.stderr
            results.append(entry)
        print(json.dumps(results))
        return 0
    finally:
        if unbound is not None:
            unbound.terminate()
            unbound.wait(10)
        srvd.terminate()
        srvd.wait(10)


def _apex(name: str) -> str:
    labels = name.rstrip(".").split(".")
    for i in range(len(labels) - 1, -1, -1):
        if labels[i].startswith("_"):
            return ".".join(labels[i:])
    return name


def dnsviz_main() -> int:
    """``unshare -nm python3 tests/dnssec_resolvers.py dnsviz CONFIG WORKDIR ZONE NAME...``:
    srvd on 127.0.0.1:53 (a namespace of our own), /etc/resolv.conf bind-mounted to point there,
    ``dnsviz probe`` of the zone's names against srvd (delegation given, so the parent is not
    asked), ``dnsviz print`` with srvd's DNSKEY as trusted key; prints what dnsviz printed."""
    config, work, zone, names = sys.argv[2], Path(sys.argv[3]), sys.argv[4], sys.argv[5:]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    resolv = work / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    subprocess.run(["mount", "--bind", str(resolv), "/etc/resolv.conf"], check=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    srvd = start_srvd(config, "127.0.0.1:53", work / "srvd-dnsviz.log", env)
    try:
        wait(53)
        keys = dns.query.tcp(
            dns.message.make_query(zone, "DNSKEY", want_dnssec=True), "127.0.0.1", timeout=5
        )
        (work / "trusted").write_text("".join(r.to_text() + "\n" for r in keys.answer[:1]))
        servers = "ns1.discovery.example.net=127.0.0.1,ns2.discovery.example.net=127.0.0.1"
        probe = subprocess.run(
            [
                "dnsviz",
                "probe",
                "-A",
                "-a",
                zone,
                "-N",
                f"{zone}:{servers}",
                "-x",
                f"{zone}:{servers}",
                zone,
                *names,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        printed = subprocess.run(
            ["dnsviz", "print", "-t", str(work / "trusted")],
            input=probe.stdout,
            capture_output=True,
            text=True,
            timeout=120,
        )
        print(printed.stdout + printed.stderr)
        return probe.returncode or printed.returncode
    finally:
        srvd.terminate()
        srvd.wait(10)


if __name__ == "__main__":
    sys.exit(dnsviz_main() if sys.argv[1] == "dnsviz" else main())
