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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from importlib import resources
from typing import Any, ClassVar, Literal, cast

from twisted.application.service import MultiService, Service
from twisted.internet import defer, threads
from twisted.internet.interfaces import IListeningPort, IReactorSocket, IReactorTime
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from srvd import __version__
from srvd.config import (
    DEFAULT_CONTROL,
    METRICS_PORT,
    Config,
    Endpoint,
    UdpSettings,
    parse_endpoint,
)
from srvd.http.pacc import deriver
from srvd.index.build import build_index
from srvd.index.model import Index
from srvd.index.serials import SerialState
from srvd.ops.dnssec import DnssecCollector
from srvd.ops.metrics import Counters, MetricsService, Snapshot, WorkerFigures, registry_for
from srvd.ops.systemd import Notifier
from srvd.server.control import ControlService
from srvd.server.loading import Built, Changes, load_aside
from srvd.server.presign import Presigner
from srvd.server.protocols import TCPFactory, UDPProtocol
from srvd.server.reload import Reloader
from srvd.server.responder import Responder
from srvd.server.web import HttpCollector, HttpService
from srvd.server.workers import (
    SCALARS,
    Publisher,
    StatsFile,
    WorkerPool,
    read_snapshot,
    snapshot_place,
    write_snapshot,
)
from srvd.wire.ordering import RandomSource
from srvd.wire.text import figures, plural
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

    def opt_control(self, value: str) -> None:
        """the control socket's path instead of the configured one, or 'off'"""
        self["control"] = False if value.strip().lower() == "off" else os.path.abspath(value)

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


_NO_CHANGES = Changes((0, 0, 0), ([], [], []))


def _release_later(result: object, zones: dict[bytes, Any], reactor: Any) -> object:
    _empty_in_slices(zones, reactor)
    return result


