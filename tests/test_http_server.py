"""The HTTP front on loopback: ``srvd serve`` with ``http:``, asked by curl and by a real HTTP
client (http.client) for every route, Host header and redirect; hostile requests (oversized and
malformed bodies, too many or too large headers, odd Host headers, path traversal, slow and
too many clients); the counts in /metrics; nothing of a request in the log; and after a reload,
the PACC digest that DNS serves is still that of exactly the document HTTP serves."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import dns.message
import dns.query
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.protocol import connectionDone
from twisted.internet.testing import StringTransport

from conftest import RunningServer, require_tool, start_http_front

CONFIG = """
zone: {nameservers: [ns1.example.net]}
http:
  listen: [127.0.0.1:8080]      # replaced by --http in these tests
  pacc: on
  max_body: 2048
  max_connections: 8
  idle_timeout: 1.5
profiles:
  standard:
    imaps:
      - {target: imap1.example.net, port: 993, priority: 0, weight: 10}
      - {target: imap2.example.net, port: 993, priority: 0, weight: 5}
    submissions: {target: smtp.example.net, port: 465}
    caldavs: {target: dav.example.net, port: 443, path: /dav/}
    carddavs: {target: dav.example.net, port: 443, path: /dav/}
    jmap: {target: jmap.example.net, port: 443}
  branded:
    imaps: {target: "mail.{domain}", port: 993}
    submission: {target: "mail.{domain}", port: 587}
domains:
  example.com: standard
  shop.example: branded
