"""The catalog zone signed: its NSEC chain, its signatures, its AXFR and IXFR (docs/dnssec.md).

When both ``catalog:`` and ``dnssec:`` are configured the catalog (srvd.index.catalog) is a signed
zone like the others: the same key, the same validity windows (its own, staggered by its apex),
its SOA serial moved by its window (``ZoneSigner.serial``), DNSKEY, CDS and CDNSKEY at its apex,
and a plain NSEC chain in canonical order (RFC 4034 §6.1)::

    catalog.            SOA NS RRSIG NSEC DNSKEY CDS CDNSKEY    NSEC → version.catalog.
    version.catalog.    TXT RRSIG NSEC                          NSEC → <first id>.zones.catalog.
    <id>.zones.catalog. PTR RRSIG NSEC (each member, by ID)     NSEC → the next member, the last
                                                                       back to catalog.

``zones.catalog.`` is an empty non-terminal: no NSEC of its own.

Every member is ``<id>.zones.<apex>`` and every ID has 20 hex digits, so the members' canonical
order is their IDs' order, which is the order of the hash octets the IDs spell. ``MemberOrder``
keeps it once per catalog version, made on the first signed transfer (or the first answer that
needs a member's name): the 10 hash octets of every member in one bytes object, and the member
apexes in a list (references to the index's own keys), about 18 octets a member plus the list.
It is made in steps of ``STEP`` members (hashed into 256 buckets by their first octet, then each
bucket sorted), so that a transfer that needs it never holds the reactor for long: the record
streams below yield None while it is being made (the transfer calls again on the next turn).

Signatures: the members' PTR and NSEC records are signed as they are streamed, one message at a
time, never cached (a transfer of a million members would otherwise evict every answer's
signature from ``ZoneSigner.cache``); the apex's RRsets (SOA, NS, the key set, the apex's and
``version``'s NSEC, ``version``'s TXT, the last member's NSEC) are kept in a small cache of
their own (``APEX_SIGNATURES`` entries, by content, window and key). Signatures are
deterministic (RFC 6979, Ed25519), so the same RRset in the same window gives the same octets:
an IXFR remakes the signatures a secondary holds in order to delete them.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator

from srvd.index.dnssec import KEY_SET, Window, ZoneSigner
from srvd.index.model import (
    CATALOG_VERSION,
    NS,
    PTR,
    SOA,
    VERSION_LABEL,
    ZONES_LABEL,
    Catalog,
    Delta,
)
from srvd.wire.discovery import TXT
from srvd.wire.dnssec import (
    CDNSKEY,
    CDS,
    DNSKEY,
    NSEC,
    RRSIG,
    canonical_rrset,
    rr,
    sign_rrset,
    type_bitmap,
)

DIGEST = 10  # octets of a member's ID hash (model.member_label: its 20 hex digits)
STEP = 16_384  # members hashed, or sorted, per step of MemberOrder
APEX_SIGNATURES = 64  # signatures of the apex's RRsets kept per catalog version, at most
PREPARE_EVERY = 2_048  # IXFR: changed members looked at between two yields of the reactor

NS_RDATA = b"\x07invalid\x00"
TXT_RDATA = bytes([len(CATALOG_VERSION)]) + CATALOG_VERSION
APEX_BITMAP = type_bitmap((SOA, NS, RRSIG, NSEC, DNSKEY, CDS, CDNSKEY))
VERSION_BITMAP = type_bitmap((TXT, RRSIG, NSEC))
MEMBER_BITMAP = type_bitmap((PTR, RRSIG, NSEC))
VERSION_KEY = b""  # the chain's keys: "version" sorts before every member's hash octets
_WINDOW_KEY = struct.Struct("!IH")
_PLACE = struct.Struct("!I")

# one record: (owner, type, TTL, rdata), the owner a lower-case wire name
Record = tuple[bytes, int, int, bytes]
# one RRset: (owner, type, TTL, rdatas)
RRsetRows = tuple[bytes, int, int, list[bytes]]


def member_digest(apex: bytes) -> bytes:
    """The hash octets of a member's ID (``member_label`` spells them in hex)."""
    return hashlib.blake2b(apex.lower(), digest_size=DIGEST).digest()


