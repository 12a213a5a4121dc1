"""srvd.config: the YAML loader and validator (pure: files in tmp_path, no network).

Every invalid fixture is written out in full and its line numbers are counted by hand: most start
with the two lines of ``ZONE``, so their own text begins on line 3.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from textwrap import dedent

import pytest

from srvd.config import (
    Config,
    ConfigError,
    DomainOverride,
    Endpoint,
    Problem,
    RRsetSpec,
    SrvRecord,
    load_config,
)
from srvd.wire.discovery import SRV, TXT

from conftest import EXAMPLE

ZONE = "zone:\n  nameservers: [ns1.example.net]\n"  # lines 1 and 2

MAIN = "srvd.yaml"


def y(text: str) -> str:
    """A fixture's text: dedented, so that its first line is the first line written."""
    return dedent(text)


def write(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path / MAIN


def load(tmp_path: Path, files: dict[str, str]) -> Config:
    return load_config(write(tmp_path, files))


def problems_of(tmp_path: Path, files: dict[str, str]) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, files)
    return info.value.problems


def srv(owner: str, *records: tuple[int, int, int, str]) -> RRsetSpec:
    return RRsetSpec(owner, SRV, srv=tuple(SrvRecord(*r) for r in records))


def txt(owner: str, *texts: str) -> RRsetSpec:
    return RRsetSpec(owner, TXT, txt=texts)


OFF = (0, 0, 0, ".")


# ---------------------------------------------------------------------------------------------
# Invalid configurations


@dataclass(frozen=True)
class Expect:
    """One problem: where (file, line, key path) and a fragment of its message.

    ``{dir}`` in the fragment stands for the directory the fixture is written to. Fragments are
    compared case-insensitively.
    """

    line: int | None
    key: str
    fragment: str
    file: str = MAIN


@dataclass(frozen=True)
class Case:
    id: str
    files: dict[str, str]
    expect: tuple[Expect, ...]
    note: str = field(default="", compare=False)


def main(body: str, others: dict[str, str] | None = None) -> dict[str, str]:
    """The main file (``ZONE`` + body, so the body starts on line 3) and other files."""
    files = {MAIN: ZONE + y(body)}
    files.update({name: y(text) for name, text in (others or {}).items()})
    return files


def _bomb(levels: int) -> str:
    lines = ["lol: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels + 1):
        aliases = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"l{level}: &a{level} [{aliases}]")
    return "\n".join(lines) + "\n"


LONG_LABEL = "a" * 64
# 63+63+63+62 octets and 3 dots: 254 characters of text, 256 octets in wire form
NAME_256 = ".".join(["a" * 63] * 3 + ["b" * 62])
# 63+63+63+61 octets: 253 characters, 255 octets in wire form (the longest name there is)
NAME_255 = ".".join(["a" * 63] * 3 + ["b" * 61])

