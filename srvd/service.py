"""The composition root: configuration → responder → listening sockets, as Twisted services.

Both ``srvd serve`` and ``twistd srvd`` build their service here. Sockets are srvd's own (bound in
``privilegedStartService``, so port 53 can be bound before privileges are dropped, then adopted by
the reactor): that is where IPv6-only binding and large receive buffers are set.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import os
import signal
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from importlib import resources
from typing import Any, ClassVar, Literal, cast

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort, IReactorSocket, IReactorTime
from twisted.logger import Logger
from twisted.python import usage

from srvd import __version__
from srvd.config import (
    METRICS_PORT,
    Config,
    Endpoint,
    UdpSettings,
    parse_endpoint,
)
from srvd.index.build import build_index
from srvd.index.model import Index
from srvd.index.serials import SerialState
from srvd.ops.dnssec import DnssecCollector
from srvd.ops.metrics import Counters, MetricsService, Snapshot, registry_for
from srvd.ops.systemd import Notifier
from srvd.server.loading import Built, load_aside
from srvd.server.protocols import TCPFactory, UDPProtocol
from srvd.server.reload import Reloader
from srvd.server.responder import Responder
from srvd.server.workers import SCALARS, Publisher, StatsFile, WorkerPool
from srvd.wire.ordering import RandomSource
from srvd.xfr.transfer import TransferCollector, Transfers, start_primary

log = Logger()
DEFAULT_UDP = UdpSettings()

SYSTEM_CONFIG = "/etc/srvd/srvd.yaml"
# Linux caps SO_RCVBUF/SO_SNDBUF at net.core.rmem_max/wmem_max; the FORCE variants may exceed it
# with CAP_NET_ADMIN (as NSD does when started as root).
_FORCE = {socket.SO_RCVBUF: 33, socket.SO_SNDBUF: 32}  # SO_RCVBUFFORCE, SO_SNDBUFFORCE


def _buffer(sock: socket.socket, option: int, size: int) -> int:
    """Ask for a socket buffer of ``size`` octets; the size the kernel gave (it reports double)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, _FORCE[option], size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, option, size)
    return sock.getsockopt(socket.SOL_SOCKET, option) // 2


def bundled_config() -> str:
    return str(resources.files("srvd") / "data" / "example.yaml")


def find_config(path: str | None) -> tuple[str, bool]:
    """The configuration to use: -c FILE, else /etc/srvd/srvd.yaml, else the bundled example."""
    if path:
        return path, False
    if os.path.exists(SYSTEM_CONFIG):
        return SYSTEM_CONFIG, False
    return bundled_config(), True


