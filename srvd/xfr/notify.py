"""NOTIFY out (RFC 1996): tell the configured secondaries that zones changed.

After a reload, every zone whose serial changed (and the catalog, first, when its member set did:
ahead of whatever is still queued) is queued; messages go out from one UDP socket per address
family on an ephemeral port, at most ``transfer.notify_rate`` a second, counting every message to
every target and every retry: in any one-second window, never more (checked against the sends
of the last second), and spread over the second in batches every ``TICK``. Each NOTIFY is signed
when its target has a key, and sent again with doubling timeouts (1, 2, 4, 8, 16 s) until the
secondary answers; then it is given up. An answer counts when it comes from the target's address
and port with the ID and question of the NOTIFY (and, for a keyed target, a TSIG that verifies
over one of its sends). A zone queued again before it went out is sent once; one queued again
while in flight replaces the older NOTIFY. Results are counted (``srvd_notify_sent_total{result}``).

Added zones are not notified: secondaries learn about them from the catalog. After a start, the
catalog and the zones whose serial differs from the state file's are queued
(srvd.xfr.transfer.Transfers.notify_start).
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

from srvd.config.model import NotifyTarget, TransferSettings
from srvd.wire.names import wire_to_text
from srvd.wire.tsig import Key, sign_request, verify_response

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
    macs: list[bytes]  # the MAC of each send (an answer may come to any of them)
    attempt: int
    ident: int
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
        self.head: deque[NotifyTarget] = deque()  # targets still due for the zone being sent
        self.head_apex = b""
        self.retries: deque[_Pending] = deque()  # timed out, waiting for their turn
        self.pending: dict[tuple[int, str, int], _Pending] = {}
        self.by_zone: dict[tuple[bytes, str, int], _Pending] = {}
        self.window: deque[tuple[float, int]] = deque()  # (time, messages) of the last second
        self.credit = 0.0  # messages the pace allows now
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
        return len(self.queue) * len(self.targets) + len(self.head) + len(self.retries)

    def enqueue(self, apexes: Iterable[bytes], first: Iterable[bytes] = ()) -> None:
        """Queue zones once each; those in ``first`` (the catalog) go ahead of the queue."""
        if not self.targets:
            return
        for apex in apexes:
            if apex not in self.queued_set:
                self.queued_set.add(apex)
                self.queue.append(apex)
        for apex in reversed(list(first)):
            if apex in self.queued_set:
                self.queue.remove(apex)  # once a reload: O(queue) is fine
            self.queued_set.add(apex)
            self.queue.appendleft(apex)
        self._wake()

    def _wake(self) -> None:
        if self.ticking is None and (self.queue or self.head or self.retries):
            self.ticking = self.reactor.callLater(0, self._tick)

    def _tick(self) -> None:
        self.ticking = None
        now = self.reactor.seconds()
        rate = self.settings.notify_rate
        window = self.window
        while window and window[0][0] <= now - 1.0 + 1e-9:  # (1 ns: float noise)
            window.popleft()
        per_tick = rate * TICK
        self.credit = min(self.credit + per_tick, max(1.0, per_tick))
        budget = min(int(self.credit), rate - sum(n for _, n in window))
        sent = 0
        while sent < budget and self.retries:
            pending = self.retries.popleft()
            key = (pending.ident, pending.target.host, pending.target.port)
            if self.pending.get(key) is not pending:
                continue  # answered or replaced meanwhile
            self._resend(pending)
            sent += 1
        while sent < budget and len(self.pending) < IN_FLIGHT_AT_MOST:
            if not self.head:
                if not self.queue:
                    break
                self.head_apex = self.queue.popleft()
                self.queued_set.discard(self.head_apex)
                self.head.extend(self.targets)
                continue
            self._send_new(self.head_apex, self.head.popleft())
            sent += 1
        if sent:
            self.credit -= sent
            window.append((now, sent))
        if self.queue or self.head or self.retries:
            self.ticking = self.reactor.callLater(TICK, self._tick)

    def _port(self, v6: bool) -> Any:
        port = self.ports.get(v6)
        if port is None:
            port = self.reactor.listenUDP(0, _Socket(self), interface="::" if v6 else "0.0.0.0")
            self.ports[v6] = port
        return port

    def _send_new(self, apex: bytes, target: NotifyTarget) -> None:
        older = self.by_zone.get((apex, target.host, target.port))
        if older is not None:  # superseded: only the newest NOTIFY of a zone is retried
            self._forget(older)
        for _ in range(20):
            ident = self.rng.randrange(0x10000)
            if (ident, target.host, target.port) not in self.pending:
                break
        else:
            return  # pragma: no cover - 10 000 in flight on one target at most
        key = self.keys.get(target.key) if target.key is not None else None
        plain = notify_message(ident, apex)
        message, mac = plain, b""
        if key is not None:
            message, mac = sign_request(plain, key, int(self.clock()))
        pending = _Pending(apex, target, key, plain, message, [mac], 0, ident)
        self.pending[(ident, target.host, target.port)] = pending
        self.by_zone[(apex, target.host, target.port)] = pending
        self._write(pending)

    def _forget(self, pending: _Pending) -> None:
        target = pending.target
        self.pending.pop((pending.ident, target.host, target.port), None)
        if self.by_zone.get((pending.apex, target.host, target.port)) is pending:
            del self.by_zone[(pending.apex, target.host, target.port)]
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.timer = None

    def _write(self, pending: _Pending) -> None:
        target = pending.target
        try:
            self._port(":" in target.host).write(pending.message, (target.host, target.port))
        except OSError as exc:
            self.counts["send_error"] += 1
            log.warn("NOTIFY to {target} not sent: {error}", target=target, error=exc)
        timeout = FIRST_TIMEOUT * (2**pending.attempt)
        pending.timer = self.reactor.callLater(timeout, self._timed_out, pending)

    def _timed_out(self, pending: _Pending) -> None:
        pending.timer = None
        key = (pending.ident, pending.target.host, pending.target.port)
        if self.pending.get(key) is not pending:
            return
        if pending.attempt >= RETRIES:
            self._forget(pending)
            self.counts["timeout"] += 1
            log.warn(
                "NOTIFY of {zone} to {target}: no answer, given up",
                zone=wire_to_text(pending.apex),
                target=pending.target,
            )
            return
        self.retries.append(pending)  # sent again when the pace allows
        self._wake()

    def _resend(self, pending: _Pending) -> None:
        pending.attempt += 1
        self.counts["retry"] += 1
        if pending.key is not None:  # a fresh time signed
            pending.message, mac = sign_request(pending.plain, pending.key, int(self.clock()))
            pending.macs.append(mac)
        self._write(pending)

    def answered(self, datagram: bytes, addr: Any) -> None:
        if len(datagram) < 12 or not datagram[2] & 0x80:
            return
        ident = datagram[0] << 8 | datagram[1]
        host = str(addr[0]).split("%", 1)[0]
        key = (ident, host, int(addr[1]))
        pending = self.pending.get(key)
        if pending is None:
            return
        # the same opcode, one question, and it is the NOTIFY's (names compared case-blind)
        question = pending.plain[12:]
        if (datagram[2] >> 3) & 0x0F != NOTIFY_OPCODE or datagram[4:6] != b"\x00\x01":
            return
        if datagram[12 : 12 + len(question)].lower() != question.lower():
            return
        if pending.key is not None and not any(
            verify_response(datagram, pending.key, mac, int(self.clock())) for mac in pending.macs
        ):
            return  # not from the secondary, or not signed as it must be: keep waiting
        self._forget(pending)
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
        for pending in list(self.pending.values()):
            self._forget(pending)
        self.pending.clear()
        self.by_zone.clear()
        self.retries.clear()
        for port in self.ports.values():
            port.stopListening()
        self.ports.clear()
