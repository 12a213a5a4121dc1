"""DNSSEC on the wire (RFC 4034, RFC 6605, RFC 8080): keys, DNSKEY/DS/CDS rdata, key tags, the
canonical form of an RRset, RRSIG and NSEC rdata. Pure functions on bytes; no clock, no cache.

Keys are a combined signing key (CSK, flags 257) of algorithm 13 (ECDSA P-256 with SHA-256) or 15
(Ed25519), read from PKCS#8 PEM (as ``openssl genpkey`` and ``srvd dnssec keygen`` write it) or
from BIND's ``K*.private`` (``dnssec-keygen``). Signatures are deterministic: Ed25519 is by
design, ECDSA uses RFC 6979 nonces, so every worker and every server that holds the key makes
the same octets for the same RRset and validity window.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import cast

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

DS, RRSIG, NSEC, DNSKEY, CDS, CDNSKEY = 43, 46, 47, 48, 59, 60
# the types that exist only in a signed zone (a query for one goes to srvd.answer.signed)
DNSSEC_TYPES = frozenset({RRSIG, NSEC, DNSKEY, CDS, CDNSKEY})
NXNAME = 128  # RFC 9824: a meta-type, only in the NSEC bitmap of a compact answer's name
CO = 0x4000  # RFC 9824 §5: the EDNS header flag Compact Answers OK, after DO
ECDSAP256SHA256 = 13
ED25519 = 15
ALGORITHMS = {ECDSAP256SHA256: "ECDSAP256SHA256", ED25519: "ED25519"}
CSK_FLAGS = 257  # zone key + secure entry point
DIGEST_SHA256 = 2
CLASS_IN = 1


class DnssecKeyError(ValueError):
    """A key file that srvd cannot use (the message says why)."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One private key with its DNSKEY rdata and key tag."""

    algorithm: int
    private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    public: bytes  # the DNSKEY public key field
    flags: int = CSK_FLAGS
    dnskey: bytes = b""  # the DNSKEY rdata: flags, protocol 3, algorithm, public key
    tag: int = 0  # its key tag

    def __post_init__(self) -> None:
        dnskey = struct.pack("!HBB", self.flags, 3, self.algorithm) + self.public
        object.__setattr__(self, "dnskey", dnskey)
        object.__setattr__(self, "tag", key_tag(dnskey))

    def sign(self, data: bytes) -> bytes:
        """The signature field of an RRSIG over ``data`` (RFC 6605 §4: r || s; RFC 8080)."""
        if self.algorithm == ED25519:
            return cast(ed25519.Ed25519PrivateKey, self.private).sign(data)
        return _raw(cast(ec.EllipticCurvePrivateKey, self.private).sign(data, _ECDSA))


_ECDSA = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)  # RFC 6979 nonces


def _raw(der: bytes) -> bytes:
    """r || s (RFC 6605 §4) from an ECDSA P-256 signature in DER, ``SEQUENCE { INTEGER r,
    INTEGER s }``: each integer at most 33 octets (a leading zero), so every length is short."""
    r_end = 4 + der[3]
    r = der[4:r_end].lstrip(b"\x00")
    s = der[r_end + 2 : r_end + 2 + der[r_end + 1]].lstrip(b"\x00")
    if der[0] != 0x30 or der[2] != 0x02 or der[r_end] != 0x02 or len(r) > 32 or len(s) > 32:
        r_int, s_int = decode_dss_signature(der)  # (never: OpenSSL writes DER this way)
        return r_int.to_bytes(32, "big") + s_int.to_bytes(32, "big")
    return r.rjust(32, b"\x00") + s.rjust(32, b"\x00")


def _from_private(private: object) -> SigningKey:
    if isinstance(private, ed25519.Ed25519PrivateKey):
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return SigningKey(ED25519, private, public)
    if isinstance(private, ec.EllipticCurvePrivateKey):
        if not isinstance(private.curve, ec.SECP256R1):
            raise DnssecKeyError(f"EC curve {private.curve.name} is not P-256 (algorithm 13)")
        point = private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return SigningKey(ECDSAP256SHA256, private, point[1:])
    raise DnssecKeyError(
        "only EC P-256 (algorithm 13) and Ed25519 (algorithm 15) keys are supported"
    )


def load_key(data: bytes) -> SigningKey:
    """A key from PEM (PKCS#8 or SEC1 EC) or BIND ``K*.private`` text. Raises DnssecKeyError."""
    if b"Private-key-format:" in data:
        return _bind_key(data)
    if b"-----BEGIN" not in data:
        raise DnssecKeyError("not a PEM private key nor a BIND K*.private file")
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise DnssecKeyError(
            "the key is encrypted; srvd needs it unencrypted (mode 0600)"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as error:
        raise DnssecKeyError(f"unreadable PEM key: {error}") from None
    return _from_private(private)


def _bind_key(data: bytes) -> SigningKey:
    fields = {}
    for line in data.decode("ascii", "replace").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip()] = value.strip()
    try:
        algorithm = int(fields.get("Algorithm", "").split()[0])
        secret = base64.b64decode(fields["PrivateKey"], validate=True)
    except (IndexError, ValueError, KeyError):
        raise DnssecKeyError("BIND key file without a valid Algorithm and PrivateKey") from None
    if algorithm == ECDSAP256SHA256 and len(secret) == 32:
        private: object = ec.derive_private_key(int.from_bytes(secret, "big"), ec.SECP256R1())
    elif algorithm == ED25519 and len(secret) == 32:
        private = ed25519.Ed25519PrivateKey.from_private_bytes(secret)
    else:
        raise DnssecKeyError(f"BIND key of algorithm {algorithm}: only 13 and 15 are supported")
    return _from_private(private)


