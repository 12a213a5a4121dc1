"""srvd.migrate's pure parts with plain data: records → profile keys, profiles and overrides,
the YAML written (read back by srvd's own configuration reader)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from srvd.cli import main
from srvd.config import load_config
from srvd.migrate.profiles import Assignment, extract, plan
from srvd.migrate.records import Record, SourceZone, parse_tsig
from srvd.migrate.yamltext import domains_file, main_file, scalar
from srvd.migrate.zones import domain_of_file, read_file
from srvd.wire.discovery import SRV, TXT

D = "example.com"


def srv(owner: str, *rows: tuple[int, int, int, str], ttl: int = 3600) -> list[Record]:
    return [Record(owner, "SRV", ttl, row) for row in rows]


def txt(owner: str, *texts: bytes | tuple[bytes, ...], ttl: int = 3600) -> list[Record]:
    return [Record(owner, "TXT", ttl, t if isinstance(t, tuple) else (t,)) for t in texts]


def zone(domain: str, *groups: list[Record]) -> SourceZone:
    return SourceZone(domain, tuple(r for group in groups for r in group))


def standard(d: str) -> SourceZone:
    return zone(
        d,
        srv(f"_imaps._tcp.{d}", (0, 10, 993, "imap1.provider.example"), (0, 5, 993, f"mail.{d}")),
        srv(f"_imap._tcp.{d}", (0, 0, 0, ".")),
        srv(f"_caldavs._tcp.{d}", (0, 1, 443, "dav.provider.example")),
        txt(f"_caldavs._tcp.{d}", b"path=/dav/"),
        srv(f"_xmpp-client._tcp.{d}", (5, 1, 5222, "xmpp.provider.example")),
        txt(f"_axigen.{d}", f"webmail.{d}:443".encode()),
        txt(f"_info._tcp.{d}", f"for {d}".encode(), b"second"),
        [
            Record(d, "MX", 3600, "10 mx.provider.example."),
            Record(f"www.{d}", "A", 3600, "1.2.3.4"),
        ],
        txt(f"_dmarc.{d}", b"v=DMARC1"),  # not below a subzone srvd takes over: left alone
    )


def test_extract_maps_records_to_profile_keys() -> None:
    got = extract(standard(D))
    assert got.notes == []
    assert got.entries == {
        "imaps": (((0, 5, 993, "mail.{domain}"), (0, 10, 993, "imap1.provider.example")), None),
        "imap": (((0, 0, 0, "."),), None),
        "caldavs": (((0, 1, 443, "dav.provider.example"),), "/dav/"),
        "srv _xmpp-client._tcp": (((5, 1, 5222, "xmpp.provider.example"),), None),
        "axigen": "webmail.{domain}:443",
        "txt _info._tcp": ("for {domain}", "second"),
    }


def test_extract_notes_what_srvd_cannot_serve() -> None:
    got = extract(
        zone(
            D,
            [Record(f"_autodiscover._tcp.{D}", "CNAME", 3600, "x.example.")],
            [Record(f"_25._tcp.{D}", "TLSA", 3600, "3 1 1 abcd")],
            srv(f"_pop3._tcp.{D}", (0, 0, 0, "."), (0, 1, 110, "pop.example")),
            srv(f"_imap._tcp.{D}", (0, 1, 143, "under_score.example")),
            txt(f"*._tcp.{D}", b"x"),
            txt(f"_x._tcp.{D}", b"\xff"),
            txt(f"_y._tcp.{D}", b"{domain}"),
            [Record(f"_udp.{D}", "NS", 3600, "ns.elsewhere.example.")],
            srv(f"_sip._udp.{D}", (0, 1, 5060, "sip.example")),  # below the cut: not read
            txt(f"_axigen.{D}", b"https://webmail.example/"),  # no axigen form: a txt key
        )
    )
    notes = "\n".join(got.notes)
    for owner in ("_autodiscover._tcp", "_25._tcp", "_pop3._tcp", "_imap._tcp", "*._tcp",
                  "_x._tcp", "_y._tcp", "_udp"):  # fmt: skip
        assert f"{owner}.{D}" in notes, owner
    assert got.entries == {"txt _axigen": ("https://webmail.example/",)}


def test_domain_in_texts_is_templated_only_as_a_whole_name() -> None:
    got = extract(
        zone(D, txt(f"_t._tcp.{D}", b"mx.example.com, example.community, myexample.com."))
    )
    assert got.entries["txt _t._tcp"] == ("mx.{domain}, example.community, myexample.com.",)


def test_path_txt_beside_other_txt_stays_txt() -> None:
    got = extract(
        zone(
            D,
            srv(f"_carddav._tcp.{D}", (0, 1, 80, "dav.example")),
            txt(f"_carddav._tcp.{D}", b"path=/card/", b"other"),
        )
    )
    assert got.entries["carddav"] == (((0, 1, 80, "dav.example"),), None)
    assert got.entries["txt _carddav._tcp"] == ("other", "path=/card/")


def test_plan_shares_profiles_and_overrides_near_matches() -> None:
    zones = [standard(f"c{i}.example") for i in range(20)]
    other = zone(
        "o1.example", srv("_submissions._tcp.o1.example", (0, 1, 465, "smtp.other.example"))
    )
    other2 = zone(
        "o2.example", srv("_submissions._tcp.o2.example", (0, 1, 465, "smtp.other.example"))
    )
    near = standard("near.example")
    near = SourceZone(
        near.domain, tuple(r for r in near.records if not r.owner.startswith("_imap._tcp"))
    )
    alone = zone("alone.example", srv("_jmap._tcp.alone.example", (0, 1, 443, "jmap.x.example")))
    result = plan([extract(z) for z in [*zones, other, other2, near, alone]])
    assert list(result.profiles) == ["provider-example", "other-example"]
    assert result.members == {"provider-example": 21, "other-example": 2}
    assert result.domains["near.example"] == Assignment("provider-example", (("imap", None),))
    assert result.domains["alone.example"].profile is None
    assert result.inline == 1 and result.overridden == 1


def test_plan_names_are_unique_and_stable() -> None:
    def pair(port: int, prefix: str) -> list[SourceZone]:
        return [
            zone(
                f"{prefix}{i}.example",
                srv(f"_imaps._tcp.{prefix}{i}.example", (0, 1, port, "imap.p.example")),
            )
            for i in range(3)
        ]

    first = plan([extract(z) for z in pair(993, "a") + pair(994, "b")])
    again = plan([extract(z) for z in reversed(pair(993, "a") + pair(994, "b"))])
    assert list(first.profiles) == ["p-example", "p-example-2"]
    assert first.profiles == again.profiles and first.domains == again.domains


def test_odd_ttl_is_noted_and_zone_ttl_is_the_common_one() -> None:
    zones = [standard(f"c{i}.example") for i in range(3)]
    odd = zone("odd.example", srv("_imaps._tcp.odd.example", (0, 1, 993, "i.example"), ttl=60))
    result = plan([extract(z) for z in [*zones, odd]])
    assert result.ttl == 3600
    assert result.notes["odd.example"] == [
        "_imaps._tcp.odd.example SRV: TTL 60, served with zone.ttl 3600"
    ]


@given(st.text(max_size=40))
def test_scalar_reads_back_as_the_same_string(text: str) -> None:
    assert yaml.safe_load(f"key: {scalar(text)}") == {"key": text}
    assert yaml.safe_load(f"key: {{a: {scalar(text)}}}") == {"key": {"a": text}}


def test_written_yaml_is_what_srvd_reads(tmp_path: Path) -> None:
    zones = [standard(f"c{i}.example") for i in range(3)] + [
        zone(
            "q.example",
            txt("_q._tcp.q.example", b'quote " back \\ yes: #x', "ümlaut".encode()),
        )
    ]
    result = plan([extract(z) for z in zones])
    (tmp_path / "srvd.yaml").write_text(
        main_file(result, ["ns1.example.net", "ns2.example.net"], None, "domains.yaml", ["x"])
    )
    (tmp_path / "domains.yaml").write_text(domains_file(result))
    config = load_config(tmp_path / "srvd.yaml")
    entries = config.entries_of("c1.example")
    imaps = entries["imaps"]
    assert imaps is not None and imaps[0].rtype == SRV
    assert {r.target for r in imaps[0].srv} == {"mail.{domain}", "imap1.provider.example"}
    caldavs = entries["caldavs"]
    assert caldavs is not None and [s.rtype for s in caldavs] == [SRV, TXT]
    assert caldavs[1].txt == ("path=/dav/",)
    assert entries["axigen"] is not None and entries["axigen"][0].txt == ("webmail.{domain}:443",)
    q = config.entries_of("q.example")["txt _q._tcp"]
    assert q is not None and set(q[0].txt) == {'quote " back \\ yes: #x', "ümlaut"}


def test_file_names_and_tsig() -> None:
    assert domain_of_file("Example.COM.zone") == "example.com"
    assert domain_of_file("example.org") == "example.org"
    assert domain_of_file("bücher.example.db") == "xn--bcher-kva.example"
    assert domain_of_file(".hidden") is None and domain_of_file("x.zone~") is None
    key = parse_tsig("k:HMAC-SHA256:c2VjcmV0")
    assert (key.name, key.algorithm, key.secret) == ("k", "hmac-sha256", b"secret")


def test_read_file_relative_names_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "example.com"
    path.write_text(
        "$TTL 300\n@ IN SOA ns. h. 1 2 3 4 5\n_imaps._TCP IN SRV 0 1 993 Mail\n"
        '_axigen 60 IN TXT "a" "b"\n'
    )
    got = read_file(str(path), "example.com")
    assert got.error is None
    assert (
        Record("_imaps._tcp.example.com", "SRV", 300, (0, 1, 993, "mail.example.com"))
        in got.records
    )
    assert Record("_axigen.example.com", "TXT", 60, (b"a", b"b")) in got.records
    (tmp_path / "bad.example").write_text("@ IN SRV nonsense\n")
    bad = read_file(str(tmp_path / "bad.example"), "bad.example")
    assert bad.error is not None and "bad.example" in bad.error


def test_import_command_reports_what_it_could_not_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    body = "$TTL 600\n@ IN SOA ns. h. 1 2 3 4 5\n_imaps._tcp IN SRV 0 1 993 imap.p.example.\n"
    for name in ("a.example", "b.example.zone"):
        (zones / name).write_text(body)
    (zones / "c.example").write_text("$TTL 600\n@ IN SOA ns. h. 1 2 3 4 5\nwww IN A 192.0.2.1\n")
    (zones / "broken.example").write_text("_imaps._tcp IN SRV 0 1\n")
    (zones / "not a domain!").write_text(body)
    out = tmp_path / "out"
    status = main(
        ["import", "--zones", str(zones), "--nameservers", "ns1.p.example,ns2.p.example",
         "-o", str(out), "--ttl", "300", "--hostmaster", "dns@p.example", "--jobs", "1"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert status == 1  # a file could not be read: said, and the others written
    config = load_config(out / "srvd.yaml")
    assert sorted(config.domains) == ["a.example", "b.example"]
    assert config.zone.ttl == 300 and config.zone.hostmaster == "dns@p.example"
    assert list(config.profiles) == ["p-example"]
    report = (out / "import-report.txt").read_text()
    assert report == printed.split("wrote ")[0]
    assert "without discovery records (not in the configuration):\n  c.example\n" in report
    assert "broken.example" in report and "not a domain!: not named after a domain" in report
    assert "_imaps._tcp.a.example SRV: TTL 600, served with zone.ttl 300" in report


def test_import_arguments_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["import", "--zones", "x", "--nameservers", "bad_name", "-o", "y"])
    assert "not a valid host name" in capsys.readouterr().err
    status = main(["import", "--axfr-from", "127.0.0.1", "--nameservers", "ns.example", "-o", "y"])
    assert status == 2 and "--zone-list" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["import", "--axfr-from", "127.0.0.1", "--zone-list", "l", "--tsig", "k:md4:x",
              "--nameservers", "ns.example", "-o", "y"])  # fmt: skip
    assert "unknown TSIG algorithm" in capsys.readouterr().err
