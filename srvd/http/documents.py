"""The discovery documents, as bytes, from a Table's facts (srvd.http.facts) and the ``http:``
settings.

Each document is made once per Table with ``{domain}`` standing for the customer domain
(``skeleton``), then completed per domain by replacing it (``complete``): a domain costs a
``bytes.replace``, and memory grows with the number of distinct Tables (profiles and distinct
overrides), never with the number of domains. Every value is escaped for its format (XML text
and attributes, JSON strings, plists by plistlib); the customer domain itself is an IDNA host
name (letters, digits, hyphens, dots), which no format needs to escape.
"""

from __future__ import annotations

import json
import plistlib
import uuid
from collections.abc import Iterable
from xml.sax.saxutils import escape, quoteattr

from srvd.config.model import HttpSettings
from srvd.http.facts import Facts, Server, Web
from srvd.wire.discovery import TEMPLATE

DOMAIN = TEMPLATE.encode()  # what a skeleton holds where the customer domain goes
POX_RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
POX_OUTLOOK_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
MOBILECONFIG_TYPE = "application/x-apple-aspen-config"
_UUIDS = uuid.UUID("6f1f3c1e-5b1a-4c55-9a0e-3c3b7d2f8a10")  # srvd's namespace for uuid5

# Thunderbird's <authentication> values; for CalDAV/CardDAV, HTTP's
_AUTOCONFIG_AUTH = {
    "password-cleartext": "password-cleartext",
    "password-encrypted": "password-encrypted",
    "OAuth2": "OAuth2",
}


def complete(skeleton: bytes, domain: str) -> bytes:
    """A skeleton completed for one customer domain (lowercase ASCII)."""
    return skeleton.replace(DOMAIN, domain.encode("ascii")) if DOMAIN in skeleton else skeleton


def _text(value: str) -> str:
    return escape(value)


def _username(settings: HttpSettings) -> str:
    return "%EMAILADDRESS%" if settings.username == "email" else "%EMAILLOCALPART%"


# ---------------------------------------------------------------------------------------------
# Mozilla autoconfig (clientConfig 1.1, with the calendar/address-book elements of the draft)


def autoconfig(facts: Facts, settings: HttpSettings) -> bytes:
    """clientConfig 1.1 for Thunderbird (desktop and Android), K-9, Delta Chat."""
    user = _username(settings)
    auth = _AUTOCONFIG_AUTH[settings.authentication]
    name = _text(settings.display_name)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<clientConfig version="1.1">',
        f'  <emailProvider id="{TEMPLATE}">',
        f"    <domain>{TEMPLATE}</domain>",
        f"    <displayName>{name}</displayName>",
        f"    <displayShortName>{name}</displayShortName>",
    ]
    for element, servers in (
        ("incomingServer", facts.incoming),
        ("outgoingServer", facts.outgoing),
    ):
        for server in servers:
            lines += [
                f"    <{element} type={quoteattr(server.protocol)}>",
                f"      <hostname>{_text(server.host)}</hostname>",
                f"      <port>{server.port}</port>",
                f"      <socketType>{'SSL' if server.tls else 'STARTTLS'}</socketType>",
                f"      <authentication>{auth}</authentication>",
                f"      <username>{user}</username>",
                f"    </{element}>",
            ]
    lines.append("  </emailProvider>")
    http_auth = "OAuth2" if settings.authentication == "OAuth2" else "http-basic"
    for element, kind, web in (
        ("addressBook", "carddav", facts.carddav),
        ("calendar", "caldav", facts.caldav),
    ):
        if web is None:
            continue
        lines += [
            f'  <{element} type="{kind}">',
            f"    <username>{user}</username>",
            f"    <authentication>{http_auth}</authentication>",
            f"    <serverURL>{_text(web.url)}</serverURL>",
            f"  </{element}>",
        ]
    lines.append("</clientConfig>")
    return ("\n".join(lines) + "\n").encode("utf-8")


# ---------------------------------------------------------------------------------------------
# Outlook's Autodiscover: the POX response, and the JSON that points at it


