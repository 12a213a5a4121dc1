"""Validated configuration → Index: the tables of each distinct content built once, zones
pointing at them.

Every domain on a profile shares that profile's tables (srvd.index.model). A domain with an
override gets the tables of its merged content, built once per distinct content as well
(TableCache): RRsets by their spec, nodes by their RRsets, tables by their nodes. Domains whose
overrides say the same thing share their tables, and an override of one service shares every
other name with its profile. Zones with the same table and serial share one Zone object.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from srvd.config import Config, DomainOverride, Profile, RRsetSpec, SrvRecord, ZoneSettings
from srvd.config.load import DomainSink
from srvd.config.model import HttpSettings
from srvd.index.dnssec import attach
from srvd.index.model import (
    ANSWER_OWNER,
    CLASS_IN,
    DigestTemplate,
    Index,
    IndexStats,
    Node,
    Piece,
    RRset,
    Table,
    Template,
    Zone,
    txt_rdata,
)
from srvd.wire.discovery import SRV, TEMPLATE, TXT
from srvd.wire.names import label_wire, to_wire


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


@dataclass(frozen=True, slots=True)
class DigestSpec(RRsetSpec):
    """A TXT RRset of one record that vouches for a document naming the customer domain
    (``skeleton``, with ``{domain}``): made per domain from it (DigestTemplate). Derived from
    a domain's other records, never configured (``TableCache.derive``)."""

    skeleton: bytes = b""


def _rrset(spec: RRsetSpec, ttl: int) -> RRset:
    if isinstance(spec, DigestSpec):
        head = ANSWER_OWNER + struct.pack("!HHI", TXT, CLASS_IN, ttl)
        return RRset(TXT, [([DigestTemplate(head, TXT, spec.skeleton)], [0])])
    if spec.rtype == SRV:
        by_priority: dict[int, tuple[list[Piece], list[int]]] = {}
        for record in spec.srv:
            items, weights = by_priority.setdefault(record.priority, ([], []))
            items.append(_srv_piece(record, ttl))
            weights.append(record.weight)
        return RRset(SRV, [by_priority[p] for p in sorted(by_priority)])
    return RRset(TXT, [([_txt_piece(t, ttl) for t in spec.txt], [0] * len(spec.txt))])


def _spec_order(spec: RRsetSpec) -> tuple[str, bool]:
    return spec.owner, spec.rtype != SRV  # SRV first: what ANY gets


# RRsets derived from a domain's planned tables (such as PACC's _ua-auto-config TXT, made from
# its _tcp table by srvd.http.pacc): given the cache, the plans and the domain's profile (None
# for an override without one), the specs to add.
Derive: TypeAlias = Callable[
    ["TableCache", tuple["TablePlan", ...], str | None], tuple[RRsetSpec, ...]
]
DOCUMENTS_LABEL = "_tcp"  # the zone whose records the discovery documents are made of


@dataclass(frozen=True, slots=True)
class TablePlan:
    """A table as a domain gets it, before it is built: the apex label (such as "_tcp"), the
    content digest (with the zone settings: it decides the serial), the number of records, and
    the RRset specs in the table's order (by owner, SRV before TXT: what ANY gets)."""

    label: str
    digest: bytes
    records: int
    specs: tuple[RRsetSpec, ...]


