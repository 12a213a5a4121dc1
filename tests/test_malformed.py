"""Every malformed-input row of the answer contract, byte for byte, through the real query path.

Each case goes through ``Responder.respond`` (its kept entries and metrics included) over UDP and
TCP and is compared with the exact reply the contract and docs/behaviour.md ask for. The same rows
are checked field by field on ``srvd.answer.full.answer`` in tests/test_answer.py
(``FORMERR_QUERIES`` / ``test_formerr_is_header_only``, ``test_fewer_than_12_bytes_get_no_reply``,
``test_responses_get_no_reply``, ``test_opcodes_other_than_query_get_notimp_header_only``,
``test_other_classes_are_refused``, ``test_class_any_gets_the_in_data_without_aa``,
``test_edns_version_above_0_is_badvers``, ``test_trailing_garbage_is_ignored``); this file adds the
cases those lack (label types 0x7F and 0xBF, pointer loops, a pointer past the end or into the
header, a question cut inside its type, an OPT owned by a pointer...) and the exact octets.

NSD 4.6.1 was asked every case here on loopback. It answers the same except where the contract
rules otherwise, noted at the case: NSD clears RD in the FORMERR to QDCOUNT 2 (srvd copies RD,
"RD copied from the query"), drops the question from REFUSED for class NONE (srvd echoes it, "the
question echoed"), and answers NOTIFY with NOTAUTH (srvd: NOTIMP, "NOTIFY to srvd included").
"""

from __future__ import annotations

import random
import struct

import pytest

from srvd.answer.outcome import DROP_RESPONSE, DROP_SHORT
from srvd.config import load_config
from srvd.index.build import build_index
from srvd.index.model import Index
from srvd.ops.metrics import Counters
from srvd.server.responder import Responder

from conftest import EXAMPLE

ID = b"\x5a\x17"
SRV, TXT, OPT = 33, 16, 41
IN, CH, NONE, ANY = 1, 3, 254, 255

INDEX: Index = build_index(load_config(EXAMPLE))


def wire_name(text: str) -> bytes:
    return b"".join(bytes([len(x)]) + x.encode() for x in text.split(".") if x) + b"\x00"