CASES: list[Case] = [
    # -- unknown keys, with the closest known one suggested
    Case(
        "unknown-top-key",
        main("listne: ['127.0.0.1:53']\n"),
        (Expect(3, "listne", "did you mean 'listen'?"),),
    ),
    Case(
        "profile-key-typo-imasp",
        main(
            """\
            profiles:
              p:
                imasp: {target: imap.example.net, port: 993}
            """
        ),
        (Expect(5, "profiles.p.imasp", "did you mean 'imaps'?"),),
        note="difflib ranks 'imap' above 'imaps' for the transposition 'imasp'",
    ),
    Case(
        "record-key-typo",
        main(
            """\
            profiles:
              p:
                imaps:
                  - target: imap.example.net
                    prot: 993
            """
        ),
        (
            Expect(7, "profiles.p.imaps[0].prot", "did you mean 'port'?"),
            Expect(6, "profiles.p.imaps[0]", "needs a port"),
        ),
    ),
    Case(
        "zone-key-typo",
        {MAIN: "zone:\n  nameserver: [ns1.example.net]\n"},
        (
            Expect(2, "zone.nameserver", "did you mean 'nameservers'?"),
            Expect(1, "zone.nameservers", "required"),
        ),
    ),
    Case(
        "domain-key-typo",
        main(
            """\
            profiles:
              standard: {}
            domains:
              example.com:
                profil: standard
            """
        ),
        (Expect(7, "domains.example.com.profil", "did you mean 'profile'?"),),
    ),
    Case(
        "include-key-typo",
        main(
            "include: [more.yaml]\n",
            {
                "more.yaml": """\
            domain:
              example.com: standard
            """
            },
        ),
        (Expect(1, "domain", "did you mean 'domains'?", file="more.yaml"),),
    ),
    Case(
        "main-only-key-in-include",
        main(
            "include: [more.yaml]\n",
            {
                "more.yaml": """\
            profiles: {}
            zone:
              ttl: 60
            """
            },
        ),
        (Expect(2, "zone", "main", file="more.yaml"),),
        note="a bare 'unknown key' does not say that zone: is only allowed in the main file",
    ),
    # -- numbers
    Case(
        "port-above-65535",
        main(
            """\
            profiles:
              p:
                imaps: {target: imap.example.net, port: 65536}
            """
        ),
        (Expect(5, "profiles.p.imaps.port", "65536 is out of range (0-65535)"),),
    ),
    Case(
        "negative-priority",
        main(
            """\
            profiles:
              p:
                imaps: {target: imap.example.net, port: 993, priority: -1}
            """
        ),
        (Expect(5, "profiles.p.imaps.priority", "-1 is out of range (0-65535)"),),
    ),
    Case(
        "weight-above-65535-in-list",
        main(
            """\
            profiles:
              p:
                imaps:
                  - {target: imap1.example.net, port: 993}
                  - {target: imap2.example.net, port: 993, weight: 70000}
            """
        ),
        (Expect(7, "profiles.p.imaps[1].weight", "70000 is out of range (0-65535)"),),
    ),
    Case(
        "boolean-port",
        main(
            """\
            profiles:
              p:
                imaps: {target: imap.example.net, port: true}
            """
        ),
        (Expect(5, "profiles.p.imaps.port", "found a boolean"),),
    ),
    Case(
        "float-weight",
        main(
            """\
            profiles:
              p:
                imaps:
                  target: imap.example.net
                  port: 993
                  weight: 1.5
            """
        ),
        (Expect(8, "profiles.p.imaps.weight", "expected a whole number from 0 to 65535"),),
    ),
    Case(
        "string-port",
        main(
            """\
            profiles:
              p:
                imaps: {target: imap.example.net, port: '993'}
            """
        ),
        (Expect(5, "profiles.p.imaps.port", "found a string"),),
    ),
    Case(
        "zone-ttl-negative",
        {MAIN: "zone:\n  nameservers: [ns1.example.net]\n  ttl: -5\n"},
        (Expect(3, "zone.ttl", "-5 is out of range"),),
    ),
    # -- records
    Case(
        "record-without-port",
        main(
            """\
            profiles:
              p:
                imaps: {target: imap.example.net}
            """
        ),
        (Expect(5, "profiles.p.imaps", "needs a port"),),
    ),
    Case(
        "record-without-target",
        main(
            """\
            profiles:
              p:
                pop3s: {port: 995}
            """
        ),
        (Expect(5, "profiles.p.pop3s", "needs a target"),),
    ),
    Case(
        "service-true",
        main(
            """\
            profiles:
              p:
                imaps: true
            """
        ),
        (Expect(5, "profiles.p.imaps", "expected records or 'off'"),),
    ),
    Case(
        "dot-beside-other-records",
        main(
            """\
            profiles:
              p:
                imaps:
                  - {target: ., port: 0}
                  - {target: imap.example.net, port: 993}
            """
        ),
        (Expect(5, "profiles.p.imaps", "cannot stand beside other records"),),
    ),
    Case(
        "same-record-twice",
        main(
            """\
            profiles:
              p:
                imaps:
                  - {target: imap.example.net, port: 993}
                  - {target: IMAP.example.net., port: 993}
            """
        ),
        (Expect(5, "profiles.p.imaps", "the same record is listed twice"),),
    ),
    Case(
        "srv-owner-beside-service-key",
        main(
            """\
            profiles:
              p:
                imaps: {target: imap.example.net, port: 993}
                srv:
                  _imaps._tcp: {target: other.example.net, port: 993}
            """
        ),
        (
            Expect(
                4, "profiles.p", "SRV records at _imaps._tcp are given twice, by 'imaps' and 'srv"
            ),
        ),
    ),
    Case(
        "srv-owner-in-override-beside-profile-service",
        main(
            """\
            profiles:
              p:
                imaps: {target: imap.example.net, port: 993}
            domains:
              example.com:
                profile: p
                srv:
                  _imaps._tcp: {target: other.example.net, port: 993}
            """
        ),
        (Expect(7, "domains.example.com", "SRV records at _imaps._tcp are given twice"),),
    ),
    Case(
        "srv-owner-without-underscore-zone",
        main(
            """\
            profiles:
              p:
                srv:
                  _imaps.tcp: {target: imap.example.net, port: 993}
            """
        ),
        (Expect(6, "profiles.p.srv._imaps.tcp", "must start with '_'"),),
    ),
    Case(
        "txt-too-long-scalar",
        main(
            f"""\
            profiles:
              p:
                txt:
                  _x._tcp: '{"t" * 4001}'
            """
        ),
        (Expect(6, "profiles.p.txt._x._tcp", "4001 octets; at most 4000"),),
        note="the key path gets a '[0]' although the value is a single string, not a list",
    ),
    Case(
        "txt-too-long-in-list",
        main(
            f"""\
            profiles:
              p:
                txt:
                  _x._tcp:
                    - short
                    - '{"t" * 4001}'
            """
        ),
        (Expect(8, "profiles.p.txt._x._tcp[1]", "4001 octets; at most 4000"),),
    ),
    Case(
        "txt-twice",
        main(
            """\
            profiles:
              p:
                txt:
                  _x._tcp: [a, a]
            """
        ),
        (Expect(6, "profiles.p.txt._x._tcp", "the same text is listed twice"),),
    ),
    # -- host names and labels
    Case(
        "target-not-a-host-name",
        main(
            """\
            profiles:
              p:
                imaps: {target: imap_1.example.net, port: 993}
            """
        ),
        (Expect(5, "profiles.p.imaps.target", "is not a valid host name"),),
    ),
    Case(
        "target-label-of-64-octets",
        main(
            f"""\
            profiles:
              p:
                imaps: {{target: {LONG_LABEL}.example.net, port: 993}}
            """
        ),
        (Expect(5, "profiles.p.imaps.target", "longer than 63 octets"),),
    ),
    Case(
        "target-of-256-octets",
        main(
            f"""\
            profiles:
              p:
                imaps:
                  target: {NAME_256}
                  port: 993
            """
        ),
        (Expect(6, "profiles.p.imaps.target", "longer than 255 octets"),),
    ),
    Case(
        "domain-label-of-64-octets",
        main(
            f"""\
            profiles:
              p: {{}}
            domains:
              {LONG_LABEL}.example: p
            """
        ),
        (Expect(6, f"domains.{LONG_LABEL}.example", "longer than 63 octets"),),
    ),
    Case(
        "domain-of-256-octets",
        main(
            f"""\
            profiles:
              p: {{}}
            domains:
              {NAME_256}: p
            """
        ),
        (Expect(6, f"domains.{NAME_256}", "longer than 255 octets"),),
    ),
    Case(
        "domain-not-a-host-name",
        main(
            """\
            profiles:
              p: {}
            domains:
              good.example: p
              bad_name.example: p
              -dash.example: p
            """
        ),
        (
            Expect(7, "domains.bad_name.example", "is not a valid host name"),
            Expect(8, "domains.-dash.example", "is not a valid host name"),
        ),
    ),
    Case(
        "domain-not-convertible-to-idna",
        main(
            """\
            profiles:
              p: {}
            domains:
              "a\\u200db.example": p
            """
        ),
        (Expect(6, "domains.a\u200db.example", "cannot be converted to IDNA"),),
    ),
    Case(
        "nameserver-not-a-host-name",
        {MAIN: "zone:\n  nameservers:\n    - ns1.example.net\n    - ns 2.example.net\n"},
        (Expect(4, "zone.nameservers[1]", "is not a valid host name"),),
    ),
    # -- {domain} templates
    Case(
        "template-in-the-middle",
        main(
            """\
            profiles:
              p:
                imaps: {target: "mail.{domain}.example.net", port: 993}
            """
        ),
        (Expect(5, "profiles.p.imaps.target", "{domain} may only stand as the last labels"),),
    ),
    Case(
        "template-glued-to-a-label",
        main(
            """\
            profiles:
              p:
                imaps: {target: "mail{domain}", port: 993}
            """
        ),
        (Expect(5, "profiles.p.imaps.target", "{domain} may only stand as the last labels"),),
    ),
    Case(
        "template-twice",
        main(
            """\
            profiles:
              p:
                imaps: {target: "{domain}.{domain}", port: 993}
            """
        ),
        (Expect(5, "profiles.p.imaps.target", "{domain} may only stand as the last labels"),),
    ),
    Case(
        "template-in-the-middle-of-axigen",
        main(
            """\
            profiles:
              p:
                axigen: "webmail.{domain}.example.net:443"
            """
        ),
        (Expect(5, "profiles.p.axigen", "{domain} may only stand as the last labels"),),
    ),
    # -- DAV paths
    Case(
        "path-without-slash",
        main(
            """\
            profiles:
              p:
                caldavs: {target: dav.example.net, port: 443, path: dav/}
            """
        ),
        (Expect(5, "profiles.p.caldavs.path", "must start with '/'"),),
    ),
    Case(
        "path-on-a-non-dav-service",
        main(
            """\
            profiles:
              p:
                imaps: {target: imap.example.net, port: 993, path: /dav/}
            """
        ),
        (Expect(5, "profiles.p.imaps.path", "dav"),),
        note="reported as a bare 'unknown key', without saying path is only for (Cal|Card)DAV",
    ),
    Case(
        "different-paths",
        main(
            """\
            profiles:
              p:
                carddavs:
                  - {target: dav1.example.net, port: 443, path: /a/}
                  - {target: dav2.example.net, port: 443, path: /b/}
            """
        ),
        (Expect(5, "profiles.p.carddavs", "different paths"),),
    ),
    # -- axigen
    Case(
        "axigen-with-scheme",
        main(
            """\
            profiles:
              p:
                axigen: https://webmail.example.net
            """
        ),
        (Expect(5, "profiles.p.axigen", "without scheme"),),
    ),
    Case(
        "axigen-with-path",
        main(
            """\
            profiles:
              p:
                axigen: webmail.example.net/mail
            """
        ),
        (Expect(5, "profiles.p.axigen", "without scheme or path"),),
    ),
    Case(
        "axigen-port-0",
        main(
            """\
            profiles:
              p:
                axigen: "webmail.example.net:0"
            """
        ),
        (Expect(5, "profiles.p.axigen", "must be 1-65535"),),
    ),
    # -- profiles and domains
    Case(
        "unknown-profile",
        main(
            """\
            profiles:
              standard: {}
            domains:
              example.com: standrd
            """
        ),
        (Expect(6, "domains.example.com", "unknown profile 'standrd' (did you mean 'standard'?)"),),
    ),
    Case(
        "unknown-profile-in-override",
        main(
            """\
            profiles:
              standard: {}
            domains:
              example.com:
                profile: standrd
            """
        ),
        (
            Expect(
                7,
                "domains.example.com.profile",
                "unknown profile 'standrd' (did you mean 'standard'?)",
            ),
        ),
    ),
    Case(
        "profile-name-as-a-list-in-override",
        main(
            """\
            profiles:
              standard: {}
            domains:
              example.com:
                profile: [standard]
            """
        ),
        (Expect(7, "domains.example.com.profile", "profile"),),
        note="crashes with TypeError: unhashable type: 'list'",
    ),
    Case(
        "profile-not-a-mapping-reported-once",
        main(
            """\
            profiles:
              p: 5
            domains:
              example.com: p
            """
        ),
        (Expect(4, "profiles.p", "expected a mapping"),),
        note="a second, misleading problem 'unknown profile' follows for example.com",
    ),
    Case(
        "empty-override",
        main(
            """\
            profiles:
              p: {}
            domains:
              example.com: {}
            """
        ),
        (Expect(6, "domains.example.com", "expected a profile name or a mapping"),),
    ),
    Case(
        "profiles-a-list",
        main("profiles: [standard]\n"),
        (Expect(3, "profiles", "expected a mapping of profiles, found a list"),),
    ),
    Case(
        "domain-twice-in-one-file",
        main(
            """\
            profiles:
              p: {}
            domains:
              example.com: p
              Example.COM.: p
            """
        ),
        (
            Expect(
                7,
                "domains.Example.COM.",
                "domain example.com is defined twice (first in {dir}/srvd.yaml:6)",
            ),
        ),
    ),
    Case(
        "domain-twice-across-includes",
        main(
            """\
            profiles:
              p: {}
            domains:
              example.com: p
            include: [conf.d/*.yaml]
            """,
            {
                "conf.d/a.yaml": """\
                domains:
                  other.example: p
                  example.com: p
                """
            },
        ),
        (
            Expect(
                3,
                "domains.example.com",
                "domain example.com is defined twice (first in {dir}/srvd.yaml:6)",
                file="conf.d/a.yaml",
            ),
        ),
    ),
    Case(
        "domain-twice-unicode-and-idna",
        main(
            """\
            profiles:
              p: {}
            domains:
              bücher.example: p
              xn--bcher-kva.example: p
            """
        ),
        (
            Expect(
                7,
                "domains.xn--bcher-kva.example",
                "domain xn--bcher-kva.example is defined twice (first in {dir}/srvd.yaml:6)",
            ),
        ),
    ),
    Case(
        "profile-twice-across-includes",
        main(
            """\
            profiles:
              p: {}
            include: [more.yaml]
            """,
            {
                "more.yaml": """\
            profiles:
              q: {}
              p: {}
            """
            },
        ),
        (
            Expect(
                3,
                "profiles.p",
                "profile 'p' is defined twice (first in {dir}/srvd.yaml:4)",
                file="more.yaml",
            ),
        ),
    ),
    # -- listen, zone, tcp
    Case(
        "bad-listen-addresses",
        main(
            """\
            listen:
              - 127.0.0.1:53
              - foo:53
              - "[::1]:99999"
              - 127.0.0.1:65536
            """
        ),
        (
            Expect(5, "listen[1]", "'foo' is not an IP address"),
            Expect(6, "listen[2]", "port out of range"),
            Expect(7, "listen[3]", "port out of range"),
        ),
    ),
    Case(
        "listen-empty",
        main("listen: []\n"),
        (Expect(3, "listen", "expected a list of addresses"),),
    ),
    Case(
        "listen-twice",
        main("listen: ['127.0.0.1:53', '127.0.0.1']\n"),
        (Expect(3, "listen", "the same address is listed twice"),),
    ),
    Case(
        "missing-nameservers",
        {MAIN: "zone:\n  ttl: 60\n"},
        (Expect(1, "zone.nameservers", "required"),),
    ),
    Case(
        "hostmaster-at-form-bad-mailbox",
        {MAIN: ZONE + "  hostmaster: 'host master@example.net'\n"},
        (Expect(3, "zone.hostmaster", "is not a valid mailbox"),),
    ),
    Case(
        "hostmaster-at-form-empty-mailbox",
        {MAIN: ZONE + "  hostmaster: '@example.net'\n"},
        (Expect(3, "zone.hostmaster", "is not a valid mailbox"),),
    ),
    Case(
        "hostmaster-at-form-bad-domain",
        {MAIN: ZONE + "  hostmaster: hostmaster@exa_mple.net\n"},
        (Expect(3, "zone.hostmaster", "'exa_mple.net' is not a valid host name"),),
    ),
    Case(
        "hostmaster-dot-form-bad-domain",
        {MAIN: ZONE + "  hostmaster: hostmaster.exa_mple.net\n"},
        (Expect(3, "zone.hostmaster", "'exa_mple.net' is not a valid host name"),),
    ),
    Case(
        # the mailbox label (64 octets) and the domain (192) make an RNAME of 256 octets
        "hostmaster-rname-over-255-octets",
        {MAIN: ZONE + f"  hostmaster: {'h' * 63}@{'.'.join(['m' * 60] * 3)}.example\n"},
        (Expect(3, "zone.hostmaster", "longer than 255 octets in wire form (the SOA RNAME)"),),
    ),
    Case(
        "hostmaster-dot-form-without-domain",
        {MAIN: ZONE + "  hostmaster: hostmaster\n"},
        (Expect(3, "zone.hostmaster", "empty name"),),
    ),
    Case(
        "tcp-idle-timeout-zero",
        main(
            """\
            tcp:
              idle_timeout: 0
            """
        ),
        (Expect(4, "tcp.idle_timeout", "more than 0"),),
    ),
    # -- YAML itself
    Case(
        "duplicate-key",
        main(
            """\
            profiles:
              p:
                imaps: off
                pop3s: off
                imaps: {target: imap.example.net, port: 993}
            """
        ),
        (Expect(7, "", "key 'imaps' appears twice in one mapping (first on line 5)"),),
    ),
    Case(
        "merge-key",
        main(
            """\
            profiles:
              p:
                imaps: off
              q:
                <<: {imaps: off}
                pop3: off
            """
        ),
        (Expect(7, "", "merge keys (<<) are not allowed"),),
    ),
    Case(
        "alias-of-a-profile",
        main(
            """\
            profiles:
              p: &standard
                imaps: off
              q: *standard
            """
        ),
        (Expect(4, "", "aliases and anchors are not allowed"),),
    ),
    Case(
        "alias-of-a-scalar",
        main(
            """\
            profiles:
              p:
                imaps: {target: &host imap.example.net, port: 993}
                pop3s: {target: *host, port: 995}
            """
        ),
        (Expect(5, "", "aliases and anchors are not allowed"),),
    ),
    Case(
        "anchor-without-alias",
        main(
            """\
            profiles:
              p: &standard
                imaps: off
            """
        ),
        (Expect(4, "", "anchors"),),
        note="an anchor is accepted as long as no alias uses it",
    ),
    Case(
        "billion-laughs",
        {MAIN: _bomb(9)},
        (Expect(1, "", "aliases and anchors are not allowed"),),
    ),
    Case(
        "syntax-error-indentation",
        main(
            """\
            profiles:
              p:
                imaps: off
               pop3: off
            """
        ),
        (Expect(6, "", "YAML"),),
    ),
    Case(
        "syntax-error-tab",
        {MAIN: ZONE + "profiles:\n  p:\n\timaps: off\n"},
        (Expect(5, "", "YAML"),),
    ),
    Case(
        "top-level-list",
        {MAIN: "- zone\n- profiles\n"},
        (Expect(1, "", "expected a mapping at the top, found a list"),),
        note="the problem has no line",
    ),
    Case(
        "top-level-scalar",
        {MAIN: "hello\n"},
        (Expect(1, "", "expected a mapping at the top, found a string"),),
        note="the problem has no line",
    ),
    # -- includes
    Case(
        "missing-include",
        main("include: [missing.yaml]\n"),
        (Expect(3, "include[0]", "included file {dir}/missing.yaml does not exist"),),
    ),
    Case(
        "missing-include-in-an-included-file",
        main(
            """\
            include:
              - conf.d/*.yaml
            """,
            {"conf.d/a.yaml": "include: [nothing.yaml]\n"},
        ),
        (
            Expect(
                1,
                "include[0]",
                "included file {dir}/conf.d/nothing.yaml does not exist",
                file="conf.d/a.yaml",
            ),
        ),
    ),
    Case(
        "include-cycle",
        main(
            "include: [a.yaml]\n",
            {
                "a.yaml": "include: [b.yaml]\n",
                "b.yaml": """\
            profiles: {}
            include: [srvd.yaml]
            """,
            },
        ),
        (Expect(2, "include[0]", "{dir}/srvd.yaml is included more than once", file="b.yaml"),),
    ),
    Case(
        "include-not-a-list",
        main("include: 5\n"),
        (Expect(3, "include", "expected a list of file names or patterns"),),
    ),
    Case(
        "include-items-not-names",
        main("include: [5, '']\n"),
        (
            Expect(3, "include[0]", "expected a file name or a glob pattern"),
            Expect(3, "include[1]", "expected a file name or a glob pattern"),
        ),
    ),
    Case(
        "json-include-syntax-error",
        main(
            "include: [more.json]\n",
            {
                "more.json": """\
            {
              "profiles": {,}
            }
            """
            },
        ),
        (Expect(2, "", "JSON syntax error", file="more.json"),),
    ),
    Case(
        "json-include-invalid-value",
        main(
            "include: [more.json]\n",
            {
                "more.json": """\
            {
              "profiles": {
                "p": {
                  "imaps": {"target": "imap.example.net", "port": 99999}
                }
              }
            }
            """
            },
        ),
        (Expect(4, "profiles.p.imaps.port", "99999 is out of range", file="more.json"),),
        note="problems in JSON files have no line",
    ),
    Case(
        "json-include-duplicate-key",
        main(
            "include: [more.json]\n",
            {
                "more.json": """\
            {
              "profiles": {"p": {}, "q": {}},
              "domains": {
                "example.com": "p",
                "example.com": "q"
              }
            }
            """
            },
        ),
        (Expect(5, "", "twice", file="more.json"),),
        note="json.loads silently keeps the last of duplicate keys",
    ),
    # -- several problems in one file, all reported
    Case(
        "several-problems-in-one-file",
        main(
            """\
            listen: [nowhere]
            profiles:
              p:
                imaps: {target: imap.example.net, port: 99999}
                pop3s: {target: pop_3.example.net, port: 995}
                caldav: {target: dav.example.net, port: 80, path: dav}
                axigen: http://webmail.example.net
              q:
                imap: yes
            domains:
              example.com: p
              example.org: nope
              bad_name.example: p
            """
        ),
        (
            Expect(3, "listen[0]", "'nowhere' is not an IP address"),
            Expect(6, "profiles.p.imaps.port", "out of range"),
            Expect(7, "profiles.p.pop3s.target", "is not a valid host name"),
            Expect(8, "profiles.p.caldav.path", "must start with '/'"),
            Expect(9, "profiles.p.axigen", "without scheme"),
            Expect(11, "profiles.q.imap", "expected records or 'off'"),
            Expect(14, "domains.example.org", "unknown profile 'nope'"),
            Expect(15, "domains.bad_name.example", "is not a valid host name"),
        ),
    ),
    Case(
        "several-problems-in-one-record",
        main(
            """\
            profiles:
              p:
                imaps:
                  target: imap_1.example.net
                  port: 99999
                  weight: -1
            """
        ),
        (
            Expect(6, "profiles.p.imaps.target", "is not a valid host name"),
            Expect(7, "profiles.p.imaps.port", "out of range"),
            Expect(8, "profiles.p.imaps.weight", "out of range"),
        ),
        note="only the first problem of a record is reported",
    ),
    Case(
        "several-problems-in-zone",
        {
            MAIN: y(
                """\
                zone:
                  nameservers: [ns1.example.net]
                  ttl: -5
                  refresh: -1
                  hostmaster: '@example.net'
                """
            )
        },
        (
            Expect(3, "zone.ttl", "out of range"),
            Expect(4, "zone.refresh", "out of range"),
            Expect(5, "zone.hostmaster", "is not a valid mailbox"),
        ),
        note="only the first problem of zone: is reported",
    ),
    Case(
        "several-problems-in-tcp",
        main(
            """\
            tcp:
              idle_timeout: 0
              max_connections: 0
            """
        ),
        (
            Expect(4, "tcp.idle_timeout", "more than 0"),
            Expect(5, "tcp.max_connections", "out of range"),
        ),
        note="only the first problem of tcp: is reported",
    ),
    Case(
        "problems-in-main-and-included-file",
        main(
            """\
            profiles:
              p:
                imaps: {target: imap.example.net, port: -1}
            include: [more.yaml]
            """,
            {
                "more.yaml": """\
            domains:
              example.com: p
              example.net: q
            """
            },
        ),
        (
            Expect(5, "profiles.p.imaps.port", "out of range"),
            Expect(3, "domains.example.net", "unknown profile 'q'", file="more.yaml"),
        ),
    ),
]


