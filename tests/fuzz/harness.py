"""The invariants of every reply srvd gives to any bytes, and the real query path to check them on.

Shared by the atheris harness (``fuzz_answer.py``), its plain-``random`` pytest
(``tests/test_fuzz_harness.py``) and the Hypothesis properties (``tests/test_properties.py``).
Nothing here needs atheris.

An input to ``check`` is one selector octet and the query: bit 0 of the selector picks TCP, bit 1
the index (``srvd/data/example.yaml``, or ``long.yaml`` beside this file: long SOA and NS names,
big TXT records, templated SRV targets), bit 2 asks the same query again with the letter case of
its name swapped (the reply must echo the new letter case), bit 3
(UDP only) also asks a Responder whose rate limiting lets one reply a second through and slips
every other one (``slip: 1``), whose truncated replies must keep every invariant as well, and
bit 4 picks the example signed (``dnssec:`` with a new key; the lean path then answers DO=1
questions from the pieces the full path left, and the two must still agree), and bit 5 with it
the same with compact answers (``denial: compact``, RFC 9824). Every index has
PACC's ``_ua-auto-config`` zones when its configuration turns ``http.pacc`` on (the example
does).
"""

from __future__ import annotations

import atexit
import random
import shutil
import struct
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import dns.exception
import dns.message

from srvd.answer.full import answer, answer_outcome
from srvd.answer.lean import lean_answer
from srvd.config import RrlSettings, load_config
from srvd.http.pacc import deriver
from srvd.index.build import build_index
from srvd.index.dnssec import attach
from srvd.index.model import Index
from srvd.server.responder import Responder
from srvd.wire.dnssec import generate_key

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
EXAMPLE = ROOT / "srvd" / "data" / "example.yaml"
LONG = HERE / "long.yaml"

QR, OPCODE, AA, TC, RD = 0x8000, 0x7800, 0x0400, 0x0200, 0x0100
RA, Z, AD, CD = 0x0080, 0x0040, 0x0020, 0x0010
NOERROR, FORMERR, SERVFAIL, NOTIMP = 0, 1, 2, 4
OPT = 41
UDP_PLAIN, EDNS_PAYLOAD, TCP_LIMIT = 512, 1232, 65535
SEED = 7  # the Responder and the uncached answer() draw the same SRV order from it

TCP_BIT, LONG_BIT, AGAIN_BIT, LIMITED_BIT, SIGNED_BIT, COMPACT_BIT = 1, 2, 4, 8, 16, 32
LIMITED_SOURCE = "192.0.2.1"


class Violation(AssertionError):
    """A reply that breaks the contract; the message names the query and the transport."""


@dataclass
class Target:
    name: str
    index: Index
    responder: Responder
    limited: Responder  # rate-limited to 1 reply a second per bucket, every other one slipped


@cache
def targets() -> tuple[Target, Target, Target, Target]:
    """One Responder per configuration, kept across inputs (as a server keeps its own): the
    example, long.yaml, the example signed, and signed with compact answers."""
    out = []
    for name, config in (
        (EXAMPLE.name, load_config(EXAMPLE)),
        (LONG.name, load_config(LONG)),
        ("example.yaml signed", load_config(signed_example())),
        ("example.yaml signed, compact", load_config(signed_example("  denial: compact\n"))),
    ):
        index = attach(build_index(config, None, deriver(config.http)), config.dnssec)
        limited = Responder(index, random.Random(SEED))
        limited.limit(RrlSettings(responses_per_second=1, slip=1, exempt=()))
        out.append(Target(name, index, Responder(index, random.Random(SEED)), limited))
    return out[0], out[1], out[2], out[3]


def signed_example(extra: str = "") -> Path:
    """The bundled example with ``dnssec:`` on (and ``extra`` in it), and a new ECDSA key, in a
    directory of its own (removed when the process ends)."""
    directory = Path(tempfile.mkdtemp(prefix="srvd-fuzz-"))
    atexit.register(shutil.rmtree, directory, True)
    key = directory / "csk.pem"
    key.write_bytes(generate_key(13))
    path = directory / "signed.yaml"
    path.write_text(EXAMPLE.read_text() + f"dnssec:\n  key: {key}\n{extra}")
    return path


# ---------------------------------------------------------------------------------------------
# An independent reading of the query (written from RFC 1035 / 6891, not from srvd.answer.full)


def question_length(query: bytes) -> int | None:
    """Octets of the question section spelled with labels only (the name and 4), or None."""
    pos = 12
    while pos < len(query):
        length = query[pos]
        if length == 0:
            end = pos + 5
            return end - 12 if end <= len(query) and pos + 1 - 12 <= 255 else None
        if length > 63:
            return None
        pos += 1 + length
    return None


