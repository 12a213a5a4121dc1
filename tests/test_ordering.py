"""RFC 2782 ordering: exact tests with a scripted rng, and one statistical test of the shares."""

from __future__ import annotations

import importlib
import itertools
import random
import struct
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

import srvd
from srvd.answer.full import answer
from srvd.config import load_config
from srvd.index.build import build_index
from srvd.index.model import Piece, RRset
from srvd.wire.discovery import SRV
from srvd.wire.ordering import weighted_order

EXAMPLE = Path(srvd.__file__).resolve().parent / "data" / "example.yaml"
LAST = 1.0 - 2**-53  # the largest float random() can return


class Script:
    """An rng that returns preset floats, and fails on a draw nobody scripted."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)
        self.used = 0

    def random(self) -> float:
        assert self.used < len(self.values), (
            f"draw {self.used + 1}, only {len(self.values)} scripted"
        )
        value = self.values[self.used]
        self.used += 1
        return value


def pick(k: int, n: int) -> float:
    """A float r with int(r * n) == k: the draw that selects k of n equally likely outcomes."""
    assert 0 <= k < n
    return (k + 0.5) / n


def order(weights: Sequence[int], rng: Script, names: str = "abcdefgh") -> str:
    items = list(names[: len(weights)])
    return "".join(weighted_order(items, weights, sum(weights), rng))


# ---------------------------------------------------------------------------------------------
# One record, two records


@pytest.mark.parametrize("weight", [0, 1, 65535])
def test_one_record_draws_nothing(weight: int) -> None:
    rng = Script()
    assert order([weight], rng) == "a"
    assert rng.used == 0


@pytest.mark.parametrize("k", range(15))
def test_two_weighted_records_one_draw(k: int) -> None:
    """The fast path: one draw in [0, 15); 0-9 put the weight-10 record first, 10-14 the other."""
    rng = Script(pick(k, 15))
    assert order([10, 5], rng) == ("ab" if k < 10 else "ba")
    assert rng.used == 1


def test_two_weighted_records_extreme_draws() -> None:
    assert order([10, 5], Script(0.0)) == "ab"
    assert order([10, 5], Script(LAST)) == "ba"
    assert order([1, 65535], Script(0.0)) == "ab"
    assert order([1, 65535], Script(1 / 65536)) == "ba"
    assert order([65535, 1], Script(LAST)) == "ba"
    assert order([65535, 1], Script(65534.5 / 65536)) == "ab"


def test_two_weighted_records_shares_are_exact() -> None:
    for w0, w1 in [(10, 5), (1, 1), (1, 3), (7, 2)]:
        total = w0 + w1
        firsts = Counter(order([w0, w1], Script(pick(k, total)))[0] for k in range(total))
        assert firsts == Counter({"a": w0, "b": w1})


# ---------------------------------------------------------------------------------------------
# Weight 0


@pytest.mark.parametrize("k", range(1, 6))
def test_zero_weight_not_first_unless_the_draw_is_0(k: int) -> None:
    """weights (0, 5): a draw in [0, 5]; every draw but 0 places the weighted record first."""
    rng = Script(pick(k, 6))
    assert order([0, 5], rng) == "ba"
    assert rng.used == 1  # the weight-0 record is then alone: nothing left to draw


def test_zero_weight_first_through_a_draw_of_0() -> None:
    rng = Script(pick(0, 6), 0.0, pick(0, 5))
    assert order([0, 5], rng) == "ab"
    rng = Script(0.0, LAST, LAST)
    assert order([0, 5], rng) == "ab"


@pytest.mark.parametrize(
    "weights",
    [
        [0, 5],
        [5, 0],
        [0, 3, 2],
        [3, 0, 2],
        [2, 3, 0],
        [0, 0, 4],
        [4, 0, 0, 1],
        [0, 1],
        [0, 0, 0, 9],
    ],
)
def test_zero_weights_first_with_probability_1_over_w_plus_1(weights: list[int]) -> None:
    """Over the W + 1 equally likely first draws, exactly one (the 0) puts a weight-0 record first;
    each weighted record is first for exactly its weight's count of them."""
    total = sum(weights)
    names = "abcdefgh"
    firsts: Counter[str] = Counter()
    for k in range(total + 1):
        rng = Script(pick(k, total + 1), *([0.0] * 10))
        firsts[order(weights, rng)[0]] += 1
    zero_names = {names[i] for i, w in enumerate(weights) if w == 0}
    assert sum(firsts[name] for name in zero_names) == 1
    for i, w in enumerate(weights):
        if w:
            assert firsts[names[i]] == w


