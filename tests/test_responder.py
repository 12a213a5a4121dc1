"""The Responder: answers from the current index, by the lean path or the full parser, with a
fresh RFC 2782 order every time, counted, and nothing kept per query."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import dns.message
import dns.rdatatype
import pytest

import srvd.server.responder
from srvd.answer.lean import lean_answer
from srvd.config import load_config
from srvd.index.build import build_index
from srvd.server.responder import Responder

from conftest import EXAMPLE


def _query(name: str, rdtype: str = "SRV", ident: int = 1) -> bytes:
    message = dns.message.make_query(name, rdtype)
    message.id = ident
    return message.to_wire()


def _targets(reply: bytes) -> list[str]:
    message = dns.message.from_wire(reply)
    return [str(rr.target) for rrset in message.answer for rr in rrset]


def test_a_repeated_query_gets_a_fresh_rfc2782_order_every_time() -> None:
    responder = Responder(build_index(load_config(EXAMPLE)), random.Random(7))
    query = _query("_imaps._tcp.example.com")
    firsts = Counter(_targets(responder.respond(query) or b"")[0] for _ in range(3000))
    # weights 10 and 5: imap1 first two times in three (never one order replayed)
    assert 1850 < firsts["imap1.example.net."] < 2150
    assert firsts["imap1.example.net."] + firsts["imap2.example.net."] == 3000


def test_a_reply_has_the_querys_own_id_and_letter_case() -> None:
    responder = Responder(build_index(load_config(EXAMPLE)), random.Random(1))
    responder.respond(_query("_jmap._tcp.example.com", ident=1))
    reply = responder.respond(_query("_jmap._tcp.example.com", ident=0xBEEF)) or b""
    assert reply[:2] == b"\xbe\xef"
    other_case = _query("_JMAP._tcp.Example.com", ident=0x1234)
    reply = responder.respond(other_case) or b""
    assert reply[:2] == b"\x12\x34"
    assert reply[12 : len(other_case)] == other_case[12:]  # the question as asked


def test_udp_and_tcp_replies_differ_by_their_size_limits(tmp_path: Path) -> None:
    config = tmp_path / "srvd.yaml"
    config.write_text(
        "zone: {nameservers: [ns1.example.net]}\n"
        "profiles:\n  big:\n    txt:\n      _big._tcp: "
        + "["
        + ", ".join(f'"{"x" * 200}{i}"' for i in range(4))
        + "]\n"
        "domains:\n  example.com: big\n"
    )
    responder = Responder(build_index(load_config(config)), random.Random(1))
    query = _query("_big._tcp.example.com", "TXT")
    udp = responder.respond(query) or b""
    tcp = responder.respond(query, tcp=True) or b""
    assert udp[2] & 0x02 and not tcp[2] & 0x02  # truncated over UDP only
    assert responder.respond(query) == udp and responder.respond(query, tcp=True) == tcp


def test_a_new_index_answers_from_the_next_query_on(tmp_path: Path) -> None:
    responder = Responder(build_index(load_config(EXAMPLE)), random.Random(1))
    query = _query("_axigen.example.com", "TXT")
    assert b"webmail.example.net" in (responder.respond(query) or b"")
    changed = tmp_path / "srvd.yaml"
    changed.write_text(
        EXAMPLE.read_text().replace("axigen: webmail.example.net", "axigen: new.example.net")
    )
    responder.index = build_index(load_config(changed))
    assert b"new.example.net" in (responder.respond(query) or b"")


def test_a_flood_of_unique_names_is_answered_by_the_lean_path_and_counted() -> None:
    index = build_index(load_config(EXAMPLE))
    responder = Responder(index, random.Random(1))
    for i in range(5000):
        query = _query(f"_x{i}._tcp.example.com")
        reply = responder.respond(query)
        assert reply is not None and reply[3] & 0x0F == 3  # NXDOMAIN, every one
        assert lean_answer(query, index, random.Random(1), False) is not None
    assert sum(responder.fold().queries) == 5000  # and every reply is counted


def test_without_counting_the_answers_are_the_same() -> None:
    index = build_index(load_config(EXAMPLE))
    counted = Responder(index, random.Random(3))
    uncounted = Responder(index, random.Random(3), counting=False)
    for name, rdtype in [
        ("_imaps._tcp.example.com", "SRV"),
        ("_nope._tcp.example.com", "SRV"),
        ("_caldavs._tcp.example.com", "TXT"),
        ("example.com", "A"),
    ]:
        query = _query(name, rdtype)
        for _ in range(3):
            assert counted.respond(query) == uncounted.respond(query)
    assert sum(uncounted.fold().queries) == 0
    assert sum(counted.fold().queries) == 12
    assert (
        uncounted.respond(b"\x00") is None
        and uncounted.respond(query[:2] + b"\x80" + query[3:]) is None
    )


def test_counts_survive_a_new_index() -> None:
    index = build_index(load_config(EXAMPLE))
    responder = Responder(index, random.Random(1))
    query = _query("_imaps._tcp.example.com")
    for _ in range(3):
        responder.respond(query)
    responder.index = build_index(load_config(EXAMPLE))  # the counts stay
    responder.respond(query)
    sent = 205
    for i in range(sent):
        responder.respond(_query(f"_x{i // 2}._tcp.example.com"))
    counters = responder.fold()
    assert sum(counters.queries) == 4 + sent
    assert sum(counters.size_buckets) == sum(counters.queries)
    before = counters.size_sum
    reply = responder.respond(query) or b""
    assert responder.fold().size_sum - before == len(reply)


def test_letter_case_variants_each_echo_their_own_question() -> None:
    responder = Responder(build_index(load_config(EXAMPLE)), random.Random(1))
    names = ["_imaps._tcp.example.com", "_IMAPS._TCP.EXAMPLE.COM", "_iMaPs._tCp.ExAmPlE.cOm"]
    for name in names:
        query = _query(name, ident=7)
        reply = responder.respond(query) or b""
        assert reply[12 : len(query)] == query[12:]  # the question exactly as asked
        assert sorted(_targets(reply)) == ["imap1.example.net.", "imap2.example.net."]


def test_letter_case_is_folded_in_the_name_only() -> None:
    responder = Responder(build_index(load_config(EXAMPLE)), random.Random(1))
    # qtypes 0x0041 (HTTPS) and 0x0061: the same octets but for letter case, after the name
    base = _query("_imaps._tcp.example.com", "SRV")
    https = base[:-4] + b"\x00\x41\x00\x01"
    other = base[:-4] + b"\x00\x61\x00\x01"
    for query in (https, other, https, other):
        reply = responder.respond(query) or b""
        assert reply[12 : len(query)] == query[12:]
        assert reply[7] == 0 and reply[3] & 0x0F == 0  # NODATA: qtype not folded into SRV
    # a label holding a zero octet: the name ends there for the lean path, so it finds no
    # zone and the full parser answers
    binary = (
        b"\x00\x09\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        + b"\x03A\x00B\x04_tcp\x07example\x03com\x00\x00\x21\x00\x01"
    )
    reply = responder.respond(binary) or b""
    assert reply[12 : len(binary)] == binary[12:] and reply[3] & 0x0F == 3  # NXDOMAIN
    lower = binary.replace(b"A\x00B", b"a\x00B")
    reply = responder.respond(lower) or b""
    assert reply[12 : len(lower)] == lower[12:] and reply[3] & 0x0F == 3


def test_replies_are_tallied_by_kind_and_folded_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply costs one tally increment; a scrape folds the kinds, and more kinds than the cap
    are folded at once (on a timed query) without losing a reply."""
    monkeypatch.setattr(srvd.server.responder, "TALLIES", 4)
    responder = Responder(build_index(load_config(EXAMPLE)), random.Random(1))
    sizes: Counter[int] = Counter()
    for i in range(200):  # names of many lengths: many sizes, so many kinds
        reply = responder.respond(_query(f"_{'x' * (i % 40 + 1)}._tcp.example.com")) or b""
        sizes[len(reply)] += 1
    assert len(responder.tallies) <= 4 + 16  # folded at the cap, checked every 16th query
    counters = responder.fold()
    assert responder.tallies == {}
    assert sum(counters.queries) == 200 == sum(counters.size_buckets)
    assert counters.size_sum == sum(size * n for size, n in sizes.items())
