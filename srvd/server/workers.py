"""Several processes on the same addresses (``workers: N``), each with its own index.

The process the operator starts is the primary: it answers queries like every worker, and it also
spawns the other workers (``srvd serve`` again, with ``--worker-slot``), restarts one that dies,
forwards SIGHUP to all of them, stops them when it stops, and serves ``/metrics`` for all.
Every process binds its own UDP and TCP sockets with SO_REUSEPORT, so the kernel spreads queries
over them.

Workers never load the configuration files themselves: the primary writes the index it serves
(its configuration without the domains, the index, its generation: a number that grows by one with
every successful load) to a snapshot file in a private temporary directory after every successful
load, and a
worker loads that, when it starts and when the primary tells it to reload (SIGHUP, sent once the
snapshot is written). So a worker restarted after a crash serves what the primary serves, whatever
the files on disk say by then (broken, or changed since the last reload). A worker that dies is
started again after 1 s, then 2, 4, ... up to RESTART_AT_MOST while it keeps dying within
STEADY_AFTER of its start.

Workers count in plain lists, as a single process does, and copy their counts into their slot of a
shared stats file once a second; the primary adds the slots to its own counts at scrape time. A
restarted worker takes up the counts its slot holds, so the sums never go backwards.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import signal
import sys
import tempfile
from array import array
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, protocol, task
from twisted.internet.error import ProcessExitedAlready
from twisted.logger import Logger
from twisted.python.failure import Failure

from srvd.answer.outcome import DROP_REASONS, QUERY_CELLS, RRL_ACTIONS, SERVICE_CELLS
from srvd.index.dnssec import attach
from srvd.ops.metrics import DURATION_BOUNDS_NS, SIZE_BOUNDS, Counters
from srvd.server.loading import Built, Changes

log = Logger()

PUBLISH_EVERY = 1.0  # seconds between a worker's copies of its counts
RESTART_AFTER = 1.0  # seconds before a worker that died is started again (the first time)
RESTART_AT_MOST = 60.0  # the longest wait, doubling from RESTART_AFTER
STEADY_AFTER = 30.0  # a worker that ran this long before it died is restarted after RESTART_AFTER

# One slot: the counters, then the figures that are not counters.
_LISTS = (
    ("queries", QUERY_CELLS),
    ("services", SERVICE_CELLS),
    ("dropped", len(DROP_REASONS)),
    ("rrl", len(RRL_ACTIONS)),
    ("size_buckets", len(SIZE_BOUNDS)),
    ("duration_buckets", len(DURATION_BOUNDS_NS) + 1),
)
_SUMS = ("size_sum", "duration_sum_ns")  # the counters' sums, after their lists
SCALARS = (  # the figures besides the counters
    "internal_errors",
    "udp_send_errors",
    "tcp_connections",
    "tcp_rejected",
    "tcp_reaped",
    "tcp_incomplete",
    "reload_ok",  # 1 if the worker's last configuration load succeeded
    "pid",
    "generation",  # of the index the worker serves (the primary's numbering)
)
SLOT = sum(length for _, length in _LISTS) + len(_SUMS) + len(SCALARS)


class StatsFile:
    """The shared stats file: one slot of 64-bit integers per worker (slot 0 unused: the primary
    keeps its counts in memory)."""

    def __init__(self, path: str, slots: int, create: bool) -> None:
        self.path = path
        self.slots = slots
        size = slots * SLOT * 8
        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
        fd = os.open(path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, size)
            self.map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.view = memoryview(self.map).cast("q")

    @classmethod
    def create(cls, slots: int) -> StatsFile:
        directory = "/dev/shm" if os.path.isdir("/dev/shm") else None
        handle, path = tempfile.mkstemp(prefix="srvd-stats-", dir=directory)
        os.close(handle)
        return cls(path, slots, create=True)

    def write(self, slot: int, counters: Counters, scalars: Sequence[int]) -> None:
        at = slot * SLOT
        for name, length in _LISTS:
            self.view[at : at + length] = array("q", getattr(counters, name))
            at += length
        sums = [getattr(counters, name) for name in _SUMS]
        self.view[at : at + len(_SUMS) + len(SCALARS)] = array("q", [*sums, *scalars])

    def read(self, slot: int) -> tuple[Counters, dict[str, int]]:
        counters = Counters()
        at = slot * SLOT
        for name, length in _LISTS:
            setattr(counters, name, list(self.view[at : at + length]))
            at += length
        for name in _SUMS:
            setattr(counters, name, self.view[at])
            at += 1
        return counters, dict(zip(SCALARS, self.view[at : at + len(SCALARS)], strict=True))

    def close(self, remove: bool) -> None:
        self.view.release()
        self.map.close()
        if remove:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


NO_CHANGES = Changes((0, 0, 0), ([], [], []))


def snapshot_place() -> str:
    """Where the primary writes its workers' snapshot: a directory of its own (mode 0700) in the
    temporary directory (under systemd, PrivateTmp=), not /dev/shm: at a million domains the
    snapshot is some 60 MiB, over Docker's default /dev/shm of 64 MiB."""
    return os.path.join(tempfile.mkdtemp(prefix="srvd-"), "index")


