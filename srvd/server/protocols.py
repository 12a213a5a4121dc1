"""Thin transports: bytes in, the responder's bytes out.

UDP: one datagram, one reply, rate-limited per client prefix (srvd.server.rrl). TCP (RFC 7766):
two-octet length framing; pipelined queries answered as they come, at most ``max_pipelined``
replies queued before srvd waits for the client to read them; an idle timeout; a deadline for a
message once begun; a cap on concurrent connections that reaps the least recently active one. A
message that cannot get a reply (shorter than a header, or a response) closes only its own
connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
    IUDPTransport,
)
from twisted.internet.protocol import DatagramProtocol, ServerFactory
from twisted.logger import Logger
from twisted.protocols.basic import Int16StringReceiver
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from srvd.config import TcpSettings
from srvd.server.responder import RateLimitedLog, Responder

log = Logger()


class UDPProtocol(DatagramProtocol):
    """One datagram, one reply, sent straight on the socket.

    Twisted's ``transport.write`` checks that the address is an IP address on every call; the
    address here is the one ``recvfrom`` just gave, so the reply goes to ``socket.sendto``.
    """

    noisy = False

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.send_errors = 0
        self.error_log = RateLimitedLog()
        self.sendto: Callable[[bytes, Any], object] = self._write

    def startProtocol(self) -> None:
        sock = getattr(self.transport, "socket", None)
        self.sendto = sock.sendto if sock is not None else self._write

    def _write(self, reply: bytes, addr: Any) -> None:
        cast(IUDPTransport, self.transport).write(reply, addr)

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        reply = self.responder.respond(datagram, False, addr[0])
        if reply is None:
            return
        try:
            self.sendto(reply, addr)
        except OSError as exc:  # a full send buffer or an unreachable peer: drop this reply
            self.send_errors += 1
            if self.error_log.allow():
                log.warn("UDP reply to {addr} not sent: {error}", addr=addr, error=exc)


@implementer(IPushProducer)
class TCPProtocol(Int16StringReceiver, TimeoutMixin):
    """One TCP connection: framed queries answered in order, within the factory's limits.

    It is its transport's streaming producer: when replies pile up unsent (the client does not
    read), the transport pauses it, and it stops both parsing frames and reading the socket.
    It also pauses itself after ``max_pipelined`` replies until the transport has written them.
    """

    factory: TCPFactory
    active = 0.0  # when the connection was made or last completed a query (reactor time)
    pipelined = 0  # replies queued since the transport last emptied its buffer
    completed = False  # a query completed in the current dataReceived
    message_timer: IDelayedCall | None = None

    @property
    def tcp(self) -> ITCPTransport:
        return cast(ITCPTransport, self.transport)

    def callLater(self, period: float, func: Any) -> IDelayedCall:  # TimeoutMixin's clock
        return self.factory.clock.callLater(period, func)

    def connectionMade(self) -> None:
        if not self.factory.admit(self):
            self.tcp.abortConnection()
            return
        cast(IConsumer, self.transport).registerProducer(cast(IPushProducer, self), True)
        self.setTimeout(self.factory.settings.idle_timeout)

    def dataReceived(self, data: bytes) -> None:
        self.completed = False
        super().dataReceived(data)
        if self._unprocessed and not self.paused:  # a message begun: it has a deadline
            if self.message_timer is None or self.completed:
                self._stop_message_timer()
                timeout = self.factory.settings.message_timeout
                self.message_timer = self.callLater(timeout, self.messageTimedOut)
        elif self.message_timer is not None:
            self._stop_message_timer()

    def stringReceived(self, string: bytes) -> None:
        if getattr(self.transport, "disconnecting", False):  # closing: no more answers
            return
        self.completed = True
        self.resetTimeout()
        self.factory.touch(self)
        reply = self.factory.responder.respond(string, True)
        if reply is None:
            self.tcp.loseConnection()
            return
        self.sendString(reply)
        self.pipelined += 1
        if self.pipelined >= self.factory.settings.max_pipelined and not self.paused:
            self.pauseProducing()
            # the transport resumes a producer it paused once its buffer is written out
            cast(Any, self.transport).producerPaused = True

    def resumeProducing(self) -> None:
        self.pipelined = 0
        super().resumeProducing()

    def busy(self) -> bool:
        """Whether the connection is in the middle of something that must not be cut off for a
        newcomer over the connection cap (a zone transfer: srvd.xfr.transfer)."""
        return False

    def timeoutConnection(self) -> None:
        self.tcp.abortConnection()

    def messageTimedOut(self) -> None:
        self.message_timer = None
        self.factory.incomplete += 1
        self.tcp.abortConnection()

    def _stop_message_timer(self) -> None:
        timer, self.message_timer = self.message_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.closed(self)
        self.setTimeout(None)
        self._stop_message_timer()


class TCPFactory(ServerFactory[TCPProtocol]):
    """The TCP connections of one server, and their limits (srvd.config.TcpSettings).

    Over ``max_connections``, a new connection takes the place of the least recently active
    one if that one has completed no query for ``REAP_IDLE`` seconds and is not busy (a zone
    transfer); if every connection is busier than that, the new one is closed at once.
    """

    protocol = TCPProtocol
    noisy = False
    REAP_IDLE = 1.0
    BUSY_SKIPS = 16  # busy connections passed over in search of one to reap

    def __init__(
        self,
        responder: Responder,
        clock: IReactorTime,
        settings: TcpSettings | None = None,
    ) -> None:
        self.responder = responder
        self.clock = clock
        self.settings = settings or TcpSettings()
        # open connections, least recently active first (a dict keeps insertion order)
        self.open: dict[TCPProtocol, None] = {}
        self.rejected = 0  # closed at once: the cap was reached and no connection was idle
        self.reaped = 0  # idle connections closed to make room for a new one
        self.incomplete = 0  # closed because a message did not complete in time

    @property
    def open_connections(self) -> int:
        return len(self.open)

    def admit(self, protocol: TCPProtocol) -> bool:
        """Whether a new connection may stay, after reaping the oldest idle one if need be."""
        now = self.clock.seconds()
        if len(self.open) >= self.settings.max_connections:
            for _ in range(self.BUSY_SKIPS):
                oldest = next(iter(self.open))
                if not oldest.busy():
                    break
                del self.open[oldest]  # busy: it goes to the back, as if it had just been active
                self.open[oldest] = None
            else:
                self.rejected += 1
                return False
            if now - oldest.active < self.REAP_IDLE:
                self.rejected += 1
                return False
            del self.open[oldest]
            self.reaped += 1
            oldest.tcp.abortConnection()
        protocol.active = now
        self.open[protocol] = None
        return True

    def touch(self, protocol: TCPProtocol) -> None:
        """A query completed on this connection: it becomes the most recently active."""
        protocol.active = self.clock.seconds()
        if self.open.pop(protocol, False) is None:
            self.open[protocol] = None

    def closed(self, protocol: TCPProtocol) -> None:
        self.open.pop(protocol, None)