def test_draw_of_0_picks_uniformly_among_the_weight_0_records() -> None:
    """weights (0, 0, 4): after a first draw of 0, a second draw chooses one of the two zeros."""
    rest = [0.0] * 10
    assert order([0, 0, 4], Script(0.0, pick(0, 2), *rest))[0] == "a"
    assert order([0, 0, 4], Script(0.0, pick(1, 2), *rest))[0] == "b"
    assert order([4, 0, 0], Script(0.0, pick(0, 2), *rest))[0] == "b"
    assert order([4, 0, 0], Script(0.0, pick(1, 2), *rest))[0] == "c"


def test_exact_sequence_with_zeros() -> None:
    # weights a=0 b=3 c=2, W=5. Draw 4 of [0, 5]: running list z(0) b(3) c(5) -> c.
    # Then W=3, zeros remain: draw 0 of [0, 3] -> a zero -> a (the only one, second draw).
    # Then W=3, no zeros: draw in [1, 3] -> b.
    rng = Script(pick(4, 6), pick(0, 4), pick(0, 1), pick(2, 3))
    assert order([0, 3, 2], rng) == "cab"
    # Draw 3 of [0, 5] -> b; then W=2 with a zero: draw 1 of [0, 2] -> c; then a alone.
    rng = Script(pick(3, 6), pick(1, 3))
    assert order([0, 3, 2], rng) == "bca"
    assert rng.used == 2


def test_zeros_left_after_the_weighted_records_are_shuffled() -> None:
    """weights (0, 0, 5): once the weighted record is placed, the zeros are shuffled (one draw)."""
    assert order([0, 0, 5], Script(pick(1, 6), pick(0, 2))) == "cba"
    assert order([0, 0, 5], Script(pick(5, 6), pick(1, 2))) == "cab"


# ---------------------------------------------------------------------------------------------
# Groups without zero weights


def test_exact_sequence_without_zeros() -> None:
    # weights 1, 2, 3 (W=6): draw in [1, 6]; 4 -> running 1, 3, 6 -> c.
    # Then W=3: draw 1 -> a. Then b.
    rng = Script(pick(3, 6), pick(0, 3), pick(0, 2))
    assert order([1, 2, 3], rng) == "cab"
    # draw 1 -> a; then W=5: draw 3 -> running b(2), c(5) -> c; then b.
    rng = Script(pick(0, 6), pick(2, 5), LAST)
    assert order([1, 2, 3], rng) == "acb"


@pytest.mark.parametrize(
    "weights", [[1, 2, 3], [5, 5, 5, 5], [1, 1, 10], [3, 1, 4, 1, 5], [300, 1, 2]]
)
def test_first_place_shares_are_exactly_weight_over_total(weights: list[int]) -> None:
    """Over the W equally likely first draws, each record is first for exactly its weight."""
    total = sum(weights)
    names = "abcdefgh"
    firsts: Counter[str] = Counter()
    for k in range(total):
        firsts[order(weights, Script(pick(k, total), *([0.0] * 10)))[0]] += 1
    assert firsts == Counter({names[i]: w for i, w in enumerate(weights)})


def test_extreme_draws_stay_in_range() -> None:
    for weights in ([1, 2, 3], [0, 1, 2], [0, 0, 1], [65535, 65535, 65535]):
        assert sorted(order(weights, Script(*([LAST] * 10)))) == sorted("abc")
        assert sorted(order(weights, Script(*([0.0] * 10)))) == sorted("abc")


# ---------------------------------------------------------------------------------------------
# All-zero groups


@pytest.mark.parametrize("n", [2, 3, 4])
def test_all_zero_groups_are_shuffled_uniformly(n: int) -> None:
    """Fisher-Yates: each of the n! combinations of draws gives a different order."""
    seen = []
    for ks in itertools.product(*[range(i) for i in range(n, 1, -1)]):
        rng = Script(*(pick(k, i) for k, i in zip(ks, range(n, 1, -1), strict=True)))
        seen.append(order([0] * n, rng))
        assert rng.used == n - 1
    assert len(seen) == len(set(seen))
    assert sorted(seen) == sorted("".join(p) for p in itertools.permutations("abcd"[:n]))


def test_all_zero_group_exact() -> None:
    # n=3: i=2 swaps with j=_below(3), then i=1 with j=_below(2).
    assert order([0, 0, 0], Script(pick(2, 3), pick(1, 2))) == "abc"
    assert order([0, 0, 0], Script(pick(0, 3), pick(1, 2))) == "cba"
    assert order([0, 0, 0], Script(pick(2, 3), pick(0, 2))) == "bac"


