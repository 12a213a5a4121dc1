"""HTTPS on the HTTP front (``http.cert``, ``http.key``): what ``srvd check`` says of the files
(unreadable, not a certificate, not a key, a key of another certificate, encrypted, expired,
pyOpenSSL missing), and on loopback: ``srvd serve`` answers over TLS 1.2+ with the chain after
the leaf, refuses TLS 1.1, and after the files are replaced and srvd reloaded a new connection
gets the new certificate (a broken replacement fails the reload and the old one stays)."""

from __future__ import annotations

import datetime
import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from srvd.config import ConfigError, load_config
from srvd.config.model import Config
from srvd.server.loading import load_aside
from srvd.server.workers import read_snapshot, write_snapshot

from conftest import RunningServer, start_http_front

NAMES = ("autoconfig.example.com", "autodiscover.example.com", "example.com")
DAY = datetime.timedelta(days=1)

CONFIG = """\
zone: {nameservers: [ns1.example.net, ns2.example.net]}
http:
  listen: [127.0.0.1:8443]      # replaced by --http in the server tests
%s
profiles:
  standard:
    imaps: {target: imap.example.net, port: 993}
    submissions: {target: smtp.example.net, port: 465}
domains:
  example.com: standard
"""
FILES = "  cert: tls/fullchain.pem\n  key: tls/privkey.pem"


# ---------------------------------------------------------------------------------------------
# Certificates, made here with cryptography


Key = ec.EllipticCurvePrivateKey


