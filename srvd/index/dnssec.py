"""Online signing of the served zones: keys, validity windows, NSEC chains, the signature cache.

One ``ZoneSigner`` belongs to one Index (``Index.dnssec``). Nothing is signed when the index is
built: a signature is made the first time an answer (or a transfer, or an export) needs it, and
kept in a bounded cache (first in, first out) keyed by owner, type and validity window. A
million signed zones are thus ready as fast as unsigned ones, and a flood of random names costs
at most the cache's memory.

Validity windows (docs/dnssec.md): every zone gets a new window every ``refresh`` seconds,
staggered by a hash of its apex so that zones do not all renew at once; a window starting at
``start`` signs with inception ``start - backdate`` and expiration ``start + lifetime``. The
window depends only on the apex and the clock, so every worker and every server holding the key
makes the same octets. A zone's SOA serial is the larger (RFC 1982) of its content serial and
its window's start: it moves when the window does, and secondaries transfer the new signatures.

Authenticated denial: every zone has a plain NSEC chain (RFC 4034/4035) over its names, which
are all known at build time: the chain's shape (relative names and type bitmaps) is computed once
per Table, shared by every domain on a profile, and rendered per domain by appending its apex.
Transfers, exports, NODATA and (``denial: nsec``, the default) NXDOMAIN answers use it. With
``denial: compact`` a DO=1 question for a name that does not exist gets RFC 9824's compact
answer instead: one NSEC at the name itself, its next name the name's immediate successor and its
bitmap RRSIG NSEC NXNAME, signed for that name alone (``compact_nsec``).
"""

from __future__ import annotations

import struct
import time
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any, NamedTuple

from srvd.config.model import DnssecSettings, ZoneSettings
from srvd.index.model import NS, SOA, Index, RRset, Table
from srvd.wire.dnssec import (
    CDNSKEY,
    CDS,
    DNSKEY,
    NSEC,
    NXNAME,
    RRSIG,
    SigningKey,
    ds_rdata,
    load_key,
    read_rdatas,
    sign_rrset,
    type_bitmap,
)

KEY_SET = frozenset({DNSKEY, CDS, CDNSKEY})
REPLIES = 100_000  # DO=1 replies kept for the lean path, at most
_CACHE_KEY = struct.Struct("!HIH")
_RRSIG_CLASS = struct.pack("!HH", RRSIG, 1)
NEVER = b"\xff\xff\xff\xff"
CHAINS = 4096  # NSEC chains kept (one per distinct table in use)
APEX_TYPES = (SOA, NS, RRSIG, NSEC, DNSKEY, CDS, CDNSKEY)
NAME_TYPES = (RRSIG, NSEC)
COMPACT_BITMAP = type_bitmap((RRSIG, NSEC, NXNAME))  # a nonexistent name's (RFC 9824 §3.1)
_QUESTION = b"\xc0\x0c"
_NSEC_HEAD = struct.Struct("!HHIH")
_NSEC_TAIL = struct.Struct("!IIIH")  # an RRSIG's fields after Labels: TTL, expiration, ...


# a DO=1 reply in pieces (ZoneSigner.replies): the headers after the ID by RD, the RRset to order
# or None, the customer domain, the octets after the question (after the ordered records) but the
# OPT, the column of the query cell, the service cell; Reply is the same with the time it is
# valid until first
ReplyParts = tuple[tuple[bytes, bytes], "RRset | None", bytes, bytes, int, int]
Reply = tuple[int, tuple[bytes, bytes], "RRset | None", bytes, bytes, int, int]
# an NXDOMAIN's pieces (ZoneSigner.denials): the time it is valid until, the headers after the ID
# by RD, and the authority section split at its compression pointers to the apex (they point
# into the question, where the apex lies at an offset that differs from name to name): the
# section is the pointer's two octets joined with these pieces
Denial = tuple[int, tuple[bytes, bytes], tuple[bytes, ...]]
# where one is kept: the zone's apex and its NSEC chain's entries that prove the denial
# (Chain.nxdomain): every name below the apex with the same two entries gets the same section
DenialKey = tuple[bytes, int, int]


class SigningStats:
    """What signing did in this process (read by the metrics at scrape time)."""

    def __init__(self) -> None:
        self.signatures = 0  # signatures made
        self.hits = 0  # signatures found in the cache
        self.misses = 0  # signatures not in the cache (then made)
        self.evictions = 0


STATS = SigningStats()  # one per process: signers come and go with reloads, the counts stay


@dataclass(frozen=True, slots=True)
class Window:
    """One zone's signature validity window."""

    start: int
    inception: int
    expiration: int


