#!/usr/bin/env python3
"""CPU per answer and queries per second for four traffic mixes, sustained rate, latency, start
time and memory: srvd beside NSD 4.6.

    python3 tests/perf/bench.py                 # 1k and 100k domains (about 35 minutes)
    python3 tests/perf/bench.py --million       # and srvd alone with 1M domains
    python3 tests/perf/bench.py --quick         # smoke run: 1k domains, 3 s runs (3-4 minutes)
    python3 tests/perf/bench.py --mixes repeated,edns-options   # some of the mixes only
    python3 tests/perf/bench.py --py-spy        # and a py-spy profile of srvd under load
    python3 tests/perf/bench.py --dnssec --sizes 100k --million   # DNSSEC signing costs

For each size N, the customer domains ``custNNNNNNN.example`` use the profile "standard" of the
bundled example configuration: srvd reads them from a JSON include, NSD from two zone files per
domain (the data and helpers of reload_bench.py, whose zone template is checked against
``srvd zone``). NSD starts first and alone (its time to ready), then srvd with metrics on,
srvd with ``--metrics off`` and the Python floor (floor.py); all then stay up, idle but for the
one dnsperf is loading. Each traffic mix (``repeated``: the same lower-case queries again and
again; ``0x20``: their names with every letter's case drawn anew per line; ``new-names``: a
random-subdomain flood, every query a new NXDOMAIN name; ``edns-options``: the repeated queries as
a resolver sends them, with a client cookie per resolver and padding) is measured in rounds that
go round the four servers in turn (NSD, srvd, srvd metrics off, floor; then the other way
round), so that drift in the machine's speed (other tenants, hypervisor steal) falls on all
alike; the srvd/NSD ratios are the medians of the per-round ratios. Every figure is reported
beside NSD's from the same run, with the ratio and the issue's target. See tests/perf/README.md.

The report goes to stdout, progress to stderr. The exit status is 0 whatever the figures (CI
reports them, never fails on them); it is non-zero only when the benchmark itself cannot run.
Not a pytest module (tests/perf/conftest.py keeps pytest out of this directory).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dns.flags
import dns.message

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perf import reload_bench as rb

HOST = rb.HOST
MIB = rb.MIB
LOSS_LIMIT = 0.001  # "sustained": under 0.1% of the queries sent lost...
PACE_LIMIT = 0.98  # ...and at least 98% of the offered rate actually answered per second

# the targets, as srvd/NSD ratios
CPU_100K = 1.1  # srvd's server CPU per answer <= 1.1x NSD's at 100k domains, on every mix...
CPU_100K_REPEATED = 1.0  # ...and <= 1.0x NSD's on the repeated mix
CPU_1M = 1.2  # srvd at 1M domains: <= 1.2x NSD's CPU per answer at 100k (same mix, same run)
SUSTAINED_100K = 0.9  # srvd sustained qps >= 0.9x NSD at 100k domains
RSS_100K = 0.25  # srvd RSS <= 0.25x NSD at 100k domains
READY_100K = 0.3  # srvd ready in <= 0.3x NSD's time at 100k domains
METRICS_COST = 5.0  # metrics cost < 5% of the unlimited qps

# the traffic mixes, in the order they run (see write_mixes)
MIXES = ("repeated", "0x20", "new-names", "edns-options")
EDNS_PAYLOAD = 1232  # edns-options: the UDP payload size resolvers announce (DNS flag day 2020)
PAD_BLOCK = 128  # edns-options: queries padded to a multiple of 128 octets (RFC 8467)
OPT_COOKIE, OPT_PADDING = 10, 12

DISTURBED = 20.0  # % of a core taken by other processes or the hypervisor: repeat the run


def log(message: str) -> None:
    rb.log(message)


# ---------------------------------------------------------------------------------------------
# One dnsperf run


def udp_counters() -> dict[str, int]:
    """The kernel's UDP counters (/proc/net/snmp), machine-wide."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    udp = [line[1:] for line in lines if line[:1] == ["Udp:"]]
    if len(udp) < 2:
        return {}
    return {key: int(value) for key, value in zip(udp[0], udp[1], strict=False)}


def socket_drops(port: int) -> int:
    """Datagrams dropped by the kernel at the UDP sockets bound to this port (/proc/net/udp)."""
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 13 and int(fields[1].rsplit(":", 1)[1], 16) == port:
            total += int(fields[-1])
    return total


def socket_buffers(port: int) -> str:
    """The receive and send buffer sizes of the UDP sockets on this port, as ss shows them."""
    ss = shutil.which("ss")
    if ss is None:
        return "unknown (no ss)"
    result = subprocess.run(
        [ss, "-u", "-a", "-m", "-n", f"sport = :{port}"], capture_output=True, text=True
    )
    sizes = re.findall(r"rb(\d+),.*?tb(\d+)", result.stdout)
    return ", ".join(f"receive {int(r) >> 10:,} KiB, send {int(t) >> 10:,} KiB" for r, t in sizes)


