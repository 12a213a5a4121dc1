"""Validated config → immutable Index of wire pieces.

Shape (architecture.md, property 4): every served zone is one dict entry, apex wire name → Zone.
A Zone points at a Table that every domain on the same profile shares: the relative owner names
(wire labels below the apex) → Node → RRsets, each RRset kept as ready answer records whose owner
is the compression pointer to the question (0xC00C). Records whose target contains ``{domain}``
are kept as templates and completed from the query's own name, so templated profiles are shared
as well. Memory thus grows with the number of domains by one dict entry and one key per zone.

An Index is never changed after it is built; a reload builds a new one and swaps it whole.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from srvd.config import SRV, TEMPLATE, TXT, Config, RRsetSpec, SrvRecord, ZoneSettings
from srvd.names import label_wire, to_wire, wire_to_text
from srvd.ordering import RandomSource, weighted_order

if TYPE_CHECKING:
    from srvd.catalog import Catalog

SOA = 6
NS = 2
CLASS_IN = 1
ANSWER_OWNER = b"\xc0\x0c"  # compression pointer to the question name


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


Piece = bytes | Template


class RRset:
    """The records of one type at one name, ready to append to an answer."""

    __slots__ = ("count", "groups", "ordered", "pair", "rtype", "size", "static", "templated")

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


class Index:
    """Everything an answer needs, immutable once built."""

    def __init__(self, settings: ZoneSettings, zones: dict[bytes, Zone], stats: IndexStats) -> None:
        self.settings = settings
        self.zones = zones
        self.stats = stats
        self.catalog: Catalog | None = None  # the RFC 9432 catalog zone, when configured
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

    def soa(self, pointer: int, serial: int, negative: bool) -> bytes:
        """The zone's SOA record, its owner a compression pointer into the question."""
        head = self.soa_negative_head if negative else self.soa_answer_head
        return (
            struct.pack("!H", 0xC000 | pointer) + head + struct.pack("!I", serial) + self.soa_tail
        )


# ---------------------------------------------------------------------------------------------
# Building


def _settings_digest(settings: ZoneSettings) -> bytes:
    return repr(settings).encode()


def _srv_piece(record: SrvRecord, ttl: int) -> Piece:
    head = ANSWER_OWNER + struct.pack("!HHI", SRV, CLASS_IN, ttl)
    fixed = struct.pack("!HHH", record.priority, record.weight, record.port)
    if record.target == ".":
        rdata = fixed + b"\x00"
    elif record.target.endswith(TEMPLATE):
        labels = record.target.removesuffix(TEMPLATE)
        prefix = to_wire(labels.rstrip("."))[:-1] if labels else b""
        return Template(head, SRV, fixed + prefix)
    else:
        rdata = fixed + to_wire(record.target)
    return head + struct.pack("!H", len(rdata)) + rdata


def _txt_piece(text: str, ttl: int) -> Piece:
    head = ANSWER_OWNER + struct.pack("!HHI", TXT, CLASS_IN, ttl)
    if TEMPLATE in text:
        return Template(head, TXT, text.encode())
    rdata = txt_rdata(text)
    return head + struct.pack("!H", len(rdata)) + rdata


def _rrset(spec: RRsetSpec, ttl: int) -> RRset:
    if spec.rtype == SRV:
        by_priority: dict[int, tuple[list[Piece], list[int]]] = {}
        for record in spec.srv:
            items, weights = by_priority.setdefault(record.priority, ([], []))
            items.append(_srv_piece(record, ttl))
            weights.append(record.weight)
        return RRset(SRV, [by_priority[p] for p in sorted(by_priority)])
    return RRset(TXT, [([_txt_piece(t, ttl) for t in spec.txt], [0] * len(spec.txt))])


def _tables_of(
    specs: Iterable[RRsetSpec], settings: ZoneSettings, settings_digest: bytes
) -> dict[str, Table]:
    """The tables of one profile (or override), by apex label (such as "_tcp")."""
    by_apex: dict[str, list[RRsetSpec]] = {}
    for spec in specs:
        by_apex.setdefault(spec.owner.rsplit(".", 1)[-1], []).append(spec)
    tables = {}
    for apex_label, apex_specs in by_apex.items():
        apex_specs.sort(key=lambda s: (s.owner, s.rtype != SRV))  # SRV first: what ANY gets
        names: dict[bytes, dict[int, RRset]] = {}
        digest = hashlib.blake2b(settings_digest, digest_size=16)
        records = 0
        for spec in apex_specs:
            relative = spec.owner.rsplit(".", 1)[0] if "." in spec.owner else ""
            key = to_wire(relative)[:-1] if relative else b""
            names.setdefault(key, {})[spec.rtype] = _rrset(spec, settings.ttl)
            records += len(spec.srv) + len(spec.txt)
            digest.update(repr(spec).encode())
            # empty non-terminals: every name between the owner and the apex exists
            while key:
                key = key[key[0] + 1 :]
                names.setdefault(key, {})
        nodes = {key: Node(rrsets) for key, rrsets in names.items()}
        tables[apex_label] = Table(nodes, digest.digest(), records)
    return tables


def _specs(entries: Mapping[str, tuple[RRsetSpec, ...] | None]) -> list[RRsetSpec]:
    return [spec for rrsets in entries.values() if rrsets for spec in rrsets]


SerialSource = Callable[[bytes, bytes], int]
"""(apex wire, content digest) → the serial this zone is published with."""


def build_index(config: Config, serial_of: SerialSource | None = None) -> Index:
    """Build the Index of a validated configuration.

    ``serial_of`` decides each zone's SOA serial from its content digest (see srvd.serials);
    without one every zone gets the current time.
    """
    settings = config.zone
    settings_digest = _settings_digest(settings)
    now = int(time.time()) & 0xFFFFFFFF
    serial_of = serial_of or (lambda apex, digest: now)

    profile_tables = {
        name: _tables_of(_specs(profile.entries), settings, settings_digest)
        for name, profile in config.profiles.items()
    }
    # Zone objects are shared by every zone with the same table and serial.
    shared: dict[tuple[int, int], Zone] = {}
    zones: dict[bytes, Zone] = {}
    records = 0
    per_zone_fixed = 1 + len(settings.nameservers)
    apex_labels: dict[str, bytes] = {}
    for domain, entry in config.domains.items():
        if isinstance(entry, str):
            tables = profile_tables[entry]
        else:
            tables = _tables_of(_specs(config.entries_of(domain)), settings, settings_digest)
        if not tables:
            continue
        suffix = to_wire(domain)
        for apex_label, table in tables.items():
            label = apex_labels.get(apex_label)
            if label is None:
                label = apex_labels[apex_label] = label_wire(apex_label.encode())
            apex = label + suffix
            serial = serial_of(apex, table.digest)
            key = (id(table), serial)
            zone = shared.get(key)
            if zone is None:
                zone = shared[key] = Zone(table, serial)
            zones[apex] = zone
            records += table.records + per_zone_fixed
    stats = IndexStats(
        domains=len(config.domains),
        zones=len(zones),
        records=records,
        profiles=len(config.profiles),
    )
    return Index(settings, zones, stats)
