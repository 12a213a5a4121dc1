"""Differential test: srvd answers like NSD 4.6 for the same data.

The test builds one data model of ~40 customer domains (four profiles, per-domain overrides, a
Unicode domain, upper-case and trailing-dot keys), writes it once as srvd's YAML and once as
RFC 1035 zone files for NSD (derived here, independently of srvd's own index and zone-file code),
starts both servers on loopback ports, sends a few thousand seeded queries to each, and compares
the replies field by field. Where dns-behaviour.md rules explicitly and NSD does otherwise, the
contract wins; each such place is marked "contract:" below:

- the question is echoed in every reply (NSD drops it from REFUSED for classes such as HS);
- an OPT in the query gets an OPT with DO echoed, BADVERS included (NSD clears DO there; it also
  keeps CD there, unlike in its other replies; srvd never copies CD);
- class ANY may be REFUSED;
- QTYPE ANY gets one RRset (RFC 8482), checked against NSD's answer for that RRset's type;
- CH version.bind and id.server are REFUSED: NSD runs with hide-version and hide-identity.

NSD's Extended DNS Errors (RFC 8914) are left out of the comparison: the contract asks for none.
"""

from __future__ import annotations

import json
import random
import re
import socket
import struct
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from conftest import (
    RunningServer,
    free_port,
    require_tool,
    start_srvd,
    stop_process,
    wait_for_dns,
)

SEED = 20240607
UDP_QUERIES = 2700
TCP_SAMPLE = 320
MIN_COMPARED = 2000

# ---------------------------------------------------------------------------------------------
# The data model: one source for srvd's YAML and NSD's zone files.

ZONE_SETTINGS: dict[str, Any] = {
    "ttl": 3600,
    "nameservers": ["ns1.discovery.provider.example", "ns2.discovery.provider.example"],
    # a mailbox with a dot in its local part: RNAME's first label is "dns.admin" (escaped in files)
    "hostmaster": "dns.admin@provider.example",
    "refresh": 7200,
    "retry": 900,
    "expire": 1209600,
    "minimum": 300,
}
NEGATIVE_TTL = min(ZONE_SETTINGS["ttl"], ZONE_SETTINGS["minimum"])

SERVICES = (
    "imap",
    "imaps",
    "pop3",
    "pop3s",
    "submission",
    "submissions",
    "caldav",
    "caldavs",
    "carddav",
    "carddavs",
    "jmap",
    "autodiscover",
)

# 600 octets: srvd splits it into character-strings of 255, 255 and 90 octets (one TXT record).
LONG_TEXT = "v=policy1; " + "".join(f"k{i:03d}=" + "abcdefghij"[i % 10] * 6 for i in range(53))
LONG_TEXT = (LONG_TEXT + "x" * 600)[:600]
# Several records of ~300 octets each: more than 1232 octets, so UDP with any payload truncates.
BIG_TEXTS = [f"big-{i}-" + ("0123456789abcdef" * 19)[: 290 + i] for i in range(5)]

# TXT lengths at the 255-octet boundary of one character-string, and an empty text
EDGE_TEXTS = ["a" * 255, "b" * 256, "", "c" * 510, "d" * 511]
# The IDNA form of the Unicode labels used below, written out (not computed like srvd does)
IDNA_LABELS = {"bücher": "xn--bcher-kva", "münchen": "xn--mnchen-3ya"}

PROFILES: dict[str, dict[str, Any]] = {
    "standard": {
        "imaps": [
            {"target": "imap1.provider.example", "port": 993, "priority": 0, "weight": 10},
            {"target": "imap2.provider.example", "port": 993, "priority": 0, "weight": 5},
            {"target": "imap-backup.provider.example", "port": 993, "priority": 20, "weight": 0},
        ],
        "submissions": {"target": "smtp.provider.example", "port": 465},
        "imap": False,
        "pop3": False,
        "pop3s": False,
        "submission": False,
        "caldavs": {"target": "dav.provider.example", "port": 443, "path": "/dav/"},
        "carddavs": {"target": "dav.provider.example", "port": 443, "path": "/dav/"},
        "jmap": {"target": "jmap.provider.example", "port": 443},
        "autodiscover": {"target": "autodiscover.provider.example", "port": 443},
        "axigen": "webmail.provider.example",
        "srv": {
            "_xmpp-client._tcp": [
                {"target": "xmpp1.provider.example", "port": 5222, "priority": 5, "weight": 1},
                {"target": "xmpp2.provider.example", "port": 5222, "priority": 5, "weight": 3},
            ],
            # a deeper owner: _b._tcp becomes an empty non-terminal
            "_a._b._tcp": [{"target": "deep.provider.example", "port": 4190}],
            # an upper-case owner and target (with a trailing dot): stored lowercase
            "_XMPP-Server._TCP": [{"target": "XMPP.Provider.Example.", "port": 5269}],
        },
        "txt": {
            "_imaps._tcp": ["v=example"],
            "_policy._tcp": [LONG_TEXT],
            "_edge._tcp": EDGE_TEXTS,
            # a reply of exactly 512 octets at _fit._tcp.cust00.example (513 for sizes01.example)
            "_fit._tcp": ["f" * 456],
        },
    },
    "branded": {
        "imaps": {"target": "mail.{domain}", "port": 993},
        "submissions": [
            {"target": "smtp1.{domain}", "port": 465, "priority": 0, "weight": 60},
            {"target": "smtp2.{domain}", "port": 465, "priority": 0, "weight": 40},
            {"target": "{domain}", "port": 587, "priority": 10, "weight": 0},
        ],
        "caldavs": [{"target": "dav.{domain}", "port": 443, "path": "/cal/"}],
        "carddav": {"target": "{domain}", "port": 80, "path": "/card/"},
        "pop3": False,
        "axigen": "webmail.{domain}:443",
        "txt": {
            "_info._tcp": [
                "served for {domain}",
                'quote " backslash \\ semi ; ümlaut',
                "y" * 250 + " {domain}",  # longer than 255 octets once the domain is in
            ]
        },
    },
    "minimal": {
        "imaps": False,
        "imap": False,
        "pop3": False,
        "pop3s": False,
        "submission": False,
        "submissions": {"target": "smtp.provider.example", "port": 465},
        "carddavs": {"target": "contacts.provider.example", "port": 8443, "path": "/"},
        # a third kind of subzone: _udp.D
        "srv": {"_sip._udp": [{"target": "sip.provider.example", "port": 5060, "weight": 1}]},
        "txt": {"_tcp": ["v=apex"]},  # data at the apex of _tcp.D
    },
    "bulk": {
        "imaps": [
            {"target": "a.imap.provider.example", "port": 993, "priority": 0, "weight": 0},
            {"target": "b.imap.provider.example", "port": 993, "priority": 0, "weight": 0},
            {"target": "c.imap.provider.example", "port": 993, "priority": 5, "weight": 1},
            {"target": "d.imap.provider.example", "port": 993, "priority": 5, "weight": 2},
            {"target": "e.imap.provider.example", "port": 993, "priority": 5, "weight": 3},
        ],
        "jmap": {"target": "jmap.provider.example", "port": 443},
        "caldavs": [
            {"target": "dav1.provider.example", "port": 443, "weight": 1, "path": "/dav/"},
            {"target": "dav2.provider.example", "port": 443, "weight": 1, "path": "/dav/"},
        ],
        "axigen": "webmail.provider.example:8443",
        "srv": {
            "_many._tcp": [
                {
                    "target": f"host{i:02d}.pool.provider.example",
                    "port": 9000 + i,
                    "priority": i % 3,
                    "weight": 65535 if i == 39 else i % 4,
                }
                for i in range(40)
            ]
        },
        "txt": {"_many._tcp": ["v=many"], "_big._tcp": BIG_TEXTS},
    },
}


