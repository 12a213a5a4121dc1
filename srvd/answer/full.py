"""Query bytes → reply bytes: the behaviour table of dns-behaviour.md, without I/O.

The header, question and additional section are parsed by hand (no message objects); the reply
is assembled from the index's ready wire pieces. Where the behaviour reference is silent, srvd
does what NSD 4.6 does (docs/behaviour.md lists those choices):

- opcodes other than QUERY: NOTIMP, header only (no question), RD copied;
- FORMERR is header only: QDCOUNT != 1, records in the answer or authority section, a nonzero RCODE
  in the query, a bad name, a truncated question or record, anything but OPT or a final TSIG in the
  additional section, two OPTs, an OPT not owned by the root or with malformed options;
- EDNS version > 0: BADVERS before any other check of the question;
- a TSIG record: NOTAUTH with a TSIG BADKEY record (srvd has no keys yet);
- class ANY: the IN data with AA=0 and no SOA in the authority section;
- AXFR over UDP: NOTIMP; AXFR and IXFR otherwise: REFUSED;
- bytes after the last record are ignored.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from srvd.answer.catalog import catalog_answer
from srvd.answer.outcome import (
    ANSWER,
    AXIGEN_LABEL,
    AXIGEN_SERVICE,
    C_BADVERS,
    C_FORMERR,
    C_NOERROR,
    C_NOERROR_TC,
    C_NOTAUTH,
    C_NOTAUTH_TC,
    C_NOTIMP,
    C_NXDOMAIN,
    C_REFUSED,
    DROP_RESPONSE,
    DROP_SHORT,
    NO_SERVICE,
    NODATA,
    NXDOMAIN_RESULT,
    OTHER_SERVICE,
    QTYPE_ROW,
    SERVICE_OF,
    TCP_CELLS,
    UNKNOWN_ROW,
)
from srvd.answer.signed import signed_answer
from srvd.index.model import NS, SOA, Index, RRset
from srvd.wire.dnssec import CO, DNSSEC_TYPES, NXNAME
from srvd.wire.names import MessageFormatError, read_name, skip_name
from srvd.wire.ordering import RandomSource

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, NOTAUTH = 0, 1, 2, 3, 4, 5, 9
BADVERS = 16
BADKEY = 17
OPT = 41
TSIG = 250
IXFR = 251
AXFR = 252
ANY = 255
CLASS_IN = 1
CLASS_ANY = 255

EDNS_PAYLOAD = 1232  # DNS Flag Day 2020
UDP_PLAIN = 512
TCP_LIMIT = 65535

QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
_TC_HIGH = TC >> 8  # TC in the first octet of the flags

_HEAD = struct.Struct("!HHHHH")  # the header after the ID
_COUNTS = struct.Struct("!HHHH")
_U16 = struct.Struct("!H")
_RR_FIXED = struct.Struct("!HHIH")
OPT_PLAIN = b"\x00" + _RR_FIXED.pack(OPT, EDNS_PAYLOAD, 0, 0)
OPT_DO = b"\x00" + _RR_FIXED.pack(OPT, EDNS_PAYLOAD, 0x8000, 0)
OPT_DO_CO = b"\x00" + _RR_FIXED.pack(OPT, EDNS_PAYLOAD, 0x8000 | CO, 0)  # RFC 9824 §5 echo


_FormErr = MessageFormatError  # a query answered FORMERR


def _opt(ext_rcode: int, do: int) -> bytes:
    if not ext_rcode:
        return OPT_DO if do else OPT_PLAIN
    return b"\x00" + _RR_FIXED.pack(OPT, EDNS_PAYLOAD, (ext_rcode << 24) | do, 0)


def _question_end(query: bytes) -> int:
    """The end of the question section of a well-formed one-question query, or 0."""
    pos = 12
    n = len(query)
    while pos < n:
        length = query[pos]
        if length == 0:
            end = pos + 5
            return end if end <= n and end - 12 <= 259 else 0
        if length > 63:
            return 0
        pos += length + 1
    return 0


def servfail(query: bytes) -> bytes | None:
    """The SERVFAIL reply to a query that srvd's own code failed on."""
    if len(query) < 12 or query[2] & 0x80:
        return None
    rd = (query[2] << 8) & RD
    end = _question_end(query) if query[4:6] == b"\x00\x01" else 0
    flags = QR | ((query[2] & 0x78) << 8) | rd | SERVFAIL
    return query[:2] + _HEAD.pack(flags, 1 if end else 0, 0, 0, 0) + query[12:end]


