"""``srvd serve | check | zone | reload | health``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from srvd import __version__
from srvd.config import (
    MAX_WORKERS,
    METRICS_PORT,
    Config,
    ConfigError,
    Endpoint,
    load_config,
    parse_endpoint,
)
from srvd.config.load import DomainSink, read_config
from srvd.http.pacc import OWNER as PACC_OWNER
from srvd.http.pacc import deriver
from srvd.index.build import Counter, build_index
from srvd.index.serials import SerialState
from srvd.ops.health import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    check_health,
    query_name,
    query_type,
)
from srvd.service import find_config
from srvd.wire.names import InvalidName
from srvd.wire.text import plural


def _endpoint(value: str) -> object:
    try:
        return parse_endpoint(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _workers(value: str) -> int:
    if value == "auto":
        return os.cpu_count() or 1
    if not value.isdigit() or not 1 <= int(value) <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"a number from 1 to {MAX_WORKERS}, or auto")
    return int(value)


def _metrics_endpoint(value: str) -> object:
    if value.strip().lower() == "off":
        return False
    try:
        return parse_endpoint(value, METRICS_PORT)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _http_endpoint(value: str) -> object:
    if value.strip().lower() == "off":
        return False
    try:
        return parse_endpoint(value, 80)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _control_path(value: str) -> object:
    return False if value.strip().lower() == "off" else os.path.abspath(value)


def _control_commands(commands: Any, config_help: str) -> None:
    """``status``, ``show``, ``list``, ``diff`` (srvd.ops.control)."""
    socket_help = "the control socket (default: the configuration's control:, else /run/srvd)"
    status = commands.add_parser("status", help="what the running srvd serves, and how it is")
    show = commands.add_parser(
        "show", help="a domain: its configuration, and the zones, serials and records served now"
    )
    show.add_argument("domain")
    listing = commands.add_parser("list", help="the domains served now, one a line")
    listing.add_argument("--profile", help="only those on this profile (in the configuration)")
    diff = commands.add_parser(
        "diff", help="what a reload of the configuration would add, remove and change"
    )
    for command in (status, show, listing, diff):
        command.add_argument("-c", "--config", help=config_help + "; also where to find control:")
        command.add_argument("--socket", metavar="PATH", help=socket_help)


def _control(args: argparse.Namespace) -> int:
    """The commands of the control channel (srvd.ops.control)."""
    from srvd.ops import control

    try:
        path = control.socket_path(args.socket, find_config(args.config)[0])
        if args.command == "status":
            return control.status(path)
        if args.command == "reload":
            return control.reload(path, args.force)
        if args.command == "show":
            return control.show(path, args.domain, args.config)
        if args.command == "list":
            return control.list_domains(path, args.profile, args.config)
        return control.diff(path, args.config)
    except control.Unreachable as exc:
        print(f"srvd {args.command}: {exc} (is srvd running?)", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return _broken_pipe()


def _broken_pipe() -> int:
    """The reader of our output went away (``| head``): stop quietly, as cat does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes at exit
    return 1