@dataclass(frozen=True)
class Domain:
    key: str  # as written in the YAML
    ascii: str  # what it must become (lowercase IDNA, no trailing dot): written out, not computed
    value: str | dict[str, Any]  # a profile name, or a mapping with overrides


DOMAINS: list[Domain] = [
    *(
        Domain(f"cust{i:02d}.example", f"cust{i:02d}.example", profile)
        for i, profile in enumerate(["standard", "branded", "minimal", "bulk"] * 8)
    ),
    Domain("example.com", "example.com", "standard"),
    Domain("sizes01.example", "sizes01.example", "standard"),
    Domain("sub.example.com", "sub.example.com", "branded"),
    # a replaced service
    Domain(
        "example.org",
        "example.org",
        {
            "profile": "standard",
            "imaps": {"target": "mail.example.org", "port": 993},
            "caldavs": {"target": "dav.example.org", "port": 443},  # and no path: no TXT
            "srv": {"_xmpp-client._tcp": [{"target": "xmpp.example.org", "port": 5222}]},
        },
    ),
    # removed services (null): no SRV at _imaps._tcp (its TXT stays), no _jmap, no _axigen zone
    Domain(
        "noimap.example",
        "noimap.example",
        {
            "profile": "standard",
            "imaps": None,
            "jmap": None,
            "axigen": None,
            "srv": {"_a._b._tcp": None},  # and with it the empty non-terminal _b._tcp
        },
    ),
    # no profile at all
    Domain(
        "solo.example",
        "solo.example",
        {
            "submissions": {"target": "smtp.solo.example", "port": 465},
            "srv": {"_a._b._tcp": [{"target": "{domain}", "port": 1}]},
        },
    ),
    Domain(
        "override.example",
        "override.example",
        {
            "profile": "branded",
            "srv": {"_x._tcp": [{"target": "x.provider.example", "port": 7, "priority": 1}]},
            "txt": {"_info._tcp": None},
            "carddav": False,
            # Unicode host names: stored as IDNA
            "imaps": {"target": "imap.bücher.example", "port": 993},
            "axigen": "webmail.münchen.example:8080",
        },
    ),
    Domain("bücher.example", "xn--bcher-kva.example", "branded"),
    Domain(
        "münchen.example",
        "xn--mnchen-3ya.example",
        {"profile": "minimal", "caldavs": {"target": "dav.{domain}", "port": 443, "path": "/m/"}},
    ),
    Domain("MixedCase.EXAMPLE.", "mixedcase.example", "standard"),
    Domain("UPPER.Example.NET.", "upper.example.net", "bulk"),
]

UNKNOWN_DOMAIN = "unknown.example"

# ---------------------------------------------------------------------------------------------
# YAML for srvd (written by hand: "off" stays "off", keys keep their case and trailing dots)

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


def _yaml_key(key: str) -> str:
    return key if _PLAIN_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _yaml_value(value: Any) -> str:
    if value is False:
        return "off"
    if value is None:
        return "null"
    return json.dumps(value, ensure_ascii=False)  # JSON is YAML flow style


def _yaml_mapping(mapping: Mapping[str, Any], indent: int, depth: int) -> list[str]:
    lines = []
    pad = " " * indent
    for key, value in mapping.items():
        if isinstance(value, dict) and value and depth > 1:
            lines.append(f"{pad}{_yaml_key(key)}:")
            lines += _yaml_mapping(value, indent + 2, depth - 1)
        else:
            lines.append(f"{pad}{_yaml_key(key)}: {_yaml_value(value)}")
    return lines


def srvd_yaml() -> str:
    lines = ["# written by tests/test_differential_nsd.py", "zone:"]
    lines += _yaml_mapping(ZONE_SETTINGS, 2, 1)
    lines.append("profiles:")
    lines += _yaml_mapping(PROFILES, 2, 3)
    lines.append("domains:")
    lines += _yaml_mapping({d.key: d.value for d in DOMAINS}, 2, 3)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The records each domain gets, from the data model alone

RecordKey: TypeAlias = tuple[str, str]  # (owner relative to the domain, type mnemonic)


