"""srvd as a hidden primary: zone transfers (AXFR RFC 5936, IXFR RFC 1995) with TSIG.

Only TCP transfers, only to a peer that the ``transfer.allow`` list names by address *and* that
signs with the key the list gives. Checks come before any work: a request without TSIG is
REFUSED; a TSIG that fails gets NOTAUTH with BADKEY or BADSIG (unsigned) or BADTIME (signed,
RFC 8945 §5.2); a valid signature from an address outside the list is REFUSED (signed). Other
queries that carry TSIG (a secondary's SOA check, over UDP or TCP) are verified the same way,
answered as usual and signed.

A transfer is a stream of messages, each with the question copied (RFC 5936 §2.2.1 allows it, and
every owner name then compresses to the question) and each TSIG-signed over the MAC before it
(RFC 8945 §5.3.1). Ordinary zones are a handful of records: one message. The catalog has one record
per served zone: its messages are made one at a time as the connection drains (a pull producer),
so a million-member transfer never holds the reactor for more than one message.

IXFR: ordinary zones keep no history, so a client with an older serial gets the whole zone in AXFR
form (RFC 1995 §4 allows it) and one with our serial (or newer) gets the SOA alone; the catalog
keeps its last few member changes (srvd.index.catalog) and answers those incrementally.

Signed (``dnssec:``), the catalog's transfers come from srvd.index.catalog_dnssec: members signed
as each message is made, an IXFR only to a client whose version the current validity window
served (its signatures can be made again to delete them), else the AXFR form. While the members'
canonical order is being made the stream yields empty steps, taken again on the next reactor turn.
"""

from __future__ import annotations

import fcntl
import struct
import termios
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, cast

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from twisted.application.service import Service
from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IPullProducer,
    IPushProducer,
    ITCPTransport,
)
from twisted.logger import Logger
from zope.interface import implementer

from srvd.config import Config
from srvd.config.model import TransferSettings
from srvd.index.catalog import next_catalog, served_serial
from srvd.index.catalog_dnssec import MemberOrder, Record, SignedCatalog, compressed
from srvd.index.dnssec import ZoneSigner
from srvd.index.model import Catalog, Index, Zone
from srvd.ops.metrics import counter_by_label
from srvd.server.loading import Built
from srvd.server.protocols import TCPProtocol, UDPProtocol
from srvd.server.responder import RateLimitedLog, Responder
from srvd.wire.dnssec import rr
from srvd.wire.names import MessageFormatError, wire_to_text
from srvd.wire.tsig import (
    BADKEY,
    BADSIG,
    BADTIME,
    BADTRUNC,
    NOERROR,
    Key,
    Signer,
    Tsig,
    TsigFormError,
    find,
    records_start,
    skip_record,
    stripped,
    unsigned_error,
    verify,
)

log = Logger()

SOA, OPT, TSIG, IXFR, AXFR = 6, 41, 250, 251, 252
CLASS_IN = 1
FORMERR, NOTIMP, REFUSED, NOTAUTH = 1, 4, 5, 9
QR, AA, TC, RD = 0x8000, 0x0400, 0x0200, 0x0100
MESSAGE_SIZE = 16_384  # octets of records per transfer message (TSIG and OPT come on top)
TSIG_MARK = b"\x00\xfa\x00\xff"  # type TSIG, class ANY: the only way a TSIG record can look
EDNS_PAYLOAD = 1232
TRANSFER_TIMEOUT = 120.0  # seconds a transfer may wait for its reader between messages

_HEAD = struct.Struct("!HHHHHH")
_U16 = struct.Struct("!H")

TRANSFER_TYPES = ("axfr", "ixfr", "ixfr_full", "uptodate")
ZONE_KINDS = ("zone", "catalog")
REFUSALS = ("no_tsig", "badkey", "badsig", "badtime", "badtrunc", "acl", "not_served", "formerr")
_TSIG_REFUSAL = {BADKEY: "badkey", BADSIG: "badsig", BADTIME: "badtime", BADTRUNC: "badtrunc"}


