"""The transports and the responder's guard, without a reactor or sockets.

UDP gets a fake datagram transport, TCP a ``StringTransport`` and a ``task.Clock``; the index is
the bundled example, built once.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, cast

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReactorTime, IUDPTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, capturedLogs
from twisted.python.failure import Failure

import srvd.server.responder
from srvd.config import TcpSettings, load_config
from srvd.index.build import build_index
from srvd.index.model import Index
from srvd.server.protocols import TCPFactory, TCPProtocol, UDPProtocol
from srvd.server.responder import RateLimitedLog, Responder
from srvd.service import bundled_config

# Twisted's test transport, Failure and IntNStringReceiver methods carry no annotations: call them
# through Any so that mypy --strict accepts the calls.
_StringTransport: Any = StringTransport
_Failure: Any = Failure

IMAPS = "_imaps._tcp.example.com"
CLIENT = ("192.0.2.7", 40000)
IDLE = 5.0


@pytest.fixture(scope="module")
def index() -> Index:
    return build_index(load_config(bundled_config()))


@pytest.fixture
def responder(index: Index) -> Responder:
    return Responder(index)


def query(name: str = IMAPS, rdtype: str = "SRV", ident: int = 1, rd: bool = True) -> bytes:
    message = dns.message.make_query(name, rdtype)
    message.id = ident
    if not rd:
        message.flags &= ~dns.flags.RD
    return message.to_wire()


def as_response(wire: bytes) -> bytes:
    """The same message with QR=1: something a client must never get an answer to."""
    return wire[:2] + bytes([wire[2] | 0x80]) + wire[3:]


def frame(*messages: bytes) -> bytes:
    return b"".join(struct.pack("!H", len(m)) + m for m in messages)


def unframe(data: bytes) -> list[bytes]:
    messages = []
    while data:
        assert len(data) >= 2, "a dangling length prefix"
        (length,) = struct.unpack("!H", data[:2])
        assert len(data) >= 2 + length, "a truncated TCP message"
        messages.append(data[2 : 2 + length])
        data = data[2 + length :]
    return messages


def parse(wire: bytes) -> dns.message.Message:
    return dns.message.from_wire(wire)


def assert_imaps_answer(wire: bytes, ident: int = 1) -> None:
    reply = parse(wire)
    assert reply.id == ident
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.QR
    assert reply.flags & dns.flags.AA
    assert [rrset.rdtype for rrset in reply.answer] == [dns.rdatatype.SRV]
    targets = sorted(str(rr.target) for rr in reply.answer[0])
    assert targets == ["imap1.example.net.", "imap2.example.net."]


# ---------------------------------------------------------------------------------------------
# UDP


class FakeDatagramTransport:
    """Records ``write(packet, addr)``; raises ``error`` instead when one is set."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []
        self.error: OSError | None = None

    def write(self, packet: bytes, addr: Any = None) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append((packet, addr))


@pytest.fixture
def udp(responder: Responder) -> tuple[UDPProtocol, FakeDatagramTransport]:
    protocol = UDPProtocol(responder)
    transport = FakeDatagramTransport()
    protocol.makeConnection(cast(IUDPTransport, transport))
    return protocol, transport


def test_udp_reply_goes_to_the_sender(udp: tuple[UDPProtocol, FakeDatagramTransport]) -> None:
    protocol, transport = udp
    protocol.datagramReceived(query(ident=0x1234), CLIENT)
    other = ("198.51.100.9", 53000)
    protocol.datagramReceived(query(ident=0x4321), other)
    assert [addr for _, addr in transport.sent] == [CLIENT, other]
    assert_imaps_answer(transport.sent[0][0], 0x1234)
    assert_imaps_answer(transport.sent[1][0], 0x4321)


@pytest.mark.parametrize(
    "datagram",
    [as_response(query()), b"", b"\x12\x34\x01\x00", query()[:11]],
    ids=["qr=1", "empty", "4 bytes", "11 bytes"],
)
def test_udp_no_reply_to_a_response_or_a_short_datagram(
    udp: tuple[UDPProtocol, FakeDatagramTransport], datagram: bytes
) -> None:
    protocol, transport = udp
    protocol.datagramReceived(datagram, CLIENT)
    assert transport.sent == []
    protocol.datagramReceived(query(ident=9), CLIENT)  # and the next query is answered
    assert len(transport.sent) == 1
    assert_imaps_answer(transport.sent[0][0], 9)


