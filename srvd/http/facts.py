"""What a domain's discovery documents say, read from the index exactly as DNS serves it.

The facts come from the ``_tcp.<domain>`` zone's Table: its SRV RRsets (``_imaps._tcp`` and the
others) and the ``path=`` TXT of the DAV services. A Table is shared by every domain on a profile
(srvd.index.model), so the facts are read once per Table (``table_facts``) and hold ``{domain}``
where a record is templated; the documents made of them (srvd.http.documents) are completed per
domain. An override that DNS serves is served here too, because it is the same Table.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from srvd.index.model import RRset, Table, Template
from srvd.wire.discovery import SRV, TEMPLATE, TXT
from srvd.wire.names import to_wire, wire_to_text

_SRV_FIXED = struct.Struct("!HHH")
_RDATA_AT = 12  # owner pointer (2), type, class, TTL (8), RDLENGTH (2)

# (service key, protocol, implicit TLS): the mail services the documents describe, in the order
# RFC 8314 §3 prefers within each protocol (implicit TLS before STARTTLS)
Service = tuple[str, str, bool]  # key, protocol, implicit TLS
INCOMING: tuple[Service, ...] = (
    ("imaps", "imap", True),
    ("imap", "imap", False),
    ("pop3s", "pop3", True),
)
INCOMING += (("pop3", "pop3", False),)
OUTGOING: tuple[Service, ...] = (("submissions", "smtp", True), ("submission", "smtp", False))
DAV: tuple[Service, ...] = (
    ("caldavs", "caldav", True),
    ("caldav", "caldav", False),
    ("carddavs", "carddav", True),
    ("carddav", "carddav", False),
)


@dataclass(frozen=True, slots=True)
class Server:
    """One SRV record as a client's server entry."""

    protocol: str  # imap, pop3, smtp
    host: str  # may end in {domain}
    port: int
    tls: bool  # implicit TLS ("SSL" in autoconfig) or STARTTLS
    priority: int
    weight: int


@dataclass(frozen=True, slots=True)
class Web:
    """A CalDAV or CardDAV service, or JMAP: its URL (the host may end in {domain})."""

    protocol: str  # caldav, carddav, jmap
    host: str
    port: int
    tls: bool
    path: str  # "/" when DNS has no path= TXT

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        default = 443 if self.tls else 80
        port = "" if self.port == default else f":{self.port}"
        return f"{scheme}://{self.host}{port}{self.path}"


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything the documents of one Table say, ``{domain}`` still unfilled."""

    incoming: tuple[Server, ...]
    outgoing: tuple[Server, ...]
    caldav: Web | None
    carddav: Web | None
    jmap: Web | None
    autodiscover: Web | None  # the _autodiscover._tcp target: where Outlook's POX URL points
    templated: bool  # some host name holds {domain}

    @property
    def empty(self) -> bool:
        return not (self.incoming or self.outgoing or self.caldav or self.carddav or self.jmap)


def _records(rrset: RRset) -> list[tuple[int, int, int, str]]:
    """(priority, weight, port, target) of an SRV RRset, in priority order then weight (highest
    first), the configured order among equals; a templated target ends in {domain}."""
    out: list[tuple[int, int, int, str]] = []
    for items, _weights, _total in rrset.groups:
        group = []
        for piece in items:
            if isinstance(piece, Template):
                priority, weight, port = _SRV_FIXED.unpack_from(piece.fixed)
                head = wire_to_text(piece.fixed[6:] + b"\x00")
                target = f"{head}.{TEMPLATE}" if head else TEMPLATE
            else:
                priority, weight, port = _SRV_FIXED.unpack_from(piece, _RDATA_AT)
                target = wire_to_text(piece[_RDATA_AT + 6 :])
            group.append((priority, weight, port, target))
        group.sort(key=lambda record: -record[1])  # stable: the configured order among equals
        out.extend(group)
    return out


def _texts(rrset: RRset) -> list[str]:
    """The texts of a TXT RRset (a templated one still holds {domain})."""
    out = []
    for items, _weights, _total in rrset.groups:
        for piece in items:
            if isinstance(piece, Template):
                out.append(piece.fixed.decode("utf-8", "replace"))
                continue
            rdata, pos, text = piece[_RDATA_AT:], 0, b""
            while pos < len(rdata):
                length = rdata[pos]
                text += rdata[pos + 1 : pos + 1 + length]
                pos += length + 1
            out.append(text.decode("utf-8", "replace"))
    return out


def _node_label(service: str) -> bytes:
    return to_wire("_" + service)[:-1]


def table_facts(table: Table) -> Facts:
    """The facts of a ``_tcp`` zone's Table (``{domain}`` unfilled)."""

    def servers(key: str, protocol: str, tls: bool) -> list[Server]:
        node = table.names.get(_node_label(key))
        rrset = node.rrsets.get(SRV) if node is not None else None
        if rrset is None:
            return []
        return [
            Server(protocol, target, port, tls, priority, weight)
            for priority, weight, port, target in _records(rrset)
            if target  # "." (the root): the service is not offered
        ]

    def web(keys: tuple[tuple[str, str, bool], ...]) -> Web | None:
        for key, protocol, tls in keys:
            found = servers(key, protocol, tls)
            if not found:
                continue
            node = table.names[_node_label(key)]
            path = "/"
            txt = node.rrsets.get(TXT)
            for text in _texts(txt) if txt is not None else []:
                if text.startswith("path="):
                    path = text[5:] or "/"
                    break
            first = found[0]
            return Web(protocol, first.host, first.port, first.tls, path)
        return None

    incoming: list[Server] = []
    for key, protocol, tls in INCOMING:
        incoming.extend(servers(key, protocol, tls))
    outgoing: list[Server] = []
    for key, protocol, tls in OUTGOING:
        outgoing.extend(servers(key, protocol, tls))
    # each protocol's servers stay together, implicit TLS first; IMAP before POP3 (RFC 6186 §3.5
    # leaves the choice to the client; the autoconfig readers take the first incoming server)
    caldav = web(DAV[:2])
    carddav = web(DAV[2:])
    jmap = web((("jmap", "jmap", True),))
    if jmap is not None:  # RFC 8620 §2.2: the session resource is at /.well-known/jmap
        jmap = Web("jmap", jmap.host, jmap.port, True, "/.well-known/jmap")
    autodiscover = web((("autodiscover", "autodiscover", True),))
    hosts = [s.host for s in incoming + outgoing]
    hosts += [w.host for w in (caldav, carddav, jmap, autodiscover) if w is not None]
    templated = any(host.endswith(TEMPLATE) for host in hosts)
    return Facts(tuple(incoming), tuple(outgoing), caldav, carddav, jmap, autodiscover, templated)
