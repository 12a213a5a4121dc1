#!/usr/bin/env python3
"""What signing the catalog zone costs (docs/dnssec.md, "The catalog zone"): run by hand.

    python3 tests/perf/catalog_sign_bench.py --domains 2000        # seconds
    python3 tests/perf/catalog_sign_bench.py --domains 100k
    python3 tests/perf/catalog_sign_bench.py --domains 1M          # minutes: both cores

srvd with N domains (one zone each, ``_tcp.custNNNNNNN.example``: N catalog members), the
catalog, TSIG and ``dnssec:`` (a new key, ``--algorithm`` 13 or 15). Then, over TCP with TSIG:

1. a first AXFR of the catalog (srvd makes the members' canonical order, then signs every
   member's PTR and NSEC as it streams the messages);
2. a second AXFR (the order made: signing alone);
3. unless ``--no-ixfr``: one domain added, SIGHUP, then an IXFR from the first serial.

For each: wall time, srvd's CPU (user + system from /proc/PID/stat), its peak RSS during the
transfer (VmHWM, reset before), the signatures srvd made (``srvd_dnssec_signatures_total``) per
member, the octets and messages received, and the longest a UDP query waited for its answer
while the transfer ran (queries every 10 ms: the reactor is never held for long). srvd's
answer-signature cache (``srvd_dnssec_cache_entries``) is read before and after: the catalog's
signatures must not go into it. The client reads the raw messages (no parsing but the header and
the closing SOA), so the client's cost stays out of srvd's figures; ``--verify`` also transfers
with dnspython and validates every RRSIG (small N only).

``--order-only`` measures, in this process and without a server, what the members' canonical
order (srvd.index.catalog_dnssec.MemberOrder) costs at N members: its CPU, its longest step (how
long it holds the reactor at most), the memory it keeps and its peak while being made
(tracemalloc, which slows it: the CPU figure comes from a second run without it).

Loopback only. The report goes to stdout, progress to stderr. Not a pytest module.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset
import dns.tsigkeyring
import dns.xfr
import dns.zone

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from perf import reload_bench as rb  # noqa: E402
from perf.secondary_bench import cpu_seconds, write_extra  # noqa: E402
from srvd.wire.dnssec import generate_key  # noqa: E402

HOST = "127.0.0.1"
CATALOG = "catalog.example.net"
KEY_NAME = "bench-key"
SECRET = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
SRVD = [sys.executable, "-m", "srvd", "serve"]


def log(message: str) -> None:
    rb.log(message)


def write_config(directory: Path, count: int, algorithm: int) -> Path:
    (directory / "xfr.secret").write_text(SECRET + "\n", encoding="ascii")
    (directory / "csk.pem").write_bytes(generate_key(algorithm))
    names = {rb.domain(i): "standard" for i in range(count)}
    (directory / "domains.json").write_text(json.dumps({"domains": names}), encoding="utf-8")
    write_extra(directory, {})
    config = directory / "srvd.yaml"
    config.write_text(
        f"""\
zone:
  nameservers: [ns1.discovery.example.net, ns2.discovery.example.net]
transfer:
  keys:
    - {{name: {KEY_NAME}, algorithm: hmac-sha256, secret_file: xfr.secret}}
  allow:
    - {{address: 127.0.0.1/32, key: {KEY_NAME}}}
catalog: {CATALOG}
dnssec:
  key: csk.pem
profiles:
  standard:
    imaps: [{{target: imap1.example.net, port: 993, weight: 5}},
            {{target: imap2.example.net, port: 993, weight: 1}}]
    submissions: {{target: smtp.example.net, port: 465}}
include: [domains.json, extra.json]
""",
        encoding="utf-8",
    )
    return config


def presigned(port: int) -> None:
    """Wait until srvd has signed ahead what its zones' negative answers need (it does so while
    no query comes, srvd.server.presign): its signatures would count with the transfer's."""
    deadline = time.monotonic() + 900
    while metric(port, "srvd_dnssec_presign_pending_zones") and time.monotonic() < deadline:
        time.sleep(0.5)


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=30) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def soa(port: int) -> dns.rdtypes.ANY.SOA.SOA:
    reply = dns.query.udp(dns.message.make_query(CATALOG, "SOA"), HOST, port=port, timeout=5)
    return reply.answer[0][0]  # type: ignore[no-any-return]


