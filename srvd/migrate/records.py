"""The records of a customer domain as read from a zone: plain data, whatever the source.

srvd.migrate.zones makes them from master files or zone transfers (with dnspython); everything
after that (srvd.migrate.profiles) works on these alone.
"""

from __future__ import annotations

import base64
import binascii
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


@dataclass(frozen=True, slots=True)
class TsigKey:
    name: str
    algorithm: str
    secret: bytes


def parse_tsig(text: str) -> TsigKey:
    """``NAME:ALGORITHM:SECRET`` (the secret in base64), as dig's ``-y`` takes it but with the
    algorithm required, such as ``xfr-key:hmac-sha256:c2VjcmV0``."""
    name, sep, rest = text.partition(":")
    algorithm, sep2, secret = rest.partition(":")
    if not (name and sep and sep2 and algorithm and secret):
        raise ValueError("expected NAME:ALGORITHM:SECRET")
    known = {"hmac-md5", "hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512"}
    if algorithm.lower() not in known:
        raise ValueError(f"unknown TSIG algorithm {algorithm!r}; one of {', '.join(sorted(known))}")
    try:
        raw = base64.b64decode(secret, validate=True)
    except binascii.Error:
        raise ValueError("the TSIG secret is not base64") from None
    return TsigKey(name, algorithm.lower(), raw)