class MemberOrder:
    """The members of one catalog version in canonical order (see the module's doc)."""

    __slots__ = ("_bucket", "_buckets", "_chunks", "_hashed", "_todo", "apexes", "digests")

    def __init__(self, members: Iterable[bytes]) -> None:
        self._todo: list[bytes] | None = list(members)  # a snapshot (the index's dict goes)
        self._hashed = 0
        # 256 buckets by the first hash octet, each entry the hash octets and the member's
        # place in the snapshot (4 octets): one bytes object a member, which the garbage
        # collector never walks, about 56 octets with its place in the bucket
        self._buckets: list[list[bytes]] = [[] for _ in range(256)]
        self._bucket = -1  # the next bucket to sort; -1: still hashing
        self._chunks: list[bytes] = []
        self.digests = b""  # every member's hash octets, DIGEST each, in canonical order
        self.apexes: list[bytes] = []  # their apexes in the same order

    @property
    def ready(self) -> bool:
        return self._bucket >= 256

    def step(self, budget: int = STEP) -> bool:
        """Some more of the work (about ``budget`` members); whether the order is ready."""
        todo = self._todo
        if todo is None:
            return True
        if self._bucket < 0:  # hash a slice into the buckets
            buckets = self._buckets
            blake2b = hashlib.blake2b
            place = _PLACE.pack
            start = self._hashed
            end = min(start + budget, len(todo))
            for i in range(start, end):
                digest = blake2b(todo[i].lower(), digest_size=DIGEST).digest()
                buckets[digest[0]].append(digest + place(i))
            self._hashed = end
            if end == len(todo):
                self._bucket = 0
            return False
        done = 0
        while self._bucket < 256 and done < budget:  # sort whole buckets, in order
            bucket = self._buckets[self._bucket]
            bucket.sort()
            self._buckets[self._bucket] = []
            self._chunks.append(b"".join([entry[:DIGEST] for entry in bucket]))
            self.apexes.extend([todo[_PLACE.unpack_from(entry, DIGEST)[0]] for entry in bucket])
            self._bucket += 1
            done += len(bucket) + 1
        if self._bucket >= 256:
            self.digests = b"".join(self._chunks)
            self._chunks = []
            self._buckets = []
            self._todo = None
        return self.ready

    def finish(self) -> None:
        """Make the rest at once (an answer that needs it, or an export)."""
        while not self.step():
            pass

    def __len__(self) -> int:
        return len(self.apexes)

    def digest(self, i: int) -> bytes:
        return self.digests[i * DIGEST : (i + 1) * DIGEST]

    def position(self, digest: bytes) -> int:
        """Where ``digest`` is, or would go (the first member not before it)."""
        data = self.digests
        low, high = 0, len(self.apexes)
        while low < high:
            middle = (low + high) // 2
            if data[middle * DIGEST : (middle + 1) * DIGEST] < digest:
                low = middle + 1
            else:
                high = middle
        return low

    def memory(self) -> int:
        """Octets it holds once made (the digests and the list, not the apexes it shares)."""
        return sys.getsizeof(self.digests) + sys.getsizeof(self.apexes)


class CatalogSigning:
    """What a signed catalog version keeps (``Catalog.signing``): its members in canonical order
    (made when first needed) and the signatures of its apex's RRsets."""

    __slots__ = ("members", "signatures")

    def __init__(self) -> None:
        self.members: MemberOrder | None = None
        self.signatures: dict[bytes, bytes] = {}


def signing_of(catalog: Catalog) -> CatalogSigning:
    state = catalog.signing
    if not isinstance(state, CatalogSigning):
        state = catalog.signing = CatalogSigning()
    return state


def _newer(a: int, b: int) -> bool:
    """a > b in RFC 1982 serial arithmetic."""
    return a != b and ((a - b) & 0xFFFFFFFF) < 0x80000000