def test_udp_send_error_is_counted_not_raised(
    udp: tuple[UDPProtocol, FakeDatagramTransport],
) -> None:
    protocol, transport = udp
    transport.error = OSError(105, "No buffer space available")
    protocol.datagramReceived(query(), CLIENT)
    assert protocol.send_errors == 1
    transport.error = None
    protocol.datagramReceived(query(ident=2), CLIENT)
    assert_imaps_answer(transport.sent[0][0], 2)


# ---------------------------------------------------------------------------------------------
# TCP


class Connection:
    """One TCP connection of a factory, on a StringTransport."""

    def __init__(self, factory: TCPFactory) -> None:
        protocol = factory.buildProtocol(IPv4Address("TCP", "192.0.2.7", 40000))
        assert isinstance(protocol, TCPProtocol)
        self.protocol = protocol
        self._untyped = cast(Any, protocol)
        self.transport: Any = _StringTransport()
        self.lost = False
        self._untyped.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self._untyped.dataReceived(data)

    def replies(self) -> list[bytes]:
        return unframe(self.transport.value())

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting)

    @property
    def aborted(self) -> bool:
        return bool(self.transport.disconnected)

    def lose(self) -> None:
        """What the reactor does once the transport has closed."""
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(_Failure(ConnectionDone()))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def factory(responder: Responder, clock: Clock) -> TCPFactory:
    settings = TcpSettings(idle_timeout=IDLE, message_timeout=IDLE, max_connections=3)
    return TCPFactory(responder, cast(IReactorTime, clock), settings)


def test_tcp_length_framing(factory: TCPFactory) -> None:
    conn = Connection(factory)
    conn.send(frame(query(ident=7)))
    data = conn.transport.value()
    (length,) = struct.unpack("!H", data[:2])
    assert length == len(data) - 2
    assert_imaps_answer(data[2:], 7)
    assert not conn.closing


def test_tcp_pipelined_queries_in_one_write_all_answered_in_order(factory: TCPFactory) -> None:
    conn = Connection(factory)
    idents = [11, 12, 13, 14, 15]
    conn.send(frame(*(query(ident=i) for i in idents)))
    replies = conn.replies()
    assert [parse(r).id for r in replies] == idents
    for reply, ident in zip(replies, idents, strict=True):
        assert_imaps_answer(reply, ident)
    assert not conn.closing


def test_tcp_a_message_split_over_several_writes(factory: TCPFactory) -> None:
    conn = Connection(factory)
    data = frame(query(ident=21), query(ident=22))
    conn.send(data[:1])  # half the length prefix
    conn.send(data[1:5])  # the rest of it and the start of the header
    assert conn.transport.value() == b""
    first_end = 2 + len(query(ident=21))
    conn.send(data[5 : first_end + 1])  # the first message and one byte of the next prefix
    assert [parse(r).id for r in conn.replies()] == [21]
    for i in range(first_end + 1, len(data)):  # the second one byte at a time
        conn.send(data[i : i + 1])
    assert [parse(r).id for r in conn.replies()] == [21, 22]
    assert not conn.closing


def test_tcp_idle_timeout_closes_the_connection(factory: TCPFactory, clock: Clock) -> None:
    conn = Connection(factory)
    clock.advance(IDLE - 0.1)
    assert not conn.closing
    clock.advance(0.1)
    assert conn.aborted
    conn.lose()
    assert factory.open_connections == 0
    assert clock.getDelayedCalls() == []


def test_tcp_idle_timeout_is_reset_by_a_complete_query(factory: TCPFactory, clock: Clock) -> None:
    conn = Connection(factory)
    clock.advance(IDLE - 1)
    conn.send(frame(query(ident=31)))
    clock.advance(IDLE - 1)  # 2 * IDLE - 2 since the connection was made: still open
    assert not conn.closing
    conn.send(frame(query(ident=32)))
    clock.advance(IDLE - 0.5)
    assert not conn.closing
    clock.advance(0.5)
    assert conn.aborted
    assert [parse(r).id for r in conn.replies()] == [31, 32]


