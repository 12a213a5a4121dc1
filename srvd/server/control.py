"""The control channel: a UNIX socket on which the primary answers ``srvd status``, ``srvd
reload``, ``srvd show``, ``srvd list`` and ``srvd diff`` (srvd.ops.control is the client).

The protocol is line-delimited JSON. A client sends one request line, an object with a
``command`` and its arguments; the server answers with one or more lines, each an object: any
number of ``{"domains": [...]}`` chunks (``list``), then one final object with ``"ok"`` (true or
false) and the command's data, or ``"error"`` with a message. Then the server closes the
connection. Requests:

- ``{"command": "status"}``: version, pid, uptime, configuration, generation, figures, the last
  reload, workers, listening sockets;
- ``{"command": "reload", "force": false}``: reload the server's own configuration file and
  answer once that reload (or a later one it was coalesced into) has ended: its changes or
  problems;
- ``{"command": "zones", "domain": "example.com"}``: the zones served now for a domain, their
  serials and records (RFC 1035 master files);
- ``{"command": "domains"}``: every customer domain served now, in chunks;
- ``{"command": "diff", "path": "/etc/srvd/srvd.yaml"}``: what loading that file (default: the
  server's own) would add, remove and change, computed by a build process exactly as a reload
  would, without applying it.

The socket is created with mode 0600 (the owner alone: srvd's user; root may connect too), and
removed when srvd stops. A socket file left by a srvd that died is replaced; one that a running
process answers on is not (srvd refuses to start).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import time
from collections.abc import Iterator, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, protocol, threads
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

from srvd import __version__
from srvd.index.catalog import served_serial
from srvd.index.model import Index, Zone
from srvd.index.zonefile import zone_text
from srvd.server.loading import load_aside
from srvd.server.reload import guard
from srvd.wire.names import InvalidName, host_name, to_wire, wire_to_text

log = Logger()

CHUNK = 10_000  # domain names per line of a ``domains`` answer
REQUEST_AT_MOST = 65_536  # octets of one request line


def _domain(apex: bytes) -> bytes:
    return apex[apex[0] + 1 :]


def served_domains(index: Index, labels: list[bytes], apexes: list[bytes]) -> Iterator[str]:
    """The customer domains among ``apexes`` (zones of ``index``), each once: a domain is named
    at the zone with its smallest apex label (``labels`` sorted)."""
    zones = index.zones
    for apex in apexes:
        label, domain = apex[: apex[0] + 1], _domain(apex)
        if any(other < label and other + domain in zones for other in labels):
            continue
        yield wire_to_text(domain)


def differences(old: Mapping[bytes, Zone], new: Mapping[bytes, Zone]) -> dict[str, list[str]]:
    """Every domain new zones add, remove, or serve with other zones or serials."""
    before: dict[bytes, list[tuple[bytes, int]]] = {}
    for apex, zone in old.items():
        before.setdefault(_domain(apex), []).append((apex, zone.serial))
    after: dict[bytes, list[tuple[bytes, int]]] = {}
    for apex, zone in new.items():
        after.setdefault(_domain(apex), []).append((apex, zone.serial))
    added = sorted(wire_to_text(d) for d in after.keys() - before.keys())
    removed = sorted(wire_to_text(d) for d in before.keys() - after.keys())
    changed = sorted(
        wire_to_text(d)
        for d in after.keys() & before.keys()
        if sorted(after[d]) != sorted(before[d])
    )
    return {"added": added, "removed": removed, "changed": changed}


class ControlProtocol(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = REQUEST_AT_MOST

    def __init__(self, control: Control) -> None:
        self.control = control
        self.answered = False

    def lineReceived(self, line: bytes) -> None:
        if self.answered:  # one request per connection
            return
        self.answered = True
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("command"), str):
                raise ValueError("expected an object with a command")
        except ValueError as exc:
            self.finish({"ok": False, "error": f"bad request: {exc}"})
            return
        d = defer.maybeDeferred(self.control.handle, request, self)
        d.addCallback(self.finish)
        d.addErrback(self._crashed)

    def _crashed(self, failure: Any) -> None:
        log.failure("control request failed", failure)
        self.finish({"ok": False, "error": f"internal error: {failure.getErrorMessage()}"})

    def lineLengthExceeded(self, line: bytes) -> None:
        self.finish({"ok": False, "error": "request too long"})

    def send(self, message: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    def finish(self, message: dict[str, Any] | None) -> None:
        if message is None:  # the handler streams and finishes by itself
            return
        if self.transport is None:
            return
        self.send(message)
        self.transport.loseConnection()


class _Factory(protocol.Factory):
    noisy = False

    def __init__(self, control: Control) -> None:
        self.control = control

    def buildProtocol(self, addr: Any) -> ControlProtocol:
        return ControlProtocol(self.control)


class Control:
    """The commands, over a running SrvdService (srvd.service): its responder, reloader, pool,
    listeners and configuration."""

    def __init__(self, server: Any, path: str) -> None:
        self.server = server
        self.path = path

    def handle(self, request: dict[str, Any], client: ControlProtocol) -> Any:
        command = request["command"]
        if command == "status":
            return self.status()
        if command == "reload":
            return self.reload(bool(request.get("force")))
        if command == "zones":
            return self.zones(request.get("domain"))
        if command == "domains":
            self.domains(client)
            return None
        if command == "diff":
            return self.diff(request.get("path"))
        return {"ok": False, "error": f"unknown command {command!r}"}

    # -- the commands

    def status(self) -> dict[str, Any]:
        server = self.server
        stats = server.responder.index.stats
        reloads = server.reloader.stats
        catalog = server.responder.index.catalog
        return {
            "ok": True,
            "version": __version__,
            "pid": os.getpid(),
            "started": server.started,
            "uptime": time.time() - server.started,
            "config": server.config.source,
            "config_sha256": server.config.sha256,
            "generation": server.reloader.generation,
            "domains": stats.domains,
            "zones": stats.zones,
            "records": stats.records,
            "profiles": stats.profiles,
            "catalog": (
                None
                if catalog is None
                else {
                    "name": wire_to_text(catalog.apex),
                    "serial": served_serial(catalog, server.responder.index),
                }
            ),
            "reloads": {"succeeded": reloads.succeeded, "failed": reloads.failed},
            "reload_in_progress": reloads.in_progress,
            "last_reload": self._last_reload(),
            "workers": [
                {"slot": w.slot, "pid": w.pid, "generation": w.generation}
                for w in server.workers_status()
            ],
            "listening": [str(endpoint) for endpoint in server.addresses],
            "metrics": None if server.metrics is None else str(server.metrics.bound),
            "control": self.path,
        }

    def _last_reload(self) -> dict[str, Any] | None:
        reloads = self.server.reloader.stats
        if not reloads.last_time:
            return None
        return {
            "time": reloads.last_time,
            "ok": reloads.last_successful,
            "seconds": reloads.last_duration,
            "changes": reloads.last_changes,
            "problems": list(reloads.last_problems),
        }

    def reload(self, force: bool) -> defer.Deferred[dict[str, Any]]:
        reloader = self.server.reloader
        waiter = reloader.request(force)

        def outcome(ok: bool) -> dict[str, Any]:
            stats = self.server.responder.index.stats
            return {
                "ok": ok,
                "config": self.server.config.source,
                "generation": reloader.generation,
                "domains": stats.domains,
                "zones": stats.zones,
                "last_reload": self._last_reload(),
            }

        result: defer.Deferred[dict[str, Any]] = waiter.addCallback(outcome)
        return result

    def zones(self, domain: object) -> dict[str, Any]:
        if not isinstance(domain, str):
            return {"ok": False, "error": "give a domain"}
        try:
            name = host_name(domain)
        except InvalidName as exc:
            return {"ok": False, "error": str(exc)}
        index = self.server.responder.index
        suffix = to_wire(name)
        found = []
        for label in sorted(self._labels(index)):
            apex = label + suffix
            zone = index.zones.get(apex)
            if zone is not None:
                found.append(
                    {
                        "apex": wire_to_text(apex),
                        "serial": zone.serial,
                        "text": zone_text(index, apex, zone),
                    }
                )
        return {
            "ok": True,
            "domain": name,
            "zones": found,
            "generation": self.server.reloader.generation,
        }

    def _labels(self, index: Index) -> frozenset[bytes]:
        labels = self.server.reloader.labels
        if labels is None:  # the index was built in this process
            labels = frozenset(apex[: apex[0] + 1] for apex in index.zones)
        return frozenset(labels)

    def domains(self, client: ControlProtocol) -> None:
        """Every domain served, CHUNK names a line, a slice per reactor turn."""
        index = self.server.responder.index
        labels = sorted(self._labels(index))
        apexes = list(index.zones)  # the keys now (the dict is emptied once it is replaced)
        reactor = self.server.reactor

        def send(start: int) -> None:
            if client.transport is None:
                return
            if self.server.responder.index is not index:
                client.finish({"ok": False, "error": "a reload replaced the index meanwhile"})
                return
            part = list(served_domains(index, labels, apexes[start : start + CHUNK]))
            if part:
                client.send({"domains": part})
            if start + CHUNK < len(apexes):
                reactor.callLater(0, send, start + CHUNK)
            else:
                client.finish({"ok": True, "generation": self.server.reloader.generation})

        send(0)

    def diff(self, path: object) -> Any:
        if path is not None and not isinstance(path, str):
            return {"ok": False, "error": "path: expected a file name"}
        source = path or self.server.config.source
        server = self.server
        current = server.responder.index
        reloader = server.reloader
        tables, labels = reloader.tables, reloader.labels
        if labels is None:
            labels = frozenset(apex[: apex[0] + 1] for apex in current.zones)
        # a copy, taken here: a reload meanwhile empties the zones it replaces (in slices, on
        # this thread), which the build thread must not be reading then
        zones = dict(current.zones)

        def work() -> dict[str, Any]:
            from srvd.config import ConfigError

            try:
                built = load_aside(source, zones, tables, labels)
            except ConfigError as exc:
                return {
                    "ok": False,
                    "config": source,
                    "problems": [p.render() for p in exc.problems],
                }
            result = differences(zones, built.index.zones)
            refusal = guard(built, current.stats.domains)
            stats = built.index.stats
            return {
                "ok": True,
                "config": source,
                **result,
                "refused": refusal,
                "domains": stats.domains,
                "zones": stats.zones,
                "sha256": built.config.sha256,
                "served_sha256": server.config.sha256,
            }

        return threads.deferToThreadPool(server.reactor, server.reactor.getThreadPool(), work)


def _stale(path: str) -> bool:
    """Whether ``path`` is a socket nobody answers on (left by a srvd that died)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return True
    raise OSError(f"{path}: another process answers on this control socket (a srvd running?)")


