"""Validated configuration → Index: each profile's tables built once, zones pointing at them.

Every domain on a profile shares that profile's tables (srvd.index.model); a domain with an
override gets tables of its own. Zones with the same table and serial share one Zone object.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Callable, Iterable, Mapping

from srvd.config import Config, RRsetSpec, SrvRecord, ZoneSettings
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

    ``serial_of`` decides each zone's SOA serial from its content digest (see srvd.index.serials);
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
