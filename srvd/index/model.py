"""The immutable Index of wire pieces that every answer is made from.

Shape (architecture.md, property 4): every served zone is one dict entry, apex wire name → Zone.
A Zone points at a Table that every domain on the same profile shares: the relative owner names
(wire labels below the apex) → Node → RRsets, each RRset kept as ready answer records whose owner
is the compression pointer to the question (0xC00C). Records whose target contains ``{domain}``
are kept as templates and completed from the query's own name, so templated profiles are shared
as well. Memory thus grows with the number of domains by one dict entry and one key per zone.

An Index is never changed after it is built; a reload builds a new one and swaps it whole.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from srvd.config import ZoneSettings
from srvd.wire.discovery import SRV, TEMPLATE, TXT
from srvd.wire.names import label_wire, to_wire, wire_to_text
from srvd.wire.ordering import RandomSource, weighted_order

SOA = 6
NS = 2
CLASS_IN = 1
ANSWER_OWNER = b"\xc0\x0c"  # compression pointer to the question name
_ANSWER_HEAD = struct.Struct("!HHHHH")


def txt_rdata(text: str) -> bytes:
    """One TXT record's RDATA: the text split into character-strings of at most 255 octets."""
    raw = text.encode("utf-8")
    if not raw:
        return b"\x00"
    return b"".join(
        bytes([len(c)]) + c for c in (raw[i : i + 255] for i in range(0, len(raw), 255))
    )


class Template:
    """A record whose RDATA ends in (SRV) or contains (TXT) the customer domain."""

    __slots__ = ("fixed", "head", "rtype")

    def __init__(self, head: bytes, rtype: int, fixed: bytes) -> None:
        self.head = head  # owner pointer, type, class, TTL
        self.rtype = rtype
        # SRV: priority, weight, port and the labels before the domain; TXT: the text
        self.fixed = fixed

    def render(self, domain: bytes) -> bytes:
        """The record for one customer domain, given in wire form."""
        if self.rtype == SRV:
            rdata = self.fixed + domain
        else:
            text = self.fixed.replace(TEMPLATE.encode(), wire_to_text(domain).encode())
            rdata = txt_rdata(text.decode())
        return self.head + struct.pack("!H", len(rdata)) + rdata


PACC_TXT_PREFIX = "v=UAAC1; a=sha256; d="  # draft-ietf-mailmaint-pacc: the _ua-auto-config TXT


def pacc_txt(document: bytes) -> str:
    """The ``_ua-auto-config`` TXT text that vouches for a PACC document: its SHA-256, base64."""
    return PACC_TXT_PREFIX + base64.b64encode(hashlib.sha256(document).digest()).decode()


class DigestTemplate(Template):
    """A TXT record vouching for a document that names the customer domain: ``fixed`` is the
    document with ``{domain}`` in it (srvd.http.documents), completed for the domain and hashed
    when the record is made. The domain is lower-cased first: a query's letter case (0x20) never
    changes the digest, and the HTTP side completes documents with the lower-case domain."""

    __slots__ = ()

    def render(self, domain: bytes) -> bytes:
        document = self.fixed.replace(TEMPLATE.encode(), wire_to_text(domain).lower().encode())
        rdata = txt_rdata(pacc_txt(document))
        return self.head + struct.pack("!H", len(rdata)) + rdata


Piece = bytes | Template


