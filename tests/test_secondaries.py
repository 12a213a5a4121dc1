"""srvd as a hidden primary with real secondaries on loopback: Knot DNS interpreting srvd's
catalog zone (RFC 9432), NSD as a plain secondary refreshed by NOTIFY. TSIG on throughout."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import dns.rcode
from xfr_helpers import (
    CATALOG,
    catalog_transfers,
    metric,
    primary_config,
    question_answer,
    start_knot,
    start_nsd,
    wait_until,
    zone_transfers,
)

from conftest import free_port, require_tool, start_srvd

DOMAINS = [f"d{i}.example.com" for i in range(12)]
NAMES = [
    ("_imaps._tcp.{d}", "SRV"),
    ("_submissions._tcp.{d}", "SRV"),
    ("_caldavs._tcp.{d}", "TXT"),
    ("_tcp.{d}", "SOA"),
    ("_tcp.{d}", "NS"),
    ("_nothing._tcp.{d}", "SRV"),
    ("_axigen.{d}", "TXT"),
]


def _same_answers(srvd_port: int, other_port: int, domain: str) -> list[str]:
    """Differences between srvd's and a secondary's answers for one domain (SRV order aside)."""
    out = []
    for name, rdtype in NAMES:
        qname = name.format(d=domain)
        mine = question_answer(srvd_port, qname, rdtype)
        theirs = question_answer(other_port, qname, rdtype)
        if mine != theirs:
            out.append(f"{qname} {rdtype}: srvd {mine}, secondary {theirs}")
    return out


def _serves(port: int, domain: str) -> bool:
    rcode, answer = question_answer(port, f"_imaps._tcp.{domain}", "SRV")
    return rcode == dns.rcode.NOERROR and bool(answer)


def _gone(port: int, domain: str) -> bool:
    rcode, _ = question_answer(port, f"_imaps._tcp.{domain}", "SRV")
    return rcode in (dns.rcode.REFUSED, dns.rcode.NOTAUTH)


def test_knot_interprets_the_catalog(tmp_path: Path) -> None:
    knotd = require_tool("knotd")
    knot_port = free_port()
    metrics_port = free_port()
    config = primary_config(tmp_path, DOMAINS, notify=[knot_port])
    srvd = start_srvd(config, "--metrics", f"127.0.0.1:{metrics_port}")
    knot = None
    try:
        (tmp_path / "knot").mkdir()
        knot = start_knot(knotd, tmp_path / "knot", srvd.port, knot_port)
        took = wait_until(lambda: all(_serves(knot_port, d) for d in DOMAINS), 60)
        assert took is not None, f"Knot did not load the members:\n{knot.text()}"
        for domain in DOMAINS:
            assert _same_answers(srvd.port, knot_port, domain) == []
        catalogs = catalog_transfers(metrics_port)
        zones = zone_transfers(metrics_port)
        assert catalogs == 1
        # every member zone: _tcp and _axigen for "standard" domains, _tcp for "branded"
        assert zones == sum(1 if i % 3 == 2 else 2 for i in range(len(DOMAINS)))

        # add one domain: one catalog transfer, one zone transfer, Knot answers within 5 s
        added = "new-customer.example.org"
        primary_config(tmp_path, [*DOMAINS, added], notify=[knot_port])
        os.utime(config, (time.time() + 5, time.time() + 5))  # a newer file time: a new serial
        started = time.monotonic()
        os.kill(srvd.process.pid, signal.SIGHUP)
        took = wait_until(lambda: _serves(knot_port, added), 30)
        assert took is not None, f"Knot never served {added}:\n{knot.text()}"
        elapsed = time.monotonic() - started
        print(f"\nreload -> Knot answers the new domain: {elapsed:.2f} s")
        (tmp_path / "timing.txt").write_text(f"{elapsed:.3f}\n")
        assert elapsed < 5.0, f"{elapsed:.2f} s"
        assert _same_answers(srvd.port, knot_port, added) == []
        time.sleep(1.0)  # anything more that would come
        assert catalog_transfers(metrics_port) == catalogs + 1
        assert zone_transfers(metrics_port) == zones + 2
        assert metric(metrics_port, "srvd_transfers_total", type="ixfr", zone_kind="catalog") == 1

        # remove one: Knot drops it
        removed = DOMAINS[0]
        primary_config(tmp_path, [*DOMAINS[1:], added], notify=[knot_port])
        os.utime(config, (time.time() + 10, time.time() + 10))
        os.kill(srvd.process.pid, signal.SIGHUP)
        assert wait_until(lambda: _gone(knot_port, removed), 30) is not None, knot.text()
        assert _serves(knot_port, DOMAINS[1])

        # a reload that changes nothing: no NOTIFY, no transfer
        time.sleep(1.0)
        before = (
            catalog_transfers(metrics_port),
            zone_transfers(metrics_port),
            metric(metrics_port, "srvd_notify_sent_total", result="ok"),
        )
        os.utime(config, (time.time() + 15, time.time() + 15))
        os.kill(srvd.process.pid, signal.SIGHUP)
        time.sleep(3.0)
        after = (
            catalog_transfers(metrics_port),
            zone_transfers(metrics_port),
            metric(metrics_port, "srvd_notify_sent_total", result="ok"),
        )
        assert after == before
        assert "no domain changed" in srvd.log()
        assert CATALOG in knot.text()
    finally:
        if knot is not None:
            knot.stop()
        srvd.stop()


def test_nsd_secondary_refreshes_on_notify(tmp_path: Path) -> None:
    nsd = require_tool("nsd")
    nsd_port = free_port()
    metrics_port = free_port()
    domains = DOMAINS[:3]
    config = primary_config(tmp_path, domains, notify=[nsd_port], catalog=False)
    srvd = start_srvd(config, "--metrics", f"127.0.0.1:{metrics_port}")
    secondary = None
    try:
        (tmp_path / "nsd").mkdir()
        zones = [f"_tcp.{d}" for d in domains]
        secondary = start_nsd(nsd, tmp_path / "nsd", srvd.port, nsd_port, zones)
        took = wait_until(lambda: all(_serves(nsd_port, d) for d in domains), 30)
        assert took is not None, secondary.text()
        for domain in domains:
            differences = [
                d for d in _same_answers(srvd.port, nsd_port, domain) if "_axigen" not in d
            ]
            assert differences == []
        # change one zone's records: NOTIFY, NSD transfers the new version
        changed = domains[0]
        extra = f"""\
  {changed}:
    profile: standard
    submissions: {{target: smtp-new.example.net, port: 465}}
