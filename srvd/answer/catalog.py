"""Queries for the catalog zone (srvd.index.model.Catalog); its transfers are srvd.xfr's.

The apex answers SOA and NS (and NODATA otherwise), ``version`` its TXT; the member names below
``zones`` are served by transfer only (a query for one gets REFUSED: finding a member by its
hash would need a map of every member, and the member set, the provider's list of customers,
is for the secondaries that transfer it with TSIG, not for anyone who asks).

Signed (srvd.index.catalog_dnssec), with DO=1: RRSIGs over the SOA, NS, DNSKEY, CDS, CDNSKEY,
NSEC and ``version``'s TXT; NODATA and NXDOMAIN with the SOA and the NSECs that prove them (the
apex's, ``version``'s, the last member's), signed. Member names stay REFUSED, with DO=1 too, so
that the chain cannot be walked by queries: the proofs show at most the first and the last
member's ID (a hash), never a member's name. Without DO the answers are the unsigned ones, the
SOA's serial moved by the window; DNSKEY, CDS, CDNSKEY, NSEC and RRSIG are answered then too
(without RRSIGs), as in the other signed zones.
"""

from __future__ import annotations

import struct

from srvd.answer.outcome import C_NOERROR, C_NOERROR_TC, C_NXDOMAIN, C_REFUSED, NO_SERVICE
from srvd.index.catalog_dnssec import RRsetRows, SignedCatalog
from srvd.index.dnssec import ZoneSigner, relative_key
from srvd.index.model import (
    CATALOG_VERSION,
    NS,
    SOA,
    VERSION_LABEL,
    ZONES_LABEL,
    Catalog,
    Index,
)
from srvd.wire.discovery import TXT
from srvd.wire.dnssec import CDNSKEY, CDS, DNSKEY, DNSSEC_TYPES, NSEC, RRSIG, rr

CLASS_IN = 1
ANY = 255
_HEAD = struct.Struct("!HHHHH")
_RR = struct.Struct("!HHIH")
_QR, _AA, _TC, _RD = 0x8000, 0x0400, 0x0200, 0x0100
_REFUSED, _NXDOMAIN = 5, 3
_QUESTION = b"\xc0\x0c"
_VERSION_KEY = (b"version",)
_ZONES_KEY = (b"zones",)


def catalog_answer(
    index: Index,
    catalog: Catalog,
    qname: bytes,
    qtype: int,
    qclass: int,
    rd: int,
    question: bytes,
    opt: bytes,
    do: int,
    limit: int,
    row: int,
) -> tuple[bytes, int, int] | None:
    """(reply after its ID, query cell, service cell) for a name in the catalog, else None;
    signed (``catalog_signed``) when the zones are and the query sets DO or asks for a DNSSEC
    type, class IN. Otherwise as unsigned, the SOA's serial moved by the window when signed."""
    signer = index.dnssec
    if not isinstance(signer, ZoneSigner):
        return catalog_entry(catalog, qname, qtype, qclass, rd, question, opt, row)
    if qclass == CLASS_IN and (do or qtype in DNSSEC_TYPES):
        return catalog_signed(catalog, signer, qname, qtype, rd, question, opt, do, limit, row)
    serial = signer.serial(catalog.apex, catalog.serial)
    return catalog_entry(catalog, qname, qtype, qclass, rd, question, opt, row, serial)


def catalog_entry(
    catalog: Catalog,
    qname: bytes,
    qtype: int,
    qclass: int,
    rd: int,
    question: bytes,
    opt: bytes,
    row: int,
    serial: int | None = None,
) -> tuple[bytes, int, int] | None:
    """(reply after its ID, query cell, service cell) for a name in the catalog, else None;
    ``serial``: the SOA's when it is not the catalog's own (signed: moved by the window)."""
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
            records, count = catalog.soa(serial), 1
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
    soa = struct.pack("!H", 0xC000 | (12 + prefix)) + _with_serial(catalog.soa_negative, serial)
    head = _HEAD.pack(flags, 1, 0, 1, additional) + question + soa + opt
    return head, row + cell, NO_SERVICE


def _with_serial(soa: bytes, serial: int | None) -> bytes:
    """An SOA record (its rdata last) with another serial."""
    if serial is None:
        return soa
    return soa[:-20] + struct.pack("!I", serial) + soa[-16:]


