"""workers: N — several processes on one address (SO_REUSEPORT), reloaded and counted as one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import dns.message
import pytest

from srvd.ops.metrics import Counters
from srvd.server.workers import SCALARS, StatsFile

from conftest import EXAMPLE, RunningServer, free_port, start_srvd


def test_a_stats_slot_round_trips_counts_and_figures(tmp_path: Path) -> None:
    stats = StatsFile(str(tmp_path / "stats"), 3, create=True)
    counters = Counters()
    counters.queries[5] = 7
    counters.services[2] = 3
    counters.size_buckets[1] = 4
    counters.size_sum = 1234
    scalars = list(range(len(SCALARS)))
    stats.write(2, counters, scalars)
    back, figures = stats.read(2)
    assert back.queries[5] == 7 and back.services[2] == 3 and back.size_buckets[1] == 4
    assert back.size_sum == 1234
    assert list(figures.values()) == scalars
    empty, _ = stats.read(1)
    assert sum(empty.queries) == 0
    stats.close(remove=True)
    assert not (tmp_path / "stats").exists()


def _config(tmp_path: Path, axigen: str = "webmail.example.net") -> Path:
    text = EXAMPLE.read_text().replace("axigen: webmail.example.net", f"axigen: {axigen}")
    text = text.replace("listen:\n  - 127.0.0.1:5353\n", "workers: 2\n")
    path = tmp_path / "srvd.yaml"
    path.write_text(text)
    return path


def _ask_from_new_sockets(server: RunningServer, count: int, name: str, rdtype: str) -> list[str]:
    """Each query from a fresh source port, so the kernel spreads them over the workers."""
    answers = []
    for _ in range(count):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(3)
            sock.sendto(dns.message.make_query(name, rdtype).to_wire(), (server.host, server.port))
            reply = dns.message.from_wire(sock.recv(4096))
            answers.append(reply.answer[0][0].to_text() if reply.answer else "")
    return answers


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def _srv_noerror(text: str) -> float:
    for line in text.splitlines():
        if line.startswith('srvd_queries_total{qtype="TXT",rcode="NOERROR",transport="udp"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _workers_of(server: RunningServer) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-P", str(server.process.pid), "-f", "worker-slot"],
        capture_output=True,
        text=True,
    )
    return [int(pid) for pid in found.stdout.split()]


def _wait(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("not reached in time")


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT")
def test_two_workers_answer_reload_restart_and_count_as_one(tmp_path: Path) -> None:
    config = _config(tmp_path)
    metrics = free_port()
    server = start_srvd(config, "--metrics", f"127.0.0.1:{metrics}")
    try:
        _wait(lambda: len(_workers_of(server)) == 1)
        assert "worker 1 started" in server.log()

        # both processes answer, and /metrics adds up what each answered
        answers = _ask_from_new_sockets(server, 60, "_axigen.example.com", "TXT")
        assert set(answers) == {'"webmail.example.net"'}
        _wait(lambda: _srv_noerror(_scrape(metrics)) == 60, timeout=10)

        # SIGHUP to the primary reloads every worker
        _config(tmp_path, axigen="changed.example.net")
        server.process.send_signal(signal.SIGHUP)
        _wait(lambda: server.log().count("reloaded in") >= 2)
        answers = _ask_from_new_sockets(server, 40, "_axigen.example.com", "TXT")
        assert set(answers) == {'"changed.example.net"'}

        # a worker that dies is started again, and the sums do not go backwards
        before = _srv_noerror(_scrape(metrics))
        (victim,) = _workers_of(server)
        os.kill(victim, signal.SIGKILL)
        _wait(lambda: _workers_of(server) not in ([], [victim]))
        assert "restarting it" in server.log()
        _ask_from_new_sockets(server, 20, "_axigen.example.com", "TXT")
        _wait(lambda: _srv_noerror(_scrape(metrics)) >= before + 20, timeout=10)
    finally:
        assert server.stop() == 0
    _wait(lambda: not _workers_of(server), timeout=15)
    assert not [
        p for p in Path("/dev/shm").glob("srvd-stats-*") if str(server.process.pid) in p.name
    ]
