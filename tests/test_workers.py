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
from typing import Any, cast

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


def _generations(port: int) -> dict[str, float]:
    found = {}
    for line in _scrape(port).splitlines():
        if line.startswith("srvd_worker_generation{"):
            label, value = line.rsplit(" ", 1)
            found[label.split('"')[1]] = float(value)
        elif line.startswith("srvd_index_generation "):
            found["primary"] = float(line.rsplit(" ", 1)[1])
    return found


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT")
def test_a_restarted_worker_serves_the_primarys_index_not_the_files_on_disk(
    tmp_path: Path,
) -> None:
    """Issue 15: a worker restarted after a crash loaded the file on disk (changed, or broken)
    and answered differently from the primary; now it takes the primary's index."""
    config = _config(tmp_path)
    metrics = free_port()
    server = start_srvd(config, "--metrics", f"127.0.0.1:{metrics}")
    try:
        _wait(lambda: len(_workers_of(server)) == 1)
        _wait(lambda: _generations(metrics) == {"primary": 1, "0": 1, "1": 1})
        (worker,) = _workers_of(server)
        argv = Path(f"/proc/{worker}/cmdline").read_bytes().split(b"\0")
        snapshot = Path(argv[argv.index(b"--snapshot") + 1].decode())
        assert snapshot.stat().st_mode & 0o777 == 0o600
        assert snapshot.parent.stat().st_mode & 0o777 == 0o700

        # first the file changes on disk, but nobody reloads: a restarted worker must not serve
        # it; then the file on disk is broken: the worker still starts, from the primary's index
        changed = EXAMPLE.read_text().replace("webmail.example.net", "changed.example.net")
        for on_disk in (changed.replace("listen:\n  - 127.0.0.1:5353\n", ""), "zone: [broken\n"):
            config.write_text(on_disk)
            (victim,) = _workers_of(server)
            os.kill(victim, signal.SIGKILL)
            _wait(lambda: _workers_of(server) not in ([], [victim]))  # noqa: B023
            _wait(lambda: _generations(metrics).get("1") == 1)
            answers = _ask_from_new_sockets(server, 40, "_axigen.example.com", "TXT")
            assert set(answers) == {'"webmail.example.net"'}
        assert "ended" in server.log() and "restarting it in 2 s" in server.log()

        # a reload of the broken file fails in the primary: no worker moves
        server.process.send_signal(signal.SIGHUP)
        _wait(lambda: "reload failed;" in server.log())
        time.sleep(1)
        assert _generations(metrics) == {"primary": 1, "0": 1, "1": 1}

        # a good file: the primary reloads, then hands its index to the worker
        _config(tmp_path, axigen="changed.example.net")
        server.process.send_signal(signal.SIGHUP)
        _wait(lambda: _generations(metrics) == {"primary": 2, "0": 2, "1": 2})
        answers = _ask_from_new_sockets(server, 40, "_axigen.example.com", "TXT")
        assert set(answers) == {'"changed.example.net"'}
        text = _scrape(metrics)
        assert 'srvd_worker_resident_memory_bytes{worker="1"}' in text
        assert "srvd_worker_restarts_total 2.0" in text
    finally:
        assert server.stop() == 0
    assert not snapshot.parent.exists()  # removed when the primary stops


def test_restarts_back_off_while_a_worker_keeps_dying(tmp_path: Path) -> None:
    from twisted.internet import task
    from twisted.python import failure

    from srvd.server.workers import RESTART_AT_MOST, WorkerPool, restart_delay

    died: Any = cast(Any, failure.Failure)(RuntimeError("died"))
    assert [restart_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    clock = task.Clock()
    spawned: list[int] = []
    stats = StatsFile(str(tmp_path / "stats"), 2, create=True)
    pool = WorkerPool(1, [], stats, clock)

    def spawn(slot: int) -> None:  # a worker that dies at once, over and over
        spawned.append(slot)
        pool.started[slot] = clock.seconds()

    pool.spawn = spawn  # type: ignore[method-assign]
    waits = []
    for _ in range(8):
        pool.ended(1, died)
        waits.append(pool.restarts[1].getTime() - clock.seconds())
        clock.advance(waits[-1])
    assert waits == [1, 2, 4, 8, 16, 32, RESTART_AT_MOST, RESTART_AT_MOST]
    assert spawned == [1] * 8 and pool.restarted == 8
    # one that ran steadily for a while before it died is started again after a second
    clock.advance(60)
    pool.ended(1, died)
    assert pool.restarts[1].getTime() - clock.seconds() == 1
    stats.close(remove=True)
