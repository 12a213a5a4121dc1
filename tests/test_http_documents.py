"""The discovery documents (srvd.http), as plain bytes from a configuration's index, read the way
each client reads them: Thunderbird's and Thunderbird Android's autoconfig readers (their rules
written here as tests from their documented behaviour), Microsoft's POX response schema,
plistlib for Apple's profiles, the PACC draft's fields; and the PACC TXT that DNS serves is the
digest of exactly the document HTTP serves, for every domain, after a reload too."""

from __future__ import annotations

import base64
import hashlib
import json
import plistlib
import re
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import dns.message
import dns.rdatatype
import pytest
from hypothesis import given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from srvd.config import Config, load_config
from srvd.config.model import HttpSettings
from srvd.http import documents
from srvd.http.facts import table_facts
from srvd.http.pacc import deriver
from srvd.http.request import BadRequest, address_of, pox_address
from srvd.index.build import build_index
from srvd.index.model import Index
from srvd.server.responder import Responder
from srvd.server.web import Documents
from srvd.wire.names import to_wire

CONFIG = """
zone: {nameservers: [ns1.example.net]}
http:
  listen: [127.0.0.1:8080]
  pacc: on
  display_name: 'Acme & "Sons" <{domain}>'
profiles:
  full:
    imaps:
      - {target: imap-b.example.net, port: 993, priority: 10, weight: 0}
      - {target: imap-low.example.net, port: 993, priority: 0, weight: 1}
      - {target: imap-high.example.net, port: 993, priority: 0, weight: 9}
    imap: {target: imap.example.net, port: 143}
    pop3s: {target: pop.example.net, port: 995}
    pop3: off
    submissions: {target: smtp.example.net, port: 465}
    submission: {target: smtp.example.net, port: 587}
    caldavs: {target: dav.example.net, port: 8443, path: /cal/}
    carddavs: {target: dav.example.net, port: 443, path: /card/}
    jmap: {target: jmap.example.net, port: 443}
    autodiscover: {target: autodiscover.example.net, port: 443}
  branded:
    imaps: {target: "mail.{domain}", port: 993}
    submission: {target: "mail.{domain}", port: 587}
  offonly:
    imaps: off
    submissions: off
domains:
  example.com: full
  example.org:
    profile: full
    imaps: {target: mail.example.org, port: 10993}
  shop.example: branded
  xn--bcher-kva.example: branded
  nothing.example: offonly
"""

DOMAINS = ("example.com", "example.org", "shop.example", "xn--bcher-kva.example")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Index]:
    path = tmp_path_factory.mktemp("http") / "srvd.yaml"
    path.write_text(CONFIG)
    config = load_config(path)
    return config, build_index(config, None, deriver(config.http))


@pytest.fixture(scope="module")
def docs(loaded: tuple[Config, Index]) -> Documents:
    config, index = loaded
    assert config.http is not None
    return Documents(index, config.http)


def settings(loaded: tuple[Config, Index]) -> HttpSettings:
    assert loaded[0].http is not None
    return loaded[0].http


def autoconfig(docs: Documents, domain: str) -> bytes:
    found = docs.table(domain)
    assert found is not None
    skeleton = found[1]["autoconfig"]
    assert skeleton is not None
    return documents.complete(skeleton, domain)


# ---------------------------------------------------------------------------------------------
# The facts: DNS's records, in the order the documents give them


def test_servers_in_priority_then_weight_order_implicit_tls_first(docs: Documents) -> None:
    found = docs.table("example.com")
    assert found is not None
    facts = found[0]
    assert [(s.host, s.port, s.tls) for s in facts.incoming] == [
        ("imap-high.example.net", 993, True),  # priority 0, weight 9
        ("imap-low.example.net", 993, True),  # priority 0, weight 1
        ("imap-b.example.net", 993, True),  # priority 10
        ("imap.example.net", 143, False),  # STARTTLS after every implicit-TLS server
        ("pop.example.net", 995, True),  # pop3: off is left out
    ]
    assert [(s.host, s.port, s.tls) for s in facts.outgoing] == [
        ("smtp.example.net", 465, True),
        ("smtp.example.net", 587, False),
    ]
    assert facts.caldav is not None and facts.caldav.url == "https://dav.example.net:8443/cal/"
    assert facts.carddav is not None and facts.carddav.url == "https://dav.example.net/card/"
    assert facts.jmap is not None and facts.jmap.url == "https://jmap.example.net/.well-known/jmap"


