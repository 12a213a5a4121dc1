"""The deployment files: systemd/srvd.service.

systemd does not run here, so the unit is checked with ``systemd-analyze`` (syntax, and the
offline security score), and proven to work by running its command lines directly: the installed
paths (``/opt/srvd/bin/srvd``, ``/etc/srvd/srvd.yaml``, ``/var/lib/srvd``) mapped to a wrapper
that runs this checkout's srvd, a copy of the production template with a customer domain, a
temporary state directory, and a free loopback port instead of 53. The sandboxing itself is
only ever exercised by a real systemd.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from srvd.service import SYSTEM_CONFIG

from conftest import ROOT, free_port, require_tool

UNIT = ROOT / "systemd" / "srvd.service"
TEMPLATE = ROOT / "config" / "srvd.yaml"
UNIT_SRVD = "/opt/srvd/bin/srvd"  # where the unit expects the installed script
STATE_DIR = "/var/lib/srvd"
MAX_EXPOSURE = 1.5  # systemd-analyze security; PowerDNS's unit: 2.1, Debian's nsd: 5.0
CUSTOMERS = "domains:\n  example.com: standard\n  example.org: standard\n"


def unit_settings(path: Path = UNIT) -> dict[str, list[tuple[str, str]]]:
    """Section → (key, value) in order; keys such as ExecReload= may repeat."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"no continuation lines expected: {line}"
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def service_values(key: str) -> list[str]:
    return [value for k, value in unit_settings()["Service"] if k == key]


def wrapper(directory: Path) -> Path:
    """An executable ``srvd`` that runs this checkout's srvd (as the installed script would)."""
    path = directory / "srvd"
    python = shlex.quote(sys.executable)
    path.write_text(f'#!/bin/sh\nPYTHONPATH={shlex.quote(str(ROOT))} exec {python} -m srvd "$@"\n')
    path.chmod(0o755)
    return path


def production_config(directory: Path, state: Path) -> Path:
    """/etc/srvd as an operator fills it: the template, with customer domains in domains.d, and
    state_dir mapped to ``state``; /metrics off (9153 may be taken by a parallel test run)."""
    etc = directory / "etc"
    (etc / "domains.d").mkdir(parents=True)
    text = TEMPLATE.read_text()
    assert f"state_dir: {STATE_DIR}" in text
    text = text.replace(STATE_DIR, str(state)) + "metrics: off\n"
    config = etc / "srvd.yaml"
    config.write_text(text)
    (etc / "domains.d" / "customers.yaml").write_text(CUSTOMERS)
    return config


def mapped(argv: list[str], mapping: dict[str, str]) -> list[str]:
    out = [mapping.get(arg, arg) for arg in argv]
    for arg in out:
        assert not arg.startswith(("/etc/srvd", "/opt/srvd", STATE_DIR)), f"unmapped path {arg}"
    return out


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=60, check=False)


