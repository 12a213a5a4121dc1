"""Loading: the main file and its includes → a validated Config, or every problem found.

Two readers give the same result. The streaming one reads each YAML file as libyaml parses it
(srvd.config.yamlfile.stream_mapping) and validates every domain as it is read, handing it to a
DomainSink: a million-entry ``domains:`` mapping never exists whole, neither as YAML nodes nor as
a dict. It reads valid configurations only: at the first problem, or at anything it leaves to
the other (an anchor, a tag, a ``limits:`` after the domains it bounds), it gives up, and the
exact reader reads everything again, composed as a whole, and reports every problem with its
file, line and key (the line is found afterwards, srvd.config.yamlfile).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import itertools
import os
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, BinaryIO, TypeAlias, cast

import yaml

from srvd.config.dnssec import key_tags, read_dnssec
from srvd.config.http import read_http
from srvd.config.model import (
    Config,
    ConfigError,
    DomainOverride,
    Entries,
    HttpSettings,
    KeyPath,
    LimitSettings,
    Problem,
    Profile,
    TransferSettings,
    ZoneSettings,
)
from srvd.config.ops import read_control, read_reload
from srvd.config.reader import (
    PROFILE_KEYS,
    _Fields,
    _Invalid,
    _kind,
    _Reader,
    _Stop,
    _suggest,
    address_literal,
)
from srvd.config.transfer import read_catalog, read_transfer
from srvd.config.yamlfile import (
    StreamedMapping,
    Unusual,
    _FileProblem,
    _locate,
    _parse_file,
    stream_json,
    stream_mapping,
)
from srvd.wire.discovery import TEMPLATE
from srvd.wire.names import CANONICAL_HOST, InvalidName, host_name, to_ascii

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
    # discovery documents over HTTP (srvd.config.http)
    "http",
    # operations (srvd.config.ops)
    "reload",
    "control",
    # DNSSEC online signing (srvd.config.dnssec)
    "dnssec",
)
INCLUDE_KEYS = ("profiles", "domains", "include")


@dataclass(slots=True)
class _Source:
    file: str
    data: dict[Any, Any]
    raw: bytes  # the file as read
    mtime: float


Entry: TypeAlias = str | DomainOverride  # what a domain is given: a profile's name, or more


class DomainSink:
    """Where ``read_config`` puts the domains: each once, in the configuration's order."""

    def begin(self, zone: ZoneSettings, profiles: Mapping[str, Profile]) -> None:
        """Called before the first domain (but after placeholders): the zone settings, and the
        profiles read so far. Profiles read later are added to the same mapping before any
        domain that names them."""

    def domain(self, name: str, entry: Entry | None) -> None:
        """A validated domain. ``None`` keeps a domain's place in the configuration's order: its
        entry comes later, once what it names is read (``begin`` may not have been called)."""

    def restart(self) -> None:
        """Forget every domain given so far: they all come again, after ``begin`` again."""

    def http(self, settings: HttpSettings | None) -> None:
        """The ``http:`` settings (srvd.config.http), given before the first domain when the
        configuration has them: what a domain's tables are made of may depend on them (PACC's
        TXT, srvd.http.pacc)."""


