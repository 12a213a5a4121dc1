"""Validation helpers: each checks one value of the configuration and collects its problems.

Every problem is recorded with its file and key path (the line is found later, on the error path
only) so that one run reports all of them, with the closest known key for a typo.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn, TypeVar, cast

from srvd.config.model import (
    DEFAULT_METRICS,
    MAX_WORKERS,
    METRICS_PORT,
    Endpoint,
    Entries,
    KeyPath,
    LimitSettings,
    Problem,
    RrlSettings,
    RRsetSpec,
    SrvRecord,
    TcpSettings,
    UdpSettings,
    ZoneSettings,
    parse_endpoint,
)
from srvd.wire.discovery import SERVICE_KEYS, SRV, TEMPLATE, TXT
from srvd.wire.names import MAX_NAME_WIRE, InvalidName, host_name, owner_name

DAV_KEYS = frozenset({"caldav", "caldavs", "carddav", "carddavs"})
PROFILE_KEYS = (*SERVICE_KEYS, "axigen", "srv", "txt")
UDP_KEYS = ("receive_buffer", "send_buffer")
ZONE_KEYS = ("ttl", "nameservers", "hostmaster", "refresh", "retry", "expire", "minimum")
RECORD_KEYS = ("target", "port", "priority", "weight", "path")  # path: DAV services only
TCP_KEYS = ("idle_timeout", "message_timeout", "max_connections", "max_pipelined")
RRL_KEYS = ("responses_per_second", "slip", "ipv4_prefix", "ipv6_prefix", "table_size", "exempt")
LIMIT_KEYS = ("max_file_size", "max_domains", "max_records_per_name", "max_txt_length")
MAX_PROBLEMS = 50

T = TypeVar("T")


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
        text = self.text(value, path)
        self.not_address(text, path)
        try:
            return host_name(text)
        except InvalidName as exc:
            self.fail(path, str(exc))

    def not_address(self, text: str, path: KeyPath) -> None:
        """Refuse an IP address (v4 or v6) where a host name belongs: SRV targets, NS and SOA
        names are domain names (RFC 2782, RFC 1035 §3.3); ``192.0.2.10`` would be published as
        the name ``192.0.2.10.``. So is a name whose last label is all digits (RFC 1123 §2.1)."""
        if address_literal(text):
            self.fail(path, f"{text!r} is an IP address: a host name belongs here")

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
        self.not_address(domain, path)
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
        if value is False or _off(value):  # `off`, or "off" quoted, as rrl: and metrics: take it
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
        if value is None or value is False or _off(value):
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
        if value is None or value is False or _off(value):
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


def _off(value: Any) -> bool:
    """``off`` as YAML 1.1 reads it (False) or as a string ("off", 'OFF'): the same everywhere."""
    return value is False or (isinstance(value, str) and value.strip().lower() == "off")


def address_literal(text: str) -> bool:
    """Whether ``text`` is an IP address (``192.0.2.10``, ``2001:db8::1``, ``[::1]``) or ends in
    an all-digit label (not a host name, RFC 1123 §2.1, RFC 3696 §2)."""
    candidate = text.strip().removesuffix(".").removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(candidate.split("%", 1)[0])
        return True
    except ValueError:
        pass
    return candidate.rpartition(".")[2].isdigit()


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