"""

POX = (
    b'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/'
    b'exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>%s</EMailAddress>'
    b"<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/"
    b"responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>"
)


class Front:
    def __init__(self, server: RunningServer, http: int, metrics: int, config: Path) -> None:
        self.server = server
        self.http = http
        self.metrics = metrics
        self.config = config

    def request(
        self,
        method: str,
        path: str,
        host: str | None = "autoconfig.example.com",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.http, timeout=10)
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            if host is not None:
                connection.putheader("Host", host)
            for name, value in (headers or {}).items():
                connection.putheader(name, value)
            if body is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            connection.close()

    def get(self, path: str, host: str | None = "autoconfig.example.com") -> tuple[int, bytes]:
        status, _headers, body = self.request("GET", path, host)
        return status, body

    def raw(self, data: bytes, wait: float = 5.0) -> bytes:
        """What the server sends back for these octets, until it closes or ``wait`` passes."""
        with socket.create_connection(("127.0.0.1", self.http), timeout=wait) as sock:
            sock.sendall(data)
            out = b""
            try:
                while chunk := sock.recv(65536):
                    out += chunk
            except (TimeoutError, ConnectionResetError):
                pass
            return out


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    config = tmp_path_factory.mktemp("http") / "srvd.yaml"
    config.write_text(CONFIG)
    server, http, metrics = start_http_front(config, metrics=True)
    yield Front(server, http, metrics, config)
    server.stop()


# ---------------------------------------------------------------------------------------------
# Routes and Host headers


def test_the_readme_curl_command(front: Front) -> None:
    curl = require_tool("curl")
    out = subprocess.run(
        [
            curl,
            "-sS",
            "-H",
            "Host: autoconfig.example.com",
            f"http://127.0.0.1:{front.http}/mail/config-v1.1.xml",
        ],
        capture_output=True,
        check=True,
        timeout=20,
    ).stdout.decode()
    assert "<hostname>imap1.example.net</hostname>" in out
    assert "<hostname>smtp.example.net</hostname>" in out
    assert out.index("imap1.example.net") < out.index("smtp.example.net")


@pytest.mark.parametrize(
    ("path", "host"),
    [
        ("/mail/config-v1.1.xml", "autoconfig.example.com"),
        ("/.well-known/autoconfig/mail/config-v1.1.xml", "example.com"),
        ("/mail/config-v1.1.xml", "EXAMPLE.com.:8080"),
        ("/mail/config-v1.1.xml?emailaddress=bob%40example.com", "autoconfig.provider.net"),
        ("/mail/config-v1.1.xml?emailaddress=x@example.com", None),
    ],
)
def test_autoconfig_by_host_or_address(front: Front, path: str, host: str | None) -> None:
    status, headers, body = front.request("GET", path, host)
    assert status == 200, body
    assert headers["content-type"].startswith("application/xml")
    assert b"<domain>example.com</domain>" in body
    assert headers["x-content-type-options"] == "nosniff"
    assert "cache-control" in headers and "content-security-policy" in headers


def test_every_local_part_gets_the_same_document(front: Front) -> None:
    bodies = {
        front.get(
            f"/mail/config-v1.1.xml?emailaddress={local}%40example.com", "autoconfig.provider.net"
        )[1]
        for local in ("alice", "nobody-at-all", "root", "x")
    }
    assert len(bodies) == 1


def test_unknown_domains_get_404(front: Front) -> None:
    assert front.get("/mail/config-v1.1.xml", "autoconfig.unknown.example")[0] == 404
    assert front.get("/mail/config-v1.1.xml?emailaddress=a@unknown.example", "x.example")[0] == 404
    assert front.get("/nothing-here", "example.com")[0] == 404


def test_templates_are_completed_per_domain(front: Front) -> None:
    status, body = front.get("/mail/config-v1.1.xml", "autoconfig.shop.example")
    assert status == 200 and b"<hostname>mail.shop.example</hostname>" in body
    assert b"<socketType>STARTTLS</socketType>" in body and b"{domain}" not in body


def test_pox(front: Front) -> None:
    for path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.XML"):
        status, headers, body = front.request(
            "POST", path, "autodiscover.example.com", POX % b"bob@example.com"
        )
        assert status == 200, body
        assert b"<Server>imap1.example.net</Server>" in body
        assert headers["cache-control"] == "private, no-store"
    # the domain from the address when the host is the provider's own
    status, _, body = front.request(
        "POST", path, "autodiscover.provider.net", POX % b"a@shop.example"
    )
    assert status == 200 and b"<Server>mail.shop.example</Server>" in body
    status, headers, _ = front.request("GET", "/autodiscover/autodiscover.xml", "example.com")
    assert status == 405 and headers["allow"] == "POST"


def test_autodiscover_json(front: Front) -> None:
    want = {
        "Protocol": "AutodiscoverV1",
        "Url": "https://autodiscover.example.com/autodiscover/autodiscover.xml",
    }
    for path in (
        "/autodiscover/autodiscover.json/v1.0/bob@example.com?Protocol=AutodiscoverV1",
        "/Autodiscover/Autodiscover.json/v1.0/bob%40example.com?protocol=autodiscoverv1",
        "/autodiscover/autodiscover.json?Email=bob@example.com&Protocol=AutodiscoverV1",
    ):
        status, body = front.get(path, "autodiscover.provider.net")
        assert status == 200, (path, body)
        assert json.loads(body) == want
    for protocol in ("ActiveSync", "Ews", ""):
        path = f"/autodiscover/autodiscover.json/v1.0/bob@example.com?Protocol={protocol}"
        assert front.get(path, "example.com")[0] == 400


def test_mobileconfig(front: Front) -> None:
    import plistlib

    status, headers, body = front.request(
        "GET", "/email.mobileconfig?emailaddress=bob@example.com", "example.com"
    )
    assert status == 200
    assert headers["content-type"] == "application/x-apple-aspen-config"
    profile = plistlib.loads(body)
    assert profile["PayloadContent"][0]["EmailAddress"] == "bob@example.com"
    assert b"Password</key>" not in body.replace(
        b"OutgoingPasswordSameAsIncomingPassword</key>", b""
    )


def test_well_known_redirects(front: Front) -> None:
    for path, where in (
        ("/.well-known/caldav", "https://dav.example.net/dav/"),
        ("/.well-known/carddav", "https://dav.example.net/dav/"),
        ("/.well-known/jmap", "https://jmap.example.net/.well-known/jmap"),
    ):
        status, headers, _ = front.request("GET", path, "example.com")
        assert (status, headers["location"]) == (301, where)
    assert front.get("/.well-known/caldav", "shop.example")[0] == 404  # not offered there
    curl = require_tool("curl")
    out = subprocess.run(
        [
            curl,
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            "-H",
            "Host: example.com",
            f"http://127.0.0.1:{front.http}/.well-known/carddav",
        ],
        capture_output=True,
        check=True,
        timeout=20,
    ).stdout.decode()
    assert out == "301 https://dav.example.net/dav/"


def dns_pacc(port: int, domain: str) -> list[str]:
    query = dns.message.make_query(f"_ua-auto-config.{domain}", "TXT")
    reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=5)
    return [b"".join(r.strings).decode() for rrset in reply.answer for r in rrset]


def digest_of(body: bytes) -> str:
    return "v=UAAC1; a=sha256; d=" + base64.b64encode(hashlib.sha256(body).digest()).decode()


def test_pacc_digest_matches_after_a_reload(front: Front) -> None:
    for domain in ("example.com", "shop.example"):
        status, body = front.get(
            "/.well-known/user-agent-configuration.json", f"ua-auto-config.{domain}"
        )
        assert status == 200
        assert dns_pacc(front.server.port, domain) == [digest_of(body)]
    # a reload that changes the documents: both sides follow, from the same generation
    front.config.write_text(
        CONFIG.replace("imap1.example.net", "imap9.example.net").replace(
            "pacc: on", "pacc: on\n  display_name: 'Mail for {domain}'"
        )
        + "  new.example: standard\n"
    )
    os.kill(front.server.process.pid, signal.SIGHUP)
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline and front.get("/mail/config-v1.1.xml", "new.example")[0] != 200
    ):
        time.sleep(0.1)
    for domain in ("example.com", "shop.example", "new.example"):
        status, body = front.get(
            "/.well-known/user-agent-configuration.json", f"ua-auto-config.{domain}"
        )
        assert status == 200 and f"Mail for {domain}".encode() in body
        assert dns_pacc(front.server.port, domain) == [digest_of(body)]
    assert b"imap9.example.net" in front.get("/mail/config-v1.1.xml", "example.com")[1]


# ---------------------------------------------------------------------------------------------
# Hostile requests


def test_oversized_and_malformed_bodies(front: Front) -> None:
    status, _, _ = front.request(
        "POST", "/autodiscover/autodiscover.xml", "example.com", b"<a>" * 2000
    )
    assert status == 413
    status, _, _ = front.request(
        "POST", "/autodiscover/autodiscover.xml", "example.com", b"<not xml"
    )
    assert status == 400
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;">]><Autodiscover><Request><EMailAddress>&c;</EMailAddress>'
        b"</Request></Autodiscover>"
    )
    external = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<Autodiscover><Request><EMailAddress>&x;</EMailAddress></Request></Autodiscover>"
    )
    for body in (bomb, external):
        status, _, answer = front.request(
            "POST", "/autodiscover/autodiscover.xml", "example.com", body
        )
        assert status == 400 and b"root:" not in answer
    # a chunked body over the limit is refused as well
    answer = front.raw(
        b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: example.com\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + b"".join(b"400\r\n" + b"x" * 1024 + b"\r\n" for _ in range(4))
        + b"0\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 413")


def test_odd_host_headers_and_paths(front: Front) -> None:
    for host in ("../../etc/passwd", "a b", "x" * 300, "example.com:99999999", "éxample.com", ""):
        status, _ = front.get("/mail/config-v1.1.xml", host)
        assert status in (400, 404), host
    assert front.raw(
        b"GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: autoconfig.example.com\r\n"
        b"Host: other\r\nConnection: close\r\n\r\n"
    ).startswith(b"HTTP/1.1 400")
    for path in (
        "/mail/../mail/config-v1.1.xml",
        "/mail/%2e%2e/etc/passwd",
        "/mail//config-v1.1.xml",
    ):
        answer = front.raw(
            f"GET {path} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n".encode()
        )
        assert answer.startswith(b"HTTP/1.1 404"), path
    assert front.raw(b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
    many = "&".join(f"p{i}=x" for i in range(30))
    assert front.get(f"/mail/config-v1.1.xml?{many}", "example.com")[0] == 400
    # undecodable octets in the local part are decoded leniently: the domain is what counts
    assert front.get("/mail/config-v1.1.xml?emailaddress=%ff%fe@example.com", "x.example")[0] == 200
    assert front.get("/mail/config-v1.1.xml?emailaddress=%00@example.com", "x.example")[0] == 400
    assert front.request("DELETE", "/mail/config-v1.1.xml", "example.com")[0] == 405


def test_header_limits(front: Front) -> None:
    many = "".join(f"X-H{i}: v\r\n" for i in range(60))
    answer = front.raw(
        f"GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: example.com\r\n{many}\r\n".encode()
    )
    assert answer.startswith(b"HTTP/1.1 400")
    answer = front.raw(
        b"GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: example.com\r\nX-Big: "
        + b"a" * 9000
        + b"\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 400")


def test_slow_clients_are_cut_off(front: Front) -> None:
    with socket.create_connection(("127.0.0.1", front.http), timeout=10) as sock:
        started = time.monotonic()
        closed = False
        for octet in b"GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: example.com\r\n":
            try:
                sock.sendall(bytes([octet]))
            except OSError:
                closed = True
                break
            time.sleep(0.2)  # every octet in time for an idle timer; the request never whole
            if time.monotonic() - started > 6:
                break
        if not closed:
            sock.settimeout(3)
            try:
                closed = sock.recv(100) == b""
            except OSError:
                closed = True
    assert closed and time.monotonic() - started < 6


def test_connections_beyond_the_limit_are_closed(front: Front) -> None:
    held = [socket.create_connection(("127.0.0.1", front.http)) for _ in range(8)]
    try:
        time.sleep(0.2)
        answer = b"reset"
        try:
            with socket.create_connection(("127.0.0.1", front.http), timeout=5) as extra:
                extra.sendall(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
                answer = extra.recv(100)
        except (ConnectionResetError, BrokenPipeError):
            pass
        assert answer in (b"", b"reset")  # closed at once, never answered
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert front.get("/mail/config-v1.1.xml", "example.com")[0] == 200  # served again


# ---------------------------------------------------------------------------------------------
# Metrics and logs


def test_requests_are_counted_by_route_and_status(front: Front) -> None:
    front.get("/mail/config-v1.1.xml", "example.com")
    front.get("/mail/config-v1.1.xml", "nowhere.example")
    with urllib.request.urlopen(f"http://127.0.0.1:{front.metrics}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    lines = [line for line in text.splitlines() if line.startswith("srvd_http_requests_total{")]
    assert any(
        'route="autoconfig"' in line and 'status="200"' in line and not line.endswith(" 0.0")
        for line in lines
    )
    assert any(
        'route="autoconfig"' in line and 'status="404"' in line and not line.endswith(" 0.0")
        for line in lines
    )
    assert len(lines) == 7 * 7  # a fixed set of cells: route kinds by statuses


def test_nothing_of_a_request_is_logged(front: Front) -> None:
    front.request(
        "POST",
        "/autodiscover/autodiscover.xml",
        "example.com",
        POX % b"secret-person@example.com",
        {"Authorization": "Basic c2VjcmV0LXBhc3N3b3Jk"},
    )
    front.get("/mail/config-v1.1.xml?emailaddress=another-secret@example.com", "example.com")
    log = front.server.log()
    for secret in ("c2VjcmV0LXBhc3N3b3Jk", "secret-person", "another-secret", "Authorization"):
        assert secret not in log


def test_a_declared_oversized_body_is_refused_once_before_it_is_read(tmp_path: Path) -> None:
    """In memory: one 413 for a Content-Length over http.max_body, whether the body follows in
    the same segment or never comes, counted once, and the connection closed."""
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from srvd.config import load_config
    from srvd.index.build import build_index
    from srvd.server.web import HttpService

    config_path = tmp_path / "srvd.yaml"
    config_path.write_text(CONFIG)
    config = load_config(config_path)
    assert config.http is not None
    reactor: Any = MemoryReactorClock
    service = HttpService(config.http, build_index(config), reactor())
    head = b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: example.com\r\n"
    for body in (b"", b"x" * 3000):
        protocol: Any = cast(Any, service.site).buildProtocol(None)
        transport: Any = cast(Any, StringTransport)()
        protocol.makeConnection(transport)
        protocol.dataReceived(head + b"Content-Length: 3000\r\n\r\n" + body)
        assert transport.value().count(b"HTTP/1.1 ") == 1
        assert transport.value().startswith(b"HTTP/1.1 413")
        assert transport.disconnecting
    assert service.counts.cells[("autodiscover_xml", 413)] == 2


PATHS = (
    "/mail/config-v1.1.xml",
    "/.well-known/autoconfig/mail/config-v1.1.xml",
    "/autodiscover/autodiscover.xml",
    "/autodiscover/autodiscover.json",
    "/autodiscover/autodiscover.json/v1.0/",
    "/email.mobileconfig",
    "/.well-known/caldav",
    "/.well-known/user-agent-configuration.json",
    "/",
)


@pytest.fixture(scope="module")
def memory_front(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from twisted.internet.testing import MemoryReactorClock

    from srvd.config import load_config
    from srvd.index.build import build_index
    from srvd.server.web import HttpService

    path = tmp_path_factory.mktemp("memory") / "srvd.yaml"
    path.write_text(CONFIG)
    config = load_config(path)
    assert config.http is not None
    reactor: Any = MemoryReactorClock
    return HttpService(config.http, build_index(config), reactor())


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "get", "OPTIONS"]),
    path=st.sampled_from(PATHS),
    tail=st.text(max_size=30),
    host=st.one_of(
        st.none(),
        st.text(max_size=40),
        st.sampled_from(["example.com", "autodiscover.shop.example"]),
    ),
    query=st.text(max_size=60),
    body=st.one_of(st.binary(max_size=300), st.sampled_from([POX % b"a@example.com", POX % b"%s"])),
)
def test_no_request_makes_a_500(
    memory_front: Any, method: str, path: str, tail: str, host: str | None, query: str, body: bytes
) -> None:
    """Whatever arrives, the answer is a clean status (never an internal error)."""
    from urllib.parse import quote

    target = quote(path + tail, safe="/@%") + ("?" + quote(query, safe="=&@%") if query else "")
    lines = [f"{method} {target} HTTP/1.1"]
    if host is not None:
        lines.append(
            "Host: "
            + host.encode("latin-1", "replace")
            .decode("latin-1")
            .replace("\r", "")
            .replace("\n", "")
        )
    lines.append(f"Content-Length: {len(body)}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body
    protocol: Any = cast(Any, memory_front.site).buildProtocol(None)
    transport: Any = cast(Any, StringTransportClass)()
    protocol.makeConnection(transport)
    protocol.dataReceived(request)
    status = transport.value()[:12]
    assert status[:9] == b"HTTP/1.1 ", transport.value()[:200]
    assert int(status[9:12]) in (200, 301, 400, 404, 405, 413), transport.value()[:300]
    protocol.connectionLost(connectionDone)


StringTransportClass: Any = StringTransport
