"""Prometheus metrics: what every kind of query counts, the exposition, and /metrics on loopback.

The unit tests feed the responder of an SrvdService (built over a fake reactor: nothing bound)
crafted queries and scrape its collector (through the text exposition and prometheus_client's
parser, as Prometheus reads it). They hold srvd to the metric names and label values the README
promises, not to its internals; every test asserts which series moved and by how much, so a
counter that moves where it should not fails too. The
integration tests run ``srvd serve`` on loopback with ``--metrics 127.0.0.1:<free port>`` and read
/metrics over HTTP, across reloads.
"""

from __future__ import annotations

import itertools
import math
import os
import platform
import random
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.opcode
import dns.rdatatype
import dns.tsig
import pytest
import twisted
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address

import srvd
import srvd.server.responder
from srvd.config import Endpoint, load_config
from srvd.index.build import build_index
from srvd.ops.metrics import registry_for
from srvd.service import Options, SrvdService
from srvd.wire.discovery import SERVICE_KEYS

from conftest import EXAMPLE, RunningServer, free_port, require_tool, start_srvd

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "config" / "prometheus" / "alerts.yml"

BUILD = {
    "version": srvd.__version__,
    "python": platform.python_version(),
    "twisted": twisted.__version__,
}

# The label values srvd promises (README, Monitoring): fixed sets, whatever the traffic.
TRANSPORTS = ("udp", "tcp")
QTYPES = ("SRV", "TXT", "A", "AAAA", "SOA", "NS", "ANY", "AXFR", "IXFR", "other")
RCODES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "NOTAUTH", "BADVERS")
SERVICES = (*SERVICE_KEYS, "axigen", "other")
RESULTS = ("answer", "nodata", "nxdomain")
TIMING_SAMPLE = 16  # "measured on one query in 16"

# The families that count queries: every test asserts exactly how these moved.
COUNTING = (
    "srvd_queries_total",
    "srvd_service_queries_total",
    "srvd_queries_dropped_total",
    "srvd_responses_truncated_total",
    "srvd_internal_errors_total",
)


# ---------------------------------------------------------------------------------------------
# Scraping


def series_key(name: str, labels: dict[str, str]) -> str:
    """``name{a="1",b="2"}`` with labels sorted: readable in assertion diffs."""
    if not labels:
        return name
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


