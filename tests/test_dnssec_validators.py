"""Real validators on loopback: Unbound (trusting the DS records ``srvd dnssec ds`` prints) and
``delv`` validate srvd's signed answers across domains and profiles, templated targets included;
a corrupted signature gives SERVFAIL; ``dnsviz probe``/``print`` finds every proof secure and no
error. Everything runs inside ``unshare -n`` (tests/dnssec_resolvers.py), so no packet can leave
the machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dnssec_oracle import signed_config

from conftest import require_tool

HERE = Path(__file__).resolve().parent

QUESTIONS = [
    (name, rtype)
    for domain in ("example.com", "shop.example", "over.example", "d3.example", "ent.example")
    for name, rtype in (
        (f"_imaps._tcp.{domain}", "SRV"),  # shop.example: templated targets (mail.{domain})
        (f"_submissions._tcp.{domain}", "SRV"),
        (f"_caldavs._tcp.{domain}", "TXT"),
        (f"_axigen.{domain}", "TXT"),
        (f"_tcp.{domain}", "DNSKEY"),
        (f"_tcp.{domain}", "SOA"),
        (f"_nope._tcp.{domain}", "SRV"),  # a name that does not exist (compact, or NXDOMAIN)
        (f"x._imaps._tcp.{domain}", "SRV"),  # below an existing name
        (f"zzz._axigen.{domain}", "TXT"),  # after the last name
        (f"_nope._tcp.{domain}", "NSEC"),  # NXDOMAIN proven by the chain in either mode
        (f"_imaps._tcp.{domain}", "A"),  # NODATA
        (f"_tcp.{domain}", "TXT"),  # NODATA at the apex
    )
] + [
    ("_b._tcp.ent.example", "SRV"),  # an empty non-terminal: NODATA
    ("_a._b._tcp.ent.example", "SRV"),
    ("_imaps._tcp.bad.example", "SRV"),  # through the corrupting proxy
    ("_nope._tcp.bad.example", "SRV"),
]


@pytest.fixture(scope="module", params=["compact", "nsec"])
def results(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], dict[str, object]]:
    """Each question through Unbound and delv, srvd signing with compact answers (the default)
    or with ``denial: nsec``; keyed by (name, type), with the mode under ("denial", "")."""
    require_tool("unbound")
    require_tool("delv")
    unshare = require_tool("unshare")
    require_tool("ip")
    work = tmp_path_factory.mktemp("validators")
    config = signed_config(work, dnssec_extra=f"  denial: {request.param}\n")
    questions = work / "questions.json"
    questions.write_text(json.dumps(QUESTIONS))
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    done = subprocess.run(
        [
            unshare,
            "-n",
            sys.executable,
            str(HERE / "dnssec_resolvers.py"),
            str(config),
            str(work),
            str(questions),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    if done.returncode != 0 and "unshare failed" in done.stderr:
        pytest.skip(f"no network namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr + (work / "srvd.log").read_text(errors="replace")
    found = {(r["name"], r["type"]): r for r in json.loads(done.stdout.splitlines()[-1])}
    found[("denial", "")] = {"mode": request.param}
    return found


def test_unbound_validates_every_kind_of_answer(
    results: dict[tuple[str, str], dict[str, object]],
) -> None:
    kinds = set()
    compact = results[("denial", "")]["mode"] == "compact"
    for (name, rtype), result in results.items():
        if name.endswith(".bad.example") or name == "denial":
            continue
        assert result["ad"] is True, (name, rtype, result)
        kinds.add((result["rcode"], bool(result["answer"])))
        assert result["rcode"] in ("NOERROR", "NXDOMAIN")
        if name.startswith(("_nope.", "x._imaps.", "zzz.")):  # names that do not exist
            expected = "NOERROR" if compact and rtype != "NSEC" else "NXDOMAIN"
            assert result["rcode"] == expected, (name, rtype, result)
    assert kinds == {("NOERROR", True), ("NOERROR", False), ("NXDOMAIN", False)}
    templated = results[("_imaps._tcp.shop.example", "SRV")]["answer"]
    assert "mail.shop.example." in str(templated)
    assert results[("_b._tcp.ent.example", "SRV")]["rcode"] == "NOERROR"


def test_a_corrupted_signature_gives_servfail(
    results: dict[tuple[str, str], dict[str, object]],
) -> None:
    for name in ("_imaps._tcp.bad.example", "_nope._tcp.bad.example"):
        assert results[(name, "SRV")]["rcode"] == "SERVFAIL", results[(name, "SRV")]
        assert results[(name, "SRV")]["ad"] is False


def test_delv_says_fully_validated(results: dict[tuple[str, str], dict[str, object]]) -> None:
    for (name, rtype), result in results.items():
        if name.endswith(".bad.example") or name == "denial":
            continue
        text = str(result["delv"])
        if result["rcode"] == "NOERROR" and result["answer"]:
            assert "; fully validated" in text, (name, rtype, text)
        else:  # delv reports proven negative answers as such
            assert "; negative response, fully validated" in text, (name, rtype, text)


@pytest.mark.parametrize("denial", ["nsec", "compact"])
def test_dnsviz_finds_no_dnssec_errors(tmp_path: Path, denial: str) -> None:
    """``dnsviz probe`` (delegation given, srvd's DNSKEY trusted) and ``dnsviz print``: every
    RRset, NODATA and NXDOMAIN (or compact answer) proof secure ("[.]"), nothing bogus, no error
    or warning."""
    require_tool("dnsviz")
    require_tool("named")  # dnsviz serves the delegation it is given (-N) with it
    unshare = require_tool("unshare")
    config = signed_config(tmp_path, dnssec_extra=f"  denial: {denial}\n")
    zone = "_tcp.shop.example"
    names = [f"_imaps.{zone}", f"_caldavs.{zone}", f"_nope.{zone}"]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    done = subprocess.run(
        [
            unshare,
            "-nm",
            sys.executable,
            str(HERE / "dnssec_resolvers.py"),
            "dnsviz",
            str(config),
            str(tmp_path),
            zone,
            *names,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    if done.returncode != 0 and "unshare failed" in done.stderr:
        pytest.skip(f"no namespaces here: {done.stderr.strip()}")
    text = done.stdout
    assert done.returncode == 0, text + done.stderr
    lines = text.splitlines()
    assert lines[0].startswith(f"{zone} [.]"), text  # the zone is secure (its DS is not asked)
    statuses = [line for line in lines[1:] if line.strip().startswith("[")]
    assert len(statuses) > 20, text
    assert all(line.strip().startswith("[.]") for line in statuses), text
    assert not any(line.strip().startswith(("E:", "W:")) for line in lines), text
    # _nope: NXDOMAIN, or a compact answer (a NODATA whose NSEC at the name has NXNAME, 128)
    nope = "NXDOMAIN" if denial == "nsec" else f"_nope.{zone}. RRSIG NSEC TYPE128"
    for expected in ("SRV:", "NODATA", "NSEC:", "DNSKEY:", nope):
        assert expected in text, (expected, text)
