#!/usr/bin/env python3
"""srvd as the hidden primary of a Knot secondary that interprets its catalog: run by hand.

    python3 tests/perf/secondary_bench.py                  # 100k domains (minutes; both cores)
    python3 tests/perf/secondary_bench.py --domains 10000  # smaller

The issue's target: a new customer domain is answered by a Knot secondary within 5 s of
``srvd reload`` (the reload of a 100k-domain config included), and a reload that changes
nothing transfers nothing. Steps:

1. srvd with N domains (one zone each: ``_tcp.custNNNNNNN.example``), the catalog, TSIG, an ACL
   and NOTIFY to Knot; Knot 3.2 with ``catalog-role: interpret`` (as tests/test_secondaries.py).
2. Wait until Knot has loaded every member zone (srvd counts one zone AXFR per member; then a
   sample of members is asked of Knot). Time and Knot's memory (RSS) are reported.
3. Add one domain to an include, SIGHUP srvd, and time until Knot answers its _imaps._tcp SRV.
4. SIGHUP srvd again with nothing changed, wait, and check that no transfer happened (srvd's
   ``srvd_transfers_total``) and no NOTIFY was sent.

Loopback only. The report goes to stdout, progress to stderr. Not a pytest module.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from xfr_helpers import CATALOG, KEY_NAME, SECRET  # noqa: E402

from conftest import free_port, wait_for_dns  # noqa: E402

TARGET_SECONDS = 5.0
HOST = "127.0.0.1"
SRVD = [sys.executable, "-m", "srvd", "serve"]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def domain(i: int) -> str:
    return f"cust{i:07d}.example"


def write_srvd(directory: Path, count: int, knot_port: int) -> Path:
    (directory / "xfr.secret").write_text(SECRET + "\n", encoding="ascii")
    names = {domain(i): "standard" for i in range(count)}
    (directory / "domains.json").write_text(json.dumps({"domains": names}), encoding="utf-8")
    write_extra(directory, {})
    config = directory / "srvd.yaml"
    config.write_text(
        f"""\
zone:
  nameservers: [ns1.discovery.example.net, ns2.discovery.example.net]
  refresh: 3600
transfer:
  keys:
    - {{name: {KEY_NAME}, algorithm: hmac-sha256, secret_file: xfr.secret}}
  allow:
    - {{address: 127.0.0.1/32, key: {KEY_NAME}}}
  notify:
    - {{address: 127.0.0.1, port: {knot_port}, key: {KEY_NAME}}}
  notify_rate: 1000
catalog: {CATALOG}
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


def write_extra(directory: Path, names: dict[str, str]) -> None:
    path = directory / "extra.json"
    temporary = directory / "extra.json.new"
    temporary.write_text(json.dumps({"domains": names}), encoding="utf-8")
    temporary.replace(path)


def write_knot(directory: Path, srvd_port: int, port: int) -> Path:
    """As tests/xfr_helpers.start_knot, with both cores for Knot's workers."""
    for sub in ("run", "storage"):
        (directory / sub).mkdir(exist_ok=True)
    conf = directory / "knot.conf"
    conf.write_text(
        f"""\
server:
    rundir: "{directory}/run"
    listen: {HOST}@{port}
    tcp-workers: 2
    udp-workers: 2
    background-workers: 2
database:
    storage: "{directory}/storage"
log:
  - target: "{directory}/knot.log"
    any: notice
key:
  - id: {KEY_NAME}
    algorithm: hmac-sha256
    secret: {SECRET}
remote:
  - id: srvd
    address: {HOST}@{srvd_port}
    key: {KEY_NAME}
acl:
  - id: srvd-notify
    address: {HOST}
    key: {KEY_NAME}
    action: notify
template:
  - id: default
    storage: "{directory}/storage"
    zonefile-sync: -1
    zonefile-load: none
    journal-content: none
  - id: member
    master: srvd
    acl: srvd-notify
    zonefile-sync: -1
    zonefile-load: none
    journal-content: none
zone:
  - domain: {CATALOG}
    master: srvd
    acl: srvd-notify
    catalog-role: interpret
    catalog-template: member
""",
        encoding="utf-8",
    )
    return conf


