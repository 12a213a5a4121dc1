"""Reading the zones to import: RFC 1035 master files (one per customer domain, named after it)
or zone transfers (AXFR, TSIG optional) from the current primary. dnspython parses and
transfers; what it gives is turned into plain records (srvd.migrate.records) at once.

Master files are parsed in worker processes, one per core: dnspython takes about 1.5 ms for a
small zone, so 10,000 zones take 15 s on one core.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.query
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.SRV
import dns.tsig
import dns.tsigkeyring
import dns.xfr
import dns.zone

from srvd.migrate.profiles import SUBZONES, Extracted, extract
from srvd.migrate.records import Record, SourceZone, TsigKey
from srvd.wire.names import InvalidName, host_name

SUFFIXES = (".zone", ".db")  # left out of a file's name to give the domain


def records_of(zone: dns.zone.Zone, domain: str) -> tuple[Record, ...]:
    """The records of a zone at or below the subzones of ``domain`` srvd takes over (``_tcp``,
    ``_udp``, ``_axigen``), class IN, as plain records. Other names are passed over before any
    of their records is converted (most of a customer zone: a third of the time taken)."""
    origin = zone.origin
    assert origin is not None
    top = dns.name.from_text(domain)
    depth = len(top.labels)  # the subzone's label is the one in front of the domain's
    subzones = {label.encode() for label in SUBZONES}
    out = []
    for name, node in zone.nodes.items():
        absolute = name.derelativize(origin)
        labels = absolute.labels
        if len(labels) <= depth or labels[-depth - 1].lower() not in subzones:
            continue
        if not absolute.is_subdomain(top):
            continue
        owner = absolute.to_text(omit_final_dot=True).lower()
        for rdataset in node.rdatasets:
            if rdataset.rdclass != dns.rdataclass.IN:
                continue
            out += _records(owner, rdataset, origin)
    return tuple(out)


def _records(owner: str, rdataset: dns.rdataset.Rdataset, origin: dns.name.Name) -> list[Record]:
    rtype = dns.rdatatype.to_text(rdataset.rdtype)
    out = []
    for rdata in rdataset:
        data: tuple[int, int, int, str] | tuple[bytes, ...] | str
        if isinstance(rdata, dns.rdtypes.IN.SRV.SRV):
            target = rdata.target.derelativize(origin)
            text = "." if target == dns.name.root else target.to_text(omit_final_dot=True)
            data = (rdata.priority, rdata.weight, rdata.port, text.lower())
        elif isinstance(rdata, dns.rdtypes.ANY.TXT.TXT):
            data = tuple(rdata.strings)
        else:
            data = rdata.to_text(origin=origin, relativize=False)
        out.append(Record(owner, rtype, rdataset.ttl, data))
    return out


def domain_of_file(filename: str) -> str | None:
    """The customer domain a master file is named after, or None (not a zone file)."""
    stem = filename
    for suffix in SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    if not stem or stem.startswith(".") or stem.endswith("~"):
        return None
    try:
        return host_name(stem)
    except InvalidName:
        return None


def read_file(path: str, domain: str) -> SourceZone:
    try:
        zone = dns.zone.from_file(path, origin=f"{domain}.", relativize=False, check_origin=False)
    except (OSError, dns.exception.DNSException, UnicodeDecodeError) as exc:
        return SourceZone(domain, error=f"{path}: {exc}")
    return SourceZone(domain, records_of(zone, domain))


def _extract_file(job: tuple[str, str]) -> Extracted:
    return extract(read_file(*job))


@dataclass(frozen=True, slots=True)
class Listing:
    jobs: list[tuple[str, str]]  # (path, domain)
    skipped: list[str]  # files that are not named after a domain, or name one twice


def list_directory(directory: str) -> Listing:
    jobs: list[tuple[str, str]] = []
    skipped: list[str] = []
    seen: dict[str, str] = {}
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if not entry.is_file():
            continue
        domain = domain_of_file(entry.name)
        if domain is None:
            skipped.append(f"{entry.path}: not named after a domain")
        elif domain in seen:
            skipped.append(f"{entry.path}: {domain} is read from {seen[domain]} already")
        else:
            seen[domain] = entry.path
            jobs.append((entry.path, domain))
    return Listing(jobs, skipped)


def extract_files(jobs: Sequence[tuple[str, str]], processes: int) -> Iterator[Extracted]:
    """Each master file read and its discovery records extracted, in the order given."""
    if processes <= 1 or len(jobs) < 200:
        yield from map(_extract_file, jobs)
        return
    chunk = max(1, min(500, len(jobs) // (processes * 8)))
    with ProcessPoolExecutor(processes) as pool:
        yield from pool.map(_extract_file, jobs, chunksize=chunk)


# ---------------------------------------------------------------------------------------------
# AXFR


def read_zone_list(path: str) -> list[str]:
    """Domains, one a line (the first word of it); ``#`` starts a comment."""
    out: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            try:
                out.append(host_name(words[0]))
            except InvalidName as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
    return list(dict.fromkeys(out))


def transfer(host: str, port: int, domain: str, key: TsigKey | None, timeout: float) -> SourceZone:
    """One zone by AXFR over TCP (signed with ``key``, every message's TSIG checked)."""
    zone = dns.zone.Zone(f"{domain}.")
    keyring = None
    keyname = None
    if key is not None:
        keyname = dns.name.from_text(key.name)
        keyring = {keyname: dns.tsig.Key(keyname, key.secret, key.algorithm)}
    try:
        query, _serial = dns.xfr.make_query(zone, keyring=keyring, keyname=keyname)
        dns.query.inbound_xfr(host, zone, query, port=port, timeout=timeout, lifetime=timeout * 4)
    except (OSError, EOFError, dns.exception.DNSException) as exc:
        reason = str(exc) or type(exc).__name__
        return SourceZone(domain, error=f"AXFR of {domain} from {host}:{port}: {reason}")
    return SourceZone(domain, records_of(zone, domain))


def extract_transfers(
    host: str,
    port: int,
    domains: Sequence[str],
    key: TsigKey | None,
    timeout: float,
    connections: int = 4,
) -> Iterator[Extracted]:
    """Each zone transferred and its discovery records extracted, in the order given, with at
    most ``connections`` transfers at a time (a round trip or more per zone: one at a time would
    take minutes for thousands of zones from a primary some milliseconds away)."""

    def one(domain: str) -> Extracted:
        return extract(transfer(host, port, domain, key, timeout))

    if connections <= 1:
        yield from map(one, domains)
        return
    with ThreadPoolExecutor(connections) as pool:
        yield from pool.map(one, domains)
