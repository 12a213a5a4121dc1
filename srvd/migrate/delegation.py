"""The records each parent zone needs to delegate a domain's subzones to srvd: NS for every
served apex (``_tcp.D``, ``_axigen.D``, ...), naming ``zone.nameservers``, and DS once the
subzones are signed. As master-file lines, or as ``nsupdate`` input."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from srvd.config import Config

DEFAULT_TTL = 86400  # the parent's NS TTL: a day is usual (README "Delegation")


@dataclass(frozen=True, slots=True)
class ParentRecord:
    owner: str  # absolute, lowercase, without the trailing dot
    rtype: str  # "NS" or "DS"
    data: str  # the RDATA in master-file form (names absolute, with the trailing dot)


def apexes(config: Config, domain: str) -> list[str]:
    """The apexes of the zones srvd serves for one configured domain, sorted."""
    labels = {
        spec.owner.rsplit(".", 1)[-1]
        for rrsets in config.entries_of(domain).values()
        if rrsets
        for spec in rrsets
    }
    return [f"{label}.{domain}" for label in sorted(labels)]


def signing_records(config: Config, apex: str) -> Iterator[ParentRecord]:
    """The DNSSEC hook: the DS records the parent must hold for a signed subzone ``apex``.

    srvd signs nothing yet, so there are none, and ``srvd verify-delegation`` then expects no
    DS at the cut (a DS there makes validating resolvers reject srvd's unsigned answers). When
    signing lands, this yields a DS per key-signing key of ``apex`` (RFC 4034 §5), and both
    ``srvd delegation`` and ``srvd verify-delegation`` pick it up with no other change.
    """
    return iter(())


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
