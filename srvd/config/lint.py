"""Warnings for ``srvd check``: a valid configuration that is probably not what was meant.

Problems (srvd.config.load) make a configuration invalid; these do not, and ``srvd check`` exits 0
with them unless ``--strict``:

- a single-label SRV target or ``axigen`` host (``target: mail`` is published as ``mail.``, a
  top-level name, not the provider's ``mail.example.net``);
- a lone name server (RFC 1034 §4.1 and RFC 2182 §5 want at least two, on separate networks);
- an ``include:`` pattern that matches no file, when its directory does not exist or no pattern
  of that ``include:`` matches anything (a typo in a directory name loads nothing);
- a profile that publishes nothing (its domains get no zone at all);
- a reply larger than srvd's EDNS payload (1232 octets): over UDP it always goes out truncated,
  so every resolver has to come back over TCP (the names are given);
- ``http.cert``'s certificate expired, not valid yet, or expiring within 14 days (srvd.config.tls:
  served all the same, as nginx does).

The domains are looked at as ``read_config`` hands them over (``Linter`` is a DomainSink in front
of another), so a million-domain configuration is linted in the same pass as it is checked.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Mapping
from typing import Any

from srvd.config.load import DomainSink, Entry
from srvd.config.model import (
    Config,
    DomainOverride,
    HttpSettings,
    KeyPath,
    Problem,
    Profile,
    RRsetSpec,
)
from srvd.config.ops import top_level
from srvd.config.tls import validity_warning
from srvd.config.yamlfile import _locate
from srvd.wire.discovery import SRV, TEMPLATE
from srvd.wire.names import to_wire

EDNS_PAYLOAD = 1232  # srvd's own (docs/behaviour.md); a larger reply is truncated over UDP
PER_KIND_AT_MOST = 20  # warnings of one kind shown for domains; the rest are counted
_HEADER, _QUESTION_TAIL, _OPT, _RR_HEAD = 12, 4, 11, 12  # octets (an answer's owner compressed)


def _txt_size(text: str) -> int:
    raw = len(text.encode("utf-8"))
    return max(1, raw + (raw + 254) // 255)  # 255-octet strings, each with its length octet


def reply_size(domain: str, spec: RRsetSpec) -> int:
    """Octets of the UDP reply (with OPT) to the question for ``spec``'s RRset of ``domain``."""
    size = _HEADER + len(to_wire(f"{spec.owner}.{domain}")) + _QUESTION_TAIL + _OPT
    if spec.rtype == SRV:
        for record in spec.srv:
            target = record.target.replace(TEMPLATE, domain)
            size += _RR_HEAD + 6 + (1 if target == "." else len(to_wire(target)))
    else:
        for text in spec.txt:
            size += _RR_HEAD + _txt_size(text.replace(TEMPLATE, domain))
    return size


def _single_label(spec: RRsetSpec) -> list[str]:
    if spec.rtype == SRV:
        targets = [r.target for r in spec.srv]
    elif spec.owner == "_axigen":
        targets = [t.rsplit(":", 1)[0] if t.count(":") == 1 else t for t in spec.txt]
    else:
        return []
    return [t for t in targets if t != "." and TEMPLATE not in t and "." not in t]


def _key_path(key: str) -> tuple[str, ...]:
    """The configuration keys of an entry (``srv _x._tcp`` is under ``srv:``)."""
    return tuple(key.split(" ", 1)) if " " in key else (key,)