def write_snapshot(path: str, generation: int, built: Built) -> None:
    """The index the primary serves, for its workers: written aside, then renamed into place
    (a worker never reads half a file). Worker thread or before the reactor runs. The workers
    serve no HTTP: the private key of ``http.cert`` stays out of the file."""
    config = built.config
    if config.http is not None and config.http.tls is not None:
        config = replace(config, http=replace(config.http, tls=None))
    light = Built(config, built.index, NO_CHANGES, 0.0)
    temporary = f"{path}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            pickle.dump((generation, light), handle, pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_snapshot(path: str) -> tuple[int, Built]:
    """A worker's side: the primary's generation and index (written by ``write_snapshot``; only
    the primary, the same program and user, writes the file: mode 0600, its own directory)."""
    with open(path, "rb") as handle:
        generation, built = pickle.load(handle)
    assert isinstance(generation, int) and isinstance(built, Built)
    attach(built.index, built.config.dnssec)  # the signer is not in the snapshot
    return generation, built


def restart_delay(failures: int) -> float:
    """Seconds before a worker is started again after ``failures`` quick deaths in a row."""
    return float(min(RESTART_AFTER * 2 ** max(failures - 1, 0), RESTART_AT_MOST))


class Publisher(Service):
    """A worker's side: copy the counts into its slot every second; stop if the primary is gone."""

    def __init__(
        self,
        stats: StatsFile,
        slot: int,
        scalars: Callable[[], Sequence[int]],
        counts: Callable[[], Counters],
        reactor: Any,
    ) -> None:
        self.stats = stats
        self.slot = slot
        self.scalars = scalars
        self.counts = counts  # the worker's counters, brought up to date
        self.reactor = reactor
        self.parent_pid = os.getppid()
        self.loop = task.LoopingCall(self.publish)
        self.loop.clock = reactor
        # take up the counts a previous worker in this slot left, so sums never go backwards
        before, _ = stats.read(slot)
        counts().add(before)

    def publish(self) -> None:
        if os.getppid() != self.parent_pid:
            log.warn("the primary srvd process is gone; this worker stops")
            self.reactor.stop()
            return
        self.stats.write(self.slot, self.counts(), self.scalars())

    def startService(self) -> None:
        super().startService()
        self.loop.start(PUBLISH_EVERY, now=True)

    def stopService(self) -> None:
        super().stopService()
        if self.loop.running:
            self.loop.stop()
        self.stats.write(self.slot, self.counts(), self.scalars())


class _Worker(protocol.ProcessProtocol):
    def __init__(self, pool: WorkerPool, slot: int) -> None:
        self.pool = pool
        self.slot = slot

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        sys.stderr.buffer.write(data)
        sys.stderr.buffer.flush()

    def processEnded(self, reason: Failure) -> None:
        self.pool.ended(self.slot, reason)