def _render(problems: list[Problem], base: Path) -> str:
    return "\n".join(
        f"  {Path(p.file).relative_to(base) if Path(p.file).is_relative_to(base) else p.file}"
        f":{p.line} key={p.key!r}: {p.message}"
        for p in problems
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_invalid(case: Case, tmp_path: Path) -> None:
    problems = problems_of(tmp_path, case.files)
    found = _render(problems, tmp_path)
    missing = []
    for expect in case.expect:
        file = str(tmp_path / expect.file)
        fragment = expect.fragment.replace("{dir}", str(tmp_path)).lower()
        if not any(
            (p.file, p.line, p.key) == (file, expect.line, expect.key)
            and fragment in p.message.lower()
            for p in problems
        ):
            missing.append(f"  {expect.file}:{expect.line} key={expect.key!r}: …{fragment}…")
    known = f"\nknown defect: {case.note}" if case.note else ""
    assert not missing, "expected:\n" + "\n".join(missing) + "\nfound:\n" + found + known
    assert len(problems) == len(case.expect), "unexpected extra problems:\n" + found + known


def test_billion_laughs_fails_fast(tmp_path: Path) -> None:
    """9**30 nodes once expanded: refusing must not expand anything."""
    path = write(tmp_path, {MAIN: _bomb(30)})
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert time.monotonic() - start < 2.0
    [problem] = info.value.problems
    assert (problem.file, problem.line) == (str(path), 1)
    assert "aliases" in problem.message


def test_alias_bomb_inside_a_profile_names_its_line(tmp_path: Path) -> None:
    text = ZONE + y(
        """\
        profiles:
          p:
            txt:
              _x._tcp: &a [lol, lol, lol, lol, lol, lol, lol, lol]
              _y._tcp: &b [*a, *a, *a, *a, *a, *a, *a, *a]
              _z._tcp: [*b, *b, *b, *b, *b, *b, *b, *b]
        """
    )
    [problem] = problems_of(tmp_path, {MAIN: text})
    assert problem.line == 6
    assert "aliases" in problem.message


def test_boolean_like_domain_key_names_its_line(tmp_path: Path) -> None:
    """YAML 1.1 reads `on:` as true; the problem must still point at its line."""
    text = ZONE + y(
        """\
        profiles:
          p: {}
        domains:
          on: p
        """
    )
    [problem] = problems_of(tmp_path, {MAIN: text})
    assert problem.line == 6, problem.render()
    assert problem.key.startswith("domains."), problem.render()
    assert "must be a string" in problem.message


def test_problems_are_capped_but_all_have_lines(tmp_path: Path) -> None:
    body = "profiles:\n  p: {}\ndomains:\n" + "".join(f"  bad_{i}.example: p\n" for i in range(80))
    problems = problems_of(tmp_path, {MAIN: ZONE + body})
    assert 1 <= len(problems) <= 50
    assert [p.line for p in problems] == list(range(6, 6 + len(problems)))


def test_missing_main_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nothing.yaml")
    [problem] = info.value.problems
    assert problem.file == str(tmp_path / "nothing.yaml")
    assert "cannot read" in problem.message


def test_problem_render_and_error_text(tmp_path: Path) -> None:
    text = ZONE + "profiles:\n  p:\n    imaps: {target: imap.example.net, port: 65536}\n"
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {MAIN: text})
    [problem] = info.value.problems
    line = f"{tmp_path / MAIN}:5: profiles.p.imaps.port: 65536 is out of range (0-65535)"
    assert problem.render() == line
    assert str(info.value) == line


