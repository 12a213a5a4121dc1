"""Domain names: validation, IDNA conversion, wire and master-file forms.

Names inside srvd are lowercase ASCII text without the trailing dot ("" is the root).
Wire forms are uncompressed label sequences ending in the root label.
"""

from __future__ import annotations

import re

import idna

MAX_NAME_WIRE = 255
MAX_LABEL = 63

# A host name label (RFC 952/1123, LDH): letters, digits, hyphens, not at either end.
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
# An owner label of a service record may also start with an underscore (RFC 8552).
_OWNER_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")


class MessageFormatError(ValueError):
    """A DNS message that cannot be read (answered FORMERR, or refused)."""


def skip_name(msg: bytes, pos: int, end: int) -> int:
    """The position after a (possibly compressed) name in a message; MessageFormatError if
    malformed."""
    while True:
        if pos >= end:
            raise MessageFormatError("a name runs past the end")
        length = msg[pos]
        if length == 0:
            return pos + 1
        if length >= 0xC0:
            if pos + 2 > end:
                raise MessageFormatError("a pointer runs past the end")
            return pos + 2
        if length > 63:
            raise MessageFormatError("a bad label length")
        pos += length + 1


def read_name(msg: bytes, pos: int) -> bytes:
    """The uncompressed wire form of the name at ``pos`` (pointers followed, loops refused)."""
    out = bytearray()
    jumps = 0
    while True:
        if pos >= len(msg):
            raise MessageFormatError("a name runs past the end")
        length = msg[pos]
        if length == 0:
            out.append(0)
            if len(out) > 255:
                raise MessageFormatError("a name over 255 octets")
            return bytes(out)
        if length >= 0xC0:
            if pos + 2 > len(msg) or jumps > 126:
                raise MessageFormatError("a bad compression pointer")
            pos = ((length & 0x3F) << 8) | msg[pos + 1]
            jumps += 1
            continue
        if length > 63 or pos + 1 + length > len(msg):
            raise MessageFormatError("a bad label")
        out += msg[pos : pos + 1 + length]
        pos += length + 1


class InvalidName(ValueError):
    """A name that is not a valid DNS name of the kind asked for."""


def to_ascii(name: str) -> str:
    """Lowercase, strip one trailing dot and convert Unicode labels to IDNA (punycode)."""
    if name.endswith(".") and name != ".":
        name = name[:-1]
    if name.isascii():
        return name.lower()
    try:
        return idna.encode(name, uts46=True, transitional=False).decode("ascii")
    except idna.IDNAError as exc:
        raise InvalidName(f"{name!r} cannot be converted to IDNA: {exc}") from None


def _check_length(name: str) -> None:
    # wire length: one length octet per label plus its octets, plus the root label
    if len(name) + 2 > MAX_NAME_WIRE:
        raise InvalidName(f"{name!r} is longer than 255 octets in wire form")


# A host name as host_name returns it (lowercase LDH labels, no trailing dot), if under 254 long.
CANONICAL_HOST = re.compile(r"(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)*(?!-)[a-z0-9-]{1,63}(?<!-)\Z")


def host_name(raw: str) -> str:
    """A host name (SRV target, NS, domain): LDH labels, IDNA-converted, lowercase."""
    if len(raw) < 254 and CANONICAL_HOST.match(raw):  # the common case: already canonical
        return raw
    name = to_ascii(raw)
    if not name or name == ".":
        raise InvalidName("an empty name is not a host name")
    for label in name.split("."):
        if len(label) > MAX_LABEL:
            raise InvalidName(f"label {label[:20]!r}... of {raw!r} is longer than 63 octets")
        if not _HOST_LABEL.match(label):
            raise InvalidName(
                f"{raw!r} is not a valid host name (label {label!r}: letters, digits and "
                "inner hyphens only)"
            )
    _check_length(name)
    return name


def owner_name(raw: str) -> str:
    """A record owner relative to the customer domain, such as ``_imaps._tcp``."""
    name = to_ascii(raw)
    if not name or name == ".":
        raise InvalidName("an owner name needs at least one label")
    for label in name.split("."):
        if len(label) > MAX_LABEL:
            raise InvalidName(f"label {label[:20]!r}... of {raw!r} is longer than 63 octets")
        if not _OWNER_LABEL.match(label):
            raise InvalidName(
                f"{raw!r} is not a valid owner name (label {label!r}: letters, digits, "
                "hyphens, underscores)"
            )
    if not name.rsplit(".", 1)[-1].startswith("_"):
        raise InvalidName(
            f"{raw!r}: the last label names the delegated subzone and must start with '_' "
            "(such as _tcp, _udp or _axigen)"
        )
    return name


def to_wire(name: str) -> bytes:
    """Uncompressed wire form of a lowercase ASCII name ("" is the root)."""
    if not name:
        return b"\x00"
    out = bytearray()
    for label in name.split("."):
        raw = label.encode("ascii")
        out.append(len(raw))
        out += raw
    out.append(0)
    return bytes(out)


def label_wire(label: bytes) -> bytes:
    """One label in wire form (a length octet and the octets)."""
    if not 0 < len(label) <= MAX_LABEL:
        raise InvalidName(f"label of {len(label)} octets")
    return bytes([len(label)]) + label


def wire_to_text(wire: bytes) -> str:
    """Dotted text of an uncompressed wire name (no trailing dot; "" for the root)."""
    labels = []
    pos = 0
    while wire[pos]:
        length = wire[pos]
        labels.append(wire[pos + 1 : pos + 1 + length].decode("ascii", "backslashreplace"))
        pos += length + 1
    return ".".join(labels)


_SPECIAL = frozenset(b'.;()"\\@$ ')


def master_label(label: bytes) -> str:
    """A label escaped for an RFC 1035 master file."""
    out = []
    for byte in label:
        if byte in _SPECIAL:
            out.append("\\" + chr(byte))
        elif 0x21 <= byte <= 0x7E:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)


def master_name(wire: bytes) -> str:
    """The absolute master-file form of a wire name, with its trailing dot."""
    labels = []
    pos = 0
    while wire[pos]:
        length = wire[pos]
        labels.append(master_label(wire[pos + 1 : pos + 1 + length]))
        pos += length + 1
    return ".".join(labels) + "." if labels else "."
