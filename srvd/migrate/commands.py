"""``srvd import``: the commands' work, apart from argument parsing (srvd.cli)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from srvd.config import ConfigError, load_config
from srvd.migrate.profiles import Extracted, Plan, plan
from srvd.migrate.yamltext import domains_file, main_file
from srvd.migrate.zones import (
    TsigKey,
    extract_files,
    extract_transfers,
    list_directory,
    parse_tsig,
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
    head, _, _rest = report.partition("\nnot carried over")
    return f"{head}\nnot carried over, or changed: {len(result.notes)} domains, listed in {path}\n"


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
    except ConfigError as exc:  # a bug of srvd import: say so, with the problems
        for problem in exc.problems[:20]:
            print(problem.render(), file=sys.stderr)
        print(f"srvd import: {main} is not accepted by srvd check (a bug)", file=sys.stderr)
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
    extracted = extract_transfers(host, port, domains, key, timeout)
    return write_import(
        extracted, f"AXFR from {where}", output, nameservers, hostmaster, ttl, started
    )


# ---------------------------------------------------------------------------------------------
# Arguments (srvd.cli registers these commands)

COMMANDS = ("import",)


def _nameservers(value: str) -> tuple[str, ...]:
    from srvd.wire.names import InvalidName, host_name

    names = [n for n in (part.strip() for part in value.split(",")) if n]
    if not names:
        raise argparse.ArgumentTypeError("expected NS1,NS2,...")
    try:
        out = tuple(host_name(name) for name in names)
    except InvalidName as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if len(set(out)) != len(out):
        raise argparse.ArgumentTypeError("a name server is listed twice")
    return out


def _tsig(value: str) -> TsigKey:
    try:
        return parse_tsig(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _ttl(value: str) -> int:
    if not value.isdigit() or int(value) > 2**31 - 1:
        raise argparse.ArgumentTypeError("a TTL from 0 to 2147483647")
    return int(value)


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not 0 < number <= 3600:
        raise argparse.ArgumentTypeError("a number above 0, at most 3600")
    return number


def _host_port(value: str) -> tuple[str, int]:
    from srvd.config import parse_endpoint

    try:
        endpoint = parse_endpoint(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return endpoint.host, endpoint.port


def add_parsers(commands: Any) -> None:
    """The moving-in commands, as sub-commands of ``srvd``."""
    imp = commands.add_parser(
        "import",
        help="turn existing zones (master files, or AXFR from a primary) into srvd profiles",
    )
    source = imp.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--zones",
        metavar="DIR",
        help="one RFC 1035 master file per customer domain, named after it",
    )
    source.add_argument(
        "--axfr-from", metavar="ADDR[:PORT]", type=_host_port, help="transfer from this primary"
    )
    imp.add_argument("--zone-list", metavar="FILE", help="with --axfr-from: domains, one a line")
    imp.add_argument("--tsig", metavar="NAME:ALG:SECRET", type=_tsig, help="sign the transfers")
    imp.add_argument(
        "--nameservers",
        metavar="NS1,NS2",
        type=_nameservers,
        required=True,
        help="srvd's name servers (zone.nameservers)",
    )
    imp.add_argument("--hostmaster", metavar="MAILBOX", help="zone.hostmaster (default: srvd's)")
    imp.add_argument(
        "--ttl", type=_ttl, help="zone.ttl (default: the TTL most of the records have)"
    )
    imp.add_argument(
        "-o", "--output", metavar="OUT", required=True, help="write OUT/srvd.yaml and more here"
    )
    imp.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="processes parsing master files (default: one per core)",
    )
    imp.add_argument(
        "--timeout", type=_positive, default=10.0, help="seconds per transfer message (10)"
    )


def run(args: argparse.Namespace) -> int:
    if args.command == "import":
        if args.zones is not None:
            if args.zone_list or args.tsig:
                print("srvd import: --zone-list and --tsig go with --axfr-from", file=sys.stderr)
                return 2
            return import_directory(
                args.zones, args.output, args.nameservers, args.hostmaster, args.ttl, args.jobs
            )
        if not args.zone_list:
            print("srvd import: --axfr-from needs --zone-list FILE", file=sys.stderr)
            return 2
        host, port = args.axfr_from
        return import_transfers(
            host,
            port,
            args.zone_list,
            args.tsig,
            args.timeout,
            args.output,
            args.nameservers,
            args.hostmaster,
            args.ttl,
        )
    raise AssertionError(args.command)  # pragma: no cover