def test_problem_key_forms() -> None:
    assert Problem("f", (), "m").key == ""
    assert Problem("f", ("listen", 2), "m").key == "listen[2]"
    assert Problem("f", ("profiles", "p", "imaps", 0, "port"), "m").key == (
        "profiles.p.imaps[0].port"
    )
    assert Problem("f", (), "m", 3).render() == "f:3: m"
    assert Problem("f", ("zone",), "m").render() == "f: zone: m"


# ---------------------------------------------------------------------------------------------
# Valid configurations


def test_bundled_example_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.source == str(EXAMPLE)
    assert config.files == (str(EXAMPLE),)
    assert config.listen == (Endpoint("127.0.0.1", 5353),)
    assert config.zone.nameservers == ("ns1.discovery.example.net", "ns2.discovery.example.net")
    assert config.zone.hostmaster == "hostmaster@example.net"
    assert (config.zone.ttl, config.zone.refresh, config.zone.retry) == (3600, 3600, 600)
    assert (config.zone.expire, config.zone.minimum) == (1209600, 300)
    assert sorted(config.profiles) == ["branded", "standard"]
    assert sorted(config.domains) == ["example.com", "example.org", "shop.example"]
    assert config.domains["example.com"] == "standard"

    standard = config.entries_of("example.com")
    assert standard["imaps"] == (
        srv("_imaps._tcp", (0, 10, 993, "imap1.example.net"), (0, 5, 993, "imap2.example.net")),
    )
    assert standard["submissions"] == (srv("_submissions._tcp", (0, 0, 465, "smtp.example.net")),)
    for key in ("imap", "pop3", "pop3s", "submission"):
        assert standard[key] == (srv(f"_{key}._tcp", OFF),)
    assert standard["caldavs"] == (
        srv("_caldavs._tcp", (0, 0, 443, "dav.example.net")),
        txt("_caldavs._tcp", "path=/dav/"),
    )
    assert standard["axigen"] == (txt("_axigen", "webmail.example.net"),)
    assert standard["srv _xmpp-client._tcp"] == (
        srv("_xmpp-client._tcp", (0, 0, 5222, "xmpp.example.net")),
    )
    assert standard["txt _imaps._tcp"] == (txt("_imaps._tcp", "v=example"),)
    assert "caldav" not in standard and "carddav" not in standard  # absent: not published

    org = config.entries_of("example.org")
    assert org["imaps"] == (srv("_imaps._tcp", (0, 0, 993, "mail.example.org")),)
    assert org["jmap"] == standard["jmap"]

    branded = config.entries_of("shop.example")
    assert branded["imaps"] == (srv("_imaps._tcp", (0, 0, 993, "mail.{domain}")),)
    assert branded["axigen"] == (txt("_axigen", "webmail.{domain}:443"),)
    assert all(spec.templated for spec in branded["imaps"] or ())


