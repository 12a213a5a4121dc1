"""``srvd health``: as a subprocess against a real srvd, and its reply checks on crafted replies."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import QTYPE, RR, DNSHeader, DNSQuestion, DNSRecord

from srvd.config import Endpoint, load_config
from srvd.ops.health import build_query, first_zone, judge, probe_plan, query_name, query_type

from conftest import EXAMPLE, ROOT, RunningServer, free_port, start_srvd

SOA = 6


def run_health(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "srvd", "health", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_srvd(EXAMPLE)
    yield running
    running.stop()


def test_healthy_with_the_first_zone_of_the_config(server: RunningServer) -> None:
    result = run_health("-c", str(EXAMPLE), "--server", f"127.0.0.1:{server.port}")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(
        f"srvd health: 127.0.0.1:{server.port}: _axigen.example.com. SOA: NOERROR, AA=1"
    )


def test_healthy_with_an_explicit_question(server: RunningServer) -> None:
    result = run_health(
        "--server", f"127.0.0.1:{server.port}", "--name", "_IMAPS._tcp.example.COM.",
        "--type", "srv",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "_imaps._tcp.example.com. SRV: NOERROR" in result.stdout


def test_a_refused_name_is_unhealthy(server: RunningServer) -> None:
    result = run_health("--server", f"127.0.0.1:{server.port}", "--name", "example.net")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"srvd health: 127.0.0.1:{server.port}: example.net. SOA: rcode REFUSED"
    ]


def test_nodata_and_nxdomain_are_unhealthy(server: RunningServer) -> None:
    at = f"127.0.0.1:{server.port}"
    nodata = run_health("--server", at, "--name", "_imaps._tcp.example.com", "--type", "A")
    assert nodata.returncode == 1
    assert nodata.stderr.strip().endswith("no A record in the answer (NODATA)")
    nxdomain = run_health("--server", at, "--name", "_nothing._tcp.example.com", "--type", "SRV")
    assert nxdomain.returncode == 1
    assert nxdomain.stderr.strip().endswith("rcode NXDOMAIN")


def test_wrong_port_is_unhealthy_after_a_retry() -> None:
    port = free_port()  # nothing listens: loopback answers with ICMP port unreachable
    result = run_health("-c", str(EXAMPLE), "--server", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"srvd health: 127.0.0.1:{port}: _axigen.example.com. SOA: Connection refused (2 attempts)"
    ]


def test_silence_times_out_once_per_attempt() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        started = time.monotonic()
        result = run_health(
            "--server", f"127.0.0.1:{port}", "--name", "_tcp.example.com", "--timeout", "0.3",
            "--retries", "2",
        )  # fmt: skip
        elapsed = time.monotonic() - started
        silent.settimeout(0)
        received = []
        while True:
            try:
                received.append(silent.recv(512))
            except BlockingIOError:
                break
    assert result.returncode == 1
    assert result.stderr.strip().endswith("no reply within 0.3 s (3 attempts)")
    assert elapsed >= 0.9
    assert len(received) == 3
    assert all(DNSRecord.parse(query).header.rd == 0 for query in received)


def test_a_stale_reply_is_skipped_and_a_wrong_answer_is_final() -> None:
    """A datagram with another ID is ignored (the wait goes on); a reply with the right ID but
    AA=0 ends the check at once, without a retry."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fake:
        fake.bind(("127.0.0.1", 0))
        port = fake.getsockname()[1]
        seen: list[bytes] = []

        def answer() -> None:
            fake.settimeout(10)
            data, peer = fake.recvfrom(512)
            seen.append(data)
            query = DNSRecord.parse(data)
            stale = DNSRecord(DNSHeader(id=(query.header.id + 1) % 65536, qr=1, aa=1), q=query.q)
            fake.sendto(stale.pack(), peer)
            reply = query.reply()  # dnslib's reply: QR=1, AA=1, RA=1
            reply.header.aa = 0
            reply.add_answer(*RR.fromZone("_tcp.example.com. 60 IN SOA a. b. 1 2 3 4 5"))
            fake.sendto(reply.pack(), peer)

        thread = threading.Thread(target=answer)
        thread.start()
        result = run_health("--server", f"127.0.0.1:{port}", "--name", "_tcp.example.com")
        thread.join()
    assert len(seen) == 1
    assert result.returncode == 1
    assert result.stderr.strip().endswith("the reply is not authoritative (AA=0)")


def _reply(qid: int = 7, name: str = "_tcp.example.com", qtype: int = SOA) -> DNSRecord:
    reply = DNSRecord(DNSHeader(id=qid, qr=1, aa=1), q=DNSQuestion(name, qtype))
    reply.add_answer(*RR.fromZone(f"{name}. 60 IN SOA a. b. 1 2 3 4 5"))
    return reply


