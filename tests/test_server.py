"""The real server on loopback: one test per transport, the tools a user has, and the process life.

Every server here is a subprocess on 127.0.0.1 (or ::1) and a free port, except the README's
``srvd serve`` without arguments, which must use 127.0.0.1:5353 (skipped when that port is busy).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

import srvd.config
from srvd import cli
from srvd.service import SYSTEM_CONFIG

from conftest import (
    EXAMPLE,
    ROOT,
    RunningServer,
    free_port,
    new_log,
    require_tool,
    start_srvd,
    wait_for_dns,
)

IMAPS = "_imaps._tcp.example.com"
RECORDS = {(0, 10, 993, "imap1.example.net."), (0, 5, 993, "imap2.example.net.")}
TIMEOUT = 5.0
BIN = Path(sys.executable).parent


def _no_metrics() -> list[str]:
    """``--metrics off`` where srvd has /metrics: its default port would make concurrent test
    servers collide."""
    try:
        with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):
            cli._parser().parse_args(["serve", "--metrics", "off"])
    except SystemExit:
        return []
    return ["--metrics", "off"]


NO_METRICS = _no_metrics()


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    """One srvd with the bundled example for every query test of this module."""
    running = start_srvd(EXAMPLE, *NO_METRICS)
    yield running
    running.stop()


def query(ident: int = 0) -> dns.message.Message:
    message = dns.message.make_query(IMAPS, "SRV")
    if ident:
        message.id = ident
    return message


def assert_imaps(reply: dns.message.Message, ident: int | None = None) -> None:
    if ident is not None:
        assert reply.id == ident
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert len(reply.answer) == 1
    rrset = reply.answer[0]
    assert rrset.rdtype == dns.rdatatype.SRV
    assert {(r.priority, r.weight, r.port, str(r.target)) for r in rrset} == RECORDS


def _default_signals() -> None:
    """In the child: SIGINT as a terminal would deliver it, even when pytest runs in the
    background (a shell starts background jobs with SIGINT ignored, and exec keeps that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(
    command: Sequence[str],
    port: int,
    *,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    host: str = "127.0.0.1",
) -> RunningServer:
    """Start ``command`` with its output in a log file; return once it answers DNS on port."""
    log_path = new_log("srvd-test-server-")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            preexec_fn=_default_signals,
        )
    running = RunningServer(process, port, log_path, host)
    deadline = time.monotonic() + 15
    while process.poll() is None and time.monotonic() < deadline:
        try:
            wait_for_dns(port, host, timeout=0.5)
        except TimeoutError:
            continue
        return running
    code = running.stop()
    raise AssertionError(f"{command} did not answer (exit {code}):\n{running.log()}")


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "srvd", "serve", *args, *NO_METRICS]