class _Collect(DomainSink):
    def __init__(self) -> None:
        self.domains: dict[str, Entry | None] = {}

    def domain(self, name: str, entry: Entry | None) -> None:
        self.domains[name] = entry  # a placeholder's entry keeps its place

    def restart(self) -> None:
        self.domains = {}


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, include and validate a configuration. Raises ConfigError with every problem found."""
    sink = _Collect()
    config = read_config(path, sink)
    return replace(config, domains=cast(dict[str, Entry], sink.domains))


def read_config(path: str | os.PathLike[str], sink: DomainSink) -> Config:
    """Read, include and validate a configuration, its domains given to ``sink`` as they are
    read (the Config returned has none). Raises ConfigError with every problem found."""
    source = os.path.abspath(path)
    try:
        return _Streamer(source, sink).read()
    except _Fallback:
        pass
    sink.restart()
    config = _exact(source)
    if config.http is not None:
        sink.http(config.http)
    sink.begin(config.zone, config.profiles)
    for name, entry in config.domains.items():
        sink.domain(name, entry)
    return replace(config, domains=MappingProxyType({}))


def _exact(source: str) -> Config:
    """The exact reader: every file composed whole, every problem collected and located."""
    reader = _Reader()
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
        for match, where in _includes(reader, file, data.get("include"), seen):
            visit(match, INCLUDE_KEYS, where)

    visit(main, TOP_KEYS, None)
    return sources


def _includes(
    reader: _Reader, file: str, includes: Any, seen: set[str]
) -> Iterator[tuple[str, Problem]]:
    """The files an ``include:`` names, patterns expanded, each with where it was named; a file
    read already (``seen``, real paths) is left out when a pattern matches it."""
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
            yield match, where


def _load(reader: _Reader, main: str) -> Config:
    sources = _read_sources(reader, main)
    if not sources:
        raise _Invalid
    top = sources[0].data
    reader.file = main
    fields = _Fields()
    settings = _main_settings(reader, fields, top, main)
    all_profiles = _profiles(reader, sources)
    reader.file = main
    _http_profiles(reader, settings["http"], all_profiles)
    domains = _domains(reader, sources, all_profiles)
    profiles = {name: p for name, p in all_profiles.items() if p is not None}
    if reader.problems or not fields.ok:
        raise _Invalid
    digest = hashlib.sha256()  # of the bytes of every file, in the order read
    for source in sources:
        digest.update(source.raw)
    return Config(
        source=main,
        files=tuple(s.file for s in sources),
        limits=reader.bounds,
        sha256=digest.hexdigest(),
        mtime=int(max(source.mtime for source in sources)),
        profiles=MappingProxyType(profiles),
        domains=domains,
        **settings,
    )


def _main_settings(
    reader: _Reader, fields: _Fields, top: Mapping[Any, Any], main: str
) -> dict[str, Any]:
    """The main file's settings, as keyword arguments of Config (None where invalid)."""
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
    base = os.path.dirname(main)
    http = fields(read_http, reader, top.get("http"), ("http",), base)
    reload = fields(read_reload, reader, top.get("reload"), ("reload",))
    control = fields(read_control, reader, top.get("control"), ("control",), base)
    dnssec = None
    if top.get("dnssec") is not None:
        dnssec = fields(read_dnssec, reader, top["dnssec"], ("dnssec",), base)
        if dnssec is not None and zone is not None:
            zone = replace(zone, dnssec_keys=key_tags(dnssec))
    return {
        "dnssec": dnssec,
        "reload": reload,
        "control": control,
        "listen": listen,
        "zone": zone,
        "tcp": tcp,
        "udp": udp,
        "rrl": rrl,
        "metrics": metrics,
        "workers": workers or 1,
        "state_dir": state_dir,
        "transfer": transfer,
        "catalog": catalog,
        "http": http,
    }


def _http_profiles(
    reader: _Reader, http: HttpSettings | None, profiles: Mapping[str, object]
) -> None:
    """Every profile ``http.profiles`` names must be defined."""
    for name, _ in http.profiles if http is not None else ():
        if name not in profiles:
            reader.problem(
                ("http", "profiles", name), f"unknown profile {name!r}{_suggest(name, profiles)}"
            )