def test_judge() -> None:
    assert judge(_reply().pack(), 7, "_tcp.example.com", SOA) is None
    assert judge(_reply(name="_TCP.Example.com").pack(), 7, "_tcp.example.com", SOA) is None
    assert judge(_reply().pack(), 8, "_tcp.example.com", SOA) == (
        "the reply has ID 7, not the query's 8"
    )
    query = build_query("_tcp.example.com", SOA, 7)
    assert judge(query, 7, "_tcp.example.com", SOA) == "the reply has QR=0 (it is not a response)"
    assert judge(b"\x00\x07\x84", 7, "_tcp.example.com", SOA) is not None  # truncated header
    other = _reply(name="_tcp.example.org")
    assert judge(other.pack(), 7, "_tcp.example.com", SOA) == (
        "the reply is for another question (_tcp.example.org. SOA)"
    )
    servfail = _reply()
    servfail.header.rcode = 2
    assert judge(servfail.pack(), 7, "_tcp.example.com", SOA) == "rcode SERVFAIL"
    truncated = _reply()
    truncated.header.tc = 1
    assert judge(truncated.pack(), 7, "_tcp.example.com", SOA) == "the reply is truncated (TC=1)"
    wrong_type = DNSRecord(DNSHeader(id=7, qr=1, aa=1), q=DNSQuestion("_tcp.example.com", SOA))
    wrong_type.add_answer(*RR.fromZone("_tcp.example.com. 60 IN NS ns1.example.net."))
    assert judge(wrong_type.pack(), 7, "_tcp.example.com", SOA) == (
        "no SOA record in the answer (NODATA)"
    )


def test_question_parsing() -> None:
    assert query_type("srv") == QTYPE.SRV
    assert query_type("TYPE65") == 65
    assert query_type("16") == 16
    for bad in ("nonsense", "0", "TYPE70000", ""):
        with pytest.raises(ValueError):
            query_type(bad)
    assert query_name("_TCP.Bücher.example.") == "_tcp.xn--bcher-kva.example"
    for bad in ("", ".", "a..b", "x" * 64 + ".example", ("x" * 60 + ".") * 5):
        with pytest.raises(ValueError):
            query_name(bad)


def test_first_zone(tmp_path: Path) -> None:
    assert first_zone(load_config(str(EXAMPLE))) == "_axigen.example.com"
    config = tmp_path / "srvd.yaml"
    config.write_text(
        "zone: {nameservers: [ns1.example.net]}\n"
        "profiles: {none: {}, mail: {imaps: {target: imap.example.net, port: 993}}}\n"
        "domains: {empty.example: none, b.example: mail}\n"
    )
    assert first_zone(load_config(str(config))) == "_tcp.b.example"
    config.write_text("zone: {nameservers: [ns1.example.net]}\ndomains: {}\n")
    assert first_zone(load_config(str(config))) is None
    # a configuration that serves no zone: srvd must answer REFUSED for the root (issue 15: the
    # image with nothing mounted was unhealthy forever); nobody on port 9 answers at all
    result = run_health("-c", str(config), "--server", "127.0.0.1:9")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "srvd health: 127.0.0.1:9: . SOA: Connection refused (2 attempts)"
    ]


def test_probe_plan_reads_listen_and_stops_at_the_first_zone(tmp_path: Path) -> None:
    config = tmp_path / "srvd.yaml"
    config.write_text(
        "listen: ['0.0.0.0:5300', '[::]:5300']\n"
        "zone: {nameservers: [ns1.example.net]}\n"
        "profiles: {mail: {imaps: {target: imap.example.net, port: 993}}}\n"
        "domains:\n  a.example: mail\n  b.example: nope\n"
        "include: [broken.yaml]\n"
    )
    (tmp_path / "broken.yaml").write_text("domains: [this is: not\n")
    # the rest (an unknown profile, a broken include) is never read: no index, no full load
    assert probe_plan(str(config)) == (Endpoint("127.0.0.1", 5300), "_tcp.a.example")
    config.write_text("listen: '[::]:53'\nzone: {nameservers: [ns1.example.net]}\n")
    assert probe_plan(str(config)) == (Endpoint("::1", 53), None)
    config.write_text("zone: {nameservers: [ns1.example.net]}\n")  # listen: the default
    assert probe_plan(str(config)) == (Endpoint("127.0.0.1", 53), None)


def test_health_asks_where_the_configuration_listens(tmp_path: Path) -> None:
    """Issue 15: after the README's first command (listen 127.0.0.1:5353), `srvd health` asked
    127.0.0.1:53; it reads listen: now."""
    port = free_port()
    config = tmp_path / "srvd.yaml"
    text = EXAMPLE.read_text().replace("127.0.0.1:5353", f"127.0.0.1:{port}")
    config.write_text(text)
    running = start_srvd(config, port=port)
    try:
        result = run_health("-c", str(config))
        assert result.returncode == 0, result.stderr
        assert f"127.0.0.1:{port}: _axigen.example.com. SOA: NOERROR, AA=1" in result.stdout
    finally:
        running.stop()


def test_a_server_that_serves_no_zone_yet_is_healthy(tmp_path: Path) -> None:
    """The container's template with nothing mounted serves no domain: healthy when srvd
    answers (REFUSED for the root), not unhealthy forever."""
    port = free_port()
    config = tmp_path / "srvd.yaml"
    config.write_text(
        f"listen: [127.0.0.1:{port}]\nzone: {{nameservers: [ns1.example.net, ns2.example.net]}}"
        "\ninclude: [domains.d/*.yaml]\n"
    )
    running = start_srvd(config, port=port)
    try:
        result = run_health("-c", str(config))
        assert result.returncode == 0, result.stderr
        assert f"127.0.0.1:{port}: . SOA: REFUSED in" in result.stdout
        assert "serves no zone yet" in result.stdout
    finally:
        running.stop()


def test_a_broken_config_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "srvd.yaml"
    config.write_text("zone: {nameservers: [ns1.example.net]}\ndomains: {a.example: nope}\n")
    result = run_health("-c", str(config))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"srvd health: {config}: 1 configuration problem (srvd check")
    assert "unknown profile 'nope'" in lines[0]
