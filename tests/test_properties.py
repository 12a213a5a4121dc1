"""Hypothesis properties of srvd.answer.full.answer, Responder.respond and weighted_order."""

from __future__ import annotations

import random
import struct
from collections import Counter
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import srvd
from srvd.answer.full import answer
from srvd.config import (
    Config,
    Profile,
    RRsetSpec,
    SrvRecord,
    TcpSettings,
    ZoneSettings,
    load_config,
)
from srvd.index.build import build_index
from srvd.index.model import Index
from srvd.wire.discovery import SRV
from srvd.wire.ordering import weighted_order

from fuzz.harness import check_one, swap_case, targets
from fuzz.seeds import seed_queries

EXAMPLE = Path(srvd.__file__).resolve().parent / "data" / "example.yaml"
OPT, TSIG = 41, 250
NOERROR, NXDOMAIN, REFUSED = 0, 3, 5

MID = ", ".join(f'"{i}{"m" * 99}"' for i in range(8))
BIG = ", ".join(f'"{i}{"b" * 299}"' for i in range(5))
BIG_YAML = f"""
listen: [127.0.0.1:5353]
zone:
  ttl: 60
  nameservers: [ns1.test.example]
  hostmaster: hostmaster@test.example
profiles:
  big:
    imaps:
      - {{target: a.example.net, port: 993, weight: 3}}
      - {{target: b.example.net, port: 993, weight: 1}}
    txt:
      _mid._tcp: [{MID}]
      _big._tcp: [{BIG}]
domains:
  big.example: big
"""

SETTINGS = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


EXAMPLE_INDEX = build_index(load_config(EXAMPLE))


@pytest.fixture(scope="module")
def example() -> Index:
    return EXAMPLE_INDEX


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Index:
    path = tmp_path_factory.mktemp("props") / "srvd.yaml"
    path.write_text(BIG_YAML, encoding="utf-8")
    return build_index(load_config(path))


# ---------------------------------------------------------------------------------------------
# Query building and reading


def wire_name(text: str) -> bytes:
    out = b""
    for label in text.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def make_query(
    name: str,
    qtype: int,
    qclass: int = 1,
    flags: int = 0x0100,
    ident: int = 0x1234,
    extra: bytes = b"",
) -> bytes:
    ar = 1 if extra else 0
    head = struct.pack("!HHHHHH", ident, flags, 1, 0, 0, ar)
    return head + wire_name(name) + struct.pack("!HH", qtype, qclass) + extra


def opt(payload: int = 1232, version: int = 0, do: bool = False, options: bytes = b"") -> bytes:
    ttl = (version << 16) | (0x8000 if do else 0)
    return b"\x00" + struct.pack("!HHIH", OPT, payload, ttl, len(options)) + options


def tsig() -> bytes:
    rdata = wire_name("hmac-sha256") + bytes(6) + b"\x01\x2c" + b"\x00\x00" + b"\x12\x34" + bytes(4)
    return wire_name("key") + struct.pack("!HHIH", TSIG, 255, 0, len(rdata)) + rdata


def question_of(q: bytes) -> bytes | None:
    """The question section as the query spells it (labels only), or None if it has none."""
    pos = 12
    while pos < len(q):
        length = q[pos]
        if length == 0:
            return q[12 : pos + 5] if pos + 5 <= len(q) else None
        if length > 63:
            return None
        pos += length + 1
    return None


def skip_name(q: bytes, pos: int) -> int:
    while True:
        length = q[pos]
        if length == 0:
            return pos + 1
        if length >= 0xC0:
            return pos + 2
        if length > 63:
            raise ValueError("label type")
        pos += length + 1


def requested_payload(q: bytes) -> int | None:
    """The UDP payload size of the query's OPT, or None when it has no (readable) OPT."""
    qsec = question_of(q)
    if qsec is None:
        return None
    pos = 12 + len(qsec)
    ar = struct.unpack_from("!H", q, 10)[0]
    try:
        for _ in range(ar):
            pos = skip_name(q, pos)
            rtype, rclass, _, rdlen = struct.unpack_from("!HHIH", q, pos)
            if rtype == OPT:
                return int(rclass)
            pos += 10 + rdlen
    except (IndexError, struct.error, ValueError):
        return None
    return None


