"""The ``dnssec:`` key of the configuration: online signing of every served zone.

```yaml
dnssec:
  key: dnssec/csk.pem          # PKCS#8 PEM (EC P-256: algorithm 13, Ed25519: 15) or K*.private
  publish: [dnssec/next.pem]   # rollover: keys in the DNSKEY RRset that sign nothing (optional)
  lifetime: 14d                # how long a signature is valid (seconds, or with s/m/h/d)
  refresh: 7d                  # a new validity window this often, per zone (< lifetime)
  backdate: 1h                 # inception this far before the window (clock skew)
  cache_size: 1000000          # signatures kept in memory, at most (about 260 MB)
  denial: nsec                 # nonexistent names: nsec (the NSEC chain) or compact (RFC 9824)
```

Key files are read (and parsed: algorithm, curve) when the configuration is, so ``srvd check``
names a bad key by file, line and key; paths are relative to the configuration file.
"""

from __future__ import annotations

import os
from typing import Any

from srvd.config.model import (
    DNSSEC_BACKDATE,
    DNSSEC_CACHE,
    DNSSEC_DENIALS,
    DNSSEC_LIFETIME,
    DNSSEC_REFRESH,
    DnssecKey,
    DnssecSettings,
    KeyPath,
)
from srvd.config.reader import _Fields, _Invalid, _Reader
from srvd.wire.dnssec import DnssecKeyError, load_key

DNSSEC_KEYS = ("key", "publish", "lifetime", "refresh", "backdate", "cache_size", "denial")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def read_dnssec(reader: _Reader, value: Any, path: KeyPath, base: str) -> DnssecSettings:
    """``dnssec:`` → DnssecSettings; ``base`` is the directory of the configuration file."""
    if not isinstance(value, dict):
        reader.fail(path, "expected a mapping with at least key: PATH")
    raw = reader.mapping(value, path, DNSSEC_KEYS)
    fields = _Fields()
    if "key" not in raw:
        reader.fail(path, "key is required: the private key file that signs the zones")
    key = fields(_key_file, reader, raw["key"], (*path, "key"), base)
    publish_raw = raw.get("publish") or []
    if isinstance(publish_raw, str):
        publish_raw = [publish_raw]
    if not isinstance(publish_raw, list):
        reader.fail((*path, "publish"), "expected a list of key files")
    publish = [
        fields(_key_file, reader, item, (*path, "publish", i), base)
        for i, item in enumerate(publish_raw)
    ]
    times = {}
    for name, default, low, high in (
        ("lifetime", DNSSEC_LIFETIME, 3 * 3600, 365 * 86400),
        ("refresh", DNSSEC_REFRESH, 3600, 365 * 86400),
        ("backdate", DNSSEC_BACKDATE, 0, 86400),
    ):
        got = default
        if name in raw:
            got = fields(_duration, reader, raw[name], (*path, name), low, high) or default
        times[name] = got
    cache = DNSSEC_CACHE
    if "cache_size" in raw:
        size = fields(reader.integer, raw["cache_size"], (*path, "cache_size"), 16, 100_000_000)
        cache = size or DNSSEC_CACHE
    denial = raw.get("denial", DNSSEC_DENIALS[0])
    if denial not in DNSSEC_DENIALS:
        fields(reader.fail, (*path, "denial"), f"expected one of {', '.join(DNSSEC_DENIALS)}")
    fields.done()
    keys = [k for k in publish if k is not None]
    if key is None or len(keys) != len(publish):  # pragma: no cover - done() raised
        raise _Invalid
    if times["refresh"] * 2 > times["lifetime"]:
        reader.fail(
            (*path, "refresh"),
            "must be at most half the lifetime, so that signatures are renewed well before "
            "they expire",
        )
    algorithms = {load_key(k.data).algorithm for k in (key, *keys)}
    if len(algorithms) > 1:
        reader.fail(
            (*path, "publish"),
            "a published key must have the signing key's algorithm (srvd signs with one key: "
            "an algorithm rollover would need every RRset signed with both)",
        )
    tags = [_tag(k) for k in (key, *keys)]
    if len(set(tags)) != len(tags):
        reader.fail((*path, "publish"), "a key is listed twice (or two keys share a key tag)")
    return DnssecSettings(
        key,
        tuple(keys),
        times["lifetime"],
        times["refresh"],
        times["backdate"],
        cache,
        denial,
    )


def key_tags(settings: DnssecSettings) -> tuple[int, ...]:
    """The key tags of the DNSKEY RRset (ZoneSettings.dnssec_keys), signing key first."""
    return tuple(_tag(k) for k in (settings.key, *settings.publish))


def _tag(key: DnssecKey) -> int:
    return load_key(key.data).tag


def _key_file(reader: _Reader, value: Any, path: KeyPath, base: str) -> DnssecKey:
    name = os.path.join(base, os.path.expanduser(reader.text(value, path)))
    try:
        with open(name, "rb") as handle:
            data = handle.read(1 << 16)
    except OSError as exc:
        reader.fail(path, f"cannot read {name}: {exc.strerror}")
    try:
        load_key(data)
    except DnssecKeyError as exc:
        reader.fail(path, f"{name}: {exc}")
    return DnssecKey(name, data)


def _duration(reader: _Reader, value: Any, path: KeyPath, low: int, high: int) -> int:
    """Seconds, as a number or a number with a unit (s, m, h, d, w)."""
    if isinstance(value, bool):
        reader.fail(path, "expected a duration such as 3600, 12h or 14d")
    if isinstance(value, int):
        seconds = value
    else:
        text = str(value).strip().lower()
        unit = _UNITS.get(text[-1:]) if text else None
        number = text[:-1] if unit else text
        if not number.isdigit():
            reader.fail(path, f"expected a duration such as 3600, 12h or 14d, found {value!r}")
        seconds = int(number) * (unit or 1)
    if not low <= seconds <= high:
        reader.fail(path, f"expected between {low} and {high} seconds, found {seconds}")
    return seconds
