"""``srvd dnssec``: the key commands (``keygen``, ``ds``); signing itself is srvd.index.dnssec.

``srvd dnssec keygen [--algorithm 13|15] -o PATH`` writes a new private key (PKCS#8 PEM, mode
0600, never over an existing file) and prints its key tag. ``srvd dnssec ds [-c FILE] DOMAIN...``
(or ``--all``) prints the DS records (SHA-256) that each customer's parent zone needs for the
zones srvd serves for it (``_tcp.D``, ``_axigen.D``), one per key in the DNSKEY RRset (the
signing key and any ``publish:`` key of a rollover), in master-file syntax.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable

from srvd.config import Config
from srvd.config.model import DnssecSettings
from srvd.http.pacc import OWNER as PACC_OWNER
from srvd.http.pacc import deriver
from srvd.index.build import build_index
from srvd.index.zonefile import domain_zones
from srvd.wire.dnssec import (
    ECDSAP256SHA256,
    ED25519,
    DnssecKeyError,
    ds_text,
    generate_key,
    load_key,
)
from srvd.wire.names import master_name


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], config_help: str
) -> None:
    """Register ``srvd dnssec keygen`` and ``srvd dnssec ds``."""
    dnssec = commands.add_parser("dnssec", help="DNSSEC keys: make one, print the DS records")
    actions = dnssec.add_subparsers(dest="dnssec_command", required=True, metavar="ACTION")
    keygen = actions.add_parser("keygen", help="write a new signing key (PKCS#8 PEM, mode 0600)")
    keygen.add_argument(
        "--algorithm",
        type=int,
        choices=(ECDSAP256SHA256, ED25519),
        default=ECDSAP256SHA256,
        help="13: ECDSA P-256 with SHA-256 (default), 15: Ed25519",
    )
    keygen.add_argument("-o", "--output", required=True, metavar="PATH", help="the key file")
    ds = actions.add_parser("ds", help="print the DS records each customer's parent zone needs")
    ds.add_argument("domains", nargs="*", metavar="DOMAIN")
    ds.add_argument("-c", "--config", help=config_help)
    ds.add_argument("--all", action="store_true", help="every configured domain")


def summary(settings: DnssecSettings) -> str:
    """What ``srvd check`` says of the dnssec: section."""
    key = load_key(settings.key.data)
    published = [load_key(k.data) for k in settings.publish]
    text = f"DNSSEC: every zone signed with key tag {key.tag} (algorithm {key.algorithm})"
    if published:
        text += "; published too: " + ", ".join(f"key tag {k.tag}" for k in published)
    days = settings.lifetime / 86400, settings.refresh / 86400
    text += f"; signatures valid {days[0]:g} d, renewed every {days[1]:g} d"
    if settings.denial == "compact":
        text += "; names that do not exist get compact answers (RFC 9824)"
    return text


def keygen(algorithm: int, output: str) -> int:
    pem = generate_key(algorithm)
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        print(f"srvd dnssec keygen: cannot create {output}: {exc.strerror}", file=sys.stderr)
        return 1
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    key = load_key(pem)
    print(f"srvd dnssec keygen: {output}: algorithm {key.algorithm}, key tag {key.tag}")
    return 0


def ds_lines(config: Config, domains: Iterable[str] | None) -> list[str]:
    """The DS lines of the given domains (None: every domain), zone by zone."""
    settings = config.dnssec
    assert settings is not None
    keys = [load_key(k.data) for k in (settings.key, *settings.publish)]
    index = build_index(config, None, deriver(config.http))  # with PACC's zones, if on
    if domains is None:
        apexes = sorted(index.zones)
    else:
        apexes = [
            apex
            for domain in domains
            for apex, _ in domain_zones(config, index, domain, (PACC_OWNER,))
        ]
    ttl = config.zone.ttl
    out = []
    for apex in apexes:
        owner = master_name(apex)
        out += [f"{owner} {ttl} IN DS {ds_text(apex, key.dnskey)}" for key in keys]
    return out


def ds(config: Config, domains: list[str], every: bool) -> int:
    if config.dnssec is None:
        print(f"srvd dnssec ds: {config.source} has no dnssec: key", file=sys.stderr)
        return 1
    if every == bool(domains):
        print("srvd dnssec ds: give DOMAIN... or --all", file=sys.stderr)
        return 2
    try:
        names = [config.domain_named(domain) for domain in domains]
    except ValueError as exc:
        print(f"srvd dnssec ds: {exc}", file=sys.stderr)
        return 1
    try:
        lines = ds_lines(config, None if every else names)
    except DnssecKeyError as exc:  # pragma: no cover - the configuration checked the keys
        print(f"srvd dnssec ds: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0
