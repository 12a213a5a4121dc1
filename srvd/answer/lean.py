"""The lean path: the reply to a query of the shape nearly every query has, straight from the index.

The shape: opcode QUERY, RCODE 0, one question of class IN whose name lies in a served zone, no
records in the answer and authority sections, and in the additional section nothing or one OPT
(version 0, any options) owned by the root. Everything else, and every reply that would not fit
(TC=1), is left to the full parser (srvd.answer.full), which gives the same octets for these
queries: tests/test_lean.py compares the two on random and mutated queries.

Finding the answer costs two dict lookups on the lower-cased wire name and no walk over its labels:
the zone's apex starts at the name's last "_" (customer domains have none), so the apex is
``name[cut:]`` and the owner below it ``name[:cut]``. A hit in ``Index.zones`` proves the apex
part well formed (every key is a valid wire name), a hit in the zone's table proves the rest; only
a name the table lacks (NXDOMAIN) has its remaining labels walked, since they come from the query.

Signed zones (docs/dnssec.md): a DO=1 question for a name that exists, which the full path
answered (and signed) before, is answered from ready pieces: the RRset and its cached signature,
or the pieces of an apex answer or NODATA that srvd.answer.signed left in the signer. A name that
does not exist is answered here from the first question on: an NXDOMAIN from the pieces kept for
the NSECs that prove it, which every name they cover shares (ZoneSigner.denial finds them: a
binary search over the chain), made by srvd.answer.signed.chain_denial when they are not kept;
or a compact answer (``denial: compact``). The DNSSEC types are the full path's.
"""

from __future__ import annotations

import struct

from srvd.answer.full import EDNS_PAYLOAD, OPT_DO, OPT_DO_CO, OPT_PLAIN, TCP_LIMIT, UDP_PLAIN
from srvd.answer.outcome import (
    ANSWER,
    AXIGEN_LABEL,
    AXIGEN_SERVICE,
    C_NOERROR,
    C_NXDOMAIN,
    NODATA,
    NXDOMAIN_RESULT,
    OTHER_SERVICE,
    QTYPE_ROW,
    SERVICE_OF,
    TCP_CELLS,
)
from srvd.answer.signed import (
    COMPACT_HEADS,
    chain_denial,
    compact_authority,
    compactable,
    signer_of,
)
from srvd.index.model import NS, SOA, Index, Zone
from srvd.wire.dnssec import DNSSEC_TYPES, NXNAME
from srvd.wire.ordering import RandomSource

# A lean reply, and where it counts: (reply, query cell, service cell, the zone's apex)
Lean = tuple[bytes, int, int, bytes]

_HEAD = struct.Struct("!HHHHH")
_QR, _AA = 0x8000, 0x0400
_NXDOMAIN = 3
_ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00\x00\x00"  # QDCOUNT 1, no other records
_ONE_QUESTION_OPT = b"\x00\x01\x00\x00\x00\x00\x00\x01"  # and one additional record
_ROOT_OPT = b"\x00\x00\x29"  # owner "." and type OPT
_QUESTION = b"\xc0\x0c"  # a compression pointer to the question's name
_LAST_NAME_END = 12 + 255 - 1  # where the root label of the longest name lies
# a compression pointer to the apex in the question, by the apex's offset in the name
_POINTERS = tuple(struct.pack("!H", 0xC000 | (12 + cut)) for cut in range(256))
# qtypes left to the full path: IXFR, AXFR, ANY; from a signed zone also NXNAME (FORMERR)
_FULL_TYPES = frozenset({251, 252, 255})
_SIGNED_FULL_TYPES = _FULL_TYPES | {NXNAME}
_SIGNED_ONLY_TYPES = DNSSEC_TYPES | {NXNAME}


def _shapes() -> dict[bytes, int]:
    """The header octets after the ID of every query of the lean shape → RD << 1 | ARCOUNT.

    QR 0, opcode QUERY, RCODE 0; AA, TC, RA, Z, AD and CD are ignored, as the full parser does."""
    shapes = {}
    for high in range(8):  # AA, TC, RD
        for low in range(0, 256, 16):  # RA, Z, AD, CD
            for counts, additional in ((_ONE_QUESTION, 0), (_ONE_QUESTION_OPT, 1)):
                shapes[bytes([high, low]) + counts] = (high & 1) << 1 | additional
    return shapes


_SHAPES = _shapes()


