"""The responder: holds the current index and guards every answer.

Every transport hands its bytes here. A failure inside srvd's own code while answering one query
gives SERVFAIL and one (rate-limited) log line with the query; the process goes on.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from time import perf_counter_ns

from twisted.logger import Logger

from srvd.answer import answer, answer_outcome, servfail
from srvd.index import Index
from srvd.metrics import SIZE_BUCKET, TIMING_SAMPLE, Counters
from srvd.ordering import RandomSource
from srvd.outcome import (
    C_SERVFAIL,
    DROP_RESPONSE,
    DROP_SHORT,
    NO_SERVICE,
    TCP_CELLS,
    UNKNOWN_ROW,
)

log = Logger()


class RateLimitedLog:
    """At most ``burst`` lines per ``period`` seconds; the rest are counted and summed up."""

    def __init__(
        self, burst: int = 10, period: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = burst
        self.period = period
        self.clock = clock
        self.window = -period
        self.sent = 0
        self.suppressed = 0

    def allow(self) -> bool:
        now = self.clock()
        if now - self.window >= self.period:
            if self.suppressed:
                log.warn("{count} similar log lines suppressed", count=self.suppressed)
            self.window = now
            self.sent = 0
            self.suppressed = 0
        if self.sent < self.burst:
            self.sent += 1
            return True
        self.suppressed += 1
        return False


class Responder:
    """Answers queries from whatever index is current; ``index`` is swapped whole on reload."""

    def __init__(
        self, index: Index, rng: RandomSource | None = None, counting: bool = True
    ) -> None:
        self.index = index
        self.rng: RandomSource = rng if rng is not None else random.Random()
        self.failures = 0
        self.failure_log = RateLimitedLog()
        self.counters = Counters()
        if not counting:  # metrics off: not even the increments
            self.respond = self._respond_uncounted  # type: ignore[method-assign]

    def respond(self, query: bytes, tcp: bool = False) -> bytes | None:
        """The reply to one query (None: send nothing), counted for the metrics.

        The counting is Counters.count written out inline: this runs for every query.
        """
        counters = self.counters
        timed = counters.until_timed == 0
        if timed:
            counters.until_timed = TIMING_SAMPLE
            started = perf_counter_ns()
        counters.until_timed -= 1
        try:
            reply, cell, service = answer_outcome(query, self.index, self.rng, tcp)
        except Exception:
            reply, service = self._failed(query), NO_SERVICE
            if reply is None:  # no reply is due to this message at all
                cell = DROP_SHORT if len(query) < 12 else DROP_RESPONSE
            else:
                cell = UNKNOWN_ROW + C_SERVFAIL + (TCP_CELLS if tcp else 0)
        if reply is None:
            counters.dropped[cell] += 1
            return None
        counters.queries[cell] += 1
        if service >= 0:
            counters.services[service] += 1
        size = len(reply)
        counters.size_buckets[SIZE_BUCKET[(size - 1) >> 4]] += 1
        counters.size_sum += size
        if timed:
            counters.time(perf_counter_ns() - started)
        return reply

    def _respond_uncounted(self, query: bytes, tcp: bool = False) -> bytes | None:
        try:
            return answer(query, self.index, self.rng, tcp)
        except Exception:
            return self._failed(query)

    def _failed(self, query: bytes) -> bytes | None:
        self.failures += 1
        if self.failure_log.allow():
            log.failure("answering query {query} failed", query=query.hex())
        return servfail(query)