def steal_seconds() -> float:
    """CPU seconds the hypervisor gave to others while this machine wanted them (all cores)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / rb.TICK if len(fields) > 8 else 0.0


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Run:
    """One dnsperf run: its figures, and how busy the server and the machine were meanwhile."""

    label: str
    offered: int | None  # -Q rate; None: unlimited
    result: rb.LoadResult
    wall: float = 0.0
    server_cpu: float = 0.0  # % of one core
    client_cpu: float = 0.0  # dnsperf, % of one core
    other_cpu: float = 0.0  # everything else on the machine, % of one core (steal excluded)
    steal_cpu: float = 0.0  # taken by the hypervisor, % of one core
    rcvbuf_errors: int = 0  # kernel UDP receive buffer overflows (machine-wide) during the run
    server_drops: int = 0  # of those, at the server's own socket(s)
    average_latency: float | None = None
    server_alive: bool = True
    verbose: bool = False  # -v: per-query latencies (the fixed-load run)
    disturbed: list[str] = field(default_factory=list)  # earlier tries, repeated

    @property
    def qps(self) -> float:
        return self.result.qps

    @property
    def cpu_per_query(self) -> float | None:
        """Server CPU seconds per answered query (robust to other load, unlike qps)."""
        done = self.result.completed
        if not done or not self.server_alive:
            return None
        return self.server_cpu / 100 * self.wall / done

    @property
    def interference(self) -> float:
        """% of a core that other processes and the hypervisor (steal) took during the run."""
        return self.other_cpu + self.steal_cpu

    @property
    def loss(self) -> float:
        sent = self.result.sent
        return self.result.lost / sent if sent else 1.0

    def sustained(self) -> bool:
        """Under 0.1% lost, and answered at (nearly) the offered rate."""
        if self.offered is None or not self.server_alive or math.isnan(self.qps):
            return False
        return self.loss < LOSS_LIMIT and self.qps >= PACE_LIMIT * self.offered

    def text(self) -> str:
        r = self.result
        offered = "unlimited" if self.offered is None else f"offered {self.offered:,} qps"
        latency = ""
        if r.latencies:
            latency = (
                f"; latency p50 {fmt_ms(r.percentile(0.5))}, p99 {fmt_ms(r.percentile(0.99))}, "
                f"p99.9 {fmt_ms(r.percentile(0.999))}, max {fmt_ms(r.percentile(1.0))}"
            )
        elif self.average_latency is not None:
            latency = f"; average latency {fmt_ms(self.average_latency)}"
        verdict = ""
        if self.offered is not None and not self.verbose:
            verdict = " -> sustained" if self.sustained() else " -> NOT sustained"
        dead = "" if self.server_alive else "; THE SERVER EXITED"
        if self.interference > DISTURBED:
            dead += "; DISTURBED by other processes or steal"
        if self.disturbed:
            dead += f" (repeated; disturbed tries: {'; '.join(self.disturbed)})"
        return (
            f"{self.label} ({offered}): {self.qps:,.0f} qps answered, sent {r.sent:,}, "
            f"{fmt_us(self.cpu_per_query)} server CPU per answer, "
            f"lost {r.lost:,} ({100 * self.loss:.3f}%){verdict}{latency}; CPU % of a core: "
            f"server {self.server_cpu:.0f}, dnsperf {self.client_cpu:.0f}, "
            f"other {self.other_cpu:.0f}, steal {self.steal_cpu:.0f}; UDP receive buffer "
            f"overflows: {self.server_drops:,} at the server's socket, "
            f"{max(0, self.rcvbuf_errors - self.server_drops):,} elsewhere (dnsperf){dead}"
        )


def dnsperf(
    server: rb.Server,
    queries: Path,
    seconds: float,
    label: str,
    out: Path,
    *,
    rate: int | None = None,
    outstanding: int = 100,
    verbose: bool = False,
    retries: int = 0,
    passes: int = 0,
    binary: bool = False,
) -> Run:
    """dnsperf -c 8 -t 1 against the server; rate None: as fast as it answers. ``binary``: the
    file holds wire-format messages (dnsperf -B), sent as they are but for the ID.

    A run during which other processes and the hypervisor (steal) took more than DISTURBED % of a
    core is repeated, up to ``retries`` times; the disturbed tries are noted in ``disturbed``.
    """
    disturbed: list[str] = []
    while True:
        run = dnsperf_once(
            server, queries, seconds, label, out, rate, outstanding, verbose, passes, binary
        )
        run.disturbed = disturbed
        if run.interference <= DISTURBED or len(disturbed) >= retries or not run.server_alive:
            return run
        disturbed.append(
            f"{run.qps:,.0f} qps with other {run.other_cpu:.0f}%, steal {run.steal_cpu:.0f}%"
        )
        log(
            f"  {label}: other processes {run.other_cpu:.0f}%, steal {run.steal_cpu:.0f}% "
            "of a core: repeating"
        )
        time.sleep(2.0)


def warm_up(
    server: rb.Server, queries: QueryFile, passes: int, args: argparse.Namespace, out: Path
) -> Run:
    """Before the measured runs: the query file ``passes`` times as fast as the server answers
    (so that the runs measure a server that has been up a while, whatever it learns from its
    traffic: srvd kept answers per query until 02a4146), or ``--warmup`` seconds when ``passes``
    is 0."""
    what = f"{queries.what}, {passes} passes" if passes else f"{queries.what}, {args.warmup:g} s"
    return dnsperf(
        server,
        queries.path,
        args.warmup,
        f"warm-up ({what})",
        out,
        passes=passes,
        binary=queries.binary,
    )


def dnsperf_once(
    server: rb.Server,
    queries: Path,
    seconds: float,
    label: str,
    out: Path,
    rate: int | None,
    outstanding: int,
    verbose: bool,
    passes: int = 0,
    binary: bool = False,
) -> Run:
    """One dnsperf run: ``seconds`` long, or ``passes`` times through the query file."""
    command = [
        rb.tool("dnsperf"),
        "-s",
        HOST,
        "-p",
        str(server.port),
        "-d",
        str(queries),
        *(["-n", str(passes)] if passes else ["-l", f"{seconds:g}"]),
        "-c",
        "8",
        "-t",
        "1",
        "-q",
        str(outstanding),
    ]
    if rate is not None:
        command += ["-Q", str(rate)]
    if verbose:
        command.append("-v")
    if binary:
        command.append("-B")
    result = rb.LoadResult(label, ["dnsperf", *command[1:]])
    pid = server.process.pid
    began = time.monotonic()
    machine, busy, children, own = rb.machine_busy(), rb.tree_cpu(pid), children_cpu(), own_cpu()
    udp, drops, steal = udp_counters(), socket_drops(server.port), steal_seconds()
    with out.open("wb") as handle:
        subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, timeout=seconds + 120)
    wall = time.monotonic() - began
    run = Run(label, rate, result, wall, verbose=verbose)
    run.server_alive = server.alive()
    server_used = rb.tree_cpu(pid) - busy if run.server_alive else 0.0
    client_used = children_cpu() - children
    stolen = steal_seconds() - steal
    rest = rb.machine_busy() - machine - stolen - server_used - client_used - (own_cpu() - own)
    run.server_cpu = 100 * server_used / wall
    run.client_cpu = 100 * client_used / wall
    run.other_cpu = max(0.0, 100 * rest / wall)
    run.steal_cpu = 100 * stolen / wall
    run.server_drops = socket_drops(server.port) - drops
    after = udp_counters()
    run.rcvbuf_errors = after.get("RcvbufErrors", 0) - udp.get("RcvbufErrors", 0)
    text = out.read_text(errors="replace")
    rb.parse_dnsperf(text, result)
    match = re.search(r"Average Latency \(s\):\s+([0-9.]+)", text)
    run.average_latency = float(match.group(1)) if match else None
    if math.isnan(result.qps):
        log(f"  {label}: dnsperf printed no figures:\n{text[-2000:]}")
    return run


# ---------------------------------------------------------------------------------------------
# One server


@dataclass
class Figures:
    """Everything measured for one server at one size."""

    name: str  # "NSD", "srvd", "srvd metrics off", FLOOR
    size: int
    ready: float | None = None
    start_memory: rb.Memory | None = None
    end_memory: rb.Memory | None = None
    warmups: list[Run] = field(default_factory=list)
    unlimited: dict[str, list[Run]] = field(default_factory=dict)  # per mix: one run a round
    search: list[Run] = field(default_factory=list)
    sustained: int | None = None
    sustained_note: str = ""
    latency: Run | None = None
    buffers: str = ""
    problems: list[str] = field(default_factory=list)
    log_notes: list[str] = field(default_factory=list)

    def runs(self, mix: str) -> list[Run]:
        return self.unlimited.get(mix, [])

    def qps(self, mix: str) -> float | None:
        """The median of the mix's unlimited runs."""
        known = [q for q in map(run_qps, self.runs(mix)) if q is not None]
        return statistics.median(known) if known else None

    def cpu(self, mix: str) -> float | None:
        """Server CPU seconds per answer: the median of the mix's unlimited runs."""
        known = [c for c in map(run_cpu, self.runs(mix)) if c is not None]
        return statistics.median(known) if known else None

    def percentile(self, q: float) -> float | None:
        return self.latency.result.percentile(q) if self.latency else None


def run_qps(run: Run) -> float | None:
    return run.qps if run.server_alive and not math.isnan(run.qps) else None


def run_cpu(run: Run) -> float | None:
    return run.cpu_per_query


