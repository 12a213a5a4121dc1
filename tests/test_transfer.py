"""Zone transfer and TSIG: unit tests against dnspython, and a real srvd on loopback."""

from __future__ import annotations

import base64
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.xfr
import dns.zone
import pytest
from xfr_helpers import CATALOG, KEY_NAME, SECRET, axfr, keyring, primary_config

from srvd.config import load_config
from srvd.config.model import AllowRule, TransferSettings
from srvd.index.build import build_index
from srvd.index.catalog import next_catalog
from srvd.index.model import Index, ZoneDelta, member_label
from srvd.wire import tsig

from conftest import RunningServer, require_tool, start_srvd

KEY = tsig.make_key(KEY_NAME, "hmac-sha256", base64.b64decode(SECRET))
DOMAINS = ["example.com", "example.org", "shop.example"]

# ---------------------------------------------------------------------------------------------
# TSIG on the bytes, checked against dnspython


@pytest.mark.parametrize("algorithm", ["hmac-sha1", "hmac-sha256", "hmac-sha384", "hmac-sha512"])
def test_a_request_signed_by_dnspython_verifies(algorithm: str) -> None:
    ring = dns.tsigkeyring.from_text({KEY_NAME: (algorithm, SECRET)})
    query = dns.message.make_query("_tcp.example.com", "AXFR")
    query.use_tsig(ring, keyname=KEY_NAME)
    wire = query.to_wire()
    found = tsig.find(wire)
    assert found is not None
    key = tsig.make_key(KEY_NAME, algorithm, base64.b64decode(SECRET))
    assert tsig.verify(wire, found, {key.name: key}, int(time.time())) == (tsig.NOERROR, key)
    # one bit changed: BADSIG; an unknown key: BADKEY; too late: BADTIME
    broken = wire[:14] + bytes([wire[14] ^ 1]) + wire[15:]
    assert tsig.verify(broken, found, {key.name: key}, int(time.time()))[0] == tsig.BADSIG
    assert tsig.verify(wire, found, {}, int(time.time()))[0] == tsig.BADKEY
    assert tsig.verify(wire, found, {key.name: key}, int(time.time()) + 301)[0] == tsig.BADTIME


def test_a_response_signed_here_verifies_in_dnspython() -> None:
    query = dns.message.make_query("_tcp.example.com", "SOA")
    query.use_tsig(keyring(), keyname=KEY_NAME)
    wire = query.to_wire()
    found = tsig.find(wire)
    assert found is not None
    plain = dns.message.make_response(dns.message.from_wire(tsig.stripped(wire, found)))
    signed = tsig.Signer(KEY, found, int(time.time())).sign(plain.to_wire())
    got = dns.message.from_wire(signed, keyring=keyring(), request_mac=query.mac)
    assert got.had_tsig and got.tsig_error == 0
    # the same bytes with a different request MAC do not verify
    with pytest.raises(dns.tsig.BadSignature):
        dns.message.from_wire(signed, keyring=keyring(), request_mac=b"\x00" * 32)


def test_a_signed_multi_message_stream_verifies_in_dnspython() -> None:
    query = dns.message.make_query("_tcp.example.com", "AXFR")
    query.use_tsig(keyring(), keyname=KEY_NAME)
    wire = query.to_wire()
    found = tsig.find(wire)
    assert found is not None
    signer = tsig.Signer(KEY, found, int(time.time()))
    ctx = None
    mac = query.mac
    for i in range(3):
        head = wire[:2] + struct.pack("!HHHHH", 0x8400, 1, 0, 0, 0)
        message = signer.sign(head + wire[12 : 12 + len("_tcp.example.com") + 6])
        got = dns.message.from_wire(
            message,
            keyring=keyring(),
            request_mac=mac,
            multi=True,
            tsig_ctx=ctx,
            one_rr_per_rrset=True,
        )
        ctx = got.tsig_ctx
        assert got.had_tsig, i


def test_notify_request_signed_here_verifies_in_dnspython() -> None:
    from srvd.xfr.notify import notify_message

    message, mac = tsig.sign_request(
        notify_message(7, b"\x04_tcp\x07example\x03com\x00"), KEY, int(time.time())
    )
    got = dns.message.from_wire(message, keyring=keyring())
    assert got.opcode() == dns.opcode.NOTIFY and got.mac == mac


def test_acl_needs_address_and_key() -> None:
    import ipaddress

    other = tsig.make_key("other", "hmac-sha256", b"x" * 32)
    settings = TransferSettings(
        keys=(KEY, other), allow=(AllowRule(ipaddress.ip_network("127.0.0.1/32"), KEY.name),)
    )
    assert settings.allowed("127.0.0.1", KEY)
    assert settings.allowed("::ffff:127.0.0.1", KEY)
    assert not settings.allowed("127.0.0.2", KEY)
    assert not settings.allowed("127.0.0.1", other)
    assert not settings.allowed("127.0.0.1", None)


