"""The responder: holds the current index and guards every answer.

Every transport hands its bytes here. A failure inside srvd's own code while answering one query
gives SERVFAIL and one (rate-limited) log line with the query; the process goes on.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

from twisted.logger import Logger

from srvd.answer import TC, entry_for, folded_key, reply_size, servfail
from srvd.config import RrlSettings
from srvd.index import Index, RRset
from srvd.metrics import SIZE_BUCKET, TIMING_SAMPLE, Counters
from srvd.ordering import RandomSource
from srvd.outcome import (
    C_BADVERS,
    C_FORMERR,
    C_NOTAUTH,
    C_NOTAUTH_TC,
    C_NOTIMP,
    C_SERVFAIL,
    DROP_RESPONSE,
    DROP_SHORT,
    ROW,
    TCP_CELLS,
    UNKNOWN_ROW,
)
from srvd.rrl import SLIP, RateLimiter, bucket_key, kind_of

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


# The kept entries, per transport: a query's entry is kept from its second sighting on, so a
# flood of unique names (random subdomains, junk) passes by without filling the cache; a full
# cache drops its oldest quarter. About 450 octets an entry: 250,000 is about 110 MiB at most.
CACHE_ENTRIES = 250_000
_TIMED_MASK = TIMING_SAMPLE - 1  # TIMING_SAMPLE is a power of 2

# Error replies are header-only and quick to make; the queries that get them are mostly junk.
UNKEPT_COLUMNS = frozenset({C_FORMERR, C_NOTIMP, C_BADVERS, C_NOTAUTH, C_NOTAUTH_TC})
# "Seen once": one octet per slot, indexed by the key's hash (collisions only admit early); the
# table starts afresh once it has marked an eighth of its slots.
SEEN_SLOTS = 1 << 22
SEEN_RESET = SEEN_SLOTS // 8

# A kept entry: srvd.answer.Entry, then the reply size, the replies since last folded and the
# rate-limiting bucket key (UDP with RRL on; else 0). Every reply to one entry counts in the same
# cells with the same size (the RFC 2782 order changes no length), so the hot path only bumps
# HITS; fold() moves the hits into the counters.
HEADER, QLEN, AFTER, RRSET, DOMAIN, TAIL, CELL, SERVICE, SIZE, HITS, RKEY = range(11)
Kept = list[Any]


class Responder:
    """Answers queries from whatever index is current; ``index`` is swapped whole on reload.

    Replies are assembled from entries (srvd.answer.Entry) kept per exact query (the octets after
    the ID): a repeated query skips parsing and lookup, and only its SRV order is drawn anew.
    """

    def __init__(
        self,
        index: Index,
        rng: RandomSource | None = None,
        counting: bool = True,
        rrl: RateLimiter | None = None,
    ) -> None:
        self._index = index
        self.rng: RandomSource = rng if rng is not None else random.Random()
        self.failures = 0
        self.failure_log = RateLimitedLog()
        self.counters = Counters()
        self.ticks = -1  # queries counted so far, less one: picks the timed ones
        self.caches: tuple[dict[bytes, Kept], dict[bytes, Kept]] = ({}, {})  # UDP, TCP
        self.seen = bytearray(SEEN_SLOTS)
        self.seen_marked = 0
        self.passing: Kept | None = None  # the last entry answered but not kept: counted on fold
        self.touched: list[Kept] = []  # kept entries answered since the last fold
        self.counting = counting
        self.rrl = rrl
        self.rrl_log = RateLimitedLog()

    @property
    def index(self) -> Index:
        return self._index

    @index.setter
    def index(self, index: Index) -> None:
        """Publish a new index (one assignment); what was kept for the old one goes with it."""
        self.fold()
        self._index = index
        self.caches = ({}, {})

    def limit(self, settings: RrlSettings, workers: int = 1) -> None:
        """Rate-limit UDP replies with these settings from now on (or not, if off)."""
        self.fold()  # the actions counted by the limiter this replaces
        self.rrl = RateLimiter(settings, workers) if settings.enabled else None
        self.caches = ({}, self.caches[1])  # UDP entries hold bucket keys

    def fold(self) -> Counters:
        """Move the replies counted in kept entries into the counters (at scrape time)."""
        counters = self.counters
        if self.rrl is not None:
            actions = self.rrl.actions
            for i, count in enumerate(actions):
                counters.rrl[i] += count
                actions[i] = 0
        # only the entries answered since the last fold: a scrape costs what was asked since
        # the last one, not the size of the cache
        if self.passing is not None:
            self.touched.append(self.passing)
        for kept in self.touched:
            if kept[HITS]:  # (0: folded already, when its entry was dropped)
                self._fold_one(kept)
        self.touched = []
        return counters

    def _fold_one(self, kept: Kept) -> None:
        counters = self.counters
        hits = kept[HITS]
        kept[HITS] = 0
        counters.queries[kept[CELL]] += hits
        if kept[SERVICE] >= 0:
            counters.services[kept[SERVICE]] += hits
        size = kept[SIZE]
        counters.size_buckets[SIZE_BUCKET[(size - 1) >> 4]] += hits
        counters.size_sum += size * hits

    def respond(self, query: bytes, tcp: bool = False, source: str | None = None) -> bytes | None:
        """The reply to one query (None: send nothing), counted for the metrics unless off.

        ``source``, the client's address, is given for UDP: the reply is then rate-limited
        (srvd.rrl) when RRL is on. A limited reply counts only in the RRL actions."""
        counting = self.counting
        started = 0  # srvd's own time is measured on the first query and one in TIMING_SAMPLE
        if counting:
            self.ticks = ticks = self.ticks + 1
            if not ticks & _TIMED_MASK:
                started = perf_counter_ns()
        try:
            kept = self._kept(query, tcp)
            if kept is None:  # no reply is due to this message at all
                if counting:
                    self.counters.dropped[DROP_SHORT if len(query) < 12 else DROP_RESPONSE] += 1
                return None
            rrl = self.rrl
            if source is not None and rrl is not None:
                prefix = rrl.prefixes.get(source)
                if prefix is None:
                    prefix = rrl.prefix_key(source)
                if prefix:  # not exempt
                    action = rrl.charge(prefix ^ kept[RKEY])
                    if action:
                        return self._limited(query, kept, action, source)
            rrset: RRset | None = kept[RRSET]
            reply: bytes = query[:2] + kept[HEADER] + query[12 : 12 + kept[QLEN]] + kept[AFTER]
            if rrset is not None:
                reply += rrset.wire(self.rng, kept[DOMAIN]) + kept[TAIL]
        except Exception:
            return self._failed(query, tcp)
        if counting:
            hits = kept[HITS]
            kept[HITS] = hits + 1
            if not hits and kept is not self.passing:
                self.touched.append(kept)
            if started:
                self.counters.time(perf_counter_ns() - started)
        return reply

    def _kept(self, query: bytes, tcp: bool) -> Kept | None:
        """The kept entry for this query, or a new one (kept from its second sighting on)."""
        cache = self.caches[tcp]
        key = folded_key(query)
        kept = cache.get(key)
        if kept is None:
            entry = entry_for(query, self._index, tcp)
            if entry is None:
                return None
            rkey = 0 if tcp or self.rrl is None else bucket_key(kind_of(entry[6], entry[7]), key)
            kept = [*entry, reply_size(entry), 0, rkey]
            slot = hash(key) & (SEEN_SLOTS - 1)
            if self.seen[slot] and entry[6] % ROW not in UNKEPT_COLUMNS:
                if len(cache) >= CACHE_ENTRIES:
                    self._evict(cache)
                cache[key] = kept
            else:
                self._mark(slot)
                passing = self.passing
                if passing is not None and passing[HITS]:
                    self._fold_one(passing)
                self.passing = kept
        return kept

    def _mark(self, slot: int) -> None:
        if self.seen_marked >= SEEN_RESET:
            self.seen = bytearray(SEEN_SLOTS)
            self.seen_marked = 0
        self.seen[slot] = 1
        self.seen_marked += 1

    def _evict(self, cache: dict[bytes, Kept]) -> None:
        """Drop the oldest quarter of a full cache (insertion order), their counts folded."""
        oldest = list(itertools.islice(cache, CACHE_ENTRIES // 4))
        for key in oldest:
            kept = cache.pop(key)
            if kept[HITS]:
                self._fold_one(kept)

    def _limited(self, query: bytes, kept: Kept, action: int, source: str) -> bytes | None:
        if self.rrl_log.allow():
            log.info("rate limiting replies to {source}'s network", source=source)
        return self._slip(query, kept) if action == SLIP else None

    @staticmethod
    def _slip(query: bytes, kept: Kept) -> bytes:
        """A limited reply that slips out: truncated (TC=1), the question and the OPT only."""
        header: bytes = kept[HEADER]
        flags = header[0] << 8 | header[1] | TC
        # The OPT is the last record of every reply but a NOTAUTH with its TSIG record, where it
        # comes first; srvd adds no other additional records.
        tail: bytes = kept[TAIL] if kept[RRSET] is not None else kept[AFTER]
        additional = header[9]
        if kept[CELL] % ROW == C_NOTAUTH:
            opt = tail[:11] if additional == 2 else b""
        else:
            opt = tail[-11:] if additional == 1 else b""
        counts = header[2:4] + b"\x00\x00\x00\x00" + (b"\x00\x01" if opt else b"\x00\x00")
        return query[:2] + flags.to_bytes(2, "big") + counts + query[12 : 12 + kept[QLEN]] + opt

    def _failed(self, query: bytes, tcp: bool) -> bytes | None:
        self.failures += 1
        if self.failure_log.allow():
            log.failure("answering query {query} failed", query=query.hex())
        reply = servfail(query)
        if self.counting:
            counters = self.counters
            if reply is None:
                counters.dropped[DROP_SHORT if len(query) < 12 else DROP_RESPONSE] += 1
            else:
                counters.queries[UNKNOWN_ROW + C_SERVFAIL + (TCP_CELLS if tcp else 0)] += 1
                counters.size_buckets[SIZE_BUCKET[(len(reply) - 1) >> 4]] += 1
                counters.size_sum += len(reply)
        return reply
