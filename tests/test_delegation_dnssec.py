"""srvd delegation with dnssec: on: the DS lines of every served apex (PACC's included) are the
ones ``srvd dnssec ds`` prints, one per key of the DNSKEY set, and match the DNSKEY srvd serves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dns.rdatatype
import dns.zone
from dnssec_oracle import dnssec_module, signed_config

from srvd.wire.dnssec import generate_key

ROOT = Path(__file__).resolve().parent.parent


def srvd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "srvd", *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_delegation_lists_the_ds_of_every_key_and_apex(tmp_path: Path) -> None:
    published = tmp_path / "next.pem"
    published.write_bytes(generate_key(13))
    config = signed_config(tmp_path, dnssec_extra=f"  publish: [{published}]\n")
    domains = ("example.com", "shop.example")
    delegation = srvd("delegation", "-c", str(config), *domains)
    assert delegation.returncode == 0, delegation.stderr
    ds_lines = {
        tuple(line.split("\t")[i] for i in (0, 4)): None
        for line in delegation.stdout.splitlines()
        if "\tDS\t" in line
    }
    printed = srvd("dnssec", "ds", "-c", str(config), *domains)
    assert printed.returncode == 0, printed.stderr
    expected = {
        (owner, " ".join(rest)): None
        for owner, _ttl, _in, _ds, *rest in (line.split() for line in printed.stdout.splitlines())
    }
    assert set(ds_lines) == set(expected)
    owners = {owner for owner, _ in ds_lines}
    assert "_ua-auto-config.example.com." in owners  # the bundled example has http.pacc on
    assert {"_tcp.example.com.", "_axigen.example.com.", "_tcp.shop.example."} <= owners
    assert len(ds_lines) == 2 * len(owners)  # the signing key and the published one
    # each DS is the digest of a DNSKEY the zone serves
    for owner in owners:
        text = srvd("zone", "-c", str(config), owner.split(".", 1)[1].rstrip("."))
        zone = dns.zone.from_text(text.stdout, origin=owner, relativize=False, check_origin=False)
        dnskeys = zone.find_rdataset(owner, dns.rdatatype.DNSKEY)
        made = {dnssec_module().make_ds(owner, key, "SHA256").to_text().upper() for key in dnskeys}
        assert {rest.upper() for o, rest in ds_lines if o == owner} == made
