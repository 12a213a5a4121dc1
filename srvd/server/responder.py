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

from srvd.answer.full import TC, entry_for, reply_of, servfail, zone_of
from srvd.answer.lean import Lean, lean_answer
from srvd.answer.outcome import (
    C_NOTAUTH,
    C_SERVFAIL,
    DROP_RESPONSE,
    DROP_SHORT,
    NO_SERVICE,
    ROW,
    TCP_CELLS,
    UNKNOWN_ROW,
)
from srvd.config import RrlSettings
from srvd.index.model import Index
from srvd.ops.metrics import SIZE_BUCKET, TIMING_SAMPLE, Counters
from srvd.server.rrl import SLIP, RateLimiter, reply_key
from srvd.wire.ordering import RandomSource

log = Logger()


class RateLimitedLog:
    """At most ``burst`` lines per ``period`` seconds; the rest are counted and summed up.

    Every log line that remote input can cause goes through one of these, so that a flood of
    bad packets writes at most a few lines a minute, however long it lasts.
    """

    def __init__(
        self, burst: int = 10, period: float = 60.0, clock: Callable[[], float] = time.monotonic
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


_TIMED_MASK = TIMING_SAMPLE - 1  # TIMING_SAMPLE is a power of 2
# Replies are tallied by kind (query cell, service cell, size): one dict increment a reply, and a
# scrape folds the kinds into the counters. Past this many kinds the tallies are folded at once.
TALLIES = 4096


class Responder:
    """Answers queries from whatever index is current; ``index`` is swapped whole on reload.

    Every query is answered from the index itself: the lean path (srvd.answer.lean) for the
    common shape, the full parser (srvd.answer.full) for the rest. Nothing is kept per query.
    """

    def __init__(
        self,
        index: Index,
        rng: RandomSource | None = None,
        counting: bool = True,
        rrl: RateLimiter | None = None,
    ) -> None:
        self.index = index  # published whole: one assignment
        self.rng: RandomSource = rng if rng is not None else random.Random()
        self.failures = 0
        self.failure_log = RateLimitedLog()
        self.counters = Counters()
        self.ticks = -1  # queries counted so far, less one: picks the timed ones
        # replies since the last fold, by kind: (query cell << 24 | service cell + 1 << 16 | size)
        self.tallies: dict[int, int] = {}
        self.counting = counting
        self.rrl = rrl
        self.rrl_log = RateLimitedLog()

    def limit(self, settings: RrlSettings, workers: int = 1) -> None:
        """Rate-limit UDP replies with these settings from now on (or not, if off)."""
        self.fold()  # the actions counted by the limiter this replaces
        self.rrl = RateLimiter(settings, workers) if settings.enabled else None

    def fold(self) -> Counters:
        """The counters, with the replies tallied and the rate limiter's actions since the last
        fold moved in (at scrape time). It costs the number of kinds of reply (query cell,
        service cell, size) seen since the last fold, a few hundred at most in practice."""
        counters = self.counters
        tallies, self.tallies = self.tallies, {}
        for kind, replies in tallies.items():
            self._count(kind >> 24, ((kind >> 16) & 0xFF) - 1, kind & 0xFFFF, replies)
        if self.rrl is not None:
            actions = self.rrl.actions
            for i, count in enumerate(actions):
                counters.rrl[i] += count
                actions[i] = 0
        return counters

    def _count(self, cell: int, service: int, size: int, replies: int = 1) -> None:
        counters = self.counters
        counters.queries[cell] += replies
        if service >= 0:
            counters.services[service] += replies
        counters.size_buckets[SIZE_BUCKET[(size - 1) >> 4]] += replies
        counters.size_sum += size * replies

    def _count_dropped(self, query: bytes) -> None:
        self.counters.dropped[DROP_SHORT if len(query) < 12 else DROP_RESPONSE] += 1

    def respond(self, query: bytes, tcp: bool = False, source: str | None = None) -> bytes | None:
        """The reply to one query (None: send nothing), counted for the metrics unless off.

        ``source``, the client's address, is given for UDP: the reply is then rate-limited
        (srvd.server.rrl) when RRL is on. A limited reply counts only in the RRL actions."""
        counting = self.counting
        started = 0  # srvd's own time is measured on the first query and one in TIMING_SAMPLE
        if counting:
            self.ticks = ticks = self.ticks + 1
            if not ticks & _TIMED_MASK:
                started = perf_counter_ns()
        try:
            if len(query) < 12:
                if counting:
                    self._count_dropped(query)
                return None
            found = lean_answer(query, self.index, self.rng, tcp) or self._full(query, tcp)
            if found is None:  # no reply is due to this message at all
                if counting:
                    self._count_dropped(query)
                return None
            reply, cell, service, zone = found
            rrl = self.rrl
            if source is not None and rrl is not None:
                prefix = rrl.prefixes.get(source)
                if prefix is None:
                    prefix = rrl.prefix_key(source)
                if prefix:  # not exempt
                    action = rrl.charge(prefix ^ reply_key(cell, service, zone))
                    if action:
                        return self._limited(query, tcp, action, source)
        except Exception:
            return self._failed(query, tcp)
        if counting:
            kind = cell << 24 | (service + 1) << 16 | len(reply)
            tallies = self.tallies
            tallies[kind] = tallies.get(kind, 0) + 1
            if started:
                self.counters.time(perf_counter_ns() - started)
                if len(tallies) >= TALLIES:  # (checked on the timed queries only)
                    self.fold()
        return reply

    def _full(self, query: bytes, tcp: bool) -> Lean | None:
        """The full parser's reply to a query the lean path left, or None: no reply."""
        entry = entry_for(query, self.index, tcp)
        if entry is None:
            return None
        return reply_of(query, entry, self.rng), entry.cell, entry.service, zone_of(query)

    def _limited(self, query: bytes, tcp: bool, action: int, source: str) -> bytes | None:
        if self.rrl_log.allow():
            log.info("rate limiting replies to {source}'s network", source=source)
        return self._slip(query, tcp) if action == SLIP else None

    def _slip(self, query: bytes, tcp: bool) -> bytes | None:
        """A limited reply that slips out: truncated (TC=1), the question and the OPT only."""
        entry = entry_for(query, self.index, tcp)
        if entry is None:
            return None
        header, qlen, after, rrset, _domain, tail, cell, _service = entry
        flags = header[0] << 8 | header[1] | TC
        # The OPT is the last record of every reply but a NOTAUTH with its TSIG record, where it
        # comes first; srvd adds no other additional records.
        last = tail if rrset is not None else after
        additional = header[9]
        if cell % ROW == C_NOTAUTH:
            opt = last[:11] if additional == 2 else b""
        else:
            opt = last[-11:] if additional == 1 else b""
        counts = header[2:4] + b"\x00\x00\x00\x00" + (b"\x00\x01" if opt else b"\x00\x00")
        return query[:2] + flags.to_bytes(2, "big") + counts + query[12 : 12 + qlen] + opt

    def _failed(self, query: bytes, tcp: bool) -> bytes | None:
        self.failures += 1
        if self.failure_log.allow():
            log.failure("answering query {query} failed", query=query.hex())
        reply = servfail(query)
        if self.counting:
            if reply is None:
                self._count_dropped(query)
            else:
                cell = UNKNOWN_ROW + C_SERVFAIL + (TCP_CELLS if tcp else 0)
                self._count(cell, NO_SERVICE, len(reply))
        return reply