def udp_limit(q: bytes) -> int:
    payload = requested_payload(q)
    return 512 if payload is None else max(512, min(payload, 1232))


def check_reply(q: bytes, reply: bytes | None, tcp: bool) -> None:
    """The properties every reply has."""
    if len(q) < 12 or q[2] & 0x80:
        assert reply is None
        return
    assert reply is not None
    assert len(reply) >= 12
    assert reply[:2] == q[:2]
    assert reply[2] & 0x80  # QR
    assert reply[2] & 0x01 == q[2] & 0x01  # RD copied
    assert reply[3] & 0xF0 == 0  # RA, Z, AD, CD
    if tcp:
        assert len(reply) <= 65535
    else:
        assert len(reply) <= udp_limit(q), (q.hex(), len(reply))
    if reply[3] & 0x0F in (NOERROR, NXDOMAIN, REFUSED):
        qsec = question_of(q)
        assert qsec is not None
        assert reply[4:6] == b"\x00\x01"
        assert reply[12 : 12 + len(qsec)] == qsec


# ---------------------------------------------------------------------------------------------
# answer() on anything


@SETTINGS
@given(st.binary(max_size=700), st.booleans(), st.integers(0, 2**32))
def test_arbitrary_bytes_never_raise(example: Index, data: bytes, tcp: bool, seed: int) -> None:
    reply = answer(data, example, random.Random(seed), tcp)
    check_reply(data, reply, tcp)


LABEL = st.sampled_from([b"_tcp", b"_TCP", b"_imaps", b"_axigen", b"example", b"com", b"shop"]) | (
    st.binary(min_size=1, max_size=63)
)


@st.composite
def query_like(draw: st.DrawFn) -> bytes:
    """A plausible header (QR=0, opcode 0, small counts), a random question and random records."""
    flags = draw(st.integers(0, 0xFFFF)) & 0x07F0 | draw(st.sampled_from([0, 0, 0, 1, 0x7800]))
    qd = draw(st.sampled_from([1, 1, 1, 0, 2]))
    ar = draw(st.integers(0, 3))
    labels = draw(st.lists(LABEL, max_size=6))
    name = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"
    qtype = draw(st.sampled_from([1, 2, 6, 16, 33, 41, 250, 251, 252, 255]))
    qclass = draw(st.sampled_from([1, 3, 255, 0]))
    records = b""
    for _ in range(draw(st.integers(0, 3))):
        owner = draw(st.sampled_from([b"\x00", b"\xc0\x0c", b"\x01x\x00"]))
        rtype = draw(st.sampled_from([OPT, TSIG, 1]))
        rclass = draw(st.integers(0, 0xFFFF))
        ttl = draw(st.integers(0, 2**32 - 1))
        rdata = draw(st.binary(max_size=40))
        rdlen = draw(st.sampled_from([len(rdata), len(rdata), draw(st.integers(0, 0xFFFF))]))
        records += owner + struct.pack("!HHIH", rtype, rclass, ttl, rdlen) + rdata
    tail = draw(st.binary(max_size=8))
    head = struct.pack("!HHHHHH", draw(st.integers(0, 0xFFFF)), flags, qd, 0, 0, ar)
    return head + name + struct.pack("!HH", qtype, qclass) + records + tail


@SETTINGS
@given(query_like(), st.booleans())
def test_query_like_bytes_never_raise(example: Index, q: bytes, tcp: bool) -> None:
    """Bytes shaped like a query reach the parsers of the question and the additional section."""
    check_reply(q, answer(q, example, random.Random(0), tcp), tcp)


NAMES = [
    "_imaps._tcp.example.com",
    "_IMAPS._TCP.Example.COM",
    "_tcp.example.com",
    "_foo._tcp.example.com",
    "x._imaps._tcp.example.com",
    "_axigen.shop.example",
    "_imaps._tcp.shop.example",
    "example.com",
    "version.bind",
    "_mid._tcp.big.example",
    "_big._tcp.big.example",
]