def _pox_protocol(server: Server, settings: HttpSettings, login: str | None) -> list[str]:
    lines = [
        "      <Protocol>",
        f"        <Type>{server.protocol.upper()}</Type>",
        f"        <Server>{_text(server.host)}</Server>",
        f"        <Port>{server.port}</Port>",
        "        <DomainRequired>off</DomainRequired>",
    ]
    if login is not None:
        lines.append(f"        <LoginName>{_text(login)}</LoginName>")
    spa = "on" if settings.authentication == "password-encrypted" else "off"
    lines += [
        f"        <SPA>{spa}</SPA>",
        "        <SSL>on</SSL>",
        f"        <Encryption>{'SSL' if server.tls else 'TLS'}</Encryption>",
        "        <AuthRequired>on</AuthRequired>",
    ]
    if server.protocol == "smtp":
        lines += ["        <UsePOPAuth>off</UsePOPAuth>", "        <SMTPLast>off</SMTPLast>"]
    lines.append("      </Protocol>")
    return lines


def pox(facts: Facts, settings: HttpSettings, login: str | None = None) -> bytes:
    """Outlook's POX response (responseschema 2006a): every incoming and outgoing server, and
    CalDAV/CardDAV entries (their URL in ``Server``) that eM Client reads. ``login``: the user
    name when the settings say ``username: local`` (the local part of the requested address)."""
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<Autodiscover xmlns="{POX_RESPONSE_NS}">',
        f'  <Response xmlns="{POX_OUTLOOK_NS}">',
        "    <User>",
        f"      <DisplayName>{_text(settings.display_name)}</DisplayName>",
        "    </User>",
        "    <Account>",
        "      <AccountType>email</AccountType>",
        "      <Action>settings</Action>",
    ]
    for server in (*facts.incoming, *facts.outgoing):
        lines += _pox_protocol(server, settings, login)
    for kind, web in (("CalDAV", facts.caldav), ("CardDAV", facts.carddav)):
        if web is not None:
            lines += [
                "      <Protocol>",
                f"        <Type>{kind}</Type>",
                f"        <Server>{_text(web.url)}</Server>",
                "        <DomainRequired>off</DomainRequired>",
            ]
            if login is not None:
                lines.append(f"        <LoginName>{_text(login)}</LoginName>")
            lines.append("      </Protocol>")
    lines += ["    </Account>", "  </Response>", "</Autodiscover>"]
    return ("\n".join(lines) + "\n").encode("utf-8")


def pox_url(facts: Facts) -> str:
    """Where the POX document is: the ``_autodiscover._tcp`` target, else autodiscover.D."""
    web = facts.autodiscover
    if web is None:
        return f"https://autodiscover.{TEMPLATE}/autodiscover/autodiscover.xml"
    return Web("autodiscover", web.host, web.port, True, "/autodiscover/autodiscover.xml").url


def autodiscover_json(facts: Facts) -> bytes:
    """Autodiscover v1.0's answer to Protocol=AutodiscoverV1: the POX URL."""
    return _json({"Protocol": "AutodiscoverV1", "Url": pox_url(facts)})


def autodiscover_json_error(message: str) -> bytes:
    return _json({"ErrorCode": "InvalidProtocol", "ErrorMessage": message})


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), sort_keys=True).encode()


# ---------------------------------------------------------------------------------------------
# PACC (draft-ietf-mailmaint-pacc): the JSON document and the TXT record that vouches for it


def pacc(facts: Facts, settings: HttpSettings) -> bytes | None:
    """The PACC configuration, or None when the profile has nothing PACC can express.

    PACC names one server per protocol, reached with implicit TLS on the protocol's standard
    port (IMAP 993, POP3 995, SMTP submission 465) and the full address as user name: the first
    such server of each protocol is given, STARTTLS servers and other ports are left out. With
    ``username: local`` (PACC's user name is always the address) there is no PACC document."""
    if settings.username != "email":
        return None
    protocols: dict[str, dict[str, str]] = {}
    standard = {"imap": 993, "pop3": 995, "smtp": 465}
    for server in (*facts.incoming, *facts.outgoing):
        if server.tls and server.port == standard[server.protocol]:
            protocols.setdefault(server.protocol, {"host": server.host})
    for web in (facts.jmap, facts.caldav, facts.carddav):
        if web is not None and web.url.startswith("https://"):
            protocols[web.protocol] = {"url": web.url}
    if not protocols:
        return None
    authentication: dict[str, object] = {"password": settings.authentication != "OAuth2"}
    return _json(
        {
            "authentication": authentication,
            "info": {"provider": {"name": settings.display_name}},
            "protocols": protocols,
        }
    )


