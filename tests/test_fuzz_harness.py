"""The fuzz harness's checker without atheris: the seed corpus and plain-random mutations of it
through the real query path, and the checker itself shown to catch each kind of bad reply."""

from __future__ import annotations

import random
import struct

import pytest

from fuzz.harness import Violation, check, check_reply, mutate, swap_case
from fuzz.seeds import seed_queries, seeds

MUTATIONS = 4000  # and 1,000 random packets


def test_seed_corpus() -> None:
    corpus = seeds()
    assert len(corpus) > 4000
    for data in corpus:
        check(data)


def test_random_mutations_of_the_seeds() -> None:
    rng = random.Random(20240607)
    pool = seeds()
    for _ in range(MUTATIONS):
        check(mutate(rng, rng.choice(pool), pool))


def test_random_bytes() -> None:
    rng = random.Random(11)
    for _ in range(1000):
        check(rng.randbytes(rng.randint(0, 80)))


QUERY = seed_queries()[0]  # _imaps._tcp.example.com SRV, ID 0, RD
QLEN = len(QUERY) - 12


def _reply(flags: int, body: bytes = QUERY[12:], qd: int = 1, ar: int = 0) -> bytes:
    return QUERY[:2] + struct.pack("!HHHHH", flags, qd, 0, 0, ar) + body


GOOD = _reply(0x8500)
OPT_RR = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)


def test_the_checker_accepts_a_good_reply() -> None:
    check_reply(QUERY, GOOD, False)
    check_reply(QUERY + b"\x00", GOOD, False)  # octets after the question


@pytest.mark.parametrize(
    ("query", "reply", "tcp", "why"),
    [
        (QUERY, None, False, "no reply to a query"),
        (QUERY[:11], GOOD[:11], False, "a reply to a short query"),
        (QUERY[:2] + b"\x81" + QUERY[3:], GOOD, True, "a reply to a short query or a response"),
        (QUERY, GOOD[:10], False, "shorter than a header"),
        (QUERY, b"\xff\xff" + GOOD[2:], False, "the ID"),
        (QUERY, _reply(0x0500), False, "QR=0"),
        (QUERY, _reply(0x8580), False, "RA"),
        (QUERY, _reply(0x8400), False, "RD not copied"),
        (QUERY, _reply(0x8502), False, "SERVFAIL"),
        (QUERY, _reply(0x8D00), False, "the opcode"),
        (QUERY, GOOD + bytes(600), False, "over the limit of 512"),
        (QUERY, GOOD + bytes(70000), True, "over the limit of 65535"),
        (QUERY, _reply(0x8500, QUERY[12:].upper()), False, "not echoed byte for byte"),
        (QUERY, _reply(0x8501, b"", qd=0) + b"x", False, "header-only"),
        (QUERY, _reply(0x8500, QUERY[12:] * 2, qd=2), False, "QDCOUNT 2"),
        (QUERY, _reply(0x8500) + b"\xc0", False, "dnspython cannot read"),
        (QUERY, _reply(0x8500, QUERY[12:] + OPT_RR, ar=1), False, "an OPT in the reply"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_the_checker_catches(query: bytes, reply: bytes | None, tcp: bool, why: str) -> None:
    with pytest.raises(Violation, match=why):
        check_reply(query, reply, tcp)


def test_the_checker_catches_a_missing_opt_and_a_wrong_limit() -> None:
    q = QUERY[:11] + b"\x01" + QUERY[12:] + b"\x00" + struct.pack("!HHIH", 41, 600, 0, 0)
    with pytest.raises(Violation, match="no OPT in the reply"):
        check_reply(q, GOOD, False)
    big = _reply(0x8500, QUERY[12:] + bytes(590) + OPT_RR, ar=1)
    with pytest.raises(Violation, match="over the limit of 600"):
        check_reply(q, big, False)


def test_swap_case_touches_only_the_question_name() -> None:
    swapped = swap_case(QUERY)
    assert swapped[:12] == QUERY[:12] and swapped[-4:] == QUERY[-4:]
    assert swapped[12:-4] == QUERY[12:-4].swapcase() != QUERY[12:-4]
