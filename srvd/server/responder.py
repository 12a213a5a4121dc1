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

from srvd.answer.full import TC, entry_for, folded_key, reply_size, servfail
from srvd.answer.outcome import (
    C_BADVERS,
    C_FORMERR,
    C_NOTAUTH,
    C_NOTAUTH_TC,
    C_NOTIMP,
    C_SERVFAIL,
    DROP_RESPONSE,
    DROP_SHORT,
    NO_SERVICE,
    ROW,
    TCP_CELLS,
    UNKNOWN_ROW,
)
from srvd.config import RrlSettings
from srvd.index.model import Index, RRset
from srvd.ops.metrics import SIZE_BUCKET, TIMING_SAMPLE, Counters
from srvd.server.rrl import SLIP, RateLimiter, bucket_key, kind_of
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


# The kept entries, per transport: a query's entry is kept from its second sighting on, so a
# flood of unique names (random subdomains, junk) passes by without filling the cache; a full
# cache drops its oldest quarter. About 350 octets an entry: 250,000 is about 85 MiB at most.
CACHE_ENTRIES = 250_000
# Entries are found by the query's own octets first: for a query whose name is in lower case
# those are its key. A query asked again in the same mixed case (a stub's or a resolver's own
# spelling, not 0x20's random one) gets an alias to its entry from its second sighting, so that
# it is not folded every time. An alias is a key and a dict slot, about 150 octets: 250,000 are
# about 35 MiB at most.
ALIASES = 250_000
_TIMED_MASK = TIMING_SAMPLE - 1  # TIMING_SAMPLE is a power of 2

# Error replies are header-only and quick to make; the queries that get them are mostly junk.
UNKEPT_COLUMNS = frozenset({C_FORMERR, C_NOTIMP, C_BADVERS, C_NOTAUTH, C_NOTAUTH_TC})
# "Seen once": one octet per slot, indexed by the key's hash (collisions only admit early); the
# table starts afresh once it has marked an eighth of its slots.
SEEN_SLOTS = 1 << 22
SEEN_RESET = SEEN_SLOTS // 8
# Replies are counted in tallies, one per (query cell, service cell, size): every reply made from
# one entry counts alike (the RFC 2782 order changes no length), so a reply costs one increment
# of a tally shared with every entry of its kind, and a scrape folds the tallies, not the
# entries. A reply whose kind would be a tally beyond this many is counted at once, not kept.
TALLIES = 16_384
HITS = 0  # a tally: [replies since last folded, query cell, service cell, size]
# Kept entries share their header and their records where equal (an answer is the same octets
# for every domain on a profile): fewer objects, and a repeated query touches fewer cold ones.
SHARED_PIECES = 65_536  # distinct pieces remembered for sharing; the table starts afresh when full

# A kept entry: srvd.answer.full.Entry's reply pieces, then its tally (None: each reply counted at
# once), its rate-limiting bucket key (UDP with RRL on; else 0), its cells and its reply size.
HEADER, QLEN, AFTER, RRSET, DOMAIN, TAIL, TALLY, RKEY, CELL, SERVICE, SIZE = range(11)
Kept = tuple[Any, ...]
Tally = list[int]