class Negative(NamedTuple):
    """What the negative answers of one zone share in one window (ZoneSigner.keep_negative)."""

    until: int  # when the window ends
    window: Window
    soa: bytes  # the SOA record, without its owner
    soa_rrsig: bytes  # its RRSIG record, without its owner


class Chain:
    """The NSEC chain of one table: its names with data in canonical order, and their types."""

    __slots__ = ("at", "bitmaps", "keys", "owners", "wildcard")

    def __init__(self, table: Table) -> None:
        entries = []
        for relative, node in table.names.items():
            if relative and not node.rrsets:
                continue  # an empty non-terminal: no NSEC of its own (RFC 4035 §2.3)
            types = set(node.rrsets) | set(APEX_TYPES if not relative else NAME_TYPES)
            entries.append((relative_key(relative), relative, type_bitmap(types)))
        if b"" not in table.names:
            entries.append(((), b"", type_bitmap(APEX_TYPES)))
        entries.sort()
        self.keys = [key for key, _, _ in entries]
        self.owners = [owner for _, owner, _ in entries]
        self.bitmaps = [bitmap for _, _, bitmap in entries]
        self.at = {owner: i for i, owner in enumerate(self.owners)}
        self.wildcard = self.covering(b"\x01*")  # the entry covering the apex's wildcard

    def covering(self, relative: bytes) -> int:
        """The entry whose NSEC covers (or matches) a name below the apex."""
        return bisect_right(self.keys, relative_key(relative)) - 1

    def nxdomain(self, relative: bytes, names: Mapping[bytes, object]) -> tuple[int, int]:
        """(the entry covering ``relative``, the entry covering the wildcard at its closest
        encloser): the NSECs that prove ``relative`` (lower case, whole labels, not in
        ``names``, the table's names) does not exist. Every name with the same two entries gets
        the same proof (srvd.answer.signed keeps it for the lean path under them)."""
        if relative and relative[0] + 1 == len(relative):  # one label: the encloser is the apex
            return bisect_right(self.keys, (relative[1:],)) - 1, self.wildcard
        encloser = relative
        while encloser:  # the closest encloser: the longest existing ancestor
            encloser = encloser[encloser[0] + 1 :]
            if not encloser or encloser in names:
                break
        return self.covering(relative), self.covering(b"\x01*" + encloser)

    def rdata(self, i: int, apex: bytes) -> bytes:
        """The NSEC rdata of entry ``i`` in the zone at ``apex`` (lower-case wire name)."""
        following = self.owners[i + 1] if i + 1 < len(self.owners) else b""
        return following + apex + self.bitmaps[i]


def relative_key(relative: bytes) -> tuple[bytes, ...]:
    """Canonical sort key of a name below the apex, from its lower-case labels (no root)."""
    out = []
    pos = 0
    while pos < len(relative):
        out.append(relative[pos + 1 : pos + 1 + relative[pos]].lower())
        pos += relative[pos] + 1
    out.reverse()
    return tuple(out)


