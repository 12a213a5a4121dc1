"""``http.cert`` and ``http.key``: HTTPS on the HTTP front's addresses, for the provider's own
host names (srvd.server.web serves it).

```yaml
http:
  listen: ['[::]:443']
  cert: /etc/srvd/tls/fullchain.pem   # the server's certificate first, then its chain
  key: /etc/srvd/tls/privkey.pem      # may be left out when the cert file holds the key too
```

The files are read and checked when the configuration is, so ``srvd check`` names a bad one by
file, line and key, and a reload with a broken one fails like any configuration error (the
running certificate stays): a file that cannot be read, no PEM certificate in ``cert``, no
private key (or an encrypted one) in ``key``, a key that is not the certificate's, and what
OpenSSL itself refuses (a key too small for its security level, say). Paths are relative to the
configuration file. pyOpenSSL, which Twisted's TLS needs, is an optional extra: without it the
key is a problem that says how to install it.

An expired (or not yet valid) certificate is a warning of ``srvd check`` (srvd.config.lint) and
of the log, not a problem: nginx and Apache serve such a certificate too, and refusing it would
take the DNS side down with the HTTP one at the next restart.
"""

from __future__ import annotations

import os
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from srvd.config.model import KeyPath, TlsFiles
from srvd.config.reader import _Fields, _Invalid, _Reader

TLS_EXTRA = "pip install 'srvd[tls]'"
MAX_PEM = 1 << 20  # octets of a cert or key file: a chain is a few KiB


def read_tls(reader: _Reader, raw: dict[Any, Any], path: KeyPath, base: str) -> TlsFiles | None:
    """``http.cert`` and ``http.key`` → TlsFiles, or None when neither is given; ``base`` is the
    directory of the configuration file."""
    if raw.get("cert") is None and raw.get("key") is None:
        return None
    cert_path, key_path = (*path, "cert"), (*path, "key")
    if raw.get("cert") is None:
        reader.fail(cert_path, "is required with http.key: the certificate file (PEM)")
    fields = _Fields()
    cert_name = fields(_file_name, reader, raw["cert"], cert_path, base)
    key_name = cert_name
    if raw.get("key") is not None:
        key_name = fields(_file_name, reader, raw["key"], key_path, base)
    cert_pem = fields(_read, reader, cert_name, cert_path) if cert_name is not None else None
    chain = None
    if cert_pem is not None:
        chain = fields(_certificates, reader, cert_name, cert_pem, cert_path)
    if raw.get("key") is None:
        key_pem = cert_pem
        key = None
        if chain is not None:
            key = fields(_private_key, reader, cert_name, cert_pem, cert_path, True)
    else:
        key_pem = fields(_read, reader, key_name, key_path) if key_name is not None else None
        key = None
        if key_pem is not None:
            key = fields(_private_key, reader, key_name, key_pem, key_path, False)
    fields(_needs_openssl, reader, cert_path)
    fields.done()
    if chain is None or key is None or cert_name is None or key_name is None:
        raise _Invalid  # pragma: no cover - reported
    assert cert_pem is not None and key_pem is not None
    where = key_path if raw.get("key") is not None else cert_path
    _matches(reader, chain, key, key_name, cert_name, where)
    _openssl_takes(reader, chain, key, cert_name, cert_path)
    leaf = chain[0]
    return TlsFiles(
        cert=cert_name,
        key=key_name,
        cert_pem=cert_pem,
        key_pem=key_pem,
        not_before=leaf.not_valid_before_utc.timestamp(),
        not_after=leaf.not_valid_after_utc.timestamp(),
        names=_names(leaf),
    )


def load_tls(tls: TlsFiles) -> tuple[list[x509.Certificate], PrivateKeyTypes]:
    """The certificates (the leaf first) and the private key of checked files."""
    chain = x509.load_pem_x509_certificates(tls.cert_pem)
    return chain, serialization.load_pem_private_key(tls.key_pem, None)


def validity_warning(tls: TlsFiles, now: float, soon: float = 14 * 86400) -> str | None:
    """What to say of the leaf's validity at ``now``: expired, not yet valid, or expiring within
    ``soon`` seconds (a renewal that keeps failing: certbot renews 30 days before); else None."""
    if now >= tls.not_after:
        return f"the certificate in {tls.cert} expired {_days(now - tls.not_after)} ago"
    if now < tls.not_before:
        return f"the certificate in {tls.cert} is not valid for {_days(tls.not_before - now)} yet"
    if tls.not_after - now < soon:
        return (
            f"the certificate in {tls.cert} expires in {_days(tls.not_after - now)}: is its "
            "renewal failing?"
        )
    return None


