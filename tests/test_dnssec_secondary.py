"""Signed zones transferred: AXFR carries DNSKEY, CDS, CDNSKEY, NSEC and RRSIGs, and a Knot DNS
secondary that transfers srvd's signed zones (catalog-driven, TSIG) serves answers that validate
(dnspython, with the key srvd publishes) and prove their denials, unchanged."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.xfr
import dns.zone
from dnssec_oracle import check_denial, dnssec_module, validate_message
from xfr_helpers import keyring, primary_config, start_knot, wait_until

from srvd.wire.dnssec import generate_key

from conftest import free_port, require_tool, start_srvd

IN = dns.rdataclass.IN
DOMAINS = [f"s{i}.example.com" for i in range(4)]
QUESTIONS = [
    ("_imaps._tcp.{d}", "SRV"),
    ("_caldavs._tcp.{d}", "TXT"),
    ("_tcp.{d}", "DNSKEY"),
    ("_tcp.{d}", "SOA"),
    ("_nothing._tcp.{d}", "SRV"),
    ("_imaps._tcp.{d}", "A"),
    ("x._imaps._tcp.{d}", "SRV"),
    ("_axigen.{d}", "TXT"),
]


def signed_primary(tmp: Path, notify: list[int]) -> Path:
    key = tmp / "csk.pem"
    key.write_bytes(generate_key(13))
    return primary_config(tmp, DOMAINS, notify=notify, extra=f"dnssec:\n  key: {key}")


def ask(port: int, name: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    return dns.query.tcp(query, "127.0.0.1", port=port, timeout=5)


def test_axfr_of_a_signed_zone_carries_the_dnssec_records(tmp_path: Path) -> None:
    srvd = start_srvd(signed_primary(tmp_path, []))
    try:
        zone = dns.zone.Zone(f"_tcp.{DOMAINS[0]}", relativize=False)
        query, _ = dns.xfr.make_query(zone, keyring=keyring())
        dns.query.inbound_xfr("127.0.0.1", zone, query, port=srvd.port, timeout=10)
        types = {rdataset.rdtype for node in zone.nodes.values() for rdataset in node}
        assert {dns.rdatatype.DNSKEY, dns.rdatatype.CDS, dns.rdatatype.CDNSKEY} <= types
        assert {dns.rdatatype.NSEC, dns.rdatatype.RRSIG} <= types
        apex = zone.origin
        assert apex is not None
        keys = {apex: zone.find_rrset(apex, dns.rdatatype.DNSKEY)}
        dnssec = dnssec_module()
        signed = 0
        for name, node in zone.nodes.items():
            owner = name
            for rdataset in node:
                if rdataset.rdtype == dns.rdatatype.RRSIG:
                    continue
                sigs = node.find_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, rdataset.rdtype)
                dnssec.validate((owner, rdataset), (owner, sigs), keys, now=time.time())
                signed += 1
        assert signed >= 10
        # the SOA serial of the transfer is the one srvd answers
        soa = ask(srvd.port, f"_tcp.{DOMAINS[0]}", "SOA").answer[0][0]
        assert zone.find_rdataset(apex, dns.rdatatype.SOA)[0].serial == soa.serial
    finally:
        srvd.stop()


def test_knot_serves_the_signed_zones_and_its_answers_validate(tmp_path: Path) -> None:
    knotd = require_tool("knotd")
    knot_port = free_port()
    srvd = start_srvd(signed_primary(tmp_path, [knot_port]))
    knot = None
    try:
        (tmp_path / "knot").mkdir()
        knot = start_knot(knotd, tmp_path / "knot", srvd.port, knot_port)

        def loaded() -> bool:
            return all(
                ask(knot_port, template.format(d=d), "DNSKEY").answer
                for i, d in enumerate(DOMAINS)
                for template in ("_tcp.{d}", "_axigen.{d}")[: 1 if i % 3 == 2 else 2]
            )

        assert wait_until(loaded, 60) is not None, knot.text()
        checked = 0
        for domain in DOMAINS:
            apex = dns.name.from_text(f"_tcp.{domain}")
            from_srvd = ask(srvd.port, apex.to_text(), "DNSKEY")
            dnskey = from_srvd.find_rrset(from_srvd.answer, apex, IN, dns.rdatatype.DNSKEY)
            axigen = dns.name.from_text(f"_axigen.{domain}")
            keys = {
                apex: dnskey,
                axigen: dns.rrset.from_rdata_list(axigen, dnskey.ttl, list(dnskey)),
            }
            for template, rdtype in QUESTIONS:
                if template.startswith("_axigen") and DOMAINS.index(domain) % 3 == 2:
                    continue  # "branded" (xfr_helpers): no _axigen zone
                name = template.format(d=domain)
                reply = ask(knot_port, name, rdtype)
                assert reply.flags & dns.flags.AA, (name, rdtype, reply)
                checked += validate_message(reply, keys, time.time())
                if not reply.answer:
                    check_denial(reply, dns.name.from_text(name), dns.rdatatype.from_text(rdtype))
        assert checked >= len(DOMAINS) * len(QUESTIONS)
    finally:
        if knot is not None:
            knot.stop()
        srvd.stop()


def test_workers_send_the_same_signed_octets(tmp_path: Path) -> None:
    """With ``--workers 2`` each process signs for itself: deterministic signatures make their
    replies identical. 60 queries from 60 source ports reach both workers (SO_REUSEPORT hashes
    the source port) all but with probability 2**-59."""
    srvd = start_srvd(signed_primary(tmp_path, []), "--workers", "2")
    try:
        query = dns.message.make_query(f"_caldavs._tcp.{DOMAINS[0]}", "TXT", want_dnssec=True)
        query.id = 1
        time.sleep(2.0)  # the workers start after the primary answers
        replies: set[bytes] = set()
        for _ in range(60):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(3)
                sock.sendto(query.to_wire(), ("127.0.0.1", srvd.port))
                replies.add(sock.recv(4096))
        assert len(replies) == 1
        reply = dns.message.from_wire(next(iter(replies)))
        assert any(r.rdtype == dns.rdatatype.RRSIG for r in reply.answer)
    finally:
        srvd.stop()
