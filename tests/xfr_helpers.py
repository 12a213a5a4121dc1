"""Helpers for the zone-transfer tests: a primary configuration, Knot and NSD as secondaries."""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.rrset
import dns.tsigkeyring
import dns.zone

from conftest import stop_process, wait_for_dns

SECRET = base64.b64encode(bytes(range(32))).decode()
KEY_NAME = "xfr-key"
CATALOG = "catalog.example.net"

PROFILES = """\
profiles:
  standard:
    imaps: [{target: imap1.example.net, port: 993, weight: 5},
            {target: imap2.example.net, port: 993, weight: 1}]
    submissions: {target: smtp.example.net, port: 465}
    caldavs: {target: dav.example.net, port: 443, path: /dav/}
    axigen: webmail.example.net
  branded:
    imaps: {target: "mail.{domain}", port: 993}
"""


def keyring() -> dict[dns.name.Name, dns.tsig.Key]:
    return dns.tsigkeyring.from_text({KEY_NAME: ("hmac-sha256", SECRET)})


def primary_config(
    tmp: Path,
    domains: Iterable[str],
    allow: str = "127.0.0.1/32",
    notify: Iterable[int] = (),
    catalog: bool = True,
    extra_domains: str = "",
    extra: str = "",
) -> Path:
    """A configuration with transfer keys (secret in a file), an ACL and NOTIFY targets;
    ``extra``: more top-level YAML (such as a ``tcp:`` section)."""
    (tmp / "xfr.secret").write_text(SECRET + "\n", encoding="ascii")
    lines = [
        "zone:",
        "  nameservers: [ns1.discovery.example.net, ns2.discovery.example.net]",
        "  refresh: 3600",
        "transfer:",
        "  keys:",
        f"    - {{name: {KEY_NAME}, algorithm: hmac-sha256, secret_file: xfr.secret}}",
        "  allow:",
        f"    - {{address: {allow}, key: {KEY_NAME}}}",
    ]
    ports = list(notify)
    if ports:
        lines.append("  notify:")
        lines += [f"    - {{address: 127.0.0.1, port: {p}, key: {KEY_NAME}}}" for p in ports]
        lines.append("  notify_rate: 1000")
    if catalog:
        lines.append(f"catalog: {CATALOG}")
    if extra:
        lines.append(extra)
    lines.append(PROFILES)
    lines.append("domains:")
    for i, domain in enumerate(domains):
        lines.append(f"  {domain}: {'branded' if i % 3 == 2 else 'standard'}")
    lines.append(extra_domains)
    path = tmp / "srvd.yaml"
    temporary = tmp / "srvd.yaml.new"
    temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    temporary.replace(path)
    return path


def axfr(port: int, zone: str, source: str = "127.0.0.1", use_key: bool = True) -> dns.zone.Zone:
    """A zone transferred with dnspython (TSIG checked on every message)."""
    z = dns.zone.Zone(zone)
    query, _ = dns.xfr.make_query(z, keyring=keyring() if use_key else None)
    dns.query.inbound_xfr("127.0.0.1", z, query, port=port, timeout=10, source=source)
    return z


def question_answer(port: int, name: str, rdtype: str) -> tuple[int, set[str]]:
    """(rcode, answer RRs as text, order ignored) of one UDP query."""
    q = dns.message.make_query(name, rdtype)
    r = dns.query.udp(q, "127.0.0.1", port=port, timeout=3)
    return r.rcode(), {rr for rrset in r.answer for rr in _each(rrset)}


def _each(rrset: dns.rrset.RRset) -> list[str]:
    return [f"{rrset.name} {rrset.ttl} IN {dns.rdatatype.to_text(rrset.rdtype)} {r}" for r in rrset]


def metric(port: int, name: str, **labels: str) -> float:
    """One sample of srvd's /metrics (0 when absent)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        metric_name, _, rest = key.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if metric_name == name and got == want:
            return float(value)
    return 0.0


def catalog_transfers(port: int) -> float:
    return sum(
        metric(port, "srvd_transfers_total", type=t, zone_kind="catalog")
        for t in ("axfr", "ixfr", "ixfr_full")
    )


def zone_transfers(port: int) -> float:
    return sum(
        metric(port, "srvd_transfers_total", type=t, zone_kind="zone")
        for t in ("axfr", "ixfr", "ixfr_full")
    )


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.05) -> float | None:
    """Seconds until ``check()`` is true, or None after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic() - started
        except (OSError, dns.exception.DNSException):
            pass
        time.sleep(step)
    return None


