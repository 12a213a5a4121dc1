"""dnspython as the DNSSEC oracle of the tests: signed configurations, RRSIG validation, and the
checks of NSEC denial proofs."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import dns._features
import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import dns.rrset

from srvd.wire.dnssec import generate_key

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "srvd" / "data" / "example.yaml"

# more domains on every profile (templated targets included) and overrides
EXTRA_DOMAINS = "".join(
    f"  d{i}.example: {('standard', 'branded')[i % 2]}\n" for i in range(12)
) + (
    "  over.example:\n"
    "    profile: branded\n"
    "    imaps: {target: imap.over.example, port: 993}\n"
    "  xn--bcher-kva.example: standard\n"
    "  ent.example:\n"
    "    profile: standard\n"
    "    srv:\n"
    "      _a._b._tcp: [{target: deep.example.net, port: 1}]\n"
    "  bad.example: standard\n"
)


def dnssec_module() -> ModuleType:
    """dns.dnssec with validation on: dnspython 2.9 asks for cryptography >= 50 before it
    enables it, while its code works with the cryptography srvd uses (>= 44)."""
    dns._features.force("dnssec", True)
    module = importlib.import_module("dns.dnssec")
    if not module._have_pyca:
        module = importlib.reload(module)
    return module


def signed_config(
    directory: Path, algorithm: int = 13, dnssec_extra: str = "", key: Path | None = None
) -> Path:
    """The bundled example with more domains, signed with a new key of ``algorithm``."""
    if key is None:
        key = directory / f"csk{algorithm}.pem"
        if not key.exists():
            key.write_bytes(generate_key(algorithm))
    text = EXAMPLE.read_text()
    text = text.replace("  shop.example: branded\n", "  shop.example: branded\n" + EXTRA_DOMAINS)
    text += f"dnssec:\n  key: {key}\n{dnssec_extra}"
    path = directory / f"signed{algorithm}.yaml"
    path.write_text(text)
    return path


def unsigned_twin(signed: Path) -> Path:
    """The same configuration without its dnssec: section."""
    text = signed.read_text()
    path = signed.with_name(signed.stem + "-unsigned.yaml")
    path.write_text(text[: text.index("dnssec:")])
    return path


def apex_of(name: dns.name.Name) -> dns.name.Name:
    """The zone apex srvd serves for a name: from its last label starting with "_"."""
    labels = name.labels
    for i in range(len(labels) - 1, -1, -1):
        if labels[i].startswith(b"_"):
            return dns.name.Name(labels[i:])
    raise ValueError(f"{name} is in no srvd zone")


def validate_message(
    reply: dns.message.Message, keys: dict[dns.name.Name, dns.rrset.RRset], now: float
) -> int:
    """Validate the RRSIG of every RRset in the answer and authority sections (each must have
    one); returns the number of RRsets validated."""
    dnssec = dnssec_module()
    checked = 0
    for section in (reply.answer, reply.authority):
        for rrset in section:
            if rrset.rdtype == dns.rdatatype.RRSIG:
                continue
            sigs = reply.find_rrset(
                section, rrset.name, rrset.rdclass, dns.rdatatype.RRSIG, rrset.rdtype
            )
            dnssec.validate(rrset, sigs, keys, now=now)
            checked += 1
    return checked


def covers(owner: dns.name.Name, following: dns.name.Name, name: dns.name.Name) -> bool:
    """Whether an NSEC from ``owner`` to ``following`` proves ``name`` absent (canonical
    order; the last NSEC of a zone points back at the apex)."""
    if following <= owner:  # the wrap at the end of the chain
        return bool(name > owner)
    return bool(owner < name < following)


NXNAME = 128
COMPACT_TYPES = {dns.rdatatype.RRSIG, dns.rdatatype.NSEC, NXNAME}


def nsecs(reply: dns.message.Message) -> list[tuple[dns.name.Name, dns.name.Name, set[int]]]:
    out = []
    for rrset in reply.authority:
        if rrset.rdtype == dns.rdatatype.NSEC:
            for rdata in rrset:
                types: set[int] = set()
                for window, bitmap in rdata.windows:
                    for i, octet in enumerate(bitmap):
                        types.update(
                            window * 256 + i * 8 + bit for bit in range(8) if octet & 0x80 >> bit
                        )
                out.append((rrset.name, rdata.next, types))
    return out


def check_denial(reply: dns.message.Message, qname: dns.name.Name, qtype: int) -> None:
    """The NSEC records of a NODATA or NXDOMAIN reply prove it (RFC 4035 §3.1.3)."""
    qname = qname.canonicalize()
    found = nsecs(reply)
    assert found, "a signed negative answer carries NSEC"
    if any(o == qname and NXNAME in types for o, _, types in found):
        # a compact answer (RFC 9824): one NSEC at the name, next name its immediate successor,
        # types RRSIG NSEC NXNAME; NOERROR, or NXDOMAIN when the query set CO (echoed)
        assert found == [(qname, dns.name.Name((b"\x00", *qname.labels)), COMPACT_TYPES)]
        compact = bool(reply.ednsflags & dns.flags.CO)
        assert reply.rcode() == (3 if compact else 0)
        return
    if reply.rcode() == 3:  # NXDOMAIN: the name, and the wildcard at the closest encloser
        assert any(covers(o, n, qname) for o, n, _ in found), "no NSEC covers the name"
        # the closest encloser: the longest ancestor that an NSEC owner or next name shows
        encloser = qname.parent()
        while not any(
            o == encloser or n == encloser or o.is_subdomain(encloser) or n.is_subdomain(encloser)
            for o, n, _ in found
        ):
            encloser = encloser.parent()
        wildcard = dns.name.Name((b"*", *encloser.labels))
        assert any(covers(o, n, wildcard) for o, n, _ in found), f"nothing covers {wildcard}"
    else:  # NODATA: the name's own NSEC without the type, or an empty non-terminal's proof
        own = [types for o, _, types in found if o == qname]
        if own:
            assert qtype not in own[0] and dns.rdatatype.CNAME not in own[0]
        else:
            assert any(covers(o, n, qname) and n.is_subdomain(qname) for o, n, _ in found), (
                "neither the name's NSEC nor an empty non-terminal's proof"
            )