# A reply and where the metrics count it: (reply or None, query cell or drop reason, service cell)
Outcome = tuple[bytes | None, int, int]


class Raw(NamedTuple):
    """A reply without its ID, and where the metrics count it: the reply is the ID, ``head``,
    the RRset's records in an RFC 2782 order drawn for this reply (when there is one to order)
    and ``tail``."""

    head: bytes  # the octets after the ID up to the ordered records
    rrset: RRset | None  # the RRset to order for each reply, or None
    domain: bytes  # the customer domain, for {domain} templates
    tail: bytes  # the octets after the records
    cell: int  # query cell (srvd.answer.outcome)
    service: int  # service cell


class Entry(NamedTuple):
    """A reply in pieces around the query's own question: the ID, ``header``, the question
    (``qlen`` octets of the query), ``after``, then for an RRset to order its records and
    ``tail``. Rate limiting's slipped replies are cut from these pieces."""

    header: bytes  # the header after the ID
    qlen: int  # the question's length (0: no question echoed)
    after: bytes  # the octets after the question up to the ordered records
    rrset: RRset | None
    domain: bytes
    tail: bytes
    cell: int
    service: int


def reply_of(query: bytes, entry: Entry, rng: RandomSource) -> bytes:
    header, qlen, after, rrset, domain, tail, _cell, _service = entry
    if rrset is None:
        return query[:2] + header + query[12 : 12 + qlen] + after
    return query[:2] + header + query[12 : 12 + qlen] + after + rrset.wire(rng, domain) + tail


def folded_key(query: bytes) -> bytes:
    """The octets after the ID with the letters of the question name folded to lower case.

    Queries with equal keys get the same reply but for their ID and echoed question. Folding
    stops at the first zero octet after the header (the root label, or earlier in a binary
    label), so it only touches label octets, where case does not matter (RFC 4343); length octets
    are at most 63 and never letters.
    """
    end = query.find(0, 12)
    if end <= 12:
        return query[2:]
    name = query[12:end]
    folded = name.lower()
    return query[2:] if folded == name else query[2:12] + folded + query[end:]


def zone_of(query: bytes) -> bytes:
    """The zone part of a query's name, lower case, as rate limiting keys its buckets: from the
    label holding its last "_" on (the apex, for a name in a served zone), else the whole name.
    The lean path (srvd.answer.lean) finds the same apex for the queries it answers."""
    end = query.find(0, 12)
    if end < 12:
        return b""
    name = query[12 : end + 1].lower()
    return name[max(0, name.rfind(b"_") - 1) :]


def answer(query: bytes, index: Index, rng: RandomSource, tcp: bool = False) -> bytes | None:
    """The reply to one query, or None when no reply may be sent (short, or a response)."""
    entry = entry_for(query, index, tcp)
    return None if entry is None else reply_of(query, entry, rng)


def answer_outcome(query: bytes, index: Index, rng: RandomSource, tcp: bool = False) -> Outcome:
    """``answer``, with the cells the metrics count it in (srvd.answer.outcome).

    No reply: (None, the drop reason, NO_SERVICE).
    """
    entry = entry_for(query, index, tcp)
    if entry is None:
        return None, DROP_SHORT if len(query) < 12 else DROP_RESPONSE, NO_SERVICE
    return reply_of(query, entry, rng), entry.cell, entry.service


