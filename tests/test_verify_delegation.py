"""``srvd delegation`` and ``srvd verify-delegation`` against a fake parent: NSD on 127.0.0.2
serving six customer zones (their delegation lines written by ``srvd delegation``, each fault
planted once) and the zones of the name servers' names, srvd on 127.0.0.3 (ns1) and on
127.0.0.4 (ns2, without one domain: lame there), and unbound on 127.0.0.1 as the resolver
(forwarding to the fake parent). Every address is a loopback address; the parent and the srvd
listen on the same port, the one ``--port`` names.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import dns.zone
import pytest

from conftest import (
    ROOT,
    RunningServer,
    free_port,
    require_tool,
    start_srvd,
    stop_process,
    wait_for_dns,
)

PARENT, NS1, NS2 = "127.0.0.2", "127.0.0.3", "127.0.0.4"
NAMESERVERS = ("ns1.discovery.provider.test", "ns2.discovery.provider.test")
DOMAINS = ("d-ok.test", "d-undelegated.test", "d-lame.test", "d-nsdiff.test",
           "d-leftover.test", "d-ds.test")  # fmt: skip
DS = "12345 13 2 " + "3f" * 32
EXPECTED = {
    ("d-undelegated.test", "not-delegated", "_tcp.d-undelegated.test"),
    ("d-lame.test", "lame", "_tcp.d-lame.test"),
    ("d-lame.test", "lame", "_axigen.d-lame.test"),
    ("d-nsdiff.test", "ns-differs", "_tcp.d-nsdiff.test"),
    ("d-leftover.test", "hidden-records", "_tcp.d-leftover.test"),
    ("d-ds.test", "ds", "_tcp.d-ds.test"),
}


def config_text(domains: tuple[str, ...]) -> str:
    lines = [
        "zone:",
        f"  nameservers: [{', '.join(NAMESERVERS)}]",
        "profiles:",
        "  standard:",
        "    imaps: {target: imap.provider.test, port: 993}",
        "    axigen: webmail.provider.test",
        "  none: {}",
        "domains:",
        *(f"  {d}: standard" for d in domains),
        "  d-empty.test: none",
    ]
    return "\n".join(lines) + "\n"


def srvd_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "srvd", *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def common_port() -> int:
    """A port free for UDP and TCP on every address of the test."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((PARENT, 0))
            port = int(probe.getsockname()[1])
        try:
            for address in (PARENT, NS1, NS2):
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    with socket.socket(socket.AF_INET, kind) as sock:
                        sock.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no common free port")


def parent_zones(config: Path) -> dict[str, str]:
    """The fake parent's zones: each customer zone with what ``srvd delegation`` prints for it,
    one fault planted in each but d-ok.test."""
    out = {}
    for domain in DOMAINS:
        result = srvd_command("delegation", "-c", str(config), domain)
        assert result.returncode == 0, result.stderr
        lines = [line for line in result.stdout.splitlines() if not line.startswith(";")]
        assert len(lines) == 4, lines  # NS ns1, ns2 for _axigen and for _tcp
        if domain == "d-undelegated.test":
            lines = [x for x in lines if not x.startswith("_tcp.")]
        elif domain == "d-nsdiff.test":
            lines = [
                x.replace("ns2.discovery", "other") if x.startswith("_tcp.") else x for x in lines
            ]
        elif domain == "d-leftover.test":
            lines.append("_sipfederationtls._tcp IN SRV 100 1 5061 sipfed.online.example.")
        elif domain == "d-ds.test":
            lines.append(f"_tcp IN DS {DS}")
        out[domain] = zone_text(domain, lines)
    out["parent.test"] = zone_text("parent.test", [f"ns IN A {PARENT}"])
    out["provider.test"] = zone_text(
        "provider.test",
        [f"ns1.discovery IN A {NS1}", f"ns2.discovery IN A {NS2}", f"other IN A {NS1}"],
    )
    return out


def zone_text(origin: str, lines: list[str]) -> str:
    head = [
        f"$ORIGIN {origin}.",
        "$TTL 3600",
        "@ IN SOA ns.parent.test. hostmaster.parent.test. 1 3600 600 86400 300",
        "@ IN NS ns.parent.test.",
    ]
    return "\n".join(head + lines) + "\n"


