"""``srvd verify-delegation``: asks each domain's parent name servers whether srvd's subzones
are delegated as ``srvd delegation`` says, and reports per domain what is wrong.

For each configured domain D and each apex A srvd serves for it (``_tcp.D``, ``_axigen.D``, ...):

1. the zone holding D and its name servers: through a recursive resolver (``--resolver``), or
   only the one server given (``--server``, asked directly, which must be authoritative for it);
2. each parent server is asked ``A NS`` without recursion: a referral to A is a delegation;
   an authoritative answer or NXDOMAIN means none (*not delegated*); the referral's NS set is
   compared with ``zone.nameservers`` (*NS set differs*);
3. each delegated server (its address from the referral's glue, else looked up as in 1) is asked
   ``A SOA`` without recursion and must answer it authoritatively (else *lame*);
4. ``A DS`` at each parent server is compared with the DS srvd.migrate.delegation expects: none
   while srvd does not sign (a DS there breaks validation); when it signs, one DS per key of the
   DNSKEY set (every key signs that set), and a parent holding only some of them (a rollover
   under way, docs/dnssec.md) is a note, not a fault;
5. the parent zone is transferred (AXFR) when its server allows it, and records it still holds
   under a delegated A are reported (*hidden records*: the delegation hides them, such as
   Microsoft 365's ``_sipfederationtls._tcp``). A refused transfer is noted, not a fault.

Every query waits ``timeout`` seconds at most; all queries together (transfers counted) go out at
``rate`` per second at most; the whole run stops at ``time_limit``, the domains left unchecked
are reported as such.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.xfr
import dns.zone

from srvd.config import Config
from srvd.migrate.delegation import apexes, signing_records

Server = tuple[str, int]  # address, port


class OutOfTime(Exception):
    """The run's time limit is reached."""


@dataclass(frozen=True, slots=True)
class Finding:
    apex: str
    kind: str  # not-delegated, lame, ns-differs, hidden-records, ds, parent, unresolved
    message: str


@dataclass(slots=True)
class DomainResult:
    domain: str
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be checked, not faults
    checked: bool = True

    @property
    def ok(self) -> bool:
        return self.checked and not self.findings


class Asker:
    """Queries over UDP (TCP after TC=1), paced at ``rate`` per second, within a deadline."""

    def __init__(self, rate: float, timeout: float, time_limit: float) -> None:
        self.interval = 1.0 / rate
        self.timeout = timeout
        self.deadline = time.monotonic() + time_limit
        self.next_at = 0.0
        self.sent = 0

    def pace(self) -> None:
        now = time.monotonic()
        if now >= self.deadline:
            raise OutOfTime
        if self.next_at > now:
            time.sleep(self.next_at - now)
        self.next_at = max(now, self.next_at) + self.interval
        self.sent += 1

    def wait(self) -> float:
        return max(0.05, min(self.timeout, self.deadline - time.monotonic()))

    def ask(self, server: Server, name: str, rdtype: str, recurse: bool) -> dns.message.Message:
        """The reply; raises dns.exception.DNSException or OSError (no reply, a bad one)."""
        self.pace()
        query = dns.message.make_query(name, rdtype, want_dnssec=rdtype == "DS")
        if not recurse:
            query.flags &= ~dns.flags.RD
        reply = dns.query.udp(query, server[0], port=server[1], timeout=self.wait())
        if reply.flags & dns.flags.TC:
            self.pace()
            reply = dns.query.tcp(query, server[0], port=server[1], timeout=self.wait())
        return reply

    def transfer(self, server: Server, zone_name: str) -> dns.zone.Zone:
        self.pace()
        zone = dns.zone.Zone(zone_name)
        query, _serial = dns.xfr.make_query(zone)
        wait = self.wait()
        dns.query.inbound_xfr(
            server[0], zone, query, port=server[1], timeout=wait, lifetime=wait * 4
        )
        return zone


