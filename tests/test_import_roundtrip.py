"""The round trip of ``srvd import``: a generated zone set (five providers' patterns, per-domain
deviations, templated hosts, odd cases) served by NSD as it is, and the configuration srvd import
made of it served by srvd, answer every discovery name alike (the differential test's reply
comparison: rcode, AA, the answer's RRsets with TTLs and RDATA, order aside). One zone file has
a Unicode name (the domain is its IDNA form). Only the names the
import report lists as not carried over are left out, and the report must list each of them.
The same zones transferred from NSD by AXFR (TSIG-signed, and unsigned) give the same files.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.name
import dns.rdatatype
import dns.zone
import pytest
from migrate_zones import NAMESERVERS, ODD, PROFILE_NAMES, ZoneSet, generate, number_of
from test_differential_nsd import QuerySpec as Spec
from test_differential_nsd import Reply, build_query, nsd_conf, parse

from conftest import ROOT, free_port, require_tool, start_srvd, stop_process, wait_for_dns

DOMAINS = 2000
FLAG_AA = 0x0400
KEY = ("import-key", "hmac-sha256", "aW1wb3J0LWtleS1zZWNyZXQtZm9yLXRoZS10ZXN0cw==")


def run_import(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "srvd", "import", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


@dataclass
class Nsd:
    process: subprocess.Popen[bytes]
    port: int

    def stop(self) -> None:
        stop_process(self.process)


def start_nsd(tmp: Path, zones: ZoneSet) -> Nsd:
    """NSD serving the original customer zones, AXFR allowed to 127.0.0.1 (with the key for
    the even-numbered half of the zones, without for the others)."""
    nsd = require_tool("nsd")
    zonedir = tmp / "zones"
    zonedir.mkdir(parents=True)
    (tmp / "xfr").mkdir()
    for path in zones.directory.iterdir():
        domain = zones.files[path.name]
        shutil.copy(path, zonedir / f"{domain}.zone")
    port = free_port()
    lines = [nsd_conf(tmp, port, {}).rstrip("\n")]
    lines += ["key:", f"  name: {KEY[0]}", f"  algorithm: {KEY[1]}", f'  secret: "{KEY[2]}"']
    for domain in zones.domains:
        key = KEY[0] if number_of(domain) % 2 == 0 else "NOKEY"
        lines += ["zone:", f"  name: {domain}", f"  zonefile: {domain}.zone"]
        lines.append(f"  provide-xfr: 127.0.0.1 {key}")
    (tmp / "nsd.conf").write_text("\n".join(lines) + "\n", encoding="utf-8")
    log = (tmp / "nsd.log").open("wb")
    process = subprocess.Popen([nsd, "-d", "-c", str(tmp / "nsd.conf")], stdout=log, stderr=log)
    try:
        wait_for_dns(port, timeout=30)
    except TimeoutError:
        stop_process(process)
        raise AssertionError((tmp / "nsd.log").read_text()) from None
    return Nsd(process, port)


def discovery_names(zones: ZoneSet) -> list[tuple[str, str]]:
    """(domain, owner) of every name with records below _tcp, _udp and _axigen of each original
    zone, read from the master files with dnspython (not with srvd.migrate)."""
    out = []
    for path in sorted(zones.directory.iterdir()):
        domain = zones.files[path.name]
        zone = dns.zone.from_file(str(path), origin=domain, relativize=False)
        origin = dns.name.from_text(domain)
        for name in zone.nodes:
            relative = name.relativize(origin).to_text()
            if relative.rsplit(".", 1)[-1] in ("_tcp", "_udp", "_axigen"):
                out.append((domain, name.to_text(omit_final_dot=True)))
    return out


def left_out(zones: ZoneSet, domain: str, owner: str) -> bool:
    """Whether ``owner`` is a name the import reports as not carried over exactly."""
    kind = zones.odd.get(domain)
    if kind is None:
        return False
    relative = owner.removesuffix("." + domain)
    base = ODD[kind][0]
    return relative == base or relative.endswith("." + base)


def exchange_all(port: int, queries: list[bytes]) -> list[bytes | None]:
    """Every query over UDP, up to 64 in flight, matched by ID; missing ones sent again."""
    replies: list[bytes | None] = [None] * len(queries)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(1.0)
        for _attempt in range(3):
            todo = [i for i, r in enumerate(replies) if r is None]
            for start in range(0, len(todo), 64):
                window = {queries[i][:2]: i for i in todo[start : start + 64]}
                for i in window.values():
                    sock.sendto(queries[i], ("127.0.0.1", port))
                while any(replies[i] is None for i in window.values()):
                    try:
                        data, _peer = sock.recvfrom(65535)
                    except TimeoutError:
                        break
                    i = window.get(data[:2], -1)
                    if i >= 0 and replies[i] is None:
                        replies[i] = data
    return replies


def differences(srvd: Reply, nsd: Reply) -> list[str]:
    if srvd.message is None or nsd.message is None:
        return [f"srvd: {srvd.error or 'a reply'}; NSD: {nsd.error or 'a reply'}"]
    out = []
    if srvd.rcode != nsd.rcode:
        out.append(f"rcode {srvd.rcode} != {nsd.rcode}")
    if srvd.flags & FLAG_AA != nsd.flags & FLAG_AA:
        out.append("AA differs")
    if srvd.answer != nsd.answer:
        extra = "; ".join(srvd.texts[k] for k in srvd.answer - nsd.answer) or "-"
        missing = "; ".join(nsd.texts[k] for k in nsd.answer - srvd.answer) or "-"
        out.append(f"answer: only srvd has [{extra}], only NSD has [{missing}]")
    return out


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ZoneSet, Path, Nsd]]:
    tmp = tmp_path_factory.mktemp("import")
    zones = generate(tmp / "zones", DOMAINS)
    result = run_import(
        "--zones", str(zones.directory), "--nameservers", ",".join(NAMESERVERS),
        "-o", str(tmp / "out"),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    nsd = start_nsd(tmp / "nsd", zones)
    try:
        yield zones, tmp / "out", nsd
    finally:
        nsd.stop()


def test_profiles_are_the_patterns(imported: tuple[ZoneSet, Path, Nsd]) -> None:
    zones, out, _nsd = imported
    check = subprocess.run(
        [sys.executable, "-m", "srvd", "check", "-c", str(out / "srvd.yaml")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert f"{DOMAINS} domains" in check.stdout and "5 profiles" in check.stdout, check.stdout
    import yaml

    main = yaml.safe_load((out / "srvd.yaml").read_text())
    assert sorted(main["profiles"]) == sorted(PROFILE_NAMES.values())
    domains = yaml.safe_load((out / "domains.yaml").read_text())["domains"]
    for domain, pattern in zones.pattern_of.items():
        entry = domains[domain]
        profile = entry if isinstance(entry, str) else entry["profile"]
        assert profile == PROFILE_NAMES[pattern], (domain, entry)
        kind = zones.odd.get(domain)
        # a record left out is a key the domain lacks; the joined text a txt override
        deviates = domain in zones.overridden or kind in ("cname", "split")
        deviates |= kind == "delegated" and pattern == "minimal"  # its _sip._udp is gone
        assert isinstance(entry, dict) == deviates, (domain, entry)
    report = (out / "import-report.txt").read_text()
    for domain, kind in zones.odd.items():
        owner = ODD[kind][0]
        assert f"{owner}.{domain}" in report, (kind, report)
    noted = [line for line in report.splitlines() if line.startswith("  cust")]
    assert len(noted) == len(zones.odd), noted


def test_srvd_answers_like_nsd_served_the_zones(imported: tuple[ZoneSet, Path, Nsd]) -> None:
    zones, out, nsd = imported
    srvd = start_srvd(out / "srvd.yaml")
    try:
        names = discovery_names(zones)
        specs = []
        for domain, owner in names:
            if left_out(zones, domain, owner):
                continue
            labels = tuple(label.encode() for label in owner.split("."))
            specs += [Spec(labels, 33), Spec(labels, 16)]
        queries = [build_query(i & 0xFFFF, spec) for i, spec in enumerate(specs)]
        started = time.monotonic()
        mine = exchange_all(srvd.port, queries)
        theirs = exchange_all(nsd.port, queries)
        elapsed = time.monotonic() - started
    finally:
        srvd.stop()
    mismatches = []
    answered = 0
    for spec, a, b in zip(specs, mine, theirs, strict=True):
        srvd_reply, nsd_reply = parse(a), parse(b)
        answered += bool(nsd_reply.answer)
        problems = differences(srvd_reply, nsd_reply)
        if problems:
            mismatches.append(f"{spec.describe()}: {'; '.join(problems)}")
    assert not mismatches, (
        f"{len(mismatches)} of {len(specs)} replies differ ({elapsed:.1f} s):\n"
        + "\n".join(mismatches[:20])
    )
    assert len(specs) > DOMAINS * 8 and answered > DOMAINS * 5, (len(specs), answered)


def test_axfr_import_gives_the_same_files(
    imported: tuple[ZoneSet, Path, Nsd], tmp_path: Path
) -> None:
    zones, out, nsd = imported
    signed, unsigned = tmp_path / "signed.list", tmp_path / "unsigned.list"
    signed.write_text("# signed zones\n" + "".join(
        f"{d}\n" for d in zones.domains if number_of(d) % 2 == 0
    ))  # fmt: skip
    unsigned.write_text("".join(f"{d}  # a comment\n" for d in zones.domains if number_of(d) % 2))
    tsig = ":".join(KEY)
    common = ["--nameservers", ",".join(NAMESERVERS), "--axfr-from", f"127.0.0.1:{nsd.port}"]
    a = run_import(*common, "--zone-list", str(signed), "--tsig", tsig, "-o", str(tmp_path / "a"))
    assert a.returncode == 0, a.stdout + a.stderr
    # without the key NSD refuses the signed half: reported, the command fails
    b = run_import(*common, "--zone-list", str(signed), "-o", str(tmp_path / "b"))
    assert b.returncode == 1 and "not read:" in b.stdout, b.stdout
    assert b.stdout.count("AXFR of ") == DOMAINS // 2, b.stdout[-2000:]
    c = run_import(*common, "--zone-list", str(unsigned), "-o", str(tmp_path / "c"))
    assert c.returncode == 0, c.stdout + c.stderr
    import yaml

    got = yaml.safe_load((tmp_path / "a" / "domains.yaml").read_text())["domains"]
    got.update(yaml.safe_load((tmp_path / "c" / "domains.yaml").read_text())["domains"])
    want = yaml.safe_load((out / "domains.yaml").read_text())["domains"]
    assert got == want
    profiles_a = yaml.safe_load((tmp_path / "a" / "srvd.yaml").read_text())["profiles"]
    profiles_want = yaml.safe_load((out / "srvd.yaml").read_text())["profiles"]
    assert profiles_a == profiles_want