def entry_for(query: bytes, index: Index, tcp: bool = False) -> Entry | None:
    """What to reply to a query, but its ID, question and SRV order; None: no reply."""
    raw = _raw_entry(query, index, tcp)
    if raw is None:
        return None
    head, rrset, domain, tail, cell, service = raw
    qlen = _question_end(query) - 12 if head[2:4] == b"\x00\x01" else 0  # QDCOUNT 1 or 0
    return Entry(head[:10], qlen, head[10 + qlen :], rrset, domain, tail, cell, service)


def _raw_entry(query: bytes, index: Index, tcp: bool) -> Raw | None:
    n = len(query)
    if n < 12:
        return None
    flags = query[2] << 8 | query[3]
    if flags & QR:
        return None
    rd = flags & RD
    row = UNKNOWN_ROW + TCP_CELLS if tcp else UNKNOWN_ROW
    if flags & 0x7800:  # opcode other than QUERY
        head = _HEAD.pack(QR | (flags & 0x7800) | rd | NOTIMP, 0, 0, 0, 0)
        return Raw(head, None, b"", b"", row + C_NOTIMP, NO_SERVICE)
    try:
        return _entry(query, n, flags, rd, index, tcp)
    except _FormErr:
        return Raw(
            _HEAD.pack(QR | rd | FORMERR, 0, 0, 0, 0),
            None,
            b"",
            b"",
            row + C_FORMERR,
            NO_SERVICE,
        )


