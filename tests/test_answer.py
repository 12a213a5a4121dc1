"""srvd.answer.full.answer on plain bytes: one or more tests per row of dns-behaviour.md.

No sockets and no reactor: queries are built with dnspython or packed by hand (for the malformed
ones), replies are checked as raw bytes and decoded with dnspython as a cross-check.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import pytest

import srvd
import srvd.errors
from srvd.answer.full import answer
from srvd.config import load_config
from srvd.index.build import build_index
from srvd.index.model import Index
from srvd.server.responder import Responder

EXAMPLE = Path(srvd.__file__).resolve().parent / "data" / "example.yaml"
SERIAL = 2024010101
ID = 0x5A17
IDB = struct.pack("!H", ID)

# header flags
QR, AA, TC, RD, RA, Z, AD, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0040, 0x0020, 0x0010
# rcodes and types
NOERROR, FORMERR, NXDOMAIN, NOTIMP, REFUSED, NOTAUTH = 0, 1, 3, 4, 5, 9
A, NS, SOA, HINFO, TXT, SRV, OPT = 1, 2, 6, 13, 16, 33, 41
TSIG, IXFR, AXFR, ANY = 250, 251, 252, 255
IN, CH, NONE, CLASS_ANY = 1, 3, 254, 255

# Texts of the "big" test profile (each unique: the config refuses duplicates).
MID_TEXTS = [f"{i}" + "m" * 89 for i in range(8)]  # 8 records of 90 octets: a reply of ~900
BIG_TEXTS = [f"{i}" + "b" * 299 for i in range(6)]  # 6 records of 300 octets: ~1900, TCP only
LONG_TEXT = "L" * 520  # one record: strings of 255 + 255 + 10
EDGE_TEXT = "e" * 440  # one record: a reply between 480 and 512 octets with an OPT

BIG_YAML = f"""
listen: [127.0.0.1:5353]
zone:
  ttl: 60
  nameservers: [ns1.test.example, ns2.test.example]
  hostmaster: dns-admin@test.example
  minimum: 300
profiles:
  big:
    imaps:
      - {{target: a.example.net, port: 993, priority: 0, weight: 10}}
      - {{target: b.example.net, port: 993, priority: 0, weight: 5}}
    imap: off
    axigen: "webmail.{{domain}}"
    srv:
      _x.sub._tcp: [{{target: x.example.net, port: 1}}]
      _multi._tcp:
        - {{target: p20a.example.net, port: 1, priority: 20, weight: 0}}
        - {{target: p20b.example.net, port: 1, priority: 20, weight: 0}}
        - {{target: p20c.example.net, port: 1, priority: 20, weight: 3}}
        - {{target: p10a.example.net, port: 1, priority: 10, weight: 1}}
        - {{target: p10b.example.net, port: 1, priority: 10, weight: 2}}
        - {{target: p5.example.net, port: 1, priority: 5, weight: 7}}
      _tmpl._tcp: [{{target: "srv.{{domain}}", port: 8443}}]
    txt:
      _mid._tcp: {MID_TEXTS}
      _big._tcp: {BIG_TEXTS}
      _long._tcp: ["{LONG_TEXT}"]
      _edge._tcp: ["{EDGE_TEXT}"]
domains:
  big.example: big
  bücher.example: big