def test_overrides_and_templates_apply_as_in_dns(docs: Documents) -> None:
    org = docs.table("example.org")
    assert org is not None
    assert org[0].incoming[0].host == "mail.example.org" and org[0].incoming[0].port == 10993
    body = autoconfig(docs, "shop.example").decode()
    assert "<hostname>mail.shop.example</hostname>" in body
    assert "{domain}" not in body


def test_unknown_domains_and_domains_with_only_off_services_have_no_documents(
    docs: Documents,
) -> None:
    assert docs.table("unknown.example") is None
    assert docs.table("nothing.example") is None
    assert docs.table("bad..name") is None


# ---------------------------------------------------------------------------------------------
# Thunderbird (readFromXML): what its reader requires of a clientConfig


THUNDERBIRD_SOCKET = {"plain", "SSL", "STARTTLS"}
THUNDERBIRD_AUTH = {
    "password-cleartext",
    "password-encrypted",
    "secure",
    "NTLM",
    "GSSAPI",
    "client-IP-address",
    "TLS-client-cert",
    "OAuth2",
    "none",
}
HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{1,63}$")


def thunderbird_read(body: bytes) -> dict[str, list[dict[str, str]]]:
    """The rules of Thunderbird's reader: clientConfig root with one emailProvider; each server
    element's type known (others are skipped, not fatal), hostname given, port 1-65535,
    socketType and authentication from its lists; at least one incoming and one outgoing
    server that pass, else the config is refused."""
    root = ET.fromstring(body)
    assert root.tag == "clientConfig"
    providers = root.findall("emailProvider")
    assert len(providers) == 1
    provider = providers[0]
    assert provider.get("id")
    assert provider.findtext("displayName")
    out: dict[str, list[dict[str, str]]] = {"incoming": [], "outgoing": []}
    for element, kinds, key in (
        ("incomingServer", {"imap", "pop3"}, "incoming"),
        ("outgoingServer", {"smtp"}, "outgoing"),
    ):
        for server in provider.findall(element):
            if server.get("type") not in kinds:
                continue
            fields = {child.tag: (child.text or "") for child in server}
            assert fields["hostname"]
            assert 1 <= int(fields["port"]) <= 65535
            assert fields["socketType"] in THUNDERBIRD_SOCKET
            assert all(a.text in THUNDERBIRD_AUTH for a in server.findall("authentication"))
            out[key].append({"type": server.get("type", ""), **fields})
    assert out["incoming"] and out["outgoing"], "Thunderbird needs both kinds of server"
    return out


@pytest.mark.parametrize("domain", DOMAINS)
def test_thunderbird_reads_the_autoconfig(docs: Documents, domain: str) -> None:
    read = thunderbird_read(autoconfig(docs, domain))
    first = read["incoming"][0]
    assert first["socketType"] in ("SSL", "STARTTLS")
    assert first["username"] == "%EMAILADDRESS%"


def test_the_autoconfig_has_the_draft_calendar_and_address_book(docs: Documents) -> None:
    root = ET.fromstring(autoconfig(docs, "example.com"))
    assert root.findtext("calendar/serverURL") == "https://dav.example.net:8443/cal/"
    assert root.findtext("addressBook/serverURL") == "https://dav.example.net/card/"


# ---------------------------------------------------------------------------------------------
# Thunderbird Android (its autoconfig parser): stricter on names and values


ANDROID_PLACEHOLDERS = re.compile(r"%(EMAILADDRESS|EMAILLOCALPART|EMAILDOMAIN)%")


