"""Zone records → srvd profiles: what each domain publishes, in srvd's terms, and the profiles
and per-domain overrides that say it all in the fewest lines.

Pure: plain records in (srvd.migrate.records), plain data out (written as YAML by
srvd.migrate.yamltext). Every value is what srvd's configuration reader would make of the YAML
written for it, so that srvd serves exactly the records that were read; what srvd cannot serve
exactly is left out and said (``Extracted.notes``), never approximated silently.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeAlias, cast

from srvd.migrate.records import Record, SourceZone, SrvData, TxtData
from srvd.wire.discovery import SERVICE_KEYS, TEMPLATE

# The subzones srvd takes over: RFC 6186/6764/8620 and the other _tcp/_udp services, Axigen.
SUBZONES = ("_tcp", "_udp", "_axigen")
DAV_KEYS = frozenset(("caldav", "caldavs", "carddav", "carddavs"))
MAX_RECORDS = 100  # srvd's default limits.max_records_per_name
MAX_TXT = 4000  # srvd's default limits.max_txt_length

_HOST = re.compile(r"(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)*(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_OWNER_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_TEMPLATED = re.compile(r"(?:(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)*)\{domain\}\Z")

SrvValue: TypeAlias = tuple[tuple[tuple[int, int, int, str], ...], str | None]  # records, path
Value: TypeAlias = SrvValue | str | tuple[str, ...]  # service or "srv X"; axigen; "txt X"
Content: TypeAlias = tuple[tuple[str, Value], ...]  # (key, value) sorted by key
OFF: SrvValue = (((0, 0, 0, "."),), None)


@dataclass(slots=True)
class Extracted:
    """One domain in srvd's terms: profile keys (as srvd.config reads them) and their values,
    the TTLs of the records taken, and what was not carried over."""

    domain: str
    entries: dict[str, Value] = field(default_factory=dict)
    ttls: Counter[int] = field(default_factory=Counter)
    rrset_ttls: dict[str, tuple[int, ...]] = field(default_factory=dict)  # "owner TYPE" → TTLs
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # the zone could not be read at all

    @property
    def content(self) -> Content:
        return tuple(sorted(self.entries.items()))


def extract(zone: SourceZone) -> Extracted:
    """The discovery records of one domain (below ``_tcp``, ``_udp`` and ``_axigen``)."""
    domain = zone.domain
    out = Extracted(domain, error=zone.error)
    groups: dict[tuple[str, str], list[Record]] = {}
    for record in zone.records:
        if _subzone_of(record.owner, domain) is not None:
            groups.setdefault((record.owner, record.rtype), []).append(record)
    # NS at or below a subzone's apex: a delegation, the records below it are elsewhere
    delegated = sorted(owner for owner, rtype in groups if rtype == "NS")
    for cut in delegated:
        servers = ", ".join(sorted(str(r.data) for r in groups.pop((cut, "NS"))))
        out.notes.append(
            f"{cut}: already delegated (NS {servers}); the records below it live on those "
            "servers, not in this zone, and were not read"
        )
    txt_at: dict[str, list[str] | None] = {}
    for (owner, rtype), records in sorted(groups.items()):
        if any(owner == cut or owner.endswith("." + cut) for cut in delegated):
            continue
        relative = owner[: -len(domain) - 1]
        if not all(_OWNER_LABEL.match(label) for label in relative.split(".")):
            out.notes.append(
                f"{owner} {rtype}: not carried over: srvd's owner names have letters, digits, "
                "hyphens and underscores only"
            )
            continue
        if rtype == "SRV":
            _take_srv(out, relative, records)
        elif rtype == "TXT":
            txt_at[relative] = _texts(out, owner, records)
        elif rtype == "CNAME":
            out.notes.append(
                f"{owner} CNAME {records[0].data}: not carried over: srvd serves no CNAME; "
                "configure the target's SRV/TXT records under this name instead"
            )
        else:
            out.notes.append(
                f"{owner} {rtype}: not carried over: srvd serves only SRV and TXT below "
                f"{_subzone_of(owner, domain)}, and delegating it hides these"
            )
    for relative, taken in sorted(txt_at.items()):
        if taken is not None:
            _take_txt(out, relative, taken)
    return out


def _subzone_of(owner: str, domain: str) -> str | None:
    """The apex of the srvd subzone that holds ``owner``, or None."""
    if not owner.endswith("." + domain):
        return None
    last = owner[: -len(domain) - 1].rsplit(".", 1)[-1]
    return f"{last}.{domain}" if last in SUBZONES else None


def _template(name: str, domain: str) -> str:
    """A target or host with the customer domain written as ``{domain}``."""
    if name == domain:
        return TEMPLATE
    if name.endswith("." + domain):
        return name[: -len(domain)] + TEMPLATE
    return name


def _template_text(text: str, domain: str) -> str:
    """A TXT text with the customer domain, where it stands as a whole name (not inside a
    longer label), written as ``{domain}``."""
    if domain not in text:
        return text
    pattern = rf"(?<![A-Za-z0-9-]){re.escape(domain)}(?![A-Za-z0-9-])"
    return re.sub(pattern, TEMPLATE, text)


def _service_of(relative: str) -> str | None:
    head, _, proto = relative.partition(".")
    if proto == "_tcp" and head.startswith("_") and head[1:] in SERVICE_KEYS:
        return head[1:]
    return None


def _take_srv(out: Extracted, relative: str, records: list[Record]) -> None:
    owner = f"{relative}.{out.domain}"
    if len(records) > MAX_RECORDS:
        out.notes.append(
            f"{owner} SRV: not carried over: {len(records)} records, srvd's limit "
            f"is {MAX_RECORDS} at one name"
        )
        return
    rows = []
    for record in records:
        priority, weight, port, target = cast(SrvData, record.data)
        if target != ".":
            if not _HOST.match(target) or len(target) > 253:
                out.notes.append(
                    f"{owner} SRV: not carried over: the target {target} is not a host name"
                )
                return
            target = _template(target, out.domain)
        rows.append((priority, weight, port, target))
    if any(row[3] == "." for row in rows) and len(rows) > 1:
        out.notes.append(
            f"{owner} SRV: not carried over: a '.' target beside other records (RFC 2782 "
            "allows '.' only alone; srvd refuses it)"
        )
        return
    value: SrvValue = (tuple(sorted(rows)), None)
    key = _service_of(relative) or f"srv {relative}"
    out.entries[key] = value
    out.ttls.update(r.ttl for r in records)
    _ttl_seen(out, owner, "SRV", records)


def _ttl_seen(out: Extracted, owner: str, rtype: str, records: list[Record]) -> None:
    out.rrset_ttls[f"{owner} {rtype}"] = tuple(sorted({r.ttl for r in records}))


def _texts(out: Extracted, owner: str, records: list[Record]) -> list[str] | None:
    """The TXT records of one name as srvd's texts, or None when they cannot be carried over."""
    if len(records) > MAX_RECORDS:
        out.notes.append(
            f"{owner} TXT: not carried over: {len(records)} records, srvd's limit "
            f"is {MAX_RECORDS} at one name"
        )
        return None
    texts = []
    for record in records:
        strings = cast(TxtData, record.data)
        raw = b"".join(strings)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            out.notes.append(f"{owner} TXT: not carried over: a text that is not UTF-8")
            return None
        if TEMPLATE in text:
            out.notes.append(
                f"{owner} TXT: not carried over: the text holds {TEMPLATE}, which srvd would "
                "replace by the domain"
            )
            return None
        if len(raw) > MAX_TXT:
            out.notes.append(
                f"{owner} TXT: not carried over: {len(raw)} octets, srvd's limit is {MAX_TXT}"
            )
            return None
        split = tuple(raw[i : i + 255] for i in range(0, len(raw), 255)) or (b"",)
        if split != strings:
            out.notes.append(
                f"{owner} TXT: the character-strings of a record are joined and split at 255 "
                "octets by srvd (the text is the same, its division differs)"
            )
        texts.append(_template_text(text, out.domain))
    out.ttls.update(r.ttl for r in records)
    _ttl_seen(out, owner, "TXT", records)
    return texts