class Request:
    """The parts of a query a transfer or a signed answer needs."""

    __slots__ = ("flags", "ixfr_serial", "msg", "opt", "qclass", "qname", "qtype", "question")

    def __init__(self, msg: bytes) -> None:
        if len(msg) < 12 or msg[4:6] != b"\x00\x01":
            raise TsigFormError("one question expected")
        self.msg = msg
        self.flags = msg[2] << 8 | msg[3]
        end = records_start(msg)
        self.question = msg[12:end]
        self.qname = msg[12 : end - 4].lower()
        self.qtype, self.qclass = struct.unpack_from("!HH", msg, end - 4)
        self.ixfr_serial: int | None = None
        self.opt: int | None = None  # the requester's UDP payload size, when it sent OPT
        an, ns, ar = struct.unpack_from("!HHH", msg, 6)
        pos = end
        for section, count in enumerate((an, ns, ar)):
            for _ in range(count):
                rtype, rdata, after = skip_record(msg, pos)
                if section == 1 and rtype == SOA and after - rdata >= 20:
                    self.ixfr_serial = struct.unpack_from("!I", msg, after - 20)[0]
                elif section == 2 and rtype == OPT:
                    self.opt = struct.unpack_from("!H", msg, pos + 3)[0]
                pos = after

    @property
    def opt_record(self) -> bytes:
        if self.opt is None:
            return b""
        return b"\x00" + struct.pack("!HHIH", OPT, EDNS_PAYLOAD, 0, 0)


def serial_newer(a: int, b: int) -> bool:
    """a > b in RFC 1982 serial arithmetic."""
    return a != b and ((a - b) & 0xFFFFFFFF) < 0x80000000


def zone_records(index: Index, apex: bytes, zone: Zone) -> list[bytes]:
    """The records of an ordinary zone but its SOA, owners compressed to the question (the apex
    at offset 12)."""
    signer = index.dnssec
    if isinstance(signer, ZoneSigner):  # signed: DNSKEY, CDS, CDNSKEY, NSEC and RRSIGs too
        start = len(apex)
        return [
            owner[: len(owner) - start] + b"\xc0\x0c" + rr(b"", rtype, ttl, rdata)
            for owner, rtype, ttl, rdata in signer.signed_zone(index, apex, zone.table)[1:]
        ]
    out = _each_record(index.ns_records)
    domain = apex[apex[0] + 1 :]
    for relative, node in zone.table.names.items():
        owner = relative + b"\xc0\x0c"
        for rrset in node.rrsets.values():
            for items, _weights, _total in rrset.groups:
                for item in items:
                    piece = item if isinstance(item, bytes) else item.render(domain)
                    out.append(owner + piece[2:])
    return out


def _each_record(records: bytes) -> list[bytes]:
    """Records with owner pointers (2 octets), one by one."""
    out = []
    pos = 0
    while pos < len(records):
        end = pos + 12 + (records[pos + 10] << 8 | records[pos + 11])
        out.append(records[pos:end])
        pos = end
    return out


def _split(records: Iterable[bytes | None]) -> Iterator[list[bytes]]:
    """Records in groups that fit one message; None (records not ready yet: the signed catalog
    makes its member order) passes on as an empty group."""
    group: list[bytes] = []
    size = 0
    for record in records:
        if record is None:
            yield []
            continue
        if group and size + len(record) > MESSAGE_SIZE:
            yield group
            group, size = [], 0
        group.append(record)
        size += len(record)
    if group:
        yield group


class Counts:
    """What the transfer side counts (read by TransferCollector at scrape time)."""

    def __init__(self) -> None:
        self.transfers = {(t, k): 0 for t in TRANSFER_TYPES for k in ZONE_KINDS}
        self.refused = dict.fromkeys(REFUSALS, 0)
        self.signed_queries = 0
        self.notify: dict[str, int] = {}