class Prober(threading.Thread):
    """A UDP query every 10 ms while a transfer runs: the longest wait for an answer."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stopping = threading.Event()
        self.longest = 0.0
        self.lost = 0
        self.sent = 0

    def run(self) -> None:
        query = dns.message.make_query(f"_imaps._tcp.{rb.domain(0)}", "SRV").to_wire()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5.0)
            while not self.stopping.is_set():
                started = time.monotonic()
                sock.sendto(query, (HOST, self.port))
                self.sent += 1
                try:
                    sock.recv(4096)
                except TimeoutError:
                    self.lost += 1
                self.longest = max(self.longest, time.monotonic() - started)
                self.stopping.wait(0.01)

    def stop(self) -> None:
        self.stopping.set()
        self.join()


@dataclass
class Transfer:
    label: str
    wall: float
    cpu: float
    peak_mib: float
    rss_mib: float
    signatures: float
    octets: int
    messages: int
    records: int
    longest_wait: float
    probes: int
    lost: int


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise EOFError("the transfer ended early")
        data += chunk
    return bytes(data)


def transfer(
    srvd: subprocess.Popen[bytes], port: int, metrics: int, label: str, serial: int | None
) -> Transfer:
    """AXFR (``serial`` None) or IXFR from ``serial`` of the catalog, measured."""
    keyring = dns.tsigkeyring.from_text({KEY_NAME: ("hmac-sha256", SECRET)})
    if serial is None:
        query = dns.message.make_query(CATALOG, "AXFR")
    else:
        query = dns.message.make_query(CATALOG, "IXFR")
        query.authority.append(
            dns.rrset.from_text(CATALOG + ".", 0, "IN", "SOA", f". . {serial} 0 0 0 0")
        )
    query.use_tsig(keyring, keyname=KEY_NAME)
    wire = query.to_wire()
    closing = soa(port).to_wire()  # the SOA rdata: it ends the transfer (RFC 5936, RFC 1995)
    assert closing is not None
    mark = struct.pack("!H", len(closing)) + closing
    old_mark = b""
    if serial is not None:  # an IXFR starts its deletions with the old SOA
        old = closing[:-20] + struct.pack("!I", serial) + closing[-16:]
        old_mark = struct.pack("!H", len(old)) + old
    needed = 2  # the new SOA: first and last of an AXFR; an IXFR has it once more
    seen = 0
    signatures = metric(metrics, "srvd_dnssec_signatures_total")
    rb.reset_peak(srvd.pid)
    prober = Prober(port)
    prober.start()
    cpu = cpu_seconds(srvd.pid)
    started = time.monotonic()
    octets = messages = records = 0
    with socket.create_connection((HOST, port), timeout=120) as sock:
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        while True:
            size = struct.unpack("!H", read_exactly(sock, 2))[0]
            message = read_exactly(sock, size)
            octets += size + 2
            messages += 1
            if message[3] & 0x0F:
                raise RuntimeError(f"rcode {message[3] & 0x0F} from srvd")
            records += struct.unpack_from("!H", message, 6)[0]
            seen += message.count(mark)
            if messages == 1 and serial is not None:
                if records == 1:  # current already: the SOA alone
                    break
                needed = 3 if old_mark in message else 2  # IXFR, or the AXFR form
            if seen >= needed:
                break
    wall = time.monotonic() - started
    cpu = cpu_seconds(srvd.pid) - cpu
    prober.stop()
    made = metric(metrics, "srvd_dnssec_signatures_total") - signatures
    return Transfer(
        label,
        wall,
        cpu,
        status_kib(srvd.pid, "VmHWM") / 1024,
        status_kib(srvd.pid, "VmRSS") / 1024,
        made,
        octets,
        messages,
        records,
        prober.longest,
        prober.sent,
        prober.lost,
    )


def verify(port: int) -> str:
    """dnspython transfers the catalog (TSIG) and validates every RRSIG (small N only)."""
    from dnssec_oracle import dnssec_module

    keyring = dns.tsigkeyring.from_text({KEY_NAME: ("hmac-sha256", SECRET)})
    zone = dns.zone.Zone(CATALOG, relativize=False)
    query, _ = dns.xfr.make_query(zone, serial=None, keyring=keyring)
    dns.query.inbound_xfr(HOST, zone, query, port=port, timeout=600)
    origin = dns.name.from_text(CATALOG)
    keys = {origin: zone.find_rrset(origin, dns.rdatatype.DNSKEY)}
    dnssec = dnssec_module()
    checked = 0
    for name, node in zone.nodes.items():
        for rdataset in node:
            if rdataset.rdtype != dns.rdatatype.RRSIG:
                sigs = node.find_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, rdataset.rdtype)
                dnssec.validate((name, rdataset), (name, sigs), keys, now=time.time())
                checked += 1
    return f"{checked} RRsets validated (dnspython)"


def order_only(count: int) -> int:
    """The member order alone, in process (see the module's doc)."""
    import gc
    import tracemalloc

    from srvd.index.catalog_dnssec import MemberOrder
    from srvd.wire.names import to_wire

    apexes = {to_wire(f"_tcp.{rb.domain(i)}"): None for i in range(count)}  # the index's keys
    figures = []
    for traced in (False, True):
        gc.collect()
        if traced:
            tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0] if traced else 0
        cpu = time.process_time()
        order = MemberOrder(apexes)
        steps, longest = 0, 0.0
        while True:
            started = time.perf_counter()
            ready = order.step()
            longest = max(longest, time.perf_counter() - started)
            steps += 1
            if ready:
                break
        cpu = time.process_time() - cpu
        if traced:
            kept, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            figures.append(
                f"kept {(kept - base) / 2**20:.1f} MiB, peak {(peak - base) / 2**20:.1f} MiB"
            )
        else:
            figures.append(
                f"CPU {cpu:.2f} s in {steps} steps, longest step {1000 * longest:.1f} ms"
            )
        del order
    print(f"member order, {count} members: " + "; ".join(figures))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=rb.parse_count, default=2000)
    parser.add_argument("--algorithm", type=int, choices=(13, 15), default=13)
    parser.add_argument("--no-ixfr", action="store_true", help="skip the reload and the IXFR")
    parser.add_argument("--verify", action="store_true", help="validate with dnspython too")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--order-only", action="store_true", help="the member order alone")
    args = parser.parse_args()
    count = args.domains
    if args.order_only:
        return order_only(count)
    work = Path(tempfile.mkdtemp(prefix="srvd-catalog-sign-"))
    port, metrics = rb.free_port(), rb.free_port()
    config = write_config(work, count, args.algorithm)
    report: list[str] = []
    srvd_log = (work / "srvd.log").open("wb")
    listen = ["--listen", f"{HOST}:{port}", "--metrics", f"{HOST}:{metrics}"]
    srvd = subprocess.Popen(
        [*SRVD, "-c", str(config), *listen, "--http", "off", "--control", "off"],
        stdout=srvd_log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        log(
            f"srvd: {count} domains ({count} catalog members), catalog signed, alg {args.algorithm}"
        )
        started = time.monotonic()
        deadline = started + 600
        while True:
            try:
                first_serial = int(soa(port).serial)
                break
            except (OSError, dns.exception.DNSException):
                if srvd.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((work / "srvd.log").read_text()) from None
                time.sleep(0.2)
        report.append(f"members: {count}   algorithm: {args.algorithm}")
        report.append(
            f"srvd ready: {time.monotonic() - started:.1f} s, "
            f"RSS {status_kib(srvd.pid, 'VmRSS') / 1024:.0f} MiB"
        )
        presigned(metrics)
        cache = metric(metrics, "srvd_dnssec_cache_entries")
        runs = []
        for label in ("AXFR 1 (order made, then signing)", "AXFR 2 (signing alone)"):
            log(label)
            runs.append(transfer(srvd, port, metrics, label, None))
        if not args.no_ixfr:
            log("reload: one domain added, then IXFR from the first serial")
            write_extra(work, {"newcustomer.example": "standard"})
            later = time.time() + 5
            os.utime(config, (later, later))
            srvd.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 600
            while int(soa(port).serial) == first_serial:
                if time.monotonic() > deadline:
                    raise RuntimeError("the reload did not change the catalog's serial")
                time.sleep(0.2)
            presigned(metrics)
            runs.append(transfer(srvd, port, metrics, "IXFR (one member added)", first_serial))
        after = metric(metrics, "srvd_dnssec_cache_entries")
        report.append(f"answer-signature cache entries: {cache:.0f} before, {after:.0f} after")
        report.append("")
        report.append(
            f"{'transfer':36} {'wall s':>8} {'CPU s':>8} {'CPU/member':>11} {'sigs':>9} "
            f"{'sigs/member':>11} {'MiB':>8} {'msgs':>7} {'peak RSS':>9} {'max wait':>9}"
        )
        for run in runs:
            report.append(
                f"{run.label:36} {run.wall:8.2f} {run.cpu:8.2f} "
                f"{1e6 * run.cpu / max(count, 1):9.1f}us {run.signatures:9.0f} "
                f"{run.signatures / max(count, 1):11.3f} {run.octets / 2**20:8.1f} "
                f"{run.messages:7d} {run.peak_mib:7.0f}Mi {1000 * run.longest_wait:7.1f}ms"
            )
            if run.lost:
                report.append(f"  {run.lost} of {run.probes} UDP probes got no answer in 5 s")
        report.append(f"RSS after: {status_kib(srvd.pid, 'VmRSS') / 1024:.0f} MiB")
        if args.verify:
            log("dnspython: transfer and validate")
            report.append(verify(port))
        print("\n".join(report))
        return 0
    finally:
        if srvd.poll() is None:
            srvd.terminate()
            try:
                srvd.wait(timeout=60)
            except subprocess.TimeoutExpired:
                srvd.kill()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