def test_tcp_partial_message_that_never_completes_is_closed_by_the_timer(
    factory: TCPFactory, clock: Clock
) -> None:
    conn = Connection(factory)
    data = frame(query(ident=41))
    step = 1 / 16  # exact in binary: the sums below are exact
    assert (len(data) - 1) * step < IDLE - 1
    clock.advance(1)
    for i in range(len(data) - 1):  # a slow trickle of bytes must not keep the connection open
        conn.send(data[i : i + 1])
        clock.advance(step)
    elapsed = 1 + (len(data) - 1) * step
    clock.advance(IDLE - elapsed - step)
    assert not conn.closing
    clock.advance(step)
    assert conn.aborted
    assert conn.transport.value() == b""


def test_tcp_connection_cap_aborts_the_one_over_the_limit_and_counts_it(
    factory: TCPFactory,
) -> None:
    conns = [Connection(factory) for _ in range(factory.settings.max_connections)]
    assert factory.open_connections == factory.settings.max_connections
    assert not any(c.closing for c in conns)
    assert factory.rejected == 0

    extra = Connection(factory)
    assert extra.aborted
    assert factory.rejected == 1
    extra.lose()
    assert factory.open_connections == factory.settings.max_connections

    conns[0].send(frame(query(ident=51)))  # the connections within the cap still work
    assert [parse(r).id for r in conns[0].replies()] == [51]

    conns[1].transport.loseConnection()  # a client leaves: its slot is free again
    conns[1].lose()
    again = Connection(factory)
    assert not again.closing
    again.send(frame(query(ident=52)))
    assert [parse(r).id for r in again.replies()] == [52]
    assert factory.rejected == 1
    for conn in [*conns, again]:
        conn.lose()
    assert factory.open_connections == 0


@pytest.mark.parametrize(
    "bad",
    [b"", b"\x00\x01\x00", query()[:11], as_response(query())],
    ids=["length 0", "3 bytes", "11 bytes", "qr=1"],
)
def test_tcp_a_message_without_a_reply_closes_only_its_connection(
    factory: TCPFactory, bad: bytes
) -> None:
    victim = Connection(factory)
    bystander = Connection(factory)
    victim.send(frame(query(ident=61)))
    victim.send(frame(bad))
    assert victim.closing
    assert [parse(r).id for r in victim.replies()] == [61]  # what came before is still answered
    victim.lose()

    assert not bystander.closing
    bystander.send(frame(query(ident=62)))
    assert [parse(r).id for r in bystander.replies()] == [62]
    assert factory.open_connections == 1

    fresh = Connection(factory)  # and srvd goes on accepting
    fresh.send(frame(query(ident=63)))
    assert [parse(r).id for r in fresh.replies()] == [63]


# ---------------------------------------------------------------------------------------------
# The responder's guard: SERVFAIL and a bounded log


def break_answer(
    monkeypatch: pytest.MonkeyPatch, when: Callable[[bytes], bool] = lambda wire: True
) -> None:
    """Make the answer function the responder calls raise (for the queries ``when`` picks)."""

    def breaking(real: Callable[..., Any]) -> Callable[..., Any]:
        def broken(wire: bytes, *args: Any, **kwargs: Any) -> Any:
            if when(wire):
                raise RuntimeError("bug in srvd")
            return real(wire, *args, **kwargs)

        return broken

    candidates = ("lean_answer", "entry_for")
    names = [n for n in candidates if callable(getattr(srvd.server.responder, n, None))]
    assert names, f"srvd.server.responder imports none of {candidates}"
    for name in names:
        monkeypatch.setattr(
            srvd.server.responder, name, breaking(getattr(srvd.server.responder, name))
        )


class ExplodingRandom:
    """A random source that fails when armed: a genuine failure deep inside the answer code."""

    def __init__(self) -> None:
        self.armed = False

    def random(self) -> float:
        if self.armed:
            raise ZeroDivisionError("bug in the ordering code")
        return 0.5


def _failures(events: list[LogEvent]) -> list[LogEvent]:
    return [
        e
        for e in events
        if e.get("log_namespace") == "srvd.server.responder" and "log_failure" in e
    ]


def _suppressed(events: list[LogEvent]) -> list[LogEvent]:
    return [e for e in events if "suppressed" in e.get("log_format", "")]