def _primary(
    reader: _Reader, fields: _Fields, top: Mapping[Any, Any], main: str
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
            profiles[name] = _profile(reader, name, body, path)
    return profiles


def _profile(reader: _Reader, name: str, body: Any, path: KeyPath) -> Profile | None:
    """One profile; None when it is invalid (reported)."""
    try:
        body = reader.mapping(body, path, PROFILE_KEYS)
    except _Invalid:
        return None
    entries = reader.entries(body, path)
    reader.check_conflicts(entries, path)
    return Profile(name, MappingProxyType(entries))


def _domains(
    reader: _Reader, sources: list[_Source], profiles: dict[str, Profile | None]
) -> dict[str, Entry]:
    domains: dict[str, Entry] = {}
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
            entry = _domain_entry(reader, name, value, path, profiles, known, overheads)
            if entry is not None:
                domains[name] = entry
    return domains


def _domain_entry(
    reader: _Reader,
    name: str,
    value: Any,
    path: KeyPath,
    profiles: Mapping[str, Profile | None],
    known: Mapping[str, str],
    overheads: Mapping[str, int],
) -> Entry | None:
    """What one domain is given; None when it is invalid (reported). ``known`` maps each profile
    name to one shared string, ``overheads`` each profile's ``template_overhead``."""
    if isinstance(value, str):
        profile = known.get(value)
        if profile is None:
            reader.problem(path, f"unknown profile {value!r}{_suggest(value, known)}")
        elif profiles[profile] is not None and _check_template_length(
            reader, name, overheads.get(profile, 0), path
        ):  # (an invalid profile was reported already)
            return profile
        return None
    try:
        body = reader.mapping(value, path, DOMAIN_KEYS)
    except _Invalid:
        return None
    if value is None or not body:
        reader.problem(path, "expected a profile name or a mapping with 'profile:'")
        return None
    profile_name = body.get("profile")
    if profile_name is not None and not isinstance(profile_name, str):
        reader.problem((*path, "profile"), f"expected a profile name, found {_kind(profile_name)}")
        return None
    if profile_name is not None and profile_name not in known:
        reader.problem(
            (*path, "profile"),
            f"unknown profile {profile_name!r}{_suggest(profile_name, known)}",
        )
        return None
    base = profiles[profile_name] if profile_name is not None else None
    if profile_name is not None and base is None:
        return None  # the invalid profile was reported already
    entries = reader.entries({k: v for k, v in body.items() if k != "profile"}, path)
    override = DomainOverride(
        known[profile_name] if profile_name is not None else None,
        MappingProxyType(entries),
    )
    merged = dict(base.entries) if base is not None else {}
    merged.update(entries)
    reader.check_conflicts(merged, path)
    if _check_template_length(reader, name, template_overhead(merged), path):
        return override
    return None


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
    if address_literal(key):
        reader.problem(path, f"{key!r} is an IP address, not a domain name")
        return None
    try:
        name = host_name(key)
    except InvalidName as exc:
        reader.problem(path, str(exc))
        return None
    if "." not in name:
        reader.problem(path, f"{name!r} is a top-level domain, not a customer domain")
        return None
    if name == "localhost" or name.endswith(".localhost"):
        reader.problem(path, f"{name!r}: localhost names are never delegated (RFC 6761 §6.3)")
        return None
    return name


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


# ---------------------------------------------------------------------------------------------
# The streaming reader


class _Fallback(Exception):
    """The streaming reader gives up: the exact reader reads the configuration again."""


class _Strict(_Reader):
    """A reader that gives up at the first problem (the exact reader then reports them all)."""

    def problem(self, path: KeyPath, message: str, file: str | None = None) -> None:
        raise _Fallback


class _Streamer:
    """Reads a valid configuration in one pass, each domain given to the sink as it is read.

    A domain waits (its place kept by a placeholder) only while what it needs is not read yet:
    the zone settings, or the profile it names (defined further on, or in an include).
    """

    def __init__(self, main: str, sink: DomainSink) -> None:
        self.main = main
        self.sink = sink
        self.reader = _Strict()
        self.files: list[str] = []
        self.seen: set[str] = set()  # real paths of the files read
        self.digest = hashlib.sha256()  # of the bytes of every file, in the order read
        self.mtime = 0.0
        self.top: dict[Any, Any] = {}  # the main file's settings, validated at the end
        self.profiles: dict[str, Profile] = {}
        self.known: dict[str, str] = {}  # profile name → the one string object of it
        self.overheads: dict[str, int] = {}
        # each domain's name, hashed: repeated names are found at the end (a set of a million
        # names would take 100 MiB; a hash seen twice sends the configuration to the exact
        # reader, which says which domain is defined twice, or reads it all if none is)
        self.hashes = array("q")
        self.waiting: list[tuple[str, str, Any, Any]] = []  # file, name, key, value
        self.begun = False  # the sink has the zone settings
        self.limits_read = False  # the main file's limits hold from now on
        self.bounded = False  # something was validated before them (under the defaults)

    def read(self) -> Config:
        self.visit(self.main, TOP_KEYS)
        ordered = sorted(self.hashes)
        if any(a == b for a, b in itertools.pairwise(ordered)):
            raise _Fallback
        del ordered
        reader = self.reader
        reader.file = self.main
        settings = _main_settings(reader, _Fields(), self.top, self.main)
        _http_profiles(reader, settings["http"], self.profiles)  # (a problem: the exact reader)
        if not self.begun:
            self.begin(settings["zone"])
        for file, name, key, value in self.waiting:
            reader.file = file
            self.sink.domain(name, self.entry(name, ("domains", key), value))
        self.waiting = []
        return Config(
            source=self.main,
            files=tuple(self.files),
            limits=reader.bounds,
            sha256=self.digest.hexdigest(),
            mtime=int(self.mtime),
            profiles=MappingProxyType(self.profiles),
            domains=MappingProxyType({}),
            **settings,
        )

    def visit(self, file: str, allowed: tuple[str, ...]) -> None:
        reader = self.reader
        real = os.path.realpath(file)
        if real in self.seen:
            raise _Fallback  # included twice
        self.seen.add(real)
        reader.file = file
        most = reader.bounds.max_file_size
        try:
            with open(file, "rb") as handle:
                stat = os.fstat(handle.fileno())
                if stat.st_size > most:
                    raise _Fallback
                self.files.append(file)
                self.mtime = max(self.mtime, stat.st_mtime)
                includes = self.read_file(file, handle, allowed)
        except OSError:
            raise _Fallback from None
        if allowed is TOP_KEYS:  # the main file
            self.limits_read = True
        for match, _where in _includes(reader, file, includes, self.seen):
            self.visit(match, INCLUDE_KEYS)

    def read_file(self, file: str, handle: BinaryIO, allowed: tuple[str, ...]) -> Any:
        """Read one file's keys; its ``include:``."""
        reader = self.reader
        includes = None
        source = _Hashing(handle, self.digest)
        if file.endswith(".json"):
            items = stream_json(source.read(), ("domains",))
        else:  # read as it is parsed: a large file is never held whole
            items = stream_mapping(source, ("domains",))
        try:
            for key, value in items:
                if key not in allowed:
                    raise _Fallback
                if key == "domains":
                    self.domains(file, value)
                elif key == "profiles":
                    self.profile_section(value)
                elif key == "include":
                    includes = value
                else:  # a setting of the main file
                    self.top[key] = value
                    if key == "limits":
                        self.limits(value)
                    elif key == "http":
                        if self.hashes:  # domains were given before it: read again, in order
                            raise _Fallback
                        self.sink.http(
                            read_http(reader, value, ("http",), os.path.dirname(self.main))
                        )
                    elif key == "zone":
                        self.begin(reader.zone(value, ("zone",)))
        except (Unusual, yaml.YAMLError):
            raise _Fallback from None
        source.read()  # whatever the parser left: the digest is of every octet
        return includes

    def begin(self, zone: ZoneSettings) -> None:
        self.begun = True
        self.sink.begin(zone, self.profiles)

    def limits(self, value: Any) -> None:
        bounds = self.reader.limits(value, ("limits",))
        if self.bounded and bounds != LimitSettings():
            raise _Fallback  # what was validated under the defaults is read again under these
        self.reader.bounds = bounds
        self.limits_read = True

    def profile_section(self, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            raise _Fallback
        self.bounded |= not self.limits_read
        for name, body in value.items():
            if not isinstance(name, str) or name in self.profiles:
                raise _Fallback
            profile = _profile(self.reader, name, body, ("profiles", name))
            if profile is None:  # pragma: no cover - a problem was raised
                raise _Fallback
            self.profiles[name] = profile
            self.known[name] = name
            self.overheads[name] = template_overhead(profile.entries)

    def domains(self, file: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, StreamedMapping):
            items: Iterable[tuple[Any, Any]] = value
        elif isinstance(value, dict):
            items = value.items()
        else:
            raise _Fallback
        self.bounded |= not self.limits_read
        reader, hashes, sink = self.reader, self.hashes, self.sink
        known, overheads = self.known, self.overheads
        most = reader.bounds.max_domains
        canonical = CANONICAL_HOST.match
        for key, entry in items:
            # the common case of _domain_name inline: a name already in canonical form
            name: str | None
            if (
                key.__class__ is str
                and len(key) < 254
                and canonical(key)
                and "." in key
                and not key[-1].isdigit()
                and not key.endswith("localhost")
            ):
                name = key
            else:
                name = _domain_name(reader, key, ("domains", key))
            if name is None or len(hashes) >= most:
                raise _Fallback
            hashes.append(hash(name))
            if entry.__class__ is str and self.begun and entry in known:
                # the common case, as _domain_entry has it for a valid domain
                overhead = overheads[entry]
                if overhead and overhead + len(name) + 2 > 255:
                    raise _Fallback
                sink.domain(name, known[entry])
            elif self.waits(entry):
                self.waiting.append((file, name, key, entry))
                sink.domain(name, None)
            else:
                sink.domain(name, self.entry(name, ("domains", key), entry))

    def waits(self, value: Any) -> bool:
        """Whether a domain must wait: the zone settings or its profile are not read yet."""
        if not self.begun:
            return True
        if isinstance(value, str):
            return value not in self.known
        if isinstance(value, dict):
            profile = value.get("profile")
            return isinstance(profile, str) and profile not in self.known
        return False

    def entry(self, name: str, path: KeyPath, value: Any) -> Entry:
        entry = _domain_entry(
            self.reader, name, value, path, self.profiles, self.known, self.overheads
        )
        if entry is None:  # pragma: no cover - a problem was raised
            raise _Fallback
        return entry


class _Hashing:
    """A file read through, its octets added to a digest as they are read."""

    def __init__(self, handle: BinaryIO, digest: Any) -> None:
        self.handle = handle
        self.digest = digest

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data