def header(flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return ID + struct.pack("!HHHHH", flags, qd, an, ns, ar)


def question(name: str = "_imaps._tcp.example.com", qtype: int = SRV, qclass: int = IN) -> bytes:
    return wire_name(name) + struct.pack("!HH", qtype, qclass)


def opt(payload: int = 1232, ttl: int = 0, options: bytes = b"", owner: bytes = b"\x00") -> bytes:
    return owner + struct.pack("!HHIH", OPT, payload, ttl, len(options)) + options


Q = question()
TYPE_CLASS = struct.pack("!HH", SRV, IN)
FORMERR = ID + b"\x81\x01" + bytes(8)  # QR, RD copied, FORMERR; no question, no OPT
FORMERR_NO_RD = ID + b"\x80\x01" + bytes(8)


def respond_both(q: bytes) -> tuple[bytes | None, bytes | None]:
    """The replies over UDP and over TCP, each from a fresh Responder and then from its kept
    entry (the two must agree)."""
    out = []
    for tcp in (False, True):
        responder = Responder(INDEX, random.Random(0))
        first = responder.respond(q, tcp)
        responder.rng = random.Random(0)
        assert responder.respond(q, tcp) == first
        assert responder.failures == 0
        out.append(first)
    return out[0], out[1]


def assert_reply(q: bytes, expected: bytes | None) -> None:
    udp, tcp = respond_both(q)
    assert udp == expected, f"UDP reply {udp!r} to {q.hex()}"
    assert tcp == expected, f"TCP reply {tcp!r} to {q.hex()}"


# ---------------------------------------------------------------------------------------------
# No reply at all


@pytest.mark.parametrize("length", range(12))
def test_short_header_gets_no_reply_and_counts_as_short(length: int) -> None:
    q = (header() + Q)[:length]
    for tcp in (False, True):
        responder = Responder(INDEX, random.Random(0))
        assert responder.respond(q, tcp) is None
        counters: Counters = responder.fold()
        assert counters.dropped[DROP_SHORT] == 1 and counters.dropped[DROP_RESPONSE] == 0


@pytest.mark.parametrize(
    "q",
    [
        header(0x8100) + Q,  # a reply to our question
        header(0x8000, qd=0),  # bare header
        header(0x8000 | 4 << 11) + Q,  # a NOTIFY response
        header(0x8105) + Q,  # a REFUSED response
        header(0xFFFF, qd=0xFFFF, an=0xFFFF, ns=0xFFFF, ar=0xFFFF),  # every bit set
    ],
    ids=["response", "bare", "notify-response", "refused-response", "all-ones"],
)
def test_qr_set_gets_no_reply_and_counts_as_response(q: bytes) -> None:
    for tcp in (False, True):
        responder = Responder(INDEX, random.Random(0))
        assert responder.respond(q, tcp) is None
        counters = responder.fold()
        assert counters.dropped[DROP_RESPONSE] == 1 and counters.dropped[DROP_SHORT] == 0


# ---------------------------------------------------------------------------------------------
# FORMERR, header only: ID, QR, opcode QUERY, RD copied, rcode 1, every count 0


FORMERR_CASES: dict[str, bytes] = {
    # QDCOUNT other than 1
    "qdcount-0": header(qd=0),
    "qdcount-0-with-question": header(qd=0) + Q,
    "qdcount-2": header(qd=2) + Q + Q,  # NSD clears RD here; the contract copies it
    "qdcount-2-one-question": header(qd=2) + Q,
    "qdcount-65535": header(qd=0xFFFF) + Q,
    # a label length pointing past the end of the message
    "label-past-end": header() + b"\x3fabc",
    "label-past-end-by-one": header() + b"\x05abcd",
    "second-label-past-end": header() + b"\x06_imaps\x3f_tcp",
    # label lengths over 63: the 0x40 and 0x80 type bits (extended and reserved labels)
    "label-0x40": header() + b"\x40" + b"a" * 64 + b"\x00" + TYPE_CLASS,
    "label-0x41": header() + b"\x41" + TYPE_CLASS,
    "label-0x7f": header() + b"\x7f" + b"a" * 127 + b"\x00" + TYPE_CLASS,
    "label-0x80": header() + b"\x80" + b"a" * 10 + TYPE_CLASS,
    "label-0xbf": header() + b"\xbf" + b"a" * 10 + TYPE_CLASS,
    "label-0x40-after-a-good-one": header() + b"\x06_imaps\x40" + b"a" * 64 + b"\x00" + TYPE_CLASS,
    # compression pointers in the question (a query's question is never compressed)
    "pointer-loop-to-itself": header() + b"\xc0\x0c" + TYPE_CLASS,
    "pointer-loop-two-steps": header() + b"\x01a\xc0\x0c" + TYPE_CLASS,
    "pointer-loop-after-labels": header() + b"\x06_imaps\x04_tcp\xc0\x12" + TYPE_CLASS,
    "forward-pointer": header() + b"\xc0\x11" + TYPE_CLASS + wire_name("_tcp.example.com"),
    "pointer-past-the-end": header() + b"\xc0\xff" + TYPE_CLASS,
    "pointer-into-the-header": header() + b"\xc0\x02" + TYPE_CLASS,
    "pointer-cut-in-half": header() + b"\x06_imaps\xc0",
    # a truncated question
    "name-without-root-label": header() + b"\x06_imaps\x04_tcp",
    "no-qtype": header() + wire_name("_imaps._tcp.example.com"),
    "half-a-qtype": header() + wire_name("_imaps._tcp.example.com") + b"\x00",
    "no-qclass": header() + wire_name("_imaps._tcp.example.com") + b"\x00\x21",
    "half-a-qclass": header() + wire_name("_imaps._tcp.example.com") + b"\x00\x21\x00",
    "qname-256-octets": header() + question(".".join(["a" * 63] * 3 + ["a" * 62])),
    # the additional section
    "two-opts": header(ar=2) + Q + opt() + opt(),
    "two-opts-second-broken": header(ar=2) + Q + opt() + opt()[:5],
    "opt-rdlength-past-the-end": header(ar=1) + Q + opt()[:-2] + b"\x00\x08",
    "opt-rdlength-past-the-end-by-one": header(ar=1) + Q + opt()[:-2] + b"\x00\x05" + b"\x00" * 4,
    "opt-option-length-past-rdata": header(ar=1) + Q + opt(options=b"\x00\x0a\x00\x08abcd"),
    "opt-option-header-cut": header(ar=1) + Q + opt(options=b"\x00\x0a\x00"),
    "opt-second-option-past-rdata": header(ar=1)
    + Q
    + opt(options=b"\x00\x0a\x00\x02ab" + b"\x00\x0c\x00\x01"),
    "opt-fixed-part-cut": header(ar=1) + Q + opt()[:7],
    "opt-nonroot-owner": header(ar=1) + Q + opt(owner=wire_name("x")),
    "opt-owner-pointer-to-qname": header(ar=1) + Q + opt(owner=b"\xc0\x0c"),
    "opt-owner-bad-label": header(ar=1) + Q + opt(owner=b"\x40"),
    "arcount-1-no-record": header(ar=1) + Q,
    "arcount-2-one-opt": header(ar=2) + Q + opt(),
    # records where a query has none, and an rcode in a query (as NSD)
    "ancount-1": header(an=1) + Q,
    "nscount-1": header(ns=1) + Q + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 0, 0),
    "rcode-in-query": header(0x0105) + Q,
}


@pytest.mark.parametrize("q", FORMERR_CASES.values(), ids=list(FORMERR_CASES))
def test_formerr_exact(q: bytes) -> None:
    assert_reply(q, FORMERR)


def test_formerr_without_rd() -> None:
    for q in (header(0, qd=2) + Q, header(0) + b"\xc0\x0c" + TYPE_CLASS, header(0x0030, qd=0)):
        assert_reply(q, FORMERR_NO_RD)  # AD and CD of the query are not copied either