def _where(server: Server) -> str:
    return f"[{server[0]}]:{server[1]}" if ":" in server[0] else f"{server[0]}:{server[1]}"


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _problem(exc: BaseException) -> str:
    if isinstance(exc, dns.exception.Timeout):
        return "no reply"
    return str(exc) or type(exc).__name__


class Verifier:
    """The checks of one run; what it learns of parent zones and name servers is kept."""

    def __init__(
        self,
        config: Config,
        asker: Asker,
        port: int,
        resolver: Server | None = None,
        server: Server | None = None,
        transfers: bool = True,
    ) -> None:
        lookup = resolver or server
        if lookup is None or (resolver is not None and server is not None):
            raise ValueError("give a resolver or a server, not both")
        self.config = config
        self.asker = asker
        self.port = port
        self.lookup: Server = lookup
        self.recurse = resolver is not None
        self.direct = server
        self.transfers = transfers
        self.zones: dict[str, tuple[str, list[Server]] | str] = {}  # domain → (zone, servers)
        self.addresses: dict[str, list[str] | str] = {}  # host → addresses, or why none
        self.parent_data: dict[tuple[str, Server], dns.zone.Zone | str] = {}

    # -- finding things out

    def addresses_of(self, host: str) -> list[str] | str:
        """A host's IPv4 and IPv6 addresses (through the resolver or the server), or why not."""
        known = self.addresses.get(host)
        if known is not None:
            return known
        found: list[str] = []
        why = ""
        for rdtype in ("A", "AAAA"):
            try:
                reply = self.asker.ask(self.lookup, host, rdtype, self.recurse)
            except (dns.exception.DNSException, OSError) as exc:
                why = f"{rdtype} of {host} at {_where(self.lookup)}: {_problem(exc)}"
                continue
            for rrset in reply.answer:
                if rrset.rdtype == dns.rdatatype.from_text(rdtype):
                    found += [rd.address for rd in rrset]
        result: list[str] | str = found or why or f"{host} has no address at {_where(self.lookup)}"
        self.addresses[host] = result
        return result

    def parent_of(self, domain: str) -> tuple[str, list[Server]] | str:
        """The zone that holds ``domain`` and the servers to ask about it, or why not found."""
        known = self.zones.get(domain)
        if known is not None:
            return known
        result = self._parent_of(domain)
        self.zones[domain] = result
        return result

    def _parent_of(self, domain: str) -> tuple[str, list[Server]] | str:
        try:
            reply = self.asker.ask(self.lookup, domain, "SOA", self.recurse)
        except (dns.exception.DNSException, OSError) as exc:
            return f"SOA of {domain} at {_where(self.lookup)}: {_problem(exc)}"
        if reply.rcode() == dns.rcode.NXDOMAIN:
            return f"{domain} does not exist (NXDOMAIN at {_where(self.lookup)})"
        if reply.rcode() != dns.rcode.NOERROR:
            return f"SOA of {domain} at {_where(self.lookup)}: {dns.rcode.to_text(reply.rcode())}"
        zone = None
        for section in (reply.answer, reply.authority):
            for rrset in section:
                if rrset.rdtype == dns.rdatatype.SOA:
                    zone = _text(rrset.name)
                    break
            if zone:
                break
        if zone is None:
            return f"no SOA for the zone of {domain} at {_where(self.lookup)}"
        if self.direct is not None:
            return zone, [self.direct]
        try:
            reply = self.asker.ask(self.lookup, zone, "NS", True)
        except (dns.exception.DNSException, OSError) as exc:
            return f"NS of {zone} at {_where(self.lookup)}: {_problem(exc)}"
        names = sorted(
            _text(rd.target)
            for rrset in reply.answer
            if rrset.rdtype == dns.rdatatype.NS
            for rd in rrset
        )
        servers: list[Server] = []
        for name in names:
            found = self.addresses_of(name)
            if isinstance(found, list):
                servers += [(address, self.port) for address in found]
        if not servers:
            return f"no address for the name servers of {zone} ({', '.join(names) or 'none'})"
        return zone, sorted(set(servers))

    def parent_zone(self, zone: str, server: Server) -> dns.zone.Zone | str:
        """The parent zone's content by AXFR from ``server``, or why not."""
        key = (zone, server)
        known = self.parent_data.get(key)
        if known is None:
            try:
                known = self.asker.transfer(server, zone)
            except (dns.exception.DNSException, OSError, EOFError) as exc:
                known = f"AXFR of {zone} from {_where(server)}: {_problem(exc)}"
            self.parent_data[key] = known
        return known

    # -- the checks

    def verify(self, domain: str) -> DomainResult:
        result = DomainResult(domain)
        served = apexes(self.config, domain)
        if not served:
            result.notes.append("srvd serves no zone for it (its profile publishes nothing)")
            return result
        parent = self.parent_of(domain)
        if isinstance(parent, str):
            result.findings += [Finding(apex, "parent", parent) for apex in served]
            return result
        zone, servers = parent
        for apex in served:
            self.check_apex(result, zone, servers, apex)
        return result

    def check_apex(self, result: DomainResult, zone: str, servers: list[Server], apex: str) -> None:
        wanted = set(self.config.zone.nameservers)
        delegated: dict[Server, set[str]] = {}
        glue: dict[str, list[str]] = {}
        for server in servers:
            try:
                reply = self.asker.ask(server, apex, "NS", False)
            except (dns.exception.DNSException, OSError) as exc:
                result.findings.append(
                    Finding(apex, "parent", f"parent server {_where(server)}: {_problem(exc)}")
                )
                continue
            names = self._referral(reply, apex)
            if names is None:
                result.findings.append(
                    Finding(
                        apex,
                        "not-delegated",
                        f"not delegated at {_where(server)} (parent zone {zone}): "
                        f"{self._why_not(reply, apex)}",
                    )
                )
                continue
            delegated[server] = names
            for rrset in reply.additional:
                if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                    glue.setdefault(_text(rrset.name), []).extend(rd.address for rd in rrset)
            if names != wanted:
                result.findings.append(
                    Finding(
                        apex,
                        "ns-differs",
                        f"NS set at {_where(server)} is {', '.join(sorted(names))}; "
                        f"zone.nameservers is {', '.join(sorted(wanted))}",
                    )
                )
            self.check_ds(result, server, apex)
            self.check_hidden(result, zone, server, apex, names)
        for name in sorted(set().union(*delegated.values()) if delegated else ()):
            self.check_lame(result, apex, name, glue.get(name))

    def _referral(self, reply: dns.message.Message, apex: str) -> set[str] | None:
        """The NS names of a referral to exactly ``apex``, or None when it is none."""
        if reply.rcode() != dns.rcode.NOERROR or reply.flags & dns.flags.AA:
            return None
        for rrset in reply.authority:
            if rrset.rdtype == dns.rdatatype.NS and _text(rrset.name) == apex:
                return {_text(rd.target) for rd in rrset}
        return None

    def _why_not(self, reply: dns.message.Message, apex: str) -> str:
        rcode = reply.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return f"{apex} does not exist there (NXDOMAIN)"
        if rcode != dns.rcode.NOERROR:
            return f"answered {dns.rcode.to_text(rcode)}"
        if reply.flags & dns.flags.AA:
            return "it answers for the name itself (no NS RRset at the cut)"
        cuts = [_text(rrset.name) for rrset in reply.authority if rrset.rdtype == dns.rdatatype.NS]
        if cuts:
            return f"it refers to {', '.join(cuts)} instead: it is not the parent zone's server"
        return "no referral and no authoritative answer"

    def check_ds(self, result: DomainResult, server: Server, apex: str) -> None:
        expected = {  # in dnspython's form, as the parent's are read
            dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DS, r.data).to_text().lower()
            for r in signing_records(self.config, apex)
            if r.rtype == "DS"
        }
        try:
            reply = self.asker.ask(server, apex, "DS", False)
        except (dns.exception.DNSException, OSError) as exc:
            result.notes.append(f"{apex}: DS at {_where(server)}: {_problem(exc)}")
            return
        found = {
            rd.to_text().lower()
            for rrset in reply.answer
            if rrset.rdtype == dns.rdatatype.DS and _text(rrset.name) == apex
            for rd in rrset
        }
        if found == expected:
            return
        if found and found < expected:  # a rollover under way: each of these keys validates
            result.notes.append(
                f"{apex}: DS at {_where(server)} is {'; '.join(sorted(found))}; srvd also "
                f"publishes {'; '.join(sorted(expected - found))} (a key rollover under way?)"
            )
            return
        if not expected:
            message = (
                f"DS at {_where(server)} ({'; '.join(sorted(found))}) but srvd does not sign "
                f"{apex}: validating resolvers will reject its answers"
            )
        else:
            message = (
                f"DS at {_where(server)} is {'; '.join(sorted(found)) or 'missing'}; "
                f"expected {'; '.join(sorted(expected))}"
            )
        result.findings.append(Finding(apex, "ds", message))

    def check_hidden(
        self, result: DomainResult, zone: str, server: Server, apex: str, names: set[str]
    ) -> None:
        if not self.transfers:
            return
        data = self.parent_zone(zone, server)
        if isinstance(data, str):
            note = f"records under the cut not checked: {data}"
            if note not in result.notes:
                result.notes.append(note)
            return
        origin = data.origin
        assert origin is not None
        cut = dns.name.from_text(apex)
        hidden = []
        for name, rdataset in data.iterate_rdatasets():
            absolute = name.derelativize(origin)
            if absolute == cut or not absolute.is_subdomain(cut):
                continue
            owner = _text(absolute)
            if owner in names and rdataset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                continue  # glue of a name server below the cut
            hidden.append(f"{owner} {dns.rdatatype.to_text(rdataset.rdtype)}")
        if hidden:
            result.findings.append(
                Finding(
                    apex,
                    "hidden-records",
                    f"the parent zone {zone} still holds records below the cut, hidden by the "
                    "delegation (move them into srvd's configuration): "
                    + ", ".join(sorted(hidden)),
                )
            )

    def check_lame(
        self, result: DomainResult, apex: str, name: str, glue: list[str] | None
    ) -> None:
        addresses = glue or self.addresses_of(name)
        if isinstance(addresses, str):
            result.findings.append(Finding(apex, "lame", f"{name}: no address: {addresses}"))
            return
        for address in sorted(set(addresses)):
            server = (address, self.port)
            try:
                reply = self.asker.ask(server, apex, "SOA", False)
            except (dns.exception.DNSException, OSError) as exc:
                why = _problem(exc)
            else:
                soa = reply.get_rrset(
                    reply.answer,
                    dns.name.from_text(apex),
                    dns.rdataclass.IN,
                    dns.rdatatype.SOA,
                )
                if reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA and soa:
                    continue
                why = (
                    f"answered {dns.rcode.to_text(reply.rcode())}"
                    f"{'' if reply.flags & dns.flags.AA else ', not authoritative'}"
                    f"{'' if soa else ', no SOA'}"
                )
            result.findings.append(
                Finding(apex, "lame", f"{name} ({_where(server)}) does not serve {apex}: {why}")
            )


def verify_all(verifier: Verifier, domains: Sequence[str]) -> Iterator[DomainResult]:
    """Each domain verified in turn; once the time limit is reached, the rest as unchecked."""
    for number, domain in enumerate(domains):
        try:
            result = verifier.verify(domain)
        except OutOfTime:
            for rest in domains[number:]:
                yield DomainResult(rest, checked=False)
            return
        yield result


def render(result: DomainResult) -> list[str]:
    if not result.checked:
        return [f"{result.domain}: NOT CHECKED (time limit reached)"]
    head = f"{result.domain}: {'OK' if not result.findings else 'FAULT'}"
    lines = [head]
    lines += [f"  {f.kind}: {f.apex}: {f.message}" for f in result.findings]
    lines += [f"  note: {note}" for note in result.notes]
    return lines