# ---------------------------------------------------------------------------------------------
# The catalog


def _index(tmp: Path, domains: list[str]) -> Index:
    config = load_config(primary_config(tmp, domains))
    return build_index(config, lambda apex, digest: 100)


def test_catalog_serial_moves_only_with_the_member_set(tmp_path: Path) -> None:
    index = _index(tmp_path, DOMAINS)
    apex = b"\x07catalog\x07example\x03net\x00"
    first = next_catalog(None, apex, index, None, 1000)
    assert first.serial == 1000 and first.members == len(index.zones)
    same = next_catalog(first, apex, index, ZoneDelta((), (), (b"x",)), 2000)
    assert same.serial == 1000 and same.history == ()
    new = b"\x04_tcp\x03new\x07example\x00"
    grown = next_catalog(same, apex, index, ZoneDelta((new,), (), ()), 2000)
    assert grown.serial == 2000
    assert grown.chain(1000) is not None and grown.chain(999) is None
    assert member_label(new) == member_label(new.upper())  # stable, case-blind
    assert len(member_label(new)) == 21


# ---------------------------------------------------------------------------------------------
# A running srvd


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[RunningServer]:
    server = start_srvd(primary_config(tmp_path, DOMAINS))
    yield server
    server.stop()


def test_axfr_of_a_zone_with_dnspython(primary: RunningServer) -> None:
    zone = axfr(primary.port, "_tcp.example.com")
    names = {name.to_text() for name in zone.nodes}
    assert {"@", "_imaps", "_submissions", "_caldavs"} <= names
    srv = zone.get_rdataset("_imaps", "SRV")
    assert srv is not None and len(srv) == 2
    soa = zone.get_rdataset("@", "SOA")
    assert soa is not None
    # the SOA served to queries is the one transferred
    query = dns.message.make_query("_tcp.example.com", "SOA")
    reply = dns.query.udp(query, "127.0.0.1", port=primary.port, timeout=3)
    assert reply.answer[0][0].serial == soa[0].serial


def test_axfr_of_the_catalog_has_the_rfc_9432_shape(primary: RunningServer) -> None:
    zone = axfr(primary.port, CATALOG)
    version = zone.get_rdataset("version", "TXT")
    assert version is not None and [r.strings for r in version] == [(b"2",)]
    ns = zone.get_rdataset("@", "NS")
    assert ns is not None and [r.target.to_text() for r in ns] == ["invalid."]
    members = {}
    for name, node in zone.nodes.items():
        labels = name.labels
        if len(labels) == 2 and labels[1] == b"zones":
            ptr = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.PTR)
            assert ptr is not None and len(ptr) == 1
            members[labels[0]] = ptr[0].target.to_text()
    expected = set()
    for i, domain in enumerate(DOMAINS):
        expected.add(f"_tcp.{domain}.")
        if i % 3 != 2:
            expected.add(f"_axigen.{domain}.")
    assert set(members.values()) == expected
    assert len(members) == len(expected)  # unique IDs


def test_ixfr_with_our_serial_gets_the_soa_alone(primary: RunningServer) -> None:
    zone = axfr(primary.port, "_tcp.example.org")
    soa = zone.get_rdataset("@", "SOA")
    assert soa is not None
    serial = soa[0].serial
    query = dns.message.make_query("_tcp.example.org", "IXFR")
    query.authority.append(
        dns.rrset.from_text("_tcp.example.org.", 0, "IN", "SOA", f". . {serial} 0 0 0 0")
    )
    query.use_tsig(keyring(), keyname=KEY_NAME)
    reply = dns.query.tcp(query, "127.0.0.1", port=primary.port, timeout=5)
    assert [rrset.rdtype for rrset in reply.answer] == [dns.rdatatype.SOA]
    # an older serial: the whole zone (in AXFR form)
    older = dns.zone.Zone("_tcp.example.org")
    q, _ = dns.xfr.make_query(older, serial=serial - 1, keyring=keyring())
    dns.query.inbound_xfr("127.0.0.1", older, q, port=primary.port, timeout=5)
    assert older.get_rdataset("_imaps", "SRV") is not None