def _take_txt(out: Extracted, relative: str, texts: list[str]) -> None:
    service = _service_of(relative)
    if service in DAV_KEYS and len(texts) == 1 and service in out.entries:
        records, path = cast(SrvValue, out.entries[service])
        text = texts[0]
        if (
            path is None
            and text.startswith("path=/")
            and TEMPLATE not in text
            and all(ord(c) >= 0x20 for c in text)
            and len(text.encode()) <= 1005
        ):
            out.entries[service] = (records, text[5:])
            return
    if relative == "_axigen" and len(texts) == 1 and _axigen_form(texts[0]):
        out.entries["axigen"] = texts[0]
        return
    out.entries[f"txt {relative}"] = tuple(sorted(texts))


def _axigen_form(text: str) -> bool:
    """Whether srvd's ``axigen:`` key, given ``text``, publishes exactly ``text``."""
    host, sep, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if sep and (not port.isdigit() or str(int(port)) != port or not 0 < int(port) <= 65535):
        return False
    if TEMPLATE in host:
        return bool(_TEMPLATED.match(host))
    return bool(_HOST.match(host)) and len(host) <= 253


# ---------------------------------------------------------------------------------------------
# Profiles


@dataclass(frozen=True, slots=True)
class Assignment:
    """What one domain is given: a profile (or none) and the keys that differ from it (None:
    the key is removed)."""

    profile: str | None
    overrides: tuple[tuple[str, Value | None], ...] = ()