class ZoneSigner:
    """Signs the zones of one index (see the module's doc)."""

    def __init__(
        self,
        settings: DnssecSettings,
        zone: ZoneSettings,
        clock: Callable[[], float] = time.time,
        stats: SigningStats | None = None,
    ) -> None:
        self.settings = settings
        self.key: SigningKey = load_key(settings.key.data)
        self.published = tuple(load_key(k.data) for k in settings.publish)
        self.keys = (self.key, *self.published)
        self.dnskeys = [k.dnskey for k in self.keys]
        self.clock = clock
        self.stats = stats if stats is not None else STATS
        self.ttl = zone.ttl
        self.negative_ttl = zone.negative_ttl  # NSEC TTL: min(SOA minimum, SOA TTL), RFC 9077
        self.lifetime = settings.lifetime
        self.refresh = settings.refresh
        self.slots = max(1, settings.refresh // 3600)  # window starts: one an hour
        self.windows: dict[int, Window] = {}  # by start
        self.backdate = settings.backdate
        self.size = settings.cache_size
        self.cache: dict[bytes, bytes] = {}  # owner, type, window start, key tag → RRSIG rdata
        self.chains: dict[int, tuple[Table, Chain]] = {}
        # DO=1 replies the lean path sends again (srvd.answer.lean): the lower-case question name
        # and type → (valid until, the headers by RD, the RRset to order or None, the domain,
        # the octets after the question or after the ordered records but the OPT, the query
        # cell's column, the service cell); positive answers and NODATA only (the names that
        # exist), at most an eighth of cache_size and REPLIES
        self.replies: dict[bytes, Reply] = {}
        self.replies_size = max(16, min(settings.cache_size // 8, REPLIES))
        # NXDOMAIN replies apart, in a smaller cache: a random-name flood churns only this one;
        # kept by the NSECs that prove them, not by name: one for all the names of an NSEC gap
        self.denials: dict[DenialKey, Denial] = {}
        self.denials_size = max(16, self.replies_size // 4)
        # compact answers (denial: compact): a nonexistent name → (valid until, its NSEC and the
        # NSEC's RRSIG, the RRSIG's expiration field); bounded apart like the NXDOMAINs, so that
        # the same names asked again (clients probing services a domain lacks) cost no
        # signature, while a random-name flood churns only this cache, never the answers'
        self.compact = settings.denial == "compact"
        self.nxnames: dict[bytes, tuple[int, bytes, bytes]] = {}
        # and per zone what its negative answers share (srvd.answer.signed.zone_negative): a
        # quarter of cache_size, so that a flood over as many zones finds them (about 400
        # octets each: 100 MB at most by default)
        self.negatives: dict[bytes, Negative] = {}
        self.negatives_size = max(16, settings.cache_size // 4)
        # an NSEC's RRSIG fields up to Labels, by label count
        algorithm = self.key.algorithm
        self.nsec_fields = tuple(struct.pack("!HBB", NSEC, algorithm, n) for n in range(128))
        # zones whose negative answers' signatures are still to be made ahead, while the server
        # is idle (srvd.server.presign; 0: done, or not started)
        self.presign_pending = 0
        # the earliest expiration (RRSIG field, big-endian) of a signature sent since the metrics
        # last read it (srvd.ops.dnssec); compared as octets, the cost of one slice per answer
        self.soonest = NEVER

    # -- windows and serials

    def window(self, apex: bytes, now: float | None = None) -> Window:
        start = self.start(apex, now)
        window = self.windows.get(start)
        if window is None:  # one object a window start (a few hundred at most), not one a zone
            if len(self.windows) >= 4096:
                self.windows.clear()
            window = self.windows[start] = Window(
                start, start - self.backdate, start + self.lifetime
            )
        return window

    def start(self, apex: bytes, now: float | None = None) -> int:
        """When the zone's current window started (Unix time)."""
        refresh = self.refresh
        # staggered by the hour: zones renew spread over the refresh period, and the few distinct
        # serials they get (srvd.index.serials) keep their Zone objects shared
        offset = zlib.crc32(apex.lower()) % self.slots * 3600
        t = int(self.clock() if now is None else now)
        return t - (t - offset) % refresh

    def cached_rrsig(self, owner: bytes, rtype: int, apex: bytes) -> bytes | None:
        """The RRSIG record (without its owner) over an RRset whose signature is cached, with
        the RRset's TTL, or None (the full path signs it): the lean path's way to sign from
        ready pieces (srvd.answer.lean). Not for the key set (DNSKEY, CDS, CDNSKEY)."""
        start = self.start(apex)
        rdata = self.cache.get(owner + _CACHE_KEY.pack(rtype, start & 0xFFFFFFFF, self.key.tag))
        if rdata is None:
            return None
        self.stats.hits += 1
        if rdata[8:12] < self.soonest:
            self.soonest = rdata[8:12]
        return _RRSIG_CLASS + rdata[4:8] + len(rdata).to_bytes(2, "big") + rdata

    def serial(self, apex: bytes, serial: int) -> int:
        """The SOA serial of a zone whose content has ``serial``: moved by the window."""
        start = self.window(apex).start & 0xFFFFFFFF
        return start if 0 < ((start - serial) & 0xFFFFFFFF) < 0x80000000 else serial

    # -- NSEC chains

    def chain(self, table: Table) -> Chain:
        found = self.chains.get(id(table))
        if found is not None and found[0] is table:
            return found[1]
        chain = Chain(table)
        if len(self.chains) >= CHAINS:
            make_room(self.chains, CHAINS)
        self.chains[id(table)] = (table, chain)
        return chain

    # -- signatures

    def rrsig(
        self,
        owner: bytes,
        rtype: int,
        apex: bytes,
        window: Window,
        records: Callable[[], tuple[int, list[bytes]]],
        key: SigningKey | None = None,
    ) -> tuple[int, bytes]:
        """(TTL, RRSIG rdata) over the RRset ``rtype`` at ``owner`` (lower-case wire names);
        ``records`` gives its TTL and rdatas when a signature must be made. ``key``: another
        key than the signing key (the key set's extra signatures, ``rrsigs``)."""
        key = key or self.key
        # one bytes object: about 260 octets an entry with its value, 100 less than a tuple
        cache_key = owner + _CACHE_KEY.pack(rtype, window.start & 0xFFFFFFFF, key.tag)
        cache = self.cache
        found = cache.get(cache_key)
        stats = self.stats
        if found is not None:
            stats.hits += 1
            if found[8:12] < self.soonest:
                self.soonest = found[8:12]
            return struct.unpack_from("!I", found, 4)[0], found
        stats.misses += 1
        ttl, rdatas = records()
        rdata = sign_rrset(
            key, owner, rtype, ttl, rdatas, window.inception, window.expiration, apex
        )
        stats.signatures += 1
        if rdata[8:12] < self.soonest:
            self.soonest = rdata[8:12]
        if len(cache) >= self.size:
            stats.evictions += make_room(cache, self.size)
        cache[cache_key] = rdata
        return ttl, rdata

    def rrsigs(
        self,
        owner: bytes,
        rtype: int,
        apex: bytes,
        window: Window,
        records: Callable[[], tuple[int, list[bytes]]],
    ) -> list[tuple[int, bytes]]:
        """The RRSIGs an RRset gets: one by the signing key; the key set (DNSKEY, CDS, CDNSKEY)
        one by every key it holds, so that during a rollover a resolver that knows the DS of
        either key trusts the key set (docs/dnssec.md)."""
        if rtype not in KEY_SET or not self.published:
            return [self.rrsig(owner, rtype, apex, window, records)]
        return [self.rrsig(owner, rtype, apex, window, records, key) for key in self.keys]

    def keep_reply(self, key: bytes, window: Window, reply: ReplyParts) -> None:
        """Keep a DO=1 reply's pieces for the lean path until the zone's window moves."""
        replies = self.replies
        if len(replies) >= self.replies_size and key not in replies:
            make_room(replies, self.replies_size)
        replies[key] = (window.start + self.refresh, *reply)

    def keep_denial(
        self, key: DenialKey, window: Window, heads: tuple[bytes, bytes], pieces: tuple[bytes, ...]
    ) -> Denial:
        """Keep a DO=1 NXDOMAIN's pieces for the lean path until the zone's window moves."""
        denials = self.denials
        if len(denials) >= self.denials_size and key not in denials:
            make_room(denials, self.denials_size)
        denial = denials[key] = (window.start + self.refresh, heads, pieces)
        return denial

    def denial(self, table: Table, relative: bytes) -> tuple[int, int]:
        """Chain.nxdomain of the table's chain: the key of an NXDOMAIN (with the apex)."""
        return self.chain(table).nxdomain(relative, table.names)

    def keep_negative(self, apex: bytes, window: Window, soa: bytes, soa_rrsig: bytes) -> Negative:
        """Keep what the negative answers of the zone at ``apex`` share until its window moves
        (srvd.answer.signed.zone_negative)."""
        negative = Negative(window.start + self.refresh, window, soa, soa_rrsig)
        negatives = self.negatives
        if len(negatives) >= self.negatives_size and apex not in negatives:
            make_room(negatives, self.negatives_size)
        negatives[apex] = negative
        return negative

    def compact_nsec(self, name: bytes, apex: bytes, negative: Negative) -> bytes:
        """The NSEC that a nonexistent ``name`` (lower case, at most 253 octets) gets in a
        compact answer (RFC 9824 §3.1), then its RRSIG, both owned by a pointer to the
        question's name: the next name is ``\\000.name``, the bitmap RRSIG NSEC NXNAME.
        ``negative``: its zone's (keep_negative). One signature per name, kept in ``nxnames``
        until the zone's window moves."""
        until = negative.until
        found = self.nxnames.get(name)
        stats = self.stats
        if found is not None and found[0] == until:
            stats.hits += 1
            if found[2] < self.soonest:
                self.soonest = found[2]
            return found[1]
        labels = 0
        pos = 0
        while name[pos]:
            pos += name[pos] + 1
            labels += 1
        window = negative.window
        ttl = self.negative_ttl
        tail = _NSEC_TAIL.pack(
            ttl, window.expiration & 0xFFFFFFFF, window.inception & 0xFFFFFFFF, self.key.tag
        )
        fields = self.nsec_fields[labels] + tail + apex
        rdata = b"\x01\x00" + name + COMPACT_BITMAP
        head = _NSEC_HEAD.pack(NSEC, 1, ttl, len(rdata))
        sig = fields + self.key.sign(b"".join((fields, name, head, rdata)))
        stats.misses += 1
        stats.signatures += 1
        expiration = sig[8:12]
        if expiration < self.soonest:
            self.soonest = expiration
        records = b"".join(
            (_QUESTION, head, rdata, _QUESTION, _NSEC_HEAD.pack(RRSIG, 1, ttl, len(sig)), sig)
        )
        nxnames = self.nxnames
        if len(nxnames) >= self.denials_size and name not in nxnames:
            stats.evictions += make_room(nxnames, self.denials_size)
        nxnames[name] = (until, records, expiration)
        return records

    def take_soonest(self) -> int | None:
        """The earliest expiration of the signatures sent since the last call (None: none)."""
        soonest, self.soonest = self.soonest, NEVER
        return None if soonest == NEVER else int.from_bytes(soonest, "big")

    # -- the apex's DNSSEC records

    def apex_rdatas(self, rtype: int, apex: bytes) -> list[bytes]:
        """The rdatas of DNSKEY, CDNSKEY or CDS at ``apex``."""
        if rtype == CDS:
            return [ds_rdata(apex, dnskey) for dnskey in self.dnskeys]
        return list(self.dnskeys)

    def apex_records(self, rtype: int, apex: bytes, owner: bytes) -> bytes:
        """DNSKEY, CDNSKEY or CDS records at the apex, their owner ``owner`` (a pointer)."""
        head = owner + struct.pack("!HHI", rtype, 1, self.ttl)
        return b"".join(
            head + struct.pack("!H", len(rdata)) + rdata for rdata in self.apex_rdatas(rtype, apex)
        )

    def zone_rrsets(
        self, index: Index, apex: bytes, table: Table
    ) -> Iterator[tuple[bytes, int, int, list[bytes]]]:
        """Every RRset of a signed zone but its RRSIGs: (owner, type, TTL, rdatas), the owner a
        lower-case wire name; the SOA first, then the apex, then the names in canonical order."""
        apex = apex.lower()
        settings = index.settings
        zone = index.zones[apex]
        soa = index.soa(0, self.serial(apex, zone.serial), False)[2:]
        yield apex, SOA, settings.ttl, [soa[10:]]
        yield apex, NS, settings.ttl, [r for _, _, r in read_rdatas(index.ns_records)]
        for rtype in (DNSKEY, CDS, CDNSKEY):
            yield apex, rtype, self.ttl, self.apex_rdatas(rtype, apex)
        chain = self.chain(table)
        domain = apex[apex[0] + 1 :]
        for i, relative in enumerate(chain.owners):
            node = table.names.get(relative)
            for rtype, rrset in node.rrsets.items() if node is not None else ():
                found = read_rdatas(rrset.wire(_FIRST, domain))
                yield relative + apex, rtype, found[0][1], [r for _, _, r in found]
            yield relative + apex, NSEC, self.negative_ttl, [chain.rdata(i, apex)]

    def signed_zone(
        self, index: Index, apex: bytes, table: Table
    ) -> list[tuple[bytes, int, int, bytes]]:
        """Every record of a signed zone, RRSIGs after their RRsets: (owner, type, TTL, rdata)."""
        apex = apex.lower()
        window = self.window(apex)
        out: list[tuple[bytes, int, int, bytes]] = []
        for owner, rtype, ttl, rdatas in self.zone_rrsets(index, apex, table):
            out.extend((owner, rtype, ttl, rdata) for rdata in rdatas)
            for sig_ttl, sig in self.rrsigs(owner, rtype, apex, window, fixed(ttl, rdatas)):
                out.append((owner, RRSIG, sig_ttl, sig))
        return out


def make_room(cache: dict[Any, Any], bound: int) -> int:
    """Evict the oldest eighth of a first-in first-out cache that reached ``bound`` entries;
    returns how many went. In one pass: a dict deleted from its start one entry at a time scans
    every entry deleted before (until the dict is rebuilt), 20-30 µs an eviction at 25,000 to
    100,000 entries, where this costs well under one µs an entry."""
    oldest = list(islice(cache, max(1, bound // 8)))
    for key in oldest:
        del cache[key]
    return len(oldest)


def fixed(ttl: int, rdatas: list[bytes]) -> Callable[[], tuple[int, list[bytes]]]:
    """What ``ZoneSigner.rrsig`` takes, for an RRset at hand."""
    return lambda: (ttl, rdatas)


class _FirstOrder:
    def random(self) -> float:
        return 0.0


_FIRST = _FirstOrder()


def attach(
    index: Index, settings: DnssecSettings | None, clock: Callable[[], float] | None = None
) -> Index:
    """Give an index its signer (or none, unsigned); returns the index."""
    if settings is None:
        index.dnssec = None
    else:
        index.dnssec = ZoneSigner(settings, index.settings, clock or time.time)
    return index