class Scrape:
    """One text exposition, parsed the way Prometheus reads it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.types: dict[str, str] = {}
        self.samples: dict[str, float] = {}
        self.labels: dict[str, list[dict[str, str]]] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                key = series_key(sample.name, sample.labels)
                assert key not in self.samples, f"duplicate series {key}"
                self.samples[key] = sample.value
                self.labels.setdefault(sample.name, []).append(dict(sample.labels))

    def __call__(self, name: str, **labels: str) -> float:
        """The value of one series; KeyError when it is not exposed at all."""
        return self.samples[series_key(name, labels)]

    def series(self, name: str) -> list[dict[str, str]]:
        return self.labels.get(name, [])

    def moved(self, before: Scrape, families: tuple[str, ...] = COUNTING) -> dict[str, float]:
        """The series of ``families`` whose value changed since ``before``, and by how much."""
        out = {}
        for key, value in self.samples.items():
            name = key.split("{", 1)[0]
            if name in families and value != before.samples.get(key, 0.0):
                out[key] = value - before.samples.get(key, 0.0)
        return out

    def histogram(self, name: str) -> tuple[list[tuple[float, float]], float, float]:
        """(cumulative buckets sorted by bound, count, sum) of a label-less histogram."""
        buckets = sorted(
            (float(labels["le"]), self(f"{name}_bucket", **labels))
            for labels in self.series(f"{name}_bucket")
        )
        return buckets, self(f"{name}_count"), self(f"{name}_sum")


class FakePort:
    def __init__(self, host: str, port: int) -> None:
        self.address = IPv4Address("TCP", host, port)

    def getHost(self) -> IPv4Address:
        return self.address

    def stopListening(self) -> None:
        pass


class FakeReactor:
    """Records listenTCP: nothing is bound."""

    def __init__(self) -> None:
        self.listened: list[tuple[int, str]] = []

    def listenTCP(self, port: int, factory: object, interface: str = "") -> FakePort:
        self.listened.append((port, interface))
        return FakePort(interface, port)


class Harness:
    """srvd's service over a configuration (nothing bound, no reactor running): its responder
    fed directly, and its snapshot collected and exposed as Prometheus reads it."""

    def __init__(self, config_path: Path | str) -> None:
        self.config = load_config(config_path)
        self.service = SrvdService(self.config, FakeReactor(), rng=random.Random(7))
        self.responder = self.service.responder
        self.registry = registry_for(self.service.snapshot)
        self.replies: list[bytes] = []

    def scrape(self) -> Scrape:
        return Scrape(generate_latest(self.registry).decode())

    def send(self, query: bytes, tcp: bool = False) -> bytes | None:
        reply = self.responder.respond(query, tcp)
        if reply is not None:
            self.replies.append(reply)
        return reply


@pytest.fixture
def example() -> Harness:
    return Harness(EXAMPLE)


BIG_TEXT = "v=big " + "x" * 1500


@pytest.fixture
def big(tmp_path: Path) -> Harness:
    """One domain whose ``_imaps._tcp`` TXT does not fit a UDP reply."""
    path = tmp_path / "big.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "zone": {"nameservers": ["ns1.example.net"], "hostmaster": "hm@example.net"},
                "profiles": {
                    "big": {
                        "imaps": {"target": "imap.example.net", "port": 993},
                        "txt": {"_imaps._tcp": [BIG_TEXT]},
                    }
                },
                "domains": {"big.example": "big"},
            }
        )
    )
    return Harness(path)


# ---------------------------------------------------------------------------------------------
# Queries


def make(
    name: str,
    rdtype: str | int = "SRV",
    *,
    edns: int | bool = False,
    rdclass: str = "IN",
) -> bytes:
    if isinstance(rdtype, int):
        rdtype = dns.rdatatype.RdataType.make(rdtype)
    q = dns.message.make_query(name, rdtype, rdclass, use_edns=edns)
    return q.to_wire()


def with_opcode(opcode: dns.opcode.Opcode) -> bytes:
    q = dns.message.make_query("_tcp.example.com", "SOA")
    q.set_opcode(opcode)
    return q.to_wire()


def with_tsig() -> bytes:
    q = dns.message.make_query("_imaps._tcp.example.com", "SRV")
    q.use_tsig(dns.tsig.Key("srvd-test-key.", b"0123456789abcdef", dns.tsig.HMAC_SHA256))
    return q.to_wire()


def as_response() -> bytes:
    q = bytearray(make("_imaps._tcp.example.com"))
    q[2] |= 0x80  # QR=1
    return bytes(q)


NO_QUESTION = struct.pack("!HHHHHH", 0x1234, 0x0100, 0, 0, 0, 0)


def q(transport: str, qtype: str, rcode: str, n: float = 1) -> tuple[str, float]:
    return series_key(
        "srvd_queries_total", {"transport": transport, "qtype": qtype, "rcode": rcode}
    ), n


def svc(service: str, result: str, n: float = 1) -> tuple[str, float]:
    return series_key("srvd_service_queries_total", {"service": service, "result": result}), n


def dropped(reason: str) -> tuple[str, float]:
    return series_key("srvd_queries_dropped_total", {"reason": reason}), 1


TRUNCATED = ("srvd_responses_truncated_total", 1.0)

# id: (query, over TCP, the series that must move by exactly this much, nothing else, rcode)
CASES: dict[str, tuple[Callable[[], bytes], bool, list[tuple[str, float]], int | None]] = {
    "srv-answer": (
        lambda: make("_imaps._tcp.example.com"),
        False,
        [q("udp", "SRV", "NOERROR"), svc("imaps", "answer")],
        0,
    ),
    "srv-answer-mixed-case": (
        lambda: make("_IMAPS._Tcp.Example.COM"),
        False,
        [q("udp", "SRV", "NOERROR"), svc("imaps", "answer")],
        0,
    ),
    "srv-answer-tcp": (
        lambda: make("_submissions._tcp.example.org"),
        True,
        [q("tcp", "SRV", "NOERROR"), svc("submissions", "answer")],
        0,
    ),
    "srv-answer-edns": (
        lambda: make("_jmap._tcp.example.com", edns=0),
        False,
        [q("udp", "SRV", "NOERROR"), svc("jmap", "answer")],
        0,
    ),
    "srv-off-is-an-answer": (  # pop3: off publishes the "." record
        lambda: make("_pop3._tcp.example.com"),
        False,
        [q("udp", "SRV", "NOERROR"), svc("pop3", "answer")],
        0,
    ),
    "txt-answer": (
        lambda: make("_imaps._tcp.example.com", "TXT"),
        False,
        [q("udp", "TXT", "NOERROR"), svc("imaps", "answer")],
        0,
    ),
    "axigen-txt": (
        lambda: make("_axigen.example.com", "TXT"),
        False,
        [q("udp", "TXT", "NOERROR"), svc("axigen", "answer")],
        0,
    ),
    "axigen-nodata": (
        lambda: make("_axigen.shop.example", "A"),
        False,
        [q("udp", "A", "NOERROR"), svc("axigen", "nodata")],
        0,
    ),
    "apex-soa": (
        lambda: make("_tcp.example.com", "SOA"),
        False,
        [q("udp", "SOA", "NOERROR"), svc("other", "answer")],
        0,
    ),
    "apex-ns": (
        lambda: make("_tcp.example.com", "NS"),
        False,
        [q("udp", "NS", "NOERROR"), svc("other", "answer")],
        0,
    ),
    "other-srv-owner": (
        lambda: make("_xmpp-client._tcp.example.com"),
        False,
        [q("udp", "SRV", "NOERROR"), svc("other", "answer")],
        0,
    ),
    "nxdomain-known-service": (
        lambda: make("_caldav._tcp.example.com"),
        False,
        [q("udp", "SRV", "NXDOMAIN"), svc("caldav", "nxdomain")],
        3,
    ),
    "nxdomain-unknown-service": (
        lambda: make("_nothing._tcp.example.com"),
        False,
        [q("udp", "SRV", "NXDOMAIN"), svc("other", "nxdomain")],
        3,
    ),
    "nodata": (
        lambda: make("_imaps._tcp.example.com", "A"),
        False,
        [q("udp", "A", "NOERROR"), svc("imaps", "nodata")],
        0,
    ),
    "nodata-aaaa-tcp": (
        lambda: make("_imaps._tcp.example.com", "AAAA"),
        True,
        [q("tcp", "AAAA", "NOERROR"), svc("imaps", "nodata")],
        0,
    ),
    "any": (
        lambda: make("_imaps._tcp.example.com", "ANY"),
        False,
        [q("udp", "ANY", "NOERROR"), svc("imaps", "answer")],
        0,
    ),
    "refused-no-underscore": (
        lambda: make("www.example.com", "A"),
        False,
        [q("udp", "A", "REFUSED")],
        5,
    ),
    "refused-unknown-domain": (
        lambda: make("_imaps._tcp.unknown.example"),
        False,
        [q("udp", "SRV", "REFUSED")],
        5,
    ),
    "refused-root-soa": (
        lambda: make(".", "SOA"),
        False,
        [q("udp", "SOA", "REFUSED")],
        5,
    ),
    "refused-chaos-class": (
        lambda: make("version.bind", "TXT", rdclass="CH"),
        False,
        [q("udp", "TXT", "REFUSED")],
        5,
    ),
    "axfr-udp-notimp": (
        lambda: make("_tcp.example.com", "AXFR"),
        False,
        [q("udp", "AXFR", "NOTIMP")],
        4,
    ),
    "axfr-tcp-refused": (
        lambda: make("_tcp.example.com", "AXFR"),
        True,
        [q("tcp", "AXFR", "REFUSED")],
        5,
    ),
    "ixfr-tcp-refused": (
        lambda: make("_tcp.example.com", "IXFR"),
        True,
        [q("tcp", "IXFR", "REFUSED")],
        5,
    ),
    "formerr-no-question": (lambda: NO_QUESTION, False, [q("udp", "other", "FORMERR")], 1),
    "formerr-truncated-question": (
        lambda: make("_imaps._tcp.example.com")[:-3],
        False,
        [q("udp", "other", "FORMERR")],
        1,
    ),
    "notimp-opcode-notify": (
        lambda: with_opcode(dns.opcode.NOTIFY),
        False,
        [q("udp", "other", "NOTIMP")],
        4,
    ),
    "notimp-opcode-update-tcp": (
        lambda: with_opcode(dns.opcode.UPDATE),
        True,
        [q("tcp", "other", "NOTIMP")],
        4,
    ),
    "badvers": (
        lambda: make("_imaps._tcp.example.com", edns=1),
        False,
        [q("udp", "SRV", "BADVERS")],
        None,  # extended rcode: 16 (low 4 bits 0, high bits in the OPT record)
    ),
    "tsig-notauth": (lambda: with_tsig(), False, [q("udp", "SRV", "NOTAUTH")], 9),
    "unknown-type-mx": (
        lambda: make("_imaps._tcp.example.com", "MX"),
        False,
        [q("udp", "other", "NOERROR"), svc("imaps", "nodata")],
        0,
    ),
    "unknown-type-https-refused": (
        lambda: make("example.com", "HTTPS"),
        False,
        [q("udp", "other", "REFUSED")],
        5,
    ),
    "unknown-type-65534": (
        lambda: make("_imaps._tcp.example.com", 65534),
        False,
        [q("udp", "other", "NOERROR"), svc("imaps", "nodata")],
        0,
    ),
    "short": (lambda: b"\x12\x34\x01\x00\x00", False, [dropped("short")], None),
    "empty": (lambda: b"", False, [dropped("short")], None),
    "short-tcp": (lambda: b"\x12\x34\x01", True, [dropped("short")], None),
    "response": (as_response, False, [dropped("response")], None),
    "response-tcp": (as_response, True, [dropped("response")], None),
}

NO_REPLY = {"short", "empty", "short-tcp", "response", "response-tcp"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_kind_of_query_moves_exactly_its_counters(example: Harness, case: str) -> None:
    build, tcp, expected, rcode = CASES[case]
    query = build()
    before = example.scrape()
    reply = example.send(query, tcp)
    after = example.scrape()

    assert after.moved(before) == dict(expected)
    if case in NO_REPLY:
        assert reply is None
    else:
        assert reply is not None
        assert reply[2] & 0x80, "a reply has QR=1"
        if rcode is not None:
            assert reply[3] & 0x0F == rcode
    # replies are sized; the processing time is sampled (one query in TIMING_SAMPLE)
    timed = after("srvd_query_duration_seconds_count") - before("srvd_query_duration_seconds_count")
    assert timed in (0, 1)
    sized = after("srvd_response_size_bytes_count") - before("srvd_response_size_bytes_count")
    grown = after("srvd_response_size_bytes_sum") - before("srvd_response_size_bytes_sum")
    assert (sized, grown) == ((0, 0) if reply is None else (1, len(reply)))


def test_truncation_over_udp_is_counted_and_tcp_gets_the_whole_answer(big: Harness) -> None:
    families = ("srvd_queries_total", "srvd_responses_truncated_total")
    query = make("_imaps._tcp.big.example", "TXT")
    s0 = big.scrape()
    udp = big.send(query)
    s1 = big.scrape()
    assert udp is not None and udp[2] & 0x02, "the UDP reply has TC=1"
    assert s1.moved(s0, families) == dict([q("udp", "TXT", "NOERROR"), TRUNCATED])

    edns = big.send(make("_imaps._tcp.big.example", "TXT", edns=0))  # 1232 is still too small
    s2 = big.scrape()
    assert edns is not None and edns[2] & 0x02
    assert s2.moved(s1, families) == dict([q("udp", "TXT", "NOERROR"), TRUNCATED])

    tcp = big.send(query, tcp=True)
    s3 = big.scrape()
    assert tcp is not None and not tcp[2] & 0x02 and len(tcp) > 1500
    assert s3.moved(s2, families) == dict([q("tcp", "TXT", "NOERROR")])
    assert s3.moved(s2, ("srvd_service_queries_total",)) == dict([svc("imaps", "answer")])
    # the SRV beside it fits: no truncation
    big.send(make("_imaps._tcp.big.example"))
    s4 = big.scrape()
    assert s4.moved(s3, families) == dict([q("udp", "SRV", "NOERROR")])
    assert s4("srvd_response_size_bytes_sum") == sum(len(r) for r in big.replies)


def test_a_truncated_answer_counts_as_an_answer_not_nodata(big: Harness) -> None:
    """TC=1 says the data exists but did not fit; the client retries over TCP. Counting it as
    NODATA would put every large answer among the misses ("Misses by service" panel)."""
    before = big.scrape()
    reply = big.send(make("_imaps._tcp.big.example", "TXT"))
    assert reply is not None and reply[2] & 0x02
    after = big.scrape()
    assert after.moved(before, ("srvd_service_queries_total",)) == dict([svc("imaps", "answer")])


def test_an_internal_error_answers_servfail_and_is_counted(
    example: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(srvd.server.responder, "lean_answer", broken)
    monkeypatch.setattr(srvd.server.responder, "entry_for", broken)
    before = example.scrape()
    query = make("_imaps._tcp.example.com")
    reply = example.send(query)
    tcp_reply = example.send(query, tcp=True)
    after = example.scrape()

    for r in (reply, tcp_reply):
        assert r is not None
        assert r[:2] == query[:2] and r[2] & 0x80 and r[3] & 0x0F == 2  # SERVFAIL
    assert after.moved(before) == {
        q("udp", "other", "SERVFAIL")[0]: 1,
        q("tcp", "other", "SERVFAIL")[0]: 1,
        "srvd_internal_errors_total": 2,
    }
    assert example.responder.failures == 2


@pytest.mark.parametrize("message", [b"\x00\x01", as_response()], ids=["short", "response"])
def test_a_failure_on_a_message_that_gets_no_reply_is_still_a_drop(
    example: Harness, monkeypatch: pytest.MonkeyPatch, message: bytes
) -> None:
    """The guard in Responder.respond must hold for every message: when answering fails and no
    SERVFAIL may be sent (a response), the message is a drop and an internal error. A short
    message is dropped before any answering code runs, so nothing can fail on it."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(srvd.server.responder, "lean_answer", broken)
    monkeypatch.setattr(srvd.server.responder, "entry_for", broken)
    before = example.scrape()
    assert example.send(message) is None
    assert example.send(message, tcp=True) is None
    short = len(message) < 12
    moved = {dropped("short" if short else "response")[0]: 2}
    if not short:
        moved["srvd_internal_errors_total"] = 2
    assert example.scrape().moved(before) == moved


