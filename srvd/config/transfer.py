"""The ``transfer:`` and ``catalog:`` keys of the configuration (srvd as a hidden primary).

Validated with srvd.config.reader's helpers, so every problem is reported with file, line and key;
the settings it makes (TransferSettings, AllowRule, NotifyTarget) are in srvd.config.model.

```yaml
transfer:
  keys:
    - {name: xfr-key, algorithm: hmac-sha256, secret_file: xfr-key.secret}   # or secret: BASE64
  allow:                                  # who may transfer (AXFR/IXFR): address/prefix + key
    - {address: 192.0.2.0/24, key: xfr-key}
  notify:                                 # secondaries told of changes (RFC 1996)
    - {address: 192.0.2.53, port: 53, key: xfr-key}
  notify_rate: 1000                       # NOTIFY messages per second at most
catalog: catalog.discovery.example.net    # RFC 9432 catalog zone of every served zone
```
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
from typing import Any

from srvd.config.model import (
    DEFAULT_NOTIFY_RATE,
    AllowRule,
    KeyPath,
    NotifyTarget,
    TransferSettings,
)
from srvd.config.reader import _Fields, _Invalid, _Reader
from srvd.wire.names import InvalidName, host_name
from srvd.wire.tsig import ALGORITHMS, Key, make_key, name_wire

TRANSFER_KEYS = ("keys", "allow", "notify", "notify_rate")
KEY_KEYS = ("name", "algorithm", "secret", "secret_file")
ALLOW_KEYS = ("address", "key")
NOTIFY_KEYS = ("address", "port", "key")


def read_transfer(reader: _Reader, value: Any, path: KeyPath, base: str) -> TransferSettings:
    """``transfer:`` → TransferSettings; ``base`` is the directory of the configuration file."""
    raw = reader.mapping(value, path, TRANSFER_KEYS)
    fields = _Fields()
    keys = fields(_keys, reader, raw.get("keys"), (*path, "keys"), base)
    known = {key.name for key in keys or ()}
    allow = fields(_allow, reader, raw.get("allow"), (*path, "allow"), known)
    notify = fields(_notify, reader, raw.get("notify"), (*path, "notify"), known)
    rate = DEFAULT_NOTIFY_RATE
    if "notify_rate" in raw:
        got = fields(reader.integer, raw["notify_rate"], (*path, "notify_rate"), 1, 1_000_000)
        rate = got or rate
    fields.done()
    if keys is None or allow is None or notify is None:  # pragma: no cover - done() raised
        raise _Invalid
    return TransferSettings(keys, allow, notify, rate)


def _list(reader: _Reader, value: Any, path: KeyPath) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        reader.fail(path, "expected a list")
    return value


def _keys(reader: _Reader, value: Any, path: KeyPath, base: str) -> tuple[Key, ...]:
    """The keys that are valid (the problems of the others are recorded: loading fails)."""
    fields = _Fields()
    out: list[Key] = []
    seen: set[bytes] = set()
    for i, item in enumerate(_list(reader, value, path)):
        key = fields(_key, reader, item, (*path, i), base)
        if key is None:
            continue
        if key.name in seen:
            reader.problem((*path, i, "name"), "this key name is defined twice")
            continue
        seen.add(key.name)
        out.append(key)
    return tuple(out)


def _key(reader: _Reader, value: Any, path: KeyPath, base: str) -> Key:
    if not isinstance(value, dict):
        reader.fail(path, "expected a mapping with name, algorithm and secret or secret_file")
    raw = reader.mapping(value, path, KEY_KEYS)
    name = reader.text(raw.get("name"), (*path, "name"))
    try:
        name_wire(name)
    except (ValueError, UnicodeEncodeError):
        reader.fail((*path, "name"), f"{name!r} is not a valid key name (a DNS name)")
    algorithm = raw.get("algorithm", "hmac-sha256")
    if algorithm not in ALGORITHMS:
        reader.fail(
            (*path, "algorithm"), f"expected one of {', '.join(ALGORITHMS)}, found {algorithm!r}"
        )
    if ("secret" in raw) == ("secret_file" in raw):
        reader.fail(path, "give exactly one of secret (base64) and secret_file")
    if "secret" in raw:
        where: KeyPath = (*path, "secret")
        text = reader.text(raw["secret"], where)
    else:
        where = (*path, "secret_file")
        file = os.path.join(base, os.path.expanduser(reader.text(raw["secret_file"], where)))
        try:
            with open(file, encoding="ascii", errors="replace") as handle:
                text = handle.read()
        except OSError as exc:
            reader.fail(where, f"cannot read {file}: {exc.strerror}")
    try:
        secret = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        reader.fail(where, "the secret is not valid base64")
    if len(secret) < 16:
        reader.fail(where, f"the secret is {len(secret)} octets; use at least 16 (RFC 8945 §6)")
    return make_key(name, algorithm, secret)


def _key_ref(reader: _Reader, value: Any, path: KeyPath, known: set[bytes]) -> bytes:
    text = reader.text(value, path)
    try:
        wire = name_wire(text)
    except (ValueError, UnicodeEncodeError):
        wire = b""
    if wire not in known:
        reader.fail(path, f"no key named {text!r} in transfer.keys")
    return wire


def _allow(reader: _Reader, value: Any, path: KeyPath, known: set[bytes]) -> tuple[AllowRule, ...]:
    fields = _Fields()
    out = []
    for i, item in enumerate(_list(reader, value, path)):
        where: KeyPath = (*path, i)
        raw = fields(reader.mapping, item, where, ALLOW_KEYS)
        if raw is None:
            continue
        if "key" not in raw:
            reader.problem(where, "a transfer peer needs a key: transfers are TSIG-signed")
            fields.ok = False
        network = fields(reader.network, raw.get("address"), (*where, "address"))
        key = None
        if "key" in raw:
            key = fields(_key_ref, reader, raw["key"], (*where, "key"), known)
        if network is not None and key is not None:
            out.append(AllowRule(network, key))
    fields.done()
    return tuple(out)


def _notify(
    reader: _Reader, value: Any, path: KeyPath, known: set[bytes]
) -> tuple[NotifyTarget, ...]:
    fields = _Fields()
    out = []
    for i, item in enumerate(_list(reader, value, path)):
        where: KeyPath = (*path, i)
        raw = fields(reader.mapping, item, where, NOTIFY_KEYS)
        if raw is None:
            continue
        address = fields(_address, reader, raw.get("address"), (*where, "address"))
        port = fields(reader.integer, raw.get("port", 53), (*where, "port"), 1, 65535)
        key = None
        if raw.get("key") is not None:
            key = fields(_key_ref, reader, raw["key"], (*where, "key"), known)
        if address is not None and port is not None and (key is not None or "key" not in raw):
            out.append(NotifyTarget(address, port, key))
    fields.done()
    return tuple(out)


def _address(reader: _Reader, value: Any, path: KeyPath) -> str:
    text = reader.text(value, path)
    try:
        return str(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        reader.fail(path, f"{text!r} is not an IP address")


def read_catalog(reader: _Reader, value: Any, path: KeyPath) -> str | None:
    """``catalog:`` → the catalog zone's name, or None."""
    if value is None or value is False:
        return None
    text = reader.text(value, path)
    reader.not_address(text, path)
    try:
        return host_name(text)
    except InvalidName as exc:
        reader.fail(path, str(exc))
