"""``srvd import``: the zones read, the profiles planned, the files written, the report."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Sequence

from srvd.config import ConfigError, load_config
from srvd.migrate.profiles import Extracted, Plan, plan
from srvd.migrate.records import TsigKey
from srvd.migrate.yamltext import domains_file, main_file
from srvd.migrate.zones import (
    extract_files,
    extract_transfers,
    list_directory,
    read_zone_list,
)

MAIN = "srvd.yaml"
DOMAINS = "domains.yaml"
REPORT = "import-report.txt"
SHOWN_NOTES = 40  # domains whose notes are printed; the report file has them all


def report_text(result: Plan, source: str, seconds: float, skipped: Sequence[str]) -> str:
    on_profiles = sum(result.members.values())
    lines = [
        f"srvd import from {source}: {len(result.domains)} domains imported in {seconds:.1f} s: "
        f"{len(result.profiles)} profiles, {on_profiles} domains on them "
        f"({result.overridden} with overrides), {result.inline} with records of their own; "
        f"{len(result.empty)} without discovery records, {len(result.failed)} not read; "
        f"zone.ttl {result.ttl}",
        "",
        "profiles (domains on each, overrides included):",
    ]
    width = max((len(name) for name in result.profiles), default=0)
    lines += [f"  {name:<{width}}  {result.members[name]}" for name in result.profiles]
    if not result.profiles:
        lines.append("  none")
    noted = {d: n for d, n in result.notes.items() if d not in result.failed}
    lines += ["", f"not carried over, or changed (per domain; {len(noted)} domains):"]
    for domain, notes in sorted(noted.items()):
        lines.append(f"  {domain}:")
        lines += [f"    {note}" for note in notes]
    if not noted:
        lines.append("  nothing")
    if result.empty:
        lines += ["", "without discovery records (not in the configuration):"]
        lines += [f"  {domain}" for domain in result.empty]
    if result.failed or skipped:
        lines += ["", "not read:"]
        lines += [f"  {error}" for _domain, error in sorted(result.failed.items())]
        lines += [f"  {line}" for line in skipped]
    return "\n".join(lines) + "\n"


def _summary(report: str, result: Plan, path: str) -> str:
    """The report as printed: whole, unless it notes many domains (then the file has it)."""
    if len(result.notes) <= SHOWN_NOTES:
        return report
    head, _, rest = report.partition("\nnot carried over")
    _, found, unread = rest.partition("\nnot read:\n")  # what failed is always printed
    return (
        f"{head}\nnot carried over, or changed: {len(result.notes)} domains, listed in {path}\n"
        + (f"\nnot read:\n{unread}" if found else "")
    )


def write_import(
    extracted: Iterable[Extracted],
    source: str,
    output: str,
    nameservers: Sequence[str],
    hostmaster: str | None,
    ttl: int | None,
    started: float,
    skipped: Sequence[str] = (),
) -> int:
    result = plan(extracted, ttl)
    os.makedirs(output, exist_ok=True)
    header = [
        f"written by srvd import from {source}",
        f"{len(result.profiles)} profiles, {len(result.domains)} domains (in {DOMAINS});",
        f"what could not be carried over is listed in {REPORT}",
    ]
    files = {
        MAIN: main_file(result, nameservers, hostmaster, DOMAINS, header),
        DOMAINS: domains_file(result),
    }
    for name, text in files.items():
        _write(os.path.join(output, name), text)
    report = report_text(result, source, time.monotonic() - started, skipped)
    report_path = os.path.join(output, REPORT)
    _write(report_path, report)
    sys.stdout.write(_summary(report, result, report_path))
    main = os.path.join(output, MAIN)
    try:
        load_config(main)
    except ConfigError as exc:  # such as a --hostmaster srvd refuses
        for problem in exc.problems[:20]:
            print(problem.render(), file=sys.stderr)
        print(f"srvd import: srvd check does not accept {main}", file=sys.stderr)
        return 1
    print(f"wrote {main} and {os.path.join(output, DOMAINS)}; srvd check accepts them")
    return 1 if result.failed or skipped else 0


def _write(path: str, text: str) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def import_directory(
    directory: str,
    output: str,
    nameservers: Sequence[str],
    hostmaster: str | None,
    ttl: int | None,
    processes: int,
) -> int:
    started = time.monotonic()
    try:
        listing = list_directory(directory)
    except OSError as exc:
        print(f"srvd import: {directory}: {exc.strerror}", file=sys.stderr)
        return 1
    if not listing.jobs:
        print(f"srvd import: no master file named after a domain in {directory}", file=sys.stderr)
        return 1
    extracted = extract_files(listing.jobs, processes)
    return write_import(
        extracted, directory, output, nameservers, hostmaster, ttl, started, listing.skipped
    )


def import_transfers(
    host: str,
    port: int,
    zone_list: str,
    key: TsigKey | None,
    timeout: float,
    output: str,
    nameservers: Sequence[str],
    hostmaster: str | None,
    ttl: int | None,
    connections: int,
) -> int:
    started = time.monotonic()
    try:
        domains = read_zone_list(zone_list)
    except (OSError, ValueError) as exc:
        print(f"srvd import: {zone_list}: {exc}", file=sys.stderr)
        return 1
    if not domains:
        print(f"srvd import: {zone_list} names no zone", file=sys.stderr)
        return 1
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    extracted = extract_transfers(host, port, domains, key, timeout, connections)
    return write_import(
        extracted, f"AXFR from {where}", output, nameservers, hostmaster, ttl, started
    )