"""
        primary_config(tmp_path, domains[1:], notify=[nsd_port], catalog=False, extra_domains=extra)
        os.utime(config, (time.time() + 5, time.time() + 5))
        started = time.monotonic()
        os.kill(srvd.process.pid, signal.SIGHUP)

        def refreshed() -> bool:
            _, answer = question_answer(nsd_port, f"_submissions._tcp.{changed}", "SRV")
            return any("smtp-new.example.net" in a for a in answer)

        took = wait_until(refreshed, 30)
        assert took is not None, secondary.text()
        print(f"\nreload -> NSD answers the changed zone: {time.monotonic() - started:.2f} s")
        differences = _same_answers(srvd.port, nsd_port, changed)
        assert [d for d in differences if "_axigen" not in d] == []  # NSD has _tcp only
        assert metric(metrics_port, "srvd_notify_sent_total", result="ok") >= 1
    finally:
        if secondary is not None:
            secondary.stop()
        srvd.stop()


def test_knot_learns_a_domain_added_while_srvd_was_down(tmp_path: Path) -> None:
    """Issue 15: stop srvd, add a domain, start it: srvd NOTIFYs the catalog (and the zones whose
    serial moved since its state file) at start-up, so Knot answers for the new domain within
    5 s of srvd's start instead of at the catalog's next SOA refresh (an hour)."""
    knotd = require_tool("knotd")
    knot_port = free_port()
    srvd_port = free_port()
    state = "state_dir: state"
    config = primary_config(tmp_path, DOMAINS[:4], notify=[knot_port], extra=state)
    srvd = start_srvd(config, port=srvd_port)
    knot = None
    try:
        (tmp_path / "knot").mkdir()
        knot = start_knot(knotd, tmp_path / "knot", srvd_port, knot_port)
        took = wait_until(lambda: all(_serves(knot_port, d) for d in DOMAINS[:4]), 60)
        assert took is not None, f"Knot did not load the members:\n{knot.text()}"
        assert srvd.stop() == 0

        added = "added-while-down.example.org"
        # and two domains change profile (by their place: every third is "branded")
        order = [DOMAINS[0], added, DOMAINS[1], DOMAINS[2], DOMAINS[3]]
        primary_config(tmp_path, order, notify=[knot_port], extra=state)
        os.utime(config, (time.time() + 5, time.time() + 5))  # a newer file time: new serials
        started = time.monotonic()
        srvd = start_srvd(config, port=srvd_port)
        took = wait_until(lambda: _serves(knot_port, added), 30)
        assert took is not None, f"Knot never served {added}:\n{knot.text()}\n{srvd.log()}"
        elapsed = time.monotonic() - started
        print(f"\nstart -> Knot answers the domain added while srvd was down: {elapsed:.2f} s")
        assert elapsed < 5.0, f"{elapsed:.2f} s"
        assert _same_answers(srvd.port, knot_port, added) == []
        # the changed zones were notified as well: Knot has their new content by now
        took = wait_until(
            lambda: (
                not _same_answers(srvd.port, knot_port, DOMAINS[1])
                and not _same_answers(srvd.port, knot_port, DOMAINS[2])
            ),
            5,
        )
        assert took is not None, "\n".join(_same_answers(srvd.port, knot_port, DOMAINS[1]))
        assert "NOTIFY after start: the catalog and 2 zones changed" in srvd.log()
    finally:
        if knot is not None:
            knot.stop()
        srvd.stop()
