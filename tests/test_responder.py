"""The responder's kept entries: fast repeats, but never a replayed order or a stale answer."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import dns.message
import dns.rdatatype
import pytest

import srvd.server.responder
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
    assert len(responder.caches[False]) == 1  # one entry, drawn from 3,000 times
    # weights 10 and 5: imap1 first two times in three (never one order replayed)
    assert 1850 < firsts["imap1.example.net."] < 2150
    assert firsts["imap1.example.net."] + firsts["imap2.example.net."] == 3000


def test_a_kept_entry_answers_with_the_querys_own_id_and_letter_case() -> None:
    responder = Responder(build_index(load_config(EXAMPLE)), random.Random(1))
    responder.respond(_query("_jmap._tcp.example.com", ident=1))
    reply = responder.respond(_query("_jmap._tcp.example.com", ident=0xBEEF)) or b""
    assert reply[:2] == b"\xbe\xef"
    other_case = _query("_JMAP._tcp.Example.com", ident=0x1234)
    reply = responder.respond(other_case) or b""
    assert reply[:2] == b"\x12\x34"
    assert reply[12 : len(other_case)] == other_case[12:]  # the question as asked


def test_udp_and_tcp_keep_apart_because_their_size_limits_differ(tmp_path: Path) -> None:
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


def test_publishing_a_new_index_drops_every_kept_entry(tmp_path: Path) -> None:
    responder = Responder(build_index(load_config(EXAMPLE)), random.Random(1))
    query = _query("_axigen.example.com", "TXT")
    assert b"webmail.example.net" in (responder.respond(query) or b"")
    changed = tmp_path / "srvd.yaml"
    changed.write_text(
        EXAMPLE.read_text().replace("axigen: webmail.example.net", "axigen: new.example.net")
    )
    responder.index = build_index(load_config(changed))
    assert responder.caches == ({}, {})
    assert b"new.example.net" in (responder.respond(query) or b"")


def test_a_flood_of_unique_names_is_answered_but_not_kept() -> None:
    responder = Responder(build_index(load_config(EXAMPLE)), random.Random(1))
    for i in range(5000):
        reply = responder.respond(_query(f"_x{i}._tcp.example.com"))
        assert reply is not None and reply[3] & 0x0F == 3  # NXDOMAIN, every one
    assert len(responder.caches[False]) < 50  # slots of the "seen once" table that collide
    assert sum(responder.fold().queries) == 5000  # and every reply is counted


def test_an_entry_is_kept_from_its_second_sighting_and_a_full_cache_drops_its_oldest_quarter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(srvd.server.responder, "CACHE_ENTRIES", 400)
    responder = Responder(build_index(load_config(EXAMPLE)), random.Random(1))
    names = [f"_x{i}._tcp.example.com" for i in range(1000)]
    for name in names:
        responder.respond(_query(name))
    assert len(responder.caches[False]) < 30  # seen once: not kept (but for collisions)
    for name in names:
        responder.respond(_query(name))
    cache = responder.caches[False]
    assert 300 <= len(cache) <= 400  # bounded, and never emptied at once
    newest = _query(names[-1])[2:]
    assert newest in cache  # the oldest went first
    assert sum(responder.fold().queries) == 2000


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


def test_counts_survive_a_full_cache_and_a_new_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(srvd.server.responder, "CACHE_ENTRIES", 100)
    index = build_index(load_config(EXAMPLE))
    responder = Responder(index, random.Random(1))
    query = _query("_imaps._tcp.example.com")
    for _ in range(3):
        responder.respond(query)
    responder.index = build_index(load_config(EXAMPLE))  # the kept entries go; their counts stay
    responder.respond(query)
    sent = 2 * 2 * 100 + 5  # twice the cache's size, each name twice: it fills and drops entries
    for i in range(sent):
        responder.respond(_query(f"_x{i // 2}._tcp.example.com"))  # each name twice: kept
    counters = responder.fold()
    assert sum(counters.queries) == 4 + sent
    assert sum(counters.size_buckets) == sum(counters.queries)
    before = counters.size_sum
    reply = responder.respond(query) or b""
    assert responder.fold().size_sum - before == len(reply)


def test_letter_case_variants_share_one_entry_and_each_echoes_its_own_question() -> None:
    responder = Responder(build_index(load_config(EXAMPLE)), random.Random(1))
    names = ["_imaps._tcp.example.com", "_IMAPS._TCP.EXAMPLE.COM", "_iMaPs._tCp.ExAmPlE.cOm"]
    for name in names:
        query = _query(name, ident=7)
        reply = responder.respond(query) or b""
        assert reply[12 : len(query)] == query[12:]  # the question exactly as asked
        assert sorted(_targets(reply)) == ["imap1.example.net.", "imap2.example.net."]
    assert len(responder.caches[False]) == 1


def test_a_spelling_asked_again_gets_an_alias_and_random_case_gets_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index = build_index(load_config(EXAMPLE))
    responder = Responder(index, random.Random(5))
    fresh = Responder(index, random.Random(5), counting=False)
    mixed = _query("_IMAPS._tcp.Example.com", ident=9)
    for sighting in range(1, 5):
        reply = responder.respond(mixed)
        assert reply == fresh.respond(mixed)  # kept or not, the same answer as asked
        # kept from the second sighting, aliased from the third (the spelling seen again)
        assert len(responder.caches[False]) == (sighting >= 2)
        assert list(responder.aliases[False]) == ([mixed[2:]] if sighting >= 3 else [])
    assert responder.aliases[False][mixed[2:]] is next(iter(responder.caches[False].values()))

    lower = _query("_jmap._tcp.example.com")  # its own octets are its key: never an alias
    for _ in range(4):
        responder.respond(lower)
    assert len(responder.aliases[False]) == 1

    rng = random.Random(0x20)
    spellings = {
        "".join(c.upper() if rng.random() < 0.5 else c for c in "_jmap._tcp.example.com")
        for _ in range(2000)
    }
    for name in spellings:  # 0x20: a new spelling each time, answered from the entry, no alias
        reply = responder.respond(_query(name)) or b""
        assert _targets(reply) == ["jmap.example.net."]
    assert len(responder.aliases[False]) <= 3  # (but for collisions in the "seen" table)
    assert sum(responder.fold().queries) == 8 + len(spellings)

    monkeypatch.setattr(srvd.server.responder, "ALIASES", 40)  # bounded: the oldest quarter goes
    names = [f"_{k:02}._tcp.EXAMPLE.com" for k in range(60)]
    for _ in range(3):
        for name in names:
            responder.respond(_query(name))
    assert 30 <= len(responder.aliases[False]) <= 40
    assert _query(names[-1])[2:] in responder.aliases[False]

    responder.index = index  # a new index: the aliases go with the entries
    assert responder.aliases == ({}, {})


def test_folding_touches_the_name_only() -> None:
    responder = Responder(build_index(load_config(EXAMPLE)), random.Random(1))
    # qtypes 0x0041 (HTTPS) and 0x0061: the same octets but for letter case, after the name
    base = _query("_imaps._tcp.example.com", "SRV")
    https = base[:-4] + b"\x00\x41\x00\x01"
    other = base[:-4] + b"\x00\x61\x00\x01"
    for query in (https, other, https, other):
        reply = responder.respond(query) or b""
        assert reply[12 : len(query)] == query[12:]
    assert len(responder.caches[False]) == 2
    # a label holding a zero octet: folding stops there, and the reply is still right
    binary = (
        b"\x00\x09\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        + b"\x03A\x00B\x04_tcp\x07example\x03com\x00\x00\x21\x00\x01"
    )
    reply = responder.respond(binary) or b""
    assert reply[12 : len(binary)] == binary[12:] and reply[3] & 0x0F == 3  # NXDOMAIN
    lower = binary.replace(b"A\x00B", b"a\x00B")
    reply = responder.respond(lower) or b""
    assert reply[12 : len(lower)] == lower[12:] and reply[3] & 0x0F == 3


def test_replies_of_one_kind_share_a_tally_and_kinds_beyond_the_cap_are_counted_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    responder = Responder(build_index(load_config(EXAMPLE)), random.Random(1))
    names = [f"_x{i:03}._tcp.example.com" for i in range(300)]  # one size: NXDOMAIN alike
    for _ in range(2):
        for name in names:
            responder.respond(_query(name))
    assert len(responder.caches[False]) >= 290  # kept from their second sighting
    assert len(responder.tallies) == 1  # a scrape folds one tally, not 300 entries
    assert responder.fold().queries[next(iter(responder.tallies.values()))[1]] == 600

    monkeypatch.setattr(srvd.server.responder, "TALLIES", 1)
    capped = Responder(build_index(load_config(EXAMPLE)), random.Random(1))
    other = _query("_imaps._tcp.example.com")  # another kind of reply than the first
    for query in (_query(names[0]), other, _query(names[0]), other, other):
        capped.respond(query)
    assert len(capped.tallies) == 1 and len(capped.caches[False]) == 1  # `other` not kept
    counters = capped.fold()
    assert sum(counters.queries) == 5
    assert sum(counters.size_buckets) == 5
    assert counters.size_sum == 2 * len(capped.respond(_query(names[0])) or b"") + 3 * len(
        capped.respond(other) or b""
    )
