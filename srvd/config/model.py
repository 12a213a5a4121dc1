"""The validated configuration: frozen dataclasses, and the problems found on the way to them.

Everything here is plain data (no reading, no validation): srvd.config.load makes it, the index, the
server and the tools read it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TypeAlias

from srvd.errors import SrvdError
from srvd.wire.discovery import SRV, TEMPLATE
from srvd.wire.names import InvalidName, host_name
from srvd.wire.tsig import Key

MAX_WORKERS = 256
DEFAULT_METRICS = "127.0.0.1:9153"
METRICS_PORT = 9153
DEFAULT_NOTIFY_RATE = 1000
DEFAULT_CONTROL = "/run/srvd/srvd.sock"  # the control socket (srvd.config.ops)

KeyPath: TypeAlias = tuple[str | int, ...]


class ConfigError(SrvdError):
    """The configuration is not valid."""

    def __init__(self, problems: list[Problem], complete: bool = True) -> None:
        self.problems = problems
        self.complete = complete  # False: collection stopped at MAX_PROBLEMS
        super().__init__("\n".join(p.render() for p in problems))


@dataclass(slots=True)
class Problem:
    file: str
    path: KeyPath
    message: str
    line: int | None = None

    @property
    def key(self) -> str:
        out = ""
        for part in self.path:
            if isinstance(part, int) and not isinstance(part, bool):
                out += f"[{part}]"
            else:
                out += f".{part}" if out else str(part)
        return out

    def render(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = f" {self.key}:" if self.path else ""
        return f"{where}:{key} {self.message}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    @property
    def family_v6(self) -> bool:
        return ":" in self.host

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.family_v6 else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: (
        str  # lowercase ASCII without trailing dot; "." = service not offered; may end in {domain}
    )


@dataclass(frozen=True, slots=True)
class RRsetSpec:
    """The records of one type at one owner, relative to the customer domain."""

    owner: str  # such as "_imaps._tcp"
    rtype: int  # SRV or TXT
    srv: tuple[SrvRecord, ...] = ()
    txt: tuple[str, ...] = ()  # one text per TXT record; may contain {domain}

    @property
    def templated(self) -> bool:
        if self.rtype == SRV:
            return any(r.target.endswith(TEMPLATE) for r in self.srv)
        return any(TEMPLATE in t for t in self.txt)


# What one profile key publishes: a tuple of RRsets, or None for "not published".

Entries: TypeAlias = Mapping[str, tuple[RRsetSpec, ...] | None]


@dataclass(frozen=True, slots=True)
class ZoneSettings:
    ttl: int = 3600
    nameservers: tuple[str, ...] = ()
    hostmaster_local: str = "hostmaster"  # RNAME's first label: the mailbox, may contain dots
    hostmaster_domain: str = ""  # the rest of RNAME
    refresh: int = 3600
    retry: int = 600
    expire: int = 1209600
    minimum: int = 300
    # the key tags of the DNSKEY RRset when the zones are signed (srvd.config.dnssec): part of
    # every zone's content, so that a key change or turning signing on or off moves the serials
    dnssec_keys: tuple[int, ...] = ()

    @property
    def hostmaster(self) -> str:
        """The mailbox as an e-mail address."""
        return f"{self.hostmaster_local}@{self.hostmaster_domain}"

    @property
    def negative_ttl(self) -> int:
        return min(self.ttl, self.minimum)


@dataclass(frozen=True, slots=True)
class TcpSettings:
    idle_timeout: float = 10.0  # no complete query for this long: the connection is closed
    message_timeout: float = 2.0  # a message begun but not complete for this long: closed
    max_connections: int = 1000  # beyond it the least recently active connection is reaped
    max_pipelined: int = 100  # replies queued on one connection before srvd stops reading it


@dataclass(frozen=True, slots=True)
class RrlSettings:
    """Response rate limiting for UDP (srvd.server.rrl); ``responses_per_second`` 0 turns it off."""

    responses_per_second: int = 50
    slip: int = 2  # every slip-th limited response is sent truncated (TC=1); 0: none
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56
    table_size: int = 65_536  # buckets; keys that hash alike share one (bounded memory)
    # Loopback sources cannot be spoofed from outside the host: never limited by default.
    exempt: tuple[str, ...] = ("127.0.0.0/8", "::1/128")

    @property
    def enabled(self) -> bool:
        return self.responses_per_second > 0


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """Resource limits on the configuration itself: a clear error instead of exhaustion."""

    max_file_size: int = 512 << 20  # octets, per file read (the main file and each include)
    max_domains: int = 10_000_000
    max_records_per_name: int = 100  # records of one type at one name
    max_txt_length: int = 4000  # octets of one TXT record's text


@dataclass(frozen=True, slots=True)
class UdpSettings:
    # bursts overflow the default 208 KiB receive buffer long before the CPU is busy
    receive_buffer: int = 4 << 20
    send_buffer: int = 4 << 20


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    entries: Entries


@dataclass(frozen=True, slots=True)
class DomainOverride:
    profile: str | None
    entries: Entries


@dataclass(frozen=True, slots=True)
class Config:
    source: str
    files: tuple[str, ...]
    listen: tuple[Endpoint, ...]
    zone: ZoneSettings
    profiles: Mapping[str, Profile]
    # customer domain (lowercase ASCII) → profile name, or a per-domain override
    domains: Mapping[str, str | DomainOverride] = field(repr=False)
    tcp: TcpSettings = TcpSettings()
    udp: UdpSettings = UdpSettings()
    rrl: RrlSettings = RrlSettings()
    limits: LimitSettings = LimitSettings()
    state_dir: str | None = None
    metrics: Endpoint | None = None  # where /metrics is served; None: not at all
    workers: int = 1  # processes answering on the same addresses
    sha256: str = ""  # of every file read, in order: tells which configuration is served
    mtime: int = 0  # the newest modification time of the files read (Unix seconds)
    # srvd as a hidden primary (srvd.config.transfer): peers, keys, NOTIFY; the catalog zone
    transfer: TransferSettings | None = None
    catalog: str | None = None
    # discovery documents over HTTP (srvd.config.http, srvd.http); None: off
    http: HttpSettings | None = None
    # operations (srvd.config.ops): the guard on mass removal, the control socket (None: off)
    reload: ReloadSettings = field(default_factory=lambda: ReloadSettings())
    control: str | None = DEFAULT_CONTROL
    # DNSSEC online signing (srvd.config.dnssec); None: zones are served unsigned
    dnssec: DnssecSettings | None = None

    def entries_of(self, domain: str) -> dict[str, tuple[RRsetSpec, ...] | None]:
        """The merged profile keys of one domain (profile, then its overrides)."""
        entry = self.domains[domain]
        if isinstance(entry, str):
            return dict(self.profiles[entry].entries)
        merged = dict(self.profiles[entry.profile].entries) if entry.profile else {}
        merged.update(entry.entries)
        return merged

    def domain_named(self, given: str) -> str:
        """A configured domain, as given on a command line (any case, IDN, trailing dot), in the
        form the configuration holds it. ValueError, with the message, when the text is not a
        host name or names no configured domain."""
        try:
            name = host_name(given)
        except InvalidName as exc:
            raise ValueError(str(exc)) from None
        if name not in self.domains:
            raise ValueError(f"{name} is not a configured domain in {self.source}")
        return name


# ---------------------------------------------------------------------------------------------
# Operations: ``reload:`` and ``control:`` (read by srvd.config.ops)

NEVER_REFUSED = 10  # a reload removing this many domains or fewer is never refused


@dataclass(frozen=True, slots=True)
class ReloadSettings:
    """``reload.max_removed``: a reload that removes more domains than this is refused (unless
    forced). A count, or a percentage of the domains served; both None: no guard."""

    max_removed: int | None = None
    max_removed_percent: float | None = 10.0

    def most_removed(self, served: int) -> int | None:
        """How many of ``served`` domains one reload may remove; None: any number."""
        if self.max_removed is not None:
            return max(self.max_removed, NEVER_REFUSED)
        if self.max_removed_percent is not None:
            return max(int(served * self.max_removed_percent / 100), NEVER_REFUSED)
        return None

    def describe(self) -> str:
        if self.max_removed is not None:
            return str(self.max_removed)
        if self.max_removed_percent is not None:
            return f"{self.max_removed_percent:g}%"
        return "off"


# ---------------------------------------------------------------------------------------------
# srvd as a hidden primary: the ``transfer:`` key (read by srvd.config.transfer)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class AllowRule:
    network: Network
    key: bytes  # wire name of the key the peer must sign with


@dataclass(frozen=True, slots=True)
class NotifyTarget:
    host: str
    port: int
    key: bytes | None  # wire name, or None: unsigned NOTIFY

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class TransferSettings:
    keys: tuple[Key, ...] = ()
    allow: tuple[AllowRule, ...] = ()
    notify: tuple[NotifyTarget, ...] = ()
    notify_rate: int = DEFAULT_NOTIFY_RATE

    @property
    def key_map(self) -> dict[bytes, Key]:
        return {key.name: key for key in self.keys}

    def allowed(self, address: str, key: Key | None) -> bool:
        """Whether a transfer from ``address`` signed with ``key`` is allowed."""
        if key is None:
            return False
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(rule.key == key.name and ip in rule.network for rule in self.allow)


# ---------------------------------------------------------------------------------------------
# Discovery documents over HTTP: the ``http:`` key (read by srvd.config.http)

HTTP_USERNAMES = ("email", "local")  # the user name a client is told: the address, its local part
HTTP_AUTHENTICATION = ("password-cleartext", "password-encrypted", "OAuth2")


@dataclass(frozen=True, slots=True)
class HttpProfile:
    """What DNS cannot say, for the domains of one profile (None: the ``http:`` default)."""

    display_name: str | None = None
    username: str | None = None
    authentication: str | None = None


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """``http.cert`` and ``http.key`` (srvd.config.tls): the paths, what was read from them when
    the configuration was (a reload reads them again), and the leaf certificate's validity."""

    cert: str  # PEM: the server's certificate, then its chain
    key: str  # PEM: its private key (the cert file itself when it holds the key too)
    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)
    not_before: float = 0.0  # the leaf's validity, seconds since the epoch
    not_after: float = 0.0
    names: tuple[str, ...] = ()  # the leaf's DNS names (subjectAltName)