def test_idna_and_normalisation(tmp_path: Path) -> None:
    text = ZONE + y(
        """\
        profiles:
          p:
            imaps: {target: MAIL.Bücher.Example., port: 993}
            pop3s: {target: pop.example.net, port: 995}
            submissions: {target: SMTP.Example.NET., port: 465}
            axigen: WebMail.Example.NET
        domains:
          bücher.example: p
          Example.COM.: p
          STRASSE.example: p
        """
    )
    config = load(tmp_path, {MAIN: text})
    assert sorted(config.domains) == ["example.com", "strasse.example", "xn--bcher-kva.example"]
    entries = config.entries_of("xn--bcher-kva.example")
    assert entries["imaps"] == (srv("_imaps._tcp", (0, 0, 993, "mail.xn--bcher-kva.example")),)
    assert entries["submissions"] == (srv("_submissions._tcp", (0, 0, 465, "smtp.example.net")),)
    assert entries["axigen"] == (txt("_axigen", "webmail.example.net"),)


def test_uppercase_unicode_domain(tmp_path: Path) -> None:
    text = ZONE + "profiles:\n  p: {}\ndomains:\n  BÜCHER.Example.: p\n"
    assert list(load(tmp_path, {MAIN: text}).domains) == ["xn--bcher-kva.example"]