def android_read(body: bytes, domain: str) -> list[tuple[str, str, int, str, str]]:
    """Thunderbird Android's rules: the emailProvider id a valid host name; every <domain> a
    valid domain name; hostname a valid host name; port 1-65535; socketType plain, SSL or
    STARTTLS; authentication one it knows; the username only placeholders it replaces; the
    first imap/pop3 incoming and the first smtp outgoing server are taken."""
    root = ET.fromstring(body)
    provider = root.find("emailProvider")
    assert provider is not None
    assert HOST.match(provider.get("id", "")), provider.get("id")
    domains = [d.text or "" for d in provider.findall("domain")]
    assert domain in domains and all(HOST.match(d) for d in domains)
    taken = []
    for element, kinds in (("incomingServer", ("imap", "pop3")), ("outgoingServer", ("smtp",))):
        for server in provider.findall(element):
            if server.get("type") not in kinds:
                continue
            host = server.findtext("hostname") or ""
            assert HOST.match(host), host
            port = int(server.findtext("port") or "0")
            assert 1 <= port <= 65535
            socket = server.findtext("socketType") or ""
            assert socket in ("plain", "SSL", "STARTTLS")
            auth = server.findtext("authentication") or ""
            assert auth in ("password-cleartext", "password-encrypted", "OAuth2", "none")
            user = server.findtext("username") or ""
            assert ANDROID_PLACEHOLDERS.sub("", user) == "" or "%" not in user
            taken.append((server.get("type", ""), host, port, socket, user))
            break
    return taken


@pytest.mark.parametrize("domain", DOMAINS)
def test_thunderbird_android_reads_the_autoconfig(docs: Documents, domain: str) -> None:
    taken = android_read(autoconfig(docs, domain), domain)
    assert [kind for kind, *_ in taken] in (["imap", "smtp"], ["pop3", "smtp"])


def test_values_are_escaped_in_every_format(docs: Documents, loaded: tuple[Config, Index]) -> None:
    name = 'Acme & "Sons" <example.com>'
    root = ET.fromstring(autoconfig(docs, "example.com"))
    assert root.findtext("emailProvider/displayName") == name
    found = docs.table("example.com")
    assert found is not None
    pox = documents.complete(documents.pox(found[0], settings(loaded)), "example.com")
    assert ET.fromstring(pox).findtext(f".//{{{documents.POX_OUTLOOK_NS}}}DisplayName") == name
    pacc = docs.pacc("example.com")
    assert pacc is not None and json.loads(pacc)["info"]["provider"]["name"] == name
    profile = plistlib.loads(
        documents.mobileconfig(found[0], settings(loaded), "example.com", "a<b>&c@example.com")
    )
    assert profile["PayloadContent"][0]["EmailAddress"] == "a<b>&c@example.com"


# ---------------------------------------------------------------------------------------------
# Outlook's POX response against Microsoft's schema (responseschema 2006a)


POX_TYPES = {"IMAP", "POP3", "SMTP", "CalDAV", "CardDAV"}
POX_PROTOCOL_ELEMENTS = {
    "Type",
    "Server",
    "Port",
    "DomainRequired",
    "LoginName",
    "SPA",
    "SSL",
    "Encryption",
    "AuthRequired",
    "UsePOPAuth",
    "SMTPLast",
}


def test_the_pox_response_follows_the_schema(docs: Documents, loaded: tuple[Config, Index]) -> None:
    found = docs.table("example.com")
    assert found is not None
    body = documents.complete(documents.pox(found[0], settings(loaded)), "example.com")
    root = ET.fromstring(body)
    ns = {"r": documents.POX_RESPONSE_NS, "o": documents.POX_OUTLOOK_NS}
    assert root.tag == f"{{{documents.POX_RESPONSE_NS}}}Autodiscover"
    account = root.find("o:Response/o:Account", ns)
    assert account is not None
    assert account.findtext("o:AccountType", namespaces=ns) == "email"
    assert account.findtext("o:Action", namespaces=ns) == "settings"
    protocols = account.findall("o:Protocol", ns)
    seen = []
    for protocol in protocols:
        names = {child.tag.split("}")[1] for child in protocol}
        assert names <= POX_PROTOCOL_ELEMENTS
        kind = protocol.findtext("o:Type", namespaces=ns)
        assert kind in POX_TYPES
        seen.append(kind)
        if kind in ("IMAP", "POP3", "SMTP"):
            assert 1 <= int(protocol.findtext("o:Port", namespaces=ns) or 0) <= 65535
            assert protocol.findtext("o:SSL", namespaces=ns) == "on"
            assert protocol.findtext("o:Encryption", namespaces=ns) in ("SSL", "TLS")
            for flag in ("DomainRequired", "SPA", "AuthRequired"):
                assert protocol.findtext(f"o:{flag}", namespaces=ns) in ("on", "off")
    assert seen[0] == "IMAP" and "SMTP" in seen and {"CalDAV", "CardDAV"} <= set(seen)
    first = protocols[0]
    assert first.findtext("o:Server", namespaces=ns) == "imap-high.example.net"
    assert first.findtext("o:Encryption", namespaces=ns) == "SSL"