def catalog_signed(
    catalog: Catalog,
    signer: ZoneSigner,
    qname: bytes,
    qtype: int,
    rd: int,
    question: bytes,
    opt: bytes,
    do: int,
    limit: int,
    row: int,
) -> tuple[bytes, int, int] | None:
    """A class IN query with DO (or for a DNSSEC type) to the signed catalog (see the module's
    doc): the RRset and its RRSIGs; NODATA with the SOA, the name's NSEC (``zones``, an empty
    non-terminal: ``version``'s, whose next name is below it) and their RRSIGs; NXDOMAIN with
    the SOA, the NSEC covering the name and the one covering the wildcard at its closest
    encloser. Without DO (a DNSSEC type asked for): no RRSIGs, no NSECs."""
    apex = catalog.apex
    if not qname.endswith(apex):
        return None
    prefix = len(qname) - len(apex)
    if prefix and not _is_boundary(qname, prefix):
        return None
    additional = 1 if opt else 0
    relative = qname[:prefix]
    if relative != ZONES_LABEL and relative.endswith(ZONES_LABEL):  # members: as unsigned
        head = _HEAD.pack(_QR | _rd(rd) | _REFUSED, 1, 0, 0, additional) + question + opt
        return head, row + C_REFUSED, NO_SERVICE
    view = SignedCatalog(catalog, signer)
    rows = {
        (owner, rtype): (owner, rtype, ttl, rdatas)
        for owner, rtype, ttl, rdatas in view.apex_rrsets()
    }
    found: list[RRsetRows] = []
    rrsigs: list[RRsetRows] = []  # a query for type RRSIG: the RRsets whose RRSIGs it gets
    proof: list[RRsetRows] = []  # NODATA: the NSEC that proves it
    rcode = 0
    if relative == b"":
        if qtype in (SOA, ANY):
            found.append(rows[(apex, SOA)])
        elif qtype in (NS, DNSKEY, CDS, CDNSKEY, NSEC):
            found.append(rows[(apex, qtype)])
        elif qtype == RRSIG:
            rrsigs = [rrset for (owner, _), rrset in rows.items() if owner == apex]
        else:
            proof.append(rows[(apex, NSEC)])
    elif relative == VERSION_LABEL:
        owner = view.version_owner
        if qtype in (TXT, ANY):
            found.append(rows[(owner, TXT)])
        elif qtype == NSEC:
            view.order.finish()
            found.append(view.version_nsec())
        elif qtype == RRSIG:
            view.order.finish()
            rrsigs = [rows[(owner, TXT)], view.version_nsec()]
        else:
            view.order.finish()
            proof.append(view.version_nsec())
    elif relative == ZONES_LABEL and catalog.zones:  # the empty non-terminal above the members
        view.order.finish()
        proof.append(view.version_nsec())
    else:
        rcode = _NXDOMAIN
        view.order.finish()
        proof = _nxdomain_proof(view, relative)
    records = []
    for owner, rtype, ttl, rdatas in found:
        records += [_QUESTION + rr(b"", rtype, ttl, rdata) for rdata in rdatas]
        if do:
            for signature in view.sign((owner, rtype, ttl, rdatas), True):
                records.append(_QUESTION + rr(b"", RRSIG, ttl, signature))
    for rrset in rrsigs:
        for signature in view.sign(rrset, True):
            records.append(_QUESTION + rr(b"", RRSIG, rrset[2], signature))
    authority = []
    if not records:  # NODATA or NXDOMAIN: the SOA with the negative TTL (RFC 9077)
        pointer = struct.pack("!H", 0xC000 | (12 + prefix))
        soa = rows[(apex, SOA)]
        negative = signer.negative_ttl
        authority.append(pointer + rr(b"", SOA, negative, soa[3][0]))
        if do:
            for signature in view.sign(soa, True):
                authority.append(pointer + rr(b"", RRSIG, negative, signature))
            for owner, rtype, ttl, rdatas in proof:
                compressed = owner[: len(owner) - len(apex)] + pointer
                authority.append(compressed + rr(b"", rtype, ttl, rdatas[0]))
                for signature in view.sign((owner, rtype, ttl, rdatas), True):
                    authority.append(compressed + rr(b"", RRSIG, ttl, signature))
    body = b"".join(records) + b"".join(authority)
    if 12 + len(question) + len(body) + len(opt) > limit:
        head = _HEAD.pack(_QR | _AA | _TC | _rd(rd) | rcode, 1, 0, 0, additional)
        cell = C_NXDOMAIN if rcode else C_NOERROR_TC
        return head + question + opt, row + cell, NO_SERVICE
    head = _HEAD.pack(_QR | _AA | _rd(rd) | rcode, 1, len(records), len(authority), additional)
    cell = C_NXDOMAIN if rcode else C_NOERROR
    return head + question + body + opt, row + cell, NO_SERVICE


def _nxdomain_proof(view: SignedCatalog, relative: bytes) -> list[RRsetRows]:
    """The NSECs that prove a name below the catalog's apex (not ``version``, nor ``zones``
    nor below it) does not exist: the one covering it and the one covering the wildcard at its
    closest encloser (the apex, or ``version`` for a name below it), in canonical order."""
    key = relative_key(relative)

    def covering(name: tuple[bytes, ...]) -> int:
        if name < _VERSION_KEY:
            return 0  # the apex's NSEC: apex → version
        if name < _ZONES_KEY:
            return 1  # version's: version → the first member (below zones)
        return 2  # the last one: the last member → apex

    wildcard = (b"version", b"*") if key[:1] == _VERSION_KEY else (b"*",)
    entries = sorted({covering(key), covering(wildcard)})
    make = (view.apex_nsec, view.version_nsec, view.last_nsec)
    return [make[entry]() for entry in entries]


def _rd(rd: int) -> int:
    return rd & _RD


def _is_boundary(qname: bytes, prefix: int) -> bool:
    """Whether ``prefix`` octets of ``qname`` are whole labels."""
    pos = 0
    while pos < prefix:
        pos += qname[pos] + 1
    return pos == prefix
