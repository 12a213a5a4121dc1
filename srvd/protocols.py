"""Thin transports: bytes in, the responder's bytes out.

UDP: one datagram, one reply. TCP (RFC 7766): two-octet length framing, pipelined queries answered
as they come, an idle timeout that also bounds a message that never completes, and a cap on
concurrent connections. A message that cannot get a reply (shorter than a header, or a response)
closes only its own connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITCPTransport, IUDPTransport
from twisted.internet.protocol import DatagramProtocol, ServerFactory
from twisted.logger import Logger
from twisted.protocols.basic import Int16StringReceiver
from twisted.protocols.policies import TimeoutMixin

from srvd.responder import RateLimitedLog, Responder

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
        reply = self.responder.respond(datagram, False)
        if reply is None:
            return
        try:
            self.sendto(reply, addr)
        except OSError as exc:  # a full send buffer or an unreachable peer: drop this reply
            self.send_errors += 1
            if self.error_log.allow():
                log.warn("UDP reply to {addr} not sent: {error}", addr=addr, error=exc)


class TCPProtocol(Int16StringReceiver, TimeoutMixin):
    factory: TCPFactory

    @property
    def tcp(self) -> ITCPTransport:
        return cast(ITCPTransport, self.transport)

    def callLater(self, period: float, func: Any) -> IDelayedCall:  # TimeoutMixin's clock
        return self.factory.clock.callLater(period, func)

    def connectionMade(self) -> None:
        factory = self.factory
        factory.connections += 1
        if factory.connections > factory.max_connections:
            factory.rejected += 1
            self.tcp.abortConnection()
            return
        self.setTimeout(factory.idle_timeout)

    def stringReceived(self, string: bytes) -> None:
        if getattr(self.transport, "disconnecting", False):  # closing: no more answers
            return
        self.resetTimeout()
        reply = self.factory.responder.respond(string, True)
        if reply is None:
            self.tcp.loseConnection()
            return
        self.sendString(reply)

    def timeoutConnection(self) -> None:
        self.tcp.abortConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.connections -= 1
        self.setTimeout(None)


class TCPFactory(ServerFactory[TCPProtocol]):
    protocol = TCPProtocol
    noisy = False

    def __init__(
        self,
        responder: Responder,
        clock: IReactorTime,
        idle_timeout: float = 10.0,
        max_connections: int = 1000,
    ) -> None:
        self.responder = responder
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.connections = 0  # including ones over the cap, until they are closed
        self.rejected = 0

    @property
    def open_connections(self) -> int:
        return min(self.connections, self.max_connections)