def test_the_json_points_at_the_pox_url(docs: Documents) -> None:
    found = docs.table("example.com")
    assert found is not None
    assert json.loads(documents.complete(documents.autodiscover_json(found[0]), "example.com")) == {
        "Protocol": "AutodiscoverV1",
        "Url": "https://autodiscover.example.net/autodiscover/autodiscover.xml",
    }
    branded = docs.table("shop.example")
    assert branded is not None
    body = documents.complete(documents.autodiscover_json(branded[0]), "shop.example")
    assert (
        json.loads(body)["Url"] == "https://autodiscover.shop.example/autodiscover/autodiscover.xml"
    )


# ---------------------------------------------------------------------------------------------
# Apple's configuration profile, read by plistlib


def test_the_mobileconfig_is_a_valid_profile(docs: Documents, loaded: tuple[Config, Index]) -> None:
    found = docs.table("example.com")
    assert found is not None
    body = documents.mobileconfig(found[0], settings(loaded), "example.com", "bob@example.com")
    profile = plistlib.loads(body)
    assert profile["PayloadType"] == "Configuration" and profile["PayloadVersion"] == 1
    kinds = [p["PayloadType"] for p in profile["PayloadContent"]]
    assert kinds == [
        "com.apple.mail.managed",
        "com.apple.caldav.account",
        "com.apple.carddav.account",
    ]
    mail = profile["PayloadContent"][0]
    assert mail["IncomingMailServerHostName"] == "imap-high.example.net"
    assert mail["IncomingMailServerPortNumber"] == 993
    assert mail["OutgoingMailServerHostName"] == "smtp.example.net"
    assert mail["IncomingMailServerUsername"] == "bob@example.com"
    assert not any(
        "Password" in key and key != "OutgoingPasswordSameAsIncomingPassword" for key in mail
    )
    uuids = [profile["PayloadUUID"]] + [p["PayloadUUID"] for p in profile["PayloadContent"]]
    assert len(set(uuids)) == len(uuids) and all(uuid.UUID(u) for u in uuids)
    again = plistlib.loads(
        documents.mobileconfig(found[0], settings(loaded), "example.com", "eve@example.com")
    )
    assert again["PayloadUUID"] == profile["PayloadUUID"]  # stable per domain
    other = docs.table("example.org")
    assert other is not None
    third = plistlib.loads(documents.mobileconfig(other[0], settings(loaded), "example.org", None))
    assert third["PayloadUUID"] != profile["PayloadUUID"]
    assert "EmailAddress" not in third["PayloadContent"][0]


# ---------------------------------------------------------------------------------------------
# PACC: the draft's fields, and DNS's digest of exactly these bytes


def test_pacc_has_the_draft_fields(docs: Documents) -> None:
    body = docs.pacc("example.com")
    assert body is not None
    config = json.loads(body)
    assert set(config) == {"protocols", "authentication", "info"}
    protocols = config["protocols"]
    assert protocols["imap"] == {"host": "imap-high.example.net"}  # implicit TLS on 993
    assert protocols["smtp"] == {"host": "smtp.example.net"}
    assert protocols["pop3"] == {"host": "pop.example.net"}
    assert protocols["jmap"]["url"].startswith("https://")
    assert config["authentication"] == {"password": True}
    assert config["info"]["provider"]["name"]
    # a port PACC cannot say (10993) and a STARTTLS-only submission are left out
    org = docs.pacc("example.org")
    assert org is not None and "imap" not in json.loads(org)["protocols"]
    shop = docs.pacc("shop.example")
    assert shop is not None and json.loads(shop)["protocols"] == {
        "imap": {"host": "mail.shop.example"}
    }