@dataclass(frozen=True, slots=True)
class HttpSettings:
    listen: tuple[Endpoint, ...] = ()
    tls: TlsFiles | None = None  # HTTPS on every http.listen address (http.cert, http.key)
    pacc: bool = False  # /.well-known/user-agent-configuration.json (draft-ietf-mailmaint-pacc)
    # what DNS cannot say
    display_name: str = "{domain}"
    username: str = "email"
    authentication: str = "password-cleartext"
    # limits on what a client may send or hold
    max_body: int = 16_384  # octets of a POST body
    max_connections: int = 1000
    idle_timeout: float = 30.0  # seconds a connection may wait for a complete request
    # per profile: (profile name, what it says instead of the defaults above)
    profiles: tuple[tuple[str, HttpProfile], ...] = ()

    def of(self, profile: str | None) -> HttpSettings:
        """The settings for the domains of a profile (its ``http.profiles`` entry applied)."""
        for name, chosen in self.profiles:
            if name == profile:
                return replace(
                    self,
                    display_name=chosen.display_name or self.display_name,
                    username=chosen.username or self.username,
                    authentication=chosen.authentication or self.authentication,
                    profiles=(),
                )
        return replace(self, profiles=()) if self.profiles else self


def parse_endpoint(text: str, default_port: int = 53) -> Endpoint:
    """``127.0.0.1:53``, ``[::1]:5353``, ``::1`` or ``127.0.0.1`` → Endpoint."""
    text = text.strip()
    port = default_port
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"{text!r}: missing ']'")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"{text!r}: expected [address]:port")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text.isdigit():
            raise ValueError(f"{text!r}: the port must be a number")
        port = int(port_text)
    else:
        host = text
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{text!r}: port out of range")
    return Endpoint(str(address), port)