# ---------------------------------------------------------------------------------------------
# RRset.wire: ready orders for two weighted records, the same draws as weighted_order


def _rrset(*groups: tuple[str, Sequence[int]]) -> RRset:
    built: list[tuple[list[Piece], list[int]]] = [
        ([name.encode() for name in names], list(weights)) for names, weights in groups
    ]
    return RRset(SRV, built)


@pytest.mark.parametrize(
    ("groups", "ready"),
    [
        ((("ab", [10, 5]),), True),
        ((("x", [0]), ("ab", [1, 65535]), ("yz", [0, 0])), False),  # two groups to draw
        ((("x", [3]), ("ab", [65535, 1]), ("y", [7])), True),
        ((("ab", [0, 5]),), False),  # a weight-0 record: the general path
        ((("abc", [1, 2, 3]),), False),
    ],
)
def test_rrset_orders_are_those_of_weighted_order(
    groups: tuple[tuple[str, Sequence[int]], ...], ready: bool
) -> None:
    """Whether or not the orders are made ready, every answer is what the general path (one
    weighted_order per group) gives with the same random sequence, draw for draw."""
    rrset = _rrset(*groups)
    assert (rrset.pair is not None) == ready
    fast, slow = random.Random(2782), random.Random(2782)
    for _ in range(2000):
        assert rrset.wire(fast, b"") == b"".join(rrset.pieces(slow))  # type: ignore[arg-type]
    assert fast.random() == slow.random()  # as many draws taken
    if ready:  # one draw, at the edges of the split too
        for edge in (0.0, LAST, 1 / 65536, 10 / 15, 9.99999 / 15, 65534.99 / 65536):
            expected = b"".join(rrset.pieces(Script(edge)))  # type: ignore[arg-type]
            assert rrset.wire(Script(edge), b"") == expected


# ---------------------------------------------------------------------------------------------
# The statistical test: first-place shares over many seeded draws


# chi-square critical values at p = 0.001, by degrees of freedom
CRITICAL_001 = {1: 10.828, 2: 13.816, 3: 16.266, 4: 18.467, 5: 20.515}


def critical_value(df: int) -> float:
    try:
        stats = importlib.import_module("scipy.stats")
    except ImportError:
        return CRITICAL_001[df]
    value = float(stats.chi2.isf(0.001, df))
    assert value == pytest.approx(CRITICAL_001[df], abs=1e-3)
    return value


def chi_square(observed: Sequence[int], weights: Sequence[int]) -> float:
    n = sum(observed)
    total = sum(weights)
    return sum(
        (o - n * w / total) ** 2 / (n * w / total) for o, w in zip(observed, weights, strict=True)
    )


DRAWS = 20_000


@pytest.mark.parametrize("weights", [[10, 5], [1, 2, 3, 4, 10], [60, 20, 15, 5]])
def test_first_place_shares_match_the_weights(weights: list[int]) -> None:
    rng = random.Random(0x5EED + len(weights))
    items = list(range(len(weights)))
    total = sum(weights)
    firsts = Counter(weighted_order(items, weights, total, rng)[0] for _ in range(DRAWS))
    observed = [firsts[i] for i in items]
    assert chi_square(observed, weights) < critical_value(len(weights) - 1)
    # and a coarse look that would catch an inverted or flat distribution
    for i, w in enumerate(weights):
        assert abs(observed[i] / DRAWS - w / total) < 0.02


def test_first_place_shares_through_answer() -> None:
    """_imaps._tcp.example.com of the example: imap1 (weight 10) and imap2 (weight 5)."""
    index = build_index(load_config(EXAMPLE))
    query = (
        struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0)
        + b"\x06_imaps\x04_tcp\x07example\x03com\x00"
        + struct.pack("!HH", 33, 1)
    )
    first_rdata = len(query) + 12
    rng = random.Random(2782)
    firsts: Counter[bytes] = Counter()
    for _ in range(DRAWS):
        reply = answer(query, index, rng, False)
        assert reply is not None
        firsts[reply[first_rdata + 6 : first_rdata + 12]] += 1
    assert set(firsts) == {b"\x05imap1", b"\x05imap2"}
    observed = [firsts[b"\x05imap1"], firsts[b"\x05imap2"]]
    assert chi_square(observed, [10, 5]) < critical_value(1)
