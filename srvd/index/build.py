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
from typing import Any

from srvd.config import Config, DomainOverride, Profile, RRsetSpec, SrvRecord, ZoneSettings
from srvd.index.model import (
    ANSWER_OWNER,
    CLASS_IN,
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


def _rrset(spec: RRsetSpec, ttl: int) -> RRset:
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


class TableCache:
    """The tables of profiles and overrides under one zone settings, each content built once.

    ``profiles`` may grow while the cache is in use (srvd.config.load.DomainSink).
    """

    def __init__(self, settings: ZoneSettings, profiles: Mapping[str, Profile]) -> None:
        self.settings = settings
        self.profiles = profiles
        self.settings_digest = _settings_digest(settings)
        self.by_profile: dict[str, dict[str, Table]] = {}
        self.by_override: dict[tuple[str | None, tuple[Any, ...]], dict[str, Table]] = {}
        # a spec's RRset and the text its table's digest takes in; by the spec's identity first
        # (profiles' specs are the same objects every time), then by its value
        self.by_id: dict[int, tuple[RRsetSpec, RRset, bytes]] = {}
        self.rrsets: dict[RRsetSpec, tuple[RRsetSpec, RRset, bytes]] = {}
        self.owners: dict[str, bytes] = {}
        self.nodes: dict[tuple[tuple[int, RRset], ...], Node] = {}
        self.tables: dict[tuple[str, tuple[tuple[bytes, Node], ...]], Table] = {}

    def of(self, entry: str | DomainOverride) -> dict[str, Table]:
        """The tables of a domain given ``entry``, by apex label (such as "_tcp"); the same dict
        for the same content."""
        if isinstance(entry, str):
            tables = self.by_profile.get(entry)
            if tables is None:
                tables = self.by_profile[entry] = self.build(_specs(self.profiles[entry].entries))
            return tables
        key = (entry.profile, tuple(entry.entries.items()))
        tables = self.by_override.get(key)
        if tables is None:
            merged = dict(self.profiles[entry.profile].entries) if entry.profile else {}
            merged.update(entry.entries)
            tables = self.by_override[key] = self.build(_specs(merged))
        return tables

    def build(self, specs: Iterable[RRsetSpec]) -> dict[str, Table]:
        """The tables of one profile (or merged override), by apex label."""
        by_apex: dict[str, list[RRsetSpec]] = {}
        for spec in specs:
            by_apex.setdefault(spec.owner.rsplit(".", 1)[-1], []).append(spec)
        tables = {}
        for apex_label, apex_specs in by_apex.items():
            apex_specs.sort(key=_spec_order)
            names: dict[bytes, dict[int, RRset]] = {}
            texts = []
            records = 0
            for spec in apex_specs:
                rrset, text = self.rrset(spec)
                key = self.owner_key(spec.owner)
                names.setdefault(key, {})[spec.rtype] = rrset
                records += len(spec.srv) + len(spec.txt)
                texts.append(text)
                # empty non-terminals: every name between the owner and the apex exists
                while key:
                    key = key[key[0] + 1 :]
                    names.setdefault(key, {})
            nodes = tuple((key, self.node(rrsets)) for key, rrsets in names.items())
            table = self.tables.get((apex_label, nodes))
            if table is None:
                digest = hashlib.blake2b(self.settings_digest, digest_size=16)
                for text in texts:
                    digest.update(text)
                table = self.tables[(apex_label, nodes)] = Table(
                    dict(nodes), digest.digest(), records
                )
            tables[apex_label] = table
        return tables

    def rrset(self, spec: RRsetSpec) -> tuple[RRset, bytes]:
        known = self.by_id.get(id(spec))
        if known is None:
            known = self.rrsets.get(spec)
            if known is None:
                known = self.rrsets[spec] = (
                    spec,
                    _rrset(spec, self.settings.ttl),
                    repr(spec).encode(),
                )
            self.by_id[id(spec)] = (spec, known[1], known[2])  # keeps spec, so its id stays its
        return known[1], known[2]

    def owner_key(self, owner: str) -> bytes:
        key = self.owners.get(owner)
        if key is None:
            relative = owner.rsplit(".", 1)[0] if "." in owner else ""
            key = self.owners[owner] = to_wire(relative)[:-1] if relative else b""
        return key

    def node(self, rrsets: dict[int, RRset]) -> Node:
        key = tuple(rrsets.items())
        node = self.nodes.get(key)
        if node is None:
            node = self.nodes[key] = Node(rrsets)
        return node


def _specs(entries: Mapping[str, tuple[RRsetSpec, ...] | None]) -> list[RRsetSpec]:
    return [spec for rrsets in entries.values() if rrsets for spec in rrsets]


SerialSource = Callable[[bytes, bytes], int]
"""(apex wire, content digest) → the serial this zone is published with."""


def build_index(config: Config, serial_of: SerialSource | None = None) -> Index:
    """Build the Index of a validated configuration.

    ``serial_of`` decides each zone's SOA serial from its content digest (see srvd.index.serials);
    without one every zone gets the current time.
    """
    settings = config.zone
    now = int(time.time()) & 0xFFFFFFFF
    serial_of = serial_of or (lambda apex, digest: now)
    cache = TableCache(settings, config.profiles)
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
    return Index(settings, zones, stats)
