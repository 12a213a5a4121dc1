"""The records of a customer domain as read from a zone: plain data, whatever the source.

srvd.migrate.zones makes them from master files or zone transfers (with dnspython); everything
after that (srvd.migrate.profiles) works on these alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

SrvData: TypeAlias = tuple[int, int, int, str]  # priority, weight, port, target ("." or a name)
TxtData: TypeAlias = tuple[bytes, ...]  # the character-strings of one TXT record
RecordData: TypeAlias = SrvData | TxtData | str  # other types: their master-file text


@dataclass(frozen=True, slots=True)
class Record:
    owner: str  # absolute, lowercase, without the trailing dot
    rtype: str  # "SRV", "TXT", "CNAME", ...
    ttl: int
    data: RecordData


@dataclass(frozen=True, slots=True)
class SourceZone:
    """What one customer domain's zone gave: its records in the subzones srvd takes over (at
    and below ``_tcp``, ``_udp``, ``_axigen`` of the domain), or why it could not be read."""

    domain: str  # lowercase ASCII (IDNA), without the trailing dot
    records: tuple[Record, ...] = ()
    error: str | None = None
