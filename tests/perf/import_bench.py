"""``srvd import`` of a generated zone set: wall time, profiles, domains per second.

The issue's target: 10,000 domains on 5 patterns turned into 5 profiles in under 10 s.

    python3 tests/perf/import_bench.py                      # 10,000 domains, 5 patterns
    python3 tests/perf/import_bench.py --domains 100000 --jobs 2

The zones come from tests/migrate_zones.py (the round-trip test's generator) without
deviations or odd cases, so each pattern is one profile. Writing the zone files is not timed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from migrate_zones import NAMESERVERS, generate  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="srvd-import-bench-") as tmp:
        zones = Path(tmp) / "zones"
        generate(zones, args.domains, overrides=0.0, odd=False)
        out = Path(tmp) / "out"
        command = [
            sys.executable, "-m", "srvd", "import", "--zones", str(zones),
            "--nameservers", ",".join(NAMESERVERS), "-o", str(out), "--jobs", str(args.jobs),
        ]  # fmt: skip
        started = time.monotonic()
        result = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent.parent)
        seconds = time.monotonic() - started
        if result.returncode != 0:
            print(result.stdout + result.stderr, file=sys.stderr)
            return 1
        check = subprocess.run(
            [sys.executable, "-m", "srvd", "check", "-c", str(out / "srvd.yaml")],
            capture_output=True, text=True, cwd=HERE.parent.parent,
        )  # fmt: skip
        print(result.stdout.splitlines()[0])
        print(check.stdout.strip())
        print(
            f"srvd import: {args.domains} domains, --jobs {args.jobs}: {seconds:.2f} s wall "
            f"(whole command, interpreter start included), "
            f"{args.domains / seconds:,.0f} domains/s; load average {os.getloadavg()[0]:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