def run_every_case(harness: Harness) -> None:
    for build, tcp, _, _ in CASES.values():
        harness.send(build(), tcp)


def test_response_size_histogram_matches_the_replies(example: Harness, big: Harness) -> None:
    for harness in (example, big):
        run_every_case(harness)
        harness.send(make("_imaps._tcp.big.example", "TXT"), tcp=True)
        harness.send(make("_imaps._tcp.big.example", "TXT", edns=0))
        scrape = harness.scrape()
        assert scrape.types["srvd_response_size_bytes"] == "histogram"
        buckets, count, total = scrape.histogram("srvd_response_size_bytes")
        sizes = [len(r) for r in harness.replies]
        bounds = [b for b, _ in buckets]
        assert bounds == sorted(bounds) and bounds[-1] == math.inf
        assert 512 in bounds and 1232 in bounds  # the UDP limits: with and without EDNS
        for bound, cumulative in buckets:
            assert cumulative == sum(1 for s in sizes if s <= bound), bound
        assert count == len(sizes) == buckets[-1][1]
        assert total == sum(sizes)


SIZES = (64, 65, 128, 129, 256, 257, 511, 512, 513, 768, 1024, 1232, 1233, 1536, 2048, 2049)


@pytest.fixture
def sized(tmp_path: Path) -> tuple[Harness, dict[int, bytes]]:
    """A configuration with one TXT owner per reply size in SIZES, and the queries for them."""

    def config(lengths: dict[int, int]) -> Path:
        path = tmp_path / "sized.yaml"
        txt = {f"_s{size:05d}._tcp": ["x" * length] for size, length in lengths.items()}
        path.write_text(
            yaml.safe_dump(
                {
                    "zone": {"nameservers": ["ns1.example.net"], "hostmaster": "hm@example.net"},
                    "profiles": {"p": {"txt": txt}},
                    "domains": {"sized.example": "p"},
                }
            )
        )
        return path

    queries = {size: make(f"_s{size:05d}._tcp.sized.example", "TXT") for size in SIZES}
    probe = Harness(config(dict.fromkeys(SIZES, 1)))
    lengths = {}
    for size, query in queries.items():
        reply = probe.send(query, tcp=True)
        assert reply is not None
        # one octet of text adds one octet, and one more every 255 (the character-string length)
        length = 1
        while len(reply) + (length - 1) + (length - 1) // 255 < size:
            length += 1
        lengths[size] = length
    harness = Harness(config(lengths))
    for size, query in queries.items():
        reply = harness.send(query, tcp=True)
        assert reply is not None and len(reply) == size
    harness.replies.clear()
    return harness, queries