@contextmanager
def notify_socket(path: Path) -> Iterator[socket.socket]:
    """What systemd listens on for a Type=notify service ($NOTIFY_SOCKET)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        yield sock


def wait_for_notify(sock: socket.socket, field: str, timeout: float = 30) -> list[str]:
    """Every message up to and including the first that has ``field`` (such as READY=1)."""
    messages = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            break
        messages.append(message)
        if field in message.splitlines():
            return messages
    raise AssertionError(f"no {field} within {timeout} s; got {messages}")


# ---------------------------------------------------------------------------------------------
# systemd


def test_unit_is_consistent_with_srvd() -> None:
    service = dict(unit_settings()["Service"])
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    for line in (*service_values("ExecStartPre"), *service_values("ExecStart")):
        assert f"-c {SYSTEM_CONFIG}" in line
    # the template's state_dir is where systemd puts StateDirectory=
    template = yaml.safe_load(TEMPLATE.read_text())
    assert template["state_dir"] == f"/var/lib/{service['StateDirectory']}" == STATE_DIR
    # one capability, granted and bounded
    assert service["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert service["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    # sd_notify needs AF_UNIX
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert service_values("ExecReload")[-1] == "/bin/kill -HUP $MAINPID"


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """verify needs every Exec program to exist: the unit is copied with /opt/srvd/bin/srvd
    replaced by an executable wrapper, nothing else changed. It exits 0 even for unknown keys,
    so its output must also be free of remarks about the unit."""
    analyze = require_tool("systemd-analyze")
    text = UNIT.read_text()
    assert UNIT_SRVD in text
    unit = tmp_path / "srvd.service"
    unit.write_text(text.replace(UNIT_SRVD, str(wrapper(tmp_path))))
    result = run([analyze, "verify", str(unit)], tmp_path)
    remarks = [line for line in (result.stdout + result.stderr).splitlines() if "srvd" in line]
    assert result.returncode == 0 and not remarks, result.stdout + result.stderr
    # and it does complain about a unit with a mistake in it
    unit.write_text(unit.read_text().replace("ProtectClock=yes", "ProtectClok=yes"))
    result = run([analyze, "verify", str(unit)], tmp_path)
    assert "Unknown key" in result.stdout + result.stderr


def test_unit_security_exposure_is_low(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    result = run([analyze, "security", "--offline=true", str(UNIT)], tmp_path)
    output = result.stdout + result.stderr
    found = re.search(r"Overall exposure level for srvd\.service: (\d+\.\d+)", output)
    assert found, output
    exposure = float(found.group(1))
    assert exposure <= MAX_EXPOSURE, output


def test_unit_command_lines_start_reload_and_stop_srvd(tmp_path: Path) -> None:
    """ExecStartPre=, ExecStart= and ExecReload= as systemd would run them, with $NOTIFY_SOCKET:
    READY=1 once it answers, RELOADING=1 then READY=1 for a reload, STOPPING=1 and exit 0 on
    SIGTERM; a broken configuration fails ExecStartPre= and the check before the reload signal."""
    state = tmp_path / "state"  # StateDirectory=: systemd creates it before starting
    state.mkdir(mode=0o700)
    config = production_config(tmp_path, state)
    port = free_port()
    config.write_text(config.read_text().replace("listen:\n", f"listen:\n  - 127.0.0.1:{port}\n"))
    config.write_text(re.sub(r'  - (0\.0\.0\.0|"\[::\]"):53\n', "", config.read_text()))
    srvd = str(wrapper(tmp_path))
    paths = {UNIT_SRVD: srvd, SYSTEM_CONFIG: str(config)}

    for line in service_values("ExecStartPre"):
        result = run(mapped(shlex.split(line), paths), tmp_path)
        assert result.returncode == 0, result.stderr
        assert "OK: 2 domains" in result.stdout

    (start,) = service_values("ExecStart")
    log = tmp_path / "srvd.log"
    notify = tmp_path / "notify"
    with notify_socket(notify) as sock, open(log, "wb") as output:
        env = {**os.environ, "NOTIFY_SOCKET": str(notify)}
        process = subprocess.Popen(
            mapped(shlex.split(start), paths), stdout=output, stderr=subprocess.STDOUT,
            cwd=tmp_path, env=env,
        )  # fmt: skip
        try:
            assert "STATUS=serving 2 domains, 4 zones" in wait_for_notify(sock, "READY=1")[-1]
            health = [srvd, "health", "-c", str(config), "--server", f"127.0.0.1:{port}"]
            result = run(health, tmp_path)
            assert result.returncode == 0, result.stderr + log.read_text()
            assert (state / "serials").exists()

            main_pid = {"$MAINPID": str(process.pid)}
            for line in service_values("ExecReload"):
                result = run(mapped(shlex.split(line), {**paths, **main_pid}), tmp_path)
                assert result.returncode == 0, result.stderr
            messages = wait_for_notify(sock, "READY=1")
            assert "RELOADING=1" in messages[0].splitlines(), messages

            config.write_text(config.read_text() + "bogus: 1\n")
            check = service_values("ExecReload")[0]
            result = run(mapped(shlex.split(check), paths), tmp_path)
            assert result.returncode == 1 and "bogus" in result.stderr

            process.terminate()
            assert "STOPPING=1" in wait_for_notify(sock, "STOPPING=1")[-1].splitlines()
            assert process.wait(timeout=20) == 0, log.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    for line in service_values("ExecStartPre"):
        result = run(mapped(shlex.split(line), paths), tmp_path)
        assert result.returncode == 1 and "bogus: unknown key" in result.stderr
