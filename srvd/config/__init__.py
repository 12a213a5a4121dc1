"""YAML configuration → frozen, validated model.

Loading is fast on the common path (libyaml's CSafeLoader, plain dicts) and precise on the error
path: every problem is collected with its file and key path, and the line is found afterwards by
composing the offending file once more. Aliases, anchors and merge keys are refused (alias bombs),
and so are duplicate keys, which YAML would otherwise silently resolve to the last one.
"""

from __future__ import annotations

import contextlib
import difflib
import glob
import hashlib
import ipaddress
import json
import os
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias, TypeVar, cast

import yaml

from srvd.errors import SrvdError
from srvd.wire.discovery import SERVICE_KEYS, SRV, TEMPLATE, TXT
from srvd.wire.names import MAX_NAME_WIRE, InvalidName, host_name, owner_name, to_ascii

if TYPE_CHECKING:
    from srvd.config.transfer import TransferSettings

    _BaseLoader = yaml.SafeLoader
else:
    _BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present

DAV_KEYS = frozenset({"caldav", "caldavs", "carddav", "carddavs"})
PROFILE_KEYS = (*SERVICE_KEYS, "axigen", "srv", "txt")
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
MAX_WORKERS = 256
UDP_KEYS = ("receive_buffer", "send_buffer")
DEFAULT_METRICS = "127.0.0.1:9153"
METRICS_PORT = 9153
INCLUDE_KEYS = ("profiles", "domains", "include")
ZONE_KEYS = ("ttl", "nameservers", "hostmaster", "refresh", "retry", "expire", "minimum")
RECORD_KEYS = ("target", "port", "priority", "weight", "path")  # path: DAV services only
TCP_KEYS = ("idle_timeout", "message_timeout", "max_connections", "max_pipelined")
RRL_KEYS = ("responses_per_second", "slip", "ipv4_prefix", "ipv6_prefix", "table_size", "exempt")
LIMIT_KEYS = ("max_file_size", "max_domains", "max_records_per_name", "max_txt_length")
MAX_PROBLEMS = 50

KeyPath: TypeAlias = tuple[str | int, ...]
T = TypeVar("T")


class ConfigError(SrvdError):
    """The configuration is not valid."""

    def __init__(self, problems: list[Problem], complete: bool = True) -> None:
        self.problems = problems
        self.complete = complete  # False: collection stopped at MAX_PROBLEMS
        super().__init__("\n".join(p.render() for p in problems))