def generate_key(algorithm: int) -> bytes:
    """A new private key of ``algorithm`` (13 or 15), as unencrypted PKCS#8 PEM."""
    private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == ECDSAP256SHA256:
        private = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == ED25519:
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise DnssecKeyError(f"algorithm {algorithm}: only 13 and 15 are supported")
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def key_tag(dnskey: bytes) -> int:
    """RFC 4034 Appendix B."""
    total = 0
    for i, octet in enumerate(dnskey):
        total += octet if i & 1 else octet << 8
    total += (total >> 16) & 0xFFFF
    return total & 0xFFFF


def ds_rdata(owner: bytes, dnskey: bytes) -> bytes:
    """The SHA-256 DS (and CDS) rdata of a DNSKEY at ``owner`` (wire name)."""
    digest = hashlib.sha256(owner.lower() + dnskey).digest()
    return struct.pack("!HBB", key_tag(dnskey), dnskey[3], DIGEST_SHA256) + digest


def ds_text(owner: bytes, dnskey: bytes) -> str:
    """The SHA-256 DS of a DNSKEY at ``owner`` in master-file form: ``tag alg 2 HEX``."""
    rdata = ds_rdata(owner, dnskey)
    tag, algorithm, digest_type = rdata[0] << 8 | rdata[1], rdata[2], rdata[3]
    return f"{tag} {algorithm} {digest_type} {rdata[4:].hex().upper()}"


def labels(name: bytes) -> list[bytes]:
    """The labels of a wire name (uncompressed), leftmost first, without the root."""
    out = []
    pos = 0
    while name[pos]:
        out.append(name[pos + 1 : pos + 1 + name[pos]])
        pos += name[pos] + 1
    return out


def label_count(name: bytes) -> int:
    """The RRSIG Labels field: labels but the root, a leading "*" not counted."""
    count = 0
    pos = 0
    while name[pos]:
        pos += name[pos] + 1
        count += 1
    return count - 1 if name[:2] == b"\x01*" else count


def canonical_key(name: bytes) -> tuple[bytes, ...]:
    """A sort key giving RFC 4034 §6.1 canonical order (labels compared from the right)."""
    return tuple(reversed(labels(name.lower())))


def canonical_rrset(owner: bytes, rtype: int, ttl: int, rdatas: Collection[bytes]) -> bytes:
    """RFC 4034 §6.3: the records of one RRset in canonical form and order (rdata must already
    be canonical: lower-case names in SRV, NS, SOA...); duplicates removed."""
    head = owner.lower() + struct.pack("!HHI", rtype, CLASS_IN, ttl)
    ordered = rdatas if len(rdatas) == 1 else sorted(set(rdatas))
    return b"".join(head + struct.pack("!H", len(rdata)) + rdata for rdata in ordered)


def rrsig_fields(
    covered: int,
    algorithm: int,
    owner: bytes,
    ttl: int,
    expiration: int,
    inception: int,
    tag: int,
    signer: bytes,
) -> bytes:
    """The RRSIG rdata without its signature (what is signed, ahead of the RRset)."""
    return (
        struct.pack(
            "!HBBIIIH",
            covered,
            algorithm,
            label_count(owner),
            ttl,
            expiration & 0xFFFFFFFF,
            inception & 0xFFFFFFFF,
            tag,
        )
        + signer.lower()
    )


def sign_rrset(
    key: SigningKey,
    owner: bytes,
    rtype: int,
    ttl: int,
    rdatas: Collection[bytes],
    inception: int,
    expiration: int,
    signer: bytes,
) -> bytes:
    """The RRSIG rdata over one RRset (RFC 4034 §3.1.8.1)."""
    fields = rrsig_fields(rtype, key.algorithm, owner, ttl, expiration, inception, key.tag, signer)
    return fields + key.sign(fields + canonical_rrset(owner, rtype, ttl, rdatas))


def type_bitmap(types: Iterable[int]) -> bytes:
    """The NSEC type bit maps field (RFC 4034 §4.1.2)."""
    windows: dict[int, bytearray] = {}
    for rtype in sorted(set(types)):
        window = windows.setdefault(rtype >> 8, bytearray(32))
        window[(rtype & 0xFF) >> 3] |= 0x80 >> (rtype & 7)
    out = b""
    for number in sorted(windows):
        bits = bytes(windows[number]).rstrip(b"\x00")
        out += bytes([number, len(bits)]) + bits
    return out


def nsec_rdata(next_name: bytes, types: Iterable[int]) -> bytes:
    return next_name.lower() + type_bitmap(types)


def rr(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    """One record in wire form (``owner`` as given: a name or a compression pointer)."""
    return owner + struct.pack("!HHIH", rtype, CLASS_IN, ttl, len(rdata)) + rdata


def read_rdatas(records: bytes, skip_owner: int = 2) -> list[tuple[int, int, bytes]]:
    """(type, TTL, rdata) of records whose owners are ``skip_owner`` octets (pointers)."""
    out = []
    pos = 0
    while pos < len(records):
        rtype, _rclass, ttl, length = struct.unpack_from("!HHIH", records, pos + skip_owner)
        start = pos + skip_owner + 10
        out.append((rtype, ttl, records[start : start + length]))
        pos = start + length
    return out