def start_srvd(
    config: Path, directory: Path, tag: str, metrics: int | None, workers: int = 1
) -> rb.Server:
    """srvd on a free port, serving /metrics on port ``metrics`` (None: off)."""
    port = rb.free_port()
    endpoint = f"{HOST}:{metrics}" if metrics is not None else "off"
    logfile = directory / f"srvd-{tag}.log"
    with logfile.open("wb") as out:
        process = subprocess.Popen(
            [
                *rb.SRVD,
                "serve",
                "-c",
                str(config),
                "--listen",
                f"{HOST}:{port}",
                "--metrics",
                endpoint,
                "--workers",
                str(workers),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
    return rb.Server("srvd", process, port, logfile)


FLOOR = "Python floor"  # tests/perf/floor.py: a recvfrom/sendto loop, no DNS work


def start_floor(directory: Path) -> rb.Server:
    port = rb.free_port()
    logfile = directory / "floor.log"
    with logfile.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("floor.py")), str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return rb.Server("floor", process, port, logfile)


def floor_ready(figures: Figures, server: rb.Server, timeout: float) -> bool:
    """The floor loop answers (it has no domains to wait for)."""
    query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01"
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        while time.monotonic() < deadline and server.alive():
            sock.sendto(query, (HOST, server.port))
            try:
                if sock.recv(512)[:2] == query[:2]:
                    figures.start_memory = rb.memory(server.process.pid)
                    return True
            except OSError:
                pass
    figures.problems.append(f"{FLOOR} loop never answered; log tail:\n{server.tail()}")
    return False


def became_ready(figures: Figures, server: rb.Server, started: float, timeout: float) -> bool:
    waited = rb.wait_ready(server, rb.domain(figures.size), timeout)
    if waited is None:
        state = "exited" if not server.alive() else f"no answer within {timeout:.0f} s"
        figures.problems.append(
            f"{figures.name} never answered for the last domain ({state}); log tail:\n"
            + server.tail()
        )
        log(figures.problems[-1])
        return False
    figures.ready = time.monotonic() - started
    figures.start_memory = rb.memory(server.process.pid)
    figures.buffers = socket_buffers(server.port)
    log(f"  {figures.name}: ready after {figures.ready:.2f} s; {figures.start_memory.text()}")
    return True


def round_rate(rate: float) -> int:
    step = 1000 if rate >= 20_000 else 100
    return max(step, round(rate / step) * step)


def search_sustained(
    figures: Figures, server: rb.Server, queries: Path, out: Path, args: argparse.Namespace
) -> None:
    """Highest -Q rate answered with under 0.1% loss.

    The first try is the unlimited figure (of the 0x20 mix, whose names are the paced file's,
    else of the repeated mix, else of any); while tries pass, the rate goes up by 15%; after the
    first failure, bisection between the best pass and the lowest failure.
    """
    start = next(
        (q for q in (figures.qps(m) for m in ("0x20", "repeated", *MIXES)) if q is not None), None
    )
    if start is None:
        figures.sustained_note = "no unlimited figure to start from"
        return
    best: int | None = None
    failed: int | None = None
    tried: set[int] = set()
    rate = round_rate(start)
    for step in range(args.search_steps + 1):
        if rate in tried or rate <= 0 or not server.alive():
            break
        tried.add(rate)
        run = dnsperf(
            server,
            queries,
            args.search_seconds,
            f"paced {step + 1}",
            out / f"{tag_of(figures)}-paced-{rate}.txt",
            rate=rate,
            outstanding=args.paced_outstanding,
            retries=args.retries,
        )
        figures.search.append(run)
        log(f"  {figures.name}: {run.text()}")
        if run.sustained():
            best = rate
        else:
            failed = rate
        if failed is None:
            rate = round_rate(rate * 1.15)
        else:
            rate = round_rate(((best or 0) + failed) / 2)
            if failed - (best or 0) <= 0.03 * start:  # close enough
                break
        time.sleep(1.5)  # let timed-out queries and socket buffers drain
    figures.sustained = best
    if best is None:
        figures.sustained_note = f"< {min(tried):,}" if tried else "not measured"
    elif failed is None:
        figures.sustained_note = f"≥ {best:,} (no failure)"
    else:
        figures.sustained_note = f"{best:,} (fails at {failed:,})"


def unlimited(
    figures: Figures,
    server: rb.Server,
    mix: Mix,
    out: Path,
    args: argparse.Namespace,
    k: int,
) -> None:
    if not server.alive():
        return
    queries = mix.file(k)
    run = dnsperf(
        server,
        queries.path,
        args.seconds,
        f"{mix.name} unlimited {k + 1}",
        out / f"{tag_of(figures)}-{mix.name}-unlimited-{k}.txt",
        retries=args.retries,
        binary=queries.binary,
    )
    figures.unlimited.setdefault(mix.name, []).append(run)
    log(f"  {figures.name}: {run.text()}")
    if not run.server_alive:
        figures.problems.append(
            f"{figures.name} exited during an unlimited run (code "
            f"{server.process.returncode}); log tail:\n{server.tail()}"
        )
    time.sleep(1.0)


def latency_run(
    figures: Figures, server: rb.Server, queries: Path, out: Path, args: argparse.Namespace
) -> None:
    if not server.alive():
        return
    tag = tag_of(figures)
    run = dnsperf(
        server,
        queries,
        args.latency_seconds,
        "fixed load",
        out / f"{tag}-latency.txt",
        rate=args.latency_qps,
        outstanding=args.paced_outstanding,
        verbose=True,
        retries=args.retries,
    )
    figures.latency = run
    log(f"  {figures.name}: {run.text()}")


def finish(figures: Figures, server: rb.Server) -> None:
    """Memory after the runs, liveness and what the server logged."""
    if server.alive():
        figures.end_memory = rb.memory(server.process.pid)
    else:
        figures.problems.append(
            f"{figures.name} is not running after the load runs (exit code "
            f"{server.process.returncode}); log tail:\n{server.tail()}"
        )
    server.stop()
    if server.kind == "srvd":
        text = server.log.read_text(errors="replace")
        if server.process.returncode not in (0, None):
            figures.problems.append(f"srvd stopped with exit code {server.process.returncode}")
        notes = [
            line
            for line in text.splitlines()
            if re.search(r"Traceback|Error|failed|warn|not sent|suppressed", line, re.I)
        ]
        if notes:
            figures.log_notes = [f"{len(notes)} log lines of note, the first ones:", *notes[:8]]


# ---------------------------------------------------------------------------------------------
# One size


@dataclass
class SizeResult:
    size: int
    queries: int
    mix: str
    servers: dict[str, Figures] = field(default_factory=dict)
    agreement: str = ""
    profile: list[str] = field(default_factory=list)
    source: str = ""  # the srvd tree when its processes started
    mixes: list[Mix] = field(default_factory=list)


def write_lines(path: Path, lines: Iterable[str]) -> None:
    with path.open("w", encoding="ascii") as handle:
        handle.writelines(lines)


def write_queries(size: int, count: int, path: Path, rng: random.Random) -> list[tuple[str, str]]:
    """The query file of the paced and fixed-load runs (and py-spy's): random 0x20 case."""
    queries = rb.make_queries(size, count, rng)
    write_lines(path, (f"{name} {qtype}\n" for name, qtype in queries))
    return queries


def mix_text(queries: Sequence[tuple[str, str]]) -> str:
    counts: dict[str, int] = {}
    for _name, qtype in queries:
        counts[qtype] = counts.get(qtype, 0) + 1
    mix = ", ".join(f"{qtype} {count:,}" for qtype, count in sorted(counts.items()))
    lowered = len({(name.lower(), qtype) for name, qtype in queries})
    return f"{mix}; {len(set(queries)):,} distinct as written, {lowered:,} ignoring case"


@dataclass(frozen=True)
class QueryFile:
    path: Path
    lines: int  # queries in the file
    what: str  # for the logs
    binary: bool = False  # wire-format messages, for dnsperf -B


@dataclass
class Mix:
    """One traffic mix: its query file for each round, and what srvd is warmed up with first."""

    name: str
    files: list[QueryFile]  # round k uses files[k % len(files)]
    warm: QueryFile | None  # srvd's warm-up before the mix's runs (None: no warm-up)
    text: str  # how its queries are made, for the report

    def file(self, k: int) -> QueryFile:
        return self.files[k % len(self.files)]


def fresh_spellings(
    queries: Sequence[tuple[str, str]], count: int, rng: random.Random
) -> Iterator[str]:
    """``count`` lines: the (lower-case) queries over and over, each line with every letter's
    case drawn anew (0x20): random bits, kept at the letters' 0x20 bit, flip the name's octets."""
    prepared = []
    for name, qtype in queries:
        octets = name.encode("ascii")
        letters = bytes(0x20 if 0x61 <= c <= 0x7A else 0 for c in octets)
        number, mask = int.from_bytes(octets, "big"), int.from_bytes(letters, "big")
        prepared.append((number, mask, len(octets), qtype))
    for k in range(count):
        number, mask, size, qtype = prepared[k % len(prepared)]
        spelled = number ^ (rng.getrandbits(8 * size) & mask)
        yield f"{spelled.to_bytes(size, 'big').decode('ascii')} {qtype}\n"


def new_names(size: int, count: int, rng: random.Random) -> Iterator[str]:
    """``count`` lines, each a new random label under a served zone: NXDOMAIN. 80%
    ``_<10 hex digits>._tcp.<domain> SRV``, 10% ``<hex>._tcp.<domain> A``, 10%
    ``<hex>._axigen.<domain> TXT`` (none exists: the profile's names under _tcp hold letters
    beyond a-f, and _axigen has none below its apex)."""
    for _ in range(count):
        label = f"{rng.getrandbits(40):010x}"
        name = rb.domain(rng.randint(1, size))
        draw = rng.random()
        if draw < 0.8:
            yield f"_{label}._tcp.{name} SRV\n"
        elif draw < 0.9:
            yield f"{label}._tcp.{name} A\n"
        else:
            yield f"{label}._axigen.{name} TXT\n"


def wire_query(name: str, qtype: str, cookie: bytes) -> bytes:
    """One query as a resolver sends it to an authoritative server, in dnsperf -B's format (a
    2-octet length, then the message): ID 0 (dnsperf sets it), RD clear, and an OPT record with
    payload size EDNS_PAYLOAD, the client cookie (option 10) and padding (option 12) up to a
    multiple of PAD_BLOCK octets."""
    qname = b"".join(bytes([len(label)]) + label.encode("ascii") for label in name.split("."))
    header = struct.pack("!6H", 0, 0, 1, 0, 0, 1)
    question = qname + b"\x00" + struct.pack("!HH", rb.QTYPES[qtype], 1)
    options = struct.pack("!HH", OPT_COOKIE, len(cookie)) + cookie
    unpadded = len(header) + len(question) + 11 + len(options) + 4
    pad = -unpadded % PAD_BLOCK
    options += struct.pack("!HH", OPT_PADDING, pad) + bytes(pad)
    opt = b"\x00" + struct.pack("!HHIH", 41, EDNS_PAYLOAD, 0, len(options)) + options
    message = header + question + opt
    return struct.pack("!H", len(message)) + message


def write_mixes(
    size: int,
    queries: Sequence[tuple[str, str]],
    args: argparse.Namespace,
    rng: random.Random,
    work: Path,
) -> list[Mix]:
    """The query files of the mixes asked for (``args.mix_list``), from the paced file's queries.

    repeated: those queries in lower case. 0x20: ``--fresh`` lines per round, the same names over
    and over with every letter's case drawn anew on each line, one file per round. new-names:
    ``--fresh`` new NXDOMAIN names per round, one file per round. edns-options: the repeated
    queries as wire-format messages with a client cookie (one of ``--resolvers``, drawn per
    query) and padding."""
    label = rb.count_text(size)
    lower = [(name.lower(), qtype) for name, qtype in queries]
    repeated = QueryFile(work / f"repeated-{label}.txt", len(lower), "repeated")
    write_lines(repeated.path, (f"{name} {qtype}\n" for name, qtype in lower))
    rounds, fresh = args.repeats, args.fresh

    def per_round(mix: str, lines: Callable[[], Iterable[str]]) -> list[QueryFile]:
        """A file of ``--fresh`` new lines for each round of a mix."""
        files = []
        for k in range(rounds):
            log(f"  {mix} round {k + 1}: writing {fresh:,} lines")
            path = work / f"{mix}-{label}-{k + 1}.txt"
            write_lines(path, lines())
            files.append(QueryFile(path, fresh, f"{mix}, round {k + 1}"))
        return files

    mixes = []
    for name in args.mix_list:
        if name == "repeated":
            text = (
                f"the {len(lower):,} queries of the paced file in lower case; dnsperf replays "
                f"the file, so every query recurs"
            )
            mixes.append(Mix(name, [repeated], repeated, text))
        elif name == "0x20":
            files = per_round(name, lambda: fresh_spellings(lower, fresh, rng))
            text = (
                f"{fresh:,} lines a round, a file for each round: the repeated queries over and "
                f"over, every letter's case drawn anew on each line; srvd warmed up with the "
                f"repeated file"
            )
            mixes.append(Mix(name, files, repeated, text))
        elif name == "new-names":
            files = per_round(name, lambda: new_names(size, fresh, rng))
            text = (
                f"{fresh:,} lines a round, a file for each round: a new random label under "
                f"_tcp or _axigen of a random domain on every line (80% SRV, 10% A, 10% TXT), "
                f"all NXDOMAIN"
            )
            mixes.append(Mix(name, files, None, text))
        else:
            cookies = [rng.randbytes(8) for _ in range(args.resolvers)]
            path = work / f"edns-options-{label}.bin"
            with path.open("wb") as handle:
                handle.writelines(wire_query(n, t, rng.choice(cookies)) for n, t in lower)
            wire = QueryFile(path, len(lower), "edns-options", binary=True)
            text = (
                f"the repeated queries as wire-format messages (dnsperf -B): RD clear, EDNS "
                f"payload {EDNS_PAYLOAD}, a client cookie (option 10, 8 octets) of one of "
                f"{args.resolvers} resolvers drawn per query, padding (option 12) to a multiple "
                f"of {PAD_BLOCK} octets"
            )
            mixes.append(Mix(name, [wire], wire, text))
    return mixes


def check_wire(queries: QueryFile, out: Path, count: int = 40) -> str:
    """Sends the first messages of a dnsperf -B file with dnsperf to a socket of this script on
    loopback (which answers each with its QR bit set) and compares what arrives with what the
    file holds, all but the ID (dnsperf's). One line for the report."""
    data = queries.path.read_bytes()[: count * 600]
    blobs: list[bytes] = []
    at = 0
    while len(blobs) < count and at + 2 <= len(data):
        end = at + 2 + int.from_bytes(data[at : at + 2], "big")
        if end > len(data):
            break
        blobs.append(data[at + 2 : end])
        at = end
    small = out / "wire-check.bin"
    small.write_bytes(b"".join(len(blob).to_bytes(2, "big") + blob for blob in blobs))
    received: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.settimeout(0.2)
        port = sock.getsockname()[1]
        command = [rb.tool("dnsperf"), "-B", "-s", HOST, "-p", str(port), "-d", str(small)]
        process = subprocess.Popen(
            [*command, "-n", "1", "-c", "1", "-t", "1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while len(received) < len(blobs) and time.monotonic() < deadline:
            try:
                message, address = sock.recvfrom(65535)
            except TimeoutError:
                continue
            received.append(message)
            sock.sendto(message[:2] + bytes([message[2] | 0x80]) + message[3:], address)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    same = sum((Counter(m[2:] for m in received) & Counter(b[2:] for b in blobs)).values())
    if not received:
        return f"PROBLEM: dnsperf -B sent none of {len(blobs)} messages to a loopback socket"
    first = dns.message.from_wire(received[0])
    options = ", ".join(
        f"{int(option.otype)} ({len(option.to_wire())} octets)" for option in first.options
    )
    cookies = set()
    for message in received:
        cookies |= {
            o.to_wire() for o in dns.message.from_wire(message).options if o.otype == OPT_COOKIE
        }
    problem = "" if same == len(blobs) else "PROBLEM: "
    rd = "set" if first.flags & dns.flags.RD else "clear"
    return (
        f"{problem}edns-options: dnsperf -B sent {same} of the file's first {len(blobs)} "
        f"messages to a loopback socket exactly as written but for the ID; dnspython reads the "
        f"first as {len(received[0])} octets, RD {rd}, EDNS payload {first.payload}, options "
        f"{options}; {len(cookies)} distinct cookies"
    )


def bench_servers(
    data: rb.SrvdData,
    setup: rb.NsdSetup | None,
    paced: QueryFile,
    mixes: list[Mix],
    sample: list[tuple[str, str]],
    out: Path,
    args: argparse.Namespace,
    result: SizeResult,
) -> None:
    """NSD (when set up), srvd, srvd with metrics off and the floor: started one by one, then
    measured in turn, mix after mix."""
    size = data.size
    started: list[tuple[Figures, rb.Server]] = []
    ready: list[tuple[Figures, rb.Server]] = []
    answers: dict[str, list[str]] = {}
    try:
        if setup is not None:
            nsd = result.servers["NSD"] = Figures("NSD", size)
            log(f"NSD {rb.count_text(size)}: cold start ({2 * size:,} zones)")
            began = time.monotonic()
            server = rb.start_nsd(setup, size).server
            started.append((nsd, server))
            if became_ready(nsd, server, began, args.timeout):
                answers[nsd.name] = rb.snapshot(server.port, sample, authority=False)
                ready.append((nsd, server))
        result.source = rb.source_state()
        for name, tag, metrics in (
            ("srvd", "metrics-on", True),
            ("srvd metrics off", "metrics-off", False),
        ):
            figures = result.servers[name] = Figures(name, size)
            log(f"{name} {rb.count_text(size)}: cold start")
            began = time.monotonic()
            port = rb.free_port() if metrics else None
            server = start_srvd(data.configs["json"], data.directory, tag, port, args.workers)
            started.append((figures, server))
            if became_ready(figures, server, began, args.timeout):
                answers[name] = rb.snapshot(server.port, sample, authority=False)
                ready.append((figures, server))

        floor = result.servers[FLOOR] = Figures(FLOOR, size)
        server = start_floor(data.directory)
        started.append((floor, server))
        if floor_ready(floor, server, args.timeout):
            ready.append((floor, server))

        # srvd is warmed up per mix; NSD and the floor keep nothing, and get one short warm-up
        warmed: dict[str, QueryFile] = {}
        for figures, server in ready:
            if not keeps_entries(figures):
                figures.warmups.append(warm_up(server, paced, 0, args, warm_out(out, figures)))
        for mix in mixes:
            log(f"{rb.count_text(size)} domains, mix {mix.name}")
            for figures, server in ready:
                warm(figures, server, mix.warm, warmed, out, args)
            for k in range(args.repeats):  # rounds: each server once, one after the other...
                # ...in reverse order every other round, so that neither of two servers compared
                # always runs first (the machine drifts, and a run can leave it warmer or colder)
                for figures, server in ready if k % 2 == 0 else ready[::-1]:
                    unlimited(figures, server, mix, out, args, k)
        servers = [(figures, server) for figures, server in ready if figures.name != FLOOR]
        if args.paced:
            for figures, server in servers:
                warm(figures, server, paced, warmed, out, args)
            for figures, server in servers:
                if figures.name != "srvd metrics off":
                    search_sustained(figures, server, paced.path, out, args)
            for figures, server in servers:
                latency_run(figures, server, paced.path, out, args)
        profiled = [server for figures, server in ready if figures.name == "srvd"]
        if args.py_spy and size == max(args.size_list) and profiled and profiled[0].alive():
            result.profile = profile_srvd(profiled[0], paced.path, out, args)
    finally:
        for figures, server in started:
            finish(figures, server)
    if "NSD" in answers and "srvd" in answers:
        pairs = zip(answers["NSD"], answers["srvd"], strict=True)
        same = sum(a == b for a, b in pairs)
        result.agreement = (
            f"srvd and NSD give the same rcode, AA flag and answer records for "
            f"{same}/{len(sample)} sampled queries"
        )


def keeps_entries(figures: Figures) -> bool:
    """srvd may learn from its traffic (it kept answers per query until 02a4146); NSD and the
    floor keep nothing."""
    return figures.name.startswith("srvd")


def warm_out(out: Path, figures: Figures, queries: QueryFile | None = None) -> Path:
    what = "" if queries is None else "-" + queries.path.stem
    return out / f"{tag_of(figures)}-warmup{what}.txt"


def warm(
    figures: Figures,
    server: rb.Server,
    queries: QueryFile | None,
    warmed: dict[str, QueryFile],
    out: Path,
    args: argparse.Namespace,
) -> None:
    """srvd: ``--warmup-passes`` over the file, unless the last warm-up was with the same file
    (the runs in between asked the same names again, or names that never recur: new-names)."""
    if queries is None or not keeps_entries(figures) or not server.alive():
        return
    if warmed.get(figures.name) == queries:
        return
    warmed[figures.name] = queries
    run = warm_up(server, queries, args.warmup_passes, args, warm_out(out, figures, queries))
    figures.warmups.append(run)
    log(f"  {figures.name}: {run.text()}")


def tag_of(figures: Figures) -> str:
    return figures.name.replace(" ", "-")


# ---------------------------------------------------------------------------------------------
# py-spy


FRAME = re.compile(r"(?P<function>.*) \((?P<file>[^():]*?)(?::(?P<line>\d+))?\)$")


@dataclass(frozen=True)
class Frame:
    function: str
    file: str
    line: int

    @property
    def python(self) -> bool:
        return self.file.endswith(".py") or self.file.startswith("<frozen")

    def where(self) -> str:
        return f"{self.function} ({self.file})"


def parse_frame(text: str) -> Frame:
    match = FRAME.match(text)
    if not match:
        return Frame(text, "", 0)
    return Frame(match["function"], match["file"], int(match["line"] or 0))


def source_line(frame: Frame) -> str:
    """The text of a Python frame's line, looked up under the tree and sys.path."""
    for base in (str(rb.ROOT), *sys.path):
        path = Path(base or ".") / frame.file
        if frame.line and path.is_file():
            lines = path.read_text(errors="replace").splitlines()
            if frame.line <= len(lines):
                return lines[frame.line - 1].strip()
    return ""


def native_name(frame: Frame) -> str:
    if frame.function.startswith("0x"):  # no symbol: the library it is in
        return f"? ({frame.file})"
    return frame.function


def profile_srvd(
    server: rb.Server, queries: Path, out: Path, args: argparse.Namespace
) -> list[str]:
    """py-spy record --native (raw collapsed stacks) of srvd under an unlimited dnsperf load."""
    spy = shutil.which("py-spy")
    if spy is None:
        return ["py-spy is not installed (pip install py-spy): no profile"]
    raw = out / "srvd-py-spy.txt"
    seconds = args.py_spy_seconds
    log(f"srvd: py-spy record --native for {seconds} s under unlimited load")
    load = subprocess.Popen(
        [
            rb.tool("dnsperf"),
            *("-s", HOST, "-p", str(server.port), "-d", str(queries)),
            *("-l", str(seconds + 4), "-c", "8", "-t", "1", "-q", "100"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(2)
        command = [spy, "record", "--native", "--format", "raw", "-o", str(raw)]
        command += ["-d", str(seconds), "-r", "100", "-p", str(server.process.pid)]
        spy_run = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        output, _ = load.communicate(timeout=seconds + 60)
    qps = re.search(rb"Queries per second:\s+([0-9.]+)", output)
    if spy_run.returncode != 0 or not raw.exists():
        return [f"py-spy failed ({spy_run.returncode}): {spy_run.stderr.strip()[-500:]}"]
    by_line: dict[Frame, int] = {}  # the innermost Python line, with the C code it called
    by_function: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    native: dict[str, int] = {}  # the innermost C function (where the CPU was)
    total = 0
    for row in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = row.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [parse_frame(f) for f in stack.split(";")]
        python = [f for f in frames if f.python]
        if not python:
            continue
        total += count
        inner = python[-1]
        by_line[inner] = by_line.get(inner, 0) + count
        by_function[inner.where()] = by_function.get(inner.where(), 0) + count
        for name in {f.where() for f in python}:
            inclusive[name] = inclusive.get(name, 0) + count
        leaf = frames[-1]
        key = "(Python code itself)" if leaf.python else native_name(leaf)
        native[key] = native.get(key, 0) + count
    if not total:
        return ["py-spy recorded no samples"]

    def share(count: int) -> str:
        return f"{100 * count / total:5.1f}%"

    def top(table: dict[str, int], n: int) -> list[str]:
        ordered = sorted(table.items(), key=lambda item: -item[1])[:n]
        return [f"  {share(count)}  {name}" for name, count in ordered]

    lines = sorted(by_line.items(), key=lambda item: -item[1])[:15]
    return [
        f"py-spy record --native -r 100 -d {seconds} on srvd (metrics on) under unlimited "
        f"dnsperf load ({float(qps.group(1)) if qps else float('nan'):,.0f} qps while sampled): "
        f"{total:,} samples; raw stacks in {raw}",
        "by Python line (time in that line and the C code it called):",
        *(
            f"  {share(count)}  {f.file}:{f.line} {f.function}: {source_line(f)[:70]}"
            for f, count in lines
        ),
        "by Python function (the same, summed per function):",
        *top(by_function, 12),
        "inclusive (the function and everything it called):",
        *top(inclusive, 12),
        "innermost C function (libc symbols are not resolved: '? (libc.so.6)' is mostly the "
        "system calls):",
        *top(native, 10),
    ]


# ---------------------------------------------------------------------------------------------
# Report


def fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.2f} ms"


def fmt_us(value: float | None) -> str:
    return "—" if value is None else f"{value * 1e6:.1f} µs"


def fmt_qps(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def fmt_ratio(srvd: float | None, nsd: float | None) -> str:
    if srvd is None or nsd is None or nsd == 0:
        return "—"
    return f"{srvd / nsd:.2f}x"


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("yes" if ok else "NO")


def ratio_ok(
    srvd: float | None, nsd: float | None, limit: float | None, higher: bool
) -> bool | None:
    if limit is None or nsd is None or nsd == 0:  # no target, or NSD not measured
        return None
    if srvd is None:
        return False
    return srvd / nsd >= limit if higher else srvd / nsd <= limit


def paired(
    a: Figures | None, b: Figures | None, mix: str, value: Callable[[Run], float | None]
) -> tuple[float | None, list[float]]:
    """a's figure over b's for each round of the mix (the two runs one after the other, in turn
    first): the median of the ratios, and the ratios."""
    if a is None or b is None:
        return None, []
    ratios = []
    for x, y in zip(a.runs(mix), b.runs(mix), strict=False):
        u, v = value(x), value(y)
        if u is not None and v is not None and v > 0:
            ratios.append(u / v)
    return (statistics.median(ratios) if ratios else None), ratios


def metrics_cost(
    on: Figures | None, off: Figures | None, mix: str
) -> tuple[float | None, list[float]]:
    """(qps off - qps on) / qps off in %, the median over the rounds."""
    costs = [100 * (1 - r) for r in paired(on, off, mix, run_qps)[1]]
    return (statistics.median(costs) if costs else None), costs


def metrics_cpu_cost(
    on: Figures | None, off: Figures | None, mix: str
) -> tuple[float | None, list[float]]:
    """(CPU per answer on - off) / off in %, the median over the rounds."""
    costs = [100 * (r - 1) for r in paired(on, off, mix, run_cpu)[1]]
    return (statistics.median(costs) if costs else None), costs


def cpu_target(size: int, mix: str) -> float | None:
    """The issue's ceiling on srvd's CPU per answer over NSD's: at 100k domains NSD's at the
    same size; at 1M NSD's at 100k."""
    if size >= 1_000_000:
        return CPU_1M
    if size >= 100_000:
        return CPU_100K_REPEATED if mix == "repeated" else CPU_100K
    return None


def cpu_check(
    result: SizeResult, results: Sequence[SizeResult], mix: str
) -> tuple[float | None, float | None, str]:
    """srvd's CPU per answer and the figure its target names (compare their ratio), and that
    figure's name. Below 1M: the median of the per-round ratios srvd/NSD, over 1.0 (None: NSD
    not measured); at 1M: srvd's median and NSD's median at 100k in the same run."""
    srvd = result.servers.get("srvd")
    if result.size < 1_000_000:
        nsd = result.servers.get("NSD")
        known = 1.0 if nsd is not None and nsd.runs(mix) else None
        return paired(srvd, nsd, mix, run_cpu)[0], known, "NSD"
    base = next((r for r in results if r.size == 100_000), None)
    nsd = base.servers.get("NSD") if base else None
    return cpu_of(srvd, mix), cpu_of(nsd, mix), "NSD 100k"


def mix_table(result: SizeResult, results: Sequence[SizeResult]) -> list[str]:
    """One row per mix: qps and server CPU per answer of every server, srvd/NSD, the target."""
    nsd = result.servers.get("NSD")
    srvd = result.servers.get("srvd")
    off = result.servers.get("srvd metrics off")
    floor = result.servers.get(FLOOR)
    rows = []
    for mix in result.mixes:
        name = mix.name
        cpu_ratio = paired(srvd, nsd, name, run_cpu)[0]
        target = cpu_target(result.size, name)
        s, n, against = cpu_check(result, results, name)
        shown = fmt_ratio(cpu_ratio, 1.0)
        if against != "NSD":  # 1M: against NSD at 100k (and NSD at 1M, if it ran)
            same = f" ({shown} of NSD {rb.count_text(result.size)})" if cpu_ratio else ""
            shown = f"{fmt_ratio(s, n)} of {against}{same}"
        rows.append(
            [
                name,
                fmt_qps(qps_of(nsd, name)),
                fmt_us(cpu_of(nsd, name)),
                fmt_qps(qps_of(srvd, name)),
                fmt_us(cpu_of(srvd, name)),
                fmt_us(cpu_of(off, name)),
                fmt_us(cpu_of(floor, name)),
                fmt_ratio(paired(srvd, nsd, name, run_qps)[0], 1.0),
                shown,
                "" if target is None else f"≤ {target:.1f}x {against}",
                verdict(ratio_ok(s, n, target, False)),
            ]
        )
    header = [
        "mix",
        "NSD qps",
        "NSD µs/answer",
        "srvd qps",
        "srvd µs/answer",
        "srvd metrics off µs/answer",
        "floor µs/answer",
        "srvd/NSD qps",
        "srvd/NSD CPU",
        "target (CPU)",
        "met",
    ]
    return rb.table(rows, header)


def size_table(result: SizeResult, latency_qps: int) -> list[str]:
    """Start time, memory, sustained rate and latency: NSD and srvd side by side."""
    nsd = result.servers.get("NSD")
    srvd = result.servers.get("srvd")
    off = result.servers.get("srvd metrics off")
    size = result.size
    rows: list[list[str]] = []

    def row(
        label: str,
        n: float | None,
        s: float | None,
        show: str,
        target: float | None = None,
        higher: bool = True,
    ) -> None:
        def shown(value: float | None) -> str:
            if value is None:
                return "—"
            if show == "s":
                return f"{value:.2f} s"
            if show == "mib":
                return f"{value / MIB:,.0f} MiB"
            if show == "ms":
                return fmt_ms(value)
            return fmt_qps(value)

        target_text = "" if target is None else f"{'≥' if higher else '≤'} {target:g}x NSD"
        rows.append(
            [
                label,
                target_text,
                shown(n),
                shown(s),
                fmt_ratio(s, n),
                verdict(ratio_ok(s, n, target, higher)),
            ]
        )

    def mem(f: Figures | None, end: bool, pss: bool) -> float | None:
        m = None if f is None else (f.end_memory if end else f.start_memory)
        return None if m is None else float(m.pss if pss else m.rss)

    big = size >= 100_000
    row(
        "ready: process start → last domain answers",
        nsd.ready if nsd else None,
        srvd.ready if srvd else None,
        "s",
        READY_100K if big else None,
        higher=False,
    )
    row(
        "RSS when ready (NSD: sum of its processes)",
        mem(nsd, False, False),
        mem(srvd, False, False),
        "mib",
        RSS_100K if big else None,
        higher=False,
    )
    row("PSS when ready", mem(nsd, False, True), mem(srvd, False, True), "mib")
    row("RSS after the load runs", mem(nsd, True, False), mem(srvd, True, False), "mib")
    row("PSS after the load runs", mem(nsd, True, True), mem(srvd, True, True), "mib")
    if (nsd and nsd.search) or (srvd and srvd.search):
        row(
            f"sustained qps (< {100 * LOSS_LIMIT:g}% loss), paced file",
            float(nsd.sustained) if nsd and nsd.sustained else None,
            float(srvd.sustained) if srvd and srvd.sustained else None,
            "qps",
            SUSTAINED_100K if big else None,
        )
        rows.append(
            [
                "  (search result)",
                "",
                nsd.sustained_note if nsd else "",
                srvd.sustained_note if srvd else "",
                "",
                "",
            ]
        )
    for q, name in ((0.5, "p50"), (0.99, "p99")):
        if (nsd and nsd.latency) or (srvd and srvd.latency):
            row(
                f"{name} latency at {latency_qps:,} qps",
                nsd.percentile(q) if nsd else None,
                srvd.percentile(q) if srvd else None,
                "ms",
            )
    if off is not None and off.latency:
        for q, name in ((0.5, "p50"), (0.99, "p99")):
            rows.append(
                [
                    f"srvd --metrics off: {name} latency at {latency_qps:,} qps",
                    "",
                    "",
                    fmt_ms(off.percentile(q)),
                    "",
                    "",
                ]
            )
    return rb.table(rows, ["figure", "target", "NSD", "srvd", "srvd/NSD", "met"])


def details(result: SizeResult) -> list[str]:
    out = []
    for figures in result.servers.values():
        out.append(f"{figures.name}:")
        if figures.start_memory:
            out.append(f"  when ready: {figures.start_memory.text()}")
        if figures.end_memory:
            out.append(f"  after the runs: {figures.end_memory.text()}")
        if figures.buffers:
            out.append(f"  UDP socket buffers (ss -m): {figures.buffers}")
        runs = [*figures.warmups]
        for mix in result.mixes:
            runs += figures.runs(mix.name)
        runs += figures.search
        runs += [figures.latency] if figures.latency else []
        for run in runs:
            out.append(f"  {run.text()}")
        for mix in result.mixes:
            mine = figures.runs(mix.name)
            if mine:
                out.append(f"  rcodes ({mix.name} unlimited 1): {mine[0].result.rcodes}")
            qps = [q for q in map(run_qps, mine) if q is not None]
            if len(qps) > 1:
                out.append(
                    f"  {mix.name} unlimited runs: {', '.join(fmt_qps(q) for q in qps)} qps "
                    f"(spread {100 * (max(qps) - min(qps)) / max(qps):.1f}%)"
                )
        out += [f"  PROBLEM: {p}" for p in figures.problems]
        out += [f"  {line}" for line in figures.log_notes]
    on, off = result.servers.get("srvd"), result.servers.get("srvd metrics off")
    nsd = result.servers.get("NSD")
    for mix in result.mixes:
        name = mix.name
        out += per_pair(
            f"{name}: srvd/NSD server CPU per answer per round", *paired(on, nsd, name, run_cpu)
        )
        out += per_pair(f"{name}: srvd/NSD qps per round", *paired(on, nsd, name, run_qps))
        out += per_pair(
            f"{name}: metrics cost in qps, (off - on) / off per round",
            *metrics_cost(on, off, name),
            "+.1f",
            "%",
        )
        out += per_pair(
            f"{name}: metrics cost in server CPU per answer per round",
            *metrics_cpu_cost(on, off, name),
            "+.1f",
            "%",
        )
    if result.agreement:
        out.append(result.agreement)
    return out


def per_pair(
    what: str, median: float | None, values: list[float], fmt: str = ".2f", unit: str = ""
) -> list[str]:
    """One line: the figure of every pair of runs, then their median."""
    if median is None or not values:
        return []
    shown = ", ".join(f"{format(v, fmt)}{unit}" for v in values)
    return [f"{what}: {shown}; median {format(median, fmt)}{unit}"]


def qps_of(figures: Figures | None, mix: str) -> float | None:
    return figures.qps(mix) if figures else None


def cpu_of(figures: Figures | None, mix: str) -> float | None:
    return figures.cpu(mix) if figures else None


def mix_lines(result: SizeResult) -> list[str]:
    """How each mix's queries were made, and how far the runs got through its file."""
    out = []
    for mix in result.mixes:
        sent = [
            run.result.sent / mix.file(k).lines
            for f in result.servers.values()
            for k, run in enumerate(f.runs(mix.name))
            if run.result.sent and mix.file(k).lines
        ]
        passes = f"; a run went through its file {max(sent):.1f} times at most" if sent else ""
        out.append(f"  {mix.name}: {mix.text}{passes}")
    return out


def summary(results: list[SizeResult]) -> list[str]:
    """Every target in one place."""
    out = []
    for result in results:
        nsd = result.servers.get("NSD")
        srvd = result.servers.get("srvd")
        off = result.servers.get("srvd metrics off")
        label = rb.count_text(result.size)
        for mix in result.mixes:
            target = cpu_target(result.size, mix.name)
            if target is None:
                continue
            s, n, against = cpu_check(result, results, mix.name)
            what = f"CPU/answer {mix.name}"
            out.append(
                f"{label:>5} {what:<26} srvd/{against:<8} {fmt_ratio(s, n):>7}  "
                f"target ≤ {target:.1f}x  {verdict(ratio_ok(s, n, target, False)) or '—'}"
            )
        # (what, srvd's figure, NSD's, the target ratio, higher is better)
        checks: list[tuple[str, float | None, float | None, float, bool]] = []
        if 100_000 <= result.size < 1_000_000:
            checks += [
                (
                    "RSS",
                    float(srvd.start_memory.rss) if srvd and srvd.start_memory else None,
                    float(nsd.start_memory.rss) if nsd and nsd.start_memory else None,
                    RSS_100K,
                    False,
                ),
                (
                    "ready",
                    srvd.ready if srvd else None,
                    nsd.ready if nsd else None,
                    READY_100K,
                    False,
                ),
            ]
            if srvd and srvd.search:
                checks.append(
                    (
                        "sustained qps",
                        float(srvd.sustained) if srvd.sustained else None,
                        float(nsd.sustained) if nsd and nsd.sustained else None,
                        SUSTAINED_100K,
                        True,
                    )
                )
        for name, s, n, limit, higher in checks:
            sign = "≥" if higher else "≤"
            out.append(
                f"{label:>5} {name:<26} srvd/NSD      {fmt_ratio(s, n):>7}  target {sign} "
                f"{limit:g}x  {verdict(ratio_ok(s, n, limit, higher)) or '—'}"
            )
        for mix in result.mixes:
            cost, _costs = metrics_cost(srvd, off, mix.name)
            cpu_cost, _costs = metrics_cpu_cost(srvd, off, mix.name)
            if cost is None:
                continue
            cpu = "" if cpu_cost is None else f" ({cpu_cost:+.1f}% CPU per answer)"
            what = f"metrics cost {mix.name}"
            out.append(
                f"{label:>5} {what:<26} {cost:+.1f}% of the qps{cpu}  target < "
                f"{METRICS_COST:g}%  {verdict(cost < METRICS_COST)}"
            )
    return out


# ---------------------------------------------------------------------------------------------
# Main


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="srvd beside NSD: CPU per answer and qps for four traffic mixes, sustained "
        "rate, latency, start time, memory",
    )
    parser.add_argument("--sizes", default=None, help="domain counts (default 1k,100k)")
    parser.add_argument("--million", action="store_true", help="also srvd alone at 1M")
    parser.add_argument(
        "--nsd-million",
        action="store_true",
        help="with --million, NSD at 1M too (2M zone files, ~13 GiB of RAM, 9 GiB of disk)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1k domains, 3 s runs")
    parser.add_argument(
        "--mixes",
        default=",".join(MIXES),
        help=f"traffic mixes, in this order (default {','.join(MIXES)})",
    )
    parser.add_argument(
        "--queries",
        type=int,
        default=None,
        help="lines of the paced file, and queries of the repeated and edns-options mixes "
        "(200000; quick: 20000)",
    )
    parser.add_argument(
        "--fresh",
        type=int,
        default=None,
        help="lines per round of the 0x20 and new-names files (2000000; quick: 100000)",
    )
    parser.add_argument(
        "--resolvers",
        type=int,
        default=4,
        help="edns-options: resolvers, each with its own client cookie (4)",
    )
    parser.add_argument("--seconds", type=float, default=None, help="unlimited run length (15)")
    parser.add_argument("--repeats", type=int, default=None, help="unlimited runs per server (3)")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up run length (2)")
    parser.add_argument(
        "--warmup-passes",
        type=int,
        default=None,
        help="warm-up: the query file this many times instead of --warmup seconds (3; quick: 0)",
    )
    parser.add_argument(
        "--search-seconds", type=float, default=None, help="length of each paced run (10)"
    )
    parser.add_argument(
        "--search-steps", type=int, default=None, help="paced runs after the first (5)"
    )
    parser.add_argument(
        "--paced-outstanding",
        type=int,
        default=2000,
        help="dnsperf -q for the paced runs: queries in flight before dnsperf holds back (2000)",
    )
    parser.add_argument(
        "--no-paced",
        dest="paced",
        action="store_false",
        help="skip the sustained-rate search and the fixed-load latency runs",
    )
    parser.add_argument("--latency-qps", type=int, default=20_000, help="fixed load (20000)")
    parser.add_argument(
        "--latency-seconds", type=float, default=None, help="fixed-load run length (10)"
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help=f"repeat a run disturbed by > {DISTURBED:g}%% of a core of other work or steal (2)",
    )
    parser.add_argument("--no-nsd", action="store_true", help="srvd only")
    parser.add_argument(
        "--workers", type=int, default=1, help="srvd serve --workers N (default 1, as NSD's one)"
    )
    parser.add_argument("--py-spy", action="store_true", help="profile srvd at the largest size")
    parser.add_argument("--py-spy-seconds", type=int, default=None, help="profile length (10)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for ready")
    parser.add_argument(
        "--dnssec",
        action="store_true",
        help="only what signing costs (tests/perf/dnssec_bench.py): ready time and RSS signed, "
        "repeated DO=1 vs unsigned, a DO=1 random-name flood; srvd alone",
    )
    parser.add_argument(
        "--dnssec-cache",
        type=int,
        default=None,
        help="with --dnssec: dnssec.cache_size of the signed server (default: srvd's, 1000000)",
    )
    parser.add_argument(
        "--dnssec-denial",
        choices=("nsec", "compact"),
        default=None,
        help="with --dnssec: dnssec.denial of the signed server (default: srvd's, nsec)",
    )
    parser.add_argument(
        "--flood-rounds",
        type=int,
        default=2,
        help="with --dnssec: runs of the random-name flood, each with new names (2): how the "
        "cost per answer falls as the zones' denial signatures fill the cache",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", help="keep the generated data and dnsperf outputs here")
    parser.add_argument("--keep", action="store_true", help="do not delete the temporary data")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "sizes": "1k" if quick else "1k,100k",
        "queries": 20_000 if quick else 200_000,
        "fresh": 100_000 if quick else 2_000_000,
        "seconds": 3.0 if quick else 15.0,
        "repeats": 1 if quick else 3,
        "warmup": 1.0 if quick else 2.0,
        "warmup_passes": 0 if quick else 3,
        "search_seconds": 3.0 if quick else 10.0,
        "search_steps": 2 if quick else 5,
        "latency_seconds": 3.0 if quick else 10.0,
        "py_spy_seconds": 3 if quick else 10,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    sizes = {rb.parse_count(s) for s in args.sizes.split(",") if s.strip()}
    if args.million:
        sizes.add(1_000_000)
    args.size_list = sorted(sizes)
    args.mix_list = [m.strip() for m in args.mixes.split(",") if m.strip()]
    unknown = [m for m in args.mix_list if m not in MIXES]
    if unknown or not args.mix_list:
        parser.error(f"--mixes: {', '.join(unknown) or 'none'}; known: {', '.join(MIXES)}")
    if args.resolvers < 1 or args.fresh < 1 or args.queries < 1:
        parser.error("--resolvers, --fresh and --queries must be at least 1")
    return args


def nsd_setup(work: Path, size: int, config: Path) -> tuple[rb.NsdSetup, str]:
    keys = work / "nsd-keys"
    keys.mkdir(exist_ok=True)
    subprocess.run([rb.tool("nsd-control-setup"), "-d", str(keys)], capture_output=True, check=True)
    setup = rb.NsdSetup(
        work / "nsd", work / "nsd" / "zones", keys, rb.tool("nsd"), rb.tool("nsd-control")
    )
    setup.zonedir.mkdir(parents=True, exist_ok=True)
    check = rb.check_zone_template(config, rb.tool("nsd-checkzone"), work)
    log(f"NSD zone template: {check}; writing zone files for {rb.count_text(size)} domains")
    seconds = rb.write_nsd_zones(setup.zonedir, size)
    return setup, (
        f"NSD: {2 * size:,} zone files for {rb.count_text(size)} domains written in "
        f"{seconds:.1f} s; template: {check}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    began = time.monotonic()
    rng = random.Random(args.seed)
    if args.dnssec:  # srvd signed vs unsigned (docs/dnssec.md)
        from perf import dnssec_bench

        work = Path(args.workdir or tempfile.mkdtemp(prefix="srvd-dnssec-"))
        work.mkdir(parents=True, exist_ok=True)
        try:
            return dnssec_bench.run(args, work)
        finally:
            if not args.keep and not args.workdir:
                shutil.rmtree(work, ignore_errors=True)
    for name in ("dnsperf",) + (() if args.no_nsd else ("nsd", "nsd-control", "nsd-checkzone")):
        rb.tool(name)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="srvd-qps-"))
    work.mkdir(parents=True, exist_ok=True)
    out = work / "dnsperf"
    out.mkdir(exist_ok=True)
    lines = [
        f"srvd at the start: {rb.source_state()}",
        f"Python {sys.version.split()[0]}; {os.cpu_count()} cores; "
        f"{Path('/proc/meminfo').read_text().split()[1]} kB RAM; load average {rb.loadavg()}",
        f"command: {' '.join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])}",
    ]
    nsd_sizes = [
        s for s in args.size_list if not args.no_nsd and (s < 1_000_000 or args.nsd_million)
    ]
    results: list[SizeResult] = []
    setup: rb.NsdSetup | None = None
    checked = ""  # the edns-options file as dnsperf -B sends it
    try:
        for size in args.size_list:
            label = rb.count_text(size)
            log(f"{label} domains: writing srvd data and {args.queries:,} queries")
            data = rb.write_srvd_data(work, size, False)
            queries_path = work / f"queries-{label}.txt"
            queries = write_queries(size, args.queries, queries_path, rng)
            paced = QueryFile(queries_path, len(queries), "paced file")
            sample = rng.sample(queries, min(300, len(queries)))
            result = SizeResult(size, len(queries), mix_text(queries))
            result.mixes = write_mixes(size, queries, args, rng, work)
            results.append(result)
            wire = [m.files[0] for m in result.mixes if m.files[0].binary]
            if wire and not checked:
                checked = check_wire(wire[0], out)
                log(checked)
                lines.append(checked)
            if size in nsd_sizes and setup is None:
                setup, text = nsd_setup(work, max(nsd_sizes), data.configs["json"])
                lines.append(text)
            nsd = setup if size in nsd_sizes else None
            bench_servers(data, nsd, paced, result.mixes, sample, out, args, result)
    except KeyboardInterrupt:
        lines.append("INTERRUPTED: the figures below are partial")

    warmed = f"{args.warmup_passes} passes" if args.warmup_passes else f"{args.warmup:g} s"
    paced_text = (
        f"paced = -Q RATE -q {args.paced_outstanding} -l {args.search_seconds:g}, sustained when "
        f"under {100 * LOSS_LIMIT:g}% lost and ≥ {100 * PACE_LIMIT:g}% of RATE answered; "
        f"latency = -Q {args.latency_qps} -v -l {args.latency_seconds:g}"
        if args.paced
        else "no paced or fixed-load runs (--no-paced)"
    )
    lines.append(
        f"paced file: {args.queries:,} lines per size: 80% SRV on existing names, 5% TXT, "
        f"10% NXDOMAIN inside the zones, 5% A on existing names (NODATA), random domains, "
        f"random 0x20 case; each mix: unlimited runs dnsperf -c 8 -t 1 -q 100 "
        f"-l {args.seconds:g} (-B for edns-options) in {args.repeats} round(s) of one run of "
        f"each server, the order reversed every other round; srvd warmed up with {warmed} of a "
        f"mix's warm-up file before its runs, NSD and the floor with {args.warmup:g} s once; "
        f"{paced_text}"
    )
    for result in results:
        lines.append("")
        lines.append(
            f"== {rb.count_text(result.size)} domains (paced file {result.queries:,} queries: "
            f"{result.mix}) =="
        )
        lines.append(f"srvd as started for this size: {result.source}")
        lines.append("mixes:")
        lines += mix_lines(result)
        lines += mix_table(result, results)
        lines.append(
            "µs/answer: the server's CPU time (user + system of its processes, /proc/PID/stat) "
            "over the run / the answers dnsperf completed, median of the rounds; srvd/NSD: "
            "median of the per-round ratios"
        )
        lines.append("")
        lines += size_table(result, args.latency_qps)
        lines.append("")
        lines += details(result)
        if result.profile:
            lines.append("")
            lines += result.profile
    lines.append("")
    lines.append("== Targets (ratios srvd/NSD measured in this run) ==")
    lines += summary(results)
    runs = [
        run
        for result in results
        for f in result.servers.values()
        for run in [
            *(run for mix in result.mixes for run in f.runs(mix.name)),
            *f.search,
            *([f.latency] if f.latency else []),
        ]
    ]
    disturbed = [run for run in runs if run.interference > DISTURBED]
    repeated = sum(len(run.disturbed) for run in runs)
    lines.append(
        f"{len(runs)} measured runs; {repeated} tries repeated because other processes or the "
        f"hypervisor took > {DISTURBED:g}% of a core; {len(disturbed)} runs still disturbed; "
        f"hypervisor steal {statistics.mean(r.steal_cpu for r in runs) if runs else 0:.0f}% "
        f"of a core on average"
    )
    problems = [p for result in results for f in result.servers.values() for p in f.problems]
    if problems:
        lines.append(f"{len(problems)} PROBLEMS, see the details above")
    lines.append("")
    elapsed = time.monotonic() - began
    lines.append(
        f"total run time {elapsed / 60:.1f} min; load average now {rb.loadavg()}; data in {work}"
        + ("" if args.workdir or args.keep else " (deleted)")
    )
    print("\n".join(lines))
    if not args.workdir and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