class WorkerPool(Service):
    """The primary's side: start, restart, signal and stop the other workers."""

    def __init__(
        self,
        count: int,
        argv: Sequence[str],
        stats: StatsFile,
        reactor: Any,
        snapshot: str = "",
    ) -> None:
        self.count = count  # workers besides the primary
        self.argv = list(argv)
        self.stats = stats
        self.snapshot = snapshot  # the primary's index for the workers (write_snapshot)
        self.reactor = reactor
        self.processes: dict[int, Any] = {}
        self.started: dict[int, float] = {}  # reactor time each worker was started
        self.failures: dict[int, int] = {}  # quick deaths in a row, per slot
        self.restarts: dict[int, Any] = {}  # pending restarts (IDelayedCall), per slot
        self.restarted = 0  # workers started again after they died
        self.stopping = False
        self.all_ended: defer.Deferred[None] | None = None
        # SIGHUP for workers still starting (no handler yet: it would kill them), sent when ready
        self.held: set[int] = set()
        self.holding = task.LoopingCall(self._send_held)
        self.holding.clock = reactor

    def spawn(self, slot: int) -> None:
        argv = [sys.executable, "-m", "srvd", *self.argv, "--worker-slot", str(slot)]
        argv += ["--stats-file", self.stats.path]
        if self.snapshot:
            argv += ["--snapshot", self.snapshot]
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        self.processes[slot] = self.reactor.spawnProcess(
            _Worker(self, slot), sys.executable, argv, env=env, childFDs={0: "w", 1: 1, 2: "r"}
        )
        self.started[slot] = self.reactor.seconds()
        log.info("worker {slot} started (pid {pid})", slot=slot, pid=self.processes[slot].pid)

    def ended(self, slot: int, reason: Failure) -> None:
        self.processes.pop(slot, None)
        if self.stopping:
            if not self.processes and self.all_ended is not None:
                self.all_ended.callback(None)
            return
        lived = self.reactor.seconds() - self.started.get(slot, 0.0)
        failures = 1 if lived >= STEADY_AFTER else self.failures.get(slot, 0) + 1
        self.failures[slot] = failures
        delay = restart_delay(failures)
        log.warn(
            "worker {slot} ended ({reason}) after {lived:.1f} s; restarting it in {delay:g} s",
            slot=slot,
            reason=reason.value,
            lived=lived,
            delay=delay,
        )
        self.restarts[slot] = self.reactor.callLater(delay, self._respawn, slot)

    def _respawn(self, slot: int) -> None:
        self.restarts.pop(slot, None)
        if not self.stopping and slot not in self.processes:
            self.restarted += 1
            self.spawn(slot)

    def ready(self, slot: int) -> bool:
        """A worker is ready once it has published its pid in its slot (after it started)."""
        process = self.processes.get(slot)
        return process is not None and self.stats.read(slot)[1]["pid"] == process.pid

    def signal_all(self, signum: int) -> None:
        for slot, process in list(self.processes.items()):
            if signum == signal.SIGHUP and not self.ready(slot):
                self.held.add(slot)
                continue
            with contextlib.suppress(ProcessExitedAlready, OSError):  # already gone
                process.signalProcess(signum)

    def _send_held(self) -> None:
        for slot in list(self.held):
            if slot not in self.processes:
                self.held.discard(slot)
            elif self.ready(slot):
                self.held.discard(slot)
                with contextlib.suppress(ProcessExitedAlready, OSError):
                    self.processes[slot].signalProcess(signal.SIGHUP)

    def close(self) -> None:
        self.stats.close(remove=True)
        if self.snapshot:
            with contextlib.suppress(OSError):
                os.unlink(self.snapshot)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(self.snapshot))

    def worker_stats(self) -> list[tuple[Counters, dict[str, int]]]:
        return [self.stats.read(slot) for slot in range(1, self.count + 1)]

    def startService(self) -> None:
        super().startService()
        for slot in range(1, self.count + 1):
            self.spawn(slot)
        self.holding.start(0.2, now=False)

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        self.stopping = True
        for call in self.restarts.values():
            if call.active():
                call.cancel()
        self.restarts = {}
        if self.holding.running:
            self.holding.stop()
        if not self.processes:
            self.close()
            return None
        self.all_ended = defer.Deferred()
        self.signal_all(signal.SIGTERM)
        kill = self.reactor.callLater(10, self.signal_all, signal.SIGKILL)

        def done(_: object) -> None:
            if kill.active():
                kill.cancel()
            self.close()

        self.all_ended.addCallback(done)
        return self.all_ended
