"""``bench.py --dnssec``: what signing costs (docs/dnssec.md), srvd alone, per size.

For each size N (customer domains ``custNNNNNNN.example`` on the example's "standard" profile, as
the rest of bench.py), two servers: the same configuration unsigned and signed (a new ECDSA P-256
key). Figures:

- ready: seconds from start to the first answer, and the RSS then (signed: target <= 20 s and
  <= 768 MiB at 1M domains);
- repeated: the repeated mix (bench.py's paced query file) with DO=1 to the signed server vs
  DO=0 to the unsigned one, dnsperf as fast as it answers: server CPU per answer (from
  /proc/PID/stat) and the ratio (target <= 1.3x); the signed server gets a warm-up pass first, so
  its signature cache holds what the mix asks;
- presign: the signed server is left idle until it has signed ahead what each zone's negative
  answers need (srvd.server.presign: srvd_dnssec_presign_pending_zones reaches 0), as a server
  that has run for a while has; the seconds it took are reported;
- flood: random new names (bench.py's new-names mix: NXDOMAIN under every zone) with DO=1 to the
  signed server, ``--flood-rounds`` runs (2) with different names: the first run makes the
  zones' denial signatures, the later ones find more of them cached (as a long flood would):
  CPU per answer of each (target <= 40 us), the RSS before and its peak during them all
  (sampled every 5 ms: bounded by dnssec.cache_size), and srvd's signature counters;
- every run's answers are sampled before and after and checked to carry RRSIGs (DO=1).

Printed as a report on stdout; progress on stderr. Exit 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rdatatype

from perf import reload_bench as rb

HOST = rb.HOST
MIB = rb.MIB
REPEATED_RATIO = 1.3
FLOOD_US = 40.0
READY_1M = 20.0
RSS_1M = 768 * MIB


@dataclass
class Load:
    label: str
    answers: int
    seconds: float
    cpu: float  # server CPU seconds

    @property
    def us_per_answer(self) -> float:
        return 1e6 * self.cpu / self.answers if self.answers else float("nan")

    @property
    def qps(self) -> float:
        return self.answers / self.seconds if self.seconds else 0.0


def log(message: str) -> None:
    rb.log(message)


def dnsperf(
    port: int, queries: Path, seconds: float, do: bool, pid: int, label: str, passes: int = 0
) -> Load:
    """dnsperf as fast as the server answers; the server's CPU over the run. ``passes``: run
    through the query file that many times (``seconds`` then only caps the run)."""
    command = [rb.tool("dnsperf"), "-s", HOST, "-p", str(port), "-d", str(queries)]
    command += ["-l", f"{seconds:g}", "-c", "4", "-t", "1", "-q", "100"]
    if passes:
        command += ["-n", str(passes)]
    if do:
        command += ["-D"]  # the DO bit (and EDNS)
    else:
        command += ["-e"]  # EDNS without DO: the same payload size
    before = rb.tree_cpu(pid)
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    cpu = rb.tree_cpu(pid) - before
    found = re.search(r"Queries completed:\s+(\d+)", done.stdout)
    answers = int(found.group(1)) if found else 0
    if not found:
        log(f"  {label}: dnsperf said:\n{done.stdout}\n{done.stderr}")
    return Load(label, answers, elapsed, cpu)


def signed(port: int, name: str, qtype: str) -> bool:
    """Whether a DO=1 answer carries RRSIGs."""
    query = dns.message.make_query(name, qtype, want_dnssec=True)
    reply = dns.query.tcp(query, HOST, port=port, timeout=3)
    return any(r.rdtype == dns.rdatatype.RRSIG for r in (*reply.answer, *reply.authority))


def counters(metrics: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://{HOST}:{metrics}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("srvd_dnssec_") and " " in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def presigned(metrics: int, timeout: float) -> float | None:
    """Seconds until srvd_dnssec_presign_pending_zones is 0 (None: not within ``timeout``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if counters(metrics).get("srvd_dnssec_presign_pending_zones", 1) == 0:
            return time.monotonic() - started
        time.sleep(0.5)
    return None


def one_size(size: int, args: argparse.Namespace, work: Path, rng: random.Random) -> list[str]:
    # (bench imports this module)
    from perf.bench import new_names, start_srvd, write_lines, write_queries
    from srvd.wire.dnssec import generate_key

    label = rb.count_text(size)
    log(f"--dnssec {label} domains: writing the configurations and queries")
    data = rb.write_srvd_data(work, size, False)
    plain = data.configs["json"]
    key = data.directory / "csk.pem"
    key.write_bytes(generate_key(13))
    key.chmod(0o600)
    signed_config = data.directory / "srvd-json-signed.yaml"
    extra = f"  cache_size: {args.dnssec_cache}\n" if args.dnssec_cache else ""
    extra += f"  denial: {args.dnssec_denial}\n" if args.dnssec_denial else ""
    signed_config.write_text(plain.read_text() + f"dnssec:\n  key: {key}\n{extra}")
    repeated = work / f"dnssec-repeated-{label}.txt"
    queries = write_queries(size, args.queries, repeated, rng)
    repeated.write_text("".join(f"{name.lower()} {qtype}\n" for name, qtype in queries))
    # the flood's rounds, each with new names: the first makes the zones' denial signatures,
    # the later ones find more and more of them cached
    floods = [work / f"dnssec-flood-{label}-{n + 1}.txt" for n in range(max(1, args.flood_rounds))]
    for path in floods:
        write_lines(path, new_names(size, args.fresh, rng))
    sample = rng.sample(queries, min(20, len(queries)))

    denial = args.dnssec_denial or "nsec (the default)"
    lines = [f"## DNSSEC at {label} domains, denial: {denial}"]
    servers: list[rb.Server] = []
    try:
        loads: dict[str, Load] = {}
        for tag, config in (("unsigned", plain), ("signed", signed_config)):
            metrics = rb.free_port()
            server = start_srvd(config, data.directory, f"dnssec-{tag}-{label}", metrics)
            servers.append(server)
            ready = rb.wait_ready(server, rb.domain(size), args.timeout)
            memory = rb.memory(server.process.pid)
            took = f"{ready:.2f} s" if ready is not None else "never"
            line = f"- {tag}: ready in {took}, RSS {memory.rss / MIB:,.0f} MiB"
            if tag == "signed" and size >= 1_000_000 and ready is not None:
                ok = ready <= READY_1M and memory.rss <= RSS_1M
                line += f" (targets <= {READY_1M:g} s, <= 768 MiB: {'met' if ok else 'MISSED'})"
            lines.append(line)
            log(line)
            if ready is None:
                lines.append(f"  {server.tail()}")
                return lines
            pid = server.process.pid
            if tag == "unsigned":
                loads["unsigned"] = dnsperf(server.port, repeated, args.seconds, False, pid, tag)
                server.stop()
                continue
            # the server signs ahead, while idle, what each zone's negative answers need
            # (srvd.server.presign): the runs below find a running server's steady state
            waited = presigned(metrics, args.timeout)
            line = (
                f"- presigned while idle: {waited:.1f} s after ready"
                if waited
                else ("- presigning not done within the timeout")
            )
            lines.append(line)
            log(line)
            bad = [q for q in sample if not signed(server.port, q[0], q[1])]
            lines.append(f"- DO=1 answers with RRSIGs: {len(sample) - len(bad)}/{len(sample)}")
            # one whole pass of the query file first: every question signed once (the repeated
            # case is the one whose signatures are cached; a warm-up of a few seconds would leave
            # most of a large file's questions to be signed during the measured run)
            dnsperf(server.port, repeated, 600, True, pid, "warm-up", passes=1)
            loads["signed"] = dnsperf(server.port, repeated, args.seconds, True, pid, "signed")
            loads["signed-do0"] = dnsperf(server.port, repeated, args.seconds, False, pid, "do0")
            before = rb.memory(pid)
            counted = counters(metrics)
            sampler = rb.PeakSampler(pid)
            sampler.start()
            for n, path in enumerate(floods, 1):
                name = f"flood {n}"
                loads[name] = dnsperf(server.port, path, args.seconds, True, pid, name)
            peak = sampler.stop()
            after = counters(metrics)
            made = after.get("srvd_dnssec_signatures_total", 0) - counted.get(
                "srvd_dnssec_signatures_total", 0
            )
            lines.append(
                f"- flood: RSS {before.rss / MIB:,.0f} MiB before, peak {peak.rss / MIB:,.0f} "
                f"MiB during; {made:,.0f} signatures made, "
                f"{after.get('srvd_dnssec_cache_entries', 0):,.0f} cached "
                f"(cache_size {after.get('srvd_dnssec_cache_size', 0):,.0f})"
            )
        unsigned, signed_load = loads["unsigned"], loads["signed"]
        ratio = signed_load.us_per_answer / unsigned.us_per_answer
        lines.append("")
        lines.append("| run | answers | qps | server CPU per answer |")
        lines.append("|---|---|---|---|")
        for load in loads.values():
            lines.append(
                f"| {load.label} | {load.answers:,} | {load.qps:,.0f} | "
                f"{load.us_per_answer:.1f} us |"
            )
        lines.append("")
        lines.append(
            f"- repeated DO=1 / unsigned CPU per answer: {ratio:.2f}x "
            f"(target <= {REPEATED_RATIO}x: {'met' if ratio <= REPEATED_RATIO else 'MISSED'})"
        )
        for name in (f"flood {n}" for n in range(1, len(floods) + 1)):
            flood_us = loads[name].us_per_answer
            lines.append(
                f"- random-name DO=1 {name}: {flood_us:.1f} us CPU per answer "
                f"(target <= {FLOOD_US:g} us: {'met' if flood_us <= FLOOD_US else 'MISSED'})"
            )
        return lines
    finally:
        for server in servers:
            server.stop()


def run(args: argparse.Namespace, work: Path) -> int:
    rng = random.Random(args.seed)
    rb.tool("dnsperf")
    report = [f"srvd at the start: {rb.source_state()}", f"load average {rb.loadavg()}"]
    for size in args.size_list:
        report += one_size(size, args, work, rng)
        report.append("")
    print("\n".join(report))
    return 0
