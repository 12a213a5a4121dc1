"""The lean path (srvd.answer.lean) against the full parser (srvd.answer.full): byte for byte.

Wherever the lean path answers, its reply and the cells the metrics count it in must be the full
parser's, drawn from the same random source; where it declines, the Responder asks the full
parser. Queries are drawn from every owner name of the two fuzz configurations (templated targets,
long names, big TXT records), in every letter case, with resolver-like EDNS options, then mutated.
The lean path must also answer the common shapes itself: a test that only ever saw it decline
would prove nothing.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from dnssec_oracle import apex_of, check_denial, signed_config, validate_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srvd.answer.full import answer_outcome
from srvd.answer.lean import lean_answer
from srvd.config import load_config
from srvd.index.build import build_index
from srvd.index.dnssec import ZoneSigner, attach
from srvd.index.model import Index
from srvd.wire.names import wire_to_text

from fuzz.harness import targets

# the fuzz harness's unsigned configurations (its signed one: the DNSSEC tests below, where a
# DO=1 question's first answer comes from the full path by design)
INDEXES = tuple(target.index for target in targets()[:2])
OPT = 41
SEED = 11


def owner_names(index: Index, domains: int = 3) -> list[str]:
    """Names of a few served domains: every owner, the apexes, and names that are not there."""
    names: list[str] = []
    for apex in sorted(index.zones)[: 2 * domains]:
        table = index.zones[apex].table
        for relative in table.names:
            names.append(wire_to_text(relative + apex).rstrip("."))
        names.append(wire_to_text(b"\x07_nope42" + apex).rstrip("."))  # NXDOMAIN
        names.append(wire_to_text(b"\x01x\x03y_z" + apex).rstrip("."))  # NXDOMAIN, "_" inside
    return names


NAMES = [owner_names(index) for index in INDEXES]


def wire_name(text: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in text.split(".")) + b"\x00"


def opt(payload: int, do: bool, options: bytes, version: int = 0, co: bool = False) -> bytes:
    ttl = (version << 16) | (0x8000 if do else 0) | (0x4000 if co else 0)
    return b"\x00" + struct.pack("!HHIH", OPT, payload, ttl, len(options)) + options


def cookie(client: bytes) -> bytes:
    return struct.pack("!HH", 10, len(client)) + client


def padding(size: int) -> bytes:
    return struct.pack("!HH", 12, size) + bytes(size)


@st.composite
def queries(draw: st.DrawFn) -> tuple[int, bytes]:
    which = draw(st.integers(0, len(INDEXES) - 1))
    name = draw(st.sampled_from(NAMES[which]))
    name = "".join(c.upper() if draw(st.booleans()) else c for c in name)  # 0x20
    qtype = draw(st.sampled_from([33, 33, 16, 16, 6, 2, 1, 28, 65, 255, 251, 252, 0, 65535]))
    qclass = draw(st.sampled_from([1, 1, 1, 1, 3, 255, 254]))
    flags = draw(st.sampled_from([0x0000, 0x0100, 0x0120, 0x0110, 0x0500, 0x0300, 0x2100, 0x0101]))
    options = draw(
        st.sampled_from(
            [
                b"",
                cookie(bytes(range(8))),
                cookie(bytes(range(8))) + padding(draw(st.integers(0, 300))),
                padding(12),
                b"\x00\x08\x00\x04\x00\x01\x18\x00",  # client subnet
                b"\x00\x0a\x00\x09",  # an option longer than the record
                b"\x00\x0a",  # half an option header
            ]
        )
    )
    edns = draw(st.sampled_from(["none", "opt", "opt", "opt", "version", "owner"]))
    if edns == "none":
        extra, ar = b"", 0
    else:
        payload = draw(st.sampled_from([0, 511, 512, 600, 1232, 1400, 4096, 65535]))
        record = opt(payload, draw(st.booleans()), options, 1 if edns == "version" else 0)
        if edns == "owner":
            record = b"\x01a\x00" + record[1:]
        extra, ar = record, 1
    head = struct.pack("!HHHHHH", draw(st.integers(0, 0xFFFF)), flags, 1, 0, 0, ar)
    query = bytearray(head + wire_name(name) + struct.pack("!HH", qtype, qclass) + extra)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):  # mutated now and then
        at = draw(st.integers(0, len(query) - 1))
        kind = draw(st.sampled_from(["set", "flip", "truncate", "append", "insert", "delete"]))
        if kind == "set":
            query[at] = draw(st.integers(0, 255))
        elif kind == "flip":
            query[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del query[max(at, 12) :]
        elif kind == "append":
            query += draw(st.binary(min_size=1, max_size=16))
        elif kind == "insert":
            query[at:at] = draw(st.binary(min_size=1, max_size=4))
        else:
            del query[at : at + draw(st.integers(1, 4))]
    return which, bytes(query)


def same_as_full(index: Index, query: bytes, tcp: bool) -> bool:
    """Whether the lean path answered; fails if it answered otherwise than the full parser."""
    if len(query) < 12:
        return False
    lean = lean_answer(query, index, random.Random(SEED), tcp)
    if lean is None:
        return False
    reply, cell, service, _zone = lean
    assert (reply, cell, service) == answer_outcome(query, index, random.Random(SEED), tcp), (
        f"lean and full differ on {query.hex()} (tcp={tcp})"
    )
    return True


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(queries(), st.booleans())
def test_the_lean_path_gives_the_full_parsers_reply(case: tuple[int, bytes], tcp: bool) -> None:
    which, query = case
    same_as_full(INDEXES[which], query, tcp)


@pytest.mark.parametrize("which", range(len(INDEXES)))
def test_every_draw_of_a_weighted_order_is_the_full_parsers(which: int) -> None:
    """Same seed, same order: over many seeds every SRV answer is the full parser's, and the
    weighted RRsets do come in more than one order."""
    index = INDEXES[which]
    reordered = 0
    for name in NAMES[which]:
        query = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + wire_name(name) + b"\x00\x21\x00\x01"
        for tcp in (False, True):
            replies = set()
            for seed in range(40):
                lean = lean_answer(query, index, random.Random(seed), tcp)
                full = answer_outcome(query, index, random.Random(seed), tcp)
                if lean is not None:
                    assert lean[0] == full[0]
                    replies.add(lean[0])
            reordered += len(replies) > 1
    assert reordered


def test_the_lean_path_answers_the_common_shapes() -> None:
    """Every well-formed IN query for a served name, in any letter case, with or without an OPT
    and resolver-like options, is answered by the lean path (but for truncated replies)."""
    rng = random.Random(5)
    answered = declined = 0
    for which, index in enumerate(INDEXES):
        for name in NAMES[which]:
            for qtype in (33, 16, 6, 2, 1):
                spelled = "".join(c.upper() if rng.random() < 0.5 else c for c in name)
                for extra, ar in (
                    (b"", 0),
                    (opt(1232, True, cookie(bytes(8))), 1),
                    (opt(4096, False, cookie(bytes(8)) + padding(40)), 1),
                ):
                    head = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, ar)
                    query = head + wire_name(spelled) + struct.pack("!HH", qtype, 1) + extra
                    for tcp in (False, True):
                        if same_as_full(index, query, tcp):
                            answered += 1
                        else:
                            reply = answer_outcome(query, index, random.Random(0), tcp)[0] or b""
                            assert reply[2] & 0x02, f"declined {spelled} {qtype} (tcp={tcp})"
                            declined += 1
    assert answered > 10 * declined


@pytest.mark.parametrize(
    "before",
    [
        b"\x40" + b"a" * 64,  # a 64-octet label: FORMERR
        b"\xc0\x0c",  # a compression pointer in a question: FORMERR
        b"\x05ab",  # a label running into the apex's octets
        b"\x01a\x05ab",
        b"\x02abc",  # a label shorter than its octets
        b"\x3fa",
    ],
)
def test_labels_the_index_does_not_vouch_for_are_walked(before: bytes) -> None:
    """Octets before the apex that are no owner in the zone's table come from the query alone:
    the lean path answers NXDOMAIN only where they are whole labels, and leaves the rest to the
    full parser."""
    index = INDEXES[0]
    apex = b"\x04_tcp\x07example\x03com\x00"
    assert apex in index.zones
    for tcp in (False, True):
        query = struct.pack("!HHHHHH", 9, 0, 1, 0, 0, 0) + before + apex + b"\x00\x21\x00\x01"
        assert not same_as_full(index, query, tcp)  # declined...
        reply = answer_outcome(query, index, random.Random(0), tcp)[0] or b""
        assert reply[3] & 0x0F == 1  # ...and the full parser answers FORMERR


def test_signed_zones_sign_on_the_full_path_and_resend_on_the_lean_one(tmp_path: Path) -> None:
    """With DNSSEC on, a DO=1 question is answered (signed) first by the full parser
    (srvd.answer.signed), which caches the signature (and leaves the pieces of apex answers and
    NODATA and NXDOMAIN): the same question again, in any letter case, gets the full parser's
    octets from the lean path (the SRV order drawn anew). NSEC questions below the apex stay on
    the full path, and so do DO=0 queries for the DNSSEC types; DO=0 queries are answered here
    as without DNSSEC."""
    config = load_config(str(signed_config(tmp_path)))
    index = build_index(config)
    assert index.dnssec is not None
    rng = random.Random(1)
    answered = declined = 0
    for name in owner_names(index, domains=4):
        for qtype in (33, 16, 6, 2, 1, 48, 47):
            query = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 1) + wire_name(name)
            query += struct.pack("!HH", qtype, 1)
            signed = query + opt(1232, True, cookie(b"12345678"))
            answer_outcome(signed, index, random.Random(SEED), False)  # signs; keeps the pieces
            for tcp in (False, True):
                if same_as_full(index, signed, tcp):  # (asserts the octets are the full's)
                    answered += 1
                else:
                    declined += 1
                    reply = answer_outcome(signed, index, random.Random(SEED), tcp)[0]
                    assert reply is not None and qtype == 47, (name, qtype)  # NSEC below the apex
            same_as_full(index, query + opt(1232, False, b""), False)
        for qtype in (48, 59, 60, 47, 46):
            query = struct.pack("!HHHHHH", 7, 0, 1, 0, 0, 0) + wire_name(name)
            assert lean_answer(query + struct.pack("!HH", qtype, 1), index, rng, False) is None
    assert answered > 100 and declined > 10
    upper = struct.pack("!HHHHHH", 7, 0, 1, 0, 0, 1) + wire_name("_IMAPS._TCP.EXAMPLE.COM")
    upper += b"\x00\x21\x00\x01" + opt(1232, True, b"")
    lower = upper[:12] + upper[12:].lower()
    assert lean_answer(lower, index, rng, False) is None  # not asked yet: the full path's
    answer_outcome(lower, index, random.Random(SEED), False)
    assert same_as_full(index, upper, False)  # the pieces serve any letter case


def validated(
    index: Index, reply: bytes, now: float, keys: dict[dns.name.Name, dns.rrset.RRset]
) -> None:
    """A DO=1 NXDOMAIN (or compact answer) that dnspython validates and whose NSECs prove the
    denial (``keys``: the DNSKEY RRsets asked so far, by apex)."""
    message = dns.message.from_wire(reply)
    question = message.question[0]
    apex = apex_of(question.name).canonicalize()
    if apex not in keys:
        query = dns.message.make_query(apex, "DNSKEY", want_dnssec=True).to_wire()
        found = dns.message.from_wire(
            answer_outcome(query, index, random.Random(0), True)[0] or b""
        )
        keys[apex] = found.find_rrset(found.answer, apex, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    assert validate_message(message, keys, now) >= 2
    check_denial(message, question.name, question.rdtype)


def test_an_nxdomain_is_resent_for_every_name_its_nsecs_prove(tmp_path: Path) -> None:
    """A DO=1 NXDOMAIN (``denial: nsec``) is made on the lean path (signing only what the
    signature cache lacks) and kept by the NSECs that prove it (the gap covering the name and the
    one covering the wildcard at its closest encloser), not by name: any other name with the same
    proof, never asked before, in any letter case, of any length, gets the full parser's octets
    from the lean path without a new signature. Names one label below the apex (random, many
    per gap), deeper ones (below existing names and empty non-terminals: other closest
    enclosers), under _tcp and _axigen, every qtype the lean path takes; until the zone's window
    moves, and in a bounded cache (compact answers: the next test)."""
    config = load_config(str(signed_config(tmp_path)))
    assert config.dnssec is not None
    now = [1_800_000_000.0]
    index = attach(build_index(config), config.dnssec, lambda: now[0])
    signer = index.dnssec
    assert isinstance(signer, ZoneSigner)
    rng = random.Random(13)
    apexes = sorted(index.zones)
    assert any(b"\x04_tcp\x03ent\x07example" in apex for apex in apexes)

    def label() -> str:
        alphabet = "0123456789abcdef-_*xyz"
        return "".join(rng.choice(alphabet) for _ in range(rng.choice([1, 2, 5, 11, 30, 63])))

    def random_name() -> str:
        apex = rng.choice(apexes)
        relatives = [r for r in index.zones[apex].table.names if r]
        text = wire_to_text(apex).rstrip(".")
        base = wire_to_text(rng.choice(relatives) + apex).rstrip(".") if relatives else text
        shape = rng.random()
        if shape < 0.6:  # one label below the apex
            name = f"{label()}.{text}"
        elif shape < 0.85:  # below an existing name (or an empty non-terminal)
            name = f"{label()}.{base}"
        else:  # deeper, below a name that is not there either
            name = f"{label()}.{label()}.{rng.choice([text, base])}"
        name = "".join(c.upper() if rng.random() < 0.5 else c for c in name)  # 0x20
        return name

    answered = declined = 0
    deeper = set()
    keys: dict[dns.name.Name, dns.rrset.RRset] = {}
    for _ in range(3000):
        name = random_name()
        wire = wire_name(name).lower()
        if len(wire) > 255:
            continue
        cut = wire.rfind(b"_") - 1
        apex, relative = wire[cut:], wire[:cut]
        table = index.zones[apex].table
        if relative in table.names:
            continue  # (a name that exists after all)
        proof = (apex, *signer.denial(table, relative))
        kept = proof in signer.denials
        qtype = rng.choice([33, 33, 33, 16, 1, 28, 6, 2, 43, 46, 47, 48, 65, 250, 0, 65535])
        flags = rng.choice([0x0000, 0x0100, 0x0110, 0x0120])
        payload = rng.choice([512, 1232, 1232, 4096])
        tcp = rng.random() < 0.2
        query = struct.pack("!HHHHHH", rng.getrandbits(16), flags, 1, 0, 0, 1) + wire_name(name)
        query += struct.pack("!HH", qtype, 1) + opt(payload, True, cookie(b"12345678"))
        made = signer.stats.signatures
        lean = same_as_full(index, query, tcp)  # (asserts the octets and cells are the full's)
        if kept:
            assert signer.stats.signatures == made  # no signature for a proof kept
        full = answer_outcome(query, index, random.Random(SEED), tcp)[0]
        assert full is not None and full[3] & 0x0F == 3
        if lean:
            answered += 1
            validated(index, full, now[0], keys)  # and dnspython proves the denial
            if relative[relative[0] + 1 :]:
                deeper.add(wire)
        else:  # truncated (TC=1): the full path's
            declined += 1
            assert full[2] & 0x02, name
    assert answered > 2000 and answered > 5 * declined, (answered, declined)
    assert len(deeper) > 500
    assert len(signer.denials) <= signer.denials_size
    assert len(signer.denials) < 300  # one per proof, not one per name

    # the window moves: the kept pieces are not sent past it, the new window's are made
    query = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 1) + wire_name("_nope-x._tcp.example.com")
    query += b"\x00\x21\x00\x01" + opt(1232, True, b"")
    before = lean_answer(query, index, rng, False)
    assert before is not None and same_as_full(index, query, False)
    now[0] += config.dnssec.refresh
    after = lean_answer(query, index, rng, False)
    assert after is not None and after[0] != before[0]
    assert same_as_full(index, query, False)
    validated(index, after[0], now[0], {})


def test_compact_answers_come_from_the_lean_path_at_first_contact(tmp_path: Path) -> None:
    """With compact answers (RFC 9824, ``denial: compact``) a DO=1 question for a name that does not
    exist is answered by the lean path the first time, with the full parser's octets: one
    signature for the name, the zone's SOA signature cached; any letter case, names below
    existing names and empty non-terminals, every qtype the lean path takes, CO or not; the NSEC
    and RRSIG questions and NXNAME stay on the full path."""
    config = load_config(str(signed_config(tmp_path, dnssec_extra="  denial: compact\n")))
    assert config.dnssec is not None
    index = attach(build_index(config), config.dnssec, lambda: 1_800_000_000.0)
    rng = random.Random(17)
    apexes = sorted(index.zones)
    keys: dict[dns.name.Name, dns.rrset.RRset] = {}
    answered = declined = 0
    for _ in range(1500):
        apex = rng.choice(apexes)
        base = rng.choice([b"", *(r for r in index.zones[apex].table.names if r)])
        label = "".join(rng.choice("0123456789abcdef-_xyz") for _ in range(rng.randint(1, 20)))
        wire = bytes([len(label)]) + label.encode() + base + apex
        if wire[: -len(apex)] in index.zones[apex].table.names:
            continue
        name = wire_to_text(wire)
        name = "".join(c.upper() if rng.random() < 0.5 else c for c in name)
        qtype = rng.choice([33, 33, 16, 1, 28, 6, 2, 43, 46, 47, 65, 128, 0, 65535])
        co = rng.random() < 0.3
        payload = rng.choice([512, 1232])
        tcp = rng.random() < 0.2
        query = struct.pack("!HHHHHH", rng.getrandbits(16), 0x0100, 1, 0, 0, 1) + wire_name(name)
        query += struct.pack("!HH", qtype, 1) + opt(payload, True, b"", co=co)
        if same_as_full(index, query, tcp):
            answered += 1
            reply = answer_outcome(query, index, random.Random(SEED), tcp)[0] or b""
            assert reply[3] & 0x0F == (3 if co else 0)
            validated(index, reply, 1_800_000_000.0, keys)
        else:
            declined += 1
            assert qtype in (46, 47, 128), name
    assert answered > 900 and declined > 100  # (the three types the full path keeps)


def test_the_nxdomain_cache_is_bounded(tmp_path: Path) -> None:
    """NXDOMAIN pieces kept by proof still stay within their bound (first in, first out)."""
    config = load_config(str(signed_config(tmp_path, dnssec_extra="  cache_size: 128\n")))
    index = build_index(config)
    signer = index.dnssec
    assert isinstance(signer, ZoneSigner)
    assert signer.denials_size == 16
    proofs = set()
    for apex in sorted(index.zones):
        for label in (b"_a", b"_z", b"~", b"0"):
            query = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 1) + bytes([len(label)]) + label + apex
            query += b"\x00\x21\x00\x01" + opt(1232, True, b"")
            answer_outcome(query, index, random.Random(SEED), False)
            proofs.add((apex, *signer.denial(index.zones[apex].table, bytes([len(label)]) + label)))
            assert len(signer.denials) <= 16
    assert len(proofs) > 16 and 14 <= len(signer.denials) <= 16  # (the oldest eighth goes)
