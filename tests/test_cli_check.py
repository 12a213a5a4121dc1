"""``srvd check`` and ``srvd zone`` as subprocesses (``python -m srvd``), zones checked by NSD."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from textwrap import dedent

import pytest

from conftest import EXAMPLE, require_tool

GOOD = """\
listen: ['127.0.0.1:5353', '[::1]:5353']
zone:
  ttl: 600
  nameservers: [ns1.discovery.example.net, ns2.discovery.example.net]
  hostmaster: john.doe@example.net
profiles:
  mail:
    imaps: {target: imap.example.net, port: 993}
    submission: off
    axigen: webmail.example.net
  branded:
    imaps:
      - {target: "mail.{domain}", port: 993, priority: 10, weight: 5}
      - {target: "backup.example.net.", port: 993, priority: 20}
    txt:
      _imaps._tcp: "served for {domain}"
domains:
  Example.COM.: mail
  bücher.example: branded
  empty.example:
    imaps: null
include: [conf.d/*.json, conf.d/*.yaml]
"""

MORE_JSON = """\
{
  "domains": {
    "example.org": {
      "profile": "mail",
      "caldavs": {"target": "dav.example.org", "port": 443, "path": "/dav/"}
    }
  }
}
"""

BAD = """\
zone:
  nameservers: [ns1.example.net]
profiles:
  p:
    imaps: {target: imap.example.net, port: 70000}
    submision: off
domains:
  example.com: p
  example.org: q
include: [broken.yaml]
"""

BROKEN = """\
domains:
  a.example: p
   b.example: p
"""

# SOA serials follow the clock; everything else in a zone is fixed.
SERIAL = re.compile(r"(\tSOA\t\S+ \S+ )\d+ ")


def srvd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "srvd", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "srvd.yaml"
    path.write_text(GOOD, encoding="utf-8")
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "more.json").write_text(MORE_JSON, encoding="utf-8")
    return path


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD, encoding="utf-8")
    (tmp_path / "broken.yaml").write_text(BROKEN, encoding="utf-8")
    return path


def zones_of(output: str) -> dict[str, str]:
    """The master-file text printed by ``srvd zone``, per origin (with its trailing dot)."""
    zones: dict[str, str] = {}
    for block in re.split(r"\n(?=\$ORIGIN )", output.strip()):
        first, _, _ = block.partition("\n")
        assert first.startswith("$ORIGIN "), output
        zones[first.split()[1]] = block.strip() + "\n"
    return zones


def without_serials(text: str) -> str:
    return SERIAL.sub(r"\g<1>SERIAL ", text)


# ---------------------------------------------------------------------------------------------
# srvd check


def test_check_good_config(good: Path) -> None:
    result = srvd("check", "-c", str(good))
    # conf.d/*.yaml matches nothing, but conf.d/*.json does: no warning for it
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    # zones: example.com (_axigen, _tcp), bücher.example (_tcp), example.org (_axigen, _tcp);
    # records: each zone's SOA and 2 NS, plus 2+1, 3, 1+4 of its own.
    assert result.stdout == (
        f"{good}: OK: 4 domains, 5 zones, 26 records, 2 profiles, from 2 files\n"
    )


def test_check_bundled_example() -> None:
    result = srvd("check", "-c", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        rf"{re.escape(str(EXAMPLE))}: OK: 3 domains, 9 zones, 64 records, 2 profiles, "
        r"from 1 file\n",
        result.stdout,
    ), result.stdout


def test_check_bad_config(bad: Path, tmp_path: Path) -> None:
    result = srvd("check", "-c", str(bad))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr
    assert lines[-1] == f"{bad}: 4 problems found"
    problems = lines[:-1]
    expected = {
        f"{bad}:5: profiles.p.imaps.port: 70000 is out of range (0-65535)",
        f"{bad}:6: profiles.p.submision: unknown key (did you mean 'submission'?)",
        f"{bad}:9: domains.example.org: unknown profile 'q'",
    }
    assert expected <= set(problems), result.stderr
    [syntax] = [line for line in problems if line not in expected]
    assert syntax.startswith(f"{tmp_path / 'broken.yaml'}:3: YAML: "), syntax
    # every problem line is `file:line: [key: ]message`
    for line in problems:
        assert re.fullmatch(r"/[^:]+:\d+: \S.*", line), line


def test_check_relative_path_names_files_in_full(bad: Path, tmp_path: Path) -> None:
    result = srvd("check", "-c", bad.name, cwd=tmp_path)
    assert result.returncode == 1
    assert f"{bad}:5: profiles.p.imaps.port: " in result.stderr
    assert result.stderr.splitlines()[-1] == "bad.yaml: 4 problems found"


def test_check_one_problem_is_singular(tmp_path: Path) -> None:
    path = tmp_path / "srvd.yaml"
    path.write_text("zone:\n  nameservers: [ns1.example.net]\nlisne: []\n", encoding="utf-8")
    result = srvd("check", "-c", str(path))
    assert result.returncode == 1
    assert result.stderr == (
        f"{path}:3: lisne: unknown key (did you mean 'listen'?)\n{path}: 1 problem found\n"
    )


def test_check_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nothing.yaml"
    result = srvd("check", "-c", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith(f"{path}: cannot read: "), result.stderr


def test_check_never_shows_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "srvd.yaml"
    path.write_text(
        dedent(
            """\
            zone:
              nameservers: [ns1.example.net]
            profiles:
              standard: {}
            domains:
              example.com:
                profile: [standard]
            """
        ),
        encoding="utf-8",
    )
    result = srvd("check", "-c", str(path))
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1
    assert result.stderr.startswith(f"{path}:7: domains.example.com.profile: "), result.stderr


# ---------------------------------------------------------------------------------------------
# srvd zone


def test_zone_prints_the_zones_of_a_domain(good: Path) -> None:
    result = srvd("zone", "example.com", "-c", str(good))
    assert (result.returncode, result.stderr) == (0, "")
    soa = "ns1.discovery.example.net. john\\.doe.example.net. SERIAL 3600 600 1209600 300"
    ns = [f"\t600\tIN\tNS\tns{i}.discovery.example.net." for i in (1, 2)]
    assert without_serials(result.stdout) == "\n".join(
        [
            "$ORIGIN _axigen.example.com.",
            f"_axigen.example.com.\t600\tIN\tSOA\t{soa}",
            *(f"_axigen.example.com.{line}" for line in ns),
            '_axigen.example.com.\t600\tIN\tTXT\t"webmail.example.net"',
            "",
            "$ORIGIN _tcp.example.com.",
            f"_tcp.example.com.\t600\tIN\tSOA\t{soa}",
            *(f"_tcp.example.com.{line}" for line in ns),
            "_imaps._tcp.example.com.\t600\tIN\tSRV\t0 0 993 imap.example.net.",
            "_submission._tcp.example.com.\t600\tIN\tSRV\t0 0 0 .",
            "",
        ]
    )


def test_zone_of_a_unicode_templated_domain(good: Path) -> None:
    result = srvd("zone", "BÜCHER.example.", "-c", str(good))
    assert result.returncode == 0, result.stderr
    zones = zones_of(result.stdout)
    assert list(zones) == ["_tcp.xn--bcher-kva.example."]
    lines = zones["_tcp.xn--bcher-kva.example."].splitlines()
    assert lines[4:] == [
        "_imaps._tcp.xn--bcher-kva.example.\t600\tIN\tSRV\t10 5 993 mail.xn--bcher-kva.example.",
        "_imaps._tcp.xn--bcher-kva.example.\t600\tIN\tSRV\t20 0 993 backup.example.net.",
        '_imaps._tcp.xn--bcher-kva.example.\t600\tIN\tTXT\t"served for xn--bcher-kva.example"',
    ]


def test_zone_of_a_domain_from_a_json_include(good: Path) -> None:
    result = srvd("zone", "example.org", "-c", str(good))
    assert result.returncode == 0, result.stderr
    zones = zones_of(result.stdout)
    assert list(zones) == ["_axigen.example.org.", "_tcp.example.org."]
    path_txt = '_caldavs._tcp.example.org.\t600\tIN\tTXT\t"path=/dav/"\n'
    assert path_txt in zones["_tcp.example.org."]


def test_zone_of_a_domain_without_records(good: Path) -> None:
    result = srvd("zone", "empty.example", "-c", str(good))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("; empty.example: ")
    assert "$ORIGIN" not in result.stdout


def test_zone_of_an_unknown_domain(good: Path) -> None:
    result = srvd("zone", "Nope.Example", "-c", str(good))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"srvd zone: nope.example is not a configured domain in {good}\n"


def test_zone_of_an_invalid_name(good: Path) -> None:
    result = srvd("zone", "bad_name.example", "-c", str(good))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "is not a valid host name" in result.stderr


def test_zone_with_a_bad_config(bad: Path) -> None:
    result = srvd("zone", "example.com", "-c", str(bad))
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"{bad}:5: profiles.p.imaps.port: " in result.stderr


@pytest.mark.parametrize(
    ("config", "domain", "origins"),
    [
        ("good", "example.com", ["_axigen.example.com.", "_tcp.example.com."]),
        ("good", "bücher.example", ["_tcp.xn--bcher-kva.example."]),
        ("good", "example.org", ["_axigen.example.org.", "_tcp.example.org."]),
        (
            "example",
            "example.com",
            ["_axigen.example.com.", "_tcp.example.com.", "_ua-auto-config.example.com."],
        ),
        (
            "example",
            "example.org",
            ["_axigen.example.org.", "_tcp.example.org.", "_ua-auto-config.example.org."],
        ),
        (
            "example",
            "shop.example",
            ["_axigen.shop.example.", "_tcp.shop.example.", "_ua-auto-config.shop.example."],
        ),
    ],
)
def test_zones_pass_nsd_checkzone(
    config: str, domain: str, origins: list[str], good: Path, tmp_path: Path
) -> None:
    checkzone = require_tool("nsd-checkzone")
    path = good if config == "good" else EXAMPLE
    result = srvd("zone", domain, "-c", str(path))
    assert result.returncode == 0, result.stderr
    zones = zones_of(result.stdout)
    assert list(zones) == origins
    for origin, text in zones.items():
        file = tmp_path / f"{origin}zone"
        file.write_text(text, encoding="ascii")
        check = subprocess.run(
            [checkzone, origin, str(file)], capture_output=True, text=True, timeout=60, check=False
        )
        assert check.returncode == 0, f"{origin}:\n{check.stdout}{check.stderr}\n{text}"
        assert f"zone {origin} is ok" in check.stdout


# ---------------------------------------------------------------------------------------------
# srvd check: what it refuses and what it warns about (issue 15)

PLAIN_HEAD = """\
zone:
  nameservers: [ns1.example.net, ns2.example.net]
profiles:
  p:
    imaps: {target: imap.example.net, port: 993}
"""


TARGET = "profiles.q.imaps.target"


@pytest.mark.parametrize(
    ("key", "text", "where"),
    [
        ("profiles", "{q: {imaps: {target: 192.0.2.10, port: 993}}}", TARGET),
        (
            "profiles",
            "{q: {imaps: {target: '2001:db8::10', port: 993}}}",
            "profiles.q.imaps.target",
        ),
        (
            "profiles",
            "{q: {imaps: {target: '[2001:db8::10]', port: 993}}}",
            "profiles.q.imaps.target",
        ),
        ("profiles", "{q: {axigen: '192.0.2.80:8080'}}", "profiles.q.axigen"),
        ("zone", "{nameservers: [192.0.2.53, ns2.example.net]}", "zone.nameservers[0]"),
        ("zone", "{nameservers: ['2001:db8::53']}", "zone.nameservers[0]"),
        ("zone", "{nameservers: [ns1.example.net], hostmaster: root@192.0.2.1}", "zone.hostmaster"),
        ("domains", "{192.0.2.1: q}", "domains.192.0.2.1"),
        ("domains", "{host.123: q}", "domains.host.123"),
    ],
)
def test_check_refuses_ip_literals_where_names_belong(
    tmp_path: Path, key: str, text: str, where: str
) -> None:
    """v4 and v6 alike: 192.0.2.10 was served as SRV 0 0 993 192.0.2.10., NS 192.0.2.53."""
    parts = {
        "zone": "{nameservers: [ns1.example.net, ns2.example.net]}",
        "profiles": "{q: {imaps: {target: imap.example.net, port: 993}}}",
        "domains": "{a.example: q}",
        key: text,
    }
    path = tmp_path / "srvd.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in parts.items()))
    result = srvd("check", "-c", str(path))
    assert result.returncode == 1, result.stdout
    assert f"{where}:" in result.stderr and "IP address" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("domain", "message"),
    [
        ("com", "'com' is a top-level domain, not a customer domain"),
        ("localhost", "'localhost' is a top-level domain"),
        ("mail.localhost", "localhost names are never delegated"),
    ],
)
def test_check_refuses_tlds_and_localhost(tmp_path: Path, domain: str, message: str) -> None:
    path = tmp_path / "srvd.yaml"
    path.write_text(PLAIN_HEAD + f"domains:\n  ok.example: p\n  {domain}: p\n")
    result = srvd("check", "-c", str(path))
    assert result.returncode == 1
    assert f"srvd.yaml:8: domains.{domain}: " in result.stderr and message in result.stderr


def test_check_warns_and_strict_fails(tmp_path: Path) -> None:
    big = "\n".join(
        f"      - {{target: server-{i:02d}.{'x' * 50}.example.net, port: 993, weight: {i}}}"
        for i in range(20)
    )
    path = tmp_path / "srvd.yaml"
    path.write_text(
        dedent(
            """\
            zone:
              nameservers: [ns1.example.net]
            profiles:
              short:
                imaps: {target: mail, port: 993}
                axigen: webmail
              nothing:
                imaps: null
              big:
                imaps:
            """
        )
        + big
        + "\n"
        + dedent(
            """\
            domains:
              a.example: short
              b.example: nothing
              long-customer-name.example: big
              c.example: {profile: short, submission: {target: smtp, port: 587}}
            include: [missing.d/*.yaml]
            """
        )
    )
    result = srvd("check", "-c", str(path))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    expected = [
        f"{path}:2: zone.nameservers: warning: a lone name server",
        f"{path}:5: profiles.short.imaps: warning: 'mail' is a single label: published as 'mail.'",
        f"{path}:6: profiles.short.axigen: warning: 'webmail' is a single label",
        f"{path}:7: profiles.nothing: warning: publishes nothing",
        f"{path}:10: profiles.big.imaps: warning: the SRV reply for "
        "_imaps._tcp.long-customer-name.example is 1",
        f"{path}:36: include[0]: warning: 'missing.d/*.yaml' matches no file",
        f"{path}:35: domains.c.example.submission: warning: 'smtp' is a single label",
    ]
    assert len(lines) == len(expected), result.stderr
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start), (line, start)
    assert "over the EDNS payload of 1232" in result.stderr
    assert "OK with 7 warnings: 4 domains" in result.stdout

    strict = srvd("check", "--strict", "-c", str(path))
    assert strict.returncode == 1 and "FAILED (--strict) with 7 warnings" in strict.stdout


def test_check_counts_in_the_singular(tmp_path: Path) -> None:
    path = tmp_path / "srvd.yaml"
    path.write_text(
        "zone: {nameservers: [ns1.example.net, ns2.example.net]}\n"
        "profiles: {p: {axigen: webmail.example.net}}\ndomains: {a.example: p}\n"
        "listen: [127.0.0.1:5353]\n"
    )
    result = srvd("check", "-c", str(path))
    assert result.stdout == f"{path}: OK: 1 domain, 1 zone, 4 records, 1 profile, from 1 file\n"
    assert "listening" not in result.stdout + result.stderr