class Transfers:
    """The primary role of one server: transfers, signed answers, the catalog and NOTIFY."""

    def __init__(
        self,
        config: Config,
        responder: Responder,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.responder = responder
        self.clock = clock
        self.counts = Counts()
        self.settings = config.transfer or TransferSettings()
        self.keys: dict[bytes, Key] = self.settings.key_map
        self.catalog_name = config.catalog
        self.failure_log = RateLimitedLog()
        self.notify: Any = None  # srvd.xfr.notify.NotifySender, set by the service
        if config.catalog:
            self.attach(responder.index, None, config.mtime, config.catalog)

    # -- the index and the catalog

    def attach(self, index: Index, delta: Any, now: int, name: str | None) -> Catalog | None:
        """Give a new index its catalog (before it is published)."""
        from srvd.wire.names import to_wire

        if not name:
            index.catalog = None
            return None
        if index.catalog is not None and index.catalog.apex == to_wire(name):
            return index.catalog  # it came with the index: a worker's snapshot of the primary's
        running = self.responder.index
        previous = running.catalog if running is not index else None
        served = None if previous is None else served_serial(previous, running)
        index.catalog = next_catalog(previous, to_wire(name), index, delta, now, served)
        return index.catalog

    def before_publish(self, built: Built) -> None:
        """A reload succeeded (reactor thread): new settings, the catalog, NOTIFY."""
        config, index, changes = built.config, built.index, built.changes
        self.settings = config.transfer or TransferSettings()
        self.keys = self.settings.key_map
        old = self.responder.index
        old_catalog = old.catalog
        # the serials as served (signed: moved by the window), as secondaries compare them
        old_serial = None if old_catalog is None else served_serial(old_catalog, old)
        catalog = self.attach(index, changes.zones, config.mtime, config.catalog)
        self.catalog_name = config.catalog
        if self.notify is None:
            return
        self.notify.configure(self.settings)
        apexes: list[bytes] = []
        first: list[bytes] = []
        if catalog is not None and old_serial != served_serial(catalog, index):
            first.append(catalog.apex)
        if changes.zones is not None:
            apexes.extend(changes.zones.changed)
        else:  # too many to list: every zone may have changed
            apexes.extend(index.zones)
        if apexes or first:  # the catalog ahead of what an earlier reload still has queued
            self.notify.enqueue(apexes, first=first)

    def notify_start(self, known: Mapping[bytes, tuple[int, bytes]]) -> int:
        """After a start (reactor thread): NOTIFY the catalog (its serial is not kept across
        restarts, and the member set may have changed while srvd was down) and every zone whose
        serial differs from the one the state file recorded (``known``). How many zones."""
        if self.notify is None:
            return 0
        index = self.responder.index
        zones = index.zones
        changed = [
            apex
            for apex, (serial, _) in known.items()
            if (zone := zones.get(apex)) is not None and zone.serial != serial
        ]
        first = [index.catalog.apex] if index.catalog is not None else []
        if changed or first:
            self.notify.enqueue(changed, first=first)
        return len(changed)

    # -- the transports

    def install(self, listeners: Iterable[Any], tcp_factory: Any) -> None:
        """Route signed queries and transfers through this role (before the service starts)."""
        for listener in listeners:
            listener.udp = SignedUDPProtocol(self.responder, self)
        tcp_factory.protocol = type("PrimaryTCPProtocol", (PrimaryTCPProtocol,), {"role": self})

    def signed_udp(self, datagram: bytes) -> bytes | None:
        """The reply to a datagram that may carry TSIG."""
        try:
            request = Request(datagram)
            tsig = find(datagram)
        except (MessageFormatError, struct.error):
            return self.responder.respond(datagram, False)
        if tsig is None:
            return self.responder.respond(datagram, False)
        return self._signed_answer(request, tsig, False)

    def _signed_answer(self, request: Request, tsig: Tsig, tcp: bool) -> bytes | None:
        msg = request.msg
        now = int(self.clock())
        error, key = verify(msg, tsig, self.keys, now)
        if error != NOERROR:
            self.counts.refused[_TSIG_REFUSAL[error]] += 1
            return self._tsig_error(request, tsig, error, key, now)
        assert key is not None
        self.counts.signed_queries += 1
        plain = msg[:2] + stripped(msg, tsig)[2:]
        reply = self.responder.respond(plain, tcp)
        if reply is None:
            return None
        signed = Signer(key, tsig, now).sign(reply)
        limit = 65535 if tcp else max(512, min(request.opt or 512, EDNS_PAYLOAD))
        if len(signed) > limit:  # no room for the signature: TC, the client retries over TCP
            head = msg[:2] + struct.pack("!H", (reply[2] << 8 | reply[3]) | TC)
            head += struct.pack("!HHHH", 1, 0, 0, 1 if request.opt is not None else 0)
            signed = Signer(key, tsig, now).sign(head + request.question + request.opt_record)
        return signed

    def _tsig_error(
        self, request: Request, tsig: Tsig, error: int, key: Key | None, now: int
    ) -> bytes:
        reply = self._error_head(request, NOTAUTH)
        if error in (BADKEY, BADSIG) or key is None:
            return unsigned_error(reply, tsig, error)
        return Signer(key, tsig, now, error).sign(reply)

    def _error_head(self, request: Request, rcode: int) -> bytes:
        msg = request.msg
        flags = QR | (request.flags & (RD | 0x7800)) | rcode
        additional = 1 if request.opt is not None else 0
        head = msg[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, additional)
        return head + request.question + request.opt_record

    def tcp_claims(self, msg: bytes) -> bool:
        """Whether a TCP message is a transfer or carries TSIG (this role answers it)."""
        if TSIG_MARK in msg:
            return True
        pos = 12
        n = len(msg)
        while pos < n and msg[pos]:
            pos += msg[pos] + 1
        return pos + 3 <= n and msg[pos + 1] == 0 and msg[pos + 2] in (IXFR, AXFR)

    def tcp_messages(self, msg: bytes, peer: str) -> Iterator[bytes] | None:
        """The replies to a TCP message this role claims (None: no reply, close)."""
        try:
            request = Request(msg)
            tsig = find(msg)
        except (MessageFormatError, struct.error):
            if len(msg) < 12 or msg[2] & 0x80:
                return None
            self.counts.refused["formerr"] += 1
            flags = QR | ((msg[2] << 8) & (RD | 0x7800)) | FORMERR
            return iter([msg[:2] + struct.pack("!HHHHH", flags, 0, 0, 0, 0)])
        if request.flags & 0x8000:
            return None
        if request.qtype not in (AXFR, IXFR) or request.flags & 0x7800:
            if tsig is None:
                reply = self.responder.respond(msg, True)
                return None if reply is None else iter([reply])
            signed = self._signed_answer(request, tsig, True)
            return None if signed is None else iter([signed])
        return self._transfer(request, tsig, peer)

    def _transfer(self, request: Request, tsig: Tsig | None, peer: str) -> Iterator[bytes]:
        # 1. TSIG, 2. the ACL, before anything else
        if tsig is None:
            self.counts.refused["no_tsig"] += 1
            return iter([self._error_head(request, REFUSED)])
        now = int(self.clock())
        error, key = verify(request.msg, tsig, self.keys, now)
        if error != NOERROR:
            self.counts.refused[_TSIG_REFUSAL[error]] += 1
            return iter([self._tsig_error(request, tsig, error, key, now)])
        assert key is not None
        signer = Signer(key, tsig, now)
        if not self.settings.allowed(peer, key):
            self.counts.refused["acl"] += 1
            log.info(
                "transfer of {zone} refused: {peer} is not allowed with key {key}",
                zone=wire_to_text(request.qname),
                peer=peer,
                key=wire_to_text(key.name),
            )
            return iter([signer.sign(self._error_head(request, REFUSED))])
        index = self.responder.index
        zone = index.zones.get(request.qname) if request.qclass == CLASS_IN else None
        catalog = index.catalog
        is_catalog = (
            catalog is not None and request.qname == catalog.apex and request.qclass == CLASS_IN
        )
        if zone is None and not is_catalog:
            self.counts.refused["not_served"] += 1
            return iter([signer.sign(self._error_head(request, REFUSED))])
        kind = "catalog" if is_catalog else "zone"
        if is_catalog:
            assert catalog is not None
            if isinstance(index.dnssec, ZoneSigner):  # signed (srvd.index.catalog_dnssec)
                return self._signed_catalog(request, signer, SignedCatalog(catalog, index.dnssec))
            serial, soa = catalog.serial, catalog.soa()
        else:
            assert zone is not None
            serial = index.serial(request.qname, zone)
            soa = index.soa(12, serial, False)
        client = request.ixfr_serial
        if request.qtype == IXFR and client is not None and not serial_newer(serial, client):
            self._count("uptodate", kind)
            return self._messages(request, signer, [[soa]])
        body: Iterable[bytes]
        if is_catalog:
            assert catalog is not None
            chain = catalog.chain(client) if request.qtype == IXFR and client is not None else None
            if chain is not None:
                self._count("ixfr", kind)
                return self._messages(request, signer, _split(_ixfr_records(catalog, chain)))
            body = catalog.body()
        else:
            assert zone is not None
            body = zone_records(index, request.qname, zone)
        self._count("axfr" if request.qtype == AXFR else "ixfr_full", kind)
        return self._messages(request, signer, _split(_axfr_records(soa, body)))

    def _signed_catalog(
        self, request: Request, signer: Signer, signed: SignedCatalog
    ) -> Iterator[bytes]:
        """A transfer of the signed catalog: its SOA alone to a client that is current, an IXFR
        to one that holds a version this window served (srvd.index.catalog_dnssec), else the
        zone in AXFR form. Members are signed as each message is made."""
        client = request.ixfr_serial
        records: Iterable[Record | None]
        if request.qtype == IXFR and client is not None:
            if not serial_newer(signed.serial, client):
                self._count("uptodate", "catalog")
                return self._messages(request, signer, [[signed.catalog.soa(signed.serial)]])
            old = signed.client_version(client)
            if old is not None:
                self._count("ixfr", "catalog")
                records = signed.ixfr(old)
                return self._messages(request, signer, _split(compressed(records, signed.apex)))
        self._count("axfr" if request.qtype == AXFR else "ixfr_full", "catalog")
        records = signed.axfr()
        return self._messages(request, signer, _split(compressed(records, signed.apex)))

    def _count(self, kind: str, zone_kind: str) -> None:
        self.counts.transfers[(kind, zone_kind)] += 1

    def _messages(
        self, request: Request, signer: Signer, groups: Iterable[list[bytes]]
    ) -> Iterator[bytes]:
        msg = request.msg
        flags = QR | AA | (request.flags & RD)
        additional = 1 if request.opt is not None else 0
        opt = request.opt_record
        for group in groups:
            if not group:  # the records are not ready yet: no message this turn (_Stream)
                yield b""
                continue
            head = msg[:2] + struct.pack("!HHHHH", flags, 1, len(group), 0, additional)
            yield signer.sign(head + request.question + b"".join(group) + opt)


def _axfr_records(soa: bytes, body: Iterable[bytes]) -> Iterator[bytes]:
    yield soa
    yield from body
    yield soa


def _ixfr_records(catalog: Catalog, chain: list[Any]) -> Iterator[bytes]:
    """RFC 1995 §4: the new SOA, then per change the old SOA, what went, the new SOA, what came,
    and the new SOA to end."""
    current = catalog.soa()
    yield current
    for delta in chain:
        yield catalog.soa(delta.old)
        for apex in delta.removed:
            yield catalog.member(apex)
        yield catalog.soa(delta.new)
        for apex in delta.added:
            yield catalog.member(apex)
    yield current


class SignedUDPProtocol(UDPProtocol):
    """UDPProtocol that sends datagrams which may carry TSIG to the primary role."""

    def __init__(self, responder: Responder, role: Transfers) -> None:
        super().__init__(responder)
        self.role = role

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if TSIG_MARK not in datagram:
            super().datagramReceived(datagram, addr)
            return
        try:
            reply = self.role.signed_udp(datagram)
        except Exception:
            self.role.counts.refused["formerr"] += 1
            if self.role.failure_log.allow():
                log.failure("answering signed query {query} failed", query=datagram.hex())
            return
        if reply is not None:
            try:
                self.sendto(reply, addr)
            except OSError:
                self.send_errors += 1


@implementer(IPullProducer)
class _Stream:
    """The messages of one transfer, written one at a time as the connection drains."""

    def __init__(self, protocol: PrimaryTCPProtocol, messages: Iterator[bytes]) -> None:
        self.protocol = protocol
        self.messages = messages
        self.later: IDelayedCall | None = None

    def resumeProducing(self) -> None:
        if self.later is not None and self.later.active():  # the transport asked first
            self.later.cancel()
        self.later = None
        try:
            message = next(self.messages)
        except StopIteration:
            self.protocol.stream_done()
            return
        except Exception:
            if self.protocol.role.failure_log.allow():
                log.failure("a zone transfer failed")
            self.protocol.tcp.abortConnection()
            return
        self.protocol.resetTimeout()
        self.protocol.factory.touch(self.protocol)  # a transfer under way is not idle
        if not message:  # a step of work without a message (the signed catalog's member
            # order): the transport asks a pull producer again only after a write, so ask here,
            # on the next turn of the reactor (answers go in between)
            self.later = self.protocol.callLater(0, self.resumeProducing)
            return
        self.protocol.sendString(message)

    def stopProducing(self) -> None:
        self.messages = iter(())
        if self.later is not None and self.later.active():
            self.later.cancel()
        self.later = None


def unacknowledged(transport: Any) -> int:
    """Octets written to a TCP transport that its peer has not acknowledged yet: what Twisted
    still buffers, and what the kernel does (SIOCOUTQ, Linux; elsewhere counted as none)."""
    buffered: int = len(getattr(transport, "dataBuffer", b"")) - getattr(transport, "offset", 0)
    buffered += getattr(transport, "_tempDataLen", 0)
    try:
        handle = transport.getHandle()
        raw = fcntl.ioctl(handle.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        kernel: int = struct.unpack("i", raw)[0]
    except (AttributeError, OSError, ValueError):
        kernel = 0
    return max(0, buffered) + max(0, kernel)


class PrimaryTCPProtocol(TCPProtocol):
    """TCPProtocol that hands transfers and signed queries to the primary role.

    While a transfer streams, its messages own the transport: srvd stops reading the connection
    (what the client pipelines meanwhile waits in the kernel's buffer, not in srvd's memory) and
    answers it in order once the transfer has ended (RFC 7766).

    A transfer ends for srvd when its last message is queued, megabytes before the reader has
    read it: the idle timeout that starts then closes the connection only once the peer has
    acknowledged everything, and then with a FIN (what it has not read yet stays readable),
    while a peer that still reads keeps the connection; one that stops reading for
    ``TRANSFER_TIMEOUT`` is reset."""

    role: Transfers
    stream: _Stream | None = None
    transferred = False  # a transfer was streamed on this connection
    pending: int | None = None  # unacknowledged octets at the last idle check
    progressed = 0.0  # when the peer last acknowledged more (reactor time)

    def stringReceived(self, string: bytes) -> None:
        if not self.role.tcp_claims(string):
            super().stringReceived(string)
            return
        if getattr(self.transport, "disconnecting", False):
            return
        self.completed = True
        self.resetTimeout()
        self.factory.touch(self)
        peer = cast(ITCPTransport, self.transport).getPeer()
        try:
            messages = self.role.tcp_messages(string, getattr(peer, "host", ""))
        except Exception:
            if self.role.failure_log.allow():
                log.failure("answering TCP message {msg} failed", msg=string[:512].hex())
            self.tcp.loseConnection()
            return
        if messages is None:
            self.tcp.loseConnection()
            return
        # a slow reader of a long transfer is not idle: 120 s between messages at least
        self.setTimeout(max(self.factory.settings.idle_timeout, TRANSFER_TIMEOUT))
        consumer = cast(IConsumer, self.transport)
        consumer.unregisterProducer()  # this protocol, the streaming producer of its replies
        self.paused = True  # no more frames parsed, nor the socket read, until the end
        self.transport.pauseProducing()  # type: ignore[union-attr]
        self.stream = _Stream(self, messages)
        self.transferred = True
        consumer.registerProducer(self.stream, False)

    def busy(self) -> bool:
        return self.stream is not None

    def stream_done(self) -> None:
        consumer = cast(IConsumer, self.transport)
        consumer.unregisterProducer()
        self.stream = None
        self.setTimeout(self.factory.settings.idle_timeout)
        consumer.registerProducer(cast(IPushProducer, self), True)
        self.resumeProducing()  # and the frames that came meanwhile

    def resetTimeout(self) -> None:
        self.pending = None
        super().resetTimeout()

    def timeoutConnection(self) -> None:
        if self.stream is not None:  # no message taken for TRANSFER_TIMEOUT
            self.tcp.abortConnection()
            return
        pending = unacknowledged(self.transport)
        if not pending:  # all delivered: a FIN after it, never a reset racing the reader
            self.tcp.loseConnection()
            return
        if not self.transferred:  # replies the client does not read: as TCPProtocol
            self.tcp.abortConnection()
            return
        now = self.factory.clock.seconds()
        if self.pending is None or pending < self.pending:
            self.progressed = now
        self.pending = pending
        if now - self.progressed >= TRANSFER_TIMEOUT:
            self.tcp.abortConnection()
            return
        # still reading what came before: look again after another idle period
        self.setTimeout(self.factory.settings.idle_timeout)

    def connectionLost(self, reason: Any = None) -> None:
        if self.stream is not None:
            self.stream.stopProducing()
            self.stream = None
        super().connectionLost(reason)


class TransferCollector:
    """The primary role's metric families, built at scrape time."""

    def __init__(self, role: Transfers) -> None:
        self.role = role

    def collect(self) -> Iterator[Metric]:
        counts = self.role.counts
        transfers = CounterMetricFamily(
            "srvd_transfers",
            "Zone transfers served, by type (axfr; ixfr: incremental; ixfr_full: IXFR answered "
            "in full; uptodate: IXFR answered with the SOA alone) and zone kind",
            labels=["type", "zone_kind"],
        )
        for (kind, zone_kind), value in counts.transfers.items():
            transfers.add_metric([kind, zone_kind], value)
        yield transfers
        yield counter_by_label(
            "srvd_transfers_refused",
            "Transfers and signed queries refused, by reason",
            "reason",
            counts.refused.items(),
        )
        yield CounterMetricFamily(
            "srvd_signed_queries",
            "Queries with a valid TSIG answered signed (such as a secondary's SOA checks)",
            value=counts.signed_queries,
        )
        yield counter_by_label(
            "srvd_notify_sent",
            "NOTIFY messages sent to secondaries, by result (ok: acknowledged; timeout: no "
            "answer after every retry; error: an error answer; retry: sent again)",
            "result",
            sorted(counts.notify.items()),
        )
        sender = self.role.notify
        yield GaugeMetricFamily(
            "srvd_notify_queued",
            "NOTIFY messages waiting to be sent (paced by transfer.notify_rate)",
            value=0 if sender is None else sender.queued,
        )
        catalog = self.role.responder.index.catalog
        yield GaugeMetricFamily(
            "srvd_catalog_members",
            "Member zones in the catalog zone",
            value=0 if catalog is None else catalog.members,
        )


class _NotifyService(Service):
    """Stops the NOTIFY sender with the server."""

    def __init__(self, sender: Any) -> None:
        self.sender = sender

    def stopService(self) -> None:
        super().stopService()
        self.sender.stop()


def prepare_order(
    index: Index, call_later: Callable[[float, Callable[[], None]], object]
) -> MemberOrder | None:
    """Make the signed catalog's member order in steps on the reactor (``call_later``), right
    after its version is made, so that neither a transfer nor an answer has to wait for it
    (an answer that needs it before it is ready makes the rest at once: 1.65 s at 1M members).
    None: the catalog is not signed, or there is none."""
    catalog, signer = index.catalog, index.dnssec
    if catalog is None or not isinstance(signer, ZoneSigner):
        return None
    order = SignedCatalog(catalog, signer).order

    def step() -> None:
        if not order.step():
            call_later(0, step)

    if not order.ready:
        call_later(0, step)
    return order


def start_primary(server: Any, notify: bool) -> Transfers:
    """The primary role of an SrvdService (before it starts): installed on its transports and
    its reloads; ``notify``: this process sends the NOTIFYs (the primary process, not workers)."""
    from srvd.xfr.notify import NotifySender

    role = Transfers(server.config, server.responder)
    role.install(server.listeners, server.tcp)
    server.reloader.before_publish.append(role.before_publish)
    # the signed catalog's member order, made in steps after the start and every reload
    prepare_order(server.responder.index, server.reactor.callLater)
    server.reloader.before_publish.append(
        lambda built: prepare_order(built.index, server.reactor.callLater)
    )
    if notify:
        role.notify = NotifySender(
            server.reactor, role.settings, role.counts.notify, clock=role.clock
        )
        _NotifyService(role.notify).setServiceParent(server)
    return role