@st.composite
def valid_queries(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(NAMES))
    qtype = draw(st.sampled_from([1, 2, 6, 16, 33, 41, 250, 251, 252, 255, 0, 65535]))
    qclass = draw(st.sampled_from([1, 1, 1, 3, 254, 255, 0]))
    flags = draw(st.sampled_from([0, 0x0100, 0x0130, 0x2100, 0x0500]))
    extra = draw(
        st.sampled_from(
            [
                b"",
                opt(),
                opt(payload=0),
                opt(payload=600, do=True),
                opt(payload=4096),
                opt(version=1),
                opt(options=b"\xfd\xe9\x00\x02hi"),
                tsig(),
            ]
        )
    )
    return make_query(name, qtype, qclass, flags, draw(st.integers(0, 0xFFFF)), extra)


@st.composite
def mutated_queries(draw: st.DrawFn) -> bytes:
    q = bytearray(draw(valid_queries()))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "flip", "delete", "insert", "truncate", "append"]))
        at = draw(st.integers(0, max(len(q) - 1, 0)))
        if kind == "set" and q:
            q[at] = draw(st.integers(0, 255))
        elif kind == "flip" and q:
            q[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "delete":
            del q[at : at + draw(st.integers(1, 8))]
        elif kind == "insert":
            q[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "truncate":
            del q[at:]
        else:
            q += draw(st.binary(min_size=1, max_size=64))
    return bytes(q)


@SETTINGS
@given(mutated_queries(), st.booleans(), st.integers(0, 2**32))
def test_mutated_queries_never_raise(big: Index, q: bytes, tcp: bool, seed: int) -> None:
    check_reply(q, answer(q, big, random.Random(seed), tcp), tcp)


@SETTINGS
@given(mutated_queries(), st.booleans())
def test_mutated_queries_on_the_example(example: Index, q: bytes, tcp: bool) -> None:
    check_reply(q, answer(q, example, random.Random(1), tcp), tcp)


@SETTINGS
@given(valid_queries(), st.booleans(), st.integers(0, 2**32))
def test_valid_queries(big: Index, q: bytes, tcp: bool, seed: int) -> None:
    check_reply(q, answer(q, big, random.Random(seed), tcp), tcp)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=12, max_size=300), st.booleans())
def test_responses_get_no_reply(data: bytes, tcp: bool) -> None:
    q = data[:2] + bytes([data[2] | 0x80]) + data[3:]
    assert answer(q, EXAMPLE_INDEX, random.Random(0), tcp) is None


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=11), st.booleans())
def test_short_input_gets_no_reply(data: bytes, tcp: bool) -> None:
    assert answer(data, EXAMPLE_INDEX, random.Random(0), tcp) is None


# ---------------------------------------------------------------------------------------------
# The real query path: Responder.respond (kept entries, metrics, the SERVFAIL guard), checked with
# the fuzz harness's full invariants (tests/fuzz/harness.py: no SERVFAIL, opcode, OPT, dnspython
# reads every reply, a kept entry equals a fresh answer) on both of its configurations.


@SETTINGS
@given(st.binary(max_size=700), st.booleans(), st.booleans())
def test_responder_on_arbitrary_bytes(data: bytes, tcp: bool, long: bool) -> None:
    check_one(targets()[long], data, tcp)


@SETTINGS
@given(mutated_queries() | query_like(), st.booleans(), st.booleans())
def test_responder_on_mutated_queries(q: bytes, tcp: bool, long: bool) -> None:
    target = targets()[long]
    check_one(target, q, tcp)
    check_one(target, swap_case(q), tcp)  # a kept entry, asked in another letter case


SEED_QUERIES = seed_queries()