@dataclass(slots=True)
class Problem:
    file: str
    path: KeyPath
    message: str
    line: int | None = None

    @property
    def key(self) -> str:
        out = ""
        for part in self.path:
            if isinstance(part, int) and not isinstance(part, bool):
                out += f"[{part}]"
            else:
                out += f".{part}" if out else str(part)
        return out

    def render(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = f" {self.key}:" if self.path else ""
        return f"{where}:{key} {self.message}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    @property
    def family_v6(self) -> bool:
        return ":" in self.host

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.family_v6 else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: (
        str  # lowercase ASCII without trailing dot; "." = service not offered; may end in {domain}
    )


@dataclass(frozen=True, slots=True)
class RRsetSpec:
    """The records of one type at one owner, relative to the customer domain."""

    owner: str  # such as "_imaps._tcp"
    rtype: int  # SRV or TXT
    srv: tuple[SrvRecord, ...] = ()
    txt: tuple[str, ...] = ()  # one text per TXT record; may contain {domain}

    @property
    def templated(self) -> bool:
        if self.rtype == SRV:
            return any(r.target.endswith(TEMPLATE) for r in self.srv)
        return any(TEMPLATE in t for t in self.txt)


# What one profile key publishes: a tuple of RRsets, or None for "not published".
Entries: TypeAlias = Mapping[str, tuple[RRsetSpec, ...] | None]


@dataclass(frozen=True, slots=True)
class ZoneSettings:
    ttl: int = 3600
    nameservers: tuple[str, ...] = ()
    hostmaster_local: str = "hostmaster"  # RNAME's first label: the mailbox, may contain dots
    hostmaster_domain: str = ""  # the rest of RNAME
    refresh: int = 3600
    retry: int = 600
    expire: int = 1209600
    minimum: int = 300

    @property
    def hostmaster(self) -> str:
        """The mailbox as an e-mail address."""
        return f"{self.hostmaster_local}@{self.hostmaster_domain}"

    @property
    def negative_ttl(self) -> int:
        return min(self.ttl, self.minimum)


@dataclass(frozen=True, slots=True)
class TcpSettings:
    idle_timeout: float = 10.0  # no complete query for this long: the connection is closed
    message_timeout: float = 2.0  # a message begun but not complete for this long: closed
    max_connections: int = 1000  # beyond it the least recently active connection is reaped
    max_pipelined: int = 100  # replies queued on one connection before srvd stops reading it


@dataclass(frozen=True, slots=True)
class RrlSettings:
    """Response rate limiting for UDP (srvd.server.rrl); ``responses_per_second`` 0 turns it off."""

    responses_per_second: int = 50
    slip: int = 2  # every slip-th limited response is sent truncated (TC=1); 0: none
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56
    table_size: int = 65_536  # buckets; keys that hash alike share one (bounded memory)
    # Loopback sources cannot be spoofed from outside the host: never limited by default.
    exempt: tuple[str, ...] = ("127.0.0.0/8", "::1/128")

    @property
    def enabled(self) -> bool:
        return self.responses_per_second > 0


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """Resource limits on the configuration itself: a clear error instead of exhaustion."""

    max_file_size: int = 512 << 20  # octets, per file read (the main file and each include)
    max_domains: int = 10_000_000
    max_records_per_name: int = 100  # records of one type at one name
    max_txt_length: int = 4000  # octets of one TXT record's text


@dataclass(frozen=True, slots=True)
class UdpSettings:
    # bursts overflow the default 208 KiB receive buffer long before the CPU is busy
    receive_buffer: int = 4 << 20
    send_buffer: int = 4 << 20


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    entries: Entries


@dataclass(frozen=True, slots=True)
class DomainOverride:
    profile: str | None
    entries: Entries


@dataclass(frozen=True, slots=True)
class Config:
    source: str
    files: tuple[str, ...]
    listen: tuple[Endpoint, ...]
    zone: ZoneSettings
    profiles: Mapping[str, Profile]
    # customer domain (lowercase ASCII) → profile name, or a per-domain override
    domains: Mapping[str, str | DomainOverride] = field(repr=False)
    tcp: TcpSettings = TcpSettings()
    udp: UdpSettings = UdpSettings()
    rrl: RrlSettings = RrlSettings()
    limits: LimitSettings = LimitSettings()
    state_dir: str | None = None
    metrics: Endpoint | None = None  # where /metrics is served; None: not at all
    workers: int = 1  # processes answering on the same addresses
    sha256: str = ""  # of every file read, in order: tells which configuration is served
    mtime: int = 0  # the newest modification time of the files read (Unix seconds)
    # srvd as a hidden primary (srvd.config.transfer): peers, keys, NOTIFY; the catalog zone
    transfer: TransferSettings | None = None
    catalog: str | None = None

    def entries_of(self, domain: str) -> dict[str, tuple[RRsetSpec, ...] | None]:
        """The merged profile keys of one domain (profile, then its overrides)."""
        entry = self.domains[domain]
        if isinstance(entry, str):
            return dict(self.profiles[entry].entries)
        merged = dict(self.profiles[entry.profile].entries) if entry.profile else {}
        merged.update(entry.entries)
        return merged


# ---------------------------------------------------------------------------------------------
# YAML reading


class _Refused(yaml.MarkedYAMLError):
    pass


class _Loader(_BaseLoader):
    """CSafeLoader that refuses aliases, merge keys and duplicate mapping keys."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        if node in self.constructed_objects:
            raise _Refused(None, None, "YAML aliases and anchors are not allowed", node.start_mark)
        return super().construct_object(node, deep)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise _Refused(None, None, "expected a mapping", node.start_mark)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _Refused(
                    None, None, "YAML merge keys (<<) are not allowed", key_node.start_mark
                )
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                raise _Refused(None, None, "a mapping key must be a scalar", key_node.start_mark)
            if key in mapping:
                first = next(k for k, _ in node.value if k.value == key_node.value)
                raise _Refused(
                    None,
                    None,
                    f"key {key!r} appears twice in one mapping (first on line "
                    f"{first.start_mark.line + 1})",
                    key_node.start_mark,
                )
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


def _parse_file(path: str, data: bytes) -> Any:
    """The data of one config file (YAML, or JSON when it ends in .json)."""
    if path.endswith(".json"):
        try:
            return json.loads(data, object_pairs_hook=_unique_object)
        except _DuplicateKey as exc:
            line = _json_key_line(data, exc.key)
            raise _FileProblem(
                Problem(path, (), f"key {exc.key!r} appears twice in one object", line)
            ) from None
        except json.JSONDecodeError as exc:
            raise _FileProblem(
                Problem(path, (), f"JSON syntax error: {exc.msg}", exc.lineno)
            ) from None
        except UnicodeDecodeError as exc:
            raise _FileProblem(Problem(path, (), f"not UTF-8: {exc}")) from None
    loader = _Loader(data)
    try:
        if b"&" in data:
            _refuse_anchors(data)
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        text = exc.problem or exc.context or "YAML error"
        raise _FileProblem(Problem(path, (), f"YAML: {text}", line)) from None
    except yaml.YAMLError as exc:
        raise _FileProblem(Problem(path, (), f"YAML: {exc}")) from None
    finally:
        loader.dispose()


def _refuse_anchors(data: bytes) -> None:
    """Anchors are refused even without an alias (libyaml's composer keeps no trace of them, so
    the events are read; only for files that contain an "&" at all)."""
    for event in yaml.parse(data, Loader=_BaseLoader):
        if getattr(event, "anchor", None) is not None:
            mark = cast(yaml.Mark, event.start_mark)
            raise _Refused(None, None, "YAML aliases and anchors are not allowed", mark)


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


def _json_key_line(data: bytes, key: str) -> int | None:
    """The line of a key's second appearance in a JSON text (error path only)."""
    needle = json.dumps(key).encode()
    first = data.find(needle)
    second = data.find(needle, first + 1) if first >= 0 else -1
    return data.count(b"\n", 0, second) + 1 if second >= 0 else None


class _FileProblem(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _locate(path: str, keys: KeyPath) -> int | None:
    """The line of a key path in a YAML (or JSON) file (error path only: composes it again)."""
    if not keys:
        return 1
    try:
        with open(path, "rb") as handle:
            node = yaml.compose(handle, Loader=_BaseLoader)
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for key in keys:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if _same_key(key_node, key):
                    line = key_node.start_mark.line + 1
                    node = value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _same_key(node: yaml.Node, key: str | int) -> bool:
    if not isinstance(node, yaml.ScalarNode):
        return False
    try:
        value = yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except yaml.YAMLError:
        value = node.value
    return bool(value == key and type(value) is type(key)) or node.value == key


# ---------------------------------------------------------------------------------------------
# Validation


class _Stop(Exception):
    """Too many problems; stop collecting."""


def _edits(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions, swaps."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, previous2[j - 2] + 1)
            current.append(cost)
        previous2, previous = previous, current
    return previous[-1]


def _suggest(key: object, known: Iterable[str]) -> str:
    text = str(key)
    close = difflib.get_close_matches(text, list(known), n=5)
    if not close:
        return ""
    best = min(close, key=lambda c: (_edits(text, c), abs(len(c) - len(text))))
    return f" (did you mean {best!r}?)"


class _Reader:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.file = ""
        self.bounds = LimitSettings()  # the main file's ``limits``, once it is read

    # -- problems

    def problem(self, path: KeyPath, message: str, file: str | None = None) -> None:
        self.problems.append(Problem(file or self.file, path, message))
        if len(self.problems) >= MAX_PROBLEMS:
            raise _Stop

    def fail(self, path: KeyPath, message: str) -> NoReturn:
        self.problem(path, message)
        raise _Invalid

    def mapping(self, value: Any, path: KeyPath, known: Iterable[str]) -> dict[Any, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, found {_kind(value)}")
        known = tuple(known)
        for key in value:
            if key not in known:
                self.problem((*path, key), f"unknown key{_suggest(key, known)}")
        return value

    def integer(self, value: Any, path: KeyPath, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected a whole number from {low} to {high}, found {_kind(value)}")
        if not low <= value <= high:
            self.fail(path, f"{value} is out of range ({low}-{high})")
        return value

    def text(self, value: Any, path: KeyPath) -> str:
        if not isinstance(value, str):
            self.fail(path, f"expected a string, found {_kind(value)}")
        return value

    def host(self, value: Any, path: KeyPath) -> str:
        try:
            return host_name(self.text(value, path))
        except InvalidName as exc:
            self.fail(path, str(exc))

    # -- top level

    def listen(self, value: Any, path: KeyPath) -> tuple[Endpoint, ...]:
        if value is None:
            return (Endpoint("0.0.0.0", 53), Endpoint("::", 53))
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            self.fail(path, "expected a list of addresses such as 127.0.0.1:53 or [::1]:53")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(parse_endpoint(self.text(item, (*path, i))))
            except ValueError as exc:
                self.problem((*path, i), str(exc))
            except _Invalid:
                pass
        if len(set(out)) != len(out):
            self.problem(path, "the same address is listed twice")
        return tuple(out)

    def zone(self, value: Any, path: KeyPath) -> ZoneSettings:
        raw = self.mapping(value, path, ZONE_KEYS)
        fields = _Fields()
        kwargs: dict[str, Any] = {}
        for key in ("ttl", "refresh", "retry", "expire", "minimum"):
            if key in raw:
                kwargs[key] = fields(self.integer, raw[key], (*path, key), 0, 2**31 - 1)
        names = fields(self.nameservers, raw.get("nameservers"), (*path, "nameservers"))
        mailbox = fields(self.hostmaster, raw.get("hostmaster"), names, (*path, "hostmaster"))
        fields.done()
        assert names is not None and mailbox is not None
        kwargs["nameservers"] = names
        kwargs["hostmaster_local"], kwargs["hostmaster_domain"] = mailbox
        return ZoneSettings(**kwargs)

    def nameservers(self, value: Any, path: KeyPath) -> tuple[str, ...]:
        if value is None:
            self.fail(path, "required: the NS names of the delegated subzones")
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            self.fail(path, "expected a list of host names")
        fields = _Fields()
        names = tuple(fields(self.host, ns, (*path, i)) for i, ns in enumerate(value))
        fields.done()
        if len(set(names)) != len(names):
            self.problem(path, "a name server is listed twice")
        return cast(tuple[str, ...], names)

    def hostmaster(
        self, value: Any, nameservers: tuple[str, ...] | None, path: KeyPath
    ) -> tuple[str, str]:
        """SOA RNAME as (mailbox, domain); by default hostmaster at the first NS's parent."""
        if value is None:
            if not nameservers:
                raise _Invalid
            return "hostmaster", nameservers[0].split(".", 1)[-1]
        text = self.text(value, path)
        local, _, domain = text.partition("@") if "@" in text else text.partition(".")
        if not local or len(local) > 63 or not local.isascii() or any(c in local for c in ' \\"'):
            self.fail(path, f"{text!r} is not a valid mailbox")
        try:
            domain = host_name(domain)
        except InvalidName as exc:
            self.fail(path, str(exc))
        if 1 + len(local) + len(domain) + 2 > MAX_NAME_WIRE:  # the mailbox label, then the domain
            self.fail(path, f"{text!r} is longer than 255 octets in wire form (the SOA RNAME)")
        return local, domain

    def workers(self, value: Any, path: KeyPath) -> int:
        if value is None:
            return 1
        if value == "auto":
            return os.cpu_count() or 1
        return self.integer(value, path, 1, MAX_WORKERS)

    def metrics(self, value: Any, path: KeyPath) -> Endpoint | None:
        if value is False or (isinstance(value, str) and value.strip().lower() == "off"):
            return None
        text = self.text(DEFAULT_METRICS if value is None else value, path)
        try:
            return parse_endpoint(text, METRICS_PORT)
        except ValueError as exc:
            self.fail(path, f"{exc}; expected ADDR:PORT, or off")

    def tcp(self, value: Any, path: KeyPath) -> TcpSettings:
        raw = self.mapping(value, path, TCP_KEYS)
        fields = _Fields()
        kwargs: dict[str, Any] = {}
        for key in ("idle_timeout", "message_timeout"):
            if key in raw:
                kwargs[key] = fields(self.seconds, raw[key], (*path, key))
        for key, high in (("max_connections", 1_000_000), ("max_pipelined", 65_535)):
            if key in raw:
                kwargs[key] = fields(self.integer, raw[key], (*path, key), 1, high)
        fields.done()
        return TcpSettings(**kwargs)

    def rrl(self, value: Any, path: KeyPath) -> RrlSettings:
        if value is False or (isinstance(value, str) and value.strip().lower() == "off"):
            return RrlSettings(responses_per_second=0)
        raw = self.mapping(value, path, RRL_KEYS)
        fields = _Fields()
        ranges = {
            "responses_per_second": (0, 1_000_000),
            "slip": (0, 10),
            "ipv4_prefix": (8, 32),
            "ipv6_prefix": (16, 128),
            "table_size": (1, 1 << 24),
        }
        kwargs: dict[str, Any] = {
            key: fields(self.integer, raw[key], (*path, key), low, high)
            for key, (low, high) in ranges.items()
            if key in raw
        }
        if "exempt" in raw:
            kwargs["exempt"] = fields(self.networks, raw["exempt"], (*path, "exempt"))
        fields.done()
        return RrlSettings(**kwargs)

    def networks(self, value: Any, path: KeyPath) -> tuple[str, ...]:
        if value is None:
            return ()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            self.fail(path, "expected a list of addresses or prefixes such as 192.0.2.0/24")
        fields = _Fields()
        out = [fields(self.network, item, (*path, i)) for i, item in enumerate(items)]
        fields.done()
        return tuple(str(network) for network in out if network is not None)

    def network(self, value: Any, path: KeyPath) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        text = self.text(value, path)
        try:
            return ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            self.fail(path, f"{text!r}: expected an address or prefix such as 192.0.2.0/24")

    def limits(self, value: Any, path: KeyPath) -> LimitSettings:
        raw = self.mapping(value, path, LIMIT_KEYS)
        fields = _Fields()
        ranges = {
            "max_file_size": (1024, 1 << 40),
            "max_domains": (1, 1 << 32),
            "max_records_per_name": (1, 65_535),
            "max_txt_length": (1, 60_000),
        }
        kwargs: dict[str, Any] = {
            key: fields(self.integer, raw[key], (*path, key), low, high)
            for key, (low, high) in ranges.items()
            if key in raw
        }
        fields.done()
        return LimitSettings(**kwargs)

    def udp(self, value: Any, path: KeyPath) -> UdpSettings:
        raw = self.mapping(value, path, UDP_KEYS)
        fields = _Fields()
        kwargs: dict[str, Any] = {
            key: fields(self.integer, raw[key], (*path, key), 4096, 1 << 30)
            for key in UDP_KEYS
            if key in raw
        }
        fields.done()
        return UdpSettings(**kwargs)

    def seconds(self, value: Any, path: KeyPath) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
            self.fail(path, "expected seconds, more than 0 and at most 3600")
        return float(value)

    # -- records

    def srv_record(
        self, value: Any, path: KeyPath, allow_path: bool
    ) -> tuple[SrvRecord, str | None]:
        raw = self.mapping(value, path, RECORD_KEYS)
        fields = _Fields()
        for required in ("target", "port"):
            if required not in raw:
                fields(self.fail, path, f"a record needs a {required}")
        target = fields(self.target, raw.get("target", "."), (*path, "target"))
        port = fields(self.integer, raw.get("port", 0), (*path, "port"), 0, 65535)
        priority = fields(self.integer, raw.get("priority", 0), (*path, "priority"), 0, 65535)
        weight = fields(self.integer, raw.get("weight", 0), (*path, "weight"), 0, 65535)
        dav_path = None
        if raw.get("path") is not None:
            if allow_path:
                dav_path = fields(self.dav_path, raw["path"], (*path, "path"))
            else:
                fields(
                    self.fail, (*path, "path"), "path is only for " + ", ".join(sorted(DAV_KEYS))
                )
        fields.done()
        assert target is not None and port is not None and priority is not None
        assert weight is not None
        return SrvRecord(priority, weight, port, target), dav_path

    def dav_path(self, value: Any, path: KeyPath) -> str:
        text = self.text(value, path)
        if not text.startswith("/"):
            self.fail(path, f"{text!r} must start with '/'")
        if any(ord(c) < 0x20 for c in text) or len(text.encode()) > 1000:
            self.fail(path, "a path of printable text, at most 1000 octets")
        return text

    def target(self, value: Any, path: KeyPath) -> str:
        target = self.text(value, path)
        if target in (".", ""):
            return "."
        if TEMPLATE in target:
            head = target.removesuffix(".").removesuffix(TEMPLATE)
            if TEMPLATE in head or (head and not head.endswith(".")):
                self.fail(path, f"{target!r}: {TEMPLATE} may only stand as the last labels")
            if head:
                try:
                    head = host_name(head[:-1]) + "."
                except InvalidName as exc:
                    self.fail(path, str(exc))
            return head + TEMPLATE
        return self.host(target, path)

    def srv_set(
        self, value: Any, path: KeyPath, owner: str, allow_path: bool
    ) -> tuple[RRsetSpec, ...] | None:
        if value is None:
            return None
        if value is False:
            return (RRsetSpec(owner, SRV, srv=(SrvRecord(0, 0, 0, "."),)),)
        if value is True:
            self.fail(path, "expected records or 'off'")
        items = [value] if isinstance(value, dict) else value
        if not isinstance(items, list) or not items:
            self.fail(path, "expected a record {target, port, ...}, a list of them, or 'off'")
        self.count_records(len(items), path)
        records: list[SrvRecord] = []
        paths: set[str] = set()
        for i, item in enumerate(items):
            item_path = path if isinstance(value, dict) else (*path, i)
            try:
                record, dav_path = self.srv_record(item, item_path, allow_path)
            except _Invalid:
                continue
            records.append(record)
            if dav_path is not None:
                paths.add(dav_path)
        if any(r.target == "." for r in records) and len(items) > 1:
            self.fail(path, "a '.' target (service not offered) cannot stand beside other records")
        if len(set(records)) != len(records):
            self.problem(path, "the same record is listed twice")
        if len(paths) > 1:
            self.fail(path, f"records give different paths: {sorted(paths)}")
        out = [RRsetSpec(owner, SRV, srv=tuple(records))]
        if paths:
            out.append(RRsetSpec(owner, TXT, txt=(f"path={paths.pop()}",)))
        return tuple(out)

    def txt_set(self, value: Any, path: KeyPath, owner: str) -> tuple[RRsetSpec, ...] | None:
        if value is None or value is False:
            return None
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            self.fail(path, "expected a string or a list of strings (one TXT record each)")
        self.count_records(len(items), path)
        texts = []
        for i, item in enumerate(items):
            item_path = (*path, i) if items is value else path
            text = self.text(item, item_path)
            most = self.bounds.max_txt_length
            if len(text.encode()) > most:
                self.fail(
                    item_path,
                    f"a TXT record of {len(text.encode())} octets; at most {most} "
                    "(limits: max_txt_length)",
                )
            texts.append(text)
        if len(set(texts)) != len(texts):
            self.problem(path, "the same text is listed twice")
        return (RRsetSpec(owner, TXT, txt=tuple(texts)),)

    def count_records(self, count: int, path: KeyPath) -> None:
        most = self.bounds.max_records_per_name
        if count > most:
            self.fail(
                path, f"{count} records at one name; at most {most} (limits: max_records_per_name)"
            )

    def axigen(self, value: Any, path: KeyPath) -> tuple[RRsetSpec, ...] | None:
        if value is None or value is False:
            return None
        text = self.text(value, path).strip()
        if "://" in text or "/" in text:
            self.fail(
                path, f"{text!r}: the WebMail host as host or host:port, without scheme or path"
            )
        host, sep, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
        if sep:
            if not port.isdigit() or not 0 < int(port) <= 65535:
                self.fail(path, f"{text!r}: the port after ':' must be 1-65535")
            port = str(int(port))
        host = self.target(host, path)
        if host == ".":
            self.fail(path, "expected a host name")
        return (RRsetSpec("_axigen", TXT, txt=(f"{host}:{port}" if sep else host,)),)

    def entries(
        self, raw: dict[Any, Any], path: KeyPath
    ) -> dict[str, tuple[RRsetSpec, ...] | None]:
        """Profile keys → what they publish. Shared by profiles and domain overrides."""
        out: dict[str, tuple[RRsetSpec, ...] | None] = {}
        for key, value in raw.items():
            try:
                if key in SERVICE_KEYS:
                    out[key] = self.srv_set(value, (*path, key), f"_{key}._tcp", key in DAV_KEYS)
                elif key == "axigen":
                    out[key] = self.axigen(value, (*path, key))
                elif key in ("srv", "txt"):
                    for owner_raw, records in self.owners(value, (*path, key)):
                        owner = self.owner(owner_raw, (*path, key, owner_raw))
                        sub = (*path, key, owner_raw)
                        if key == "srv":
                            out[f"srv {owner}"] = self.srv_set(records, sub, owner, False)
                        else:
                            out[f"txt {owner}"] = self.txt_set(records, sub, owner)
            except _Invalid:
                continue
        return out

    def owners(self, value: Any, path: KeyPath) -> Iterator[tuple[Any, Any]]:
        if value is None:
            return iter(())
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping of owner names, found {_kind(value)}")
        return iter(value.items())

    def owner(self, value: Any, path: KeyPath) -> str:
        try:
            return owner_name(self.text(value, path))
        except InvalidName as exc:
            self.fail(path, str(exc))

    def check_conflicts(self, entries: Entries, path: KeyPath, file: str | None = None) -> None:
        seen: dict[tuple[str, int], str] = {}
        for key, rrsets in entries.items():
            for rrset in rrsets or ():
                where = (rrset.owner, rrset.rtype)
                if where in seen:
                    kind = "SRV" if rrset.rtype == SRV else "TXT"
                    self.problem(
                        path,
                        f"{kind} records at {rrset.owner} are given twice, by {seen[where]!r} "
                        f"and {key!r}",
                        file,
                    )
                seen[where] = key


class _Invalid(Exception):
    """This value is invalid (already reported); skip it."""


class _Fields:
    """Validate the fields of one mapping independently, so that every bad field is reported."""

    def __init__(self) -> None:
        self.ok = True

    def __call__(self, check: Callable[..., T], *args: Any) -> T | None:
        try:
            return check(*args)
        except _Invalid:
            self.ok = False
            return None

    def done(self) -> None:
        if not self.ok:
            raise _Invalid


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__) + (
        f" ({value!r})" if isinstance(value, int | float | str) and len(repr(value)) < 40 else ""
    )


def parse_endpoint(text: str, default_port: int = 53) -> Endpoint:
    """``127.0.0.1:53``, ``[::1]:5353``, ``::1`` or ``127.0.0.1`` → Endpoint."""
    text = text.strip()
    port = default_port
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"{text!r}: missing ']'")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"{text!r}: expected [address]:port")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text.isdigit():
            raise ValueError(f"{text!r}: the port must be a number")
        port = int(port_text)
    else:
        host = text
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{text!r}: port out of range")
    return Endpoint(str(address), port)


# ---------------------------------------------------------------------------------------------
# Loading


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
    from srvd.config.transfer import read_catalog, read_transfer

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
