"""DNSSEC signing (srvd.wire.dnssec, srvd.index.dnssec, srvd.answer.signed) on plain bytes, with
dnspython as the oracle: every RRSIG srvd sends validates, every denial is proven, DO=0 answers
are the unsigned server's byte for byte, signatures are deterministic and cached within bounds."""

from __future__ import annotations

import base64
import os
import random
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import dns.dnssectypes
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
import pytest
from dnssec_oracle import (
    apex_of,
    check_denial,
    dnssec_module,
    signed_config,
    unsigned_twin,
    validate_message,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srvd.answer.full import answer
from srvd.cli import main
from srvd.config import ConfigError, load_config
from srvd.http.pacc import deriver
from srvd.index.build import build_index
from srvd.index.dnssec import STATS, ZoneSigner, attach
from srvd.index.model import Index
from srvd.server.loading import load_aside
from srvd.server.responder import Responder
from srvd.wire.dnssec import (
    DnssecKeyError,
    ds_rdata,
    generate_key,
    key_tag,
    load_key,
    sign_rrset,
    type_bitmap,
)
from srvd.wire.names import to_wire

from conftest import require_tool

NOW = 1_800_000_000  # the signers' clock in these tests
SERIAL = 2_024_010_101  # newer than any window start near NOW: DO=0 SOAs stay comparable
IN = dns.rdataclass.IN
TYPES = ("SRV", "TXT", "A", "AAAA", "SOA", "NS", "DNSKEY", "CDS", "CDNSKEY", "NSEC", "DS", "ANY")


def _index(path: Path, clock: float = NOW) -> Index:
    config = load_config(str(path))
    serial_of = lambda apex, digest: SERIAL  # noqa: E731
    # with PACC's _ua-auto-config zones, on in the bundled example: signed like the others
    index = build_index(config, serial_of, deriver(config.http))
    return attach(index, config.dnssec, lambda: clock)


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    directory = tmp_path_factory.mktemp("dnssec")
    return {alg: signed_config(directory, alg) for alg in (13, 15)}


@pytest.fixture(scope="module")
def indexes(configs: dict[int, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[Any, Index]:
    """Signed with each algorithm (NXDOMAIN proven by the NSEC chain, the default), and
    "compact": algorithm 13 with ``denial: compact`` (RFC 9824)."""
    found: dict[Any, Index] = {alg: _index(path) for alg, path in configs.items()}
    directory = tmp_path_factory.mktemp("dnssec-compact")
    found["compact"] = _index(signed_config(directory, 13, "  denial: compact\n"))
    return found


def ask(
    index: Index,
    name: str,
    rtype: str,
    do: bool = True,
    payload: int = 1232,
    tcp: bool = False,
    rng: random.Random | None = None,
    co: bool = False,
) -> dns.message.Message:
    query = dns.message.make_query(name, rtype, want_dnssec=do, payload=payload)
    if co:  # Compact Answers OK (RFC 9824 §5)
        query.use_edns(0, dns.flags.DO | dns.flags.CO if do else dns.flags.CO, payload)
    reply = answer(query.to_wire(), index, rng or random.Random(1), tcp)
    assert reply is not None
    return dns.message.from_wire(reply)


def dnskeys(index: Index, apex: dns.name.Name) -> dict[dns.name.Name, dns.rrset.RRset]:
    reply = ask(index, apex.to_text(), "DNSKEY")
    return {apex: reply.find_rrset(reply.answer, apex, IN, dns.rdatatype.DNSKEY)}


def all_names(index: Index) -> list[str]:
    """Every owner of every zone, the apexes, names that do not exist below each."""
    out = []
    for apex, zone in index.zones.items():
        for relative in zone.table.names:
            out.append(dns.name.from_wire(relative + apex, 0)[0].to_text())
        out.append(dns.name.from_wire(b"\x05_nope" + apex, 0)[0].to_text())
        out.append(dns.name.from_wire(b"\x03zzz" + apex, 0)[0].to_text())
        out.append(dns.name.from_wire(b"\x01x\x06_imaps" + apex, 0)[0].to_text())
        out.append(dns.name.from_wire(b"\x01-" + apex, 0)[0].to_text())
    return sorted(out)


# ---------------------------------------------------------------------------------------------
# wire: keys, tags, DS, signatures against dnspython


@pytest.mark.parametrize("algorithm", [13, 15])
def test_keys_tags_and_ds_match_dnspython(algorithm: int) -> None:
    dnssec = dnssec_module()
    key = load_key(generate_key(algorithm))
    rdata = dns.rdata.from_wire(IN, dns.rdatatype.DNSKEY, key.dnskey, 0, len(key.dnskey))
    assert key.algorithm == algorithm and key.flags == 257
    assert key.tag == key_tag(key.dnskey) == dnssec.key_id(rdata)
    owner = dns.name.from_text("_tcp.example.com")
    ds = dnssec.make_ds(owner, rdata, "SHA256")
    assert ds.to_wire() == ds_rdata(to_wire("_tcp.example.com"), key.dnskey)


@pytest.mark.parametrize("algorithm", [13, 15])
def test_a_signature_validates_and_is_deterministic(algorithm: int) -> None:
    dnssec = dnssec_module()
    pem = generate_key(algorithm)
    key = load_key(pem)
    owner = to_wire("_imaps._tcp.example.com")
    apex = to_wire("_tcp.example.com")
    rdatas = [struct.pack("!HHH", 0, 5, 993) + to_wire(t) for t in ("b.example", "a.example")]
    one = sign_rrset(key, owner, 33, 3600, rdatas, NOW - 3600, NOW + 86400, apex)
    assert one == sign_rrset(
        load_key(pem), owner, 33, 3600, rdatas[::-1], NOW - 3600, NOW + 86400, apex
    )
    # and another process makes the same octets (RFC 6979 / Ed25519)
    code = (
        "import sys, struct\nfrom srvd.wire.dnssec import load_key, sign_rrset\n"
        "from srvd.wire.names import to_wire\n"
        f"key = load_key({pem!r})\n"
        "r = [struct.pack('!HHH', 0, 5, 993) + to_wire(t) for t in ('b.example', 'a.example')]\n"
        f"sys.stdout.write(sign_rrset(key, to_wire('_imaps._tcp.example.com'), 33, 3600, r, "
        f"{NOW - 3600}, {NOW + 86400}, to_wire('_tcp.example.com')).hex())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert other.stdout == one.hex(), other.stderr
    name = dns.name.from_text("_imaps._tcp.example.com")
    rrset = dns.rrset.from_text(name, 3600, "IN", "SRV", "0 5 993 a.example.", "0 5 993 b.example.")
    sig = dns.rdata.from_wire(IN, dns.rdatatype.RRSIG, one, 0, len(one))
    dnskey = dns.rdata.from_wire(IN, dns.rdatatype.DNSKEY, key.dnskey, 0, len(key.dnskey))
    keys = {
        dns.name.from_text("_tcp.example.com"): dns.rrset.from_rdata(
            "_tcp.example.com", 3600, dnskey
        )
    }
    dnssec.validate(rrset, dns.rrset.from_rdata(name, 3600, sig), keys, now=NOW)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 2**256 - 1), st.integers(1, 2**256 - 1))
def test_ecdsa_signatures_leave_der_as_r_and_s(r: int, s: int) -> None:
    """The DER that OpenSSL returns becomes RFC 6605's r || s, short integers included."""
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from srvd.wire.dnssec import _raw

    for pair in ((r, s), (r >> 200 or 1, s), (r, s >> 250 or 1)):
        der = encode_dss_signature(*pair)
        assert _raw(der) == pair[0].to_bytes(32, "big") + pair[1].to_bytes(32, "big")


def test_type_bitmap_matches_dnspython() -> None:
    from dns.rdtypes.ANY.NSEC import Bitmap

    types = [1, 2, 6, 16, 33, 46, 47, 48, 59, 60, 257, 65534]
    expected = Bitmap.from_rdtypes([dns.rdatatype.RdataType.make(t) for t in types])
    out = b""
    for window, bitmap in expected.windows:
        out += bytes([window, len(bitmap)]) + bitmap
    assert type_bitmap(types) == out


def test_bind_private_keys_are_read(tmp_path: Path) -> None:
    keygen = require_tool("dnssec-keygen")
    for algorithm, name in ((13, "ECDSAP256SHA256"), (15, "ED25519")):
        made = subprocess.run(
            [keygen, "-K", str(tmp_path), "-a", name, "-f", "KSK", "_tcp.example.com"],
            capture_output=True,
            text=True,
            check=True,
        )
        base = tmp_path / made.stdout.strip()
        key = load_key(Path(f"{base}.private").read_bytes())
        public = Path(f"{base}.key").read_text().split()
        assert key.algorithm == algorithm
        assert int(made.stdout.strip().rsplit("+", 1)[1]) == key.tag
        assert (
            "".join(public[public.index("DNSKEY") + 4 :]) == base64.b64encode(key.public).decode()
        )


def test_unusable_keys_are_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    rsa_pem = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for data, words in ((rsa_pem, "only EC P-256"), (p384, "not P-256"), (b"junk", "not a PEM")):
        with pytest.raises(DnssecKeyError, match=words):
            load_key(data)


# ---------------------------------------------------------------------------------------------
# configuration and commands


def test_check_names_bad_dnssec_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signed_config(tmp_path, 15)
    good = signed_config(tmp_path)
    base = good.read_text()
    (tmp_path / "rsa.pem").write_text(
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    )
    key = tmp_path / "csk13.pem"
    cases = {
        "dnssec:\n  key: missing.pem\n": "dnssec.key: cannot read",
        "dnssec:\n  key: rsa.pem\n": "dnssec.key:",
        "dnssec: {}\n": "key is required",
        f"dnssec:\n  key: {tmp_path / 'csk13.pem'}\n  refresh: 10d\n": "dnssec.refresh: must be",
        f"dnssec:\n  key: {tmp_path / 'csk13.pem'}\n  lifetime: 2x\n": "dnssec.lifetime: expected",
        f"dnssec:\n  key: {tmp_path / 'csk13.pem'}\n  cach_size: 10\n": "did you mean",
        f"dnssec:\n  key: {key}\n  publish: [{key}]\n": "twice",
        f"dnssec:\n  key: {key}\n  publish: [{tmp_path / 'csk15.pem'}]\n": "algorithm rollover",
        f"dnssec:\n  key: {key}\n  denial: black-lies\n": "dnssec.denial: expected one of nsec",
    }
    for section, message in cases.items():
        path = tmp_path / "bad.yaml"
        path.write_text(base[: base.index("dnssec:")] + section)
        with pytest.raises(ConfigError) as caught:
            load_config(str(path))
        assert message in str(caught.value), (section, str(caught.value))
        assert f"{path}:" in str(caught.value)
    config = load_config(str(good))
    assert config.dnssec is not None and config.dnssec.lifetime == 14 * 86400
    assert config.dnssec.refresh == 7 * 86400 and config.dnssec.backdate == 3600
    assert config.dnssec.denial == "nsec"
    assert main(["check", "-c", str(good)]) == 0
    tag = load_key((tmp_path / "csk13.pem").read_bytes()).tag
    assert f"DNSSEC: every zone signed with key tag {tag} (algorithm 13)" in capsys.readouterr().out


def test_keygen_writes_a_private_key_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for algorithm in (13, 15):
        path = tmp_path / f"k{algorithm}.pem"
        assert main(["dnssec", "keygen", "--algorithm", str(algorithm), "-o", str(path)]) == 0
        assert path.stat().st_mode & 0o777 == 0o600
        key = load_key(path.read_bytes())
        assert key.algorithm == algorithm
        assert f"key tag {key.tag}" in capsys.readouterr().out
        before = path.read_bytes()
        assert main(["dnssec", "keygen", "-o", str(path)]) == 1  # never over a key
        assert path.read_bytes() == before


def test_ds_lines_match_the_served_dnskeys(
    configs: dict[int, Path], indexes: dict[int, Index], capsys: pytest.CaptureFixture[str]
) -> None:
    dnssec = dnssec_module()
    assert main(["dnssec", "ds", "-c", str(configs[13]), "example.com", "shop.example"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [
        "_axigen.example.com.",
        "_tcp.example.com.",
        "_ua-auto-config.example.com.",
        "_axigen.shop.example.",
        "_tcp.shop.example.",
        "_ua-auto-config.shop.example.",
    ]
    for line in lines:
        owner, ttl, klass, rtype, *rest = line.split()
        assert (ttl, klass, rtype) == ("3600", "IN", "DS")
        apex = dns.name.from_text(owner)
        keys = dnskeys(indexes[13], apex)[apex]
        assert dns.rdata.from_text("IN", "DS", " ".join(rest)) == dnssec.make_ds(
            apex, keys[0], "SHA256"
        )
    assert main(["dnssec", "ds", "-c", str(configs[13]), "--all"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(indexes[13].zones)
    assert main(["dnssec", "ds", "-c", str(configs[13]), "nowhere.example"]) == 1


# ---------------------------------------------------------------------------------------------
# answers


@pytest.mark.parametrize("algorithm", [13, 15, "compact"])
def test_every_rrset_of_every_name_validates(indexes: dict[Any, Index], algorithm: Any) -> None:
    index = indexes[algorithm]
    keys: dict[dns.name.Name, dns.rrset.RRset] = {}
    seen = set()
    for name in all_names(index):
        qname = dns.name.from_text(name)
        apex = apex_of(qname)
        if apex not in keys:
            keys.update(dnskeys(index, apex))
        for rtype in TYPES:
            reply = ask(index, name, rtype)
            assert reply.flags & dns.flags.AA and reply.ednsflags & dns.flags.DO
            assert validate_message(reply, keys, NOW) >= 1
            if not reply.answer:
                check_denial(reply, qname, dns.rdatatype.from_text(rtype))
            seen.add((dns.rcode.to_text(reply.rcode()), bool(reply.answer)))
    assert seen == {("NOERROR", True), ("NOERROR", False), ("NXDOMAIN", False)}


def test_the_apex_publishes_dnskey_cds_and_cdnskey(indexes: dict[int, Index]) -> None:
    dnssec = dnssec_module()
    index = indexes[13]
    apex = dns.name.from_text("_tcp.d3.example")
    key = dnskeys(index, apex)[apex][0]
    reply = ask(index, apex.to_text(), "CDS")
    cds = reply.find_rrset(reply.answer, apex, IN, dns.rdatatype.CDS)
    assert cds[0].to_wire() == dnssec.make_ds(apex, key, "SHA256").to_wire()
    reply = ask(index, apex.to_text(), "CDNSKEY")
    assert (
        reply.find_rrset(reply.answer, apex, IN, dns.rdatatype.CDNSKEY)[0].to_wire()
        == key.to_wire()
    )
    # a DNSKEY query without DO gets the keys and no signatures
    reply = ask(index, apex.to_text(), "DNSKEY", do=False)
    assert [r.rdtype for r in reply.answer] == [dns.rdatatype.DNSKEY]


@pytest.mark.parametrize("denial", [13, "compact"])
def test_ttls_follow_rfc_4034_and_9077(indexes: dict[Any, Index], denial: Any) -> None:
    index = indexes[denial]
    reply = ask(index, "_nope._tcp.example.com", "SRV")
    assert reply.rcode() == (dns.rcode.NOERROR if denial == "compact" else dns.rcode.NXDOMAIN)
    negative = min(index.settings.ttl, index.settings.minimum)
    assert len(reply.authority) == (4 if denial == "compact" else 6)
    for rrset in reply.authority:
        assert rrset.ttl == negative  # SOA, NSEC and their RRSIGs
        if rrset.rdtype == dns.rdatatype.RRSIG and rrset[0].type_covered == dns.rdatatype.SOA:
            assert rrset[0].original_ttl == index.settings.ttl
    reply = ask(index, "_imaps._tcp.example.com", "SRV")
    assert {r.ttl for r in reply.answer} == {index.settings.ttl}


def test_a_name_that_does_not_exist_gets_a_compact_answer(
    indexes: dict[Any, Index], configs: dict[int, Path]
) -> None:
    """RFC 9824 (denial: compact): NOERROR with the SOA and one NSEC at the name
    itself (next name \\000.name, types RRSIG NSEC NXNAME), each with its RRSIG, in any letter
    case; NXDOMAIN with the CO flag echoed when the query sets CO; the same name again costs no
    signature; DO=0 gets the plain NXDOMAIN."""
    index = indexes["compact"]
    signer = index.dnssec
    assert isinstance(signer, ZoneSigner) and signer.compact
    apex = dns.name.from_text("_tcp.example.com")
    keys = dnskeys(index, apex)
    for name in ("_nope._tcp.example.com", "x.y._IMAPS._tcp.Example.COM", "-._tcp.example.com"):
        qname = dns.name.from_text(name)
        reply = ask(index, name, "SRV")
        assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
        assert not reply.ednsflags & dns.flags.CO
        assert [(r.name, r.rdtype, r.covers) for r in reply.authority] == [
            (apex, dns.rdatatype.SOA, 0),
            (apex, dns.rdatatype.RRSIG, dns.rdatatype.SOA),
            (qname, dns.rdatatype.NSEC, 0),
            (qname, dns.rdatatype.RRSIG, dns.rdatatype.NSEC),
        ]
        assert reply.authority[2].name.to_text() == qname.to_text()  # the question's case
        assert validate_message(reply, keys, NOW) == 2
        check_denial(reply, qname, dns.rdatatype.SRV)
        made = STATS.signatures
        coded = ask(index, name, "SRV", co=True)
        assert coded.rcode() == dns.rcode.NXDOMAIN and coded.ednsflags & dns.flags.CO
        assert coded.authority == reply.authority  # (the same records, no new signature)
        assert STATS.signatures == made
        check_denial(coded, qname, dns.rdatatype.SRV)
        plain = ask(index, name, "SRV", do=False)
        assert plain.rcode() == dns.rcode.NXDOMAIN and len(plain.authority) == 1
    # CO is echoed on every DO=1 answer; without DO it means nothing
    reply = ask(index, "_imaps._tcp.example.com", "SRV", co=True)
    assert reply.answer and reply.ednsflags & dns.flags.CO
    assert not ask(index, "_nope._tcp.example.com", "SRV", do=False, co=True).ednsflags & (
        dns.flags.CO
    )
    # the chain's proof where a compact answer cannot be made or would contradict itself:
    # questions for NSEC and RRSIG, a name with no room for \000 before it, a wildcard's name
    long = ".".join(["a" * 63] * 3) + f".{'x' * 43}._tcp.example.com"
    assert len(dns.name.from_text(long).to_wire() or b"") == 254
    chained = [("_nope._tcp.example.com", "NSEC"), (long, "SRV"), ("*._tcp.example.com", "TXT")]
    for name, rtype in chained:
        reply = ask(index, name, rtype, tcp=True)
        assert reply.rcode() == dns.rcode.NXDOMAIN
        validate_message(reply, keys, NOW)
        check_denial(reply, dns.name.from_text(name), dns.rdatatype.from_text(rtype))
    # NXNAME is a meta-type: FORMERR (RFC 9824 §3.5), with or without DO
    for do in (True, False):
        reply = ask(index, "_nope._tcp.example.com", "TYPE128", do=do)
        assert reply.rcode() == dns.rcode.FORMERR and not reply.answer
    # an unsigned server does not implement it
    unsigned = _index(unsigned_twin(configs[13]))
    assert ask(unsigned, "_nope._tcp.example.com", "TYPE128").rcode() == dns.rcode.NXDOMAIN


def test_compact_answers_are_kept_apart_and_bounded(tmp_path: Path) -> None:
    """A random-name flood churns only the compact answers' own cache (a quarter of the DO=1
    replies' bound), never the signatures of the answers; a name's kept answer ends with the
    zone's window."""
    clock = [float(NOW)]
    config = load_config(
        str(signed_config(tmp_path, 13, "  cache_size: 1024\n  denial: compact\n"))
    )
    index = attach(
        build_index(config, lambda apex, digest: SERIAL), config.dnssec, lambda: clock[0]
    )
    signer = index.dnssec
    assert isinstance(signer, ZoneSigner)
    ask(index, "_imaps._tcp.example.com", "SRV")
    kept = dict(signer.cache)
    for i in range(500):
        ask(index, f"_r{i}._tcp.d{i % 12}.example", "SRV")
        assert len(signer.nxnames) <= signer.denials_size == 32
    assert all(signer.cache.get(key) == value for key, value in kept.items())
    assert len(signer.cache) < 40  # the zones' SOA signatures, not one per name
    made = STATS.signatures
    ask(index, "_r499._tcp.d7.example", "SRV")
    assert STATS.signatures == made
    clock[0] += signer.refresh
    ask(index, "_r499._tcp.d7.example", "SRV")
    assert STATS.signatures > made  # the next window: signed anew


def test_the_srv_order_is_drawn_per_reply_and_the_signature_covers_every_order(
    indexes: dict[int, Index],
) -> None:
    index = indexes[13]
    apex = dns.name.from_text("_tcp.example.com")
    keys = dnskeys(index, apex)
    firsts = set()
    rng = random.Random(5)
    for _ in range(60):
        reply = ask(index, "_imaps._tcp.example.com", "SRV", rng=rng)
        validate_message(reply, keys, NOW)
        srv = reply.find_rrset(
            reply.answer, dns.name.from_text("_imaps._tcp.example.com"), IN, dns.rdatatype.SRV
        )
        firsts.add(next(iter(srv)).target.to_text())
        # the wire order (dnspython keeps it) varies; the RRSIG is the same
    assert firsts == {"imap1.example.net.", "imap2.example.net."}


def test_udp_overflow_is_truncated_and_tcp_carries_it_whole(indexes: dict[Any, Index]) -> None:
    index = indexes[13]
    name = "_nope._tcp.example.com"  # NXDOMAIN: SOA and two NSECs, each with its RRSIG
    whole = ask(index, name, "TXT", tcp=True)
    size = len(whole.to_wire())
    assert size > 512 and not whole.flags & dns.flags.TC and len(whole.authority) == 6
    assert len(ask(index, name, "TXT", payload=1232).to_wire()) == size
    small = ask(index, name, "TXT", payload=512)
    assert small.flags & dns.flags.TC and not small.authority and not small.answer
    assert small.rcode() == dns.rcode.NXDOMAIN


def test_do0_answers_are_the_unsigned_servers_byte_for_byte(configs: dict[int, Path]) -> None:
    signed = _index(configs[13])
    twin = load_config(str(unsigned_twin(configs[13])))
    plain = build_index(twin, lambda apex, digest: SERIAL, deriver(twin.http))
    names = [*all_names(signed), "example.com", "_tcp.nowhere.example"]
    plain_types = [t for t in TYPES if t not in ("DNSKEY", "CDS", "CDNSKEY", "NSEC")]
    one, two = Responder(signed, random.Random(3)), Responder(plain, random.Random(3))
    chooser = random.Random(4)
    compared = 0
    for name in names:
        for rtype in plain_types:
            for _ in range(3):
                cased = "".join(c.upper() if chooser.random() < 0.3 else c for c in name)
                query = dns.message.make_query(
                    cased,
                    rtype,
                    use_edns=chooser.choice([None, 0]),
                    payload=chooser.choice([512, 1232, 4096]),
                )
                wire = query.to_wire()
                tcp = chooser.random() < 0.3
                assert one.respond(wire, tcp) == two.respond(wire, tcp), (name, rtype)
                compared += 1
    assert compared > 2000


# ---------------------------------------------------------------------------------------------
# windows, serials, cache


def test_windows_are_staggered_quantised_and_move_the_serial(configs: dict[int, Path]) -> None:
    config = load_config(str(configs[13]))
    assert config.dnssec is not None
    clock = [float(NOW)]
    signer = ZoneSigner(config.dnssec, config.zone, lambda: clock[0])
    apexes = [to_wire(f"_tcp.d{i}.example") for i in range(12)]
    windows = [signer.window(apex) for apex in apexes]
    assert len({w.start for w in windows}) > 6  # staggered
    for w in windows:
        assert w.inception == w.start - 3600 and w.expiration == w.start + 14 * 86400
        assert w.start <= NOW < w.start + 7 * 86400
        assert w.expiration - NOW >= 7 * 86400  # renewed a week before it expires
    apex = apexes[0]
    first = signer.window(apex)
    clock[0] = first.start + 7 * 86400 - 1
    assert signer.window(apex) == first  # the same all along the window, in every process
    old = signer.serial(apex, 100)
    clock[0] += 1
    assert signer.window(apex).start == first.start + 7 * 86400
    new = signer.serial(apex, 100)
    assert new != old and (new - old) % 2**32 < 2**31  # moved forward (RFC 1982)
    assert signer.serial(apex, new + 5) == new + 5  # a newer content serial wins


def test_the_signature_cache_is_bounded_and_counted(
    configs: dict[int, Path], tmp_path: Path
) -> None:
    path = signed_config(tmp_path, 13, "  cache_size: 16\n")
    index = _index(path)
    signer = index.dnssec
    assert isinstance(signer, ZoneSigner)
    made, hits = STATS.signatures, STATS.hits
    rng = random.Random(9)
    names = all_names(index)
    for _ in range(400):
        ask(index, rng.choice(names), rng.choice(["SRV", "TXT", "A"]))
        assert len(signer.cache) <= 16
    for _ in range(5):
        ask(index, "_imaps._tcp.example.com", "SRV")
    assert STATS.signatures - made > 16 and STATS.hits - hits >= 4
    soonest = signer.take_soonest()  # the gauge of the earliest expiry
    assert soonest is not None and soonest >= NOW + 7 * 86400
    assert signer.take_soonest() is None  # nothing sent since


# ---------------------------------------------------------------------------------------------
# random queries: every RRSIG validates (dnspython)


@st.composite
def questions(draw: st.DrawFn) -> tuple[Any, str, str, bool, bool, bool]:
    algorithm = draw(st.sampled_from([13, 15, "compact"]))
    domain = draw(
        st.sampled_from(
            ["example.com", "example.org", "shop.example", "over.example"]
            + [f"d{i}.example" for i in range(12)]
        )
    )
    apex = draw(st.sampled_from(["_tcp", "_axigen"]))
    owner = draw(
        st.sampled_from(
            [
                "",
                "_imaps.",
                "_submissions.",
                "_caldavs.",
                "_jmap.",
                "_pop3.",
                "_xmpp-client.",
                "_x.",
                "a.",
                "_imaps.x.",
                "*.",
                "zz.",
            ]
        )
    )
    if draw(st.booleans()):
        owner = draw(st.from_regex(r"[a-z0-9_-]{1,12}\.", fullmatch=True)) + owner
    name = owner + apex + "." + domain
    name = "".join(c.upper() if draw(st.booleans()) else c for c in name)
    rtype = draw(st.sampled_from([*TYPES, "RRSIG", "MX", "TYPE65"]))
    return algorithm, name, rtype, draw(st.booleans()), draw(st.booleans()), draw(st.booleans())


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(questions())
def test_every_rrsig_srvd_sends_validates(
    indexes: dict[Any, Index], case: tuple[Any, str, str, bool, bool, bool]
) -> None:
    algorithm, name, rtype, tcp, big, co = case
    index = indexes[algorithm]
    reply = ask(index, name, rtype, payload=1232 if big else 512, tcp=tcp, co=co)
    if reply.flags & dns.flags.TC:
        assert not tcp and not reply.answer and not reply.authority
        return
    qname = dns.name.from_text(name)
    apex = apex_of(qname)
    keys = dnskeys(index, apex.canonicalize())
    if rtype == "RRSIG":  # the RRSIGs themselves, each over an RRset of the name
        assert all(r.rdtype == dns.rdatatype.RRSIG for r in reply.answer)
        return
    validate_message(reply, keys, NOW)
    if not reply.answer:
        check_denial(reply, qname, dns.rdatatype.from_text(rtype))


def test_the_signed_export_verifies(configs: dict[int, Path], tmp_path: Path) -> None:
    verify = require_tool("dnssec-verify")
    ldns = require_tool("ldns-verify-zone")
    out = tmp_path / "zones"
    assert main(["zone", "--all", "-c", str(configs[13]), "-o", str(out)]) == 0
    files = sorted(out.glob("*.zone"))
    assert len(files) > 20
    for path in files[:6]:
        origin = path.name.removesuffix(".zone")
        done = subprocess.run(
            [verify, "-z", "-o", origin, str(path)], capture_output=True, text=True
        )
        assert done.returncode == 0 and "Zone fully signed" in done.stdout + done.stderr, (
            done.stderr
        )
        done = subprocess.run([ldns, str(path)], capture_output=True, text=True)
        assert done.returncode == 0 and "verified" in done.stdout, done.stdout + done.stderr
        zone = dns.zone.from_file(str(path), origin, relativize=False)
        assert zone.get_rdataset(dns.name.from_text(origin), "DNSKEY") is not None
        assert zone.get_rdataset(dns.name.from_text(origin), "NSEC") is not None


def test_the_metrics_count_signatures_and_show_the_earliest_expiry(
    configs: dict[int, Path],
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from srvd.ops.dnssec import DnssecCollector

    index = _index(configs[13])  # a signer of its own: an empty cache
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DnssecCollector(lambda: index))
    before = STATS.signatures
    ask(index, "_imaps._tcp.example.com", "SRV")
    ask(index, "_imaps._tcp.example.com", "SRV")
    text = generate_latest(registry).decode()
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values["srvd_dnssec_enabled"] == 1
    assert values["srvd_dnssec_signatures_total"] == STATS.signatures >= before + 1
    assert values["srvd_dnssec_cache_hits_total"] >= 1
    assert values["srvd_dnssec_cache_entries"] == 1
    assert values["srvd_dnssec_presign_pending_zones"] == 0  # (no presigner here)
    signer = index.dnssec
    assert isinstance(signer, ZoneSigner)
    window = signer.window(to_wire("_tcp.example.com"))
    assert values["srvd_dnssec_signature_expiry_earliest_seconds"] == window.expiration


def test_the_served_serial_never_goes_back_when_signing_stops(
    configs: dict[int, Path], tmp_path: Path
) -> None:
    """The serial a signed zone is served with (moved by its window) is what the state file and
    the next index start from: turning signing off (restart or reload) keeps it rather than
    falling back to the older content serial."""
    from srvd.index.serials import SerialState, from_index, serial_source

    old_content = NOW - 30 * 86400  # the configuration's file time, before any window
    config = load_config(str(configs[13]))
    signed = attach(
        build_index(config, lambda apex, digest: old_content), config.dnssec, lambda: NOW
    )
    apex = to_wire("_tcp.example.com")
    moved = signed.serial(apex, signed.zones[apex])
    assert moved > old_content
    state = SerialState(str(tmp_path))
    state.write(signed)
    unsigned_config = load_config(str(unsigned_twin(configs[13])))

    def after(serial: int) -> bool:  # newer than the moved serial (RFC 1982): the DNSKEY RRset
        return serial != moved and (serial - moved) % 2**32 < 2**31  # went, the content changed

    restarted = build_index(unsigned_config, state.source(None, old_content))
    assert after(restarted.serial(apex, restarted.zones[apex]))
    reloaded = build_index(unsigned_config, serial_source(from_index(signed), old_content))
    assert after(reloaded.serial(apex, reloaded.zones[apex]))
    # the server's reload (srvd.server.reload): the build process, the running zones' served
    # serials (a content serial would go back)
    labels = frozenset(a[: a[0] + 1] for a in signed.zones)
    served = load_aside(str(unsigned_twin(configs[13])), signed.zones, {}, labels, signed.serial)
    assert served.index.dnssec is None
    assert after(served.index.serial(apex, served.index.zones[apex]))
    # distinct serials stay few: windows are staggered by the hour
    assert len({signed.serial(a, z) for a, z in signed.zones.items()}) <= 7 * 24


def test_a_key_change_or_turning_signing_on_changes_every_zones_content(
    configs: dict[int, Path], tmp_path: Path
) -> None:
    """The DNSKEY RRset is zone content: a new key, a published key, or signing turned on or
    off changes each zone's digest, so that the serial moves and secondaries transfer."""
    from srvd.index.serials import from_index, serial_source

    apex = to_wire("_tcp.example.com")
    key = tmp_path / "csk13.pem"
    key.write_bytes(generate_key(13))
    other = tmp_path / "other.pem"
    other.write_bytes(generate_key(13))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    paths = [  # (each its own file: signed_config writes signed13.yaml in the directory given)
        unsigned_twin(configs[13]),
        signed_config(tmp_path / "a", 13, key=key),
        signed_config(tmp_path / "b", 13, f"  publish: [{other}]\n", key=key),
    ]
    digests = []
    previous = None
    for number, path in enumerate(paths):
        config = load_config(str(path))
        now = NOW - 30 * 86400 + number * 1000  # each edit a newer file time
        source = serial_source(from_index(previous) if previous else (lambda a: None), now)
        index = attach(build_index(config, source), config.dnssec, lambda: NOW)
        digests.append(index.zones[apex].table.digest)
        if previous is not None:
            before, after = previous.serial(apex, previous.zones[apex]), index.zones[apex].serial
            assert (after - before) % 2**32 < 2**31 and after != before
        previous = index
    assert len(set(digests)) == 3
