"""Answers from a signed zone (srvd.index.dnssec): RRSIGs, DNSKEY/CDS/CDNSKEY, NSEC denial.

The full parser (srvd.answer.full) hands a query here when the zones are signed and the query
sets DO (RFC 3225), or asks for a DNSSEC type (DNSKEY, CDS, CDNSKEY, NSEC, RRSIG) that exists only
in a signed zone; class IN only. What it gives:

- a positive answer: the RRset and its RRSIG (the SRV order still drawn per reply: the signature
  covers the canonical order, whatever order the records go in);
- NODATA: the SOA and its RRSIG, the NSEC of the name (of the name before it, for an empty
  non-terminal) and its RRSIG;
- NXDOMAIN (``denial: nsec``, the default): the SOA and its RRSIG, the NSEC covering the name
  and the one covering the wildcard at the closest encloser (one record when they are the same),
  with their RRSIGs (``chain_denial``, which the lean path calls too);
- a name that does not exist, with ``denial: compact``: RFC 9824's compact answer, NOERROR
  (NXDOMAIN when the query sets the CO flag, echoed) with the SOA and its RRSIG and one NSEC at
  the name itself, next name ``\\000.name``, bitmap RRSIG NSEC NXNAME, and its RRSIG
  (``compact_authority``); the few names ``compactable`` declines get the chain's NXDOMAIN;
- without DO (a DNSSEC type asked for): the same records without RRSIGs and NSECs.

A reply that does not fit the UDP limit gets TC=1, the question and the OPT (as the unsigned
path does); TCP carries it whole. Owners compress to the question.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import cast

from srvd.answer.outcome import (
    ANSWER,
    AXIGEN_LABEL,
    AXIGEN_SERVICE,
    C_NOERROR,
    C_NOERROR_TC,
    C_NXDOMAIN,
    NODATA,
    NXDOMAIN_RESULT,
    OTHER_SERVICE,
    SERVICE_OF,
)
from srvd.index.dnssec import Denial, Negative, ZoneSigner, fixed
from srvd.index.model import NS, SOA, Index, RRset, Zone
from srvd.wire.dnssec import CDNSKEY, CDS, DNSKEY, NSEC, RRSIG, read_rdatas

ANY = 255
_HEAD = struct.Struct("!HHHHH")
_RR = struct.Struct("!HHIH")
_QR, _AA, _TC = 0x8000, 0x0400, 0x0200
_NXDOMAIN = 3
_QUESTION = b"\xc0\x0c"
# a compression pointer to the apex in the question, by the apex's offset in the name
_POINTERS = tuple(struct.pack("!H", 0xC000 | (12 + cut)) for cut in range(256))

# (the reply after its ID up to the records to order, the RRset to order or None, the customer
# domain, the octets after those records, query cell, service cell): srvd.answer.full.Raw
Signed = tuple[bytes, RRset | None, bytes, bytes, int, int]


class _FirstOrder:
    def random(self) -> float:
        return 0.0


_NO_ORDER = _FirstOrder()


def signer_of(index: Index) -> ZoneSigner:
    return cast(ZoneSigner, index.dnssec)


def zone_negative(index: Index, signer: ZoneSigner, zone: Zone, apex: bytes) -> Negative:
    """What the DO=1 negative answers of the zone at ``apex`` share in its current window: the
    SOA and its RRSIG (signed if the cache lacks it), kept per zone (ZoneSigner.keep_negative)."""
    negative = signer.negatives.get(apex)
    if negative is None or negative.until <= signer.clock():
        window = signer.window(apex)
        soa = index.soa(0, signer.serial(apex, zone.serial), True)[2:]
        ttl = index.settings.ttl
        _, rdata = signer.rrsig(apex, SOA, apex, window, lambda: (ttl, [soa[10:]]))
        rrsig = _RR.pack(RRSIG, 1, signer.negative_ttl, len(rdata)) + rdata
        negative = signer.keep_negative(apex, window, soa, rrsig)
    return negative


def presign(index: Index, signer: ZoneSigner, apexes: Iterator[bytes], zones: int) -> int:
    """Sign ahead what every DO=1 negative answer of a zone needs, for up to ``zones`` zones
    taken from ``apexes``: its SOA's signature, and with the NSEC chain (``denial: nsec``) the
    signature of the NSEC at its apex, which proves the wildcard absent and covers every name
    before the zone's first (most random names: they sort before ``_service`` labels). A
    random-name flood over zones done so costs a signature only for the names of other gaps.
    Returns how many zones were done (fewer than ``zones``: ``apexes`` ran out)."""
    done = 0
    for apex in apexes:
        zone = index.zones.get(apex)
        if zone is None:
            continue
        negative = zone_negative(index, signer, zone, apex)
        if not signer.compact:
            chain = signer.chain(zone.table)
            nsec = fixed(signer.negative_ttl, [chain.rdata(0, apex)])
            signer.rrsig(chain.owners[0] + apex, NSEC, apex, negative.window, nsec)
        done += 1
        if done == zones:
            break
    return done


def compact_authority(
    index: Index, signer: ZoneSigner, zone: Zone, qname: bytes, cut: int
) -> bytes:
    """The authority section of a compact answer (RFC 9824) for ``qname`` (lower case, at most
    253 octets), a name the zone at ``qname[cut:]`` lacks: the SOA and its RRSIG, their owners a
    pointer to the apex in the question, then the NSEC at the name and its RRSIG
    (ZoneSigner.compact_nsec), owned by the question's name."""
    apex = qname[cut:]
    negative = zone_negative(index, signer, zone, apex)
    pointer = _POINTERS[cut]
    nsec = signer.compact_nsec(qname, apex, negative)
    return b"".join((pointer, negative.soa, pointer, negative.soa_rrsig, nsec))