def test_response_size_buckets_are_le_at_the_boundaries(
    sized: tuple[Harness, dict[int, bytes]],
) -> None:
    """A reply of exactly a bucket's bound counts in that bucket (Prometheus's le), one octet more
    in the next."""
    harness, queries = sized
    for size, query in queries.items():
        before = harness.scrape()
        harness.send(query, tcp=True)
        after = harness.scrape()
        moved = after.moved(before, ("srvd_response_size_bytes_bucket",))
        bounds = sorted(float(key.split('le="')[1].rstrip('"}')) for key in moved)
        assert set(moved.values()) == {1}
        assert bounds[0] >= size and bounds[-1] == math.inf
        below = [b for b, _ in before.histogram("srvd_response_size_bytes")[0] if b < bounds[0]]
        assert not below or below[-1] < size, (size, bounds[0])
        if size in (64, 128, 256, 512, 768, 1024, 1232, 1536, 2048):
            assert bounds[0] == size


def test_query_duration_is_sampled_and_plausible(example: Harness) -> None:
    n = 20 * TIMING_SAMPLE + 3
    for i in range(n):
        example.send(make(f"_imaps._tcp.example.{'com' if i % 2 else 'org'}"), tcp=i % 5 == 0)
    scrape = example.scrape()
    assert scrape.types["srvd_query_duration_seconds"] == "histogram"
    buckets, count, total = scrape.histogram("srvd_query_duration_seconds")
    assert count == math.ceil(n / TIMING_SAMPLE)  # the first query, then one in TIMING_SAMPLE
    assert sum(v for k, v in scrape.samples.items() if k.startswith("srvd_queries_total{")) == n
    assert buckets[0][0] == 1e-5  # from 10 µs
    assert buckets[-1] == (math.inf, count)
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(buckets))
    assert 0 < total < 0.1 * count  # well under 100 ms each, even on a slow machine
    assert next(c for b, c in buckets if b >= 0.1) == count  # none slower than 0.1 s


