"""Loading: the main file and its includes → a validated Config, or every problem found.

Loading is fast on the common path (libyaml's CSafeLoader, plain dicts) and precise on the error
path: every problem is collected with its file and key path, and the line is found afterwards
(srvd.config.yamlfile).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from srvd.config.model import (
    Config,
    ConfigError,
    DomainOverride,
    Entries,
    KeyPath,
    Problem,
    Profile,
    TransferSettings,
)
from srvd.config.reader import (
    PROFILE_KEYS,
    _Fields,
    _Invalid,
    _kind,
    _Reader,
    _Stop,
    _suggest,
)
from srvd.config.transfer import read_catalog, read_transfer
from srvd.config.yamlfile import _FileProblem, _locate, _parse_file
from srvd.wire.discovery import TEMPLATE
from srvd.wire.names import InvalidName, host_name, to_ascii

DOMAIN_KEYS = ("profile", *PROFILE_KEYS)
TOP_KEYS = (
    "listen",
    "workers",
    "metrics",
    "zone",
    "profiles",
    "domains",
    "include",
    "state_dir",
    "tcp",
    "udp",
    "rrl",
    "limits",
    # srvd as a hidden primary (srvd.config.transfer)
    "transfer",
    "catalog",
)
INCLUDE_KEYS = ("profiles", "domains", "include")


@dataclass(slots=True)
class _Source:
    file: str
    data: dict[Any, Any]
    raw: bytes  # the file as read
    mtime: float


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, include and validate a configuration. Raises ConfigError with every problem found."""
    reader = _Reader()
    source = os.path.abspath(path)
    complete = True
    try:
        return _load(reader, source)
    except _Stop:
        complete = False
    except _Invalid:
        pass
    _resolve_lines(reader.problems)
    order = {file: i for i, file in enumerate(dict.fromkeys(p.file for p in reader.problems))}
    reader.problems.sort(key=lambda p: (order[p.file], p.line or 0))
    if not reader.problems:  # pragma: no cover - _Invalid is only raised after a problem
        reader.problems.append(Problem(source, (), "invalid configuration"))
    raise ConfigError(reader.problems, complete)


def _resolve_lines(problems: list[Problem]) -> None:
    for problem in problems:
        if problem.line is None and problem.path:
            problem.line = _locate(problem.file, problem.path)


def _read_sources(reader: _Reader, main: str) -> list[_Source]:
    """The main file and every include, depth first, each file once."""
    sources: list[_Source] = []
    seen: set[str] = set()

    def visit(file: str, allowed: tuple[str, ...], via: Problem | None) -> None:
        real = os.path.realpath(file)
        if real in seen:
            if via:
                reader.problem(via.path, f"{file} is included more than once", via.file)
            return
        seen.add(real)
        reader.file = file
        most = reader.bounds.max_file_size
        try:
            with open(file, "rb") as handle:
                stat = os.fstat(handle.fileno())
                if stat.st_size > most:
                    where = via or Problem(file, (), "")
                    reader.problem(
                        where.path,
                        f"{file} is {stat.st_size} octets; at most {most} (limits: max_file_size)",
                        where.file,
                    )
                    return
                raw = handle.read(most + 1)
                mtime = stat.st_mtime
            data = _parse_file(file, raw)
        except OSError as exc:
            if via:
                reader.problem(via.path, f"cannot read {file}: {exc.strerror}", via.file)
            else:
                reader.problem((), f"cannot read: {exc.strerror}", file)
            return
        except _FileProblem as exc:
            reader.problems.append(exc.problem)
            return
        if data is None:
            data = {}
        if not isinstance(data, dict):
            reader.problems.append(
                Problem(file, (), f"expected a mapping at the top, found {_kind(data)}", 1)
            )
            return
        reader.file = file
        for key in data:
            if key in allowed:
                continue
            if key in TOP_KEYS:
                reader.problem((key,), "allowed only in the main configuration file", file)
            else:
                reader.problem((key,), f"unknown key{_suggest(key, allowed)}", file)
        sources.append(_Source(file, data, raw, mtime))
        if via is None:  # the main file: its limits hold for the includes and all they define
            with contextlib.suppress(_Invalid):  # reported; the defaults hold meanwhile
                reader.bounds = reader.limits(data.get("limits"), ("limits",))
        includes = data.get("include")
        if includes is None:
            return
        if isinstance(includes, str):
            includes = [includes]
        if not isinstance(includes, list):
            reader.problem(("include",), "expected a list of file names or patterns", file)
            return
        base = os.path.dirname(file)
        for i, pattern in enumerate(includes):
            where = Problem(file, ("include", i), "")
            if not isinstance(pattern, str) or not pattern:
                reader.problem(where.path, "expected a file name or a glob pattern", file)
                continue
            full = os.path.join(base, os.path.expanduser(pattern))
            if glob.has_magic(full):
                matches = sorted(glob.glob(full))
            elif os.path.exists(full):
                matches = [full]
            else:
                reader.problem(where.path, f"included file {full} does not exist", file)
                continue
            for match in matches:
                if glob.has_magic(full) and os.path.realpath(match) in seen:
                    continue  # a pattern may well match the including file or one read already
                visit(match, INCLUDE_KEYS, where)

    visit(main, TOP_KEYS, None)
    return sources


