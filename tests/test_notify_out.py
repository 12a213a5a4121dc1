"""NOTIFY out (srvd.xfr.notify) on a virtual clock with a fake UDP port: pace, retries, answers."""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Callable
from typing import Any

import dns.message
import dns.opcode
import dns.tsig
import dns.tsigkeyring
import pytest
from twisted.internet.task import Clock
from xfr_helpers import KEY_NAME, SECRET

from srvd.config.model import NotifyTarget, TransferSettings
from srvd.wire import tsig
from srvd.wire.tsig import name_wire
from srvd.xfr.notify import FIRST_TIMEOUT, TICK, NotifySender

KEY = tsig.make_key(KEY_NAME, "hmac-sha256", base64.b64decode(SECRET))
PLAIN = NotifyTarget("127.0.0.1", 5300, None)
SIGNED = NotifyTarget("127.0.0.1", 5301, KEY.name)
CATALOG = name_wire("catalog.example.net")


def apex(i: int) -> bytes:
    return name_wire(f"_tcp.cust{i:06d}.example")


class FakePort:
    def __init__(self, reactor: FakeReactor) -> None:
        self.reactor = reactor

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.reactor.sent.append((self.reactor.seconds(), data, addr))
        if self.reactor.responder is not None:
            reply = self.reactor.responder(data, addr)
            if reply is not None:  # the answer comes a little later, as over a network
                self.reactor.callLater(0.001, self.reactor.deliver, reply, addr)

    def stopListening(self) -> None:
        pass


