#!/usr/bin/env python3
"""Two srvd source trees side by side: server CPU per answer and qps on the same traffic.

    git worktree add /tmp/before <commit>
    python3 tests/perf/compare_trees.py /tmp/before .        # 100k domains, 2 rounds (~4 min)

Both trees serve the same configuration (the bundled example's zone settings and profiles, N
domains ``custNNNNNNN.example`` on the profile "standard" from a JSON include, rate limiting
charging every reply, metrics off) on loopback, up side by side; each mix is a dnsperf run of
``--seconds`` at each in turn, the order reversed every other round. Mixes: ``repeated`` (200,000
lower-case SRV queries, replayed), ``0x20`` (1.5M lines, every letter's case drawn anew) and
``new-names`` (1.5M lines, a random label under ``_tcp`` of a random domain: NXDOMAIN). CPU per
answer is user + system time from /proc/PID/stat over the run, divided by the answers dnsperf
completed. Not a pytest module (tests/perf/conftest.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("_imaps._tcp", "_submissions._tcp", "_caldavs._tcp", "_jmap._tcp", "_autodiscover._tcp")


def write_data(directory: Path, domains: int, seed: int) -> None:
    example = (ROOT / "srvd" / "data" / "example.yaml").read_text()
    head = example[: example.index("domains:")]
    rrl = "rrl: {responses_per_second: 1000000, exempt: []}\n"
    (directory / "main.yaml").write_text(head + "include: [domains.json]\n" + rrl)
    names = {f"cust{i:07d}.example": "standard" for i in range(domains)}
    (directory / "domains.json").write_text(json.dumps({"domains": names}))
    rng = random.Random(seed)

    def domain() -> str:
        return f"cust{rng.randrange(domains):07d}.example"

    with (directory / "repeated").open("w") as out:
        for _ in range(200_000):
            out.write(f"{rng.choice(SERVICES)}.{domain()} SRV\n")
    with (directory / "0x20").open("w") as out:
        for _ in range(1_500_000):
            name = f"{rng.choice(SERVICES)}.{domain()}"
            out.write("".join(c.upper() if rng.random() < 0.5 else c for c in name) + " SRV\n")
    with (directory / "new-names").open("w") as out:
        for _ in range(1_500_000):
            out.write(f"_{rng.getrandbits(40):010x}._tcp.{domain()} SRV\n")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(tree: Path, directory: Path, port: int, last: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(tree.resolve()))
    command = [sys.executable, "-m", "srvd", "serve", "-c", "main.yaml"]
    command += ["--listen", f"127.0.0.1:{port}", "--metrics", "off"]
    log = (directory / f"srvd-{port}.log").open("w")
    process = subprocess.Popen(command, cwd=directory, env=env, stderr=log)
    query = dns.message.make_query(f"_imaps._tcp.{last}", "SRV")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2).answer:
                return process
        except (OSError, dns.exception.Timeout):
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"srvd from {tree} did not answer on port {port}")


def run(pid: int, port: int, queries: Path, seconds: float) -> tuple[float, float]:
    """(qps, server CPU µs per answer) of one dnsperf run."""
    before = cpu_seconds(pid)
    command = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries)]
    command += ["-c", "8", "-t", "1", "-q", "100", "-l", str(seconds)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    used = cpu_seconds(pid) - before
    match = re.search(r"Queries completed:\s+(\d+)", output)
    completed = int(match.group(1)) if match else 0
    return completed / seconds, (used / completed * 1e6 if completed else float("nan"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="a source tree (a git worktree)")
    parser.add_argument("after", type=Path, help="another source tree")
    parser.add_argument("--domains", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    trees = {"before": args.before, "after": args.after}
    with tempfile.TemporaryDirectory(prefix="srvd-compare-") as temporary:
        directory = Path(temporary)
        write_data(directory, args.domains, args.seed)
        last = f"cust{args.domains - 1:07d}.example"
        ports = {"before": 5301, "after": 5302}
        servers = {name: start(tree, directory, ports[name], last) for name, tree in trees.items()}
        try:
            for name, server in servers.items():  # warm-up
                run(server.pid, ports[name], directory / "repeated", 3)
            figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
            for round_ in range(args.rounds):
                for mix in ("repeated", "0x20", "new-names"):
                    order = list(servers) if round_ % 2 == 0 else list(servers)[::-1]
                    for name in order:
                        qps, cpu = run(
                            servers[name].pid, ports[name], directory / mix, args.seconds
                        )
                        figures.setdefault((mix, name), []).append((qps, cpu))
                        print(
                            f"round {round_ + 1} {mix:9} {name:6} {qps:9,.0f} qps "
                            f"{cpu:5.1f} µs/answer",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            for server in servers.values():
                server.terminate()
                server.wait()
    print(f"{args.domains:,} domains; before = {args.before}, after = {args.after}")
    print("mix       | tree   | qps per round            | server CPU µs/answer per round")
    for (mix, name), runs in figures.items():
        rates = ", ".join(f"{q:,.0f}" for q, _ in runs)
        costs = ", ".join(f"{c:.1f}" for _, c in runs)
        print(f"{mix:9} | {name:6} | {rates:24} | {costs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