def _load(reader: _Reader, main: str) -> Config:
    sources = _read_sources(reader, main)
    if not sources:
        raise _Invalid
    top = sources[0].data
    reader.file = main
    fields = _Fields()
    listen = fields(reader.listen, top.get("listen"), ("listen",))
    zone = fields(reader.zone, top.get("zone"), ("zone",))
    tcp = fields(reader.tcp, top.get("tcp"), ("tcp",))
    udp = fields(reader.udp, top.get("udp"), ("udp",))
    rrl = fields(reader.rrl, top.get("rrl"), ("rrl",))
    metrics = fields(reader.metrics, top.get("metrics"), ("metrics",))
    workers = fields(reader.workers, top.get("workers"), ("workers",))
    state_dir = top.get("state_dir")
    if state_dir is not None and not isinstance(state_dir, str):
        reader.problem(("state_dir",), "expected a directory name")
        state_dir = None
    if isinstance(state_dir, str):
        state_dir = os.path.join(os.path.dirname(main), os.path.expanduser(state_dir))

    transfer, catalog = _primary(reader, fields, top, main)

    all_profiles = _profiles(reader, sources)
    domains = _domains(reader, sources, all_profiles)
    profiles = {name: p for name, p in all_profiles.items() if p is not None}
    if reader.problems or not fields.ok:
        raise _Invalid
    assert listen is not None and zone is not None and tcp is not None and udp is not None
    assert rrl is not None
    digest = hashlib.sha256()  # of the bytes of every file, in the order read
    for source in sources:
        digest.update(source.raw)
    return Config(
        source=main,
        files=tuple(s.file for s in sources),
        listen=listen,
        zone=zone,
        tcp=tcp,
        udp=udp,
        rrl=rrl,
        limits=reader.bounds,
        state_dir=state_dir,
        metrics=metrics,
        workers=workers or 1,
        sha256=digest.hexdigest(),
        mtime=int(max(source.mtime for source in sources)),
        profiles=MappingProxyType(profiles),
        domains=domains,
        transfer=transfer,
        catalog=catalog,
    )


def _primary(
    reader: _Reader, fields: _Fields, top: dict[Any, Any], main: str
) -> tuple[TransferSettings | None, str | None]:
    """``transfer:`` and ``catalog:`` (srvd.config.transfer)."""
    transfer = None
    if top.get("transfer") is not None:
        base = os.path.dirname(main)
        transfer = fields(read_transfer, reader, top["transfer"], ("transfer",), base)
    catalog = fields(read_catalog, reader, top.get("catalog"), ("catalog",))
    return transfer, catalog


def _profiles(reader: _Reader, sources: list[_Source]) -> dict[str, Profile | None]:
    """Profiles by name; None for a profile that is defined but invalid (already reported)."""
    profiles: dict[str, Profile | None] = {}
    origin: dict[str, str] = {}
    for source in sources:
        reader.file = source.file
        raw = source.data.get("profiles")
        if raw is None:
            continue
        if not isinstance(raw, dict):
            reader.problem(("profiles",), f"expected a mapping of profiles, found {_kind(raw)}")
            continue
        for name, body in raw.items():
            path: KeyPath = ("profiles", name)
            if not isinstance(name, str):
                reader.problem(path, "a profile name must be a string")
                continue
            if name in origin:
                first = _locate(origin[name], path)
                reader.problem(
                    path,
                    f"profile {name!r} is defined twice (first in {origin[name]}"
                    f"{f':{first}' if first else ''})",
                )
                continue
            origin[name] = source.file
            try:
                body = reader.mapping(body, path, PROFILE_KEYS)
            except _Invalid:
                profiles[name] = None
                continue
            entries = reader.entries(body, path)
            reader.check_conflicts(entries, path)
            profiles[name] = Profile(name, MappingProxyType(entries))
    return profiles