"""


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers


def _serial(apex: bytes, digest: bytes) -> int:
    return SERIAL


@pytest.fixture(scope="module")
def example() -> Index:
    return build_index(load_config(EXAMPLE), _serial)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Index:
    path = tmp_path_factory.mktemp("big") / "srvd.yaml"
    path.write_text(BIG_YAML, encoding="utf-8")
    return build_index(load_config(path), _serial)


def wire_name(text: str) -> bytes:
    """Uncompressed wire form of a dotted name, letter case kept."""
    out = b""
    for label in text.rstrip(".").split("."):
        if label:
            raw = label.encode()
            out += bytes([len(raw)]) + raw
    return out + b"\x00"


def header(
    flags: int = RD, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0, ident: int = ID
) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, qd, an, ns, ar)


def question(name: str | bytes, qtype: int = SRV, qclass: int = IN) -> bytes:
    raw = wire_name(name) if isinstance(name, str) else name
    return raw + struct.pack("!HH", qtype, qclass)


def opt(
    payload: int = 1232,
    version: int = 0,
    do: bool = False,
    options: bytes = b"",
    owner: bytes = b"\x00",
    ext_rcode: int = 0,
) -> bytes:
    ttl = (ext_rcode << 24) | (version << 16) | (0x8000 if do else 0)
    return owner + struct.pack("!HHIH", OPT, payload, ttl, len(options)) + options


def query(
    name: str | bytes,
    qtype: int = SRV,
    qclass: int = IN,
    *,
    flags: int = RD,
    edns: bytes | None = None,
    ident: int = ID,
) -> bytes:
    """A well-formed one-question query, with an OPT record when ``edns`` is given."""
    ar = 1 if edns is not None else 0
    return header(flags, 1, 0, 0, ar, ident) + question(name, qtype, qclass) + (edns or b"")


@dataclass
class Reply:
    raw: bytes
    ident: int
    flags: int
    qd: int
    an: int
    ns: int
    ar: int

    @property
    def rcode(self) -> int:
        return self.flags & 0x000F

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0x0F

    def has(self, bit: int) -> bool:
        return bool(self.flags & bit)

    def message(self) -> dns.message.Message:
        return dns.message.from_wire(self.raw)


def ask(index: Index, q: bytes, tcp: bool = False, rng: random.Random | None = None) -> Reply:
    raw = answer(q, index, rng or random.Random(0), tcp)
    assert raw is not None, f"no reply to {q.hex()}"
    ident, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", raw)
    return Reply(raw, ident, flags, qd, an, ns, ar)


def question_of(q: bytes) -> bytes:
    """The question section of a well-formed query (labels only)."""
    pos = 12
    while q[pos]:
        pos += q[pos] + 1
    return q[12 : pos + 5]


def assert_header_only(reply: Reply, rcode: int, rd: bool = True) -> None:
    assert len(reply.raw) == 12, reply.raw.hex()
    assert reply.ident == ID
    assert reply.has(QR)
    assert reply.rcode == rcode
    assert (reply.qd, reply.an, reply.ns, reply.ar) == (0, 0, 0, 0)
    assert reply.has(RD) == rd
    for bit in (AA, TC, RA, Z, AD, CD):
        assert not reply.has(bit)


def assert_echo(reply: Reply, q: bytes) -> None:
    """Same ID, QR=1, RA/AD/CD/Z clear, RD copied, the question echoed byte for byte."""
    assert reply.raw[:2] == q[:2]
    assert reply.has(QR)
    for bit in (RA, Z, AD, CD):
        assert not reply.has(bit)
    assert reply.has(RD) == bool(q[2] & 0x01)
    assert reply.qd == 1
    qsec = question_of(q)
    assert reply.raw[12 : 12 + len(qsec)] == qsec


def rr_texts(rrsets: list[dns.rrset.RRset]) -> list[str]:
    return [f"{r.name} {r.ttl} {dns.rdatatype.to_text(r.rdtype)} {rd}" for r in rrsets for rd in r]


def opt_of(raw: bytes) -> tuple[int, int, int] | None:
    """(payload, ttl, rdlength) of the last record when it is an OPT, else None."""
    if len(raw) < 11 or raw[-11] != 0:
        return None
    rtype, payload, ttl, rdlen = struct.unpack_from("!HHIH", raw, len(raw) - 10)
    if rtype != OPT or rdlen:
        return None
    return payload, ttl, rdlen


def rr_offsets(raw: bytes, count: int, start: int) -> Iterator[tuple[int, int, int, int]]:
    """(owner offset, type, rdata offset, rdlength) of ``count`` records from ``start``."""
    pos = start
    for _ in range(count):
        owner = pos
        while True:
            length = raw[pos]
            if length >= 0xC0:
                pos += 2
                break
            pos += length + 1
            if length == 0:
                break
        rtype, _, _, rdlen = struct.unpack_from("!HHIH", raw, pos)
        yield owner, rtype, pos + 10, rdlen
        pos += 10 + rdlen


SOA_EXAMPLE = "ns1.discovery.example.net. hostmaster.example.net. 2024010101 3600 600 1209600 300"
SOA_BIG = "ns1.test.example. dns-admin.test.example. 2024010101 3600 600 1209600 300"


# ---------------------------------------------------------------------------------------------
# The answer table, class IN


@dataclass(frozen=True)
class Row:
    name: str
    qtype: int
    rcode: int
    answer: list[str]  # "owner ttl TYPE rdata", sorted
    authority: list[str]


E = "example.com."
ROWS: dict[str, Row] = {
    "existing name, existing type": Row(
        f"_imaps._tcp.{E}",
        SRV,
        NOERROR,
        [
            f"_imaps._tcp.{E} 3600 SRV 0 10 993 imap1.example.net.",
            f"_imaps._tcp.{E} 3600 SRV 0 5 993 imap2.example.net.",
        ],
        [],
    ),
    "existing TXT (RFC 6764 path)": Row(
        f"_caldavs._tcp.{E}", TXT, NOERROR, [f'_caldavs._tcp.{E} 3600 TXT "path=/dav/"'], []
    ),
    "axigen TXT": Row(
        f"_axigen.{E}", TXT, NOERROR, [f'_axigen.{E} 3600 TXT "webmail.example.net"'], []
    ),
    "service not offered: 0 0 0 .": Row(
        f"_imap._tcp.{E}", SRV, NOERROR, [f"_imap._tcp.{E} 3600 SRV 0 0 0 ."], []
    ),
    "custom srv: owner": Row(
        f"_xmpp-client._tcp.{E}",
        SRV,
        NOERROR,
        [f"_xmpp-client._tcp.{E} 3600 SRV 0 0 5222 xmpp.example.net."],
        [],
    ),
    "per-domain override": Row(
        "_imaps._tcp.example.org.",
        SRV,
        NOERROR,
        ["_imaps._tcp.example.org. 3600 SRV 0 0 993 mail.example.org."],
        [],
    ),
    "existing name, other type: NODATA": Row(
        f"_imaps._tcp.{E}", A, NOERROR, [], [f"_tcp.{E} 300 SOA {SOA_EXAMPLE}"]
    ),
    "existing SRV name, NS: NODATA": Row(
        f"_imaps._tcp.{E}", NS, NOERROR, [], [f"_tcp.{E} 300 SOA {SOA_EXAMPLE}"]
    ),
    "axigen apex, SRV: NODATA": Row(
        f"_axigen.{E}", SRV, NOERROR, [], [f"_axigen.{E} 300 SOA {SOA_EXAMPLE}"]
    ),
    "missing name: NXDOMAIN": Row(
        f"_foo._tcp.{E}", SRV, NXDOMAIN, [], [f"_tcp.{E} 300 SOA {SOA_EXAMPLE}"]
    ),
    "name below an existing name: NXDOMAIN": Row(
        f"x._imaps._tcp.{E}", SRV, NXDOMAIN, [], [f"_tcp.{E} 300 SOA {SOA_EXAMPLE}"]
    ),
    "name below an existing name, ANY: NXDOMAIN": Row(
        f"a.b.x._imaps._tcp.{E}", ANY, NXDOMAIN, [], [f"_tcp.{E} 300 SOA {SOA_EXAMPLE}"]
    ),
    "name below the axigen apex: NXDOMAIN": Row(
        f"www._axigen.{E}", TXT, NXDOMAIN, [], [f"_axigen.{E} 300 SOA {SOA_EXAMPLE}"]
    ),
    "apex SOA": Row(f"_tcp.{E}", SOA, NOERROR, [f"_tcp.{E} 3600 SOA {SOA_EXAMPLE}"], []),
    "axigen apex SOA": Row(
        f"_axigen.{E}", SOA, NOERROR, [f"_axigen.{E} 3600 SOA {SOA_EXAMPLE}"], []
    ),
    "apex NS": Row(
        f"_tcp.{E}",
        NS,
        NOERROR,
        [
            f"_tcp.{E} 3600 NS ns1.discovery.example.net.",
            f"_tcp.{E} 3600 NS ns2.discovery.example.net.",
        ],
        [],
    ),
    "apex A: NODATA": Row(f"_tcp.{E}", A, NOERROR, [], [f"_tcp.{E} 300 SOA {SOA_EXAMPLE}"]),
    "apex SRV: NODATA": Row(f"_tcp.{E}", SRV, NOERROR, [], [f"_tcp.{E} 300 SOA {SOA_EXAMPLE}"]),
    "apex TXT: NODATA": Row(f"_tcp.{E}", TXT, NOERROR, [], [f"_tcp.{E} 300 SOA {SOA_EXAMPLE}"]),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=list(ROWS))
def test_answer_table(example: Index, row: Row) -> None:
    q = query(row.name, row.qtype)
    reply = ask(example, q)
    assert_echo(reply, q)
    assert reply.rcode == row.rcode
    assert reply.has(AA)
    assert not reply.has(TC)
    assert (reply.an, reply.ns, reply.ar) == (len(row.answer), len(row.authority), 0)
    msg = reply.message()
    assert sorted(rr_texts(msg.answer)) == sorted(row.answer)
    assert rr_texts(msg.authority) == row.authority
    assert msg.additional == []


def test_answer_owners_compress_to_the_question(example: Index) -> None:
    for name, qtype in [(f"_imaps._tcp.{E}", SRV), (f"_tcp.{E}", NS), (f"_tcp.{E}", SOA)]:
        reply = ask(example, query(name, qtype))
        start = 12 + len(question(name, qtype))
        owners = [raw_owner for raw_owner, _, _, _ in rr_offsets(reply.raw, reply.an, start)]
        assert owners and all(reply.raw[o : o + 2] == b"\xc0\x0c" for o in owners)


def test_negative_soa_owner_points_to_the_apex_in_the_question(example: Index) -> None:
    cases = [
        (f"_imaps._tcp.{E}", A, len(wire_name("_imaps")) - 1, NOERROR),
        (f"x._imaps._tcp.{E}", SRV, len(wire_name("x._imaps")) - 1, NXDOMAIN),
        (f"_foo._tcp.{E}", SRV, len(wire_name("_foo")) - 1, NXDOMAIN),
        (f"_tcp.{E}", A, 0, NOERROR),
        (f"www._axigen.{E}", TXT, 4, NXDOMAIN),
    ]
    for name, qtype, apex_offset, rcode in cases:
        q = query(name, qtype)
        reply = ask(example, q)
        assert reply.rcode == rcode
        assert (reply.an, reply.ns) == (0, 1)
        soa_at = 12 + len(question_of(q))
        pointer = struct.unpack_from("!H", reply.raw, soa_at)[0]
        assert pointer == 0xC000 | (12 + apex_offset), name
        rtype, rclass, ttl = struct.unpack_from("!HHI", reply.raw, soa_at + 2)
        assert (rtype, rclass, ttl) == (SOA, IN, 300)


def test_negative_ttl_is_the_soa_ttl_when_smaller_than_minimum(big: Index) -> None:
    """ttl 60, minimum 300: the negative TTL is min(60, 300) = 60 (the example covers 300)."""
    for name, rcode in [("_imaps._tcp.big.example", NOERROR), ("_nope._tcp.big.example", NXDOMAIN)]:
        reply = ask(big, query(name, A))
        assert reply.rcode == rcode
        assert rr_texts(reply.message().authority) == [f"_tcp.big.example. 60 SOA {SOA_BIG}"]
    soa = ask(big, query("_tcp.big.example", SOA)).message()
    assert rr_texts(soa.answer) == [f"_tcp.big.example. 60 SOA {SOA_BIG}"]


def test_empty_non_terminal_is_nodata(big: Index) -> None:
    for qtype in (SRV, TXT, A, ANY):
        q = query("sub._tcp.big.example", qtype)
        reply = ask(big, q)
        assert_echo(reply, q)
        assert (reply.rcode, reply.has(AA), reply.an, reply.ns) == (NOERROR, True, 0, 1)
        assert rr_texts(reply.message().authority) == [f"_tcp.big.example. 60 SOA {SOA_BIG}"]
    below = ask(big, query("y.sub._tcp.big.example", SRV))
    assert below.rcode == NXDOMAIN
    owner = ask(big, query("_x.sub._tcp.big.example", SRV)).message()
    assert rr_texts(owner.answer) == ["_x.sub._tcp.big.example. 60 SRV 0 0 1 x.example.net."]


def test_any_gets_one_rrset(example: Index) -> None:
    """RFC 8482 §4.1: one RRset of the name (it has SRV and TXT), or a synthesized HINFO."""
    name = f"_imaps._tcp.{E}"
    srv = sorted(rr_texts(ask(example, query(name, SRV)).message().answer))
    txt = rr_texts(ask(example, query(name, TXT)).message().answer)
    assert txt == [f'_imaps._tcp.{E} 3600 TXT "v=example"']
    reply = ask(example, query(name, ANY))
    assert (reply.rcode, reply.has(AA), reply.ns) == (NOERROR, True, 0)
    msg = reply.message()
    assert len(msg.answer) == 1
    got = sorted(rr_texts(msg.answer))
    assert got in (srv, txt) or msg.answer[0].rdtype == HINFO
    apex = ask(example, query(f"_tcp.{E}", ANY))
    assert apex.rcode == NOERROR and apex.has(AA)
    assert len(apex.message().answer) == 1


def test_case_insensitive_matching(example: Index) -> None:
    lower = ask(example, query(f"_imaps._tcp.{E}", SRV))
    for name in ("_IMAPS._TCP.EXAMPLE.COM", "_iMaPs._TcP.eXaMpLe.CoM"):
        q = query(name, SRV)
        reply = ask(example, q)
        assert_echo(reply, q)
        assert (reply.rcode, reply.has(AA), reply.an) == (NOERROR, True, lower.an)


def test_idna_domain_is_served_in_punycode(big: Index) -> None:
    reply = ask(big, query("_imaps._tcp.xn--bcher-kva.example", SRV))
    assert (reply.rcode, reply.has(AA), reply.an) == (NOERROR, True, 2)


@pytest.mark.parametrize(
    ("name", "qtype"),
    [
        (E, A),
        (E, SOA),
        ("example.net.", SOA),
        ("com.", NS),
        (".", NS),
        ("_tcp.example.net.", SOA),  # an apex label, but not a configured domain
        ("_imaps._tcp.example.net.", SRV),
        (f"_udp.{E}", SOA),  # a configured domain, but no such subzone
        (f"_sip._udp.{E}", SRV),
        (f"www.{E}", A),  # below the domain, above every apex
        ("_tcp.sub.example.com.", SOA),  # a subdomain of a configured domain
        (f"_tcp.{E}evil.", SOA),
        ("version.bind.", TXT),
    ],
)
def test_outside_every_zone_is_refused(example: Index, name: str, qtype: int) -> None:
    q = query(name, qtype)
    reply = ask(example, q)
    assert_echo(reply, q)
    assert reply.rcode == REFUSED
    assert not reply.has(AA)
    assert (reply.an, reply.ns, reply.ar) == (0, 0, 0)
    assert len(reply.raw) == len(q)


# ---------------------------------------------------------------------------------------------
# Classes


@pytest.mark.parametrize("qclass", [CH, NONE, 0, 4, 2, 0xFFFF])
@pytest.mark.parametrize(
    ("name", "qtype"),
    [
        ("version.bind.", TXT),
        ("hostname.bind.", TXT),
        (f"_imaps._tcp.{E}", SRV),
        (f"_tcp.{E}", SOA),
    ],
)
def test_other_classes_are_refused(example: Index, qclass: int, name: str, qtype: int) -> None:
    q = query(name, qtype, qclass)
    reply = ask(example, q)
    assert_echo(reply, q)
    assert (reply.rcode, reply.has(AA), reply.an, reply.ns, reply.ar) == (REFUSED, False, 0, 0, 0)


def test_class_any_gets_the_in_data_without_aa(example: Index) -> None:
    name = f"_imaps._tcp.{E}"
    q = query(name, SRV, CLASS_ANY)
    reply = ask(example, q)
    assert_echo(reply, q)
    assert (reply.rcode, reply.has(AA), reply.an, reply.ns) == (NOERROR, False, 2, 0)
    in_reply = ask(example, query(name, SRV)).message()
    assert sorted(rr_texts(reply.message().answer)) == sorted(rr_texts(in_reply.answer))
    assert all(r.rdclass == dns.rdataclass.IN for r in reply.message().answer)
    soa = ask(example, query(f"_tcp.{E}", SOA, CLASS_ANY))
    assert (soa.rcode, soa.has(AA), soa.an) == (NOERROR, False, 1)


@pytest.mark.parametrize(
    ("name", "qtype", "rcode"),
    [
        (f"_imaps._tcp.{E}", A, NOERROR),
        (f"_tcp.{E}", A, NOERROR),
        (f"_foo._tcp.{E}", SRV, NXDOMAIN),
    ],
)
def test_class_any_negative_has_no_soa(example: Index, name: str, qtype: int, rcode: int) -> None:
    q = query(name, qtype, CLASS_ANY)
    reply = ask(example, q)
    assert_echo(reply, q)
    assert (reply.rcode, reply.has(AA), reply.an, reply.ns, reply.ar) == (rcode, False, 0, 0, 0)


def test_class_any_outside_zones_is_refused(example: Index) -> None:
    reply = ask(example, query(E, A, CLASS_ANY))
    assert (reply.rcode, reply.has(AA)) == (REFUSED, False)


# ---------------------------------------------------------------------------------------------
# Header problems


@pytest.mark.parametrize("opcode", range(1, 16))
@pytest.mark.parametrize("rd", [True, False])
def test_opcodes_other_than_query_get_notimp_header_only(
    example: Index, opcode: int, rd: bool
) -> None:
    q = query(f"_tcp.{E}", SOA, flags=(opcode << 11) | (RD if rd else 0))
    reply = ask(example, q)
    assert len(reply.raw) == 12
    assert reply.ident == ID
    assert reply.rcode == NOTIMP
    assert reply.opcode == opcode
    assert (reply.qd, reply.an, reply.ns, reply.ar) == (0, 0, 0, 0)
    assert reply.has(QR) and not reply.has(AA) and not reply.has(TC)
    assert reply.has(RD) == rd


def test_notify_without_question_is_notimp(example: Index) -> None:
    reply = ask(example, header(4 << 11, qd=0))
    assert (reply.rcode, reply.opcode, len(reply.raw)) == (NOTIMP, 4, 12)


QSEC = question(f"_imaps._tcp.{E}", SRV)
ANSWER_RR = b"\xc0\x0c" + struct.pack("!HHIH", A, IN, 60, 4) + b"\x7f\x00\x00\x01"
TSIG_LIKE = wire_name("k") + struct.pack("!HHIH", TSIG, CLASS_ANY, 0, 0)

FORMERR_QUERIES: dict[str, bytes] = {
    "QDCOUNT 0": header(qd=0),
    "QDCOUNT 0 with a question": header(qd=0) + QSEC,
    "QDCOUNT 2": header(qd=2) + QSEC + QSEC,
    "QDCOUNT 2, one question": header(qd=2) + QSEC,
    "record in the answer section": header(an=1) + QSEC + ANSWER_RR,
    "record in the authority section": header(ns=1) + QSEC + ANSWER_RR,
    "ANCOUNT 1, no record": header(an=1) + QSEC,
    "RCODE 1 in the query": header(RD | 1) + QSEC,
    "RCODE 15 in the query": header(RD | 15) + QSEC,
    "two OPTs": header(ar=2) + QSEC + opt() + opt(),
    "OPT owned by a non-root name": header(ar=1) + QSEC + opt(owner=wire_name("x")),
    "OPT owned by a pointer": header(ar=1) + QSEC + opt(owner=b"\xc0\x0c"),
    "OPT option shorter than its header": header(ar=1) + QSEC + opt(options=b"\x00\x0a\x00"),
    "OPT option longer than the RDATA": header(ar=1) + QSEC + opt(options=b"\xfd\xe9\x00\x08abcd"),
    "OPT option length 1 past the end": header(ar=1)
    + QSEC
    + opt(options=b"\x00\x0a\x00\x08" + b"12345678" + b"\x00\x03\x00\x01"),
    "OPT RDLENGTH past the end": header(ar=1) + QSEC + opt()[:-2] + b"\x00\x08",
    "OPT truncated": header(ar=1) + QSEC + opt()[:6],
    "ARCOUNT 1, no record": header(ar=1) + QSEC,
    "A record in the additional section": header(ar=1) + QSEC + ANSWER_RR,
    "TSIG not last": header(ar=2) + QSEC + TSIG_LIKE + opt(),
    "compression pointer as the qname": header() + b"\xc0\x0c" + struct.pack("!HH", SRV, IN),
    "compression pointer inside the qname": header()
    + b"\x06_imaps\xc0\x0c"
    + struct.pack("!HH", SRV, IN),
    "pointer to a later name": header()
    + b"\xc0\x11"
    + struct.pack("!HH", SRV, IN)
    + wire_name("x"),
    "label of 64": header() + question(b"\x40" + b"a" * 64 + b"\x00"),
    "label type 0x40 (extended)": header() + b"\x41" + struct.pack("!HH", SRV, IN),
    "label type 0x80": header() + b"\x80" + b"a" * 10 + struct.pack("!HH", SRV, IN),
    "qname of 256 octets": header() + question(wire_name(".".join(["a" * 63] * 3 + ["a" * 62]))),
    "qname without its root label": header() + b"\x04_tcp",
    "question without class": header() + wire_name("_tcp.example.com") + b"\x00\x06",
    "question without type": header() + wire_name("_tcp.example.com"),
    "empty body": header(),
    "label past the end": header() + b"\x3f" + b"a" * 10,
}


@pytest.mark.parametrize("q", FORMERR_QUERIES.values(), ids=list(FORMERR_QUERIES))
def test_formerr_is_header_only(example: Index, q: bytes) -> None:
    reply = ask(example, q)
    assert_header_only(reply, FORMERR)


def test_formerr_copies_rd(example: Index) -> None:
    reply = ask(example, header(0, qd=2) + QSEC + QSEC)
    assert_header_only(reply, FORMERR, rd=False)


def test_qname_length_limits(example: Index) -> None:
    q255 = wire_name(".".join(["a" * 63] * 3 + ["a" * 61]))
    q256 = wire_name(".".join(["a" * 63] * 3 + ["a" * 62]))
    assert (len(q255), len(q256)) == (255, 256)
    ok = ask(example, header() + question(q255))
    assert ok.rcode == REFUSED and ok.qd == 1
    assert_header_only(ask(example, header() + question(q256)), FORMERR)
    label63 = wire_name("a" * 63 + "._tcp.example.com")
    assert ask(example, header() + question(label63)).rcode == NXDOMAIN


@pytest.mark.parametrize("length", range(12))
def test_fewer_than_12_bytes_get_no_reply(example: Index, length: int) -> None:
    q = query(f"_imaps._tcp.{E}")[:length]
    assert answer(q, example, random.Random(0), False) is None
    assert answer(q, example, random.Random(0), True) is None


@pytest.mark.parametrize(
    "q",
    [
        query(f"_imaps._tcp.{E}", flags=QR | RD),
        query(f"_imaps._tcp.{E}", flags=QR | AA),
        header(QR | (4 << 11) | AA),  # a NOTIFY response
        header(QR | 1, qd=0),  # a FORMERR response
        header(QR, qd=2),
    ],
)
def test_responses_get_no_reply(example: Index, q: bytes) -> None:
    assert answer(q, example, random.Random(0), False) is None
    assert answer(q, example, random.Random(0), True) is None


# ---------------------------------------------------------------------------------------------
# Zone transfers


@pytest.mark.parametrize("name", [f"_tcp.{E}", f"_axigen.{E}", E, f"_imaps._tcp.{E}"])
def test_transfers(example: Index, name: str) -> None:
    axfr_udp = query(name, AXFR)
    reply = ask(example, axfr_udp, tcp=False)
    assert_echo(reply, axfr_udp)
    assert (reply.rcode, reply.has(AA), reply.an, reply.ns) == (NOTIMP, False, 0, 0)
    for qtype in (AXFR, IXFR):
        q = query(name, qtype)
        reply = ask(example, q, tcp=True)
        assert_echo(reply, q)
        assert (reply.rcode, reply.has(AA), reply.an, reply.ns) == (REFUSED, False, 0, 0)


# ---------------------------------------------------------------------------------------------
# EDNS


def test_edns_opt_echoed(example: Index) -> None:
    for do in (False, True):
        q = query(f"_imaps._tcp.{E}", edns=opt(payload=4096, do=do))
        reply = ask(example, q)
        assert_echo(reply, q)
        assert (reply.rcode, reply.an, reply.ar) == (NOERROR, 2, 1)
        found = opt_of(reply.raw)
        assert found is not None
        payload, ttl, _ = found
        assert payload == 1232
        assert ttl >> 24 == 0  # extended rcode
        assert (ttl >> 16) & 0xFF == 0  # version
        assert bool(ttl & 0x8000) == do
        assert ttl & 0x7FFF == 0  # Z
        msg = reply.message()
        assert (msg.edns, msg.payload, bool(msg.ednsflags & dns.flags.DO)) == (0, 1232, do)


@pytest.mark.parametrize(
    ("name", "qtype", "qclass", "rcode"),
    [
        (f"_imaps._tcp.{E}", A, IN, NOERROR),
        (f"_foo._tcp.{E}", SRV, IN, NXDOMAIN),
        (E, A, IN, REFUSED),
        ("version.bind.", TXT, CH, REFUSED),
        (f"_tcp.{E}", AXFR, IN, NOTIMP),
    ],
)
def test_edns_opt_in_every_reply(
    example: Index, name: str, qtype: int, qclass: int, rcode: int
) -> None:
    q = query(name, qtype, qclass, edns=opt(do=True))
    reply = ask(example, q)
    assert_echo(reply, q)
    assert reply.rcode == rcode
    assert reply.ar == 1
    found = opt_of(reply.raw)
    assert found is not None and found[0] == 1232 and found[1] == 0x8000
    no_edns = ask(example, query(name, qtype, qclass))
    assert no_edns.ar == 0 and opt_of(no_edns.raw) is None


def test_edns_unknown_options_are_not_echoed(example: Index) -> None:
    options = b"\xfd\xe9\x00\x04abcd" + b"\x00\x0a\x00\x08" + b"cookie!!" + b"\x00\x03\x00\x00"
    q = query(f"_imaps._tcp.{E}", edns=opt(options=options))
    reply = ask(example, q)
    assert reply.rcode == NOERROR
    found = opt_of(reply.raw)
    assert found is not None and found[2] == 0
    assert b"abcd" not in reply.raw and b"cookie!!" not in reply.raw
    assert list(reply.message().options) == []


@pytest.mark.parametrize("version", [1, 2, 255])
@pytest.mark.parametrize("do", [False, True])
def test_edns_version_above_0_is_badvers(example: Index, version: int, do: bool) -> None:
    for name, qtype in [(f"_imaps._tcp.{E}", SRV), (E, A), (f"_foo._tcp.{E}", SRV)]:
        q = query(name, qtype, edns=opt(version=version, do=do))
        reply = ask(example, q)
        assert_echo(reply, q)
        assert reply.rcode == 0  # the low 4 bits of 16
        assert (reply.an, reply.ns, reply.ar) == (0, 0, 1)
        assert not reply.has(AA)
        found = opt_of(reply.raw)
        assert found is not None
        payload, ttl, _ = found
        assert ttl >> 24 == 1  # extended rcode 16 = 1 << 4
        assert (ttl >> 16) & 0xFF == 0  # we speak version 0
        assert bool(ttl & 0x8000) == do
        assert payload == 1232
        msg = reply.message()
        assert msg.rcode() == dns.rcode.BADVERS
        assert msg.edns == 0


# ---------------------------------------------------------------------------------------------
# Sizes and truncation


def tcp_size(index: Index, name: str, qtype: int, edns: bytes | None) -> int:
    reply = ask(index, query(name, qtype, edns=edns), tcp=True)
    assert not reply.has(TC)
    return len(reply.raw)


def assert_truncated(reply: Reply, q: bytes, with_opt: bool) -> None:
    assert_echo(reply, q)
    assert reply.has(TC)
    assert reply.rcode == NOERROR
    assert (reply.an, reply.ns) == (0, 0)
    assert reply.ar == (1 if with_opt else 0)
    assert len(reply.raw) == 12 + len(question_of(q)) + (11 if with_opt else 0)


def test_udp_without_opt_is_limited_to_512(big: Index) -> None:
    name = "_mid._tcp.big.example"
    full = tcp_size(big, name, TXT, None)
    assert 512 < full <= 1232
    q = query(name, TXT)
    reply = ask(big, q)
    assert_truncated(reply, q, with_opt=False)
    assert reply.has(AA)


def test_udp_with_opt_allows_1232(big: Index) -> None:
    name = "_mid._tcp.big.example"
    for payload in (1232, 1233, 4096, 65535):
        q = query(name, TXT, edns=opt(payload=payload))
        reply = ask(big, q)
        assert not reply.has(TC)
        assert (reply.an, reply.ar) == (len(MID_TEXTS), 1)
        assert len(reply.raw) <= 1232


def test_udp_limit_is_the_requested_size_at_the_boundary(big: Index) -> None:
    name = "_mid._tcp.big.example"
    size = tcp_size(big, name, TXT, opt())
    fits = ask(big, query(name, TXT, edns=opt(payload=size)))
    assert not fits.has(TC) and len(fits.raw) == size
    q = query(name, TXT, edns=opt(payload=size - 1))
    assert_truncated(ask(big, q), q, with_opt=True)


def test_udp_limit_never_below_512(big: Index) -> None:
    name = "_edge._tcp.big.example"
    size = tcp_size(big, name, TXT, opt())
    assert 480 < size <= 512
    for payload in (0, 1, 100, 511, 512):
        reply = ask(big, query(name, TXT, edns=opt(payload=payload)))
        assert not reply.has(TC) and len(reply.raw) == size


def test_udp_over_1232_is_truncated(big: Index) -> None:
    name = "_big._tcp.big.example"
    assert tcp_size(big, name, TXT, opt()) > 1232
    for payload in (1232, 4096, 65535):
        q = query(name, TXT, edns=opt(payload=payload, do=True))
        reply = ask(big, q)
        assert_truncated(reply, q, with_opt=True)
        found = opt_of(reply.raw)
        assert found is not None and found[1] == 0x8000


def test_tcp_never_truncates(big: Index) -> None:
    for edns in (None, opt(payload=512), opt(payload=0)):
        for name in ("_big._tcp.big.example", "_mid._tcp.big.example"):
            q = query(name, TXT, edns=edns)
            reply = ask(big, q, tcp=True)
            assert not reply.has(TC)
            assert reply.an == len(BIG_TEXTS if name.startswith("_big") else MID_TEXTS)
            assert len(reply.raw) > 512


LONG_NS = ".".join(["n" * 60] * 4) + ".example"  # 253 octets in wire form
LONG_RNAME = "h" * 63 + "@" + "m" * 59 + "." + ".".join(["m" * 60] * 2) + ".example"  # 255


def test_negative_answer_whose_soa_does_not_fit_is_truncated(tmp_path: Path) -> None:
    """An SOA of ~530 octets (long MNAME and RNAME): NXDOMAIN and NODATA over UDP without an OPT
    (or with a payload under the reply's size) get TC=1, AA, their rcode, the question and no
    records (as NSD), never a reply over the limit; over TCP and with 1232 the SOA is there."""
    config = tmp_path / "srvd.yaml"
    config.write_text(
        f"zone: {{nameservers: [{LONG_NS}], hostmaster: '{LONG_RNAME}'}}\n"
        "profiles: {p: {imaps: {target: imap.example.net, port: 993}}}\n"
        "domains: {long.example: p}\n"
    )
    index = build_index(load_config(config), _serial)
    for name, qtype, rcode in [
        ("_nope._tcp.long.example", SRV, NXDOMAIN),
        ("_imaps._tcp.long.example", A, NOERROR),
        ("_tcp.long.example", A, NOERROR),
    ]:
        full = ask(index, query(name, qtype, edns=opt()), tcp=True)
        assert (full.rcode, full.ns, full.has(TC)) == (rcode, 1, False)
        assert 600 > len(full.raw) > 512
        for edns in (None, opt(payload=512), opt(payload=len(full.raw) - 1)):
            q = query(name, qtype, edns=edns)
            reply = ask(index, q)
            assert_echo(reply, q)
            assert (reply.rcode, reply.has(TC), reply.has(AA)) == (rcode, True, True)
            assert (reply.an, reply.ns, reply.ar) == (0, 0, 0 if edns is None else 1)
            assert len(reply.raw) == len(q)
        fits = ask(index, query(name, qtype, edns=opt(payload=len(full.raw))))
        assert (fits.raw, fits.has(TC)) == (full.raw, False)


def test_truncated_mixed_case_question_is_echoed(big: Index) -> None:
    q = query("_BiG._TcP.bIg.ExAmPlE", TXT)
    reply = ask(big, q)
    assert_truncated(reply, q, with_opt=False)


# ---------------------------------------------------------------------------------------------
# Every reply: ID, question, flags


def _every_kind_of_query(name_case: Callable[[str], str]) -> list[tuple[bytes, bool]]:
    names = [
        (f"_imaps._tcp.{E}", SRV, IN),
        (f"_imaps._tcp.{E}", A, IN),
        (f"_foo._tcp.{E}", SRV, IN),
        (f"_tcp.{E}", SOA, IN),
        (f"_tcp.{E}", NS, IN),
        (f"_imaps._tcp.{E}", ANY, IN),
        (E, A, IN),
        ("version.bind.", TXT, CH),
        (f"_imaps._tcp.{E}", SRV, CLASS_ANY),
        (f"_tcp.{E}", AXFR, IN),
        (f"_tcp.{E}", IXFR, IN),
        ("_axigen.shop.example.", TXT, IN),
    ]
    out = []
    for name, qtype, qclass in names:
        for flags in (0, RD, RD | AD | CD, AD | CD | Z | AA | TC | RA):
            for edns in (None, opt(do=True), opt(version=1)):
                q = query(name_case(name), qtype, qclass, flags=flags, edns=edns, ident=0xA5C3)
                out.extend([(q, False), (q, True)])
    return out


def _mixed(name: str) -> str:
    return "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(name))


@pytest.mark.parametrize("case", [str.lower, str.upper, _mixed], ids=["lower", "upper", "0x20"])
def test_every_reply_echoes_id_question_and_rd(example: Index, case: Callable[[str], str]) -> None:
    for q, tcp in _every_kind_of_query(case):
        reply = ask(example, q, tcp=tcp)
        assert reply.raw[:2] == b"\xa5\xc3"
        assert_echo(reply, q)  # also: RA, AD, CD and Z never set, RD copied
        assert not reply.has(TC)


def test_rd_copied_in_header_only_replies(example: Index) -> None:
    for rd in (0, RD):
        assert ask(example, header(rd | (5 << 11))).has(RD) == bool(rd)
        assert ask(example, header(rd, qd=0)).has(RD) == bool(rd)
        assert ask(example, header(rd | AD | CD, qd=0)).flags & (AD | CD | RA) == 0


def test_trailing_garbage_is_ignored(example: Index) -> None:
    for q in (
        query(f"_imaps._tcp.{E}"),
        query(f"_foo._tcp.{E}"),
        query(E, A),
        query(f"_tcp.{E}", NS, edns=opt(do=True)),
    ):
        clean = answer(q, example, random.Random(3), False)
        for garbage in (b"\x00", b"\xde\xad\xbe\xef", b"\xc0" * 40, bytes(range(256))):
            assert answer(q + garbage, example, random.Random(3), False) == clean


# ---------------------------------------------------------------------------------------------
# TSIG


def test_tsig_gets_notauth_badkey(example: Index) -> None:
    msg = dns.message.make_query(f"_imaps._tcp.{E}", "SRV")
    msg.id = ID
    key = dns.tsig.Key("srvd-test-key.", b"0123456789abcdef", dns.tsig.HMAC_SHA256)
    msg.use_tsig(key, fudge=300)
    q = msg.to_wire()
    reply = ask(example, q)
    assert_echo(reply, q)
    assert reply.rcode == NOTAUTH
    assert (reply.an, reply.ns, reply.ar) == (0, 0, 1)
    assert not reply.has(AA)
    # the TSIG record: key name, TSIG, class ANY, TTL 0, unsigned (MAC size 0), error BADKEY
    start = 12 + len(question_of(q))
    key_wire = wire_name("srvd-test-key")
    alg = wire_name("hmac-sha256")
    assert reply.raw[start : start + len(key_wire)] == key_wire
    pos = start + len(key_wire)
    rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", reply.raw, pos)
    assert (rtype, rclass, ttl) == (TSIG, CLASS_ANY, 0)
    rdata = reply.raw[pos + 10 : pos + 10 + rdlen]
    assert pos + 10 + rdlen == len(reply.raw)
    assert rdata[: len(alg)] == alg
    fields = rdata[len(alg) :]
    tsig = msg.tsig
    assert tsig is not None
    rd = tsig[0]
    assert fields[:6] == rd.time_signed.to_bytes(6, "big")
    assert fields[6:8] == struct.pack("!H", 300)
    mac_size, original_id, error, other_len = struct.unpack("!HHHH", fields[8:16])
    assert (mac_size, original_id, error, other_len) == (0, ID, 17, 0)
    assert len(fields) == 16
    # dnspython reads the reply as a BADKEY error from the peer
    with pytest.raises(dns.tsig.PeerBadKey):
        dns.message.from_wire(reply.raw, keyring={key.name: key}, request_mac=msg.mac)


def test_tsig_with_edns(example: Index) -> None:
    msg = dns.message.make_query(f"_imaps._tcp.{E}", "SRV", use_edns=0, want_dnssec=True)
    msg.id = ID
    msg.use_tsig(dns.tsig.Key("k.", b"secret-secret-secret"))
    q = msg.to_wire()
    reply = ask(example, q)
    assert reply.rcode == NOTAUTH and reply.ar == 2
    assert reply.raw[12 + len(question_of(q)) :].startswith(opt(do=True))


def test_tsig_badkey_reply_fits_the_udp_limit(example: Index) -> None:
    """A TSIG whose key and algorithm names are pointers to a long qname: srvd writes both out in
    full, so the NOTAUTH reply must still keep to 512 octets over UDP without an OPT."""
    qname = wire_name(".".join(["a" * 63] * 3 + ["a" * 61]))  # 255 octets
    rdata = b"\xc0\x0c" + bytes(6) + b"\x01\x2c" + b"\x00\x00" + IDB + b"\x00\x00" + b"\x00\x00"
    tsig = b"\xc0\x0c" + struct.pack("!HHIH", TSIG, CLASS_ANY, 0, len(rdata)) + rdata
    q = header(ar=1) + question(qname, A) + tsig
    assert len(q) == 301
    reply = ask(example, q, tcp=False)
    assert reply.ident == ID and reply.has(QR)
    assert len(reply.raw) <= 512, f"{len(reply.raw)}-octet UDP reply to a {len(q)}-octet query"


def test_tsig_key_name_compressed_to_the_question_is_written_in_lower_case(
    example: Index,
) -> None:
    """A TSIG whose key name is a pointer to the question: the key name in the BADKEY record is
    written out in lower case, whatever the case of the question (a reply depends on the
    question's case only where it echoes the question)."""
    rdata = wire_name("hmac-sha256") + bytes(6) + b"\x01\x2c" + b"\x00\x00" + IDB + bytes(4)
    tsig = b"\xc0\x0c" + struct.pack("!HHIH", TSIG, CLASS_ANY, 0, len(rdata)) + rdata
    responder = Responder(example, random.Random(0))
    replies = []
    for name in (f"_IMAPS._TCP.{E.upper()}", f"_imaps._tcp.{E}", f"_Imaps._Tcp.{E}"):
        q = header(ar=1) + question(name) + tsig
        kept = responder.respond(q)
        assert kept == answer(q, example, random.Random(0), False)
        reply = ask(example, q)
        assert_echo(reply, q)
        assert reply.rcode == NOTAUTH
        key_at = len(q) - len(tsig)  # the question is echoed, then the TSIG record
        assert reply.raw[key_at:].startswith(wire_name(f"_imaps._tcp.{E}"))
        replies.append(reply.raw[key_at:])
    assert replies[0] == replies[1] == replies[2]


# ---------------------------------------------------------------------------------------------
# Records


def srv_rdata(reply: Reply, q: bytes) -> list[bytes]:
    start = 12 + len(question_of(q))
    out = []
    for _, rtype, rdata, rdlen in rr_offsets(reply.raw, reply.an, start):
        assert rtype == SRV
        out.append(reply.raw[rdata : rdata + rdlen])
    return out


def test_srv_targets_are_not_compressed(example: Index) -> None:
    q = query(f"_imaps._tcp.{E}")
    rdatas = srv_rdata(ask(example, q), q)
    targets = sorted(r[6:] for r in rdatas)
    assert targets == [wire_name("imap1.example.net"), wire_name("imap2.example.net")]
    # the target repeats the question's domain, and still stands in full
    q = query("_imaps._tcp.example.org")
    (rdata,) = srv_rdata(ask(example, q), q)
    assert rdata == struct.pack("!HHH", 0, 0, 993) + wire_name("mail.example.org")


def test_ns_and_soa_names_are_complete(example: Index) -> None:
    reply = ask(example, query(f"_tcp.{E}", NS))
    assert wire_name("ns1.discovery.example.net") in reply.raw
    assert wire_name("ns2.discovery.example.net") in reply.raw


def test_templated_srv_renders_the_queried_domain(example: Index, big: Index) -> None:
    for name, domain in [
        ("_imaps._tcp.shop.example", "shop.example"),
        ("_IMAPS._tcp.SHOP.example", "shop.example"),
    ]:
        q = query(name)
        reply = ask(example, q)
        assert_echo(reply, q)
        assert (reply.rcode, reply.has(AA), reply.an) == (NOERROR, True, 1)
        (rdata,) = srv_rdata(reply, q)
        assert rdata[:6] == struct.pack("!HHH", 0, 0, 993)
        assert rdata[6:].lower() == wire_name(f"mail.{domain}")
    for domain in ("big.example", "xn--bcher-kva.example"):
        q = query(f"_tmpl._tcp.{domain}")
        (rdata,) = srv_rdata(ask(big, q), q)
        assert rdata == struct.pack("!HHH", 0, 0, 8443) + wire_name(f"srv.{domain}")


def test_templated_axigen_txt_renders_the_queried_domain(example: Index, big: Index) -> None:
    msg = ask(example, query("_axigen.shop.example", TXT)).message()
    assert rr_texts(msg.answer) == ['_axigen.shop.example. 3600 TXT "webmail.shop.example:443"']
    for domain in ("big.example", "xn--bcher-kva.example"):
        msg = ask(big, query(f"_axigen.{domain}", TXT)).message()
        assert rr_texts(msg.answer) == [f'_axigen.{domain}. 60 TXT "webmail.{domain}"']


LONG_PREFIX = "x" * 63 + "." + "y" * 47
LONG_DOMAIN = "a" * 63 + "." + "b" * 63 + "." + "c" * 54 + ".example"


def test_templated_target_never_longer_than_255_octets(tmp_path: Path) -> None:
    """A {domain} template that renders a target over 255 octets is refused when the config loads,
    or never sent: every reply must be a DNS message a client can read."""
    path = tmp_path / "srvd.yaml"
    path.write_text(
        "zone: {nameservers: [ns1.test.example]}\n"
        f"profiles: {{p: {{imaps: {{target: '{LONG_PREFIX}.{{domain}}', port: 993}}}}}}\n"
        f"domains: {{{LONG_DOMAIN}: p}}\n",
        encoding="utf-8",
    )
    try:
        index = build_index(load_config(path))
    except srvd.errors.SrvdError:
        return
    q = query(f"_imaps._tcp.{LONG_DOMAIN}")
    assert len(question_of(q)) - 4 <= 255
    reply = ask(index, q, tcp=True)
    for rdata in srv_rdata(reply, q):
        target = rdata[6:]
        assert len(target) <= 255, f"a {len(target)}-octet SRV target: {reply.raw.hex()}"
    dns.message.from_wire(reply.raw)


def test_long_txt_is_split_into_255_octet_strings(big: Index) -> None:
    q = query("_long._tcp.big.example", TXT)
    reply = ask(big, q, tcp=True)
    assert reply.an == 1
    start = 12 + len(question_of(q))
    ((_, rtype, rdata, rdlen),) = list(rr_offsets(reply.raw, 1, start))
    assert rtype == TXT
    raw = reply.raw[rdata : rdata + rdlen]
    assert raw == b"\xff" + b"L" * 255 + b"\xff" + b"L" * 255 + b"\x0a" + b"L" * 10
    (rrset,) = reply.message().answer
    assert [bytes(s) for s in next(iter(rrset)).strings] == [b"L" * 255, b"L" * 255, b"L" * 10]
    # 440 octets: 255 + 185
    q = query("_edge._tcp.big.example", TXT)
    (rrset,) = ask(big, q).message().answer
    assert [len(s) for s in next(iter(rrset)).strings] == [255, 185]


def test_srv_priority_groups_ascending(big: Index) -> None:
    rng = random.Random(11)
    seen = set()
    for _ in range(200):
        q = query("_multi._tcp.big.example")
        rdatas = srv_rdata(ask(big, q, rng=rng), q)
        priorities = [struct.unpack_from("!H", r)[0] for r in rdatas]
        assert priorities == [5, 10, 10, 20, 20, 20]
        seen.add(tuple(rdatas))
    assert len(seen) > 6  # drawn afresh for every answer, never one cached order


def test_order_drawn_afresh_for_every_query(example: Index) -> None:
    rng = random.Random(5)
    firsts = set()
    for _ in range(100):
        q = query(f"_imaps._tcp.{E}")
        firsts.add(srv_rdata(ask(example, q, rng=rng), q)[0][6:])
    assert firsts == {wire_name("imap1.example.net"), wire_name("imap2.example.net")}


# ---------------------------------------------------------------------------------------------
# Golden wire: exact replies, checked in as hex, cross-checked with dnspython


GOLDEN: dict[str, tuple[bytes, int, bool, str]] = {
    # query, rng seed, tcp, reply hex (composed by hand from RFC 1035 / 2782 / 6891, not by srvd)
    "SRV, two weighted targets, seed 2024 (draw 7 of 15: weight 10 first)": (
        query("_IMAPS._tcp.Example.com", SRV, ident=0xBEEF),
        2024,
        False,
        "beef85000001000200000000"
        "065f494d415053045f746370074578616d706c6503636f6d0000210001"
        "c00c0021000100000e1000190000000a03e105696d617031076578616d706c65036e657400"
        "c00c0021000100000e1000190000000503e105696d617032076578616d706c65036e657400",
    ),
    "SRV, two weighted targets, seed 0 (draw 12 of 15: weight 5 first)": (
        query("_IMAPS._tcp.Example.com", SRV, ident=0xBEEF),
        0,
        False,
        "beef85000001000200000000"
        "065f494d415053045f746370074578616d706c6503636f6d0000210001"
        "c00c0021000100000e1000190000000503e105696d617032076578616d706c65036e657400"
        "c00c0021000100000e1000190000000a03e105696d617031076578616d706c65036e657400",
    ),
    "NXDOMAIN with OPT and DO": (
        query("x._imaps._tcp.example.com", A, ident=0x0102, edns=opt(payload=4096, do=True)),
        1,
        False,
        "010285030001000000010001"
        "0178065f696d617073045f746370076578616d706c6503636f6d0000010001"
        "c015000600010000012c0047036e733109646973636f76657279076578616d706c65036e657400"
        "0a686f73746d6173746572076578616d706c65036e657400"
        "78a3f17500000e1000000258001275000000012c"
        "00002904d0000080000000",
    ),
    "templated SRV over TCP": (
        query("_imaps._tcp.shop.example", SRV, ident=0xFFFF),
        9,
        True,
        "ffff85000001000100000000"
        "065f696d617073045f7463700473686f70076578616d706c650000210001"
        "c00c0021000100000e1000190000000003e1046d61696c0473686f70076578616d706c6500",
    ),
}


@pytest.mark.parametrize("case", GOLDEN.values(), ids=list(GOLDEN))
def test_golden_wire(example: Index, case: tuple[bytes, int, bool, str]) -> None:
    q, seed, tcp, expected_hex = case
    got = answer(q, example, random.Random(seed), tcp)
    assert got is not None
    assert got.hex() == expected_hex


def test_golden_literals_decode_as_meant() -> None:
    """Cross-check of the literals themselves with dnspython."""
    first, second, nx_case, tmpl_case = GOLDEN.values()
    for case, order in ((first, (10, 5)), (second, (5, 10))):
        msg = dns.message.from_wire(bytes.fromhex(case[3]))
        sent = dns.message.from_wire(case[0])
        assert msg.id == sent.id == 0xBEEF
        assert msg.flags == dns.flags.QR | dns.flags.AA | dns.flags.RD
        assert msg.question[0].name.labels == sent.question[0].name.labels  # case kept
        (rrset,) = msg.answer
        assert [rd.weight for rd in rrset] == list(order)
        assert sorted(rr_texts(msg.answer)) == [
            "_IMAPS._tcp.Example.com. 3600 SRV 0 10 993 imap1.example.net.",
            "_IMAPS._tcp.Example.com. 3600 SRV 0 5 993 imap2.example.net.",
        ]
    assert int(random.Random(2024).random() * 15) == 7
    assert int(random.Random(0).random() * 15) == 12
    nx = dns.message.from_wire(bytes.fromhex(nx_case[3]))
    assert nx.id == 0x0102
    assert nx.rcode() == dns.rcode.NXDOMAIN
    assert nx.flags & 0xFFF0 == dns.flags.QR | dns.flags.AA | dns.flags.RD
    assert nx.answer == []
    assert rr_texts(nx.authority) == [f"_tcp.example.com. 300 SOA {SOA_EXAMPLE}"]
    assert (nx.edns, nx.payload, nx.ednsflags, len(nx.options)) == (0, 1232, dns.flags.DO, 0)
    tmpl = dns.message.from_wire(bytes.fromhex(tmpl_case[3]))
    assert tmpl.id == 0xFFFF
    assert rr_texts(tmpl.answer) == [
        "_imaps._tcp.shop.example. 3600 SRV 0 0 993 mail.shop.example."
    ]
