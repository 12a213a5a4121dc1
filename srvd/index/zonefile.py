"""The zones srvd serves, in RFC 1035 master-file form, decoded from the served wire pieces."""

from __future__ import annotations

import struct

from srvd.config import Config
from srvd.index.model import Index, Piece, Zone
from srvd.wire.discovery import SRV, TXT
from srvd.wire.names import master_name, to_wire


def _read_name(data: bytes, pos: int) -> tuple[bytes, int]:
    start = pos
    while data[pos]:
        pos += data[pos] + 1
    return data[start : pos + 1], pos + 1


def _txt_text(rdata: bytes) -> str:
    strings = []
    pos = 0
    while pos < len(rdata):
        length = rdata[pos]
        chunk = rdata[pos + 1 : pos + 1 + length]
        out = []
        for byte in chunk:
            if byte in (0x22, 0x5C):
                out.append("\\" + chr(byte))
            elif 0x20 <= byte <= 0x7E:
                out.append(chr(byte))
            else:
                out.append(f"\\{byte:03d}")
        strings.append('"' + "".join(out) + '"')
        pos += 1 + length
    return " ".join(strings)


def record_text(owner: str, piece: bytes) -> str:
    """One answer record (owner pointer + fixed fields + RDATA) as a master-file line."""
    rtype, _rclass, ttl, rdlength = struct.unpack_from("!HHIH", piece, 2)
    rdata = piece[12 : 12 + rdlength]
    if rtype == SRV:
        priority, weight, port = struct.unpack_from("!HHH", rdata)
        target, _ = _read_name(rdata, 6)
        return f"{owner}\t{ttl}\tIN\tSRV\t{priority} {weight} {port} {master_name(target)}"
    if rtype == TXT:
        return f"{owner}\t{ttl}\tIN\tTXT\t{_txt_text(rdata)}"
    raise ValueError(f"no master-file form for type {rtype}")  # pragma: no cover


def zone_text(index: Index, apex: bytes, zone: Zone) -> str:
    """One zone, SOA first, then NS, then every name in canonical order."""
    settings = index.settings
    origin = master_name(apex)
    rname = master_name(to_wire(settings.hostmaster_domain))
    local = settings.hostmaster_local.replace(".", "\\.")
    lines = [
        f"$ORIGIN {origin}",
        f"{origin}\t{settings.ttl}\tIN\tSOA\t{master_name(to_wire(settings.nameservers[0]))} "
        f"{local}.{rname} {zone.serial} {settings.refresh} {settings.retry} {settings.expire} "
        f"{settings.minimum}",
    ]
    lines += [
        f"{origin}\t{settings.ttl}\tIN\tNS\t{master_name(to_wire(ns))}"
        for ns in settings.nameservers
    ]
    domain = apex[apex[0] + 1 :]
    for relative in sorted(zone.table.names, key=_canonical):
        node = zone.table.names[relative]
        owner = master_name(relative + apex)
        for rrset in node.rrsets.values():
            for items, _weights, _total in rrset.groups:
                for item in items:
                    lines.append(record_text(owner, _render(item, domain)))
    return "\n".join(lines) + "\n"


def _canonical(relative: bytes) -> list[bytes]:
    """RFC 4034 §6.1 order: compare names label by label from the right."""
    labels = []
    pos = 0
    while pos < len(relative):
        labels.append(relative[pos + 1 : pos + 1 + relative[pos]])
        pos += relative[pos] + 1
    return labels[::-1]


def _render(piece: Piece, domain: bytes) -> bytes:
    return piece if isinstance(piece, bytes) else piece.render(domain)


def domain_zones(
    config: Config, index: Index, domain: str, derived: tuple[str, ...] = ()
) -> list[tuple[bytes, Zone]]:
    """The zones served for one configured customer domain, apex first by name; ``derived``:
    apex labels of zones not configured but derived (srvd.http.pacc), served if the index has
    them."""
    labels = sorted(
        {
            spec.owner.rsplit(".", 1)[-1]
            for rrsets in config.entries_of(domain).values()
            if rrsets
            for spec in rrsets
        }
        | set(derived)
    )
    suffix = to_wire(domain)
    out = []
    for label in labels:
        apex = bytes([len(label)]) + label.encode() + suffix
        zone = index.zones.get(apex)
        if zone is not None:
            out.append((apex, zone))
    return out