def _make_room(table: dict[bytes, Kept], cap: int) -> None:
    """Drop the oldest quarter of a full table (a dict keeps insertion order)."""
    if len(table) >= cap:
        for oldest in list(itertools.islice(table, cap // 4)):
            del table[oldest]


class Responder:
    """Answers queries from whatever index is current; ``index`` is swapped whole on reload.

    Replies are assembled from entries (srvd.answer.full.Entry) kept per query (the octets after the
    ID, the name's letter case folded): a repeated query skips parsing and lookup, and only its
    SRV order is drawn anew.
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
        self.aliases: tuple[dict[bytes, Kept], dict[bytes, Kept]] = ({}, {})
        self.seen = bytearray(SEEN_SLOTS)
        self.seen_marked = 0
        self.tallies: dict[tuple[int, int, int], Tally] = {}
        self.shared: dict[bytes, bytes] = {}
        self.counting = counting
        self.rrl = rrl
        self.rrl_log = RateLimitedLog()

    @property
    def index(self) -> Index:
        return self._index

    @index.setter
    def index(self, index: Index) -> None:
        """Publish a new index (one assignment); what was kept for the old one goes with it."""
        self._index = index
        self.caches = ({}, {})
        self.aliases = ({}, {})
        self.shared = {}

    def limit(self, settings: RrlSettings, workers: int = 1) -> None:
        """Rate-limit UDP replies with these settings from now on (or not, if off)."""
        self.fold()  # the actions counted by the limiter this replaces
        self.rrl = RateLimiter(settings, workers) if settings.enabled else None
        self.caches = ({}, self.caches[1])  # UDP entries hold bucket keys
        self.aliases = ({}, self.aliases[1])

    def fold(self) -> Counters:
        """Move the replies tallied since the last fold into the counters (at scrape time).

        It costs the number of tallies (kinds of reply), whatever the number of kept entries."""
        counters = self.counters
        if self.rrl is not None:
            actions = self.rrl.actions
            for i, count in enumerate(actions):
                counters.rrl[i] += count
                actions[i] = 0
        for tally in self.tallies.values():
            hits = tally[HITS]
            if hits:
                tally[HITS] = 0
                self._count(tally[1], tally[2], tally[3], hits)
        return counters

    def _count(self, cell: int, service: int, size: int, replies: int) -> None:
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
            raw = query[2:]
            kept = self.caches[tcp].get(raw)
            if kept is None:
                kept = self.aliases[tcp].get(raw) or self._find(query, raw, tcp)
                if kept is None:  # no reply is due to this message at all
                    if counting:
                        self._count_dropped(query)
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
            tally: Tally | None = kept[TALLY]
            if tally is not None:
                tally[HITS] += 1
            else:
                self._count(kept[CELL], kept[SERVICE], kept[SIZE], 1)
            if started:
                self.counters.time(perf_counter_ns() - started)
        return reply

    def _find(self, query: bytes, raw: bytes, tcp: bool) -> Kept | None:
        """The entry of a query not found by its own octets ``raw``: the entry kept for its
        folded key, or a new one. None: no reply."""
        key = folded_key(query)
        if key == raw:  # the name is in lower case already: nothing kept for it
            return self._new(query, key, tcp)
        cache = self.caches[tcp]
        kept = cache.get(key) or self._new(query, key, tcp)
        if kept is not None and cache.get(key) is kept:
            slot = hash(raw) & (SEEN_SLOTS - 1)
            if self.seen[slot]:  # the same spelling again: an alias saves folding it next time
                aliases = self.aliases[tcp]
                _make_room(aliases, ALIASES)
                aliases[raw] = kept
            else:
                self._mark(slot)
        return kept

    def _new(self, query: bytes, key: bytes, tcp: bool) -> Kept | None:
        """A new entry for this query (kept from its second sighting on), or None: no reply."""
        entry = entry_for(query, self._index, tcp)
        if entry is None:
            return None
        header, qlen, after, rrset, domain, tail, cell, service = entry
        size = reply_size(entry)
        rkey = 0 if tcp or self.rrl is None else bucket_key(kind_of(cell, service), key)
        tally = None if cell % ROW in UNKEPT_COLUMNS else self._tally(cell, service, size)
        slot = hash(key) & (SEEN_SLOTS - 1)
        if tally is None or not self.seen[slot]:
            self._mark(slot)
            return header, qlen, after, rrset, domain, tail, tally, rkey, cell, service, size
        shared = self.shared
        if len(shared) >= SHARED_PIECES:
            self.shared = shared = {}
        if rrset is None or not rrset.templated:
            domain = b""  # (only templated records are rendered for their domain)
        kept = (
            shared.setdefault(header, header),
            qlen,
            shared.setdefault(after, after),
            rrset,
            domain,
            tail,
            tally,
            rkey,
            cell,
            service,
            size,
        )
        cache = self.caches[tcp]
        _make_room(cache, CACHE_ENTRIES)
        cache[key] = kept
        return kept

    def _tally(self, cell: int, service: int, size: int) -> Tally | None:
        kind = (cell, service, size)
        tally = self.tallies.get(kind)
        if tally is None and len(self.tallies) < TALLIES:
            tally = self.tallies[kind] = [0, cell, service, size]
        return tally

    def _mark(self, slot: int) -> None:
        if self.seen_marked >= SEEN_RESET:
            self.seen = bytearray(SEEN_SLOTS)
            self.seen_marked = 0
        self.seen[slot] = 1
        self.seen_marked += 1

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
            if reply is None:
                self._count_dropped(query)
            else:
                cell = UNKNOWN_ROW + C_SERVFAIL + (TCP_CELLS if tcp else 0)
                self._count(cell, NO_SERVICE, len(reply), 1)
        return reply