def compactable(qname: bytes, qtype: int) -> bool:
    """Whether a name the zone lacks gets a compact answer: not a question for NSEC or RRSIG
    (the NSEC at the name would list the type asked for), not a name of more than 253 octets (no
    room for the \\000 label of its successor), not a name whose first label is ``*`` (an NSEC
    there would stand for a wildcard). These few get the chain's NXDOMAIN."""
    return qtype != NSEC and qtype != RRSIG and len(qname) < 254 and qname[:2] != b"\x01*"


def compact_heads(co: int) -> tuple[bytes, bytes]:
    """The header after the ID of a compact answer (one question, 4 authority records, the OPT),
    for RD 0 and 1: NOERROR, or NXDOMAIN when the query set CO (RFC 9824 §5)."""
    rcode = _NXDOMAIN if co else 0
    return (
        _HEAD.pack(_QR | _AA | rcode, 1, 0, 4, 1),
        _HEAD.pack(_QR | _AA | 0x0100 | rcode, 1, 0, 4, 1),
    )


COMPACT_HEADS = (compact_heads(0), compact_heads(1))


def signed_answer(
    index: Index,
    zone: Zone,
    qname: bytes,
    cut: int,
    qtype: int,
    rd: int,
    question: bytes,
    opt: bytes,
    do: int,
    limit: int,
    row: int,
    co: int = 0,
) -> Signed:
    """The reply to a class IN query for ``qname`` (lower case; its apex at offset ``cut``);
    ``co``: the query set the CO flag (and DO), and ``opt`` echoes it."""
    signer = signer_of(index)
    apex = qname[cut:]
    window = signer.window(apex)
    serial = signer.serial(apex, zone.serial)
    table = zone.table
    relative = qname[:cut]
    domain = apex[apex[0] + 1 :]
    additional = 1 if opt else 0
    apex_owner = struct.pack("!H", 0xC000 | (12 + cut))
    if cut:
        service = SERVICE_OF.get(qname[: cut + 5], OTHER_SERVICE)
        node = table.names.get(relative)
    else:
        service = AXIGEN_SERVICE if qname.startswith(AXIGEN_LABEL) else OTHER_SERVICE
        node = table.apex
    chain = signer.chain(table)

    # the RRset the answer holds, if any: (type, records, count, RRset to order)
    found: tuple[int, bytes, int, RRset | None] | None = None
    if not cut and qtype in (SOA, ANY):
        found = SOA, index.soa(12, serial, False), 1, None
    elif not cut and qtype == NS:
        found = NS, index.ns_records, index.ns_count, None
    elif not cut and qtype in (DNSKEY, CDS, CDNSKEY):
        records = signer.apex_records(qtype, apex, _QUESTION)
        found = qtype, records, len(signer.dnskeys), None
    elif qtype == NSEC and relative in chain.at:
        i = chain.at[relative]
        rdata = chain.rdata(i, apex)
        found = (
            NSEC,
            _QUESTION + _RR.pack(NSEC, 1, signer.negative_ttl, len(rdata)) + rdata,
            1,
            None,
        )
    elif qtype == RRSIG and relative in chain.at:
        return _rrsigs(index, signer, zone, qname, cut, rd, question, opt, limit, row, service)
    elif node is not None:
        rrset = node.rrsets.get(qtype)
        if rrset is None and qtype == ANY:
            rrset = node.any
        if rrset is not None:
            records = rrset.wire(_NO_ORDER, domain)
            found = rrset.rtype, records, rrset.count, rrset if rrset.ordered else None

    if found is not None:
        rtype, records, count, ordered = found
        signature = b""
        if do:
            sigs = signer.rrsigs(qname, rtype, apex, window, lambda: _parsed(records))
            signature = b"".join(
                _QUESTION + _RR.pack(RRSIG, 1, ttl, len(rdata)) + rdata for ttl, rdata in sigs
            )
            count += len(sigs)
        if 12 + len(question) + len(records) + len(signature) + len(opt) > limit:
            head = _HEAD.pack(_QR | _AA | _TC | rd, 1, 0, 0, additional) + question + opt
            return head, None, b"", b"", row + C_NOERROR_TC, service + ANSWER
        head = _HEAD.pack(_QR | _AA | rd, 1, count, 0, additional) + question
        if do and not cut and qtype != ANY:  # the lean path's next reply (below the apex, the
            # lean path takes the RRset and its cached signature itself)
            body = signature if ordered is not None else records + signature
            signer.keep_reply(
                qname + struct.pack("!H", qtype),
                window,
                (_heads(0, count, 0), ordered, domain, body, C_NOERROR, service + ANSWER),
            )
        if ordered is not None:
            return head, ordered, domain, signature + opt, row + C_NOERROR, service + ANSWER
        return head + records + signature + opt, None, b"", b"", row + C_NOERROR, service + ANSWER

    if node is None and do and signer.compact and compactable(qname, qtype):
        records = compact_authority(index, signer, zone, qname, cut)
        cell = C_NXDOMAIN if co else C_NOERROR
        if 12 + len(question) + len(records) + len(opt) > limit:
            head = _HEAD.pack(_QR | _AA | _TC | rd | (_NXDOMAIN if co else 0), 1, 0, 0, 1)
            cell = C_NXDOMAIN if co else C_NOERROR_TC
            return head + question + opt, None, b"", b"", row + cell, service + NXDOMAIN_RESULT
        reply = COMPACT_HEADS[1 if co else 0][1 if rd else 0] + question + records + opt
        return reply, None, b"", b"", row + cell, service + NXDOMAIN_RESULT

    # NODATA or NXDOMAIN
    rcode = 0 if node is not None else _NXDOMAIN
    gap = None
    if do:
        if node is None:
            gap = chain.nxdomain(relative, table.names)
            entries = _entries(gap)
        else:  # the name's NSEC, or the one before an empty non-terminal
            at = chain.at.get(relative)
            entries = [at if at is not None else chain.covering(relative)]
        negative = zone_negative(index, signer, zone, apex)
        pieces = negative_pieces(signer, zone, apex, negative, entries)
    else:
        pieces = (b"", index.soa(0, serial, True)[2:])
    authority = len(pieces) - 1
    records = apex_owner.join(pieces)
    if 12 + len(question) + len(records) + len(opt) > limit:
        head = _HEAD.pack(_QR | _AA | _TC | rd | rcode, 1, 0, 0, additional) + question + opt
        cell = C_NOERROR_TC if rcode == 0 else C_NXDOMAIN
        result = NODATA if rcode == 0 else NXDOMAIN_RESULT
        return head, None, b"", b"", row + cell, service + result
    head = _HEAD.pack(_QR | _AA | rd | rcode, 1, 0, authority, additional)
    cell, result = (C_NOERROR, NODATA) if rcode == 0 else (C_NXDOMAIN, NXDOMAIN_RESULT)
    if do and qtype != ANY:  # the lean path's next reply: NODATA by name; NXDOMAIN in a cache
        # of its own by the NSECs that prove it, for every name they prove (names without bound)
        heads = _heads(rcode, 0, authority)
        if gap is None:
            signer.keep_reply(
                qname + struct.pack("!H", qtype),
                window,
                (heads, None, b"", records, cell, service + result),
            )
        else:
            signer.keep_denial((apex, *gap), window, heads, pieces)
    return head + question + records + opt, None, b"", b"", row + cell, service + result


