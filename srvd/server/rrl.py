"""Response rate limiting (RRL) for UDP, after Knot's mod-rrl and BIND's rate-limit.

A spoofed flood makes a DNS server reflect its answers at a victim. Every UDP reply is charged to
a token bucket chosen by the client's network prefix (/24 and /56 by default), the kind of
response (answer, NODATA, NXDOMAIN, REFUSED, error) and, for the first three, the zone the name
falls in. A bucket refills at ``responses_per_second`` and holds at most half a second's
worth (so a flood gets at most the rate plus that half second's burst).
A reply finding its bucket empty is *limited*: every ``slip``-th limited reply goes out
truncated (TC=1, no records), so a real client behind a spoofed prefix retries over TCP, which
cannot be spoofed and is never limited; the others are dropped.

The buckets live in a fixed table indexed by a hash of the key; keys that hash alike share a
bucket (they are limited together), so memory stays bounded whatever the flood sends. The
rate is per process: with ``workers: N`` each process allows ``responses_per_second / N``
(SO_REUSEPORT spreads a client's queries, with their random source ports, over the workers).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

from srvd.answer.outcome import (
    C_NOERROR,
    C_NOERROR_TC,
    C_NXDOMAIN,
    C_REFUSED,
    NODATA,
    NXDOMAIN_RESULT,
    ROW,
    RRL_ACTIONS,
)
from srvd.config import RrlSettings

KINDS = ("answer", "nodata", "nxdomain", "refused", "error")
K_ANSWER, K_NODATA, K_NXDOMAIN, K_REFUSED, K_ERROR = range(len(KINDS))
PASS, SLIP, DROP = 0, 1, 2

EXEMPT = 0  # the prefix key of an exempt source
_PREFIX_CACHE = 65_536  # sources remembered with their prefix key; emptied when full


# the response kind of each column of a reply's query cell (NOERROR: an answer or a NODATA)
_COLUMN_KIND = [K_ERROR] * ROW
_COLUMN_KIND[C_NOERROR] = _COLUMN_KIND[C_NOERROR_TC] = K_ANSWER
_COLUMN_KIND[C_NXDOMAIN] = K_NXDOMAIN
_COLUMN_KIND[C_REFUSED] = K_REFUSED
# a fixed key of each kind, mixed with the zone's hash for the kinds keyed by zone
_KIND_KEY = tuple(hash(("srvd rrl", kind)) for kind in range(len(KINDS)))


def kind_of(cell: int, service: int) -> int:
    """The response kind of a reply, from the metric cells it counts in (a compact answer for a
    name that does not exist, NOERROR on the wire, is an NXDOMAIN: RFC 9824)."""
    kind = _COLUMN_KIND[cell % ROW]
    if kind == K_ANSWER and service >= 0:
        if service % 3 == NODATA:
            return K_NODATA
        if service % 3 == NXDOMAIN_RESULT:
            return K_NXDOMAIN
    return kind


def bucket_key(kind: int, zone: bytes) -> int:
    """The part of a bucket's key that comes from the reply: its kind, and for answers and
    negative answers the zone part of the name.

    ``zone`` is the query's name from the label holding its last "_" on, lower case
    (srvd.answer.full.zone_of): ``_tcp.example.com`` for every name under it, so a flood of
    random names under one zone shares one bucket, as in BIND, where NXDOMAIN is keyed by the
    zone. (The zone's hash is the one its dict lookup already computed.)
    """
    return _KIND_KEY[kind] if kind >= K_REFUSED else hash(zone) ^ _KIND_KEY[kind]


def reply_key(cell: int, service: int, zone: bytes) -> int:
    """``bucket_key(kind_of(cell, service), zone)`` in one call, for the query path."""
    kind = _COLUMN_KIND[cell % ROW]
    if kind == K_ANSWER:
        if service >= 0:
            result = service % 3
            if result == NODATA:
                return hash(zone) ^ _KIND_KEY[K_NODATA]
            if result == NXDOMAIN_RESULT:  # a compact answer (RFC 9824)
                return hash(zone) ^ _KIND_KEY[K_NXDOMAIN]
        return hash(zone) ^ _KIND_KEY[K_ANSWER]
    return _KIND_KEY[kind] if kind >= K_REFUSED else hash(zone) ^ _KIND_KEY[kind]


class RateLimiter:
    """Token buckets per (source prefix, response kind, zone); see the module's docstring."""

    def __init__(
        self,
        settings: RrlSettings,
        workers: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = max(1.0, settings.responses_per_second / max(1, workers))
        self.slip = settings.slip
        self.size = settings.table_size
        self.v4_shift = 32 - settings.ipv4_prefix
        self.v6_shift = 128 - settings.ipv6_prefix
        self.exempt = tuple(ipaddress.ip_network(n) for n in settings.exempt)
        self.clock = clock
        self.depth = max(1.0, self.rate / 2)  # the most replies a full bucket lets through at once
        # A token bucket kept as one number, as in GCRA: the time at which the bucket would be
        # full again. A reply passes if that time is at most ``window`` ahead of now, and moves
        # it on by ``interval``. In the past: full (never charged, or idle long enough).
        self.interval = 1.0 / self.rate
        self.window = (self.depth - 1.0 + 1e-6) * self.interval  # (float sums run a hair over)
        self.full_at = [0.0] * self.size
        self.prefixes: dict[str, int] = {}
        self.limited = 0  # limited replies so far (the slip counter)
        self.actions = [0] * len(RRL_ACTIONS)  # since last folded into the counters

    def prefix_key(self, host: str) -> int:
        """A nonzero key for the network prefix of a source address, EXEMPT if exempt."""
        key = self.prefixes.get(host)
        if key is None:
            if len(self.prefixes) >= _PREFIX_CACHE:
                self.prefixes.clear()
            key = self.prefixes[host] = self._prefix_key(host)
        return key

    def _prefix_key(self, host: str) -> int:
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return hash(host) or 1  # not an IP address (never from a UDP socket): its own prefix
        if any(address in network for network in self.exempt):
            return EXEMPT
        shift = self.v4_shift if address.version == 4 else self.v6_shift
        return hash((address.version, int(address) >> shift)) or 1

    def check(self, host: str, key: int) -> int:
        """PASS, SLIP or DROP for one reply of bucket ``key`` (bucket_key) to ``host``."""
        prefix = self.prefix_key(host)
        return PASS if prefix == EXEMPT else self.charge(prefix ^ key)

    def charge(self, key: int) -> int:
        """Charge one reply to the bucket of ``key`` (a prefix key ^ a bucket_key)."""
        slot = key % self.size
        now = self.clock()
        full_at = self.full_at[slot]
        if full_at < now:
            full_at = now
        if full_at - now <= self.window:
            self.full_at[slot] = full_at + self.interval
            return PASS
        self.limited += 1
        if self.slip and self.limited % self.slip == 0:
            self.actions[SLIP - 1] += 1
            return SLIP
        self.actions[DROP - 1] += 1
        return DROP