class SignedCatalog:
    """One catalog version as signed now: its window and served serial, and the records of its
    transfers, exports and answers."""

    def __init__(self, catalog: Catalog, signer: ZoneSigner) -> None:
        self.catalog = catalog
        self.signer = signer
        self.apex = apex = catalog.apex
        self.window: Window = signer.window(apex)
        self.serial = signer.serial(apex, catalog.serial)
        self.state = signing_of(catalog)
        self.ttl = catalog.ttl
        self.nsec_ttl = signer.negative_ttl  # RFC 9077: min(SOA minimum, SOA TTL)
        self.version_owner = VERSION_LABEL + apex
        self.zones_owner = ZONES_LABEL + apex

    @property
    def order(self) -> MemberOrder:
        """The members in canonical order (started now if no one needed it before: the
        catalog's member set taken as it is, the hashing and sorting left to ``step``)."""
        state = self.state
        if state.members is None:
            state.members = MemberOrder(self.catalog.zones)
        return state.members

    # -- the pieces of the zone

    def soa_rdata(self, serial: int | None = None) -> bytes:
        return self.catalog.soa(self.serial if serial is None else serial)[12:]

    def owner(self, key: bytes) -> bytes:
        """The owner name of a chain key: ``version``, or a member by its hash octets."""
        if key == VERSION_KEY:
            return self.version_owner
        return b"\x14" + key.hex().encode() + self.zones_owner

    def following(self, i: int) -> bytes:
        """The next name after member ``i`` of the order (``-1``: after ``version``)."""
        if i + 1 < len(self.order):
            return self.owner(self.order.digest(i + 1))
        return self.apex

    def nsec(self, key: bytes, following: bytes) -> RRsetRows:
        bitmap = VERSION_BITMAP if key == VERSION_KEY else MEMBER_BITMAP
        return self.owner(key), NSEC, self.nsec_ttl, [following + bitmap]

    def apex_nsec(self) -> RRsetRows:
        return self.apex, NSEC, self.nsec_ttl, [self.version_owner + APEX_BITMAP]

    def version_nsec(self) -> RRsetRows:
        """``version``'s NSEC, to the first member (the member order must be ready)."""
        return self.nsec(VERSION_KEY, self.following(-1))

    def last_nsec(self) -> RRsetRows:
        """The last NSEC of the chain, back to the apex (``version``'s with no members)."""
        count = len(self.order)
        if not count:
            return self.version_nsec()
        return self.nsec(self.order.digest(count - 1), self.apex)

    def member(self, i: int) -> tuple[RRsetRows, RRsetRows]:
        """Member ``i``'s PTR and NSEC."""
        digest = self.order.digest(i)
        owner = self.owner(digest)
        ptr = owner, PTR, self.ttl, [self.order.apexes[i]]
        return ptr, (owner, NSEC, self.nsec_ttl, [self.following(i) + MEMBER_BITMAP])

    def apex_rrsets(self) -> list[RRsetRows]:
        """SOA, NS, DNSKEY, CDS, CDNSKEY, the apex's NSEC and ``version``'s TXT: the RRsets that
        do not depend on the members."""
        apex, ttl, signer = self.apex, self.ttl, self.signer
        rows: list[RRsetRows] = [
            (apex, SOA, ttl, [self.soa_rdata()]),
            (apex, NS, ttl, [NS_RDATA]),
        ]
        rows += [(apex, t, signer.ttl, signer.apex_rdatas(t, apex)) for t in (DNSKEY, CDS, CDNSKEY)]
        rows.append(self.apex_nsec())
        rows.append((self.version_owner, TXT, ttl, [TXT_RDATA]))
        return rows

    # -- signatures

    def sign(self, rrset: RRsetRows, keep: bool) -> list[bytes]:
        """The RRSIG rdatas over an RRset: the signing key's; the key set's by every key (as
        ``ZoneSigner.rrsigs``). ``keep``: an apex RRset, kept in the catalog's own small cache;
        members' RRsets are signed anew each time."""
        owner, rtype, ttl, rdatas = rrset
        signer, window = self.signer, self.window
        keys = signer.keys if rtype in KEY_SET else (signer.key,)
        cache = self.state.signatures
        out = []
        for key in keys:
            cache_key = b""
            if keep:
                cache_key = _WINDOW_KEY.pack(window.start & 0xFFFFFFFF, key.tag) + canonical_rrset(
                    owner, rtype, ttl, rdatas
                )
                found = cache.get(cache_key)
                if found is not None:
                    out.append(found)
                    continue
            rdata = sign_rrset(
                key, owner, rtype, ttl, rdatas, window.inception, window.expiration, self.apex
            )
            signer.stats.signatures += 1
            if keep:
                if len(cache) >= APEX_SIGNATURES:
                    del cache[next(iter(cache))]
                cache[cache_key] = rdata
            out.append(rdata)
        if out and out[0][8:12] < signer.soonest:  # the metrics' earliest expiry
            signer.soonest = out[0][8:12]
        return out

    def signed(self, rrset: RRsetRows, keep: bool) -> Iterator[Record]:
        """An RRset's records, then its RRSIGs."""
        owner, rtype, ttl, rdatas = rrset
        for rdata in rdatas:
            yield owner, rtype, ttl, rdata
        for signature in self.sign(rrset, keep):
            yield owner, RRSIG, ttl, signature

    # -- transfers

    def prepare(self) -> Iterator[None]:
        """Make the member order a step at a time: None after each step."""
        order = self.order
        while not order.ready:
            order.step()
            yield None

    def zone(self) -> Iterator[Record | None]:
        """Every record of the signed catalog, SOA first, RRSIGs after their RRsets (no closing
        SOA); None while the member order is being made. Members are signed as they are taken."""
        yield from self.prepare()
        for rrset in self.apex_rrsets():  # version's TXT last, then its NSEC
            yield from self.signed(rrset, True)
        yield from self.signed(self.version_nsec(), True)
        last = len(self.order) - 1
        for i in range(last + 1):
            ptr, nsec = self.member(i)
            yield from self.signed(ptr, False)
            yield from self.signed(nsec, i == last)

    def axfr(self) -> Iterator[Record | None]:
        """The AXFR: the zone, then its SOA again (RFC 5936)."""
        yield from self.zone()
        yield self.apex, SOA, self.ttl, self.soa_rdata()

    def client_version(self, client: int) -> int | None:
        """The content serial of the catalog version a client with served serial ``client``
        holds, if this window served it and the deltas since are kept; else None (the client
        gets the zone in AXFR form, RFC 1995 §4).

        A version was served in this window when it was the current one at some time since the
        window started: it is the last, or its successor's serial is newer than the window's
        start (a version made in this window has a serial newer than the one served before it,
        next_catalog, hence newer than the window's start). In this window, those versions are
        served with distinct serials, and their signatures are the ones made now."""
        history = self.catalog.history
        if not history or history[-1].new != self.catalog.serial:
            return None
        start = self.window.start & 0xFFFFFFFF
        serials = [history[0].old, *(delta.new for delta in history)]
        for i, serial in enumerate(serials[:-1]):
            if _newer(serials[i + 1], start) and self.signer.serial(self.apex, serial) == client:
                return serial
        return None

    def ixfr(self, old: int) -> Iterator[Record | None]:
        """The IXFR from the version of content serial ``old`` (``client_version``), the deltas
        condensed into one (RFC 1995 §6): the new SOA; the old SOA, its RRSIG, the records gone
        (the removed members' PTR and NSEC, the NSECs whose next name changed, as they were),
        with their RRSIGs; the new SOA, its RRSIG, the records come, with their RRSIGs; the new
        SOA. None while the member order is being made or the delta worked out."""
        chain = self.catalog.chain(old)
        assert chain is not None
        removed, added = net_change(chain)
        yield from self.prepare()
        gone: dict[bytes, bytes] = {}  # hash octets → apex
        came: dict[bytes, bytes] = {}
        for n, apex in enumerate(removed):
            gone[member_digest(apex)] = apex
            if n % PREPARE_EVERY == PREPARE_EVERY - 1:
                yield None
        for n, apex in enumerate(added):
            came[member_digest(apex)] = apex
            if n % PREPARE_EVERY == PREPARE_EVERY - 1:
                yield None
        delta = _Delta(self.order, gone, came)
        changed: set[bytes] = set()  # members kept (and version) whose next name changed
        for n, key in enumerate(came):
            before = delta.new_before(key)
            if before not in came:
                changed.add(before)
            if n % PREPARE_EVERY == PREPARE_EVERY - 1:
                yield None
        for n, key in enumerate(gone):
            before = delta.old_before(key)
            if before not in gone:
                changed.add(before)
            if n % PREPARE_EVERY == PREPARE_EVERY - 1:
                yield None
        apex, ttl = self.apex, self.ttl
        old_soa = self.soa_rdata(self.signer.serial(apex, old))
        new_soa = self.soa_rdata()
        yield apex, SOA, ttl, new_soa
        yield from self.signed((apex, SOA, ttl, [old_soa]), True)
        for key in sorted(gone):
            yield from self.signed((self.owner(key), PTR, ttl, [gone[key]]), False)
            yield from self.signed(self.nsec(key, self._name(delta.old_after(key))), False)
        for key in sorted(changed):
            yield from self.signed(self.nsec(key, self._name(delta.old_after(key))), False)
        yield from self.signed((apex, SOA, ttl, [new_soa]), True)
        for key in sorted(came):
            yield from self.signed((self.owner(key), PTR, ttl, [came[key]]), False)
            yield from self.signed(self.nsec(key, self._name(delta.new_after(key))), False)
        for key in sorted(changed):
            yield from self.signed(self.nsec(key, self._name(delta.new_after(key))), False)
        yield apex, SOA, ttl, new_soa

    def _name(self, key: bytes | None) -> bytes:
        return self.apex if key is None else self.owner(key)