def dns_txt(index: Index, name: str) -> list[str]:
    query = dns.message.make_query(name, "TXT")
    reply = dns.message.from_wire(_reply(index, query.to_wire()))
    return [b"".join(r.strings).decode() for rrset in reply.answer for r in rrset]


def test_the_dns_digest_is_of_exactly_the_served_document(
    docs: Documents, loaded: tuple[Config, Index]
) -> None:
    index = loaded[1]
    for domain in DOMAINS:
        body = docs.pacc(domain)
        assert body is not None
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        for name in (f"_ua-auto-config.{domain}", f"_UA-Auto-Config.{domain.upper()}"):
            assert dns_txt(index, name) == [f"v=UAAC1; a=sha256; d={digest}"]
    assert _tcp_zone(index, "nothing.example") and not dns_txt(
        index, "_ua-auto-config.nothing.example"
    )


def _tcp_zone(index: Index, domain: str) -> bool:
    return to_wire("_tcp." + domain) in index.zones


def test_pacc_off_publishes_no_txt(tmp_path: Path) -> None:
    path = tmp_path / "srvd.yaml"
    path.write_text(CONFIG.replace("pacc: on", "pacc: off"))
    config = load_config(path)
    index = build_index(config, None, deriver(config.http))
    assert not any(apex.startswith(b"\x0f_ua-auto-config") for apex in index.zones)
    assert config.http is not None and Documents(index, config.http).pacc("example.com") is None


def test_facts_are_read_once_per_table(docs: Documents, loaded: tuple[Config, Index]) -> None:
    index = loaded[1]
    shop = index.zones[to_wire("_tcp.shop.example")].table
    books = index.zones[to_wire("_tcp.xn--bcher-kva.example")].table
    assert shop is books  # one profile, one Table
    assert table_facts(shop) == table_facts(books)
    docs.table("shop.example")
    docs.table("xn--bcher-kva.example")
    assert sum(1 for table, *_ in docs.tables.values() if table is shop) == 1


# ---------------------------------------------------------------------------------------------
# What clients send


def test_addresses_are_read_leniently_and_checked() -> None:
    assert address_of(" Bob.Smith+tag@Example.COM ") == "Bob.Smith+tag@example.com"
    assert address_of("x@bücher.example") == "x@xn--bcher-kva.example"
    for bad in ("", "nobody", "@example.com", "a@", "a@bad..name", "a\n@example.com", "a" * 300):
        with pytest.raises(BadRequest):
            address_of(bad)


POX_REQUEST = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/'
    b'requestschema/2006"><Request><EMailAddress>%s</EMailAddress>'
    b"<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/"
    b"responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>"
)

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Autodiscover><Request><EMailAddress>&lol3;</EMailAddress></Request></Autodiscover>"""

EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Autodiscover><Request><EMailAddress>&xxe;</EMailAddress></Request></Autodiscover>"""

