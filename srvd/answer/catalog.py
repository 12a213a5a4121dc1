"""Queries for the catalog zone (srvd.index.model.Catalog); its transfers are srvd.xfr's.

The apex answers SOA and NS (and NODATA otherwise), ``version`` its TXT; the member names below
``zones`` are served by transfer only (a query for one gets REFUSED: finding a member by its
hash would need a map of every member).
"""

from __future__ import annotations

import struct

from srvd.answer.outcome import C_NOERROR, C_NXDOMAIN, C_REFUSED, NO_SERVICE
from srvd.index.model import (
    CATALOG_VERSION,
    NS,
    SOA,
    VERSION_LABEL,
    ZONES_LABEL,
    Catalog,
)
from srvd.wire.discovery import TXT

CLASS_IN = 1
_HEAD = struct.Struct("!HHHHH")
_RR = struct.Struct("!HHIH")
_QR, _AA, _RD = 0x8000, 0x0400, 0x0100
_REFUSED, _NXDOMAIN = 5, 3


def catalog_entry(
    catalog: Catalog,
    qname: bytes,
    qtype: int,
    qclass: int,
    rd: int,
    question: bytes,
    opt: bytes,
    row: int,
) -> tuple[bytes, int, int] | None:
    """(reply after its ID, query cell, service cell) for a name in the catalog, else None."""
    apex = catalog.apex
    if not qname.endswith(apex):
        return None
    prefix = len(qname) - len(apex)
    if prefix and not _is_boundary(qname, prefix):
        return None
    additional = 1 if opt else 0
    aa = _AA if qclass == CLASS_IN else 0
    # relative part (wire labels without the apex)
    relative = qname[:prefix]
    records = b""
    count = 0
    rcode = 0
    if relative == b"":
        if qtype in (SOA, 255):
            records, count = catalog.soa(), 1
        elif qtype == NS:
            records, count = catalog.ns(), 1
    elif relative == VERSION_LABEL:
        if qtype in (TXT, 255):
            rdata = bytes([len(CATALOG_VERSION)]) + CATALOG_VERSION
            records = b"\xc0\x0c" + _RR.pack(TXT, CLASS_IN, catalog.ttl, len(rdata)) + rdata
            count = 1
    elif relative == ZONES_LABEL:
        pass  # an empty non-terminal
    elif relative.endswith(ZONES_LABEL):
        head = _HEAD.pack(_QR | _rd(rd) | _REFUSED, 1, 0, 0, additional) + question + opt
        return head, row + C_REFUSED, NO_SERVICE
    else:
        rcode = _NXDOMAIN
    flags = _QR | aa | _rd(rd) | rcode
    if count:
        head = _HEAD.pack(flags, 1, count, 0, additional) + question + records + opt
        return head, row + C_NOERROR, NO_SERVICE
    cell = C_NXDOMAIN if rcode else C_NOERROR
    if not aa:
        return _HEAD.pack(flags, 1, 0, 0, additional) + question + opt, row + cell, NO_SERVICE
    soa = struct.pack("!H", 0xC000 | (12 + prefix)) + catalog.soa_negative
    head = _HEAD.pack(flags, 1, 0, 1, additional) + question + soa + opt
    return head, row + cell, NO_SERVICE


def _rd(rd: int) -> int:
    return rd & _RD


def _is_boundary(qname: bytes, prefix: int) -> bool:
    """Whether ``prefix`` octets of ``qname`` are whole labels."""
    pos = 0
    while pos < prefix:
        pos += qname[pos] + 1
    return pos == prefix
