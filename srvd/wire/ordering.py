"""RFC 2782 ordering of SRV records, drawn afresh for every answer.

Records are sorted by priority; within one priority they are placed by weighted random selection
without replacement. The running list puts weight-0 records first, as RFC 2782 asks, and the draw
is a uniform integer in [0, sum of the remaining weights]. A draw of 0 can only ever pick a weight-0
record: it is made only while weight-0 records remain (then it picks one of them uniformly), and
otherwise the draw is taken from [1, sum]. So a record of weight w is placed first in its group with
probability exactly w / W when the group has no weight-0 records, weight-0 records get their rare
chance (1 / (W + 1) together) but never a larger one, and a group whose weights are all 0 is
shuffled uniformly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")


class RandomSource(Protocol):
    """What srvd needs from a random generator (``random.Random`` fits)."""

    def random(self) -> float: ...


def _below(rng: RandomSource, n: int) -> int:
    """A uniform integer in [0, n)."""
    value = int(rng.random() * n)
    return value if value < n else n - 1


def shuffle(items: list[T], rng: RandomSource) -> None:
    """Fisher-Yates, in place."""
    for i in range(len(items) - 1, 0, -1):
        j = _below(rng, i + 1)
        items[i], items[j] = items[j], items[i]


def weighted_order(
    items: Sequence[T], weights: Sequence[int], total: int, rng: RandomSource
) -> list[T]:
    """One RFC 2782 selection order of a priority group.

    ``items`` and ``weights`` are parallel; ``total`` is ``sum(weights)``.
    """
    n = len(items)
    if n == 1:
        return [items[0]]
    if total == 0:
        out = list(items)
        shuffle(out, rng)
        return out
    if n == 2 and weights[0] and weights[1]:
        # the common case: two weighted targets, one draw
        if _below(rng, total) < weights[0]:
            return [items[0], items[1]]
        return [items[1], items[0]]
    # weight-0 records first in the running list, as RFC 2782 says
    left = [i for i in range(n) if not weights[i]] + [i for i in range(n) if weights[i]]
    out = []
    remaining = total
    while left:
        if remaining == 0:
            rest = [items[i] for i in left]
            shuffle(rest, rng)
            out.extend(rest)
            break
        zeros = sum(1 for i in left if not weights[i])
        # 0 .. remaining while weight-0 records remain, else 1 .. remaining
        draw = _below(rng, remaining + 1) if zeros else _below(rng, remaining) + 1
        if draw == 0:
            position = _below(rng, zeros)
        else:
            running = 0
            position = 0
            for position, i in enumerate(left):  # noqa: B007 - position is the result
                running += weights[i]
                if running >= draw:
                    break
        chosen = left.pop(position)
        out.append(items[chosen])
        remaining -= weights[chosen]
    return out