# ---------------------------------------------------------------------------------------------
# Apple configuration profiles (.mobileconfig)


def _uuid(domain: str, what: str) -> str:
    return str(uuid.uuid5(_UUIDS, f"{what}.{domain}")).upper()


def _reverse(domain: str) -> str:
    return ".".join(reversed(domain.split(".")))


def mobileconfig(facts: Facts, settings: HttpSettings, domain: str, address: str | None) -> bytes:
    """An unsigned configuration profile: a mail payload (the first incoming and outgoing
    servers), CalDAV and CardDAV payloads; stable UUIDs per domain; never a password."""
    name = complete(settings.display_name.encode(), domain).decode()
    ident = "net.srvd.autoconfig." + _reverse(domain)
    user = None
    if address is not None:
        user = address if settings.username == "email" else address.rpartition("@")[0]
    payloads: list[dict[str, object]] = []
    incoming = facts.incoming[0] if facts.incoming else None
    outgoing = facts.outgoing[0] if facts.outgoing else None
    if incoming is not None and outgoing is not None:
        mail: dict[str, object] = {
            "PayloadType": "com.apple.mail.managed",
            "PayloadVersion": 1,
            "PayloadIdentifier": ident + ".mail",
            "PayloadUUID": _uuid(domain, "mail"),
            "PayloadDisplayName": name,
            "EmailAccountDescription": name,
            "EmailAccountType": "EmailTypeIMAP" if incoming.protocol == "imap" else "EmailTypePOP",
            "IncomingMailServerHostName": _host(incoming.host, domain),
            "IncomingMailServerPortNumber": incoming.port,
            "IncomingMailServerUseSSL": True,  # Apple's clients use STARTTLS on other ports
            "IncomingMailServerAuthentication": "EmailAuthPassword",
            "OutgoingMailServerHostName": _host(outgoing.host, domain),
            "OutgoingMailServerPortNumber": outgoing.port,
            "OutgoingMailServerUseSSL": True,
            "OutgoingMailServerAuthentication": "EmailAuthPassword",
            "OutgoingPasswordSameAsIncomingPassword": True,
        }
        if address is not None and user is not None:
            mail["EmailAddress"] = address
            mail["IncomingMailServerUsername"] = user
            mail["OutgoingMailServerUsername"] = user
        payloads.append(mail)
    for kind, web in (("CalDAV", facts.caldav), ("CardDAV", facts.carddav)):
        if web is None:
            continue
        payload: dict[str, object] = {
            "PayloadType": f"com.apple.{kind.lower()}.account",
            "PayloadVersion": 1,
            "PayloadIdentifier": f"{ident}.{kind.lower()}",
            "PayloadUUID": _uuid(domain, kind.lower()),
            "PayloadDisplayName": f"{name} ({kind})",
            f"{kind}AccountDescription": name,
            f"{kind}HostName": _host(web.host, domain),
            f"{kind}Port": web.port,
            f"{kind}UseSSL": web.tls,
            f"{kind}PrincipalURL": complete(web.url.encode(), domain).decode(),
        }
        if user is not None:
            payload[f"{kind}Username"] = user
        payloads.append(payload)
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": ident,
        "PayloadUUID": _uuid(domain, "profile"),
        "PayloadDisplayName": name,
        "PayloadDescription": f"Mail, calendar and contacts settings for {domain}",
        "PayloadRemovalDisallowed": False,
        "PayloadContent": payloads,
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML, sort_keys=True)


def _host(host: str, domain: str) -> str:
    return complete(host.encode(), domain).decode()


def every(facts: Facts, settings: HttpSettings) -> Iterable[tuple[str, bytes | None]]:
    """The skeletons of one Table, by kind (what srvd.server.web keeps per Table)."""
    yield "autoconfig", autoconfig(facts, settings)
    yield "pox", pox(facts, settings)  # without LoginName (username: email)
    yield "autodiscover.json", autodiscover_json(facts)
    yield "pacc", pacc(facts, settings) if settings.pacc else None
