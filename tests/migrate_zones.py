"""Generated zone sets for the import tests and the import benchmark: customer zones written as
RFC 1035 master files by several providers' patterns, with per-domain deviations (overrides),
templated hosts (the customer's own domain in targets and texts) and odd cases that cannot be
carried over (each known here, so the tests can check the report names it).

Written independently of srvd.migrate: plain text, as a provider's tooling would write it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

NAMESERVERS = ("ns1.discovery.provider.test", "ns2.discovery.provider.test")
TTL = 3600

Lines = list[str]


def _classic(d: str) -> Lines:
    return [
        "_imaps._tcp IN SRV 0 10 993 imap1.mailhost.example.",
        "_imaps._tcp IN SRV 0 5 993 imap2.mailhost.example.",
        "_imaps._tcp IN SRV 10 0 993 imap-backup.mailhost.example.",
        "_submissions._tcp IN SRV 0 1 465 smtp.mailhost.example.",
        "_imap._tcp IN SRV 0 0 0 .",
        "_pop3._tcp IN SRV 0 0 0 .",
        "_caldavs._tcp IN SRV 0 1 443 dav.mailhost.example.",
        '_caldavs._tcp IN TXT "path=/dav/"',
        "_carddavs._tcp IN SRV 0 1 443 dav.mailhost.example.",
        '_carddavs._tcp IN TXT "path=/dav/"',
        "_autodiscover._tcp IN SRV 0 1 443 autodiscover.mailhost.example.",
        '_axigen IN TXT "webmail.mailhost.example"',
    ]


def _branded(d: str) -> Lines:
    return [
        f"_imaps._tcp.{d}. IN SRV 0 1 993 mail.{d}.",
        "_submissions._tcp IN SRV 0 60 465 smtp1",
        "_submissions._tcp IN SRV 0 40 465 smtp2",
        f"_submission._tcp IN SRV 10 0 587 {d}.",
        "_caldavs._tcp IN SRV 0 1 443 dav",
        '_caldavs._tcp IN TXT "path=/cal/"',
        f'_axigen IN TXT "webmail.{d}:443"',
        f'_info._tcp IN TXT "mail for {d}"',
    ]


def _cloud(d: str) -> Lines:
    return [
        "_autodiscover._tcp IN SRV 0 0 443 autodiscover.cloudmail.example.",
        "_sipfederationtls._tcp IN SRV 100 1 5061 sipfed.cloudmail.example.",
        "_sip._tls IN SRV 100 1 443 sipdir.cloudmail.example.",  # outside srvd's subzones
        "_submission._tcp IN SRV 0 1 587 smtp.cloudmail.example.",
        "_imaps._tcp IN SRV 0 1 993 outlook.cloudmail.example.",
    ]


def _minimal(d: str) -> Lines:
    return [
        "_submissions._tcp IN SRV 0 1 465 smtp.tinyhost.example.",
        "_xmpp-client._tcp IN SRV 5 1 5222 xmpp.tinyhost.example.",
        "_xmpp-server._tcp IN SRV 5 1 5269 xmpp.tinyhost.example.",
        "_sip._udp IN SRV 0 1 5060 sip.tinyhost.example.",
        '_tcp IN TXT "v=apex"',
    ]


def _dav(d: str) -> Lines:
    return [
        "_caldav._tcp IN SRV 0 1 80 cal.davhost.example.",
        '_caldav._tcp IN TXT "path=/cal/"',
        "_carddav._tcp IN SRV 0 1 80 card.davhost.example.",
        '_carddav._tcp IN TXT "path=/card/"',
        "_jmap._tcp IN SRV 0 1 443 jmap.davhost.example.",
        "_pop3s._tcp IN SRV 0 1 995 pop.davhost.example.",
        '_deep._x._tcp IN TXT "v=deep"',
    ]


PATTERNS: dict[str, Callable[[str], Lines]] = {
    "classic": _classic,
    "branded": _branded,
    "cloud": _cloud,
    "minimal": _minimal,
    "dav": _dav,
}
# the profile name srvd import is expected to give each pattern (its dominant target host)
PROFILE_NAMES = {
    "classic": "mailhost-example",
    "branded": "own-domain",
    "cloud": "cloudmail-example",
    "minimal": "tinyhost-example",
    "dav": "davhost-example",
}

# Odd cases: a deviation from the domain's pattern that srvd cannot carry over, with the owner
# (relative to the domain) of the names whose answers differ from the original's.
ODD: dict[str, tuple[str, Callable[[str, Lines], Lines]]] = {
    "cname": (
        "_autodiscover._tcp",
        lambda d, lines: (
            [x for x in lines if not x.startswith("_autodiscover._tcp")]
            + ["_autodiscover._tcp IN CNAME autodiscover.elsewhere.example."]
        ),
    ),
    "ttl": (
        "_submissions._tcp",
        lambda d, lines: [
            x.replace("_submissions._tcp IN", "_submissions._tcp 300 IN") for x in lines
        ],
    ),
    "tlsa": (
        "_25._tcp",
        lambda d, lines: [*lines, "_25._tcp IN TLSA 3 1 1 " + "ab" * 32],
    ),
    "dot": (
        "_pop3s._tcp",
        lambda d, lines: [
            *lines,
            "_pop3s._tcp IN SRV 0 0 0 .",
            "_pop3s._tcp IN SRV 0 1 995 pop.elsewhere.example.",
        ],
    ),
    "delegated": (
        "_udp",
        lambda d, lines: [*lines, "_udp IN NS ns.elsewhere.example."],
    ),
    "split": (
        "_info._tcp",
        lambda d, lines: [*lines, '_info._tcp IN TXT "two " "strings"'],
    ),
    "wildcard": (
        "*._tcp",
        lambda d, lines: [*lines, '*._tcp IN TXT "any"'],
    ),
}


def number_of(domain: str) -> int:
    """The number a generated domain was made with."""
    found = re.search(r"cust(\d{5})", domain)
    assert found, domain
    return int(found.group(1))


@dataclass
class ZoneSet:
    directory: Path
    pattern_of: dict[str, str] = field(default_factory=dict)
    overridden: set[str] = field(default_factory=set)
    odd: dict[str, str] = field(default_factory=dict)  # domain → kind (a key of ODD)
    files: dict[str, str] = field(default_factory=dict)  # file name → domain (IDNA)

    @property
    def domains(self) -> list[str]:
        return sorted(self.pattern_of)


def _override(rng: random.Random, d: str, number: int, lines: Lines) -> Lines:
    """One deviation of this domain alone: its own IMAP host, or a port of its own."""
    own = [x for x in lines if not x.startswith(("_imaps._tcp", f"_imaps._tcp.{d}."))]
    if number % 2:
        return [*own, f"_imaps._tcp IN SRV 0 1 993 imap.customer{number}.example."]
    return [*own, f"_imaps._tcp IN SRV 0 1 {10000 + number} imap.customer{number}.example."]


def zone_text(d: str, body: Lines, serial: int) -> str:
    head = [
        f"$ORIGIN {d}.",
        f"$TTL {TTL}",
        f"@ IN SOA ns1.registrar.test. hostmaster.registrar.test. ( {serial} 7200 900",
        "      1209600 300 )",
        "@ IN NS ns1.registrar.test.",
        "@ IN NS ns2.registrar.test.",
        "@ IN MX 10 mx.registrar.test.",
        "www IN A 192.0.2.10",
        '_dmarc IN TXT "v=DMARC1; p=none"',
    ]
    return "\n".join(head + body) + "\n"


def generate(
    directory: Path,
    count: int,
    seed: int = 16,
    overrides: float = 0.03,
    odd: bool = True,
    patterns: tuple[str, ...] = tuple(PATTERNS),
) -> ZoneSet:
    """``count`` customer zones in ``directory``, spread over ``patterns``; a share of them
    with a deviation of their own, and (with ``odd``) each odd case on one domain."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    out = ZoneSet(directory)
    odd_kinds = list(ODD) if odd else []
    for number in range(count):
        pattern = patterns[number % len(patterns)]
        d = f"cust{number:05d}.{('example', 'test', 'invalid')[number % 3]}"
        shown = d  # the file's name: one in Unicode, as a provider may well have it
        if number == 7:
            d, shown = "xn--bcher-cust00007-zvb.example", "bücher-cust00007.example"
        lines = PATTERNS[pattern](d)
        if number >= len(patterns) * 2 and odd_kinds and number % 97 == 3:
            kind = odd_kinds.pop()
            needs = {"dot": "", "ttl": "_submissions._tcp", "cname": "_autodiscover"}.get(kind)
            if (kind == "dot" and pattern == "dav") or (
                needs and not any(x.startswith(needs) for x in lines)
            ):
                odd_kinds.append(kind)  # not on this pattern: the next odd domain takes it
            else:
                lines = ODD[kind][1](d, lines)
                out.odd[d] = kind
        elif number >= len(patterns) * 2 and rng.random() < overrides and pattern != "dav":
            lines = _override(rng, d, number, lines)
            out.overridden.add(d)
        rng.shuffle(lines)
        name = shown + (".zone" if number % 2 else "")
        out.files[name] = d
        (directory / name).write_text(zone_text(d, lines, 2024010100 + number), encoding="utf-8")
        out.pattern_of[d] = pattern
    assert not odd_kinds, f"odd cases not planted: {odd_kinds} (more domains needed)"
    return out
