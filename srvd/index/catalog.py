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
zones (srvd.index.serials), so every worker process agrees. The last few changes of the member set
are kept as IXFR deltas (RFC 1995), so adding one domain costs a secondary one small IXFR.

Queries: the apex answers SOA and NS (and NODATA otherwise), ``version`` its TXT; the member
names below ``zones`` are served by transfer only (a query for one gets REFUSED: finding a member
by its hash would need a map of every member).
"""

from __future__ import annotations

from collections.abc import Iterator

from srvd.index.catalog_dnssec import SignedCatalog
from srvd.index.dnssec import ZoneSigner
from srvd.index.model import Catalog, Delta, Index, ZoneDelta, catalog_key, member_label
from srvd.index.serials import next_serial
from srvd.index.zonefile import rdata_text, type_text
from srvd.wire.names import master_name, to_wire

HISTORY_DELTAS = 10  # IXFR deltas kept
HISTORY_MEMBERS = 10_000  # a larger change is not kept as a delta: such clients get AXFR


def next_catalog(
    previous: Catalog | None,
    apex: bytes,
    index: Index,
    delta: ZoneDelta | None,
    now: int,
    served: int | None = None,
) -> Catalog:
    """The catalog of a new index: the previous one's serial and history unless the member
    set (or the SOA's settings) changed. ``delta`` is the reload's zone delta (None: unknown,
    taken as changed); ``now`` the serial a new version prefers (the configuration's time);
    ``served`` the serial the previous version was served with (signed: moved by its window,
    ``served_serial``; None: its own). A new version's serial is newer than that served one, so
    that a signed catalog's served serial moves with every change of its content, even when the
    configuration's time is older than the window's start."""
    if previous is None or previous.apex != apex:
        return Catalog(apex, now & 0xFFFFFFFF, index)
    floor = previous.serial if served is None else served
    if catalog_key(index) != previous.settings_key or delta is None:
        return Catalog(apex, next_serial(floor, now), index)
    if not delta.added and not delta.removed:
        kept = Catalog(apex, previous.serial, index, previous.history)
        kept.signing = previous.signing  # the same members: the same order
        return kept
    serial = next_serial(floor, now)
    history = previous.history
    if len(delta.added) + len(delta.removed) <= HISTORY_MEMBERS:
        step = Delta(previous.serial, serial, delta.removed, delta.added)
        history = (*history, step)[-HISTORY_DELTAS:]
    else:
        history = ()
    return Catalog(apex, serial, index, history)


def served_serial(catalog: Catalog, index: Index) -> int:
    """The serial the catalog is served with: its own, moved by the signatures' validity window
    when the zones are signed (as every zone's, srvd.index.dnssec)."""
    signing = index.dnssec
    return catalog.serial if signing is None else signing.serial(catalog.apex, catalog.serial)


def catalog_lines(catalog: Catalog, index: Index) -> Iterator[str]:
    """The catalog as an RFC 1035 master file, line by line (for ``srvd zone --all``); signed
    when the zones are (srvd.index.catalog_dnssec: every record and RRSIG, made as taken)."""
    signer = index.dnssec
    if not isinstance(signer, ZoneSigner):
        yield catalog_text(catalog, index)
        return
    signed = SignedCatalog(catalog, signer)
    signed.order.finish()
    yield f"$ORIGIN {master_name(catalog.apex)}\n"
    for record in signed.zone():
        if record is not None:
            owner, rtype, ttl, rdata = record
            text = rdata_text(rtype, rdata)
            yield f"{master_name(owner)}\t{ttl}\tIN\t{type_text(rtype)}\t{text}\n"


def catalog_text(catalog: Catalog, index: Index) -> str:
    """The catalog as an RFC 1035 master file (for ``srvd zone --all``)."""
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
