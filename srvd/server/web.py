"""The HTTP front: discovery documents (srvd.http) from the index the DNS side serves.

One twisted.web resource answers every route; the domain comes from the Host header
(``autoconfig.D``, ``autodiscover.D``, ``ua-auto-config.D`` or ``D``), else from the address the
client gives. A domain is served when its ``_tcp`` zone is in the index; its documents are the
skeletons of that zone's Table (made once per Table and index, srvd.http.documents) completed
for the domain. ``publish`` takes the new index of every reload, so HTTP and DNS always answer
from the same generation.

Limits: the request line and headers (8 KiB, 50 headers), the body (``http.max_body``, POST
only), connections (``http.max_connections``; beyond it a new one is closed at once), and time
(``http.idle_timeout`` for a whole request to arrive, however slowly it trickles in). Nothing of
a request is logged: no access log (the metrics count requests by route and status), so neither
an Authorization header nor a body can end up in a log.

HTTPS, when ``http.cert`` is given (srvd.config.tls read and checked the files): every
``http.listen`` address speaks TLS 1.2 or 1.3 with Twisted's CertificateOptions defaults and no
client certificates, the chain after the leaf sent with it. ``Certificates`` makes each new
connection from the context of the certificate now served; a reload that read renewed files
swaps that context (connections already open keep theirs), one whose files are broken has
failed before it got here (the running certificate stays).
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, cast

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import implementer

from srvd.config.model import Endpoint, HttpSettings, TlsFiles
from srvd.config.tls import load_tls, validity_warning
from srvd.http import documents
from srvd.http.facts import Facts, table_facts
from srvd.http.request import BadRequest, address_of, domain_of_address, pox_address
from srvd.index.model import Index, Table
from srvd.wire.names import to_wire

log = Logger()

ROUTES = (
    "autoconfig",
    "autodiscover_xml",
    "autodiscover_json",
    "mobileconfig",
    "well_known",
    "pacc",
    "other",
)
STATUSES = (200, 301, 400, 404, 405, 413, 500)
HOST_PREFIXES = ("autoconfig.", "autodiscover.", "ua-auto-config.")
_TCP = to_wire("_tcp")[:-1]
_HOST = re.compile(rb"^[A-Za-z0-9.-]{1,253}\.?(:[0-9]{1,5})?$")
AUTOCONFIG_PATHS = (b"/mail/config-v1.1.xml", b"/.well-known/autoconfig/mail/config-v1.1.xml")
WELL_KNOWN = {
    b"/.well-known/caldav": "caldav",  # RFC 6764 §5
    b"/.well-known/carddav": "carddav",
    b"/.well-known/jmap": "jmap",  # RFC 8620 §2.2
}
PACC_PATH = b"/.well-known/user-agent-configuration.json"
POX_PATH = b"/autodiscover/autodiscover.xml"  # matched without case
JSON_PREFIX = b"/autodiscover/autodiscover.json"
SECURITY_HEADERS = (
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Content-Security-Policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"X-Frame-Options", b"DENY"),
    (b"Referrer-Policy", b"no-referrer"),
)


MAX_TABLES = 10_000  # Tables whose documents are kept at once (a few KiB each)


class Documents:
    """The documents of one index generation: each Table's facts and skeletons, made when first
    asked for (a domain costs nothing until a client asks for it). Domains on a profile share
    its Table; a domain whose override has content of its own has a Table of its own, so at
    most MAX_TABLES are kept (the oldest made is dropped first, and made again if asked)."""

    def __init__(self, index: Index, settings: HttpSettings) -> None:
        self.index = index
        self.settings = settings
        self.tables: dict[int, tuple[Table, Facts, dict[str, bytes | None], HttpSettings]] = {}

    def table(self, domain: str) -> tuple[Facts, dict[str, bytes | None], HttpSettings] | None:
        """The facts, skeletons and settings (with its profile's ``http.profiles`` entry) of a
        served domain, or None."""
        try:
            apex = _TCP + to_wire(domain)
        except (UnicodeError, ValueError):
            return None
        zone = self.index.zones.get(apex)
        if zone is None:
            return None
        known = self.tables.get(id(zone.table))
        if known is None or known[0] is not zone.table:
            facts = table_facts(zone.table)
            chosen = self.settings.of(self.index.table_profiles.get(zone.table.digest))
            skeletons = dict(documents.every(facts, chosen))
            if len(self.tables) >= MAX_TABLES:
                del self.tables[next(iter(self.tables))]
            known = self.tables[id(zone.table)] = (zone.table, facts, skeletons, chosen)
        if known[1].empty:
            return None
        return known[1], known[2], known[3]

    def pacc(self, domain: str) -> bytes | None:
        """The PACC document of a domain (what its ``_ua-auto-config`` TXT vouches for)."""
        found = self.table(domain)
        if found is None or found[1]["pacc"] is None:
            return None
        skeleton = found[1]["pacc"]
        assert skeleton is not None
        return documents.complete(skeleton, domain)


class Counts:
    """Requests by route and status: a fixed set of cells (bounded labels)."""

    def __init__(self) -> None:
        self.cells = {(route, status): 0 for route in ROUTES for status in STATUSES}
        self.connections = 0
        self.rejected = 0
        self.not_after: float | None = None  # the served certificate's, with http.cert

    def add(self, route: str, status: int) -> None:
        key = (route if route in ROUTES else "other", status if status in STATUSES else 500)
        self.cells[key] += 1


class HttpCollector:
    """``srvd_http_requests_total{route, status}`` and the connection figures."""

    def __init__(self, counts: Counts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "srvd_http_requests",
            "HTTP requests for discovery documents, by route kind and status",
            labels=["route", "status"],
        )
        for (route, status), value in self.counts.cells.items():
            requests.add_metric([route, str(status)], value)
        yield requests
        yield GaugeMetricFamily(
            "srvd_http_connections", "open HTTP connections", value=self.counts.connections
        )
        rejected = CounterMetricFamily(
            "srvd_http_connections_rejected",
            "HTTP connections closed at once: http.max_connections were open",
        )
        rejected.add_metric([], self.counts.rejected)
        yield rejected
        if self.counts.not_after is not None:
            yield GaugeMetricFamily(
                "srvd_http_certificate_expiry_timestamp_seconds",
                "when the certificate HTTPS serves (http.cert) expires, in seconds since the epoch",
                value=self.counts.not_after,
            )


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _LimitedRequest(Request):
    """A request whose body may not exceed ``http.max_body`` (counted as it arrives, so a
    chunked body is held to it too)."""

    too_large = False
    received = 0

    def gotLength(self, length: int | None) -> None:
        site = _site(self)
        if length is not None and length > site.settings.max_body:
            # refused before a single octet of it is read: 413, and the connection closed
            self.too_large = True
            path = getattr(self.channel, "_path", b"").partition(b"?")[0].lower()
            site.counts.add("autodiscover_xml" if path == POX_PATH else "other", 413)
            channel = cast(Any, self.channel)
            body = b"request body too large\n"
            channel.transport.write(
                b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\n"
                b"Content-Type: text/plain; charset=utf-8\r\n"
                b"X-Content-Type-Options: nosniff\r\nServer: srvd\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            channel.loseConnection()
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        self.received += len(data)
        if self.too_large or self.received > _site(self).settings.max_body:
            self.too_large = True
            return  # dropped: the request is answered 413 once it is complete
        super().handleContentChunk(data)


def _site(request: Request) -> DiscoverySite:
    return cast(DiscoverySite, cast(Any, request.channel).site)


class _Channel(HTTPChannel):
    """HTTP/1.1 with srvd's limits: header count and size, and a deadline for each request."""

    site: DiscoverySite  # set by Site.buildProtocol

    maxHeaders = 50
    totalHeadersSize = 8192
    deadline: IDelayedCall | None = None

    def connectionMade(self) -> None:
        counts: Counts = self.site.counts
        if counts.connections >= self.site.settings.max_connections:
            counts.rejected += 1
            cast(Any, self.transport).abortConnection()
            return
        counts.connections += 1
        self.counted = True
        super().connectionMade()
        self._arm()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if getattr(self, "counted", False):
            self.site.counts.connections -= 1
            self.counted = False
        self._disarm()
        super().connectionLost(reason)

    def _arm(self) -> None:
        self._disarm()
        self.deadline = self.callLater(self.site.settings.idle_timeout, self._late)

    def _disarm(self) -> None:
        if self.deadline is not None and self.deadline.active():
            self.deadline.cancel()
        self.deadline = None

    def _late(self) -> None:
        self.deadline = None
        cast(Any, self.transport).abortConnection()  # a request that did not arrive whole in time

    def allContentReceived(self) -> None:
        self._disarm()
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        super().requestDone(request)
        if self.transport is not None and not cast(Any, self.transport).disconnecting:
            self._arm()  # the next request on this connection gets its own deadline


class DiscoverySite(Site):
    """The Site of the HTTP front; no access log."""

    noisy = False
    protocol = _Channel  # type: ignore[assignment]
    requestFactory = _LimitedRequest

    def __init__(self, resource: Resource, settings: HttpSettings, counts: Counts) -> None:
        super().__init__(resource, timeout=settings.idle_timeout)
        self.settings = settings
        self.counts = counts

    def log(self, request: Any) -> None:
        pass  # never: request lines carry addresses, and headers may carry credentials


Handler = Callable[[Request], bytes]


class DiscoveryResource(Resource):
    isLeaf = True

    def __init__(self, documents: Documents, counts: Counts) -> None:
        super().__init__()
        self.documents = documents
        self.counts = counts

    def render(self, request: Request) -> bytes:
        route, methods, status, handler = self.route(request)
        try:
            if methods and request.method not in methods:
                request.setHeader(b"Allow", b", ".join(methods))
                raise _Refused(405, "method not allowed")
            body = handler(request)
        except _Refused as refused:
            status = refused.status
            body = (str(refused) + "\n").encode()
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            request.setHeader(b"Cache-Control", b"no-store")
        except Exception:  # a bug: a clean 500, the traceback in the log (nothing of the request)
            log.failure("HTTP request failed")
            status, body = 500, b"internal error\n"
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setResponseCode(status)
        for name, value in SECURITY_HEADERS:
            request.setHeader(name, value)
        request.setHeader(b"Server", b"srvd")
        self.counts.add(route, status)
        if request.method == b"HEAD":
            request.setHeader(b"Content-Length", str(len(body)).encode())
            return b""
        return body

    # -- routing

    def route(self, request: Request) -> tuple[str, tuple[bytes, ...], int, Handler]:
        """The route kind of a request (for the metrics), the methods it takes, the status of
        a success, and what makes the answer."""
        path = request.path
        lower = path.lower()
        read = (b"GET", b"HEAD")
        if path in AUTOCONFIG_PATHS:
            return "autoconfig", read, 200, self.autoconfig
        if lower == POX_PATH:
            return "autodiscover_xml", (b"POST",), 200, self.pox
        if lower == JSON_PREFIX or lower.startswith(JSON_PREFIX + b"/"):
            return "autodiscover_json", read, 200, self.autodiscover_json
        if path == b"/email.mobileconfig":
            return "mobileconfig", read, 200, self.mobileconfig
        if path in WELL_KNOWN:
            kind = WELL_KNOWN[path]
            return "well_known", read, 301, lambda request: self.redirect(request, kind)
        if path == PACC_PATH and self.documents.settings.pacc:
            return "pacc", read, 200, self.pacc
        return "other", (b"GET", b"HEAD", b"POST"), 404, _not_found

    def domain(
        self, request: Request, address: str | None
    ) -> tuple[str, Facts, dict[str, Any], HttpSettings]:
        """The customer domain of a request, its facts, skeletons and settings; 404 when not
        served."""
        candidates = []
        hosts = request.requestHeaders.getRawHeaders(b"host") or []
        if len(hosts) > 1:  # RFC 9112 §3.2: a request with more than one Host is refused
            raise _Refused(400, "more than one Host header")
        host = hosts[0] if hosts else None
        if host is not None:
            raw = host.encode("latin-1", "replace") if isinstance(host, str) else host
            if not _HOST.match(raw):
                raise _Refused(400, "bad Host header")
            name = raw.decode("ascii").rsplit(":", 1)[0].rstrip(".").lower()
            for prefix in HOST_PREFIXES:
                if name.startswith(prefix):
                    candidates.append(name[len(prefix) :])
                    break
            candidates.append(name)
        if address is not None:
            candidates.append(domain_of_address(address))
        for name in candidates:
            found = self.documents.table(name)
            if found is not None:
                return name, *found
        raise _Refused(404, "no such domain")

    # -- documents

    def autoconfig(self, request: Request) -> bytes:
        address = _query_address(request)
        domain, _facts, skeletons, _ = self.domain(request, address)
        _type(request, b"application/xml; charset=utf-8", public=True)
        return documents.complete(skeletons["autoconfig"], domain)

    def pox(self, request: Request) -> bytes:
        if getattr(request, "too_large", False):
            raise _Refused(413, "request body too large")
        assert request.content is not None
        try:
            address = pox_address(request.content.read())
        except BadRequest as exc:
            raise _Refused(400, str(exc)) from None
        domain, facts, skeletons, settings = self.domain(request, address)
        if settings.username == "local" and address is not None:  # the local part, escaped
            skeleton = documents.pox(facts, settings, address.rpartition("@")[0])
        else:
            skeleton = skeletons["pox"]
        body = documents.complete(skeleton, domain)
        _type(request, b"application/xml; charset=utf-8", public=False)
        return body

    def autodiscover_json(self, request: Request) -> bytes:
        query = _query(request)
        protocol = query.get("protocol")
        tail = request.path[len(JSON_PREFIX) :].decode("latin-1")
        address = query.get("email")
        parts = tail.split("/")
        if len(parts) >= 3 and parts[1].lower() == "v1.0" and parts[2]:
            address = urllib.parse.unquote(parts[2])
        elif tail not in ("", "/"):
            raise _Refused(404, "not found")
        if protocol is None or protocol.lower() != "autodiscoverv1":
            _type(request, b"application/json", public=False)
            raise _Refused(400, "only Protocol=AutodiscoverV1 is served here")
        address = _checked(address) if address is not None else None
        domain, _facts, skeletons, _ = self.domain(request, address)
        _type(request, b"application/json", public=True)
        body = skeletons["autodiscover.json"]
        assert body is not None
        return documents.complete(body, domain)

    def mobileconfig(self, request: Request) -> bytes:
        address = _query_address(request)
        domain, facts, _, settings = self.domain(request, address)
        if address is not None and domain_of_address(address) != domain:
            address = None  # an address of another domain is not put in this domain's profile
        body = documents.mobileconfig(facts, settings, domain, address)
        _type(request, documents.MOBILECONFIG_TYPE.encode(), public=False)
        request.setHeader(
            b"Content-Disposition", f'attachment; filename="{domain}.mobileconfig"'.encode()
        )
        return body

    def redirect(self, request: Request, kind: str) -> bytes:
        domain, facts, _, _ = self.domain(request, None)
        web = {"caldav": facts.caldav, "carddav": facts.carddav, "jmap": facts.jmap}[kind]
        if web is None:
            raise _Refused(404, f"{kind} is not offered for this domain")
        url = documents.complete(web.url.encode(), domain)
        request.setHeader(b"Location", url)
        _type(request, b"text/plain; charset=utf-8", public=True)
        return url + b"\n"

    def pacc(self, request: Request) -> bytes:
        domain, _facts, _, _ = self.domain(request, None)
        body = self.documents.pacc(domain)
        if body is None:
            raise _Refused(404, "no PACC configuration for this domain")
        _type(request, b"application/json", public=True)
        return body


def _not_found(request: Request) -> bytes:
    raise _Refused(404, "not found")


def _type(request: Request, content_type: bytes, public: bool) -> None:
    request.setHeader(b"Content-Type", content_type)
    # documents that name the requested address are the client's alone
    request.setHeader(b"Cache-Control", b"public, max-age=300" if public else b"private, no-store")


def _query(request: Request) -> dict[str, str]:
    """The query's parameters, names lower-cased, the first of each; decoded leniently."""
    out: dict[str, str] = {}
    uri = request.uri.decode("latin-1")
    _, _, query = uri.partition("?")
    try:
        fields = urllib.parse.parse_qsl(query, keep_blank_values=True, max_num_fields=20)
    except ValueError:
        raise _Refused(400, "too many query parameters") from None
    for name, value in fields:
        out.setdefault(name.lower(), value)
    return out


def _query_address(request: Request) -> str | None:
    value = _query(request).get("emailaddress")
    return _checked(value) if value else None


def _checked(value: str | None) -> str | None:
    try:
        return address_of(value) if value is not None else None
    except BadRequest as exc:
        raise _Refused(400, str(exc)) from None


def tls_options(tls: TlsFiles) -> Any:
    """Twisted's CertificateOptions for checked files: TLS 1.2 at least (the default of recent
    Twisted, raised to it on older ones), no client certificates, the chain after the leaf."""
    from twisted.internet.ssl import CertificateOptions, TLSVersion

    chain, key = load_tls(tls)
    return CertificateOptions(
        privateKey=cast(Any, key),
        certificate=cast(Any, chain[0]),
        extraCertChain=cast(Any, chain[1:]),
        raiseMinimumTo=TLSVersion.TLSv1_2,
    )


@implementer(IOpenSSLServerConnectionCreator)
class Certificates:
    """The TLS side of the front's ports: each new connection gets the context of the
    certificate served now; ``use`` swaps it (the connections open keep the one they have)."""

    def __init__(self, tls: TlsFiles) -> None:
        self.tls = tls
        self.context = tls_options(tls).getContext()

    def use(self, tls: TlsFiles) -> None:
        """Serve these files from the next connection on; raises (and changes nothing) when
        OpenSSL will not take them."""
        context = tls_options(tls).getContext()  # made (and checked by OpenSSL) before the swap
        self.tls, self.context = tls, context

    def serverConnectionForTLS(self, tlsProtocol: Any) -> Any:
        from OpenSSL.SSL import Connection

        return Connection(self.context, None)


def _names_of(certificates: Certificates | None) -> str:
    if certificates is None or not certificates.tls.names:
        return ""
    return f" (a certificate for {', '.join(certificates.tls.names)})"


def _validity(tls: TlsFiles) -> None:
    warning = validity_warning(tls, time.time())
    if warning is not None:
        log.warn("http.cert: {warning} (served all the same)", warning=warning)


class HttpService(Service):
    """The HTTP front on every ``http.listen`` address, on srvd's reactor; HTTPS on all of them
    with ``http.cert``."""

    def __init__(self, settings: HttpSettings, index: Index, reactor: Any) -> None:
        self.reactor = reactor
        self.counts = Counts()
        self.resource = DiscoveryResource(Documents(index, settings), self.counts)
        self.site = DiscoverySite(self.resource, settings, self.counts)
        self.site.reactor = reactor
        self.endpoints = settings.listen
        self.ports: list[IListeningPort] = []
        self.bound: list[Endpoint] = []
        self.certificates: Certificates | None = None
        if settings.tls is not None:
            self.certificates = Certificates(settings.tls)
            self.counts.not_after = settings.tls.not_after
            _validity(settings.tls)

    def publish(self, settings: HttpSettings, index: Index) -> None:
        """Serve a new generation (reactor thread): the index and settings of a reload."""
        if settings.listen != self.endpoints:
            log.warn("http.listen changed in the configuration: it takes effect on restart")
        self.renew(settings.tls)
        self.site.settings = settings
        self.resource.documents = Documents(index, settings)

    def renew(self, tls: TlsFiles | None) -> None:
        """The certificate files a reload read: served to new connections from now on."""
        certificates = self.certificates
        if certificates is None:
            if tls is not None:
                log.warn("http.cert was added to the configuration: HTTPS takes effect on restart")
            return
        if tls is None:
            log.warn(
                "http.cert was removed from the configuration: HTTPS goes on with {cert} until "
                "a restart",
                cert=certificates.tls.cert,
            )
            return
        if tls != certificates.tls:
            try:
                certificates.use(tls)
            except Exception:  # srvd.config.tls checked them with OpenSSL already
                log.failure(
                    "http.cert: {cert} not taken; still serving the previous", cert=tls.cert
                )
                return
            self.counts.not_after = tls.not_after
            log.info(
                "http.cert: new connections get the certificate now in {cert} (valid until "
                "{until})",
                cert=tls.cert,
                until=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(tls.not_after)),
            )
        _validity(tls)

    def privilegedStartService(self) -> None:
        scheme = "https" if self.certificates is not None else "http"
        for endpoint in self.endpoints:
            try:
                if self.certificates is not None:
                    port = self.reactor.listenSSL(
                        endpoint.port,
                        self.site,
                        self.certificates,
                        backlog=1024,
                        interface=endpoint.host,
                    )
                else:
                    port = self.reactor.listenTCP(
                        endpoint.port, self.site, backlog=1024, interface=endpoint.host
                    )
            except Exception as exc:
                raise OSError(f"cannot listen on {endpoint} ({scheme}): {exc}") from None
            address: IAddress = port.getHost()
            bound = Endpoint(endpoint.host, address.port)  # type: ignore[attr-defined]
            self.ports.append(port)
            self.bound.append(bound)
            log.info(
                "discovery documents on {scheme}://{endpoint}/{names}",
                scheme=scheme,
                endpoint=bound,
                names=_names_of(self.certificates),
            )
        super().privilegedStartService()

    def startService(self) -> None:
        if not self.ports:
            self.privilegedStartService()
        super().startService()

    def stopService(self) -> Any:
        super().stopService()
        ports, self.ports = self.ports, []
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])