# ---------------------------------------------------------------------------------------------
# Replies with the question echoed


@pytest.mark.parametrize("do", [False, True])
@pytest.mark.parametrize("version", [1, 2, 255])
def test_edns_version_above_0_is_badvers_exact(version: int, do: bool) -> None:
    flags = 0x8000 if do else 0
    for name, qtype in [("_imaps._tcp.example.com", SRV), ("example.com", 1), ("x.y", SRV)]:
        qsec = question(name, qtype)
        q = header(ar=1) + qsec + opt(payload=4096, ttl=version << 16 | flags)
        # extended rcode 16: 1 in the OPT's TTL, 0 in the header; version 0, payload 1232
        expected = header(0x8100, ar=1) + qsec + opt(ttl=0x01000000 | flags)
        assert_reply(q, expected)


def test_badvers_before_class_and_zone() -> None:
    for qsec in (question("version.bind", TXT, CH), question("_tcp.example.com", 252, IN)):
        q = header(ar=1) + qsec + opt(ttl=1 << 16)
        assert_reply(q, header(0x8100, ar=1) + qsec + opt(ttl=0x01000000))


@pytest.mark.parametrize("opcode", range(1, 16))
def test_opcodes_1_to_15_get_notimp_header_only(opcode: int) -> None:
    """Header only (no question, no OPT), the opcode and RD copied (as NSD); NOTIFY (4) included,
    which NSD answers NOTAUTH when the sender is not a configured primary."""
    for rd in (0, 0x0100):
        for body, qd, ar in ((Q, 1, 0), (b"", 0, 0), (Q + opt(), 1, 1), (b"\xc0", 1, 0)):
            q = header(opcode << 11 | rd, qd=qd, ar=ar) + body
            expected = ID + struct.pack("!H", 0x8000 | opcode << 11 | rd | 4) + bytes(8)
            assert_reply(q, expected)


@pytest.mark.parametrize("qclass", [CH, NONE, 0, 2, 4, 0xFFFE, 0xFFFF], ids=lambda c: f"class-{c}")
def test_classes_other_than_in_and_any_are_refused_with_the_question(qclass: int) -> None:
    """REFUSED, AA=0, the question echoed (NSD drops it for class NONE; the contract echoes it)."""
    for name, qtype in [("_imaps._tcp.example.com", SRV), ("version.bind", TXT)]:
        qsec = question(name, qtype, qclass)
        assert_reply(header() + qsec, header(0x8105) + qsec)
        q = header(ar=1) + qsec + opt(ttl=0x8000)
        assert_reply(q, header(0x8105, ar=1) + qsec + opt(ttl=0x8000))


def test_class_any_is_the_in_answer_without_aa() -> None:
    """As NSD: the IN data, AA=0; the reply differs from the IN one in AA and the echoed QCLASS."""
    for name, qtype in [("_imaps._tcp.example.com", SRV), ("_tcp.example.com", 6)]:
        in_reply, _ = respond_both(header() + question(name, qtype, IN))
        assert in_reply is not None and in_reply[2] & 0x04  # AA
        q = header() + question(name, qtype, ANY)
        qsec_end = 12 + len(question(name, qtype))
        expected = in_reply[:2] + bytes([in_reply[2] & ~0x04]) + in_reply[3 : qsec_end - 2]
        expected += b"\x00\xff" + in_reply[qsec_end:]
        assert_reply(q, expected)


def test_class_any_negative_and_outside_zones() -> None:
    nx = question("_nope._tcp.example.com", SRV, ANY)
    assert_reply(header() + nx, header(0x8103) + nx)  # NXDOMAIN, AA=0, no SOA (as NSD)
    out = question("example.com", 1, ANY)
    assert_reply(header() + out, header(0x8105) + out)  # REFUSED


@pytest.mark.parametrize(
    "garbage",
    [b"\x00", b"\xde\xad\xbe\xef", b"\xc0\x0c", b"\x00" * 11, bytes(range(256)), b"\xff" * 1000],
    ids=["zero", "deadbeef", "pointer", "eleven-zeros", "256", "1000-ff"],
)
def test_trailing_garbage_after_the_last_record_is_ignored(garbage: bytes) -> None:
    """As NSD (asked on loopback): octets after the question, or after the last counted record,
    change nothing; the reply is the one to the clean query (docs/behaviour.md)."""
    for clean in (header() + Q, header(ar=1) + Q + opt(ttl=0x8000), header() + question("x.y")):
        assert_reply(clean + garbage, respond_both(clean)[0])


def test_trailing_garbage_counted_as_a_record_is_formerr() -> None:
    """The other side of the same line: garbage that ARCOUNT says is a record is read as one."""
    assert_reply(header(ar=1) + Q + b"\xde\xad\xbe\xef", FORMERR)
    assert_reply(header(ar=2) + Q + opt() + b"\xde\xad", FORMERR)