class TableCache:
    """The tables of profiles and overrides under one zone settings.

    A profile's RRsets and the nodes made of them only are built once and shared by every table
    that has them; an override's own RRsets belong to its table. With ``keep`` each table is
    built once per content (by digest) and kept; without it a table is built each time one is
    asked for, for a caller that keeps what it needs (the build process, srvd.server.loading).
    ``profiles`` may grow while the cache is in use (srvd.config.load.DomainSink).
    """

    def __init__(
        self,
        settings: ZoneSettings,
        profiles: Mapping[str, Profile],
        keep: bool = True,
        derive: Derive | None = None,
    ) -> None:
        self.settings = settings
        self.derive = derive
        self.profiles = profiles
        self.keep = keep
        self.settings_digest = _settings_digest(settings)
        self.by_profile: dict[str, tuple[TablePlan, ...]] = {}
        # profiles' specs by identity: the spec (kept, so that its id stays its own), its RRset
        # once built, and the text a table's digest takes in
        self.shared: dict[int, tuple[RRsetSpec, bytes]] = {}
        self.rrsets: dict[int, RRset] = {}  # by id of a profile's spec
        self.shared_nodes: dict[tuple[int, ...], Node] = {}  # by the ids of a node's specs
        self.empty = Node({})  # an empty non-terminal
        self.node_ids: set[int] = {id(self.empty)}  # ids of the shared nodes
        self.owners: dict[str, tuple[bytes, tuple[bytes, ...]]] = {}
        self.tables: dict[bytes, Table] = {}  # by digest, with keep
        # the profile of each _tcp table (the first profile planned with it): which
        # http.profiles entry its documents take (srvd.http)
        self.profile_of: dict[bytes, str] = {}

    def of(self, entry: str | DomainOverride) -> dict[str, Table]:
        """The tables of a domain given ``entry``, by apex label."""
        return {plan.label: self.table(plan) for plan in self.plans(entry)}

    def plans(self, entry: str | DomainOverride) -> tuple[TablePlan, ...]:
        """The tables a domain given ``entry`` gets, planned (the same tuple for a profile)."""
        if isinstance(entry, str):
            plans = self.by_profile.get(entry)
            if plans is None:
                entries = self.profiles[entry].entries
                for rrsets in entries.values():
                    for spec in rrsets or ():
                        self.shared.setdefault(id(spec), (spec, repr(spec).encode()))
                plans = self.by_profile[entry] = self._derived(_specs(entries), entry)
            return plans
        merged: dict[str, tuple[RRsetSpec, ...] | None] = {}
        if entry.profile is not None:
            self.plans(entry.profile)  # its specs are shared
            merged.update(self.profiles[entry.profile].entries)
        merged.update(entry.entries)
        return self._derived(_specs(merged), entry.profile)

    def _derived(self, specs: list[RRsetSpec], profile: str | None) -> tuple[TablePlan, ...]:
        """The plans of these specs, with what ``derive`` makes of them; the profile of their
        _tcp table noted."""
        plans = self._plan(specs)
        if profile is not None:
            for plan in plans:
                if plan.label == DOCUMENTS_LABEL:
                    self.profile_of.setdefault(plan.digest, profile)
        extra = self.derive(self, plans, profile) if self.derive is not None else ()
        return self._plan([*specs, *extra]) if extra else plans

    def _plan(self, specs: Iterable[RRsetSpec]) -> tuple[TablePlan, ...]:
        by_apex: dict[str, list[RRsetSpec]] = {}
        for spec in specs:
            by_apex.setdefault(spec.owner.rsplit(".", 1)[-1], []).append(spec)
        plans = []
        shared = self.shared
        for label, apex_specs in by_apex.items():
            apex_specs.sort(key=_spec_order)
            digest = hashlib.blake2b(self.settings_digest, digest_size=16)
            records = 0
            for spec in apex_specs:
                known = shared.get(id(spec))
                digest.update(known[1] if known is not None else repr(spec).encode())
                records += len(spec.srv) + len(spec.txt) + isinstance(spec, DigestSpec)
            plans.append(TablePlan(label, digest.digest(), records, tuple(apex_specs)))
        return tuple(plans)

    def table(self, plan: TablePlan) -> Table:
        """The table of a plan (the one kept for its digest, with ``keep``)."""
        if self.keep:
            table = self.tables.get(plan.digest)
            if table is not None:
                return table
        names: dict[bytes, Node] = {}
        specs = plan.specs
        start, end = 0, len(specs)
        while start < end:  # the specs of one owner at a time (they are sorted by owner)
            owner = specs[start].owner
            stop = start + 1
            while stop < end and specs[stop].owner == owner:
                stop += 1
            key, above = self._owner(owner)
            names[key] = self._node(specs[start:stop])
            for name in above:  # empty non-terminals: every name up to the apex exists
                names.setdefault(name, self.empty)
            start = stop
        table = Table(names, plan.digest, plan.records)
        if self.keep:
            self.tables[plan.digest] = table
        return table

    def shares(self, node: Node) -> bool:
        """Whether a node is made of profiles' RRsets only (built once, kept by the cache)."""
        return id(node) in self.node_ids

    def _node(self, specs: tuple[RRsetSpec, ...]) -> Node:
        """The node of one owner's specs: shared when they are all profiles'."""
        shared = self.shared
        if not all(id(spec) in shared for spec in specs):  # with an override's own
            return Node({spec.rtype: self._rrset(spec) for spec in specs})
        key = tuple(id(spec) for spec in specs)
        node = self.shared_nodes.get(key)
        if node is None:
            node = self.shared_nodes[key] = Node({spec.rtype: self._rrset(spec) for spec in specs})
            self.node_ids.add(id(node))
        return node

    def _rrset(self, spec: RRsetSpec) -> RRset:
        if id(spec) not in self.shared:  # an override's own
            return _rrset(spec, self.settings.ttl)
        rrset = self.rrsets.get(id(spec))
        if rrset is None:
            rrset = self.rrsets[id(spec)] = _rrset(spec, self.settings.ttl)
        return rrset

    def _owner(self, owner: str) -> tuple[bytes, tuple[bytes, ...]]:
        """An owner's key in a table (its labels below the apex, wire form) and the keys of
        the names between it and the apex, the apex (b"") last."""
        known = self.owners.get(owner)
        if known is None:
            relative = owner.rsplit(".", 1)[0] if "." in owner else ""
            key = to_wire(relative)[:-1] if relative else b""
            above = []
            name = key
            while name:
                name = name[name[0] + 1 :]
                above.append(name)
            known = self.owners[owner] = (key, tuple(above))
        return known