PARAMETER = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY % p SYSTEM "http://192.0.2.1/evil.dtd"> %p;]>
<Autodiscover/>"""


def test_the_pox_request_is_read_without_entities() -> None:
    assert pox_address(POX_REQUEST % b"bob@example.com") == "bob@example.com"
    assert pox_address(b"<Autodiscover><Request/></Autodiscover>") is None
    for hostile in (
        BILLION_LAUGHS,
        EXTERNAL,
        PARAMETER,
        b"<a>",
        b"\xff\xfe",
        b"",
        b"<a>&undefined;</a>",
    ):
        with pytest.raises(BadRequest):
            pox_address(hostile)
    with pytest.raises(BadRequest):
        pox_address(POX_REQUEST % (b"a" * 10_000 + b"@example.com"))


def _reply(index: Index, query: bytes) -> bytes:
    reply = Responder(index).respond(query, True)
    assert reply is not None
    return reply


# ---------------------------------------------------------------------------------------------
# The http: keys, as srvd check sees them


def test_check_counts_the_zones_serve_builds(tmp_path: Path) -> None:
    from srvd.config.load import read_config
    from srvd.index.build import Counter

    path = tmp_path / "srvd.yaml"
    path.write_text(CONFIG)
    counter = Counter(deriver)
    config = read_config(path, counter)
    full = load_config(path)
    assert counter.stats(config) == build_index(full, None, deriver(full.http)).stats


def test_http_keys_are_validated(tmp_path: Path) -> None:
    from srvd.config import ConfigError

    path = tmp_path / "srvd.yaml"
    path.write_text(
        "zone: {nameservers: [ns1.example.net]}\n"
        "http:\n"
        "  listen: [127.0.0.1:80, nonsense]\n"
        "  pacc: maybe\n"
        "  username: uid\n"
        "  authentication: kerberos\n"
        "  display_name: ''\n"
        "  max_body: 10\n"
        "  idle_timeout: 0\n"
        "  colour: blue\n"
        "domains: {}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    rendered = [p.render() for p in caught.value.problems]
    for key in (
        "http.listen[1]",
        "http.pacc",
        "http.username",
        "http.authentication",
        "http.display_name",
        "http.max_body",
        "http.idle_timeout",
        "http.colour",
    ):
        assert any(f":4: {key}:" in line or f": {key}:" in line for line in rendered), (
            key,
            rendered,
        )
    assert all(line.startswith(f"{path}:") for line in rendered)
    path.write_text("zone: {nameservers: [ns1.example.net]}\nhttp: {pacc: on}\ndomains: {}\n")
    with pytest.raises(ConfigError, match=r"http\.listen"):
        load_config(path)
    path.write_text("zone: {nameservers: [ns1.example.net]}\nhttp: off\ndomains: {}\n")
    assert load_config(path).http is None


def test_an_http_key_after_the_domains_is_read_in_order(tmp_path: Path) -> None:
    """The streaming reader gives domains to the build process as it reads them: an http: key
    after them sends it to the exact reader, and PACC's TXT is still there."""
    head, _, domains = CONFIG.partition("domains:")
    http_block = head[head.index("http:") : head.index("profiles:")]
    path = tmp_path / "srvd.yaml"
    path.write_text(head.replace(http_block, "") + "domains:" + domains + http_block)
    from srvd.server.loading import load_aside

    built = load_aside(str(path))
    assert to_wire("_ua-auto-config.example.com") in built.index.zones


def test_username_local(docs: Documents, loaded: tuple[Config, Index]) -> None:
    from dataclasses import replace

    local = replace(settings(loaded), username="local")
    found = docs.table("example.com")
    assert found is not None
    facts = found[0]
    root = ET.fromstring(documents.complete(documents.autoconfig(facts, local), "example.com"))
    assert {u.text for u in root.iter("username")} == {"%EMAILLOCALPART%"}
    android_read(
        documents.complete(documents.autoconfig(facts, local), "example.com"), "example.com"
    )
    pox = ET.fromstring(documents.complete(documents.pox(facts, local, "a<&>b"), "example.com"))
    names = {e.text for e in pox.iter(f"{{{documents.POX_OUTLOOK_NS}}}LoginName")}
    assert names == {"a<&>b"}
    profile = plistlib.loads(documents.mobileconfig(facts, local, "example.com", "bob@example.com"))
    assert profile["PayloadContent"][0]["IncomingMailServerUsername"] == "bob"
    assert (
        documents.pacc(facts, local) is None
        or "imap" not in json.loads(documents.pacc(facts, local) or b"{}")["protocols"]
    )


def test_documents_kept_are_bounded(
    loaded: tuple[Config, Index], monkeypatch: pytest.MonkeyPatch
) -> None:
    import srvd.server.web

    monkeypatch.setattr(srvd.server.web, "MAX_TABLES", 2)
    config, index = loaded
    assert config.http is not None
    bounded = Documents(index, config.http)
    fresh = Documents(index, config.http)
    for _ in range(2):
        for domain in DOMAINS:  # three distinct Tables: full, the override, branded
            assert bounded.pacc(domain) == fresh.pacc(domain)
            assert len(bounded.tables) <= 2


