"""``srvd import``: the commands' work, apart from argument parsing (srvd.cli)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from srvd.config import Config, ConfigError, load_config
from srvd.migrate.delegation import DEFAULT_TTL, master_lines, nsupdate_lines, parent_records
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

COMMANDS = ("import", "delegation", "verify-delegation")


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


def add_parsers(commands: Any, config_help: str) -> None:
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
    _add_delegation(commands, config_help)
    _add_verify(commands, config_help)


def _add_delegation(commands: Any, config_help: str) -> None:
    delegation = commands.add_parser(
        "delegation",
        help="print the records the parent zones need to delegate to srvd (NS, and DS)",
    )
    delegation.add_argument("domains", nargs="*", metavar="DOMAIN")
    delegation.add_argument("--all", action="store_true", help="every configured domain")
    delegation.add_argument("-c", "--config", help=config_help)
    delegation.add_argument(
        "--format",
        choices=("master", "nsupdate"),
        default="master",
        help="master-file lines (default), or nsupdate input",
    )
    delegation.add_argument(
        "--ttl", type=_ttl, default=DEFAULT_TTL, help=f"TTL of the records (default {DEFAULT_TTL})"
    )


def _domains(config: Config, names: Sequence[str], every: bool, command: str) -> list[str] | None:
    """The domains a command works on (configured ones), or None (the problem printed)."""
    from srvd.wire.names import InvalidName, host_name

    if every == bool(names):
        print(f"srvd {command}: give DOMAIN... or --all", file=sys.stderr)
        return None
    if every:
        return list(config.domains)
    out = []
    for raw in names:
        try:
            name = host_name(raw)
        except InvalidName as exc:
            print(f"srvd {command}: {exc}", file=sys.stderr)
            return None
        if name not in config.domains:
            print(f"srvd {command}: {name} is not configured in {config.source}", file=sys.stderr)
            return None
        out.append(name)
    return out


def delegation(args: argparse.Namespace, config: Config) -> int:
    domains = _domains(config, args.domains, args.all, "delegation")
    if domains is None:
        return 2
    lines_of = master_lines if args.format == "master" else nsupdate_lines
    for domain in domains:
        print("\n".join(lines_of(domain, parent_records(config, domain), args.ttl)))
    return 0


def _add_verify(commands: Any, config_help: str) -> None:
    verify = commands.add_parser(
        "verify-delegation",
        help="ask the parent zones' servers whether each domain is delegated to srvd correctly",
    )
    verify.add_argument("domains", nargs="*", metavar="DOMAIN")
    verify.add_argument("--all", action="store_true", help="every configured domain")
    verify.add_argument("-c", "--config", help=config_help)
    where = verify.add_mutually_exclusive_group()
    where.add_argument(
        "--resolver",
        metavar="ADDR[:PORT]",
        type=_host_port,
        help="find the parent zones and their servers through this recursive resolver "
        "(default: the first nameserver of /etc/resolv.conf)",
    )
    where.add_argument(
        "--server",
        metavar="ADDR[:PORT]",
        type=_host_port,
        help="ask only this server, as the parent zones' authoritative server",
    )
    verify.add_argument(
        "--port", type=int, default=53, help="port of the name servers found by name (53)"
    )
    verify.add_argument(
        "--rate", type=_positive, default=20.0, help="queries per second at most (20)"
    )
    verify.add_argument(
        "--timeout", type=_positive, default=2.0, help="seconds to wait for each reply (2)"
    )
    verify.add_argument(
        "--time-limit",
        type=_positive,
        default=600.0,
        help="seconds for the whole run (600); domains left are reported unchecked",
    )
    verify.add_argument(
        "--no-transfer",
        action="store_true",
        help="do not try AXFR of the parent zones (used to find records hidden under the cut)",
    )


def _system_resolver() -> tuple[str, int] | None:
    try:
        with open("/etc/resolv.conf", encoding="utf-8") as handle:
            for line in handle:
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver":
                    return words[1].split("%", 1)[0], 53
    except OSError:
        pass
    return None


def verify_delegation(args: argparse.Namespace, config: Config) -> int:
    from srvd.migrate.verify import Asker, Verifier, render, verify_all

    domains = _domains(config, args.domains, args.all, "verify-delegation")
    if domains is None:
        return 2
    resolver = args.resolver
    if resolver is None and args.server is None:
        resolver = _system_resolver()
        if resolver is None:
            print(
                "srvd verify-delegation: no resolver: give --resolver or --server", file=sys.stderr
            )
            return 2
    asker = Asker(args.rate, args.timeout, args.time_limit)
    verifier = Verifier(
        config, asker, args.port, resolver, args.server, transfers=not args.no_transfer
    )
    counts = {"ok": 0, "fault": 0, "unchecked": 0}
    started = time.monotonic()
    for result in verify_all(verifier, domains):
        print("\n".join(render(result)), flush=True)
        counts["ok" if result.ok else "fault" if result.checked else "unchecked"] += 1
    print(
        f"srvd verify-delegation: {len(domains)} domains: {counts['ok']} OK, "
        f"{counts['fault']} with faults, {counts['unchecked']} not checked; "
        f"{asker.sent} queries in {time.monotonic() - started:.1f} s"
    )
    return 0 if counts["ok"] == len(domains) else 1


def run(args: argparse.Namespace, config: Config | None = None) -> int:
    if args.command == "delegation":
        assert config is not None
        return delegation(args, config)
    if args.command == "verify-delegation":
        assert config is not None
        return verify_delegation(args, config)
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
