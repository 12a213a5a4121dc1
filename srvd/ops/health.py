"""``srvd health``: ask a running srvd one real DNS question over UDP and judge the reply.

For container health checks and monitoring scripts: no tool beyond the standard library's sockets
and dnslib, which builds the query and parses the reply (this is not srvd's query path, where
every octet counts). The reply must carry the query's ID and question, QR=1, rcode NOERROR, AA=1
and at least one answer record of the asked type; anything else is unhealthy, with the reason on
one line. dnslib is imported only when a health check runs, not by ``srvd serve``.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

from srvd.config import Config, Endpoint, RRsetSpec
from srvd.config.load import DomainSink, Entry, read_config
from srvd.config.model import Profile, ZoneSettings
from srvd.config.ops import top_level
from srvd.config.reader import _Invalid, _Reader
from srvd.wire.names import MAX_LABEL, InvalidName, to_ascii, to_wire

DEFAULT_TIMEOUT = 2.0  # seconds to wait for each attempt's reply
DEFAULT_RETRIES = 1  # attempts after the first when no reply comes
ANY = 255


@dataclass(frozen=True, slots=True)
class Verdict:
    healthy: bool
    message: str  # one line: what was asked and what came back, or why it is unhealthy


def query_name(raw: str) -> str:
    """A name to ask for: lowercase ASCII (IDNA for Unicode), no trailing dot; any labels."""
    name = raw.strip()
    if name.endswith(".") and name != ".":
        name = name[:-1]
    if not name or name == ".":
        raise InvalidName("an empty name cannot be asked for")
    # label by label: IDNA refuses the underscore labels (_tcp) that srvd serves
    name = ".".join(to_ascii(label) if label else "" for label in name.split("."))
    for label in name.split("."):
        if not label or len(label) > MAX_LABEL:
            raise InvalidName(f"{raw!r}: labels must be 1 to {MAX_LABEL} octets")
    if len(to_wire(name)) > 255:
        raise InvalidName(f"{raw!r} is longer than 255 octets in wire form")
    return name


def query_type(raw: str) -> int:
    """``SOA``, ``srv``, ``TYPE33`` or ``33`` → the type number."""
    from dnslib import QTYPE

    text = raw.strip().upper()
    if text.isdigit():
        number = int(text)
    elif text.startswith("TYPE") and text[4:].isdigit():
        number = int(text[4:])
    else:
        number = QTYPE.reverse.get(text, -1)
    if not 1 <= number <= 65535:
        raise ValueError(f"{raw!r} is not a DNS record type")
    return number


def type_text(qtype: int) -> str:
    from dnslib import QTYPE

    return str(QTYPE.get(qtype, f"TYPE{qtype}"))


def _apex_labels(entries: Mapping[str, tuple[RRsetSpec, ...] | None]) -> list[str]:
    """The apex labels (``_tcp``, ``_axigen``) of the zones a domain's merged keys publish."""
    return sorted(
        {spec.owner.rsplit(".", 1)[-1] for rrsets in entries.values() if rrsets for spec in rrsets}
    )


def first_zone(config: Config) -> str | None:
    """The apex of the first zone the configuration serves: the first domain (in configuration
    order) that publishes records, and of its zones the first by name (as ``srvd zone``)."""
    for domain in config.domains:
        labels = _apex_labels(config.entries_of(domain))
        if labels:
            return f"{labels[0]}.{domain}"
    return None


class _Found(Exception):
    def __init__(self, apex: str) -> None:
        self.apex = apex


class _FirstZone(DomainSink):
    """Stops the reading at the first domain that publishes a zone."""

    def __init__(self) -> None:
        self.profiles: Mapping[str, Profile] = {}

    def begin(self, zone: ZoneSettings, profiles: Mapping[str, Profile]) -> None:
        self.profiles = profiles

    def domain(self, name: str, entry: Entry | None) -> None:
        if entry is None:
            return
        if isinstance(entry, str):
            entries = dict(self.profiles[entry].entries)
        else:
            entries = dict(self.profiles[entry.profile].entries) if entry.profile else {}
            entries.update(entry.entries)
        labels = sorted(
            {
                spec.owner.rsplit(".", 1)[-1]
                for rrsets in entries.values()
                if rrsets
                for spec in rrsets
            }
        )
        if labels:
            raise _Found(f"{labels[0]}.{name}")


def probe_plan(path: str) -> tuple[Endpoint, str | None]:
    """Where to ask and what, from a configuration, without building its index: the first
    ``listen:`` address (a wildcard becomes loopback), read alone from the file; the apex of the
    first zone (as ``first_zone``), reading the domains only until the first that publishes
    one. None: the configuration serves no zone. Raises ConfigError, OSError, ValueError."""
    reader = _Reader()
    reader.file = path
    try:
        addresses = reader.listen(top_level(path, "listen"), ("listen",))
    except _Invalid:
        raise ValueError(reader.problems[0].render()) from None
    if not addresses:
        raise ValueError(f"{path}: listen: no address")
    first = addresses[0]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(first.host, first.host)
    server = Endpoint(host, first.port)
    try:
        read_config(path, _FirstZone())
    except _Found as found:
        return server, found.apex
    return server, None