def test_unknown_qtypes_fold_into_other(example: Harness) -> None:
    before = example.scrape()
    # types srvd does not name: MX, CAA, HTTPS, SVCB, HINFO, NULL, private use, reserved 0
    folded = [15, 257, 65, 64, 13, 10, 65280, 65534, 0, 41]
    for rdtype in folded:
        query = bytearray(make("_imaps._tcp.example.com"))
        query[-4:-2] = struct.pack("!H", rdtype)
        example.send(bytes(query))
    after = example.scrape()
    moved = after.moved(before, ("srvd_queries_total",))
    assert set(moved) == {q("udp", "other", "NOERROR")[0]}
    assert sum(moved.values()) == len(folded)
    assert {labels["qtype"] for labels in after.series("srvd_queries_total")} == set(QTYPES)


def test_label_sets_are_bounded(example: Harness, tmp_path: Path) -> None:
    """The same series whatever the number of domains and queries: nothing per domain or client."""
    example.send(make("_imaps._tcp.example.com"))
    small = example.scrape()

    domains = {f"customer{i:04d}.example": "one" for i in range(300)}
    path = tmp_path / "many.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "zone": {"nameservers": ["ns1.example.net"], "hostmaster": "hm@example.net"},
                "profiles": {"one": {"imaps": {"target": "imap.example.net", "port": 993}}},
                "domains": domains,
            }
        )
    )
    many = Harness(path)
    rng = random.Random(42)
    labels = ["_imaps._tcp", "_caldav._tcp", "_x._tcp", "_tcp", "_axigen", "www", "_a._udp"]
    for i in range(3000):
        name = f"{rng.choice(labels)}.{rng.choice(list(domains))}"
        query = bytearray(make(name))
        query[-4:-2] = struct.pack("!H", rng.randrange(65536))
        if i % 50 == 0:
            query = bytearray(rng.randbytes(rng.randrange(40)))
        many.send(bytes(query), tcp=i % 3 == 0)
    large = many.scrape()

    def srvd_series(scrape: Scrape) -> set[str]:
        # srvd_config_info carries the configuration's hash: one series, whatever its value
        return {k.split("{sha256=")[0] for k in scrape.samples if k.startswith("srvd_")}

    assert srvd_series(small) == srvd_series(large)
    assert len(large.series("srvd_queries_total")) == len(TRANSPORTS) * len(QTYPES) * len(RCODES)
    assert len(large.series("srvd_service_queries_total")) == len(SERVICES) * len(RESULTS)
    assert len(large.series("srvd_queries_dropped_total")) == 2
    assert len(large.series("srvd_config_info")) == 1
    values = {v for n in large.labels for x in large.series(n) for v in x.values()}
    assert not any("example" in v or "customer" in v for v in values)
    assert len(large.samples) == len(small.samples)


def test_families_have_the_right_types_and_help(example: Harness) -> None:
    families = {f.name: f for f in example.registry.collect()}
    expected = {
        "srvd_queries": "counter",
        "srvd_service_queries": "counter",
        "srvd_queries_dropped": "counter",
        "srvd_responses_truncated": "counter",
        "srvd_response_size_bytes": "histogram",
        "srvd_query_duration_seconds": "histogram",
        "srvd_internal_errors": "counter",
        "srvd_udp_send_errors": "counter",
        "srvd_tcp_connections": "gauge",
        "srvd_tcp_connections_rejected": "counter",
        "srvd_tcp_connections_closed": "counter",
        "srvd_rrl_actions": "counter",
        "srvd_domains": "gauge",
        "srvd_zones": "gauge",
        "srvd_records": "gauge",
        "srvd_config_reloads": "counter",
        "srvd_config_last_reload_successful": "gauge",
        "srvd_config_last_reload_success_timestamp_seconds": "gauge",
        "srvd_config_reload_duration_seconds": "gauge",
        "srvd_index_generation": "gauge",
        "srvd_worker_generation": "gauge",
        "srvd_worker_cpu_seconds": "counter",
        "srvd_worker_resident_memory_bytes": "gauge",
        "srvd_worker_open_fds": "gauge",
        "srvd_worker_restarts": "counter",
        "srvd_config_info": "gauge",
        "srvd_build_info": "gauge",
    }
    srvd_families = {n: f.type for n, f in families.items() if n.startswith("srvd_")}
    assert srvd_families == expected
    assert all(f.documentation for f in families.values())
    assert "process_resident_memory_bytes" in example.scrape().samples