def _entries(domain: Domain) -> dict[str, Any]:
    """Profile keys, with custom owners split out, then the domain's overrides (None removes)."""

    def split(raw: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if key in ("srv", "txt"):
                for owner, records in value.items():
                    out[f"{key} {owner.lower()}"] = records
            elif key != "profile":
                out[key] = value
        return out

    if isinstance(domain.value, str):
        return split(PROFILES[domain.value])
    profile = domain.value.get("profile")
    merged = split(PROFILES[profile]) if profile else {}
    merged.update(split(domain.value))
    return {key: value for key, value in merged.items() if value is not None}


def _host(name: str, domain: str) -> str:
    """A configured host name as served: template filled, lowercase, IDNA, no trailing dot."""
    labels = name.replace("{domain}", domain).lower().removesuffix(".").split(".")
    return ".".join(IDNA_LABELS.get(label, label) for label in labels)


def _srv_rdata(records: Any, domain: str) -> list[str]:
    if records is False:
        return ["0 0 0 ."]
    items = [records] if isinstance(records, dict) else records
    out = []
    for r in items:
        target = _host(r["target"], domain)
        out.append(f"{r.get('priority', 0)} {r.get('weight', 0)} {r['port']} {target}.")
    return out


def _txt_rdata(text: str) -> str:
    """One TXT record in master-file form: 255-octet character-strings, escaped."""
    raw = text.encode()
    chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
    out = []
    for chunk in chunks:
        body = "".join(
            chr(b) if 0x20 <= b <= 0x7E and b not in b'"\\' else f"\\{b:03d}" for b in chunk
        )
        out.append(f'"{body}"')
    return " ".join(out)


def domain_records(domain: Domain) -> dict[RecordKey, list[str]]:
    name = domain.ascii
    records: dict[RecordKey, list[str]] = {}
    for key, value in _entries(domain).items():
        if key in SERVICES:
            owner = f"_{key}._tcp"
            records[(owner, "SRV")] = _srv_rdata(value, name)
            items = [value] if isinstance(value, dict) else value or []
            paths = {r["path"] for r in items if "path" in r}
            if paths:
                records[(owner, "TXT")] = [_txt_rdata(f"path={paths.pop()}")]
        elif key == "axigen":
            host, colon, port = value.partition(":")
            records[("_axigen", "TXT")] = [_txt_rdata(_host(host, name) + colon + port)]
        elif key.startswith("srv "):
            records[(key[4:], "SRV")] = _srv_rdata(value, name)
        elif key.startswith("txt "):
            records[(key[4:], "TXT")] = [_txt_rdata(t.replace("{domain}", name)) for t in value]
    return records


@dataclass
class ZoneData:
    apex: str  # such as "_tcp.example.com"
    domain: str
    records: dict[RecordKey, list[str]]  # owner relative to the apex ("@" for the apex)
    serial: int = 0

    def owners(self) -> set[str]:
        return {owner for owner, _ in self.records}

    def empty_non_terminals(self) -> set[str]:
        out = set()
        for owner in self.owners():
            labels = owner.split(".")
            for i in range(1, len(labels)):
                parent = ".".join(labels[i:])
                if parent not in self.owners():
                    out.add(parent)
        return out


def build_zones() -> dict[str, ZoneData]:
    zones: dict[str, ZoneData] = {}
    for domain in DOMAINS:
        for (owner, rtype), rdata in domain_records(domain).items():
            labels = owner.split(".")
            apex = f"{labels[-1]}.{domain.ascii}"
            zone = zones.setdefault(apex, ZoneData(apex, domain.ascii, {}))
            relative = ".".join(labels[:-1]) or "@"
            zone.records[(relative, rtype)] = rdata
    return zones


def _master_name(name: str) -> str:
    return name.replace(".", "\\.")


def zone_file(zone: ZoneData) -> str:
    z = ZONE_SETTINGS
    local, _, maildomain = z["hostmaster"].partition("@")
    rname = f"{_master_name(local)}.{maildomain}."
    lines = [
        f"$ORIGIN {zone.apex}.",
        f"$TTL {z['ttl']}",
        f"@ IN SOA {z['nameservers'][0]}. {rname} {zone.serial} {z['refresh']} {z['retry']} "
        f"{z['expire']} {z['minimum']}",
        *(f"@ IN NS {ns}." for ns in z["nameservers"]),
    ]
    for (owner, rtype), rdata in sorted(zone.records.items()):
        lines += [f"{owner} IN {rtype} {r}" for r in rdata]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# NSD


def nsd_conf(tmp: Path, port: int, zones: Mapping[str, ZoneData]) -> str:
    lines = [
        "server:",
        f"  ip-address: 127.0.0.1@{port}",
        "  do-ip6: no",
        '  database: ""',
        f'  zonelistfile: "{tmp}/zone.list"',
        f'  pidfile: "{tmp}/nsd.pid"',
        f'  xfrdfile: "{tmp}/xfrd.state"',
        f'  xfrdir: "{tmp}/xfr"',
        f'  zonesdir: "{tmp}/zones"',
        '  username: ""',
        '  chroot: ""',
        "  minimal-responses: yes",
        "  refuse-any: no",
        "  server-count: 1",
        "  reuseport: no",
        "  verbosity: 1",
        # contract: CH version.bind and id.server get REFUSED unless configured; srvd has no
        # such setting, so NSD hides both as well.
        "  hide-version: yes",
        "  hide-identity: yes",
        "remote-control:",
        "  control-enable: no",
    ]
    for apex in sorted(zones):
        lines += ["zone:", f'  name: "{apex}"', f'  zonefile: "{apex}.zone"']
    return "\n".join(lines) + "\n"


@dataclass
class Nsd:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def stop(self) -> None:
        stop_process(self.process)


def start_nsd(nsd: str, tmp: Path, zones: Mapping[str, ZoneData]) -> Nsd:
    zonedir = tmp / "zones"
    zonedir.mkdir()
    (tmp / "xfr").mkdir()
    for apex, zone in zones.items():
        (zonedir / f"{apex}.zone").write_text(zone_file(zone), encoding="ascii")
    port = free_port()
    conf = tmp / "nsd.conf"
    conf.write_text(nsd_conf(tmp, port, zones), encoding="utf-8")
    log = tmp / "nsd.log"
    with log.open("wb") as out:
        process = subprocess.Popen([nsd, "-d", "-c", str(conf)], stdout=out, stderr=out)
    server = Nsd(process, port, log)
    try:
        wait_for_dns(port, timeout=20)
        # NSD answers once its zones are loaded; make sure one of ours is there
        apex = sorted(zones)[0]
        with _socket() as sock:
            reply = exchange_udp(sock, port, build_query(1, QuerySpec(_labels(apex), T_SOA)))
        assert reply is not None and reply[3] & 0x0F == 0, "NSD does not serve the zones"
    except (AssertionError, OSError):
        server.stop()
        raise AssertionError(f"NSD did not start:\n{log.read_text(errors='replace')}") from None
    return server


# ---------------------------------------------------------------------------------------------
# Queries on the wire

Q_IN, Q_CH, Q_HS, Q_ANY = 1, 3, 4, 255
T_ANY, T_OPT, T_SOA = 255, 41, 6


@dataclass(frozen=True)
class Edns:
    payload: int = 1232
    version: int = 0
    do: bool = False
    options: bytes = b""


@dataclass(frozen=True)
class QuerySpec:
    labels: tuple[bytes, ...]
    qtype: int
    qclass: int = Q_IN
    rd: bool = False
    cd: bool = False
    ad: bool = False
    edns: Edns | None = None

    def describe(self) -> str:
        name = ".".join(
            "".join(
                chr(b) if 0x21 <= b <= 0x7E and b not in b".\\" else f"\\{b:03d}" for b in label
            )
            for label in self.labels
        )
        parts = [
            f"{name}." if name else ".",
            _class_text(self.qclass),
            _type_text(self.qtype),
        ]
        parts += [flag for flag, on in (("+rd", self.rd), ("+cd", self.cd), ("+ad", self.ad)) if on]
        if self.edns is None:
            parts.append("+noedns")
        else:
            e = self.edns
            parts.append(f"+edns={e.version} +bufsize={e.payload}" + (" +do" if e.do else ""))
            if e.options:
                parts.append(f"+opts={e.options.hex()}")
        return " ".join(parts)


def _type_text(rrtype: int) -> str:
    return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rrtype))


