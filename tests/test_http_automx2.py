"""Peer comparison with automx2 (the usual autoconfig/Autodiscover server): configured with the
same servers for the same domains, its Mozilla autoconfig and Outlook POX documents and srvd's
say the same host, port, TLS mode and user name, server by server, in the same order.

automx2 keeps each domain's servers as SQL rows (here an in-memory SQLite database, filled from
the facts srvd reads from its index) and is asked through Flask's test client: no socket, no
network. What differs by design is not compared: automx2 refuses a request without
``emailaddress`` (srvd answers from the Host header), lists every domain of the provider in each
document (srvd names the one asked for), and numbers its emailProvider id."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from srvd.config import load_config
from srvd.http import documents
from srvd.http.facts import Facts
from srvd.http.pacc import deriver
from srvd.index.build import build_index
from srvd.server.web import Documents

if os.environ.get("SRVD_REQUIRE_TOOLS") == "1":  # CI: the test extra must be installed
    import automx2  # type: ignore[import-untyped]  # noqa: F401
else:
    pytest.importorskip("automx2", reason="pip install -e '.[test]' installs automx2")

CONFIG = """
zone: {nameservers: [ns1.example.net]}
http: {listen: [127.0.0.1:8080]}
profiles:
  standard:
    imaps:
      - {target: imap1.example.net, port: 993, priority: 0, weight: 10}
      - {target: imap2.example.net, port: 993, priority: 5, weight: 5}
    imap: {target: imap.example.net, port: 143}
    pop3s: {target: pop.example.net, port: 995}
    submissions: {target: smtp.example.net, port: 465}
    submission: {target: smtp.example.net, port: 587}
  branded:
    imaps: {target: "mail.{domain}", port: 993}
    submission: {target: "mail.{domain}", port: 587}
domains:
  example.com: standard
  example.org: {profile: standard, imaps: {target: mail.example.org, port: 10993}}
  shop.example: branded
"""
DOMAINS = ("example.com", "example.org", "shop.example")
Row = tuple[str, str, int, str, str]  # kind, host, port, TLS, user name


@pytest.fixture(scope="module")
def srvd_docs(tmp_path_factory: pytest.TempPathFactory) -> Documents:
    path: Path = tmp_path_factory.mktemp("automx2") / "srvd.yaml"
    path.write_text(CONFIG)
    config = load_config(path)
    assert config.http is not None
    return Documents(build_index(config, None, deriver(config.http)), config.http)


def facts_of(docs: Documents, domain: str) -> Facts:
    found = docs.table(domain)
    assert found is not None
    return found[0]


@pytest.fixture(scope="module")
def client(srvd_docs: Documents) -> Iterator[Any]:
    from automx2.model import Base, Domain, Provider, Server, db  # type: ignore[import-untyped]
    from automx2.server import app  # type: ignore[import-untyped]

    with app.app_context():
        Base.metadata.create_all(db.engine)
        session = db.session
        for number, domain in enumerate(DOMAINS):
            provider = Provider(id=number + 1, name=f"Provider {domain}", short_name=domain)
            row = Domain(id=number + 1, name=domain, provider=provider)
            facts = facts_of(srvd_docs, domain)
            for prio, server in enumerate((*facts.incoming, *facts.outgoing)):
                row.servers.append(
                    Server(
                        prio=prio,
                        name=documents.complete(server.host.encode(), domain).decode(),
                        port=server.port,
                        type="pop" if server.protocol == "pop3" else server.protocol,
                        socket_type="SSL" if server.tls else "STARTTLS",
                        user_name="%EMAILADDRESS%",
                        authentication="plain",
                    )
                )
            session.add_all([provider, row])
        session.commit()
        yield app.test_client()


def mozilla_rows(body: bytes) -> list[Row]:
    provider = ET.fromstring(body).find("emailProvider")
    assert provider is not None
    rows = []
    for element in ("incomingServer", "outgoingServer"):
        for server in provider.findall(element):
            rows.append(
                (
                    server.get("type", ""),
                    server.findtext("hostname") or "",
                    int(server.findtext("port") or 0),
                    server.findtext("socketType") or "",
                    server.findtext("username") or "",
                )
            )
    return rows


@pytest.mark.parametrize("domain", DOMAINS)
def test_autoconfig_matches_automx2(client: Any, srvd_docs: Documents, domain: str) -> None:
    theirs = client.get(f"/mail/config-v1.1.xml?emailaddress=someone@{domain}")
    assert theirs.status_code == 200, theirs.data
    found = srvd_docs.table(domain)
    assert found is not None
    skeleton = found[1]["autoconfig"]
    assert skeleton is not None
    ours = documents.complete(skeleton, domain)
    assert mozilla_rows(ours) == mozilla_rows(theirs.data)
    assert f"<domain>{domain}</domain>".encode() in theirs.data  # both name the domain


POX_REQUEST = (
    '<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/'
    'exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>someone@{domain}'
    "</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/"
    "autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request>"
    "</Autodiscover>"
)


def pox_rows(body: bytes) -> list[tuple[str, str, int, str, str]]:
    ns = {"o": documents.POX_OUTLOOK_NS}
    rows = []
    for protocol in ET.fromstring(body).iterfind(".//o:Protocol", ns):
        kind = protocol.findtext("o:Type", namespaces=ns) or ""
        if kind not in ("IMAP", "POP3", "SMTP"):
            continue
        rows.append(
            (
                kind,
                protocol.findtext("o:Server", namespaces=ns) or "",
                int(protocol.findtext("o:Port", namespaces=ns) or 0),
                protocol.findtext("o:SSL", namespaces=ns) or "",
                protocol.findtext("o:Encryption", namespaces=ns) or "",
            )
        )
    return rows


@pytest.mark.parametrize("domain", DOMAINS)
def test_pox_matches_automx2(client: Any, srvd_docs: Documents, domain: str) -> None:
    theirs = client.post(
        "/autodiscover/autodiscover.xml",
        data=POX_REQUEST.format(domain=domain),
        content_type="text/xml",
    )
    assert theirs.status_code == 200, theirs.data
    settings = srvd_docs.settings
    ours = documents.complete(documents.pox(facts_of(srvd_docs, domain), settings), domain)
    # the same servers in the same order, each with the same host, port and encryption;
    # automx2 also puts LoginName (the address) in each, which srvd leaves out with
    # username: email (Outlook then logs in with the address it asked for)
    # One difference, on purpose: for a STARTTLS server automx2 says SSL off, srvd SSL on.
    # Both say Encryption TLS, which overrides SSL ([MS-OXDSCLI]); a client too old to read
    # Encryption would, with SSL off, send the password in clear text, and with srvd's SSL on
    # fail to connect instead (docs/http.md).
    our_rows, their_rows = pox_rows(ours), pox_rows(theirs.data)
    assert [(*r[:3], r[4]) for r in our_rows] == [(*r[:3], r[4]) for r in their_rows]
    for ours_row, theirs_row in zip(our_rows, their_rows, strict=True):
        expected = "on" if ours_row[4] == "SSL" else "off"
        assert (ours_row[3], theirs_row[3]) == ("on", expected)
    assert b"<LoginName>" not in ours and f"someone@{domain}".encode() in theirs.data