def test_gauges_come_from_the_index_and_the_configuration(example: Harness) -> None:
    scrape = example.scrape()
    stats = example.responder.index.stats
    # _tcp, _axigen and (http.pacc is on in the example) _ua-auto-config of each domain
    assert (stats.domains, stats.zones) == (3, 9)
    assert scrape("srvd_domains") == 3
    assert scrape("srvd_zones") == stats.zones
    assert scrape("srvd_records") == stats.records
    assert scrape("srvd_config_info", sha256=example.config.sha256) == 1
    assert scrape("srvd_build_info", **BUILD) == 1


def test_promtool_accepts_the_exposition(example: Harness, big: Harness) -> None:
    promtool = require_tool("promtool")
    run_every_case(example)
    for harness in (example, big):
        text = harness.scrape().text
        result = subprocess.run(
            [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
        )
        assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_promtool_accepts_the_alert_rules() -> None:
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, timeout=30
    )
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, output
    assert "SUCCESS: 8 rules found" in output


# ---------------------------------------------------------------------------------------------
# Where /metrics is served


MINIMAL = {"zone": {"nameservers": ["ns1.example.net"], "hostmaster": "hm@example.net"}}


def test_metrics_default_to_loopback_port_9153(tmp_path: Path) -> None:
    path = tmp_path / "srvd.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    for config in (load_config(path), load_config(EXAMPLE)):
        assert config.metrics == Endpoint("127.0.0.1", 9153)

    reactor = FakeReactor()
    service = SrvdService(load_config(path), reactor)
    assert service.metrics is not None
    assert service.metrics.endpoint == Endpoint("127.0.0.1", 9153)
    service.metrics.privilegedStartService()
    assert reactor.listened == [(9153, "127.0.0.1")]  # never the wildcard address
    assert service.metrics.bound == Endpoint("127.0.0.1", 9153)

    # --metrics overrides the configured address; --metrics off turns it off
    assert SrvdService(load_config(path), FakeReactor(), metrics_at=False).metrics is None
    other = SrvdService(load_config(path), FakeReactor(), metrics_at=Endpoint("127.0.0.1", 1))
    assert other.metrics is not None and other.metrics.endpoint == Endpoint("127.0.0.1", 1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("off", None),
        ("false", None),
        ('"off"', None),  # the error message offers 'off': the string works too
        ("127.0.0.1:9999", Endpoint("127.0.0.1", 9999)),
        ('"[::1]:9153"', Endpoint("::1", 9153)),
        ("127.0.0.1", Endpoint("127.0.0.1", 9153)),  # no port: the metrics port, not 53
        ("0.0.0.0", Endpoint("0.0.0.0", 9153)),
    ],
)
def test_metrics_key_in_the_configuration(
    tmp_path: Path, value: str, expected: Endpoint | None
) -> None:
    path = tmp_path / "srvd.yaml"
    path.write_text(yaml.safe_dump(MINIMAL) + f"metrics: {value}\n")
    assert load_config(path).metrics == expected
    service = SrvdService(load_config(path), FakeReactor())
    assert (service.metrics is None) == (expected is None)


@pytest.mark.parametrize("off", ["key", "option"])
def test_metrics_off_counts_nothing(tmp_path: Path, off: str) -> None:
    """README: metrics off turns them and all counting off; the answers stay the same."""
    if off == "key":
        path = tmp_path / "srvd.yaml"
        path.write_text(EXAMPLE.read_text() + "metrics: off\n")
        service = SrvdService(load_config(path), FakeReactor())
    else:
        service = SrvdService(load_config(EXAMPLE), FakeReactor(), metrics_at=False)
    assert service.metrics is None
    counted = Harness(EXAMPLE)
    quiet = registry_for(service.snapshot)
    before = Scrape(generate_latest(quiet).decode())
    for build, tcp, _, _ in CASES.values():
        query = build()
        reply = service.responder.respond(query, tcp)
        reference = counted.send(query, tcp)
        assert (reply is None) == (reference is None)
        assert reply is None or reference is None or len(reply) == len(reference)
    assert Scrape(generate_latest(quiet).decode()).moved(before) == {}
    assert counted.scrape().moved(before) != {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("off", False),
        ("127.0.0.1:9999", Endpoint("127.0.0.1", 9999)),
        ("[::1]:9153", Endpoint("::1", 9153)),
        ("127.0.0.1", Endpoint("127.0.0.1", 9153)),  # no port: the metrics port, not 53
    ],
)
def test_metrics_option(value: str, expected: Endpoint | bool) -> None:
    options = Options()
    options.opt_metrics(value)
    assert options["metrics"] == expected


# ---------------------------------------------------------------------------------------------
# /metrics over HTTP on loopback

HEAD = """
zone:
  nameservers: [ns1.example.net]
  hostmaster: hostmaster@example.net
state_dir: state
profiles:
  one:
    imaps: {target: imap1.example.net, port: 993}
    txt:
      _imaps._tcp: ["v=one"]
  two:
    imaps: {target: imap2.example.net, port: 993}
    caldavs: {target: dav.example.net, port: 443, path: /dav/}
"""