def _load_snapshot(path: str, current: Index | None = None) -> Built:
    """A worker's load: the primary's snapshot (srvd.server.workers), its generation kept."""
    generation, built = read_snapshot(path)
    return replace(built, generation=generation)


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
        worker: tuple[int, str, str] | None = None,
        worker_argv: Sequence[str] = (),
        built: Built | None = None,
        http_at: Endpoint | Literal[False] | None = None,
        control: str | Literal[False] | None = None,
    ) -> None:
        """``control``: the control socket's path instead of the configured one, or False for
        none. ``worker`` (slot, stats file, snapshot file) makes this process one of the workers
        a primary started; ``worker_argv`` is how a primary starts its workers (``serve``
        arguments).
        ``built``: the configuration loaded with its index (srvd.server.loading); without it the
        index is built here from ``config``."""
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.started = time.time()
        self.worker_slot = worker[0] if worker is not None else None
        self.snapshotting: defer.Deferred[None] | None = None  # the workers' snapshot, written
        self.workers = workers or config.workers
        self.serials = SerialState(config.state_dir)
        if built is not None:
            index = built.index
        else:
            serials = self.serials.source(None, config.mtime)
            index = build_index(config, serials, deriver(config.http))
        _settle()
        # --metrics overrides the configured address; False turns /metrics off
        metrics = config.metrics if metrics_at is None else (metrics_at or None)
        counting = metrics is not None
        if worker is not None:  # a worker counts for the primary and serves no /metrics
            metrics = None
        self.responder = Responder(index, rng, counting=counting)
        self.responder.limit(config.rrl, self.workers)
        # signs ahead, while idle, what each zone's negative answers need (srvd.server.presign)
        self.presigner = Presigner(self.responder, reactor)
        self.notifier = Notifier(environ)
        loader = None
        source = config.source
        if worker is not None:  # a worker serves the primary's index, never the files on disk
            source = worker[2]
            loader = functools.partial(_load_snapshot, source)
        self.reloader = Reloader(
            source,
            lambda: self.responder.index,
            self.publish,
            reactor,
            self.notifier,
            built,
            loader=loader,
            generation=(built.generation if built is not None else 0) or 1,
        )
        self.tcp = TCPFactory(self.responder, cast(IReactorTime, reactor), config.tcp)
        self.listeners = [ListenService(e, self) for e in (listen or config.listen)]
        for listener in self.listeners:
            listener.setServiceParent(self)
        # srvd as a hidden primary (srvd.xfr.transfer): transfers, TSIG, the catalog, NOTIFY out
        self.primary: Transfers | None = None
        if config.transfer is not None or config.catalog is not None:
            self.primary = start_primary(self, notify=worker is None)
        # discovery documents over HTTP (srvd.server.web), in the primary process only
        self.http: HttpService | None = None
        http = config.http
        if http is not None and http_at is not None:  # srvd serve --http ADDR:PORT or off
            http = replace(http, listen=(http_at,)) if http_at else None
        self.http_at = http_at
        if http is not None and worker is None:
            self.http = HttpService(http, index, reactor)
            self.http.setServiceParent(self)
        self.metrics: MetricsService | None = None
        if metrics is not None:
            registry = registry_for(self.snapshot)
            if self.primary is not None:
                registry.register(TransferCollector(self.primary))
            if self.http is not None:
                registry.register(HttpCollector(self.http.counts))
            registry.register(DnssecCollector(lambda: self.responder.index))
            self.metrics = MetricsService(metrics, registry, reactor)
            self.metrics.setServiceParent(self)
        # the control socket (srvd status, reload, show, list, diff): the primary's alone
        self.control: ControlService | None = None
        control_path = config.control if control is None else (control or None)
        if worker is None and control_path is not None:
            required = control is not None or control_path != DEFAULT_CONTROL
            self.control = ControlService(self, control_path, required)
            self.control.setServiceParent(self)
        self.pool: WorkerPool | None = None
        if worker is not None:
            slot, path, _ = worker
            stats = StatsFile(path, self.workers, create=False)
            publisher = Publisher(stats, slot, self.worker_scalars, self.responder.fold, reactor)
            publisher.setServiceParent(self)
        elif self.workers > 1:
            self.pool = WorkerPool(
                self.workers - 1,
                worker_argv,
                StatsFile.create(self.workers),
                reactor,
                snapshot_place(),
            )
            # the workers start from the index served here (written before they are spawned),
            # and each successful reload here hands them the new one
            write_snapshot(
                self.pool.snapshot,
                self.reloader.generation,
                Built(config, self.responder.index, _NO_CHANGES, 0.0),
            )
            self.reloader.after_publish.append(self.hand_to_workers)
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
            self.reloader.generation,
        ]

    def hand_to_workers(self, built: Built) -> None:
        """A reload succeeded here (reactor thread): write the workers' snapshot aside, then
        tell them to load it. Snapshots are written one at a time, in order."""
        pool = self.pool
        assert pool is not None
        path = pool.snapshot
        previous = self.snapshotting or defer.succeed(None)

        def write(_: object) -> defer.Deferred[None]:
            return threads.deferToThreadPool(
                self.reactor,
                self.reactor.getThreadPool(),
                write_snapshot,
                path,
                built.generation,
                built,
            )

        def signal_workers(result: object) -> None:
            if isinstance(result, Failure):
                log.error(
                    "cannot write the workers' snapshot {path}: {error}; they keep serving "
                    "generation {old}",
                    path=path,
                    error=result.getErrorMessage(),
                    old=built.generation - 1,
                )
                return
            pool.signal_all(signal.SIGHUP)

        done = previous.addBoth(write)
        done.addBoth(signal_workers)
        self.snapshotting = done

    def workers_status(self) -> list[WorkerFigures]:
        """Every process of ``workers: N``, the primary first (slot 0)."""
        figures = [WorkerFigures(0, os.getpid(), self.reloader.generation)]
        if self.pool is not None:
            for slot in range(1, self.pool.count + 1):
                _, scalars = self.pool.stats.read(slot)
                process = self.pool.processes.get(slot)
                pid = process.pid if process is not None else 0
                # a worker still starting has not written its slot yet: generation 0
                generation = scalars["generation"] if scalars["pid"] == pid else 0
                figures.append(WorkerFigures(slot, pid or 0, generation))
        return figures

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
            generation=self.reloader.generation,
            workers=tuple(self.workers_status()),
            worker_restarts=self.pool.restarted if self.pool is not None else 0,
        )

    def startService(self) -> None:
        stats = self.responder.index.stats
        log.info(
            "srvd {version}: {figures}, {records} from {source}",
            version=__version__,
            figures=figures(stats.domains, stats.zones),
            records=plural(stats.records, "record"),
            source=self.config.source,
        )
        # NOTIFY after a start: zones whose serial moved since the state file, and the catalog
        notifying = self.primary is not None and self.primary.notify is not None
        known = self.serials.read() if notifying and self.config.transfer else {}
        if self.worker_slot is None:  # the primary keeps the state file
            try:
                self.serials.write(self.responder.index)
            except OSError as exc:
                log.warn("cannot write the serials state file: {error}", error=exc)
        super().startService()
        self.presigner.start(self.responder.index)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGHUP, self.sighup)
        transfer = self.config.transfer
        if notifying and self.primary is not None and transfer is not None and transfer.notify:
            count = self.primary.notify_start(known)
            log.info(
                "NOTIFY after start: {catalog}{count} zone{s} changed since the state file",
                catalog="the catalog and " if self.responder.index.catalog else "",
                count=count,
                s="" if count == 1 else "s",
            )
        self.notifier.ready(f"serving {figures(stats.domains, stats.zones)}")

    def stopService(self) -> defer.Deferred[Any]:
        self.notifier.stopping()
        self.presigner.stop()
        return cast(defer.Deferred[Any], super().stopService())

    def sighup(self, signum: int, frame: object) -> None:
        """Reload this process; its workers follow once it has succeeded (hand_to_workers)."""
        self.reloader.request_from_signal(signum, frame)

    def publish(self, config: Config, index: Index) -> None:
        """Serve a new configuration (reactor thread): one assignment swaps the index."""
        old = self.responder.index
        self.responder.index = index
        if self.running:
            self.presigner.start(index)
        _settle()
        # the old zones go in slices: freeing a million entries at once would stall answers (and
        # not while the workers' snapshot of them may still be written)
        if self.snapshotting is not None:  # (runs at once when the chain is done)
            self.snapshotting.addBoth(_release_later, old.zones, self.reactor)
        else:
            _empty_in_slices(old.zones, self.reactor)
        if config.listen != self.config.listen:
            log.warn("listen addresses changed in the configuration: they take effect on restart")
        self.tcp.settings = config.tcp
        if self.http is not None:  # the same generation as DNS; turning http on or off: restart
            # without http: the front goes on until a restart, but without PACC: DNS no longer
            # publishes its digests
            settings = config.http or replace(self.http.site.settings, pacc=False)
            if self.http_at:
                settings = replace(settings, listen=(self.http_at,))
            self.http.publish(settings, index)
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
    slot, stats_file = options.get("worker_slot"), options.get("stats_file")
    snapshot = options.get("snapshot")
    worker = (slot, stats_file, snapshot) if slot is not None and stats_file and snapshot else None
    # a worker takes the primary's index, whatever the files say by now; the primary reads and
    # builds in a build process, so its heap holds the index and little else
    built = _load_snapshot(worker[2]) if worker is not None else load_aside(path)
    config = built.config
    # --listen X --listen X: one socket pair (a second would fail with "Address already in use")
    listen = tuple(dict.fromkeys(options.get("listen") or ()))
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
        http_at=options.get("http"),
        control=options.get("control"),
    )
