"""Response rate limiting: buckets, kinds, slip replies, counting; then a real flood on loopback."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from srvd.answer.full import zone_of
from srvd.config import RrlSettings, load_config
from srvd.index.build import build_index
from srvd.server.responder import Responder
from srvd.server.rrl import (
    DROP,
    EXEMPT,
    K_ANSWER,
    K_ERROR,
    K_NODATA,
    K_NXDOMAIN,
    K_REFUSED,
    PASS,
    SLIP,
    RateLimiter,
    bucket_key,
    kind_of,
    reply_key,
)

from conftest import EXAMPLE, start_srvd


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: FakeClock, **settings: object) -> RateLimiter:
    values: dict[str, object] = {"responses_per_second": 20, "slip": 2, "exempt": ()}
    values.update(settings)
    return RateLimiter(RrlSettings(**values), clock=clock)  # type: ignore[arg-type]


def test_a_bucket_allows_its_rate_then_limits_then_refills() -> None:
    clock = FakeClock()
    rrl = limiter(clock, responses_per_second=10)
    key = bucket_key(K_ANSWER, b"\x04_tcp\x07example\x03com\x00")
    assert [rrl.check("192.0.2.1", key) for _ in range(5)] == [PASS] * 5  # half a second's worth
    limited = [rrl.check("192.0.2.1", key) for _ in range(10)]
    assert limited == [DROP, SLIP] * 5  # slip 2: every second limited reply is truncated
    assert rrl.actions == [5, 5]
    clock.now += 0.25  # refills at the rate: 2.5 tokens
    assert [rrl.check("192.0.2.1", key) for _ in range(6)].count(PASS) == 2
    clock.now += 60  # a long pause refills it only up to half a second's worth
    assert [rrl.check("192.0.2.1", key) for _ in range(12)].count(PASS) == 5


def test_the_bucket_is_per_prefix_not_per_address() -> None:
    clock = FakeClock()
    rrl = limiter(clock, slip=0)
    key = bucket_key(K_REFUSED, b"")
    for i in range(10):
        assert rrl.check(f"192.0.2.{i + 1}", key) == PASS
    assert rrl.check("192.0.2.200", key) == DROP  # same /24
    assert rrl.check("192.0.3.1", key) == PASS  # another /24
    assert rrl.check("2001:db8:0:100::1", key) == PASS
    for i in range(9):  # the same /56 as the one above
        assert rrl.check(f"2001:db8:0:1{i:02x}::7", key) == PASS
    assert rrl.check("2001:db8:0:1ff::1", key) == DROP
    assert rrl.check("2001:db8:0:200::1", key) == PASS  # another /56


def test_kinds_and_zones_have_their_own_buckets() -> None:
    clock = FakeClock()
    rrl = limiter(clock, slip=0)
    head = b"\x00" * 12

    def zone(name: bytes) -> bytes:
        return zone_of(head + name + b"\x00\x21\x00\x01")

    example = zone(b"\x05_imap\x04_tcp\x07example\x03com\x00")
    other = zone(b"\x05_imap\x04_tcp\x05other\x03com\x00")
    random_name = zone(b"\x07X1y2z3Q\x04_TCP\x07exAMple\x03com\x00")
    assert example == b"\x04_tcp\x07example\x03com\x00"
    nx = bucket_key(K_NXDOMAIN, example)
    assert bucket_key(K_NXDOMAIN, random_name) == nx  # random names under one zone: one bucket
    keys = [nx, bucket_key(K_NXDOMAIN, other), bucket_key(K_ANSWER, example)]
    keys += [bucket_key(K_NODATA, example), bucket_key(K_ERROR, b"")]
    assert len(set(keys)) == len(keys)
    for key in keys:
        assert [rrl.check("192.0.2.1", key) for _ in range(11)] == [PASS] * 10 + [DROP]


def test_exempt_sources_are_never_limited_and_loopback_is_exempt_by_default() -> None:
    rrl = RateLimiter(RrlSettings(responses_per_second=1, exempt=("198.51.100.0/24",)))
    key = bucket_key(K_REFUSED, b"")
    assert all(rrl.check("198.51.100.9", key) == PASS for _ in range(100))
    assert rrl.prefix_key("198.51.100.9") == EXEMPT
    assert rrl.check("192.0.2.1", key) == PASS and rrl.check("192.0.2.1", key) != PASS
    default = RateLimiter(RrlSettings(responses_per_second=1))
    assert default.prefix_key("127.0.0.1") == EXEMPT and default.prefix_key("::1") == EXEMPT


def test_the_rate_is_shared_out_among_workers() -> None:
    clock = FakeClock()
    rrl = RateLimiter(RrlSettings(responses_per_second=80, exempt=()), workers=4, clock=clock)
    key = bucket_key(K_REFUSED, b"")
    assert [rrl.check("192.0.2.1", key) for _ in range(11)].count(PASS) == 10


def test_the_table_is_bounded_whatever_the_flood() -> None:
    rrl = limiter(FakeClock(), table_size=64)
    for i in range(5000):
        rrl.check(f"10.{i % 250}.{i // 250}.1", bucket_key(K_ANSWER, i.to_bytes(12, "big")))
    assert len(rrl.full_at) == 64


# ---------------------------------------------------------------------------------------------
# In the responder


def query(name: str, rdtype: str = "SRV", ident: int = 1, edns: bool = False) -> bytes:
    message = dns.message.make_query(name, rdtype, use_edns=0 if edns else None)
    message.id = ident
    return message.to_wire()


@pytest.fixture
def responder() -> Responder:
    responder = Responder(build_index(load_config(EXAMPLE)), random.Random(1))
    responder.limit(RrlSettings(responses_per_second=5, slip=1, exempt=()))
    return responder


@pytest.mark.parametrize("edns", [False, True], ids=["plain", "edns"])
@pytest.mark.parametrize(
    ("name", "rdtype", "rcode"),
    [
        ("_imaps._tcp.example.com", "SRV", dns.rcode.NOERROR),
        ("_nope._tcp.example.com", "SRV", dns.rcode.NXDOMAIN),
        ("_imaps._tcp.example.com", "A", dns.rcode.NOERROR),
        ("example.org", "A", dns.rcode.REFUSED),
    ],
    ids=["answer", "nxdomain", "nodata", "refused"],
)
def test_a_slipped_reply_is_truncated_with_the_question_and_nothing_else(
    responder: Responder, name: str, rdtype: str, rcode: dns.rcode.Rcode, edns: bool
) -> None:
    replies = [
        responder.respond(query(name, rdtype, i, edns), False, "192.0.2.9") for i in range(6)
    ]
    full = dns.message.from_wire(replies[0] or b"")
    assert not full.flags & dns.flags.TC
    asked = query(name.upper(), rdtype, 0xABCD, edns)
    slipped_wire = responder.respond(asked, False, "192.0.2.9") or b""
    slipped = dns.message.from_wire(slipped_wire)
    assert slipped.id == 0xABCD and slipped.flags & dns.flags.QR and slipped.flags & dns.flags.TC
    assert slipped.rcode() == rcode and slipped.answer == [] and slipped.authority == []
    question_end = asked.index(0, 12) + 5
    assert slipped_wire[12:question_end] == asked[12:question_end]  # echoed as asked
    assert (slipped.edns >= 0) == edns
    assert len(slipped_wire) <= len(asked)  # never more octets out than in
    tcp = responder.respond(asked, True, None)  # TCP is never limited
    assert tcp is not None and not dns.message.from_wire(tcp).flags & dns.flags.TC


def test_limited_replies_count_in_the_rrl_actions_only() -> None:
    responder = Responder(build_index(load_config(EXAMPLE)), random.Random(1))
    responder.limit(RrlSettings(responses_per_second=10, slip=2, exempt=()))
    for i in range(25):
        responder.respond(query("_imaps._tcp.example.com", ident=i), False, "192.0.2.9")
    counters = responder.fold()
    assert sum(counters.queries) == 5
    assert counters.rrl == [10, 10]
    assert sum(counters.dropped) == 0


def test_off_means_no_limiter() -> None:
    responder = Responder(build_index(load_config(EXAMPLE)), random.Random(1))
    responder.limit(RrlSettings(responses_per_second=0))
    assert responder.rrl is None
    for i in range(200):
        assert responder.respond(query("_imaps._tcp.example.com", ident=i), False, "192.0.2.9")


# ---------------------------------------------------------------------------------------------
# A real flood on loopback: one /24 floods, another asks politely, a TC reply is retried on TCP

RATE = 50


def _flood_config(tmp_path: Path) -> Path:
    config = tmp_path / "srvd.yaml"
    text = EXAMPLE.read_text()
    config.write_text(text + f"\nrrl:\n  responses_per_second: {RATE}\n  exempt: []\n")
    return config


def _bound_socket(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 0))
    return sock


def _drain(sock: socket.socket, full: int, truncated: int) -> tuple[int, int]:
    """The replies waiting on a non-blocking socket, added to the full and truncated counts."""
    while True:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return full, truncated
        if data[2] & 0x02:
            truncated += 1
        else:
            full += 1


def test_a_flooding_prefix_is_limited_while_another_gets_every_answer(tmp_path: Path) -> None:
    server = start_srvd(_flood_config(tmp_path))
    try:
        wire = query("_imaps._tcp.example.com", edns=True)
        flood = _bound_socket("127.0.1.1")
        flood.setblocking(False)
        full = truncated = 0
        polite_ok = polite_sent = 0
        polite = _bound_socket("127.0.2.1")
        polite.settimeout(1.0)
        stop = threading.Event()

        def ask_politely() -> None:
            nonlocal polite_ok, polite_sent
            for i in range(20):  # 10 qps for 2 s
                if stop.is_set():
                    break
                polite_sent += 1
                polite.sendto(struct.pack("!H", i) + wire[2:], ("127.0.0.1", server.port))
                try:
                    reply = dns.message.from_wire(polite.recv(4096))
                except OSError:
                    continue
                if reply.id == i and reply.answer and not reply.flags & dns.flags.TC:
                    polite_ok += 1
                time.sleep(0.1)

        thread = threading.Thread(target=ask_politely)
        thread.start()
        started = time.monotonic()
        sent = 0
        while time.monotonic() - started < 2.0:  # about 2,000 qps for 2 s
            ahead = started + sent / 2000 - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            flood.sendto(wire, ("127.0.0.1", server.port))
            sent += 1
            full, truncated = _drain(flood, full, truncated)
        time.sleep(0.3)
        full, truncated = _drain(flood, full, truncated)
        thread.join()
        stop.set()
        elapsed = time.monotonic() - started
        assert sent > 1000
        assert full <= RATE * (elapsed + 0.5) * 1.1  # the bucket's half second, then the rate
        assert full >= RATE  # and not nothing
        assert truncated > 0.3 * (sent - full)  # slip 2: about every second limited reply
        assert polite_ok == polite_sent == 20

        # a truncated reply sends the client to TCP, where nothing is limited
        tcp = dns.query.tcp(dns.message.from_wire(wire), "127.0.0.1", port=server.port, timeout=5)
        assert tcp.rcode() == dns.rcode.NOERROR and tcp.answer
    finally:
        server.stop()


def test_a_slipped_notauth_keeps_the_opt_that_stood_before_its_tsig(responder: Responder) -> None:
    """Found by the fuzz harness: a NOTAUTH reply carries OPT, then TSIG; its slip keeps the OPT."""
    query = bytes.fromhex(
        "000101000001000000000002065f696d617073045f746370076578616d706c6503636f6d000021000100"
        "002904d0000000000000c00c00fa00ff00000000003d0b686d61632d73686132353600000000000001012c"
        "0020" + "00" * 32 + "123400000000"
    )
    replies = [responder.respond(query, False, "192.0.2.9") for _ in range(8)]
    slipped = [r for r in replies if r is not None and r[2] & 0x02]
    assert slipped, "rate limiting slipped nothing"
    message = dns.message.from_wire(slipped[0], keyring=False)
    assert message.rcode() == dns.rcode.NOTAUTH and message.edns == 0
    assert message.flags & dns.flags.TC and not message.answer


def test_a_slipped_notauth_without_an_opt_gets_none(responder: Responder) -> None:
    """Found by the fuzzer: a TSIG record whose last octets look like an OPT's head must not
    turn into an OPT in the slipped reply of a query that had none."""
    query = bytes.fromhex(
        "002c01000001000000000001065f6503434f4d0000210001036b65790000fa00ff00000000003d0b680a"
        "6163343434343434343434343434cecdcdcd3232323232074558413b507c4503434f4d3232000000"
        "0e00010100000100000000002807006c6503e36f6d0032cb6135360000000000000100000100000"
        "00d0191010000ffffffffff3e01000000000000750000000021000100002904d0000000000000c000"
        "002900000000007400000cff00000000000012"
    )
    replies = [responder.respond(query, False, "192.0.2.9") for _ in range(8)]
    slipped = [r for r in replies if r is not None and r[2] & 0x02]
    assert slipped, "rate limiting slipped nothing"
    for reply in slipped:
        message = dns.message.from_wire(reply, keyring=False)
        assert message.edns < 0 and reply[10:12] == b"\x00\x00"  # no OPT, ARCOUNT 0


def test_reply_key_is_the_bucket_key_of_the_replys_kind() -> None:
    from srvd.answer.outcome import QUERY_CELLS, SERVICE_CELLS

    zone = b"\x04_tcp\x07example\x03com\x00"
    for cell in range(QUERY_CELLS):
        for service in range(-1, SERVICE_CELLS):
            expected = bucket_key(kind_of(cell, service), zone)
            assert reply_key(cell, service, zone) == expected, (cell, service)


def test_a_compact_answer_is_limited_as_an_nxdomain() -> None:
    """RFC 9824: a DO=1 question for a name that does not exist gets NOERROR on the wire (the
    query cell) but counts as nxdomain by service: its bucket is the zone's NXDOMAIN one."""
    from srvd.answer.outcome import C_NOERROR, NXDOMAIN_RESULT, QTYPE_ROW, SERVICE_OF

    zone = b"\x04_tcp\x07example\x03com\x00"
    service = SERVICE_OF[b"\x05_imap\x04_tcp"] + NXDOMAIN_RESULT
    cell = QTYPE_ROW[33 + 1] + C_NOERROR
    assert kind_of(cell, service) == K_NXDOMAIN
    assert reply_key(cell, service, zone) == bucket_key(K_NXDOMAIN, zone)