def _entry(query: bytes, n: int, flags: int, rd: int, index: Index, tcp: bool) -> Raw:
    qd, an, ns, ar = _COUNTS.unpack_from(query, 4)
    if qd != 1 or an or ns or flags & 0x000F:
        raise _FormErr

    # The question: labels only (no compression in a query's question), at most 255 octets.
    pos = 12
    last_underscore = -1  # offset in the name of its rightmost label that starts with "_"
    while True:
        if pos >= n:
            raise _FormErr
        length = query[pos]
        if length == 0:
            break
        if length > 63 or pos + length >= n:
            raise _FormErr
        if query[pos + 1] == 95:  # "_"
            last_underscore = pos - 12
        pos += length + 1
    name_end = pos + 1
    if name_end - 12 > 255:
        raise _FormErr
    question_end = name_end + 4
    if question_end > n:
        raise _FormErr
    qtype = query[name_end] << 8 | query[name_end + 1]
    qclass = query[name_end + 2] << 8 | query[name_end + 3]
    row = QTYPE_ROW[qtype + 1] + TCP_CELLS if tcp else QTYPE_ROW[qtype + 1]

    # The additional section: at most one OPT, and a TSIG only as the last record.
    edns = False
    payload = version = do = co = 0
    tsig_at = -1
    pos = question_end
    for i in range(ar):
        start = pos
        pos = skip_name(query, pos, n)
        if pos + 10 > n:
            raise _FormErr
        rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(query, pos)
        rdata = pos + 10
        pos = rdata + rdlength
        if pos > n:
            raise _FormErr
        if rtype == OPT:
            if edns or query[start] != 0:
                raise _FormErr
            edns = True
            payload = rclass
            version = (ttl >> 16) & 0xFF
            do = ttl & 0x8000
            co = ttl & CO
            option = rdata
            while option < pos:
                if option + 4 > pos:
                    raise _FormErr
                option += 4 + (query[option + 2] << 8 | query[option + 3])
            if option != pos:
                raise _FormErr
        elif rtype == TSIG and i == ar - 1:
            tsig_at = start
        else:
            raise _FormErr

    question = query[12:question_end]
    if edns:
        if version:
            head = _HEAD.pack(QR | rd, 1, 0, 0, 1) + question + _opt(BADVERS >> 4, do)
            return Raw(head, None, b"", b"", row + C_BADVERS, NO_SERVICE)
        opt = _opt(0, do)
        limit = TCP_LIMIT if tcp else max(UDP_PLAIN, min(payload, EDNS_PAYLOAD))
    else:
        opt = b""
        limit = TCP_LIMIT if tcp else UDP_PLAIN
    additional = 1 if edns else 0

    if tsig_at >= 0:
        head = _badkey(query, rd, question, tsig_at, opt)
        if len(head) + 2 <= limit:
            return Raw(head, None, b"", b"", row + C_NOTAUTH, NO_SERVICE)
        # long key or algorithm names: never more than the limit
        head = _HEAD.pack(QR | TC | rd | NOTAUTH, 1, 0, 0, additional) + question + opt
        return Raw(head, None, b"", b"", row + C_NOTAUTH_TC, NO_SERVICE)
    if qclass != CLASS_IN and qclass != CLASS_ANY:
        head = _HEAD.pack(QR | rd | REFUSED, 1, 0, 0, additional) + question + opt
        return Raw(head, None, b"", b"", row + C_REFUSED, NO_SERVICE)
    if qtype in (AXFR, IXFR):
        rcode, column = (NOTIMP, C_NOTIMP) if qtype == AXFR and not tcp else (REFUSED, C_REFUSED)
        head = _HEAD.pack(QR | rd | rcode, 1, 0, 0, additional) + question + opt
        return Raw(head, None, b"", b"", row + column, NO_SERVICE)

    # The zone: its apex is the rightmost "_" label (customer domains have none of their own).
    qname = query[12:name_end].lower()
    zone = index.zones.get(qname[last_underscore:]) if last_underscore >= 0 else None
    if zone is None:
        if index.catalog is not None:  # the catalog zone (srvd.index.catalog), when there is one
            found = catalog_answer(
                *(index, index.catalog, qname, qtype, qclass, rd, question, opt, do, limit, row)
            )
            if found is not None:
                return Raw(found[0], None, b"", b"", found[1], found[2])
        head = _HEAD.pack(QR | rd | REFUSED, 1, 0, 0, additional) + question + opt
        return Raw(head, None, b"", b"", row + C_REFUSED, NO_SERVICE)

    aa = AA if qclass == CLASS_IN else 0
    table = zone.table
    signing = index.dnssec
    if signing is None:
        serial = zone.serial
    else:  # a signed zone (srvd.answer.signed): its serial moves with the signatures' window
        if qtype == NXNAME and signing.compact:  # RFC 9824 §3.5: a meta-type, never asked for
            head = _HEAD.pack(QR | rd | FORMERR, 1, 0, 0, additional) + question + opt
            return Raw(head, None, b"", b"", row + C_FORMERR, NO_SERVICE)
        if qclass == CLASS_IN and (do or qtype in DNSSEC_TYPES):
            co = co if do and signing.compact else 0
            return Raw(
                *signed_answer(
                    *(index, zone, qname, last_underscore, qtype, rd),
                    *(question, OPT_DO_CO if co else opt, do, limit, row, co),
                )
            )
        serial = signing.serial(qname[last_underscore:], zone.serial)
    rrset: RRset | None
    if last_underscore == 0:  # the apex
        service = AXIGEN_SERVICE if qname.startswith(AXIGEN_LABEL) else OTHER_SERVICE
        domain = qname[qname[0] + 1 :]
        if qtype in (SOA, ANY):
            records, count, rrset = index.soa(12, serial, False), 1, None
        elif qtype == NS:
            records, count, rrset = index.ns_records, index.ns_count, None
        else:
            node = table.apex
            rrset = node.rrsets.get(qtype) if node is not None else None
            if rrset is None:
                head = _negative(index, rd, aa, question, serial, 12, NOERROR, opt, limit)
                column = C_NOERROR_TC if head[0] & _TC_HIGH else C_NOERROR
                return Raw(head, None, b"", b"", row + column, service + NODATA)
            records, count = rrset.wire(_NO_ORDER, domain), rrset.count
    else:
        relative = qname[:last_underscore]
        service = SERVICE_OF.get(qname[: last_underscore + 5], OTHER_SERVICE)
        node = table.names.get(relative)
        pointer = 12 + last_underscore
        if node is None:
            head = _negative(index, rd, aa, question, serial, pointer, NXDOMAIN, opt, limit)
            return Raw(head, None, b"", b"", row + C_NXDOMAIN, service + NXDOMAIN_RESULT)
        rrset = node.rrsets.get(qtype)
        if rrset is None and qtype == ANY:
            rrset = node.any
        if rrset is None:
            head = _negative(index, rd, aa, question, serial, pointer, NOERROR, opt, limit)
            column = C_NOERROR_TC if head[0] & _TC_HIGH else C_NOERROR
            return Raw(head, None, b"", b"", row + column, service + NODATA)
        domain = qname[last_underscore + 1 + qname[last_underscore] :]
        records, count = rrset.wire(_NO_ORDER, domain), rrset.count
    if 12 + len(question) + len(records) + len(opt) > limit:  # the order changes no size
        head = _HEAD.pack(QR | aa | TC | rd, 1, 0, 0, additional) + question + opt
        return Raw(head, None, b"", b"", row + C_NOERROR_TC, service + ANSWER)
    head = _HEAD.pack(QR | aa | rd, 1, count, 0, additional) + question
    if rrset is None or not rrset.ordered:  # nothing to draw per query
        return Raw(head + records + opt, None, b"", b"", row + C_NOERROR, service + ANSWER)
    return Raw(head, rrset, domain, opt, row + C_NOERROR, service + ANSWER)


