"""srvd.server.loading: a configuration loaded in a build process gives the index that
build_index gives, serials and changes as the running index has them decided."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from srvd.config import ConfigError, load_config
from srvd.http.pacc import deriver
from srvd.index.build import build_index
from srvd.index.model import Index
from srvd.index.serials import SerialState
from srvd.server.loading import Built, load_aside
from srvd.server.reload import compare

from conftest import EXAMPLE

HEAD = """zone:
  nameservers: [ns1.example.net]
profiles:
  p: {imaps: {target: imap1.example.net, port: 993}, axigen: webmail.example.net}
  q: {imaps: {target: imap2.example.net, port: 993}}
  r: {axigen: other.example.net}
  s: {srv: {_sip._udp: {target: sip.example.net, port: 5060}}, pop3: off}
  none: {}
domains:
"""


def zones_of(index: Index) -> dict[bytes, tuple[int, bytes, int]]:
    return {
        apex: (zone.serial, zone.table.digest, zone.table.records)
        for apex, zone in index.zones.items()
    }


def test_a_start_builds_what_build_index_builds() -> None:
    built = load_aside(str(EXAMPLE))
    config = load_config(EXAMPLE)
    index = build_index(config, SerialState(None).source(None, config.mtime), deriver(config.http))
    assert zones_of(built.index) == zones_of(index)
    assert built.index.stats == index.stats
    assert built.config.source == config.source and built.config.sha256 == config.sha256
    assert built.config.domains == {} and built.config.profiles == {}
    assert built.changes.counts == (3, 0, 0)


def write(path: Path, domains: dict[str, str], mtime: int) -> None:
    path.write_text(HEAD + "".join(f"  {d}: {v}\n" for d, v in domains.items()))
    os.utime(path, (mtime, mtime))


def test_reloads_decide_serials_and_changes_as_the_running_index_has_them(
    tmp_path: Path,
) -> None:
    rng = random.Random(3)

    def value() -> str:
        profile = rng.choice(["p", "q", "r", "s", "none"])
        if rng.random() < 0.7:
            return profile
        host = rng.choice(["a", "b"])
        return f"{{profile: {profile}, imaps: {{target: {host}.example.net, port: 993}}}}"

    path = tmp_path / "srvd.yaml"
    domains = {f"d{i}.example": value() for i in range(60)}
    mtime = 1_700_000_000
    write(path, domains, mtime)
    built = load_aside(str(path))
    reference = build_index(load_config(path), SerialState(None).source(None, mtime))
    assert zones_of(built.index) == zones_of(reference)
    for _ in range(12):
        for _ in range(rng.choice([0, 1, 4, 30])):
            name = f"d{rng.randrange(80)}.example"
            if rng.random() < 0.3:
                domains.pop(name, None)
            else:
                domains[name] = value()
        mtime += rng.choice([0, 5])
        write(path, domains, mtime)
        new = load_aside(str(path), built.index.zones, built.tables, built.labels)
        expected = build_index(load_config(path), SerialState(None).source(reference, mtime))
        assert zones_of(new.index) == zones_of(expected)
        assert new.index.stats == expected.stats
        changes, want = new.changes, compare(built.index, new.index)
        assert (changes.counts, changes.names) == (want.counts, want.names)
        assert changes.zones is not None and want.zones is not None
        assert changes.zones.added == want.zones.added
        assert changes.zones.removed == want.zones.removed
        assert sorted(changes.zones.changed) == sorted(want.zones.changed)
        built, reference = new, expected


def test_unchanged_zones_keep_their_key_objects_and_tables(tmp_path: Path) -> None:
    path = tmp_path / "srvd.yaml"
    write(path, {"a.example": "p", "b.example": "q"}, 1_700_000_000)
    first = load_aside(str(path))
    write(path, {"a.example": "p", "b.example": "q", "c.example": "p"}, 1_700_000_100)
    second = load_aside(str(path), first.index.zones, first.tables, first.labels)
    old_keys = {key: key for key in first.index.zones}
    for key, zone in second.index.zones.items():
        if key in old_keys:
            assert key is old_keys[key]
            assert zone.table is first.index.zones[key].table
            assert zone.serial == first.index.zones[key].serial
        else:
            assert zone.serial == 1_700_000_100
    assert second.changes.describe() == "1 domain added (c.example)"


def test_problems_come_back_as_load_config_reports_them(tmp_path: Path) -> None:
    path = tmp_path / "srvd.yaml"
    path.write_text(HEAD + "  a.example: p\n  b.example: nope\n  a.example: q\n")
    with pytest.raises(ConfigError) as expected:
        load_config(path)
    with pytest.raises(ConfigError) as got:
        load_aside(str(path))
    assert [p.render() for p in got.value.problems] == [p.render() for p in expected.value.problems]


def test_domains_sent_before_the_exact_reader_took_over_are_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "srvd.yaml"
    # limits after the domains they bound: the streaming reader gives up after the domains
    path.write_text(HEAD + "  a.example: p\n  b.example: q\nlimits: {max_domains: 5}\n")
    built = load_aside(str(path))
    assert built.index.stats.domains == 2
    assert sorted(built.index.zones) == sorted(build_index(load_config(path)).zones)


def test_a_start_takes_the_serials_from_the_state_file(tmp_path: Path) -> None:
    path = tmp_path / "srvd.yaml"
    text = HEAD.replace("domains:\n", "state_dir: state\ndomains:\n")
    path.write_text(text + "  a.example: p\n  b.example: q\n")
    os.utime(path, (1_700_000_000, 1_700_000_000))
    first: Built = load_aside(str(path))
    SerialState(first.config.state_dir).write(first.index)
    path.write_text(text + "  a.example: p\n  b.example: p\n")
    os.utime(path, (1_700_000_500, 1_700_000_500))
    second = load_aside(str(path))  # a start: no running index, the state file instead
    serials = {apex: zone.serial for apex, zone in second.index.zones.items()}
    assert serials == {
        b"\x04_tcp\x01a\x07example\x00": 1_700_000_000,
        b"\x07_axigen\x01a\x07example\x00": 1_700_000_000,
        b"\x04_tcp\x01b\x07example\x00": 1_700_000_500,
        b"\x07_axigen\x01b\x07example\x00": 1_700_000_500,
    }