@dataclass
class Setup:
    config: Path
    port: int
    resolver: str  # unbound, forwarding everything to the fake parent


def start_unbound(tmp: Path, port: int) -> tuple[subprocess.Popen[bytes], str]:
    """Unbound as the recursive resolver, on 127.0.0.1: it forwards every query to the fake
    parent (NSD on 127.0.0.2), so no packet leaves loopback."""
    unbound = require_tool("unbound")
    own = free_port()
    conf = [
        "server:",
        "  interface: 127.0.0.1",
        f"  port: {own}",
        "  do-ip6: no",
        "  do-daemonize: no",
        '  username: ""',
        '  chroot: ""',
        f'  directory: "{tmp}"',
        f'  pidfile: "{tmp}/unbound.pid"',
        "  use-syslog: no",
        "  do-not-query-localhost: no",
        '  module-config: "iterator"',
        "  qname-minimisation: no",
        "  num-threads: 1",
        "  access-control: 127.0.0.0/8 allow",
        '  local-zone: "test." nodefault',  # RFC 6761 names: unbound answers them itself
        "forward-zone:",
        '  name: "."',
        f"  forward-addr: {PARENT}@{port}",
        "remote-control:",
        "  control-enable: no",
    ]
    (tmp / "unbound.conf").write_text("\n".join(conf) + "\n")
    log = (tmp / "unbound.log").open("wb")
    process = subprocess.Popen(
        [unbound, "-d", "-c", str(tmp / "unbound.conf")], stdout=log, stderr=log
    )
    try:
        wait_for_dns(own, timeout=20)
    except TimeoutError:
        stop_process(process)
        raise AssertionError((tmp / "unbound.log").read_text()) from None
    return process, f"127.0.0.1:{own}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    nsd = require_tool("nsd")
    tmp = tmp_path_factory.mktemp("delegation")
    config = tmp / "srvd.yaml"
    config.write_text(config_text(DOMAINS))
    partial = tmp / "partial.yaml"  # ns2's: without d-lame.test
    partial.write_text(config_text(tuple(d for d in DOMAINS if d != "d-lame.test")))
    port = common_port()
    zones = parent_zones(config)
    for name, text in zones.items():
        dns.zone.from_text(text, origin=name)  # each is a valid zone
        (tmp / f"{name}.zone").write_text(text)
    conf = [
        "server:",
        f"  ip-address: {PARENT}@{port}",
        "  do-ip6: no",
        '  database: ""',
        f'  zonelistfile: "{tmp}/zone.list"',
        f'  pidfile: "{tmp}/nsd.pid"',
        f'  xfrdfile: "{tmp}/xfrd.state"',
        f'  xfrdir: "{tmp}"',
        f'  zonesdir: "{tmp}"',
        '  username: ""',
        '  chroot: ""',
        "  server-count: 1",
        "remote-control:",
        "  control-enable: no",
    ]
    for name in zones:
        conf += ["zone:", f"  name: {name}", f"  zonefile: {name}.zone"]
        conf.append("  provide-xfr: 127.0.0.0/8 NOKEY")
    (tmp / "nsd.conf").write_text("\n".join(conf) + "\n")
    log = (tmp / "nsd.log").open("wb")
    parent = subprocess.Popen([nsd, "-d", "-c", str(tmp / "nsd.conf")], stdout=log, stderr=log)
    servers: list[RunningServer] = []
    resolver = None
    try:
        wait_for_dns(port, host=PARENT, timeout=20)
        servers.append(start_srvd(config, "--listen", f"{NS1}:{port}"))
        servers.append(start_srvd(partial, "--listen", f"{NS2}:{port}"))
        resolver, address = start_unbound(tmp, port)
        yield Setup(config, port, address)
    finally:
        for server in servers:
            server.stop()
        if resolver is not None:
            stop_process(resolver)
        stop_process(parent)


def findings(output: str) -> tuple[set[tuple[str, str, str]], dict[str, str]]:
    found = set()
    verdicts = {}
    domain = ""
    for line in output.splitlines():
        if not line.startswith(" ") and ": " in line and not line.startswith("srvd "):
            domain, _, verdict = line.partition(": ")
            verdicts[domain] = verdict
        elif line.startswith("  ") and not line.startswith("  note:"):
            kind, apex, _message = line.strip().split(": ", 2)
            found.add((domain, kind, apex))
    return found, verdicts


