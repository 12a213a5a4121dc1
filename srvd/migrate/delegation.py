"""The records each parent zone needs to delegate a domain's subzones to srvd: NS for every
served apex (``_tcp.D``, ``_axigen.D``, ...), naming ``zone.nameservers``, and DS when the
subzones are signed (``dnssec:``). As master-file lines, or as ``nsupdate`` input."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from srvd.config import Config
from srvd.http.pacc import OWNER as PACC_OWNER
from srvd.http.pacc import deriver
from srvd.index.build import build_index
from srvd.index.model import Index
from srvd.index.zonefile import domain_zones
from srvd.wire.dnssec import ds_text, load_key
from srvd.wire.names import to_wire, wire_to_text

DEFAULT_TTL = 86400  # the parent's NS TTL: a day is usual (README "Delegation")


@dataclass(frozen=True, slots=True)
class ParentRecord:
    owner: str  # absolute, lowercase, without the trailing dot
    rtype: str  # "NS" or "DS"
    data: str  # the RDATA in master-file form (names absolute, with the trailing dot)


def apexes(config: Config, domain: str) -> list[str]:
    """The apexes of the zones srvd serves for one configured domain, sorted: those its
    profile's records make, and PACC's ``_ua-auto-config`` when ``http.pacc`` gives the domain a
    document (read from the index, built once per configuration)."""
    index = _index_of(config)
    return [wire_to_text(apex) for apex, _ in domain_zones(config, index, domain, (PACC_OWNER,))]


_BUILT: list[tuple[Config, Index]] = []  # the last configuration's index (one command, one)


def _index_of(config: Config) -> Index:
    if not _BUILT or _BUILT[0][0] is not config:
        _BUILT[:] = [(config, build_index(config, None, deriver(config.http)))]
    return _BUILT[0][1]


def signing_records(config: Config, apex: str) -> Iterator[ParentRecord]:
    """The DS records the parent must hold for the subzone ``apex``: one (SHA-256) per key in
    its DNSKEY set (``dnssec.key`` and any ``dnssec.publish`` key, RFC 4034 §5), none when srvd
    does not sign. ``srvd verify-delegation`` then expects no DS at the cut: a DS there makes
    validating resolvers reject srvd's unsigned answers."""
    settings = config.dnssec
    if settings is None:
        return
    owner = to_wire(apex)
    for dnskey in _dnskeys(tuple(k.data for k in (settings.key, *settings.publish))):
        yield ParentRecord(apex, "DS", ds_text(owner, dnskey))


@functools.lru_cache(maxsize=4)
def _dnskeys(keys: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """The DNSKEY rdata of key files (parsed once, not once per domain)."""
    return tuple(load_key(data).dnskey for data in keys)


def parent_records(config: Config, domain: str) -> list[ParentRecord]:
    """Everything the parent zone of ``domain`` needs for srvd's subzones of it."""
    out: list[ParentRecord] = []
    for apex in apexes(config, domain):
        out += [ParentRecord(apex, "NS", f"{ns}.") for ns in config.zone.nameservers]
        out += signing_records(config, apex)
    return out


def master_lines(domain: str, records: Sequence[ParentRecord], ttl: int) -> list[str]:
    if not records:
        return [f"; {domain}: srvd serves no zone for it (its profile publishes nothing)"]
    lines = [f"; {domain}"]
    lines += [f"{r.owner}.\t{ttl}\tIN\t{r.rtype}\t{r.data}" for r in records]
    return lines


def nsupdate_lines(domain: str, records: Sequence[ParentRecord], ttl: int) -> list[str]:
    """One update per domain: each RRset replaced whole (delete, then add), then ``send``.
    nsupdate finds the zone to update itself (its SOA query), as no ``zone`` line is given."""
    if not records:
        return [f"; {domain}: srvd serves no zone for it (its profile publishes nothing)"]
    lines = [f"; {domain}"]
    done: set[tuple[str, str]] = set()
    for record in records:
        if (record.owner, record.rtype) not in done:
            done.add((record.owner, record.rtype))
            lines.append(f"update delete {record.owner}. IN {record.rtype}")
        lines.append(f"update add {record.owner}. {ttl} IN {record.rtype} {record.data}")
    lines.append("send")
    return lines