def write_config(path: Path, domains: dict[str, str]) -> None:
    text = HEAD + "domains:\n" + "".join(f"  {d}: {p}\n" for d, p in domains.items())
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def fetch(port: int, path: str = "/metrics", timeout: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return str(response.read().decode())


def scrape_http(port: int) -> Scrape:
    return Scrape(fetch(port))


def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def udp_ask(port: int, wire: bytes, expect_reply: bool = True) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.sendto(wire, ("127.0.0.1", port))
        if not expect_reply:
            return None
        return sock.recv(65535)


def tcp_ask(sock: socket.socket, wire: bytes) -> bytes:
    sock.sendall(struct.pack("!H", len(wire)) + wire)
    header = recv_exact(sock, 2)
    return recv_exact(sock, struct.unpack("!H", header)[0])


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def listening_sockets(pid: int | None = None) -> set[tuple[str, int]]:
    """(hex local address, port) of the TCP sockets listening, from /proc/net/tcp{,6}; only those
    of process ``pid`` when given."""
    inodes: set[str] | None = None
    if pid is not None:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                address, port_hex = fields[1].rsplit(":", 1)
                if fields[3] == "0A" and (inodes is None or fields[9] in inodes):  # LISTEN
                    found.add((address, int(port_hex, 16)))
    return found


LOOPBACK = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RunningServer, int, Path]]:
    config = tmp_path / "srvd.yaml"
    write_config(config, {"a.example": "one", "b.example": "one"})
    metrics_port = free_port()
    server = start_srvd(config, "--metrics", f"127.0.0.1:{metrics_port}")
    try:
        wait_for(lambda: _serves(metrics_port))
        yield server, metrics_port, config
    finally:
        code = server.stop()
        assert code == 0, server.log()


def _serves(port: int) -> bool:
    try:
        fetch(port, timeout=1.0)
    except OSError:
        return False
    return True


def test_metrics_over_http_count_the_queries_sent(
    served: tuple[RunningServer, int, Path],
) -> None:
    server, mport, _ = served
    # DNS and /metrics, both on 127.0.0.1 only
    assert listening_sockets(server.process.pid) == {(LOOPBACK, server.port), (LOOPBACK, mport)}
    assert f"metrics on http://127.0.0.1:{mport}/metrics" in server.log()
    before = scrape_http(mport)  # after start_srvd's own probe queries

    for _ in range(5):
        udp_ask(server.port, make("_imaps._tcp.a.example"))
    for _ in range(3):
        udp_ask(server.port, make("_caldavs._tcp.b.example"))
    for _ in range(2):
        udp_ask(server.port, make("_imaps._tcp.a.example", "A"))
    udp_ask(server.port, make("_imaps._tcp.nowhere.example"))
    udp_ask(server.port, make("_imaps._tcp.a.example", "MX", edns=1))
    with socket.create_connection(("127.0.0.1", server.port), timeout=2.0) as sock:
        for _ in range(4):
            tcp_ask(sock, make("_imaps._tcp.b.example"))
        tcp_ask(sock, make("_imaps._tcp.b.example", "TXT"))
        during = scrape_http(mport)
        assert during("srvd_tcp_connections") == 1
    udp_ask(server.port, b"\x00\x01\x02", expect_reply=False)
    udp_ask(server.port, as_response(), expect_reply=False)
    wait_for(lambda: scrape_http(mport)("srvd_queries_dropped_total", reason="response") == 1)
    wait_for(lambda: scrape_http(mport)("srvd_tcp_connections") == 0)
    after = scrape_http(mport)

    assert after.moved(before) == {
        **dict([q("udp", "SRV", "NOERROR", 5), svc("imaps", "answer", 5 + 4 + 1)]),
        **dict([q("udp", "SRV", "NXDOMAIN", 3), svc("caldavs", "nxdomain", 3)]),
        **dict([q("udp", "A", "NOERROR", 2), svc("imaps", "nodata", 2)]),
        **dict([q("udp", "SRV", "REFUSED")]),
        **dict([q("udp", "other", "BADVERS")]),
        **dict([q("tcp", "SRV", "NOERROR", 4), q("tcp", "TXT", "NOERROR")]),
        **dict([dropped("short"), dropped("response")]),
    }
    sent = 5 + 3 + 2 + 1 + 1 + 4 + 1
    for name in ("srvd_response_size_bytes_count", "srvd_response_size_bytes_bucket"):
        labels = {"le": "+Inf"} if name.endswith("bucket") else {}
        assert after(name, **labels) - before(name, **labels) == sent
    timed = after("srvd_query_duration_seconds_count") - before("srvd_query_duration_seconds_count")
    assert 1 <= timed <= math.ceil(sent / TIMING_SAMPLE) + 1
    assert after("srvd_internal_errors_total") == 0
    assert after("srvd_udp_send_errors_total") == 0
    assert after("srvd_tcp_connections_rejected_total") == 0
    assert "process_cpu_seconds_total" in after.samples


