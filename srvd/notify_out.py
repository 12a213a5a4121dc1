"""NOTIFY out (RFC 1996): tell the configured secondaries that zones changed.

After a reload, every zone whose serial changed (and the catalog, first, when its member set did)
is queued; the queue is sent at ``transfer.notify_rate`` messages a second at most, from one UDP
socket per address family on an ephemeral port. Each NOTIFY is signed when its target has a key,
and sent again with doubling timeouts (1, 2, 4, 8, 16 s) until the secondary answers; then it is
given up. A zone queued again before it went out is sent once. Results are counted
(``srvd_notify_sent_total{result}``).

Added zones are not notified: secondaries learn about them from the catalog.
"""

from __future__ import annotations

import random
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from srvd.names import wire_to_text
from srvd.tsig import Key, sign_request, verify_response
from srvd.xfrconfig import NotifyTarget, TransferSettings

log = Logger()

NOTIFY_OPCODE = 4
SOA = 6
CLASS_IN = 1
AA = 0x0400
TICK = 0.05  # seconds between batches
FIRST_TIMEOUT = 1.0
RETRIES = 4  # sends after the first: 1 + 2 + 4 + 8 + 16 s in all
IN_FLIGHT_AT_MOST = 10_000


@dataclass(slots=True)
class _Pending:
    apex: bytes
    target: NotifyTarget
    key: Key | None
    plain: bytes  # unsigned
    message: bytes  # as sent
    mac: bytes
    attempt: int
    timer: IDelayedCall | None = None


def notify_message(ident: int, apex: bytes) -> bytes:
    flags = (NOTIFY_OPCODE << 11) | AA
    return struct.pack("!HHHHHH", ident, flags, 1, 0, 0, 0) + apex + struct.pack("!HH", SOA, 1)


class _Socket(DatagramProtocol):
    noisy = False

    def __init__(self, sender: NotifySender) -> None:
        self.sender = sender

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.sender.answered(datagram, addr)


class NotifySender:
    def __init__(
        self,
        reactor: Any,
        settings: TransferSettings,
        counts: dict[str, int],
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.reactor = reactor
        self.counts = counts
        self.clock = clock
        self.rng = rng or random.Random()
        self.queue: deque[bytes] = deque()
        self.queued_set: set[bytes] = set()
        self.pending: dict[tuple[int, str, int], _Pending] = {}
        self.ports: dict[bool, Any] = {}
        self.ticking: IDelayedCall | None = None
        self.settings = settings
        self.targets: tuple[NotifyTarget, ...] = ()
        self.keys: dict[bytes, Key] = {}
        self.configure(settings)
        for result in ("ok", "error", "timeout", "retry", "send_error"):
            counts.setdefault(result, 0)

    def configure(self, settings: TransferSettings) -> None:
        self.settings = settings
        self.targets = settings.notify
        self.keys = settings.key_map

    @property
    def queued(self) -> int:
        return len(self.queue) * len(self.targets)

    def enqueue(self, apexes: Iterable[bytes]) -> None:
        if not self.targets:
            return
        for apex in apexes:
            if apex not in self.queued_set:
                self.queued_set.add(apex)
                self.queue.append(apex)
        if self.queue and self.ticking is None:
            self.ticking = self.reactor.callLater(0, self._tick)

    def _tick(self) -> None:
        self.ticking = None
        budget = max(1, int(self.settings.notify_rate * TICK))
        targets = self.targets
        while self.queue and budget > 0 and len(self.pending) < IN_FLIGHT_AT_MOST:
            apex = self.queue.popleft()
            self.queued_set.discard(apex)
            for target in targets:
                self._send_new(apex, target)
            budget -= max(1, len(targets))
        if self.queue:
            self.ticking = self.reactor.callLater(TICK, self._tick)

    def _port(self, v6: bool) -> Any:
        port = self.ports.get(v6)
        if port is None:
            port = self.reactor.listenUDP(0, _Socket(self), interface="::" if v6 else "0.0.0.0")
            self.ports[v6] = port
        return port

    def _send_new(self, apex: bytes, target: NotifyTarget) -> None:
        for _ in range(20):
            ident = self.rng.randrange(0x10000)
            if (ident, target.host, target.port) not in self.pending:
                break
        else:
            return  # pragma: no cover - 10 000 in flight on one target at most
        key = self.keys.get(target.key) if target.key is not None else None
        message = notify_message(ident, apex)
        mac = b""
        if key is not None:
            message, mac = sign_request(message, key, int(self.clock()))
        pending = _Pending(apex, target, key, notify_message(ident, apex), message, mac, 0)
        self.pending[(ident, target.host, target.port)] = pending
        self._write(pending, ident)

    def _write(self, pending: _Pending, ident: int) -> None:
        target = pending.target
        try:
            self._port(":" in target.host).write(pending.message, (target.host, target.port))
        except OSError as exc:
            self.counts["send_error"] += 1
            log.warn("NOTIFY to {target} not sent: {error}", target=target, error=exc)
        timeout = FIRST_TIMEOUT * (2**pending.attempt)
        pending.timer = self.reactor.callLater(timeout, self._timed_out, ident, pending)

    def _timed_out(self, ident: int, pending: _Pending) -> None:
        key = (ident, pending.target.host, pending.target.port)
        if self.pending.get(key) is not pending:
            return
        if pending.attempt >= RETRIES:
            del self.pending[key]
            self.counts["timeout"] += 1
            log.warn(
                "NOTIFY of {zone} to {target}: no answer, given up",
                zone=wire_to_text(pending.apex),
                target=pending.target,
            )
            return
        pending.attempt += 1
        self.counts["retry"] += 1
        if pending.key is not None:  # a fresh time signed
            pending.message, pending.mac = sign_request(
                pending.plain, pending.key, int(self.clock())
            )
        self._write(pending, ident)

    def answered(self, datagram: bytes, addr: Any) -> None:
        if len(datagram) < 12 or not datagram[2] & 0x80:
            return
        ident = datagram[0] << 8 | datagram[1]
        host = str(addr[0]).split("%", 1)[0]
        key = (ident, host, int(addr[1]))
        pending = self.pending.get(key)
        if pending is None:
            return
        if pending.key is not None and not verify_response(
            datagram, pending.key, pending.mac, int(self.clock())
        ):
            return  # not from the secondary, or not signed as it must be: keep waiting
        del self.pending[key]
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        rcode = datagram[3] & 0x0F
        if rcode == 0:
            self.counts["ok"] += 1
        else:
            self.counts["error"] += 1
            log.warn(
                "NOTIFY of {zone} to {target}: answered with rcode {rcode}",
                zone=wire_to_text(pending.apex),
                target=pending.target,
                rcode=rcode,
            )

    def stop(self) -> None:
        if self.ticking is not None and self.ticking.active():
            self.ticking.cancel()
        self.ticking = None
        for pending in self.pending.values():
            if pending.timer is not None and pending.timer.active():
                pending.timer.cancel()
        self.pending.clear()
        for port in self.ports.values():
            port.stopListening()
        self.ports.clear()