def run_srvd(*args: str) -> subprocess.CompletedProcess[str]:
    """``srvd ARGS`` that is expected to exit by itself."""
    return subprocess.run(
        [sys.executable, "-m", "srvd", *args, *NO_METRICS],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(family, kind) as sock:
                sock.bind((host, port))
    except OSError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# One test per transport


def test_udp(server: RunningServer) -> None:
    message = query()
    reply = dns.query.udp(message, "127.0.0.1", port=server.port, timeout=TIMEOUT)
    assert_imaps(reply, message.id)
    assert not reply.flags & dns.flags.TC


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise AssertionError(f"connection closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def _read_message(sock: socket.socket) -> dns.message.Message:
    (length,) = struct.unpack("!H", _recv_exact(sock, 2))
    return dns.message.from_wire(_recv_exact(sock, length))


def test_tcp_with_pipelining(server: RunningServer) -> None:
    message = query()
    reply = dns.query.tcp(message, "127.0.0.1", port=server.port, timeout=TIMEOUT)
    assert_imaps(reply, message.id)

    first, second = query(0x1111), query(0x2222)
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        framed = [m.to_wire(prepend_length=True) for m in (first, second)]
        sock.sendall(b"".join(framed))  # both queries before reading either reply
        replies = [_read_message(sock), _read_message(sock)]
        assert [r.id for r in replies] == [0x1111, 0x2222]
        for reply in replies:
            assert_imaps(reply)
        sock.sendall(query(0x3333).to_wire(prepend_length=True))  # the connection stays open
        assert_imaps(_read_message(sock), 0x3333)


def _ipv6_loopback_port() -> int:
    if not socket.has_ipv6:
        pytest.skip("Python has no IPv6")
    for _ in range(20):
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp:
                udp.bind(("::1", 0))
                port = int(udp.getsockname()[1])
        except OSError as exc:
            pytest.skip(f"this machine has no ::1: {exc}")
        if port_is_free("::1", port):
            return port
    raise RuntimeError("no free port on ::1")


def test_ipv6() -> None:
    port6 = _ipv6_loopback_port()
    command = serve_command("-c", str(EXAMPLE), "--listen", f"[::1]:{port6}")
    running = spawn(command, port6, host="::1")
    try:
        message = query()
        assert_imaps(dns.query.udp(message, "::1", port=port6, timeout=TIMEOUT), message.id)
        message = query()
        assert_imaps(dns.query.tcp(message, "::1", port=port6, timeout=TIMEOUT), message.id)
    finally:
        running.stop()


def test_two_listen_addresses() -> None:
    """Every listen address answers (the default configuration has two: 0.0.0.0 and [::])."""
    first, second = free_port(), free_port()
    listen = ["--listen", f"127.0.0.1:{first}", "--listen", f"127.0.0.1:{second}"]
    running = spawn(serve_command("-c", str(EXAMPLE), *listen), second)
    try:
        for port in (first, second):
            message = query()
            assert_imaps(dns.query.udp(message, "127.0.0.1", port=port, timeout=TIMEOUT))
            message = query()
            assert_imaps(dns.query.tcp(message, "127.0.0.1", port=port, timeout=TIMEOUT))
    finally:
        running.stop()


# ---------------------------------------------------------------------------------------------
# dig and kdig, as a user would run them

_FLAGS = re.compile(r"^;; flags: ([a-z ]*);", re.IGNORECASE | re.MULTILINE)


def _srv_line(priority: int, weight: int, port: int, target: str) -> re.Pattern[str]:
    return re.compile(
        rf"^{re.escape(IMAPS)}\.\s+\d+\s+IN\s+SRV\s+{priority}\s+{weight}\s+{port}\s+"
        rf"{re.escape(target)}\s*$",
        re.MULTILINE,
    )


def _assert_tool_output(output: str) -> None:
    flags = _FLAGS.search(output)
    assert flags, output
    assert "aa" in flags.group(1).split(), output
    assert "NOERROR" in output, output
    for record in RECORDS:
        assert _srv_line(*record).search(output), f"{record} missing:\n{output}"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_dig(server: RunningServer, transport: str) -> None:
    dig = require_tool("dig")
    options = ["+tcp"] if transport == "tcp" else []
    result = subprocess.run(
        [dig, "@127.0.0.1", "-p", str(server.port), IMAPS, "SRV", "+time=3", "+tries=1", *options],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    _assert_tool_output(result.stdout)
    assert f"({transport.upper()})" in result.stdout  # ";; SERVER: 127.0.0.1#PORT(127.0.0.1) (UDP)"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_kdig(server: RunningServer, transport: str) -> None:
    kdig = require_tool("kdig")
    options = ["+tcp"] if transport == "tcp" else []
    result = subprocess.run(
        [kdig, "@127.0.0.1", "-p", str(server.port), IMAPS, "SRV", "+time=3", "+retry=0", *options],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    _assert_tool_output(result.stdout)
    assert f"@{server.port}({transport.upper()})" in result.stdout  # ";; From 127.0.0.1@PORT(TCP)"


# ---------------------------------------------------------------------------------------------
# The process: signals, bad configuration, a busy port


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_exits_0_on_signal(signum: signal.Signals) -> None:
    port = free_port()
    running = spawn(serve_command("-c", str(EXAMPLE), "--listen", f"127.0.0.1:{port}"), port)
    running.process.send_signal(signum)
    try:
        code = running.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        running.stop()
        raise AssertionError(f"srvd ignored {signum.name}:\n{running.log()}") from None
    log = running.log()
    assert code == 0, log
    assert "Traceback" not in log, log
    assert port_is_free("127.0.0.1", port)  # and its sockets are gone


BAD_CONFIG = """\
listen: [127.0.0.1:5353]
zone:
  nameservers: [ns1.example.net]
  hostmaster: hostmaster@example.net
profiles:
  standard:
    imaps: {target: imap.example.net, port: 993}
domains:
  example.com: no-such-profile
"""


def test_serve_with_bad_config_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_CONFIG)
    result = run_srvd("serve", "-c", str(bad), "--listen", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"{bad}:9:" in result.stderr, result.stderr  # the file and the line
    assert "domains.example.com" in result.stderr, result.stderr  # the key
    assert "no-such-profile" in result.stderr, result.stderr


def test_serve_with_missing_config_exits_1(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    result = run_srvd("serve", "-c", str(missing), "--listen", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert str(missing) in result.stderr, result.stderr


@pytest.mark.parametrize("taken", ["udp", "tcp"])
def test_serve_on_a_taken_port_exits_1(taken: str) -> None:
    port = free_port()
    kind = socket.SOCK_DGRAM if taken == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as blocker:
        blocker.bind(("127.0.0.1", port))
        if kind == socket.SOCK_STREAM:
            blocker.listen()
        result = run_srvd("serve", "-c", str(EXAMPLE), "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr, result.stderr
    assert "in use" in result.stderr.lower(), result.stderr


# ---------------------------------------------------------------------------------------------
# twistd


def _twistd() -> list[str]:
    """The twistd of this interpreter (its script, run by sys.executable)."""
    script = BIN / "twistd"
    if script.is_file():
        return [sys.executable, str(script)]
    return [
        sys.executable,
        "-c",
        "import sys; from twisted.scripts.twistd import run; sys.exit(run())",
    ]


def _without_pythonpath() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_twistd_serves(tmp_path: Path) -> None:
    """``twistd -n --pidfile= srvd -c CONFIG --listen ADDR:PORT`` answers and stops on SIGTERM.

    twistd finds plugins in the ``twisted/plugins`` directories on sys.path. The source tree's is
    put there explicitly: an editable install does not expose it (see the next test).
    """
    port = free_port()
    env = _without_pythonpath()
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    command = [*_twistd(), "-n", "--pidfile=", "srvd", "-c", str(EXAMPLE)]
    command += ["--listen", f"127.0.0.1:{port}", *NO_METRICS]
    running = spawn(command, port, cwd=tmp_path, env=env)
    try:
        message = query()
        assert_imaps(dns.query.udp(message, "127.0.0.1", port=port, timeout=TIMEOUT), message.id)
        message = query()
        assert_imaps(dns.query.tcp(message, "127.0.0.1", port=port, timeout=TIMEOUT), message.id)
    finally:
        code = running.stop()
    log = running.log()
    # twistd ends by re-raising the signal that stopped it, so the exit is "killed by SIGTERM"
    assert code in (0, -signal.SIGTERM), log
    assert "Server Shut Down" in log, log
    assert "Traceback" not in log, log
    assert not (tmp_path / "twistd.pid").exists()


def test_twistd_finds_the_installed_plugin(tmp_path: Path) -> None:
    """The README's ``twistd -n srvd``: the installed package must bring its plugin, from any
    directory and without PYTHONPATH."""
    result = subprocess.run(
        [*_twistd(), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env=_without_pythonpath(),
    )
    commands = result.stdout.partition("Commands:")[2]
    assert re.search(r"^\s+srvd\s", commands, re.MULTILINE), (
        "twistd does not list the srvd plugin when run outside the source tree; "
        f"twisted.plugins is searched in sys.path only:\n{result.stdout}{result.stderr}"
    )


# ---------------------------------------------------------------------------------------------
# The README's first command


def test_serve_without_arguments_serves_the_example_on_5353(tmp_path: Path) -> None:
    if os.path.exists(SYSTEM_CONFIG):
        pytest.skip(f"{SYSTEM_CONFIG} exists, so srvd serve would not use the bundled example")
    if not port_is_free("127.0.0.1", 5353):
        pytest.skip("127.0.0.1:5353 is in use")
    metrics = getattr(srvd.config, "DEFAULT_METRICS", None)  # served by default, where it exists
    if metrics:
        endpoint = srvd.config.parse_endpoint(metrics)
        if not port_is_free(endpoint.host, endpoint.port):
            pytest.skip(f"{endpoint}, where srvd serves /metrics by default, is in use")
    if not port_is_free("127.0.0.1", 8080):
        pytest.skip("127.0.0.1:8080, where the example serves its discovery documents, is in use")
    script = shutil.which("srvd", path=str(BIN))
    command = [sys.executable, script] if script else [sys.executable, "-m", "srvd"]
    command.append("serve")  # exactly what the README says, no arguments
    running = spawn(command, 5353, cwd=tmp_path)
    try:
        message = query()
        assert_imaps(dns.query.udp(message, "127.0.0.1", port=5353, timeout=TIMEOUT), message.id)
    finally:
        code = running.stop()
    assert code == 0, running.log()
    assert "bundled example" in running.log()
