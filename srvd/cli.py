"""``srvd serve | check | zone | reload | health``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

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
from srvd.index.build import Counter, build_index
from srvd.index.serials import SerialState
from srvd.ops.health import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    check_health,
    first_zone,
    query_name,
    query_type,
)
from srvd.service import find_config
from srvd.wire.names import InvalidName

DEFAULT_PIDFILE = "/run/srvd/srvd.pid"


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
    serve.add_argument("--worker-slot", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--stats-file", help=argparse.SUPPRESS)
    serve.add_argument(
        "--metrics",
        metavar="ADDR:PORT",
        type=_metrics_endpoint,
        help="serve /metrics here instead of the configured address, or 'off'",
    )

    reload = commands.add_parser(
        "reload", help="check the configuration, then tell the running srvd to reload it (SIGHUP)"
    )
    reload.add_argument("-c", "--config", help=config_help)
    reload.add_argument(
        "--pidfile",
        metavar="FILE",
        default=DEFAULT_PIDFILE,
        help=f"the pid file `srvd serve --pidfile` wrote (default {DEFAULT_PIDFILE})",
    )
    reload.add_argument(
        "--no-check", action="store_true", help="signal without checking the configuration first"
    )

    check = commands.add_parser("check", help="validate the configuration and print a summary")
    check.add_argument("-c", "--config", help=config_help)

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
        default=parse_endpoint("127.0.0.1:53"),
        help="where to ask (default 127.0.0.1:53)",
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


def check(path: str | None) -> int:
    counter = Counter()  # the index's figures, counted as the domains are read
    config = _load(path, counter)
    if config is None:
        return 1
    stats = counter.stats(config)
    files = len(config.files)
    print(
        f"{config.source}: OK: {stats.domains} domains, {stats.zones} zones, {stats.records} "
        f"records, {stats.profiles} profiles, from {files} file{'s' if files != 1 else ''}; "
        f"listening on {', '.join(str(e) for e in config.listen)}"
    )
    if config.dnssec is not None:
        from srvd.signing import summary

        print(summary(config.dnssec))
    return 0


def zone(domain: str, path: str | None) -> int:
    from srvd.index.zonefile import domain_zones, zone_text
    from srvd.wire.names import host_name

    config = _load(path)
    if config is None:
        return 1
    try:
        name = host_name(domain)
    except InvalidName as exc:
        print(f"srvd zone: {exc}", file=sys.stderr)
        return 1
    if name not in config.domains:
        print(f"srvd zone: {name} is not a configured domain in {config.source}", file=sys.stderr)
        return 1
    index = build_index(config, SerialState(config.state_dir).source(None, config.mtime))
    zones = domain_zones(config, index, name)
    if not zones:
        print(f"; {name}: its profile publishes no records, so srvd serves no zone for it")
    print("\n".join(zone_text(index, apex, z) for apex, z in zones), end="")
    return 0


def health(
    path: str | None,
    server: Endpoint,
    name: str | None,
    qtype: int,
    timeout: float,
    retries: int,
) -> int:
    """Exit 0 when ``server`` answers the question right, else 1 with one line on stderr."""
    if name is None:  # the first zone of the configuration
        source, _bundled = find_config(path)
        try:
            config = load_config(source)
        except ConfigError as exc:
            count = len(exc.problems)
            print(
                f"srvd health: {source}: {count} configuration problem{'s' if count != 1 else ''}"
                f" (srvd check shows them), first: {exc.problems[0].render()}",
                file=sys.stderr,
            )
            return 1
        name = first_zone(config)
        if name is None:
            print(
                f"srvd health: {source} serves no zone, so there is nothing to ask: give --name",
                file=sys.stderr,
            )
            return 1
    verdict = check_health(server, name, qtype, timeout, retries)
    print(f"srvd health: {verdict.message}", file=sys.stdout if verdict.healthy else sys.stderr)
    return 0 if verdict.healthy else 1


def reload(path: str | None, pidfile: str, check_first: bool) -> int:
    if check_first and check(path) != 0:
        print("srvd reload: not signalled, the configuration has problems", file=sys.stderr)
        return 1
    try:
        with open(pidfile, encoding="ascii") as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError) as exc:
        print(f"srvd reload: cannot read a process id from {pidfile}: {exc}", file=sys.stderr)
        return 1
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        print(f"srvd reload: cannot signal process {pid}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"srvd reload: asked process {pid} to reload")
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
    if args.command == "check":
        return check(args.config)
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
    if args.command == "reload":
        return reload(args.config, args.pidfile, not args.no_check)
    return serve(
        args.config,
        args.listen,
        args.pidfile,
        args.metrics,
        args.workers,
        args.worker_slot,
        args.stats_file,
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
