"""The ``http:`` key: discovery documents over HTTP (srvd.http, srvd.server.web).

```yaml
http:
  listen: [127.0.0.1:8080]      # off unless given
  cert: tls/fullchain.pem       # HTTPS on every listen address (srvd.config.tls; optional)
  key: tls/privkey.pem
  pacc: on                      # PACC document and its _ua-auto-config TXT digest
  display_name: "{domain} mail" # what DNS cannot say: the account's name in the client
  username: email               # email (%EMAILADDRESS%) or local (the local part)
  authentication: password-cleartext   # or password-encrypted, OAuth2
  max_body: 16384               # octets of a POST body
  max_connections: 1000
  idle_timeout: 30              # seconds
  profiles:                     # per profile, what it says instead of the three above
    branded: {display_name: "{domain}", username: local}
```
"""

from __future__ import annotations

from typing import Any

from srvd.config.model import (
    HTTP_AUTHENTICATION,
    HTTP_USERNAMES,
    HttpProfile,
    HttpSettings,
    KeyPath,
)
from srvd.config.reader import _Fields, _kind, _Reader
from srvd.config.tls import read_tls

HTTP_KEYS = (
    "listen",
    "cert",
    "key",
    "pacc",
    "display_name",
    "username",
    "authentication",
    "max_body",
    "max_connections",
    "idle_timeout",
    "profiles",
)
PROFILE_HINTS = ("display_name", "username", "authentication")
_ON = (True, "on", "yes", "true")
_OFF = (False, "off", "no", "false")


def read_http(reader: _Reader, value: Any, path: KeyPath, base: str) -> HttpSettings | None:
    """``http:`` → HttpSettings, or None (off); ``base`` is the directory of the configuration
    file (``cert`` and ``key`` are relative to it). Plain HTTP unless ``cert`` is given: TLS for
    the customers' names is the provider's HTTPS proxy's (README, "Discovery documents over
    HTTP")."""
    if value is None or value in _OFF:
        return None
    raw = reader.mapping(value, path, HTTP_KEYS)
    fields = _Fields()
    kwargs: dict[str, Any] = {}
    if "listen" not in raw or not raw["listen"]:
        reader.problem((*path, "listen"), "expected a list of addresses such as 127.0.0.1:8080")
        fields.ok = False
    else:
        kwargs["listen"] = fields(reader.listen, raw["listen"], (*path, "listen"))
    kwargs["tls"] = fields(read_tls, reader, raw, path, base)
    if "pacc" in raw:
        kwargs["pacc"] = fields(_switch, reader, raw["pacc"], (*path, "pacc"))
    if "display_name" in raw:
        kwargs["display_name"] = fields(_name, reader, raw["display_name"], (*path, "display_name"))
    for name, choices in (("username", HTTP_USERNAMES), ("authentication", HTTP_AUTHENTICATION)):
        if name in raw:
            kwargs[name] = fields(_choice, reader, raw[name], (*path, name), choices)
    for name, low, high in (("max_body", 1024, 1 << 20), ("max_connections", 1, 1_000_000)):
        if name in raw:
            kwargs[name] = fields(reader.integer, raw[name], (*path, name), low, high)
    if "idle_timeout" in raw:
        kwargs["idle_timeout"] = fields(
            reader.seconds, raw["idle_timeout"], (*path, "idle_timeout")
        )
    if raw.get("profiles") is not None:
        kwargs["profiles"] = fields(_profiles, reader, raw["profiles"], (*path, "profiles"))
    fields.done()
    return HttpSettings(**kwargs)


def _profiles(reader: _Reader, value: Any, path: KeyPath) -> tuple[tuple[str, HttpProfile], ...]:
    """``http.profiles``: profile name → display_name, username, authentication (the names
    are checked against the profiles by srvd.config.load, once every profile is read)."""
    if not isinstance(value, dict):
        reader.fail(path, f"expected a mapping of profile names, found {_kind(value)}")
    fields = _Fields()
    out = []
    for name, body in value.items():
        where = (*path, name)
        raw = fields(reader.mapping, body, where, PROFILE_HINTS)
        if raw is None:
            continue
        chosen: dict[str, Any] = {}
        if "display_name" in raw:
            chosen["display_name"] = fields(
                _name, reader, raw["display_name"], (*where, "display_name")
            )
        for key, choices in (("username", HTTP_USERNAMES), ("authentication", HTTP_AUTHENTICATION)):
            if key in raw:
                chosen[key] = fields(_choice, reader, raw[key], (*where, key), choices)
        out.append((str(name), HttpProfile(**chosen)))
    fields.done()
    return tuple(out)


def _switch(reader: _Reader, value: Any, path: KeyPath) -> bool:
    if value in _ON:
        return True
    if value in _OFF:
        return False
    reader.fail(path, f"expected on or off, found {_kind(value)}")


def _name(reader: _Reader, value: Any, path: KeyPath) -> str:
    text = reader.text(value, path)
    if not text.strip() or len(text) > 200 or any(_unprintable(c) for c in text):
        reader.fail(path, "expected a name of 1 to 200 printable characters")
    return text


def _unprintable(char: str) -> bool:
    """Control characters, and what XML 1.0 cannot hold at all (surrogates, U+FFFE, U+FFFF)."""
    code = ord(char)
    return code < 32 or 127 <= code < 160 or 0xD800 <= code < 0xE000 or code in (0xFFFE, 0xFFFF)


def _choice(reader: _Reader, value: Any, path: KeyPath, choices: tuple[str, ...]) -> str:
    if value not in choices:
        reader.fail(path, f"expected one of {', '.join(choices)}, found {_kind(value)}")
    return str(value)