@settings_(max_examples=60, deadline=None)
@given(
    name=st.text(
        st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\ufffe\uffff"),
        min_size=1,
        max_size=60,
    )
)
def test_any_display_name_survives_every_format(docs: Documents, name: str) -> None:
    """Whatever the operator writes (but control characters, which srvd check refuses), every
    client reads back exactly that name."""
    from dataclasses import replace

    if not name.strip():
        return
    chosen = replace(docs.settings, display_name=name)
    found = docs.table("example.com")
    assert found is not None
    facts = found[0]
    want = name.replace("{domain}", "example.com")
    xml = documents.complete(documents.autoconfig(facts, chosen), "example.com")
    assert ET.fromstring(xml).findtext("emailProvider/displayName") == want
    pox = documents.complete(documents.pox(facts, chosen), "example.com")
    found_name = ET.fromstring(pox).findtext(f".//{{{documents.POX_OUTLOOK_NS}}}DisplayName")
    assert found_name == want
    pacc = documents.pacc(facts, chosen)
    assert pacc is not None
    assert json.loads(documents.complete(pacc, "example.com"))["info"]["provider"]["name"] == want
    profile = plistlib.loads(documents.mobileconfig(facts, chosen, "example.com", None))
    assert profile["PayloadDisplayName"] == want


# ---------------------------------------------------------------------------------------------
# http.profiles: what DNS cannot say, per profile

PROFILES = CONFIG.replace(
    "  display_name: 'Acme & \"Sons\" <{domain}>'\n",
    "  display_name: 'Acme & \"Sons\" <{domain}>'\n"
    "  profiles:\n"
    "    branded: {display_name: 'Brand {domain}', authentication: OAuth2}\n"
    "    full: {username: local}\n",
)


@pytest.mark.parametrize("how", ["build process", "build_index"])
def test_each_profile_has_its_own_hints(tmp_path: Path, how: str) -> None:
    from srvd.server.loading import load_aside

    path = tmp_path / "srvd.yaml"
    path.write_text(PROFILES)
    if how == "build process":
        built = load_aside(str(path))
        config, index = built.config, built.index
    else:
        config = load_config(path)
        index = build_index(config, None, deriver(config.http))
    assert config.http is not None
    docs = Documents(index, config.http)
    shop = ET.fromstring(autoconfig(docs, "shop.example"))
    assert shop.findtext("emailProvider/displayName") == "Brand shop.example"
    assert {a.text for a in shop.iter("authentication")} == {"OAuth2"}
    assert {u.text for u in shop.iter("username")} == {"%EMAILADDRESS%"}
    for domain in ("example.com", "example.org"):  # the profile, and an override of it
        root = ET.fromstring(autoconfig(docs, domain))
        assert root.findtext("emailProvider/displayName") == f'Acme & "Sons" <{domain}>'
        assert {u.text for u in root.iter("username")} == {"%EMAILLOCALPART%"}
    # PACC follows the hints too, and DNS still vouches for exactly what HTTP serves
    for domain in ("shop.example", "xn--bcher-kva.example"):
        body = docs.pacc(domain)
        assert body is not None and json.loads(body)["authentication"] == {"password": False}
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        assert dns_txt(index, f"_ua-auto-config.{domain}") == [f"v=UAAC1; a=sha256; d={digest}"]
    assert docs.pacc("example.com") is None  # username: local: nothing PACC can say
    assert dns_txt(index, "_ua-auto-config.example.com") == []


def test_http_profiles_must_name_profiles(tmp_path: Path) -> None:
    from srvd.config import ConfigError

    path = tmp_path / "srvd.yaml"
    path.write_text(PROFILES.replace("    branded: {display_name", "    brandd: {display_name"))
    with pytest.raises(
        ConfigError, match=r"http\.profiles\.brandd: unknown profile 'brandd'.*branded"
    ):
        load_config(path)
    path.write_text(PROFILES.replace("{username: local}", "{username: uid, colour: red}"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    rendered = "\n".join(p.render() for p in caught.value.problems)
    assert "http.profiles.full.username:" in rendered and "http.profiles.full.colour:" in rendered
