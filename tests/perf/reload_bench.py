#!/usr/bin/env python3
"""Cold start, reload and reload-under-load benchmark: srvd beside NSD 4.6, run by hand.

    python3 tests/perf/reload_bench.py                 # 10k and 100k domains (about 6 minutes)
    python3 tests/perf/reload_bench.py --million       # and srvd with 1M domains
    python3 tests/perf/reload_bench.py --nsd-million   # and NSD with 1M domains (2M zone files,
                                                       # about 10 GiB of RAM and disk; slow)

Every customer domain ``custNNNNNNN.example`` uses the profile "standard" of the bundled example
configuration. srvd reads the domains from a JSON include (and, up to 100k domains, from a YAML
include for comparison); NSD serves the same records as two zone files per domain,
``_tcp.<domain>`` and ``_axigen.<domain>``, generated here and checked against ``srvd zone``.
See tests/perf/README.md.

The report goes to stdout, progress to stderr. Not a pytest module (tests/perf/conftest.py keeps
pytest out of this directory): it needs minutes, both cores and gigabytes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.zone
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "srvd" / "data" / "example.yaml"
PROFILE = "standard"
SRVD = [sys.executable, "-m", "srvd"]
MIB = 1 << 20
GIB = 1 << 30
HOST = "127.0.0.1"

# issue targets
COLD_1M_SECONDS = 15.0  # `srvd serve` with 1M domains: start until the last domain answers
COLD_1M_RSS = 512 * MIB  # and its steady RSS
READY_OF_NSD = 0.3  # 100k domains: srvd ready in at most this share of NSD's time
RELOAD_1M_SECONDS = 15.0  # 1M domains: a domain added, SIGHUP, until it answers
RELOAD_PEAK = 2.0  # and the peak RSS of srvd and its build process together, in steady RSS
P99_TARGET = 0.050

T_A, T_SOA, T_TXT, T_SRV = 1, 6, 16, 33
RCODE_NOERROR, RCODE_SERVFAIL, RCODE_NXDOMAIN, RCODE_REFUSED = 0, 2, 3, 5
QTYPES = {"A": T_A, "SOA": T_SOA, "TXT": T_TXT, "SRV": T_SRV}

# What the profile "standard" of srvd/data/example.yaml publishes, relative to the domain.
SRV_OWNERS = (
    "_imaps._tcp",
    "_submissions._tcp",
    "_imap._tcp",
    "_pop3._tcp",
    "_pop3s._tcp",
    "_submission._tcp",
    "_caldavs._tcp",
    "_carddavs._tcp",
    "_jmap._tcp",
    "_autodiscover._tcp",
    "_xmpp-client._tcp",
)
TXT_OWNERS = ("_imaps._tcp", "_caldavs._tcp", "_carddavs._tcp", "_axigen")
NX_OWNERS = ("_caldav._tcp", "_carddav._tcp", "_smtp._tcp", "x._imaps._tcp", "_none._axigen")
NODATA_OWNERS = (*SRV_OWNERS, "_tcp", "_axigen")

NSD_SERIAL = 2024010100
SOA_RDATA = "ns1.discovery.example.net. hostmaster.example.net. {serial} 3600 600 1209600 300"
TCP_ZONE = (
    "$ORIGIN _tcp.{domain}.\n"
    "$TTL 3600\n"
    f"@ IN SOA {SOA_RDATA}\n"
    "@ IN NS ns1.discovery.example.net.\n"
    "@ IN NS ns2.discovery.example.net.\n"
    "{imaps_srv}"
    '_imaps IN TXT "{imaps_txt}"\n'
    "_submissions IN SRV 0 0 465 smtp.example.net.\n"
    "_imap IN SRV 0 0 0 .\n"
    "_pop3 IN SRV 0 0 0 .\n"
    "_pop3s IN SRV 0 0 0 .\n"
    "_submission IN SRV 0 0 0 .\n"
    "_caldavs IN SRV 0 0 443 dav.example.net.\n"
    '_caldavs IN TXT "path=/dav/"\n'
    "_carddavs IN SRV 0 0 443 dav.example.net.\n"
    '_carddavs IN TXT "path=/dav/"\n'
    "_jmap IN SRV 0 0 443 jmap.example.net.\n"
    "_autodiscover IN SRV 0 0 443 autodiscover.example.net.\n"
    "_xmpp-client IN SRV 0 0 5222 xmpp.example.net.\n"
)
IMAPS_SRV = "_imaps IN SRV 0 10 993 imap1.example.net.\n_imaps IN SRV 0 5 993 imap2.example.net.\n"
# a domain with an override (--overrides): its own IMAP server in place of the profile's two
OVERRIDE_SRV = "_imaps IN SRV 0 0 993 mail.{domain}.\n"
AXIGEN_ZONE = (
    "$ORIGIN _axigen.{domain}.\n"
    "$TTL 3600\n"
    f"@ IN SOA {SOA_RDATA}\n"
    "@ IN NS ns1.discovery.example.net.\n"
    "@ IN NS ns2.discovery.example.net.\n"
    '@ IN TXT "webmail.example.net"\n'
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def domain(number: int) -> str:
    return f"cust{number:07d}.example"


def count_text(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def parse_count(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1000, "m": 1_000_000}.get(text[-1:], 1)
    return int(text[:-1] if scale > 1 else text) * scale


def free_port(kind: socket.SocketKind = socket.SOCK_DGRAM) -> int:
    """A port free for UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((HOST, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def tool(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )
    if path is None:
        sys.exit(f"reload_bench: {name} is not installed (Debian: nsd, dnsperf)")
    return path


def atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


# ---------------------------------------------------------------------------------------------
# DNS on the wire (hand-built: polling must cost nothing)


def build_query(name: str, qtype: int, qid: int) -> bytes:
    wire = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".") if label)
    return struct.pack("!6H", qid, 0, 1, 0, 0, 0) + wire + b"\0" + struct.pack("!HH", qtype, 1)


@dataclass(frozen=True)
class Reply:
    rcode: int
    ancount: int
    data: bytes


def ask(port: int, name: str, qtype: int, timeout: float = 0.25) -> Reply | None:
    qid = random.randrange(1 << 16)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(build_query(name, qtype, qid), (HOST, port))
            deadline = time.monotonic() + timeout
            while True:
                data = sock.recv(4096)
                if len(data) >= 12 and struct.unpack_from("!H", data)[0] == qid:
                    break
                sock.settimeout(max(0.001, deadline - time.monotonic()))
        except OSError:  # not listening yet (ICMP refused) or timed out
            return None
    flags, _qd, ancount = struct.unpack_from("!HHH", data, 2)
    return Reply(flags & 0x0F, ancount, data)


def has_answer(reply: Reply | None) -> bool:
    return reply is not None and reply.rcode == RCODE_NOERROR and reply.ancount > 0


def is_refused(reply: Reply | None) -> bool:
    return reply is not None and reply.rcode == RCODE_REFUSED


def srv_answers(port: int, name: str) -> Callable[[], bool]:
    """A check: _imaps._tcp.<name> SRV has answer records."""
    return lambda: has_answer(ask(port, f"_imaps._tcp.{name}", T_SRV))


def srv_refused(port: int, name: str) -> Callable[[], bool]:
    """A check: _imaps._tcp.<name> SRV is REFUSED (no zone served for the domain)."""
    return lambda: is_refused(ask(port, f"_imaps._tcp.{name}", T_SRV))


def txt_shows(port: int, name: str, text: str) -> Callable[[], bool]:
    """A check: _imaps._tcp.<name> TXT holds text."""

    def check() -> bool:
        reply = ask(port, f"_imaps._tcp.{name}", T_TXT, 0.2)
        return reply is not None and reply.rcode == RCODE_NOERROR and text.encode() in reply.data

    return check


def jmap_port(port: int, name: str) -> str:
    """The port of the SRV record at _jmap._tcp.<name>; "-" when REFUSED (no such domain)."""
    reply = ask(port, f"_jmap._tcp.{name}", T_SRV, 0.5)
    if reply is None:
        return "no reply"
    if reply.rcode == RCODE_REFUSED:
        return "-"
    for rrset in dns.message.from_wire(reply.data).answer:
        if rrset.rdtype == dns.rdatatype.SRV:
            return str(rrset[0].port)
    return dns.rcode.to_text(dns.rcode.Rcode(reply.rcode))


