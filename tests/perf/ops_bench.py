"""What the operations of issue 15 cost at a given size: the workers' snapshot (written by the
primary after each load, read by a worker at start and on reload), the health probe's reading
of a configuration (against the full load it replaced), and ``srvd diff``'s comparison.

    python3 tests/perf/ops_bench.py --domains 1000000

prints one line per figure (seconds, and octets or MiB); run by hand, never by the test suite.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from srvd.config import load_config  # noqa: E402
from srvd.ops.health import probe_plan  # noqa: E402
from srvd.server.control import differences  # noqa: E402
from srvd.server.loading import load_aside  # noqa: E402
from srvd.server.workers import read_snapshot, write_snapshot  # noqa: E402

HEAD = """\
listen: [0.0.0.0:53]
zone:
  nameservers: [ns1.discovery.example.net, ns2.discovery.example.net]
profiles:
  standard:
    imaps: {target: imap.example.net, port: 993}
    submissions: {target: smtp.example.net, port: 465}
    axigen: webmail.example.net
domains:
"""


def timed(what: str, call: object, *args: object) -> object:
    started = time.perf_counter()
    result = call(*args)  # type: ignore[operator]
    print(f"{what}: {time.perf_counter() - started:.3f} s")
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--domains", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "srvd.yaml"
        with open(config, "w") as out:
            out.write(HEAD)
            for i in range(args.domains):
                out.write(f"  d{i}.example.com: standard\n")
        print(f"{args.domains} domains")
        built = timed("load_aside (start or reload)", load_aside, str(config))
        snapshot = os.path.join(tmp, "snapshot")
        timed("write_snapshot (primary, worker thread)", write_snapshot, snapshot, 1, built)
        print(f"snapshot size: {os.path.getsize(snapshot) / 2**20:.1f} MiB")
        timed("read_snapshot (worker start or reload)", read_snapshot, snapshot)
        timed("srvd health: probe_plan (now)", probe_plan, str(config))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        timed("srvd health: load_config (before issue 15)", load_config, str(config))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"  (max RSS grew by {max(after - before, 0) / 1024:.0f} MiB)")
        zones = built.index.zones  # type: ignore[attr-defined]
        timed("srvd diff: differences (same zones)", differences, zones, dict(zones))
    return 0


if __name__ == "__main__":
    sys.exit(main())
