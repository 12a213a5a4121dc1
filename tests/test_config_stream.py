"""srvd.config's streaming reader: it reads what the exact reader reads, or gives up.

Every valid configuration here is read both ways and must give the same Config, domains in the
same order; every invalid one must make the streaming reader give up (the exact reader then
reports it: tests/test_config.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from textwrap import dedent
from typing import cast

import pytest

from srvd.config import Config, ConfigError, load_config
from srvd.config.load import DomainSink, Entry, _Collect, _exact, _Fallback, _Streamer, read_config
from srvd.config.model import Profile, ZoneSettings

ZONE = "zone:\n  nameservers: [ns1.example.net]\n"
PROFILES = (
    "profiles:\n"
    "  p: {imaps: {target: imap.example.net, port: 993}}\n"
    "  q: {imaps: {target: 'mail.{domain}', port: 993}, pop3: off}\n"
)


def write(tmp_path: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (tmp_path / name).write_text(dedent(text), encoding="utf-8")
    return str(tmp_path / "srvd.yaml")


def streamed(main: str) -> Config:
    sink = _Collect()
    config = _Streamer(main, sink).read()
    assert None not in sink.domains.values()
    return replace(config, domains=cast(dict[str, Entry], sink.domains))


VALID = {
    "plain": {
        "srvd.yaml": ZONE
        + PROFILES
        + "domains:\n  a.example: p\n  b.example: {profile: q, imaps: null}\n"
        + "  'C.Example.': p\n  d.example: {imaps: [{target: x.example, port: 1}]}\n"
    },
    "domains before the zone and profiles": {
        "srvd.yaml": "domains:\n  a.example: p\n  b.example: q\n" + ZONE + PROFILES
    },
    "a profile from an include": {
        "srvd.yaml": ZONE
        + "domains:\n  a.example: r\n  z.example: p\ninclude: [inc.yaml]\n"
        + PROFILES,
        "inc.yaml": "profiles:\n  r: {pop3: off}\ndomains:\n  c.example: r\n",
    },
    "a JSON include": {
        "srvd.yaml": ZONE + PROFILES + "include: [d.json]\n",
        "d.json": '{"domains": {"a.example": "p", "b.example": {"profile": "q", "jmap": '
        '{"target": "j.example", "port": 443}}}}',
    },
    "an include of comments only": {
        "srvd.yaml": ZONE + PROFILES + "include: [e.yaml]\n",
        "e.yaml": "# nothing yet\n",
    },
    "an include of an empty document": {
        "srvd.yaml": ZONE + PROFILES + "include: [e.yaml]\n",
        "e.yaml": "---\n",
    },
    "limits after the domains, as the defaults": {
        "srvd.yaml": ZONE + PROFILES + "domains: {a.example: p}\nlimits: {max_domains: 10000000}\n"
    },
    "limits first": {
        "srvd.yaml": "limits: {max_domains: 5}\n" + ZONE + PROFILES + "domains: {a.example: p}\n"
    },
    "tags, quotes, flow style, Unicode": {
        "srvd.yaml": "{zone: {nameservers: [ns1.example.net]}, 'profiles': {p: {pop3: off}},\n"
        ' domains: {a.example: !!str p, "bücher.example": p, Straße.example: p}}\n'
    },
    "transfer and catalog": {
        "srvd.yaml": ZONE
        + PROFILES
        + "transfer:\n  keys: [{name: k, secret: MDEyMzQ1Njc4OWFiY2RlZg==}]\n"
        + "  allow: [{address: 127.0.0.1, key: k}]\ncatalog: cat.example\n"
        + "domains: {a.example: p}\n"
    },
}


@pytest.mark.parametrize("case", sorted(VALID))
def test_the_streaming_reader_reads_what_the_exact_reader_reads(tmp_path: Path, case: str) -> None:
    main = write(tmp_path, VALID[case])
    exact = _exact(main)
    stream = streamed(main)
    assert stream == exact
    assert list(stream.domains) == list(exact.domains)
    assert load_config(main) == exact


INVALID = {
    "a key twice": ZONE + PROFILES + "domains:\n  a.example: p\n  a.example: q\n",
    "a domain twice": ZONE + PROFILES + "domains:\n  a.example: p\n  A.example: q\n",
    "an anchor": ZONE + PROFILES + "domains:\n  a.example: &x p\n  b.example: *x\n",
    "a merge key": ZONE + PROFILES + "domains:\n  <<: {a.example: p}\n",
    "a boolean key": ZONE + PROFILES + "domains:\n  no: p\n",
    "too many domains": "limits: {max_domains: 1}\n"
    + ZONE
    + PROFILES
    + "domains: {a.example: p, b.example: p}\n",
    "an unknown profile": ZONE + PROFILES + "domains: {a.example: nope}\n",
    "a list of domains": ZONE + PROFILES + "domains: [a, b]\n",
    "a syntax error": ZONE + PROFILES + "domains: {a.example: p\n",
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_the_streaming_reader_gives_up_on_a_problem(tmp_path: Path, case: str) -> None:
    main = write(tmp_path, {"srvd.yaml": INVALID[case]})
    with pytest.raises(_Fallback):
        streamed(main)
    with pytest.raises(ConfigError):
        load_config(main)


def test_limits_after_what_they_bound_are_read_by_the_exact_reader(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        {"srvd.yaml": ZONE + PROFILES + "domains: {a.example: p}\nlimits: {max_domains: 5}\n"},
    )
    with pytest.raises(_Fallback):
        streamed(main)
    assert load_config(main).limits.max_domains == 5


class Recorder(DomainSink):
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def begin(self, zone: ZoneSettings, profiles: Mapping[str, Profile]) -> None:
        self.calls.append(("begin", zone.nameservers))

    def domain(self, name: str, entry: Entry | None) -> None:
        self.calls.append((name, entry))

    def restart(self) -> None:
        self.calls.append(("restart", None))


def test_a_sink_gets_placeholders_then_the_domains_that_waited(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        {
            "srvd.yaml": "domains: {a.example: p}\n" + ZONE + PROFILES + "include: [inc.yaml]\n",
            "inc.yaml": "domains: {b.example: r, c.example: p}\nprofiles: {r: {pop3: off}}\n",
        },
    )
    sink = Recorder()
    config = read_config(main, sink)
    assert config.domains == {}
    assert sink.calls == [
        ("a.example", None),  # before the zone: waits
        ("begin", ("ns1.example.net",)),
        ("b.example", None),  # its profile comes later in the file
        ("c.example", "p"),
        ("a.example", "p"),
        ("b.example", "r"),
    ]


def test_a_sink_starts_again_when_the_exact_reader_takes_over(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        {"srvd.yaml": ZONE + PROFILES + "domains: {a.example: p}\nlimits: {max_domains: 5}\n"},
    )
    sink = Recorder()
    read_config(main, sink)
    assert sink.calls == [
        ("begin", ("ns1.example.net",)),
        ("a.example", "p"),
        ("restart", None),
        ("begin", ("ns1.example.net",)),
        ("a.example", "p"),
    ]


def test_profiles_given_to_the_sink_grow_as_they_are_read(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        {
            "srvd.yaml": ZONE + "profiles: {p: {pop3: off}}\ninclude: [i.yaml]\n",
            "i.yaml": "profiles: {r: {pop3: off}}\ndomains: {a.example: r}\n",
        },
    )
    seen: list[list[str]] = []

    class Sink(DomainSink):
        profiles: Mapping[str, Profile]

        def begin(self, zone: ZoneSettings, profiles: Mapping[str, Profile]) -> None:
            self.profiles = profiles

        def domain(self, name: str, entry: Entry | None) -> None:
            seen.append(sorted(self.profiles))

    read_config(main, Sink())
    assert seen == [["p", "r"]]


@pytest.mark.parametrize(
    "text",
    [
        '{"domains": {"a.example": "p", "a.example": "q"}}',
        '{"domains": {"a.example": "p"}, "domains": {}}',
        '{"domains": {"a.example": "p",}}',
        '{"domains": {"a.example": "p"}} trailing',
        '["domains"]',
    ],
)
def test_the_streaming_reader_gives_up_on_a_json_problem(tmp_path: Path, text: str) -> None:
    main = write(tmp_path, {"srvd.yaml": ZONE + PROFILES + "include: [d.json]\n", "d.json": text})
    with pytest.raises(_Fallback):
        streamed(main)
    with pytest.raises(ConfigError):
        load_config(main)


def test_json_members_other_than_domains_are_read_whole(tmp_path: Path) -> None:
    main = write(
        tmp_path,
        {
            "srvd.yaml": ZONE + "include: [d.json]\n",
            "d.json": '{"profiles": {"p": {"imaps": {"target": "i.example", "port": 993}}},\n'
            ' "domains": {"a.example": "p", "b.example": {"profile": "p", "pop3": false}}}',
        },
    )
    assert streamed(main) == _exact(main)
