"""The deployment files: systemd/srvd.service, Dockerfile, requirements.lock.

Neither systemd nor a Docker engine runs here, so the unit is checked with ``systemd-analyze``
(syntax, and the offline security score), the Dockerfile with hadolint, and both are proven to
work by running their command lines directly: the installed paths (``/opt/srvd/bin/srvd``,
``srvd``, ``/etc/srvd/srvd.yaml``, ``/var/lib/srvd``) mapped to a wrapper that runs this
checkout's srvd, a copy of the production template with a customer domain, a temporary state
directory, and a free loopback port instead of 53. The sandboxing itself is only ever exercised
by a real systemd, the image only by a real Docker.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from fnmatch import fnmatch
from pathlib import Path
from typing import cast

import yaml

from srvd.service import SYSTEM_CONFIG

from conftest import ROOT, free_port, require_tool

UNIT = ROOT / "systemd" / "srvd.service"
DOCKERFILE = ROOT / "Dockerfile"
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


# ---------------------------------------------------------------------------------------------
# Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        instruction, _, arguments = (pending + line).partition(" ")
        out.append((instruction.upper(), arguments.strip()))
        pending = ""
    return out


def exec_form(instruction: str) -> list[str]:
    (arguments,) = [a for i, a in dockerfile_instructions() if i == instruction]
    if instruction == "HEALTHCHECK":
        arguments = arguments.split(" CMD ", 1)[1]
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(part, str) for part in value)
    return value


def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    hadolint = require_tool("hadolint")
    result = run([hadolint, str(DOCKERFILE)], ROOT)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install dnslib\n")
    result = run([hadolint, str(bad)], tmp_path)
    assert result.returncode != 0 and "DL3007" in result.stdout and "DL3013" in result.stdout


def test_dockerfile_copies_files_that_exist_and_are_not_ignored() -> None:
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for instruction, arguments in dockerfile_instructions():
        if instruction not in ("COPY", "ADD"):
            continue
        assert instruction == "COPY", "ADD fetches and unpacks: COPY only"
        parts = [part for part in shlex.split(arguments) if not part.startswith("--")]
        sources += parts[:-1]
    assert sources
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"the Dockerfile copies {source}, which does not exist"
        # .dockerignore: the last matching pattern decides ("!" lets a path in again)
        included = True
        for pattern in ignore:
            negated = pattern.startswith("!")
            bare = pattern.lstrip("!").rstrip("/")
            if fnmatch(source.rstrip("/"), bare):
                included = negated
        assert included, f"{source} is excluded from the build context by .dockerignore"


def test_requirements_lock_pins_every_runtime_dependency() -> None:
    """Every name the runtime dependencies pull in (as installed here) is pinned, exactly."""
    from importlib import metadata

    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version.strip(), f"not an exact pin: {line}"
            pins[canonicalize_name(name)] = version.strip()
    pyproject = (ROOT / "pyproject.toml").read_text()
    block = pyproject.split("dependencies = [", 1)[1].split("]", 1)[0]
    direct = [Requirement(r) for r in re.findall(r'"([^"]+)"', block)]
    environment: dict[str, str] = {**cast(dict[str, str], default_environment()), "extra": ""}
    needed: set[str] = set()
    todo = list(direct)
    while todo:
        requirement = todo.pop()
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        if name in needed:
            continue
        needed.add(name)
        assert name in pins, f"{requirement.name} is not pinned in requirements.lock"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]}: {requirement}"
        todo += [Requirement(r) for r in metadata.requires(requirement.name) or []]
    assert set(pins) == needed, f"pinned but not needed: {set(pins) - needed}"


def test_dockerfile_command_lines_serve_and_report_healthy(tmp_path: Path) -> None:
    """ENTRYPOINT + CMD run directly, /etc/srvd as an operator mounts it, a free loopback port
    for 53; then the HEALTHCHECK command line, mapped the same way, says healthy."""
    state = tmp_path / "state"  # the /var/lib/srvd volume
    state.mkdir()
    config = production_config(tmp_path, state)
    srvd = str(wrapper(tmp_path))
    port = free_port()
    paths = {"srvd": srvd, SYSTEM_CONFIG: str(config), "127.0.0.1:53": f"127.0.0.1:{port}"}
    paths["0.0.0.0:53"] = f"127.0.0.1:{port}"  # loopback only in tests
    command = mapped(exec_form("ENTRYPOINT") + exec_form("CMD"), paths)
    assert command[1] == "serve"
    log = tmp_path / "srvd.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd="/")
    try:
        health = mapped(exec_form("HEALTHCHECK"), paths)
        deadline = time.monotonic() + 30
        while True:
            result = run(health, tmp_path)
            if result.returncode == 0 or time.monotonic() > deadline or process.poll() is not None:
                break
            time.sleep(0.2)
        assert result.returncode == 0, result.stderr + log.read_text()
        assert f"127.0.0.1:{port}: _axigen.example.com. SOA: NOERROR" in result.stdout
        assert (state / "serials").exists()
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0, log.read_text()


def test_dockerfile_runs_as_a_numeric_non_root_user() -> None:
    users = [
        arguments for instruction, arguments in dockerfile_instructions() if instruction == "USER"
    ]
    assert users, "no USER: the container would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    exposed = [a for i, a in dockerfile_instructions() if i == "EXPOSE"]
    assert exposed == ["53/udp 53/tcp 9153/tcp"]
