"""A Plan (srvd.migrate.profiles) as srvd's YAML: the main file with the zone settings and the
profiles, and the domains in a file of their own that the main file includes."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import yaml.resolver

from srvd.migrate.profiles import Plan, SrvValue, Value

_PLAIN = re.compile(r"[a-z0-9_][a-z0-9_./-]*\Z")
_RESOLVER = yaml.resolver.Resolver()
_STR_TAG = "tag:yaml.org,2002:str"


def _implicit(text: str) -> str:
    """The tag YAML gives ``text`` written plain."""
    tag: str = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    return tag


def scalar(text: str) -> str:
    """A YAML scalar that reads back as exactly ``text`` (a string): plain when that is safe
    everywhere (flow collections included), else double-quoted with escapes."""
    if _PLAIN.match(text) and _implicit(text) == _STR_TAG:
        return text
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _record(row: tuple[int, int, int, str], path: str | None) -> str:
    priority, weight, port, target = row
    parts = [f"target: {scalar(target)}", f"port: {port}"]
    if priority:
        parts.append(f"priority: {priority}")
    if weight:
        parts.append(f"weight: {weight}")
    if path is not None:
        parts.append(f"path: {scalar(path)}")
    return "{" + ", ".join(parts) + "}"


def _srv(value: SrvValue) -> list[str]:
    """The value of an SRV key: ``off``, one record, or a list (the first line goes after the
    key, the others below it)."""
    rows, path = value
    if rows == ((0, 0, 0, "."),) and path is None:
        return ["off"]
    if len(rows) == 1:
        return [_record(rows[0], path)]
    return ["", *(f"- {_record(row, path if i == 0 else None)}" for i, row in enumerate(rows))]


def _texts(value: Sequence[str]) -> list[str]:
    if len(value) == 1:
        return [scalar(value[0])]
    return ["", *(f"- {scalar(text)}" for text in value)]


def _value_lines(key: str, value: Value | None, indent: str) -> Iterator[str]:
    if value is None:
        yield f"{indent}{key}: null"
        return
    if isinstance(value, str):
        lines = [scalar(value)]
    elif isinstance(value[0], str):
        lines = _texts(value)
    else:
        lines = _srv(value)
    yield f"{indent}{key}: {lines[0]}".rstrip()
    for line in lines[1:]:
        yield f"{indent}  {line}"


def entries_lines(items: Sequence[tuple[str, Value | None]], indent: str) -> list[str]:
    """Profile keys (or a domain's overrides) as YAML lines: services first, then ``axigen``,
    then the ``srv:`` and ``txt:`` mappings by owner."""
    lines: list[str] = []
    nested: dict[str, list[tuple[str, Value | None]]] = {"srv": [], "txt": []}
    for key, value in items:
        kind, _, owner = key.partition(" ")
        if owner:
            nested[kind].append((scalar(owner), value))
        else:
            lines += _value_lines(key, value, indent)
    for kind in ("srv", "txt"):
        if nested[kind]:
            lines.append(f"{indent}{kind}:")
            for owner, value in nested[kind]:
                # a txt key's value is written as texts even when it is None
                lines += _value_lines(owner, value, indent + "  ")
    return lines


def main_file(
    plan: Plan,
    nameservers: Sequence[str],
    hostmaster: str | None,
    domains_file: str,
    header: Sequence[str],
) -> str:
    lines = [f"# {line}" if line else "#" for line in header]
    lines += ["zone:", f"  ttl: {plan.ttl}"]
    lines.append(f"  nameservers: [{', '.join(scalar(ns) for ns in nameservers)}]")
    if hostmaster:
        lines.append(f"  hostmaster: {scalar(hostmaster)}")
    lines.append("profiles:" if plan.profiles else "profiles: {}")
    for name, content in plan.profiles.items():
        lines.append(f"  # {plan.members[name]} domain{'s' if plan.members[name] != 1 else ''}")
        lines.append(f"  {scalar(name)}:")
        lines += entries_lines(content, "    ")
    lines += ["include:", f"  - {scalar(domains_file)}"]
    return "\n".join(lines) + "\n"


def domains_file(plan: Plan) -> str:
    lines = ["domains:" if plan.domains else "domains: {}"]
    for domain, assignment in plan.domains.items():
        key = scalar(domain)
        if not assignment.overrides and assignment.profile is not None:
            lines.append(f"  {key}: {scalar(assignment.profile)}")
            continue
        lines.append(f"  {key}:")
        if assignment.profile is not None:
            lines.append(f"    profile: {scalar(assignment.profile)}")
        lines += entries_lines(assignment.overrides, "    ")
    return "\n".join(lines) + "\n"