def imaps_txt(port: int, name: str) -> str:
    """The text of the TXT record at _imaps._tcp.<name>, or what was answered instead."""
    reply = ask(port, f"_imaps._tcp.{name}", T_TXT, 0.5)
    if reply is None:
        return "no reply"
    if reply.rcode != RCODE_NOERROR:
        return dns.rcode.to_text(dns.rcode.Rcode(reply.rcode))
    for rrset in dns.message.from_wire(reply.data).answer:
        if rrset.rdtype == dns.rdatatype.TXT:
            return "".join(s.decode() for s in rrset[0].strings)
    return "no TXT"


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    interval: float = 0.01,
    alive: Callable[[], bool] | None = None,
) -> float | None:
    """Seconds until check() holds (polled), or None after timeout."""
    started = time.monotonic()
    while True:
        if check():
            return time.monotonic() - started
        elapsed = time.monotonic() - started
        if elapsed > timeout or (alive is not None and not alive()):
            return None
        time.sleep(interval)


def canonical(data: bytes | None, authority: bool) -> str:
    """A reply in a form that ignores what may legitimately differ (RRset order, 0x20 case)."""
    if data is None:
        return "no reply"
    message = dns.message.from_wire(data)
    parts = [dns.rcode.to_text(message.rcode()), "aa" if message.flags & dns.flags.AA else "-"]
    sections = [message.answer, message.authority] if authority else [message.answer]
    for section in sections:
        lines = sorted(line.lower() for rrset in section for line in rrset.to_text().splitlines())
        parts.append(" | ".join(lines))
    return " || ".join(parts)


def snapshot(port: int, queries: Sequence[tuple[str, str]], authority: bool) -> list[str]:
    out = []
    for name, qtype in queries:
        reply = None
        for _ in range(3):
            reply = ask(port, name, QTYPES[qtype], timeout=1.0)
            if reply is not None:
                break
        out.append(canonical(reply.data if reply else None, authority))
    return out


# ---------------------------------------------------------------------------------------------
# Processes and memory


@dataclass(frozen=True)
class Memory:
    rss: int  # bytes, summed over the process tree
    pss: int  # bytes, summed over the process tree (shared pages divided among sharers)
    peak: int  # bytes, the largest VmHWM (peak RSS) of one process
    processes: int

    def text(self) -> str:
        tree = f" in {self.processes} processes" if self.processes > 1 else ""
        return (
            f"RSS {self.rss / MIB:,.0f} MiB, PSS {self.pss / MIB:,.0f} MiB, "
            f"peak RSS {self.peak / MIB:,.0f} MiB{tree}"
        )


def process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree = [pid]
    for member in tree:
        tree.extend(children.get(member, []))
    return tree


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def memory(pid: int) -> Memory:
    rss = pss = peak = count = 0
    for member in process_tree(pid):
        try:
            rss += _status_kib(member, "VmRSS")
            pss += _pss_kib(member)
            peak = max(peak, _status_kib(member, "VmHWM"))
            count += 1
        except OSError:
            continue
    return Memory(rss * 1024, pss * 1024, peak * 1024, count)


def reset_peak(pid: int) -> None:
    """Set a process's VmHWM (peak RSS) back to its RSS now (Linux: clear_refs 5)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass(frozen=True)
class Peak:
    """The memory of a process tree during one reload (bytes)."""

    rss: int  # the largest RSS summed over the tree, sampled every 5 ms
    pss: int  # the largest PSS summed over the tree, sampled every 100 ms
    own: int  # the server's own VmHWM since the reload began
    helper: int  # the largest VmHWM of another process of the tree (the build process)
    helpers: int  # the most other processes seen at once

    def text(self) -> str:
        return (
            f"peak RSS {self.rss / MIB:,.0f} MiB summed over srvd and {self.helpers} build "
            f"process{'es' if self.helpers != 1 else ''} (PSS {self.pss / MIB:,.0f} MiB; srvd's "
            f"own peak {self.own / MIB:,.0f} MiB, the build process's {self.helper / MIB:,.0f} MiB)"
        )


class PeakSampler(threading.Thread):
    """Samples the RSS (every 5 ms) and PSS (every 100 ms) summed over a process tree."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.rss = self.pss = self.helper = self.helpers = 0
        self.halt = threading.Event()
        reset_peak(pid)

    def run(self) -> None:
        samples = 0
        while not self.halt.is_set():
            members = process_tree(self.pid)
            rss = pss = 0
            for member in members:
                try:
                    rss += _status_kib(member, "VmRSS") * 1024
                    if samples % 20 == 0:
                        pss += _pss_kib(member) * 1024
                    if member != self.pid:
                        self.helper = max(self.helper, _status_kib(member, "VmHWM") * 1024)
                except OSError:
                    continue
            self.rss = max(self.rss, rss)
            self.pss = max(self.pss, pss)
            self.helpers = max(self.helpers, len(members) - 1)
            samples += 1
            self.halt.wait(0.005)

    def stop(self) -> Peak:
        self.halt.set()
        self.join()
        own = _status_kib(self.pid, "VmHWM") * 1024
        return Peak(self.rss, self.pss, own, self.helper, self.helpers)


TICK = os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds all cores have spent busy since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / TICK


def tree_cpu(pid: int) -> float:
    """CPU seconds used by a process tree (live members and the children they reaped)."""
    total = 0
    for member in process_tree(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in stat[11:15])  # utime stime cutime cstime
    return total / TICK