@SETTINGS
@given(st.sampled_from(SEED_QUERIES), st.data(), st.booleans(), st.booleans())
def test_responder_on_seed_queries_with_header_fields_changed(
    q: bytes, data: st.DataObject, tcp: bool, long: bool
) -> None:
    """Each of the six header fields of a valid query set to any value (two at a time)."""
    fields = list(struct.unpack_from("!HHHHHH", q))
    for field in data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=2)):
        fields[field] = data.draw(st.integers(0, 0xFFFF) | st.sampled_from([0, 1, 2, 0xFFFF]))
    check_one(targets()[long], struct.pack("!HHHHHH", *fields) + q[12:], tcp)


# ---------------------------------------------------------------------------------------------
# Ordering


class Cycle:
    """An rng that returns preset values in [0, 1) over and over."""

    def __init__(self, values: list[float]) -> None:
        self.values = values
        self.at = 0

    def random(self) -> float:
        value = self.values[self.at % len(self.values)]
        self.at += 1
        return value


@settings(max_examples=400, deadline=None)
@given(st.lists(st.integers(0, 20), min_size=1, max_size=12), st.integers(0, 2**32))
def test_weighted_order_is_a_permutation(weights: list[int], seed: int) -> None:
    items = [f"r{i}" for i in range(len(weights))]
    out = weighted_order(items, weights, sum(weights), random.Random(seed))
    assert sorted(out) == sorted(items)


UNIT = st.floats(0.0, 1.0, exclude_max=True) | st.just(1.0 - 2**-53)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.integers(0, 65535), min_size=1, max_size=10),
    st.lists(UNIT, min_size=1, max_size=20),
)
def test_weighted_order_is_a_permutation_for_any_draws(
    weights: list[int], draws: list[float]
) -> None:
    items = list(range(len(weights)))
    out = weighted_order(items, weights, sum(weights), Cycle(draws))
    assert sorted(out) == items


@st.composite
def srv_sets(draw: st.DrawFn) -> list[SrvRecord]:
    n = draw(st.integers(1, 9))
    return [
        SrvRecord(draw(st.integers(0, 3)), draw(st.integers(0, 5)), 1000 + i, f"t{i}.example.net")
        for i in range(n)
    ]


def index_of(records: list[SrvRecord]) -> Index:
    """An index with one SRV RRset, built without YAML."""
    spec = RRsetSpec("_h._tcp", SRV, srv=tuple(records))
    profile = Profile("p", MappingProxyType({"srv _h._tcp": (spec,)}))
    config = Config(
        source="memory",
        files=(),
        listen=(),
        zone=ZoneSettings(nameservers=("ns1.example.net",), hostmaster_domain="example.net"),
        tcp=TcpSettings(),
        state_dir=None,
        metrics=None,
        sha256="",
        profiles=MappingProxyType({"p": profile}),
        domains=MappingProxyType({"d.example": "p"}),
    )
    return build_index(config)


def srv_answers(reply: bytes, start: int, count: int) -> list[tuple[int, int, int, bytes]]:
    out = []
    pos = start
    for _ in range(count):
        assert reply[pos : pos + 2] == b"\xc0\x0c"
        rtype, _, _, rdlen = struct.unpack_from("!HHIH", reply, pos + 2)
        assert rtype == SRV
        rdata = reply[pos + 12 : pos + 12 + rdlen]
        priority, weight, port = struct.unpack_from("!HHH", rdata)
        out.append((priority, weight, port, rdata[6:]))
        pos += 12 + rdlen
    assert pos == len(reply)
    return out


@settings(max_examples=150, deadline=None)
@given(srv_sets(), st.integers(0, 2**32))
def test_rrset_keeps_priority_groups_ascending(records: list[SrvRecord], seed: int) -> None:
    index = index_of(records)
    q = make_query("_h._tcp.d.example", SRV)
    rng = random.Random(seed)
    for _ in range(3):
        reply = answer(q, index, rng, True)
        assert reply is not None
        assert struct.unpack_from("!H", reply, 6)[0] == len(records)
        got = srv_answers(reply, len(q), len(records))
        priorities = [g[0] for g in got]
        assert priorities == sorted(priorities)
        expected = Counter((r.priority, r.weight, r.port, wire_name(r.target)) for r in records)
        assert Counter(got) == expected