def test_trailing_dot_is_optional(tmp_path: Path) -> None:
    text = ZONE + y(
        """\
        profiles:
          with:
            imaps: {target: imap.example.net., port: 993}
          without:
            imaps: {target: imap.example.net, port: 993}
        """
    )
    config = load(tmp_path, {MAIN: text})
    assert config.profiles["with"].entries == config.profiles["without"].entries


def test_longest_names_are_accepted(tmp_path: Path) -> None:
    label63 = "c" * 63
    text = ZONE + y(
        f"""\
        profiles:
          p:
            imaps: {{target: {NAME_255}, port: 993}}
            pop3s: {{target: {label63}.example.net, port: 995}}
        """
    )
    entries = load(tmp_path, {MAIN: text}).profiles["p"].entries
    assert entries["imaps"] == (srv("_imaps._tcp", (0, 0, 993, NAME_255)),)


def test_service_keys_owners_and_defaults(tmp_path: Path) -> None:
    keys = [
        "imap",
        "imaps",
        "pop3",
        "pop3s",
        "submission",
        "submissions",
        "caldav",
        "caldavs",
        "carddav",
        "carddavs",
        "jmap",
        "autodiscover",
    ]
    body = "".join(
        f"    {key}: {{target: {key}.example.net, port: {i + 1}}}\n" for i, key in enumerate(keys)
    )
    text = ZONE + "profiles:\n  p:\n" + body + "    axigen: webmail.example.net:8443\n"
    entries = load(tmp_path, {MAIN: text}).profiles["p"].entries
    for i, key in enumerate(keys):
        assert entries[key] == (srv(f"_{key}._tcp", (0, 0, i + 1, f"{key}.example.net")),)
    assert entries["axigen"] == (txt("_axigen", "webmail.example.net:8443"),)


