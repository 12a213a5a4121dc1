"""Checks of a signed catalog zone (tests/test_catalog_dnssec*.py), dnspython as the oracle."""

from __future__ import annotations

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.zone
from dnssec_oracle import dnssec_module
from xfr_helpers import CATALOG

IN = dns.rdataclass.IN
ORIGIN = dns.name.from_text(CATALOG)


def records_of(zone: dns.zone.Zone) -> set[str]:
    return {
        f"{name} {rdataset.ttl} {dns.rdatatype.to_text(rdataset.rdtype)} {rdata}"
        for name, node in zone.nodes.items()
        for rdataset in node
        for rdata in rdataset
    }


def check_signed_zone(zone: dns.zone.Zone, members: int, now: float) -> None:
    """Every RRset has a valid RRSIG; the NSEC chain runs apex → version → members → apex in
    canonical order, one NSEC per name with data, with the types it holds."""
    dnssec = dnssec_module()
    keys = {ORIGIN: zone.find_rrset(ORIGIN, dns.rdatatype.DNSKEY)}
    signed = 0
    for name, node in zone.nodes.items():
        for rdataset in node:
            if rdataset.rdtype == dns.rdatatype.RRSIG:
                continue
            sigs = node.find_rdataset(IN, dns.rdatatype.RRSIG, rdataset.rdtype)
            dnssec.validate((name, rdataset), (name, sigs), keys, now=now)
            signed += 1
    assert signed == 2 * members + 8  # SOA NS DNSKEY CDS CDNSKEY NSEC, version TXT NSEC
    chain = [ORIGIN]
    while True:
        nsec = zone.find_rdataset(chain[-1], dns.rdatatype.NSEC)
        assert len(nsec) == 1
        following = nsec[0].next
        if following == ORIGIN:
            break
        assert following > chain[-1]
        chain.append(following)
    names = {name for name in zone.nodes}
    assert set(chain) == names and len(chain) == members + 2
    assert chain[1] == dns.name.from_text("version", ORIGIN)
    zones = dns.name.from_text("zones", ORIGIN)
    assert zones not in names  # the empty non-terminal has no NSEC of its own
    assert all(name.parent() == zones for name in chain[2:])
    for name in chain:
        node = zone.nodes[name]
        held = {rdataset.rdtype for rdataset in node}
        bitmap: set[int] = set()
        for window, bits in zone.find_rdataset(name, dns.rdatatype.NSEC)[0].windows:
            for i, octet in enumerate(bits):
                bitmap.update(window * 256 + i * 8 + b for b in range(8) if octet & 0x80 >> b)
        assert bitmap == held, name