class FakeReactor(Clock):
    """A virtual clock whose UDP ports record what is sent (time, message, address)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[float, bytes, tuple[str, int]]] = []
        self.protocols: list[Any] = []
        self.responder: Callable[[bytes, tuple[str, int]], bytes | None] | None = None

    def listenUDP(self, port: int, protocol: Any, interface: str = "") -> FakePort:
        self.protocols.append(protocol)
        return FakePort(self)

    def deliver(self, reply: bytes, addr: tuple[str, int]) -> None:
        for protocol in self.protocols:
            protocol.datagramReceived(reply, addr)

    def run(self, seconds: float, step: float = TICK) -> None:
        end = self.seconds() + seconds
        while self.seconds() < end - 1e-9:
            self.advance(min(step, end - self.seconds()))


def sender(
    reactor: FakeReactor, targets: tuple[NotifyTarget, ...], rate: int = 1000
) -> tuple[NotifySender, dict[str, int]]:
    settings = TransferSettings(keys=(KEY,), notify=targets, notify_rate=rate)
    counts: dict[str, int] = {}
    # TSIG times from the real clock (dnspython checks them); pacing from the virtual one
    return NotifySender(reactor, settings, counts, clock=time.time), counts


def answer(data: bytes, rcode: int = 0) -> bytes:
    """An unsigned answer: same ID and question, QR set."""
    flags = (data[2] << 8 | data[3]) | 0x8000 | rcode
    end = 12
    while data[end]:
        end += data[end] + 1
    return data[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 0) + data[12 : end + 5]


def signed_answer(data: bytes, secret: str = SECRET) -> bytes:
    """The answer dnspython's secondary side would sign (over the NOTIFY's MAC)."""
    ring = dns.tsigkeyring.from_text({KEY_NAME: ("hmac-sha256", SECRET)})
    query = dns.message.from_wire(data, keyring=ring)
    assert query.opcode() == dns.opcode.NOTIFY
    response = dns.message.make_response(query)
    if secret != SECRET:
        response.keyring = dns.tsig.Key(KEY_NAME, secret, "hmac-sha256")
    return response.to_wire()


def max_in_any_second(times: list[float]) -> int:
    """The most sends in any half-open window [t, t + 1)."""
    best = start = 0
    for end, t in enumerate(times):
        while times[start] <= t - 1.0 + 1e-9:
            start += 1
        best = max(best, end - start + 1)
    return best


# ---------------------------------------------------------------------------------------------
# Pacing


def test_100k_zones_at_1000_a_second_take_100_seconds_and_never_more_in_any_second() -> None:
    reactor = FakeReactor()
    reactor.responder = lambda data, addr: answer(data)
    notify, counts = sender(reactor, (PLAIN,), rate=1000)
    zones = [apex(i) for i in range(100_000)]
    notify.enqueue(zones)
    reactor.run(120)
    start = reactor.sent[0][0]
    times = [t - start for t, _, _ in reactor.sent]
    assert len(times) == 100_000
    assert counts["ok"] == 100_000 and counts["retry"] == 0
    assert 99.0 <= times[-1] <= 101.0, times[-1]
    assert max_in_any_second(times) <= 1000
    assert notify.queued == 0 and not notify.pending


@pytest.mark.parametrize("rate", [1, 10, 30, 250])
def test_the_rate_counts_messages_to_every_target_and_retries(rate: int) -> None:
    reactor = FakeReactor()  # no answers: every message is retried
    notify, _counts = sender(reactor, (PLAIN, SIGNED), rate=rate)
    notify.enqueue([apex(i) for i in range(max(10, rate * 2))])
    start = reactor.seconds()
    reactor.run(10)  # new NOTIFYs and the first retries
    times = [t - start for t, _, _ in reactor.sent]
    assert times and notify.counts["retry"]
    assert max_in_any_second(times) <= rate
    # and the rate is used: well over half of it while there is work
    assert max_in_any_second(times) >= rate * 0.6


# ---------------------------------------------------------------------------------------------
# Retries and answers


def test_no_answer_retries_after_1_2_4_8_and_gives_up_after_16_more() -> None:
    reactor = FakeReactor()
    notify, counts = sender(reactor, (SIGNED,))
    notify.enqueue([apex(1)])
    reactor.run(60, step=0.01)
    start = reactor.sent[0][0]
    times = [round(t - start, 1) for t, _, _ in reactor.sent]
    assert times == [0.0, 1.0, 3.0, 7.0, 15.0]
    assert counts["retry"] == 4 and counts["timeout"] == 1 and counts["ok"] == 0
    assert not notify.pending
    # one ID throughout, each send signed afresh, and dnspython verifies every one
    ids = {data[:2] for _, data, _ in reactor.sent}
    assert len(ids) == 1
    ring = dns.tsigkeyring.from_text({KEY_NAME: ("hmac-sha256", SECRET)})
    for _, data, _ in reactor.sent:
        assert dns.message.from_wire(data, keyring=ring).had_tsig
    assert FIRST_TIMEOUT == 1.0


def _first_send(targets: tuple[NotifyTarget, ...]) -> tuple[FakeReactor, NotifySender, bytes]:
    reactor = FakeReactor()
    notify, _ = sender(reactor, targets)
    notify.enqueue([apex(1)])
    reactor.run(0.1, step=0.01)
    assert len(reactor.sent) == 1
    return reactor, notify, reactor.sent[0][1]


def test_an_answer_must_match_id_question_and_source() -> None:
    reactor, notify, data = _first_send((PLAIN,))
    addr = ("127.0.0.1", PLAIN.port)
    other_id = bytes([data[0] ^ 1]) + data[1:]
    reactor.deliver(answer(other_id), addr)
    other_zone = notify_for(apex(2), data[:2])
    reactor.deliver(answer(other_zone), addr)
    reactor.deliver(answer(data), ("127.0.0.2", PLAIN.port))  # another address
    reactor.deliver(answer(data), ("127.0.0.1", PLAIN.port + 1))  # another port
    reactor.deliver(data, addr)  # the query itself, not an answer
    assert notify.pending, "a mismatched answer stopped the retries"
    reactor.run(1.5, step=0.01)
    assert len(reactor.sent) == 2  # retried
    reactor.deliver(answer(reactor.sent[-1][1]), addr)
    assert not notify.pending and notify.counts["ok"] == 1
    reactor.run(40)
    assert len(reactor.sent) == 2  # no more retries


def notify_for(zone: bytes, ident: bytes) -> bytes:
    from srvd.xfr.notify import notify_message

    return notify_message(int.from_bytes(ident, "big"), zone)


def test_an_error_answer_stops_the_retries_and_is_counted() -> None:
    reactor, notify, data = _first_send((PLAIN,))
    reactor.deliver(answer(data, rcode=5), ("127.0.0.1", PLAIN.port))
    assert not notify.pending and notify.counts["error"] == 1
    reactor.run(40)
    assert len(reactor.sent) == 1


def test_a_keyed_target_must_answer_signed() -> None:
    reactor, notify, data = _first_send((SIGNED,))
    addr = ("127.0.0.1", SIGNED.port)
    reactor.deliver(answer(data[: len(data)]), addr)  # unsigned (the query's TSIG dropped)
    wrong = base64.b64encode(b"z" * 32).decode()
    reactor.deliver(signed_answer(data, secret=wrong), addr)
    assert notify.pending, "an unsigned or badly signed answer was taken"
    reactor.deliver(signed_answer(data), addr)
    assert not notify.pending and notify.counts["ok"] == 1


def test_a_late_answer_to_an_earlier_send_is_taken() -> None:
    reactor, notify, first = _first_send((SIGNED,))
    reactor.run(1.0, step=0.01)
    assert len(reactor.sent) == 2  # re-signed and sent again
    reactor.deliver(signed_answer(first), ("127.0.0.1", SIGNED.port))  # the first one's answer
    assert not notify.pending


# ---------------------------------------------------------------------------------------------
# The queue


def test_duplicates_are_merged() -> None:
    reactor = FakeReactor()
    notify, _ = sender(reactor, (PLAIN,))
    notify.enqueue([apex(1), apex(2), apex(1)])
    notify.enqueue([apex(2), apex(1)])
    reactor.run(0.5, step=0.01)
    questions = [data[12:] for _, data, _ in reactor.sent]
    assert len(questions) == 2 and len(set(questions)) == 2


def test_a_zone_queued_again_while_in_flight_replaces_the_older_notify() -> None:
    reactor = FakeReactor()
    notify, _ = sender(reactor, (PLAIN,))
    notify.enqueue([apex(1)])
    reactor.run(0.5, step=0.01)
    notify.enqueue([apex(1)])  # changed again before the secondary answered
    reactor.run(0.5, step=0.01)
    assert len(reactor.sent) == 2 and len(notify.pending) == 1
    reactor.deliver(answer(reactor.sent[-1][1]), ("127.0.0.1", PLAIN.port))
    reactor.run(40)
    assert len(reactor.sent) == 2, "the older NOTIFY was still retried"


def test_the_catalog_goes_first_even_behind_a_long_queue() -> None:
    reactor = FakeReactor()
    notify, _ = sender(reactor, (PLAIN,), rate=100)
    notify.enqueue([apex(i) for i in range(1000)])
    reactor.run(1.0)
    notify.enqueue([CATALOG, apex(5000)], first=[CATALOG])
    reactor.run(TICK * 1.5, step=0.01)
    later = [data for t, data, _ in reactor.sent if t > reactor.seconds() - TICK * 1.5]
    assert later and later[0][12 : 12 + len(CATALOG)] == CATALOG


def test_before_publish_queues_the_catalog_first(tmp_path: Any) -> None:
    from xfr_helpers import primary_config

    from srvd.config import load_config
    from srvd.index.build import build_index
    from srvd.index.model import ZoneDelta
    from srvd.server.loading import Built, Changes
    from srvd.server.responder import Responder
    from srvd.xfr.transfer import Transfers

    domains = ["a.example", "b.example"]
    config = load_config(primary_config(tmp_path, domains))
    index = build_index(config, lambda apex, digest: 100)
    role = Transfers(config, Responder(index))

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[tuple[list[bytes], list[bytes]]] = []

        def configure(self, settings: TransferSettings) -> None:
            pass

        def enqueue(self, apexes: list[bytes], first: list[bytes] | None = None) -> None:
            self.calls.append((list(apexes), list(first or [])))

    recorder = role.notify = Recorder()
    config2 = load_config(primary_config(tmp_path, [*domains, "c.example"]))
    index2 = build_index(config2, lambda apex, digest: 200)
    changed = tuple(index2.zones)[:2]
    added = tuple(z for z in index2.zones if z not in index.zones)
    delta = ZoneDelta(added, (), changed)
    role.before_publish(Built(config2, index2, Changes((1, 0, 0), ([], [], []), delta), 0.0))
    ((apexes, first),) = recorder.calls
    catalog = name_wire("catalog.example.net")
    assert first == [catalog] and catalog not in apexes
