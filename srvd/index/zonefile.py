"""The zones srvd serves, in RFC 1035 master-file form, decoded from the served wire pieces."""

from __future__ import annotations

import base64
import struct
import time

from srvd.config import Config
from srvd.index.dnssec import ZoneSigner
from srvd.index.model import NS, SOA, Index, Piece, Zone
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


def _srv_text(rdata: bytes) -> str:
    priority, weight, port = struct.unpack_from("!HHH", rdata)
    target, _ = _read_name(rdata, 6)
    return f"{priority} {weight} {port} {master_name(target)}"


def record_text(owner: str, piece: bytes) -> str:
    """One answer record (owner pointer + fixed fields + RDATA) as a master-file line."""
    rtype, _rclass, ttl, rdlength = struct.unpack_from("!HHIH", piece, 2)
    rdata = piece[12 : 12 + rdlength]
    if rtype == SRV:
        return f"{owner}\t{ttl}\tIN\tSRV\t{_srv_text(rdata)}"
    if rtype == TXT:
        return f"{owner}\t{ttl}\tIN\tTXT\t{_txt_text(rdata)}"
    raise ValueError(f"no master-file form for type {rtype}")  # pragma: no cover


def zone_text(index: Index, apex: bytes, zone: Zone) -> str:
    """One zone, SOA first, then NS, then every name in canonical order (signed: with DNSKEY,
    CDS, CDNSKEY, NSEC and an RRSIG after every RRset)."""
    if index.dnssec is not None:
        return signed_text(index, apex, zone)
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


def signed_text(index: Index, apex: bytes, zone: Zone) -> str:
    """A signed zone (srvd.index.dnssec), every record of it."""
    signer = index.dnssec
    assert isinstance(signer, ZoneSigner)
    lines = [f"$ORIGIN {master_name(apex)}"]
    for owner, rtype, ttl, rdata in signer.signed_zone(index, apex, zone.table):
        lines.append(
            f"{master_name(owner)}\t{ttl}\tIN\t{type_text(rtype)}\t{rdata_text(rtype, rdata)}"
        )
    return "\n".join(lines) + "\n"


_TYPES = {
    1: "A",
    2: "NS",
    6: "SOA",
    12: "PTR",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    43: "DS",
    46: "RRSIG",
    47: "NSEC",
    48: "DNSKEY",
    59: "CDS",
    60: "CDNSKEY",
}


def type_text(rtype: int) -> str:
    return _TYPES.get(rtype, f"TYPE{rtype}")


def rdata_text(rtype: int, rdata: bytes) -> str:
    """The master-file text of one record's rdata (the types a signed srvd zone holds)."""
    if rtype == SRV:
        return _srv_text(rdata)
    if rtype == TXT:
        return _txt_text(rdata)
    if rtype in (NS, 12):  # NS, PTR (the catalog's members)
        return master_name(_read_name(rdata, 0)[0])
    if rtype == SOA:
        mname, pos = _read_name(rdata, 0)
        rname, pos = _read_name(rdata, pos)
        numbers = " ".join(str(n) for n in struct.unpack_from("!IIIII", rdata, pos))
        return f"{master_name(mname)} {master_name(rname)} {numbers}"
    if rtype in (48, 60):  # DNSKEY, CDNSKEY
        flags, protocol, algorithm = struct.unpack_from("!HBB", rdata)
        return f"{flags} {protocol} {algorithm} {base64.b64encode(rdata[4:]).decode()}"
    if rtype in (43, 59):  # DS, CDS
        tag, algorithm, digest = struct.unpack_from("!HBB", rdata)
        return f"{tag} {algorithm} {digest} {rdata[4:].hex().upper()}"
    if rtype == 46:  # RRSIG
        covered, algorithm, labels, ttl, expiration, inception, tag = struct.unpack_from(
            "!HBBIIIH", rdata
        )
        signer, pos = _read_name(rdata, 18)
        signature = base64.b64encode(rdata[pos:]).decode()
        return (
            f"{type_text(covered)} {algorithm} {labels} {ttl} {_time(expiration)} "
            f"{_time(inception)} {tag} {master_name(signer)} {signature}"
        )
    if rtype == 47:  # NSEC
        following, pos = _read_name(rdata, 0)
        return " ".join([master_name(following), *(type_text(t) for t in _bitmap(rdata[pos:]))])
    raise ValueError(f"no master-file form for type {rtype}")  # pragma: no cover


def _time(seconds: int) -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(seconds))


def _bitmap(data: bytes) -> list[int]:
    out: list[int] = []
    pos = 0
    while pos < len(data):
        window, length = data[pos], data[pos + 1]
        for i, octet in enumerate(data[pos + 2 : pos + 2 + length]):
            out.extend(window << 8 | i << 3 | bit for bit in range(8) if octet & 0x80 >> bit)
        pos += 2 + length
    return out


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