class RRset:
    """The records of one type at one name, ready to append to an answer."""

    __slots__ = (
        "count",
        "groups",
        "heads",
        "ordered",
        "pair",
        "rtype",
        "size",
        "static",
        "templated",
    )

    def __init__(self, rtype: int, groups: list[tuple[list[Piece], list[int]]]) -> None:
        self.rtype = rtype
        self.count = sum(len(items) for items, _ in groups)
        self.templated = any(not isinstance(p, bytes) for items, _ in groups for p in items)
        # only SRV is ordered per answer (RFC 2782); other RRsets keep their configured order
        self.ordered = rtype == SRV and any(len(items) > 1 for items, _ in groups)
        self.groups = tuple(
            (tuple(items), tuple(weights), sum(weights)) for items, weights in groups
        )
        # the octets of the records in any order; templated ones depend on the domain
        self.size: int | None = None
        if not self.templated:
            self.size = sum(len(p) for items, _ in groups for p in items if isinstance(p, bytes))
        self.static: bytes | None = None
        if not self.ordered and not self.templated:
            self.static = b"".join(p for items, _ in groups for p in items)  # type: ignore[misc]
        self.pair = _pair(self.groups) if self.ordered else None
        # the header of an answer with these records, after the ID (QR and AA set, QDCOUNT 1):
        # heads[RD << 1 | ARCOUNT] for RD and ARCOUNT (the OPT) 0 or 1
        self.heads = tuple(
            _ANSWER_HEAD.pack(0x8400 | rd << 8, 1, self.count, 0, additional)
            for rd in (0, 1)
            for additional in (0, 1)
        )

    def pieces(self, rng: RandomSource) -> list[Piece]:
        """The records in this answer's order (RFC 2782 for SRV, drawn now)."""
        out: list[Piece] = []
        for items, weights, total in self.groups:
            if len(items) == 1 or self.rtype != SRV:
                out.extend(items)
            else:
                out.extend(weighted_order(items, weights, total, rng))
        return out

    def wire(self, rng: RandomSource, domain: bytes) -> bytes:
        """The answer records; ``domain`` is the customer domain's wire name (for templates)."""
        if self.static is not None:
            return self.static
        if self.pair is not None:  # weighted_order's one draw for two weighted records
            first, second, weight, total = self.pair
            return first if rng.random() * total < weight else second
        pieces = self.pieces(rng)
        if self.templated:
            return b"".join(p if isinstance(p, bytes) else p.render(domain) for p in pieces)
        return b"".join(pieces)  # type: ignore[arg-type]


# Both orders of an RRset whose only draw is between two weighted records, ready to send: (the
# records with the first one first, with the second one first, the first's weight, the group's
# total weight).
Pair = tuple[bytes, bytes, int, int]


def _pair(groups: tuple[tuple[tuple[Piece, ...], tuple[int, ...], int], ...]) -> Pair | None:
    """The two orders of records whose one drawn group holds two records of nonzero weight.

    ``weighted_order`` puts the first of two such records first when a uniform integer in
    [0, total) falls below its weight; ``random() * total < weight`` is the same test on the
    same single draw, so the orders and the random sequence are those of ``pieces``."""
    drawn = [g for g, (items, _, _) in enumerate(groups) if len(items) > 1]
    if len(drawn) != 1:
        return None
    items, weights, total = groups[drawn[0]]
    if len(items) != 2 or not all(weights):
        return None
    pieces = [p for group in groups for p in group[0]]
    if not all(isinstance(p, bytes) for p in pieces):
        return None
    at = sum(len(group[0]) for group in groups[: drawn[0]])
    before, (first, second), after = pieces[:at], pieces[at : at + 2], pieces[at + 2 :]
    return (
        b"".join([*before, first, second, *after]),  # type: ignore[list-item]
        b"".join([*before, second, first, *after]),  # type: ignore[list-item]
        weights[0],
        total,
    )


class Node:
    """One owner name: its RRsets by type, and the RRset an ANY query gets (RFC 8482)."""

    __slots__ = ("any", "rrsets")

    def __init__(self, rrsets: dict[int, RRset]) -> None:
        self.rrsets = rrsets
        self.any = next(iter(rrsets.values()), None)


class Table:
    """The names of one zone below its apex, shared by every domain with the same content."""

    __slots__ = ("apex", "digest", "names", "records")

    def __init__(self, names: dict[bytes, Node], digest: bytes, records: int) -> None:
        self.names = names  # relative wire labels (no root) → Node; b"" is the apex
        self.apex: Node | None = names.get(b"")
        self.digest = digest  # content digest, with the zone settings: decides the serial
        self.records = records  # count, without SOA and NS


class Zone:
    """One served zone: its table and its SOA serial."""

    __slots__ = ("serial", "table")

    def __init__(self, table: Table, serial: int) -> None:
        self.table = table
        self.serial = serial