def test_off_false_and_absent(tmp_path: Path) -> None:
    text = ZONE + y(
        """\
        profiles:
          p:
            imap: off
            pop3: false
            pop3s: no
            imaps: {target: ., port: 0}
            submission: null
            axigen: off
            srv:
              _sieve._tcp: off
        """
    )
    entries = load(tmp_path, {MAIN: text}).profiles["p"].entries
    assert entries["imap"] == (srv("_imap._tcp", OFF),)
    assert entries["pop3"] == (srv("_pop3._tcp", OFF),)
    assert entries["pop3s"] == (srv("_pop3s._tcp", OFF),)
    assert entries["imaps"] == (srv("_imaps._tcp", OFF),)
    assert entries["srv _sieve._tcp"] == (srv("_sieve._tcp", OFF),)
    assert entries["submission"] is None
    assert entries["axigen"] is None
    assert "jmap" not in entries


def test_overrides_merge(tmp_path: Path) -> None:
    text = ZONE + y(
        """\
        profiles:
          p:
            imaps: {target: imap.example.net, port: 993}
            pop3s: {target: pop.example.net, port: 995}
            submissions: {target: smtp.example.net, port: 465}
            axigen: webmail.example.net
        domains:
          example.com:
            profile: p
            imaps: {target: mail.example.com, port: 993, priority: 5, weight: 7}
            pop3s: null
            axigen: off
            jmap: {target: jmap.example.com, port: 443}
            submissions: off
          example.org:
            imaps: {target: mail.example.org, port: 993}
        """
    )
    config = load(tmp_path, {MAIN: text})
    override = config.domains["example.com"]
    assert isinstance(override, DomainOverride)
    assert override.profile == "p"
    merged = config.entries_of("example.com")
    assert merged["imaps"] == (srv("_imaps._tcp", (5, 7, 993, "mail.example.com")),)
    assert merged["pop3s"] is None
    assert merged["axigen"] is None
    assert merged["jmap"] == (srv("_jmap._tcp", (0, 0, 443, "jmap.example.com")),)
    assert merged["submissions"] == (srv("_submissions._tcp", OFF),)
    # the profile itself is unchanged
    assert config.profiles["p"].entries["pop3s"] == (
        srv("_pop3s._tcp", (0, 0, 995, "pop.example.net")),
    )
    # a domain without a profile: only its own keys
    assert config.entries_of("example.org") == {
        "imaps": (srv("_imaps._tcp", (0, 0, 993, "mail.example.org")),)
    }


def test_includes_globs_and_json(tmp_path: Path) -> None:
    more = {
        "domains": {
            "json.example": "p",
            "override.example": {"profile": "q", "imaps": None},
        }
    }
    files = {
        MAIN: ZONE
        + y(
            """\
            profiles:
              p:
                imaps: {target: imap.example.net, port: 993}
            domains:
              main.example: p
            include:
              - conf.d/*.yaml
              - nothing/*.yaml
            """
        ),
        "conf.d/10-profiles.yaml": y(
            """\
            profiles:
              q:
                imaps: {target: other.example.net, port: 993}
                pop3s: {target: other.example.net, port: 995}
            include: ["json/*.json"]
            """
        ),
        "conf.d/20-domains.yaml": "domains:\n  a.example: q\n",
        "conf.d/readme.txt": "not: included\n",
        "conf.d/json/more.json": json.dumps(more, indent=2),
    }
    config = load(tmp_path, files)
    assert config.files == (
        str(tmp_path / MAIN),
        str(tmp_path / "conf.d/10-profiles.yaml"),
        str(tmp_path / "conf.d/json/more.json"),
        str(tmp_path / "conf.d/20-domains.yaml"),
    )
    assert sorted(config.profiles) == ["p", "q"]
    assert sorted(config.domains) == [
        "a.example",
        "json.example",
        "main.example",
        "override.example",
    ]
    assert config.domains["a.example"] == "q"
    assert config.domains["json.example"] == "p"
    merged = config.entries_of("override.example")
    assert merged["imaps"] is None
    assert merged["pop3s"] == (srv("_pop3s._tcp", (0, 0, 995, "other.example.net")),)


def test_include_as_a_single_string(tmp_path: Path) -> None:
    files = {
        MAIN: ZONE + "profiles:\n  p: {}\ninclude: more.yaml\n",
        "more.yaml": "domains:\n  example.com: p\n",
    }
    assert list(load(tmp_path, files).domains) == ["example.com"]


def test_templates_accepted(tmp_path: Path) -> None:
    text = ZONE + y(
        """\
        profiles:
          branded:
            imaps: {target: "mail.{domain}", port: 993}
            pop3s: {target: "{domain}", port: 995}
            submissions: {target: "SMTP.Out.{domain}.", port: 465}
            axigen: "webmail.{domain}:443"
            txt:
              _imaps._tcp: "served for {domain}"
        domains:
          shop.example: branded
        """
    )
    entries = load(tmp_path, {MAIN: text}).profiles["branded"].entries
    assert entries["imaps"] == (srv("_imaps._tcp", (0, 0, 993, "mail.{domain}")),)
    assert entries["pop3s"] == (srv("_pop3s._tcp", (0, 0, 995, "{domain}")),)
    assert entries["submissions"] == (srv("_submissions._tcp", (0, 0, 465, "smtp.out.{domain}")),)
    assert entries["axigen"] == (txt("_axigen", "webmail.{domain}:443"),)
    assert entries["txt _imaps._tcp"] == (txt("_imaps._tcp", "served for {domain}"),)
    for key in ("imaps", "pop3s", "submissions", "axigen", "txt _imaps._tcp"):
        assert all(spec.templated for spec in entries[key] or ()), key


@pytest.mark.parametrize(
    ("hostmaster", "local", "domain"),
    [
        (None, "hostmaster", "example.net"),
        ("john.doe@example.net", "john.doe", "example.net"),
        ("dns-admin@Example.NET.", "dns-admin", "example.net"),
        ("hostmaster.example.net", "hostmaster", "example.net"),
        ("hostmaster.example.net.", "hostmaster", "example.net"),
    ],
)
def test_hostmaster_forms(hostmaster: str | None, local: str, domain: str, tmp_path: Path) -> None:
    text = ZONE + (f"  hostmaster: '{hostmaster}'\n" if hostmaster else "")
    zone = load(tmp_path, {MAIN: text}).zone
    assert (zone.hostmaster_local, zone.hostmaster_domain) == (local, domain)


