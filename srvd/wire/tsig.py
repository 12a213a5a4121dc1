"""TSIG (RFC 8945) on the bytes: find, verify and sign, with no message objects.

A request's MAC covers the message as it was before the TSIG record was added (its original ID,
ARCOUNT one less) and the TSIG variables (§4.3.3). A response's MAC covers the request's MAC
first (§4.3.1). In a multi-message response (a zone transfer, §5.3.1) every message here is
signed, each MAC covering the previous one, the message, and only the timers.

Errors (§5.2): an unknown key or algorithm is BADKEY, a MAC that does not verify is BADSIG (both
answered unsigned, MAC size 0), a time outside the fudge is BADTIME (answered signed, with the
server's time in Other Data), a MAC truncated below the full length is BADTRUNC (signed): srvd
accepts full-length MACs only.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from srvd.wire.names import MessageFormatError, read_name, skip_name

TSIG = 250
CLASS_ANY = 255
NOERROR = 0
FORMERR = 1
NOTAUTH = 9
BADSIG = 16
BADKEY = 17
BADTIME = 18
BADTRUNC = 22
FUDGE = 300  # seconds, as RFC 8945 §10 recommends

# configured name → (wire name of the algorithm, hashlib name)
ALGORITHMS: Mapping[str, tuple[bytes, str]] = {
    "hmac-sha1": (b"\x09hmac-sha1\x00", "sha1"),
    "hmac-sha224": (b"\x0bhmac-sha224\x00", "sha224"),
    "hmac-sha256": (b"\x0bhmac-sha256\x00", "sha256"),
    "hmac-sha384": (b"\x0bhmac-sha384\x00", "sha384"),
    "hmac-sha512": (b"\x0bhmac-sha512\x00", "sha512"),
}

_FIXED = struct.Struct("!HHIH")
_U16 = struct.Struct("!H")


class TsigFormError(MessageFormatError):
    """The message or its TSIG record is malformed (FORMERR)."""


@dataclass(frozen=True, slots=True)
class Key:
    """A TSIG key: its name and algorithm in lowercase wire form, and the secret."""

    name: bytes
    algorithm: bytes
    digest: str  # hashlib name
    secret: bytes = b""

    @property
    def size(self) -> int:
        return hashlib.new(self.digest).digest_size

    def mac(self, data: bytes) -> bytes:
        return hmac.new(self.secret, data, self.digest).digest()

    def __repr__(self) -> str:  # never the secret in a log line
        return f"Key({self.name!r}, {self.algorithm!r})"


def make_key(name: str, algorithm: str, secret: bytes) -> Key:
    """A key from its text name (such as ``xfr-key``), configured algorithm and secret."""
    wire_alg, digest = ALGORITHMS[algorithm]
    return Key(name_wire(name), wire_alg, digest, secret)


def name_wire(name: str) -> bytes:
    """The lowercase wire form of a text name (dots separate labels; a final dot is optional)."""
    name = name.lower().rstrip(".")
    if not name:
        return b"\x00"
    out = b""
    for label in name.split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) <= 63:
            raise ValueError(f"{name!r}: a label is empty or longer than 63 octets")
        out += bytes([len(raw)]) + raw
    if len(out) + 1 > 255:
        raise ValueError(f"{name!r}: longer than 255 octets")
    return out + b"\x00"


@dataclass(frozen=True, slots=True)
class Tsig:
    """A TSIG record found at the end of a message."""

    start: int  # offset of the record in the message
    key_name: bytes  # lowercase wire form, uncompressed
    algorithm: bytes  # lowercase wire form
    time_signed: int
    fudge: int
    mac: bytes
    original_id: int
    error: int
    other: bytes


def records_start(msg: bytes) -> int:
    """The offset after the question section."""
    if len(msg) < 12:
        raise TsigFormError("short message")
    qdcount = msg[4] << 8 | msg[5]
    pos = 12
    for _ in range(qdcount):
        pos = skip_name(msg, pos, len(msg)) + 4
    if pos > len(msg):
        raise TsigFormError("question runs past the end")
    return pos


def skip_record(msg: bytes, pos: int) -> tuple[int, int, int]:
    """(type, offset of the RDATA, offset after the record) of the record at ``pos``."""
    pos = skip_name(msg, pos, len(msg))
    if pos + 10 > len(msg):
        raise TsigFormError("record runs past the end")
    rtype, _rclass, _ttl, rdlength = _FIXED.unpack_from(msg, pos)
    end = pos + 10 + rdlength
    if end > len(msg):
        raise TsigFormError("record runs past the end")
    return rtype, pos + 10, end


def find(msg: bytes) -> Tsig | None:
    """The TSIG record of a message (it must be the last additional record), or None."""
    counts = struct.unpack_from("!HHH", msg, 6) if len(msg) >= 12 else (0, 0, 0)
    total = sum(counts)
    if not counts[2]:
        return None
    pos = records_start(msg)
    for _ in range(total - 1):
        pos = skip_record(msg, pos)[2]
    start = pos
    rtype, rdata, end = skip_record(msg, pos)
    if rtype != TSIG:
        return None
    key_name = read_name(msg, start).lower()
    algorithm = read_name(msg, rdata).lower()
    pos = skip_name(msg, rdata, len(msg))
    if pos + 10 > end:
        raise TsigFormError("TSIG RDATA too short")
    high, low, fudge, mac_size = struct.unpack_from("!HIHH", msg, pos)
    pos += 10
    mac = msg[pos : pos + mac_size]
    pos += mac_size
    if pos + 6 > end:
        raise TsigFormError("TSIG RDATA too short")
    original_id, error, other_len = struct.unpack_from("!HHH", msg, pos)
    pos += 6
    if pos + other_len != end:
        raise TsigFormError("TSIG RDATA length does not add up")
    return Tsig(
        start,
        key_name,
        algorithm,
        high << 32 | low,
        fudge,
        mac,
        original_id,
        error,
        msg[pos:end],
    )


def stripped(msg: bytes, tsig: Tsig) -> bytes:
    """The message as it was before it was signed: original ID, ARCOUNT one less, no TSIG."""
    arcount = (msg[10] << 8 | msg[11]) - 1
    return _U16.pack(tsig.original_id) + msg[2:10] + _U16.pack(arcount) + msg[12 : tsig.start]


def _time(value: int) -> bytes:
    return struct.pack("!HI", value >> 32 & 0xFFFF, value & 0xFFFFFFFF)


def variables(
    key_name: bytes, algorithm: bytes, time_signed: int, fudge: int, error: int, other: bytes
) -> bytes:
    """The TSIG variables of §4.3.3 (key name and algorithm in canonical, lowercase form)."""
    return (
        key_name
        + struct.pack("!HI", CLASS_ANY, 0)
        + algorithm
        + _time(time_signed)
        + struct.pack("!HHH", fudge, error, len(other))
        + other
    )


def timers(time_signed: int, fudge: int) -> bytes:
    return _time(time_signed) + _U16.pack(fudge)


def verify(msg: bytes, tsig: Tsig, keys: Mapping[bytes, Key], now: int) -> tuple[int, Key | None]:
    """(TSIG error, the key) of a signed request; error NOERROR when it verifies (§5.2)."""
    key = keys.get(tsig.key_name)
    if key is None or key.algorithm != tsig.algorithm:
        return BADKEY, None
    size = key.size
    if len(tsig.mac) > size or len(tsig.mac) < max(10, size // 2):
        return BADSIG, key  # RFC 8945 §5.2.2.1 allows FORMERR; BADSIG tells the client more
    data = stripped(msg, tsig) + variables(
        tsig.key_name, tsig.algorithm, tsig.time_signed, tsig.fudge, tsig.error, tsig.other
    )
    expected = key.mac(data)
    if not hmac.compare_digest(expected[: len(tsig.mac)], tsig.mac):
        return BADSIG, key
    if abs(now - tsig.time_signed) > tsig.fudge:
        return BADTIME, key
    if len(tsig.mac) < size:
        return BADTRUNC, key
    return NOERROR, key


def record(
    key_name: bytes,
    algorithm: bytes,
    time_signed: int,
    fudge: int,
    mac: bytes,
    original_id: int,
    error: int,
    other: bytes,
) -> bytes:
    rdata = (
        algorithm
        + _time(time_signed)
        + _U16.pack(fudge)
        + _U16.pack(len(mac))
        + mac
        + struct.pack("!HHH", original_id, error, len(other))
        + other
    )
    return key_name + _FIXED.pack(TSIG, CLASS_ANY, 0, len(rdata)) + rdata


def _append(msg: bytes, tsig_record: bytes) -> bytes:
    arcount = (msg[10] << 8 | msg[11]) + 1
    return msg[:10] + _U16.pack(arcount) + msg[12:] + tsig_record


def unsigned_error(reply: bytes, tsig: Tsig, error: int) -> bytes:
    """A reply with an unsigned TSIG error record (BADKEY, BADSIG: MAC size 0, §5.3.2)."""
    rec = record(
        tsig.key_name,
        tsig.algorithm,
        tsig.time_signed,
        tsig.fudge,
        b"",
        tsig.original_id,
        error,
        b"",
    )
    return _append(reply, rec)


class Signer:
    """Signs the replies to one signed request: the first over the request's MAC, the next
    ones (of a multi-message transfer) each over the MAC before it and the timers only."""

    def __init__(self, key: Key, request: Tsig, clock: int, error: int = NOERROR) -> None:
        self.key = key
        self.request = request
        self.now = clock
        self.error = error
        self.prior: bytes | None = None  # the MAC of the last message signed

    def sign(self, reply: bytes) -> bytes:
        key, request = self.key, self.request
        time_signed = self.now
        other = b""
        if self.error == BADTIME:  # §5.2.3: the request's time, and ours in Other Data
            time_signed = request.time_signed
            other = _time(self.now)
        original_id = request.original_id
        message = _U16.pack(original_id) + reply[2:]  # as the verifier sees it (§4.3.1)
        if self.prior is None:
            data = _U16.pack(len(request.mac)) + request.mac + message
            data += variables(key.name, key.algorithm, time_signed, FUDGE, self.error, other)
        else:
            data = _U16.pack(len(self.prior)) + self.prior + message + timers(time_signed, FUDGE)
        mac = key.mac(data)
        self.prior = mac
        rec = record(
            key.name, key.algorithm, time_signed, FUDGE, mac, original_id, self.error, other
        )
        return _append(reply, rec)


def sign_request(msg: bytes, key: Key, now: int, fudge: int = FUDGE) -> tuple[bytes, bytes]:
    """A signed request (such as an outgoing NOTIFY), and its MAC."""
    data = msg + variables(key.name, key.algorithm, now, fudge, NOERROR, b"")
    mac = key.mac(data)
    original_id = msg[0] << 8 | msg[1]
    rec = record(key.name, key.algorithm, now, fudge, mac, original_id, NOERROR, b"")
    return _append(msg, rec), mac


def verify_response(
    msg: bytes, key: Key, request_mac: bytes, now: int
) -> bool:  # used for NOTIFY replies
    """Whether a single-message response is signed by ``key`` over ``request_mac``."""
    try:
        tsig = find(msg)
    except TsigFormError:
        return False
    if tsig is None or tsig.key_name != key.name or tsig.algorithm != key.algorithm:
        return False
    data = _U16.pack(len(request_mac)) + request_mac + stripped(msg, tsig)
    data += variables(
        tsig.key_name, tsig.algorithm, tsig.time_signed, tsig.fudge, tsig.error, tsig.other
    )
    ok = hmac.compare_digest(key.mac(data), tsig.mac)
    return ok and abs(now - tsig.time_signed) <= tsig.fudge and tsig.error == NOERROR
