"""The moving-in commands' arguments and their work (srvd.cli registers them): ``srvd import``
(srvd.migrate.importing), ``srvd delegation``, ``srvd verify-delegation`` (srvd.migrate.verify).
What needs dnspython is imported only when its command runs, so that ``srvd serve`` and
``srvd health`` do not load it."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from srvd.config import Config
from srvd.migrate.delegation import DEFAULT_TTL, master_lines, nsupdate_lines, parent_records
from srvd.migrate.records import TsigKey, parse_tsig

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


def _jobs(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 256:
        raise argparse.ArgumentTypeError("a number from 1 to 256")
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
        type=_jobs,
        help="master files: parsing processes (default: one per core); AXFR: transfers at "
        "a time (default 4)",
    )
    imp.add_argument(
        "--timeout", type=_positive, default=10.0, help="seconds per transfer message (10)"
    )
    _add_delegation(commands, config_help)
    _add_verify(commands, config_help)


def _domain_command(commands: Any, name: str, help_text: str, config_help: str) -> Any:
    """A command on configured domains: DOMAIN... or --all, and -c."""
    parser = commands.add_parser(name, help=help_text)
    parser.add_argument("domains", nargs="*", metavar="DOMAIN")
    parser.add_argument("--all", action="store_true", help="every configured domain")
    parser.add_argument("-c", "--config", help=config_help)
    return parser


def _add_delegation(commands: Any, config_help: str) -> None:
    delegation = _domain_command(
        commands,
        "delegation",
        "print the records the parent zones need to delegate to srvd (NS, and DS)",
        config_help,
    )
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
    if every == bool(names):
        print(f"srvd {command}: give DOMAIN... or --all", file=sys.stderr)
        return None
    if every:
        return list(config.domains)
    try:
        return [config.domain_named(raw) for raw in names]
    except ValueError as exc:
        print(f"srvd {command}: {exc}", file=sys.stderr)
        return None


def delegation(args: argparse.Namespace, config: Config) -> int:
    domains = _domains(config, args.domains, args.all, "delegation")
    if domains is None:
        return 2
    lines_of = master_lines if args.format == "master" else nsupdate_lines
    for domain in domains:
        print("\n".join(lines_of(domain, parent_records(config, domain), args.ttl)))
    return 0


def _add_verify(commands: Any, config_help: str) -> None:
    verify = _domain_command(
        commands,
        "verify-delegation",
        "ask the parent zones' servers whether each domain is delegated to srvd correctly",
        config_help,
    )
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
        from srvd.migrate.importing import import_directory, import_transfers

        if args.zones is not None:
            if args.zone_list or args.tsig:
                print("srvd import: --zone-list and --tsig go with --axfr-from", file=sys.stderr)
                return 2
            return import_directory(
                args.zones,
                args.output,
                args.nameservers,
                args.hostmaster,
                args.ttl,
                args.jobs or os.cpu_count() or 1,
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
            args.jobs or 4,
        )
    raise AssertionError(args.command)  # pragma: no cover
