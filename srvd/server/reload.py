"""Reload without dropping a query: build aside, swap once, keep the old index on failure.

SIGHUP (or ``srvd reload``) asks for a reload. The configuration and every include are read,
validated and built into a new Index by a build process (srvd.server.loading), assembled on a
worker thread while the reactor goes on answering from the current one; the new index is then
published with one assignment on the reactor thread. A reload that fails changes nothing: the
error is logged with file, line and key, and the old index keeps serving. A request that arrives
while a reload runs is coalesced into one more reload after it, so the configuration on disk last
is always the one that ends up loaded.

A reload that would remove more domains than ``reload.max_removed`` allows (a half-written include
looks just like a mass removal) is refused as a failure, unless it was asked for with ``force``.
Every successful load of the primary has a generation (1 for the start, then one more per
reload); workers take the primary's (srvd.server.workers).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure

from srvd.config import Config, ConfigError
from srvd.index.model import Index, ZoneDelta
from srvd.index.serials import SerialState
from srvd.ops.systemd import Notifier
from srvd.server.loading import DELTA_AT_MOST, LIST_AT_MOST, Built, Changes, load_aside
from srvd.wire.text import figures

log = Logger()


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
    last_time: float = 0.0  # Unix time the last reload ended (0: none yet)
    last_changes: str = ""  # what the last successful reload changed
    last_problems: list[str] = field(default_factory=list)  # why the last reload failed
    in_progress: bool = False
    coalesced: int = 0
    listeners: list[Callable[[], None]] = field(default_factory=list)


class Refused(Exception):
    """A reload that removes more domains than ``reload.max_removed`` allows."""


def guard(built: Built, served: int) -> str | None:
    """Why a reload that was not forced must not be applied, or None."""
    removed = built.changes.counts[1]
    settings = built.config.reload
    most = settings.most_removed(served)
    if most is None or removed <= most:
        return None
    return (
        f"refused: it would remove {removed} of the {served} domains served (reload.max_removed:"
        f" {settings.describe()}); if that is meant, `srvd reload --force`, else check the files"
        " (a half-written include?)"
    )


class Reloader:
    """Runs reloads one at a time for a server; see the module docstring."""

    def __init__(
        self,
        path: str,
        current: Callable[[], Index],
        publish: Callable[[Config, Index], None],
        reactor: Any,
        notifier: Notifier | None = None,
        built: Built | None = None,
        loader: Callable[[Index], Built] | None = None,
        generation: int = 1,
    ) -> None:
        """``built``: how the running index was loaded (srvd.server.loading), if it was; its
        tables are reused by the next load where their content is the same. ``loader``: how a
        worker loads instead (the primary's snapshot: its Built has ``generation`` set)."""
        self.path = path
        self.loader = loader
        self.generation = generation
        self.current = current
        self.publish = publish
        self.reactor = reactor
        self.tables = built.tables if built is not None else {}
        self.labels = built.labels if built is not None else None
        self.notifier = notifier or Notifier({})
        # called with a successful reload's result just before its index is published
        # (srvd.xfr.transfer: the catalog zone, NOTIFY)
        self.before_publish: list[Callable[[Built], None]] = []
        # called with a successful reload's result once its index is served (the primary's
        # workers: the snapshot, then SIGHUP)
        self.after_publish: list[Callable[[Built], None]] = []
        self.stats = ReloadStats(last_success_time=time.time())
        self.pending = False
        self.waiting: list[defer.Deferred[bool]] = []
        self.running_waiters: list[defer.Deferred[bool]] = []
        self.force = False  # the running reload may remove any number of domains
        self.pending_force = False

    def request(self, force: bool = False) -> defer.Deferred[bool]:
        """Ask for a reload (reactor thread). Fires with True once a reload that started after
        this request has succeeded, False if it failed. ``force``: past ``reload.max_removed``."""
        waiter: defer.Deferred[bool] = defer.Deferred()
        if self.stats.in_progress:
            self.pending = True
            self.pending_force |= force
            self.stats.coalesced += 1
            self.waiting.append(waiter)
        else:
            self.running_waiters = [waiter]
            self.force = force
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
            self.reactor, self.reactor.getThreadPool(), self._load, self.current()
        )
        d.addBoth(self._outcome, started)

    def _load(self, current: Index) -> Built:
        """Load in a build process and assemble the new index (worker thread)."""
        started = time.monotonic()
        if self.loader is not None:
            built = self.loader(current)
            changes = compare(current, built.index)
            return replace(built, changes=changes, seconds=time.monotonic() - started)
        labels = self.labels
        if labels is None:  # the running index was built here: its zones' apex labels
            labels = frozenset(apex[: apex[0] + 1] for apex in current.zones)
        served = current.serial if current.dnssec is not None else None  # (signed: moved)
        built = load_aside(self.path, current.zones, self.tables, labels, served)
        return replace(built, seconds=time.monotonic() - started)

    def _outcome(self, result: Built | Failure, started: float) -> None:
        if isinstance(result, Failure):
            self._finished(self._failed(result, started))
            return
        # a worker takes what its primary decided (forced or not): only a load of files is held
        # to reload.max_removed
        held = not self.force and self.loader is None
        refusal = guard(result, self.current().stats.domains) if held else None
        if refusal is not None:
            self._finished(self._failed(Failure(Refused(refusal)), started))
            return
        self._succeeded(result)
        if result.config.state_dir is None or self.loader is not None:  # (the primary's file)
            self._finished(True)
            return
        # the serials of the index now served, for a restart; the next reload waits for it
        d = threads.deferToThreadPool(
            self.reactor, self.reactor.getThreadPool(), _write_state, result
        )
        d.addBoth(lambda _: self._finished(True))

    def _succeeded(self, built: Built) -> bool:
        for listener in self.before_publish:
            listener(built)
        self.tables, self.labels = built.tables, built.labels
        self.generation = built.generation or self.generation + 1
        self.publish(built.config, built.index)
        for listener in self.after_publish:
            listener(replace(built, generation=self.generation))
        stats = built.index.stats
        self.stats.succeeded += 1
        self.stats.last_successful = True
        self.stats.last_success_time = self.stats.last_time = time.time()
        self.stats.last_duration = built.seconds
        self.stats.last_error = ""
        self.stats.last_problems = []
        self.stats.last_changes = built.changes.describe()
        log.info(
            "reloaded in {seconds:.2f} s: {changes}; now {figures}",
            seconds=built.seconds,
            changes=built.changes.describe(),
            figures=figures(stats.domains, stats.zones),
        )
        self.notifier.ready(f"serving {figures(stats.domains, stats.zones)}")
        return True

    def _failed(self, failure: Failure, started: float) -> bool:
        self.stats.failed += 1
        self.stats.last_successful = False
        self.stats.last_duration = time.monotonic() - started
        self.stats.last_time = time.time()
        self.stats.last_changes = ""
        if failure.check(ConfigError):
            error = failure.value
            assert isinstance(error, ConfigError)
            self.stats.last_error = str(error)
            self.stats.last_problems = [problem.render() for problem in error.problems]
            for problem in error.problems:
                log.error("reload failed: {problem}", problem=problem.render())
        elif failure.check(Refused):
            self.stats.last_error = failure.getErrorMessage()
            self.stats.last_problems = [f"{self.path}: reload {self.stats.last_error}"]
            log.error("reload {why}", why=self.stats.last_error)
        else:
            self.stats.last_error = failure.getErrorMessage()
            self.stats.last_problems = [self.stats.last_error]
            log.failure("reload failed", failure)
        log.warn("reload failed; still serving the previous configuration")
        index = self.current().stats
        self.notifier.ready(
            f"reload failed; serving {figures(index.domains, index.zones)} from before"
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
            self.force, self.pending_force = self.pending_force, False
            self.running_waiters, self.waiting = self.waiting, []
            self._start()


def _write_state(built: Built) -> None:
    """Record every zone's serial and digest in the state file (worker thread)."""
    try:
        SerialState(built.config.state_dir).write(built.index)
    except OSError as exc:
        log.warn("cannot write the serials state file: {error}", error=exc)
