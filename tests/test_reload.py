"""Reload on SIGHUP: answers change as configured, failures change nothing, no query is lost."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from srvd.index.model import Index

from conftest import RunningServer, start_srvd

HEAD = """
zone:
  nameservers: [ns1.example.net]
  hostmaster: hostmaster@example.net
state_dir: state
profiles:
  one:
    imaps: {target: imap1.example.net, port: 993}
  two:
    imaps: {target: imap2.example.net, port: 993}
"""


def write_config(path: Path, domains: dict[str, str], include: str | None = None) -> None:
    text = HEAD + "domains:\n" + "".join(f"  {d}: {p}\n" for d, p in domains.items())
    if include:
        text += f"include: [{include}]\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # as a control panel should: readers never see half a file


def ask(server: RunningServer, name: str, rdtype: str = "SRV") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return dns.query.udp(query, server.host, port=server.port, timeout=2)


def target(server: RunningServer, domain: str) -> str | None:
    reply = ask(server, f"_imaps._tcp.{domain}")
    if reply.rcode() != dns.rcode.NOERROR or not reply.answer:
        return dns.rcode.to_text(reply.rcode())
    return str(reply.answer[0][0].target)


def serial(server: RunningServer, apex: str) -> int:
    reply = ask(server, apex, "SOA")
    return int(reply.answer[0][0].serial)


def wait_until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def reloads_done(server: RunningServer, count: int) -> Callable[[], bool]:
    def check() -> bool:
        log = server.log()
        return log.count("reloaded in") + log.count("still serving the previous") >= count

    return check


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "srvd.yaml"
    write_config(path, {"keep.example": "one", "change.example": "one", "gone.example": "one"})
    return path


@pytest.fixture
def server(config: Path) -> Iterator[RunningServer]:
    running = start_srvd(config)
    yield running
    assert running.stop() == 0


def test_reload_adds_changes_and_removes_domains_and_moves_serials(
    server: RunningServer, config: Path
) -> None:
    before_keep = serial(server, "_tcp.keep.example")
    before_change = serial(server, "_tcp.change.example")
    time.sleep(1.1)  # serials are Unix seconds: a change must be visible as a larger one
    write_config(config, {"keep.example": "one", "change.example": "two", "new.example": "two"})
    server.process.send_signal(signal.SIGHUP)
    wait_until(lambda: target(server, "new.example") == "imap2.example.net.")

    assert target(server, "keep.example") == "imap1.example.net."
    assert target(server, "change.example") == "imap2.example.net."
    assert target(server, "gone.example") == "REFUSED"
    assert serial(server, "_tcp.keep.example") == before_keep
    assert serial(server, "_tcp.change.example") > before_change
    log = server.log()
    assert "1 domain added (new.example)" in log
    assert "1 domain removed (gone.example)" in log
    assert "1 domain changed (change.example)" in log


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("syntax", "YAML"),
        ("schema", "unknown profile 'three'"),
        ("include", "does not exist"),
    ],
)
def test_a_failed_reload_changes_nothing(
    server: RunningServer, config: Path, breakage: str, message: str
) -> None:
    before = serial(server, "_tcp.keep.example")
    if breakage == "syntax":
        config.write_text(config.read_text() + "  broken: [\n")
    elif breakage == "schema":
        write_config(config, {"keep.example": "three"})
    else:
        write_config(config, {"keep.example": "two"}, include="missing.yaml")
    server.process.send_signal(signal.SIGHUP)
    wait_until(reloads_done(server, 1))

    log = server.log()
    assert "reload failed" in log and message in log
    assert str(config) in log  # the error names the file
    assert target(server, "keep.example") == "imap1.example.net."
    assert target(server, "gone.example") == "imap1.example.net."
    assert serial(server, "_tcp.keep.example") == before


def test_a_sighup_storm_ends_on_the_latest_configuration(
    server: RunningServer, config: Path
) -> None:
    for i in range(20):
        write_config(config, {f"storm{i}.example": "two"})
        server.process.send_signal(signal.SIGHUP)
        time.sleep(0.05)
    wait_until(lambda: target(server, "storm19.example") == "imap2.example.net.")
    # coalesced: once the last reload is done, the last file is what is served, nothing earlier
    wait_until(lambda: "reloading" not in server.log().rsplit("reloaded in", 1)[-1])
    assert target(server, "storm19.example") == "imap2.example.net."
    assert target(server, "storm18.example") == "REFUSED"
    assert target(server, "keep.example") == "REFUSED"


def test_every_query_is_answered_while_reloading(tmp_path: Path) -> None:
    path = tmp_path / "srvd.yaml"
    domains = {f"cust{i:05d}.example": "one" for i in range(20_000)}
    write_config(path, domains)
    running = start_srvd(path)
    answered = failed = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal answered, failed
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2.0)
            i = 0
            while not stop.is_set():
                query = dns.message.make_query(f"_imaps._tcp.cust{i % 20_000:05d}.example", "SRV")
                sock.sendto(query.to_wire(), (running.host, running.port))
                try:
                    reply = dns.message.from_wire(sock.recv(4096))
                except (TimeoutError, OSError):
                    failed += 1
                    continue
                if reply.id == query.id and reply.rcode() == dns.rcode.NOERROR and reply.answer:
                    answered += 1
                else:
                    failed += 1
                i += 7

    worker = threading.Thread(target=load)
    worker.start()
    try:
        for n in range(5):
            domains[f"extra{n}.example"] = "two"
            write_config(path, domains)
            running.process.send_signal(signal.SIGHUP)
            wait_until(reloads_done(running, n + 1), timeout=60)
    finally:
        stop.set()
        worker.join()
        assert running.stop() == 0
    assert "reload failed" not in running.log()
    assert failed == 0
    assert answered > 100


def test_systemd_notify_protocol(config: Path, tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(10)
        env = dict(os.environ, NOTIFY_SOCKET=address)
        running = start_srvd(config, env=env)

        def receive() -> dict[str, str]:
            fields = sock.recv(4096).decode().split("\n")
            return dict(field.split("=", 1) for field in fields)

        ready = receive()
        assert ready["READY"] == "1"
        assert "3 domains" in ready["STATUS"]

        running.process.send_signal(signal.SIGHUP)
        reloading = receive()
        assert reloading["RELOADING"] == "1"
        monotonic_now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert 0 < monotonic_now - int(reloading["MONOTONIC_USEC"]) < 10_000_000
        assert receive()["READY"] == "1"

        assert running.stop() == 0
        assert receive()["STOPPING"] == "1"


def test_srvd_reload_command_checks_then_signals(config: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    pidfile = tmp_path / "srvd.pid"
    running = start_srvd(config, "--pidfile", str(pidfile))
    try:
        assert int(pidfile.read_text()) == running.process.pid
        write_config(config, {"cmd.example": "two"})
        command = [
            sys.executable,
            "-m",
            "srvd",
            "reload",
            "-c",
            str(config),
            "--pidfile",
            str(pidfile),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        wait_until(lambda: target(running, "cmd.example") == "imap2.example.net.")

        write_config(config, {"cmd.example": "nope"})
        refused = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1
        assert "unknown profile 'nope'" in refused.stderr
        assert "not signalled" in refused.stderr
        assert "reloading" not in running.log().rsplit("reloaded in", 1)[-1]
    finally:
        assert running.stop() == 0
    assert not pidfile.exists()


def test_changes_name_few_domains_and_only_count_many(tmp_path: Path) -> None:
    from srvd.config import load_config
    from srvd.index.build import build_index
    from srvd.index.serials import SerialState
    from srvd.server.reload import compare

    def index_of(domains: dict[str, str], previous: Index | None = None) -> Index:
        path = tmp_path / "srvd.yaml"
        write_config(path, domains)
        return build_index(load_config(path), SerialState(None).source(previous, 1000))

    old = index_of({f"d{i}.example": "one" for i in range(30)})
    kept = {f"d{i}.example": "one" for i in range(3, 15)}
    moved = {f"d{i}.example": "two" for i in range(15, 30)}
    new = index_of({**kept, **moved, "n.example": "one"}, previous=old)
    changes = compare(old, new)
    assert changes.counts == (1, 3, 15)
    assert changes.describe() == (
        "1 domain added (n.example); 3 domains removed (d0.example, d1.example, d2.example); "
        "15 domains changed"
    )
    assert compare(new, new).describe() == "no domain changed"