def metric(port: int, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        metric_name, _, rest = key.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if metric_name == name and (not labels or got == want):
            total += float(value)
    return total


def transfers(port: int) -> float:
    """Every transfer srvd has served (all types, zones and the catalog; uptodate excluded)."""
    return sum(
        metric(port, "srvd_transfers_total", type=t, zone_kind=k)
        for t in ("axfr", "ixfr", "ixfr_full")
        for k in ("zone", "catalog")
    )


def srv_answered(port: int, name: str) -> bool:
    query = dns.message.make_query(f"_imaps._tcp.{name}", "SRV")
    try:
        reply = dns.query.udp(query, HOST, port=port, timeout=0.5)
    except Exception:
        return False
    return reply.rcode() == dns.rcode.NOERROR and any(
        rrset.rdtype == dns.rdatatype.SRV for rrset in reply.answer
    )


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.02) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(step)
    return None


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", type=int, default=100_000)
    parser.add_argument("--load-timeout", type=float, default=3600.0)
    parser.add_argument("--quiet-wait", type=float, default=15.0, help="after a no-change reload")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    count = args.domains
    knotd = next((p for p in ("/usr/sbin/knotd", "/usr/bin/knotd") if os.path.exists(p)), None)
    if knotd is None:
        print("knotd is not installed (Debian: knot)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="srvd-secondary-"))
    srvd_port, knot_port, metrics_port = free_port(), free_port(), free_port()
    config = write_srvd(work, count, knot_port)
    knot_conf = write_knot(work, srvd_port, knot_port)
    processes: list[subprocess.Popen[bytes]] = []
    report: list[tuple[str, str]] = []
    try:
        log(f"srvd: {count} domains, catalog, NOTIFY to Knot on {knot_port}")
        started = time.monotonic()
        srvd_log = (work / "srvd.log").open("wb")
        listen = ["--listen", f"{HOST}:{srvd_port}", "--metrics", f"{HOST}:{metrics_port}"]
        srvd = subprocess.Popen(
            [*SRVD, "-c", str(config), *listen],
            stdout=srvd_log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        processes.append(srvd)
        wait_for_dns(srvd_port, timeout=300)
        report.append(("srvd cold start", f"{time.monotonic() - started:.1f} s"))
        log("knotd: interpreting the catalog")
        started = time.monotonic()
        knot_out = (work / "knotd.out").open("wb")
        knot = subprocess.Popen(
            [knotd, "-c", str(knot_conf), "-s", str(work / "run" / "knot.sock")],
            stdout=knot_out,
            stderr=subprocess.STDOUT,
        )
        processes.append(knot)
        wait_for_dns(knot_port, timeout=60)
        sample = [domain(i) for i in random.Random(1).sample(range(count), min(count, 200))]
        peak = 0.0
        last_log = 0.0
        loaded_at: float | None = None
        while time.monotonic() - started < args.load_timeout:
            done = metric(metrics_port, "srvd_transfers_total", type="axfr", zone_kind="zone")
            peak = max(peak, rss_mib(knot.pid))
            now = time.monotonic() - started
            if now - last_log >= 30:
                log(f"  {now:.0f} s: {done:.0f} member AXFRs, Knot RSS {peak:.0f} MiB")
                last_log = now
            if done >= count and all(srv_answered(knot_port, name) for name in sample):
                loaded_at = now
                break
            if knot.poll() is not None:
                raise RuntimeError(f"knotd exited: {(work / 'knotd.out').read_text()}")
            time.sleep(1)
        if loaded_at is None:
            done = metric(metrics_port, "srvd_transfers_total", type="axfr", zone_kind="zone")
            report.append(
                (
                    "Knot loading members",
                    f"NOT DONE: {done:.0f}/{count} after {args.load_timeout:.0f} s",
                )
            )
            return 1
        report.append(("Knot: every member loaded", f"{loaded_at:.1f} s ({count} zones)"))
        report.append(("Knot RSS after load", f"{rss_mib(knot.pid):.0f} MiB (peak {peak:.0f})"))
        report.append(("Knot CPU for the load", f"{cpu_seconds(knot.pid):.1f} s"))
        report.append(("srvd RSS", f"{rss_mib(srvd.pid):.0f} MiB"))
        time.sleep(5)  # settle: Knot's last SOA checks

        new = "newcustomer.example"
        log(f"reload: add {new}")
        before = transfers(metrics_port)
        write_extra(work, {new: "standard"})
        reloads = metric(metrics_port, "srvd_config_last_reload_success_timestamp_seconds")
        started = time.monotonic()
        srvd.send_signal(signal.SIGHUP)
        answered = wait_until(lambda: srv_answered(knot_port, new), 60)
        reloaded = wait_until(
            lambda: (
                metric(metrics_port, "srvd_config_last_reload_success_timestamp_seconds") != reloads
            ),
            5,
        )
        verdict = (
            ""
            if answered is None
            else ("  (target 5 s: met)" if answered <= TARGET_SECONDS else "  (target 5 s: MISSED)")
        )
        report.append(
            (
                "SIGHUP → Knot answers the new domain's SRV",
                ("no answer in 60 s" if answered is None else f"{answered:.2f} s") + verdict,
            )
        )
        report.append(("  transfers it took", f"{transfers(metrics_port) - before:.0f}"))
        del reloaded
        time.sleep(3)

        log("reload: nothing changed")
        before = transfers(metrics_port)
        notify_before = metric(metrics_port, "srvd_notify_sent_total")
        srvd.send_signal(signal.SIGHUP)
        time.sleep(args.quiet_wait)
        moved = transfers(metrics_port) - before
        notified = metric(metrics_port, "srvd_notify_sent_total") - notify_before
        report.append(
            (
                f"no-change reload: transfers in {args.quiet_wait:.0f} s",
                f"{moved:.0f}, NOTIFY results {notified:.0f}"
                + ("  (target: met)" if moved == 0 else "  (target: MISSED)"),
            )
        )
        return 0
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        width = max((len(k) for k, _ in report), default=0)
        print(f"srvd + Knot {count} domains (work directory {work})")
        for key, value in report:
            print(f"  {key:<{width}}  {value}")
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
