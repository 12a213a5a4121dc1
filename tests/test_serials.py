"""SOA serials: unchanged zones keep theirs, changed zones grow (RFC 1982), across restarts too."""

from __future__ import annotations

from pathlib import Path

from srvd.config import load_config
from srvd.index.build import build_index
from srvd.index.model import Index
from srvd.index.serials import SerialState, next_serial, serial_source
from srvd.wire.names import to_wire

CONFIG = """
zone:
  nameservers: [ns1.example.net]
  hostmaster: hostmaster@example.net
state_dir: state
profiles:
  standard:
    imaps: {{target: imap.example.net, port: 993}}
    axigen: {axigen}
domains:
  a.example: standard
  b.example: standard
{extra}
"""


def _index(
    tmp_path: Path, now: float, axigen: str = "webmail.example.net", extra: str = ""
) -> Index:
    path = tmp_path / "srvd.yaml"
    path.write_text(CONFIG.format(axigen=axigen, extra=extra))
    config = load_config(path)
    state = SerialState(config.state_dir, clock=lambda: now)
    index = build_index(config, state.source(None))
    state.write(index)
    return index


def _serial(index: Index, apex: str) -> int:
    zone = index.zones[to_wire(apex)]
    return zone.serial


def test_next_serial_prefers_the_clock_and_wraps_by_rfc1982() -> None:
    assert next_serial(100, 200) == 200
    assert next_serial(200, 200) == 201  # the clock did not move: old + 1
    assert next_serial(300, 200) == 301  # the clock went back
    assert next_serial(0xFFFFFFFF, 5) == 5  # 5 is after 2^32-1 in serial arithmetic
    assert next_serial(0xFFFFFFFF, 0xFFFFFFFF) == 0  # wraps


def test_serial_source_keeps_unchanged_and_grows_changed() -> None:
    known = {b"a": (1000, b"x"), b"b": (1000, b"y")}
    serial_of = serial_source(known.get, 5000)
    assert serial_of(b"a", b"x") == 1000
    assert serial_of(b"b", b"changed") == 5000
    assert serial_of(b"new", b"z") == 5000


def test_serials_survive_a_restart_through_the_state_file(tmp_path: Path) -> None:
    first = _index(tmp_path, now=1_700_000_000)
    assert _serial(first, "_tcp.a.example") == 1_700_000_000
    assert (tmp_path / "state" / "serials").exists()

    # restart later with the same content: every serial is kept
    again = _index(tmp_path, now=1_700_000_500)
    assert _serial(again, "_tcp.a.example") == 1_700_000_000
    assert _serial(again, "_axigen.b.example") == 1_700_000_000

    # restart with the axigen host changed: only the _axigen zones get a larger serial
    changed = _index(tmp_path, now=1_700_001_000, axigen="mail.example.net")
    assert _serial(changed, "_tcp.a.example") == 1_700_000_000
    assert _serial(changed, "_axigen.a.example") == 1_700_001_000
    assert _serial(changed, "_axigen.b.example") == 1_700_001_000

    # a clock that went backwards still moves a changed zone forward
    back = _index(tmp_path, now=1_600_000_000, axigen="other.example.net")
    assert _serial(back, "_axigen.a.example") == 1_700_001_001

    # a new domain starts at the clock
    grown = _index(
        tmp_path, now=1_700_002_000, axigen="other.example.net", extra="  c.example: standard"
    )
    assert _serial(grown, "_tcp.c.example") == 1_700_002_000
    assert _serial(grown, "_tcp.a.example") == 1_700_000_000


def test_zones_with_the_same_table_and_serial_share_one_zone_object(tmp_path: Path) -> None:
    index = _index(tmp_path, now=1_700_000_000)
    a = index.zones[to_wire("_tcp.a.example")]
    b = index.zones[to_wire("_tcp.b.example")]
    assert a is b  # property 4: domains on one profile share their answer pieces


def test_a_corrupt_state_file_is_ignored_line_by_line(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "serials").write_text(
        "garbage\n_tcp.a.example notanumber 00\n_tcp.b.example 5 zz\n"
    )
    index = _index(tmp_path, now=1_700_000_000)
    assert _serial(index, "_tcp.a.example") == 1_700_000_000
