"""The responder: holds the current index and guards every answer.

Every transport hands its bytes here. A failure inside srvd's own code while answering one query
gives SERVFAIL and one (rate-limited) log line with the query; the process goes on.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

from twisted.logger import Logger

from srvd.answer import entry_for, folded_key, reply_size, servfail
from srvd.index import Index, RRset
from srvd.metrics import SIZE_BUCKET, TIMING_SAMPLE, Counters
from srvd.ordering import RandomSource
from srvd.outcome import (
    C_SERVFAIL,
    DROP_RESPONSE,
    DROP_SHORT,
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


CACHE_ENTRIES = 50_000  # per transport; a full cache is emptied (floods of unique names)

# A kept entry: srvd.answer.Entry, then the reply size and the replies since last folded. Every
# reply to one entry counts in the same cells with the same size (the RFC 2782 order changes no
# length), so the hot path only bumps HITS; fold() moves the hits into the counters.
HEADER, QLEN, AFTER, RRSET, DOMAIN, TAIL, CELL, SERVICE, SIZE, HITS = range(10)
Kept = list[Any]


class Responder:
    """Answers queries from whatever index is current; ``index`` is swapped whole on reload.

    Replies are assembled from entries (srvd.answer.Entry) kept per exact query (the octets after
    the ID): a repeated query skips parsing and lookup, and only its SRV order is drawn anew.
    """

    def __init__(
        self, index: Index, rng: RandomSource | None = None, counting: bool = True
    ) -> None:
        self._index = index
        self.rng: RandomSource = rng if rng is not None else random.Random()
        self.failures = 0
        self.failure_log = RateLimitedLog()
        self.counters = Counters()
        self.caches: tuple[dict[bytes, Kept], dict[bytes, Kept]] = ({}, {})  # UDP, TCP
        self.counting = counting

    @property
    def index(self) -> Index:
        return self._index

    @index.setter
    def index(self, index: Index) -> None:
        """Publish a new index (one assignment); what was kept for the old one goes with it."""
        self.fold()
        self._index = index
        self.caches = ({}, {})

    def fold(self) -> Counters:
        """Move the replies counted in kept entries into the counters (at scrape time)."""
        counters = self.counters
        queries, services, sizes = counters.queries, counters.services, counters.size_buckets
        for cache in self.caches:
            for kept in cache.values():
                hits = kept[HITS]
                if hits:
                    kept[HITS] = 0
                    queries[kept[CELL]] += hits
                    if kept[SERVICE] >= 0:
                        services[kept[SERVICE]] += hits
                    size = kept[SIZE]
                    sizes[SIZE_BUCKET[(size - 1) >> 4]] += hits
                    counters.size_sum += size * hits
        return counters

    def respond(self, query: bytes, tcp: bool = False) -> bytes | None:
        """The reply to one query (None: send nothing), counted for the metrics unless off."""
        counting = self.counting
        counters = self.counters
        timed = counting and counters.until_timed == 0
        if timed:
            counters.until_timed = TIMING_SAMPLE
            started = perf_counter_ns()
        if counting:
            counters.until_timed -= 1
        reply: bytes | None = None
        try:
            kept = self._kept(query, tcp)
            if kept is not None:
                if counting:
                    kept[HITS] += 1
                rrset: RRset | None = kept[RRSET]
                reply = query[:2] + kept[HEADER] + query[12 : 12 + kept[QLEN]] + kept[AFTER]
                if rrset is not None:
                    reply += rrset.wire(self.rng, kept[DOMAIN]) + kept[TAIL]
        except Exception:
            reply = self._failed(query)
            if reply is not None and counting:
                counters.queries[UNKNOWN_ROW + C_SERVFAIL + (TCP_CELLS if tcp else 0)] += 1
                counters.size_buckets[SIZE_BUCKET[(len(reply) - 1) >> 4]] += 1
                counters.size_sum += len(reply)
        if counting:
            if reply is None:  # no reply is due to this message at all
                counters.dropped[DROP_SHORT if len(query) < 12 else DROP_RESPONSE] += 1
            elif timed:
                counters.time(perf_counter_ns() - started)
        return reply

    def _kept(self, query: bytes, tcp: bool) -> Kept | None:
        """The kept entry for this query, or a new one (kept unless it is no reply at all)."""
        cache = self.caches[tcp]
        key = folded_key(query)
        kept = cache.get(key)
        if kept is None:
            entry = entry_for(query, self._index, tcp)
            if entry is None:
                return None
            if len(cache) >= CACHE_ENTRIES:
                self.fold()
                cache.clear()
            kept = cache[key] = [*entry, reply_size(entry), 0]
        return kept

    def _failed(self, query: bytes) -> bytes | None:
        self.failures += 1
        if self.failure_log.allow():
            log.failure("answering query {query} failed", query=query.hex())
        return servfail(query)