def test_kdig_axfr_with_tsig(primary: RunningServer) -> None:
    kdig = require_tool("kdig")
    result = subprocess.run(
        [
            kdig,
            "@127.0.0.1",
            "-p",
            str(primary.port),
            "-y",
            f"hmac-sha256:{KEY_NAME}:{SECRET}",
            "AXFR",
            "_tcp.example.com",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert ";; ERROR" not in result.stdout + result.stderr
    assert result.stdout.count("\tSOA\t") == 2
    assert "_imaps._tcp.example.com." in result.stdout


def _tcp_exchange(port: int, wire: bytes, source: str = "127.0.0.1") -> dns.message.Message:
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as s:
        s.sendall(struct.pack("!H", len(wire)) + wire)
        size = struct.unpack("!H", s.recv(2))[0]
        data = b""
        while len(data) < size:
            data += s.recv(size - len(data))
    return dns.message.from_wire(data, ignore_trailing=True, keyring=False)


def test_refusals(primary: RunningServer) -> None:
    # no key
    plain = dns.message.make_query("_tcp.example.com", "AXFR")
    assert _tcp_exchange(primary.port, plain.to_wire()).rcode() == dns.rcode.REFUSED
    # the right key from outside the ACL (127.0.0.2 is loopback too)
    signed = dns.message.make_query("_tcp.example.com", "AXFR")
    signed.use_tsig(keyring(), keyname=KEY_NAME)
    with pytest.raises(dns.exception.DNSException):
        axfr(primary.port, "_tcp.example.com", source="127.0.0.2")
    reply = _tcp_exchange(primary.port, signed.to_wire(), source="127.0.0.2")
    assert reply.rcode() == dns.rcode.REFUSED
    # a wrong secret: NOTAUTH/BADSIG; an unknown key: NOTAUTH/BADKEY
    wrong = dns.tsigkeyring.from_text(
        {KEY_NAME: ("hmac-sha256", base64.b64encode(b"y" * 32).decode())}
    )
    bad = dns.message.make_query("_tcp.example.com", "AXFR")
    bad.use_tsig(wrong, keyname=KEY_NAME)
    reply = _tcp_exchange(primary.port, bad.to_wire())
    assert reply.rcode() == dns.rcode.NOTAUTH and reply.tsig_error == dns.rcode.BADSIG
    unknown = dns.message.make_query("_tcp.example.com", "AXFR")
    unknown.use_tsig(dns.tsigkeyring.from_text({"nokey": SECRET}), keyname="nokey")
    reply = _tcp_exchange(primary.port, unknown.to_wire())
    assert reply.rcode() == dns.rcode.NOTAUTH and reply.tsig_error == dns.rcode.BADKEY
    # a zone srvd does not serve: REFUSED (signed)
    other = dns.message.make_query("example.net", "AXFR")
    other.use_tsig(keyring(), keyname=KEY_NAME)
    assert _tcp_exchange(primary.port, other.to_wire()).rcode() == dns.rcode.REFUSED
    # over UDP: NOTIMP
    udp = dns.query.udp(signed, "127.0.0.1", port=primary.port, timeout=3)
    assert udp.rcode() == dns.rcode.NOTIMP
    unsigned_udp = dns.query.udp(plain, "127.0.0.1", port=primary.port, timeout=3)
    assert unsigned_udp.rcode() == dns.rcode.NOTIMP


def test_signed_soa_query_gets_a_signed_answer(primary: RunningServer) -> None:
    for name in ("_tcp.example.com", CATALOG):
        query = dns.message.make_query(name, "SOA")
        query.use_tsig(keyring(), keyname=KEY_NAME)
        reply = dns.query.udp(query, "127.0.0.1", port=primary.port, timeout=3)  # verifies
        assert reply.had_tsig and reply.rcode() == dns.rcode.NOERROR
        assert reply.answer[0].rdtype == dns.rdatatype.SOA


def test_catalog_apex_queries(primary: RunningServer) -> None:
    query = dns.message.make_query(f"version.{CATALOG}", "TXT")
    reply = dns.query.udp(query, "127.0.0.1", port=primary.port, timeout=3)
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer[0][0].strings == (b"2",)
    query = dns.message.make_query(f"nothing.{CATALOG}", "A")
    reply = dns.query.udp(query, "127.0.0.1", port=primary.port, timeout=3)
    assert reply.rcode() == dns.rcode.NXDOMAIN and reply.authority[0].rdtype == dns.rdatatype.SOA


def test_zone_all_writes_every_zone_and_the_catalog(tmp_path: Path) -> None:
    import sys

    config = primary_config(tmp_path, DOMAINS)
    out = tmp_path / "zones"
    result = subprocess.run(
        [sys.executable, "-m", "srvd", "zone", "--all", "-c", str(config), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in out.iterdir())
    index = _index(tmp_path, DOMAINS)
    assert len(files) == len(index.zones) + 1
    assert f"{CATALOG}.zone" in files
    catalog = dns.zone.from_file(str(out / f"{CATALOG}.zone"), CATALOG, relativize=False)
    assert len(list(catalog.iterate_rdatas("PTR"))) == len(index.zones)
    for name in files:
        dns.zone.from_file(str(out / name), name.removesuffix(".zone"), relativize=False)


# ---------------------------------------------------------------------------------------------
# A slow reader of a long transfer


def _read_frame(sock: socket.socket) -> bytes:
    """One length-prefixed message (b"" at EOF before its first octet)."""
    data = b""
    size: int | None = None
    while size is None or len(data) < size:
        want = 2 - len(data) if size is None else size - len(data)
        chunk = sock.recv(min(want, 4096))
        if not chunk:
            if data or size is not None:
                raise EOFError("the connection closed inside a message")
            return b""
        data += chunk
        if size is None and len(data) == 2:
            size, data = struct.unpack("!H", data)[0], b""
        time.sleep(0.004)  # a slow reader: about 1 MB/s at most, and much less in practice
    return data


def test_a_slow_reader_gets_the_whole_catalog_after_the_idle_timeout(tmp_path: Path) -> None:
    """The last messages of a transfer wait in the kernel's buffers while the reader drains
    them: the idle timeout that starts when srvd has queued the last one must not reset the
    connection under the reader (dnspython's inbound_xfr of a 100k catalog, about 25 s), and
    once everything is read the connection ends with a FIN, not a reset."""
    domains = [f"cust{i:05d}.example" for i in range(1500)]
    config = primary_config(tmp_path, domains, extra="tcp: {idle_timeout: 0.5}")
    server = start_srvd(config)
    try:
        query = dns.message.make_query(CATALOG, "AXFR")
        query.use_tsig(keyring(), keyname=KEY_NAME)
        wire = query.to_wire()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(struct.pack("!H", len(wire)) + wire)
            ctx = None
            soas = members = messages = 0
            started = time.monotonic()
            while soas < 2:
                frame = _read_frame(sock)
                assert frame, f"EOF after {messages} messages, {members} members"
                reply = dns.message.from_wire(
                    frame,
                    keyring=keyring(),
                    request_mac=query.mac,
                    multi=True,
                    tsig_ctx=ctx,
                    one_rr_per_rrset=True,
                )
                ctx = reply.tsig_ctx
                messages += 1
                for rrset in reply.answer:
                    soas += rrset.rdtype == dns.rdatatype.SOA
                    members += rrset.rdtype == dns.rdatatype.PTR
            elapsed = time.monotonic() - started
            assert members == sum(2 if i % 3 != 2 else 1 for i in range(len(domains)))
            # the mechanism was exercised: reading took longer than the idle timeout
            assert elapsed > 1.0, elapsed
            # idle now: srvd closes, and with a FIN (EOF), not a reset
            sock.settimeout(5)
            assert sock.recv(1) == b""
    finally:
        server.stop()


def test_after_a_transfer_the_idle_timeout_waits_for_a_reader_that_makes_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a virtual clock, with the unacknowledged octets scripted: a reader that drains keeps
    the connection, one that stops for TRANSFER_TIMEOUT is reset, and a drained one gets a FIN."""
    from typing import Any, cast

    from twisted.internet.address import IPv4Address
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from srvd.config import TcpSettings
    from srvd.server.protocols import TCPFactory
    from srvd.server.responder import Responder
    from srvd.xfr import transfer

    unacked = {"octets": 0}
    monkeypatch.setattr(transfer, "unacknowledged", lambda _transport: unacked["octets"])
    clock = Clock()
    factory = TCPFactory(Responder(_index(tmp_path, DOMAINS)), clock, TcpSettings(idle_timeout=10))
    factory.protocol = transfer.PrimaryTCPProtocol

    def connection() -> tuple[transfer.PrimaryTCPProtocol, Any]:
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        assert isinstance(protocol, transfer.PrimaryTCPProtocol)
        wire: Any = cast(Any, StringTransport)()
        cast(Any, protocol).makeConnection(wire)
        protocol.transferred = True  # as after stream_done
        return protocol, wire

    _reader, wire = connection()
    unacked["octets"] = 3_000_000
    for _ in range(30):  # 300 s, draining 50 kB every 10 s: kept
        clock.advance(10)
        unacked["octets"] -= 50_000
        assert not wire.disconnecting, clock.seconds()
    unacked["octets"] = 0
    clock.advance(10)
    assert wire.disconnecting and not wire.disconnected  # loseConnection: a FIN
    _stalled, wire = connection()
    unacked["octets"] = 100_000
    started = clock.seconds()
    while not wire.disconnecting and clock.seconds() - started < 300:
        clock.advance(10)
    assert wire.disconnected  # abortConnection: reset
    assert transfer.TRANSFER_TIMEOUT <= clock.seconds() - started <= transfer.TRANSFER_TIMEOUT + 20
