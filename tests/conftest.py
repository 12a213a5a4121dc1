"""Shared test helpers: Debian tools, a config writer, and a real srvd on a loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "srvd" / "data" / "example.yaml"

_LOGS: list[Path] = []  # the directory of the servers' log files, once one was made


def new_log(prefix: str) -> Path:
    """An empty log file for a server started by a test, in this run's log directory.

    The directory goes when the run passes; after a failure it stays, and its path is printed
    at the end of the run."""
    if not _LOGS:
        _LOGS.append(Path(tempfile.mkdtemp(prefix="srvd-test-logs-")))
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=".log", dir=_LOGS[0])
    os.close(handle)
    return Path(name)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _LOGS and exitstatus == 0:
        shutil.rmtree(_LOGS[0], ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    if _LOGS and exitstatus != 0:
        terminalreporter.write_line(f"srvd logs of this run: {_LOGS[0]}")


def require_tool(name: str) -> str:
    """The path of a Debian tool; skip without it, but fail when CI sets SRVD_REQUIRE_TOOLS=1."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )
    if path:
        return path
    message = f"{name} is not installed (Debian: see .ci/run for the package)"
    if os.environ.get("SRVD_REQUIRE_TOOLS") == "1":
        pytest.fail(message + " and SRVD_REQUIRE_TOOLS=1")
    pytest.skip(message)


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def wait_for_dns(port: int, host: str = "127.0.0.1", timeout: float = 20.0) -> None:
    """Wait until something answers a DNS query over UDP on host:port."""
    query = b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x06\x00\x01"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            try:
                sock.sendto(query, (host, port))
                sock.recv(512)
                return
            except OSError:
                time.sleep(0.1)
    raise TimeoutError(f"nothing answered DNS on {host}:{port} within {timeout} s")


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    host: str = "127.0.0.1"

    def log(self) -> str:
        """Everything srvd wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            # record where every thread waits before killing, so a hang can be told from a
            # starved machine (this happened once in CI while a benchmark filled both cores)
            with open(self.log_path, "a") as log:
                log.write(f"\n[test] no exit 20 s after SIGTERM: {_threads_of(self.process.pid)}\n")
            self.process.kill()
            return self.process.wait()


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _threads_of(pid: int) -> str:
    """Each thread's state and kernel wait channel (Linux /proc), for a diagnostic line."""
    out = []
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        try:
            wchan = (task / "wchan").read_text()
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        out.append(f"{task.name}:{state}:{wchan}")
    return " ".join(out)


def start_srvd(
    config: Path,
    *extra: str,
    port: int | None = None,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
) -> RunningServer:
    """``srvd serve -c CONFIG --listen 127.0.0.1:PORT`` as a subprocess, once it answers.

    Its output goes to a log file (``RunningServer.log()``), never to a pipe that could fill up.
    A free port can be taken by another process before srvd binds it: then srvd is started
    again on another one (unless the caller chose the port).
    """
    for attempt in range(5):
        server = _start_once(config, extra, port or free_port(), env, log_path)
        if server.process.poll() is None:
            return server
        output = server.log()
        if port is None and "already in use" in output and attempt < 4:
            continue
        raise RuntimeError(f"srvd did not start (exit {server.process.returncode}):\n{output}")
    raise AssertionError("unreachable")


def _start_once(
    config: Path,
    extra: tuple[str, ...],
    port: int,
    env: dict[str, str] | None,
    log_path: Path | None,
) -> RunningServer:
    if log_path is None:
        log_path = new_log("srvd-")
    command = [sys.executable, "-m", "srvd", "serve", "-c", str(config)]
    command += ["--listen", f"127.0.0.1:{port}", *extra]
    if not any(arg.startswith("--metrics") for arg in extra):
        command += ["--metrics", "off"]  # the default 127.0.0.1:9153 would collide across tests
    if not any(arg.startswith("--http") for arg in extra):
        command += ["--http", "off"]  # and so would the example's 127.0.0.1:8080
    if not any(arg.startswith("--control") for arg in extra):
        command += ["--control", "off"]  # the default /run/srvd/srvd.sock would collide too
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    server = RunningServer(process, port, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            wait_for_dns(port, timeout=0.5)
            return server
        except TimeoutError:
            continue
    if process.poll() is None:
        server.stop()
        raise RuntimeError(f"srvd did not answer within 30 s:\n{server.log()}")
    return server  # exited: the caller reads why


def start_http_front(config: Path, metrics: bool = False) -> tuple[RunningServer, int, int]:
    """srvd with its HTTP front (``--http``) on a free port, once that port takes connections:
    (server, HTTP port, metrics port or 0). Started again on other ports when the front does
    not come up (a port taken meanwhile)."""
    for _attempt in range(5):
        http, metrics_port = free_port(), free_port() if metrics else 0
        extra = ["--http", f"127.0.0.1:{http}"]
        if metrics:
            extra += ["--metrics", f"127.0.0.1:{metrics_port}"]
        server = start_srvd(config, *extra)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", http), timeout=1).close()
                return server, http, metrics_port
            except OSError:
                time.sleep(0.05)
        server.stop()
    raise RuntimeError("the HTTP front did not start")


@pytest.fixture
def example_server() -> Iterator[RunningServer]:
    server = start_srvd(EXAMPLE)
    yield server
    server.stop()
