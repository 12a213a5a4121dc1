"""tests/perf/blackbox.py at a small count against a real srvd: junk UDP and TCP on loopback,
then the example's SRV answered right and srvd's RSS flat. The 100k-packet run is by hand
(tests/perf/README.md)."""

from __future__ import annotations

import socket
import threading

from perf import blackbox

from conftest import RunningServer


def test_blackbox_abuse_leaves_srvd_answering(example_server: RunningServer) -> None:
    pid = example_server.process.pid
    figures = blackbox.run(
        example_server.port,
        pid,
        packets=5000,
        tcp_streams=24,
        warmup=1000,
        check_every=1000,
        rss_growth=0.10,
        seed=7,
    )
    print(blackbox.report(figures, 0.0, pid))
    assert figures.failures == []
    assert figures.sent == 5000 and figures.tcp_streams == 24
    assert figures.received > 3000  # most junk gets FORMERR and friends; no reply only to
    assert figures.rcodes["FORMERR"] > 1000  # short messages and responses
    assert figures.probes >= 7
    assert example_server.process.poll() is None
    assert "Traceback" not in example_server.log()


def test_blackbox_notices_a_server_that_answers_wrong() -> None:
    """A fake server on loopback that answers REFUSED: the probe records a failure."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fake:
        fake.bind(("127.0.0.1", 0))
        fake.settimeout(5)

        def serve() -> None:
            for _ in range(3):  # the probe tries three times
                query, peer = fake.recvfrom(512)
                fake.sendto(query[:2] + b"\x81\x05" + query[4:], peer)

        thread = threading.Thread(target=serve)
        thread.start()
        abuser = blackbox.Abuser(fake.getsockname()[1], None, 1)
        abuser.probe()
        thread.join()
    assert len(abuser.figures.failures) == 1
    assert "probe reply REFUSED" in abuser.figures.failures[0]


def test_probe_checker_rejects_wrong_answers() -> None:
    assert blackbox.check_probe(blackbox.probe_query(1), 1) is not None  # no AA, no answer
    assert blackbox.check_probe(b"\x00" * 5, 1) is not None  # does not parse