class Options(usage.Options):
    synopsis = "[-c FILE] [--listen ADDR:PORT ...]"
    optParameters: ClassVar[list[list[str | None]]] = [
        ["config", "c", None, "configuration file (default /etc/srvd/srvd.yaml, else the example)"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_metrics(self, value: str) -> None:
        """serve /metrics on ADDR:PORT instead of the configured address, or 'off'"""
        if value == "off":
            self["metrics"] = False
            return
        try:
            self["metrics"] = parse_endpoint(value, METRICS_PORT)
        except ValueError as exc:
            raise usage.UsageError(str(exc)) from None

    def opt_listen(self, value: str) -> None:
        """listen on ADDR:PORT (UDP and TCP) instead of the configured addresses; repeatable"""
        try:
            self["listen"].append(parse_endpoint(value))
        except ValueError as exc:
            raise usage.UsageError(str(exc)) from None

    opt_l = opt_listen


def _bind(
    endpoint: Endpoint,
    kind: socket.SocketKind,
    shared: bool = False,
    buffers: UdpSettings = DEFAULT_UDP,
) -> socket.socket:
    family = socket.AF_INET6 if endpoint.family_v6 else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if shared:  # several worker processes on one address: the kernel spreads the load
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        else:
            wanted = {
                socket.SO_RCVBUF: buffers.receive_buffer,
                socket.SO_SNDBUF: buffers.send_buffer,
            }
            for option, size in wanted.items():
                got = _buffer(sock, option, size)
                if got < size:
                    name = "receive" if option == socket.SO_RCVBUF else "send"
                    sysctl = "rmem_max" if option == socket.SO_RCVBUF else "wmem_max"
                    log.warn(
                        "UDP {name} buffer on {endpoint}: {got} octets, not the {size} asked for "
                        "(raise net.core.{sysctl}, or run with CAP_NET_ADMIN)",
                        name=name,
                        endpoint=endpoint,
                        got=got,
                        size=size,
                        sysctl=sysctl,
                    )
        sock.bind((endpoint.host, endpoint.port))
        if kind == socket.SOCK_STREAM:
            sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_pair(
    endpoint: Endpoint, shared: bool = False, buffers: UdpSettings = DEFAULT_UDP
) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on one address and port (port 0: the same free port for both)."""
    attempts = 20 if endpoint.port == 0 else 1
    for attempt in range(attempts):
        udp = _bind(endpoint, socket.SOCK_DGRAM, shared, buffers)
        try:
            tcp = _bind(replace(endpoint, port=udp.getsockname()[1]), socket.SOCK_STREAM, shared)
        except OSError:
            udp.close()
            if attempt == attempts - 1:
                raise
            continue
        return udp, tcp
    raise AssertionError("unreachable")  # pragma: no cover


class ListenService(Service):
    """UDP and TCP on one address."""

    def __init__(self, endpoint: Endpoint, server: SrvdService) -> None:
        self.endpoint = endpoint
        self.server = server
        self.udp = UDPProtocol(server.responder)  # one protocol per UDP port
        self.sockets: tuple[socket.socket, socket.socket] | None = None
        self.ports: list[IListeningPort] = []
        self.bound: Endpoint | None = None

    def privilegedStartService(self) -> None:
        try:
            self.sockets = bind_pair(self.endpoint, self.server.workers > 1, self.server.config.udp)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {self.endpoint}: {exc.strerror}") from None
        self.bound = replace(self.endpoint, port=self.sockets[0].getsockname()[1])
        super().privilegedStartService()

    def startService(self) -> None:
        if self.sockets is None:
            self.privilegedStartService()
        assert self.sockets is not None
        reactor = cast(IReactorSocket, self.server.reactor)
        udp, tcp = self.sockets
        self.ports = [
            reactor.adoptDatagramPort(udp.fileno(), udp.family, self.udp, 65535),
            reactor.adoptStreamPort(tcp.fileno(), tcp.family, cast(Any, self.server.tcp)),
        ]
        udp.close()  # the reactor holds duplicates of the descriptors
        tcp.close()
        self.sockets = None
        log.info("listening on {endpoint} (UDP and TCP)", endpoint=self.bound)
        super().startService()

    def stopService(self) -> defer.Deferred[Any]:
        super().stopService()
        ports, self.ports = self.ports, []
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])


RELEASE_SLICE = 20_000  # old zones freed per reactor turn after a reload


def _settle() -> None:
    """Take the objects alive now (the index above all) out of the garbage collector's scans,
    and give the C allocator's free memory back to the system.

    They live until the next reload, and they hold no reference cycles, so reference counting
    frees them; left in the collector's oldest generation, every full collection would walk them
    all (and after a fork, such as a worker's, write to every page of them, copying each). A
    load's buffers, freed by now, would otherwise stay with glibc (the arena of the thread that
    assembled the index) for the life of the process.
    """
    gc.freeze()
    _trim()


def _trim() -> None:
    """glibc's malloc_trim(0), where there is one."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return cast(Callable[[int], int], ctypes.CDLL(None).malloc_trim)  # the C library's
    except (OSError, AttributeError):
        return None


def _empty_in_slices(zones: dict[bytes, Any], reactor: Any) -> None:
    """Free an index that is no longer served, a slice of its zones per reactor turn.

    A module-level function, not a closure: a closure that schedules itself is a reference
    cycle, which the ``gc.freeze()`` of the next publish would keep (with the emptied dict's
    table) for the life of the process."""
    for _ in range(RELEASE_SLICE):
        if not zones:
            return
        zones.popitem()
    reactor.callLater(0, _empty_in_slices, zones, reactor)


class SrvdService(MultiService):
    """srvd: a responder over the configured index, on every listen address, reloaded on SIGHUP."""

    def __init__(
        self,
        config: Config,
        reactor: Any,
        rng: RandomSource | None = None,
        listen: Sequence[Endpoint] = (),
        environ: Mapping[str, str] | None = None,
        metrics_at: Endpoint | Literal[False] | None = None,
        workers: int | None = None,
        worker: tuple[int, str] | None = None,
        worker_argv: Sequence[str] = (),
        built: Built | None = None,
    ) -> None:
        """``worker`` (slot, stats file) makes this process one of the workers a primary
        started; ``worker_argv`` is how a primary starts its workers (``serve`` arguments).
        ``built``: the configuration loaded with its index (srvd.server.loading); without it the
        index is built here from ``config``."""
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.workers = workers or config.workers
        self.serials = SerialState(config.state_dir)
        if built is not None:
            index = built.index
        else:
            index = build_index(config, self.serials.source(None, config.mtime))
        _settle()
        # --metrics overrides the configured address; False turns /metrics off
        metrics = config.metrics if metrics_at is None else (metrics_at or None)
        counting = metrics is not None
        if worker is not None:  # a worker counts for the primary and serves no /metrics
            metrics = None
        self.responder = Responder(index, rng, counting=counting)
        self.responder.limit(config.rrl, self.workers)
        self.notifier = Notifier(environ)
        self.reloader = Reloader(
            config.source,
            lambda: self.responder.index,
            self.publish,
            reactor,
            self.notifier,
            built,
        )
        self.tcp = TCPFactory(self.responder, cast(IReactorTime, reactor), config.tcp)
        self.listeners = [ListenService(e, self) for e in (listen or config.listen)]
        for listener in self.listeners:
            listener.setServiceParent(self)
        # srvd as a hidden primary (srvd.xfr.transfer): transfers, TSIG, the catalog, NOTIFY out
        self.primary: Transfers | None = None
        if config.transfer is not None or config.catalog is not None:
            self.primary = start_primary(self, notify=worker is None)
        self.metrics: MetricsService | None = None
        if metrics is not None:
            registry = registry_for(self.snapshot)
            if self.primary is not None:
                registry.register(TransferCollector(self.primary))
            registry.register(DnssecCollector(lambda: self.responder.index))
            self.metrics = MetricsService(metrics, registry, reactor)
            self.metrics.setServiceParent(self)
        self.pool: WorkerPool | None = None
        if worker is not None:
            slot, path = worker
            stats = StatsFile(path, self.workers, create=False)
            publisher = Publisher(stats, slot, self.worker_scalars, self.responder.fold, reactor)
            publisher.setServiceParent(self)
        elif self.workers > 1:
            self.pool = WorkerPool(
                self.workers - 1, worker_argv, StatsFile.create(self.workers), reactor
            )
            self.pool.setServiceParent(self)

    def worker_scalars(self) -> list[int]:
        """What a worker tells the primary besides its counters (srvd.server.workers.SCALARS)."""
        return [
            self.responder.failures,
            sum(listener.udp.send_errors for listener in self.listeners),
            self.tcp.open_connections,
            self.tcp.rejected,
            self.tcp.reaped,
            self.tcp.incomplete,
            1 if self.reloader.stats.last_successful else 0,
            os.getpid(),
        ]

    def snapshot(self) -> Snapshot:
        """The figures the metrics collector reads at scrape time."""
        stats = self.responder.index.stats
        reloads = self.reloader.stats
        counters = self.responder.fold()
        own = self.worker_scalars()
        sums = dict(zip(SCALARS, own, strict=True))
        reload_ok = reloads.last_successful
        if self.pool is not None:  # add up every worker's counts
            counters = Counters()
            counters.add(self.responder.fold())
            for theirs, scalars in self.pool.worker_stats():
                counters.add(theirs)
                for name in (
                    "internal_errors",
                    "udp_send_errors",
                    "tcp_connections",
                    "tcp_rejected",
                    "tcp_reaped",
                    "tcp_incomplete",
                ):
                    sums[name] += scalars[name]
                reload_ok = reload_ok and scalars["reload_ok"] == 1
        return Snapshot(
            counters=counters,
            domains=stats.domains,
            zones=stats.zones,
            records=stats.records,
            tcp_connections=sums["tcp_connections"],
            tcp_rejected=sums["tcp_rejected"],
            tcp_reaped=sums["tcp_reaped"],
            tcp_incomplete=sums["tcp_incomplete"],
            udp_send_errors=sums["udp_send_errors"],
            internal_errors=sums["internal_errors"],
            reloads_succeeded=reloads.succeeded,
            reloads_failed=reloads.failed,
            last_reload_successful=reload_ok,
            last_reload_success_time=reloads.last_success_time,
            last_reload_duration=reloads.last_duration,
            config_sha256=self.config.sha256,
        )

    def startService(self) -> None:
        stats = self.responder.index.stats
        log.info(
            "srvd {version}: {domains} domains, {zones} zones, {records} records from {source}",
            version=__version__,
            domains=stats.domains,
            zones=stats.zones,
            records=stats.records,
            source=self.config.source,
        )
        try:
            self.serials.write(self.responder.index)
        except OSError as exc:
            log.warn("cannot write the serials state file: {error}", error=exc)
        super().startService()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGHUP, self.sighup)
        self.notifier.ready(f"serving {stats.domains} domains, {stats.zones} zones")

    def stopService(self) -> defer.Deferred[Any]:
        self.notifier.stopping()
        return cast(defer.Deferred[Any], super().stopService())

    def sighup(self, signum: int, frame: object) -> None:
        """Reload this process, and tell every worker to reload too."""
        self.reloader.request_from_signal(signum, frame)
        if self.pool is not None:
            self.reactor.callFromThread(self.pool.signal_all, signal.SIGHUP)

    def publish(self, config: Config, index: Index) -> None:
        """Serve a new configuration (reactor thread): one assignment swaps the index."""
        old = self.responder.index
        self.responder.index = index
        _settle()
        # the old zones go in slices: freeing a million entries at once would stall answers
        _empty_in_slices(old.zones, self.reactor)
        if config.listen != self.config.listen:
            log.warn("listen addresses changed in the configuration: they take effect on restart")
        self.tcp.settings = config.tcp
        if config.rrl != self.config.rrl:
            self.responder.limit(config.rrl, self.workers)
        self.config = config

    @property
    def addresses(self) -> list[Endpoint]:
        return [listener.bound for listener in self.listeners if listener.bound is not None]


def makeService(options: Options | dict[str, Any], reactor: Any = None) -> SrvdService:
    """The service for ``twistd srvd`` and ``srvd serve``."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    path, bundled = find_config(options.get("config"))
    if bundled:
        log.info(
            "no configuration given and none at {system}: running the bundled example",
            system=SYSTEM_CONFIG,
        )
    # read and built by a build process: this one's heap holds the index and little else
    built = load_aside(path)
    config = built.config
    listen = options.get("listen") or ()
    slot, stats_file = options.get("worker_slot"), options.get("stats_file")
    worker = (slot, stats_file) if slot is not None and stats_file else None
    # how the workers are started: the same configuration and addresses (workers serve no
    # /metrics of their own; they count for the primary unless metrics are off)
    argv = ["serve", "-c", config.source]
    if options.get("metrics") is False or (options.get("metrics") is None and not config.metrics):
        argv += ["--metrics", "off"]
    for endpoint in listen:
        argv += ["--listen", str(endpoint)]
    if options.get("workers"):
        argv += ["--workers", str(options["workers"])]
    return SrvdService(
        config,
        reactor,
        listen=listen,
        metrics_at=options.get("metrics"),
        workers=options.get("workers"),
        worker=worker,
        worker_argv=argv,
        built=built,
    )