def _entries(gap: tuple[int, int]) -> list[int]:
    """The chain's entries whose NSECs prove an NXDOMAIN, in order: the one covering the name
    and the one covering the wildcard at its closest encloser (Chain.nxdomain), once if same."""
    covering, wildcard = gap
    return [covering] if wildcard == covering else sorted(gap)


def negative_pieces(
    signer: ZoneSigner, zone: Zone, apex: bytes, negative: Negative, entries: list[int]
) -> tuple[bytes, ...]:
    """The authority section of a DO=1 negative answer in the zone at ``apex``: the SOA and
    the NSECs of the chain's ``entries``, each with its RRSIG. Every owner there ends in a
    pointer to the apex in the question (where the apex lies at an offset that differs from
    name to name) and nothing else points, so the section is given split at those pointers:
    joined with the one a question needs, it is that question's section."""
    pieces = [b"", negative.soa, negative.soa_rrsig]
    chain = signer.chain(zone.table)
    ttl = signer.negative_ttl
    for i in entries:
        owner = chain.owners[i]
        nsec = chain.rdata(i, apex)
        _, sig = signer.rrsig(owner + apex, NSEC, apex, negative.window, fixed(ttl, [nsec]))
        pieces[-1] += owner
        pieces.append(_RR.pack(NSEC, 1, ttl, len(nsec)) + nsec + owner)
        pieces.append(_RR.pack(RRSIG, 1, ttl, len(sig)) + sig)
    return tuple(pieces)