class ControlService(Service):
    """The control socket of the primary process."""

    def __init__(self, server: Any, path: str, required: bool) -> None:
        """``required``: the path was configured (a failure to listen stops srvd), not the
        default (then srvd warns and runs without a control channel)."""
        self.control = Control(server, path)
        self.path = path
        self.required = required
        self.reactor = server.reactor
        self.port: IListeningPort | None = None
        self.tried = False

    def privilegedStartService(self) -> None:
        self.tried = True
        try:
            if _stale(self.path):
                os.unlink(self.path)
            directory = os.path.dirname(self.path)
            if directory and not os.path.isdir(directory):
                os.makedirs(directory, mode=0o750, exist_ok=True)
            previous = os.umask(0o177)  # the socket is made 0600 from the start
            try:
                self.port = self.reactor.listenUNIX(self.path, _Factory(self.control), mode=0o600)
            finally:
                os.umask(previous)
        except Exception as exc:  # CannotListenError, OSError
            message = f"cannot listen on the control socket {self.path}: {_reason(exc)}"
            if self.required:
                raise OSError(message) from None
            log.warn("{message}; running without a control channel (key control:)", message=message)
            self.port = None
        else:
            log.info("control socket {path}", path=self.path)
        super().privilegedStartService()

    def startService(self) -> None:
        if not self.tried:
            self.privilegedStartService()
        super().startService()

    def stopService(self) -> Any:
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return None
        d = defer.maybeDeferred(port.stopListening)

        def remove(result: object) -> object:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            return result

        return d.addBoth(remove)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    inner = getattr(exc, "socketError", None)
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror
    return str(exc)
