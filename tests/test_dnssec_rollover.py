"""The documented double-DS key rollover (docs/dnssec.md), stage by stage: at every stage a
validator that trusts the DS records the parent holds then (and any it may still have cached)
validates srvd's answers; ``srvd dnssec ds`` prints what the parent needs at each stage."""

from __future__ import annotations

import random
from pathlib import Path

import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from dnssec_oracle import dnssec_module, signed_config, validate_message

from srvd.answer.full import answer
from srvd.cli import main
from srvd.config import load_config
from srvd.index.build import build_index
from srvd.index.dnssec import attach
from srvd.index.model import Index
from srvd.wire.dnssec import generate_key

NOW = 1_800_000_000
IN = dns.rdataclass.IN
APEX = dns.name.from_text("_tcp.example.com")


def ask(index: Index, name: str, rtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rtype, want_dnssec=True)
    reply = answer(query.to_wire(), index, random.Random(1), True)
    assert reply is not None
    return dns.message.from_wire(reply)


def trusted_keys(index: Index, ds_set: list[dns.rdata.Rdata]) -> dns.rrset.RRset | None:
    """The DNSKEY RRset, if a validator that knows ``ds_set`` trusts it (RFC 4035 §5.2): a key
    that a DS matches signs the RRset."""
    dnssec = dnssec_module()
    reply = ask(index, APEX.to_text(), "DNSKEY")
    dnskeys = reply.find_rrset(reply.answer, APEX, IN, dns.rdatatype.DNSKEY)
    sigs = reply.find_rrset(reply.answer, APEX, IN, dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY)
    for key in dnskeys:
        if dnssec.make_ds(APEX, key, "SHA256") not in ds_set:
            continue
        anchor = dns.rrset.from_rdata_list(APEX, dnskeys.ttl, [key])
        try:
            dnssec.validate(dnskeys, sigs, {APEX: anchor}, now=NOW)
        except dnssec.ValidationFailure:
            continue
        return dnskeys
    return None


def stage(tmp: Path, key: Path, publish: list[Path]) -> Index:
    extra = f"  publish: [{', '.join(str(p) for p in publish)}]\n" if publish else ""
    path = signed_config(tmp, 13, extra, key=key)
    config = load_config(str(path))
    return attach(build_index(config), config.dnssec, lambda: NOW)


def ds_of(
    tmp: Path, key: Path, publish: list[Path], capsys: pytest.CaptureFixture[str]
) -> list[dns.rdata.Rdata]:
    extra = f"  publish: [{', '.join(str(p) for p in publish)}]\n" if publish else ""
    path = signed_config(tmp, 13, extra, key=key)
    assert main(["dnssec", "ds", "-c", str(path), "example.com"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("_tcp.")]
    return [dns.rdata.from_text("IN", "DS", " ".join(line.split()[4:])) for line in lines]


def test_the_double_ds_rollover(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = tmp_path / "old.pem", tmp_path / "new.pem"
    old.write_bytes(generate_key(13))
    new.write_bytes(generate_key(13))
    ds_old = ds_of(tmp_path, old, [], capsys)
    assert len(ds_old) == 1

    # the stages: (signing key, published keys), then which DS sets a validator may hold
    stages = [
        ("start", old, []),
        ("1. publish the new key", old, [new]),
        ("3. switch", new, [old]),
        ("4. retire the old key", new, []),
    ]
    ds_both = ds_of(tmp_path, old, [new], capsys)  # 2. the parent gets both DS records
    assert len(ds_both) == 2 and ds_old[0] in ds_both
    ds_new = [ds for ds in ds_both if ds not in ds_old]
    assert ds_of(tmp_path, new, [], capsys) == ds_new  # 5. the parent drops the old DS
    expected = {
        # which DS sets validate at each stage: the parent's (and what caches may still hold)
        "start": {"old": True, "both": True, "new": False},
        "1. publish the new key": {"old": True, "both": True, "new": True},
        "3. switch": {"old": True, "both": True, "new": True},
        "4. retire the old key": {"old": False, "both": True, "new": True},
    }
    for name, key, publish in stages:
        index = stage(tmp_path, key, publish)
        for label, ds_set in (("old", ds_old), ("both", ds_both), ("new", ds_new)):
            keys = trusted_keys(index, ds_set)
            assert (keys is not None) == expected[name][label], (name, label)
            if keys is None:
                continue
            for qname, rtype in (
                ("_imaps._tcp.example.com", "SRV"),
                ("_x._tcp.example.com", "SRV"),
            ):
                validate_message(ask(index, qname, rtype), {APEX: keys}, NOW)
        # CDS/CDNSKEY name every key of the key set: parent automation follows the stages
        reply = ask(index, APEX.to_text(), "CDS")
        cds = reply.find_rrset(reply.answer, APEX, IN, dns.rdatatype.CDS)
        assert len(cds) == 1 + len(publish)