@dataclass(frozen=True, slots=True)
class IndexStats:
    domains: int
    zones: int
    records: int
    profiles: int


class Signing(Protocol):
    """What the index and the lean path need of its signer (srvd.index.dnssec.ZoneSigner)."""

    @property
    def replies(self) -> Mapping[bytes, tuple[Any, ...]]:
        """DO=1 replies in pieces, by lower-case question name and type (keep_reply)."""

    @property
    def denials(self) -> Mapping[tuple[bytes, int, int], tuple[Any, ...]]:
        """NXDOMAIN replies in pieces, in a cache of their own, by the apex and the NSEC chain's
        entries that prove them (keep_denial, denial)."""

    def denial(self, table: Table, relative: bytes) -> tuple[int, int]: ...

    @property
    def compact(self) -> bool:
        """Whether a name that does not exist gets a compact answer (RFC 9824)."""

    @property
    def clock(self) -> Callable[[], float]: ...

    def serial(self, apex: bytes, serial: int) -> int: ...

    def cached_rrsig(self, owner: bytes, rtype: int, apex: bytes) -> bytes | None: ...


class Index:
    """Everything an answer needs, immutable once built."""

    def __init__(self, settings: ZoneSettings, zones: dict[bytes, Zone], stats: IndexStats) -> None:
        self.settings = settings
        self.zones = zones
        self.stats = stats
        self.catalog: Catalog | None = None  # the RFC 9432 catalog zone, when configured
        # the profile of each _tcp table, by digest (srvd.index.build.TableCache.profile_of):
        # which http.profiles entry the discovery documents of its domains take
        self.table_profiles: Mapping[bytes, str] = {}
        # the signer of every zone (srvd.index.dnssec), when DNSSEC is configured
        self.dnssec: Signing | None = None
        mname = to_wire(settings.nameservers[0])
        rname = label_wire(settings.hostmaster_local.encode()) + to_wire(settings.hostmaster_domain)
        names = mname + rname
        rdlen = len(names) + 20
        self.soa_answer_head = struct.pack("!HHIH", SOA, CLASS_IN, settings.ttl, rdlen) + names
        self.soa_negative_head = (
            struct.pack("!HHIH", SOA, CLASS_IN, settings.negative_ttl, rdlen) + names
        )
        self.soa_tail = struct.pack(
            "!IIII", settings.refresh, settings.retry, settings.expire, settings.minimum
        )
        ns = b""
        for server in settings.nameservers:
            target = to_wire(server)
            ns += (
                ANSWER_OWNER
                + struct.pack("!HHIH", NS, CLASS_IN, settings.ttl, len(target))
                + target
            )
        self.ns_records = ns
        self.ns_count = len(settings.nameservers)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (the workers' snapshot, srvd.server.workers) without its signer: the key and
        the caches stay in their process; the reader attaches a signer of its own from the same
        settings (srvd.index.dnssec.attach), which gives the same windows, serials and bytes."""
        state = self.__dict__.copy()
        state["dnssec"] = None
        return state

    def serial(self, apex: bytes, zone: Zone) -> int:
        """The SOA serial a zone is served with: its content's, moved by the signatures'
        validity window when the zones are signed (srvd.index.dnssec)."""
        signing = self.dnssec
        return zone.serial if signing is None else signing.serial(apex, zone.serial)

    def soa(self, pointer: int, serial: int, negative: bool) -> bytes:
        """The zone's SOA record, its owner a compression pointer into the question."""
        head = self.soa_negative_head if negative else self.soa_answer_head
        return (
            struct.pack("!H", 0xC000 | pointer) + head + struct.pack("!I", serial) + self.soa_tail
        )


@dataclass(frozen=True, slots=True)
class ZoneDelta:
    """The zones (apex wire names) a reload added, removed, and gave a new serial."""

    added: tuple[bytes, ...]
    removed: tuple[bytes, ...]
    changed: tuple[bytes, ...]


# ---------------------------------------------------------------------------------------------
# The catalog zone (RFC 9432, version 2): its records; srvd.index.catalog makes its versions

PTR = 12
CATALOG_VERSION = b"2"
_RR = struct.Struct("!HHIH")
_INVALID = b"\x07invalid\x00"
ZONES_LABEL = b"\x05zones"
VERSION_LABEL = b"\x07version"


def catalog_key(index: Index) -> str:
    """What a catalog's records are made from besides its members: the zone settings (the SOA,
    the TTLs, the DNSSEC keys' tags) and, signed, the signatures' validity parameters. A version
    whose key differs from the previous one's keeps no IXFR history (signed: the deltas' old
    signatures could not be made again)."""
    settings = getattr(index.dnssec, "settings", None)
    if settings is None:
        return repr(index.settings)
    window = (settings.lifetime, settings.refresh, settings.backdate)
    return f"{index.settings!r} signed {window}"


def member_label(apex: bytes) -> bytes:
    """The member's unique ID (RFC 9432 §4.4) as a wire label: a hash of its name."""
    return b"\x14" + hashlib.blake2b(apex.lower(), digest_size=10).hexdigest().encode()


@dataclass(frozen=True, slots=True)
class Delta:
    """One change of the member set: from serial ``old`` to ``new``."""

    old: int
    new: int
    removed: tuple[bytes, ...]
    added: tuple[bytes, ...]


class Catalog:
    """The catalog of one index; ``zones`` is that index's zones mapping (the member set)."""

    __slots__ = (
        "apex",
        "history",
        "serial",
        "settings_key",
        "signing",
        "soa_answer",
        "soa_negative",
        "ttl",
        "zones",
    )

    def __init__(
        self,
        apex: bytes,
        serial: int,
        index: Index,
        history: tuple[Delta, ...] = (),
    ) -> None:
        self.apex = apex  # lowercase wire name
        self.serial = serial
        self.zones: Mapping[bytes, object] = index.zones  # the member set
        self.ttl = index.settings.ttl
        self.settings_key = catalog_key(index)
        self.history = history
        # signed (srvd.index.catalog_dnssec): the members in canonical order and the apex's
        # signatures, made on the first signed transfer or answer that needs them
        self.signing: Any = None
        # the SOA records without their owner (no reference to the index)
        self.soa_answer = index.soa(0, serial, False)[2:]
        self.soa_negative = index.soa(0, serial, True)[2:]

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (the workers' snapshot) without ``signing``: each process makes its own."""
        state = {name: getattr(self, name) for name in self.__slots__}
        state["signing"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    @property
    def members(self) -> int:
        return len(self.zones)

    # -- records, their owners relative to the question (the apex, at offset 12)

    def soa(self, serial: int | None = None) -> bytes:
        """The apex SOA (with another serial: the SOA of an older version, for IXFR)."""
        if serial is None or serial == self.serial:
            return b"\xc0\x0c" + self.soa_answer
        head, tail = self.soa_answer[:-20], self.soa_answer[-16:]
        return b"\xc0\x0c" + head + struct.pack("!I", serial) + tail

    def ns(self) -> bytes:
        return b"\xc0\x0c" + _RR.pack(NS, CLASS_IN, self.ttl, len(_INVALID)) + _INVALID

    def version(self) -> bytes:
        rdata = bytes([len(CATALOG_VERSION)]) + CATALOG_VERSION
        return VERSION_LABEL + b"\xc0\x0c" + _RR.pack(TXT, CLASS_IN, self.ttl, len(rdata)) + rdata

    def member(self, apex: bytes) -> bytes:
        return (
            member_label(apex)
            + ZONES_LABEL
            + b"\xc0\x0c"
            + _RR.pack(PTR, CLASS_IN, self.ttl, len(apex))
            + apex
        )

    def body(self) -> Iterator[bytes]:
        """Every record but the SOA, member records made as they are taken."""
        yield self.ns()
        yield self.version()
        member = self.member
        for apex in list(self.zones):  # a snapshot: the dict is emptied after the next reload
            yield member(apex)

    def chain(self, client: int) -> list[Delta] | None:
        """The deltas from serial ``client`` to the current one, or None if not kept."""
        for start, delta in enumerate(self.history):
            if delta.old == client:
                chain = list(self.history[start:])
                if chain[-1].new == self.serial:
                    return chain
        return None