def _query_name(value: str) -> str:
    try:
        return query_name(value)
    except InvalidName as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _query_type(value: str) -> int:
    try:
        return query_type(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 60:
        raise argparse.ArgumentTypeError("a number of seconds above 0, at most 60")
    return seconds


def _retries(value: str) -> int:
    if not value.isdigit() or int(value) > 10:
        raise argparse.ArgumentTypeError("a number from 0 to 10")
    return int(value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="srvd", description="Authoritative DNS for mail and calendar discovery subzones."
    )
    parser.add_argument("--version", action="version", version=f"srvd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_help = "configuration file (default: /etc/srvd/srvd.yaml, else the bundled example)"

    serve = commands.add_parser("serve", help="answer queries in the foreground, logging to stderr")
    serve.add_argument("-c", "--config", help=config_help)
    serve.add_argument(
        "-l",
        "--listen",
        action="append",
        type=_endpoint,
        default=[],
        metavar="ADDR:PORT",
        help="listen here (UDP and TCP) instead of the configured addresses; repeatable",
    )

    serve.add_argument(
        "--pidfile", metavar="FILE", help="write the process id here (for `srvd reload`)"
    )
    serve.add_argument(
        "--workers",
        metavar="N",
        type=_workers,
        help="answer with N processes on the same addresses (or 'auto': one per core)",
    )
    serve.add_argument(
        "--control",
        metavar="PATH",
        type=_control_path,
        help="the control socket instead of the configured one, or 'off'",
    )
    serve.add_argument("--worker-slot", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--stats-file", help=argparse.SUPPRESS)
    serve.add_argument("--snapshot", help=argparse.SUPPRESS)
    serve.add_argument(
        "--metrics",
        metavar="ADDR:PORT",
        type=_metrics_endpoint,
        help="serve /metrics here instead of the configured address, or 'off'",
    )
    serve.add_argument(
        "--http",
        metavar="ADDR:PORT",
        type=_http_endpoint,
        help="serve the discovery documents here instead of http.listen, or 'off'",
    )

    reload = commands.add_parser(
        "reload",
        help="ask the running srvd to reload its configuration; print the outcome",
    )
    reload.add_argument("-c", "--config", help=config_help + "; read for its control: key only")
    reload.add_argument("--socket", metavar="PATH", help="the control socket (default: control:)")
    reload.add_argument("--force", action="store_true", help="apply even past reload.max_removed")
    reload.add_argument(
        "--pidfile",
        metavar="FILE",
        help="no control channel: check the configuration the srvd of this pid file runs, "
        "then send it SIGHUP (`srvd serve --pidfile FILE` writes it)",
    )
    reload.add_argument(
        "--no-check", action="store_true", help="with --pidfile: signal without checking first"
    )
    _control_commands(commands, config_help)

    check = commands.add_parser("check", help="validate the configuration and print a summary")
    check.add_argument("-c", "--config", help=config_help)
    check.add_argument("--strict", action="store_true", help="exit 1 on warnings too")

    zone = commands.add_parser("zone", help="print the zones served for one domain (master file)")
    zone.add_argument("domain", nargs="?")
    zone.add_argument("-c", "--config", help=config_help)
    zone.add_argument(
        "--all", action="store_true", help="every served zone (and the catalog), not one domain"
    )
    zone.add_argument(
        "-o", "--output", metavar="DIR", help="with --all: one file per zone here, not stdout"
    )

    health = commands.add_parser(
        "health",
        help="ask a running srvd a DNS question over UDP; exit 0 if the answer is right, else 1",
    )
    health.add_argument("-c", "--config", help=config_help + "; read only without --name")
    health.add_argument(
        "--server",
        metavar="ADDR[:PORT]",
        type=_endpoint,
        help="where to ask (default: the first listen: address of the configuration, a "
        "wildcard as loopback)",
    )
    health.add_argument(
        "--name",
        type=_query_name,
        help="the name to ask for (default: the apex of the first zone the configuration serves)",
    )
    health.add_argument(
        "--type", type=_query_type, default=6, help="the record type to ask for (default SOA)"
    )
    health.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        help=f"how long to wait for each reply (default {DEFAULT_TIMEOUT:g})",
    )
    health.add_argument(
        "--retries",
        metavar="N",
        type=_retries,
        default=DEFAULT_RETRIES,
        help=f"attempts after the first when no reply comes (default {DEFAULT_RETRIES})",
    )
    from srvd.migrate.commands import add_parsers

    add_parsers(commands, config_help)  # srvd import, delegation, verify-delegation
    from srvd.signing import add_commands

    add_commands(commands, config_help)  # srvd dnssec keygen | ds
    return parser


def _load(path: str | None, sink: DomainSink | None = None) -> Config | None:
    """The configuration (its domains given to ``sink``, if any), or None when it has problems
    (printed)."""
    source, _bundled = find_config(path)
    try:
        return load_config(source) if sink is None else read_config(source, sink)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem.render(), file=sys.stderr)
        count = len(exc.problems)
        more = "" if exc.complete else " (checking stopped there; there may be more)"
        print(f"{source}: {count} problem{'s' if count != 1 else ''} found{more}", file=sys.stderr)
        return None


def check(path: str | None, strict: bool = False) -> int:
    """Problems: exit 1. Warnings (srvd.config.lint): printed, exit 0 unless ``strict``."""
    from srvd.config.lint import Linter

    counter = Counter(deriver)  # the index's figures, counted as the domains are read
    linter = Linter(counter)
    config = _load(path, linter)
    if config is None:
        return 1
    warnings = linter.warnings(config)
    for warning in warnings:
        print(warning.render(), file=sys.stderr)
    stats = counter.stats(config)
    flagged = f" with {plural(len(warnings), 'warning')}" if warnings else ""
    verdict = "FAILED (--strict)" if warnings and strict else "OK"
    print(
        f"{config.source}: {verdict}{flagged}: {plural(stats.domains, 'domain')}, "
        f"{plural(stats.zones, 'zone')}, {plural(stats.records, 'record')}, "
        f"{plural(stats.profiles, 'profile')}, from {plural(len(config.files), 'file')}"
    )
    if config.dnssec is not None:
        from srvd.signing import summary

        print(summary(config.dnssec))
    return 1 if warnings and strict else 0


def zone(domain: str, path: str | None) -> int:
    from srvd.index.zonefile import domain_zones, zone_text

    config = _load(path)
    if config is None:
        return 1
    try:
        name = config.domain_named(domain)
    except ValueError as exc:
        print(f"srvd zone: {exc}", file=sys.stderr)
        return 1
    serials = SerialState(config.state_dir).source(None, config.mtime)
    index = build_index(config, serials, deriver(config.http))  # with PACC's TXT, if on
    zones = domain_zones(config, index, name, (PACC_OWNER,))
    if not zones:
        print(f"; {name}: its profile publishes no records, so srvd serves no zone for it")
    print("\n".join(zone_text(index, apex, z) for apex, z in zones), end="")
    return 0


def health(
    path: str | None,
    server: Endpoint | None,
    name: str | None,
    qtype: int,
    timeout: float,
    retries: int,
) -> int:
    """Exit 0 when ``server`` answers the question right, else 1 with one line on stderr.

    Without ``--server`` or ``--name`` the configuration says where and what: its ``listen:`` and
    its first zone, read without building the index (srvd.ops.health.probe_plan). One that
    serves no zone yet (the container's template, nothing mounted) is healthy when srvd answers
    a question for the root with REFUSED."""
    serves_nothing = False
    if server is None or name is None:
        from srvd.ops.health import probe_plan

        source, _bundled = find_config(path)
        try:
            listens, first = probe_plan(source)
        except ConfigError as exc:
            count = len(exc.problems)
            print(
                f"srvd health: {source}: {count} configuration problem{'s' if count != 1 else ''}"
                f" (srvd check shows them), first: {exc.problems[0].render()}",
                file=sys.stderr,
            )
            return 1
        except (OSError, ValueError) as exc:
            print(f"srvd health: {source}: {exc}", file=sys.stderr)
            return 1
        server = server or listens
        if name is None:
            name, serves_nothing = (first, False) if first is not None else (".", True)
            if serves_nothing:
                qtype = 6
    verdict = check_health(server, name, qtype, timeout, retries, serves_nothing)
    print(f"srvd health: {verdict.message}", file=sys.stdout if verdict.healthy else sys.stderr)
    return 0 if verdict.healthy else 1


def reload_signal(pidfile: str, check_first: bool) -> int:
    """``srvd reload --pidfile``: check the configuration the srvd of ``pidfile`` runs, then
    SIGHUP it; never signal a process that /proc does not show to be srvd."""
    from srvd.ops.control import srvd_process

    try:
        pid, its_config = srvd_process(pidfile)
    except ValueError as exc:
        print(f"srvd reload: {exc}", file=sys.stderr)
        return 1
    if check_first and check(its_config) != 0:
        print(
            f"srvd reload: process {pid} not signalled, its configuration has problems",
            file=sys.stderr,
        )
        return 1
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        print(f"srvd reload: cannot signal process {pid}: {exc.strerror}", file=sys.stderr)
        return 1
    print(
        f"srvd reload: asked process {pid} to reload {find_config(its_config)[0]}; the outcome "
        "is in its log (and `srvd status`)"
    )
    return 0


def _write_pidfile(path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = f"{path}.{os.getpid()}"
    with open(temporary, "w", encoding="ascii") as handle:
        handle.write(f"{os.getpid()}\n")
    os.replace(temporary, path)


def _remove_pidfile(path: str) -> None:
    try:
        with open(path, encoding="ascii") as handle:
            if handle.read().strip() != str(os.getpid()):
                return
        os.unlink(path)
    except OSError:
        pass


def serve(
    path: str | None,
    listen: Sequence[object],
    pidfile: str | None = None,
    metrics: object = None,
    workers: int | None = None,
    worker_slot: int | None = None,
    stats_file: str | None = None,
    http: object = None,
    control: object = None,
    snapshot: str | None = None,
) -> int:
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from srvd.service import makeService

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    try:
        options = {
            "config": path,
            "listen": list(listen),
            "metrics": metrics,
            "workers": workers,
            "worker_slot": worker_slot,
            "stats_file": stats_file,
            "http": http,
            "control": control,
            "snapshot": snapshot,
        }
        service = makeService(options, reactor)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem.render(), file=sys.stderr)
        return 1
    try:
        service.privilegedStartService()
    except OSError as exc:
        print(f"srvd: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if pidfile:
        try:
            _write_pidfile(pidfile)
        except OSError as exc:
            print(f"srvd: cannot write the pid file {pidfile}: {exc.strerror}", file=sys.stderr)
            return 1
        reactor.addSystemEventTrigger("after", "shutdown", _remove_pidfile, pidfile)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except BrokenPipeError:  # `srvd zone --all | head`: the reader is gone, as for cat
        return _broken_pipe()


def _run(args: argparse.Namespace) -> int:
    if args.command == "check":
        return check(args.config, args.strict)
    if args.command == "zone":
        if args.all:
            from srvd.export import export_all

            config = _load(args.config)
            return 1 if config is None else export_all(config, args.output)
        if not args.domain:
            print("srvd zone: give a DOMAIN, or --all", file=sys.stderr)
            return 2
        return zone(args.domain, args.config)
    if args.command == "health":
        return health(args.config, args.server, args.name, args.type, args.timeout, args.retries)
    if args.command == "dnssec":
        from srvd import signing

        if args.dnssec_command == "keygen":
            return signing.keygen(args.algorithm, args.output)
        config = _load(args.config)
        return 1 if config is None else signing.ds(config, args.domains, args.all)
    if args.command == "reload" and args.pidfile:
        return reload_signal(args.pidfile, not args.no_check)
    if args.command in ("status", "reload", "show", "list", "diff"):
        return _control(args)
    from srvd.migrate.commands import COMMANDS, run

    if args.command in COMMANDS:
        config = None if args.command == "import" else _load(args.config)
        return 1 if config is None and args.command != "import" else run(args, config)
    return serve(
        args.config,
        args.listen,
        args.pidfile,
        args.metrics,
        args.workers,
        args.worker_slot,
        args.stats_file,
        args.http,
        args.control,
        args.snapshot,
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