@dataclass
class Secondary:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def stop(self) -> None:
        stop_process(self.process)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def start_knot(
    knotd: str, tmp: Path, srvd_port: int, port: int, transfer_out: bool = False
) -> Secondary:
    """Knot DNS as a catalog consumer (RFC 9432 ``interpret``) of srvd, TSIG on;
    ``transfer_out``: Knot lets 127.0.0.1 transfer the catalog from it (with the key)."""
    out_acl = (
        f"  - id: transfer-out\n    address: 127.0.0.1\n    key: {KEY_NAME}\n    action: transfer\n"
        if transfer_out
        else ""
    )
    catalog_acl = "[srvd-notify, transfer-out]" if transfer_out else "srvd-notify"
    for sub in ("run", "storage"):
        (tmp / sub).mkdir(exist_ok=True)
    conf = f"""\
server:
    rundir: "{tmp}/run"
    listen: 127.0.0.1@{port}
    tcp-workers: 1
    udp-workers: 1
    background-workers: 1
database:
    storage: "{tmp}/storage"
log:
  - target: "{tmp}/knot.log"
    any: info
key:
  - id: {KEY_NAME}
    algorithm: hmac-sha256
    secret: {SECRET}
remote:
  - id: srvd
    address: 127.0.0.1@{srvd_port}
    key: {KEY_NAME}
acl:
  - id: srvd-notify
    address: 127.0.0.1
    key: {KEY_NAME}
    action: notify
{out_acl}template:
  - id: default
    storage: "{tmp}/storage"
    zonefile-sync: -1
    zonefile-load: none
    journal-content: none
  - id: member
    master: srvd
    acl: srvd-notify
    zonefile-sync: -1
    zonefile-load: none
    journal-content: none
zone:
  - domain: {CATALOG}
    master: srvd
    acl: {catalog_acl}
    catalog-role: interpret
    catalog-template: member
"""
    path = tmp / "knot.conf"
    path.write_text(conf, encoding="utf-8")
    log = tmp / "knot.log"
    log.touch()
    out = (tmp / "knotd.out").open("wb")
    process = subprocess.Popen(
        [knotd, "-c", str(path), "-s", str(tmp / "run" / "knot.sock")], stdout=out, stderr=out
    )
    secondary = Secondary(process, port, log)
    try:
        wait_for_dns(port, timeout=20)
    except TimeoutError:
        secondary.stop()
        raise AssertionError(
            f"knotd did not start:\n{(tmp / 'knotd.out').read_text()}\n{secondary.text()}"
        ) from None
    return secondary


def start_nsd(nsd: str, tmp: Path, srvd_port: int, port: int, zones: Iterable[str]) -> Secondary:
    """NSD as a plain secondary of some zones: AXFR with TSIG, NOTIFY allowed from srvd."""
    for sub in ("zones", "xfr"):
        (tmp / sub).mkdir(exist_ok=True)
    lines = [
        "server:",
        f"  ip-address: 127.0.0.1@{port}",
        "  do-ip6: no",
        '  database: ""',
        f'  zonelistfile: "{tmp}/zone.list"',
        f'  pidfile: "{tmp}/nsd.pid"',
        f'  xfrdfile: "{tmp}/xfrd.state"',
        f'  xfrdir: "{tmp}/xfr"',
        f'  zonesdir: "{tmp}/zones"',
        '  username: ""',
        '  chroot: ""',
        "  server-count: 1",
        "  verbosity: 2",
        f'  logfile: "{tmp}/nsd.log"',
        "remote-control:",
        "  control-enable: no",
        "key:",
        f"  name: {KEY_NAME}",
        "  algorithm: hmac-sha256",
        f'  secret: "{SECRET}"',
    ]
    for zone in zones:
        lines += [
            "zone:",
            f"  name: {zone}",
            f"  request-xfr: AXFR 127.0.0.1@{srvd_port} {KEY_NAME}",
            f"  allow-notify: 127.0.0.1 {KEY_NAME}",
        ]
    path = tmp / "nsd.conf"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log = tmp / "nsd.log"
    log.touch()
    out = (tmp / "nsd.out").open("wb")
    process = subprocess.Popen([nsd, "-d", "-c", str(path)], stdout=out, stderr=out)
    secondary = Secondary(process, port, log)
    try:
        wait_for_dns(port, timeout=20)
    except TimeoutError:
        secondary.stop()
        raise AssertionError(f"nsd did not start:\n{secondary.text()}") from None
    return secondary