def _specs(entries: Mapping[str, tuple[RRsetSpec, ...] | None]) -> list[RRsetSpec]:
    return [spec for rrsets in entries.values() if rrsets for spec in rrsets]


SerialSource = Callable[[bytes, bytes], int]
"""(apex wire, content digest) → the serial this zone is published with."""


def build_index(
    config: Config, serial_of: SerialSource | None = None, derive: Derive | None = None
) -> Index:
    """Build the Index of a validated configuration.

    ``serial_of`` decides each zone's SOA serial from its content digest (see srvd.index.serials);
    without one every zone gets the current time.
    """
    settings = config.zone
    now = int(time.time()) & 0xFFFFFFFF
    serial_of = serial_of or (lambda apex, digest: now)
    cache = TableCache(settings, config.profiles, derive=derive)
    # Zone objects are shared by every zone with the same table and serial.
    shared: dict[tuple[int, int], Zone] = {}
    zones: dict[bytes, Zone] = {}
    records = 0
    per_zone_fixed = 1 + len(settings.nameservers)
    apex_labels: dict[str, bytes] = {}
    for domain, entry in config.domains.items():
        tables = cache.of(entry)
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
    index = attach(Index(settings, zones, stats), config.dnssec)
    index.table_profiles = cache.profile_of
    return index


class Counter(DomainSink):
    """The figures of the index a configuration makes, counted as its domains are read (what
    ``srvd check`` prints), without building the index. ``derive_of`` makes the ``derive`` hook
    of the ``http:`` settings (srvd.http.pacc.deriver), so derived zones are counted too."""

    def __init__(
        self, derive_of: Callable[[HttpSettings | None], Derive | None] | None = None
    ) -> None:
        self.derive_of = derive_of
        self.derive: Derive | None = None
        self.cache: TableCache | None = None
        self.per_zone = 0
        self.sizes: dict[str, tuple[int, int]] = {}  # a profile's zones and records
        self.domains = self.zones = self.records = 0

    def http(self, settings: HttpSettings | None) -> None:
        self.derive = self.derive_of(settings) if self.derive_of is not None else None
        if self.cache is not None:
            self.cache.derive = self.derive

    def begin(self, zone: ZoneSettings, profiles: Mapping[str, Profile]) -> None:
        self.cache = TableCache(zone, profiles, keep=False, derive=self.derive)
        self.per_zone = 1 + len(zone.nameservers)  # SOA and NS

    def domain(self, name: str, entry: str | DomainOverride | None) -> None:
        if entry is None:  # its entry comes later
            return
        self.domains += 1
        sizes = self.sizes.get(entry) if isinstance(entry, str) else None
        if sizes is None:
            assert self.cache is not None  # begin came first
            plans = self.cache.plans(entry)
            sizes = len(plans), sum(plan.records + self.per_zone for plan in plans)
            if isinstance(entry, str):
                self.sizes[entry] = sizes
        self.zones += sizes[0]
        self.records += sizes[1]

    def restart(self) -> None:
        self.__init__(self.derive_of)  # type: ignore[misc]

    def stats(self, config: Config) -> IndexStats:
        return IndexStats(self.domains, self.zones, self.records, len(config.profiles))