@dataclass
class Issued:
    key: Key
    cert: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def issue(
    common: str,
    issuer: Issued | None = None,
    names: tuple[str, ...] = (),
    ca: bool = False,
    start: datetime.timedelta = -DAY,
    end: datetime.timedelta = 90 * DAY,
) -> Issued:
    """A certificate for ``common`` (and ``names``), signed by ``issuer`` or by itself."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(issuer.cert.subject if issuer else _name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + start)
        .not_valid_after(now + end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        ).add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    signer = issuer.key if issuer is not None else key
    return Issued(key, builder.sign(signer, hashes.SHA256()))


@dataclass
class Pki:
    root: Issued  # what the clients trust
    intermediate: Issued  # sent by srvd after the leaf
    leaf: Issued


@pytest.fixture(scope="module")
def pki() -> Pki:
    root = issue("srvd test root", ca=True, end=3650 * DAY)
    intermediate = issue("srvd test intermediate", root, ca=True, end=3650 * DAY)
    return Pki(root, intermediate, issue(NAMES[0], intermediate, NAMES))


def write_config(directory: Path, files: dict[str, bytes], keys: str = FILES) -> Path:
    (directory / "tls").mkdir(exist_ok=True)
    for name, data in files.items():
        (directory / "tls" / name).write_bytes(data)
    path = directory / "srvd.yaml"
    path.write_text(CONFIG % keys)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [p.render() for p in info.value.problems]


def chain_files(pki: Pki, leaf: Issued | None = None) -> dict[str, bytes]:
    leaf = leaf or pki.leaf
    return {
        "fullchain.pem": leaf.cert_pem + pki.intermediate.cert_pem,
        "privkey.pem": leaf.key_pem,
    }


# ---------------------------------------------------------------------------------------------
# The configuration


def test_cert_and_key_are_read_relative_to_the_configuration(tmp_path: Path, pki: Pki) -> None:
    config: Config = load_config(write_config(tmp_path, chain_files(pki)))
    assert config.http is not None and config.http.tls is not None
    tls = config.http.tls
    assert tls.cert == str(tmp_path / "tls" / "fullchain.pem")
    assert tls.key == str(tmp_path / "tls" / "privkey.pem")
    assert tls.names == NAMES
    assert tls.not_after == pki.leaf.cert.not_valid_after_utc.timestamp()
    assert "PRIVATE KEY" not in repr(config.http)  # the key's bytes never show in a repr


def test_without_cert_and_key_http_is_plain(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, {}, keys=""))
    assert config.http is not None and config.http.tls is None


def test_the_key_may_be_in_the_cert_file(tmp_path: Path, pki: Pki) -> None:
    both = {"both.pem": pki.leaf.cert_pem + pki.intermediate.cert_pem + pki.leaf.key_pem}
    config = load_config(write_config(tmp_path, both, keys="  cert: tls/both.pem"))
    assert config.http is not None and config.http.tls is not None
    assert config.http.tls.key == config.http.tls.cert


def test_a_cert_file_without_a_key_needs_http_key(tmp_path: Path, pki: Pki) -> None:
    path = write_config(tmp_path, chain_files(pki), keys="  cert: tls/fullchain.pem")
    [problem] = problems(path)
    assert re.fullmatch(
        rf"{re.escape(str(path))}:2: http\.key: is required: \S+fullchain\.pem holds no "
        r"private key \(give the key file here\)",
        problem,
    ), problem


def test_a_key_without_a_cert_is_refused(tmp_path: Path, pki: Pki) -> None:
    path = write_config(tmp_path, chain_files(pki), keys="  key: tls/privkey.pem")
    [problem] = problems(path)
    assert f"{path}:2: http.cert: is required with http.key" in problem


def test_unreadable_files(tmp_path: Path, pki: Pki) -> None:
    path = write_config(tmp_path, {})
    found = problems(path)
    assert found == [
        f"{path}:4: http.cert: cannot read {tmp_path}/tls/fullchain.pem: No such file or directory",
        f"{path}:5: http.key: cannot read {tmp_path}/tls/privkey.pem: No such file or directory",
    ]


def test_not_a_certificate_and_not_a_key(tmp_path: Path, pki: Pki) -> None:
    swapped = {"fullchain.pem": pki.leaf.key_pem, "privkey.pem": pki.leaf.cert_pem}
    path = write_config(tmp_path, swapped)
    assert problems(path) == [
        f"{path}:4: http.cert: {tmp_path}/tls/fullchain.pem: not a certificate (expected PEM: "
        "BEGIN CERTIFICATE)",
        f"{path}:5: http.key: {tmp_path}/tls/privkey.pem: not a private key (expected PEM: "
        "BEGIN PRIVATE KEY)",
    ]
    garbage = {"fullchain.pem": b"-----BEGIN CERTIFICATE-----\nnot base64\n", "privkey.pem": b""}
    found = problems(write_config(tmp_path, garbage))
    assert [p.split(": ", 2)[1] for p in found] == ["http.cert", "http.key"]


def test_a_key_of_another_certificate_is_refused(tmp_path: Path, pki: Pki) -> None:
    other = issue(NAMES[0], pki.intermediate, NAMES)
    files = {**chain_files(pki), "privkey.pem": other.key_pem}
    path = write_config(tmp_path, files)
    assert problems(path) == [
        f"{path}:5: http.key: the key in {tmp_path}/tls/privkey.pem does not match the "
        f"certificate in {tmp_path}/tls/fullchain.pem"
    ]
    # the chain before the leaf: the key names the certificate it belongs to
    backwards = {
        "fullchain.pem": pki.intermediate.cert_pem + pki.leaf.cert_pem,
        "privkey.pem": pki.leaf.key_pem,
    }
    [problem] = problems(write_config(tmp_path, backwards))
    assert "is that of certificate 2" in problem and "comes first" in problem


def test_an_encrypted_key_is_refused(tmp_path: Path, pki: Pki) -> None:
    encrypted = pki.leaf.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    path = write_config(tmp_path, {**chain_files(pki), "privkey.pem": encrypted})
    [problem] = problems(path)
    assert problem.endswith("privkey.pem: the private key is encrypted; srvd needs it unencrypted")


def test_without_pyopenssl_check_says_what_to_install(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OpenSSL", "OpenSSL.SSL"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    path = write_config(tmp_path, chain_files(pki))
    assert problems(path) == [f"{path}:4: http.cert: needs pyOpenSSL: pip install 'srvd[tls]'"]


def test_the_build_process_carries_the_files_and_the_workers_snapshot_not_the_key(
    tmp_path: Path, pki: Pki
) -> None:
    built = load_aside(str(write_config(tmp_path, chain_files(pki))))  # pickled back
    assert built.config.http is not None and built.config.http.tls is not None
    assert built.config.http.tls.key_pem == pki.leaf.key_pem
    snapshot = tmp_path / "index"
    write_snapshot(str(snapshot), 1, built)
    assert pki.leaf.key_pem not in snapshot.read_bytes()  # the workers serve no HTTP
    _, read = read_snapshot(str(snapshot))
    assert read.config.http is not None and read.config.http.tls is None


def srvd_check(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "srvd", "check", "-c", str(path), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_srvd_check_warns_of_an_expired_certificate(tmp_path: Path, pki: Pki) -> None:
    """Served all the same (as nginx does): a warning, exit 0 unless --strict."""
    expired = issue(NAMES[0], pki.intermediate, NAMES, start=-90 * DAY, end=-3 * DAY)
    path = write_config(tmp_path, chain_files(pki, expired))
    done = srvd_check(path)
    assert done.returncode == 0, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert (
        f"{path}:4: http.cert: warning: the certificate in {tmp_path}/tls/fullchain.pem "
        "expired 3 days ago" in output
    ), output
    assert srvd_check(path, "--strict").returncode == 1
    soon = issue(NAMES[0], pki.intermediate, NAMES, end=5 * DAY)
    done = srvd_check(write_config(tmp_path, chain_files(pki, soon)))
    assert done.returncode == 0
    assert "expires in 4 days: is its renewal failing?" in done.stderr, done.stderr
    done = srvd_check(write_config(tmp_path, chain_files(pki)))
    assert done.returncode == 0 and "warning" not in done.stdout + done.stderr, done.stderr


def test_srvd_check_names_a_mismatched_key_by_line(tmp_path: Path, pki: Pki) -> None:
    other = issue(NAMES[0], pki.intermediate, NAMES)
    path = write_config(tmp_path, {**chain_files(pki), "privkey.pem": other.key_pem})
    done = srvd_check(path)
    assert done.returncode == 1
    assert f"{path}:5: http.key: the key in " in done.stdout + done.stderr


# ---------------------------------------------------------------------------------------------
# On loopback


@dataclass
class Front:
    server: RunningServer
    port: int
    directory: Path

    def context(self, pki: Pki) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=pki.root.cert_pem.decode())
        return context

    def connect(self, context: ssl.SSLContext, host: str = NAMES[0]) -> ssl.SSLSocket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        try:
            return context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise

    def get(
        self, tls: ssl.SSLSocket, path: str = "/mail/config-v1.1.xml", host: str = NAMES[0]
    ) -> tuple[int, bytes]:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        response = http.client.HTTPResponse(tls)
        response.begin()
        return response.status, response.read()


@pytest.fixture
def front(tmp_path: Path, pki: Pki) -> Iterator[Front]:
    config = write_config(tmp_path, chain_files(pki))
    server, port, _ = start_http_front(config)
    yield Front(server, port, tmp_path)
    server.stop()


def test_autoconfig_over_https_with_the_chain(front: Front, pki: Pki) -> None:
    with front.connect(front.context(pki)) as tls:  # the client trusts the root only
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        assert tls.getpeercert(binary_form=True) == pki.leaf.der
        status, body = front.get(tls)
    assert status == 200
    assert b'<emailProvider id="example.com">' in body and b"imap.example.net" in body
    log = front.server.log()
    assert f"discovery documents on https://127.0.0.1:{front.port}/" in log
    assert "Traceback" not in log and "Warning" not in log, log


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_2_is_taken_and_1_1_refused(front: Front, pki: Pki) -> None:
    twelve = front.context(pki)
    twelve.maximum_version = ssl.TLSVersion.TLSv1_2
    with front.connect(twelve) as tls:
        assert tls.version() == "TLSv1.2"
        assert front.get(tls)[0] == 200
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(cadata=pki.root.cert_pem.decode())
    old.set_ciphers("ALL:@SECLEVEL=0")  # so that this client offers TLS 1.1 at all
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError) as info:
        front.connect(old).close()
    # the server's alert, not this client's own refusal (no protocols available)
    assert "PROTOCOL_VERSION" in str(info.value) or "UNSUPPORTED_PROTOCOL" in str(info.value), (
        info.value
    )
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as sock:
        sock.sendall(b"GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: example.com\r\n\r\n")
        try:
            reply = sock.recv(4096)
        except OSError:
            reply = b""
    assert not reply.startswith(b"HTTP/")  # nor plain HTTP on the HTTPS port


def wait_for(what: str, check: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_a_reload_serves_renewed_files_to_new_connections(front: Front, pki: Pki) -> None:
    context = front.context(pki)
    kept = front.connect(context)  # open across the reload: it keeps its certificate
    assert front.get(kept)[0] == 200
    renewed = issue(NAMES[0], pki.intermediate, NAMES)  # a new key too, as certbot makes
    for name, data in chain_files(pki, renewed).items():  # written in place
        (front.directory / "tls" / name).write_bytes(data)
    os.kill(front.server.process.pid, signal.SIGHUP)

    def served() -> bytes | None:
        with front.connect(context) as tls:
            return tls.getpeercert(binary_form=True)

    wait_for("the renewed certificate", lambda: served() == renewed.der)
    with front.connect(context) as tls:
        assert front.get(tls)[0] == 200
    assert front.get(kept)[0] == 200 and kept.getpeercert(binary_form=True) == pki.leaf.der
    kept.close()
    assert "new connections get the certificate now in" in front.server.log()

    # a broken renewal (a key of another certificate) fails the reload: the last one stays
    stray = issue(NAMES[0], pki.intermediate, NAMES)
    (front.directory / "tls" / "privkey.pem").write_bytes(stray.key_pem)
    os.kill(front.server.process.pid, signal.SIGHUP)
    wait_for(
        "the failed reload",
        lambda: "still serving the previous configuration" in front.server.log(),
    )
    assert "reload failed: " in front.server.log() and "http.key: the key in" in front.server.log()
    assert served() == renewed.der
    with front.connect(context) as tls:
        assert front.get(tls)[0] == 200