def judge_refused(reply: bytes, qid: int, name: str, qtype: int) -> str | None:
    """For a server that serves no zone yet: why a reply is not a REFUSED to our question."""
    from dnslib import RCODE, DNSError, DNSRecord

    try:
        message = DNSRecord.parse(reply)
    except (DNSError, ValueError, IndexError) as exc:
        return f"the reply does not parse: {exc}"
    header = message.header
    if header.id != qid or header.qr != 1:
        return "the reply is not a response to the query"
    if header.rcode != 5:
        return f"rcode {RCODE.get(header.rcode, header.rcode)}, not REFUSED"
    questions = message.questions
    if len(questions) != 1 or str(questions[0].qname).rstrip(".").lower() != name.rstrip("."):
        return "the reply is for another question"
    return None


def build_query(name: str, qtype: int, qid: int) -> bytes:
    """A plain query, RD=0 (as a resolver asks an authoritative server), no EDNS."""
    from dnslib import DNSHeader, DNSQuestion, DNSRecord

    return bytes(DNSRecord(DNSHeader(id=qid, rd=0), q=DNSQuestion(name, qtype)).pack())


def judge(reply: bytes, qid: int, name: str, qtype: int) -> str | None:
    """Why a reply to the question (``name``, ``qtype``) with ID ``qid`` is not healthy, or
    None when it is."""
    from dnslib import RCODE, DNSError, DNSRecord

    try:
        message = DNSRecord.parse(reply)
    except (DNSError, ValueError, IndexError) as exc:  # dnslib raises all three
        return f"the reply does not parse: {exc}"
    header = message.header
    if header.id != qid:
        return f"the reply has ID {header.id}, not the query's {qid}"
    if header.qr != 1:
        return "the reply has QR=0 (it is not a response)"
    if header.rcode != 0:
        return f"rcode {RCODE.get(header.rcode, header.rcode)}"
    if len(message.questions) != 1:
        return f"the reply has {len(message.questions)} questions, not 1"
    question = message.questions[0]
    if str(question.qname).rstrip(".").lower() != name or question.qtype != qtype:
        return f"the reply is for another question ({question.qname} {type_text(question.qtype)})"
    if header.aa != 1:
        return "the reply is not authoritative (AA=0)"
    if header.tc == 1:
        return "the reply is truncated (TC=1)"
    answers = [rr for rr in message.rr if qtype == ANY or rr.rtype == qtype]
    if not answers:
        return f"no {type_text(qtype)} record in the answer (NODATA)"
    return None


def _exchange(server: Endpoint, query: bytes, qid: int, timeout: float) -> bytes:
    """Send one query and wait for the datagram that carries its ID (others are ignored: a late
    reply to an earlier attempt, or noise). Raises OSError, TimeoutError among them."""
    family = socket.AF_INET6 if server.family_v6 else socket.AF_INET
    deadline = time.monotonic() + timeout
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        # connected: only the server's datagrams arrive, and an ICMP "port unreachable" is
        # reported as ECONNREFUSED at once instead of a timeout
        sock.connect((server.host, server.port))
        sock.send(query)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            data = sock.recv(65535)
            if len(data) >= 2 and int.from_bytes(data[:2], "big") == qid:
                return data


def check_health(
    server: Endpoint,
    name: str,
    qtype: int,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    serves_nothing: bool = False,
) -> Verdict:
    """Ask ``server`` for (``name``, ``qtype``); a new attempt (new ID, new source port) after a
    timeout or a network error, ``retries`` times. A reply that came back wrong is final."""
    question = f"{name.rstrip('.')}. {type_text(qtype)}"
    attempts = retries + 1
    failure = ""
    for _ in range(attempts):
        qid = secrets.randbelow(65536)
        started = time.monotonic()
        try:
            reply = _exchange(server, build_query(name, qtype, qid), qid, timeout)
        except TimeoutError:
            failure = f"no reply within {timeout:g} s"
            continue
        except OSError as exc:
            failure = exc.strerror or str(exc)
            continue
        elapsed = (time.monotonic() - started) * 1000
        if serves_nothing:
            reason = judge_refused(reply, qid, name, qtype)
            if reason is not None:
                return Verdict(False, f"{server}: {question}: {reason}")
            return Verdict(
                True,
                f"{server}: {question}: REFUSED in {elapsed:.1f} ms (the configuration serves no "
                "zone yet: srvd answers, and refuses what it does not serve)",
            )
        reason = judge(reply, qid, name, qtype)
        if reason is not None:
            return Verdict(False, f"{server}: {question}: {reason}")
        return Verdict(True, f"{server}: {question}: NOERROR, AA=1, answered in {elapsed:.1f} ms")
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    return Verdict(False, f"{server}: {question}: {failure} ({tries})")
