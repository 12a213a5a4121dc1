"""Reload without dropping a query: build aside, swap once, keep the old index on failure.

SIGHUP (or ``srvd reload``) asks for a reload. The configuration and every include are read,
validated and built into a new Index on a worker thread while the reactor goes on answering from the
current one; the new index is then published with one assignment on the reactor thread. A reload
that fails changes nothing: the error is logged with file, line and key, and the old index keeps
serving. A request that arrives while a reload runs is coalesced into one more reload after it, so
the configuration on disk last is always the one that ends up loaded.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure

from srvd.config import Config, ConfigError, load_config
from srvd.index.build import build_index
from srvd.index.model import Index, Zone, ZoneDelta
from srvd.index.serials import SerialState
from srvd.ops.systemd import Notifier
from srvd.wire.names import wire_to_text

log = Logger()

LIST_AT_MOST = 10  # name the zones in the log when no more than this many changed


DELTA_AT_MOST = 200_000  # zones: a larger change is not listed zone by zone (ZoneDelta)


@dataclass(frozen=True, slots=True)
class Changes:
    """How many domains a reload added, removed and changed, with their names when few."""

    counts: tuple[int, int, int]  # added, removed, changed
    names: tuple[list[bytes], list[bytes], list[bytes]]  # wire names, at most LIST_AT_MOST each
    # zone by zone (NOTIFY, catalog), or None when more than DELTA_AT_MOST zones changed
    zones: ZoneDelta | None = None

    def describe(self) -> str:
        parts = []
        labels = ("added", "removed", "changed")
        for what, count, names in zip(labels, self.counts, self.names, strict=True):
            if not count:
                continue
            text = f"{count} domain{'s' if count != 1 else ''} {what}"
            if count <= LIST_AT_MOST:
                text += " (" + ", ".join(wire_to_text(name) for name in sorted(names)) + ")"
            parts.append(text)
        return "; ".join(parts) if parts else "no domain changed"


def _domain(apex: bytes) -> bytes:
    return apex[apex[0] + 1 :]


def compare(old: Index, new: Index) -> Changes:
    """Which customer domains a new index adds, removes, or serves with other content."""
    old_zones, new_zones = old.zones, new.zones
    before = {_domain(apex) for apex in old_zones}
    after = {_domain(apex) for apex in new_zones}
    added = after - before
    removed = before - after
    zones_added = new_zones.keys() - old_zones.keys()
    zones_removed = old_zones.keys() - new_zones.keys()
    zones_changed = [
        apex
        for apex, zone in new_zones.items()
        if (was := old_zones.get(apex)) is not None and was.serial != zone.serial
    ]
    touched = {_domain(apex) for apex in zones_added}
    touched.update(_domain(apex) for apex in zones_removed)
    touched.update(_domain(apex) for apex in zones_changed)
    changed = touched - added - removed
    delta = None
    if len(zones_added) + len(zones_removed) + len(zones_changed) <= DELTA_AT_MOST:
        delta = ZoneDelta(
            tuple(sorted(zones_added)), tuple(sorted(zones_removed)), tuple(zones_changed)
        )
    few = [
        sorted(group)[:LIST_AT_MOST] if len(group) <= LIST_AT_MOST else []
        for group in (added, removed, changed)
    ]
    return Changes((len(added), len(removed), len(changed)), (few[0], few[1], few[2]), delta)


@dataclass(slots=True)
class ReloadStats:
    """What monitoring needs to know about reloads."""

    succeeded: int = 0
    failed: int = 0
    last_successful: bool = True
    last_success_time: float = 0.0  # Unix time
    last_duration: float = 0.0  # seconds, of the last reload, successful or not
    last_error: str = ""
    in_progress: bool = False
    coalesced: int = 0
    listeners: list[Callable[[], None]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Built:
    config: Config
    index: Index
    changes: Changes
    seconds: float


def build(path: str, previous: Index, serials: SerialState) -> Built:
    """Read and build a configuration (worker thread). Raises ConfigError."""
    started = time.monotonic()
    collect = gc.isenabled()
    gc.disable()  # a large build allocates millions of objects that all live on
    try:
        config = load_config(path)
        index = build_index(config, serials.source(previous, config.mtime))
    finally:
        if collect:
            gc.enable()
    changes = compare(previous, index)
    state = SerialState(config.state_dir, serials.clock)
    try:
        state.write(index)
    except OSError as exc:
        log.warn("cannot write the serials state file: {error}", error=exc)
    return Built(config, index, changes, time.monotonic() - started)


CHUNK = 10_000  # zone names per frame from the build process


def build_aside(path: str, previous: Index, serials: SerialState) -> Built:
    """``build`` in a forked process; the result comes back in small frames (worker thread).

    Parsing a large file is one long C call (json, libyaml) that holds the GIL: in a thread it
    stalls every answer for as long. The child has a GIL of its own and inherits the running
    index (for the serials); the parent only unpickles frames of CHUNK names and adds them to the
    new zones dict, so it never holds the GIL for more than a few milliseconds at a time.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: build, send, leave without running any of the parent's cleanup
        code = 0
        try:
            os.close(read_end)
            for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_DFL)
            with os.fdopen(write_end, "wb") as pipe:
                _send(pipe, path, previous, serials)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    collect = gc.isenabled()
    gc.disable()  # the new index's objects all live on: no collection while they arrive
    try:
        with os.fdopen(read_end, "rb") as pipe:
            return _receive(pipe)
    finally:
        if collect:
            gc.enable()
        os.waitpid(pid, 0)


