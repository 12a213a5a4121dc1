"""The control channel (issue 15): ``srvd status|reload|show|list|diff`` over a real UNIX socket
to a running srvd, the guard on mass removal, and ``srvd reload --pidfile`` that never signals a
process that is not srvd."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from conftest import ROOT, RunningServer, start_srvd

HEAD = """
zone:
  nameservers: [ns1.example.net, ns2.example.net]
  hostmaster: hostmaster@example.net
profiles:
  one:
    imaps: {target: imap1.example.net, port: 993}
  two:
    imaps: {target: imap2.example.net, port: 993}
"""


def write(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def main_file(path: Path, domains: dict[str, str], extra: str = "") -> None:
    body = "".join(f"  {name}: {profile}\n" for name, profile in domains.items())
    write(path, HEAD + extra + "include: [more.yaml]\ndomains:\n" + body)


def include(path: Path, count: int, start: int = 0) -> None:
    body = "".join(f"  d{i}.example: one\n" for i in range(start, start + count))
    write(path.parent / "more.yaml", "domains:\n" + body)


def srvd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "srvd", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def imaps(server: RunningServer, domain: str) -> str:
    query = dns.message.make_query(f"_imaps._tcp.{domain}", "SRV")
    reply = dns.query.udp(query, server.host, port=server.port, timeout=2)
    if reply.rcode() != dns.rcode.NOERROR or not reply.answer:
        return dns.rcode.to_text(reply.rcode())
    return str(reply.answer[0][0].target)


def wait_until(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("not reached in time")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[RunningServer, Path, Path]]:
    config = tmp_path / "srvd.yaml"
    main_file(config, {"a.example": "one", "b.example": "two"})
    include(config, 30)
    sock = tmp_path / "ctl.sock"
    server = start_srvd(config, "--control", str(sock))
    try:
        yield server, config, sock
    finally:
        assert server.stop() == 0
    assert not sock.exists()  # removed when srvd stops


def test_status_show_list_over_the_socket(running: tuple[RunningServer, Path, Path]) -> None:
    server, config, sock = running
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    status = srvd("status", "--socket", str(sock))
    assert status.returncode == 0, status.stderr
    out = status.stdout
    assert f"pid {server.process.pid}" in out
    assert f"configuration: {config}" in out
    assert "serving: generation 1: 32 domains, 32 zones" in out
    assert "last reload: none since start" in out
    assert f"primary: pid {server.process.pid}, generation 1" in out
    assert f"listening: 127.0.0.1:{server.port} (UDP and TCP)" in out

    show = srvd("show", "B.Example.", "--socket", str(sock))
    assert show.returncode == 0, show.stderr
    assert f"; defined at {config}:" in show.stdout
    line = int(show.stdout.split(f"{config}:")[1].split()[0])
    assert config.read_text().splitlines()[line - 1].strip() == "b.example: two"
    assert "; profile: two" in show.stdout
    assert "served now (generation 1): _tcp.b.example serial" in show.stdout
    assert "_imaps._tcp.b.example.\t3600\tIN\tSRV\t0 0 993 imap2.example.net." in show.stdout
    # the records are a master file a zone checker takes
    zone_text = show.stdout.split("\n\n", 1)[1]
    import dns.zone

    zone = dns.zone.from_text(zone_text, origin="_tcp.b.example.", relativize=False)
    assert zone.get_rdataset("_tcp.b.example.", "SOA") is not None

    missing = srvd("show", "nowhere.example", "--socket", str(sock))
    assert missing.returncode == 1
    assert "not in" in missing.stdout and "no zone" in missing.stdout

    listing = srvd("list", "--socket", str(sock))
    assert listing.returncode == 0, listing.stderr
    assert sorted(listing.stdout.split()) == sorted(
        ["a.example", "b.example", *(f"d{i}.example" for i in range(30))]
    )
    on_two = srvd("list", "--socket", str(sock), "--profile", "two")
    assert on_two.stdout.split() == ["b.example"]
    nope = srvd("list", "--socket", str(sock), "--profile", "three")
    assert nope.returncode == 1 and "no profile 'three'" in nope.stderr

    # the raw protocol: one JSON request line, JSON answer lines
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.connect(str(sock))
        raw.sendall(b'{"command": "launch"}\n')
        answer = json.loads(raw.makefile("rb").readline())
    assert answer == {"ok": False, "error": "unknown command 'launch'"}


def test_diff_and_reload_report_and_fail(running: tuple[RunningServer, Path, Path]) -> None:
    server, config, sock = running
    main_file(config, {"a.example": "two", "c.example": "one"})  # b removed, a changed, c added
    diff = srvd("diff", "--socket", str(sock))
    assert diff.returncode == 0, diff.stderr
    assert diff.stdout.splitlines()[:3] == ["+ c.example", "- b.example", "~ a.example"]
    assert "1 added, 1 removed, 1 changed (domains)" in diff.stdout
    assert imaps(server, "c.example") == "REFUSED"  # nothing applied

    other = config.parent / "other.yaml"
    write(other, HEAD + "domains:\n  z.example: one\n")
    elsewhere = srvd("diff", "-c", str(other), "--socket", str(sock))
    assert "+ z.example" in elsewhere.stdout and "- a.example" in elsewhere.stdout
    assert "a reload would be refused: it would remove 32 of the 32 domains" in elsewhere.stdout

    reload = srvd("reload", "--socket", str(sock))
    assert reload.returncode == 0, reload.stderr
    assert "OK in" in reload.stdout and "1 domain added (c.example)" in reload.stdout
    assert "now generation 2" in reload.stdout
    assert imaps(server, "c.example") == "imap1.example.net."

    # the server reloads its own file; a failure is reported with the problem, exit 1
    main_file(config, {"a.example": "nope"})
    failed = srvd("reload", "--socket", str(sock))
    assert failed.returncode == 1
    assert "unknown profile 'nope'" in failed.stderr and "FAILED" in failed.stderr
    assert imaps(server, "c.example") == "imap1.example.net."
    status = srvd("status", "--socket", str(sock)).stdout
    assert "last reload: FAILED" in status and "unknown profile 'nope'" in status
    assert "generation 2" in status
    broken_diff = srvd("diff", "--socket", str(sock))
    assert broken_diff.returncode == 1 and "a reload would fail" in broken_diff.stderr


def test_a_half_written_include_is_refused_not_applied(
    running: tuple[RunningServer, Path, Path],
) -> None:
    server, config, sock = running
    include(config, 5)  # 25 of the 32 domains gone: over the default 10%
    refused = srvd("reload", "--socket", str(sock))
    assert refused.returncode == 1
    assert "refused: it would remove 25 of the 32 domains" in refused.stderr
    assert imaps(server, "d20.example") == "imap1.example.net."

    # SIGHUP is held to it as well
    server.process.send_signal(signal.SIGHUP)
    wait_until(lambda: server.log().count("reload refused") >= 2)
    assert imaps(server, "d20.example") == "imap1.example.net."

    forced = srvd("reload", "--force", "--socket", str(sock))
    assert forced.returncode == 0, forced.stderr
    assert "25 domains removed" in forced.stdout
    assert imaps(server, "d20.example") == "REFUSED"


def test_max_removed_setting_is_validated_and_obeyed(tmp_path: Path) -> None:
    config = tmp_path / "srvd.yaml"
    main_file(config, {"a.example": "one"}, extra="reload: {max_removed: 50%}\n")
    include(config, 30)
    assert srvd("check", "-c", str(config)).returncode == 0
    sock = tmp_path / "ctl.sock"
    server = start_srvd(config, "--control", str(sock))
    try:
        include(config, 20)  # 10 of 31 removed: within 50%
        assert srvd("reload", "--socket", str(sock)).returncode == 0
        main_file(config, {"a.example": "one"}, extra="reload: {max_removed: 2}\n")
        include(config, 8)  # 12 removed: over 2, but the first 10 never count
        assert srvd("reload", "--socket", str(sock)).returncode == 1
        main_file(config, {"a.example": "one"}, extra="reload: {max_removed: 'off'}\n")
        include(config, 0)
        assert srvd("reload", "--socket", str(sock)).returncode == 0
    finally:
        assert server.stop() == 0
    for bad, message in (
        ("{max_removed: 120%}", "a percentage from 0% to 100%"),
        ("{max_removed: -1}", "out of range"),
        ("{max_remove: 5}", "max_removed"),
    ):
        main_file(config, {"a.example": "one"}, extra=f"reload: {bad}\n")
        result = srvd("check", "-c", str(config))
        assert result.returncode == 1 and message in result.stderr, result.stderr


def test_reload_signal_path_never_signals_another_process(tmp_path: Path) -> None:
    config = tmp_path / "srvd.yaml"
    main_file(config, {"a.example": "one"})
    include(config, 1)
    pidfile = tmp_path / "srvd.pid"
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        pidfile.write_text(f"{bystander.pid}\n")
        result = srvd("reload", "--pidfile", str(pidfile))
        assert result.returncode == 1
        assert f"process {bystander.pid}" in result.stderr and "is not srvd" in result.stderr
        time.sleep(0.2)
        assert bystander.poll() is None  # not signalled
    finally:
        bystander.kill()
        bystander.wait()
    pidfile.write_text(f"{bystander.pid}\n")  # gone now: a stale pid file
    stale = srvd("reload", "--pidfile", str(pidfile))
    assert stale.returncode == 1 and "stale pid file" in stale.stderr

    server = start_srvd(config, "--pidfile", str(pidfile))
    try:
        main_file(config, {"a.example": "two"})
        good = srvd("reload", "--pidfile", str(pidfile))
        assert good.returncode == 0, good.stderr
        assert f"reload {config}" in good.stdout  # the file that srvd runs, from its command line
        wait_until(lambda: imaps(server, "a.example") == "imap2.example.net.")
        main_file(config, {"a.example": "nope"})
        bad = srvd("reload", "--pidfile", str(pidfile))
        assert bad.returncode == 1 and "unknown profile 'nope'" in bad.stderr
        assert "not signalled" in bad.stderr
    finally:
        assert server.stop() == 0


def test_control_off_and_a_stale_socket(tmp_path: Path) -> None:
    config = tmp_path / "srvd.yaml"
    main_file(config, {"a.example": "one"}, extra="control: 'off'\n")
    include(config, 1)
    result = srvd("status", "-c", str(config))
    assert result.returncode == 2 and "control: off" in result.stderr

    # control: from the configuration, relative to it; a socket left by a dead srvd is replaced
    main_file(config, {"a.example": "one"}, extra="control: run/ctl.sock\n")
    (tmp_path / "run").mkdir()
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(tmp_path / "run" / "ctl.sock"))
    left.close()
    server = start_srvd(config, "--control", str(tmp_path / "run" / "ctl.sock"))
    try:
        status = srvd("status", "-c", str(config))
        assert status.returncode == 0, status.stderr
        # a second srvd on the same socket refuses to start rather than steal it
        second = srvd("serve", "-c", str(config), "--listen", "127.0.0.1:0", "--metrics", "off")
        assert second.returncode == 1
        assert "another process answers on this control socket" in second.stderr
    finally:
        assert server.stop() == 0
    nobody = srvd("status", "-c", str(config))
    assert nobody.returncode == 2 and "cannot connect" in nobody.stderr


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT")
def test_a_forced_mass_removal_reaches_the_workers(tmp_path: Path) -> None:
    """The workers take the primary's index as it is: the guard is the primary's alone."""
    config = tmp_path / "srvd.yaml"
    main_file(config, {"a.example": "one"}, extra="workers: 2\n")
    include(config, 30)
    sock = tmp_path / "ctl.sock"
    server = start_srvd(config, "--control", str(sock))
    try:
        wait_until(lambda: "worker 1: pid" in srvd("status", "--socket", str(sock)).stdout)
        include(config, 2)
        assert srvd("reload", "--socket", str(sock)).returncode == 1
        forced = srvd("reload", "--force", "--socket", str(sock))
        assert forced.returncode == 0, forced.stderr
        wait_until(
            lambda: (
                "worker 1: pid" in (out := srvd("status", "--socket", str(sock)).stdout)
                and ", generation 2\n" in out.split("worker 1:")[1]
            )
        )
        assert "reload refused" not in server.log().split("reloaded in")[-1]
    finally:
        assert server.stop() == 0