def _domains(
    reader: _Reader, sources: list[_Source], profiles: dict[str, Profile | None]
) -> dict[str, str | DomainOverride]:
    domains: dict[str, str | DomainOverride] = {}
    known = {name: name for name in profiles}  # one string object per profile name, shared
    overheads = {name: template_overhead(p.entries) for name, p in profiles.items() if p}
    for index, source in enumerate(sources):
        reader.file = source.file
        raw = source.data.get("domains")
        if raw is None:
            continue
        if not isinstance(raw, dict):
            reader.problem(("domains",), f"expected a mapping of domains, found {_kind(raw)}")
            continue
        for key, value in raw.items():
            path: KeyPath = ("domains", key)
            name = _domain_name(reader, key, path)
            if name is None:
                continue
            if len(domains) >= reader.bounds.max_domains and name not in domains:
                reader.problem(
                    path,
                    f"more than {reader.bounds.max_domains} domains (limits: max_domains)",
                )
                raise _Stop
            if name in domains:
                first_file, first_key = _first_definition(sources[: index + 1], name, key)
                line = _locate(first_file, ("domains", first_key))
                reader.problem(
                    path,
                    f"domain {name} is defined twice (first in {first_file}"
                    f"{f':{line}' if line else ''})",
                )
                continue
            if isinstance(value, str):
                profile = known.get(value)
                if profile is None:
                    reader.problem(path, f"unknown profile {value!r}{_suggest(value, known)}")
                elif profiles[profile] is not None and _check_template_length(
                    reader, name, overheads.get(profile, 0), path
                ):  # (an invalid profile was reported already)
                    domains[name] = profile
                continue
            try:
                body = reader.mapping(value, path, DOMAIN_KEYS)
            except _Invalid:
                continue
            if value is None or not body:
                reader.problem(path, "expected a profile name or a mapping with 'profile:'")
                continue
            profile_name = body.get("profile")
            if profile_name is not None and not isinstance(profile_name, str):
                reader.problem(
                    (*path, "profile"), f"expected a profile name, found {_kind(profile_name)}"
                )
                continue
            if profile_name is not None and profile_name not in known:
                reader.problem(
                    (*path, "profile"),
                    f"unknown profile {profile_name!r}{_suggest(profile_name, known)}",
                )
                continue
            base = profiles[profile_name] if profile_name is not None else None
            if profile_name is not None and base is None:
                continue  # the invalid profile was reported already
            entries = reader.entries({k: v for k, v in body.items() if k != "profile"}, path)
            override = DomainOverride(
                known[profile_name] if profile_name is not None else None,
                MappingProxyType(entries),
            )
            merged = dict(base.entries) if base is not None else {}
            merged.update(entries)
            reader.check_conflicts(merged, path)
            if _check_template_length(reader, name, template_overhead(merged), path):
                domains[name] = override
    return domains


def template_overhead(entries: Entries) -> int:
    """The most octets a ``{domain}`` SRV target adds in front of the domain's wire name."""
    most = 0
    for rrsets in entries.values():
        for spec in rrsets or ():
            for record in spec.srv:
                if record.target.endswith(TEMPLATE):
                    head = record.target.removesuffix(TEMPLATE)
                    most = max(most, len(head))  # "mail." is 5 octets in wire form too
    return most


def _check_template_length(reader: _Reader, name: str, overhead: int, path: KeyPath) -> bool:
    if overhead and overhead + len(name) + 2 > 255:
        reader.problem(
            path,
            f"a {{domain}} target of this domain's records would be longer than 255 octets "
            f"({overhead + len(name) + 2}) for {name}",
        )
        return False
    return True


def _domain_name(reader: _Reader, key: Any, path: KeyPath) -> str | None:
    if not isinstance(key, str):
        reader.problem(path, f"a domain name must be a string, found {_kind(key)}")
        return None
    try:
        return host_name(key)
    except InvalidName as exc:
        reader.problem(path, str(exc))
        return None


def _first_definition(sources: list[_Source], name: str, key: str) -> tuple[str, str]:
    """Where a domain was first defined (error path only)."""
    for source in sources:
        raw = source.data.get("domains")
        if not isinstance(raw, dict):
            continue
        for other in raw:
            if isinstance(other, str) and other is not key:
                try:
                    if to_ascii(other) == name:
                        return source.file, other
                except InvalidName:
                    continue
    return sources[-1].file, key
