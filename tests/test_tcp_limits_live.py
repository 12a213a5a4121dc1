"""TCP limits on a real srvd: with the cap full of idle connections, a fresh query gets in."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from conftest import EXAMPLE, start_srvd

CAP = 20


def test_a_fresh_tcp_query_gets_in_when_the_cap_is_full_of_idle_connections(
    tmp_path: Path,
) -> None:
    config = tmp_path / "srvd.yaml"
    config.write_text(EXAMPLE.read_text() + f"\ntcp: {{max_connections: {CAP}}}\n")
    server = start_srvd(config)
    idle: list[socket.socket] = []
    try:
        for i in range(CAP * 2):  # the cap, then as many again: those are turned away at once
            try:
                idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
            except ConnectionResetError:  # closed by srvd before connect() returned
                assert i >= CAP
        time.sleep(1.5)  # idle long enough to be reaped for a newcomer
        query = dns.message.make_query("_imaps._tcp.example.com", "SRV")
        for _ in range(3):
            reply = dns.query.tcp(query, "127.0.0.1", port=server.port, timeout=5)
            assert reply.rcode() == dns.rcode.NOERROR and reply.answer
        time.sleep(0.2)
        closed = 0
        for sock in idle:
            sock.setblocking(False)
            try:
                closed += sock.recv(1, socket.MSG_PEEK) == b""
            except BlockingIOError:  # still open
                pass
            except OSError:  # reset
                closed += 1
        # the ones over the cap, and one reaped for the first fresh query (which, closed by the
        # client, leaves its place to the next)
        assert closed + (CAP * 2 - len(idle)) == CAP + 1
    finally:
        for sock in idle:
            sock.close()
        server.stop()
