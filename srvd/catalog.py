"""The catalog zone (RFC 9432, version 2) of every zone srvd serves, kept compact.

```
catalog.example.net.                    SOA   <zone: MNAME, RNAME, timers> serial
catalog.example.net.                    NS    invalid.
version.catalog.example.net.            TXT   "2"
<id>.zones.catalog.example.net.         PTR   _tcp.example.com.      ; one per served zone
```

Nothing is stored per member: the member set is the index's zone names, and a member's unique
ID is a hash of its name (20 hex digits of BLAKE2b), the same in every process and across
reloads and restarts, so a secondary never sees a member change its ID. The records are made
when a transfer streams them.

The serial changes only when the member set (or the zone settings the SOA is made from) does:
a reload that adds one domain moves it once, a reload that changes records moves only the member
zones' serials. The serial a catalog starts with is the configuration's newest file time, as for
zones (srvd.serials), so every worker process agrees. The last few changes of the member set
are kept as IXFR deltas (RFC 1995), so adding one domain costs a secondary one small IXFR.

Queries: the apex answers SOA and NS (and NODATA otherwise), ``version`` its TXT; the member
names below ``zones`` are served by transfer only (a query for one gets REFUSED: finding a member
by its hash would need a map of every member).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from srvd.index import NS, SOA, Index
from srvd.outcome import C_NOERROR, C_NXDOMAIN, C_REFUSED, NO_SERVICE
from srvd.reload import ZoneDelta
from srvd.serials import next_serial

TXT = 16
PTR = 12
CLASS_IN = 1
VERSION = b"2"
HISTORY_DELTAS = 10  # IXFR deltas kept
HISTORY_MEMBERS = 10_000  # a larger change is not kept as a delta: such clients get AXFR

_HEAD = struct.Struct("!HHHHH")
_RR = struct.Struct("!HHIH")
_QR, _AA, _RD = 0x8000, 0x0400, 0x0100
_REFUSED, _NXDOMAIN = 5, 3
_INVALID = b"\x07invalid\x00"
_ZONES = b"\x05zones"
_VERSION = b"\x07version"


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
        self.settings_key = repr(index.settings)
        self.history = history
        # the SOA records without their owner (no reference to the index: no cycle)
        self.soa_answer = index.soa(0, serial, False)[2:]
        self.soa_negative = index.soa(0, serial, True)[2:]

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
        rdata = bytes([len(VERSION)]) + VERSION
        return _VERSION + b"\xc0\x0c" + _RR.pack(TXT, CLASS_IN, self.ttl, len(rdata)) + rdata

    def member(self, apex: bytes) -> bytes:
        return (
            member_label(apex)
            + _ZONES
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

    # -- queries (not transfers)

    def entry(
        self, qname: bytes, qtype: int, qclass: int, rd: int, question: bytes, opt: bytes, row: int
    ) -> tuple[bytes, int, int] | None:
        """(reply after its ID, query cell, service cell) for a name in the catalog, else None."""
        apex = self.apex
        if not qname.endswith(apex):
            return None
        prefix = len(qname) - len(apex)
        if prefix and not _is_boundary(qname, prefix):
            return None
        additional = 1 if opt else 0
        aa = _AA if qclass == CLASS_IN else 0
        # relative part (wire labels without the apex)
        relative = qname[:prefix]
        records = b""
        count = 0
        rcode = 0
        if relative == b"":
            if qtype in (SOA, 255):
                records, count = self.soa(), 1
            elif qtype == NS:
                records, count = self.ns(), 1
        elif relative == _VERSION:
            if qtype in (TXT, 255):
                rdata = bytes([len(VERSION)]) + VERSION
                records = b"\xc0\x0c" + _RR.pack(TXT, CLASS_IN, self.ttl, len(rdata)) + rdata
                count = 1
        elif relative == _ZONES:
            pass  # an empty non-terminal
        elif relative.endswith(_ZONES):
            head = _HEAD.pack(_QR | _rd(rd) | _REFUSED, 1, 0, 0, additional) + question + opt
            return head, row + C_REFUSED, NO_SERVICE
        else:
            rcode = _NXDOMAIN
        flags = _QR | aa | _rd(rd) | rcode
        if count:
            head = _HEAD.pack(flags, 1, count, 0, additional) + question + records + opt
            return head, row + C_NOERROR, NO_SERVICE
        cell = C_NXDOMAIN if rcode else C_NOERROR
        if not aa:
            return _HEAD.pack(flags, 1, 0, 0, additional) + question + opt, row + cell, NO_SERVICE
        soa = struct.pack("!H", 0xC000 | (12 + prefix)) + self.soa_negative
        head = _HEAD.pack(flags, 1, 0, 1, additional) + question + soa + opt
        return head, row + cell, NO_SERVICE


def _rd(rd: int) -> int:
    return rd & _RD


def _is_boundary(qname: bytes, prefix: int) -> bool:
    """Whether ``prefix`` octets of ``qname`` are whole labels."""
    pos = 0
    while pos < prefix:
        pos += qname[pos] + 1
    return pos == prefix


def next_catalog(
    previous: Catalog | None, apex: bytes, index: Index, delta: ZoneDelta | None, now: int
) -> Catalog:
    """The catalog of a new index: the previous one's serial and history unless the member
    set (or the SOA's settings) changed. ``delta`` is the reload's zone delta (None: unknown,
    taken as changed); ``now`` the serial a new version prefers (the configuration's time)."""
    if previous is None or previous.apex != apex:
        return Catalog(apex, now & 0xFFFFFFFF, index)
    if repr(index.settings) != previous.settings_key or delta is None:
        return Catalog(apex, next_serial(previous.serial, now), index)
    if not delta.added and not delta.removed:
        return Catalog(apex, previous.serial, index, previous.history)
    serial = next_serial(previous.serial, now)
    history = previous.history
    if len(delta.added) + len(delta.removed) <= HISTORY_MEMBERS:
        step = Delta(previous.serial, serial, delta.removed, delta.added)
        history = (*history, step)[-HISTORY_DELTAS:]
    else:
        history = ()
    return Catalog(apex, serial, index, history)


def catalog_text(catalog: Catalog, index: Index) -> str:
    """The catalog as an RFC 1035 master file (for ``srvd zone --all``)."""
    from srvd.names import master_name, to_wire

    settings = index.settings
    origin = master_name(catalog.apex)
    local = settings.hostmaster_local.replace(".", "\\.")
    rname = master_name(to_wire(settings.hostmaster_domain))
    mname = master_name(to_wire(settings.nameservers[0]))
    ttl = catalog.ttl
    lines = [
        f"$ORIGIN {origin}",
        f"{origin}\t{ttl}\tIN\tSOA\t{mname} {local}.{rname} {catalog.serial} {settings.refresh} "
        f"{settings.retry} {settings.expire} {settings.minimum}",
        f"{origin}\t{ttl}\tIN\tNS\tinvalid.",
        f'version.{origin}\t{ttl}\tIN\tTXT\t"2"',
    ]
    for apex in sorted(catalog.zones):
        label = member_label(apex)[1:].decode()
        lines.append(f"{label}.zones.{origin}\t{ttl}\tIN\tPTR\t{master_name(apex)}")
    return "\n".join(lines) + "\n"
