"""The ``reload:`` and ``control:`` keys of the configuration (operations).

```yaml
reload:
  max_removed: 10%          # refuse a reload that removes more domains (a count, a percentage
                            # of the domains served, or off); `srvd reload --force` overrides
control: /run/srvd/srvd.sock   # the control socket of `srvd status|reload|show|list|diff`; off
```

Validated with srvd.config.reader's helpers, so every problem is reported with file, line and key;
the settings (ReloadSettings, DEFAULT_CONTROL) are in srvd.config.model.
"""

from __future__ import annotations

import os
from typing import Any

from srvd.config.model import DEFAULT_CONTROL, KeyPath, ReloadSettings
from srvd.config.reader import _Reader

RELOAD_KEYS = ("max_removed",)


def _off(value: Any) -> bool:
    return value is False or (isinstance(value, str) and value.strip().lower() == "off")


def read_reload(reader: _Reader, value: Any, path: KeyPath) -> ReloadSettings:
    if value is None:
        return ReloadSettings()
    raw = reader.mapping(value, path, RELOAD_KEYS)
    if "max_removed" not in raw:
        return ReloadSettings()
    limit = raw["max_removed"]
    where = (*path, "max_removed")
    if _off(limit):
        return ReloadSettings(None, None)
    if isinstance(limit, str) and limit.strip().endswith("%"):
        number = limit.strip()[:-1].strip()
        try:
            percent = float(number)
        except ValueError:
            percent = -1.0
        if not 0 <= percent <= 100:
            reader.fail(where, f"{limit!r}: a percentage from 0% to 100%")
        return ReloadSettings(None, percent)
    count = reader.integer(limit, where, 0, 100_000_000)
    return ReloadSettings(count, None)


def read_control(reader: _Reader, value: Any, path: KeyPath, base: str) -> str | None:
    """The control socket's path (relative to the configuration file's directory), or None."""
    if value is None:
        return DEFAULT_CONTROL
    if _off(value):
        return None
    text = reader.text(value, path).strip()
    if not text or "\0" in text:
        reader.fail(path, "expected the path of a UNIX socket, or off")
    full = os.path.join(base, os.path.expanduser(text))
    if len(os.fsencode(full)) > 107:  # sun_path holds 108 octets with the final NUL
        reader.fail(path, f"{full!r}: a UNIX socket path is at most 107 octets")
    return full


def top_level(path: str, key: str) -> Any:
    """The value of one top-level key of a configuration file, read without parsing the rest
    (cheap whatever the size of its ``domains:``): a YAML file's block from the line that starts
    with ``key:`` to the next line at column 0; a JSON file's member. None when absent. Raises
    OSError, ValueError (yaml.YAMLError among them) for a file that cannot be read so."""
    import json
    import re

    import yaml

    if path.endswith(".json"):
        with open(path, "rb") as handle:
            data = json.load(handle)
        return data.get(key) if isinstance(data, dict) else None
    start = re.compile(rb"^" + re.escape(key.encode()) + rb"\s*:(\s|$)")
    block: list[bytes] = []
    with open(path, "rb") as handle:
        for line in handle:
            if block:
                if line[:1] not in (b" ", b"\t", b"\n", b"\r", b"#", b"-", b""):
                    break
                block.append(line)
            elif start.match(line):
                block.append(line)
    if not block:
        return None
    value = yaml.safe_load(b"".join(block))
    return value.get(key) if isinstance(value, dict) else None