@pytest.mark.parametrize("mode", ["--server", "--resolver"])
def test_every_planted_fault_is_found(setup: Setup, mode: str) -> None:
    """Asking the parent directly, and finding it through a recursive resolver (unbound)."""
    where = f"{PARENT}:{setup.port}" if mode == "--server" else setup.resolver
    result = srvd_command(
        "verify-delegation", "-c", str(setup.config), "--all", mode, where,
        "--port", str(setup.port), "--rate", "500", "--timeout", "2", "--time-limit", "60",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    found, verdicts = findings(result.stdout)
    assert found == EXPECTED, result.stdout
    assert verdicts["d-ok.test"] == "OK" and verdicts["d-empty.test"] == "OK", result.stdout
    assert "_sipfederationtls._tcp.d-leftover.test SRV" in result.stdout
    assert "7 domains: 2 OK, 5 with faults, 0 not checked" in result.stdout
    ok = srvd_command(
        "verify-delegation", "-c", str(setup.config), "d-ok.test", mode, where,
        "--port", str(setup.port),
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("d-ok.test: OK\n"), ok.stdout


def test_time_limit_leaves_domains_unchecked(setup: Setup) -> None:
    result = srvd_command(
        "verify-delegation", "-c", str(setup.config), "--all", "--server",
        f"{PARENT}:{setup.port}", "--port", str(setup.port), "--rate", "2", "--time-limit", "1",
    )  # fmt: skip
    assert result.returncode == 1
    assert "NOT CHECKED (time limit reached)" in result.stdout, result.stdout
    assert "not checked;" in result.stdout and " 0 not checked" not in result.stdout


def test_delegation_formats(setup: Setup) -> None:
    master = srvd_command("delegation", "-c", str(setup.config), "d-ok.test", "--ttl", "600")
    assert master.stdout.splitlines() == [
        "; d-ok.test",
        "_axigen.d-ok.test.\t600\tIN\tNS\tns1.discovery.provider.test.",
        "_axigen.d-ok.test.\t600\tIN\tNS\tns2.discovery.provider.test.",
        "_tcp.d-ok.test.\t600\tIN\tNS\tns1.discovery.provider.test.",
        "_tcp.d-ok.test.\t600\tIN\tNS\tns2.discovery.provider.test.",
    ]
    update = srvd_command("delegation", "-c", str(setup.config), "d-ok.test", "--format",
                          "nsupdate")  # fmt: skip
    assert update.stdout.splitlines() == [
        "; d-ok.test",
        "update delete _axigen.d-ok.test. IN NS",
        "update add _axigen.d-ok.test. 86400 IN NS ns1.discovery.provider.test.",
        "update add _axigen.d-ok.test. 86400 IN NS ns2.discovery.provider.test.",
        "update delete _tcp.d-ok.test. IN NS",
        "update add _tcp.d-ok.test. 86400 IN NS ns1.discovery.provider.test.",
        "update add _tcp.d-ok.test. 86400 IN NS ns2.discovery.provider.test.",
        "send",
    ]
    every = srvd_command("delegation", "-c", str(setup.config), "--all")
    assert every.stdout.count("\tNS\t") == 4 * len(DOMAINS)
    assert "; d-empty.test: srvd serves no zone for it" in every.stdout
    unknown = srvd_command("delegation", "-c", str(setup.config), "nothere.test")
    assert unknown.returncode == 2 and "is not a configured domain" in unknown.stderr


def test_ds_expected_through_the_dnssec_hook(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once srvd signs, srvd.migrate.delegation.signing_records yields the DS the parents must
    hold: the planted DS then matches, and a parent without it is a fault."""
    import srvd.migrate.verify as verify
    from srvd.config import Config, load_config
    from srvd.migrate.delegation import ParentRecord

    def signed(config: Config, apex: str) -> Iterator[ParentRecord]:
        if apex.startswith("_tcp."):
            yield ParentRecord(apex, "DS", DS.upper())

    monkeypatch.setattr(verify, "signing_records", signed)
    config = load_config(setup.config)
    checker = verify.Verifier(
        config, verify.Asker(500, 2, 60), setup.port, server=(PARENT, setup.port)
    )
    planted = checker.verify("d-ds.test")
    assert planted.ok, planted
    missing = checker.verify("d-ok.test")
    assert [(f.kind, f.apex) for f in missing.findings] == [("ds", "_tcp.d-ok.test")]
    assert "is missing; expected 12345 13 2 3f3f" in missing.findings[0].message


def test_nsupdate_output_updates_a_parent(setup: Setup, tmp_path: Path) -> None:
    """``srvd delegation --format nsupdate`` fed to BIND's nsupdate against Knot serving a parent
    zone (updates allowed from loopback): the NS RRsets become exactly zone.nameservers, an old
    one replaced, and a second run changes nothing."""
    knotd = require_tool("knotd")
    nsupdate = require_tool("nsupdate")
    port = free_port()
    (tmp_path / "storage").mkdir()
    (tmp_path / "d-ok.test.zone").write_text(
        zone_text("d-ok.test", ["_tcp IN NS old.elsewhere.example."])
    )
    conf = f"""\
server:
    rundir: "{tmp_path}"
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "{tmp_path}/storage"
acl:
  - id: update
    address: 127.0.0.1
    action: update
zone:
  - domain: d-ok.test
    file: "{tmp_path}/d-ok.test.zone"
    zonefile-sync: -1
    journal-content: none
    acl: update
"""
    (tmp_path / "knot.conf").write_text(conf)
    log = (tmp_path / "knot.log").open("wb")
    knot = subprocess.Popen(
        [knotd, "-c", str(tmp_path / "knot.conf"), "-s", str(tmp_path / "knot.sock")],
        stdout=log,
        stderr=log,
    )
    try:
        wait_for_dns(port, timeout=20)
        body = srvd_command("delegation", "-c", str(setup.config), "d-ok.test", "--format",
                            "nsupdate").stdout  # fmt: skip
        # server and zone given: nsupdate asks no one else (loopback only)
        script = f"server 127.0.0.1 {port}\nzone d-ok.test.\n{body}"
        for _run in range(2):
            done = subprocess.run(
                [nsupdate], input=script, capture_output=True, text=True, timeout=30
            )
            assert done.returncode == 0, done.stdout + done.stderr
            for apex in ("_tcp.d-ok.test", "_axigen.d-ok.test"):
                query = dns.message.make_query(apex, "NS")
                query.flags &= ~dns.flags.RD
                reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=5)
                names = {
                    rd.target.to_text(omit_final_dot=True)
                    for rrset in reply.authority
                    if rrset.rdtype == dns.rdatatype.NS and rrset.name.to_text() == f"{apex}."
                    for rd in rrset
                }
                assert names == set(NAMESERVERS), reply
    finally:
        stop_process(knot)


def test_a_parent_holding_some_of_the_keys_ds_is_a_rollover_note(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a second key published (dnssec.publish), srvd expects a DS for each; a parent that
    holds only one of them still validates (every key signs the key set): a note, no fault. A
    DS srvd does not publish stays a fault."""
    import srvd.migrate.verify as verify
    from srvd.config import Config, load_config
    from srvd.migrate.delegation import ParentRecord

    other = "54321 13 2 " + "ab" * 32

    def signed(config: Config, apex: str) -> Iterator[ParentRecord]:
        if apex.startswith("_tcp."):
            yield ParentRecord(apex, "DS", DS.upper())
            yield ParentRecord(apex, "DS", other.upper())

    monkeypatch.setattr(verify, "signing_records", signed)
    checker = verify.Verifier(
        load_config(setup.config), verify.Asker(500, 2, 60), setup.port, server=(PARENT, setup.port)
    )
    rolling = checker.verify("d-ds.test")
    assert rolling.ok, rolling
    assert any("key rollover" in note and "54321" in note for note in rolling.notes)

    def unknown(config: Config, apex: str) -> Iterator[ParentRecord]:
        if apex.startswith("_tcp."):
            yield ParentRecord(apex, "DS", other.upper())

    monkeypatch.setattr(verify, "signing_records", unknown)
    wrong = checker.verify("d-ds.test")
    assert [(f.kind, f.apex) for f in wrong.findings] == [("ds", "_tcp.d-ds.test")]