def _class_text(rdclass: int) -> str:
    return dns.rdataclass.to_text(dns.rdataclass.RdataClass.make(rdclass))


def _labels(name: str) -> tuple[bytes, ...]:
    return tuple(label.encode() for label in name.split(".") if label)


def question_wire(spec: QuerySpec) -> bytes:
    name = b"".join(bytes([len(label)]) + label for label in spec.labels) + b"\x00"
    return name + struct.pack("!HH", spec.qtype, spec.qclass)


def build_query(ident: int, spec: QuerySpec) -> bytes:
    flags = (0x0100 if spec.rd else 0) | (0x0020 if spec.ad else 0) | (0x0010 if spec.cd else 0)
    arcount = 1 if spec.edns is not None else 0
    wire = struct.pack("!HHHHHH", ident, flags, 1, 0, 0, arcount) + question_wire(spec)
    if spec.edns is not None:
        e = spec.edns
        ttl = (e.version << 16) | (0x8000 if e.do else 0)
        wire += b"\x00" + struct.pack("!HHIH", T_OPT, e.payload, ttl, len(e.options)) + e.options
    return wire


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def exchange_udp(
    sock: socket.socket, port: int, query: bytes, timeout: float = 1.0
) -> bytes | None:
    """One UDP exchange; the query is sent again (up to three times) if no reply comes."""
    sock.settimeout(timeout)
    for _attempt in range(3):
        sock.sendto(query, ("127.0.0.1", port))
        while True:
            try:
                data, peer = sock.recvfrom(65535)
            except TimeoutError:
                break
            if peer[1] == port and data[:2] == query[:2]:
                return data
    return None