def test_zone_and_tcp_settings(tmp_path: Path) -> None:
    text = y(
        """\
        zone:
          ttl: 300
          nameservers: [NS1.Example.NET., ns2.example.net]
          refresh: 7200
          retry: 900
          expire: 604800
          minimum: 60
        tcp:
          idle_timeout: 2.5
          max_connections: 10
        state_dir: state
        """
    )
    config = load(tmp_path, {MAIN: text})
    assert config.zone.nameservers == ("ns1.example.net", "ns2.example.net")
    assert (config.zone.ttl, config.zone.refresh, config.zone.retry) == (300, 7200, 900)
    assert (config.zone.expire, config.zone.minimum, config.zone.negative_ttl) == (604800, 60, 60)
    assert (config.tcp.idle_timeout, config.tcp.max_connections) == (2.5, 10)
    assert config.state_dir == str(tmp_path / "state")
    assert config.domains == {}


@pytest.mark.parametrize(
    ("listen", "endpoints"),
    [
        (None, (Endpoint("0.0.0.0", 53), Endpoint("::", 53))),
        ("'127.0.0.1:5353'", (Endpoint("127.0.0.1", 5353),)),
        (
            "['[::1]:5353', 127.0.0.2, '::2']",
            (
                Endpoint("::1", 5353),
                Endpoint("127.0.0.2", 53),
                Endpoint("::2", 53),
            ),
        ),
    ],
)
def test_listen_forms(listen: str | None, endpoints: tuple[Endpoint, ...], tmp_path: Path) -> None:
    text = ZONE + (f"listen: {listen}\n" if listen else "")
    assert load(tmp_path, {MAIN: text}).listen == endpoints


def test_missing_glob_is_not_an_error(tmp_path: Path) -> None:
    text = ZONE + "include: ['conf.d/*.yaml', '*.json']\n"
    config = load(tmp_path, {MAIN: text})
    assert config.files == (str(tmp_path / MAIN),)


# ---------------------------------------------------------------------------------------------
# Rate limiting, TCP limits and resource limits


def test_rrl_tcp_and_limits_settings(tmp_path: Path) -> None:
    text = ZONE + y(
        """\
        tcp:
          message_timeout: 1.5
          max_pipelined: 20
        rrl:
          responses_per_second: 20
          slip: 1
          ipv4_prefix: 22
          ipv6_prefix: 48
          table_size: 1000
          exempt: [192.0.2.1, 2001:db8::/32]
        limits:
          max_domains: 5
          max_txt_length: 100
        """
    )
    config = load(tmp_path, {MAIN: text})
    assert (config.tcp.message_timeout, config.tcp.max_pipelined) == (1.5, 20)
    assert config.tcp.idle_timeout == 10.0  # the defaults stay for what is not given
    rrl = config.rrl
    assert (rrl.responses_per_second, rrl.slip, rrl.ipv4_prefix, rrl.ipv6_prefix) == (20, 1, 22, 48)
    assert rrl.table_size == 1000 and rrl.exempt == ("192.0.2.1/32", "2001:db8::/32")
    assert (config.limits.max_domains, config.limits.max_txt_length) == (5, 100)
    assert config.limits.max_records_per_name == 100


def test_rrl_defaults_and_off(tmp_path: Path) -> None:
    assert load(tmp_path, {MAIN: ZONE}).rrl.enabled
    assert load(tmp_path, {MAIN: ZONE}).rrl.responses_per_second == 50
    assert not load(tmp_path, {MAIN: ZONE + "rrl: off\n"}).rrl.enabled
    assert not load(tmp_path, {MAIN: ZONE + "rrl: {responses_per_second: 0}\n"}).rrl.enabled


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("rrl: {slip: 11}\n", "rrl.slip", "out of range"),
        ("rrl: {ipv4_prefix: 33}\n", "rrl.ipv4_prefix", "out of range"),
        ("rrl: {exempt: [not-an-address]}\n", "rrl.exempt[0]", "expected an address or prefix"),
        ("rrl: {rate: 5}\n", "rrl.rate", "unknown key"),
        ("tcp: {message_timeout: 0}\n", "tcp.message_timeout", "more than 0"),
        ("tcp: {max_pipelined: 0}\n", "tcp.max_pipelined", "out of range"),
        ("limits: {max_domains: 0}\n", "limits.max_domains", "out of range"),
    ],
)
def test_rrl_tcp_and_limits_problems(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    problems = problems_of(tmp_path, {MAIN: ZONE + text})
    assert [(p.key, p.line) for p in problems] == [(key, 3)]
    assert fragment in problems[0].message


def test_limits_are_enforced_with_a_clear_error(tmp_path: Path) -> None:
    base = ZONE + "limits: {max_domains: 2, max_records_per_name: 2, max_txt_length: 10}\n"
    files = {
        MAIN: base + "include: [more.yaml]\n",
        "more.yaml": y(
            """\
            profiles:
              p:
                imaps: [{target: a.example.net, port: 993}, {target: b.example.net, port: 993},
                        {target: c.example.net, port: 993}]
                txt:
                  _x._tcp: 'more than ten octets'
            domains:
              a.example: p
              b.example: p
              c.example: p
            """
        ),
    }
    found = {(Path(p.file).name, p.line, p.key): p.message for p in problems_of(tmp_path, files)}
    assert "3 records at one name; at most 2" in found["more.yaml", 3, "profiles.p.imaps"]
    assert "20 octets; at most 10" in found["more.yaml", 6, "profiles.p.txt._x._tcp"]
    assert "more than 2 domains" in found["more.yaml", 10, "domains.c.example"]
    assert len(found) == 3


def test_an_included_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    files = {
        MAIN: ZONE + "limits: {max_file_size: 2048}\ninclude: [big.yaml]\n",
        "big.yaml": "domains:\n" + "".join(f"  d{i}.example: p\n" for i in range(200)),
    }
    problems = problems_of(tmp_path, files)
    assert len(problems) == 1
    assert problems[0].key == "include[0]" and problems[0].file == str(tmp_path / MAIN)
    assert "at most 2048 (limits: max_file_size)" in problems[0].message