def _skip_name(msg: bytes, pos: int) -> int | None:
    while pos < len(msg):
        length = msg[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            return pos + 2 if pos + 2 <= len(msg) else None
        if length > 63:
            return None
        pos += 1 + length
    return None


def query_payload(query: bytes) -> int | None:
    """The UDP payload size of the first OPT in the query's additional section, or None."""
    qlen = question_length(query)
    if qlen is None or len(query) < 12:
        return None
    arcount = struct.unpack_from("!H", query, 10)[0]
    pos: int | None = 12 + qlen
    for _ in range(arcount):
        assert pos is not None
        pos = _skip_name(query, pos)
        if pos is None or pos + 10 > len(query):
            return None
        rtype, rclass, _ttl, rdlen = struct.unpack_from("!HHIH", query, pos)
        if rtype == OPT:
            return int(rclass)
        pos += 10 + rdlen
    return None


def udp_limit(payload: int | None) -> int:
    return UDP_PLAIN if payload is None else max(UDP_PLAIN, min(payload, EDNS_PAYLOAD))


# ---------------------------------------------------------------------------------------------
# The invariants


def check_reply(query: bytes, reply: bytes | None, tcp: bool) -> None:
    """Every invariant of one reply to one query; raises Violation."""

    def fail(what: str) -> None:
        transport = "TCP" if tcp else "UDP"
        got = "no reply" if reply is None else reply.hex()
        raise Violation(f"{what}\n  {transport} query {query.hex()}\n  reply {got}")

    if len(query) < 12 or query[2] & 0x80:
        if reply is not None:
            fail("a reply to a short query or a response")
        return
    if reply is None:
        fail("no reply to a query")
        return
    if len(reply) < 12:
        fail("a reply shorter than a header")
    ident, flags, qdcount, _an, _ns, arcount = struct.unpack_from("!HHHHHH", reply)
    qflags = struct.unpack_from("!H", query, 2)[0]
    if reply[:2] != query[:2]:
        fail("the ID is not the query's")
    if not flags & QR:
        fail("QR=0")
    if flags & (RA | Z | AD | CD):
        fail("RA, Z, AD or CD set")
    if flags & RD != qflags & RD:
        fail("RD not copied")
    if flags & OPCODE != qflags & OPCODE:
        fail("the opcode not copied")
    rcode = flags & 0x000F
    if rcode == SERVFAIL:
        fail("SERVFAIL: srvd's own code failed")

    payload = query_payload(query)
    limit = TCP_LIMIT if tcp else udp_limit(payload)
    if len(reply) > limit:
        fail(f"{len(reply)} octets over the limit of {limit}")

    if qdcount == 1:
        qlen = question_length(query)
        if qlen is None:
            fail("a question echoed for a query without a readable one")
            return
        if reply[12 : 12 + qlen] != query[12 : 12 + qlen]:
            fail("the question not echoed byte for byte")
    elif qdcount == 0:
        if rcode not in (FORMERR, NOTIMP) or len(reply) != 12:
            fail("no question, but not a header-only FORMERR or NOTIMP")
    else:
        fail(f"QDCOUNT {qdcount}")
    if qflags & OPCODE and (rcode != NOTIMP or len(reply) != 12):
        fail("an opcode other than QUERY not answered NOTIMP, header only")

    try:
        message = dns.message.from_wire(reply, keyring=False)
    except dns.exception.DNSException as exc:
        fail(f"dnspython cannot read the reply: {type(exc).__name__}: {exc}")
        return
    if message.id != ident or message.rcode() == SERVFAIL:
        fail("dnspython reads another ID or SERVFAIL")
    if message.edns >= 0:  # an OPT in the reply: only to a query with one, at its size
        if payload is None:
            fail("an OPT in the reply to a query without one")
        if message.edns != 0 or message.payload != EDNS_PAYLOAD or message.options:
            fail("the reply's OPT is not version 0, payload 1232, no options")
    elif payload is not None and rcode not in (FORMERR, NOTIMP) and arcount == 0:
        fail("no OPT in the reply to a query with one")


def swap_case(query: bytes) -> bytes:
    """The query with the letter case of its question name's octets swapped (0x20)."""
    qlen = question_length(query)
    if qlen is None:
        return query
    return query[:12] + query[12 : 12 + qlen - 4].swapcase() + query[12 + qlen - 4 :]


def check_one(target: Target, query: bytes, tcp: bool) -> bytes | None:
    """The Responder's reply, checked, and equal to the full parser's ``answer`` drawn alike; where
    the lean path answers, its reply and metric cells are the full parser's too."""
    responder = target.responder
    failures = responder.failures
    responder.rng = random.Random(SEED)
    reply = responder.respond(query, tcp)
    check_reply(query, reply, tcp)
    if responder.failures != failures:
        raise Violation(f"the Responder caught a failure on {query.hex()}")
    fresh, cell, service = answer_outcome(query, target.index, random.Random(SEED), tcp)
    if fresh != reply:
        raise Violation(
            f"the Responder's reply is not the full parser's\n  query {query.hex()}"
            f" (tcp={tcp})\n  reply {(reply or b'').hex()}\n  full  {(fresh or b'').hex()}"
        )
    lean = lean_answer(query, target.index, random.Random(SEED), tcp) if len(query) >= 12 else None
    if lean is not None and (lean[0], lean[1], lean[2]) != (fresh, cell, service):
        raise Violation(
            f"the lean path differs from the full parser\n  query {query.hex()} (tcp={tcp})\n"
            f"  lean {lean[0].hex()} cells {lean[1:3]}\n  full {(fresh or b'').hex()}"
            f" cells {(cell, service)}"
        )
    return reply


def check_limited(target: Target, query: bytes) -> None:
    """A reply through rate limiting: the full reply, or a truncated one no larger than the
    query, with the question (and OPT) alone; either way every invariant holds."""
    responder = target.limited
    failures = responder.failures
    responder.rng = random.Random(SEED)
    reply = responder.respond(query, False, LIMITED_SOURCE)
    check_reply(query, reply, False)
    if responder.failures != failures:
        raise Violation(f"the rate-limited Responder caught a failure on {query.hex()}")
    if reply is None:
        return
    fresh = answer(query, target.index, random.Random(SEED), False)
    if fresh is not None and reply[2:] == fresh[2:]:  # let through (the SRV order may differ)
        return
    ancount, nscount = struct.unpack_from("!HH", reply, 6)
    if not reply[2] & 0x02 or ancount or nscount or len(reply) > len(query):
        raise Violation(
            f"a rate-limited reply that is neither the full reply nor a bare truncated one\n"
            f"  query {query.hex()}\n  reply {reply.hex()}"
        )


def check(data: bytes) -> None:
    """One fuzz input: a selector octet, then the query (see the module docstring)."""
    if not data:
        return
    selector, query = data[0], data[1:]
    tcp = bool(selector & TCP_BIT)
    if selector & SIGNED_BIT:
        target = targets()[3 if selector & COMPACT_BIT else 2]
    else:
        target = targets()[1 if selector & LONG_BIT else 0]
    check_one(target, query, tcp)
    if selector & AGAIN_BIT:
        check_one(target, swap_case(query), tcp)
    if selector & LIMITED_BIT and not tcp:
        check_limited(target, query)


# ---------------------------------------------------------------------------------------------
# Plain-random mutations (the pytest runs these without atheris)

_INTERESTING = (0x00, 0x01, 0x3F, 0x40, 0x7F, 0x80, 0xBF, 0xC0, 0xFF, 0x29, 0xFA)


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """One to four random edits of a seed: bit flips, set octets, deletions, insertions,
    truncations, appended junk, a splice with another seed, a 16-bit header field changed."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(9)
        at = rng.randrange(len(out)) if out else 0
        if kind == 0 and out:
            out[at] ^= 1 << rng.randrange(8)
        elif kind == 1 and out:
            out[at] = rng.choice(_INTERESTING) if rng.random() < 0.5 else rng.randrange(256)
        elif kind == 2:
            del out[at : at + rng.randint(1, 8)]
        elif kind == 3:
            out[at:at] = rng.randbytes(rng.randint(1, 8))
        elif kind == 4:
            del out[at:]
        elif kind == 5:
            out += rng.randbytes(rng.randint(1, 64))
        elif kind == 6:
            other = rng.choice(pool)
            cut = rng.randrange(len(other) + 1)
            out[at:] = other[cut:]
        elif kind == 7 and len(out) >= 13:  # a header field (after the selector octet)
            field = 1 + 2 * rng.randrange(6)
            value = rng.choice((0, 1, 2, 0xFFFF, rng.randrange(65536)))
            out[field : field + 2] = value.to_bytes(2, "big")
        elif kind == 8 and len(out) > 13:  # a compression pointer somewhere after the header
            at = rng.randrange(13, len(out))
            out[at : at + 2] = bytes((0xC0 | rng.randrange(64), rng.randrange(256)))
    return bytes(out)
