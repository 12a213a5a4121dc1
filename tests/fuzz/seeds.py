"""The seed corpus of the fuzz harness: valid queries of every kind, each behind a selector octet.

``python3 tests/fuzz/seeds.py DIR`` writes one file per seed into DIR (created if missing).
"""

from __future__ import annotations

import hashlib
import struct
import sys
from pathlib import Path

OPT, TSIG = 41, 250
NAMES = [
    "_imaps._tcp.example.com",
    "_IMAPS._Tcp.Example.COM",
    "_submissions._tcp.example.org",
    "_caldavs._tcp.example.com",
    "_imap._tcp.example.com",
    "_xmpp-client._tcp.example.com",
    "_tcp.example.com",
    "_axigen.example.com",
    "_axigen.shop.example",
    "_imaps._tcp.shop.example",
    "_foo._tcp.example.com",
    "x._imaps._tcp.example.com",
    "example.com",
    "version.bind",
    "",
    "_imaps._tcp.long.example",
    "_big._tcp.long.example",
    "_mid._tcp.long.example",
    "_caldavs._tcp.long.example",
    "_x.sub._tcp.long.example",
    "_sub._tcp.long.example",
    "_nope._tcp.long.example",
    "_tcp.long.example",
    "_axigen.xn--bcher-kva.example",
    "_imaps._tcp." + ".".join(["d" * 60] * 3) + ".example",
    "x" * 50 + "." + "y" * 50 + "._tcp." + ".".join(["d" * 60] * 3) + ".example",
]
TYPES = [33, 16, 1, 28, 6, 2, 255, 252, 251, 41, 250, 0, 65535]
CLASSES = [1, 3, 254, 255, 0]


def wire_name(text: str) -> bytes:
    labels = [label.encode() for label in text.split(".") if label]
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def opt(payload: int = 1232, version: int = 0, do: bool = False, options: bytes = b"") -> bytes:
    ttl = (version << 16) | (0x8000 if do else 0)
    return b"\x00" + struct.pack("!HHIH", OPT, payload, ttl, len(options)) + options


def tsig(key: bytes = b"\x03key\x00") -> bytes:
    algorithm = wire_name("hmac-sha256")
    rdata = algorithm + bytes(5) + b"\x01" + b"\x01\x2c" + b"\x00\x20" + bytes(32) + b"\x12\x34"
    rdata += bytes(4)
    return key + struct.pack("!HHIH", TSIG, 255, 0, len(rdata)) + rdata


# (the additional section, ARCOUNT)
SIGNED_TYPES = (
    33,
    16,
    6,
    2,
    48,
    59,
    60,
    47,
    46,
    1,
    255,
)  # SRV TXT SOA NS DNSKEY CDS CDNSKEY NSEC..

EXTRAS = [
    (b"", 0),
    (opt(), 1),
    (opt(payload=512, do=True), 1),
    (opt(payload=4096), 1),
    (opt(payload=0), 1),
    (opt(payload=700), 1),
    (opt(version=1), 1),
    (opt(options=b"\x00\x0a\x00\x08cookie!!" + b"\xfd\xe9\x00\x00"), 1),
    (tsig(), 1),
    (opt() + tsig(b"\xc0\x0c"), 2),
]


def query(
    name: str,
    qtype: int,
    qclass: int = 1,
    flags: int = 0x0100,
    extra: tuple[bytes, int] = (b"", 0),
    ident: int = 1,
) -> bytes:
    head = struct.pack("!HHHHHH", ident, flags, 1, 0, 0, extra[1])
    return head + wire_name(name) + struct.pack("!HH", qtype, qclass) + extra[0]


def seed_queries() -> list[bytes]:
    """Queries (without the selector octet): every name, type, class, EDNS and header kind."""
    out = []
    for i, name in enumerate(NAMES):
        for j, qtype in enumerate(TYPES):
            out.append(query(name, qtype, ident=i * 100 + j))
        for qclass in CLASSES:
            out.append(query(name, 33, qclass))
        for extra in EXTRAS:
            out.append(query(name, 33, extra=extra))
        for qtype in SIGNED_TYPES:  # DO=1: signed answers from the signed example (selector bit 4)
            out.append(query(name, qtype, extra=(opt(payload=1232, do=True), 1)))
    base = "_imaps._tcp.example.com"
    for opcode in range(16):
        out.append(query(base, 33, flags=opcode << 11 | 0x0100))
    for flags in (0, 0x0130, 0x8100, 0x0101, 0x0500, 0x0280):
        out.append(query(base, 33, flags=flags))
    out.append(struct.pack("!HHHHHH", 1, 0x2000, 0, 0, 0, 0))  # NOTIFY without a question
    out.append(query(base, 33) + b"\xde\xad")  # octets after the question
    return out


def seeds() -> list[bytes]:
    """Every seed query behind every selector (UDP/TCP, example/long/signed/signed with compact
    answers, once/twice, limited)."""
    selectors = [*range(32), *(s | 32 for s in range(16, 32))]
    return [bytes([selector]) + q for q in seed_queries() for selector in selectors]


def write(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    for data in seeds():
        (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)
    return len(seeds())


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 tests/fuzz/seeds.py DIR")
    print(f"{write(Path(sys.argv[1]))} seeds written to {sys.argv[1]}")