def test_gauges_and_reloads_over_http(served: tuple[RunningServer, int, Path]) -> None:
    server, mport, config = served

    def expect_config(scrape: Scrape, path: Path) -> None:
        loaded = load_config(path)
        stats = build_index(loaded).stats
        assert scrape("srvd_domains") == stats.domains
        assert scrape("srvd_zones") == stats.zones
        assert scrape("srvd_records") == stats.records
        assert scrape.series("srvd_config_info") == [{"sha256": loaded.sha256}]

    first = scrape_http(mport)
    first_sha = load_config(config).sha256
    expect_config(first, config)
    assert (first("srvd_domains"), first("srvd_zones")) == (2, 2)
    assert first("srvd_config_reloads_total", result="success") == 0
    assert first("srvd_config_reloads_total", result="failure") == 0
    assert first("srvd_config_last_reload_successful") == 1
    started = first("srvd_config_last_reload_success_timestamp_seconds")
    assert abs(started - time.time()) < 60
    assert first("srvd_build_info", **BUILD) == 1

    # more domains: the gauges follow, the hash changes
    time.sleep(0.05)
    write_config(
        config, {"a.example": "one", "b.example": "one", "c.example": "two", "d.example": "two"}
    )
    server.process.send_signal(signal.SIGHUP)
    wait_for(lambda: scrape_http(mport)("srvd_config_reloads_total", result="success") == 1)
    second = scrape_http(mport)
    expect_config(second, config)
    second_sha = load_config(config).sha256
    assert second_sha != first_sha
    assert (second("srvd_domains"), second("srvd_zones")) == (4, 4)
    assert second("srvd_config_last_reload_successful") == 1
    assert second("srvd_config_reloads_total", result="failure") == 0
    assert second("srvd_config_last_reload_success_timestamp_seconds") > started
    assert 0 < second("srvd_config_reload_duration_seconds") < 10
    assert udp_ask(server.port, make("_caldavs._tcp.d.example")) is not None

    # a broken configuration: nothing served changes, the failure shows
    good = config.read_text()
    config.write_text(good + "  broken: [\n")
    server.process.send_signal(signal.SIGHUP)
    wait_for(lambda: scrape_http(mport)("srvd_config_reloads_total", result="failure") == 1)
    third = scrape_http(mport)
    assert third("srvd_config_last_reload_successful") == 0
    assert third("srvd_config_reloads_total", result="success") == 1
    assert (third("srvd_domains"), third("srvd_zones")) == (4, 4)
    assert third("srvd_records") == second("srvd_records")
    assert third.series("srvd_config_info") == [{"sha256": second_sha}]  # what is served
    assert third("srvd_config_last_reload_success_timestamp_seconds") == second(
        "srvd_config_last_reload_success_timestamp_seconds"
    )

    # fixed again: successful, and the hash is the one of the same content as before
    config.write_text(good)
    server.process.send_signal(signal.SIGHUP)
    wait_for(lambda: scrape_http(mport)("srvd_config_reloads_total", result="success") == 2)
    fourth = scrape_http(mport)
    assert fourth("srvd_config_last_reload_successful") == 1
    assert fourth("srvd_config_reloads_total", result="failure") == 1
    assert fourth.series("srvd_config_info") == [{"sha256": second_sha}]


def test_scrapes_are_not_logged(served: tuple[RunningServer, int, Path]) -> None:
    """Prometheus scrapes every 15 s or so, forever: an access log line each would bury srvd's
    own log (MetricsService sets site.noisy = False for the same reason)."""
    server, mport, _ = served
    for _ in range(3):
        fetch(mport)
    time.sleep(0.2)
    assert "GET /metrics" not in server.log()


def test_config_info_hash_follows_the_file_content(tmp_path: Path) -> None:
    path = tmp_path / "srvd.yaml"
    write_config(path, {"a.example": "one"})
    first = load_config(path).sha256
    write_config(path, {"a.example": "one"})
    assert load_config(path).sha256 == first  # same bytes, same hash
    path.write_text(path.read_text() + "# a comment changes the file\n")
    assert load_config(path).sha256 != first
    assert len(first) == 64 and int(first, 16) >= 0

    # an included file is part of the configuration served
    extra = tmp_path / "more.yaml"
    extra.write_text("domains:\n  b.example: one\n")
    path.write_text(path.read_text() + "include: [more.yaml]\n")
    with_include = load_config(path).sha256
    extra.write_text("domains:\n  b.example: two\n")
    assert load_config(path).sha256 not in (with_include, first)


def test_live_scrape_passes_promtool(served: tuple[RunningServer, int, Path]) -> None:
    promtool = require_tool("promtool")
    server, mport, _ = served
    udp_ask(server.port, make("_imaps._tcp.a.example"))
    udp_ask(server.port, make("www.a.example"))
    text = fetch(mport)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_metrics_off_serves_nothing(tmp_path: Path) -> None:
    config = tmp_path / "srvd.yaml"
    mport = free_port()
    config.write_text(yaml.safe_dump({**MINIMAL, "metrics": f"127.0.0.1:{mport}"}))
    server = start_srvd(config, "--metrics", "off")
    try:
        assert udp_ask(server.port, make("_imaps._tcp.a.example")) is not None
        assert listening_sockets(server.process.pid) == {(LOOPBACK, server.port)}
        with pytest.raises(urllib.error.URLError):
            fetch(mport, timeout=2.0)
        assert "metrics on" not in server.log()
    finally:
        assert server.stop() == 0


def test_metrics_off_in_the_configuration_serves_nothing(tmp_path: Path) -> None:
    config = tmp_path / "srvd.yaml"
    config.write_text(yaml.safe_dump(MINIMAL) + "metrics: off\n")
    server = start_srvd(config)
    try:
        assert udp_ask(server.port, make("_tcp.a.example", "SOA")) is not None
        assert "metrics on" not in server.log()
        assert listening_sockets(server.process.pid) == {(LOOPBACK, server.port)}
    finally:
        assert server.stop() == 0