class Linter(DomainSink):
    """Collects what the warnings need as the domains go by, then hands each on to ``inner``."""

    def __init__(self, inner: DomainSink) -> None:
        self.inner = inner
        self.longest: dict[str, str] = {}  # the longest domain name on each profile
        self.domain_warnings: list[tuple[KeyPath, str]] = []
        self.counts: dict[str, int] = {}

    def begin(self, zone: Any, profiles: Mapping[str, Profile]) -> None:
        self.inner.begin(zone, profiles)

    def http(self, settings: HttpSettings | None) -> None:
        self.inner.http(settings)

    def restart(self) -> None:
        self.longest = {}
        self.domain_warnings = []
        self.counts = {}
        self.inner.restart()

    def domain(self, name: str, entry: Entry | None) -> None:
        self.inner.domain(name, entry)
        if entry is None:
            return
        profile = entry if isinstance(entry, str) else entry.profile
        if profile is not None and len(name) > len(self.longest.get(profile, "")):
            self.longest[profile] = name
        if isinstance(entry, DomainOverride):
            self._override(name, entry)

    def _override(self, name: str, entry: DomainOverride) -> None:
        for key, specs in entry.entries.items():
            for spec in specs or ():
                path = ("domains", name, *_key_path(key))
                for target in _single_label(spec):
                    self._add("single", path, _single_message(target))
                size = reply_size(name, spec)
                if size > EDNS_PAYLOAD:
                    self._add("size", path, _size_message(spec, name, size))

    def _add(self, kind: str, path: KeyPath, message: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.counts[kind] <= PER_KIND_AT_MOST:
            self.domain_warnings.append((path, message))

    def warnings(self, config: Config) -> list[Problem]:
        """Every warning, with its file and line where they can be found."""
        out: list[tuple[KeyPath, str]] = []
        if len(config.zone.nameservers) == 1:
            out.append(
                (
                    ("zone", "nameservers"),
                    "a lone name server: a second one, on another network, keeps the domains "
                    "resolvable when it is down (RFC 2182 §5)",
                )
            )
        for name, profile in config.profiles.items():
            if not any(profile.entries.values()):
                out.append(
                    (("profiles", name), "publishes nothing: its domains get no zone at all")
                )
                continue
            domain = self.longest.get(name)
            for key, specs in profile.entries.items():
                for spec in specs or ():
                    path = ("profiles", name, *_key_path(key))
                    out.extend((path, _single_message(t)) for t in _single_label(spec))
                    if domain is None:
                        continue
                    size = reply_size(domain, spec)
                    if size > EDNS_PAYLOAD:
                        out.append((path, _size_message(spec, domain, size)))
        tls = config.http.tls if config.http is not None else None
        validity = validity_warning(tls, time.time()) if tls is not None else None
        if validity is not None:
            out.append((("http", "cert"), validity))
        problems = [self._place(config, path, message) for path, message in out]
        problems += _empty_globs(config)
        problems += [self._place(config, p, m) for p, m in self.domain_warnings]
        for kind, count in self.counts.items():
            if count > PER_KIND_AT_MOST:
                what = "single-label targets" if kind == "single" else "replies over the payload"
                problems.append(
                    Problem(
                        config.source,
                        (),
                        f"warning: {count - PER_KIND_AT_MOST} more domains with {what} (not shown)",
                    )
                )
        return problems

    @staticmethod
    def _place(config: Config, path: KeyPath, message: str) -> Problem:
        for file in config.files:
            try:
                line = _locate(file, path[:4])
            except Exception:
                line = None
            if line is not None:
                return Problem(file, path, f"warning: {message}", line)
        return Problem(config.source, path, f"warning: {message}")


def _single_message(target: str) -> str:
    return (
        f"{target!r} is a single label: published as {target + '.'!r}, a top-level name "
        "(write the full host name)"
    )


def _size_message(spec: RRsetSpec, domain: str, size: int) -> str:
    kind = "SRV" if spec.rtype == SRV else "TXT"
    return (
        f"the {kind} reply for {spec.owner}.{domain} is {size} octets, over the EDNS payload of "
        f"{EDNS_PAYLOAD}: always truncated over UDP (resolvers retry over TCP)"
    )


def _empty_globs(config: Config) -> list[Problem]:
    out = []
    for file in config.files:
        try:
            raw = top_level(file, "include")
        except (OSError, ValueError):
            continue
        patterns = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        base = os.path.dirname(file)
        full = [
            os.path.join(base, os.path.expanduser(p)) if isinstance(p, str) else ""
            for p in patterns
        ]
        # nothing matched by any of them, or a pattern into a directory that does not exist (a
        # typo); `domains.d/*.json` beside a `domains.d/*.yaml` that matches is not worth one
        none_at_all = not any(glob.glob(f) for f in full if f)
        for i, pattern in enumerate(patterns):
            if not isinstance(pattern, str) or not glob.has_magic(pattern):
                continue
            directory = os.path.dirname(full[i])
            missing = not glob.has_magic(directory) and not os.path.isdir(directory)
            if (none_at_all or missing) and not glob.glob(full[i]):
                path: KeyPath = ("include", i) if isinstance(raw, list) else ("include",)
                try:
                    line = _locate(file, path)
                except Exception:
                    line = None
                out.append(
                    Problem(
                        file,
                        path,
                        f"warning: {pattern!r} matches no file ({full[i]})",
                        line,
                    )
                )
    return out