def test_exception_in_answer_gives_servfail_with_id_and_question(
    responder: Responder, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_answer(monkeypatch)
    wire = query("_IMaps._TCP.Example.COM", ident=0xBEEF)  # letter case must be kept
    with capturedLogs() as events:
        reply = responder.respond(wire, False)
    assert reply is not None
    message = parse(reply)
    assert message.id == 0xBEEF
    assert message.rcode() == dns.rcode.SERVFAIL
    assert message.flags & dns.flags.QR
    assert message.flags & dns.flags.RD
    assert not message.flags & (dns.flags.AA | dns.flags.RA | dns.flags.TC)
    assert reply[4:12] == b"\x00\x01\x00\x00\x00\x00\x00\x00"
    question = wire[12 : 12 + len(b"_IMaps._TCP.Example.COM") + 2 + 4]
    assert reply[12:] == question
    assert responder.failures == 1
    logged = _failures(list(events))
    assert len(logged) == 1
    assert logged[0]["query"] == wire.hex()
    assert logged[0]["log_failure"].check(RuntimeError)


def test_servfail_copies_rd_clear(responder: Responder, monkeypatch: pytest.MonkeyPatch) -> None:
    break_answer(monkeypatch)
    with capturedLogs():
        reply = responder.respond(query(ident=3, rd=False), True)
    assert reply is not None
    assert not parse(reply).flags & dns.flags.RD


def test_exception_over_tcp_gives_servfail_and_keeps_the_connection(
    index: Index, clock: Clock
) -> None:
    rng = ExplodingRandom()
    responder = Responder(index, rng)
    factory = TCPFactory(responder, cast(IReactorTime, clock), TcpSettings(idle_timeout=IDLE))
    conn = Connection(factory)
    rng.armed = True
    with capturedLogs() as events:
        conn.send(frame(query(ident=71)))
    rng.armed = False
    conn.send(frame(query(ident=72)))
    first, second = conn.replies()
    servfail = parse(first)
    assert (servfail.id, servfail.rcode()) == (71, dns.rcode.SERVFAIL)
    assert str(servfail.question[0].name) == IMAPS + "."
    assert servfail.answer == []
    assert_imaps_answer(second, 72)
    assert not conn.closing
    assert responder.failures == 1
    assert len(_failures(list(events))) == 1

    udp = UDPProtocol(responder)  # and the same over UDP
    transport = FakeDatagramTransport()
    udp.makeConnection(cast(IUDPTransport, transport))
    rng.armed = True
    with capturedLogs():
        udp.datagramReceived(query(ident=73), CLIENT)
    [(reply, addr)] = transport.sent
    assert addr == CLIENT
    assert (parse(reply).id, parse(reply).rcode()) == (73, dns.rcode.SERVFAIL)


def test_failure_log_is_rate_limited(responder: Responder, monkeypatch: pytest.MonkeyPatch) -> None:
    break_answer(monkeypatch)
    now = [100.0]
    responder.failure_log = RateLimitedLog(burst=3, period=1.0, clock=lambda: now[0])
    with capturedLogs() as captured:
        events = cast(list[LogEvent], captured)
        for i in range(50):
            reply = responder.respond(query(ident=i), False)
            assert reply is not None and parse(reply).rcode() == dns.rcode.SERVFAIL
            now[0] += 0.01  # 50 failures within half a second
        assert len(_failures(events)) == 3
        assert _suppressed(events) == []

        now[0] += 1.0  # the next second: the count of what was left out, then lines again
        responder.respond(query(ident=99), False)
        assert len(_failures(events)) == 4
        summary = _suppressed(events)
        assert len(summary) == 1
        assert summary[0]["count"] == 47
    assert responder.failures == 51


def test_rate_limited_log_window() -> None:
    now = [0.0]
    limiter = RateLimitedLog(burst=10, period=1.0, clock=lambda: now[0])
    assert [limiter.allow() for _ in range(12)] == [True] * 10 + [False] * 2
    now[0] = 0.999
    assert not limiter.allow()
    assert limiter.suppressed == 3
    now[0] = 1.0
    with capturedLogs() as events:
        assert limiter.allow()
    assert [e["count"] for e in _suppressed(list(events))] == [3]
    assert limiter.suppressed == 0
    assert sum(limiter.allow() for _ in range(20)) == 9


# ---------------------------------------------------------------------------------------------
# TCP limits (issue: ready for the open Internet)


def limited_factory(responder: Responder, clock: Clock, **settings: Any) -> TCPFactory:
    values: dict[str, Any] = {"idle_timeout": IDLE, "message_timeout": 2.0, "max_connections": 3}
    values.update(settings)
    return TCPFactory(responder, cast(IReactorTime, clock), TcpSettings(**values))


def test_tcp_a_message_begun_must_complete_within_the_message_timeout(
    responder: Responder, clock: Clock
) -> None:
    factory = limited_factory(responder, clock)
    conn = Connection(factory)
    data = frame(query(ident=81))
    conn.send(data[:5])
    clock.advance(1.0)
    conn.send(data[5:10])  # more octets of the same message do not extend its deadline
    clock.advance(0.9)
    assert not conn.aborted
    clock.advance(0.1)
    assert conn.aborted and factory.incomplete == 1
    conn.lose()
    assert clock.getDelayedCalls() == []


def test_tcp_each_message_gets_its_own_deadline(responder: Responder, clock: Clock) -> None:
    factory = limited_factory(responder, clock)
    conn = Connection(factory)
    first, second = frame(query(ident=82)), frame(query(ident=83))
    conn.send(first[:-1])
    clock.advance(1.5)
    conn.send(first[-1:] + second[:3])  # the first completes, the second begins
    clock.advance(1.5)  # 3 s after the first began, 1.5 s after the second did
    assert not conn.closing
    conn.send(second[3:])
    assert [parse(r).id for r in conn.replies()] == [82, 83]
    clock.advance(IDLE - 0.1)  # nothing begun: only the idle timeout is left
    assert not conn.closing and factory.incomplete == 0


def test_tcp_pipelined_replies_are_capped_until_the_transport_has_written_them(
    responder: Responder, clock: Clock
) -> None:
    factory = limited_factory(responder, clock, max_pipelined=3)
    conn = Connection(factory)
    conn.send(frame(*(query(ident=i) for i in range(90, 97))))
    assert [parse(r).id for r in conn.replies()] == [90, 91, 92]
    assert conn.transport.producerState == "paused"  # srvd stopped reading this connection
    assert conn.transport.producer is conn.protocol
    conn.transport.clear()
    conn.protocol.resumeProducing()  # what the transport does once its buffer is written out
    assert [parse(r).id for r in conn.replies()] == [93, 94, 95]
    conn.transport.clear()
    conn.protocol.resumeProducing()
    assert [parse(r).id for r in conn.replies()] == [96]
    assert conn.transport.producerState == "producing"


def test_tcp_over_the_cap_the_least_recently_active_idle_connection_is_reaped(
    responder: Responder, clock: Clock
) -> None:
    factory = limited_factory(responder, clock)
    conns = [Connection(factory) for _ in range(3)]
    clock.advance(TCPFactory.REAP_IDLE + 1)
    conns[0].send(frame(query(ident=1)))  # the first is busy now; the second is the oldest idle
    conns[2].send(frame(query(ident=2)))
    newcomer = Connection(factory)
    assert not newcomer.aborted and conns[1].aborted and not conns[0].aborted
    assert (factory.reaped, factory.rejected, factory.open_connections) == (1, 0, 3)
    conns[1].lose()
    assert factory.open_connections == 3
    newcomer.send(frame(query(ident=3)))
    assert [parse(r).id for r in newcomer.replies()] == [3]

    late = Connection(factory)  # every connection was active within REAP_IDLE: no room
    assert late.aborted and factory.rejected == 1 and factory.open_connections == 3
    late.lose()
    assert factory.open_connections == 3


def test_tcp_a_busy_connection_is_never_reaped(
    responder: Responder, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory = limited_factory(responder, clock, max_connections=2)
    transferring, idle = Connection(factory), Connection(factory)
    monkeypatch.setattr(transferring.protocol, "busy", lambda: True)  # as during a zone transfer
    clock.advance(TCPFactory.REAP_IDLE + 1)
    newcomer = Connection(factory)
    assert not transferring.aborted and idle.aborted and not newcomer.aborted
    idle.lose()
    clock.advance(TCPFactory.REAP_IDLE + 1)
    newcomer.send(frame(query(ident=5)))  # active now: only the busy one is left to reap
    late = Connection(factory)
    assert late.aborted and not transferring.aborted and factory.rejected == 1