def _send(pipe: BinaryIO, path: str, previous: Index, serials: SerialState) -> None:
    try:
        built = build(path, previous, serials)
    except ConfigError as exc:
        pickle.dump(("error", exc.problems, exc.complete), pipe, pickle.HIGHEST_PROTOCOL)
        return
    except Exception:
        pickle.dump(("crash", traceback.format_exc(), None), pipe, pickle.HIGHEST_PROTOCOL)
        return
    index = built.index
    groups: dict[int, tuple[Zone, list[bytes]]] = {}
    for apex, zone in index.zones.items():
        group = groups.get(id(zone))
        if group is None:
            group = groups[id(zone)] = (zone, [])
        group[1].append(apex)
    tables = list({id(zone.table): zone.table for zone, _ in groups.values()}.values())
    table_number = {id(table): i for i, table in enumerate(tables)}
    # the running server needs none of the configuration's domains and profiles: the index has them
    light = replace(built.config, domains={}, profiles={})
    head = (light, index.settings, index.stats, tables, built.changes, built.seconds)
    pickle.dump(("ok", head, None), pipe, pickle.HIGHEST_PROTOCOL)
    for zone, apexes in groups.values():
        for start in range(0, len(apexes), CHUNK):
            frame = (table_number[id(zone.table)], zone.serial, apexes[start : start + CHUNK])
            pickle.dump(frame, pipe, pickle.HIGHEST_PROTOCOL)
    pickle.dump(None, pipe, pickle.HIGHEST_PROTOCOL)


def _receive(pipe: BinaryIO) -> Built:
    try:
        kind, head, complete = pickle.load(pipe)
    except EOFError:
        raise RuntimeError("the build process ended without a result") from None
    if kind == "error":
        raise ConfigError(head, complete)
    if kind == "crash":
        raise RuntimeError(f"building the index failed:\n{head}")
    config, settings, stats, tables, changes, seconds = head
    zones: dict[bytes, Zone] = {}
    shared: dict[tuple[int, int], Zone] = {}
    while (frame := pickle.load(pipe)) is not None:
        number, serial, apexes = frame
        zone = shared.get((number, serial))
        if zone is None:
            zone = shared[(number, serial)] = Zone(tables[number], serial)
        zones.update(dict.fromkeys(apexes, zone))
    return Built(config, Index(settings, zones, stats), changes, seconds)