def lean_answer(query: bytes, index: Index, rng: RandomSource, tcp: bool) -> Lean | None:
    """The reply to a query of the common shape, or None: ask the full parser."""
    shape = _SHAPES.get(query[2:12])
    if shape is None:
        return None
    end = query.find(0, 12)  # the root label, unless a label holds a zero (then no zone matches)
    if end < 13 or end > _LAST_NAME_END:
        return None
    question_end = end + 5
    n = len(query)
    if question_end > n or query[end + 3] or query[end + 4] != 1:  # class IN
        return None
    if shape & 1:  # the OPT
        rdata = question_end + 11
        if rdata > n or query[question_end : question_end + 3] != _ROOT_OPT:
            return None
        if query[question_end + 6]:  # EDNS version > 0: BADVERS
            return None
        record_end = rdata + (query[rdata - 2] << 8 | query[rdata - 1])
        if record_end > n:
            return None
        option = rdata
        while option < record_end:  # every option whole (cookies, padding, ...)
            if option + 4 > record_end:
                return None
            option += 4 + (query[option + 2] << 8 | query[option + 3])
        if option != record_end:
            return None
        opt = OPT_DO if query[question_end + 7] & 0x80 else OPT_PLAIN
        if tcp:
            limit = TCP_LIMIT
        else:
            payload = query[question_end + 3] << 8 | query[question_end + 4]
            limit = UDP_PLAIN if payload < UDP_PLAIN else min(payload, EDNS_PAYLOAD)
    else:
        opt = b""
        limit = TCP_LIMIT if tcp else UDP_PLAIN

    name = query[12 : end + 1].lower()
    cut = name.rfind(b"_") - 1
    if cut < 0:
        return None
    apex = name[cut:]
    zone = index.zones.get(apex)
    if zone is None:
        return None
    qtype = query[end + 1] << 8 | query[end + 2]
    signing = index.dnssec
    if signing is not None:
        # signed zones: DO=1 replies for names that exist are made (signed) once by the full
        # path, srvd.answer.signed, which leaves their pieces in the signer; the same question
        # again is answered here, as is every name that does not exist
        if opt is OPT_DO:
            if qtype in _SIGNED_FULL_TYPES:
                return None
            if query[question_end + 7] & 0x40 and signing.compact:  # CO, echoed (RFC 9824 §5)
                opt = OPT_DO_CO
            if cut:  # an RRset below the apex: the records and their cached signature
                node = zone.table.names.get(name[:cut])
                rrset = node.rrsets.get(qtype) if node is not None else None
                if rrset is not None:
                    signature = signing.cached_rrsig(name, qtype, apex)
                    if signature is None:
                        return None
                    static = rrset.static
                    if static is None:
                        static = rrset.wire(rng, name[cut + 1 + name[cut] :])
                    head = _HEAD.pack(_QR | _AA | (shape >> 1 << 8), 1, rrset.count + 1, 0, 1)
                    reply = b"".join(
                        (query[:2], head, query[12:question_end], static, _QUESTION, signature, opt)
                    )
                    if len(reply) > limit:
                        return None
                    row = QTYPE_ROW[qtype + 1] + TCP_CELLS if tcp else QTYPE_ROW[qtype + 1]
                    service = SERVICE_OF.get(name[: cut + 5], OTHER_SERVICE)
                    return reply, row + C_NOERROR, service + ANSWER, apex
                if node is None:
                    relative = name[:cut]
                    if not _labels_end_at(relative, cut):
                        return None
                    if signing.compact:  # one NSEC at the name (srvd.answer.signed)
                        if not compactable(name, qtype):
                            return None
                        co = opt is OPT_DO_CO
                        reply = b"".join(
                            (
                                query[:2],
                                COMPACT_HEADS[co][shape >> 1],
                                query[12:question_end],
                                compact_authority(index, signer_of(index), zone, name, cut),
                                opt,
                            )
                        )
                        if len(reply) > limit:
                            return None
                        row = QTYPE_ROW[qtype + 1] + TCP_CELLS if tcp else QTYPE_ROW[qtype + 1]
                        service = SERVICE_OF.get(name[: cut + 5], OTHER_SERVICE)
                        column = C_NXDOMAIN if co else C_NOERROR
                        return reply, row + column, service + NXDOMAIN_RESULT, apex
                    # NXDOMAIN: the pieces the full path left for the NSECs' gap (and the
                    # wildcard's), which every name in it shares but the pointers
                    gap = signing.denial(zone.table, relative)
                    denial = signing.denials.get((apex, *gap))
                    if denial is None or denial[0] <= signing.clock():  # made here, not kept
                        denial = chain_denial(index, signer_of(index), zone, apex, gap)
                    reply = b"".join(
                        (
                            query[:2],
                            denial[1][shape >> 1],
                            query[12:question_end],
                            _POINTERS[cut].join(denial[2]),
                            opt,
                        )
                    )
                    if len(reply) > limit:
                        return None
                    row = QTYPE_ROW[qtype + 1] + TCP_CELLS if tcp else QTYPE_ROW[qtype + 1]
                    service = SERVICE_OF.get(name[: cut + 5], OTHER_SERVICE)
                    return reply, row + C_NXDOMAIN, service + NXDOMAIN_RESULT, apex
            # the apex's answers and NODATA: the pieces the full path left
            hit = signing.replies.get(name + query[end + 1 : end + 3])
            if hit is None or hit[0] <= signing.clock():
                return None
            _until, heads, ordered, domain, body, column, service = hit
            if ordered is not None:
                body = ordered.wire(rng, domain) + body
            reply = b"".join((query[:2], heads[shape >> 1], query[12:question_end], body, opt))
            if len(reply) > limit:
                return None
            row = QTYPE_ROW[qtype + 1] + TCP_CELLS if tcp else QTYPE_ROW[qtype + 1]
            return reply, row + column, service, apex
        if qtype in _SIGNED_ONLY_TYPES:
            return None
    row = QTYPE_ROW[qtype + 1] + TCP_CELLS if tcp else QTYPE_ROW[qtype + 1]
    table = zone.table

    if cut:  # a name below the apex
        relative = name[:cut]
        node = table.names.get(relative)
        if node is not None:
            rrset = node.rrsets.get(qtype)  # (only SRV and TXT: never a type left to the full path)
            if rrset is not None:
                static = rrset.static
                if static is None:
                    static = rrset.wire(rng, name[cut + 1 + name[cut] :])
                question = query[12:question_end]
                reply = b"".join((query[:2], rrset.heads[shape], question, static, opt))
                if len(reply) > limit:
                    return None
                service = SERVICE_OF.get(name[: cut + 5], OTHER_SERVICE)
                return reply, row + C_NOERROR, service + ANSWER, apex
        if qtype in _FULL_TYPES:
            return None
        service = SERVICE_OF.get(name[: cut + 5], OTHER_SERVICE)
        if node is not None:
            reply = _negative(
                query, question_end, index, _serial(index, zone, apex), 12 + cut, 0, shape, opt
            )
            if len(reply) > limit:
                return None
            return reply, row + C_NOERROR, service + NODATA, apex
        if not _labels_end_at(relative, cut):
            return None
        reply = _negative(
            query, question_end, index, _serial(index, zone, apex), 12 + cut, _NXDOMAIN, shape, opt
        )
        if len(reply) > limit:
            return None
        return reply, row + C_NXDOMAIN, service + NXDOMAIN_RESULT, apex

    if qtype in _FULL_TYPES:  # the apex
        return None
    service = AXIGEN_SERVICE if name.startswith(AXIGEN_LABEL) else OTHER_SERVICE
    if qtype == SOA:
        records, count = index.soa(12, _serial(index, zone, apex), False), 1
    elif qtype == NS:
        records, count = index.ns_records, index.ns_count
    else:
        node = table.apex
        rrset = node.rrsets.get(qtype) if node is not None else None
        if rrset is None:
            reply = _negative(
                query, question_end, index, _serial(index, zone, apex), 12, 0, shape, opt
            )
            if len(reply) > limit:
                return None
            return reply, row + C_NOERROR, service + NODATA, apex
        static = rrset.static
        records = static if static is not None else rrset.wire(rng, name[name[0] + 1 :])
        count = rrset.count
    head = _HEAD.pack(_QR | _AA | (shape >> 1 << 8), 1, count, 0, shape & 1)
    reply = query[:2] + head + query[12:question_end] + records + opt
    if len(reply) > limit:
        return None
    return reply, row + C_NOERROR, service + ANSWER, apex


def _labels_end_at(relative: bytes, cut: int) -> bool:
    """Whether the labels before the apex (they come from the query alone: no index key vouches
    for them) are each at most 63 octets and end exactly at ``cut``."""
    pos = 0
    while pos < cut:
        length = relative[pos]
        if length > 63:
            return False
        pos += length + 1
    return pos == cut


def _serial(index: Index, zone: Zone, apex: bytes) -> int:
    """The zone's SOA serial: moved by the signatures' window when signed (Index.serial)."""
    signing = index.dnssec
    return zone.serial if signing is None else signing.serial(apex, zone.serial)


def _negative(
    query: bytes,
    question_end: int,
    index: Index,
    serial: int,
    pointer: int,
    rcode: int,
    shape: int,
    opt: bytes,
) -> bytes:
    """NXDOMAIN or NODATA with the zone's SOA, its owner a pointer to the apex in the question."""
    head = _HEAD.pack(_QR | _AA | (shape >> 1 << 8) | rcode, 1, 0, 1, shape & 1)
    return query[:2] + head + query[12:question_end] + index.soa(pointer, serial, True) + opt