def chain_denial(
    index: Index, signer: ZoneSigner, zone: Zone, apex: bytes, gap: tuple[int, int]
) -> Denial:
    """The pieces of a DO=1 NXDOMAIN proven by the chain's entries ``gap`` (Chain.nxdomain) in
    the zone at ``apex``, made (signing what the cache lacks) and kept for the lean path."""
    negative = zone_negative(index, signer, zone, apex)
    pieces = negative_pieces(signer, zone, apex, negative, _entries(gap))
    heads = _NXDOMAIN_HEADS[len(pieces) - 1]
    return signer.keep_denial((apex, *gap), negative.window, heads, pieces)


def _heads(rcode: int, answers: int, authority: int) -> tuple[bytes, bytes]:
    """The header after the ID of a DO=1 reply (one question, the OPT), for RD 0 and 1."""
    return (
        _HEAD.pack(_QR | _AA | rcode, 1, answers, authority, 1),
        _HEAD.pack(_QR | _AA | 0x0100 | rcode, 1, answers, authority, 1),
    )


_NXDOMAIN_HEADS = tuple(_heads(_NXDOMAIN, 0, authority) for authority in range(7))


def _parsed(records: bytes) -> tuple[int, list[bytes]]:
    found = read_rdatas(records)
    return found[0][1], [rdata for _, _, rdata in found]


def _rrsigs(
    index: Index,
    signer: ZoneSigner,
    zone: Zone,
    qname: bytes,
    cut: int,
    rd: int,
    question: bytes,
    opt: bytes,
    limit: int,
    row: int,
    service: int,
) -> Signed:
    """A query for type RRSIG: every RRSIG at the name (as Knot DNS answers it)."""
    apex = qname[cut:]
    table = zone.table
    window = signer.window(apex)
    out = []
    for owner, rtype, ttl, rdatas in signer.zone_rrsets(index, apex, table):
        if owner != qname:
            continue
        for sig_ttl, rdata in signer.rrsigs(owner, rtype, apex, window, fixed(ttl, rdatas)):
            out.append(_QUESTION + _RR.pack(RRSIG, 1, sig_ttl, len(rdata)) + rdata)
    records = b"".join(out)
    additional = 1 if opt else 0
    if 12 + len(question) + len(records) + len(opt) > limit:
        head = _HEAD.pack(_QR | _AA | _TC | rd, 1, 0, 0, additional) + question + opt
        return head, None, b"", b"", row + C_NOERROR_TC, service + ANSWER
    head = _HEAD.pack(_QR | _AA | rd, 1, len(out), 0, additional) + question
    return head + records + opt, None, b"", b"", row + C_NOERROR, service + ANSWER
