"""The signed catalog transferred from a running srvd: dnspython's inbound AXFR and IXFR (TSIG
on), a Knot DNS secondary that interprets it (RFC 9432) and serves it, kdig +dnssec against Knot,
and the signed export that dnssec-verify and ldns-verify-zone accept."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.xfr
import dns.zone
from catalog_oracle import check_signed_zone, records_of
from xfr_helpers import (
    CATALOG,
    KEY_NAME,
    SECRET,
    keyring,
    metric,
    primary_config,
    question_answer,
    start_knot,
    wait_until,
)

from srvd.cli import main
from srvd.wire.dnssec import generate_key

from conftest import free_port, require_tool, start_srvd

ORIGIN = dns.name.from_text(CATALOG)
TSIG_KEY = f"hmac-sha256:{KEY_NAME}:{SECRET}"
DOMAINS = [f"c{i}.example.com" for i in range(8)]


def signed_primary(tmp: Path, domains: list[str], notify: list[int]) -> Path:
    key = tmp / "csk.pem"
    if not key.exists():
        key.write_bytes(generate_key(13))
    return primary_config(tmp, domains, notify=notify, extra=f"dnssec:\n  key: {key}")


def reload(srvd_pid: int, config: Path, tmp: Path, domains: list[str], notify: list[int]) -> None:
    """Write the configuration with ``domains``, a newer file time, SIGHUP."""
    signed_primary(tmp, domains, notify)
    later = time.time() + 5
    os.utime(config, (later, later))
    os.kill(srvd_pid, signal.SIGHUP)


def catalog_xfr(port: int, zone: dns.zone.Zone | None = None) -> dns.zone.Zone:
    """AXFR (``zone`` None) or IXFR from ``zone``'s serial, applied by dnspython (TSIG)."""
    if zone is None:
        zone = dns.zone.Zone(ORIGIN, relativize=False)
        query, _ = dns.xfr.make_query(zone, serial=None, keyring=keyring())
    else:
        query, _ = dns.xfr.make_query(zone, keyring=keyring())
    dns.query.inbound_xfr("127.0.0.1", zone, query, port=port, timeout=20)
    return zone


def soa_serial(port: int) -> int:
    query = dns.message.make_query(CATALOG, "SOA")
    reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=3)
    return int(reply.answer[0][0].serial)


def catalog_transfers(port: int, kind: str) -> float:
    return metric(port, "srvd_transfers_total", type=kind, zone_kind="catalog")


def test_dnspython_transfers_the_signed_catalog_and_applies_its_ixfr(tmp_path: Path) -> None:
    metrics_port = free_port()
    config = signed_primary(tmp_path, DOMAINS, [])
    srvd = start_srvd(config, "--metrics", f"127.0.0.1:{metrics_port}")
    try:
        zone = catalog_xfr(srvd.port)
        check_signed_zone(zone, len(list(zone.iterate_rdatas("PTR"))), time.time())
        assert zone.find_rdataset(ORIGIN, "SOA")[0].serial == soa_serial(srvd.port)
        assert catalog_transfers(metrics_port, "axfr") == 1

        serial = soa_serial(srvd.port)
        reload(srvd.process.pid, config, tmp_path, [*DOMAINS, "new.example.org"], [])
        assert wait_until(lambda: soa_serial(srvd.port) != serial, 30) is not None, srvd.log()
        catalog_xfr(srvd.port, zone)  # IXFR, deletions checked exactly by dnspython
        assert catalog_transfers(metrics_port, "ixfr") == 1, srvd.log()
        fresh = catalog_xfr(srvd.port)
        assert records_of(zone) == records_of(fresh)
        check_signed_zone(zone, len(list(zone.iterate_rdatas("PTR"))), time.time())
        # current: the SOA alone
        catalog_xfr(srvd.port, zone)
        assert catalog_transfers(metrics_port, "uptodate") == 1
    finally:
        srvd.stop()


def kdig_axfr(kdig: str, port: int) -> dns.zone.Zone:
    """The catalog as a server holds it, transferred with kdig (+dnssec, TSIG)."""
    done = subprocess.run(
        [kdig, "@127.0.0.1", "-p", str(port), "+dnssec", "-y", TSIG_KEY, CATALOG, "AXFR"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0 and "; Transfer failed" not in done.stdout, done.stdout
    lines = [line for line in done.stdout.splitlines() if line and not line.startswith(";")]
    zone = dns.zone.from_text("\n".join(lines[:-1]), ORIGIN, relativize=False)  # one SOA
    return zone


def test_knot_uses_the_signed_catalog_and_follows_its_ixfr(tmp_path: Path) -> None:
    """Knot interprets the signed catalog (creates the member zones), holds it whole (kdig
    +dnssec AXFR from Knot validates: every RRSIG, the NSEC chain) and follows a reload by an
    IXFR. Knot answers no queries into a catalog zone it interprets (REFUSED, EDE 20): what a
    consumer holds is checked by transferring it from Knot."""
    knotd = require_tool("knotd")
    kdig = require_tool("kdig")
    knot_port = free_port()
    metrics_port = free_port()
    config = signed_primary(tmp_path, DOMAINS, [knot_port])
    srvd = start_srvd(config, "--metrics", f"127.0.0.1:{metrics_port}")
    knot = None
    try:
        (tmp_path / "knot").mkdir()
        knot = start_knot(knotd, tmp_path / "knot", srvd.port, knot_port, transfer_out=True)

        def serves(domain: str) -> bool:
            rcode, records = question_answer(knot_port, f"_imaps._tcp.{domain}", "SRV")
            return rcode == 0 and bool(records)

        took = wait_until(lambda: all(serves(d) for d in DOMAINS), 60)
        assert took is not None, f"Knot did not create the members:\n{knot.text()}"

        def knot_holds_what_srvd_serves() -> bool:
            held = kdig_axfr(kdig, knot_port)
            check_signed_zone(held, len(list(held.iterate_rdatas("PTR"))), time.time())
            return records_of(held) == records_of(catalog_xfr(srvd.port))

        assert knot_holds_what_srvd_serves()
        assert catalog_transfers(metrics_port, "axfr") >= 1

        added = "late.example.org"
        reload(srvd.process.pid, config, tmp_path, [*DOMAINS, added], [knot_port])
        assert wait_until(lambda: serves(added), 30) is not None, knot.text()
        assert catalog_transfers(metrics_port, "ixfr") == 1, srvd.log()
        assert wait_until(knot_holds_what_srvd_serves, 10) is not None, knot.text()
        assert "IXFR, incoming" in knot.text()
    finally:
        if knot is not None:
            knot.stop()
        srvd.stop()


def test_the_signed_catalog_export_verifies(tmp_path: Path) -> None:
    verify = require_tool("dnssec-verify")
    ldns = require_tool("ldns-verify-zone")
    domains = [f"x{i:04d}.example.com" for i in range(1500)]  # 2,500 members and more
    config = signed_primary(tmp_path, domains, [])
    out = tmp_path / "zones"
    assert main(["zone", "--all", "-c", str(config), "-o", str(out)]) == 0
    path = out / f"{CATALOG}.zone"
    zone = dns.zone.from_file(str(path), CATALOG, relativize=False)
    members = len(list(zone.iterate_rdatas("PTR")))
    assert members == 2500  # two zones for "standard" domains, one for every third ("branded")
    check_signed_zone(zone, members, time.time())
    done = subprocess.run(
        [verify, "-z", "-o", CATALOG, str(path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "Zone fully signed" in done.stdout + done.stderr, done.stderr
    done = subprocess.run([ldns, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "verified" in done.stdout, done.stdout + done.stderr