class Reloader:
    """Runs reloads one at a time for a server; see the module docstring."""

    def __init__(
        self,
        path: str,
        current: Callable[[], Index],
        publish: Callable[[Config, Index], None],
        serials: SerialState,
        reactor: Any,
        notifier: Notifier | None = None,
    ) -> None:
        self.path = path
        self.current = current
        self.publish = publish
        self.serials = serials
        self.reactor = reactor
        self.notifier = notifier or Notifier({})
        # called with a successful reload's result just before its index is published
        # (srvd.xfr.transfer: the catalog zone, NOTIFY)
        self.before_publish: list[Callable[[Built], None]] = []
        self.stats = ReloadStats(last_success_time=time.time())
        self.pending = False
        self.waiting: list[defer.Deferred[bool]] = []
        self.running_waiters: list[defer.Deferred[bool]] = []

    def request(self) -> defer.Deferred[bool]:
        """Ask for a reload (reactor thread). Fires with True once a reload that started after
        this request has succeeded, False if it failed."""
        waiter: defer.Deferred[bool] = defer.Deferred()
        if self.stats.in_progress:
            self.pending = True
            self.stats.coalesced += 1
            self.waiting.append(waiter)
        else:
            self.running_waiters = [waiter]
            self._start()
        return waiter

    def request_from_signal(self, signum: int, frame: object) -> None:
        """The SIGHUP handler: hands the request to the reactor thread."""
        self.reactor.callFromThread(self.request)

    def _start(self) -> None:
        self.stats.in_progress = True
        self.notifier.reloading()
        log.info("reloading {path}", path=self.path)
        started = time.monotonic()
        d = threads.deferToThreadPool(
            self.reactor,
            self.reactor.getThreadPool(),
            build_aside if hasattr(os, "fork") else build,
            self.path,
            self.current(),
            self.serials,
        )
        d.addBoth(self._outcome, started)

    def _outcome(self, result: Built | Failure, started: float) -> None:
        ok = (
            self._failed(result, started)
            if isinstance(result, Failure)
            else self._succeeded(result)
        )
        self._finished(ok)

    def _succeeded(self, built: Built) -> bool:
        for listener in self.before_publish:
            listener(built)
        self.publish(built.config, built.index)
        stats = built.index.stats
        self.stats.succeeded += 1
        self.stats.last_successful = True
        self.stats.last_success_time = time.time()
        self.stats.last_duration = built.seconds
        self.stats.last_error = ""
        log.info(
            "reloaded in {seconds:.2f} s: {changes}; now {domains} domains, {zones} zones",
            seconds=built.seconds,
            changes=built.changes.describe(),
            domains=stats.domains,
            zones=stats.zones,
        )
        self.notifier.ready(f"serving {stats.domains} domains, {stats.zones} zones")
        return True

    def _failed(self, failure: Failure, started: float) -> bool:
        self.stats.failed += 1
        self.stats.last_successful = False
        self.stats.last_duration = time.monotonic() - started
        if failure.check(ConfigError):
            error = failure.value
            assert isinstance(error, ConfigError)
            self.stats.last_error = str(error)
            for problem in error.problems:
                log.error("reload failed: {problem}", problem=problem.render())
        else:
            self.stats.last_error = failure.getErrorMessage()
            log.failure("reload failed", failure)
        log.warn("reload failed; still serving the previous configuration")
        index = self.current().stats
        self.notifier.ready(
            f"reload failed; serving {index.domains} domains, {index.zones} zones from before"
        )
        return False

    def _finished(self, ok: bool) -> None:
        self.stats.in_progress = False
        waiters, self.running_waiters = self.running_waiters, []
        for waiter in waiters:
            waiter.callback(ok)
        for listener in self.stats.listeners:
            listener()
        if self.pending:
            self.pending = False
            self.running_waiters, self.waiting = self.waiting, []
            self._start()