class TcpClient:
    """One connection, reopened when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None

    def _recv(self, sock: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def exchange(self, query: bytes) -> bytes | None:
        for _attempt in range(2):
            if self.sock is None:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            try:
                self.sock.sendall(struct.pack("!H", len(query)) + query)
                (length,) = struct.unpack("!H", self._recv(self.sock, 2))
                return self._recv(self.sock, length)
            except (ConnectionError, TimeoutError):
                self.close()
        return None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


# ---------------------------------------------------------------------------------------------
# Query generation (seeded)

COMMON_TYPES = ["SRV", "TXT", "A", "AAAA", "SOA", "NS", "MX", "CNAME", "PTR", "ANY", "CAA"]
OTHER_TYPES = ["DS", "DNSKEY", "RRSIG", "NSEC", "HINFO", "NAPTR", "SVCB", "HTTPS", "TLSA"]
NUMERIC_TYPES = [999, 1234, 4660, 65280, 65534]


def _random_case(rng: random.Random, name: str) -> str:
    return "".join(c.upper() if c.isalpha() and rng.random() < 0.5 else c for c in name)


def _pick_type(rng: random.Random, name_kind: str) -> int:
    roll = rng.random()
    if name_kind == "owner" and roll < 0.3:
        return rng.choice([33, 16])  # SRV or TXT: the data itself
    if roll < 0.85:
        return dns.rdatatype.from_text(rng.choice(COMMON_TYPES))
    if roll < 0.95:
        return dns.rdatatype.from_text(rng.choice(OTHER_TYPES))
    return rng.choice(NUMERIC_TYPES)


def _names(zones: Mapping[str, ZoneData]) -> list[tuple[str, str]]:
    """(kind, name) pairs: names that exist, do not exist, lie below or outside the zones."""
    out: list[tuple[str, str]] = []
    domains = sorted({z.domain for z in zones.values()})
    for apex, zone in sorted(zones.items()):
        out.append(("apex", apex))
        for owner in sorted(zone.owners()):
            if owner == "@":
                continue
            out += [("owner", f"{owner}.{apex}")] * 3
            out.append(("below", f"x.{owner}.{apex}"))
            out.append(("below", f"a.b.{owner}.{apex}"))
        for ent in sorted(zone.empty_non_terminals()):
            out += [("ent", f"{ent}.{apex}")] * 2
            out.append(("below", f"x.{ent}.{apex}"))
        out += [
            ("missing", f"_foo.{apex}"),
            ("missing", f"_caldav.{apex}"),
            ("missing", f"www.{apex}"),
            ("missing", f"{apex.split('.')[0]}.{apex}"),
        ]
    for domain in domains:
        out += [("outside", domain), ("outside", f"www.{domain}")]
        for label in ("_tcp", "_axigen", "_udp"):
            if f"{label}.{domain}" not in zones:
                out += [("outside", f"{label}.{domain}"), ("outside", f"_imaps.{label}.{domain}")]
    out += [
        ("outside", "example.net"),
        ("outside", ""),
        ("outside", "com"),
        ("outside", "example"),
        ("outside", "_tcp"),
        ("outside", f"_tcp.{UNKNOWN_DOMAIN}"),
        ("outside", f"_imaps._tcp.{UNKNOWN_DOMAIN}"),
        ("outside", "provider.example"),
        ("outside", "_tcp.provider.example"),
    ]
    return out


def _edns(rng: random.Random) -> Edns | None:
    if rng.random() < 0.35:
        return None
    roll = rng.random()
    payload = rng.choice([512, 1232, 4096]) if roll < 0.95 else rng.choice([0, 256, 1400, 65535])
    version = 1 if rng.random() < 0.02 else 0
    options = b""
    if rng.random() < 0.08:
        # an unknown option (ignored, never echoed) or a client cookie (NSD 4.6 ignores cookies)
        options = rng.choice(
            [
                struct.pack("!HH", 65001, 4) + b"\x01\x02\x03\x04",
                struct.pack("!HH", 10, 8) + b"c" * 8,
            ]
        )
    return Edns(payload, version, rng.random() < 0.5, options)


def _filled(suffix: tuple[bytes, ...], total: int = 255) -> tuple[bytes, ...]:
    """Labels in front of ``suffix`` that make a name of ``total`` octets in wire form."""
    labels: list[bytes] = []
    remaining = total - sum(len(label) + 1 for label in suffix) - 1
    while remaining:
        n = min(63, remaining - 1)
        if remaining - n - 1 == 1:
            n -= 1
        labels.append(b"n" * n)
        remaining -= n + 1
    return (*labels, *suffix)


def fixed_cases(zones: Mapping[str, ZoneData]) -> list[QuerySpec]:
    """Cases every run has, whatever the draw; they go over UDP and TCP."""
    first = _labels(sorted(zones)[0])
    out: list[QuerySpec] = []
    odd_labels = [
        (b"\xc4x", *first),  # an octet above 0x7f: no case folding
        (b"a.b", *first),  # a dot inside a label
        (b"\x00", *first),  # a zero octet
        (b"_imaps", b"_TCP", *_labels("CUST00.example")),
        _filled(first),  # a name of exactly 255 octets below a served apex
    ]
    for labels in odd_labels:
        for qtype in (33, 16, 1):
            out.append(QuerySpec(labels, qtype))
    for name in ("version.bind", "id.server", "hostname.bind", "authors.bind"):
        out += [QuerySpec(_labels(name), 16, Q_CH), QuerySpec(_labels(name), 16, Q_CH, edns=Edns())]
    for apex in sorted(zones)[:4]:
        out += [QuerySpec(_labels(apex), 252), QuerySpec(_labels(apex), 251)]
    # large answers: 600-octet TXT, five ~300-octet TXT, forty SRV; every size limit
    bulk = next(d.ascii for d in DOMAINS if d.value == "bulk")
    standard = next(d.ascii for d in DOMAINS if d.value == "standard")
    big = [
        (f"_policy._tcp.{standard}", 16),
        (f"_big._tcp.{bulk}", 16),
        (f"_many._tcp.{bulk}", 33),
        (f"_many._tcp.{bulk}", T_ANY),
    ]
    for name, qtype in big:
        out.append(QuerySpec(_labels(name), qtype))
        for payload in (0, 512, 1232, 1500, 4096):
            out.append(QuerySpec(_labels(name), qtype, edns=Edns(payload, do=payload == 1232)))
    # the size limits to the octet: replies of 512/513 octets without EDNS, 523/524 with it
    # (so payloads below 512 count as 512), and 671 for the 600-octet TXT record
    sweeps = [
        (f"_fit._tcp.{standard}", range(505, 530)),
        ("_fit._tcp.sizes01.example", range(505, 530)),
        (f"_policy._tcp.{standard}", range(665, 677)),
    ]
    for name, payloads in sweeps:
        out.append(QuerySpec(_labels(name), 16))
        out += [QuerySpec(_labels(name), 16, edns=Edns(payload)) for payload in payloads]
    # meta and reserved types, asked of a name with data
    for qtype in (0, 41, 128, 249, 250, 253, 254, 65535):
        out.append(QuerySpec(_labels(f"_imaps._tcp.{standard}"), qtype, edns=Edns()))
    return out


def generate(zones: Mapping[str, ZoneData], count: int) -> list[QuerySpec]:
    rng = random.Random(SEED)
    names = _names(zones)
    queries = fixed_cases(zones)
    while len(queries) < count:
        kind, name = rng.choice(names)
        if rng.random() < 0.6:
            name = _random_case(rng, name)
        roll = rng.random()
        qclass = Q_IN if roll < 0.9 else Q_ANY if roll < 0.95 else Q_CH if roll < 0.98 else Q_HS
        queries.append(
            QuerySpec(
                _labels(name),
                _pick_type(rng, kind),
                qclass,
                rd=rng.random() < 0.5,
                cd=rng.random() < 0.1,
                ad=rng.random() < 0.05,
                edns=_edns(rng),
            )
        )
    return queries


# ---------------------------------------------------------------------------------------------
# Replies, reduced to what is compared

RRsetKey: TypeAlias = tuple[str, int, int, int, frozenset[bytes]]
FLAG_TC, FLAG_CD, DO_BIT = 0x0200, 0x0010, 0x8000
FLAG_NAMES = {0x8000: "QR", 0x0400: "AA", 0x0200: "TC", 0x0100: "RD", 0x0080: "RA"}
FLAG_NAMES |= {0x0040: "Z", 0x0020: "AD", 0x0010: "CD"}


def _flag_text(flags: int) -> str:
    return " ".join(name for bit, name in FLAG_NAMES.items() if flags & bit) or "-"


def _rrset_text(rrset: dns.rrset.RRset) -> str:
    rdata = " | ".join(str(rd) for rd in rrset)
    if len(rdata) > 160:
        rdata = rdata[:150] + f"... ({len(rrset)} records)"
    rdclass = dns.rdataclass.to_text(rrset.rdclass)
    return f"{rrset.name} {rrset.ttl} {rdclass} {dns.rdatatype.to_text(rrset.rdtype)} {rdata}"


def _question_bytes(wire: bytes) -> bytes:
    """The question section as sent, or b"" when there is none."""
    if len(wire) < 12 or wire[4:6] == b"\x00\x00":
        return b""
    pos = 12
    while pos < len(wire) and wire[pos] and wire[pos] < 0xC0:
        pos += wire[pos] + 1
    pos += 2 if pos < len(wire) and wire[pos] >= 0xC0 else 1
    return wire[12 : pos + 4]


@dataclass
class Reply:
    """One reply: the wire, the parsed message, and the fields that are compared."""

    wire: bytes
    message: dns.message.Message | None
    error: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    texts: dict[RRsetKey, str] = field(default_factory=dict)  # for the report

    @property
    def rcode(self) -> int:
        return int(self.fields.get("rcode", -1))

    @property
    def flags(self) -> int:
        return int(self.fields.get("flags", 0))

    @property
    def answer(self) -> frozenset[RRsetKey]:
        section: frozenset[RRsetKey] = self.fields.get("answer", frozenset())
        return section

    def sections(self, key: str) -> frozenset[RRsetKey]:
        section: frozenset[RRsetKey] = self.fields.get(key, frozenset())
        return section

    def text(self) -> str:
        if self.message is None:
            return f"<{self.error}> {self.wire[:64].hex()}"
        m = self.message
        head = f"{dns.rcode.to_text(m.rcode())} flags={_flag_text(m.flags)} "
        head += f"counts={self.fields['counts']}"
        if m.edns >= 0:
            options = " ".join(opt.to_text() for opt in m.options)
            head += f" OPT(v{m.edns} {m.payload} {dns.flags.edns_to_text(m.ednsflags) or '-'}"
            head += f"{' ' + options if options else ''})"
        else:
            head += " no-OPT"
        body = [
            f"{label}: {_rrset_text(rrset)}"
            for label, section in (("AN", m.answer), ("NS", m.authority), ("AR", m.additional))
            for rrset in section
        ]
        return "; ".join([head, *body])


def parse(wire: bytes | None) -> Reply:
    if wire is None:
        return Reply(b"", None, "no reply")
    try:
        message = dns.message.from_wire(wire)
    except dns.exception.DNSException as exc:
        return Reply(wire, None, f"unparsable: {exc!r}")
    reply = Reply(wire, message)
    edns = None
    if message.edns >= 0:
        # NSD 4.6 adds Extended DNS Errors (RFC 8914: "Not Authoritative" to REFUSED, "Not
        # Supported" to other classes); dns-behaviour.md asks for none, so they are left out.
        options = tuple(
            sorted(opt.to_text() for opt in message.options if opt.otype != dns.edns.EDE)
        )
        edns = (message.edns, message.payload, message.ednsflags, options)
    reply.fields = {
        "rcode": message.rcode(),  # with the extended bits from the OPT record
        "flags": message.flags & 0xFFF0 & ~0x7800,  # QR AA TC RD RA Z AD CD
        "opcode": message.opcode(),
        "question": _question_bytes(wire),
        "counts": struct.unpack_from("!HHHH", wire, 4),
        "edns": edns,
    }
    for key, section in (
        ("answer", message.answer),
        ("authority", message.authority),
        ("additional", message.additional),
    ):
        keys = set()
        for rrset in section:
            # owner with its letter case, class, type, TTL, and the RDATA as a set (order
            # aside). RDATA in canonical form (RFC 4034 §6.2: names lowercased): NSD compresses
            # SOA MNAME and RNAME against the question, so their case follows the query's.
            rdata = frozenset(rd.to_digestable() for rd in rrset)
            rkey = (rrset.name.to_text(), rrset.rdclass, rrset.rdtype, rrset.ttl, rdata)
            keys.add(rkey)
            reply.texts[rkey] = _rrset_text(rrset)
        reply.fields[key] = frozenset(keys)
    return reply


# ---------------------------------------------------------------------------------------------
# The comparison


def udp_limit(spec: QuerySpec) -> int:
    """Contract: 512 without OPT, else min(requester's size, 1232) and never below 512."""
    return 512 if spec.edns is None else max(512, min(spec.edns.payload, 1232))


def _class_any_refused(spec: QuerySpec, srvd: Reply) -> bool:
    """Contract: for class ANY, "REFUSED is acceptable"."""
    return (
        spec.qclass == Q_ANY
        and srvd.rcode == dns.rcode.REFUSED
        and not srvd.answer
        and not srvd.sections("authority")
    )


def any_applies(spec: QuerySpec, srvd: Reply, nsd: Reply) -> bool:
    """A QTYPE ANY query at a name with data: srvd picks one RRset (RFC 8482)."""
    if spec.qtype != T_ANY or srvd.message is None or nsd.message is None:
        return False
    if _class_any_refused(spec, srvd) or nsd.rcode != dns.rcode.NOERROR:
        return False
    return bool(nsd.answer or nsd.flags & FLAG_TC or srvd.answer)


def expected_from_nsd(spec: QuerySpec, nsd: Reply) -> dict[str, Any]:
    """What srvd must send, from NSD's reply, with the contract's rulings applied."""
    expected = dict(nsd.fields)
    # contract: "Every reply: ... the question echoed byte for byte (the query's letter case
    # kept)". NSD leaves the question out of its REFUSED to classes other than IN, CH and ANY.
    expected["question"] = question_wire(spec)
    expected["counts"] = (1, *nsd.fields["counts"][1:])
    if spec.edns is not None and spec.edns.version > 0 and nsd.fields["edns"] is not None:
        # contract: "A query with OPT gets an OPT back: version 0, ..., DO echoed", BADVERS
        # included; NSD clears DO in its BADVERS reply.
        version, payload, flags, options = nsd.fields["edns"]
        flags = (flags & ~DO_BIT) | (DO_BIT if spec.edns.do else 0)
        expected["edns"] = (version, payload, flags, options)
        # NSD's BADVERS reply keeps the query's CD bit, while every other NSD answer clears it;
        # srvd clears CD in every reply (the contract copies RD only). That is kept here.
        expected["flags"] &= ~FLAG_CD
    return expected


def _difference(key: str, got: Any, want: Any, srvd: Reply, nsd: Reply) -> str:
    if key == "flags":
        return f"flags: srvd {_flag_text(got)}, expected {_flag_text(want)}"
    if key == "rcode":
        return f"rcode: srvd {dns.rcode.to_text(got)}, expected {dns.rcode.to_text(want)}"
    if key in ("answer", "authority", "additional"):
        extra = "; ".join(srvd.texts[k] for k in got - want) or "-"
        missing = "; ".join(nsd.texts[k] for k in want - got) or "-"
        return f"{key}: only srvd has [{extra}], only NSD has [{missing}]"
    return f"{key}: srvd {got!r}, expected {want!r}"


def compare(spec: QuerySpec, srvd: Reply, nsd: Reply) -> list[str]:
    """The differences between srvd's reply and what it should be, as readable lines."""
    if srvd.message is None or nsd.message is None:
        if srvd.message is None and nsd.message is None and srvd.error == nsd.error:
            return []
        return [f"srvd: {srvd.error or 'a reply'}; NSD: {nsd.error or 'a reply'}"]
    if _class_any_refused(spec, srvd):
        return [] if srvd.fields["question"] == question_wire(spec) else ["question not echoed"]
    expected = expected_from_nsd(spec, nsd)
    got = dict(srvd.fields)
    if any_applies(spec, srvd, nsd):
        # RFC 8482: srvd sends one RRset of its choice, NSD another one or several, as many as
        # fit, without TC. The answer, its count and TC are checked in check_any_reply.
        for key in ("answer", "counts"):
            expected.pop(key)
            got.pop(key)
        expected["flags"] &= ~FLAG_TC
        got["flags"] &= ~FLAG_TC
    problems = [
        _difference(key, got.get(key), want, srvd, nsd)
        for key, want in expected.items()
        if got.get(key) != want
    ]
    return problems + check_srvd_wire(srvd)


def check_srvd_wire(srvd: Reply) -> list[str]:
    """Contract rows checked on srvd's reply alone: SRV sorted by priority (RFC 2782), the
    negative TTL, owner names compressed to the question, RDATA names never compressed (NSD
    compresses NS and SOA RDATA, so this is not a comparison)."""
    problems = []
    assert srvd.message is not None
    for rrset in srvd.message.answer:
        if rrset.rdtype == dns.rdatatype.SRV:
            priorities = [rd.priority for rd in rrset]
            if priorities != sorted(priorities):
                problems.append(f"SRV not sorted by priority: {priorities}")
    for rrset in srvd.message.authority:
        if rrset.rdtype == T_SOA and rrset.ttl != NEGATIVE_TTL:
            problems.append(f"negative answer: SOA TTL {rrset.ttl}, not {NEGATIVE_TTL}")
    wire = srvd.wire
    question_end = 12 + len(srvd.fields["question"])
    qd, an, ns, _ar = srvd.fields["counts"]
    pos = question_end if qd else 12
    for index in range(an + ns):
        if pos + 2 > len(wire):
            return [*problems, "records run past the end of the message"]
        if wire[pos] < 0xC0:
            problems.append(f"record {index}: owner name not compressed")
            while pos < len(wire) and wire[pos] and wire[pos] < 0xC0:
                pos += wire[pos] + 1
            pos += 2 if pos < len(wire) and wire[pos] else 1
        else:
            target = (wire[pos] & 0x3F) << 8 | wire[pos + 1]
            if not 12 <= target < question_end:
                problems.append(f"record {index}: owner points to {target}, not the question")
            pos += 2
        rtype, _rclass, _ttl, rdlength = struct.unpack_from("!HHIH", wire, pos)
        rdata = wire[pos + 10 : pos + 10 + rdlength]
        pos += 10 + rdlength
        names = {33: 1, 2: 1, 6: 2}.get(rtype, 0)  # how many names, after a fixed part
        at = 6 if rtype == 33 else 0
        for _ in range(names):
            while at < len(rdata) and rdata[at] and rdata[at] < 0xC0:
                at += rdata[at] + 1
            if at >= len(rdata) or rdata[at]:
                problems.append(f"record {index}: a compressed name in its RDATA (type {rtype})")
                break
            at += 1
    return problems


def check_any(srvd: Reply, nsd_typed: Reply | None, rrtype: int) -> list[str]:
    """srvd's ANY answer: exactly one complete RRset, as NSD answers a query for its type."""
    if srvd.flags & FLAG_TC:
        return ["ANY: TC=1 in a TCP reply"]
    if len(srvd.answer) != 1:
        return [f"ANY: {len(srvd.answer)} RRsets in the answer, expected exactly 1"]
    if nsd_typed is None or nsd_typed.message is None:
        return [f"ANY: NSD gave no reply to the {_type_text(rrtype)} query"]
    problems = []
    if srvd.answer != nsd_typed.answer:
        problems.append(
            f"ANY: srvd's RRset [{srvd.text()}] differs from NSD's answer to "
            f"{_type_text(rrtype)} [{nsd_typed.text()}]"
        )
    srvd_count, nsd_count = srvd.fields["counts"][1], nsd_typed.fields["counts"][1]
    if srvd_count != nsd_count:
        problems.append(f"ANY: {srvd_count} records, NSD's RRset has {nsd_count}")
    return problems


def check_any_reply(
    spec: QuerySpec,
    ident: int,
    srvd: Reply,
    transport: str,
    srvd_tcp: TcpClient,
    nsd_tcp: TcpClient,
) -> list[str]:
    """The answer to a QTYPE ANY query (RFC 8482): one RRset, complete, or TC when it does not fit.

    A truncated UDP reply is checked through srvd's TCP reply to the same query: its one RRset
    must be too large for the UDP limit.
    """
    problems: list[str] = []
    if transport == "udp" and srvd.flags & FLAG_TC:
        if srvd.answer:
            problems.append("ANY: TC=1 with records in the answer")
        srvd = parse(srvd_tcp.exchange(build_query(ident, spec)))
        if srvd.message is None:
            return [*problems, "ANY: no reply over TCP"]
        if len(srvd.wire) <= udp_limit(spec):
            problems.append(f"ANY: TC=1, but the TCP reply ({len(srvd.wire)} octets) fits")
    assert srvd.message is not None
    rrtype = srvd.message.answer[0].rdtype if len(srvd.message.answer) == 1 else T_ANY
    typed_reply = None
    if rrtype != T_ANY:
        typed = QuerySpec(spec.labels, rrtype, spec.qclass, spec.rd, edns=spec.edns)
        typed_reply = parse(nsd_tcp.exchange(build_query(ident, typed)))
    return problems + check_any(srvd, typed_reply, rrtype)


@dataclass
class Mismatch:
    spec: QuerySpec
    transport: str
    problems: list[str]
    srvd: Reply
    nsd: Reply

    def render(self) -> str:
        lines = [f"{self.spec.describe()}  [{self.transport}]"]
        lines += [f"    - {p}" for p in self.problems]
        lines.append(f"    srvd: {self.srvd.text()[:600]}")
        lines.append(f"    NSD:  {self.nsd.text()[:600]}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The test


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[RunningServer, Nsd, dict[str, ZoneData]]]:
    nsd_path = require_tool("nsd")
    zones = build_zones()
    config = tmp_path / "srvd.yaml"
    config.write_text(srvd_yaml(), encoding="utf-8")
    srvd = start_srvd(config)
    nsd: Nsd | None = None
    try:
        # srvd's serials are its load time: NSD's zone files get the same ones
        for apex, zone in sorted(zones.items()):
            query = dns.message.make_query(f"{apex}.", "SOA")
            reply = dns.query.udp(query, "127.0.0.1", port=srvd.port, timeout=5)
            soa = reply.get_rrset(
                reply.answer, query.question[0].name, dns.rdataclass.IN, dns.rdatatype.SOA
            )
            assert soa is not None, f"srvd serves no SOA at {apex}:\n{reply}"
            zone.serial = soa[0].serial
        nsd_dir = tmp_path / "nsd"
        nsd_dir.mkdir()
        nsd = start_nsd(nsd_path, nsd_dir, zones)
        yield srvd, nsd, zones
    finally:
        if nsd is not None:
            nsd.stop()
        srvd.stop()


def test_srvd_answers_like_nsd(servers: tuple[RunningServer, Nsd, dict[str, ZoneData]]) -> None:
    srvd, nsd, zones = servers
    started = time.monotonic()
    queries = generate(zones, UDP_QUERIES)
    fixed = len(fixed_cases(zones))
    over_tcp = set(range(fixed))
    over_tcp |= set(random.Random(SEED + 1).sample(range(fixed, len(queries)), TCP_SAMPLE))
    mismatches: list[Mismatch] = []
    compared = 0
    srvd_udp, nsd_udp = _socket(), _socket()
    srvd_tcp, nsd_tcp = TcpClient(srvd.port), TcpClient(nsd.port)
    try:
        for number, spec in enumerate(queries):
            ident = number & 0xFFFF
            query = build_query(ident, spec)
            for transport in ("udp", "tcp") if number in over_tcp else ("udp",):
                if transport == "udp":
                    a = parse(exchange_udp(srvd_udp, srvd.port, query))
                    b = parse(exchange_udp(nsd_udp, nsd.port, query))
                else:
                    a = parse(srvd_tcp.exchange(query))
                    b = parse(nsd_tcp.exchange(query))
                problems = compare(spec, a, b)
                if any_applies(spec, a, b):
                    problems += check_any_reply(spec, ident, a, transport, srvd_tcp, nsd_tcp)
                compared += 1
                if problems:
                    mismatches.append(Mismatch(spec, transport, problems, a, b))
    finally:
        for closable in (srvd_udp, nsd_udp, srvd_tcp, nsd_tcp):
            closable.close()
    elapsed = time.monotonic() - started
    report = "\n".join(m.render() for m in mismatches[:20])
    assert not mismatches, (
        f"{len(mismatches)} of {compared} replies differ from NSD's ({elapsed:.1f} s). "
        f"The first 20, each with the query, srvd's reply and NSD's:\n{report}"
    )
    assert compared >= MIN_COMPARED, f"only {compared} replies compared"