def net_change(chain: list[Delta]) -> tuple[list[bytes], list[bytes]]:
    """The members removed and added by a chain of deltas, as one change (RFC 1995 §6)."""
    removed: dict[bytes, None] = {}
    added: dict[bytes, None] = {}
    for delta in chain:
        for apex in delta.removed:
            if apex in added:
                del added[apex]
            else:
                removed[apex] = None
        for apex in delta.added:
            if apex in removed:
                del removed[apex]
            else:
                added[apex] = None
    return list(removed), list(added)


class _Delta:
    """The NSEC chain's neighbours before and after a change, from the new member order and
    the members removed and added (by hash octets). Keys: VERSION_KEY or hash octets; None
    after the last (the apex)."""

    def __init__(
        self, order: MemberOrder, gone: dict[bytes, bytes], came: dict[bytes, bytes]
    ) -> None:
        self.order = order
        self.came = came
        self.gone = sorted(gone)

    def _at(self, i: int) -> bytes | None:
        return self.order.digest(i) if i < len(self.order) else None

    def new_after(self, key: bytes) -> bytes | None:
        """The next key after ``key`` (version or a member now) in the new chain."""
        if key == VERSION_KEY:
            return self._at(0)
        return self._at(self.order.position(key) + 1)

    def new_before(self, key: bytes) -> bytes:
        """The key before member ``key`` in the new chain."""
        i = self.order.position(key)
        return self.order.digest(i - 1) if i > 0 else VERSION_KEY

    def old_after(self, key: bytes) -> bytes | None:
        """The next key after ``key`` (version or a member then) in the old chain: the first
        later member now that was not added, or the first later member removed."""
        order, came = self.order, self.came
        i = 0 if key == VERSION_KEY else order.position(key)
        if i < len(order) and order.digest(i) == key:
            i += 1
        while i < len(order) and order.digest(i) in came:
            i += 1
        kept = self._at(i)
        j = bisect_right(self.gone, key)
        gone = self.gone[j] if j < len(self.gone) else None
        if kept is None or (gone is not None and gone < kept):
            return gone
        return kept

    def old_before(self, key: bytes) -> bytes:
        """The key before removed member ``key`` in the old chain."""
        order, came = self.order, self.came
        i = order.position(key) - 1
        while i >= 0 and order.digest(i) in came:
            i -= 1
        kept = order.digest(i) if i >= 0 else VERSION_KEY
        j = bisect_left(self.gone, key) - 1
        gone = self.gone[j] if j >= 0 else VERSION_KEY
        return max(kept, gone)


def compressed(records: Iterable[Record | None], apex: bytes) -> Iterator[bytes | None]:
    """Records in wire form, owners compressed to the question (the apex, at offset 12)."""
    cut = len(apex)
    for record in records:
        if record is None:
            yield None
            continue
        owner, rtype, ttl, rdata = record
        yield owner[: len(owner) - cut] + b"\xc0\x0c" + rr(b"", rtype, ttl, rdata)