def _days(seconds: float) -> str:
    days = int(seconds // 86400)
    if days >= 1:
        return f"{days} day{'s' if days != 1 else ''}"
    hours = int(seconds // 3600)
    return f"{hours} hour{'s' if hours != 1 else ''}"


def _file_name(reader: _Reader, value: Any, path: KeyPath, base: str) -> str:
    text = reader.text(value, path)
    if not text.strip():
        reader.fail(path, "expected a file name")
    return os.path.join(base, os.path.expanduser(text))


def _read(reader: _Reader, name: str, path: KeyPath) -> bytes:
    try:
        with open(name, "rb") as handle:
            data = handle.read(MAX_PEM + 1)
    except OSError as exc:
        reader.fail(path, f"cannot read {name}: {exc.strerror}")
    if len(data) > MAX_PEM:
        reader.fail(path, f"{name} is larger than {MAX_PEM} octets: not a PEM certificate or key")
    return data


def _certificates(reader: _Reader, name: str, data: bytes, path: KeyPath) -> list[x509.Certificate]:
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        reader.fail(path, f"{name}: not a certificate (expected PEM: BEGIN CERTIFICATE)")
    return chain


def _private_key(
    reader: _Reader, name: str, data: bytes, path: KeyPath, in_cert: bool
) -> PrivateKeyTypes:
    if b"PRIVATE KEY-----" not in data:
        if in_cert:
            reader.fail(
                (*path[:-1], "key"),
                f"is required: {name} holds no private key (give the key file here)",
            )
        reader.fail(path, f"{name}: not a private key (expected PEM: BEGIN PRIVATE KEY)")
    try:
        return serialization.load_pem_private_key(data, None)
    except TypeError:  # a password is needed
        reader.fail(path, f"{name}: the private key is encrypted; srvd needs it unencrypted")
    except (ValueError, UnsupportedAlgorithm):
        reader.fail(path, f"{name}: the private key cannot be read (a damaged PEM block?)")


def _public(value: Any) -> bytes:
    return bytes(
        value.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _matches(
    reader: _Reader,
    chain: list[x509.Certificate],
    key: PrivateKeyTypes,
    key_name: str,
    cert_name: str,
    path: KeyPath,
) -> None:
    try:
        mine = _public(key.public_key())
        spkis = [_public(cert.public_key()) for cert in chain]
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        reader.fail(path, f"{key_name}: cannot compare the key with the certificate ({exc})")
    if spkis[0] == mine:
        return
    if mine in spkis:
        reader.fail(
            path,
            f"the key in {key_name} is that of certificate {spkis.index(mine) + 1} in "
            f"{cert_name}, not of the first: the server's certificate comes first, its chain "
            "after it",
        )
    reader.fail(path, f"the key in {key_name} does not match the certificate in {cert_name}")


def _needs_openssl(reader: _Reader, path: KeyPath) -> None:
    try:
        import OpenSSL.SSL  # noqa: F401 - Twisted's TLS is made of it
    except ImportError:
        reader.fail(path, f"needs pyOpenSSL: {TLS_EXTRA}")


def _openssl_takes(
    reader: _Reader,
    chain: list[x509.Certificate],
    key: PrivateKeyTypes,
    name: str,
    path: KeyPath,
) -> None:
    """What the server will do with them (srvd.server.web): OpenSSL has its own refusals."""
    from OpenSSL import SSL

    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    try:
        context.use_certificate(chain[0])
        context.use_privatekey(key)  # type: ignore[arg-type]
        for extra in chain[1:]:
            context.add_extra_chain_cert(extra)
        context.check_privatekey()
    except SSL.Error as exc:
        reader.fail(path, f"{name}: OpenSSL refuses it ({openssl_reason(exc)})")


def openssl_reason(exc: Exception) -> str:
    """The reasons of an OpenSSL.SSL.Error (a list of (library, function, reason))."""
    reasons = []
    for entry in exc.args[0] if exc.args and isinstance(exc.args[0], list) else ():
        if isinstance(entry, tuple) and entry:
            reasons.append(str(entry[-1]))
    return "; ".join(reasons) or str(exc)


def _names(leaf: x509.Certificate) -> tuple[str, ...]:
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return ()
    return tuple(names.get_values_for_type(x509.DNSName))
