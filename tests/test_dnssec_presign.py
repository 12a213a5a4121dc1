"""Signing ahead while idle (srvd.answer.signed.presign, srvd.server.presign): what every DO=1
negative answer of a zone needs is signed before a flood asks, only while the server is idle,
within half the signature cache, and anew for each published index."""

from __future__ import annotations

import random
from pathlib import Path

import dns.message
import dns.name
import pytest
from dnssec_oracle import check_denial, signed_config, validate_message
from twisted.internet.task import Clock

from srvd.answer.full import answer
from srvd.answer.signed import presign
from srvd.config import load_config
from srvd.index.build import build_index
from srvd.index.dnssec import STATS, ZoneSigner, attach
from srvd.index.model import Index
from srvd.server import presign as presigning
from srvd.server.presign import Presigner
from srvd.server.responder import Responder

NOW = 1_800_000_000.0


def _index(directory: Path, extra: str = "") -> Index:
    config = load_config(str(signed_config(directory, 13, extra)))
    return attach(build_index(config), config.dnssec, lambda: NOW)


def _signer(index: Index) -> ZoneSigner:
    signer = index.dnssec
    assert isinstance(signer, ZoneSigner)
    return signer


def ask(index: Index, name: str) -> dns.message.Message:
    query = dns.message.make_query(name, "SRV", want_dnssec=True)
    reply = answer(query.to_wire(), index, random.Random(1), True)
    assert reply is not None
    return dns.message.from_wire(reply)


@pytest.mark.parametrize("denial", ["nsec", "compact"])
def test_presigned_zones_answer_random_names_of_the_apex_gap_without_a_signature(
    tmp_path: Path, denial: str
) -> None:
    index = _index(tmp_path, f"  denial: {denial}\n")
    signer = _signer(index)
    apexes = iter(sorted(index.zones))
    assert presign(index, signer, apexes, 5) == 5
    made = STATS.signatures
    assert presign(index, signer, apexes, 10_000) == len(index.zones) - 5  # the rest
    per_zone = (STATS.signatures - made) / (len(index.zones) - 5)
    assert per_zone == (1 if denial == "compact" else 2)  # the SOA, and the apex's NSEC
    assert presign(index, signer, iter(sorted(index.zones)), 10_000) == len(index.zones)
    assert STATS.signatures - made == per_zone * (len(index.zones) - 5)  # nothing twice
    keys = {}
    for domain in ("example.com", "shop.example", "d3.example"):
        apex = dns.name.from_text(f"_tcp.{domain}")
        dnskey = dns.message.make_query(apex, "DNSKEY", want_dnssec=True)
        found = dns.message.from_wire(answer(dnskey.to_wire(), index, random.Random(1)) or b"")
        keys[apex] = found.answer[0]
        made = STATS.signatures
        name = f"_0{random.Random(domain).getrandbits(32):08x}._tcp.{domain}"  # the apex's gap
        reply = ask(index, name)
        validate_message(reply, keys, NOW)
        check_denial(reply, dns.name.from_text(name), 33)
        # the chain: nothing to sign; compact answers: the name's NSEC alone
        assert STATS.signatures - made == (1 if denial == "compact" else 0), name


def test_the_presigner_works_while_idle_within_half_the_cache_and_per_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presigning, "BATCH", 4)
    index = _index(tmp_path)
    signer = _signer(index)
    responder = Responder(index, random.Random(1), counting=True)
    clock = Clock()
    presigner = Presigner(responder, clock)
    presigner.start(index)
    zones = len(index.zones)
    assert signer.presign_pending == zones and presigner.loop.running
    clock.advance(presigning.INTERVAL)
    assert signer.presign_pending == zones - 4
    responder.ticks += presigning.IDLE + 1  # busy: answers first
    clock.advance(presigning.INTERVAL)
    assert signer.presign_pending == zones - 4
    clock.advance(presigning.INTERVAL)  # idle again
    assert signer.presign_pending == zones - 8
    while presigner.loop.running:
        clock.advance(presigning.INTERVAL)
    assert signer.presign_pending == 0 and len(signer.cache) == 2 * zones

    # another index published: it starts over for that one, and the old one is left
    (tmp_path / "other").mkdir()
    other = _index(tmp_path / "other")
    responder.index = other
    presigner.start(other)
    clock.advance(presigning.INTERVAL)
    assert _signer(other).presign_pending == zones - 4
    responder.index = index  # (as if yet another index came: the presigner stops)
    clock.advance(presigning.INTERVAL)
    assert not presigner.loop.running

    # only when every zone's fit in half the signature cache (the rest is the answers')
    (tmp_path / "small").mkdir()
    small = _index(tmp_path / "small", f"  cache_size: {4 * zones - 2}\n")
    responder.index = small
    presigner.start(small)
    assert not presigner.loop.running and _signer(small).presign_pending == 0
    assert not _signer(small).cache
    (tmp_path / "enough").mkdir()
    enough = _index(tmp_path / "enough", f"  cache_size: {4 * zones}\n")
    responder.index = enough
    presigner.start(enough)
    while presigner.loop.running:
        clock.advance(presigning.INTERVAL)
    assert _signer(enough).presign_pending == 0 and len(_signer(enough).cache) == 2 * zones