class _FirstOrder:
    """A random source for sizing an answer once: any order has the same size."""

    def random(self) -> float:
        return 0.0


_NO_ORDER = _FirstOrder()


def _negative(
    index: Index,
    rd: int,
    aa: int,
    question: bytes,
    serial: int,
    pointer: int,
    rcode: int,
    opt: bytes,
    limit: int,
) -> bytes:
    """NXDOMAIN or NODATA: the zone's SOA in the authority section (class IN only, as NSD).

    The reply after its ID. When the SOA does not fit the limit (long MNAME and RNAME): TC=1,
    the question, the OPT and no records, AA and the rcode kept (as NSD)."""
    additional = 1 if opt else 0
    if not aa:
        return _HEAD.pack(QR | rd | rcode, 1, 0, 0, additional) + question + opt
    soa = index.soa(pointer, serial, True)
    if 12 + len(question) + len(soa) + len(opt) > limit:
        return _HEAD.pack(QR | aa | TC | rd | rcode, 1, 0, 0, additional) + question + opt
    return _HEAD.pack(QR | aa | rd | rcode, 1, 0, 1, additional) + question + soa + opt


def _badkey(query: bytes, rd: int, question: bytes, tsig_at: int, opt: bytes) -> bytes:
    """NOTAUTH with an unsigned TSIG BADKEY record (RFC 8945 §5.2.1): srvd knows no keys.

    The reply after its ID. The key and algorithm names are read from the query with its question
    name folded to lower case (``folded_key``): a name compressed to the question comes out the
    same whatever the question's letter case, as the rest of the reply but the echoed question."""
    folded = query[:2] + folded_key(query)  # the same length and offsets as the query
    key = read_name(folded, tsig_at)
    pos = skip_name(query, tsig_at, len(query)) + 10
    algorithm = read_name(folded, pos)
    pos = skip_name(query, pos, len(query))
    if pos + 10 > len(query):
        raise _FormErr
    signed_fudge = query[pos : pos + 8]
    mac_size = query[pos + 8] << 8 | query[pos + 9]
    pos += 10 + mac_size
    if pos + 2 > len(query):
        raise _FormErr
    original_id = query[pos : pos + 2]
    rdata = algorithm + signed_fudge + b"\x00\x00" + original_id + _U16.pack(BADKEY) + b"\x00\x00"
    tsig = key + _RR_FIXED.pack(TSIG, CLASS_ANY, 0, len(rdata)) + rdata
    additional = (1 if opt else 0) + 1
    return _HEAD.pack(QR | rd | NOTAUTH, 1, 0, 0, additional) + question + opt + tsig