# ---------------------------------------------------------------------------------------------
# DNSSEC online signing: the ``dnssec:`` key (read by srvd.config.dnssec)

DNSSEC_LIFETIME = 14 * 86400  # seconds a signature is valid
DNSSEC_REFRESH = 7 * 86400  # a new validity window this often (per zone, staggered)
DNSSEC_BACKDATE = 3600  # inception this far before the window starts (clock skew)
DNSSEC_CACHE = 1_000_000  # signatures kept, at most (about 260 octets each)
DNSSEC_DENIALS = ("nsec", "compact")  # how DO=1 answers deny a name (docs/dnssec.md)


@dataclass(frozen=True, slots=True)
class DnssecKey:
    """A private key file: its path and contents (PEM or BIND K*.private)."""

    path: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class DnssecSettings:
    key: DnssecKey  # signs every zone (a combined signing key)
    publish: tuple[DnssecKey, ...] = ()  # also in the DNSKEY RRset, signing nothing (rollover)
    lifetime: int = DNSSEC_LIFETIME
    refresh: int = DNSSEC_REFRESH
    backdate: int = DNSSEC_BACKDATE
    cache_size: int = DNSSEC_CACHE
    denial: str = "nsec"  # DNSSEC_DENIALS: the NSEC chain, or RFC 9824 compact answers