def _rusage(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class CpuMeter:
    """How busy the server and the rest of the machine were between start() and stop()."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.began = time.monotonic()
        self.machine = machine_busy()
        self.server = tree_cpu(pid)
        self.children = _rusage(resource.RUSAGE_CHILDREN)
        self.own = _rusage(resource.RUSAGE_SELF)
        self.load = loadavg()

    def stop(self) -> str:
        """Call once dnsperf has been reaped (its CPU time counts from then on)."""
        wall = time.monotonic() - self.began
        machine = machine_busy() - self.machine
        server = tree_cpu(self.pid) - self.server
        children = _rusage(resource.RUSAGE_CHILDREN) - self.children
        own = _rusage(resource.RUSAGE_SELF) - self.own
        rest = machine - server - children - own

        def pct(seconds: float) -> str:
            return f"{100 * seconds / wall:.0f}%"

        return (
            f"CPU over {wall:.0f} s, in % of one core: server {pct(server)}, dnsperf and the "
            f"reload commands {pct(children)}, this script {pct(own)}, the rest of the machine "
            f"(other users) {pct(rest)}; load average {self.load} -> {loadavg()}"
        )


@dataclass
class Server:
    kind: str  # "srvd" or "NSD"
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class ColdStart:
    server: str
    size: int
    fmt: str
    ready: float | None
    memory: Memory | None
    note: str = ""
    load: str = ""
    settled: Memory | None = None  # --settle seconds after ready


def wait_ready(server: Server, last: str, timeout: float) -> float | None:
    return wait_until(
        srv_answers(server.port, last),
        timeout,
        alive=server.alive,
    )


# ---------------------------------------------------------------------------------------------
# Data


@dataclass
class SrvdData:
    size: int
    directory: Path
    configs: dict[str, Path]  # "json" / "yaml" -> main config
    extra: Path  # extra.json: the domains the reload tests add and remove
    main_text: dict[str, str]
    bytes: dict[str, int]
    write_seconds: dict[str, float]
    overrides: int = 0  # domains with an override of their own (--overrides)


def override_every(percent: float) -> int:
    """Every how many domains one has an override (--overrides PERCENT); 0: none."""
    return max(1, round(100 / percent)) if percent > 0 else 0


def has_override(number: int, every: int) -> bool:
    return every > 0 and number % every == 0


def override_entry(name: str) -> dict[str, Any]:
    """A domain on the profile with an IMAP server of its own: a table of its own in srvd."""
    return {"profile": PROFILE, "imaps": [{"target": f"mail.{name}", "port": 993}]}


def yaml_line(name: str, number: int, every: int) -> str:
    if has_override(number, every):
        return f"  {name}: {{profile: {PROFILE}, imaps: [{{target: mail.{name}, port: 993}}]}}\n"
    return f"  {name}: {PROFILE}\n"


def example_parts() -> tuple[dict[str, Any], dict[str, Any]]:
    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    return example["zone"], example["profiles"][PROFILE]


def main_config(zone: dict[str, Any], profile: dict[str, Any], includes: list[str]) -> str:
    data = {
        "listen": [f"{HOST}:53"],  # replaced by --listen
        "zone": zone,
        "profiles": {PROFILE: profile},
        "include": includes,
        # every reply is charged to its rate-limiting bucket, as on a public server (loopback is
        # exempt by default), at a rate no benchmark reaches
        "rrl": {"responses_per_second": 1_000_000, "exempt": []},
    }
    head = "# written by tests/perf/reload_bench.py: the example's profile, domains included\n"
    return head + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def write_srvd_data(
    work: Path, size: int, with_yaml: bool, *, with_json: bool = True, every: int = 0
) -> SrvdData:
    """The domains as a JSON include and/or a YAML include (each with a main file of its own, in
    the order given: JSON first); every ``every``-th domain with an override (0: none)."""
    directory = work / f"srvd-{count_text(size)}"
    directory.mkdir(parents=True, exist_ok=True)
    zone, profile = example_parts()
    names = [domain(i) for i in range(1, size + 1)]
    extra = directory / "extra.json"
    extra.write_text('{"domains": {}}\n', encoding="utf-8")
    data = SrvdData(size, directory, {}, extra, {}, {}, {})
    data.overrides = size // every if every else 0

    if with_json:
        started = time.monotonic()
        path = directory / "domains.json"
        entries: dict[str, Any] = dict.fromkeys(names, PROFILE)
        for number in range(every, size + 1, every or size + 1):
            entries[domain(number)] = override_entry(domain(number))
        with path.open("w", encoding="utf-8") as out:
            json.dump({"domains": entries}, out, separators=(",", ":"))
        del entries
        data.write_seconds["json"] = time.monotonic() - started
        data.bytes["json"] = path.stat().st_size
        text = main_config(zone, profile, ["domains.json", "extra.json"])
        data.main_text["json"] = text
        data.configs["json"] = directory / "srvd-json.yaml"
        data.configs["json"].write_text(text, encoding="utf-8")

    if with_yaml:
        started = time.monotonic()
        path = directory / "domains.yaml"
        with path.open("w", encoding="utf-8") as out:
            out.write("domains:\n")
            out.writelines(yaml_line(name, i, every) for i, name in enumerate(names, 1))
        data.write_seconds["yaml"] = time.monotonic() - started
        data.bytes["yaml"] = path.stat().st_size
        text = main_config(zone, profile, ["domains.yaml", "extra.json"])
        data.main_text["yaml"] = text
        data.configs["yaml"] = directory / "srvd-yaml.yaml"
        data.configs["yaml"].write_text(text, encoding="utf-8")
    return data


def set_extra(data: SrvdData, domains: Mapping[str, Any]) -> None:
    """Rewrite extra.json (atomically) with these domains."""
    atomic_write(data.extra, json.dumps({"domains": domains}) + "\n")


def jmap_override(port: int) -> dict[str, Any]:
    """A domain on the profile whose _jmap SRV port differs: a change srvd must pick up."""
    return {"profile": PROFILE, "jmap": {"target": "jmap.example.net", "port": port}}


def nsd_zone_texts(
    name: str, serial: int = NSD_SERIAL, imaps_txt: str = "v=example", override: bool = False
) -> list[str]:
    imaps_srv = OVERRIDE_SRV.format(domain=name) if override else IMAPS_SRV
    return [
        TCP_ZONE.format(domain=name, serial=serial, imaps_txt=imaps_txt, imaps_srv=imaps_srv),
        AXIGEN_ZONE.format(domain=name, serial=serial),
    ]


def zone_file(zonedir: Path, apex: str, number: int) -> Path:
    return zonedir / f"b{number // 10000:04d}" / f"{apex}.zone"


def write_nsd_zones(zonedir: Path, size: int, every: int = 0) -> float:
    """Zone files for cust0000001 .. custN, in buckets of 10,000 domains; returns seconds.
    Every ``every``-th domain has the override of ``override_entry`` (0: none)."""
    started = time.monotonic()
    tcp = TCP_ZONE.replace("{serial}", str(NSD_SERIAL)).replace("{imaps_txt}", "v=example")
    plain = tcp.replace("{imaps_srv}", IMAPS_SRV)
    overridden = tcp.replace("{imaps_srv}", OVERRIDE_SRV)
    axigen = AXIGEN_ZONE.replace("{serial}", str(NSD_SERIAL))
    for number in range(1, size + 1):
        if number == 1 or number % 10000 == 0:
            zone_file(zonedir, "x", number).parent.mkdir(parents=True, exist_ok=True)
        name = domain(number)
        bucket = zonedir / f"b{number // 10000:04d}"
        template = overridden if has_override(number, every) else plain
        with open(bucket / f"_tcp.{name}.zone", "w", encoding="ascii") as out:
            out.write(template.replace("{domain}", name))
        with open(bucket / f"_axigen.{name}.zone", "w", encoding="ascii") as out:
            out.write(axigen.replace("{domain}", name))
    return time.monotonic() - started


def zone_records(text: str) -> set[str]:
    """Every record of one or more master-file zones, SOA serial set to 0."""
    records: set[str] = set()
    for chunk in text.split("$ORIGIN ")[1:]:
        origin = chunk.split()[0]
        zone = dns.zone.from_text("$ORIGIN " + chunk, origin=origin, relativize=False)
        for name, ttl, rdata in zone.iterate_rdatas():
            if rdata.rdtype == dns.rdatatype.SOA:
                rdata = rdata.replace(serial=0)
            records.add(f"{name} {ttl} {dns.rdatatype.to_text(rdata.rdtype)} {rdata}")
    return records


def check_zone_template(config: Path, nsd_checkzone: str, work: Path, every: int = 0) -> str:
    """The NSD zone files hold exactly what srvd serves for a domain (and for the first domain
    with an override), and NSD accepts them."""
    text = _check_zone_template(config, nsd_checkzone, work, 1, False)
    if every:
        _check_zone_template(config, nsd_checkzone, work, every, True)
        text += "; so does the override template"
    return text


def _check_zone_template(
    config: Path, nsd_checkzone: str, work: Path, number: int, override: bool
) -> str:
    name = domain(number)
    result = subprocess.run(
        [*SRVD, "zone", name, "-c", str(config)], capture_output=True, text=True, check=True
    )
    ours = nsd_zone_texts(name, override=override)
    theirs = zone_records(result.stdout)
    mine = zone_records("".join(ours))
    if theirs != mine:
        only_srvd = "\n  ".join(sorted(theirs - mine))
        only_nsd = "\n  ".join(sorted(mine - theirs))
        sys.exit(
            f"reload_bench: the NSD zone template differs from `srvd zone {name}`:\n"
            f"only srvd:\n  {only_srvd}\nonly the template:\n  {only_nsd}"
        )
    for apex, text in zip((f"_tcp.{name}", f"_axigen.{name}"), ours, strict=True):
        path = work / f"check-{apex}.zone"
        path.write_text(text, encoding="ascii")
        subprocess.run([nsd_checkzone, apex, str(path)], capture_output=True, text=True, check=True)
        path.unlink()
    return f"{len(mine)} records per domain, identical to `srvd zone {name}`, nsd-checkzone OK"


def make_queries(size: int, count: int, rng: random.Random) -> list[tuple[str, str]]:
    """80% SRV on existing names, 5% TXT, 10% NXDOMAIN, 5% A (NODATA); mixed case."""
    out = []
    for _ in range(count):
        name = domain(rng.randint(1, size))
        draw = rng.random()
        if draw < 0.80:
            owner, qtype = rng.choice(SRV_OWNERS), "SRV"
        elif draw < 0.85:
            owner, qtype = rng.choice(TXT_OWNERS), "TXT"
        elif draw < 0.95:
            owner, qtype = rng.choice(NX_OWNERS), rng.choice(("SRV", "TXT"))
        else:
            owner, qtype = rng.choice(NODATA_OWNERS), "A"
        text = f"{owner}.{name}"
        mixed = "".join(c.upper() if c.isalpha() and rng.random() < 0.5 else c for c in text)
        out.append((mixed, qtype))
    return out


# ---------------------------------------------------------------------------------------------
# srvd


def start_srvd(config: Path, directory: Path, tag: str) -> Server:
    port = free_port()
    logfile = directory / f"srvd-{tag}.log"
    with logfile.open("wb") as out:
        process = subprocess.Popen(
            [
                *SRVD,
                "serve",
                "-c",
                str(config),
                "--listen",
                f"{HOST}:{port}",
                "--pidfile",
                str(directory / "srvd.pid"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
    return Server("srvd", process, port, logfile)


def srvd_reload_command(data: SrvdData, config: Path) -> tuple[int, float, str]:
    started = time.monotonic()
    result = subprocess.run(
        [*SRVD, "reload", "-c", str(config), "--pidfile", str(data.directory / "srvd.pid")],
        capture_output=True,
        text=True,
    )
    return result.returncode, time.monotonic() - started, (result.stdout + result.stderr).strip()


def srvd_log_reloads(server: Server) -> tuple[list[float], int]:
    """srvd's own figures: seconds of each successful reload build, number of failed reloads."""
    text = server.log.read_text(errors="replace")
    seconds = [float(m) for m in re.findall(r"reloaded in ([0-9.]+) s", text)]
    failed = len(re.findall(r"reload failed; still serving", text))
    return seconds, failed


# ---------------------------------------------------------------------------------------------
# NSD


@dataclass
class NsdSetup:
    directory: Path
    zonedir: Path
    keys: Path
    nsd: str
    control: str


def nsd_conf(setup: NsdSetup, tmp: Path, port: int, control_port: int, size: int) -> str:
    lines = [
        "server:",
        f"  ip-address: {HOST}@{port}",
        "  do-ip6: no",
        '  database: ""',
        f'  zonelistfile: "{tmp}/zone.list"',
        f'  pidfile: "{tmp}/nsd.pid"',
        f'  xfrdfile: "{tmp}/xfrd.state"',
        f'  xfrdir: "{tmp}/xfr"',
        f'  zonesdir: "{setup.zonedir}"',
        '  username: ""',
        '  chroot: ""',
        "  server-count: 1",
        "  zonefiles-check: yes",
        "  verbosity: 1",
        "remote-control:",
        "  control-enable: yes",
        f"  control-interface: {HOST}",
        f"  control-port: {control_port}",
        f'  server-key-file: "{setup.keys}/nsd_server.key"',
        f'  server-cert-file: "{setup.keys}/nsd_server.pem"',
        f'  control-key-file: "{setup.keys}/nsd_control.key"',
        f'  control-cert-file: "{setup.keys}/nsd_control.pem"',
        "pattern:",
        '  name: "added"',
        '  zonefile: "added/%s.zone"',
    ]
    head = "\n".join(lines) + "\n"
    zones = []
    for number in range(1, size + 1):
        name = domain(number)
        bucket = f"b{number // 10000:04d}"
        for apex in (f"_tcp.{name}", f"_axigen.{name}"):
            zones.append(f'zone:\n  name: "{apex}"\n  zonefile: "{bucket}/{apex}.zone"\n')
    return head + "".join(zones)


@dataclass
class RunningNsd:
    server: Server
    conf: Path
    control_conf: Path
    tmp: Path


def start_nsd(setup: NsdSetup, size: int) -> RunningNsd:
    tmp = setup.directory / f"run-{count_text(size)}"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "xfr").mkdir(parents=True)
    port = free_port()
    control_port = free_port()
    conf = tmp / "nsd.conf"
    text = nsd_conf(setup, tmp, port, control_port, size)
    conf.write_text(text, encoding="utf-8")
    # nsd-control reads its configuration file on every call; give it the same file without
    # the 2N zone: clauses, or each call parses them all (measured: see the report)
    control_conf = tmp / "nsd-control.conf"
    control_conf.write_text(text.split("zone:\n", 1)[0], encoding="utf-8")
    logfile = tmp / "nsd.log"
    with logfile.open("wb") as out:
        process = subprocess.Popen(
            [setup.nsd, "-d", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT
        )
    return RunningNsd(Server("NSD", process, port, logfile), conf, control_conf, tmp)


def nsd_control(setup: NsdSetup, running: RunningNsd, *args: str, full: bool = False) -> float:
    """Run nsd-control; returns its wall time. full: with the complete nsd.conf."""
    conf = running.conf if full else running.control_conf
    started = time.monotonic()
    result = subprocess.run(
        [setup.control, "-c", str(conf), *args], capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0 or "error" in result.stdout.lower():
        raise RuntimeError(f"nsd-control {' '.join(args)}: {result.stdout}{result.stderr}")
    return time.monotonic() - started


# ---------------------------------------------------------------------------------------------
# Load: dnsperf with reloads


@dataclass
class ReloadEvent:
    command: float  # seconds the trigger took (srvd reload / nsd-control)
    note: str = ""
    expect: str | None = None  # what the observer should see once this reload is served
    started: float = 0.0  # time.monotonic() of the trigger
    at: float = 0.0  # seconds after dnsperf started
    visible: float | None = None  # seconds from the trigger until the change answered


class Poller(threading.Thread):
    """Watches what the server answers for one name, 50 times a second, during a load run."""

    def __init__(self, observe: Callable[[], str], interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.observe = observe
        self.interval = interval
        self.samples: list[tuple[float, str]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.samples.append((time.monotonic(), self.observe()))
            self.halt.wait(self.interval)

    def visible(self, events: list[ReloadEvent]) -> None:
        """When each reload's change (a value no other reload shows) was first seen."""
        for event in events:
            if event.expect is not None:
                event.visible = next(
                    (
                        when - event.started
                        for when, seen in self.samples
                        if when >= event.started and seen == event.expect
                    ),
                    None,
                )


@dataclass
class LoadResult:
    label: str
    command: list[str]
    sent: int = 0
    completed: int = 0
    lost: int = 0
    qps: float = 0.0
    rcodes: str = ""
    latencies: list[float] = field(default_factory=list)
    servfail: int = 0
    timeouts: int = 0
    events: list[ReloadEvent] = field(default_factory=list)
    unchanged: str = ""
    after: str = ""
    memory_before: Memory | None = None
    memory_after: Memory | None = None
    cpu: str = ""

    def windows(self, per: int) -> list[float]:
        """p99 of each run of `per` consecutive completions (one second at the paced rate)."""
        out = []
        for start in range(0, len(self.latencies) - per // 2, per):
            chunk = sorted(self.latencies[start : start + per])
            out.append(chunk[max(0, math.ceil(0.99 * len(chunk)) - 1)])
        return out

    def percentile(self, q: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def parse_dnsperf(text: str, result: LoadResult) -> None:
    def number(label: str) -> float:
        match = re.search(rf"{label}:\s+([0-9.]+)", text)
        return float(match.group(1)) if match else float("nan")

    result.sent = int(number("Queries sent"))
    result.completed = int(number("Queries completed"))
    result.lost = int(number("Queries lost"))
    result.qps = number("Queries per second")
    match = re.search(r"Response codes:\s*(.*)", text)
    result.rcodes = match.group(1).strip() if match else ""
    for line in text.splitlines():
        if not line.startswith("> "):
            continue
        fields = line.split()
        if fields[1] == "T":
            result.timeouts += 1
            continue
        if fields[1] == "SERVFAIL":
            result.servfail += 1
        try:
            result.latencies.append(float(fields[-1]))
        except ValueError:
            continue


def run_load(
    label: str,
    server: Server,
    queries: Path,
    args: argparse.Namespace,
    out: Path,
    trigger: Callable[[int], ReloadEvent],
    observe: Callable[[], str] | None = None,
) -> LoadResult:
    command = [
        "dnsperf",
        "-s",
        HOST,
        "-p",
        str(server.port),
        "-d",
        str(queries),
        "-Q",
        str(args.qps),
        "-l",
        str(args.load_seconds),
        "-t",
        "2",
        "-v",
    ]
    result = LoadResult(label, command, memory_before=memory(server.process.pid))
    meter = CpuMeter(server.process.pid)
    log(f"{label}: dnsperf {args.load_seconds} s at {args.qps} qps, {args.reloads} reloads")
    poller = Poller(observe) if observe is not None else None
    if poller is not None:
        poller.start()
    with out.open("wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    started = time.monotonic()
    try:
        for k in range(args.reloads):
            delay = started + args.interval * (k + 1) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            began = time.monotonic()
            event = trigger(k)
            event.started, event.at = began, began - started
            result.events.append(event)
        process.wait(timeout=args.load_seconds + 60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if poller is not None:
            poller.halt.set()
            poller.join()
    if poller is not None:
        poller.visible(result.events)
    result.cpu = meter.stop()
    parse_dnsperf(out.read_text(errors="replace"), result)
    result.memory_after = memory(server.process.pid)
    return result


# ---------------------------------------------------------------------------------------------
# The benchmark


@dataclass
class ReloadTiming:
    server: str
    size: int
    how: str
    seconds: list[float]
    note: str = ""
    peaks: list[Peak] = field(default_factory=list)  # one per reload, srvd only
    steady: Memory | None = None  # after the reloads, once the old index is gone

    def text(self) -> str:
        if not self.seconds:
            return "did not happen"
        median = statistics.median(self.seconds)
        spread = (
            f" (min {min(self.seconds):.2f}, max {max(self.seconds):.2f}, n={len(self.seconds)})"
            if len(self.seconds) > 1
            else ""
        )
        return f"{median:.2f} s{spread}"


@dataclass
class Report:
    args: argparse.Namespace
    lines: list[str] = field(default_factory=list)
    cold: list[ColdStart] = field(default_factory=list)
    reloads: list[ReloadTiming] = field(default_factory=list)
    reload_memory: list[str] = field(default_factory=list)
    loads: dict[str, LoadResult] = field(default_factory=dict)
    agreement: str = ""

    def add(self, line: str = "") -> None:
        self.lines.append(line)


def cold_start_srvd(
    data: SrvdData, fmt: str, report: Report, timeout: float, settle: float = 0.0
) -> tuple[Server | None, ColdStart]:
    log(f"srvd {count_text(data.size)} ({fmt} include): cold start")
    load = loadavg()
    started = time.monotonic()
    server = start_srvd(data.configs[fmt], data.directory, fmt)
    ready_after = wait_ready(server, domain(data.size), timeout)
    ready = None if ready_after is None else time.monotonic() - started
    if ready is None:
        note = "did not answer" + ("" if server.alive() else " (exited)")
        log(f"srvd did not become ready:\n{server.tail()}")
        row = ColdStart("srvd", data.size, fmt, None, None, note, load)
        server.stop()
        report.cold.append(row)
        return None, row
    row = ColdStart("srvd", data.size, fmt, ready, memory(server.process.pid), "", load)
    report.cold.append(row)
    log(f"  ready after {ready:.2f} s; {row.memory.text() if row.memory else ''}")
    if settle > 0:
        time.sleep(settle)
        row.settled = memory(server.process.pid)
        log(f"  {settle:g} s later: {row.settled.text()}")
    return server, row


def srvd_reload_timings(
    server: Server, data: SrvdData, report: Report, repeats: int, timeout: float, fmt: str = "json"
) -> None:
    """Reload timings, each with the peak memory of srvd and its build process."""
    config = data.configs[fmt]
    added: list[str] = []
    sighup: list[float] = []
    command: list[float] = []
    command_own: list[float] = []
    peaks: dict[str, list[Peak]] = {"sighup": [], "command": []}
    for r in range(repeats):
        for how in ("sighup", "command"):
            name = domain(data.size + 1 + len(added))
            added.append(name)
            set_extra(data, dict.fromkeys(added, PROFILE))
            sampler = PeakSampler(server.process.pid)
            sampler.start()
            started = time.monotonic()
            if how == "sighup":
                os.kill(server.process.pid, signal.SIGHUP)
            else:
                rc, took, output = srvd_reload_command(data, config)
                if rc != 0:
                    log(f"  srvd reload failed ({rc}): {output}")
                command_own.append(took)
            seen = wait_until(
                srv_answers(server.port, name),
                timeout,
                alive=server.alive,
            )
            took = time.monotonic() - started
            if seen is not None:
                (sighup if how == "sighup" else command).append(took)
            # the build process is gone once the reload is published; the old index goes in slices
            wait_until(lambda: len(process_tree(server.process.pid)) == 1, timeout)
            time.sleep(0.5)
            peak = sampler.stop()
            peaks[how].append(peak)
            log(
                f"  reload {r + 1}/{repeats} via {how}: {name} answers after "
                + (f"{took:.2f} s" if seen is not None else "NEVER")
                + f"; {peak.text()}"
            )
    builds, _failed = srvd_log_reloads(server)
    own = f"srvd's log: builds of {statistics.median(builds):.2f} s (median)" if builds else ""
    time.sleep(3.0)
    steady = memory(server.process.pid)
    report.reloads.append(
        ReloadTiming("srvd", data.size, "SIGHUP", sighup, own, peaks["sighup"], steady)
    )
    note = (
        f"the command itself (check + signal) took {statistics.median(command_own):.2f} s"
        if command_own
        else ""
    )
    report.reloads.append(
        ReloadTiming("srvd", data.size, "srvd reload", command, note, peaks["command"], steady)
    )
    report.reload_memory.append(
        f"srvd {count_text(data.size)} after {2 * repeats} reloads: {steady.text()}"
    )
    for how, rows in peaks.items():
        for i, peak in enumerate(rows, 1):
            report.reload_memory.append(
                f"  reload {i} via {how}: {peak.text()}; {peak.rss / steady.rss:.2f}x the RSS after"
            )
    set_extra(data, {})
    os.kill(server.process.pid, signal.SIGHUP)  # back to the N domains
    wait_until(
        srv_refused(server.port, added[-1]),
        timeout,
        alive=server.alive,
    )


def srvd_loads(
    server: Server,
    data: SrvdData,
    queries: Path,
    sample: list[tuple[str, str]],
    report: Report,
    args: argparse.Namespace,
    fmt: str = "json",
) -> list[str]:
    """The two load runs (good reloads, then a broken configuration); returns srvd's answers."""
    config = data.configs[fmt]
    # reload k serves exactly one extra domain, X for even k and Y for odd k, whose _jmap port is
    # 1000 + k: every reload adds a domain, removes one, and shows a value of its own
    pair = (domain(data.size + 500), domain(data.size + 501))
    base = 0

    def observe() -> str:
        return "/".join(jmap_port(server.port, name) for name in pair)

    def expected(k: int) -> str:
        return "/".join(str(1000 + k) if i == k % 2 else "-" for i in range(2))

    answers = snapshot(server.port, sample, authority=False)
    for method in ("command", "sighup") if args.reload_with == "both" else (args.reload_with,):

        def good(k: int, method: str = method, base: int = base) -> ReloadEvent:
            n = base + k
            name, other = pair[n % 2], pair[1 - n % 2]
            set_extra(data, {name: jmap_override(1000 + n)})
            note = f"{name} with _jmap port {1000 + n}, {other} removed"
            took = 0.0
            if method == "sighup":
                os.kill(server.process.pid, signal.SIGHUP)
            else:
                rc, took, output = srvd_reload_command(data, config)
                if rc != 0:
                    note = f"srvd reload exit {rc}: {output}"
            return ReloadEvent(took, note, expected(n))

        before_builds = len(srvd_log_reloads(server)[0])
        how = "`srvd reload`" if method == "command" else "SIGHUP"
        good_run = run_load(
            f"srvd: reloads under load, via {how}",
            server,
            queries,
            args,
            data.directory / f"dnsperf-good-{method}.txt",
            good,
            observe,
        )
        builds = srvd_log_reloads(server)[0][before_builds:]
        good_run.after = (
            f"srvd logged {len(builds)} successful reloads, builds {min(builds):.2f}-"
            f"{max(builds):.2f} s (median {statistics.median(builds):.2f} s)"
            if builds
            else "srvd logged no successful reload"
        )
        report.loads[f"srvd good {method}"] = good_run
        base += args.reloads
        set_extra(data, {})  # back to the N domains
        os.kill(server.process.pid, signal.SIGHUP)
        wait_until(lambda: observe() == "-/-", 60)
        time.sleep(2.0)

    # a broken main file: `srvd reload` refuses to signal; a bare SIGHUP must change nothing
    good_text = data.main_text[fmt]
    broken = [
        good_text + f"# broken for reload {k}\nbroken: [unclosed, {k}\n"
        for k in range(args.reloads)
    ]
    atomic_write(config, broken[0])
    rc, _took, output = srvd_reload_command(data, config)
    refused = f"`srvd reload` on the broken file: exit {rc}, " + (
        "did not signal" if rc != 0 and "not signalled" in output else f"output: {output!r}"
    )
    before = snapshot(server.port, sample, authority=True)
    failed_before = srvd_log_reloads(server)[1]

    def bad(k: int) -> ReloadEvent:
        atomic_write(config, broken[k])
        os.kill(server.process.pid, signal.SIGHUP)
        return ReloadEvent(0.0, "SIGHUP with a YAML syntax error")

    try:
        bad_run = run_load(
            "srvd: broken configuration under load",
            server,
            queries,
            args,
            data.directory / "dnsperf-broken.txt",
            bad,
        )
        time.sleep(1.0)
        after = snapshot(server.port, sample, authority=True)
    finally:
        atomic_write(config, good_text)
    same = sum(a == b for a, b in zip(before, after, strict=True))
    bad_run.unchanged = f"{same}/{len(before)} sampled answers identical before and after"
    failed = srvd_log_reloads(server)[1] - failed_before
    bad_run.after = f"{refused}; srvd logged {failed} failed reloads (of {args.reloads} SIGHUPs)"
    report.loads["srvd broken"] = bad_run
    return answers


def nsd_reload_timings(
    setup: NsdSetup, running: RunningNsd, size: int, report: Report, repeats: int, timeout: float
) -> None:
    port = running.server.port
    added_dir = setup.zonedir / "added"
    added_dir.mkdir(exist_ok=True)
    addzone: list[float] = []
    reload: list[float] = []
    full_conf: list[float] = []
    short_conf: list[float] = []
    for r in range(repeats):
        name = f"new{r:04d}-{count_text(size)}.example"
        for apex, text in zip(
            (f"_tcp.{name}", f"_axigen.{name}"), nsd_zone_texts(name), strict=True
        ):
            (added_dir / f"{apex}.zone").write_text(text, encoding="ascii")
        started = time.monotonic()
        nsd_control(setup, running, "addzone", f"_tcp.{name}", "added")
        nsd_control(setup, running, "addzone", f"_axigen.{name}", "added")
        seen = wait_until(srv_answers(port, name), timeout)
        if seen is not None:
            addzone.append(time.monotonic() - started)
        # change an existing zone file, then `nsd-control reload` (checks every zone's mtime)
        target = domain(1 + r)
        marker = f"v=reload{r}"
        zone_file(setup.zonedir, f"_tcp.{target}", 1 + r).write_text(
            nsd_zone_texts(target, NSD_SERIAL + 1 + r, marker)[0], encoding="ascii"
        )
        started = time.monotonic()
        nsd_control(setup, running, "reload")
        seen = wait_until(txt_shows(port, target, marker), timeout)
        if seen is not None:
            reload.append(time.monotonic() - started)
        full_conf.append(nsd_control(setup, running, "status", full=True))
        short_conf.append(nsd_control(setup, running, "status"))
        log(f"  NSD round {r + 1}/{repeats}: addzone {addzone[-1:]}, reload {reload[-1:]}")
    report.reloads.append(
        ReloadTiming("NSD", size, "nsd-control addzone", addzone, "2 zones for one new domain")
    )
    report.reloads.append(
        ReloadTiming(
            "NSD",
            size,
            "nsd-control reload",
            reload,
            f"one zone file changed. `nsd-control status` takes "
            f"{statistics.median(full_conf):.2f} s with the full {2 * size}-zone nsd.conf (it "
            f"parses every zone: clause), {statistics.median(short_conf):.2f} s with a copy "
            "without them, which the runs here use",
        )
    )
    for r in range(repeats):  # put the changed zones back
        target = domain(1 + r)
        zone_file(setup.zonedir, f"_tcp.{target}", 1 + r).write_text(
            nsd_zone_texts(target, NSD_SERIAL + 100 + r)[0], encoding="ascii"
        )
    nsd_control(setup, running, "reload")
    wait_until(txt_shows(port, domain(1), "v=example"), timeout)
    report.reload_memory.append(
        f"NSD {count_text(size)} after {2 * repeats + 1} reloads: "
        f"{memory(running.server.process.pid).text()}"
    )


def nsd_loads(
    setup: NsdSetup,
    running: RunningNsd,
    size: int,
    queries: Path,
    sample: list[tuple[str, str]],
    report: Report,
    args: argparse.Namespace,
) -> list[str]:
    port = running.server.port
    number = 7
    target = domain(number)
    path = zone_file(setup.zonedir, f"_tcp.{target}", number)

    def good(k: int) -> ReloadEvent:
        marker = f"v=reload{k}"
        path.write_text(nsd_zone_texts(target, NSD_SERIAL + 200 + k, marker)[0], encoding="ascii")
        took = nsd_control(setup, running, "reload")
        return ReloadEvent(took, f"TXT now {marker}", marker)

    answers = snapshot(port, sample, authority=False)
    good_run = run_load(
        "NSD: reloads under load, via nsd-control reload",
        running.server,
        queries,
        args,
        running.tmp / "dnsperf-good.txt",
        good,
        lambda: imaps_txt(port, target),
    )
    report.loads["NSD good"] = good_run
    path.write_text(nsd_zone_texts(target, NSD_SERIAL + 300)[0], encoding="ascii")
    nsd_control(setup, running, "reload")
    wait_until(txt_shows(port, target, "v=example"), 30)

    # the same with a zone file broken by a syntax error
    extra_sample = [(f"{owner}.{target}", "SRV") for owner in SRV_OWNERS]
    before = snapshot(port, [*sample, *extra_sample], authority=True)
    good_text = path.read_text(encoding="ascii")

    def bad(k: int) -> ReloadEvent:
        path.write_text(good_text + f"_broken{k} IN SRV 0 0 (unclosed\n", encoding="ascii")
        took = nsd_control(setup, running, "reload")
        return ReloadEvent(took, "zone file with a syntax error")

    try:
        bad_run = run_load(
            "NSD: broken zone file under load",
            running.server,
            queries,
            args,
            running.tmp / "dnsperf-broken.txt",
            bad,
        )
        time.sleep(1.0)
        after = snapshot(port, [*sample, *extra_sample], authority=True)
    finally:
        path.write_text(good_text, encoding="ascii")
    same = sum(a == b for a, b in zip(before, after, strict=True))
    target_same = sum(
        a == b
        for a, b in zip(before[-len(extra_sample) :], after[-len(extra_sample) :], strict=True)
    )
    bad_run.unchanged = (
        f"{same}/{len(before)} sampled answers identical (the broken zone's own names: "
        f"{target_same}/{len(extra_sample)}"
        + (f"; after: {after[-1][:60]!r}" if target_same != len(extra_sample) else "")
        + ")"
    )
    report.loads["NSD broken"] = bad_run
    return answers


# ---------------------------------------------------------------------------------------------
# Output


def fmt_seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.1f} ms"


def fmt_mib(value: int | None) -> str:
    return "—" if value is None else f"{value / MIB:,.0f} MiB"


def table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

    return [line(header), "-+-".join("-" * w for w in widths), *(line(r) for r in rows)]


def load_lines(result: LoadResult, qps: int) -> list[str]:
    out = [f"{result.label}:  {' '.join(result.command)}"]
    out.append(
        f"  sent {result.sent:,}, completed {result.completed:,}, lost {result.lost:,} "
        f"({result.timeouts:,} timeouts in -v); {result.qps:,.0f} qps; rcodes {result.rcodes}"
    )
    out.append(
        f"  latency p50 {fmt_ms(result.percentile(0.5))}, p99 {fmt_ms(result.percentile(0.99))}, "
        f"p99.9 {fmt_ms(result.percentile(0.999))}, max {fmt_ms(result.percentile(1.0))}; "
        f"SERVFAIL {result.servfail}"
    )
    windows = result.windows(qps)
    if windows:
        worst = sorted(windows)[-3:][::-1]
        out.append(
            f"  p99 of each 1-s window (by completion order at the paced rate): "
            f"{sum(w > P99_TARGET for w in windows)} of {len(windows)} over 50 ms; worst "
            + ", ".join(fmt_ms(w) for w in worst)
        )
    for i, event in enumerate(result.events, 1):
        visible = (
            f", visible after {event.visible:.2f} s"
            if event.visible is not None
            else ", never seen (the next change was written before this reload ran: coalesced)"
            if event.expect is not None
            else ""
        )
        took = f", trigger took {event.command:.2f} s" if event.command else ""
        out.append(f"  reload {i:2d} at {event.at:5.1f} s{took}{visible}: {event.note}")
    if result.memory_before and result.memory_after:
        out.append(f"  memory before: {result.memory_before.text()}")
        out.append(f"  memory after:  {result.memory_after.text()}")
    if result.cpu:
        out.append(f"  {result.cpu}")
    if result.after:
        out.append(f"  {result.after}")
    if result.unchanged:
        out.append(f"  {result.unchanged}")
    return out


def verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "NO")


def summary(report: Report, args: argparse.Namespace) -> list[str]:
    rows: list[list[str]] = []

    def cold(server: str, size: int, fmt: str) -> ColdStart | None:
        return next(
            (
                c
                for c in report.cold
                if c.server == server and c.size == size and c.fmt in (fmt, "zone files")
            ),
            None,
        )

    sizes = sorted({c.size for c in report.cold})
    for size in sizes:
        big = size >= 1_000_000
        n = cold("NSD", size, "zone files")
        nsd_missing = "not run" + (" (--nsd-million)" if big and not args.nsd_million else "")
        for fmt in ("json", "yaml"):
            s = cold("srvd", size, fmt)
            if s is None:
                continue
            label = f"cold start {count_text(size)} ({'JSON' if fmt == 'json' else 'YAML'})"
            ratio = s.ready / n.ready if s.ready is not None and n and n.ready else None
            target, meets = "", ""
            if big:
                target = f"≤ {COLD_1M_SECONDS:.0f} s"
                meets = verdict(s.ready is not None and s.ready <= COLD_1M_SECONDS)
            elif ratio is not None and size >= 100_000:
                target = f"≤ {READY_OF_NSD}x NSD"
                meets = verdict(ratio <= READY_OF_NSD)
            rows.append(
                [
                    f"{label}: ready",
                    target,
                    (fmt_seconds(s.ready) if s.ready is not None else s.note)
                    + (f" ({ratio:.2f}x NSD)" if ratio is not None else ""),
                    fmt_seconds(n.ready) if n else nsd_missing,
                    meets,
                ]
            )
            mem = s.memory
            nmem = n.memory if n else None
            steady = s.settled or mem
            rows.append(
                [
                    f"{label}: RSS / PSS when ready",
                    "",
                    f"{fmt_mib(mem.rss if mem else None)} / {fmt_mib(mem.pss if mem else None)}",
                    (
                        f"{fmt_mib(nmem.rss)} / {fmt_mib(nmem.pss)} ({nmem.processes} procs)"
                        if nmem
                        else nsd_missing
                    ),
                    "",
                ]
            )
            if s.settled is not None or big:
                rows.append(
                    [
                        f"{label}: steady RSS ({args.settle:g} s after ready)",
                        f"≤ {COLD_1M_RSS / MIB:.0f} MiB" if big else "",
                        fmt_mib(steady.rss if steady else None),
                        "",
                        verdict(steady is not None and steady.rss <= COLD_1M_RSS) if big else "",
                    ]
                )
    for size in sorted({r.size for r in report.reloads}):
        big = size >= 1_000_000
        srvd_rows = [r for r in report.reloads if r.server == "srvd" and r.size == size]
        nsd_rows = [r for r in report.reloads if r.server == "NSD" and r.size == size]
        for i in range(max(len(srvd_rows), len(nsd_rows))):
            s_row = srvd_rows[i] if i < len(srvd_rows) else None
            n_row = nsd_rows[i] if i < len(nsd_rows) else None
            rows.append(
                [
                    f"reload {count_text(size)}: change → answers",
                    f"≤ {RELOAD_1M_SECONDS:.0f} s" if big and s_row else "",
                    f"{s_row.how}: {s_row.text()}" if s_row else "",
                    f"{n_row.how}: {n_row.text()}" if n_row else "",
                    verdict(bool(s_row.seconds) and max(s_row.seconds) <= RELOAD_1M_SECONDS)
                    if big and s_row
                    else "",
                ]
            )
            if s_row and s_row.peaks and s_row.steady:
                most = max(s_row.peaks, key=lambda peak: peak.rss)
                factor = most.rss / s_row.steady.rss
                rows.append(
                    [
                        f"reload {count_text(size)} ({s_row.how}): peak RSS, srvd + build",
                        f"≤ {RELOAD_PEAK:g}x steady" if big else "",
                        f"{fmt_mib(most.rss)} = {factor:.2f}x the {fmt_mib(s_row.steady.rss)} after"
                        f" (PSS peak {fmt_mib(most.pss)})",
                        "",
                        verdict(factor <= RELOAD_PEAK) if big else "",
                    ]
                )
    ngood = report.loads.get("NSD good")
    bad, nbad = report.loads.get("srvd broken"), report.loads.get("NSD broken")
    size_text = count_text(args.reload_size)

    def lost(r: LoadResult | None) -> str:
        return "—" if r is None else f"{r.lost:,} of {r.sent:,}"

    def lat(r: LoadResult | None) -> str:
        if r is None:
            return "—"
        return (
            f"{fmt_ms(r.percentile(0.5))} / {fmt_ms(r.percentile(0.99))} / "
            f"{fmt_ms(r.percentile(1.0))}"
        )

    def slow(r: LoadResult | None) -> str:
        if r is None:
            return "—"
        windows = r.windows(args.qps)
        over = sum(p > P99_TARGET for p in windows)
        return f"{over} of {len(windows)}"

    def seen(r: LoadResult | None) -> str:
        if r is None:
            return "—"
        shown = [e.visible for e in r.events if e.visible is not None]
        median = f", visible after {statistics.median(shown):.2f} s median" if shown else ""
        return f"{len(shown)}/{len(r.events)} seen{median}"

    variants = [
        (method, report.loads.get(f"srvd good {method}"), how)
        for method, how in (("command", "srvd reload"), ("sighup", "SIGHUP"))
    ]
    first = True
    for _method, good, how in variants:
        if good is None:
            continue
        other = ngood if first else None
        tag = f"{size_text} under load, {how}"
        p99 = good.percentile(0.99)
        rows += [
            [f"{tag}: lost", "0", lost(good), lost(other), verdict(good.lost == 0)],
            [
                f"{tag}: p50 / p99 / max",
                "p99 < 50 ms",
                lat(good),
                lat(other),
                verdict(p99 is not None and p99 < P99_TARGET),
            ],
            [
                f"{tag}: 1-s windows with p99 > 50 ms",
                "",
                slow(good),
                slow(other),
                "",
            ],
            [
                f"{tag}: SERVFAIL",
                "",
                str(good.servfail),
                str(other.servfail) if other else "—",
                "",
            ],
            [f"{tag}: changes seen", "", seen(good), seen(other), ""],
        ]
        first = False
    if bad or nbad:
        rows += [
            [
                "bad config under load: lost",
                "0",
                lost(bad),
                lost(nbad),
                verdict(bad.lost == 0) if bad else "",
            ],
            [
                "bad config under load: SERVFAIL",
                "0",
                str(bad.servfail) if bad else "—",
                str(nbad.servfail) if nbad else "—",
                verdict(bad.servfail == 0) if bad else "",
            ],
            [
                "bad config under load: p50 / p99 / max",
                "",
                lat(bad),
                lat(nbad),
                "",
            ],
            [
                "bad config under load: answers unchanged",
                "yes",
                bad.unchanged.split(" sampled")[0] if bad else "—",
                nbad.unchanged.split(" sampled")[0] if nbad else "—",
                verdict(bad.unchanged.split("/")[0] == bad.unchanged.split("/")[1].split()[0])
                if bad and bad.unchanged
                else "",
            ],
        ]
    return table(rows, ["measure", "issue target", "srvd", "NSD 4.6", "srvd meets"])


# ---------------------------------------------------------------------------------------------


def source_state() -> str:
    """Which srvd was measured: the git commit and any uncommitted changes under srvd/."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--short", "--", "srvd"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    changed = [line[3:] for line in dirty if line.strip()]
    return f"{head}" + (f"; uncommitted changes in {', '.join(changed)}" if changed else "")


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="srvd against NSD: cold start, reload time, reloads under dnsperf load."
    )
    parser.add_argument(
        "--sizes", default="10k,100k", help="domain counts for cold starts (default 10k,100k)"
    )
    parser.add_argument("--million", action="store_true", help="also srvd with 1M domains")
    parser.add_argument(
        "--nsd-million",
        action="store_true",
        help="also NSD with 1M domains: 2M zone files (~9 GiB of disk, 10+ minutes to write) and, "
        "going by 100k, about 13 GiB of PSS (23 GiB of RSS summed) and 4-8 minutes to load",
    )
    parser.add_argument("--no-nsd", action="store_true", help="srvd only")
    parser.add_argument(
        "--formats",
        default="json,yaml",
        help="the include formats srvd reads, in this order; the first one available at a size "
        "is used for its reload timings and load runs (default json,yaml)",
    )
    parser.add_argument(
        "--yaml-up-to",
        default="100k",
        help="write the YAML include only for sizes up to this (default 100k; 1M: also at 1M)",
    )
    parser.add_argument(
        "--overrides",
        type=float,
        default=0.0,
        metavar="PERCENT",
        help="this share of the domains overrides the profile's imaps with a server of its own "
        "(`{profile: standard, imaps: [{target: mail.<domain>, port: 993}]}`; NSD's zone files "
        "follow); default 0",
    )
    parser.add_argument(
        "--no-load", action="store_true", help="no reloads under dnsperf load (srvd and NSD)"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=5.0,
        help="seconds after srvd is ready before its RSS is measured again (default 5)",
    )
    parser.add_argument(
        "--reload-size", default="100k", help="domains for the reload tests (default 100k)"
    )
    parser.add_argument("--load-seconds", type=int, default=40, help="dnsperf -l (default 40)")
    parser.add_argument("--qps", type=int, default=5000, help="dnsperf -Q (default 5000)")
    parser.add_argument("--reloads", type=int, default=10, help="reloads per load run (10)")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between reloads (3)")
    parser.add_argument(
        "--reload-with",
        choices=("both", "command", "sighup"),
        default="both",
        help="how the good reloads under load are triggered: `srvd reload` (checks the "
        "configuration in a second process, then signals), a bare SIGHUP, or one run of each "
        "(default)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="reload-time measurements (3)")
    parser.add_argument("--timeout", type=float, default=600, help="give up waiting after (s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", help="keep the generated data here (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="do not delete the temp dir")
    args = parser.parse_args(argv)
    args.size_list = sorted({parse_count(s) for s in args.sizes.split(",") if s.strip()})
    args.reload_size = parse_count(args.reload_size)
    args.yaml_up_to = parse_count(args.yaml_up_to)
    args.format_list = [f.strip() for f in args.formats.split(",") if f.strip()]
    if not args.format_list or set(args.format_list) - {"json", "yaml"}:
        parser.error("--formats: json and/or yaml")
    args.every = override_every(args.overrides)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    began = time.monotonic()
    rng = random.Random(args.seed)
    random.seed(args.seed)
    for name in ("dnsperf",) + (() if args.no_nsd else ("nsd", "nsd-control", "nsd-checkzone")):
        tool(name)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="srvd-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    report = Report(args)
    srvd_sizes = sorted(
        set(args.size_list) | {args.reload_size} | ({10**6} if args.million else set())
    )
    nsd_sizes = (
        []
        if args.no_nsd
        else sorted(
            set(args.size_list) | {args.reload_size} | ({10**6} if args.nsd_million else set())
        )
    )
    servers: list[Server] = []
    try:
        # 1. data
        report.add(f"srvd: {source_state()}")
        report.add(
            f"Python {sys.version.split()[0]}; {os.cpu_count()} cores; "
            f"{Path('/proc/meminfo').read_text().split()[1]} kB RAM"
        )
        report.add("")
        report.add("== Data ==")
        datasets: dict[int, SrvdData] = {}
        for size in srvd_sizes:
            log(f"writing srvd data for {count_text(size)} domains")
            data = write_srvd_data(
                work,
                size,
                "yaml" in args.format_list and size <= args.yaml_up_to,
                with_json="json" in args.format_list,
                every=args.every,
            )
            data.configs = {f: data.configs[f] for f in args.format_list if f in data.configs}
            datasets[size] = data
            files = ", ".join(
                f"{fmt.upper()} {data.bytes[fmt] / MIB:.1f} MiB in {data.write_seconds[fmt]:.2f} s"
                for fmt in data.bytes
            )
            overrides = f"; {data.overrides:,} domains with an override" if data.overrides else ""
            report.add(f"srvd {count_text(size)} domains: {files}{overrides}")
        nsd: NsdSetup | None = None
        if nsd_sizes:
            keys = work / "nsd-keys"
            keys.mkdir(exist_ok=True)
            subprocess.run(
                [tool("nsd-control-setup"), "-d", str(keys)], capture_output=True, check=True
            )
            nsd = NsdSetup(
                work / "nsd", work / "nsd" / "zones", keys, tool("nsd"), tool("nsd-control")
            )
            nsd.zonedir.mkdir(parents=True, exist_ok=True)
            first = datasets[srvd_sizes[0]]
            check = check_zone_template(
                next(iter(first.configs.values())), tool("nsd-checkzone"), work, args.every
            )
            log(f"NSD zone template: {check}")
            log(f"writing NSD zone files for {count_text(max(nsd_sizes))} domains")
            seconds = write_nsd_zones(nsd.zonedir, max(nsd_sizes), args.every)
            report.add(
                f"NSD: {2 * max(nsd_sizes):,} zone files for {count_text(max(nsd_sizes))} domains "
                f"in {seconds:.1f} s; template: {check}"
            )
        queries = make_queries(args.reload_size, max(args.qps * args.load_seconds, 10000), rng)
        queries_path = work / "queries.txt"
        queries_path.write_text("".join(f"{n} {t}\n" for n, t in queries), encoding="ascii")
        sample = rng.sample(queries, 500)
        mix: dict[str, int] = {}
        for _name, qtype in queries:
            mix[qtype] = mix.get(qtype, 0) + 1
        report.add(
            f"queries: {len(queries):,} over {count_text(args.reload_size)} domains "
            f"(80% SRV existing, 5% TXT, 10% NXDOMAIN, 5% A/NODATA; mixed case): "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(mix.items()))
        )

        # 2-4. srvd
        srvd_answers: list[str] = []
        for size in srvd_sizes:
            data = datasets[size]
            for i, fmt in enumerate(data.configs):
                server, _row = cold_start_srvd(data, fmt, report, args.timeout, args.settle)
                if server is None:
                    continue
                servers.append(server)
                try:
                    if i == 0 and (size == args.reload_size or size >= 10**6):
                        log(f"srvd {count_text(size)}: reload timings ({fmt})")
                        srvd_reload_timings(
                            server,
                            data,
                            report,
                            args.repeats if size < 10**6 else 2,
                            args.timeout,
                            fmt,
                        )
                    if i == 0 and size == args.reload_size and not args.no_load:
                        srvd_answers = srvd_loads(
                            server, data, queries_path, sample, report, args, fmt
                        )
                finally:
                    server.stop()
                    servers.remove(server)

        # NSD
        if nsd is not None:
            for size in nsd_sizes:
                log(f"NSD {count_text(size)}: cold start ({2 * size:,} zones)")
                load = loadavg()
                started = time.monotonic()
                running = start_nsd(nsd, size)
                servers.append(running.server)
                try:
                    ready = wait_ready(running.server, domain(size), args.timeout)
                    if ready is None:
                        log(f"NSD did not become ready:\n{running.server.tail()}")
                        report.cold.append(
                            ColdStart("NSD", size, "zone files", None, None, "no", load)
                        )
                        continue
                    took = time.monotonic() - started
                    mem = memory(running.server.process.pid)
                    report.cold.append(ColdStart("NSD", size, "zone files", took, mem, "", load))
                    log(f"  ready after {took:.2f} s; {mem.text()}")
                    if size == args.reload_size or size >= 10**6:
                        log(f"NSD {count_text(size)}: reload timings")
                        nsd_reload_timings(
                            nsd,
                            running,
                            size,
                            report,
                            args.repeats if size < 10**6 else 2,
                            args.timeout,
                        )
                    if size == args.reload_size and not args.no_load:
                        nsd_answers = nsd_loads(
                            nsd, running, size, queries_path, sample, report, args
                        )
                        if srvd_answers:
                            same = sum(
                                a == b for a, b in zip(srvd_answers, nsd_answers, strict=True)
                            )
                            report.agreement = (
                                f"srvd and NSD give the same rcode, AA flag and answer records "
                                f"for {same}/{len(sample)} sampled queries"
                            )
                finally:
                    running.server.stop()
                    servers.remove(running.server)
    finally:
        for server in servers:
            server.stop()

    # 5. report
    out = report.lines
    report.add("")
    report.add("== Cold start (process start until the LAST domain answers) ==")
    rows = [
        [
            c.server,
            count_text(c.size),
            c.fmt,
            fmt_seconds(c.ready) if c.ready is not None else c.note,
            fmt_mib(c.memory.rss) if c.memory else "—",
            fmt_mib(c.memory.pss) if c.memory else "—",
            fmt_mib(c.memory.peak) if c.memory else "—",
            fmt_mib(c.settled.rss) if c.settled else "—",
            str(c.memory.processes) if c.memory else "—",
            c.load,
        ]
        for c in report.cold
    ]
    out += table(
        rows,
        [
            "server",
            "domains",
            "source",
            "ready",
            "RSS",
            "PSS",
            "peak RSS",
            f"RSS {args.settle:g} s later",
            "processes",
            "loadavg before",
        ],
    )
    report.add("(NSD: RSS summed over its processes counts pages shared after fork() twice; PSS")
    report.add(" does not. peak RSS is the largest VmHWM of one process.)")
    report.add("")
    report.add("== Reload time (change written, then trigger; until the change answers) ==")
    for r in report.reloads:
        report.add(
            f"{r.server} {count_text(r.size)} via {r.how}: {r.text()}"
            + (f"; {r.note}" if r.note else "")
        )
    for line in report.reload_memory:
        report.add(line)
    report.add("")
    report.add("== Reloads under load ==")
    for key in ("srvd good command", "srvd good sighup", "srvd broken", "NSD good", "NSD broken"):
        if key in report.loads:
            out += load_lines(report.loads[key], args.qps)
            report.add("")
    if report.agreement:
        report.add(report.agreement)
        report.add("")
    report.add("== Summary: srvd and NSD side by side, with the issue's targets ==")
    out += summary(report, args)
    report.add("")
    elapsed = time.monotonic() - began
    report.add(
        f"total run time {elapsed / 60:.1f} min; {os.cpu_count()} cores; data in {work}"
        + ("" if args.workdir or args.keep else " (deleted)")
    )
    print("\n".join(out))
    if not args.workdir and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