@dataclass(slots=True)
class Plan:
    ttl: int
    profiles: dict[str, Content]  # in the order written
    domains: dict[str, Assignment]  # sorted by name
    members: Counter[str]  # domains per profile
    inline: int = 0  # domains with records of their own, no profile
    overridden: int = 0  # domains on a profile with overrides
    notes: dict[str, list[str]] = field(default_factory=dict)  # per domain
    empty: list[str] = field(default_factory=list)  # no discovery records at all
    failed: dict[str, str] = field(default_factory=dict)  # zone not read


def size(value: Value | None) -> int:
    """Lines of YAML a value takes (what a profile or an override costs)."""
    if value is None or isinstance(value, str):
        return 1
    if len(value) == 2 and isinstance(value[0], tuple):
        return max(1, len(value[0]))  # SRV records
    return max(1, len(value))


def content_size(content: Content) -> int:
    return sum(size(v) for _k, v in content)


def difference(content: Content, base: Content) -> tuple[tuple[str, Value | None], ...]:
    """The overrides that make ``base`` into ``content``."""
    mine, theirs = dict(content), dict(base)
    changed: list[tuple[str, Value | None]] = [(k, v) for k, v in content if theirs.get(k) != v]
    changed += [(k, None) for k in theirs if k not in mine]
    return tuple(sorted(changed, key=lambda kv: kv[0]))


def plan(extracted: Iterable[Extracted], ttl: int | None = None) -> Plan:
    """Profiles for every domain: one per distinct record pattern shared by two or more
    domains, the rest as overrides of the nearest profile when that is shorter, or on their
    own. Deterministic: the same zones give the same names and the same file."""
    groups: dict[Content, list[str]] = {}
    ttls: Counter[int] = Counter()
    notes: dict[str, list[str]] = {}
    empty: list[str] = []
    failed: dict[str, str] = {}
    items = list(extracted)
    for item in items:
        if item.error is not None:
            failed[item.domain] = item.error
            continue
        if item.notes:
            notes[item.domain] = list(item.notes)
        if not item.entries:
            empty.append(item.domain)
            continue
        ttls.update(item.ttls)
        groups.setdefault(item.content, []).append(item.domain)
    chosen_ttl = ttl if ttl is not None else _common(ttls)
    result = Plan(chosen_ttl, {}, {}, Counter(), notes=notes, empty=sorted(empty), failed=failed)
    order = sorted(groups.items(), key=lambda item: (-len(item[1]), min(item[1])))
    used_names: set[str] = set()
    for content, domains in order:
        cost = content_size(content)
        best: tuple[int, str, tuple[tuple[str, Value | None], ...]] | None = None
        for name, base in result.profiles.items():
            diff = difference(content, base)
            lines = sum(size(v) for _k, v in diff)
            if best is None or lines < best[0]:
                best = (lines, name, diff)
        if best is not None and len(domains) * best[0] < cost:
            for domain in domains:
                result.domains[domain] = Assignment(best[1], best[2])
            result.members[best[1]] += len(domains)
            result.overridden += len(domains)
        elif len(domains) >= 2:
            name = _name(content, used_names)
            used_names.add(name)
            result.profiles[name] = content
            result.members[name] += len(domains)
            for domain in domains:
                result.domains[domain] = Assignment(name)
        else:
            for domain in domains:
                result.domains[domain] = Assignment(None, content)
            result.inline += len(domains)
    result.domains = dict(sorted(result.domains.items()))
    for item in items:  # RFC 2181 §5.2: one TTL per RRset; srvd gives zone.ttl to every record
        odd = [
            f"{where}: TTL {'/'.join(map(str, found))}, served with zone.ttl {chosen_ttl}"
            for where, found in sorted(item.rrset_ttls.items())
            if found != (chosen_ttl,)
        ]
        if odd and item.domain in result.domains:
            result.notes.setdefault(item.domain, []).extend(odd)
    return result


def _common(ttls: Counter[int]) -> int:
    if not ttls:
        return 3600
    most = max(ttls.values())
    return max(t for t, n in ttls.items() if n == most)


def _name(content: Content, used: set[str]) -> str:
    """A readable profile name: the provider domain most targets share (``mail.provider.example``
    → ``provider-example``), ``own-domain`` for records on the customer's own hosts."""
    hosts: Counter[str] = Counter()
    templated = 0
    for key, value in content:
        if key == "axigen" or key.startswith("txt "):
            continue
        for record in cast(SrvValue, value)[0]:
            target = record[3]
            if target == ".":
                continue
            if target.endswith(TEMPLATE):
                templated += 1
                continue
            labels = target.split(".")
            hosts[".".join(labels[1:]) if len(labels) > 2 else target] += 1
    if hosts and max(hosts.values()) >= templated:
        top = max(hosts.values())
        base = min(h for h, n in hosts.items() if n == top).replace(".", "-")
    elif templated:
        base = "own-domain"
    else:
        base = "profile"
    name, number = base, 1
    while name in used:
        number += 1
        name = f"{base}-{number}"
    return name
